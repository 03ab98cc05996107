//! The record `weir inlet` produces to Kafka for each datagram and
//! `weir outlet` consumes: the datagram as the receive path saw it (its
//! bytes, exporter, kernel receive time) and the listener's options, so
//! that an outlet decodes it exactly as `weir run` would, with no inlet
//! configuration of its own.
//!
//! Protobuf (`prost`), schema in `RAW_FLOW_PROTO`. The topic carries the
//! schema's version (`topic(base)` = `<base>-v1`): an incompatible change
//! bumps `VERSION`, and inlets and outlets of different versions use
//! different topics instead of misreading each other. Compatible changes
//! (a new optional field) keep it; a record's own `version` field says
//! which inlet wrote it.

use prost::Message;

use crate::flow::Addr;
use crate::wire::{Datagram, Decapsulation, ListenerOptions, TimestampSource};

/// The schema version, in the topic's name and in every record.
pub const VERSION: u32 = 1;

/// The schema, for other consumers of the inlet's topic.
pub const RAW_FLOW_PROTO: &str = r#"syntax = "proto3";
package weir;

// One datagram received by `weir inlet`, topic <kafka.topic>-v1.
message RawFlow {
  uint64 received_ns = 1;      // kernel receive time, Unix nanoseconds
  bytes payload = 2;           // the UDP payload (NetFlow, IPFIX, sFlow)
  bytes exporter = 3;          // 16 bytes, IPv4 as ::ffff:a.b.c.d
  Decapsulation decapsulation = 4;
  TimestampSource timestamp_source = 5;
  uint32 version = 6;          // the schema version of the inlet (1)
  uint32 shard = 7;            // the inlet shard that received it
  enum Decapsulation { NONE = 0; VXLAN = 1; GRE = 2; IPIP = 3; SRV6 = 4; }
  enum TimestampSource { KERNEL = 0; EXPORT = 1; FLOW_START = 2; }
}
"#;

/// One datagram (see `RAW_FLOW_PROTO`).
#[derive(Clone, PartialEq, Message)]
pub struct RawFlow {
    #[prost(uint64, tag = "1")]
    pub received_ns: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub exporter: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub decapsulation: i32,
    #[prost(int32, tag = "5")]
    pub timestamp_source: i32,
    #[prost(uint32, tag = "6")]
    pub version: u32,
    #[prost(uint32, tag = "7")]
    pub shard: u32,
}

/// The topic of version `VERSION` records for `base` (`kafka.topic`).
pub fn topic(base: &str) -> String {
    format!("{base}-v{VERSION}")
}

/// Why a record is not a datagram (the outlet counts and skips it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Not protobuf, or not this message.
    Malformed,
    /// The exporter is not 16 bytes.
    Exporter,
    /// An option this outlet does not know (a newer inlet).
    Option,
}

impl RecordError {
    pub const ALL: [RecordError; 3] = [RecordError::Malformed, RecordError::Exporter, RecordError::Option];

    pub fn label(self) -> &'static str {
        match self {
            RecordError::Malformed => "malformed",
            RecordError::Exporter => "exporter",
            RecordError::Option => "option",
        }
    }
}

impl RawFlow {
    /// Fills the record from `d` (reusing its buffers), received by `shard`.
    pub fn set(&mut self, d: &Datagram, shard: u32) {
        self.received_ns = d.received_ns;
        self.payload.clear();
        self.payload.extend_from_slice(d.payload);
        self.exporter.clear();
        self.exporter.extend_from_slice(&d.exporter);
        self.decapsulation = decapsulation_code(d.options.decapsulation);
        self.timestamp_source = timestamp_code(d.options.timestamp_source);
        self.version = VERSION;
        self.shard = shard;
    }

    /// The record's bytes, into `into` (replacing what it held).
    pub fn write(&self, into: &mut Vec<u8>) {
        into.clear();
        into.reserve(self.encoded_len());
        // A Vec with room for the message: encoding cannot fail.
        let _ = self.encode(into);
    }

    /// Replaces the record with the one in `bytes` (reusing its buffers).
    pub fn read(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        self.clear();
        self.merge(bytes).map_err(|_| RecordError::Malformed)?;
        if self.exporter.len() != 16 {
            return Err(RecordError::Exporter);
        }
        Ok(())
    }

    /// The datagram the record holds (after a successful `read`).
    pub fn datagram(&self) -> Result<Datagram<'_>, RecordError> {
        let exporter: Addr = self.exporter.as_slice().try_into().map_err(|_| RecordError::Exporter)?;
        let options = ListenerOptions {
            decapsulation: decapsulation_of(self.decapsulation).ok_or(RecordError::Option)?,
            timestamp_source: timestamp_of(self.timestamp_source).ok_or(RecordError::Option)?,
        };
        Ok(Datagram { exporter, received_ns: self.received_ns, payload: &self.payload, options })
    }
}

const DECAPSULATIONS: [Decapsulation; 5] =
    [Decapsulation::None, Decapsulation::Vxlan, Decapsulation::Gre, Decapsulation::Ipip, Decapsulation::Srv6];
const TIMESTAMPS: [TimestampSource; 3] = [TimestampSource::Kernel, TimestampSource::Export, TimestampSource::FlowStart];

fn decapsulation_code(d: Decapsulation) -> i32 {
    DECAPSULATIONS.iter().position(|&x| x == d).unwrap_or(0) as i32
}

fn decapsulation_of(code: i32) -> Option<Decapsulation> {
    usize::try_from(code).ok().and_then(|i| DECAPSULATIONS.get(i).copied())
}

fn timestamp_code(t: TimestampSource) -> i32 {
    TIMESTAMPS.iter().position(|&x| x == t).unwrap_or(0) as i32
}

fn timestamp_of(code: i32) -> Option<TimestampSource> {
    usize::try_from(code).ok().and_then(|i| TIMESTAMPS.get(i).copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::addr_from_v4;

    #[test]
    fn a_datagram_goes_through_a_record_unchanged() {
        let payload = [0u8, 10, 0, 1, 2, 3];
        for (decapsulation, timestamp_source) in DECAPSULATIONS.iter().zip(TIMESTAMPS.iter().cycle()) {
            let options = ListenerOptions { decapsulation: *decapsulation, timestamp_source: *timestamp_source };
            let d = Datagram {
                exporter: addr_from_v4([192, 0, 2, 7]),
                received_ns: 1_700_000_000_123,
                payload: &payload,
                options,
            };
            let mut record = RawFlow::default();
            record.set(&d, 3);
            let bytes = record.encode_to_vec();
            let mut back = RawFlow::default();
            back.read(&bytes).unwrap();
            let again = back.datagram().unwrap();
            assert_eq!(
                (again.exporter, again.received_ns, again.payload, again.options),
                (d.exporter, d.received_ns, d.payload, d.options)
            );
            assert_eq!((back.version, back.shard), (VERSION, 3));
        }
    }

    #[test]
    fn records_that_are_not_datagrams_are_refused_by_reason() {
        let mut r = RawFlow::default();
        assert_eq!(r.read(&[0xff, 0xff, 0xff]), Err(RecordError::Malformed));
        assert_eq!(r.read(&[]), Err(RecordError::Exporter), "no exporter");
        let mut odd = RawFlow { exporter: vec![0; 16], decapsulation: 9, ..RawFlow::default() };
        r.read(&odd.encode_to_vec()).unwrap();
        assert_eq!(r.datagram().err(), Some(RecordError::Option));
        odd.decapsulation = 0;
        odd.timestamp_source = -1;
        r.read(&odd.encode_to_vec()).unwrap();
        assert_eq!(r.datagram().err(), Some(RecordError::Option));
        assert_eq!(topic("flows"), "flows-v1");
    }

    /// The fuzz seeds (scripts/fuzz-seeds.py writes them by hand, as
    /// another producer would) read as datagrams that decode into flows.
    #[test]
    fn records_written_by_hand_decode_into_flows() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions/raw_flows/softflowd-ipfix-nano.pcap.seed");
        let data = std::fs::read(path).unwrap();
        let mut decoder = crate::Decoder::new(crate::wire::state::Limits::default());
        let (mut record, mut rest, mut flows) = (RawFlow::default(), &data[..], 0);
        while rest.len() > 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            record.read(&rest[2..2 + len]).unwrap();
            rest = &rest[2 + len..];
            assert_eq!(record.exporter[12..], [192, 0, 2, 7]);
            decoder.decode(&record.datagram().unwrap(), &mut |_| flows += 1).unwrap();
        }
        assert!(flows > 10, "{flows} flows");
    }

    #[test]
    fn the_schema_text_names_every_field() {
        for field in [
            "received_ns = 1",
            "payload = 2",
            "exporter = 3",
            "decapsulation = 4",
            "timestamp_source = 5",
            "version = 6",
            "shard = 7",
        ] {
            assert!(RAW_FLOW_PROTO.contains(field), "{field}");
        }
    }
}
