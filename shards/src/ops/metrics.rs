//! What every feature counts with, and nothing that counts a feature.
//!
//! A feature (receive, store, haproxy...) keeps its counters in plain
//! atomics written by one thread only, with relaxed stores, and registers
//! them with the exposition (`ops::exposition::Exported`), which reads them
//! with relaxed loads at scrape time: no locks on the data plane. This
//! module holds the one counter shape that is not a plain atomic: a delay
//! histogram. Names follow `weir_<room>_<thing>_<unit>`; error counters
//! carry a bounded `reason` label.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Delays are recorded in ms and clamped to one day.
const DELAY_MS_MAX: u64 = 86_400_000;

/// How long things take, per item, in ms (3 significant digits): the store
/// writer records its rows' commit delay once per insert, the HAProxy input
/// its messages' delivery delay once per acknowledgement. The exposition and
/// `/latency` read it; the mutex is taken once per record and per scrape.
pub struct DelayHistogram {
    histogram: Mutex<Histogram<u64>>,
    sum_ms: AtomicU64,
}

impl Default for DelayHistogram {
    fn default() -> Self {
        let h = Histogram::new_with_bounds(1, DELAY_MS_MAX, 3).expect("static bounds");
        DelayHistogram { histogram: Mutex::new(h), sum_ms: AtomicU64::new(0) }
    }
}

impl DelayHistogram {
    /// `items` items took `delay_ms`.
    pub fn record(&self, delay_ms: u64, items: u64) {
        let v = delay_ms.clamp(1, DELAY_MS_MAX);
        if let Ok(mut h) = self.histogram.lock() {
            let _ = h.record_n(v, items);
        }
        self.sum_ms.fetch_add(delay_ms.saturating_mul(items), Relaxed);
    }

    /// Items recorded, the sum of their delays in seconds, and the items per
    /// bucket of `upper` (seconds; not cumulative; the rest fall in +Inf).
    pub fn buckets(&self, upper: &[f64]) -> (u64, f64, Vec<(f64, u64)>) {
        let Ok(h) = self.histogram.lock() else { return (0, 0.0, Vec::new()) };
        // One pass over the recorded values (count_between per bucket walks
        // the counts array each time). A value belongs to the first bucket
        // whose bound falls in or above its equivalence range.
        let mut counts = vec![0u64; upper.len() + 1];
        for v in h.iter_recorded() {
            let low = h.lowest_equivalent(v.value_iterated_to());
            let i = upper.iter().position(|le| low <= h.lowest_equivalent((le * 1000.0) as u64)).unwrap_or(upper.len());
            counts[i] += v.count_at_value();
        }
        let buckets = upper.iter().copied().chain([f64::INFINITY]).zip(counts).collect();
        (h.len(), self.sum_ms.load(Relaxed) as f64 / 1e3, buckets)
    }

    /// Items recorded and the quantiles, in ms, under a `# title` line.
    pub fn quantiles(&self, title: &str) -> String {
        let Ok(h) = self.histogram.lock() else { return String::new() };
        let mut out = format!("# {title}\n");
        let _ = writeln!(out, "rows {}", h.len());
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            let _ = writeln!(out, "{label} {}", if h.is_empty() { 0 } else { h.value_at_quantile(q) });
        }
        let _ = writeln!(out, "max {}", h.max());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_the_recorded_delays_and_the_sum_keeps_the_unclamped_values() {
        let h = DelayHistogram::default();
        h.record(700, 3);
        h.record(3_000, 1);
        let (count, sum_s, buckets) = h.buckets(&[0.5, 1.0]);
        assert_eq!((count, sum_s), (4, 5.1));
        assert_eq!(buckets, [(0.5, 0), (1.0, 3), (f64::INFINITY, 1)]);
        let text = h.quantiles("kernel receive timestamp to row committed to the store, ms, since start");
        assert!(text.starts_with("# kernel receive") && text.contains("\nrows 4\n"), "{text}");
        // A delay on a bound falls in that bucket.
        h.record(1_000, 2);
        assert_eq!(h.buckets(&[0.5, 1.0]).2, [(0.5, 0), (1.0, 5), (f64::INFINITY, 1)]);
    }
}
