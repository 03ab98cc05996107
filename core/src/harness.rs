//! The bodies of the fuzz targets (`core/fuzz`), kept here so that the
//! regression test (`core/tests/fuzz_regressions.rs`) replays saved inputs
//! through exactly the same code. Each takes arbitrary bytes and must never
//! panic, loop without bound or grow memory without bound.

use crate::decoder::Format;
use crate::flow::addr_from_v4;
use crate::pcap::{Frame, PcapReader};
use crate::wire::state::Limits;
use crate::wire::ListenerOptions;
use crate::{Datagram, Decoder, FlowRecord};

/// Small limits so that fuzzing reaches evictions and queue overflows.
fn tight_limits() -> Limits {
    Limits {
        templates_per_exporter_max: 4,
        exporters_max: 2,
        samplers_per_exporter_max: 2,
        fields_per_template_max: 32,
        pending_sets_max: 3,
        pending_bytes_max: 4096,
        pending_age_max_ms: 10,
        hash_seed: 1,
    }
}

/// Splits fuzz input into datagrams: [u16 length][bytes] repeated. The first
/// byte picks the exporter (two of them, so state is shared and evicted).
fn datagrams(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&exporter, after) = rest.split_first()?;
        let len = match after {
            [a, b, ..] => u16::from_be_bytes([*a, *b]) as usize,
            _ => return None,
        };
        let body = &after[2..];
        let take = len.min(body.len());
        rest = &body[take..];
        Some((exporter, &body[..take]))
    })
}

/// Decodes a sequence of datagrams with one decoder. `format` forces the
/// version field so that each target spends its time in one decoder.
pub fn decode_datagrams(format: Option<Format>, data: &[u8]) {
    let mut decoder = Decoder::new(tight_limits());
    let mut scratch = Vec::with_capacity(2048);
    let mut flows = 0u64;
    for (i, (exporter, payload)) in datagrams(data).enumerate() {
        scratch.clear();
        scratch.extend_from_slice(payload);
        match format {
            Some(Format::NetflowV5) => force_version(&mut scratch, &[0, 5]),
            Some(Format::NetflowV9) => force_version(&mut scratch, &[0, 9]),
            Some(Format::Ipfix) => force_version(&mut scratch, &[0, 10]),
            Some(Format::SflowV5) => force_version(&mut scratch, &[0, 0, 0, 5]),
            None => {}
        }
        let d = Datagram {
            exporter: addr_from_v4([192, 0, 2, exporter % 3]),
            received_ns: i as u64 * 4_000_000,
            payload: &scratch,
            options: options(exporter),
        };
        let _ = decoder.decode(&d, &mut |f: &FlowRecord| {
            flows += 1;
            debug_assert!(f.mpls_labels().len() <= crate::flow::MPLS_LABELS_MAX);
        });
    }
    decoder.flush_pending();
    assert_eq!(decoder.counters().flows, flows, "every flow counted once");
    assert_eq!(decoder.state().pending_sets(), 0);
    // The state always serializes and restores.
    let saved = decoder.state().snapshot_json();
    let mut restored = Decoder::new(tight_limits());
    restored.restore_state_json(&saved).expect("own snapshot restores");
}

/// The listener options an input's exporter byte picks (0: the defaults),
/// so every decapsulation and time source is fuzzed too.
fn options(exporter: u8) -> ListenerOptions {
    use crate::wire::{Decapsulation, TimestampSource};
    let decapsulation =
        [Decapsulation::None, Decapsulation::Vxlan, Decapsulation::Gre, Decapsulation::Ipip, Decapsulation::Srv6]
            [(exporter as usize >> 2) % 5];
    let timestamp_source =
        [TimestampSource::Kernel, TimestampSource::Export, TimestampSource::FlowStart][(exporter as usize >> 5) % 3];
    ListenerOptions { decapsulation, timestamp_source }
}

fn force_version(b: &mut Vec<u8>, version: &[u8]) {
    if b.len() < version.len() {
        b.resize(version.len(), 0);
    }
    b[..version.len()].copy_from_slice(version);
}

/// Reads a pcap file and decodes its datagrams, as `weir decode` does.
pub fn read_pcap(data: &[u8]) {
    let Ok(reader) = PcapReader::new(data) else { return };
    let mut decoder = Decoder::new(tight_limits());
    for frame in reader {
        match frame {
            Ok(Frame::Udp(u)) => {
                let d =
                    Datagram { exporter: u.src, received_ns: u.timestamp_ns, payload: u.payload, ..Default::default() };
                let _ = decoder.decode(&d, &mut |_: &FlowRecord| {});
            }
            Ok(Frame::Skipped(_)) => {}
            Err(_) => break,
        }
    }
}

/// Restores decoder state from arbitrary bytes (a damaged state file).
pub fn restore_snapshot(data: &[u8]) {
    let mut decoder = Decoder::new(tight_limits());
    let _ = decoder.restore_state_json(data);
    assert!(decoder.state().template_count() <= 2 * 4, "limits hold on restore");
}

/// Reads arbitrary bytes as a record of `weir outlet`'s state topic (another
/// outlet's template, sampler or withdrawal) and applies what parses to a
/// decoder: a counted skip or a change within the limits, never a panic.
pub fn state_record(data: &[u8]) {
    let Ok(shared) = serde_json::from_slice::<crate::wire::state::SharedUpdate>(data) else { return };
    let _ = shared.update.key();
    let mut decoder = Decoder::new(tight_limits());
    decoder.apply_updates(std::slice::from_ref(&shared.update), &mut |_| {});
    assert!(decoder.state().template_count() <= 2 * 4, "limits hold on a shared change");
}

/// Parses arbitrary bytes as a config file: an error naming a key, never a
/// panic; what parses also passes the machine check or names its key.
pub fn parse_config(data: &[u8]) {
    let _quiet = QuietPanics::new();
    let Ok(text) = std::str::from_utf8(data) else { return };
    match crate::config::Config::parse(text) {
        Ok(config) => {
            let _ = config.check_machine(4);
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
    // The first line as an environment override (`NAME=VALUE`), the rest as
    // the file, with a rename that moves a key across sections.
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let env: Vec<(String, String)> =
        first.split_once('=').map(|(n, v)| (format!("WEIR_{n}"), v.to_string())).into_iter().collect();
    let renamed = [crate::config::Renamed { old: "run.state", new: "decoder.state_file", since: "fuzz" }];
    if let Err(e) = crate::config::Config::load(rest, &env, &renamed) {
        assert!(!e.message.is_empty());
    }
}

/// What the store's migrations read from a server: input split at the
/// first 0xff byte (or all of it) into `version()` plus `system.tables`
/// output, and `system.columns` output. Parsed, then planned against the
/// schema with every optional column on, for a modern and an old server.
pub fn live_schema(data: &[u8]) {
    use crate::migrate::{live_tables, plan, LiveDatabase};
    use crate::schema::{optional_column_names, Schema, SchemaSettings, ServerVersion};
    let (head, columns) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let (version, tables) = match head.iter().position(|&b| b == b'\n') {
        Some(i) => (&head[..i], &head[i + 1..]),
        None => (head, &[][..]),
    };
    let parsed = ServerVersion::parse(&String::from_utf8_lossy(version));
    let live = LiveDatabase { database_exists: true, tables: live_tables(tables, columns) };
    let settings = SchemaSettings {
        database: "weir".into(),
        optional_columns: optional_column_names().into_iter().map(String::from).collect(),
        ttl_raw_hours: 1,
        ttl_1m_hours: 1,
        ttl_5m_hours: 1,
        ttl_1h_hours: 1,
        ttl_only_drop_parts: true,
        raw_part_bytes_max: 4 << 30,
        consolidated_wide_part_bytes: 0,
        http: None,
        cluster: None,
    };
    for v in [parsed.unwrap_or(ServerVersion(26, 7)), ServerVersion(18, 16)] {
        let _ = plan(&Schema::new(&settings, v), &live);
    }
    // The same live state read as a cluster's node.
    let clustered = SchemaSettings { cluster: Some("weir".into()), ..settings };
    let _ = plan(&Schema::new(&clustered, ServerVersion(18, 16)), &live);
}

/// One HAProxy access-log datagram through the format of the README and
/// the HAProxy test (structured-data and message fields of every kind, a
/// `#XX`-decoded string): an error or a JSON object that parses, never a
/// panic. Invalid UTF-8 (in SD values, captured headers, anywhere) is
/// repaired: replaced, the line renders exactly as its lossy UTF-8 copy
/// does; escaped, it renders too. A line that renders is one row of the
/// store's columns (`httplog`), in a Native block that reads back.
pub fn access_log(data: &[u8]) {
    use crate::accesslog::{Decode, Field, Format, InvalidUtf8, Kind, Source};
    let field = |name: &str, source: Source, kind: Kind| Field {
        name: name.into(),
        source,
        kind,
        required: false,
        headers: vec!["host".into(), "user-agent".into()],
        decode: kind.default_decode(),
    };
    let sd = |p: &str| Source::Sd(p.into());
    let mut path = field("path", sd("HP"), Kind::String);
    path.decode = Decode::HaproxyHex;
    let fields = vec![
        field("client_ip", sd("ci"), Kind::Ip),
        field("status", sd("ST"), Kind::Int),
        field("accept_ms", sd("t"), Kind::ClfTime),
        field("epoch_ms", sd("Ts"), Kind::EpochSeconds),
        field("request_headers", sd("hr"), Kind::Headers),
        field("user_agent", sd("ua"), Kind::String),
        path,
        field("frontend", Source::Message(0), Kind::String),
        field("request", Source::Message(1), Kind::Request),
        field("response_headers", Source::Message(2), Kind::Headers),
    ];
    let format = Format::new("weir@1", fields, Some("status"), Some("client_ip"));
    let mut out = Vec::new();
    let replaced = format.render(data, &mut out).map(|r| r.repairs);
    if replaced.is_ok() {
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
    }
    let lossy = String::from_utf8_lossy(data);
    let mut out_lossy = Vec::new();
    let lossy_result = format.render(lossy.as_bytes(), &mut out_lossy);
    assert_eq!(replaced.is_ok(), lossy_result.is_ok(), "repairing changed the structure");
    if replaced.is_ok() {
        assert_eq!(out, out_lossy, "replaced as String::from_utf8_lossy does");
    }
    let rendered = replaced.is_ok();
    if let (Ok(repairs), Ok(_)) = (replaced, std::str::from_utf8(data)) {
        assert_eq!(repairs.counts()[0], 0, "a valid syslog header is never repaired");
    }
    // The store's columns (`haproxy.store`): a good line is one row of a
    // Native block that reads back; a refused one leaves nothing.
    let dims = ["frontend", "client_ip", "request_method", "request_headers_host"].map(String::from);
    let names = crate::httplog::RollupNames {
        dims: &dims,
        status: "status",
        bytes: "status",
        latency: "status",
        ttl_hours: [1; 3],
        keys_max: 4,
    };
    let table =
        crate::httplog::HttpTable::with_rollup(format.fields(), 1, Some(&names)).expect("the names are columns");
    let mut rows = crate::httplog::HttpRows::new(&table);
    rows.begin();
    let stored = format.render_with(data, &mut out, &mut rows);
    assert_eq!(stored.is_ok(), rendered, "the columns change nothing");
    if stored.is_ok() {
        rows.commit();
    }
    let mut block = Vec::new();
    rows.write_block(&table, &mut block);
    let blocks = crate::columns::read_blocks(&block).expect("the rows' block reads back");
    assert_eq!(blocks.iter().map(|b| b.rows).sum::<usize>(), usize::from(stored.is_ok()));
    let mut rollups: [Vec<u8>; 3] = Default::default();
    let summed = rows.write_rollup_blocks(&table, &mut rollups);
    assert_eq!(summed, [u32::from(stored.is_ok()); 3]);
    for block in &rollups {
        let blocks = crate::columns::read_blocks(block).expect("a rollup block reads back");
        assert_eq!(blocks.iter().map(|b| b.rows).sum::<usize>(), usize::from(stored.is_ok()));
    }
    let format = format.with_invalid_utf8(InvalidUtf8::Escape);
    if format.render(data, &mut out).is_ok() {
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
    }
}

/// A Native stream as a spool file or a chunk holds it: read back, and
/// retyped for an old server, with an error or the same blocks, never a
/// panic or an allocation the input sizes.
pub fn native_blocks(data: &[u8]) {
    use crate::columns::{read_blocks, retype, whole_blocks_len};
    use crate::schema::{Dialect, ServerVersion};
    // A segment file after a crash: its whole blocks read back, and a
    // stream that reads back is whole.
    let whole = whole_blocks_len(&mut std::io::Cursor::new(data)).expect("reading memory does not fail") as usize;
    assert!(whole <= data.len());
    assert!(read_blocks(&data[..whole]).is_ok(), "the whole blocks of a cut file read back");
    let read = read_blocks(data);
    if read.is_ok() {
        assert_eq!(whole, data.len(), "a stream that reads back is whole");
    }
    let old = retype(data, &Dialect::for_version(ServerVersion(18, 16)));
    assert_eq!(read.is_ok(), old.is_ok());
    if let (Ok(blocks), Ok(old)) = (read, old) {
        let again = read_blocks(&old).expect("a retyped stream reads back");
        assert_eq!(blocks.len(), again.len());
        for (a, b) in blocks.iter().zip(&again) {
            assert_eq!((a.rows, a.columns.len()), (b.rows, b.columns.len()));
        }
    }
}

/// A compressed segment file after a crash: its whole zstd frames are
/// found without a panic, and they are whole again when read alone.
pub fn zstd_frames(data: &[u8]) {
    use crate::columns::whole_zstd_frames_len;
    let len =
        |bytes: &[u8]| whole_zstd_frames_len(&mut std::io::Cursor::new(bytes)).expect("reading memory does not fail");
    let whole = len(data) as usize;
    assert!(whole <= data.len());
    assert_eq!(len(&data[..whole]) as usize, whole, "whole frames stay whole");
}

/// An SNMP answer as a poller receives it (SNMPv2c): parsed by `snmp2`,
/// then read as the answer to a poll of interfaces 1 and 2, with an error
/// or what the poll found, never a panic.
pub fn snmp_response(data: &[u8]) {
    use crate::enrich::snmp::{interpret, read_answers};
    if let Ok(pdu) = snmp2::Pdu::from_bytes(data) {
        for if_indexes in [&[][..], &[1, 2]] {
            if let Ok(answers) = read_answers(&pdu, if_indexes) {
                if let Ok(polled) = interpret(&answers, if_indexes) {
                    assert_eq!(polled.interfaces.len(), if_indexes.len());
                }
            }
        }
    }
}

/// While alive, panics print nothing and do not abort (libFuzzer's hook
/// does): the classifiers catch expr-lang's own panics and turn them into
/// errors, which is what these targets check. A panic they do not catch
/// still fails the target.
type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

struct QuietPanics(Option<PanicHook>);

impl QuietPanics {
    fn new() -> QuietPanics {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        QuietPanics(Some(previous))
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            std::panic::set_hook(previous);
        }
    }
}

/// A metadata cache file (`metadata.cache_file`), loaded into a resolver
/// with a small cache: an error or entries within the bounds.
pub fn metadata_cache(data: &[u8]) {
    use crate::config::{MetadataConfig, MetadataProvider};
    use crate::enrich::metadata::{CacheFile, Resolver};
    use crate::wire::state::KeyHash;
    let Ok(file) = serde_json::from_slice::<CacheFile>(data) else { return };
    let config =
        MetadataConfig { providers: vec![MetadataProvider::Snmp], cache_entries_max: 4, ..MetadataConfig::default() };
    let mut resolver = Resolver::new(&config, KeyHash::with_seed(1));
    resolver.set_now(1_800_000_000);
    if resolver.load(&file).is_ok() {
        assert!(resolver.interfaces() <= 4);
        let again = resolver.cache_file();
        assert!(again.exporters.len() <= file.exporters.len());
        resolver.sweep(1_800_000_000, 3600, 1800);
    }
}

/// A classifier rule (`metadata.*_classifiers`): refused with an error, or
/// compiled and run on an exporter and an interface without a panic.
pub fn classifier_rule(data: &[u8]) {
    use crate::enrich::classify::{Classifiers, ExporterClass, InterfaceClass, InterfaceFacts};
    let Ok(rule) = std::str::from_utf8(data) else { return };
    let _quiet = QuietPanics::new();
    let rules = [rule.to_string()];
    if let Ok(c) = Classifiers::new(&rules, &[]) {
        c.exporter("192.0.2.1", "edge1-par", ExporterClass::default());
    }
    if let Ok(c) = Classifiers::new(&[], &rules) {
        let facts = InterfaceFacts { index: 17, name: "et-17", description: "Transit: Cogent 1-38", speed: 100_000 };
        c.interface("192.0.2.1", "edge1-par", &facts, InterfaceClass::default());
    }
}

/// A remote metadata source's document: the first byte picks JSON (even)
/// or CSV (odd), the rest is the body, read with a rename and a path.
pub fn remote_source(data: &[u8]) {
    use crate::enrich::sources::{read, Format, ENTRIES_MAX};
    let Some((&pick, body)) = data.split_first() else { return };
    let format = if pick % 2 == 0 { Format::Json } else { Format::Csv };
    let rename = [("primary_ip4.address".to_string(), "subnet".to_string())].into();
    let path = if pick & 2 == 0 { "" } else { "results" };
    if let Ok(r) = read(format, path, &rename, body) {
        assert!(r.exporters.len() <= ENTRIES_MAX);
        assert!(r.reasons.len() <= 4);
    }
    // The same bytes as a network document (`[[networks.sources]]`).
    let rename = [("cidr".to_string(), "prefix".to_string())].into();
    if let Ok(r) = crate::enrich::sources::read_networks(format, path, &rename, body) {
        assert!(r.networks.len() <= ENTRIES_MAX);
        assert!(r.reasons.len() <= 4);
        assert!(r.networks.iter().all(|(p, _)| crate::config::parse_cidr(p).is_some()));
    }
}

/// A GeoIP/ASN database file (`networks.geo_databases`): read into the
/// networks table (the first byte picks the kind), built, looked up. An
/// error is fine; a panic or a table that answers out of its sets is not.
pub fn geo_database(data: &[u8]) {
    use crate::enrich::networks::{Builder, GeoKind};
    let Some((&pick, body)) = data.split_first() else { return };
    let kind = if pick % 2 == 0 { GeoKind::Location } else { GeoKind::Asn };
    let mut b = Builder::new();
    if b.add_database(kind, body).is_err() {
        return;
    }
    let table = b.build();
    for a in
        [[0u8; 16], [0xff; 16], crate::flow::addr_from_v4([81, 2, 69, 160]), crate::flow::addr_from_v4([1, 1, 1, 1])]
    {
        let set = table.lookup(&a);
        assert!((set as usize) < table.sets.len());
        assert!((table.set(set).record as usize) < table.records.len());
    }
}

/// A BMP connection's bytes (`bmp.listen`): framed by the common header
/// as the session thread does, decoded (without filters, then with RD and
/// RT filters), applied to a routing table, which is then snapshot and
/// looked up. A refused message is fine (a fatal one ends the stream); a
/// panic, or a table whose counts disagree, is not.
pub fn bmp_stream(data: &[u8]) {
    use crate::enrich::bmp::Filters;
    bmp_session(data, Filters::default());
    bmp_session(data, Filters { rds: vec![0, 65000 << 32 | 100], rts: vec![0, 65000 << 32 | 100] });
}

fn bmp_session(data: &[u8], filters: crate::enrich::bmp::Filters) {
    use crate::enrich::bmp::{header, Session, HEADER_LEN};
    use crate::enrich::rib::Rib;
    let mut session = Session::new(filters);
    let mut rib = Rib::default();
    let mut at = 0;
    while at + HEADER_LEN <= data.len() {
        let Ok((_, len)) = header(&data[at..]) else { break };
        let Some(message) = data.get(at..at + len) else { break };
        at += len;
        match session.decode(message) {
            Ok(event) => {
                rib.apply(1, [0; 16], event, 0);
            }
            Err(e) if e.fatal() => break,
            Err(_) => {}
        }
    }
    assert_eq!(rib.routes, rib.peers().map(|p| p.routes).sum::<u64>());
    let routes = rib.snapshot();
    assert_eq!(routes.len().1, rib.routes);
    for a in [[0u8; 16], [0xff; 16], crate::flow::addr_from_v4([198, 51, 100, 7])] {
        if let Some(r) = routes.lookup(&a, &[0; 16], &[0; 16]) {
            assert!(r.mask <= 128);
        }
    }
    rib.session_down(1, 0);
    while rib.remove_expired(1_000, 0, 7) {}
    assert_eq!((rib.routes, rib.prefixes(), rib.attribute_sets()), (0, 0, 0), "every peer removed");
}

/// Kafka records as `weir outlet` reads them (each cut by a 2-byte
/// length): a record that reads back is re-encoded and must read back the
/// same, and its datagram is decoded with one decoder for all of them.
pub fn raw_flows(data: &[u8]) {
    use crate::rawflow::RawFlow;
    use prost::Message;
    let mut decoder = Decoder::new(tight_limits());
    let (mut record, mut again) = (RawFlow::default(), RawFlow::default());
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (bytes, next) = rest[2..].split_at(len);
        rest = next;
        if record.read(bytes).is_err() {
            continue;
        }
        again.read(&record.encode_to_vec()).expect("a record read back reads again");
        assert_eq!(record, again);
        if let Ok(d) = record.datagram() {
            let _ = decoder.decode(&d, &mut |_: &FlowRecord| {});
        }
    }
}
