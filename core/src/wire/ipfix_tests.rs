//! Hand-crafted IPFIX datagrams for every decoder path.

use crate::encode::{ExportHeader, MessageBuilder, TemplateSpec};
use crate::flow::{addr_to_ip, Field, FlowRecord};
use crate::wire::state::Limits;
use crate::wire::template::{FieldSpec, Protocol, REVERSE_PEN, VARIABLE_LENGTH};
use crate::wire::testing::{decode, decode_at, sample_flow_v4, Decoded, NOW_S};
use crate::{Decoder, Reason};

fn header() -> ExportHeader {
    ExportHeader { export_time_s: NOW_S, sys_uptime_ms: 0, sequence: 1, domain: 42 }
}

fn message() -> MessageBuilder {
    MessageBuilder::new(Protocol::Ipfix, header(), Vec::new())
}

const fn ie(id: u16, len: u16) -> FieldSpec {
    FieldSpec { id, pen: 0, len }
}

#[test]
fn template_and_data_in_one_message() {
    let t = TemplateSpec::compact_ipv4(256);
    let mut m = message();
    m.template(&t);
    m.data(&t, &sample_flow_v4());
    m.data(&t, &sample_flow_v4());
    let mut dec = Decoder::default();
    let Decoded(flows, r) = decode(&mut dec, &m.finish());
    assert!(r.is_ok());
    assert_eq!(flows.len(), 2);
    let f = &flows[0];
    assert_eq!(addr_to_ip(&f.src_addr).to_string(), "10.0.0.1");
    assert_eq!((f.src_port, f.dst_port, f.proto, f.bytes, f.packets), (40000, 443, 6, 123_456, 321));
    assert_eq!((f.observation_domain, f.etype), (42, 0x0800));
    assert_eq!(f.flow_start_ns, sample_flow_v4().flow_start_ns);
    assert!(!f.has(Field::SamplingRate), "no sampling announced");
}

#[test]
fn data_before_template_waits_in_the_pending_queue() {
    let t = TemplateSpec::compact_ipv4(300);
    let mut data = message();
    data.data(&t, &sample_flow_v4());
    let mut tmpl = message();
    tmpl.template(&t);
    let mut dec = Decoder::default();
    let Decoded(flows, _) = decode(&mut dec, &data.finish());
    assert!(flows.is_empty());
    assert_eq!(dec.counters().pending_queued, 1);
    let Decoded(flows, _) = decode(&mut dec, &tmpl.finish());
    assert_eq!(flows.len(), 1, "parked data decoded when the template came");
    assert_eq!(dec.counters().pending_decoded, 1);
    assert_eq!(dec.counters().errors_total(), 0);
}

#[test]
fn pending_data_expires_as_template_missing() {
    let t = TemplateSpec::compact_ipv4(300);
    let limits = Limits { pending_sets_max: 2, pending_age_max_ms: 1000, ..Limits::default() };
    let mut dec = Decoder::new(limits);
    let base = NOW_S as u64 * 1_000_000_000;
    for i in 0..3 {
        let mut data = message();
        data.data(&t, &sample_flow_v4());
        decode_at(&mut dec, &data.finish(), base + i);
    }
    // The queue holds two sets: the first was pushed out.
    assert_eq!(dec.counters().errors[Reason::TemplateMissing as usize], 1);
    // A later datagram from the same exporter ages out the rest.
    let mut other = message();
    other.template(&TemplateSpec::compact_ipv4(999));
    decode_at(&mut dec, &other.finish(), base + 2_000_000_000);
    assert_eq!(dec.counters().errors[Reason::TemplateMissing as usize], 3);
    assert_eq!(dec.state().pending_sets(), 0);
}

#[test]
fn withdrawal_forgets_one_template_or_all() {
    let (a, b) = (TemplateSpec::compact_ipv4(256), TemplateSpec::compact_ipv4(257));
    let mut dec = Decoder::default();
    let mut m = message();
    m.template(&a);
    m.template(&b);
    decode(&mut dec, &m.finish());
    assert_eq!(dec.state().template_count(), 2);
    let mut w = message();
    w.withdraw(256, false);
    decode(&mut dec, &w.finish());
    assert_eq!(dec.state().template_count(), 1);
    let mut all = message();
    all.withdraw(2, false); // template id = set id: every data template
    decode(&mut dec, &all.finish());
    assert_eq!(dec.state().template_count(), 0);
    assert_eq!(dec.counters().templates_withdrawn, 2);
    // Data for a withdrawn template is not decoded with the stale layout.
    let mut d = message();
    d.data(&b, &sample_flow_v4());
    let Decoded(flows, _) = decode(&mut dec, &d.finish());
    assert!(flows.is_empty());
}

#[test]
fn variable_length_fields_short_and_long() {
    // interfaceName (82) is a string: one-byte length, then 255 + two-byte length.
    let fields = vec![ie(7, 2), ie(82, VARIABLE_LENGTH), ie(11, 2), ie(83, VARIABLE_LENGTH), ie(4, 1)];
    let t = TemplateSpec { id: 400, fields };
    let mut record = vec![0x04, 0xd2, 3, b'e', b't', b'h', 0x01, 0xbb, 255, 0x01, 0x2c];
    record.extend(std::iter::repeat_n(b'x', 300));
    record.push(17);
    let mut m = message();
    m.template(&t);
    m.raw_bytes(400, &record);
    m.raw_bytes(400, &record);
    let mut dec = Decoder::default();
    let Decoded(flows, _) = decode(&mut dec, &m.finish());
    assert_eq!(flows.len(), 2);
    assert_eq!((flows[1].src_port, flows[1].dst_port, flows[1].proto), (1234, 443, 17));
}

#[test]
fn unknown_enterprise_elements_are_skipped() {
    let fields = vec![ie(7, 2), FieldSpec { id: 1234, pen: 9, len: 6 }, ie(11, 2)];
    let t = TemplateSpec { id: 401, fields };
    let mut m = message();
    m.template(&t);
    m.raw_record(401, &t.fields, &[80, 0xffff_ffff_ffff, 8080]);
    let mut dec = Decoder::default();
    let Decoded(flows, _) = decode(&mut dec, &m.finish());
    assert_eq!((flows[0].src_port, flows[0].dst_port), (80, 8080));
}

#[test]
fn biflow_records_become_two_flows() {
    let fields = vec![
        ie(8, 4),
        ie(12, 4),
        ie(7, 2),
        ie(11, 2),
        ie(4, 1),
        ie(1, 8),
        ie(2, 8),
        FieldSpec { id: 1, pen: REVERSE_PEN, len: 8 },
        FieldSpec { id: 2, pen: REVERSE_PEN, len: 8 },
    ];
    let t = TemplateSpec { id: 402, fields };
    let mut m = message();
    m.template(&t);
    m.raw_record(402, &t.fields, &[0x0a000001, 0x0a000002, 5000, 53, 17, 1000, 10, 3000, 20]);
    m.raw_record(402, &t.fields, &[0x0a000001, 0x0a000003, 5001, 53, 17, 500, 5, 0, 0]);
    let mut dec = Decoder::default();
    let Decoded(flows, _) = decode(&mut dec, &m.finish());
    assert_eq!(flows.len(), 3, "the second record has no reverse traffic");
    let rev = &flows[1];
    assert_eq!(addr_to_ip(&rev.src_addr).to_string(), "10.0.0.2");
    assert_eq!((rev.src_port, rev.dst_port, rev.bytes, rev.packets), (53, 5000, 3000, 20));
}

#[test]
fn sampling_from_options_per_sampler_and_default() {
    // Scope: selectorId (302). Options: samplingPacketInterval + Space (1 in 1+99).
    let scope = [ie(302, 2)];
    let options = [ie(305, 4), ie(306, 4)];
    let data = TemplateSpec { id: 500, fields: vec![ie(7, 2), ie(302, 2)] };
    let plain = TemplateSpec { id: 501, fields: vec![ie(7, 2)] };
    let mut m = message();
    m.options_template(510, &scope, &options);
    m.raw_record(510, &[scope[0], options[0], options[1]], &[3, 1, 99]);
    // samplerRandomInterval (50) with no scope sampler: the exporter default.
    m.options_template(511, &[ie(149, 4)], &[ie(50, 4)]);
    m.raw_record(511, &[ie(149, 4), ie(50, 4)], &[42, 1000]);
    m.template(&data);
    m.template(&plain);
    m.raw_record(500, &data.fields, &[80, 3]);
    m.raw_record(501, &plain.fields, &[81]);
    let mut dec = Decoder::default();
    let Decoded(flows, _) = decode(&mut dec, &m.finish());
    assert_eq!(flows.len(), 2);
    assert_eq!(flows[0].sampling_rate, 100);
    assert_eq!(flows[1].sampling_rate, 1000);
    assert_eq!(dec.counters().options_records, 2);
}

#[test]
fn sampling_interval_inside_the_data_record() {
    let t = TemplateSpec { id: 502, fields: vec![ie(7, 2), ie(34, 4)] };
    let mut m = message();
    m.template(&t);
    m.raw_record(502, &t.fields, &[80, 512]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &m.finish());
    assert_eq!(flows[0].sampling_rate, 512);
}

#[test]
fn flow_times_in_every_unit() {
    let start_ms = NOW_S as u64 * 1000 - 1500;
    let cases: [(u16, u64); 3] = [(150, start_ms / 1000), (152, start_ms), (156, 0)];
    for (id, value) in cases {
        let t = TemplateSpec { id: 600, fields: vec![ie(id, 8)] };
        let mut flow = FlowRecord::default();
        flow.set_flow_start_ns(start_ms * 1_000_000 + 123);
        let mut m = message();
        m.template(&t);
        if id == 156 {
            m.data(&t, &flow);
        } else {
            m.raw_record(600, &t.fields, &[value]);
        }
        let Decoded(flows, _) = decode(&mut Decoder::default(), &m.finish());
        let expected = match id {
            150 => start_ms / 1000 * 1_000_000_000,
            152 => start_ms * 1_000_000,
            _ => start_ms * 1_000_000 + 123,
        };
        assert_eq!(flows[0].flow_start_ns, expected, "IE {id}");
    }
}

#[test]
fn microsecond_ntp_and_delta_times() {
    // flowStartMicroseconds (154): NTP format; flowEndDeltaMicroseconds (159).
    let t = TemplateSpec { id: 601, fields: vec![ie(154, 8), ie(159, 4)] };
    let ntp = ((NOW_S as u64 - 10 + 2_208_988_800) << 32) | (1u64 << 31);
    let mut m = message();
    m.template(&t);
    m.raw_record(601, &t.fields, &[ntp, 2_000_000]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &m.finish());
    assert_eq!(flows[0].flow_start_ns, (NOW_S as u64 - 10) * 1_000_000_000 + 500_000_000);
    assert_eq!(flows[0].flow_end_ns, (NOW_S as u64 - 2) * 1_000_000_000);
}

#[test]
fn sysuptime_times_use_the_system_init_time_option() {
    let init_ms = NOW_S as u64 * 1000 - 3_600_000;
    let t = TemplateSpec { id: 602, fields: vec![ie(22, 4), ie(21, 4)] };
    let mut m = message();
    m.options_template(603, &[ie(144, 4)], &[ie(160, 8)]);
    m.raw_record(603, &[ie(144, 4), ie(160, 8)], &[1, init_ms]);
    m.template(&t);
    m.raw_record(602, &t.fields, &[1000, 2500]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &m.finish());
    assert_eq!(flows[0].flow_start_ns, (init_ms + 1000) * 1_000_000);
    assert_eq!(flows[0].flow_end_ns, (init_ms + 2500) * 1_000_000);
}

#[test]
fn template_limit_evicts_the_oldest() {
    let limits = Limits { templates_per_exporter_max: 2, ..Limits::default() };
    let mut dec = Decoder::new(limits);
    let mut m = message();
    for id in 256..259 {
        m.template(&TemplateSpec::compact_ipv4(id));
    }
    decode(&mut dec, &m.finish());
    assert_eq!(dec.state().template_count(), 2);
    assert_eq!(dec.counters().template_evictions, 1);
    assert_eq!(dec.counters().errors[Reason::TemplateLimit as usize], 1);
}

#[test]
fn template_redefinition_changes_the_layout() {
    let mut dec = Decoder::default();
    let first = TemplateSpec { id: 700, fields: vec![ie(7, 2), ie(11, 2)] };
    let second = TemplateSpec { id: 700, fields: vec![ie(11, 2), ie(7, 2)] };
    for t in [&first, &second] {
        let mut m = message();
        m.template(t);
        m.raw_record(700, &t.fields, &[1, 2]);
        let Decoded(flows, _) = decode(&mut dec, &m.finish());
        let expected = if std::ptr::eq(t, &first) { (1, 2) } else { (2, 1) };
        assert_eq!((flows[0].src_port, flows[0].dst_port), expected);
    }
    assert_eq!(dec.state().template_count(), 1);
}

#[test]
fn malformed_messages_are_typed_errors() {
    let mut good = message();
    good.template(&TemplateSpec::compact_ipv4(256));
    let good = good.finish();
    let mut dec = Decoder::default();
    let reason = |dec: &mut Decoder, b: &[u8]| decode(dec, b).1.unwrap_err().reason;
    assert_eq!(reason(&mut dec, &good[..10]), Reason::Truncated);
    let mut long = good.clone();
    long[2..4].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(reason(&mut dec, &long), Reason::Truncated);
    let mut short = good.clone();
    short[2..4].copy_from_slice(&8u16.to_be_bytes());
    assert_eq!(reason(&mut dec, &short), Reason::BadLength);
    let mut zero_set = good.clone();
    zero_set[18..20].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(reason(&mut dec, &zero_set), Reason::BadLength);
    // A template with a zero-length field is refused, the datagram still parses.
    let mut m = message();
    m.template(&TemplateSpec { id: 800, fields: vec![ie(7, 0)] });
    assert!(decode(&mut dec, &m.finish()).1.is_ok());
    assert_eq!(dec.counters().errors[Reason::BadTemplate as usize], 1);
}

#[test]
fn state_survives_a_restart_through_its_snapshot() {
    let t = TemplateSpec::compact_ipv4(256);
    let mut m = message();
    m.options_template(510, &[ie(302, 2)], &[ie(34, 4)]);
    m.raw_record(510, &[ie(302, 2), ie(34, 4)], &[0, 64]);
    m.template(&t);
    let mut before = Decoder::default();
    decode(&mut before, &m.finish());
    let saved = before.state().snapshot_json();
    let mut after = Decoder::default();
    after.restore_state_json(&saved).unwrap();
    assert_eq!(after.state().snapshot(), before.state().snapshot());
    let mut d = message();
    d.data(&t, &sample_flow_v4());
    let Decoded(flows, _) = decode(&mut after, &d.finish());
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].sampling_rate, 64);
    assert!(after.restore_state_json(b"{not json").is_err());
}

/// Decodes one record of `fields` with `values` (one u64 per field).
fn one_record(id: u16, fields: Vec<FieldSpec>, values: &[u64]) -> FlowRecord {
    let t = TemplateSpec { id, fields };
    let mut m = message();
    m.template(&t);
    m.raw_record(id, &t.fields, values);
    let Decoded(mut flows, r) = decode(&mut Decoder::default(), &m.finish());
    assert!(r.is_ok(), "{r:?}");
    flows.remove(0)
}

#[test]
fn icmp_type_and_code_come_from_the_destination_port_when_not_sent() {
    let f = one_record(500, vec![ie(4, 1), ie(7, 2), ie(11, 2)], &[1, 0, 0x0301]);
    assert_eq!((f.icmpv4_type, f.icmpv4_code, f.dst_port), (3, 1, 0x0301), "DstPort kept as sent");
    let f = one_record(501, vec![ie(4, 1), ie(11, 2)], &[58, 0x8000]);
    assert_eq!((f.icmpv6_type, f.icmpv6_code), (128, 0));
    // A type element wins over the port.
    let f = one_record(502, vec![ie(4, 1), ie(11, 2), ie(32, 2)], &[1, 0x0301, 0x0800]);
    assert_eq!((f.icmpv4_type, f.icmpv4_code), (8, 0));
    let f = one_record(503, vec![ie(4, 1), ie(11, 2)], &[17, 0x0301]);
    assert!(!f.has(Field::ICMPv4Type), "not ICMP");
}

#[test]
fn physical_interfaces_and_dot1q_vlans_stand_in_for_absent_ones() {
    let f = one_record(510, vec![ie(252, 4), ie(253, 4), ie(245, 2)], &[17, 18, 300]);
    assert_eq!((f.in_if_index, f.out_if_index, f.in_if_physical_index), (17, 18, 17));
    assert_eq!(f.src_vlan, 300, "the customer VLAN when nothing else");
    let f = one_record(511, vec![ie(10, 4), ie(252, 4), ie(245, 2), ie(243, 2)], &[5, 17, 300, 200]);
    assert_eq!((f.in_if_index, f.in_if_physical_index), (5, 17), "ingressInterface wins");
    assert!(!f.has(Field::OutIfIndex));
    assert_eq!(f.src_vlan, 200, "dot1qVlanId before the customer VLAN");
    let f = one_record(512, vec![ie(243, 2), ie(58, 2)], &[200, 100]);
    assert_eq!(f.src_vlan, 100, "vlanId wins");
}

#[test]
fn an_all_zero_address_never_overwrites_the_one_the_record_carries() {
    // sourceIPv4Address, then an all-zero sourceIPv6Address, and the reverse.
    let f = one_record(520, vec![ie(8, 4), ie(27, 16), ie(15, 4), ie(62, 16)], &[0x0a00_0001, 0, 0xc000_0201, 0]);
    assert_eq!(addr_to_ip(&f.src_addr).to_string(), "10.0.0.1");
    assert_eq!(addr_to_ip(&f.next_hop).to_string(), "192.0.2.1");
    assert_eq!(f.etype, 0x0800);
    let f = one_record(521, vec![ie(28, 16), ie(12, 4), ie(63, 16), ie(18, 4)], &[0, 0xc633_6407, 0, 0xcb00_7101]);
    assert_eq!(addr_to_ip(&f.dst_addr).to_string(), "198.51.100.7");
    assert_eq!(addr_to_ip(&f.bgp_next_hop).to_string(), "203.0.113.1");
    // Both zero: the address is zero, not absent.
    let f = one_record(522, vec![ie(8, 4), ie(27, 16)], &[0, 0]);
    assert!(f.has(Field::SrcAddr));
}

#[test]
fn the_mpls_stack_ends_at_its_bottom_and_zero_positions_are_not_labels() {
    let entry = |label: u64, bottom: bool| label << 4 | bottom as u64;
    let fields: Vec<FieldSpec> = (70..80).map(|id| ie(id, 3)).collect();
    let mut values = vec![entry(20005, false), entry(524250, true)];
    values.resize(10, 0);
    assert_eq!(one_record(530, fields.clone(), &values).mpls_labels(), &[20005, 524250]);
    // After the bottom: not part of the stack, even when not zero.
    let values = [entry(16, true), entry(17, false), entry(18, true), 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(one_record(531, fields.clone(), &values).mpls_labels(), &[16]);
    let values = [0, entry(17, false), 0, entry(18, true), 0, 0, 0, 0, 0, 0];
    assert_eq!(one_record(532, fields, &values).mpls_labels(), &[17, 18]);
}

/// Ethernet, one MPLS label (bottom), IPv4 (76 bytes in all, TTL 1) and UDP
/// 55217 → 3503: a packet Juniper's inline monitoring reports as dropped.
fn sampled_frame() -> Vec<u8> {
    let mut frame = vec![0x56, 0x04, 0x19, 0, 0x37, 0x0e, 0x56, 0x04, 0x19, 0, 0xb7, 0x6e, 0x88, 0x47];
    frame.extend_from_slice(&((1_000_001u32 << 12) | 0x100 | 255).to_be_bytes());
    frame.extend_from_slice(&[0x45, 0, 0, 76, 0x48, 0x44, 0, 0, 1, 17, 0, 0, 10, 0, 36, 1, 127, 0, 0, 1]);
    frame.extend_from_slice(&[0xd7, 0xb1, 0x0d, 0xaf, 0, 56, 0, 0]);
    frame
}

#[test]
fn a_sampled_frame_section_fills_the_flow_and_a_forwarding_exception_drops_it() {
    let juniper = |len| FieldSpec { id: 137, pen: crate::wire::template::JUNIPER_PEN, len };
    let fields = vec![juniper(4), juniper(2), juniper(4), ie(10, 4), ie(14, 4), ie(312, 2), ie(315, VARIABLE_LENGTH)];
    let t = TemplateSpec { id: 540, fields };
    let frame = sampled_frame();
    let mut record = vec![0, 0, 0, 0, 0, 0xc2, 0, 0, 0, 0, 0, 0, 0x02, 0x40, 0, 0, 0, 0, 0, 94];
    record.push(frame.len() as u8);
    record.extend_from_slice(&frame);
    let mut m = message();
    m.template(&t);
    m.raw_bytes(540, &record);
    let Decoded(flows, r) = decode(&mut Decoder::default(), &m.finish());
    assert!(r.is_ok(), "{r:?}");
    let f = &flows[0];
    assert_eq!(addr_to_ip(&f.src_addr).to_string(), "10.0.36.1");
    assert_eq!(addr_to_ip(&f.dst_addr).to_string(), "127.0.0.1");
    assert_eq!((f.proto, f.src_port, f.dst_port, f.ip_ttl, f.ip_fragment_id), (17, 55217, 3503, 1, 0x4844));
    assert_eq!((f.src_mac, f.dst_mac), ([0x56, 0x04, 0x19, 0, 0xb7, 0x6e], [0x56, 0x04, 0x19, 0, 0x37, 0x0e]));
    assert_eq!(f.mpls_labels(), &[1_000_001]);
    assert_eq!((f.bytes, f.packets, f.in_if_index), (76, 1, 576), "the IP length, one packet");
    assert_eq!(f.forwarding_status, 128, "exception code 0xc2: dropped, the record kept");
}

#[test]
fn the_record_own_fields_win_over_its_sampled_frame_and_v9_carries_one_too() {
    // IPFIX: addresses and counters in the record, the frame after them.
    let fields = vec![ie(8, 4), ie(1, 4), ie(2, 4), ie(315, VARIABLE_LENGTH)];
    let t = TemplateSpec { id: 550, fields };
    let frame = sampled_frame();
    let mut record = vec![192, 0, 2, 1, 0, 0, 0x10, 0, 0, 0, 0, 4];
    record.push(frame.len() as u8);
    record.extend_from_slice(&frame);
    let mut m = message();
    m.template(&t);
    m.raw_bytes(550, &record);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &m.finish());
    let f = &flows[0];
    assert_eq!(addr_to_ip(&f.src_addr).to_string(), "192.0.2.1");
    assert_eq!(addr_to_ip(&f.dst_addr).to_string(), "127.0.0.1");
    assert_eq!((f.bytes, f.packets), (4096, 4));
    assert!(!f.has(Field::ForwardingStatus));
    // NetFlow v9 layer2packetSectionData (104), fixed length.
    let frame = sampled_frame();
    let t = TemplateSpec { id: 551, fields: vec![ie(10, 4), ie(104, frame.len() as u16)] };
    let mut m = MessageBuilder::new(Protocol::NetflowV9, header(), Vec::new());
    m.template(&t);
    let mut record = vec![0, 0, 0, 3];
    record.extend_from_slice(&frame);
    m.raw_bytes(551, &record);
    let Decoded(flows, r) = decode(&mut Decoder::default(), &m.finish());
    assert!(r.is_ok(), "{r:?}");
    assert_eq!((flows[0].in_if_index, flows[0].bytes, flows[0].packets, flows[0].proto), (3, 76, 1, 17));
}

fn decode_with(options: crate::wire::ListenerOptions, payload: &[u8]) -> (Vec<FlowRecord>, Decoder) {
    let mut dec = Decoder::default();
    let d = crate::Datagram {
        exporter: crate::flow::addr_from_v4([192, 0, 2, 1]),
        received_ns: NOW_S as u64 * 1_000_000_000 + 3_000_000_000,
        payload,
        options,
    };
    let mut flows = Vec::new();
    let _ = dec.decode(&d, &mut |f: &FlowRecord| flows.push(f.clone()));
    (flows, dec)
}

#[test]
fn time_received_from_the_kernel_the_export_header_or_the_flow_start() {
    use crate::wire::{ListenerOptions, TimestampSource};
    let t = TemplateSpec::compact_ipv4(560);
    let mut m = message();
    m.template(&t);
    m.data(&t, &sample_flow_v4());
    let ipfix = m.finish();
    let mut v5 = Vec::new();
    let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: 60_000, sequence: 1, domain: 0 };
    crate::encode::netflow_v5(&h, (0, 0), 0, &[sample_flow_v4()], &mut v5);
    let kernel = NOW_S as u64 * 1_000_000_000 + 3_000_000_000;
    let export = NOW_S as u64 * 1_000_000_000;
    let start = sample_flow_v4().flow_start_ns;
    for (source, want) in
        [(TimestampSource::Kernel, kernel), (TimestampSource::Export, export), (TimestampSource::FlowStart, start)]
    {
        let options = ListenerOptions { timestamp_source: source, ..Default::default() };
        for payload in [&ipfix, &v5] {
            let (flows, _) = decode_with(options, payload);
            assert_eq!(flows[0].time_received_ns, want, "{source:?}");
        }
    }
    // No start time in the record: the kernel's.
    let fields = vec![ie(7, 2), ie(11, 2)];
    let t = TemplateSpec { id: 561, fields };
    let mut m = message();
    m.template(&t);
    m.raw_record(561, &t.fields, &[1, 2]);
    let options = ListenerOptions { timestamp_source: TimestampSource::FlowStart, ..Default::default() };
    assert_eq!(decode_with(options, &m.finish()).0[0].time_received_ns, kernel);
}

#[test]
fn a_decapsulating_listener_drops_sampled_frames_outside_the_tunnel_and_keeps_plain_records() {
    use crate::wire::{Decapsulation, ListenerOptions};
    let fields = vec![ie(10, 4), ie(315, VARIABLE_LENGTH)];
    let t = TemplateSpec { id: 570, fields };
    let plain = sampled_frame();
    // The same frame inside IP-in-IP: outer Ethernet, IPv4 protocol 4.
    let inner_ip = &plain[18..];
    let mut tunnelled = plain[..12].to_vec();
    tunnelled.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, (20 + inner_ip.len()) as u8, 0, 0, 0, 0, 64, 4, 0, 0]);
    tunnelled.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
    tunnelled.extend_from_slice(inner_ip);
    let mut m = message();
    m.template(&t);
    for frame in [&plain, &tunnelled] {
        let mut record = vec![0, 0, 0, 9, frame.len() as u8];
        record.extend_from_slice(frame);
        m.raw_bytes(570, &record);
    }
    let plain_template = TemplateSpec::compact_ipv4(571);
    m.template(&plain_template);
    m.data(&plain_template, &sample_flow_v4());
    let options = ListenerOptions { decapsulation: Decapsulation::Ipip, ..Default::default() };
    let (flows, dec) = decode_with(options, &m.finish());
    assert_eq!(flows.len(), 2, "the tunnelled frame and the record without a frame");
    assert_eq!(dec.counters().errors[Reason::NotEncapsulated as usize], 1);
    let f = &flows[0];
    assert_eq!(addr_to_ip(&f.src_addr).to_string(), "10.0.36.1");
    assert_eq!((f.in_if_index, f.proto, f.dst_port, f.bytes), (9, 17, 3503, 76));
    assert_eq!(flows[1].bytes, 123_456);
}
