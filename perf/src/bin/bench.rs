//! `weir-bench`: the end-to-end benchmark. For each format and collector
//! (Weir with the counting sink, Weir with the embedded store, nfdump's
//! nfcapd/sfcapd, pmacct's nfacctd/sfacctd), it climbs a ladder of rates:
//! the generator (`weir_perf::flowgen`, pinned to the generator cores) sends
//! for a fixed time to a fresh collector (pinned to the collector cores),
//! and the step counts what the collector accounted for against what was
//! sent, the kernel's drops on its socket, its CPU time and peak RSS. The
//! highest rate that loses under 0.1 % is the collector's lossless rate.
//! Then, for Weir's store, the commit delay (kernel receive timestamp to
//! the row committed) at 50 % and 90 % of that rate. Output is Markdown,
//! ready for perf/RESULTS.md. Usage: perf/README.md.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use weir_perf::collectors::{find_program, Kind, Latency, Running, Setup};
use weir_perf::flowgen::{self, parse_amount, Plan, Sent, Stop, Unit};
use weir_perf::traffic::Format;

/// Loss under this share counts as lossless.
const LOSSLESS: f64 = 0.001;

#[derive(Parser)]
#[command(name = "weir-bench", about = "End-to-end benchmark of Weir and its peers on the same load")]
struct Args {
    /// Formats (comma separated): v5, v9, ipfix, sflow.
    #[arg(long, value_delimiter = ',', default_value = "ipfix,v9,sflow", value_parser = |s: &str| s.parse::<Format>())]
    formats: Vec<Format>,
    /// Collectors (comma separated): weir, weir-store, weir-inlet (into a
    /// tansu broker started per step), weir-outlet (a weir inlet on the
    /// control core feeds tansu, the outlet stores into chDB), nfdump, pmacct.
    #[arg(long, value_delimiter = ',', default_value = "weir,weir-store,nfdump,pmacct", value_parser = |s: &str| s.parse::<Kind>())]
    collectors: Vec<Kind>,
    /// The ladder, in flows/s (k/M suffixes; "max": as fast as the generator goes).
    #[arg(long, value_delimiter = ',', default_value = "100k,250k,500k,1M,2M,3M,4M,6M,8M,max")]
    rates: Vec<String>,
    /// Seconds of sending per step.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Shard counts Weir runs with (comma separated); shard k runs on the
    /// k-th collector core.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    shards: Vec<usize>,
    /// Cores for the collector (comma separated). The peers get the first
    /// as many as Weir's smallest shard count.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    collector_cores: Vec<usize>,
    /// Cores for the generator's sending threads (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    generator_cores: Vec<usize>,
    /// Weir's control-plane core (store writer, /metrics); default: the first generator core.
    #[arg(long)]
    control_core: Option<usize>,
    /// Exporters (source sockets) the generator sends from.
    #[arg(long, default_value_t = 4)]
    exporters: usize,
    /// Seconds per latency step (0: no latency steps).
    #[arg(long, default_value_t = 15.0)]
    latency_seconds: f64,
    /// Seconds of sending per step for `weir-store`: longer, so the store's
    /// background merges reach their steady state within a step.
    #[arg(long, default_value_t = 15.0)]
    store_seconds: f64,
    /// How long the store may take to catch up after the last datagram.
    #[arg(long, default_value_t = 10.0)]
    store_drain_seconds: f64,
    /// Climb the whole ladder even after a lossy step.
    #[arg(long)]
    full_ladder: bool,
    /// The CI check: IPFIX, 100 k flows/s for 2 s, every installed collector, no latency steps.
    #[arg(long)]
    smoke: bool,
    /// The weir binary; default: next to this one.
    #[arg(long)]
    weir: Option<PathBuf>,
    /// Extra lines for Weir's `[shards]` section (e.g. "receive_coalesce_us = 0").
    #[arg(long, default_value = "")]
    weir_shards: String,
    /// Extra lines for `weir-store`'s `[store]` section (e.g. `raw = "segments"`;
    /// `segments_dir` defaults to the step's directory).
    #[arg(long, default_value = "")]
    weir_store: String,
    /// Extra lines for `weir-inlet`'s and `weir-outlet`'s `[kafka]` section (e.g. `compression = "none"`).
    #[arg(long, default_value = "")]
    weir_kafka: String,
    /// Keep the collectors' directories (logs, files) under this directory.
    #[arg(long)]
    keep: Option<PathBuf>,
}

struct Step {
    kind: Kind,
    shards: usize,
    rate: Option<f64>,
    sent: Sent,
    accounted: u64,
    kernel_drops: u64,
    cpu_s: f64,
    peak_rss: u64,
    latency: Option<Latency>,
}

impl Step {
    fn loss(&self) -> f64 {
        1.0 - self.accounted as f64 / self.sent.flows.max(1) as f64
    }

    fn lossless(&self) -> bool {
        self.sent.flows > 0 && self.loss() < LOSSLESS
    }

    fn flows_per_s(&self) -> f64 {
        self.accounted as f64 / self.sent.seconds.max(1e-9)
    }

    fn flows_per_cpu_s(&self) -> f64 {
        self.accounted as f64 / self.cpu_s.max(1e-9)
    }
}

struct Bench {
    args: Args,
    weir: PathBuf,
    work: PathBuf,
    generator: Vec<usize>,
    control_core: usize,
    step_no: usize,
}

impl Bench {
    fn label(&self, kind: Kind, shards: usize) -> String {
        if kind.is_weir() {
            format!("{} ({} shard{})", kind.name(), shards, if shards == 1 { "" } else { "s" })
        } else {
            kind.name().to_string()
        }
    }

    /// One step: a fresh collector, `seconds` of load at `rate`, the count.
    fn step(
        &mut self,
        format: Format,
        kind: Kind,
        shards: usize,
        rate: Option<f64>,
        seconds: f64,
    ) -> Result<Step, String> {
        self.step_no += 1;
        let dir = self.work.join(format!("{:03}-{}-{}-{}", self.step_no, format.name(), kind.name(), shards));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port =
            std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map_err(|e| e.to_string())?.port();
        let cores = &self.args.collector_cores[..shards];
        let setup = Setup {
            kind,
            format,
            port,
            cores,
            control_core: self.control_core,
            dir: &dir,
            weir: &self.weir,
            weir_shards: &self.args.weir_shards,
            weir_store: &self.args.weir_store,
            weir_kafka: &self.args.weir_kafka,
        };
        let running = Running::start(&setup)?;
        let cpu_before = running.cpu_s();
        let mut plan = Plan::new(format, ([127, 0, 0, 1], port).into());
        plan.rate = rate;
        plan.unit = Unit::Flows;
        plan.stop = Stop::After(Duration::from_secs_f64(seconds));
        plan.exporters = self.args.exporters.max(self.generator.len());
        plan.threads = self.generator.iter().map(|c| Some(*c)).collect();
        let sent = flowgen::run(&plan, &AtomicBool::new(false))?;
        running.settle(Duration::from_secs_f64(if matches!(kind, Kind::WeirStore | Kind::WeirOutlet) {
            self.args.store_drain_seconds
        } else {
            5.0
        }));
        let cpu_s = running.cpu_s() - cpu_before;
        let peak_rss = running.peak_rss_bytes();
        let kernel_drops = running.kernel_drops();
        let latency = if matches!(kind, Kind::WeirStore | Kind::WeirOutlet) { running.latency() } else { None };
        let accounted = running.stop(&sent)?;
        if self.args.keep.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(Step { kind, shards, rate, sent, accounted, kernel_drops, cpu_s, peak_rss, latency })
    }

    fn print_step(&self, s: &Step) {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.3} % | {} | {:.2} | {:.0} | {:.0} | {} |",
            self.label(s.kind, s.shards),
            s.rate.map_or("max".to_string(), |r| format!("{r:.0}")),
            s.sent.flows as f64 / s.sent.seconds.max(1e-9),
            s.flows_per_s(),
            100.0 * s.loss().max(0.0),
            s.kernel_drops,
            s.cpu_s,
            s.flows_per_cpu_s(),
            s.peak_rss as f64 / (1 << 20) as f64,
            s.latency.map_or("—".into(), |l| format!("{} / {}", l.p50_ms, l.p99_ms)),
        );
    }

    /// Climbs the ladder; returns every step.
    fn ladder(&mut self, format: Format, kind: Kind, shards: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        let rates: Vec<Option<f64>> =
            self.args.rates.iter().map(|r| if r == "max" { None } else { parse_amount(r).ok() }).collect();
        let seconds = if matches!(kind, Kind::WeirStore | Kind::WeirOutlet) {
            self.args.store_seconds
        } else {
            self.args.seconds
        };
        for rate in rates {
            match self.step(format, kind, shards, rate, seconds) {
                Ok(s) => {
                    self.print_step(&s);
                    let lossless = s.lossless();
                    steps.push(s);
                    if !lossless && !self.args.full_ladder {
                        break;
                    }
                }
                Err(e) => {
                    println!(
                        "| {} | {} | error: {e} |",
                        self.label(kind, shards),
                        rate.map_or("max".into(), |r| r.to_string())
                    );
                    break;
                }
            }
        }
        steps
    }
}

/// One collector's ladder.
struct Ladder {
    kind: Kind,
    shards: usize,
    steps: Vec<Step>,
}

impl Ladder {
    /// The highest lossless step.
    fn top(&self) -> Option<&Step> {
        self.steps.iter().rfind(|s| s.lossless())
    }

    /// The lossless step at a target rate.
    fn at(&self, rate: Option<f64>) -> Option<&Step> {
        self.steps.iter().find(|s| s.rate == rate && s.lossless())
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")?.split(':').nth(1)).unwrap_or("?").trim();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} × {model}, Linux {}", kernel.trim())
}

fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    let mut args = Args::parse();
    if args.smoke {
        args.formats = vec![Format::Ipfix];
        args.rates = vec!["100k".into()];
        args.seconds = 2.0;
        args.latency_seconds = 0.0;
        args.shards = vec![1];
    }
    let shards_max = args.shards.iter().copied().max().unwrap_or(1);
    if args.shards.contains(&0) || shards_max > args.collector_cores.len() {
        eprintln!("weir-bench: --shards up to {shards_max} needs as many --collector-cores");
        std::process::exit(2);
    }
    let generator = args.generator_cores.clone();
    let control_core = args.control_core.unwrap_or(generator[0]);
    let weir = args.weir.clone().unwrap_or_else(|| std::env::current_exe().unwrap().with_file_name("weir"));
    if args.collectors.iter().any(|k| k.is_weir()) && !weir.is_file() {
        eprintln!("weir-bench: {} missing (cargo build --release -p weir-shards)", weir.display());
        std::process::exit(2);
    }
    let missing: Vec<&str> = args
        .collectors
        .iter()
        .filter(|k| !k.is_weir())
        .flat_map(|k| args.formats.iter().map(|f| k.program(*f)))
        .filter(|p| find_program(p).is_none())
        .collect();
    if !missing.is_empty() {
        eprintln!("weir-bench: not installed, skipped: {} (scripts/setup installs them)", missing.join(", "));
    }
    let work =
        args.keep.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("weir-bench-{}", std::process::id())));
    flowgen::pin(generator[0]);
    println!("# weir-bench");
    println!();
    println!("- Machine: {}", machine());
    println!("- Commit: {}", commit());
    println!("- Command: `{}`", std::env::args().collect::<Vec<_>>().join(" "));
    println!(
        "- Collector cores {:?}, generator cores {generator:?} ({} exporters), Weir's control core {control_core}; \
         {} s per step; lossless: under {} % of the flows sent missing",
        args.collector_cores,
        args.exporters,
        args.seconds,
        LOSSLESS * 100.0
    );
    println!("- CPU: user + system time of the collector's processes (the kernel's loopback receive work runs on the sender's core and is not in it)");
    let mut bench = Bench { weir, work: work.clone(), generator, control_core, step_no: 0, args };
    let mut failed = false;
    let formats = bench.args.formats.clone();
    let collectors = bench.args.collectors.clone();
    for format in formats {
        println!("\n## {}\n", format.name());
        println!("| collector | target flows/s | sent flows/s | accounted flows/s | lost | kernel drops | CPU s | flows per CPU-s | peak RSS MiB | commit delay p50 / p99 ms |");
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let mut ladders: Vec<Ladder> = Vec::new();
        for &kind in &collectors {
            if !kind.is_weir() && find_program(kind.program(format)).is_none() {
                continue;
            }
            let shard_counts = if kind.is_weir() {
                bench.args.shards.clone()
            } else {
                vec![*bench.args.shards.iter().min().unwrap_or(&1)]
            };
            for shards in shard_counts {
                let steps = bench.ladder(format, kind, shards);
                failed |= steps.first().is_none_or(|s| s.accounted == 0);
                ladders.push(Ladder { kind, shards, steps });
            }
        }
        summary(&bench, &ladders);
        if bench.args.latency_seconds > 0.0 {
            latency(&mut bench, format, &ladders);
        }
    }
    if bench.args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    if failed {
        eprintln!("weir-bench: a collector accounted for nothing at the lowest rate (see the tables)");
        std::process::exit(1);
    }
}

fn summary(bench: &Bench, ladders: &[Ladder]) {
    println!("\n| collector | highest lossless flows/s | flows per CPU-s there | peak RSS MiB |");
    println!("| --- | --- | --- | --- |");
    for l in ladders {
        match l.top() {
            Some(s) => println!(
                "| {} | {:.0}{} | {:.0} | {:.0} |",
                bench.label(l.kind, l.shards),
                s.flows_per_s(),
                if s.rate.is_none() { " (the generator's limit)" } else { "" },
                s.flows_per_cpu_s(),
                s.peak_rss as f64 / (1 << 20) as f64
            ),
            None => println!("| {} | below the first rate | — | — |", bench.label(l.kind, l.shards)),
        }
    }
    let rate_of = |s: &Step| s.flows_per_s();
    let Some(peer) = ladders
        .iter()
        .filter(|l| !l.kind.is_weir() && l.top().is_some())
        .max_by(|a, b| rate_of(a.top().unwrap()).total_cmp(&rate_of(b.top().unwrap())))
    else {
        return;
    };
    let peer_top = peer.top().expect("filtered");
    println!();
    for weir in ladders.iter().filter(|l| l.kind.is_weir()) {
        let Some(top) = weir.top() else { continue };
        // Flows per CPU-second compare at one rate: the lower of the two
        // lossless rates, where both kept up.
        let rate = if rate_of(top) < rate_of(peer_top) { top.rate } else { peer_top.rate };
        let cpu = match (weir.at(rate), peer.at(rate)) {
            (Some(w), Some(p)) => format!(
                "flows per CPU-second at {} flows/s **{:.2}×** ({:.0} vs {:.0})",
                rate.map_or("max".into(), |r| format!("{r:.0}")),
                w.flows_per_cpu_s() / p.flows_per_cpu_s().max(1e-9),
                w.flows_per_cpu_s(),
                p.flows_per_cpu_s()
            ),
            _ => "no common lossless rate for flows per CPU-second".into(),
        };
        println!(
            "- {} / {} (best peer): lossless rate **{:.2}×**; {cpu}",
            bench.label(weir.kind, weir.shards),
            peer.kind.name(),
            rate_of(top) / rate_of(peer_top),
        );
    }
}

fn latency(bench: &mut Bench, format: Format, ladders: &[Ladder]) {
    let Some((shards, Some(top))) = ladders.iter().find(|l| l.kind == Kind::WeirStore).map(|l| (l.shards, l.top()))
    else {
        return;
    };
    let rate = top.flows_per_s();
    println!(
        "\nCommit delay (kernel receive timestamp → row committed to the embedded store), {} s per step:\n",
        bench.args.latency_seconds
    );
    println!("| share of the lossless rate | flows/s | rows timed | p50 ms | p99 ms | p99.9 ms | max ms | lost |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for share in [0.5, 0.9] {
        match bench.step(format, Kind::WeirStore, shards, Some(rate * share), bench.args.latency_seconds) {
            Ok(s) => {
                let l = s.latency.unwrap_or(Latency { rows: 0, p50_ms: 0, p99_ms: 0, p999_ms: 0, max_ms: 0 });
                println!(
                    "| {:.0} % | {:.0} | {} | {} | {} | {} | {} | {:.3} % |",
                    share * 100.0,
                    s.flows_per_s(),
                    l.rows,
                    l.p50_ms,
                    l.p99_ms,
                    l.p999_ms,
                    l.max_ms,
                    100.0 * s.loss().max(0.0)
                );
            }
            Err(e) => println!("| {:.0} % | error: {e} |", share * 100.0),
        }
    }
}
