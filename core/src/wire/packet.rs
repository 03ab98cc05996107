//! Packet headers as sampled by sFlow: Ethernet (802.1Q, QinQ), MPLS, IPv4,
//! IPv6 (with extension headers), TCP, UDP, ICMP and ICMPv6. Samples are cut
//! (128 bytes by default), so parsing fills what the bytes reach and stops
//! quietly at the end: a short sample is normal, not an error.

use super::{be16, be32};
use crate::flow::{addr_from_v4, FlowRecord};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS: u16 = 0x8847;
const ETHERTYPE_MPLS_MULTICAST: u16 = 0x8848;
/// VLAN tags followed before giving up (QinQ is two).
const VLAN_TAGS_MAX: usize = 4;
/// IPv6 extension headers followed before giving up.
const IPV6_EXTENSIONS_MAX: usize = 8;

/// Parses an Ethernet frame; returns whether MPLS labels were cut to the bound.
pub fn parse_ethernet(b: &[u8], f: &mut FlowRecord) -> bool {
    let (Some(dst), Some(src)) = (b.get(0..6), b.get(6..12)) else {
        return false;
    };
    f.set_dst_mac(dst.try_into().expect("6 bytes"));
    f.set_src_mac(src.try_into().expect("6 bytes"));
    let mut at = 12;
    let Some(mut etype) = be16(b, at) else {
        return false;
    };
    at += 2;
    let mut tags = 0;
    while matches!(etype, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) && tags < VLAN_TAGS_MAX {
        let Some(tci) = be16(b, at) else { return false };
        // The outermost tag is the VLAN the switch port saw.
        if tags == 0 {
            f.set_src_vlan(tci & 0x0fff);
        }
        let Some(next) = be16(b, at + 2) else {
            return false;
        };
        etype = next;
        at += 4;
        tags += 1;
    }
    let mut truncated = false;
    if matches!(etype, ETHERTYPE_MPLS | ETHERTYPE_MPLS_MULTICAST) {
        let (next_at, cut) = parse_mpls(b, at, f);
        truncated = cut;
        at = next_at;
        // No next-protocol field in MPLS: guess from the IP version nibble.
        etype = match b.get(at).map(|v| v >> 4) {
            Some(4) => ETHERTYPE_IPV4,
            Some(6) => ETHERTYPE_IPV6,
            _ => return truncated,
        };
    }
    parse_l3(etype, &b[at.min(b.len())..], f);
    truncated
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

/// Parses an IPv4 or IPv6 packet named by its EtherType.
pub fn parse_l3(etype: u16, b: &[u8], f: &mut FlowRecord) {
    match etype {
        ETHERTYPE_IPV4 => parse_ipv4(b, f),
        ETHERTYPE_IPV6 => parse_ipv6(b, f),
        _ => f.set_etype(etype),
    }
}

pub fn parse_ipv4(b: &[u8], f: &mut FlowRecord) {
    f.set_etype(ETHERTYPE_IPV4);
    if b.len() < 20 || b[0] >> 4 != 4 {
        return;
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
}

pub fn parse_ipv6(b: &[u8], f: &mut FlowRecord) {
    f.set_etype(ETHERTYPE_IPV6);
    if b.len() < 40 || b[0] >> 4 != 6 {
        return;
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
}

/// Walks hop-by-hop, routing, fragment, AH and destination options headers
/// (at most `IPV6_EXTENSIONS_MAX`) of a packet of at least 40 bytes. Shared
/// by sampled headers and the pcap reader.
pub(crate) fn ipv6_extensions(b: &[u8]) -> Ipv6Extensions {
    let mut walk = Ipv6Extensions { next_header: b[6], at: 40, fragment: None, cut: false };
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
