//! CI's check of the perf tools: they build, and a 2-second run works. The
//! numbers are for people (perf/README.md), not asserted here.

use std::path::PathBuf;
use std::process::Command;

/// The `weir` binary of this build, built first when missing.
fn weir() -> PathBuf {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_weir-bench"));
    let weir = bench.with_file_name("weir");
    if !weir.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = bench.parent().is_some_and(|d| d.ends_with("release"));
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "weir-shards", "--bin", "weir"]);
        if release {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "cargo build -p weir-shards");
    }
    weir
}

fn cores() -> (String, String) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    ("0".into(), if cpus > 1 { "1" } else { "0" }.into())
}

#[test]
fn the_end_to_end_benchmark_runs_for_two_seconds() {
    let (collector, generator) = cores();
    let out = Command::new(env!("CARGO_BIN_EXE_weir-bench"))
        .arg("--smoke")
        .arg("--weir")
        .arg(weir())
        .args(["--collector-cores", &collector, "--generator-cores", &generator])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for collector in ["weir (1 shard)", "weir-store (1 shard)"] {
        assert!(stdout.contains(&format!("| {collector} | 100000 |")), "{collector} ran a step:\n{stdout}");
    }
    assert!(stdout.contains("(best peer): lossless rate"), "ratios against the peers:\n{stdout}\n{stderr}");
}

#[test]
fn the_flow_generator_sends_for_two_seconds_and_reports() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = socket.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_weir-flowgen"))
        .args(["--target", &target, "--format", "sflow", "--flows-per-second", "10k", "--seconds", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let flows = report["flows"].as_u64().unwrap();
    assert!((19_000..=21_000).contains(&flows), "{report}");
    assert!(report["seconds"].as_f64().unwrap() >= 2.0, "{report}");
    let bad = Command::new(env!("CARGO_BIN_EXE_weir-flowgen"))
        .args(["--target", &target, "--format", "v7"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad format is refused");
}

#[test]
fn the_access_log_benchmark_runs_both_collectors_on_a_few_lines() {
    let (collector, sender) = cores();
    let out = Command::new(env!("CARGO_BIN_EXE_weir-logbench"))
        .args(["--lines", "2000", "--collector-cpu", &collector, "--sender-cpu", &sender])
        .arg("--weir")
        .arg(weir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for collector in ["weir", "rsyslog"] {
        assert!(stdout.contains(&format!("| {collector} | 2000 |")), "{collector} ran:\n{stdout}\n{stderr}");
    }
    assert!(stdout.contains("weir / rsyslog:"), "{stdout}");
}
