//! Templates of NetFlow v9 and IPFIX, compiled for decoding.
//!
//! A template arrives as a list of (element id, enterprise number, length):
//! `FieldSpec`s. `Template::compile` validates it and maps each element once
//! to a `Slot` — what to do with its bytes — and, for fixed-length records, a
//! `Layout` of where each slot sits, so that decoding a record needs no
//! lookups (`record.rs`). Templates are stored per exporter in `state.rs`.

use serde::{Deserialize, Serialize};

use super::record::{apply, RecordContext, RecordExtra};
use super::state::Limits;
use super::{DecodeError, Reason};
use crate::flow::{Addr, FlowRecord};

/// Private enterprise number of RFC 5103 reverse information elements.
pub const REVERSE_PEN: u32 = 29305;
/// Juniper's private enterprise number: its inline monitoring exports its
/// own fields as element 137 (commonPropertiesId) of this enterprise, told
/// apart by length; the 2-byte one is the forwarding-exception code.
pub const JUNIPER_PEN: u32 = 2636;
/// IPFIX length value announcing a variable-length field (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 0xffff;

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
        pub(super) fn decode_by_layout(
            layout: &Layout,
            rec: &[u8],
            f: &mut FlowRecord,
            ctx: &RecordContext,
            x: &mut RecordExtra,
        ) {
            $(
                if Slot::$variant != Slot::Skip && !Slot::$variant.rare() {
                    let (at, len) = layout.slots[Slot::$variant as usize];
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
    Dot1qVlan,
    Dot1qCustomerVlan,
    IpVersion,
    EtherType,
    Direction,
    ForwardingStatus,
    JuniperException,
    DataLinkFrame,
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
/// it would decoding field by field; but a second address of the same role
/// (sourceIPv4Address and sourceIPv6Address) is kept in `rare`, so that the
/// one that is not all zero wins (`record::apply`).
///
/// `rare` also holds the fields of rare slots, applied after the others
/// through a short list: each slot in the unrolled chain costs every record
/// of every template a test, so elements few exporters send stay out of it.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub(super) slots: [(u16, u16); Slot::COUNT],
    pub(super) rare: Vec<(u16, u16, Slot)>,
}
const ABSENT: u16 = u16::MAX;

impl Slot {
    /// Slots of elements few exporters send (see `Layout`).
    pub(super) const fn rare(self) -> bool {
        matches!(self, Slot::Dot1qVlan | Slot::Dot1qCustomerVlan | Slot::JuniperException | Slot::DataLinkFrame)
    }

    /// Slots a template may name twice, one of them all zero.
    const fn address(self) -> bool {
        matches!(self, Slot::SrcAddr | Slot::DstAddr | Slot::NextHop | Slot::BgpNextHop)
    }

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
            58 => Slot::SrcVlan,
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
            // layer2packetSectionData (v9 and IPFIX); dataLinkFrameSection (RFC 7133).
            104 | 315 => Slot::DataLinkFrame,
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
            243 => Slot::Dot1qVlan,
            245 => Slot::Dot1qCustomerVlan,
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
pub(super) struct CompiledField {
    pub(super) len: u16,
    pub(super) slot: Slot,
}

/// A compiled template or options template.
#[derive(Clone, Debug)]
pub struct Template {
    pub(super) specs: Vec<FieldSpec>,
    pub(super) fields: Vec<CompiledField>,
    /// Leading scope fields of an options template (0 for data templates).
    pub(super) scope_fields: u16,
    pub(super) options: bool,
    /// Smallest possible record (variable fields counted as one byte); the
    /// record length of a fixed-length template.
    pub(super) min_len: usize,
    /// Slot positions; present exactly when no field is variable-length.
    pub(super) layout: Option<Box<Layout>>,
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
            let slot = if (scope_fields as usize) > fields.len() {
                Slot::Skip
            } else if (spec.pen, spec.id, spec.len) == (JUNIPER_PEN, 137, 2) {
                Slot::JuniperException
            } else {
                Slot::for_element(spec.id, spec.pen)
            };
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
            let mut layout = Box::new(Layout { slots: [(ABSENT, 0u16); Slot::COUNT], rare: Vec::new() });
            let mut at = 0u16;
            for field in &fields {
                let taken = layout.slots[field.slot as usize].0 != ABSENT;
                if field.slot.rare() || (field.slot.address() && taken) {
                    layout.rare.push((at, field.len, field.slot));
                } else {
                    layout.slots[field.slot as usize] = (at, field.len);
                }
                at += field.len;
            }
            layout
        });
        Ok(Template { specs: specs.to_vec(), fields, scope_fields, options, min_len, layout })
    }
}
