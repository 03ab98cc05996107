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

/// Flows as a border router sees them.
pub struct FlowMix {
    rng: Rng,
}

const PORTS: [(u8, u16); 10] =
    [(6, 443), (6, 80), (17, 53), (17, 443), (6, 22), (6, 25), (17, 123), (6, 993), (6, 8080), (1, 0)];

impl FlowMix {
    pub fn new(seed: u64) -> Self {
        FlowMix { rng: Rng::new(seed) }
    }

    pub fn next_flow(&mut self) -> FlowRecord {
        let r = &mut self.rng;
        let mut f = FlowRecord::default();
        // Top talkers: a few hosts of 10.0.0.0/16 send most flows.
        let talker = r.zipf(65_536) as u16;
        f.set_src_addr(addr_from_v4([10, 0, (talker >> 8) as u8, talker as u8]));
        let server = r.zipf(1 << 20) as u32 + 1;
        f.set_dst_addr(addr_from_v4([198, (18 + (server >> 16)) as u8, (server >> 8) as u8, server as u8]));
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
        f.set_in_if_index(1 + r.below(48) as u32);
        f.set_out_if_index(1 + r.below(48) as u32);
        f.set_src_as(64_512 + r.below(100) as u32);
        f.set_dst_as([15_169, 13_335, 16_509, 32_934, 8_075][r.zipf(5) as usize]);
        f.set_src_net_mask(24);
        f.set_dst_net_mask([16, 20, 24][r.below(3) as usize]);
        let end_ms = EXPORT_TIME_S as u64 * 1000 - r.below(30_000);
        f.set_flow_start_ns((end_ms - r.below(60_000)) * 1_000_000);
        f.set_flow_end_ns(end_ms * 1_000_000);
        f.set_sampling_rate(SAMPLING_RATE);
        f
    }
}

/// The data template of generated NetFlow v9 / IPFIX: what a router sends,
/// plus the sampler id that ties each record to its sampling rate.
pub fn data_template() -> TemplateSpec {
    let mut t = TemplateSpec::compact_ipv4(DATA_TEMPLATE_ID);
    t.fields.push(FieldSpec { id: 48, pen: 0, len: 1 });
    t
}

fn header(sequence: u32) -> ExportHeader {
    ExportHeader { export_time_s: EXPORT_TIME_S, sys_uptime_ms: UPTIME_MS, sequence, domain: 1 }
}

/// The datagram that announces the templates and the sampling rate.
pub fn template_datagram(protocol: Protocol) -> Vec<u8> {
    let mut m = MessageBuilder::new(protocol, header(0), Vec::new());
    m.template(&data_template());
    let (scope, options) = ([FieldSpec { id: 48, pen: 0, len: 1 }], [FieldSpec { id: 34, pen: 0, len: 4 }]);
    m.options_template(SAMPLING_TEMPLATE_ID, &scope, &options);
    m.raw_record(SAMPLING_TEMPLATE_ID, &[scope[0], options[0]], &[1, SAMPLING_RATE]);
    m.finish()
}

/// Data datagrams of up to `DATAGRAM_BYTES_MAX` bytes; returns them and the
/// number of flow records they hold.
pub fn data_datagrams(protocol: Protocol, mix: &mut FlowMix, count: usize) -> (Vec<Vec<u8>>, usize) {
    let t = data_template();
    let record_len: usize = t.fields.iter().map(|f| f.len as usize).sum();
    let mut records = 0;
    let datagrams = (0..count)
        .map(|i| {
            let mut m = MessageBuilder::new(protocol, header(i as u32 + 1), Vec::new());
            m.set_sampler_id(1); // the sampler `template_datagram` announces
            while m.len() + record_len + 4 <= DATAGRAM_BYTES_MAX {
                m.data(&t, &mix.next_flow());
                records += 1;
            }
            m.finish()
        })
        .collect();
    (datagrams, records)
}

/// NetFlow v5 datagrams of 30 records each.
pub fn v5_datagrams(mix: &mut FlowMix, count: usize) -> (Vec<Vec<u8>>, usize) {
    let datagrams = (0..count)
        .map(|i| {
            let flows: Vec<FlowRecord> = (0..30).map(|_| mix.next_flow()).collect();
            let mut out = Vec::with_capacity(24 + 30 * 48);
            netflow_v5(&header(i as u32 * 30), (0, 1), 1000, &flows, &mut out);
            out
        })
        .collect();
    (datagrams, count * 30)
}

/// sFlow v5 datagrams of flow samples (Ethernet header samples plus
/// extended switch, router and gateway records), up to `DATAGRAM_BYTES_MAX`.
pub fn sflow_datagrams(mix: &mut FlowMix, count: usize) -> (Vec<Vec<u8>>, usize) {
    let mut records = 0;
    let datagrams = (0..count)
        .map(|i| {
            let agent =
                SflowAgent { address: addr_from_v4([192, 0, 2, 1]), sub_agent_id: 0, sequence: i as u32, uptime_ms: 0 };
            let opts = SflowSampleOptions { expanded: false, extended: true };
            let mut datagram = SflowBuilder::new(&agent, opts, Vec::with_capacity(DATAGRAM_BYTES_MAX));
            loop {
                let mut f = mix.next_flow();
                f.set_src_mac([2, 0, 0, 0, 0, 1]);
                f.set_dst_mac([2, 0, 0, 0, 0, 2]);
                f.set_next_hop(addr_from_v4([192, 0, 2, 254]));
                f.set_bgp_next_hop(addr_from_v4([203, 0, 113, 1]));
                f.push_dst_as_path(64_500);
                f.push_dst_as_path(f.dst_as);
                if !datagram.push(&f, DATAGRAM_BYTES_MAX) {
                    break;
                }
            }
            records += datagram.samples() as usize;
            datagram.finish()
        })
        .collect();
    (datagrams, records)
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
                let dg = Datagram { exporter: addr_from_v4([192, 0, 2, 1]), received_ns: 0, payload: &d };
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
                let dg = Datagram { exporter: addr_from_v4([192, 0, 2, 1]), received_ns: 0, payload: d };
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
