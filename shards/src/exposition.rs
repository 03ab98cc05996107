//! `/metrics`: the counters of `metrics` in the OpenMetrics text format,
//! through `prometheus-client`.
//!
//! Nothing on the data plane touches this crate. Each shard and thread keeps
//! its own atomics (`metrics`); on every scrape the collector here reads them
//! with relaxed loads and sums the shards, so a counter costs the data plane
//! one uncontended store and a scrape costs no lock (the commit-delay
//! histogram, written once per insert by the store writer, is the one mutex).
//!
//! Series are summed over shards: the number of series does not grow with
//! the core count. Two per-shard families (`weir_shard_datagrams_total`,
//! `weir_shard_flows_total`) show how the load spreads. Label values come
//! from fixed sets (reasons, configured listeners, shard indexes).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use weir_core::Reason;

use crate::metrics::{CommitDelay, Metrics, ReceiveDrop, ShardMetrics, StoreDrop, StoreMetrics, COMMIT_DELAY_BUCKETS};

/// The media type of what `render` returns.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of what `prometheus_text` returns.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The registry `/metrics` encodes; built once at start-up.
pub fn registry(metrics: Arc<Metrics>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Weir(metrics)));
    registry
}

/// One scrape, `# EOF` included.
pub fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 << 10);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The same scrape in the Prometheus text format (0.0.4), for clients
/// that do not ask for OpenMetrics (`curl`, `promtool check metrics`): a
/// counter's family takes the `_total` name of its sample, and there is no
/// `# EOF`. Everything else reads the same in both formats.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Held until the TYPE line says whether the name changes.
            help = Some(rest);
            continue;
        }
        let counter = line.strip_prefix("# TYPE ").and_then(|t| t.strip_suffix(" counter"));
        if let Some(rest) = help.take() {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if counter == Some(name) { "_total" } else { "" };
            out.push_str(&format!("# HELP {name}{suffix} {text}\n"));
        }
        match counter {
            Some(name) => out.push_str(&format!("# TYPE {name}_total counter\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

struct Weir(Arc<Metrics>);

impl fmt::Debug for Weir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("weir collector")
    }
}

/// Counter names are given without `_total`: the encoder appends it.
type Get = fn(&ShardMetrics) -> &AtomicU64;
const SUMMED: [(&str, &str, Get); 13] = [
    ("weir_receive_datagrams", "Datagrams received.", |m| &m.datagrams),
    ("weir_receive_bytes", "UDP payload bytes received.", |m| &m.bytes),
    ("weir_receive_errors", "Receive calls that failed.", |m| &m.receive_errors),
    ("weir_receive_timestamp_fallbacks", "Datagrams without a kernel timestamp (the clock was read instead).", |m| {
        &m.timestamp_fallbacks
    }),
    ("weir_decode_flows", "Flows decoded.", |m| &m.flows),
    ("weir_decode_templates", "Template records accepted.", |m| &m.templates),
    ("weir_decode_pending_queued", "Data sets parked to wait for their template.", |m| &m.pending_queued),
    ("weir_decode_pending_decoded", "Parked data sets decoded once their template came.", |m| &m.pending_decoded),
    ("weir_decode_pending_drops", "Parked data sets given up on (also counted as template_missing).", |m| {
        &m.pending_dropped
    }),
    ("weir_shard_state_updates_sent", "Template and sampling-rate updates sent to the other shards.", |m| {
        &m.updates_sent
    }),
    ("weir_shard_state_updates_dropped", "Updates not delivered: a shard's inbox was full.", |m| &m.updates_dropped),
    ("weir_shard_state_updates_applied", "Updates from other shards applied.", |m| &m.updates_applied),
    ("weir_sink_flows", "Flows handed to the sink.", |m| &m.sink_flows),
];

const PER_SHARD: [(&str, &str, Get); 2] = [
    ("weir_shard_datagrams", "Datagrams received, per shard.", |m| &m.datagrams),
    ("weir_shard_flows", "Flows decoded, per shard.", |m| &m.flows),
];

impl Collector for Weir {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let m = &*self.0;
        let sum = |get: &dyn Fn(&ShardMetrics) -> u64| m.shards.iter().map(|s| get(s)).sum::<u64>();
        for (name, help, get) in SUMMED {
            counter(&mut e, name, help, sum(&|s| get(s).load(Relaxed)))?;
        }
        for (name, help, get) in PER_SHARD {
            let mut family = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (i, s) in m.shards.iter().enumerate() {
                let labels = [("shard", i.to_string()), ("core", m.cores[i].to_string())];
                family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&get(s).load(Relaxed), None)?;
            }
        }
        let reasons = Reason::ALL.map(|r| (r.label(), sum(&|s| s.decode_errors[r as usize].load(Relaxed))));
        counter_by(
            &mut e,
            "weir_decode_errors",
            "Datagrams, sets or samples not decoded, by reason.",
            "reason",
            &reasons,
        )?;
        let drops = ReceiveDrop::ALL.map(|r| (r.label(), sum(&|s| s.receive_drops[r as usize].load(Relaxed))));
        counter_by(&mut e, "weir_receive_drops", "Datagrams dropped before decoding, by reason.", "reason", &drops)?;
        self.encode_listeners(&mut e)?;
        let sink: [(&str, &str, &AtomicU64); 3] = [
            ("weir_sink_bytes_written", "Bytes written by the JSON sink.", &m.sink.bytes_written),
            ("weir_sink_write_errors", "Failed writes of the JSON sink (the buffer is lost).", &m.sink.write_errors),
            ("weir_sink_reopens", "Times the JSON sink's file was reopened (SIGHUP).", &m.sink.reopens),
        ];
        counters_of(&mut e, &sink)?;
        if let Some(store) = &m.store {
            encode_store(&mut e, store)?;
        }
        if let Some(haproxy) = &m.haproxy {
            encode_haproxy(&mut e, haproxy)?;
        }
        encode_process(&mut e)
    }
}

impl Weir {
    /// Per configured listener, summed over the shards' sockets.
    fn encode_listeners(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let m = &*self.0;
        let per_listener = |get: fn(&crate::metrics::SocketMetrics) -> u64, fold: fn(u64, u64) -> u64, start: u64| {
            (0..m.listeners.len())
                .map(|l| (m.listeners[l].as_str(), m.shards.iter().map(|s| get(&s.sockets[l])).fold(start, fold)))
                .collect::<Vec<_>>()
        };
        let drops = per_listener(|s| s.kernel_drops.load(Relaxed), u64::saturating_add, 0);
        let help = "Datagrams the kernel dropped on a full socket buffer (SO_RXQ_OVFL).";
        counter_by(e, "weir_receive_kernel_drops", help, "listener", &drops)?;
        // Every shard's socket of a listener asks for the same size; the
        // smallest grant is the one that drops first.
        let buffers = per_listener(|s| s.buffer_bytes.load(Relaxed), u64::min, u64::MAX);
        let help = "Smallest socket receive buffer the kernel granted to the listener's sockets (SO_RCVBUF).";
        gauge_by(e, "weir_receive_socket_buffer_bytes", help, "listener", &buffers)?;
        let ebpf: Vec<_> = m.listeners.iter().zip(&m.ebpf_active).map(|(l, a)| (l.as_str(), a.load(Relaxed))).collect();
        let help = "1: the eBPF round-robin balancer is attached; 0: kernel hash.";
        gauge_by(e, "weir_receive_balancer_ebpf", help, "listener", &ebpf)
    }
}

fn encode_store(e: &mut DescriptorEncoder, s: &StoreMetrics) -> fmt::Result {
    let counters: [(&str, &str, &AtomicU64); 10] = [
        ("weir_store_batches_received", "Batches handed over by the shards.", &s.batches_received),
        ("weir_store_rows_received", "Rows handed over by the shards.", &s.rows_received),
        ("weir_store_inserts", "Inserts the store accepted.", &s.inserts),
        ("weir_store_rows_inserted", "Rows the store accepted.", &s.rows_inserted),
        ("weir_store_bytes_inserted", "RowBinary bytes the store accepted.", &s.bytes_inserted),
        ("weir_store_insert_errors", "Inserts that failed (each is retried with backoff).", &s.insert_errors),
        ("weir_store_spooled_chunks", "Chunks written to the on-disk spool.", &s.chunks_spooled),
        ("weir_store_spooled_rows", "Rows written to the on-disk spool.", &s.rows_spooled),
        ("weir_store_replayed_chunks", "Spooled chunks inserted.", &s.chunks_replayed),
        ("weir_store_replayed_rows", "Spooled rows inserted.", &s.rows_replayed),
    ];
    counters_of(e, &counters)?;
    let seconds = s.insert_micros.load(Relaxed) as f64 / 1e6;
    let metric =
        e.encode_descriptor("weir_store_insert_seconds", "Time spent in accepted inserts.", None, MetricType::Counter)?;
    encode_value_counter(metric, seconds)?;
    let dropped = StoreDrop::ALL.map(|r| (r.label(), s.dropped_rows[r as usize].load(Relaxed)));
    counter_by(e, "weir_store_dropped_rows", "Rows that never reached the store, by reason.", "reason", &dropped)?;
    let gauges: [(&str, &str, &AtomicU64); 4] = [
        ("weir_store_memory_bytes", "Bytes of chunks waiting in memory for the store.", &s.memory_bytes),
        ("weir_store_spool_bytes", "Bytes in the on-disk spool.", &s.spool_bytes),
        ("weir_store_spool_chunks", "Chunks in the on-disk spool.", &s.spool_chunks),
        ("weir_store_up", "1 when the last insert worked, 0 while inserts fail.", &s.up),
    ];
    gauges_of(e, &gauges)?;
    let help = "Per row: kernel receive timestamp to the store accepting its insert.";
    histogram(e, "weir_store_commit_delay_seconds", help, &s.commit_delay, &COMMIT_DELAY_BUCKETS)
}

/// Buckets (seconds) of `weir_haproxy_delivery_delay_seconds`.
const DELIVERY_DELAY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0];

fn encode_haproxy(e: &mut DescriptorEncoder, h: &crate::haproxy::HaproxyMetrics) -> fmt::Result {
    use crate::haproxy::Topic;
    use weir_core::accesslog::LineReason;
    let counters: [(&str, &str, &AtomicU64); 6] = [
        ("weir_haproxy_lines_received", "Datagrams (log lines) read from the socket.", &h.lines_received),
        ("weir_haproxy_bytes_received", "Bytes of the lines read.", &h.bytes_received),
        ("weir_haproxy_receive_errors", "Receive calls on the socket that failed.", &h.receive_errors),
        ("weir_haproxy_lines_parsed", "Lines parsed into a JSON message.", &h.lines_parsed),
        ("weir_haproxy_lines_lost", "Lines HAProxy numbered (request counter) that never arrived.", &h.lines_lost),
        ("weir_haproxy_shard_loops", "Turns of the log shard's loop.", &h.heartbeats),
    ];
    counters_of(e, &counters)?;
    let drops = crate::haproxy::ProduceDrop::ALL.map(|r| (r.label(), h.dropped[r as usize].load(Relaxed)));
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
    let gauges: [(&str, &str, &AtomicU64); 5] = [
        ("weir_haproxy_socket_queue_datagrams", "Lines waiting in the socket's queue.", &h.socket_queue),
        (
            "weir_haproxy_socket_queue_datagrams_max",
            "Lines the socket queues at most (net.unix.max_dgram_qlen).",
            &h.socket_queue_max,
        ),
        ("weir_haproxy_socket_buffer_bytes", "Receive buffer granted to the socket.", &h.socket_buffer_bytes),
        ("weir_haproxy_producer_queue_messages", "Messages in the producer, not yet acknowledged.", &h.producer_queue),
        ("weir_haproxy_processes", "HAProxy processes (host, pid) whose request counter is followed.", &h.processes),
    ];
    gauges_of(e, &gauges)?;
    let help = "Per message: the log line's timestamp to the brokers' acknowledgement.";
    histogram(e, "weir_haproxy_delivery_delay_seconds", help, &h.delivery_delay, &DELIVERY_DELAY_BUCKETS)
}

/// The usual `process_*` series, read from /proc at scrape time.
fn encode_process(e: &mut DescriptorEncoder) -> fmt::Result {
    let p = crate::profile::ProcessStats::read();
    let metric =
        e.encode_descriptor("process_cpu_seconds", "User and system CPU time spent.", None, MetricType::Counter)?;
    encode_value_counter(metric, p.cpu_seconds)?;
    gauge(e, "process_resident_memory_bytes", "Resident memory size.", p.resident_bytes)?;
    gauge(e, "process_virtual_memory_bytes", "Virtual memory size.", p.virtual_bytes)?;
    gauge(e, "process_open_fds", "Open file descriptors.", p.open_fds)?;
    gauge(e, "process_threads", "Threads of the process.", p.threads)?;
    let help = "Start time, seconds since the epoch.";
    let mut metric = e.encode_descriptor("process_start_time_seconds", help, None, MetricType::Gauge)?;
    metric.encode_gauge(&p.start_time_seconds)?;
    let help = "Bytes the C heap (malloc) has handed out and not taken back.";
    gauge(e, "weir_process_heap_allocated_bytes", help, crate::profile::heap().allocated)?;
    let mut metric =
        e.encode_descriptor("weir_build_info", "The running release; the value is 1.", None, MetricType::Gauge)?;
    let labels = [("version", env!("CARGO_PKG_VERSION"))];
    metric.encode_family(&labels)?.encode_gauge(&1u64)
}

fn encode_value_counter(mut metric: prometheus_client::encoding::MetricEncoder, value: f64) -> fmt::Result {
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// One unlabelled series per `(name, help, value)`.
fn counters_of(e: &mut DescriptorEncoder, series: &[(&str, &str, &AtomicU64)]) -> fmt::Result {
    series.iter().try_for_each(|(name, help, a)| counter(e, name, help, a.load(Relaxed)))
}

fn gauges_of(e: &mut DescriptorEncoder, series: &[(&str, &str, &AtomicU64)]) -> fmt::Result {
    series.iter().try_for_each(|(name, help, a)| gauge(e, name, help, a.load(Relaxed)))
}

/// A `CommitDelay`-kept histogram with buckets `upper` (seconds).
fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &CommitDelay, upper: &[f64]) -> fmt::Result {
    let (count, sum_s, buckets) = h.buckets(upper);
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(sum_s, count, &buckets, None)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    prometheus_client::metrics::counter::ConstCounter::new(value).encode(metric)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    metric.encode_gauge(&value)
}

/// One counter per value of `label`.
fn counter_by(e: &mut DescriptorEncoder, name: &str, help: &str, label: &str, series: &[(&str, u64)]) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in series {
        metric.encode_family(&[(label, *value)])?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

/// One gauge per value of `label`.
fn gauge_by(e: &mut DescriptorEncoder, name: &str, help: &str, label: &str, series: &[(&str, u64)]) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in series {
        metric.encode_family(&[(label, *value)])?.encode_gauge(n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(m: Metrics) -> String {
        render(&registry(Arc::new(m)))
    }

    #[test]
    fn shards_are_summed_and_the_per_shard_families_keep_them_apart() {
        let m = Metrics::new(vec!["[::]:2055".into(), "[::]:6343".into()], vec![2, 3]);
        m.shards[0].datagrams.store(5, Relaxed);
        m.shards[1].datagrams.store(7, Relaxed);
        m.shards[1].decode_errors[Reason::ALL[0] as usize].store(4, Relaxed);
        m.shards[0].sockets[1].kernel_drops.store(2, Relaxed);
        m.shards[1].sockets[1].kernel_drops.store(3, Relaxed);
        m.shards[0].sockets[0].buffer_bytes.store(4096, Relaxed);
        m.shards[1].sockets[0].buffer_bytes.store(8192, Relaxed);
        let text = scrape(m);
        assert!(text.contains("\nweir_receive_datagrams_total 12\n"), "{text}");
        assert!(text.contains("weir_shard_datagrams_total{shard=\"0\",core=\"2\"} 5\n"), "{text}");
        assert!(text.contains("weir_shard_datagrams_total{shard=\"1\",core=\"3\"} 7\n"), "{text}");
        let reason = Reason::ALL[0].label();
        assert!(text.contains(&format!("weir_decode_errors_total{{reason=\"{reason}\"}} 4\n")), "{text}");
        assert!(text.contains("weir_receive_kernel_drops_total{listener=\"[::]:6343\"} 5\n"), "{text}");
        assert!(text.contains("weir_receive_socket_buffer_bytes{listener=\"[::]:2055\"} 4096\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        let old = prometheus_text(&text);
        assert!(old.starts_with(
            "# HELP weir_receive_datagrams_total Datagrams received.\n\
             # TYPE weir_receive_datagrams_total counter\nweir_receive_datagrams_total 12\n"
        ));
        assert!(old.contains("# HELP weir_receive_balancer_ebpf 1: the eBPF"));
        assert!(old.contains("# TYPE weir_receive_balancer_ebpf gauge\n"));
        assert!(!old.contains("# EOF"));
    }

    #[test]
    fn every_reason_is_present_before_it_happens() {
        let text = scrape(Metrics::new(vec!["[::]:2055".into()], vec![0]));
        for r in Reason::ALL {
            assert!(text.contains(&format!("weir_decode_errors_total{{reason=\"{}\"}} 0\n", r.label())), "{text}");
        }
        assert!(text.contains("weir_receive_drops_total{reason=\"too_long\"} 0\n"));
        assert!(text.contains("process_cpu_seconds_total "));
    }

    #[test]
    fn the_haproxy_families_have_every_reason_and_topic() {
        let mut m = Metrics::new(vec![], vec![]);
        let h = Arc::new(crate::haproxy::HaproxyMetrics::default());
        h.delivered[crate::haproxy::Topic::DeadLetter as usize].store(3, Relaxed);
        h.delivery_delay.record(20, 5);
        m.haproxy = Some(h);
        let text = scrape(m);
        for r in weir_core::accesslog::LineReason::ALL {
            assert!(text.contains(&format!("weir_haproxy_parse_errors_total{{reason=\"{}\"}} 0\n", r.label())));
        }
        assert!(text.contains("weir_haproxy_messages_delivered_total{topic=\"main\"} 0\n"), "{text}");
        for r in crate::haproxy::ProduceDrop::ALL {
            assert!(text.contains(&format!("weir_haproxy_messages_dropped_total{{reason=\"{}\"}} 0\n", r.label())));
        }
        assert!(text.contains("weir_haproxy_messages_delivered_total{topic=\"dead_letter\"} 3\n"), "{text}");
        assert!(text.contains("weir_haproxy_delivery_delay_seconds_bucket{le=\"0.025\"} 5\n"), "{text}");
    }

    #[test]
    fn the_store_family_carries_the_commit_delay_histogram() {
        let mut m = Metrics::new(vec!["[::]:2055".into()], vec![0]);
        let store = Arc::new(StoreMetrics::default());
        store.commit_delay.record(700, 3);
        store.commit_delay.record(3_000, 1);
        m.store = Some(store);
        let text = scrape(m);
        assert!(text.contains("weir_store_commit_delay_seconds_bucket{le=\"0.5\"} 0\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_bucket{le=\"1.0\"} 3\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_bucket{le=\"+Inf\"} 4\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_count 4\n"), "{text}");
        assert!(text.contains("weir_store_commit_delay_seconds_sum 5.1\n"), "{text}");
        for r in StoreDrop::ALL {
            assert!(text.contains(&format!("weir_store_dropped_rows_total{{reason=\"{}\"}} 0", r.label())));
        }
    }
}
