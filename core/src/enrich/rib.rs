//! BGP routes as collected over BMP (`enrich::bmp`): the table a control
//! thread keeps up to date (`Rib`, one writer), and the snapshot the
//! shards read (`Routes`, immutable, replaced whole).
//!
//! - **Identity.** A route is (prefix, peer, ADD-PATH path id, route
//!   distinguisher); a peer is (BMP session, peer address, peer
//!   distinguisher). A new announcement with the same identity replaces
//!   the route. The (path id, RD) pairs are interned like the attributes:
//!   a route holds a 4-byte id, 0 for neither (most routes).
//! - **Attributes** (AS path, communities, large communities, next hop,
//!   local preference, MED) are interned and reference-counted: routes
//!   that share them (most of a full table) hold one 4-byte id.
//! - **Compact storage, shared with the shards.** The routes live in a
//!   sorted, immutable `Table`: per prefix a 16-byte entry (its network
//!   in a key array: 4 bytes for IPv4, 16 for IPv6), which holds the
//!   route itself when the prefix has one route without a path id (most
//!   of a table from one router); other prefixes point into an array of
//!   12-byte routes, best first. Changes since the table was built sit
//!   in a small map (`delta`: a changed prefix's routes now), merged into
//!   a new table when it grows past an eighth of the table and before
//!   every snapshot. A snapshot is the table (shared, not copied), the
//!   attribute sets (shared) and the longest-prefix index over it, so the
//!   RIB and what the shards read are one copy of the routes.
//! - **Peers going away.** A Peer Down or a closed session marks its peers
//!   down; their routes stay for `keep` and are then removed a bounded
//!   number of prefixes at a time (`remove_expired`), so that neither the
//!   control thread nor the flows (which read snapshots) ever wait for a
//!   whole table to go.
//! - **Lookups.** `Routes::lookup` answers a flow's address with its
//!   longest matching prefix (`networks::flatten` and `PrefixTable`, the
//!   networks table's structure: one search per address). With one route
//!   the entry is the answer; with several, the route learned from the
//!   flow's own exporter first, else the one whose next hop is the
//!   flow's, else the best (highest local preference, shortest AS path,
//!   lowest MED).
//! - **Limits.** 65 535 peers (their ids are 16 bits; a peer past that
//!   is refused and its routes counted as ignored), 2^32 routes.

use std::collections::HashMap;
use std::sync::Arc;

use super::bmp::{Attrs, Event, PeerKey, Prefix};
use super::networks::{flatten, is_mapped_v4, PrefixTable};
use crate::consolidate::prefetch;
use crate::flow::Addr;

/// `::ffff:0:0`: where IPv4 lies in the 128-bit space.
const V4_BASE: u128 = 0xffff << 32;

/// Peer ids are 16 bits; this one says "none".
pub const NO_PEER: u32 = u16::MAX as u32;

/// Routes one prefix holds at most (peers times ADD-PATH paths); more
/// are refused, counted as ignored.
pub const PREFIX_ROUTES_MAX: usize = u16::MAX as usize;

/// Prefixes the table holds at most (their ids are 23 bits in the
/// index); more are refused, counted as ignored.
pub const PREFIXES_MAX: usize = (1 << 23) - 1;

/// An index id: the prefix's length in bits 0–7, bit 8 when the prefix's
/// routes are in `Table::routes` (not inline), the entry from bit 9.
const ID_SHIFT: u32 = 9;
const ID_ROUTES: u32 = 1 << 8;

/// `RouteInfo::route`: a route of `Table::routes` (else an entry).
const ROUTE_IN_ARRAY: u32 = 1 << 31;

/// The changes kept before they are merged into a new table, at least.
const DELTA_MIN: usize = 1 << 16;

/// The IPv6 index's root: 16 bits (512 KiB) rather than the networks
/// table's 20 (8 MiB, 7 bytes a route of a full table), the nodes below
/// taking the rest.
const V6_ROOT_BITS: u32 = 16;

/// The IPv4 index's buckets: 2^18 (1 MiB) rather than the networks
/// table's 2^20 (4 MiB), about six ranges of a full table per bucket. On
/// the 16-core machine, for a full table: 3 bytes a route less, IPv4
/// lookups 45 ns → 57–62 ns (perf/RESULTS.md, 2026-12-04).
const V4_BUCKET_BITS: u32 = 18;

/// A prefix: network in the 128-bit space, length (IPv4: plus 96).
type Key = (u128, u8);

/// Whether `key` is an IPv4 prefix (within `::ffff:0:0/96`).
fn is_v4(key: Key) -> bool {
    key.1 >= 96 && is_mapped_v4(key.0)
}

/// A peer of the RIB: which session (exporter) reported it.
#[derive(Clone, Debug)]
pub struct Peer {
    pub session: u32,
    pub key: PeerKey,
    /// The exporter address of the session (the router's address).
    pub exporter: Addr,
    pub asn: u32,
    /// Routes it holds.
    pub routes: u64,
    /// Since when it is down (seconds, the caller's clock); None while up.
    pub down_since: Option<u64>,
}

/// One route: 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    attrs: u32,
    /// Its (path id, RD) in `Rib::nlris`; 0: (0, 0).
    nlri: u32,
    peer: u16,
}

/// A prefix of the table: 12 bytes.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct Entry {
    /// The best route's origin AS.
    asn: u32,
    /// Inline: the route's attribute set; else its first route in `Table::routes`.
    at: u32,
    /// The prefix's length (IPv4: plus 96) in bits 0–7; bit 8: one route,
    /// without a path id, held here (inline); bits 16–31: inline, the
    /// route's peer, else the prefix's routes.
    meta: u32,
}

const INLINE: u32 = 1 << 8;

impl Entry {
    fn inline(asn: u32, len: u8, route: Route) -> Entry {
        Entry { asn, at: route.attrs, meta: u32::from(len) | INLINE | u32::from(route.peer) << 16 }
    }

    fn routes(asn: u32, len: u8, at: u32, count: usize) -> Entry {
        Entry { asn, at, meta: u32::from(len) | (count as u32) << 16 }
    }

    fn len(&self) -> u8 {
        self.meta as u8
    }

    fn is_inline(&self) -> bool {
        self.meta & INLINE != 0
    }

    /// Inline: the route held here.
    fn inline_route(&self) -> Route {
        Route { attrs: self.at, nlri: 0, peer: (self.meta >> 16) as u16 }
    }

    /// Not inline: where its routes are in `Table::routes`.
    fn span(&self) -> std::ops::Range<usize> {
        self.at as usize..self.at as usize + (self.meta >> 16) as usize
    }
}

/// The routes, sorted by prefix: entry 0 is none, then the IPv4 prefixes
/// in order, then the others.
#[derive(Debug)]
struct Table {
    /// IPv4 networks (the low 32 bits), entries `1..=v4.len()`.
    v4: Vec<u32>,
    /// The other networks, entries after the IPv4 ones.
    v6: Vec<u128>,
    entries: Vec<Entry>,
    routes: Vec<Route>,
    /// Routes in all (inline ones included).
    total: u64,
}

impl Default for Table {
    fn default() -> Self {
        Table { v4: Vec::new(), v6: Vec::new(), entries: vec![Entry::default()], routes: Vec::new(), total: 0 }
    }
}

impl Table {
    fn prefixes(&self) -> usize {
        self.entries.len() - 1
    }

    /// The key of entry `i` (not 0).
    fn key(&self, i: usize) -> Key {
        let len = self.entries[i].len();
        match self.v4.get(i - 1) {
            Some(&net) => (V4_BASE | u128::from(net), len),
            None => (self.v6[i - 1 - self.v4.len()], len),
        }
    }

    /// Where `key` is or would be, as an entry index (entries are in the
    /// order IPv4 keys, then the others, each sorted).
    fn position(&self, key: Key) -> Result<usize, usize> {
        let (from, n) = if is_v4(key) { (1, self.v4.len()) } else { (1 + self.v4.len(), self.v6.len()) };
        let (mut lo, mut hi) = (from, from + n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The routes of entry `i`.
    fn routes_of(&self, i: usize) -> Vec<Route> {
        let e = &self.entries[i];
        if e.is_inline() {
            return vec![e.inline_route()];
        }
        self.routes[e.span()].to_vec()
    }

    /// Whether entry `i` has a route of one of `peers`.
    fn has_peer(&self, i: usize, peers: &[u16]) -> bool {
        let e = &self.entries[i];
        if e.is_inline() {
            return peers.contains(&e.inline_route().peer);
        }
        self.routes[e.span()].iter().any(|r| peers.contains(&r.peer))
    }

    fn bytes(&self) -> usize {
        self.v4.capacity() * 4
            + self.v6.capacity() * 16
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.routes.capacity() * std::mem::size_of::<Route>()
    }
}

/// The RIB: the table, the changes since, interned attributes, peers.
#[derive(Debug)]
pub struct Rib {
    table: Arc<Table>,
    /// Prefixes changed since `table` was built: their routes now (none: gone).
    delta: HashMap<Key, Vec<Route>>,
    /// Attribute sets by id.
    attrs: Pool<Arc<Attrs>>,
    /// (ADD-PATH path id, route distinguisher) pairs by id; 0 is (0, 0).
    nlris: Pool<(u32, u64)>,
    peers: Vec<Option<Peer>>,
    peer_ids: HashMap<(u32, PeerKey), u32>,
    /// Routes held.
    pub routes: u64,
    prefixes: usize,
    /// Whether messages changed anything since the last snapshot.
    pub dirty: bool,
    /// Whether removal passes removed routes since the last snapshot.
    /// The caller publishes them when the pass ends: a snapshot per step
    /// would cost the shards a cold index each time for routes that were
    /// already down (perf/RESULTS.md, "a peer's full table flushed").
    pub removed: bool,
    /// The removal pass under way (`remove_expired`).
    removal: Option<Removal>,
    /// Changes kept before a merge, at least (`DELTA_MIN`; tests lower it).
    delta_min: usize,
}

impl Default for Rib {
    fn default() -> Self {
        Rib {
            table: Arc::new(Table::default()),
            delta: HashMap::new(),
            attrs: Pool::default(),
            nlris: Pool::with_zero(),
            peers: Vec::new(),
            peer_ids: HashMap::new(),
            routes: 0,
            prefixes: 0,
            dirty: false,
            removed: false,
            removal: None,
            delta_min: DELTA_MIN,
        }
    }
}

/// Values interned and reference-counted by 4-byte id; a freed id is
/// reused and holds the default value meanwhile.
#[derive(Debug, Default)]
struct Pool<T> {
    values: Vec<T>,
    uses: Vec<u32>,
    ids: HashMap<T, u32>,
    free: Vec<u32>,
    /// Id 0 is the default value, held for good (`with_zero`).
    zero: bool,
}

impl<T: Clone + Default + Eq + std::hash::Hash> Pool<T> {
    fn with_zero() -> Pool<T> {
        Pool { values: vec![T::default()], uses: vec![0], zero: true, ..Pool::default() }
    }

    /// The id of `value`, with one more use.
    fn intern(&mut self, value: &T) -> u32 {
        if self.is_zero(value) {
            return 0;
        }
        self.intern_by(value, || value.clone())
    }

    /// Whether `value` is the one id 0 holds for good.
    fn is_zero(&self, value: &T) -> bool {
        self.zero && *value == T::default()
    }

    /// The id of the value `key` stands for (made by `make` when new),
    /// with one more use; not for id 0's value (`intern` checks it).
    fn intern_by<Q: Eq + std::hash::Hash + ?Sized>(&mut self, key: &Q, make: impl FnOnce() -> T) -> u32
    where
        T: std::borrow::Borrow<Q>,
    {
        if let Some(&id) = self.ids.get(key) {
            self.uses[id as usize] += 1;
            return id;
        }
        let value = make();
        let id = match self.free.pop() {
            Some(id) => {
                self.values[id as usize] = value.clone();
                self.uses[id as usize] = 1;
                id
            }
            None => {
                self.values.push(value.clone());
                self.uses.push(1);
                self.values.len() as u32 - 1
            }
        };
        self.ids.insert(value, id);
        id
    }

    /// The id of `value`, if held.
    fn find(&self, value: &T) -> Option<u32> {
        if self.is_zero(value) {
            return Some(0);
        }
        self.ids.get(value).copied()
    }

    /// One more use of `id`.
    fn hold(&mut self, id: u32) {
        self.uses[id as usize] += 1;
    }

    /// One use less of `id`: freed at none.
    fn release(&mut self, id: u32) {
        if self.zero && id == 0 {
            return;
        }
        let uses = &mut self.uses[id as usize];
        *uses -= 1;
        if *uses == 0 {
            let value = std::mem::take(&mut self.values[id as usize]);
            self.ids.remove(&value);
            self.free.push(id);
        }
    }

    fn get(&self, id: u32) -> &T {
        &self.values[id as usize]
    }

    /// Distinct values held.
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn bytes(&self, value_bytes: usize) -> usize {
        self.ids.capacity() * (value_bytes + 4 + 1) + self.values.capacity() * value_bytes + self.uses.capacity() * 4
    }
}

/// NLRI of an UPDATE not kept, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NotKept {
    /// Of families the table does not keep.
    pub family: u32,
    /// Left out by the RD and RT filters.
    pub filtered: u32,
    /// Past a limit (`PREFIXES_MAX`, `PREFIX_ROUTES_MAX`, peers).
    pub limit: u32,
}

/// A removal pass: its peers, and the first prefix left to visit.
#[derive(Debug)]
struct Removal {
    peers: Vec<u16>,
    next: Option<Key>,
}

impl Rib {
    /// The peer `key` of `session`, created (up) when new; `NO_PEER` when
    /// 65 535 peers are known already.
    pub fn peer(&mut self, session: u32, exporter: Addr, key: PeerKey, asn: u32) -> u32 {
        if let Some(&id) = self.peer_ids.get(&(session, key)) {
            if let Some(p) = self.peers[id as usize].as_mut() {
                p.down_since = None;
                p.asn = asn;
            }
            return id;
        }
        let peer = Peer { session, key, exporter, asn, routes: 0, down_since: None };
        let id = match self.peers.iter().position(Option::is_none) {
            Some(free) => {
                self.peers[free] = Some(peer);
                free as u32
            }
            None if self.peers.len() < NO_PEER as usize => {
                self.peers.push(Some(peer));
                self.peers.len() as u32 - 1
            }
            None => return NO_PEER,
        };
        self.peer_ids.insert((session, key), id);
        id
    }

    /// Applies what a message of `session` (from `exporter`) said at
    /// `now`; the NLRI not kept, for the caller to count.
    pub fn apply(&mut self, session: u32, exporter: Addr, event: Event, now: u64) -> NotKept {
        match event {
            Event::PeerUp { peer, asn, .. } => {
                self.peer(session, exporter, peer, asn);
            }
            Event::PeerDown { peer } => self.peer_down(session, peer, now),
            Event::Update { peer, asn, announced, withdrawn, attrs, ignored, filtered } => {
                let id = self.peer(session, exporter, peer, asn);
                let limit = if id == NO_PEER {
                    (announced.len() + withdrawn.len()) as u32
                } else {
                    self.withdraw(id, &withdrawn);
                    self.announce(id, &announced, &attrs)
                };
                return NotKept { family: ignored, filtered, limit };
            }
            Event::Initiation | Event::Termination | Event::Statistics | Event::Mirroring => {}
        }
        NotKept::default()
    }

    /// Peers known (up or kept while down).
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter().flatten()
    }

    /// Marks `key` of `session` down at `now`; its routes go after `keep`.
    pub fn peer_down(&mut self, session: u32, key: PeerKey, now: u64) {
        if let Some(&id) = self.peer_ids.get(&(session, key)) {
            if let Some(p) = self.peers[id as usize].as_mut() {
                p.down_since.get_or_insert(now);
            }
        }
    }

    /// Marks every peer of `session` down (its connection closed).
    pub fn session_down(&mut self, session: u32, now: u64) {
        for p in self.peers.iter_mut().flatten().filter(|p| p.session == session) {
            p.down_since.get_or_insert(now);
        }
    }

    /// The routes of `key` now, to change: moved into the delta.
    fn routes_mut(&mut self, key: Key) -> &mut Vec<Route> {
        let table = &self.table;
        self.delta.entry(key).or_insert_with(|| table.position(key).map_or_else(|_| Vec::new(), |i| table.routes_of(i)))
    }

    /// Whether `key` holds routes now.
    fn holds(&self, key: Key) -> bool {
        match self.delta.get(&key) {
            Some(routes) => !routes.is_empty(),
            None => self.table.position(key).is_ok(),
        }
    }

    fn count_route(&mut self, peer: u16, added: bool) {
        let p = self.peers[usize::from(peer)].as_mut();
        if added {
            self.routes += 1;
            if let Some(p) = p {
                p.routes += 1;
            }
        } else {
            self.routes -= 1;
            if let Some(p) = p {
                p.routes -= 1;
            }
        }
    }

    /// Announces `prefixes` from `peer` with `attrs` (replacing routes of
    /// the same identity); the routes refused (`PREFIX_ROUTES_MAX`).
    pub fn announce(&mut self, peer: u32, prefixes: &[Prefix], attrs: &Attrs) -> u32 {
        if prefixes.is_empty() || peer >= NO_PEER {
            return prefixes.len() as u32;
        }
        let mut refused = 0;
        let peer = peer as u16;
        self.dirty = true;
        // One use for the call, one per route that takes the set.
        let id = self.attrs.intern_by(attrs, || Arc::new(attrs.clone()));
        for p in prefixes {
            let room = self.prefixes < PREFIXES_MAX;
            self.attrs.hold(id);
            let nlri = self.nlris.intern(&(p.path_id, p.rd));
            let routes = self.routes_mut((p.net, p.len));
            let (was_empty, full) = (routes.is_empty(), routes.len() >= PREFIX_ROUTES_MAX);
            match routes.iter_mut().find(|r| r.peer == peer && r.nlri == nlri) {
                Some(r) => {
                    let old = std::mem::replace(&mut r.attrs, id);
                    self.attrs.release(old);
                    self.nlris.release(nlri);
                }
                None if full || (was_empty && !room) => {
                    self.attrs.release(id);
                    self.nlris.release(nlri);
                    refused += 1;
                }
                None => {
                    routes.push(Route { attrs: id, nlri, peer });
                    self.prefixes += usize::from(was_empty);
                    self.count_route(peer, true);
                }
            }
        }
        self.attrs.release(id);
        self.compact_when_large();
        refused
    }

    /// Withdraws `prefixes` of `peer` (unknown ones are ignored).
    pub fn withdraw(&mut self, peer: u32, prefixes: &[Prefix]) {
        if peer >= NO_PEER {
            return;
        }
        let peer = peer as u16;
        for p in prefixes {
            let key = (p.net, p.len);
            let Some(nlri) = self.nlris.find(&(p.path_id, p.rd)) else { continue };
            if !self.holds(key) {
                continue;
            }
            let routes = self.routes_mut(key);
            let Some(at) = routes.iter().position(|r| r.peer == peer && r.nlri == nlri) else { continue };
            let r = routes.swap_remove(at);
            if routes.is_empty() {
                self.prefixes -= 1;
            }
            self.attrs.release(r.attrs);
            self.nlris.release(r.nlri);
            self.count_route(peer, false);
            self.dirty = true;
        }
        self.compact_when_large();
    }

    /// Removes routes of peers down since before `now - keep`, at most
    /// `budget` prefixes visited per call (call again while it returns
    /// true). A pass takes the peers expired when it starts, merges the
    /// changes into the table, and walks the table's prefixes in order
    /// from where the last call stopped (a new table meanwhile is fine:
    /// the walk goes on from that prefix). A peer that comes back up
    /// meanwhile is left alone, one that expires meanwhile waits for the
    /// next pass. A peer is forgotten once a pass removed all its routes.
    pub fn remove_expired(&mut self, now: u64, keep: u64, budget: usize) -> bool {
        if self.removal.is_none() {
            let peers: Vec<u16> = self
                .peers
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    p.as_ref().filter(|p| p.down_since.is_some_and(|d| now >= d.saturating_add(keep))).map(|_| i as u16)
                })
                .collect();
            if peers.is_empty() {
                return false;
            }
            // The routes of a down peer are all in the table from here on
            // (an announcement would bring it back up).
            self.compact();
            self.removal = Some(Removal { peers, next: None });
        }
        let Some(mut removal) = self.removal.take() else { return false };
        // Peers back up keep what they have.
        removal.peers.retain(|&id| self.peers[usize::from(id)].as_ref().is_some_and(|p| p.down_since.is_some()));
        let table = self.table.clone();
        let mut at = match removal.next {
            None => 1,
            Some(key) => table.position(key).unwrap_or_else(|at| at),
        };
        let end = (at + budget).min(table.entries.len());
        while at < end && !removal.peers.is_empty() {
            let key = table.key(at);
            at += 1;
            let visit = match self.delta.get(&key) {
                Some(routes) => routes.iter().any(|r| removal.peers.contains(&r.peer)),
                None => table.has_peer(at - 1, &removal.peers),
            };
            if !visit {
                continue;
            }
            let routes = self.routes_mut(key);
            let mut released = Vec::new();
            routes.retain(|r| {
                let gone = removal.peers.contains(&r.peer);
                if gone {
                    released.push(*r);
                }
                !gone
            });
            if routes.is_empty() {
                self.prefixes -= 1;
            }
            for r in released {
                self.attrs.release(r.attrs);
                self.nlris.release(r.nlri);
                self.count_route(r.peer, false);
            }
            self.removed = true;
        }
        if at < table.entries.len() && !removal.peers.is_empty() {
            removal.next = Some(table.key(at));
            self.removal = Some(removal);
            drop(table);
            self.compact_when_large();
            return true;
        }
        for id in removal.peers {
            if let Some(p) = self.peers[usize::from(id)].take_if(|p| p.routes == 0) {
                self.peer_ids.remove(&(p.session, p.key));
            }
        }
        self.removed = true;
        false
    }

    /// Prefixes holding routes.
    pub fn prefixes(&self) -> usize {
        self.prefixes
    }

    /// Distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }

    /// Bytes held (the table, shared with the snapshot, included),
    /// estimated from the containers' capacities and the attribute sets'
    /// arrays.
    pub fn bytes(&self) -> usize {
        let map = |cap: usize, entry: usize| cap * (entry + 1);
        let delta: usize = self.delta.values().map(|r| r.capacity() * std::mem::size_of::<Route>()).sum();
        let attrs: usize = self
            .attrs
            .ids
            .keys()
            .map(|a| {
                16 + std::mem::size_of::<Attrs>()
                    + a.as_path.len() * 4
                    + a.communities.len() * 4
                    + a.large_communities.len() * 12
            })
            .sum();
        self.table.bytes()
            + map(self.delta.capacity(), 32 + 24)
            + delta
            + attrs
            + self.attrs.bytes(8)
            + self.nlris.bytes(16)
            + self.peers.capacity() * std::mem::size_of::<Option<Peer>>()
    }

    fn compact_when_large(&mut self) {
        if self.delta.len() > self.delta_min.max(self.table.prefixes() / 8) {
            self.compact();
        }
    }

    /// The best-first order of routes.
    fn sort(&self, routes: &mut [Route]) {
        routes.sort_by_key(|r| {
            let a = self.attrs.get(r.attrs);
            (std::cmp::Reverse(a.local_pref), a.as_path.len(), a.med, r.peer, *self.nlris.get(r.nlri))
        });
    }

    /// The entry for `routes` (not empty, best first), its routes appended to `to`.
    fn entry(&self, len: u8, routes: &[Route], to: &mut Vec<Route>) -> Entry {
        let best = routes[0];
        let peer_as = self.peers[usize::from(best.peer)].as_ref().map_or(0, |p| p.asn);
        let asn = self.attrs.get(best.attrs).origin_as(peer_as);
        if let [one] = routes {
            if one.nlri == 0 {
                return Entry::inline(asn, len, *one);
            }
        }
        let at = to.len() as u32;
        to.extend_from_slice(routes);
        Entry::routes(asn, len, at, routes.len())
    }

    /// Merges the changes into a new table.
    fn compact(&mut self) {
        if self.delta.is_empty() {
            return;
        }
        let mut changed: Vec<(Key, Vec<Route>)> = self.delta.drain().collect();
        changed.sort_unstable_by_key(|c| (!is_v4(c.0), c.0));
        for (_, routes) in &mut changed {
            self.sort(routes);
        }
        let old = self.table.clone();
        let v4_changed = changed.partition_point(|c| is_v4(c.0));
        let added_routes: usize = changed.iter().map(|c| c.1.len()).sum();
        let mut t = Table {
            v4: Vec::with_capacity(old.v4.len() + v4_changed),
            v6: Vec::with_capacity(old.v6.len() + changed.len() - v4_changed),
            entries: Vec::with_capacity(self.prefixes + 1),
            routes: Vec::with_capacity(old.routes.len() + added_routes),
            total: self.routes,
        };
        t.entries.push(Entry::default());
        let v4_end = 1 + old.v4.len();
        for (from, to, changed) in
            [(1, v4_end, &changed[..v4_changed]), (v4_end, old.entries.len(), &changed[v4_changed..])]
        {
            let mut at = from;
            let mut next = changed.iter().peekable();
            loop {
                let here = (at < to).then(|| old.key(at));
                let take_changed = match (here, next.peek()) {
                    (None, None) => break,
                    (Some(k), Some(c)) => c.0 <= k,
                    (None, Some(_)) => true,
                    (Some(_), None) => false,
                };
                let (key, entry) = if take_changed {
                    let (key, routes) = next.next().expect("peeked");
                    if here == Some(*key) {
                        at += 1;
                    }
                    if routes.is_empty() {
                        continue;
                    }
                    (*key, self.entry(key.1, routes, &mut t.routes))
                } else {
                    let key = here.expect("checked");
                    let mut e = old.entries[at];
                    if !e.is_inline() {
                        let first = t.routes.len() as u32;
                        t.routes.extend_from_slice(&old.routes[e.span()]);
                        e.at = first;
                    }
                    at += 1;
                    (key, e)
                };
                if is_v4(key) {
                    t.v4.push(key.0 as u32);
                } else {
                    t.v6.push(key.0);
                }
                t.entries.push(entry);
            }
        }
        debug_assert_eq!(t.prefixes(), self.prefixes);
        self.table = Arc::new(t);
        // The map's room goes too (a full table's load grew it to an
        // eighth of the table).
        self.delta = HashMap::new();
    }

    /// The table the shards read.
    pub fn snapshot(&mut self) -> Routes {
        self.compact();
        let t = &self.table;
        let n4 = t.v4.len();
        // Every prefix in address order: the IPv6 ones below
        // `::ffff:0:0`, the IPv4 ones, the rest.
        let below = t.v6.partition_point(|&n| n < V4_BASE);
        let v6 = |j: usize| (t.v6[j], t.entries[1 + n4 + j].len(), (1 + n4 + j) as u32);
        let keys = (0..below)
            .map(v6)
            .chain((0..n4).map(|i| (V4_BASE | u128::from(t.v4[i]), t.entries[1 + i].len(), 1 + i as u32)))
            .chain((below..t.v6.len()).map(v6));
        let id = |(net, len, entry): (u128, u8, u32)| {
            let routes = if t.entries[entry as usize].is_inline() { 0 } else { ID_ROUTES };
            (net, len, entry << ID_SHIFT | routes | u32::from(len))
        };
        let ranges = flatten(keys.map(id), |id, _: Option<&()>| (id, ()));
        let peers = self.peers.iter().map(|p| p.as_ref().map_or(([0; 16], 0), |p| (p.exporter, p.asn))).collect();
        let index = PrefixTable::with_roots(&ranges, V4_BUCKET_BITS, V6_ROOT_BITS, |id| {
            t.entries[(id >> ID_SHIFT) as usize].asn
        });
        Routes { index, table: t.clone(), attrs: self.attrs.values.clone(), peers }
    }
}

/// What a lookup answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The prefix's length (IPv4: 0–32).
    pub mask: u8,
    /// The origin AS (the path's last, else the peer's).
    pub asn: u32,
    /// The route, for `Routes::attrs`.
    pub route: u32,
}

/// The routes the shards read: immutable, replaced whole. The table and
/// the attribute sets are the RIB's (shared); the index is its own: per
/// address range, its prefix's length, whether it has one route, and its
/// entry; an IPv6 range also holds the best route's origin AS, so that a
/// lookup there reads nothing else.
#[derive(Clone, Debug)]
pub struct Routes {
    /// Address → the longest prefix holding it.
    index: PrefixTable,
    table: Arc<Table>,
    attrs: Vec<Arc<Attrs>>,
    /// Per peer id: its session's exporter, its AS.
    peers: Vec<(Addr, u32)>,
}

impl Default for Routes {
    fn default() -> Self {
        Rib::default().snapshot()
    }
}

impl Routes {
    /// The route for `addr` as the flow from `exporter` with `next_hop`
    /// sees it (zero `next_hop`: any).
    #[inline]
    pub fn lookup(&self, addr: &Addr, exporter: &Addr, next_hop: &Addr) -> Option<RouteInfo> {
        let a = u128::from_be_bytes(*addr);
        let v4 = is_mapped_v4(a);
        let (id, asn) = if v4 {
            let id = self.index.lookup4(a as u32);
            (id, self.table.entries.get((id >> ID_SHIFT) as usize).map_or(0, |e| e.asn))
        } else {
            self.index.lookup6(a)
        };
        self.answer(id, asn, v4, exporter, next_hop)
    }

    /// `lookup` of a flow's two addresses (source, destination), each with
    /// its next hop: of the same family, their reads go out side by side,
    /// level by level, so that the pair costs little more than one.
    #[inline]
    pub fn lookup_pair(&self, addrs: [&Addr; 2], exporter: &Addr, next_hops: [&Addr; 2]) -> [Option<RouteInfo>; 2] {
        let a = addrs.map(|x| u128::from_be_bytes(*x));
        let v4 = a.map(is_mapped_v4);
        let found = match v4 {
            [true, true] => {
                let ids = self.index.lookup4_pair(a[0] as u32, a[1] as u32);
                let entry = |id: u32| self.table.entries.get((id >> ID_SHIFT) as usize);
                for e in ids.map(entry).into_iter().flatten() {
                    prefetch(e);
                }
                ids.map(|id| (id, entry(id).map_or(0, |e| e.asn)))
            }
            [false, false] => self.index.lookup6_pair(a[0], a[1]),
            _ => return [self.lookup(addrs[0], exporter, next_hops[0]), self.lookup(addrs[1], exporter, next_hops[1])],
        };
        [0, 1].map(|i| self.answer(found[i].0, found[i].1, v4[i], exporter, next_hops[i]))
    }

    /// The answer for the index's `id` (and its best route's origin `asn`).
    #[inline(always)]
    fn answer(&self, id: u32, asn: u32, v4: bool, exporter: &Addr, next_hop: &Addr) -> Option<RouteInfo> {
        if id == 0 {
            return None;
        }
        let mask = if v4 { (id as u8).saturating_sub(96) } else { id as u8 };
        let entry = id >> ID_SHIFT;
        if id & ID_ROUTES == 0 {
            return Some(RouteInfo { mask, asn, route: entry });
        }
        let e = self.table.entries.get(entry as usize)?;
        self.choose(e, exporter, next_hop).map(|(route, asn)| RouteInfo { mask, asn, route })
    }

    /// Among a prefix's routes: the exporter's, the next hop's, the best.
    #[cold]
    fn choose(&self, e: &Entry, exporter: &Addr, next_hop: &Addr) -> Option<(u32, u32)> {
        let routes = self.table.routes.get(e.span())?;
        let peer = |r: &Route| self.peers.get(usize::from(r.peer)).copied().unwrap_or_default();
        let attrs = |r: &Route| &self.attrs[r.attrs as usize];
        let at = routes
            .iter()
            .position(|r| peer(r).0 == *exporter)
            .or_else(|| (*next_hop != [0; 16]).then(|| routes.iter().position(|r| attrs(r).next_hop == *next_hop))?)
            .unwrap_or(0);
        let r = routes.get(at)?;
        let asn = if at == 0 { e.asn } else { attrs(r).origin_as(peer(r).1) };
        Some((ROUTE_IN_ARRAY | (e.at + at as u32), asn))
    }

    /// The attributes of the route a lookup answered.
    pub fn attrs(&self, route: u32) -> Option<&Attrs> {
        let id = if route & ROUTE_IN_ARRAY != 0 {
            self.table.routes.get((route & !ROUTE_IN_ARRAY) as usize).map(|r| r.attrs)
        } else {
            self.table.entries.get(route as usize).map(|e| {
                if e.is_inline() {
                    e.at
                } else {
                    self.table.routes[e.at as usize].attrs
                }
            })
        };
        id.and_then(|id| self.attrs.get(id as usize)).map(|a| &**a)
    }

    /// Prefixes and routes in the snapshot.
    pub fn len(&self) -> (usize, u64) {
        (self.table.prefixes(), self.table.total)
    }

    pub fn is_empty(&self) -> bool {
        self.table.total == 0
    }

    /// The index: ranges and bytes, IPv4 then IPv6.
    pub fn index_parts(&self) -> [(usize, usize); 2] {
        let (r4, r6) = self.index.ranges();
        let (b4, b6) = self.index.family_bytes();
        [(r4, b4), (r6, b6)]
    }

    /// Bytes of its own (the index, the attribute list and the peers; the
    /// table is the RIB's).
    pub fn bytes(&self) -> usize {
        self.index.bytes() + self.attrs.capacity() * 8 + self.peers.capacity() * 20
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cidr;
    use crate::flow::addr_from_ip;

    fn prefix(s: &str, path_id: u32) -> Prefix {
        let (net, len) = parse_cidr(s).unwrap();
        Prefix { net: u128::from(net), len, path_id, rd: 0 }
    }

    fn ip(s: &str) -> Addr {
        addr_from_ip(s.parse().unwrap())
    }

    fn attrs(path: &[u32], next_hop: &str, local_pref: u32) -> Attrs {
        Attrs {
            as_path: path.into(),
            next_hop: ip(next_hop),
            local_pref,
            communities: [65000 << 16 | 7].into(),
            ..Attrs::default()
        }
    }

    fn key(peer: &str) -> PeerKey {
        PeerKey { addr: ip(peer), distinguisher: 0 }
    }

    /// A route as the tests see it: (prefix, peer, (path id, RD), AS path).
    type Seen = (Key, u16, (u32, u64), Vec<u32>);

    /// Every route after merging, sorted.
    fn dump(rib: &mut Rib) -> Vec<Seen> {
        rib.compact();
        let t = rib.table.clone();
        let mut all = Vec::new();
        for i in 1..t.entries.len() {
            for r in t.routes_of(i) {
                all.push((t.key(i), r.peer, *rib.nlris.get(r.nlri), rib.attrs.get(r.attrs).as_path.to_vec()));
            }
        }
        all.sort();
        all
    }

    /// Random announcements, withdrawals and peers going away, with
    /// merges every few changes, against a plain map of the same routes.
    #[test]
    fn the_table_holds_what_a_plain_map_holds() {
        use std::collections::BTreeMap;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut rib = Rib { delta_min: 3, ..Rib::default() };
        let mut model: BTreeMap<(Key, u16, (u32, u64)), u32> = BTreeMap::new();
        let peers: Vec<u32> = (0..3).map(|i| rib.peer(1, [0; 16], key(&format!("10.0.0.{i}")), 64500 + i)).collect();
        for round in 0..3000 {
            let peer = random(3) as usize;
            // IPv4 routes with path ids 0–1 and RDs 0–1, IPv6 without.
            let p = if random(2) == 0 {
                let net = V4_BASE | u128::from(random(16) as u32) << 24;
                Prefix { net, len: 96 + 8, path_id: random(2) as u32, rd: 65000 << 32 | random(2) }
            } else {
                Prefix { net: 0x2001_0db8u128 << 96 | u128::from(random(16)) << 80, len: 48, path_id: 0, rd: 0 }
            };
            let k = ((p.net, p.len), peers[peer] as u16, (p.path_id, p.rd));
            if random(3) == 0 {
                rib.withdraw(peers[peer], &[p]);
                model.remove(&k);
            } else {
                let asn = random(5) as u32;
                rib.announce(peers[peer], &[p], &attrs(&[asn], "10.0.0.1", 0));
                model.insert(k, asn);
            }
            if round % 500 == 499 {
                // A peer goes away and comes back.
                rib.peer_down(1, key("10.0.0.1"), 0);
                while rib.remove_expired(1, 0, 5) {}
                model.retain(|k, _| k.1 != peers[1] as u16);
                assert_eq!(rib.peer(1, [0; 16], key("10.0.0.1"), 64501), peers[1]);
            }
            if round % 97 == 0 {
                let expected: Vec<Seen> = model.iter().map(|(k, &asn)| (k.0, k.1, k.2, vec![asn])).collect();
                assert_eq!(dump(&mut rib), expected, "round {round}");
                assert_eq!(rib.routes, model.len() as u64);
                let routes = rib.snapshot();
                assert_eq!(routes.len().1, model.len() as u64);
                // A pair's lookups (either family, mixed) answer as two
                // lookups do.
                let mut address = || {
                    let a = if random(2) == 0 {
                        V4_BASE | u128::from(random(20) << 24 | random(1 << 24))
                    } else {
                        0x2001_0db8u128 << 96 | u128::from(random(20)) << 80 | u128::from(random(1 << 40))
                    };
                    a.to_be_bytes()
                };
                for _ in 0..64 {
                    let (a, b, hop) = (address(), address(), ip("10.0.0.1"));
                    let exporter = [0; 16];
                    assert_eq!(
                        routes.lookup_pair([&a, &b], &exporter, [&[0; 16], &hop]),
                        [routes.lookup(&a, &exporter, &[0; 16]), routes.lookup(&b, &exporter, &hop)]
                    );
                }
            }
        }
        let prefixes: std::collections::BTreeSet<Key> = model.keys().map(|k| k.0).collect();
        assert_eq!(rib.prefixes(), prefixes.len());
        assert!(rib.attribute_sets() <= 5);
        // The (path id, RD) pairs held: those of routes left, at most four.
        let pairs: std::collections::BTreeSet<(u32, u64)> = model.keys().map(|k| k.2).collect();
        assert_eq!(rib.nlris.len(), pairs.iter().filter(|&&p| p != (0, 0)).count());
    }

    #[test]
    fn peers_and_routes_past_the_limits_are_refused_and_counted() {
        let mut rib = Rib::default();
        let p = rib.peer(1, ip("192.0.2.1"), key("10.0.0.1"), 64500);
        let paths: Vec<Prefix> = (1..=PREFIX_ROUTES_MAX as u32 + 2).map(|i| prefix("10.1.0.0/16", i)).collect();
        assert_eq!(rib.announce(p, &paths, &attrs(&[1], "10.0.0.1", 0)), 2);
        assert_eq!(rib.routes, PREFIX_ROUTES_MAX as u64);
        assert_eq!(rib.snapshot().len(), (1, PREFIX_ROUTES_MAX as u64));
        for i in 1..NO_PEER {
            assert_ne!(rib.peer(2, [0; 16], PeerKey { addr: [0; 16], distinguisher: u64::from(i) }, 1), NO_PEER);
        }
        let update = Event::Update {
            peer: key("10.0.0.9"),
            asn: 1,
            announced: vec![prefix("10.2.0.0/16", 0)],
            withdrawn: vec![],
            attrs: Attrs::default(),
            ignored: 1,
            filtered: 3,
        };
        assert_eq!(
            rib.apply(3, [0; 16], update, 0),
            NotKept { family: 1, filtered: 3, limit: 1 },
            "the 65 536th peer: its prefix refused"
        );
        assert_eq!((rib.routes, rib.prefixes(), rib.attribute_sets()), (PREFIX_ROUTES_MAX as u64, 1, 1));
    }

    #[test]
    fn longest_prefix_then_exporter_then_next_hop_then_best_path() {
        let mut rib = Rib::default();
        let r1 = ip("192.0.2.1");
        let r2 = ip("192.0.2.2");
        let a = rib.peer(1, r1, key("10.0.0.1"), 64500);
        let b = rib.peer(2, r2, key("10.0.0.2"), 64501);
        rib.announce(a, &[prefix("198.51.100.0/24", 0)], &attrs(&[64500, 3356, 15169], "10.0.0.1", 100));
        rib.announce(b, &[prefix("198.51.100.0/24", 0)], &attrs(&[64501, 15169], "10.0.0.2", 200));
        rib.announce(a, &[prefix("198.51.0.0/16", 0)], &attrs(&[64500, 1299], "10.0.0.1", 100));
        let routes = rib.snapshot();
        assert_eq!(routes.len(), (2, 3));
        let other = ip("203.0.113.9");
        // The exporter's own route.
        let r = routes.lookup(&ip("198.51.100.7"), &r1, &[0; 16]).unwrap();
        assert_eq!(
            (r.mask, r.asn, &routes.attrs(r.route).unwrap().as_path[..]),
            (24, 15169, &[64500, 3356, 15169][..])
        );
        // Another exporter: the next hop's route, else the best (local preference).
        let r = routes.lookup(&ip("198.51.100.7"), &other, &ip("10.0.0.1")).unwrap();
        assert_eq!(routes.attrs(r.route).unwrap().as_path.len(), 3);
        let r = routes.lookup(&ip("198.51.100.7"), &other, &[0; 16]).unwrap();
        assert_eq!(&routes.attrs(r.route).unwrap().as_path[..], &[64501, 15169]);
        assert_eq!(routes.attrs(r.route).unwrap().communities[..], [65000 << 16 | 7]);
        // The shorter prefix around it, and nothing outside.
        let r = routes.lookup(&ip("198.51.7.1"), &other, &[0; 16]).unwrap();
        assert_eq!((r.mask, r.asn), (16, 1299));
        assert!(routes.lookup(&ip("203.0.113.1"), &other, &[0; 16]).is_none());
        assert!(routes.lookup(&ip("2001:db8::1"), &other, &[0; 16]).is_none());
    }

    #[test]
    fn replace_withdraw_and_paths_kept_apart() {
        let mut rib = Rib::default();
        let p = rib.peer(1, ip("192.0.2.1"), key("2001:db8::1"), 64500);
        rib.announce(p, &[prefix("2001:db8:100::/48", 1), prefix("2001:db8:100::/48", 2)], &attrs(&[1], "::1", 0));
        assert_eq!(rib.routes, 2, "two ADD-PATH paths are two routes");
        rib.announce(p, &[prefix("2001:db8:100::/48", 1)], &attrs(&[2], "::1", 0));
        assert_eq!((rib.routes, rib.attribute_sets()), (2, 2), "same identity: replaced");
        rib.withdraw(p, &[prefix("2001:db8:100::/48", 1), prefix("2001:db8:100::/48", 9)]);
        assert_eq!((rib.routes, rib.attribute_sets()), (1, 1));
        let routes = rib.snapshot();
        let r = routes.lookup(&ip("2001:db8:100::5"), &[0; 16], &[0; 16]).unwrap();
        assert_eq!((r.mask, r.asn), (48, 1));
        rib.withdraw(p, &[prefix("2001:db8:100::/48", 2)]);
        assert_eq!((rib.routes, rib.prefixes(), rib.attribute_sets()), (0, 0, 0));
        assert!(rib.snapshot().lookup(&ip("2001:db8:100::5"), &[0; 16], &[0; 16]).is_none());
    }

    #[test]
    fn a_peer_down_keeps_its_routes_then_removes_them_a_few_at_a_time() {
        let mut rib = Rib::default();
        let p = rib.peer(1, ip("192.0.2.1"), key("10.0.0.1"), 64500);
        let q = rib.peer(1, ip("192.0.2.1"), key("10.0.0.2"), 64501);
        let many: Vec<Prefix> = (0..100u32).map(|i| prefix(&format!("10.{i}.0.0/16"), 0)).collect();
        rib.announce(p, &many, &attrs(&[64500], "10.0.0.1", 0));
        rib.announce(q, &many[..10], &attrs(&[64501], "10.0.0.2", 0));
        rib.peer_down(1, key("10.0.0.1"), 1000);
        assert!(!rib.remove_expired(1299, 300, 10), "kept for 300 s");
        assert_eq!(rib.routes, 110);
        let mut calls = 0;
        while rib.remove_expired(1300, 300, 10) {
            calls += 1;
            assert!(rib.routes > 10);
        }
        assert!(calls >= 9, "{calls} calls");
        assert_eq!((rib.routes, rib.peers().count()), (10, 1));
        // Coming back up before the end keeps them.
        rib.session_down(1, 2000);
        rib.peer(1, ip("192.0.2.1"), key("10.0.0.2"), 64501);
        assert!(!rib.remove_expired(5000, 300, 10));
        assert_eq!(rib.routes, 10);
    }

    /// A pass removes the peers expired when it started: one that expires
    /// meanwhile waits for the next pass (its routes are not orphaned),
    /// one that comes back up meanwhile keeps what is left.
    #[test]
    fn a_pass_removes_only_the_peers_it_started_with() {
        let mut rib = Rib::default();
        let many: Vec<Prefix> = (0..100u32).map(|i| prefix(&format!("10.{i}.0.0/16"), 0)).collect();
        let p = rib.peer(1, ip("192.0.2.1"), key("10.0.0.1"), 64500);
        let q = rib.peer(2, ip("192.0.2.2"), key("10.0.0.2"), 64501);
        rib.announce(p, &many, &attrs(&[64500], "10.0.0.1", 0));
        rib.announce(q, &many, &attrs(&[64501], "10.0.0.2", 0));
        rib.peer_down(1, key("10.0.0.1"), 0);
        assert!(rib.remove_expired(10, 5, 10));
        rib.peer_down(2, key("10.0.0.2"), 0);
        while rib.remove_expired(10, 5, 10) {}
        assert_eq!((rib.routes, rib.peers().count()), (100, 1), "q waits for the next pass");
        assert_eq!(rib.peers().next().unwrap().routes, 100);
        assert!(rib.remove_expired(11, 5, 10));
        rib.peer(2, ip("192.0.2.2"), key("10.0.0.2"), 64501);
        assert!(!rib.remove_expired(11, 5, 10), "q is back up: the pass ends");
        assert_eq!((rib.routes, rib.peers().count()), (90, 1));
        assert_eq!(rib.snapshot().len(), (90, 90));
    }
}
