//! The BGP routing table (`weir_core::enrich::rib`) with a synthetic full
//! table from one router (`weir_perf::routes`: 950 000 IPv4 and 200 000
//! IPv6 prefixes, 75 000 origin ASes with their paths and communities).
//! Prints the table's bytes per route (its own estimate and the process's
//! resident growth, with and without the snapshot's index) and the
//! snapshot's build time, then the lookup a shard makes per flow address
//! beside a `prefix-trie` map of the same prefixes. Results and the
//! command: perf/RESULTS.md.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use weir_core::enrich::bmp::PeerKey;
use weir_core::enrich::rib::Rib;
use weir_perf::routes::FullTable;

const ADDRESSES: usize = 1 << 16;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn rib(c: &mut Criterion) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let full = FullTable::new(&mut seed);
    let (v4, v6) = (&full.v4, &full.v6);
    let before = resident_bytes();
    let started = Instant::now();
    let mut table = Rib::default();
    let peer = table.peer(1, [0; 16], PeerKey { addr: [0; 16], distinguisher: 0 }, 64500);
    for (prefix, attrs) in full.routes() {
        table.announce(peer, &[prefix], attrs);
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
    let (ours4, ours6) = full.addresses(ADDRESSES, &mut seed);
    let v4_addresses: Vec<u32> = ours4.iter().map(|a| u128::from_be_bytes(*a) as u32).collect();
    let v6_addresses: Vec<u128> = ours6.iter().map(|a| u128::from_be_bytes(*a)).collect();
    let exporter = weir_core::flow::addr_from_v4([192, 0, 2, 9]);
    let mut group = c.benchmark_group("rib");
    group.throughput(Throughput::Elements(ADDRESSES as u64));
    for (family, ours) in [("v4", &ours4), ("v6", &ours6)] {
        group.bench_function(format!("lookup_{family}"), |b| {
            b.iter(|| {
                ours.iter()
                    .map(|a| snapshot.lookup(black_box(a), &exporter, &[0; 16]).map_or(0, |r| r.asn as u64))
                    .sum::<u64>()
            })
        });
        // A flow's source and destination, looked up as a pair (per address).
        group.bench_function(format!("lookup_pair_{family}"), |b| {
            b.iter(|| {
                ours.chunks_exact(2)
                    .map(|p| {
                        let [s, d] =
                            snapshot.lookup_pair([black_box(&p[0]), black_box(&p[1])], &exporter, [&[0; 16]; 2]);
                        s.map_or(0, |r| r.asn as u64) + d.map_or(0, |r| r.asn as u64)
                    })
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
