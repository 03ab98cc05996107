//! Enrichment's pure part: what the control plane publishes to the shards
//! and how a shard looks a flow up in it. No I/O: the providers that fill
//! it (static config, SNMP, ...) run in `shards/src/enrich`.
//!
//! - `metadata`: exporter and interface attributes (names, descriptions,
//!   speeds, classification), interned as records with stable ids, and the
//!   snapshot a shard reads without locks.
//! - `snmp`: what an SNMP poll asks and how its answer is read (the
//!   polling itself runs on control threads in `shards/src/enrich`).
//! - `networks`: networks from config, remote sources and GeoIP/ASN
//!   databases, flattened into address ranges (`PrefixTable`); `sources`
//!   reads the remote ones.
//! - `classify`: exporter and interface classification rules.
//! - `bmp`: BMP messages (framing, Peer Up ADD-PATH, UPDATEs with VPN
//!   NLRI, RD and RT filters) turned into events; `rib`: the routing table
//!   they update and the snapshot the shards look flows up in.
//! - `flows`: what a shard does per flow with all of the above (sampling
//!   rate, AS and mask providers, networks, routes).

pub mod bmp;
pub mod classify;
pub mod flows;
pub mod metadata;
pub mod networks;
pub mod rib;
pub mod snmp;
pub mod sources;
