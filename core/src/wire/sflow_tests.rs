//! Hand-crafted sFlow v5 datagrams for every decoder path.

use crate::encode::{sampled_packet, sflow_v5, SflowAgent, SflowSampleOptions};
use crate::flow::{addr_from_v4, addr_to_ip, Field, FlowRecord, AS_PATH_MAX};
use crate::wire::testing::{decode, sample_flow_v4, Decoded};
use crate::{Decoder, Reason};

fn agent() -> SflowAgent {
    SflowAgent { address: addr_from_v4([192, 0, 2, 99]), sub_agent_id: 3, sequence: 10, uptime_ms: 1000 }
}

fn routed_flow() -> FlowRecord {
    let mut f = sample_flow_v4();
    f.set_sampling_rate(2048);
    f.set_src_mac([2, 0, 0, 0, 0, 1]);
    f.set_dst_mac([2, 0, 0, 0, 0, 2]);
    f.set_src_vlan(10);
    f.set_dst_vlan(20);
    f.set_ip_ttl(61);
    f.set_ip_tos(0x20);
    f.set_next_hop(addr_from_v4([192, 0, 2, 254]));
    f.set_bgp_next_hop(addr_from_v4([203, 0, 113, 1]));
    f.set_src_net_mask(24);
    f.set_dst_net_mask(16);
    f.set_src_as(64500);
    for asn in [64501, 64502, 15169] {
        f.push_dst_as_path(asn);
    }
    f.set_dst_as(15169);
    f.push_dst_community(64500 << 16 | 100);
    f
}

#[test]
fn flow_sample_with_extended_records() {
    for expanded in [false, true] {
        let mut out = Vec::new();
        sflow_v5(&agent(), SflowSampleOptions { expanded, extended: true }, &[routed_flow()], &mut out);
        let Decoded(flows, r) = decode(&mut Decoder::default(), &out);
        assert!(r.is_ok(), "{r:?}");
        let f = &flows[0];
        assert_eq!(addr_to_ip(&f.exporter_address).to_string(), "192.0.2.99");
        assert_eq!((f.observation_domain, f.sampling_rate, f.packets, f.bytes), (3, 2048, 1, 123_456));
        assert_eq!((f.in_if_index, f.out_if_index), (7, 9));
        assert_eq!((f.src_port, f.dst_port, f.proto, f.tcp_flags), (40000, 443, 6, 0x1b));
        assert_eq!((f.src_vlan, f.dst_vlan, f.ip_ttl, f.ip_tos), (10, 20, 61, 0x20));
        assert_eq!((f.src_net_mask, f.dst_net_mask), (24, 16));
        assert_eq!(addr_to_ip(&f.bgp_next_hop).to_string(), "203.0.113.1");
        assert_eq!((f.src_as, f.dst_as), (64500, 15169));
        assert_eq!(f.dst_as_path(), &[64501, 64502, 15169]);
        assert_eq!(f.dst_communities(), &[64500 << 16 | 100]);
    }
}

/// XDR words for hand-built samples.
struct Xdr(Vec<u8>);

impl Xdr {
    fn new() -> Self {
        Xdr(Vec::new())
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }
    fn record(self, format: u32, body: &Xdr) -> Self {
        self.u32(format).u32(body.0.len() as u32).bytes(&body.0)
    }
}

fn datagram(samples: &[(u32, Xdr)]) -> Vec<u8> {
    let mut d = Xdr::new().u32(5).u32(1).bytes(&[192, 0, 2, 99]).u32(0).u32(1).u32(0).u32(samples.len() as u32);
    for (format, body) in samples {
        d = d.record(*format, body);
    }
    d.0
}

/// A compact flow sample with the given output interface word and records.
fn flow_sample(output: u32, records: &[(u32, Xdr)]) -> Xdr {
    let mut s = Xdr::new().u32(1).u32(5).u32(100).u32(0).u32(0).u32(4).u32(output).u32(records.len() as u32);
    for (format, body) in records {
        s = s.record(*format, body);
    }
    s
}

fn header_record(protocol: u32, packet: &[u8]) -> Xdr {
    Xdr::new().u32(protocol).u32(1500).u32(4).u32(packet.len() as u32).bytes(packet)
}

#[test]
fn qinq_and_mpls_in_the_sampled_header() {
    let mut inner = Vec::new();
    sampled_packet(&sample_flow_v4(), &mut inner);
    let mut qinq = inner[..12].to_vec();
    qinq.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8]);
    qinq.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]);
    qinq.extend_from_slice(&inner[14..]);
    let d = datagram(&[(1, flow_sample(9, &[(1, header_record(1, &qinq))]))]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    let f = &flows[0];
    assert_eq!(f.src_vlan, 100, "the outer (service) tag");
    assert_eq!(f.mpls_labels(), &[16, 32]);
    assert_eq!((f.etype, f.proto, f.src_port, f.bytes), (0x0800, 6, 40000, 1500));
}

#[test]
fn sampled_ipv4_and_ipv6_records() {
    let v4 = Xdr::new().u32(60).u32(17).bytes(&[10, 0, 0, 1]).bytes(&[10, 0, 0, 2]).u32(53).u32(5353).u32(0).u32(0x10);
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[15] = 1;
    let v6 = Xdr::new().u32(80).u32(6).bytes(&a).bytes(&a).u32(443).u32(50000).u32(0x12).u32(0);
    let d = datagram(&[(1, flow_sample(9, &[(3, v4)])), (1, flow_sample(9, &[(4, v6)]))]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    assert_eq!((flows[0].bytes, flows[0].proto, flows[0].dst_port, flows[0].ip_tos), (60, 17, 5353, 0x10));
    assert_eq!((flows[1].etype, flows[1].tcp_flags, flows[1].src_port), (0x86dd, 0x12, 443));
    assert_eq!(addr_to_ip(&flows[1].src_addr).to_string(), "2001::1");
}

#[test]
fn discarded_multiple_and_internal_interfaces() {
    let rec =
        || [(3, Xdr::new().u32(60).u32(17).bytes(&[1, 1, 1, 1]).bytes(&[2, 2, 2, 2]).u32(1).u32(2).u32(0).u32(0))];
    let discard = 1 << 30 | 258;
    let multiple = 2 << 30 | 3;
    let internal = 0x3fff_ffff;
    let d = datagram(&[
        (1, flow_sample(discard, &rec())),
        (1, flow_sample(multiple, &rec())),
        (1, flow_sample(internal, &rec())),
    ]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    assert_eq!(flows.len(), 3);
    assert_eq!((flows[0].out_if_index, flows[0].forwarding_status), (0, 128));
    assert!(!flows[1].has(Field::ForwardingStatus));
    assert_eq!((flows[1].out_if_index, flows[2].out_if_index), (0, 0));
}

#[test]
fn counter_samples_are_counted_unknown_samples_are_unsupported() {
    let flow =
        flow_sample(9, &[(3, Xdr::new().u32(60).u32(17).bytes(&[1; 4]).bytes(&[2; 4]).u32(1).u32(2).u32(0).u32(0))]);
    let counters = Xdr::new().u32(1).u32(1).u32(0);
    let d = datagram(&[(2, counters), (7, Xdr::new().u32(0)), (1, flow)]);
    let mut dec = Decoder::default();
    let Decoded(flows, r) = decode(&mut dec, &d);
    assert!(r.is_ok());
    assert_eq!(flows.len(), 1, "a bad sample does not spoil the next");
    assert_eq!(dec.counters().counter_samples, 1);
    assert_eq!(dec.counters().errors[Reason::Unsupported as usize], 1);
}

#[test]
fn long_as_paths_are_cut_and_counted() {
    let mut gw = Xdr::new().u32(1).bytes(&[1, 1, 1, 1]).u32(1).u32(2).u32(3).u32(1).u32(2).u32(40);
    for asn in 0..40 {
        gw = gw.u32(asn);
    }
    gw = gw.u32(0).u32(100);
    let d = datagram(&[(1, flow_sample(9, &[(1003, gw)]))]);
    let mut dec = Decoder::default();
    let Decoded(flows, _) = decode(&mut dec, &d);
    assert_eq!(flows[0].dst_as_path().len(), AS_PATH_MAX);
    assert_eq!(flows[0].dst_as, 39, "the last AS of the full path");
    assert_eq!(dec.counters().lists_truncated, 1);
}

#[test]
fn malformed_datagrams() {
    let mut dec = Decoder::default();
    let good = datagram(&[(1, flow_sample(9, &[]))]);
    assert_eq!(decode(&mut dec, &good[..20]).1.unwrap_err().reason, Reason::Truncated);
    let mut bad_agent = good.clone();
    bad_agent[7] = 9;
    assert_eq!(decode(&mut dec, &bad_agent).1.unwrap_err().reason, Reason::Unsupported);
    let mut long_sample = good.clone();
    long_sample[35] = 0xff;
    assert_eq!(decode(&mut dec, &long_sample).1.unwrap_err().reason, Reason::Truncated);
    // An AS path segment longer than the record is a bad length, not a huge loop.
    let gw = Xdr::new().u32(1).bytes(&[1, 1, 1, 1]).u32(1).u32(2).u32(3).u32(1).u32(2).u32(0x7fff_ffff);
    let d = datagram(&[(1, flow_sample(9, &[(1003, gw)]))]);
    decode(&mut dec, &d);
    assert_eq!(dec.counters().errors[Reason::BadLength as usize], 1);
}
