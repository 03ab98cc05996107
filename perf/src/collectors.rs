//! The collectors the end-to-end benchmark runs, each in its own process
//! group pinned to the collector cores: Weir (counting sink, or the
//! embedded store), nfdump's `nfcapd` / `sfcapd` and pmacct's `nfacctd` /
//! `sfacctd`. Each says how many of the flows sent it accounted for:
//!
//! - Weir (counting sink): `weir_decode_flows_total` from `/metrics`;
//! - Weir (store): `weir_store_rows_inserted_total`, rows the store accepted;
//! - Weir (inlet, `weir inlet` into a tansu broker the step starts, topic
//!   `flows-v1` with a partition per shard): records the broker
//!   acknowledged (`weir_inlet_records_delivered_total`), as flows:
//!   `flows sent × records acknowledged / datagrams sent`;
//! - Weir (outlet): the step starts tansu and a `weir inlet` (on the
//!   control core, keyed by exporter, no compression) that the generator
//!   sends to, and `weir outlet` on the collector cores consuming
//!   `flows-v1` into the embedded store: rows the store accepted. CPU and
//!   memory are the outlet's only;
//! - nfdump: `nfdump -R DIR -I` over the files written (flows stored);
//! - pmacct: the print plugin's CSV (5-tuple aggregates) written at exit; it
//!   keeps packet sums, not flow counts, so flows accounted for are
//!   `flows sent × packets accounted / packets sent`.
//!
//! CPU time and peak RSS are summed over the process group (pmacct forks
//! its plugins); kernel drops come from `/proc/net/udp` for the port.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::flowgen::Sent;
use crate::traffic::Format;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `weir run` with the counting sink.
    Weir,
    /// `weir run` storing into the embedded store (chDB).
    WeirStore,
    /// `weir inlet` producing to a tansu broker.
    WeirInlet,
    /// `weir outlet` consuming what a `weir inlet` produced, into chDB.
    WeirOutlet,
    /// nfcapd (NetFlow/IPFIX) or sfcapd (sFlow).
    Nfdump,
    /// nfacctd (NetFlow/IPFIX) or sfacctd (sFlow), print plugin.
    Pmacct,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Weir, Kind::WeirStore, Kind::WeirInlet, Kind::WeirOutlet, Kind::Nfdump, Kind::Pmacct];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Weir => "weir",
            Kind::WeirStore => "weir-store",
            Kind::WeirInlet => "weir-inlet",
            Kind::WeirOutlet => "weir-outlet",
            Kind::Nfdump => "nfdump",
            Kind::Pmacct => "pmacct",
        }
    }

    pub fn is_weir(self) -> bool {
        matches!(self, Kind::Weir | Kind::WeirStore | Kind::WeirInlet | Kind::WeirOutlet)
    }

    /// The program that runs for `format`.
    pub fn program(self, format: Format) -> &'static str {
        match (self, format) {
            (Kind::Weir | Kind::WeirStore | Kind::WeirInlet | Kind::WeirOutlet, _) => "weir",
            (Kind::Nfdump, Format::SflowV5) => "sfcapd",
            (Kind::Nfdump, _) => "nfcapd",
            (Kind::Pmacct, Format::SflowV5) => "sfacctd",
            (Kind::Pmacct, _) => "nfacctd",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("{s}: not a collector (weir, weir-store, weir-inlet, weir-outlet, nfdump, pmacct)"))
    }
}

/// Where a program is, from PATH or the sbin directories.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// How to start one collector.
pub struct Setup<'a> {
    pub kind: Kind,
    pub format: Format,
    pub port: u16,
    /// The collector's cores: one shard per core for Weir; the peers are
    /// pinned to the same set.
    pub cores: &'a [usize],
    /// Weir's control-plane core (the store writer, /metrics).
    pub control_core: usize,
    /// An empty directory of its own.
    pub dir: &'a Path,
    /// The `weir` binary.
    pub weir: &'a Path,
    /// Extra lines for Weir's `[shards]` section.
    pub weir_shards: &'a str,
    /// Extra lines for Weir's `[store]` section (`weir-store`).
    pub weir_store: &'a str,
    /// Extra lines for Weir's `[kafka]` section (`weir-inlet`).
    pub weir_kafka: &'a str,
}

/// A running collector.
pub struct Running {
    child: Child,
    kind: Kind,
    port: u16,
    dir: PathBuf,
    /// Weir's HTTP address (host:port).
    http: Option<String>,
    /// The inlet's broker.
    broker: Option<Child>,
    /// The outlet's inlet.
    inlet: Option<Child>,
}

fn cpu_list(cores: &[usize]) -> String {
    cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

impl Running {
    pub fn start(s: &Setup) -> Result<Running, String> {
        let program = s.kind.program(s.format);
        // The peers run under taskset; Weir pins its own threads (taskset
        // would confine its control thread to the shard cores).
        let pinned = |exe: PathBuf| {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &cpu_list(s.cores)]).arg(exe);
            cmd
        };
        let mut broker = None;
        let mut inlet = None;
        let mut cmd = match s.kind {
            Kind::Weir | Kind::WeirStore | Kind::WeirInlet | Kind::WeirOutlet => {
                let store = || {
                    let segments = if s.weir_store.contains("segments_dir") {
                        String::new()
                    } else {
                        format!("segments_dir = \"{}\"\n", s.dir.join("segments").display())
                    };
                    format!(
                        "[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{}\"\n{segments}{}\n\
                         [store.embedded]\npath = \"{}\"\n",
                        s.dir.join("spool").display(),
                        s.weir_store,
                        s.dir.join("chdb").display()
                    )
                };
                let sink = if s.kind == Kind::Weir {
                    "[sink]\nkind = \"count\"\n".to_string()
                } else if s.kind == Kind::WeirInlet {
                    let (child, address) = start_tansu(&[("flows-v1", s.cores.len())], Some(&s.dir.join("tansu.log")))?;
                    broker = Some(child);
                    format!(
                        "[kafka]\nbrokers = \"{address}\"\nspill_dir = \"{}\"\n{}\n",
                        s.dir.join("spill").display(),
                        s.weir_kafka
                    )
                } else if s.kind == Kind::WeirOutlet {
                    let (child, address) = start_tansu(&[("flows-v1", s.cores.len())], Some(&s.dir.join("tansu.log")))?;
                    broker = Some(child);
                    inlet = Some(start_inlet(s, &address)?);
                    format!(
                        "{}[kafka]\nbrokers = \"{address}\"\n{}\n[kafka.outlet]\nsession_timeout_ms = 6000\n",
                        store(),
                        s.weir_kafka
                    )
                } else {
                    store()
                };
                let config = s.dir.join("weir.toml");
                let text = format!(
                    "[shards]\ncores = [{}]\ncontrol_core = {}\n{}\n[[listeners]]\naddress = \"127.0.0.1:{}\"\n\
                     [http]\nlisten = \"127.0.0.1:0\"\n{sink}",
                    cpu_list(s.cores),
                    s.control_core,
                    s.weir_shards,
                    s.port
                );
                std::fs::write(&config, text).map_err(|e| e.to_string())?;
                let mut cmd = Command::new(s.weir);
                let command = match s.kind {
                    Kind::WeirInlet => "inlet",
                    Kind::WeirOutlet => "outlet",
                    _ => "run",
                };
                cmd.args([command, "--config"]).arg(&config);
                cmd
            }
            Kind::Nfdump => {
                let exe =
                    find_program(program).ok_or(format!("{program} is not installed (apt-get install nfdump)"))?;
                let flows = s.dir.join("flows");
                std::fs::create_dir_all(&flows).map_err(|e| e.to_string())?;
                let mut cmd = pinned(exe);
                cmd.args(["-b", "127.0.0.1", "-p", &s.port.to_string(), "-w"]).arg(flows);
                cmd.args(["-B", "33554432", "-t", "3600"]);
                cmd
            }
            Kind::Pmacct => {
                let exe =
                    find_program(program).ok_or(format!("{program} is not installed (apt-get install pmacct)"))?;
                // Its keys are prefixed with the daemon's name.
                let prefix = program;
                let config = s.dir.join("pmacct.conf");
                let text = format!(
                    "daemonize: false\n{prefix}_ip: 127.0.0.1\n{prefix}_port: {}\n{prefix}_pipe_size: 33554432\n\
                     plugins: print[out]\naggregate[out]: src_host, dst_host, src_port, dst_port, proto\n\
                     print_output[out]: csv\nprint_output_file[out]: {}\nprint_refresh_time[out]: 3600\n\
                     plugin_buffer_size[out]: 102400\nplugin_pipe_size[out]: 268435456\n",
                    s.port,
                    s.dir.join("out.csv").display()
                );
                std::fs::write(&config, text).map_err(|e| e.to_string())?;
                let mut cmd = pinned(exe);
                cmd.arg("-f").arg(&config);
                cmd
            }
        };
        let log = std::fs::File::create(s.dir.join("collector.log")).map_err(|e| e.to_string())?;
        cmd.process_group(0).stdout(log.try_clone().map_err(|e| e.to_string())?);
        if s.kind.is_weir() {
            cmd.stderr(Stdio::piped());
        } else {
            cmd.stderr(log);
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
        let mut running =
            Running { child, kind: s.kind, port: s.port, dir: s.dir.to_path_buf(), http: None, broker, inlet };
        running.wait_ready()?;
        Ok(running)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        if self.kind.is_weir() {
            let stderr = self.child.stderr.take().ok_or("no stderr")?;
            let mut stderr = BufReader::new(stderr);
            loop {
                let mut line = String::new();
                if stderr.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                    return Err(format!("weir run exited: see {}", self.dir.join("collector.log").display()));
                }
                if let Some(rest) = line.split("http://").nth(1) {
                    self.http = rest.split('/').next().map(str::to_string);
                }
                if line.contains("ready") {
                    break;
                }
            }
            // The rest of the log, for a look after the run.
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(self.dir.join("collector.log"))
                .map_err(|e| e.to_string())?;
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
            if matches!(self.kind, Kind::WeirStore | Kind::WeirOutlet) {
                // Wait until the writer has connected and migrated.
                let deadline = Instant::now() + Duration::from_secs(120);
                while self.query("SELECT count() FROM weir.flows").is_err() {
                    if Instant::now() > deadline {
                        return Err("the store did not come up within 120 s".into());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            if self.kind == Kind::WeirOutlet {
                // The group has given the outlet its partitions.
                let deadline = Instant::now() + Duration::from_secs(60);
                while self.metric("weir_outlet_partitions") == 0 {
                    if Instant::now() > deadline {
                        return Err("the outlet got no partition within 60 s".into());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            return Ok(());
        }
        // The peers are ready once their socket is bound.
        let deadline = Instant::now() + Duration::from_secs(20);
        while udp_socket_drops(self.port).is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited ({status}): see {}",
                    self.kind.name(),
                    self.dir.join("collector.log").display()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not bind its port within 20 s", self.kind.name()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// A query through Weir's `/query` (TabSeparated).
    pub fn query(&self, sql: &str) -> Result<String, String> {
        let (status, body) = http(self.http.as_deref().ok_or("not weir")?, "POST", "/query?format=TabSeparated", sql)?;
        if status.contains("200") {
            Ok(body)
        } else {
            Err(format!("{status}: {body}"))
        }
    }

    /// Sum of a Weir metric's series.
    pub fn metric(&self, name: &str) -> u64 {
        self.http.as_deref().map_or(0, |address| metric_sum(address, name))
    }

    /// Weir's `/latency` report (ms quantiles of the commit delay).
    pub fn latency(&self) -> Option<Latency> {
        let (_, body) = http(self.http.as_deref()?, "GET", "/latency", "").ok()?;
        let get = |k: &str| body.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.trim().parse::<u64>().ok());
        Some(Latency {
            rows: get("rows")?,
            p50_ms: get("p50")?,
            p99_ms: get("p99")?,
            p999_ms: get("p99.9")?,
            max_ms: get("max")?,
        })
    }

    /// Waits until what the collector accounted for stops growing (Weir:
    /// decoded flows, and for the store rows inserted catching up with
    /// them), at most `window`. The peers get a fixed second.
    pub fn settle(&self, window: Duration) {
        if !self.kind.is_weir() {
            std::thread::sleep(Duration::from_secs(1));
            return;
        }
        let deadline = Instant::now() + window;
        let mut last = (u64::MAX, u64::MAX);
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let (decoded, stored) = match self.kind {
                Kind::WeirInlet => {
                    (self.metric("weir_inlet_records_total"), self.metric("weir_inlet_records_delivered_total"))
                }
                Kind::WeirStore | Kind::WeirOutlet => {
                    (self.metric("weir_decode_flows_total"), self.metric("weir_store_rows_inserted_total"))
                }
                _ => (self.metric("weir_decode_flows_total"), 0),
            };
            let caught_up = self.kind == Kind::Weir || stored >= decoded;
            if (caught_up && (decoded, stored) == last) || Instant::now() > deadline {
                return;
            }
            last = (decoded, stored);
        }
    }

    /// CPU seconds (user + system) of every process in the group.
    pub fn cpu_s(&self) -> f64 {
        group_processes(self.child.id()).iter().map(|p| p.cpu_s).sum()
    }

    /// Peak resident memory (VmHWM) summed over the group's processes.
    pub fn peak_rss_bytes(&self) -> u64 {
        group_processes(self.child.id()).iter().map(|p| p.peak_rss_bytes).sum()
    }

    /// Datagrams the kernel dropped on the collector's socket(s).
    pub fn kernel_drops(&self) -> u64 {
        udp_socket_drops(self.port).unwrap_or(0)
    }

    /// Flows the collector accounted for so far (Weir) or, for the peers,
    /// after stopping them (they write at exit). Stops the collector.
    pub fn stop(mut self, sent: &Sent) -> Result<u64, String> {
        let (sent_flows, sent_packets) = (sent.flows, sent.packets);
        let accounted = match self.kind {
            Kind::Weir => Some(self.metric("weir_decode_flows_total")),
            Kind::WeirStore | Kind::WeirOutlet => Some(self.metric("weir_store_rows_inserted_total")),
            Kind::WeirInlet => {
                let records = self.metric("weir_inlet_records_delivered_total");
                let datagrams = (sent.datagrams + sent.template_datagrams).max(1);
                Some((sent_flows as f64 * records as f64 / datagrams as f64).round() as u64)
            }
            _ => None,
        };
        let signal = if self.kind == Kind::Pmacct { libc::SIGINT } else { libc::SIGTERM };
        // SAFETY: a signal to the process group we started.
        unsafe { libc::kill(-(self.child.id() as i32), signal) };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    // SAFETY: as above.
                    unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
                    let _ = self.child.wait();
                    return Err(format!("{} did not stop within 120 s", self.kind.name()));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // pmacct's plugins may outlive the core process by a moment.
        std::thread::sleep(Duration::from_millis(if self.kind == Kind::Pmacct { 1000 } else { 0 }));
        if let Some(n) = accounted {
            return Ok(n);
        }
        match self.kind {
            Kind::Nfdump => nfdump_flows(&self.dir.join("flows")),
            _ => {
                let csv =
                    std::fs::read_to_string(self.dir.join("out.csv")).map_err(|e| format!("pmacct output: {e}"))?;
                let packets = pmacct_packets(&csv)?;
                Ok((sent_flows as f64 * packets as f64 / sent_packets.max(1) as f64).round() as u64)
            }
        }
    }
}

impl Drop for Running {
    /// A collector left running (an error on the way) is killed, and the
    /// inlet's broker with it.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: a signal to the process group we started.
            unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
            let _ = self.child.wait();
        }
        for child in [&mut self.inlet, &mut self.broker].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The outlet step's `weir inlet`: one shard on the control core, on the
/// step's port, keyed by exporter (so the outlet's shards all get
/// partitions), no compression; ready when it says so.
fn start_inlet(s: &Setup, brokers: &str) -> Result<Child, String> {
    let config = s.dir.join("inlet.toml");
    let text = format!(
        "[shards]\ncores = [{core}]\ncontrol_core = {core}\n[[listeners]]\naddress = \"127.0.0.1:{}\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[sink]\nkind = \"count\"\n[kafka]\nbrokers = \"{brokers}\"\n\
         partitioning = \"exporter\"\ncompression = \"none\"\nspill_dir = \"{}\"\n",
        s.port,
        s.dir.join("inlet-spill").display(),
        core = s.control_core,
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(s.dir.join("inlet.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new(s.weir)
        .args(["inlet", "--config"])
        .arg(&config)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start weir inlet: {e}"))?;
    let mut stderr = BufReader::new(child.stderr.take().ok_or("no stderr")?);
    loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            let _ = child.wait();
            return Err(format!("weir inlet exited: see {}", s.dir.join("inlet.log").display()));
        }
        let _ = (&log).write_all(line.as_bytes());
        if line.contains("ready") {
            break;
        }
    }
    let mut log = log;
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut log));
    Ok(child)
}

/// tansu (memory storage, a Kafka-protocol broker; scripts/setup-tansu
/// installs it) on a free port, with `topics` (name, partitions) created;
/// returns it and its address. Its output goes to `log`, else nowhere.
/// The benchmark's inlet steps and the Kafka tests use it.
pub fn start_tansu(topics: &[(&str, usize)], log: Option<&Path>) -> Result<(Child, String), String> {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let url = format!("tcp://127.0.0.1:{port}");
    let output = || -> Result<Stdio, String> {
        match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path);
                Ok(file.map_err(|e| format!("{}: {e}", path.display()))?.into())
            }
            None => Ok(Stdio::null()),
        }
    };
    let mut child = Command::new(find_program("tansu").ok_or("tansu is not installed (scripts/setup-tansu)")?)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(output()?)
        .stderr(output()?)
        .spawn()
        .map_err(|e| format!("tansu: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("tansu did not listen within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (topic, partitions) in topics {
        let out = Command::new("tansu")
            .args(["topic", "create", topic, "--partitions", &partitions.to_string(), "--broker", &url])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("tansu topic create {topic}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok((child, format!("127.0.0.1:{port}")))
}

/// Quantiles of Weir's commit delay, in ms.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub rows: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub p999_ms: u64,
    pub max_ms: u64,
}

/// Sum of a metric's series on Weir's `/metrics` at `address` (0 when
/// it cannot be read).
pub fn metric_sum(address: &str, name: &str) -> u64 {
    let Ok((_, body)) = http(address, "GET", "/metrics", "") else { return 0 };
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// One HTTP/1.1 request; returns the status line and the body.
pub fn http(address: &str, method: &str, path: &str, body: &str) -> Result<(String, String), String> {
    let mut s = TcpStream::connect(address).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    write!(s, "{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()).map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    Ok((head.lines().next().unwrap_or("").to_string(), body.to_string()))
}

/// Flows in nfdump's files under `dir` (`nfdump -R dir -I`).
fn nfdump_flows(dir: &Path) -> Result<u64, String> {
    let exe = find_program("nfdump").ok_or("nfdump is not installed")?;
    let out = Command::new(exe).arg("-R").arg(dir).arg("-I").output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Flows: ")?.trim().parse().ok())
        .ok_or_else(|| format!("nfdump -I gave no flow count: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Sum of the PACKETS column of pmacct's CSV output.
pub fn pmacct_packets(csv: &str) -> Result<u64, String> {
    let mut lines = csv.lines();
    let header = lines.next().ok_or("empty pmacct output")?;
    let column = header.split(',').position(|c| c == "PACKETS").ok_or("no PACKETS column in pmacct output")?;
    Ok(lines.filter_map(|l| l.split(',').nth(column)?.parse::<u64>().ok()).sum())
}

struct ProcessUsage {
    cpu_s: f64,
    peak_rss_bytes: u64,
}

/// CPU and peak RSS of the processes whose process group is `pgid`.
fn group_processes(pgid: u32) -> Vec<ProcessUsage> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (group, cpu_s) = process_stat(pid)?;
            if group != pgid {
                return None;
            }
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let hwm_kb = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
                .unwrap_or(0);
            Some(ProcessUsage { cpu_s, peak_rss_bytes: hwm_kb * 1024 })
        })
        .collect()
}

/// A process's group and its user + system CPU seconds (`/proc/PID/stat`).
fn process_stat(pid: u32) -> Option<(u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // After the command: state, ppid, pgrp, ... utime (11), stime (12).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: plain libc call.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((fields.get(2)?.parse().ok()?, ticks / tick))
}

/// The base port of `scripts/clickhouse-cluster`: one whose next 42 TCP
/// ports (ZooKeeper, then HTTP, TCP and interserver for each of the four
/// nodes) are free now on loopback, all below Linux's ephemeral range
/// (32768 up by default): a node stopped and started again must find its
/// ports free, and an outgoing connection can take an ephemeral port
/// meanwhile (one took node 2's interserver port in a CI run).
pub fn cluster_base_port() -> u16 {
    (0..50u32)
        .map(|i| (20_000 + (std::process::id() + i * 97) % 1200 * 10) as u16)
        .find(|b| (0..=42).all(|p| std::net::TcpListener::bind(("127.0.0.1", b + p)).is_ok()))
        .expect("free ports for the cluster")
}

/// User + system CPU seconds of one process (0 when it is gone).
pub fn process_cpu_s(pid: u32) -> f64 {
    process_stat(pid).map_or(0.0, |(_, cpu_s)| cpu_s)
}

/// Drops summed over the UDP sockets bound to `port` (IPv4 and IPv6), or
/// `None` when none is bound.
pub fn udp_socket_drops(port: u16) -> Option<u64> {
    let needle = format!(":{port:04X}");
    let mut found = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1).is_some_and(|local| local.ends_with(&needle)) {
                let drops = fields.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
                found = Some(found.unwrap_or(0) + drops);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmacct_csv_sums_packets() {
        let csv = "SRC_IP,DST_IP,SRC_PORT,DST_PORT,PROTOCOL,PACKETS,BYTES\n10.0.0.1,198.18.0.1,1,443,tcp,3,120\n\
                   10.0.0.2,198.18.0.1,2,443,tcp,4,160\n";
        assert_eq!(pmacct_packets(csv).unwrap(), 7);
        assert!(pmacct_packets("A,B\n1,2\n").is_err());
        assert!(pmacct_packets("").is_err());
    }

    #[test]
    fn a_bound_socket_shows_in_proc_net_udp() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(udp_socket_drops(s.local_addr().unwrap().port()), Some(0));
    }

    #[test]
    fn collector_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>().unwrap(), k);
        }
        assert_eq!(Kind::Nfdump.program(Format::SflowV5), "sfcapd");
        assert_eq!(Kind::Pmacct.program(Format::Ipfix), "nfacctd");
    }
}
