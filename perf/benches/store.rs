//! The shard's side of the store, per flow, on one core: appending flows
//! to the column buffers, summing them for the consolidated tables, and
//! writing a batch's blocks (the raw block sorted by the table's key, the
//! three summed blocks). 65 536 flows per batch (`store.batch_rows_max`'s
//! default until 2026-12-03, now 16 384; kept so that figures compare
//! across perf/RESULTS.md's entries) from the benchmark mix (`traffic::FlowMix`) over 4 exporters, 130 ms of
//! arrival time. Results and the command: perf/RESULTS.md.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weir_core::columns::{Columns, MODERN};
use weir_core::config::StoreConfig;
use weir_core::consolidate::Consolidator;
use weir_core::schema::stored_columns;
use weir_core::wire::state::KeyHash;
use weir_core::FlowRecord;

const ROWS: usize = 65_536;

fn flows() -> Vec<FlowRecord> {
    weir_perf::traffic::store_flows()
}

fn store(c: &mut Criterion) {
    let flows = flows();
    let layout = stored_columns(&StoreConfig::default().schema_settings());
    let mut group = c.benchmark_group("store_shard");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);

    let mut columns = Columns::new(&layout, ROWS);
    group.bench_function("columns_push", |b| {
        b.iter(|| {
            columns.clear();
            for f in &flows {
                columns.push(black_box(f));
            }
        })
    });

    // The same with the flow in cache, as in a shard (the decoder has
    // just written it): 1 024 flows, 64 times over.
    group.bench_function("columns_push_hot", |b| {
        b.iter(|| {
            columns.clear();
            for _ in 0..ROWS / 1024 {
                for f in &flows[..1024] {
                    columns.push(black_box(f));
                }
            }
        })
    });

    let mut sums = Consolidator::new(&layout, ROWS, KeyHash::with_seed(3));
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    group.bench_function("push_and_sum", |b| {
        b.iter(|| {
            columns.clear();
            for f in &flows {
                columns.push(black_box(f));
                sums.add_last_row(&columns);
            }
            out.iter_mut().for_each(Vec::clear);
            sums.write_blocks(&MODERN, &mut out);
        })
    });

    for f in &flows {
        sums.add_last_row({
            columns.push(f);
            &columns
        });
    }
    let keys = sums.len();
    group.bench_function("write_summed_blocks", |b| {
        b.iter_batched_ref(
            || {
                let mut s = Consolidator::new(&layout, ROWS, KeyHash::with_seed(3));
                columns.clear();
                for f in &flows {
                    columns.push(f);
                    s.add_last_row(&columns);
                }
                s
            },
            |s| {
                out.iter_mut().for_each(Vec::clear);
                black_box(s.write_blocks(&MODERN, &mut out))
            },
            BatchSize::LargeInput,
        )
    });

    // The map as a shard holds it at 1 M flows/s of `weir-flowgen --pool
    // 16384` (about 140 k keys an interval, out of the caches): eight
    // seeds' flows summed in, then the first seed's again, timed (every
    // key there already).
    let seeds: Vec<FlowRecord> = (7..15).flat_map(weir_perf::traffic::store_flows_from).collect();
    let mut full = Consolidator::new(&layout, 262_144, KeyHash::with_seed(3));
    for chunk in seeds.chunks(ROWS) {
        columns.clear();
        for f in chunk {
            columns.push(f);
            full.add_last_row(&columns);
        }
    }
    let full_keys = full.len();
    group.bench_function("sum_into_a_full_map", |b| {
        b.iter(|| {
            columns.clear();
            for f in &seeds[..ROWS] {
                columns.push(black_box(f));
                full.add_last_row(&columns);
            }
        })
    });
    drop(full);

    let mut raw = Vec::new();
    group.bench_function("batch", |b| {
        b.iter(|| {
            columns.clear();
            for f in &flows {
                columns.push(black_box(f));
                sums.add_last_row(&columns);
            }
            out.iter_mut().for_each(Vec::clear);
            sums.write_blocks(&MODERN, &mut out);
            raw.clear();
            columns.write_block(&MODERN, &mut raw);
        })
    });

    columns.clear();
    flows.iter().for_each(|f| columns.push(f));
    group.bench_function("write_raw_block", |b| {
        b.iter(|| {
            raw.clear();
            black_box(columns.write_block(&MODERN, &mut raw))
        })
    });
    group.finish();
    eprintln!(
        "store_shard: {ROWS} flows, {keys} keys (minute, dimensions), raw block {} bytes; the full map {full_keys} keys",
        raw.len()
    );
}

/// Enrichment on the shard: the metadata lookup per flow in a warm
/// snapshot (every exporter and interface of the mix known, as after the
/// first seconds), and the raw block written with the metadata columns
/// filled (against `store_shard/write_raw_block`, where every row has the
/// empty records).
fn enrich(c: &mut Criterion) {
    use weir_core::enrich::classify::{Classifiers, InterfaceClass, InterfaceFacts};
    let flows = flows();
    let layout = stored_columns(&StoreConfig::default().schema_settings());
    let snapshot = std::sync::Arc::new(weir_perf::traffic::known_snapshot(&flows));
    let mut group = c.benchmark_group("enrich_shard");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    group.bench_function("metadata_lookup", |b| {
        b.iter(|| {
            for f in &flows {
                black_box(snapshot.lookup(&f.exporter_address, f.in_if_index, f.out_if_index));
            }
        })
    });
    // The shard's work per flow with enrichment on: pushing the flow and
    // summing it (the records of a summed row are found when its block is
    // written), then the batch's blocks, the raw one with each run of
    // rows' records looked up once; against `store_shard/push_and_sum`
    // plus `store_shard/write_raw_block`.
    let mut columns = Columns::new(&layout, ROWS);
    columns.set_snapshot(snapshot.clone());
    let mut sums = Consolidator::new(&layout, ROWS, KeyHash::with_seed(3));
    sums.set_snapshot(snapshot.clone());
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    let mut raw = Vec::new();
    let mut runs = 0;
    group.bench_function("batch_with_metadata", |b| {
        b.iter(|| {
            columns.clear();
            for f in &flows {
                columns.push(black_box(f));
                sums.add_last_row(&columns);
            }
            out.iter_mut().for_each(Vec::clear);
            sums.write_blocks(&MODERN, &mut out);
            raw.clear();
            runs = 0;
            columns.write_block_resolved(true, &MODERN, &mut raw, &mut |exporter, in_if, out_if, _| {
                runs += 1;
                snapshot.lookup(exporter, in_if, out_if).0
            });
        })
    });
    eprintln!("enrich_shard: {runs} runs of rows looked up per batch of {ROWS}");
    // A batch in the buffers (also when the bench above is filtered out).
    columns.clear();
    flows.iter().for_each(|f| columns.push(f));
    let mut raw = Vec::new();
    group.bench_function("write_raw_block_with_metadata", |b| {
        b.iter(|| {
            raw.clear();
            black_box(columns.write_block_resolved(true, &MODERN, &mut raw, &mut |exporter, in_if, out_if, _| {
                snapshot.lookup(exporter, in_if, out_if).0
            }))
        })
    });
    // The enriched output (`[kafka.enriched]`): the batch's rows as
    // protobuf messages with their records' names, as the shard writes
    // them before producing (against `write_raw_block_with_metadata`).
    let proto = weir_core::flowproto::FlowProto::new(&layout);
    raw.clear();
    columns.write_block_resolved(true, &MODERN, &mut raw, &mut |exporter, in_if, out_if, _| {
        snapshot.lookup(exporter, in_if, out_if).0
    });
    let (mut messages, mut records) = (Vec::new(), Vec::new());
    group.bench_function("write_enriched_messages", |b| {
        b.iter(|| {
            messages.clear();
            records.clear();
            proto.write_rows(&columns, 256 << 10, &mut messages, &mut records);
            black_box(records.len())
        })
    });
    eprintln!("enrich_shard: {} bytes of messages per batch of {ROWS}", messages.len());
    group.finish();
    // The control plane: Akvorado's documented interface rules on one
    // interface (run once per interface resolved or answered, not per flow).
    let mut group = c.benchmark_group("enrich_control");
    let rules = [
        r#"ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ppni|ix):? ", "$1") && ClassifyProviderRegex(Interface.Description, "^\\S+?\\s(\\S+)", "$1") && ClassifyExternal()"#.to_string(),
        r#"ClassifyInternal()"#.to_string(),
    ];
    let classifiers = Classifiers::new(&[], &rules).expect("valid rules");
    let facts = InterfaceFacts { index: 17, name: "et-0/0/17", description: "Transit: Cogent 1-38", speed: 100_000 };
    group.bench_function("classify_interface", |b| {
        b.iter(|| black_box(classifiers.interface("192.0.2.1", "edge1-par", &facts, InterfaceClass::default())))
    });
    group.finish();
    eprintln!(
        "enrich_shard: {} exporters, {} interfaces, raw block {} bytes",
        snapshot.known.len(),
        snapshot.known.iter().map(|k| k.interfaces.len()).sum::<usize>(),
        raw.len()
    );
}

criterion_group!(benches, store, enrich);
criterion_main!(benches);
