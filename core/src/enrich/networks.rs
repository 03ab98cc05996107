//! Network attributes by address: one longest-prefix table merged from
//! every source, built on the control plane and read by the shards.
//!
//! What goes in, lowest priority first (a later one wins for the same
//! prefix, attribute by attribute): GeoIP and ASN databases (MaxMind
//! format: GeoLite2/GeoIP2 City, Country and ASN, IPinfo), remote network
//! sources, then `networks.subnets` from the config. Then each prefix
//! inherits what it leaves unset from the closest prefix holding it, so
//! that a longest-prefix match answers with every attribute at once.
//!
//! The table a shard reads is flat: the merged prefixes cut the address
//! space into ranges, each with one attribute set; IPv4 ranges (32-bit
//! starts) and IPv6 ranges (128-bit starts) are sorted, indexed by their
//! first 20 bits, and searched by bisection within a bucket. One lookup per
//! address, no per-flow database decoding (perf/RESULTS.md has its cost
//! beside a `prefix-trie` map of the same prefixes).
//!
//! Attribute sets are interned: a set is a record (the eight strings, by
//! string id) and an AS number. A record's store id (`StoredId`, a hash of
//! its strings) is what the raw table stores per flow (`SrcNetRecord`,
//! `DstNetRecord`); the strings go once to the `network_records` table.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use super::metadata::content_id;
use crate::config::NetworkInfo;
use crate::flow::Addr;
use crate::wire::state::KeyHash;

/// Attributes of a record, in `NetAttr` order.
pub const ATTRS: usize = 8;

/// A network attribute, as a column (`schema::NET_COLUMNS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetAttr {
    Name = 0,
    Role,
    Site,
    Region,
    Tenant,
    Country,
    State,
    City,
}

/// The IPv4-mapped range of the 128-bit space: `::ffff:0:0/96`.
const V4_BASE: u128 = 0xffff_0000_0000;
const V4_LAST: u128 = V4_BASE | 0xffff_ffff;

/// Strings by id; 0 is the empty string.
#[derive(Clone, Debug)]
struct Strings {
    list: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings { list: vec!["".into()], ids: HashMap::from([("".into(), 0)]) }
    }
}

impl Strings {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.list.len() as u32;
        self.list.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }
}

/// An attribute set under construction: string ids and the AS number (0
/// and the empty string: unset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Entry {
    attrs: [u32; ATTRS],
    asn: u32,
}

impl Entry {
    /// What `over` sets wins.
    fn overlay(&mut self, over: &Entry) {
        for (a, o) in self.attrs.iter_mut().zip(over.attrs) {
            if o != 0 {
                *a = o;
            }
        }
        if over.asn != 0 {
            self.asn = over.asn;
        }
    }

    /// What `self` leaves unset comes from `parent`.
    fn inherit(&mut self, parent: &Entry) {
        for (a, p) in self.attrs.iter_mut().zip(parent.attrs) {
            if *a == 0 {
                *a = p;
            }
        }
        if self.asn == 0 {
            self.asn = parent.asn;
        }
    }
}

/// A MaxMind database's record (GeoLite2/GeoIP2 City, Country, ASN):
/// only the fields read, borrowed from the file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MaxMindRecord<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    subdivisions: Option<Vec<IsoCode<'a>>>,
    #[serde(borrow)]
    city: Option<Named<'a>>,
    autonomous_system_number: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IsoCode<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    names: Option<English<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct English<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

/// An IPinfo database's record: strings, the AS number as `AS64500`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IpinfoRecord<'a> {
    #[serde(borrow)]
    country: Option<&'a str>,
    #[serde(borrow)]
    region: Option<&'a str>,
    #[serde(borrow)]
    city: Option<&'a str>,
    #[serde(borrow)]
    asn: Option<&'a str>,
}

/// What a record says, whichever the layout.
#[derive(Debug, Default)]
struct GeoFields<'a> {
    country: Option<&'a str>,
    state: Option<&'a str>,
    city: Option<&'a str>,
    asn: Option<u32>,
}

impl<'a> From<MaxMindRecord<'a>> for GeoFields<'a> {
    fn from(r: MaxMindRecord<'a>) -> GeoFields<'a> {
        GeoFields {
            country: r.country.and_then(|c| c.iso_code).or(r.registered_country.and_then(|c| c.iso_code)),
            state: r.subdivisions.and_then(|s| s.into_iter().next()).and_then(|s| s.iso_code),
            city: r.city.and_then(|c| c.names).and_then(|n| n.en),
            asn: r.autonomous_system_number,
        }
    }
}

impl<'a> From<IpinfoRecord<'a>> for GeoFields<'a> {
    fn from(r: IpinfoRecord<'a>) -> GeoFields<'a> {
        let asn = r.asn.and_then(|t| t.strip_prefix("AS").unwrap_or(t).parse::<u32>().ok());
        GeoFields { country: r.country, state: r.region, city: r.city, asn }
    }
}

/// What a database is for: the location (`networks.geo_databases`) or the
/// AS number (`networks.asn_databases`). Each reads only its own fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeoKind {
    Location,
    Asn,
}

/// What reading a database gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseRead {
    /// The database's type, from its metadata (`GeoLite2-City`).
    pub database_type: String,
    /// Networks added, and distinct records decoded.
    pub networks: usize,
    pub records: usize,
}

/// Prefixes, merged and inherited, then flattened (`build`).
#[derive(Debug, Default)]
pub struct Builder {
    strings: Strings,
    /// The attribute sets as added (a database's 458 k records for 3.4 M
    /// networks), so that a prefix takes 32 bytes, not 64.
    added: Interner,
    /// (network, length in the 128-bit space, order added, its set in `added`).
    prefixes: Vec<(u128, u8, u32, u32)>,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Prefixes added so far (a prefix added twice counts twice).
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    fn entry(&mut self, info: &NetworkInfo) -> Entry {
        let mut e = Entry { asn: info.asn, ..Entry::default() };
        let texts =
            [&info.name, &info.role, &info.site, &info.region, &info.tenant, &info.country, &info.state, &info.city];
        for (a, t) in e.attrs.iter_mut().zip(texts) {
            *a = self.strings.id(t);
        }
        e
    }

    /// Adds a network (`network`/`length` in the 128-bit space, IPv4
    /// mapped: `config::parse_cidr`). Networks added later win over earlier
    /// ones for the same prefix.
    pub fn add(&mut self, network: u128, length: u8, info: &NetworkInfo) {
        let e = self.entry(info);
        self.push(network, length, e);
    }

    fn push(&mut self, network: u128, length: u8, e: Entry) {
        let id = self.added.id(e);
        self.push_id(network, length, id);
    }

    fn push_id(&mut self, network: u128, length: u8, id: u32) {
        let length = length.min(128);
        let mask = if length == 0 { 0 } else { u128::MAX << (128 - length) };
        let order = self.prefixes.len() as u32;
        self.prefixes.push((network & mask, length, order, id));
    }

    /// Adds every network of a MaxMind-format database (`bytes`: the whole
    /// file), each of its distinct records decoded once. An error when
    /// the file is not such a database; the networks read before a
    /// corrupt part stay out (nothing is added then).
    pub fn add_database(&mut self, kind: GeoKind, bytes: &[u8]) -> Result<DatabaseRead, String> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| format!("not a MaxMind database: {e}"))?;
        let mut read =
            DatabaseRead { database_type: reader.metadata().database_type.clone(), ..DatabaseRead::default() };
        // IPinfo's databases say so in their type; MaxMind's are the rest.
        let ipinfo = read.database_type.to_ascii_lowercase().contains("ipinfo");
        let options = maxminddb::WithinOptions::default().skip_empty_values();
        let networks = reader.networks(options).map_err(|e| format!("cannot walk the database: {e}"))?;
        let mut by_offset: HashMap<usize, Option<u32>> = HashMap::new();
        let before = self.prefixes.len();
        let corrupt = |b: &mut Builder, e: maxminddb::MaxMindDbError| {
            b.prefixes.truncate(before);
            format!("corrupt database: {e}")
        };
        for item in networks {
            let item = match item {
                Ok(i) => i,
                Err(e) => return Err(corrupt(self, e)),
            };
            let network = match item.network() {
                Ok(n) => n,
                Err(e) => return Err(corrupt(self, e)),
            };
            let Some(offset) = item.offset() else { continue };
            let entry = match by_offset.get(&offset) {
                Some(e) => *e,
                None => {
                    // A record that does not decode is left out, as one
                    // without the fields.
                    let fields: Option<GeoFields> = if ipinfo {
                        item.decode::<IpinfoRecord>().ok().flatten().map(GeoFields::from)
                    } else {
                        item.decode::<MaxMindRecord>().ok().flatten().map(GeoFields::from)
                    };
                    let e = fields.map(|f| self.geo_entry(kind, &f)).filter(|e| *e != Entry::default());
                    let id = e.map(|e| self.added.id(e));
                    by_offset.insert(offset, id);
                    id
                }
            };
            let Some(entry) = entry else { continue };
            let (net, len) = match network {
                ipnetwork::IpNetwork::V4(n) => (V4_BASE | u32::from(n.network()) as u128, 96 + n.prefix()),
                ipnetwork::IpNetwork::V6(n) => (u128::from(n.network()), n.prefix()),
            };
            self.push_id(net, len, entry);
        }
        read.records = by_offset.len();
        read.networks = self.prefixes.len() - before;
        Ok(read)
    }

    fn geo_entry(&mut self, kind: GeoKind, f: &GeoFields) -> Entry {
        let mut e = Entry::default();
        match kind {
            GeoKind::Asn => e.asn = f.asn.unwrap_or(0),
            GeoKind::Location => {
                if let Some(c) = f.country.filter(|c| c.len() == 2) {
                    e.attrs[NetAttr::Country as usize] = self.strings.id(&c.to_ascii_uppercase());
                }
                if let Some(s) = f.state {
                    e.attrs[NetAttr::State as usize] = self.strings.id(s);
                }
                if let Some(c) = f.city {
                    e.attrs[NetAttr::City as usize] = self.strings.id(c);
                }
            }
        }
        e
    }

    /// The table: prefixes merged (the later added wins, per attribute),
    /// inherited from their parents, flattened to ranges.
    pub fn build(mut self) -> Networks {
        // Same prefix: in the order added, merged into the first.
        self.prefixes.sort_unstable_by_key(|p| (p.0, p.1, p.2));
        let added = &mut self.added;
        self.prefixes.dedup_by(|later, kept| {
            if later.0 != kept.0 || later.1 != kept.1 {
                return false;
            }
            let mut e = added.entries[kept.3 as usize];
            e.overlay(&added.entries[later.3 as usize]);
            kept.3 = added.id(e);
            true
        });
        let prefixes = self.prefixes.len();
        let merged = std::mem::take(&mut self.prefixes);
        let added = std::mem::take(&mut self.added);
        let mut sets = Interner::default();
        // Ranges of the whole space: (first address, set); set 0 is none.
        let mut ranges: Vec<(u128, u32)> = vec![(0, 0)];
        let emit = |start: u128, set: u32, ranges: &mut Vec<(u128, u32)>| match ranges.last_mut() {
            Some(last) if last.0 == start => last.1 = set,
            Some(last) if last.1 == set => {}
            _ => ranges.push((start, set)),
        };
        // The prefixes holding the current one: (last address, set, attributes).
        let mut stack: Vec<(u128, u32, Entry)> = Vec::new();
        for (net, len, _, id) in merged {
            let mut e = added.entries[id as usize];
            let last = net | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            while let Some(&(end, _, _)) = stack.last().filter(|s| s.0 < net) {
                stack.pop();
                let below = stack.last().map_or(0, |s| s.1);
                emit(end + 1, below, &mut ranges);
            }
            if let Some((_, _, parent)) = stack.last() {
                e.inherit(parent);
            }
            let set = sets.id(e);
            emit(net, set, &mut ranges);
            stack.push((last, set, e));
        }
        while let Some((end, _, _)) = stack.pop() {
            if end == u128::MAX {
                break;
            }
            let below = stack.last().map_or(0, |s| s.1);
            emit(end + 1, below, &mut ranges);
        }
        drop(added);
        // IPv4: the ranges within ::ffff:0:0/96, as 32-bit starts.
        let first_v4 = ranges.partition_point(|r| r.0 <= V4_BASE) - 1;
        let mut v4: Vec<(u32, u32)> = vec![(0, ranges[first_v4].1)];
        for &(start, set) in ranges[first_v4 + 1..].iter().take_while(|r| r.0 <= V4_LAST) {
            v4.push(((start - V4_BASE) as u32, set));
        }
        // IPv6: the rest (IPv4 addresses never search them).
        let after_v4 = ranges.partition_point(|r| r.0 <= V4_LAST);
        let mut v6: Vec<(u128, u32)> = ranges[..=first_v4].to_vec();
        if ranges.get(after_v4).is_none_or(|r| r.0 != V4_LAST + 1) {
            v6.push((V4_LAST + 1, ranges[after_v4 - 1].1));
        }
        v6.extend_from_slice(&ranges[after_v4..]);
        drop(ranges);
        let Interner { entries, .. } = sets;
        let strings = self.strings;
        // Records: the sets' strings, without the AS number.
        let mut record_ids: HashMap<[u32; ATTRS], u32> = HashMap::from([([0; ATTRS], 0)]);
        let mut records: Vec<[u32; ATTRS]> = vec![[0; ATTRS]];
        let mut set_list = Vec::with_capacity(entries.len());
        for e in &entries {
            let record = *record_ids.entry(e.attrs).or_insert_with(|| {
                records.push(e.attrs);
                records.len() as u32 - 1
            });
            set_list.push(NetSet { record, asn: e.asn });
        }
        let stored_ids: Vec<u64> = records
            .iter()
            .map(|r| {
                if *r == [0; ATTRS] {
                    return 0;
                }
                let fields: Vec<&[u8]> = r.iter().map(|&s| strings.list[s as usize].as_bytes()).collect();
                content_id(3, &fields)
            })
            .collect();
        Networks {
            v4: Ranges::new(&v4, |a| (a >> (32 - BUCKET_BITS)) as usize),
            v6_blocks: Blocks::new(&v6),
            v6: Ranges::new(&v6, |a| (a >> (128 - BUCKET_BITS)) as usize),
            sets: set_list.into(),
            records: records.into(),
            stored_ids: stored_ids.into(),
            strings: strings.list.into(),
            prefixes,
            generation: 0,
        }
    }
}

/// Attribute sets by content; 0 is the empty set.
#[derive(Debug)]
struct Interner {
    ids: HashMap<Entry, u32>,
    entries: Vec<Entry>,
}

impl Default for Interner {
    fn default() -> Self {
        Interner { ids: HashMap::from([(Entry::default(), 0)]), entries: vec![Entry::default()] }
    }
}

impl Interner {
    fn id(&mut self, e: Entry) -> u32 {
        let next = self.entries.len() as u32;
        let id = *self.ids.entry(e).or_insert(next);
        if id == next {
            self.entries.push(e);
        }
        id
    }
}

/// One attribute set: its record (strings) and AS number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetSet {
    pub record: u32,
    pub asn: u32,
}

/// Bits of an address that pick its bucket in a `Ranges` index: 2^20
/// buckets (4 MiB of index per family), so that a bucket of GeoLite2
/// City's IPv4 ranges holds about three and its search reads one cache
/// line (perf/RESULTS.md, "networks": 53 ns per lookup with 2^16 buckets).
pub const BUCKET_BITS: u32 = 20;

/// Sorted (range start, set) pairs (a range runs to the next start), with
/// the range holding the first address of each bucket.
#[derive(Clone, Debug)]
struct Ranges<K> {
    /// Per bucket (and one past the last), the range holding its first address.
    index: Box<[u32]>,
    /// The start and the set side by side: the set comes with the line the
    /// search read last.
    pairs: Box<[(K, u32)]>,
}

impl<K: Copy + Ord + Default> Ranges<K> {
    fn new(ranges: &[(K, u32)], bucket: impl Fn(K) -> usize) -> Ranges<K> {
        let pairs: Box<[(K, u32)]> = ranges.into();
        let mut index = vec![0u32; (1 << BUCKET_BITS) + 1];
        // Bucket b's first range: the last one starting in a bucket before b
        // (ranges starting exactly at b's first address are found by the
        // search from there), by walking the ranges once.
        let mut r = 0usize;
        for (b, slot) in index.iter_mut().enumerate().take(1 << BUCKET_BITS) {
            while r + 1 < pairs.len() && bucket(pairs[r + 1].0) < b {
                r += 1;
            }
            *slot = r as u32;
        }
        index[1 << BUCKET_BITS] = pairs.len().saturating_sub(1) as u32;
        Ranges { index: index.into(), pairs }
    }

    #[inline(always)]
    fn get(&self, a: K, b: usize) -> u32 {
        self.search(a, self.index[b] as usize, self.index[b + 1] as usize)
    }

    /// The set of the last start <= a within [lo, hi] (pairs[lo].0 <= a).
    #[inline(always)]
    fn search(&self, a: K, lo: usize, hi: usize) -> u32 {
        let mut base = lo;
        let mut n = hi - lo + 1;
        while n > 1 {
            let half = n / 2;
            if self.pairs[base + half].0 <= a {
                base += half;
            }
            n -= half;
        }
        self.pairs[base].1
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn bytes(&self) -> usize {
        self.index.len() * 4 + self.pairs.len() * std::mem::size_of::<(K, u32)>()
    }
}

/// IPv6 ranges by /48 and by /32 block: IPv6 space is allocated in few
/// places (2001::/16, 2400::/12, 2a00::/12...), so a 20-bit bucket can
/// hold thousands of ranges. A /48 where ranges start maps to the pairs to
/// search (from the range holding its first address to the last one
/// starting in it); else its /32 block does, cut again in 256 by the next
/// 8 bits (a /40 each) when it holds more than `SUB_MIN`; a block without
/// starts falls back to the bucket.
#[derive(Clone, Debug, Default)]
struct Blocks {
    /// /48 → (first pair, last pair), for the /48s that hold starts
    /// (GeoLite2 City's IPv6 networks are mostly /48 or shorter: a few
    /// pairs each).
    by48: HashMap<u64, (u32, u32), KeyHash>,
    /// Block → (first pair, last pair, where its sub-index starts or u32::MAX).
    map: HashMap<u64, (u32, u32, u32), KeyHash>,
    /// 257 entries per cut block: the range holding each /40's first address.
    sub: Vec<u32>,
}

/// A block with more pairs than this gets a sub-index.
const SUB_MIN: u32 = 16;

/// The maps' keys, mixed (splitmix64's finalizer, a bijection): address
/// bits end in zeros (a /40's third group is `xx00`), which the maps'
/// multiplicative hash keeps in its low bits, the ones that pick the slot
/// (measured: 1.3 µs per IPv6 lookup unmixed).
#[inline(always)]
fn mix(k: u64) -> u64 {
    let k = (k ^ (k >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let k = (k ^ (k >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    k ^ (k >> 31)
}

impl Blocks {
    fn new(pairs: &[(u128, u32)]) -> Blocks {
        let mut by48: HashMap<u64, (u32, u32), KeyHash> = HashMap::with_hasher(KeyHash::default());
        for (i, &(start, _)) in pairs.iter().enumerate().skip(1) {
            let key = (start >> 80) as u64;
            by48.entry(mix(key)).and_modify(|e| e.1 = i as u32).or_insert_with(|| {
                let holding = if start == (key as u128) << 80 { i } else { i - 1 };
                (holding as u32, i as u32)
            });
        }
        let mut map: HashMap<u64, (u32, u32, u32), KeyHash> = HashMap::with_hasher(KeyHash::default());
        for (i, &(start, _)) in pairs.iter().enumerate().skip(1) {
            let block = (start >> 96) as u32;
            let block_start = (block as u128) << 96;
            map.entry(mix(block as u64)).and_modify(|e| e.1 = i as u32).or_insert_with(|| {
                // The range holding the block's first address.
                let holding = if start == block_start { i } else { i - 1 };
                (holding as u32, i as u32, u32::MAX)
            });
        }
        let mut sub = Vec::new();
        for e in map.values_mut() {
            if e.1 - e.0 <= SUB_MIN {
                continue;
            }
            e.2 = sub.len() as u32;
            let mut r = e.0 as usize;
            let cut = |start: u128| ((start >> 88) & 0xff) as usize;
            for part in 0..256usize {
                // The last pair starting in this block before `part`.
                while r < e.1 as usize && cut(pairs[r + 1].0) < part {
                    r += 1;
                }
                sub.push(r as u32);
            }
            sub.push(e.1);
        }
        Blocks { by48, map, sub }
    }

    /// The pairs to search for `a`, if its block holds starts.
    #[inline(always)]
    fn span(&self, a: u128) -> Option<(usize, usize)> {
        if let Some(&(lo, hi)) = self.by48.get(&mix((a >> 80) as u64)) {
            return Some((lo as usize, hi as usize));
        }
        let &(lo, hi, at) = self.map.get(&mix((a >> 96) as u64))?;
        if at == u32::MAX {
            return Some((lo as usize, hi as usize));
        }
        let part = at as usize + ((a >> 88) & 0xff) as usize;
        Some((self.sub[part] as usize, self.sub[part + 1] as usize))
    }

    fn bytes(&self) -> usize {
        self.by48.capacity() * 17 + self.map.capacity() * 20 + self.sub.len() * 4
    }
}

/// The merged table the shards read: immutable, replaced whole.
#[derive(Clone, Debug)]
pub struct Networks {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
    v6_blocks: Blocks,
    pub sets: Arc<[NetSet]>,
    /// Per record, its attributes' string ids (`NetAttr` order).
    pub records: Arc<[[u32; ATTRS]]>,
    /// Per record, its store id (0 for the empty record).
    pub stored_ids: Arc<[u64]>,
    strings: Arc<[Box<str>]>,
    /// Distinct prefixes merged in.
    pub prefixes: usize,
    /// Counts publications (set by the control plane).
    pub generation: u64,
}

impl Default for Networks {
    fn default() -> Self {
        Builder::new().build()
    }
}

impl Networks {
    /// The attribute set of `addr`'s longest matching prefix; 0 when none.
    #[inline]
    pub fn lookup(&self, addr: &Addr) -> u32 {
        let a = u128::from_be_bytes(*addr);
        if a >> 32 == V4_BASE >> 32 {
            let v4 = a as u32;
            self.v4.get(v4, (v4 >> (32 - BUCKET_BITS)) as usize)
        } else {
            match self.v6_blocks.span(a) {
                Some((lo, hi)) => self.v6.search(a, lo, hi),
                None => self.v6.get(a, (a >> (128 - BUCKET_BITS)) as usize),
            }
        }
    }

    #[inline]
    pub fn set(&self, set: u32) -> NetSet {
        self.sets.get(set as usize).copied().unwrap_or_default()
    }

    /// The store id of set `set`'s record.
    #[inline]
    pub fn stored_id(&self, set: u32) -> u64 {
        let record = self.set(set).record as usize;
        self.stored_ids.get(record).copied().unwrap_or(0)
    }

    /// Attribute `attr` of record `record`.
    pub fn text(&self, record: u32, attr: NetAttr) -> &str {
        let id = self.records.get(record as usize).map_or(0, |r| r[attr as usize]);
        self.strings.get(id as usize).map_or("", |s| s)
    }

    /// Record `record` as its attributes.
    pub fn info(&self, record: u32) -> NetworkInfo {
        let t = |a| self.text(record, a).to_string();
        NetworkInfo {
            name: t(NetAttr::Name),
            role: t(NetAttr::Role),
            site: t(NetAttr::Site),
            region: t(NetAttr::Region),
            tenant: t(NetAttr::Tenant),
            country: t(NetAttr::Country),
            state: t(NetAttr::State),
            city: t(NetAttr::City),
            asn: 0,
        }
    }

    /// Ranges in the lookup table (IPv4, IPv6).
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    /// Bytes held: the ranges, sets, records and strings.
    pub fn bytes(&self) -> usize {
        self.v4.bytes()
            + self.v6.bytes()
            + self.v6_blocks.bytes()
            + self.sets.len() * 8
            + self.records.len() * (ATTRS * 4 + 8)
            + self.strings.iter().map(|s| s.len() + 16).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cidr;
    use crate::flow::addr_from_ip;

    fn info(name: &str, country: &str, asn: u32) -> NetworkInfo {
        NetworkInfo { name: name.into(), country: country.into(), asn, ..NetworkInfo::default() }
    }

    fn add(b: &mut Builder, subnet: &str, i: NetworkInfo) {
        let (net, len) = parse_cidr(subnet).unwrap();
        b.add(u128::from(net), len, &i);
    }

    fn at(n: &Networks, ip: &str) -> (String, String, u32) {
        let set = n.set(n.lookup(&addr_from_ip(ip.parse().unwrap())));
        (n.text(set.record, NetAttr::Name).into(), n.text(set.record, NetAttr::Country).into(), set.asn)
    }

    #[test]
    fn the_longest_prefix_wins_and_inherits_what_it_leaves_unset() {
        let mut b = Builder::new();
        add(&mut b, "10.0.0.0/8", info("corp", "FR", 64500));
        add(&mut b, "10.1.0.0/16", info("paris", "", 0));
        add(&mut b, "10.1.2.0/24", info("", "DE", 0));
        add(&mut b, "2001:db8::/32", info("v6", "NL", 64501));
        add(&mut b, "2001:db8:1::/48", info("v6-sub", "", 0));
        let n = b.build();
        assert_eq!(at(&n, "10.9.9.9"), ("corp".into(), "FR".into(), 64500));
        assert_eq!(at(&n, "10.1.9.9"), ("paris".into(), "FR".into(), 64500));
        assert_eq!(at(&n, "10.1.2.3"), ("paris".into(), "DE".into(), 64500));
        assert_eq!(at(&n, "10.1.3.0"), ("paris".into(), "FR".into(), 64500), "after the /24");
        assert_eq!(at(&n, "10.2.0.0"), ("corp".into(), "FR".into(), 64500), "after the /16");
        assert_eq!(at(&n, "11.0.0.0"), (String::new(), String::new(), 0));
        assert_eq!(at(&n, "9.255.255.255"), (String::new(), String::new(), 0));
        assert_eq!(at(&n, "2001:db8:1::5"), ("v6-sub".into(), "NL".into(), 64501));
        assert_eq!(at(&n, "2001:db8:2::5"), ("v6".into(), "NL".into(), 64501));
        assert_eq!(at(&n, "2001:db9::"), (String::new(), String::new(), 0));
        assert_eq!(n.prefixes, 5);
        assert_eq!(n.stored_id(0), 0, "no network, no record");
        let paris = n.lookup(&addr_from_ip("10.1.9.9".parse().unwrap()));
        assert_ne!(n.stored_id(paris), 0);
    }

    #[test]
    fn a_later_source_wins_per_attribute_for_the_same_prefix() {
        let mut b = Builder::new();
        // As the control plane adds them: databases, sources, config.
        add(&mut b, "192.0.2.0/24", NetworkInfo { country: "US".into(), city: "Reston".into(), ..Default::default() });
        add(&mut b, "192.0.2.0/24", info("from-source", "", 64500));
        add(&mut b, "192.0.2.0/24", info("from-config", "FR", 0));
        let n = b.build();
        let set = n.set(n.lookup(&addr_from_ip("192.0.2.77".parse().unwrap())));
        let i = n.info(set.record);
        assert_eq!((i.name.as_str(), i.country.as_str(), i.city.as_str()), ("from-config", "FR", "Reston"));
        assert_eq!(set.asn, 64500);
    }

    #[test]
    fn edges_of_the_space_and_a_default_route() {
        let mut b = Builder::new();
        add(&mut b, "::/0", info("everything", "", 0));
        add(&mut b, "0.0.0.0/0", info("all-v4", "", 0));
        add(&mut b, "255.255.255.255/32", info("broadcast", "", 0));
        add(&mut b, "0.0.0.0/32", info("zero", "", 0));
        add(&mut b, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", info("top", "", 0));
        let n = b.build();
        assert_eq!(at(&n, "255.255.255.255").0, "broadcast");
        assert_eq!(at(&n, "255.255.255.254").0, "all-v4");
        assert_eq!(at(&n, "0.0.0.0").0, "zero");
        assert_eq!(at(&n, "0.0.0.1").0, "all-v4");
        assert_eq!(at(&n, "::1").0, "everything");
        assert_eq!(at(&n, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").0, "top");
        assert_eq!(at(&n, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe").0, "everything");
        let empty = Networks::default();
        assert_eq!(empty.lookup(&addr_from_ip("192.0.2.1".parse().unwrap())), 0);
        assert_eq!(empty.lookup(&addr_from_ip("2001:db8::1".parse().unwrap())), 0);
    }

    /// The table answers as a plain longest-prefix scan does, for random
    /// prefixes and addresses.
    #[test]
    fn the_flat_table_matches_a_longest_prefix_scan() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..20 {
            let mut b = Builder::new();
            let mut nets: Vec<(u128, u8, NetworkInfo)> = Vec::new();
            for i in 0..200 {
                let v4 = next() % 3 != 0;
                let (net, len) = if v4 {
                    let len = (next() % 33) as u8;
                    // Few distinct high bits, so that prefixes nest.
                    (V4_BASE | ((next() as u32) & 0xf0f0_ff00) as u128, 96 + len)
                } else {
                    (
                        ((0x2001_0db8 + next() % 3) as u128) << 96 | (next() as u128 & 0xf30f_ff0f) << 64,
                        (next() % 129) as u8,
                    )
                };
                let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                let i = info(&format!("n{round}-{i}"), "", (next() % 4) as u32);
                b.add(net, len, &i);
                nets.push((net & mask, len, i));
            }
            let table = b.build();
            for _ in 0..2000 {
                let a = match next() % 3 {
                    0 => V4_BASE | (next() as u32 & 0xf0f0_ffff) as u128,
                    1 => {
                        ((0x2001_0db8 + next() % 3) as u128) << 96
                            | (next() as u128 & 0xf30f_ff0f) << 64
                            | next() as u128 & 0xff
                    }
                    _ => nets[(next() % nets.len() as u64) as usize].0,
                };
                // The scan: the longest match, inheriting from shorter ones,
                // the last added winning among equal prefixes.
                let mut matches: Vec<(u8, usize)> = nets
                    .iter()
                    .enumerate()
                    .filter(|(_, (net, len, _))| {
                        let mask = if *len == 0 { 0 } else { u128::MAX << (128 - len) };
                        a & mask == *net
                    })
                    .map(|(i, (_, len, _))| (*len, i))
                    .collect();
                matches.sort();
                let (mut name, mut asn) = (String::new(), 0);
                for (_, i) in matches {
                    let n = &nets[i].2;
                    name = n.name.clone();
                    if n.asn != 0 {
                        asn = n.asn;
                    }
                }
                let set = table.set(table.lookup(&a.to_be_bytes()));
                assert_eq!(
                    (table.text(set.record, NetAttr::Name), set.asn),
                    (name.as_str(), asn),
                    "round {round}, {:x}",
                    a
                );
            }
        }
    }

    #[test]
    fn garbage_is_not_a_database() {
        let mut b = Builder::new();
        assert!(b.add_database(GeoKind::Location, b"not a database").is_err());
        assert!(b.add_database(GeoKind::Asn, &[0u8; 4096]).is_err());
        assert!(b.is_empty());
    }
}
