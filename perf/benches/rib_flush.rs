//! A peer of a full table going down, against the shards' lookups: three
//! routers' peers each hold the synthetic full table (`weir_perf::routes`,
//! 1.15 M prefixes, 3.45 M routes: every prefix has several routes before
//! and after, so lookups take the same path); one goes down. A lookup thread pinned
//! to one CPU does what a shard does (looks flow addresses up in the
//! newest snapshot, taking a new one every tick), timing each batch of
//! 64 lookups; the routing table's thread, pinned to the other, does what
//! "weir-rib" does with a peer past `keep_s`: removes its routes 10 000
//! prefixes at a time between waits for messages (50 ms, none come), and
//! publishes a snapshot at most every second. Prints the lookup
//! latencies (ns per lookup, per batch) while the table is idle (after a
//! warm-up), while the peer's 1.15 M routes go, and after; the flush's
//! duration and publications.
//! Results and the command: perf/RESULTS.md.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hdrhistogram::Histogram;
use weir_core::enrich::bmp::PeerKey;
use weir_core::enrich::rib::Rib;
use weir_perf::routes::FullTable;

const BATCH: usize = 64;
/// Batches between two looks at the newest snapshot (about a shard's tick).
const TICK_BATCHES: usize = 256;
const REMOVAL_STEP: usize = 10_000;
const IDLE_WAIT: Duration = Duration::from_millis(50);
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let full = FullTable::new(&mut seed);
    let mut rib = Rib::default();
    let key = |i: u8| PeerKey { addr: weir_core::flow::addr_from_v4([10, 0, 0, i]), distinguisher: 0 };
    let peers: Vec<u32> = (1..=3u8)
        .map(|i| rib.peer(u32::from(i), weir_core::flow::addr_from_v4([192, 0, 2, i]), key(i), 64500 + u32::from(i)))
        .collect();
    let started = Instant::now();
    for (prefix, attrs) in full.routes() {
        for &p in &peers {
            rib.announce(p, &[prefix], attrs);
        }
    }
    let snapshot = rib.snapshot();
    rib.dirty = false;
    eprintln!(
        "rib_flush: {} routes on {} prefixes loaded and published in {:.1} s; {cpus} CPUs",
        rib.routes,
        rib.prefixes(),
        started.elapsed().as_secs_f64()
    );
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    let routes = Arc::new(ArcSwap::from_pointee(snapshot));
    let (v4, v6) = full.addresses(1 << 16, &mut seed);
    // Three IPv4 addresses for one IPv6, as flows come.
    let addresses: Vec<[u8; 16]> = v4.iter().zip(&v6).flat_map(|(a, b)| [*a, *a, *a, *b]).collect();
    let phase = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let lookups = {
        let (routes, phase, stop) = (routes.clone(), phase.clone(), stop.clone());
        std::thread::spawn(move || {
            pin(0);
            // Warm-up (not kept), idle, flush, after.
            let mut hist: Vec<Histogram<u64>> = (0..4).map(|_| Histogram::new(3).expect("histogram")).collect();
            let mut current = routes.load_full();
            let (mut misses, mut batches) = (0u64, 0usize);
            let exporter = weir_core::flow::addr_from_v4([192, 0, 2, 9]);
            while !stop.load(Relaxed) {
                for chunk in addresses.chunks(BATCH) {
                    batches += 1;
                    let at = Instant::now();
                    if batches.is_multiple_of(TICK_BATCHES) {
                        let latest = routes.load();
                        if !Arc::ptr_eq(&latest, &current) {
                            current = latest.clone();
                        }
                    }
                    for a in chunk {
                        misses += u64::from(current.lookup(std::hint::black_box(a), &exporter, &[0; 16]).is_none());
                    }
                    let ns = at.elapsed().as_nanos() as u64 / BATCH as u64;
                    let _ = hist[phase.load(Relaxed).min(3)].record(ns.max(1));
                }
            }
            (hist, misses)
        })
    };
    // Warm-up, the table idle, then the flush.
    if cpus > 1 {
        pin(1);
    }
    std::thread::sleep(Duration::from_secs(2));
    phase.store(1, Relaxed);
    std::thread::sleep(Duration::from_secs(5));
    phase.store(2, Relaxed);
    let started = Instant::now();
    let before = rib.routes;
    rib.peer_down(1, key(1), 0);
    let (mut publications, mut publishing) = (0, Duration::ZERO);
    let mut published = Instant::now();
    loop {
        let more = rib.remove_expired(1, 0, REMOVAL_STEP);
        // As "weir-rib": messages' changes every interval (none come
        // here), a removal's once its pass ends.
        if (rib.dirty || (rib.removed && !more)) && published.elapsed() >= PUBLISH_INTERVAL {
            let at = Instant::now();
            let snapshot = rib.snapshot();
            // SAFETY: malloc_trim only releases free memory.
            unsafe { libc::malloc_trim(0) };
            routes.store(Arc::new(snapshot));
            (rib.dirty, rib.removed) = (false, false);
            publishing += at.elapsed();
            publications += 1;
            published = Instant::now();
        }
        if !more && !rib.dirty && !rib.removed {
            break;
        }
        std::thread::sleep(IDLE_WAIT);
    }
    let flushed = started.elapsed();
    phase.store(3, Relaxed);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Relaxed);
    let (hist, misses) = lookups.join().expect("lookup thread");
    eprintln!(
        "rib_flush: peer of {} routes removed in {:.2} s, {publications} publications ({:.2} s building them); \
         {} routes left; {misses} lookups without a route",
        before - rib.routes,
        flushed.as_secs_f64(),
        publishing.as_secs_f64(),
        rib.routes
    );
    for (name, h) in ["idle", "flush", "after"].iter().zip(&hist[1..]) {
        eprintln!(
            "rib_flush: {name:>5}: {} batches of {BATCH}; ns per lookup p50 {} p90 {} p99 {} p99.9 {} max {}",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99).max(1) as f64;
    eprintln!(
        "rib_flush: p99 during the flush / idle: {:.2}; / after: {:.2}",
        p99(&hist[2]) / p99(&hist[1]),
        p99(&hist[2]) / p99(&hist[3])
    );
}
