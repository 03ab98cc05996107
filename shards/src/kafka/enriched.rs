//! The enriched output (`[kafka.enriched]`): each shard writes the flows it
//! hands to the store as protobuf `FlowMessage`s (`weir_core::flowproto`),
//! length-delimited, many to a Kafka record, and produces them to
//! `<topic>-<schema hash>` with a producer of its own.
//!
//! At most once, by design: it is a copy for other consumers, and the
//! store path never waits for it. A record the producer's queue has no
//! room for is dropped, counted with its flows
//! (`weir_enriched_flows_dropped_total{reason}`); so is one the brokers
//! refuse for good. A stop flushes what is queued, within the drain
//! timeout.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::DescriptorEncoder;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use tracing::{error, info, warn};
use weir_core::columns::Columns;
use weir_core::config::FlowsKafkaConfig;
use weir_core::flowproto::FlowProto;

use super::{logged_context, ClientLog};
use crate::ops::exposition::{counter_by, counters_of, Exported};

/// Why enriched flows were lost (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrichedDrop {
    /// The shard's producer queue was full (`kafka.enriched.queue_bytes_max`).
    QueueFull,
    /// librdkafka refused the record (larger than `message.max.bytes`, a
    /// fatal producer error).
    Refused,
    /// The brokers did not take it (after librdkafka's retries).
    Delivery,
    /// Still queued when the drain timeout ended a stop.
    Stopped,
}

impl EnrichedDrop {
    pub const ALL: [EnrichedDrop; 4] =
        [EnrichedDrop::QueueFull, EnrichedDrop::Refused, EnrichedDrop::Delivery, EnrichedDrop::Stopped];

    pub fn label(self) -> &'static str {
        match self {
            EnrichedDrop::QueueFull => "queue_full",
            EnrichedDrop::Refused => "refused",
            EnrichedDrop::Delivery => "delivery",
            EnrichedDrop::Stopped => "stopped",
        }
    }
}

/// The enriched output's counters, all shards together.
#[derive(Default)]
pub struct EnrichedMetrics {
    /// Records handed to a producer, and the flows and bytes in them.
    pub records: AtomicU64,
    pub flows: AtomicU64,
    pub bytes: AtomicU64,
    /// Records and flows the brokers acknowledged.
    pub delivered_records: AtomicU64,
    pub delivered_flows: AtomicU64,
    pub dropped: [AtomicU64; EnrichedDrop::ALL.len()],
}

impl EnrichedMetrics {
    fn lose(&self, reason: EnrichedDrop, flows: u64) {
        self.dropped[reason as usize].fetch_add(flows, Relaxed);
    }
}

impl Exported for EnrichedMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let m = self;
        let counters: [(&str, &str, &AtomicU64); 5] = [
            ("weir_enriched_records", "Enriched-flow records handed to a producer.", &m.records),
            ("weir_enriched_flows", "Enriched flows in the records handed to a producer.", &m.flows),
            ("weir_enriched_bytes", "Bytes of protobuf messages in those records.", &m.bytes),
            (
                "weir_enriched_records_delivered",
                "Enriched-flow records the brokers acknowledged.",
                &m.delivered_records,
            ),
            (
                "weir_enriched_flows_delivered",
                "Enriched flows in the records the brokers acknowledged.",
                &m.delivered_flows,
            ),
        ];
        counters_of(e, &counters)?;
        let drops = EnrichedDrop::ALL.map(|r| (r.label(), m.dropped[r as usize].load(Relaxed)));
        counter_by(
            e,
            "weir_enriched_flows_dropped",
            "Enriched flows not produced (at most once), by reason.",
            "reason",
            &drops,
        )
    }
}

/// Delivery reports: counted, a record's flows are its opaque.
pub struct Deliveries {
    metrics: Arc<EnrichedMetrics>,
    log: ClientLog,
}

logged_context!(Deliveries);

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, flows: usize) {
        match result {
            Ok(_) => {
                self.metrics.delivered_records.fetch_add(1, Relaxed);
                self.metrics.delivered_flows.fetch_add(flows as u64, Relaxed);
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight), _)) => {
                self.metrics.lose(EnrichedDrop::Stopped, flows as u64);
            }
            Err((e, _)) => {
                self.metrics.lose(EnrichedDrop::Delivery, flows as u64);
                if let Some(held_back) = self.log.allow() {
                    error!(held_back, "kafka: enriched flows not delivered: {e}");
                }
            }
        }
    }
}

/// The control-plane side: the schema, the topic, and each shard's producer.
pub struct EnrichedOutput {
    kafka: FlowsKafkaConfig,
    topic: String,
    proto: Arc<FlowProto>,
    metrics: Arc<EnrichedMetrics>,
    log_lines_per_minute: u32,
    drain_timeout: Duration,
}

impl EnrichedOutput {
    /// Names the topic after the schema and, with
    /// `kafka.enriched.create_partitions`, creates it when the brokers do
    /// not have it. A topic that could not be made, a missing one and
    /// brokers away are warnings: the store path goes on.
    pub fn start(
        kafka: &FlowsKafkaConfig,
        proto: FlowProto,
        metrics: Arc<EnrichedMetrics>,
        log_lines_per_minute: u32,
        drain_timeout: Duration,
    ) -> Result<EnrichedOutput, String> {
        let c = &kafka.enriched;
        let topic = proto.topic(&c.topic);
        let probe = producer(kafka, metrics.clone(), log_lines_per_minute)?;
        if c.create_partitions > 0 {
            // Asked for before any metadata request: a broker that creates
            // topics on a producer's request would make it its own way.
            if let Err(e) = create_topic(kafka, &topic) {
                warn!("{e}: enriched flows are dropped until the topic exists");
            }
        } else {
            match probe.client().fetch_metadata(Some(&topic), Duration::from_secs(5)) {
                Ok(m) if m.topics().iter().any(|t| t.name() == topic && t.error().is_none()) => {}
                Ok(_) => warn!(
                    "kafka: topic {topic} does not exist on {} (kafka.enriched.create_partitions = 0): \
                     enriched flows are dropped until it does",
                    kafka.brokers
                ),
                Err(e) => warn!("kafka: brokers {} did not answer ({e}); enriched flows wait for them", kafka.brokers),
            }
        }
        info!("kafka: enriched flows to {topic} (schema at /api/v0/schema.proto)");
        Ok(EnrichedOutput {
            kafka: kafka.clone(),
            topic,
            proto: Arc::new(proto),
            metrics,
            log_lines_per_minute,
            drain_timeout,
        })
    }

    /// A shard's producer and buffers.
    pub fn shard(&self, index: usize) -> Result<EnrichedShard, String> {
        Ok(EnrichedShard {
            producer: producer(&self.kafka, self.metrics.clone(), self.log_lines_per_minute)?,
            topic: self.topic.clone(),
            proto: self.proto.clone(),
            record_bytes: self.kafka.enriched.record_bytes_max,
            out: Vec::new(),
            records: Vec::new(),
            metrics: self.metrics.clone(),
            index,
            drain_timeout: self.drain_timeout,
        })
    }
}

fn create_topic(kafka: &FlowsKafkaConfig, topic: &str) -> Result<(), String> {
    let c = &kafka.enriched;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in kafka.options.iter().chain(&c.options) {
        config.set(key, value);
    }
    let replication = TopicReplication::Fixed(i32::from(c.create_replication));
    super::create_topic(&config, &NewTopic::new(topic, c.create_partitions as i32, replication))
}

fn producer(
    kafka: &FlowsKafkaConfig,
    metrics: Arc<EnrichedMetrics>,
    log_lines_per_minute: u32,
) -> Result<ThreadedProducer<Deliveries>, String> {
    let c = &kafka.enriched;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &kafka.brokers)
        .set("client.id", "weir-enriched")
        .set("compression.codec", c.compression.codec())
        .set("queue.buffering.max.kbytes", (c.queue_bytes_max / 1024).max(1).to_string())
        .set("linger.ms", c.linger_ms.to_string())
        // A record is about record_bytes_max; the largest message may pass it.
        .set("message.max.bytes", (c.record_bytes_max * 2 + (64 << 10)).max(1_000_000).to_string());
    for (key, value) in kafka.options.iter().chain(&c.options) {
        config.set(key, value);
    }
    let context = Deliveries { metrics, log: ClientLog::new(log_lines_per_minute) };
    config.create_with_context(context).map_err(|e| format!("kafka: {e}"))
}

/// One shard's producer and message buffers.
pub struct EnrichedShard {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    proto: Arc<FlowProto>,
    record_bytes: usize,
    out: Vec<u8>,
    /// Each record's end in `out` and its flows.
    records: Vec<(usize, u32)>,
    metrics: Arc<EnrichedMetrics>,
    index: usize,
    drain_timeout: Duration,
}

impl EnrichedShard {
    /// Writes `columns`' rows (their records resolved) and produces them,
    /// a record per `record_bytes_max`. Never waits.
    pub fn rows(&mut self, columns: &Columns) {
        if columns.is_empty() {
            return;
        }
        self.out.clear();
        self.records.clear();
        self.proto.write_rows(columns, self.record_bytes, &mut self.out, &mut self.records);
        let mut start = 0;
        for &(end, flows) in &self.records {
            let bytes = &self.out[start..end];
            let flows = flows as usize;
            start = end;
            let record: BaseRecord<'_, (), [u8], usize> = BaseRecord::with_opaque_to(&self.topic, flows).payload(bytes);
            match self.producer.send(record) {
                Ok(()) => {
                    self.metrics.records.fetch_add(1, Relaxed);
                    self.metrics.flows.fetch_add(flows as u64, Relaxed);
                    self.metrics.bytes.fetch_add(bytes.len() as u64, Relaxed);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.metrics.lose(EnrichedDrop::QueueFull, flows as u64);
                }
                Err(_) => self.metrics.lose(EnrichedDrop::Refused, flows as u64),
            }
        }
    }

    /// At a stop: what is queued goes, within the drain timeout; what is
    /// left then is purged (its flows counted `stopped` by the reports).
    pub fn flush(&mut self) {
        if let Err(e) = self.producer.flush(self.drain_timeout) {
            let left = self.producer.in_flight_count().max(0);
            error!(shard = self.index, "kafka: {left} enriched-flow records not delivered at stop: {e}");
            self.producer.purge(PurgeConfig::default().queue().inflight());
            // The purged records' reports, through the producer's poll thread.
            let _ = self.producer.flush(Duration::from_secs(5));
        }
    }
}
