//! What a shard completes in each flow before storing it: its networks
//! (`enrich::networks`), its AS numbers and masks from the configured
//! providers, and its sampling rate from the exporter's overrides and
//! defaults (`[enrichment]`).
//!
//! - AS numbers: the first provider in `asn_providers` with a non-zero
//!   answer wins (`flow`, `flow-except-private`, `flow-except-default-route`,
//!   `routing`, `routing-except-private`, `networks`). Private AS numbers:
//!   0, 23456, 64496–65551 and from 4200000000 on.
//! - Masks: the first non-zero of `net_providers` (`flow`, `routing`).
//! - `routing`: the BGP route of the address (`enrich::rib`, from BMP):
//!   for the destination, the route learned from the flow's exporter, else
//!   the one with the flow's next hop, else the best; its origin AS and
//!   its prefix length. Addresses are looked up only when a `routing`
//!   provider is configured; nothing answers before routes arrive.
//! - Sampling rate: an exporter's `override_sampling_rate` wins over
//!   everything; a flow without a rate (none in the flow nor from its
//!   exporter's options templates, which the decoder applied already) gets
//!   its exporter's `default_sampling_rate`; without one it is stored with
//!   rate 1 and counted as missing, never dropped.
//!
//! The exporter's override and default are kept for the next flows of the
//! same exporter (a datagram's flows share it), so a flow costs two
//! range lookups (source, destination) when networks are configured, and a
//! few compares otherwise.

use std::sync::Arc;

use super::metadata::SubnetMap;
use super::networks::Networks;
use super::rib::Routes;
use crate::config::{AsnProvider, EnrichmentConfig, NetProvider};
use crate::flow::{Addr, Field, FlowRecord};

/// What a flow is stored with, besides its own fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enriched {
    /// The networks' attribute sets (`Networks::lookup`; 0: none).
    pub src_net: u32,
    pub dst_net: u32,
    pub src_as: u32,
    pub dst_as: u32,
    pub src_mask: u8,
    pub dst_mask: u8,
    pub sampling_rate: u32,
    /// The flow had no rate and its exporter no default: stored with 1.
    pub rate_missing: bool,
    /// The source and destination routes (`Routes::attrs`), when looked
    /// up and found.
    pub src_route: Option<u32>,
    pub dst_route: Option<u32>,
    /// The flow's NextHop is the destination route's next hop: the
    /// `routing` net provider answers before any other does.
    pub route_next_hop: bool,
}

/// Where sampling rates came from, and lookups: a shard's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnrichCounts {
    /// Addresses looked up in the networks table, and those in no network.
    pub lookups: u64,
    pub misses: u64,
    /// Flows whose rate came from an override, from a default; flows with none.
    pub rate_overridden: u64,
    pub rate_defaulted: u64,
    pub rate_missing: u64,
    /// Addresses looked up in the BGP routes, and those without a route.
    pub route_lookups: u64,
    pub route_misses: u64,
}

/// Whether `asn` is private or reserved (not worth storing as an origin).
pub fn private_asn(asn: u32) -> bool {
    asn == 0 || asn == 23_456 || (64_496..=65_551).contains(&asn) || asn >= 4_200_000_000
}

/// A shard's enrichment of flows: the networks table it reads (replaced
/// whole by the control plane), the providers, the rates.
pub struct FlowEnricher {
    networks: Arc<Networks>,
    /// Whether any network can be known (else no lookup is made).
    lookups: bool,
    asn_providers: Vec<AsnProvider>,
    net_providers: Vec<NetProvider>,
    /// BGP routes, and whether a provider asks for them.
    routes: Arc<Routes>,
    routing: bool,
    overrides: Option<SubnetMap<u32>>,
    defaults: Option<SubnetMap<u32>>,
    /// The last exporter, its override and default (0: none).
    last: Option<(Addr, u32, u32)>,
    pub counts: EnrichCounts,
}

impl FlowEnricher {
    /// `lookups`: whether networks are configured (`NetworksConfig::enabled`).
    pub fn new(config: &EnrichmentConfig, lookups: bool) -> FlowEnricher {
        let map = |r: &Option<crate::config::SamplingRates>| {
            r.as_ref().map(|r| {
                let entries = r.entries();
                SubnetMap::new(entries.iter().map(|(s, rate)| (s.as_str(), *rate)).collect::<Vec<_>>())
            })
        };
        FlowEnricher {
            networks: Arc::new(Networks::default()),
            lookups,
            asn_providers: config.asn_providers.clone(),
            net_providers: config.net_providers.clone(),
            routes: Arc::new(Routes::default()),
            routing: config
                .asn_providers
                .iter()
                .any(|p| matches!(p, AsnProvider::Routing | AsnProvider::RoutingExceptPrivate))
                || config.net_providers.contains(&NetProvider::Routing),
            overrides: map(&config.override_sampling_rate),
            defaults: map(&config.default_sampling_rate),
            last: None,
            counts: EnrichCounts::default(),
        }
    }

    /// The table lookups read from now on.
    pub fn set_networks(&mut self, networks: Arc<Networks>) {
        self.networks = networks;
    }

    pub fn networks(&self) -> &Arc<Networks> {
        &self.networks
    }

    /// Looks addresses up in the routes even when no provider asks (a
    /// stored column takes the route's AS path or communities).
    pub fn look_up_routes(&mut self) {
        self.routing = true;
    }

    /// The BGP routes lookups read from now on.
    pub fn set_routes(&mut self, routes: Arc<Routes>) {
        self.routes = routes;
    }

    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// `flow`'s networks, AS numbers, masks and sampling rate.
    #[inline]
    pub fn enrich(&mut self, flow: &FlowRecord) -> Enriched {
        let mut e = Enriched::default();
        if self.lookups {
            [e.src_net, e.dst_net] = self.networks.lookup_pair(&flow.src_addr, &flow.dst_addr);
            self.counts.lookups += 2;
            self.counts.misses += u64::from(e.src_net == 0) + u64::from(e.dst_net == 0);
        }
        // The routes: (origin AS, prefix length), 0s without.
        let (mut src_route, mut dst_route) = ((0, 0), (0, 0));
        if self.routing && !self.routes.is_empty() {
            let none = [0u8; 16];
            let next_hop = if flow.has(Field::NextHop) { &flow.next_hop } else { &none };
            let [src, dst] =
                self.routes.lookup_pair([&flow.src_addr, &flow.dst_addr], &flow.exporter_address, [&none, next_hop]);
            self.counts.route_lookups += 2;
            self.counts.route_misses += u64::from(src.is_none()) + u64::from(dst.is_none());
            src_route = src.map_or((0, 0), |r| (r.asn, r.mask));
            dst_route = dst.map_or((0, 0), |r| (r.asn, r.mask));
            e.src_route = src.map(|r| r.route);
            e.dst_route = dst.map(|r| r.route);
        }
        let field = |f: Field, v: u32| if flow.has(f) { v } else { 0 };
        let flow_mask = |f: Field, v: u8| if flow.has(f) { v } else { 0 };
        let mask = |flow_value: u8, route_value: u8| {
            self.net_providers.iter().find_map(|p| match p {
                NetProvider::Flow => Some(flow_value).filter(|&m| m != 0),
                NetProvider::Routing => Some(route_value).filter(|&m| m != 0),
            })
        };
        e.src_mask = mask(flow_mask(Field::SrcNetMask, flow.src_net_mask), src_route.1).unwrap_or(0);
        e.dst_mask = mask(flow_mask(Field::DstNetMask, flow.dst_net_mask), dst_route.1).unwrap_or(0);
        // The next hop: the flow's (when it has one), the route's.
        let route_id = e.dst_route;
        e.route_next_hop = self
            .net_providers
            .iter()
            .find_map(|p| match p {
                NetProvider::Flow => (flow.has(Field::NextHop) && flow.next_hop != [0; 16]).then_some(false),
                NetProvider::Routing => {
                    route_id.and_then(|r| self.routes.attrs(r)).is_some_and(|a| a.next_hop != [0; 16]).then_some(true)
                }
            })
            .unwrap_or(false);
        let networks = &self.networks;
        let asn = |flow_asn: u32, mask: u8, net: u32, route_asn: u32| {
            self.asn_providers
                .iter()
                .find_map(|p| {
                    let answer = match p {
                        AsnProvider::Flow => flow_asn,
                        AsnProvider::FlowExceptPrivate if !private_asn(flow_asn) => flow_asn,
                        AsnProvider::FlowExceptDefaultRoute if mask != 0 => flow_asn,
                        AsnProvider::Routing => route_asn,
                        AsnProvider::RoutingExceptPrivate if !private_asn(route_asn) => route_asn,
                        AsnProvider::Networks => networks.set(net).asn,
                        _ => 0,
                    };
                    Some(answer).filter(|&a| a != 0)
                })
                .unwrap_or(0)
        };
        e.src_as = asn(field(Field::SrcAS, flow.src_as), e.src_mask, e.src_net, src_route.0);
        e.dst_as = asn(field(Field::DstAS, flow.dst_as), e.dst_mask, e.dst_net, dst_route.0);
        let (overridden, default) = self.rates_of(&flow.exporter_address);
        let rate = if flow.has(Field::SamplingRate) { flow.sampling_rate.min(u32::MAX as u64) as u32 } else { 0 };
        e.sampling_rate = if overridden != 0 {
            self.counts.rate_overridden += 1;
            overridden
        } else if rate != 0 {
            rate
        } else if default != 0 {
            self.counts.rate_defaulted += 1;
            default
        } else {
            self.counts.rate_missing += 1;
            e.rate_missing = true;
            1
        };
        e
    }

    /// The exporter's override and default rates (0: none).
    #[inline]
    fn rates_of(&mut self, exporter: &Addr) -> (u32, u32) {
        match self.last {
            Some((a, o, d)) if a == *exporter => (o, d),
            _ => {
                let o = self.overrides.as_ref().and_then(|m| m.get(exporter)).copied().unwrap_or(0);
                let d = self.defaults.as_ref().and_then(|m| m.get(exporter)).copied().unwrap_or(0);
                self.last = Some((*exporter, o, d));
                (o, d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NetworkInfo, SamplingRates};
    use crate::enrich::networks::Builder;
    use crate::flow::{addr_from_ip, addr_from_v4};

    fn flow(exporter: [u8; 4], src: [u8; 4], rate: Option<u64>) -> FlowRecord {
        let mut f = FlowRecord::default();
        f.set_exporter_address(addr_from_v4(exporter));
        f.set_src_addr(addr_from_v4(src));
        f.set_dst_addr(addr_from_v4([203, 0, 113, 9]));
        if let Some(r) = rate {
            f.set_sampling_rate(r);
        }
        f
    }

    #[test]
    fn overrides_then_the_flow_then_defaults_then_missing() {
        let config = EnrichmentConfig {
            default_sampling_rate: Some(SamplingRates::BySubnet(
                [("192.0.2.0/24".to_string(), 1000), ("192.0.2.128/25".to_string(), 2000)].into(),
            )),
            override_sampling_rate: Some(SamplingRates::BySubnet([("198.51.100.0/24".to_string(), 10)].into())),
            ..EnrichmentConfig::default()
        };
        let mut e = FlowEnricher::new(&config, false);
        assert_eq!(e.enrich(&flow([192, 0, 2, 1], [10, 0, 0, 1], Some(64))).sampling_rate, 64, "the flow's own");
        assert_eq!(e.enrich(&flow([192, 0, 2, 1], [10, 0, 0, 1], None)).sampling_rate, 1000);
        assert_eq!(e.enrich(&flow([192, 0, 2, 200], [10, 0, 0, 1], Some(0))).sampling_rate, 2000, "most specific");
        assert_eq!(e.enrich(&flow([198, 51, 100, 7], [10, 0, 0, 1], Some(64))).sampling_rate, 10, "overridden");
        let missing = e.enrich(&flow([203, 0, 113, 1], [10, 0, 0, 1], None));
        assert!(missing.rate_missing && missing.sampling_rate == 1);
        assert_eq!((e.counts.rate_defaulted, e.counts.rate_overridden, e.counts.rate_missing), (2, 1, 1));
        let single = EnrichmentConfig { default_sampling_rate: Some(SamplingRates::All(512)), ..Default::default() };
        let mut e = FlowEnricher::new(&single, false);
        assert_eq!(e.enrich(&flow([203, 0, 113, 1], [10, 0, 0, 1], None)).sampling_rate, 512);
    }

    #[test]
    fn asn_providers_in_order_first_non_zero_wins() {
        let mut b = Builder::new();
        b.add(
            u128::from(std::net::Ipv4Addr::new(10, 0, 0, 0).to_ipv6_mapped()),
            104,
            &NetworkInfo { name: "lan".into(), asn: 64_999, ..Default::default() },
        );
        let networks = Arc::new(b.build());
        let with = |asn_providers: Vec<AsnProvider>, src_as: u32, mask: u8| {
            let config = EnrichmentConfig { asn_providers, ..Default::default() };
            let mut e = FlowEnricher::new(&config, true);
            e.set_networks(networks.clone());
            let mut f = flow([192, 0, 2, 1], [10, 1, 2, 3], Some(1));
            f.set_src_as(src_as);
            f.set_src_net_mask(mask);
            e.enrich(&f)
        };
        use AsnProvider::*;
        assert_eq!(with(vec![Flow, Networks], 3215, 24).src_as, 3215);
        assert_eq!(with(vec![Flow, Networks], 0, 24).src_as, 64_999, "the flow has none");
        assert_eq!(with(vec![FlowExceptPrivate, Networks], 64_512, 24).src_as, 64_999);
        assert_eq!(with(vec![FlowExceptPrivate], 4_200_000_001, 24).src_as, 0);
        assert_eq!(with(vec![FlowExceptDefaultRoute, Networks], 3215, 0).src_as, 64_999, "a default route's AS");
        assert_eq!(with(vec![FlowExceptDefaultRoute], 3215, 16).src_as, 3215);
        assert_eq!(with(vec![Routing, Networks], 3215, 24).src_as, 64_999, "no routes yet");
        let e = with(vec![Networks], 3215, 24);
        assert_eq!((e.src_mask, e.dst_as, e.dst_net), (24, 0, 0));
        assert_ne!(e.src_net, 0);
        let config = EnrichmentConfig { net_providers: vec![NetProvider::Routing], ..Default::default() };
        let mut e = FlowEnricher::new(&config, false);
        let mut f = flow([192, 0, 2, 1], [10, 1, 2, 3], Some(1));
        f.set_src_net_mask(24);
        assert_eq!(e.enrich(&f).src_mask, 0, "the flow's mask is not a provider here");
    }

    #[test]
    fn routing_providers_answer_from_the_routes() {
        use crate::enrich::bmp::{Attrs, PeerKey, Prefix};
        use crate::enrich::rib::Rib;
        let mut rib = Rib::default();
        let exporter = addr_from_ip("192.0.2.1".parse().unwrap());
        let peer = rib.peer(1, exporter, PeerKey { addr: [0; 16], distinguisher: 0 }, 3356);
        let prefix = |a: [u8; 4], len: u8| Prefix {
            net: u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped()),
            len: len + 96,
            ..Prefix::default()
        };
        let attrs = |path: &[u32]| Attrs {
            as_path: path.into(),
            next_hop: addr_from_ip("10.0.0.1".parse().unwrap()),
            ..Attrs::default()
        };
        rib.announce(peer, &[prefix([10, 1, 0, 0], 16)], &attrs(&[64501, 15169]));
        rib.announce(peer, &[prefix([192, 0, 2, 0], 24)], &attrs(&[]));
        rib.announce(peer, &[prefix([198, 51, 100, 0], 24)], &attrs(&[64501, 64512]));
        let config = EnrichmentConfig {
            asn_providers: vec![AsnProvider::RoutingExceptPrivate, AsnProvider::Flow],
            net_providers: vec![NetProvider::Routing, NetProvider::Flow],
            ..Default::default()
        };
        let mut e = FlowEnricher::new(&config, false);
        let mut f = flow([192, 0, 2, 1], [192, 0, 2, 9], Some(1));
        f.set_dst_addr(addr_from_ip("10.1.2.3".parse().unwrap()));
        f.set_src_as(3215);
        f.set_dst_net_mask(8);
        let before = e.enrich(&f);
        assert_eq!((before.dst_as, before.dst_mask, before.src_as), (0, 8, 3215), "no routes yet");
        e.set_routes(Arc::new(rib.snapshot()));
        let after = e.enrich(&f);
        assert_eq!((after.dst_as, after.dst_mask, after.route_next_hop), (15169, 16, true));
        // The flow's own next hop, after the route's (net providers' order).
        let mut own = f.clone();
        own.set_next_hop(addr_from_ip("10.9.9.9".parse().unwrap()));
        assert!(e.enrich(&own).route_next_hop);
        let flow_first =
            EnrichmentConfig { net_providers: vec![NetProvider::Flow, NetProvider::Routing], ..config.clone() };
        let mut e2 = FlowEnricher::new(&flow_first, false);
        e2.set_routes(e.routes().clone());
        assert!(!e2.enrich(&own).route_next_hop, "the flow's next hop first");
        assert!(e2.enrich(&f).route_next_hop, "none in the flow: the route's");
        assert_eq!((after.src_as, after.src_mask), (3356, 24), "an empty path: the peer's AS");
        f.set_dst_addr(addr_from_ip("198.51.100.1".parse().unwrap()));
        assert_eq!(e.enrich(&f).dst_as, 0, "a private origin, and no AS in the flow");
        f.set_dst_addr(addr_from_ip("203.0.113.1".parse().unwrap()));
        assert_eq!(e.enrich(&f).dst_mask, 8, "no route: the flow's mask");
        assert_eq!((e.counts.route_lookups, e.counts.route_misses), (8, 1));
    }
}
