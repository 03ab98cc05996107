//! Templates and sampling rates shared between outlets
//! (`kafka.outlet.share_state`): a compacted topic, `<kafka.topic>-state-v1`.
//!
//! An exporter's datagrams can reach several outlets (partitioning by
//! shard, an exporter whose source port changes, a partition that moves to
//! another outlet in a rebalance), and NetFlow v9 and IPFIX data decodes
//! only with its template. Within an outlet the shards exchange their
//! decoders' changes through their inboxes (`receive::shard::Exchange`);
//! this thread holds one more inbox, so it sees every change the outlet's
//! shards make, and produces each, keyed by what it describes (a template:
//! protocol, exporter, domain, id), to the state topic. It also reads the
//! topic from its start (no group: every outlet reads all of it) and hands
//! the other outlets' changes to its shards' inboxes. At start it reads up
//! to the topic's end before the shards run, so a partition that moves to
//! this outlet later finds the templates already here (brokers that do not
//! answer then: the start goes on, and the thread reads the topic once
//! they do). Data that arrives
//! before its template waits in the decoder (`decoder.pending_*`), as in
//! `weir run`, and is released when the template comes from any outlet.
//!
//! The topic is compacted: per key the newest value stays, so a new outlet
//! reads one record per template and sampler, not the history. A record is
//! `weir_core::wire::state::SharedUpdate` in JSON (`origin`: random per
//! process, so an outlet skips its own); fuzz target `state_record`.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::encoding::DescriptorEncoder;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};
use weir_core::config::FlowsKafkaConfig;
use weir_core::wire::state::{SharedUpdate, StateUpdate};

use crate::ops::exposition::{counters_of, Exported};
use crate::receive::shard::Inboxes;

/// How long the start waits to read the topic to its end, at most.
const CATCH_UP_MAX: Duration = Duration::from_secs(30);

/// The state topic of `kafka.topic`.
pub fn topic(base: &str) -> String {
    format!("{base}-state-v1")
}

/// The sharing's counters.
#[derive(Default)]
pub struct StateShareMetrics {
    /// This outlet's changes produced to the topic.
    pub produced: AtomicU64,
    /// Changes the producer's queue refused (the topic misses them until
    /// the exporter sends them again).
    pub produce_errors: AtomicU64,
    /// Other outlets' changes handed to this outlet's shards.
    pub received: AtomicU64,
    /// Records of the topic that are not a change this outlet reads (another
    /// writer, a newer Weir), skipped.
    pub malformed: AtomicU64,
    /// Changes not handed to a shard whose inbox was full.
    pub inbox_full: AtomicU64,
}

impl Exported for StateShareMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let m = self;
        let counters: [(&str, &str, &AtomicU64); 5] = [
            (
                "weir_outlet_state_produced",
                "Template and sampling changes of this outlet produced to the state topic.",
                &m.produced,
            ),
            ("weir_outlet_state_produce_errors", "Changes the state topic's producer refused.", &m.produce_errors),
            ("weir_outlet_state_received", "Other outlets' changes read from the state topic.", &m.received),
            ("weir_outlet_state_malformed", "State topic records that are not a change, skipped.", &m.malformed),
            ("weir_outlet_state_inbox_full", "Changes not handed to a shard whose inbox was full.", &m.inbox_full),
        ];
        counters_of(e, &counters)
    }
}

/// The sharing thread.
pub struct StateShare {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl StateShare {
    /// Creates the topic when missing (one partition, compacted), reads it
    /// to its end into the shards' inboxes (`inboxes[..shards]`; the last
    /// one is this thread's), then shares from a thread of its own.
    pub fn start(
        kafka: &FlowsKafkaConfig,
        inboxes: Inboxes,
        metrics: Arc<StateShareMetrics>,
    ) -> Result<StateShare, String> {
        let topic = topic(&kafka.topic);
        let origin = crate::run::random_seed();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &kafka.brokers);
        for (key, value) in &kafka.options {
            config.set(key, value);
        }
        let producer: BaseProducer = config
            .clone()
            .set("client.id", "weir-outlet-state")
            .set("linger.ms", "20")
            .create()
            .map_err(|e| format!("kafka: {e}"))?;
        let consumer: BaseConsumer = config
            .clone()
            .set("client.id", "weir-outlet-state")
            .set("group.id", format!("weir-outlet-state-{origin:016x}"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| format!("kafka: {e}"))?;
        // A consumer's metadata request creates nothing. Brokers away: no
        // wait at start; the thread reads the topic once they answer.
        let answered = match consumer.fetch_metadata(Some(&topic), Duration::from_secs(3)) {
            Ok(m) => {
                if !m.topics().iter().any(|t| t.name() == topic && t.error().is_none()) {
                    if let Err(e) = create_topic(&config, &topic, kafka.outlet.state_replication) {
                        warn!("kafka: {e}: templates are shared once the topic exists");
                    }
                }
                true
            }
            Err(e) => {
                warn!("kafka: {topic}: brokers did not answer ({e}); templates are shared once they do");
                false
            }
        };
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, 0, Offset::Beginning).map_err(|e| format!("kafka: {e}"))?;
        consumer.assign(&assignment).map_err(|e| format!("kafka: {e}"))?;
        let mut share = Share { topic, origin, producer, consumer, inboxes, metrics };
        if answered {
            share.catch_up();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-state".into())
            .spawn(move || share.run(&stopping))
            .map_err(|e| e.to_string())?;
        Ok(StateShare { stop, thread })
    }

    /// Call after the shards stopped: their last changes go out.
    pub fn stop(self) {
        self.stop.store(true, Relaxed);
        let _ = self.thread.join();
    }
}

struct Share {
    topic: String,
    origin: u64,
    producer: BaseProducer,
    consumer: BaseConsumer,
    inboxes: Inboxes,
    metrics: Arc<StateShareMetrics>,
}

impl Share {
    /// Reads the topic to the end it has now (within `CATCH_UP_MAX`).
    fn catch_up(&mut self) {
        let started = Instant::now();
        let end = match self.consumer.fetch_watermarks(&self.topic, 0, Duration::from_secs(5)) {
            Ok((_, high)) => high,
            Err(e) => return warn!("kafka: {}: {e}; templates come as other outlets share them", self.topic),
        };
        let mut got = Vec::new();
        let mut at = 0;
        while at < end && started.elapsed() < CATCH_UP_MAX {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                at = m.offset() + 1;
                self.read(m.payload(), &mut got);
            }
        }
        let n = got.len();
        self.hand_out(got);
        info!("kafka: {n} template and sampling changes read from {} in {:?}", self.topic, started.elapsed());
    }

    fn run(&mut self, stop: &AtomicBool) {
        let own = self.inboxes.len() - 1;
        loop {
            let stopping = stop.load(Relaxed);
            while let Some(updates) = self.inboxes[own].pop() {
                for u in updates.iter() {
                    self.produce(u);
                }
            }
            if stopping {
                let _ = self.producer.flush(Duration::from_secs(5));
                return;
            }
            self.producer.poll(Duration::ZERO);
            let mut got = Vec::new();
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(50)) {
                self.read(m.payload(), &mut got);
            }
            // Whatever else is there already, in one hand-out.
            while let Some(Ok(m)) = self.consumer.poll(Duration::ZERO) {
                self.read(m.payload(), &mut got);
            }
            self.hand_out(got);
        }
    }

    fn produce(&mut self, u: &StateUpdate) {
        let Ok(value) = serde_json::to_vec(&SharedUpdate { origin: self.origin, update: u.clone() }) else { return };
        let key = u.key();
        let record = BaseRecord::<str, [u8]>::to(&self.topic).partition(0).key(&key).payload(&value);
        match self.producer.send(record) {
            Ok(()) => self.metrics.produced.fetch_add(1, Relaxed),
            Err(_) => self.metrics.produce_errors.fetch_add(1, Relaxed),
        };
    }

    /// Another outlet's change from a record's bytes; this one's and
    /// malformed ones skipped.
    fn read(&self, payload: Option<&[u8]>, got: &mut Vec<StateUpdate>) {
        match payload.map(serde_json::from_slice::<SharedUpdate>) {
            Some(Ok(r)) if r.origin == self.origin => {}
            Some(Ok(r)) => {
                self.metrics.received.fetch_add(1, Relaxed);
                got.push(r.update);
            }
            // A tombstone (no value): nothing to apply.
            None => {}
            Some(Err(_)) => {
                self.metrics.malformed.fetch_add(1, Relaxed);
            }
        }
    }

    fn hand_out(&self, got: Vec<StateUpdate>) {
        if got.is_empty() {
            return;
        }
        let updates: Arc<[StateUpdate]> = got.into();
        let own = self.inboxes.len() - 1;
        for inbox in &self.inboxes[..own] {
            if inbox.push(updates.clone()).is_err() {
                self.metrics.inbox_full.fetch_add(updates.len() as u64, Relaxed);
            }
        }
    }
}

fn create_topic(config: &ClientConfig, topic: &str, replication: u16) -> Result<(), String> {
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(i32::from(replication))).set("cleanup.policy", "compact");
    super::create_topic(config, &new)
}

#[cfg(test)]
mod tests {
    use weir_core::wire::state::{SamplerSnapshot, SharedUpdate, StateUpdate};
    use weir_core::wire::template::Protocol;

    #[test]
    fn a_template_and_its_withdrawal_share_a_key_and_records_read_back() {
        let exporter: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let withdraw = StateUpdate::Withdraw {
            protocol: Protocol::Ipfix,
            exporter,
            domain: 7,
            template_id: 256,
            all_options: None,
        };
        assert_eq!(withdraw.key(), format!("t/{:?}/192.0.2.1/7/256", Protocol::Ipfix));
        let sampler = StateUpdate::Sampler(SamplerSnapshot {
            protocol: Protocol::NetflowV9,
            exporter,
            domain: 0,
            sampler_id: 3,
            sampling_rate: 1000,
        });
        let bytes = serde_json::to_vec(&SharedUpdate { origin: 9, update: sampler.clone() }).unwrap();
        let back: SharedUpdate = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((back.origin, back.update), (9, sampler));
    }
}
