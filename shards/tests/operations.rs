//! What an operator reaches for on a running `weir run`: the CPU profile
//! and memory summary endpoints, both metric formats, and the logs (JSON,
//! and data-plane errors rate-limited while every one is counted).

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::{free_udp_port, temp_dir, write_config, Collector};
use weir_core::encode::{netflow_v5, ExportHeader};
use weir_core::flow::{addr_from_v4, FlowRecord};

/// One collector at a time: each pins a shard to CPU 0, and the profile
/// test wants that CPU to itself.
static TURNS: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn one_shard(port: u16, extra: &str) -> String {
    format!("[shards]\ncores = [0]\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n{extra}")
}

fn v5(sequence: u32) -> Vec<u8> {
    let mut f = FlowRecord::default();
    f.set_src_addr(addr_from_v4([10, 0, 0, 1]));
    f.set_dst_addr(addr_from_v4([192, 0, 2, 9]));
    f.set_proto(6);
    f.set_packets(1);
    f.set_bytes(60);
    let h = ExportHeader { export_time_s: 1_700_000_000, sys_uptime_ms: 1000, sequence, domain: 0 };
    let mut out = Vec::new();
    netflow_v5(&h, (0, 0), 0, &[f], &mut out);
    out
}

#[test]
fn a_cpu_profile_under_traffic_names_the_shard_and_loses_nothing() {
    let _turn = turn();
    let dir = temp_dir("profile");
    let port = free_udp_port();
    let c = Collector::start(&write_config(&dir, "weir.toml", &one_shard(port, "")));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut sent = 0u32;
            while !stop.load(Ordering::Relaxed) {
                socket.send_to(&v5(sent), ("127.0.0.1", port)).unwrap();
                sent += 1;
                if sent.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            sent
        })
    };
    let address = c.metrics.clone();
    let profile = std::thread::spawn(move || get(&address, "/debug/pprof/profile?seconds=2&format=svg"));
    std::thread::sleep(Duration::from_millis(500));
    // Scrapes and health checks go on while the profile runs.
    assert!(c.scrape().contains("weir_receive_datagrams_total"));
    assert_eq!(c.get_status("/debug/pprof/profile?seconds=1").0, 409, "one profile at a time");
    let (status, svg) = profile.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    assert_eq!(status, 200, "{svg}");
    assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "a flamegraph");
    assert!(svg.contains("weir::receive::shard"), "the shard's code was sampled");
    // SIGPROF interrupted the shards' receive calls many times over: none failed.
    assert_eq!(c.wait_metric_sum("weir_decode_flows_total", sent.into()), u64::from(sent));
    assert_eq!(c.metric("weir_receive_errors_total", ""), [0]);
    let (status, pprof) = get(&c.metrics, "/debug/pprof/profile?seconds=1&frequency=250");
    assert!(status == 200 && !pprof.is_empty());
    for bad in ["seconds=0", "seconds=301", "seconds=x", "frequency=5000", "format=png"] {
        let (status, why) = c.get_status(&format!("/debug/pprof/profile?{bad}"));
        assert_eq!(status, 400, "{bad}: {why}");
    }
    c.stop();
}

/// A GET on `address` (status, body).
fn get(address: &str, path: &str) -> (u16, String) {
    common::exchange(address, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
}

#[test]
fn the_memory_summary_and_both_metric_formats() {
    let _turn = turn();
    let dir = temp_dir("memory");
    let port = free_udp_port();
    let c = Collector::start(&write_config(&dir, "weir.toml", &one_shard(port, "")));
    let memory: serde_json::Value = serde_json::from_str(&c.get("/debug/memory")).unwrap();
    assert!(memory["process"]["resident_bytes"].as_u64().unwrap() > 0, "{memory}");
    assert!(memory["heap"]["allocated_bytes"].as_u64().unwrap() > 0, "{memory}");
    assert!(memory["weir"]["socket_receive_buffers_bytes"].as_u64().unwrap() > 0, "{memory}");
    assert!(c.get("/debug/memory?malloc_info=1").starts_with("<malloc"));
    // Prometheus asks for OpenMetrics and gets it; curl gets the text format.
    let address = c.metrics.clone();
    let open = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&address).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(open.contains("Content-Type: application/openmetrics-text"), "{open}");
    assert!(open.contains("# TYPE weir_receive_datagrams counter\n") && open.ends_with("# EOF\n"));
    let text = c.scrape();
    assert!(text.contains("# TYPE weir_receive_datagrams_total counter\n") && !text.contains("# EOF"));
    assert!(text.contains("process_resident_memory_bytes ") && text.contains("weir_build_info{version="));
    c.assert_promtool_is_silent();
    c.stop();
}

#[test]
fn profiling_can_be_turned_off() {
    let _turn = turn();
    let dir = temp_dir("debug-off");
    let port = free_udp_port();
    let c = Collector::start_with_env(
        &write_config(&dir, "weir.toml", &one_shard(port, "")),
        &[("WEIR_HTTP__DEBUG", "false")],
    );
    assert_eq!(c.get_status("/debug/memory").0, 404);
    assert_eq!(c.get_status("/debug/pprof/profile?seconds=1").0, 404);
    assert_eq!(c.get_status("/metrics").0, 200);
    c.stop();
}

#[test]
fn json_logs_and_a_garbage_flood_logged_within_the_limit_and_counted_in_full() {
    let _turn = turn();
    let dir = temp_dir("logs");
    let port = free_udp_port();
    let env = [("WEIR_LOG__FORMAT", "json"), ("WEIR_LOG__DATA_PLANE_LINES_PER_MINUTE", "3")];
    let mut c = Collector::start_with_env(&write_config(&dir, "weir.toml", &one_shard(port, "")), &env);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..500 {
        socket.send_to(b"\x00\x63 not a flow export", ("127.0.0.1", port)).unwrap();
    }
    assert_eq!(c.wait_metric_sum("weir_decode_errors_total", 500), 500, "every datagram counted");
    assert_eq!(c.metric("weir_decode_errors_total", "reason=\"bad_version\""), [500]);
    let lines = c.log_lines(Duration::from_millis(500));
    let events: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect();
    let floods: Vec<_> =
        events.iter().filter(|e| e["fields"]["message"].as_str().unwrap().contains("not decoded")).collect();
    assert_eq!(floods.len(), 3, "{lines:?}");
    for e in &floods {
        assert_eq!(e["level"], "WARN");
        assert_eq!(e["fields"]["exporter"], "127.0.0.1");
        assert_eq!(e["fields"]["reason"], "bad_version");
    }
    c.stop();
}
