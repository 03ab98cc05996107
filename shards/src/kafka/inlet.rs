//! `weir inlet`'s per-shard producer: one record per datagram to the
//! shard's partition, a spill behind it (see the module above).

use std::cell::Cell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::Message;
use tracing::{error, info, warn};
use weir_core::config::{FlowsKafkaConfig, Partitioning};
use weir_core::rawflow::{self, RawFlow};
use weir_core::Datagram;

use super::metrics::{InletDrop, InletMetrics};
use super::spill::{Spill, SpillError};
use super::{logged_context, ClientLog};
use crate::ops::logging::Limiter;

/// Longest a housekeeping tick spends replaying the spill (the shard's
/// sockets wait meanwhile).
const REPLAY_SLICE: Duration = Duration::from_millis(20);

pub struct Deliveries {
    metrics: Arc<InletMetrics>,
    log: ClientLog,
    /// At a stop, the records purged from the producer, with their
    /// sequence numbers (the shard spills them, in order).
    purged: Mutex<Vec<(usize, Vec<u8>)>>,
}

logged_context!(Deliveries);

impl ProducerContext for Deliveries {
    /// The record's sequence number within its shard.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sequence: usize) {
        match result {
            Ok(_) => {
                self.metrics.delivered.fetch_add(1, Relaxed);
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight), m)) => {
                let payload = m.payload().unwrap_or_default().to_vec();
                if let Ok(mut purged) = self.purged.lock() {
                    purged.push((sequence, payload));
                }
            }
            Err((e, _)) => {
                self.metrics.delivery_errors.fetch_add(1, Relaxed);
                if let Some(held_back) = self.log.allow() {
                    error!(held_back, "kafka: record not delivered: {e}");
                }
            }
        }
    }
}

/// The control-plane side: makes each shard's producer.
pub struct InletWriter {
    config: FlowsKafkaConfig,
    topic: String,
    /// The topic's partitions, when the brokers answered at start.
    partitions: Option<usize>,
    metrics: Arc<InletMetrics>,
    log_lines_per_minute: u32,
    drain_timeout: Duration,
    next_shard: Cell<usize>,
}

impl InletWriter {
    /// Checks the configuration against the brokers (the topic's
    /// partitions; a broker away at start is only a warning: the shards
    /// spill until it comes).
    pub fn start(
        config: &FlowsKafkaConfig,
        shards: usize,
        metrics: Arc<InletMetrics>,
        log_lines_per_minute: u32,
        drain_timeout: Duration,
    ) -> Result<InletWriter, String> {
        let topic = rawflow::topic(&config.topic);
        let probe = producer(config, metrics.clone(), log_lines_per_minute)?;
        let partitions = match probe.client().fetch_metadata(Some(&topic), Duration::from_secs(5)) {
            Ok(m) => match m.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Some(t.partitions().len()),
                _ => {
                    return Err(format!(
                        "kafka: topic {topic} does not exist on {}: create it with {shards} or more partitions \
                         (one per inlet shard)",
                        config.brokers
                    ))
                }
            },
            Err(e) => {
                warn!("kafka: brokers {} did not answer ({e}): partition = shard index until they do", config.brokers);
                None
            }
        };
        match partitions {
            Some(n) if n < shards && config.partitioning == Partitioning::Shard => warn!(
                "kafka: topic {topic} has {n} partitions for {shards} shards: shards share partitions (shard % {n})"
            ),
            Some(n) => info!("kafka: producing to {topic} ({n} partitions) on {}", config.brokers),
            None => {}
        }
        Ok(InletWriter {
            config: config.clone(),
            topic,
            partitions,
            metrics,
            log_lines_per_minute,
            drain_timeout,
            next_shard: Cell::new(0),
        })
    }

    /// The next shard's producer and spill.
    pub fn shard(&self) -> Result<InletShard, String> {
        let index = self.next_shard.get();
        self.next_shard.set(index + 1);
        let c = &self.config;
        let partition = match c.partitioning {
            Partitioning::Shard => Some((index % self.partitions.unwrap_or(usize::MAX)) as i32),
            Partitioning::Exporter => None,
        };
        let spill = if c.spill_dir.as_os_str().is_empty() {
            None
        } else {
            let dir = c.spill_dir.join(format!("shard-{index}"));
            let spill =
                Spill::open(&dir, c.spill_bytes_max).map_err(|e| format!("kafka.spill_dir {}: {e}", dir.display()))?;
            if !spill.is_empty() {
                info!(
                    shard = index,
                    "kafka: {} bytes of records left in {} are sent first",
                    spill.bytes(),
                    dir.display()
                );
            }
            self.metrics.spill_bytes[index].store(spill.bytes(), Relaxed);
            Some(spill)
        };
        Ok(InletShard {
            producer: producer(c, self.metrics.clone(), self.log_lines_per_minute)?,
            topic: self.topic.clone(),
            partition,
            index,
            record: RawFlow::default(),
            replaying: RawFlow::default(),
            bytes: Vec::with_capacity(2048),
            spilled: Vec::with_capacity(2048),
            held: false,
            sequence: 0,
            spill,
            wait: Duration::from_millis(c.backpressure_wait_ms),
            drain_timeout: self.drain_timeout,
            metrics: self.metrics.clone(),
            logged: Limiter::new(self.log_lines_per_minute),
        })
    }
}

fn producer(
    config: &FlowsKafkaConfig,
    metrics: Arc<InletMetrics>,
    log_lines_per_minute: u32,
) -> Result<ThreadedProducer<Deliveries>, String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", "weir-inlet")
        .set("compression.codec", config.compression.codec())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Never given up on: the spill and the queue bound what waits.
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", config.queue_messages_max.to_string())
        .set("queue.buffering.max.kbytes", (config.queue_bytes_max / 1024).max(1).to_string())
        .set("linger.ms", config.linger_ms.to_string());
    for (key, value) in &config.options {
        c.set(key, value);
    }
    let context = Deliveries { metrics, log: ClientLog::new(log_lines_per_minute), purged: Mutex::default() };
    c.create_with_context(context).map_err(|e| format!("kafka: {e}"))
}

/// Whether the producer took a record.
enum Sent {
    Taken,
    Full,
    Refused,
}

/// One shard's producer, partition and spill.
pub struct InletShard {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    /// None: keyed by exporter.
    partition: Option<i32>,
    index: usize,
    record: RawFlow,
    /// A spilled record read back (for its exporter).
    replaying: RawFlow,
    bytes: Vec<u8>,
    /// The spill's oldest record, read but not taken yet when `held`.
    spilled: Vec<u8>,
    held: bool,
    /// The next record's number (the delivery opaque: purged records are
    /// put back in order).
    sequence: usize,
    spill: Option<Spill>,
    wait: Duration,
    drain_timeout: Duration,
    metrics: Arc<InletMetrics>,
    logged: Limiter,
}

impl InletShard {
    /// Wraps and produces one datagram (behind the spill when it holds
    /// records).
    pub fn datagram(&mut self, d: &Datagram) {
        self.metrics.records.fetch_add(1, Relaxed);
        self.record.set(d, self.index as u32);
        self.record.write(&mut self.bytes);
        if self.spilling() {
            self.spill_record();
            return;
        }
        let deadline = Instant::now() + self.wait;
        loop {
            match send(&self.producer, &self.topic, self.partition, &d.exporter, &self.bytes, self.sequence) {
                Sent::Taken => {
                    self.sequence += 1;
                    self.metrics.produced.fetch_add(1, Relaxed);
                    return;
                }
                Sent::Refused => {
                    self.refused();
                    return;
                }
                Sent::Full if Instant::now() < deadline => {
                    self.metrics.backpressure_waits.fetch_add(1, Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Sent::Full => {
                    self.spill_record();
                    return;
                }
            }
        }
    }

    fn spilling(&self) -> bool {
        self.held || self.spill.as_ref().is_some_and(|s| !s.is_empty())
    }

    fn spill_record(&mut self) {
        let Some(spill) = &mut self.spill else {
            self.metrics.lose(InletDrop::QueueFull, 1);
            return;
        };
        match spill.push(&self.bytes) {
            Ok(()) => {
                self.metrics.spilled.fetch_add(1, Relaxed);
            }
            Err(e) => {
                let reason = match e {
                    SpillError::Full => InletDrop::SpillFull,
                    SpillError::Io(_) => InletDrop::SpillError,
                };
                self.metrics.lose(reason, 1);
                if let Some(held_back) = self.logged.allow(Instant::now()) {
                    error!(shard = self.index, held_back, reason = reason.label(), "kafka: record dropped: {e}");
                }
            }
        }
    }

    fn refused(&mut self) {
        self.metrics.lose(InletDrop::Refused, 1);
        if let Some(held_back) = self.logged.allow(Instant::now()) {
            error!(shard = self.index, held_back, "kafka: the producer refused a record");
        }
    }

    /// Housekeeping: replays the spill while the producer takes records
    /// (for up to `REPLAY_SLICE`), and publishes the gauges.
    pub fn tick(&mut self) {
        self.replay(Instant::now() + REPLAY_SLICE);
        self.publish();
    }

    fn publish(&self) {
        let spilled =
            self.spill.as_ref().map_or(0, |s| s.bytes()) + if self.held { self.spilled.len() as u64 + 4 } else { 0 };
        self.metrics.spill_bytes[self.index].store(spilled, Relaxed);
        self.metrics.queue[self.index].store(self.producer.in_flight_count().max(0) as u64, Relaxed);
    }

    fn replay(&mut self, until: Instant) {
        let Some(spill) = &mut self.spill else { return };
        let _ = spill.flush();
        let torn = spill.torn;
        loop {
            if !self.held {
                match spill.pop(&mut self.spilled) {
                    Ok(true) => self.held = true,
                    Ok(false) => break,
                    Err(e) => {
                        self.metrics.lose(InletDrop::SpillError, 1);
                        if let Some(held_back) = self.logged.allow(Instant::now()) {
                            error!(shard = self.index, held_back, "kafka: spill not read: {e}");
                        }
                        break;
                    }
                }
            }
            // Keyed by exporter: the spilled record's own.
            let key = match self.partition {
                Some(_) => &[][..],
                None => match self.replaying.read(&self.spilled) {
                    Ok(()) => &self.replaying.exporter[..],
                    Err(_) => &[][..],
                },
            };
            match send(&self.producer, &self.topic, self.partition, key, &self.spilled, self.sequence) {
                Sent::Taken => {
                    self.sequence += 1;
                    self.held = false;
                    self.metrics.produced.fetch_add(1, Relaxed);
                    self.metrics.replayed.fetch_add(1, Relaxed);
                }
                Sent::Refused => {
                    self.held = false;
                    self.metrics.lose(InletDrop::Refused, 1);
                }
                Sent::Full => break,
            }
            if Instant::now() >= until {
                break;
            }
        }
        self.metrics.lose(InletDrop::Torn, spill.torn - torn);
    }

    /// Stop: replays what the spill holds while the brokers take it, then
    /// waits for the producer to deliver (both within the drain timeout).
    /// What the producer still holds then is taken back (purged) and put in
    /// front of the spill, in order, with the record the replay held: the
    /// next start sends it first (a purged in-flight record may have been
    /// delivered already: at least once). Without a spill it is lost,
    /// counted.
    pub fn flush(&mut self) {
        let deadline = Instant::now() + self.drain_timeout;
        while self.spilling() && Instant::now() < deadline {
            self.replay(deadline);
            if self.spilling() {
                self.producer.poll(Duration::from_millis(10));
            }
        }
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        if let Err(e) = self.producer.flush(left) {
            let queued = self.producer.in_flight_count().max(0) as u64;
            if self.spill.is_some() {
                self.take_back();
            }
            let lost = self.producer.in_flight_count().max(0) as u64;
            if lost > 0 {
                self.metrics.lose(InletDrop::Stopped, lost);
                error!(shard = self.index, "kafka: {lost} records not delivered at stop: {e}");
            } else {
                info!(shard = self.index, "kafka: {queued} records not delivered at stop kept in the spill: {e}");
            }
        }
        if let Some(spill) = &mut self.spill {
            if self.held {
                self.held = false;
                if let Err(e) = spill.prepend([&self.spilled[..]]) {
                    self.metrics.lose(InletDrop::SpillError, 1);
                    error!(shard = self.index, "kafka: a record not spilled at stop: {e}");
                }
            }
            let _ = spill.flush();
        }
        self.publish();
    }

    /// Purges the producer and puts its records in front of the spill.
    fn take_back(&mut self) {
        let Some(spill) = &mut self.spill else { return };
        self.producer.purge(PurgeConfig::default().queue().inflight());
        // The purged records' reports, through the producer's poll thread.
        let _ = self.producer.flush(Duration::from_secs(5));
        let mut purged = std::mem::take(&mut *self.producer.context().purged.lock().unwrap_or_else(|e| e.into_inner()));
        purged.sort_unstable_by_key(|p| p.0);
        let n = purged.len() as u64;
        match spill.prepend(purged.iter().map(|p| &p.1[..])) {
            Ok(()) => {
                self.metrics.spilled.fetch_add(n, Relaxed);
                // Produced once, spilled now: replayed (and produced) again.
            }
            Err(e) => {
                self.metrics.lose(InletDrop::SpillError, n);
                error!(shard = self.index, "kafka: {n} records not spilled at stop: {e}");
            }
        }
    }
}

/// Enqueues one record (`sequence`: its number in the shard): to the
/// shard's partition, or keyed by exporter.
fn send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    bytes: &[u8],
    sequence: usize,
) -> Sent {
    let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, sequence).payload(bytes);
    record = match partition {
        Some(p) => record.partition(p),
        None => record.key(key),
    };
    match producer.send(record) {
        Ok(()) => Sent::Taken,
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Sent::Full,
        Err(_) => Sent::Refused,
    }
}
