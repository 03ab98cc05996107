//! A deterministic traffic mix, and datagrams of every format built from it
//! with `weir_core::encode` — the encoder the decoder property tests check.

use weir_core::encode::{
    netflow_v5, ExportHeader, MessageBuilder, SflowAgent, SflowBuilder, SflowSampleOptions, TemplateSpec,
};
use weir_core::flow::{addr_from_v4, FlowRecord};
use weir_core::wire::template::{FieldSpec, Protocol};

/// 2026-01-01T00:00:00Z: export time of every generated datagram.
pub const EXPORT_TIME_S: u32 = 1_767_225_600;
/// The exporter's uptime at `EXPORT_TIME_S`.
pub const UPTIME_MS: u32 = 86_400_000;
/// Bytes of payload a generated datagram fills (an Ethernet MTU, less headers).
pub const DATAGRAM_BYTES_MAX: usize = 1400;
/// The data template id of generated NetFlow v9 / IPFIX.
pub const DATA_TEMPLATE_ID: u16 = 256;
/// The options template id announcing the sampling rate.
pub const SAMPLING_TEMPLATE_ID: u16 = 257;
/// The sampling rate the options template announces for sampler 1.
pub const SAMPLING_RATE: u64 = 1000;

/// xorshift64*: small, fast and deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Roughly Zipf(1) over 0..n: small values are far more likely.
    pub fn zipf(&mut self, n: u64) -> u64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as u64).saturating_sub(1).min(n - 1)
    }
}

/// An IPv4 prefix flows draw addresses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub base: u32,
    pub len: u8,
}

impl Prefix {
    /// Addresses in the prefix (at most 2^32 - 1).
    pub fn size(&self) -> u64 {
        (1u64 << (32 - self.len as u32)).min(u32::MAX as u64)
    }

    /// The `i`-th address (wrapping inside the prefix).
    pub fn nth(&self, i: u64) -> [u8; 4] {
        (self.base.wrapping_add((i % self.size()) as u32)).to_be_bytes()
    }
}

impl std::str::FromStr for Prefix {
    type Err = String;

    /// `A.B.C.D/L` (or a bare address, a /32).
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
        let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| format!("{s}: not an IPv4 prefix"))?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("{s}: bad prefix length"))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
        Ok(Prefix { base: u32::from(addr) & mask, len })
    }
}

/// What the generated traffic looks like.
#[derive(Clone, Debug)]
pub struct MixConfig {
    /// Source addresses (the network behind the router); the first prefix
    /// and its first hosts are the top talkers.
    pub sources: Vec<Prefix>,
    /// Destination addresses (the Internet side), Zipf-like too.
    pub destinations: Vec<Prefix>,
    /// The sampling rate exporters announce (1 = unsampled).
    pub sampling_rate: u64,
    /// Flow end times fall in the 30 s before this (seconds since the epoch).
    pub now_s: u32,
}

impl Default for MixConfig {
    fn default() -> Self {
        MixConfig {
            sources: vec![Prefix { base: 0x0a00_0000, len: 16 }],
            destinations: vec![Prefix { base: 0xc612_0000, len: 15 }],
            sampling_rate: SAMPLING_RATE,
            now_s: EXPORT_TIME_S,
        }
    }
}

/// Flows as a border router sees them.
pub struct FlowMix {
    rng: Rng,
    config: MixConfig,
}

/// The largest remote networks, by traffic share (the rest are drawn
/// from 65 000 + Zipf).
const REMOTE_ASES: [u32; 8] = [15_169, 13_335, 16_509, 32_934, 8_075, 2_906, 20_940, 714];

const PORTS: [(u8, u16); 10] =
    [(6, 443), (6, 80), (17, 53), (17, 443), (6, 22), (6, 25), (17, 123), (6, 993), (6, 8080), (1, 0)];

impl FlowMix {
    /// The default mix (10.0.0.0/16 to 198.18.0.0/15, 1-in-1000 sampling,
    /// flows ending just before `EXPORT_TIME_S`).
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, MixConfig::default())
    }

    pub fn with_config(seed: u64, config: MixConfig) -> Self {
        FlowMix { rng: Rng::new(seed), config }
    }

    pub fn config(&self) -> &MixConfig {
        &self.config
    }

    fn pick(rng: &mut Rng, prefixes: &[Prefix], hosts_max: u64) -> [u8; 4] {
        let p = match prefixes {
            [one] => *one,
            _ => prefixes[rng.zipf(prefixes.len().max(1) as u64) as usize % prefixes.len().max(1)],
        };
        p.nth(rng.zipf(p.size().min(hosts_max)))
    }

    pub fn next_flow(&mut self) -> FlowRecord {
        let (r, c) = (&mut self.rng, &self.config);
        let mut f = FlowRecord::default();
        // Top talkers: a few hosts send most flows.
        f.set_src_addr(addr_from_v4(Self::pick(r, &c.sources, 65_536)));
        f.set_dst_addr(addr_from_v4(Self::pick(r, &c.destinations, 1 << 20)));
        let (proto, port) = PORTS[r.zipf(PORTS.len() as u64) as usize];
        f.set_proto(proto);
        f.set_src_port(if proto == 1 { 0 } else { 32_768 + r.below(28_000) as u16 });
        f.set_dst_port(port);
        let packets = 1 + r.zipf(10_000);
        let packet_size = [64, 576, 1500, 1200, 40][r.below(5) as usize];
        f.set_packets(packets);
        f.set_bytes(packets * packet_size);
        f.set_tcp_flags(if proto == 6 { 0x1b } else { 0 });
        f.set_ip_tos([0, 0, 0, 0x28, 0xb8][r.below(5) as usize]);
        // A border router: traffic between remote networks (a few big
        // ones carry most of it) and the customers behind it, 70 % inbound.
        // A remote AS arrives over one of 4 uplinks (another one 10 % of
        // the time), a customer sits behind its own port (two for some),
        // so interfaces follow the ASes as they do on a real router.
        let remote = REMOTE_ASES.get(r.zipf(1000) as usize).copied().unwrap_or(0);
        let remote = if remote == 0 { 65_000 + r.zipf(1000) as u32 } else { remote };
        let customer = r.zipf(20) as u32;
        let uplink = 1 + if r.below(10) == 0 { r.below(4) as u32 } else { remote % 4 };
        let port = 5 + customer * 2 + (r.below(5) == 0) as u32;
        let (local_as, inbound) = (64_496 + customer, r.below(10) < 7);
        let (src_as, dst_as, in_if, out_if) =
            if inbound { (remote, local_as, uplink, port) } else { (local_as, remote, port, uplink) };
        f.set_in_if_index(in_if);
        f.set_out_if_index(out_if);
        f.set_src_as(src_as);
        f.set_dst_as(dst_as);
        f.set_src_net_mask(24);
        f.set_dst_net_mask([16, 20, 24][r.below(3) as usize]);
        let end_ms = c.now_s as u64 * 1000 - r.below(30_000);
        f.set_flow_start_ns((end_ms - r.below(60_000)) * 1_000_000);
        f.set_flow_end_ns(end_ms * 1_000_000);
        f.set_sampling_rate(c.sampling_rate);
        f
    }
}

pub use weir_core::Format;

/// One exporter's identity and header values for the datagrams it sends.
#[derive(Clone, Copy, Debug)]
pub struct Exporter {
    pub format: Format,
    /// v9 source id / IPFIX observation domain / v5 engine id.
    pub domain: u32,
    /// The sFlow agent address.
    pub agent: [u8; 4],
    pub export_time_s: u32,
    pub uptime_ms: u32,
    /// Flow records per datagram; `None` fills `DATAGRAM_BYTES_MAX` bytes
    /// (v5: 30, its maximum).
    pub records: Option<usize>,
}

impl Exporter {
    /// The defaults the decoder benchmarks use.
    pub fn bench(format: Format) -> Self {
        Exporter {
            format,
            domain: 1,
            agent: [192, 0, 2, 1],
            export_time_s: EXPORT_TIME_S,
            uptime_ms: UPTIME_MS,
            records: None,
        }
    }

    fn header(&self, sequence: u32) -> ExportHeader {
        ExportHeader { export_time_s: self.export_time_s, sys_uptime_ms: self.uptime_ms, sequence, domain: self.domain }
    }
}

/// How far a data datagram of `flows` records moves its header's sequence
/// number: datagrams for v9 and sFlow, flows for v5, data records for IPFIX.
pub fn sequence_step(format: Format, flows: u32) -> u32 {
    match format {
        Format::NetflowV9 | Format::SflowV5 => 1,
        Format::NetflowV5 | Format::Ipfix => flows,
    }
}

/// One generated datagram and what it carries.
#[derive(Clone, Debug)]
pub struct Generated {
    pub bytes: Vec<u8>,
    pub flows: u32,
    /// Sums of the flow records' packet and byte counters (as exported,
    /// before the sampling rate is applied).
    pub packets: u64,
    pub octets: u64,
}

/// The data template of generated NetFlow v9 / IPFIX: what a router sends,
/// plus the sampler id that ties each record to its sampling rate.
pub fn data_template() -> TemplateSpec {
    let mut t = TemplateSpec::compact_ipv4(DATA_TEMPLATE_ID);
    t.fields.push(FieldSpec { id: 48, pen: 0, len: 1 });
    t
}

/// The datagram that announces the templates and the sampling rate
/// (NetFlow v9 / IPFIX only), with sequence number `sequence`.
pub fn exporter_templates(e: &Exporter, sampling_rate: u64, sequence: u32) -> Option<Vec<u8>> {
    let protocol = e.format.templated()?;
    let mut m = MessageBuilder::new(protocol, e.header(sequence), Vec::new());
    m.template(&data_template());
    let (scope, options) = ([FieldSpec { id: 48, pen: 0, len: 1 }], [FieldSpec { id: 34, pen: 0, len: 4 }]);
    m.options_template(SAMPLING_TEMPLATE_ID, &scope, &options);
    m.raw_record(SAMPLING_TEMPLATE_ID, &[scope[0], options[0]], &[1, sampling_rate]);
    Some(m.finish())
}

/// One data datagram of `e`'s format from `mix`.
pub fn exporter_datagram(e: &Exporter, mix: &mut FlowMix, sequence: u32) -> Generated {
    let mut g = Generated { bytes: Vec::new(), flows: 0, packets: 0, octets: 0 };
    let mut take = |mix: &mut FlowMix| {
        let f = mix.next_flow();
        g.flows += 1;
        g.packets += f.packets;
        g.octets += f.bytes;
        f
    };
    let limit = e.records.unwrap_or(usize::MAX).max(1);
    match e.format {
        Format::NetflowV5 => {
            let flows: Vec<FlowRecord> = (0..limit.min(30)).map(|_| take(mix)).collect();
            let rate = mix.config().sampling_rate.min(0x3fff) as u16;
            netflow_v5(&e.header(sequence), (0, e.domain as u8), rate, &flows, &mut g.bytes);
        }
        Format::NetflowV9 | Format::Ipfix => {
            let protocol = e.format.templated().expect("templated");
            let t = data_template();
            let record_len: usize = t.fields.iter().map(|f| f.len as usize).sum();
            let mut m = MessageBuilder::new(protocol, e.header(sequence), Vec::new());
            m.set_sampler_id(1); // the sampler `exporter_templates` announces
            let mut records = 0;
            while records < limit && (e.records.is_some() || m.len() + record_len + 4 <= DATAGRAM_BYTES_MAX) {
                m.data(&t, &take(mix));
                records += 1;
            }
            g.bytes = m.finish();
        }
        Format::SflowV5 => {
            let agent =
                SflowAgent { address: addr_from_v4(e.agent), sub_agent_id: 0, sequence, uptime_ms: e.uptime_ms };
            let opts = SflowSampleOptions { expanded: false, extended: true };
            let mut datagram = SflowBuilder::new(&agent, opts, Vec::with_capacity(DATAGRAM_BYTES_MAX));
            let bytes_max = if e.records.is_some() { usize::MAX } else { DATAGRAM_BYTES_MAX };
            while (datagram.samples() as usize) < limit {
                let mut f = mix.next_flow();
                // A sample is one packet: the frame length is a packet size.
                f.set_bytes(f.bytes / f.packets.max(1));
                f.set_packets(1);
                f.set_src_mac([2, 0, 0, 0, 0, 1]);
                f.set_dst_mac([2, 0, 0, 0, 0, 2]);
                f.set_next_hop(addr_from_v4([192, 0, 2, 254]));
                f.set_bgp_next_hop(addr_from_v4([203, 0, 113, 1]));
                f.push_dst_as_path(64_500);
                f.push_dst_as_path(f.dst_as);
                if !datagram.push(&f, bytes_max) {
                    break; // full: the next datagram draws fresh flows
                }
                g.flows += 1;
                g.packets += f.packets;
                g.octets += f.bytes;
            }
            g.bytes = datagram.finish();
        }
    }
    g
}

/// The datagram that announces the templates and the sampling rate.
pub fn template_datagram(protocol: Protocol) -> Vec<u8> {
    let format = if protocol == Protocol::Ipfix { Format::Ipfix } else { Format::NetflowV9 };
    exporter_templates(&Exporter::bench(format), SAMPLING_RATE, 0).expect("templated")
}

fn datagrams(format: Format, mix: &mut FlowMix, count: usize) -> (Vec<Vec<u8>>, usize) {
    let e = Exporter::bench(format);
    let mut records = 0;
    let mut sequence = 0u32;
    let datagrams = (0..count)
        .map(|_| {
            let g = exporter_datagram(&e, mix, sequence);
            sequence = sequence.wrapping_add(sequence_step(format, g.flows));
            records += g.flows as usize;
            g.bytes
        })
        .collect();
    (datagrams, records)
}

/// Data datagrams of up to `DATAGRAM_BYTES_MAX` bytes; returns them and the
/// number of flow records they hold.
pub fn data_datagrams(protocol: Protocol, mix: &mut FlowMix, count: usize) -> (Vec<Vec<u8>>, usize) {
    datagrams(if protocol == Protocol::Ipfix { Format::Ipfix } else { Format::NetflowV9 }, mix, count)
}

/// NetFlow v5 datagrams of 30 records each.
/// Decodes `datagrams` with `decoder` as the decode benchmarks do (one
/// exporter, the default listener options); returns the sum of the flows'
/// bytes, for the caller to keep the work from being optimized away.
pub fn decode_all(decoder: &mut weir_core::Decoder, datagrams: &[Vec<u8>]) -> u64 {
    let mut bytes = 0u64;
    for payload in datagrams {
        let d = weir_core::Datagram {
            exporter: addr_from_v4([192, 0, 2, 1]),
            received_ns: 1,
            payload,
            ..Default::default()
        };
        let _ = decoder.decode(&d, &mut |f: &FlowRecord| bytes = bytes.wrapping_add(f.bytes));
    }
    bytes
}

pub fn v5_datagrams(mix: &mut FlowMix, count: usize) -> (Vec<Vec<u8>>, usize) {
    datagrams(Format::NetflowV5, mix, count)
}

/// sFlow v5 datagrams of flow samples (Ethernet header samples plus
/// extended switch, router and gateway records), up to `DATAGRAM_BYTES_MAX`.
pub fn sflow_datagrams(mix: &mut FlowMix, count: usize) -> (Vec<Vec<u8>>, usize) {
    datagrams(Format::SflowV5, mix, count)
}

/// The store bench's batch: 65 536 flows of the mix over 4 exporters
/// (192.0.2.1-4, one after the other), 2 µs apart (`benches/store.rs`,
/// `weir-decode-count store`).
pub fn store_flows() -> Vec<FlowRecord> {
    store_flows_from(7)
}

/// `store_flows` from another seed of the mix.
pub fn store_flows_from(seed: u64) -> Vec<FlowRecord> {
    let mut mix = FlowMix::new(seed);
    (0..65_536u64)
        .map(|i| {
            let mut f = mix.next_flow();
            f.set_exporter_address(addr_from_v4([192, 0, 2, 1 + (i % 4) as u8]));
            f.set_time_received_ns(1_764_000_000_000_000_000 + i * 2_000);
            f
        })
        .collect()
}

/// A snapshot that knows every exporter and interface of `flows`: the
/// exporters of 192.0.2.0/24 with a site, each interface named, described
/// and classified by the subnet's default interface (a warm cache, as
/// after a collector's first seconds).
pub fn known_snapshot(flows: &[FlowRecord]) -> weir_core::enrich::metadata::Snapshot {
    use weir_core::config::{MetadataConfig, StaticExporter, StaticInterface};
    use weir_core::enrich::metadata::Resolver;
    let config = MetadataConfig {
        exporters: vec![StaticExporter {
            subnet: "192.0.2.0/24".into(),
            site: "par".into(),
            default_interface: Some(StaticInterface {
                name: "et-0/0/0".into(),
                description: "Transit: Cogent".into(),
                speed: 100_000,
                provider: "cogent".into(),
                connectivity: "transit".into(),
                boundary: "external".into(),
            }),
            ..StaticExporter::default()
        }],
        ..MetadataConfig::default()
    };
    let mut resolver = Resolver::new(&config, weir_core::wire::state::KeyHash::with_seed(5));
    for f in flows {
        resolver.resolve(&f.exporter_address, f.in_if_index);
        resolver.resolve(&f.exporter_address, f.out_if_index);
    }
    resolver.snapshot().expect("resolved")
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Datagram, Decoder};

    #[test]
    fn generated_datagrams_decode_with_their_sampling_rate() {
        let mut mix = FlowMix::new(7);
        for protocol in [Protocol::Ipfix, Protocol::NetflowV9] {
            let mut dec = Decoder::default();
            let (data, records) = data_datagrams(protocol, &mut mix, 4);
            assert!(records / 4 >= 20, "~1400-byte datagrams of 20-30 records");
            let mut flows = 0;
            for d in std::iter::once(template_datagram(protocol)).chain(data) {
                let dg = Datagram {
                    exporter: addr_from_v4([192, 0, 2, 1]),
                    received_ns: 0,
                    payload: &d,
                    ..Default::default()
                };
                dec.decode(&dg, &mut |f: &FlowRecord| {
                    assert_eq!(f.sampling_rate, SAMPLING_RATE);
                    flows += 1;
                })
                .unwrap();
            }
            assert_eq!(flows, records);
        }
        for (data, records) in [v5_datagrams(&mut mix, 2), sflow_datagrams(&mut mix, 2)] {
            let mut dec = Decoder::default();
            for d in &data {
                let dg = Datagram {
                    exporter: addr_from_v4([192, 0, 2, 1]),
                    received_ns: 0,
                    payload: d,
                    ..Default::default()
                };
                dec.decode(&dg, &mut |_: &FlowRecord| {}).unwrap();
            }
            assert_eq!(dec.counters().flows as usize, records);
            assert_eq!(dec.counters().errors_total(), 0);
        }
    }

    #[test]
    fn the_mix_has_top_talkers() {
        let mut mix = FlowMix::new(1);
        let top = (0..10_000).filter(|_| mix.next_flow().src_addr[14] == 0).count();
        assert!(top > 2_000, "host 10.0.0.x carries a large share: {top}");
    }
}
