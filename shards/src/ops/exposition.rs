//! `/metrics`: every registered feature's counters in the OpenMetrics text
//! format (or the Prometheus text format), through `prometheus-client`.
//!
//! Nothing on the data plane touches this crate. Each feature keeps its own
//! atomics and registers them here once at start-up as an `Exported` (one
//! line in `run`); on every scrape the collector asks each, in registration
//! order, to write its families, reading the atomics with relaxed loads and
//! summing the shards. A counter costs the data plane one uncontended store
//! and a scrape takes no lock (a `DelayHistogram`, written once per insert
//! or acknowledgement, is the one mutex). This module knows no feature: it
//! holds the trait, the helpers features encode with, and the `process_*`
//! series.
//!
//! Series are summed over shards: the number of series does not grow with
//! the core count. Label values come from fixed sets (reasons, configured
//! listeners, shard indexes).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};

use super::metrics::DelayHistogram;

/// The media type of what `render` returns.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of what `prometheus_text` returns.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A feature's counters, as `/metrics` and `/debug/memory` show them.
pub trait Exported: Send + Sync {
    /// Writes the feature's families into one scrape.
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result;

    /// Adds the feature's buffers to the `weir` object of `/debug/memory`.
    fn memory(&self, _weir: &mut Map<String, Value>) {}
}

/// The registered features, in the order their families are written.
#[derive(Clone, Default)]
pub struct Exposition {
    sources: Vec<Arc<dyn Exported>>,
}

impl Exposition {
    pub fn register(&mut self, source: Arc<dyn Exported>) {
        self.sources.push(source);
    }

    /// The registry `/metrics` encodes; built once at start-up.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Sources(self.sources.clone())));
        registry
    }

    /// The `weir` object of `/debug/memory`.
    pub fn memory(&self) -> Map<String, Value> {
        let mut weir = Map::new();
        self.sources.iter().for_each(|s| s.memory(&mut weir));
        weir
    }
}

struct Sources(Vec<Arc<dyn Exported>>);

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "weir collector ({} sources)", self.0.len())
    }
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        self.0.iter().try_for_each(|s| s.encode(&mut e))?;
        encode_process(&mut e)
    }
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

/// The usual `process_*` series, read from /proc at scrape time.
fn encode_process(e: &mut DescriptorEncoder) -> fmt::Result {
    let p = super::profile::ProcessStats::read();
    counter_f64(e, "process_cpu_seconds", "User and system CPU time spent.", p.cpu_seconds)?;
    gauge(e, "process_resident_memory_bytes", "Resident memory size.", p.resident_bytes)?;
    gauge(e, "process_virtual_memory_bytes", "Virtual memory size.", p.virtual_bytes)?;
    gauge(e, "process_open_fds", "Open file descriptors.", p.open_fds)?;
    gauge(e, "process_threads", "Threads of the process.", p.threads)?;
    let help = "Start time, seconds since the epoch.";
    let mut metric = e.encode_descriptor("process_start_time_seconds", help, None, MetricType::Gauge)?;
    metric.encode_gauge(&p.start_time_seconds)?;
    let help = "Bytes the C heap (malloc) has handed out and not taken back.";
    gauge(e, "weir_process_heap_allocated_bytes", help, super::profile::heap().allocated)?;
    let mut metric =
        e.encode_descriptor("weir_build_info", "The running release; the value is 1.", None, MetricType::Gauge)?;
    let labels = [("version", env!("CARGO_PKG_VERSION"))];
    metric.encode_family(&labels)?.encode_gauge(&1u64)
}

/// A counter of seconds (or another fractional unit).
pub fn counter_f64(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// One unlabelled series per `(name, help, value)`.
pub fn counters_of(e: &mut DescriptorEncoder, series: &[(&str, &str, &AtomicU64)]) -> fmt::Result {
    series.iter().try_for_each(|(name, help, a)| counter(e, name, help, a.load(Relaxed)))
}

pub fn gauges_of(e: &mut DescriptorEncoder, series: &[(&str, &str, &AtomicU64)]) -> fmt::Result {
    series.iter().try_for_each(|(name, help, a)| gauge(e, name, help, a.load(Relaxed)))
}

/// A `DelayHistogram` with buckets `upper` (seconds).
pub fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &DelayHistogram, upper: &[f64]) -> fmt::Result {
    let (count, sum_s, buckets) = h.buckets(upper);
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(sum_s, count, &buckets, None)
}

/// One `DelayHistogram` per value of `label`, buckets `upper` (seconds).
pub fn histogram_by(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, &DelayHistogram)],
    upper: &[f64],
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (value, h) in series {
        let (count, sum_s, buckets) = h.buckets(upper);
        metric.encode_family(&[(label, *value)])?.encode_histogram::<NoLabelSet>(sum_s, count, &buckets, None)?;
    }
    Ok(())
}

pub fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    prometheus_client::metrics::counter::ConstCounter::new(value).encode(metric)
}

pub fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    metric.encode_gauge(&value)
}

/// One counter per value of `label`.
pub fn counter_by(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    series: &[(&str, u64)],
) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in series {
        metric.encode_family(&[(label, *value)])?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
    }
    Ok(())
}

/// One gauge per value of `label`.
pub fn gauge_by(e: &mut DescriptorEncoder, name: &str, help: &str, label: &str, series: &[(&str, u64)]) -> fmt::Result {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, n) in series {
        metric.encode_family(&[(label, *value)])?.encode_gauge(n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;

    impl Exported for Two {
        fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
            counter(e, "weir_test_things", "Things.", 12)?;
            gauge_by(e, "weir_test_level", "1: on.", "listener", &[("[::]:2055", 1)])
        }
    }

    #[test]
    fn registered_families_come_first_then_the_process_series_in_both_formats() {
        let mut exposition = Exposition::default();
        exposition.register(Arc::new(Two));
        let text = render(&exposition.registry());
        assert!(text.starts_with("# HELP weir_test_things Things.\n# TYPE weir_test_things counter\n"), "{text}");
        assert!(text.contains("\nweir_test_things_total 12\n"), "{text}");
        assert!(text.contains("process_cpu_seconds_total ") && text.contains("weir_build_info{version="));
        assert!(text.ends_with("# EOF\n"));
        let old = prometheus_text(&text);
        assert!(old.starts_with(
            "# HELP weir_test_things_total Things.\n# TYPE weir_test_things_total counter\nweir_test_things_total 12\n"
        ));
        assert!(old.contains("# HELP weir_test_level 1: on.\n# TYPE weir_test_level gauge\n"));
        assert!(!old.contains("# EOF"));
    }
}
