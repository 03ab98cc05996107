//! A shard's flows column by column (struct of arrays), and ClickHouse's
//! **Native** format for them: the store's write path.
//!
//! A shard appends each flow to one buffer per stored column (allocated at
//! start, cleared and reused per batch), then `Columns::write_block` sorts
//! the rows by the raw table's ORDER BY key (`TimeReceived, ExporterAddress,
//! InIfIndex, OutIfIndex`) and writes one Native block, so the engine finds
//! the block already sorted and skips its own sort. chDB's streaming insert
//! and a ClickHouse server's HTTP insert (`INSERT ... FORMAT Native`) take
//! the same bytes. Enrichment's records are found then too
//! (`write_block_resolved`), once per run of sorted rows from the same
//! exporter and interfaces, and written as three record id columns; the
//! records themselves go to the records tables (`write_records_block`).
//!
//! Native, as `NativeInputFormat` reads it with server revision 0 (no block
//! info, no custom serialization byte): per block `VarUInt columns, VarUInt
//! rows`, then per column its name and type (each a VarUInt length and the
//! bytes) and its data: fixed-width integers little-endian (`DateTime` is
//! UInt32 seconds, `DateTime64(3)` Int64 milliseconds), `IPv6` and
//! `FixedString(16)` 16 bytes in network order, `Array(UInt32)` the
//! cumulative end offset of each row (UInt64) then the items,
//! `LowCardinality(String)` (enrichment's strings in the consolidated
//! tables, written from the summed rows' records) its keys' version (UInt64 1), flags (index width, keys
//! included), the dictionary (String: VarUInt length, bytes) and an index
//! per row, `Enum8` one byte. A stream is blocks one after the other.
//!
//! Blocks carry the modern type names; `retype` rewrites them for a server
//! that names the same bytes differently (ClickHouse 18.16: `FixedString(16)`
//! for `IPv6`, `UInt64` for `DateTime64(3)`), and writes each
//! `LowCardinality(String)` out as a plain `String` for a server without it. A field a flow does not carry
//! is the type's zero, as ClickHouse's own default would be.

use std::collections::HashMap;
use std::sync::Arc;

use crate::enrich::bmp::Attrs;
use crate::enrich::flows::Enriched;
use crate::enrich::metadata::{ExporterInfo, InterfaceInfo, Meta, NewRecords, Snapshot};
use crate::enrich::networks::{NetAttr, Networks};
use crate::flow::{addr_to_ip, Addr, Field, FlowRecord, Value};
use crate::schema::{record_table_columns, Column, ColumnType, Dialect, ExporterAttr, IfAttr, RouteAttr, Source};
use crate::wire::state::KeyHash;

/// The dialect blocks are written in: every modern type.
pub const MODERN: Dialect = Dialect {
    ipv6: true,
    ttl: true,
    codecs: true,
    datetime64: true,
    modify_order_by: true,
    ttl_only_drop_parts: true,
    merge_selector_base: true,
    merge_cap: true,
    compact_parts: true,
    low_cardinality: true,
    join_get: true,
    uint128: true,
};

/// `LowCardinality` in Native: the keys' serialization version (shared
/// dictionaries with additional keys), and per block the flags saying the
/// keys come with the block.
const LOW_CARDINALITY_VERSION: u64 = 1;
const LOW_CARDINALITY_ADDITIONAL_KEYS: u64 = (1 << 9) | (1 << 10);

/// One column's values.
#[derive(Clone, Debug)]
enum Data {
    /// `width` bytes per row, as Native lays them out.
    Fixed(Vec<u8>),
    /// Per row the end offset into `items`, in 32-bit words
    /// (`array_words` to an element, low word first as Native lays it out).
    Array { ends: Vec<u64>, items: Vec<u32> },
    /// The store ids of the rows' records of a kind (`Source::RecordId`),
    /// written from `Columns::records` and the snapshot: no buffer of its own.
    RecordId(usize),
}

/// Where the sort key's columns are in the layout.
#[derive(Clone, Copy, Debug)]
struct KeyColumns {
    time: usize,
    exporter: usize,
    in_if: usize,
    out_if: usize,
}

/// A batch of flows as columns: the stored columns' buffers, reused.
#[derive(Clone, Debug)]
pub struct Columns {
    layout: Vec<Column>,
    data: Vec<Data>,
    rows: usize,
    key: KeyColumns,
    /// Sort scratch, reused: the rows in key order, the radix sort's
    /// (packed key, row) pairs, and the wide keys when they do not pack.
    rows_sorted: Vec<u32>,
    packed: [Vec<(u64, u32)>; 2],
    wide: Vec<(u128, u128)>,
    exporters: Vec<u128>,
    /// Per row, its exporter's, input and output interfaces' records.
    records: [Vec<u32>; 3],
    /// Per row, its source and destination networks' attribute sets
    /// (`push_enriched`; rows pushed without have none).
    nets: [Vec<u32>; 2],
    /// The networks table the sets are from (a shard hands its rows over
    /// before it takes a new one: `set_networks`).
    networks: Arc<Networks>,
    /// Where `push_enriched` writes its values over the flow's:
    /// SamplingRate, SrcAS, DstAS, SrcNetMask, DstNetMask.
    patched: [usize; 5],
    /// Where `push_enriched` writes the routes' lists (`ROUTED`), when
    /// stored; DstASPath and DstCommunities when the flow has none.
    routed: [usize; 5],
    /// Where `push_enriched` writes the destination route's next hop over
    /// the flow's (`Enriched::route_next_hop`), when NextHop is stored.
    next_hop: usize,
    /// How `push` copies the flow's fields into the layout's first
    /// columns (those that come from the flow; the record ids follow).
    plan: PushPlan,
    /// What the records say, as of the last `set_snapshot`.
    snapshot: Arc<Snapshot>,
}

/// Which records a shard has handed over to the store (by record id, per
/// records table), so that each goes once per shard and run. The
/// networks' are by record of the table in use, cleared with it.
#[derive(Clone, Debug, Default)]
pub struct RecordsSent([Vec<bool>; 3]);

impl RecordsSent {
    /// Forgets the network records (a new networks table numbers its own).
    pub fn clear_networks(&mut self) {
        self.0[2].clear();
    }
}

/// Bytes one row of `kind` takes in a fixed-width column.
pub(crate) fn width(kind: ColumnType) -> usize {
    match kind {
        ColumnType::UInt8 => 1,
        ColumnType::UInt16 => 2,
        ColumnType::UInt32 | ColumnType::DateTime => 4,
        ColumnType::UInt64 | ColumnType::DateTimeMs | ColumnType::Mac | ColumnType::RecordId => 8,
        ColumnType::Address => 16,
        ColumnType::ArrayUInt32 | ColumnType::ArrayUInt128 | ColumnType::LowString => 0,
        ColumnType::Boundary => 1,
    }
}

/// The columns a route's lists go to, in `Columns::routed`'s order.
const ROUTED: [Source; 5] = [
    Source::Flow(Field::DstASPath),
    Source::Flow(Field::DstCommunities),
    Source::DstRoute(RouteAttr::LargeCommunities),
    Source::SrcRoute(RouteAttr::Communities),
    Source::SrcRoute(RouteAttr::LargeCommunities),
];

/// 32-bit words to an element of an array column of `kind`.
fn array_words(kind: ColumnType) -> usize {
    if kind == ColumnType::ArrayUInt128 {
        4
    } else {
        1
    }
}

/// A large community as the 4 words of its `UInt128`, low first:
/// `ASN << 64 | LD1 << 32 | LD2`.
fn large_words(c: &[u32; 3]) -> [u32; 4] {
    [c[2], c[1], c[0], 0]
}

/// How `Columns::push` copies a flow's fields: the flow's columns grouped
/// by how a value is written (column, field index), so that each group is
/// a loop without a branch per column, over the numbers the flow gives in
/// one pass (`FlowRecord::numbers`). (A loop over the columns that asked
/// the flow for each field's typed value, then matched on the column's
/// type and width, ran 1 138 instructions per flow of the benchmark mix;
/// this, 918: perf/RESULTS.md, 2026-12-03.)
#[derive(Clone, Debug, Default)]
struct PushPlan {
    u8s: Vec<(usize, usize)>,
    u16s: Vec<(usize, usize)>,
    /// Saturated at `u32::MAX`.
    u32s: Vec<(usize, usize)>,
    /// The integers, and MAC addresses (their 48 bits as a number).
    u64s: Vec<(usize, usize)>,
    /// `DateTime`: seconds of the nanoseconds, saturated.
    seconds: Vec<(usize, usize)>,
    /// `DateTime64(3)`: milliseconds of the nanoseconds.
    millis: Vec<(usize, usize)>,
    addresses: Vec<(usize, Field)>,
    /// Array columns (MPLSLabels, DstASPath, DstCommunities): the lists.
    lists: Vec<(usize, Field)>,
}

impl PushPlan {
    fn new(layout: &[Column]) -> PushPlan {
        let mut plan = PushPlan::default();
        // The flow's columns come first (the catalog's order); the record
        // ids after them have no buffer.
        for (column, c) in layout.iter().enumerate() {
            let Source::Flow(field) = c.source else { break };
            let i = field as usize;
            match c.kind {
                ColumnType::UInt8 => plan.u8s.push((column, i)),
                ColumnType::UInt16 => plan.u16s.push((column, i)),
                ColumnType::UInt32 => plan.u32s.push((column, i)),
                ColumnType::UInt64 | ColumnType::Mac => plan.u64s.push((column, i)),
                ColumnType::DateTime => plan.seconds.push((column, i)),
                ColumnType::DateTimeMs => plan.millis.push((column, i)),
                ColumnType::Address => plan.addresses.push((column, field)),
                ColumnType::ArrayUInt32 | ColumnType::ArrayUInt128 => plan.lists.push((column, field)),
                // No flow field has these types (they are enrichment's).
                ColumnType::LowString | ColumnType::Boundary | ColumnType::RecordId => {}
            }
        }
        plan
    }

    #[inline]
    fn push(&self, flow: &FlowRecord, data: &mut [Data]) {
        let numbers = flow.numbers();
        let number = |i: usize| flow.number(&numbers, i);
        fn put<const W: usize>(data: &mut [Data], column: usize, bytes: [u8; W]) {
            if let Some(Data::Fixed(out)) = data.get_mut(column) {
                out.extend_from_slice(&bytes);
            }
        }
        for &(column, i) in &self.u8s {
            put(data, column, [number(i) as u8]);
        }
        for &(column, i) in &self.u16s {
            put(data, column, (number(i) as u16).to_le_bytes());
        }
        for &(column, i) in &self.u32s {
            put(data, column, saturate_u32(number(i)).to_le_bytes());
        }
        for &(column, i) in &self.u64s {
            put(data, column, number(i).to_le_bytes());
        }
        for &(column, i) in &self.seconds {
            put(data, column, saturate_u32(number(i) / 1_000_000_000).to_le_bytes());
        }
        for &(column, i) in &self.millis {
            put(data, column, (number(i) / 1_000_000).to_le_bytes());
        }
        for &(column, field) in &self.addresses {
            put(data, column, flow.address(field));
        }
        for &(column, field) in &self.lists {
            if let Some(Data::Array { ends, items }) = data.get_mut(column) {
                if let Some(Value::List(list)) = flow.value(field) {
                    items.extend_from_slice(list);
                }
                ends.push(items.len() as u64);
            }
        }
    }
}

impl Columns {
    /// Buffers for `layout`'s stored columns (the schema's columns, which
    /// always hold the sort key's; the metadata columns are not in a raw
    /// block: `Column::stored`), sized for `rows` rows of fixed-width data.
    pub fn new(layout: &[Column], rows: usize) -> Columns {
        let layout: Vec<Column> = layout.iter().filter(|c| c.stored()).copied().collect();
        let data = layout
            .iter()
            .map(|c| match (c.source, c.kind) {
                (_, ColumnType::ArrayUInt32 | ColumnType::ArrayUInt128) => {
                    Data::Array { ends: Vec::with_capacity(rows), items: Vec::new() }
                }
                (Source::RecordId(kind), _) => Data::RecordId(kind),
                (_, kind) => Data::Fixed(Vec::with_capacity(rows * width(kind))),
            })
            .collect();
        let at = |field: Field| layout.iter().position(|c| c.source == Source::Flow(field)).unwrap_or(usize::MAX);
        let key = KeyColumns {
            time: at(Field::TimeReceived),
            exporter: at(Field::ExporterAddress),
            in_if: at(Field::InIfIndex),
            out_if: at(Field::OutIfIndex),
        };
        Columns {
            data,
            rows: 0,
            key,
            rows_sorted: Vec::new(),
            packed: [Vec::new(), Vec::new()],
            wide: Vec::new(),
            exporters: Vec::new(),
            records: std::array::from_fn(|_| Vec::with_capacity(rows)),
            nets: std::array::from_fn(|_| Vec::with_capacity(rows)),
            networks: Arc::new(Networks::default()),
            patched: [Field::SamplingRate, Field::SrcAS, Field::DstAS, Field::SrcNetMask, Field::DstNetMask]
                .map(|f| layout.iter().position(|c| c.source == Source::Flow(f)).unwrap_or(usize::MAX)),
            routed: ROUTED.map(|s| layout.iter().position(|c| c.source == s).unwrap_or(usize::MAX)),
            next_hop: layout.iter().position(|c| c.source == Source::Flow(Field::NextHop)).unwrap_or(usize::MAX),
            plan: PushPlan::new(&layout),
            layout,
            snapshot: Arc::new(Snapshot::empty(KeyHash::default())),
        }
    }

    /// The snapshot the record ids are written from (the newest the
    /// shard has: records keep their ids, so it serves older rows too).
    pub fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = snapshot;
    }

    /// The networks table the rows' sets are from, from now on (the rows
    /// held must be written first).
    pub fn set_networks(&mut self, networks: Arc<Networks>) {
        self.networks = networks;
    }

    /// The records the rows point to that `sent` does not hold yet, for
    /// the store's records tables; `sent` then holds them.
    pub fn new_records(&self, sent: &mut RecordsSent, out: &mut NewRecords) {
        let bits = &mut sent.0[2];
        for &set in self.nets.iter().flatten() {
            let record = self.networks.set(set).record as usize;
            if record == 0 || bits.get(record).copied().unwrap_or(false) {
                continue;
            }
            if bits.len() <= record {
                bits.resize(record + 1, false);
            }
            bits[record] = true;
            out.networks.push((self.networks.stored_ids[record], self.networks.info(record as u32)));
        }
        for (kind, records) in self.records.iter().enumerate() {
            let table = usize::from(kind > 0);
            let bits = &mut sent.0[table];
            for &r in records {
                let i = r as usize;
                if bits.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let id = self.snapshot.stored_id(kind, r);
                if id == 0 {
                    continue;
                }
                if bits.len() <= i {
                    bits.resize(i + 1, false);
                }
                bits[i] = true;
                match table {
                    0 => out.exporters.push((id, self.snapshot.exporter_records[i].clone())),
                    _ => out.interfaces.push((id, self.snapshot.interface_records[i].clone())),
                }
            }
        }
    }

    pub fn layout(&self) -> &[Column] {
        &self.layout
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes of column data held (about the Native block's size).
    pub fn bytes(&self) -> usize {
        self.data
            .iter()
            .map(|d| match d {
                Data::Fixed(b) => b.len(),
                Data::Array { ends, items } => ends.len() * 8 + items.len() * 4,
                Data::RecordId(_) => self.rows * 8,
            })
            .sum()
    }

    /// The last row's `W` bytes in fixed-width column `column` (zeros for
    /// an array column, an unknown index or no rows).
    #[inline(always)]
    pub fn last_fixed<const W: usize>(&self, column: usize) -> [u8; W] {
        match self.data.get(column) {
            Some(Data::Fixed(b)) => b.last_chunk::<W>().copied().unwrap_or([0; W]),
            _ => [0; W],
        }
    }

    /// Forgets the rows, keeping the buffers.
    pub fn clear(&mut self) {
        for d in &mut self.data {
            match d {
                Data::Fixed(b) => b.clear(),
                Data::Array { ends, items } => {
                    ends.clear();
                    items.clear();
                }
                Data::RecordId(_) => {}
            }
        }
        self.records.iter_mut().for_each(Vec::clear);
        self.nets.iter_mut().for_each(Vec::clear);
        self.rows = 0;
    }

    /// Appends `flow` as one row. Its metadata records are found when the
    /// block is written (`write_block_resolved`): once per run of rows
    /// from the same exporter and interfaces, not per flow.
    #[inline]
    pub fn push(&mut self, flow: &FlowRecord) {
        self.plan.push(flow, &mut self.data);
        // The route columns no flow field fills (`ROUTED` past DstASPath
        // and DstCommunities).
        for &at in &self.routed[2..] {
            if let Some(Data::Array { ends, items }) = self.data.get_mut(at) {
                ends.push(items.len() as u64);
            }
        }
        self.rows += 1;
    }

    /// Appends `flow` as one row, with what enrichment completed: its
    /// sampling rate, AS numbers and masks written over the flow's, and
    /// its networks' sets.
    #[inline]
    /// `routes`: the source's and the destination's BGP routes, whose
    /// lists fill the route columns (DstASPath and DstCommunities only
    /// when the flow has none).
    pub fn push_enriched(&mut self, flow: &FlowRecord, e: &Enriched, routes: [Option<&Attrs>; 2]) {
        self.push(flow);
        if routes != [None, None] {
            self.push_routes(flow, routes);
        }
        if let (true, Some(route), Some(Data::Fixed(b))) =
            (e.route_next_hop, routes[1], self.data.get_mut(self.next_hop))
        {
            let end = b.len();
            if let Some(last) = b.get_mut(end.saturating_sub(16)..) {
                last.copy_from_slice(&route.next_hop);
            }
        }
        let values: [(u64, usize); 5] = [
            (u64::from(e.sampling_rate), 4),
            (u64::from(e.src_as), 4),
            (u64::from(e.dst_as), 4),
            (u64::from(e.src_mask), 1),
            (u64::from(e.dst_mask), 1),
        ];
        for (&at, (value, width)) in self.patched.iter().zip(values) {
            if let Some(Data::Fixed(b)) = self.data.get_mut(at) {
                let end = b.len();
                if let Some(last) = b.get_mut(end.saturating_sub(width)..) {
                    last.copy_from_slice(&value.to_le_bytes()[..width]);
                }
            }
        }
        // Rows pushed without enrichment before have no sets: none.
        for (nets, set) in self.nets.iter_mut().zip([e.src_net, e.dst_net]) {
            nets.resize(self.rows - 1, 0);
            nets.push(set);
        }
    }

    fn push_routes(&mut self, flow: &FlowRecord, [src, dst]: [Option<&Attrs>; 2]) {
        for (i, &at) in self.routed.iter().enumerate() {
            let route = if i < 3 { dst } else { src };
            let (Some(route), Some(Data::Array { ends, items })) = (route, self.data.get_mut(at)) else {
                continue;
            };
            match i {
                0 if !flow.has(Field::DstASPath) => items.extend_from_slice(&route.as_path),
                1 if !flow.has(Field::DstCommunities) => items.extend_from_slice(&route.communities),
                3 => items.extend_from_slice(&route.communities),
                2 | 4 => items.extend(route.large_communities.iter().flat_map(large_words)),
                _ => {}
            }
            if let Some(end) = ends.last_mut() {
                *end = items.len() as u64;
            }
        }
    }

    /// Row `row`'s bytes in fixed-width column `column` (layout order);
    /// empty for an array column or past the rows.
    #[inline]
    pub fn fixed(&self, column: usize, row: usize) -> &[u8] {
        match (self.data.get(column), self.layout.get(column)) {
            (Some(Data::Fixed(b)), Some(c)) => {
                let w = width(c.kind);
                b.get(row * w..row * w + w).unwrap_or(&[])
            }
            _ => &[],
        }
    }

    /// Fixed-width column `column`'s bytes and its width; empty for an
    /// array column.
    pub fn fixed_column(&self, column: usize) -> (&[u8], usize) {
        match (self.data.get(column), self.layout.get(column)) {
            (Some(Data::Fixed(b)), Some(c)) => (b, width(c.kind)),
            _ => (&[], 1),
        }
    }

    /// Array column `column`'s row ends and items (`items`); empty for
    /// another column.
    pub fn array_column(&self, column: usize) -> (&[u64], &[u32]) {
        match self.data.get(column) {
            Some(Data::Array { ends, items }) => (ends, items),
            _ => (&[], &[]),
        }
    }

    /// Row `row`'s exporter (0), input (1) or output (2) interface record,
    /// once the block is written (`write_block_resolved`).
    #[inline]
    pub fn record(&self, kind: usize, row: usize) -> u32 {
        self.records.get(kind).and_then(|r| r.get(row)).copied().unwrap_or(0)
    }

    /// Row `row`'s source (0) or destination (1) network set.
    #[inline]
    pub fn net(&self, side: usize, row: usize) -> u32 {
        self.nets.get(side).and_then(|n| n.get(row)).copied().unwrap_or(0)
    }

    /// The records snapshot the rows' records are from.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The last row's source and destination networks' sets.
    #[inline]
    pub fn last_nets(&self) -> [u32; 2] {
        [self.nets[0].last().copied().unwrap_or(0), self.nets[1].last().copied().unwrap_or(0)]
    }

    /// Whether a stored column takes a route's attributes (DstASPath,
    /// DstCommunities, the large communities, SrcCommunities).
    pub fn wants_routes(&self) -> bool {
        self.routed.iter().any(|&at| at != usize::MAX)
    }

    /// The networks table in use.
    pub fn networks(&self) -> &Arc<Networks> {
        &self.networks
    }

    /// Appends the rows to `out` as one Native block sorted by the raw
    /// table's key, with `dialect`'s type names, and no metadata records.
    /// Whether they needed sorting.
    pub fn write_block(&mut self, dialect: &Dialect, out: &mut Vec<u8>) -> bool {
        self.write_block_resolved(true, dialect, out, &mut |_, _, _, _| Meta::default())
    }

    /// Appends the rows to `out` as one Native block in the order they
    /// came (for segment files: no engine sorts them).
    pub fn write_block_as_pushed(&mut self, dialect: &Dialect, out: &mut Vec<u8>) {
        self.write_block_resolved(false, dialect, out, &mut |_, _, _, _| Meta::default());
    }

    /// `write_block` (`sort`) or `write_block_as_pushed`, the rows'
    /// records from `resolve(exporter, in_if, out_if, rows)`, called once
    /// per run of `rows` rows (in block order) from the same exporter and
    /// interfaces: sorted by the raw key, a batch's flows come in runs of
    /// hundreds, so enrichment costs a lookup per run, not per flow.
    /// Whether the rows needed sorting.
    pub fn write_block_resolved(
        &mut self,
        sort: bool,
        dialect: &Dialect,
        out: &mut Vec<u8>,
        resolve: &mut dyn FnMut(&Addr, u32, u32, u32) -> Meta,
    ) -> bool {
        let in_order = !sort || self.sort();
        self.resolve(in_order, resolve);
        self.write(in_order, dialect, out);
        !in_order
    }

    /// Fills the rows' records, a run at a time (block order: the rows
    /// as pushed when `in_order`, else `rows_sorted`).
    fn resolve(&mut self, in_order: bool, resolve: &mut dyn FnMut(&Addr, u32, u32, u32) -> Meta) {
        let n = self.rows;
        for r in &mut self.records {
            r.clear();
            r.resize(n, 0);
        }
        let key = SortKey::of(self.key, &self.data);
        let row_at = |i: usize| if in_order { i } else { self.rows_sorted[i] as usize };
        let of = |row: usize| (key.exporter(row), key.in_if(row), key.out_if(row));
        let mut start = 0;
        while start < n {
            let first = of(row_at(start));
            let mut end = start + 1;
            while end < n && of(row_at(end)) == first {
                end += 1;
            }
            let meta = resolve(&first.0.to_be_bytes(), first.1, first.2, (end - start) as u32);
            for i in start..end {
                let row = row_at(i);
                self.records[0][row] = meta.exporter;
                self.records[1][row] = meta.in_if;
                self.records[2][row] = meta.out_if;
            }
            start = end;
        }
    }

    /// The block, rows in `order` unless `sorted` (then as they are).
    fn write(&mut self, sorted: bool, dialect: &Dialect, out: &mut Vec<u8>) {
        write_varuint(self.layout.len() as u64, out);
        write_varuint(self.rows as u64, out);
        for (c, d) in self.layout.iter().zip(&self.data) {
            write_string(c.name.as_bytes(), out);
            write_string(dialect.type_name(c.kind).as_bytes(), out);
            match d {
                Data::Fixed(b) if sorted => out.extend_from_slice(b),
                Data::Fixed(b) => match width(c.kind) {
                    1 => gather::<1>(b, &self.rows_sorted, out),
                    2 => gather::<2>(b, &self.rows_sorted, out),
                    4 => gather::<4>(b, &self.rows_sorted, out),
                    8 => gather::<8>(b, &self.rows_sorted, out),
                    _ => gather::<16>(b, &self.rows_sorted, out),
                },
                // No lists in the block (routes not collected, say): every
                // offset is 0.
                Data::Array { items, .. } if items.is_empty() => out.resize(out.len() + self.rows * 8, 0),
                Data::Array { ends, items } => {
                    let words = array_words(c.kind);
                    let span = |row: usize| {
                        let start = if row == 0 { 0 } else { ends[row - 1] as usize };
                        start..ends[row] as usize
                    };
                    let mut end = 0u64;
                    for i in 0..self.rows {
                        let row = if sorted { i } else { self.rows_sorted[i] as usize };
                        end += (span(row).len() / words) as u64;
                        out.extend_from_slice(&end.to_le_bytes());
                    }
                    for i in 0..self.rows {
                        let row = if sorted { i } else { self.rows_sorted[i] as usize };
                        for v in &items[span(row)] {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                }
                Data::RecordId(kind) if *kind >= 3 => {
                    let (sets, networks) = (&self.nets[*kind - 3], &self.networks);
                    out.reserve(self.rows * 8);
                    let mut last = (0u32, 0u64);
                    for i in 0..self.rows {
                        let row = if sorted { i } else { self.rows_sorted[i] as usize };
                        let set = sets.get(row).copied().unwrap_or(0);
                        if set != last.0 {
                            last = (set, networks.stored_id(set));
                        }
                        out.extend_from_slice(&last.1.to_le_bytes());
                    }
                }
                Data::RecordId(kind) => {
                    let (records, ids) = (&self.records[*kind], &self.snapshot);
                    out.reserve(self.rows * 8);
                    // Rows come in runs of the same record: map each run once.
                    let mut last = (u32::MAX, 0u64);
                    for i in 0..self.rows {
                        let row = if sorted { i } else { self.rows_sorted[i] as usize };
                        let r = records.get(row).copied().unwrap_or(0);
                        if r != last.0 {
                            last = (r, ids.stored_id(*kind, r));
                        }
                        out.extend_from_slice(&last.1.to_le_bytes());
                    }
                }
            }
        }
    }

    /// Fills `rows_sorted` with the rows in key order (ties in arrival
    /// order); true when they already are.
    ///
    /// The key (TimeReceived, ExporterAddress, InIfIndex, OutIfIndex) is
    /// packed into 64 bits when it fits, as it does for a batch (seconds
    /// since the batch's first, the exporter's rank among the batch's
    /// exporters, the interfaces, each in as many bits as the batch needs),
    /// and sorted by a radix sort: 8-bit digits, as many passes as bits
    /// used (two or three for a typical batch). Otherwise the wide keys are
    /// compared.
    fn sort(&mut self) -> bool {
        let key = SortKey::of(self.key, &self.data);
        let n = self.rows;
        self.rows_sorted.clear();
        // The exporters of the batch, in order (a datagram's flows come
        // from one: look up only when it changes).
        let exporters = &mut self.exporters;
        exporters.clear();
        let mut last = None;
        let mut many = false;
        for row in 0..n {
            let a = key.exporter(row);
            if last != Some(a) {
                last = Some(a);
                if exporters.len() == 8192 {
                    exporters.sort_unstable();
                    exporters.dedup();
                    if exporters.len() > 4096 {
                        many = true;
                        break;
                    }
                }
                exporters.push(a);
            }
        }
        exporters.sort_unstable();
        exporters.dedup();
        let (mut t_min, mut t_max, mut i_max, mut o_max) = (u32::MAX, 0u32, 0u32, 0u32);
        for row in 0..n {
            let t = key.time(row);
            t_min = t_min.min(t);
            t_max = t_max.max(t);
            i_max = i_max.max(key.in_if(row));
            o_max = o_max.max(key.out_if(row));
        }
        let bits = |v: u64| 64 - v.leading_zeros();
        let (tb, eb) = (bits(u64::from(t_max.saturating_sub(t_min))), bits(exporters.len().saturating_sub(1) as u64));
        let (ib, ob) = (bits(u64::from(i_max)), bits(u64::from(o_max)));
        let total = tb + eb + ib + ob;
        if many || total > 64 {
            return self.sort_wide();
        }
        let [packed, scratch] = &mut self.packed;
        packed.clear();
        let mut last: Option<(u128, u64)> = None;
        for row in 0..n {
            let a = key.exporter(row);
            let rank = match last {
                Some((b, r)) if b == a => r,
                _ => {
                    let r = exporters.binary_search(&a).unwrap_or(0) as u64;
                    last = Some((a, r));
                    r
                }
            };
            let t = u64::from(key.time(row) - t_min);
            // Shifts by the total of the lower fields' bits (at most 64 in all).
            let packed_key = (((t << eb) | rank) << ib | u64::from(key.in_if(row))) << ob | u64::from(key.out_if(row));
            packed.push((if total == 0 { 0 } else { packed_key }, row as u32));
        }
        if packed.windows(2).all(|w| w[0].0 <= w[1].0) {
            return true;
        }
        scratch.clear();
        scratch.resize(n, (0, 0));
        let mut shift = 0;
        while shift < total {
            let mut counts = [0usize; 256];
            for &(key, _) in packed.iter() {
                counts[((key >> shift) & 0xff) as usize] += 1;
            }
            let mut at = 0;
            for c in counts.iter_mut() {
                let here = *c;
                *c = at;
                at += here;
            }
            for &(key, row) in packed.iter() {
                let digit = ((key >> shift) & 0xff) as usize;
                scratch[counts[digit]] = (key, row);
                counts[digit] += 1;
            }
            std::mem::swap(packed, scratch);
            shift += 8;
        }
        self.rows_sorted.extend(packed.iter().map(|&(_, row)| row));
        false
    }

    /// The rows sorted by their whole keys: two u128 words compared in
    /// turn, time and the exporter's first 96 bits, then the exporter's
    /// last 32, the interfaces and the row.
    fn sort_wide(&mut self) -> bool {
        let key = SortKey::of(self.key, &self.data);
        self.wide.clear();
        for row in 0..self.rows {
            let a = key.exporter(row);
            let high = (u128::from(key.time(row)) << 96) | (a >> 32);
            let low = ((a & 0xffff_ffff) << 96)
                | (u128::from(key.in_if(row)) << 64)
                | (u128::from(key.out_if(row)) << 32)
                | row as u128;
            self.wide.push((high, low));
        }
        if self.wide.windows(2).all(|w| w[0] <= w[1]) {
            return true;
        }
        self.wide.sort_unstable();
        self.rows_sorted.extend(self.wide.iter().map(|w| (w.1 & 0xffff_ffff) as u32));
        false
    }
}

/// The sort key's columns of a batch, read per row (0 where missing).
struct SortKey<'a> {
    time: &'a [u8],
    exporter: &'a [u8],
    in_if: &'a [u8],
    out_if: &'a [u8],
}

impl<'a> SortKey<'a> {
    fn of(k: KeyColumns, data: &'a [Data]) -> SortKey<'a> {
        let fixed = |i: usize| match data.get(i) {
            Some(Data::Fixed(b)) => b.as_slice(),
            _ => &[],
        };
        SortKey { time: fixed(k.time), exporter: fixed(k.exporter), in_if: fixed(k.in_if), out_if: fixed(k.out_if) }
    }

    #[inline(always)]
    fn u32_at(b: &[u8], row: usize) -> u32 {
        b.get(row * 4..row * 4 + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().unwrap_or_default()))
    }

    #[inline(always)]
    fn time(&self, row: usize) -> u32 {
        Self::u32_at(self.time, row)
    }

    /// The exporter's address as a number (network order: compares as the
    /// table's IPv6 column does).
    #[inline(always)]
    fn exporter(&self, row: usize) -> u128 {
        self.exporter.get(row * 16..row * 16 + 16).map_or(0, |s| u128::from_be_bytes(s.try_into().unwrap_or_default()))
    }

    #[inline(always)]
    fn in_if(&self, row: usize) -> u32 {
        Self::u32_at(self.in_if, row)
    }

    #[inline(always)]
    fn out_if(&self, row: usize) -> u32 {
        Self::u32_at(self.out_if, row)
    }
}

/// Scratch for writing metadata columns, kept between blocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct MetaScratch {
    /// Local number by record id (`u32::MAX`: not in this block), reset
    /// after each block.
    slot: Vec<u32>,
    /// Per kind (exporter, input, output interface): each row's local
    /// number, and the record of each local number.
    pub(crate) local: [Vec<u32>; 3],
    pub(crate) distinct: [Vec<u32>; 3],
    /// Unknown exporters' names (their address), by address.
    by_address: HashMap<u128, u32>,
    /// Per local number, its dictionary position in the column at hand.
    positions: Vec<u32>,
}

impl MetaScratch {
    /// Numbers the records of kind `kind` (given in block order) 0, 1, ...
    /// in order of first appearance: one table lookup per row, after
    /// which each column reads small arrays only.
    pub(crate) fn number(&mut self, kind: usize, records: impl Iterator<Item = u32>) {
        let (local, distinct) = (&mut self.local[kind], &mut self.distinct[kind]);
        local.clear();
        distinct.clear();
        for r in records {
            let i = r as usize;
            if self.slot.len() <= i {
                self.slot.resize(i + 1, u32::MAX);
            }
            if self.slot[i] == u32::MAX {
                self.slot[i] = distinct.len() as u32;
                distinct.push(r);
            }
            local.push(self.slot[i]);
        }
        for &r in distinct.iter() {
            self.slot[r as usize] = u32::MAX;
        }
    }
}

/// Writes a metadata column of kind `kind`'s rows, numbered by
/// `MetaScratch::number` (`address(i)`: row i's exporter): an interface's
/// speed (`UInt32`) or boundary (`Enum8`) as is, a string as
/// `LowCardinality(String)`: its dictionary, then an index per row. A row
/// of an unknown exporter (record 0) is named by its address.
pub(crate) fn write_meta_column(
    source: Source,
    kind: usize,
    address: impl Fn(usize) -> u128,
    snapshot: &Snapshot,
    scratch: &mut MetaScratch,
    out: &mut Vec<u8>,
) {
    let local = std::mem::take(&mut scratch.local[kind]);
    let distinct = std::mem::take(&mut scratch.distinct[kind]);
    write_meta(source, &local, &distinct, address, snapshot, scratch, out);
    scratch.local[kind] = local;
    scratch.distinct[kind] = distinct;
}

fn write_meta(
    source: Source,
    local: &[u32],
    distinct: &[u32],
    address: impl Fn(usize) -> u128,
    snapshot: &Snapshot,
    scratch: &mut MetaScratch,
    out: &mut Vec<u8>,
) {
    let n = local.len();
    let interface_attr = match source {
        Source::InIf(a) | Source::OutIf(a) => Some(a),
        _ => None,
    };
    match interface_attr {
        Some(IfAttr::Speed) => {
            let speeds: Vec<[u8; 4]> = distinct.iter().map(|&r| snapshot.interface(r).speed.to_le_bytes()).collect();
            out.reserve(n * 4);
            local.iter().for_each(|&l| out.extend_from_slice(&speeds[l as usize]));
            return;
        }
        Some(IfAttr::Boundary) => {
            let boundaries: Vec<u8> = distinct.iter().map(|&r| snapshot.interface(r).boundary as u8).collect();
            out.extend(local.iter().map(|&l| boundaries[l as usize]));
            return;
        }
        _ => {}
    }
    if n == 0 {
        return;
    }
    let text = |record: u32| -> &str {
        match source {
            Source::Exporter(a) => exporter_text(snapshot.exporter(record), a),
            Source::InIf(a) | Source::OutIf(a) => interface_text(snapshot.interface(record), a),
            Source::Flow(_)
            | Source::RecordId(_)
            | Source::SrcNet(_)
            | Source::DstNet(_)
            | Source::SrcRoute(_)
            | Source::DstRoute(_) => "",
        }
    };
    let mut dictionary: Vec<String> = Vec::new();
    let mut by_text: HashMap<String, u32> = HashMap::new();
    let mut position = |t: &str| -> u32 {
        if let Some(&p) = by_text.get(t) {
            return p;
        }
        let p = dictionary.len() as u32;
        dictionary.push(t.to_string());
        by_text.insert(t.to_string(), p);
        p
    };
    // Unknown exporters (record 0) are named row by row, by their address.
    let unknown =
        if source == Source::Exporter(ExporterAttr::Name) { distinct.iter().position(|&r| r == 0) } else { None };
    scratch.positions.clear();
    scratch.positions.extend(distinct.iter().map(|&r| position(text(r))));
    let mut by_row: Vec<(usize, u32)> = Vec::new();
    if let Some(u) = unknown {
        let mut last: Option<(u128, u32)> = None;
        for (i, _) in local.iter().enumerate().filter(|(_, &l)| l as usize == u) {
            let a = address(i);
            let p = match last {
                // Rows are sorted by time, then exporter: runs share it.
                Some((b, p)) if b == a => p,
                _ => match scratch.by_address.get(&a) {
                    Some(&p) => p,
                    None => {
                        let p = position(&addr_to_ip(&a.to_be_bytes()).to_string());
                        scratch.by_address.insert(a, p);
                        p
                    }
                },
            };
            last = Some((a, p));
            by_row.push((i, p));
        }
        scratch.by_address.clear();
    }
    let index_type = write_low_cardinality_head(&dictionary, n, out);
    let start = out.len();
    let positions = &scratch.positions;
    match index_type {
        // One string for every row: the indexes are all 0.
        0 if dictionary.len() == 1 => out.resize(start + n, 0),
        0 => out.extend(local.iter().map(|&l| positions[l as usize] as u8)),
        1 => local.iter().for_each(|&l| out.extend_from_slice(&(positions[l as usize] as u16).to_le_bytes())),
        _ => local.iter().for_each(|&l| out.extend_from_slice(&positions[l as usize].to_le_bytes())),
    }
    let width = 1usize << index_type;
    for (i, p) in by_row {
        let at = start + i * width;
        out[at..at + width].copy_from_slice(&p.to_le_bytes()[..width]);
    }
}

/// A `LowCardinality(String)` column up to its indexes: the keys' version,
/// the flags, the dictionary, the row count. Returns the index type (0, 1,
/// 2: indexes of 1, 2, 4 bytes), for the `rows` indexes that follow.
fn write_low_cardinality_head<T: AsRef<str>>(dictionary: &[T], rows: usize, out: &mut Vec<u8>) -> u64 {
    let index_type: u64 = match dictionary.len() {
        0..=256 => 0,
        257..=65_536 => 1,
        _ => 2,
    };
    out.reserve(32 + rows * (1 << index_type));
    out.extend_from_slice(&LOW_CARDINALITY_VERSION.to_le_bytes());
    out.extend_from_slice(&(index_type | LOW_CARDINALITY_ADDITIONAL_KEYS).to_le_bytes());
    out.extend_from_slice(&(dictionary.len() as u64).to_le_bytes());
    for t in dictionary {
        write_string(t.as_ref().as_bytes(), out);
    }
    out.extend_from_slice(&(rows as u64).to_le_bytes());
    index_type
}

/// Writes one `LowCardinality(String)` column of `texts` (a row each):
/// the dictionary of the distinct texts, then an index per row.
pub(crate) fn write_low_cardinality<'a>(texts: impl Iterator<Item = &'a str>, out: &mut Vec<u8>) {
    let mut dictionary: Vec<&str> = Vec::new();
    let mut positions: HashMap<&str, u32> = HashMap::new();
    let mut rows: Vec<u32> = Vec::new();
    let mut last: Option<(&str, u32)> = None;
    for t in texts {
        let p = match last {
            Some((l, p)) if std::ptr::eq(l, t) || l == t => p,
            _ => *positions.entry(t).or_insert_with(|| {
                dictionary.push(t);
                dictionary.len() as u32 - 1
            }),
        };
        last = Some((t, p));
        rows.push(p);
    }
    if rows.is_empty() {
        return;
    }
    match write_low_cardinality_head(&dictionary, rows.len(), out) {
        0 => out.extend(rows.iter().map(|&p| p as u8)),
        1 => rows.iter().for_each(|&p| out.extend_from_slice(&(p as u16).to_le_bytes())),
        _ => rows.iter().for_each(|&p| out.extend_from_slice(&p.to_le_bytes())),
    }
}

/// An exporter's attribute `a`.
pub(crate) fn exporter_text(e: &ExporterInfo, a: ExporterAttr) -> &str {
    match a {
        ExporterAttr::Name => &e.name,
        ExporterAttr::Group => &e.group,
        ExporterAttr::Role => &e.role,
        ExporterAttr::Site => &e.site,
        ExporterAttr::Region => &e.region,
        ExporterAttr::Tenant => &e.tenant,
    }
}

/// An interface's string attribute `a` (empty for speed and boundary).
pub(crate) fn interface_text(i: &InterfaceInfo, a: IfAttr) -> &str {
    match a {
        IfAttr::Name => &i.name,
        IfAttr::Description => &i.description,
        IfAttr::Provider => &i.provider,
        IfAttr::Connectivity => &i.connectivity,
        IfAttr::Speed | IfAttr::Boundary => "",
    }
}

/// A network's attribute `a`.
fn network_text(n: &crate::config::NetworkInfo, a: NetAttr) -> &str {
    match a {
        NetAttr::Name => &n.name,
        NetAttr::Role => &n.role,
        NetAttr::Site => &n.site,
        NetAttr::Region => &n.region,
        NetAttr::Tenant => &n.tenant,
        NetAttr::Country => &n.country,
        NetAttr::State => &n.state,
        NetAttr::City => &n.city,
    }
}

/// Appends records table `table`'s rows (`schema::RECORD_TABLES`: 0 the
/// exporters', 1 the interfaces') of `records` to `out` as one Native
/// block: `Id`, then the record's columns (`schema::record_table_columns`),
/// strings as `String` (the engine casts them to the table's
/// `LowCardinality`). Nothing when there are none.
pub fn write_records_block(records: &NewRecords, table: usize, out: &mut Vec<u8>) {
    let rows = match table {
        0 => records.exporters.len(),
        1 => records.interfaces.len(),
        _ => records.networks.len(),
    };
    if rows == 0 {
        return;
    }
    let attrs = record_table_columns(table);
    write_varuint(1 + attrs.len() as u64, out);
    write_varuint(rows as u64, out);
    write_string(b"Id", out);
    write_string(b"UInt64", out);
    let ids = (0..rows).map(|i| match table {
        0 => records.exporters[i].0,
        1 => records.interfaces[i].0,
        _ => records.networks[i].0,
    });
    ids.for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
    for (name, source, kind) in &attrs {
        write_string(name.as_bytes(), out);
        let type_name = if *kind == ColumnType::LowString { "String" } else { MODERN.type_name(*kind) };
        write_string(type_name.as_bytes(), out);
        for i in 0..rows {
            match *source {
                Source::Exporter(a) => write_string(exporter_text(&records.exporters[i].1, a).as_bytes(), out),
                Source::InIf(a) => {
                    let r = &records.interfaces[i].1;
                    match a {
                        IfAttr::Speed => out.extend_from_slice(&r.speed.to_le_bytes()),
                        IfAttr::Boundary => out.push(r.boundary as u8),
                        _ => write_string(interface_text(r, a).as_bytes(), out),
                    }
                }
                Source::SrcNet(a) => write_string(network_text(&records.networks[i].1, a).as_bytes(), out),
                _ => {}
            }
        }
    }
}

/// Appends the `W`-byte values of `column` in the order of `rows`.
///
/// The output is sized first and written through fixed-size chunks: a
/// `Vec<u8>` extended value by value reloads its length after each byte
/// store (a byte may alias it), a dependency per row. The rows are read
/// at random (the batch's arrival order against the key's): each value is
/// fetched 16 rows ahead.
fn gather<const W: usize>(column: &[u8], rows: &[u32], out: &mut Vec<u8>) {
    const AHEAD: usize = 16;
    let (values, _) = column.as_chunks::<W>();
    let start = out.len();
    out.resize(start + rows.len() * W, 0);
    let (slots, _) = out[start..].as_chunks_mut::<W>();
    for (i, (slot, &row)) in slots.iter_mut().zip(rows).enumerate() {
        if let Some(v) = rows.get(i + AHEAD).and_then(|&r| values.get(r as usize)) {
            crate::consolidate::prefetch(v);
        }
        if let Some(v) = values.get(row as usize) {
            *slot = *v;
        }
    }
}

#[inline(always)]
fn saturate_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

pub fn write_varuint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn write_string(s: &[u8], out: &mut Vec<u8>) {
    write_varuint(s.len() as u64, out);
    out.extend_from_slice(s);
}

/// A Native stream read back: per block, its rows and per column (name,
/// type, data bytes). Only the types Weir writes are known.
pub struct Block<'a> {
    pub rows: usize,
    pub columns: Vec<(&'a str, &'a str, &'a [u8])>,
}

/// Reads the blocks of a Native stream Weir wrote (the spool's, a test's).
pub fn read_blocks(mut s: &[u8]) -> Result<Vec<Block<'_>>, String> {
    let mut blocks = Vec::new();
    while !s.is_empty() {
        let ncols = read_varuint(&mut s)? as usize;
        let rows = read_varuint(&mut s)? as usize;
        if ncols == 0 {
            return Err("a block without columns (Weir writes none)".into());
        }
        let mut columns = Vec::with_capacity(ncols.min(256));
        for _ in 0..ncols {
            let name = read_string(&mut s)?;
            let kind = read_string(&mut s)?;
            let fixed = |width: usize| rows.checked_mul(width).ok_or_else(|| format!("column {name}: too many rows"));
            let len = match (fixed_width(kind), kind) {
                (Some(width), _) => fixed(width)?,
                (None, array) if array_width(array).is_some() => {
                    let width = array_width(array).unwrap_or(4);
                    let offsets = fixed(8)?;
                    let last = s.get(offsets.saturating_sub(8)..offsets).ok_or("Array offsets cut short")?;
                    let items = if rows == 0 { 0 } else { u64::from_le_bytes(last.try_into().unwrap_or_default()) };
                    let items =
                        usize::try_from(items).ok().and_then(|n| n.checked_mul(width)).ok_or("Array too long")?;
                    offsets.checked_add(items).ok_or("Array too long")?
                }
                (None, "LowCardinality(String)") if rows == 0 => 0,
                (None, "LowCardinality(String)") => {
                    low_cardinality(s, rows).map_err(|e| format!("column {name}: {e}"))?.0
                }
                (None, "String") => strings_len(s, rows).map_err(|e| format!("column {name}: {e}"))?,
                (None, other) => return Err(format!("column {name}: type {other} is not one Weir writes")),
            };
            let data = s.get(..len).ok_or_else(|| format!("column {name}: {len} bytes cut short"))?;
            s = &s[len..];
            columns.push((name, kind, data));
        }
        blocks.push(Block { rows, columns });
    }
    Ok(blocks)
}

/// Bytes per element of an array type Weir writes.
fn array_width(kind: &str) -> Option<usize> {
    match kind {
        "Array(UInt32)" => Some(4),
        "Array(UInt128)" | "Array(FixedString(16))" => Some(16),
        _ => None,
    }
}

/// Bytes per row of a fixed-width type Weir writes; `None` for an array
/// (or a type Weir does not write).
fn fixed_width(kind: &str) -> Option<usize> {
    match kind {
        "UInt8" => Some(1),
        "UInt16" => Some(2),
        "UInt32" | "DateTime" => Some(4),
        "UInt64" | "Int64" | "DateTime64(3)" => Some(8),
        "IPv6" | "FixedString(16)" => Some(16),
        k if k.starts_with("Enum8(") => Some(1),
        _ => None,
    }
}

/// A `LowCardinality(String)` column of `rows` rows at the start of `s`
/// (as `write_meta_column` writes it): its length, its dictionary and its
/// index width.
fn low_cardinality(s: &[u8], rows: usize) -> Result<(usize, Vec<&[u8]>, usize), String> {
    let mut at = 0;
    let u64_at = |at: &mut usize| -> Result<u64, String> {
        let v = s.get(*at..*at + 8).ok_or("LowCardinality cut short")?;
        *at += 8;
        Ok(u64::from_le_bytes(v.try_into().unwrap_or_default()))
    };
    if u64_at(&mut at)? != LOW_CARDINALITY_VERSION {
        return Err("LowCardinality keys of another version".into());
    }
    let flags = u64_at(&mut at)?;
    let width = match flags & 0xff {
        0 => 1,
        1 => 2,
        2 => 4,
        3 => 8,
        _ => return Err("LowCardinality index of an unknown width".into()),
    };
    if flags & (1 << 9) == 0 {
        return Err("LowCardinality without its keys".into());
    }
    let keys = u64_at(&mut at)?;
    let mut dictionary = Vec::new();
    for _ in 0..keys {
        let mut rest = s.get(at..).unwrap_or_default();
        let len = read_varuint(&mut rest)? as usize;
        let skipped = s.len() - at - rest.len();
        let key = rest.get(..len).ok_or("LowCardinality key cut short")?;
        dictionary.push(key);
        at += skipped + len;
    }
    if u64_at(&mut at)? != rows as u64 {
        return Err("LowCardinality rows differ from the block's".into());
    }
    let len = rows.checked_mul(width).and_then(|n| n.checked_add(at)).ok_or("LowCardinality too long")?;
    if len > s.len() {
        return Err("LowCardinality indexes cut short".into());
    }
    if !indexes_within(&s[at..len], width, keys) {
        return Err("LowCardinality index out of range".into());
    }
    Ok((len, dictionary, width))
}

/// Whether every `width`-byte index in `indexes` is below `keys`.
fn indexes_within(indexes: &[u8], width: usize, keys: u64) -> bool {
    indexes.chunks(width).all(|i| index_value(i) < keys)
}

/// A LowCardinality index: 1 to 8 bytes, little-endian.
fn index_value(index: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..index.len().min(8)].copy_from_slice(&index[..index.len().min(8)]);
    u64::from_le_bytes(v)
}

/// The length of `rows` `String` values at the start of `s`.
fn strings_len(s: &[u8], rows: usize) -> Result<usize, String> {
    let mut rest = s;
    for _ in 0..rows {
        let len = read_varuint(&mut rest)? as usize;
        rest = rest.get(len..).ok_or("String cut short")?;
    }
    Ok(s.len() - rest.len())
}

/// How many bytes from the start of `file` (a Native stream Weir wrote)
/// are whole blocks: what is left after a crash in the middle of a write
/// is cut there. Reads the headers and, for the variable-width columns
/// (`LowCardinality(String)`, `String`), what gives their length; the rest
/// of the data is skipped.
pub fn whole_blocks_len<R: std::io::Read + std::io::Seek>(file: &mut R) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let mut whole = 0u64;
    let mut at = 0u64;
    // One header field, or None at a cut (or anything Weir did not write).
    fn varuint<R: std::io::Read>(r: &mut R, at: &mut u64) -> Option<u64> {
        read_varuint(&mut Counted { inner: r, at }).ok()
    }
    fn string<R: std::io::Read>(r: &mut R, at: &mut u64, end: u64) -> Option<String> {
        let len = varuint(r, at)?;
        if len > end.saturating_sub(*at) {
            return None;
        }
        let mut b = vec![0u8; len as usize];
        r.read_exact(&mut b).ok()?;
        *at += len;
        String::from_utf8(b).ok()
    }
    'blocks: while at < end {
        let Some(columns) = varuint(file, &mut at) else { break };
        let Some(rows) = varuint(file, &mut at) else { break };
        if columns == 0 {
            // Weir writes no block without columns: zeros past the last
            // block (a direct write's padding, not yet cut off) end them.
            break;
        }
        for _ in 0..columns {
            let (Some(_name), Some(kind)) = (string(file, &mut at, end), string(file, &mut at, end)) else {
                break 'blocks;
            };
            let len = match (fixed_width(&kind), kind.as_str()) {
                (Some(w), _) => rows.checked_mul(w as u64),
                (None, "LowCardinality(String)" | "String") if rows == 0 => Some(0),
                (None, "LowCardinality(String)") => {
                    // Variable: read the column to find its end, checking
                    // what `read_blocks` checks.
                    let mut head = [0u8; 24];
                    if at.saturating_add(24) > end || file.read_exact(&mut head).is_err() {
                        break 'blocks;
                    }
                    at += 24;
                    let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap_or_default());
                    let (version, flags, keys) = (word(0), word(1), word(2));
                    if version != LOW_CARDINALITY_VERSION || flags & 0xff > 3 || flags & (1 << 9) == 0 {
                        break 'blocks;
                    }
                    let width = 1u64 << (flags & 3);
                    for _ in 0..keys {
                        let Some(len) = varuint(file, &mut at) else { break 'blocks };
                        if len > end.saturating_sub(at) {
                            break 'blocks;
                        }
                        at += len;
                        file.seek(SeekFrom::Start(at))?;
                    }
                    let mut count = [0u8; 8];
                    if at.saturating_add(8) > end || file.read_exact(&mut count).is_err() {
                        break 'blocks;
                    }
                    at += 8;
                    let len = rows.saturating_mul(width);
                    if u64::from_le_bytes(count) != rows || len > end.saturating_sub(at) {
                        break 'blocks;
                    }
                    let mut indexes = vec![0u8; len as usize];
                    file.read_exact(&mut indexes)?;
                    if !indexes_within(&indexes, width as usize, keys) {
                        break 'blocks;
                    }
                    Some(len)
                }
                (None, "String") => {
                    for _ in 0..rows {
                        let Some(len) = varuint(file, &mut at) else { break 'blocks };
                        if len > end.saturating_sub(at) {
                            break 'blocks;
                        }
                        at += len;
                        file.seek(SeekFrom::Start(at))?;
                    }
                    Some(0)
                }
                (None, array) if rows == 0 && array_width(array).is_some() => Some(0),
                (None, array) if array_width(array).is_some() => {
                    let offsets = rows.saturating_mul(8);
                    if at.saturating_add(offsets) > end {
                        break 'blocks;
                    }
                    file.seek(SeekFrom::Start(at + offsets - 8))?;
                    let mut last = [0u8; 8];
                    file.read_exact(&mut last)?;
                    let width = array_width(array).unwrap_or(4) as u64;
                    u64::from_le_bytes(last).checked_mul(width).and_then(|items| items.checked_add(offsets))
                }
                _ => None,
            };
            match len.and_then(|len| at.checked_add(len)) {
                Some(next) if next <= end => {
                    at = next;
                    file.seek(SeekFrom::Start(at))?;
                }
                _ => break 'blocks,
            }
        }
        whole = at;
    }
    Ok(whole)
}

/// A zstd frame's magic number (RFC 8878, 3.1.1), little-endian.
const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// How many bytes from the start of `file` (zstd frames, as compressed
/// segment files hold them: one per batch) are whole frames: what a crash
/// left after them is cut there. Reads the frame and block headers (RFC
/// 8878, 3.1.1) and skips the blocks' contents; it does not decompress.
/// Anything but a zstd frame (a skippable frame, zeros) ends the whole
/// frames, as Weir writes none.
pub fn whole_zstd_frames_len<R: std::io::Read + std::io::Seek>(file: &mut R) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    let end = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    let mut whole = 0u64;
    // Reads `N` bytes at `at`, or None past the end.
    fn bytes<const N: usize, R: std::io::Read>(file: &mut R, at: &mut u64, end: u64) -> Option<[u8; N]> {
        if at.saturating_add(N as u64) > end {
            return None;
        }
        let mut b = [0u8; N];
        file.read_exact(&mut b).ok()?;
        *at += N as u64;
        Some(b)
    }
    'frames: while whole < end {
        let mut at = whole;
        let Some(magic) = bytes::<4, _>(file, &mut at, end) else { break };
        let Some([descriptor]) = bytes::<1, _>(file, &mut at, end) else { break };
        if u32::from_le_bytes(magic) != ZSTD_MAGIC || descriptor & 0x08 != 0 {
            break;
        }
        let single_segment = descriptor & 0x20 != 0;
        let window = u64::from(!single_segment);
        let dictionary = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
        let content_size = match descriptor >> 6 {
            0 => u64::from(single_segment),
            flag => [0, 2, 4, 8][usize::from(flag)],
        };
        let checksum = if descriptor & 0x04 != 0 { 4 } else { 0 };
        at += window + dictionary + content_size;
        loop {
            if at > end {
                break 'frames;
            }
            file.seek(SeekFrom::Start(at))?;
            let Some(header) = bytes::<3, _>(file, &mut at, end) else { break 'frames };
            let header = u32::from_le_bytes([header[0], header[1], header[2], 0]);
            let (last, kind, size) = (header & 1 != 0, (header >> 1) & 3, u64::from(header >> 3));
            at += match kind {
                0 | 2 => size,
                1 => 1,
                _ => break 'frames,
            };
            if last {
                break;
            }
        }
        at += checksum;
        if at > end {
            break;
        }
        whole = at;
        file.seek(SeekFrom::Start(whole))?;
    }
    Ok(whole)
}

/// `stream` with each column's type named as `dialect` names it (the
/// bytes are the same). Errors when it does not parse.
pub fn retype(stream: &[u8], dialect: &Dialect) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(stream.len());
    for block in read_blocks(stream)? {
        write_varuint(block.columns.len() as u64, &mut out);
        write_varuint(block.rows as u64, &mut out);
        for (name, kind, data) in block.columns {
            if kind == "LowCardinality(String)" && !dialect.low_cardinality {
                // The same strings, each written out in full.
                write_string(name.as_bytes(), &mut out);
                write_string(b"String", &mut out);
                if block.rows > 0 {
                    let (_, dictionary, width) = low_cardinality(data, block.rows)?;
                    let indexes = &data[data.len() - block.rows * width..];
                    for index in indexes.chunks(width) {
                        let key =
                            dictionary.get(index_value(index) as usize).ok_or("LowCardinality index out of range")?;
                        write_string(key, &mut out);
                    }
                }
                continue;
            }
            let kind = match kind {
                "IPv6" => dialect.type_name(ColumnType::Address),
                "DateTime64(3)" => dialect.type_name(ColumnType::DateTimeMs),
                "Array(UInt128)" => dialect.type_name(ColumnType::ArrayUInt128),
                other => other,
            };
            write_string(name.as_bytes(), &mut out);
            write_string(kind.as_bytes(), &mut out);
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// A VarUInt from `r` (a slice advances past it).
fn read_varuint(r: &mut impl std::io::Read) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8];
        r.read_exact(&mut b).map_err(|_| "a number cut short")?;
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("a number longer than 64 bits".into())
}

/// A reader that adds the bytes read through it to `at`.
struct Counted<'r, R> {
    inner: &'r mut R,
    at: &'r mut u64,
}

impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.at += n as u64;
        Ok(n)
    }
}

fn read_string<'a>(s: &mut &'a [u8]) -> Result<&'a str, String> {
    let len = read_varuint(s)? as usize;
    let bytes = s.get(..len).ok_or("a name cut short")?;
    *s = &s[len..];
    std::str::from_utf8(bytes).map_err(|_| "a name that is not UTF-8".to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::flow::addr_from_v4;
    use crate::schema::{catalog, stored_columns, test_settings, ServerVersion};

    fn only(names: &[&str]) -> Vec<Column> {
        catalog().into_iter().filter(|c| names.contains(&c.name)).collect()
    }

    /// A flow at `second` from exporter 10.0.0.`exporter`.
    pub(crate) fn flow(second: u64, exporter: u8, in_if: u32, bytes: u64) -> FlowRecord {
        let mut f = FlowRecord::default();
        f.set_time_received_ns(second * 1_000_000_000 + 5);
        f.set_exporter_address(addr_from_v4([10, 0, 0, exporter]));
        f.set_in_if_index(in_if);
        f.set_bytes(bytes);
        f
    }

    fn column<'a>(block: &'a Block, name: &str) -> &'a [u8] {
        block.columns.iter().find(|c| c.0 == name).unwrap().2
    }

    #[test]
    fn a_block_is_sorted_by_the_raw_key_and_reads_back() {
        let layout = only(&["TimeReceived", "ExporterAddress", "InIfIndex", "OutIfIndex", "Bytes", "MPLSLabels"]);
        let mut c = Columns::new(&layout, 8);
        let mut labelled = flow(100, 2, 1, 30);
        labelled.set_mpls_label(0, 16);
        labelled.set_mpls_label(1, 17);
        for f in [flow(101, 1, 1, 50), labelled, flow(100, 1, 7, 20), flow(100, 1, 3, 10)] {
            c.push(&f);
        }
        assert_eq!(c.len(), 4);
        let mut out = Vec::new();
        assert!(c.write_block(&MODERN, &mut out), "the rows needed sorting");
        let blocks = read_blocks(&out).unwrap();
        assert_eq!((blocks.len(), blocks[0].rows, blocks[0].columns.len()), (1, 4, 6));
        let b = &blocks[0];
        let bytes: Vec<u64> = column(b, "Bytes").chunks(8).map(|v| u64::from_le_bytes(v.try_into().unwrap())).collect();
        assert_eq!(bytes, [10, 20, 30, 50], "time, exporter, InIfIndex");
        let labels = column(b, "MPLSLabels");
        let ends: Vec<u64> = labels[..32].chunks(8).map(|v| u64::from_le_bytes(v.try_into().unwrap())).collect();
        assert_eq!(ends, [0, 0, 2, 2], "the labelled row is third");
        assert_eq!(&labels[32..], [16, 0, 0, 0, 17, 0, 0, 0]);
        let types: Vec<&str> = b.columns.iter().map(|c| c.1).collect();
        assert_eq!(types, ["DateTime", "IPv6", "UInt32", "UInt32", "UInt64", "Array(UInt32)"]);
        // Sorted already: the columns are copied as they are.
        c.clear();
        c.push(&flow(100, 1, 3, 10));
        c.push(&flow(100, 1, 7, 20));
        let mut again = Vec::new();
        assert!(!c.write_block(&MODERN, &mut again));
        assert_eq!(c.bytes(), 2 * (4 + 16 + 4 + 4 + 8 + 8));
    }

    /// The routes' lists: DstASPath and DstCommunities when the flow has
    /// none, the large communities as `UInt128`, SrcCommunities from the
    /// source's route; sorted with their rows, read back, and the file
    /// walk finds their ends.
    #[test]
    fn route_columns_take_the_routes_lists() {
        use crate::enrich::bmp::Attrs;
        use crate::enrich::flows::Enriched;
        let names = ["TimeReceived", "ExporterAddress", "InIfIndex", "OutIfIndex", "NextHop", "Bytes", "DstASPath"];
        let names = [&names[..], &["DstCommunities", "SrcCommunities", "DstLargeCommunities", "SrcLargeCommunities"]];
        let layout = only(&names.concat());
        let mut c = Columns::new(&layout, 8);
        let dst = Attrs {
            as_path: [64500, 15169].into(),
            communities: [65000 << 16 | 7].into(),
            large_communities: [[4_200_000_000, 1, 2], [7, 8, 9]].into(),
            next_hop: addr_from_v4([10, 0, 0, 1]),
            ..Attrs::default()
        };
        let src = Attrs { communities: [1 << 16 | 2].into(), ..Attrs::default() };
        let mut own_path = flow(100, 1, 1, 10);
        own_path.push_dst_as_path(64999);
        let route_next_hop = Enriched { route_next_hop: true, ..Enriched::default() };
        c.push_enriched(&flow(101, 1, 1, 20), &route_next_hop, [Some(&src), Some(&dst)]);
        c.push(&flow(102, 1, 1, 30));
        c.push_enriched(&own_path, &Enriched::default(), [None, Some(&dst)]);
        let mut out = Vec::new();
        assert!(c.write_block(&MODERN, &mut out));
        let b = &read_blocks(&out).unwrap()[0];
        let words = |name: &str, width: usize| -> (Vec<u64>, Vec<u128>) {
            let data = column(b, name);
            let ends: Vec<u64> = data[..24].chunks(8).map(|v| u64::from_le_bytes(v.try_into().unwrap())).collect();
            let items =
                data[24..].chunks(width).map(|v| v.iter().rev().fold(0u128, |n, &b| n << 8 | u128::from(b))).collect();
            (ends, items)
        };
        // Rows in key order: own_path (100), the enriched one (101), the plain one (102).
        assert_eq!(words("DstASPath", 4), (vec![1, 3, 3], vec![64999, 64500, 15169]));
        assert_eq!(words("DstCommunities", 4), (vec![1, 2, 2], vec![65000 << 16 | 7; 2]));
        assert_eq!(words("SrcCommunities", 4), (vec![0, 1, 1], vec![65538]));
        let large = 4_200_000_000u128 << 64 | 1 << 32 | 2;
        let nine = 7u128 << 64 | 8 << 32 | 9;
        assert_eq!(words("DstLargeCommunities", 16), (vec![2, 4, 4], vec![large, nine, large, nine]));
        assert_eq!(words("SrcLargeCommunities", 16), (vec![0, 0, 0], vec![]));
        let types: Vec<&str> = b.columns.iter().map(|c| c.1).collect();
        assert_eq!(types[7..], ["Array(UInt32)", "Array(UInt32)", "Array(UInt128)", "Array(UInt128)"]);
        // The route's next hop over the flow's (none) where the providers said so.
        let next_hops: Vec<&[u8]> = column(b, "NextHop").chunks(16).collect();
        assert_eq!(next_hops, [&[0; 16][..], &addr_from_v4([10, 0, 0, 1])[..], &[0; 16][..]]);
        assert_eq!(whole_blocks_len(&mut std::io::Cursor::new(&out)).unwrap(), out.len() as u64);
        assert_eq!(whole_blocks_len(&mut std::io::Cursor::new(&out[..out.len() - 1])).unwrap(), 0);
    }

    #[test]
    fn the_radix_sort_orders_rows_as_the_wide_keys_do() {
        let layout = only(&["TimeReceived", "ExporterAddress", "InIfIndex", "OutIfIndex", "Bytes"]);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        // Small interfaces (packed keys), then one huge (wide keys), then
        // a sorted batch.
        for (rows, if_max) in [(5000, 50), (3000, 1 << 20), (4000, u32::MAX as u64), (1, 10)] {
            let mut c = Columns::new(&layout, rows);
            for i in 0..rows {
                let mut f = flow(100 + next(3), 1 + next(40) as u8, next(if_max) as u32, i as u64);
                f.set_out_if_index(next(if_max) as u32);
                c.push(&f);
            }
            let radix = c.sort();
            let by_radix = c.rows_sorted.clone();
            c.rows_sorted.clear();
            let wide = c.sort_wide();
            assert_eq!(radix, wide, "{rows} rows");
            assert_eq!(by_radix, c.rows_sorted, "{rows} rows, interfaces below {if_max}");
        }
    }

    /// A zstd frame holding `data` in raw blocks of at most `block` bytes
    /// (a valid frame, as a compressor may write for data it cannot shrink).
    fn zstd_raw_frame(data: &[u8], block: usize, checksum: bool) -> Vec<u8> {
        // Single segment, a 4-byte content size, and the checksum flag.
        let mut f = ZSTD_MAGIC.to_le_bytes().to_vec();
        f.push(0x80 | 0x20 | if checksum { 0x04 } else { 0 });
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        let pieces: Vec<&[u8]> = data.chunks(block).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let header = (u32::from(i + 1 == pieces.len())) | ((piece.len() as u32) << 3);
            f.extend_from_slice(&header.to_le_bytes()[..3]);
            f.extend_from_slice(piece);
        }
        if checksum {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f
    }

    #[test]
    fn a_file_cut_in_a_zstd_frame_keeps_its_whole_frames() {
        let frames = [
            zstd_raw_frame(b"first frame", 4, false),
            zstd_raw_frame(b"second", 100, true),
            zstd_raw_frame(b"3", 1, false),
        ];
        let stream = frames.concat();
        let mut ends = Vec::new();
        frames.iter().fold(0, |at, f| {
            ends.push(at + f.len() as u64);
            at + f.len() as u64
        });
        let len = |bytes: &[u8]| whole_zstd_frames_len(&mut std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(len(&stream), stream.len() as u64);
        for cut in 0..stream.len() {
            let whole = ends.iter().copied().filter(|&e| e <= cut as u64).max().unwrap_or(0);
            assert_eq!(len(&stream[..cut]), whole, "cut at {cut}");
        }
        // Zeros (a direct write's padding) and other bytes end the frames.
        let padded = [stream.clone(), vec![0; 4096]].concat();
        assert_eq!(len(&padded), stream.len() as u64);
        assert_eq!(len(b"not a frame at all"), 0);
    }

    #[test]
    fn a_file_cut_in_a_block_keeps_its_whole_blocks() {
        let layout = only(&["TimeReceived", "ExporterAddress", "InIfIndex", "OutIfIndex", "Bytes", "MPLSLabels"]);
        let mut c = Columns::new(&layout, 8);
        let mut labelled = flow(100, 2, 1, 30);
        labelled.set_mpls_label(0, 16);
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for block in [vec![flow(1, 1, 1, 1), labelled], vec![], vec![flow(2, 1, 1, 2)]] {
            c.clear();
            block.iter().for_each(|f| c.push(f));
            c.write_block(&MODERN, &mut stream);
            ends.push(stream.len() as u64);
        }
        let len = |bytes: &[u8]| whole_blocks_len(&mut std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(len(&stream), stream.len() as u64);
        for cut in 0..stream.len() {
            let whole = ends.iter().copied().filter(|&e| e <= cut as u64).max().unwrap_or(0);
            assert_eq!(len(&stream[..cut]), whole, "cut at {cut}");
        }
        assert_eq!(len(b"\x01\x01\x01a\x03Int"), 0, "a type Weir does not write");
    }

    #[test]
    fn a_raw_block_carries_the_records_ids_and_each_record_goes_once() {
        use crate::enrich::metadata::{Boundary, ExporterInfo, InterfaceInfo, KnownExporter, Records, StoredId};
        let layout = stored_columns(&test_settings(&[]));
        let mut c = Columns::new(&layout, 4);
        let mut exporters = Records::<ExporterInfo>::default();
        let mut interfaces = Records::<InterfaceInfo>::default();
        let edge = exporters.intern(ExporterInfo { name: "edge1".into(), site: "par".into(), ..Default::default() });
        let transit_info = InterfaceInfo {
            name: "et-0/0/1".into(),
            description: "Transit: Cogent".into(),
            speed: 100_000,
            provider: "cogent".into(),
            connectivity: "transit".into(),
            boundary: Boundary::External,
        };
        let transit = interfaces.intern(transit_info.clone());
        let mut snapshot = Snapshot::empty(KeyHash::default());
        snapshot.exporters.insert(addr_from_v4([10, 0, 0, 1]), 0);
        snapshot.known.push(KnownExporter::default());
        snapshot.set_records(&exporters, &interfaces);
        c.set_snapshot(Arc::new(snapshot));
        // Pushed out of order: the block is sorted, and the ids follow their
        // rows; the records are looked up once per run of rows.
        c.push(&flow(2, 1, 1, 1));
        c.push(&flow(1, 2, 1, 1));
        c.push(&flow(2, 1, 1, 5));
        let mut runs = Vec::new();
        let mut out = Vec::new();
        c.write_block_resolved(true, &MODERN, &mut out, &mut |exporter, in_if, out_if, rows| {
            runs.push((exporter[15], in_if, out_if, rows));
            match exporter[15] {
                1 => Meta { exporter: edge, in_if: transit, out_if: 0 },
                _ => Meta::default(),
            }
        });
        assert_eq!(runs, [(2, 1, 0, 1), (1, 1, 0, 2)], "one lookup per run, in block order");
        let mut sent = RecordsSent::default();
        let mut records = NewRecords::default();
        c.new_records(&mut sent, &mut records);
        let blocks = read_blocks(&out).unwrap();
        let column = |name: &str| *blocks[0].columns.iter().find(|c| c.0 == name).unwrap();
        assert!(!blocks[0].columns.iter().any(|c| c.0 == "ExporterName"), "read from the records, not stored");
        let ids = |name: &str| -> Vec<u64> {
            assert_eq!(column(name).1, "UInt64");
            column(name).2.chunks(8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).collect()
        };
        let (edge_id, transit_id) = (exporters.get(edge).stored_id(), transit_info.stored_id());
        assert_eq!(ids("ExporterRecord"), [0, edge_id, edge_id], "second 1 first; unknown: no record");
        assert_eq!(ids("InIfRecord"), [0, transit_id, transit_id]);
        assert_eq!(ids("OutIfRecord"), [0, 0, 0]);
        assert_ne!(edge_id, ExporterInfo { name: "edge2".into(), ..Default::default() }.stored_id());
        assert_eq!(records.exporters.len(), 1);
        assert_eq!((records.interfaces[0].0, &*records.interfaces[0].1), (transit_id, &transit_info));
        // Handed over once: the next batch of the same rows brings none.
        let mut again = NewRecords::default();
        c.new_records(&mut sent, &mut again);
        assert!(again.is_empty());
        // The records tables' blocks.
        let mut block = Vec::new();
        write_records_block(&records, 1, &mut block);
        let read = read_blocks(&block).unwrap();
        let names: Vec<(&str, &str)> = read[0].columns.iter().map(|c| (c.0, c.1)).collect();
        assert_eq!(
            names,
            [
                ("Id", "UInt64"),
                ("IfName", "String"),
                ("IfDescription", "String"),
                ("IfSpeed", "UInt32"),
                ("IfProvider", "String"),
                ("IfConnectivity", "String"),
                ("IfBoundary", crate::schema::BOUNDARY_TYPE)
            ]
        );
        assert_eq!(read[0].columns[2].2, b"\x0fTransit: Cogent");
        assert_eq!(read[0].columns[6].2, [1]);
        let mut none = Vec::new();
        write_records_block(&NewRecords::default(), 0, &mut none);
        assert!(none.is_empty());
        // The same bytes come back through retype for a modern server.
        assert_eq!(retype(&out, &MODERN).unwrap(), out);
    }

    #[test]
    fn old_servers_get_their_type_names_for_the_same_bytes() {
        let layout = stored_columns(&test_settings(&["FlowStart"]));
        let mut c = Columns::new(&layout, 4);
        c.push(&flow(1, 1, 1, 1));
        let mut out = Vec::new();
        c.write_block(&MODERN, &mut out);
        c.push(&flow(2, 1, 1, 1));
        c.write_block(&MODERN, &mut out);
        let old = Dialect::for_version(ServerVersion(18, 16));
        let retyped = retype(&out, &old).unwrap();
        let blocks = read_blocks(&retyped).unwrap();
        assert_eq!(blocks.len(), 2);
        let types: Vec<(&str, &str)> = blocks[1].columns.iter().map(|c| (c.0, c.1)).collect();
        assert!(types.contains(&("SrcAddr", "FixedString(16)")) && types.contains(&("FlowStart", "UInt64")));
        let data = |b: &[u8]| {
            read_blocks(b).unwrap().iter().flat_map(|b| b.columns.iter().map(|c| c.2.to_vec())).collect::<Vec<_>>()
        };
        assert_eq!(data(&out), data(&retyped), "the bytes stay");
        assert!(types.contains(&("ExporterRecord", "UInt64")));
        assert!(read_blocks(&out[..out.len() - 1]).is_err());
        assert!(read_blocks(&[1, 1, 1, b'a', 3, b'I', b'n', b't']).is_err());
    }
}
