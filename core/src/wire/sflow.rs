//! sFlow v5 (sflow.org sflow_version_5.txt): XDR-encoded datagrams of
//! samples. Flow samples (format 1) and expanded flow samples (format 3)
//! become one flow each, built from their records: sampled header (1),
//! sampled Ethernet (2), sampled IPv4 (3) and IPv6 (4), extended switch (1001),
//! router (1002) and gateway (1003). Counter samples (2, 4) are counted and
//! skipped. ExporterAddress is the agent address; ObservationDomain is the
//! sub-agent id.
//!
//! Bytes are layer-3 bytes, as NetFlow and IPFIX count them: the sampled
//! header's IP length (IPv4 total length, IPv6 payload length + 40), the
//! sampled IPv4/IPv6 record's length, or else the frame length less the
//! Ethernet header and FCS (18 bytes). Packets is 1 per sample.

use super::packet::{parse_sampled, Start, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{Cursor, Datagram, Decapsulation, DecodeError, Reason, FORWARDING_DROPPED};
use crate::decoder::Decoder;
use crate::flow::{addr_from_v4, Addr, FlowRecord};

pub const VERSION: u32 = 5;

/// The interface value that means "the agent itself" (spec §"interface").
const INTERFACE_LOCAL: u32 = 0x3fff_ffff;
/// An Ethernet header and its FCS: a frame's length less these is the IP length.
const ETHERNET_OVERHEAD: u32 = 18;

const HEADER_PROTOCOL_ETHERNET: u32 = 1;
const HEADER_PROTOCOL_IPV4: u32 = 11;
const HEADER_PROTOCOL_IPV6: u32 = 12;

struct DatagramHeader {
    agent: Addr,
    sub_agent_id: u32,
    samples: u32,
}

pub(crate) fn decode<F: FnMut(&FlowRecord)>(dec: &mut Decoder, d: &Datagram, sink: &mut F) -> Result<(), DecodeError> {
    let mut c = Cursor::new(d.payload);
    let header = read_header(&mut c).map_err(|e| dec.counters.error(e))?;
    for _ in 0..header.samples {
        let sample = (|| -> Result<(u32, &[u8]), DecodeError> {
            let format = c.u32()?;
            let len = c.u32()? as usize;
            Ok((format, c.bytes(len)?))
        })();
        let (format, body) = sample.map_err(|e| dec.counters.error(e))?;
        let result = match (format >> 12, format & 0xfff) {
            (0, 1) => flow_sample(dec, &header, d, body, false, sink),
            (0, 3) => flow_sample(dec, &header, d, body, true, sink),
            (0, 2) | (0, 4) => {
                dec.counters.counter_samples += 1;
                Ok(())
            }
            _ => Err(DecodeError::new(Reason::Unsupported, "sFlow sample format")),
        };
        // The sample's length is known: one bad sample does not spoil the rest.
        if let Err(e) = result {
            dec.counters.error(e);
        }
    }
    Ok(())
}

fn read_header(c: &mut Cursor) -> Result<DatagramHeader, DecodeError> {
    if c.u32()? != VERSION {
        return Err(DecodeError::new(Reason::BadVersion, "sFlow version"));
    }
    let agent = read_address(c)?;
    let sub_agent_id = c.u32()?;
    let _sequence = c.u32()?;
    let _uptime_ms = c.u32()?;
    let samples = c.u32()?;
    Ok(DatagramHeader { agent, sub_agent_id, samples })
}

/// An sFlow `address`: type 1 = IPv4, 2 = IPv6.
fn read_address(c: &mut Cursor) -> Result<Addr, DecodeError> {
    match c.u32()? {
        1 => {
            let b = c.bytes(4)?;
            Ok(addr_from_v4([b[0], b[1], b[2], b[3]]))
        }
        2 => Ok(c.bytes(16)?.try_into().expect("16 bytes")),
        _ => Err(DecodeError::new(Reason::Unsupported, "sFlow address type")),
    }
}

/// One flow sample. sFlow carries no export time nor flow start: TimeReceived
/// is the kernel's whatever the listener's `timestamp_source`.
fn flow_sample<F: FnMut(&FlowRecord)>(
    dec: &mut Decoder,
    header: &DatagramHeader,
    d: &Datagram,
    body: &[u8],
    expanded: bool,
    sink: &mut F,
) -> Result<(), DecodeError> {
    let mut c = Cursor::new(body);
    let f = &mut dec.flow;
    f.clear();
    f.set_time_received_ns(d.received_ns);
    f.set_exporter_address(header.agent);
    f.set_observation_domain(header.sub_agent_id);
    let _sequence = c.u32()?;
    c.u32()?; // source id (type and index); the expanded form has two words
    if expanded {
        c.u32()?;
    }
    f.set_sampling_rate(c.u32()? as u64);
    let _sample_pool = c.u32()?;
    let _drops = c.u32()?;
    let (in_format, in_value, out_format, out_value) = if expanded {
        (c.u32()?, c.u32()?, c.u32()?, c.u32()?)
    } else {
        let (i, o) = (c.u32()?, c.u32()?);
        (i >> 30, i & 0x3fff_ffff, o >> 30, o & 0x3fff_ffff)
    };
    set_interfaces(f, in_format, in_value, out_format, out_value);
    f.set_packets(1);
    let records = c.u32()?;
    let mut truncated = false;
    let mut switch = None;
    let decap = d.options.decapsulation;
    let mut decapsulated = false;
    for _ in 0..records {
        let format = c.u32()?;
        let len = c.u32()? as usize;
        let data = c.opaque(len)?;
        match format {
            1001 => switch = Some(extended_switch(data)?),
            1 => {
                truncated |= sampled_header(f, data, decap)?;
                decapsulated = true;
            }
            _ => truncated |= flow_record(f, format, data)?,
        }
    }
    if decap != Decapsulation::None && !decapsulated {
        return Err(DecodeError::new(Reason::NotEncapsulated, "sFlow sample without a sampled header"));
    }
    // The switch's VLANs win over the tags in the sampled header (QinQ too),
    // whichever record came first.
    if let Some((src_vlan, dst_vlan)) = switch {
        f.set_src_vlan(src_vlan);
        f.set_dst_vlan(dst_vlan);
    }
    if truncated {
        dec.counters.lists_truncated += 1;
    }
    sink(f);
    dec.counters.flows += 1;
    Ok(())
}

/// Interface encoding (spec §"interface"): format 0 is an ifIndex, 1 a
/// discarded packet (value = reason), 2 several interfaces (value = count).
/// A discard's reason becomes IPFIX's dropped sub-reason where one exists.
fn set_interfaces(f: &mut FlowRecord, in_format: u32, in_value: u32, out_format: u32, out_value: u32) {
    let index = |format: u32, value: u32| match (format, value) {
        (0, INTERFACE_LOCAL) => 0,
        (0, v) => v,
        _ => 0,
    };
    f.set_in_if_index(index(in_format, in_value));
    f.set_out_if_index(index(out_format, out_value));
    if out_format == 1 {
        f.set_forwarding_status(discard_status(out_value));
    }
}

/// sFlow's discard reasons (spec §"interface": ICMP unreachable codes, then
/// 256 and up) as IPFIX forwardingStatus dropped codes (IANA registry,
/// RFC 7270 §4.12): 129 ACL deny, 131 unroutable, 133 fragmentation needed
/// and DF set, 137 bad TTL, 138 policer, 139 WRED; 128 for the rest.
fn discard_status(reason: u32) -> u8 {
    match reason {
        // Net, host, network/host unknown or unreachable for ToS.
        0 | 1 | 6 | 7 | 11 | 12 => 131,
        4 | 262 => 133,
        // Communication administratively prohibited; ACL.
        9 | 10 | 13 | 258 => 129,
        257 => 137,
        260 => 139,
        261 => 138,
        _ => FORWARDING_DROPPED,
    }
}

/// Extended switch (format 1001): source and destination VLANs.
fn extended_switch(data: &[u8]) -> Result<(u16, u16), DecodeError> {
    let mut c = Cursor::new(data);
    let src_vlan = c.u32()? as u16;
    let _src_priority = c.u32()?;
    Ok((src_vlan, c.u32()? as u16))
}

/// Sampled header (format 1); returns whether a list was cut to its bound.
/// With `decap`, the tunnel's inner packet, or `NotEncapsulated`.
fn sampled_header(f: &mut FlowRecord, data: &[u8], decap: Decapsulation) -> Result<bool, DecodeError> {
    let mut c = Cursor::new(data);
    let protocol = c.u32()?;
    let frame_length = c.u32()?;
    let _stripped = c.u32()?;
    let len = c.u32()? as usize;
    let packet = c.bytes(len)?;
    let (start, overhead) = match protocol {
        HEADER_PROTOCOL_ETHERNET => (Start::Ethernet, ETHERNET_OVERHEAD),
        HEADER_PROTOCOL_IPV4 => (Start::Ipv4, 0),
        HEADER_PROTOCOL_IPV6 => (Start::Ipv6, 0),
        _ if decap == Decapsulation::None => {
            f.set_bytes(frame_length as u64);
            return Ok(false);
        }
        _ => return Err(DecodeError::new(Reason::NotEncapsulated, "sFlow header protocol")),
    };
    let Some(parsed) = parse_sampled(packet, start, decap, f) else {
        return Err(DecodeError::new(Reason::NotEncapsulated, "sFlow sampled header"));
    };
    // The (inner) IP packet's length; the frame's less its layer 2 when the
    // header was cut before it.
    f.set_bytes(parsed.l3_bytes.unwrap_or(frame_length.saturating_sub(overhead)) as u64);
    Ok(parsed.labels_cut)
}

/// Applies one flow record; returns whether a list was cut to its bound.
fn flow_record(f: &mut FlowRecord, format: u32, data: &[u8]) -> Result<bool, DecodeError> {
    let mut c = Cursor::new(data);
    match format {
        2 => {
            let length = c.u32()?;
            let src = c.opaque(6)?;
            let dst = c.opaque(6)?;
            let etype = c.u32()?;
            if !f.has(crate::flow::Field::Bytes) {
                f.set_bytes(length.saturating_sub(ETHERNET_OVERHEAD) as u64);
            }
            f.set_src_mac(src.try_into().expect("6 bytes"));
            f.set_dst_mac(dst.try_into().expect("6 bytes"));
            f.set_etype(etype as u16);
        }
        3 | 4 => sampled_ip(f, &mut c, format == 4)?,
        1002 => {
            f.set_next_hop(read_address(&mut c)?);
            f.set_src_net_mask(c.u32()? as u8);
            f.set_dst_net_mask(c.u32()? as u8);
        }
        1003 => return extended_gateway(f, &mut c),
        _ => {}
    }
    Ok(false)
}

/// Sampled IPv4 (format 3) and IPv6 (format 4) records.
fn sampled_ip(f: &mut FlowRecord, c: &mut Cursor, v6: bool) -> Result<(), DecodeError> {
    let length = c.u32()?;
    let proto = c.u32()?;
    let (src, dst) = if v6 {
        (c.bytes(16)?.try_into().expect("16"), c.bytes(16)?.try_into().expect("16"))
    } else {
        let (s, d) = (c.bytes(4)?, c.bytes(4)?);
        (addr_from_v4([s[0], s[1], s[2], s[3]]), addr_from_v4([d[0], d[1], d[2], d[3]]))
    };
    let (src_port, dst_port, tcp_flags, tos) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
    if !f.has(crate::flow::Field::Bytes) {
        f.set_bytes(length as u64);
    }
    f.set_etype(if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 });
    f.set_proto(proto as u8);
    f.set_src_addr(src);
    f.set_dst_addr(dst);
    f.set_src_port(src_port as u16);
    f.set_dst_port(dst_port as u16);
    f.set_tcp_flags(tcp_flags as u16);
    f.set_ip_tos(tos as u8);
    Ok(())
}

/// Extended gateway (format 1003): BGP next hop, own/source/peer AS, the AS
/// path as segments, communities, local preference.
fn extended_gateway(f: &mut FlowRecord, c: &mut Cursor) -> Result<bool, DecodeError> {
    f.set_bgp_next_hop(read_address(c)?);
    let own_as = c.u32()?;
    f.set_src_as(c.u32()?);
    let _src_peer_as = c.u32()?;
    let mut truncated = false;
    let mut last_as = None;
    f.set_dst_as_path_present(true);
    for _ in 0..c.u32()? {
        let _segment_type = c.u32()?;
        let len = c.u32()?;
        if len as usize > c.remaining() / 4 {
            return Err(DecodeError::new(Reason::BadLength, "sFlow AS path segment"));
        }
        for _ in 0..len {
            let asn = c.u32()?;
            truncated |= !f.push_dst_as_path(asn);
            last_as = Some(asn);
        }
    }
    // An empty path: the destination is in the router's own AS.
    f.set_dst_as(last_as.unwrap_or(own_as));
    let communities = c.u32()?;
    if communities as usize > c.remaining() / 4 {
        return Err(DecodeError::new(Reason::BadLength, "sFlow communities"));
    }
    f.set_dst_communities_present(true);
    for _ in 0..communities {
        truncated |= !f.push_dst_community(c.u32()?);
    }
    let _local_pref = c.u32()?;
    Ok(truncated)
}

#[cfg(test)]
#[path = "sflow_tests.rs"]
mod tests;
