//! Enrichment's pure part: what the control plane publishes to the shards
//! and how a shard looks a flow up in it. No I/O: the providers that fill
//! it (static config, SNMP, ...) run in `shards/src/enrich`.
//!
//! - `metadata`: exporter and interface attributes (names, descriptions,
//!   speeds, classification), interned as records with stable ids, and the
//!   snapshot a shard reads without locks.
//! - `snmp`: what an SNMP poll asks and how its answer is read (the
//!   polling itself runs on control threads in `shards/src/enrich`).

pub mod bmp;
pub mod classify;
pub mod flows;
pub mod metadata;
pub mod networks;
pub mod rib;
pub mod snmp;
pub mod sources;
