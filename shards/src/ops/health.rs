//! Is the pipeline alive, and is it ready? The control loop runs a `Watch`
//! once a second and keeps the liveness report for `/health/live` and
//! systemd's watchdog (`ops::systemd`); `/health/ready` runs the readiness
//! checks when it is asked.
//!
//! This module knows no feature. Each feature hands `run` its probes, read
//! from its own counters:
//! - a **heartbeat** (a shard's housekeeping tick, the store writer's loop,
//!   the log shard's loop) must move within `run.stall_timeout_s`: it
//!   cannot move while its thread is stuck;
//! - **progress** (flows to the store writer, HAProxy lines to Kafka): when
//!   work arrives, it must be taken within the stall timeout. A writer that
//!   is alive but never takes a batch leaves the shards blocked on
//!   backpressure forever.
//!
//! A store that is down is not a wedge: the writer keeps taking batches and
//! spooling them, and a restart would not bring the store back. Ready means
//! the shards run (their sockets are bound) and every readiness check (the
//! store's: connected, migrated, and the last insert worked) passes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One thing the watch reads once a second.
pub struct Probe {
    name: String,
    kind: ProbeKind,
    /// Heartbeat: (beats, 0). Progress: (work arrived, work taken).
    read: Box<dyn Fn() -> (u64, u64) + Send>,
}

enum ProbeKind {
    Heartbeat,
    /// What the detail says while work moves, and before the stuck time.
    Progress {
        moving: &'static str,
        stuck_for: &'static str,
    },
}

impl Probe {
    /// A counter that must move within the stall timeout.
    pub fn heartbeat(name: impl Into<String>, beats: impl Fn() -> u64 + Send + 'static) -> Probe {
        Probe { name: name.into(), kind: ProbeKind::Heartbeat, read: Box::new(move || (beats(), 0)) }
    }

    /// Work that must be taken on: `read` gives (arrived, taken); the probe
    /// fails once work has arrived without any being taken for the stall
    /// timeout. `moving` is its detail while it moves, `stuck_for` the words
    /// before the time it has not.
    pub fn progress(
        name: impl Into<String>,
        moving: &'static str,
        stuck_for: &'static str,
        read: impl Fn() -> (u64, u64) + Send + 'static,
    ) -> Probe {
        Probe { name: name.into(), kind: ProbeKind::Progress { moving, stuck_for }, read: Box::new(read) }
    }
}

/// One component's state in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The watch over successive readings of the probes.
pub struct Watch {
    stall: Duration,
    probes: Vec<Probe>,
    last: Option<Vec<(u64, u64)>>,
    /// Per probe: when it was last seen fine (heartbeat moved; no work
    /// waiting or work taken).
    fine_at: Vec<Instant>,
}

impl Watch {
    pub fn new(stall: Duration, probes: Vec<Probe>, now: Instant) -> Watch {
        let fine_at = vec![now; probes.len()];
        Watch { stall, probes, last: None, fine_at }
    }

    /// Reads the probes; returns whether the pipeline is alive, and why not.
    pub fn check(&mut self, now: Instant) -> (bool, Vec<Component>) {
        let readings: Vec<(u64, u64)> = self.probes.iter().map(|p| (p.read)()).collect();
        if let Some(last) = &self.last {
            for ((probe, fine_at), (a, b)) in self.probes.iter().zip(&mut self.fine_at).zip(last.iter().zip(&readings))
            {
                let fine = match probe.kind {
                    ProbeKind::Heartbeat => a.0 != b.0,
                    ProbeKind::Progress { .. } => a.0 == b.0 || a.1 != b.1,
                };
                if fine {
                    *fine_at = now;
                }
            }
        }
        let components: Vec<Component> = self
            .probes
            .iter()
            .zip(&self.fine_at)
            .map(|(probe, fine_at)| {
                let quiet = now.saturating_duration_since(*fine_at);
                let detail = match probe.kind {
                    ProbeKind::Heartbeat => format!("heartbeat {} ms ago", quiet.as_millis()),
                    ProbeKind::Progress { moving, .. } if quiet.is_zero() => moving.into(),
                    ProbeKind::Progress { stuck_for, .. } => format!("{stuck_for} {} ms", quiet.as_millis()),
                };
                Component { name: probe.name.clone(), ok: quiet < self.stall, detail }
            })
            .collect();
        self.last = Some(readings);
        (components.iter().all(|c| c.ok), components)
    }
}

/// A readiness check, run when `/health/ready` is asked.
pub type ReadyCheck = Box<dyn Fn() -> Component + Send + Sync>;

/// What the HTTP thread shows; the control loop writes it.
#[derive(Default)]
pub struct Health {
    report: Mutex<Report>,
    checks: Vec<ReadyCheck>,
}

#[derive(Clone, Debug, Default)]
struct Report {
    /// The shards have started: every socket is bound and read.
    started: bool,
    alive: bool,
    components: Vec<Component>,
}

impl Health {
    /// With the readiness checks of the features that have one.
    pub fn new(checks: Vec<ReadyCheck>) -> Health {
        Health { report: Mutex::default(), checks }
    }

    pub fn set_started(&self) {
        if let Ok(mut r) = self.report.lock() {
            r.started = true;
        }
    }

    pub fn update(&self, alive: bool, components: Vec<Component>) {
        if let Ok(mut r) = self.report.lock() {
            r.alive = alive;
            r.components = components;
        }
    }

    /// `/health/live`: (ok, JSON).
    pub fn live(&self) -> (bool, String) {
        let r = self.report.lock().map(|r| r.clone()).unwrap_or_default();
        // Before the first check, a started pipeline counts as alive.
        let ok = r.alive || (r.started && r.components.is_empty());
        (ok, json(ok, &r.components))
    }

    /// `/health/ready`: (ok, JSON), each check as it is now (read at the
    /// request, not at the last watch).
    pub fn ready(&self) -> (bool, String) {
        let started = self.report.lock().map(|r| r.started).unwrap_or(false);
        let mut components = vec![Component {
            name: "listeners".into(),
            ok: started,
            detail: if started { "bound, shards running" } else { "starting" }.into(),
        }];
        components.extend(self.checks.iter().map(|check| check()));
        let ok = components.iter().all(|c| c.ok);
        (ok, json(ok, &components))
    }
}

fn json(ok: bool, components: &[Component]) -> String {
    let list: Vec<serde_json::Value> =
        components.iter().map(|c| serde_json::json!({ "name": c.name, "ok": c.ok, "detail": c.detail })).collect();
    serde_json::json!({ "status": if ok { "ok" } else { "failing" }, "components": list }).to_string() + "\n"
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::sync::Arc;

    use super::*;

    /// Counters a test sets, read by probes.
    #[derive(Clone, Default)]
    struct Counters(Arc<[AtomicU64; 8]>);

    impl Counters {
        fn set(&self, values: &[u64]) {
            for (a, v) in self.0.iter().zip(values) {
                a.store(*v, Relaxed);
            }
        }

        fn heartbeat(&self, name: &str, i: usize) -> Probe {
            let c = self.clone();
            Probe::heartbeat(name, move || c.0[i].load(Relaxed))
        }

        fn progress(&self, name: &str, i: usize, j: usize) -> Probe {
            let c = self.clone();
            Probe::progress(name, "flowing", "arrived and not taken for", move || {
                (c.0[i].load(Relaxed), c.0[j].load(Relaxed))
            })
        }
    }

    #[test]
    fn work_arriving_without_being_taken_fails_after_the_stall_timeout() {
        let t0 = Instant::now();
        let c = Counters::default();
        let mut w = Watch::new(
            Duration::from_secs(10),
            vec![c.heartbeat("haproxy log shard", 0), c.progress("haproxy lines to kafka", 1, 2)],
            t0,
        );
        let mut at = |values: &[u64], s: u64| {
            c.set(values);
            w.check(t0 + Duration::from_secs(s))
        };
        assert!(at(&[1, 10, 10], 0).0);
        // Quiet: nothing arrives, nothing is owed.
        assert!(at(&[2, 10, 10], 20).0);
        // Work arrives, and is taken.
        assert!(at(&[3, 50, 40], 21).0);
        // Work keeps arriving and nothing is taken any more.
        for s in 22..=30 {
            assert!(at(&[s, s * 10, 40], s).0);
        }
        let (alive, components) = at(&[40, 400, 40], 32);
        assert!(!alive);
        let failing: Vec<_> = components.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        assert_eq!(failing, ["haproxy lines to kafka"]);
        assert!(components[1].detail.starts_with("arrived and not taken for 1"), "{components:?}");
        // Taken again: alive at once.
        let (alive, components) = at(&[41, 410, 45], 33);
        assert!(alive && components[1].detail == "flowing", "{components:?}");
        // A loop that stops turning.
        let (alive, components) = at(&[41, 410, 45], 50);
        assert!(!alive && components.iter().any(|c| c.name == "haproxy log shard" && !c.ok));
    }

    #[test]
    fn a_shard_whose_heartbeat_stops_fails_after_the_stall_timeout() {
        let t0 = Instant::now();
        let c = Counters::default();
        let mut w = Watch::new(Duration::from_secs(10), vec![c.heartbeat("shard 0", 0), c.heartbeat("shard 1", 1)], t0);
        c.set(&[1, 1]);
        assert!(w.check(t0).0);
        for s in 1..=9 {
            c.set(&[1, 1 + s]);
            assert!(w.check(t0 + Duration::from_secs(s)).0);
        }
        c.set(&[1, 20]);
        let (alive, components) = w.check(t0 + Duration::from_secs(11));
        assert!(!alive);
        assert_eq!(components.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect::<Vec<_>>(), ["shard 0"]);
        assert_eq!(components[0].detail, "heartbeat 11000 ms ago");
    }

    #[test]
    fn readiness_waits_for_the_shards_and_every_check() {
        let connected = Arc::new(AtomicU64::new(0));
        let c = connected.clone();
        let check: ReadyCheck = Box::new(move || Component {
            name: "store".into(),
            ok: c.load(Relaxed) == 1,
            detail: "not connected or not migrated yet".into(),
        });
        let h = Health::new(vec![check]);
        assert!(!h.ready().0 && !h.live().0);
        h.set_started();
        assert!(h.live().0, "alive once started, before the first watch");
        let (ok, body) = h.ready();
        assert!(!ok && body.contains("not connected"), "{body}");
        connected.store(1, Relaxed);
        let body: serde_json::Value = serde_json::from_str(&h.ready().1).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["components"][1]["name"], "store");
        assert!(Health::default().ready().1.contains("starting"), "no checks: the listeners alone");
    }
}
