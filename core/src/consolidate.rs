//! Consolidation in the shards: the 1 min, 5 min and 1 h tables' rows,
//! summed where the flows are, instead of materialized views in the engine
//! (each view cost as much as the raw insert: perf/RESULTS.md).
//!
//! Per flow, one upsert into a hash map keyed by (minute, the consolidated
//! dimensions) of (Bytes × rate, Packets × rate, Flows), the rate being
//! `max(SamplingRate, 1)`, all read from the row the shard just appended
//! to its column buffers (the stored values, as the views read them); the map uses the decoder's seeded hasher and is
//! bounded (`keys_max`: a full map asks to be flushed early). When the
//! shard hands its batch over, `write_blocks` folds the minutes into 5-minute
//! and hour buckets and writes one Native block per table, whose rows go
//! straight into the SummingMergeTree tables: their merges and `sum()` at
//! query time add up partial sums exactly as they added up the views' rows.
//!
//! Buckets are UTC: `t - t % 60`, `% 300`, `% 3600` of TimeReceived's
//! seconds (the views used the server's time zone, which for a zone with a
//! half-hour offset put hours at :30).

use std::collections::HashMap;

use crate::columns::{width, write_string, write_varuint, Columns};
use crate::flow::Field;
use crate::schema::{Column, ColumnType, Dialect};
use crate::wire::state::KeyHash;

/// The consolidated tables: bucket seconds and table name.
pub const TABLES: [(u32, &str); 3] = [(60, "flows_1m"), (300, "flows_5m"), (3600, "flows_1h")];

/// Bytes of the dimensions in a key, at most (every optional dimension on:
/// 57; a test checks the catalog fits).
pub const KEY_BYTES: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    /// Bucket start, seconds.
    bucket: u32,
    /// The dimensions' Native bytes, one after the other, zero padded.
    dims: [u8; KEY_BYTES],
}

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Sums {
    bytes: u64,
    packets: u64,
    flows: u64,
}

impl Sums {
    fn add(&mut self, other: Sums) {
        // As the views' sum() did: UInt64 wraps.
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.packets = self.packets.wrapping_add(other.packets);
        self.flows = self.flows.wrapping_add(other.flows);
    }
}

/// A shard's sums for the three tables, between two hand-overs.
pub struct Consolidator {
    dims: Vec<Column>,
    /// Where each dimension is in the layout, and its width.
    dim_at: Vec<(usize, usize)>,
    /// Where TimeReceived, SamplingRate, Bytes and Packets are in the layout.
    time_at: usize,
    rate_at: usize,
    bytes_at: usize,
    packets_at: usize,
    minutes: HashMap<Key, Sums, KeyHash>,
    /// Scratch for the 5-minute and hour folds, reused.
    coarse: HashMap<Key, Sums, KeyHash>,
    /// Scratch for sorting a block, reused.
    sort: SortScratch,
    keys_max: usize,
}

impl Consolidator {
    /// Sums over `layout`'s consolidated columns, at most `keys_max` keys
    /// (minute, dimensions) between two flushes.
    pub fn new(layout: &[Column], keys_max: usize, hash: KeyHash) -> Consolidator {
        let dims: Vec<Column> = layout.iter().filter(|c| c.consolidated).copied().collect();
        debug_assert!(dims.iter().map(|d| width(d.kind)).sum::<usize>() <= KEY_BYTES);
        let dim_at =
            layout.iter().enumerate().filter(|(_, c)| c.consolidated).map(|(i, c)| (i, width(c.kind))).collect();
        let at = |field: Field| layout.iter().position(|c| c.field == field).unwrap_or(usize::MAX);
        let capacity = keys_max.min(1 << 16);
        Consolidator {
            dims,
            dim_at,
            time_at: at(Field::TimeReceived),
            rate_at: at(Field::SamplingRate),
            bytes_at: at(Field::Bytes),
            packets_at: at(Field::Packets),
            minutes: HashMap::with_capacity_and_hasher(capacity, hash),
            coarse: HashMap::with_capacity_and_hasher(capacity / 4, hash),
            sort: SortScratch::default(),
            keys_max,
        }
    }

    /// The consolidated tables' dimension columns, in key order.
    pub fn dimensions(&self) -> &[Column] {
        &self.dims
    }

    /// Keys held (minute, dimensions).
    pub fn len(&self) -> usize {
        self.minutes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Whether the map holds `keys_max` keys.
    pub fn at_bound(&self) -> bool {
        self.minutes.len() >= self.keys_max
    }

    /// Adds the row `columns` got last (a flow just pushed); true when the
    /// map is full and must be flushed now.
    #[inline]
    pub fn add_last_row(&mut self, columns: &Columns) -> bool {
        let number = |at: usize| {
            let b = columns.last(at);
            let mut word = [0u8; 8];
            word[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
            u64::from_le_bytes(word)
        };
        let seconds = number(self.time_at) as u32;
        let mut key = Key { bucket: seconds - seconds % 60, dims: [0; KEY_BYTES] };
        let mut at = 0;
        for &(column, width) in &self.dim_at {
            copy_width(&mut key.dims[at..], columns.last(column), width);
            at += width;
        }
        let rate = number(self.rate_at).max(1);
        let sums = Sums {
            bytes: number(self.bytes_at).wrapping_mul(rate),
            packets: number(self.packets_at).wrapping_mul(rate),
            flows: 1,
        };
        self.minutes.entry(key).or_default().add(sums);
        self.minutes.len() >= self.keys_max
    }

    /// Writes one Native block per table of `TABLES` to `out` (with
    /// `dialect`'s type names), returns each block's rows, and clears.
    pub fn write_blocks(&mut self, dialect: &Dialect, out: &mut [Vec<u8>; 3]) -> [usize; 3] {
        let mut rows = [0; 3];
        sort(&self.dims, &self.minutes, &mut self.sort);
        rows[0] = write_block(&self.dims, &self.sort, None, dialect, &mut out[0]);
        // One minute (a batch usually spans milliseconds): the coarser
        // tables have the same rows in the same order, only the bucket
        // differs; otherwise the minutes are folded and sorted again.
        let mut buckets = self.minutes.keys().map(|k| k.bucket);
        let first = buckets.next().unwrap_or(0);
        let one_minute = buckets.all(|b| b == first);
        for (i, &(seconds, _)) in TABLES.iter().enumerate().skip(1) {
            if one_minute {
                rows[i] = write_block(&self.dims, &self.sort, Some(first - first % seconds), dialect, &mut out[i]);
                continue;
            }
            self.coarse.clear();
            for (key, sums) in &self.minutes {
                let coarse = Key { bucket: key.bucket - key.bucket % seconds, dims: key.dims };
                self.coarse.entry(coarse).or_default().add(*sums);
            }
            sort(&self.dims, &self.coarse, &mut self.sort);
            rows[i] = write_block(&self.dims, &self.sort, None, dialect, &mut out[i]);
        }
        self.minutes.clear();
        self.coarse.clear();
        rows
    }
}

/// `to` set to the first `width` bytes of `from` (when it has them), by
/// constant-size copies (a variable-length copy is a memmove call).
#[inline(always)]
fn copy_width(to: &mut [u8], from: &[u8], width: usize) {
    match (width, from.len() >= width && to.len() >= width) {
        (1, true) => to[0] = from[0],
        (2, true) => to[..2].copy_from_slice(&from[..2]),
        (4, true) => to[..4].copy_from_slice(&from[..4]),
        (8, true) => to[..8].copy_from_slice(&from[..8]),
        (16, true) => to[..16].copy_from_slice(&from[..16]),
        _ => {}
    }
}

/// The column names of a consolidated table's inserts, in block order.
pub fn column_names(dims: &[Column]) -> Vec<&'static str> {
    let mut names = vec!["TimeReceived"];
    names.extend(dims.iter().map(|d| d.name));
    names.extend(["Bytes", "Packets", "Flows"]);
    names
}

/// A block being sorted: per entry its key in big-endian bytes (which
/// compare as the table's key does), the key and the sums.
type Entry = ([u8; 4 + KEY_BYTES], Key, Sums);

/// Reused scratch for sorting a block: the entries, and the order as the
/// sort key's first 32 bytes with the entry's index (cheap to move and to
/// compare; ties fall back to the rest of the key).
#[derive(Default)]
struct SortScratch {
    entries: Vec<Entry>,
    order: Vec<(u128, u128, u32)>,
}

/// Sorts `sums` into `scratch` by the table's key (TimeReceived, then the
/// dimensions as numbers), so the engine finds the block sorted.
fn sort(dims: &[Column], sums: &HashMap<Key, Sums, KeyHash>, scratch: &mut SortScratch) {
    let SortScratch { entries, order } = scratch;
    entries.clear();
    order.clear();
    for (key, s) in sums {
        // Big-endian bytes compare as the numbers do: the integers' little-
        // endian bytes reversed, addresses (network order) as they are.
        let mut sortable = [0u8; 4 + KEY_BYTES];
        sortable[..4].copy_from_slice(&key.bucket.to_be_bytes());
        let mut at = 0;
        for d in dims {
            let w = width(d.kind);
            let (from, to) = (&key.dims[at..at + w], &mut sortable[4 + at..4 + at + w]);
            if d.kind == ColumnType::Address {
                to.copy_from_slice(from);
            } else {
                to.iter_mut().zip(from.iter().rev()).for_each(|(t, f)| *t = *f);
            }
            at += w;
        }
        let word = |i: usize| u128::from_be_bytes(sortable[i * 16..i * 16 + 16].try_into().unwrap_or_default());
        order.push((word(0), word(1), entries.len() as u32));
        entries.push((sortable, *key, *s));
    }
    order.sort_unstable_by(|a, b| {
        (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| entries[a.2 as usize].0[32..].cmp(&entries[b.2 as usize].0[32..]))
    });
}

/// One Native block of the rows `scratch` holds, in its order:
/// TimeReceived (`bucket` for every row when given), the dimensions, the sums.
fn write_block(
    dims: &[Column],
    scratch: &SortScratch,
    bucket: Option<u32>,
    dialect: &Dialect,
    out: &mut Vec<u8>,
) -> usize {
    let SortScratch { entries, order } = scratch;
    if order.is_empty() {
        return 0;
    }
    let rows = || order.iter().map(|o| &entries[o.2 as usize]);
    write_varuint(dims.len() as u64 + 4, out);
    write_varuint(order.len() as u64, out);
    write_string(b"TimeReceived", out);
    write_string(b"DateTime", out);
    for (_, key, _) in rows() {
        out.extend_from_slice(&bucket.unwrap_or(key.bucket).to_le_bytes());
    }
    let mut at = 0;
    for d in dims {
        let w = width(d.kind);
        write_string(d.name.as_bytes(), out);
        write_string(dialect.type_name(d.kind).as_bytes(), out);
        match w {
            1 => rows().for_each(|(_, key, _)| out.push(key.dims[at])),
            2 => rows().for_each(|(_, key, _)| out.extend_from_slice(&key.dims[at..at + 2])),
            4 => rows().for_each(|(_, key, _)| out.extend_from_slice(&key.dims[at..at + 4])),
            8 => rows().for_each(|(_, key, _)| out.extend_from_slice(&key.dims[at..at + 8])),
            _ => rows().for_each(|(_, key, _)| out.extend_from_slice(&key.dims[at..at + 16])),
        }
        at += w;
    }
    for (name, of) in [("Bytes", 0), ("Packets", 1), ("Flows", 2)] {
        write_string(name.as_bytes(), out);
        write_string(b"UInt64", out);
        for (_, _, s) in rows() {
            let v = [s.bytes, s.packets, s.flows][of];
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    order.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::{read_blocks, MODERN};
    use crate::flow::{addr_from_v4, FlowRecord};
    use crate::schema::{catalog, stored_columns, test_settings};

    /// A consolidator over `layout` and the column buffers it reads.
    struct Shard {
        columns: Columns,
        c: Consolidator,
    }

    impl Shard {
        fn new(keys_max: usize) -> Shard {
            let layout = stored_columns(&test_settings(&[]));
            Shard { columns: Columns::new(&layout, 16), c: Consolidator::new(&layout, keys_max, KeyHash::with_seed(7)) }
        }

        fn add(&mut self, f: &FlowRecord) -> bool {
            self.columns.push(f);
            self.c.add_last_row(&self.columns)
        }
    }

    fn flow(seconds: u64, exporter: u8, bytes: u64, rate: u64) -> FlowRecord {
        let mut f = FlowRecord::default();
        f.set_time_received_ns(seconds * 1_000_000_000 + 17);
        f.set_exporter_address(addr_from_v4([192, 0, 2, exporter]));
        f.set_bytes(bytes);
        f.set_packets(1);
        if rate > 0 {
            f.set_sampling_rate(rate);
        }
        f
    }

    /// (bucket, exporter's last byte) → (bytes, packets, flows), from a block.
    fn sums_of(block: &[u8]) -> std::collections::BTreeMap<(u32, u8), (u64, u64, u64)> {
        let blocks = read_blocks(block).unwrap();
        let b = &blocks[0];
        let col = |name: &str| b.columns.iter().find(|c| c.0 == name).unwrap().2;
        let u64s = |name: &str| -> Vec<u64> {
            col(name).chunks(8).map(|v| u64::from_le_bytes(v.try_into().unwrap())).collect()
        };
        let times: Vec<u32> =
            col("TimeReceived").chunks(4).map(|v| u32::from_le_bytes(v.try_into().unwrap())).collect();
        let exporters: Vec<u8> = col("ExporterAddress").chunks(16).map(|a| a[15]).collect();
        let (bytes, packets, flows) = (u64s("Bytes"), u64s("Packets"), u64s("Flows"));
        (0..b.rows).map(|i| ((times[i], exporters[i]), (bytes[i], packets[i], flows[i]))).collect()
    }

    #[test]
    fn sums_per_bucket_and_dimensions_scaled_by_the_sampling_rate() {
        let mut shard = Shard::new(1000);
        for f in [flow(3600, 1, 100, 10), flow(3659, 1, 50, 0), flow(3660, 1, 7, 1), flow(3600, 2, 1, 1)] {
            assert!(!shard.add(&f));
        }
        // A minute and an hour later.
        shard.add(&flow(7200 + 301, 1, 5, 2));
        let c = &mut shard.c;
        assert_eq!(c.len(), 4, "(3600, 1), (3660, 1), (3600, 2), (7500, 1)");
        let mut out = [Vec::new(), Vec::new(), Vec::new()];
        assert_eq!(c.write_blocks(&MODERN, &mut out), [4, 3, 3]);
        assert!(c.is_empty());
        let minutes = sums_of(&out[0]);
        assert_eq!(minutes[&(3600, 1)], (1050, 11, 2), "rate 10, then no rate (1)");
        assert_eq!(minutes[&(3660, 1)], (7, 1, 1));
        assert_eq!(minutes[&(7500, 1)], (10, 2, 1));
        let fives = sums_of(&out[1]);
        assert_eq!(fives[&(3600, 1)], (1057, 12, 3));
        assert_eq!(fives[&(7500, 1)], (10, 2, 1));
        let hours = sums_of(&out[2]);
        assert_eq!(hours[&(3600, 1)], (1057, 12, 3));
        assert_eq!(hours[&(3600, 2)], (1, 1, 1));
        assert_eq!(hours[&(7200, 1)], (10, 2, 1));
        let names: Vec<&str> = read_blocks(&out[0]).unwrap()[0].columns.iter().map(|c| c.0).collect();
        assert_eq!(names, column_names(c.dimensions()));
        let blocks = read_blocks(&out[2]).unwrap();
        let col = |name: &str| blocks[0].columns.iter().find(|c| c.0 == name).unwrap().2;
        let times: Vec<&[u8]> = col("TimeReceived").chunks(4).collect();
        let exporters: Vec<u8> = col("ExporterAddress").chunks(16).map(|a| a[15]).collect();
        assert_eq!(
            (times, exporters),
            (vec![&3600u32.to_le_bytes()[..], &3600u32.to_le_bytes()[..], &7200u32.to_le_bytes()[..]], vec![1, 2, 1]),
            "sorted by the table's key"
        );
    }

    #[test]
    fn within_one_minute_the_coarser_tables_take_the_same_rows() {
        let mut shard = Shard::new(1000);
        let mut big_interface = flow(7230, 1, 5, 1);
        big_interface.set_in_if_index(256);
        for f in [flow(7230, 2, 1, 1), big_interface, flow(7231, 1, 10, 3), flow(7259, 2, 1, 1)] {
            shard.add(&f);
        }
        let mut out = [Vec::new(), Vec::new(), Vec::new()];
        assert_eq!(shard.c.write_blocks(&MODERN, &mut out), [3, 3, 3]);
        assert_eq!(sums_of(&out[0])[&(7200, 2)], (2, 2, 2));
        assert_eq!(sums_of(&out[1])[&(7200, 2)], (2, 2, 2), "7200 starts a 5-minute bucket");
        let hours = read_blocks(&out[2]).unwrap();
        let col = |name: &str| hours[0].columns.iter().find(|c| c.0 == name).unwrap().2;
        let in_if: Vec<u32> = col("InIfIndex").chunks(4).map(|v| u32::from_le_bytes(v.try_into().unwrap())).collect();
        let exporters: Vec<u8> = col("ExporterAddress").chunks(16).map(|a| a[15]).collect();
        assert_eq!((exporters, in_if), (vec![1, 1, 2], vec![0, 256, 0]), "sorted as numbers");
        let flows: Vec<u64> = col("Flows").chunks(8).map(|v| u64::from_le_bytes(v.try_into().unwrap())).collect();
        assert_eq!(flows, [1, 1, 2], "exporter 2's two flows (7230 and 7259) summed");
    }

    #[test]
    fn a_full_map_asks_to_be_flushed_and_every_dimension_fits_the_key() {
        let mut shard = Shard::new(2);
        assert!(!shard.add(&flow(60, 1, 1, 1)));
        assert!(!shard.add(&flow(60, 1, 1, 1)), "the same key");
        assert!(shard.add(&flow(60, 2, 1, 1)), "two keys: full");
        let every: usize = catalog().iter().filter(|c| c.consolidated).map(|c| width(c.kind)).sum();
        assert!(every <= KEY_BYTES, "{every}");
        let mut out = [Vec::new(), Vec::new(), Vec::new()];
        let mut empty = Shard::new(2).c;
        assert_eq!(empty.write_blocks(&MODERN, &mut out), [0, 0, 0]);
        assert!(out.iter().all(Vec::is_empty));
    }
}
