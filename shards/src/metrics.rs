//! Counters.
//!
//! Each shard owns one `ShardMetrics`: it counts in plain integers on its
//! own thread and publishes them with relaxed atomic stores after every
//! receive batch. The HTTP thread (on the control core) reads them with
//! relaxed loads when scraped (`exposition`): no locks, and a counter is
//! written by one thread only. Names follow `weir_<room>_<thing>_<unit>`;
//! error counters carry a bounded `reason` label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use weir_core::{DecodeCounters, Reason};

/// Why a received datagram was dropped before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiveDrop {
    /// Longer than `shards.datagram_bytes_max` (cut by the kernel).
    TooLong,
}

impl ReceiveDrop {
    pub const ALL: [ReceiveDrop; 1] = [ReceiveDrop::TooLong];
    pub fn label(self) -> &'static str {
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
    pub fn label(self) -> &'static str {
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
pub const COMMIT_DELAY_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
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

    /// Rows recorded, the sum of their delays in seconds, and the rows per
    /// bucket of `upper` (seconds; not cumulative; the rest fall in +Inf).
    pub fn buckets(&self, upper: &[f64]) -> (u64, f64, Vec<(f64, u64)>) {
        let Ok(h) = self.histogram.lock() else { return (0, 0.0, Vec::new()) };
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = upper
            .iter()
            .map(|le| {
                let n = h.count_between(0, (le * 1000.0) as u64);
                let bucket = (*le, n - below);
                below = n;
                bucket
            })
            .collect();
        buckets.push((f64::INFINITY, h.len() - below));
        (h.len(), self.sum_ms.load(Relaxed) as f64 / 1e3, buckets)
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
    /// Present when the HAProxy input is enabled.
    pub haproxy: Option<Arc<crate::haproxy::HaproxyMetrics>>,
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
            haproxy: None,
            health: Default::default(),
        }
    }
}
