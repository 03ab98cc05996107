//! `weir outlet`'s shards: each is one consumer of `<kafka.topic>-v1` in
//! the group `kafka.outlet.group`, on its own pinned executor, and does what
//! a `weir run` shard does with a datagram — decode, enrich, store — with
//! the records it consumes.
//!
//! Offsets (at least once): a partition's offset is stored for commit only
//! once the store writer acknowledged (`store::writer::Acks`) the batch
//! that carried the consolidated sums covering every flow before it. After
//! each record, and at each tick, the shard notes a checkpoint — the next
//! offset per partition and the ticket whose acknowledgement covers them:
//! - a hand-over with sums during a record covers the records before it;
//! - a sink holding nothing covers everything taken.
//!
//! librdkafka commits the stored offsets every second and when partitions
//! go. A revocation (cooperative: only the partitions that move) hands the
//! shard's batch over with its sums, waits for the store's acknowledgement
//! (inserts in flight are never cancelled) up to
//! `kafka.outlet.revoke_wait_ms`, stores and commits; then the partitions
//! go. A stop does the same for everything, up to `run.drain_timeout_ms`.
//! A record that is not a datagram is counted by reason and skipped, its
//! offset stored like the others: a partition never sticks on it.
//!
//! When `kafka.outlet.batches_in_flight_max` of a shard's batches wait
//! for the store (fewer if the shard's share of `store.batches_max` is
//! smaller: it must keep a buffer to hand over with), the shard pauses its
//! partitions and keeps polling (it stays in the group) until
//! acknowledgements come; the store writer keeps everything in memory
//! (Kafka is the buffer, not the spool). A shard never waits for a batch
//! buffer: with none free (the writer stuck in an insert) a hand-over is
//! put off to a later tick (`weir_outlet_handovers_put_off_total`), the
//! shard takes no records while a full batch waits, and it keeps polling,
//! so the group never loses it and a rebalance is served at once.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientContext, Message};
use tracing::{info, warn};
use weir_core::config::FlowsKafkaConfig;
use weir_core::rawflow::{self, RawFlow};
use weir_core::wire::state::Limits;
use weir_core::Decoder;

use super::metrics::{OutletMetrics, LAG_PARTITIONS_MAX};
use super::ClientLog;
use crate::ops::logging::Limiter;
use crate::receive::metrics::ShardMetrics;
use crate::receive::shard::{Exchange, Inboxes};
use crate::store::writer::{Acks, StoreSink};

/// Records a shard takes per poll round before it looks at its chores.
const ROUND_RECORDS: usize = 1024;
/// Longest a poll waits with nothing to read.
const POLL_WAIT: Duration = Duration::from_millis(10);
/// How often a waiting revocation or stop looks at the acknowledgements.
const ACK_WAIT_STEP: Duration = Duration::from_millis(5);

/// Everything an outlet shard is started with; moved onto its thread.
pub struct OutletSetup {
    pub index: usize,
    pub core: usize,
    pub config: FlowsKafkaConfig,
    pub housekeeping_interval: Duration,
    pub drain_timeout: Duration,
    pub log_lines_per_minute: u32,
    pub limits: Limits,
    pub saved_state: Option<Arc<Vec<u8>>>,
    pub metrics: Arc<ShardMetrics>,
    pub outlet: Arc<OutletMetrics>,
    pub inboxes: Inboxes,
    pub sink: Box<StoreSink>,
    pub acks: Arc<Acks>,
    /// Batches in the store unacknowledged before the shard pauses its
    /// partitions: `kafka.outlet.batches_in_flight_max`, less when the
    /// shard's share of the store's batch buffers is smaller (a shard out
    /// of buffers would wait without polling, and drop out of the group).
    pub in_flight_max: u64,
    pub stop: Arc<AtomicBool>,
    pub ready: Arc<AtomicUsize>,
    pub state_out: Option<(Arc<ArrayQueue<Vec<u8>>>, Duration)>,
}

/// The consumer's callbacks: logs, statistics (lag), commits, and the
/// rebalances, which reach the shard's state through `SHARD` (they run on
/// the shard's thread, inside its poll).
pub struct OutletContext {
    index: usize,
    topic: String,
    metrics: Arc<OutletMetrics>,
    log: ClientLog,
}

thread_local! {
    /// The shard this thread runs, for the rebalance callbacks.
    static SHARD: RefCell<Option<Rc<RefCell<OutletShard>>>> = const { RefCell::new(None) };
}

impl ClientContext for OutletContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        self.log.error(e, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let Some(lags) = self.metrics.lag.get(self.index) else { return };
        let topic = statistics.topics.get(&self.topic);
        for (p, lag) in lags.iter().enumerate().take(LAG_PARTITIONS_MAX) {
            let now = match topic.and_then(|t| t.partitions.get(&(p as i32))) {
                Some(s) if s.desired && s.consumer_lag >= 0 => s.consumer_lag,
                // Nothing committed yet: all the partition holds.
                Some(s) if s.desired => (s.hi_offset - s.lo_offset.max(0)).max(0),
                _ => -1,
            };
            lag.store(now, Relaxed);
        }
    }
}

impl ConsumerContext for OutletContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            with_shard(|s| s.revoke(consumer, partitions));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            with_shard(|s| s.assigned(partitions));
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Ok(()) => self.metrics.commits.fetch_add(1, Relaxed),
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => 0,
            Err(e) => {
                if let Some(held_back) = self.log.allow() {
                    warn!(shard = self.index, held_back, "kafka: offset commit failed: {e}");
                }
                self.metrics.commit_errors.fetch_add(1, Relaxed)
            }
        };
    }
}

fn with_shard(f: impl FnOnce(&mut OutletShard)) {
    let shard = SHARD.with(|s| s.borrow().clone());
    if let Some(shard) = shard {
        f(&mut shard.borrow_mut());
    }
}

/// Starts the shard's executor on its CPU. The handle yields the decoder
/// state (as snapshot JSON) when the shard has stored, committed and stopped.
pub fn spawn(setup: OutletSetup) -> std::io::Result<ExecutorJoinHandle<Vec<u8>>> {
    let name = format!("weir-outlet-{}", setup.index);
    LocalExecutorBuilder::new(Placement::Fixed(setup.core))
        .name(&name)
        .io_memory(256 << 10)
        .spawn(move || async move { run(setup) })
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// The consumer of shard `index`, subscribed.
fn consumer(setup: &OutletSetup) -> Result<BaseConsumer<OutletContext>, String> {
    let k = &setup.config;
    let o = &k.outlet;
    let mut c = ClientConfig::new();
    for (key, value) in &o.options {
        if key == "group.instance.id" {
            // Static membership: each shard is a member of its own.
            c.set(key, format!("{value}-{}", setup.index));
        } else {
            c.set(key, value);
        }
    }
    let heartbeat = (o.session_timeout_ms / 3).clamp(100, 3_000);
    c.set("bootstrap.servers", &k.brokers)
        .set("group.id", &o.group)
        .set("client.id", format!("weir-outlet-{}", setup.index))
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", o.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", heartbeat.to_string())
        .set("auto.offset.reset", o.offset_reset.as_str())
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("statistics.interval.ms", "1000");
    if !o.options.contains_key("max.poll.interval.ms") {
        // A revocation may wait for the store this long, inside a poll.
        let at_least = (o.revoke_wait_ms + 60_000).max(300_000);
        c.set("max.poll.interval.ms", at_least.min(i32::MAX as u64).to_string());
    }
    let topic = rawflow::topic(&k.topic);
    let context = OutletContext {
        index: setup.index,
        topic: topic.clone(),
        metrics: setup.outlet.clone(),
        log: ClientLog::new(setup.log_lines_per_minute),
    };
    let consumer: BaseConsumer<OutletContext> =
        c.create_with_context(context).map_err(|e| format!("kafka.outlet: consumer: {e}"))?;
    consumer.subscribe(&[&topic]).map_err(|e| format!("kafka.outlet: subscribe to {topic}: {e}"))?;
    Ok(consumer)
}

fn run(setup: OutletSetup) -> Vec<u8> {
    let consumer = match consumer(&setup) {
        Ok(c) => Some(c),
        Err(e) => {
            // Configuration the brokers' client refuses: the shard idles
            // (counted as heartbeats), the log says why.
            tracing::error!(shard = setup.index, "{e}");
            None
        }
    };
    let mut decoder = Decoder::new(setup.limits.clone());
    decoder.record_updates();
    if let Some(bytes) = &setup.saved_state {
        if let Err(e) = decoder.restore_state_json(bytes) {
            warn!(shard = setup.index, "saved decoder state not loaded: {e}");
        }
    }
    let shard = Rc::new(RefCell::new(OutletShard {
        index: setup.index,
        decoder,
        sink: {
            // The shard keeps polling while the store is behind: a
            // hand-over with no free buffer is put off, not waited for.
            let mut sink = setup.sink;
            sink.never_wait();
            sink
        },
        put_off: 0,
        exchange: Exchange::new(setup.index, setup.inboxes),
        record: RawFlow::default(),
        positions: BTreeMap::new(),
        checkpoints: VecDeque::new(),
        acks: setup.acks,
        counts: Counts::default(),
        metrics: setup.metrics.clone(),
        outlet: setup.outlet,
        revoke_wait: Duration::from_millis(setup.config.outlet.revoke_wait_ms),
        in_flight_max: setup.in_flight_max,
        partitions: 0,
        in_flight: 0,
        paused: false,
        assignment_changed: false,
        logs: Limiter::new(setup.log_lines_per_minute),
    }));
    SHARD.with(|s| *s.borrow_mut() = Some(shard.clone()));
    setup.ready.fetch_add(1, Relaxed);
    let mut last_tick = Instant::now();
    let mut last_save = Instant::now();
    while !setup.stop.load(Relaxed) {
        let Some(consumer) = &consumer else {
            std::thread::sleep(setup.housekeeping_interval);
            setup.metrics.heartbeats.fetch_add(1, Relaxed);
            continue;
        };
        for i in 0..ROUND_RECORDS {
            // No wait once records flow; a short one when none do.
            let wait = if i == 0 { POLL_WAIT.min(setup.housekeeping_interval) } else { Duration::ZERO };
            match consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => {
                    let mut s = shard.borrow_mut();
                    s.take(m.partition(), m.offset(), m.payload().unwrap_or_default());
                    // Paused below before the shard's buffers run out.
                    if s.at_bound() {
                        break;
                    }
                }
                Some(Err(e)) => shard.borrow_mut().consume_error(e),
            }
        }
        let mut s = shard.borrow_mut();
        s.broadcast();
        if last_tick.elapsed() >= setup.housekeeping_interval {
            last_tick = Instant::now();
            s.tick(consumer);
            if let Some((queue, every)) = &setup.state_out {
                if last_save.elapsed() >= *every {
                    last_save = Instant::now();
                    queue.force_push(s.decoder.state().snapshot_json());
                }
            }
        }
        s.pace(consumer);
        s.publish();
    }
    let state = {
        let mut s = shard.borrow_mut();
        s.finish(consumer.as_ref(), setup.drain_timeout);
        s.decoder.state().snapshot_json()
    };
    // Leaves the group: the last revocation finds nothing left to do.
    drop(consumer);
    SHARD.with(|s| *s.borrow_mut() = None);
    shard.borrow_mut().publish();
    state
}

#[derive(Default)]
struct Counts {
    records: u64,
    bytes: u64,
    updates_sent: u64,
    updates_dropped: u64,
    updates_applied: u64,
}

struct OutletShard {
    index: usize,
    decoder: Decoder,
    sink: Box<StoreSink>,
    /// The sink's put-off hand-overs already counted in the metrics.
    put_off: u64,
    exchange: Exchange,
    /// Scratch for the record being read.
    record: RawFlow,
    /// Per partition consumed: the offset after the last record taken.
    positions: BTreeMap<i32, i64>,
    /// (ticket, positions): once the writer acknowledges the ticket, the
    /// positions can be stored. Oldest first.
    checkpoints: VecDeque<(u64, BTreeMap<i32, i64>)>,
    acks: Arc<Acks>,
    counts: Counts,
    metrics: Arc<ShardMetrics>,
    outlet: Arc<OutletMetrics>,
    revoke_wait: Duration,
    in_flight_max: u64,
    /// Partitions assigned now, and batches the store has not acknowledged
    /// (published with the other counters).
    partitions: u64,
    in_flight: u64,
    paused: bool,
    /// Partitions came since the last pause (they are not paused).
    assignment_changed: bool,
    logs: Limiter,
}

impl OutletShard {
    /// One record: its datagram decoded into the sink, its position noted.
    fn take(&mut self, partition: i32, offset: i64, payload: &[u8]) {
        self.counts.records += 1;
        self.counts.bytes += payload.len() as u64;
        let sums_before = self.sink.sums_ticket();
        let OutletShard { decoder, sink, record, .. } = self;
        let taken = record.read(payload).and_then(|()| {
            let datagram = record.datagram()?;
            // Errors are counted by the decoder, by reason.
            let _ = decoder.decode(&datagram, &mut |flow| sink.flow(flow));
            Ok(())
        });
        if let Err(e) = taken {
            self.outlet.skipped[e as usize].fetch_add(1, Relaxed);
            if let Some(held_back) = self.logs.allow(Instant::now()) {
                warn!(shard = self.index, partition, offset, held_back, "record skipped: {}", e.label());
            }
        }
        if self.sink.sums_ticket() != sums_before {
            // The sums went during this record: they cover the ones before.
            self.checkpoints.push_back((self.sink.sums_ticket(), self.positions.clone()));
        }
        self.positions.insert(partition, offset + 1);
        if self.sink.is_idle() {
            self.checkpoint();
        }
    }

    /// Everything taken is handed over: the newest ticket covers the
    /// positions now.
    fn checkpoint(&mut self) {
        let ticket = self.sink.tickets();
        match self.checkpoints.back_mut() {
            Some((t, positions)) if *t == ticket => positions.clone_from(&self.positions),
            _ => self.checkpoints.push_back((ticket, self.positions.clone())),
        }
    }

    fn consume_error(&mut self, e: KafkaError) {
        self.outlet.consume_errors.fetch_add(1, Relaxed);
        if let Some(held_back) = self.logs.allow(Instant::now()) {
            warn!(shard = self.index, held_back, "kafka: consume: {e}");
        }
    }

    fn broadcast(&mut self) {
        let (sent, dropped) = self.exchange.broadcast(&mut self.decoder);
        self.counts.updates_sent += sent;
        self.counts.updates_dropped += dropped;
    }

    /// Housekeeping: other shards' template changes, parked data that
    /// expired, the sink's due hand-overs, then the offsets the store's
    /// acknowledgements allow.
    fn tick(&mut self, consumer: &BaseConsumer<OutletContext>) {
        let OutletShard { decoder, sink, counts, exchange, .. } = self;
        counts.updates_applied += exchange.apply(decoder, &mut |flow| sink.flow(flow));
        self.decoder.expire_pending(now_ns());
        self.sink.tick();
        if self.sink.is_idle() {
            self.checkpoint();
        }
        self.store_acknowledged(consumer);
        self.metrics.heartbeats.fetch_add(1, Relaxed);
    }

    /// Stores the positions of the newest checkpoint the writer has
    /// acknowledged, for the partitions still consumed.
    fn store_acknowledged(&mut self, consumer: &BaseConsumer<OutletContext>) {
        let acked = self.acks.acked(self.index);
        let mut newest = None;
        while self.checkpoints.front().is_some_and(|(t, _)| *t <= acked) {
            newest = self.checkpoints.pop_front().map(|(_, p)| p);
        }
        let Some(positions) = newest else { return };
        if positions.is_empty() {
            return;
        }
        let topic = consumer.context().topic.clone();
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in &positions {
            if self.positions.contains_key(&partition) {
                let _ = list.add_partition_offset(&topic, partition, Offset::Offset(next));
            }
        }
        if list.count() == 0 {
            return;
        }
        match consumer.store_offsets(&list) {
            Ok(()) => self.outlet.offsets_stored.fetch_add(1, Relaxed),
            Err(e) => {
                if let Some(held_back) = self.logs.allow(Instant::now()) {
                    warn!(shard = self.index, held_back, "kafka: offsets not stored: {e}");
                }
                self.outlet.offset_store_errors.fetch_add(1, Relaxed)
            }
        };
    }

    /// Hands everything over with its sums as buffers free up, and waits
    /// up to `wait` in all for the store to take it; then stores the
    /// offsets. Whether it was all taken.
    fn settle(&mut self, consumer: &BaseConsumer<OutletContext>, wait: Duration) -> bool {
        let started = Instant::now();
        while !self.sink.hand_over_all() && started.elapsed() < wait {
            std::thread::sleep(ACK_WAIT_STEP);
        }
        if !self.sink.is_idle() {
            // The store kept every buffer: the positions taken since the
            // last checkpoint are not covered, and stay unstored.
            self.store_acknowledged(consumer);
            return false;
        }
        self.checkpoint();
        let ticket = self.sink.tickets();
        while self.acks.acked(self.index) < ticket && started.elapsed() < wait {
            std::thread::sleep(ACK_WAIT_STEP);
        }
        self.store_acknowledged(consumer);
        self.acks.acked(self.index) >= ticket
    }

    /// Partitions go to another member: what was taken from them is
    /// stored and committed first.
    fn revoke(&mut self, consumer: &BaseConsumer<OutletContext>, partitions: &TopicPartitionList) {
        let started = Instant::now();
        let gone: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
        info!(shard = self.index, partitions = ?gone, "kafka: revoking: the rows taken go to the store first");
        if !self.settle(consumer, self.revoke_wait) {
            self.outlet.revoke_waits_expired.fetch_add(1, Relaxed);
            warn!(
                shard = self.index,
                "kafka: partitions revoked before the store took their rows ({} ms): the next owner reads them again",
                self.revoke_wait.as_millis()
            );
        }
        if !consumer.assignment_lost() {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
                    warn!(shard = self.index, "kafka: commit at revocation: {e}");
                }
            }
        }
        for p in &gone {
            self.positions.remove(p);
            for (_, positions) in self.checkpoints.iter_mut() {
                positions.remove(p);
            }
        }
        self.outlet.partitions_revoked.fetch_add(gone.len() as u64, Relaxed);
        self.partitions = self.partitions.saturating_sub(gone.len() as u64);
        info!(shard = self.index, partitions = ?gone, took_ms = started.elapsed().as_millis() as u64, "kafka: partitions revoked");
    }

    fn assigned(&mut self, partitions: &TopicPartitionList) {
        let n = partitions.count() as u64;
        self.outlet.partitions_assigned.fetch_add(n, Relaxed);
        self.partitions += n;
        self.assignment_changed = true;
        let got: Vec<i32> = partitions.elements().iter().map(|e| e.partition()).collect();
        info!(shard = self.index, partitions = ?got, "kafka: partitions assigned");
    }

    /// Whether `in_flight_max` batches wait for the store, or a full batch
    /// waits in the sink for a buffer.
    fn at_bound(&self) -> bool {
        self.sink.tickets().saturating_sub(self.acks.acked(self.index)) >= self.in_flight_max || self.sink.holds_back()
    }

    /// Pauses the shard's partitions while too many batches wait for the
    /// store (or a full one for a buffer); resumes them once half have
    /// been taken and the sink holds nothing back.
    fn pace(&mut self, consumer: &BaseConsumer<OutletContext>) {
        let in_flight = self.sink.tickets().saturating_sub(self.acks.acked(self.index));
        self.in_flight = in_flight;
        let pause = self.at_bound();
        let resume = in_flight <= self.in_flight_max / 2 && !self.sink.holds_back();
        if (pause && (!self.paused || self.assignment_changed)) || (self.paused && resume) {
            let Ok(assignment) = consumer.assignment() else { return };
            let done = if pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
            if done.is_ok() {
                if pause && !self.paused {
                    self.outlet.pauses.fetch_add(1, Relaxed);
                }
                self.paused = pause;
                self.assignment_changed = false;
            }
        }
        if !self.paused {
            self.assignment_changed = false;
        }
    }

    /// A stop: parked data goes, everything is handed over, and the
    /// offsets the store acknowledges within `wait` are stored and committed.
    fn finish(&mut self, consumer: Option<&BaseConsumer<OutletContext>>, wait: Duration) {
        self.decoder.flush_pending();
        let Some(consumer) = consumer else {
            self.sink.flush();
            return;
        };
        if !self.settle(consumer, wait) {
            warn!(
                shard = self.index,
                "kafka: the store did not take every row within run.drain_timeout_ms: the group reads them again"
            );
        }
        // What is still here (after a settle that ran out) goes to the
        // writer, which spools what it cannot insert; its offsets stay
        // unstored. The enriched output drains.
        self.sink.flush();
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            if !matches!(e, KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) {
                warn!(shard = self.index, "kafka: commit at stop: {e}");
            }
        }
    }

    fn publish(&mut self) {
        let put_off = self.sink.put_off();
        self.outlet.handovers_put_off.fetch_add(put_off - self.put_off, Relaxed);
        self.put_off = put_off;
        let (m, c) = (&self.metrics, &self.counts);
        m.datagrams.store(c.records, Relaxed);
        m.bytes.store(c.bytes, Relaxed);
        m.updates_sent.store(c.updates_sent, Relaxed);
        m.updates_dropped.store(c.updates_dropped, Relaxed);
        m.updates_applied.store(c.updates_applied, Relaxed);
        m.sink_flows.store(self.sink.flows(), Relaxed);
        m.publish_decoder(self.decoder.counters());
        let o = &self.outlet;
        for (gauge, value) in [(&o.records, c.records), (&o.assigned, self.partitions), (&o.in_flight, self.in_flight)]
        {
            if let Some(g) = gauge.get(self.index) {
                g.store(value, Relaxed);
            }
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
