//! One flow as one JSON object (what `weir decode` prints): keys are the
//! column names of the fields present, in column order. Addresses print as
//! text (IPv4-mapped addresses as plain IPv4), MACs as `aa:bb:cc:dd:ee:ff`,
//! times as RFC 3339 UTC with nanoseconds, lists as arrays of integers.

use std::fmt::Write;

use crate::flow::{addr_to_ip, Field, FlowRecord, Value};

/// Appends `flow` as one JSON object (no newline) to `out`.
pub fn write_flow(flow: &FlowRecord, out: &mut String) {
    out.push('{');
    let mut first = true;
    for &field in Field::ALL {
        let Some(value) = flow.value(field) else {
            continue;
        };
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{}\":", field.column());
        write_value(value, out);
    }
    out.push('}');
}

fn write_value(value: Value, out: &mut String) {
    let _ = match value {
        Value::Uint(v) => write!(out, "{v}"),
        Value::Time(ns) => write!(out, "\"{}\"", rfc3339(ns)),
        Value::Addr(a) => write!(out, "\"{}\"", addr_to_ip(a)),
        Value::Mac(m) => {
            write!(out, "\"{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\"", m[0], m[1], m[2], m[3], m[4], m[5])
        }
        Value::List(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{v}");
            }
            out.push(']');
            Ok(())
        }
    };
}

/// Nanoseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z", rem / 3600, rem / 60 % 60, rem % 60, ns % 1_000_000_000)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (the well-known
/// era-based conversion: 400-year eras of 146097 days).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::addr_from_v4;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(rfc3339(1_795_000_000_123_000_000), "2026-11-18T11:06:40.123000000Z");
    }

    #[test]
    fn writes_present_fields_only_and_parses_back() {
        let mut f = FlowRecord::default();
        f.set_src_addr(addr_from_v4([10, 0, 0, 1]));
        f.set_src_port(53);
        f.set_src_mac([0, 1, 2, 3, 4, 0xab]);
        f.set_mpls_label(0, 100);
        let mut s = String::new();
        write_flow(&f, &mut s);
        assert_eq!(s, r#"{"SrcAddr":"10.0.0.1","SrcPort":53,"SrcMAC":"00:01:02:03:04:ab","MPLSLabels":[100]}"#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["SrcPort"], 53);
    }
}
