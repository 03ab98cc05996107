//! The flow pipeline's Kafka side: `weir inlet`'s producers (below),
//! `weir outlet`'s consumers (`outlet`) and the templates they share
//! (`state`), and the enriched output's producers (`enriched`).
//!
//! ```text
//!  shard k: recvmmsg ─▶ Datagram ─▶ RawFlow (prost) ─▶ producer k ── acks=all,
//!     │                                  │ queue full       idempotent ──▶ <topic>-v1
//!     │                                  ▼ past backpressure_wait_ms          partition k
//!     │                         spill k (disk, in order) ── replayed first ──┘
//!     └─ spill full, or no spill: dropped, counted
//! ```
//!
//! Each inlet shard owns its own producer (librdkafka's queue, its threads)
//! and its own partition, so shards share nothing on the way out.
//! Records never time out in librdkafka (`message.timeout.ms = 0`): while
//! the brokers are away the queue fills, then the shard waits up to
//! `kafka.backpressure_wait_ms`, then spills to disk; the spill is replayed,
//! oldest first, as the queue drains, and new records go behind it, so a
//! shard's records reach its partition in the order they arrived.

use std::sync::Mutex;
use std::time::Instant;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use tracing::warn;

use crate::ops::logging::Limiter;

pub mod enriched;
pub mod inlet;
pub mod metrics;
pub mod outlet;
pub mod spill;
pub mod state;

pub use inlet::InletWriter;
pub use metrics::{InletMetrics, OutletMetrics};

/// What a Kafka client's context logs of librdkafka: warnings and errors
/// within a rate limit (a broker that is down repeats them), the rest at
/// debug level. The HAProxy input's producer and the inlet's share it.
pub struct ClientLog(Mutex<Limiter>);

impl ClientLog {
    pub fn new(lines_per_minute: u32) -> ClientLog {
        ClientLog(Mutex::new(Limiter::new(lines_per_minute)))
    }

    /// Within the limit: `Some(lines held back since the last one)`.
    pub fn allow(&self) -> Option<u64> {
        self.0.lock().ok().and_then(|mut l| l.allow(Instant::now()))
    }

    /// `ClientContext::log`.
    pub fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            if let Some(held_back) = self.allow() {
                warn!(facility, held_back, "kafka: {message}");
            }
        } else {
            tracing::debug!(facility, "kafka: {message}");
        }
    }

    /// `ClientContext::error`.
    pub fn error(&self, e: KafkaError, reason: &str) {
        if let Some(held_back) = self.allow() {
            warn!(held_back, "kafka: {e}: {reason}");
        }
    }
}

/// `ClientContext` for a context whose `log` field is a `ClientLog`.
macro_rules! logged_context {
    ($context:ty) => {
        impl rdkafka::ClientContext for $context {
            fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
                self.log.log(level, facility, message);
            }

            fn error(&self, e: rdkafka::error::KafkaError, reason: &str) {
                self.log.error(e, reason);
            }
        }
    };
}
pub(crate) use logged_context;

/// Creates `topic` with the brokers of `config`; one that exists already
/// is no error. Within 10 s.
pub fn create_topic(config: &rdkafka::ClientConfig, topic: &rdkafka::admin::NewTopic<'_>) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| format!("kafka: {e}"))?;
    let wait = Some(std::time::Duration::from_secs(10));
    let options = AdminOptions::new().operation_timeout(wait).request_timeout(wait);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(|e| e.to_string())?;
    let results = runtime.block_on(admin.create_topics([topic], &options)).map_err(|e| format!("kafka: {e}"))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!("kafka: created {}", topic.name),
            Err((_, rdkafka::error::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, e)) => return Err(format!("kafka: creating {}: {e}", topic.name)),
        }
    }
    Ok(())
}
