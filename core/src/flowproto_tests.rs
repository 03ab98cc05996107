use std::sync::Arc;

use prost::Message;

use super::*;
use crate::columns::tests::flow;
use crate::columns::MODERN;
use crate::enrich::bmp::Attrs;
use crate::enrich::flows::Enriched;
use crate::enrich::metadata::{Boundary, ExporterInfo, InterfaceInfo, KnownExporter, Meta, Records, Snapshot};
use crate::flow::addr_from_v4;
use crate::schema::{stored_columns, test_settings};
use crate::wire::state::KeyHash;

/// A reader for some of the fields (prost skips the others), numbered as
/// the catalog places their columns (checked below).
#[derive(Clone, PartialEq, Message)]
struct Probe {
    #[prost(uint32, tag = "1")]
    time_received: u32,
    #[prost(bytes = "vec", tag = "3")]
    exporter_address: Vec<u8>,
    #[prost(uint32, tag = "7")]
    in_if_index: u32,
    #[prost(uint64, tag = "23")]
    bytes: u64,
    #[prost(uint32, repeated, tag = "48")]
    dst_as_path: Vec<u32>,
    #[prost(message, repeated, tag = "51")]
    dst_large_communities: Vec<Large>,
    #[prost(string, tag = "58")]
    exporter_name: String,
    #[prost(string, tag = "64")]
    in_if_name: String,
    #[prost(uint32, tag = "68")]
    in_if_speed: u32,
    #[prost(int32, tag = "74")]
    in_if_boundary: i32,
}

#[derive(Clone, PartialEq, Message)]
struct Large {
    #[prost(uint32, tag = "1")]
    asn: u32,
    #[prost(uint32, tag = "2")]
    local_data1: u32,
    #[prost(uint32, tag = "3")]
    local_data2: u32,
}

#[test]
fn field_numbers_are_the_columns_places_in_the_catalog() {
    let proto = FlowProto::new(&stored_columns(&test_settings(&[])));
    let number = |name: &str| {
        let line = proto.text().lines().find(|l| l.contains(&format!(" {name} = "))).unwrap();
        line.split('=').nth(1).unwrap().trim_start().split(';').next().unwrap().parse::<u32>().unwrap()
    };
    for (name, n) in [
        ("TimeReceived", 1),
        ("ExporterAddress", 3),
        ("InIfIndex", 7),
        ("Bytes", 23),
        ("DstASPath", 48),
        ("DstLargeCommunities", 51),
        ("ExporterName", 58),
        ("InIfName", 64),
        ("InIfSpeed", 68),
        ("InIfBoundary", 74),
    ] {
        assert_eq!(number(name), n, "{name}");
    }
    assert!(!proto.text().contains("Record ="), "record ids are the store's, not the consumers'");
    assert!(proto.column_names().contains(&"DstCountry"));
    // An optional column switched on takes its own number; the others keep theirs.
    let more = FlowProto::new(&stored_columns(&test_settings(&["FlowStart"])));
    assert!(more.text().contains("uint64 FlowStart = 5;"));
    assert!(more.text().contains("uint64 Bytes = 23;"));
    assert_ne!(more.hash(), proto.hash(), "another schema, another topic");
    assert_eq!(proto.topic("flows-enriched"), format!("flows-enriched-{}", proto.hash()));
    assert_eq!(proto.hash().len(), 8);
}

#[test]
fn rows_are_written_as_delimited_messages_with_their_records() {
    let layout = stored_columns(&test_settings(&[]));
    let proto = FlowProto::new(&layout);
    let mut c = Columns::new(&layout, 4);
    let mut exporters = Records::<ExporterInfo>::default();
    let mut interfaces = Records::<InterfaceInfo>::default();
    let edge = exporters.intern(ExporterInfo { name: "edge1".into(), ..Default::default() });
    let transit = interfaces.intern(InterfaceInfo {
        name: "et-0/0/1".into(),
        speed: 100_000,
        boundary: Boundary::External,
        ..Default::default()
    });
    let mut snapshot = Snapshot::empty(KeyHash::default());
    snapshot.exporters.insert(addr_from_v4([10, 0, 0, 1]), 0);
    snapshot.known.push(KnownExporter::default());
    snapshot.set_records(&exporters, &interfaces);
    c.set_snapshot(Arc::new(snapshot));
    let dst = Attrs { large_communities: [[4_200_000_000, 1, 0]].into(), ..Attrs::default() };
    let mut routed = flow(100, 1, 1, 1500);
    routed.push_dst_as_path(64500);
    routed.push_dst_as_path(15169);
    c.push_enriched(&routed, &Enriched::default(), [None, Some(&dst)]);
    c.push(&flow(99, 2, 0, 40));
    let mut block = Vec::new();
    c.write_block_resolved(true, &MODERN, &mut block, &mut |exporter, _, _, _| match exporter[15] {
        1 => Meta { exporter: edge, in_if: transit, out_if: 0 },
        _ => Meta::default(),
    });
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    proto.write_rows(&c, 1 << 20, &mut out, &mut ends);
    assert_eq!(ends, [(out.len(), 2)], "one record");
    let mut s = &out[..];
    let mut rows = Vec::new();
    while !s.is_empty() {
        rows.push(Probe::decode_length_delimited(&mut s).unwrap());
    }
    // Pushed order (the block's sort does not move the messages).
    assert_eq!(rows.len(), 2);
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!((a.time_received, a.in_if_index, a.bytes), (100, 1, 1500));
    assert_eq!(a.exporter_address, addr_from_v4([10, 0, 0, 1]));
    assert_eq!(a.dst_as_path, [64500, 15169]);
    assert_eq!(a.dst_large_communities, [Large { asn: 4_200_000_000, local_data1: 1, local_data2: 0 }]);
    assert_eq!((a.exporter_name.as_str(), a.in_if_name.as_str()), ("edge1", "et-0/0/1"));
    assert_eq!((a.in_if_speed, a.in_if_boundary), (100_000, 1));
    // An exporter without a record is named by its address, as in the store.
    assert_eq!(b.exporter_name, "10.0.0.2");
    assert_eq!((b.in_if_index, b.in_if_name.as_str(), b.in_if_boundary), (0, "", 0));

    // Records cut past a size: each ends on a message's end.
    let (mut out, mut ends) = (vec![7u8; 3], Vec::new());
    proto.write_rows(&c, 1, &mut out, &mut ends);
    assert_eq!(ends.len(), 2);
    assert_eq!((ends[0].1, ends[1].1), (1, 1));
    let second = Probe::decode_length_delimited(&out[ends[0].0..ends[1].0]).unwrap();
    assert_eq!(Probe::decode_length_delimited(&out[3..ends[0].0]).unwrap(), rows[0]);
    assert_eq!(second.bytes, 40);
}

#[test]
fn the_schema_text_is_protobuf_as_protoc_reads_it() {
    let proto = FlowProto::new(&stored_columns(&test_settings(&["SrcLargeCommunities", "MPLSLabels"])));
    let t = proto.text();
    assert!(t.starts_with("// Enriched flows"));
    assert!(t.contains("syntax = \"proto3\";\npackage weir;\n"));
    assert!(t.contains("  repeated uint32 MPLSLabels = 47;\n"));
    assert!(t.contains("  repeated LargeCommunity SrcLargeCommunities = 52;\n"));
    assert!(t.contains("  Boundary InIfBoundary = 74;\n"));
    assert!(t.contains("enum Boundary {\n    undefined = 0;"));
    assert_eq!(t.matches('{').count(), t.matches('}').count());
    // protoc itself reads it in the outlet's integration test.
}

#[test]
fn varint_lengths_match_the_encoder() {
    for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
        let mut out = Vec::new();
        varint(v, &mut out);
        assert_eq!(varint_len(v), out.len(), "{v}");
    }
}
