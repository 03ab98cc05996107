//! The data plane: pinned shards, each owning one socket per listener,
//! decoding every datagram into its sink.
//!
//! ```text
//!  socket (SO_REUSEPORT group, eBPF balancer) ─recvmmsg─▶ shard k ─decode─▶ Sink
//!                                   templates ◀──inboxes──▶ other shards
//! ```
//!
//! - `socket`: opening, buffers, kernel timestamps and drop counters, batches;
//! - `shard`: the pinned glommio executor, its decoder state and housekeeping;
//! - `sink`: where decoded flows go (the store's batch buffer, JSON lines, a count);
//! - `metrics`: the shards' counters, registered with the exposition.

pub mod metrics;
pub mod shard;
pub mod sink;
pub mod socket;
