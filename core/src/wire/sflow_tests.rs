//! Hand-crafted sFlow v5 datagrams for every decoder path.

use crate::encode::{sampled_packet, sflow_v5, SflowAgent, SflowSampleOptions};
use crate::flow::{addr_from_v4, addr_to_ip, Field, FlowRecord, AS_PATH_MAX};
use crate::wire::testing::{decode, sample_flow_v4, Decoded};
use crate::wire::{Datagram, Decapsulation, ListenerOptions, TimestampSource};
use crate::{Decoder, Reason};

fn agent() -> SflowAgent {
    SflowAgent { address: addr_from_v4([192, 0, 2, 99]), sub_agent_id: 3, sequence: 10, uptime_ms: 1000 }
}

fn routed_flow() -> FlowRecord {
    let mut f = sample_flow_v4();
    f.set_bytes(1_456);
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
        assert_eq!((f.observation_domain, f.sampling_rate, f.packets, f.bytes), (3, 2048, 1, 1_456));
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
    let mut flow = sample_flow_v4();
    flow.set_bytes(1_200);
    sampled_packet(&flow, &mut inner);
    let mut qinq = inner[..12].to_vec();
    qinq.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8]);
    qinq.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]);
    qinq.extend_from_slice(&inner[14..]);
    let d = datagram(&[(1, flow_sample(9, &[(1, header_record(1, &qinq))]))]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    let f = &flows[0];
    assert_eq!(f.src_vlan, 100, "the outer (service) tag");
    assert_eq!(f.mpls_labels(), &[16, 32]);
    // Bytes: the IPv4 total length, not the 1500-byte frame.
    assert_eq!((f.etype, f.proto, f.src_port, f.bytes), (0x0800, 6, 40000, 1_200));
}

#[test]
fn bytes_are_layer_3_bytes() {
    let mut v6 = sample_flow_v4();
    v6.set_src_addr([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.set_dst_addr([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v6.set_bytes(900);
    let mut packet = Vec::new();
    sampled_packet(&v6, &mut packet);
    // A header cut inside the Ethernet header: the frame less 18 bytes.
    let cut = &packet[..13];
    let ethernet = Xdr::new().u32(1000).bytes(&[2, 0, 0, 0, 0, 1]).bytes(&[2, 0, 0, 0, 0, 2]).u32(0x0800);
    let d = datagram(&[
        (1, flow_sample(9, &[(1, header_record(1, &packet))])),
        (1, flow_sample(9, &[(1, header_record(1, cut))])),
        (1, flow_sample(9, &[(2, ethernet)])),
    ]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    assert_eq!((flows[0].etype, flows[0].bytes, flows[0].packets), (0x86dd, 900, 1), "payload length + 40");
    assert_eq!(flows[1].bytes, 1500 - 18);
    assert_eq!(flows[2].bytes, 1000 - 18);
}

#[test]
fn the_extended_switch_vlans_win_over_the_header_tags_in_any_order() {
    let mut tagged = sample_flow_v4();
    tagged.set_src_vlan(300);
    tagged.set_bytes(500);
    let mut packet = Vec::new();
    sampled_packet(&tagged, &mut packet);
    let switch = || Xdr::new().u32(10).u32(0).u32(20).u32(0);
    let d = datagram(&[
        (1, flow_sample(9, &[(1001, switch()), (1, header_record(1, &packet))])),
        (1, flow_sample(9, &[(1, header_record(1, &packet)), (1001, switch())])),
        (1, flow_sample(9, &[(1, header_record(1, &packet))])),
    ]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    for f in &flows[..2] {
        assert_eq!((f.src_vlan, f.dst_vlan, f.bytes), (10, 20, 500));
    }
    assert_eq!(flows[2].src_vlan, 300, "without the switch record, the tag");
    assert!(!flows[2].has(Field::DstVlan));
}

#[test]
fn an_evpn_control_word_leads_to_the_inner_frame() {
    let mut inner = Vec::new();
    let mut flow = sample_flow_v4();
    flow.set_bytes(700);
    flow.set_src_mac([2, 0, 0, 0, 0, 0xaa]);
    sampled_packet(&flow, &mut inner);
    let mut frame = vec![0xee; 12];
    frame.extend_from_slice(&[0x88, 0x47]);
    frame.extend_from_slice(&((3000u32 << 12) | 0x100 | 64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]); // control word
    frame.extend_from_slice(&inner);
    let d = datagram(&[(1, flow_sample(9, &[(1, header_record(1, &frame))]))]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    let f = &flows[0];
    assert_eq!(f.mpls_labels(), &[3000]);
    assert_eq!((f.src_mac, f.etype, f.proto, f.src_port, f.bytes), ([2, 0, 0, 0, 0, 0xaa], 0x0800, 6, 40000, 700));
    assert_eq!(addr_to_ip(&f.dst_addr).to_string(), "198.51.100.7");
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
    let discard = |reason: u32| 1 << 30 | reason;
    let multiple = 2 << 30 | 3;
    let internal = 0x3fff_ffff;
    let d = datagram(&[
        (1, flow_sample(discard(258), &rec())),
        (1, flow_sample(multiple, &rec())),
        (1, flow_sample(internal, &rec())),
        (1, flow_sample(discard(1), &rec())),
        (1, flow_sample(discard(256), &rec())),
        (1, flow_sample(discard(257), &rec())),
    ]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &d);
    assert_eq!(flows.len(), 6);
    // ACL: dropped, ACL deny.
    assert_eq!((flows[0].out_if_index, flows[0].forwarding_status), (0, 129));
    assert!(!flows[1].has(Field::ForwardingStatus));
    assert_eq!((flows[1].out_if_index, flows[2].out_if_index), (0, 0));
    // Host unreachable: unroutable; unknown: dropped; TTL exceeded: bad TTL.
    let status: Vec<u8> = flows[3..].iter().map(|f| f.forwarding_status).collect();
    assert_eq!(status, [131, 128, 137]);
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

/// IPv4 + UDP headers to `dst_port` carrying `payload` (checksums 0).
fn ipv4_udp(src: [u8; 4], dst: [u8; 4], dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[0x30, 0x39, (dst_port >> 8) as u8, dst_port as u8, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

/// An outer IPv4 packet of protocol `proto` carrying `payload`.
fn ipv4_of(proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0, 0, 64, proto, 0, 0];
    p.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
    p.extend_from_slice(payload);
    p
}

fn ethernet(etype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0xa0, 0, 0, 0, 0, 2, 0xa0, 0, 0, 0, 0, 1, (etype >> 8) as u8, etype as u8];
    frame.extend_from_slice(payload);
    frame
}

/// The customer's packet: Ethernet, IPv4, TCP 40000 → 443, 800 IP bytes.
fn inner_frame() -> Vec<u8> {
    let mut flow = sample_flow_v4();
    flow.set_bytes(800);
    flow.set_src_mac([2, 0, 0, 0, 0, 0xaa]);
    let mut frame = Vec::new();
    sampled_packet(&flow, &mut frame);
    frame
}

fn decode_with(options: ListenerOptions, payload: &[u8], dec: &mut Decoder) -> Vec<FlowRecord> {
    let d = Datagram { exporter: addr_from_v4([192, 0, 2, 99]), received_ns: 7_000_000_000, payload, options };
    let mut flows = Vec::new();
    let _ = dec.decode(&d, &mut |f: &FlowRecord| flows.push(f.clone()));
    flows
}

fn tunnelled(decap: Decapsulation, packet: &[u8]) -> (Vec<FlowRecord>, u64) {
    let d = datagram(&[(1, flow_sample(9, &[(1, header_record(1, packet))]))]);
    let mut dec = Decoder::default();
    let options = ListenerOptions { decapsulation: decap, ..Default::default() };
    let flows = decode_with(options, &d, &mut dec);
    (flows, dec.counters().errors[Reason::NotEncapsulated as usize])
}

fn assert_inner(f: &FlowRecord) {
    assert_eq!(addr_to_ip(&f.src_addr).to_string(), "10.0.0.1");
    assert_eq!(addr_to_ip(&f.dst_addr).to_string(), "198.51.100.7");
    assert_eq!((f.proto, f.src_port, f.dst_port, f.bytes), (6, 40000, 443, 800));
}

#[test]
fn vxlan_gre_ipip_and_srv6_are_taken_apart() {
    let inner = inner_frame();
    let inner_ip = &inner[14..];
    // VXLAN: UDP to 4789, 8 bytes of VXLAN header, the customer's frame.
    let vxlan = [&[0x08, 0, 0, 0, 0, 0, 100, 0][..], &inner].concat();
    let packet = ethernet(0x0800, &ipv4_udp([192, 0, 2, 1], [192, 0, 2, 2], 4789, &vxlan));
    let (flows, _) = tunnelled(Decapsulation::Vxlan, &packet);
    assert_inner(&flows[0]);
    assert_eq!(flows[0].src_mac, [2, 0, 0, 0, 0, 0xaa], "the inner frame's MACs");
    // GRE with a key (flag K: 4 more bytes), carrying IPv4.
    let gre = [&[0x20, 0, 0x08, 0, 0, 0, 0, 42][..], inner_ip].concat();
    let (flows, _) = tunnelled(Decapsulation::Gre, &ethernet(0x0800, &ipv4_of(47, &gre)));
    assert_inner(&flows[0]);
    assert_eq!(flows[0].src_mac, [0xa0, 0, 0, 0, 0, 1], "an IP tunnel keeps the outer MACs");
    // IP in IP.
    let (flows, _) = tunnelled(Decapsulation::Ipip, &ethernet(0x0800, &ipv4_of(4, inner_ip)));
    assert_inner(&flows[0]);
    // SRv6: IPv6, a segment routing header (43) with one segment, then IPv4.
    let mut srv6 = vec![0x60, 0, 0, 0, 0, 0, 43, 64];
    srv6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    srv6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    srv6.extend_from_slice(&[4, 2, 4, 0, 0, 0, 0, 0]);
    srv6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    let payload = (srv6.len() - 40 + inner_ip.len()) as u16;
    srv6[4..6].copy_from_slice(&payload.to_be_bytes());
    srv6.extend_from_slice(inner_ip);
    let (flows, _) = tunnelled(Decapsulation::Srv6, &ethernet(0x86dd, &srv6));
    assert_inner(&flows[0]);
    assert_eq!(flows[0].etype, 0x0800);
    assert!(!flows[0].has(Field::IPv6FlowLabel), "the outer IPv6's fields are gone");
}

#[test]
fn a_sample_outside_the_tunnel_gives_no_flow_and_is_counted() {
    let plain = inner_frame();
    for decap in [Decapsulation::Vxlan, Decapsulation::Gre, Decapsulation::Ipip, Decapsulation::Srv6] {
        let (flows, dropped) = tunnelled(decap, &plain);
        assert!(flows.is_empty(), "{decap:?}");
        assert_eq!(dropped, 1, "{decap:?}");
    }
    // UDP to another port is no VXLAN.
    let (flows, dropped) = tunnelled(Decapsulation::Vxlan, &ethernet(0x0800, &ipv4_udp([1; 4], [2; 4], 53, &[0; 8])));
    assert_eq!((flows.len(), dropped), (0, 1));
    // A sample with no sampled header cannot be taken apart.
    let v4 = Xdr::new().u32(60).u32(17).bytes(&[10, 0, 0, 1]).bytes(&[10, 0, 0, 2]).u32(53).u32(5353).u32(0).u32(0);
    let d = datagram(&[(1, flow_sample(9, &[(3, v4)]))]);
    let mut dec = Decoder::default();
    let options = ListenerOptions { decapsulation: Decapsulation::Gre, ..Default::default() };
    assert!(decode_with(options, &d, &mut dec).is_empty());
    assert_eq!(dec.counters().errors[Reason::NotEncapsulated as usize], 1);
    // Without decapsulation the same tunnel is reported as it is: the outer
    // packet (20 bytes around the 40 sampled bytes of the inner headers).
    let (flows, _) = tunnelled(Decapsulation::None, &ethernet(0x0800, &ipv4_of(4, &plain[14..])));
    assert_eq!((flows[0].proto, flows[0].bytes), (4, 60));
}

#[test]
fn sflow_keeps_the_kernel_time_whatever_the_source() {
    for timestamp_source in TimestampSource::ALL {
        let d = datagram(&[(1, flow_sample(9, &[(1, header_record(1, &inner_frame()))]))]);
        let options = ListenerOptions { timestamp_source, ..Default::default() };
        let flows = decode_with(options, &d, &mut Decoder::default());
        assert_eq!(flows[0].time_received_ns, 7_000_000_000, "{timestamp_source:?}");
    }
}
