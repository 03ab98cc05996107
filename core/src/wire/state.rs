//! The decoder state shared by NetFlow v9 and IPFIX datagrams: templates
//! keyed by (protocol, exporter, observation domain, template id), sampling
//! rates per sampler, system init times, and the bounded pending queue of
//! data sets that arrived before their template. Every bound is in `Limits`;
//! the state can be saved as a `Snapshot` and restored after a restart.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use serde::{Deserialize, Serialize};

use super::record::{decode_fixed, decode_variable, RecordContext, RecordExtra, SetOutput};
use super::template::{FieldSpec, Protocol, Template, TemplateKey};
use super::{DecodeCounters, DecodeError, Reason};
use crate::flow::{addr_from_ip, addr_to_ip, Addr, FlowRecord};

/// Bounds on decoder state; every one is named with its unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Templates kept per exporter address; the oldest is evicted past it.
    pub templates_per_exporter_max: usize,
    /// Exporter addresses with template state; the least recently seen is evicted.
    pub exporters_max: usize,
    /// Samplers (sampling rates) kept per exporter address.
    pub samplers_per_exporter_max: usize,
    /// Fields accepted in one template.
    pub fields_per_template_max: usize,
    /// Data sets parked while waiting for their template.
    pub pending_sets_max: usize,
    /// Bytes of parked data sets.
    pub pending_bytes_max: usize,
    /// How long a parked data set waits before counting as `template_missing`.
    pub pending_age_max_ms: u64,
    /// Seed of the hash of state keys. Exporter addresses can be spoofed, so
    /// the runtime passes a random seed to keep collisions unpredictable.
    pub hash_seed: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            templates_per_exporter_max: 512,
            exporters_max: 4096,
            samplers_per_exporter_max: 256,
            fields_per_template_max: 256,
            pending_sets_max: 256,
            pending_bytes_max: 1 << 20,
            pending_age_max_ms: 60_000,
            hash_seed: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

/// A seeded multiply-rotate hasher for the state maps: keys are short
/// (an address and a few ids) and SipHash cost ~6% of decoding (perf/RESULTS.md).
#[derive(Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds `KeyHasher`s from the decoder's seed.
#[derive(Clone, Copy)]
pub struct KeyHash(u64);

impl KeyHash {
    /// Hashers seeded with `seed` (the runtime's random seed, so keys an
    /// exporter controls cannot be chosen to collide).
    pub fn with_seed(seed: u64) -> KeyHash {
        KeyHash(seed)
    }
}

impl Default for KeyHash {
    fn default() -> Self {
        KeyHash(Limits::default().hash_seed)
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

pub(super) type KeyHashMap<K, V> = std::collections::HashMap<K, V, KeyHash>;

/// A data set parked until its template arrives.
struct PendingSet {
    key: TemplateKey,
    ctx: RecordContext,
    body: Vec<u8>,
}

/// What one exporter address holds, so that its state can be bounded and
/// forgotten without scanning everybody's.
#[derive(Default)]
struct ExporterState {
    /// Its templates, oldest first (the eviction order).
    templates: Vec<TemplateKey>,
    samplers: Vec<SamplerKey>,
    /// (protocol, observation domain) pairs with a system init time.
    system_init: Vec<(Protocol, u32)>,
    last_seen_ns: u64,
}

pub(super) type SamplerKey = (Protocol, Addr, u32, u64);

/// Templates, sampling rates and system init times of every exporter, plus
/// the pending queue. Owned by one decoder (one per shard).
#[derive(Default)]
pub struct DecoderState {
    limits: Limits,
    templates: KeyHashMap<TemplateKey, Template>,
    exporters: KeyHashMap<Addr, ExporterState>,
    samplers: KeyHashMap<SamplerKey, u64>,
    system_init_ms: KeyHashMap<(Protocol, Addr, u32), u64>,
    pending: VecDeque<PendingSet>,
    pending_bytes: usize,
    /// Receive time of the latest datagram, for new exporters' last-seen time.
    last_received_ns: u64,
    options_scratch: Vec<RecordExtra>,
    /// Changes to templates and sampling rates since the last
    /// `drain_updates`, when recording (a shard broadcasts them).
    updates: Option<Vec<StateUpdate>>,
}

/// One change to decoder state, as a shard broadcasts it to the others:
/// the eBPF balancer sends an exporter's template to one shard and its data
/// to another. Built only when state changes (a template refresh that
/// changes nothing builds none), so the cost is off the per-flow path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateUpdate {
    Template(TemplateSnapshot),
    /// IPFIX withdrawal; `all_options` as in `withdraw` (None: one template).
    Withdraw {
        protocol: Protocol,
        exporter: std::net::IpAddr,
        domain: u32,
        template_id: u16,
        all_options: Option<bool>,
    },
    Sampler(SamplerSnapshot),
    SystemInit(SystemInitSnapshot),
}

/// A change shared between `weir outlet`s on their state topic: JSON
/// `{"origin": ID, "update": StateUpdate}` (`origin`: random per process,
/// so an outlet skips its own), keyed by what it describes (`key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedUpdate {
    pub origin: u64,
    pub update: StateUpdate,
}

impl StateUpdate {
    /// What the change describes, the topic's compaction key: a template
    /// and its withdrawal share one (protocol, exporter, domain, id).
    pub fn key(&self) -> String {
        match self {
            StateUpdate::Template(t) => format!("t/{:?}/{}/{}/{}", t.protocol, t.exporter, t.domain, t.template_id),
            StateUpdate::Withdraw { protocol, exporter, domain, template_id, all_options: None } => {
                format!("t/{protocol:?}/{exporter}/{domain}/{template_id}")
            }
            // A withdrawal of all (options) templates of a domain: its own key.
            StateUpdate::Withdraw { protocol, exporter, domain, all_options: Some(options), .. } => {
                format!("w/{protocol:?}/{exporter}/{domain}/{options}")
            }
            StateUpdate::Sampler(s) => format!("s/{:?}/{}/{}/{}", s.protocol, s.exporter, s.domain, s.sampler_id),
            StateUpdate::SystemInit(s) => format!("i/{:?}/{}/{}", s.protocol, s.exporter, s.domain),
        }
    }
}

impl DecoderState {
    pub fn new(limits: Limits) -> Self {
        let hash = KeyHash(limits.hash_seed);
        DecoderState {
            templates: KeyHashMap::with_hasher(hash),
            exporters: KeyHashMap::with_hasher(hash),
            samplers: KeyHashMap::with_hasher(hash),
            system_init_ms: KeyHashMap::with_hasher(hash),
            limits,
            ..Default::default()
        }
    }

    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    pub fn pending_sets(&self) -> usize {
        self.pending.len()
    }

    /// Notes that a known exporter sent a datagram. Unknown sources get no
    /// state until they send a template or options data that is accepted, so
    /// spoofed junk cannot push real exporters out.
    pub(crate) fn touch_exporter(&mut self, exporter: Addr, now_ns: u64) {
        self.last_received_ns = now_ns;
        if let Some(e) = self.exporters.get_mut(&exporter) {
            e.last_seen_ns = now_ns;
        }
    }

    /// The exporter's state, created (evicting the least recently seen
    /// exporter past `exporters_max`) when it has none.
    fn exporter_state(&mut self, exporter: Addr, counters: &mut DecodeCounters) -> Option<&mut ExporterState> {
        if !self.exporters.contains_key(&exporter) {
            if self.limits.exporters_max == 0 {
                counters.error(DecodeError::new(Reason::ExporterLimit, "exporters_max is 0"));
                return None;
            }
            if self.exporters.len() >= self.limits.exporters_max {
                let oldest = self.exporters.iter().min_by_key(|(_, e)| e.last_seen_ns).map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    self.forget_exporter(oldest);
                    counters.exporter_evictions += 1;
                    counters.error(DecodeError::new(Reason::ExporterLimit, "exporter evicted"));
                }
            }
            let last_seen_ns = self.last_received_ns;
            self.exporters.insert(exporter, ExporterState { last_seen_ns, ..Default::default() });
        }
        self.exporters.get_mut(&exporter)
    }

    fn forget_exporter(&mut self, exporter: Addr) {
        let Some(e) = self.exporters.remove(&exporter) else { return };
        for key in &e.templates {
            self.templates.remove(key);
        }
        for key in &e.samplers {
            self.samplers.remove(key);
        }
        for (protocol, domain) in e.system_init {
            self.system_init_ms.remove(&(protocol, exporter, domain));
        }
    }

    /// Takes a template record from the wire: an unchanged refresh costs a
    /// comparison; a new or redefined one is compiled and stored, and data
    /// parked for it is decoded.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn offer_template<F: FnMut(&FlowRecord)>(
        &mut self,
        key: TemplateKey,
        specs: &[FieldSpec],
        scope_fields: u16,
        options: bool,
        counters: &mut DecodeCounters,
        flow: &mut FlowRecord,
        sink: &mut F,
    ) {
        if let Some(t) = self.templates.get(&key) {
            if t.specs == specs && t.scope_fields == scope_fields && t.options == options {
                counters.templates += 1;
                return;
            }
        }
        match Template::compile(key.protocol, specs, scope_fields, options, &self.limits) {
            Ok(t) => self.insert_template(key, t, counters, flow, sink),
            Err(e) => {
                counters.error(e);
            }
        }
    }

    /// Stores a compiled template (new or redefined) and decodes data parked for it.
    fn insert_template<F: FnMut(&FlowRecord)>(
        &mut self,
        key: TemplateKey,
        template: Template,
        counters: &mut DecodeCounters,
        flow: &mut FlowRecord,
        sink: &mut F,
    ) {
        let max = self.limits.templates_per_exporter_max;
        let is_new = !self.templates.contains_key(&key);
        let Some(exporter) = self.exporter_state(key.exporter, counters) else { return };
        if is_new {
            if max == 0 {
                counters.error(DecodeError::new(Reason::TemplateLimit, "templates_per_exporter_max is 0"));
                return;
            }
            let mut evicted = None;
            if exporter.templates.len() >= max {
                evicted = Some(exporter.templates.remove(0));
            }
            exporter.templates.push(key);
            if let Some(oldest) = evicted {
                self.templates.remove(&oldest);
                counters.template_evictions += 1;
                counters.error(DecodeError::new(Reason::TemplateLimit, "template evicted"));
            }
        }
        if let Some(updates) = &mut self.updates {
            updates.push(StateUpdate::Template(TemplateSnapshot::of(&key, &template)));
        }
        self.templates.insert(key, template);
        counters.templates += 1;
        self.decode_parked(key, counters, flow, sink);
    }

    /// IPFIX template withdrawal (RFC 7011 §8.1): one id, or every template
    /// of the set's kind when `template_id` is the set id (2 or 3).
    pub(crate) fn withdraw(&mut self, key: TemplateKey, all_options: Option<bool>, counters: &mut DecodeCounters) {
        let Some(exporter) = self.exporters.get_mut(&key.exporter) else { return };
        let templates = &mut self.templates;
        let before = exporter.templates.len();
        exporter.templates.retain(|k| {
            let withdrawn = match all_options {
                None => *k == key,
                Some(options) => {
                    k.protocol == key.protocol
                        && k.domain == key.domain
                        && templates.get(k).is_some_and(|t| t.options == options)
                }
            };
            if withdrawn {
                templates.remove(k);
            }
            !withdrawn
        });
        let withdrawn = before - exporter.templates.len();
        counters.templates_withdrawn += withdrawn as u64;
        if let (Some(updates), true) = (&mut self.updates, withdrawn > 0) {
            updates.push(StateUpdate::Withdraw {
                protocol: key.protocol,
                exporter: addr_to_ip(&key.exporter),
                domain: key.domain,
                template_id: key.template_id,
                all_options,
            });
        }
    }

    /// Drops parked sets older than `pending_age_max_ms` (counted as
    /// `template_missing`). `now_ns` is the current datagram's receive time.
    pub(crate) fn expire_pending(&mut self, now_ns: u64, counters: &mut DecodeCounters) {
        let age_max_ns = self.limits.pending_age_max_ms.saturating_mul(1_000_000);
        while let Some(front) = self.pending.front() {
            if now_ns.saturating_sub(front.ctx.received_ns) <= age_max_ns {
                break;
            }
            self.drop_front_pending(counters);
        }
    }

    /// Drops every parked set, each counted as `template_missing` (end of a
    /// capture, or shutdown).
    pub fn flush_pending(&mut self, counters: &mut DecodeCounters) {
        while !self.pending.is_empty() {
            self.drop_front_pending(counters);
        }
    }

    fn drop_front_pending(&mut self, counters: &mut DecodeCounters) {
        if let Some(p) = self.pending.pop_front() {
            self.pending_bytes -= p.body.len();
            counters.pending_dropped += 1;
            counters.error(DecodeError::new(Reason::TemplateMissing, "no template for data set"));
        }
    }

    fn park(&mut self, key: TemplateKey, ctx: &RecordContext, body: &[u8], counters: &mut DecodeCounters) {
        if self.limits.pending_sets_max == 0 || body.len() > self.limits.pending_bytes_max {
            counters.pending_dropped += 1;
            counters.error(DecodeError::new(Reason::TemplateMissing, "no template for data set"));
            return;
        }
        while self.pending.len() >= self.limits.pending_sets_max
            || self.pending_bytes + body.len() > self.limits.pending_bytes_max
        {
            self.drop_front_pending(counters);
        }
        self.pending_bytes += body.len();
        self.pending.push_back(PendingSet { key, ctx: *ctx, body: body.to_vec() });
        counters.pending_queued += 1;
    }

    fn decode_parked<F: FnMut(&FlowRecord)>(
        &mut self,
        key: TemplateKey,
        counters: &mut DecodeCounters,
        flow: &mut FlowRecord,
        sink: &mut F,
    ) {
        if !self.pending.iter().any(|p| p.key == key) {
            return;
        }
        let mut parked = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < parked.len() {
            if parked[i].key != key {
                i += 1;
                continue;
            }
            let p = parked.remove(i).expect("index checked");
            self.pending_bytes -= p.body.len();
            counters.pending_decoded += 1;
            // The template exists now, so this cannot park again.
            let _ = self.decode_data_set(key, &p.body, &p.ctx, counters, flow, sink);
        }
        parked.append(&mut self.pending);
        self.pending = parked;
    }

    /// Decodes every record of one data set (the set header already removed).
    /// Data for an unknown template is parked. Errors are counted here.
    pub(crate) fn decode_data_set<F: FnMut(&FlowRecord)>(
        &mut self,
        key: TemplateKey,
        body: &[u8],
        ctx: &RecordContext,
        counters: &mut DecodeCounters,
        flow: &mut FlowRecord,
        sink: &mut F,
    ) -> Result<(), DecodeError> {
        // Options records are applied after the set; the scratch keeps its
        // capacity between sets so steady-state decoding allocates nothing.
        let mut options_records = std::mem::take(&mut self.options_scratch);
        options_records.clear();
        let DecoderState { templates, samplers, system_init_ms, .. } = self;
        let Some(template) = templates.get(&key) else {
            self.options_scratch = options_records;
            self.park(key, ctx, body, counters);
            return Ok(());
        };
        let mut out = SetOutput {
            key,
            ctx,
            options: template.options,
            system_init: system_init_ms.get(&(key.protocol, key.exporter, key.domain)).copied(),
            default_rate: samplers.get(&(key.protocol, key.exporter, key.domain, 0)).copied(),
            samplers,
            sampler_cache: None,
            options_records: &mut options_records,
            counters,
            sink,
        };
        let result = match &template.layout {
            Some(layout) => {
                decode_fixed(layout, template.min_len, body, ctx, flow, &mut out);
                Ok(())
            }
            None => decode_variable(template, body, ctx, flow, &mut out),
        };
        for x in &options_records {
            self.apply_options(key, x, counters);
        }
        self.options_scratch = options_records;
        result
    }

    fn apply_options(&mut self, key: TemplateKey, x: &RecordExtra, counters: &mut DecodeCounters) {
        counters.options_records += 1;
        let max = self.limits.samplers_per_exporter_max;
        if let Some(init) = x.system_init_ms() {
            let Some(exporter) = self.exporter_state(key.exporter, counters) else { return };
            let domain = (key.protocol, key.domain);
            if !exporter.system_init.contains(&domain) {
                if exporter.system_init.len() >= max {
                    counters.error(DecodeError::new(Reason::TemplateLimit, "samplers_per_exporter_max"));
                    return;
                }
                exporter.system_init.push(domain);
            }
            let ikey = (key.protocol, key.exporter, key.domain);
            let old = self.system_init_ms.insert(ikey, init);
            if let (Some(updates), true) = (&mut self.updates, old != Some(init)) {
                updates.push(StateUpdate::SystemInit(SystemInitSnapshot::of(&ikey, init)));
            }
        }
        let Some(rate) = x.sampling_rate() else { return };
        let skey = (key.protocol, key.exporter, key.domain, x.sampler_id().unwrap_or(0));
        if let Some(r) = self.samplers.get_mut(&skey) {
            if *r != rate {
                *r = rate;
                self.record_sampler(skey, rate);
            }
            return;
        }
        let Some(exporter) = self.exporter_state(key.exporter, counters) else { return };
        if exporter.samplers.len() >= max {
            counters.error(DecodeError::new(Reason::TemplateLimit, "samplers_per_exporter_max"));
            return;
        }
        exporter.samplers.push(skey);
        self.samplers.insert(skey, rate);
        self.record_sampler(skey, rate);
    }

    fn record_sampler(&mut self, key: SamplerKey, sampling_rate: u64) {
        if let Some(updates) = &mut self.updates {
            updates.push(StateUpdate::Sampler(SamplerSnapshot::of(&key, sampling_rate)));
        }
    }

    /// Starts keeping a log of state changes for `drain_updates`.
    pub fn record_updates(&mut self) {
        self.updates.get_or_insert_with(Vec::new);
    }

    /// Moves the changes recorded since the last call into `out`.
    pub fn drain_updates(&mut self, out: &mut Vec<StateUpdate>) {
        if let Some(updates) = &mut self.updates {
            out.append(updates);
        }
    }

    /// Applies a change made by another shard, through the same validation
    /// and limits as the wire; data parked for the template is decoded into
    /// `sink`. The change itself is not recorded again (no echo), but what
    /// the parked data teaches (an options record's sampling rate) is news
    /// for the other shards and is recorded.
    pub fn apply_update<F: FnMut(&FlowRecord)>(
        &mut self,
        update: &StateUpdate,
        counters: &mut DecodeCounters,
        flow: &mut FlowRecord,
        sink: &mut F,
    ) {
        let recorded_before = self.updates.as_ref().map_or(0, Vec::len);
        match update {
            StateUpdate::Template(t) => {
                self.offer_template(t.key(), &t.fields, t.scope_fields, t.options, counters, flow, sink);
            }
            StateUpdate::Withdraw { protocol, exporter, domain, template_id, all_options } => {
                let key = TemplateKey {
                    protocol: *protocol,
                    exporter: addr_from_ip(*exporter),
                    domain: *domain,
                    template_id: *template_id,
                };
                self.withdraw(key, *all_options, counters);
            }
            StateUpdate::Sampler(s) => {
                let mut x = RecordExtra::default();
                x.set_sampler_id(s.sampler_id);
                x.set_sampling_interval(s.sampling_rate);
                self.apply_options(options_key(s.protocol, s.exporter, s.domain), &x, counters);
            }
            StateUpdate::SystemInit(s) => {
                let mut x = RecordExtra::default();
                x.set_system_init_ms(s.system_init_ms);
                self.apply_options(options_key(s.protocol, s.exporter, s.domain), &x, counters);
            }
        }
        if let Some(updates) = &mut self.updates {
            let news = updates.split_off(recorded_before);
            updates.extend(news.into_iter().filter(|u| u != update));
        }
    }
}

/// Decoder state as saved to disk between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub format_version: u32,
    pub templates: Vec<TemplateSnapshot>,
    pub samplers: Vec<SamplerSnapshot>,
    pub system_init: Vec<SystemInitSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSnapshot {
    pub protocol: Protocol,
    pub exporter: std::net::IpAddr,
    pub domain: u32,
    pub template_id: u16,
    pub options: bool,
    pub scope_fields: u16,
    pub fields: Vec<FieldSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerSnapshot {
    pub protocol: Protocol,
    pub exporter: std::net::IpAddr,
    pub domain: u32,
    pub sampler_id: u64,
    pub sampling_rate: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInitSnapshot {
    pub protocol: Protocol,
    pub exporter: std::net::IpAddr,
    pub domain: u32,
    pub system_init_ms: u64,
}

impl TemplateSnapshot {
    fn of(key: &TemplateKey, t: &Template) -> Self {
        TemplateSnapshot {
            protocol: key.protocol,
            exporter: addr_to_ip(&key.exporter),
            domain: key.domain,
            template_id: key.template_id,
            options: t.options,
            scope_fields: t.scope_fields,
            fields: t.specs.clone(),
        }
    }

    fn key(&self) -> TemplateKey {
        let (protocol, domain, template_id) = (self.protocol, self.domain, self.template_id);
        TemplateKey { protocol, exporter: addr_from_ip(self.exporter), domain, template_id }
    }
}

impl SamplerSnapshot {
    fn of(&(protocol, exporter, domain, sampler_id): &SamplerKey, sampling_rate: u64) -> Self {
        SamplerSnapshot { protocol, exporter: addr_to_ip(&exporter), domain, sampler_id, sampling_rate }
    }
}

impl SystemInitSnapshot {
    fn of(&(protocol, exporter, domain): &(Protocol, Addr, u32), system_init_ms: u64) -> Self {
        SystemInitSnapshot { protocol, exporter: addr_to_ip(&exporter), domain, system_init_ms }
    }
}

/// The key options data is applied under (its template id plays no part).
fn options_key(protocol: Protocol, exporter: std::net::IpAddr, domain: u32) -> TemplateKey {
    TemplateKey { protocol, exporter: addr_from_ip(exporter), domain, template_id: 0 }
}

impl Snapshot {
    /// The snapshot as state updates, for shards that are already running
    /// (a graceful restart loads the state its predecessor saved on exit).
    pub fn updates(&self) -> Vec<StateUpdate> {
        let templates = self.templates.iter().cloned().map(StateUpdate::Template);
        let samplers = self.samplers.iter().cloned().map(StateUpdate::Sampler);
        let system_init = self.system_init.iter().cloned().map(StateUpdate::SystemInit);
        templates.chain(samplers).chain(system_init).collect()
    }
}

/// Version of the `Snapshot` layout; a file of another version is refused.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

impl DecoderState {
    /// Everything needed to decode again after a restart, in a stable order.
    pub fn snapshot(&self) -> Snapshot {
        let mut templates: Vec<_> = self.templates.iter().map(|(k, t)| TemplateSnapshot::of(k, t)).collect();
        templates.sort_by_key(|t| (t.exporter, t.domain, t.template_id));
        let mut samplers: Vec<_> = self.samplers.iter().map(|(k, r)| SamplerSnapshot::of(k, *r)).collect();
        samplers.sort_by_key(|s| (s.exporter, s.domain, s.sampler_id));
        let mut system_init: Vec<_> = self.system_init_ms.iter().map(|(k, v)| SystemInitSnapshot::of(k, *v)).collect();
        system_init.sort_by_key(|s| (s.exporter, s.domain));
        Snapshot { format_version: SNAPSHOT_FORMAT_VERSION, templates, samplers, system_init }
    }

    /// Loads a snapshot through the same limits and validation as the wire.
    pub fn restore(&mut self, snap: &Snapshot, counters: &mut DecodeCounters) -> Result<(), DecodeError> {
        if snap.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(DecodeError::new(Reason::BadVersion, "decoder state snapshot version"));
        }
        // The same validation, limits and counters as state from the wire
        // or from another shard; restoring records no news.
        let mut flow = FlowRecord::default();
        for u in snap.updates() {
            self.apply_update(&u, counters, &mut flow, &mut |_| {});
        }
        Ok(())
    }

    /// `snapshot` as JSON bytes, for the file a shard writes at shutdown.
    pub fn snapshot_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.snapshot()).expect("snapshot serializes")
    }

    /// Restores from JSON bytes; a malformed file is an error, not a panic.
    pub fn restore_json(&mut self, bytes: &[u8], counters: &mut DecodeCounters) -> Result<(), DecodeError> {
        let snap: Snapshot =
            serde_json::from_slice(bytes).map_err(|_| DecodeError::new(Reason::BadLength, "decoder state snapshot"))?;
        self.restore(&snap, counters)
    }
}

#[cfg(test)]
mod tests {
    use crate::encode::{ExportHeader, MessageBuilder, TemplateSpec};
    use crate::wire::state::{Limits, StateUpdate};
    use crate::wire::template::{FieldSpec, Protocol};
    use crate::wire::testing::{decode_from, sample_flow_v4, Decoded, NOW_S};
    use crate::{Decoder, Reason};

    fn templates_and_sampler() -> Vec<u8> {
        let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: 0, sequence: 1, domain: 1 };
        let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
        m.template(&TemplateSpec::compact_ipv4(256));
        let (scope, option) = (FieldSpec { id: 302, pen: 0, len: 2 }, FieldSpec { id: 34, pen: 0, len: 4 });
        m.options_template(257, &[scope], &[option]);
        m.raw_record(257, &[scope, option], &[0, 100]);
        m.finish()
    }

    fn data() -> Vec<u8> {
        let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: 0, sequence: 2, domain: 1 };
        let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
        m.data(&TemplateSpec::compact_ipv4(256), &sample_flow_v4());
        m.finish()
    }

    #[test]
    fn spoofed_junk_does_not_push_real_exporters_out() {
        let mut dec = Decoder::new(Limits { exporters_max: 2, ..Limits::default() });
        decode_from(&mut dec, [192, 0, 2, 1], 1, &templates_and_sampler());
        // Headers with no templates from a thousand sources create no state.
        let junk = [0, 10, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        for i in 0..1000u32 {
            let [_, _, a, b] = i.to_be_bytes();
            decode_from(&mut dec, [10, 9, a, b], 2 + i as u64, &junk);
        }
        let Decoded(flows, _) = decode_from(&mut dec, [192, 0, 2, 1], 5000, &data());
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].sampling_rate, 100);
        assert_eq!(dec.counters().exporter_evictions, 0);
    }

    #[test]
    fn the_least_recently_seen_exporter_is_forgotten_whole() {
        let mut dec = Decoder::new(Limits { exporters_max: 2, ..Limits::default() });
        decode_from(&mut dec, [192, 0, 2, 1], 1, &templates_and_sampler());
        decode_from(&mut dec, [192, 0, 2, 2], 2, &templates_and_sampler());
        decode_from(&mut dec, [192, 0, 2, 2], 3, &data());
        // A third exporter: 192.0.2.1, seen least recently, goes.
        decode_from(&mut dec, [192, 0, 2, 3], 4, &templates_and_sampler());
        assert_eq!(dec.counters().exporter_evictions, 1);
        assert_eq!(dec.counters().errors[Reason::ExporterLimit as usize], 1);
        assert_eq!(dec.state().template_count(), 4, "two exporters with two templates each");
        let snapshot = dec.state().snapshot();
        assert!(snapshot.samplers.iter().all(|s| s.exporter.to_string() != "192.0.2.1"));
        let Decoded(flows, _) = decode_from(&mut dec, [192, 0, 2, 2], 5, &data());
        assert_eq!(flows.len(), 1, "the recently seen exporter keeps its state");
    }

    #[test]
    fn a_template_learned_by_one_shard_decodes_data_parked_on_another() {
        let (mut a, mut b) = (Decoder::default(), Decoder::default());
        a.record_updates();
        b.record_updates();
        let Decoded(flows, _) = decode_from(&mut b, [192, 0, 2, 1], 1, &data());
        assert!(flows.is_empty(), "data before its template is parked");
        assert_eq!(b.counters().pending_queued, 1);
        decode_from(&mut a, [192, 0, 2, 1], 2, &templates_and_sampler());
        let mut updates = Vec::new();
        a.drain_updates(&mut updates);
        assert_eq!(updates.len(), 3, "data template, options template, sampling rate: {updates:?}");
        let mut flows = Vec::new();
        // The sampling rate comes last in the batch and is applied first anyway.
        assert!(matches!(updates[2], StateUpdate::Sampler(_)));
        b.apply_updates(&updates, &mut |f| flows.push(f.clone()));
        assert_eq!(flows.len(), 1, "the parked data set is decoded");
        assert_eq!(flows[0].sampling_rate, 100, "with the rate of the same batch");
        assert_eq!(b.counters().pending_decoded, 1);
        let mut echoed = Vec::new();
        b.drain_updates(&mut echoed);
        assert!(echoed.is_empty(), "applied updates are not broadcast again: {echoed:?}");
        let Decoded(flows, _) = decode_from(&mut b, [192, 0, 2, 1], 3, &data());
        assert_eq!(flows[0].sampling_rate, 100, "the sampling rate crossed over too");
        // A refresh that changes nothing is not broadcast.
        decode_from(&mut a, [192, 0, 2, 1], 4, &templates_and_sampler());
        a.drain_updates(&mut updates);
        assert_eq!(updates.len(), 3);
    }

    #[test]
    fn a_sampling_rate_learned_from_parked_options_data_is_broadcast() {
        let (mut a, mut b) = (Decoder::default(), Decoder::default());
        a.record_updates();
        b.record_updates();
        // B gets the options data before the options template, A gets the templates.
        let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: 0, sequence: 1, domain: 1 };
        let (scope, option) = (FieldSpec { id: 302, pen: 0, len: 2 }, FieldSpec { id: 34, pen: 0, len: 4 });
        let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
        m.raw_record(257, &[scope, option], &[0, 100]);
        decode_from(&mut b, [192, 0, 2, 1], 1, &m.finish());
        let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
        m.options_template(257, &[scope], &[option]);
        decode_from(&mut a, [192, 0, 2, 1], 2, &m.finish());
        let mut updates = Vec::new();
        a.drain_updates(&mut updates);
        for u in &updates {
            b.apply_update(u, &mut |_| {});
        }
        let mut news = Vec::new();
        b.drain_updates(&mut news);
        assert_eq!(news.len(), 1, "the sampling rate B decoded goes back out: {news:?}");
        assert!(matches!(&news[0], StateUpdate::Sampler(s) if s.sampling_rate == 100));
    }

    #[test]
    fn restoring_a_snapshot_records_no_updates() {
        let mut a = Decoder::default();
        decode_from(&mut a, [192, 0, 2, 1], 1, &templates_and_sampler());
        let mut b = Decoder::default();
        b.record_updates();
        b.restore_state_json(&a.state().snapshot_json()).unwrap();
        assert_eq!(b.state().template_count(), 2);
        let mut updates = Vec::new();
        b.drain_updates(&mut updates);
        assert!(updates.is_empty(), "every shard loads the same file: {updates:?}");
    }

    #[test]
    fn withdrawals_cross_shards() {
        let (mut a, mut b) = (Decoder::default(), Decoder::default());
        a.record_updates();
        decode_from(&mut a, [192, 0, 2, 1], 1, &templates_and_sampler());
        decode_from(&mut b, [192, 0, 2, 1], 1, &templates_and_sampler());
        let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: 0, sequence: 3, domain: 1 };
        let mut m = MessageBuilder::new(Protocol::Ipfix, h, Vec::new());
        m.withdraw(256, false);
        decode_from(&mut a, [192, 0, 2, 1], 2, &m.finish());
        let mut updates = Vec::new();
        a.drain_updates(&mut updates);
        let before = b.state().template_count();
        for u in &updates[3..] {
            b.apply_update(u, &mut |_| {});
        }
        assert_eq!(b.state().template_count(), before - 1);
    }

    #[test]
    fn pending_drops_are_counted_apart() {
        let mut dec = Decoder::new(Limits { pending_sets_max: 1, ..Limits::default() });
        decode_from(&mut dec, [192, 0, 2, 1], 1, &data());
        decode_from(&mut dec, [192, 0, 2, 1], 2, &data());
        assert_eq!(dec.counters().pending_dropped, 1);
        dec.flush_pending();
        assert_eq!(dec.counters().pending_dropped, 2);
        assert_eq!(dec.counters().errors[Reason::TemplateMissing as usize], 2);
    }
}
