//! HAProxy's access logs: a unix datagram socket in, Kafka out (and the
//! store, with `haproxy.store`), nothing lost without a counter saying so.
//!
//! ```text
//!  HAProxy ── log /run/weir/haproxy-log.sock format rfc5424 ──▶ LogSocket
//!      │ recvmmsg batches on the log shard (a thread pinned to haproxy.core)
//!  accesslog::Format::render ── ok ──▶ topic: one JSON object per request
//!      │ error (reason) ──▶ dead_letter_topic: {"reason","detail","raw"}
//!  rdkafka ThreadedProducer (acks=all, idempotent) ── delivery reports ──▶ counters,
//!      delay histogram (log timestamp → acknowledgement)
//! ```
//!
//! With `haproxy.store`, each parsed line's typed values also become a
//! row of the store's `http_requests` table and its rollups
//! (`store::http::HttpSink`), handed to the store writer without waiting.
//!
//! Backpressure: when the producer's local queue is full, the shard stops
//! reading for up to `kafka.backpressure_wait_ms` (the socket queue fills
//! meanwhile, then HAProxy's sends fail), and only then drops a message,
//! counted. Loss HAProxy sees (its sends failing) shows as gaps in its
//! request counter, counted per host and process (`counter`).

pub mod counter;
pub mod metrics;
pub mod socket;

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tracing::{error, info, warn};
use weir_core::accesslog::{Format, LineError, LineReason};
use weir_core::config::HaproxyConfig;

use self::counter::{RequestCounters, Tally};
pub use self::metrics::{HaproxyMetrics, ProduceDrop, Topic};
use crate::kafka::{logged_context, ClientLog};
use crate::ops::logging::Limiter;
use crate::store::http::HttpSink;

/// Log timestamp and topic of a message in flight.
struct Sent {
    time_ms: i64,
    topic: Topic,
}

struct Deliveries {
    metrics: Arc<HaproxyMetrics>,
    log: ClientLog,
}

logged_context!(Deliveries);

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        let i = sent.topic as usize;
        match result {
            Ok(_) => {
                self.metrics.delivered[i].fetch_add(1, Relaxed);
                if sent.time_ms > 0 {
                    let delay = now_ms().saturating_sub(sent.time_ms).max(0) as u64;
                    self.metrics.delivery_delay.record(delay, 1);
                }
            }
            Err((e, _)) => {
                self.metrics.delivery_errors[i].fetch_add(1, Relaxed);
                if let Some(held_back) = self.log.allow() {
                    error!(held_back, topic = sent.topic.label(), "kafka: message not delivered: {e}");
                }
            }
        }
    }
}

/// The running input; stopping it flushes the producer.
pub struct HaproxyInput {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HaproxyInput {
    /// Creates the socket and the producer (errors stop start-up), then
    /// starts the log shard on `core`.
    pub fn start(
        config: &HaproxyConfig,
        core: usize,
        metrics: Arc<HaproxyMetrics>,
        log_lines_per_minute: u32,
        drain_timeout: Duration,
        http: Option<HttpSink>,
    ) -> Result<HaproxyInput, String> {
        let producer = producer(config, metrics.clone(), log_lines_per_minute)?;
        let socket = socket::create(config)?;
        let queue_max = socket::max_queue_datagrams();
        info!(
            "haproxy: reading {} (receive buffer {} bytes, queue of {} datagrams: net.unix.max_dgram_qlen), \
             producing to {} on {}",
            socket.path.display(),
            socket.buffer_bytes,
            queue_max,
            config.kafka.topic,
            config.kafka.brokers
        );
        metrics.socket_buffer_bytes.store(socket.buffer_bytes as u64, Relaxed);
        metrics.socket_queue_max.store(queue_max, Relaxed);
        if queue_max < 512 {
            warn!(
                "haproxy: net.unix.max_dgram_qlen is {queue_max}: a burst of more lines than that while Weir \
                 is busy makes HAProxy drop them; raise it (sysctl -w net.unix.max_dgram_qlen=4096) and restart Weir"
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let shard = LogShard {
            format: config.format(),
            config: config.clone(),
            producer,
            metrics,
            socket,
            counters: RequestCounters::new(Duration::from_secs(config.request_counter_wait_s)),
            parse_errors_logged: Limiter::new(log_lines_per_minute),
            drops_logged: Limiter::new(log_lines_per_minute),
            drain_timeout,
            http,
        };
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-haproxy".into())
            .spawn(move || {
                crate::ops::cpu::pin_to(core);
                shard.run(&stop_flag);
            })
            .map_err(|e| e.to_string())?;
        Ok(HaproxyInput { stop, thread: Some(thread) })
    }

    /// Stops reading, waits for the producer to deliver (within the drain
    /// timeout) and removes the socket file.
    pub fn finish(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn producer(
    config: &HaproxyConfig,
    metrics: Arc<HaproxyMetrics>,
    log_lines_per_minute: u32,
) -> Result<ThreadedProducer<Deliveries>, String> {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers)
        .set("client.id", "weir")
        .set("compression.codec", k.compression.codec())
        .set("acks", &k.acks)
        .set("enable.idempotence", k.idempotence.to_string())
        .set("queue.buffering.max.messages", k.queue_messages_max.to_string())
        .set("queue.buffering.max.kbytes", (k.queue_bytes_max / 1024).max(1).to_string())
        .set("linger.ms", k.linger_ms.to_string())
        .set("message.timeout.ms", k.delivery_timeout_ms.to_string());
    for (key, value) in &k.options {
        c.set(key, value);
    }
    let context = Deliveries { metrics, log: ClientLog::new(log_lines_per_minute) };
    c.create_with_context(context).map_err(|e| format!("haproxy.kafka: {e}"))
}

struct LogShard {
    format: Format,
    config: HaproxyConfig,
    producer: ThreadedProducer<Deliveries>,
    metrics: Arc<HaproxyMetrics>,
    socket: socket::LogSocket,
    counters: RequestCounters,
    parse_errors_logged: Limiter,
    drops_logged: Limiter,
    drain_timeout: Duration,
    /// The store's `http_requests` rows (`haproxy.store`).
    http: Option<HttpSink>,
}

impl LogShard {
    fn run(mut self, stop: &AtomicBool) {
        let mut batch = socket::LineBatch::new(self.config.batch_lines, self.config.line_bytes_max);
        let mut json = Vec::with_capacity(4096);
        let mut next_gauges = Instant::now();
        let fd = self.socket.socket.as_raw_fd();
        while !stop.load(Relaxed) {
            self.metrics.heartbeats.fetch_add(1, Relaxed);
            if Instant::now() >= next_gauges {
                next_gauges = Instant::now() + Duration::from_millis(250);
                self.update_gauges();
            }
            let n = match batch.receive(fd) {
                Ok(n) => n,
                Err(e) => {
                    self.metrics.receive_errors.fetch_add(1, Relaxed);
                    if let Some(held_back) = self.drops_logged.allow(Instant::now()) {
                        warn!(held_back, "haproxy: receive failed: {e}");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                    0
                }
            };
            for i in 0..n {
                let (line, cut) = batch.get(i);
                self.take(line, cut, &mut json, stop);
            }
        }
        self.update_gauges();
        // No new lines (HAProxy's sends fail from now until the next
        // instance creates the socket), then take the ones already queued.
        self.socket.unlink();
        while let Ok(n) = batch.receive_now(fd) {
            if n == 0 {
                break;
            }
            for i in 0..n {
                let (line, cut) = batch.get(i);
                self.take(line, cut, &mut json, stop);
            }
        }
        if let Some(http) = &mut self.http {
            http.flush();
        }
        self.update_gauges();
        if let Err(e) = self.producer.flush(self.drain_timeout) {
            warn!("haproxy: {} messages not delivered at stop: {e}", self.producer.in_flight_count());
        }
    }

    /// Adds what the request counters settled or judged to the metrics.
    fn count(&self, tally: Tally) {
        let m = &self.metrics;
        m.lines_lost.fetch_add(tally.lost, Relaxed);
        m.counter_explained.fetch_add(tally.explained, Relaxed);
        m.lines_late.fetch_add(tally.late, Relaxed);
    }

    /// Also settles the request counters' holes that waited long enough.
    fn update_gauges(&mut self) {
        let settled = self.counters.settle(Instant::now());
        self.count(settled);
        self.metrics.counter_missing.store(self.counters.missing(), Relaxed);
        self.metrics.processes.store(self.counters.processes() as u64, Relaxed);
        if let Ok(q) = self.socket.queued_datagrams() {
            self.metrics.socket_queue.store(q, Relaxed);
        }
        self.metrics.producer_queue.store(self.producer.in_flight_count().max(0) as u64, Relaxed);
        if let Some(http) = &mut self.http {
            http.tick();
            self.metrics.store_rows.store(http.handed_over, Relaxed);
            self.metrics.store_rows_dropped.store(http.dropped, Relaxed);
        }
    }

    /// One line: parsed and produced, or dead-lettered.
    fn take(&mut self, line: &[u8], cut: bool, json: &mut Vec<u8>, stop: &AtomicBool) {
        let m = &self.metrics;
        m.lines_received.fetch_add(1, Relaxed);
        m.bytes_received.fetch_add(line.len() as u64, Relaxed);
        let rendered = if cut {
            Err(LineError { reason: LineReason::TooLong, detail: format!("longer than {} bytes", line.len()) })
        } else if let Some(http) = &mut self.http {
            http.begin();
            self.format.render_with(line, json, http)
        } else {
            self.format.render(line, json)
        };
        match rendered {
            Ok(r) => {
                m.lines_parsed.fetch_add(1, Relaxed);
                if let Some(http) = &mut self.http {
                    http.commit();
                }
                m.count_repairs(self.format.invalid_utf8(), &r.repairs);
                if self.format.counts_requests() {
                    let now = Instant::now();
                    if r.counter.is_none() || r.bad_request {
                        m.lines_unnumbered.fetch_add(1, Relaxed);
                    }
                    match r.counter {
                        Some(n) => {
                            let tally = self.counters.numbered(&r.host, &r.procid, n, r.bad_request, now);
                            self.count(tally);
                        }
                        None => self.counters.unnumbered(&r.host, &r.procid, now),
                    }
                }
                let sent = Box::new(Sent { time_ms: r.time_ms, topic: Topic::Main });
                let mut record: Record = BaseRecord::with_opaque_to(&self.config.kafka.topic, sent).payload(&json[..]);
                if let Some(key) = r.key.as_deref() {
                    record = record.key(key.as_bytes());
                }
                send(&self.producer, record, &self.metrics, &self.config, &mut self.drops_logged, stop);
            }
            Err(e) => {
                m.parse_errors[e.reason as usize].fetch_add(1, Relaxed);
                if let Some(held_back) = self.parse_errors_logged.allow(Instant::now()) {
                    warn!(held_back, reason = e.reason.label(), "haproxy: line dead-lettered: {e}");
                }
                json.clear();
                let raw = String::from_utf8_lossy(line);
                let body = serde_json::json!({
                    "reason": e.reason.label(),
                    "detail": e.detail,
                    "raw": raw,
                    "received_ms": now_ms(),
                });
                let _ = serde_json::to_writer(&mut *json, &body);
                let sent = Box::new(Sent { time_ms: 0, topic: Topic::DeadLetter });
                let record = BaseRecord::with_opaque_to(&self.config.kafka.dead_letter_topic, sent)
                    .payload(&json[..])
                    .key(e.reason.label().as_bytes());
                send(&self.producer, record, &self.metrics, &self.config, &mut self.drops_logged, stop);
            }
        }
    }
}

type Record<'a> = BaseRecord<'a, [u8], [u8], Box<Sent>>;

/// Enqueues one message; a full queue is waited out up to the configured
/// backpressure wait (less when stopping), then the message is dropped.
fn send(
    producer: &ThreadedProducer<Deliveries>,
    mut record: Record,
    metrics: &HaproxyMetrics,
    config: &HaproxyConfig,
    drops_logged: &mut Limiter,
    stop: &AtomicBool,
) {
    let topic = record.delivery_opaque.topic as usize;
    let deadline = Instant::now() + Duration::from_millis(config.kafka.backpressure_wait_ms);
    loop {
        match producer.send(record) {
            Ok(()) => {
                metrics.produced[topic].fetch_add(1, Relaxed);
                return;
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < deadline && !stop.load(Relaxed) =>
            {
                record = back;
                metrics.heartbeats.fetch_add(1, Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => {
                let reason = match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => ProduceDrop::QueueFull,
                    _ => ProduceDrop::Refused,
                };
                metrics.dropped[reason as usize].fetch_add(1, Relaxed);
                if let Some(held_back) = drops_logged.allow(Instant::now()) {
                    error!(held_back, reason = reason.label(), "haproxy: message dropped: {e}");
                }
                return;
            }
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
