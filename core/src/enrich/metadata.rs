//! Exporter and interface metadata, as the shards see it.
//!
//! The control plane resolves each (exporter, ifIndex) the shards ask about
//! into an exporter record and an interface record, interns each record in
//! a table whose ids never change (`Records`), and publishes a `Snapshot`:
//! exporter address → its record and its interfaces' records. A shard keeps
//! only three ids per flow (`Meta`); the columns (ExporterName, InIfName,
//! ...) are written from the records when the block is written, so a shard
//! copies no string per flow, and the consolidated tables sum by the ids.
//!
//! A lookup never waits: what the snapshot lacks comes back as a `Miss`
//! (the exporter, or an interface), which the shard counts and asks the
//! control plane to resolve; the flow is stored meanwhile with what is
//! known (the exporter's address as its name, an empty interface).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use crate::config::{parse_cidr, MetadataConfig, StaticExporter, StaticInterface};
use crate::flow::{addr_to_ip, Addr};
use crate::wire::state::KeyHash;

/// Exporters a resolver keeps, at most (a spoofed source address makes a
/// new one; past the bound they are answered, not kept).
pub const EXPORTERS_MAX: usize = 16_384;
/// Interfaces kept per exporter, at most.
pub const INTERFACES_MAX: usize = 65_536;

/// Which way an interface faces (Akvorado's `Enum8` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Boundary {
    #[default]
    Undefined = 0,
    External = 1,
    Internal = 2,
}

impl Boundary {
    /// `undefined`, `external` or `internal`.
    pub fn parse(text: &str) -> Option<Boundary> {
        match text {
            "undefined" | "" => Some(Boundary::Undefined),
            "external" => Some(Boundary::External),
            "internal" => Some(Boundary::Internal),
            _ => None,
        }
    }
}

/// What is known of an exporter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExporterInfo {
    pub name: String,
    pub group: String,
    pub role: String,
    pub site: String,
    pub region: String,
    pub tenant: String,
}

/// What is known of one interface of an exporter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InterfaceInfo {
    pub name: String,
    pub description: String,
    /// Mbps.
    pub speed: u32,
    pub provider: String,
    pub connectivity: String,
    pub boundary: Boundary,
}

/// Records with ids that never change: id 0 is the empty record, a new
/// distinct record gets the next id. Ids stay valid in every later
/// snapshot, so rows a shard holds keep their meaning whatever it loads.
#[derive(Clone, Debug)]
pub struct Records<T> {
    items: Vec<Arc<T>>,
    ids: HashMap<Arc<T>, u32>,
}

impl<T: Default + Eq + Hash> Default for Records<T> {
    fn default() -> Self {
        let empty = Arc::new(T::default());
        Records { items: vec![empty.clone()], ids: HashMap::from([(empty, 0)]) }
    }
}

impl<T: Default + Eq + Hash> Records<T> {
    /// The id of `record`, interned if new.
    pub fn intern(&mut self, record: T) -> u32 {
        if let Some(&id) = self.ids.get(&record) {
            return id;
        }
        let id = self.items.len() as u32;
        let record = Arc::new(record);
        self.items.push(record.clone());
        self.ids.insert(record, id);
        id
    }

    /// How many (the empty one included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The record `id` (the empty one for an unknown id).
    #[inline]
    pub fn get(&self, id: u32) -> &T {
        self.items.get(id as usize).unwrap_or(&self.items[0])
    }

    /// The records as a shard reads them.
    pub fn shared(&self) -> Arc<[Arc<T>]> {
        self.items.clone().into()
    }
}

/// An exporter as a snapshot holds it.
#[derive(Clone, Debug, Default)]
pub struct KnownExporter {
    /// Its record.
    pub record: u32,
    /// Interface record by ifIndex.
    pub interfaces: HashMap<u32, u32, KeyHash>,
}

/// The three records of a flow: its exporter's, its input and output
/// interfaces'. 0 is the empty record (unknown or not asked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub exporter: u32,
    pub in_if: u32,
    pub out_if: u32,
}

/// What a lookup did not find.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misses {
    /// The exporter is unknown (its interfaces are then not looked at).
    pub exporter: bool,
    /// ifIndexes of this exporter the snapshot does not hold (0: none).
    pub in_if: u32,
    pub out_if: u32,
}

impl Misses {
    pub fn any(&self) -> bool {
        self.exporter || self.in_if != 0 || self.out_if != 0
    }
}

/// What the shards read: immutable, replaced whole by the control plane.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Counts publications (for logs and tests).
    pub generation: u64,
    /// Exporter → its place in `known`.
    pub exporters: HashMap<Addr, u32, KeyHash>,
    pub known: Vec<KnownExporter>,
    pub exporter_records: Arc<[Arc<ExporterInfo>]>,
    pub interface_records: Arc<[Arc<InterfaceInfo>]>,
}

impl Snapshot {
    /// A snapshot that knows nothing.
    pub fn empty(hash: KeyHash) -> Snapshot {
        Snapshot {
            generation: 0,
            exporters: HashMap::with_hasher(hash),
            known: Vec::new(),
            exporter_records: Records::<ExporterInfo>::default().shared(),
            interface_records: Records::<InterfaceInfo>::default().shared(),
        }
    }

    /// The records of a flow from `exporter` through `in_if` and `out_if`
    /// (ifIndex 0 is no interface: not looked up, not a miss).
    #[inline]
    pub fn lookup(&self, exporter: &Addr, in_if: u32, out_if: u32) -> (Meta, Misses) {
        match self.exporter_index(exporter) {
            Some(i) => self.lookup_at(i, in_if, out_if),
            None => (Meta::default(), Misses { exporter: true, ..Misses::default() }),
        }
    }

    /// Where `exporter` is in `known` (a shard keeps it for the next
    /// flows of the same datagram).
    #[inline]
    pub fn exporter_index(&self, exporter: &Addr) -> Option<u32> {
        self.exporters.get(exporter).copied()
    }

    /// `lookup` for the exporter at `index` (from `exporter_index`).
    #[inline]
    pub fn lookup_at(&self, index: u32, in_if: u32, out_if: u32) -> (Meta, Misses) {
        let Some(known) = self.known.get(index as usize) else {
            return (Meta::default(), Misses { exporter: true, ..Misses::default() });
        };
        let mut misses = Misses::default();
        let interface = |index: u32, miss: &mut u32| match index {
            0 => 0,
            i => known.interfaces.get(&i).copied().unwrap_or_else(|| {
                *miss = i;
                0
            }),
        };
        let in_rec = interface(in_if, &mut misses.in_if);
        let out_rec = interface(out_if, &mut misses.out_if);
        (Meta { exporter: known.record, in_if: in_rec, out_if: out_rec }, misses)
    }

    #[inline]
    pub fn exporter(&self, id: u32) -> &ExporterInfo {
        self.exporter_records.get(id as usize).unwrap_or(&self.exporter_records[0])
    }

    #[inline]
    pub fn interface(&self, id: u32) -> &InterfaceInfo {
        self.interface_records.get(id as usize).unwrap_or(&self.interface_records[0])
    }
}

impl From<&StaticInterface> for InterfaceInfo {
    fn from(i: &StaticInterface) -> InterfaceInfo {
        InterfaceInfo {
            name: i.name.clone(),
            description: i.description.clone(),
            speed: i.speed,
            provider: i.provider.clone(),
            connectivity: i.connectivity.clone(),
            boundary: Boundary::parse(&i.boundary).unwrap_or_default(),
        }
    }
}

/// What the control plane knows, turned into snapshots: answers the
/// shards' misses from the providers (the static one: `metadata.exporters`)
/// and interns every answer.
pub struct Resolver {
    /// Static exporters, most specific subnet first: (network, length, entry).
    statics: Vec<(u128, u8, StaticExporter)>,
    exporter_records: Records<ExporterInfo>,
    interface_records: Records<InterfaceInfo>,
    /// Exporter → its place in `known`.
    index: HashMap<Addr, u32, KeyHash>,
    known: Vec<KnownExporter>,
    hash: KeyHash,
    generation: u64,
    changed: bool,
}

impl Resolver {
    /// A resolver for `config` (checked): exporters named by a single
    /// address are known from the start.
    pub fn new(config: &MetadataConfig, hash: KeyHash) -> Resolver {
        let mut statics: Vec<(u128, u8, StaticExporter)> = config
            .exporters
            .iter()
            .filter_map(|e| parse_cidr(&e.subnet).map(|(net, len)| (u128::from(net), len, e.clone())))
            .collect();
        statics.sort_by_key(|s| std::cmp::Reverse(s.1));
        let mut r = Resolver {
            statics,
            exporter_records: Records::default(),
            interface_records: Records::default(),
            index: HashMap::with_hasher(hash),
            known: Vec::new(),
            hash,
            generation: 0,
            changed: true,
        };
        let hosts: Vec<u128> = r.statics.iter().filter(|s| s.1 == 128).map(|s| s.0).collect();
        for host in hosts {
            r.resolve(&host.to_be_bytes(), 0);
        }
        r
    }

    /// The static entry for `exporter`: the most specific subnet holding it.
    fn static_entry(&self, exporter: &Addr) -> Option<&StaticExporter> {
        let a = u128::from_be_bytes(*exporter);
        let mask = |len: u8| if len == 0 { 0 } else { u128::MAX << (128 - len) };
        self.statics.iter().find(|(net, len, _)| a & mask(*len) == *net).map(|s| &s.2)
    }

    /// Answers a shard's miss: `exporter` becomes known (with what the
    /// providers say, else its address as its name), and so does
    /// `if_index` (unless 0) on it. Whether it was new.
    pub fn resolve(&mut self, exporter: &Addr, if_index: u32) -> bool {
        let entry = self.static_entry(exporter).cloned();
        let mut new = false;
        if !self.index.contains_key(exporter) {
            if self.known.len() >= EXPORTERS_MAX {
                return false;
            }
            let name = match &entry {
                Some(e) if !e.name.is_empty() => e.name.clone(),
                _ => addr_to_ip(exporter).to_string(),
            };
            let info = match &entry {
                Some(e) => ExporterInfo {
                    name,
                    group: e.group.clone(),
                    role: e.role.clone(),
                    site: e.site.clone(),
                    region: e.region.clone(),
                    tenant: e.tenant.clone(),
                },
                None => ExporterInfo { name, ..ExporterInfo::default() },
            };
            let mut known = KnownExporter {
                record: self.exporter_records.intern(info),
                interfaces: HashMap::with_hasher(self.hash),
            };
            for (index, interface) in entry.iter().flat_map(|e| &e.interfaces) {
                if let Ok(index) = index.parse::<u32>() {
                    known.interfaces.insert(index, self.interface_records.intern(interface.into()));
                }
            }
            self.index.insert(*exporter, self.known.len() as u32);
            self.known.push(known);
            new = true;
        }
        let default = match &entry {
            Some(e) if !e.skip_missing_interfaces => e.default_interface.as_ref(),
            _ => None,
        };
        let default = default.map(|d| self.interface_records.intern(d.into())).unwrap_or(0);
        if let Some(known) = self.index.get(exporter).and_then(|&i| self.known.get_mut(i as usize)) {
            if if_index != 0 && !known.interfaces.contains_key(&if_index) && known.interfaces.len() < INTERFACES_MAX {
                known.interfaces.insert(if_index, default);
                new = true;
            }
        }
        self.changed |= new;
        new
    }

    /// Exporters known.
    pub fn exporters(&self) -> usize {
        self.known.len()
    }

    /// Interfaces known, over every exporter.
    pub fn interfaces(&self) -> usize {
        self.known.iter().map(|k| k.interfaces.len()).sum()
    }

    /// Distinct records interned (exporters', interfaces').
    pub fn records(&self) -> (usize, usize) {
        (self.exporter_records.len(), self.interface_records.len())
    }

    /// A new snapshot when anything changed since the last one.
    pub fn snapshot(&mut self) -> Option<Snapshot> {
        if !self.changed {
            return None;
        }
        self.changed = false;
        self.generation += 1;
        Some(Snapshot {
            generation: self.generation,
            exporters: self.index.clone(),
            known: self.known.clone(),
            exporter_records: self.exporter_records.shared(),
            interface_records: self.interface_records.shared(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::addr_from_v4;

    #[test]
    fn records_keep_their_ids_and_intern_equal_ones_once() {
        let mut r = Records::<InterfaceInfo>::default();
        let a = r.intern(InterfaceInfo { name: "xe-0/0/1".into(), speed: 10_000, ..InterfaceInfo::default() });
        let b = r.intern(InterfaceInfo { name: "xe-0/0/2".into(), ..InterfaceInfo::default() });
        assert_eq!((a, b), (1, 2));
        assert_eq!(r.intern(InterfaceInfo { name: "xe-0/0/1".into(), speed: 10_000, ..InterfaceInfo::default() }), 1);
        assert_eq!(r.intern(InterfaceInfo::default()), 0);
        assert_eq!(r.get(2).name, "xe-0/0/2");
        assert_eq!(r.get(99).name, "", "an unknown id reads as the empty record");
    }

    #[test]
    fn a_lookup_says_what_it_missed() {
        let hash = KeyHash::with_seed(1);
        let mut s = Snapshot::empty(hash);
        let mut exporters = Records::<ExporterInfo>::default();
        let mut interfaces = Records::<InterfaceInfo>::default();
        let edge = exporters.intern(ExporterInfo { name: "edge1".into(), ..ExporterInfo::default() });
        let mut known = KnownExporter { record: edge, interfaces: HashMap::with_hasher(hash) };
        known.interfaces.insert(17, interfaces.intern(InterfaceInfo { name: "et-17".into(), ..Default::default() }));
        let a = addr_from_v4([192, 0, 2, 1]);
        s.exporters.insert(a, 0);
        s.known.push(known);
        s.exporter_records = exporters.shared();
        s.interface_records = interfaces.shared();
        let (meta, misses) = s.lookup(&a, 17, 18);
        assert_eq!(meta, Meta { exporter: 1, in_if: 1, out_if: 0 });
        assert_eq!(misses, Misses { exporter: false, in_if: 0, out_if: 18 });
        assert_eq!(s.exporter(meta.exporter).name, "edge1");
        assert_eq!(s.interface(meta.in_if).name, "et-17");
        assert!(!s.lookup(&a, 0, 17).1.any(), "ifIndex 0 is no interface");
        let (meta, misses) = s.lookup(&addr_from_v4([192, 0, 2, 2]), 1, 2);
        assert_eq!((meta, misses.exporter, misses.in_if), (Meta::default(), true, 0));
    }

    fn static_config() -> MetadataConfig {
        let text = r#"
            [[exporters]]
            subnet = "192.0.2.0/24"
            site = "par"
            default_interface = { name = "unknown", boundary = "internal" }
            [exporters.interfaces]
            "17" = { name = "et-17", description = "Transit: Cogent", speed = 100000, provider = "cogent", connectivity = "transit", boundary = "external" }
            [[exporters]]
            subnet = "192.0.2.1"
            name = "edge1-par"
            skip_missing_interfaces = true
            [exporters.interfaces]
            "3" = { name = "et-3" }
        "#;
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_static_provider_answers_by_the_most_specific_subnet() {
        let hash = KeyHash::with_seed(7);
        let mut r = Resolver::new(&static_config(), hash);
        // The single-address exporter is known from the start.
        let s = r.snapshot().unwrap();
        let (meta, misses) = s.lookup(&addr_from_v4([192, 0, 2, 1]), 3, 17);
        assert_eq!(s.exporter(meta.exporter).name, "edge1-par");
        assert_eq!(s.interface(meta.in_if).name, "et-3");
        assert_eq!(misses.out_if, 17, "not its interface: the /32 has no 17");
        assert!(r.snapshot().is_none(), "nothing changed");
        // A miss resolved: skip_missing leaves it empty.
        assert!(r.resolve(&addr_from_v4([192, 0, 2, 1]), 17));
        assert!(!r.resolve(&addr_from_v4([192, 0, 2, 1]), 17), "once");
        // Another exporter of the /24: its attributes, interfaces and default.
        r.resolve(&addr_from_v4([192, 0, 2, 9]), 5);
        // One no subnet holds: named by its address.
        r.resolve(&addr_from_v4([198, 51, 100, 7]), 0);
        let s = r.snapshot().unwrap();
        assert_eq!(s.generation, 2);
        let (meta, misses) = s.lookup(&addr_from_v4([192, 0, 2, 1]), 3, 17);
        assert!(!misses.any());
        assert_eq!(s.interface(meta.out_if), &InterfaceInfo::default());
        let (meta, misses) = s.lookup(&addr_from_v4([192, 0, 2, 9]), 17, 5);
        assert!(!misses.any());
        let exporter = s.exporter(meta.exporter);
        assert_eq!((exporter.name.as_str(), exporter.site.as_str()), ("192.0.2.9", "par"));
        let transit = s.interface(meta.in_if);
        assert_eq!(
            (transit.provider.as_str(), transit.speed, transit.boundary),
            ("cogent", 100_000, Boundary::External)
        );
        assert_eq!(s.interface(meta.out_if).name, "unknown");
        assert_eq!(s.interface(meta.out_if).boundary, Boundary::Internal);
        let (meta, _) = s.lookup(&addr_from_v4([198, 51, 100, 7]), 0, 0);
        assert_eq!(s.exporter(meta.exporter).name, "198.51.100.7");
        assert_eq!((r.exporters(), r.interfaces()), (3, 2 + 2));
    }
}
