//! Enrichment's control plane: the thread that answers the shards'
//! metadata misses from the providers and publishes snapshots, and the
//! shard's side of it (`ShardMetadata`).
//!
//! ```text
//!  shard k: lookup in its Arc<Snapshot> ── hit ─▶ Meta (3 record ids) ─▶ columns
//!              │ miss: counted, asked once per snapshot
//!              ▼
//!  requests (bounded ArrayQueue; full: the request is dropped, counted, asked again later)
//!              ▼
//!  "weir-metadata" thread: Resolver (providers: static) ─▶ ArcSwap<Snapshot> ─▶ shards
//! ```
//!
//! A shard never waits: a miss stores the flow with what is known (or
//! drops it, counted, with `metadata.on_missing = "drop"`) and picks up the
//! answer with the next snapshot, which it loads on its housekeeping tick.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use prometheus_client::encoding::DescriptorEncoder;
use weir_core::config::{MetadataConfig, OnMissing};
use weir_core::enrich::metadata::{Meta, Misses, Resolver, Snapshot};
use weir_core::flow::Addr;
use weir_core::wire::state::KeyHash;
use weir_core::{Field, FlowRecord};

use crate::ops::exposition::{counter_by, counters_of, gauges_of, Exported};

/// The control thread sleeps until a shard asks (it is unparked), or this
/// long.
const IDLE: Duration = Duration::from_secs(1);
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
    /// requests queued, requests dropped (queue full), flows dropped.
    shards: Vec<[AtomicU64; 6]>,
    snapshots: AtomicU64,
    requests_resolved: AtomicU64,
    exporters: AtomicU64,
    interfaces: AtomicU64,
    exporter_records: AtomicU64,
    interface_records: AtomicU64,
}

impl MetadataMetrics {
    pub fn new(shards: usize) -> MetadataMetrics {
        MetadataMetrics { shards: (0..shards).map(|_| Default::default()).collect(), ..Default::default() }
    }

    fn sum(&self, i: usize) -> u64 {
        self.shards.iter().map(|s| s[i].load(Relaxed)).sum()
    }
}

impl Exported for MetadataMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let lookups = [("hit", self.sum(0)), ("exporter_missing", self.sum(1)), ("interface_missing", self.sum(2))];
        let help = "Metadata lookups by the shards, by result (a miss stores the flow with what is known and asks the control plane).";
        counter_by(e, "weir_metadata_lookups", help, "result", &lookups)?;
        let requests = [("queued", self.sum(3)), ("queue_full", self.sum(4))];
        let help = "Misses the shards asked the control plane to resolve, by outcome (queue_full: dropped, asked again by a later flow).";
        counter_by(e, "weir_metadata_requests", help, "result", &requests)?;
        let dropped = [("metadata_missing", self.sum(5))];
        let help = "Flows dropped by enrichment, by reason (metadata_missing: metadata.on_missing = \"drop\").";
        counter_by(e, "weir_metadata_flows_dropped", help, "reason", &dropped)?;
        counters_of(
            e,
            &[
                ("weir_metadata_snapshots", "Metadata snapshots published to the shards.", &self.snapshots),
                (
                    "weir_metadata_requests_resolved",
                    "Shard requests the control plane answered.",
                    &self.requests_resolved,
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
            counts: [0; 6],
            last: None,
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
    let thread = std::thread::Builder::new()
        .name("weir-metadata".into())
        .spawn(move || {
            while !s.load(Relaxed) {
                let mut resolved = 0;
                while let Some(r) = h.requests.pop() {
                    resolver.resolve(&r.exporter, r.if_index);
                    resolved += 1;
                }
                if resolved > 0 {
                    h.metrics.requests_resolved.fetch_add(resolved, Relaxed);
                }
                if let Some(snapshot) = resolver.snapshot() {
                    h.snapshot.store(Arc::new(snapshot));
                    h.metrics.snapshots.fetch_add(1, Relaxed);
                    publish_gauges(&resolver, &h.metrics);
                }
                if h.requests.is_empty() {
                    std::thread::park_timeout(IDLE);
                }
            }
        })
        .map_err(|e| format!("cannot start the metadata thread: {e}"))?;
    let handle = MetadataHandle { thread: Some(thread.thread().clone()), ..handle };
    Ok((MetadataService { stop, thread: Some(thread) }, handle))
}

fn publish_gauges(resolver: &Resolver, metrics: &MetadataMetrics) {
    let (exporters, interfaces) = resolver.records();
    metrics.exporters.store(resolver.exporters() as u64, Relaxed);
    metrics.interfaces.store(resolver.interfaces() as u64, Relaxed);
    metrics.exporter_records.store(exporters as u64, Relaxed);
    metrics.interface_records.store(interfaces as u64, Relaxed);
}

/// A shard's view: the snapshot it reads, what it asked for since, and its
/// counters (published on `tick`).
pub struct ShardMetadata {
    handle: MetadataHandle,
    current: Arc<Snapshot>,
    index: usize,
    asked: HashSet<(Addr, u32), KeyHash>,
    counts: [u64; 6],
    /// The last exporter looked up and its place in the current snapshot.
    last: Option<(Addr, u32)>,
}

impl ShardMetadata {
    /// The records of `flow`; None when it must be dropped (a miss with
    /// `on_missing = "drop"`). Never waits.
    #[inline]
    pub fn lookup(&mut self, flow: &FlowRecord) -> Option<Meta> {
        let exporter = flow.exporter_address;
        let index = |field: Field, value: u32| if flow.has(field) { value } else { 0 };
        let (in_if, out_if) = (index(Field::InIfIndex, flow.in_if_index), index(Field::OutIfIndex, flow.out_if_index));
        // A datagram's flows share their exporter: its place is kept.
        let at = match self.last {
            Some((a, i)) if a == exporter => Some(i),
            _ => {
                let i = self.current.exporter_index(&exporter);
                self.last = i.map(|i| (exporter, i));
                i
            }
        };
        let (meta, misses) = match at {
            Some(i) => self.current.lookup_at(i, in_if, out_if),
            None => (Meta::default(), Misses { exporter: true, ..Misses::default() }),
        };
        if !misses.any() {
            self.counts[0] += 1;
            return Some(meta);
        }
        if misses.exporter {
            self.counts[1] += 1;
            self.ask(exporter, in_if);
            self.ask(exporter, out_if);
        } else {
            self.counts[2] += 1;
            for i in [misses.in_if, misses.out_if].into_iter().filter(|&i| i != 0) {
                self.ask(exporter, i);
            }
        }
        if self.handle.on_missing == OnMissing::Drop {
            self.counts[5] += 1;
            return None;
        }
        Some(meta)
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
        let metrics = Arc::new(MetadataMetrics::new(1));
        let (_service, handle) = start(&config, 1, metrics.clone()).unwrap();
        let mut shard = handle.shard(0);
        let mut flow = FlowRecord::default();
        flow.set_exporter_address(addr_from_v4([192, 0, 2, 1]));
        flow.set_in_if_index(5);
        assert!(shard.lookup(&flow).is_none(), "unknown exporter: dropped");
        assert!(shard.lookup(&flow).is_none());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let snapshot = loop {
            if let Some(s) = shard.tick() {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "no snapshot came");
            std::thread::sleep(Duration::from_millis(5));
        };
        let meta = shard.lookup(&flow).expect("known now");
        assert_eq!(snapshot.exporter(meta.exporter).name, "192.0.2.1");
        shard.tick();
        // (exporter, 5) and (exporter, 0) asked once each, though missed twice.
        let counted: Vec<u64> = (0..6).map(|i| metrics.sum(i)).collect();
        assert_eq!(counted, [1, 2, 0, 2, 0, 2]);
        assert_eq!(metrics.requests_resolved.load(Relaxed), 2);
        assert!(metrics.snapshots.load(Relaxed) >= 1);
    }
}
