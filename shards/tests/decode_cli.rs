//! `weir decode` as an operator runs it: output, summary, exit status, the
//! port filter, and decoder state carried from one capture to the next.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use weir_core::encode::{ExportHeader, MessageBuilder, TemplateSpec};
use weir_core::flow::{addr_from_v4, FlowRecord};
use weir_core::pcap::{write_udp_pcap, UdpToWrite};
use weir_core::wire::template::Protocol;

fn weir(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir")).arg("decode").args(args).arg(file).output().expect("run weir")
}

/// `name` in this run's directory (shared by the tests: made once, the
/// directories of earlier runs removed then).
fn temp(name: &str) -> PathBuf {
    static MADE: std::sync::Once = std::sync::Once::new();
    let prefix = "weir-decode-cli-";
    let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
    MADE.call_once(|| {
        common::sweep_left_behind(prefix);
        std::fs::create_dir_all(&dir).unwrap();
    });
    dir.join(name)
}

fn summary(out: &Output, key: &str) -> u64 {
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.starts_with(&format!("{key} "))).unwrap_or_else(|| panic!("{key}: {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn flow() -> FlowRecord {
    let mut f = FlowRecord::default();
    f.set_src_addr(addr_from_v4([10, 0, 0, 1]));
    f.set_dst_addr(addr_from_v4([10, 0, 0, 2]));
    f.set_src_port(1234);
    f.set_dst_port(80);
    f.set_proto(6);
    f.set_bytes(1000);
    f.set_packets(10);
    f
}

fn ipfix(with_template: bool, with_data: bool) -> Vec<u8> {
    let t = TemplateSpec::compact_ipv4(256);
    let h = ExportHeader { export_time_s: 1_767_225_600, sys_uptime_ms: 0, sequence: 1, domain: 1 };
    let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
    if with_template {
        m.template(&t);
    }
    if with_data {
        m.data(&t, &flow());
        m.data(&t, &flow());
    }
    m.finish()
}

fn capture(datagrams: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let list: Vec<UdpToWrite> = datagrams
        .iter()
        .enumerate()
        .map(|(i, (port, payload))| UdpToWrite {
            timestamp_ns: 1_767_225_600_000_000_000 + i as u64 * 1000,
            src: [192, 0, 2, 1],
            dst: [192, 0, 2, 2],
            src_port: 40000,
            dst_port: *port,
            payload,
        })
        .collect();
    write_udp_pcap(&list)
}

#[test]
fn prints_one_json_object_per_flow_and_a_summary() {
    let file = temp("basic.pcap");
    std::fs::write(&file, capture(&[(4739, ipfix(true, true)), (4739, b"garbage!".to_vec())])).unwrap();
    let out = weir(&[], &file);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["SrcAddr"], "10.0.0.1");
    assert_eq!(lines[0]["ExporterAddress"], "192.0.2.1");
    assert_eq!(lines[0]["TimeReceived"], "2026-01-01T00:00:00.000000000Z");
    assert_eq!((summary(&out, "datagrams"), summary(&out, "flows")), (2, 2));
    assert_eq!(summary(&out, "errors{reason=\"bad_version\"}"), 1);
}

#[test]
fn port_filter_and_frame_numbers() {
    let file = temp("ports.pcap");
    std::fs::write(&file, capture(&[(2055, ipfix(true, true)), (4739, ipfix(true, true))])).unwrap();
    let out = weir(&["--port", "4739", "--frame-numbers"], &file);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.lines().all(|l| l.ends_with("\"Frame\":2}")));
    assert_eq!(summary(&out, "frames_skipped{reason=\"other_port\"}"), 1);
}

#[test]
fn data_without_its_template_counts_template_missing() {
    let file = temp("missing.pcap");
    std::fs::write(&file, capture(&[(4739, ipfix(false, true))])).unwrap();
    let out = weir(&[], &file);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(summary(&out, "pending_queued"), 1);
    assert_eq!(summary(&out, "errors{reason=\"template_missing\"}"), 1);
}

#[test]
fn saved_state_decodes_the_next_capture() {
    let (first, second, state) = (temp("first.pcap"), temp("second.pcap"), temp("state.json"));
    std::fs::write(&first, capture(&[(4739, ipfix(true, false))])).unwrap();
    std::fs::write(&second, capture(&[(4739, ipfix(false, true))])).unwrap();
    let out = weir(&["--save-state", state.to_str().unwrap()], &first);
    assert!(out.status.success());
    let out = weir(&["--load-state", state.to_str().unwrap()], &second);
    assert_eq!(summary(&out, "flows"), 2, "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&state, b"{broken").unwrap();
    let out = weir(&["--load-state", state.to_str().unwrap()], &second);
    assert!(!out.status.success());
}

#[test]
fn unreadable_inputs_fail_with_a_clear_message() {
    let missing = weir(&[], Path::new("/nonexistent/capture.pcap"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("capture.pcap"));

    let text = temp("notes.txt");
    std::fs::write(&text, b"these are not packets").unwrap();
    let out = weir(&[], &text);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap file"));

    let ng = temp("capture.pcapng");
    std::fs::write(&ng, [0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0]).unwrap();
    assert!(String::from_utf8_lossy(&weir(&[], &ng).stderr).contains("editcap -F pcap"));

    // A capture cut short: what was read is printed, then exit status 1.
    let cut = temp("cut.pcap");
    let full = capture(&[(4739, ipfix(true, true)), (4739, ipfix(true, true))]);
    std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
    let out = weir(&[], &cut);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated"));
}

#[test]
fn listener_options_as_flags_time_source_and_decapsulation() {
    let file = temp("options.pcap");
    // The IPFIX message is captured 1 µs after its export second.
    std::fs::write(&file, capture(&[(4739, b"garbage!".to_vec()), (4739, ipfix(true, true))])).unwrap();
    let time = |args: &[&str]| {
        let out = weir(args, &file);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let line: serde_json::Value =
            serde_json::from_str(String::from_utf8(out.stdout).unwrap().lines().next().unwrap()).unwrap();
        line["TimeReceived"].as_str().unwrap().to_string()
    };
    // The export header's 1 767 225 600 s, not the capture time.
    assert_eq!(time(&["--timestamp-source", "export"]), "2026-01-01T00:00:00.000000000Z");
    assert_eq!(time(&[]), "2026-01-01T00:00:00.000001000Z");
    // sFlow samples outside the tunnel: no flow, each counted.
    let sflow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exporters/pmacct-sflow.pcap");
    let plain = weir(&[], &sflow);
    let out = weir(&["--decapsulation", "vxlan"], &sflow);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(summary(&out, "errors{reason=\"not_encapsulated\"}"), summary(&plain, "flows"));
    let bad = weir(&["--decapsulation", "mpls"], &sflow);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"mpls\" is not one of none, vxlan, gre, ipip, srv6"));
}
