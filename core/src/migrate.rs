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
//! - helper tables whose row count differs from the bundled list are refilled.
//!
//! Columns are never dropped or retyped: a column switched off stays in the
//! table (inserts name their columns, so it gets the default), and a type
//! that differs is reported as a warning for the operator to decide.

use crate::schema::{Schema, RAW_TABLE};

/// One table or view as the server describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveTable {
    pub name: String,
    pub engine: String,
    /// `(name, type)` in table order.
    pub columns: Vec<(String, String)>,
    /// `system.tables.create_table_query` (unescaped).
    pub create_query: String,
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
/// their columns from `system.columns` (`table, name, type`), both as
/// ClickHouse's TabSeparated output. Lines of another shape are skipped.
pub fn live_tables(tables_tsv: &[u8], columns_tsv: &[u8]) -> Vec<LiveTable> {
    let mut tables: Vec<LiveTable> = tsv_rows(tables_tsv)
        .into_iter()
        .filter_map(|line| match <[String; 3]>::try_from(line) {
            Ok([name, engine, create_query]) => Some(LiveTable { name, engine, create_query, ..LiveTable::default() }),
            Err(_) => None,
        })
        .collect();
    for line in tsv_rows(columns_tsv) {
        if let Ok([table, name, kind]) = <[String; 3]>::try_from(line) {
            if let Some(t) = tables.iter_mut().find(|t| t.name == table) {
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
    let mut plan = Plan { warnings: schema.dialect.warnings(), ..Plan::default() };
    let db = &schema.database;
    if !live.database_exists {
        plan.step(format!("database {db} is missing"), format!("CREATE DATABASE IF NOT EXISTS {db}"));
    }
    match live.table(RAW_TABLE) {
        None => plan.step(format!("table {RAW_TABLE} is missing"), schema.create_raw_table()),
        Some(t) => {
            let wanted: Vec<(&str, String)> =
                schema.columns.iter().map(|c| (c.name, schema.column_definition(c))).collect();
            add_missing_columns(&mut plan, schema, t, &wanted, None);
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
    plan
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
    use crate::schema::{test_settings, ServerVersion};

    fn schema(optional: &[&str], version: ServerVersion) -> Schema {
        Schema::new(&test_settings(optional), version)
    }

    /// What a server would show after running `plan` on an empty database.
    fn migrated(s: &Schema) -> LiveDatabase {
        let raw = LiveTable {
            name: RAW_TABLE.into(),
            columns: s.columns.iter().map(|c| (c.name.into(), s.dialect.type_name(c.kind).into())).collect(),
            create_query: s.create_raw_table(),
            ..LiveTable::default()
        };
        let mut tables = vec![raw];
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
        assert_eq!(p.steps.len(), 1 + 1 + 3 + 2 * 2, "{:#?}", p.steps);
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
    fn a_database_from_before_enrichment_gets_the_metadata_columns() {
        use crate::schema::METADATA_COLUMNS;
        for version in [ServerVersion(26, 7), ServerVersion(18, 16)] {
            let s = schema(&[], version);
            let mut live = migrated(&s);
            for t in &mut live.tables {
                t.columns.retain(|(name, _)| !METADATA_COLUMNS.iter().any(|m| m.0 == name));
            }
            let p = plan(&s, &live);
            let sql: Vec<&str> = p.steps.iter().map(|s| s.sql.as_str()).collect();
            let name_type = if version.0 >= 19 { "LowCardinality(String)" } else { "String" };
            assert!(
                sql.iter().any(|s| s.contains(&format!("weir.flows ADD COLUMN ExporterName {name_type}"))),
                "{sql:#?}"
            );
            assert!(sql.iter().any(|s| s.contains("flows ADD COLUMN InIfBoundary Enum8")), "{sql:#?}");
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
        live.tables[1].create_query = live.tables[1].create_query.replace("\nSETTINGS ttl_only_drop_parts = 1", "");
        let p = plan(&s, &live);
        assert_eq!(p.steps.len(), 1);
        assert_eq!(p.steps[0].sql, "ALTER TABLE weir.flows_1m MODIFY SETTING ttl_only_drop_parts = 1");
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
        assert_eq!(plan(&old, &LiveDatabase::default()).warnings.len(), 6);
    }
}
