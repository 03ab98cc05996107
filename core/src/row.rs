//! One flow as one RowBinary row, written straight into a shard's batch
//! buffer: no allocation per row (the buffer is reused), no intermediate
//! struct. Columns come in `Schema::columns` order; a field the flow does not
//! carry is written as the type's zero (0, `::`, empty array), as
//! ClickHouse's own defaults would be.
//!
//! RowBinary (ClickHouse's formats reference): integers little-endian,
//! `DateTime` as UInt32 seconds, `DateTime64(3)` as Int64 milliseconds,
//! `IPv6`/`FixedString(16)` as the 16 bytes in network order, arrays as a
//! LEB128 length then the items.
//!
//! Cost sketch: about 25 default columns, ~110 bytes per row; one match per
//! column on a branch the predictor learns (the column list never changes).

use crate::flow::{FlowRecord, Value};
use crate::schema::{Column, ColumnType};

/// Appends `flow` as one row of `columns` to `out`.
#[inline]
pub fn encode_flow(columns: &[Column], flow: &FlowRecord, out: &mut Vec<u8>) {
    for c in columns {
        let value = flow.value(c.field);
        match c.kind {
            ColumnType::UInt8 => out.push(uint(value) as u8),
            ColumnType::UInt16 => out.extend_from_slice(&(uint(value) as u16).to_le_bytes()),
            ColumnType::UInt32 => out.extend_from_slice(&saturate_u32(uint(value)).to_le_bytes()),
            ColumnType::UInt64 => out.extend_from_slice(&uint(value).to_le_bytes()),
            ColumnType::DateTime => out.extend_from_slice(&saturate_u32(uint(value) / 1_000_000_000).to_le_bytes()),
            ColumnType::DateTimeMs => out.extend_from_slice(&(uint(value) / 1_000_000).to_le_bytes()),
            ColumnType::Address => match value {
                Some(Value::Addr(a)) => out.extend_from_slice(a),
                _ => out.extend_from_slice(&[0; 16]),
            },
            ColumnType::Mac => {
                let mut word = [0u8; 8];
                if let Some(Value::Mac(m)) = value {
                    // 48 bits, most significant first, as MACNumToString reads them.
                    word[2..].copy_from_slice(m);
                }
                out.extend_from_slice(&u64::from_be_bytes(word).to_le_bytes());
            }
            ColumnType::ArrayUInt32 => {
                let items = match value {
                    Some(Value::List(items)) => items,
                    _ => &[],
                };
                write_leb128(items.len() as u64, out);
                for v in items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
}

/// The largest row `columns` can produce, to size buffers.
pub fn row_bytes_max(columns: &[Column]) -> usize {
    use crate::flow::{AS_PATH_MAX, COMMUNITIES_MAX, MPLS_LABELS_MAX};
    columns
        .iter()
        .map(|c| match c.kind {
            ColumnType::UInt8 => 1,
            ColumnType::UInt16 => 2,
            ColumnType::UInt32 | ColumnType::DateTime => 4,
            ColumnType::UInt64 | ColumnType::DateTimeMs | ColumnType::Mac => 8,
            ColumnType::Address => 16,
            ColumnType::ArrayUInt32 => 1 + 4 * MPLS_LABELS_MAX.max(AS_PATH_MAX).max(COMMUNITIES_MAX),
        })
        .sum()
}

#[inline(always)]
fn uint(value: Option<Value>) -> u64 {
    match value {
        Some(Value::Uint(v)) | Some(Value::Time(v)) => v,
        _ => 0,
    }
}

#[inline(always)]
fn saturate_u32(v: u64) -> u32 {
    v.min(u32::MAX as u64) as u32
}

fn write_leb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{addr_from_v4, Field};
    use crate::schema::catalog;

    fn only(names: &[&str]) -> Vec<Column> {
        catalog().into_iter().filter(|c| names.contains(&c.name)).collect()
    }

    #[test]
    fn writes_each_type_little_endian_and_zero_when_absent() {
        let cols = only(&["TimeReceived", "SrcAddr", "SrcPort", "Bytes", "SrcMAC", "MPLSLabels", "FlowStart"]);
        let mut f = FlowRecord::default();
        f.set_time_received_ns(1_700_000_000_123_456_789);
        f.set_src_addr(addr_from_v4([10, 0, 0, 1]));
        f.set_src_port(443);
        f.set_src_mac([0, 1, 2, 3, 4, 5]);
        f.set_mpls_label(0, 100);
        f.set_mpls_label(1, 200);
        let mut out = Vec::new();
        encode_flow(&cols, &f, &mut out);
        let mut expect = Vec::new();
        expect.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        expect.extend_from_slice(&0u64.to_le_bytes()); // FlowStart absent
        expect.extend_from_slice(&addr_from_v4([10, 0, 0, 1]));
        expect.extend_from_slice(&443u16.to_le_bytes());
        expect.extend_from_slice(&0u64.to_le_bytes()); // Bytes absent
        expect.extend_from_slice(&0x0001_0203_0405u64.to_le_bytes());
        expect.extend_from_slice(&[2, 100, 0, 0, 0, 200, 0, 0, 0]);
        assert_eq!(out, expect);
        assert!(out.len() <= row_bytes_max(&cols));
        assert!(cols.iter().any(|c| c.field == Field::FlowStart));
    }

    #[test]
    fn leb128_lengths() {
        let mut out = Vec::new();
        write_leb128(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
    }
}
