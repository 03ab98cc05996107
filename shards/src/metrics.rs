//! Counters and the `/metrics` endpoint.
//!
//! Each shard owns one `ShardMetrics`: it counts in plain integers on its
//! own thread and publishes them with relaxed atomic stores after every
//! receive batch. The HTTP thread (on the control core) reads them with
//! relaxed loads: no locks, and a counter is written by one thread only.
//! Names follow `weir_<room>_<thing>_<unit>`; error counters carry a bounded
//! `reason` label.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use hdrhistogram::Histogram;
use weir_core::{DecodeCounters, Reason};

use crate::store::writer::QueryRequest;

/// Why a received datagram was dropped before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveDrop {
    /// Longer than `shards.datagram_bytes_max` (cut by the kernel).
    TooLong,
}

impl ReceiveDrop {
    pub const ALL: [ReceiveDrop; 1] = [ReceiveDrop::TooLong];
    fn label(self) -> &'static str {
        match self {
            ReceiveDrop::TooLong => "too_long",
        }
    }
}

/// One socket of one shard.
#[derive(Default)]
pub struct SocketMetrics {
    /// Cumulative kernel drops of the socket (SO_RXQ_OVFL).
    pub kernel_drops: AtomicU64,
    /// SO_RCVBUF as granted.
    pub buffer_bytes: AtomicU64,
}

/// One shard's counters; written by the shard only.
#[derive(Default)]
pub struct ShardMetrics {
    pub datagrams: AtomicU64,
    pub bytes: AtomicU64,
    pub receive_drops: [AtomicU64; ReceiveDrop::ALL.len()],
    pub receive_errors: AtomicU64,
    pub timestamp_fallbacks: AtomicU64,
    pub flows: AtomicU64,
    pub templates: AtomicU64,
    pub pending_queued: AtomicU64,
    pub pending_decoded: AtomicU64,
    pub pending_dropped: AtomicU64,
    pub decode_errors: [AtomicU64; Reason::ALL.len()],
    pub updates_sent: AtomicU64,
    pub updates_dropped: AtomicU64,
    pub updates_applied: AtomicU64,
    pub sink_flows: AtomicU64,
    /// Housekeeping ticks: stops moving when the shard is wedged (`health`).
    pub heartbeats: AtomicU64,
    /// One per listener, in config order.
    pub sockets: Vec<SocketMetrics>,
}

impl ShardMetrics {
    pub fn new(listeners: usize) -> Self {
        ShardMetrics { sockets: (0..listeners).map(|_| SocketMetrics::default()).collect(), ..Default::default() }
    }

    /// Publishes the decoder's counters (owned by the shard's decoder).
    pub fn publish_decoder(&self, c: &DecodeCounters) {
        self.flows.store(c.flows, Relaxed);
        self.templates.store(c.templates, Relaxed);
        self.pending_queued.store(c.pending_queued, Relaxed);
        self.pending_decoded.store(c.pending_decoded, Relaxed);
        self.pending_dropped.store(c.pending_dropped, Relaxed);
        for (a, v) in self.decode_errors.iter().zip(c.errors) {
            a.store(v, Relaxed);
        }
    }
}

/// Counters of the JSON sink's writer thread.
#[derive(Default)]
pub struct SinkMetrics {
    pub bytes_written: AtomicU64,
    pub write_errors: AtomicU64,
    pub reopens: AtomicU64,
}

/// Why rows never reached the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDrop {
    /// The store was down past the memory bound and the spool was full.
    FullSpool,
    /// Writing a chunk to the spool failed (disk full, permissions).
    SpoolWriteFailed,
    /// A spooled chunk could not be read back.
    UnreadableChunk,
}

impl StoreDrop {
    pub const ALL: [StoreDrop; 3] = [StoreDrop::FullSpool, StoreDrop::SpoolWriteFailed, StoreDrop::UnreadableChunk];
    fn label(self) -> &'static str {
        match self {
            StoreDrop::FullSpool => "spool_full",
            StoreDrop::SpoolWriteFailed => "spool_error",
            StoreDrop::UnreadableChunk => "spool_unreadable",
        }
    }
}

/// Counters of the store writer thread; written by it only.
#[derive(Default)]
pub struct StoreMetrics {
    pub batches_received: AtomicU64,
    pub rows_received: AtomicU64,
    pub inserts: AtomicU64,
    pub rows_inserted: AtomicU64,
    pub bytes_inserted: AtomicU64,
    pub insert_micros: AtomicU64,
    pub insert_errors: AtomicU64,
    pub chunks_spooled: AtomicU64,
    pub rows_spooled: AtomicU64,
    pub chunks_replayed: AtomicU64,
    pub rows_replayed: AtomicU64,
    pub dropped_rows: [AtomicU64; StoreDrop::ALL.len()],
    pub memory_bytes: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_chunks: AtomicU64,
    pub up: AtomicU64,
    pub commit_delay: CommitDelay,
    /// Turns of the writer's loop (`health`; not exported).
    pub heartbeats: AtomicU64,
    /// 1 once connected and migrated, 0 after a failed connection.
    pub connected: AtomicU64,
}

/// Upper bounds (seconds) of `weir_store_commit_delay_seconds`' buckets.
const COMMIT_DELAY_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Delays are recorded in ms and clamped to one day.
const COMMIT_DELAY_MS_MAX: u64 = 86_400_000;

/// How long rows take from the kernel's receive timestamp to the store
/// accepting their insert, per row, in ms (3 significant digits). The store
/// writer records once per insert; `/metrics` and `/latency` read it.
pub struct CommitDelay {
    histogram: Mutex<Histogram<u64>>,
    sum_ms: AtomicU64,
}

impl Default for CommitDelay {
    fn default() -> Self {
        let h = Histogram::new_with_bounds(1, COMMIT_DELAY_MS_MAX, 3).expect("static bounds");
        CommitDelay { histogram: Mutex::new(h), sum_ms: AtomicU64::new(0) }
    }
}

impl CommitDelay {
    /// `rows` rows took `delay_ms`.
    pub fn record(&self, delay_ms: u64, rows: u64) {
        let v = delay_ms.clamp(1, COMMIT_DELAY_MS_MAX);
        if let Ok(mut h) = self.histogram.lock() {
            let _ = h.record_n(v, rows);
        }
        self.sum_ms.fetch_add(delay_ms.saturating_mul(rows), Relaxed);
    }

    fn render(&self, out: &mut String) {
        let name = "weir_store_commit_delay_seconds";
        header(out, name, "Per row: kernel receive timestamp to the store accepting its insert.", "histogram");
        let Ok(h) = self.histogram.lock() else { return };
        for le in COMMIT_DELAY_BUCKETS {
            let n = h.count_between(0, (le * 1000.0) as u64);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
        let _ = writeln!(out, "{name}_sum {}", self.sum_ms.load(Relaxed) as f64 / 1e3);
        let _ = writeln!(out, "{name}_count {}", h.len());
    }

    /// `/latency`: rows recorded and the quantiles, in ms.
    pub fn quantiles(&self) -> String {
        let Ok(h) = self.histogram.lock() else { return String::new() };
        let mut out = String::from("# kernel receive timestamp to row committed to the store, ms, since start\n");
        let _ = writeln!(out, "rows {}", h.len());
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            let _ = writeln!(out, "{label} {}", if h.is_empty() { 0 } else { h.value_at_quantile(q) });
        }
        let _ = writeln!(out, "max {}", h.max());
        out
    }
}

impl StoreMetrics {
    fn render(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 10] = [
            ("weir_store_batches_received_total", "Batches handed over by the shards.", &self.batches_received),
            ("weir_store_rows_received_total", "Rows handed over by the shards.", &self.rows_received),
            ("weir_store_inserts_total", "Inserts the store accepted.", &self.inserts),
            ("weir_store_rows_inserted_total", "Rows the store accepted.", &self.rows_inserted),
            ("weir_store_bytes_inserted_total", "RowBinary bytes the store accepted.", &self.bytes_inserted),
            (
                "weir_store_insert_errors_total",
                "Inserts that failed (each is retried with backoff).",
                &self.insert_errors,
            ),
            ("weir_store_spooled_chunks_total", "Chunks written to the on-disk spool.", &self.chunks_spooled),
            ("weir_store_spooled_rows_total", "Rows written to the on-disk spool.", &self.rows_spooled),
            ("weir_store_replayed_chunks_total", "Spooled chunks inserted.", &self.chunks_replayed),
            ("weir_store_replayed_rows_total", "Spooled rows inserted.", &self.rows_replayed),
        ];
        plain_series(out, "counter", &counters);
        let name = "weir_store_insert_seconds_total";
        header(out, name, "Time spent in accepted inserts.", "counter");
        let _ = writeln!(out, "{name} {}", self.insert_micros.load(Relaxed) as f64 / 1e6);
        let name = "weir_store_dropped_rows_total";
        header(out, name, "Rows that never reached the store, by reason.", "counter");
        for r in StoreDrop::ALL {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", r.label(), self.dropped_rows[r as usize].load(Relaxed));
        }
        let gauges: [(&str, &str, &AtomicU64); 4] = [
            ("weir_store_memory_bytes", "Bytes of chunks waiting in memory for the store.", &self.memory_bytes),
            ("weir_store_spool_bytes", "Bytes in the on-disk spool.", &self.spool_bytes),
            ("weir_store_spool_chunks", "Chunks in the on-disk spool.", &self.spool_chunks),
            ("weir_store_up", "1 when the last insert worked, 0 while inserts fail.", &self.up),
        ];
        plain_series(out, "gauge", &gauges);
        self.commit_delay.render(out);
    }
}

/// Everything `/metrics` shows.
pub struct Metrics {
    pub listeners: Vec<String>,
    pub cores: Vec<usize>,
    pub shards: Vec<Arc<ShardMetrics>>,
    /// Per listener: 1 when the eBPF balancer is attached, 0 on the kernel hash.
    pub ebpf_active: Vec<AtomicU64>,
    pub sink: SinkMetrics,
    /// Present when the sink is the store.
    pub store: Option<Arc<StoreMetrics>>,
    /// Liveness and readiness, kept by the control loop.
    pub health: crate::health::Health,
}

impl Metrics {
    pub fn new(listeners: Vec<String>, cores: Vec<usize>) -> Self {
        let shards = cores.iter().map(|_| Arc::new(ShardMetrics::new(listeners.len()))).collect();
        let ebpf_active = listeners.iter().map(|_| AtomicU64::new(0)).collect();
        Metrics {
            listeners,
            cores,
            shards,
            ebpf_active,
            sink: SinkMetrics::default(),
            store: None,
            health: Default::default(),
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        type Get = fn(&ShardMetrics) -> &AtomicU64;
        let per_shard: [(&str, &str, Get); 13] = [
            ("weir_receive_datagrams_total", "Datagrams received.", |m| &m.datagrams),
            ("weir_receive_bytes_total", "UDP payload bytes received.", |m| &m.bytes),
            ("weir_receive_errors_total", "Receive calls that failed.", |m| &m.receive_errors),
            (
                "weir_receive_timestamp_fallbacks_total",
                "Datagrams without a kernel timestamp (the clock was read instead).",
                |m| &m.timestamp_fallbacks,
            ),
            ("weir_decode_flows_total", "Flows decoded.", |m| &m.flows),
            ("weir_decode_templates_total", "Template records accepted.", |m| &m.templates),
            ("weir_decode_pending_queued_total", "Data sets parked to wait for their template.", |m| &m.pending_queued),
            ("weir_decode_pending_decoded_total", "Parked data sets decoded once their template came.", |m| {
                &m.pending_decoded
            }),
            (
                "weir_decode_pending_drops_total",
                "Parked data sets given up on (also counted as template_missing).",
                |m| &m.pending_dropped,
            ),
            (
                "weir_shard_state_updates_sent_total",
                "Template and sampling-rate updates sent to the other shards.",
                |m| &m.updates_sent,
            ),
            ("weir_shard_state_updates_dropped_total", "Updates not delivered: a shard's inbox was full.", |m| {
                &m.updates_dropped
            }),
            ("weir_shard_state_updates_applied_total", "Updates from other shards applied.", |m| &m.updates_applied),
            ("weir_sink_flows_total", "Flows handed to the sink.", |m| &m.sink_flows),
        ];
        for (name, help, get) in per_shard {
            header(&mut out, name, help, "counter");
            for (shard, m) in self.shards.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{shard}\",core=\"{}\"}} {}",
                    self.cores[shard],
                    get(m).load(Relaxed)
                );
            }
        }
        self.render_reasons(&mut out);
        self.render_sockets(&mut out);
        header(
            &mut out,
            "weir_receive_balancer_ebpf",
            "1: the eBPF round-robin balancer is attached; 0: kernel hash.",
            "gauge",
        );
        for (listener, a) in self.listeners.iter().zip(&self.ebpf_active) {
            let _ = writeln!(out, "weir_receive_balancer_ebpf{{listener=\"{listener}\"}} {}", a.load(Relaxed));
        }
        let sink: [(&str, &str, &AtomicU64); 3] = [
            ("weir_sink_bytes_written_total", "Bytes written by the JSON sink.", &self.sink.bytes_written),
            (
                "weir_sink_write_errors_total",
                "Failed writes of the JSON sink (the buffer is lost).",
                &self.sink.write_errors,
            ),
            ("weir_sink_reopens_total", "Times the JSON sink's file was reopened (SIGHUP).", &self.sink.reopens),
        ];
        plain_series(&mut out, "counter", &sink);
        if let Some(store) = &self.store {
            store.render(&mut out);
        }
        out
    }

    fn render_reasons(&self, out: &mut String) {
        let reasons = Reason::ALL.map(|r| (r.label(), r as usize));
        self.per_reason(
            out,
            "weir_decode_errors_total",
            "Datagrams, sets or samples not decoded, by reason.",
            &reasons,
            |m, i| &m.decode_errors[i],
        );
        let reasons = ReceiveDrop::ALL.map(|r| (r.label(), r as usize));
        self.per_reason(
            out,
            "weir_receive_drops_total",
            "Datagrams dropped before decoding, by reason.",
            &reasons,
            |m, i| &m.receive_drops[i],
        );
    }

    /// One counter per shard and reason (`reasons`: label and index).
    fn per_reason(
        &self,
        out: &mut String,
        name: &str,
        help: &str,
        reasons: &[(&str, usize)],
        get: fn(&ShardMetrics, usize) -> &AtomicU64,
    ) {
        header(out, name, help, "counter");
        for (shard, m) in self.shards.iter().enumerate() {
            for (label, i) in reasons {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\",reason=\"{label}\"}} {}", get(m, *i).load(Relaxed));
            }
        }
    }

    fn render_sockets(&self, out: &mut String) {
        let drops = "Datagrams the kernel dropped on a full socket buffer (SO_RXQ_OVFL).";
        self.per_socket(out, "weir_receive_kernel_drops_total", drops, "counter", |s| &s.kernel_drops);
        let buffer = "Socket receive buffer granted by the kernel (SO_RCVBUF as read back).";
        self.per_socket(out, "weir_receive_socket_buffer_bytes", buffer, "gauge", |s| &s.buffer_bytes);
    }

    /// One sample per shard and listener.
    fn per_socket(&self, out: &mut String, name: &str, help: &str, kind: &str, get: fn(&SocketMetrics) -> &AtomicU64) {
        header(out, name, help, kind);
        for (shard, m) in self.shards.iter().enumerate() {
            for (listener, s) in self.listeners.iter().zip(&m.sockets) {
                let _ = writeln!(out, "{name}{{shard=\"{shard}\",listener=\"{listener}\"}} {}", get(s).load(Relaxed));
            }
        }
    }
}

/// One unlabelled sample per series: `(name, help, value)`.
fn plain_series(out: &mut String, kind: &str, series: &[(&str, &str, &AtomicU64)]) {
    for (name, help, a) in series {
        header(out, name, help, kind);
        let _ = writeln!(out, "{name} {}", a.load(Relaxed));
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Binds the metrics address (an error here stops start-up) and serves it
/// on a thread, one request at a time: a scrape every few seconds needs no
/// more. With the store as sink, `POST /query?format=F` (the SQL as the
/// body) runs a query on the store writer's connection, for `weir query`:
/// from loopback peers only, since it runs any SQL.
pub fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    queries: Option<Sender<QueryRequest>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("weir-http".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &metrics, queries.as_ref());
        }
    })?;
    Ok(local)
}

fn answer(stream: TcpStream, metrics: &Metrics, queries: Option<&Sender<QueryRequest>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Read the headers to their end so the client sees a clean close.
    let mut line = String::new();
    let mut content_length = 0usize;
    while reader.read_line(&mut line)? > 2 {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query_string) = target.split_once('?').unwrap_or((target, ""));
    let (status, kind, body): (&str, &str, Vec<u8>) = match (method, path) {
        (_, "/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render().into_bytes()),
        ("POST", "/query") => {
            let loopback = stream.peer_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
            let mut sql = vec![0u8; content_length.min(1 << 20)];
            std::io::Read::read_exact(&mut reader, &mut sql)?;
            match (queries, loopback) {
                (None, _) => ("404 Not Found", "text/plain", b"no store: sink.kind is not store\n".to_vec()),
                (_, false) => ("403 Forbidden", "text/plain", b"/query answers loopback peers only\n".to_vec()),
                (Some(q), true) => run_query(q, &String::from_utf8_lossy(&sql), query_string),
            }
        }
        (_, "/health/live") => health_answer(metrics.health.live()),
        (_, "/health/ready") => {
            health_answer(metrics.health.ready(metrics.store.as_deref().map(crate::health::StoreSample::of)))
        }
        (_, "/version") => ("200 OK", "application/json", version_json().into_bytes()),
        (_, "/latency") => match &metrics.store {
            Some(store) => ("200 OK", "text/plain", store.commit_delay.quantiles().into_bytes()),
            None => ("404 Not Found", "text/plain", b"no store: sink.kind is not store\n".to_vec()),
        },
        _ => (
            "404 Not Found",
            "text/plain",
            b"/metrics, /health/live, /health/ready, /version, /latency, or POST /query\n".to_vec(),
        ),
    };
    let mut w = &stream;
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(&body)
}

fn health_answer((ok, body): (bool, String)) -> (&'static str, &'static str, Vec<u8>) {
    (if ok { "200 OK" } else { "503 Service Unavailable" }, "application/json", body.into_bytes())
}

/// `/version`: the release and the build.
fn version_json() -> String {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "debug_build": cfg!(debug_assertions),
    })
    .to_string()
        + "\n"
}

fn run_query(queries: &Sender<QueryRequest>, sql: &str, query_string: &str) -> (&'static str, &'static str, Vec<u8>) {
    let format = query_string
        .split('&')
        .find_map(|kv| kv.strip_prefix("format="))
        .filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric()))
        .unwrap_or("TabSeparated");
    let (reply, answer) = bounded(1);
    let request = QueryRequest { sql: sql.to_string(), format: format.to_string(), reply };
    if queries.send(request).is_err() {
        return ("503 Service Unavailable", "text/plain", b"the store writer has stopped\n".to_vec());
    }
    match answer.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(bytes)) => ("200 OK", "application/octet-stream", bytes),
        Ok(Err(e)) => ("400 Bad Request", "text/plain", format!("{e}\n").into_bytes()),
        Err(_) => ("504 Gateway Timeout", "text/plain", b"the store did not answer within 60 s\n".to_vec()),
    }
}
