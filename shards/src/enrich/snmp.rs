//! The SNMP provider: a few poller threads, fed by the metadata control
//! thread, each polling one exporter at a time.
//!
//! ```text
//!  control thread: Poller ── Job (exporter, agent, up to N ifIndexes) ─▶ bounded channel
//!        ▲                                                              │
//!        └──────── Answer (sysName, interfaces | Failure) ◀── poller threads (snmp2, blocking, with timeouts)
//! ```
//!
//! - One request per exporter carries several interfaces (sysName plus
//!   four objects each, `metadata.snmp.interfaces_per_request`); an agent
//!   that says tooBig gets half as many next time.
//! - One job per exporter at a time, `metadata.snmp.pollers` at once;
//!   exporters take turns (a queue), so a large one does not starve the
//!   others.
//! - A failed poll puts its interfaces back; after `breaker_errors`
//!   failures in a row the exporter's breaker opens: it is left alone for
//!   a backoff that doubles at each new failure. Its flows keep flowing
//!   with what is known.
//! - SNMPv2c tries every community of the exporter's subnet and merges the
//!   answers (the one that answered last is tried first). SNMPv3 sessions
//!   (engine ID, boots, time, localised keys) are kept per agent, so only
//!   the first poll pays the discovery round trip.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use snmp2::v3::{Auth, AuthProtocol, Cipher, KeyExtension, Security};
use snmp2::SyncSession;
use weir_core::config::{SnmpConfig, SnmpCredentials};
use weir_core::enrich::metadata::{Resolver, SubnetMap};
use weir_core::enrich::snmp::{interpret, merge, read_answers, request_oids, Answer, Failure, Polled};
use weir_core::flow::{addr_to_ip, Addr};

/// Interfaces waiting for a poll, over every exporter, at most (past it a
/// request is dropped, counted; a later flow asks again).
pub const WANTED_MAX: usize = 65_536;
const POLLER_STACK: usize = 8 << 20;
/// SNMPv3 sessions kept (each holds a socket and two 64 KiB buffers).
const V3_SESSIONS_MAX: usize = 256;

/// The SNMP provider's counters.
#[derive(Default)]
pub struct SnmpMetrics {
    /// Polls answered, then one per `Failure::ALL`.
    pub polls: [AtomicU64; 1 + Failure::ALL.len()],
    /// Requests sent again after a timeout.
    pub retries: AtomicU64,
    /// Microseconds spent in polls, over all of them.
    pub poll_micros: AtomicU64,
    /// Interfaces answered: found (an ifName), missing.
    pub interfaces: [AtomicU64; 2],
    pub breaker_opens: AtomicU64,
    /// Requests dropped because `WANTED_MAX` interfaces already wait.
    pub wanted_full: AtomicU64,
    /// SNMPv3 sessions reused, and made (a discovery round trip).
    pub v3_sessions: [AtomicU64; 2],
    /// Gauges: interfaces waiting, exporters whose breaker is open, polls
    /// in flight.
    pub wanted: AtomicU64,
    pub breakers_open: AtomicU64,
    pub in_flight: AtomicU64,
}

/// One poll: an exporter's agent and the interfaces to ask about.
struct Job {
    exporter: Addr,
    agent: SocketAddr,
    credentials: Arc<SnmpCredentials>,
    if_indexes: Vec<u32>,
    /// Community tried first (the one that answered last).
    first_community: usize,
}

/// What a poller thread sends back.
struct Done {
    exporter: Addr,
    if_indexes: Vec<u32>,
    result: Result<Polled, Failure>,
    /// The community that answered (v2c).
    community: usize,
}

/// An exporter as the poller tracks it.
#[derive(Default)]
struct State {
    /// ifIndexes to ask about.
    wanted: BTreeSet<u32>,
    /// Its sysName is wanted (even with no interface).
    sys_name: bool,
    in_flight: bool,
    /// In `queue`.
    queued: bool,
    /// Failed polls in a row.
    failures: u32,
    /// Not polled before (after a failure, or while the breaker is open).
    not_before: Option<Instant>,
    backoff: Duration,
    open: bool,
    /// Interfaces per request (halved on tooBig).
    batch: usize,
    community: usize,
}

/// The control thread's side of the SNMP provider.
pub struct Poller {
    credentials: SubnetMap<Arc<SnmpCredentials>>,
    per_request: usize,
    pollers: usize,
    breaker_errors: u32,
    backoff_min: Duration,
    backoff_max: Duration,
    retry_delay: Duration,
    exporters: HashMap<Addr, State>,
    /// Exporters with work, in turn.
    queue: VecDeque<Addr>,
    /// Exporters waiting for `not_before`.
    deferred: Vec<Addr>,
    wanted: usize,
    in_flight: usize,
    /// Polls in flight for exporters forgotten since.
    orphans: usize,
    jobs: Sender<Job>,
    answers: Receiver<Done>,
    metrics: Arc<SnmpMetrics>,
}

impl Poller {
    /// Starts `config.pollers` threads; `control` is woken when one answers.
    pub fn start(
        config: &SnmpConfig,
        metrics: Arc<SnmpMetrics>,
        control: std::thread::Thread,
    ) -> Result<Poller, String> {
        let (jobs, job_rx) = bounded::<Job>(config.pollers);
        let (done_tx, answers) = bounded::<Done>(config.pollers * 2);
        let timeout = Duration::from_millis(config.timeout_ms);
        let sessions = Arc::new(Mutex::new(HashMap::<(SocketAddr, usize), Box<SyncSession>>::new()));
        for i in 0..config.pollers {
            let (rx, tx, control, metrics, sessions) =
                (job_rx.clone(), done_tx.clone(), control.clone(), metrics.clone(), sessions.clone());
            let retries = config.retries;
            std::thread::Builder::new()
                .name(format!("weir-snmp-{i}"))
                // A session holds a 64 KiB receive buffer, moved by value.
                .stack_size(POLLER_STACK)
                .spawn(move || {
                    // Ends when the control thread drops the Poller.
                    for job in rx.iter() {
                        let started = Instant::now();
                        let (result, community) = poll(&job, timeout, retries, &sessions, &metrics);
                        metrics.poll_micros.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                        let done = Done { exporter: job.exporter, if_indexes: job.if_indexes, result, community };
                        if tx.send(done).is_err() {
                            return;
                        }
                        control.unpark();
                    }
                })
                .map_err(|e| format!("cannot start an SNMP poller thread: {e}"))?;
        }
        Ok(Poller {
            credentials: SubnetMap::new(config.credentials.iter().map(|c| (c.subnet.as_str(), Arc::new(c.clone())))),
            per_request: config.interfaces_per_request,
            pollers: config.pollers,
            breaker_errors: config.breaker_errors,
            backoff_min: Duration::from_millis(config.breaker_backoff_min_ms),
            backoff_max: Duration::from_millis(config.breaker_backoff_max_ms),
            retry_delay: timeout,
            exporters: HashMap::new(),
            queue: VecDeque::new(),
            deferred: Vec::new(),
            wanted: 0,
            in_flight: 0,
            orphans: 0,
            jobs,
            answers,
            metrics,
        })
    }

    /// `if_index` of `exporter` (0: only its sysName) is to be polled.
    pub fn want(&mut self, exporter: &Addr, if_index: u32) {
        if self.wanted >= WANTED_MAX {
            self.metrics.wanted_full.fetch_add(1, Relaxed);
            return;
        }
        let batch = self.per_request;
        let state = self.exporters.entry(*exporter).or_insert_with(|| State { batch, ..State::default() });
        if if_index == 0 {
            state.sys_name = true;
        } else if state.wanted.insert(if_index) {
            self.wanted += 1;
        }
        if !state.queued && !state.in_flight && state.not_before.is_none() {
            state.queued = true;
            self.queue.push_back(*exporter);
        }
    }

    /// Takes the pollers' answers into `resolver`; whether any came.
    pub fn collect(&mut self, resolver: &mut Resolver) -> bool {
        let mut any = false;
        let now = Instant::now();
        while let Ok(done) = self.answers.try_recv() {
            any = true;
            self.in_flight -= 1;
            let Some(state) = self.exporters.get_mut(&done.exporter).filter(|s| s.in_flight) else {
                self.orphans = self.orphans.saturating_sub(1);
                continue;
            };
            state.in_flight = false;
            match done.result {
                Ok(polled) => {
                    self.metrics.polls[0].fetch_add(1, Relaxed);
                    let found = polled.interfaces.iter().filter(|i| i.1.is_some()).count();
                    self.metrics.interfaces[0].fetch_add(found as u64, Relaxed);
                    self.metrics.interfaces[1].fetch_add((polled.interfaces.len() - found) as u64, Relaxed);
                    let interfaces: Vec<_> =
                        polled.interfaces.into_iter().map(|(i, info)| (i, info.unwrap_or_default())).collect();
                    resolver.answer(&done.exporter, Some(&polled.sys_name), &interfaces);
                    state.failures = 0;
                    state.backoff = Duration::ZERO;
                    state.community = done.community;
                    if state.open {
                        state.open = false;
                        self.metrics.breakers_open.fetch_sub(1, Relaxed);
                    }
                }
                Err(failure) => {
                    let label = Failure::ALL.iter().position(|f| *f == failure).unwrap_or(0);
                    self.metrics.polls[1 + label].fetch_add(1, Relaxed);
                    let back = done.if_indexes.len();
                    if failure == Failure::TooBig && back > 1 {
                        // Asked again in smaller requests, at once.
                        state.batch = (back / 2).max(1);
                    } else {
                        state.failures += 1;
                        let mut delay = self.retry_delay;
                        if state.failures >= self.breaker_errors {
                            if !state.open {
                                state.open = true;
                                self.metrics.breaker_opens.fetch_add(1, Relaxed);
                                self.metrics.breakers_open.fetch_add(1, Relaxed);
                            }
                            state.backoff = match state.backoff.is_zero() {
                                true => self.backoff_min,
                                false => (state.backoff * 2).min(self.backoff_max),
                            };
                            delay = state.backoff;
                        }
                        state.not_before = Some(now + delay);
                        self.deferred.push(done.exporter);
                    }
                    state.sys_name |= back == 0;
                    for i in done.if_indexes {
                        if state.wanted.insert(i) {
                            self.wanted += 1;
                        }
                    }
                }
            }
            if state.not_before.is_none() && !state.queued && (state.sys_name || !state.wanted.is_empty()) {
                state.queued = true;
                self.queue.push_back(done.exporter);
            }
        }
        self.publish();
        any
    }

    /// Sends the exporters whose turn it is to the pollers.
    pub fn dispatch(&mut self) {
        let now = Instant::now();
        let exporters = &mut self.exporters;
        let queue = &mut self.queue;
        self.deferred.retain(|a| {
            let Some(state) = exporters.get_mut(a) else { return false };
            if state.not_before.is_some_and(|t| t > now) {
                return true;
            }
            state.not_before = None;
            if !state.queued && !state.in_flight {
                state.queued = true;
                queue.push_back(*a);
            }
            false
        });
        while self.in_flight < self.pollers {
            let Some(exporter) = self.queue.pop_front() else { break };
            let Some(state) = self.exporters.get_mut(&exporter) else { continue };
            state.queued = false;
            if state.in_flight || (!state.sys_name && state.wanted.is_empty()) {
                continue;
            }
            let Some(credentials) = self.credentials.get(&exporter) else {
                // Not polled (the resolver asks only for polled exporters).
                self.wanted -= state.wanted.len();
                state.wanted.clear();
                state.sys_name = false;
                continue;
            };
            let if_indexes: Vec<u32> = state.wanted.iter().take(state.batch).copied().collect();
            for i in &if_indexes {
                state.wanted.remove(i);
            }
            self.wanted -= if_indexes.len();
            state.sys_name = false;
            let ip = match credentials.agent.parse::<IpAddr>() {
                Ok(agent) => agent,
                Err(_) => addr_to_ip(&exporter),
            };
            let job = Job {
                exporter,
                agent: SocketAddr::new(ip, credentials.port()),
                credentials: credentials.clone(),
                if_indexes,
                first_community: state.community,
            };
            match self.jobs.try_send(job) {
                Ok(()) => {
                    state.in_flight = true;
                    self.in_flight += 1;
                }
                Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                    // Cannot happen (as many slots as pollers): try later.
                    for i in job.if_indexes {
                        if state.wanted.insert(i) {
                            self.wanted += 1;
                        }
                    }
                    state.sys_name = true;
                    state.queued = true;
                    self.queue.push_front(exporter);
                    break;
                }
            }
        }
        self.publish();
    }

    /// Forgets `exporter` (the cache dropped it): nothing more is polled
    /// for it, and an answer in flight is ignored.
    pub fn forget(&mut self, exporter: &Addr) {
        if let Some(state) = self.exporters.remove(exporter) {
            self.wanted -= state.wanted.len();
            if state.open {
                self.metrics.breakers_open.fetch_sub(1, Relaxed);
            }
            if state.in_flight {
                // Counted back when its answer comes.
                self.orphans += 1;
            }
        }
        self.publish();
    }

    /// How long until a deferred exporter may be polled again.
    pub fn next_wake(&self) -> Option<Duration> {
        let now = Instant::now();
        self.deferred
            .iter()
            .filter_map(|a| self.exporters.get(a)?.not_before)
            .min()
            .map(|t| t.saturating_duration_since(now))
    }

    fn publish(&self) {
        self.metrics.wanted.store(self.wanted as u64, Relaxed);
        self.metrics.in_flight.store(self.in_flight as u64, Relaxed);
    }
}

/// Polls `job` (on a poller thread): its answer, and the community that
/// gave it.
fn poll(
    job: &Job,
    timeout: Duration,
    retries: u32,
    sessions: &Mutex<HashMap<(SocketAddr, usize), Box<SyncSession>>>,
    metrics: &SnmpMetrics,
) -> (Result<Polled, Failure>, usize) {
    let oids = request_oids(&job.if_indexes);
    let oids: Vec<_> = oids.iter().collect();
    let request_id = request_id();
    if job.credentials.is_v3() {
        // Per agent and credentials: two exporters polled on one agent with
        // different users keep a session each.
        let key = (job.agent, Arc::as_ptr(&job.credentials) as usize);
        let cached = sessions.lock().map(|mut s| s.remove(&key)).unwrap_or(None);
        metrics.v3_sessions[usize::from(cached.is_none())].fetch_add(1, Relaxed);
        let mut session = match cached {
            Some(s) => s,
            None => match v3_session(job, timeout, request_id) {
                Ok(s) => s,
                Err(f) => return (Err(f), 0),
            },
        };
        let answers = get(&mut session, &oids, &job.if_indexes, retries, metrics);
        if answers.is_ok() {
            if let Ok(mut s) = sessions.lock() {
                if s.len() < V3_SESSIONS_MAX {
                    s.insert(key, session);
                }
            }
        }
        return (answers.and_then(|a| interpret(&a, &job.if_indexes)), 0);
    }
    // v2c: every community, the last good one first, answers merged.
    let communities = &job.credentials.communities;
    let first = job.first_community.min(communities.len().saturating_sub(1));
    let order = std::iter::once(first).chain((0..communities.len()).filter(|&i| i != first));
    let mut merged: Option<(Vec<Answer>, usize)> = None;
    let mut last = Failure::Timeout;
    for i in order {
        let session = SyncSession::new_v2c(job.agent, communities[i].as_bytes(), Some(timeout), request_id);
        let mut session = match session {
            Ok(s) => Box::new(s),
            Err(_) => return (Err(Failure::Send), first),
        };
        match get(&mut session, &oids, &job.if_indexes, retries, metrics) {
            Ok(answers) => match &mut merged {
                None => {
                    let complete = !answers.contains(&Answer::Missing);
                    merged = Some((answers, i));
                    if complete {
                        break;
                    }
                }
                Some((have, _)) => {
                    if !merge(have, answers) {
                        break;
                    }
                }
            },
            Err(f) => last = f,
        }
    }
    match merged {
        Some((answers, community)) => (interpret(&answers, &job.if_indexes), community),
        None => (Err(last), first),
    }
}

/// One GET, sent again after a timeout up to `retries` times (and once
/// more when an SNMPv3 agent corrects our view of its clock).
fn get(
    session: &mut SyncSession,
    oids: &[&snmp2::Oid],
    if_indexes: &[u32],
    retries: u32,
    metrics: &SnmpMetrics,
) -> Result<Vec<Answer>, Failure> {
    let mut left = retries + 1;
    let mut resynced = false;
    loop {
        left -= 1;
        match session.get_many(oids) {
            Ok(pdu) => return read_answers(&pdu, if_indexes),
            Err(snmp2::Error::AuthUpdated) if !resynced => resynced = true,
            Err(e @ (snmp2::Error::Receive | snmp2::Error::RequestIdMismatch)) => {
                if left == 0 {
                    return Err(Failure::of(&e));
                }
                metrics.retries.fetch_add(1, Relaxed);
            }
            Err(e) => return Err(Failure::of(&e)),
        }
    }
}

/// A new SNMPv3 session to the job's agent, its engine discovered.
fn v3_session(job: &Job, timeout: Duration, request_id: i32) -> Result<Box<SyncSession>, Failure> {
    let c = &job.credentials;
    let protocol = match c.authentication().unwrap_or("none") {
        "md5" => Some(AuthProtocol::Md5),
        "sha1" => Some(AuthProtocol::Sha1),
        "sha224" => Some(AuthProtocol::Sha224),
        "sha256" => Some(AuthProtocol::Sha256),
        "sha384" => Some(AuthProtocol::Sha384),
        "sha512" => Some(AuthProtocol::Sha512),
        _ => None,
    };
    let (cipher, extension) = match c.privacy().unwrap_or("none") {
        "des" => (Some(Cipher::Des), None),
        "aes128" => (Some(Cipher::Aes128), None),
        "aes192" => (Some(Cipher::Aes192), Some(KeyExtension::Blumenthal)),
        "aes256" => (Some(Cipher::Aes256), Some(KeyExtension::Blumenthal)),
        "aes192c" => (Some(Cipher::Aes192), Some(KeyExtension::Reeder)),
        "aes256c" => (Some(Cipher::Aes256), Some(KeyExtension::Reeder)),
        _ => (None, None),
    };
    let password = if protocol.is_some() { c.authentication_passphrase.as_bytes() } else { b"" };
    let mut security = Security::new(c.user_name.as_bytes(), password).with_context_name(&c.context_name);
    security = match (protocol, cipher) {
        (None, _) => security.with_auth(Auth::NoAuthNoPriv),
        (Some(p), None) => security.with_auth_protocol(p).with_auth(Auth::AuthNoPriv),
        (Some(p), Some(cipher)) => security
            .with_auth_protocol(p)
            .with_auth(Auth::AuthPriv { cipher, privacy_password: c.privacy_passphrase.as_bytes().to_vec() }),
    };
    if let Some(e) = extension {
        security = security.with_key_extension_method(e);
    }
    let mut session =
        Box::new(SyncSession::new_v3(job.agent, Some(timeout), request_id, security).map_err(|_| Failure::Send)?);
    session.init().map_err(|e| Failure::of(&e))?;
    Ok(session)
}

/// A request id unlikely to match a stale answer of an earlier session.
fn request_id() -> i32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(1);
    (nanos & 0x3fff_ffff) as i32
}
