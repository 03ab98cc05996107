use super::*;
use crate::columns::{read_blocks, retype};
use crate::config::HaproxyConfig;
use crate::schema::{Dialect, ServerVersion};

const LINE: &str = "<134>1 2026-11-21T12:00:00.250Z cache1 haproxy 4242 - \
    [weir@1 ci=\"192.0.2.7\" cp=\"5123\" t=\"1795262400.120\" ft=\"www\" b=\"app\" s=\"app1\" TR=\"1\" Tw=\"0\" \
    Tc=\"2\" Tr=\"3\" Ta=\"-1\" ST=\"503\" B=\"+512\" tsc=\"SC--\" rt=\"17\" \
    hr=\"{example.com|curl/8|a#7Cb}\" hs=\"{text/html|HIT}\"] \"GET /a?b=c HTTP/1.1\"";

fn table() -> (HttpTable, crate::accesslog::Format) {
    let config = HaproxyConfig::default();
    let format = config.format();
    (HttpTable::new(format.fields(), 720), format)
}

fn column<'a>(block: &'a crate::columns::Block<'a>, name: &str) -> (&'a str, &'a [u8]) {
    let (_, kind, data) = block.columns.iter().find(|(n, _, _)| *n == name).unwrap_or_else(|| panic!("{name}"));
    (kind, data)
}

/// Native strings of a `String` column.
fn strings(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let len = data[at] as usize;
        out.push(String::from_utf8(data[at + 1..at + 1 + len].to_vec()).unwrap());
        at += 1 + len;
    }
    out
}

#[test]
fn the_default_fields_make_typed_columns() {
    let (table, _) = table();
    let names: Vec<(&str, HttpType)> = table.columns.iter().map(|c| (c.name.as_str(), c.kind)).collect();
    assert_eq!(
        &names[..3],
        &[("time", HttpType::DateTime), ("time_ms", HttpType::DateTimeMs), ("host", HttpType::LowString)]
    );
    for (name, kind) in [
        ("client_ip", HttpType::Ip),
        ("status", HttpType::Int64),
        ("accept_ms", HttpType::DateTimeMs),
        ("backend", HttpType::LowString),
        ("request_method", HttpType::LowString),
        ("request_uri", HttpType::String),
        ("request_version", HttpType::LowString),
        ("request_headers_user_agent", HttpType::String),
        ("response_headers_x_cache", HttpType::String),
    ] {
        assert!(names.contains(&(name, kind)), "{name}: {names:?}");
    }
    assert_eq!(table.duplicate_column(), None);
    let modern = Dialect::for_version(ServerVersion(24, 8));
    let sql = table.create_sql("weir", &modern);
    assert!(sql.contains("`client_ip` IPv6") && sql.contains("`backend` LowCardinality(String)"), "{sql}");
    assert!(sql.contains("ORDER BY (time, host)") && sql.contains("TTL time + toIntervalHour(720)"), "{sql}");
    let old = Dialect::for_version(ServerVersion(18, 16));
    let sql = table.create_sql("weir", &old);
    assert!(
        sql.contains("`client_ip` FixedString(16)") && sql.contains("`time_ms` UInt64") && !sql.contains("TTL"),
        "{sql}"
    );
    assert!(table.insert_sql("weir").starts_with("INSERT INTO weir.http_requests (`time`, `time_ms`, "));
}

#[test]
fn lines_become_one_native_block_and_refused_lines_leave_nothing() {
    let (table, format) = table();
    let mut rows = HttpRows::new(&table);
    let mut json = Vec::new();
    rows.begin();
    format.render_with(LINE.as_bytes(), &mut json, &mut rows).unwrap();
    rows.commit();
    // A line that fails after some values came: nothing of it stays.
    rows.begin();
    let bad = LINE.replace("ST=\"503\"", "ST=\"five\"");
    assert!(format.render_with(bad.as_bytes(), &mut json, &mut rows).is_err());
    // A line with only what is required: the rest is the types' zeros.
    rows.begin();
    let bare = "<134>1 2026-11-21T12:00:01Z - haproxy - - [weir@1 ci=\"2001:db8::1\" ST=\"200\"] \"<BADREQ>\"";
    format.render_with(bare.as_bytes(), &mut json, &mut rows).unwrap();
    rows.commit();
    assert_eq!(rows.len(), 2);

    let mut out = Vec::new();
    rows.write_block(&table, &mut out);
    assert!(rows.is_empty());
    let blocks = read_blocks(&out).unwrap();
    let b = &blocks[0];
    assert_eq!((b.rows, b.columns.len()), (2, table.columns.len()));
    let time = column(b, "time").1;
    assert_eq!(u32::from_le_bytes(time[..4].try_into().unwrap()), 1_795_262_400);
    let (kind, ms) = column(b, "time_ms");
    assert_eq!(kind, "DateTime64(3)");
    assert_eq!(i64::from_le_bytes(ms[..8].try_into().unwrap()), 1_795_262_400_250);
    assert_eq!(i64::from_le_bytes(column(b, "accept_ms").1[..8].try_into().unwrap()), 1_795_262_400_120);
    let status = column(b, "status").1;
    assert_eq!(
        [i64::from_le_bytes(status[..8].try_into().unwrap()), i64::from_le_bytes(status[8..].try_into().unwrap())],
        [503, 200]
    );
    let ta = column(b, "ta_ms").1;
    assert_eq!(i64::from_le_bytes(ta[..8].try_into().unwrap()), -1);
    let ip = column(b, "client_ip").1;
    assert_eq!(&ip[..16], &std::net::Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped().octets());
    assert_eq!(&ip[16..], &"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    assert_eq!(strings(column(b, "host").1), ["cache1", ""]);
    assert_eq!(strings(column(b, "backend").1), ["app", ""]);
    assert_eq!(strings(column(b, "request_method").1), ["GET", ""]);
    assert_eq!(strings(column(b, "request_uri").1), ["/a?b=c", "<BADREQ>"]);
    assert_eq!(strings(column(b, "request_headers_x_request_id").1), ["a|b", ""]);
    assert_eq!(strings(column(b, "response_headers_x_cache").1), ["HIT", ""]);
    assert_eq!(column(b, "bytes_read").1[..8], 512i64.to_le_bytes());

    // An old server's names for the same bytes.
    let old = retype(&out, &Dialect::for_version(ServerVersion(18, 16))).unwrap();
    let blocks = read_blocks(&old).unwrap();
    assert_eq!(column(&blocks[0], "client_ip").0, "FixedString(16)");
    assert_eq!(column(&blocks[0], "time_ms").0, "UInt64");
}

fn rolled_up() -> (HttpTable, crate::accesslog::Format) {
    let config = HaproxyConfig { store: true, ..HaproxyConfig::default() };
    (config.http_table(), config.format())
}

/// A `UInt64` column's values.
fn u64s(data: &[u8]) -> Vec<u64> {
    data.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
}

#[test]
fn the_rollups_sum_requests_bytes_and_latencies_by_bucket_and_dimensions() {
    let (table, format) = rolled_up();
    let r = table.rollup.as_ref().unwrap();
    let dims: Vec<&str> = r.dimensions(&table).iter().map(|(n, _)| *n).collect();
    assert_eq!(dims, ["host", "frontend", "backend", "server", "request_method", "cache", "status_class"]);
    let mut rows = HttpRows::new(&table);
    let mut json = Vec::new();
    // Two requests of one minute and key, one 5xx in the next minute with
    // its timer not run, one more at 12:10 (another 5 minutes).
    let lines = [
        LINE.to_string(),
        LINE.replace("Ta=\"-1\"", "Ta=\"100\"").replace("B=\"+512\"", "B=\"88\""),
        LINE.replace("12:00:00.250Z", "12:01:30Z").replace("ST=\"503\"", "ST=\"200\""),
        LINE.replace("12:00:00.250Z", "12:10:00Z").replace("Ta=\"-1\"", "Ta=\"70000\""),
    ];
    for line in &lines {
        rows.begin();
        format.render_with(line.as_bytes(), &mut json, &mut rows).unwrap();
        rows.commit();
    }
    assert_eq!(rows.keys(), 3);
    let mut out: [Vec<u8>; 3] = Default::default();
    assert_eq!(rows.write_rollup_blocks(&table, &mut out), [3, 3, 2]);
    assert_eq!(rows.keys(), 0);
    for (i, block) in out.iter().enumerate() {
        let blocks = read_blocks(block).unwrap();
        let b = &blocks[0];
        let names: Vec<&str> = b.columns.iter().map(|(n, _, _)| *n).collect();
        let mut want = vec!["time"];
        want.extend(&dims);
        want.extend(["requests", "bytes"]);
        let latency = latency_columns();
        want.extend(latency.iter().map(String::as_str));
        assert_eq!(names, want);
        let requests = u64s(column(b, "requests").1);
        assert_eq!(requests.iter().sum::<u64>(), 4, "table {i}");
        assert_eq!(u64s(column(b, "bytes").1).iter().sum::<u64>(), 512 + 88 + 512 + 512);
        // 100 ms is in the 128 ms bucket, 70 s past the last bound; -1 in none.
        assert_eq!(u64s(column(b, "latency_le_128").1).iter().sum::<u64>(), 1);
        assert_eq!(u64s(column(b, "latency_le_inf").1).iter().sum::<u64>(), 1);
        assert_eq!(strings(column(b, "backend").1).len(), b.rows);
        let classes = column(b, "status_class").1;
        assert!(classes.iter().all(|&c| c == 5 || c == 2), "{classes:?}");
    }
    let one_hour = read_blocks(&out[2]).unwrap();
    let time = column(&one_hour[0], "time").1;
    assert!(time.chunks(4).all(|t| u32::from_le_bytes(t.try_into().unwrap()) == 1_795_262_400), "12:00, the hour");
    let modern = Dialect::for_version(ServerVersion(24, 8));
    let sql = table.create_rollup_sql(0, "weir", &modern);
    assert!(sql.contains("SummingMergeTree") && sql.contains("ORDER BY (time, `host`, `frontend`"), "{sql}");
    assert!(sql.contains("`status_class` UInt8") && sql.contains("TTL time + toIntervalHour(360)"), "{sql}");
    assert!(table.insert_rollup_sql(2, "weir").starts_with("INSERT INTO weir.http_requests_1h (`time`, `host`"));
}

#[test]
fn rollup_names_that_are_not_columns_are_refused() {
    let config = HaproxyConfig { store: true, store_dimensions: vec!["nope".into()], ..HaproxyConfig::default() };
    let fields = config.format();
    let names = RollupNames { dims: &config.store_dimensions, ..RollupNames::default() };
    assert!(HttpTable::with_rollup(fields.fields(), 1, Some(&names)).unwrap_err().contains("nope"));
    let names = RollupNames { latency: "backend", ..RollupNames::default() };
    assert!(HttpTable::with_rollup(fields.fields(), 1, Some(&names)).unwrap_err().contains("no int field"));
    let dims = vec!["time".to_string()];
    let names = RollupNames { dims: &dims, ..RollupNames::default() };
    assert!(HttpTable::with_rollup(fields.fields(), 1, Some(&names)).is_err());
}

#[test]
fn a_live_database_gets_the_tables_then_nothing_more() {
    use crate::migrate::{plan, LiveDatabase, LiveTable};
    use crate::schema::{Schema, SchemaSettings};
    let (table, _) = rolled_up();
    let settings = SchemaSettings { http: Some(table.clone()), ..crate::schema::test_settings(&[]) };
    let schema = Schema::new(&settings, ServerVersion(24, 8));
    let empty = plan(&schema, &LiveDatabase { database_exists: true, tables: Vec::new() });
    let creates: Vec<&str> =
        empty.steps.iter().map(|s| s.why.as_str()).filter(|w| w.contains("http_requests")).collect();
    assert_eq!(
        creates,
        [
            "table http_requests is missing",
            "table http_requests_1m is missing",
            "table http_requests_5m is missing",
            "table http_requests_1h is missing"
        ]
    );
    // As the server would describe them, less a dimension (added, to the
    // key too) and the raw table's status_class (an alias since).
    let dialect = &schema.dialect;
    let mut live: Vec<LiveTable> = vec![LiveTable {
        name: HTTP_TABLE.into(),
        columns: table.columns.iter().map(|c| (c.name.clone(), c.kind.type_name(dialect).to_string())).collect(),
        create_query: table.create_sql("weir", dialect),
        ..LiveTable::default()
    }];
    for (i, (name, _)) in ROLLUP_TABLES.iter().enumerate() {
        let mut columns = vec![("time".to_string(), "DateTime".to_string())];
        columns.extend(
            table
                .rollup_columns()
                .iter()
                .filter(|(n, _, _)| n != "cache")
                .map(|(n, sum, dim)| (n.clone(), dim.map_or(sum.to_string(), |k| k.type_name(dialect).to_string()))),
        );
        live.push(LiveTable {
            name: name.to_string(),
            columns,
            create_query: table.create_rollup_sql(i, "weir", dialect),
            ..LiveTable::default()
        });
    }
    let steps = plan(&schema, &LiveDatabase { database_exists: true, tables: live });
    let http: Vec<&str> = steps.steps.iter().map(|s| s.sql.as_str()).filter(|s| s.contains("http_requests")).collect();
    assert_eq!(http.len(), 4, "{http:#?}");
    assert_eq!(
        http[0],
        "ALTER TABLE weir.http_requests ADD COLUMN `status_class` UInt8 ALIAS toUInt8(greatest(least(intDiv(`status`, 100), 255), 0))"
    );
    assert!(http[1].contains("ADD COLUMN `cache` LowCardinality(String) AFTER `request_method`, MODIFY ORDER BY (time, `host`, `frontend`, `backend`, `server`, `request_method`, `status_class`, `cache`)"), "{}", http[0]);
}
