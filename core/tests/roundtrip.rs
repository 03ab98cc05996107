//! Property tests: flows encoded by `weir_core::encode` (the encoder the perf
//! flow generator uses) decode back to the same values, for every field each
//! format carries, over random flows.

use proptest::prelude::*;
use weir_core::encode::{
    netflow_v5, sflow_v5, ExportHeader, MessageBuilder, SflowAgent, SflowSampleOptions, TemplateSpec,
};
use weir_core::flow::{addr_from_v4, Addr};
use weir_core::wire::template::Protocol;
use weir_core::{Datagram, Decoder, Field, FlowRecord};

const EXPORT_TIME_S: u32 = 1_767_225_600;
const UPTIME_MS: u32 = 86_400_000;

fn addr(v6: bool) -> impl Strategy<Value = Addr> {
    if v6 {
        any::<[u8; 16]>()
            .prop_map(|mut a| {
                a[0] = 0x20; // a global address, never IPv4-mapped
                a
            })
            .boxed()
    } else {
        any::<[u8; 4]>().prop_map(addr_from_v4).boxed()
    }
}

/// A flow with every field of the standard templates set.
fn flow(v6: bool) -> impl Strategy<Value = FlowRecord> {
    let addrs = (addr(v6), addr(v6), addr(v6), addr(v6), addr(v6), addr(v6));
    let l4 = (any::<u16>(), any::<u16>(), prop::sample::select(vec![1u8, 6, 17, 58]), any::<u8>(), any::<u16>());
    let counters = (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>());
    let routing = (0u8..=32, 0u8..=32, any::<u32>(), any::<u32>());
    // Flow times: ms precision, within the exporter's uptime.
    let times = (0u64..UPTIME_MS as u64 / 2, 0u64..UPTIME_MS as u64 / 2);
    let l2 = (any::<[u8; 6]>(), any::<[u8; 6]>(), 0u16..4096, 0u16..4096);
    let misc = (any::<u8>(), any::<u8>(), any::<u8>(), any::<u32>(), any::<u16>(), any::<u32>(), any::<u32>());
    // The top label is never 0: above the bottom of the stack, label 0 with
    // traffic class 0 is an all-zero entry, which on the wire is an unused
    // position (exporters pad their templates with zeros; the decoder skips
    // them). Label 0 at the bottom (its S bit set) does round-trip.
    let more = (any::<u16>(), any::<u16>(), 1u32..1 << 20, 0u32..1 << 20, 0u32..1 << 20, any::<(u8, u8)>());
    (addrs, l4, counters, routing, times, l2, misc, more).prop_map(
        move |(a, (sp, dp, proto, tos, flags), c, r, (start, len), (smac, dmac, sv, dv), m, x)| {
            let mut f = FlowRecord::default();
            f.set_src_addr(a.0);
            f.set_dst_addr(a.1);
            f.set_next_hop(a.2);
            f.set_bgp_next_hop(a.3);
            f.set_src_addr_nat(a.4);
            f.set_dst_addr_nat(a.5);
            f.set_src_port(sp);
            f.set_dst_port(dp);
            f.set_proto(proto);
            f.set_ip_tos(tos);
            f.set_tcp_flags(flags);
            f.set_bytes(c.0);
            f.set_packets(c.1);
            f.set_in_if_index(c.2);
            f.set_out_if_index(c.3);
            f.set_in_if_physical_index(c.4);
            f.set_out_if_physical_index(c.5);
            f.set_src_net_mask(r.0);
            f.set_dst_net_mask(r.1);
            f.set_src_as(r.2);
            f.set_dst_as(r.3);
            let boot_ms = EXPORT_TIME_S as u64 * 1000 - UPTIME_MS as u64;
            f.set_flow_start_ns((boot_ms + start) * 1_000_000);
            f.set_flow_end_ns((boot_ms + start + len) * 1_000_000);
            f.set_src_mac(smac);
            f.set_dst_mac(dmac);
            f.set_src_vlan(sv);
            f.set_dst_vlan(dv);
            f.set_flow_direction(m.0 & 1);
            f.set_forwarding_status(m.1);
            f.set_ip_ttl(m.2);
            f.set_ip_fragment_id(m.3);
            f.set_ip_fragment_offset(m.4);
            f.set_ingress_vrf_id(m.5);
            f.set_egress_vrf_id(m.6);
            f.set_src_port_nat(x.0);
            f.set_dst_port_nat(x.1);
            f.set_mpls_label(0, x.2);
            f.set_mpls_label(1, x.3);
            f.set_ipv6_flow_label(x.4);
            if v6 {
                f.set_icmpv6_type(x.5 .0);
                f.set_icmpv6_code(x.5 .1);
            } else {
                f.set_icmpv4_type(x.5 .0);
                f.set_icmpv4_code(x.5 .1);
            }
            f
        },
    )
}

fn decode_all(dec: &mut Decoder, payload: &[u8]) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let d = Datagram { exporter: addr_from_v4([192, 0, 2, 1]), received_ns: 1, payload, ..Default::default() };
    dec.decode(&d, &mut |f: &FlowRecord| out.push(f.clone())).expect("decodes");
    assert_eq!(dec.counters().errors_total(), 0);
    out
}

fn assert_fields(fields: &[Field], sent: &FlowRecord, got: &FlowRecord) {
    for &field in fields {
        assert_eq!(got.value(field), sent.value(field), "{}", field.column());
    }
}

fn templated(protocol: Protocol, flows: &[FlowRecord]) -> Vec<(FlowRecord, FlowRecord, Vec<Field>)> {
    let (t4, t6) = (TemplateSpec::standard_ipv4(256), TemplateSpec::standard_ipv6(257));
    let h = ExportHeader { export_time_s: EXPORT_TIME_S, sys_uptime_ms: UPTIME_MS, sequence: 1, domain: 5 };
    let mut m = MessageBuilder::new(protocol, h, Vec::new());
    m.template(&t4);
    m.template(&t6);
    for f in flows {
        let v6 = weir_core::flow::addr_as_v4(&f.src_addr).is_none();
        m.data(if v6 { &t6 } else { &t4 }, f);
    }
    let got = decode_all(&mut Decoder::default(), &m.finish());
    assert_eq!(got.len(), flows.len());
    flows
        .iter()
        .zip(got)
        .map(|(sent, got)| {
            let v6 = weir_core::flow::addr_as_v4(&sent.src_addr).is_none();
            (sent.clone(), got, if v6 { t6.carried_fields() } else { t4.carried_fields() })
        })
        .collect()
}

fn flows() -> impl Strategy<Value = Vec<FlowRecord>> {
    prop::collection::vec(prop_oneof![flow(false), flow(true)], 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn ipfix_round_trips(flows in flows()) {
        for (sent, got, fields) in templated(Protocol::Ipfix, &flows) {
            assert_fields(&fields, &sent, &got);
            prop_assert_eq!(got.observation_domain, 5);
        }
    }

    #[test]
    fn netflow_v9_round_trips(flows in flows()) {
        for (sent, got, fields) in templated(Protocol::NetflowV9, &flows) {
            assert_fields(&fields, &sent, &got);
        }
    }

    #[test]
    fn netflow_v5_round_trips(mut flows in prop::collection::vec(flow(false), 1..30)) {
        for f in &mut flows {
            // v5 fields are narrower: 16-bit interfaces and ASes, 32-bit counters.
            f.set_in_if_index(f.in_if_index & 0xffff);
            f.set_out_if_index(f.out_if_index & 0xffff);
            f.set_src_as(f.src_as & 0xffff);
            f.set_dst_as(f.dst_as & 0xffff);
            f.set_bytes(f.bytes & 0xffff_ffff);
            f.set_packets(f.packets & 0xffff_ffff);
            f.set_tcp_flags(f.tcp_flags & 0xff);
        }
        let h = ExportHeader { export_time_s: EXPORT_TIME_S, sys_uptime_ms: UPTIME_MS, sequence: 1, domain: 0 };
        let mut out = Vec::new();
        netflow_v5(&h, (0, 0), 10, &flows, &mut out);
        let got = decode_all(&mut Decoder::default(), &out);
        use Field::*;
        let fields = [SrcAddr, DstAddr, NextHop, InIfIndex, OutIfIndex, Packets, Bytes, FlowStart, FlowEnd,
            SrcPort, DstPort, TCPFlags, Proto, IPTos, SrcAS, DstAS, SrcNetMask, DstNetMask];
        for (sent, got) in flows.iter().zip(&got) {
            assert_fields(&fields, sent, got);
            prop_assert_eq!(got.sampling_rate, 10);
        }
    }

    #[test]
    fn sflow_round_trips(
        mut flows in prop::collection::vec(prop_oneof![flow(false), flow(true)], 1..8),
        expanded in any::<bool>(),
        path in prop::collection::vec(any::<u32>(), 0..6),
        communities in prop::collection::vec(any::<u32>(), 0..6),
    ) {
        for f in &mut flows {
            f.set_sampling_rate(f.bytes % 100_000 + 1);
            // Bytes are the sampled packet's IP length: at least its
            // headers, at most what the 16-bit length field holds.
            f.set_bytes(f.bytes % 60_000 + 100);
            f.set_in_if_index(f.in_if_index & 0x00ff_ffff);
            f.set_out_if_index(f.out_if_index & 0x00ff_ffff);
            f.set_tcp_flags(f.tcp_flags & 0x01ff);
            f.set_ip_fragment_id(f.ip_fragment_id & 0xffff);
            f.set_proto([6, 17][f.src_port as usize % 2]);
            // The gateway record is always sent: an empty path is present and empty.
            f.set_dst_as_path_present(true);
            f.set_dst_communities_present(true);
            for &asn in &path {
                f.push_dst_as_path(asn);
            }
            if let Some(&last) = path.last() {
                f.set_dst_as(last);
            }
            for &c in &communities {
                f.push_dst_community(c);
            }
        }
        let agent = SflowAgent { address: addr_from_v4([192, 0, 2, 7]), sub_agent_id: 1, sequence: 1, uptime_ms: 1 };
        let mut out = Vec::new();
        sflow_v5(&agent, SflowSampleOptions { expanded, extended: true }, &flows, &mut out);
        let got = decode_all(&mut Decoder::default(), &out);
        prop_assert_eq!(got.len(), flows.len());
        use Field::*;
        for (sent, got) in flows.iter().zip(&got) {
            let v6 = weir_core::flow::addr_as_v4(&sent.src_addr).is_none();
            let mut fields = vec![SamplingRate, InIfIndex, OutIfIndex, Bytes, SrcMAC, DstMAC, SrcVlan, DstVlan,
                SrcAddr, DstAddr, Proto, IPTos, IPTTL, SrcPort, DstPort, TCPFlags, NextHop, SrcNetMask,
                DstNetMask, BGPNextHop, SrcAS, DstAS, DstASPath, DstCommunities];
            fields.push(if v6 { IPv6FlowLabel } else { IPFragmentID });
            if sent.proto != 6 {
                fields.retain(|f| *f != TCPFlags);
            }
            assert_fields(&fields, sent, got);
        }
    }
}
