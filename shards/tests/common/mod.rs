//! What the `weir run` integration tests share: a collector child process
//! with its log and `/metrics`, temporary directories, free ports.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_core::encode::{netflow_v5, ExportHeader};
use weir_core::flow::{addr_from_v4, FlowRecord};
use weir_core::pcap::{Frame, PcapReader};

/// A UDP port nothing is bound to now, and that this process has not
/// handed out before (`fresh`).
pub fn free_udp_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    fresh(&GIVEN, || UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

/// A port from `pick` that `given` does not hold yet, then held: the
/// kernel may hand the same free port out twice before a test binds it
/// (a gobgpd peer once dialled the collector's BMP port, picked the same).
fn fresh(given: &std::sync::Mutex<Vec<u16>>, pick: impl Fn() -> u16) -> u16 {
    let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = pick();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A fresh directory for test `name`, in the system's temp directory.
/// The ones earlier runs of it left are removed first (`sweep_left_behind`):
/// this run's stays, for a look after a failure, until the next run.
pub fn temp_dir(name: &str) -> PathBuf {
    let prefix = format!("weir-run-{name}-");
    sweep_left_behind(&prefix);
    let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the temp directories named `prefix` + a process id whose
/// process is gone: without it every test run left its stores, spools
/// and logs behind (about 250 MB a run of the suite).
pub fn sweep_left_behind(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(prefix)).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A running `weir run`, its metrics address and its log lines.
pub struct Collector {
    pub child: Child,
    pub metrics: String,
    pub log: mpsc::Receiver<String>,
}

impl Collector {
    pub fn start(config: &Path) -> Collector {
        Self::start_with_env(config, &[])
    }

    /// Starts `weir run` with extra environment variables.
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Collector {
        Self::start_as("run", config, env)
    }

    /// Starts `weir COMMAND --config CONFIG` (`run`, `inlet`).
    pub fn start_as(command: &str, config: &Path, env: &[(&str, &str)]) -> Collector {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([command, "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                let _ = tx.send(line);
            }
        });
        let mut c = Collector { child, metrics: String::new(), log };
        // The address ends at the path, in a human line or a JSON one.
        let line = c.wait_for("metrics at http://");
        c.metrics = line.split("http://").nth(1).unwrap().split('/').next().unwrap().to_string();
        c.wait_for("ready");
        c
    }

    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_within(needle, Duration::from_secs(20))
    }

    /// The first log line from now on that holds `needle`, within `within`.
    pub fn wait_for_within(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.log.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => panic!("weir exited before logging {needle:?}"),
            }
        }
        panic!("weir never logged {needle:?}");
    }

    /// The body of `/metrics`.
    pub fn scrape(&self) -> String {
        self.get("/metrics")
    }

    /// The log lines written since the last `wait_for`, waiting `quiet`
    /// for more after the last one.
    pub fn log_lines(&mut self, quiet: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_timeout(quiet) {
            lines.push(line);
        }
        lines
    }

    /// The body of a GET on the HTTP port, which must answer 200.
    pub fn get(&self, path: &str) -> String {
        let (status, body) = self.get_status(path);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    /// The status code and body of a GET on the HTTP port.
    pub fn get_status(&self, path: &str) -> (u16, String) {
        exchange(&self.metrics, format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
    }

    /// The samples of one metric whose labels contain `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> Vec<u64> {
        let body = self.scrape();
        body.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| l.contains(labels))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect()
    }

    pub fn wait_metric_sum(&self, name: &str, want: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: u64 = self.metric(name, "").iter().sum();
            if got >= want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `promtool check metrics` on the exposition prints nothing.
    pub fn assert_promtool_is_silent(&self) {
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (scripts/setup installs the prometheus package)");
        promtool.stdin.take().unwrap().write_all(self.scrape().as_bytes()).unwrap();
        let lint = promtool.wait_with_output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&lint.stdout), String::from_utf8_lossy(&lint.stderr));
        assert!(lint.status.success() && said.is_empty(), "promtool check metrics: {said}");
    }

    pub fn stop(mut self) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "weir run exited with {status}");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `request` as it is to `address` and reads until the server closes
/// (it answers one request per connection): the status and the body.
pub fn exchange(address: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(address).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(70))).unwrap();
    // The server may answer (and close) before it read everything.
    let _ = s.write_all(request);
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// `weir query` of a statement that changes the store, through the
/// collector at `http`: refused (the default `http.query_writes = false`);
/// returns what it said.
pub fn query_refused(config: &Path, http: &str, sql: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["query", "--http", http, "--config"])
        .arg(config)
        .arg(sql)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && said.contains("read-only (http.query_writes = false)"), "{sql}: {said}");
    said
}

pub fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    // Without a [sink] section, flows are counted (the default is the store).
    let sink = if body.contains("[sink]") { "" } else { "[sink]\nkind = \"count\"\n" };
    std::fs::write(&path, format!("[http]\nlisten = \"127.0.0.1:0\"\n{sink}{body}")).unwrap();
    path
}

/// Two shards (CPU 0 and the control CPU) on one loopback listener.
pub fn two_shards(port: u16, mode: &str) -> String {
    let control = if cpus() > 1 { 1 } else { 0 };
    format!(
        "[shards]\ncores = [0, {control}]\ncontrol_core = {control}\n\
         [[listeners]]\naddress = \"127.0.0.1:{port}\"\n[balancer]\nmode = \"{mode}\"\n"
    )
}

/// Sends the UDP payloads of a capture, paced like an exporter (2 ms
/// apart, so a template crosses shards before its data); returns how many.
pub fn replay(pcap: &Path, port: u16) -> u64 {
    let data = std::fs::read(pcap).unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0;
    for frame in PcapReader::new(&data).unwrap() {
        if let Ok(Frame::Udp(d)) = frame {
            sender.send_to(d.payload, ("127.0.0.1", port)).unwrap();
            sent += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    sent
}

/// `weir query` (TSV): through the running collector when `http` is given.
pub fn query(config: &Path, http: Option<&str>, sql: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["query", "--format", "TSV", "--config"]).arg(config);
    if let Some(http) = http {
        cmd.args(["--http", http]);
    }
    let out = cmd.arg(sql).output().unwrap();
    assert!(out.status.success(), "weir query {sql}: {}", String::from_utf8_lossy(&out.stderr));
    // FixedString(16) addresses (ClickHouse 18.16) print as raw bytes.
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the store has accepted `rows` rows (per `/metrics`).
pub fn wait_rows_inserted(c: &Collector, rows: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let got: u64 = c.metric("weir_store_rows_inserted_total", "").iter().sum();
        if got >= rows || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `done`, failing with `what` after `within`.
pub fn wait_until(what: &str, within: Duration, done: impl FnMut() -> bool) {
    wait_until_else(within, done, || what.to_string());
}

/// Waits for `done`, failing after `within` with what `say` tells then
/// (the state of things when the wait ran out).
pub fn wait_until_else(within: Duration, mut done: impl FnMut() -> bool, say: impl FnOnce() -> String) {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            panic!("{}", say());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `flows` from `socket` to `port` as one IPFIX datagram (a small
/// router's IPv4 template, then the data).
pub fn send_ipfix(socket: &UdpSocket, port: u16, sequence: u32, flows: &[FlowRecord]) {
    use weir_core::encode::{MessageBuilder, TemplateSpec};
    use weir_core::wire::template::Protocol;
    let h = ExportHeader { export_time_s: 1_700_000_000, sys_uptime_ms: 1000, sequence, domain: 0 };
    let template = TemplateSpec::compact_ipv4(256);
    let mut b = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
    b.template(&template);
    for f in flows {
        b.data(&template, f);
    }
    socket.send_to(&b.finish(), ("127.0.0.1", port)).unwrap();
}

/// One v5 datagram of 30 flows numbered from `first` (SrcPort/DstPort carry the number).
pub fn numbered_v5(first: u32) -> Vec<u8> {
    numbered_v5_from(first, [10, 0, 0, 1])
}

pub fn numbered_v5_from(first: u32, source: [u8; 4]) -> Vec<u8> {
    numbered_v5_through(first, source, (0, 0))
}

/// 30 numbered flows from `source`, in and out through `interfaces`.
pub fn numbered_v5_through(first: u32, source: [u8; 4], interfaces: (u32, u32)) -> Vec<u8> {
    let flows: Vec<FlowRecord> = (first..first + 30)
        .map(|n| {
            let mut f = FlowRecord::default();
            f.set_src_addr(addr_from_v4(source));
            f.set_dst_addr(addr_from_v4([192, 0, 2, 9]));
            f.set_src_port((n % 65_536) as u16);
            f.set_dst_port((n / 65_536) as u16);
            f.set_proto(17);
            f.set_packets(1);
            f.set_bytes(100);
            if interfaces != (0, 0) {
                f.set_in_if_index(interfaces.0);
                f.set_out_if_index(interfaces.1);
            }
            f
        })
        .collect();
    let h = ExportHeader { export_time_s: 1_700_000_000, sys_uptime_ms: 1000, sequence: first, domain: 0 };
    let mut out = Vec::new();
    netflow_v5(&h, (0, 0), 0, &flows, &mut out);
    out
}

/// `python3 -m http.server` on 127.0.0.1 serving `dir`, killed on drop.
pub struct HttpServer {
    pub port: u16,
    child: Child,
}

impl HttpServer {
    pub fn start(dir: &Path) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer { port, child }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A ClickHouse 18.16 server on loopback, stopped (SIGTERM, waited for) on drop.
pub struct Server {
    dir: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    pub pid: i32,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let (http_port, tcp_port) = (free_tcp_port(), free_tcp_port());
        let mut s = Server { dir: dir.to_path_buf(), http_port, tcp_port, pid: 0 };
        s.restart();
        s
    }

    pub fn restart(&mut self) {
        let out = Command::new(repo_root().join("scripts/clickhouse-server"))
            .arg(&self.dir)
            .args([self.http_port.to_string(), self.tcp_port.to_string()])
            .output()
            .expect("scripts/clickhouse-server runs (scripts/setup installs clickhouse-server)");
        assert!(out.status.success(), "clickhouse-server: {}", String::from_utf8_lossy(&out.stderr));
        self.pid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    }

    pub fn stop(&mut self) {
        if self.pid == 0 {
            return;
        }
        // SAFETY: plain syscall on the server this test started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{}", self.pid)).exists() && Instant::now() < deadline {
            // The server is not our child (the script started it): reap nothing, just wait.
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
            if stat.contains(") Z ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.pid = 0;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP port nothing listens on now, and that this process has not
/// handed out before.
pub fn free_tcp_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    fresh(&GIVEN, || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}
