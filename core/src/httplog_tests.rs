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
