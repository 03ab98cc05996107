//! `weir run` over real sockets on loopback: the eBPF balancer against the
//! kernel's hash, kernel timestamps, kernel drop counters, templates that
//! cross shards, graceful restart, and real exporters' datagrams against
//! `weir decode`. The tests take turns (one lock): each starts collectors
//! pinned to this machine's CPUs, and the burst and fairness checks must not
//! compete with another test's traffic.

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{free_udp_port, replay, temp_dir, two_shards, write_config, Collector};

use weir_core::encode::{netflow_v5, ExportHeader, MessageBuilder, TemplateSpec};
use weir_core::flow::{addr_from_v4, FlowRecord};
use weir_core::wire::template::Protocol;

static TURNS: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn v5_datagram(sequence: u32) -> Vec<u8> {
    let mut f = FlowRecord::default();
    f.set_src_addr(addr_from_v4([10, 0, 0, 1]));
    f.set_dst_addr(addr_from_v4([192, 0, 2, 9]));
    f.set_src_port((sequence % 65_536) as u16);
    f.set_dst_port((sequence / 65_536) as u16);
    f.set_proto(17);
    f.set_packets(1);
    f.set_bytes(100);
    let h = ExportHeader { export_time_s: 1_700_000_000, sys_uptime_ms: 1000, sequence, domain: 0 };
    let mut out = Vec::new();
    netflow_v5(&h, (0, 0), 0, &[f], &mut out);
    out
}

fn send_v5(to: u16, count: u32) {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..count {
        sender.send_to(&v5_datagram(i), ("127.0.0.1", to)).unwrap();
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

#[test]
fn ebpf_spreads_one_sender_over_every_shard() {
    let _turn = turn();
    let dir = temp_dir("ebpf");
    let port = free_udp_port();
    let c = Collector::start(&write_config(&dir, "weir.toml", &two_shards(port, "ebpf")));
    assert_eq!(c.metric("weir_receive_balancer_ebpf", ""), vec![1], "the eBPF balancer is attached");
    send_v5(port, 2000);
    assert_eq!(c.wait_metric_sum("weir_receive_datagrams_total", 2000), 2000);
    let per_shard = c.metric("weir_shard_datagrams_total", "");
    // Round robin per CPU: the sender may move between CPUs, so not exactly half.
    assert!(per_shard.iter().all(|n| *n >= 600), "one sender, both shards get a fair share: {per_shard:?}");
    assert_eq!(c.metric("weir_decode_flows_total", "").iter().sum::<u64>(), 2000);
    // The exposition passes Prometheus' own linter without a word.
    c.assert_promtool_is_silent();
    c.stop();
}

#[test]
fn the_kernel_hash_keeps_one_sender_on_one_shard() {
    let _turn = turn();
    let dir = temp_dir("kernel");
    let port = free_udp_port();
    let c = Collector::start(&write_config(&dir, "weir.toml", &two_shards(port, "kernel")));
    assert_eq!(c.metric("weir_receive_balancer_ebpf", ""), vec![0]);
    send_v5(port, 1000);
    assert_eq!(c.wait_metric_sum("weir_receive_datagrams_total", 1000), 1000);
    let mut per_shard = c.metric("weir_shard_datagrams_total", "");
    per_shard.sort();
    assert_eq!(per_shard, vec![0, 1000], "one 5-tuple, one socket");
    c.stop();
}

#[test]
fn kernel_timestamps_are_present_and_monotonic_per_socket() {
    let _turn = turn();
    let dir = temp_dir("timestamps");
    let port = free_udp_port();
    let out = dir.join("flows.jsonl");
    let body = format!(
        "[shards]\ncores = [0]\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
         [sink]\nkind = \"json\"\npath = \"{}\"\n",
        out.display()
    );
    let c = Collector::start(&write_config(&dir, "weir.toml", &body));
    let before = std::time::SystemTime::now();
    send_v5(port, 500);
    assert_eq!(c.wait_metric_sum("weir_sink_flows_total", 500), 500);
    assert_eq!(c.metric("weir_receive_timestamp_fallbacks_total", "").iter().sum::<u64>(), 0);
    c.stop();
    let text = std::fs::read_to_string(&out).unwrap();
    let times: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["TimeReceived"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(times.len(), 500);
    // RFC 3339 with nanoseconds in UTC sorts as text.
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "monotonic per socket");
    let first = &times[0];
    let sent = weir_core::json::rfc3339(before.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    assert!(first.as_str() >= sent.as_str(), "kernel time of receipt, not the exporter's clock: {first} < {sent}");
    assert!(first.contains('.'), "nanosecond precision: {first}");
}

#[test]
fn an_undersized_buffer_under_a_burst_counts_kernel_drops() {
    let _turn = turn();
    let dir = temp_dir("burst");
    let port = free_udp_port();
    let body = format!(
        "[shards]\ncores = [0]\nsocket_receive_buffer_bytes = 4096\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n"
    );
    let c = Collector::start(&write_config(&dir, "weir.toml", &body));
    assert!(c.metric("weir_receive_socket_buffer_bytes", "").iter().all(|b| *b < 65_536), "the grant is exported");
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let big = vec![0u8; 1400];
    for _ in 0..50_000 {
        sender.send_to(&big, ("127.0.0.1", port)).unwrap();
    }
    // SO_RXQ_OVFL rides on the next datagram queued after the drops.
    std::thread::sleep(Duration::from_millis(100));
    sender.send_to(&v5_datagram(1), ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let drops: u64 = c.metric("weir_receive_kernel_drops_total", "").iter().sum();
    let received: u64 = c.metric("weir_receive_datagrams_total", "").iter().sum();
    assert!(drops > 0, "a burst into a 4 KiB buffer must drop (received {received})");
    assert_eq!(drops + received, 50_001, "every datagram is either received or counted as dropped");
    c.stop();
}

fn ipfix(sequence: u32, template: bool, flows: u16) -> Vec<u8> {
    let h = ExportHeader { export_time_s: 1_700_000_000, sys_uptime_ms: 0, sequence, domain: 7 };
    let spec = TemplateSpec::compact_ipv4(300);
    let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
    if template {
        m.template(&spec);
    } else {
        for i in 0..flows {
            let mut f = FlowRecord::default();
            f.set_src_addr(addr_from_v4([10, 1, 0, 1]));
            f.set_dst_addr(addr_from_v4([192, 0, 2, 1]));
            f.set_src_port(i);
            f.set_dst_port(53);
            f.set_proto(17);
            f.set_bytes(80);
            f.set_packets(1);
            m.data(&spec, &f);
        }
    }
    m.finish()
}

#[test]
fn a_template_on_one_shard_decodes_data_on_the_other() {
    let _turn = turn();
    let dir = temp_dir("templates");
    let port = free_udp_port();
    let c = Collector::start(&write_config(&dir, "weir.toml", &two_shards(port, "ebpf")));
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Data first (parked on whichever shard gets it), then the template, then more data.
    sender.send_to(&ipfix(1, false, 5), ("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    sender.send_to(&ipfix(2, true, 0), ("127.0.0.1", port)).unwrap();
    for i in 0..20 {
        std::thread::sleep(Duration::from_millis(2));
        sender.send_to(&ipfix(3 + i, false, 5), ("127.0.0.1", port)).unwrap();
    }
    assert_eq!(c.wait_metric_sum("weir_decode_flows_total", 105), 105, "every data set decodes");
    let per_shard = c.metric("weir_shard_datagrams_total", "");
    assert!(per_shard.iter().all(|n| *n > 0), "both shards got datagrams: {per_shard:?}");
    assert!(c.metric("weir_shard_state_updates_applied_total", "").iter().sum::<u64>() >= 1);
    assert_eq!(c.metric("weir_decode_errors_total", "").iter().sum::<u64>(), 0);
    c.stop();
}

fn flows_in(path: &Path) -> Vec<u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["DstPort"].as_u64().unwrap_or(0) * 65_536 + v["SrcPort"].as_u64().unwrap_or(0)) as u32
        })
        .collect()
}

#[test]
fn a_graceful_restart_loses_nothing() {
    let _turn = turn();
    let dir = temp_dir("restart");
    let port = free_udp_port();
    let config = |name: &str| {
        let body = format!(
            "{}[sink]\nkind = \"json\"\npath = \"{}\"\n[run]\npid_file = \"{}\"\n\
             [decoder]\nstate_file = \"{}\"\n",
            two_shards(port, "ebpf"),
            dir.join(format!("{name}.jsonl")).display(),
            dir.join("weir.pid").display(),
            dir.join("state.json").display()
        );
        write_config(&dir, &format!("{name}.toml"), &body)
    };
    let (old_config, new_config) = (config("old"), config("new"));
    let mut old = Collector::start(&old_config);
    // A steady 5000 datagrams/s from one exporter while the restart happens.
    let sender = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let mut sent = 0u32;
        while start.elapsed() < Duration::from_millis(1500) {
            let due = (start.elapsed().as_micros() / 200) as u32;
            while sent < due {
                socket.send_to(&v5_datagram(sent), ("127.0.0.1", port)).unwrap();
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(400));
    let mut new = Collector::start(&new_config);
    new.wait_for("is gone");
    let status = old.child.wait().unwrap();
    assert!(status.success(), "the old instance drains and exits cleanly");
    old.wait_for("stopped");
    let sent = sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(new.metric("weir_receive_balancer_ebpf", "") == vec![1]);
    new.stop();
    let (a, b) = (flows_in(&dir.join("old.jsonl")), flows_in(&dir.join("new.jsonl")));
    assert!(!a.is_empty() && !b.is_empty(), "both instances received: {} and {}", a.len(), b.len());
    let mut all: Vec<u32> = a.iter().chain(&b).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), a.len() + b.len(), "no flow twice");
    assert_eq!(all.len() as u32, sent, "no flow lost: {} + {} of {sent}", a.len(), b.len());
    assert!(!dir.join("weir.pid").exists(), "the last one out removes the pid file");
}

/// The JSON of every flow, without TimeReceived (the capture's time in
/// `weir decode`, the kernel's in `weir run`), sorted.
fn comparable(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: BTreeMap<String, serde_json::Value> = serde_json::from_str(l).unwrap();
            v.remove("TimeReceived");
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn real_exporters_through_weir_run_match_weir_decode() {
    let _turn = turn();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exporters");
    for name in [
        "softflowd-v9.pcap",
        "softflowd-ipfix.pcap",
        "pmacct-ipfix-sampled.pcap",
        "pmacct-v9-sampled.pcap",
        "pmacct-sflow.pcap",
        "fprobe-v5.pcap",
    ] {
        let pcap = fixtures.join(name);
        let decoded = Command::new(env!("CARGO_BIN_EXE_weir")).arg("decode").arg(&pcap).output().unwrap();
        assert!(decoded.status.success());
        let dir = temp_dir(name.trim_end_matches(".pcap"));
        let port = free_udp_port();
        let out = dir.join("flows.jsonl");
        let body = format!("{}[sink]\nkind = \"json\"\npath = \"{}\"\n", two_shards(port, "ebpf"), out.display());
        let c = Collector::start(&write_config(&dir, "weir.toml", &body));
        let sent = replay(&pcap, port);
        let want = comparable(&String::from_utf8(decoded.stdout).unwrap());
        c.wait_metric_sum("weir_sink_flows_total", want.len() as u64);
        assert_eq!(c.metric("weir_receive_datagrams_total", "").iter().sum::<u64>(), sent);
        c.stop();
        let got = comparable(&std::fs::read_to_string(&out).unwrap());
        assert!(!want.is_empty());
        assert_eq!(got.len(), want.len(), "{name}: flow count");
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(3).collect();
        let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(3).collect();
        assert!(missing.is_empty(), "{name}: weir run and weir decode disagree:\n{missing:#?}\nwere\n{extra:#?}");
    }
}

#[test]
fn sighup_resizes_socket_buffers_and_reopens_the_json_file() {
    let _turn = turn();
    let dir = temp_dir("reload");
    let port = free_udp_port();
    let out = dir.join("flows.jsonl");
    let body = |buffer: u32| {
        format!(
            "[shards]\ncores = [0]\nsocket_receive_buffer_bytes = {buffer}\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
             [sink]\nkind = \"json\"\npath = \"{}\"\n",
            out.display()
        )
    };
    let config = write_config(&dir, "weir.toml", &body(1 << 20));
    let mut c = Collector::start(&config);
    assert_eq!(c.metric("weir_receive_socket_buffer_bytes", ""), vec![2 << 20]);
    send_v5(port, 10);
    c.wait_metric_sum("weir_sink_flows_total", 10);
    std::thread::sleep(Duration::from_millis(200));
    // Log rotation: move the file away, then SIGHUP with a bigger buffer.
    std::fs::rename(&out, dir.join("flows.jsonl.1")).unwrap();
    write_config(&dir, "weir.toml", &body(4 << 20));
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(c.child.id() as i32, libc::SIGHUP) };
    c.wait_for("reloaded");
    assert_eq!(c.metric("weir_receive_socket_buffer_bytes", ""), vec![8 << 20]);
    send_v5(port, 5);
    c.wait_metric_sum("weir_sink_flows_total", 15);
    // A broken file is refused and the collector keeps running.
    std::fs::write(&config, "[shards\n").unwrap();
    unsafe { libc::kill(c.child.id() as i32, libc::SIGHUP) };
    c.wait_for("reload refused");
    c.stop();
    assert_eq!(flows_in(&dir.join("flows.jsonl.1")).len(), 10);
    assert_eq!(flows_in(&out).len(), 5, "the reopened file has what came after SIGHUP");
}

#[test]
fn decoder_state_is_saved_at_shutdown_and_loaded_at_start() {
    let _turn = turn();
    let dir = temp_dir("state");
    let port = free_udp_port();
    let state = dir.join("state.json");
    let body = format!("{}[decoder]\nstate_file = \"{}\"\n", two_shards(port, "ebpf"), state.display());
    let config = write_config(&dir, "weir.toml", &body);
    let c = Collector::start(&config);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&ipfix(1, true, 0), ("127.0.0.1", port)).unwrap();
    c.wait_metric_sum("weir_decode_templates_total", 1);
    c.stop();
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("\"template_id\": 300"), "the template is in the state file: {saved}");
    // A new run decodes data at once, with no template sent again.
    let c = Collector::start(&config);
    for i in 0..4 {
        sender.send_to(&ipfix(2 + i, false, 5), ("127.0.0.1", port)).unwrap();
    }
    assert_eq!(c.wait_metric_sum("weir_decode_flows_total", 20), 20);
    assert_eq!(c.metric("weir_decode_pending_queued_total", "").iter().sum::<u64>(), 0, "nothing waited");
    c.stop();
}
