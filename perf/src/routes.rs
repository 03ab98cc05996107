//! A synthetic full BGP table as one router would send it: 950 000 IPv4
//! prefixes (/24 for 60 %, /19–/23 for 30 %, /8–/18 for the rest) and
//! 200 000 IPv6 prefixes (/48 for half, /29–/44 for the rest), each
//! origin AS (75 000 of them) announcing its prefixes with one AS path
//! (2–6 hops through 1 000 transit ASes) and up to 4 communities, as a real
//! table shares attributes. The same table in every run (`benches/rib.rs`,
//! `benches/rib_flush.rs`).

use weir_core::enrich::bmp::{Attrs, Prefix};

/// xorshift64: the same table in every run.
pub fn random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// The table: its prefixes ((network, length) per family) and the
/// attribute sets, one per origin AS.
pub struct FullTable {
    pub v4: Vec<(u32, u8)>,
    pub v6: Vec<(u128, u8)>,
    pub origins: Vec<Attrs>,
}

impl FullTable {
    pub fn new(seed: &mut u64) -> FullTable {
        let origins: Vec<Attrs> = (0..75_000u32)
            .map(|i| {
                let hops = 2 + random(seed) % 5;
                let mut path: Vec<u32> = (0..hops - 1).map(|_| 1000 + (random(seed) % 1000) as u32).collect();
                path.push(10_000 + i);
                let communities: Vec<u32> =
                    (0..random(seed) % 5).map(|_| 3356 << 16 | (random(seed) % 300) as u32).collect();
                Attrs {
                    as_path: path.into(),
                    communities: communities.into(),
                    next_hop: weir_core::flow::addr_from_v4([192, 0, 2, 1]),
                    local_pref: 100,
                    ..Attrs::default()
                }
            })
            .collect();
        let mut v4: Vec<(u32, u8)> = Vec::new();
        for _ in 0..950_000 {
            let r = random(seed);
            let len = match r % 100 {
                0..60 => 24,
                60..90 => 19 + (r >> 8) as u8 % 5,
                _ => 8 + (r >> 8) as u8 % 11,
            };
            v4.push(((random(seed) as u32) & (u32::MAX << (32 - len)), len));
        }
        let mut v6: Vec<(u128, u8)> = Vec::new();
        for _ in 0..200_000 {
            let r = random(seed);
            let len = if r.is_multiple_of(2) { 48 } else { 29 + (r >> 8) as u8 % 16 };
            let net = (0x2000u128 << 112 | u128::from(random(seed)) << 48) & (u128::MAX << (128 - len));
            v6.push((net, len));
        }
        FullTable { v4, v6, origins }
    }

    /// Every route: its prefix (in the 128-bit space) and attributes.
    pub fn routes(&self) -> impl Iterator<Item = (Prefix, &Attrs)> + '_ {
        let v4 = self.v4.iter().enumerate().map(|(i, &(net, len))| {
            let net = u128::from(std::net::Ipv4Addr::from(net).to_ipv6_mapped());
            (Prefix { net, len: len + 96, ..Prefix::default() }, &self.origins[i * 7919 % self.origins.len()])
        });
        let v6 = self.v6.iter().enumerate().map(|(i, &(net, len))| {
            (Prefix { net, len, ..Prefix::default() }, &self.origins[i * 104_729 % self.origins.len()])
        });
        v4.chain(v6)
    }

    /// `n` addresses inside the table's prefixes, IPv4 (mapped) and IPv6.
    pub fn addresses(&self, n: usize, seed: &mut u64) -> (Vec<[u8; 16]>, Vec<[u8; 16]>) {
        let v4 = (0..n)
            .map(|_| {
                let (net, len) = self.v4[(random(seed) % self.v4.len() as u64) as usize];
                let a = net | (random(seed) as u32 & (u32::MAX >> len));
                u128::from(std::net::Ipv4Addr::from(a).to_ipv6_mapped()).to_be_bytes()
            })
            .collect();
        let v6 = (0..n)
            .map(|_| {
                let (net, len) = self.v6[(random(seed) % self.v6.len() as u64) as usize];
                (net | (u128::from(random(seed)) & (u128::MAX >> len))).to_be_bytes()
            })
            .collect();
        (v4, v6)
    }
}
