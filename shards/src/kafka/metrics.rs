//! The inlet's and the outlet's counters (written by the shards and their
//! Kafka clients' callbacks) and what `/metrics` shows of them.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::DescriptorEncoder;
use weir_core::rawflow::RecordError;

use crate::ops::exposition::{counter_by, counters_of, gauge_by, gauges_of, Exported};

/// Why a record never reached the producer (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InletDrop {
    /// The spill reached `kafka.spill_bytes_max`.
    SpillFull,
    /// No spill (`kafka.spill_dir = ""`) and the queue stayed full.
    QueueFull,
    /// The spill could not be written or read (disk error).
    SpillError,
    /// librdkafka refused the record (too large for `message.max.bytes`,
    /// a fatal producer error).
    Refused,
    /// Still in the producer when the drain timeout ended a stop, with no
    /// spill to keep it.
    Stopped,
    /// Cut short in the spill by a crash.
    Torn,
}

impl InletDrop {
    pub const ALL: [InletDrop; 6] = [
        InletDrop::SpillFull,
        InletDrop::QueueFull,
        InletDrop::SpillError,
        InletDrop::Refused,
        InletDrop::Stopped,
        InletDrop::Torn,
    ];

    pub fn label(self) -> &'static str {
        match self {
            InletDrop::SpillFull => "spill_full",
            InletDrop::QueueFull => "queue_full",
            InletDrop::SpillError => "spill_error",
            InletDrop::Refused => "refused",
            InletDrop::Stopped => "stopped",
            InletDrop::Torn => "torn",
        }
    }
}

/// Counters of `weir inlet`, all shards together.
#[derive(Default)]
pub struct InletMetrics {
    /// Datagrams wrapped into records.
    pub records: AtomicU64,
    /// Records handed to a producer (new or replayed).
    pub produced: AtomicU64,
    pub delivered: AtomicU64,
    pub delivery_errors: AtomicU64,
    pub spilled: AtomicU64,
    pub replayed: AtomicU64,
    pub dropped: [AtomicU64; InletDrop::ALL.len()],
    /// Times a shard waited on a full producer queue.
    pub backpressure_waits: AtomicU64,
    /// Per shard: bytes in its spill, records in its producer.
    pub spill_bytes: Vec<AtomicU64>,
    pub queue: Vec<AtomicU64>,
}

impl InletMetrics {
    pub fn new(shards: usize) -> InletMetrics {
        InletMetrics {
            spill_bytes: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            queue: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            ..InletMetrics::default()
        }
    }

    pub fn lose(&self, reason: InletDrop, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Relaxed);
    }

    /// The shards' values of a per-shard gauge, summed.
    fn total(a: &[AtomicU64]) -> u64 {
        a.iter().map(|x| x.load(Relaxed)).sum()
    }
}

impl Exported for InletMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let m = self;
        let counters: [(&str, &str, &AtomicU64); 7] = [
            ("weir_inlet_records", "Datagrams wrapped into Kafka records.", &m.records),
            (
                "weir_inlet_records_produced",
                "Records handed to a producer (new or replayed from the spill).",
                &m.produced,
            ),
            ("weir_inlet_records_delivered", "Records the brokers acknowledged.", &m.delivered),
            (
                "weir_inlet_delivery_errors",
                "Records the brokers refused for good (lost; retries never time out).",
                &m.delivery_errors,
            ),
            ("weir_inlet_records_spilled", "Records written to a shard's spill (kafka.spill_dir).", &m.spilled),
            ("weir_inlet_records_replayed", "Records read back from a spill and handed to the producer.", &m.replayed),
            (
                "weir_inlet_backpressure_waits",
                "Times a shard waited on its full producer queue (up to kafka.backpressure_wait_ms).",
                &m.backpressure_waits,
            ),
        ];
        counters_of(e, &counters)?;
        let drops = InletDrop::ALL.map(|r| (r.label(), m.dropped[r as usize].load(Relaxed)));
        counter_by(
            e,
            "weir_inlet_records_dropped",
            "Records lost before a producer took them, by reason.",
            "reason",
            &drops,
        )?;
        let spill = AtomicU64::new(InletMetrics::total(&m.spill_bytes));
        let queue = AtomicU64::new(InletMetrics::total(&m.queue));
        let gauges: [(&str, &str, &AtomicU64); 2] = [
            ("weir_inlet_spill_bytes", "Bytes of records waiting in the shards' spills.", &spill),
            ("weir_inlet_producer_queue_messages", "Records in the shards' producers, not yet acknowledged.", &queue),
        ];
        gauges_of(e, &gauges)
    }
}

/// Partitions whose consumer lag `/metrics` shows (0 to this, exclusive).
pub const LAG_PARTITIONS_MAX: usize = 1024;

/// Counters of `weir outlet`, all shards together (gauges per shard).
pub struct OutletMetrics {
    /// Per shard: records consumed (every one: taken or skipped).
    pub records: Vec<AtomicU64>,
    /// Records that are not a datagram, skipped, by `RecordError`.
    pub skipped: [AtomicU64; RecordError::ALL.len()],
    /// Errors the consumers' polls returned (brokers away, ...).
    pub consume_errors: AtomicU64,
    /// Offsets stored for commit (store_offsets calls that took).
    pub offsets_stored: AtomicU64,
    pub offset_store_errors: AtomicU64,
    pub commits: AtomicU64,
    pub commit_errors: AtomicU64,
    pub partitions_assigned: AtomicU64,
    pub partitions_revoked: AtomicU64,
    /// Revocations whose wait for the store ran out (`revoke_wait_ms`).
    pub revoke_waits_expired: AtomicU64,
    /// Times a shard paused its partitions (`batches_in_flight_max`).
    pub pauses: AtomicU64,
    /// Hand-overs to the store put off, every batch buffer being in flight
    /// (the shard keeps polling and takes no records meanwhile).
    pub handovers_put_off: AtomicU64,
    /// Per shard: partitions assigned, batches in the store unacknowledged.
    pub assigned: Vec<AtomicU64>,
    pub in_flight: Vec<AtomicU64>,
    /// Per shard, per partition: the consumer lag librdkafka last reported
    /// (records between the partition's end and the committed offset), -1
    /// when the shard does not consume it.
    pub lag: Vec<Vec<AtomicI64>>,
}

impl OutletMetrics {
    pub fn new(shards: usize) -> OutletMetrics {
        let per_shard = || (0..shards).map(|_| AtomicU64::new(0)).collect();
        OutletMetrics {
            records: per_shard(),
            skipped: Default::default(),
            consume_errors: AtomicU64::new(0),
            offsets_stored: AtomicU64::new(0),
            offset_store_errors: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_errors: AtomicU64::new(0),
            partitions_assigned: AtomicU64::new(0),
            partitions_revoked: AtomicU64::new(0),
            revoke_waits_expired: AtomicU64::new(0),
            pauses: AtomicU64::new(0),
            handovers_put_off: AtomicU64::new(0),
            assigned: per_shard(),
            in_flight: per_shard(),
            lag: (0..shards).map(|_| (0..LAG_PARTITIONS_MAX).map(|_| AtomicI64::new(-1)).collect()).collect(),
        }
    }

    /// Partition → lag, for the partitions some shard consumes.
    pub fn lags(&self) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        for p in 0..LAG_PARTITIONS_MAX {
            let known: Vec<i64> = self.lag.iter().map(|s| s[p].load(Relaxed)).filter(|&l| l >= 0).collect();
            if let Some(max) = known.iter().max() {
                out.push((p, *max as u64));
            }
        }
        out
    }
}

impl Exported for OutletMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let m = self;
        let records = AtomicU64::new(m.records.iter().map(|a| a.load(Relaxed)).sum());
        let counters: [(&str, &str, &AtomicU64); 11] = [
            ("weir_outlet_records", "Kafka records consumed (taken or skipped).", &records),
            ("weir_outlet_consume_errors", "Errors the consumers' polls returned.", &m.consume_errors),
            (
                "weir_outlet_offsets_stored",
                "Times a shard stored offsets for commit, the store having taken the rows and sums before them.",
                &m.offsets_stored,
            ),
            ("weir_outlet_offset_store_errors", "Offsets librdkafka refused to store.", &m.offset_store_errors),
            ("weir_outlet_commits", "Offset commits the group coordinator acknowledged.", &m.commits),
            ("weir_outlet_commit_errors", "Offset commits that failed (retried with the next).", &m.commit_errors),
            ("weir_outlet_partitions_assigned", "Partitions assigned to the shards.", &m.partitions_assigned),
            ("weir_outlet_partitions_revoked", "Partitions revoked from the shards.", &m.partitions_revoked),
            (
                "weir_outlet_revoke_waits_expired",
                "Revocations that gave partitions up before the store took their rows (kafka.outlet.revoke_wait_ms).",
                &m.revoke_waits_expired,
            ),
            (
                "weir_outlet_pauses",
                "Times a shard paused its partitions, the store being behind (kafka.outlet.batches_in_flight_max).",
                &m.pauses,
            ),
            (
                "weir_outlet_handovers_put_off",
                "Hand-overs to the store put off, every batch buffer being in flight (the shard keeps polling, takes no records).",
                &m.handovers_put_off,
            ),
        ];
        counters_of(e, &counters)?;
        let skipped = RecordError::ALL.map(|r| (r.label(), m.skipped[r as usize].load(Relaxed)));
        counter_by(
            e,
            "weir_outlet_records_skipped",
            "Records that are not a datagram, skipped, by reason.",
            "reason",
            &skipped,
        )?;
        let assigned = AtomicU64::new(m.assigned.iter().map(|a| a.load(Relaxed)).sum());
        let in_flight = AtomicU64::new(m.in_flight.iter().map(|a| a.load(Relaxed)).sum());
        let gauges: [(&str, &str, &AtomicU64); 2] = [
            ("weir_outlet_partitions", "Partitions the shards consume now.", &assigned),
            ("weir_outlet_batches_in_flight", "Batches handed to the store and not yet acknowledged.", &in_flight),
        ];
        gauges_of(e, &gauges)?;
        let lags = m.lags();
        let names: Vec<String> = lags.iter().map(|(p, _)| p.to_string()).collect();
        let series: Vec<(&str, u64)> = names.iter().map(String::as_str).zip(lags.iter().map(|(_, l)| *l)).collect();
        gauge_by(
            e,
            "weir_outlet_consumer_lag_records",
            "Records between a partition's end and the group's committed offset, per partition this outlet consumes.",
            "partition",
            &series,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ops::exposition::{render, Exposition};

    #[test]
    fn the_inlet_families_have_every_reason_and_sum_the_shards() {
        let m = InletMetrics::new(2);
        m.spill_bytes[0].store(10, Relaxed);
        m.spill_bytes[1].store(5, Relaxed);
        m.lose(InletDrop::Torn, 2);
        let mut exposition = Exposition::default();
        exposition.register(Arc::new(m));
        let text = render(&exposition.registry());
        for r in InletDrop::ALL {
            let n = if r == InletDrop::Torn { 2 } else { 0 };
            assert!(
                text.contains(&format!("weir_inlet_records_dropped_total{{reason=\"{}\"}} {n}\n", r.label())),
                "{text}"
            );
        }
        assert!(text.contains("weir_inlet_spill_bytes 15\n"), "{text}");
        assert!(text.contains("weir_inlet_records_delivered_total 0\n"), "{text}");
    }
}
