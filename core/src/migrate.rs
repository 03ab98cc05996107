//! Migrations as code: compare the schema Weir wants with what the live
//! database has, and list the statements that close the gap. Pure: the
//! runtime reads the live state (`system.tables`, `system.columns`,
//! `version()`, helper table row counts) and runs the steps in order.
//!
//! Every step is safe to run on a populated database and the plan of a
//! migrated database is empty (idempotent):
//! - a missing table is created;
//! - a missing column is added (`ADD COLUMN ... AFTER`), keeping the data;
//!   a consolidated table also extends its sort key where the server can,
//!   so rows that differ in the new dimension are not summed together;
//! - a TTL that differs from the config is changed (`MODIFY TTL`), and so
//!   is a table setting Weir chooses (`MODIFY SETTING`,
//!   `Schema::table_settings`);
//! - the materialized views that filled the consolidated tables until the
//!   shards summed them (`flows_1m_mv_...`) are dropped; the tables and
//!   their rows stay (migrations run before the shards start, so no flow
//!   is summed twice or missed);
//! - helper tables whose row count differs from the bundled list are refilled;
//! - HAProxy's requests' table (`[haproxy] store = true`) and its rollups
//!   are created, get the columns of fields (dimensions) added to the
//!   config, and their TTLs.
//!
//! - the raw table's metadata columns are aliases reading the records
//!   tables (`metadata_aliases`); a raw table that stored them per row
//!   (the first enrichment release) has its rows' records moved to the
//!   records tables and the rows pointed at them before the stored
//!   columns are dropped, so no row loses its names.
//!
//! Otherwise columns are never dropped or retyped: a column switched off
//! stays in the table (inserts name their columns, so it gets the
//! default), and a type that differs is reported as a warning for the
//! operator to decide.

use crate::httplog::{HttpTable, HTTP_TABLE, ROLLUP_TABLES};
use crate::schema::{Column, Schema, Source, RAW_TABLE, RECORD_COLUMNS, RECORD_TABLES};

/// One table or view as the server describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveTable {
    pub name: String,
    pub engine: String,
    /// `(name, type)` in table order.
    pub columns: Vec<(String, String)>,
    /// `system.tables.create_table_query` (unescaped).
    pub create_query: String,
    /// The columns that are `ALIAS`es (`system.columns.default_kind`).
    pub aliases: Vec<String>,
    /// Rows, read only for the helper tables.
    pub rows: Option<u64>,
}

/// What the runtime read from the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveDatabase {
    pub database_exists: bool,
    pub tables: Vec<LiveTable>,
}

impl LiveDatabase {
    fn table(&self, name: &str) -> Option<&LiveTable> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// The tables of `system.tables` (`name, engine, create_table_query`) with
/// their columns from `system.columns` (`table, name, type, default_kind`;
/// the kind may be left out), both as ClickHouse's TabSeparated output.
/// Lines of another shape are skipped.
pub fn live_tables(tables_tsv: &[u8], columns_tsv: &[u8]) -> Vec<LiveTable> {
    let mut tables: Vec<LiveTable> = tsv_rows(tables_tsv)
        .into_iter()
        .filter_map(|line| match <[String; 3]>::try_from(line) {
            Ok([name, engine, create_query]) => Some(LiveTable { name, engine, create_query, ..LiveTable::default() }),
            Err(_) => None,
        })
        .collect();
    for mut line in tsv_rows(columns_tsv) {
        let default_kind = if line.len() == 4 { line.pop() } else { None };
        if let Ok([table, name, kind]) = <[String; 3]>::try_from(line) {
            if let Some(t) = tables.iter_mut().find(|t| t.name == table) {
                if default_kind.as_deref() == Some("ALIAS") {
                    t.aliases.push(name.clone());
                }
                t.columns.push((name, kind));
            }
        }
    }
    tables
}

/// TabSeparated rows, unescaped (`\n`, `\t`, `\0`, `\\`, `\'`).
fn tsv_rows(data: &[u8]) -> Vec<Vec<String>> {
    String::from_utf8_lossy(data).lines().map(|l| l.split('\t').map(crate::tsv::unescape).collect()).collect()
}

/// One statement and why it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub why: String,
    pub sql: String,
}

/// The statements to run, in order, and what the operator should know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl Plan {
    fn step(&mut self, why: impl Into<String>, sql: impl Into<String>) {
        self.steps.push(Step { why: why.into(), sql: sql.into() });
    }
}

/// The helper tables the console joins against: protocol and port names.
pub const HELPER_TABLES: &[&str] = &["protocols", "ports"];

/// The plan that brings `live` to `schema`.
pub fn plan(schema: &Schema, live: &LiveDatabase) -> Plan {
    match &schema.cluster {
        Some(cluster) => crate::cluster::plan(schema, cluster, live),
        None => plan_single(schema, live),
    }
}

/// The plan for one server (`plan` without a cluster).
pub fn plan_single(schema: &Schema, live: &LiveDatabase) -> Plan {
    let mut plan = Plan { warnings: schema.dialect.warnings(), ..Plan::default() };
    let db = &schema.database;
    if !live.database_exists {
        plan.step(format!("database {db} is missing"), format!("CREATE DATABASE IF NOT EXISTS {db}"));
    }
    // The records tables first: the raw table's aliases name them.
    for (i, table) in RECORD_TABLES.iter().enumerate() {
        if live.table(table).is_none() {
            plan.step(format!("table {table} is missing"), schema.create_records_table(i));
        }
    }
    match live.table(RAW_TABLE) {
        None => plan.step(format!("table {RAW_TABLE} is missing"), schema.create_raw_table()),
        Some(t) => {
            let wanted: Vec<(&str, String)> =
                schema.stored_columns().map(|c| (c.name, schema.column_definition(c))).collect();
            add_missing_columns(&mut plan, schema, t, &wanted, None);
            metadata_aliases(&mut plan, schema, t);
            for (name, _, definition) in schema.derived_aliases() {
                if !t.columns.iter().any(|(n, _)| n == name) {
                    plan.step(
                        format!("column {RAW_TABLE}.{name} is missing"),
                        format!("ALTER TABLE {db}.{RAW_TABLE} ADD COLUMN {definition}"),
                    );
                }
            }
            check_ttl(&mut plan, schema, t, schema.ttl_raw_hours);
            check_settings(&mut plan, schema, t, true);
        }
    }
    for c in &schema.consolidations {
        match live.table(c.table) {
            None => plan.step(format!("table {} is missing", c.table), schema.create_consolidated_table(c)),
            Some(t) => {
                let wanted: Vec<(&str, String)> = schema
                    .dimensions()
                    .iter()
                    .map(|d| (d.name, format!("{} {}", d.name, schema.dialect.type_name(d.kind))))
                    .collect();
                add_missing_columns(&mut plan, schema, t, &wanted, Some(c.table));
                check_ttl(&mut plan, schema, t, c.ttl_hours);
                check_settings(&mut plan, schema, t, false);
            }
        }
        let prefix = format!("{}_mv_", c.table);
        for view in live.tables.iter().filter(|t| t.name.starts_with(&prefix)) {
            plan.step(
                format!("view {} is not needed: the shards sum {} themselves", view.name, c.table),
                format!("DROP TABLE IF EXISTS {db}.{}", view.name),
            );
        }
    }
    helper_tables(&mut plan, schema, live);
    if let Some(http) = &schema.http {
        http_table(&mut plan, schema, http, live);
        http_rollups(&mut plan, schema, http, live);
    }
    plan
}

/// HAProxy's requests' table (`httplog`): created, or given the columns
/// of fields added since, and its TTL.
fn http_table(plan: &mut Plan, schema: &Schema, http: &HttpTable, live: &LiveDatabase) {
    let db = &schema.database;
    let Some(t) = live.table(HTTP_TABLE) else {
        plan.step(format!("table {HTTP_TABLE} is missing"), http.create_sql(db, &schema.dialect));
        return;
    };
    let mut previous = "time";
    for c in &http.columns {
        let want = c.kind.type_name(&schema.dialect);
        match t.columns.iter().find(|(n, _)| *n == c.name) {
            Some((_, live_type)) if live_type != want => plan.warnings.push(format!(
                "{HTTP_TABLE}.{} is {live_type}, Weir writes {want}: left as is, inserts may fail",
                c.name
            )),
            Some(_) => {}
            None => plan.step(
                format!("column {HTTP_TABLE}.{} is missing", c.name),
                format!(
                    "ALTER TABLE {db}.{HTTP_TABLE} ADD COLUMN {} AFTER `{previous}`",
                    http.column_definition(c, &schema.dialect)
                ),
            ),
        }
        previous = &c.name;
    }
    if let Some(alias) = http.status_class_definition() {
        if !t.columns.iter().any(|(n, _)| n == "status_class") {
            plan.step(
                format!("column {HTTP_TABLE}.status_class is missing"),
                format!("ALTER TABLE {db}.{HTTP_TABLE} ADD COLUMN {alias}"),
            );
        }
    }
    if schema.dialect.ttl && !t.create_query.contains(&http.ttl_expression()) {
        plan.step(
            format!("TTL of {HTTP_TABLE} is not {} h", http.ttl_hours),
            format!("ALTER TABLE {db}.{HTTP_TABLE} MODIFY {}", http.ttl_expression()),
        );
    }
}

/// The rollups of HAProxy's requests (`httplog::ROLLUP_TABLES`): created,
/// or given the dimensions added since (joining the sort key where the
/// server can, so rows that differ in them are not summed together), and
/// their TTLs.
fn http_rollups(plan: &mut Plan, schema: &Schema, http: &HttpTable, live: &LiveDatabase) {
    if http.rollup.is_none() {
        return;
    }
    let db = &schema.database;
    for (i, (name, _)) in ROLLUP_TABLES.iter().enumerate() {
        let Some(t) = live.table(name) else {
            plan.step(format!("table {name} is missing"), http.create_rollup_sql(i, db, &schema.dialect));
            continue;
        };
        let mut previous = "time".to_string();
        let mut key: Vec<String> = vec!["time".into()];
        key.extend(
            t.columns
                .iter()
                .map(|(n, _)| n)
                .filter(|n| {
                    n.as_str() != "time"
                        && !["requests", "bytes"].contains(&n.as_str())
                        && !n.starts_with("latency_le_")
                })
                .map(|n| format!("`{n}`")),
        );
        for column in http.rollup_columns() {
            let (column_name, _, dim) = &column;
            if !t.columns.iter().any(|(n, _)| n == column_name) {
                let mut sql = format!(
                    "ALTER TABLE {db}.{name} ADD COLUMN {} AFTER `{previous}`",
                    http.rollup_definition(&column, &schema.dialect)
                );
                if dim.is_some() && schema.dialect.modify_order_by {
                    key.push(format!("`{column_name}`"));
                    sql.push_str(&format!(", MODIFY ORDER BY ({})", key.join(", ")));
                }
                plan.step(format!("column {name}.{column_name} is missing"), sql);
            }
            previous = column_name.clone();
        }
        if schema.dialect.ttl && !t.create_query.contains(&http.rollup_ttl_expression(i)) {
            plan.step(
                format!("TTL of {name} is not as configured"),
                format!("ALTER TABLE {db}.{name} MODIFY {}", http.rollup_ttl_expression(i)),
            );
        }
    }
}

fn add_missing_columns(
    plan: &mut Plan,
    schema: &Schema,
    table: &LiveTable,
    wanted: &[(&str, String)],
    sort_key_of: Option<&str>,
) {
    let db = &schema.database;
    let mut previous = "TimeReceived".to_string();
    for (name, definition) in wanted {
        match table.columns.iter().find(|(n, _)| n == name) {
            Some((_, live_type)) => {
                let want_type = definition.split_whitespace().nth(1).unwrap_or("");
                if !live_type.starts_with(want_type) {
                    plan.warnings.push(format!(
                        "{}.{name} is {live_type}, Weir writes {want_type}: left as is, inserts may fail",
                        table.name
                    ));
                }
            }
            None => {
                let mut sql = format!("ALTER TABLE {db}.{} ADD COLUMN {definition} AFTER {previous}", table.name);
                if sort_key_of.is_some() && schema.dialect.modify_order_by {
                    // The new dimension joins the end of the key, so summing keeps rows apart.
                    let mut key: Vec<&str> = vec!["TimeReceived"];
                    key.extend(
                        table
                            .columns
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .filter(|n| !["TimeReceived", "Bytes", "Packets", "Flows"].contains(n)),
                    );
                    key.push(name);
                    sql.push_str(&format!(", MODIFY ORDER BY ({})", key.join(", ")));
                }
                plan.step(format!("column {}.{name} is missing", table.name), sql);
            }
        }
        previous = name.to_string();
    }
}

/// The raw table's metadata columns as aliases of the records. A raw
/// table from before (its metadata columns stored, filled per row) keeps
/// what its rows say: their distinct records go to the records tables
/// (ids from `sipHash64` of the fields: unlike the shards' ids, but just as
/// unique), the rows get those ids (one mutation, waited for), then the
/// stored columns give way to the aliases. A server without `joinGet` by
/// database keeps such columns as they are; they are no longer filled.
fn metadata_aliases(plan: &mut Plan, schema: &Schema, raw: &LiveTable) {
    let db = &schema.database;
    let metadata: Vec<&Column> = schema.columns.iter().filter(|c| !c.stored()).collect();
    let stored: Vec<&Column> = metadata
        .iter()
        .copied()
        .filter(|c| raw.columns.iter().any(|(n, _)| n == c.name) && !raw.aliases.iter().any(|a| a == c.name))
        .collect();
    if !schema.dialect.join_get {
        if !stored.is_empty() {
            plan.warnings.push(format!(
                "{RAW_TABLE} keeps {} metadata columns from before, no longer filled (this server cannot read the \
                 records in an alias); the consolidated tables keep the names",
                stored.len()
            ));
        }
        return;
    }
    if !stored.is_empty() {
        // Each record's fields as the rows hold them, for one side.
        let side = |filter: &dyn Fn(&Source) -> bool| -> Option<Vec<&str>> {
            let names: Vec<&str> = metadata.iter().filter(|c| filter(&c.source)).map(|c| c.name).collect();
            names.iter().all(|n| stored.iter().any(|c| c.name == *n)).then_some(names)
        };
        let sides = [
            (RECORD_COLUMNS[0].0, RECORD_TABLES[0], side(&|s| matches!(s, Source::Exporter(_)))),
            (RECORD_COLUMNS[1].0, RECORD_TABLES[1], side(&|s| matches!(s, Source::InIf(_)))),
            (RECORD_COLUMNS[2].0, RECORD_TABLES[1], side(&|s| matches!(s, Source::OutIf(_)))),
        ];
        let kept: Vec<(&str, &str, Vec<&str>)> =
            sides.into_iter().filter_map(|(id, table, names)| Some((id, table, names?))).collect();
        for (id, table, names) in &kept {
            let fields = names.join(", ");
            plan.step(
                format!("the records of the rows {RAW_TABLE} stored before ({id}) go to {table}"),
                format!("INSERT INTO {db}.{table} SELECT DISTINCT sipHash64({fields}) AS Id, {fields} FROM {db}.{RAW_TABLE} WHERE {id} = 0"),
            );
        }
        if !kept.is_empty() {
            let sets: Vec<String> =
                kept.iter().map(|(id, _, names)| format!("{id} = sipHash64({})", names.join(", "))).collect();
            plan.step(
                format!("the rows {RAW_TABLE} stored before point to their records"),
                format!(
                    "ALTER TABLE {db}.{RAW_TABLE} UPDATE {} WHERE {} = 0 SETTINGS mutations_sync = 2",
                    sets.join(", "),
                    kept[0].0
                ),
            );
        }
        let drops: Vec<String> = stored.iter().map(|c| format!("DROP COLUMN {}", c.name)).collect();
        plan.step(
            format!("{RAW_TABLE}'s metadata columns are read from the records, not stored per row"),
            format!("ALTER TABLE {db}.{RAW_TABLE} {}", drops.join(", ")),
        );
    }
    for c in metadata {
        let stays = raw.aliases.iter().any(|a| a == c.name);
        if let (false, Some(alias)) = (stays, schema.metadata_alias(c)) {
            plan.step(
                format!("column {RAW_TABLE}.{} reads its record", c.name),
                format!("ALTER TABLE {db}.{RAW_TABLE} ADD COLUMN {alias}"),
            );
        }
    }
}

fn check_ttl(plan: &mut Plan, schema: &Schema, table: &LiveTable, hours: u32) {
    if !schema.dialect.ttl {
        return;
    }
    let ttl = schema.ttl_expression(hours);
    if !table.create_query.contains(&ttl) {
        plan.step(
            format!("TTL of {} is not {hours} h", table.name),
            format!("ALTER TABLE {}.{} MODIFY {ttl}", schema.database, table.name),
        );
    }
}

/// A table made before Weir chose its settings, or with other values, gets
/// them (`MODIFY SETTING` changes metadata only).
fn check_settings(plan: &mut Plan, schema: &Schema, table: &LiveTable, raw: bool) {
    for (name, value) in schema.table_settings(raw) {
        if live_setting(&table.create_query, name) != Some(value.as_str()) {
            plan.step(
                format!("{} does not have {name} = {value}", table.name),
                format!("ALTER TABLE {}.{} MODIFY SETTING {name} = {value}", schema.database, table.name),
            );
        }
    }
}

/// The value of table setting `name` in a `create_table_query`.
fn live_setting<'a>(create_query: &'a str, name: &str) -> Option<&'a str> {
    let (_, settings) = create_query.rsplit_once("SETTINGS ")?;
    settings.split(',').find_map(|s| s.trim().strip_prefix(name)?.trim_start().strip_prefix('=').map(str::trim))
}

fn helper_tables(plan: &mut Plan, schema: &Schema, live: &LiveDatabase) {
    let db = &schema.database;
    let protocols: Vec<String> =
        PROTOCOLS.iter().map(|(n, name, d)| format!("({n}, '{name}', '{}')", d.replace('\'', "\\'"))).collect();
    let ports: Vec<String> = PORTS.iter().map(|(p, port, name)| format!("({p}, {port}, '{name}')")).collect();
    let helpers = [
        (
            "protocols",
            "Proto UInt8, Name String, Description String",
            "Proto",
            protocols.len(),
            format!("INSERT INTO {db}.protocols VALUES {}", protocols.join(", ")),
        ),
        (
            "ports",
            "Proto UInt8, Port UInt16, Name String",
            "(Proto, Port)",
            ports.len(),
            format!("INSERT INTO {db}.ports VALUES {}", ports.join(", ")),
        ),
    ];
    for (name, columns, key, rows, insert) in helpers {
        let existing = live.table(name);
        if existing.is_none() {
            plan.step(
                format!("helper table {name} is missing"),
                format!("CREATE TABLE IF NOT EXISTS {db}.{name} ({columns}) ENGINE = MergeTree ORDER BY {key}"),
            );
        }
        if existing.and_then(|t| t.rows) != Some(rows as u64) {
            if existing.is_some() {
                plan.step(format!("helper table {name} is out of date"), format!("TRUNCATE TABLE {db}.{name}"));
            }
            plan.step(format!("helper table {name} needs its {rows} rows"), insert);
        }
    }
}

/// IANA protocol numbers seen in flows (the "Assigned Internet Protocol
/// Numbers" registry).
pub const PROTOCOLS: &[(u8, &str, &str)] = &[
    (1, "ICMP", "Internet Control Message"),
    (2, "IGMP", "Internet Group Management"),
    (4, "IPv4", "IPv4 encapsulation"),
    (6, "TCP", "Transmission Control"),
    (17, "UDP", "User Datagram"),
    (41, "IPv6", "IPv6 encapsulation"),
    (43, "IPv6-Route", "Routing Header for IPv6"),
    (44, "IPv6-Frag", "Fragment Header for IPv6"),
    (46, "RSVP", "Reservation Protocol"),
    (47, "GRE", "Generic Routing Encapsulation"),
    (50, "ESP", "Encap Security Payload"),
    (51, "AH", "Authentication Header"),
    (58, "IPv6-ICMP", "ICMP for IPv6"),
    (59, "IPv6-NoNxt", "No Next Header for IPv6"),
    (60, "IPv6-Opts", "Destination Options for IPv6"),
    (88, "EIGRP", "EIGRP"),
    (89, "OSPF", "OSPF"),
    (94, "IPIP", "IP-within-IP Encapsulation"),
    (103, "PIM", "Protocol Independent Multicast"),
    (112, "VRRP", "Virtual Router Redundancy"),
    (115, "L2TP", "Layer Two Tunneling Protocol v3"),
    (132, "SCTP", "Stream Control Transmission"),
    (136, "UDPLite", "UDP-Lite"),
    (137, "MPLS-in-IP", "MPLS-in-IP"),
];

/// Well-known service ports (IANA "Service Name and Transport Protocol Port
/// Number" registry), for TCP (6) and UDP (17).
pub const PORTS: &[(u8, u16, &str)] = &[
    (6, 20, "ftp-data"),
    (6, 21, "ftp"),
    (6, 22, "ssh"),
    (6, 23, "telnet"),
    (6, 25, "smtp"),
    (17, 53, "domain"),
    (6, 53, "domain"),
    (17, 67, "bootps"),
    (17, 68, "bootpc"),
    (17, 69, "tftp"),
    (6, 80, "http"),
    (6, 110, "pop3"),
    (17, 123, "ntp"),
    (6, 143, "imap"),
    (17, 161, "snmp"),
    (17, 162, "snmptrap"),
    (6, 179, "bgp"),
    (6, 389, "ldap"),
    (6, 443, "https"),
    (17, 443, "https"),
    (6, 445, "microsoft-ds"),
    (17, 500, "isakmp"),
    (17, 514, "syslog"),
    (6, 587, "submission"),
    (6, 636, "ldaps"),
    (6, 853, "domain-s"),
    (6, 993, "imaps"),
    (6, 995, "pop3s"),
    (17, 1194, "openvpn"),
    (6, 1433, "ms-sql-s"),
    (17, 1812, "radius"),
    (17, 2055, "netflow"),
    (6, 3306, "mysql"),
    (6, 3389, "ms-wbt-server"),
    (17, 3478, "stun"),
    (17, 4500, "ipsec-nat-t"),
    (17, 4739, "ipfix"),
    (6, 5060, "sip"),
    (17, 5060, "sip"),
    (6, 5432, "postgresql"),
    (17, 6343, "sflow"),
    (6, 6379, "redis"),
    (6, 8080, "http-alt"),
    (6, 8443, "https-alt"),
    (6, 9092, "kafka"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{test_settings, ServerVersion, RECORD_COLUMNS};

    fn schema(optional: &[&str], version: ServerVersion) -> Schema {
        Schema::new(&test_settings(optional), version)
    }

    /// What a server would show after running `plan` on an empty database.
    fn migrated(s: &Schema) -> LiveDatabase {
        let mut raw = LiveTable {
            name: RAW_TABLE.into(),
            columns: s.stored_columns().map(|c| (c.name.into(), s.dialect.type_name(c.kind).into())).collect(),
            create_query: s.create_raw_table(),
            ..LiveTable::default()
        };
        for c in s.columns.iter().filter(|c| s.metadata_alias(c).is_some()) {
            raw.columns.push((c.name.into(), s.dialect.type_name(c.kind).into()));
            raw.aliases.push(c.name.into());
        }
        for (name, kind, _) in s.derived_aliases() {
            raw.columns.push((name.into(), kind.into()));
            raw.aliases.push(name.into());
        }
        let mut tables = vec![raw];
        for t in RECORD_TABLES {
            tables.push(LiveTable { name: t.into(), engine: "Join".into(), ..LiveTable::default() });
        }
        for c in &s.consolidations {
            let mut cols = vec![("TimeReceived".to_string(), "DateTime".to_string())];
            cols.extend(s.dimensions().iter().map(|d| (d.name.to_string(), s.dialect.type_name(d.kind).to_string())));
            tables.push(LiveTable {
                name: c.table.into(),
                columns: cols,
                create_query: s.create_consolidated_table(c),
                ..LiveTable::default()
            });
        }
        tables.push(LiveTable { name: "protocols".into(), rows: Some(PROTOCOLS.len() as u64), ..LiveTable::default() });
        tables.push(LiveTable { name: "ports".into(), rows: Some(PORTS.len() as u64), ..LiveTable::default() });
        LiveDatabase { database_exists: true, tables }
    }

    #[test]
    fn an_empty_database_gets_everything_and_a_migrated_one_nothing() {
        let s = schema(&[], ServerVersion(26, 7));
        let p = plan(&s, &LiveDatabase::default());
        assert_eq!(p.steps.len(), 1 + 3 + 1 + 3 + 2 * 2, "{:#?}", p.steps);
        let records = p.steps.iter().position(|s| s.sql.contains("interface_records (")).unwrap();
        let raw = p.steps.iter().position(|s| s.sql.contains("weir.flows (")).unwrap();
        assert!(records < raw, "the aliases name the records tables: {:#?}", p.steps);
        assert!(plan(&s, &migrated(&s)).steps.is_empty());
    }

    #[test]
    fn enabling_a_dimension_adds_columns_and_extends_the_sort_key() {
        let before = schema(&[], ServerVersion(26, 7));
        let after = schema(&["SrcVlan"], ServerVersion(26, 7));
        let p = plan(&after, &migrated(&before));
        let sql: Vec<&str> = p.steps.iter().map(|s| s.sql.as_str()).collect();
        assert!(sql[0].starts_with("ALTER TABLE weir.flows ADD COLUMN SrcVlan UInt16 AFTER"), "{sql:#?}");
        assert!(sql.iter().any(|s| s.contains("flows_1m ADD COLUMN SrcVlan") && s.contains("MODIFY ORDER BY")));
        assert!(!sql.iter().any(|s| s.contains("MATERIALIZED VIEW")));
        assert!(plan(&after, &migrated(&after)).steps.is_empty());
    }

    #[test]
    fn storing_the_as_path_adds_its_first_three_as_as_aliases() {
        for version in [ServerVersion(26, 7), ServerVersion(18, 16)] {
            // A database from before the route columns were stored by default.
            let mut before = schema(&[], version);
            let route_columns = ["DstASPath", "DstCommunities", "DstLargeCommunities"];
            before.columns.retain(|c| !route_columns.contains(&c.name));
            assert!(!before.create_raw_table().contains("Dst1stAS"));
            let after = schema(&[], version);
            assert!(after.create_raw_table().contains("Dst3rdAS UInt32 ALIAS DstASPath[3]"));
            let p = plan(&after, &migrated(&before));
            let sql: Vec<&str> = p.steps.iter().map(|s| s.sql.as_str()).collect();
            assert!(sql[0].contains("ADD COLUMN DstASPath Array(UInt32)"), "{sql:#?}");
            assert!(sql[1].contains("ADD COLUMN DstCommunities Array(UInt32)"), "{sql:#?}");
            let large = if version.0 >= 26 { "Array(UInt128)" } else { "Array(FixedString(16))" };
            assert!(sql[2].contains(&format!("ADD COLUMN DstLargeCommunities {large}")), "{sql:#?}");
            for (i, name) in crate::schema::PATH_ALIASES.iter().enumerate() {
                let alias = format!("weir.flows ADD COLUMN {name} UInt32 ALIAS DstASPath[{}]", i + 1);
                assert!(sql.iter().any(|s| s.ends_with(&alias)), "{sql:#?}");
            }
            assert!(plan(&after, &migrated(&after)).steps.is_empty());
        }
    }

    #[test]
    fn a_database_from_before_enrichment_gets_the_metadata_columns() {
        use crate::schema::{METADATA_COLUMNS, NET_COLUMNS, RECORD_COLUMNS};
        for version in [ServerVersion(26, 7), ServerVersion(18, 16)] {
            let s = schema(&[], version);
            let mut live = migrated(&s);
            live.tables.retain(|t| !RECORD_TABLES.contains(&t.name.as_str()));
            for t in &mut live.tables {
                let enrichment = |name: &str| {
                    METADATA_COLUMNS.iter().chain(&NET_COLUMNS).any(|m| m.0 == name)
                        || RECORD_COLUMNS.iter().any(|r| r.0 == name)
                        || name.ends_with("NetPrefix")
                };
                t.columns.retain(|(name, _)| !enrichment(name));
                t.aliases.clear();
            }
            let p = plan(&s, &live);
            let sql: Vec<&str> = p.steps.iter().map(|s| s.sql.as_str()).collect();
            assert!(sql.iter().any(|s| s.contains("weir.flows ADD COLUMN InIfRecord UInt64 AFTER")), "{sql:#?}");
            assert!(sql.iter().any(|s| s.contains("TABLE IF NOT EXISTS weir.interface_records")), "{sql:#?}");
            let alias = "weir.flows ADD COLUMN InIfBoundary Enum8('undefined' = 0, 'external' = 1, 'internal' = 2) \
                         ALIAS joinGet('weir.interface_records', 'IfBoundary', InIfRecord)";
            // 18.16 cannot load a table whose alias names another database's table.
            assert_eq!(sql.iter().any(|s| s.contains(alias)), version.0 >= 19, "{sql:#?}");
            assert_eq!(sql.iter().any(|s| s.contains("flows ADD COLUMN ExporterName")), version.0 >= 19, "{sql:#?}");
            for table in ["flows_1m", "flows_5m", "flows_1h"] {
                assert!(
                    sql.iter().any(|s| s.contains(&format!("{table} ADD COLUMN OutIfBoundary"))),
                    "{table}: {sql:#?}"
                );
            }
            assert!(!sql.iter().any(|s| s.contains("DROP")), "no data goes: {sql:#?}");
            assert!(plan(&s, &migrated(&s)).steps.is_empty());
        }
    }

    #[test]
    fn a_raw_table_that_stored_metadata_keeps_its_rows_names() {
        for version in [ServerVersion(26, 7), ServerVersion(18, 16)] {
            let s = schema(&[], version);
            let mut live = migrated(&s);
            // The first enrichment release: every metadata column stored.
            let raw = &mut live.tables[0];
            raw.aliases.clear();
            raw.columns.retain(|(name, _)| !RECORD_COLUMNS.iter().any(|r| r.0 == name));
            // (Network columns came later, as aliases.)
            raw.columns.retain(|(name, _)| !crate::schema::NET_COLUMNS.iter().any(|n| n.0 == name));
            for c in s.columns.iter().filter(|c| matches!(c.source.record(), Some(0..=2))) {
                if !raw.columns.iter().any(|(n, _)| n == c.name) {
                    raw.columns.push((c.name.into(), s.dialect.type_name(c.kind).into()));
                }
            }
            let p = plan(&s, &live);
            let sql: Vec<&str> = p.steps.iter().map(|s| s.sql.as_str()).collect();
            if version.0 < 19 {
                assert!(!sql.iter().any(|s| s.contains("DROP") || s.contains("UPDATE")), "{sql:#?}");
                assert!(p.warnings.iter().any(|w| w.contains("18 metadata columns from before")), "{:#?}", p.warnings);
                continue;
            }
            let at = |needle: &str| {
                sql.iter().position(|s| s.contains(needle)).unwrap_or_else(|| panic!("{needle}: {sql:#?}"))
            };
            let add_ids = at("ADD COLUMN OutIfRecord UInt64");
            let records = at(
                "INSERT INTO weir.interface_records SELECT DISTINCT sipHash64(OutIfName, OutIfDescription, OutIfSpeed",
            );
            let update = at("ALTER TABLE weir.flows UPDATE ExporterRecord = sipHash64(ExporterName");
            let drop = at("DROP COLUMN ExporterName");
            let alias = at("ADD COLUMN ExporterName LowCardinality(String) ALIAS if(ExporterRecord = 0");
            assert!(add_ids < records && records < update && update < drop && drop < alias, "{sql:#?}");
            assert!(sql[update].ends_with("WHERE ExporterRecord = 0 SETTINGS mutations_sync = 2"), "{}", sql[update]);
            assert_eq!(sql.iter().filter(|s| s.contains("DROP COLUMN")).count(), 1, "one statement drops them all");
            assert!(plan(&s, &migrated(&s)).steps.is_empty());
        }
    }

    #[test]
    fn the_views_of_earlier_versions_are_dropped_and_their_tables_kept() {
        let s = schema(&[], ServerVersion(26, 7));
        let mut live = migrated(&s);
        for view in ["flows_1m_mv_0123abcd", "flows_5m_mv_0123abcd", "flows_1h_mv_89abcdef"] {
            live.tables.push(LiveTable {
                name: view.into(),
                engine: "MaterializedView".into(),
                ..LiveTable::default()
            });
        }
        let p = plan(&s, &live);
        let sql: Vec<&str> = p.steps.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "DROP TABLE IF EXISTS weir.flows_1m_mv_0123abcd",
                "DROP TABLE IF EXISTS weir.flows_5m_mv_0123abcd",
                "DROP TABLE IF EXISTS weir.flows_1h_mv_89abcdef"
            ]
        );
    }

    #[test]
    fn live_tables_read_clickhouse_tab_separated_output() {
        let tables = live_tables(
            b"flows\tMergeTree\tCREATE TABLE x\\n(a \\'b\\')\\\\\nshort\tline\n",
            b"flows\tSrcPort\tUInt16\nnope\tX\tUInt8\n",
        );
        assert_eq!(tables.len(), 1);
        assert_eq!(tables[0].create_query, "CREATE TABLE x\n(a 'b')\\");
        assert_eq!(tables[0].columns, vec![("SrcPort".to_string(), "UInt16".to_string())]);
    }

    #[test]
    fn ttl_changes_and_old_servers() {
        let s = schema(&[], ServerVersion(26, 7));
        let mut live = migrated(&s);
        live.tables[0].create_query = live.tables[0].create_query.replace("toIntervalHour(168)", "toIntervalHour(24)");
        let p = plan(&s, &live);
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].sql, "ALTER TABLE weir.flows MODIFY TTL TimeReceived + toIntervalHour(168)");
        // A table made before the setting gets it; one with the other choice is switched back.
        let mut live = migrated(&s);
        let flows_1m = live.tables.iter_mut().find(|t| t.name == "flows_1m").unwrap();
        flows_1m.create_query = flows_1m
            .create_query
            .replace("\nSETTINGS ttl_only_drop_parts = 1, min_bytes_for_wide_part = 1073741824", "");
        let p = plan(&s, &live);
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.steps[0].sql, "ALTER TABLE weir.flows_1m MODIFY SETTING ttl_only_drop_parts = 1");
        assert_eq!(p.steps[1].sql, "ALTER TABLE weir.flows_1m MODIFY SETTING min_bytes_for_wide_part = 1073741824");
        let mut rows = schema(&[], ServerVersion(26, 7));
        rows.ttl_only_drop_parts = false;
        let p = plan(&rows, &migrated(&s));
        assert_eq!(p.steps.len(), 4);
        assert!(p.steps.iter().all(|s| s.sql.ends_with("MODIFY SETTING ttl_only_drop_parts = 0")));
        let mut live = migrated(&s);
        live.tables[0].create_query =
            live.tables[0].create_query.replace("merge_selector_base = 10", "merge_selector_base = 5");
        assert_eq!(plan(&s, &live).steps[0].sql, "ALTER TABLE weir.flows MODIFY SETTING merge_selector_base = 10");
        assert_eq!(live_setting("X SETTINGS a = 1, index_granularity = 8192", "index_granularity"), Some("8192"));
        assert_eq!(live_setting("X SETTINGS ab = 1", "a"), None);
        assert!(plan(&rows, &migrated(&rows)).steps.is_empty());
        let old = schema(&[], ServerVersion(18, 16));
        assert!(plan(&old, &migrated(&old)).steps.is_empty());
        assert_eq!(plan(&old, &LiveDatabase::default()).warnings.len(), 8);
    }
}
