//! The HAProxy access-log input against real parts: Debian's HAProxy
//! logging RFC 5424 with structured data and captured headers to Weir's
//! socket, a Python backend, and tansu (a Kafka-protocol broker) read back
//! with rdkafka's consumer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{free_tcp_port, temp_dir, Collector};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

static TURNS: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// tansu with in-memory storage.
struct Broker {
    child: Child,
    address: String,
}

impl Broker {
    fn start(topics: &[&str]) -> Broker {
        let topics: Vec<(&str, usize)> = topics.iter().map(|t| (*t, 1)).collect();
        let (child, address) = weir_perf::collectors::start_tansu(&topics, None).unwrap();
        Broker { child, address }
    }

    /// SIGSTOP: connections stay open and nothing is answered.
    fn pause(&self) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    fn resume(&self) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    fn address(&self) -> String {
        self.address.clone()
    }

    /// Every message of partition 0 of `topic`, from the start, until
    /// `want` have come or `wait` has passed.
    fn consume(&self, topic: &str, want: usize, wait: Duration) -> Vec<serde_json::Value> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .set("group.id", "weir-test")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
        consumer.assign(&partitions).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + wait;
        while out.len() < want && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let payload = m.payload().unwrap_or_default();
                out.push(serde_json::from_slice(payload).unwrap_or_else(|e| panic!("{e}: {payload:?}")));
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3 -m http.server` serving a directory with one page.
struct Backend(Child);

impl Backend {
    fn start(dir: &Path, port: u16) -> Backend {
        let root = dir.join("www");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<html>weir</html>\n").unwrap();
        let child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
            .current_dir(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "the backend");
        Backend(child)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy in the foreground, logging to `socket` with the README's format.
struct Haproxy(Child);

impl Haproxy {
    fn start(dir: &Path, socket: &Path, port: u16, backend: u16) -> Haproxy {
        Haproxy::with_config(dir, &haproxy_config(socket, port, backend), port)
    }

    fn with_config(dir: &Path, text: &str, port: u16) -> Haproxy {
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, text).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (scripts/setup installs it)");
        wait_for_port(port, "haproxy");
        Haproxy(child)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The configuration the README shows, on test ports.
fn haproxy_config(socket: &Path, port: u16, backend: u16) -> String {
    format!(
        r#"global
    log {socket} len 8192 format rfc5424 local0 info
defaults
    mode http
    log global
    option dontlognull
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend www
    bind 127.0.0.1:{port}
    capture request header Host len 64
    capture request header User-Agent len 128
    capture request header X-Request-Id len 64
    capture response header Content-Type len 64
    capture response header X-Cache len 16
    log-format-sd "[weir@1 ci=\"%ci\" cp=\"%cp\" t=\"%Ts.%ms\" ft=\"%ft\" b=\"%b\" s=\"%s\" TR=\"%TR\" Tw=\"%Tw\" Tc=\"%Tc\" Tr=\"%Tr\" Ta=\"%Ta\" ST=\"%ST\" B=\"%B\" tsc=\"%tsc\" rt=\"%rt\" cache=\"%[res.cache_hit]\" hr=\"%{{+E}}hr\" hs=\"%{{+E}}hs\"]"
    log-format "%{{+Q}}r"
    default_backend app
backend app
    server app1 127.0.0.1:{backend}
"#,
        socket = socket.display()
    )
}

/// One GET through HAProxy; returns the status.
fn get(port: u16, path: &str, id: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: cache.example\r\nUser-Agent: weir-test \"quoted\" (x|y)\r\n\
         X-Request-Id: {id}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// One request as raw bytes (headers HAProxy copies as they come); returns the status.
fn raw_request(port: u16, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// The fenced block after `<!-- NAME: ... -->` in the README.
fn readme_block(name: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let after = readme.split_once(&format!("<!-- {name}:")).unwrap_or_else(|| panic!("README has no {name}")).1;
    let block = after.split_once("```").unwrap().1.split_once('\n').unwrap().1;
    block.split_once("```").unwrap().0.to_string()
}

/// `text` with each (from, to) replaced; each `from` must be there.
fn replaced(mut text: String, pairs: &[(&str, &str)]) -> String {
    for (from, to) in pairs {
        assert!(text.contains(from), "the README's block no longer has {from:?}");
        text = text.replace(from, to);
    }
    text
}

fn weir_config(dir: &Path, socket: &Path, broker: &Broker) -> PathBuf {
    // Top-level keys come before any table.
    let body = format!(
        "listeners = []\n[http]\nlisten = \"127.0.0.1:0\"\n[haproxy]\nenabled = true\nsocket = \"{}\"\nkey = \"client_ip\"\n\
         request_counter_wait_s = 1\n\
         [haproxy.kafka]\nbrokers = \"{}\"\ntopic = \"access\"\ndead_letter_topic = \"access-dead\"\n\
         linger_ms = 1\n",
        socket.display(),
        broker.address()
    );
    let path = dir.join("weir.toml");
    std::fs::write(&path, body).unwrap();
    path
}

struct Setup {
    dir: PathBuf,
    socket: PathBuf,
    /// HAProxy's frontend.
    port: u16,
    backend_port: u16,
    _backend: Backend,
}

fn setup(name: &str) -> Setup {
    let dir = temp_dir(name);
    let backend_port = free_tcp_port();
    let backend = Backend::start(&dir, backend_port);
    Setup { socket: dir.join("haproxy-log.sock"), dir, port: free_tcp_port(), backend_port, _backend: backend }
}

#[test]
fn every_request_becomes_one_message_and_garbage_is_dead_lettered() {
    let _turn = turn();
    let s = setup("haproxy-requests");
    let broker = Broker::start(&["access", "access-dead"]);
    let c = Collector::start(&weir_config(&s.dir, &s.socket, &broker));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&s.socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o660, "the configured mode");
    let _haproxy = Haproxy::start(&s.dir, &s.socket, s.port, s.backend_port);
    let n = 200;
    let mut statuses = BTreeMap::new();
    for i in 0..n {
        let path = if i % 10 == 9 { format!("/missing-{i}") } else { "/".to_string() };
        let id = format!("req-{i:04}");
        statuses.insert(id.clone(), (get(s.port, &path, &id), path));
    }
    let messages = broker.consume("access", n, Duration::from_secs(30));
    assert_eq!(messages.len(), n, "exactly one message per request");
    let mut seen = BTreeSet::new();
    for m in &messages {
        let id = m["request_headers"]["x-request-id"].as_str().unwrap_or_else(|| panic!("{m}")).to_string();
        assert!(seen.insert(id.clone()), "{id} twice");
        let (status, path) = &statuses[&id];
        assert_eq!(m["status"].as_u64(), Some(u64::from(*status)), "{m}");
        assert_eq!(m["request"]["method"], "GET");
        assert_eq!(m["request"]["uri"], path.as_str());
        assert_eq!(m["request"]["version"], "HTTP/1.1");
        assert_eq!(m["request_headers"]["host"], "cache.example");
        assert_eq!(m["request_headers"]["user-agent"], "weir-test \"quoted\" (x|y)", "escapes undone");
        assert!(m["response_headers"]["content-type"].as_str().unwrap().starts_with("text/html"));
        assert_eq!(m["client_ip"], "127.0.0.1");
        assert_eq!(
            (m["frontend"].as_str(), m["backend"].as_str(), m["server"].as_str()),
            (Some("www"), Some("app"), Some("app1"))
        );
        for timer in ["tr_ms", "tw_ms", "tc_ms", "tresp_ms", "ta_ms"] {
            assert!(m[timer].is_i64(), "{timer} in {m}");
        }
        assert!(m["bytes_read"].as_u64().unwrap() > 0);
        let lag = m["time_ms"].as_i64().unwrap() - m["accept_ms"].as_i64().unwrap();
        assert!((0..5000).contains(&lag), "accept time before the log time: {m}");
        assert_eq!(m["program"], "haproxy");
    }
    let counters: BTreeSet<i64> = messages.iter().map(|m| m["request_counter"].as_i64().unwrap()).collect();
    assert_eq!(counters.len(), n, "HAProxy numbered every request");
    assert_eq!(c.metric("weir_haproxy_lines_lost_total", ""), [0]);

    // Garbage straight into the socket: each goes to the dead-letter topic with its reason.
    let client = UnixDatagram::unbound().unwrap();
    let too_long = format!("<134>1 - - haproxy 1 - - {}", "x".repeat(9000));
    let garbage: [&[u8]; 5] = [
        b"not syslog at all",
        b"<134>1 yesterday - haproxy 1 - - \"GET / HTTP/1.1\"",
        b"<134>1 2026-11-21T12:00:00Z - haproxy 1 - [weir@1 ci=\"127.0.0.1\" ST=\"200\"] -",
        b"\xff\xfe\xfd\x80",
        too_long.as_bytes(),
    ];
    for g in garbage {
        client.send_to(g, &s.socket).unwrap();
    }
    // Another HAProxy process whose request counter jumps: 4 lines lost.
    for rt in [1000, 1005] {
        let line = format!(
            "<134>1 2026-11-21T12:00:00Z edge2 haproxy 77 - [weir@1 ci=\"192.0.2.1\" ST=\"200\" rt=\"{rt}\"] \"GET /gap HTTP/1.1\""
        );
        client.send_to(line.as_bytes(), &s.socket).unwrap();
    }
    let dead = broker.consume("access-dead", garbage.len(), Duration::from_secs(20));
    let reasons: BTreeSet<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    let want: BTreeSet<&str> = ["bad_header", "bad_timestamp", "missing_field", "too_long"].into();
    assert_eq!(reasons, want, "{dead:?}");
    assert!(dead.iter().any(|d| d["raw"] == "\u{fffd}\u{fffd}\u{fffd}\u{fffd}"), "bytes, no structure: {dead:?}");
    assert!(dead.iter().any(|d| d["raw"] == "not syslog at all"));
    let total = (n + garbage.len() + 2) as u64;
    assert_eq!(c.wait_metric_sum("weir_haproxy_messages_delivered_total", total), total);
    assert_eq!(c.metric("weir_haproxy_lines_received_total", ""), [total]);
    let lost = c.wait_metric_sum("weir_haproxy_lines_lost_total", 4);
    assert_eq!(lost, 4, "the counter jumped from 1000 to 1005, and the numbers waited 1 s for their lines");
    assert_eq!(c.metric("weir_haproxy_processes", ""), [2]);
    assert_eq!(c.metric("weir_haproxy_parse_errors_total", "reason=\"too_long\""), [1]);
    assert_eq!(c.metric("weir_haproxy_messages_delivered_total", "topic=\"dead_letter\""), [garbage.len() as u64]);
    assert_eq!(c.metric("weir_haproxy_delivery_errors_total", "").iter().sum::<u64>(), 0);
    assert_eq!(c.metric("weir_haproxy_delivery_delay_seconds_count", ""), [n as u64 + 2]);
    c.assert_promtool_is_silent();
    c.stop();
    assert!(!s.socket.exists(), "the socket file goes with Weir");
}

/// Sends one request every `every` until stopped; returns the ids of
/// those HAProxy answered with 200.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(port: u16, prefix: &'static str, every: Duration) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut ok = Vec::new();
            let mut i = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("{prefix}-{i:05}");
                if get(port, "/", &id) == 200 {
                    ok.push(id);
                }
                i += 1;
                std::thread::sleep(every);
            }
            ok
        });
        Traffic { stop, thread }
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn ids(messages: &[serde_json::Value]) -> BTreeSet<String> {
    messages.iter().filter_map(|m| m["request_headers"]["x-request-id"].as_str().map(String::from)).collect()
}

/// Waits until the brokers have acknowledged every message produced.
fn wait_delivered(c: &Collector, wait: Duration) -> u64 {
    let deadline = Instant::now() + wait;
    loop {
        let produced: u64 = c.metric("weir_haproxy_messages_produced_total", "").iter().sum();
        let delivered: u64 = c.metric("weir_haproxy_messages_delivered_total", "").iter().sum();
        if produced == delivered || Instant::now() > deadline {
            return delivered;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_broker_stopped_for_30_s_under_steady_requests_loses_nothing() {
    let _turn = turn();
    let s = setup("haproxy-outage");
    let broker = Broker::start(&["access", "access-dead"]);
    let config = weir_config(&s.dir, &s.socket, &broker);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("[haproxy]\n", "[run]\nstall_timeout_s = 5\n[haproxy]\n")).unwrap();
    let c = Collector::start(&config);
    let _haproxy = Haproxy::start(&s.dir, &s.socket, s.port, s.backend_port);
    let traffic = Traffic::start(s.port, "outage", Duration::from_millis(50));
    std::thread::sleep(Duration::from_secs(3));
    let before_delivered = wait_delivered(&c, Duration::from_secs(10));
    let before = ids(&broker.consume("access", before_delivered as usize, Duration::from_secs(10)));
    assert!(before.len() as u64 >= before_delivered && !before.is_empty());
    // Stopped, not killed: tansu keeps its data in memory only, and a real
    // broker's log (producer ids included) survives a restart.
    broker.pause();
    std::thread::sleep(Duration::from_secs(15));
    let (status, live) = c.get_status("/health/live");
    assert_eq!(status, 503, "lines arrive, nothing is acknowledged: the watchdog would stop: {live}");
    assert!(live.contains("haproxy lines to kafka"), "{live}");
    std::thread::sleep(Duration::from_secs(15));
    broker.resume();
    std::thread::sleep(Duration::from_secs(3));
    let sent = traffic.stop();
    // HAProxy logs a request after answering it: wait for the last lines.
    c.wait_metric_sum("weir_haproxy_lines_received_total", sent.len() as u64);
    let delivered = wait_delivered(&c, Duration::from_secs(90));
    let produced: u64 = c.metric("weir_haproxy_messages_produced_total", "").iter().sum();
    let errors = c.metric("weir_haproxy_delivery_errors_total", "");
    assert_eq!(delivered, produced, "every message acknowledged once the broker is back (errors {errors:?})");
    let got = ids(&broker.consume("access", delivered as usize, Duration::from_secs(30)));
    assert!(got.is_superset(&before));
    let missing: Vec<_> = sent.iter().filter(|id| !got.contains(*id)).collect();
    assert!(missing.is_empty(), "{} of {} requests missing: {missing:?}", missing.len(), sent.len());
    assert!(sent.len() > 300, "steady requests through the outage: {}", sent.len());
    assert_eq!(c.metric("weir_haproxy_delivery_errors_total", "").iter().sum::<u64>(), 0);
    assert_eq!(c.metric("weir_haproxy_messages_dropped_total", ""), [0, 0]);
    assert_eq!(c.get_status("/health/live").0, 200, "alive again");
    c.stop();
}

#[test]
fn weir_or_haproxy_restarted_the_lines_keep_coming() {
    let _turn = turn();
    let s = setup("haproxy-restart");
    let broker = Broker::start(&["access", "access-dead"]);
    let config = weir_config(&s.dir, &s.socket, &broker);
    let c = Collector::start(&config);
    let _haproxy = Haproxy::start(&s.dir, &s.socket, s.port, s.backend_port);
    for i in 0..20 {
        assert_eq!(get(s.port, "/", &format!("first-{i}")), 200);
    }
    // HAProxy logs a request after answering it: wait for the last line.
    assert_eq!(c.wait_metric_sum("weir_haproxy_lines_received_total", 20), 20);
    wait_delivered(&c, Duration::from_secs(10));
    c.stop();
    // A socket file left behind (a crash) must not stop the next start.
    let _stale = UnixDatagram::bind(&s.socket).unwrap();
    drop(_stale);
    let c = Collector::start(&config);
    for i in 0..20 {
        assert_eq!(get(s.port, "/", &format!("second-{i}")), 200);
    }
    assert_eq!(c.wait_metric_sum("weir_haproxy_lines_received_total", 20), 20);
    // And HAProxy restarted under a running Weir.
    drop(_haproxy);
    let _haproxy = Haproxy::start(&s.dir, &s.socket, s.port, s.backend_port);
    for i in 0..20 {
        assert_eq!(get(s.port, "/", &format!("third-{i}")), 200);
    }
    let all = ids(&broker.consume("access", 60, Duration::from_secs(20)));
    for i in 0..20 {
        for round in ["first", "second", "third"] {
            assert!(all.contains(&format!("{round}-{i}")), "{round}-{i} missing: {all:?}");
        }
    }
    assert_eq!(c.metric("weir_haproxy_lines_received_total", ""), [40], "the new socket, both HAProxy processes");
    assert_eq!(c.metric("weir_haproxy_processes", ""), [2]);
    c.stop();
}

#[test]
fn a_full_producer_queue_pushes_back_then_drops_and_counts() {
    let _turn = turn();
    let s = setup("haproxy-queue");
    let broker = Broker::start(&["access", "access-dead"]);
    let config = weir_config(&s.dir, &s.socket, &broker);
    let text = std::fs::read_to_string(&config).unwrap();
    let tight = "linger_ms = 1\nqueue_messages_max = 10\nbackpressure_wait_ms = 50\n";
    std::fs::write(&config, text.replace("linger_ms = 1\n", tight)).unwrap();
    let c = Collector::start(&config);
    broker.pause();
    let client = UnixDatagram::unbound().unwrap();
    let line = "<134>1 2026-11-21T12:00:00Z - haproxy 1 - [weir@1 ci=\"192.0.2.1\" ST=\"200\"] \"GET / HTTP/1.1\"";
    for _ in 0..40 {
        client.send_to(line.as_bytes(), &s.socket).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut produced, mut dropped) = (0, 0);
    while produced + dropped < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        produced = c.metric("weir_haproxy_messages_produced_total", "").iter().sum();
        dropped = c.metric("weir_haproxy_messages_dropped_total", "reason=\"queue_full\"")[0];
    }
    assert_eq!(c.metric("weir_haproxy_lines_received_total", ""), [40]);
    assert_eq!(produced, 10, "the queue holds 10");
    assert_eq!(produced + dropped, 40, "every line produced or counted as dropped");
    assert_eq!(c.metric("weir_haproxy_producer_queue_messages", ""), [10]);
    broker.resume();
    assert_eq!(wait_delivered(&c, Duration::from_secs(30)), 10);
    c.stop();
}

#[test]
fn every_compression_codec_reaches_the_consumer() {
    let _turn = turn();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let s = setup(&format!("haproxy-{codec}"));
        let broker = Broker::start(&["access", "access-dead"]);
        let config = weir_config(&s.dir, &s.socket, &broker);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("linger_ms = 1\n", &format!("linger_ms = 1\ncompression = \"{codec}\"\n")),
        )
        .unwrap();
        let c = Collector::start(&config);
        let client = UnixDatagram::unbound().unwrap();
        for i in 0..5 {
            let line = format!(
                "<134>1 2026-11-21T12:00:00Z - haproxy 1 - [weir@1 ci=\"192.0.2.1\" ST=\"200\" rt=\"{i}\"] \"GET /{codec} HTTP/1.1\""
            );
            client.send_to(line.as_bytes(), &s.socket).unwrap();
        }
        let got = broker.consume("access", 5, Duration::from_secs(20));
        assert_eq!(got.len(), 5, "{codec}");
        assert!(got.iter().all(|m| m["request"]["uri"] == format!("/{codec}")), "{codec}: {got:?}");
        c.stop();
    }
}

#[test]
fn the_readme_production_config_keeps_bytes_decodes_uris_and_explains_bad_requests() {
    let _turn = turn();
    let s = setup("haproxy-production");
    let broker = Broker::start(&["access", "access-dead"]);
    let socket = s.socket.display().to_string();
    let weir = replaced(
        readme_block("haproxy-production.toml"),
        &[("/run/weir/haproxy-log.sock", &socket), ("request_counter_wait_s = 60", "request_counter_wait_s = 1")],
    );
    let body = format!(
        "listeners = []\n[http]\nlisten = \"127.0.0.1:0\"\n{weir}\n[haproxy.kafka]\nbrokers = \"{}\"\n\
         topic = \"access\"\ndead_letter_topic = \"access-dead\"\nlinger_ms = 1\n",
        broker.address()
    );
    let config = s.dir.join("weir.toml");
    std::fs::write(&config, body).unwrap();
    let c = Collector::start(&config);
    let haproxy = replaced(
        readme_block("haproxy-production.cfg"),
        &[
            ("/run/weir/haproxy-log.sock", &socket),
            ("# option accept-invalid-http-request", "option accept-invalid-http-request"),
            ("bind :80", &format!("bind 127.0.0.1:{}", s.port)),
            ("127.0.0.1:8080", &format!("127.0.0.1:{}", s.backend_port)),
        ],
    );
    let _haproxy = Haproxy::with_config(&s.dir, &haproxy, s.port);
    let get = |path: &[u8], headers: &[u8]| {
        let mut r = b"GET ".to_vec();
        r.extend_from_slice(path);
        r.extend_from_slice(b" HTTP/1.1\r\nHost: cache.example\r\n");
        r.extend_from_slice(headers);
        r.extend_from_slice(b"Connection: close\r\n\r\n");
        raw_request(s.port, &r)
    };
    // A Latin-1 User-Agent, and a Referer with a literal #22.
    assert_eq!(get(b"/latin", b"User-Agent: caf\xe9 latin\r\nReferer: http://x/#22y\r\n"), 404);
    // A two-byte character across the User-Agent capture's 128 bytes.
    let mut cut = b"User-Agent: ".to_vec();
    cut.extend_from_slice(&[b'a'; 127]);
    cut.extend_from_slice("é\r\n".as_bytes());
    assert_eq!(get(b"/cut", &cut), 404);
    // Quotes and non-ASCII bytes in the path and the query: HAProxy logs #XX.
    assert_eq!(get(b"/caf\xc3\xa9/\"x\"?q=\xe9&r=\"1\"", b""), 404);
    // A request HAProxy cannot parse (400), then a good one.
    assert_eq!(raw_request(s.port, b"\x01\x02 garbage\r\n\r\n"), 400);
    assert_eq!(get(b"/", b""), 200);

    let messages = broker.consume("access", 5, Duration::from_secs(30));
    assert_eq!(messages.len(), 5, "every line produced: {messages:?}");
    let by_path = |p: &str| {
        messages.iter().find(|m| m["path"] == p).unwrap_or_else(|| panic!("no {p:?} in {messages:?}")).clone()
    };
    let latin = by_path("/latin");
    assert_eq!(latin["user_agent"], "caf\u{fffd} latin");
    assert_eq!(latin["referer"], "http://x/#22y", "a single capture stays raw");
    assert_eq!(latin["http_host"], "cache.example");
    let cut = by_path("/cut");
    assert_eq!(cut["user_agent"], format!("{}\u{fffd}", "a".repeat(127)), "cut at 128 bytes");
    let uri = by_path("/caf\u{e9}/\"x\"");
    assert_eq!(uri["query"], "?q=\u{fffd}&r=\"1\"");
    assert_eq!(uri["request"]["uri"], "/caf\u{e9}/\"x\"?q=\u{fffd}&r=\"1\"");
    assert_eq!(uri["status"], 404);
    let bad = by_path("<BADREQ>");
    let good = by_path("/");
    assert_eq!(bad["status"], 400);
    let (bad_n, good_n) = (bad["request_counter"].as_i64().unwrap(), good["request_counter"].as_i64().unwrap());
    assert_eq!(good_n - bad_n, 2, "HAProxy 2.6 uses up a second number for a request it cannot parse");
    for m in &messages {
        assert_eq!(m["client_ip"], "127.0.0.1", "{m}");
        assert_eq!(m["frontend"], "cdn");
    }

    assert_eq!(c.wait_metric_sum("weir_haproxy_request_gaps_explained_total", 1), 1);
    assert_eq!(c.metric("weir_haproxy_lines_lost_total", ""), [0], "the number the bad request used up");
    assert_eq!(c.metric("weir_haproxy_lines_unnumbered_total", ""), [1]);
    assert_eq!(c.metric("weir_haproxy_parse_errors_total", "").iter().sum::<u64>(), 0);
    let repaired = |kind: &str| {
        c.metric("weir_haproxy_fields_repaired_total", &format!("reason=\"invalid_utf8_replaced\",kind=\"{kind}\""))
    };
    assert_eq!(repaired("string"), [3], "the two User-Agents and the query");
    assert_eq!(repaired("request"), [1]);
    assert_eq!(repaired("syslog_header"), [0]);
    assert_eq!(c.metric("weir_haproxy_request_numbers_missing", ""), [0]);
    c.assert_promtool_is_silent();
    c.stop();
}

/// `weir_config` with `[haproxy] store = true` and `store` (the `[store]`
/// section's lines after `kind`) as the store.
fn store_config(dir: &Path, socket: &Path, broker: &Broker, store: &str) -> PathBuf {
    let config = weir_config(dir, socket, broker);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "request_counter_wait_s = 1\n",
        "request_counter_wait_s = 1\nstore = true\nstore_flush_interval_ms = 200\n",
    );
    let text = text.replace(
        "[haproxy]\n",
        &format!(
            "[store]\nspool_dir = \"{}\"\nflush_interval_ms = 200\ninsert_interval_ms = 200\nretry_backoff_max_ms = 500\n{store}\n[haproxy]\n",
            dir.join("spool").display()
        ),
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// `count` requests, one in five to a missing page; their ids.
fn requests(port: u16, tag: &str, count: usize) -> BTreeMap<String, (u16, String)> {
    (0..count)
        .map(|i| {
            let path = if i % 5 == 4 { format!("/missing-{i}") } else { "/".to_string() };
            let id = format!("{tag}-{i:04}");
            (id.clone(), (get(port, &path, &id), path))
        })
        .collect()
}

/// The stored rows, by request id: (status, method, uri, frontend,
/// backend, server, user agent).
fn stored_rows(config: &Path, http: Option<&str>) -> BTreeMap<String, Vec<String>> {
    let sql = "SELECT request_headers_x_request_id, status, request_method, request_uri, frontend, backend, server, \
               request_headers_user_agent FROM weir.http_requests ORDER BY request_headers_x_request_id";
    let mut rows = BTreeMap::new();
    for line in common::query(config, http, sql).lines() {
        let mut cells = line.split('\t').map(String::from);
        let id = cells.next().unwrap();
        assert!(rows.insert(id.clone(), cells.collect()).is_none(), "{id} stored twice");
    }
    rows
}

/// `http_requests` rows the store accepted, once `want` or after 30 s.
fn wait_http_rows(c: &Collector, want: u64) -> u64 {
    let rows = || c.metric("weir_store_http_rows_inserted_total", "table=\"http_requests\"")[0];
    common::wait_until("the requests stored", Duration::from_secs(30), || rows() >= want);
    rows()
}

fn assert_stored(rows: &BTreeMap<String, Vec<String>>, sent: &BTreeMap<String, (u16, String)>) {
    assert_eq!(rows.len(), sent.len(), "one row per request");
    for (id, (status, path)) in sent {
        let row = rows.get(id).unwrap_or_else(|| panic!("{id} not stored"));
        let want = [&status.to_string(), "GET", path, "www", "app", "app1", "weir-test \"quoted\" (x|y)"];
        assert_eq!(row, &want, "{id}");
    }
}

/// With `haproxy.store`, each request is one row of `http_requests` in the
/// embedded store, typed, beside its Kafka message; the rows' status
/// counts are the messages'.
#[test]
fn with_the_store_every_request_is_also_one_typed_row() {
    let _turn = turn();
    let s = setup("haproxy-store");
    let broker = Broker::start(&["access", "access-dead"]);
    let store = format!("kind = \"embedded\"\n[store.embedded]\npath = \"{}\"", s.dir.join("chdb").display());
    let config = store_config(&s.dir, &s.socket, &broker, &store);
    let c = Collector::start(&config);
    // Requests under /down go to a backend whose server refuses: 503s.
    let with_down = haproxy_config(&s.socket, s.port, s.backend_port).replace(
        "    default_backend app\n",
        &format!(
            "    use_backend down if {{ path_beg /down }}\n    default_backend app\nbackend down\n    server down1 127.0.0.1:{}\n",
            free_tcp_port()
        ),
    );
    let _haproxy = Haproxy::with_config(&s.dir, &with_down, s.port);
    let sent = requests(s.port, "stored", 100);
    let messages = broker.consume("access", sent.len(), Duration::from_secs(30));
    assert_eq!(messages.len(), sent.len());
    assert_eq!(wait_http_rows(&c, 100), 100);
    assert_stored(&stored_rows(&config, Some(&c.metrics)), &sent);
    // Types the server checks: an address, a time, an integer.
    let typed = common::query(
        &config,
        Some(&c.metrics),
        "SELECT toTypeName(client_ip), toTypeName(accept_ms), toTypeName(status), toTypeName(backend), \
         countIf(IPv6NumToString(client_ip) = '::ffff:127.0.0.1'), countIf(time_ms >= accept_ms), \
         countIf(bytes_read > 0) FROM weir.http_requests",
    );
    assert_eq!(typed.trim(), "IPv6\tDateTime64(3)\tInt64\tLowCardinality(String)\t100\t100\t100");
    let by_status = common::query(
        &config,
        Some(&c.metrics),
        "SELECT status, count() FROM weir.http_requests GROUP BY status ORDER BY status",
    );
    let mut from_kafka: BTreeMap<u64, usize> = BTreeMap::new();
    for m in &messages {
        *from_kafka.entry(m["status"].as_u64().unwrap()).or_default() += 1;
    }
    let want: String = from_kafka.iter().map(|(s, n)| format!("{s}\t{n}\n")).collect();
    assert_eq!(by_status, want);

    // The rollups: the same requests per backend and status class, bytes
    // and latencies, in each table.
    let raw = common::query(
        &config,
        Some(&c.metrics),
        "SELECT backend, intDiv(status, 100), count(), sum(bytes_read), countIf(ta_ms >= 0) FROM weir.http_requests \
         GROUP BY backend, intDiv(status, 100) ORDER BY backend, intDiv(status, 100)",
    );
    let latency =
        weir_core::httplog::latency_columns().iter().map(|c| format!("sum({c})")).collect::<Vec<_>>().join(" + ");
    for table in ["http_requests_1m", "http_requests_5m", "http_requests_1h"] {
        common::wait_until("the rollup stored", Duration::from_secs(30), || {
            c.metric("weir_store_http_rows_inserted_total", &format!("table=\"{table}\""))[0] > 0
        });
        let summed = common::query(
            &config,
            Some(&c.metrics),
            &format!(
                "SELECT backend, status_class, sum(requests), sum(bytes), {latency} FROM weir.{table} \
                 GROUP BY backend, status_class ORDER BY backend, status_class"
            ),
        );
        assert_eq!(summed, raw, "{table}");
    }
    let p99 = common::query(
        &config,
        Some(&c.metrics),
        &format!("SELECT {} FROM weir.http_requests_1m", weir_core::httplog::HttpRollup::quantile_sql(0.99)),
    );
    assert!(p99.trim().parse::<u64>().is_ok_and(|ms| ms <= 65_536), "a p99 latency bound: {p99}");
    let per_backend = common::query(&config, Some(&c.metrics), &readme_block("http-p99.sql"));
    assert!(per_backend.starts_with("app\t") && per_backend.lines().count() == 1, "{per_backend}");
    assert_eq!(c.metric("weir_haproxy_store_rows_total", ""), [100]);
    assert_eq!(c.metric("weir_haproxy_store_rows_dropped_total", ""), [0]);

    // The console graphs them: 5xx by backend, and the rest.
    for i in 0..10 {
        assert_eq!(get(s.port, &format!("/down/{i}"), &format!("down-{i}")), 503);
    }
    assert_eq!(wait_http_rows(&c, 110), 110);
    for table in ["http_requests_1m", "http_requests_5m", "http_requests_1h"] {
        common::wait_until("the 503s summed", Duration::from_secs(30), || {
            common::query(&config, Some(&c.metrics), &format!("SELECT sum(requests) FROM weir.{table}")).trim() == "110"
        });
    }
    the_console_graphs_http_requests(&c, &config);
    c.assert_promtool_is_silent();
    c.stop();
}

/// The console API over the 100 requests of `with_the_store_every_...`
/// (80 answered 200, 20 404, from backend `app`) and 10 answered 503 by
/// backend `down`: the HTTP source's columns, units, tables and widgets.
fn the_console_graphs_http_requests(c: &Collector, config: &Path) {
    let api = |method: &str, path: &str, body: &serde_json::Value| -> (u16, serde_json::Value) {
        let body = body.to_string();
        let request = format!(
            "{method} /api/v0/console/{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, text) = common::exchange(&c.metrics, request.as_bytes());
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
    };
    let none = serde_json::Value::Null;
    let (status, configuration) = api("GET", "configuration", &none);
    assert_eq!(status, 200);
    assert_eq!(configuration["sources"], serde_json::json!(["flows", "http"]));
    let dimensions = configuration["httpDimensions"].as_array().unwrap();
    for d in ["backend", "status_class", "request_uri", "client_ip"] {
        assert!(dimensions.contains(&serde_json::json!(d)), "{d} in {dimensions:?}");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let time = weir_console::query::format_time;
    let graph = |units: &str, dimensions: &[&str], filter: &str| {
        let body = serde_json::json!({
            "source": "http", "start": time(now - 3600), "end": time(now + 120), "points": 60,
            "dimensions": dimensions, "filter": filter, "units": units, "limit": 10,
        });
        let (status, answer) = api("POST", "graph/line", &body);
        assert_eq!(status, 200, "{units} {dimensions:?} {filter}: {answer}");
        let rows: Vec<String> = answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect::<Vec<_>>().join(","))
            .collect();
        let totals: Vec<f64> = answer["total"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
        (rows, totals, answer)
    };
    // 5xx by backend: only `down`, its 10 requests.
    let (rows, totals, _) = graph("rps", &["backend"], "status_class = 5");
    assert_eq!((rows, totals), (vec!["down".to_string()], vec![10.0]));
    // Every request by backend and status class (a rollup answers).
    let (rows, totals, _) = graph("rps", &["backend", "status_class"], "");
    let by_row: BTreeMap<String, f64> = rows.into_iter().zip(totals).collect();
    assert_eq!(by_row, BTreeMap::from([("app,2".into(), 80.0), ("app,4".into(), 20.0), ("down,5".into(), 10.0)]));
    // A URI needs the raw table; the same counts.
    let (rows, totals, _) = graph("rps", &["status"], "request_uri LIKE '/missing-%' OR request_uri LIKE '/down/%'");
    let by_row: BTreeMap<String, f64> = rows.into_iter().zip(totals).collect();
    assert_eq!(by_row, BTreeMap::from([("404".into(), 20.0), ("503".into(), 10.0)]));
    // Bytes: the raw table's sum of bytes_read, by backend.
    let bytes = common::query(
        config,
        Some(&c.metrics),
        "SELECT sum(greatest(bytes_read, 0)) FROM weir.http_requests WHERE backend = 'app'",
    );
    let (rows, totals, _) = graph("Bps", &["backend"], "backend = 'app'");
    assert_eq!((rows, totals), (vec!["app".to_string()], vec![bytes.trim().parse::<f64>().unwrap()]));
    // A latency quantile: ms per bucket, within the histogram's bounds.
    for filter in ["", "request_uri != ''"] {
        let (rows, _, answer) = graph("latency-p99", &["backend"], filter);
        assert_eq!(rows.len(), 2, "{filter}: {answer}");
        let points = answer["points"].as_array().unwrap().iter().flat_map(|p| p.as_array().unwrap().clone());
        assert!(points.map(|p| p.as_f64().unwrap()).all(|ms| (0.0..=65_536.0).contains(&ms)), "{answer}");
    }
    // Refused: a flow's unit, bidirectional, a latency sankey, a flow column.
    let request = |extra: serde_json::Value| {
        let mut body = serde_json::json!({"source": "http", "start": time(now - 3600), "end": time(now), "points": 60, "units": "rps", "dimensions": ["backend"]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    for (path, extra, why) in [
        ("graph/line", serde_json::json!({"units": "l3bps"}), "not a unit of the http source"),
        ("graph/line", serde_json::json!({"bidirectional": true}), "only flows"),
        ("graph/sankey", serde_json::json!({"units": "latency-p50"}), "rates"),
        ("graph/line", serde_json::json!({"filter": "SrcAS = 1"}), "expecting"),
    ] {
        let (status, answer) = api("POST", path, &request(extra));
        assert_eq!(status, 400, "{answer}");
        assert!(answer["message"].as_str().unwrap().contains(why), "{answer}");
    }
    let (status, sankey) =
        api("POST", "graph/sankey", &request(serde_json::json!({"dimensions": ["backend", "status_class"]})));
    assert_eq!(status, 200, "{sankey}");
    assert_eq!(sankey["links"].as_array().unwrap().len(), 3, "{sankey}");
    // The filter language on HTTP columns, with completion.
    let (_, valid) = api(
        "POST",
        "filter/validate",
        &serde_json::json!({"source": "http", "filter": "status_class = 5 AND ta_ms > -1"}),
    );
    assert_eq!(valid["parsed"], "status_class = 5 AND ta_ms > -1");
    let (_, flows) = api("POST", "filter/validate", &serde_json::json!({"filter": "status_class = 5"}));
    assert!(flows["errors"].is_array(), "not a flow column: {flows}");
    let (_, columns) =
        api("POST", "filter/complete", &serde_json::json!({"source": "http", "what": "column", "prefix": "status"}));
    let labels: Vec<&str> =
        columns["completions"].as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["status", "status_class"]);
    let (_, values) = api(
        "POST",
        "filter/complete",
        &serde_json::json!({"source": "http", "what": "value", "column": "backend", "prefix": ""}),
    );
    let labels: Vec<&str> =
        values["completions"].as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert!(labels.contains(&"app") && labels.contains(&"down"), "{values}");
    // The home widgets: hosts and status codes, by requests.
    let (status, hosts) = api("GET", "widget/top/http-host", &none);
    assert_eq!(status, 200, "{hosts}");
    assert_eq!(hosts["top"][0]["name"], "cache.example");
    assert_eq!(hosts["top"][0]["percent"].as_f64().unwrap().round(), 100.0);
    let (_, codes) = api("GET", "widget/top/http-status", &none);
    let names: Vec<&str> = codes["top"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["200", "404", "503"], "{codes}");
}

/// The store down (ClickHouse 18.16 stopped): Kafka delivery goes on, the
/// rows wait in memory and are spooled at the stop; the next start, with
/// the store back, inserts them.
#[test]
fn the_store_down_kafka_goes_on_and_the_rows_are_stored_afterwards() {
    let _turn = turn();
    let s = setup("haproxy-store-down");
    let broker = Broker::start(&["access", "access-dead"]);
    let mut server = common::Server::start(&s.dir.join("clickhouse"));
    let store = format!("kind = \"remote\"\n[store.remote]\nurl = \"{}\"", server.url());
    let config = store_config(&s.dir, &s.socket, &broker, &store);
    let c = Collector::start(&config);
    let _haproxy = Haproxy::start(&s.dir, &s.socket, s.port, s.backend_port);
    let mut sent = requests(s.port, "before", 20);
    assert_eq!(wait_http_rows(&c, 20), 20);

    server.stop();
    sent.extend(requests(s.port, "during", 50));
    let delivered = broker.consume("access", sent.len(), Duration::from_secs(30));
    assert_eq!(delivered.len(), sent.len(), "Kafka does not wait for the store");
    c.wait_metric_sum("weir_haproxy_store_rows_total", 70);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.metric("weir_store_http_rows_inserted_total", "table=\"http_requests\""), [20]);
    c.stop();

    server.restart();
    let c = Collector::start(&config);
    assert_eq!(wait_http_rows(&c, 50), 50, "the spooled rows");
    // FixedString addresses and UInt64 milliseconds on this server.
    assert_stored(&stored_rows(&config, None), &sent);
    assert_eq!(c.metric("weir_store_http_rows_dropped_total", "").iter().sum::<u64>(), 0);
    c.stop();
}
