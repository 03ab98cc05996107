//! The store: where `weir run` puts flows, and what `weir migrate` and
//! `weir query` talk to.
//!
//! ```text
//!  shard k: StoreSink ── columns::Columns: one buffer per stored column
//!      │ full or old batch: sorted by the raw key, one Native block
//!      │ (bounded channel, buffers come back on a free list)
//!      ▼
//!  writer thread (control core): chunks = "INSERT ... FORMAT Native\n" + blocks
//!      │ insert ── ok ──▶ Engine::{Embedded (chDB), Remote (ClickHouse over HTTP)}
//!      │ fails: retry with exponential backoff; chunks wait in memory
//!      └─ beyond store.memory_bytes_max ──▶ Spool (files, replayed in order)
//! ```
//!
//! - `chdb`: libchdb.so loaded at run time; `remote`: the `clickhouse` crate.
//! - `writer`: batches, retries, spool, queries from `/query`; `spool`: the files.
//! - `metrics`: the writer's counters, its health probe and readiness check;
//!   `routes`: `/latency` and `POST /query` on the control-plane server.
//! - `migrate` (below): reads the live database, plans with
//!   `weir_core::migrate::plan`, runs the steps.

pub mod chdb;
pub mod http;
pub mod metrics;
pub mod remote;
pub mod routes;
pub mod segments;
pub mod spool;
pub mod writer;

use weir_core::config::{StoreConfig, StoreKind};
use weir_core::migrate::{self, LiveDatabase, Plan, HELPER_TABLES};
use weir_core::schema::{Dialect, Schema, ServerVersion, MERGE_CAP_SETTING, WIDE_PART_SETTING};

/// Insert-ready bytes: the statement, a newline, then the data in the
/// statement's format (Native blocks; RowBinary rows in a spool file
/// written before Weir encoded Native, replayed as they are).
pub struct Chunk {
    /// Length of the statement (the newline follows it).
    pub sql_len: usize,
    /// The table it goes to: 0 the raw table, 1 + i `consolidate::TABLES[i]`,
    /// `RECORDS_TABLE + i` `schema::RECORD_TABLES[i]`.
    pub table: usize,
    pub rows: u64,
    pub bytes: Vec<u8>,
    /// When the rows arrived: (ms since the epoch, rows), for the commit
    /// delay histogram. Not spooled: replayed rows are not timed.
    pub arrivals: Vec<(u64, u32)>,
    /// The shards' batches with blocks in this chunk, as (shard, ticket)
    /// (`writer::Acks`). Not spooled.
    pub tickets: Vec<(u32, u64)>,
}

impl Chunk {
    /// An empty chunk for `insert_sql`, in `bytes` (a reused buffer, cleared).
    pub fn new(insert_sql: &str, mut bytes: Vec<u8>) -> Chunk {
        bytes.clear();
        bytes.extend_from_slice(insert_sql.as_bytes());
        bytes.push(b'\n');
        Chunk {
            sql_len: insert_sql.len(),
            table: table_of(insert_sql),
            rows: 0,
            bytes,
            arrivals: Vec::new(),
            tickets: Vec::new(),
        }
    }

    pub fn sql(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.sql_len]).unwrap_or("")
    }

    pub fn rows_bytes(&self) -> &[u8] {
        &self.bytes[self.sql_len + 1..]
    }
}

/// The number of the first records table (`schema::RECORD_TABLES`), after
/// the raw and the consolidated tables.
pub const RECORDS_TABLE: usize = 1 + weir_core::consolidate::TABLES.len();
/// The number of HAProxy's requests' table (`weir_core::httplog`), last.
pub const HTTP_TABLE: usize = RECORDS_TABLE + weir_core::schema::RECORD_TABLES.len();
/// Tables a chunk can go to: the last three are `httplog::ROLLUP_TABLES`.
pub const TABLES_COUNT: usize = HTTP_TABLE + 1 + weir_core::httplog::ROLLUP_TABLES.len();

/// What a table is, by its number (`table_of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    Raw,
    /// `consolidate::TABLES[i]`.
    Consolidated(usize),
    /// `schema::RECORD_TABLES[i]`.
    Records(usize),
    /// `httplog::HTTP_TABLE` (0), then `httplog::ROLLUP_TABLES[i - 1]`.
    Http(usize),
}

pub fn table_kind(table: usize) -> TableKind {
    match table {
        0 => TableKind::Raw,
        t if t < RECORDS_TABLE => TableKind::Consolidated(t - 1),
        t if t >= HTTP_TABLE => TableKind::Http((t - HTTP_TABLE).min(3)),
        t => TableKind::Records((t - RECORDS_TABLE).min(weir_core::schema::RECORD_TABLES.len() - 1)),
    }
}

/// The table an insert statement names: 0 for the raw table (and anything
/// else), 1 + i for `consolidate::TABLES[i]`, `RECORDS_TABLE + i` for
/// `schema::RECORD_TABLES[i]`, `HTTP_TABLE` for HAProxy's requests.
pub fn table_of(insert_sql: &str) -> usize {
    let table = insert_sql
        .strip_prefix("INSERT INTO ")
        .and_then(|rest| rest.split([' ', '(']).next())
        .and_then(|name| name.rsplit('.').next())
        .unwrap_or("");
    if let Some(i) = weir_core::schema::RECORD_TABLES.iter().position(|t| *t == table) {
        return RECORDS_TABLE + i;
    }
    if table == weir_core::httplog::HTTP_TABLE {
        return HTTP_TABLE;
    }
    if let Some(i) = weir_core::httplog::ROLLUP_TABLES.iter().position(|(t, _)| *t == table) {
        return HTTP_TABLE + 1 + i;
    }
    weir_core::consolidate::TABLES.iter().position(|(_, t)| *t == table).map_or(0, |i| i + 1)
}

/// The name of table `table` (as `table_of` numbers them).
pub fn table_name(table: usize) -> &'static str {
    match table_kind(table) {
        TableKind::Raw => weir_core::schema::RAW_TABLE,
        TableKind::Consolidated(t) => weir_core::consolidate::TABLES[t.min(2)].1,
        TableKind::Records(t) => weir_core::schema::RECORD_TABLES[t],
        TableKind::Http(0) => weir_core::httplog::HTTP_TABLE,
        TableKind::Http(t) => weir_core::httplog::ROLLUP_TABLES[(t - 1).min(2)].0,
    }
}

/// Whether an insert's error says the engine will never take this chunk
/// (its data does not parse, a type or column does not match), as opposed
/// to the store being down, busy or out of memory, which retries fix.
/// ClickHouse's error codes, the same from chDB and a server.
pub fn refused_for_good(error: &str) -> bool {
    const FOR_GOOD: [u32; 22] = [
        6,   // CANNOT_PARSE_TEXT
        8,   // THERE_IS_NO_COLUMN
        10,  // NOT_FOUND_COLUMN_IN_BLOCK
        16,  // NO_SUCH_COLUMN_IN_TABLE
        20,  // NUMBER_OF_COLUMNS_DOESNT_MATCH
        26,  // CANNOT_PARSE_QUOTED_STRING
        27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
        33,  // CANNOT_READ_ALL_DATA
        38,  // CANNOT_PARSE_DATE
        41,  // CANNOT_PARSE_DATETIME
        47,  // UNKNOWN_IDENTIFIER
        50,  // UNKNOWN_TYPE
        53,  // TYPE_MISMATCH
        62,  // SYNTAX_ERROR
        70,  // CANNOT_CONVERT_TYPE
        72,  // CANNOT_PARSE_NUMBER
        73,  // UNKNOWN_FORMAT
        117, // INCORRECT_DATA
        128, // TOO_LARGE_ARRAY_SIZE
        131, // TOO_LARGE_STRING_SIZE
        354, // CANNOT_DECOMPRESS
        432, // UNKNOWN_CODEC
    ];
    let code = error.split("Code: ").nth(1).and_then(|c| c.split(|ch: char| !ch.is_ascii_digit()).next());
    code.and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| FOR_GOOD.contains(&c))
}

/// One open store.
pub enum Engine {
    Embedded(chdb::Chdb),
    Remote(Box<remote::Remote>),
}

impl Engine {
    pub fn connect(config: &StoreConfig) -> Result<Engine, String> {
        Ok(match config.kind {
            StoreKind::Embedded => {
                let e = &config.embedded;
                Engine::Embedded(chdb::Chdb::open(&e.library, &e.path, &e.effective_server_settings())?)
            }
            StoreKind::Remote => Engine::Remote(Box::new(remote::Remote::connect(&config.remote)?)),
        })
    }

    /// A connection for the console: on chDB a session of its own set
    /// `readonly = 2` (it reads, and may only set query limits).
    pub fn connect_console(config: &StoreConfig) -> Result<Engine, String> {
        let mut engine = Engine::connect(config)?;
        if let Engine::Embedded(c) = &mut engine {
            c.query(b"SET readonly = 2", "TabSeparated")?;
        }
        Ok(engine)
    }

    /// A console SELECT with `limits` (setting, value) applied by the engine;
    /// on a ClickHouse server with `readonly = 2`.
    pub fn console_query(&mut self, sql: &str, format: &str, limits: &[(&str, u64)]) -> Result<Vec<u8>, String> {
        match self {
            Engine::Embedded(c) => {
                let settings: Vec<String> = limits.iter().map(|(n, v)| format!("{n} = {v}")).collect();
                let sql = format!("{sql} SETTINGS {}, result_overflow_mode = 'throw'", settings.join(", "));
                c.query(sql.as_bytes(), format)
            }
            Engine::Remote(r) => r.console_query(sql, format, limits),
        }
    }

    /// Runs a SELECT and returns its output in `format`.
    pub fn query(&mut self, sql: &str, format: &str) -> Result<Vec<u8>, String> {
        match self {
            Engine::Embedded(c) => c.query(sql.as_bytes(), format),
            Engine::Remote(r) => r.query(sql, format),
        }
    }

    /// An operator's statement (`weir query`, `POST /query`): read-only
    /// unless `writes` (`http.query_writes`).
    pub fn operator_query(&mut self, sql: &str, format: &str, writes: bool) -> Result<Vec<u8>, String> {
        if writes {
            self.query(sql, format)
        } else {
            self.query_read_only(sql, format)
        }
    }

    /// Runs `sql` only if it cannot change the store: a ClickHouse server
    /// runs it with `readonly = 1`; on chDB, whose settings are the
    /// writer's session's, the engine's parser must find one statement that
    /// only reads.
    fn query_read_only(&mut self, sql: &str, format: &str) -> Result<Vec<u8>, String> {
        const WHY: &str = "read-only (http.query_writes = false)";
        match self {
            Engine::Embedded(c) => match c.classify(sql)? {
                (1, chdb::StatementClass::ReadOnly) => c.query(sql.as_bytes(), format),
                // Empty, or it does not parse: the parser says where, and
                // EXPLAIN AST runs nothing even if it parsed after all.
                (0, _) => Err(match c.query(format!("EXPLAIN AST {sql}").as_bytes(), "TSV") {
                    Err(syntax) => syntax,
                    Ok(_) => format!("{WHY}: chDB's parser found no statement"),
                }),
                (1, class) => Err(format!("{WHY}: a {class:?} statement is refused; only reads run")),
                (n, _) => Err(format!("{WHY}: {n} statements; send one at a time")),
            },
            Engine::Remote(r) => r.query_read_only(sql, format).map_err(|e| {
                // Code 164: READONLY.
                if e.contains("Code: 164") {
                    format!("{WHY}: {e}")
                } else {
                    e
                }
            }),
        }
    }

    /// Runs a statement with no result (DDL, INSERT ... VALUES).
    pub fn execute(&mut self, sql: &str) -> Result<(), String> {
        match self {
            Engine::Embedded(c) => c.query(sql.as_bytes(), "TabSeparated").map(drop),
            Engine::Remote(r) => r.execute(sql),
        }
    }

    /// Inserts one chunk; Native blocks name their types as `dialect` does.
    pub fn insert(&mut self, chunk: &Chunk, dialect: &Dialect) -> Result<(), String> {
        let sql = chunk.sql();
        let (insert, format) = sql.rsplit_once(" FORMAT ").ok_or("a chunk without FORMAT")?;
        let retyped;
        let data = if format == "Native" && !(dialect.ipv6 && dialect.datetime64) {
            retyped = weir_core::columns::retype(chunk.rows_bytes(), dialect)?;
            &retyped[..]
        } else {
            chunk.rows_bytes()
        };
        match self {
            Engine::Embedded(c) => c.insert(insert, format, data),
            Engine::Remote(r) => r.insert(sql, data),
        }
    }

    /// A cluster: the records copies whose nodes are due for another try
    /// (`remote` "Copies"); nothing otherwise.
    pub fn send_copies(&mut self) {
        if let Engine::Remote(r) = self {
            r.send_copies();
        }
    }

    /// A ClickHouse server's node in use (0: `store.remote.url`, then
    /// `store.remote.failover` in order), the moves between them, and the
    /// records copies to a cluster's other nodes.
    pub fn remote_node(&self) -> Option<(usize, u64, remote::CopyCounts)> {
        match self {
            Engine::Embedded(_) => None,
            Engine::Remote(r) => Some((r.node(), r.failovers, r.copy_counts)),
        }
    }

    pub fn version(&mut self) -> Result<ServerVersion, String> {
        let text = self.query("SELECT version()", "TabSeparated")?;
        let text = String::from_utf8_lossy(&text);
        ServerVersion::parse(&text).ok_or_else(|| format!("cannot read the server version from {text:?}"))
    }
}

/// Brings the database to the schema of `config` (or, with `dry_run`, only
/// plans it): returns the schema and the plan, for logs and `weir migrate`.
pub fn migrate(engine: &mut Engine, config: &StoreConfig, dry_run: bool) -> Result<(Schema, Plan), String> {
    let version = engine.version()?;
    let mut schema = Schema::new(&config.schema_settings(), version);
    // Table settings as the server lists them (none if it cannot say).
    let names = engine
        .query(
            &format!(
                "SELECT name FROM system.merge_tree_settings WHERE name IN ('ttl_only_drop_parts', \
                 'merge_selector_base', '{MERGE_CAP_SETTING}', '{WIDE_PART_SETTING}')"
            ),
            "TabSeparated",
        )
        .unwrap_or_default();
    let names: Vec<String> = String::from_utf8_lossy(&names).lines().map(str::to_string).collect();
    schema.dialect = schema.dialect.with_merge_tree_settings(&names);
    let live = read_live(engine, &schema.database)?;
    let mut plan = migrate::plan(&schema, &live);
    if let Some(cluster) = &schema.cluster {
        plan.warnings.extend(unlisted_nodes(engine, cluster, &config.remote));
    }
    if !dry_run {
        for step in &plan.steps {
            engine
                .execute(&step.sql)
                .map_err(|e| format!("migration step failed ({}): {e}\n  {}", step.why, step.sql))?;
        }
    }
    Ok((schema, plan))
}

/// A warning when the cluster has more nodes than `store.remote` lists:
/// the records tables, which each node keeps for itself, reach only the
/// nodes listed.
fn unlisted_nodes(engine: &mut Engine, cluster: &str, remote: &weir_core::config::RemoteStoreConfig) -> Option<String> {
    let sql = format!("SELECT count() FROM system.clusters WHERE cluster = '{}'", cluster.replace('\'', "\\'"));
    let nodes: usize = String::from_utf8_lossy(&engine.query(&sql, "TabSeparated").ok()?).trim().parse().ok()?;
    let listed = 1 + remote.failover.len();
    (nodes > listed).then(|| {
        format!(
            "cluster {cluster} has {nodes} nodes and store.remote lists {listed} (url and failover): \
             the exporter and interface names (records tables) reach only those, so the raw table's \
             name columns read empty where another node answers; list every node"
        )
    })
}

/// What the database has now: tables, their columns, helper table rows.
fn read_live(engine: &mut Engine, database: &str) -> Result<LiveDatabase, String> {
    let q = |s: &str| s.replace('\'', "\\'");
    let db = q(database);
    let databases = engine.query(&format!("SELECT name FROM system.databases WHERE name = '{db}'"), "TabSeparated")?;
    let mut live = LiveDatabase { database_exists: !databases.is_empty(), tables: Vec::new() };
    if !live.database_exists {
        return Ok(live);
    }
    let tables = engine.query(
        &format!("SELECT name, engine, create_table_query FROM system.tables WHERE database = '{db}'"),
        "TabSeparated",
    )?;
    let columns = engine.query(
        &format!("SELECT table, name, type, default_kind FROM system.columns WHERE database = '{db}'"),
        "TabSeparated",
    )?;
    live.tables = migrate::live_tables(&tables, &columns);
    for t in live.tables.iter_mut().filter(|t| HELPER_TABLES.contains(&t.name.as_str())) {
        let rows = engine.query(&format!("SELECT count() FROM {database}.{}", t.name), "TabSeparated")?;
        t.rows = String::from_utf8_lossy(&rows).trim().parse().ok();
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_the_engine_will_repeat_are_told_from_passing_ones() {
        use super::refused_for_good;
        assert!(refused_for_good("Code: 33. DB::Exception: Cannot read all data. (CANNOT_READ_ALL_DATA)"));
        assert!(refused_for_good("bad response: Code: 16, e.displayText() = DB::Exception: No such column"));
        assert!(!refused_for_good("Code: 241. DB::Exception: Memory limit exceeded"));
        assert!(!refused_for_good("Code: 252. DB::Exception: Too many parts"));
        assert!(!refused_for_good("no answer within 30000 ms"));
        assert!(!refused_for_good("error trying to connect: Connection refused"));
    }
}
