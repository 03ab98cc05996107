//! The shard side (`StoreSink`: a shard's column buffers, handed over as
//! one sorted Native block) and the store writer thread that owns the engine.
//!
//! Bounds: `store.batches_max` buffers exist in all (they come back to the
//! shards on a free list, so a shard waits when the writer is behind); the
//! writer holds at most `store.memory_bytes_max` of chunks, each at most
//! `store.insert_rows_max` rows and `store.insert_bytes_max` bytes (one
//! insert, below ClickHouse's 1 M-row insert block so
//! an insert is all or nothing); beyond that chunks go to the spool, and a
//! full spool drops rows, counted with a reason. An insert runs on a thread
//! of its own while the writer goes on taking batches into the next chunks
//! (up to `store.memory_bytes_max`), so the shards' buffers come back
//! within a batch's copy, not an insert's half second.
//!
//! Order is kept: spool (oldest) ≺ chunks in memory ≺ batches arriving. The
//! spool is replayed before memory, and memory overflows from its oldest end.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, select, Receiver, Sender, TryRecvError};
use tracing::{error, info, warn};
use weir_core::columns::{write_records_block, Columns, RecordsSent, MODERN};
use weir_core::config::{RawStore, SegmentsCompression, StoreConfig, StoreKind};
use weir_core::consolidate::{self, Consolidator};
use weir_core::enrich::flows::FlowEnricher;
use weir_core::enrich::metadata::{Meta, NewRecords};
use weir_core::enrich::networks::Networks;
use weir_core::flow::Addr;
use weir_core::schema::{
    consolidated_insert_sql, insert_sql, records_insert_sql, stored_columns, Column, Dialect, RECORD_TABLES,
};
use weir_core::wire::state::KeyHash;
use weir_core::FlowRecord;

use super::metrics::{StoreDrop, StoreMetrics};
use super::segments::{self, Segments};
use super::spool::{Spool, SpoolRefusal};
use super::{migrate, table_kind, Chunk, Engine, TableKind, HTTP_TABLE, RECORDS_TABLE, TABLES_COUNT};
use crate::enrich::bmp::{BmpService, RoutesHandle};
use crate::enrich::networks::{NetworksHandle, NetworksService, MISSING_EXPORTERS_MAX};
use crate::enrich::{MetadataHandle, MetadataService, ShardMetadata};
use crate::kafka::enriched::{EnrichedOutput, EnrichedShard};
use crate::ops::logging::Limiter;

/// Inserted chunks' buffers kept for reuse: one per table (a round inserts
/// one chunk of each); more only held memory (up to `store.insert_bytes_max` each).
const SPARES_MAX: usize = TABLES_COUNT;
/// Of the spares, those larger than a batch's raw block: enough for the
/// raw chunk being filled while another is inserted. Each keeps its pages
/// (a raw chunk's, 50-160 MB at 0.3-1 M flows/s): with any table's chunk
/// taking any spare, all eleven grew to raw chunks' size over an hour
/// (perf/RESULTS.md, "Memory in the long run"). None with segment files:
/// raw chunks are then rare (a failed append's), and the large chunks are
/// the sums', one per table every consolidation interval; two spares of
/// theirs held about 40 MB between the hand-overs, against about a
/// millisecond of page faults to map new ones (perf/RESULTS.md, "Memory
/// over a quarter hour, again").
const LARGE_SPARES_MAX: usize = 2;
/// Store ids of the records the writer has queued for the records tables,
/// kept to send each once; past this many the set starts again (an id
/// sent twice is harmless: the first row of an id stays).
const RECORDS_SENT_MAX: usize = 1 << 20;
/// Failed inserts are logged once per this interval, with a count.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Connects and migrates, logging what the migration did; the server's
/// dialect says how its Native block headers name the types.
fn open(config: &StoreConfig) -> Result<(Engine, Dialect), String> {
    let mut engine = Engine::connect(config)?;
    let (schema, plan) = migrate(&mut engine, config, false)?;
    for w in &plan.warnings {
        warn!("store: {w}");
    }
    for step in &plan.steps {
        info!("store: migrated: {}", step.why);
    }
    info!("store: {} columns in {}.flows, {} migration steps", schema.columns.len(), schema.database, plan.steps.len());
    if let Engine::Embedded(_) = engine {
        // The shards' sums need no merge at insert (the writer's session).
        engine.execute("SET optimize_on_insert = 0")?;
    }
    if config.raw == RawStore::Segments && config.kind == StoreKind::Embedded {
        engine.execute(&segments::view_sql(&schema, &config.segments_dir))?;
    }
    if let Engine::Embedded(_) = engine {
        let before = rss_file_mib();
        let advised = super::chdb::page_out_library(&config.embedded.library);
        info!(
            "store: the engine's library pages touched at its start given back ({} MiB of mappings; \
             file-backed RSS {before} -> {} MiB)",
            advised >> 20,
            rss_file_mib()
        );
    }
    Ok((engine, schema.dialect))
}

/// The process's resident file pages (`RssFile`), MiB; 0 if unknown.
fn rss_file_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    crate::ops::profile::status_kib(&status, "RssFile:") >> 10
}

/// A batch's buffers: the raw table's Native block, one block per
/// consolidated table (`consolidate::TABLES`), and the metadata records
/// the raw rows point to that their shard has not handed over before.
/// They go back to the shards on the free list, cleared (`recycle`).
#[derive(Default)]
pub struct Blocks {
    pub raw: Vec<u8>,
    /// `raw` compressed into one zstd frame by the shard, for compressed
    /// segment files (`store.segments_compression = "zstd"`); else empty.
    pub raw_frame: Vec<u8>,
    pub consolidated: [Vec<u8>; 3],
    pub records: NewRecords,
    /// HAProxy's requests (`HttpSink`): a Native block for `http_requests`,
    /// and one per rollup table (`httplog::ROLLUP_TABLES`).
    pub http: Vec<u8>,
    pub http_rollups: [Vec<u8>; 3],
}

impl Blocks {
    /// Clears every block for the next batch (the records are cleared as
    /// they are taken). The row blocks (the raw one, HAProxy's requests)
    /// keep their buffers; a block of sums larger than `keep` bytes gives
    /// its buffer back to the allocator. The sums come once per
    /// consolidation interval, each block as large as the keys (about 20 MB
    /// at 137 k keys), and every one of the `store.batches_max` buffers
    /// would otherwise come to hold three of them for good (567 MiB of 41
    /// such buffers after six minutes: perf/RESULTS.md, "Memory in the long
    /// run").
    pub fn recycle(&mut self, keep: usize) {
        self.raw.clear();
        self.raw_frame.clear();
        self.http.clear();
        for block in self.consolidated.iter_mut().chain(self.http_rollups.iter_mut()) {
            if block.capacity() > keep {
                *block = Vec::new();
            } else {
                block.clear();
            }
        }
    }
}

/// A shard's full batch: its flows as one Native block sorted by the raw
/// table's key, and their sums per consolidated table.
pub struct Batch {
    pub rows: u32,
    pub blocks: Blocks,
    pub consolidated_rows: [u32; 3],
    pub http_rows: u32,
    pub http_rollup_rows: [u32; 3],
    /// The sums were handed over before they were due: the map was full.
    pub early: bool,
    /// Rows per kernel receive millisecond, in arrival order (run-length
    /// coded: at most one entry per millisecond the batch was open).
    pub arrivals: Vec<(u64, u32)>,
    /// The shard that handed it over, and the batch's number there (1, 2,
    /// ...): the writer acknowledges batches by it (`Acks`).
    pub shard: u32,
    pub ticket: u64,
}

/// What the writer has taken for good, per shard: the newest batch ticket
/// such that it and every earlier batch of that shard are inserted (or
/// refused by the engine for good, or, unless Kafka-backed, spooled).
/// `weir outlet` stores a partition's offsets by it; `weir run` ignores it.
pub struct Acks {
    acked: Vec<AtomicU64>,
    /// `weir outlet`: Kafka keeps what is not inserted, so the writer
    /// neither spools (memory is bounded by the shards' batches in flight)
    /// nor spools at a stop; the records are read again instead.
    kafka_backed: AtomicBool,
}

impl Acks {
    fn new(shards: usize) -> Acks {
        Acks { acked: (0..shards.max(1)).map(|_| AtomicU64::new(0)).collect(), kafka_backed: AtomicBool::new(false) }
    }

    /// The newest ticket of `shard` the store has taken with all before it.
    pub fn acked(&self, shard: usize) -> u64 {
        self.acked.get(shard).map_or(0, |a| a.load(std::sync::atomic::Ordering::Acquire))
    }
}

/// A shard's batches the writer holds chunks of.
#[derive(Default)]
struct Open {
    /// The newest ticket received.
    received: u64,
    /// Ticket → chunks not yet taken for good that hold its blocks.
    remaining: BTreeMap<u64, u32>,
}

/// The writer's side of `Acks`: per shard, the batches not yet taken for
/// good, and what that makes acknowledged.
struct Ledger {
    acks: Arc<Acks>,
    open: Vec<Open>,
}

impl Ledger {
    /// A shard's batch whose blocks went into `chunks` chunks.
    fn opened(&mut self, (shard, ticket): (u32, u64), chunks: u32) {
        let shard = shard as usize;
        if self.open.len() <= shard {
            self.open.resize_with(shard + 1, Open::default);
        }
        let open = &mut self.open[shard];
        open.received = open.received.max(ticket);
        if chunks > 0 {
            open.remaining.insert(ticket, chunks);
        }
        self.acknowledge(shard);
    }

    /// A chunk is inserted, refused for good, spooled or dropped: its
    /// batches are one chunk nearer to being taken.
    fn settle(&mut self, tickets: &[(u32, u64)]) {
        for &(shard, ticket) in tickets {
            let Some(open) = self.open.get_mut(shard as usize) else { continue };
            if let Some(n) = open.remaining.get_mut(&ticket) {
                *n -= 1;
                if *n == 0 {
                    open.remaining.remove(&ticket);
                }
            }
            self.acknowledge(shard as usize);
        }
    }

    fn acknowledge(&self, shard: usize) {
        let (Some(open), Some(acked)) = (self.open.get(shard), self.acks.acked.get(shard)) else { return };
        let upto = open.remaining.keys().next().map_or(open.received, |oldest| oldest - 1);
        acked.store(upto, std::sync::atomic::Ordering::Release);
    }
}

/// One shard's column buffers and consolidation map (allocated at start,
/// reused).
pub struct StoreSink {
    columns: Columns,
    /// Whether raw blocks are sorted by the table's key (not for segment
    /// files, which no engine sorts).
    sort_raw: bool,
    /// Compresses each raw block into a zstd frame (compressed segment
    /// files): the shards do it, so it scales with them. The plain block
    /// is written into the shard's own buffer, and only the frame goes in
    /// the batch's: each of the `store.batches_max` buffers would
    /// otherwise keep a plain block's pages (2.6 MB at 16 384 rows).
    compressor: Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>,
    consolidator: Consolidator,
    /// Enrichment: the shard's metadata snapshot (none in tests that make
    /// sinks without a collector).
    metadata: Option<ShardMetadata>,
    /// The records this shard has handed over.
    records_sent: RecordsSent,
    /// Networks, AS numbers, masks and sampling rates of each flow.
    enricher: FlowEnricher,
    /// Where the networks table comes from (none in tests that make sinks
    /// without a collector), and this shard's index.
    networks: Option<(NetworksHandle, usize)>,
    /// Where the BGP routes come from (with `bmp.listen`).
    routes: Option<RoutesHandle>,
    /// The enriched output's producer (with `kafka.enriched.topic`).
    enriched: Option<EnrichedShard>,
    /// Flows without a sampling rate, by exporter (the 16 zero bytes:
    /// past `MISSING_EXPORTERS_MAX` exporters), and whether they changed
    /// since they were published.
    rate_missing: std::collections::HashMap<Addr, u64>,
    rate_missing_dirty: bool,
    rows: u32,
    rows_max: u32,
    first_row_at: Instant,
    flush_interval: Duration,
    /// When the consolidation map got its first key since the last
    /// hand-over, and the interval of the wall clock it was in
    /// (`sums_interval`).
    first_key_at: Instant,
    first_key_interval: u64,
    consolidation_interval: Duration,
    flows: u64,
    arrivals: Vec<(u64, u32)>,
    /// This shard's number, batches handed over so far (the last one's
    /// ticket), and the ticket of the last one that carried the sums.
    shard: u32,
    tickets: u64,
    sums_ticket: u64,
    full: Sender<Batch>,
    free: Receiver<Blocks>,
    /// Whether a hand-over waits for a free buffer (`weir run`: the
    /// shard's backpressure) or is put off while none is (`weir outlet`,
    /// whose shard must keep serving its consumer), and the hand-overs
    /// put off so far.
    waits: bool,
    put_off: u64,
    /// Where the waits for a buffer are counted.
    metrics: Arc<StoreMetrics>,
}

impl StoreSink {
    #[inline]
    pub fn flow(&mut self, flow: &FlowRecord) {
        if let Some(m) = &mut self.metadata {
            if !m.checks_each_flow() {
                m.note(flow);
            } else if !m.keep(flow) {
                // Dropped (on_missing = "drop", rejected): no row, no batch opened.
                return;
            }
        }
        if self.rows == 0 {
            self.first_row_at = Instant::now();
        }
        if self.consolidator.is_empty() {
            self.first_key_at = Instant::now();
            self.first_key_interval = sums_interval(self.consolidation_interval);
        }
        let ms = flow.time_received_ns / 1_000_000;
        match self.arrivals.last_mut() {
            Some((at, n)) if *at == ms => *n += 1,
            _ => self.arrivals.push((ms, 1)),
        }
        let enriched = self.enricher.enrich(flow);
        if enriched.rate_missing {
            self.count_rate_missing(&flow.exporter_address);
        }
        let routes = self.enricher.routes();
        let attrs = |route: Option<u32>| route.and_then(|r| routes.attrs(r));
        self.columns.push_enriched(flow, &enriched, [attrs(enriched.src_route), attrs(enriched.dst_route)]);
        let map_full = self.consolidator.add_last_row(&self.columns);
        self.rows += 1;
        self.flows += 1;
        if self.rows >= self.rows_max || map_full {
            self.hand_over(map_full);
        }
    }

    pub fn flows(&self) -> u64 {
        self.flows
    }

    /// Batches handed over so far: the newest batch's ticket (`Acks`).
    pub fn tickets(&self) -> u64 {
        self.tickets
    }

    /// The ticket of the newest batch that carried the sums: once the
    /// writer acknowledges it, every flow taken before that hand-over is
    /// stored, raw and summed.
    pub fn sums_ticket(&self) -> u64 {
        self.sums_ticket
    }

    /// Whether every flow taken so far has been handed over with its sums.
    pub fn is_idle(&self) -> bool {
        self.rows == 0 && self.consolidator.is_empty()
    }

    /// Hand-overs never wait for a buffer: while every buffer is in flight
    /// they are put off, and the rows and sums stay here (past
    /// `batch_rows_max` if flows keep coming: the caller stops taking them
    /// while `holds_back`).
    pub fn never_wait(&mut self) {
        self.waits = false;
    }

    /// A full batch (or consolidation map) waits here for a free buffer.
    pub fn holds_back(&self) -> bool {
        self.rows >= self.rows_max || self.consolidator.at_bound()
    }

    /// Hand-overs put off so far, no buffer being free (`never_wait`).
    pub fn put_off(&self) -> u64 {
        self.put_off
    }

    /// Hands the rows and sums over if a buffer is free; whether
    /// everything taken so far has gone.
    pub fn hand_over_all(&mut self) -> bool {
        self.hand_over(true);
        self.is_idle()
    }

    #[cold]
    fn count_rate_missing(&mut self, exporter: &Addr) {
        let full = self.rate_missing.len() >= MISSING_EXPORTERS_MAX && !self.rate_missing.contains_key(exporter);
        *self.rate_missing.entry(if full { [0; 16] } else { *exporter }).or_default() += 1;
        self.rate_missing_dirty = true;
    }

    /// Publishes the enrichment counters, and takes a newer networks
    /// table: the rows and sums made with the old one are handed over
    /// first (their sets are numbered by it).
    fn tick_networks(&mut self) {
        let Some((handle, index)) = &self.networks else { return };
        handle.metrics.publish(*index, &self.enricher.counts);
        if self.rate_missing_dirty && handle.metrics.publish_missing(*index, &self.rate_missing) {
            self.rate_missing_dirty = false;
        }
        if let Some(routes) = &self.routes {
            // Routes are stored as values (AS numbers, masks): no hand-over.
            let latest = routes.routes.load();
            if !Arc::ptr_eq(&latest, self.enricher.routes()) {
                self.enricher.set_routes(latest.clone());
            }
        }
        let latest = handle.table.load_full();
        if Arc::ptr_eq(&latest, self.enricher.networks()) {
            return;
        }
        self.hand_over(true);
        self.set_networks(latest);
    }

    fn set_networks(&mut self, table: Arc<Networks>) {
        self.columns.set_networks(table.clone());
        self.consolidator.set_networks(table.clone());
        self.enricher.set_networks(table);
        self.records_sent.clear_networks();
    }

    /// Housekeeping: hands the batch over once its first row is old enough,
    /// with the sums once the wall clock's interval of their first key has
    /// ended (`sums_interval`).
    pub fn tick(&mut self) {
        if let Some(snapshot) = self.metadata.as_mut().and_then(|m| m.tick()) {
            self.columns.set_snapshot(snapshot.clone());
            self.consolidator.set_snapshot(snapshot);
        }
        self.tick_networks();
        // Due once the wall clock enters the next interval (every shard's
        // sums of a minute go together, and a minute's keys fill the map
        // alone), or a whole interval after the first key if the clock
        // stepped back.
        let sums_due = !self.consolidator.is_empty()
            && (sums_interval(self.consolidation_interval) != self.first_key_interval
                || self.first_key_at.elapsed() >= self.consolidation_interval);
        if sums_due || (self.rows > 0 && self.first_row_at.elapsed() >= self.flush_interval) {
            self.hand_over(sums_due);
        }
    }

    /// Shutdown: everything goes (waiting for buffers even after
    /// `never_wait`).
    pub fn flush(&mut self) {
        self.waits = true;
        self.hand_over(true);
        if let Some(enriched) = &mut self.enriched {
            enriched.flush();
        }
        if let Some((handle, index)) = &self.networks {
            handle.metrics.publish(*index, &self.enricher.counts);
            handle.metrics.publish_missing(*index, &self.rate_missing);
        }
    }

    /// Hands the raw rows over, and the sums too when `sums`.
    fn hand_over(&mut self, sums: bool) {
        if self.rows == 0 && (!sums || self.consolidator.is_empty()) {
            return;
        }
        // Waits when every buffer is in flight: backpressure by design,
        // counted (unless `never_wait`: put off until a tick finds one free).
        let free = match free_buffer(&self.free, false) {
            Err(TryRecvError::Empty) if self.waits => {
                let started = Instant::now();
                let free = free_buffer(&self.free, true);
                self.metrics.buffer_waits.fetch_add(1, Relaxed);
                self.metrics.buffer_wait_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                free
            }
            free => free,
        };
        let mut blocks = match free {
            Ok(blocks) => blocks,
            Err(TryRecvError::Empty) => {
                self.put_off += 1;
                return;
            }
            // The writer is gone (a stop): nothing takes rows any more.
            Err(TryRecvError::Disconnected) => return,
        };
        if self.rows > 0 {
            // The rows' records, a run of rows at a time.
            let mut none = |_: &Addr, _, _, _| Meta::default();
            let resolve: &mut dyn FnMut(&Addr, u32, u32, u32) -> Meta = match &mut self.metadata {
                Some(m) => &mut |exporter, in_if, out_if, rows| m.resolve(exporter, in_if, out_if, rows),
                None => &mut none,
            };
            match &mut self.compressor {
                Some((compressor, plain)) => {
                    plain.clear();
                    self.columns.write_block_resolved(self.sort_raw, &MODERN, plain, resolve);
                    if segments::compress(compressor, plain, &mut blocks.raw_frame).is_err() {
                        // The writer compresses the plain block instead.
                        blocks.raw_frame.clear();
                        std::mem::swap(plain, &mut blocks.raw);
                    }
                }
                None => _ = self.columns.write_block_resolved(self.sort_raw, &MODERN, &mut blocks.raw, resolve),
            }
            self.columns.new_records(&mut self.records_sent, &mut blocks.records);
            if let Some(enriched) = &mut self.enriched {
                enriched.rows(&self.columns);
            }
            self.columns.clear();
        }
        let mut consolidated_rows = [0; 3];
        let mut early = false;
        if sums {
            early = self.consolidator.at_bound() && self.first_key_at.elapsed() < self.consolidation_interval;
            consolidated_rows = self.consolidator.write_blocks(&MODERN, &mut blocks.consolidated).map(|n| n as u32);
        }
        let arrivals = std::mem::take(&mut self.arrivals);
        self.tickets += 1;
        if sums {
            self.sums_ticket = self.tickets;
        }
        let (shard, ticket) = (self.shard, self.tickets);
        let _ = self.full.send(Batch {
            rows: self.rows,
            blocks,
            consolidated_rows,
            http_rows: 0,
            http_rollup_rows: [0; 3],
            early,
            arrivals,
            shard,
            ticket,
        });
        self.rows = 0;
    }
}

/// A free batch buffer: waited for (`wait`), or none now (`Empty`).
pub(super) fn free_buffer(free: &Receiver<Blocks>, wait: bool) -> Result<Blocks, TryRecvError> {
    if wait {
        free.recv().map_err(|_| TryRecvError::Disconnected)
    } else {
        free.try_recv()
    }
}

/// A query from `/query` (or another control-plane thread) for the engine.
pub struct QueryRequest {
    pub sql: String,
    pub format: String,
    /// Whether the statement may change the store (`http.query_writes`).
    pub writes: bool,
    pub reply: Sender<Result<Vec<u8>, String>>,
}

/// The writer thread and the channels that reach it.
pub struct StoreWriter {
    full: Sender<Batch>,
    free: Receiver<Blocks>,
    queries: Sender<QueryRequest>,
    columns: Vec<Column>,
    rows_max: u32,
    keys_max: usize,
    /// The consolidation maps' hasher seed (random per run).
    seed: u64,
    flush_interval: Duration,
    consolidation_interval: Duration,
    raw: RawStore,
    segments_compression: SegmentsCompression,
    thread: JoinHandle<()>,
    /// Enrichment's control threads and the shards' way to them.
    metadata: Option<(MetadataService, MetadataHandle)>,
    networks: Option<(NetworksService, NetworksHandle)>,
    routes: Option<(BmpService, RoutesHandle)>,
    /// The enriched output (with `kafka.enriched.topic`).
    enriched: Option<EnrichedOutput>,
    batches_per_shard: usize,
    /// Sinks made so far (the next one is that shard's).
    sinks: std::sync::atomic::AtomicUsize,
    acks: Arc<Acks>,
    metrics: Arc<StoreMetrics>,
    /// HAProxy's requests' table (`haproxy.store`).
    http: Option<weir_core::httplog::HttpTable>,
}

impl StoreWriter {
    /// Starts the writer. It connects and migrates on its own thread, and
    /// again after a failure, so a store that is down (or an embedded path
    /// still locked by the instance being replaced) delays inserts, not the
    /// start: batches wait in memory and in the spool meanwhile.
    /// `shards` sizes the batch buffers when `store.batches_max` is 0.
    pub fn start(config: &StoreConfig, shards: usize, metrics: Arc<StoreMetrics>) -> Result<Self, String> {
        let columns = stored_columns(&config.schema_settings());
        let names: Vec<&str> = columns.iter().filter(|c| c.stored()).map(|c| c.name).collect();
        let spool = Spool::open(&config.spool_dir, config.spool_bytes_max)?;
        let segments = match config.raw {
            RawStore::Segments => {
                Some(Segments::open(&config.segments_dir, config.segments_hours, config.segments_compression)?)
            }
            RawStore::Table => None,
        };
        if !spool.is_empty() {
            info!("store: {} spooled chunks ({} rows) will be replayed first", spool.chunks(), spool.rows());
        }
        // Two more buffers for HAProxy's log shard (`HttpSink`), whose
        // hand-overs never wait for one.
        let batches = config.batches(shards) + if config.http.is_some() { 2 } else { 0 };
        let (full, full_rx) = bounded::<Batch>(batches);
        let (free_tx, free) = bounded::<Blocks>(batches);
        // Sized for a batch of typical rows; a buffer grows once if rows are wider.
        let typical = config.batch_rows_max * 128;
        for _ in 0..batches {
            let _ = free_tx.send(Blocks { raw: Vec::with_capacity(typical), ..Blocks::default() });
        }
        let dims: Vec<&str> = columns.iter().filter(|c| c.consolidated).map(|c| c.name).collect();
        let mut insert_sqls = vec![insert_sql(&config.database, &names)];
        insert_sqls.extend(consolidate::TABLES.map(|(_, t)| consolidated_insert_sql(&config.database, t, &dims)));
        insert_sqls.extend((0..RECORD_TABLES.len()).map(|t| records_insert_sql(&config.database, t)));
        if let Some(http) = &config.http {
            insert_sqls.push(http.insert_sql(&config.database));
            insert_sqls.extend((0..3).map(|i| http.insert_rollup_sql(i, &config.database)));
        }
        let (queries, query_rx) = bounded::<QueryRequest>(16);
        let backoff_min = Duration::from_millis(config.retry_backoff_min_ms);
        let acks = Arc::new(Acks::new(shards));
        let writer = Writer {
            ledger: Ledger { acks: acks.clone(), open: Vec::new() },
            engine: None,
            dialect: MODERN,
            config: config.clone(),
            insert_sqls,
            records_sent: HashSet::new(),
            records_block: Vec::new(),
            pending: VecDeque::new(),
            pending_bytes: 0,
            spares: Vec::new(),
            block_keep: typical,
            spool,
            segments,
            backoff: backoff_min,
            backoff_min,
            backoff_max: Duration::from_millis(config.retry_backoff_max_ms),
            next_attempt: Instant::now(),
            next_insert: Instant::now(),
            insert_interval: Duration::from_millis(config.insert_interval_ms),
            memory_bytes_max: config.memory_bytes_max,
            failure_logs: Limiter::per_window(1, LOG_INTERVAL),
            up: true,
            metrics: metrics.clone(),
        };
        writer.publish();
        let thread = std::thread::Builder::new()
            .name("weir-store".into())
            .spawn(move || writer.run(full_rx, free_tx, query_rx))
            .map_err(|e| format!("cannot start the store writer: {e}"))?;
        Ok(StoreWriter {
            full,
            free,
            queries,
            columns,
            rows_max: config.batch_rows_max as u32,
            keys_max: config.consolidation_keys_max,
            seed: std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 0u64),
            flush_interval: Duration::from_millis(config.flush_interval_ms),
            consolidation_interval: config.consolidation_interval(),
            raw: config.raw,
            segments_compression: config.segments_compression,
            thread,
            metadata: None,
            networks: None,
            routes: None,
            enriched: None,
            sinks: Default::default(),
            acks,
            metrics,
            http: config.http.clone(),
            batches_per_shard: (config.batches(shards) / shards.max(1)).max(1),
        })
    }

    /// A shard's share of the batch buffers: a shard with this many
    /// batches in the writer waits for a buffer (`weir outlet` pauses its
    /// partitions before, and its sinks never wait: `StoreSink::never_wait`).
    pub fn batches_per_shard(&self) -> usize {
        self.batches_per_shard
    }

    /// HAProxy's log shard's way to `http_requests` (with `haproxy.store`).
    pub fn http_sink(&self, rows_max: usize, flush_interval: Duration) -> Option<super::http::HttpSink> {
        let table = self.http.clone()?;
        Some(super::http::HttpSink::new(table, rows_max, flush_interval, self.full.clone(), self.free.clone()))
    }

    /// The writer's acknowledgements of the shards' batches.
    pub fn acks(&self) -> Arc<Acks> {
        self.acks.clone()
    }

    /// `weir outlet`: what is not inserted stays in Kafka, so nothing is
    /// spooled (set before the shards start).
    pub fn set_kafka_backed(&self) {
        self.acks.kafka_backed.store(true, Relaxed);
    }

    /// Shards look their flows' metadata up through `handle` (set before
    /// the first `sink`); `service` stops with the writer.
    pub fn set_metadata(&mut self, service: MetadataService, handle: MetadataHandle) {
        self.metadata = Some((service, handle));
    }

    /// Shards complete their flows (networks, AS numbers, masks, sampling
    /// rates) through `handle` (set before the first `sink`); `service`
    /// stops with the writer.
    pub fn set_networks(&mut self, service: NetworksService, handle: NetworksHandle) {
        self.networks = Some((service, handle));
    }

    /// Shards look flows up in the BGP routes `handle` publishes (set
    /// before the first `sink`); `service` stops with the writer.
    pub fn set_routes(&mut self, service: BmpService, handle: RoutesHandle) {
        self.routes = Some((service, handle));
    }

    /// Shards produce the flows they hand over to `output` too (set
    /// before the first `sink`).
    pub fn set_enriched(&mut self, output: EnrichedOutput) {
        self.enriched = Some(output);
    }

    /// The columns the shards write (the schema of the enriched output).
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// A batch buffer for one shard (the shards' order: 0, 1, ...).
    pub fn sink(&self) -> StoreSink {
        let index = self.sinks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let metadata = self.metadata.as_ref().map(|(_, h)| h.shard(index));
        let mut columns = Columns::new(&self.columns, self.rows_max as usize);
        let mut consolidator = Consolidator::new(&self.columns, self.keys_max, KeyHash::with_seed(self.seed));
        if let Some(m) = &metadata {
            columns.set_snapshot(m.current());
            consolidator.set_snapshot(m.current());
        }
        let networks = self.networks.as_ref().map(|(_, h)| (h.clone(), index));
        let mut enricher = match &networks {
            Some((h, _)) => FlowEnricher::new(&h.enrichment, h.lookups),
            None => FlowEnricher::new(&Default::default(), false),
        };
        if let Some((h, _)) = &networks {
            let table = h.table.load_full();
            columns.set_networks(table.clone());
            consolidator.set_networks(table.clone());
            enricher.set_networks(table);
        }
        let routes = self.routes.as_ref().map(|(_, h)| h.clone());
        if let Some(h) = &routes {
            enricher.set_routes(h.routes.load_full());
            if columns.wants_routes() {
                enricher.look_up_routes();
            }
        }
        let enriched = self.enriched.as_ref().and_then(|output| match output.shard(index) {
            Ok(shard) => Some(shard),
            Err(e) => {
                // The same settings made a producer at start: not expected.
                tracing::error!(shard = index, "no enriched output from this shard: {e}");
                None
            }
        });
        let compress = self.raw == RawStore::Segments && self.segments_compression == SegmentsCompression::Zstd;
        // Level 1 makes a context every run of zstd uses: not expected to fail.
        let compressor = compress.then(|| segments::compressor().ok()).flatten().map(|c| (c, Vec::new()));
        StoreSink {
            enriched,
            columns,
            sort_raw: self.raw == RawStore::Table,
            compressor,
            consolidator,
            metadata,
            records_sent: RecordsSent::default(),
            enricher,
            networks,
            routes,
            rate_missing: Default::default(),
            rate_missing_dirty: false,
            rows: 0,
            rows_max: self.rows_max,
            first_row_at: Instant::now(),
            flush_interval: self.flush_interval,
            first_key_at: Instant::now(),
            first_key_interval: 0,
            consolidation_interval: self.consolidation_interval,
            flows: 0,
            arrivals: Vec::new(),
            shard: index as u32,
            tickets: 0,
            sums_ticket: 0,
            full: self.full.clone(),
            free: self.free.clone(),
            waits: true,
            put_off: 0,
            metrics: self.metrics.clone(),
        }
    }

    /// Where `/query` sends its requests.
    pub fn queries(&self) -> Sender<QueryRequest> {
        self.queries.clone()
    }

    /// Inserts (or spools) everything the shards handed over; call after the
    /// shards and their sinks are gone.
    pub fn finish(self) {
        drop(self.full);
        drop(self.queries);
        let _ = self.thread.join();
    }
}

/// The wall clock's interval of `interval` now: the sums are handed over
/// at its multiples since the epoch (UTC), so with a minute's interval,
/// each minute's alone.
fn sums_interval(interval: Duration) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now.as_millis() / interval.as_millis().max(1)) as u64
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

struct Writer {
    /// The shards' batches not yet taken for good.
    ledger: Ledger,
    /// None until connected and migrated (and after a failed connection).
    engine: Option<Engine>,
    /// The connected server's type names (Native block headers).
    dialect: Dialect,
    config: StoreConfig,
    /// The insert statement per table: raw, then `consolidate::TABLES`,
    /// then `RECORD_TABLES`, then `http_requests` (with `haproxy.store`).
    insert_sqls: Vec<String>,
    /// Store ids of the records queued for the records tables (at most
    /// `RECORDS_SENT_MAX`), and a block's scratch.
    records_sent: HashSet<u64>,
    records_block: Vec<u8>,
    /// Chunks waiting in memory, oldest first; each table's newest takes
    /// that table's new blocks.
    pending: VecDeque<Chunk>,
    pending_bytes: u64,
    /// Inserted chunks' buffers, reused for the next ones (`keep_spare`).
    spares: Vec<Vec<u8>>,
    /// A batch's raw block, typically (bytes): the shards' blocks of sums
    /// and the spare chunk buffers beyond `LARGE_SPARES_MAX` larger than
    /// this are freed (`Blocks::recycle`, `keep_spare`).
    block_keep: usize,
    spool: Spool,
    /// Where raw chunks go instead of the `flows` table (`store.raw = "segments"`).
    segments: Option<Segments>,
    backoff: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    next_attempt: Instant,
    /// No insert of a lone, not yet full chunk starts before this.
    next_insert: Instant,
    insert_interval: Duration,
    memory_bytes_max: u64,
    /// One failure line per `LOG_INTERVAL`, with the count left out.
    failure_logs: Limiter,
    /// Whether the last insert worked.
    up: bool,
    metrics: Arc<StoreMetrics>,
}

impl Writer {
    fn run(mut self, batches: Receiver<Batch>, free: Sender<Blocks>, queries: Receiver<QueryRequest>) {
        let mut queries = Some(queries);
        // Migrate at start, not at the first insert; a failure is retried.
        if let Err(e) = self.connected() {
            self.failed(&e);
        }
        loop {
            let has_work = !self.pending.is_empty() || !self.spool.is_empty();
            let wait = if has_work {
                self.due().saturating_duration_since(Instant::now())
            } else {
                Duration::from_millis(200)
            };
            let never = crossbeam_channel::never();
            let query_rx = queries.as_ref().unwrap_or(&never);
            select! {
                recv(batches) -> batch => match batch {
                    Ok(batch) => self.take(batch, &free),
                    Err(_) => return self.shut_down(),
                },
                recv(query_rx) -> request => match request {
                    Ok(request) => self.answer(request),
                    Err(_) => queries = None,
                },
                default(wait) => {}
            }
            self.metrics.heartbeats.fetch_add(1, Relaxed);
            while let Ok(batch) = batches.try_recv() {
                self.take(batch, &free);
            }
            if Instant::now() >= self.due() {
                // One round: every chunk waiting now (the tables' chunks go
                // together), or one spooled chunk at a time.
                let round = if self.spool.is_empty() { self.pending.len().max(1) } else { 1 };
                for _ in 0..round {
                    if !self.attempt(Some((&batches, &free))) {
                        break;
                    }
                }
            }
            if let Some(s) = &mut self.segments {
                if let Err(e) = s.close_if_past(unix_seconds()) {
                    warn!("store: {e}");
                }
            }
            if let Some(engine) = &mut self.engine {
                engine.send_copies();
            }
            self.bound_memory();
            self.publish();
        }
    }

    /// When the next insert may start: after the retry backoff, and unless
    /// there is a backlog (a spool, or more than one chunk), not before the
    /// insert interval has passed, so that batches gather into one insert.
    fn due(&self) -> Instant {
        let mut per_table = [0usize; TABLES_COUNT];
        for c in &self.pending {
            per_table[c.table.min(per_table.len() - 1)] += 1;
        }
        let backlog = per_table.iter().any(|&n| n > 1) || !self.spool.is_empty();
        if backlog {
            self.next_attempt
        } else {
            self.next_attempt.max(self.next_insert)
        }
    }

    /// Appends a shard's blocks to their tables' newest chunks and gives
    /// the buffers back.
    fn take(&mut self, mut batch: Batch, free: &Sender<Blocks>) {
        let m = &self.metrics;
        m.batches_received.fetch_add(1, Relaxed);
        m.rows_received.fetch_add(batch.rows as u64, Relaxed);
        if batch.early {
            m.consolidation_early_flushes.fetch_add(1, Relaxed);
        }
        let ticket = (batch.shard, batch.ticket);
        let mut chunks = self.take_records(&mut batch.blocks.records, ticket);
        if !self.append_segment(&batch.blocks, batch.rows, &batch.arrivals) && self.plain_raw(&mut batch) {
            chunks += self.append(0, &batch.blocks.raw, batch.rows, &batch.arrivals, ticket) as u32;
        }
        for (i, block) in batch.blocks.consolidated.iter().enumerate() {
            if batch.consolidated_rows[i] > 0 {
                chunks += self.append(1 + i, block, batch.consolidated_rows[i], &[], ticket) as u32;
            }
        }
        if batch.http_rows > 0 && self.insert_sqls.len() > HTTP_TABLE {
            chunks += self.append(HTTP_TABLE, &batch.blocks.http, batch.http_rows, &[], ticket) as u32;
        }
        for (i, block) in batch.blocks.http_rollups.iter().enumerate() {
            if batch.http_rollup_rows[i] > 0 && self.insert_sqls.len() > HTTP_TABLE + 1 + i {
                chunks += self.append(HTTP_TABLE + 1 + i, block, batch.http_rollup_rows[i], &[], ticket) as u32;
            }
        }
        if ticket.1 > 0 {
            // (HAProxy's batches come untracked: ticket 0.)
            self.ledger.opened(ticket, chunks);
        }
        batch.blocks.recycle(self.block_keep);
        let _ = free.send(batch.blocks);
    }

    /// With `store.raw = "segments"`, appends a batch's raw block straight
    /// to the open segment file: no chunk gathers it (no copy, no chunk
    /// buffer; the file's own buffer does the gathering), and it is taken
    /// for good at once. Not while raw chunks wait (a failed append's: they
    /// go first, through `attempt`'s retries and the spool); a failed
    /// append here leaves the block to a chunk. Whether it was appended.
    fn append_segment(&mut self, blocks: &Blocks, rows: u32, arrivals: &[(u64, u32)]) -> bool {
        let Some(segments) = &mut self.segments else { return false };
        let frame = &blocks.raw_frame;
        if (blocks.raw.is_empty() && frame.is_empty()) || self.pending.iter().any(|c| c.table == 0) {
            return false;
        }
        let started = Instant::now();
        // The shard's frame, for compressed files; else the block.
        let (appended, bytes) = if segments.compressed() && !frame.is_empty() {
            (segments.append_frame(frame, unix_seconds()), segments::plain_len(frame))
        } else {
            (segments.append(&blocks.raw, unix_seconds()), blocks.raw.len())
        };
        match appended {
            Ok(done) => {
                self.metrics.segment_bytes_written.fetch_add(done.written, Relaxed);
                self.metrics.segment_files_expired.fetch_add(done.expired, Relaxed);
                self.count_stored(0, rows as u64, bytes, started.elapsed(), arrivals);
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// The batch's plain raw block, for a chunk: a shard that compressed
    /// its block sent the frame only, decompressed here (a failed append's
    /// path only). Whether there is a block to append: a frame that does
    /// not decompress (not expected: the shard made it) loses its rows,
    /// counted as `bad_frame`.
    fn plain_raw(&mut self, batch: &mut Batch) -> bool {
        let blocks = &mut batch.blocks;
        if !blocks.raw.is_empty() || blocks.raw_frame.is_empty() {
            return true;
        }
        match segments::decompress(&blocks.raw_frame, &mut blocks.raw) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("store: a shard's raw frame does not decompress, {} rows lost: {e}", batch.rows);
                self.dropped(0, batch.rows as u64, StoreDrop::BadFrame);
                false
            }
        }
    }

    /// Queues the records no shard sent before for the records tables;
    /// returns the chunks they went into.
    fn take_records(&mut self, records: &mut NewRecords, ticket: (u32, u64)) -> u32 {
        if records.is_empty() {
            return 0;
        }
        let new = records.exporters.len() + records.interfaces.len() + records.networks.len();
        if self.records_sent.len() + new > RECORDS_SENT_MAX {
            self.records_sent.clear();
        }
        let sent = &mut self.records_sent;
        records.exporters.retain(|(id, _)| sent.insert(*id));
        records.interfaces.retain(|(id, _)| sent.insert(*id));
        records.networks.retain(|(id, _)| sent.insert(*id));
        let counts = [records.exporters.len(), records.interfaces.len(), records.networks.len()];
        let mut chunks = 0;
        for (t, &rows) in counts.iter().enumerate() {
            if rows == 0 {
                continue;
            }
            self.metrics.records_new[t].fetch_add(rows as u64, Relaxed);
            let mut block = std::mem::take(&mut self.records_block);
            block.clear();
            write_records_block(records, t, &mut block);
            chunks += self.append(RECORDS_TABLE + t, &block, rows as u32, &[], ticket) as u32;
            self.records_block = block;
        }
        records.clear();
        chunks
    }

    /// Appends a block to its table's newest chunk (or a new one); whether
    /// it was not empty.
    fn append(&mut self, table: usize, block: &[u8], rows: u32, arrivals: &[(u64, u32)], ticket: (u32, u64)) -> bool {
        if block.is_empty() {
            return false;
        }
        let newest = self.pending.iter().rposition(|c| c.table == table);
        let at = match newest {
            Some(i)
                if self.pending[i].bytes.len() + block.len() <= self.config.insert_bytes_max as usize
                    && self.pending[i].rows + rows as u64 <= self.config.insert_rows_max =>
            {
                i
            }
            _ => {
                let chunk = Chunk::new(&self.insert_sqls[table], take_spare(&mut self.spares, table == 0));
                self.pending.push_back(chunk);
                self.pending.len() - 1
            }
        };
        let chunk = &mut self.pending[at];
        chunk.bytes.extend_from_slice(block);
        chunk.rows += rows as u64;
        chunk.arrivals.extend_from_slice(arrivals);
        if ticket.1 > 0 {
            chunk.tickets.push(ticket);
        }
        self.pending_bytes += block.len() as u64;
        true
    }

    /// Inserts the oldest chunk: from the spool if it has any, else memory;
    /// the shards' batches are taken meanwhile (`intake`, see
    /// `insert_taking`). Whether one was inserted.
    fn attempt(&mut self, intake: Option<(&Receiver<Batch>, &Sender<Blocks>)>) -> bool {
        if self.pending.is_empty() && self.spool.is_empty() {
            return false;
        }
        if let Err(e) = self.connected() {
            self.failed(&e);
            return false;
        }
        let from_spool = !self.spool.is_empty();
        let chunk = if from_spool {
            match self.spool.front() {
                Some(Ok(chunk)) => chunk,
                Some(Err((rows, why))) => {
                    warn!("store: spooled chunk dropped: {why}");
                    self.metrics.dropped_rows[StoreDrop::UnreadableChunk as usize].fetch_add(rows, Relaxed);
                    return true;
                }
                None => return false,
            }
        } else {
            match self.pending.pop_front() {
                Some(chunk) => chunk,
                None => return false,
            }
        };
        let started = Instant::now();
        self.next_insert = started + self.insert_interval;
        let stored = match &mut self.segments {
            // Native blocks only: a RowBinary chunk from an old spool goes
            // to the table by its own statement.
            Some(s) if chunk.table == 0 && chunk.sql().ends_with("FORMAT Native") => {
                s.append(chunk.rows_bytes(), unix_seconds()).map(|done| {
                    let m = &self.metrics;
                    m.segment_bytes_written.fetch_add(done.written, Relaxed);
                    m.segment_files_expired.fetch_add(done.expired, Relaxed);
                })
            }
            _ => self.insert_taking(&chunk, intake),
        };
        match stored {
            Ok(()) => {
                self.inserted(chunk, from_spool, started.elapsed());
                true
            }
            Err(e) if super::refused_for_good(&e) => {
                // Retrying cannot help, and the chunk would block every one behind it.
                self.rejected(chunk, from_spool, &e);
                true
            }
            Err(e) => {
                if !from_spool {
                    self.pending.push_front(chunk);
                }
                self.failed(&e);
                false
            }
        }
    }

    /// Inserts `chunk` on a thread of its own while this one goes on
    /// taking the shards' batches from `intake` (copied into the next
    /// chunks, their buffers given back), as long as the chunks in memory
    /// stay under `store.memory_bytes_max`. An insert takes a good part of
    /// a second; without this the shards would need that long of batches
    /// in buffers, and lose datagrams when they run out (perf/RESULTS.md,
    /// "Batches taken during inserts"). Without `intake` (the drain at a
    /// stop), or if no thread can be started, it inserts here.
    fn insert_taking(
        &mut self,
        chunk: &Chunk,
        intake: Option<(&Receiver<Batch>, &Sender<Blocks>)>,
    ) -> Result<(), String> {
        let mut engine = self.engine.take().expect("connected before an insert");
        let dialect = self.dialect;
        let mut stored = None;
        if let Some((batches, free)) = intake {
            std::thread::scope(|scope| {
                // The thread owns `done_tx`: a panic drops it, and `done` wakes.
                let (done_tx, done) = bounded::<()>(1);
                let engine = &mut engine;
                let spawned =
                    std::thread::Builder::new().name("weir-store-ins".into()).spawn_scoped(scope, move || {
                        let result = engine.insert(chunk, &dialect);
                        let _ = done_tx.send(());
                        result
                    });
                let Ok(job) = spawned else { return };
                let (never, mut open) = (crossbeam_channel::never::<Batch>(), true);
                loop {
                    let room = open && self.pending_bytes < self.memory_bytes_max;
                    select! {
                        // Done, or the thread ended without a word (a panic: join says).
                        recv(done) -> _ => break,
                        recv(if room { batches } else { &never }) -> batch => match batch {
                            Ok(batch) => self.take(batch, free),
                            Err(_) => open = false,
                        },
                    }
                }
                stored = Some(job.join().unwrap_or_else(|_| Err("the insert thread panicked".into())));
            });
        }
        let stored = stored.unwrap_or_else(|| engine.insert(chunk, &dialect));
        self.engine = Some(engine);
        stored
    }

    /// A chunk the engine refuses for good: counted as dropped, kept for the
    /// operator under `rejected/` in the spool directory (the newest
    /// `REJECTED_KEPT`), and taken off the queue.
    fn rejected(&mut self, chunk: Chunk, from_spool: bool, error: &str) {
        self.dropped(chunk.table, chunk.rows, StoreDrop::Rejected);
        self.ledger.settle(&chunk.tickets);
        let kept = super::spool::keep_rejected(&self.config.spool_dir, &chunk);
        error!(
            "store: the engine refuses {} rows of {} for good ({error}); {}",
            chunk.rows,
            super::table_name(chunk.table),
            match kept {
                Ok(path) => format!("kept in {}", path.display()),
                Err(e) => format!("not kept: {e}"),
            }
        );
        if from_spool {
            self.spool.pop_front();
        } else {
            self.pending_bytes -= chunk.rows_bytes().len() as u64;
        }
    }

    /// Counts `rows` (`bytes` of blocks) stored into `table` in `took`, and
    /// their commit delays.
    fn count_stored(&self, table: usize, rows: u64, bytes: usize, took: Duration, arrivals: &[(u64, u32)]) {
        let m = &self.metrics;
        m.inserts[table.min(TABLES_COUNT - 1)].fetch_add(1, Relaxed);
        match table_kind(table) {
            TableKind::Raw => m.rows_inserted.fetch_add(rows, Relaxed),
            TableKind::Consolidated(t) => m.consolidated_rows_inserted[t.min(2)].fetch_add(rows, Relaxed),
            TableKind::Records(t) => m.records_inserted[t].fetch_add(rows, Relaxed),
            TableKind::Http(t) => m.http_rows_inserted[t.min(3)].fetch_add(rows, Relaxed),
        };
        m.bytes_inserted.fetch_add(bytes as u64, Relaxed);
        m.insert_micros.fetch_add(took.as_micros() as u64, Relaxed);
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        for &(at, rows) in arrivals {
            m.commit_delay.record(now_ms.saturating_sub(at), rows as u64);
        }
    }

    fn inserted(&mut self, chunk: Chunk, from_spool: bool, took: Duration) {
        self.ledger.settle(&chunk.tickets);
        self.count_stored(chunk.table, chunk.rows, chunk.rows_bytes().len(), took, &chunk.arrivals);
        let m = &self.metrics;
        if from_spool {
            m.chunks_replayed.fetch_add(1, Relaxed);
            if chunk.table == 0 {
                m.rows_replayed.fetch_add(chunk.rows, Relaxed);
            }
            self.spool.pop_front();
        } else {
            self.pending_bytes -= chunk.rows_bytes().len() as u64;
            let large = if self.segments.is_some() { 0 } else { LARGE_SPARES_MAX };
            keep_spare(&mut self.spares, chunk.bytes, self.block_keep, large);
        }
        if !self.up {
            info!("store: inserts work again ({} failures not logged)", self.failure_logs.take_held_back());
        }
        self.up = true;
        self.backoff = self.backoff_min;
        self.next_attempt = Instant::now();
    }

    fn failed(&mut self, error: &str) {
        self.metrics.insert_errors.fetch_add(1, Relaxed);
        self.up = false;
        self.next_attempt = Instant::now() + self.backoff;
        if let Some(held_back) = self.failure_logs.allow(Instant::now()) {
            warn!(
                "store: insert failed, retrying in {} ms ({held_back} more failures since the last line): {error}",
                self.backoff.as_millis(),
            );
        }
        self.backoff = (self.backoff * 2).min(self.backoff_max);
    }

    /// Moves the oldest chunks in memory to the spool while over the bound.
    /// Not when Kafka-backed: the shards' batches in flight bound memory.
    fn bound_memory(&mut self) {
        if self.ledger.acks.kafka_backed.load(Relaxed) {
            return;
        }
        while self.pending_bytes > self.memory_bytes_max {
            let Some(chunk) = self.pending.pop_front() else { break };
            self.spill(chunk);
        }
    }

    fn spill(&mut self, chunk: Chunk) {
        self.pending_bytes -= chunk.rows_bytes().len() as u64;
        self.ledger.settle(&chunk.tickets);
        match self.spool.push(&chunk) {
            Ok(()) => {
                self.metrics.chunks_spooled.fetch_add(1, Relaxed);
                if chunk.table == 0 {
                    self.metrics.rows_spooled.fetch_add(chunk.rows, Relaxed);
                }
            }
            Err(refusal) => {
                let (reason, why) = match refusal {
                    SpoolRefusal::Full => (StoreDrop::FullSpool, "the spool is full".to_string()),
                    SpoolRefusal::Disk(e) => (StoreDrop::SpoolWriteFailed, e),
                };
                self.dropped(chunk.table, chunk.rows, reason);
                error!("store: {} rows of {} dropped: {why}", chunk.rows, super::table_name(chunk.table));
            }
        }
    }

    /// Counts `rows` of `table` lost.
    fn dropped(&self, table: usize, rows: u64, reason: StoreDrop) {
        let m = &self.metrics;
        match table_kind(table) {
            TableKind::Raw => m.dropped_rows[reason as usize].fetch_add(rows, Relaxed),
            TableKind::Consolidated(t) => m.consolidated_rows_dropped[t.min(2)].fetch_add(rows, Relaxed),
            TableKind::Records(t) => m.records_dropped[t].fetch_add(rows, Relaxed),
            TableKind::Http(0) => m.http_rows_dropped[reason as usize].fetch_add(rows, Relaxed),
            TableKind::Http(t) => m.http_rollup_rows_dropped[(t - 1).min(2)].fetch_add(rows, Relaxed),
        };
    }

    /// SIGTERM: the shards have handed everything over. Insert what is in
    /// memory while the store takes it; spool the rest for the next start.
    fn shut_down(mut self) {
        while self.up && self.spool.is_empty() && !self.pending.is_empty() {
            self.attempt(None);
        }
        if let Some(Err(e)) = self.segments.as_mut().map(Segments::close) {
            warn!("store: {e}");
        }
        let rest = self.pending.len();
        if self.ledger.acks.kafka_backed.load(Relaxed) && rest > 0 {
            // Their offsets were not stored: the next owner of those
            // partitions reads the records again.
            let rows: u64 = self.pending.iter().filter(|c| c.table == 0).map(|c| c.rows).sum();
            warn!("store: {rest} chunks ({rows} flows) not inserted at the stop; they stay in Kafka");
            self.pending.clear();
            self.publish();
            return;
        }
        while let Some(chunk) = self.pending.pop_front() {
            self.spill(chunk);
        }
        if rest > 0 || !self.spool.is_empty() {
            warn!(
                "store: {} chunks ({} rows) stay in the spool for the next start",
                self.spool.chunks(),
                self.spool.rows()
            );
        }
        self.publish();
    }

    fn answer(&mut self, request: QueryRequest) {
        let result = match self.connected() {
            Ok(engine) => engine.operator_query(&request.sql, &request.format, request.writes),
            Err(e) => Err(format!("the store is not reachable: {e}")),
        };
        let _ = request.reply.send(result);
    }

    /// The engine, connected and migrated first if it is not yet.
    fn connected(&mut self) -> Result<&mut Engine, String> {
        if self.engine.is_none() {
            let (engine, dialect) = open(&self.config)?;
            self.engine = Some(engine);
            self.dialect = dialect;
        }
        Ok(self.engine.as_mut().expect("set above"))
    }

    fn publish(&self) {
        let m = &self.metrics;
        m.memory_bytes.store(self.pending_bytes, Relaxed);
        m.spool_bytes.store(self.spool.bytes(), Relaxed);
        m.spool_chunks.store(self.spool.chunks() as u64, Relaxed);
        m.up.store(self.up as u64, Relaxed);
        m.connected.store(self.engine.is_some() as u64, Relaxed);
        if let Some((node, failovers, copies)) = self.engine.as_ref().and_then(Engine::remote_node) {
            m.remote_node.store(node as u64, Relaxed);
            m.remote_failovers.store(failovers, Relaxed);
            m.remote_copies_sent.store(copies.sent, Relaxed);
            m.remote_copy_errors.store(copies.failed, Relaxed);
            m.remote_copies_dropped.store(copies.dropped, Relaxed);
            m.remote_copies_waiting.store(copies.waiting, Relaxed);
        }
    }
}

/// A spare buffer for a new chunk: the largest for the raw table (its
/// chunks are the large ones), the smallest for the others.
fn take_spare(spares: &mut Vec<Vec<u8>>, raw: bool) -> Vec<u8> {
    let at = if raw {
        spares.iter().enumerate().max_by_key(|(_, b)| b.capacity()).map(|(i, _)| i)
    } else {
        spares.iter().enumerate().min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i)
    };
    at.map(|i| spares.swap_remove(i)).unwrap_or_default()
}

/// Keeps an inserted chunk's buffer for reuse: at most `SPARES_MAX`, of
/// which at most `large_max` larger than `small` bytes (the largest are
/// kept: the next raw chunk fits without growing). Buffers come one at a
/// time, so at most one goes.
fn keep_spare(spares: &mut Vec<Vec<u8>>, bytes: Vec<u8>, small: usize, large_max: usize) {
    if spares.len() >= SPARES_MAX {
        return;
    }
    spares.push(bytes);
    let large = || spares.iter().enumerate().filter(|(_, b)| b.capacity() > small);
    if large().count() > large_max {
        if let Some((i, _)) = large().min_by_key(|(_, b)| b.capacity()) {
            spares.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spares_keep_two_large_buffers_and_give_the_raw_table_the_largest() {
        let mut spares = Vec::new();
        for capacity in [64 << 20, 1 << 10, 32 << 20, 100 << 20, 2 << 10] {
            keep_spare(&mut spares, Vec::with_capacity(capacity), 1 << 20, LARGE_SPARES_MAX);
        }
        let mut kept: Vec<usize> = spares.iter().map(Vec::capacity).collect();
        kept.sort_unstable();
        assert_eq!(kept, [1 << 10, 2 << 10, 64 << 20, 100 << 20], "the 32 MiB one is freed");
        assert_eq!(take_spare(&mut spares, true).capacity(), 100 << 20);
        assert_eq!(take_spare(&mut spares, false).capacity(), 1 << 10);
        assert_eq!(take_spare(&mut spares, false).capacity(), 2 << 10);
        assert_eq!(take_spare(&mut spares, false).capacity(), 64 << 20, "a large one when no other is left");
        assert_eq!(take_spare(&mut spares, true).capacity(), 0, "none left: a new buffer");
        // At most SPARES_MAX small ones.
        for _ in 0..SPARES_MAX + 3 {
            keep_spare(&mut spares, Vec::with_capacity(16), 1 << 20, LARGE_SPARES_MAX);
        }
        assert_eq!(spares.len(), SPARES_MAX);
        // With segment files, no large one is kept.
        let mut spares = Vec::new();
        keep_spare(&mut spares, Vec::with_capacity(1 << 10), 1 << 20, 0);
        keep_spare(&mut spares, Vec::with_capacity(32 << 20), 1 << 20, 0);
        assert_eq!(spares.iter().map(Vec::capacity).collect::<Vec<_>>(), [1 << 10]);
    }

    #[test]
    fn recycled_blocks_keep_the_row_buffers_and_free_large_sums() {
        let mut blocks = Blocks { raw: vec![1; 4096], ..Blocks::default() };
        blocks.consolidated[0] = vec![2; 64];
        blocks.consolidated[1] = vec![3; 8192];
        blocks.http_rollups[2] = vec![4; 8192];
        blocks.http = vec![5; 8192];
        blocks.recycle(1024);
        assert!(blocks.raw.is_empty() && blocks.raw.capacity() >= 4096, "the raw block keeps its buffer");
        assert!(blocks.consolidated[0].is_empty() && blocks.consolidated[0].capacity() >= 64);
        assert_eq!(blocks.consolidated[1].capacity(), 0);
        assert_eq!(blocks.http_rollups[2].capacity(), 0);
        assert!(blocks.http.is_empty() && blocks.http.capacity() >= 8192, "HAProxy's rows keep theirs too");
    }

    fn ledger(shards: usize) -> Ledger {
        Ledger { acks: Arc::new(Acks::new(shards)), open: Vec::new() }
    }

    #[test]
    fn a_batch_is_acknowledged_once_every_chunk_holding_it_is_taken_and_in_order() {
        let mut l = ledger(2);
        // Shard 0: batch 1 in the raw and a sums chunk, batch 2 in the raw chunk.
        l.opened((0, 1), 2);
        l.opened((0, 2), 1);
        assert_eq!(l.acks.acked(0), 0);
        // Batch 2's only chunk goes first: batch 1 still waits, so nothing yet.
        l.settle(&[(0, 2)]);
        assert_eq!(l.acks.acked(0), 0);
        l.settle(&[(0, 1)]);
        assert_eq!(l.acks.acked(0), 0, "one of batch 1's chunks is still out");
        l.settle(&[(0, 1)]);
        assert_eq!(l.acks.acked(0), 2, "both batches, in order");
        // Shard 1 is its own count; an empty batch is taken at once.
        l.opened((1, 1), 0);
        assert_eq!((l.acks.acked(0), l.acks.acked(1)), (2, 1));
        // Unknown shards and tickets are ignored.
        l.settle(&[(7, 1), (0, 9)]);
        assert_eq!(l.acks.acked(0), 2);
        assert_eq!(l.acks.acked(7), 0);
    }
}
