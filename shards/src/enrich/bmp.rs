//! The BMP server and the routing table's thread (enrichment, part 3).
//!
//! - "weir-bmp" accepts routers' TCP connections on `bmp.listen`: from
//!   `bmp.allowed` subnets only, `bmp.connections_max` at once (others are
//!   closed at once, counted).
//! - One "weir-bmp-session" thread per connection frames the stream by
//!   the BMP common header and decodes each message
//!   (`weir_core::enrich::bmp::Session`). A message that does not parse is
//!   counted and skipped; a header that breaks the framing (version,
//!   length) or a first message that is not an Initiation closes the
//!   connection, counted. Events go to the routing table through a queue
//!   of `bmp.queue`: when it is full the session stops reading, and TCP
//!   pushes back on the router.
//! - "weir-rib" owns the table (`weir_core::enrich::rib::Rib`): it applies
//!   the events, keeps the routes of a peer that went down (Peer Down, or
//!   its session closed) for `bmp.keep_s`, then removes them 10 000
//!   prefixes at a time between events, and publishes a snapshot for the
//!   shards (`Routes`, through `ArcSwap`) at most every
//!   `bmp.publish_interval_ms`: the messages' changes as they come, a
//!   removal's once its pass ends. A shard takes the newest on its tick
//!   and never waits on any of it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tracing::{info, warn};
use weir_core::config::BmpConfig;
use weir_core::enrich::bmp::{header, BmpError, Event, Filters, MessageType, Session, HEADER_LEN};
use weir_core::enrich::metadata::SubnetMap;
use weir_core::enrich::rib::{Rib, Routes};
use weir_core::flow::{addr_from_ip, addr_to_ip, Addr};

use crate::ops::exposition::{counter, counter_by, counter_f64, gauges_of, Exported};

/// Prefixes visited per removal step of a peer's expired routes.
const REMOVAL_STEP: usize = 10_000;

/// The BMP server's and the routing table's counters.
#[derive(Debug, Default)]
pub struct BmpMetrics {
    /// Connections: accepted, closed, refused (not allowed, too many).
    connections: [AtomicU64; 4],
    /// Messages by `MessageType`.
    messages: [AtomicU64; 7],
    /// Errors by `BmpError`.
    errors: [AtomicU64; 6],
    /// NLRI not kept: of other families, filtered, past a limit.
    ignored_nlri: [AtomicU64; 3],
    sessions: AtomicU64,
    peers: AtomicU64,
    peers_down: AtomicU64,
    routes: AtomicU64,
    prefixes: AtomicU64,
    attribute_sets: AtomicU64,
    rib_bytes: AtomicU64,
    snapshot_bytes: AtomicU64,
    removed_routes: AtomicU64,
    add_path_mismatches: AtomicU64,
    publications: AtomicU64,
    publish_micros_total: AtomicU64,
    /// Routes by exporter (the BMP session's address), as of the last publication.
    by_exporter: Mutex<BTreeMap<String, u64>>,
}

impl Exported for BmpMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let c = |i: usize| self.connections[i].load(Relaxed);
        let help = "BMP connections, by event (refused: from outside bmp.allowed, or past bmp.connections_max).";
        counter_by(
            e,
            "weir_bmp_connections",
            help,
            "event",
            &[("accepted", c(0)), ("closed", c(1)), ("refused-subnet", c(2)), ("refused-full", c(3))],
        )?;
        let messages: Vec<(&str, u64)> =
            MessageType::ALL.iter().map(|t| (t.label(), self.messages[*t as usize].load(Relaxed))).collect();
        counter_by(e, "weir_bmp_messages", "BMP messages received, by type.", "type", &messages)?;
        let errors: Vec<(&str, u64)> =
            BmpError::ALL.iter().map(|t| (t.label(), self.errors[*t as usize].load(Relaxed))).collect();
        let help = "BMP messages refused, by reason (version, length, not-initiated: the connection is closed; the others are skipped).";
        counter_by(e, "weir_bmp_errors", help, "reason", &errors)?;
        let help = "NLRI not kept, by reason (family: EVPN, flowspec, multicast...; filter: left out by bmp.rds or bmp.rts; limit: past the routing table's limits).";
        let ignored = |i: usize| self.ignored_nlri[i].load(Relaxed);
        counter_by(
            e,
            "weir_bmp_ignored_nlri",
            help,
            "reason",
            &[("family", ignored(0)), ("filter", ignored(1)), ("limit", ignored(2))],
        )?;
        let help =
            "UPDATEs whose NLRI framed only the other way than the ADD-PATH their Peer Up negotiated (read that way).";
        counter(e, "weir_bmp_add_path_mismatches", help, self.add_path_mismatches.load(Relaxed))?;
        let help = "Routes removed after their peer stayed down for bmp.keep_s.";
        counter(e, "weir_bmp_removed_routes", help, self.removed_routes.load(Relaxed))?;
        let help = "Routes in the routing table by exporter (the BMP session's source address), peers down included.";
        let mut metric = e.encode_descriptor("weir_bmp_exporter_routes", help, None, MetricType::Gauge)?;
        if let Ok(by_exporter) = self.by_exporter.lock() {
            for (exporter, n) in by_exporter.iter() {
                metric.encode_family(&[("exporter", exporter.as_str())])?.encode_gauge(&(*n as i64))?;
            }
        }
        let help = "Routing table snapshots published to the shards.";
        counter(e, "weir_bmp_publications", help, self.publications.load(Relaxed))?;
        let help = "Time spent building routing table snapshots, on the control plane.";
        counter_f64(e, "weir_bmp_publish_seconds", help, self.publish_micros_total.load(Relaxed) as f64 / 1e6)?;
        gauges_of(
            e,
            &[
                ("weir_bmp_sessions", "BMP sessions open.", &self.sessions),
                ("weir_bmp_peers", "BGP peers in the routing table (up, or down and kept).", &self.peers),
                ("weir_bmp_peers_down", "BGP peers down whose routes are kept for bmp.keep_s.", &self.peers_down),
                ("weir_bmp_routes", "Routes in the routing table.", &self.routes),
                ("weir_bmp_prefixes", "Prefixes with at least one route.", &self.prefixes),
                ("weir_bmp_attribute_sets", "Distinct route attribute sets (interned).", &self.attribute_sets),
                (
                    "weir_bmp_rib_memory_bytes",
                    "Bytes the routing table holds, the routes the shards read included (estimated).",
                    &self.rib_bytes,
                ),
                (
                    "weir_bmp_snapshot_memory_bytes",
                    "Bytes of the shards' longest-prefix index over the routing table.",
                    &self.snapshot_bytes,
                ),
            ],
        )
    }
}

/// What the shards read.
#[derive(Clone)]
pub struct RoutesHandle {
    pub routes: Arc<ArcSwap<Routes>>,
}

/// The server's and the table's threads; they stop when this is dropped.
pub struct BmpService {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for BmpService {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What sessions tell the table.
enum Message {
    Event { session: u32, exporter: Addr, event: Event },
    Closed { session: u32 },
}

/// Binds `config.listen` and starts the threads; None without `listen`.
pub fn start(config: &BmpConfig, metrics: Arc<BmpMetrics>) -> Result<Option<(BmpService, RoutesHandle)>, String> {
    let Some(listen) = &config.listen else { return Ok(None) };
    let listener = TcpListener::bind(listen).map_err(|e| format!("bmp.listen {listen}: {e}"))?;
    listener.set_nonblocking(true).map_err(|e| format!("bmp.listen {listen}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("bmp.listen {listen}: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let routes = Arc::new(ArcSwap::from_pointee(Routes::default()));
    let (tx, rx) = bounded::<Message>(config.queue);
    let allowed = SubnetMap::new(config.allowed.iter().map(|s| (s.as_str(), ())));
    let server = {
        let (stop, metrics, max, filters) = (stop.clone(), metrics.clone(), config.connections_max, config.filters());
        std::thread::Builder::new()
            .name("weir-bmp".into())
            .spawn(move || serve(listener, allowed, max, filters, tx, stop, metrics))
            .map_err(|e| format!("bmp: {e}"))?
    };
    let table = {
        let (stop, routes, keep, interval) =
            (stop.clone(), routes.clone(), config.keep_s, Duration::from_millis(config.publish_interval_ms));
        std::thread::Builder::new()
            .name("weir-rib".into())
            .spawn(move || keep_table(rx, routes, keep, interval, stop, metrics))
            .map_err(|e| format!("bmp: {e}"))?
    };
    info!("BMP on {local}");
    Ok(Some((BmpService { stop, threads: vec![server, table] }, RoutesHandle { routes })))
}

fn serve(
    listener: TcpListener,
    allowed: SubnetMap<()>,
    max: usize,
    filters: Filters,
    tx: Sender<Message>,
    stop: Arc<AtomicBool>,
    metrics: Arc<BmpMetrics>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut sessions: Vec<JoinHandle<()>> = Vec::new();
    let mut next_session = 0u32;
    while !stop.load(Relaxed) {
        sessions.retain(|s| !s.is_finished());
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => {
                warn!("bmp: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let exporter = addr_from_ip(peer.ip());
        if allowed.get(&exporter).is_none() {
            metrics.connections[2].fetch_add(1, Relaxed);
            warn!("bmp: connection from {peer} refused: not in bmp.allowed");
            continue;
        }
        if open.load(Relaxed) >= max {
            metrics.connections[3].fetch_add(1, Relaxed);
            warn!("bmp: connection from {peer} refused: bmp.connections_max sessions open");
            continue;
        }
        next_session = next_session.wrapping_add(1);
        let session = next_session;
        open.fetch_add(1, Relaxed);
        metrics.connections[0].fetch_add(1, Relaxed);
        metrics.sessions.fetch_add(1, Relaxed);
        info!("bmp: session {session} from {peer}");
        let ended = {
            let (open, metrics) = (open.clone(), metrics.clone());
            move || {
                open.fetch_sub(1, Relaxed);
                metrics.connections[1].fetch_add(1, Relaxed);
                metrics.sessions.fetch_sub(1, Relaxed);
            }
        };
        let (tx, stop, metrics, filters) = (tx.clone(), stop.clone(), metrics.clone(), filters.clone());
        let spawned = std::thread::Builder::new().name("weir-bmp-session".into()).spawn({
            let ended = ended.clone();
            move || {
                read_session(stream, session, exporter, filters, &tx, &stop, &metrics);
                let _ = tx.send(Message::Closed { session });
                ended();
                info!("bmp: session {session} from {peer} closed");
            }
        });
        match spawned {
            Ok(t) => sessions.push(t),
            Err(e) => {
                // The connection is dropped (closed), counted as such.
                ended();
                warn!("bmp: session {session} from {peer} closed: no thread for it: {e}");
            }
        }
    }
    for s in sessions {
        let _ = s.join();
    }
}

/// Fills `buf` from `stream`; false at the end of the stream, on an error
/// or when stopping.
fn fill(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> bool {
    let mut at = 0;
    while at < buf.len() {
        if stop.load(Relaxed) {
            return false;
        }
        match stream.read(&mut buf[at..]) {
            Ok(0) => return false,
            Ok(n) => at += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(_) => return false,
        }
    }
    true
}

fn read_session(
    mut stream: TcpStream,
    session: u32,
    exporter: Addr,
    filters: Filters,
    tx: &Sender<Message>,
    stop: &AtomicBool,
    metrics: &BmpMetrics,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut state = Session::new(filters);
    let mut message = vec![0u8; HEADER_LEN];
    loop {
        message.truncate(HEADER_LEN);
        if !fill(&mut stream, &mut message, stop) {
            return;
        }
        let len = match header(&message) {
            Ok((_, len)) => len,
            Err(e) => {
                metrics.errors[e as usize].fetch_add(1, Relaxed);
                warn!("bmp: session {session}: {}: closed", e.label());
                return;
            }
        };
        message.resize(len, 0);
        if !fill(&mut stream, &mut message[HEADER_LEN..], stop) {
            return;
        }
        if let Some(kind) = MessageType::ALL.get(usize::from(message[5])) {
            metrics.messages[*kind as usize].fetch_add(1, Relaxed);
        }
        let mismatches = state.add_path_mismatches;
        let decoded = state.decode(&message);
        metrics.add_path_mismatches.fetch_add(state.add_path_mismatches - mismatches, Relaxed);
        let event = match decoded {
            Ok(event) => event,
            Err(e) => {
                metrics.errors[e as usize].fetch_add(1, Relaxed);
                if e.fatal() {
                    warn!("bmp: session {session}: {}: closed", e.label());
                    return;
                }
                continue;
            }
        };
        let end = event == Event::Termination;
        let mut pending = Message::Event { session, exporter, event };
        // A full queue: wait (TCP pushes back), still watching for a stop.
        loop {
            match tx.send_timeout(pending, Duration::from_millis(200)) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(m)) if !stop.load(Relaxed) => pending = m,
                Err(_) => return,
            }
        }
        if end {
            return;
        }
    }
}

fn keep_table(
    rx: Receiver<Message>,
    routes: Arc<ArcSwap<Routes>>,
    keep: u64,
    interval: Duration,
    stop: Arc<AtomicBool>,
    metrics: Arc<BmpMetrics>,
) {
    let started = Instant::now();
    let mut rib = Rib::default();
    let mut published = Instant::now() - interval;
    let mut gauges = (0u64, 0u64, 0u64);
    while !stop.load(Relaxed) {
        let mut applied = false;
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(m) => {
                applied = true;
                apply(&mut rib, m, started.elapsed().as_secs(), &metrics);
                // Whatever else is queued, before publishing.
                for m in rx.try_iter().take(10_000) {
                    apply(&mut rib, m, started.elapsed().as_secs(), &metrics);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let before = rib.routes;
        let removing = rib.remove_expired(started.elapsed().as_secs(), keep, REMOVAL_STEP);
        metrics.removed_routes.fetch_add(before.saturating_sub(rib.routes), Relaxed);
        // Messages' changes every interval; a removal's once its pass ends.
        if (rib.dirty || (rib.removed && !removing)) && published.elapsed() >= interval {
            let at = Instant::now();
            let snapshot = rib.snapshot();
            metrics.snapshot_bytes.store(snapshot.bytes() as u64, Relaxed);
            // The snapshot before last is gone by now (the shards moved to
            // the last one within a tick): give the tables it held back
            // to the system, or a full table's merges leave the heap at
            // twice its size.
            // SAFETY: malloc_trim only releases free memory.
            unsafe { libc::malloc_trim(0) };
            routes.store(Arc::new(snapshot));
            (rib.dirty, rib.removed) = (false, false);
            published = Instant::now();
            metrics.publications.fetch_add(1, Relaxed);
            metrics.publish_micros_total.fetch_add(at.elapsed().as_micros() as u64, Relaxed);
            metrics.prefixes.store(rib.prefixes() as u64, Relaxed);
            metrics.attribute_sets.store(rib.attribute_sets() as u64, Relaxed);
            metrics.rib_bytes.store(rib.bytes() as u64, Relaxed);
        }
        // The gauges, after messages or when the totals moved (the
        // per-exporter map is built anew).
        let peers = rib.peers().count() as u64;
        let down = rib.peers().filter(|p| p.down_since.is_some()).count() as u64;
        if applied || (rib.routes, peers, down) != gauges {
            gauges = (rib.routes, peers, down);
            metrics.routes.store(rib.routes, Relaxed);
            metrics.peers.store(peers, Relaxed);
            metrics.peers_down.store(down, Relaxed);
            let mut by_exporter: BTreeMap<String, u64> = BTreeMap::new();
            for p in rib.peers() {
                *by_exporter.entry(addr_to_ip(&p.exporter).to_string()).or_default() += p.routes;
            }
            if let Ok(mut m) = metrics.by_exporter.lock() {
                *m = by_exporter;
            }
        }
    }
}

fn apply(rib: &mut Rib, m: Message, now: u64, metrics: &BmpMetrics) {
    match m {
        Message::Closed { session } => rib.session_down(session, now),
        Message::Event { session, exporter, event } => {
            let not_kept = rib.apply(session, exporter, event, now);
            for (i, n) in [not_kept.family, not_kept.filtered, not_kept.limit].into_iter().enumerate() {
                metrics.ignored_nlri[i].fetch_add(u64::from(n), Relaxed);
            }
        }
    }
}
