use super::*;
use crate::migrate::{plan as migrate_plan, LiveTable, PORTS, PROTOCOLS};
use crate::schema::ServerVersion;
use crate::schema::{test_settings, SchemaSettings};

fn schema(http: bool) -> Schema {
    let http = http.then(|| {
        let config = crate::config::HaproxyConfig { store: true, ..Default::default() };
        config.http_table()
    });
    let settings = SchemaSettings { cluster: Some("weir".into()), http, ..test_settings(&[]) };
    Schema::new(&settings, ServerVersion(18, 16))
}

#[test]
fn inserts_go_to_the_local_tables_of_the_tables_that_hold_rows() {
    assert_eq!(
        local_insert("INSERT INTO weir.flows (TimeReceived, Bytes) FORMAT Native"),
        "INSERT INTO weir.flows_local (TimeReceived, Bytes) FORMAT Native"
    );
    assert_eq!(
        local_insert("INSERT INTO weir.flows_1h (a) FORMAT Native"),
        "INSERT INTO weir.flows_1h_local (a) FORMAT Native"
    );
    assert_eq!(
        local_insert("INSERT INTO weir.http_requests_5m (`time`) FORMAT Native"),
        "INSERT INTO weir.http_requests_5m_local (`time`) FORMAT Native"
    );
    let records = "INSERT INTO weir.exporter_records (Id) FORMAT Native";
    assert_eq!(local_insert(records), records, "a Join table: every node has its own");
    assert_eq!(local_insert("SELECT 1"), "SELECT 1");
    assert!(per_node_insert(records) && per_node_insert("INSERT INTO weir.network_records (Id) FORMAT Native"));
    assert!(!per_node_insert("INSERT INTO weir.flows (TimeReceived) FORMAT Native"));
    assert!(!per_node_insert("INSERT INTO weir.protocols VALUES (1, 'ICMP', '')"), "replicated to every node");
    assert!(!per_node_insert("SELECT 1"));
}

#[test]
fn an_empty_cluster_gets_replicated_local_tables_and_distributed_ones_over_them() {
    let s = schema(true);
    let steps = migrate_plan(&s, &LiveDatabase::default()).steps;
    let sql: Vec<&str> = steps.iter().map(|s| s.sql.as_str()).collect();
    assert_eq!(sql[0], "CREATE DATABASE IF NOT EXISTS weir ON CLUSTER weir");
    let raw = sql.iter().find(|s| s.contains("weir.flows_local ")).unwrap();
    assert!(raw.starts_with("CREATE TABLE IF NOT EXISTS weir.flows_local ON CLUSTER weir (\n"), "{raw}");
    assert!(
        raw.contains(
            "ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/weir/flows_local', '{replica}')\nPARTITION BY"
        ),
        "{raw}"
    );
    let minute = sql.iter().find(|s| s.contains("weir.flows_1m_local ")).unwrap();
    assert!(
        minute.contains(
            "ENGINE = ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/weir/flows_1m_local', '{replica}', (Bytes, Packets, Flows))\n"
        ),
        "{minute}"
    );
    let rollup = sql.iter().find(|s| s.contains("weir.http_requests_1h_local ")).unwrap();
    assert!(
        rollup.contains(
            "ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/weir/http_requests_1h_local', '{replica}')\n"
        ),
        "{rollup}"
    );
    let join = sql.iter().find(|s| s.contains("weir.exporter_records")).unwrap();
    assert!(
        join.starts_with("CREATE TABLE IF NOT EXISTS weir.exporter_records ON CLUSTER weir (")
            && join.contains("ENGINE = Join(ANY, LEFT, Id)"),
        "{join}"
    );
    for table in [
        "flows",
        "flows_1m",
        "flows_5m",
        "flows_1h",
        "http_requests",
        "http_requests_1m",
        "http_requests_5m",
        "http_requests_1h",
    ] {
        let want = format!(
            "CREATE TABLE IF NOT EXISTS weir.{table} ON CLUSTER weir AS weir.{table}_local ENGINE = Distributed(weir, weir, {table}_local, rand())"
        );
        let at = sql.iter().position(|s| *s == want).unwrap_or_else(|| panic!("{want}"));
        let local = sql.iter().position(|s| s.contains(&format!("weir.{table}_local ON CLUSTER"))).unwrap();
        assert!(local < at, "{table}: the local table first");
    }
    // Inserts (the helper tables' rows) run on the one server.
    assert!(sql.iter().filter(|s| s.starts_with("INSERT")).all(|s| !s.contains("ON CLUSTER")));
}

/// The live state of a cluster's node after `plan` ran, as the server lists it.
fn live_after(s: &Schema) -> LiveDatabase {
    let mut live = LiveDatabase { database_exists: true, tables: Vec::new() };
    // The single server's tables, as they would be, named as the cluster names them.
    let single = Schema { cluster: None, ..s.clone() };
    let mut tables = Vec::new();
    for step in crate::migrate::plan_single(&single, &LiveDatabase::default()).steps {
        let Some(rest) = step.sql.strip_prefix("CREATE TABLE IF NOT EXISTS weir.") else { continue };
        let name = rest.split([' ', '\n', '(']).next().unwrap().to_string();
        if !crate::migrate::HELPER_TABLES.contains(&name.as_str()) {
            tables.push((name, step.sql.clone()));
        }
    }
    for (name, create) in tables {
        let columns: Vec<(String, String)> = create
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| {
                let mut parts = l.trim().trim_end_matches(',').splitn(2, ' ');
                let n = parts.next().unwrap().trim_matches('`').to_string();
                (n, parts.next().unwrap_or("").split(" ALIAS").next().unwrap().to_string())
            })
            .collect();
        let (local, engine) = if replicated(&name) {
            (format!("{name}{LOCAL_SUFFIX}"), "ReplicatedMergeTree".to_string())
        } else {
            (name.clone(), "Join".to_string())
        };
        live.tables.push(LiveTable {
            name: local,
            engine,
            columns: columns.clone(),
            create_query: create.clone(),
            ..LiveTable::default()
        });
        if replicated(&name) {
            live.tables.push(LiveTable { name, engine: "Distributed".into(), columns, ..LiveTable::default() });
        }
    }
    for (helper, rows) in crate::migrate::HELPER_TABLES.iter().zip([PROTOCOLS.len(), PORTS.len()]) {
        live.tables.push(LiveTable {
            name: helper.to_string(),
            engine: "ReplicatedMergeTree".into(),
            rows: Some(rows as u64),
            ..LiveTable::default()
        });
    }
    live
}

#[test]
fn helper_tables_are_replicated_to_every_node_and_made_again_when_they_are_not() {
    let s = schema(false);
    let steps: Vec<String> = migrate_plan(&s, &LiveDatabase::default()).steps.into_iter().map(|s| s.sql).collect();
    let create = steps.iter().find(|s| s.contains("weir.protocols")).unwrap();
    assert!(
        create.starts_with("CREATE TABLE IF NOT EXISTS weir.protocols ON CLUSTER weir (")
            && create.contains(
                "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/weir/protocols', '{replica}') ORDER BY Proto"
            ),
        "{create}"
    );
    let fill = steps.iter().position(|s| s.starts_with("INSERT INTO weir.ports VALUES")).unwrap();
    assert!(steps[..fill].iter().any(|s| s.contains("ReplicatedMergeTree('/clickhouse/tables/all/weir/ports'")));
    // A cluster migrated before they were replicated: dropped on every node, made again, filled.
    let mut live = live_after(&s);
    for t in live.tables.iter_mut().filter(|t| crate::migrate::HELPER_TABLES.contains(&t.name.as_str())) {
        t.engine = "MergeTree".into();
    }
    let steps: Vec<String> = migrate_plan(&s, &live).steps.into_iter().map(|s| s.sql).collect();
    for helper in crate::migrate::HELPER_TABLES {
        let at = |prefix: &str| steps.iter().position(|s| s.starts_with(&format!("{prefix} weir.{helper}")));
        let (drop, create, fill) = (
            at("DROP TABLE IF EXISTS").unwrap(),
            at("CREATE TABLE IF NOT EXISTS").unwrap(),
            at("INSERT INTO").unwrap(),
        );
        assert!(drop < create && create < fill, "{steps:#?}");
        assert!(steps[drop].ends_with("ON CLUSTER weir"), "{}", steps[drop]);
    }
    assert_eq!(steps.len(), 6, "nothing else: {steps:#?}");
}

#[test]
fn a_migrated_cluster_needs_nothing_and_a_new_column_remakes_the_distributed_table() {
    let s = schema(false);
    let live = live_after(&s);
    let again = migrate_plan(&s, &live);
    let ddl: Vec<&str> = again.steps.iter().map(|s| s.sql.as_str()).collect();
    assert_eq!(ddl, Vec::<&str>::new(), "nothing to do");
    // A column switched on since: every replica's local table, then the Distributed one again.
    let more = Schema::new(
        &SchemaSettings { cluster: Some("weir".into()), ..test_settings(&["SrcVlan"]) },
        ServerVersion(18, 16),
    );
    let steps: Vec<String> = migrate_plan(&more, &live).steps.into_iter().map(|s| s.sql).collect();
    let add = steps
        .iter()
        .position(|s| s.starts_with("ALTER TABLE weir.flows_local ON CLUSTER weir ADD COLUMN SrcVlan"))
        .unwrap();
    let drop = steps.iter().position(|s| s == "DROP TABLE IF EXISTS weir.flows ON CLUSTER weir").unwrap();
    let create = steps
        .iter()
        .position(|s| s.starts_with("CREATE TABLE IF NOT EXISTS weir.flows ON CLUSTER weir AS weir.flows_local"))
        .unwrap();
    assert!(add < drop && drop < create, "{steps:#?}");
    // The local table got the column (a migration cut short after it): the
    // Distributed table is made again.
    let mut cut = live.clone();
    cut.tables.iter_mut().find(|t| t.name == "flows_local").unwrap().columns.push(("SrcVlan".into(), "UInt16".into()));
    let steps: Vec<String> = migrate_plan(&more, &cut).steps.into_iter().map(|s| s.sql).collect();
    assert!(!steps.iter().any(|s| s.contains("weir.flows_local ON CLUSTER weir ADD COLUMN SrcVlan")), "{steps:#?}");
    assert!(steps.iter().any(|s| s == "DROP TABLE IF EXISTS weir.flows ON CLUSTER weir"), "{steps:#?}");
    // A single server's `flows` in the way: said, left alone.
    let mut clash = live.clone();
    clash.tables.retain(|t| t.name != "flows");
    clash.tables.push(LiveTable { name: "flows".into(), engine: "MergeTree".into(), ..LiveTable::default() });
    let p = migrate_plan(&s, &clash);
    assert!(p.warnings.iter().any(|w| w.contains("weir.flows is a table of one server")), "{:?}", p.warnings);
    assert!(!p.steps.iter().any(|s| s.sql.contains("weir.flows ON CLUSTER")), "{:#?}", p.steps);
}
