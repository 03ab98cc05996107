//! Decoding the records of one NetFlow v9 / IPFIX data set with its
//! compiled template: each field's bytes go to their `Slot` (`apply`);
//! values that are not flow fields but decide some (sampler id, uptime-relative
//! times, reverse counters) collect in a `RecordExtra`; `SetOutput` completes
//! each record (sampling rate, times, EType) and hands it to the sink.

use super::state::{KeyHashMap, SamplerKey};
use super::template::{decode_by_layout, Layout, Slot, Template, TemplateKey, VARIABLE_LENGTH};
use super::{
    be_uint, Decapsulation, DecodeCounters, DecodeError, ListenerOptions, Reason, TimestampSource, FORWARDING_DROPPED,
};
use crate::flow::{addr_from_v4, Addr, Field, FlowRecord};

/// Seconds between the NTP era (1900) and the Unix epoch.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// What a data set needs from its datagram's header to decode times, and
/// the listener's options.
#[derive(Clone, Copy, Debug)]
pub struct RecordContext {
    pub exporter: Addr,
    pub domain: u32,
    /// Kernel receive time (the pending queue's ages count from it).
    pub received_ns: u64,
    /// Export time, seconds since the Unix epoch.
    pub export_time_s: u32,
    /// NetFlow v9 header sysUpTime (ms), the base of FIRST/LAST_SWITCHED.
    pub sys_uptime_ms: Option<u32>,
    pub options: ListenerOptions,
    /// TimeReceived before a record's own start time is looked at: the
    /// kernel's, or the export time (`new` decides once per datagram).
    time_received_ns: u64,
}

impl RecordContext {
    pub fn new(
        exporter: Addr,
        domain: u32,
        received_ns: u64,
        export_time_s: u32,
        sys_uptime_ms: Option<u32>,
        options: ListenerOptions,
    ) -> RecordContext {
        let time_received_ns = match options.timestamp_source {
            TimestampSource::Export => export_time_s as u64 * 1_000_000_000,
            TimestampSource::Kernel | TimestampSource::FlowStart => received_ns,
        };
        RecordContext { exporter, domain, received_ns, export_time_s, sys_uptime_ms, options, time_received_ns }
    }
}

macro_rules! record_extra {
    ($( $bit:literal: $field:ident: $ty:ty, $setter:ident; )*) => {
        /// Per-record values that are not flow fields but decide some. Plain
        /// values and a presence mask: resetting it per record is one store.
        #[derive(Clone, Copy, Default)]
        pub(super) struct RecordExtra {
            present: u32,
            $($field: $ty,)*
        }

        impl RecordExtra {
            $(
                #[inline(always)]
                pub(super) fn $setter(&mut self, v: $ty) {
                    self.$field = v;
                    self.present |= 1 << $bit;
                }

                #[inline(always)]
                pub(super) fn $field(&self) -> Option<$ty> {
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
    18: mpls_bottom: u8, set_mpls_bottom;
    19: frame_l3_bytes: u32, set_frame_l3_bytes;
    20: dot1q_vlan: u16, set_dot1q_vlan;
    21: dot1q_customer_vlan: u16, set_dot1q_customer_vlan;
    22: not_encapsulated: bool, set_not_encapsulated;
}

/// Bits of `RecordExtra` that carry sampling information.
const EXTRA_SAMPLING_BITS: u32 = 0b11_1110;
/// Bits that `finish_record` must look at beyond sampling.
const EXTRA_FINISH_BITS: u32 = 0b11_1000_0011_1111_1100_0000;
/// Bits of the RFC 5103 reverse direction.
const EXTRA_REVERSE_BITS: u32 = 0b1100_0000_0000_0000;

impl RecordExtra {
    #[inline(always)]
    fn reset(&mut self) {
        self.present = 0;
    }

    pub(super) fn sampling_rate(&self) -> Option<u64> {
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
pub(super) fn apply(slot: Slot, b: &[u8], f: &mut FlowRecord, ctx: &RecordContext, x: &mut RecordExtra) {
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
        // An all-zero address (the unused family of a template that names
        // both) never overwrites one the record carries (`kept_address`).
        Slot::SrcAddr => kept_address(f, Field::SrcAddr, b).into_iter().for_each(|a| f.set_src_addr(a)),
        Slot::DstAddr => kept_address(f, Field::DstAddr, b).into_iter().for_each(|a| f.set_dst_addr(a)),
        Slot::SrcMask => f.set_src_net_mask(v() as u8),
        Slot::DstMask => f.set_dst_net_mask(v() as u8),
        Slot::InIf => f.set_in_if_index(v() as u32),
        Slot::OutIf => f.set_out_if_index(v() as u32),
        Slot::InPhysIf => f.set_in_if_physical_index(v() as u32),
        Slot::OutPhysIf => f.set_out_if_physical_index(v() as u32),
        Slot::NextHop => kept_address(f, Field::NextHop, b).into_iter().for_each(|a| f.set_next_hop(a)),
        Slot::BgpNextHop => kept_address(f, Field::BGPNextHop, b).into_iter().for_each(|a| f.set_bgp_next_hop(a)),
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
        Slot::Dot1qVlan => x.set_dot1q_vlan(v() as u16 & 0x0fff),
        Slot::Dot1qCustomerVlan => x.set_dot1q_customer_vlan(v() as u16 & 0x0fff),
        Slot::IpVersion => match v() {
            4 => f.set_etype(0x0800),
            6 => f.set_etype(0x86dd),
            _ => {}
        },
        Slot::EtherType => f.set_etype(v() as u16),
        Slot::Direction => f.set_flow_direction(v() as u8),
        Slot::ForwardingStatus => f.set_forwarding_status(forwarding_status(b)),
        // A forwarding exception: the packet was dropped (the record stays).
        Slot::JuniperException if v() != 0 => f.set_forwarding_status(FORWARDING_DROPPED),
        Slot::JuniperException => {}
        Slot::DataLinkFrame => data_link_frame(b, f, x, ctx.options.decapsulation),
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
            // RFC 7011 IE 70: label (20 bits), traffic class (3), bottom of
            // stack (1). Positions after the bottom, and all-zero ones, are
            // not labels.
            let (entry, position) = (v(), slot as usize - Slot::Mpls0 as usize);
            if entry != 0 && x.mpls_bottom().is_none() {
                f.set_mpls_label(f.mpls_labels().len(), (entry >> 4) as u32 & 0xf_ffff);
                if entry & 1 != 0 {
                    x.set_mpls_bottom(position as u8);
                }
            }
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

/// The address in `b` for `field`, unless the record carries one already
/// and `b` is all zero.
#[inline(always)]
fn kept_address(f: &FlowRecord, field: Field, b: &[u8]) -> Option<Addr> {
    address(b).filter(|_| !f.has(field) || b.iter().any(|&byte| byte != 0))
}

/// RFC 7133 dataLinkFrameSection (v9: layer2packetSectionData): the start of
/// a sampled frame. Its fields fill what the record does not carry itself;
/// its IP length becomes Bytes when the record has no counters
/// (`finish_extras`).
/// With a tunnel to take apart (`decap`), the inner packet's fields win
/// over the record's, and a frame not in such a tunnel drops the record.
#[inline(never)]
fn data_link_frame(b: &[u8], f: &mut FlowRecord, x: &mut RecordExtra, decap: Decapsulation) {
    let mut frame = FlowRecord::default();
    let Some(parsed) = super::packet::parse_sampled(b, super::packet::Start::Ethernet, decap, &mut frame) else {
        x.set_not_encapsulated(true);
        return;
    };
    if decap != Decapsulation::None {
        frame.fill_absent_from(f);
        *f = frame;
    } else {
        f.fill_absent_from(&frame);
    }
    x.set_frame_l3_bytes(parsed.l3_bytes.unwrap_or(0));
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

/// Where the records of one data set go: flows to the sink (with their
/// sampling rate and times completed), options records to the state.
pub(super) struct SetOutput<'a, F> {
    pub(super) key: TemplateKey,
    pub(super) ctx: &'a RecordContext,
    pub(super) options: bool,
    pub(super) system_init: Option<u64>,
    pub(super) default_rate: Option<u64>,
    pub(super) samplers: &'a KeyHashMap<SamplerKey, u64>,
    /// Records of a set almost always name the same sampler: look it up once.
    pub(super) sampler_cache: Option<(u64, Option<u64>)>,
    pub(super) options_records: &'a mut Vec<RecordExtra>,
    pub(super) counters: &'a mut DecodeCounters,
    pub(super) sink: &'a mut F,
}

impl<F: FnMut(&FlowRecord)> SetOutput<'_, F> {
    #[inline]
    fn emit(&mut self, flow: &mut FlowRecord, x: &RecordExtra) {
        if self.options {
            self.options_records.push(*x);
            return;
        }
        if x.not_encapsulated().is_some() {
            self.counters.error(DecodeError::new(Reason::NotEncapsulated, "sampled frame"));
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
pub(super) fn decode_fixed<F: FnMut(&FlowRecord)>(
    layout: &Layout,
    record_len: usize,
    body: &[u8],
    ctx: &RecordContext,
    flow: &mut FlowRecord,
    out: &mut SetOutput<F>,
) {
    let mut x = RecordExtra::default();
    // `compile` refuses zero-length fields, so `record_len` is at least 1.
    for record in body.chunks_exact(record_len) {
        x.reset();
        flow.clear();
        decode_by_layout(layout, record, flow, ctx, &mut x);
        for &(at, len, slot) in &layout.rare {
            if let Some(b) = record.get(at as usize..at as usize + len as usize) {
                apply(slot, b, flow, ctx, &mut x);
            }
        }
        out.emit(flow, &x);
    }
}

/// Records with variable-length fields, one after the other.
pub(super) fn decode_variable<F: FnMut(&FlowRecord)>(
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
        // Only templates with a variable-length field come here (no layout).
        let len = if field.len == VARIABLE_LENGTH { variable_length(rec, &mut at)? } else { field.len as usize };
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
    f.set_time_received_ns(ctx.time_received_ns);
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
    if ctx.options.timestamp_source == TimestampSource::FlowStart && f.has(Field::FlowStart) {
        f.set_time_received_ns(f.flow_start_ns);
    }
    if f.has_any(&[Field::InIfPhysicalIndex, Field::OutIfPhysicalIndex]) {
        interfaces_from_physical(f);
    }
    // Most exporters send ICMP's type and code in the destination port.
    if matches!(f.proto, 1 | 58) && f.has(Field::Proto) && f.has(Field::DstPort) {
        f.icmp_from_dst_port();
    }
}

fn interfaces_from_physical(f: &mut FlowRecord) {
    if f.has(Field::InIfPhysicalIndex) && !f.has(Field::InIfIndex) {
        f.set_in_if_index(f.in_if_physical_index);
    }
    if f.has(Field::OutIfPhysicalIndex) && !f.has(Field::OutIfIndex) {
        f.set_out_if_index(f.out_if_physical_index);
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
    if let (Some(v), false) = (x.dot1q_vlan().or(x.dot1q_customer_vlan()), f.has(Field::SrcVlan)) {
        f.set_src_vlan(v);
    }
    // A sampled frame: one packet of its IP length, unless counted.
    if let Some(l3) = x.frame_l3_bytes() {
        if l3 > 0 && !f.has(Field::Bytes) {
            f.set_bytes(l3 as u64);
        }
        if !f.has(Field::Packets) {
            f.set_packets(1);
        }
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
