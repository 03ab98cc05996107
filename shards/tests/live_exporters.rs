//! A real exporter, live: softflowd reads the synthetic traffic and exports
//! to a UDP socket this test owns; what arrives is written to a capture and
//! decoded by `weir decode`. Needs softflowd (scripts/setup).

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weir_core::pcap::{write_udp_pcap, UdpToWrite};

fn receive_export(version: &str) -> Vec<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let port = socket.local_addr().unwrap().port();
    // softflowd hangs or fails with long paths: the -r file at most 16
    // characters, the control socket at most 12.
    let id = std::process::id() % 1000;
    let traffic = format!("/tmp/w{id}-{version}.pcap");
    let (ctl, pid) = (format!("/tmp/w{version}.ctl"), format!("/tmp/w{version}.pid"));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traffic.pcap");
    std::fs::copy(fixture, &traffic).unwrap();
    // `timeout`: a stuck exporter fails the test instead of stalling CI.
    let status = Command::new("timeout")
        .args([
            "30",
            "softflowd",
            "-r",
            &traffic,
            "-n",
            &format!("127.0.0.1:{port}"),
            "-v",
            version,
            "-d",
            "-c",
            &ctl,
            "-p",
            &pid,
        ])
        .output()
        .expect("softflowd is installed (scripts/setup)");
    assert!(status.status.success(), "softflowd: {}", String::from_utf8_lossy(&status.stderr));
    let mut datagrams = Vec::new();
    let mut buf = [0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            datagrams.push(buf[..n].to_vec());
        } else if !datagrams.is_empty() {
            break;
        }
    }
    for f in [&traffic, &ctl, &pid] {
        let _ = std::fs::remove_file(f);
    }
    datagrams
}

fn decode(datagrams: &[Vec<u8>]) -> (usize, String) {
    let list: Vec<UdpToWrite> = datagrams
        .iter()
        .enumerate()
        .map(|(i, d)| UdpToWrite {
            timestamp_ns: i as u64,
            src: [127, 0, 0, 1],
            dst: [127, 0, 0, 1],
            src_port: 1,
            dst_port: 2055,
            payload: d,
        })
        .collect();
    let file = std::env::temp_dir().join(format!("weir-live-{}-{}.pcap", std::process::id(), datagrams.len()));
    std::fs::write(&file, write_udp_pcap(&list)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).arg("decode").arg(&file).output().unwrap();
    assert!(out.status.success());
    let _ = std::fs::remove_file(&file);
    (String::from_utf8(out.stdout).unwrap().lines().count(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn softflowd_live_export_decodes_completely() {
    // 36 flows in the traffic, 16 of them TCP with replies: 52 one-way flows;
    // NetFlow v5 has no IPv6, leaving 36.
    for (version, flows) in [("9", 52), ("10", 52), ("5", 36)] {
        let datagrams = receive_export(version);
        assert!(!datagrams.is_empty(), "v{version}: nothing exported");
        let (count, summary) = decode(&datagrams);
        assert_eq!(count, flows, "v{version}: {summary}");
        for line in summary.lines().filter(|l| l.starts_with("errors{")) {
            assert!(line.ends_with(" 0"), "v{version}: {line}");
        }
    }
}
