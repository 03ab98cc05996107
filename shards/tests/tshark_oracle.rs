//! `weir decode` against tshark, an independent decoder, on captures of real
//! exporters (softflowd, pmacctd; see scripts/make-fixtures). For every
//! datagram and every field tshark shows, the list of values in record order
//! must equal the list Weir prints for the matching column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

type Flow = serde_json::Map<String, Value>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/exporters").join(name)
}

/// Weir's flows of a capture, grouped by frame number.
fn weir_flows(file: &Path) -> BTreeMap<u64, Vec<Flow>> {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["decode", "--frame-numbers"])
        .arg(file)
        .output()
        .expect("run weir decode");
    assert!(out.status.success(), "weir decode failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stderr);
    for line in summary.lines().filter(|l| l.starts_with("errors{")) {
        assert!(line.ends_with(" 0"), "{}: decode errors: {line}", file.display());
    }
    let mut frames: BTreeMap<u64, Vec<Flow>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let Value::Object(flow) = serde_json::from_str(line).expect("JSON line") else { panic!("not an object") };
        frames.entry(flow["Frame"].as_u64().unwrap()).or_default().push(flow);
    }
    frames
}

/// tshark's values per frame and field (all occurrences, in order).
fn tshark_fields(file: &Path, decode_as: &str, fields: &[&str]) -> BTreeMap<u64, Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-n", "-r"]).arg(file).args(["-d", decode_as, "-T", "fields", "-E", "separator=/t"]);
    cmd.args(["-E", "aggregator=|", "-E", "occurrence=a", "-e", "frame.number"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark is installed (scripts/setup)");
    assert!(out.status.success(), "tshark failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut rows = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let mut cols = line.split('\t');
        let frame: u64 = cols.next().unwrap().parse().unwrap();
        let values =
            cols.map(|c| if c.is_empty() { vec![] } else { c.split('|').map(str::to_string).collect() }).collect();
        rows.insert(frame, values);
    }
    rows
}

/// How a tshark value compares to a Weir value.
#[derive(Clone, Copy)]
enum Conv {
    /// Decimal or 0x-hex integer.
    Int,
    /// Text as is (addresses, MACs).
    Text,
    /// IPv6 payload length, plus the 40-byte header: the packet's length.
    Ipv6Length,
}

fn normalize(conv: Conv, s: &str) -> String {
    match conv {
        Conv::Int => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).unwrap().to_string(),
                None => s.parse::<u64>().map(|v| v.to_string()).unwrap_or_else(|_| s.to_string()),
            }
        }
        Conv::Text => s.to_string(),
        Conv::Ipv6Length => (s.trim().parse::<u64>().unwrap() + 40).to_string(),
    }
}

fn weir_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_v6(flow: &Flow) -> bool {
    flow.get("EType").and_then(Value::as_u64) == Some(0x86dd)
}

/// One comparison: a tshark field against a Weir column, over the flows
/// `select` keeps; `skip` drops leading tshark occurrences (the outer
/// headers of an sFlow datagram).
struct Check {
    tshark: &'static str,
    column: &'static str,
    conv: Conv,
    select: fn(&Flow) -> bool,
    skip: usize,
}

fn all(_: &Flow) -> bool {
    true
}
fn v4(f: &Flow) -> bool {
    !is_v6(f)
}
fn v6(f: &Flow) -> bool {
    is_v6(f)
}
fn tcp(f: &Flow) -> bool {
    f.get("Proto").and_then(Value::as_u64) == Some(6)
}
fn no_icmp_in_port(f: &Flow) -> bool {
    f.get("DstPort").and_then(Value::as_u64).unwrap_or(0) == 0
}
fn udp(f: &Flow) -> bool {
    f.get("Proto").and_then(Value::as_u64) == Some(17)
}

const fn check(tshark: &'static str, column: &'static str, conv: Conv) -> Check {
    Check { tshark, column, conv, select: all, skip: 0 }
}

fn netflow_checks() -> Vec<Check> {
    use Conv::*;
    vec![
        Check { select: v4, ..check("cflow.srcaddr", "SrcAddr", Text) },
        Check { select: v4, ..check("cflow.dstaddr", "DstAddr", Text) },
        Check { select: v6, ..check("cflow.srcaddrv6", "SrcAddr", Text) },
        Check { select: v6, ..check("cflow.dstaddrv6", "DstAddr", Text) },
        check("cflow.srcport", "SrcPort", Int),
        check("cflow.dstport", "DstPort", Int),
        check("cflow.protocol", "Proto", Int),
        check("cflow.octets", "Bytes", Int),
        check("cflow.packets", "Packets", Int),
        check("cflow.inputint", "InIfIndex", Int),
        check("cflow.outputint", "OutIfIndex", Int),
        check("cflow.tos", "IPTos", Int),
        check("cflow.tcpflags", "TCPFlags", Int),
        check("cflow.srcas", "SrcAS", Int),
        check("cflow.dstas", "DstAS", Int),
        check("cflow.srcmask", "SrcNetMask", Int),
        check("cflow.dstmask", "DstNetMask", Int),
        check("cflow.direction", "FlowDirection", Int),
        // Where the type is in the destination port (pmacct), tshark shows
        // no type and Weir derives it from the port (the port is checked).
        Check { select: no_icmp_in_port, ..check("cflow.icmp_ipv6_type", "ICMPv6Type", Int) },
        Check { select: no_icmp_in_port, ..check("cflow.icmp_ipv6_code", "ICMPv6Code", Int) },
        check("cflow.ipv6flowlabel", "IPv6FlowLabel", Int),
    ]
}

fn sflow_checks() -> Vec<Check> {
    use Conv::*;
    vec![
        check("sflow.flow_sample.sampling_rate", "SamplingRate", Int),
        // Layer-3 bytes: the sampled packet's IP length (the first IPv4
        // header of a frame is the datagram's own).
        Check { select: v4, skip: 1, ..check("ip.len", "Bytes", Int) },
        Check { select: v6, ..check("ipv6.plen", "Bytes", Ipv6Length) },
        Check { select: v4, skip: 1, ..check("ip.src", "SrcAddr", Text) },
        Check { select: v4, skip: 1, ..check("ip.dst", "DstAddr", Text) },
        Check { select: v4, skip: 1, ..check("ip.proto", "Proto", Int) },
        Check { select: v4, skip: 1, ..check("ip.ttl", "IPTTL", Int) },
        Check { select: v4, skip: 1, ..check("ip.id", "IPFragmentID", Int) },
        Check { select: v4, skip: 1, ..check("ip.dsfield", "IPTos", Int) },
        Check { select: v6, ..check("ipv6.src", "SrcAddr", Text) },
        Check { select: v6, ..check("ipv6.dst", "DstAddr", Text) },
        Check { select: v6, ..check("ipv6.nxt", "Proto", Int) },
        Check { select: v6, ..check("ipv6.hlim", "IPTTL", Int) },
        Check { select: v6, ..check("ipv6.flow", "IPv6FlowLabel", Int) },
        Check { skip: 1, ..check("eth.src", "SrcMAC", Text) },
        Check { skip: 1, ..check("eth.dst", "DstMAC", Text) },
        Check { select: tcp, ..check("tcp.srcport", "SrcPort", Int) },
        Check { select: tcp, ..check("tcp.dstport", "DstPort", Int) },
        Check { select: tcp, ..check("tcp.flags", "TCPFlags", Int) },
        Check { select: udp, skip: 1, ..check("udp.srcport", "SrcPort", Int) },
        Check { select: udp, skip: 1, ..check("udp.dstport", "DstPort", Int) },
        check("icmp.type", "ICMPv4Type", Int),
        check("icmp.code", "ICMPv4Code", Int),
        check("icmpv6.type", "ICMPv6Type", Int),
        check("sflow_245.agent", "ExporterAddress", Text),
    ]
}

/// Compares every check over every frame; returns how many values matched.
fn compare(file: &str, decode_as: &str, checks: &[Check]) -> usize {
    let path = fixture(file);
    let ours = weir_flows(&path);
    let names: Vec<&str> = checks.iter().map(|c| c.tshark).collect();
    let theirs = tshark_fields(&path, decode_as, &names);
    let records = records_seen_by_tshark(&path, decode_as);
    let mut matched = 0;
    for (frame, columns) in &theirs {
        let flows = ours.get(frame).map(Vec::as_slice).unwrap_or(&[]);
        // tshark stops after the v9 header's record count; softflowd sets it
        // too low and Weir, like other collectors, reads every flowset. The
        // records tshark shows must be the first ones Weir decoded.
        let records = records.get(frame).copied().unwrap_or(0);
        assert!(flows.len() >= records, "{file} frame {frame}: {} flows, tshark saw {records}", flows.len());
        let flows = &flows[..records];
        for (check, values) in checks.iter().zip(columns) {
            let expected: Vec<String> = values.iter().skip(check.skip).map(|v| normalize(check.conv, v)).collect();
            let got: Vec<String> =
                flows.iter().filter(|f| (check.select)(f)).filter_map(|f| f.get(check.column).map(weir_text)).collect();
            // The agent address appears once per datagram in tshark.
            let got = if check.tshark == "sflow_245.agent" { got.into_iter().take(1).collect() } else { got };
            let got = if flows.is_empty() { vec![] } else { got };
            assert_eq!(got, expected, "{file} frame {frame}: {} vs {}", check.column, check.tshark);
            matched += expected.len();
        }
    }
    assert!(matched > 0, "{file}: nothing compared");
    matched
}

/// Flows tshark decoded per frame: one sampling rate per sFlow flow sample,
/// one packet count per NetFlow/IPFIX data record (two for a biflow record).
fn records_seen_by_tshark(path: &Path, decode_as: &str) -> BTreeMap<u64, usize> {
    let field = if decode_as.ends_with("sflow") { "sflow.flow_sample.sampling_rate" } else { "cflow.packets" };
    let per_record = if path.to_string_lossy().contains("biflow") { 2 } else { 1 };
    tshark_fields(path, decode_as, &[field]).into_iter().map(|(frame, c)| (frame, c[0].len() / per_record)).collect()
}

/// Per-datagram fields: every flow of a frame carries the datagram's source
/// address as ExporterAddress and the header's source id (v9) or observation
/// domain (IPFIX) as ObservationDomain.
fn compare_datagram_fields(file: &str) {
    let path = fixture(file);
    let ours = weir_flows(&path);
    let fields = ["ip.src", "cflow.source_id", "cflow.od_id"];
    let theirs = tshark_fields(&path, "udp.port==2055,cflow", &fields);
    let mut compared = 0;
    for (frame, c) in &theirs {
        let domain = c[1].first().or(c[2].first()).map(|d| normalize(Conv::Int, d));
        for f in ours.get(frame).into_iter().flatten() {
            assert_eq!(weir_text(&f["ExporterAddress"]), c[0][0], "{file} frame {frame}");
            if let Some(domain) = &domain {
                assert_eq!(&weir_text(&f["ObservationDomain"]), domain, "{file} frame {frame}");
            }
            compared += 1;
        }
    }
    assert!(compared > 20, "{file}: {compared} flows compared");
}

#[test]
fn exporter_address_and_domain_match_tshark() {
    for file in ["softflowd-v9.pcap", "softflowd-ipfix.pcap", "pmacct-ipfix-sampled.pcap", "pmacct-v9-sampled.pcap"] {
        compare_datagram_fields(file);
    }
}

fn flow_count(file: &str) -> usize {
    weir_flows(&fixture(file)).values().map(Vec::len).sum()
}

#[test]
fn softflowd_v5_matches_tshark() {
    let mut checks = netflow_checks();
    checks.push(Check { select: v4, ..check("cflow.nexthop", "NextHop", Conv::Text) });
    assert!(compare("softflowd-v5.pcap", "udp.port==2055,cflow", &checks) > 500);
}

#[test]
fn fprobe_v5_matches_tshark() {
    let mut checks = netflow_checks();
    checks.push(Check { select: v4, ..check("cflow.nexthop", "NextHop", Conv::Text) });
    assert!(compare("fprobe-v5.pcap", "udp.port==2055,cflow", &checks) > 300);
    compare_relative_times("fprobe-v5.pcap");
}

#[test]
fn softflowd_v9_matches_tshark() {
    assert!(compare("softflowd-v9.pcap", "udp.port==2055,cflow", &netflow_checks()) > 500);
}

#[test]
fn softflowd_ipfix_matches_tshark() {
    assert!(compare("softflowd-ipfix.pcap", "udp.port==2055,cflow", &netflow_checks()) > 500);
}

#[test]
fn uptime_relative_times_match_tshark() {
    compare_relative_times("softflowd-v5.pcap");
    compare_relative_times("softflowd-v9.pcap");
    // IPFIX flowStartSysUpTime: relative to systemInitTimeMilliseconds (options).
    compare_relative_times("softflowd-ipfix.pcap");
}

#[test]
fn pmacct_absolute_times_match_tshark() {
    compare_absolute_times("pmacct-ipfix-sampled.pcap");
    // pmacct's v9 sends flowStart/EndMilliseconds (IEs 152/153) too.
    compare_absolute_times("pmacct-v9-sampled.pcap");
}

#[test]
fn softflowd_ipfix_nanosecond_times_match_tshark() {
    assert!(compare("softflowd-ipfix-nano.pcap", "udp.port==2055,cflow", &netflow_checks()) > 500);
    compare_absolute_times("softflowd-ipfix-nano.pcap");
}

#[test]
fn pmacct_ipfix_sampled_matches_tshark() {
    assert!(compare("pmacct-ipfix-sampled.pcap", "udp.port==2055,cflow", &netflow_checks()) > 300);
    assert_sampling_rate("pmacct-ipfix-sampled.pcap", 4);
}

#[test]
fn pmacct_v9_sampled_matches_tshark() {
    assert!(compare("pmacct-v9-sampled.pcap", "udp.port==2055,cflow", &netflow_checks()) > 300);
    assert_sampling_rate("pmacct-v9-sampled.pcap", 4);
}

#[test]
fn pmacct_sflow_matches_tshark() {
    assert!(compare("pmacct-sflow.pcap", "udp.port==6343,sflow", &sflow_checks()) > 1000);
    assert_sampling_rate("pmacct-sflow.pcap", 2);
    // pmacct's sfprobe reports every packet as internal (0x3fffffff): index 0.
    for flows in weir_flows(&fixture("pmacct-sflow.pcap")).values() {
        for f in flows {
            assert_eq!(f["InIfIndex"], 0);
            assert_eq!(f["ExporterAddress"], "192.0.2.200");
            assert_eq!(f["ObservationDomain"], 7);
        }
    }
}

fn assert_sampling_rate(file: &str, rate: u64) {
    let flows = weir_flows(&fixture(file));
    assert!(!flows.is_empty());
    for f in flows.values().flatten() {
        assert_eq!(f["SamplingRate"].as_u64(), Some(rate), "{file}: {f:?}");
    }
}

/// v5, v9 and IPFIX agree on the flows of the same traffic; sampled
/// exporters see fewer packets.
#[test]
fn every_exporter_saw_the_same_traffic() {
    // 36 flows in the traffic, 16 of them TCP with replies: 52 unidirectional flows.
    assert_eq!(flow_count("softflowd-v9.pcap"), 52);
    assert_eq!(flow_count("softflowd-ipfix.pcap"), 52);
    // NetFlow v5 carries no IPv6: 24 IPv4 flows, 12 of them TCP with replies.
    assert_eq!(flow_count("softflowd-v5.pcap"), 36);
}

/// RFC 5103: one biflow record becomes a forward flow and, when the reverse
/// direction saw packets, a reverse flow with endpoints swapped — the same
/// flows softflowd exports unidirectionally.
#[test]
fn softflowd_biflows_split_into_the_unidirectional_flows() {
    let key = |f: &Flow| {
        ["SrcAddr", "DstAddr", "SrcPort", "DstPort", "Proto", "Bytes", "Packets"]
            .map(|k| f.get(k).map(weir_text).unwrap_or_default())
            .join(" ")
    };
    let mut bi: Vec<String> = weir_flows(&fixture("softflowd-ipfix-biflow.pcap")).values().flatten().map(key).collect();
    let mut uni: Vec<String> = weir_flows(&fixture("softflowd-ipfix.pcap")).values().flatten().map(key).collect();
    bi.sort();
    uni.sort();
    assert_eq!(bi.len(), 52);
    assert_eq!(bi, uni);
    // tshark shows forward and reverse counters interleaved per record.
    let path = fixture("softflowd-ipfix-biflow.pcap");
    let theirs = tshark_fields(&path, "udp.port==2055,cflow", &["cflow.octets"]);
    let ours = weir_flows(&path);
    for (frame, columns) in &theirs {
        let mut expected = vec![];
        for pair in columns[0].chunks(2) {
            expected.push(pair[0].clone());
            if pair[1] != "0" {
                expected.push(pair[1].clone());
            }
        }
        let got: Vec<String> = ours[frame].iter().map(|f| weir_text(&f["Bytes"])).collect();
        assert_eq!(got, expected, "frame {frame}");
    }
}

/// tshark prints absolute times as `Jan  1, 2026 00:00:00.750000999 UTC`.
fn tshark_time_to_rfc3339(s: &str) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let parts: Vec<&str> = s.split_whitespace().collect();
    let month = MONTHS.iter().position(|m| *m == parts[0]).unwrap() + 1;
    let day: u32 = parts[1].trim_end_matches(',').parse().unwrap();
    format!("{}-{month:02}-{day:02}T{}Z", parts[2], parts[3])
}

fn compare_absolute_times(file: &str) {
    let path = fixture(file);
    let ours = weir_flows(&path);
    let theirs = tshark_fields(&path, "udp.port==2055,cflow", &["cflow.abstimestart", "cflow.abstimeend"]);
    let mut compared = 0;
    for (frame, columns) in &theirs {
        for (i, column) in ["FlowStart", "FlowEnd"].iter().enumerate() {
            let expected: Vec<String> = columns[i].iter().map(|s| tshark_time_to_rfc3339(s)).collect();
            let got: Vec<String> =
                ours.get(frame).into_iter().flatten().filter_map(|f| f.get(*column).map(weir_text)).collect();
            assert_eq!(got, expected, "{file} frame {frame} {column}");
            compared += expected.len();
        }
    }
    assert!(compared > 20, "{file}: {compared} times compared");
}

/// `2048312.263000000` (seconds) to milliseconds.
fn seconds_to_ms(s: &str) -> i64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    secs.parse::<i64>().unwrap() * 1000 + frac[..3].parse::<i64>().unwrap()
}

/// tshark's absolute time string to ms since the epoch.
fn tshark_time_to_ms(s: &str) -> i64 {
    let rfc = tshark_time_to_rfc3339(s);
    let (date, time) = rfc.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let days = days_from_civil(d[0], d[1], d[2]);
    let (hms, frac) = time.split_once('.').unwrap();
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000 + frac[..3].parse::<i64>().unwrap()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// FIRST/LAST_SWITCHED (flowStart/EndSysUpTime) as tshark shows them,
/// relative to the boot time from the v5/v9 header or the IPFIX system init
/// time (options data), against Weir's absolute FlowStart/FlowEnd.
fn compare_relative_times(file: &str) {
    let path = fixture(file);
    let ours = weir_flows(&path);
    let fields = ["cflow.unix_secs", "cflow.unix_nsecs", "cflow.sysuptime", "cflow.sys_init_time"];
    let theirs =
        tshark_fields(&path, "udp.port==2055,cflow", &[&fields[..], &["cflow.timestart", "cflow.timeend"]].concat());
    let records = records_seen_by_tshark(&path, "udp.port==2055,cflow");
    let mut init_ms = None;
    let mut compared = 0;
    for (frame, c) in &theirs {
        if let Some(init) = c[3].first() {
            init_ms = Some(tshark_time_to_ms(init));
        }
        let boot_ms = match c[0].first() {
            Some(secs) => {
                let nsecs = c[1].first().map_or(0, |n| n.parse::<i64>().unwrap() / 1_000_000);
                secs.parse::<i64>().unwrap() * 1000 + nsecs - seconds_to_ms(&c[2][0])
            }
            None => init_ms.expect("system init time before data"),
        };
        let flows = &ours[frame][..records[frame]];
        for (i, column) in ["FlowStart", "FlowEnd"].iter().enumerate() {
            let expected: Vec<String> = c[4 + i]
                .iter()
                .map(|t| weir_core::json::rfc3339(((boot_ms + seconds_to_ms(t)) * 1_000_000) as u64))
                .collect();
            let got: Vec<String> = flows.iter().filter_map(|f| f.get(*column).map(weir_text)).collect();
            assert_eq!(got, expected, "{file} frame {frame} {column}");
            compared += expected.len();
        }
    }
    assert!(compared > 20, "{file}: {compared} times compared");
}
