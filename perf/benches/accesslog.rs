//! The HAProxy access-log parser alone: lines per second on one core,
//! RFC 5424 line in, JSON message out, with the default field list
//! (`config/weir.toml`). The end-to-end comparison with rsyslog is
//! `weir-logbench`. Results and the command: perf/RESULTS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir_core::config::HaproxyConfig;
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

criterion_group!(benches, render);
criterion_main!(benches);
