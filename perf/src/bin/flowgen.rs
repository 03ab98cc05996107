//! `weir-flowgen`: sends NetFlow v5/v9, IPFIX or sFlow v5 to a collector at
//! a target rate, for a duration or a count, then prints what it sent.
//!
//! ```text
//! weir-flowgen --target 127.0.0.1:2055 --format ipfix --flows-per-second 1M --seconds 10
//! weir-flowgen --target 192.0.2.10:6343 --format sflow --exporters 16 --datagrams 100k
//! ```
//!
//! See `weir_perf::flowgen` for how it sends and perf/README.md for uses.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use weir_perf::flowgen::{parse_amount, run, Plan, Stop, Unit};
use weir_perf::traffic::{Format, MixConfig, Prefix};

#[derive(Parser)]
#[command(name = "weir-flowgen", version, about = "Send realistic NetFlow/IPFIX/sFlow load to a collector")]
struct Args {
    /// Collector address, host:port.
    #[arg(long)]
    target: SocketAddr,
    /// v5, v9, ipfix or sflow.
    #[arg(long, default_value = "ipfix", value_parser = |s: &str| s.parse::<Format>())]
    format: Format,
    /// Target rate in flows per second (k/M suffixes); default: as fast as possible.
    #[arg(long, value_parser = parse_amount, conflicts_with = "datagrams_per_second")]
    flows_per_second: Option<f64>,
    /// Target rate in datagrams per second (k/M suffixes).
    #[arg(long, value_parser = parse_amount)]
    datagrams_per_second: Option<f64>,
    /// Send for this long (default 10 s unless a count is given).
    #[arg(long, conflicts_with_all = ["datagrams", "flows"])]
    seconds: Option<f64>,
    /// Stop after this many data datagrams.
    #[arg(long, value_parser = parse_amount, conflicts_with = "flows")]
    datagrams: Option<f64>,
    /// Stop after this many flow records.
    #[arg(long, value_parser = parse_amount)]
    flows: Option<f64>,
    /// Exporters: each its own socket, source port, sequence numbers and domain.
    #[arg(long, default_value_t = 1)]
    exporters: usize,
    /// First source address; exporter i binds SOURCE + i (127.0.0.1 spreads
    /// exporters over loopback addresses). Default: the wildcard address.
    #[arg(long)]
    source: Option<Ipv4Addr>,
    /// Flow records per datagram; default fills ~1400 bytes (v5: 30).
    #[arg(long)]
    records: Option<usize>,
    /// Resend templates and the sampling options this often (v9, IPFIX).
    #[arg(long, default_value_t = 10.0)]
    template_seconds: f64,
    /// Sampling rate the exporters announce (1 = unsampled).
    #[arg(long, default_value_t = 1000)]
    sampling_rate: u64,
    /// Source prefixes (comma separated); the first holds the top talkers.
    #[arg(long, default_value = "10.0.0.0/16", value_delimiter = ',')]
    src_prefixes: Vec<Prefix>,
    /// Destination prefixes (comma separated).
    #[arg(long, default_value = "198.18.0.0/15", value_delimiter = ',')]
    dst_prefixes: Vec<Prefix>,
    /// Distinct datagrams each exporter cycles through.
    #[arg(long, default_value_t = 1024)]
    pool: usize,
    /// Datagrams per sendmmsg call.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Sending threads, pinned to these CPUs (comma separated); default one unpinned thread.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Seed of the traffic mix.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
}

fn plan(a: Args) -> Result<(Plan, bool), String> {
    let mut p = Plan::new(a.format, a.target);
    (p.rate, p.unit) = match (a.flows_per_second, a.datagrams_per_second) {
        (Some(r), _) => (Some(r), Unit::Flows),
        (None, Some(r)) => (Some(r), Unit::Datagrams),
        (None, None) => (None, Unit::Flows),
    };
    if p.rate.is_some_and(|r| r <= 0.0) {
        return Err("the rate must be above 0".into());
    }
    p.stop = match (a.seconds, a.datagrams, a.flows) {
        (_, Some(n), _) => Stop::Count(Unit::Datagrams, n as u64),
        (_, _, Some(n)) => Stop::Count(Unit::Flows, n as u64),
        (Some(s), ..) if s.is_finite() && s > 0.0 => Stop::After(Duration::from_secs_f64(s)),
        (Some(s), ..) => return Err(format!("--seconds {s}: must be above 0")),
        (None, None, None) => Stop::After(Duration::from_secs(10)),
    };
    if a.exporters == 0 || a.batch == 0 || a.pool == 0 || a.records == Some(0) {
        return Err("--exporters, --batch, --pool and --records must be at least 1".into());
    }
    if a.sampling_rate == 0 || a.src_prefixes.is_empty() || a.dst_prefixes.is_empty() {
        return Err("--sampling-rate must be at least 1 and the prefix lists non-empty".into());
    }
    if !(a.template_seconds.is_finite() && a.template_seconds > 0.0) {
        return Err("--template-seconds must be above 0".into());
    }
    p.exporters = a.exporters;
    p.source = a.source;
    p.records = a.records;
    p.template_every = Duration::from_secs_f64(a.template_seconds);
    p.pool = a.pool;
    p.batch = a.batch;
    p.threads = if a.cpus.is_empty() { vec![None] } else { a.cpus.iter().map(|c| Some(*c)).collect() };
    p.exporters = p.exporters.max(p.threads.len());
    p.mix = MixConfig {
        sources: a.src_prefixes,
        destinations: a.dst_prefixes,
        sampling_rate: a.sampling_rate,
        ..MixConfig::default()
    };
    p.seed = a.seed;
    Ok((p, a.json))
}

fn main() -> ExitCode {
    let (plan, json) = match plan(Args::parse()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("weir-flowgen: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&plan, &AtomicBool::new(false)) {
        Ok(sent) => {
            println!("{}", if json { sent.json() } else { format!("weir-flowgen: {}", sent.summary()) });
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir-flowgen: {e}");
            ExitCode::FAILURE
        }
    }
}
