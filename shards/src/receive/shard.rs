//! One shard: a glommio executor pinned to one CPU, owning one socket per
//! listener, one decoder, one sink and its counters.
//!
//! Per socket, a task takes what the kernel has queued in batches
//! (`ReceiveBatch`, one recvmmsg per batch), then waits for the next
//! datagram with a peek through glommio's io_uring, bounded by the
//! housekeeping interval. Per batch: apply the state updates other shards
//! sent, decode every datagram into the sink, broadcast the state changes
//! this shard made, publish the counters. A housekeeping task does the same
//! chores when no traffic comes, so parked data finds its template and the
//! JSON sink's lines go out.
//!
//! State updates travel as `Arc<[StateUpdate]>` through one bounded
//! lock-free queue per shard (crossbeam `ArrayQueue`); a full queue is a
//! counted drop (the exporter's next template refresh repairs it).

use std::cell::RefCell;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_queue::ArrayQueue;
use glommio::{net::UdpSocket, ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use weir_core::wire::state::{Limits, StateUpdate};
use weir_core::wire::ListenerOptions;
use weir_core::{Datagram, Decoder, FlowRecord};

use tracing::warn;

use super::metrics::{ReceiveDrop, ShardMetrics};
use super::sink::Sink;
use super::socket::ReceiveBatch;
use crate::ops::logging::Limiter;

/// Each shard's inbox of state updates from the others, indexed by shard.
pub type Inboxes = Arc<Vec<ArrayQueue<Arc<[StateUpdate]>>>>;

/// One shard's end of the template and sampling-rate exchange: its inbox
/// to apply, the others' to send its own changes to. `weir outlet`'s
/// shards exchange the same way.
pub struct Exchange {
    index: usize,
    inboxes: Inboxes,
    /// Scratch for the decoder's state changes of one batch.
    updates: Vec<StateUpdate>,
}

impl Exchange {
    pub fn new(index: usize, inboxes: Inboxes) -> Exchange {
        Exchange { index, inboxes, updates: Vec::new() }
    }

    /// Applies the changes other shards made (parked data they release
    /// goes to `sink`); returns how many.
    pub fn apply<F: FnMut(&FlowRecord)>(&self, decoder: &mut Decoder, sink: &mut F) -> u64 {
        let mut applied = 0;
        while let Some(updates) = self.inboxes[self.index].pop() {
            decoder.apply_updates(&updates, sink);
            applied += updates.len() as u64;
        }
        applied
    }

    /// Sends this shard's changes to every other shard; returns how many
    /// went and how many found an inbox full.
    pub fn broadcast(&mut self, decoder: &mut Decoder) -> (u64, u64) {
        decoder.drain_updates(&mut self.updates);
        if self.updates.is_empty() {
            return (0, 0);
        }
        let updates: Arc<[StateUpdate]> = self.updates.drain(..).collect();
        let (mut sent, mut dropped) = (0, 0);
        for (i, inbox) in self.inboxes.iter().enumerate() {
            if i == self.index {
                continue;
            }
            match inbox.push(updates.clone()) {
                Ok(()) => sent += updates.len() as u64,
                Err(_) => dropped += updates.len() as u64,
            }
        }
        (sent, dropped)
    }
}

/// Everything a shard is started with; moved onto its thread.
pub struct ShardSetup {
    pub index: usize,
    pub core: usize,
    /// One per listener, in config order, bound and in their reuseport groups.
    pub sockets: Vec<OwnedFd>,
    /// How each listener's datagrams are read, in the same order.
    pub listener_options: Vec<ListenerOptions>,
    pub receive_batch_datagrams: usize,
    pub datagram_bytes_max: usize,
    pub housekeeping_interval: Duration,
    /// Wait after a receive call that emptied the queue (0: none).
    pub coalesce: Duration,
    /// Data-plane errors logged per minute and kind (`log`).
    pub log_lines_per_minute: u32,
    pub limits: Limits,
    /// Saved decoder state to start from.
    pub saved_state: Option<Arc<Vec<u8>>>,
    pub metrics: Arc<ShardMetrics>,
    pub inboxes: Inboxes,
    pub sink: Sink,
    pub stop: Arc<AtomicBool>,
    /// Incremented once the shard's tasks run.
    pub ready: Arc<AtomicUsize>,
    /// Shard 0 puts a snapshot of its decoder state here every interval.
    pub state_out: Option<(Arc<ArrayQueue<Vec<u8>>>, Duration)>,
}

/// Starts the shard's executor on its CPU. The handle yields the decoder
/// state (as snapshot JSON) when the shard has drained and stopped.
pub fn spawn(setup: ShardSetup) -> std::io::Result<ExecutorJoinHandle<Vec<u8>>> {
    let name = format!("weir-shard-{}", setup.index);
    LocalExecutorBuilder::new(Placement::Fixed(setup.core))
        .name(&name)
        // Only socket waits go through io_uring: a small ring is enough.
        .io_memory(512 << 10)
        .spawn(move || run(setup))
        .map_err(|e| std::io::Error::other(e.to_string()))
}

async fn run(setup: ShardSetup) -> Vec<u8> {
    let ShardSetup { sockets, stop, ready, state_out, .. } = setup;
    let mut decoder = Decoder::new(setup.limits.clone());
    decoder.record_updates();
    if let Some(bytes) = &setup.saved_state {
        // Restoring records no updates: every shard loads the same file.
        if let Err(e) = decoder.restore_state_json(bytes) {
            warn!(shard = setup.index, "saved decoder state not loaded: {e}");
        }
    }
    let shard = Rc::new(RefCell::new(Shard {
        index: setup.index,
        decoder,
        sink: setup.sink,
        metrics: setup.metrics,
        exchange: Exchange::new(setup.index, setup.inboxes),
        counts: Counts::default(),
        kernel_drops: vec![0; sockets.len()],
        listener_options: setup.listener_options,
        logs: LogLimits {
            receive: Limiter::new(setup.log_lines_per_minute),
            decode: Limiter::new(setup.log_lines_per_minute),
        },
    }));
    let mut tasks = Vec::new();
    for (listener, fd) in sockets.into_iter().enumerate() {
        // SAFETY: the fd is an owned, bound UDP socket handed to glommio whole.
        let socket = unsafe { UdpSocket::from_raw_fd(fd.into_raw_fd()) };
        let batch = ReceiveBatch::new(setup.receive_batch_datagrams, setup.datagram_bytes_max);
        let waits = Waits { max: setup.housekeeping_interval, coalesce: setup.coalesce };
        let task = receive_loop(shard.clone(), socket, listener, batch, waits, stop.clone());
        tasks.push(glommio::spawn_local(task));
    }
    let housekeeping = housekeeping_loop(shard.clone(), setup.housekeeping_interval, stop, state_out);
    tasks.push(glommio::spawn_local(housekeeping));
    ready.fetch_add(1, Relaxed);
    for task in tasks {
        task.await;
    }
    let mut shard = shard.borrow_mut();
    shard.apply_inbox();
    shard.decoder.flush_pending();
    shard.sink.flush();
    shard.publish();
    shard.decoder.state().snapshot_json()
}

/// How a receive task waits.
#[derive(Clone, Copy)]
struct Waits {
    /// Longest sleep with nothing queued (the housekeeping interval).
    max: Duration,
    /// The pause after a receive call that emptied a busy queue.
    coalesce: Duration,
}

async fn receive_loop(
    shard: Rc<RefCell<Shard>>,
    socket: UdpSocket,
    listener: usize,
    mut batch: ReceiveBatch,
    waits: Waits,
    stop: Arc<AtomicBool>,
) {
    let wait_max = waits.max;
    let _ = socket.set_read_timeout(Some(wait_max));
    let mut probe = [0u8; 1];
    let mut pace = Pace::new(batch.capacity());
    loop {
        let taken = take_queued(&shard, &socket, listener, &mut batch).await;
        if let Some(fill) = pace.coalesce(taken, waits.coalesce) {
            if !stop.load(Relaxed) {
                glommio::timer::sleep(fill).await;
                continue;
            }
        }
        if stop.load(Relaxed) {
            // Drain: what is queued now, then once more after the datagrams
            // the kernel was still delivering (a graceful restart has already
            // steered new ones to the new process).
            glommio::timer::sleep(Duration::from_millis(20)).await;
            take_queued(&shard, &socket, listener, &mut batch).await;
            return;
        }
        match socket.peek_from(&mut probe).await {
            Ok(_) => {}
            Err(e) if timed_out(&e) => {}
            Err(e) => {
                {
                    let mut s = shard.borrow_mut();
                    s.counts.receive_errors += 1;
                    s.publish();
                    if let Some(held_back) = s.logs.receive.allow(Instant::now()) {
                        warn!(shard = s.index, listener, held_back, "receive wait failed: {e}");
                    }
                }
                glommio::timer::sleep(wait_max).await;
            }
        }
    }
}

/// The arrival rate of one socket, for coalescing: when datagrams arrive
/// fast enough that at least half a receive batch builds up within the
/// coalescing wait, the task waits that long after emptying the queue
/// instead of sleeping until the next datagram — one wake-up per wait
/// rather than one per datagram, and full batches. Slower traffic is taken
/// as it comes (wake-ups are few then, and waits would add latency for
/// nothing).
struct Pace {
    since: Instant,
    count: u64,
    /// Datagrams per second over the last window.
    rate: f64,
    half_batch: f64,
}

impl Pace {
    /// Rate windows: long enough to count, short enough to follow bursts.
    const WINDOW: Duration = Duration::from_millis(10);

    fn new(batch: usize) -> Pace {
        Pace { since: Instant::now(), count: 0, rate: 0.0, half_batch: (batch / 2).max(1) as f64 }
    }

    /// After a drain that took `taken`: how long to wait before the next
    /// receive (`bound`), or `None` to sleep until a datagram comes.
    fn coalesce(&mut self, taken: usize, bound: Duration) -> Option<Duration> {
        self.count += taken as u64;
        let elapsed = self.since.elapsed();
        if elapsed >= Self::WINDOW {
            self.rate = self.count as f64 / elapsed.as_secs_f64();
            (self.since, self.count) = (Instant::now(), 0);
        }
        if taken == 0 || bound.is_zero() || self.rate <= 0.0 {
            return None;
        }
        (self.rate * bound.as_secs_f64() >= self.half_batch).then_some(bound)
    }
}

/// Receives and processes batches until the socket's queue is empty;
/// returns how many datagrams it took.
async fn take_queued(
    shard: &Rc<RefCell<Shard>>,
    socket: &UdpSocket,
    listener: usize,
    batch: &mut ReceiveBatch,
) -> usize {
    let mut taken = 0;
    loop {
        let n = match batch.receive(socket) {
            Ok(n) => n,
            Err(e) => {
                let mut s = shard.borrow_mut();
                s.counts.receive_errors += 1;
                if let Some(held_back) = s.logs.receive.allow(Instant::now()) {
                    warn!(shard = s.index, listener, held_back, "recvmmsg failed: {e}");
                }
                0
            }
        };
        if n == 0 {
            return taken;
        }
        taken += n;
        shard.borrow_mut().process(batch, listener);
        if n < batch.capacity() {
            return taken;
        }
        // Let the shard's other sockets and housekeeping have a turn.
        glommio::yield_if_needed().await;
    }
}

async fn housekeeping_loop(
    shard: Rc<RefCell<Shard>>,
    interval: Duration,
    stop: Arc<AtomicBool>,
    state_out: Option<(Arc<ArrayQueue<Vec<u8>>>, Duration)>,
) {
    let mut last_save = Instant::now();
    while !stop.load(Relaxed) {
        glommio::timer::sleep(interval).await;
        let mut s = shard.borrow_mut();
        s.apply_inbox();
        s.decoder.expire_pending(now_ns());
        s.sink.tick();
        s.publish();
        s.metrics.heartbeats.fetch_add(1, Relaxed);
        if let Some((queue, every)) = &state_out {
            if last_save.elapsed() >= *every {
                last_save = Instant::now();
                queue.force_push(s.decoder.state().snapshot_json());
            }
        }
    }
}

#[derive(Default)]
struct Counts {
    datagrams: u64,
    bytes: u64,
    too_long: u64,
    receive_errors: u64,
    timestamp_fallbacks: u64,
    updates_sent: u64,
    updates_dropped: u64,
    updates_applied: u64,
}

struct Shard {
    index: usize,
    decoder: Decoder,
    sink: Sink,
    metrics: Arc<ShardMetrics>,
    exchange: Exchange,
    counts: Counts,
    /// Latest SO_RXQ_OVFL value per socket.
    kernel_drops: Vec<u64>,
    listener_options: Vec<ListenerOptions>,
    logs: LogLimits,
}

/// Data-plane errors are counted every time and logged within these.
struct LogLimits {
    receive: Limiter,
    decode: Limiter,
}

impl Shard {
    fn process(&mut self, batch: &ReceiveBatch, listener: usize) {
        #[cfg(debug_assertions)]
        test_hooks::wedge_if_asked(self.index, self.counts.datagrams);
        self.apply_inbox();
        let Shard { decoder, sink, counts, kernel_drops, logs, index, .. } = self;
        let options = self.listener_options.get(listener).copied().unwrap_or_default();
        let mut clock_ns = 0;
        for i in 0..batch.len() {
            let d = batch.get(i);
            counts.datagrams += 1;
            counts.bytes += d.payload.len() as u64;
            if let Some(drops) = d.kernel_drops {
                kernel_drops[listener] = u64::from(drops);
            }
            if d.truncated {
                counts.too_long += 1;
                continue;
            }
            let received_ns = match d.timestamp_ns {
                Some(ns) => ns,
                None => {
                    counts.timestamp_fallbacks += 1;
                    if clock_ns == 0 {
                        clock_ns = now_ns();
                    }
                    clock_ns
                }
            };
            let datagram = Datagram { exporter: d.exporter, received_ns, payload: d.payload, options };
            if sink.datagram(&datagram) {
                continue;
            }
            // Errors are counted by the decoder, by reason.
            if let Err(e) = decoder.decode(&datagram, &mut |flow| sink.flow(flow)) {
                if let Some(held_back) = logs.decode.allow(Instant::now()) {
                    let (exporter, reason) = (weir_core::flow::addr_to_ip(&d.exporter), e.reason.label());
                    warn!(shard = *index, %exporter, reason, held_back, "datagram not decoded: {e}");
                }
            }
        }
        self.broadcast();
        self.publish();
    }

    /// Applies the template and sampling-rate changes other shards made.
    fn apply_inbox(&mut self) {
        let Shard { decoder, sink, counts, exchange, .. } = self;
        counts.updates_applied += exchange.apply(decoder, &mut |flow| sink.flow(flow));
    }

    /// Sends this shard's state changes to every other shard.
    fn broadcast(&mut self) {
        let (sent, dropped) = self.exchange.broadcast(&mut self.decoder);
        self.counts.updates_sent += sent;
        self.counts.updates_dropped += dropped;
    }

    fn publish(&self) {
        let (m, c) = (&self.metrics, &self.counts);
        m.datagrams.store(c.datagrams, Relaxed);
        m.bytes.store(c.bytes, Relaxed);
        m.receive_drops[ReceiveDrop::TooLong as usize].store(c.too_long, Relaxed);
        m.receive_errors.store(c.receive_errors, Relaxed);
        m.timestamp_fallbacks.store(c.timestamp_fallbacks, Relaxed);
        m.updates_sent.store(c.updates_sent, Relaxed);
        m.updates_dropped.store(c.updates_dropped, Relaxed);
        m.updates_applied.store(c.updates_applied, Relaxed);
        m.sink_flows.store(self.sink.flows(), Relaxed);
        m.publish_decoder(self.decoder.counters());
        for (s, drops) in m.sockets.iter().zip(&self.kernel_drops) {
            s.kernel_drops.store(*drops, Relaxed);
        }
    }
}

fn timed_out(e: &glommio::GlommioError<()>) -> bool {
    match e {
        glommio::GlommioError::TimedOut(_) => true,
        glommio::GlommioError::IoError(io) => io.kind() == std::io::ErrorKind::TimedOut,
        _ => false,
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Debug builds only: `WEIR_TEST_WEDGE_SHARD=INDEX:DATAGRAMS` makes that
/// shard hang forever once it has received that many datagrams, so that the
/// watchdog's test can see a wedged shard (`tests/watchdog.rs`).
#[cfg(debug_assertions)]
mod test_hooks {
    use std::sync::OnceLock;

    static WEDGE: OnceLock<Option<(usize, u64)>> = OnceLock::new();

    pub fn wedge_if_asked(shard: usize, datagrams: u64) {
        let wedge = WEDGE.get_or_init(|| {
            let v = std::env::var("WEIR_TEST_WEDGE_SHARD").ok()?;
            let (index, after) = v.split_once(':')?;
            Some((index.parse().ok()?, after.parse().ok()?))
        });
        if wedge.is_some_and(|(index, after)| index == shard && datagrams >= after) {
            tracing::warn!(shard, "wedged on purpose (WEIR_TEST_WEDGE_SHARD)");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pace whose last window saw `count` datagrams in 20 ms.
    fn pace_after(count: u64) -> Pace {
        let mut p = Pace::new(64);
        p.since = Instant::now() - Duration::from_millis(20);
        p.count = count;
        p
    }

    #[test]
    fn busy_sockets_coalesce_and_quiet_ones_do_not() {
        let bound = Duration::from_millis(1);
        // 100 k datagrams/s: 100 per ms, more than half a batch.
        assert_eq!(pace_after(2_000).coalesce(8, bound), Some(bound));
        // 5 k datagrams/s: 5 per ms, taken as they come.
        assert_eq!(pace_after(100).coalesce(8, bound), None);
        // Nothing taken: sleep until a datagram comes.
        assert_eq!(pace_after(2_000).coalesce(0, bound), None);
        // Off.
        assert_eq!(pace_after(2_000).coalesce(8, Duration::ZERO), None);
        // The first window is not over yet: no rate, no waiting.
        assert_eq!(Pace::new(64).coalesce(64, bound), None);
    }
}
