//! The console's counters: requests and their latency per endpoint, and
//! failed queries per reason.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;
use weir_console::api::{Observer, QueryFailure, ENDPOINTS};

use crate::ops::exposition::{counter_by, histogram_by, Exported};
use crate::ops::metrics::DelayHistogram;

/// Latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 5.0, 30.0];

pub struct ConsoleMetrics {
    requests: [AtomicU64; ENDPOINTS.len()],
    /// Answers with a 4xx or 5xx status.
    errors: [AtomicU64; ENDPOINTS.len()],
    latency: [DelayHistogram; ENDPOINTS.len()],
    query_failures: [AtomicU64; QueryFailure::ALL.len()],
    /// Answers from the cache, and computed.
    cache: [AtomicU64; 2],
}

impl Default for ConsoleMetrics {
    fn default() -> Self {
        ConsoleMetrics {
            requests: Default::default(),
            errors: Default::default(),
            latency: std::array::from_fn(|_| DelayHistogram::default()),
            query_failures: Default::default(),
            cache: Default::default(),
        }
    }
}

impl Observer for ConsoleMetrics {
    fn request(&self, endpoint: &'static str, status: u16, took: Duration) {
        let Some(i) = ENDPOINTS.iter().position(|e| *e == endpoint) else { return };
        self.requests[i].fetch_add(1, Relaxed);
        if status >= 400 {
            self.errors[i].fetch_add(1, Relaxed);
        }
        self.latency[i].record(took.as_millis() as u64, 1);
    }

    fn query_failed(&self, failure: QueryFailure) {
        self.query_failures[failure as usize].fetch_add(1, Relaxed);
    }

    fn cache(&self, hit: bool) {
        self.cache[usize::from(!hit)].fetch_add(1, Relaxed);
    }
}

impl Exported for ConsoleMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let by = |a: &[AtomicU64]| -> Vec<(&str, u64)> {
            ENDPOINTS.iter().zip(a).map(|(n, c)| (*n, c.load(Relaxed))).collect()
        };
        counter_by(
            e,
            "weir_console_requests",
            "Console API requests answered, by endpoint.",
            "endpoint",
            &by(&self.requests),
        )?;
        let help = "Console API requests answered with a 4xx or 5xx status, by endpoint.";
        counter_by(e, "weir_console_request_errors", help, "endpoint", &by(&self.errors))?;
        let latency: Vec<(&str, &DelayHistogram)> = ENDPOINTS.iter().copied().zip(&self.latency).collect();
        let help = "Console API request latency, seconds (1 ms resolution), by endpoint.";
        histogram_by(e, "weir_console_request_duration_seconds", help, "endpoint", &latency, &LATENCY_BUCKETS)?;
        let failures = QueryFailure::ALL.map(|f| (f.label(), self.query_failures[f as usize].load(Relaxed)));
        let help = "Console queries the store refused or stopped, by reason (timeout, memory and result_rows are the configured bounds).";
        counter_by(e, "weir_console_query_errors", help, "reason", &failures)?;
        let cache = [("hit", self.cache[0].load(Relaxed)), ("miss", self.cache[1].load(Relaxed))];
        let help = "Cacheable console answers served from the response cache (hit) or computed (miss).";
        counter_by(e, "weir_console_cache_requests", help, "result", &cache)
    }
}
