//! Operations: what lets an operator run and watch Weir, knowing nothing of
//! the features it watches.
//!
//! - `http`: the control-plane server (axum on a pinned tokio runtime);
//!   features mount their routes beside its own;
//! - `metrics`: counter shapes (`DelayHistogram`); `exposition`: `/metrics`,
//!   filled by every feature's `Exported` registered at start-up;
//! - `health`: liveness probes and readiness checks features hand in;
//! - `profile`: CPU profiles, heap and /proc figures; `systemd`: the notify
//!   protocol; `logging`: the subscriber and the data-plane rate limiter;
//!   `cpu`: CPU pinning.
//!
//! Nothing here imports a feature room (`receive`, `store`, `haproxy`).

pub mod cpu;
pub mod exposition;
pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod profile;
pub mod systemd;
