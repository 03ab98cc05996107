use super::*;
use crate::harness::{fuzz_catalogue, http_catalogue as http};

const DAY: i64 = 86_400;
const NOW: i64 = 1_800_000_000 / 3600 * 3600;

fn tables(raw_days: i64, days_1m: i64, days_5m: i64, days_1h: i64) -> Tables {
    Tables::flows(
        "flows",
        [Some(NOW - raw_days * DAY), Some(NOW - days_1m * DAY), Some(NOW - days_5m * DAY), Some(NOW - days_1h * DAY)],
    )
}

#[test]
fn the_coarsest_table_that_fits_the_interval_and_reaches_the_start_answers() {
    let t = tables(7, 15, 90, 365);
    // 6 hours in 200 points: 108 s per point; flows_1m fits, interval 60 s.
    let c = choose_table(&t, NOW - 6 * 3600, NOW, 200, false);
    assert_eq!((c.table.as_str(), c.interval), ("flows_1m", 60));
    // A week in 200 points: 3024 s; flows_5m (1h is coarser than 3024 s), 3000 s.
    let c = choose_table(&t, NOW - 7 * DAY, NOW, 200, false);
    assert_eq!((c.table.as_str(), c.interval), ("flows_5m", 3000));
    // 30 days: 12960 s; flows_1h, 10800 s.
    let c = choose_table(&t, NOW - 30 * DAY, NOW, 200, false);
    assert_eq!((c.table.as_str(), c.interval), ("flows_1h", 10800));
    // 20 minutes in 200 points: 6 s; only the raw table is fine enough.
    let c = choose_table(&t, NOW - 1200, NOW, 200, false);
    assert_eq!((c.table.as_str(), c.interval), ("flows", 6));
    // 20 days back: flows_1m (15 d) does not reach; 20 d in 2000 points is
    // 864 s: flows_5m.
    let c = choose_table(&t, NOW - 20 * DAY, NOW, 2000, false);
    assert_eq!((c.table.as_str(), c.interval), ("flows_5m", 600));
    // A raw-only column: the raw table, whatever the range.
    let c = choose_table(&t, NOW - 6 * 3600, NOW, 200, true);
    assert_eq!((c.table.as_str(), c.interval), ("flows", 108));
    // Nothing reaches back 2 years: the table that reaches furthest.
    let c = choose_table(&t, NOW - 730 * DAY, NOW, 200, false);
    assert_eq!(c.table, "flows_1h");
    // A store an hour old: every table starts then, the hourly one at its
    // bucket's start. Ten minutes in 10 points (60 s) is flows_1m's, not
    // flows_1h's, whose only row covers a whole hour.
    let young = Tables::flows(
        "flows",
        [Some(NOW - 3000), Some(NOW - 3000 / 60 * 60), Some(NOW - 3000 / 300 * 300), Some(NOW - 3600)],
    );
    let c = choose_table(&young, NOW - 4000, NOW, 10, false);
    assert_eq!((c.table.as_str(), c.interval), ("flows_5m", 300));
    let c = choose_table(&young, NOW - 600, NOW, 10, false);
    assert_eq!((c.table.as_str(), c.interval), ("flows_1m", 60));
    // An empty store: the raw table.
    let empty = Tables::flows("flows", [None; 4]);
    assert_eq!(choose_table(&empty, NOW - 3600, NOW, 100, false).table, "flows");
}

#[test]
fn buckets_are_whole_and_start_on_the_resolution() {
    let t = tables(7, 15, 90, 365);
    let c = choose_table(&t, NOW - 6 * 3600 + 17, NOW + 5, 200, false);
    assert_eq!(c.start % 60, 0);
    assert_eq!((c.end - c.start) % c.interval as i64, 0);
    // From the minute the start falls in to the minute after the end.
    assert_eq!((c.start, c.end, c.interval), (NOW - 6 * 3600, NOW + 60, 60));
    assert_eq!(c.buckets(), 361);
}

#[test]
fn units_sum_raw_rows_times_their_rate_and_consolidated_rows_as_they_are() {
    let c = fuzz_catalogue();
    assert_eq!(Units::L3Bps.metric(&c, true).unwrap(), "sum(Bytes * SamplingRate * 8)");
    assert_eq!(Units::L3Bps.metric(&c, false).unwrap(), "sum(Bytes * 8)");
    assert_eq!(Units::L2Bps.metric(&c, false).unwrap(), "sum((Bytes + 38 * Packets) * 8)");
    assert_eq!(Units::Fps.metric(&c, true).unwrap(), "count()");
    assert_eq!(Units::Fps.metric(&c, false).unwrap(), "sum(Flows)");
    assert!(Units::InL2Percent.metric(&c, false).unwrap_err().contains("interface speeds"));
    assert!(Units::Rps.metric(&c, true).unwrap_err().contains("rps is not a unit of the flows source"));
}

fn request(body: &str) -> GraphRequest {
    serde_json::from_str(body).unwrap()
}

const LIMITS: Limits = Limits { dimensions_limit: 50, range_max_s: 400 * DAY };

fn body(extra: &str) -> String {
    let start = format_time(NOW - 6 * 3600);
    let end = format_time(NOW);
    format!(r#"{{"start": "{start}", "end": "{end}", "units": "l3bps", "points": 100{extra}}}"#)
}

#[test]
fn requests_are_checked_with_clear_messages() {
    let c = fuzz_catalogue();
    let ok = request(&body(r#", "dimensions": ["srcas", "ExporterAddress"], "filter": "DstPort = 443""#));
    let checked = ok.check(&c, LIMITS, NOW).unwrap();
    assert_eq!(checked.dimensions, ["SrcAS", "ExporterAddress"]);
    assert!(checked.needs_raw(&c), "DstPort is raw-only");
    let err = |extra: &str| request(&body(extra)).check(&c, LIMITS, NOW).unwrap_err();
    assert!(err(r#", "limit": 51"#).contains("limit must be 1..50"));
    assert!(err(r#", "limit": 0"#).contains("limit"));
    assert!(err(r#", "dimensions": ["Nope"]"#).contains("unknown dimension"));
    assert!(err(r#", "dimensions": ["Bytes"]"#).contains("unknown dimension"));
    assert!(err(r#", "dimensions": ["SrcAS", "srcAS"]"#).contains("twice"));
    assert!(err(r#", "filter": "SrcAS = ""#).starts_with("filter: at line 1"));
    assert!(err(r#", "truncate-v4": 33"#).contains("truncate"));
    let mut r = request(&body(""));
    r.points = Some(4);
    assert!(r.check(&c, LIMITS, NOW).unwrap_err().contains("points"));
    r.points = Some(100);
    r.end = r.start.clone();
    assert!(r.check(&c, LIMITS, NOW).unwrap_err().contains("after start"));
    r.end = "yesterday".into();
    assert!(r.check(&c, LIMITS, NOW).unwrap_err().contains("RFC 3339"));
    r.end = format_time(NOW);
    r.start = format_time(NOW - 500 * DAY);
    assert!(r.check(&c, LIMITS, NOW).unwrap_err().contains("time range"));
    let unknown: Result<GraphRequest, _> = serde_json::from_str(&body(r#", "sql": "DROP TABLE flows""#));
    assert!(unknown.is_err(), "unknown fields are refused");
    let units: Result<GraphRequest, _> = serde_json::from_str(&body("").replace("l3bps", "bps"));
    assert!(units.is_err());
    let pct = request(&body("").replace("l3bps", "inl2%"));
    assert!(pct.check(&c, LIMITS, NOW).unwrap_err().contains("interface speeds"));
}

#[test]
fn bidirectional_requests_read_the_swapped_columns() {
    let c = fuzz_catalogue();
    let t = tables(7, 15, 90, 365);
    let r = request(&body(r#", "dimensions": ["SrcAS"], "filter": "InIfBoundary = external", "bidirectional": true, "previous-period": true"#))
        .check(&c, LIMITS, NOW)
        .unwrap();
    assert!(!r.needs_raw(&c));
    let choice = choose_table(&t, r.start, r.end, 100, false);
    let b = Builder { columns: &c, database: "weir", dialect: SqlDialect::MODERN, tables: &t };
    let axes = b.line(&r, &choice).unwrap();
    assert_eq!(axes.iter().map(|a| a.axis).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(
        axes[0].sql.contains("InIfBoundary = 'external'")
            && axes[0].sql.contains("(SrcAS) IN (SELECT SrcAS AS weir_t0")
    );
    // The reverse axis compares its swapped value with the direct top rows.
    assert!(
        axes[1].sql.contains("OutIfBoundary = 'external'")
            && axes[1].sql.contains("(DstAS) IN (SELECT SrcAS AS weir_t0")
    );
    // Text only for the grouped rows.
    assert!(axes[1]
        .sql
        .starts_with("SELECT weir_i, weir_v, if(weir_top, toString(weir_r0), 'Other') AS weir_d0 FROM ("));
    assert_eq!(axes[2].shift, DAY);
    assert_eq!(axes[2].dimensions, 0);
    for a in &axes {
        assert!(crate::harness::sql_is_one_expression(&a.sql), "{}", a.sql);
    }
}

#[test]
fn series_are_filled_ranked_and_other_comes_last() {
    let c = fuzz_catalogue();
    let t = tables(7, 15, 90, 365);
    let r = request(&body(r#", "dimensions": ["Proto"]"#)).check(&c, LIMITS, NOW).unwrap();
    let choice = Choice { table: "flows_1m".into(), interval: 60, start: NOW - 300, end: NOW };
    let b = Builder { columns: &c, database: "weir", dialect: SqlDialect::MODERN, tables: &t };
    let q = b.line(&r, &choice).unwrap().remove(0);
    let rows = parse_rows(b"0\t600\t6\n1\t60\tOther\n3\t1200\t17\n4\t60\t6\n", 1).unwrap();
    let a = line_answer(&c, &r, &choice, &[(q, rows)]);
    assert_eq!(a.t.len(), 5);
    assert_eq!(a.rows, [vec!["UDP".to_string()], vec!["TCP".into()], vec!["Other".into()]]);
    assert_eq!(a.points, [[0.0, 0.0, 0.0, 20.0, 0.0], [10.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0, 0.0]]);
    assert_eq!(a.total[1], 660.0, "sum of rates × interval");
    assert_eq!(a.min[1], 1.0, "smallest non-zero");
    assert_eq!(a.last[0], 20.0, "second-to-last point");
    // Flows' numbers stay whole in the JSON, as Akvorado's.
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["points"][0], serde_json::json!([0, 0, 0, 20, 0]));
    assert_eq!(a.axis_names[&1], "Direct");
}

#[test]
fn stats_interpolate_the_95th_percentile() {
    let points: Vec<f64> = (1..=100).map(f64::from).collect();
    let s = Stats::of(&points);
    assert_eq!((s.sum, s.average, s.min, s.max, s.last), (5050.0, 50.5, 1.0, 100.0, 99.0));
    assert!((s.p95 - 95.05).abs() < 1e-9);
    assert_eq!(Stats::of(&[]), Stats::default());
}

#[test]
fn labels_read_as_operators_expect() {
    let c = fuzz_catalogue();
    assert_eq!(label(&c, "SrcAddr", "::ffff:192.0.2.1"), "192.0.2.1");
    assert_eq!(label(&c, "SrcAddr", "2001:db8::1"), "2001:db8::1");
    assert_eq!(label(&c, "SrcAS", "65000"), "AS65000");
    assert_eq!(label(&c, "Proto", "6"), "TCP");
    assert_eq!(label(&c, "Proto", "253"), "253");
    assert_eq!(label(&c, "EType", "34525"), "IPv6");
    assert_eq!(label(&c, "SrcMAC", "73588229205"), "00:11:22:33:44:55");
    assert_eq!(label(&c, "DstCommunities", "[4259840100,1]"), "65000:100 0:1");
    assert_eq!(label(&c, "DstLargeCommunities", "[77476325109580116791494967298,7]"), "4200000000:1:2 0:0:7");
    assert_eq!(label(&c, "DstASPath", "[1299,174]"), "1299 174");
    assert_eq!(label(&c, "FlowDirection", "1"), "egress");
    assert_eq!(label(&c, "SrcAS", "Other"), "Other");
    assert_eq!(unescape_tsv(r"a\tb\\c\nd"), "a\tb\\c\nd");
}

#[test]
fn sankeys_link_consecutive_dimensions() {
    let c = fuzz_catalogue();
    let t = tables(7, 15, 90, 365);
    let r = request(&body(r#", "dimensions": ["SrcAS", "Proto"]"#)).check(&c, LIMITS, NOW).unwrap();
    let choice = choose_table(&t, r.start, r.end, 20, false);
    let b = Builder { columns: &c, database: "weir", dialect: SqlDialect::MODERN, tables: &t };
    let q = b.sankey(&r, &choice).unwrap().remove(0);
    assert!(crate::harness::sql_is_one_expression(&q.sql), "{}", q.sql);
    let rows = parse_rows(b"0\t10\t1\t6\n0\t30\t1\t17\n0\t5\tOther\t6\n", 2).unwrap();
    let a = sankey_answer(&c, &r, &choice, &[(q, rows)]);
    assert_eq!(a.xps, [30.0, 10.0, 5.0]);
    assert_eq!(a.nodes.len(), 4);
    assert_eq!(a.links[0], Link { source: "SrcAS: AS1".into(), target: "Proto: UDP".into(), xps: 30.0, axis: 1 });
    assert!(b.sankey(&request(&body("")).check(&c, LIMITS, NOW).unwrap(), &choice).is_err());
}

#[test]
fn top_rows_are_ranked_on_the_coarsest_table_that_covers_the_range() {
    let c = fuzz_catalogue();
    let t = tables(7, 15, 90, 365);
    let b = Builder { columns: &c, database: "weir", dialect: SqlDialect::MODERN, tables: &t };
    let week = request(
        &body(r#", "dimensions": ["SrcAS"]"#).replace(&format_time(NOW - 6 * 3600), &format_time(NOW - 7 * DAY)),
    )
    .check(&c, LIMITS, NOW)
    .unwrap();
    let choice = choose_table(&t, week.start, week.end, 2000, false);
    assert_eq!(choice.table, "flows_5m");
    let sql = &b.line(&week, &choice).unwrap()[0].sql;
    assert!(sql.contains("SELECT SrcAS AS weir_t0 FROM weir.flows_1h"), "ranked on flows_1h: {sql}");
    assert!(sql.contains("FROM weir.flows_5m WHERE"), "drawn from flows_5m: {sql}");
    // Six hours hold only 6 hourly buckets: ranked on the graph's own table.
    let hours = request(&body(r#", "dimensions": ["SrcAS"]"#)).check(&c, LIMITS, NOW).unwrap();
    let choice = choose_table(&t, hours.start, hours.end, 200, false);
    assert!(!b.line(&hours, &choice).unwrap()[0].sql.contains("flows_1h"));
}

fn http_tables() -> Tables {
    Tables::http([Some(NOW - 7 * DAY), Some(NOW - 15 * DAY), Some(NOW - 90 * DAY), Some(NOW - 365 * DAY)])
}

#[test]
fn http_requests_are_graphed_from_their_tables_in_their_units() {
    let c = http();
    let t = http_tables();
    let b = Builder { columns: &c, database: "weir", dialect: SqlDialect::MODERN, tables: &t };
    let body =
        body(r#", "source": "http", "dimensions": ["backend"], "filter": "status_class = 5""#).replace("l3bps", "rps");
    let r = request(&body).check(&c, LIMITS, NOW).unwrap();
    assert!(!r.needs_raw(&c), "backend and status_class are the rollups' dimensions");
    let choice = choose_table(&t, r.start, r.end, 100, false);
    assert_eq!(choice.table, "http_requests_1m");
    let sql = &b.line(&r, &choice).unwrap()[0].sql;
    assert!(sql.contains("sum(requests) AS weir_v FROM weir.http_requests_1m WHERE time >= toDateTime("), "{sql}");
    assert!(sql.contains("AND (status_class = 5)"), "{sql}");
    // A URI is only in the raw table, where a request is a row.
    let r =
        request(&body.replace("status_class = 5", "request_uri LIKE '/api/%' AND ta_ms > -1")).check(&c, LIMITS, NOW);
    let r = r.unwrap();
    assert!(r.needs_raw(&c));
    let choice = choose_table(&t, r.start, r.end, 100, true);
    let sql = &b.line(&r, &choice).unwrap()[0].sql;
    assert!(sql.contains("count() AS weir_v FROM weir.http_requests WHERE time >= "), "{sql}");
    assert!(sql.contains("request_uri LIKE '/api/%' AND ta_ms > -1"), "{sql}");
    // Units per table; a flow's unit is refused, and bidirectional.
    assert_eq!(Units::Bps.metric(&c, true).unwrap(), "sum(greatest(bytes_read, 0))");
    assert_eq!(Units::Bps.metric(&c, false).unwrap(), "sum(bytes)");
    assert_eq!(Units::LatencyP99.metric(&c, true).unwrap(), "quantileExactIf(0.99)(ta_ms, ta_ms >= 0)");
    assert!(Units::LatencyP99.metric(&c, false).unwrap().starts_with("arrayElement([1, 2, 4"));
    let flows = request(&body.replace("rps", "l3bps")).check(&c, LIMITS, NOW).unwrap_err();
    assert!(flows.contains("l3bps is not a unit of the http source (rps, Bps, latency-p50"), "{flows}");
    let both = request(&body.replace(r#""source""#, r#""bidirectional": true, "source""#)).check(&c, LIMITS, NOW);
    assert!(both.unwrap_err().contains("only flows"));
    // A latency is not a rate: a bucket's value is the quantile itself,
    // and no sankey sums it.
    let r = request(&body.replace("rps", "latency-p99")).check(&c, LIMITS, NOW).unwrap();
    let choice = Choice { table: "http_requests_1m".into(), interval: 60, start: NOW - 180, end: NOW };
    let q = b.line(&r, &choice).unwrap().remove(0);
    let a = line_answer(&c, &r, &choice, &[(q, parse_rows(b"0\t512\tapp\n1\t64\tapp\n", 1).unwrap())]);
    assert_eq!((a.points[0].clone(), a.total[0]), (vec![512.0, 64.0, 0.0], 512.0));
    assert!(b.sankey(&r, &choice).unwrap_err().contains("rates"));
    // Requests per second keep their fraction.
    let r = request(&body).check(&c, LIMITS, NOW).unwrap();
    let q = b.line(&r, &choice).unwrap().remove(0);
    let a = line_answer(&c, &r, &choice, &[(q, parse_rows(b"0\t7\tapp\n", 1).unwrap())]);
    assert_eq!(a.points[0], [0.117, 0.0, 0.0]);
    assert_eq!(serde_json::to_value(&a).unwrap()["points"][0], serde_json::json!([0.117, 0, 0]));
}

#[test]
fn the_top_rows_of_http_requests_rank_on_the_coarser_rollups() {
    let c = http();
    let t = http_tables();
    let b = Builder { columns: &c, database: "weir", dialect: SqlDialect::MODERN, tables: &t };
    let week = body(r#", "source": "http", "dimensions": ["server"]"#)
        .replace("l3bps", "Bps")
        .replace(&format_time(NOW - 6 * 3600), &format_time(NOW - 7 * DAY));
    let r = request(&week).check(&c, LIMITS, NOW).unwrap();
    let choice = choose_table(&t, r.start, r.end, 2000, false);
    assert_eq!(choice.table, "http_requests_5m");
    let sql = &b.line(&r, &choice).unwrap()[0].sql;
    assert!(sql.contains("SELECT server AS weir_t0 FROM weir.http_requests_1h"), "{sql}");
    assert!(crate::harness::sql_is_one_expression(sql), "{sql}");
}
