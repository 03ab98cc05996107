//! The HAProxy access-log parser alone: lines per second on one core,
//! RFC 5424 line in, JSON message out, with the default field list
//! (`config/weir.toml`). The end-to-end comparison with rsyslog is
//! `weir-logbench`. Results and the command: perf/RESULTS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_core::config::HaproxyConfig;
use weir_core::httplog::HttpRows;
use weir_perf::accesslog::haproxy_lines;

fn render(c: &mut Criterion) {
    let format = HaproxyConfig::default().format();
    let lines = haproxy_lines(1024);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("accesslog");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("render_1024_lines", |b| {
        b.iter(|| {
            let mut total = 0;
            for line in &lines {
                if format.render(black_box(line), &mut out).is_ok() {
                    total += out.len();
                }
            }
            black_box(total)
        })
    });
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("render_1024_lines_bytes", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = format.render(black_box(line), &mut out);
            }
        })
    });
    group.finish();
}

/// `[haproxy] store = true`: the same lines rendered and kept as the
/// store's columns and rollup sums (`weir_core::httplog`), a batch of 1024
/// written as Native blocks, against rendering alone in the same run.
fn render_and_store(c: &mut Criterion) {
    let config = HaproxyConfig { store: true, ..HaproxyConfig::default() };
    let format = config.format();
    let table = config.http_table();
    let mut rows = HttpRows::new(&table);
    let lines = haproxy_lines(1024);
    let mut out = Vec::with_capacity(4096);
    let mut block = Vec::new();
    let mut rollups: [Vec<u8>; 3] = Default::default();
    let mut group = c.benchmark_group("accesslog");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("render_1024_lines_baseline", |b| {
        b.iter(|| {
            for line in &lines {
                let _ = format.render(black_box(line), &mut out);
            }
        })
    });
    group.bench_function("render_and_store_1024_lines", |b| {
        b.iter(|| {
            for line in &lines {
                rows.begin();
                if format.render_with(black_box(line), &mut out, &mut rows).is_ok() {
                    rows.commit();
                }
            }
            block.clear();
            rows.write_block(&table, &mut block);
            rollups.iter_mut().for_each(Vec::clear);
            black_box(rows.write_rollup_blocks(&table, &mut rollups));
        })
    });
    group.finish();
}

criterion_group!(benches, render, render_and_store);
criterion_main!(benches);
