//! The store writer's counters (written by the writer thread only), what
//! `/metrics` shows of them, and the store's part in `/health`.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::encoding::DescriptorEncoder;
use serde_json::{Map, Value};

use crate::ops::exposition::{counter_by, counter_f64, counters_of, gauges_of, histogram, Exported};
use crate::ops::health::{Component, Probe, ReadyCheck};
use crate::ops::metrics::DelayHistogram;

/// Why rows never reached the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreDrop {
    /// The store was down past the memory bound and the spool was full.
    FullSpool,
    /// Writing a chunk to the spool failed (disk full, permissions).
    SpoolWriteFailed,
    /// A spooled chunk could not be read back.
    UnreadableChunk,
    /// The engine refused the chunk's data or statement for good (a parse
    /// or type error, a column it does not have): kept under
    /// `store.spool_dir/rejected/`, not retried.
    Rejected,
    /// A shard's compressed raw block did not decompress, when its segment
    /// append failed and it had to go to a chunk (not expected: the shard
    /// made the frame).
    BadFrame,
}

impl StoreDrop {
    pub const ALL: [StoreDrop; 5] = [
        StoreDrop::FullSpool,
        StoreDrop::SpoolWriteFailed,
        StoreDrop::UnreadableChunk,
        StoreDrop::Rejected,
        StoreDrop::BadFrame,
    ];
    pub fn label(self) -> &'static str {
        match self {
            StoreDrop::FullSpool => "spool_full",
            StoreDrop::SpoolWriteFailed => "spool_error",
            StoreDrop::UnreadableChunk => "spool_unreadable",
            StoreDrop::Rejected => "rejected",
            StoreDrop::BadFrame => "bad_frame",
        }
    }
}

/// Upper bounds (seconds) of `weir_store_commit_delay_seconds`' buckets.
pub const COMMIT_DELAY_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// Counters of the store writer thread; written by it only, but for the
/// batch buffer waits, which the shards write.
#[derive(Default)]
pub struct StoreMetrics {
    /// Hand-overs that found every batch buffer taken and waited for one
    /// (`weir run`'s shards), and the time they waited.
    pub buffer_waits: AtomicU64,
    pub buffer_wait_micros: AtomicU64,
    pub batches_received: AtomicU64,
    pub rows_received: AtomicU64,
    /// Inserts accepted, per table: raw, then `consolidate::TABLES`, then
    /// `schema::RECORD_TABLES` (`super::TABLES_COUNT` in all).
    pub inserts: [AtomicU64; super::TABLES_COUNT],
    pub rows_inserted: AtomicU64,
    pub bytes_inserted: AtomicU64,
    pub insert_micros: AtomicU64,
    pub insert_errors: AtomicU64,
    pub chunks_spooled: AtomicU64,
    pub rows_spooled: AtomicU64,
    pub chunks_replayed: AtomicU64,
    pub rows_replayed: AtomicU64,
    pub dropped_rows: [AtomicU64; StoreDrop::ALL.len()],
    /// Summed rows per consolidated table (`consolidate::TABLES` order):
    /// inserted, and lost with their chunk (any `StoreDrop` reason).
    pub consolidated_rows_inserted: [AtomicU64; 3],
    pub consolidated_rows_dropped: [AtomicU64; 3],
    /// Metadata records per records table (`schema::RECORD_TABLES` order):
    /// handed to the store for the first time, inserted, and lost with
    /// their chunk.
    pub records_new: [AtomicU64; 3],
    pub records_inserted: [AtomicU64; 3],
    pub records_dropped: [AtomicU64; 3],
    /// HAProxy's requests: rows inserted per table (`http_requests`, then
    /// its rollups), raw rows lost with their chunk by reason, and rollup
    /// rows lost per rollup table.
    pub http_rows_inserted: [AtomicU64; 4],
    pub http_rows_dropped: [AtomicU64; StoreDrop::ALL.len()],
    pub http_rollup_rows_dropped: [AtomicU64; 3],
    /// Sums a shard handed over before `store.consolidation_interval_ms`
    /// because its consolidation table was full (`store.consolidation_keys_max`).
    pub consolidation_early_flushes: AtomicU64,
    /// `store.raw = "segments"`: bytes appended to segment files, and the
    /// files deleted for their age (`store.segments_hours`).
    pub segment_bytes_written: AtomicU64,
    pub segment_files_expired: AtomicU64,
    pub memory_bytes: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_chunks: AtomicU64,
    pub up: AtomicU64,
    /// Per row: the kernel's receive timestamp to the store accepting the
    /// insert (`/metrics`, `/latency`).
    pub commit_delay: DelayHistogram,
    /// Turns of the writer's loop (`probes`; not exported).
    pub heartbeats: AtomicU64,
    /// 1 once connected and migrated, 0 after a failed connection.
    pub connected: AtomicU64,
    /// A ClickHouse server: the node in use (0: `store.remote.url`, then
    /// `store.remote.failover`), and the moves to another because the one
    /// in use could not be reached.
    pub remote_node: AtomicU64,
    pub remote_failovers: AtomicU64,
    /// A cluster: the records inserts' copies to the other nodes
    /// (`remote::CopyCounts`).
    pub remote_copies_sent: AtomicU64,
    pub remote_copy_errors: AtomicU64,
    pub remote_copies_dropped: AtomicU64,
    pub remote_copies_waiting: AtomicU64,
}

impl StoreMetrics {
    /// The writer's loop must turn (at least every
    /// `store.retry_backoff_max_ms`, or once per insert).
    pub fn probe(self: &Arc<Self>) -> Probe {
        let s = self.clone();
        Probe::heartbeat("store writer", move || s.heartbeats.load(Relaxed))
    }

    /// `/health/ready`'s store component: connected and migrated, and the
    /// last insert worked, as it is at the request.
    pub fn readiness(self: &Arc<Self>) -> ReadyCheck {
        let s = self.clone();
        Box::new(move || {
            let (connected, up) = (s.connected.load(Relaxed) == 1, s.up.load(Relaxed) == 1);
            Component {
                name: "store".into(),
                ok: connected && up,
                detail: match (connected, up) {
                    (false, _) => "not connected or not migrated yet".into(),
                    (true, false) => "connected; the last insert failed".into(),
                    (true, true) => "connected, migrated, inserts work".into(),
                },
            }
        })
    }
}

impl Exported for StoreMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let counters: [(&str, &str, &AtomicU64); 17] = [
            (
                "weir_store_batch_buffer_waits",
                "Batches a shard held while it waited for a free batch buffer (the store writer behind: store.batches_max).",
                &self.buffer_waits,
            ),
            ("weir_store_batches_received", "Batches handed over by the shards.", &self.batches_received),
            ("weir_store_rows_received", "Rows handed over by the shards.", &self.rows_received),
            ("weir_store_rows_inserted", "Raw flow rows the store accepted.", &self.rows_inserted),
            ("weir_store_bytes_inserted", "Bytes of data (Native blocks) the store accepted.", &self.bytes_inserted),
            ("weir_store_insert_errors", "Inserts that failed (each is retried with backoff).", &self.insert_errors),
            ("weir_store_spooled_chunks", "Chunks written to the on-disk spool.", &self.chunks_spooled),
            ("weir_store_spooled_rows", "Rows written to the on-disk spool.", &self.rows_spooled),
            ("weir_store_replayed_chunks", "Spooled chunks inserted.", &self.chunks_replayed),
            ("weir_store_replayed_rows", "Spooled raw flow rows inserted.", &self.rows_replayed),
            (
                "weir_store_consolidation_early_flushes",
                "Sums handed over before store.consolidation_interval_ms: the shard's consolidation table was full (store.consolidation_keys_max).",
                &self.consolidation_early_flushes,
            ),
            (
                "weir_store_segment_bytes_written",
                "Bytes of raw flows appended to segment files (store.raw = segments).",
                &self.segment_bytes_written,
            ),
            (
                "weir_store_segment_files_expired",
                "Segment files deleted because they were older than store.segments_hours.",
                &self.segment_files_expired,
            ),
            (
                "weir_store_remote_failovers",
                "Moves to another ClickHouse node (store.remote.failover) because the one in use could not be reached.",
                &self.remote_failovers,
            ),
            (
                "weir_store_remote_record_copies",
                "Records inserts copied to another node of the cluster (each node keeps its own records tables).",
                &self.remote_copies_sent,
            ),
            (
                "weir_store_remote_record_copy_errors",
                "Records copies a node did not take (each is tried again).",
                &self.remote_copy_errors,
            ),
            (
                "weir_store_remote_record_copies_dropped",
                "Records copies dropped because their node's queue was full (the node lacks those names).",
                &self.remote_copies_dropped,
            ),
        ];
        counters_of(e, &counters)?;
        let per_table = |first: usize, a: &[AtomicU64]| -> Vec<(&str, u64)> {
            a.iter().enumerate().map(|(i, n)| (super::table_name(first + i), n.load(Relaxed))).collect()
        };
        let inserts = per_table(0, &self.inserts);
        counter_by(e, "weir_store_inserts", "Inserts the store accepted, per table.", "table", &inserts)?;
        let waited = self.buffer_wait_micros.load(Relaxed) as f64 / 1e6;
        let help = "Time shards spent waiting for a free batch buffer, taking no datagrams.";
        counter_f64(e, "weir_store_batch_buffer_wait_seconds", help, waited)?;
        let seconds = self.insert_micros.load(Relaxed) as f64 / 1e6;
        counter_f64(e, "weir_store_insert_seconds", "Time spent in accepted inserts.", seconds)?;
        let dropped = StoreDrop::ALL.map(|r| (r.label(), self.dropped_rows[r as usize].load(Relaxed)));
        let help = "Raw flow rows that never reached the store, by reason.";
        counter_by(e, "weir_store_dropped_rows", help, "reason", &dropped)?;
        let help = "Summed rows (bucket and dimensions) the store accepted, per consolidated table.";
        counter_by(
            e,
            "weir_store_consolidated_rows_inserted",
            help,
            "table",
            &per_table(1, &self.consolidated_rows_inserted),
        )?;
        let help = "Summed rows lost with their chunk (spool full or unreadable), per consolidated table.";
        counter_by(
            e,
            "weir_store_consolidated_rows_dropped",
            help,
            "table",
            &per_table(1, &self.consolidated_rows_dropped),
        )?;
        let first = 1 + weir_core::consolidate::TABLES.len();
        let records = [
            (
                "weir_store_records_new",
                "Metadata records handed to the store for the first time, per records table.",
                &self.records_new,
            ),
            (
                "weir_store_records_inserted",
                "Metadata records the store accepted, per records table.",
                &self.records_inserted,
            ),
            (
                "weir_store_records_dropped",
                "Metadata records lost with their chunk (spool full or unreadable), per records table.",
                &self.records_dropped,
            ),
        ];
        for (name, help, values) in records {
            counter_by(e, name, help, "table", &per_table(first, values))?;
        }
        let help = "HAProxy request rows the store accepted, per table (http_requests and its rollups).";
        counter_by(
            e,
            "weir_store_http_rows_inserted",
            help,
            "table",
            &per_table(super::HTTP_TABLE, &self.http_rows_inserted),
        )?;
        let help = "HAProxy rollup rows lost with their chunk (spool full or unreadable), per table.";
        let rollups = per_table(super::HTTP_TABLE + 1, &self.http_rollup_rows_dropped);
        counter_by(e, "weir_store_http_rollup_rows_dropped", help, "table", &rollups)?;
        // (No raw frames carry HAProxy's rows.)
        let http_reasons = StoreDrop::ALL.into_iter().filter(|&r| r != StoreDrop::BadFrame);
        let dropped: Vec<_> =
            http_reasons.map(|r| (r.label(), self.http_rows_dropped[r as usize].load(Relaxed))).collect();
        let help = "HAProxy request rows that never reached the store, by reason.";
        counter_by(e, "weir_store_http_rows_dropped", help, "reason", &dropped)?;
        let gauges: [(&str, &str, &AtomicU64); 6] = [
            ("weir_store_memory_bytes", "Bytes of chunks waiting in memory for the store.", &self.memory_bytes),
            ("weir_store_spool_bytes", "Bytes in the on-disk spool.", &self.spool_bytes),
            ("weir_store_spool_chunks", "Chunks in the on-disk spool.", &self.spool_chunks),
            ("weir_store_up", "1 when the last insert worked, 0 while inserts fail.", &self.up),
            (
                "weir_store_remote_node",
                "The ClickHouse node in use: 0 store.remote.url, then store.remote.failover in order.",
                &self.remote_node,
            ),
            (
                "weir_store_remote_record_copies_waiting",
                "Records copies waiting for their node (a cluster's node that could not take them).",
                &self.remote_copies_waiting,
            ),
        ];
        gauges_of(e, &gauges)?;
        let help = "Per row: kernel receive timestamp to the store accepting its insert.";
        histogram(e, "weir_store_commit_delay_seconds", help, &self.commit_delay, &COMMIT_DELAY_BUCKETS)
    }

    fn memory(&self, weir: &mut Map<String, Value>) {
        let store = serde_json::json!({
            "waiting_in_memory_bytes": self.memory_bytes.load(Relaxed),
            "spool_bytes_on_disk": self.spool_bytes.load(Relaxed),
        });
        weir.insert("store".into(), store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exposition::{render, Exposition};

    #[test]
    fn the_store_family_carries_the_commit_delay_histogram() {
        let store = StoreMetrics::default();
        store.commit_delay.record(700, 3);
        store.commit_delay.record(3_000, 1);
        let mut exposition = Exposition::default();
        exposition.register(Arc::new(store));
        let text = render(&exposition.registry());
        assert!(text.contains("weir_store_commit_delay_seconds_bucket{le=\"0.5\"} 0\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_bucket{le=\"1.0\"} 3\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_count 4\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_sum 5.1\n"), "{text}");
        for r in StoreDrop::ALL {
            assert!(text.contains(&format!("weir_store_dropped_rows_total{{reason=\"{}\"}} 0", r.label())));
        }
        assert!(!text.contains("weir_store_http_rows_dropped_total{reason=\"bad_frame\"}"), "{text}");
    }

    #[test]
    fn the_store_is_ready_once_connected_migrated_and_inserting() {
        let store = Arc::new(StoreMetrics::default());
        let check = store.readiness();
        store.up.store(1, Relaxed);
        let c = check();
        assert!(!c.ok && c.detail.contains("not connected"), "{c:?}");
        store.connected.store(1, Relaxed);
        assert!(check().ok);
        store.up.store(0, Relaxed);
        assert_eq!(check().detail, "connected; the last insert failed");
    }
}
