//! Where a shard's decoded flows go.
//!
//! The boundary is `Sink::flow` (one flow, by reference, on the shard),
//! `Sink::tick` (the shard's housekeeping tick: hand over what is due) and
//! `Sink::flush` (shutdown: hand over everything).
//!
//! - `Store`: the shard's column buffers for the store writer
//!   (`store::writer`), handed over by row count or age as a sorted Native block.
//! - `Count`: counts and forgets (benchmarks).
//! - `Inlet` (`weir inlet`): takes the datagrams themselves, undecoded, and
//!   produces each as a Kafka record (`kafka::inlet`).
//! - `Json`: each shard fills its own buffer with JSON lines (the keys of
//!   `weir decode`) and hands full buffers to one writer thread on the
//!   control core over a bounded channel. Buffers come back through a free
//!   list, so there are never more than `sink.buffers_max` of them: when the
//!   writer falls behind, shards wait for a free buffer (backpressure), the
//!   socket buffers fill, and the kernel's drops show in
//!   `weir_receive_kernel_drops_total`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use weir_core::json::write_flow;
use weir_core::{Datagram, FlowRecord};

use crate::kafka::inlet::{InletShard, InletWriter};
use crate::ops::exposition::{counters_of, Exported};
use crate::ops::logging::Limiter;
use crate::store::writer::{StoreSink, StoreWriter};

pub enum Sink {
    Count { flows: u64 },
    Json(JsonSink),
    Store(Box<StoreSink>),
    Inlet(Box<InletShard>),
}

impl Sink {
    /// Takes the datagram whole (the inlet), or leaves it to the decoder.
    #[inline]
    pub fn datagram(&mut self, d: &Datagram) -> bool {
        match self {
            Sink::Inlet(i) => {
                i.datagram(d);
                true
            }
            _ => false,
        }
    }

    #[inline]
    pub fn flow(&mut self, flow: &FlowRecord) {
        match self {
            Sink::Count { flows } => *flows += 1,
            Sink::Json(j) => j.flow(flow),
            Sink::Store(s) => s.flow(flow),
            Sink::Inlet(_) => {}
        }
    }

    /// Flows taken so far.
    pub fn flows(&self) -> u64 {
        match self {
            Sink::Count { flows } => *flows,
            Sink::Json(j) => j.flows,
            Sink::Store(s) => s.flows(),
            Sink::Inlet(_) => 0,
        }
    }

    /// Housekeeping tick: JSON lines go out at once, a store batch when it
    /// is `store.flush_interval_ms` old.
    pub fn tick(&mut self) {
        match self {
            Sink::Count { .. } => {}
            Sink::Json(j) => j.hand_over(),
            Sink::Store(s) => s.tick(),
            Sink::Inlet(i) => i.tick(),
        }
    }

    /// Hands over everything buffered (shutdown).
    pub fn flush(&mut self) {
        match self {
            Sink::Count { .. } => {}
            Sink::Json(j) => j.hand_over(),
            Sink::Store(s) => s.flush(),
            Sink::Inlet(i) => i.flush(),
        }
    }
}

/// The control-plane side of the sink: the thread shards hand buffers to.
pub enum SinkWriter {
    Count,
    Json(JsonWriter),
    Store(Box<StoreWriter>),
    Inlet(Box<InletWriter>),
}

impl SinkWriter {
    /// A sink for the next shard.
    pub fn sink(&self) -> Result<Sink, String> {
        Ok(match self {
            SinkWriter::Count => Sink::Count { flows: 0 },
            SinkWriter::Json(w) => w.sink(),
            SinkWriter::Store(w) => Sink::Store(Box::new(w.sink())),
            SinkWriter::Inlet(w) => Sink::Inlet(Box::new(w.shard()?)),
        })
    }

    /// SIGHUP: the JSON file is reopened (log rotation).
    pub fn reopen(&self) {
        if let SinkWriter::Json(w) = self {
            w.reopen();
        }
    }

    /// Writes out what the shards handed over; call after they are gone.
    pub fn finish(self) {
        match self {
            SinkWriter::Count | SinkWriter::Inlet(_) => {}
            SinkWriter::Json(w) => w.finish(),
            SinkWriter::Store(w) => (*w).finish(),
        }
    }
}

pub struct JsonSink {
    buffer: String,
    buffer_bytes: usize,
    flows: u64,
    full: Sender<String>,
    free: Receiver<String>,
}

impl JsonSink {
    fn flow(&mut self, flow: &FlowRecord) {
        self.flows += 1;
        write_flow(flow, &mut self.buffer);
        self.buffer.push('\n');
        if self.buffer.len() >= self.buffer_bytes {
            self.hand_over();
        }
    }

    fn hand_over(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        // Waits when every buffer is in flight: backpressure by design.
        let Ok(next) = self.free.recv() else { return };
        let full = std::mem::replace(&mut self.buffer, next);
        // The writer only stops once every shard's sender is gone.
        let _ = self.full.send(full);
    }
}

/// Counters of the JSON sink's writer thread; written by it only, and
/// exported whatever the sink (at 0 unless it is `json`).
#[derive(Default)]
pub struct SinkMetrics {
    pub bytes_written: AtomicU64,
    pub write_errors: AtomicU64,
    pub reopens: AtomicU64,
}

impl Exported for SinkMetrics {
    fn encode(&self, e: &mut prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        let sink: [(&str, &str, &AtomicU64); 3] = [
            ("weir_sink_bytes_written", "Bytes written by the JSON sink.", &self.bytes_written),
            ("weir_sink_write_errors", "Failed writes of the JSON sink (the buffer is lost).", &self.write_errors),
            ("weir_sink_reopens", "Times the JSON sink's file was reopened (SIGHUP).", &self.reopens),
        ];
        counters_of(e, &sink)
    }
}

/// The JSON writer thread and the channels shards use to reach it.
pub struct JsonWriter {
    full: Sender<String>,
    free: Receiver<String>,
    buffer_bytes: usize,
    reopen: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl JsonWriter {
    /// Opens the output (a file, appended to, or `-` for stdout) and starts
    /// the writer with `buffers_max` preallocated buffers.
    /// Failed writes are logged at most `log_lines_per_minute` times a minute.
    pub fn start(
        path: &Path,
        buffer_bytes: usize,
        buffers_max: usize,
        metrics: Arc<SinkMetrics>,
        log_lines_per_minute: u32,
    ) -> std::io::Result<Self> {
        let mut out = Output::open(path)?;
        let mut write_failures = Limiter::new(log_lines_per_minute);
        let (full, full_rx) = bounded::<String>(buffers_max);
        let (free_tx, free) = bounded::<String>(buffers_max);
        for _ in 0..buffers_max {
            let _ = free_tx.send(String::with_capacity(buffer_bytes + 4096));
        }
        let reopen = Arc::new(AtomicBool::new(false));
        let reopen_flag = reopen.clone();
        let thread = std::thread::Builder::new().name("weir-json".into()).spawn(move || loop {
            let received = full_rx.recv_timeout(Duration::from_millis(100));
            // Checked after the wait too, so lines received after SIGHUP go to the new file.
            if reopen_flag.swap(false, Relaxed) {
                match out.reopen() {
                    Ok(()) => metrics.reopens.fetch_add(1, Relaxed),
                    Err(e) => {
                        tracing::warn!("json sink: reopen failed, keeping the old file: {e}");
                        0
                    }
                };
            }
            match received {
                Ok(mut buffer) => {
                    match out.write_all(buffer.as_bytes()) {
                        Ok(()) => metrics.bytes_written.fetch_add(buffer.len() as u64, Relaxed),
                        Err(e) => {
                            if let Some(held_back) = write_failures.allow(std::time::Instant::now()) {
                                tracing::error!(held_back, "json sink: write failed, {} bytes lost: {e}", buffer.len());
                            }
                            metrics.write_errors.fetch_add(1, Relaxed)
                        }
                    };
                    buffer.clear();
                    let _ = free_tx.send(buffer);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        })?;
        Ok(JsonWriter { full, free, buffer_bytes, reopen, thread })
    }

    /// A sink for one shard.
    pub fn sink(&self) -> Sink {
        Sink::Json(JsonSink {
            buffer: String::with_capacity(self.buffer_bytes + 4096),
            buffer_bytes: self.buffer_bytes,
            flows: 0,
            full: self.full.clone(),
            free: self.free.clone(),
        })
    }

    /// Reopens the file before the next write (log rotation, SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Relaxed);
    }

    /// Waits for the writer to write what every shard handed over; call
    /// after the shards (and their sinks) are gone.
    pub fn finish(self) {
        drop(self.full);
        let _ = self.thread.join();
    }
}

enum Output {
    Stdout(std::io::Stdout),
    File(PathBuf, File),
}

impl Output {
    fn open(path: &Path) -> std::io::Result<Output> {
        if path.as_os_str() == "-" {
            return Ok(Output::Stdout(std::io::stdout()));
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Output::File(path.to_path_buf(), file))
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        if let Output::File(path, file) = self {
            *file = OpenOptions::new().create(true).append(true).open(&*path)?;
        }
        Ok(())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout(s) => s.lock().write_all(bytes),
            Output::File(_, f) => f.write_all(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Stdout(s) => s.lock().flush(),
            Output::File(_, f) => f.flush(),
        }
    }
}
