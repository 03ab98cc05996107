//! Templates and the decoder state shared by NetFlow v9 and IPFIX.
//!
//! A template arrives as a list of (element id, enterprise number, length).
//! `Template::compile` maps each element once to a `Slot` — what to do with
//! its bytes — so decoding a data record is a walk over a short array with no
//! lookups. `DecoderState` keys templates by (protocol, exporter, observation
//! domain, template id), keeps sampling rates per sampler and system init
//! times, and parks data sets that arrive before their template in a bounded
//! pending queue. Every bound is in `Limits`; the whole state can be saved as
//! a `Snapshot` and restored after a restart.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use serde::{Deserialize, Serialize};

use super::{be_uint, DecodeCounters, DecodeError, Reason};
use crate::flow::{addr_from_ip, addr_from_v4, addr_to_ip, Addr, Field, FlowRecord};

/// Private enterprise number of RFC 5103 reverse information elements.
pub const REVERSE_PEN: u32 = 29305;
/// IPFIX length value announcing a variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 0xffff;
/// Seconds between the NTP era (1900) and the Unix epoch.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

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

type HashMap<K, V> = std::collections::HashMap<K, V, KeyHash>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    NetflowV9,
    Ipfix,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    pub protocol: Protocol,
    pub exporter: Addr,
    pub domain: u32,
    pub template_id: u16,
}

macro_rules! slots {
    ($($variant:ident),* $(,)?) => {
        /// What decoding does with one field's bytes.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Slot { $($variant,)* }

        impl Slot {
            pub const COUNT: usize = [$(Slot::$variant,)*].len();
        }

        /// Decodes one fixed-length record through its template's layout:
        /// one test per slot, in a fixed order, each with its slot known at
        /// compile time. The branches depend only on the template, so they
        /// predict perfectly; walking the fields and dispatching on each slot
        /// mispredicted (perf/RESULTS.md).
        #[inline(always)]
        fn decode_by_layout(
            layout: &Layout,
            rec: &[u8],
            f: &mut FlowRecord,
            ctx: &RecordContext,
            x: &mut RecordExtra,
        ) {
            $(
                if Slot::$variant != Slot::Skip {
                    let (at, len) = layout[Slot::$variant as usize];
                    if at != ABSENT {
                        if let Some(b) = rec.get(at as usize..at as usize + len as usize) {
                            apply(Slot::$variant, b, f, ctx, x);
                        }
                    }
                }
            )*
        }
    };
}

slots! {
    Skip,
    Bytes,
    Packets,
    BytesTotal,
    PacketsTotal,
    Proto,
    Tos,
    TcpFlags,
    SrcPort,
    DstPort,
    SrcAddr,
    DstAddr,
    SrcMask,
    DstMask,
    InIf,
    OutIf,
    InPhysIf,
    OutPhysIf,
    NextHop,
    BgpNextHop,
    SrcAs,
    DstAs,
    StartUptime,
    EndUptime,
    StartSeconds,
    EndSeconds,
    StartMillis,
    EndMillis,
    StartNtp,
    EndNtp,
    StartDeltaMicros,
    EndDeltaMicros,
    FlowLabel,
    IcmpTypeCodeV4,
    IcmpTypeCodeV6,
    IcmpTypeV4,
    IcmpCodeV4,
    IcmpTypeV6,
    IcmpCodeV6,
    Ttl,
    TtlMin,
    FragmentId,
    FragmentOffset,
    SrcMac,
    DstMac,
    PostSrcMac,
    PostDstMac,
    SrcVlan,
    DstVlan,
    IpVersion,
    EtherType,
    Direction,
    ForwardingStatus,
    Mpls0,
    Mpls1,
    Mpls2,
    Mpls3,
    Mpls4,
    Mpls5,
    Mpls6,
    Mpls7,
    Mpls8,
    Mpls9,
    SrcAddrNat,
    DstAddrNat,
    SrcPortNat,
    DstPortNat,
    IngressVrf,
    EgressVrf,
    SamplerId,
    SamplingInterval,
    PacketInterval,
    PacketSpace,
    SamplingSize,
    SamplingPopulation,
    SystemInitMillis,
    ReverseBytes,
    ReversePackets,
    ReverseTcpFlags,
    ReverseTos,
}

/// Where each slot sits in a fixed-length record: (offset, length), or
/// `ABSENT`. When a template names an element twice, the later one wins, as
/// it would decoding field by field.
type Layout = [(u16, u16); Slot::COUNT];
const ABSENT: u16 = u16::MAX;

impl Slot {
    /// The slot of MPLS label stack position `position` (0..=9).
    fn mpls(position: u16) -> Slot {
        const MPLS: [Slot; 10] = [
            Slot::Mpls0,
            Slot::Mpls1,
            Slot::Mpls2,
            Slot::Mpls3,
            Slot::Mpls4,
            Slot::Mpls5,
            Slot::Mpls6,
            Slot::Mpls7,
            Slot::Mpls8,
            Slot::Mpls9,
        ];
        MPLS[position as usize % 10]
    }

    /// Maps an information element (IANA IPFIX registry; NetFlow v9 field
    /// types 1–127 share the numbering, RFC 3954 §8) to its slot.
    pub fn for_element(id: u16, pen: u32) -> Slot {
        match pen {
            0 => Slot::for_iana(id),
            REVERSE_PEN => match id {
                1 | 85 => Slot::ReverseBytes,
                2 | 86 => Slot::ReversePackets,
                5 => Slot::ReverseTos,
                6 => Slot::ReverseTcpFlags,
                _ => Slot::Skip,
            },
            _ => Slot::Skip,
        }
    }

    fn for_iana(id: u16) -> Slot {
        match id {
            1 => Slot::Bytes,
            2 => Slot::Packets,
            4 => Slot::Proto,
            5 => Slot::Tos,
            6 => Slot::TcpFlags,
            7 => Slot::SrcPort,
            8 | 27 => Slot::SrcAddr,
            9 | 29 => Slot::SrcMask,
            10 => Slot::InIf,
            11 => Slot::DstPort,
            12 | 28 => Slot::DstAddr,
            13 | 30 => Slot::DstMask,
            14 => Slot::OutIf,
            15 | 62 => Slot::NextHop,
            16 => Slot::SrcAs,
            17 => Slot::DstAs,
            18 | 63 => Slot::BgpNextHop,
            21 => Slot::EndUptime,
            22 => Slot::StartUptime,
            31 => Slot::FlowLabel,
            32 => Slot::IcmpTypeCodeV4,
            34 | 50 => Slot::SamplingInterval,
            48 | 302 => Slot::SamplerId,
            52 => Slot::TtlMin,
            54 => Slot::FragmentId,
            56 => Slot::SrcMac,
            57 => Slot::PostDstMac,
            58 | 243 => Slot::SrcVlan,
            59 | 254 => Slot::DstVlan,
            60 => Slot::IpVersion,
            61 => Slot::Direction,
            70..=79 => Slot::mpls(id - 70),
            80 => Slot::DstMac,
            81 => Slot::PostSrcMac,
            85 => Slot::BytesTotal,
            86 => Slot::PacketsTotal,
            88 => Slot::FragmentOffset,
            89 => Slot::ForwardingStatus,
            139 => Slot::IcmpTypeCodeV6,
            150 => Slot::StartSeconds,
            151 => Slot::EndSeconds,
            152 => Slot::StartMillis,
            153 => Slot::EndMillis,
            154 | 156 => Slot::StartNtp,
            155 | 157 => Slot::EndNtp,
            158 => Slot::StartDeltaMicros,
            159 => Slot::EndDeltaMicros,
            160 => Slot::SystemInitMillis,
            176 => Slot::IcmpTypeV4,
            177 => Slot::IcmpCodeV4,
            178 => Slot::IcmpTypeV6,
            179 => Slot::IcmpCodeV6,
            192 => Slot::Ttl,
            225 | 281 => Slot::SrcAddrNat,
            226 | 282 => Slot::DstAddrNat,
            227 => Slot::SrcPortNat,
            228 => Slot::DstPortNat,
            234 => Slot::IngressVrf,
            235 => Slot::EgressVrf,
            252 => Slot::InPhysIf,
            253 => Slot::OutPhysIf,
            256 => Slot::EtherType,
            305 => Slot::PacketInterval,
            306 => Slot::PacketSpace,
            309 => Slot::SamplingSize,
            310 => Slot::SamplingPopulation,
            _ => Slot::Skip,
        }
    }
}

/// One field of a template as it came on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub id: u16,
    /// Private enterprise number; 0 for IANA elements.
    pub pen: u32,
    /// Length in bytes, or `VARIABLE_LENGTH`.
    pub len: u16,
}

#[derive(Clone, Copy, Debug)]
struct CompiledField {
    len: u16,
    slot: Slot,
}

/// A compiled template or options template.
#[derive(Clone, Debug)]
pub struct Template {
    specs: Vec<FieldSpec>,
    fields: Vec<CompiledField>,
    /// Leading scope fields of an options template (0 for data templates).
    scope_fields: u16,
    options: bool,
    /// Record length when no field is variable-length.
    fixed_len: Option<usize>,
    /// Smallest possible record (variable fields counted as one byte).
    min_len: usize,
    /// Slot positions, for fixed-length templates.
    layout: Option<Box<Layout>>,
    inserted_seq: u64,
}

impl Template {
    /// Validates and compiles a template. `protocol` decides whether the
    /// variable length marker is allowed (IPFIX only).
    pub fn compile(
        protocol: Protocol,
        specs: &[FieldSpec],
        scope_fields: u16,
        options: bool,
        limits: &Limits,
    ) -> Result<Template, DecodeError> {
        if specs.is_empty() || specs.len() > limits.fields_per_template_max {
            return Err(DecodeError::new(Reason::BadTemplate, "field count"));
        }
        if scope_fields as usize > specs.len() {
            return Err(DecodeError::new(Reason::BadTemplate, "scope count"));
        }
        let mut fixed = true;
        let mut min_len = 0usize;
        let mut fields = Vec::with_capacity(specs.len());
        for spec in specs {
            if spec.len == 0 {
                return Err(DecodeError::new(Reason::BadTemplate, "zero-length field"));
            }
            if spec.len == VARIABLE_LENGTH && protocol == Protocol::Ipfix {
                fixed = false;
                min_len += 1;
            } else {
                min_len += spec.len as usize;
            }
            let slot =
                if (scope_fields as usize) > fields.len() { Slot::Skip } else { Slot::for_element(spec.id, spec.pen) };
            fields.push(CompiledField { len: spec.len, slot });
        }
        if min_len > u16::MAX as usize {
            return Err(DecodeError::new(Reason::BadTemplate, "record longer than a set"));
        }
        // A scope field may still name the sampler (RFC 3954 options keyed by sampler id).
        for (i, spec) in specs.iter().enumerate().take(scope_fields as usize) {
            if spec.pen == 0 && matches!(spec.id, 48 | 302) {
                fields[i].slot = Slot::SamplerId;
            }
        }
        let layout = fixed.then(|| {
            let mut layout = Box::new([(ABSENT, 0u16); Slot::COUNT]);
            let mut at = 0u16;
            for field in &fields {
                layout[field.slot as usize] = (at, field.len);
                at += field.len;
            }
            layout
        });
        Ok(Template {
            specs: specs.to_vec(),
            fields,
            scope_fields,
            options,
            fixed_len: fixed.then_some(min_len),
            min_len,
            layout,
            inserted_seq: 0,
        })
    }

    pub fn specs(&self) -> &[FieldSpec] {
        &self.specs
    }

    pub fn is_options(&self) -> bool {
        self.options
    }
}

/// What a data set needs from its datagram's header to decode times.
#[derive(Clone, Copy, Debug)]
pub struct RecordContext {
    pub exporter: Addr,
    pub domain: u32,
    pub received_ns: u64,
    /// Export time, seconds since the Unix epoch.
    pub export_time_s: u32,
    /// NetFlow v9 header sysUpTime (ms), the base of FIRST/LAST_SWITCHED.
    pub sys_uptime_ms: Option<u32>,
}

macro_rules! record_extra {
    ($( $bit:literal: $field:ident: $ty:ty, $setter:ident; )*) => {
        /// Per-record values that are not flow fields but decide some. Plain
        /// values and a presence mask: resetting it per record is one store.
        #[derive(Clone, Copy, Default)]
        struct RecordExtra {
            present: u32,
            $($field: $ty,)*
        }

        impl RecordExtra {
            $(
                #[inline(always)]
                fn $setter(&mut self, v: $ty) {
                    self.$field = v;
                    self.present |= 1 << $bit;
                }

                #[inline(always)]
                fn $field(&self) -> Option<$ty> {
                    (self.present & 1 << $bit != 0).then_some(self.$field)
                }
            )*
        }
    };
}

record_extra! {
    0: sampler_id: u64, set_sampler_id;
    1: sampling_interval: u64, set_sampling_interval;
    2: packet_interval: u64, set_packet_interval;
    3: packet_space: u64, set_packet_space;
    4: sampling_size: u64, set_sampling_size;
    5: sampling_population: u64, set_sampling_population;
    6: system_init_ms: u64, set_system_init_ms;
    7: start_uptime_ms: u64, set_start_uptime_ms;
    8: end_uptime_ms: u64, set_end_uptime_ms;
    9: bytes_total: u64, set_bytes_total;
    10: packets_total: u64, set_packets_total;
    11: ttl_min: u8, set_ttl_min;
    12: post_src_mac: [u8; 6], set_post_src_mac;
    13: post_dst_mac: [u8; 6], set_post_dst_mac;
    14: reverse_bytes: u64, set_reverse_bytes;
    15: reverse_packets: u64, set_reverse_packets;
    16: reverse_tcp_flags: u16, set_reverse_tcp_flags;
    17: reverse_tos: u8, set_reverse_tos;
}

/// Bits of `RecordExtra` that carry sampling information.
const EXTRA_SAMPLING_BITS: u32 = 0b11_1110;
/// Bits that `finish_record` must look at beyond sampling.
const EXTRA_FINISH_BITS: u32 = 0b11_1111_1100_0000;
/// Bits of the RFC 5103 reverse direction.
const EXTRA_REVERSE_BITS: u32 = 0b1100_0000_0000_0000;

impl RecordExtra {
    #[inline(always)]
    fn reset(&mut self) {
        self.present = 0;
    }

    fn sampling_rate(&self) -> Option<u64> {
        if self.present & EXTRA_SAMPLING_BITS == 0 {
            return None;
        }
        let get = |v: Option<u64>| v.unwrap_or(0);
        let (interval, packet_interval) = (get(self.sampling_interval()), get(self.packet_interval()));
        let (size, population) = (get(self.sampling_size()), get(self.sampling_population()));
        if interval > 0 {
            Some(interval)
        } else if let Some(rate) = packet_interval.saturating_add(get(self.packet_space())).checked_div(packet_interval)
        {
            Some(rate)
        } else if size > 0 && population > 0 {
            Some(population / size)
        } else {
            None
        }
    }

    fn is_reverse(&self) -> bool {
        self.present & EXTRA_REVERSE_BITS != 0
            && (self.reverse_bytes().unwrap_or(0) > 0 || self.reverse_packets().unwrap_or(0) > 0)
    }
}

/// Inlined so that the 16 bytes are built in registers: returned through
/// memory, the reload stalled on store forwarding (perf/RESULTS.md).
#[inline(always)]
fn address(b: &[u8]) -> Option<Addr> {
    match *b {
        [a, b, c, d] => Some(addr_from_v4([a, b, c, d])),
        _ => b.try_into().ok(),
    }
}

fn mac(b: &[u8]) -> Option<[u8; 6]> {
    b.try_into().ok()
}

/// NTP timestamp (RFC 5905 64-bit: seconds since 1900, 2^-32 fractions) to Unix ns.
fn ntp_to_unix_ns(v: u64) -> Option<u64> {
    let secs = (v >> 32).checked_sub(NTP_UNIX_OFFSET_S)?;
    let frac_ns = ((v & 0xffff_ffff) * 1_000_000_000) >> 32;
    Some(secs * 1_000_000_000 + frac_ns)
}

#[inline(always)]
fn apply(slot: Slot, b: &[u8], f: &mut FlowRecord, ctx: &RecordContext, x: &mut RecordExtra) {
    let v = || be_uint(b);
    match slot {
        Slot::Skip => {}
        Slot::Bytes => f.set_bytes(v()),
        Slot::Packets => f.set_packets(v()),
        Slot::BytesTotal => x.set_bytes_total(v()),
        Slot::PacketsTotal => x.set_packets_total(v()),
        Slot::Proto => f.set_proto(v() as u8),
        Slot::Tos => f.set_ip_tos(v() as u8),
        Slot::TcpFlags => f.set_tcp_flags(v() as u16),
        Slot::SrcPort => f.set_src_port(v() as u16),
        Slot::DstPort => f.set_dst_port(v() as u16),
        Slot::SrcAddr => address(b).into_iter().for_each(|a| f.set_src_addr(a)),
        Slot::DstAddr => address(b).into_iter().for_each(|a| f.set_dst_addr(a)),
        Slot::SrcMask => f.set_src_net_mask(v() as u8),
        Slot::DstMask => f.set_dst_net_mask(v() as u8),
        Slot::InIf => f.set_in_if_index(v() as u32),
        Slot::OutIf => f.set_out_if_index(v() as u32),
        Slot::InPhysIf => f.set_in_if_physical_index(v() as u32),
        Slot::OutPhysIf => f.set_out_if_physical_index(v() as u32),
        Slot::NextHop => address(b).into_iter().for_each(|a| f.set_next_hop(a)),
        Slot::BgpNextHop => address(b).into_iter().for_each(|a| f.set_bgp_next_hop(a)),
        Slot::SrcAs => f.set_src_as(v() as u32),
        Slot::DstAs => f.set_dst_as(v() as u32),
        Slot::StartUptime => x.set_start_uptime_ms(v()),
        Slot::EndUptime => x.set_end_uptime_ms(v()),
        Slot::StartSeconds => f.set_flow_start_ns(v().saturating_mul(1_000_000_000)),
        Slot::EndSeconds => f.set_flow_end_ns(v().saturating_mul(1_000_000_000)),
        Slot::StartMillis => f.set_flow_start_ns(v().saturating_mul(1_000_000)),
        Slot::EndMillis => f.set_flow_end_ns(v().saturating_mul(1_000_000)),
        Slot::StartNtp => ntp_to_unix_ns(v()).into_iter().for_each(|t| f.set_flow_start_ns(t)),
        Slot::EndNtp => ntp_to_unix_ns(v()).into_iter().for_each(|t| f.set_flow_end_ns(t)),
        Slot::StartDeltaMicros => f.set_flow_start_ns(delta_to_ns(ctx, v())),
        Slot::EndDeltaMicros => f.set_flow_end_ns(delta_to_ns(ctx, v())),
        Slot::FlowLabel => f.set_ipv6_flow_label(v() as u32 & 0xf_ffff),
        Slot::IcmpTypeCodeV4 => {
            f.set_icmpv4_type((v() >> 8) as u8);
            f.set_icmpv4_code(v() as u8);
        }
        Slot::IcmpTypeCodeV6 => {
            f.set_icmpv6_type((v() >> 8) as u8);
            f.set_icmpv6_code(v() as u8);
        }
        Slot::IcmpTypeV4 => f.set_icmpv4_type(v() as u8),
        Slot::IcmpCodeV4 => f.set_icmpv4_code(v() as u8),
        Slot::IcmpTypeV6 => f.set_icmpv6_type(v() as u8),
        Slot::IcmpCodeV6 => f.set_icmpv6_code(v() as u8),
        Slot::Ttl => f.set_ip_ttl(v() as u8),
        Slot::TtlMin => x.set_ttl_min(v() as u8),
        Slot::FragmentId => f.set_ip_fragment_id(v() as u32),
        Slot::FragmentOffset => f.set_ip_fragment_offset(v() as u16),
        Slot::SrcMac => mac(b).into_iter().for_each(|m| f.set_src_mac(m)),
        Slot::DstMac => mac(b).into_iter().for_each(|m| f.set_dst_mac(m)),
        Slot::PostSrcMac => mac(b).into_iter().for_each(|m| x.set_post_src_mac(m)),
        Slot::PostDstMac => mac(b).into_iter().for_each(|m| x.set_post_dst_mac(m)),
        Slot::SrcVlan => f.set_src_vlan(v() as u16 & 0x0fff),
        Slot::DstVlan => f.set_dst_vlan(v() as u16 & 0x0fff),
        Slot::IpVersion => match v() {
            4 => f.set_etype(0x0800),
            6 => f.set_etype(0x86dd),
            _ => {}
        },
        Slot::EtherType => f.set_etype(v() as u16),
        Slot::Direction => f.set_flow_direction(v() as u8),
        Slot::ForwardingStatus => f.set_forwarding_status(forwarding_status(b)),
        Slot::Mpls0
        | Slot::Mpls1
        | Slot::Mpls2
        | Slot::Mpls3
        | Slot::Mpls4
        | Slot::Mpls5
        | Slot::Mpls6
        | Slot::Mpls7
        | Slot::Mpls8
        | Slot::Mpls9 => {
            // RFC 7011 IE 70: label (20 bits), traffic class (3), bottom of stack (1).
            let position = slot as usize - Slot::Mpls0 as usize;
            f.set_mpls_label(position, (v() >> 4) as u32 & 0xf_ffff);
        }
        Slot::SrcAddrNat => address(b).into_iter().for_each(|a| f.set_src_addr_nat(a)),
        Slot::DstAddrNat => address(b).into_iter().for_each(|a| f.set_dst_addr_nat(a)),
        Slot::SrcPortNat => f.set_src_port_nat(v() as u16),
        Slot::DstPortNat => f.set_dst_port_nat(v() as u16),
        Slot::IngressVrf => f.set_ingress_vrf_id(v() as u32),
        Slot::EgressVrf => f.set_egress_vrf_id(v() as u32),
        Slot::SamplerId => x.set_sampler_id(v()),
        Slot::SamplingInterval => x.set_sampling_interval(v()),
        Slot::PacketInterval => x.set_packet_interval(v()),
        Slot::PacketSpace => x.set_packet_space(v()),
        Slot::SamplingSize => x.set_sampling_size(v()),
        Slot::SamplingPopulation => x.set_sampling_population(v()),
        Slot::SystemInitMillis => x.set_system_init_ms(v()),
        Slot::ReverseBytes => x.set_reverse_bytes(v()),
        Slot::ReversePackets => x.set_reverse_packets(v()),
        Slot::ReverseTcpFlags => x.set_reverse_tcp_flags(v() as u16),
        Slot::ReverseTos => x.set_reverse_tos(v() as u8),
    }
}

/// RFC 7270 §4.12: forwardingStatus is an unsigned32 whose status and reason
/// code sit in the low byte; exporters also send it reduced to one byte.
fn forwarding_status(b: &[u8]) -> u8 {
    be_uint(b) as u8
}

fn delta_to_ns(ctx: &RecordContext, delta_us: u64) -> u64 {
    (ctx.export_time_s as u64 * 1_000_000_000).saturating_sub(delta_us.saturating_mul(1000))
}

/// Unix ns of a sysUpTime-relative time (ms).
fn uptime_to_ns(ctx: &RecordContext, system_init_ms: Option<u64>, uptime_ms: u64) -> Option<u64> {
    if let Some(sys_uptime) = ctx.sys_uptime_ms {
        // RFC 3954 §5.1: the header carries both sysUpTime and UNIX secs.
        let boot_ms = ctx.export_time_s as i64 * 1000 - sys_uptime as i64;
        let t = boot_ms + uptime_ms as i64;
        return (t >= 0).then(|| t as u64 * 1_000_000);
    }
    system_init_ms.map(|init| init.saturating_add(uptime_ms).saturating_mul(1_000_000))
}

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

type SamplerKey = (Protocol, Addr, u32, u64);

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

/// Where the records of one data set go: flows to the sink (with their
/// sampling rate and times completed), options records to the state.
struct SetOutput<'a, F> {
    key: TemplateKey,
    ctx: &'a RecordContext,
    options: bool,
    system_init: Option<u64>,
    default_rate: Option<u64>,
    samplers: &'a HashMap<SamplerKey, u64>,
    /// Records of a set almost always name the same sampler: look it up once.
    sampler_cache: Option<(u64, Option<u64>)>,
    options_records: &'a mut Vec<RecordExtra>,
    counters: &'a mut DecodeCounters,
    sink: &'a mut F,
}

impl<F: FnMut(&FlowRecord)> SetOutput<'_, F> {
    #[inline]
    fn emit(&mut self, flow: &mut FlowRecord, x: &RecordExtra) {
        if self.options {
            self.options_records.push(*x);
            return;
        }
        let key = self.key;
        let rate = x.sampling_rate().or_else(|| match x.sampler_id() {
            Some(id) => match self.sampler_cache {
                Some((cached, rate)) if cached == id => rate,
                _ => {
                    let rate = self.samplers.get(&(key.protocol, key.exporter, key.domain, id)).copied();
                    self.sampler_cache = Some((id, rate));
                    rate
                }
            },
            None => self.default_rate,
        });
        finish_record(flow, self.ctx, self.system_init, x, rate);
        (self.sink)(flow);
        self.counters.flows += 1;
        if x.is_reverse() {
            reverse_record(flow, x);
            (self.sink)(flow);
            self.counters.flows += 1;
        }
    }
}

/// Fixed-length records, one after the other; bytes after the last whole
/// record are padding. (Decoding a chunk of records column by column was
/// tried and was slower: see perf/RESULTS.md.)
fn decode_fixed<F: FnMut(&FlowRecord)>(
    t: &Template,
    record_len: usize,
    body: &[u8],
    ctx: &RecordContext,
    flow: &mut FlowRecord,
    out: &mut SetOutput<F>,
) {
    if record_len == 0 {
        return;
    }
    let Some(layout) = &t.layout else { return };
    let mut x = RecordExtra::default();
    for record in body.chunks_exact(record_len) {
        x.reset();
        flow.clear();
        decode_by_layout(layout, record, flow, ctx, &mut x);
        out.emit(flow, &x);
    }
}

/// Records with variable-length fields, one after the other.
fn decode_variable<F: FnMut(&FlowRecord)>(
    t: &Template,
    body: &[u8],
    ctx: &RecordContext,
    flow: &mut FlowRecord,
    out: &mut SetOutput<F>,
) -> Result<(), DecodeError> {
    let mut rest = body;
    let mut x = RecordExtra::default();
    while rest.len() >= t.min_len.max(1) {
        x.reset();
        flow.clear();
        let used = match decode_record(t, rest, ctx, flow, &mut x) {
            Ok(used) => used,
            // A last short record is padding when it is under 4 bytes (RFC 7011 §3.3.1).
            Err(_) if rest.len() < 4 => break,
            Err(e) => return Err(out.counters.error(e)),
        };
        rest = &rest[used..];
        out.emit(flow, &x);
    }
    Ok(())
}

/// Walks one record; returns the bytes it used.
#[inline]
fn decode_record(
    t: &Template,
    rec: &[u8],
    ctx: &RecordContext,
    f: &mut FlowRecord,
    x: &mut RecordExtra,
) -> Result<usize, DecodeError> {
    let mut at = 0usize;
    for field in &t.fields {
        let len = if field.len == VARIABLE_LENGTH && t.fixed_len.is_none() {
            variable_length(rec, &mut at)?
        } else {
            field.len as usize
        };
        let Some(b) = rec.get(at..at + len) else {
            return Err(DecodeError::new(Reason::Truncated, "record past the set"));
        };
        apply(field.slot, b, f, ctx, x);
        at += len;
    }
    Ok(at)
}

/// RFC 7011 §7: one length byte, or 255 then a two-byte length.
fn variable_length(rec: &[u8], at: &mut usize) -> Result<usize, DecodeError> {
    let short = *rec.get(*at).ok_or(DecodeError::new(Reason::Truncated, "variable length"))?;
    *at += 1;
    if short < 255 {
        return Ok(short as usize);
    }
    let long = super::be16(rec, *at).ok_or(DecodeError::new(Reason::Truncated, "variable length"))?;
    *at += 2;
    Ok(long as usize)
}

fn finish_record(
    f: &mut FlowRecord,
    ctx: &RecordContext,
    system_init: Option<u64>,
    x: &RecordExtra,
    rate: Option<u64>,
) {
    f.set_time_received_ns(ctx.received_ns);
    f.set_exporter_address(ctx.exporter);
    f.set_observation_domain(ctx.domain);
    if let Some(rate) = rate {
        f.set_sampling_rate(rate);
    }
    if x.present & EXTRA_FINISH_BITS != 0 {
        finish_extras(f, ctx, system_init, x);
    }
    if !f.has(Field::EType) {
        infer_etype(f);
    }
}

/// Times relative to sysUpTime, and fallbacks (total counts, minimum TTL,
/// post-NAT MACs) for fields the record did not carry directly.
fn finish_extras(f: &mut FlowRecord, ctx: &RecordContext, system_init: Option<u64>, x: &RecordExtra) {
    let init = x.system_init_ms().or(system_init);
    if let Some(t) = x.start_uptime_ms().and_then(|u| uptime_to_ns(ctx, init, u)) {
        f.set_flow_start_ns(t);
    }
    if let Some(t) = x.end_uptime_ms().and_then(|u| uptime_to_ns(ctx, init, u)) {
        f.set_flow_end_ns(t);
    }
    if let (Some(b), false) = (x.bytes_total(), f.has(Field::Bytes)) {
        f.set_bytes(b);
    }
    if let (Some(p), false) = (x.packets_total(), f.has(Field::Packets)) {
        f.set_packets(p);
    }
    if let (Some(t), false) = (x.ttl_min(), f.has(Field::IPTTL)) {
        f.set_ip_ttl(t);
    }
    if let (Some(m), false) = (x.post_src_mac(), f.has(Field::SrcMAC)) {
        f.set_src_mac(m);
    }
    if let (Some(m), false) = (x.post_dst_mac(), f.has(Field::DstMAC)) {
        f.set_dst_mac(m);
    }
}

/// EType from the address family when the template names none.
fn infer_etype(f: &mut FlowRecord) {
    let addr = if f.has(Field::SrcAddr) {
        f.src_addr
    } else if f.has(Field::DstAddr) {
        f.dst_addr
    } else {
        return;
    };
    let v4 = crate::flow::addr_as_v4(&addr).is_some();
    f.set_etype(if v4 { 0x0800 } else { 0x86dd });
}

/// RFC 5103: the reverse direction of a biflow record becomes its own flow.
fn reverse_record(f: &mut FlowRecord, x: &RecordExtra) {
    f.swap_direction();
    f.set_bytes(x.reverse_bytes().unwrap_or(0));
    f.set_packets(x.reverse_packets().unwrap_or(0));
    match x.reverse_tcp_flags() {
        Some(flags) => f.set_tcp_flags(flags),
        None => f.unset(Field::TCPFlags),
    }
    match x.reverse_tos() {
        Some(tos) => f.set_ip_tos(tos),
        None => f.unset(Field::IPTos),
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
