//! Replays every saved fuzz input (core/fuzz/regressions/TARGET/*) through
//! the fuzz targets' own code, plus the seed datagrams of every exporter
//! fixture: none may panic.

use std::path::Path;

use weir_core::decoder::Format;
use weir_core::harness;

fn replay(target: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut count = 0;
    for entry in entries {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        match target {
            "netflow_v5" => harness::decode_datagrams(Some(Format::NetflowV5), &data),
            "netflow_v9" => harness::decode_datagrams(Some(Format::NetflowV9), &data),
            "ipfix" => harness::decode_datagrams(Some(Format::Ipfix), &data),
            "sflow" => harness::decode_datagrams(Some(Format::SflowV5), &data),
            "any_format" => harness::decode_datagrams(None, &data),
            "pcap" => harness::read_pcap(&data),
            "state_snapshot" => harness::restore_snapshot(&data),
            "config" => harness::parse_config(&data),
            "live_schema" => harness::live_schema(&data),
            "access_log" => harness::access_log(&data),
            "native_blocks" => harness::native_blocks(&data),
            "zstd_frames" => harness::zstd_frames(&data),
            "snmp_response" => harness::snmp_response(&data),
            "metadata_cache" => harness::metadata_cache(&data),
            "classifier_rule" => harness::classifier_rule(&data),
            "remote_source" => harness::remote_source(&data),
            "geo_database" => harness::geo_database(&data),
            "bmp_stream" => harness::bmp_stream(&data),
            "raw_flows" => harness::raw_flows(&data),
            "state_record" => harness::state_record(&data),
            other => panic!("unknown target {other}"),
        }
        count += 1;
    }
    count
}

#[test]
fn saved_fuzz_inputs_do_not_panic() {
    for target in [
        "netflow_v5",
        "netflow_v9",
        "ipfix",
        "sflow",
        "any_format",
        "pcap",
        "state_snapshot",
        "config",
        "live_schema",
        "access_log",
        "native_blocks",
        "zstd_frames",
        "snmp_response",
        "metadata_cache",
        "classifier_rule",
        "remote_source",
        "geo_database",
        "bmp_stream",
        "raw_flows",
        "state_record",
    ] {
        replay(target);
    }
}

#[test]
fn exporter_captures_pass_the_pcap_harness() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shards/tests/fixtures/exporters");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        harness::read_pcap(&data);
        // Every prefix of a capture: truncation anywhere is handled.
        for cut in (0..data.len()).step_by(97) {
            harness::read_pcap(&data[..cut]);
        }
        count += 1;
    }
    assert!(count >= 8);
}

#[test]
fn garbage_and_empty_inputs() {
    harness::decode_datagrams(None, &[]);
    harness::decode_datagrams(None, &[0; 64]);
    harness::decode_datagrams(Some(Format::Ipfix), &[0xff; 300]);
    harness::restore_snapshot(b"");
    harness::live_schema(b"");
    harness::live_schema(
        b"18.16.1\nflows\tMergeTree\tCREATE\\\nflows_1m_mv_0\tMaterializedView\t\n\xffflows\tSrcVlan\tString\n",
    );
    harness::parse_config(b"");
    harness::parse_config(b"[shards]\ncores = [99999999999999999999]\n");
    harness::parse_config(b"[[listeners]]\naddress = 5\n[shards\n");
    harness::parse_config(include_bytes!("../../config/appliance-16-cores.toml"));
    harness::restore_snapshot(b"{\"format_version\":1}");
}

/// The saved state-topic record is one the outlets write: it parses and
/// adds its template (the harness would skip a record that does not).
#[test]
fn the_saved_state_record_is_a_template_an_outlet_applies() {
    use weir_core::decoder::Decoder;
    use weir_core::wire::state::SharedUpdate;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/state_record/template.json");
    let shared: SharedUpdate = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut decoder = Decoder::new(Default::default());
    decoder.apply_updates(std::slice::from_ref(&shared.update), &mut |_| {});
    assert_eq!(decoder.state().template_count(), 1);
}
