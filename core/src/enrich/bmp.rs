//! BMP (RFC 7854) as the routing table needs it: the common header that
//! frames a TCP stream, and each message turned into an `Event` for
//! `enrich::rib`. The per-peer headers, Peer Up OPENs and BGP UPDATEs are
//! parsed with `bgpkit-parser`; what it leaves to its callers is done
//! here:
//!
//! - **ADD-PATH** is negotiated per peer from the Peer Up's two OPENs (the
//!   router receives several paths when the peer's OPEN can send them and
//!   the router's can receive them), and the peer's updates are parsed
//!   with path identifiers accordingly (the crate's own BMP entry point
//!   always parses without, and guesses).
//! - **Order**: a connection must start with an Initiation message; a
//!   Route Monitoring message for a peer without Peer Up creates it.
//! - **Skipped unparsed**: Statistics Reports and Route Mirroring (which
//!   may carry malformed BGP on purpose) are only counted.
//! - **ADD-PATH per family**: a message is parsed with path identifiers
//!   when its family (its MP_REACH or MP_UNREACH attribute's, else IPv4
//!   unicast) negotiated them, unless its NLRI only frame the other way
//!   (routers that send what they did not negotiate: counted). An UPDATE
//!   carries one family in practice; one that mixes classic IPv4 NLRI
//!   with another family's MP attribute is parsed by the latter's setting.
//! - **Families**: IPv4 and IPv6 unicast and labeled unicast (the labels
//!   dropped), and VPNv4 / VPNv6 (SAFI 128: label stack, route
//!   distinguisher, prefix), which the crate does not decode: those NLRI
//!   are read here from the UPDATE's bytes. Other NLRI (EVPN, flowspec,
//!   multicast...) are counted as ignored.
//! - **Route distinguishers and route targets**: a VPN route's RD is its
//!   NLRI's; a route from an RD instance peer (per-peer header type 1)
//!   takes the peer distinguisher; others have none (0). `Filters` keep
//!   the routes of some RDs, or of UPDATEs carrying some route targets
//!   (extended communities of type 0x00, 0x01 or 0x02, subtype 0x02);
//!   what they leave out is counted as filtered.
//!
//! A message that does not parse is an error the caller counts and skips:
//! the session goes on with the next message (the framing is intact). A
//! header that does not (wrong version, length out of bounds) leaves the
//! stream without framing: the caller closes the connection.

use std::collections::HashMap;
use std::net::IpAddr;

use bgpkit_parser::models::{
    AsPathSegment, AttrType, BgpMessage, BgpOpenMessage, Capability, CapabilityValue, Community, MetaCommunity,
    NetworkPrefix, ParamValue, Safi,
};
use bgpkit_parser::parser::bgp::messages::parse_bgp_message;
use bgpkit_parser::parser::bmp::messages::{
    parse_peer_up_notification, parse_per_peer_header, BmpPeerType, BmpPerPeerHeader,
};
use bytes::Bytes;

use crate::flow::{addr_from_ip, Addr};

/// Bytes of the common header (version, message length, type).
pub const HEADER_LEN: usize = 6;

/// The longest message accepted: a BGP message is at most 65 535 bytes
/// (RFC 8654), plus the per-peer header; far more is a broken stream.
pub const MESSAGE_MAX: usize = 1 << 20;

/// BMP message types (RFC 7854 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    RouteMonitoring = 0,
    StatisticsReport = 1,
    PeerDown = 2,
    PeerUp = 3,
    Initiation = 4,
    Termination = 5,
    RouteMirroring = 6,
}

impl MessageType {
    pub const ALL: [MessageType; 7] = [
        MessageType::RouteMonitoring,
        MessageType::StatisticsReport,
        MessageType::PeerDown,
        MessageType::PeerUp,
        MessageType::Initiation,
        MessageType::Termination,
        MessageType::RouteMirroring,
    ];

    /// The metrics' label.
    pub fn label(self) -> &'static str {
        match self {
            MessageType::RouteMonitoring => "route-monitoring",
            MessageType::StatisticsReport => "statistics-report",
            MessageType::PeerDown => "peer-down",
            MessageType::PeerUp => "peer-up",
            MessageType::Initiation => "initiation",
            MessageType::Termination => "termination",
            MessageType::RouteMirroring => "route-mirroring",
        }
    }
}

/// Why a message was refused: a bounded set, the metrics' reason label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BmpError {
    /// Not BMP version 3 (the stream is closed).
    Version,
    /// A length below the header or above `MESSAGE_MAX` (closed).
    Length,
    /// An unknown message type (skipped).
    Type,
    /// A first message that is not an Initiation (closed).
    NotInitiated,
    /// A per-peer header, Peer Up or BGP message that does not parse (skipped).
    Malformed,
    /// A Route Monitoring message without an UPDATE (skipped).
    NotUpdate,
}

impl BmpError {
    pub const ALL: [BmpError; 6] = [
        BmpError::Version,
        BmpError::Length,
        BmpError::Type,
        BmpError::NotInitiated,
        BmpError::Malformed,
        BmpError::NotUpdate,
    ];

    pub fn label(self) -> &'static str {
        match self {
            BmpError::Version => "version",
            BmpError::Length => "length",
            BmpError::Type => "type",
            BmpError::NotInitiated => "not-initiated",
            BmpError::Malformed => "malformed",
            BmpError::NotUpdate => "not-update",
        }
    }

    /// Whether the connection cannot go on after it.
    pub fn fatal(self) -> bool {
        matches!(self, BmpError::Version | BmpError::Length | BmpError::NotInitiated)
    }
}

/// Reads a common header: the message's type (None: unknown) and whole
/// length, header included.
pub fn header(h: &[u8]) -> Result<(Option<MessageType>, usize), BmpError> {
    if h.len() < HEADER_LEN {
        return Err(BmpError::Length);
    }
    if h[0] != 3 {
        return Err(BmpError::Version);
    }
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if !(HEADER_LEN..=MESSAGE_MAX).contains(&len) {
        return Err(BmpError::Length);
    }
    Ok((MessageType::ALL.get(usize::from(h[5])).copied(), len))
}

/// A BGP peer as a BMP session names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    pub addr: Addr,
    /// The peer distinguisher (an RD for VRF peers, else 0).
    pub distinguisher: u64,
}

/// A route's attributes, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// AS_PATH flattened: sequences kept, a set (or confederation set)
    /// reduced to its first AS.
    pub as_path: Box<[u32]>,
    /// Standard communities as `ASN << 16 | value`.
    pub communities: Box<[u32]>,
    /// Large communities: (global administrator, local data 1, 2).
    pub large_communities: Box<[[u32; 3]]>,
    pub next_hop: Addr,
    pub local_pref: u32,
    pub med: u32,
}

impl Attrs {
    /// The origin AS: the path's last, else the peer's AS (a route the
    /// peer originates has an empty path).
    pub fn origin_as(&self, peer_as: u32) -> u32 {
        self.as_path.last().copied().unwrap_or(peer_as)
    }
}

/// A prefix in the 128-bit space (IPv4 within `::ffff:0:0/96`, its length
/// plus 96), its ADD-PATH path identifier (0 without) and its route
/// distinguisher (0 without).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub net: u128,
    pub len: u8,
    pub path_id: u32,
    pub rd: u64,
}

impl Prefix {
    fn of(p: &NetworkPrefix, rd: u64) -> Prefix {
        let (addr, len) = match p.prefix {
            ipnet::IpNet::V4(n) => (IpAddr::V4(n.network()), n.prefix_len() + 96),
            ipnet::IpNet::V6(n) => (IpAddr::V6(n.network()), n.prefix_len()),
        };
        Prefix { net: u128::from_be_bytes(addr_from_ip(addr)), len, path_id: p.path_id.unwrap_or(0), rd }
    }
}

/// Reads a route distinguisher or route target as operators write them:
/// `ASN:n` (type 0 when the AS fits 16 bits and n 32, else type 2),
/// `IPv4:n` (type 1), `T:A:n` with an explicit type 0–2, or the 8 bytes
/// as one number. The value is the 8 bytes (2 of type, 6 of value), an
/// RT's subtype byte cleared, so that an RT and an RD written alike are
/// equal. `0`: none.
pub fn parse_rd(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    let parts: Vec<&str> = text.split(':').collect();
    let (kind, admin, n) = match parts[..] {
        [admin, n] => (None, admin, n.parse::<u64>().ok()?),
        [kind, admin, n] => (Some(kind.parse::<u16>().ok()?), admin, n.parse::<u64>().ok()?),
        _ => return None,
    };
    if let Ok(ip) = admin.parse::<std::net::Ipv4Addr>() {
        return (kind.unwrap_or(1) == 1 && n <= 0xffff).then(|| 1 << 48 | u64::from(u32::from(ip)) << 16 | n);
    }
    let asn = admin.parse::<u64>().ok()?;
    match kind {
        None if asn <= 0xffff && n <= 0xffff_ffff => Some(asn << 32 | n),
        None | Some(2) if asn <= 0xffff_ffff && n <= 0xffff => Some(2 << 48 | asn << 16 | n),
        Some(0) if asn <= 0xffff && n <= 0xffff_ffff => Some(asn << 32 | n),
        _ => None,
    }
}

/// Which routes to keep, by route distinguisher and route target
/// (`parse_rd`'s values). Empty lists keep everything; `0` in `rds`
/// keeps routes without RD, in `rts` UPDATEs without RT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub rds: Vec<u64>,
    pub rts: Vec<u64>,
}

/// What one message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Initiation,
    Termination,
    Statistics,
    Mirroring,
    PeerUp {
        peer: PeerKey,
        asn: u32,
        add_path: bool,
    },
    PeerDown {
        peer: PeerKey,
    },
    /// Routes announced with `attrs`, and withdrawn; `ignored`: NLRI of
    /// families not kept; `filtered`: NLRI `Filters` left out.
    Update {
        peer: PeerKey,
        asn: u32,
        announced: Vec<Prefix>,
        withdrawn: Vec<Prefix>,
        attrs: Attrs,
        ignored: u32,
        filtered: u32,
    },
}

/// A family: (AFI, SAFI).
type Family = (u16, u8);

const IPV4_UNICAST: Family = (1, 1);
const SAFI_VPN: u8 = 128;

/// One BMP connection's state: whether it started, its filters, and per
/// peer the families whose updates carry ADD-PATH path identifiers.
#[derive(Debug, Default)]
pub struct Session {
    initiated: bool,
    filters: Filters,
    add_path: HashMap<PeerKey, Vec<Family>>,
    /// UPDATEs read the other way than the OPENs said (`RawUpdate::add_path`).
    pub add_path_mismatches: u64,
}

impl Session {
    pub fn new(filters: Filters) -> Session {
        Session { filters, ..Session::default() }
    }

    /// Peers this session announced (Peer Up or routes) and has not taken down.
    pub fn peers(&self) -> usize {
        self.add_path.len()
    }

    /// One whole message (header included, as `header` framed it).
    pub fn decode(&mut self, message: &[u8]) -> Result<Event, BmpError> {
        let (kind, len) = header(message)?;
        if len != message.len() {
            return Err(BmpError::Length);
        }
        if !self.initiated && kind != Some(MessageType::Initiation) {
            return Err(BmpError::NotInitiated);
        }
        let Some(kind) = kind else { return Err(BmpError::Type) };
        let mut body = Bytes::copy_from_slice(&message[HEADER_LEN..]);
        match kind {
            MessageType::Initiation => {
                self.initiated = true;
                Ok(Event::Initiation)
            }
            MessageType::Termination => Ok(Event::Termination),
            MessageType::StatisticsReport => Ok(Event::Statistics),
            MessageType::RouteMirroring => Ok(Event::Mirroring),
            MessageType::PeerUp => {
                let pph = parse_per_peer_header(&mut body).map_err(|_| BmpError::Malformed)?;
                let up = parse_peer_up_notification(&mut body, &pph.afi(), &pph.asn_length(), Some(&pph.peer_type))
                    .map_err(|_| BmpError::Malformed)?;
                let families = match (&up.sent_open, &up.received_open) {
                    (BgpMessage::Open(sent), BgpMessage::Open(received)) => receives_paths(sent, received),
                    _ => Vec::new(),
                };
                let peer = key(&pph);
                let add_path = !families.is_empty();
                self.add_path.insert(peer, families);
                Ok(Event::PeerUp { peer, asn: pph.peer_asn.to_u32(), add_path })
            }
            MessageType::PeerDown => {
                let pph = parse_per_peer_header(&mut body).map_err(|_| BmpError::Malformed)?;
                let peer = key(&pph);
                self.add_path.remove(&peer);
                Ok(Event::PeerDown { peer })
            }
            MessageType::RouteMonitoring => {
                let pph = parse_per_peer_header(&mut body).map_err(|_| BmpError::Malformed)?;
                let peer = key(&pph);
                let bytes = body.clone();
                let raw = RawUpdate::read(&bytes);
                let negotiated = self.add_path.entry(peer).or_default().contains(&raw.family());
                let add_path = raw.add_path(negotiated);
                self.add_path_mismatches += u64::from(add_path != negotiated);
                let raw_vpn = raw.vpn(add_path)?;
                let message =
                    parse_bgp_message(&mut body, add_path, &pph.asn_length()).map_err(|_| BmpError::Malformed)?;
                let BgpMessage::Update(update) = message else { return Err(BmpError::NotUpdate) };
                let rd = if pph.peer_type == BmpPeerType::RD { pph.peer_distinguisher } else { 0 };
                let mut event = update_event(peer, pph.peer_asn.to_u32(), update, rd, raw_vpn);
                self.filter(&raw, &mut event);
                Ok(event)
            }
        }
    }
}

impl Session {
    /// Leaves out of `event` the routes the filters do not keep: by RD,
    /// announced and withdrawn; by RT, announced (a withdrawal has none).
    fn filter(&self, raw: &RawUpdate, event: &mut Event) {
        let Event::Update { announced, withdrawn, filtered, .. } = event else { return };
        let Filters { rds, rts } = &self.filters;
        if !rts.is_empty() && !announced.is_empty() {
            let targets = raw.route_targets();
            let kept = if targets.is_empty() { rts.contains(&0) } else { targets.iter().any(|t| rts.contains(t)) };
            if !kept {
                *filtered += announced.len() as u32;
                announced.clear();
            }
        }
        if !rds.is_empty() {
            for list in [announced, withdrawn] {
                let before = list.len();
                list.retain(|p| rds.contains(&p.rd));
                *filtered += (before - list.len()) as u32;
            }
        }
    }
}

/// What the crate leaves out of an UPDATE, read from its bytes: the
/// MP_REACH_NLRI and MP_UNREACH_NLRI attributes' values, the extended
/// communities', and the classic withdrawn routes and NLRI.
#[derive(Debug, Default)]
struct RawUpdate<'a> {
    reach: Option<&'a [u8]>,
    unreach: Option<&'a [u8]>,
    extended: Option<&'a [u8]>,
    withdrawn: &'a [u8],
    nlri: &'a [u8],
}

/// VPN routes read from an UPDATE: announced, withdrawn, next hop.
#[derive(Debug, Default)]
struct VpnRoutes {
    announced: Vec<Prefix>,
    withdrawn: Vec<Prefix>,
    next_hop: Option<IpAddr>,
    /// VPN MP attributes read (0–2).
    raw_attrs: u32,
}

impl<'a> RawUpdate<'a> {
    /// From a BGP message (header included); empty when it is not an
    /// UPDATE or its attributes do not frame (the crate's parse says why).
    fn read(message: &'a [u8]) -> RawUpdate<'a> {
        Self::attributes(message).unwrap_or_default()
    }

    fn attributes(m: &'a [u8]) -> Option<RawUpdate<'a>> {
        if *m.get(18)? != 2 {
            return None;
        }
        let u16_at = |at: usize| Some(u16::from_be_bytes([*m.get(at)?, *m.get(at + 1)?]) as usize);
        let withdrawn = u16_at(19)?;
        let attrs_len = u16_at(21 + withdrawn)?;
        let mut attrs = m.get(23 + withdrawn..23 + withdrawn + attrs_len)?;
        let mut raw = RawUpdate {
            withdrawn: m.get(21..21 + withdrawn)?,
            nlri: m.get(23 + withdrawn + attrs_len..u16_at(16)?)?,
            ..RawUpdate::default()
        };
        while !attrs.is_empty() {
            let (flags, kind) = (*attrs.first()?, *attrs.get(1)?);
            let (len, at) = if flags & 0x10 != 0 {
                (u16::from_be_bytes([*attrs.get(2)?, *attrs.get(3)?]) as usize, 4)
            } else {
                (usize::from(*attrs.get(2)?), 3)
            };
            let value = attrs.get(at..at + len)?;
            match kind {
                14 => raw.reach = Some(value),
                15 => raw.unreach = Some(value),
                16 => raw.extended = Some(value),
                _ => {}
            }
            attrs = &attrs[at + len..];
        }
        Some(raw)
    }

    /// Whether its NLRI are read with ADD-PATH path ids: as `negotiated`
    /// in the Peer Up's OPENs, unless only the other reading frames them.
    /// Some routers get this wrong: FRR 8.4 sends no path ids after
    /// negotiating ADD-PATH, gobgpd's Loc-RIB sends them without.
    fn add_path(&self, negotiated: bool) -> bool {
        if !self.frames(negotiated) && self.frames(!negotiated) {
            !negotiated
        } else {
            negotiated
        }
    }

    /// Whether the unicast and VPN NLRI frame exactly when read with
    /// (`add_path`) or without path ids.
    fn frames(&self, add_path: bool) -> bool {
        let mp = |v: Option<&[u8]>, reach: bool| {
            let Some(v) = v.filter(|v| v.len() >= 3) else { return true };
            let afi = u16::from_be_bytes([v[0], v[1]]);
            let nlri = if reach {
                match v.get(3).and_then(|&nh| v.get(5 + usize::from(nh)..)) {
                    Some(nlri) => nlri,
                    None => return true,
                }
            } else {
                &v[3..]
            };
            match (afi, v[2]) {
                (1 | 2, 1 | 2) => prefixes_frame(nlri, add_path, if afi == 1 { 32 } else { 128 }),
                (1 | 2, SAFI_VPN) => vpn_prefixes(afi, nlri, add_path, !reach, &mut Vec::new()).is_ok(),
                _ => true,
            }
        };
        prefixes_frame(self.withdrawn, add_path, 32)
            && prefixes_frame(self.nlri, add_path, 32)
            && mp(self.reach, true)
            && mp(self.unreach, false)
    }

    /// The message's family: its MP attributes', else IPv4 unicast.
    fn family(&self) -> Family {
        self.reach
            .or(self.unreach)
            .filter(|v| v.len() >= 3)
            .map_or(IPV4_UNICAST, |v| (u16::from_be_bytes([v[0], v[1]]), v[2]))
    }

    /// The route targets of its extended communities (`parse_rd`'s values).
    fn route_targets(&self) -> Vec<u64> {
        let Some(ext) = self.extended else { return Vec::new() };
        ext.chunks_exact(8)
            .filter(|c| c[0] <= 2 && c[1] == 2)
            .map(|c| u64::from_be_bytes([c[0], 0, c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect()
    }

    /// Its VPNv4 / VPNv6 routes (none when its family is another).
    fn vpn(&self, add_path: bool) -> Result<VpnRoutes, BmpError> {
        let mut out = VpnRoutes::default();
        if let Some(v) = self.reach.filter(|v| v.len() >= 5 && v[2] == SAFI_VPN) {
            let afi = u16::from_be_bytes([v[0], v[1]]);
            let nh_len = usize::from(v[3]);
            let nh = v.get(4..4 + nh_len).ok_or(BmpError::Malformed)?;
            // A VPN next hop is an RD (zero) and an address; IPv6 may add a
            // link-local one (another RD and address).
            out.next_hop = match nh.len() {
                12 => Some(IpAddr::from(<[u8; 4]>::try_from(&nh[8..12]).unwrap_or_default())),
                24 | 48 => Some(IpAddr::from(<[u8; 16]>::try_from(&nh[8..24]).unwrap_or_default())),
                _ => None,
            };
            // After the next hop, one reserved byte.
            let nlri = v.get(5 + nh_len..).ok_or(BmpError::Malformed)?;
            vpn_prefixes(afi, nlri, add_path, false, &mut out.announced)?;
            out.raw_attrs += 1;
        }
        if let Some(v) = self.unreach.filter(|v| v.len() >= 3 && v[2] == SAFI_VPN) {
            vpn_prefixes(u16::from_be_bytes([v[0], v[1]]), &v[3..], add_path, true, &mut out.withdrawn)?;
            out.raw_attrs += 1;
        }
        Ok(out)
    }
}

/// Whether `data` is a whole list of prefixes (a length in bits up to
/// `max_bits`, then its bytes), each after a 4-byte path id when `add_path`.
fn prefixes_frame(mut data: &[u8], add_path: bool, max_bits: usize) -> bool {
    while !data.is_empty() {
        let at = if add_path { 4 } else { 0 };
        let Some(&bits) = data.get(at) else { return false };
        let end = at + 1 + usize::from(bits).div_ceil(8);
        if usize::from(bits) > max_bits || data.len() < end {
            return false;
        }
        data = &data[end..];
    }
    true
}

/// VPN NLRI (RFC 4364, RFC 4659, RFC 8277): per route an ADD-PATH path id
/// when negotiated, a length in bits, labels of 3 bytes up to the one with
/// the bottom-of-stack bit (a withdrawal holds exactly one, often the
/// 0x800000 placeholder), an 8-byte RD, the prefix's bytes.
fn vpn_prefixes(
    afi: u16,
    mut data: &[u8],
    add_path: bool,
    withdrawal: bool,
    out: &mut Vec<Prefix>,
) -> Result<(), BmpError> {
    let (max_bits, base, offset) = match afi {
        1 => (32, 0xffff_u128 << 32, 96),
        2 => (128, 0, 0),
        _ => return Err(BmpError::Malformed),
    };
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], BmpError> {
        let (head, rest) = data.split_at_checked(n).ok_or(BmpError::Malformed)?;
        *data = rest;
        Ok(head)
    }
    let be = |bytes: &[u8]| bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
    while !data.is_empty() {
        let path_id = if add_path { be(take(&mut data, 4)?) as u32 } else { 0 };
        let mut bits = usize::from(take(&mut data, 1)?[0]);
        loop {
            let label = take(&mut data, 3)?;
            bits = bits.checked_sub(24).ok_or(BmpError::Malformed)?;
            if withdrawal || label[2] & 1 != 0 {
                break;
            }
        }
        let rd = be(take(&mut data, 8)?);
        bits = bits.checked_sub(64).filter(|&b| b <= max_bits).ok_or(BmpError::Malformed)?;
        let mut net = [0u8; 16];
        let bytes = take(&mut data, bits.div_ceil(8))?;
        // The address's bytes, left-aligned in its family's width, then
        // placed in the 128-bit space.
        net[..bytes.len()].copy_from_slice(bytes);
        let full = u128::MAX >> (128 - max_bits);
        let addr = u128::from_be_bytes(net) >> (128 - max_bits);
        let mask = if bits == 0 { 0 } else { full << (max_bits - bits) & full };
        out.push(Prefix { net: base | addr & mask, len: (bits + offset) as u8, path_id, rd });
    }
    Ok(())
}

fn key(pph: &BmpPerPeerHeader) -> PeerKey {
    PeerKey { addr: addr_from_ip(pph.peer_ip), distinguisher: pph.peer_distinguisher }
}

/// ADD-PATH capabilities of an OPEN: (afi, safi, send/receive bits).
fn add_path_families(open: &BgpOpenMessage) -> Vec<(u16, u8, u8)> {
    let mut out = Vec::new();
    for p in &open.opt_params {
        let ParamValue::Capacities(caps) = &p.param_value else { continue };
        for Capability { value, .. } in caps {
            if let CapabilityValue::AddPath(a) = value {
                out.extend(a.address_families.iter().map(|f| (f.afi as u16, f.safi as u8, f.send_receive as u8)));
            }
        }
    }
    out
}

/// The families for which the monitored router receives several paths
/// from the peer: the peer's OPEN can send them (bit 2) and the router's
/// can receive them (bit 1).
fn receives_paths(sent: &BgpOpenMessage, received: &BgpOpenMessage) -> Vec<Family> {
    let router = add_path_families(sent);
    add_path_families(received)
        .into_iter()
        .filter(|&(afi, safi, peer)| {
            peer & 2 != 0 && router.iter().any(|&(a, s, mine)| a == afi && s == safi && mine & 1 != 0)
        })
        .map(|(afi, safi, _)| (afi, safi))
        .collect()
}

/// What the table keeps of an UPDATE's attributes (the next hop aside:
/// it depends on the family).
fn stored_attributes(a: &bgpkit_parser::models::Attributes) -> Attrs {
    let mut attrs = Attrs {
        local_pref: a.local_preference().unwrap_or(0),
        med: a.multi_exit_discriminator().unwrap_or(0),
        ..Attrs::default()
    };
    if let Some(path) = a.as4_path().or(a.as_path()) {
        let mut flat = Vec::new();
        for segment in path.iter_segments() {
            match segment {
                AsPathSegment::AsSequence(v) | AsPathSegment::ConfedSequence(v) => {
                    flat.extend(v.iter().map(|asn| asn.to_u32()))
                }
                AsPathSegment::AsSet(v) | AsPathSegment::ConfedSet(v) => flat.extend(v.first().map(|asn| asn.to_u32())),
            }
        }
        attrs.as_path = flat.into();
    }
    let (mut communities, mut large) = (Vec::new(), Vec::new());
    for c in a.iter_communities() {
        match c {
            MetaCommunity::Plain(Community::Custom(asn, value)) => {
                communities.push(asn.to_u32() << 16 | u32::from(value))
            }
            MetaCommunity::Plain(Community::NoExport) => communities.push(0xffff_ff01),
            MetaCommunity::Plain(Community::NoAdvertise) => communities.push(0xffff_ff02),
            MetaCommunity::Plain(Community::NoExportSubConfed) => communities.push(0xffff_ff03),
            MetaCommunity::Large(l) => large.push([l.global_admin, l.local_data[0], l.local_data[1]]),
            _ => {}
        }
    }
    attrs.communities = communities.into();
    attrs.large_communities = large.into();
    attrs
}

/// The event of an UPDATE the crate parsed, its routes given `rd` (the
/// peer's, for an RD instance peer), plus the VPN routes read here.
fn update_event(
    peer: PeerKey,
    asn: u32,
    update: bgpkit_parser::models::BgpUpdateMessage,
    rd: u64,
    vpn: VpnRoutes,
) -> Event {
    let a = &update.attributes;
    let mut attrs = stored_attributes(a);
    let mut ignored = 0u32;
    let of = |p: &NetworkPrefix| Prefix::of(p, rd);
    let mut announced: Vec<Prefix> = update.announced_prefixes.iter().map(of).collect();
    let mut withdrawn: Vec<Prefix> = update.withdrawn_prefixes.iter().map(of).collect();
    let kept = |safi: Safi| matches!(safi, Safi::Unicast | Safi::MplsLabel);
    let mut next_hop = vpn.next_hop.or(a.next_hop());
    announced.extend(vpn.announced);
    withdrawn.extend(vpn.withdrawn);
    // VPN NLRI are read from the bytes (`RawUpdate::vpn`): what the crate
    // made of them is not looked at.
    let mut vpn_attrs = 0;
    if let Some(nlri) = a.get_reachable_nlri() {
        if kept(nlri.safi) {
            announced.extend(nlri.prefixes.iter().map(of));
            for l in nlri.labeled_prefixes.iter().flatten() {
                announced.push(of(&NetworkPrefix { prefix: l.prefix, path_id: l.path_id }));
            }
            next_hop = nlri.next_hop.as_ref().map(|n| n.addr()).or(next_hop);
        } else if nlri.safi == Safi::MplsVpn {
            vpn_attrs += 1;
        } else {
            ignored += nlri.prefixes.len() as u32 + nlri.labeled_prefixes.as_ref().map_or(0, |l| l.len() as u32);
        }
    }
    if let Some(nlri) = a.get_unreachable_nlri() {
        if kept(nlri.safi) {
            withdrawn.extend(nlri.prefixes.iter().map(of));
        } else if nlri.safi == Safi::MplsVpn {
            vpn_attrs += 1;
        } else {
            ignored += nlri.prefixes.len() as u32;
        }
    }
    // Families the crate does not decode (EVPN...) stay raw attributes:
    // one ignored NLRI each (their prefixes are not counted), VPN ones
    // aside (read here).
    let raw = u32::from(a.has_attr(AttrType::MP_REACHABLE_NLRI) && a.get_reachable_nlri().is_none())
        + u32::from(a.has_attr(AttrType::MP_UNREACHABLE_NLRI) && a.get_unreachable_nlri().is_none());
    ignored += raw.saturating_sub(vpn.raw_attrs.saturating_sub(vpn_attrs));
    if let Some(nh) = next_hop {
        attrs.next_hop = addr_from_ip(nh);
    }
    Event::Update { peer, asn, announced, withdrawn, attrs, ignored, filtered: 0 }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A BMP message: common header, then `body`.
    pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![3];
        m.extend(((HEADER_LEN + body.len()) as u32).to_be_bytes());
        m.push(kind);
        m.extend(body);
        m
    }

    /// A per-peer header for IPv4 peer `peer` in AS `asn` (4-byte AS paths).
    pub fn per_peer(peer: [u8; 4], asn: u32) -> Vec<u8> {
        let mut h = vec![0, 0];
        h.extend(0u64.to_be_bytes());
        h.extend([0; 12]);
        h.extend(peer);
        h.extend(asn.to_be_bytes());
        h.extend(peer);
        h.extend([0; 8]);
        h
    }

    /// A BGP message of `kind` with `body`.
    pub fn bgp(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0xff; 16];
        m.extend(((19 + body.len()) as u16).to_be_bytes());
        m.push(kind);
        m.extend(body);
        m
    }

    /// An OPEN from `asn` with 4-byte AS and, when `add_path` (1 receive,
    /// 2 send, 3 both), ADD-PATH for IPv4 unicast.
    pub fn open(asn: u32, add_path: u8) -> Vec<u8> {
        let families = [(1, 1, add_path)];
        open_families(asn, &families[..usize::from(add_path != 0)])
    }

    /// An OPEN from `asn` with ADD-PATH for `families` ((AFI, SAFI, mode)).
    pub fn open_families(asn: u32, families: &[(u16, u8, u8)]) -> Vec<u8> {
        let mut caps = vec![65, 4];
        caps.extend(asn.to_be_bytes());
        if !families.is_empty() {
            caps.extend([69, 4 * families.len() as u8]);
            for &(afi, safi, mode) in families {
                caps.extend(afi.to_be_bytes());
                caps.extend([safi, mode]);
            }
        }
        let mut body = vec![4];
        body.extend(23456u16.to_be_bytes());
        body.extend(90u16.to_be_bytes());
        body.extend([192, 0, 2, 1]);
        body.push(caps.len() as u8 + 2);
        body.extend([2, caps.len() as u8]);
        body.extend(caps);
        bgp(1, &body)
    }

    pub fn peer_up(peer: [u8; 4], asn: u32, router_add_path: u8, peer_add_path: u8) -> Vec<u8> {
        peer_up_opens(peer, asn, open(64500, router_add_path), open(asn, peer_add_path))
    }

    pub fn peer_up_opens(peer: [u8; 4], asn: u32, router: Vec<u8>, peer_open: Vec<u8>) -> Vec<u8> {
        let mut body = per_peer(peer, asn);
        body.extend([0; 12]);
        body.extend([192, 0, 2, 1]);
        body.extend(179u16.to_be_bytes());
        body.extend(40000u16.to_be_bytes());
        body.extend(router);
        body.extend(peer_open);
        message(3, &body)
    }

    /// A path attribute (extended length when long).
    pub fn attribute(flags: u8, kind: u8, value: &[u8]) -> Vec<u8> {
        let mut a = if value.len() > 255 {
            let mut a = vec![flags | 0x10, kind];
            a.extend((value.len() as u16).to_be_bytes());
            a
        } else {
            vec![flags, kind, value.len() as u8]
        };
        a.extend(value);
        a
    }

    /// A Route Monitoring message with an UPDATE of `attributes` and no
    /// classic NLRI; `pph`: the per-peer header.
    pub fn update_message(pph: &[u8], attributes: &[u8]) -> Vec<u8> {
        let mut body = vec![0, 0];
        body.extend((attributes.len() as u16).to_be_bytes());
        body.extend(attributes);
        let mut m = pph.to_vec();
        m.extend(bgp(2, &body));
        message(0, &m)
    }

    /// One VPN NLRI: [path id], length, `labels`, RD, prefix bytes.
    pub fn vpn_nlri(path_id: Option<u32>, labels: &[u32], rd: u64, prefix: &[u8], bits: u8) -> Vec<u8> {
        let mut n = path_id.map_or(Vec::new(), |id| id.to_be_bytes().to_vec());
        n.push(24 * labels.len() as u8 + 64 + bits);
        for &l in labels {
            n.extend(&l.to_be_bytes()[1..]);
        }
        n.extend(rd.to_be_bytes());
        n.extend(&prefix[..usize::from(bits.div_ceil(8))]);
        n
    }

    /// A Route Monitoring message: an UPDATE announcing IPv4 `nlri`
    /// ((path id, prefix bytes, length)) with `path`, next hop, local
    /// preference and community 65000:7, withdrawing `withdrawn`.
    pub fn route_monitoring(
        peer: [u8; 4],
        asn: u32,
        path: &[u32],
        nlri: &[(Option<u32>, [u8; 4], u8)],
        withdrawn: &[(Option<u32>, [u8; 4], u8)],
    ) -> Vec<u8> {
        let encode = |list: &[(Option<u32>, [u8; 4], u8)]| {
            let mut out = Vec::new();
            for (id, net, len) in list {
                if let Some(id) = id {
                    out.extend(id.to_be_bytes());
                }
                out.push(*len);
                out.extend(&net[..usize::from(len.div_ceil(8))]);
            }
            out
        };
        let mut attrs = vec![0x40, 1, 1, 0];
        if !nlri.is_empty() {
            attrs.extend([0x40, 2, 2 + 4 * path.len() as u8, 2, path.len() as u8]);
            for a in path {
                attrs.extend(a.to_be_bytes());
            }
            attrs.extend([0x40, 3, 4, 10, 0, 0, 1]);
            attrs.extend([0x40, 5, 4, 0, 0, 0, 200]);
            attrs.extend([0xc0, 8, 4]);
            attrs.extend((65000u32 << 16 | 7).to_be_bytes());
        } else {
            attrs.clear();
        }
        let w = encode(withdrawn);
        let mut body = (w.len() as u16).to_be_bytes().to_vec();
        body.extend(w);
        body.extend((attrs.len() as u16).to_be_bytes());
        body.extend(attrs);
        body.extend(encode(nlri));
        let mut m = per_peer(peer, asn);
        m.extend(bgp(2, &body));
        message(0, &m)
    }

    fn net(s: &str) -> (u128, u8) {
        let (n, len) = crate::config::parse_cidr(s).unwrap();
        (u128::from(n), len)
    }

    /// An address's 16 bytes (IPv4 mapped; `2001:db8::` style for IPv6).
    fn net_addr(s: &str) -> [u8; 16] {
        match s.parse::<IpAddr>().unwrap() {
            IpAddr::V6(a) => a.octets(),
            a => addr_from_ip(a),
        }
    }

    #[test]
    fn a_session_from_initiation_to_peer_down() {
        let mut s = Session::default();
        let peer = [10, 0, 0, 2];
        assert_eq!(s.decode(&peer_up(peer, 64501, 3, 3)), Err(BmpError::NotInitiated));
        assert_eq!(s.decode(&message(4, &[0, 0, 0, 3, b'r', b't', b'r'])), Ok(Event::Initiation));
        let Ok(Event::PeerUp { add_path: true, asn: 64501, .. }) = s.decode(&peer_up(peer, 64501, 1, 2)) else {
            panic!("peer up with ADD-PATH")
        };
        let update = route_monitoring(
            peer,
            64501,
            &[64501, 3356, 15169],
            &[(Some(1), [198, 51, 100, 0], 24), (Some(2), [198, 51, 100, 0], 24), (Some(1), [0; 4], 0)],
            &[(Some(7), [203, 0, 113, 0], 24)],
        );
        let Ok(Event::Update { announced, withdrawn, attrs, ignored: 0, .. }) = s.decode(&update) else {
            panic!("update")
        };
        let (n24, _) = net("198.51.100.0/24");
        assert_eq!(
            announced,
            vec![
                Prefix { net: n24, len: 120, path_id: 1, rd: 0 },
                Prefix { net: n24, len: 120, path_id: 2, rd: 0 },
                Prefix { net: net("0.0.0.0/0").0, len: 96, path_id: 1, rd: 0 }
            ]
        );
        assert_eq!(withdrawn, vec![Prefix { net: net("203.0.113.0/24").0, len: 120, path_id: 7, rd: 0 }]);
        assert_eq!(&attrs.as_path[..], &[64501, 3356, 15169]);
        assert_eq!((attrs.local_pref, &attrs.communities[..]), (200, &[65000 << 16 | 7][..]));
        assert_eq!(attrs.next_hop, addr_from_ip("10.0.0.1".parse().unwrap()));
        assert_eq!(attrs.origin_as(64501), 15169);
        // Garbage inside a well-framed message (an unknown BGP message
        // type, a per-peer header cut short, a KEEPALIVE): skipped, the
        // session goes on.
        let mut garbage = route_monitoring(peer, 64501, &[1], &[(Some(1), [10, 0, 0, 0], 8)], &[]);
        garbage[HEADER_LEN + 42 + 18] = 9;
        assert_eq!(s.decode(&garbage), Err(BmpError::Malformed));
        assert_eq!(s.decode(&message(0, &[0; 10])), Err(BmpError::Malformed));
        assert_eq!(
            s.decode(&message(0, &[&per_peer(peer, 64501)[..], &bgp(4, &[])].concat())),
            Err(BmpError::NotUpdate)
        );
        assert!(!BmpError::Malformed.fatal());
        assert_eq!(s.decode(&message(1, &per_peer(peer, 1))), Ok(Event::Statistics));
        assert_eq!(s.decode(&message(6, &[1, 2, 3])), Ok(Event::Mirroring));
        assert_eq!(s.decode(&message(9, &[])), Err(BmpError::Type));
        let Ok(Event::PeerDown { .. }) = s.decode(&message(2, &[&per_peer(peer, 64501)[..], &[2]].concat())) else {
            panic!("peer down")
        };
        assert_eq!(s.peers(), 0);
        assert_eq!(s.decode(&message(5, &[])), Ok(Event::Termination));
    }

    #[test]
    fn add_path_only_when_the_router_receives_and_the_peer_sends() {
        let mut s = Session::default();
        s.decode(&message(4, &[])).unwrap();
        for (router, peer, expect) in [(1, 2, true), (3, 3, true), (2, 1, false), (0, 3, false), (1, 0, false)] {
            let Ok(Event::PeerUp { add_path, .. }) = s.decode(&peer_up([10, 0, 0, 9], 1, router, peer)) else {
                panic!("peer up")
            };
            assert_eq!(add_path, expect, "router {router}, peer {peer}");
        }
        // A route monitoring message without a Peer Up: parsed without path ids.
        let update = route_monitoring([10, 0, 0, 3], 1, &[1], &[(None, [192, 0, 2, 0], 24)], &[]);
        let Ok(Event::Update { announced, .. }) = s.decode(&update) else { panic!("update") };
        assert_eq!(announced[0].path_id, 0);
        assert_eq!(s.add_path_mismatches, 0);
    }

    /// Routers that send what they did not negotiate: NLRI that only frame
    /// the other way are read that way, counted.
    #[test]
    fn nlri_that_only_frame_without_the_negotiated_path_ids_are_read_as_they_frame() {
        let mut s = Session::default();
        s.decode(&message(4, &[])).unwrap();
        // ADD-PATH negotiated, no path ids sent (FRR 8.4).
        s.decode(&peer_up([10, 0, 0, 2], 1, 1, 2)).unwrap();
        let update = route_monitoring([10, 0, 0, 2], 1, &[1], &[(None, [198, 51, 100, 0], 24)], &[]);
        let (announced, ..) = update_of(s.decode(&update));
        assert_eq!(announced, [Prefix { net: net("198.51.100.0/24").0, len: 120, ..Prefix::default() }]);
        // None negotiated, path ids sent (gobgpd's Loc-RIB).
        let update = route_monitoring([10, 0, 0, 3], 1, &[1], &[(Some(7), [198, 51, 100, 0], 24)], &[]);
        let (announced, ..) = update_of(s.decode(&update));
        assert_eq!(announced, [Prefix { net: net("198.51.100.0/24").0, len: 120, path_id: 7, rd: 0 }]);
        assert_eq!(s.add_path_mismatches, 2);
        // Both readings frame (path id 0x080a080b and a /0, or 10/8, 11/8
        // and a /0): the OPENs win.
        let update = route_monitoring([10, 0, 0, 2], 1, &[1], &[(Some(0x080a_080b), [0; 4], 0)], &[]);
        let (announced, ..) = update_of(s.decode(&update));
        assert_eq!(announced, [Prefix { net: net("0.0.0.0/0").0, len: 96, path_id: 0x080a_080b, rd: 0 }]);
        assert_eq!(s.add_path_mismatches, 2);
    }

    /// The fuzz target's body on a whole session, cut anywhere.
    #[test]
    fn the_fuzz_harness_takes_a_session_cut_anywhere() {
        let peer = [10, 0, 0, 2];
        let stream = [
            message(4, &[]),
            peer_up(peer, 64501, 3, 3),
            route_monitoring(peer, 64501, &[64501, 15169], &[(Some(1), [198, 51, 100, 0], 24)], &[]),
            route_monitoring(
                peer,
                64501,
                &[64501],
                &[(Some(2), [198, 51, 100, 0], 24), (Some(1), [10, 0, 0, 0], 8)],
                &[],
            ),
            route_monitoring(peer, 64501, &[], &[], &[(Some(1), [198, 51, 100, 0], 24)]),
            vpn_update(peer),
            message(2, &[&per_peer(peer, 64501)[..], &[2]].concat()),
        ]
        .concat();
        for cut in 0..=stream.len() {
            crate::harness::bmp_stream(&stream[..cut]);
        }
    }

    /// A VPNv4 UPDATE with a route target: two routes (RD 65000:100 and
    /// 192.0.2.1:7) announced, one withdrawn.
    fn vpn_update(peer: [u8; 4]) -> Vec<u8> {
        let (rd_a, rd_b) = (parse_rd("65000:100").unwrap(), parse_rd("192.0.2.1:7").unwrap());
        let mut reach = vec![0, 1, 128, 12];
        reach.extend([0; 8]);
        reach.extend([192, 0, 2, 9, 0]);
        reach.extend(vpn_nlri(Some(1), &[16001 << 4 | 1], rd_a, &[198, 51, 100, 0], 24));
        reach.extend(vpn_nlri(Some(2), &[16002 << 4, 16003 << 4 | 1], rd_b, &[10, 128, 0, 0], 9));
        let mut unreach = vec![0, 1, 128];
        unreach.extend(vpn_nlri(Some(3), &[0x80_0000], rd_a, &[203, 0, 113, 0], 24));
        let attributes = [
            attribute(0x40, 1, &[0]),
            attribute(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xe9]),
            attribute(0xc0, 16, &[0, 2, 0xfd, 0xe8, 0, 0, 0, 100]),
            attribute(0x80, 14, &reach),
            attribute(0x80, 15, &unreach),
        ]
        .concat();
        update_message(&per_peer(peer, 64501), &attributes)
    }

    fn update_of(event: Result<Event, BmpError>) -> (Vec<Prefix>, Vec<Prefix>, Attrs, u32, u32) {
        match event {
            Ok(Event::Update { announced, withdrawn, attrs, ignored, filtered, .. }) => {
                (announced, withdrawn, attrs, ignored, filtered)
            }
            other => panic!("not an update: {other:?}"),
        }
    }

    /// VPNv4 and VPNv6 (SAFI 128) announcements and withdrawals, with
    /// and without ADD-PATH: prefixes, RDs, next hops, route targets.
    #[test]
    fn vpn_routes_are_read_with_their_route_distinguishers() {
        let rd_a = parse_rd("65000:100").unwrap();
        let rd_b = parse_rd("192.0.2.1:7").unwrap();
        let peer = [10, 0, 0, 2];
        let (origin, path) = (attribute(0x40, 1, &[0]), attribute(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xe9]));
        // RT 65000:100 (type 0, subtype 2) and a colour community (type 3).
        let mut ext = vec![0, 2, 0xfd, 0xe8, 0, 0, 0, 100];
        ext.extend([3, 0x0b, 0, 0, 0, 0, 0, 1]);
        let ext = attribute(0xc0, 16, &ext);
        let vpnv4 = |add_path: bool| {
            let id = |n: u32| add_path.then_some(n);
            let mut reach = vec![0, 1, 128, 12];
            reach.extend([0; 8]);
            reach.extend([192, 0, 2, 9, 0]);
            reach.extend(vpn_nlri(id(1), &[16001 << 4 | 1], rd_a, &[198, 51, 100, 0], 24));
            reach.extend(vpn_nlri(id(2), &[16002 << 4, 16003 << 4 | 1], rd_b, &[10, 128, 0, 0], 9));
            let mut unreach = vec![0, 1, 128];
            unreach.extend(vpn_nlri(id(3), &[0x80_0000], rd_a, &[203, 0, 113, 0], 24));
            [origin.clone(), path.clone(), ext.clone(), attribute(0x80, 14, &reach), attribute(0x80, 15, &unreach)]
                .concat()
        };
        for add_path in [false, true] {
            let mut s = Session::default();
            s.decode(&message(4, &[])).unwrap();
            let families: &[(u16, u8, u8)] = if add_path { &[(1, 128, 3)] } else { &[] };
            s.decode(&peer_up_opens(peer, 65001, open_families(64500, families), open_families(65001, families)))
                .unwrap();
            let (announced, withdrawn, attrs, ignored, _) =
                update_of(s.decode(&update_message(&per_peer(peer, 65001), &vpnv4(add_path))));
            let id = |n: u32| if add_path { n } else { 0 };
            assert_eq!(
                announced,
                [
                    Prefix { net: net("198.51.100.0/24").0, len: 120, path_id: id(1), rd: rd_a },
                    Prefix { net: net("10.128.0.0/9").0, len: 105, path_id: id(2), rd: rd_b },
                ],
                "ADD-PATH {add_path}"
            );
            assert_eq!(withdrawn, [Prefix { net: net("203.0.113.0/24").0, len: 120, path_id: id(3), rd: rd_a }]);
            assert_eq!((attrs.next_hop, &attrs.as_path[..], ignored), (net_addr("192.0.2.9"), &[65001][..], 0));
        }
        // VPNv6, a next hop with its link-local address.
        let mut reach = vec![0, 2, 128, 48];
        for a in ["2001:db8::9", "fe80::9"] {
            reach.extend([0; 8]);
            reach.extend(net_addr(a));
        }
        reach.push(0);
        reach.extend(vpn_nlri(None, &[1 << 4 | 1], rd_b, &net_addr("2001:db8:7::"), 48));
        let m = update_message(
            &per_peer(peer, 65001),
            &[origin.clone(), path.clone(), attribute(0x80, 14, &reach)].concat(),
        );
        let mut s = Session::default();
        s.decode(&message(4, &[])).unwrap();
        let (announced, _, attrs, _, _) = update_of(s.decode(&m));
        let (net6, _) = net("2001:db8:7::/48");
        assert_eq!(announced, [Prefix { net: net6, len: 48, path_id: 0, rd: rd_b }]);
        assert_eq!(attrs.next_hop, net_addr("2001:db8::9"));

        // Filters: by RD (announced and withdrawn), by RT (announced).
        let decode = |filters: Filters| {
            let mut s = Session::new(filters);
            s.decode(&message(4, &[])).unwrap();
            let (a, w, _, _, filtered) = update_of(s.decode(&update_message(&per_peer(peer, 65001), &vpnv4(false))));
            (a.iter().map(|p| p.rd).collect::<Vec<_>>(), w.len(), filtered)
        };
        assert_eq!(decode(Filters { rds: vec![rd_b], rts: vec![] }), (vec![rd_b], 0, 2));
        assert_eq!(
            decode(Filters { rds: vec![], rts: vec![parse_rd("65000:100").unwrap()] }),
            (vec![rd_a, rd_b], 1, 0)
        );
        assert_eq!(decode(Filters { rds: vec![], rts: vec![parse_rd("65000:200").unwrap()] }), (vec![], 1, 2));
        assert_eq!(decode(Filters { rds: vec![], rts: vec![0] }), (vec![], 1, 2), "0: UPDATEs without RT only");

        // A VPN NLRI cut short: the message is malformed, the session goes on.
        let mut bad = vec![0, 1, 128, 12];
        bad.extend([0; 13]);
        bad.extend(&vpn_nlri(None, &[1], rd_a, &[198, 51, 100, 0], 24)[..8]);
        let m = update_message(&per_peer(peer, 65001), &[origin, path, attribute(0x80, 14, &bad)].concat());
        let mut s = Session::default();
        s.decode(&message(4, &[])).unwrap();
        assert_eq!(s.decode(&m), Err(BmpError::Malformed));
        assert!(s.decode(&route_monitoring(peer, 1, &[1], &[(None, [10, 0, 0, 0], 8)], &[])).is_ok());
    }

    /// A routing instance peer (type 1): its routes take its distinguisher.
    #[test]
    fn routes_of_an_rd_instance_peer_take_its_distinguisher() {
        let mut s = Session::default();
        s.decode(&message(4, &[])).unwrap();
        let mut m = route_monitoring([10, 0, 0, 2], 1, &[1], &[(None, [10, 0, 0, 0], 8)], &[]);
        m[HEADER_LEN] = 1;
        m[HEADER_LEN + 2..HEADER_LEN + 10].copy_from_slice(&parse_rd("65000:5").unwrap().to_be_bytes());
        let (announced, ..) = update_of(s.decode(&m));
        assert_eq!(announced[0].rd, parse_rd("65000:5").unwrap());
    }

    /// ADD-PATH for IPv6 unicast only: IPv4 updates carry no path ids.
    #[test]
    fn add_path_is_per_family() {
        let peer = [10, 0, 0, 2];
        let mut s = Session::default();
        s.decode(&message(4, &[])).unwrap();
        let (router, remote) = (open_families(64500, &[(2, 1, 1)]), open_families(65001, &[(2, 1, 2), (1, 1, 2)]));
        let Ok(Event::PeerUp { add_path: true, .. }) = s.decode(&peer_up_opens(peer, 65001, router, remote)) else {
            panic!("peer up")
        };
        // IPv4 0.0.0.0/0 without a path id (the crate's guess would take
        // its first bytes for one).
        let (announced, ..) = update_of(s.decode(&route_monitoring(peer, 65001, &[1], &[(None, [0; 4], 0)], &[])));
        assert_eq!(announced, [Prefix { net: net("0.0.0.0/0").0, len: 96, ..Prefix::default() }]);
        let mut reach = vec![0, 2, 1, 16];
        reach.extend(net_addr("2001:db8::1"));
        reach.push(0);
        reach.extend(7u32.to_be_bytes());
        reach.extend([32, 0x20, 0x01, 0x0d, 0xb8]);
        let m =
            update_message(&per_peer(peer, 65001), &[attribute(0x40, 1, &[0]), attribute(0x80, 14, &reach)].concat());
        let (announced, ..) = update_of(s.decode(&m));
        assert_eq!(announced, [Prefix { net: net("2001:db8::/32").0, len: 32, path_id: 7, rd: 0 }]);
    }

    #[test]
    fn route_distinguishers_are_read_as_operators_write_them() {
        assert_eq!(parse_rd("65000:100"), Some(65000 << 32 | 100));
        assert_eq!(parse_rd("0:65000:100"), Some(65000 << 32 | 100));
        assert_eq!(parse_rd("4200000000:7"), Some(2 << 48 | 4_200_000_000 << 16 | 7));
        assert_eq!(parse_rd("2:65000:7"), Some(2 << 48 | 65000 << 16 | 7));
        assert_eq!(parse_rd("192.0.2.1:7"), Some(1 << 48 | 0xc000_0201 << 16 | 7));
        assert_eq!(parse_rd(" 0 "), Some(0));
        assert_eq!(parse_rd("12345678901"), Some(12_345_678_901));
        for bad in ["", "65000:x", "4200000000:70000", "192.0.2.1:70000", "3:1:1", "1:65000:1", "a:b:c:d", "0:70000:1"]
        {
            assert_eq!(parse_rd(bad), None, "{bad}");
        }
    }

    #[test]
    fn headers_that_break_the_framing_are_fatal() {
        assert_eq!(header(&[2, 0, 0, 0, 6, 4]), Err(BmpError::Version));
        assert_eq!(header(&[3, 0, 0, 0, 5, 4]), Err(BmpError::Length));
        assert_eq!(header(&[3, 0, 0x10, 0, 1, 4]), Err(BmpError::Length));
        assert_eq!(header(&[3, 0, 0, 0, 6, 4]), Ok((Some(MessageType::Initiation), 6)));
        assert!(BmpError::Version.fatal() && BmpError::Length.fatal() && !BmpError::Malformed.fatal());
    }
}
