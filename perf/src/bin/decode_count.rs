//! `weir-decode-count FORMAT [PASSES]`: decodes the decode bench's datagrams
//! (`traffic::data_datagrams`, `sflow_datagrams`; FORMAT `ipfix`, `v9` or
//! `sflow`) PASSES times (default 300) and prints the flows; FORMAT
//! `accesslog` renders the access-log bench's 1024 HAProxy lines instead,
//! `accesslog-store` also keeps them as the store's columns and rollup
//! sums (`[haproxy] store = true`) and writes their blocks once per pass;
//! FORMAT `store` runs the shard's side of the store on PASSES batches of
//! the store bench's 65 536 flows (columns, sums, the summed and raw
//! blocks), `store-metadata` the same with enrichment on (every exporter
//! and interface known: a filter probe per flow, a lookup per run of
//! rows and per summed row, the record ids). Made to run
//! under `valgrind --tool=callgrind`, whose instruction counts repeat on a
//! VM without performance counters, where criterion's times move ±20 %
//! with the neighbours: compare two builds by their totals (perf/RESULTS.md).

use std::hint::black_box;

use weir_core::config::HaproxyConfig;
use weir_core::wire::template::Protocol;
use weir_core::Decoder;
use weir_perf::traffic::{data_datagrams, decode_all as decode, sflow_datagrams, template_datagram, FlowMix};

/// Datagrams per pass, as in `benches/decode.rs`.
const DATAGRAMS: usize = 64;

fn main() {
    let mut args = std::env::args().skip(1);
    let format = args.next().unwrap_or_default();
    let passes: usize = args.next().and_then(|p| p.parse().ok()).unwrap_or(300);
    let mut mix = FlowMix::new(1);
    let (templates, data) = match format.as_str() {
        "ipfix" => (vec![template_datagram(Protocol::Ipfix)], data_datagrams(Protocol::Ipfix, &mut mix, DATAGRAMS).0),
        "v9" => {
            (vec![template_datagram(Protocol::NetflowV9)], data_datagrams(Protocol::NetflowV9, &mut mix, DATAGRAMS).0)
        }
        "sflow" => (Vec::new(), sflow_datagrams(&mut mix, DATAGRAMS).0),
        "accesslog" => return render_lines(passes, false),
        "accesslog-store" => return render_lines(passes, true),
        "store" => return store(passes, false),
        "store-metadata" => return store(passes, true),
        other => {
            eprintln!(
                "weir-decode-count: FORMAT is ipfix, v9, sflow, accesslog, accesslog-store, store or store-metadata, \
                 not {other:?}"
            );
            std::process::exit(2);
        }
    };
    let mut decoder = Decoder::default();
    decode(&mut decoder, &templates);
    let mut sum = 0;
    for _ in 0..passes {
        sum ^= decode(&mut decoder, black_box(&data));
    }
    println!("{} flows ({sum})", decoder.counters().flows);
}

/// The access-log bench's lines through the default format, `passes`
/// times; with `store`, kept as the store's columns and sums too, each
/// pass written as the raw and rollup blocks.
fn render_lines(passes: usize, store: bool) {
    let config = HaproxyConfig { store, ..HaproxyConfig::default() };
    let format = config.format();
    let table = config.http_table();
    let mut rows = weir_core::httplog::HttpRows::new(&table);
    let lines = weir_perf::accesslog::haproxy_lines(1024);
    let mut out = Vec::with_capacity(4096);
    let (mut block, mut rollups): (Vec<u8>, [Vec<u8>; 3]) = Default::default();
    let (mut rendered, mut bytes) = (0u64, 0usize);
    for _ in 0..passes {
        for line in &lines {
            let ok = if store {
                rows.begin();
                let ok = format.render_with(black_box(line), &mut out, &mut rows).is_ok();
                if ok {
                    rows.commit();
                }
                ok
            } else {
                format.render(black_box(line), &mut out).is_ok()
            };
            if ok {
                rendered += 1;
                bytes += out.len();
            }
        }
        if store {
            block.clear();
            rows.write_block(&table, &mut block);
            rollups.iter_mut().for_each(Vec::clear);
            rows.write_rollup_blocks(&table, &mut rollups);
            bytes += block.len();
        }
    }
    println!("{rendered} lines rendered ({bytes} bytes)");
}

/// The shard's store work on `passes` batches, with enrichment or not.
fn store(passes: usize, metadata: bool) {
    use std::sync::Arc;
    use weir_core::columns::{Columns, MODERN};
    use weir_core::config::StoreConfig;
    use weir_core::consolidate::Consolidator;
    use weir_core::enrich::metadata::{Meta, SeenPairs};
    use weir_core::schema::stored_columns;
    use weir_core::wire::state::KeyHash;
    let flows = weir_perf::traffic::store_flows();
    let layout = stored_columns(&StoreConfig::default().schema_settings());
    let snapshot = Arc::new(weir_perf::traffic::known_snapshot(&flows));
    let mut columns = Columns::new(&layout, flows.len());
    let mut sums = Consolidator::new(&layout, flows.len(), KeyHash::with_seed(3));
    if metadata {
        columns.set_snapshot(snapshot.clone());
        sums.set_snapshot(snapshot.clone());
    }
    let mut seen = SeenPairs::default();
    let (mut out, mut raw, mut bytes) = ([Vec::new(), Vec::new(), Vec::new()], Vec::new(), 0);
    for _ in 0..passes {
        columns.clear();
        for f in &flows {
            if metadata {
                // What `ShardMetadata::note` does for a known flow.
                let place = snapshot.exporter_index(&f.exporter_address).unwrap_or(0);
                black_box(seen.holds(&snapshot, place, f.in_if_index) && seen.holds(&snapshot, place, f.out_if_index));
            }
            columns.push(black_box(f));
            sums.add_last_row(&columns);
        }
        out.iter_mut().for_each(Vec::clear);
        sums.write_blocks(&MODERN, &mut out);
        raw.clear();
        columns.write_block_resolved(true, &MODERN, &mut raw, &mut |exporter, in_if, out_if, _| {
            if metadata {
                snapshot.lookup(exporter, in_if, out_if).0
            } else {
                Meta::default()
            }
        });
        bytes += raw.len() + out.iter().map(Vec::len).sum::<usize>();
    }
    println!("{} flows stored ({bytes} bytes of blocks)", passes * flows.len());
}
