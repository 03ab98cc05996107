//! The flow pipeline's Kafka side (`weir inlet`; `weir outlet` to come).
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

pub mod inlet;
pub mod metrics;
pub mod spill;

pub use inlet::InletWriter;
pub use metrics::InletMetrics;
