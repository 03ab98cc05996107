//! The BGP routing table (`weir_core::enrich::rib`) with a synthetic full
//! table from one router: 950 000 IPv4 prefixes (/24 for 60 %, /19–/23 for
//! 30 %, /8–/18 for the rest) and 200 000 IPv6 prefixes (/48 for half,
//! /29–/44 for the rest), each origin AS (75 000 of them) announcing its
//! prefixes with one AS path (2–6 hops through 1 000 transit ASes) and up
//! to 4 communities, as a real table shares attributes. Prints the
//! table's bytes per route (its own estimate and the process's resident
//! growth, with and without the snapshot's index) and the snapshot's
//! build time, then the lookup a shard makes
//! per flow address beside a `prefix-trie` map of the same prefixes.
//! Results and the command: perf/RESULTS.md.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use weir_core::enrich::bmp::{Attrs, PeerKey, Prefix};
use weir_core::enrich::rib::Rib;

const ADDRESSES: usize = 1 << 16;

/// xorshift64: the same table in every run.
fn random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn rib(c: &mut Criterion) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    // Per origin AS: its path and communities.
    let origins: Vec<Attrs> = (0..75_000u32)
        .map(|i| {
            let hops = 2 + random(&mut seed) % 5;
            let mut path: Vec<u32> = (0..hops - 1).map(|_| 1000 + (random(&mut seed) % 1000) as u32).collect();
            path.push(10_000 + i);
            let communities: Vec<u32> =
                (0..random(&mut seed) % 5).map(|_| 3356 << 16 | (random(&mut seed) % 300) as u32).collect();
            Attrs {
                as_path: path.into(),
                communities: communities.into(),
                next_hop: weir_core::flow::addr_from_v4([192, 0, 2, 1]),
                local_pref: 100,
                ..Attrs::default()
            }
        })
        .collect();
    let mut v4: Vec<(u32, u8)> = Vec::new();
    for _ in 0..950_000 {
        let r = random(&mut seed);
        let len = match r % 100 {
            0..60 => 24,
            60..90 => 19 + (r >> 8) as u8 % 5,
            _ => 8 + (r >> 8) as u8 % 11,
        };
        v4.push(((random(&mut seed) as u32) & (u32::MAX << (32 - len)), len));
    }
    let mut v6: Vec<(u128, u8)> = Vec::new();
    for _ in 0..200_000 {
        let r = random(&mut seed);
        let len = if r.is_multiple_of(2) { 48 } else { 29 + (r >> 8) as u8 % 16 };
        let net = (0x2000u128 << 112 | u128::from(random(&mut seed)) << 48) & (u128::MAX << (128 - len));
        v6.push((net, len));
    }
    let before = resident_bytes();
    let started = Instant::now();
    let mut table = Rib::default();
    let peer = table.peer(1, [0; 16], PeerKey { addr: [0; 16], distinguisher: 0 }, 64500);
    let mapped = |a: u32| u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped());
    for (i, &(net, len)) in v4.iter().enumerate() {
        let p = Prefix { net: mapped(net), len: len + 96, ..Prefix::default() };
        table.announce(peer, &[p], &origins[i * 7919 % origins.len()]);
    }
    for (i, &(net, len)) in v6.iter().enumerate() {
        table.announce(peer, &[Prefix { net, len, ..Prefix::default() }], &origins[i * 104_729 % origins.len()]);
    }
    let loaded_s = started.elapsed().as_secs_f64();
    let grown = resident_bytes().saturating_sub(before);
    let routes = table.routes;
    eprintln!(
        "rib: {routes} routes ({} prefixes, {} attribute sets) loaded in {loaded_s:.2} s; {} bytes per route by the \
         table's estimate, {} by resident growth",
        table.prefixes(),
        table.attribute_sets(),
        table.bytes() as u64 / routes,
        grown / routes
    );
    let started = Instant::now();
    let snapshot = table.snapshot();
    let built_s = started.elapsed().as_secs_f64();
    // The tables the merges replaced, back to the system (as the RIB
    // thread does after publishing).
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
    let all = resident_bytes().saturating_sub(before);
    eprintln!(
        "rib: snapshot built in {built_s:.2} s, its index {} bytes ({} per route); table and index: {} bytes per \
         route by estimate, {} by resident growth",
        snapshot.bytes(),
        snapshot.bytes() as u64 / routes,
        (table.bytes() + snapshot.bytes()) as u64 / routes,
        all / routes
    );
    eprintln!("rib: index (ranges, bytes) IPv4 and IPv6: {:?}", snapshot.index_parts());
    let mut trie4: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
    for (i, &(net, len)) in v4.iter().enumerate() {
        trie4.insert(Ipv4Net::new(net.into(), len).unwrap(), i as u32);
    }
    let mut trie6: PrefixMap<Ipv6Net, u32> = PrefixMap::new();
    for (i, &(net, len)) in v6.iter().enumerate() {
        trie6.insert(Ipv6Net::new(net.into(), len).unwrap(), i as u32);
    }
    // Addresses inside the table's prefixes.
    let v4_addresses: Vec<u32> = (0..ADDRESSES)
        .map(|_| {
            let (net, len) = v4[(random(&mut seed) % v4.len() as u64) as usize];
            net | (random(&mut seed) as u32 & (u32::MAX >> len))
        })
        .collect();
    let v6_addresses: Vec<u128> = (0..ADDRESSES)
        .map(|_| {
            let (net, len) = v6[(random(&mut seed) % v6.len() as u64) as usize];
            net | (u128::from(random(&mut seed)) & (u128::MAX >> len))
        })
        .collect();
    let exporter = weir_core::flow::addr_from_v4([192, 0, 2, 9]);
    let mut group = c.benchmark_group("rib");
    group.throughput(Throughput::Elements(ADDRESSES as u64));
    let ours4: Vec<[u8; 16]> = v4_addresses.iter().map(|&a| mapped(a).to_be_bytes()).collect();
    let ours6: Vec<[u8; 16]> = v6_addresses.iter().map(|a| a.to_be_bytes()).collect();
    for (family, ours) in [("v4", &ours4), ("v6", &ours6)] {
        group.bench_function(format!("lookup_{family}"), |b| {
            b.iter(|| {
                ours.iter()
                    .map(|a| snapshot.lookup(black_box(a), &exporter, &[0; 16]).map_or(0, |r| r.asn as u64))
                    .sum::<u64>()
            })
        });
    }
    group.bench_function("prefix_trie_v4", |b| {
        b.iter(|| {
            v4_addresses
                .iter()
                .map(|&a| trie4.get_lpm(&Ipv4Net::new(black_box(a).into(), 32).unwrap()).map_or(0, |(_, v)| *v as u64))
                .sum::<u64>()
        })
    });
    group.bench_function("prefix_trie_v6", |b| {
        b.iter(|| {
            v6_addresses
                .iter()
                .map(|&a| trie6.get_lpm(&Ipv6Net::new(black_box(a).into(), 128).unwrap()).map_or(0, |(_, v)| *v as u64))
                .sum::<u64>()
        })
    });
    group.finish();
}

criterion_group!(benches, rib);
criterion_main!(benches);
