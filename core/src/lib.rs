//! Weir's pure core: everything that turns bytes into flows without touching
//! sockets, threads, clocks or files. Whatever it needs (a datagram, its
//! kernel receive time, the exporter address) comes in as arguments, so every
//! part is unit-tested and fuzzed.
//!
//! How data moves:
//!
//! ```text
//!  Datagram { exporter, received_ns, payload, options }
//!      │
//!  decoder::Decoder ── Format::detect ──▶ wire::{netflow_v5, netflow_v9, ipfix, sflow}
//!      │  (wire::state::DecoderState: templates, sampling rates, pending queue)
//!      ▼
//!  sink(&flow::FlowRecord)  ── one reused fixed-layout record per flow
//!      │
//!  json::write_flow (weir decode)      columns::Columns::push (a shard's column
//!                                      buffers) ─▶ write_block (sorted Native block)
//! ```
//!
//! - `flow`: the flow record, its fields (named after Akvorado's columns)
//!   and presence tracking.
//! - `wire`: the four decoders, their errors (`wire::Reason`) and counters.
//! - `decoder`: the per-shard front that owns decoder state.
//! - `encode`: builds datagrams of every format from flow records (tests,
//!   property tests and the perf flow generator).
//! - `pcap`: reads capture files from memory into UDP datagrams.
//! - `json`: one flow as one JSON object.
//! - `schema`: the store's columns, types, keys, TTLs and DDL per server version.
//! - `columns`: a batch of flows as column buffers, written as a ClickHouse
//!   Native block sorted by the raw table's key.
//! - `migrate`: what to create or alter, from the live database's description.
//! - `rawflow`: the Kafka record of one datagram (`weir inlet` to `weir outlet`).
//! - `flowproto`: enriched flows as protobuf messages, and their `.proto`
//!   generated from the schema (the outlet's enriched topic).
//! - `harness`: the bodies of the fuzz targets (`core/fuzz`), shared with the
//!   regression test that replays saved inputs.

pub mod accesslog;
pub mod cluster;
pub mod columns;
pub mod config;
pub mod consolidate;
pub mod decoder;
pub mod encode;
pub mod enrich;
pub mod flow;
pub mod flowproto;
#[doc(hidden)]
pub mod harness;
pub mod httplog;
pub mod json;
pub mod migrate;
pub mod pcap;
pub mod rawflow;
pub mod schema;
pub mod tsv;
pub mod wire;

pub use decoder::{Decoder, Format};
pub use flow::{Field, FlowRecord};
pub use wire::{Datagram, DecodeCounters, DecodeError, Reason};
