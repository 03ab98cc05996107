//! The HAProxy input's counters (written by the log shard and the
//! producer's delivery callback), what `/metrics` shows of them, and the
//! input's liveness probes.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use weir_core::accesslog::{InvalidUtf8, LineReason, Repairs};

use crate::ops::exposition::{counter_by, counters_of, gauges_of, histogram, Exported};
use crate::ops::health::Probe;
use crate::ops::metrics::DelayHistogram;

/// Which topic a message went to (the `topic` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    Main,
    DeadLetter,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Main, Topic::DeadLetter];
    pub fn label(self) -> &'static str {
        match self {
            Topic::Main => "main",
            Topic::DeadLetter => "dead_letter",
        }
    }
}

/// Why a message never went to the producer (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProduceDrop {
    /// The local queue stayed full past `kafka.backpressure_wait_ms` (or
    /// Weir was stopping).
    QueueFull,
    /// librdkafka refused the message (too large for `message.max.bytes`,
    /// an unknown partition, a fatal producer error).
    Refused,
}

impl ProduceDrop {
    pub const ALL: [ProduceDrop; 2] = [ProduceDrop::QueueFull, ProduceDrop::Refused];
    pub fn label(self) -> &'static str {
        match self {
            ProduceDrop::QueueFull => "queue_full",
            ProduceDrop::Refused => "refused",
        }
    }
}

/// Counters of the HAProxy input; written by the log shard and the
/// producer's delivery callback.
#[derive(Default)]
pub struct HaproxyMetrics {
    pub lines_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub receive_errors: AtomicU64,
    pub lines_parsed: AtomicU64,
    pub parse_errors: [AtomicU64; LineReason::ALL.len()],
    pub produced: [AtomicU64; 2],
    pub delivered: [AtomicU64; 2],
    pub delivery_errors: [AtomicU64; 2],
    /// Messages the producer did not take, by `ProduceDrop`.
    pub dropped: [AtomicU64; ProduceDrop::ALL.len()],
    /// Fields whose invalid UTF-8 was repaired: by `InvalidUtf8` (the
    /// reason), then by `Repairs` site (the kind).
    pub repaired: [[AtomicU64; Repairs::SITES]; 2],
    /// Numbers missing from HAProxy's request counter that settled with no
    /// line to explain them.
    pub lines_lost: AtomicU64,
    /// Lines that stand for a counter number they do not carry.
    pub lines_unnumbered: AtomicU64,
    /// Missing numbers those lines explained.
    pub counter_explained: AtomicU64,
    /// Lines whose number had settled, or was seen, already.
    pub lines_late: AtomicU64,
    /// Numbers missing now, waiting for their line.
    pub counter_missing: AtomicU64,
    /// Processes (host, pid) seen, bounded.
    pub processes: AtomicU64,
    pub socket_queue: AtomicU64,
    pub socket_queue_max: AtomicU64,
    pub socket_buffer_bytes: AtomicU64,
    /// Messages in librdkafka's queue, not yet acknowledged.
    pub producer_queue: AtomicU64,
    /// `haproxy.store`: rows handed to the store writer, and requests left
    /// out of the store (the writer behind for two batches).
    pub store_rows: AtomicU64,
    pub store_rows_dropped: AtomicU64,
    /// Log timestamp to Kafka acknowledgement, per message.
    pub delivery_delay: DelayHistogram,
    /// Turns of the log shard's loop (`probes`).
    pub heartbeats: AtomicU64,
}

/// Buckets (seconds) of `weir_haproxy_delivery_delay_seconds`.
const DELIVERY_DELAY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

impl HaproxyMetrics {
    pub fn count_repairs(&self, mode: InvalidUtf8, repairs: &Repairs) {
        if repairs.any() {
            for (site, &n) in repairs.counts().iter().enumerate() {
                self.repaired[mode as usize][site].fetch_add(u64::from(n), Relaxed);
            }
        }
    }

    /// The log shard's loop must turn, and lines that arrive must be
    /// answered by the brokers (acknowledged, or failed for good).
    pub fn probes(self: &Arc<Self>) -> Vec<Probe> {
        let (beats, lines) = (self.clone(), self.clone());
        vec![
            Probe::heartbeat("haproxy log shard", move || beats.heartbeats.load(Relaxed)),
            Probe::progress(
                "haproxy lines to kafka",
                "delivering",
                "lines arrive but no message was acknowledged for",
                move || {
                    let h = &lines;
                    let answered = h.delivered.iter().chain(&h.delivery_errors).map(|a| a.load(Relaxed)).sum();
                    (h.lines_received.load(Relaxed), answered)
                },
            ),
        ]
    }
}

impl Exported for HaproxyMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let h = self;
        let counters: [(&str, &str, &AtomicU64); 11] = [
            ("weir_haproxy_lines_received", "Datagrams (log lines) read from the socket.", &h.lines_received),
            ("weir_haproxy_bytes_received", "Bytes of the lines read.", &h.bytes_received),
            ("weir_haproxy_receive_errors", "Receive calls on the socket that failed.", &h.receive_errors),
            ("weir_haproxy_lines_parsed", "Lines parsed into a JSON message.", &h.lines_parsed),
            (
                "weir_haproxy_lines_lost",
                "Numbers of HAProxy's request counter whose line never came (after haproxy.request_counter_wait_s).",
                &h.lines_lost,
            ),
            (
                "weir_haproxy_lines_unnumbered",
                "Lines that stand for a request counter number they do not carry (counter -, or <BADREQ>).",
                &h.lines_unnumbered,
            ),
            (
                "weir_haproxy_lines_late",
                "Lines whose request counter number had settled (lost) or been seen already.",
                &h.lines_late,
            ),
            (
                "weir_haproxy_request_gaps_explained",
                "Numbers missing from HAProxy's request counter that unnumbered lines explain (not lost).",
                &h.counter_explained,
            ),
            ("weir_haproxy_shard_loops", "Turns of the log shard's loop.", &h.heartbeats),
            (
                "weir_haproxy_store_rows",
                "Requests handed to the store writer for http_requests (haproxy.store).",
                &h.store_rows,
            ),
            (
                "weir_haproxy_store_rows_dropped",
                "Requests left out of http_requests, the store writer behind for two batches (still produced to Kafka).",
                &h.store_rows_dropped,
            ),
        ];
        counters_of(e, &counters)?;
        let help = "Fields whose bytes were not UTF-8, repaired (the line still produced), by reason and field kind.";
        let mut metric = e.encode_descriptor("weir_haproxy_fields_repaired", help, None, MetricType::Counter)?;
        for mode in [InvalidUtf8::Replace, InvalidUtf8::Escape] {
            for (site, n) in h.repaired[mode as usize].iter().enumerate() {
                metric
                    .encode_family(&[("reason", mode.label()), ("kind", Repairs::label(site))])?
                    .encode_counter::<NoLabelSet, _, u64>(&n.load(Relaxed), None)?;
            }
        }
        let drops = ProduceDrop::ALL.map(|r| (r.label(), h.dropped[r as usize].load(Relaxed)));
        let help =
            "Messages dropped before the producer took them, by reason (queue_full: past kafka.backpressure_wait_ms).";
        counter_by(e, "weir_haproxy_messages_dropped", help, "reason", &drops)?;
        let reasons = LineReason::ALL.map(|r| (r.label(), h.parse_errors[r as usize].load(Relaxed)));
        let help = "Lines not parsed (sent to the dead-letter topic), by reason.";
        counter_by(e, "weir_haproxy_parse_errors", help, "reason", &reasons)?;
        let per_topic = |a: &[AtomicU64; 2]| Topic::ALL.map(|t| (t.label(), a[t as usize].load(Relaxed)));
        let help = "Messages handed to the Kafka producer, by topic (main or dead_letter).";
        counter_by(e, "weir_haproxy_messages_produced", help, "topic", &per_topic(&h.produced))?;
        let help = "Messages the brokers acknowledged, by topic.";
        counter_by(e, "weir_haproxy_messages_delivered", help, "topic", &per_topic(&h.delivered))?;
        let help = "Messages that failed delivery (after retries for kafka.delivery_timeout_ms), by topic.";
        counter_by(e, "weir_haproxy_delivery_errors", help, "topic", &per_topic(&h.delivery_errors))?;
        let gauges: [(&str, &str, &AtomicU64); 6] = [
            ("weir_haproxy_socket_queue_datagrams", "Lines waiting in the socket's queue.", &h.socket_queue),
            (
                "weir_haproxy_socket_queue_datagrams_max",
                "Lines the socket queues at most (net.unix.max_dgram_qlen).",
                &h.socket_queue_max,
            ),
            ("weir_haproxy_socket_buffer_bytes", "Receive buffer granted to the socket.", &h.socket_buffer_bytes),
            (
                "weir_haproxy_producer_queue_messages",
                "Messages in the producer, not yet acknowledged.",
                &h.producer_queue,
            ),
            (
                "weir_haproxy_processes",
                "HAProxy processes (host, pid) whose request counter is followed.",
                &h.processes,
            ),
            (
                "weir_haproxy_request_numbers_missing",
                "Request counter numbers missing now, waiting for their line (out of order) before they settle.",
                &h.counter_missing,
            ),
        ];
        gauges_of(e, &gauges)?;
        let help = "Per message: the log line's timestamp to the brokers' acknowledgement.";
        histogram(e, "weir_haproxy_delivery_delay_seconds", help, &h.delivery_delay, &DELIVERY_DELAY_BUCKETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::exposition::{render, Exposition};

    #[test]
    fn the_haproxy_families_have_every_reason_and_topic() {
        let h = HaproxyMetrics::default();
        h.delivered[Topic::DeadLetter as usize].store(3, Relaxed);
        h.delivery_delay.record(20, 5);
        let mut exposition = Exposition::default();
        exposition.register(Arc::new(h));
        let text = render(&exposition.registry());
        for r in LineReason::ALL {
            assert!(text.contains(&format!("weir_haproxy_parse_errors_total{{reason=\"{}\"}} 0\n", r.label())));
        }
        assert!(text.contains("weir_haproxy_messages_delivered_total{topic=\"main\"} 0\n"), "{text}");
        let repaired = "weir_haproxy_fields_repaired_total{reason=\"invalid_utf8_replaced\",kind=\"headers\"} 0\n";
        assert!(text.contains(repaired), "{text}");
        for r in ProduceDrop::ALL {
            assert!(text.contains(&format!("weir_haproxy_messages_dropped_total{{reason=\"{}\"}} 0\n", r.label())));
        }
        assert!(text.contains("weir_haproxy_messages_delivered_total{topic=\"dead_letter\"} 3\n"), "{text}");
        assert!(text.contains("weir_haproxy_delivery_delay_seconds_bucket{le=\"0.025\"} 5\n"), "{text}");
    }
}
