//! BMP (RFC 7854) as the routing table needs it: the common header that
//! frames a TCP stream, and each message turned into an `Event` for
//! `enrich::rib`. The per-peer headers, Peer Up OPENs and BGP UPDATEs are
//! parsed with `bgpkit-parser`; what it leaves to its callers is done
//! here:
//!
//! - **ADD-PATH** is negotiated per peer from the Peer Up's two OPENs (the
//!   router receives several paths when the peer's OPEN can send them and
//!   the router's can receive them), and the peer's updates are parsed
//!   with path identifiers accordingly (the crate's own BMP entry point
//!   always parses without, and guesses).
//! - **Order**: a connection must start with an Initiation message; a
//!   Route Monitoring message for a peer without Peer Up creates it.
//! - **Skipped unparsed**: Statistics Reports and Route Mirroring (which
//!   may carry malformed BGP on purpose) are only counted.
//! - **Families**: IPv4 and IPv6 unicast and labeled unicast (the labels
//!   dropped); other NLRI (VPN, EVPN, flowspec...) are counted as ignored.
//!
//! A message that does not parse is an error the caller counts and skips:
//! the session goes on with the next message (the framing is intact). A
//! header that does not (wrong version, length out of bounds) leaves the
//! stream without framing: the caller closes the connection.

use std::collections::HashMap;
use std::net::IpAddr;

use bgpkit_parser::models::{
    AsPathSegment, AttrType, BgpMessage, BgpOpenMessage, Capability, CapabilityValue, Community, MetaCommunity,
    NetworkPrefix, ParamValue, Safi,
};
use bgpkit_parser::parser::bgp::messages::parse_bgp_message;
use bgpkit_parser::parser::bmp::messages::{parse_peer_up_notification, parse_per_peer_header, BmpPerPeerHeader};
use bytes::Bytes;

use crate::flow::{addr_from_ip, Addr};

/// Bytes of the common header (version, message length, type).
pub const HEADER_LEN: usize = 6;

/// The longest message accepted: a BGP message is at most 65 535 bytes
/// (RFC 8654), plus the per-peer header; far more is a broken stream.
pub const MESSAGE_MAX: usize = 1 << 20;

/// BMP message types (RFC 7854 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    RouteMonitoring = 0,
    StatisticsReport = 1,
    PeerDown = 2,
    PeerUp = 3,
    Initiation = 4,
    Termination = 5,
    RouteMirroring = 6,
}

impl MessageType {
    pub const ALL: [MessageType; 7] = [
        MessageType::RouteMonitoring,
        MessageType::StatisticsReport,
        MessageType::PeerDown,
        MessageType::PeerUp,
        MessageType::Initiation,
        MessageType::Termination,
        MessageType::RouteMirroring,
    ];

    /// The metrics' label.
    pub fn label(self) -> &'static str {
        match self {
            MessageType::RouteMonitoring => "route-monitoring",
            MessageType::StatisticsReport => "statistics-report",
            MessageType::PeerDown => "peer-down",
            MessageType::PeerUp => "peer-up",
            MessageType::Initiation => "initiation",
            MessageType::Termination => "termination",
            MessageType::RouteMirroring => "route-mirroring",
        }
    }
}

/// Why a message was refused: a bounded set, the metrics' reason label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BmpError {
    /// Not BMP version 3 (the stream is closed).
    Version,
    /// A length below the header or above `MESSAGE_MAX` (closed).
    Length,
    /// An unknown message type (skipped).
    Type,
    /// A first message that is not an Initiation (closed).
    NotInitiated,
    /// A per-peer header, Peer Up or BGP message that does not parse (skipped).
    Malformed,
    /// A Route Monitoring message without an UPDATE (skipped).
    NotUpdate,
}

impl BmpError {
    pub const ALL: [BmpError; 6] = [
        BmpError::Version,
        BmpError::Length,
        BmpError::Type,
        BmpError::NotInitiated,
        BmpError::Malformed,
        BmpError::NotUpdate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BmpError::Version => "version",
            BmpError::Length => "length",
            BmpError::Type => "type",
            BmpError::NotInitiated => "not-initiated",
            BmpError::Malformed => "malformed",
            BmpError::NotUpdate => "not-update",
        }
    }

    /// Whether the connection cannot go on after it.
    pub fn fatal(self) -> bool {
        matches!(self, BmpError::Version | BmpError::Length | BmpError::NotInitiated)
    }
}

/// Reads a common header: the message's type (None: unknown) and whole
/// length, header included.
pub fn header(h: &[u8]) -> Result<(Option<MessageType>, usize), BmpError> {
    if h.len() < HEADER_LEN {
        return Err(BmpError::Length);
    }
    if h[0] != 3 {
        return Err(BmpError::Version);
    }
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if !(HEADER_LEN..=MESSAGE_MAX).contains(&len) {
        return Err(BmpError::Length);
    }
    Ok((MessageType::ALL.get(usize::from(h[5])).copied(), len))
}

/// A BGP peer as a BMP session names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub addr: Addr,
    /// The peer distinguisher (an RD for VRF peers, else 0).
    pub distinguisher: u64,
}

/// A route's attributes, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// AS_PATH flattened: sequences kept, a set (or confederation set)
    /// reduced to its first AS.
    pub as_path: Box<[u32]>,
    /// Standard communities as `ASN << 16 | value`.
    pub communities: Box<[u32]>,
    /// Large communities: (global administrator, local data 1, 2).
    pub large_communities: Box<[[u32; 3]]>,
    pub next_hop: Addr,
    pub local_pref: u32,
    pub med: u32,
}

impl Attrs {
    /// The origin AS: the path's last, else the peer's AS (a route the
    /// peer originates has an empty path).
    pub fn origin_as(&self, peer_as: u32) -> u32 {
        self.as_path.last().copied().unwrap_or(peer_as)
    }
}

/// A prefix in the 128-bit space (IPv4 within `::ffff:0:0/96`, its length
/// plus 96) and its ADD-PATH path identifier (0 without).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub net: u128,
    pub len: u8,
    pub path_id: u32,
}

impl Prefix {
    fn of(p: &NetworkPrefix) -> Prefix {
        let (addr, len) = match p.prefix {
            ipnet::IpNet::V4(n) => (IpAddr::V4(n.network()), n.prefix_len() + 96),
            ipnet::IpNet::V6(n) => (IpAddr::V6(n.network()), n.prefix_len()),
        };
        Prefix { net: u128::from_be_bytes(addr_from_ip(addr)), len, path_id: p.path_id.unwrap_or(0) }
    }
}

/// What one message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Initiation,
    Termination,
    Statistics,
    Mirroring,
    PeerUp {
        peer: PeerKey,
        asn: u32,
        add_path: bool,
    },
    PeerDown {
        peer: PeerKey,
    },
    /// Routes announced with `attrs`, and withdrawn; `ignored`: NLRI of
    /// families not kept.
    Update {
        peer: PeerKey,
        asn: u32,
        announced: Vec<Prefix>,
        withdrawn: Vec<Prefix>,
        attrs: Attrs,
        ignored: u32,
    },
}

/// One BMP connection's state: whether it started, and each peer's ADD-PATH.
#[derive(Debug, Default)]
pub struct Session {
    initiated: bool,
    add_path: HashMap<PeerKey, bool>,
}

impl Session {
    /// Peers this session announced (Peer Up or routes) and has not taken down.
    pub fn peers(&self) -> usize {
        self.add_path.len()
    }

    /// One whole message (header included, as `header` framed it).
    pub fn decode(&mut self, message: &[u8]) -> Result<Event, BmpError> {
        let (kind, len) = header(message)?;
        if len != message.len() {
            return Err(BmpError::Length);
        }
        if !self.initiated && kind != Some(MessageType::Initiation) {
            return Err(BmpError::NotInitiated);
        }
        let Some(kind) = kind else { return Err(BmpError::Type) };
        let mut body = Bytes::copy_from_slice(&message[HEADER_LEN..]);
        match kind {
            MessageType::Initiation => {
                self.initiated = true;
                Ok(Event::Initiation)
            }
            MessageType::Termination => Ok(Event::Termination),
            MessageType::StatisticsReport => Ok(Event::Statistics),
            MessageType::RouteMirroring => Ok(Event::Mirroring),
            MessageType::PeerUp => {
                let pph = parse_per_peer_header(&mut body).map_err(|_| BmpError::Malformed)?;
                let up = parse_peer_up_notification(&mut body, &pph.afi(), &pph.asn_length(), Some(&pph.peer_type))
                    .map_err(|_| BmpError::Malformed)?;
                let add_path = match (&up.sent_open, &up.received_open) {
                    (BgpMessage::Open(sent), BgpMessage::Open(received)) => receives_paths(sent, received),
                    _ => false,
                };
                let peer = key(&pph);
                self.add_path.insert(peer, add_path);
                Ok(Event::PeerUp { peer, asn: pph.peer_asn.to_u32(), add_path })
            }
            MessageType::PeerDown => {
                let pph = parse_per_peer_header(&mut body).map_err(|_| BmpError::Malformed)?;
                let peer = key(&pph);
                self.add_path.remove(&peer);
                Ok(Event::PeerDown { peer })
            }
            MessageType::RouteMonitoring => {
                let pph = parse_per_peer_header(&mut body).map_err(|_| BmpError::Malformed)?;
                let peer = key(&pph);
                let add_path = *self.add_path.entry(peer).or_insert(false);
                let message =
                    parse_bgp_message(&mut body, add_path, &pph.asn_length()).map_err(|_| BmpError::Malformed)?;
                let BgpMessage::Update(update) = message else { return Err(BmpError::NotUpdate) };
                Ok(update_event(peer, pph.peer_asn.to_u32(), update))
            }
        }
    }
}

fn key(pph: &BmpPerPeerHeader) -> PeerKey {
    PeerKey { addr: addr_from_ip(pph.peer_ip), distinguisher: pph.peer_distinguisher }
}

/// ADD-PATH capabilities of an OPEN: (afi, safi, send/receive bits).
fn add_path_families(open: &BgpOpenMessage) -> Vec<(u16, u8, u8)> {
    let mut out = Vec::new();
    for p in &open.opt_params {
        let ParamValue::Capacities(caps) = &p.param_value else { continue };
        for Capability { value, .. } in caps {
            if let CapabilityValue::AddPath(a) = value {
                out.extend(a.address_families.iter().map(|f| (f.afi as u16, f.safi as u8, f.send_receive as u8)));
            }
        }
    }
    out
}

/// Whether the monitored router receives several paths from the peer for
/// some family: the peer's OPEN can send them (bit 2) and the router's can
/// receive them (bit 1). One answer per peer: the parser takes one per
/// message, and routers enable ADD-PATH for all their families at once.
fn receives_paths(sent: &BgpOpenMessage, received: &BgpOpenMessage) -> bool {
    let router = add_path_families(sent);
    add_path_families(received).iter().any(|&(afi, safi, peer)| {
        peer & 2 != 0 && router.iter().any(|&(a, s, mine)| a == afi && s == safi && mine & 1 != 0)
    })
}

fn update_event(peer: PeerKey, asn: u32, update: bgpkit_parser::models::BgpUpdateMessage) -> Event {
    let a = &update.attributes;
    let mut attrs = Attrs {
        local_pref: a.local_preference().unwrap_or(0),
        med: a.multi_exit_discriminator().unwrap_or(0),
        ..Attrs::default()
    };
    if let Some(path) = a.as4_path().or(a.as_path()) {
        let mut flat = Vec::new();
        for segment in path.iter_segments() {
            match segment {
                AsPathSegment::AsSequence(v) | AsPathSegment::ConfedSequence(v) => {
                    flat.extend(v.iter().map(|asn| asn.to_u32()))
                }
                AsPathSegment::AsSet(v) | AsPathSegment::ConfedSet(v) => flat.extend(v.first().map(|asn| asn.to_u32())),
            }
        }
        attrs.as_path = flat.into();
    }
    let (mut communities, mut large) = (Vec::new(), Vec::new());
    for c in a.iter_communities() {
        match c {
            MetaCommunity::Plain(Community::Custom(asn, value)) => {
                communities.push(asn.to_u32() << 16 | u32::from(value))
            }
            MetaCommunity::Plain(Community::NoExport) => communities.push(0xffff_ff01),
            MetaCommunity::Plain(Community::NoAdvertise) => communities.push(0xffff_ff02),
            MetaCommunity::Plain(Community::NoExportSubConfed) => communities.push(0xffff_ff03),
            MetaCommunity::Large(l) => large.push([l.global_admin, l.local_data[0], l.local_data[1]]),
            _ => {}
        }
    }
    attrs.communities = communities.into();
    attrs.large_communities = large.into();
    let mut ignored = 0u32;
    let mut announced: Vec<Prefix> = update.announced_prefixes.iter().map(Prefix::of).collect();
    let mut withdrawn: Vec<Prefix> = update.withdrawn_prefixes.iter().map(Prefix::of).collect();
    let kept = |safi: Safi| matches!(safi, Safi::Unicast | Safi::MplsLabel);
    let mut next_hop = a.next_hop();
    if let Some(nlri) = a.get_reachable_nlri() {
        if kept(nlri.safi) {
            announced.extend(nlri.prefixes.iter().map(Prefix::of));
            for l in nlri.labeled_prefixes.iter().flatten() {
                announced.push(Prefix::of(&NetworkPrefix { prefix: l.prefix, path_id: l.path_id }));
            }
            next_hop = nlri.next_hop.as_ref().map(|n| n.addr()).or(next_hop);
        } else {
            ignored += nlri.prefixes.len() as u32 + nlri.labeled_prefixes.as_ref().map_or(0, |l| l.len() as u32);
        }
    }
    if let Some(nlri) = a.get_unreachable_nlri() {
        if kept(nlri.safi) {
            withdrawn.extend(nlri.prefixes.iter().map(Prefix::of));
        } else {
            ignored += nlri.prefixes.len() as u32;
        }
    }
    // Families the crate does not decode (VPN, EVPN...) stay raw
    // attributes: one ignored NLRI each (their prefixes are not counted).
    ignored += u32::from(a.has_attr(AttrType::MP_REACHABLE_NLRI) && a.get_reachable_nlri().is_none());
    ignored += u32::from(a.has_attr(AttrType::MP_UNREACHABLE_NLRI) && a.get_unreachable_nlri().is_none());
    if let Some(nh) = next_hop {
        attrs.next_hop = addr_from_ip(nh);
    }
    Event::Update { peer, asn, announced, withdrawn, attrs, ignored }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A BMP message: common header, then `body`.
    pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![3];
        m.extend(((HEADER_LEN + body.len()) as u32).to_be_bytes());
        m.push(kind);
        m.extend(body);
        m
    }

    /// A per-peer header for IPv4 peer `peer` in AS `asn` (4-byte AS paths).
    pub fn per_peer(peer: [u8; 4], asn: u32) -> Vec<u8> {
        let mut h = vec![0, 0];
        h.extend(0u64.to_be_bytes());
        h.extend([0; 12]);
        h.extend(peer);
        h.extend(asn.to_be_bytes());
        h.extend(peer);
        h.extend([0; 8]);
        h
    }

    /// A BGP message of `kind` with `body`.
    pub fn bgp(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0xff; 16];
        m.extend(((19 + body.len()) as u16).to_be_bytes());
        m.push(kind);
        m.extend(body);
        m
    }

    /// An OPEN from `asn` with 4-byte AS and, when `add_path` (1 receive,
    /// 2 send, 3 both), ADD-PATH for IPv4 unicast.
    pub fn open(asn: u32, add_path: u8) -> Vec<u8> {
        let mut caps = vec![65, 4];
        caps.extend(asn.to_be_bytes());
        if add_path != 0 {
            caps.extend([69, 4, 0, 1, 1, add_path]);
        }
        let mut body = vec![4];
        body.extend(23456u16.to_be_bytes());
        body.extend(90u16.to_be_bytes());
        body.extend([192, 0, 2, 1]);
        body.push(caps.len() as u8 + 2);
        body.extend([2, caps.len() as u8]);
        body.extend(caps);
        bgp(1, &body)
    }

    pub fn peer_up(peer: [u8; 4], asn: u32, router_add_path: u8, peer_add_path: u8) -> Vec<u8> {
        let mut body = per_peer(peer, asn);
        body.extend([0; 12]);
        body.extend([192, 0, 2, 1]);
        body.extend(179u16.to_be_bytes());
        body.extend(40000u16.to_be_bytes());
        body.extend(open(64500, router_add_path));
        body.extend(open(asn, peer_add_path));
        message(3, &body)
    }

    /// A Route Monitoring message: an UPDATE announcing IPv4 `nlri`
    /// ((path id, prefix bytes, length)) with `path`, next hop, local
    /// preference and community 65000:7, withdrawing `withdrawn`.
    pub fn route_monitoring(
        peer: [u8; 4],
        asn: u32,
        path: &[u32],
        nlri: &[(Option<u32>, [u8; 4], u8)],
        withdrawn: &[(Option<u32>, [u8; 4], u8)],
    ) -> Vec<u8> {
        let encode = |list: &[(Option<u32>, [u8; 4], u8)]| {
            let mut out = Vec::new();
            for (id, net, len) in list {
                if let Some(id) = id {
                    out.extend(id.to_be_bytes());
                }
                out.push(*len);
                out.extend(&net[..usize::from(len.div_ceil(8))]);
            }
            out
        };
        let mut attrs = vec![0x40, 1, 1, 0];
        if !nlri.is_empty() {
            attrs.extend([0x40, 2, 2 + 4 * path.len() as u8, 2, path.len() as u8]);
            for a in path {
                attrs.extend(a.to_be_bytes());
            }
            attrs.extend([0x40, 3, 4, 10, 0, 0, 1]);
            attrs.extend([0x40, 5, 4, 0, 0, 0, 200]);
            attrs.extend([0xc0, 8, 4]);
            attrs.extend((65000u32 << 16 | 7).to_be_bytes());
        } else {
            attrs.clear();
        }
        let w = encode(withdrawn);
        let mut body = (w.len() as u16).to_be_bytes().to_vec();
        body.extend(w);
        body.extend((attrs.len() as u16).to_be_bytes());
        body.extend(attrs);
        body.extend(encode(nlri));
        let mut m = per_peer(peer, asn);
        m.extend(bgp(2, &body));
        message(0, &m)
    }

    fn net(s: &str) -> (u128, u8) {
        let (n, len) = crate::config::parse_cidr(s).unwrap();
        (u128::from(n), len)
    }

    #[test]
    fn a_session_from_initiation_to_peer_down() {
        let mut s = Session::default();
        let peer = [10, 0, 0, 2];
        assert_eq!(s.decode(&peer_up(peer, 64501, 3, 3)), Err(BmpError::NotInitiated));
        assert_eq!(s.decode(&message(4, &[0, 0, 0, 3, b'r', b't', b'r'])), Ok(Event::Initiation));
        let Ok(Event::PeerUp { add_path: true, asn: 64501, .. }) = s.decode(&peer_up(peer, 64501, 1, 2)) else {
            panic!("peer up with ADD-PATH")
        };
        let update = route_monitoring(
            peer,
            64501,
            &[64501, 3356, 15169],
            &[(Some(1), [198, 51, 100, 0], 24), (Some(2), [198, 51, 100, 0], 24), (Some(1), [0; 4], 0)],
            &[(Some(7), [203, 0, 113, 0], 24)],
        );
        let Ok(Event::Update { announced, withdrawn, attrs, ignored: 0, .. }) = s.decode(&update) else {
            panic!("update")
        };
        let (n24, _) = net("198.51.100.0/24");
        assert_eq!(
            announced,
            vec![
                Prefix { net: n24, len: 120, path_id: 1 },
                Prefix { net: n24, len: 120, path_id: 2 },
                Prefix { net: net("0.0.0.0/0").0, len: 96, path_id: 1 }
            ]
        );
        assert_eq!(withdrawn, vec![Prefix { net: net("203.0.113.0/24").0, len: 120, path_id: 7 }]);
        assert_eq!(&attrs.as_path[..], &[64501, 3356, 15169]);
        assert_eq!((attrs.local_pref, &attrs.communities[..]), (200, &[65000 << 16 | 7][..]));
        assert_eq!(attrs.next_hop, addr_from_ip("10.0.0.1".parse().unwrap()));
        assert_eq!(attrs.origin_as(64501), 15169);
        // Garbage inside a well-framed message (an unknown BGP message
        // type, a per-peer header cut short, a KEEPALIVE): skipped, the
        // session goes on.
        let mut garbage = route_monitoring(peer, 64501, &[1], &[(Some(1), [10, 0, 0, 0], 8)], &[]);
        garbage[HEADER_LEN + 42 + 18] = 9;
        assert_eq!(s.decode(&garbage), Err(BmpError::Malformed));
        assert_eq!(s.decode(&message(0, &[0; 10])), Err(BmpError::Malformed));
        assert_eq!(
            s.decode(&message(0, &[&per_peer(peer, 64501)[..], &bgp(4, &[])].concat())),
            Err(BmpError::NotUpdate)
        );
        assert!(!BmpError::Malformed.fatal());
        assert_eq!(s.decode(&message(1, &per_peer(peer, 1))), Ok(Event::Statistics));
        assert_eq!(s.decode(&message(6, &[1, 2, 3])), Ok(Event::Mirroring));
        assert_eq!(s.decode(&message(9, &[])), Err(BmpError::Type));
        let Ok(Event::PeerDown { .. }) = s.decode(&message(2, &[&per_peer(peer, 64501)[..], &[2]].concat())) else {
            panic!("peer down")
        };
        assert_eq!(s.peers(), 0);
        assert_eq!(s.decode(&message(5, &[])), Ok(Event::Termination));
    }

    #[test]
    fn add_path_only_when_the_router_receives_and_the_peer_sends() {
        let mut s = Session::default();
        s.decode(&message(4, &[])).unwrap();
        for (router, peer, expect) in [(1, 2, true), (3, 3, true), (2, 1, false), (0, 3, false), (1, 0, false)] {
            let Ok(Event::PeerUp { add_path, .. }) = s.decode(&peer_up([10, 0, 0, 9], 1, router, peer)) else {
                panic!("peer up")
            };
            assert_eq!(add_path, expect, "router {router}, peer {peer}");
        }
        // A route monitoring message without a Peer Up: parsed without path ids.
        let update = route_monitoring([10, 0, 0, 3], 1, &[1], &[(None, [192, 0, 2, 0], 24)], &[]);
        let Ok(Event::Update { announced, .. }) = s.decode(&update) else { panic!("update") };
        assert_eq!(announced[0].path_id, 0);
    }

    /// The fuzz target's body on a whole session, cut anywhere.
    #[test]
    fn the_fuzz_harness_takes_a_session_cut_anywhere() {
        let peer = [10, 0, 0, 2];
        let stream = [
            message(4, &[]),
            peer_up(peer, 64501, 3, 3),
            route_monitoring(peer, 64501, &[64501, 15169], &[(Some(1), [198, 51, 100, 0], 24)], &[]),
            route_monitoring(
                peer,
                64501,
                &[64501],
                &[(Some(2), [198, 51, 100, 0], 24), (Some(1), [10, 0, 0, 0], 8)],
                &[],
            ),
            route_monitoring(peer, 64501, &[], &[], &[(Some(1), [198, 51, 100, 0], 24)]),
            message(2, &[&per_peer(peer, 64501)[..], &[2]].concat()),
        ]
        .concat();
        for cut in 0..=stream.len() {
            crate::harness::bmp_stream(&stream[..cut]);
        }
    }

    #[test]
    fn headers_that_break_the_framing_are_fatal() {
        assert_eq!(header(&[2, 0, 0, 0, 6, 4]), Err(BmpError::Version));
        assert_eq!(header(&[3, 0, 0, 0, 5, 4]), Err(BmpError::Length));
        assert_eq!(header(&[3, 0, 0x10, 0, 1, 4]), Err(BmpError::Length));
        assert_eq!(header(&[3, 0, 0, 0, 6, 4]), Ok((Some(MessageType::Initiation), 6)));
        assert!(BmpError::Version.fatal() && BmpError::Length.fatal() && !BmpError::Malformed.fatal());
    }
}
