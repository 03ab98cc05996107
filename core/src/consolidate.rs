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

use std::hash::{BuildHasher, Hasher};

use std::sync::Arc;

use crate::columns::{
    width, write_low_cardinality, write_meta_column, write_string, write_varuint, Columns, MetaScratch,
};
use crate::enrich::metadata::{Meta, Snapshot};
use crate::enrich::networks::Networks;
use crate::flow::Field;
use crate::schema::{Column, ColumnType, Dialect, Source};
use crate::wire::state::KeyHash;

/// The consolidated tables: bucket seconds and table name.
pub const TABLES: [(u32, &str); 3] = [(60, "flows_1m"), (300, "flows_5m"), (3600, "flows_1h")];

/// Bytes of the dimensions in a key, at most (every optional dimension on:
/// 57; a test checks the catalog fits). The metadata records are not in
/// the key: a key's exporter and interfaces give them, when its block is
/// written. (The 12 bytes they took before are left as room, not measured
/// without.)
pub const KEY_BYTES: usize = 80;

/// A key: the bucket (seconds) and the dimensions, each big-endian, one
/// after the other, zero padded, so that comparing the bytes compares the
/// table's sort key (TimeReceived, then the dimensions as numbers).
type Key = [u8; 4 + KEY_BYTES];

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Sums {
    bytes: u64,
    packets: u64,
    flows: u64,
}

impl Sums {
    #[inline(always)]
    fn add(&mut self, other: Sums) {
        // As the views' sum() did: UInt64 wraps.
        self.bytes = self.bytes.wrapping_add(other.bytes);
        self.packets = self.packets.wrapping_add(other.packets);
        self.flows = self.flows.wrapping_add(other.flows);
    }
}

/// One summed key (112 bytes: two or three cache lines).
#[derive(Clone, Copy)]
struct Entry {
    key: Key,
    /// Its slot in the table (to clear the table entry by entry).
    slot: u32,
    sums: Sums,
}

/// An open-addressing table of keys and their sums, sized for its bound.
///
/// The slots are 8 bytes (a 32-bit hash tag and the entry's index), so
/// the probed part stays in cache; the entries are appended in first-seen
/// order to a dense array, written once per new key, read only when the
/// tag matches. (A `HashMap<Key, Sums>` wrote each new 96-byte bucket at a
/// random place of a 6 MiB table: a cache miss per flow, perf/RESULTS.md.)
struct SumTable {
    /// 0: empty; else tag << 32 | (index + 1).
    slots: Vec<u64>,
    mask: usize,
    entries: Vec<Entry>,
    /// Bytes of the key that can be non-zero, rounded up to words.
    hashed: usize,
    hash: KeyHash,
}

impl SumTable {
    fn new(keys_max: usize, key_len: usize, hash: KeyHash) -> SumTable {
        let slots = (keys_max.max(1) * 2).next_power_of_two().max(64);
        SumTable {
            slots: vec![0; slots],
            mask: slots - 1,
            entries: Vec::with_capacity(keys_max.min(1 << 16)),
            hashed: key_len.div_ceil(8) * 8,
            hash,
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    #[inline(always)]
    fn hash(&self, key: &Key) -> u64 {
        let mut h = self.hash.build_hasher();
        let (words, rest) = key[..self.hashed.min(key.len())].as_chunks::<8>();
        for &w in words {
            h.write_u64(u64::from_ne_bytes(w));
        }
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h.write_u64(u64::from_ne_bytes(w));
        }
        // The hasher's low bits are weak: fold the high ones in.
        let h = h.finish();
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }

    /// Asks the CPU to bring `hash`'s first slot into the cache.
    #[inline(always)]
    fn prefetch(&self, hash: u64) {
        prefetch(&self.slots[hash as usize & self.mask]);
    }

    /// Asks the CPU to bring the entry `hash`'s first slot points to into
    /// the cache (each line of it), when its tag matches (the slot fetched
    /// by `prefetch` rows before). Only a hint: the add probes as ever.
    #[inline(always)]
    fn prefetch_entry(&self, hash: u64) {
        let slot = self.slots[hash as usize & self.mask];
        if slot != 0 && slot >> 32 == hash >> 32 {
            if let Some(e) = self.entries.get((slot as u32 - 1) as usize) {
                prefetch_lines(e);
            }
        }
    }

    #[inline(always)]
    fn add(&mut self, key: &Key, sums: Sums) {
        let h = self.hash(key);
        self.add_hashed(key, h, sums);
    }

    /// Adds `sums` to `key`'s entry (whose hash is `h`), making it when new.
    /// The caller keeps the entries below half the slots.
    #[inline(always)]
    fn add_hashed(&mut self, key: &Key, h: u64, sums: Sums) {
        let tag = h >> 32;
        let mut i = h as usize & self.mask;
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                self.slots[i] = tag << 32 | (self.entries.len() as u64 + 1);
                self.entries.push(Entry { key: *key, slot: i as u32, sums });
                return;
            }
            if slot >> 32 == tag {
                let e = &mut self.entries[(slot as u32 - 1) as usize];
                if same_key(&e.key, key) {
                    e.sums.add(sums);
                    return;
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// An empty table of the same bound and key, in new memory: a large
    /// table's pages go back to the kernel when the old one is dropped.
    fn emptied(&self) -> SumTable {
        SumTable::new(self.slots.len() / 2, self.hashed, self.hash)
    }

    /// Bytes of the table's buffers.
    fn bytes(&self) -> usize {
        self.slots.capacity() * 8 + self.entries.capacity() * std::mem::size_of::<Entry>()
    }

    fn clear(&mut self) {
        if self.entries.len() * 8 < self.slots.len() {
            for e in &self.entries {
                self.slots[e.slot as usize] = 0;
            }
        } else {
            self.slots.fill(0);
        }
        self.entries.clear();
    }
}

/// Rows a shard holds back before adding them to its sum table. A row's
/// key is hashed (and its slot fetched from memory) one row after it was
/// built, the entry the slot points to is fetched two rows later, and the
/// row is added two rows after that: two dependent cache misses, each
/// behind two flows' work, and no load of the key's bytes while the
/// stores that wrote them are still pending.
const AHEAD: usize = 5;

/// Scratch (a block's order and columns, the coarser tables' fold) of
/// more than this many bytes is freed once the sums are written, not kept
/// for the next hand-over: at 137 k keys it is about 40 MB, resident
/// between hand-overs ten seconds apart, for about a millisecond of page
/// faults to allocate again (perf/RESULTS.md, "Memory over a quarter
/// hour, again").
const SCRATCH_KEEP: usize = 1 << 20;

/// A row summed but not yet added: its hash (once hashed) and sums (its
/// key is in the key buffer of the same place).
#[derive(Clone, Copy, Default)]
struct Pending {
    hash: u64,
    sums: Sums,
}

/// Where a dimension is: its column in the layout, its offset in the key,
/// its width, and whether it is an address (stored as is, not reversed).
#[derive(Clone, Copy)]
struct Dim {
    column: usize,
    at: usize,
    width: usize,
    address: bool,
}

/// A shard's sums for the three tables, between two hand-overs.
pub struct Consolidator {
    columns: Vec<Column>,
    dims: Vec<Dim>,
    /// The dimensions again, by how a key takes them (column, offset in
    /// the key): numbers of 1, 2, 4, 8 and 16 bytes turned big-endian, and
    /// addresses as they are. A loop per group: no match per dimension.
    key_parts: KeyParts,
    /// Whether metadata columns are dimensions: their records are found
    /// when a block is written, once per summed row, from the exporter and
    /// interfaces in its key (a row sums flows of one exporter and
    /// interface pair, so they share their records).
    metadata: bool,
    /// Where the source and destination networks' sets are in the key
    /// (when network columns are dimensions), and the table they are from
    /// (the shard hands its sums over before it takes a new one).
    nets_at: Option<usize>,
    networks: Arc<Networks>,
    /// Where ExporterAddress (unknown exporters are named by it), InIfIndex
    /// and OutIfIndex are in the key.
    address_at: Option<usize>,
    in_if_at: Option<usize>,
    out_if_at: Option<usize>,
    snapshot: Arc<Snapshot>,
    meta_scratch: MetaScratch,
    key_len: usize,
    /// Where TimeReceived, SamplingRate, Bytes and Packets are in the layout.
    time_at: usize,
    rate_at: usize,
    bytes_at: usize,
    packets_at: usize,
    /// Keyed by (minute, dimensions).
    minutes: SumTable,
    /// The last `AHEAD` rows, added `AHEAD` rows later, oldest first: a
    /// ring of `AHEAD + 1` places from `first`, `held` of them used (the
    /// newest not hashed yet), the next row's key built in place in the
    /// one after them (the bytes past the dimensions stay zero).
    keys: [Key; AHEAD + 1],
    pending: [Pending; AHEAD + 1],
    first: usize,
    held: usize,
    /// Scratch for the 5-minute and hour folds.
    coarse: SumTable,
    /// Scratch for writing a block: the order, then the columns.
    order: Vec<(u128, u128, u64, u32)>,
    /// The records of the rows in `order`.
    metas: Vec<Meta>,
    /// Per row of `order`, read from its entry while the dimensions are
    /// (the entries are read at random: each column's pass over them
    /// again cost a cache miss per row): the networks' sets, and the
    /// exporter and interfaces its records are found by.
    row_sets: Vec<[u32; 2]>,
    row_exporters: Vec<(u128, u32, u32)>,
    out_columns: Vec<Vec<u8>>,
    keys_max: usize,
}

impl Consolidator {
    /// Sums over `layout`'s consolidated columns, at most `keys_max` keys
    /// (minute, dimensions) between two flushes. The flow's columns are
    /// read from the rows `Columns` holds (its stored columns: the
    /// metadata columns come from the rows' records).
    pub fn new(layout: &[Column], keys_max: usize, hash: KeyHash) -> Consolidator {
        let columns: Vec<Column> = layout.iter().filter(|c| c.consolidated).copied().collect();
        let layout: Vec<Column> = layout.iter().filter(|c| c.stored()).copied().collect();
        let mut at = 4;
        let mut dims = Vec::new();
        let (mut address_at, mut in_if_at, mut out_if_at) = (None, None, None);
        for (column, c) in layout.iter().enumerate().filter(|(_, c)| c.consolidated) {
            if !matches!(c.source, Source::Flow(_)) {
                continue;
            }
            match c.source {
                Source::Flow(Field::ExporterAddress) => address_at = Some(at),
                Source::Flow(Field::InIfIndex) => in_if_at = Some(at),
                Source::Flow(Field::OutIfIndex) => out_if_at = Some(at),
                _ => {}
            }
            let w = width(c.kind);
            dims.push(Dim { column, at, width: w, address: c.kind == ColumnType::Address });
            at += w;
        }
        let metadata = columns.iter().any(|c| matches!(c.source.record(), Some(0..=2)));
        // The networks' sets, after the flow's dimensions.
        let nets_at = columns.iter().any(|c| c.source.network().is_some()).then_some(at);
        if nets_at.is_some() {
            at += 8;
        }
        debug_assert!(at <= 4 + KEY_BYTES);
        let field_at = |field: Field| layout.iter().position(|c| c.source == Source::Flow(field)).unwrap_or(usize::MAX);
        Consolidator {
            out_columns: vec![Vec::new(); columns.len() + 4],
            columns,
            key_parts: KeyParts::new(&dims),
            dims,
            metadata,
            nets_at,
            networks: Arc::new(Networks::default()),
            address_at,
            in_if_at,
            out_if_at,
            snapshot: Arc::new(Snapshot::empty(KeyHash::default())),
            meta_scratch: MetaScratch::default(),
            key_len: at.min(4 + KEY_BYTES),
            time_at: field_at(Field::TimeReceived),
            rate_at: field_at(Field::SamplingRate),
            bytes_at: field_at(Field::Bytes),
            packets_at: field_at(Field::Packets),
            minutes: SumTable::new(keys_max, at, hash),
            keys: [[0; 4 + KEY_BYTES]; AHEAD + 1],
            pending: [Pending::default(); AHEAD + 1],
            first: 0,
            held: 0,
            coarse: SumTable::new(keys_max, at, hash),
            order: Vec::new(),
            metas: Vec::new(),
            row_sets: Vec::new(),
            row_exporters: Vec::new(),
            keys_max,
        }
    }

    /// The snapshot metadata columns are written from (as `Columns`').
    pub fn set_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = snapshot;
    }

    /// The networks table the sets in the keys are from, from now on (the
    /// sums held must be written first).
    pub fn set_networks(&mut self, networks: Arc<Networks>) {
        self.networks = networks;
    }

    /// The consolidated tables' dimension columns, in key order.
    pub fn dimensions(&self) -> &[Column] {
        &self.columns
    }

    /// Keys held (minute, dimensions), at most (the last rows' may be new).
    pub fn len(&self) -> usize {
        self.minutes.len() + self.held
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the map holds `keys_max` keys (the last rows' counted as
    /// new).
    pub fn at_bound(&self) -> bool {
        self.len() >= self.keys_max
    }

    /// Adds the rows held back, oldest first (before the map is read).
    fn settle(&mut self) {
        if self.held > 0 {
            self.hash_newest();
        }
        while self.held > 0 {
            self.add_first();
        }
    }

    /// Hashes the newest row held back and fetches its slot.
    #[inline(always)]
    fn hash_newest(&mut self) {
        let newest = (self.first + self.held - 1) % (AHEAD + 1);
        let hash = self.minutes.hash(&self.keys[newest]);
        self.minutes.prefetch(hash);
        self.pending[newest].hash = hash;
    }

    /// Adds the oldest row held back.
    #[inline(always)]
    fn add_first(&mut self) {
        let p = self.pending[self.first];
        self.minutes.add_hashed(&self.keys[self.first], p.hash, p.sums);
        self.first = (self.first + 1) % (AHEAD + 1);
        self.held -= 1;
    }

    /// Adds the row `columns` got last (a flow just pushed); true when the
    /// map is full and must be flushed now.
    #[inline]
    pub fn add_last_row(&mut self, columns: &Columns) -> bool {
        let seconds = u32::from_le_bytes(columns.last_fixed::<4>(self.time_at));
        // The place after the rows held: never one of theirs.
        let k = (self.first + self.held) % (AHEAD + 1);
        let key = &mut self.keys[k];
        key[..4].copy_from_slice(&(seconds - seconds % 60).to_be_bytes());
        self.key_parts.put(key, columns);
        if let Some(at) = self.nets_at {
            let [src, dst] = columns.last_nets();
            key[at..at + 4].copy_from_slice(&src.to_be_bytes());
            key[at + 4..at + 8].copy_from_slice(&dst.to_be_bytes());
        }
        let rate = u64::from(u32::from_le_bytes(columns.last_fixed::<4>(self.rate_at))).max(1);
        let sums = Sums {
            bytes: u64::from_le_bytes(columns.last_fixed::<8>(self.bytes_at)).wrapping_mul(rate),
            packets: u64::from_le_bytes(columns.last_fixed::<8>(self.packets_at)).wrapping_mul(rate),
            flows: 1,
        };
        // The row `AHEAD` before goes in (its slot and entry fetched over
        // the last rows); then the entry of the row three before is
        // fetched (it was hashed, its slot fetched, two rows ago), and the
        // row before, whose key's bytes have left the store buffer by now,
        // is hashed (the hash's 8-byte loads would wait for a key just
        // stored a field at a time: a load that spans several pending
        // stores cannot be forwarded from them).
        if self.held == AHEAD {
            self.add_first();
            // The `AHEAD - 1` rows left, oldest first: the newest is not
            // hashed, the one before it was hashed a row ago, the one
            // before that two rows ago.
            let third = (self.first + AHEAD - 4) % (AHEAD + 1);
            self.minutes.prefetch_entry(self.pending[third].hash);
        }
        if self.held > 0 {
            self.hash_newest();
        }
        self.pending[k] = Pending { hash: 0, sums };
        self.held += 1;
        self.len() >= self.keys_max
    }

    /// Writes one Native block per table of `TABLES` to `out` (with
    /// `dialect`'s type names), returns each block's rows, and clears.
    pub fn write_blocks(&mut self, dialect: &Dialect, out: &mut [Vec<u8>; 3]) -> [usize; 3] {
        let mut rows = [0; 3];
        self.settle();
        if self.minutes.len() == 0 {
            return rows;
        }
        self.sort_and_transpose(false);
        rows[0] = self.write_block(None, dialect, &mut out[0]);
        // One minute (a batch usually spans milliseconds): the coarser
        // tables have the same rows in the same order, only the bucket
        // differs; otherwise the minutes are folded and sorted again.
        let bucket = |e: &Entry| u32::from_be_bytes([e.key[0], e.key[1], e.key[2], e.key[3]]);
        let first = bucket(&self.minutes.entries[0]);
        let one_minute = self.minutes.entries.iter().all(|e| bucket(e) == first);
        let folded = !one_minute;
        for (i, &(seconds, _)) in TABLES.iter().enumerate().skip(1) {
            if one_minute {
                rows[i] = self.write_block(Some(first - first % seconds), dialect, &mut out[i]);
                continue;
            }
            self.coarse.clear();
            for e in &self.minutes.entries {
                let mut key = e.key;
                let b = bucket(e);
                key[..4].copy_from_slice(&(b - b % seconds).to_be_bytes());
                self.coarse.add(&key, e.sums);
            }
            self.sort_and_transpose(true);
            rows[i] = self.write_block(None, dialect, &mut out[i]);
        }
        self.minutes.clear();
        self.coarse.clear();
        self.release_scratch(folded);
        rows
    }

    /// Frees the scratch of a large hand-over (`SCRATCH_KEEP`), the fold's
    /// table too when it was used.
    fn release_scratch(&mut self, folded: bool) {
        fn release<T>(v: &mut Vec<T>) {
            if v.capacity() * std::mem::size_of::<T>() > SCRATCH_KEEP {
                *v = Vec::new();
            }
        }
        release(&mut self.order);
        release(&mut self.metas);
        release(&mut self.row_sets);
        release(&mut self.row_exporters);
        self.out_columns.iter_mut().for_each(release);
        if folded && self.coarse.bytes() > SCRATCH_KEEP {
            self.coarse = self.coarse.emptied();
        }
    }

    /// Sorts the minutes' (or the fold's) entries by key and lays them out
    /// as the block's columns: bucket, dimensions, Bytes, Packets, Flows.
    fn sort_and_transpose(&mut self, coarse: bool) {
        let table = if coarse { &self.coarse } else { &self.minutes };
        let entries = &table.entries;
        let word = |k: &Key, at: usize| u128::from_be_bytes(k[at..at + 16].try_into().unwrap_or_default());
        self.order.clear();
        for (i, e) in entries.iter().enumerate() {
            let tail = u64::from_be_bytes(e.key[32..40].try_into().unwrap_or_default());
            self.order.push((word(&e.key, 0), word(&e.key, 16), tail, i as u32));
        }
        // The first 40 bytes hold the default key whole; longer keys
        // (optional dimensions) compare the rest on ties.
        let rest = self.key_len > 40;
        self.order.sort_unstable_by(|a, b| {
            (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)).then_with(|| {
                if rest {
                    entries[a.3 as usize].key[40..].cmp(&entries[b.3 as usize].key[40..])
                } else {
                    std::cmp::Ordering::Equal
                }
            })
        });
        let n = self.order.len();
        let (time, rest) = self.out_columns.split_at_mut(1);
        let (dims, rest) = rest.split_at_mut(self.dims.len());
        let sums_from = rest.len() - 3;
        let sums = &mut rest[sums_from..];
        time[0].clear();
        time[0].reserve(n * 4);
        for (d, out) in self.dims.iter().zip(dims.iter_mut()) {
            out.clear();
            out.reserve(n * d.width);
        }
        for out in sums.iter_mut() {
            out.clear();
            out.reserve(n * 8);
        }
        // The entries are read in key order, at random: each is fetched
        // a few rows ahead.
        const AHEAD: usize = 8;
        let word_at = |k: &Key, at: usize| u32::from_be_bytes(k[at..at + 4].try_into().unwrap_or_default());
        let index = |k: &Key, at: Option<usize>| at.map_or(0, |at| word_at(k, at));
        let address_at = self.address_at;
        let address =
            |k: &Key| address_at.map_or(0, |at| u128::from_be_bytes(k[at..at + 16].try_into().unwrap_or_default()));
        self.row_sets.clear();
        self.row_exporters.clear();
        for (i, o) in self.order.iter().enumerate() {
            if let Some(next) = self.order.get(i + AHEAD) {
                prefetch(&entries[next.3 as usize]);
            }
            let e = &entries[o.3 as usize];
            time[0].extend_from_slice(&[e.key[3], e.key[2], e.key[1], e.key[0]]);
            for (d, out) in self.dims.iter().zip(dims.iter_mut()) {
                put_native(out, &e.key[d.at..], d.width, d.address);
            }
            sums[0].extend_from_slice(&e.sums.bytes.to_le_bytes());
            sums[1].extend_from_slice(&e.sums.packets.to_le_bytes());
            sums[2].extend_from_slice(&e.sums.flows.to_le_bytes());
            if let Some(at) = self.nets_at {
                self.row_sets.push([word_at(&e.key, at), word_at(&e.key, at + 4)]);
            }
            if self.metadata {
                let k = &e.key;
                self.row_exporters.push((address(k), index(k, self.in_if_at), index(k, self.out_if_at)));
            }
        }
        // The network columns, after the metadata ones (catalog order):
        // each row's sets are in its key.
        if self.nets_at.is_some() {
            let metadata_columns = self.columns.iter().filter(|c| matches!(c.source.record(), Some(0..=2))).count();
            let networks = &self.networks;
            let columns = self.columns.iter().filter_map(|c| c.source.network());
            let outs = meta_columns(&mut self.out_columns, self.dims.len()).skip(metadata_columns);
            for ((side, attr), out) in columns.zip(outs) {
                out.clear();
                let texts = self.row_sets.iter().map(|sets| networks.text(networks.set(sets[side]).record, attr));
                write_low_cardinality(texts, out);
            }
        }
        // The metadata columns, after the flow's dimensions (catalog
        // order): each row's records, as the snapshot has them now.
        if !self.metadata {
            return;
        }
        self.metas.clear();
        for &(address, in_if, out_if) in &self.row_exporters {
            let meta = self.snapshot.resolve(&address.to_be_bytes(), in_if, out_if);
            self.metas.push(meta);
        }
        let metas = &self.metas;
        self.meta_scratch.number(0, metas.iter().map(|m| m.exporter));
        self.meta_scratch.number(1, metas.iter().map(|m| m.in_if));
        self.meta_scratch.number(2, metas.iter().map(|m| m.out_if));
        let metas = self.columns.iter().filter(|c| matches!(c.source.record(), Some(0..=2)));
        let rows = &self.row_exporters;
        for (c, out) in metas.zip(meta_columns(&mut self.out_columns, self.dims.len())) {
            let kind = c.source.record().unwrap_or_default();
            out.clear();
            let address_of = |i: usize| rows[i].0;
            write_meta_column(c.source, kind, address_of, &self.snapshot, &mut self.meta_scratch, out);
        }
    }

    /// One Native block of the transposed rows: TimeReceived (`bucket` for
    /// every row when given), the dimensions, the sums.
    fn write_block(&self, bucket: Option<u32>, dialect: &Dialect, out: &mut Vec<u8>) -> usize {
        let rows = self.order.len();
        write_varuint(self.columns.len() as u64 + 4, out);
        write_varuint(rows as u64, out);
        write_string(b"TimeReceived", out);
        write_string(b"DateTime", out);
        match bucket {
            Some(b) => (0..rows).for_each(|_| out.extend_from_slice(&b.to_le_bytes())),
            None => out.extend_from_slice(&self.out_columns[0]),
        }
        for (c, data) in self.columns.iter().zip(&self.out_columns[1..]) {
            write_string(c.name.as_bytes(), out);
            write_string(dialect.type_name(c.kind).as_bytes(), out);
            out.extend_from_slice(data);
        }
        for (name, data) in ["Bytes", "Packets", "Flows"].iter().zip(&self.out_columns[1 + self.columns.len()..]) {
            write_string(name.as_bytes(), out);
            write_string(b"UInt64", out);
            out.extend_from_slice(data);
        }
        rows
    }
}

/// The metadata columns' buffers: those after the time and the flow's
/// dimensions, before the three sums.
fn meta_columns(out_columns: &mut [Vec<u8>], flow_dims: usize) -> impl Iterator<Item = &mut Vec<u8>> {
    let end = out_columns.len() - 3;
    out_columns[1 + flow_dims..end].iter_mut()
}

/// Whether two keys are equal, compared a word at a time (a comparison of
/// the arrays is a call to memcmp).
#[inline(always)]
fn same_key(a: &Key, b: &Key) -> bool {
    let word = |k: &Key, i: usize| u128::from_ne_bytes(k[i * 16..i * 16 + 16].try_into().unwrap_or_default());
    let tail = |k: &Key| u32::from_ne_bytes(k[80..84].try_into().unwrap_or_default());
    (0..5).all(|i| word(a, i) == word(b, i)) && tail(a) == tail(b)
}

/// Asks the CPU to bring `value`'s cache line closer (a hint: no effect
/// on what the program computes).
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and never faults;
    // the pointer comes from a reference. SSE is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(value as *const T as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The dimensions by how a key takes them (`Consolidator::key_parts`).
#[derive(Clone, Default)]
struct KeyParts {
    /// (column, offset in the key) of the numbers of 1, 2, 4, 8 and 16 bytes.
    numbers: [Vec<(usize, usize)>; 5],
    addresses: Vec<(usize, usize)>,
}

impl KeyParts {
    fn new(dims: &[Dim]) -> KeyParts {
        let mut parts = KeyParts::default();
        for d in dims {
            let part = (d.column, d.at);
            match (d.width, d.address) {
                (16, true) => parts.addresses.push(part),
                (1, _) => parts.numbers[0].push(part),
                (2, _) => parts.numbers[1].push(part),
                (4, _) => parts.numbers[2].push(part),
                (8, _) => parts.numbers[3].push(part),
                _ => parts.numbers[4].push(part),
            }
        }
        parts
    }

    /// Writes the last row's dimensions into `key`, big-endian (Native
    /// numbers are little-endian; addresses are in network order already).
    #[inline(always)]
    fn put(&self, key: &mut Key, columns: &Columns) {
        fn at<const W: usize>(key: &mut Key, at: usize, bytes: [u8; W]) {
            if let Some(to) = key.get_mut(at..at + W) {
                to.copy_from_slice(&bytes);
            }
        }
        for &(c, a) in &self.numbers[0] {
            at(key, a, columns.last_fixed::<1>(c));
        }
        for &(c, a) in &self.numbers[1] {
            at(key, a, u16::from_le_bytes(columns.last_fixed(c)).to_be_bytes());
        }
        for &(c, a) in &self.numbers[2] {
            at(key, a, u32::from_le_bytes(columns.last_fixed(c)).to_be_bytes());
        }
        for &(c, a) in &self.numbers[3] {
            at(key, a, u64::from_le_bytes(columns.last_fixed(c)).to_be_bytes());
        }
        for &(c, a) in &self.numbers[4] {
            at(key, a, u128::from_le_bytes(columns.last_fixed(c)).to_be_bytes());
        }
        for &(c, a) in &self.addresses {
            at(key, a, columns.last_fixed::<16>(c));
        }
    }
}

/// Appends the big-endian key bytes `from` as Native lays the value out.
#[inline(always)]
fn put_native(out: &mut Vec<u8>, from: &[u8], width: usize, address: bool) {
    match width {
        1 => out.push(from[0]),
        2 => out.extend_from_slice(&u16::from_be_bytes([from[0], from[1]]).to_le_bytes()),
        4 => out.extend_from_slice(&u32::from_be_bytes(from[..4].try_into().unwrap_or_default()).to_le_bytes()),
        8 => out.extend_from_slice(&u64::from_be_bytes(from[..8].try_into().unwrap_or_default()).to_le_bytes()),
        16 if address => out.extend_from_slice(&from[..16]),
        _ => out.extend_from_slice(&u128::from_be_bytes(from[..16].try_into().unwrap_or_default()).to_le_bytes()),
    }
}

/// The column names of a consolidated table's inserts, in block order.
pub fn column_names(dims: &[Column]) -> Vec<&'static str> {
    let mut names = vec!["TimeReceived"];
    names.extend(dims.iter().map(|d| d.name));
    names.extend(["Bytes", "Packets", "Flows"]);
    names
}

/// `prefetch` of every cache line `value` spans.
#[inline(always)]
fn prefetch_lines<T>(value: &T) {
    let start = value as *const T as *const u8;
    let size = std::mem::size_of::<T>();
    for at in (0..size).step_by(64).chain(std::iter::once(size.saturating_sub(1))) {
        // SAFETY: `at` is within `value`'s bytes.
        prefetch(unsafe { &*start.add(at) });
    }
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
        // (3600, 1), (3660, 1), (3600, 2), (7500, 1): four keys in five
        // rows, every row held back still, each counted as new.
        assert_eq!(c.len(), 5);
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
    fn many_keys_over_several_flushes_sum_as_a_reference_map_does() {
        // Draws that repeat (small ranges) over three minutes, flushed
        // three times: every flush's 1 m block equals a BTreeMap's sums.
        let mut shard = Shard::new(1 << 12);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..3 {
            let mut expected = std::collections::BTreeMap::new();
            for _ in 0..5000 {
                let second = 600 + next(180);
                let exporter = 1 + next(40) as u8;
                let bytes = 1 + next(1000);
                let mut f = flow(second, exporter, bytes, 0);
                f.set_in_if_index(next(3) as u32 * 70_000);
                shard.add(&f);
                let e = expected.entry((second as u32 / 60 * 60, exporter, f.in_if_index)).or_insert((0, 0, 0));
                *e = (e.0 + bytes, e.1 + 1, e.2 + 1);
            }
            let mut out = [Vec::new(), Vec::new(), Vec::new()];
            let rows = shard.c.write_blocks(&MODERN, &mut out);
            assert_eq!(rows[0], expected.len());
            let blocks = read_blocks(&out[0]).unwrap();
            let b = &blocks[0];
            let col = |name: &str| b.columns.iter().find(|c| c.0 == name).unwrap().2;
            let u32s = |name: &str| -> Vec<u32> {
                col(name).chunks(4).map(|v| u32::from_le_bytes(v.try_into().unwrap())).collect()
            };
            let u64s = |name: &str| -> Vec<u64> {
                col(name).chunks(8).map(|v| u64::from_le_bytes(v.try_into().unwrap())).collect()
            };
            let (times, in_if) = (u32s("TimeReceived"), u32s("InIfIndex"));
            let exporters: Vec<u8> = col("ExporterAddress").chunks(16).map(|a| a[15]).collect();
            let (bytes, packets, flows) = (u64s("Bytes"), u64s("Packets"), u64s("Flows"));
            let got: Vec<_> =
                (0..b.rows).map(|i| ((times[i], exporters[i], in_if[i]), (bytes[i], packets[i], flows[i]))).collect();
            let want: Vec<_> = expected.into_iter().collect();
            assert_eq!(got, want, "sums and order (the BTreeMap's order is the table's key)");
            assert!(shard.c.is_empty());
        }
    }

    #[test]
    fn a_full_map_asks_to_be_flushed_and_every_dimension_fits_the_key() {
        // The rows held back count as new keys until they are added.
        let keys = AHEAD as u8 + 2;
        let mut shard = Shard::new(keys.into());
        for _ in 0..10 {
            assert!(!shard.add(&flow(60, 1, 1, 1)), "the same key");
        }
        for exporter in 2..keys {
            assert!(!shard.add(&flow(60, exporter, 1, 1)), "{exporter} keys");
        }
        assert!(shard.add(&flow(60, keys, 1, 1)), "{keys} keys: full");
        let every: usize = catalog().iter().filter(|c| c.consolidated).map(|c| width(c.kind)).sum();
        assert!(every <= KEY_BYTES, "{every}");
        let mut out = [Vec::new(), Vec::new(), Vec::new()];
        let mut empty = Shard::new(2).c;
        assert_eq!(empty.write_blocks(&MODERN, &mut out), [0, 0, 0]);
        assert!(out.iter().all(Vec::is_empty));
    }
}
