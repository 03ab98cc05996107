//! Who is asking. A reverse proxy in front of the console authenticates
//! users and names them in headers (`Remote-User`, `Remote-Name`,
//! `Remote-Email`, `X-Logout-URL`, `X-Avatar-URL`; names configurable).
//! Those headers are believed only from `console.auth.trusted_proxies`;
//! any other request is the configured default user, and with no default
//! user (an empty `default_login`) it is refused (401). A user only scopes
//! saved filters: there are no roles.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;
use serde::Serialize;
use weir_core::config::{parse_cidr, ConsoleAuthConfig};

/// The user a request is from (`/user/info`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub login: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "logout-url", skip_serializing_if = "Option::is_none")]
    pub logout_url: Option<String>,
    #[serde(rename = "avatar-url", skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// The longest login, name, email or URL believed.
const HEADER_VALUE_MAX: usize = 512;

pub struct Auth {
    trusted: Vec<(u128, u8)>,
    config: ConsoleAuthConfig,
}

impl Auth {
    /// From a checked configuration (its CIDRs parse).
    pub fn new(config: &ConsoleAuthConfig) -> Auth {
        let trusted =
            config.trusted_proxies.iter().filter_map(|p| parse_cidr(p)).map(|(a, l)| (u128::from(a), l)).collect();
        Auth { trusted, config: config.clone() }
    }

    /// Whether `peer`'s headers are believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let a = u128::from(match peer {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6, |v4| v4.to_ipv6_mapped()),
        });
        self.trusted.iter().any(|&(net, len)| len == 0 || (a ^ net) >> (128 - len as u32) == 0)
    }

    /// The request's user; `None` when there is none (401).
    pub fn user(&self, peer: IpAddr, headers: &HeaderMap) -> Option<User> {
        let c = &self.config;
        let header = |name: &str| -> Option<String> {
            let v = headers.get(name)?.to_str().ok()?.trim();
            (!v.is_empty() && v.len() <= HEADER_VALUE_MAX && !v.chars().any(char::is_control)).then(|| v.to_string())
        };
        let url = |v: Option<String>| {
            v.filter(|u| u.starts_with("https://") || u.starts_with("http://") || u.starts_with('/'))
        };
        let or_default =
            |v: Option<String>, default: &str| v.or_else(|| (!default.is_empty()).then(|| default.to_string()));
        if self.trusts(peer) {
            if let Some(login) = header(&c.login_header) {
                return Some(User {
                    login,
                    name: header(&c.name_header),
                    email: header(&c.email_header).filter(|e| e.contains('@')),
                    logout_url: or_default(url(header(&c.logout_url_header)), &c.logout_url),
                    avatar_url: or_default(url(header(&c.avatar_url_header)), &c.avatar_url),
                });
            }
        }
        (!c.default_login.is_empty()).then(|| User {
            login: c.default_login.clone(),
            name: (!c.default_name.is_empty()).then(|| c.default_name.clone()),
            email: None,
            logout_url: or_default(None, &c.logout_url),
            avatar_url: or_default(None, &c.avatar_url),
        })
    }
}

/// Loopback, for tests and docs.
pub const LOOPBACK: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn headers_are_believed_only_from_trusted_proxies() {
        let auth = Auth::new(&ConsoleAuthConfig::default());
        let h = headers(&[
            ("remote-user", "alice"),
            ("remote-email", "alice@example.net"),
            ("x-logout-url", "javascript:x"),
        ]);
        let alice = auth.user("127.0.0.1".parse().unwrap(), &h).unwrap();
        assert_eq!(alice.login, "alice");
        assert_eq!(alice.email.as_deref(), Some("alice@example.net"));
        assert_eq!(alice.logout_url, None, "not a URL");
        assert_eq!(auth.user(LOOPBACK, &h).unwrap().login, "alice");
        assert_eq!(auth.user("::ffff:127.0.0.2".parse().unwrap(), &h).unwrap().login, "alice");
        let outsider = auth.user("192.0.2.7".parse().unwrap(), &h).unwrap();
        assert_eq!((outsider.login.as_str(), outsider.name.as_deref()), ("__default", Some("Default User")));
        let none = ConsoleAuthConfig { default_login: String::new(), ..ConsoleAuthConfig::default() };
        assert_eq!(Auth::new(&none).user("192.0.2.7".parse().unwrap(), &h), None, "401");
        let lan = ConsoleAuthConfig { trusted_proxies: vec!["192.0.2.0/24".into()], ..ConsoleAuthConfig::default() };
        assert_eq!(Auth::new(&lan).user("192.0.2.7".parse().unwrap(), &h).unwrap().login, "alice");
        assert_eq!(Auth::new(&lan).user("192.0.3.7".parse().unwrap(), &h).unwrap().login, "__default");
        let control = headers(&[("remote-user", "a\tb")]);
        assert_eq!(auth.user(LOOPBACK, &control).unwrap().login, "__default", "control characters");
    }
}
