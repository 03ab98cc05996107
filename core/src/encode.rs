//! Builds datagrams of every format from flow records: the inverse of
//! `wire`. Tests use it to craft every decoder path, the property tests to
//! check that decoding gives back what was encoded, and the perf flow
//! generator to send realistic load.
//!
//! NetFlow v9 and IPFIX go through `MessageBuilder`: open a message, add
//! template, options template and data records (sets open and close by
//! themselves), then `finish` patches the lengths and the record count.

use crate::flow::{addr_as_v4, Addr, Field, FlowRecord};
use crate::wire::template::{FieldSpec, Protocol, REVERSE_PEN, VARIABLE_LENGTH};

/// Header values of one export datagram.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExportHeader {
    /// Seconds since the epoch (v9 unix_secs, IPFIX export time).
    pub export_time_s: u32,
    /// v5/v9 sysUpTime in ms; FIRST/LAST_SWITCHED are relative to it.
    pub sys_uptime_ms: u32,
    pub sequence: u32,
    /// v9 source id, IPFIX observation domain.
    pub domain: u32,
}

impl ExportHeader {
    /// Boot time in ms since the epoch, as the decoder derives it.
    fn boot_ms(&self) -> i64 {
        self.export_time_s as i64 * 1000 - self.sys_uptime_ms as i64
    }

    /// A time (ns since the epoch) as sysUpTime ms (FIRST/LAST_SWITCHED),
    /// 0 when it falls before boot.
    fn uptime_ms(&self, ns: u64) -> u64 {
        (ns as i64 / 1_000_000 - self.boot_ms()).max(0) as u64
    }
}

/// A template as the encoder writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateSpec {
    pub id: u16,
    pub fields: Vec<FieldSpec>,
}

const fn spec(id: u16, len: u16) -> FieldSpec {
    FieldSpec { id, pen: 0, len }
}

impl TemplateSpec {
    /// A broad IPv4 template (most fields Weir decodes, absolute ms times).
    pub fn standard_ipv4(id: u16) -> Self {
        let mut fields = vec![spec(8, 4), spec(12, 4), spec(15, 4), spec(18, 4), spec(225, 4), spec(226, 4)];
        fields.extend([spec(176, 1), spec(177, 1)]);
        fields.extend(Self::common());
        TemplateSpec { id, fields }
    }

    /// A broad IPv6 template.
    pub fn standard_ipv6(id: u16) -> Self {
        let mut fields = vec![spec(27, 16), spec(28, 16), spec(62, 16), spec(63, 16), spec(281, 16), spec(282, 16)];
        fields.extend([spec(31, 4), spec(178, 1), spec(179, 1)]);
        fields.extend(Self::common());
        TemplateSpec { id, fields }
    }

    /// What a small router sends: the usual 5-tuple, counters and times.
    pub fn compact_ipv4(id: u16) -> Self {
        let ids = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (5, 1), (1, 4), (2, 4), (10, 4), (14, 4)];
        let mut fields: Vec<FieldSpec> = ids.iter().map(|&(i, l)| spec(i, l)).collect();
        fields.extend([spec(16, 4), spec(17, 4), spec(9, 1), spec(13, 1), spec(152, 8), spec(153, 8)]);
        TemplateSpec { id, fields }
    }

    fn common() -> Vec<FieldSpec> {
        let ids: [(u16, u16); 32] = [
            (7, 2),
            (11, 2),
            (4, 1),
            (5, 1),
            (6, 2),
            (1, 8),
            (2, 8),
            (10, 4),
            (14, 4),
            (252, 4),
            (253, 4),
            (9, 1),
            (13, 1),
            (16, 4),
            (17, 4),
            (152, 8),
            (153, 8),
            (61, 1),
            (89, 1),
            (192, 1),
            (58, 2),
            (59, 2),
            (56, 6),
            (80, 6),
            (54, 4),
            (88, 2),
            (234, 4),
            (235, 4),
            (227, 2),
            (228, 2),
            (70, 3),
            (71, 3),
        ];
        ids.iter().map(|&(i, l)| spec(i, l)).collect()
    }

    /// The flow fields this template carries (what survives a round trip).
    pub fn carried_fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        for f in &self.fields {
            let field = match (f.pen, f.id) {
                (0, 8 | 27) => Field::SrcAddr,
                (0, 12 | 28) => Field::DstAddr,
                (0, 15 | 62) => Field::NextHop,
                (0, 18 | 63) => Field::BGPNextHop,
                (0, 225 | 281) => Field::SrcAddrNAT,
                (0, 226 | 282) => Field::DstAddrNAT,
                (0, 7) => Field::SrcPort,
                (0, 11) => Field::DstPort,
                (0, 4) => Field::Proto,
                (0, 5) => Field::IPTos,
                (0, 6) => Field::TCPFlags,
                (0, 1) => Field::Bytes,
                (0, 2) => Field::Packets,
                (0, 10) => Field::InIfIndex,
                (0, 14) => Field::OutIfIndex,
                (0, 252) => Field::InIfPhysicalIndex,
                (0, 253) => Field::OutIfPhysicalIndex,
                (0, 9 | 29) => Field::SrcNetMask,
                (0, 13 | 30) => Field::DstNetMask,
                (0, 16) => Field::SrcAS,
                (0, 17) => Field::DstAS,
                (0, 150 | 152 | 154 | 156 | 22) => Field::FlowStart,
                (0, 151 | 153 | 155 | 157 | 21) => Field::FlowEnd,
                (0, 61) => Field::FlowDirection,
                (0, 89) => Field::ForwardingStatus,
                (0, 192) => Field::IPTTL,
                (0, 58) => Field::SrcVlan,
                (0, 59) => Field::DstVlan,
                (0, 56) => Field::SrcMAC,
                (0, 80) => Field::DstMAC,
                (0, 54) => Field::IPFragmentID,
                (0, 88) => Field::IPFragmentOffset,
                (0, 234) => Field::IngressVRFID,
                (0, 235) => Field::EgressVRFID,
                (0, 227) => Field::SrcPortNAT,
                (0, 228) => Field::DstPortNAT,
                (0, 70..=79) => Field::MPLSLabels,
                (0, 31) => Field::IPv6FlowLabel,
                (0, 176) => Field::ICMPv4Type,
                (0, 177) => Field::ICMPv4Code,
                (0, 178) => Field::ICMPv6Type,
                (0, 179) => Field::ICMPv6Code,
                _ => continue,
            };
            out.push(field);
        }
        out
    }
}

fn put_uint(out: &mut Vec<u8>, v: u64, len: usize) {
    let bytes = v.to_be_bytes();
    if len <= 8 {
        out.extend_from_slice(&bytes[8 - len..]);
    } else {
        out.resize(out.len() + len - 8, 0);
        out.extend_from_slice(&bytes);
    }
}

fn put_addr(out: &mut Vec<u8>, a: &Addr, len: usize) {
    match (len, addr_as_v4(a)) {
        (4, Some(v4)) => out.extend_from_slice(&v4),
        (16, _) => out.extend_from_slice(a),
        _ => out.resize(out.len() + len, 0),
    }
}

/// Seconds since 1900 (NTP era) of the Unix epoch.
const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

fn ntp(ns: u64) -> u64 {
    let secs = ns / 1_000_000_000 + NTP_UNIX_OFFSET_S;
    // Round up so that the decoder's floor gives back the same nanosecond.
    let frac = ((ns % 1_000_000_000) << 32).div_ceil(1_000_000_000);
    secs << 32 | frac
}

/// Writes one element of `flow` (the inverse of the decoder's slots).
fn put_element(out: &mut Vec<u8>, f: &FieldSpec, flow: &FlowRecord, h: &ExportHeader, sampler_id: u64) {
    if f.len == VARIABLE_LENGTH {
        // An empty variable-length value (RFC 7011 §7).
        out.push(0);
        return;
    }
    let len = f.len as usize;
    let v: u64 = match (f.pen, f.id) {
        (0, 8 | 27) => return put_addr(out, &flow.src_addr, len),
        (0, 12 | 28) => return put_addr(out, &flow.dst_addr, len),
        (0, 15 | 62) => return put_addr(out, &flow.next_hop, len),
        (0, 18 | 63) => return put_addr(out, &flow.bgp_next_hop, len),
        (0, 225 | 281) => return put_addr(out, &flow.src_addr_nat, len),
        (0, 226 | 282) => return put_addr(out, &flow.dst_addr_nat, len),
        (0, 56 | 81) if len == 6 => return out.extend_from_slice(&flow.src_mac),
        (0, 80 | 57) if len == 6 => return out.extend_from_slice(&flow.dst_mac),
        (0, 7) => flow.src_port as u64,
        (0, 11) => flow.dst_port as u64,
        (0, 4) => flow.proto as u64,
        (0, 5) => flow.ip_tos as u64,
        (0, 6) => flow.tcp_flags as u64,
        (0, 1 | 85) => flow.bytes,
        (0, 2 | 86) => flow.packets,
        (0, 10) => flow.in_if_index as u64,
        (0, 14) => flow.out_if_index as u64,
        (0, 252) => flow.in_if_physical_index as u64,
        (0, 253) => flow.out_if_physical_index as u64,
        (0, 9 | 29) => flow.src_net_mask as u64,
        (0, 13 | 30) => flow.dst_net_mask as u64,
        (0, 16) => flow.src_as as u64,
        (0, 17) => flow.dst_as as u64,
        (0, 22) => h.uptime_ms(flow.flow_start_ns),
        (0, 21) => h.uptime_ms(flow.flow_end_ns),
        (0, 150) => flow.flow_start_ns / 1_000_000_000,
        (0, 151) => flow.flow_end_ns / 1_000_000_000,
        (0, 152) => flow.flow_start_ns / 1_000_000,
        (0, 153) => flow.flow_end_ns / 1_000_000,
        (0, 156) => ntp(flow.flow_start_ns),
        (0, 157) => ntp(flow.flow_end_ns),
        (0, 61) => flow.flow_direction as u64,
        (0, 89) => flow.forwarding_status as u64,
        (0, 192) => flow.ip_ttl as u64,
        (0, 58 | 243) => flow.src_vlan as u64,
        (0, 59 | 254) => flow.dst_vlan as u64,
        (0, 54) => flow.ip_fragment_id as u64,
        (0, 88) => flow.ip_fragment_offset as u64,
        (0, 234) => flow.ingress_vrf_id as u64,
        (0, 235) => flow.egress_vrf_id as u64,
        (0, 227) => flow.src_port_nat as u64,
        (0, 228) => flow.dst_port_nat as u64,
        (0, id @ 70..=79) => {
            let labels = flow.mpls_labels();
            let i = (id - 70) as usize;
            let bottom = (i + 1 == labels.len()) as u64;
            labels.get(i).map_or(0, |&l| (l as u64) << 4 | bottom)
        }
        (0, 31) => flow.ipv6_flow_label as u64,
        (0, 176) => flow.icmpv4_type as u64,
        (0, 177) => flow.icmpv4_code as u64,
        (0, 178) => flow.icmpv6_type as u64,
        (0, 179) => flow.icmpv6_code as u64,
        (0, 32) => (flow.icmpv4_type as u64) << 8 | flow.icmpv4_code as u64,
        (0, 60) => match flow.etype {
            0x86dd => 6,
            _ => 4,
        },
        (0, 256) => flow.etype as u64,
        (0, 48 | 302) => sampler_id,
        (REVERSE_PEN, _) => 0,
        _ => 0,
    };
    put_uint(out, v, len);
}

/// Builds one NetFlow v9 or IPFIX datagram.
pub struct MessageBuilder {
    protocol: Protocol,
    header: ExportHeader,
    buf: Vec<u8>,
    /// Start of the open set and its id.
    open_set: Option<(usize, u16)>,
    records: u16,
    /// Written for samplerId / selectorId elements (48, 302) of data records.
    sampler_id: u64,
}

impl MessageBuilder {
    /// Starts a message; `buf` is reused (cleared) so callers can recycle it.
    pub fn new(protocol: Protocol, header: ExportHeader, mut buf: Vec<u8>) -> Self {
        buf.clear();
        match protocol {
            Protocol::NetflowV9 => {
                put_uint(&mut buf, 9, 2);
                put_uint(&mut buf, 0, 2); // count, patched by finish
                put_uint(&mut buf, header.sys_uptime_ms as u64, 4);
                put_uint(&mut buf, header.export_time_s as u64, 4);
                put_uint(&mut buf, header.sequence as u64, 4);
                put_uint(&mut buf, header.domain as u64, 4);
            }
            Protocol::Ipfix => {
                put_uint(&mut buf, 10, 2);
                put_uint(&mut buf, 0, 2); // length, patched by finish
                put_uint(&mut buf, header.export_time_s as u64, 4);
                put_uint(&mut buf, header.sequence as u64, 4);
                put_uint(&mut buf, header.domain as u64, 4);
            }
        }
        MessageBuilder { protocol, header, buf, open_set: None, records: 0, sampler_id: 0 }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// The sampler id following data records carry (IEs 48 and 302).
    pub fn set_sampler_id(&mut self, sampler_id: u64) {
        self.sampler_id = sampler_id;
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    fn set(&mut self, id: u16) {
        if matches!(self.open_set, Some((_, open)) if open == id) {
            return;
        }
        self.close_set();
        self.open_set = Some((self.buf.len(), id));
        put_uint(&mut self.buf, id as u64, 2);
        put_uint(&mut self.buf, 0, 2);
    }

    fn close_set(&mut self) {
        if let Some((start, _)) = self.open_set.take() {
            // RFC 3954 §5.3 asks v9 sets to pad to 4 bytes. IPFIX padding is
            // optional and must be shorter than any record (RFC 7011 §3.3.1),
            // which a 4-byte alignment cannot promise: no padding there.
            while self.protocol == Protocol::NetflowV9 && !(self.buf.len() - start).is_multiple_of(4) {
                self.buf.push(0);
            }
            let len = (self.buf.len() - start) as u16;
            self.buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    fn put_specs(&mut self, fields: &[FieldSpec]) {
        for f in fields {
            let enterprise = f.pen != 0 && self.protocol == Protocol::Ipfix;
            put_uint(&mut self.buf, (f.id | if enterprise { 0x8000 } else { 0 }) as u64, 2);
            put_uint(&mut self.buf, f.len as u64, 2);
            if enterprise {
                put_uint(&mut self.buf, f.pen as u64, 4);
            }
        }
    }

    pub fn template(&mut self, t: &TemplateSpec) {
        self.set(match self.protocol {
            Protocol::NetflowV9 => 0,
            Protocol::Ipfix => 2,
        });
        put_uint(&mut self.buf, t.id as u64, 2);
        put_uint(&mut self.buf, t.fields.len() as u64, 2);
        self.put_specs(&t.fields);
        self.records += 1;
    }

    /// An IPFIX template withdrawal (RFC 7011 §8.1): a record with no fields.
    pub fn withdraw(&mut self, template_id: u16, options: bool) {
        self.set(if options { 3 } else { 2 });
        put_uint(&mut self.buf, template_id as u64, 2);
        put_uint(&mut self.buf, 0, 2);
        self.records += 1;
    }

    /// An options template: `scope` fields then `options` fields.
    pub fn options_template(&mut self, id: u16, scope: &[FieldSpec], options: &[FieldSpec]) {
        match self.protocol {
            Protocol::NetflowV9 => {
                self.set(1);
                put_uint(&mut self.buf, id as u64, 2);
                put_uint(&mut self.buf, scope.len() as u64 * 4, 2);
                put_uint(&mut self.buf, options.len() as u64 * 4, 2);
            }
            Protocol::Ipfix => {
                self.set(3);
                put_uint(&mut self.buf, id as u64, 2);
                put_uint(&mut self.buf, (scope.len() + options.len()) as u64, 2);
                put_uint(&mut self.buf, scope.len() as u64, 2);
            }
        }
        self.put_specs(scope);
        self.put_specs(options);
        self.records += 1;
    }

    /// One data record of template `t` built from `flow`.
    pub fn data(&mut self, t: &TemplateSpec, flow: &FlowRecord) {
        self.set(t.id);
        for f in &t.fields {
            put_element(&mut self.buf, f, flow, &self.header, self.sampler_id);
        }
        self.records += 1;
    }

    /// One record of raw values, one per field (options data, odd lengths).
    pub fn raw_record(&mut self, template_id: u16, fields: &[FieldSpec], values: &[u64]) {
        self.set(template_id);
        for (f, v) in fields.iter().zip(values) {
            put_uint(&mut self.buf, *v, f.len as usize);
        }
        self.records += 1;
    }

    /// Raw bytes inside the open set (variable-length fields, odd records).
    pub fn raw_bytes(&mut self, template_id: u16, bytes: &[u8]) {
        self.set(template_id);
        self.buf.extend_from_slice(bytes);
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.close_set();
        match self.protocol {
            Protocol::NetflowV9 => self.buf[2..4].copy_from_slice(&self.records.to_be_bytes()),
            Protocol::Ipfix => {
                let len = self.buf.len() as u16;
                self.buf[2..4].copy_from_slice(&len.to_be_bytes());
            }
        }
        self.buf
    }
}

/// A NetFlow v5 datagram (at most 30 flows; IPv4 fields only).
pub fn netflow_v5(h: &ExportHeader, engine: (u8, u8), sampling_interval: u16, flows: &[FlowRecord], out: &mut Vec<u8>) {
    let flows = &flows[..flows.len().min(crate::wire::netflow_v5::RECORDS_MAX)];
    put_uint(out, 5, 2);
    put_uint(out, flows.len() as u64, 2);
    put_uint(out, h.sys_uptime_ms as u64, 4);
    put_uint(out, h.export_time_s as u64, 4);
    put_uint(out, 0, 4);
    put_uint(out, h.sequence as u64, 4);
    out.extend_from_slice(&[engine.0, engine.1]);
    put_uint(out, (sampling_interval & 0x3fff) as u64, 2);
    for f in flows {
        put_addr(out, &f.src_addr, 4);
        put_addr(out, &f.dst_addr, 4);
        put_addr(out, &f.next_hop, 4);
        put_uint(out, f.in_if_index as u64, 2);
        put_uint(out, f.out_if_index as u64, 2);
        put_uint(out, f.packets, 4);
        put_uint(out, f.bytes, 4);
        put_uint(out, h.uptime_ms(f.flow_start_ns), 4);
        put_uint(out, h.uptime_ms(f.flow_end_ns), 4);
        put_uint(out, f.src_port as u64, 2);
        put_uint(out, f.dst_port as u64, 2);
        out.extend_from_slice(&[0, f.tcp_flags as u8, f.proto, f.ip_tos]);
        put_uint(out, f.src_as as u64, 2);
        put_uint(out, f.dst_as as u64, 2);
        out.extend_from_slice(&[f.src_net_mask, f.dst_net_mask, 0, 0]);
    }
}

/// sFlow v5 datagram header values.
#[derive(Clone, Copy, Debug)]
pub struct SflowAgent {
    pub address: Addr,
    pub sub_agent_id: u32,
    pub sequence: u32,
    pub uptime_ms: u32,
}

/// What one sFlow flow sample carries besides the flow.
#[derive(Clone, Copy, Debug, Default)]
pub struct SflowSampleOptions {
    /// Use the expanded flow sample (format 3) rather than the compact one.
    pub expanded: bool,
    /// Add extended switch (VLANs), router (next hop, masks) and gateway
    /// (BGP next hop, AS path, communities) records.
    pub extended: bool,
}

fn put_sflow_addr(out: &mut Vec<u8>, a: &Addr) {
    match addr_as_v4(a) {
        Some(v4) => {
            put_uint(out, 1, 4);
            out.extend_from_slice(&v4);
        }
        None => {
            put_uint(out, 2, 4);
            out.extend_from_slice(a);
        }
    }
}

/// An sFlow v5 datagram with one flow sample per flow: a sampled header
/// record (Ethernet, VLAN tag, IPv4/IPv6, TCP/UDP/ICMP built from the flow),
/// and with `extended`, switch, router and gateway records.
pub fn sflow_v5(agent: &SflowAgent, opts: SflowSampleOptions, flows: &[FlowRecord], out: &mut Vec<u8>) {
    let mut builder = SflowBuilder::new(agent, opts, std::mem::take(out));
    for f in flows {
        builder.push(f, usize::MAX);
    }
    *out = builder.finish();
}

/// Builds one sFlow v5 datagram a flow sample at a time, so that a generator
/// can fill a datagram up to a size without encoding it again per sample.
pub struct SflowBuilder {
    buf: Vec<u8>,
    /// Where the sample count sits; `finish` writes it.
    count_at: usize,
    samples: u32,
    sequence: u32,
    opts: SflowSampleOptions,
    sample: Vec<u8>,
}

impl SflowBuilder {
    /// Appends the datagram header to `buf`.
    pub fn new(agent: &SflowAgent, opts: SflowSampleOptions, mut buf: Vec<u8>) -> Self {
        put_uint(&mut buf, 5, 4);
        put_sflow_addr(&mut buf, &agent.address);
        put_uint(&mut buf, agent.sub_agent_id as u64, 4);
        put_uint(&mut buf, agent.sequence as u64, 4);
        put_uint(&mut buf, agent.uptime_ms as u64, 4);
        let count_at = buf.len();
        put_uint(&mut buf, 0, 4);
        SflowBuilder { buf, count_at, samples: 0, sequence: agent.sequence, opts, sample: Vec::with_capacity(256) }
    }

    /// Adds a flow sample for `f` when the datagram stays within
    /// `bytes_max`; returns whether it did.
    pub fn push(&mut self, f: &FlowRecord, bytes_max: usize) -> bool {
        self.sample.clear();
        sflow_flow_sample(self.sequence.wrapping_add(self.samples), self.opts, f, &mut self.sample);
        if self.buf.len() + 8 + self.sample.len() > bytes_max {
            return false;
        }
        put_uint(&mut self.buf, if self.opts.expanded { 3 } else { 1 }, 4);
        put_uint(&mut self.buf, self.sample.len() as u64, 4);
        self.buf.extend_from_slice(&self.sample);
        self.samples += 1;
        true
    }

    pub fn samples(&self) -> u32 {
        self.samples
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf[self.count_at..self.count_at + 4].copy_from_slice(&self.samples.to_be_bytes());
        self.buf
    }
}

fn sflow_flow_sample(sequence: u32, opts: SflowSampleOptions, f: &FlowRecord, out: &mut Vec<u8>) {
    put_uint(out, sequence as u64, 4);
    if opts.expanded {
        put_uint(out, 0, 4);
        put_uint(out, f.in_if_index as u64, 4);
    } else {
        put_uint(out, (f.in_if_index & 0x00ff_ffff) as u64, 4);
    }
    put_uint(out, f.sampling_rate, 4);
    put_uint(out, 0, 4); // sample pool
    put_uint(out, 0, 4); // drops
    if opts.expanded {
        for v in [0, f.in_if_index, 0, f.out_if_index] {
            put_uint(out, v as u64, 4);
        }
    } else {
        put_uint(out, (f.in_if_index & 0x3fff_ffff) as u64, 4);
        put_uint(out, (f.out_if_index & 0x3fff_ffff) as u64, 4);
    }
    put_uint(out, if opts.extended { 4 } else { 1 }, 4);
    let mut header = Vec::with_capacity(128);
    sampled_packet(f, &mut header);
    put_uint(out, 1, 4); // sampled header
    put_uint(out, 16 + header.len().next_multiple_of(4) as u64, 4);
    put_uint(out, 1, 4); // Ethernet
                         // The frame: the IP bytes, the Ethernet header (and tag), the FCS.
    let l2 = if f.has(Field::SrcVlan) { 22 } else { 18 };
    put_uint(out, f.bytes + l2, 4);
    put_uint(out, 0, 4);
    put_uint(out, header.len() as u64, 4);
    out.extend_from_slice(&header);
    out.resize(out.len() + header.len().next_multiple_of(4) - header.len(), 0);
    if opts.extended {
        sflow_extended(f, out);
    }
}

fn sflow_extended(f: &FlowRecord, out: &mut Vec<u8>) {
    put_uint(out, 1001, 4);
    put_uint(out, 16, 4);
    for v in [f.src_vlan as u64, 0, f.dst_vlan as u64, 0] {
        put_uint(out, v, 4);
    }
    let mut router = Vec::new();
    put_sflow_addr(&mut router, &f.next_hop);
    put_uint(&mut router, f.src_net_mask as u64, 4);
    put_uint(&mut router, f.dst_net_mask as u64, 4);
    put_uint(out, 1002, 4);
    put_uint(out, router.len() as u64, 4);
    out.extend_from_slice(&router);
    let mut gw = Vec::new();
    put_sflow_addr(&mut gw, &f.bgp_next_hop);
    put_uint(&mut gw, f.dst_as as u64, 4); // the router's own AS when the path is empty
    put_uint(&mut gw, f.src_as as u64, 4);
    put_uint(&mut gw, 0, 4); // source peer AS
    let path = f.dst_as_path();
    put_uint(&mut gw, if path.is_empty() { 0 } else { 1 }, 4);
    if !path.is_empty() {
        put_uint(&mut gw, 2, 4); // AS_SEQUENCE
        put_uint(&mut gw, path.len() as u64, 4);
        path.iter().for_each(|&a| put_uint(&mut gw, a as u64, 4));
    }
    let communities = f.dst_communities();
    put_uint(&mut gw, communities.len() as u64, 4);
    communities.iter().for_each(|&c| put_uint(&mut gw, c as u64, 4));
    put_uint(&mut gw, 100, 4); // local preference
    put_uint(out, 1003, 4);
    put_uint(out, gw.len() as u64, 4);
    out.extend_from_slice(&gw);
}

/// Ethernet + 802.1Q + IPv4/IPv6 + TCP/UDP/ICMP headers built from `f`.
/// The IP length field says `f.bytes` (the layer-3 bytes the decoder reads
/// back), at least the headers and at most what the field holds.
pub fn sampled_packet(f: &FlowRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&f.dst_mac);
    out.extend_from_slice(&f.src_mac);
    if f.has(Field::SrcVlan) {
        put_uint(out, 0x8100, 2);
        put_uint(out, (f.src_vlan & 0x0fff) as u64, 2);
    }
    let v6 = addr_as_v4(&f.src_addr).is_none();
    let l4 = transport_header(f, v6);
    if v6 {
        put_uint(out, 0x86dd, 2);
        let first = 6u32 << 28 | (f.ip_tos as u32) << 20 | f.ipv6_flow_label & 0xf_ffff;
        put_uint(out, first as u64, 4);
        put_uint(out, f.bytes.saturating_sub(40).clamp(l4.len() as u64, 0xffff), 2);
        out.extend_from_slice(&[f.proto, f.ip_ttl]);
        out.extend_from_slice(&f.src_addr);
        out.extend_from_slice(&f.dst_addr);
    } else {
        put_uint(out, 0x0800, 2);
        out.extend_from_slice(&[0x45, f.ip_tos]);
        put_uint(out, f.bytes.clamp(20 + l4.len() as u64, 0xffff), 2);
        put_uint(out, f.ip_fragment_id as u64 & 0xffff, 2);
        put_uint(out, 0, 2);
        out.extend_from_slice(&[f.ip_ttl, f.proto, 0, 0]);
        put_addr(out, &f.src_addr, 4);
        put_addr(out, &f.dst_addr, 4);
    }
    out.extend_from_slice(&l4);
}

fn transport_header(f: &FlowRecord, v6: bool) -> Vec<u8> {
    let mut l4 = Vec::with_capacity(20);
    match f.proto {
        6 => {
            put_uint(&mut l4, f.src_port as u64, 2);
            put_uint(&mut l4, f.dst_port as u64, 2);
            put_uint(&mut l4, 0, 8);
            put_uint(&mut l4, 0x5000 | (f.tcp_flags & 0x01ff) as u64, 2);
            put_uint(&mut l4, 0, 6);
        }
        17 => {
            put_uint(&mut l4, f.src_port as u64, 2);
            put_uint(&mut l4, f.dst_port as u64, 2);
            put_uint(&mut l4, 8, 2);
            put_uint(&mut l4, 0, 2);
        }
        1 if !v6 => l4.extend_from_slice(&[f.icmpv4_type, f.icmpv4_code, 0, 0, 0, 0, 0, 0]),
        58 if v6 => l4.extend_from_slice(&[f.icmpv6_type, f.icmpv6_code, 0, 0, 0, 0, 0, 0]),
        _ => {}
    }
    l4
}
