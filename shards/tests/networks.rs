//! Networks, GeoIP/ASN and sampling rates, into the embedded store: the
//! GeoLite2 City database PyPI's maxminddb-geolite2 ships, an ASN database
//! written by PyPI's mmdb-writer (`scripts/make-test-mmdb.py`; both
//! installed by `scripts/setup-geoip`), networks from the config and from a
//! remote source served by Python's `http.server`, and exporters with and
//! without a default sampling rate.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    free_udp_port, query, send_ipfix, temp_dir, two_shards, wait_rows_inserted, wait_until, write_config, Collector,
    HttpServer,
};
use weir_core::flow::addr_from_ip;
use weir_core::FlowRecord;

const CITY: &str = "/usr/local/share/weir/GeoLite2-City.mmdb";

/// The test ASN database (MaxMind's layout), or with `ipinfo` the test
/// IPinfo database, written by mmdb-writer into `dir`.
fn test_database(dir: &Path, ipinfo: bool) -> PathBuf {
    let out = dir.join(if ipinfo { "ipinfo.mmdb" } else { "asn.mmdb" });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/make-test-mmdb.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    if ipinfo {
        cmd.arg("--ipinfo");
    }
    let status = cmd.arg(&out).status().expect("python3");
    assert!(status.success(), "scripts/make-test-mmdb.py failed: run scripts/setup-geoip");
    out
}

/// From `exporter`, one IPFIX datagram per source of `sources` (a small
/// router's template, no sampling rate): 10 flows from it (with a /24
/// source mask) to 192.0.2.9, DstPort carrying `round`.
fn send(port: u16, exporter: [u8; 4], sources: &[&str], round: u16) -> u64 {
    let socket = UdpSocket::bind((std::net::Ipv4Addr::from(exporter), 0)).unwrap();
    for (k, s) in sources.iter().enumerate() {
        let flows: Vec<FlowRecord> = (0..10)
            .map(|i| {
                let mut f = FlowRecord::default();
                f.set_src_addr(addr_from_ip(s.parse().unwrap()));
                f.set_dst_addr(addr_from_ip("192.0.2.9".parse().unwrap()));
                f.set_src_port(i);
                f.set_dst_port(round);
                f.set_src_net_mask(24);
                f.set_proto(17);
                f.set_packets(1);
                f.set_bytes(100);
                f
            })
            .collect();
        send_ipfix(&socket, port, round as u32 * 1000 + k as u32 * 10, &flows);
    }
    10 * sources.len() as u64
}

#[test]
fn geoip_asn_config_and_source_networks_and_sampling_rates_reach_the_store() {
    assert!(Path::new(CITY).exists(), "{CITY} is missing: run scripts/setup-geoip");
    let dir = temp_dir("networks");
    let asn = test_database(&dir, false);
    let ipinfo = test_database(&dir, true);
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let document = served.join("networks.json");
    std::fs::write(
        &document,
        r#"{"prefixes": [{"cidr": "203.0.113.0/24", "name": "from-ipam", "tenant": "acme", "country": "NL"},
            {"cidr": "not a prefix"}]}"#,
    )
    .unwrap();
    let http = HttpServer::start(&served);
    let port = free_udp_port();
    let body = format!(
        "{shards}[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{spool}\"\nflush_interval_ms = 200\n\
         consolidation_interval_ms = 300\n[store.embedded]\npath = \"{chdb}\"\n\
         [networks]\ngeo_databases = [\"{CITY}\", \"{ipinfo}\"]\nasn_databases = [\"{asn}\", \"{ipinfo}\"]\n\
         check_interval_s = 1\n\
         subnets = {{ \"89.160.20.128/25\" = {{ name = \"sto-customers\", role = \"customers\", site = \"sto1\" }}, \
         \"10.0.0.0/8\" = \"lan\" }}\n\
         [[networks.sources]]\nname = \"ipam\"\nurl = \"http://127.0.0.1:{p}/networks.json\"\npath = \"prefixes\"\n\
         interval_s = 1\nrename = {{ cidr = \"prefix\" }}\n\
         [enrichment]\nasn_providers = [\"flow\", \"networks\"]\ndefault_sampling_rate = {{ \"127.0.0.2/32\" = 1000 }}\n",
        shards = two_shards(port, "ebpf"),
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
        asn = asn.display(),
        ipinfo = ipinfo.display(),
        p = http.port,
    );
    let config = write_config(&dir, "weir.toml", &body);
    let c = Collector::start(&config);
    let fetched = || c.metric("weir_networks_source_fetches_total", "source=\"ipam\",result=\"ok\"").first().copied();
    wait_until("the source was fetched", Duration::from_secs(15), || fetched().unwrap_or(0) >= 1);
    // The source's networks are in once a table was built after the fetch.
    let rebuilds = || c.metric("weir_networks_rebuilds_total", "result=\"ok\"").first().copied().unwrap_or(0);
    wait_until("a table with the source", Duration::from_secs(60), || rebuilds() >= 2);
    // The shards take a new table at their next housekeeping tick (50 ms):
    // flows sent sooner get the table before (as below, after the source's
    // network goes).
    std::thread::sleep(Duration::from_millis(300));
    let sources = ["81.2.69.160", "89.160.20.130", "89.160.20.10", "10.1.2.3", "203.0.113.5", "198.51.100.7"];
    let mut sent = send(port, [127, 0, 0, 1], &sources, 1);
    sent += send(port, [127, 0, 0, 2], &sources, 1);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    // The source drops its network: after its refresh, a new table.
    std::fs::write(&document, r#"{"prefixes": []}"#).unwrap();
    let before = rebuilds();
    wait_until("a table without the source's network", Duration::from_secs(60), || rebuilds() > before);
    std::thread::sleep(Duration::from_millis(300));
    sent += send(port, [127, 0, 0, 1], &["203.0.113.5"], 2);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    let (hits, misses) = (
        c.metric("weir_networks_lookups_total", "result=\"hit\"").iter().sum::<u64>(),
        c.metric("weir_networks_lookups_total", "result=\"miss\"").iter().sum::<u64>(),
    );
    assert_eq!(hits + misses, 2 * sent, "a lookup per address");
    // 192.0.2.9 is in no network; every source is.
    assert_eq!(misses, sent);
    assert_eq!(
        c.metric("weir_enrichment_sampling_rate_missing_total", "exporter=\"127.0.0.1\""),
        [70],
        "the exporter without a default: counted, stored with rate 1"
    );
    assert_eq!(c.metric("weir_enrichment_sampling_rate_missing_total", "exporter=\"127.0.0.2\""), Vec::<u64>::new());
    assert!(c.metric("weir_networks_prefixes", "")[0] > 3_000_000, "the whole City database");
    c.assert_promtool_is_silent();
    c.stop();

    let rows = query(
        &config,
        None,
        "SELECT IPv6NumToString(SrcAddr), SrcNetName, SrcNetRole, SrcNetSite, SrcNetTenant, SrcCountry, SrcGeoState, \
         SrcGeoCity, SrcAS, SrcNetPrefix, DstCountry, arraySort(groupUniqArray(SamplingRate)), count() FROM weir.flows \
         WHERE DstPort = 1 GROUP BY ALL ORDER BY 1",
    );
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(
        rows,
        [
            "::ffff:10.1.2.3\tlan\t\t\t\t\t\t\t0\t10.1.2.0/24\t\t[1,1000]\t20",
            "::ffff:198.51.100.7\t\t\t\t\tJP\tTokyo\tChiyoda\t64510\t198.51.100.0/24\t\t[1,1000]\t20",
            "::ffff:203.0.113.5\tfrom-ipam\t\t\tacme\tNL\t\t\t64503\t203.0.113.0/24\t\t[1,1000]\t20",
            "::ffff:81.2.69.160\t\t\t\t\tGB\tENG\tWillesden\t64500\t81.2.69.0/24\t\t[1,1000]\t20",
            "::ffff:89.160.20.10\t\t\t\t\tSE\tAB\tStockholm\t64501\t89.160.20.0/24\t\t[1,1000]\t20",
            "::ffff:89.160.20.130\tsto-customers\tcustomers\tsto1\t\tSE\tAB\tStockholm\t64501\t89.160.20.0/24\t\t[1,1000]\t20",
        ],
        "{rows:#?}"
    );
    // After the source dropped it, the network keeps only the databases' attributes.
    let after = query(
        &config,
        None,
        "SELECT SrcNetName, SrcCountry, SrcAS, count() FROM weir.flows WHERE DstPort = 2 GROUP BY ALL",
    );
    assert_eq!(after.trim_end(), "\t\t64503\t10");
    // The consolidated tables hold the same sums by network as the raw rows.
    let by_country = |table: &str, rate: &str| {
        query(
            &config,
            None,
            &format!(
                "SELECT SrcCountry, SrcNetName, SrcGeoCity, sum({rate}) FROM weir.{table} GROUP BY ALL ORDER BY ALL"
            ),
        )
    };
    let raw = by_country("flows", "Bytes * greatest(SamplingRate, 1)");
    assert_eq!(raw, by_country("flows_1m", "Bytes"));
    assert_eq!(raw, by_country("flows_1h", "Bytes"));
    assert!(raw.contains("SE\tsto-customers\tStockholm\t1001000\n"), "{raw}");
    // Each network record once in the records table.
    let records = query(&config, None, "SELECT count(), uniqExact(Id) FROM weir.network_records");
    let counts: Vec<&str> = records.split_whitespace().collect();
    assert_eq!(counts[0], counts[1], "{records}");
}

#[test]
fn a_database_that_cannot_be_read_stops_the_start_unless_optional() {
    let dir = temp_dir("networks-missing");
    let port = free_udp_port();
    let missing = dir.join("nowhere.mmdb");
    let body = |optional: bool| {
        format!(
            "{}[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{}\"\n[store.embedded]\npath = \"{}\"\n\
             [networks]\ngeo_databases = [\"{}\"]\ndatabases_optional = {optional}\ncheck_interval_s = 1\n",
            two_shards(port, "ebpf"),
            dir.join("spool").display(),
            dir.join("chdb").display(),
            missing.display(),
        )
    };
    let config = write_config(&dir, "weir.toml", &body(false));
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(["run", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nowhere.mmdb"), "{stderr}");
    // Optional: the collector starts, and reads the file once it appears.
    let config = write_config(&dir, "weir.toml", &body(true));
    let c = Collector::start(&config);
    assert_eq!(c.metric("weir_networks_database_reads_total", "database=\"nowhere.mmdb\",result=\"error\""), [1]);
    std::fs::copy(test_database(&dir, false), &missing).unwrap();
    wait_until("the database read once it appeared", Duration::from_secs(60), || {
        c.metric("weir_networks_database_reads_total", "database=\"nowhere.mmdb\",result=\"ok\"") == [1]
    });
    c.stop();
}
