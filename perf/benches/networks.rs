//! The networks table (`weir_core::enrich::networks`) with a whole GeoLite2
//! City database loaded (`scripts/setup-geoip` installs the one PyPI's
//! maxminddb-geolite2 ships): the lookup a shard makes per address, beside
//! a `prefix-trie` map of the same database's networks (the crate the
//! brief suggests, and the structure Akvorado's table is), and a flow's
//! whole enrichment (two lookups, providers, sampling rate). Build time
//! and memory are printed. Results and the command: perf/RESULTS.md.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipnet::{Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use weir_core::config::{AsnProvider, EnrichmentConfig, SamplingRates};
use weir_core::enrich::flows::FlowEnricher;
use weir_core::enrich::networks::{Builder, GeoKind, Networks};
use weir_core::flow::addr_from_ip;
use weir_core::FlowRecord;

const CITY: &str = "/usr/local/share/weir/GeoLite2-City.mmdb";
const ADDRESSES: usize = 1 << 16;

/// xorshift64: the same addresses in every run.
fn random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn networks(c: &mut Criterion) {
    let Ok(bytes) = std::fs::read(CITY) else {
        eprintln!("networks: {CITY} is missing (scripts/setup-geoip): skipped");
        return;
    };
    let started = Instant::now();
    let mut b = Builder::new();
    let read = b.add_database(GeoKind::Location, &bytes).unwrap();
    let read_s = started.elapsed().as_secs_f64();
    let table: Networks = b.build();
    let (v4, v6) = table.ranges();
    eprintln!(
        "networks: {} networks, {} records read in {read_s:.2} s; table built in {:.2} s: {} prefixes, {v4} IPv4 and \
         {v6} IPv6 ranges, {} sets, {} records, {} bytes",
        read.networks,
        read.records,
        started.elapsed().as_secs_f64(),
        table.prefixes,
        table.sets.len(),
        table.records.len(),
        table.bytes()
    );
    // The rival: prefix-trie maps of the same networks (value: the record's offset).
    let started = Instant::now();
    let reader = maxminddb::Reader::from_source(&bytes[..]).unwrap();
    let mut trie4: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
    let mut trie6: PrefixMap<Ipv6Net, u32> = PrefixMap::new();
    let mut v6_networks = Vec::new();
    for item in reader.networks(maxminddb::WithinOptions::default().skip_empty_values()).unwrap() {
        let item = item.unwrap();
        let value = item.offset().unwrap_or(0) as u32;
        match item.network().unwrap() {
            ipnetwork::IpNetwork::V4(n) => {
                trie4.insert(Ipv4Net::new(n.network(), n.prefix()).unwrap(), value);
            }
            ipnetwork::IpNetwork::V6(n) => {
                trie6.insert(Ipv6Net::new(n.network(), n.prefix()).unwrap(), value);
                v6_networks.push(u128::from(n.network()));
            }
        }
    }
    eprintln!("networks: prefix-trie maps of the same networks built in {:.2} s", started.elapsed().as_secs_f64());
    // Uniform IPv4 addresses, and IPv6 addresses inside the database's networks.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let v4_addresses: Vec<IpAddr> =
        (0..ADDRESSES).map(|_| IpAddr::from(std::net::Ipv4Addr::from(random(&mut seed) as u32))).collect();
    let v6_addresses: Vec<IpAddr> = (0..ADDRESSES)
        .map(|_| {
            let net = v6_networks[(random(&mut seed) % v6_networks.len() as u64) as usize];
            IpAddr::from(std::net::Ipv6Addr::from(net | (random(&mut seed) as u128 & 0xffff)))
        })
        .collect();
    let mut group = c.benchmark_group("networks");
    group.throughput(Throughput::Elements(ADDRESSES as u64));
    for (family, addresses) in [("v4", &v4_addresses), ("v6", &v6_addresses)] {
        let ours: Vec<[u8; 16]> = addresses.iter().map(|a| addr_from_ip(*a)).collect();
        group.bench_function(format!("lookup_{family}"), |b| {
            b.iter(|| ours.iter().map(|a| table.lookup(black_box(a)) as u64).sum::<u64>())
        });
        // A flow's two addresses as a pair (per address).
        group.bench_function(format!("lookup_pair_{family}"), |b| {
            b.iter(|| {
                ours.chunks_exact(2)
                    .map(|p| {
                        table.lookup_pair(black_box(&p[0]), black_box(&p[1])).iter().map(|&s| s as u64).sum::<u64>()
                    })
                    .sum::<u64>()
            })
        });
        group.bench_function(format!("prefix_trie_{family}"), |b| {
            b.iter(|| {
                addresses
                    .iter()
                    .map(|a| match a {
                        IpAddr::V4(v4) => trie4.get_lpm(&Ipv4Net::new(*v4, 32).unwrap()).map_or(0, |(_, v)| *v as u64),
                        IpAddr::V6(v6) => trie6.get_lpm(&Ipv6Net::new(*v6, 128).unwrap()).map_or(0, |(_, v)| *v as u64),
                    })
                    .sum::<u64>()
            })
        });
    }
    // A flow's whole enrichment: both addresses, the AS providers, the rate.
    let flows: Vec<FlowRecord> = v4_addresses
        .iter()
        .zip(v4_addresses.iter().rev())
        .map(|(s, d)| {
            let mut f = FlowRecord::default();
            f.set_exporter_address(addr_from_ip("192.0.2.1".parse().unwrap()));
            f.set_src_addr(addr_from_ip(*s));
            f.set_dst_addr(addr_from_ip(*d));
            f.set_src_as(64_500);
            f
        })
        .collect();
    let config = EnrichmentConfig {
        asn_providers: vec![AsnProvider::FlowExceptPrivate, AsnProvider::Networks],
        default_sampling_rate: Some(SamplingRates::All(1000)),
        ..EnrichmentConfig::default()
    };
    let mut enricher = FlowEnricher::new(&config, true);
    enricher.set_networks(std::sync::Arc::new(table.clone()));
    group.bench_function("enrich_flow", |b| {
        b.iter(|| flows.iter().map(|f| enricher.enrich(black_box(f)).src_net as u64).sum::<u64>())
    });
    group.finish();
}

criterion_group!(benches, networks);
criterion_main!(benches);
