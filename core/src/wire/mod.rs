//! Wire formats: NetFlow v5, NetFlow v9 (RFC 3954), IPFIX (RFC 7011) and
//! sFlow v5, decoded from a datagram into `FlowRecord`s handed to a sink.
//!
//! `Decoder` (in `decoder.rs`) owns the state shared between datagrams
//! (`state::DecoderState`: templates, sampling rates, the pending queue)
//! and dispatches each datagram to its format's module by the version field.
//! Every malformed input yields a `DecodeError` whose `Reason` comes from the
//! fixed set below; every error is counted in `DecodeCounters`.

pub mod ipfix;
pub mod netflow_v5;
pub mod netflow_v9;
pub mod packet;
pub mod record;
pub mod sflow;
pub mod state;
pub mod template;

use serde::{Deserialize, Serialize};

use crate::flow::Addr;

/// Why a datagram, set or record was dropped. A small fixed set so that it
/// can be a bounded metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reason {
    /// The datagram ends before a header, set or record it announces.
    Truncated,
    /// The version field names no format Weir decodes.
    BadVersion,
    /// A length field is impossible (zero, too short, past the datagram).
    BadLength,
    /// A template or options template is malformed.
    BadTemplate,
    /// Data arrived for a template that never came (after the pending queue).
    TemplateMissing,
    /// A template was refused or evicted because the exporter has too many.
    TemplateLimit,
    /// State for an exporter was refused or evicted: too many exporters.
    ExporterLimit,
    /// A well-formed structure Weir does not decode (e.g. an unknown address type).
    Unsupported,
    /// A sampled packet not in the tunnel the listener decapsulates
    /// (`decapsulation`): no flow.
    NotEncapsulated,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Truncated,
        Reason::BadVersion,
        Reason::BadLength,
        Reason::BadTemplate,
        Reason::TemplateMissing,
        Reason::TemplateLimit,
        Reason::ExporterLimit,
        Reason::Unsupported,
        Reason::NotEncapsulated,
    ];

    /// The metric label / summary key.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Truncated => "truncated",
            Reason::BadVersion => "bad_version",
            Reason::BadLength => "bad_length",
            Reason::BadTemplate => "bad_template",
            Reason::TemplateMissing => "template_missing",
            Reason::TemplateLimit => "template_limit",
            Reason::ExporterLimit => "exporter_limit",
            Reason::Unsupported => "unsupported",
            Reason::NotEncapsulated => "not_encapsulated",
        }
    }
}

/// IPFIX forwardingStatus "dropped, unknown reason" (RFC 7270 §4.12): the
/// value sFlow discards and Juniper's forwarding exceptions map to.
pub(crate) const FORWARDING_DROPPED: u8 = 128;

/// A decoding failure: its reason and a static description of where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub reason: Reason,
    pub context: &'static str,
}

impl DecodeError {
    pub const fn new(reason: Reason, context: &'static str) -> Self {
        DecodeError { reason, context }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.label(), self.context)
    }
}

impl std::error::Error for DecodeError {}

/// What a decoder counted. Written by its owner only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeCounters {
    pub datagrams: u64,
    pub flows: u64,
    /// Template and options template records accepted.
    pub templates: u64,
    /// Templates withdrawn by the exporter (IPFIX).
    pub templates_withdrawn: u64,
    /// Templates evicted to stay within `templates_per_exporter_max`.
    pub template_evictions: u64,
    /// Exporters whose state was evicted to stay within `exporters_max`.
    pub exporter_evictions: u64,
    /// Options data records read (sampling rates, system init time).
    pub options_records: u64,
    /// Data sets parked in the pending queue, waiting for their template.
    pub pending_queued: u64,
    /// Parked data sets decoded once their template came.
    pub pending_decoded: u64,
    /// Parked data sets given up on (full queue, too old, or shutdown); each
    /// is also counted as a `template_missing` error.
    pub pending_dropped: u64,
    /// sFlow counter samples (counted, not decoded).
    pub counter_samples: u64,
    /// AS paths, communities or MPLS stacks cut to their bound.
    pub lists_truncated: u64,
    /// Errors by reason, indexed by `Reason as usize`.
    pub errors: [u64; Reason::ALL.len()],
}

impl DecodeCounters {
    #[inline]
    pub fn error(&mut self, e: DecodeError) -> DecodeError {
        self.errors[e.reason as usize] += 1;
        e
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// One received datagram as the decoder sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Datagram<'a> {
    /// Source address of the datagram.
    pub exporter: Addr,
    /// Kernel receive time, nanoseconds since the Unix epoch.
    pub received_ns: u64,
    pub payload: &'a [u8],
    /// How the listener it came to reads it.
    pub options: ListenerOptions,
}

/// How one listener's datagrams are read: options of `[[listeners]]` in
/// `weir run`, flags of `weir decode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerOptions {
    pub decapsulation: Decapsulation,
    pub timestamp_source: TimestampSource,
}

/// The tunnel whose inner packet a listener reports, for sampled packets
/// (sFlow's sampled header, IPFIX's dataLinkFrameSection). A sampled packet
/// not in that tunnel gives no flow (`Reason::NotEncapsulated`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decapsulation {
    #[default]
    None,
    /// UDP to port 4789 (RFC 7348), then an Ethernet frame.
    Vxlan,
    /// IP protocol 47 (RFC 2784, 2890), then IPv4, IPv6 or Ethernet (0x6558).
    Gre,
    /// IP protocol 4 or 41: IPv4 or IPv6 in IP.
    Ipip,
    /// IPv6 with a segment routing header (RFC 8754), then IPv4, IPv6 or
    /// Ethernet (next header 4, 41, 143).
    Srv6,
}

impl Decapsulation {
    pub const ALL: [Decapsulation; 5] =
        [Decapsulation::None, Decapsulation::Vxlan, Decapsulation::Gre, Decapsulation::Ipip, Decapsulation::Srv6];

    pub fn name(self) -> &'static str {
        match self {
            Decapsulation::None => "none",
            Decapsulation::Vxlan => "vxlan",
            Decapsulation::Gre => "gre",
            Decapsulation::Ipip => "ipip",
            Decapsulation::Srv6 => "srv6",
        }
    }
}

impl std::str::FromStr for Decapsulation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Decapsulation::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("{s:?} is not one of {}", Decapsulation::ALL.map(Decapsulation::name).join(", ")))
    }
}

/// Where a flow's TimeReceived comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    /// The kernel's receive timestamp of the datagram.
    #[default]
    Kernel,
    /// The export time in the v5/v9/IPFIX header (seconds); sFlow has none
    /// and keeps the kernel's.
    Export,
    /// The flow's start time when it has one, else the kernel's.
    FlowStart,
}

impl std::str::FromStr for TimestampSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TimestampSource::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| {
            format!("{s:?} is not one of {}", TimestampSource::ALL.map(TimestampSource::name).join(", "))
        })
    }
}

impl TimestampSource {
    pub const ALL: [TimestampSource; 3] =
        [TimestampSource::Kernel, TimestampSource::Export, TimestampSource::FlowStart];

    pub fn name(self) -> &'static str {
        match self {
            TimestampSource::Kernel => "kernel",
            TimestampSource::Export => "export",
            TimestampSource::FlowStart => "flow_start",
        }
    }
}

/// Reads a big-endian unsigned integer of 1..=8 bytes (RFC 7011 §6.2
/// reduced-size encoding); longer fields keep their low 8 bytes.
#[inline(always)]
pub fn be_uint(b: &[u8]) -> u64 {
    match *b {
        [x] => return x as u64,
        [a, b] => return u16::from_be_bytes([a, b]) as u64,
        [a, b, c, d] => return u32::from_be_bytes([a, b, c, d]) as u64,
        [a, b, c, d, e, f, g, h] => return u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => {}
    }
    let b = if b.len() > 8 { &b[b.len() - 8..] } else { b };
    let mut v = 0u64;
    for &x in b {
        v = (v << 8) | x as u64;
    }
    v
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// A forward-only reader of big-endian (XDR) words, for sFlow.
pub(crate) struct Cursor<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let v = be32(self.buf, self.pos).ok_or(TRUNCATED)?;
        self.pos += 4;
        Ok(v)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(TRUNCATED)?;
        let s = self.buf.get(self.pos..end).ok_or(TRUNCATED)?;
        self.pos = end;
        Ok(s)
    }

    /// XDR opaque data is padded to a multiple of four bytes.
    pub fn opaque(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let s = self.bytes(n)?;
        let pad = (4 - n % 4) % 4;
        self.bytes(pad)?;
        Ok(s)
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

const TRUNCATED: DecodeError = DecodeError::new(Reason::Truncated, "structure past the end");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn be_uint_handles_reduced_and_long_encodings() {
        assert_eq!(be_uint(&[]), 0);
        assert_eq!(be_uint(&[1, 2]), 0x0102);
        assert_eq!(be_uint(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 9]), 9);
    }

    #[test]
    fn cursor_pads_opaque_data() {
        let b = [0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 0, 7];
        let mut c = Cursor::new(&b);
        let n = c.u32().unwrap() as usize;
        assert_eq!(c.opaque(n).unwrap(), &[1, 2, 3]);
        assert_eq!(c.u32().unwrap(), 7);
        assert_eq!(c.u32().unwrap_err().reason, Reason::Truncated);
    }
}

/// Helpers shared by the decoders' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::flow::{addr_from_v4, FlowRecord};
    use crate::{Datagram, DecodeError, Decoder, Format};

    pub const EXPORTER: [u8; 4] = [192, 0, 2, 10];
    /// 2026-01-01T00:00:00Z
    pub const NOW_S: u32 = 1_767_225_600;

    /// The flows of one datagram and the datagram-level result.
    pub struct Decoded(pub Vec<FlowRecord>, pub Result<Format, DecodeError>);

    /// Decodes one datagram from `EXPORTER` received at `NOW_S`.
    pub fn decode(dec: &mut Decoder, payload: &[u8]) -> Decoded {
        decode_at(dec, payload, NOW_S as u64 * 1_000_000_000)
    }

    pub fn decode_at(dec: &mut Decoder, payload: &[u8], received_ns: u64) -> Decoded {
        decode_from(dec, EXPORTER, received_ns, payload)
    }

    pub fn decode_from(dec: &mut Decoder, exporter: [u8; 4], received_ns: u64, payload: &[u8]) -> Decoded {
        let mut flows = Vec::new();
        let d = Datagram { exporter: addr_from_v4(exporter), received_ns, payload, ..Default::default() };
        let r = dec.decode(&d, &mut |f: &FlowRecord| flows.push(f.clone()));
        Decoded(flows, r)
    }

    /// A flow with every field an IPv4 standard template carries.
    pub fn sample_flow_v4() -> FlowRecord {
        let mut f = FlowRecord::default();
        f.set_src_addr(addr_from_v4([10, 0, 0, 1]));
        f.set_dst_addr(addr_from_v4([198, 51, 100, 7]));
        f.set_src_port(40000);
        f.set_dst_port(443);
        f.set_proto(6);
        f.set_bytes(123_456);
        f.set_packets(321);
        f.set_in_if_index(7);
        f.set_out_if_index(9);
        f.set_tcp_flags(0x1b);
        f.set_flow_start_ns(NOW_S as u64 * 1_000_000_000 - 5_000_000_000);
        f.set_flow_end_ns(NOW_S as u64 * 1_000_000_000 - 1_000_000_000);
        f
    }
}
