//! `config/alerts.yml`: valid for Prometheus, its unit tests pass, and
//! every Weir metric a rule reads is one a running collector exports (a
//! rule over a misspelt metric would never fire, silently).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{free_udp_port, temp_dir, two_shards, write_config, Collector};

fn config_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config").join(name)
}

fn promtool(args: &[&str]) {
    let out = Command::new("promtool").args(args).output().expect("promtool (scripts/setup installs prometheus)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_check_and_pass_their_unit_tests() {
    promtool(&["check", "rules", config_file("alerts.yml").to_str().unwrap()]);
    promtool(&["test", "rules", config_file("alerts_test.yml").to_str().unwrap()]);
}

#[test]
fn every_metric_the_rules_read_is_exported() {
    let rules = std::fs::read_to_string(config_file("alerts.yml")).unwrap();
    let mut wanted: Vec<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("weir_"))
        .map(String::from)
        .collect();
    wanted.sort();
    wanted.dedup();
    assert!(wanted.len() >= 8, "{wanted:?}");

    let dir = temp_dir("alerts");
    let store = format!(
        "[sink]\nkind = \"store\"\n[store]\nspool_dir = \"{}\"\n[store.embedded]\npath = \"{}\"\n",
        dir.join("spool").display(),
        dir.join("chdb").display()
    );
    // The HAProxy input too; its producer connects only when it has something to send.
    let haproxy = format!(
        "[haproxy]\nenabled = true\nsocket = \"{}\"\n[haproxy.kafka]\nbrokers = \"127.0.0.1:9\"\n",
        dir.join("haproxy.sock").display()
    );
    // BMP too, on a port nothing connects to.
    let bmp = format!("[bmp]\nlisten = \"127.0.0.1:{}\"\n", free_udp_port());
    let body = format!("{}{store}{haproxy}{bmp}", two_shards(free_udp_port(), "ebpf"));
    let config = write_config(&dir, "weir.toml", &body);
    let c = Collector::start(&config);
    let mut exported = c.scrape();
    c.stop();
    // `weir inlet`'s, with brokers that do not answer (it starts anyway).
    let kafka = format!("[kafka]\nbrokers = \"127.0.0.1:9\"\nspill_dir = \"{}\"\n", dir.join("spill").display());
    let inlet = write_config(&dir, "inlet.toml", &format!("{}{kafka}", two_shards(free_udp_port(), "ebpf")));
    let c = Collector::start_as("inlet", &inlet, &[]);
    exported += &c.scrape();
    c.stop();
    // `weir outlet`'s, the same brokers and the embedded store, with the
    // enriched output.
    let enriched = "[kafka.enriched]\ntopic = \"flows-enriched\"\n";
    let outlet = write_config(&dir, "outlet.toml", &format!("[shards]\ncores = [0]\n{store}{kafka}{enriched}"));
    let c = Collector::start_as("outlet", &outlet, &[]);
    exported += &c.scrape();
    c.stop();
    for name in wanted {
        let series = name.clone();
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        assert!(
            exported.contains(&format!("# TYPE {family} ")) && exported.contains(&series),
            "alerts.yml reads {name}, which /metrics does not export"
        );
    }
}
