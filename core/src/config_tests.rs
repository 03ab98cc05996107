use super::{default_listeners, BalancerMode, Config, Renamed, SinkKind, StoreKind};

fn error_key(text: &str) -> String {
    let e = Config::parse(text).expect_err("must be refused");
    assert!(!e.message.is_empty());
    e.key
}

#[test]
fn an_empty_file_is_the_defaults() {
    let c = Config::parse("").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.listeners, default_listeners());
    assert_eq!(c.listeners.len(), 3);
    assert_eq!(c.balancer.mode, BalancerMode::Ebpf);
    assert_eq!(c.sink.kind, SinkKind::Store);
}

#[test]
fn the_sums_interval_defaults_to_the_raw_stores_and_a_set_one_wins() {
    let interval = |text: &str| Config::parse(text).unwrap().store.consolidation_interval().as_millis();
    assert_eq!(interval(""), 10_000);
    assert_eq!(interval("[store]\nraw = \"segments\"\n"), 60_000);
    assert_eq!(interval("[store]\nraw = \"segments\"\nconsolidation_interval_ms = 5000\n"), 5_000);
    assert_eq!(interval("[store]\nconsolidation_interval_ms = 30000\n"), 30_000);
}

#[test]
fn the_shipped_examples_parse() {
    for text in [
        include_str!("../../config/weir.toml"),
        include_str!("../../config/vm-2-cores.toml"),
        include_str!("../../config/appliance-16-cores.toml"),
    ] {
        Config::parse(text).unwrap();
    }
    let vm = Config::parse(include_str!("../../config/vm-2-cores.toml")).unwrap();
    assert_eq!(vm.check_machine(2).unwrap(), vec![1]);
    let appliance = Config::parse(include_str!("../../config/appliance-16-cores.toml")).unwrap();
    assert_eq!(appliance.check_machine(16).unwrap().len(), 14);
    assert!(appliance.check_machine(2).is_err(), "a 16-core file on a 2-core box names the core");
}

#[test]
fn the_default_file_is_the_built_in_defaults() {
    let shipped = Config::parse(include_str!("../../config/weir.toml")).unwrap();
    assert_eq!(shipped, Config::parse("").unwrap());
}

#[test]
fn bad_values_name_their_key() {
    assert_eq!(error_key("[shards]\nreceive_batch_datagrams = 0\n"), "shards.receive_batch_datagrams");
    assert_eq!(error_key("[shards]\ncores = [1, 2, 1]\n"), "shards.cores[2]");
    assert_eq!(error_key("[shards]\ndatagram_bytes_max = 100\n"), "shards.datagram_bytes_max");
    assert_eq!(error_key("[shards]\nreceive_batch_datagrams = \"many\"\n"), "shards.receive_batch_datagrams");
    assert_eq!(error_key("[shards]\nreceive_bach_datagrams = 3\n"), "shards.receive_bach_datagrams");
    assert_eq!(error_key("[[listeners]]\naddress = \"0.0.0.0\"\n"), "listeners.address");
    assert_eq!(error_key("[[listeners]]\naddress = \"0.0.0.0:0\"\n"), "listeners[0].address");
    assert_eq!(error_key("listeners = []\n"), "listeners");
    assert_eq!(error_key("[balancer]\nmode = \"magic\"\n"), "balancer.mode");
    assert_eq!(error_key("[sink]\nkind = \"json\"\npath = \"\"\n"), "sink.path");
    assert_eq!(error_key("[bogus]\n"), "bogus");
    assert_eq!(error_key("[bmp]\nlisten = \"10179\"\n"), "bmp.listen");
    assert_eq!(error_key("[bmp]\nallowed = [\"10.0.0.0/40\"]\n"), "bmp.allowed[0]");
    assert_eq!(error_key("[bmp]\nqueue = 0\n"), "bmp.queue");
    assert_eq!(error_key("[bmp]\nrds = [\"65000:100\", \"65000\\u003a\"]\n"), "bmp.rds[1]");
    assert_eq!(error_key("[bmp]\nrts = [\"192.0.2.1:70000\"]\n"), "bmp.rts[0]");
    assert_eq!(error_key("[kafka]\ntopic = \"flows v1\"\n"), "kafka.topic");
    assert_eq!(error_key("[kafka]\nbrokers = \" \"\n"), "kafka.brokers");
    assert_eq!(error_key("[kafka]\npartitioning = \"random\"\n"), "kafka.partitioning");
    assert_eq!(error_key("[kafka]\nqueue_messages_max = 0\n"), "kafka.queue_messages_max");
    assert_eq!(error_key("[kafka]\nspill_bytes_max = 0\n"), "kafka.spill_bytes_max");
    assert_eq!(error_key("[kafka.options]\nacks = \"1\"\n"), "kafka.options.acks");
    assert_eq!(error_key("[kafka.outlet]\ngroup = \"\"\n"), "kafka.outlet.group");
    assert_eq!(error_key("[kafka.outlet]\nstate_replication = 0\n"), "kafka.outlet.state_replication");
    assert_eq!(error_key("[kafka.enriched]\ntopic = \"flows/enriched\"\n"), "kafka.enriched.topic");
    assert_eq!(error_key("[kafka.enriched]\nrecord_bytes_max = 0\n"), "kafka.enriched.record_bytes_max");
    assert_eq!(error_key("[kafka.enriched]\ncreate_replication = 0\n"), "kafka.enriched.create_replication");
    assert_eq!(
        error_key("[kafka.enriched.options]\n\"bootstrap.servers\" = \"x:9092\"\n"),
        "kafka.enriched.options.bootstrap.servers"
    );
    assert_eq!(error_key("[kafka.outlet]\nsession_timeout_ms = 10\n"), "kafka.outlet.session_timeout_ms");
    assert_eq!(error_key("[kafka.outlet]\nbatches_in_flight_max = 0\n"), "kafka.outlet.batches_in_flight_max");
    assert_eq!(error_key("[kafka.outlet]\noffset_reset = \"middle\"\n"), "kafka.outlet.offset_reset");
    assert_eq!(
        error_key("[kafka.outlet.options]\n\"enable.auto.commit\" = \"false\"\n"),
        "kafka.outlet.options.enable.auto.commit"
    );
    let filters = Config::parse("[bmp]\nrds = [\"0\", \"65000:100\"]\nrts = [\"2:65000:7\"]\n").unwrap().bmp.filters();
    assert_eq!((filters.rds, filters.rts), (vec![0, 65000 << 32 | 100], vec![2 << 48 | 65000 << 16 | 7]));
}

#[test]
fn machine_checks_name_their_key() {
    let c = Config::parse("[shards]\ncores = [0, 5]\n").unwrap();
    assert_eq!(c.check_machine(2).unwrap_err().key, "shards.cores[1]");
    let c = Config::parse("[shards]\ncontrol_core = 3\n").unwrap();
    assert_eq!(c.check_machine(2).unwrap_err().key, "shards.control_core");
}

#[test]
fn empty_cores_means_every_cpu_but_the_control_core() {
    let c = Config::parse("").unwrap();
    assert_eq!(c.check_machine(4).unwrap(), vec![1, 2, 3]);
    assert_eq!(c.check_machine(1).unwrap(), vec![0], "one CPU: shard and control share it");
}

#[test]
fn only_the_socket_buffer_changes_live() {
    let old = Config::parse("").unwrap();
    let new = Config::parse("[shards]\nsocket_receive_buffer_bytes = 1000\n").unwrap();
    assert!(old.keys_needing_restart(&new).is_empty());
    let new = Config::parse("[shards]\ncores = [0]\n[sink]\nkind = \"json\"\n").unwrap();
    assert_eq!(old.keys_needing_restart(&new), vec!["shards", "sink"]);
}

const TEST_RENAMES: &[Renamed] = &[
    Renamed { old: "shards.batch", new: "shards.receive_batch_datagrams", since: "0.2.0" },
    Renamed { old: "store.flush", new: "store.flush_interval_ms", since: "0.2.0" },
    Renamed { old: "run.state_file", new: "decoder.state_file", since: "0.3.0" },
];

#[test]
fn renamed_keys_keep_old_files_working_with_a_warning() {
    let before = include_str!("../../config/tests/renamed-before.toml");
    let after = include_str!("../../config/tests/renamed-after.toml");
    let (old, warnings) = Config::load(before, &[], TEST_RENAMES).unwrap();
    assert_eq!(old, Config::parse(after).unwrap());
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[2].contains("run.state_file") && warnings[2].contains("decoder.state_file"), "{warnings:?}");
    // The current names load without warnings.
    assert!(Config::load(after, &[], TEST_RENAMES).unwrap().1.is_empty());
    // Both names at once is an error naming the old one.
    let both = "[shards]\nbatch = 8\nreceive_batch_datagrams = 16\n";
    let e = Config::load(both, &[], TEST_RENAMES).unwrap_err();
    assert_eq!(e.key, "shards.batch", "{e}");
    // Without the renames (today's list), an old name is an unknown key.
    assert!(Config::parse(before).is_err());
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn environment_variables_override_the_file() {
    let file = "[store]\nkind = \"embedded\"\n[shards]\ncores = [0]\n";
    let vars = env(&[
        ("WEIR_STORE__KIND", "remote"),
        ("WEIR_STORE__REMOTE__URL", "http://192.0.2.7:8123"),
        ("WEIR_SHARDS__CORES", "[1, 2]"),
        ("WEIR_SHARDS__RECEIVE_COALESCE_US", "0"),
        ("WEIR_HTTP__LISTEN", "127.0.0.1:9999"),
        // Not overrides: no section separator, or another prefix.
        ("WEIR_TEST_WEDGE_SHARD", "0:1"),
        ("PATH", "/usr/bin"),
    ]);
    let (c, warnings) = Config::load(file, &vars, &[]).unwrap();
    assert!(warnings.is_empty());
    assert_eq!(c.store.kind, StoreKind::Remote);
    assert_eq!(c.store.remote.url, "http://192.0.2.7:8123");
    assert_eq!(c.shards.cores, [1, 2]);
    assert_eq!(c.shards.receive_coalesce_us, 0);
    assert_eq!(c.http.listen, Some("127.0.0.1:9999".parse().unwrap()));
    // A bad override is refused, naming the variable.
    let e = Config::load(file, &env(&[("WEIR_SHARDS__CORES", "many")]), &[]).unwrap_err();
    assert!(e.to_string().contains("WEIR_SHARDS__CORES"), "{e}");
    let e = Config::load(file, &env(&[("WEIR_STORE__NO_SUCH_KEY", "1")]), &[]).unwrap_err();
    assert!(e.to_string().contains("no_such_key"), "{e}");
    // Checks still name the key.
    let e = Config::load(file, &env(&[("WEIR_STORE__INSERT_INTERVAL_MS", "9999999")]), &[]).unwrap_err();
    assert_eq!(e.key, "store.insert_interval_ms");
}

#[test]
fn haproxy_settings_are_checked_only_when_enabled_and_name_their_key() {
    let on = "[haproxy]\nenabled = true\n";
    assert!(Config::parse(on).is_ok(), "the defaults are a working input");
    assert!(Config::parse("[haproxy]\nsocket_mode = \"rwx\"\n").is_ok(), "off: not checked");
    assert_eq!(error_key(&format!("{on}socket_mode = \"0999\"\n")), "haproxy.socket_mode");
    assert_eq!(error_key(&format!("{on}socket = \"{}\"\n", "x".repeat(200))), "haproxy.socket");
    assert_eq!(error_key(&format!("{on}structured_data_id = \"a b\"\n")), "haproxy.structured_data_id");
    assert_eq!(error_key(&format!("{on}key = \"nope\"\n")), "haproxy.key");
    assert_eq!(error_key(&format!("{on}request_counter = \"client_ip\"\n")), "haproxy.request_counter");
    assert_eq!(error_key(&format!("{on}[haproxy.kafka]\nacks = \"1\"\n")), "haproxy.kafka.idempotence");
    assert_eq!(error_key(&format!("{on}[haproxy.kafka]\nacks = \"some\"\n")), "haproxy.kafka.acks");
    assert_eq!(
        error_key(&format!("{on}[haproxy.kafka]\ndead_letter_topic = \"haproxy-logs\"\n")),
        "haproxy.kafka.dead_letter_topic"
    );
    assert_eq!(error_key(&format!("{on}[haproxy.kafka]\ncompression = \"brotli\"\n")), "haproxy.kafka.compression");
    let field = |body: &str| format!("{on}request_counter = \"n\"\n[[haproxy.fields]]\nname = \"n\"\n{body}");
    assert_eq!(error_key(&field("type = \"int\"\n")), "haproxy.fields[0].sd");
    assert_eq!(error_key(&field("sd = \"a\"\nposition = 1\ntype = \"int\"\n")), "haproxy.fields[0].sd");
    assert_eq!(error_key(&field("sd = \"a\"\ntype = \"headers\"\n")), "haproxy.fields[0].headers");
    assert_eq!(error_key(&field("sd = \"a\"\ntype = \"float\"\n")), "haproxy.fields.type");
    assert_eq!(error_key(&field("sd = \"a\"\ntype = \"int\"\ndecode = \"haproxy_hex\"\n")), "haproxy.fields[0].decode");
    assert_eq!(error_key(&field("sd = \"a\"\ntype = \"int\"\ndecode = \"base64\"\n")), "haproxy.fields.decode");
    assert_eq!(error_key(&format!("{on}request_counter_wait_s = 0\n")), "haproxy.request_counter_wait_s");
    assert_eq!(error_key(&format!("{on}invalid_utf8 = \"drop\"\n")), "haproxy.invalid_utf8");
    assert!(Config::parse(&field("sd = \"a\"\ntype = \"int\"\n")).is_ok());
    let host =
        format!("{on}request_counter = \"host\"\n[[haproxy.fields]]\nname = \"host\"\nsd = \"h\"\ntype = \"int\"\n");
    assert_eq!(error_key(&host), "haproxy.fields[0].name");
}

#[test]
fn a_cache_host_runs_the_haproxy_input_alone() {
    let c = Config::parse("listeners = []\n[haproxy]\nenabled = true\ncore = 1\n").unwrap();
    assert_eq!(c.check_machine(2).unwrap(), Vec::<usize>::new(), "no flow shard");
    assert_eq!(c.check_machine(1).unwrap_err().key, "haproxy.core");
}

#[test]
fn raw_segments_need_the_embedded_store_and_batches_follow_the_shards() {
    let segments = Config::parse("[store]\nraw = \"segments\"\nsegments_hours = 2\n").unwrap();
    assert_eq!(segments.store.raw, super::RawStore::Segments);
    let remote = "[store]\nkind = \"remote\"\nraw = \"segments\"\n[store.remote]\nurl = \"http://127.0.0.1:8123\"\n";
    assert_eq!(error_key(remote), "store.raw");
    assert_eq!(error_key("[store]\nraw = \"files\"\n"), "store.raw");
    assert_eq!(error_key("[store]\nraw = \"segments\"\nsegments_hours = 0\n"), "store.segments_hours");
    assert_eq!(error_key("[store]\nconsolidation_interval_ms = 0\n"), "store.consolidation_interval_ms");
    assert_eq!(error_key("[store]\nconsolidation_interval_ms = 600001\n"), "store.consolidation_interval_ms");
    let auto = Config::parse("").unwrap().store;
    assert_eq!((auto.batches(1), auto.batches(14)), (16, 224));
    assert_eq!(Config::parse("[store]\nbatches_max = 5\n").unwrap().store.batches(14), 5);
    assert_eq!(error_key("[store]\ninsert_rows_max = 2000000\n"), "store.insert_rows_max");
    assert_eq!(error_key("[store]\ninsert_bytes_max = 0\n"), "store.insert_bytes_max");
}

#[test]
fn embedded_server_settings_override_the_appliance_bounds_by_name() {
    let file = "[store.embedded]\nserver_settings = { mark_cache_size = 1048576, background_pool_size = 4 }\n";
    let settings = Config::parse(file).unwrap().store.embedded.effective_server_settings();
    let get = |name: &str| settings.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(get("mark_cache_size"), Some(1 << 20), "configured wins");
    assert_eq!(get("background_pool_size"), Some(4), "a setting beyond the bounds is passed on");
    assert_eq!(get("primary_index_cache_size"), Some(64 << 20), "the rest keep the appliance bounds");
    let bad = "[store.embedded]\nserver_settings = { \"mark_cache_size=1 --x\" = 1 }\n";
    assert_eq!(error_key(bad), "store.embedded.server_settings.mark_cache_size=1 --x");
}

#[test]
fn metadata_settings_name_their_key_and_snmp_is_checked_only_when_used() {
    let snmp = "[metadata]\nproviders = [\"static\", \"snmp\"]\n";
    assert!(Config::parse(snmp).is_ok(), "the defaults poll with community public");
    let creds = |body: &str| format!("{snmp}[[metadata.snmp.credentials]]\nsubnet = \"192.0.2.0/24\"\n{body}");
    // Not used: not checked.
    let unused = "[metadata]\n[[metadata.snmp.credentials]]\nsubnet = \"nope\"\n";
    assert!(Config::parse(unused).is_ok());
    let bad_subnet = format!("{snmp}[[metadata.snmp.credentials]]\nsubnet = \"192.0.2.0/40\"\ncommunities = [\"p\"]\n");
    assert_eq!(error_key(&bad_subnet), "metadata.snmp.credentials[0].subnet");
    assert_eq!(error_key(&creds("")), "metadata.snmp.credentials[0].communities");
    assert_eq!(error_key(&creds("communities = [\"p\"]\nagent = \"edge1\"\n")), "metadata.snmp.credentials[0].agent");
    assert_eq!(
        error_key(&creds("communities = [\"p\"]\nprivacy_protocol = \"aes\"\n")),
        "metadata.snmp.credentials[0].user_name"
    );
    let v3 = |body: &str| creds(&format!("user_name = \"weir\"\n{body}"));
    assert!(Config::parse(&v3("")).is_ok(), "noAuthNoPriv");
    let sha = "authentication_protocol = \"SHA-256\"\nauthentication_passphrase = \"12345678\"\n";
    assert!(Config::parse(&v3(&format!("{sha}privacy_protocol = \"AES256-C\"\nprivacy_passphrase = \"abcdefgh\"\n")))
        .is_ok());
    assert_eq!(
        error_key(&v3("authentication_protocol = \"sha3\"\n")),
        "metadata.snmp.credentials[0].authentication_protocol"
    );
    assert_eq!(
        error_key(&v3("authentication_protocol = \"md5\"\nauthentication_passphrase = \"short\"\n")),
        "metadata.snmp.credentials[0].authentication_passphrase"
    );
    assert_eq!(
        error_key(&v3("privacy_protocol = \"des\"\nprivacy_passphrase = \"abcdefgh\"\n")),
        "metadata.snmp.credentials[0].privacy_protocol"
    );
    assert_eq!(
        error_key(&v3(&format!("{sha}privacy_protocol = \"rc4\"\n"))),
        "metadata.snmp.credentials[0].privacy_protocol"
    );
    assert_eq!(error_key(&v3("communities = [\"public\"]\n")), "metadata.snmp.credentials[0].communities");
    assert_eq!(error_key(&format!("{snmp}[metadata.snmp]\npollers = 0\n")), "metadata.snmp.pollers");
    assert_eq!(
        error_key(&format!("{snmp}[metadata.snmp]\nbreaker_backoff_max_ms = 1\n")),
        "metadata.snmp.breaker_backoff_max_ms"
    );
    assert_eq!(error_key("[metadata]\nproviders = [\"snmp\", \"snmp\"]\n"), "metadata.providers");
    assert!(Config::parse("[metadata]\nproviders = [\"ldap\"]\n").is_err());
    assert_eq!(error_key("[metadata]\ncache_refresh_s = 4000\n"), "metadata.cache_refresh_s");
    assert_eq!(error_key("[metadata]\ncache_entries_max = 0\n"), "metadata.cache_entries_max");
    let rules = "[metadata]\nexporter_classifiers = ['ClassifySite(\"par\")', 'ClassifyProvider(\"x\")']\n";
    assert_eq!(error_key(rules), "metadata.exporter_classifiers[1]");
    let rules = "[metadata]\ninterface_classifiers = ['Interface.Descr == \"x\"']\n";
    assert_eq!(error_key(rules), "metadata.interface_classifiers[0]");
    assert!(Config::parse("[metadata]\ninterface_classifiers = ['ClassifyInternal()']\n").is_ok());
    let source =
        |body: &str| format!("[[metadata.sources]]\nname = \"netbox\"\nurl = \"https://netbox.example/api\"\n{body}");
    assert!(Config::parse(&source("")).is_ok());
    assert_eq!(error_key(&source("format = \"xml\"\n")), "metadata.sources[0].format");
    assert_eq!(error_key(&source("interval_s = 0\n")), "metadata.sources[0].interval_s");
    assert_eq!(error_key(&source("rename = { a = \"site_name\" }\n")), "metadata.sources[0].rename");
    assert_eq!(
        error_key("[[metadata.sources]]\nname = \"Net Box\"\nurl = \"http://x.example\"\n"),
        "metadata.sources[0].name"
    );
    assert_eq!(error_key("[[metadata.sources]]\nname = \"a\"\nurl = \"ftp://x.example\"\n"), "metadata.sources[0].url");
    let twice = format!("{}{}", source(""), source(""));
    assert_eq!(error_key(&twice), "metadata.sources[1].name");
}

#[test]
fn a_cluster_needs_the_remote_store_and_a_plain_name() {
    let remote = "[store]\nkind = \"remote\"\n[store.remote]\ncluster = \"weir_2\"\n";
    let c = Config::parse(remote).unwrap();
    assert_eq!(c.store.schema_settings().cluster.as_deref(), Some("weir_2"));
    assert_eq!(Config::parse("[store.remote]\ncluster = \"weir\"\n").unwrap_err().key, "store.remote.cluster");
    let bad = remote.replace("weir_2", "weir; DROP");
    assert_eq!(Config::parse(&bad).unwrap_err().key, "store.remote.cluster");
    assert_eq!(Config::parse("").unwrap().store.schema_settings().cluster, None);
    let failover = remote.replace("cluster = \"weir_2\"", "failover = [\"http://a:8123\", \"b:8123\"]");
    assert_eq!(Config::parse(&failover).unwrap_err().key, "store.remote.failover[1]");
}
