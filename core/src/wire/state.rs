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
type HashMap<K, V> = KeyHashMap<K, V>;

/// A data set parked until its template arrives.
struct PendingSet {
    key: TemplateKey,
    ctx: RecordContext,
    body: Vec<u8>,
}

#[derive(Default)]
struct ExporterState {
    templates: usize,
    samplers: usize,
    last_seen_ns: u64,
}

pub(super) type SamplerKey = (Protocol, Addr, u32, u64);

/// Templates, sampling rates and system init times of every exporter, plus
/// the pending queue. Owned by one decoder (one per shard).
#[derive(Default)]
pub struct DecoderState {
    limits: Limits,
    templates: HashMap<TemplateKey, Template>,
    exporters: HashMap<Addr, ExporterState>,
    samplers: HashMap<SamplerKey, u64>,
    system_init_ms: HashMap<(Protocol, Addr, u32), u64>,
    pending: VecDeque<PendingSet>,
    pending_bytes: usize,
    inserted_seq: u64,
    options_scratch: Vec<RecordExtra>,
}

impl DecoderState {
    pub fn new(limits: Limits) -> Self {
        let hash = KeyHash(limits.hash_seed);
        DecoderState {
            templates: HashMap::with_hasher(hash),
            exporters: HashMap::with_hasher(hash),
            samplers: HashMap::with_hasher(hash),
            system_init_ms: HashMap::with_hasher(hash),
            limits,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn template(&self, key: &TemplateKey) -> Option<&Template> {
        self.templates.get(key)
    }

    pub fn template_count(&self) -> usize {
        self.templates.len()
    }

    pub fn pending_sets(&self) -> usize {
        self.pending.len()
    }

    /// The sampling rate announced for `sampler_id` (0: the exporter default).
    pub fn sampling_rate(&self, p: Protocol, exporter: Addr, domain: u32, sampler_id: u64) -> Option<u64> {
        self.samplers.get(&(p, exporter, domain, sampler_id)).copied()
    }

    /// Notes that an exporter sent a datagram, making room for it if new.
    pub(crate) fn touch_exporter(&mut self, exporter: Addr, now_ns: u64, counters: &mut DecodeCounters) {
        if let Some(e) = self.exporters.get_mut(&exporter) {
            e.last_seen_ns = now_ns;
            return;
        }
        if self.exporters.len() >= self.limits.exporters_max {
            let oldest = self.exporters.iter().min_by_key(|(_, e)| e.last_seen_ns).map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                self.forget_exporter(oldest);
                counters.exporter_evictions += 1;
                counters.error(DecodeError::new(Reason::ExporterLimit, "exporter evicted"));
            }
        }
        if self.limits.exporters_max > 0 {
            self.exporters.insert(exporter, ExporterState { last_seen_ns: now_ns, ..Default::default() });
        }
    }

    fn forget_exporter(&mut self, exporter: Addr) {
        self.exporters.remove(&exporter);
        self.templates.retain(|k, _| k.exporter != exporter);
        self.samplers.retain(|k, _| k.1 != exporter);
        self.system_init_ms.retain(|k, _| k.1 != exporter);
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
        mut template: Template,
        counters: &mut DecodeCounters,
        flow: &mut FlowRecord,
        sink: &mut F,
    ) {
        let Some(exporter) = self.exporters.get_mut(&key.exporter) else {
            counters.error(DecodeError::new(Reason::ExporterLimit, "no room for exporter"));
            return;
        };
        self.inserted_seq += 1;
        template.inserted_seq = self.inserted_seq;
        if !self.templates.contains_key(&key) {
            if exporter.templates >= self.limits.templates_per_exporter_max {
                let oldest = self
                    .templates
                    .iter()
                    .filter(|(k, _)| k.exporter == key.exporter)
                    .min_by_key(|(_, t)| t.inserted_seq)
                    .map(|(k, _)| *k);
                match oldest {
                    Some(oldest) => {
                        self.templates.remove(&oldest);
                        exporter.templates -= 1;
                        counters.template_evictions += 1;
                        counters.error(DecodeError::new(Reason::TemplateLimit, "template evicted"));
                    }
                    None => {
                        counters.error(DecodeError::new(Reason::TemplateLimit, "templates_per_exporter_max is 0"));
                        return;
                    }
                }
            }
            exporter.templates += 1;
        }
        self.templates.insert(key, template);
        counters.templates += 1;
        self.decode_parked(key, counters, flow, sink);
    }

    /// IPFIX template withdrawal (RFC 7011 §8.1): one id, or every template
    /// of the set's kind when `template_id` is the set id (2 or 3).
    pub(crate) fn withdraw(&mut self, key: TemplateKey, all_options: Option<bool>, counters: &mut DecodeCounters) {
        let before = self.templates.len();
        match all_options {
            None => {
                self.templates.remove(&key);
            }
            Some(options) => self.templates.retain(|k, t| {
                !(k.protocol == key.protocol
                    && k.exporter == key.exporter
                    && k.domain == key.domain
                    && t.options == options)
            }),
        }
        let removed = before - self.templates.len();
        counters.templates_withdrawn += removed as u64;
        if let Some(e) = self.exporters.get_mut(&key.exporter) {
            e.templates = e.templates.saturating_sub(removed);
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
            counters.error(DecodeError::new(Reason::TemplateMissing, "no template for data set"));
        }
    }

    fn park(&mut self, key: TemplateKey, ctx: &RecordContext, body: &[u8], counters: &mut DecodeCounters) {
        if self.limits.pending_sets_max == 0 || body.len() > self.limits.pending_bytes_max {
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
        let result = match template.fixed_len {
            Some(record_len) => {
                decode_fixed(template, record_len, body, ctx, flow, &mut out);
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
        if let Some(init) = x.system_init_ms() {
            self.system_init_ms.insert((key.protocol, key.exporter, key.domain), init);
        }
        let Some(rate) = x.sampling_rate() else {
            return;
        };
        let skey = (key.protocol, key.exporter, key.domain, x.sampler_id().unwrap_or(0));
        if let Some(r) = self.samplers.get_mut(&skey) {
            *r = rate;
            return;
        }
        let Some(exporter) = self.exporters.get_mut(&key.exporter) else {
            return;
        };
        if exporter.samplers >= self.limits.samplers_per_exporter_max {
            counters.error(DecodeError::new(Reason::TemplateLimit, "samplers_per_exporter_max"));
            return;
        }
        exporter.samplers += 1;
        self.samplers.insert(skey, rate);
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

/// Version of the `Snapshot` layout; a file of another version is refused.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

impl DecoderState {
    /// Everything needed to decode again after a restart, in a stable order.
    pub fn snapshot(&self) -> Snapshot {
        let mut templates: Vec<_> = self
            .templates
            .iter()
            .map(|(k, t)| TemplateSnapshot {
                protocol: k.protocol,
                exporter: addr_to_ip(&k.exporter),
                domain: k.domain,
                template_id: k.template_id,
                options: t.options,
                scope_fields: t.scope_fields,
                fields: t.specs.clone(),
            })
            .collect();
        templates.sort_by_key(|t| (t.exporter, t.domain, t.template_id));
        let mut samplers: Vec<_> = self
            .samplers
            .iter()
            .map(|(k, r)| SamplerSnapshot {
                protocol: k.0,
                exporter: addr_to_ip(&k.1),
                domain: k.2,
                sampler_id: k.3,
                sampling_rate: *r,
            })
            .collect();
        samplers.sort_by_key(|s| (s.exporter, s.domain, s.sampler_id));
        let mut system_init: Vec<_> = self
            .system_init_ms
            .iter()
            .map(|(k, v)| SystemInitSnapshot {
                protocol: k.0,
                exporter: addr_to_ip(&k.1),
                domain: k.2,
                system_init_ms: *v,
            })
            .collect();
        system_init.sort_by_key(|s| (s.exporter, s.domain));
        Snapshot { format_version: SNAPSHOT_FORMAT_VERSION, templates, samplers, system_init }
    }

    /// Loads a snapshot through the same limits and validation as the wire.
    pub fn restore(&mut self, snap: &Snapshot, counters: &mut DecodeCounters) -> Result<(), DecodeError> {
        if snap.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(DecodeError::new(Reason::BadVersion, "decoder state snapshot version"));
        }
        let mut flow = FlowRecord::default();
        for t in &snap.templates {
            let exporter = addr_from_ip(t.exporter);
            let Ok(template) = Template::compile(t.protocol, &t.fields, t.scope_fields, t.options, &self.limits) else {
                counters.error(DecodeError::new(Reason::BadTemplate, "snapshot template"));
                continue;
            };
            self.touch_exporter(exporter, 0, counters);
            let key = TemplateKey { protocol: t.protocol, exporter, domain: t.domain, template_id: t.template_id };
            self.insert_template(key, template, counters, &mut flow, &mut |_| {});
        }
        for s in &snap.samplers {
            let exporter = addr_from_ip(s.exporter);
            self.touch_exporter(exporter, 0, counters);
            let mut x = RecordExtra::default();
            x.set_sampler_id(s.sampler_id);
            x.set_sampling_interval(s.sampling_rate);
            let key = TemplateKey { protocol: s.protocol, exporter, domain: s.domain, template_id: 0 };
            self.apply_options(key, &x, counters);
        }
        for s in &snap.system_init {
            let exporter = addr_from_ip(s.exporter);
            self.system_init_ms.insert((s.protocol, exporter, s.domain), s.system_init_ms);
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
