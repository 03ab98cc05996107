//! The console API of a running `weir run` over chDB, filled by the
//! benchmark's flow generator (`weir_perf::flowgen`, what `weir-flowgen`
//! runs): every endpoint answers in Akvorado's shapes, stacked series sum to
//! the total (so `Other` is the total minus the top rows), the table follows
//! the range, the reverse direction equals the swapped query, bad requests
//! get a 400 saying why, the query bounds are enforced and counted, and
//! 10 000 generated and hostile filters are each refused as a filter error
//! or run as exactly one read-only SELECT.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{exchange, free_udp_port, temp_dir, write_config, Collector};
use serde_json::{json, Value};
use weir_perf::flowgen::{self, Plan, Stop};
use weir_perf::traffic::Format;

/// One collector at a time: each pins a shard to CPU 0.
static TURNS: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|e| e.into_inner())
}

const API: &str = "/api/v0/console";

/// A collector storing into chDB under `dir`, fed `seconds` of generated
/// IPFIX from three exporters; returns it once every flow is in every table.
fn filled(dir: &Path, console: &str, seconds: u64) -> Collector {
    let port = free_udp_port();
    let body = format!(
        "[shards]\ncores = [0]\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n[sink]\nkind = \"store\"\n\
         [store]\nkind = \"embedded\"\nspool_dir = \"{spool}\"\nconsolidation_interval_ms = 300\n\
         [store.embedded]\npath = \"{chdb}\"\n[console]\ndatabase = \"{saved}\"\n{console}\n",
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
        saved = dir.join("console.sqlite").display(),
    );
    let c = Collector::start(&write_config(dir, "weir.toml", &body));
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get_status("/health/ready").0 != 200 {
        assert!(Instant::now() < deadline, "the store never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    if seconds == 0 {
        return c;
    }
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut plan = Plan::new(Format::Ipfix, target);
    plan.rate = Some(10_000.0);
    plan.stop = Stop::After(Duration::from_secs(seconds));
    plan.exporters = 3;
    plan.source = Some("127.0.0.1".parse().unwrap());
    plan.mix.now_s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as u32;
    let sent = flowgen::run(&plan, &AtomicBool::new(false)).unwrap();
    let got = c.wait_metric_sum("weir_store_rows_inserted_total", sent.flows);
    assert_eq!(got, sent.flows, "every generated flow is stored");
    // The sums are handed over every 300 ms; wait until flows_1h has them all.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, n) = post_query(&c.metrics, "SELECT sum(Flows) FROM weir.flows_1h");
        if n.trim().parse::<u64>().unwrap_or(0) == sent.flows {
            break;
        }
        assert!(Instant::now() < deadline, "flows_1h holds {n} flows of {}", sent.flows);
        std::thread::sleep(Duration::from_millis(200));
    }
    c
}

fn post_query(address: &str, sql: &str) -> (u16, String) {
    let request = format!("POST /query?format=TSV HTTP/1.1\r\nContent-Length: {}\r\n\r\n{sql}", sql.len());
    exchange(address, request.as_bytes())
}

/// GET under the API: status and JSON body.
fn get(c: &Collector, path: &str) -> (u16, Value) {
    let (status, body) = c.get_status(&format!("{API}/{path}"));
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}")))
}

/// POST JSON under the API: status, JSON body and the `X-SQL-Query` header.
fn post(c: &Collector, path: &str, body: &Value) -> (u16, Value, String) {
    call(c, "POST", path, "", Some(body))
}

/// Any request under the API, with extra header lines.
fn call(c: &Collector, method: &str, path: &str, headers: &str, body: Option<&Value>) -> (u16, Value, String) {
    let body = body.map_or(String::new(), Value::to_string);
    let request = format!(
        "{method} {API}/{path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&c.metrics).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let sql = head
        .lines()
        .find_map(|l| l.split_once(": ").filter(|(name, _)| name.eq_ignore_ascii_case("x-sql-query")).map(|(_, v)| v))
        .unwrap_or("")
        .to_string();
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
    };
    (status, json, sql)
}

fn rfc3339(t: u64) -> String {
    let days = t / 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = t % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A graph request over the last `minutes` minutes (ending a minute ahead).
fn graph(minutes: u64, extra: Value) -> Value {
    graph_at(now(), minutes, extra)
}

/// `graph` as of `at` (requests compared bucket by bucket share it: two
/// `now()`s a minute boundary apart give windows of different buckets).
fn graph_at(at: u64, minutes: u64, extra: Value) -> Value {
    let mut body = json!({
        "start": rfc3339(at - minutes * 60),
        "end": rfc3339(at + 60),
        "units": "pps",
        "points": 10,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn numbers(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

/// Per bucket, the sum over the series of one axis.
fn column_sums(answer: &Value, axis: u64) -> Vec<f64> {
    let points = numbers(&answer["points"]);
    let axes: Vec<u64> = answer["axis"].as_array().unwrap().iter().map(|a| a.as_u64().unwrap()).collect();
    let mut sums = vec![0.0; answer["t"].as_array().unwrap().len()];
    for (row, a) in points.iter().zip(&axes) {
        if *a == axis {
            sums.iter_mut().zip(row).for_each(|(s, p)| *s += p);
        }
    }
    sums
}

fn assert_close(a: &[f64], b: &[f64], tolerance: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tolerance, "{what}: bucket {i}: {x} vs {y}");
    }
}

#[test]
fn the_console_answers_every_endpoint_over_generated_flows() {
    let _turn = turn();
    let dir = temp_dir("console");
    let c = filled(&dir, "", 3);

    // configuration and the widgets.
    let (status, conf) = get(&c, "configuration");
    assert_eq!(status, 200);
    assert_eq!(conf["dimensionsLimit"], 50);
    assert!(conf["dimensions"].as_array().unwrap().contains(&json!("SrcAS")));
    assert_eq!(conf["defaultVisualizeOptions"]["graphType"], "stacked");
    let (status, last) = get(&c, "widget/flow-last");
    assert_eq!(status, 200, "{last}");
    assert!(last["ExporterAddress"].as_str().unwrap().starts_with("127.0.0."), "{last}");
    assert!(last["Proto"] == "TCP" || last["Proto"] == "UDP" || last["Proto"] == "ICMP", "{last}");
    let (_, rate) = get(&c, "widget/flow-rate");
    assert!(rate["rate"].as_f64().unwrap() > 0.0 && rate["period"] == "second", "{rate}");
    let (_, exporters) = get(&c, "widget/exporters");
    assert_eq!(exporters["exporters"], json!(["127.0.0.1", "127.0.0.2", "127.0.0.3"]));
    for widget in ["src-as", "dst-as", "exporter", "protocol", "etype", "src-port", "dst-port"] {
        let (status, top) = get(&c, &format!("widget/top/{widget}"));
        assert_eq!(status, 200, "{widget}: {top}");
        let top = top["top"].as_array().unwrap();
        assert!(!top.is_empty() && top.len() <= 5, "{widget}");
        let percent: f64 = top.iter().map(|t| t["percent"].as_f64().unwrap()).sum();
        assert!(percent > 0.0 && percent <= 100.0 + 1e-6, "{widget}: {percent}");
    }
    // Countries are stored (empty without networks or GeoIP configured).
    for widget in ["src-country", "dst-country"] {
        let (status, top) = get(&c, &format!("widget/top/{widget}"));
        assert_eq!(status, 200, "{widget}: {top}");
    }
    let (status, bad) = get(&c, "widget/top/nope");
    assert_eq!(status, 400);
    assert!(bad["message"].as_str().unwrap().contains("unknown top widget"));
    let (status, home) = get(&c, "widget/graph");
    assert_eq!(status, 200);
    assert!(home["data"].as_array().unwrap().iter().any(|p| p["gbps"].as_f64().unwrap() > 0.0), "{home}");

    // Stacked series sum to the total; Other is the total minus the top rows.
    let at = now();
    let (status, total, _) = post(&c, "graph/line", &graph_at(at, 10, json!({})));
    assert_eq!(status, 200, "{total}");
    let (status, top, sql) = post(&c, "graph/line", &graph_at(at, 10, json!({"dimensions": ["SrcAS"], "limit": 3})));
    assert_eq!(status, 200, "{top}");
    assert!(sql.contains("weir.flows_1m"), "11 minutes in 10 points is flows_1m's: {sql}");
    let rows = top["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "3 top rows and Other: {rows:?}");
    assert_eq!(rows[3], json!(["Other"]));
    let series = rows.len() as f64;
    assert_close(&column_sums(&top, 1), &column_sums(&total, 1), series, "stacked = total");
    let stored: f64 =
        post_query(&c.metrics, "SELECT sum(Packets * SamplingRate) FROM weir.flows").1.trim().parse().unwrap();
    let totals: f64 = top["total"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).sum();
    assert!((totals - stored).abs() <= series + stored * 1e-9, "totals {totals} vs stored {stored}");

    // The raw table when a column needs it, or the interval is below a minute.
    let (status, raw, sql) = post(&c, "graph/line", &graph_at(at, 10, json!({"dimensions": ["DstPort"], "limit": 5})));
    assert_eq!(status, 200, "{raw}");
    assert!(sql.contains("weir.flows WHERE"), "{sql}");
    let sum_of_totals = |a: &Value| -> f64 { a["total"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).sum() };
    assert!((sum_of_totals(&raw) - stored).abs() <= 1.0 + stored * 1e-9, "raw: {} vs {stored}", sum_of_totals(&raw));
    let (_, choice, _) =
        post(&c, "graph/table-interval", &json!({"start": rfc3339(now() - 600), "end": rfc3339(now()), "points": 600}));
    assert_eq!((choice["table"].as_str().unwrap(), choice["interval"].as_u64().unwrap()), ("flows", 1));
    let (_, choice, _) =
        post(&c, "graph/table-interval", &json!({"start": rfc3339(now() - 3600), "end": rfc3339(now()), "points": 10}));
    assert_eq!(choice["table"], "flows_5m");

    // The reverse axis equals the query with the filter and dimensions swapped.
    // One `at` for both (two clocks a bucket boundary apart give different buckets).
    let exporter = "ExporterAddress = 127.0.0.2";
    let at = now();
    let both = graph_at(
        at,
        10,
        json!({"dimensions": ["SrcAS"], "limit": 50, "filter": format!("{exporter} AND InIfIndex < 10"), "bidirectional": true, "previous-period": true}),
    );
    let (status, both, _) = post(&c, "graph/line", &both);
    assert_eq!(status, 200, "{both}");
    let swapped = graph_at(
        at,
        10,
        json!({"dimensions": ["DstAS"], "limit": 50, "filter": format!("{exporter} AND OutIfIndex < 10")}),
    );
    let (_, swapped, _) = post(&c, "graph/line", &swapped);
    assert_close(&column_sums(&both, 2), &column_sums(&swapped, 1), 60.0, "reverse = swapped, in total");
    let by_label = |answer: &Value, axis: u64| -> HashMap<String, Vec<f64>> {
        let points = numbers(&answer["points"]);
        answer["rows"]
            .as_array()
            .unwrap()
            .iter()
            .zip(points)
            .zip(answer["axis"].as_array().unwrap())
            .filter(|(_, a)| a.as_u64() == Some(axis))
            .map(|((r, p), _)| (r[0].as_str().unwrap_or("").to_string(), p))
            .collect()
    };
    let (reverse, direct) = (by_label(&both, 2), by_label(&swapped, 1));
    let mut compared = 0;
    for (label, points) in &reverse {
        if let (false, Some(other)) = (label == "Other", direct.get(label)) {
            assert_close(points, other, 1.0, &format!("reverse {label}"));
            compared += 1;
        }
    }
    assert!(compared > 0, "no AS in both: {reverse:?} {direct:?}");
    assert_eq!(both["axis-names"]["3"], "Previous hour");
    assert!(both["axis"].as_array().unwrap().contains(&json!(3)), "the previous period is drawn even when empty");

    // Sankey: every dimension against the top rows, links between them.
    let (status, sankey, _) =
        post(&c, "graph/sankey", &graph(10, json!({"dimensions": ["SrcAS", "Proto"], "limit": 3, "units": "l3bps"})));
    assert_eq!(status, 200, "{sankey}");
    assert!(sankey["links"].as_array().unwrap().iter().all(|l| l["source"].as_str().unwrap().starts_with("SrcAS: ")));
    assert!(sankey["nodes"].as_array().unwrap().iter().any(|n| n["name"] == "Proto: TCP"), "{sankey}");

    // The OpenAPI document names every route.
    let (status, doc) = get(&c, "openapi.json");
    assert_eq!(status, 200);
    assert!(doc["paths"]["/graph/line"]["post"].is_object(), "{doc}");

    // Filters: validate and complete.
    let (_, ok, _) = post(&c, "filter/validate", &json!({"filter": "srcas = AS65000 and proto = tcp"}));
    assert_eq!(ok, json!({"message": "ok", "parsed": "SrcAS = 65000 AND Proto = 6"}));
    let (status, err, _) = post(&c, "filter/validate", &json!({"filter": "SrcAS = 65000 AND\n  Nope = 1"}));
    assert_eq!(status, 200);
    assert_eq!(err["errors"][0]["line"], 2);
    assert!(err["message"].as_str().unwrap().starts_with("at line 2, position 3: "), "{err}");
    let (_, columns, _) = post(&c, "filter/complete", &json!({"what": "column", "prefix": "dst"}));
    assert!(columns["completions"].as_array().unwrap().iter().all(|x| x["label"].as_str().unwrap().starts_with("Dst")));
    let (_, values, _) = post(&c, "filter/complete", &json!({"what": "value", "column": "ExporterAddress"}));
    assert!(values["completions"].as_array().unwrap().iter().any(|x| x["label"] == "127.0.0.1"), "{values}");
    let (_, protos, _) = post(&c, "filter/complete", &json!({"what": "value", "column": "proto", "prefix": "ud"}));
    assert_eq!(protos["completions"][0]["label"], "UDP");

    // Bad requests: a 400 saying why.
    for (body, says) in [
        (graph(10, json!({"limit": 51})), "limit must be 1..50"),
        (graph(10, json!({"points": 3})), "points must be 5..2000"),
        (graph(10, json!({"units": "inl2%"})), "interface speeds"),
        (graph(10, json!({"dimensions": ["Nope"]})), "unknown dimension"),
        (graph(10, json!({"filter": "SrcAS = 'x'"})), "filter: at line 1"),
        (graph(10, json!({"sql": "SELECT 1"})), "unknown field"),
        (graph(10, json!({"start": "yesterday"})), "RFC 3339"),
    ] {
        let (status, answer, _) = post(&c, "graph/line", &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains(says), "{body}: {answer}");
    }

    // Users from the proxy's headers (loopback is trusted by default), and
    // their saved filters.
    let alice = "Remote-User: alice\r\nRemote-Name: Alice\r\nRemote-Email: alice@example.net\r\n";
    let bob = "Remote-User: bob\r\n";
    let (status, info, _) = call(&c, "GET", "user/info", alice, None);
    assert_eq!(status, 200);
    assert_eq!(info, json!({"login": "alice", "name": "Alice", "email": "alice@example.net"}));
    let (_, info, _) = call(&c, "GET", "user/info", "", None);
    assert_eq!(info, json!({"login": "__default", "name": "Default User"}));
    let save = |who: &str, shared: bool, description: &str, content: &str| {
        let body = json!({"description": description, "content": content, "shared": shared});
        call(&c, "POST", "filter/saved", who, Some(&body))
    };
    assert_eq!(save(alice, false, "mine", "SrcAS = AS1").0, 204);
    assert_eq!(save(alice, true, "ours", "DstPort = 443").0, 204);
    assert_eq!(save(bob, false, "bob's", "Proto = UDP").0, 204);
    let (status, bad, _) = save(alice, false, "broken", "SrcAS = ");
    assert_eq!(status, 400);
    assert!(bad["message"].as_str().unwrap().starts_with("content: at line 1"), "{bad}");
    let list = |who: &str| -> Vec<(i64, String)> {
        let (_, v, _) = call(&c, "GET", "filter/saved", who, None);
        v["filters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["id"].as_i64().unwrap(), f["description"].as_str().unwrap().to_string()))
            .collect()
    };
    let names = |l: Vec<(i64, String)>| l.into_iter().map(|(_, d)| d).collect::<Vec<_>>();
    assert_eq!(names(list(alice)), ["mine", "ours"]);
    assert_eq!(names(list(bob)), ["ours", "bob's"]);
    let mine = list(alice)[0].0;
    assert_eq!(call(&c, "DELETE", &format!("filter/saved/{mine}"), bob, None).0, 404, "only one's own");
    assert_eq!(call(&c, "DELETE", &format!("filter/saved/{mine}"), alice, None).0, 204);
    assert_eq!(call(&c, "DELETE", &format!("filter/saved/{mine}"), alice, None).0, 404);
    let (status, bad, _) = call(&c, "DELETE", "filter/saved/x1", alice, None);
    assert_eq!((status, bad["message"].as_str().unwrap()), (400, "bad ID format"));
    assert_eq!(names(list(alice)), ["ours"]);

    // Answers come from the cache when asked again; key order does not matter.
    let hits = || c.metric("weir_console_cache_requests_total", "result=\"hit\"")[0];
    let before = hits();
    let asked = graph(10, json!({"dimensions": ["Proto"], "limit": 2}));
    let (_, first, _) = post(&c, "graph/line", &asked);
    let mut reordered: serde_json::Map<String, Value> = serde_json::Map::new();
    for (k, v) in asked.as_object().unwrap().iter().rev() {
        reordered.insert(k.clone(), v.clone());
    }
    let (status, again, sql) = post(&c, "graph/line", &Value::Object(reordered));
    assert_eq!((status, &again), (200, &first));
    assert!(!sql.is_empty(), "the SQL header is kept with the answer");
    assert_eq!(hits(), before + 1);

    let metrics = c.scrape();
    assert!(metrics.contains("weir_console_requests_total{endpoint=\"graph/line\"}"), "{metrics}");
    assert!(metrics.contains("weir_console_request_duration_seconds_count{endpoint=\"graph/line\"}"));
    c.assert_promtool_is_silent();
    c.stop();
}

#[test]
fn console_queries_past_their_bounds_get_a_clear_error_and_are_counted() {
    let _turn = turn();
    let dir = temp_dir("console-bounds");
    let c = filled(&dir, "query_result_rows_max = 5", 1);
    let (status, answer, _) = post(&c, "graph/line", &graph(10, json!({"dimensions": ["SrcAS"], "limit": 10})));
    assert_eq!(status, 422, "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("too large"), "{answer}");
    assert_eq!(c.metric("weir_console_query_errors_total", "reason=\"result_rows\""), [1]);
    // A small answer still fits.
    let (status, _, _) = post(&c, "filter/complete", &json!({"what": "column"}));
    assert_eq!(status, 200);
    c.stop();
}

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// A filter from the grammar's parts, with hostile literals mixed in.
fn generated(rng: &mut Rng, depth: u32) -> String {
    let columns = [
        "SrcAS",
        "dstas",
        "SrcAddr",
        "DstAddr",
        "ExporterAddress",
        "SrcPort",
        "DSTPORT",
        "Proto",
        "EType",
        "InIfIndex",
        "OutIfIndex",
        "ForwardingStatus",
        "PacketSize",
        "Bytes",
        "Nope",
        "SrcAddr;",
        "Src\u{0}AS",
    ];
    let operators = ["=", "!=", "<", "<=", ">", ">=", "<<", "!<<", "IN", "NOTIN", "LIKE", "ILIKE", "UNLIKE", "=="];
    let values = [
        "AS65000",
        "65000",
        "0",
        "18446744073709551615",
        "18446744073709551616",
        "192.0.2.1",
        "192.0.2.0/24",
        "2001:db8::/32",
        "::ffff:10.0.0.1",
        "TCP",
        "'udp'",
        "IPv6",
        "'x'",
        "'it\\'s'",
        "\"q\\\"\"",
        "'\\\\'",
        "'; DROP TABLE weir.flows; --'",
        "'/* x */'",
        "'日本語'",
        "'\u{202e}'",
        "(1, 2, 3)",
        "('tcp', 17)",
        "(192.0.2.1, 10.0.0.0/8)",
        "SrcAS",
        "DstPort",
        "'\u{0}'",
        "-1",
        "1e3",
        "0x10",
        "'unterminated",
        "SrcPort) OR (1=1",
        "1; SELECT 1",
        "1 -- comment",
        "1 /* open",
        "''''",
        "'\\'",
    ];
    // Conditions that fit their column, so that many filters parse.
    let typed: [(&str, &[&str], &[&str]); 8] = [
        ("SrcAS", &["=", "!="], &["AS65000", "0", "4294967295", "DstAS"]),
        ("DstAddr", &["=", "!=", "<<", "!<<"], &["192.0.2.0/24", "2001:db8::/32", "::", "0.0.0.0/0"]),
        ("srcaddr", &["IN", "NOTIN"], &["(192.0.2.1, 10.0.0.0/8)", "(::1)"]),
        ("DstPort", &["=", "<", ">=", "!="], &["443", "0", "65535", "SrcPort"]),
        ("Proto", &["=", "!=", "IN"], &["TCP", "'udp'", "6", "('tcp', 17, \"ICMP\")"]),
        ("EType", &["=", "!="], &["IPv4", "ipv6"]),
        ("InIfIndex", &["<", ">", "IN"], &["10", "(1, 2, 3)", "OutIfIndex"]),
        ("ExporterAddress", &["=", "!="], &["127.0.0.1", "::ffff:127.0.0.2"]),
    ];
    let mut s = String::new();
    let parts = 1 + rng.next() % 3;
    for i in 0..parts {
        if i > 0 {
            s.push_str(rng.pick::<&str>(&[" AND ", " OR ", " and not ", " or\n ", "AND", " && ", " OR /* c */ "]));
        }
        match rng.next() % 8 {
            0 if depth < 3 => s.push_str(&format!("({})", generated(rng, depth + 1))),
            1 if depth < 3 => s.push_str(&format!("NOT {}", generated(rng, depth + 1))),
            2..=5 => {
                let (column, ops, vals) = rng.pick(&typed);
                s.push_str(&format!("{column} {} {}", rng.pick(ops), rng.pick(vals)));
            }
            _ => s.push_str(&format!("{} {} {}", rng.pick(&columns), rng.pick(&operators), rng.pick(&values))),
        }
    }
    if rng.next().is_multiple_of(10) {
        s.push_str(rng.pick::<&str>(&[" -- trailing", " /* c */", ";", "'", ")", "(", "\\", " \u{fffd}"]));
    }
    s
}

/// Hostile shapes: deep nesting, huge literals, byte soup.
fn hostile(rng: &mut Rng, i: usize) -> String {
    match i % 6 {
        0 => format!("{}SrcPort = 1{}", "(".repeat(i % 90), ")".repeat(i % 90)),
        1 => format!("SrcPort IN ({})", vec!["1"; 1 + i % 3000].join(",")),
        2 => format!("SrcAS = {}", "9".repeat(1 + i % 200)),
        3 => format!("ExporterAddress = '{}'", "'\\".repeat(i % 500)),
        4 => "NOT ".repeat(i % 80) + "SrcPort = 1",
        _ => {
            let alphabet = b"()'\"\\;-/*=<>!, \nSrcASDstPort0123456789.:INOTANDOR";
            (0..(rng.next() % 60)).map(|_| *rng.pick(alphabet) as char).collect()
        }
    }
}

#[test]
fn ten_thousand_generated_and_hostile_filters_are_refused_or_run_as_one_read_only_select() {
    let _turn = turn();
    let dir = temp_dir("console-filters");
    let c = filled(&dir, "", 1);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut refused, mut ran) = (0, 0);
    let mut batch: Vec<(String, String)> = Vec::new();
    let run = |batch: &mut Vec<(String, String)>| {
        if batch.is_empty() {
            return;
        }
        let counts: Vec<String> = batch.iter().map(|(_, sql)| format!("countIf({sql})")).collect();
        let sql = format!("SELECT {} FROM weir.flows", counts.join(", "));
        let (status, body) = post_query(&c.metrics, &sql);
        if status != 200 {
            for (filter, sql) in batch.iter() {
                let (status, body) = post_query(&c.metrics, &format!("SELECT countIf({sql}) FROM weir.flows"));
                assert_eq!(
                    status, 200,
                    "{filter:?} compiled to {sql:?}, which did not run as one read-only SELECT: {body}"
                );
            }
            panic!("a batch failed but each filter ran alone: {body}");
        }
        batch.clear();
    };
    for i in 0..10_000 {
        let filter = if i % 4 == 3 { hostile(&mut rng, i) } else { generated(&mut rng, 0) };
        let (status, answer, _) = post(&c, "filter/validate", &json!({ "filter": filter }));
        assert_eq!(status, 200, "{filter:?}: {answer}");
        match answer.get("errors") {
            Some(errors) => {
                let e = &errors[0];
                assert!(e["line"].as_u64().unwrap() >= 1 && e["offset"].as_u64().unwrap() as usize <= filter.len());
                refused += 1;
            }
            None => {
                if let Some(sql) = answer["parsed"].as_str() {
                    batch.push((filter, sql.to_string()));
                    ran += 1;
                }
                if batch.len() == 50 || batch.iter().map(|(_, sql)| sql.len()).sum::<usize>() > 100_000 {
                    run(&mut batch);
                }
            }
        }
    }
    run(&mut batch);
    eprintln!("filters: {ran} ran, {refused} refused");
    assert!(ran > 1000 && refused > 1000, "the mix exercises both: {ran} ran, {refused} refused");
    c.stop();
}

#[test]
fn user_headers_count_only_from_trusted_proxies() {
    let _turn = turn();
    let dir = temp_dir("console-users");
    let builtin = "[[console.saved_filters]]\ndescription = \"web\"\ncontent = \"DstPort IN (80, 443)\"\n";
    let config = format!("[console.auth]\ntrusted_proxies = [\"192.0.2.0/24\"]\ndefault_login = \"\"\n{builtin}");
    let c = filled(&dir, &config, 0);
    // Loopback is not trusted here, and there is no default user: 401.
    let (status, body, _) = call(&c, "GET", "user/info", "Remote-User: alice\r\n", None);
    assert_eq!((status, body["message"].as_str().unwrap()), (401, "No user logged in."));
    assert_eq!(call(&c, "GET", "configuration", "", None).0, 401);
    c.stop();
    // Trusted (the default, loopback), the built-in filter is there for everyone.
    let c = filled(&dir, builtin, 0);
    let (status, v, _) = call(&c, "GET", "filter/saved", "Remote-User: carol\r\n", None);
    assert_eq!(status, 200);
    assert_eq!(v["filters"][0]["user"], "__system");
    assert_eq!(v["filters"][0]["description"], "web");
    c.stop();
}
