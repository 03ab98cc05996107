//! A ClickHouse cluster as the store (`[store.remote] cluster`): Debian's
//! ZooKeeper and four clickhouse-server 18.16 nodes, two shards of two
//! replicas (`scripts/clickhouse-cluster`). `weir migrate` makes the
//! replicated local tables and the Distributed ones on every node, and a
//! second run has nothing to do; `weir run` stores generated flows into
//! its node's shard, each counted once through the Distributed tables on
//! any node; a replica stopped during the load catches up when it returns;
//! with its whole shard down the writer moves to the other shard
//! (`store.remote.failover`), nothing lost; the records (exporter names)
//! reach every node, the stopped one when it returns, and the helper
//! tables are replicated to all; a column switched on reaches
//! every node's tables, and one added while a node is down reaches it when
//! it returns.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::{exchange, free_udp_port, repo_root, temp_dir, write_config, Collector};
use weir_perf::flowgen::{self, Plan, Stop};
use weir_perf::traffic::Format;

/// The cluster of `scripts/clickhouse-cluster`, stopped on drop.
struct Cluster {
    dir: PathBuf,
    base: u16,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let base = weir_perf::collectors::cluster_base_port();
        let c = Cluster { dir: dir.to_path_buf(), base };
        c.run(&["start"]);
        c
    }

    fn run(&self, what: &[&str]) {
        let out = Command::new(repo_root().join("scripts/clickhouse-cluster"))
            .arg(&self.dir)
            .arg(self.base.to_string())
            .args(what)
            .output()
            .expect("scripts/clickhouse-cluster (scripts/setup installs zookeeper and clickhouse-server)");
        assert!(out.status.success(), "clickhouse-cluster {what:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self, node: u16) -> String {
        format!("127.0.0.1:{}", self.base + 10 * node)
    }

    /// A query on `node`, TabSeparated, trimmed; `weir` is the default
    /// database (`joinGet` on 18.16 names a table of it alone).
    fn query(&self, node: u16, sql: &str) -> String {
        // HTTP/1.0: the answer is not chunked.
        let request = format!("POST /?database=weir HTTP/1.0\r\nContent-Length: {}\r\n\r\n{sql}", sql.len());
        let (status, body) = exchange(&self.url(node), request.as_bytes());
        assert_eq!(status, 200, "node {node}: {sql}: {body}");
        body.trim().to_string()
    }

    fn stop_node(&self, node: u16) {
        let pid: i32 =
            std::fs::read_to_string(self.dir.join(format!("node{node}.pid"))).unwrap().trim().parse().unwrap();
        // SAFETY: a plain signal to the server this test started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.contains(") Z ") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.run(&["stop"]);
    }
}

/// `weir migrate` (`--dry-run`): its stdout (the steps) and stderr.
fn migrate(config: &Path, dry_run: bool) -> (String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["migrate", "--config"]).arg(config);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "weir migrate: {stderr}");
    (stdout, stderr)
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    common::wait_until(what, Duration::from_secs(60), &mut done);
}

#[test]
fn a_cluster_is_migrated_once_written_on_one_shard_and_read_through_distributed_tables() {
    let dir = temp_dir("cluster");
    let cluster = Cluster::start(&dir.join("cluster"));
    let port = free_udp_port();
    let body = format!(
        "[shards]\ncores = [0]\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\
         [sink]\nkind = \"store\"\n[store]\nkind = \"remote\"\nspool_dir = \"{spool}\"\nconsolidation_interval_ms = 300\n\
         flush_interval_ms = 200\ninsert_interval_ms = 200\n[store.remote]\nurl = \"http://{url}\"\ncluster = \"weir\"\n\
         failover = [\"http://{replica}\", \"http://{other_shard}\", \"http://{last}\"]\n\
         [console]\ndatabase = \"{saved}\"\n",
        spool = dir.join("spool").display(),
        url = cluster.url(1),
        replica = cluster.url(2),
        other_shard = cluster.url(3),
        last = cluster.url(4),
        saved = dir.join("console.sqlite").display(),
    );
    let config = write_config(&dir, "weir.toml", &body);

    // From empty: every node has the local tables and the Distributed ones.
    let (steps, said) = migrate(&config, false);
    assert!(
        steps.contains("ReplicatedMergeTree('/clickhouse/tables/{shard}/weir/flows_local', '{replica}')"),
        "{steps}"
    );
    for node in 1..=4 {
        let engines = cluster.query(
            node,
            "SELECT name, engine FROM system.tables WHERE database = 'weir' AND name LIKE 'flows%' ORDER BY name",
        );
        assert_eq!(
            engines,
            "flows\tDistributed\nflows_1h\tDistributed\nflows_1h_local\tReplicatedSummingMergeTree\n\
             flows_1m\tDistributed\nflows_1m_local\tReplicatedSummingMergeTree\n\
             flows_5m\tDistributed\nflows_5m_local\tReplicatedSummingMergeTree\nflows_local\tReplicatedMergeTree",
            "node {node} ({said})"
        );
    }
    // The helper tables are replicated to every node, filled once.
    let helpers = "SELECT (SELECT engine FROM system.tables WHERE database = 'weir' AND name = 'protocols'), \
                   (SELECT count() FROM weir.protocols)";
    let protocols = format!("ReplicatedMergeTree\t{}", weir_core::migrate::PROTOCOLS.len());
    for node in 1..=4 {
        wait("the protocols' rows on every node", || cluster.query(node, helpers) == protocols);
    }
    // Run again: nothing to do, and no warning (every node is listed).
    let (steps, said) = migrate(&config, true);
    assert!(said.contains("would run 0 steps") && !said.contains("warning"), "{said}\n{steps}");
    // Emptied (on any replica): refilled by the next migration, though the
    // rows are those inserted before.
    cluster.query(3, "TRUNCATE TABLE weir.protocols");
    wait("emptied everywhere", || cluster.query(1, "SELECT count() FROM weir.protocols") == "0");
    let (steps, _) = migrate(&config, false);
    assert!(steps.contains("INSERT INTO weir.protocols"), "{steps}");
    for node in 1..=4 {
        wait("the protocols refilled on every node", || cluster.query(node, helpers) == protocols);
    }
    // A node not listed: the records would not reach it.
    let three = write_config(&dir, "three.toml", &body.replace(&format!(", \"http://{}\"", cluster.url(4)), ""));
    let (_, said) = migrate(&three, true);
    assert!(said.contains("cluster weir has 4 nodes and store.remote lists 3"), "{said}");

    // A replica of the written shard stopped during the load.
    cluster.stop_node(2);
    let c = Collector::start(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get_status("/health/ready").0 != 200 {
        assert!(Instant::now() < deadline, "the store never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut plan = Plan::new(Format::Ipfix, target);
    plan.rate = Some(10_000.0);
    plan.stop = Stop::After(Duration::from_secs(2));
    plan.exporters = 2;
    let sent = flowgen::run(&plan, &AtomicBool::new(false)).unwrap();
    assert_eq!(c.wait_metric_sum("weir_store_rows_inserted_total", sent.flows), sent.flows);
    let count = |node: u16, table: &str| cluster.query(node, &format!("SELECT count() FROM weir.{table}"));
    let flows = sent.flows.to_string();
    // Each flow once through the Distributed tables, from any node; all of them in shard 1.
    for node in [1, 3, 4] {
        wait("the flows through Distributed", || count(node, "flows") == flows);
        wait("the sums through Distributed", || cluster.query(node, "SELECT sum(Flows) FROM weir.flows_1h") == flows);
    }
    assert_eq!(
        (count(1, "flows_local"), count(3, "flows_local"), count(4, "flows_local")),
        (flows.clone(), "0".into(), "0".into())
    );
    // Each node has the exporters' records (names), whichever answers.
    let names =
        "SELECT arrayStringConcat(groupArray(joinGet('exporter_records', 'ExporterName', ExporterRecord)), ' ') \
                 FROM (SELECT DISTINCT ExporterRecord FROM weir.flows ORDER BY ExporterRecord)";
    let exporters = cluster.query(1, names);
    assert!(!exporters.is_empty() && exporters.split(' ').all(|n| !n.is_empty()), "{exporters:?}");
    for node in [3, 4] {
        assert_eq!(cluster.query(node, names), exporters, "node {node}");
    }
    assert!(c.metric("weir_store_remote_record_copy_errors_total", "")[0] > 0, "node 2 was down");
    assert!(c.metric("weir_store_remote_record_copies_waiting", "")[0] > 0);
    // The stopped replica catches up when it returns, its records too.
    cluster.run(&["node", "2"]);
    wait("the replica caught up", || count(2, "flows_local") == flows);
    wait("its sums too", || cluster.query(2, "SELECT sum(Flows) FROM weir.flows_1h_local") == flows);
    wait("its records", || cluster.query(2, names) == exporters);
    assert_eq!(c.metric("weir_store_remote_record_copies_waiting", ""), [0]);
    assert_eq!(c.metric("weir_store_remote_record_copies_dropped_total", ""), [0]);
    // The console reads the Distributed tables.
    let (status, rate) = c.get_status("/api/v0/console/widget/flow-rate");
    assert_eq!(status, 200, "{rate}");
    assert_eq!(
        (c.metric("weir_store_remote_node", ""), c.metric("weir_store_remote_failovers_total", "")),
        (vec![0], vec![0])
    );

    // Shard 1 down whole: the writer moves to its failover nodes, shard 2's
    // node 3 takes the next flows, nothing is lost.
    cluster.stop_node(1);
    cluster.stop_node(2);
    let more_flows = flowgen::run(&plan, &AtomicBool::new(false)).unwrap().flows;
    let all = sent.flows + more_flows;
    assert_eq!(c.wait_metric_sum("weir_store_rows_inserted_total", all), all);
    assert_eq!(c.metric("weir_store_remote_node", ""), [2], "the other shard's node");
    assert_eq!(c.metric("weir_store_remote_failovers_total", ""), [1]);
    wait("the other shard's replica", || count(4, "flows_local") == more_flows.to_string());
    assert_eq!(count(3, "flows_local"), more_flows.to_string());
    cluster.run(&["node", "1"]);
    cluster.run(&["node", "2"]);
    for node in 1..=4 {
        wait("every flow once through Distributed", || count(node, "flows") == all.to_string());
    }
    c.assert_promtool_is_silent();
    c.stop();
    let flows = all.to_string();

    // A column switched on: every replica's local table, and the Distributed tables made again.
    let more =
        write_config(&dir, "more.toml", &body.replace("[store]\n", "[store]\noptional_columns = [\"SrcVlan\"]\n"));
    let (steps, _) = migrate(&more, false);
    assert!(steps.contains("ALTER TABLE weir.flows_local ON CLUSTER weir ADD COLUMN SrcVlan"), "{steps}");
    for node in 1..=4 {
        let has = cluster.query(
            node,
            "SELECT table FROM system.columns WHERE database = 'weir' AND name = 'SrcVlan' ORDER BY table",
        );
        // A dimension of the consolidated tables too.
        assert_eq!(
            has, "flows\nflows_1h\nflows_1h_local\nflows_1m\nflows_1m_local\nflows_5m\nflows_5m_local\nflows_local",
            "node {node}"
        );
        assert_eq!(count(node, "flows"), flows, "node {node}: the rows kept");
    }
    let (_, said) = migrate(&more, true);
    assert!(said.contains("would run 0 steps"), "{said}");

    // A node down during a migration: the statement says which node has not
    // run it; the node runs it when it returns, and the next migration
    // finishes the job (the Distributed tables made again over the column).
    cluster.stop_node(4);
    let short = more.with_file_name("short.toml");
    let text = std::fs::read_to_string(&more).unwrap();
    let text = text
        .replace("SrcVlan", "SrcVlan\", \"DstVlan")
        .replace("[store.remote]\n", "[store.remote]\ntimeout_ms = 3000\n");
    std::fs::write(&short, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir")).args(["migrate", "--config"]).arg(&short).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("unfinished hosts"), "{said}");
    cluster.run(&["node", "4"]);
    let local_has = |node: u16, table: &str| {
        cluster.query(
            node,
            &format!(
                "SELECT count() FROM system.columns WHERE database = 'weir' AND table = '{table}' AND name = 'DstVlan'"
            ),
        )
    };
    wait("the returned node ran the queued statement", || local_has(4, "flows_local") == "1");
    let (steps, _) = migrate(&short, false);
    assert!(steps.contains("DROP TABLE IF EXISTS weir.flows ON CLUSTER weir"), "{steps}");
    for node in 1..=4 {
        assert_eq!((local_has(node, "flows_local"), local_has(node, "flows")), ("1".into(), "1".into()), "node {node}");
    }
    let (_, said) = migrate(&short, true);
    assert!(said.contains("would run 0 steps"), "{said}");
}
