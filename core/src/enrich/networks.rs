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
//! space into ranges, each with one attribute set (neighbours with the
//! same set are one range). IPv4 ranges (32-bit starts) are sorted,
//! indexed by their first 20 bits, and searched by bisection within a
//! bucket; IPv6 ranges (128-bit starts) hang under a path-compressed
//! multibit trie (`Trie6`). One lookup per address, no per-flow database
//! decoding (perf/RESULTS.md has its cost beside a `prefix-trie` map of
//! the same prefixes).
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
use crate::consolidate::prefetch;
use crate::flow::Addr;

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

/// Whether `a` is an IPv4 address (within `::ffff:0:0/96`).
#[inline(always)]
pub fn is_mapped_v4(a: u128) -> bool {
    a >> 32 == V4_BASE >> 32
}

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
        let ranges =
            flatten(merged.into_iter().map(|(net, len, _, id)| (net, len, id)), |id, parent: Option<&Entry>| {
                let mut e = added.entries[id as usize];
                if let Some(parent) = parent {
                    e.inherit(parent);
                }
                (sets.id(e), e)
            });
        drop(added);
        let table = PrefixTable::new(&ranges);
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
            table,
            sets: set_list.into(),
            records: records.into(),
            stored_ids: stored_ids.into(),
            strings: strings.list.into(),
            prefixes,
            generation: 0,
        }
    }
}

/// Cuts sorted, distinct prefixes `(network, length, item)` (`::ffff:0:0/96`
/// holding IPv4) into ranges of the whole space, `(first address, id)`:
/// a range gets the id of the most specific prefix holding it, 0 where
/// none does. `id_of(item, parent)` numbers a prefix, given what it
/// returned for the closest prefix holding it (`S`: what children inherit).
/// Neighbours with the same id are one range.
pub fn flatten<T, S>(
    prefixes: impl IntoIterator<Item = (u128, u8, T)>,
    mut id_of: impl FnMut(T, Option<&S>) -> (u32, S),
) -> Vec<(u128, u32)> {
    let mut ranges: Vec<(u128, u32)> = vec![(0, 0)];
    // A range starting where the last one does replaces it; one with the
    // id of the range before it extends that one.
    let emit = |start: u128, id: u32, ranges: &mut Vec<(u128, u32)>| {
        let n = ranges.len();
        if ranges[n - 1].0 == start {
            ranges[n - 1].1 = id;
            if n >= 2 && ranges[n - 2].1 == id {
                ranges.pop();
            }
        } else if ranges[n - 1].1 != id {
            ranges.push((start, id));
        }
    };
    // The prefixes holding the current one: (last address, id, state).
    let mut stack: Vec<(u128, u32, S)> = Vec::new();
    for (net, len, item) in prefixes {
        let last = net | u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
        while let Some(end) = stack.last().map(|s| s.0).filter(|&end| end < net) {
            stack.pop();
            let below = stack.last().map_or(0, |s| s.1);
            emit(end + 1, below, &mut ranges);
        }
        let (id, state) = id_of(item, stack.last().map(|s| &s.2));
        emit(net, id, &mut ranges);
        stack.push((last, id, state));
    }
    while let Some((end, _, _)) = stack.pop() {
        if end == u128::MAX {
            break;
        }
        let below = stack.last().map_or(0, |s| s.1);
        emit(end + 1, below, &mut ranges);
    }
    ranges
}

/// Ranges of the whole space as a shard searches them: IPv4 ranges as
/// 32-bit starts under a bucket index (2^20 buckets by default, 2^18 in
/// the RIB's), IPv6 ranges under a `Trie6`.
#[derive(Clone, Debug)]
pub struct PrefixTable {
    v4: Ranges,
    v6: Trie6,
}

impl PrefixTable {
    /// `ranges` as `flatten` makes them.
    pub fn new(ranges: &[(u128, u32)]) -> PrefixTable {
        PrefixTable::with_roots(ranges, BUCKET_BITS, ROOT_BITS, |_| 0)
    }

    /// With `v4_bits` for the IPv4 buckets (`BUCKET_BITS`: 4 MiB of index,
    /// about a range per bucket for a large table; each bit less halves it
    /// and doubles the ranges a bucket's search reads), `v6_bits` for the
    /// IPv6 trie's root (`ROOT_BITS`: 8 MiB of slots, for the fastest
    /// lookups; 16: 512 KiB, and a level more where the first 16 bits
    /// crowd), and beside each IPv6 range's id a word derived from it,
    /// `extra(id)`, that `lookup6` reads with the id.
    pub fn with_roots(ranges: &[(u128, u32)], v4_bits: u32, v6_bits: u32, extra: impl Fn(u32) -> u32) -> PrefixTable {
        // IPv4: the ranges within ::ffff:0:0/96, as 32-bit starts.
        let first_v4 = ranges.partition_point(|r| r.0 <= V4_BASE) - 1;
        let mut v4: Vec<(u32, u32)> = vec![(0, ranges[first_v4].1)];
        for &(start, id) in ranges[first_v4 + 1..].iter().take_while(|r| r.0 <= V4_LAST) {
            v4.push(((start - V4_BASE) as u32, id));
        }
        // IPv6: the rest (IPv4 addresses never search them).
        let after_v4 = ranges.partition_point(|r| r.0 <= V4_LAST);
        let mut v6: Vec<(u128, u32)> = ranges[..=first_v4].to_vec();
        if ranges.get(after_v4).is_none_or(|r| r.0 != V4_LAST + 1) {
            v6.push((V4_LAST + 1, ranges[after_v4 - 1].1));
        }
        v6.extend_from_slice(&ranges[after_v4..]);
        PrefixTable { v4: Ranges::new(&v4, v4_bits), v6: Trie6::new(&v6, v6_bits, extra) }
    }

    /// One range, id 0.
    pub fn empty() -> PrefixTable {
        PrefixTable::new(&[(0, 0)])
    }

    /// The id of the range holding `addr`.
    #[inline]
    pub fn lookup(&self, addr: &Addr) -> u32 {
        let a = u128::from_be_bytes(*addr);
        if is_mapped_v4(a) {
            self.lookup4(a as u32)
        } else {
            self.v6.get(a)
        }
    }

    /// `lookup` of two addresses, side by side when of one family.
    #[inline]
    pub fn lookup_pair(&self, a: &Addr, b: &Addr) -> [u32; 2] {
        let (a, b) = (u128::from_be_bytes(*a), u128::from_be_bytes(*b));
        match (is_mapped_v4(a), is_mapped_v4(b)) {
            (true, true) => self.lookup4_pair(a as u32, b as u32),
            (false, false) => self.v6.find_pair(a, b).map(|r| r.set),
            _ => [a, b].map(|x| self.lookup(&x.to_be_bytes())),
        }
    }

    /// The id of the range holding the IPv4 address `a`.
    #[inline]
    pub fn lookup4(&self, a: u32) -> u32 {
        self.v4.get(a)
    }

    /// The id of the range holding the IPv6 address `a` (not IPv4), and
    /// its extra word.
    #[inline]
    pub fn lookup6(&self, a: u128) -> (u32, u32) {
        let r = self.v6.find(a);
        (r.set, r.extra)
    }

    /// `lookup4` of two addresses, their searches side by side: each
    /// level's reads of both are on their way before either's branches
    /// wait on them (one lookup alone waits on each level's miss in turn).
    #[inline]
    pub fn lookup4_pair(&self, a: u32, b: u32) -> [u32; 2] {
        self.v4.get_pair([a, b])
    }

    /// `lookup6` of two IPv6 addresses, side by side.
    #[inline]
    pub fn lookup6_pair(&self, a: u128, b: u128) -> [(u32, u32); 2] {
        self.v6.find_pair(a, b).map(|r| (r.set, r.extra))
    }

    /// Ranges (IPv4, IPv6).
    pub fn ranges(&self) -> (usize, usize) {
        (self.v4.len(), self.v6.len())
    }

    pub fn bytes(&self) -> usize {
        self.v4.bytes() + self.v6.bytes()
    }

    /// Bytes (IPv4, IPv6).
    pub fn family_bytes(&self) -> (usize, usize) {
        (self.v4.bytes(), self.v6.bytes())
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

/// Bits of an IPv4 address that pick its bucket in a `Ranges` index, by
/// default: 2^20 buckets (4 MiB of index), so that a bucket of GeoLite2
/// City's IPv4 ranges holds about three and its search reads one cache
/// line (perf/RESULTS.md, "networks": 53 ns per lookup with 2^16 buckets).
pub const BUCKET_BITS: u32 = 20;

/// Sorted IPv4 (range start, set) pairs (a range runs to the next start),
/// with the range holding the first address of each bucket (an address's
/// first `bits` bits).
#[derive(Clone, Debug)]
struct Ranges {
    /// Per bucket (and one past the last), the range holding its first address.
    index: Box<[u32]>,
    /// The start and the set side by side: the set comes with the line the
    /// search read last.
    pairs: Box<[(u32, u32)]>,
    /// 32 less the bucket bits.
    shift: u32,
}

impl Ranges {
    fn new(ranges: &[(u32, u32)], bits: u32) -> Ranges {
        let bits = bits.clamp(1, 24);
        let shift = 32 - bits;
        let bucket = |a: u32| (a >> shift) as usize;
        let pairs: Box<[(u32, u32)]> = ranges.into();
        let mut index = vec![0u32; (1 << bits) + 1];
        // Bucket b's first range: the last one starting in a bucket before b
        // (ranges starting exactly at b's first address are found by the
        // search from there), by walking the ranges once.
        let mut r = 0usize;
        for (b, slot) in index.iter_mut().enumerate().take(1 << bits) {
            while r + 1 < pairs.len() && bucket(pairs[r + 1].0) < b {
                r += 1;
            }
            *slot = r as u32;
        }
        index[1 << bits] = pairs.len().saturating_sub(1) as u32;
        Ranges { index: index.into(), pairs, shift }
    }

    #[inline(always)]
    fn get(&self, a: u32) -> u32 {
        let b = (a >> self.shift) as usize;
        self.search(a, self.index[b] as usize, self.index[b + 1] as usize)
    }

    /// `get` of two keys: both buckets' bounds read together, both
    /// searches' first lines asked for before either search runs.
    #[inline(always)]
    fn get_pair(&self, a: [u32; 2]) -> [u32; 2] {
        let b = a.map(|a| (a >> self.shift) as usize);
        let (lo, hi) = (
            [self.index[b[0]] as usize, self.index[b[1]] as usize],
            [self.index[b[0] + 1] as usize, self.index[b[1] + 1] as usize],
        );
        prefetch(&self.pairs[lo[0]]);
        prefetch(&self.pairs[lo[1]]);
        [self.search(a[0], lo[0], hi[0]), self.search(a[1], lo[1], hi[1])]
    }

    /// The set of the last start <= a within [lo, hi] (pairs[lo].0 <= a).
    #[inline(always)]
    fn search(&self, a: u32, lo: usize, hi: usize) -> u32 {
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
        self.index.len() * 4 + self.pairs.len() * 8
    }
}

/// Bits of an IPv6 address that pick its root slot in a `Trie6`, by default.
const ROOT_BITS: u32 = 20;

/// A node's cut, at most: 2^20 slots, 8 MiB.
const NODE_BITS_MAX: u32 = 20;

/// Most ranges a leaf slot leads to for the search without branches: it
/// reads them all.
const LEAF: usize = 4;

/// A `Trie6` slot that leads to a node (else it is a leaf).
const NODE: u64 = 1 << 63;

/// Slots of a node before its cut: window start (2), before, after.
const NODE_HEAD: usize = 4;

/// The nodes' budget, in slots per range.
const NODE_SLOTS_PER_RANGE: usize = 4;

/// An IPv6 range's start, as two halves, its set, and a word its owner
/// derives from the set (in what would be padding: 24 bytes either way).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Start6 {
    hi: u64,
    lo: u64,
    set: u32,
    extra: u32,
}

impl Start6 {
    #[inline(always)]
    fn at_or_before(&self, hi: u64, lo: u64) -> bool {
        (self.hi < hi) | ((self.hi == hi) & (self.lo <= lo))
    }
}

/// IPv6 ranges under a path-compressed multibit trie of their starts.
/// IPv6 space is allocated in few places (2001::/16, 2400::/12,
/// 2a00::/12...), where a 20-bit bucket can hold thousands of ranges, and
/// within them in clusters (a /32's /48s). A root slot per first 20 bits;
/// where a slot leads to more than `LEAF` ranges, a node cuts the
/// smallest aligned window holding the starts inside the slot (the bits
/// they all share are skipped) by as many bits as it has ranges, about
/// one range per slot; an address of the slot outside the window is
/// before or after all of them. A leaf names the range holding its first
/// address; the lookup compares the `LEAF` starts from there without
/// branches (a start past the leaf is past the address too).
///
/// Slots are u64: a leaf is (first range, ranges); a node is `NODE`,
/// where it starts, the shift and the width of its cut. A node is its
/// window's first address (two slots), the leaves for an address before
/// and after the window, then its `1 << width` slots. Memory is bounded:
/// nodes hold at most `NODE_SLOTS_PER_RANGE` slots per range in all; past
/// that, a crowded slot stays a wide leaf searched by bisection (slower,
/// still right).
#[derive(Clone, Debug)]
struct Trie6 {
    slots: Box<[u64]>,
    /// Sorted starts, then `LEAF - 1` copies of the last set past the end
    /// of the space, so that a leaf's search never reads past the array.
    pairs: Box<[Start6]>,
    /// 128 less the root's bits.
    shift: u32,
}

impl Trie6 {
    fn new(ranges: &[(u128, u32)], root_bits: u32, extra: impl Fn(u32) -> u32) -> Trie6 {
        Trie6::with_budget(ranges, root_bits, ranges.len() * NODE_SLOTS_PER_RANGE, extra)
    }

    fn with_budget(ranges: &[(u128, u32)], root_bits: u32, mut budget: usize, extra: impl Fn(u32) -> u32) -> Trie6 {
        let mut pairs: Vec<Start6> = ranges
            .iter()
            .map(|&(start, set)| Start6 { hi: (start >> 64) as u64, lo: start as u64, set, extra: extra(set) })
            .collect();
        let last = pairs.last().copied().unwrap_or_default();
        pairs.extend(std::iter::repeat_n(Start6 { hi: u64::MAX, lo: u64::MAX, ..last }, LEAF - 1));
        let mut slots = vec![0u64; 1 << root_bits];
        if !ranges.is_empty() {
            fill(&mut slots, 0, 0, 128 - root_bits, root_bits, ranges, 0, &mut budget);
        }
        Trie6 { slots: slots.into(), pairs: pairs.into(), shift: 128 - root_bits }
    }

    #[inline(always)]
    fn get(&self, a: u128) -> u32 {
        self.find(a).set
    }

    /// The range holding `a`.
    #[inline(always)]
    fn find(&self, a: u128) -> &Start6 {
        let mut slot = self.slots[(a >> self.shift) as usize];
        while slot & NODE != 0 {
            slot = self.step(slot, a);
        }
        self.leaf(slot, a)
    }

    /// `find` of two addresses in lockstep: each round reads the next
    /// level of both walks before either's branch waits on it; then both
    /// leaves are asked for before either is compared.
    #[inline(always)]
    fn find_pair(&self, a: u128, b: u128) -> [&Start6; 2] {
        let mut slot = [self.slots[(a >> self.shift) as usize], self.slots[(b >> self.shift) as usize]];
        while (slot[0] | slot[1]) & NODE != 0 {
            for (s, x) in slot.iter_mut().zip([a, b]) {
                if *s & NODE != 0 {
                    *s = self.step(*s, x);
                }
            }
        }
        prefetch(&self.pairs[slot[0] as u32 as usize]);
        prefetch(&self.pairs[slot[1] as u32 as usize]);
        [self.leaf(slot[0], a), self.leaf(slot[1], b)]
    }

    /// The slot a node (`slot`) leads `a` to.
    #[inline(always)]
    fn step(&self, slot: u64, a: u128) -> u64 {
        let node = slot as u32 as usize;
        let shift = (slot >> 32) as u8 as u32;
        let width = (slot >> 40) as u8 as u32;
        // The slot within the window and the window itself are read side
        // by side (neither waits for the other).
        let inside = self.slots[node + NODE_HEAD + ((a >> shift) as u64 & ((1 << width) - 1)) as usize];
        let window = u128::from(self.slots[node]) << 64 | u128::from(self.slots[node + 1]);
        if (a ^ window) >> (shift + width) != 0 {
            self.slots[node + 2 + usize::from(a > window)]
        } else {
            inside
        }
    }

    /// The range holding `a` among a leaf's (`slot`).
    #[inline(always)]
    fn leaf(&self, slot: u64, a: u128) -> &Start6 {
        let first = slot as u32 as usize;
        let count = (slot >> 32) as usize;
        let (hi, lo) = ((a >> 64) as u64, a as u64);
        let at = if count <= LEAF {
            first + (1..LEAF).map(|k| usize::from(self.pairs[first + k].at_or_before(hi, lo))).sum::<usize>()
        } else {
            first + self.pairs[first + 1..first + count].partition_point(|p| p.at_or_before(hi, lo))
        };
        &self.pairs[at]
    }

    fn len(&self) -> usize {
        self.pairs.len() + 1 - LEAF
    }

    fn bytes(&self) -> usize {
        self.slots.len() * 8 + self.pairs.len() * std::mem::size_of::<Start6>()
    }
}

/// A leaf slot: `count` ranges from `first`.
fn leaf(first: usize, count: usize) -> u64 {
    first as u64 | (count as u64) << 32
}

/// Fills the `1 << width` slots at `at`, for the addresses from `base`
/// cut by bits `shift..shift + width`; `r` is a range at or before `base`.
#[allow(clippy::too_many_arguments)]
fn fill(
    slots: &mut Vec<u64>,
    at: usize,
    base: u128,
    shift: u32,
    width: u32,
    ranges: &[(u128, u32)],
    mut r: usize,
    budget: &mut usize,
) {
    for k in 0..1u128 << width {
        let first = base | k << shift;
        let last = first | ((1u128 << shift) - 1);
        // The range holding the slot's first address, then the last one
        // starting in the slot.
        while r + 1 < ranges.len() && ranges[r + 1].0 <= first {
            r += 1;
        }
        let mut end = r;
        while end + 1 < ranges.len() && ranges[end + 1].0 <= last {
            end += 1;
        }
        let count = end - r + 1;
        if count <= LEAF {
            slots[at + k as usize] = leaf(r, count);
            continue;
        }
        // The window: the aligned block the starts inside the slot share
        // (they differ in its top bit), cut by about one range per slot.
        let (inner_first, inner_last) = (ranges[r + 1].0, ranges[end].0);
        let top = 128 - (inner_first ^ inner_last).leading_zeros();
        let bits = (usize::BITS - (count - 1).leading_zeros()).min(NODE_BITS_MAX).min(top);
        let size = NODE_HEAD + (1 << bits);
        if *budget < size {
            slots[at + k as usize] = leaf(r, count);
            continue;
        }
        *budget -= size;
        let window = inner_first & !((1u128 << top) - 1);
        let node = slots.len();
        slots.resize(node + size, 0);
        slots[node] = (window >> 64) as u64;
        slots[node + 1] = window as u64;
        slots[node + 2] = leaf(r, 1);
        slots[node + 3] = leaf(end, 1);
        slots[at + k as usize] = NODE | node as u64 | u64::from(top - bits) << 32 | u64::from(bits) << 40;
        fill(slots, node + NODE_HEAD, window, top - bits, bits, ranges, r, budget);
    }
}

/// The merged table the shards read: immutable, replaced whole.
#[derive(Clone, Debug)]
pub struct Networks {
    table: PrefixTable,
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
        self.table.lookup(addr)
    }

    /// `lookup` of a flow's two addresses (their reads side by side).
    #[inline]
    pub fn lookup_pair(&self, a: &Addr, b: &Addr) -> [u32; 2] {
        self.table.lookup_pair(a, b)
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
        self.table.ranges()
    }

    /// Bytes held: the ranges, sets, records and strings.
    pub fn bytes(&self) -> usize {
        self.table.bytes()
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

    /// A reproducible stream of pseudo-random numbers (xorshift64).
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

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

    /// Neighbours with the same attributes are one range, however the
    /// source cut them (a database's networks around a hole are siblings
    /// of every size, with the same record).
    #[test]
    fn neighbours_with_the_same_set_are_one_range() {
        let mut b = Builder::new();
        add(&mut b, "10.0.0.0/24", info("a", "FR", 0));
        add(&mut b, "10.0.0.0/25", info("b", "FR", 0));
        add(&mut b, "10.0.0.128/26", info("b", "FR", 0));
        add(&mut b, "10.0.0.192/27", info("b", "FR", 0));
        add(&mut b, "2001:db8::/48", info("c", "", 0));
        add(&mut b, "2001:db8:0:8000::/49", info("c", "", 0));
        let table = b.build();
        // IPv4: none, b up to 10.0.0.223, a, none.
        // IPv6: none, c, none, and the IPv4-mapped range cut out.
        assert_eq!(table.ranges(), (4, 4));
        assert_eq!(at(&table, "10.0.0.223").0, "b");
        assert_eq!(at(&table, "10.0.0.224").0, "a");
        assert_eq!(at(&table, "2001:db8:0:ffff::1").0, "c");
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
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15u64);
        for round in 0..20 {
            let mut b = Builder::new();
            let mut nets: Vec<(u128, u8, NetworkInfo)> = Vec::new();
            for i in 0..200 {
                let v4 = !next().is_multiple_of(3);
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
            let mut previous = 0u128;
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
                // In pairs, of one family or mixed, as one by one.
                let (x, y) = (a.to_be_bytes(), previous.to_be_bytes());
                assert_eq!(table.lookup_pair(&x, &y), [table.lookup(&x), table.lookup(&y)]);
                previous = a;
            }
        }
    }

    /// IPv4 ranges answer as a bisection does whatever the buckets' width:
    /// the RIB's index takes fewer buckets than the networks table's.
    #[test]
    fn ipv4_ranges_answer_alike_for_every_bucket_width() {
        let mut next = xorshift(0x0bad_5eed_1234_5678u64);
        for n in [1usize, 2, 7, 300, 5000] {
            // Starts crowded in a few places and spread over the rest.
            let mut starts: Vec<u32> = (0..n)
                .map(|_| if next().is_multiple_of(2) { 0x0a00_0000 | (next() as u32 & 0x0fff) } else { next() as u32 })
                .collect();
            starts.extend([0, u32::MAX]);
            starts.sort_unstable();
            starts.dedup();
            let ranges: Vec<(u128, u32)> =
                starts.iter().enumerate().map(|(i, &s)| (V4_BASE | u128::from(s), i as u32 + 1)).collect();
            let mut all = vec![(0u128, 0u32)];
            all.extend(&ranges);
            all.push((V4_LAST + 1, 0));
            let bisect = |a: u32| ranges[ranges.partition_point(|r| r.0 <= V4_BASE | u128::from(a)) - 1].1;
            let mut probes: Vec<u32> = starts.iter().flat_map(|&s| [s, s.wrapping_sub(1), s.wrapping_add(1)]).collect();
            probes.extend((0..2000).map(|_| next() as u32));
            for bits in [1, 8, 16, 18, 20, 24] {
                let table = PrefixTable::with_roots(&all, bits, 16, |_| 0);
                for pair in probes.windows(2) {
                    let (a, b) = (pair[0], pair[1]);
                    assert_eq!(table.lookup4(a), bisect(a), "{n} ranges, {bits} bits, {a:#x}");
                    assert_eq!(table.lookup4_pair(a, b), [bisect(a), bisect(b)], "{n} ranges, {bits} bits");
                }
            }
        }
    }

    /// The IPv6 trie answers as a bisection of the ranges does, in crowded
    /// places (ranges one address apart, starts at every power of two,
    /// thousands in one /64 or one /48), for every size of table, within
    /// its memory bound, and with no node budget at all (wide leaves).
    #[test]
    fn the_ipv6_trie_answers_as_a_bisection_and_stays_bounded() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1du64);
        let mut starts = std::collections::BTreeSet::from([0u128]);
        let dense = 0x2001_0db8_0000_0001u128 << 64;
        let wide = 0x2a00_1450u128 << 96;
        for k in 0..128 {
            starts.insert(1u128 << k);
            starts.insert(dense | 1u128 << k);
        }
        for i in 0..5000u128 {
            starts.insert(dense | i);
            starts.insert(wide | i << 80);
            starts.insert(wide | (next() as u128) << 32);
        }
        for _ in 0..5000 {
            starts.insert(u128::from(next()) << 64 | u128::from(next()));
        }
        starts.insert(u128::MAX);
        let all: Vec<(u128, u32)> = starts.iter().enumerate().map(|(i, &s)| (s, i as u32 % 7 + 1)).collect();
        for (size, budget) in [(1, 4), (3, 12), (LEAF + 1, 20), (300, 1200), (all.len(), 3000), (all.len(), 0)] {
            // Every size of table: the first start, then every k-th.
            let ranges: Vec<(u128, u32)> = all.iter().step_by(all.len() / size).take(size).copied().collect();
            let expect = |a: u128| ranges[ranges.partition_point(|r| r.0 <= a) - 1].1;
            let tree = Trie6::with_budget(&ranges, ROOT_BITS, budget, |_| 0);
            assert_eq!(tree.len(), size);
            assert!(tree.slots.len() <= (1 << ROOT_BITS) + budget, "{size} ranges: {} slots", tree.slots.len());
            for &(s, _) in &ranges {
                for a in [s, s.wrapping_sub(1), s.wrapping_add(1), s | 0xffff] {
                    assert_eq!(tree.get(a), expect(a), "{size} ranges, budget {budget}, {a:x}");
                }
            }
            for _ in 0..20_000 {
                let a = match next() % 3 {
                    0 => u128::from(next()) << 64 | u128::from(next()),
                    1 => dense | u128::from(next() % 6000),
                    _ => wide | u128::from(next()) << 32 | u128::from(next() as u32),
                };
                assert_eq!(tree.get(a), expect(a), "{size} ranges, budget {budget}, {a:x}");
                let b = a.rotate_left(7);
                assert_eq!(tree.find_pair(a, b).map(|r| r.set), [expect(a), expect(b)], "{a:x} {b:x}");
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
