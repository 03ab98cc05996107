//! Decoder throughput, records per second on one core, for every format on
//! realistic datagrams (~1400 bytes: 20–30 IPFIX/v9 records with a sampler
//! id, 30 v5 records, sFlow samples with extended records). The peers
//! `netflow_parser` and NetGauze (`netgauze-flow-pkt`) decode the same
//! datagrams in the same run. Results and the command: perf/RESULTS.md.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use weir_core::wire::template::Protocol;
use weir_core::Decoder;
use weir_perf::traffic::{
    data_datagrams, decode_all as weir_decode, sflow_datagrams, template_datagram, v5_datagrams, FlowMix,
};

/// Datagrams decoded per benchmark iteration.
const DATAGRAMS: usize = 64;

fn templated(c: &mut Criterion, name: &str, protocol: Protocol) {
    let templates = template_datagram(protocol);
    let (data, records) = data_datagrams(protocol, &mut FlowMix::new(1), DATAGRAMS);
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(records as u64));

    let mut weir = Decoder::default();
    weir_decode(&mut weir, std::slice::from_ref(&templates));
    assert_eq!(weir.counters().flows, 0);
    weir_decode(&mut weir, &data);
    assert_eq!(weir.counters().flows as usize, records, "weir decodes every record");
    group.bench_function("weir", |b| b.iter(|| black_box(weir_decode(&mut weir, black_box(&data)))));

    let mut parser = netflow_parser::NetflowParser::default();
    let _ = parser.parse_bytes(&templates);
    group.bench_function("netflow_parser", |b| {
        b.iter(|| {
            let mut packets = 0;
            for d in &data {
                packets += parser.parse_bytes(black_box(d)).packets.len();
            }
            black_box(packets)
        })
    });

    match protocol {
        Protocol::Ipfix => {
            let mut cache = HashMap::new();
            netgauze_flow_pkt::ipfix::IpfixPacket::parse(&mut SliceReader::new(&templates), &mut cache).unwrap();
            group.bench_function("netgauze", |b| {
                b.iter(|| {
                    for d in &data {
                        let p = netgauze_flow_pkt::ipfix::IpfixPacket::parse(&mut SliceReader::new(d), &mut cache);
                        black_box(p.is_ok());
                    }
                })
            });
        }
        Protocol::NetflowV9 => {
            let mut cache = HashMap::new();
            netgauze_flow_pkt::netflow::NetFlowV9Packet::parse(&mut SliceReader::new(&templates), &mut cache).unwrap();
            group.bench_function("netgauze", |b| {
                b.iter(|| {
                    for d in &data {
                        let p =
                            netgauze_flow_pkt::netflow::NetFlowV9Packet::parse(&mut SliceReader::new(d), &mut cache);
                        black_box(p.is_ok());
                    }
                })
            });
        }
    }
    group.finish();
}

fn ipfix(c: &mut Criterion) {
    templated(c, "ipfix", Protocol::Ipfix);
}

fn netflow_v9(c: &mut Criterion) {
    templated(c, "netflow_v9", Protocol::NetflowV9);
}

fn netflow_v5(c: &mut Criterion) {
    let (data, records) = v5_datagrams(&mut FlowMix::new(2), DATAGRAMS);
    let mut group = c.benchmark_group("netflow_v5");
    group.throughput(Throughput::Elements(records as u64));
    let mut weir = Decoder::default();
    group.bench_function("weir", |b| b.iter(|| black_box(weir_decode(&mut weir, black_box(&data)))));
    let mut parser = netflow_parser::NetflowParser::default();
    group.bench_function("netflow_parser", |b| {
        b.iter(|| data.iter().map(|d| parser.parse_bytes(black_box(d)).packets.len()).sum::<usize>())
    });
    group.finish();
}

fn sflow(c: &mut Criterion) {
    let (data, records) = sflow_datagrams(&mut FlowMix::new(3), DATAGRAMS);
    let mut group = c.benchmark_group("sflow_v5");
    group.throughput(Throughput::Elements(records as u64));
    let mut weir = Decoder::default();
    weir_decode(&mut weir, &data);
    assert_eq!(weir.counters().flows as usize, records);
    group.bench_function("weir", |b| b.iter(|| black_box(weir_decode(&mut weir, black_box(&data)))));
    group.finish();
}

criterion_group!(benches, ipfix, netflow_v9, netflow_v5, sflow);
criterion_main!(benches);
