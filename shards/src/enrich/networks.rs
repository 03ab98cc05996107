//! Networks' control plane: the "weir-networks" thread that builds the
//! merged longest-prefix table (`weir_core::enrich::networks`) from
//! `networks.subnets`, the network sources and the GeoIP/ASN databases,
//! and publishes it whole to the shards; and the counters of what the
//! shards' enrichment did with it (lookups, sampling rates).
//!
//! ```text
//!  networks.subnets ─┐
//!  "weir-net-sources" (HTTP, on their interval) ─┼─▶ "weir-networks": Builder ─▶ ArcSwap<Networks> ─▶ shards
//!  database files (checked every check_interval_s) ─┘      (a rebuild never stalls a shard)
//! ```
//!
//! The first table is built before the collector starts, so the first
//! flows find the databases; a database that cannot be read then stops the
//! start, unless `networks.databases_optional` (then it is read once it
//! can be). Later, a database or source that changed makes a new table
//! from scratch, on this thread; one that fails to read, or a table past
//! `networks.prefixes_max`, is refused (counted, logged) and the table in
//! use stays. A shard picks the new table up on its housekeeping tick,
//! after handing over the rows and sums made with the old one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use tracing::{info, warn};
use weir_core::config::{parse_cidr, EnrichmentConfig, MetadataSource, NetworkInfo, NetworksConfig};
use weir_core::enrich::flows::EnrichCounts;
use weir_core::enrich::networks::{Builder, GeoKind, Networks};
use weir_core::enrich::sources::{read_networks, Format, NetworksRead};
use weir_core::flow::{addr_to_ip, Addr};

use super::sources::{self, SourceMetrics, Update};
use crate::ops::exposition::{counter_by, counter_f64, gauges_of, Exported};

/// Exporters whose missing sampling rates a shard counts apart, at most;
/// the others are counted under `exporter="other"`.
pub const MISSING_EXPORTERS_MAX: usize = 1024;

/// Counters of the networks table and of the shards' enrichment.
#[derive(Default)]
pub struct NetworksMetrics {
    /// Per shard (written on its tick): `EnrichCounts` in field order.
    shards: Vec<[AtomicU64; 7]>,
    /// Per shard: flows without a sampling rate, by exporter.
    missing: Vec<Mutex<HashMap<Addr, u64>>>,
    /// Rebuilds: published, refused (a source failed to read, too many prefixes).
    rebuilds: [AtomicU64; 2],
    rebuild_micros_total: AtomicU64,
    rebuild_last_micros: AtomicU64,
    prefixes: AtomicU64,
    ranges: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    /// Per database (`networks.geo_databases`, then `asn_databases`): its
    /// file name and reads that worked, that failed.
    databases: Vec<(String, [AtomicU64; 2])>,
    sources: Vec<SourceMetrics>,
}

impl NetworksMetrics {
    pub fn new(shards: usize, config: &NetworksConfig) -> NetworksMetrics {
        let name = |p: &PathBuf| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into());
        NetworksMetrics {
            shards: (0..shards).map(|_| Default::default()).collect(),
            missing: (0..shards).map(|_| Default::default()).collect(),
            databases: config
                .geo_databases
                .iter()
                .chain(&config.asn_databases)
                .map(|p| (name(p), Default::default()))
                .collect(),
            sources: config
                .sources
                .iter()
                .map(|s| SourceMetrics { name: s.name.clone(), ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    fn sum(&self, i: usize) -> u64 {
        self.shards.iter().map(|s| s[i].load(Relaxed)).sum()
    }

    /// Shard `shard`'s counts (on its tick).
    pub fn publish(&self, shard: usize, counts: &EnrichCounts) {
        if let Some(s) = self.shards.get(shard) {
            let values = [
                counts.lookups,
                counts.misses,
                counts.rate_overridden,
                counts.rate_defaulted,
                counts.rate_missing,
                counts.route_lookups,
                counts.route_misses,
            ];
            for (a, v) in s.iter().zip(values) {
                a.store(v, Relaxed);
            }
        }
    }

    /// Shard `shard`'s missing rates by exporter, when the scrape is not
    /// reading them (never waits: tried again on the next tick).
    pub fn publish_missing(&self, shard: usize, missing: &HashMap<Addr, u64>) -> bool {
        let Some(m) = self.missing.get(shard) else { return true };
        match m.try_lock() {
            Ok(mut m) => {
                m.clone_from(missing);
                true
            }
            Err(_) => false,
        }
    }

    /// The total of `lookups` (hit, miss), for tests.
    pub fn lookups(&self) -> (u64, u64) {
        let (all, misses) = (self.sum(0), self.sum(1));
        (all - misses, misses)
    }
}

impl Exported for NetworksMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let (hits, misses) = self.lookups();
        let help = "Addresses the shards looked up in the networks table, by result (miss: in no configured network nor database).";
        counter_by(e, "weir_networks_lookups", help, "result", &[("hit", hits), ("miss", misses)])?;
        let (all, misses) = (self.sum(5), self.sum(6));
        let help = "Addresses the shards looked up in the BGP routes (BMP) for the routing providers, by result (miss: no route).";
        counter_by(e, "weir_routing_lookups", help, "result", &[("hit", all - misses), ("miss", misses)])?;
        let rebuilds = [("ok", self.rebuilds[0].load(Relaxed)), ("refused", self.rebuilds[1].load(Relaxed))];
        let help = "Networks table rebuilds, by result (refused: a database failed to read or the table was past networks.prefixes_max; the table in use stays).";
        counter_by(e, "weir_networks_rebuilds", help, "result", &rebuilds)?;
        let total = self.rebuild_micros_total.load(Relaxed) as f64 / 1e6;
        counter_f64(
            e,
            "weir_networks_rebuild_seconds",
            "Time spent building networks tables, on the control plane.",
            total,
        )?;
        let help = "Seconds the last networks table took to build.";
        let mut metric = e.encode_descriptor("weir_networks_rebuild_last_seconds", help, None, MetricType::Gauge)?;
        metric.encode_gauge(&(self.rebuild_last_micros.load(Relaxed) as f64 / 1e6))?;
        gauges_of(
            e,
            &[
                ("weir_networks_prefixes", "Distinct prefixes merged into the networks table in use.", &self.prefixes),
                (
                    "weir_networks_ranges",
                    "Address ranges of the networks table in use (what a lookup searches).",
                    &self.ranges,
                ),
                (
                    "weir_networks_records",
                    "Distinct network records (attribute sets without the AS number).",
                    &self.records,
                ),
                ("weir_networks_memory_bytes", "Bytes the networks table in use holds.", &self.bytes),
            ],
        )?;
        let help = "Reads of each GeoIP/ASN database file, by result (error: unreadable or not a MaxMind database).";
        let mut metric = e.encode_descriptor("weir_networks_database_reads", help, None, MetricType::Counter)?;
        for (name, reads) in &self.databases {
            for (result, n) in [("ok", &reads[0]), ("error", &reads[1])] {
                let labels = [("database", name.as_str()), ("result", result)];
                metric.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n.load(Relaxed), None)?;
            }
        }
        sources::encode(e, "weir_networks_source", "networks.sources", "Network", &self.sources)?;
        let applied = [("override", self.sum(2)), ("default", self.sum(3))];
        let help = "Flows whose sampling rate came from enrichment.override_sampling_rate or enrichment.default_sampling_rate.";
        counter_by(e, "weir_enrichment_sampling_rates_applied", help, "from", &applied)?;
        let mut by_exporter: BTreeMap<String, u64> = BTreeMap::new();
        for m in &self.missing {
            if let Ok(m) = m.lock() {
                for (exporter, n) in m.iter() {
                    let name =
                        if *exporter == [0; 16] { "other".to_string() } else { addr_to_ip(exporter).to_string() };
                    *by_exporter.entry(name).or_default() += n;
                }
            }
        }
        let help = "Flows stored with sampling rate 1 because neither the flow, its exporter's options nor enrichment.default_sampling_rate gave one, by exporter (other: past the first 1024 exporters).";
        let mut metric =
            e.encode_descriptor("weir_enrichment_sampling_rate_missing", help, None, MetricType::Counter)?;
        for (exporter, n) in &by_exporter {
            metric.encode_family(&[("exporter", exporter.as_str())])?.encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        Ok(())
    }
}

/// What shards read, and how they enrich.
#[derive(Clone)]
pub struct NetworksHandle {
    pub table: Arc<ArcSwap<Networks>>,
    pub metrics: Arc<NetworksMetrics>,
    pub enrichment: EnrichmentConfig,
    /// Whether any network can be known (else the shards skip lookups).
    pub lookups: bool,
}

/// The control thread; stops when dropped.
pub struct NetworksService {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for NetworksService {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A database file and what was last read of it: (length, modification
/// time); None before a read worked.
struct Database {
    path: PathBuf,
    kind: GeoKind,
    stamp: Option<(u64, SystemTime)>,
}

impl Database {
    fn current_stamp(&self) -> Option<(u64, SystemTime)> {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.len(), m.modified().ok()?))
    }
}

/// What a table is built from.
struct Inputs {
    config: NetworksConfig,
    databases: Vec<Database>,
    /// Each source's last good networks.
    sources: BTreeMap<usize, Vec<(String, NetworkInfo)>>,
}

impl Inputs {
    /// A new table: databases, then sources, then the config (the later
    /// wins per attribute). Err when a database that must be read cannot
    /// be (the reason), or past `prefixes_max`.
    fn build(&mut self, metrics: &NetworksMetrics, at_start: bool) -> Result<Networks, String> {
        let started = Instant::now();
        let mut b = Builder::new();
        for (i, db) in self.databases.iter_mut().enumerate() {
            let stamp = db.current_stamp();
            let read =
                std::fs::read(&db.path).map_err(|e| e.to_string()).and_then(|bytes| b.add_database(db.kind, &bytes));
            match read {
                Ok(r) => {
                    metrics.databases[i].1[0].fetch_add(1, Relaxed);
                    info!(
                        "networks: {} ({}): {} networks, {} records",
                        db.path.display(),
                        r.database_type,
                        r.networks,
                        r.records
                    );
                    db.stamp = stamp;
                }
                Err(e) => {
                    metrics.databases[i].1[1].fetch_add(1, Relaxed);
                    let why = format!("networks: cannot read {}: {e}", db.path.display());
                    if !self.config.databases_optional {
                        return Err(why);
                    }
                    warn!("{why} (optional: going on without it)");
                    // Read again once it changes (at start: once it exists).
                    db.stamp = if at_start { None } else { stamp };
                }
            }
        }
        for (prefix, info) in self.sources.values().flatten() {
            if let Some((net, len)) = parse_cidr(prefix) {
                b.add(u128::from(net), len, info);
            }
        }
        for (subnet, entry) in &self.config.subnets {
            if let Some((net, len)) = parse_cidr(subnet) {
                b.add(u128::from(net), len, &entry.info());
            }
        }
        if b.len() > self.config.prefixes_max {
            return Err(format!(
                "networks: {} prefixes, past networks.prefixes_max ({})",
                b.len(),
                self.config.prefixes_max
            ));
        }
        let table = b.build();
        let micros = started.elapsed().as_micros() as u64;
        metrics.rebuild_micros_total.fetch_add(micros, Relaxed);
        metrics.rebuild_last_micros.store(micros, Relaxed);
        metrics.prefixes.store(table.prefixes as u64, Relaxed);
        let (v4, v6) = table.ranges();
        metrics.ranges.store((v4 + v6) as u64, Relaxed);
        metrics.records.store(table.records.len() as u64, Relaxed);
        metrics.bytes.store(table.bytes() as u64, Relaxed);
        Ok(table)
    }

    /// Whether a database file changed since it was read.
    fn databases_changed(&self) -> bool {
        self.databases.iter().any(|db| db.current_stamp().is_some_and(|now| Some(now) != db.stamp))
    }
}

fn read_source(source: &MetadataSource, format: Format, body: &[u8]) -> Result<NetworksRead, String> {
    read_networks(format, &source.path, &source.rename, body)
}

/// Builds the first table and starts the thread that keeps it current.
pub fn start(
    config: &NetworksConfig,
    enrichment: &EnrichmentConfig,
    metrics: Arc<NetworksMetrics>,
) -> Result<(NetworksService, NetworksHandle), String> {
    let kinds = config
        .geo_databases
        .iter()
        .map(|p| (p, GeoKind::Location))
        .chain(config.asn_databases.iter().map(|p| (p, GeoKind::Asn)));
    let mut inputs = Inputs {
        config: config.clone(),
        databases: kinds.map(|(path, kind)| Database { path: path.clone(), kind, stamp: None }).collect(),
        sources: BTreeMap::new(),
    };
    let mut first = inputs.build(&metrics, true)?;
    metrics.rebuilds[0].fetch_add(1, Relaxed);
    first.generation = 1;
    if config.enabled() {
        info!("networks: {} prefixes, {} bytes", first.prefixes, first.bytes());
    }
    let handle = NetworksHandle {
        table: Arc::new(ArcSwap::from_pointee(first)),
        metrics: metrics.clone(),
        enrichment: enrichment.clone(),
        lookups: config.enabled(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    if !config.enabled() {
        return Ok((NetworksService { stop, thread: None }, handle));
    }
    let (table, s) = (handle.table.clone(), stop.clone());
    let (updates_tx, updates) = crossbeam_channel::bounded::<Update<NetworksRead>>(config.sources.len().max(1) * 2);
    let check_interval = Duration::from_secs(config.check_interval_s);
    let thread = std::thread::Builder::new()
        .name("weir-networks".into())
        .spawn(move || {
            let mut next_check = Instant::now() + check_interval;
            let mut generation = 1;
            while !s.load(Relaxed) {
                let mut changed = false;
                let wait = next_check.saturating_duration_since(Instant::now()).min(Duration::from_millis(250));
                match updates.recv_timeout(wait) {
                    Ok(update) => {
                        changed |= take_update(&mut inputs, &metrics, update);
                        while let Ok(update) = updates.try_recv() {
                            changed |= take_update(&mut inputs, &metrics, update);
                        }
                    }
                    // No sources (or their thread ended): only the files.
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                }
                if Instant::now() >= next_check {
                    next_check = Instant::now() + check_interval;
                    changed |= inputs.databases_changed();
                }
                if !changed {
                    continue;
                }
                match inputs.build(&metrics, false) {
                    Ok(mut t) => {
                        generation += 1;
                        t.generation = generation;
                        info!("networks: new table, {} prefixes, {} bytes", t.prefixes, t.bytes());
                        table.store(Arc::new(t));
                        metrics.rebuilds[0].fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        warn!("{e}: the table in use stays");
                        metrics.rebuilds[1].fetch_add(1, Relaxed);
                    }
                }
            }
        })
        .map_err(|e| format!("cannot start the networks thread: {e}"))?;
    sources::start("weir-net-sources", &config.sources, read_source, updates_tx, thread.thread().clone())?;
    Ok((NetworksService { stop, thread: Some(thread) }, handle))
}

/// Counts and logs a source's fetch; whether its networks changed.
fn take_update(inputs: &mut Inputs, metrics: &NetworksMetrics, update: Update<NetworksRead>) -> bool {
    let Some(m) = metrics.sources.get(update.source) else { return false };
    let name = &m.name;
    match update.result {
        Ok(read) => {
            m.fetches[0].fetch_add(1, Relaxed);
            m.invalid.fetch_add(read.invalid as u64, Relaxed);
            m.entries.store(read.networks.len() as u64, Relaxed);
            if read.invalid > 0 {
                warn!("networks.sources {name}: {} entries skipped: {}", read.invalid, read.reasons.join("; "));
            }
            inputs.sources.insert(update.source, read.networks.clone()).is_none_or(|old| old != read.networks)
        }
        Err(e) => {
            m.fetches[1].fetch_add(1, Relaxed);
            warn!("networks.sources {name}: {e} (keeping its last good networks)");
            false
        }
    }
}
