//! Packet headers as sampled by sFlow and by IPFIX's `dataLinkFrameSection`
//! (RFC 7133): Ethernet (802.1Q, QinQ), MPLS (with the pseudowire/EVPN
//! control word before an inner Ethernet frame), IPv4, IPv6 (with extension
//! headers), TCP, UDP, ICMP and ICMPv6. Samples are cut (128 bytes by
//! default), so parsing fills what the bytes reach and stops quietly at the
//! end: a short sample is normal, not an error. Each parser returns what the
//! flow's Bytes need: the IP packet's own length (layer 3), when the header
//! reached it.

use super::{be16, be32, Decapsulation};
use crate::flow::{addr_from_v4, Field, FlowRecord};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
/// GRE's protocol type for an Ethernet frame (RFC 1701 registry).
const ETHERTYPE_TRANSPARENT_ETHERNET: u16 = 0x6558;
/// VXLAN's UDP port (RFC 7348 §5).
const VXLAN_PORT: u16 = 4789;
/// VLAN tags followed before giving up (QinQ is two).
const VLAN_TAGS_MAX: usize = 4;
/// IPv6 extension headers followed before giving up.
const IPV6_EXTENSIONS_MAX: usize = 8;
/// Ethernet frames inside MPLS pseudowires followed before giving up.
const INNER_FRAMES_MAX: usize = 1;

/// What parsing a sampled header found beyond the flow's fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The IP packet's length: IPv4 total length, IPv6 payload length + 40.
    pub l3_bytes: Option<u32>,
    /// More MPLS labels than the flow keeps.
    pub labels_cut: bool,
}

/// Where a sampled packet starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Ethernet,
    Ipv4,
    Ipv6,
}

/// Parses an Ethernet frame.
pub fn parse_ethernet(b: &[u8], f: &mut FlowRecord) -> Parsed {
    parse_frame(b, f, 0).parsed
}

/// Parses a sampled packet that starts with `start`. With a tunnel to take
/// apart, the flow gets the inner packet's layer 3 and 4 (and layer 2 for
/// an inner Ethernet frame) and its length; the outer layer 2 stays. None:
/// `decap` is set and the packet is not in such a tunnel.
pub fn parse_sampled(b: &[u8], start: Start, decap: Decapsulation, f: &mut FlowRecord) -> Option<Parsed> {
    let outer = parse_at(b, start, f);
    if decap == Decapsulation::None {
        return Some(outer.parsed);
    }
    let (etype, at) = outer.l3?;
    let (inner_start, inner) = tunnel_payload(etype, b.get(at..)?, decap)?;
    for field in L3_AND_L4 {
        f.unset(field);
    }
    let inner = parse_at(inner, inner_start, f);
    Some(Parsed { l3_bytes: inner.parsed.l3_bytes, labels_cut: outer.parsed.labels_cut || inner.parsed.labels_cut })
}

/// What an inner packet replaces.
const L3_AND_L4: [Field; 16] = [
    Field::EType,
    Field::SrcAddr,
    Field::DstAddr,
    Field::Proto,
    Field::SrcPort,
    Field::DstPort,
    Field::TCPFlags,
    Field::ICMPv4Type,
    Field::ICMPv4Code,
    Field::ICMPv6Type,
    Field::ICMPv6Code,
    Field::IPTTL,
    Field::IPTos,
    Field::IPFragmentID,
    Field::IPFragmentOffset,
    Field::IPv6FlowLabel,
];

fn parse_at(b: &[u8], start: Start, f: &mut FlowRecord) -> Frame {
    let (etype, parse) = match start {
        Start::Ethernet => return parse_frame(b, f, 0),
        Start::Ipv4 => (ETHERTYPE_IPV4, parse_ipv4 as fn(&[u8], &mut FlowRecord) -> Option<u32>),
        Start::Ipv6 => (ETHERTYPE_IPV6, parse_ipv6 as fn(&[u8], &mut FlowRecord) -> Option<u32>),
    };
    Frame { parsed: Parsed { l3_bytes: parse(b, f), labels_cut: false }, l3: Some((etype, 0)) }
}

/// The packet a tunnel of kind `decap` carries, from the outer IP packet
/// `l3` (EtherType `etype`).
fn tunnel_payload(etype: u16, l3: &[u8], decap: Decapsulation) -> Option<(Start, &[u8])> {
    let (proto, l4, routed) = match etype {
        ETHERTYPE_IPV4 => {
            let ihl = (*l3.first()? & 0x0f) as usize * 4;
            // Only a first fragment carries the tunnel's header.
            (be16(l3, 6)? & 0x1fff == 0).then_some(())?;
            (*l3.get(9)?, l3.get(ihl..)?, false)
        }
        ETHERTYPE_IPV6 if l3.len() >= 40 => {
            let walk = ipv6_extensions(l3);
            (walk.next_header, l3.get(walk.at..)?, walk.routing)
        }
        _ => return None,
    };
    let ip = |next: u8| match next {
        4 => Some(Start::Ipv4),
        41 => Some(Start::Ipv6),
        _ => None,
    };
    match decap {
        Decapsulation::None => None,
        // UDP's 8 bytes, then VXLAN's 8.
        Decapsulation::Vxlan if proto == 17 && be16(l4, 2) == Some(VXLAN_PORT) => {
            Some((Start::Ethernet, l4.get(16..)?))
        }
        Decapsulation::Vxlan => None,
        Decapsulation::Gre if proto == 47 => {
            // RFC 2784 §2, RFC 2890 §2: version 0; checksum, key and sequence
            // number words when their bits are set.
            let flags = be16(l4, 0)?;
            (flags & 0x0007 == 0).then_some(())?;
            let len = 4 + 4 * [0x8000, 0x2000, 0x1000].iter().filter(|bit| flags & **bit != 0).count();
            let start = match be16(l4, 2)? {
                ETHERTYPE_IPV4 => Start::Ipv4,
                ETHERTYPE_IPV6 => Start::Ipv6,
                ETHERTYPE_TRANSPARENT_ETHERNET => Start::Ethernet,
                _ => return None,
            };
            Some((start, l4.get(len..)?))
        }
        Decapsulation::Gre => None,
        Decapsulation::Ipip => Some((ip(proto)?, l4)),
        Decapsulation::Srv6 if etype == ETHERTYPE_IPV6 && routed => {
            let start = if proto == 143 { Start::Ethernet } else { ip(proto)? };
            Some((start, l4))
        }
        Decapsulation::Srv6 => None,
    }
}

/// A parsed frame and where its IP packet starts (EtherType, offset).
struct Frame {
    parsed: Parsed,
    l3: Option<(u16, usize)>,
}

fn parse_frame(b: &[u8], f: &mut FlowRecord, depth: usize) -> Frame {
    let none = Frame { parsed: Parsed::default(), l3: None };
    let (Some(dst), Some(src)) = (b.get(0..6), b.get(6..12)) else {
        return none;
    };
    f.set_dst_mac(dst.try_into().expect("6 bytes"));
    f.set_src_mac(src.try_into().expect("6 bytes"));
    let mut at = 12;
    let Some(mut etype) = be16(b, at) else {
        return none;
    };
    at += 2;
    let mut tags = 0;
    while matches!(etype, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) && tags < VLAN_TAGS_MAX {
        let Some(tci) = be16(b, at) else { return none };
        // The outermost tag is the VLAN the switch port saw.
        if tags == 0 {
            f.set_src_vlan(tci & 0x0fff);
        }
        let Some(next) = be16(b, at + 2) else {
            return none;
        };
        etype = next;
        at += 4;
        tags += 1;
    }
    let mut labels_cut = false;
    if matches!(etype, ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST) {
        let (next_at, cut) = parse_mpls(b, at, f);
        labels_cut = cut;
        at = next_at;
        // No next-protocol field in MPLS: guess from the first nibble.
        etype = match b.get(at).map(|v| v >> 4) {
            Some(4) => ETHERTYPE_IPV4,
            Some(6) => ETHERTYPE_IPV6,
            // RFC 4385 §3 / RFC 7432 §18: a control word, then the
            // customer's Ethernet frame (pseudowire, EVPN).
            Some(0) if depth < INNER_FRAMES_MAX => {
                let inner_at = at + 4;
                let inner = parse_frame(b.get(inner_at..).unwrap_or(&[]), f, depth + 1);
                let parsed = Parsed { labels_cut: labels_cut || inner.parsed.labels_cut, ..inner.parsed };
                return Frame { parsed, l3: inner.l3.map(|(etype, l3)| (etype, inner_at + l3)) };
            }
            _ => return Frame { parsed: Parsed { labels_cut, l3_bytes: None }, l3: None },
        };
    }
    let parsed = Parsed { l3_bytes: parse_l3(etype, &b[at.min(b.len())..], f), labels_cut };
    Frame { parsed, l3: Some((etype, at)) }
}

/// Walks an MPLS label stack (RFC 3032 §2.1) to its bottom.
fn parse_mpls(b: &[u8], mut at: usize, f: &mut FlowRecord) -> (usize, bool) {
    let mut position = 0;
    let mut truncated = false;
    while let Some(entry) = be32(b, at) {
        at += 4;
        if !f.set_mpls_label(position, entry >> 12) {
            truncated = true;
        }
        position += 1;
        if entry & 0x100 != 0 {
            break;
        }
    }
    (at, truncated)
}

/// Parses an IPv4 or IPv6 packet named by its EtherType; returns its length.
pub fn parse_l3(etype: u16, b: &[u8], f: &mut FlowRecord) -> Option<u32> {
    match etype {
        ETHERTYPE_IPV4 => parse_ipv4(b, f),
        ETHERTYPE_IPV6 => parse_ipv6(b, f),
        _ => {
            f.set_etype(etype);
            None
        }
    }
}

/// Parses an IPv4 packet; returns its total length (RFC 791).
pub fn parse_ipv4(b: &[u8], f: &mut FlowRecord) -> Option<u32> {
    f.set_etype(ETHERTYPE_IPV4);
    if b.len() < 20 || b[0] >> 4 != 4 {
        return None;
    }
    let ihl = (b[0] & 0x0f) as usize * 4;
    f.set_ip_tos(b[1]);
    f.set_ip_fragment_id(be16(b, 4).unwrap_or(0) as u32);
    let fragment_offset = be16(b, 6).unwrap_or(0) & 0x1fff;
    f.set_ip_fragment_offset(fragment_offset);
    f.set_ip_ttl(b[8]);
    f.set_proto(b[9]);
    f.set_src_addr(addr_from_v4([b[12], b[13], b[14], b[15]]));
    f.set_dst_addr(addr_from_v4([b[16], b[17], b[18], b[19]]));
    // Only the first fragment carries the transport header.
    if fragment_offset == 0 && ihl >= 20 {
        parse_l4(b[9], b.get(ihl..).unwrap_or(&[]), false, f);
    }
    be16(b, 2).map(u32::from)
}

/// Parses an IPv6 packet; returns its length: the payload length (RFC 8200
/// §3) plus the 40-byte header.
pub fn parse_ipv6(b: &[u8], f: &mut FlowRecord) -> Option<u32> {
    f.set_etype(ETHERTYPE_IPV6);
    if b.len() < 40 || b[0] >> 4 != 6 {
        return None;
    }
    f.set_ip_tos((b[0] & 0x0f) << 4 | b[1] >> 4);
    f.set_ipv6_flow_label(be32(b, 0).unwrap_or(0) & 0xf_ffff);
    f.set_ip_ttl(b[7]);
    f.set_src_addr(b[8..24].try_into().expect("16 bytes"));
    f.set_dst_addr(b[24..40].try_into().expect("16 bytes"));
    let walk = ipv6_extensions(b);
    if let Some((offset, id)) = walk.fragment {
        f.set_ip_fragment_offset(offset);
        f.set_ip_fragment_id(id);
    }
    f.set_proto(walk.next_header);
    // Only the first fragment carries the transport header.
    if !walk.cut && walk.fragment.is_none_or(|(offset, _)| offset == 0) {
        parse_l4(walk.next_header, b.get(walk.at..).unwrap_or(&[]), true, f);
    }
    be16(b, 4).map(|payload| u32::from(payload) + 40)
}

/// Where an IPv6 packet's transport header starts.
pub(crate) struct Ipv6Extensions {
    /// The protocol after the extension headers (or the header that was cut).
    pub next_header: u8,
    /// Offset of the transport header.
    pub at: usize,
    /// The last fragment header's (offset in 8-octet units, identification).
    pub fragment: Option<(u16, u32)>,
    /// An extension header ran past the end of the bytes.
    pub cut: bool,
    /// A routing header (43) was stepped over (segment routing, SRv6).
    pub routing: bool,
}

/// Walks hop-by-hop, routing, fragment, AH and destination options headers
/// (at most `IPV6_EXTENSIONS_MAX`) of a packet of at least 40 bytes. Shared
/// by sampled headers and the pcap reader.
pub(crate) fn ipv6_extensions(b: &[u8]) -> Ipv6Extensions {
    let mut walk = Ipv6Extensions { next_header: b[6], at: 40, fragment: None, cut: false, routing: false };
    for _ in 0..IPV6_EXTENSIONS_MAX {
        if !matches!(walk.next_header, 0 | 43 | 44 | 51 | 60) {
            break;
        }
        let Some(ext) = b.get(walk.at..walk.at + 8) else {
            walk.cut = true;
            return walk;
        };
        let len = match walk.next_header {
            44 => {
                // RFC 8200 §4.5: offset in 8-octet units, then the identification.
                let offset = u16::from_be_bytes([ext[2], ext[3]]) >> 3;
                walk.fragment = Some((offset, u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]])));
                8
            }
            51 => (ext[1] as usize + 2) * 4,
            43 => {
                walk.routing = true;
                (ext[1] as usize + 1) * 8
            }
            _ => (ext[1] as usize + 1) * 8,
        };
        walk.next_header = ext[0];
        walk.at += len;
    }
    walk
}

fn parse_l4(proto: u8, b: &[u8], v6: bool, f: &mut FlowRecord) {
    match proto {
        6 | 17 | 132 => {
            if let (Some(sp), Some(dp)) = (be16(b, 0), be16(b, 2)) {
                f.set_src_port(sp);
                f.set_dst_port(dp);
            }
            if proto == 6 {
                if let Some(flags) = be16(b, 12) {
                    f.set_tcp_flags(flags & 0x01ff);
                }
            }
        }
        1 if !v6 => {
            if let [t, c, ..] = b {
                f.set_icmpv4_type(*t);
                f.set_icmpv4_code(*c);
            }
        }
        58 if v6 => {
            if let [t, c, ..] = b {
                f.set_icmpv6_type(*t);
                f.set_icmpv6_code(*c);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{addr_to_ip, Field};

    fn ipv4_tcp() -> Vec<u8> {
        let mut p = vec![0x45, 0x10, 0, 40, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        p.extend_from_slice(&[0x04, 0xd2, 0x00, 0x50, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x12, 0, 0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn qinq_keeps_outer_vlan_and_reaches_tcp() {
        let mut frame = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        frame.extend_from_slice(&[0x88, 0xa8, 0x00, 100, 0x81, 0x00, 0x00, 200, 0x08, 0x00]);
        frame.extend_from_slice(&ipv4_tcp());
        let mut f = FlowRecord::default();
        parse_ethernet(&frame, &mut f);
        assert_eq!(f.src_vlan, 100);
        assert_eq!(f.src_mac, [7, 8, 9, 10, 11, 12]);
        assert_eq!((f.src_port, f.dst_port, f.tcp_flags), (1234, 80, 0x12));
        assert_eq!(addr_to_ip(&f.dst_addr).to_string(), "10.0.0.2");
        assert_eq!((f.ip_ttl, f.ip_tos, f.ip_fragment_id), (64, 0x10, 0x1234));
    }

    #[test]
    fn mpls_stack_then_ipv4() {
        let mut frame = vec![0; 12];
        frame.extend_from_slice(&[0x88, 0x47]);
        frame.extend_from_slice(&((16u32 << 12) | 64).to_be_bytes());
        frame.extend_from_slice(&((17u32 << 12) | 0x100 | 64).to_be_bytes());
        frame.extend_from_slice(&ipv4_tcp());
        let mut f = FlowRecord::default();
        parse_ethernet(&frame, &mut f);
        assert_eq!(f.mpls_labels(), &[16, 17]);
        assert_eq!(f.etype, ETHERTYPE_IPV4);
        assert_eq!(f.proto, 6);
    }

    #[test]
    fn ipv6_fragment_header_and_icmpv6() {
        let mut p = vec![0x60, 0x0a, 0xbc, 0xde, 0, 16, 44, 255];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[58, 0, 0, 0, 0, 0, 0, 7]);
        p.extend_from_slice(&[128, 0, 0, 0]);
        let mut f = FlowRecord::default();
        parse_ipv6(&p, &mut f);
        assert_eq!((f.proto, f.icmpv6_type, f.ip_fragment_id), (58, 128, 7));
        assert_eq!(f.ipv6_flow_label, 0xabcde);
        assert_eq!(f.ip_tos, 0);
    }

    #[test]
    fn ipv6_authentication_header_is_stepped_over() {
        // RFC 4302 §2.2: AH length is in 4-octet units, minus 2.
        let mut p = vec![0x60, 0, 0, 0, 0, 20, 51, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[17, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x04, 0xd2, 0x00, 0x35, 0, 8, 0, 0]);
        let walk = ipv6_extensions(&p);
        assert_eq!((walk.next_header, walk.at, walk.cut), (17, 52, false));
        let mut f = FlowRecord::default();
        parse_ipv6(&p, &mut f);
        assert_eq!((f.proto, f.src_port, f.dst_port), (17, 1234, 53));
        let cut = ipv6_extensions(&p[..45]);
        assert!(cut.cut);
        assert_eq!(cut.next_header, 51);
    }

    #[test]
    fn short_samples_stop_quietly() {
        for n in 0..60 {
            let mut frame = vec![0xff; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            frame.extend_from_slice(&ipv4_tcp());
            let mut f = FlowRecord::default();
            parse_ethernet(&frame[..n.min(frame.len())], &mut f);
            if n < 12 {
                assert!(!f.has(Field::SrcMAC));
            }
        }
    }
}
