//! A ClickHouse cluster as the store (`[store.remote] cluster = "NAME"`,
//! the server's `remote_servers` entry): the single server's plan
//! (`migrate::plan`) rewritten for a cluster, and the inserts' table names.
//!
//! - The tables that hold rows (`flows`, `flows_1m/5m/1h`, `http_requests`
//!   and its rollups) become `<name>_local` on every node, created `ON
//!   CLUSTER` as `Replicated*MergeTree` under
//!   `/clickhouse/tables/{shard}/<database>/<name>_local` with the
//!   `{replica}` macro, and `<name>` a `Distributed` table over them: the
//!   console and `weir query` read the names they always did.
//! - Inserts go into `<name>_local` of the server in `store.remote.url`
//!   ([`local_insert`]): a block is one insert on one replica, which the
//!   others fetch; a retried block is dropped by the replicated tables'
//!   block-hash deduplication.
//! - The records (`Join`) tables are created on every node (the raw
//!   table's aliases read them where a query runs), and the writer inserts
//!   their rows into every node it lists ([`per_node_insert`]).
//! - The helper tables (`protocols`, `ports`) are replicated to every node
//!   of every shard: `ReplicatedMergeTree` under
//!   `/clickhouse/tables/all/<database>/<name>` (so `{replica}` must name a
//!   node uniquely in the whole cluster); their rows are inserted once, on
//!   the server in `store.remote.url`, with deduplication off (a table
//!   emptied and filled again takes the same rows). A helper table that is
//!   not replicated is made again.
//! - Every statement but an `INSERT` runs `ON CLUSTER`: a node that is down
//!   runs it from the queue when it returns, and the statement reports the
//!   nodes that have not finished when `distributed_ddl_task_timeout` runs
//!   out.
//! - A column added to a local table (now, or by a migration cut short): its
//!   `Distributed` table is created again over it (it holds no rows).

use crate::httplog::{HTTP_TABLE, ROLLUP_TABLES};
use crate::migrate::{LiveDatabase, Plan, Step, HELPER_TABLES};
use crate::schema::{Schema, RAW_TABLE, RECORD_TABLES};

/// The `{shard}` part of the ZooKeeper path of the tables replicated to
/// every node of every shard (the helper tables).
pub const EVERY_NODE: &str = "all";

/// What the local tables are called: `<name>_local`.
pub const LOCAL_SUFFIX: &str = "_local";

/// Whether `table` holds rows, so it is replicated and read through a
/// `Distributed` table of its name.
pub fn replicated(table: &str) -> bool {
    table == RAW_TABLE
        || table == HTTP_TABLE
        || crate::consolidate::TABLES.iter().any(|(_, t)| *t == table)
        || ROLLUP_TABLES.iter().any(|(t, _)| *t == table)
}

/// The table an `INSERT INTO db.<name> ...` names: (`db.<name>` as
/// written, `<name>`, the rest of the statement).
fn insert_table(sql: &str) -> Option<(&str, &str, &str)> {
    let rest = sql.strip_prefix("INSERT INTO ")?;
    let end = rest.find([' ', '(']).unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    Some((name, name.rsplit('.').next().unwrap_or(name), after))
}

/// `INSERT INTO db.<name> ...` as an insert into `<name>_local` when
/// `<name>` is replicated; anything else unchanged.
pub fn local_insert(sql: &str) -> String {
    match insert_table(sql) {
        Some((name, table, after)) if replicated(table) => format!("INSERT INTO {name}{LOCAL_SUFFIX}{after}"),
        _ => sql.to_string(),
    }
}

/// Whether an insert goes to every node, each keeping its own rows: the
/// records tables (`Join` engines, which do not replicate), which the raw
/// table's aliases read on the node a query runs on.
pub fn per_node_insert(sql: &str) -> bool {
    insert_table(sql).is_some_and(|(_, table, _)| RECORD_TABLES.contains(&table))
}

/// The plan that brings the cluster `cluster` to `schema`, from what the
/// server in `store.remote.url` has (`live`, as for one server).
pub fn plan(schema: &Schema, cluster: &str, live: &LiveDatabase) -> Plan {
    let db = &schema.database;
    let on = format!("ON CLUSTER {cluster}");
    // The local tables stand for the names the single server's plan knows.
    let mut local = live.clone();
    let mut distributed = Vec::new();
    let mut warnings = Vec::new();
    let mut helpers_again = Vec::new();
    local.tables.retain(|t| {
        // A helper table of one server's (or of an older cluster plan's)
        // is made again, replicated to every node.
        if HELPER_TABLES.contains(&t.name.as_str()) && !t.engine.starts_with("Replicated") {
            helpers_again.push(t.name.clone());
            return false;
        }
        if t.engine == "Distributed" {
            distributed.push(t.name.clone());
            return false;
        }
        if replicated(&t.name) {
            warnings.push(format!(
                "{db}.{} is a table of one server, where the cluster reads a Distributed table: \
                 left as is (rename it and move its rows by hand)",
                t.name
            ));
            return false;
        }
        true
    });
    for t in &mut local.tables {
        if let Some(name) = t.name.strip_suffix(LOCAL_SUFFIX).filter(|n| replicated(n)) {
            t.name = name.to_string();
        }
    }
    let single = crate::migrate::plan_single(schema, &local);
    let mut plan = Plan { steps: Vec::new(), warnings: single.warnings };
    for name in helpers_again {
        plan.steps.push(Step {
            why: format!("helper table {name} is not replicated to every node: it is made again"),
            sql: format!("DROP TABLE IF EXISTS {db}.{name} {on}"),
        });
    }
    plan.warnings.extend(warnings.iter().cloned());
    let mut recreate: Vec<String> = Vec::new();
    for Step { why, sql } in single.steps {
        let sql = if let Some(rest) = sql.strip_prefix("CREATE DATABASE IF NOT EXISTS ") {
            format!("CREATE DATABASE IF NOT EXISTS {rest} {on}")
        } else if let Some((name, rest)) = statement_table(&sql, "CREATE TABLE IF NOT EXISTS ", db) {
            if replicated(name) {
                let local = format!("{name}{LOCAL_SUFFIX}");
                let engine = replicated_engine(rest, &format!("/clickhouse/tables/{{shard}}/{db}/{local}"));
                format!("CREATE TABLE IF NOT EXISTS {db}.{local} {on} {engine}")
            } else if HELPER_TABLES.contains(&name) {
                let engine = replicated_engine(rest, &format!("/clickhouse/tables/{EVERY_NODE}/{db}/{name}"));
                format!("CREATE TABLE IF NOT EXISTS {db}.{name} {on} {engine}")
            } else {
                format!("CREATE TABLE IF NOT EXISTS {db}.{name} {on} {rest}")
            }
        } else if let Some((name, rest)) = statement_table(&sql, "ALTER TABLE ", db) {
            if replicated(name) {
                if rest.contains("ADD COLUMN") && !recreate.iter().any(|r| r == name) {
                    recreate.push(name.to_string());
                }
                format!("ALTER TABLE {db}.{name}{LOCAL_SUFFIX} {on} {rest}")
            } else {
                format!("ALTER TABLE {db}.{name} {on} {rest}")
            }
        } else if let Some((name, rest)) = statement_table(&sql, "DROP TABLE IF EXISTS ", db) {
            format!("DROP TABLE IF EXISTS {db}.{name} {on} {rest}").trim_end().to_string()
        } else {
            sql
        };
        plan.steps.push(Step { why, sql });
    }
    // Each replicated table of the schema has its Distributed twin.
    let mut wanted: Vec<&str> = vec![RAW_TABLE];
    wanted.extend(schema.consolidations.iter().map(|c| c.table));
    if let Some(http) = &schema.http {
        wanted.push(HTTP_TABLE);
        if http.rollup.is_some() {
            wanted.extend(ROLLUP_TABLES.iter().map(|(t, _)| *t));
        }
    }
    for name in wanted {
        let clash = warnings.iter().any(|w| w.starts_with(&format!("{db}.{name} ")));
        let exists = distributed.iter().any(|d| d == name);
        // Columns added before (by a migration cut short, or by hand) that
        // the Distributed table lacks make it again too.
        let columns = |table: &str| -> Vec<String> {
            let t = live.tables.iter().find(|t| t.name == table);
            t.map(|t| t.columns.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default()
        };
        let behind = exists && columns(name) != columns(&format!("{name}{LOCAL_SUFFIX}"));
        let again = behind || recreate.iter().any(|r| r == name);
        if clash || (exists && !again) {
            continue;
        }
        if exists {
            plan.steps.push(Step {
                why: format!("{name}{LOCAL_SUFFIX} has other columns: its Distributed table is made again over them"),
                sql: format!("DROP TABLE IF EXISTS {db}.{name} {on}"),
            });
        }
        plan.steps.push(Step {
            why: format!("Distributed table {name} over {name}{LOCAL_SUFFIX} is missing"),
            sql: format!(
                "CREATE TABLE IF NOT EXISTS {db}.{name} {on} AS {db}.{name}{LOCAL_SUFFIX} \
                 ENGINE = Distributed({cluster}, {db}, {name}{LOCAL_SUFFIX}, rand())"
            ),
        });
    }
    plan
}

/// `sql` as `prefix` `db.NAME` and the rest, when it is that statement.
fn statement_table<'a>(sql: &'a str, prefix: &str, db: &str) -> Option<(&'a str, &'a str)> {
    let rest = sql.strip_prefix(prefix)?.strip_prefix(db)?.strip_prefix('.')?;
    let end = rest.find([' ', '(', '\n']).unwrap_or(rest.len());
    let (name, after) = rest.split_at(end);
    Some((name, after.trim_start()))
}

/// A `CREATE TABLE`'s columns and engine with the engine made replicated:
/// `MergeTree` → `ReplicatedMergeTree('path', '{replica}')`,
/// `SummingMergeTree((a, b))` → `ReplicatedSummingMergeTree('path',
/// '{replica}', (a, b))`.
fn replicated_engine(body: &str, path: &str) -> String {
    let Some(at) = body.find("ENGINE = ") else { return body.to_string() };
    let (head, engine) = body.split_at(at + "ENGINE = ".len());
    let name_end = engine.find(['(', ' ', '\n']).unwrap_or(engine.len());
    let (name, after) = engine.split_at(name_end);
    let replica = format!("'{path}', '{{replica}}'");
    let (args, tail) = match after.strip_prefix('(') {
        Some(inside) => {
            // The engine's own arguments, to their closing parenthesis.
            let mut depth = 1;
            let close = inside
                .char_indices()
                .find(|(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(inside.len(), |(i, _)| i);
            (format!("{replica}, {}", &inside[..close]), &inside[(close + 1).min(inside.len())..])
        }
        None => (replica, after),
    };
    format!("{head}Replicated{name}({args}){tail}")
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
