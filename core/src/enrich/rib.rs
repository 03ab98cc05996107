//! BGP routes as collected over BMP (`enrich::bmp`): the table a control
//! thread keeps up to date (`Rib`, one writer), and the snapshot the
//! shards read (`Routes`, immutable, replaced whole).
//!
//! - **Identity.** A route is (prefix, peer, ADD-PATH path id); a peer is
//!   (BMP session, peer address, peer distinguisher). A new announcement
//!   with the same identity replaces the route.
//! - **Attributes** (AS path, communities, large communities, next hop,
//!   local preference, MED) are interned and reference-counted: routes
//!   that share them (most of a full table) hold one 4-byte id.
//! - **Peers going away.** A Peer Down or a closed session marks its peers
//!   down; their routes stay for `keep` and are then removed a bounded
//!   number at a time (`remove_expired`), so that neither the control
//!   thread nor the flows (which read snapshots) ever wait for a whole
//!   table to go.
//! - **Snapshots.** `Rib::snapshot` flattens the prefixes with routes into
//!   address ranges (`networks::flatten`, the networks table's structure:
//!   one search per address) and, per prefix, its routes in best-path
//!   order (highest local preference, shortest AS path, lowest MED).
//!   `Routes::lookup` answers a flow's address with its longest matching
//!   prefix's route: the one learned from the flow's own exporter first,
//!   else the one whose next hop is the flow's, else the best.

use std::collections::HashMap;
use std::sync::Arc;

use super::bmp::{Attrs, Event, PeerKey, Prefix};
use super::networks::{flatten, is_mapped_v4, PrefixTable};
use crate::flow::Addr;

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

/// One route in the RIB: 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    peer: u32,
    path_id: u32,
    attrs: u32,
}

/// The RIB: routes by prefix, interned attributes, peers.
#[derive(Debug, Default)]
pub struct Rib {
    prefixes: HashMap<(u128, u8), Vec<Route>>,
    attrs: Vec<(Arc<Attrs>, u32)>,
    attr_ids: HashMap<Arc<Attrs>, u32>,
    free_attrs: Vec<u32>,
    peers: Vec<Option<Peer>>,
    peer_ids: HashMap<(u32, PeerKey), u32>,
    /// Routes held.
    pub routes: u64,
    /// Whether anything changed since the last snapshot.
    pub dirty: bool,
    /// The removal pass under way (`remove_expired`).
    removal: Option<Removal>,
}

/// A removal pass: its peers, and the prefixes left to visit.
#[derive(Debug, Default)]
struct Removal {
    peers: Vec<u32>,
    keys: Vec<(u128, u8)>,
}

impl Rib {
    /// The peer `key` of `session`, created (up) when new.
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
            None => {
                self.peers.push(Some(peer));
                self.peers.len() as u32 - 1
            }
        };
        self.peer_ids.insert((session, key), id);
        id
    }

    /// Applies what a message of `session` (from `exporter`) said at
    /// `now`; the NLRI of families not kept, for the caller to count.
    pub fn apply(&mut self, session: u32, exporter: Addr, event: Event, now: u64) -> u32 {
        match event {
            Event::PeerUp { peer, asn, .. } => {
                self.peer(session, exporter, peer, asn);
            }
            Event::PeerDown { peer } => self.peer_down(session, peer, now),
            Event::Update { peer, asn, announced, withdrawn, attrs, ignored } => {
                let id = self.peer(session, exporter, peer, asn);
                self.withdraw(id, &withdrawn);
                self.announce(id, &announced, &attrs);
                return ignored;
            }
            Event::Initiation | Event::Termination | Event::Statistics | Event::Mirroring => {}
        }
        0
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

    fn intern(&mut self, attrs: Attrs) -> u32 {
        if let Some(&id) = self.attr_ids.get(&attrs) {
            self.attrs[id as usize].1 += 1;
            return id;
        }
        let attrs = Arc::new(attrs);
        let id = match self.free_attrs.pop() {
            Some(id) => {
                self.attrs[id as usize] = (attrs.clone(), 1);
                id
            }
            None => {
                self.attrs.push((attrs.clone(), 1));
                self.attrs.len() as u32 - 1
            }
        };
        self.attr_ids.insert(attrs, id);
        id
    }

    fn release(&mut self, id: u32) {
        let entry = &mut self.attrs[id as usize];
        entry.1 -= 1;
        if entry.1 == 0 {
            let attrs = std::mem::take(&mut entry.0);
            self.attr_ids.remove(&attrs);
            self.free_attrs.push(id);
        }
    }

    /// Announces `prefixes` from `peer` with `attrs` (replacing routes of the same identity).
    pub fn announce(&mut self, peer: u32, prefixes: &[Prefix], attrs: &Attrs) {
        if prefixes.is_empty() {
            return;
        }
        self.dirty = true;
        // One reference for the call, one per route that takes the set.
        let id = self.intern(attrs.clone());
        for p in prefixes {
            self.attrs[id as usize].1 += 1;
            let routes = self.prefixes.entry((p.net, p.len)).or_default();
            match routes.iter_mut().find(|r| r.peer == peer && r.path_id == p.path_id) {
                Some(r) => {
                    let old = std::mem::replace(&mut r.attrs, id);
                    self.release(old);
                }
                None => {
                    routes.push(Route { peer, path_id: p.path_id, attrs: id });
                    self.routes += 1;
                    if let Some(p) = self.peers[peer as usize].as_mut() {
                        p.routes += 1;
                    }
                }
            }
        }
        self.release(id);
    }

    /// Withdraws `prefixes` of `peer` (unknown ones are ignored).
    pub fn withdraw(&mut self, peer: u32, prefixes: &[Prefix]) {
        for p in prefixes {
            let Some(routes) = self.prefixes.get_mut(&(p.net, p.len)) else { continue };
            let Some(at) = routes.iter().position(|r| r.peer == peer && r.path_id == p.path_id) else { continue };
            let r = routes.swap_remove(at);
            if routes.is_empty() {
                self.prefixes.remove(&(p.net, p.len));
            }
            self.release(r.attrs);
            self.routes -= 1;
            if let Some(p) = self.peers[peer as usize].as_mut() {
                p.routes -= 1;
            }
            self.dirty = true;
        }
    }

    /// Removes routes of peers down since before `now - keep`, at most
    /// `budget` prefixes visited per call (call again while it returns
    /// true). A pass takes the peers expired when it starts and the
    /// prefixes then held (a list of keys, no routes); a peer that comes
    /// back up meanwhile is left alone, one that expires meanwhile waits
    /// for the next pass. A peer is forgotten once a pass removed all of
    /// its routes.
    pub fn remove_expired(&mut self, now: u64, keep: u64, budget: usize) -> bool {
        if self.removal.is_none() {
            let peers: Vec<u32> = self
                .peers
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    p.as_ref().filter(|p| p.down_since.is_some_and(|d| now >= d.saturating_add(keep))).map(|_| i as u32)
                })
                .collect();
            if peers.is_empty() {
                return false;
            }
            self.removal = Some(Removal { peers, keys: self.prefixes.keys().copied().collect() });
        }
        let Some(mut removal) = self.removal.take() else { return false };
        // Peers back up keep what they have.
        removal.peers.retain(|&id| self.peers[id as usize].as_ref().is_some_and(|p| p.down_since.is_some()));
        for _ in 0..budget {
            if removal.peers.is_empty() {
                break;
            }
            let Some(key) = removal.keys.pop() else { break };
            let Some(routes) = self.prefixes.get_mut(&key) else { continue };
            let mut released = Vec::new();
            routes.retain(|r| {
                let gone = removal.peers.contains(&r.peer);
                if gone {
                    released.push((r.peer, r.attrs));
                }
                !gone
            });
            if routes.is_empty() {
                self.prefixes.remove(&key);
            }
            for (peer, attrs) in released {
                self.release(attrs);
                self.routes -= 1;
                if let Some(p) = self.peers[peer as usize].as_mut() {
                    p.routes -= 1;
                }
                self.dirty = true;
            }
        }
        if !removal.keys.is_empty() && !removal.peers.is_empty() {
            self.removal = Some(removal);
            return true;
        }
        for id in removal.peers {
            if let Some(p) = self.peers[id as usize].take_if(|p| p.routes == 0) {
                self.peer_ids.remove(&(p.session, p.key));
            }
        }
        self.dirty = true;
        false
    }

    /// Prefixes holding routes.
    pub fn prefixes(&self) -> usize {
        self.prefixes.len()
    }

    /// Distinct attribute sets held.
    pub fn attribute_sets(&self) -> usize {
        self.attr_ids.len()
    }

    /// Bytes held, estimated from the containers' capacities and the
    /// attribute sets' arrays.
    pub fn bytes(&self) -> usize {
        let map = |cap: usize, entry: usize| cap * (entry + 1);
        let routes: usize = self.prefixes.values().map(|r| r.capacity() * std::mem::size_of::<Route>() + 16).sum();
        let attrs: usize = self
            .attr_ids
            .keys()
            .map(|a| {
                std::mem::size_of::<Attrs>()
                    + 16
                    + a.as_path.len() * 4
                    + a.communities.len() * 4
                    + a.large_communities.len() * 12
            })
            .sum();
        map(self.prefixes.capacity(), 32 + 24)
            + routes
            + attrs
            + map(self.attr_ids.capacity(), 8 + 4)
            + self.attrs.capacity() * 16
    }

    /// The table the shards read.
    pub fn snapshot(&self) -> Routes {
        let mut keys: Vec<(u128, u8)> = self.prefixes.keys().copied().collect();
        keys.sort_unstable();
        let mut prefixes = Vec::with_capacity(keys.len() + 1);
        prefixes.push(SnapPrefix::default());
        let mut routes = Vec::with_capacity(self.routes as usize);
        let mut attrs_of: HashMap<u32, u32> = HashMap::new();
        let mut attrs: Vec<Arc<Attrs>> = Vec::new();
        let mut exporters: Vec<Addr> = Vec::new();
        let mut peer_of: HashMap<u32, u32> = HashMap::new();
        for key in &keys {
            let first = routes.len() as u32;
            for r in &self.prefixes[key] {
                let Some(peer) = self.peers[r.peer as usize].as_ref() else { continue };
                let a = *attrs_of.entry(r.attrs).or_insert_with(|| {
                    attrs.push(self.attrs[r.attrs as usize].0.clone());
                    attrs.len() as u32 - 1
                });
                let p = *peer_of.entry(r.peer).or_insert_with(|| {
                    exporters.push(peer.exporter);
                    exporters.len() as u32 - 1
                });
                routes.push(SnapRoute { peer: p, attrs: a, asn: attrs[a as usize].origin_as(peer.asn) });
            }
            let end = routes.len();
            routes[first as usize..end].sort_by_key(|r| {
                let a = &attrs[r.attrs as usize];
                (std::cmp::Reverse(a.local_pref), a.as_path.len(), a.med, r.peer)
            });
            let asn = routes.get(first as usize).map_or(0, |r| r.asn);
            prefixes.push(SnapPrefix { len: key.1, first, count: end as u32 - first, asn });
        }
        let ranges =
            flatten(keys.iter().enumerate().map(|(i, k)| (k.0, k.1, i as u32 + 1)), |id, _: Option<&()>| (id, ()));
        Routes { table: PrefixTable::new(&ranges), prefixes, routes, attrs, exporters }
    }
}

/// A prefix of the snapshot: its routes, and the answer when it has one
/// route (most prefixes): a lookup then reads nothing else.
#[derive(Clone, Copy, Debug, Default)]
struct SnapPrefix {
    first: u32,
    count: u32,
    /// The best route's origin AS.
    asn: u32,
    len: u8,
}

#[derive(Clone, Copy, Debug)]
struct SnapRoute {
    peer: u32,
    attrs: u32,
    asn: u32,
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

/// The routes the shards read: immutable, replaced whole.
#[derive(Clone, Debug)]
pub struct Routes {
    table: PrefixTable,
    /// Index 0: none; then per prefix, its routes (best first).
    prefixes: Vec<SnapPrefix>,
    routes: Vec<SnapRoute>,
    attrs: Vec<Arc<Attrs>>,
    /// Per peer: its session's exporter.
    exporters: Vec<Addr>,
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
        let at = self.table.lookup(addr) as usize;
        if at == 0 {
            return None;
        }
        let p = self.prefixes.get(at)?;
        let mask = if is_mapped_v4(u128::from_be_bytes(*addr)) { p.len.saturating_sub(96) } else { p.len };
        if p.count == 1 {
            return Some(RouteInfo { mask, asn: p.asn, route: p.first });
        }
        self.choose(p, exporter, next_hop).map(|(route, asn)| RouteInfo { mask, asn, route })
    }

    /// Among a prefix's routes: the exporter's, the next hop's, the best.
    #[cold]
    fn choose(&self, p: &SnapPrefix, exporter: &Addr, next_hop: &Addr) -> Option<(u32, u32)> {
        let first = p.first as usize;
        let routes = self.routes.get(first..first + p.count as usize)?;
        let at = routes
            .iter()
            .position(|r| self.exporters[r.peer as usize] == *exporter)
            .or_else(|| {
                (*next_hop != [0; 16])
                    .then(|| routes.iter().position(|r| self.attrs[r.attrs as usize].next_hop == *next_hop))
                    .flatten()
            })
            .unwrap_or(0);
        routes.get(at).map(|r| ((first + at) as u32, r.asn))
    }

    /// The attributes of a route a lookup answered.
    pub fn attrs(&self, route: u32) -> &Attrs {
        &self.attrs[self.routes[route as usize].attrs as usize]
    }

    /// Prefixes and routes in the snapshot.
    pub fn len(&self) -> (usize, usize) {
        (self.prefixes.len() - 1, self.routes.len())
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Bytes of the lookup structures (the attribute sets are shared with the RIB).
    pub fn bytes(&self) -> usize {
        self.table.bytes()
            + self.prefixes.capacity() * std::mem::size_of::<SnapPrefix>()
            + self.routes.capacity() * std::mem::size_of::<SnapRoute>()
            + self.attrs.capacity() * 8
            + self.exporters.capacity() * 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cidr;
    use crate::flow::addr_from_ip;

    fn prefix(s: &str, path_id: u32) -> Prefix {
        let (net, len) = parse_cidr(s).unwrap();
        Prefix { net: u128::from(net), len, path_id }
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
        assert_eq!((r.mask, r.asn, &routes.attrs(r.route).as_path[..]), (24, 15169, &[64500, 3356, 15169][..]));
        // Another exporter: the next hop's route, else the best (local preference).
        let r = routes.lookup(&ip("198.51.100.7"), &other, &ip("10.0.0.1")).unwrap();
        assert_eq!(routes.attrs(r.route).as_path.len(), 3);
        let r = routes.lookup(&ip("198.51.100.7"), &other, &[0; 16]).unwrap();
        assert_eq!(&routes.attrs(r.route).as_path[..], &[64501, 15169]);
        assert_eq!(routes.attrs(r.route).communities[..], [65000 << 16 | 7]);
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
