use super::{default_listeners, BalancerMode, Config, SinkKind};

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
