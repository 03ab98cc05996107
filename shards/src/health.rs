//! Is the pipeline alive, and is it ready? The control loop samples the
//! counters once a second and keeps the liveness report for `/health/live`
//! and systemd's watchdog (`systemd`); `/health/ready` reads the store's
//! state when it is asked.
//!
//! Alive means nothing is wedged, judged by what moved within
//! `run.stall_timeout_s`:
//! - every shard's heartbeat (its housekeeping tick, which cannot run while
//!   the shard is stuck in a batch);
//! - the store writer's heartbeat (its loop turns at least every
//!   `store.retry_backoff_max_ms`, or once per insert);
//! - flows: when the shards decode flows, the writer must take rows. A
//!   writer that is alive but never takes a batch leaves the shards blocked
//!   on backpressure forever.
//!
//! A store that is down is not a wedge: the writer keeps taking batches and
//! spooling them, and a restart would not bring the store back. Ready means
//! the shards run (their sockets are bound) and, with the store as sink,
//! the writer has connected and migrated and the last insert worked.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::metrics::{Metrics, StoreMetrics};

/// The counters one check reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    pub shard_beats: Vec<u64>,
    /// Flows the shards decoded.
    pub decoded: u64,
    /// With the store: the writer's heartbeat, rows it took, and whether it
    /// is connected (and migrated) and its last insert worked.
    pub store: Option<StoreSample>,
    pub haproxy: Option<HaproxySample>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HaproxySample {
    pub beats: u64,
    pub lines: u64,
    /// Messages acknowledged or failed: the producer answered.
    pub answered: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreSample {
    pub beats: u64,
    pub rows_received: u64,
    pub connected: bool,
    pub up: bool,
}

impl Sample {
    pub fn read(metrics: &Metrics) -> Sample {
        Sample {
            shard_beats: metrics.shards.iter().map(|s| s.heartbeats.load(Relaxed)).collect(),
            decoded: metrics.shards.iter().map(|s| s.flows.load(Relaxed)).sum(),
            store: metrics.store.as_deref().map(StoreSample::of),
            haproxy: metrics.haproxy.as_deref().map(|h| HaproxySample {
                beats: h.heartbeats.load(Relaxed),
                lines: h.lines_received.load(Relaxed),
                answered: h.delivered.iter().chain(&h.delivery_errors).map(|a| a.load(Relaxed)).sum(),
            }),
        }
    }
}

impl StoreSample {
    pub fn of(s: &StoreMetrics) -> StoreSample {
        StoreSample {
            beats: s.heartbeats.load(Relaxed),
            rows_received: s.rows_received.load(Relaxed),
            connected: s.connected.load(Relaxed) == 1,
            up: s.up.load(Relaxed) == 1,
        }
    }
}

/// One component's state in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The watch over successive samples.
pub struct Watch {
    stall: Duration,
    last: Option<Sample>,
    /// When each shard's heartbeat last moved.
    shard_moved: Vec<Instant>,
    store_moved: Instant,
    /// Last time decoded flows did not outrun the writer: either no new
    /// flows, or the writer took rows.
    flowing: Instant,
    haproxy_moved: Instant,
    /// Last time lines did not outrun the producer's answers.
    delivering: Instant,
}

impl Watch {
    pub fn new(stall: Duration, shards: usize, now: Instant) -> Watch {
        Watch {
            stall,
            last: None,
            shard_moved: vec![now; shards],
            store_moved: now,
            flowing: now,
            haproxy_moved: now,
            delivering: now,
        }
    }

    /// Takes a sample; returns whether the pipeline is alive, and why not.
    pub fn check(&mut self, s: Sample, now: Instant) -> (bool, Vec<Component>) {
        if let Some(last) = &self.last {
            for (i, (a, b)) in last.shard_beats.iter().zip(&s.shard_beats).enumerate() {
                if a != b {
                    self.shard_moved[i] = now;
                }
            }
            if let (Some(a), Some(b)) = (last.store, s.store) {
                if a.beats != b.beats {
                    self.store_moved = now;
                }
                if s.decoded == last.decoded || b.rows_received != a.rows_received {
                    self.flowing = now;
                }
            }
            if let (Some(a), Some(b)) = (last.haproxy, s.haproxy) {
                if a.beats != b.beats {
                    self.haproxy_moved = now;
                }
                if a.lines == b.lines || a.answered != b.answered {
                    self.delivering = now;
                }
            }
        }
        let since = |t: Instant| now.saturating_duration_since(t);
        let stall = self.stall;
        let heartbeat = |name: String, moved: Instant| {
            let quiet = since(moved);
            Component { name, ok: quiet < stall, detail: format!("heartbeat {} ms ago", quiet.as_millis()) }
        };
        // Work that must move on: `moving` while it does, else how long not.
        let moving = |name: &str, last_ok: Instant, moving: &str, stuck_for: &str| {
            let stuck = since(last_ok);
            Component {
                name: name.into(),
                ok: stuck < stall,
                detail: if stuck.is_zero() { moving.into() } else { format!("{stuck_for} {} ms", stuck.as_millis()) },
            }
        };
        let mut components: Vec<Component> =
            self.shard_moved.iter().enumerate().map(|(i, moved)| heartbeat(format!("shard {i}"), *moved)).collect();
        if s.store.is_some() {
            components.push(heartbeat("store writer".into(), self.store_moved));
            components.push(moving(
                "flows to the store writer",
                self.flowing,
                "flowing",
                "shards decoded flows the writer has not taken for",
            ));
        }
        if s.haproxy.is_some() {
            components.push(heartbeat("haproxy log shard".into(), self.haproxy_moved));
            components.push(moving(
                "haproxy lines to kafka",
                self.delivering,
                "delivering",
                "lines arrive but no message was acknowledged for",
            ));
        }
        self.last = Some(s);
        (components.iter().all(|c| c.ok), components)
    }
}

/// What the HTTP thread shows; the control loop writes it.
#[derive(Default)]
pub struct Health {
    report: Mutex<Report>,
}

#[derive(Clone, Debug, Default)]
struct Report {
    /// The shards have started: every socket is bound and read.
    started: bool,
    alive: bool,
    components: Vec<Component>,
}

impl Health {
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

    /// `/health/ready`: (ok, JSON), with the store's state as it is now
    /// (`store`: read at the request, not at the last check).
    pub fn ready(&self, store: Option<StoreSample>) -> (bool, String) {
        let started = self.report.lock().map(|r| r.started).unwrap_or(false);
        let mut components = vec![Component {
            name: "listeners".into(),
            ok: started,
            detail: if started { "bound, shards running" } else { "starting" }.into(),
        }];
        if let Some(s) = store {
            components.push(Component {
                name: "store".into(),
                ok: s.connected && s.up,
                detail: match (s.connected, s.up) {
                    (false, _) => "not connected or not migrated yet".into(),
                    (true, false) => "connected; the last insert failed".into(),
                    (true, true) => "connected, migrated, inserts work".into(),
                },
            });
        }
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
    use super::*;

    fn sample(beats: &[u64], decoded: u64, store: Option<(u64, u64)>) -> Sample {
        Sample {
            shard_beats: beats.to_vec(),
            decoded,
            store: store.map(|(beats, rows_received)| StoreSample { beats, rows_received, connected: true, up: true }),
            haproxy: None,
        }
    }

    #[test]
    fn haproxy_lines_arriving_without_acknowledgements_fail_after_the_stall_timeout() {
        let t0 = Instant::now();
        let stall = Duration::from_secs(10);
        let mut w = Watch::new(stall, 0, t0);
        let at = |beats, lines, answered| Sample {
            haproxy: Some(HaproxySample { beats, lines, answered }),
            ..sample(&[], 0, None)
        };
        assert!(w.check(at(1, 10, 10), t0).0);
        // Quiet HAProxy: nothing arrives, nothing is owed.
        assert!(w.check(at(2, 10, 10), t0 + Duration::from_secs(20)).0);
        // Lines arrive, the brokers answer.
        assert!(w.check(at(3, 50, 40), t0 + Duration::from_secs(21)).0);
        // Lines keep arriving and nothing is answered any more.
        for s in 22..=30 {
            assert!(w.check(at(s, s * 10, 40), t0 + Duration::from_secs(s)).0);
        }
        let (alive, components) = w.check(at(40, 400, 40), t0 + Duration::from_secs(32));
        assert!(!alive);
        let failing: Vec<_> = components.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect();
        assert_eq!(failing, ["haproxy lines to kafka"]);
        // Answers again (delivered, or failed for good): alive.
        assert!(w.check(at(41, 410, 45), t0 + Duration::from_secs(33)).0);
        // A log shard that stops turning.
        let (alive, components) = w.check(at(41, 410, 45), t0 + Duration::from_secs(50));
        assert!(!alive && components.iter().any(|c| c.name == "haproxy log shard" && !c.ok));
    }

    #[test]
    fn a_shard_whose_heartbeat_stops_fails_after_the_stall_timeout() {
        let t0 = Instant::now();
        let mut w = Watch::new(Duration::from_secs(10), 2, t0);
        assert!(w.check(sample(&[1, 1], 0, None), t0).0);
        for s in 1..=9 {
            assert!(w.check(sample(&[1, 1 + s], 0, None), t0 + Duration::from_secs(s)).0);
        }
        let (alive, components) = w.check(sample(&[1, 20], 0, None), t0 + Duration::from_secs(11));
        assert!(!alive);
        assert_eq!(components.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect::<Vec<_>>(), ["shard 0"]);
    }

    #[test]
    fn flows_the_writer_never_takes_fail_but_a_quiet_pipeline_does_not() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = Watch::new(Duration::from_secs(10), 1, t0);
        // Quiet: nothing decoded, nothing taken, for a minute. Alive.
        for s in 0..60 {
            assert!(w.check(sample(&[s], 100, Some((s, 100))), at(s)).0);
        }
        // Decoding goes on, the writer's loop turns, but it takes nothing.
        for s in 60..69 {
            assert!(w.check(sample(&[s], 100 + s, Some((s, 100))), at(s)).0, "within the timeout at {s}");
        }
        let (alive, components) = w.check(sample(&[71], 200, Some((71, 100))), at(71));
        assert!(!alive);
        assert!(components.iter().any(|c| c.name == "flows to the store writer" && !c.ok));
        // The writer takes rows again: alive at once.
        assert!(w.check(sample(&[72], 210, Some((72, 210))), at(72)).0);
    }

    #[test]
    fn readiness_waits_for_the_shards_and_the_store() {
        let h = Health::default();
        assert!(!h.ready(None).0 && !h.live().0);
        h.set_started();
        assert!(h.live().0, "alive once started, before the first check");
        assert!(h.ready(None).0, "no store: ready once started");
        let store = StoreSample { beats: 1, rows_received: 0, connected: false, up: true };
        let (ok, body) = h.ready(Some(store));
        assert!(!ok && body.contains("not connected"), "{body}");
        let connected = StoreSample { connected: true, ..store };
        assert!(h.ready(Some(connected)).0);
        let body: serde_json::Value = serde_json::from_str(&h.ready(Some(connected)).1).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["components"][1]["name"], "store");
    }
}
