//! Metadata from real peers, into the embedded store: the SNMP provider
//! against a real net-snmp `snmpd` (`scripts/setup` installs it), polled
//! over SNMPv2c and SNMPv3 (SHA-256 + AES-256, SHA-1 + Cisco's AES-256,
//! MD5 + DES), with classifiers on what it says and flows that keep
//! flowing while the agent is down (interfaces come from `override`
//! lines, so they are the same on every machine); remote sources served by
//! Python's `http.server`.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_udp_port, numbered_v5_through, query, temp_dir, two_shards, wait_rows_inserted, write_config, Collector,
    HttpServer,
};

/// A foreground `snmpd` on 127.0.0.1, killed on drop.
struct Snmpd {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

const SNMPD_CONF: &str = r#"
rocommunity weirtest 127.0.0.1
sysName edge1-test
createUser weirsha256 SHA-256 "authpass1234" AES-256 "privpass1234"
createUser weircisco SHA "authpass1234" AES-256-C "privpass1234"
createUser weirmd5 MD5 "authpass1234" DES "privpass1234"
rouser weirsha256 priv
rouser weircisco priv
rouser weirmd5 priv
override 1.3.6.1.2.1.2.2.1.2.17 octet_str "Juniper xe-0/0/17"
override 1.3.6.1.2.1.31.1.1.1.1.17 octet_str "xe-0/0/17"
override 1.3.6.1.2.1.31.1.1.1.18.17 octet_str "Transit: Cogent 1-38"
override 1.3.6.1.2.1.31.1.1.1.15.17 unsigned 10000
override 1.3.6.1.2.1.31.1.1.1.1.18 octet_str "et-18"
override 1.3.6.1.2.1.31.1.1.1.15.18 unsigned 100000
"#;

impl Snmpd {
    fn new(dir: &Path) -> Snmpd {
        let dir = dir.join("snmpd");
        std::fs::create_dir_all(dir.join("persist")).unwrap();
        let port = free_udp_port();
        std::fs::write(dir.join("snmpd.conf"), format!("agentAddress udp:127.0.0.1:{port}\n{SNMPD_CONF}")).unwrap();
        Snmpd { dir, port, child: None }
    }

    fn start(&mut self) {
        let child = Command::new("snmpd")
            .args(["-f", "-C", "-M", "/dev/null", "-Lf"])
            .arg(self.dir.join("snmpd.log"))
            .arg("-c")
            .arg(self.dir.join("snmpd.conf"))
            .env("SNMP_PERSISTENT_DIR", self.dir.join("persist"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("snmpd (scripts/setup installs the snmpd package)");
        self.child = Some(child);
        // Ready when it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        // GET sysName.0, community weirtest, SNMPv2c.
        let get = b"\x30\x29\x02\x01\x01\x04\x08weirtest\xa0\x1a\x02\x02\x30\x39\x02\x01\x00\x02\x01\x00\x30\x0e\x30\x0c\x06\x08\x2b\x06\x01\x02\x01\x01\x05\x00\x05\x00";
        let mut buf = [0u8; 1500];
        loop {
            probe.send_to(get, ("127.0.0.1", self.port)).unwrap();
            if probe.recv(&mut buf).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "snmpd did not answer");
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A two-shard collector into the embedded store, with `metadata` TOML.
fn config(dir: &Path, port: u16, metadata: &str) -> PathBuf {
    let body = format!(
        "{}[sink]\nkind = \"store\"\n[store]\nkind = \"embedded\"\nspool_dir = \"{spool}\"\nflush_interval_ms = 200\n\
         consolidation_interval_ms = 300\n[store.embedded]\npath = \"{chdb}\"\n{metadata}",
        two_shards(port, "ebpf"),
        spool = dir.join("spool").display(),
        chdb = dir.join("chdb").display(),
    );
    write_config(dir, "weir.toml", &body)
}

/// Sends one datagram of 30 flows from each of `sources`, numbered from
/// `first`, through interfaces 17 (in) and 18 (out).
fn send_round(port: u16, sources: &[[u8; 4]], first: u32) -> u64 {
    for (k, source) in sources.iter().enumerate() {
        let socket = UdpSocket::bind((std::net::Ipv4Addr::from(*source), 0)).unwrap();
        let datagram = numbered_v5_through(first + 30 * k as u32, [10, 0, 0, 1], (17, 18));
        socket.send_to(&datagram, ("127.0.0.1", port)).unwrap();
    }
    30 * sources.len() as u64
}

/// Waits until `metric` (summed over the series whose labels hold
/// `labels`) reaches `want`.
fn wait_metric(c: &Collector, metric: &str, labels: &str, want: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let got: u64 = c.metric(metric, labels).iter().sum();
        if got >= want || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stored (exporter, name, in, description, speed, out, out speed, rows)
/// for flows numbered from `first`.
fn named_rows(config: &Path, first: u32) -> String {
    query(
        config,
        None,
        &format!(
            "SELECT ExporterAddress, ExporterName, InIfName, InIfDescription, InIfSpeed, OutIfName, OutIfSpeed, count() \
             FROM weir.flows WHERE SrcPort >= {first} GROUP BY ExporterAddress, ExporterName, InIfName, \
             InIfDescription, InIfSpeed, OutIfName, OutIfSpeed ORDER BY ExporterAddress"
        ),
    )
}

#[test]
fn snmp_v2c_and_v3_name_exporters_and_interfaces() {
    let dir = temp_dir("metadata-snmp");
    let mut snmpd = Snmpd::new(&dir);
    snmpd.start();
    let port = free_udp_port();
    // 127.0.0.1: v2c, a wrong community first (all are tried). The others
    // are polled on 127.0.0.1's agent (agent override) with SNMPv3.
    let p = snmpd.port;
    let metadata = format!(
        "[metadata]\nproviders = [\"static\", \"snmp\"]\n[metadata.snmp]\ntimeout_ms = 300\nretries = 0\n\
         [[metadata.snmp.credentials]]\nsubnet = \"127.0.0.1\"\nport = {p}\ncommunities = [\"wrong\", \"weirtest\"]\n\
         [[metadata.snmp.credentials]]\nsubnet = \"127.0.0.2\"\nport = {p}\nagent = \"127.0.0.1\"\nuser_name = \"weirsha256\"\n\
         authentication_protocol = \"sha256\"\nauthentication_passphrase = \"authpass1234\"\nprivacy_protocol = \"aes256\"\n\
         privacy_passphrase = \"privpass1234\"\n\
         [[metadata.snmp.credentials]]\nsubnet = \"127.0.0.3\"\nport = {p}\nagent = \"127.0.0.1\"\nuser_name = \"weircisco\"\n\
         authentication_protocol = \"sha\"\nauthentication_passphrase = \"authpass1234\"\nprivacy_protocol = \"aes256c\"\n\
         privacy_passphrase = \"privpass1234\"\n\
         [[metadata.snmp.credentials]]\nsubnet = \"127.0.0.4\"\nport = {p}\nagent = \"127.0.0.1\"\nuser_name = \"weirmd5\"\n\
         authentication_protocol = \"md5\"\nauthentication_passphrase = \"authpass1234\"\nprivacy_protocol = \"des\"\n\
         privacy_passphrase = \"privpass1234\"\n\
         [[metadata.exporters]]\nsubnet = \"127.0.0.4\"\nsite = \"par\"\nskip_missing_interfaces = true\n"
    );
    // Akvorado's documented interface rules, pasted as they are, run on
    // what SNMP says; an exporter rule rejects 127.0.0.5.
    let classifiers = r#"
[metadata]
exporter_classifiers = [
  'Exporter.IP == "127.0.0.5" && Reject()',
  'ClassifyRegionRegex(Exporter.Name, "^[a-z]+1-(\\w+)$", "$1")',
]
interface_classifiers = [
  'ClassifyConnectivityRegex(Interface.Description, "^(?i)(transit|pni|ppni|ix):? ", "$1") && ClassifyProviderRegex(Interface.Description, "^\\S+?\\s(\\S+)", "$1") && ClassifyExternal()',
  'ClassifyInternal()',
  'int(Interface.Description) > 0',
]
"#;
    let metadata = metadata.replacen("[metadata]\n", classifiers.trim_start(), 1);
    let config = config(&dir, port, &metadata);
    let c = Collector::start(&config);
    let sources = [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4], [127, 0, 0, 5]];
    // The first flows miss: stored with what is known, never held.
    let mut sent = send_round(port, &sources, 0);
    let polled = wait_metric(&c, "weir_metadata_snmp_polls_total", "result=\"ok\"", 4, Duration::from_secs(20));
    assert!(polled >= 4, "{}", c.scrape());
    // Answers reach the shards with the next snapshot.
    std::thread::sleep(Duration::from_millis(500));
    sent += send_round(port, &sources, 10_000) - 30;
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent, "no flow waits or is lost");
    assert_eq!(c.metric("weir_metadata_flows_dropped_total", "reason=\"rejected\""), [30], "127.0.0.5's second round");
    assert_eq!(c.metric("weir_metadata_snmp_interfaces_total", "result=\"missing\""), [0]);
    // The last interface rule fails on an interface without a description
    // (its list is complete before it for xe-0/0/17).
    assert!(c.metric("weir_metadata_classifier_errors_total", "kind=\"interface\",rule=\"2\"")[0] > 0);
    assert_eq!(c.metric("weir_metadata_classifier_errors_total", "rule=\"1\""), [0, 0]);
    assert!(c.metric("weir_metadata_snmp_v3_sessions_total", "result=\"discovered\"")[0] >= 3);
    c.assert_promtool_is_silent();
    c.stop();
    let rows = named_rows(&config, 10_000);
    let want = ["::ffff:127.0.0.1", "::ffff:127.0.0.2", "::ffff:127.0.0.3", "::ffff:127.0.0.4"]
        .map(|a| format!("{a}\tedge1-test\txe-0/0/17\tTransit: Cogent 1-38\t10000\tet-18\t100000\t30"))
        .join("\n");
    assert_eq!(rows.trim(), want);
    let classified = query(
        &config,
        None,
        "SELECT DISTINCT ExporterRegion, InIfConnectivity, InIfProvider, InIfBoundary, OutIfBoundary FROM weir.flows \
         WHERE SrcPort >= 10000",
    );
    assert_eq!(classified.trim(), "test\ttransit\tcogent\texternal\tinternal");
    // The static provider still gives 127.0.0.4 its site; SNMP its name.
    let site = query(
        &config,
        None,
        "SELECT DISTINCT ExporterSite FROM weir.flows WHERE ExporterName = 'edge1-test' AND ExporterSite != ''",
    );
    assert_eq!(site.trim(), "par");
    // Before the answers: the exporter's address, empty interfaces.
    let early = query(
        &config,
        None,
        "SELECT count() FROM weir.flows WHERE SrcPort < 10000 AND ExporterName = '127.0.0.1' AND InIfName = ''",
    );
    assert_eq!(early.trim(), "30");
}

#[test]
fn flows_keep_flowing_while_the_agent_is_down_and_names_return_when_it_is_back() {
    let dir = temp_dir("metadata-snmp-outage");
    let mut snmpd = Snmpd::new(&dir);
    let port = free_udp_port();
    let metadata = format!(
        "[metadata]\nproviders = [\"snmp\"]\ncache_file = \"{}\"\n[metadata.snmp]\ntimeout_ms = 100\nretries = 0\nbreaker_errors = 2\n\
         breaker_backoff_min_ms = 300\nbreaker_backoff_max_ms = 600\n\
         [[metadata.snmp.credentials]]\nsubnet = \"0.0.0.0/0\"\nport = {}\ncommunities = [\"weirtest\"]\n\
         [[metadata.snmp.credentials]]\nsubnet = \"127.0.0.9\"\nport = {}\ncommunities = [\"weirtest\"]\n",
        dir.join("metadata-cache.json").display(),
        snmpd.port,
        // 127.0.0.9 is polled on a port nobody listens on: it never answers.
        free_udp_port(),
    );
    let config = config(&dir, port, &metadata);
    let c = Collector::start(&config);
    let sources = [[127, 0, 0, 1], [127, 0, 0, 9]];
    let mut sent = 0;
    let mut first = 0;
    // No agent: the breaker opens, every flow is stored all the same.
    let deadline = Instant::now() + Duration::from_secs(20);
    // (A closed port refuses at once: the breakers may open before the
    // second round; five rounds at least, so that flows find them pending.)
    while c.metric("weir_metadata_snmp_breaker_opens_total", "").iter().sum::<u64>() < 2 || first < 500 {
        assert!(Instant::now() < deadline, "no breaker opened: {}", c.scrape());
        sent += send_round(port, &sources, first);
        first += 100;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.metric("weir_metadata_snmp_breakers_open", ""), [2]);
    assert!(c.metric("weir_metadata_snmp_polls_total", "result=\"timeout\"")[0] >= 4);
    assert!(
        c.metric("weir_metadata_lookups_total", "result=\"pending\"")[0] > 0,
        "asked, not answered: {}",
        c.scrape()
    );
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent, "no flow waits or is lost");
    // The agent is back: after its backoff, 127.0.0.1 is named; 127.0.0.9
    // keeps failing.
    snmpd.start();
    let polled = wait_metric(&c, "weir_metadata_snmp_polls_total", "result=\"ok\"", 1, Duration::from_secs(10));
    assert_eq!(polled, 1, "{}", c.scrape());
    assert_eq!(c.metric("weir_metadata_snmp_breakers_open", ""), [1]);
    std::thread::sleep(Duration::from_millis(500));
    let named_from = first + 10_000;
    sent += send_round(port, &sources, named_from);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    // The agent stops again: the names already known stay.
    snmpd.stop();
    std::thread::sleep(Duration::from_millis(300));
    sent += send_round(port, &sources, named_from + 1000);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    c.stop();
    // Saved at stop, loaded at start: named from the first flow, no poll.
    let c = Collector::start(&config);
    assert_eq!(c.metric("weir_metadata_cache_loaded", ""), [3], "sysName and two interfaces");
    let restarted = send_round(port, &sources, named_from + 2000);
    assert_eq!(wait_rows_inserted(&c, restarted, Duration::from_secs(20)), restarted);
    assert_eq!(c.metric("weir_metadata_snmp_polls_total", "result=\"ok\""), [0]);
    c.stop();
    let rows = named_rows(&config, named_from);
    assert_eq!(
        rows.trim(),
        "::ffff:127.0.0.1\tedge1-test\txe-0/0/17\tTransit: Cogent 1-38\t10000\tet-18\t100000\t90\n\
         ::ffff:127.0.0.9\t127.0.0.9\t\t\t0\t\t0\t90"
    );
}

#[test]
fn remote_sources_name_exporters_follow_changes_and_keep_the_last_good_data() {
    let dir = temp_dir("metadata-sources");
    let served = dir.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let json = served.join("exporters.json");
    let write_json = |name: &str| {
        let body = format!(
            r#"{{"results": [
                {{"primary_ip4": {{"address": "127.0.0.1/32"}}, "name": "{name}", "site": {{"slug": "par"}},
                  "interfaces": [{{"if_index": 17, "name": "et-17", "boundary": "external"}}]}},
                {{"primary_ip4": {{"address": "127.0.0.2/32"}}, "name": "edge2-remote"}},
                {{"name": "no address"}}
            ]}}"#
        );
        std::fs::write(&json, body).unwrap();
    };
    write_json("edge1-remote");
    std::fs::write(
        served.join("exporters.csv"),
        "subnet,name,if_index,if_name,if_speed\n127.0.0.3,edge3-csv,17,xe-17,10000\n127.0.0.3,,18,xe-18,\n",
    )
    .unwrap();
    let http = HttpServer::start(&served);
    let port = free_udp_port();
    let metadata = format!(
        "[metadata]\n\
         [[metadata.exporters]]\nsubnet = \"127.0.0.2\"\nname = \"edge2-configured\"\n\
         [[metadata.sources]]\nname = \"netbox\"\nurl = \"http://127.0.0.1:{p}/exporters.json\"\npath = \"results\"\n\
         interval_s = 1\nrename = {{ \"primary_ip4.address\" = \"subnet\", \"site.slug\" = \"site\" }}\n\
         [[metadata.sources]]\nname = \"inventory\"\nurl = \"http://127.0.0.1:{p}/exporters.csv\"\nformat = \"csv\"\ninterval_s = 1\n",
        p = http.port
    );
    let config = config(&dir, port, &metadata);
    let c = Collector::start(&config);
    let fetched = |source: &str, result: &str| {
        c.metric("weir_metadata_source_fetches_total", &format!("source=\"{source}\",result=\"{result}\""))
            .first()
            .copied()
            .unwrap_or(0)
    };
    let wait_fetches = |source: &str, result: &str, want: u64| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while fetched(source, result) < want {
            assert!(Instant::now() < deadline, "{source} {result}: {}", c.scrape());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_fetches("netbox", "ok", 1);
    wait_fetches("inventory", "ok", 1);
    assert_eq!(c.metric("weir_metadata_source_entries", "source=\"netbox\""), [2]);
    assert!(
        c.metric("weir_metadata_source_invalid_entries_total", "source=\"netbox\"")[0] >= 1,
        "the entry without an address"
    );
    let sources = [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]];
    let mut sent = send_round(port, &sources, 0);
    std::thread::sleep(Duration::from_millis(500));
    sent += send_round(port, &sources, 10_000);
    // Names are resolved when a block is written: these rows are stored
    // before the document changes (else a loaded machine may write them
    // with the new name).
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    // The document changes: what is known is resolved again.
    write_json("edge1-renamed");
    let before = fetched("netbox", "ok");
    wait_fetches("netbox", "ok", before + 2);
    std::thread::sleep(Duration::from_millis(500));
    sent += send_round(port, &sources, 20_000);
    // The document goes away: the last good entries stay.
    std::fs::remove_file(&json).unwrap();
    wait_fetches("netbox", "error", 1);
    sent += send_round(port, &sources, 30_000);
    assert_eq!(wait_rows_inserted(&c, sent, Duration::from_secs(20)), sent);
    c.stop();
    let names = |from: u32| {
        query(
            &config,
            None,
            &format!(
                "SELECT ExporterName, ExporterSite, InIfName, InIfBoundary, OutIfName, OutIfSpeed, count() FROM weir.flows \
                 WHERE SrcPort >= {from} AND SrcPort < {} GROUP BY ExporterName, ExporterSite, InIfName, InIfBoundary, \
                 OutIfName, OutIfSpeed ORDER BY ExporterName",
                from + 10_000
            ),
        )
    };
    assert_eq!(
        names(10_000).trim(),
        "edge1-remote\tpar\tet-17\texternal\t\t0\t30\n\
         edge2-configured\t\t\tundefined\t\t0\t30\n\
         edge3-csv\t\txe-17\tundefined\txe-18\t0\t30"
    );
    assert!(names(20_000).starts_with("edge1-renamed\tpar\tet-17"), "{}", names(20_000));
    assert!(names(30_000).starts_with("edge1-renamed\tpar\tet-17"), "{}", names(30_000));
}
