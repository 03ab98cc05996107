//! Enrichment's control plane: the thread that answers the shards'
//! metadata misses from the providers and publishes snapshots, and the
//! shard's side of it (`ShardMetadata`).
//!
//! ```text
//!  shard k: per run of a batch's rows (same exporter, interfaces), lookup in
//!           its Arc<Snapshot> ── hit ─▶ Meta (3 record ids) ─▶ the rows' ids
//!              │ miss: counted (per row), asked once per snapshot
//!              ▼
//!  requests (bounded ArrayQueue; full: the request is dropped, counted, asked again later)
//!              ▼
//!  "weir-metadata" thread: Resolver (static provider) ─▶ ArcSwap<Snapshot> ─▶ shards
//!              │ misses SNMP must answer         ▲ answers
//!              ▼                                 │
//!  snmp::Poller ─▶ "weir-snmp-N" poller threads ─┘
//! ```
//!
//! A shard never waits: a miss stores the rows with what is known (with
//! `metadata.on_missing = "drop"`, or once a classifier rejected something,
//! each flow is checked as it comes and dropped, counted) and picks up the
//! answer with the next snapshot, which it loads on its housekeeping tick.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use prometheus_client::encoding::DescriptorEncoder;
use tracing::{info, warn};
use weir_core::config::{MetadataConfig, MetadataProvider, OnMissing};
use weir_core::enrich::classify::RuleKind;
use weir_core::enrich::metadata::{CacheFile, Meta, Misses, Resolver, SeenPairs, Snapshot, Swept};
use weir_core::enrich::snmp::Failure;
use weir_core::flow::Addr;
use weir_core::wire::state::KeyHash;
use weir_core::{Field, FlowRecord};

use crate::ops::exposition::{counter_by, counter_f64, counters_of, gauges_of, Exported};
use crate::run::save_atomically;

pub mod bmp;
pub mod networks;
pub mod snmp;
pub mod sources;

/// The control thread sleeps until a shard asks (it is unparked), or this
/// long.
const IDLE: Duration = Duration::from_secs(1);
/// Snapshots are published this far apart at least.
const SNAPSHOT_SPACING: Duration = Duration::from_millis(100);
/// (exporter, ifIndex) pairs a shard remembers asking for, at most, until
/// the next snapshot.
const ASKED_MAX: usize = 4096;

/// One miss for the control plane: an exporter, and an ifIndex on it (0:
/// only the exporter).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub exporter: Addr,
    pub if_index: u32,
}

/// A shard's counters (written by that shard on its tick) and the control
/// thread's.
#[derive(Default)]
pub struct MetadataMetrics {
    /// Per shard: lookups answered, exporter misses, interface misses,
    /// requests queued, requests dropped (queue full), flows dropped,
    /// lookups of entries a polled provider has not answered yet, flows
    /// dropped because a classifier rejected their exporter or interface.
    shards: Vec<[AtomicU64; 8]>,
    snapshots: AtomicU64,
    requests_resolved: AtomicU64,
    exporters: AtomicU64,
    interfaces: AtomicU64,
    exporter_records: AtomicU64,
    interface_records: AtomicU64,
    snmp: Arc<snmp::SnmpMetrics>,
    cache_expired: AtomicU64,
    cache_refreshes: AtomicU64,
    /// Interfaces not kept: `metadata.cache_entries_max` reached.
    cache_refused: AtomicU64,
    /// Cache file saves: written, failed.
    cache_saves: [AtomicU64; 2],
    /// Polled answers the cache file gave at start.
    cache_loaded: AtomicU64,
    /// Classifier failures: exporter rules', then interface rules', by
    /// rule index (copied from the resolver).
    classifier_errors: Vec<AtomicU64>,
    exporter_rules: usize,
    sources: Vec<sources::SourceMetrics>,
}

impl MetadataMetrics {
    pub fn new(shards: usize, config: &MetadataConfig) -> MetadataMetrics {
        let rules = config.exporter_classifiers.len() + config.interface_classifiers.len();
        MetadataMetrics {
            shards: (0..shards).map(|_| Default::default()).collect(),
            sources: config
                .sources
                .iter()
                .map(|s| sources::SourceMetrics { name: s.name.clone(), ..Default::default() })
                .collect(),
            classifier_errors: (0..rules).map(|_| AtomicU64::new(0)).collect(),
            exporter_rules: config.exporter_classifiers.len(),
            ..Default::default()
        }
    }

    fn sum(&self, i: usize) -> u64 {
        self.shards.iter().map(|s| s[i].load(Relaxed)).sum()
    }
}

impl Exported for MetadataMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let lookups = [
            ("hit", self.sum(0)),
            ("exporter_missing", self.sum(1)),
            ("interface_missing", self.sum(2)),
            ("pending", self.sum(6)),
        ];
        let help = "Metadata lookups by the shards, by result (a miss stores the flow with what is known and asks the control plane; pending: asked, a poll has not answered yet).";
        counter_by(e, "weir_metadata_lookups", help, "result", &lookups)?;
        let requests = [("queued", self.sum(3)), ("queue_full", self.sum(4))];
        let help = "Misses the shards asked the control plane to resolve, by outcome (queue_full: dropped, asked again by a later flow).";
        counter_by(e, "weir_metadata_requests", help, "result", &requests)?;
        let dropped = [("metadata_missing", self.sum(5)), ("rejected", self.sum(7))];
        let help = "Flows dropped by enrichment, by reason (metadata_missing: missing or pending, with metadata.on_missing = \"drop\"; rejected: a classifier called Reject()).";
        counter_by(e, "weir_metadata_flows_dropped", help, "reason", &dropped)?;
        self.encode_snmp(e)?;
        self.encode_classifier_errors(e)?;
        self.encode_sources(e)?;
        let saves = [("ok", self.cache_saves[0].load(Relaxed)), ("error", self.cache_saves[1].load(Relaxed))];
        let help = "Times the metadata cache file was written (metadata.cache_file), by result.";
        counter_by(e, "weir_metadata_cache_saves", help, "result", &saves)?;
        counters_of(
            e,
            &[
                ("weir_metadata_snapshots", "Metadata snapshots published to the shards.", &self.snapshots),
                (
                    "weir_metadata_requests_resolved",
                    "Shard requests the control plane answered.",
                    &self.requests_resolved,
                ),
                (
                    "weir_metadata_cache_expired",
                    "Exporters and interfaces forgotten because no flow used them for metadata.cache_expiry_s.",
                    &self.cache_expired,
                ),
                (
                    "weir_metadata_cache_refreshes",
                    "Polled exporters and interfaces asked again because their answer was older than metadata.cache_refresh_s.",
                    &self.cache_refreshes,
                ),
                (
                    "weir_metadata_cache_refused",
                    "Interfaces not kept because metadata.cache_entries_max were (their flows are stored without interface metadata).",
                    &self.cache_refused,
                ),
            ],
        )?;
        gauges_of(
            e,
            &[
                ("weir_metadata_exporters", "Exporters the metadata snapshot knows.", &self.exporters),
                (
                    "weir_metadata_interfaces",
                    "Interfaces the metadata snapshot knows, over every exporter.",
                    &self.interfaces,
                ),
                ("weir_metadata_exporter_records", "Distinct exporter records interned.", &self.exporter_records),
                ("weir_metadata_interface_records", "Distinct interface records interned.", &self.interface_records),
                (
                    "weir_metadata_cache_loaded",
                    "Polled answers the metadata cache file gave at start.",
                    &self.cache_loaded,
                ),
            ],
        )
    }
}

impl MetadataMetrics {
    fn encode_sources(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        sources::encode(e, "weir_metadata_source", "metadata.sources", "Exporter", &self.sources)
    }

    fn encode_classifier_errors(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        use prometheus_client::encoding::NoLabelSet;
        use prometheus_client::metrics::MetricType;
        let help = "Classifier rules that failed at run time (the rest of their list is skipped), by kind and rule index in metadata.*_classifiers.";
        let mut metric = e.encode_descriptor("weir_metadata_classifier_errors", help, None, MetricType::Counter)?;
        for (i, n) in self.classifier_errors.iter().enumerate() {
            let (kind, rule) = match i.checked_sub(self.exporter_rules) {
                None => ("exporter", i),
                Some(rule) => ("interface", rule),
            };
            let rule = rule.to_string();
            let labels = [("kind", kind), ("rule", rule.as_str())];
            metric.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n.load(Relaxed), None)?;
        }
        Ok(())
    }

    fn encode_snmp(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let s = &self.snmp;
        let mut polls = vec![("ok", s.polls[0].load(Relaxed))];
        polls.extend(Failure::ALL.iter().zip(&s.polls[1..]).map(|(f, n)| (f.label(), n.load(Relaxed))));
        let help = "SNMP polls (one request per exporter, several interfaces), by result.";
        counter_by(e, "weir_metadata_snmp_polls", help, "result", &polls)?;
        let interfaces = [("found", s.interfaces[0].load(Relaxed)), ("missing", s.interfaces[1].load(Relaxed))];
        let help = "Interfaces SNMP polls answered, by result (missing: the agent has no ifName for the ifIndex).";
        counter_by(e, "weir_metadata_snmp_interfaces", help, "result", &interfaces)?;
        let sessions = [("reused", s.v3_sessions[0].load(Relaxed)), ("discovered", s.v3_sessions[1].load(Relaxed))];
        let help = "SNMPv3 sessions a poll used, by whether it was kept from an earlier poll or discovered anew.";
        counter_by(e, "weir_metadata_snmp_v3_sessions", help, "result", &sessions)?;
        let seconds = s.poll_micros.load(Relaxed) as f64 / 1e6;
        counter_f64(e, "weir_metadata_snmp_poll_seconds", "Time spent in SNMP polls, over all of them.", seconds)?;
        counters_of(
            e,
            &[
                ("weir_metadata_snmp_retries", "SNMP requests sent again after a timeout.", &s.retries),
                (
                    "weir_metadata_snmp_breaker_opens",
                    "Times an exporter's SNMP breaker opened (metadata.snmp.breaker_errors failed polls in a row): it is left alone for a backoff.",
                    &s.breaker_opens,
                ),
                (
                    "weir_metadata_snmp_wanted_dropped",
                    "Interfaces not queued for polling because 65536 already wait (a later flow asks again).",
                    &s.wanted_full,
                ),
            ],
        )?;
        gauges_of(
            e,
            &[
                ("weir_metadata_snmp_wanted", "Interfaces waiting for an SNMP poll.", &s.wanted),
                ("weir_metadata_snmp_breakers_open", "Exporters whose SNMP breaker is open.", &s.breakers_open),
                ("weir_metadata_snmp_in_flight", "SNMP polls in flight.", &s.in_flight),
            ],
        )
    }
}

/// What a shard needs to reach the control plane.
#[derive(Clone)]
pub struct MetadataHandle {
    snapshot: Arc<ArcSwap<Snapshot>>,
    requests: Arc<ArrayQueue<Request>>,
    metrics: Arc<MetadataMetrics>,
    on_missing: OnMissing,
    hash: KeyHash,
    /// The control thread, woken when a request is queued.
    thread: Option<std::thread::Thread>,
}

impl MetadataHandle {
    /// Shard `index`'s side.
    pub fn shard(&self, index: usize) -> ShardMetadata {
        ShardMetadata {
            current: self.snapshot.load_full(),
            handle: self.clone(),
            index,
            asked: HashSet::with_hasher(self.hash),
            counts: [0; 8],
            last: None,
            seen: SeenPairs::default(),
        }
    }
}

/// The control thread; stops when dropped.
pub struct MetadataService {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MetadataService {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Starts the control thread for `config` (checked) and returns it with
/// the handle the shards use.
pub fn start(
    config: &MetadataConfig,
    seed: u64,
    metrics: Arc<MetadataMetrics>,
) -> Result<(MetadataService, MetadataHandle), String> {
    let hash = KeyHash::with_seed(seed);
    let mut resolver = Resolver::new(config, hash);
    let first = resolver.snapshot().unwrap_or_else(|| Snapshot::empty(hash));
    let handle = MetadataHandle {
        snapshot: Arc::new(ArcSwap::from_pointee(first)),
        requests: Arc::new(ArrayQueue::new(config.request_slots())),
        metrics,
        on_missing: config.on_missing,
        hash,
        thread: None,
    };
    publish_gauges(&resolver, &handle.metrics);
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (handle.clone(), stop.clone());
    let config = config.clone();
    let (ready_tx, ready) = crossbeam_channel::bounded::<Result<(), String>>(1);
    let thread = std::thread::Builder::new()
        .name("weir-metadata".into())
        .spawn(move || {
            let mut poller = None;
            if config.uses(MetadataProvider::Snmp) {
                match snmp::Poller::start(&config.snmp, h.metrics.snmp.clone(), std::thread::current()) {
                    Ok(p) => poller = Some(p),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
            }
            let (updates_tx, updates) = crossbeam_channel::bounded::<sources::Update>(config.sources.len().max(1) * 2);
            let current = std::thread::current();
            if let Err(e) =
                sources::start("weir-sources", &config.sources, sources::read_exporters, updates_tx, current)
            {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let mut last_good = sources::LastGood::default();
            let _ = ready_tx.send(Ok(()));
            let mut cache = Cache::new(&config, &h.metrics);
            cache.load(&mut resolver);
            for exporter in resolver.take_first_polls() {
                if let Some(p) = &mut poller {
                    p.want(&exporter, 0);
                }
            }
            let mut last_snapshot = Instant::now() - SNAPSHOT_SPACING;
            while !s.load(Relaxed) {
                resolver.set_now(unix_now());
                let mut resolved = 0;
                while let Some(r) = h.requests.pop() {
                    if resolver.resolve(&r.exporter, r.if_index).poll {
                        if let Some(p) = &mut poller {
                            p.want(&r.exporter, r.if_index);
                        }
                    }
                    resolved += 1;
                }
                if resolved > 0 {
                    h.metrics.requests_resolved.fetch_add(resolved, Relaxed);
                }
                let mut remote_changed = false;
                while let Ok(update) = updates.try_recv() {
                    remote_changed |= take_update(&config, &h.metrics, &mut last_good, update);
                }
                if remote_changed {
                    for (exporter, if_index) in resolver.set_remote(&last_good.all()) {
                        if let Some(p) = &mut poller {
                            p.want(&exporter, if_index);
                        }
                    }
                }
                if let (Some(swept), Some(p)) = (cache.sweep(&mut resolver), &mut poller) {
                    for exporter in &swept.forgotten {
                        p.forget(exporter);
                    }
                    for (exporter, if_index) in &swept.refresh {
                        p.want(exporter, *if_index);
                    }
                }
                let mut wake = cache.next_wake().min(IDLE);
                if let Some(p) = &mut poller {
                    p.collect(&mut resolver);
                    p.dispatch();
                    wake = p.next_wake().map_or(wake, |w| w.min(wake));
                }
                // At most one snapshot per SNAPSHOT_SPACING: each copies
                // the whole index, and answers may come by the hundred.
                let since = last_snapshot.elapsed();
                if since < SNAPSHOT_SPACING {
                    wake = wake.min(SNAPSHOT_SPACING - since);
                } else if let Some(snapshot) = resolver.snapshot() {
                    h.snapshot.store(Arc::new(snapshot));
                    h.metrics.snapshots.fetch_add(1, Relaxed);
                    last_snapshot = Instant::now();
                }
                publish_gauges(&resolver, &h.metrics);
                for e in resolver.take_rule_errors() {
                    warn!("metadata.{}_classifiers[{}] failed: {}", e.kind.label(), e.index, e.message);
                }
                cache.save_if_due(&resolver);
                if h.requests.is_empty() {
                    std::thread::park_timeout(wake);
                }
            }
            cache.save(&resolver);
        })
        .map_err(|e| format!("cannot start the metadata thread: {e}"))?;
    ready.recv().map_err(|_| "the metadata thread stopped at start".to_string())??;
    let handle = MetadataHandle { thread: Some(thread.thread().clone()), ..handle };
    Ok((MetadataService { stop, thread: Some(thread) }, handle))
}

/// Counts and logs a source's fetch; whether its entries changed.
fn take_update(
    config: &MetadataConfig,
    metrics: &MetadataMetrics,
    last_good: &mut sources::LastGood,
    update: sources::Update,
) -> bool {
    let (Some(source), Some(m)) = (config.sources.get(update.source), metrics.sources.get(update.source)) else {
        return false;
    };
    match update.result {
        Ok(read) => {
            m.fetches[0].fetch_add(1, Relaxed);
            m.entries.store(read.exporters.len() as u64, Relaxed);
            m.invalid.fetch_add(read.invalid as u64, Relaxed);
            if read.invalid > 0 {
                warn!(
                    "metadata source {}: {} entries skipped, e.g. {}",
                    source.name,
                    read.invalid,
                    read.reasons.join("; ")
                );
            }
            last_good.set(update.source, read.exporters)
        }
        Err(e) => {
            m.fetches[1].fetch_add(1, Relaxed);
            warn!("metadata source {}: {e} (its last good entries stay)", source.name);
            false
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The cache's timers on the control thread: the sweep (expiry and
/// refresh) and the cache file.
struct Cache<'a> {
    config: &'a MetadataConfig,
    metrics: &'a MetadataMetrics,
    next_sweep: Instant,
    next_save: Instant,
}

impl<'a> Cache<'a> {
    fn new(config: &'a MetadataConfig, metrics: &'a MetadataMetrics) -> Cache<'a> {
        let now = Instant::now();
        Cache {
            config,
            metrics,
            next_sweep: now + Duration::from_secs(config.cache_check_interval_s),
            next_save: now + Duration::from_secs(config.cache_save_interval_s),
        }
    }

    /// Loads the cache file, if there is one (a missing file is a first
    /// start; a bad one is logged and left for the next save to replace).
    fn load(&self, resolver: &mut Resolver) {
        let Some(path) = &self.config.cache_file else { return };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                warn!("metadata cache {}: {e}", path.display());
                return;
            }
        };
        resolver.set_now(unix_now());
        let loaded =
            serde_json::from_slice::<CacheFile>(&text).map_err(|e| e.to_string()).and_then(|f| resolver.load(&f));
        match loaded {
            Ok(n) => {
                self.metrics.cache_loaded.store(n as u64, Relaxed);
                info!("metadata cache {}: {n} polled answers loaded", path.display());
            }
            Err(e) => warn!("metadata cache {}: not loaded: {e}", path.display()),
        }
    }

    /// Expiry and refresh, when due.
    fn sweep(&mut self, resolver: &mut Resolver) -> Option<Swept> {
        let now = Instant::now();
        if now < self.next_sweep {
            return None;
        }
        self.next_sweep = now + Duration::from_secs(self.config.cache_check_interval_s);
        let swept = resolver.sweep(unix_now(), self.config.cache_expiry_s, self.config.cache_refresh_s);
        self.metrics.cache_expired.fetch_add(swept.expired as u64, Relaxed);
        self.metrics.cache_refreshes.fetch_add(swept.refresh.len() as u64, Relaxed);
        Some(swept)
    }

    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        self.next_sweep.min(self.next_save).saturating_duration_since(now)
    }

    fn save_if_due(&mut self, resolver: &Resolver) {
        let now = Instant::now();
        if now >= self.next_save {
            self.next_save = now + Duration::from_secs(self.config.cache_save_interval_s);
            self.save(resolver);
        }
    }

    fn save(&self, resolver: &Resolver) {
        let Some(path) = &self.config.cache_file else { return };
        let ok = serde_json::to_vec(&resolver.cache_file()).is_ok_and(|bytes| save_atomically(path, &bytes));
        self.metrics.cache_saves[usize::from(!ok)].fetch_add(1, Relaxed);
    }
}

fn publish_gauges(resolver: &Resolver, metrics: &MetadataMetrics) {
    let (exporters, interfaces) = resolver.records();
    metrics.exporters.store(resolver.exporters() as u64, Relaxed);
    metrics.interfaces.store(resolver.interfaces() as u64, Relaxed);
    metrics.exporter_records.store(exporters as u64, Relaxed);
    metrics.interface_records.store(interfaces as u64, Relaxed);
    metrics.cache_refused.store(resolver.refused, Relaxed);
    for (&(kind, rule), &n) in &resolver.classifier_errors {
        let at = match kind {
            RuleKind::Exporter => rule,
            RuleKind::Interface => metrics.exporter_rules + rule,
        };
        if let Some(a) = metrics.classifier_errors.get(at) {
            a.store(n, Relaxed);
        }
    }
}

/// A shard's view: the snapshot it reads, what it asked for since, and its
/// counters (published on `tick`).
pub struct ShardMetadata {
    handle: MetadataHandle,
    current: Arc<Snapshot>,
    index: usize,
    asked: HashSet<(Addr, u32), KeyHash>,
    counts: [u64; 8],
    /// The last exporter looked up and its place in the current snapshot.
    last: Option<(Addr, u32)>,
    /// The (exporter, ifIndex) pairs of the current snapshot met so far.
    seen: SeenPairs,
}

impl ShardMetadata {
    /// Whether each flow must be looked up as it comes (`keep`): only to
    /// drop it, with `on_missing = "drop"` or once a classifier rejected
    /// something. Otherwise the records are found when the batch is
    /// written, a run of rows at a time (`resolve`).
    #[inline]
    pub fn checks_each_flow(&self) -> bool {
        self.handle.on_missing == OnMissing::Drop || self.current.rejects
    }

    /// Notes `flow` (when not `checks_each_flow`): what the snapshot lacks
    /// is asked for at once, so that the answer is in the snapshot the
    /// batch's records are found in. A flow of a known exporter through
    /// known interfaces costs two probes of a small filter, not a lookup.
    #[inline]
    pub fn note(&mut self, flow: &FlowRecord) {
        let exporter = flow.exporter_address;
        let place = match self.last {
            Some((a, i)) if a == exporter => i,
            _ => match self.current.exporter_index(&exporter) {
                Some(i) => {
                    self.last = Some((exporter, i));
                    i
                }
                None => return self.note_missing(&exporter, &[flow.in_if_index, flow.out_if_index]),
            },
        };
        let index = |field: Field, value: u32| if flow.has(field) { value } else { 0 };
        for if_index in [index(Field::InIfIndex, flow.in_if_index), index(Field::OutIfIndex, flow.out_if_index)] {
            if if_index != 0 && !self.seen.holds(&self.current, place, if_index) {
                self.note_missing(&exporter, &[if_index]);
            }
        }
    }

    #[cold]
    fn note_missing(&mut self, exporter: &Addr, if_indexes: &[u32]) {
        for &i in if_indexes {
            self.ask(*exporter, i);
        }
    }

    /// Whether to store `flow` (when `checks_each_flow`). A dropped flow
    /// is counted here (and what it missed asked for); a kept one when
    /// its batch is written. Never waits.
    #[inline]
    pub fn keep(&mut self, flow: &FlowRecord) -> bool {
        let exporter = flow.exporter_address;
        let index = |field: Field, value: u32| if flow.has(field) { value } else { 0 };
        let (in_if, out_if) = (index(Field::InIfIndex, flow.in_if_index), index(Field::OutIfIndex, flow.out_if_index));
        let (_, misses) = self.lookup(&exporter, in_if, out_if);
        if misses.rejected {
            self.counts[7] += 1;
            return false;
        }
        if self.handle.on_missing != OnMissing::Drop || !(misses.any() || misses.pending) {
            return true;
        }
        self.count_misses(&exporter, in_if, out_if, misses, 1);
        self.counts[5] += 1;
        false
    }

    /// The records of `rows` stored rows from `exporter` through `in_if`
    /// and `out_if` (ifIndex 0: none), counted; what the snapshot lacks is
    /// asked for, and the rows keep what is known. Never waits.
    pub fn resolve(&mut self, exporter: &Addr, in_if: u32, out_if: u32, rows: u32) -> Meta {
        let (meta, misses) = self.lookup(exporter, in_if, out_if);
        if misses.any() || misses.pending {
            self.count_misses(exporter, in_if, out_if, misses, rows as u64);
        } else {
            // Rejected after the flows were kept: stored all the same.
            self.counts[0] += rows as u64;
        }
        meta
    }

    #[inline]
    fn lookup(&mut self, exporter: &Addr, in_if: u32, out_if: u32) -> (Meta, Misses) {
        // A datagram's flows share their exporter: its place is kept.
        let at = match self.last {
            Some((a, i)) if a == *exporter => Some(i),
            _ => {
                let i = self.current.exporter_index(exporter);
                self.last = i.map(|i| (*exporter, i));
                i
            }
        };
        match at {
            Some(i) => self.current.lookup_at(i, in_if, out_if),
            None => (Meta::default(), Misses { exporter: true, ..Misses::default() }),
        }
    }

    /// Counts `rows` lookups that missed (or are pending), asking for
    /// what is missing.
    #[cold]
    fn count_misses(&mut self, exporter: &Addr, in_if: u32, out_if: u32, misses: Misses, rows: u64) {
        if misses.exporter {
            self.counts[1] += rows;
            self.ask(*exporter, in_if);
            self.ask(*exporter, out_if);
        } else if misses.any() {
            self.counts[2] += rows;
            for i in [misses.in_if, misses.out_if].into_iter().filter(|&i| i != 0) {
                self.ask(*exporter, i);
            }
        } else {
            self.counts[6] += rows;
        }
    }

    #[cold]
    fn ask(&mut self, exporter: Addr, if_index: u32) {
        if self.asked.len() >= ASKED_MAX || !self.asked.insert((exporter, if_index)) {
            return;
        }
        match self.handle.requests.push(Request { exporter, if_index }) {
            Ok(()) => {
                self.counts[3] += 1;
                if let Some(t) = &self.handle.thread {
                    t.unpark();
                }
            }
            Err(_) => {
                // Asked again by a later flow.
                self.asked.remove(&(exporter, if_index));
                self.counts[4] += 1;
            }
        }
    }

    /// Housekeeping: publishes the counters and takes a newer snapshot if
    /// there is one (returned, for the column writers).
    pub fn tick(&mut self) -> Option<Arc<Snapshot>> {
        if let Some(counters) = self.handle.metrics.shards.get(self.index) {
            for (a, n) in counters.iter().zip(self.counts) {
                a.store(n, Relaxed);
            }
        }
        let latest = self.handle.snapshot.load();
        if Arc::ptr_eq(&latest, &self.current) {
            return None;
        }
        self.current = Arc::clone(&latest);
        self.asked.clear();
        self.last = None;
        self.seen.clear();
        Some(self.current.clone())
    }

    /// The snapshot the shard reads.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::flow::addr_from_v4;

    #[test]
    fn a_miss_is_asked_once_dropped_if_so_configured_and_answered_by_the_next_snapshot() {
        let config = MetadataConfig { on_missing: OnMissing::Drop, ..MetadataConfig::default() };
        let metrics = Arc::new(MetadataMetrics::new(1, &MetadataConfig::default()));
        let (_service, handle) = start(&config, 1, metrics.clone()).unwrap();
        let mut shard = handle.shard(0);
        let mut flow = FlowRecord::default();
        flow.set_exporter_address(addr_from_v4([192, 0, 2, 1]));
        flow.set_in_if_index(5);
        assert!(shard.checks_each_flow(), "on_missing = drop: each flow is checked");
        assert!(!shard.keep(&flow), "unknown exporter: dropped");
        assert!(!shard.keep(&flow));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let snapshot = loop {
            if let Some(s) = shard.tick() {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "no snapshot came");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(shard.keep(&flow), "known now");
        let meta = shard.resolve(&flow.exporter_address, 5, 0, 1);
        assert_eq!(snapshot.exporter(meta.exporter).name, "192.0.2.1");
        shard.tick();
        // (exporter, 5) and (exporter, 0) asked once each, though missed twice.
        let counted: Vec<u64> = (0..8).map(|i| metrics.sum(i)).collect();
        assert_eq!(counted, [1, 2, 0, 2, 0, 2, 0, 0]);
        // The second request may be resolved after the first snapshot.
        while metrics.requests_resolved.load(Relaxed) < 2 {
            assert!(std::time::Instant::now() < deadline, "a request was not resolved");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(metrics.requests_resolved.load(Relaxed), 2);
        assert!(metrics.snapshots.load(Relaxed) >= 1);
    }
}
