//! Weir's performance tools:
//! - `traffic`: a deterministic, realistic mix of flows (Zipf-like top
//!   talkers from configured prefixes, common ports and protocols, packet
//!   sizes, interfaces, AS numbers, sampling) and the datagrams of every
//!   format built from it with `weir_core::encode`, which the decoder
//!   benchmarks (`benches/decode.rs`) feed to Weir and its peers;
//! - `flowgen`: `weir-flowgen`, which sends those datagrams over UDP at a
//!   target rate from many exporters;
//! - `collectors`: Weir and its peers (nfcapd, nfacctd, sfcapd, sfacctd) as
//!   the end-to-end benchmark (`weir-bench`) runs and measures them;
//! - `routes`: a synthetic full BGP table (`benches/rib.rs`,
//!   `benches/rib_flush.rs`);
//! - `accesslog`: HAProxy access-log lines for `weir-logbench` (Weir next
//!   to rsyslog + omkafka) and `benches/accesslog.rs` (the parser alone).

pub mod accesslog;
pub mod collectors;
pub mod flowgen;
pub mod routes;
pub mod traffic;
