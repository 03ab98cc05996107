//! The flow record: one fixed-layout struct that holds every field the four
//! wire formats can carry, plus a presence bitmask.
//!
//! Decoders fill one reusable `FlowRecord` per record and hand it to a sink by
//! reference, so decoding allocates nothing per flow. `clear` only resets the
//! presence mask and the list lengths: the value of a field whose bit is not set
//! is unspecified and must not be read (use `has` first).
//!
//! Addresses use one 16-byte representation: IPv6 as is, IPv4 as an
//! IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), as Akvorado stores them.
//! Field names follow Akvorado's column names where the concept exists; the
//! column name of each field is `Field::column`.

/// An IPv6 address, or an IPv4 address mapped into IPv6.
pub type Addr = [u8; 16];

/// MPLS labels kept per flow (IPFIX defines ten label stack positions, IEs 70–79).
pub const MPLS_LABELS_MAX: usize = 10;
/// AS path entries kept per flow (sFlow extended gateway); longer paths are truncated.
pub const AS_PATH_MAX: usize = 32;
/// BGP communities kept per flow (sFlow extended gateway); more are truncated.
pub const COMMUNITIES_MAX: usize = 16;

/// Maps an IPv4 address into the 16-byte representation.
#[inline(always)]
pub fn addr_from_v4(v4: [u8; 4]) -> Addr {
    // One 128-bit value: ::ffff:0:0/96 plus the IPv4 address.
    (0xffff_0000_0000u128 | u32::from_be_bytes(v4) as u128).to_be_bytes()
}

/// The IPv4 address inside `a` when it is IPv4-mapped.
#[inline]
pub fn addr_as_v4(a: &Addr) -> Option<[u8; 4]> {
    if a[..10] == [0u8; 10] && a[10] == 0xff && a[11] == 0xff {
        Some([a[12], a[13], a[14], a[15]])
    } else {
        None
    }
}

/// Converts the 16-byte representation to a standard address, unmapping IPv4.
pub fn addr_to_ip(a: &Addr) -> std::net::IpAddr {
    match addr_as_v4(a) {
        Some(v4) => std::net::IpAddr::from(v4),
        None => std::net::IpAddr::from(*a),
    }
}

/// The 16-byte representation of a standard address.
pub fn addr_from_ip(ip: std::net::IpAddr) -> Addr {
    match ip {
        std::net::IpAddr::V4(v4) => addr_from_v4(v4.octets()),
        std::net::IpAddr::V6(v6) => v6.octets(),
    }
}

macro_rules! flow_fields {
    ($( $variant:ident => $column:literal, $field:ident : $ty:ty, $setter:ident; )*) => {
        /// One presence bit per field of `FlowRecord`.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Field { $($variant,)* }

        /// How many fields a flow has.
        pub const FIELDS: usize = [$(Field::$variant,)*].len();

        impl Field {
            /// Every field, in column order.
            pub const ALL: &'static [Field] = &[$(Field::$variant,)*];

            /// The column name (Akvorado's where the concept exists).
            pub fn column(self) -> &'static str {
                match self { $(Field::$variant => $column,)* }
            }

            #[inline]
            fn bit(self) -> u64 {
                1u64 << (self as u8)
            }
        }

        /// One decoded flow. See the module documentation for the rules.
        #[derive(Clone, Debug, Default)]
        pub struct FlowRecord {
            present: u64,
            $(pub $field: $ty,)*
            /// MPLS label stack, top first (20-bit labels).
            pub mpls_labels: [u32; MPLS_LABELS_MAX],
            pub mpls_labels_len: u8,
            /// AS path towards the destination (sFlow extended gateway).
            pub dst_as_path: [u32; AS_PATH_MAX],
            pub dst_as_path_len: u8,
            /// Communities of the destination route (sFlow extended gateway).
            pub dst_communities: [u32; COMMUNITIES_MAX],
            pub dst_communities_len: u8,
        }

        impl FlowRecord {
            /// The value of `field`, typed; `None` when absent.
            #[inline]
            pub fn value(&self, field: Field) -> Option<Value<'_>> {
                if !self.has(field) {
                    return None;
                }
                Some(match field {
                    $(Field::$variant => IntoValue::value(&self.$field, self, field),)*
                })
            }

            /// Every field's stored value as a number, indexed by `Field as
            /// usize`, present or not (`number` masks it): integers as they
            /// are, a MAC's 48 bits (most significant first), 0 for an
            /// address or a list. One pass of loads and stores without
            /// branches, for a writer that copies many fields per flow
            /// (`Columns::push`); `address` gives the addresses.
            #[inline]
            pub fn numbers(&self) -> [u64; FIELDS] {
                [$(IntoNumber::number(&self.$field),)*]
            }

            $(
                #[inline]
                pub fn $setter(&mut self, v: $ty) {
                    self.$field = v;
                    self.present |= Field::$variant.bit();
                }
            )*

            /// Takes from `other` every field this record lacks (the lists
            /// with their presence): a record's own fields win over what a
            /// sampled frame in it says.
            pub fn fill_absent_from(&mut self, other: &FlowRecord) {
                let missing = other.present & !self.present;
                if missing == 0 {
                    return;
                }
                $(
                    if missing & Field::$variant.bit() != 0 {
                        self.$field = other.$field;
                    }
                )*
                if missing & Field::MPLSLabels.bit() != 0 {
                    self.mpls_labels = other.mpls_labels;
                    self.mpls_labels_len = other.mpls_labels_len;
                }
                if missing & Field::DstASPath.bit() != 0 {
                    self.dst_as_path = other.dst_as_path;
                    self.dst_as_path_len = other.dst_as_path_len;
                }
                if missing & Field::DstCommunities.bit() != 0 {
                    self.dst_communities = other.dst_communities;
                    self.dst_communities_len = other.dst_communities_len;
                }
                self.present |= missing;
            }
        }
    };
}

flow_fields! {
    TimeReceived => "TimeReceived", time_received_ns: u64, set_time_received_ns;
    SamplingRate => "SamplingRate", sampling_rate: u64, set_sampling_rate;
    ExporterAddress => "ExporterAddress", exporter_address: Addr, set_exporter_address;
    ObservationDomain => "ObservationDomain", observation_domain: u32, set_observation_domain;
    FlowStart => "FlowStart", flow_start_ns: u64, set_flow_start_ns;
    FlowEnd => "FlowEnd", flow_end_ns: u64, set_flow_end_ns;
    SrcAddr => "SrcAddr", src_addr: Addr, set_src_addr;
    DstAddr => "DstAddr", dst_addr: Addr, set_dst_addr;
    SrcNetMask => "SrcNetMask", src_net_mask: u8, set_src_net_mask;
    DstNetMask => "DstNetMask", dst_net_mask: u8, set_dst_net_mask;
    SrcAS => "SrcAS", src_as: u32, set_src_as;
    DstAS => "DstAS", dst_as: u32, set_dst_as;
    NextHop => "NextHop", next_hop: Addr, set_next_hop;
    BGPNextHop => "BGPNextHop", bgp_next_hop: Addr, set_bgp_next_hop;
    InIfIndex => "InIfIndex", in_if_index: u32, set_in_if_index;
    OutIfIndex => "OutIfIndex", out_if_index: u32, set_out_if_index;
    InIfPhysicalIndex => "InIfPhysicalIndex", in_if_physical_index: u32, set_in_if_physical_index;
    OutIfPhysicalIndex => "OutIfPhysicalIndex", out_if_physical_index: u32, set_out_if_physical_index;
    EType => "EType", etype: u16, set_etype;
    Proto => "Proto", proto: u8, set_proto;
    SrcPort => "SrcPort", src_port: u16, set_src_port;
    DstPort => "DstPort", dst_port: u16, set_dst_port;
    Bytes => "Bytes", bytes: u64, set_bytes;
    Packets => "Packets", packets: u64, set_packets;
    ForwardingStatus => "ForwardingStatus", forwarding_status: u8, set_forwarding_status;
    FlowDirection => "FlowDirection", flow_direction: u8, set_flow_direction;
    SrcAddrNAT => "SrcAddrNAT", src_addr_nat: Addr, set_src_addr_nat;
    DstAddrNAT => "DstAddrNAT", dst_addr_nat: Addr, set_dst_addr_nat;
    SrcPortNAT => "SrcPortNAT", src_port_nat: u16, set_src_port_nat;
    DstPortNAT => "DstPortNAT", dst_port_nat: u16, set_dst_port_nat;
    SrcMAC => "SrcMAC", src_mac: [u8; 6], set_src_mac;
    DstMAC => "DstMAC", dst_mac: [u8; 6], set_dst_mac;
    SrcVlan => "SrcVlan", src_vlan: u16, set_src_vlan;
    DstVlan => "DstVlan", dst_vlan: u16, set_dst_vlan;
    IPTTL => "IPTTL", ip_ttl: u8, set_ip_ttl;
    IPTos => "IPTos", ip_tos: u8, set_ip_tos;
    IPFragmentID => "IPFragmentID", ip_fragment_id: u32, set_ip_fragment_id;
    IPFragmentOffset => "IPFragmentOffset", ip_fragment_offset: u16, set_ip_fragment_offset;
    IPv6FlowLabel => "IPv6FlowLabel", ipv6_flow_label: u32, set_ipv6_flow_label;
    TCPFlags => "TCPFlags", tcp_flags: u16, set_tcp_flags;
    ICMPv4Type => "ICMPv4Type", icmpv4_type: u8, set_icmpv4_type;
    ICMPv4Code => "ICMPv4Code", icmpv4_code: u8, set_icmpv4_code;
    ICMPv6Type => "ICMPv6Type", icmpv6_type: u8, set_icmpv6_type;
    ICMPv6Code => "ICMPv6Code", icmpv6_code: u8, set_icmpv6_code;
    IngressVRFID => "IngressVRFID", ingress_vrf_id: u32, set_ingress_vrf_id;
    EgressVRFID => "EgressVRFID", egress_vrf_id: u32, set_egress_vrf_id;
    MPLSLabels => "MPLSLabels", mpls_labels_present: bool, set_mpls_labels_present;
    DstASPath => "DstASPath", dst_as_path_present: bool, set_dst_as_path_present;
    DstCommunities => "DstCommunities", dst_communities_present: bool, set_dst_communities_present;
}

impl FlowRecord {
    /// Forgets every field: cheap (no memset of the values).
    #[inline]
    pub fn clear(&mut self) {
        self.present = 0;
        self.mpls_labels_len = 0;
        self.dst_as_path_len = 0;
        self.dst_communities_len = 0;
    }

    /// Field `i`'s value in `numbers` (`numbers()`'s), 0 when absent.
    #[inline(always)]
    pub fn number(&self, numbers: &[u64; FIELDS], i: usize) -> u64 {
        let present = 0u64.wrapping_sub((self.present >> (i & 63)) & 1);
        numbers.get(i).copied().unwrap_or(0) & present
    }

    /// An address field's value; zeros when absent or when `field` is
    /// not an address.
    #[inline]
    pub fn address(&self, field: Field) -> Addr {
        match self.value(field) {
            Some(Value::Addr(a)) => *a,
            _ => [0; 16],
        }
    }

    /// Whether `field` holds a value.
    #[inline]
    pub fn has(&self, field: Field) -> bool {
        self.present & field.bit() != 0
    }

    /// Whether any of `fields` holds a value: one test when `fields` is
    /// known at compile time.
    #[inline]
    pub fn has_any(&self, fields: &[Field]) -> bool {
        self.present & fields.iter().fold(0, |mask, f| mask | f.bit()) != 0
    }

    /// ICMP's type and code from the destination port (type << 8 | code,
    /// where v5 and most v9/IPFIX exporters put them), for an ICMP or
    /// ICMPv6 flow that has no type of its own.
    pub fn icmp_from_dst_port(&mut self) {
        let (t, c) = ((self.dst_port >> 8) as u8, self.dst_port as u8);
        match self.proto {
            1 if !self.has(Field::ICMPv4Type) => {
                self.set_icmpv4_type(t);
                self.set_icmpv4_code(c);
            }
            58 if !self.has(Field::ICMPv6Type) => {
                self.set_icmpv6_type(t);
                self.set_icmpv6_code(c);
            }
            _ => {}
        }
    }

    /// Drops `field`'s value.
    #[inline]
    pub fn unset(&mut self, field: Field) {
        self.present &= !field.bit();
    }

    /// Sets the MPLS label at stack position `position` (0 = top). Positions
    /// past `MPLS_LABELS_MAX` are ignored; returns whether the label was kept.
    pub fn set_mpls_label(&mut self, position: usize, label: u32) -> bool {
        if position >= MPLS_LABELS_MAX {
            return false;
        }
        for slot in self.mpls_labels_len as usize..position {
            self.mpls_labels[slot] = 0;
        }
        self.mpls_labels[position] = label;
        self.mpls_labels_len = self.mpls_labels_len.max(position as u8 + 1);
        self.set_mpls_labels_present(true);
        true
    }

    /// The MPLS label stack, top first.
    pub fn mpls_labels(&self) -> &[u32] {
        &self.mpls_labels[..self.mpls_labels_len as usize]
    }

    /// Appends an AS to the destination AS path; returns false when full.
    pub fn push_dst_as_path(&mut self, asn: u32) -> bool {
        self.set_dst_as_path_present(true);
        let len = self.dst_as_path_len as usize;
        if len >= AS_PATH_MAX {
            return false;
        }
        self.dst_as_path[len] = asn;
        self.dst_as_path_len += 1;
        true
    }

    pub fn dst_as_path(&self) -> &[u32] {
        &self.dst_as_path[..self.dst_as_path_len as usize]
    }

    /// Appends a community of the destination route; returns false when full.
    pub fn push_dst_community(&mut self, community: u32) -> bool {
        self.set_dst_communities_present(true);
        let len = self.dst_communities_len as usize;
        if len >= COMMUNITIES_MAX {
            return false;
        }
        self.dst_communities[len] = community;
        self.dst_communities_len += 1;
        true
    }

    pub fn dst_communities(&self) -> &[u32] {
        &self.dst_communities[..self.dst_communities_len as usize]
    }

    /// Turns a forward flow into its reverse (RFC 5103 biflows): swaps the
    /// endpoint fields. Counters are set by the caller.
    pub fn swap_direction(&mut self) {
        macro_rules! swap {
            ($a:ident, $b:ident, $fa:ident, $fb:ident) => {
                std::mem::swap(&mut self.$a, &mut self.$b);
                self.present = swap_bits_in(self.present, Field::$fa, Field::$fb);
            };
        }
        swap!(src_addr, dst_addr, SrcAddr, DstAddr);
        swap!(src_port, dst_port, SrcPort, DstPort);
        swap!(src_net_mask, dst_net_mask, SrcNetMask, DstNetMask);
        swap!(src_as, dst_as, SrcAS, DstAS);
        swap!(in_if_index, out_if_index, InIfIndex, OutIfIndex);
        swap!(src_mac, dst_mac, SrcMAC, DstMAC);
        swap!(src_vlan, dst_vlan, SrcVlan, DstVlan);
        swap!(src_addr_nat, dst_addr_nat, SrcAddrNAT, DstAddrNAT);
        swap!(src_port_nat, dst_port_nat, SrcPortNAT, DstPortNAT);
    }
}

fn swap_bits_in(mask: u64, a: Field, b: Field) -> u64 {
    let (ha, hb) = (mask & a.bit() != 0, mask & b.bit() != 0);
    let mut m = mask & !(a.bit() | b.bit());
    if ha {
        m |= b.bit();
    }
    if hb {
        m |= a.bit();
    }
    m
}

/// A field's value, typed for writers (JSON, row encoders).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Uint(u64),
    /// Nanoseconds since the Unix epoch.
    Time(u64),
    Addr(&'a Addr),
    Mac(&'a [u8; 6]),
    List(&'a [u32]),
}

/// A field's value as `FlowRecord::numbers` gives it.
trait IntoNumber {
    fn number(&self) -> u64;
}

macro_rules! uint_number {
    ($($t:ty),*) => {$(
        impl IntoNumber for $t {
            #[inline(always)]
            fn number(&self) -> u64 {
                *self as u64
            }
        }
    )*};
}
uint_number!(u8, u16, u32, u64);

impl IntoNumber for bool {
    #[inline(always)]
    fn number(&self) -> u64 {
        0
    }
}

impl IntoNumber for Addr {
    #[inline(always)]
    fn number(&self) -> u64 {
        0
    }
}

impl IntoNumber for [u8; 6] {
    /// 48 bits, most significant first, as MACNumToString reads them.
    #[inline(always)]
    fn number(&self) -> u64 {
        let mut word = [0u8; 8];
        word[2..].copy_from_slice(self);
        u64::from_be_bytes(word)
    }
}

trait IntoValue {
    fn value<'a>(&'a self, flow: &'a FlowRecord, field: Field) -> Value<'a>;
}

macro_rules! uint_value {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn value<'a>(&'a self, _: &'a FlowRecord, field: Field) -> Value<'a> {
                match field {
                    Field::TimeReceived | Field::FlowStart | Field::FlowEnd => Value::Time(*self as u64),
                    _ => Value::Uint(*self as u64),
                }
            }
        }
    )*};
}
uint_value!(u8, u16, u32, u64);

impl IntoValue for Addr {
    fn value<'a>(&'a self, _: &'a FlowRecord, _: Field) -> Value<'a> {
        Value::Addr(self)
    }
}

impl IntoValue for [u8; 6] {
    fn value<'a>(&'a self, _: &'a FlowRecord, _: Field) -> Value<'a> {
        Value::Mac(self)
    }
}

impl IntoValue for bool {
    fn value<'a>(&'a self, flow: &'a FlowRecord, field: Field) -> Value<'a> {
        Value::List(match field {
            Field::MPLSLabels => flow.mpls_labels(),
            Field::DstASPath => flow.dst_as_path(),
            _ => flow.dst_communities(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `numbers`, `number` and `address` (what `Columns::push` reads) say
    /// what `value` says, field by field, present or not.
    #[test]
    fn numbers_and_addresses_agree_with_values() {
        let mut f = FlowRecord::default();
        f.set_time_received_ns(1_700_000_000_123_456_789);
        f.set_src_port(443);
        f.set_proto(6);
        f.set_in_if_index(u32::MAX);
        f.set_bytes(u64::MAX);
        f.set_src_addr([7; 16]);
        f.set_src_mac([1, 2, 3, 4, 5, 6]);
        f.dst_port = 80; // stored, not present: reads as absent
        f.dst_addr = [9; 16];
        let numbers = f.numbers();
        for (i, &field) in Field::ALL.iter().enumerate() {
            let (number, address) = match f.value(field) {
                None => (0, [0; 16]),
                Some(Value::Uint(v) | Value::Time(v)) => (v, [0; 16]),
                Some(Value::Addr(a)) => (0, *a),
                Some(Value::Mac(m)) => (0x0102_0304_0506 * u64::from(m == &[1, 2, 3, 4, 5, 6]), [0; 16]),
                Some(Value::List(_)) => (0, [0; 16]),
            };
            assert_eq!(f.number(&numbers, i), number, "{field:?}");
            assert_eq!(f.address(field), address, "{field:?}");
        }
    }

    #[test]
    fn presence_follows_setters_and_clear() {
        let mut f = FlowRecord::default();
        assert!(!f.has(Field::SrcPort));
        f.set_src_port(443);
        assert!(f.has(Field::SrcPort));
        f.clear();
        assert!(!f.has(Field::SrcPort));
    }

    #[test]
    fn fields_fit_the_presence_mask() {
        assert!(Field::ALL.len() <= 64);
        assert_eq!(Field::ALL[Field::ALL.len() - 1] as usize, Field::ALL.len() - 1);
    }

    #[test]
    fn v4_mapping_round_trips() {
        let a = addr_from_v4([192, 0, 2, 1]);
        assert_eq!(addr_as_v4(&a), Some([192, 0, 2, 1]));
        assert_eq!(addr_to_ip(&a).to_string(), "192.0.2.1");
        let v6: Addr = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(addr_as_v4(&v6), None);
    }

    #[test]
    fn filling_absent_fields_keeps_the_record_own_ones() {
        let mut own = FlowRecord::default();
        own.set_src_addr(addr_from_v4([192, 0, 2, 1]));
        own.set_in_if_index(7);
        let mut frame = FlowRecord::default();
        frame.set_src_addr(addr_from_v4([10, 0, 0, 1]));
        frame.set_dst_addr(addr_from_v4([10, 0, 0, 2]));
        frame.set_mpls_label(0, 16);
        own.fill_absent_from(&frame);
        assert_eq!(addr_to_ip(&own.src_addr).to_string(), "192.0.2.1");
        assert_eq!(addr_to_ip(&own.dst_addr).to_string(), "10.0.0.2");
        assert_eq!((own.in_if_index, own.mpls_labels()), (7, &[16][..]));
        assert!(!own.has(Field::Proto));
    }

    #[test]
    fn swap_direction_moves_presence_with_values() {
        let mut f = FlowRecord::default();
        f.set_src_port(1234);
        f.set_in_if_index(7);
        f.swap_direction();
        assert!(!f.has(Field::SrcPort) && f.has(Field::DstPort));
        assert_eq!(f.dst_port, 1234);
        assert!(f.has(Field::OutIfIndex) && !f.has(Field::InIfIndex));
        assert_eq!(f.out_if_index, 7);
    }

    #[test]
    fn mpls_positions_fill_gaps_and_bound() {
        let mut f = FlowRecord::default();
        assert!(f.set_mpls_label(1, 20));
        assert_eq!(f.mpls_labels(), &[0, 20]);
        assert!(!f.set_mpls_label(MPLS_LABELS_MAX, 1));
    }
}
