//! NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records. The
//! header's last two bytes carry the sampling mode (2 bits) and interval (14).

use zerocopy::byteorder::big_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, KnownLayout, Unaligned};

use super::{Datagram, DecodeError, Reason, TimestampSource};
use crate::decoder::Decoder;
use crate::flow::{addr_from_v4, FlowRecord};

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Header {
    pub version: U16,
    pub count: U16,
    pub sys_uptime_ms: U32,
    pub unix_secs: U32,
    pub unix_nsecs: U32,
    pub flow_sequence: U32,
    pub engine_type: u8,
    pub engine_id: u8,
    pub sampling: U16,
}

#[derive(FromBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Record {
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    pub next_hop: [u8; 4],
    pub input: U16,
    pub output: U16,
    pub packets: U32,
    pub octets: U32,
    pub first_ms: U32,
    pub last_ms: U32,
    pub src_port: U16,
    pub dst_port: U16,
    pub pad1: u8,
    pub tcp_flags: u8,
    pub proto: u8,
    pub tos: u8,
    pub src_as: U16,
    pub dst_as: U16,
    pub src_mask: u8,
    pub dst_mask: u8,
    pub pad2: U16,
}

/// Records a v5 packet may carry.
pub const RECORDS_MAX: usize = 30;
pub const HEADER_LEN: usize = 24;
pub const RECORD_LEN: usize = 48;

pub(crate) fn decode<F: FnMut(&FlowRecord)>(dec: &mut Decoder, d: &Datagram, sink: &mut F) -> Result<(), DecodeError> {
    let Ok((h, body)) = Header::ref_from_prefix(d.payload) else {
        return Err(dec.counters.error(DecodeError::new(Reason::Truncated, "v5 header")));
    };
    let count = h.count.get() as usize;
    if count == 0 || count > RECORDS_MAX {
        return Err(dec.counters.error(DecodeError::new(Reason::BadLength, "v5 record count")));
    }
    let Ok((records, _)) = <[Record]>::ref_from_prefix_with_elems(body, count) else {
        return Err(dec.counters.error(DecodeError::new(Reason::Truncated, "v5 records")));
    };
    let interval = (h.sampling.get() & 0x3fff) as u64;
    let domain = (h.engine_type as u32) << 8 | h.engine_id as u32;
    // Boot time in ms since the epoch: FIRST/LAST are sysUptime values.
    let boot_ms =
        h.unix_secs.get() as i64 * 1000 + (h.unix_nsecs.get() / 1_000_000) as i64 - h.sys_uptime_ms.get() as i64;
    let time_received_ns = match d.options.timestamp_source {
        TimestampSource::Export => h.unix_secs.get() as u64 * 1_000_000_000 + h.unix_nsecs.get() as u64,
        TimestampSource::Kernel | TimestampSource::FlowStart => d.received_ns,
    };
    let from_flow_start = d.options.timestamp_source == TimestampSource::FlowStart;
    let f = &mut dec.flow;
    for r in records {
        f.clear();
        f.set_time_received_ns(time_received_ns);
        f.set_exporter_address(d.exporter);
        f.set_observation_domain(domain);
        f.set_sampling_rate(interval.max(1));
        f.set_etype(0x0800);
        f.set_src_addr(addr_from_v4(r.src_addr));
        f.set_dst_addr(addr_from_v4(r.dst_addr));
        f.set_next_hop(addr_from_v4(r.next_hop));
        f.set_in_if_index(r.input.get() as u32);
        f.set_out_if_index(r.output.get() as u32);
        f.set_packets(r.packets.get() as u64);
        f.set_bytes(r.octets.get() as u64);
        let start = boot_ms + r.first_ms.get() as i64;
        let end = boot_ms + r.last_ms.get() as i64;
        if start >= 0 && end >= 0 {
            f.set_flow_start_ns(start as u64 * 1_000_000);
            f.set_flow_end_ns(end as u64 * 1_000_000);
            if from_flow_start {
                f.set_time_received_ns(start as u64 * 1_000_000);
            }
        }
        f.set_src_port(r.src_port.get());
        f.set_dst_port(r.dst_port.get());
        f.set_tcp_flags(r.tcp_flags as u16);
        f.set_proto(r.proto);
        f.set_ip_tos(r.tos);
        f.set_src_as(r.src_as.get() as u32);
        f.set_dst_as(r.dst_as.get() as u32);
        f.set_src_net_mask(r.src_mask);
        f.set_dst_net_mask(r.dst_mask);
        if r.proto == 1 {
            // Cisco puts ICMP type and code in the destination port.
            f.icmp_from_dst_port();
        }
        sink(f);
    }
    dec.counters.flows += count as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::encode::{netflow_v5, ExportHeader};
    use crate::flow::addr_to_ip;
    use crate::wire::testing::{decode, sample_flow_v4, Decoded, NOW_S};
    use crate::{Decoder, Reason};

    fn datagram(sampling: u16, flows: usize) -> Vec<u8> {
        let h = ExportHeader { export_time_s: NOW_S, sys_uptime_ms: 60_000, sequence: 1, domain: 0 };
        let mut icmp = sample_flow_v4();
        icmp.set_proto(1);
        icmp.set_dst_port(3 << 8 | 1);
        let mut list = vec![sample_flow_v4(); flows];
        list[0] = icmp;
        let mut out = Vec::new();
        netflow_v5(&h, (1, 2), sampling, &list, &mut out);
        out
    }

    #[test]
    fn records_header_sampling_and_icmp() {
        let mut bytes = datagram(100, 3);
        bytes[22] |= 0x40; // sampling mode bits do not leak into the interval
        let Decoded(flows, r) = decode(&mut Decoder::default(), &bytes);
        assert!(r.is_ok());
        assert_eq!(flows.len(), 3);
        assert_eq!(flows[0].sampling_rate, 100);
        assert_eq!((flows[0].icmpv4_type, flows[0].icmpv4_code), (3, 1));
        assert_eq!(flows[0].observation_domain, 0x0102);
        let f = &flows[1];
        assert_eq!(addr_to_ip(&f.dst_addr).to_string(), "198.51.100.7");
        assert_eq!((f.bytes, f.packets, f.in_if_index, f.out_if_index), (123_456, 321, 7, 9));
        assert_eq!(f.flow_start_ns, sample_flow_v4().flow_start_ns);
    }

    #[test]
    fn unsampled_is_rate_one() {
        let Decoded(flows, _) = decode(&mut Decoder::default(), &datagram(0, 1));
        assert_eq!(flows[0].sampling_rate, 1);
    }

    #[test]
    fn count_must_fit_the_datagram() {
        let bytes = datagram(0, 2);
        let mut dec = Decoder::default();
        assert_eq!(decode(&mut dec, &bytes[..24 + 48 + 10]).1.unwrap_err().reason, Reason::Truncated);
        let mut zero = bytes.clone();
        zero[2..4].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(decode(&mut dec, &zero).1.unwrap_err().reason, Reason::BadLength);
        let mut many = bytes;
        many[2..4].copy_from_slice(&31u16.to_be_bytes());
        assert_eq!(decode(&mut dec, &many).1.unwrap_err().reason, Reason::BadLength);
    }
}
