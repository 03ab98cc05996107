//! Exporter and interface metadata, as the shards see it.
//!
//! The control plane resolves each (exporter, ifIndex) the shards ask about
//! into an exporter record and an interface record, interns each record in
//! a table whose ids never change (`Records`), and publishes a `Snapshot`:
//! exporter address → its record and its interfaces' records. A shard
//! looks a batch's rows up once per run of rows from the same exporter and
//! interfaces (`Meta`: three record ids) when it writes the batch; the raw
//! table stores each record's store id (`StoredId`: a hash of its content)
//! and reads the names from the records tables, the consolidated tables
//! store the names of each summed row's records. A shard copies no string
//! per flow.
//!
//! A lookup never waits: what the snapshot lacks comes back as a `Miss`
//! (the exporter, or an interface), which the shard counts and asks the
//! control plane to resolve; the rows are stored meanwhile with what is
//! known (the exporter's address as its name, an empty interface).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::classify::{Classifiers, ExporterClass, InterfaceClass, InterfaceFacts, RuleError, RuleKind};
use crate::config::{parse_cidr, MetadataConfig, MetadataProvider, StaticExporter, StaticInterface};
use crate::flow::{addr_to_ip, Addr};
use crate::wire::state::KeyHash;

/// Exporters a resolver keeps, at most (a spoofed source address makes a
/// new one; past the bound they are answered, not kept).
pub const EXPORTERS_MAX: usize = 16_384;
/// Interfaces kept per exporter, at most.
pub const INTERFACES_MAX: usize = 65_536;
/// Set on a snapshot's usage slot while a polled provider has not answered
/// for the entry yet: the row is stored with what is known, and the lookup
/// counted as pending.
pub const PENDING: u32 = 1 << 31;
/// Set on a snapshot's usage slot when a classifier rejected the exporter
/// or interface: its flows are dropped, counted.
pub const REJECTED: u32 = 1 << 30;
/// The usage flag itself, without `PENDING` and `REJECTED`.
const SLOT: u32 = !(PENDING | REJECTED);
/// Classifier failures kept for the control thread to log, at most.
const RULE_ERRORS_KEPT: usize = 16;
/// Version of the cache file's format.
pub const CACHE_FORMAT_VERSION: u32 = 1;

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

/// A record's id in the store (the raw table's `ExporterRecord`,
/// `InIfRecord`, `OutIfRecord`, the records tables' `Id`): the first 8
/// bytes of SHA-256 over its fields, each length-prefixed. The same record
/// gets the same id in every run and every shard, a changed one a new id,
/// so a raw row keeps the names it had when it was stored. Never 0, which
/// is no record (the empty one).
pub trait StoredId {
    fn stored_id(&self) -> u64;
}

/// SHA-256 of `fields`, each prefixed by its length, as a store id.
pub(crate) fn content_id(kind: u8, fields: &[&[u8]]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([kind]);
    for f in fields {
        h.update((f.len() as u64).to_le_bytes());
        h.update(f);
    }
    let digest = h.finalize();
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()).max(1)
}

impl StoredId for ExporterInfo {
    fn stored_id(&self) -> u64 {
        let e = self;
        content_id(b'E', &[&e.name, &e.group, &e.role, &e.site, &e.region, &e.tenant].map(|s| s.as_bytes()))
    }
}

impl StoredId for InterfaceInfo {
    fn stored_id(&self) -> u64 {
        let i = self;
        let speed = i.speed.to_le_bytes();
        let boundary = [i.boundary as u8];
        let strings = [&i.name, &i.description, &i.provider, &i.connectivity].map(|s| s.as_bytes());
        content_id(b'I', &[strings[0], strings[1], &speed, strings[2], strings[3], &boundary])
    }
}

/// Records with ids that never change: id 0 is the empty record, a new
/// distinct record gets the next id. Ids stay valid in every later
/// snapshot, so rows a shard holds keep their meaning whatever it loads.
/// Each also has its store id (`StoredId`; 0 for the empty one).
#[derive(Clone, Debug)]
pub struct Records<T> {
    items: Vec<Arc<T>>,
    stored: Vec<u64>,
    ids: HashMap<Arc<T>, u32>,
}

impl<T: Default + Eq + Hash> Default for Records<T> {
    fn default() -> Self {
        let empty = Arc::new(T::default());
        Records { items: vec![empty.clone()], stored: vec![0], ids: HashMap::from([(empty, 0)]) }
    }
}

impl<T: Default + Eq + Hash + StoredId> Records<T> {
    /// The id of `record`, interned if new.
    pub fn intern(&mut self, record: T) -> u32 {
        if let Some(&id) = self.ids.get(&record) {
            return id;
        }
        let id = self.items.len() as u32;
        self.stored.push(record.stored_id());
        let record = Arc::new(record);
        self.items.push(record.clone());
        self.ids.insert(record, id);
        id
    }

    /// The store ids, by record id, as a shard reads them.
    pub fn shared_ids(&self) -> Arc<[u64]> {
        self.stored.clone().into()
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

/// Records a shard's batch points to that the shard has not handed over
/// before (`columns::Columns::new_records`), with their store ids: rows
/// for the store's records tables.
#[derive(Clone, Debug, Default)]
pub struct NewRecords {
    pub exporters: Vec<(u64, Arc<ExporterInfo>)>,
    pub interfaces: Vec<(u64, Arc<InterfaceInfo>)>,
    pub networks: Vec<(u64, crate::config::NetworkInfo)>,
}

impl NewRecords {
    pub fn is_empty(&self) -> bool {
        self.exporters.is_empty() && self.interfaces.is_empty() && self.networks.is_empty()
    }

    pub fn clear(&mut self) {
        self.exporters.clear();
        self.interfaces.clear();
        self.networks.clear();
    }
}

/// (exporter place, ifIndex) pairs a snapshot holds, as one shard met
/// them: a direct-mapped filter (4096 slots, 32 KiB), so that a flow of a
/// known exporter through known interfaces costs two probes of it, not
/// two map lookups. Cleared with each new snapshot.
#[derive(Clone, Debug)]
pub struct SeenPairs(Box<[u64]>);

impl Default for SeenPairs {
    fn default() -> Self {
        SeenPairs(vec![0; 4096].into_boxed_slice())
    }
}

impl SeenPairs {
    pub fn clear(&mut self) {
        self.0.fill(0);
    }

    /// Whether `snapshot` holds interface `if_index` of the exporter at
    /// `place` (`Snapshot::exporter_index`); remembered when it does.
    #[inline]
    pub fn holds(&mut self, snapshot: &Snapshot, place: u32, if_index: u32) -> bool {
        let key = (place as u64 + 1) << 32 | if_index as u64;
        let slot = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize & (self.0.len() - 1);
        self.0[slot] == key || self.fill(snapshot, place, if_index, key, slot)
    }

    #[cold]
    fn fill(&mut self, snapshot: &Snapshot, place: u32, if_index: u32, key: u64, slot: usize) -> bool {
        let held = snapshot.known.get(place as usize).is_some_and(|k| k.interfaces.contains_key(&if_index));
        if held {
            self.0[slot] = key;
        }
        held
    }
}

/// An exporter as a snapshot holds it.
#[derive(Clone, Debug, Default)]
pub struct KnownExporter {
    /// Its record.
    pub record: u32,
    /// Its usage flag (`Usage`), with `PENDING` while a polled provider
    /// has not named it yet.
    pub slot: u32,
    /// Interface (record, usage flag | `PENDING`) by ifIndex.
    pub interfaces: HashMap<u32, (u32, u32), KeyHash>,
}

/// One flag per cache entry, set by the shards when a flow uses the entry
/// and taken back by the control plane's sweep: how entries nobody uses
/// expire. A shard writes a flag only when it is clear, so a busy entry's
/// cache line is read, not bounced between cores.
#[derive(Debug, Default)]
pub struct Usage(Box<[AtomicBool]>);

impl Usage {
    pub fn new(slots: usize) -> Usage {
        Usage((0..slots).map(|_| AtomicBool::new(false)).collect())
    }

    #[inline]
    pub fn touch(&self, slot: u32) {
        if let Some(f) = self.0.get((slot & SLOT) as usize) {
            if !f.load(Relaxed) {
                f.store(true, Relaxed);
            }
        }
    }

    /// Whether `slot` was used since the last take.
    pub fn take(&self, slot: u32) -> bool {
        self.0.get(slot as usize).is_some_and(|f| f.swap(false, Relaxed))
    }
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
    /// Known, but a polled provider has not answered yet for the exporter
    /// or an interface (already asked: not a miss, but not metadata yet).
    pub pending: bool,
    /// A classifier rejected the exporter or an interface: drop the flow.
    pub rejected: bool,
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
    /// The records' store ids (`StoredId`), by record id.
    pub exporter_ids: Arc<[u64]>,
    pub interface_ids: Arc<[u64]>,
    /// The control plane's usage flags (shared by every snapshot).
    pub usage: Arc<Usage>,
    /// Whether a classifier rejected an exporter or interface here: the
    /// shards then look each flow up as it comes, to drop those.
    pub rejects: bool,
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
            exporter_ids: Arc::new([0]),
            interface_ids: Arc::new([0]),
            usage: Arc::new(Usage::default()),
            rejects: false,
        }
    }

    /// Sets the records (and their store ids) from the control plane's tables.
    pub fn set_records(&mut self, exporters: &Records<ExporterInfo>, interfaces: &Records<InterfaceInfo>) {
        self.exporter_records = exporters.shared();
        self.interface_records = interfaces.shared();
        self.exporter_ids = exporters.shared_ids();
        self.interface_ids = interfaces.shared_ids();
    }

    /// The store id of a row's record `id` of kind `kind` (0 its
    /// exporter's, 1 and 2 an interface's); 0 for an unknown one.
    #[inline]
    pub fn stored_id(&self, kind: usize, id: u32) -> u64 {
        let ids = if kind == 0 { &self.exporter_ids } else { &self.interface_ids };
        ids.get(id as usize).copied().unwrap_or(0)
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

    /// The records of `exporter` and its interfaces, whatever is missing
    /// left empty: for rows already stored (no usage flag set, no miss
    /// reported).
    pub fn resolve(&self, exporter: &Addr, in_if: u32, out_if: u32) -> Meta {
        let Some(known) = self.exporter_index(exporter).and_then(|i| self.known.get(i as usize)) else {
            return Meta::default();
        };
        let interface = |i: u32| if i == 0 { 0 } else { known.interfaces.get(&i).map_or(0, |&(record, _)| record) };
        Meta { exporter: known.record, in_if: interface(in_if), out_if: interface(out_if) }
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
        self.usage.touch(known.slot);
        // PENDING and REJECTED of the exporter and both interfaces.
        let mut flags = known.slot;
        let mut interface = |index: u32, miss: &mut u32| match index {
            0 => 0,
            i => match known.interfaces.get(&i) {
                Some(&(record, slot)) => {
                    self.usage.touch(slot);
                    flags |= slot;
                    record
                }
                None => {
                    *miss = i;
                    0
                }
            },
        };
        let in_rec = interface(in_if, &mut misses.in_if);
        let out_rec = interface(out_if, &mut misses.out_if);
        misses.pending = flags & PENDING != 0;
        misses.rejected = flags & REJECTED != 0;
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

/// Entries by subnet: the most specific subnet holding an address wins.
#[derive(Clone, Debug)]
pub struct SubnetMap<T> {
    /// (network, length, entry), longest first.
    entries: Vec<(u128, u8, T)>,
}

impl<T> SubnetMap<T> {
    /// From (subnet, entry) pairs; a subnet that does not parse (the config
    /// check refuses them) is left out.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, T)>) -> SubnetMap<T> {
        let mut entries: Vec<(u128, u8, T)> = entries
            .into_iter()
            .filter_map(|(subnet, e)| parse_cidr(subnet).map(|(net, len)| (u128::from(net), len, e)))
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.1));
        SubnetMap { entries }
    }

    /// The entry of the most specific subnet holding `addr`.
    pub fn get(&self, addr: &Addr) -> Option<&T> {
        let a = u128::from_be_bytes(*addr);
        let mask = |len: u8| if len == 0 { 0 } else { u128::MAX << (128 - len) };
        self.entries.iter().find(|(net, len, _)| a & mask(*len) == *net).map(|e| &e.2)
    }

    /// The single addresses (/32, /128) the map names.
    pub fn hosts(&self) -> impl Iterator<Item = Addr> + '_ {
        self.entries.iter().filter(|e| e.1 == 128).map(|e| e.0.to_be_bytes())
    }
}

/// What resolving a miss did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The snapshot changes (the exporter or the interface is new).
    pub new: bool,
    /// A polled provider (SNMP) must answer: meanwhile the exporter is
    /// named by its address and the interface is empty.
    pub poll: bool,
}

/// The static provider's entries: the configured ones, then the remote
/// ones whose subnet no configured entry names.
fn statics_of(configured: &[StaticExporter], remote: &[StaticExporter]) -> SubnetMap<StaticExporter> {
    let named: std::collections::HashSet<_> = configured.iter().filter_map(|e| parse_cidr(&e.subnet)).collect();
    let remote = remote.iter().filter(|e| parse_cidr(&e.subnet).is_some_and(|s| !named.contains(&s)));
    SubnetMap::new(configured.iter().chain(remote).map(|e| (e.subnet.as_str(), e.clone())))
}

/// `slot` (its usage flag) with `PENDING` and `REJECTED` set as said.
fn flagged(slot: u32, pending: bool, rejected: bool) -> u32 {
    (slot & SLOT) | if pending { PENDING } else { 0 } | if rejected { REJECTED } else { 0 }
}

/// One cache entry: an exporter (ifIndex 0) or one of its interfaces.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Its usage flag.
    slot: u32,
    /// Answered by a polled provider (SNMP): refreshed and saved.
    polled: bool,
    /// When the polled answer came (unix seconds); 0: not yet.
    updated_s: u64,
    /// When a flow last used it.
    used_s: u64,
    /// When it was last asked to be polled (refreshes are spaced by the
    /// refresh interval).
    asked_s: u64,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Entries no flow used for the expiry time, dropped.
    pub expired: usize,
    /// Polled entries to poll again: (exporter, ifIndex; 0: its name).
    pub refresh: Vec<(Addr, u32)>,
    /// Exporters forgotten (nothing is to be polled for them any more).
    pub forgotten: Vec<Addr>,
}

/// The cache file: what polled providers answered, so that a restart
/// answers without polling (refreshed in the background when old).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheFile {
    pub version: u32,
    pub exporters: Vec<CachedExporter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedExporter {
    pub address: std::net::IpAddr,
    /// Its polled name (sysName), if it has one.
    pub name: Option<String>,
    pub updated_s: u64,
    pub interfaces: Vec<CachedInterface>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedInterface {
    pub if_index: u32,
    pub name: String,
    pub description: String,
    pub speed: u32,
    pub updated_s: u64,
}

/// What the control plane knows, turned into snapshots: answers the
/// shards' misses from the static provider, says which ones a polled
/// provider (SNMP) must answer, takes those answers, and interns them all.
///
/// Providers are asked in `metadata.providers` order; the first that
/// covers the exporter (for its attributes) or the interface answers. The
/// static provider covers an exporter its subnets hold, and an interface
/// it lists, or any interface of such an exporter unless
/// `skip_missing_interfaces`; SNMP covers the exporters its credentials'
/// subnets hold.
///
/// Every exporter and interface known is a cache entry, bounded in number
/// (`EXPORTERS_MAX` exporters, `entries_max` interfaces): `sweep` drops
/// those no flow used for the expiry time and lists the polled ones due
/// for a refresh; `cache_file` and `load` carry polled answers over a
/// restart.
pub struct Resolver {
    providers: Vec<MetadataProvider>,
    /// `metadata.exporters`, which win over remote sources.
    configured: Vec<StaticExporter>,
    statics: SubnetMap<StaticExporter>,
    /// Subnets SNMP polls.
    polled: SubnetMap<()>,
    exporter_records: Records<ExporterInfo>,
    interface_records: Records<InterfaceInfo>,
    /// Exporter → its place in `known`.
    index: HashMap<Addr, u32, KeyHash>,
    known: Vec<KnownExporter>,
    /// Places in `known` of expired exporters, for new ones.
    free_known: Vec<u32>,
    entries: HashMap<(Addr, u32), Entry, KeyHash>,
    /// Polled system names.
    sys_names: HashMap<Addr, String, KeyHash>,
    usage: Arc<Usage>,
    free_slots: Vec<u32>,
    next_slot: u32,
    /// Interfaces kept, over every exporter, at most.
    entries_max: usize,
    /// Interfaces refused because `entries_max` were kept.
    pub refused: u64,
    hash: KeyHash,
    now_s: u64,
    generation: u64,
    changed: bool,
    /// Exporters known from the start that a polled provider names.
    first_polls: Vec<Addr>,
    classifiers: Option<Classifiers>,
    /// Run-time failures by (rule kind, rule index).
    pub classifier_errors: HashMap<(RuleKind, usize), u64>,
    /// The latest failures, for the log (drained by `take_rule_errors`).
    rule_errors: Vec<RuleError>,
}

impl Resolver {
    /// A resolver for `config` (checked): exporters named by a single
    /// address in the static provider are known from the start.
    pub fn new(config: &MetadataConfig, hash: KeyHash) -> Resolver {
        let configured = match config.uses(MetadataProvider::Static) {
            true => config.exporters.clone(),
            false => Vec::new(),
        };
        let statics = statics_of(&configured, &[]);
        let polled = match config.uses(MetadataProvider::Snmp) {
            true => SubnetMap::new(config.snmp.credentials.iter().map(|c| (c.subnet.as_str(), ()))),
            false => SubnetMap::new([]),
        };
        let entries_max = config.cache_entries_max;
        let mut r = Resolver {
            providers: config.providers.clone(),
            configured,
            statics,
            polled,
            exporter_records: Records::default(),
            interface_records: Records::default(),
            index: HashMap::with_hasher(hash),
            known: Vec::new(),
            free_known: Vec::new(),
            entries: HashMap::with_hasher(hash),
            sys_names: HashMap::with_hasher(hash),
            usage: Arc::new(Usage::new(EXPORTERS_MAX + entries_max)),
            free_slots: Vec::new(),
            next_slot: 0,
            entries_max,
            refused: 0,
            hash,
            now_s: 0,
            generation: 0,
            changed: true,
            first_polls: Vec::new(),
            classifiers: Classifiers::new(&config.exporter_classifiers, &config.interface_classifiers)
                .ok()
                .filter(|c| !c.is_empty()),
            classifier_errors: HashMap::new(),
            rule_errors: Vec::new(),
        };
        let hosts: Vec<Addr> = r.statics.hosts().collect();
        for host in hosts {
            if r.resolve(&host, 0).poll {
                r.first_polls.push(host);
            }
        }
        r
    }

    /// Takes the remote sources' entries (all of them, replacing the last
    /// ones; `metadata.exporters` win for the same subnet) and resolves
    /// again every exporter and interface known, as a miss would. The
    /// entries SNMP must now poll.
    pub fn set_remote(&mut self, remote: &[StaticExporter]) -> Vec<(Addr, u32)> {
        if !self.providers.contains(&MetadataProvider::Static) {
            return Vec::new();
        }
        self.statics = statics_of(&self.configured, remote);
        let mut polls = Vec::new();
        let known: Vec<(Addr, u32)> = self.index.iter().map(|(a, &at)| (*a, at)).collect();
        for (exporter, at) in known {
            let name_polled = self.name_polled(&exporter);
            let sys_name = self.sys_names.get(&exporter).filter(|_| name_polled).cloned();
            let (record, rejected) = self.exporter_record(&exporter, sys_name.as_deref());
            let pending = name_polled && sys_name.is_none();
            if pending {
                polls.push((exporter, 0));
            }
            let slot = &mut self.known[at as usize].slot;
            *slot = flagged(*slot, pending, rejected);
            self.known[at as usize].record = record;
            if let Some(e) = self.entries.get_mut(&(exporter, 0)) {
                e.polled = name_polled;
            }
            let indexes: Vec<u32> = self.known[at as usize].interfaces.keys().copied().collect();
            for index in indexes {
                let polled = self.entries.get(&(exporter, index)).is_some_and(|e| e.polled);
                let (record, slot) = match self.provided_interface(&exporter, index) {
                    Some(info) => {
                        let (record, rejected) = self.interface_record(&exporter, index, info);
                        (Some(record), (false, rejected))
                    }
                    // Polled already: its answer stands until the next.
                    None if polled => continue,
                    None => {
                        polls.push((exporter, index));
                        let (record, rejected) = self.interface_record(&exporter, index, InterfaceInfo::default());
                        (Some(record), (true, rejected))
                    }
                };
                if let Some(e) = self.entries.get_mut(&(exporter, index)) {
                    e.polled = slot.0;
                }
                if let Some(known) = self.known[at as usize].interfaces.get_mut(&index) {
                    known.0 = record.unwrap_or(0);
                    known.1 = flagged(known.1, slot.0, slot.1);
                }
            }
        }
        self.changed = true;
        polls
    }

    /// The time (unix seconds) new entries and answers are stamped with.
    pub fn set_now(&mut self, now_s: u64) {
        self.now_s = now_s;
    }

    /// The exporters known from the start whose names a polled provider
    /// gives (each is to be polled once, interfaces or not).
    pub fn take_first_polls(&mut self) -> Vec<Addr> {
        std::mem::take(&mut self.first_polls)
    }

    /// Whether SNMP polls `exporter`.
    pub fn polls(&self, exporter: &Addr) -> bool {
        self.polled.get(exporter).is_some()
    }

    /// The exporter's record: named `polled` (its system name, when a
    /// polled provider names it), else by the static provider, else by its
    /// address; attributes from the static provider when it covers it, then
    /// from the exporter classifiers. The record and whether a classifier
    /// rejected it.
    fn exporter_record(&mut self, exporter: &Addr, polled: Option<&str>) -> (u32, bool) {
        let entry = self.statics.get(exporter);
        let name = match (polled, entry) {
            (Some(name), _) => name.to_string(),
            (None, Some(e)) if !e.name.is_empty() => e.name.clone(),
            _ => addr_to_ip(exporter).to_string(),
        };
        let mut info = match entry {
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
        let mut rejected = false;
        if let Some(c) = &self.classifiers {
            let preset = ExporterClass {
                group: info.group.clone(),
                role: info.role.clone(),
                site: info.site.clone(),
                region: info.region.clone(),
                tenant: info.tenant.clone(),
                rejected: false,
            };
            let (class, error) = c.exporter(&addr_to_ip(exporter).to_string(), &info.name, preset);
            (info.group, info.role, info.site, info.region, info.tenant) =
                (class.group, class.role, class.site, class.region, class.tenant);
            rejected = class.rejected;
            self.count_rule_error(error);
        }
        (self.exporter_records.intern(info), rejected)
    }

    /// The interface record of `info` (from a provider, or empty) once the
    /// interface classifiers ran on it, and whether they rejected it.
    fn interface_record(&mut self, exporter: &Addr, if_index: u32, mut info: InterfaceInfo) -> (u32, bool) {
        let mut rejected = false;
        if let Some(c) = &self.classifiers {
            let name = match self.index.get(exporter) {
                Some(&at) => self.exporter_records.get(self.known[at as usize].record).name.clone(),
                None => addr_to_ip(exporter).to_string(),
            };
            let facts =
                InterfaceFacts { index: if_index, name: &info.name, description: &info.description, speed: info.speed };
            let preset = InterfaceClass {
                provider: info.provider.clone(),
                connectivity: info.connectivity.clone(),
                boundary: info.boundary,
                ..InterfaceClass::default()
            };
            let (class, error) = c.interface(&addr_to_ip(exporter).to_string(), &name, &facts, preset);
            (info.provider, info.connectivity, info.boundary) = (class.provider, class.connectivity, class.boundary);
            if let Some(n) = class.name {
                info.name = n;
            }
            if let Some(d) = class.description {
                info.description = d;
            }
            rejected = class.rejected;
            self.count_rule_error(error);
        }
        (self.interface_records.intern(info), rejected)
    }

    fn count_rule_error(&mut self, error: Option<RuleError>) {
        let Some(error) = error else { return };
        *self.classifier_errors.entry((error.kind, error.index)).or_default() += 1;
        if self.rule_errors.len() < RULE_ERRORS_KEPT {
            self.rule_errors.push(error);
        }
    }

    /// The classifier failures since the last call (at most 16), for the log.
    pub fn take_rule_errors(&mut self) -> Vec<RuleError> {
        std::mem::take(&mut self.rule_errors)
    }

    /// Whether the exporter's name comes from a polled provider: SNMP polls
    /// it and no provider before it names it.
    fn name_polled(&self, exporter: &Addr) -> bool {
        for p in &self.providers {
            match p {
                MetadataProvider::Static => {
                    if self.statics.get(exporter).is_some_and(|e| !e.name.is_empty()) {
                        return false;
                    }
                }
                MetadataProvider::Snmp => return self.polls(exporter),
            }
        }
        false
    }

    /// The interface `if_index` of `exporter` from the first provider that
    /// covers it: Some(attributes) from the static one, None when SNMP must
    /// poll it, Some(empty) when none covers it.
    fn provided_interface(&self, exporter: &Addr, if_index: u32) -> Option<InterfaceInfo> {
        for p in &self.providers {
            match p {
                MetadataProvider::Static => {
                    let Some(e) = self.statics.get(exporter) else { continue };
                    if let Some(i) = e.interfaces.get(&if_index.to_string()) {
                        return Some(InterfaceInfo::from(i));
                    }
                    if e.skip_missing_interfaces {
                        continue;
                    }
                    return Some(e.default_interface.as_ref().map(InterfaceInfo::from).unwrap_or_default());
                }
                MetadataProvider::Snmp if self.polls(exporter) => return None,
                MetadataProvider::Snmp => {}
            }
        }
        Some(InterfaceInfo::default())
    }

    /// A new cache entry for (exporter, if_index): its usage flag, or None
    /// when every flag is taken.
    fn add_entry(&mut self, exporter: &Addr, if_index: u32, polled: bool) -> Option<u32> {
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None if (self.next_slot as usize) < EXPORTERS_MAX + self.entries_max => {
                self.next_slot += 1;
                self.next_slot - 1
            }
            None => return None,
        };
        let now = self.now_s;
        self.entries.insert((*exporter, if_index), Entry { slot, polled, updated_s: 0, used_s: now, asked_s: now });
        Some(slot)
    }

    /// Answers a shard's miss: `exporter` becomes known (with what the
    /// providers say, else its address as its name), and so does
    /// `if_index` (unless 0) on it; `poll` when SNMP must say more.
    pub fn resolve(&mut self, exporter: &Addr, if_index: u32) -> Resolved {
        let mut done = Resolved::default();
        if !self.index.contains_key(exporter) {
            if self.index.len() >= EXPORTERS_MAX {
                return done;
            }
            let poll = self.name_polled(exporter);
            let Some(slot) = self.add_entry(exporter, 0, poll) else { return done };
            let (record, rejected) = self.exporter_record(exporter, None);
            let slot = flagged(slot, poll, rejected);
            let mut known = KnownExporter { record, slot, interfaces: HashMap::with_hasher(self.hash) };
            // Interfaces the static provider lists, unless a provider
            // before it answers for them.
            let listed = match self.providers.first() {
                Some(MetadataProvider::Static) => self.statics.get(exporter).map(|e| e.interfaces.clone()),
                _ => None,
            };
            for (index, interface) in listed.iter().flatten() {
                let Ok(index) = index.parse::<u32>() else { continue };
                if self.interfaces() >= self.entries_max {
                    self.refused += 1;
                    break;
                }
                let Some(slot) = self.add_entry(exporter, index, false) else { break };
                let (record, rejected) = self.interface_record(exporter, index, interface.into());
                known.interfaces.insert(index, (record, flagged(slot, false, rejected)));
            }
            let at = match self.free_known.pop() {
                Some(at) => {
                    self.known[at as usize] = known;
                    at
                }
                None => {
                    self.known.push(known);
                    self.known.len() as u32 - 1
                }
            };
            self.index.insert(*exporter, at);
            done = Resolved { new: true, poll };
        }
        let Some(&at) = self.index.get(exporter) else { return done };
        let has = |r: &Resolver| r.known[at as usize].interfaces.contains_key(&if_index);
        if if_index != 0 && !has(self) {
            if self.interfaces() >= self.entries_max || self.known[at as usize].interfaces.len() >= INTERFACES_MAX {
                self.refused += 1;
                self.changed |= done.new;
                return done;
            }
            let provided = self.provided_interface(exporter, if_index);
            let poll = provided.is_none();
            if let Some(slot) = self.add_entry(exporter, if_index, poll) {
                let (record, rejected) = self.interface_record(exporter, if_index, provided.unwrap_or_default());
                self.known[at as usize].interfaces.insert(if_index, (record, flagged(slot, poll, rejected)));
                done.new = true;
                done.poll |= poll;
            }
        }
        self.changed |= done.new;
        done
    }

    /// Takes a polled answer for `exporter`: its system name (kept unless a
    /// provider before the polled one names it) and interfaces (only those
    /// the polled provider answers for). Whether the snapshot changes.
    pub fn answer(&mut self, exporter: &Addr, sys_name: Option<&str>, interfaces: &[(u32, InterfaceInfo)]) -> bool {
        self.answer_at(exporter, sys_name, interfaces, self.now_s)
    }

    fn answer_at(
        &mut self,
        exporter: &Addr,
        sys_name: Option<&str>,
        interfaces: &[(u32, InterfaceInfo)],
        updated_s: u64,
    ) -> bool {
        let Some(&at) = self.index.get(exporter) else { return false };
        let mut changed = false;
        if let Some(name) = sys_name.filter(|n| !n.is_empty() && self.name_polled(exporter)) {
            let (record, rejected) = self.exporter_record(exporter, Some(name));
            let known = &mut self.known[at as usize];
            let slot = flagged(known.slot, false, rejected);
            changed |= std::mem::replace(&mut known.record, record) != record || known.slot != slot;
            known.slot = slot;
            self.sys_names.insert(*exporter, name.to_string());
            if let Some(e) = self.entries.get_mut(&(*exporter, 0)) {
                (e.updated_s, e.asked_s) = (updated_s, updated_s);
            }
        }
        for (index, info) in interfaces {
            let Some(entry) = self.entries.get_mut(&(*exporter, *index)).filter(|e| e.polled) else { continue };
            (entry.updated_s, entry.asked_s) = (updated_s, updated_s);
            let (record, rejected) = self.interface_record(exporter, *index, info.clone());
            if let Some(known) = self.known[at as usize].interfaces.get_mut(index) {
                let slot = flagged(known.1, false, rejected);
                changed |= std::mem::replace(&mut known.0, record) != record || known.1 != slot;
                known.1 = slot;
            }
        }
        self.changed |= changed;
        changed
    }

    /// Takes the shards' usage flags, drops the entries no flow used for
    /// `expiry_s` (an exporter once none of its interfaces is left), and
    /// lists the polled entries answered more than `refresh_s` ago.
    pub fn sweep(&mut self, now_s: u64, expiry_s: u64, refresh_s: u64) -> Swept {
        self.now_s = now_s;
        let mut swept = Swept::default();
        let mut expired = Vec::new();
        for (&(exporter, index), e) in self.entries.iter_mut() {
            if self.usage.take(e.slot) {
                e.used_s = now_s;
            }
            if now_s.saturating_sub(e.used_s) >= expiry_s {
                expired.push((exporter, index));
            } else if e.polled && now_s.saturating_sub(e.updated_s.max(e.asked_s)) >= refresh_s {
                e.asked_s = now_s;
                swept.refresh.push((exporter, index));
            }
        }
        // Interfaces first, then the exporters left without any.
        expired.sort_by_key(|&(_, index)| index == 0);
        for (exporter, index) in expired {
            let Some(&at) = self.index.get(&exporter) else { continue };
            if index != 0 {
                self.known[at as usize].interfaces.remove(&index);
            } else if !self.known[at as usize].interfaces.is_empty() {
                continue;
            } else {
                self.index.remove(&exporter);
                self.sys_names.remove(&exporter);
                swept.forgotten.push(exporter);
                self.known[at as usize] = KnownExporter::default();
                self.free_known.push(at);
            }
            if let Some(e) = self.entries.remove(&(exporter, index)) {
                self.usage.take(e.slot);
                self.free_slots.push(e.slot);
            }
            swept.expired += 1;
        }
        self.changed |= swept.expired > 0;
        swept
    }

    /// The polled answers, for the cache file.
    pub fn cache_file(&self) -> CacheFile {
        let mut exporters: Vec<CachedExporter> = Vec::new();
        for (exporter, &at) in &self.index {
            let known = &self.known[at as usize];
            let updated = |index: u32| self.entries.get(&(*exporter, index)).filter(|e| e.polled && e.updated_s > 0);
            let mut interfaces: Vec<CachedInterface> = known
                .interfaces
                .iter()
                .filter_map(|(&index, &(record, _))| {
                    let e = updated(index)?;
                    let info = self.interface_records.get(record);
                    Some(CachedInterface {
                        if_index: index,
                        name: info.name.clone(),
                        description: info.description.clone(),
                        speed: info.speed,
                        updated_s: e.updated_s,
                    })
                })
                .collect();
            let name = self.sys_names.get(exporter).cloned();
            if name.is_none() && interfaces.is_empty() {
                continue;
            }
            interfaces.sort_by_key(|i| i.if_index);
            exporters.push(CachedExporter {
                address: addr_to_ip(exporter),
                name,
                updated_s: updated(0).map_or(0, |e| e.updated_s),
                interfaces,
            });
        }
        exporters.sort_by_key(|e| e.address);
        CacheFile { version: CACHE_FORMAT_VERSION, exporters }
    }

    /// Loads a cache file: each exporter and interface it holds that a
    /// polled provider still answers for is known at once, with its saved
    /// answer and age (so that old ones are refreshed). How many entries.
    pub fn load(&mut self, file: &CacheFile) -> Result<usize, String> {
        if file.version != CACHE_FORMAT_VERSION {
            return Err(format!("cache format {} (this Weir reads {CACHE_FORMAT_VERSION})", file.version));
        }
        let mut loaded = 0;
        for e in &file.exporters {
            let exporter = crate::flow::addr_from_ip(e.address);
            self.resolve(&exporter, 0);
            if let Some(name) = &e.name {
                loaded += usize::from(self.answer_at(&exporter, Some(name), &[], e.updated_s.min(self.now_s)));
            }
            for i in &e.interfaces {
                if i.if_index == 0 || !self.resolve(&exporter, i.if_index).poll {
                    continue;
                }
                let info = InterfaceInfo {
                    name: i.name.clone(),
                    description: i.description.clone(),
                    speed: i.speed,
                    ..InterfaceInfo::default()
                };
                self.answer_at(&exporter, None, &[(i.if_index, info)], i.updated_s.min(self.now_s));
                loaded += 1;
            }
        }
        self.first_polls.retain(|a| !self.sys_names.contains_key(a));
        Ok(loaded)
    }

    /// The current records of `exporter` and of its interface `if_index`
    /// (tests, logs).
    pub fn known(&self, exporter: &Addr, if_index: u32) -> Option<(&ExporterInfo, Option<&InterfaceInfo>)> {
        let known = &self.known[*self.index.get(exporter)? as usize];
        let interface = known.interfaces.get(&if_index).map(|&(r, _)| self.interface_records.get(r));
        Some((self.exporter_records.get(known.record), interface))
    }

    /// Exporters known.
    pub fn exporters(&self) -> usize {
        self.index.len()
    }

    /// Interfaces known, over every exporter.
    pub fn interfaces(&self) -> usize {
        self.entries.len() - self.index.len()
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
        let mut s = Snapshot {
            generation: self.generation,
            exporters: self.index.clone(),
            known: self.known.clone(),
            exporter_records: Arc::new([]),
            interface_records: Arc::new([]),
            exporter_ids: Arc::new([]),
            interface_ids: Arc::new([]),
            usage: self.usage.clone(),
            rejects: self
                .known
                .iter()
                .any(|k| k.slot & REJECTED != 0 || k.interfaces.values().any(|&(_, slot)| slot & REJECTED != 0)),
        };
        s.set_records(&self.exporter_records, &self.interface_records);
        Some(s)
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
        let mut known = KnownExporter { record: edge, slot: 0, interfaces: HashMap::with_hasher(hash) };
        let et17 = interfaces.intern(InterfaceInfo { name: "et-17".into(), ..Default::default() });
        known.interfaces.insert(17, (et17, 1));
        let a = addr_from_v4([192, 0, 2, 1]);
        s.exporters.insert(a, 0);
        s.known.push(known);
        s.set_records(&exporters, &interfaces);
        let (meta, misses) = s.lookup(&a, 17, 18);
        assert_eq!(meta, Meta { exporter: 1, in_if: 1, out_if: 0 });
        assert_eq!(misses, Misses { exporter: false, in_if: 0, out_if: 18, pending: false, rejected: false });
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
        // A miss resolved: skip_missing leaves it empty (no other provider).
        assert_eq!(r.resolve(&addr_from_v4([192, 0, 2, 1]), 17), Resolved { new: true, poll: false });
        assert!(!r.resolve(&addr_from_v4([192, 0, 2, 1]), 17).new, "once");
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

    #[test]
    fn providers_answer_in_order_and_polled_answers_fill_what_static_left() {
        let mut config = static_config();
        config.providers = vec![MetadataProvider::Static, MetadataProvider::Snmp];
        config.snmp.credentials[0].subnet = "192.0.2.0/24".into();
        let hash = KeyHash::with_seed(3);
        let mut r = Resolver::new(&config, hash);
        let (edge1, edge9, other) =
            (addr_from_v4([192, 0, 2, 1]), addr_from_v4([192, 0, 2, 9]), addr_from_v4([198, 51, 100, 7]));
        // Named statically: SNMP is asked only for what static skips.
        assert_eq!(r.resolve(&edge1, 3), Resolved { new: false, poll: false });
        assert_eq!(r.resolve(&edge1, 17), Resolved { new: true, poll: true }, "skip_missing: SNMP's");
        // The /24 gives attributes but no name: SNMP names it; its
        // interfaces are static's (default_interface).
        assert_eq!(r.resolve(&edge9, 5), Resolved { new: true, poll: true });
        assert_eq!(r.known(&edge9, 5).unwrap().1.unwrap().name, "unknown");
        // Not polled, not static: its address.
        assert_eq!(r.resolve(&other, 1), Resolved { new: true, poll: false });
        let s = r.snapshot().unwrap();
        assert!(s.lookup(&edge1, 17, 0).1.pending, "known, not answered yet");
        assert!(!s.lookup(&edge1, 3, 0).1.pending);
        assert!(s.lookup(&edge9, 0, 0).1.pending, "its name is polled");
        let et17 = InterfaceInfo { name: "et-17".into(), speed: 400_000, ..InterfaceInfo::default() };
        assert!(r.answer(&edge1, Some("edge1.example.net"), &[(17, et17.clone())]));
        assert!(r.answer(&edge9, Some("edge9.example.net"), &[]));
        assert!(!r.answer(&edge9, Some("edge9.example.net"), &[]), "the same answer changes nothing");
        let (exporter, interface) = r.known(&edge1, 17).unwrap();
        assert_eq!((exporter.name.as_str(), interface), ("edge1-par", Some(&et17)), "static names win");
        let exporter = r.known(&edge9, 0).unwrap().0;
        assert_eq!((exporter.name.as_str(), exporter.site.as_str()), ("edge9.example.net", "par"));
        let s = r.snapshot().unwrap();
        assert!(!s.lookup(&edge1, 17, 0).1.pending && !s.lookup(&edge9, 0, 0).1.pending, "answered");
        // SNMP first: it answers for the /24's interfaces too.
        config.providers = vec![MetadataProvider::Snmp, MetadataProvider::Static];
        let mut r = Resolver::new(&config, hash);
        assert_eq!(r.take_first_polls(), [edge1]);
        assert_eq!(r.resolve(&edge1, 3), Resolved { new: true, poll: true });
        assert_eq!(r.known(&edge1, 3).unwrap().0.name, "edge1-par", "until SNMP answers");
        r.answer(&edge1, Some("edge1.example.net"), &[]);
        assert_eq!(r.known(&edge1, 3).unwrap().0.name, "edge1.example.net");
    }

    #[test]
    fn unused_entries_expire_used_ones_are_refreshed_and_the_cache_file_carries_polled_answers() {
        let mut config = MetadataConfig { providers: vec![MetadataProvider::Snmp], ..MetadataConfig::default() };
        config.cache_entries_max = 3;
        let hash = KeyHash::with_seed(9);
        let mut r = Resolver::new(&config, hash);
        let (a, b) = (addr_from_v4([192, 0, 2, 1]), addr_from_v4([192, 0, 2, 2]));
        r.set_now(1000);
        assert!(r.resolve(&a, 1).poll && r.resolve(&a, 2).poll && r.resolve(&b, 3).poll);
        assert!(!r.resolve(&b, 4).new, "bounded: a fourth interface is refused");
        assert_eq!(r.refused, 1);
        let eth = |n: &str| InterfaceInfo { name: n.into(), speed: 1000, ..InterfaceInfo::default() };
        r.set_now(1010);
        r.answer(&a, Some("edge-a"), &[(1, eth("eth1")), (2, eth("eth2"))]);
        r.answer(&b, Some("edge-b"), &[(3, eth("eth3"))]);
        // Flows use a's eth1 only (a shard's lookup sets the flags).
        let s = r.snapshot().unwrap();
        let (meta, misses) = s.lookup(&a, 1, 0);
        assert!(!misses.any());
        assert_eq!(s.interface(meta.in_if).name, "eth1");
        // Before the refresh time: nothing to do.
        assert_eq!(r.sweep(1100, 3600, 1800), Swept::default());
        s.lookup(&a, 1, 0);
        // Past it: what is still used and was polled is refreshed.
        let swept = r.sweep(2900, 3600, 1800);
        let mut refresh = swept.refresh.clone();
        refresh.sort();
        assert_eq!((swept.expired, refresh), (0, vec![(a, 0), (a, 1), (a, 2), (b, 0), (b, 3)]));
        assert!(r.sweep(3000, 3600, 1800).refresh.is_empty(), "asked once per refresh time");
        s.lookup(&a, 1, 0);
        // An hour without use: b and a's eth2 go; a and its eth1 stay.
        let swept = r.sweep(4700, 3600, 1800);
        assert_eq!((swept.expired, swept.forgotten), (3, vec![b]));
        assert_eq!((r.exporters(), r.interfaces()), (1, 1));
        let s = r.snapshot().unwrap();
        assert!(s.lookup(&b, 3, 0).1.exporter, "b is forgotten");
        assert_eq!(s.lookup(&a, 2, 0).1.in_if, 2, "eth2 is forgotten");
        // Room again for new interfaces.
        assert!(r.resolve(&b, 4).poll);
        // The cache file: polled answers only, with their age.
        let file = r.cache_file();
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(file.exporters.len(), 1, "b has no answer yet: {text}");
        assert_eq!(file.exporters[0].name.as_deref(), Some("edge-a"));
        assert_eq!(file.exporters[0].interfaces.len(), 1);
        assert_eq!(file.exporters[0].interfaces[0].updated_s, 1010);
        // Loaded by a new resolver: known at once, and old enough to refresh.
        let mut fresh = Resolver::new(&config, hash);
        fresh.set_now(5000);
        assert_eq!(fresh.load(&serde_json::from_str(&text).unwrap()), Ok(2));
        let s = fresh.snapshot().unwrap();
        let (meta, misses) = s.lookup(&a, 1, 0);
        assert!(!misses.any());
        assert_eq!(
            (s.exporter(meta.exporter).name.as_str(), s.interface(meta.in_if).name.as_str()),
            ("edge-a", "eth1")
        );
        let mut refresh = fresh.sweep(5000, 3600, 1800).refresh;
        refresh.sort();
        assert_eq!(refresh, [(a, 0), (a, 1)]);
        let old = CacheFile { version: 0, exporters: Vec::new() };
        assert!(fresh.load(&old).is_err());
    }

    #[test]
    fn classifiers_run_on_what_the_providers_say_and_rejections_reach_the_snapshot() {
        let mut config = static_config();
        config.exporter_classifiers = vec![
            r#"ClassifySiteRegex(Exporter.Name, "^[^-]+-([a-z]+)", "$1")"#.into(),
            r#"Exporter.IP == "192.0.2.66" && Reject()"#.into(),
            r#"ClassifyRole("edge")"#.into(),
        ];
        config.interface_classifiers = vec![
            r#"ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ix):? ", "$1") && ClassifyProviderRegex(Interface.Description, "^\\S+?\\s(\\S+)", "$1") && ClassifyExternal()"#.into(),
            r#"Interface.Index == 13 && Reject()"#.into(),
            r#"ClassifyInternal()"#.into(),
        ];
        let mut r = Resolver::new(&config, KeyHash::with_seed(4));
        let (edge1, rogue) = (addr_from_v4([192, 0, 2, 1]), addr_from_v4([192, 0, 2, 66]));
        // edge1-par: site from its name; the static /24 says "par" for the
        // others, which the rule cannot override.
        r.resolve(&edge1, 3);
        r.resolve(&edge1, 13);
        r.resolve(&rogue, 17);
        let s = r.snapshot().unwrap();
        let (meta, misses) = s.lookup(&edge1, 3, 0);
        assert!(!misses.rejected);
        let e = s.exporter(meta.exporter);
        assert_eq!((e.name.as_str(), e.site.as_str(), e.role.as_str()), ("edge1-par", "par", "edge"));
        assert_eq!(s.interface(meta.in_if).boundary, Boundary::Internal, "et-3 has no description");
        assert!(s.lookup(&edge1, 3, 13).1.rejected, "interface 13 is rejected");
        let (meta, misses) = s.lookup(&rogue, 17, 0);
        assert!(misses.rejected, "the exporter is rejected");
        // The static interface keeps what static says; the default one is
        // classified from its description.
        let i = s.interface(meta.in_if);
        assert_eq!((i.provider.as_str(), i.boundary), ("cogent", Boundary::External));
        assert!(r.classifier_errors.is_empty());
        // A rule that fails is counted, once per run.
        config.exporter_classifiers = vec![r#"int(Exporter.Name) > 0"#.into()];
        let mut r = Resolver::new(&config, KeyHash::with_seed(4));
        r.resolve(&addr_from_v4([198, 51, 100, 1]), 0);
        assert_eq!(
            r.classifier_errors.get(&(RuleKind::Exporter, 0)).copied(),
            Some(2),
            "edge1 at start, then this one"
        );
        assert_eq!(r.take_rule_errors().len(), 2);
    }

    #[test]
    fn remote_entries_are_resolved_again_when_they_change_and_configured_ones_win() {
        let mut config =
            MetadataConfig { providers: vec![MetadataProvider::Static, MetadataProvider::Snmp], ..Default::default() };
        config.exporters =
            vec![StaticExporter { subnet: "192.0.2.2".into(), name: "edge2-conf".into(), ..Default::default() }];
        let mut r = Resolver::new(&config, KeyHash::with_seed(2));
        let (e1, e2) = (addr_from_v4([192, 0, 2, 1]), addr_from_v4([192, 0, 2, 2]));
        // Before any source: SNMP's (the /0 default credentials).
        assert!(r.resolve(&e1, 17).poll);
        r.answer(&e1, Some("edge1-snmp"), &[(17, InterfaceInfo { name: "xe-17".into(), ..Default::default() })]);
        r.resolve(&e2, 0);
        let et17 = StaticInterface { name: "et-17".into(), boundary: "external".into(), ..Default::default() };
        let remote = vec![
            StaticExporter {
                subnet: "192.0.2.1/32".into(),
                name: "edge1-remote".into(),
                skip_missing_interfaces: true,
                interfaces: [("17".to_string(), et17)].into(),
                ..Default::default()
            },
            StaticExporter { subnet: "192.0.2.2".into(), name: "edge2-remote".into(), ..Default::default() },
        ];
        assert!(r.set_remote(&remote).is_empty(), "nothing new to poll");
        let s = r.snapshot().unwrap();
        let (meta, misses) = s.lookup(&e1, 17, 0);
        assert!(!misses.any() && !misses.pending);
        assert_eq!(
            (s.exporter(meta.exporter).name.as_str(), s.interface(meta.in_if).name.as_str()),
            ("edge1-remote", "et-17")
        );
        assert_eq!(s.exporter(s.lookup(&e2, 0, 0).0.exporter).name, "edge2-conf", "configured entries win");
        // The source drops edge1: SNMP's again, with the sysName it gave;
        // its interface is polled anew.
        let polls = r.set_remote(&remote[1..]);
        assert_eq!(polls, [(e1, 17)]);
        let s = r.snapshot().unwrap();
        let (meta, misses) = s.lookup(&e1, 17, 0);
        assert!(misses.pending);
        assert_eq!(s.exporter(meta.exporter).name, "edge1-snmp");
    }
}
