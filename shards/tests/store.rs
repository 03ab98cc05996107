//! `weir run` into real stores: chDB embedded (libchdb.so, `scripts/setup-chdb`)
//! and Debian's ClickHouse 18.16 server (`scripts/clickhouse-server`).
//! Real exporters' datagrams (softflowd, pmacct captures) go in; what
//! `weir query` reads back must equal what tshark decodes from the same
//! datagrams. Then migrations, a 30 s outage under load, and a restart
//! with a non-empty spool. The tests take turns: they pin collectors to
//! the same CPUs.

mod common;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    free_udp_port, numbered_v5, numbered_v5_from, numbered_v5_through, query, query_refused, replay, temp_dir,
    two_shards, wait_rows_inserted, wait_until, write_config, Collector, Server,
};
use weir_core::schema::{Schema, SchemaSettings, ServerVersion};

static TURNS: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exporters").join(name)
}

enum Store<'a> {
    Embedded,
    Remote(&'a Server),
}

/// A two-shard collector config writing into `store`; `store_extra` is
/// more TOML for `[store]`.
fn store_config(dir: &Path, port: u16, store: &Store, store_extra: &str) -> PathBuf {
    let (kind, remote) = match store {
        Store::Embedded => ("embedded", String::new()),
        Store::Remote(s) => ("remote", format!("[store.remote]\nurl = \"{}\"\n", s.url())),
    };
    let mut flush = String::new();
    if !store_extra.contains("flush_interval_ms") {
        flush.push_str("flush_interval_ms = 200\n");
    }
    if !store_extra.contains("consolidation_interval_ms") {
        flush.push_str("consolidation_interval_ms = 300\n");
    }
    let body = format!(
        "{}[sink]\nkind = \"store\"\n[store]\nkind = \"{kind}\"\nspool_dir = \"{spool}\"\n{flush}{store_extra}\n\
         [store.embedded]\npath = \"{chdb}\"\n{remote}",
        two_shards(port, "ebpf"),
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
    );
    write_config(dir, "weir.toml", &body)
}

fn weir(args: &[&str], config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(args).arg("--config").arg(config).output().unwrap();
    assert!(out.status.success(), "weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// tshark's values of each field over the whole capture, sorted.
fn tshark_values(pcap: &Path, decode_as: &str, fields: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for field in fields {
        let o = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(pcap)
            .args(["-d", decode_as, "-T", "fields", "-E", "aggregator=,", "-E", "occurrence=a", "-e", field])
            .output()
            .expect("tshark is installed (scripts/setup)");
        assert!(o.status.success());
        let mut values: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .flat_map(|l| l.split(',').filter(|v| !v.is_empty()).map(str::to_string).collect::<Vec<_>>())
            .collect();
        values.sort();
        out.insert(field.to_string(), values);
    }
    out
}

/// The IP length of every packet an sFlow capture samples, per tshark,
/// sorted: each frame's IPv4 lengths but its first (the datagram's own), and
/// its IPv6 payload lengths plus the 40-byte header.
fn sampled_ip_lengths(pcap: &Path) -> Vec<String> {
    let o = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-d", "udp.port==6343,sflow", "-T", "fields", "-E", "aggregator=,", "-E", "occurrence=a"])
        .args(["-e", "ip.len", "-e", "ipv6.plen"])
        .output()
        .expect("tshark is installed (scripts/setup)");
    assert!(o.status.success());
    let mut lengths = Vec::new();
    for line in String::from_utf8(o.stdout).unwrap().lines() {
        let (v4, v6) = line.split_once('\t').unwrap_or((line, ""));
        let values =
            |s: &str| s.split(',').filter(|v| !v.is_empty()).map(|v| v.parse::<u64>().unwrap()).collect::<Vec<_>>();
        lengths.extend(values(v4).into_iter().skip(1).map(|l| l.to_string()));
        lengths.extend(values(v6).into_iter().map(|l| (l + 40).to_string()));
    }
    lengths.sort();
    lengths
}

/// One column of the stored flows, as text comparable to tshark's, sorted.
fn stored_values(text: &str, column: usize) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let value = l.split('\t').nth(column).unwrap();
            value.strip_prefix("::ffff:").filter(|rest| rest.contains('.')).unwrap_or(value).to_string()
        })
        .collect();
    v.sort();
    v
}

/// Each capture through `weir run` into `store`, read back with `weir query`,
/// against tshark: flows, addresses, ports, protocols, bytes and packets.
fn captures_match_tshark(store: &Store, dir: &Path) {
    let netflow = [
        "cflow.srcaddr+cflow.srcaddrv6",
        "cflow.dstaddr+cflow.dstaddrv6",
        "cflow.srcport",
        "cflow.dstport",
        "cflow.protocol",
        "cflow.octets",
        "cflow.packets",
    ];
    for (name, database) in [("softflowd-ipfix.pcap", "softflowd"), ("pmacct-ipfix-sampled.pcap", "pmacct")] {
        let pcap = fixture(name);
        let port = free_udp_port();
        let sub = dir.join(name.trim_end_matches(".pcap"));
        std::fs::create_dir_all(&sub).unwrap();
        // A database per capture: a remote server holds them all.
        let config = store_config(&sub, port, store, &format!("database = \"{database}\""));
        let c = Collector::start(&config);
        replay(&pcap, port);
        let fields: Vec<&str> = netflow.iter().flat_map(|f| f.split('+')).collect();
        let theirs = tshark_values(&pcap, "udp.port==2055,cflow", &fields);
        let flows = theirs["cflow.octets"].len() as u64;
        assert!(flows > 0);
        assert_eq!(wait_rows_inserted(&c, flows, Duration::from_secs(20)), flows, "{name}: rows inserted");
        let sql = format!(
            "SELECT IPv6NumToString(SrcAddr), IPv6NumToString(DstAddr), SrcPort, DstPort, Proto, Bytes, Packets \
             FROM {database}.flows"
        );
        let ours = query(&config, Some(&c.metrics), &sql);
        for (column, spec) in netflow.iter().enumerate() {
            let mut want: Vec<String> = spec.split('+').flat_map(|f| theirs[f].clone()).collect();
            want.sort();
            let mut got = stored_values(&ours, column);
            if spec.ends_with("port") {
                // ICMP flows: softflowd sends no port (tshark shows none, the
                // store has 0), pmacct sends 0: compare the non-zero ones.
                got.retain(|v| v != "0");
                want.retain(|v| v != "0");
            }
            assert_eq!(got, want, "{name}: {spec}");
        }
        consolidated_tables_match_the_views(&config, &c, database);
        // The operator's queries only read (readonly = 1 on the server).
        query_refused(&config, &c.metrics, &format!("DROP TABLE {database}.flows"));
        query_refused(&config, &c.metrics, &format!("INSERT INTO {database}.flows (Bytes) VALUES (1)"));
        assert_eq!(
            query(&config, Some(&c.metrics), &format!("SELECT count() FROM {database}.flows")),
            format!("{flows}\n")
        );
        c.stop();
    }
    // sFlow: one flow per sample; Bytes is the sampled packet's IP length.
    let pcap = fixture("pmacct-sflow.pcap");
    let port = free_udp_port();
    let sub = dir.join("sflow");
    std::fs::create_dir_all(&sub).unwrap();
    let config = store_config(&sub, port, store, "");
    let c = Collector::start(&config);
    replay(&pcap, port);
    let theirs = tshark_values(&pcap, "udp.port==6343,sflow", &["sflow.flow_sample.sampling_rate"]);
    let flows = theirs["sflow.flow_sample.sampling_rate"].len() as u64;
    assert_eq!(wait_rows_inserted(&c, flows, Duration::from_secs(20)), flows, "sflow: rows inserted");
    let ours = query(&config, Some(&c.metrics), "SELECT Bytes, SamplingRate FROM weir.flows");
    assert_eq!(stored_values(&ours, 0), sampled_ip_lengths(&pcap));
    assert_eq!(stored_values(&ours, 1), theirs["sflow.flow_sample.sampling_rate"]);
    consolidated_tables_match_the_views(&config, &c, "weir");
    c.stop();
}

fn store_settings() -> SchemaSettings {
    SchemaSettings {
        database: "weir".into(),
        optional_columns: Vec::new(),
        ttl_raw_hours: 1,
        ttl_1m_hours: 1,
        ttl_5m_hours: 1,
        ttl_1h_hours: 1,
        ttl_only_drop_parts: true,
        raw_part_bytes_max: 4 << 30,
        consolidated_wide_part_bytes: 0,
        http: None,
        cluster: None,
    }
}

/// The shards' sums in flows_1m/5m/1h equal, bucket by bucket and key by
/// key, what the materialized views computed from the raw rows before
/// (`Schema::consolidation_select`, run over `flows`). Waits for the
/// consolidated inserts, which follow the raw one.
fn consolidated_tables_match_the_views(config: &Path, c: &Collector, database: &str) {
    let settings = SchemaSettings { database: database.into(), ..store_settings() };
    let version = query(config, Some(&c.metrics), "SELECT version()");
    let schema = Schema::new(&settings, ServerVersion::parse(&version).unwrap());
    let dims: Vec<&str> = schema.dimensions().iter().map(|d| d.name).collect();
    let key = format!("TimeReceived, {}", dims.join(", "));
    for table in &schema.consolidations {
        let ours = format!(
            "SELECT {key}, sum(Bytes), sum(Packets), sum(Flows) FROM {database}.{} GROUP BY {key} ORDER BY {key}",
            table.table
        );
        let views = format!("SELECT * FROM ({}) ORDER BY {key}", schema.consolidation_select(table));
        let want = query(config, Some(&c.metrics), &views);
        assert!(!want.is_empty());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = query(config, Some(&c.metrics), &ours);
        while got != want && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            got = query(config, Some(&c.metrics), &ours);
        }
        assert_eq!(got, want, "{database}.{}", table.table);
    }
    let inserted: u64 = c.metric("weir_store_consolidated_rows_inserted_total", "").iter().sum();
    assert!(inserted > 0);
}

#[test]
fn embedded_store_holds_what_tshark_decodes() {
    let _turn = turn();
    let dir = temp_dir("store-embedded");
    captures_match_tshark(&Store::Embedded, &dir);
}

/// `store.raw = "segments"`: the raw flows go to per-minute Native files
/// that the engine reads through `flows_segments`; the `flows` table stays
/// empty and the consolidated tables are filled as with the table.
#[test]
fn raw_segments_hold_what_tshark_decodes() {
    segments_hold_what_tshark_decodes("none", ".native", 50);
}

/// The same, each batch compressed by its shard into a zstd frame.
#[test]
fn compressed_raw_segments_hold_what_tshark_decodes() {
    segments_hold_what_tshark_decodes("zstd", ".native.zst", 1);
}

/// Segment files with `compression`: their names end in `suffix`, and
/// they take more than `bytes_per_flow`.
fn segments_hold_what_tshark_decodes(compression: &str, suffix: &str, bytes_per_flow: u64) {
    let _turn = turn();
    let dir = temp_dir(&format!("store-segments-{compression}"));
    let pcap = fixture("softflowd-ipfix.pcap");
    let port = free_udp_port();
    let segments = dir.join("segments");
    let extra = format!(
        "raw = \"segments\"\nsegments_dir = \"{}\"\nsegments_compression = \"{compression}\"",
        segments.display()
    );
    let config = store_config(&dir, port, &Store::Embedded, &extra);
    let c = Collector::start(&config);
    replay(&pcap, port);
    let theirs = tshark_values(&pcap, "udp.port==2055,cflow", &["cflow.octets", "cflow.srcport"]);
    let flows = theirs["cflow.octets"].len() as u64;
    assert_eq!(wait_rows_inserted(&c, flows, Duration::from_secs(20)), flows, "rows appended");
    let written: u64 = c.metric("weir_store_segment_bytes_written_total", "").iter().sum();
    assert!(written > flows * bytes_per_flow, "{written} bytes for {flows} flows");
    // Stopping closes the minute's file: the view reads it from then on.
    c.stop();
    let files: Vec<String> =
        std::fs::read_dir(&segments).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(!files.is_empty() && files.iter().all(|f| f.starts_with("flows-") && f.ends_with(suffix)), "{files:?}");
    let ours = query(&config, None, "SELECT Bytes, SrcPort FROM weir.flows_segments");
    assert_eq!(stored_values(&ours, 0), theirs["cflow.octets"]);
    let mut ports = stored_values(&ours, 1);
    ports.retain(|p| p != "0");
    assert_eq!(ports, theirs["cflow.srcport"]);
    assert_eq!(query(&config, None, "SELECT count() FROM weir.flows"), "0\n");
    let recent = "SELECT count() FROM weir.flows_segments WHERE SegmentMinute >= now() - 3600";
    assert_eq!(query(&config, None, recent), format!("{flows}\n"));
    let future = "SELECT count() FROM weir.flows_segments WHERE SegmentMinute > now() + 60";
    assert_eq!(query(&config, None, future), "0\n");
    let raw = "SELECT sum(Bytes * greatest(SamplingRate, 1)), count() FROM weir.flows_segments";
    for table in ["flows_1m", "flows_5m", "flows_1h"] {
        let sums = query(&config, None, &format!("SELECT sum(Bytes), sum(Flows) FROM weir.{table}"));
        assert_eq!(sums, query(&config, None, raw), "{table}");
    }
}

#[test]
fn remote_clickhouse_18_holds_what_tshark_decodes() {
    let _turn = turn();
    let dir = temp_dir("store-remote");
    let server = Server::start(&dir.join("clickhouse"));
    captures_match_tshark(&Store::Remote(&server), &dir);
}

#[test]
fn weir_console_serves_the_api_against_a_remote_clickhouse_18() {
    let _turn = turn();
    let dir = temp_dir("store-console");
    let server = Server::start(&dir.join("clickhouse"));
    let port = free_udp_port();
    let config = store_config(&dir, port, &Store::Remote(&server), "");
    let c = Collector::start(&config);
    let pcap = fixture("softflowd-ipfix.pcap");
    replay(&pcap, port);
    let flows = tshark_values(&pcap, "udp.port==2055,cflow", &["cflow.octets"])["cflow.octets"].len() as u64;
    assert_eq!(wait_rows_inserted(&c, flows, Duration::from_secs(20)), flows);
    // The console alone, on its own port, against the same server.
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let console_config = dir.join("console.toml");
    let extra =
        format!("\n[console]\nlisten = \"{listen}\"\ndatabase = \"{}\"\n", dir.join("console.sqlite").display());
    std::fs::write(&console_config, text + &extra).unwrap();
    let mut console = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["console", "--config"])
        .arg(&console_config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = console.stderr.take().unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    for line in lines.map_while(Result::ok) {
        if line.contains("console API at") {
            break;
        }
    }
    let address = listen.to_string();
    let get =
        |path: &str| common::exchange(&address, format!("GET /api/v0/console/{path} HTTP/1.1\r\n\r\n").as_bytes());
    let (status, body) = get("widget/exporters");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("exporters"), "{body}");
    let graph = |extra: &str| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let body = format!(
            "{{\"start\": \"{}\", \"end\": \"{}\", \"units\": \"l3bps\", \"points\": 10, \"dimensions\": [\"SrcAddr\", \"Proto\"]{extra}}}",
            rfc3339(now - 600),
            rfc3339(now + 60)
        );
        let request = format!(
            "POST /api/v0/console/graph/line HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        common::exchange(&address, request.as_bytes())
    };
    let (status, body) = graph(", \"filter\": \"Proto = UDP OR SrcAddr << 10.0.0.0/8\"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"rows\""), "{body}");
    // 18.16 lacks IPv6CIDRToRange: truncating addresses is a clear 400.
    let (status, body) = graph(", \"truncate-v4\": 24");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("truncate"), "{body}");
    let _ = console.kill();
    let _ = console.wait();
    c.stop();
    // Without a remote store, `weir console` says why.
    std::fs::create_dir_all(dir.join("embedded")).unwrap();
    let embedded = store_config(&dir.join("embedded"), port, &Store::Embedded, "");
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(["console", "--config"]).arg(&embedded).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("store.kind = \"remote\""));
}

fn rfc3339(t: u64) -> String {
    let out = Command::new("date").args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Sends `datagrams` numbered v5 datagrams at `per_second`; returns flows sent.
fn send_steadily(port: u16, datagrams: u32, per_second: u32) -> u64 {
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    for i in 0..datagrams {
        let due = start + Duration::from_secs_f64(i as f64 / per_second as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        sender.send_to(&numbered_v5(i * 30), ("127.0.0.1", port)).unwrap();
    }
    datagrams as u64 * 30
}

/// Distinct flow numbers and rows stored.
fn stored_numbers(config: &Path, http: Option<&str>) -> (u64, u64) {
    let text = query(config, http, "SELECT uniqExact(SrcPort + 65536 * DstPort), count() FROM weir.flows");
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn a_30_second_clickhouse_outage_under_load_loses_nothing() {
    let _turn = turn();
    let dir = temp_dir("store-outage");
    let mut server = Server::start(&dir.join("clickhouse"));
    let port = free_udp_port();
    // A small memory bound, so the outage goes through the spool too.
    let config =
        store_config(&dir, port, &Store::Remote(&server), "memory_bytes_max = 262144\nretry_backoff_max_ms = 2000");
    let c = Collector::start(&config);
    let sender = std::thread::spawn(move || send_steadily(port, 45 * 200, 200));
    std::thread::sleep(Duration::from_secs(5));
    server.stop();
    std::thread::sleep(Duration::from_secs(30));
    assert!(c.metric("weir_store_insert_errors_total", "")[0] > 0, "inserts failed during the outage");
    assert!(c.metric("weir_store_spooled_chunks_total", "")[0] > 0, "the outage outgrew memory");
    let (status, body) = c.get_status("/health/ready");
    assert_eq!(status, 503, "not ready while inserts fail: {body}");
    assert!(body.contains("the last insert failed"), "{body}");
    let (status, body) = c.get_status("/health/live");
    assert_eq!(status, 200, "a store that is down is no wedge: {body}");
    server.restart();
    let sent = sender.join().unwrap();
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(60)), sent, "rows inserted after the outage");
    assert_eq!(c.metric("weir_store_dropped_rows_total", "").iter().sum::<u64>(), 0);
    assert_eq!(c.metric("weir_store_spool_chunks", "")[0], 0, "the spool was replayed");
    assert_eq!(c.get_status("/health/ready").0, 200, "ready again");
    let (distinct, rows) = stored_numbers(&config, Some(&c.metrics));
    assert_eq!(distinct, sent, "every flow is stored");
    // An insert the server took but never acknowledged comes back once more (at least once).
    assert!(rows - distinct <= 20_000, "{} duplicates", rows - distinct);
    c.stop();
}

/// An insert that hangs (the server stopped with SIGSTOP: it takes the
/// connection and answers nothing) does not stop the writer taking the
/// shards' batches: with two batch buffers in all, many more batches come
/// in before the insert ends, no shard waits, and everything is stored
/// once it does. Unless the chunks in memory reach `store.memory_bytes_max`:
/// then the writer stops taking and the shard waits for a buffer
/// (counted).
#[test]
fn batches_are_taken_while_an_insert_hangs() {
    let _turn = turn();
    let dir = temp_dir("store-insert-hangs");
    let server = Server::start(&dir.join("clickhouse"));
    // SAFETY: signals to the test's own server; it runs on again when
    // `Stopped` goes, should an assertion fail first.
    struct Stopped(i32);
    impl Drop for Stopped {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    for (database, bound) in [("weir", 256 << 20), ("weir_bounded", 1024)] {
        let case = dir.join(database);
        std::fs::create_dir_all(&case).unwrap();
        let port = free_udp_port();
        let extra = format!(
            "database = \"{database}\"\nbatches_max = 2\nflush_interval_ms = 50\ninsert_interval_ms = 0\n\
             memory_bytes_max = {bound}"
        );
        let config = store_config(&case, port, &Store::Remote(&server), &extra);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replacen("[store.remote]\n", "[store.remote]\ntimeout_ms = 30000\n", 1)).unwrap();
        let c = Collector::start(&config);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(&numbered_v5(0), ("127.0.0.1", port)).unwrap();
        assert_eq!(wait_rows_inserted(&c, 30, Duration::from_secs(20)), 30, "{database}: connected, inserting");
        let before = c.metric("weir_store_batches_received_total", "")[0];
        unsafe { libc::kill(server.pid, libc::SIGSTOP) };
        let stopped = Stopped(server.pid);
        // A datagram every 100 ms: a batch each (50 ms flush), the first of
        // them inserted at once into the stopped server.
        for i in 1..=20u32 {
            sender.send_to(&numbered_v5(i * 30), ("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        if database == "weir" {
            wait_until("the batches sent while the insert hangs are taken", Duration::from_secs(25), || {
                c.metric("weir_store_batches_received_total", "")[0] >= before + 15
            });
            assert_eq!(c.metric("weir_store_insert_errors_total", "")[0], 0, "the insert still hung meanwhile");
        } else {
            // One taken and in the insert, one in the writer's queue: the rest wait.
            assert!(c.metric("weir_store_batches_received_total", "")[0] <= before + 2, "bounded by memory");
        }
        drop(stopped);
        assert_eq!(wait_rows_inserted(&c, 21 * 30, Duration::from_secs(60)), 21 * 30, "{database}");
        assert_eq!(c.metric("weir_store_dropped_rows_total", "").iter().sum::<u64>(), 0);
        let waits = c.metric("weir_store_batch_buffer_waits_total", "")[0];
        if database == "weir" {
            assert_eq!(waits, 0, "no shard waited for a buffer");
        } else {
            assert!(waits > 0, "the shard waited for a buffer while the writer took nothing");
        }
        let stored = query(
            &config,
            Some(&c.metrics),
            &format!("SELECT uniqExact(SrcPort + 65536 * DstPort) FROM {database}.flows"),
        );
        assert_eq!(stored.trim(), (21 * 30).to_string(), "{database}: every flow is stored");
        c.stop();
    }
}

#[test]
fn a_restart_replays_a_non_empty_spool() {
    let _turn = turn();
    let dir = temp_dir("store-spool-restart");
    let mut server = Server::start(&dir.join("clickhouse"));
    server.stop();
    let port = free_udp_port();
    let config = store_config(&dir, port, &Store::Remote(&server), "memory_bytes_max = 65536");
    let c = Collector::start(&config);
    let sent = send_steadily(port, 400, 400);
    c.wait_metric_sum("weir_sink_flows_total", sent);
    c.stop();
    let spooled = std::fs::read_dir(dir.join("spool")).unwrap().count();
    assert!(spooled > 0, "SIGTERM with the store down leaves the batches in the spool");
    server.restart();
    let c = Collector::start(&config);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(30)), sent);
    assert_eq!(c.metric("weir_store_replayed_rows_total", "")[0], sent);
    assert_eq!(stored_numbers(&config, Some(&c.metrics)), (sent, sent));
    c.stop();
    assert_eq!(std::fs::read_dir(dir.join("spool")).unwrap().count(), 0);
}

#[test]
fn migrations_create_rerun_as_no_op_and_add_a_column_to_a_populated_table() {
    let _turn = turn();
    let dir = temp_dir("store-migrate");
    let server = Server::start(&dir.join("clickhouse"));
    for store in [Store::Embedded, Store::Remote(&server)] {
        let port = free_udp_port();
        let config = store_config(&dir, port, &store, "");
        let first = weir(&["migrate"], &config);
        assert!(first.contains("ran 12 steps"), "{first}");
        assert!(weir(&["migrate"], &config).contains("ran 0 steps"));
        // Data in, then SIGTERM with a long flush interval: only the shutdown flush writes it.
        let c = Collector::start(&store_config(&dir, port, &store, "flush_interval_ms = 600000"));
        let sent = send_steadily(port, 20, 1000);
        c.wait_metric_sum("weir_sink_flows_total", sent);
        c.stop();
        assert_eq!(stored_numbers(&config, None), (sent, sent), "SIGTERM flushed every batch");
        // A database from before the shards summed: its views go, the rows stay.
        let writes = config.with_file_name("writes.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&writes, text.replacen("[http]\n", "[http]\nquery_writes = true\n", 1)).unwrap();
        let version = query(&writes, None, "SELECT version()");
        let schema = Schema::new(&store_settings(), ServerVersion::parse(&version).unwrap());
        for (i, table) in schema.consolidations.iter().enumerate() {
            let view = format!(
                "CREATE MATERIALIZED VIEW weir.{}_mv_0badc0d{i} TO weir.{} AS {}",
                table.table,
                table.table,
                schema.consolidation_select(table)
            );
            query(&writes, None, &view);
        }
        let dropped = weir(&["migrate"], &config);
        assert!(
            dropped.contains("ran 3 steps") && dropped.contains("view flows_1m_mv_0badc0d0 is not needed"),
            "{dropped}"
        );
        let views =
            query(&config, None, "SELECT count() FROM system.tables WHERE database = 'weir' AND name LIKE '%_mv_%'");
        assert_eq!(views.trim(), "0");
        assert_eq!(stored_numbers(&config, None), (sent, sent), "the rows stay");
        // Table settings: chDB has them (a table with other values gets them back), 18.16 none.
        let ddl = |table: &str| {
            query(&config, None, &format!("SELECT create_table_query FROM system.tables WHERE name = '{table}'"))
        };
        let chosen =
            "ttl_only_drop_parts = 1, merge_selector_base = 10, max_bytes_to_merge_at_max_space_in_pool = 4294967296";
        if matches!(store, Store::Embedded) {
            // Compact consolidated parts (off by default) asked for: the migration sets them.
            let config = store_config(&dir, port, &store, "consolidated_wide_part_bytes = 1073741824");
            let set = weir(&["migrate"], &config);
            assert!(
                set.contains("ran 3 steps")
                    && set.contains("flows_5m does not have min_bytes_for_wide_part = 1073741824"),
                "{set}"
            );
            assert!(ddl("flows").contains(chosen), "{}", ddl("flows"));
            // (MODIFY SETTING puts a setting after `index_granularity`.)
            let consolidated = "min_bytes_for_wide_part = 1073741824";
            assert!(ddl("flows_1h").contains("SETTINGS ttl_only_drop_parts = 1"), "{}", ddl("flows_1h"));
            assert!(ddl("flows_1h").contains(consolidated), "{}", ddl("flows_1h"));
            query(
                &writes,
                None,
                "ALTER TABLE weir.flows MODIFY SETTING ttl_only_drop_parts = 0, merge_selector_base = 5, \
                 max_bytes_to_merge_at_max_space_in_pool = 1000000",
            );
            query(&writes, None, "ALTER TABLE weir.flows_1h MODIFY SETTING min_bytes_for_wide_part = 10485760");
            let reset = weir(&["migrate"], &config);
            assert!(
                reset.contains("ran 4 steps") && reset.contains("flows does not have ttl_only_drop_parts = 1"),
                "{reset}"
            );
            assert!(reset.contains("flows_1h does not have min_bytes_for_wide_part = 1073741824"), "{reset}");
            assert!(ddl("flows").contains(chosen), "{}", ddl("flows"));
            assert!(ddl("flows_1h").contains(consolidated), "{}", ddl("flows_1h"));
        } else {
            let flows = ddl("flows");
            assert!(
                !flows.contains("SETTINGS ttl_only_drop_parts") && !flows.contains("max_bytes_to_merge"),
                "{flows}"
            );
        }
        let with_vlan = store_config(&dir, port, &store, "optional_columns = [\"SrcVlan\", \"SrcMAC\"]");
        let added = weir(&["migrate"], &with_vlan);
        assert!(added.contains("column flows.SrcVlan is missing"), "{added}");
        assert!(added.contains("column flows_1m.SrcVlan is missing"), "{added}");
        assert!(weir(&["migrate"], &with_vlan).contains("ran 0 steps"));
        assert_eq!(stored_numbers(&with_vlan, None), (sent, sent), "the data stays");
        let zeros = query(&with_vlan, None, "SELECT count() FROM weir.flows WHERE SrcVlan = 0 AND SrcMAC = 0");
        assert_eq!(zeros.trim(), sent.to_string());
        let consolidated = query(&with_vlan, None, "SELECT sum(Flows), sum(Bytes) FROM weir.flows_1m");
        assert_eq!(consolidated.trim(), format!("{sent}\t{}", sent * 100));
        std::fs::remove_dir_all(dir.join("chdb")).ok();
    }
}

/// A raw table from the first enrichment release stored the metadata
/// columns per row; the migration moves its rows' names into the records
/// tables and points the rows at them, so every row keeps its names
/// through the aliases.
#[test]
fn a_raw_table_that_stored_metadata_keeps_its_names_through_the_records() {
    let _turn = turn();
    let dir = temp_dir("store-migrate-metadata");
    let port = free_udp_port();
    let config = store_config(&dir, port, &Store::Embedded, "");
    let c = Collector::start(&config);
    let sent = send_steadily(port, 10, 1000);
    c.wait_metric_sum("weir_store_rows_inserted_total", sent);
    c.stop();
    let writes = config.with_file_name("writes.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&writes, text.replacen("[http]\n", "[http]\nquery_writes = true\n", 1)).unwrap();
    // The table as that release made it: names stored, no record ids.
    let version = query(&writes, None, "SELECT version()");
    let schema = Schema::new(&store_settings(), ServerVersion::parse(&version).unwrap());
    let metadata: Vec<_> = schema.columns.iter().filter(|c| !c.stored()).collect();
    let drops: Vec<String> = metadata
        .iter()
        .map(|c| c.name)
        .chain(["ExporterRecord", "InIfRecord", "OutIfRecord"])
        .map(|n| format!("DROP COLUMN {n}"))
        .collect();
    query(&writes, None, &format!("ALTER TABLE weir.flows {}", drops.join(", ")));
    let value = |name: &str| match name {
        "ExporterName" => "'edge-old'",
        "InIfName" => "'et-old'",
        "InIfSpeed" => "1000",
        "InIfBoundary" => "'external'",
        n if n.ends_with("Speed") => "0",
        n if n.ends_with("Boundary") => "'undefined'",
        _ => "''",
    };
    let adds: Vec<String> = metadata
        .iter()
        .map(|c| format!("ADD COLUMN {} {} DEFAULT {}", c.name, schema.dialect.type_name(c.kind), value(c.name)))
        .collect();
    query(&writes, None, &format!("ALTER TABLE weir.flows {}", adds.join(", ")));
    query(&writes, None, "ALTER TABLE weir.flows MATERIALIZE COLUMN ExporterName SETTINGS mutations_sync = 2");
    let migrated = weir(&["migrate"], &config);
    assert!(migrated.contains("the rows flows stored before point to their records"), "{migrated}");
    assert!(migrated.contains("column flows.InIfName reads its record"), "{migrated}");
    assert!(weir(&["migrate"], &config).contains("ran 0 steps"));
    let names = query(
        &config,
        None,
        "SELECT ExporterName, InIfName, InIfSpeed, InIfBoundary, OutIfName, count() FROM weir.flows \
         GROUP BY ExporterName, InIfName, InIfSpeed, InIfBoundary, OutIfName",
    );
    assert_eq!(names.trim(), format!("edge-old\tet-old\t1000\texternal\t\t{sent}"), "every row keeps its names");
    let kinds = query(
        &config,
        None,
        "SELECT DISTINCT default_kind FROM system.columns WHERE database = 'weir' AND table = 'flows' \
         AND name IN ('ExporterName', 'InIfName', 'OutIfBoundary')",
    );
    assert_eq!(kinds.trim(), "ALIAS");
    assert_eq!(stored_numbers(&config, None), (sent, sent), "the rows stay");
    // New rows go on through the records.
    let c = Collector::start(&config);
    let more = send_steadily(port, 5, 1000);
    c.wait_metric_sum("weir_store_rows_inserted_total", more);
    c.stop();
    let exporters = query(
        &config,
        None,
        "SELECT ExporterName, count() FROM weir.flows GROUP BY ExporterName ORDER BY ExporterName",
    );
    assert_eq!(exporters.trim(), format!("127.0.0.1\t{more}\nedge-old\t{sent}"));
}

/// Regression: rows carried inline after `FORMAT RowBinary` in chDB's query
/// text were cut at a blank line, so an address holding `0a 0a` (10.10.x.x)
/// failed the whole batch ("Cannot read all data"). Inserts now stream.
#[test]
fn rows_holding_newline_bytes_reach_the_embedded_store_whole() {
    let _turn = turn();
    let dir = temp_dir("store-newlines");
    let port = free_udp_port();
    let config = store_config(&dir, port, &Store::Embedded, "");
    let c = Collector::start(&config);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..10u32 {
        sender.send_to(&numbered_v5_from(i * 30, [10, 10, 10, 10]), ("127.0.0.1", port)).unwrap();
        sender.send_to(&numbered_v5_from(300 + i * 30, [32, 10, 13, 9]), ("127.0.0.1", port)).unwrap();
    }
    assert_eq!(wait_rows_inserted(&c, 600, Duration::from_secs(20)), 600);
    assert_eq!(c.metric("weir_store_insert_errors_total", "")[0], 0);
    assert_eq!(stored_numbers(&config, Some(&c.metrics)), (600, 600));
    // The writer's session inserts the shards' sums without a merge.
    let setting = query(&config, Some(&c.metrics), "SELECT getSetting('optimize_on_insert')");
    assert_eq!(setting.trim(), "false");
    // Every row's commit delay was timed: seconds at most, here.
    let latency = c.get("/latency");
    let value = |key: &str| -> u64 {
        latency.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok()).unwrap()
    };
    assert_eq!(value("rows"), 600, "{latency}");
    assert!(value("p50") <= value("p99") && value("p99") <= value("max"), "{latency}");
    assert!((1..10_000).contains(&value("max")), "{latency}");
    assert_eq!(c.metric("weir_store_commit_delay_seconds_count", ""), [600]);
    assert_eq!(c.metric("weir_store_commit_delay_seconds_bucket", "+Inf"), [600]);
    // The store's series pass Prometheus' linter too.
    c.assert_promtool_is_silent();
    c.stop();
}

#[test]
fn batches_arriving_within_the_insert_interval_share_one_insert() {
    let _turn = turn();
    let dir = temp_dir("store-insert-interval");
    let server = Server::start(&dir.join("clickhouse"));
    for store in [Store::Embedded, Store::Remote(&server)] {
        let port = free_udp_port();
        let config = store_config(&dir, port, &store, "flush_interval_ms = 50\ninsert_interval_ms = 3000");
        let c = Collector::start(&config);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // One datagram every 100 ms for 1.5 s: a batch each (50 ms flush).
        for i in 0..15u32 {
            sender.send_to(&numbered_v5(i * 30), ("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(wait_rows_inserted(&c, 450, Duration::from_secs(20)), 450);
        let batches = c.metric("weir_store_batches_received_total", "")[0];
        let inserts = c.metric("weir_store_inserts_total", "table=\"flows\"")[0];
        assert!(batches >= 10, "a batch per datagram: {batches}");
        assert!(inserts <= 3, "{batches} batches went in {inserts} inserts");
        c.stop();
        if matches!(store, Store::Remote(_)) {
            // The server's part log (chDB keeps none): one new part per insert.
            let writes = config.with_file_name("writes.toml");
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(&writes, text.replacen("[http]\n", "[http]\nquery_writes = true\n", 1)).unwrap();
            query(&writes, None, "SYSTEM FLUSH LOGS");
            let parts = query(
                &config,
                None,
                "SELECT count() FROM system.part_log WHERE database = 'weir' AND table = 'flows' \
                 AND toString(event_type) IN ('NewPart', 'NEW_PART')",
            );
            assert_eq!(parts.trim(), inserts.to_string(), "parts written for {inserts} inserts");
        }
    }
}

/// A spool written by a Weir from before Native blocks (the statement says
/// `FORMAT RowBinary`) is replayed as it is; a file without a statement is
/// dropped and counted.
#[test]
fn a_spool_from_before_native_blocks_is_replayed_and_a_refused_chunk_is_set_aside() {
    let _turn = turn();
    let dir = temp_dir("store-old-spool");
    let spool = dir.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let mut rows = Vec::new();
    // Now: an older time would fall to the raw table's TTL.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as u32;
    for i in 0..3u64 {
        rows.extend_from_slice(&now.to_le_bytes());
        rows.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 9]);
        rows.extend_from_slice(&(1000 + i).to_le_bytes());
    }
    // First, a chunk whose rows the engine can never read (cut short): it
    // is set aside and counted, and does not block the ones behind it.
    let mut refused = 7u64.to_le_bytes().to_vec();
    refused.extend_from_slice(b"INSERT INTO weir.flows (TimeReceived, ExporterAddress, Bytes) FORMAT RowBinary\n");
    refused.extend_from_slice(&rows[..11]);
    std::fs::write(spool.join(format!("{:020}.chunk", 1)), refused).unwrap();
    let mut old = 3u64.to_le_bytes().to_vec();
    old.extend_from_slice(b"INSERT INTO weir.flows (TimeReceived, ExporterAddress, Bytes) FORMAT RowBinary\n");
    old.extend_from_slice(&rows);
    std::fs::write(spool.join(format!("{:020}.chunk", 2)), old).unwrap();
    let mut broken = 2u64.to_le_bytes().to_vec();
    broken.extend_from_slice(b"no statement");
    std::fs::write(spool.join(format!("{:020}.chunk", 3)), broken).unwrap();
    let config = store_config(&dir, free_udp_port(), &Store::Embedded, "");
    let c = Collector::start(&config);
    assert_eq!(wait_rows_inserted(&c, 3, Duration::from_secs(20)), 3);
    assert_eq!(c.metric("weir_store_dropped_rows_total", "reason=\"spool_unreadable\""), [2]);
    assert_eq!(c.metric("weir_store_dropped_rows_total", "reason=\"rejected\""), [7]);
    let stored = query(&config, Some(&c.metrics), "SELECT sum(Bytes), any(ExporterAddress) FROM weir.flows");
    assert_eq!(stored.trim(), "3003\t::ffff:192.0.2.9");
    c.stop();
    let left: Vec<String> =
        std::fs::read_dir(&spool).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, ["rejected"], "the spool holds only the refused chunk, set aside");
    let kept: Vec<_> = std::fs::read_dir(spool.join("rejected")).unwrap().collect();
    assert_eq!(kept.len(), 1);
}

/// Enrichment, part 1: the static provider names an exporter and its
/// interfaces in the raw and consolidated tables; an exporter it does not
/// know is named by its address; nothing waits or is lost on a miss.
#[test]
fn static_metadata_names_exporters_and_interfaces_in_every_table() {
    let _turn = turn();
    let dir = temp_dir("store-metadata");
    let server = Server::start(&dir.join("clickhouse"));
    for store in [Store::Embedded, Store::Remote(&server)] {
        let port = free_udp_port();
        let config = store_config(&dir, port, &store, "");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(
            "[[metadata.exporters]]\nsubnet = \"127.0.0.1\"\nname = \"edge1-par\"\nsite = \"par\"\n\
             [metadata.exporters.interfaces]\n\"17\" = { name = \"et-17\", description = \"Transit: Cogent\", \
             speed = 100000, provider = \"cogent\", connectivity = \"transit\", boundary = \"external\" }\n",
        );
        std::fs::write(&config, text).unwrap();
        let c = Collector::start(&config);
        let datagram = |first: u32| numbered_v5_through(first, [10, 0, 0, 1], (17, 3));
        let known = UdpSocket::bind("127.0.0.1:0").unwrap();
        let unknown = UdpSocket::bind("127.0.0.2:0").unwrap();
        for i in 0..10u32 {
            known.send_to(&datagram(i * 30), ("127.0.0.1", port)).unwrap();
            unknown.send_to(&datagram(1000 + i * 30), ("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(wait_rows_inserted(&c, 600, Duration::from_secs(20)), 600, "no flow waits or is lost");
        // Asked for as the flows came (the unknown exporter, the
        // interfaces), answered before their batch was written.
        // Each stored row counted once (published on the shard's next tick).
        assert_eq!(c.wait_metric_sum("weir_metadata_lookups_total", 600), 600, "{}", c.scrape());
        let lookups = |result: &str| c.metric("weir_metadata_lookups_total", &format!("result=\"{result}\""))[0];
        let queued = c.metric("weir_metadata_requests_total", "result=\"queued\"")[0];
        assert!(lookups("hit") > 0 && queued >= 3, "{}", c.scrape());
        // The records the rows point to, each inserted once: the two
        // exporters' and et-17's (they may reach the store in separate
        // inserts: wait for all three).
        assert_eq!(c.wait_metric_sum("weir_store_records_inserted_total", 3), 3, "{}", c.scrape());
        let records = |metric: &str, table: &str| c.metric(metric, &format!("table=\"{table}\""))[0];
        assert_eq!(records("weir_store_records_inserted_total", "interface_records"), 1, "et-17 only");
        assert_eq!(records("weir_store_records_inserted_total", "exporter_records"), 2, "edge1-par and 127.0.0.2");
        assert_eq!(records("weir_store_records_new_total", "exporter_records"), 2);
        c.stop();
        let name = |a: &str| match store {
            Store::Embedded => a.to_string(),
            Store::Remote(_) => format!("IPv6NumToString({a})"),
        };
        if let Store::Remote(_) = store {
            // 18.16: the raw rows keep their records' ids, the names are in
            // the consolidated tables (below).
            let ids = query(
                &config,
                None,
                &format!(
                    "SELECT count() FROM weir.flows WHERE {} = '::ffff:127.0.0.1' AND ExporterRecord != 0 \
                     AND InIfRecord != 0 AND OutIfRecord = 0",
                    name("ExporterAddress")
                ),
            );
            assert_eq!(ids.trim(), "300");
        }
        let rows = if let Store::Remote(_) = store {
            String::new()
        } else {
            query(
            &config,
            None,
            &format!(
                "SELECT ExporterName, ExporterSite, InIfName, InIfDescription, InIfSpeed, InIfProvider, \
                 InIfConnectivity, InIfBoundary, OutIfName, count() FROM weir.flows \
                 WHERE {} = '::ffff:127.0.0.1' GROUP BY ALL",
                name("ExporterAddress")
            )
            .replace("GROUP BY ALL", "GROUP BY ExporterName, ExporterSite, InIfName, InIfDescription, InIfSpeed, InIfProvider, InIfConnectivity, InIfBoundary, OutIfName"),
        )
        };
        if let Store::Embedded = store {
            assert_eq!(rows.trim(), "edge1-par\tpar\tet-17\tTransit: Cogent\t100000\tcogent\ttransit\texternal\t\t300");
            // The unknown exporter: named by its address once resolved (before, too).
            let names = query(
                &config,
                None,
                "SELECT DISTINCT ExporterName, InIfName FROM weir.flows WHERE ExporterAddress = '::ffff:127.0.0.2'",
            );
            assert_eq!(names.trim_end_matches('\n'), "127.0.0.2\t");
        }
        for table in ["flows_1m", "flows_5m", "flows_1h"] {
            let sums = query(
                &config,
                None,
                &format!("SELECT ExporterName, InIfProvider, InIfBoundary, sum(Flows) FROM weir.{table} GROUP BY ExporterName, InIfProvider, InIfBoundary ORDER BY ExporterName"),
            );
            assert_eq!(sums.trim(), "127.0.0.2\t\tundefined\t300\nedge1-par\tcogent\texternal\t300", "{table}");
        }
        std::fs::remove_dir_all(dir.join("chdb")).ok();
    }
}
