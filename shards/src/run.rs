//! `weir run --config FILE`: the collector; `weir inlet --config FILE`:
//! the same receive path, each shard producing its datagrams to Kafka
//! (`Mode::Inlet`: no decoding, no store, no enrichment); `weir outlet
//! --config FILE`: shards that consume those records instead of sockets,
//! then decode, enrich and store (`Mode::Outlet`, `kafka::outlet`).
//!
//! Start-up, on the main thread (which then becomes the control plane,
//! pinned to `shards.control_core`):
//! 1. read and check the config (errors name the key);
//! 2. open one socket per listener per shard, all in SO_REUSEPORT groups,
//!    and log what receive buffer the kernel granted;
//! 3. attach the eBPF balancer per listener (or keep the kernel's hash);
//! 4. make each feature's counters and register them, with its health
//!    probes, readiness check and HTTP routes (`Counters::register`,
//!    `serve_http`): this file is wiring, each feature owns its parts;
//! 5. start the sink writer, the HTTP server, and one pinned shard per
//!    core, each loading the saved decoder state;
//! 6. with a pid file naming a running `weir`: that is the old instance of
//!    a graceful restart. Our sockets are in its groups and our balancer has
//!    replaced its program, so we tell it to drain and exit (SIGTERM), wait
//!    for it, and load the decoder state it saved on its way out.
//!
//! Then the control loop: SIGHUP reloads what can change live, SIGTERM or
//! SIGINT stop the shards (each drains its sockets), and the decoder state
//! is saved (periodically too).

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use tracing::{error, info, warn};
use weir_core::config::{BalancerMode, Config, SinkKind, StoreKind};
use weir_core::flowproto::FlowProto;
use weir_core::wire::state::Snapshot;
use weir_ebpf::Balancer;

use crate::cli::config::{read_config, read_config_logging_warnings};
use crate::console::{self, metrics::ConsoleMetrics};
use crate::enrich::{self, MetadataMetrics};
use crate::haproxy::{HaproxyInput, HaproxyMetrics};
use crate::kafka::enriched::{EnrichedMetrics, EnrichedOutput};
use crate::kafka::outlet::{self, OutletSetup};
use crate::kafka::state::{StateShare, StateShareMetrics};
use crate::kafka::{InletMetrics, InletWriter, OutletMetrics};
use crate::ops::cpu::{online_cpus, pin_to};
use crate::ops::exposition::Exposition;
use crate::ops::health::{Health, Probe, ReadyCheck, Watch};
use crate::ops::http::{self, HttpMetrics, Ops};
use crate::ops::systemd::Notifier;
use crate::receive::metrics::ReceiveMetrics;
use crate::receive::shard::{self, Inboxes, ShardSetup};
use crate::receive::sink::{JsonWriter, SinkMetrics, SinkWriter};
use crate::receive::socket;
use crate::store::metrics::StoreMetrics;
use crate::store::routes::StoreEndpoints;
use crate::store::{self, chdb, writer::StoreWriter};

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (TOML; see config/weir.toml).
    #[arg(long)]
    pub config: PathBuf,
}

/// What the shards do with their datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Decode, enrich and sink (`sink.kind`).
    Run,
    /// Produce them to Kafka (`[kafka]`).
    Inlet,
    /// No sockets: consume the inlets' records from Kafka, then decode,
    /// enrich and store (`[kafka.outlet]`, `[store]`).
    Outlet,
}

pub fn run(args: &Args, mode: Mode) -> Result<(), String> {
    let config = read_config_logging_warnings(&args.config)?;
    if mode == Mode::Inlet && config.listeners.is_empty() {
        return Err(format!("{}: listeners: weir inlet needs at least one", args.config.display()));
    }
    if mode == Mode::Inlet && stores_http(&config) {
        return Err(format!("{}: haproxy.store: weir inlet has no store (weir run has)", args.config.display()));
    }
    let online = online_cpus();
    let cores = config.check_machine(online).map_err(|e| format!("{}: {e}", args.config.display()))?;
    pin_to(config.shards.control_core);
    // Before anything starts: a SIGTERM during start-up is then a clean stop
    // once the shards run, not the default action (death without draining).
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|e| e.to_string())?;
    let counters = Counters::new(&config, &cores, mode)?;
    let sockets = match mode {
        Mode::Outlet => cores.iter().map(|_| Vec::new()).collect(),
        Mode::Run | Mode::Inlet => open_sockets(&config, &cores, &counters.receive)?,
    };
    let _balancers = match mode {
        Mode::Outlet => Vec::new(),
        Mode::Run | Mode::Inlet => attach_balancers(&config, &sockets, &counters.receive),
    };
    let raw_fds: Vec<RawFd> = sockets.iter().flatten().map(|s| s.as_raw_fd()).collect();
    let writer = start_writer(&config, &counters, cores.len(), mode)?;
    let (exposition, probes, ready_checks) = counters.register();
    let health = Arc::new(Health::new(ready_checks));
    serve_http(&config, &counters, exposition, &health, &writer)?;
    let haproxy = match &counters.haproxy {
        Some(m) => {
            let http = match (&writer, stores_http(&config)) {
                (SinkWriter::Store(w), true) => w.http_sink(
                    config.haproxy.store_batch_rows_max,
                    Duration::from_millis(config.haproxy.store_flush_interval_ms),
                ),
                _ => None,
            };
            Some(HaproxyInput::start(
                &config.haproxy,
                config.haproxy.core.unwrap_or(config.shards.control_core),
                m.clone(),
                config.log.data_plane_lines_per_minute,
                Duration::from_millis(config.run.drain_timeout_ms),
                http,
            )?)
        }
        None => None,
    };
    let shards = match mode {
        Mode::Outlet => Shards::start_outlet(&config, &cores, &counters, &writer)?,
        Mode::Run | Mode::Inlet => Shards::start(&config, &cores, sockets, &counters.receive, &writer)?,
    };
    // Every socket is bound and read: /health says so before the log does.
    health.set_started();
    match mode {
        Mode::Outlet => info!(
            "{} outlet shards on CPUs {cores:?}, consuming {} in group {}: ready",
            cores.len(),
            weir_core::rawflow::topic(&config.kafka.topic),
            config.kafka.outlet.group
        ),
        Mode::Run | Mode::Inlet => {
            info!("{} shards on CPUs {cores:?}, {} listeners: ready", cores.len(), config.listeners.len())
        }
    }
    take_over(&config, &shards.inboxes);
    let notifier = Notifier::from_env();
    notifier.notify(&format!("READY=1\nMAINPID={}\nSTATUS={} shards running", std::process::id(), cores.len()));
    let watch = Watch::new(Duration::from_secs(config.run.stall_timeout_s), probes, Instant::now());
    let receive = counters.receive;
    let control = Control { config_path: args.config.clone(), config, raw_fds, receive, health, writer, notifier };
    control.run_until_stopped(signals, watch, &shards.state_out)?;
    control.notifier.notify("STOPPING=1");
    let state = shards.stop();
    if let Some(input) = haproxy {
        input.finish();
    }
    let Control { config, writer, .. } = control;
    writer.finish();
    if let (Some(path), Some(state)) = (&config.decoder.state_file, state) {
        let _ = save_atomically(path, &state);
    }
    release_pid_file(&config);
    info!("stopped");
    Ok(())
}

/// The running shards, and what the control plane keeps to reach them.
struct Shards {
    handles: Vec<glommio::ExecutorJoinHandle<Vec<u8>>>,
    inboxes: Inboxes,
    stop: Arc<AtomicBool>,
    /// Shard 0's periodic decoder-state snapshots, for the control loop to save.
    state_out: Arc<ArrayQueue<Vec<u8>>>,
    /// `weir outlet`'s sharing of templates with the other outlets (the
    /// last inbox is its).
    share: Option<StateShare>,
}

impl Shards {
    /// One pinned shard per core with its sockets, each loading the saved
    /// decoder state; returns once every shard reads its sockets.
    fn start(
        config: &Config,
        cores: &[usize],
        sockets: Vec<Vec<OwnedFd>>,
        receive: &ReceiveMetrics,
        writer: &SinkWriter,
    ) -> Result<Shards, String> {
        let (mut shards, common) = Shards::prepare(config, cores, false);
        for (index, (core, sockets)) in cores.iter().zip(sockets).enumerate() {
            let setup = ShardSetup {
                index,
                core: *core,
                sockets,
                listener_options: config.listeners.iter().map(|l| l.options()).collect(),
                receive_batch_datagrams: config.shards.receive_batch_datagrams,
                datagram_bytes_max: config.shards.datagram_bytes_max,
                housekeeping_interval: Duration::from_millis(config.shards.housekeeping_interval_ms),
                coalesce: Duration::from_micros(config.shards.receive_coalesce_us),
                log_lines_per_minute: config.log.data_plane_lines_per_minute,
                limits: config.decoder.limits(common.seed),
                saved_state: common.saved_state.clone(),
                metrics: receive.shards[index].clone(),
                inboxes: shards.inboxes.clone(),
                sink: writer.sink()?,
                stop: shards.stop.clone(),
                ready: common.ready.clone(),
                state_out: shards.state_out(index, config),
            };
            shards.handles.push(shard::spawn(setup).map_err(|e| format!("shard {index} on CPU {core}: {e}"))?);
        }
        Ok(shards.when_ready(&common))
    }

    /// No shard yet: their stop flag, inboxes and state queue, and what
    /// each is started with.
    /// `share_inbox`: one inbox more, the last, for the state sharing.
    fn prepare(config: &Config, cores: &[usize], share_inbox: bool) -> (Shards, Common) {
        let count = cores.len() + usize::from(share_inbox);
        let inboxes: Inboxes =
            Arc::new((0..count).map(|_| ArrayQueue::new(config.shards.state_updates_ring_slots)).collect());
        let shards = Shards {
            handles: Vec::new(),
            inboxes,
            stop: Arc::new(AtomicBool::new(false)),
            state_out: Arc::new(ArrayQueue::new(1)),
            share: None,
        };
        let common = Common {
            saved_state: config.decoder.state_file.as_ref().and_then(|p| std::fs::read(p).ok()).map(Arc::new),
            ready: Arc::new(AtomicUsize::new(0)),
            seed: random_seed(),
        };
        (shards, common)
    }

    /// Shard 0 puts its periodic decoder-state snapshots in the queue.
    fn state_out(&self, index: usize, config: &Config) -> Option<(Arc<ArrayQueue<Vec<u8>>>, Duration)> {
        (index == 0).then(|| (self.state_out.clone(), Duration::from_secs(config.decoder.state_save_interval_s)))
    }

    /// Returns once every shard started runs.
    fn when_ready(self, common: &Common) -> Shards {
        while common.ready.load(Relaxed) < self.handles.len() {
            std::thread::sleep(Duration::from_millis(1));
        }
        self
    }

    /// `weir outlet`: one pinned consumer shard per core, each with its
    /// store sink, loading the saved decoder state.
    fn start_outlet(
        config: &Config,
        cores: &[usize],
        counters: &Counters,
        writer: &SinkWriter,
    ) -> Result<Shards, String> {
        let (SinkWriter::Store(store), Some(outlet)) = (writer, &counters.outlet) else {
            return Err("weir outlet: no store writer".into());
        };
        let sharing = counters.state_share.clone();
        let (mut shards, common) = Shards::prepare(config, cores, sharing.is_some());
        if let Some(metrics) = sharing {
            // Before the shards run: they start with the other outlets' templates.
            shards.share = Some(StateShare::start(&config.kafka, shards.inboxes.clone(), metrics)?);
        }
        for (index, core) in cores.iter().enumerate() {
            let setup = OutletSetup {
                index,
                core: *core,
                config: config.kafka.clone(),
                housekeeping_interval: Duration::from_millis(config.shards.housekeeping_interval_ms),
                drain_timeout: Duration::from_millis(config.run.drain_timeout_ms),
                log_lines_per_minute: config.log.data_plane_lines_per_minute,
                limits: config.decoder.limits(common.seed),
                saved_state: common.saved_state.clone(),
                metrics: counters.receive.shards[index].clone(),
                outlet: outlet.clone(),
                inboxes: shards.inboxes.clone(),
                sink: Box::new(store.sink()),
                acks: store.acks(),
                in_flight_max: config
                    .kafka
                    .outlet
                    .batches_in_flight_max
                    .min(store.batches_per_shard().saturating_sub(1).max(1)) as u64,
                stop: shards.stop.clone(),
                ready: common.ready.clone(),
                state_out: shards.state_out(index, config),
            };
            shards.handles.push(outlet::spawn(setup).map_err(|e| format!("outlet shard {index} on CPU {core}: {e}"))?);
        }
        Ok(shards.when_ready(&common))
    }

    /// Stops the shards (each drains its sockets) and returns shard 0's
    /// decoder state.
    fn stop(self) -> Option<Vec<u8>> {
        self.stop.store(true, Relaxed);
        let mut state = None;
        for (i, h) in self.handles.into_iter().enumerate() {
            match h.join() {
                Ok(snapshot) if i == 0 => state = Some(snapshot),
                Ok(_) => {}
                Err(e) => error!("shard {i} ended badly: {e}"),
            }
        }
        if let Some(share) = self.share {
            share.stop();
        }
        state
    }
}

/// What every shard of a run is started with.
struct Common {
    /// The saved decoder state each loads.
    saved_state: Option<Arc<Vec<u8>>>,
    /// Incremented by each shard once it runs.
    ready: Arc<AtomicUsize>,
    /// The decoders' hash seed (random per run).
    seed: u64,
}

/// Each feature's counters, made before anything starts.
struct Counters {
    receive: Arc<ReceiveMetrics>,
    sink: Arc<SinkMetrics>,
    /// With the store as sink.
    store: Option<Arc<StoreMetrics>>,
    /// With the HAProxy input.
    haproxy: Option<Arc<HaproxyMetrics>>,
    /// With the store as sink and `console.enabled`.
    console: Option<Arc<ConsoleMetrics>>,
    /// With the store as sink: enrichment's.
    metadata: Option<Arc<MetadataMetrics>>,
    networks: Option<Arc<enrich::networks::NetworksMetrics>>,
    /// With the store as sink and `bmp.listen`.
    bmp: Option<Arc<enrich::bmp::BmpMetrics>>,
    /// `weir inlet`'s.
    inlet: Option<Arc<InletMetrics>>,
    /// `weir outlet`'s.
    outlet: Option<Arc<OutletMetrics>>,
    /// With the store as sink and `kafka.enriched.topic`.
    enriched: Option<Arc<EnrichedMetrics>>,
    /// `weir outlet` with `kafka.outlet.share_state`.
    state_share: Option<Arc<StateShareMetrics>>,
    http: Arc<HttpMetrics>,
}

impl Counters {
    fn new(config: &Config, cores: &[usize], mode: Mode) -> Result<Counters, String> {
        let listeners: Vec<String> = match mode {
            Mode::Outlet => Vec::new(),
            Mode::Run | Mode::Inlet => config.listeners.iter().map(|l| l.address.to_string()).collect(),
        };
        let stores = match mode {
            Mode::Run => config.sink.kind == SinkKind::Store && (!config.listeners.is_empty() || stores_http(config)),
            Mode::Inlet => false,
            Mode::Outlet => true,
        };
        let store = if stores {
            if config.store.kind == StoreKind::Embedded {
                chdb::check_library(&config.store.embedded.library)?;
            }
            Some(Arc::default())
        } else {
            None
        };
        let console = (store.is_some() && config.console.enabled).then(Arc::default);
        let metadata = store.is_some().then(|| Arc::new(MetadataMetrics::new(cores.len(), &config.metadata)));
        let networks =
            store.is_some().then(|| Arc::new(enrich::networks::NetworksMetrics::new(cores.len(), &config.networks)));
        let bmp = (store.is_some() && config.bmp.listen.is_some()).then(Arc::default);
        let enriched = (store.is_some() && !config.kafka.enriched.topic.is_empty()).then(Arc::default);
        Ok(Counters {
            enriched,
            state_share: (mode == Mode::Outlet && config.kafka.outlet.share_state).then(Arc::default),
            metadata,
            networks,
            bmp,
            receive: Arc::new(ReceiveMetrics::new(listeners, cores.to_vec())),
            sink: Arc::default(),
            console,
            store,
            haproxy: config.haproxy.enabled.then(Arc::default),
            inlet: (mode == Mode::Inlet).then(|| Arc::new(InletMetrics::new(cores.len()))),
            outlet: (mode == Mode::Outlet).then(|| Arc::new(OutletMetrics::new(cores.len()))),
            http: Arc::default(),
        })
    }

    /// Every feature's counters for `/metrics` (in the order they are
    /// shown), its liveness probes and its readiness check: one line each.
    fn register(&self) -> (Exposition, Vec<Probe>, Vec<ReadyCheck>) {
        let mut exposition = Exposition::default();
        let mut probes = self.receive.probes();
        let mut ready_checks = Vec::new();
        exposition.register(self.receive.clone());
        exposition.register(self.sink.clone());
        if let Some(store) = &self.store {
            exposition.register(store.clone());
            probes.push(store.probe());
            let (decoded, taken) = (self.receive.clone(), store.clone());
            probes.push(Probe::progress(
                "flows to the store writer",
                "flowing",
                "shards decoded flows the writer has not taken for",
                move || (decoded.flows(), taken.rows_received.load(Relaxed)),
            ));
            ready_checks.push(store.readiness());
        }
        if let Some(haproxy) = &self.haproxy {
            exposition.register(haproxy.clone());
            probes.extend(haproxy.probes());
        }
        if let Some(console) = &self.console {
            exposition.register(console.clone());
        }
        if let Some(metadata) = &self.metadata {
            exposition.register(metadata.clone());
        }
        if let Some(networks) = &self.networks {
            exposition.register(networks.clone());
        }
        if let Some(bmp) = &self.bmp {
            exposition.register(bmp.clone());
        }
        if let Some(inlet) = &self.inlet {
            exposition.register(inlet.clone());
        }
        if let Some(outlet) = &self.outlet {
            exposition.register(outlet.clone());
        }
        if let Some(enriched) = &self.enriched {
            exposition.register(enriched.clone());
        }
        if let Some(share) = &self.state_share {
            exposition.register(share.clone());
        }
        exposition.register(self.http.clone());
        (exposition, probes, ready_checks)
    }
}

/// The control-plane server on `http.listen`: the operations routes and
/// each feature's own.
fn serve_http(
    config: &Config,
    counters: &Counters,
    exposition: Exposition,
    health: &Arc<Health>,
    writer: &SinkWriter,
) -> Result<(), String> {
    let Some(address) = config.http.listen else { return Ok(()) };
    let store = match (writer, &counters.store) {
        (SinkWriter::Store(w), Some(metrics)) => Some(StoreEndpoints {
            queries: w.queries(),
            metrics: metrics.clone(),
            writes: config.http.query_writes,
            schema_proto: FlowProto::new(w.columns()).text().to_string(),
        }),
        _ => None,
    };
    let ops = Ops { exposition, health: health.clone(), debug: config.http.debug };
    let mut app = http::routes(ops).merge(store::routes::routes(store));
    if let Some(metrics) = &counters.console {
        let routes = console::routes(console::start(config, metrics.clone())?);
        match config.console.listen {
            Some(own) if own != address => {
                let local = http::serve(own, routes, config.shards.control_core, counters.http.clone())
                    .map_err(|e| format!("console.listen {own}: {e}"))?;
                info!("console API at http://{local}/api/v0/console/");
            }
            _ => app = app.merge(routes),
        }
    }
    let local = http::serve(address, app, config.shards.control_core, counters.http.clone())
        .map_err(|e| format!("http.listen {address}: {e}"))?;
    info!("metrics at http://{local}/metrics");
    Ok(())
}

fn start_writer(config: &Config, counters: &Counters, shards: usize, mode: Mode) -> Result<SinkWriter, String> {
    if mode == Mode::Outlet {
        let writer = store_writer(config, counters, shards)?;
        writer.set_kafka_backed();
        return Ok(SinkWriter::Store(Box::new(writer)));
    }
    // A cache host running only the HAProxy input has no flows to sink
    // (and a store only for its requests).
    if config.listeners.is_empty() && !stores_http(config) {
        return Ok(SinkWriter::Count);
    }
    if let (Mode::Inlet, Some(metrics)) = (mode, &counters.inlet) {
        let drain = Duration::from_millis(config.run.drain_timeout_ms);
        let lines = config.log.data_plane_lines_per_minute;
        let writer = InletWriter::start(&config.kafka, shards, metrics.clone(), lines, drain)?;
        return Ok(SinkWriter::Inlet(Box::new(writer)));
    }
    Ok(match config.sink.kind {
        SinkKind::Json => SinkWriter::Json(
            JsonWriter::start(
                &config.sink.path,
                config.sink.buffer_bytes,
                config.sink.buffers_max,
                counters.sink.clone(),
                config.log.data_plane_lines_per_minute,
            )
            .map_err(|e| format!("sink.path {}: {e}", config.sink.path.display()))?,
        ),
        SinkKind::Count => SinkWriter::Count,
        SinkKind::Store => SinkWriter::Store(Box::new(store_writer(config, counters, shards)?)),
    })
}

/// Whether HAProxy's requests go to the store too (`haproxy.store`).
fn stores_http(config: &Config) -> bool {
    config.haproxy.enabled && config.haproxy.store
}

/// The store writer with enrichment's services (`weir run` with the store
/// as sink, and `weir outlet`).
fn store_writer(config: &Config, counters: &Counters, shards: usize) -> Result<StoreWriter, String> {
    let metrics = counters.store.clone().expect("set for the store sink");
    let mut store_config = config.store.clone();
    if stores_http(config) {
        store_config.http = Some(config.haproxy.http_table());
    }
    let mut writer = StoreWriter::start(&store_config, shards, metrics)?;
    let metrics = counters.metadata.clone().expect("set for the store sink");
    let (service, handle) = enrich::start(&config.metadata, random_seed(), metrics)?;
    writer.set_metadata(service, handle);
    let metrics = counters.networks.clone().expect("set for the store sink");
    let (service, handle) = enrich::networks::start(&config.networks, &config.enrichment, metrics)?;
    writer.set_networks(service, handle);
    if let Some(metrics) = counters.bmp.clone() {
        if let Some((service, handle)) = enrich::bmp::start(&config.bmp, metrics)? {
            writer.set_routes(service, handle);
        }
    }
    if let Some(metrics) = counters.enriched.clone() {
        let proto = FlowProto::new(writer.columns());
        let drain = Duration::from_millis(config.run.drain_timeout_ms);
        let lines = config.log.data_plane_lines_per_minute;
        writer.set_enriched(EnrichedOutput::start(&config.kafka, proto, metrics, lines, drain)?);
    }
    Ok(writer)
}

/// `sockets[shard][listener]`.
fn open_sockets(config: &Config, cores: &[usize], metrics: &ReceiveMetrics) -> Result<Vec<Vec<OwnedFd>>, String> {
    let asked = config.shards.socket_receive_buffer_bytes;
    let mut sockets: Vec<Vec<OwnedFd>> = cores.iter().map(|_| Vec::new()).collect();
    for (listener, l) in config.listeners.iter().enumerate() {
        for (shard, per_shard) in sockets.iter_mut().enumerate() {
            let (fd, opened) = socket::open(l.address, asked)
                .map_err(|e| format!("listeners[{listener}].address {}: {e}", l.address))?;
            metrics.shards[shard].sockets[listener].buffer_bytes.store(opened.receive_buffer_bytes as u64, Relaxed);
            // Linux reports twice the asked size on a full grant.
            if shard == 0 {
                let granted = opened.receive_buffer_bytes / 2;
                let how = if opened.forced { "SO_RCVBUFFORCE" } else { "SO_RCVBUF (not root: capped by rmem_max)" };
                let message = format!("{}: receive buffer {granted} of {asked} bytes asked, via {how}", l.address);
                if granted < asked {
                    warn!("{message}");
                } else {
                    info!("{message}");
                }
            }
            per_shard.push(fd);
        }
    }
    Ok(sockets)
}

fn attach_balancers(config: &Config, sockets: &[Vec<OwnedFd>], metrics: &ReceiveMetrics) -> Vec<Balancer> {
    let mut balancers = Vec::new();
    for (listener, l) in config.listeners.iter().enumerate() {
        let group: Vec<_> = sockets.iter().map(|s| s[listener].as_fd()).collect();
        if config.balancer.mode == BalancerMode::Kernel {
            // A program left by an earlier instance would still steer the group.
            let _ = aya::programs::SkReuseport::detach(group[0]);
            continue;
        }
        match Balancer::attach(&group) {
            Ok(b) => {
                metrics.ebpf_active[listener].store(1, Relaxed);
                balancers.push(b);
            }
            Err(e) => warn!("{}: {e}; keeping the kernel's 5-tuple hash", l.address),
        }
    }
    balancers
}

/// Graceful restart, new side: signal the instance named by the pid file,
/// wait for it to drain and exit, then load the state it saved.
fn take_over(config: &Config, inboxes: &Inboxes) {
    let Some(pid_file) = &config.run.pid_file else { return };
    let old = previous_instance(pid_file);
    let _ = save_atomically(pid_file, format!("{}\n", std::process::id()).as_bytes());
    let Some(old) = old else { return };
    info!("taking over from pid {old}: asking it to drain and exit");
    // SAFETY: plain syscall on a pid checked to be a running weir.
    unsafe { libc::kill(old, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_millis(config.run.drain_timeout_ms) + Duration::from_secs(10);
    while Path::new(&format!("/proc/{old}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some(bytes) = config.decoder.state_file.as_ref().and_then(|p| std::fs::read(p).ok()) else { return };
    let Ok(snapshot) = serde_json::from_slice::<Snapshot>(&bytes) else { return };
    let updates: Arc<[_]> = snapshot.updates().into();
    for (shard, inbox) in inboxes.iter().enumerate() {
        if inbox.push(updates.clone()).is_err() {
            warn!("shard {shard}: inbox full, predecessor's state not loaded; templates come with refreshes");
        }
    }
    info!("pid {old} is gone; loaded its decoder state ({} items)", updates.len());
}

/// The pid in the file, if it is a running `weir` other than us.
fn previous_instance(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    if pid <= 0 || pid as u32 == std::process::id() {
        return None;
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "weir").then_some(pid)
}

fn release_pid_file(config: &Config) {
    let Some(pid_file) = &config.run.pid_file else { return };
    let ours = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok());
    // After a takeover the file names our successor: leave it.
    if ours == Some(std::process::id()) {
        let _ = std::fs::remove_file(pid_file);
    }
}

struct Control {
    config_path: PathBuf,
    config: Config,
    raw_fds: Vec<RawFd>,
    receive: Arc<ReceiveMetrics>,
    health: Arc<Health>,
    writer: SinkWriter,
    notifier: Notifier,
}

impl Control {
    /// Waits for SIGTERM or SIGINT; handles SIGHUP and periodic state saves.
    fn run_until_stopped(
        &self,
        mut signals: signal_hook::iterator::Signals,
        mut watch: Watch,
        state_out: &ArrayQueue<Vec<u8>>,
    ) -> Result<(), String> {
        let check_every =
            self.notifier.watchdog_every.map_or(Duration::from_secs(1), |w| w.min(Duration::from_secs(1)));
        let mut next_check = Instant::now();
        let mut next_ping = Instant::now();
        let mut was_alive = true;
        loop {
            if Instant::now() >= next_check {
                next_check = Instant::now() + check_every;
                let (alive, components) = watch.check(Instant::now());
                if alive != was_alive {
                    let failing: Vec<String> =
                        components.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
                    if alive {
                        info!("pipeline moving again; watchdog pings resume");
                    } else {
                        error!("pipeline stalled ({}); withholding watchdog pings", failing.join("; "));
                    }
                    was_alive = alive;
                }
                self.health.update(alive, components);
                if let Some(every) = self.notifier.watchdog_every {
                    if alive && Instant::now() >= next_ping {
                        self.notifier.notify("WATCHDOG=1");
                        next_ping = Instant::now() + every;
                    }
                }
            }
            for signal in signals.pending() {
                match signal {
                    SIGHUP => self.reload(),
                    _ => {
                        info!("stopping: draining the sockets");
                        return Ok(());
                    }
                }
            }
            if let (Some(path), Some(state)) = (&self.config.decoder.state_file, state_out.pop()) {
                let _ = save_atomically(path, &state);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn reload(&self) {
        let new = match read_config(&self.config_path) {
            Ok((c, warnings)) => {
                warnings.iter().for_each(|w| warn!("{w}"));
                c
            }
            Err(e) => return error!("reload refused, keeping the running config: {e}"),
        };
        let bytes = new.shards.socket_receive_buffer_bytes;
        for (i, fd) in self.raw_fds.iter().enumerate() {
            if let Err(e) = socket::set_receive_buffer(*fd, bytes) {
                warn!("reload: receive buffer: {e}");
            }
            let granted = socket::receive_buffer_bytes_of(*fd).unwrap_or(0) as u64;
            let listeners = self.receive.listeners.len();
            let (shard, listener) = (i / listeners, i % listeners);
            self.receive.shards[shard].sockets[listener].buffer_bytes.store(granted, Relaxed);
        }
        self.writer.reopen();
        let restart = self.config.keys_needing_restart(&new);
        if restart.is_empty() {
            info!("reloaded: socket receive buffers set, sink file reopened");
        } else {
            warn!("reloaded what can change live; these need a restart: {}", restart.join(", "));
        }
    }
}

/// Writes through a temporary file and a rename, so a reader never sees
/// half; logs a failure and says whether it worked.
pub(crate) fn save_atomically(path: &Path, bytes: &[u8]) -> bool {
    // `NAME.tmp` beside it: unique per file (with_extension would give the
    // pid file and the state file the same one when they share a stem).
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = &result {
        error!("{}: {e}", path.display());
    }
    result.is_ok()
}

/// The state maps' hash seed: exporter addresses can be spoofed.
pub(crate) fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: the buffer is valid for its length.
    unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    u64::from_ne_bytes(seed)
}
