//! Replays every saved fuzz input (console/fuzz/regressions/TARGET/*)
//! through the fuzz targets' own code: none may panic.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        run(&std::fs::read(&path).unwrap());
    }
}

#[test]
fn saved_fuzz_inputs_replay_without_a_panic() {
    replay("filter", weir_console::harness::filter);
    replay("graph_request", weir_console::harness::graph_request);
}

#[test]
fn the_graph_request_seeds_build_sql() {
    // A request like scripts/fuzz-seeds.py's (the harness's clock is
    // 2027-01-15T08:00:00Z), then a store answer with a bucket far out of range.
    let body = format!(
        r#"{{"start": "{}", "end": "{}", "units": "pps", "points": 100, "dimensions": ["SrcAddr", "Proto"],
            "filter": "SrcAS = 1", "truncate-v4": 24, "bidirectional": true, "previous-period": true}}"#,
        "2027-01-15T08:00:00Z", "2027-01-15T09:00:00Z"
    );
    let mut data = body.into_bytes();
    data.extend_from_slice(b"\x000\t10\t192.0.2.0\t6\n999999999\t1\tOther\tOther\n");
    weir_console::harness::graph_request(&data);
}

#[test]
fn an_http_graph_request_builds_sql_and_takes_any_answer() {
    // HAProxy's requests: a latency quantile (not a rate), then requests per second.
    for units in ["latency-p99", "rps"] {
        let body = format!(
            r#"{{"source": "http", "start": "2027-01-15T08:00:00Z", "end": "2027-01-15T09:00:00Z", "units": "{units}",
                "points": 100, "dimensions": ["backend", "status_class"], "filter": "status >= 500 AND ta_ms > -1",
                "previous-period": true}}"#
        );
        let mut data = body.into_bytes();
        data.extend_from_slice(b"\x000\t-5\tapp\t5\n7\t1e308\tOther\tOther\n");
        weir_console::harness::graph_request(&data);
    }
    weir_console::harness::filter(b"status_class = 5 AND request_uri LIKE '/x%' AND tr_ms IN (-1, 2)");
}
