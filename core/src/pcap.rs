//! Classic pcap files (both byte orders, micro- and nanosecond timestamps)
//! read from memory into UDP datagrams. Link types: Ethernet (with 802.1Q
//! tags), Linux cooked v1 and v2, raw IP, and BSD loopback. Frames that are
//! not UDP over IPv4/IPv6, or are later IP fragments, come out as `Skipped`
//! with a reason so that the caller can count them.

use crate::flow::{addr_from_v4, Addr};
use crate::wire::packet::ipv6_extensions;
use crate::wire::{be16, be32};

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const MAGIC_PCAPNG: u32 = 0x0a0d_0d0a;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

const LINKTYPE_NULL: u32 = 0;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_RAW_ALT: u32 = 12;
const LINKTYPE_IPV4: u32 = 228;
const LINKTYPE_IPV6: u32 = 229;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_LINUX_SLL2: u32 = 276;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcapError {
    /// Not a classic pcap file.
    BadMagic,
    /// A pcapng file: convert it with `editcap -F pcap`.
    Pcapng,
    /// The file ends inside a header or a record.
    Truncated,
    UnsupportedLinkType(u32),
}

impl std::fmt::Display for PcapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcapError::BadMagic => write!(f, "not a pcap file (bad magic number)"),
            PcapError::Pcapng => write!(f, "pcapng is not supported: convert with `editcap -F pcap IN OUT`"),
            PcapError::Truncated => write!(f, "pcap file is truncated"),
            PcapError::UnsupportedLinkType(t) => write!(f, "unsupported pcap link type {t}"),
        }
    }
}

impl std::error::Error for PcapError {}

/// Why a frame yielded no datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    NotIp,
    NotUdp,
    /// A non-first IP fragment (reassembly is not done).
    Fragment,
    /// The frame was cut by the capture's snap length.
    Truncated,
}

impl SkipReason {
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::NotIp => "not_ip",
            SkipReason::NotUdp => "not_udp",
            SkipReason::Fragment => "fragment",
            SkipReason::Truncated => "truncated",
        }
    }
}

/// A UDP datagram found in a capture.
#[derive(Clone, Copy, Debug)]
pub struct UdpDatagram<'a> {
    pub timestamp_ns: u64,
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub enum Frame<'a> {
    Udp(UdpDatagram<'a>),
    Skipped(SkipReason),
}

/// Iterates over the frames of a pcap file held in memory.
pub struct PcapReader<'a> {
    data: &'a [u8],
    pos: usize,
    swapped: bool,
    nanos: bool,
    link_type: u32,
}

impl<'a> PcapReader<'a> {
    pub fn new(data: &'a [u8]) -> Result<Self, PcapError> {
        let magic = be32(data, 0).ok_or(PcapError::Truncated)?;
        let (swapped, nanos) = match magic {
            MAGIC_MICROS => (false, false),
            MAGIC_NANOS => (false, true),
            m if m.swap_bytes() == MAGIC_MICROS => (true, false),
            m if m.swap_bytes() == MAGIC_NANOS => (true, true),
            MAGIC_PCAPNG => return Err(PcapError::Pcapng),
            _ => return Err(PcapError::BadMagic),
        };
        if data.len() < GLOBAL_HEADER_LEN {
            return Err(PcapError::Truncated);
        }
        let mut r = PcapReader { data, pos: GLOBAL_HEADER_LEN, swapped, nanos, link_type: 0 };
        // The link type's upper bits may carry FCS information (pcap-linktype(7)).
        r.link_type = r.u32_at(20) & 0x0fff_ffff;
        match r.link_type {
            LINKTYPE_NULL | LINKTYPE_ETHERNET | LINKTYPE_RAW | LINKTYPE_RAW_ALT | LINKTYPE_IPV4 | LINKTYPE_IPV6
            | LINKTYPE_LINUX_SLL | LINKTYPE_LINUX_SLL2 => Ok(r),
            t => Err(PcapError::UnsupportedLinkType(t)),
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let v = be32(self.data, at).unwrap_or(0);
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }

    fn frame(&self, b: &'a [u8], timestamp_ns: u64) -> Frame<'a> {
        let l3 = match self.link_type {
            LINKTYPE_ETHERNET => ethernet_payload(b),
            LINKTYPE_LINUX_SLL => be16(b, 14).map(|t| (t, b.get(16..).unwrap_or(&[]))),
            LINKTYPE_LINUX_SLL2 => be16(b, 0).map(|t| (t, b.get(20..).unwrap_or(&[]))),
            LINKTYPE_NULL => b.get(4..).and_then(|p| p.first().map(|v| (version_etype(*v), p))),
            _ => b.first().map(|v| (version_etype(*v), b)),
        };
        match l3 {
            Some((0x0800, p)) => ipv4_udp(p, timestamp_ns),
            Some((0x86dd, p)) => ipv6_udp(p, timestamp_ns),
            Some(_) => Frame::Skipped(SkipReason::NotIp),
            None => Frame::Skipped(SkipReason::Truncated),
        }
    }
}

impl<'a> Iterator for PcapReader<'a> {
    type Item = Result<Frame<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos == self.data.len() {
            return None;
        }
        if self.pos + RECORD_HEADER_LEN > self.data.len() {
            self.pos = self.data.len();
            return Some(Err(PcapError::Truncated));
        }
        let secs = self.u32_at(self.pos) as u64;
        let frac = self.u32_at(self.pos + 4) as u64;
        let caplen = self.u32_at(self.pos + 8) as usize;
        let start = self.pos + RECORD_HEADER_LEN;
        let Some(b) = start.checked_add(caplen).and_then(|end| self.data.get(start..end)) else {
            self.pos = self.data.len();
            return Some(Err(PcapError::Truncated));
        };
        self.pos = start + caplen;
        let timestamp_ns = secs * 1_000_000_000 + if self.nanos { frac } else { frac * 1000 };
        Some(Ok(self.frame(b, timestamp_ns)))
    }
}

fn version_etype(first: u8) -> u16 {
    match first >> 4 {
        4 => 0x0800,
        6 => 0x86dd,
        _ => 0,
    }
}

fn ethernet_payload(b: &[u8]) -> Option<(u16, &[u8])> {
    let mut at = 12;
    let mut etype = be16(b, at)?;
    while matches!(etype, 0x8100 | 0x88a8 | 0x9100) {
        at += 4;
        etype = be16(b, at)?;
    }
    Some((etype, b.get(at + 2..)?))
}

fn ipv4_udp(p: &[u8], timestamp_ns: u64) -> Frame<'_> {
    if p.len() < 20 {
        return Frame::Skipped(SkipReason::Truncated);
    }
    let ihl = (p[0] & 0x0f) as usize * 4;
    let fragment_offset = be16(p, 6).unwrap_or(0) & 0x1fff;
    if p[9] != 17 {
        return Frame::Skipped(SkipReason::NotUdp);
    }
    if fragment_offset != 0 {
        return Frame::Skipped(SkipReason::Fragment);
    }
    let src = addr_from_v4([p[12], p[13], p[14], p[15]]);
    let dst = addr_from_v4([p[16], p[17], p[18], p[19]]);
    udp(p.get(ihl..).unwrap_or(&[]), src, dst, timestamp_ns)
}

fn ipv6_udp(p: &[u8], timestamp_ns: u64) -> Frame<'_> {
    if p.len() < 40 {
        return Frame::Skipped(SkipReason::Truncated);
    }
    let src: Addr = p[8..24].try_into().expect("16 bytes");
    let dst: Addr = p[24..40].try_into().expect("16 bytes");
    let walk = ipv6_extensions(p);
    if walk.fragment.is_some_and(|(offset, _)| offset != 0) {
        return Frame::Skipped(SkipReason::Fragment);
    }
    if walk.cut || walk.next_header != 17 {
        return Frame::Skipped(SkipReason::NotUdp);
    }
    udp(p.get(walk.at..).unwrap_or(&[]), src, dst, timestamp_ns)
}

fn udp(u: &[u8], src: Addr, dst: Addr, timestamp_ns: u64) -> Frame<'_> {
    let (Some(src_port), Some(dst_port), Some(len)) = (be16(u, 0), be16(u, 2), be16(u, 4)) else {
        return Frame::Skipped(SkipReason::Truncated);
    };
    let Some(payload) = u.get(8..(len as usize).max(8)) else {
        return Frame::Skipped(SkipReason::Truncated);
    };
    Frame::Udp(UdpDatagram { timestamp_ns, src, dst, src_port, dst_port, payload })
}

/// One UDP/IPv4 datagram to write with `write_udp_pcap`.
#[derive(Clone, Debug)]
pub struct UdpToWrite<'a> {
    pub timestamp_ns: u64,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// Writes a classic pcap (Ethernet, microseconds) of UDP/IPv4 datagrams —
/// for test fixtures and the flow generator's `--pcap` output.
pub fn write_udp_pcap(datagrams: &[UdpToWrite]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [MAGIC_MICROS, 0x0004_0002, 0, 0, 65_535, LINKTYPE_ETHERNET] {
        match v {
            0x0004_0002 => {
                out.extend_from_slice(&2u16.to_le_bytes());
                out.extend_from_slice(&4u16.to_le_bytes());
            }
            _ => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    for d in datagrams {
        let UdpToWrite { timestamp_ns: ts_ns, src, dst, src_port: sport, dst_port: dport, payload } = d;
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let frame_len = 14 + ip_len;
        out.extend_from_slice(&((ts_ns / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts_ns % 1_000_000_000 / 1000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        out.extend_from_slice(&(frame_len as u32).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00]);
        out.extend_from_slice(&[0x45, 0, (ip_len >> 8) as u8, ip_len as u8, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        out.extend_from_slice(src);
        out.extend_from_slice(dst);
        out.extend_from_slice(&sport.to_be_bytes());
        out.extend_from_slice(&dport.to_be_bytes());
        out.extend_from_slice(&(udp_len as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(payload);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::addr_to_ip;

    #[test]
    fn round_trips_written_udp_pcap() {
        let file = write_udp_pcap(&[UdpToWrite {
            timestamp_ns: 1_500_000_000_123_456_000,
            src: [192, 0, 2, 1],
            dst: [192, 0, 2, 2],
            src_port: 999,
            dst_port: 2055,
            payload: &[1, 2, 3],
        }]);
        let frames: Vec<_> = PcapReader::new(&file).unwrap().collect();
        assert_eq!(frames.len(), 1);
        let Ok(Frame::Udp(d)) = frames[0] else { panic!("not udp") };
        assert_eq!(addr_to_ip(&d.src).to_string(), "192.0.2.1");
        assert_eq!((d.src_port, d.dst_port, d.payload), (999, 2055, &[1u8, 2, 3][..]));
        assert_eq!(d.timestamp_ns, 1_500_000_000_123_456_000);
    }

    #[test]
    fn rejects_pcapng_and_garbage_and_truncation() {
        assert_eq!(PcapReader::new(&[0x0a, 0x0d, 0x0d, 0x0a, 0, 0]).err(), Some(PcapError::Pcapng));
        assert_eq!(PcapReader::new(b"hello world").err(), Some(PcapError::BadMagic));
        let file = write_udp_pcap(&[UdpToWrite {
            timestamp_ns: 0,
            src: [1, 1, 1, 1],
            dst: [2, 2, 2, 2],
            src_port: 1,
            dst_port: 2,
            payload: &[0; 10],
        }]);
        let cut = &file[..file.len() - 3];
        let last = PcapReader::new(cut).unwrap().last().unwrap();
        assert_eq!(last.err(), Some(PcapError::Truncated));
    }

    /// A big-endian, nanosecond pcap of one frame with `link_type`.
    fn one_frame(link_type: u32, frame: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        for v in [MAGIC_NANOS, 0x0002_0004, 0, 0, 65_535, link_type] {
            f.extend_from_slice(&v.to_be_bytes());
        }
        for v in [7u32, 9, frame.len() as u32, frame.len() as u32] {
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(frame);
        f
    }

    fn ipv4_udp_packet(fragment_offset: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 31, 0, 0];
        p.extend_from_slice(&fragment_offset.to_be_bytes());
        p.extend_from_slice(&[64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        p.extend_from_slice(&[0x9c, 0x40, 0x08, 0x07, 0, 11, 0, 0, 0xaa, 0xbb, 0xcc]);
        p
    }

    fn payload_of(file: &[u8]) -> Result<Frame<'_>, PcapError> {
        PcapReader::new(file)?.next().expect("one frame")
    }

    #[test]
    fn every_link_type_reaches_the_udp_payload() {
        let ip = ipv4_udp_packet(0);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        let mut vlan = vec![0u8; 12];
        vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
        vlan.extend_from_slice(&ip);
        for (link, frame) in [
            (LINKTYPE_RAW, ip.clone()),
            (LINKTYPE_LINUX_SLL, sll),
            (LINKTYPE_LINUX_SLL2, sll2),
            (LINKTYPE_NULL, null),
            (LINKTYPE_ETHERNET, vlan),
        ] {
            let file = one_frame(link, &frame);
            let Ok(Frame::Udp(d)) = payload_of(&file) else { panic!("link type {link}") };
            assert_eq!((d.src_port, d.dst_port, d.payload), (40000, 2055, &[0xaa, 0xbb, 0xcc][..]), "link {link}");
            assert_eq!(d.timestamp_ns, 7_000_000_009, "nanosecond magic, big-endian file");
        }
    }

    #[test]
    fn ipv6_udp_and_skipped_frames() {
        let mut v6 = vec![0x60, 0, 0, 0, 0, 11, 17, 64];
        v6.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(&[0x18, 0xbf, 0x12, 0x83, 0, 11, 0, 0, 1, 2, 3]);
        let file = one_frame(LINKTYPE_RAW, &v6);
        let Ok(Frame::Udp(d)) = payload_of(&file) else { panic!("ipv6") };
        assert_eq!((d.src_port, d.dst_port), (6335, 4739));
        assert_eq!(addr_to_ip(&d.dst).to_string(), "2001:db8::2");
        let later_fragment = one_frame(LINKTYPE_RAW, &ipv4_udp_packet(100));
        assert!(matches!(payload_of(&later_fragment), Ok(Frame::Skipped(SkipReason::Fragment))));
        let mut tcp = ipv4_udp_packet(0);
        tcp[9] = 6;
        assert!(matches!(payload_of(&one_frame(LINKTYPE_RAW, &tcp)), Ok(Frame::Skipped(SkipReason::NotUdp))));
        let arp = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x06, 0, 1];
        assert!(matches!(payload_of(&one_frame(LINKTYPE_ETHERNET, &arp)), Ok(Frame::Skipped(SkipReason::NotIp))));
        assert_eq!(PcapReader::new(&one_frame(105, &[])).err(), Some(PcapError::UnsupportedLinkType(105)));
    }
}
