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
