//! Hand-crafted NetFlow v9 datagrams for every decoder path.

use crate::encode::{ExportHeader, MessageBuilder, TemplateSpec};
use crate::wire::template::{FieldSpec, Protocol};
use crate::wire::testing::{decode, sample_flow_v4, Decoded, NOW_S};
use crate::{Decoder, Reason};

const UPTIME_MS: u32 = 3_600_000;

fn message() -> MessageBuilder {
    let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: UPTIME_MS, sequence: 9, domain: 77 };
    MessageBuilder::new(Protocol::NetflowV9, h, Vec::new())
}

const fn field(id: u16, len: u16) -> FieldSpec {
    FieldSpec { id, pen: 0, len }
}

#[test]
fn several_flowsets_with_padding() {
    let a = TemplateSpec { id: 256, fields: vec![field(7, 2), field(4, 1)] };
    let b = TemplateSpec::compact_ipv4(257);
    let mut m = message();
    m.template(&a);
    m.template(&b);
    m.raw_record(256, &a.fields, &[53, 17]);
    m.data(&b, &sample_flow_v4());
    m.raw_record(256, &a.fields, &[123, 17]);
    let Decoded(flows, r) = decode(&mut Decoder::default(), &m.finish());
    assert!(r.is_ok());
    assert_eq!(flows.iter().map(|f| f.src_port).collect::<Vec<_>>(), vec![53, 40000, 123]);
    assert_eq!(flows[1].observation_domain, 77);
}

#[test]
fn first_and_last_switched_are_relative_to_sysuptime() {
    let t = TemplateSpec { id: 256, fields: vec![field(22, 4), field(21, 4)] };
    let mut m = message();
    m.template(&t);
    m.raw_record(256, &t.fields, &[UPTIME_MS as u64 - 4000, UPTIME_MS as u64 - 1000]);
    let Decoded(flows, _) = decode(&mut Decoder::default(), &m.finish());
    let now_ns = NOW_S as u64 * 1_000_000_000;
    assert_eq!(flows[0].flow_start_ns, now_ns - 4_000_000_000);
    assert_eq!(flows[0].flow_end_ns, now_ns - 1_000_000_000);
}

#[test]
fn options_template_gives_a_rate_per_sampler() {
    // RFC 3954 §6.1: scope System (1); options FLOW_SAMPLER_ID (48),
    // FLOW_SAMPLER_MODE (49), FLOW_SAMPLER_RANDOM_INTERVAL (50).
    let scope = [field(1, 4)];
    let options = [field(48, 1), field(49, 1), field(50, 4)];
    let all = [scope[0], options[0], options[1], options[2]];
    let t = TemplateSpec { id: 300, fields: vec![field(7, 2), field(48, 1)] };
    let mut m = message();
    m.options_template(260, &scope, &options);
    m.raw_record(260, &all, &[0, 1, 2, 100]);
    m.raw_record(260, &all, &[0, 2, 2, 1000]);
    m.template(&t);
    m.raw_record(300, &t.fields, &[80, 1]);
    m.raw_record(300, &t.fields, &[81, 2]);
    m.raw_record(300, &t.fields, &[82, 3]);
    let mut dec = Decoder::default();
    let Decoded(flows, _) = decode(&mut dec, &m.finish());
    assert_eq!(flows[0].sampling_rate, 100);
    assert_eq!(flows[1].sampling_rate, 1000);
    assert!(!flows[2].has(crate::Field::SamplingRate), "unknown sampler: no rate");
    assert_eq!(dec.counters().options_records, 2);
}

#[test]
fn sampling_interval_option_without_sampler_is_the_default() {
    // SAMPLING_INTERVAL (34) and SAMPLING_ALGORITHM (35), scoped to the system.
    let (scope, options) = ([field(1, 4)], [field(34, 4), field(35, 1)]);
    let t = TemplateSpec::compact_ipv4(301);
    let mut m = message();
    m.options_template(261, &scope, &options);
    m.raw_record(261, &[scope[0], options[0], options[1]], &[0, 256, 2]);
    m.template(&t);
    m.data(&t, &sample_flow_v4());
    let Decoded(flows, _) = decode(&mut Decoder::default(), &m.finish());
    assert_eq!(flows[0].sampling_rate, 256);
}

#[test]
fn data_before_template_then_template() {
    let t = TemplateSpec::compact_ipv4(302);
    let mut data = message();
    data.data(&t, &sample_flow_v4());
    data.data(&t, &sample_flow_v4());
    let mut tmpl = message();
    tmpl.template(&t);
    let mut dec = Decoder::default();
    assert!(decode(&mut dec, &data.finish()).0.is_empty());
    assert_eq!(decode(&mut dec, &tmpl.finish()).0.len(), 2);
    dec.flush_pending();
    assert_eq!(dec.counters().errors_total(), 0);
}

#[test]
fn template_never_comes_counts_template_missing() {
    let mut data = message();
    data.data(&TemplateSpec::compact_ipv4(303), &sample_flow_v4());
    let mut dec = Decoder::default();
    decode(&mut dec, &data.finish());
    dec.flush_pending();
    assert_eq!(dec.counters().errors[Reason::TemplateMissing as usize], 1);
}

#[test]
fn the_header_record_count_is_not_trusted() {
    // softflowd sets it too low; lengths decide (see the tshark oracle tests).
    let t = TemplateSpec::compact_ipv4(304);
    let mut m = message();
    m.template(&t);
    for _ in 0..5 {
        m.data(&t, &sample_flow_v4());
    }
    let mut bytes = m.finish();
    bytes[2..4].copy_from_slice(&1u16.to_be_bytes());
    assert_eq!(decode(&mut Decoder::default(), &bytes).0.len(), 5);
}

#[test]
fn templates_are_per_source_id() {
    let t = TemplateSpec::compact_ipv4(305);
    let mut m = message();
    m.template(&t);
    let mut dec = Decoder::default();
    decode(&mut dec, &m.finish());
    let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: UPTIME_MS, sequence: 1, domain: 78 };
    let mut other = MessageBuilder::new(Protocol::NetflowV9, h, Vec::new());
    other.data(&t, &sample_flow_v4());
    assert!(decode(&mut dec, &other.finish()).0.is_empty(), "source id 78 never sent it");
}

#[test]
fn malformed_flowsets() {
    let mut dec = Decoder::default();
    let mut m = message();
    m.template(&TemplateSpec::compact_ipv4(306));
    let good = m.finish();
    assert_eq!(decode(&mut dec, &good[..19]).1.unwrap_err().reason, Reason::Truncated);
    let mut bad = good.clone();
    bad[22..24].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(decode(&mut dec, &bad).1.unwrap_err().reason, Reason::BadLength);
    let mut past = good.clone();
    past[22..24].copy_from_slice(&4000u16.to_be_bytes());
    assert_eq!(decode(&mut dec, &past).1.unwrap_err().reason, Reason::Truncated);
    // Template id below 256 is refused.
    let mut low = message();
    low.template(&TemplateSpec::compact_ipv4(12));
    decode(&mut dec, &low.finish());
    assert_eq!(dec.counters().errors[Reason::BadTemplate as usize], 1);
}
