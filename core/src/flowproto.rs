//! Enriched flows as protobuf, for consumers other than the store: the
//! `.proto` schema generated from the store's schema (`FlowProto::new`),
//! and each row of a shard's column buffers written as one `FlowMessage`
//! (`FlowProto::write_rows`).
//!
//! One field per column of the raw table as the console sees it: every
//! stored column (the record ids excepted: they point into the store's
//! records tables) and every metadata and network column (exporter and
//! interface names, countries, ...), with the values the store keeps.
//! A field's number is its column's place in `schema::catalog` plus one,
//! so a column keeps its number while the config switches optional
//! columns on and off; the topic's name carries a hash of the schema text
//! (`topic`), so a consumer never reads one schema's messages with
//! another's.
//!
//! Types: integers as `uint32`/`uint64` (a `DateTime` in seconds, a
//! `DateTime64(3)` in milliseconds, a MAC address in the low 48 bits),
//! addresses as 16 `bytes` (IPv4 mapped into IPv6, network order), lists
//! as packed `repeated uint32`, large communities as `repeated
//! LargeCommunity`, strings as `string`, the boundary as an enum with
//! ClickHouse's names. proto3 leaves out zero values: an absent address is
//! `::`, an absent name the empty string, as in the store.
//!
//! Messages are length-delimited (a varint length, then the message), many
//! to a Kafka record: ClickHouse's `Protobuf` input format (and its Kafka
//! engine), `protoc --decode` on each, and every protobuf library's
//! delimited readers take them as they are.

use crate::columns::Columns;
use crate::columns::{exporter_text, interface_text};
use crate::enrich::networks::NetAttr;
use crate::flow::{addr_to_ip, Field};
use crate::schema::{catalog, Column, ColumnType, ExporterAttr, IfAttr, Source};

/// The message's name in the schema.
pub const MESSAGE: &str = "FlowMessage";

/// Protobuf wire types.
const VARINT: u64 = 0;
const LENGTH_DELIMITED: u64 = 2;

/// What a field reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// The `usize`th stored column of the shard's buffers.
    Stored(usize),
    /// A metadata or network column, from the row's records.
    Record(Source),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProtoField {
    number: u32,
    column: Column,
    slot: Slot,
}

/// The schema of one store configuration's enriched flows, and its
/// encoder.
#[derive(Clone, Debug)]
pub struct FlowProto {
    fields: Vec<ProtoField>,
    text: String,
    hash: String,
    /// Where ExporterAddress is among the stored columns (an unknown
    /// exporter's name is its address, as in the store).
    exporter: Option<usize>,
}

impl FlowProto {
    /// The schema of `columns` (`schema::stored_columns` of the store's
    /// settings).
    pub fn new(columns: &[Column]) -> FlowProto {
        let numbers: Vec<&'static str> = catalog().iter().map(|c| c.name).collect();
        let mut stored = 0;
        let mut fields = Vec::new();
        for c in columns {
            let slot = if c.stored() {
                stored += 1;
                Slot::Stored(stored - 1)
            } else {
                Slot::Record(c.source)
            };
            if c.kind == ColumnType::RecordId {
                continue;
            }
            let Some(at) = numbers.iter().position(|n| *n == c.name) else { continue };
            fields.push(ProtoField { number: at as u32 + 1, column: *c, slot });
        }
        let exporter =
            columns.iter().filter(|c| c.stored()).position(|c| c.source == Source::Flow(Field::ExporterAddress));
        let text = schema_text(&fields);
        let hash = format!("{:016x}", fnv1a(text.as_bytes()));
        FlowProto { fields, text, hash: hash[..8].to_string(), exporter }
    }

    /// The `.proto` file.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Eight hex digits naming this schema.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The topic for `base` (`kafka.enriched.topic`): `<base>-<hash>`.
    pub fn topic(&self, base: &str) -> String {
        format!("{base}-{}", self.hash)
    }

    /// The fields' column names, in field order.
    pub fn column_names(&self) -> Vec<&'static str> {
        self.fields.iter().map(|f| f.column.name).collect()
    }

    /// Appends each of `columns`' rows to `out` as a length-delimited
    /// message, in the order they were pushed, cut into records: after
    /// each message that takes the record past `record_bytes`, and after
    /// the last, (the record's end in `out`, its messages) goes to
    /// `records`. The rows' records must be resolved
    /// (`Columns::write_block_resolved`).
    pub fn write_rows(
        &self,
        columns: &Columns,
        record_bytes: usize,
        out: &mut Vec<u8>,
        records: &mut Vec<(usize, u32)>,
    ) {
        let rows = columns.len();
        let plan = self.plan(columns);
        let (mut start, mut messages) = (out.len(), 0);
        for row in 0..rows {
            // Two bytes kept for the length (a message of 128 bytes to
            // 16 KiB), the message written after them, the length put in.
            let at = out.len();
            out.extend_from_slice(&[0, 0]);
            self.write_row(&plan, columns, row, out);
            let len = out.len() - at - 2;
            if len < 128 {
                out[at] = len as u8;
                out.copy_within(at + 2.., at + 1);
                out.pop();
            } else if len < 1 << 14 {
                out[at] = len as u8 | 0x80;
                out[at + 1] = (len >> 7) as u8;
            } else {
                let mut prefix = Vec::new();
                varint(len as u64, &mut prefix);
                out.splice(at..at + 2, prefix);
            }
            messages += 1;
            if out.len() - start >= record_bytes || row + 1 == rows {
                records.push((out.len(), messages));
                (start, messages) = (out.len(), 0);
            }
        }
    }

    /// What each field reads, for one batch: its column's bytes, or the
    /// record attribute it names.
    fn plan<'a>(&self, columns: &'a Columns) -> Vec<Step<'a>> {
        self.fields
            .iter()
            .filter_map(|f| {
                let key = Key::new(f.number, f.column.kind);
                Some(match (f.slot, f.column.kind) {
                    (Slot::Stored(at), ColumnType::Address) => Step::Address(key, columns.fixed_column(at).0),
                    (Slot::Stored(at), ColumnType::ArrayUInt32) => {
                        let (ends, items) = columns.array_column(at);
                        Step::List(key, ends, items)
                    }
                    (Slot::Stored(at), ColumnType::ArrayUInt128) => {
                        let (ends, items) = columns.array_column(at);
                        Step::Large(key, ends, items)
                    }
                    (Slot::Stored(at), _) => {
                        let (data, width) = columns.fixed_column(at);
                        Step::Int(key, data, width)
                    }
                    (Slot::Record(Source::Exporter(a)), _) => Step::Exporter(key, a),
                    (Slot::Record(Source::InIf(a)), _) => Step::Interface(key, 0, a),
                    (Slot::Record(Source::OutIf(a)), _) => Step::Interface(key, 1, a),
                    (Slot::Record(Source::SrcNet(a)), _) => Step::Net(key, 0, a),
                    (Slot::Record(Source::DstNet(a)), _) => Step::Net(key, 1, a),
                    (Slot::Record(_), _) => return None,
                })
            })
            .collect()
    }

    fn write_row(&self, plan: &[Step], columns: &Columns, row: usize, out: &mut Vec<u8>) {
        let snapshot = columns.snapshot();
        let networks = columns.networks();
        let exporter_record = columns.record(0, row);
        let exporter = snapshot.exporter(exporter_record);
        let interfaces = [snapshot.interface(columns.record(1, row)), snapshot.interface(columns.record(2, row))];
        let nets = [networks.set(columns.net(0, row)).record, networks.set(columns.net(1, row)).record];
        for step in plan {
            match *step {
                Step::Int(k, data, width) => {
                    let at = row * width;
                    let v = match (width, data.get(at..at + width)) {
                        (1, Some(&[a])) => u64::from(a),
                        (2, Some(&[a, b])) => u64::from(u16::from_le_bytes([a, b])),
                        (4, Some(&[a, b, c, d])) => u64::from(u32::from_le_bytes([a, b, c, d])),
                        (8, Some(b)) => u64::from_le_bytes(b.try_into().unwrap_or([0; 8])),
                        _ => 0,
                    };
                    if v != 0 {
                        k.write(out);
                        varint(v, out);
                    }
                }
                Step::Address(k, data) => {
                    let Some(a) = data.get(row * 16..row * 16 + 16) else { continue };
                    if a.iter().any(|&x| x != 0) {
                        k.write(out);
                        out.push(16);
                        out.extend_from_slice(a);
                    }
                }
                Step::List(k, ends, items) => {
                    let items = row_items(ends, items, row);
                    if !items.is_empty() {
                        k.write(out);
                        varint(items.iter().map(|&v| varint_len(u64::from(v))).sum::<usize>() as u64, out);
                        items.iter().for_each(|&v| varint(u64::from(v), out));
                    }
                }
                Step::Large(k, ends, items) => {
                    // Four words per community, low first: LD2, LD1, ASN, 0.
                    for c in row_items(ends, items, row).chunks_exact(4) {
                        let parts = [(1, c[2]), (2, c[1]), (3, c[0])];
                        let len: usize =
                            parts.iter().filter(|p| p.1 != 0).map(|&(_, v)| 1 + varint_len(u64::from(v))).sum();
                        k.write(out);
                        varint(len as u64, out);
                        parts.iter().for_each(|&(n, v)| scalar(n, u64::from(v), out));
                    }
                }
                Step::Exporter(k, a) => {
                    if exporter_record == 0 && a == ExporterAttr::Name {
                        // Unknown: named by its address, as in the store.
                        let Some(at) = self.exporter else { continue };
                        let address: [u8; 16] = columns.fixed(at, row).try_into().unwrap_or([0; 16]);
                        string(k, &addr_to_ip(&address).to_string(), out);
                    } else {
                        string(k, exporter_text(exporter, a), out);
                    }
                }
                Step::Interface(k, side, a) => {
                    let i = interfaces[side];
                    let v = match a {
                        IfAttr::Speed => u64::from(i.speed),
                        IfAttr::Boundary => i.boundary as u64,
                        _ => {
                            string(k, interface_text(i, a), out);
                            continue;
                        }
                    };
                    if v != 0 {
                        k.write(out);
                        varint(v, out);
                    }
                }
                Step::Net(k, side, a) => string(k, networks.text(nets[side], a), out),
            }
        }
    }
}

/// One field's work for a batch (`FlowProto::plan`).
#[derive(Clone, Copy)]
enum Step<'a> {
    /// An integer column: its bytes and width.
    Int(Key, &'a [u8], usize),
    Address(Key, &'a [u8]),
    /// A list column: its rows' ends and items.
    List(Key, &'a [u64], &'a [u32]),
    Large(Key, &'a [u64], &'a [u32]),
    Exporter(Key, ExporterAttr),
    /// An input (0) or output (1) interface's attribute.
    Interface(Key, usize, IfAttr),
    /// The source (0) or destination (1) network's attribute.
    Net(Key, usize, NetAttr),
}

/// A field's key (number and wire type) as its varint bytes.
#[derive(Clone, Copy)]
struct Key([u8; 2], bool);

impl Key {
    fn new(number: u32, kind: ColumnType) -> Key {
        let wire = match kind {
            ColumnType::Address | ColumnType::ArrayUInt32 | ColumnType::ArrayUInt128 | ColumnType::LowString => {
                LENGTH_DELIMITED
            }
            _ => VARINT,
        };
        // Field numbers stay below 2^11: two bytes at most.
        let v = u64::from(number) << 3 | wire;
        if v < 128 {
            Key([v as u8, 0], false)
        } else {
            Key([v as u8 | 0x80, (v >> 7) as u8], true)
        }
    }

    #[inline]
    fn write(self, out: &mut Vec<u8>) {
        out.push(self.0[0]);
        if self.1 {
            out.push(self.0[1]);
        }
    }
}

/// Row `row`'s items of an array column.
fn row_items<'a>(ends: &[u64], items: &'a [u32], row: usize) -> &'a [u32] {
    let start = if row == 0 { 0 } else { ends.get(row - 1).copied().unwrap_or(0) as usize };
    let end = ends.get(row).copied().unwrap_or(0) as usize;
    items.get(start..end).unwrap_or(&[])
}

/// A varint field, left out when 0 (proto3's default).
fn scalar(number: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        key(number, VARINT, out);
        varint(v, out);
    }
}

/// A string field, left out when empty.
fn string(k: Key, s: &str, out: &mut Vec<u8>) {
    if !s.is_empty() {
        k.write(out);
        varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

fn key(number: u32, wire: u64, out: &mut Vec<u8>) {
    varint(u64::from(number) << 3 | wire, out);
}

/// Protobuf's varint: LEB128, as Native's VarUInt.
fn varint(v: u64, out: &mut Vec<u8>) {
    crate::columns::write_varuint(v, out);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// FNV-1a, 64 bits: a stable hash of the schema text.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn proto_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::UInt8 | ColumnType::UInt16 | ColumnType::UInt32 | ColumnType::DateTime => "uint32",
        ColumnType::UInt64 | ColumnType::DateTimeMs | ColumnType::Mac | ColumnType::RecordId => "uint64",
        ColumnType::Address => "bytes",
        ColumnType::ArrayUInt32 => "repeated uint32",
        ColumnType::ArrayUInt128 => "repeated LargeCommunity",
        ColumnType::LowString => "string",
        ColumnType::Boundary => "Boundary",
    }
}

fn schema_text(fields: &[ProtoField]) -> String {
    let mut t = String::from(
        "// Enriched flows from Weir: length-delimited FlowMessage records, many\n\
         // to a Kafka record, on the topic <kafka.enriched.topic>-<hash of this text>.\n\
         // Each field is a column of the raw table `flows`, with its values.\n\
         syntax = \"proto3\";\npackage weir;\n\n",
    );
    t.push_str(&format!("message {MESSAGE} {{\n"));
    for f in fields {
        let note = match f.column.kind {
            ColumnType::DateTime => "  // seconds since the epoch",
            ColumnType::DateTimeMs => "  // milliseconds since the epoch",
            ColumnType::Address => "  // 16 bytes, IPv4 as ::ffff:a.b.c.d; absent: ::",
            ColumnType::Mac => "  // the MAC address in the low 48 bits",
            _ => "",
        };
        t.push_str(&format!("  {} {} = {};{note}\n", proto_type(f.column.kind), f.column.name, f.number));
    }
    if fields.iter().any(|f| f.column.kind == ColumnType::ArrayUInt128) {
        t.push_str(
            "\n  // A BGP large community: ASN:LocalData1:LocalData2.\n  message LargeCommunity {\n    \
             uint32 ASN = 1;\n    uint32 LocalData1 = 2;\n    uint32 LocalData2 = 3;\n  }\n",
        );
    }
    if fields.iter().any(|f| f.column.kind == ColumnType::Boundary) {
        t.push_str("\n  // An interface's boundary, ClickHouse's Enum8 names.\n  enum Boundary {\n    undefined = 0;\n    external = 1;\n    internal = 2;\n  }\n");
    }
    t.push_str("}\n");
    t
}

#[cfg(test)]
#[path = "flowproto_tests.rs"]
mod tests;
