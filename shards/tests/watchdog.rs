//! systemd's notify protocol and watchdog, against a socket standing in
//! for systemd: READY once the shards run, WATCHDOG pings while the
//! pipeline moves, and none once a shard is wedged (a debug-build hook,
//! `WEIR_TEST_WEDGE_SHARD`), while `/health/live` names the shard.

mod common;

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{free_udp_port, temp_dir, two_shards, write_config, Collector};

/// Messages received on the fake systemd socket within `window`.
fn messages(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

fn pings(messages: &[String]) -> usize {
    messages.iter().filter(|m| m.lines().any(|l| l == "WATCHDOG=1")).count()
}

#[test]
fn a_wedged_shard_stops_the_watchdog_pings_and_fails_liveness() {
    let dir = temp_dir("watchdog");
    let notify_path = dir.join("notify.sock");
    let systemd = UnixDatagram::bind(&notify_path).unwrap();
    let port = free_udp_port();
    let config = write_config(&dir, "weir.toml", &format!("{}[run]\nstall_timeout_s = 2\n", two_shards(port, "ebpf")));
    let c = Collector::start_with_env(
        &config,
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
            ("WEIR_TEST_WEDGE_SHARD", "0:20"),
        ],
    );
    let first = messages(&systemd, Duration::from_millis(2500));
    assert!(first.iter().any(|m| m.contains("READY=1")), "{first:?}");
    assert!(pings(&first) >= 3, "pings every half WATCHDOG_USEC: {first:?}");
    assert_eq!(c.get_status("/health/live").0, 200);
    let (status, ready) = c.get_status("/health/ready");
    assert_eq!(status, 200, "{ready}");
    assert!(c.get("/version").contains(env!("CARGO_PKG_VERSION")));

    // The eBPF balancer deals datagrams round robin: shard 0 gets its 20th
    // and wedges in the middle of a batch.
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..100 {
        sender.send_to(b"not a flow datagram", ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    // Within the 2 s stall timeout (+ a check), liveness fails and the
    // pings stop; the other shard keeps its heartbeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = c.get_status("/health/live");
        if status == 503 {
            break body;
        }
        assert!(Instant::now() < deadline, "liveness never failed: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "failing");
    let failing: Vec<&str> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["shard 0"], "{body}");
    let _ = messages(&systemd, Duration::from_millis(600)); // a ping may be in flight
    let after = messages(&systemd, Duration::from_secs(3));
    assert_eq!(pings(&after), 0, "no pings while a shard is wedged: {after:?}");
    // The wedged process cannot drain: the Collector's drop kills it.
}

#[test]
fn without_systemd_nothing_is_sent_and_health_answers() {
    let dir = temp_dir("no-systemd");
    let config = write_config(&dir, "weir.toml", &two_shards(free_udp_port(), "ebpf"));
    let c = Collector::start(&config);
    let (status, body) = c.get_status("/health/live");
    assert_eq!(status, 200, "{body}");
    let (status, body) = c.get_status("/health/ready");
    assert_eq!(status, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["components"][0]["name"], "listeners");
    c.stop();
}
