//! The inlet's counters (written by the shards and their producers'
//! delivery callbacks) and what `/metrics` shows of them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::encoding::DescriptorEncoder;

use crate::ops::exposition::{counter_by, counters_of, gauges_of, Exported};

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
