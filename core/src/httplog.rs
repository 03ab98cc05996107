//! HAProxy's requests as rows of the store's `http_requests` table
//! (`[haproxy] store = true`): the table's columns from the configured
//! field list, and the log shard's rows as Native blocks for the store
//! writer, beside the flows' (same writer, spool and retries).
//!
//! Columns, named as the Kafka JSON names them:
//! - `time` (`DateTime`: the syslog header's time, the sort and partition
//!   key and the TTL's), `time_ms` (`DateTime64(3)`), `host`, `program`,
//!   `pid`, `facility`, `severity`;
//! - per field, by its type: `string` a `LowCardinality(String)`, `int` an
//!   `Int64`, `ip` an `IPv6` (IPv4 mapped), `clf_time` and `epoch_seconds`
//!   a `DateTime64(3)`; a `request` three columns, `<name>_method`,
//!   `<name>_uri` (`String`) and `<name>_version`; `headers` one `String`
//!   column per captured header, `<name>_<header>` (the header's name in
//!   lower case, other characters than letters and digits as `_`).
//!
//! A value the line lacks (or `-`) is the type's zero: `''`, 0, `::`, the
//! epoch. Blocks carry the modern type names, strings as `String` (the
//! engine casts them to the table's `LowCardinality`); `columns::retype`
//! rewrites them for an older server as it does the flows'.
//!
//! **Rollups** (`HttpRollup`): `http_requests_1m`, `_5m` and `_1h`,
//! SummingMergeTree tables the log shard fills itself, as the flow shards
//! fill `flows_1m...`: per bucket and dimensions (columns of
//! `http_requests`, and `status_class`, the status divided by 100) the
//! requests, the bytes, and the requests per latency bucket:
//! `latency_le_<ms>` counts those whose latency was at most `<ms>` and more
//! than the bucket below (powers of two from 1 to 65 536 ms, then
//! `latency_le_inf`), a histogram the engine sums and a query reads
//! quantiles from (`HttpRollup::quantile_sql`). A latency of -1 (HAProxy:
//! the timer did not run) is in no bucket.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::accesslog::{Field, HeaderValues, Kind, Value, Values};
use crate::columns::{write_string, write_varuint};
use crate::schema::Dialect;

/// The table's name.
pub const HTTP_TABLE: &str = "http_requests";

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpType {
    DateTime,
    DateTimeMs,
    UInt8,
    Int64,
    Ip,
    /// `LowCardinality(String)` where the server has it.
    LowString,
    String,
}

impl HttpType {
    /// The type in `CREATE TABLE` for a server of `dialect`.
    pub fn type_name(self, dialect: &Dialect) -> &'static str {
        match self {
            HttpType::DateTime => "DateTime",
            HttpType::DateTimeMs if dialect.datetime64 => "DateTime64(3)",
            HttpType::DateTimeMs => "UInt64",
            HttpType::UInt8 => "UInt8",
            HttpType::Int64 => "Int64",
            HttpType::Ip if dialect.ipv6 => "IPv6",
            HttpType::Ip => "FixedString(16)",
            HttpType::LowString if dialect.low_cardinality => "LowCardinality(String)",
            HttpType::LowString | HttpType::String => "String",
        }
    }

    /// The type a block names (modern; strings plain).
    fn block_name(self) -> &'static str {
        match self {
            HttpType::DateTime => "DateTime",
            HttpType::DateTimeMs => "DateTime64(3)",
            HttpType::UInt8 => "UInt8",
            HttpType::Int64 => "Int64",
            HttpType::Ip => "IPv6",
            HttpType::LowString | HttpType::String => "String",
        }
    }

    /// Bytes per row of a fixed-width type (0: a string).
    fn width(self) -> usize {
        match self {
            HttpType::UInt8 => 1,
            HttpType::DateTime => 4,
            HttpType::DateTimeMs | HttpType::Int64 => 8,
            HttpType::Ip => 16,
            HttpType::LowString | HttpType::String => 0,
        }
    }
}

/// Where a column's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpSource {
    Time,
    TimeMs,
    Host,
    Program,
    Pid,
    Facility,
    Severity,
    /// Part `part` of field `field` (`accesslog::Values::value`).
    Field {
        field: usize,
        part: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpColumn {
    pub name: String,
    pub kind: HttpType,
    pub source: HttpSource,
}

/// The `http_requests` table Weir wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTable {
    pub columns: Vec<HttpColumn>,
    /// Rows older than this are deleted (where the server has TTL).
    pub ttl_hours: u32,
    pub rollup: Option<HttpRollup>,
}

/// The rollup tables: name and bucket seconds.
pub const ROLLUP_TABLES: [(&str, u32); 3] =
    [("http_requests_1m", 60), ("http_requests_5m", 300), ("http_requests_1h", 3600)];

/// Upper bounds (ms) of the latency buckets but the last (`latency_le_inf`).
pub const LATENCY_BOUNDS_MS: [i64; 17] =
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16_384, 32_768, 65_536];

/// The latency bucket columns' names.
pub fn latency_columns() -> Vec<String> {
    let mut names: Vec<String> = LATENCY_BOUNDS_MS.iter().map(|b| format!("latency_le_{b}")).collect();
    names.push("latency_le_inf".into());
    names
}

/// What the rollups sum, and by what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRollup {
    /// Dimensions: columns of `http_requests` (indexes), in key order.
    pub dims: Vec<usize>,
    /// The `int` column whose value / 100 is `status_class` (a dimension).
    pub status: Option<usize>,
    /// The `int` columns summed as `bytes`, and bucketed as the latency.
    pub bytes: Option<usize>,
    pub latency: Option<usize>,
    /// Per rollup table (`ROLLUP_TABLES`).
    pub ttl_hours: [u32; 3],
    /// Keys held at most before the sums go early.
    pub keys_max: usize,
}

/// The rollup's choices by column name (the config's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollupNames<'a> {
    pub dims: &'a [String],
    pub status: &'a str,
    pub bytes: &'a str,
    pub latency: &'a str,
    pub ttl_hours: [u32; 3],
    pub keys_max: usize,
}

impl HttpRollup {
    /// The dimension columns' names and types, `status_class` last.
    pub fn dimensions<'a>(&self, table: &'a HttpTable) -> Vec<(&'a str, HttpType)> {
        let mut dims: Vec<(&str, HttpType)> =
            self.dims.iter().map(|&i| (table.columns[i].name.as_str(), table.columns[i].kind)).collect();
        if self.status.is_some() {
            dims.push(("status_class", HttpType::UInt8));
        }
        dims
    }

    /// SQL for quantile `q` (0..1) of the latency from the buckets of a
    /// rollup table, as a bucket's upper bound in ms (inf: 1e9): the
    /// first bound whose running count reaches `q` of all.
    pub fn quantile_sql(q: f64) -> String {
        let columns = latency_columns();
        let sums: Vec<String> = columns.iter().map(|c| format!("sum({c})")).collect();
        let mut bounds: Vec<String> = LATENCY_BOUNDS_MS.iter().map(|b| b.to_string()).collect();
        bounds.push("1000000000".into());
        format!(
            "arrayElement([{bounds}], arrayFirstIndex(c -> c >= {q} * arraySum([{sums}]), arrayCumSum([{sums}])))",
            bounds = bounds.join(", "),
            sums = sums.join(", "),
        )
    }
}

/// A captured header's name as a column name's end.
fn header_suffix(header: &str) -> String {
    header.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

impl HttpTable {
    /// The columns of `fields` (the config's `haproxy.fields`, compiled).
    pub fn new(fields: &[Field], ttl_hours: u32) -> HttpTable {
        HttpTable::columns_of(fields, ttl_hours)
    }

    /// `new`, with the rollups of `names`; Err names a column that is not
    /// one (or not an `int` where one is needed).
    pub fn with_rollup(fields: &[Field], ttl_hours: u32, names: Option<&RollupNames>) -> Result<HttpTable, String> {
        let mut table = HttpTable::columns_of(fields, ttl_hours);
        if let Some(n) = names {
            let find = |name: &str| table.columns.iter().position(|c| c.name == name);
            let int = |what: &str, name: &str| -> Result<Option<usize>, String> {
                if name.is_empty() {
                    return Ok(None);
                }
                match find(name) {
                    Some(i) if table.columns[i].kind == HttpType::Int64 => Ok(Some(i)),
                    _ => Err(format!("{what}: no int field is named {name:?}")),
                }
            };
            let mut dims = Vec::new();
            for d in n.dims {
                match find(d) {
                    Some(i) if !matches!(table.columns[i].source, HttpSource::Time | HttpSource::TimeMs) => {
                        if dims.contains(&i) {
                            return Err(format!("dimension {d:?} twice"));
                        }
                        dims.push(i)
                    }
                    _ => return Err(format!("dimension {d:?} is not a column of {HTTP_TABLE} (nor a time)")),
                }
            }
            table.rollup = Some(HttpRollup {
                dims,
                status: int("status", n.status)?,
                bytes: int("bytes", n.bytes)?,
                latency: int("latency", n.latency)?,
                ttl_hours: n.ttl_hours,
                keys_max: n.keys_max.max(1),
            });
        }
        Ok(table)
    }

    fn columns_of(fields: &[Field], ttl_hours: u32) -> HttpTable {
        let fixed = |name: &str, kind, source| HttpColumn { name: name.to_string(), kind, source };
        let mut columns = vec![
            fixed("time", HttpType::DateTime, HttpSource::Time),
            fixed("time_ms", HttpType::DateTimeMs, HttpSource::TimeMs),
            fixed("host", HttpType::LowString, HttpSource::Host),
            fixed("program", HttpType::LowString, HttpSource::Program),
            fixed("pid", HttpType::LowString, HttpSource::Pid),
            fixed("facility", HttpType::UInt8, HttpSource::Facility),
            fixed("severity", HttpType::UInt8, HttpSource::Severity),
        ];
        for (i, f) in fields.iter().enumerate() {
            let column =
                |name: String, kind, part| HttpColumn { name, kind, source: HttpSource::Field { field: i, part } };
            match f.kind {
                Kind::String => columns.push(column(f.name.clone(), HttpType::LowString, 0)),
                Kind::Int => columns.push(column(f.name.clone(), HttpType::Int64, 0)),
                Kind::Ip => columns.push(column(f.name.clone(), HttpType::Ip, 0)),
                Kind::ClfTime | Kind::EpochSeconds => columns.push(column(f.name.clone(), HttpType::DateTimeMs, 0)),
                Kind::Request => {
                    columns.push(column(format!("{}_method", f.name), HttpType::LowString, 0));
                    columns.push(column(format!("{}_uri", f.name), HttpType::String, 1));
                    columns.push(column(format!("{}_version", f.name), HttpType::LowString, 2));
                }
                Kind::Headers => {
                    for (h, header) in f.headers.iter().enumerate() {
                        columns.push(column(format!("{}_{}", f.name, header_suffix(header)), HttpType::String, h));
                    }
                }
            }
        }
        HttpTable { columns, ttl_hours, rollup: None }
    }

    /// Two columns of one name (a field named like a fixed column, or a
    /// request's part like another field): the config refuses them.
    pub fn duplicate_column(&self) -> Option<&str> {
        let mut seen = std::collections::HashSet::new();
        self.columns.iter().map(|c| c.name.as_str()).find(|n| !seen.insert(*n))
    }

    /// A column's definition: its name (quoted) and type.
    pub fn column_definition(&self, c: &HttpColumn, dialect: &Dialect) -> String {
        let mut def = format!("`{}` {}", c.name, c.kind.type_name(dialect));
        if dialect.codecs && c.kind == HttpType::DateTime {
            def.push_str(" CODEC(DoubleDelta, LZ4)");
        }
        def
    }

    /// `TTL ...` as the server prints it back.
    pub fn ttl_expression(&self) -> String {
        format!("TTL time + toIntervalHour({})", self.ttl_hours)
    }

    /// `status_class` as an `ALIAS` of the raw table (the status / 100, as
    /// the rollups key it), so a query reads it from either; None without
    /// a status.
    pub fn status_class_definition(&self) -> Option<String> {
        let status = self.rollup.as_ref()?.status?;
        let name = &self.columns[status].name;
        Some(format!("`status_class` UInt8 ALIAS toUInt8(greatest(least(intDiv(`{name}`, 100), 255), 0))"))
    }

    /// `CREATE TABLE` in `database` for a server of `dialect`.
    pub fn create_sql(&self, database: &str, dialect: &Dialect) -> String {
        let mut columns: Vec<String> = self.columns.iter().map(|c| self.column_definition(c, dialect)).collect();
        columns.extend(self.status_class_definition());
        let ttl = if dialect.ttl { format!("\n{}", self.ttl_expression()) } else { String::new() };
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.{HTTP_TABLE} (\n  {}\n) ENGINE = MergeTree\n\
             PARTITION BY toYYYYMMDD(time)\nORDER BY (time, host){ttl}",
            columns.join(",\n  ")
        )
    }

    /// `INSERT INTO database.http_requests (...) FORMAT Native`.
    pub fn insert_sql(&self, database: &str) -> String {
        let names: Vec<String> = self.columns.iter().map(|c| format!("`{}`", c.name)).collect();
        format!("INSERT INTO {database}.{HTTP_TABLE} ({}) FORMAT Native", names.join(", "))
    }

    /// The rollup tables' columns past `time`: (name, type), dimensions
    /// first, then the sums (all `UInt64`).
    pub fn rollup_columns(&self) -> Vec<(String, &'static str, Option<HttpType>)> {
        let Some(r) = &self.rollup else { return Vec::new() };
        let mut columns: Vec<(String, &'static str, Option<HttpType>)> =
            r.dimensions(self).into_iter().map(|(n, k)| (n.to_string(), "", Some(k))).collect();
        columns.push(("requests".into(), "UInt64", None));
        columns.push(("bytes".into(), "UInt64", None));
        columns.extend(latency_columns().into_iter().map(|c| (c, "UInt64", None)));
        columns
    }

    /// A rollup column's definition for `dialect`.
    pub fn rollup_definition(&self, column: &(String, &'static str, Option<HttpType>), dialect: &Dialect) -> String {
        let (name, sum_type, dim) = column;
        format!("`{name}` {}", dim.map_or(*sum_type, |k| k.type_name(dialect)))
    }

    /// The rollup table `i`'s TTL as the server prints it back.
    pub fn rollup_ttl_expression(&self, i: usize) -> String {
        let hours = self.rollup.as_ref().map_or(0, |r| r.ttl_hours[i.min(2)]);
        format!("TTL time + toIntervalHour({hours})")
    }

    /// The rollup table `i`'s sort key (its time and dimensions).
    pub fn rollup_key(&self) -> Vec<String> {
        let mut key = vec!["time".to_string()];
        if let Some(r) = &self.rollup {
            key.extend(r.dimensions(self).into_iter().map(|(n, _)| format!("`{n}`")));
        }
        key
    }

    /// `CREATE TABLE` of rollup table `i` (`ROLLUP_TABLES`).
    pub fn create_rollup_sql(&self, i: usize, database: &str, dialect: &Dialect) -> String {
        let (table, _) = ROLLUP_TABLES[i.min(2)];
        let mut columns = vec!["`time` DateTime".to_string()];
        columns.extend(self.rollup_columns().iter().map(|c| self.rollup_definition(c, dialect)));
        let ttl = if dialect.ttl { format!("\n{}", self.rollup_ttl_expression(i)) } else { String::new() };
        let partition = if i == 2 { "toYYYYMM(time)" } else { "toYYYYMMDD(time)" };
        format!(
            "CREATE TABLE IF NOT EXISTS {database}.{table} (\n  {}\n) ENGINE = SummingMergeTree\n\
             PARTITION BY {partition}\nORDER BY ({}){ttl}",
            columns.join(",\n  "),
            self.rollup_key().join(", ")
        )
    }

    /// `INSERT INTO database.<rollup table i> (...) FORMAT Native`.
    pub fn insert_rollup_sql(&self, i: usize, database: &str) -> String {
        let mut names = vec!["`time`".to_string()];
        names.extend(self.rollup_columns().iter().map(|(n, _, _)| format!("`{n}`")));
        format!("INSERT INTO {database}.{} ({}) FORMAT Native", ROLLUP_TABLES[i.min(2)].0, names.join(", "))
    }
}

/// A rollup's sums for one key.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    requests: u64,
    bytes: u64,
    latency: [u64; LATENCY_BOUNDS_MS.len() + 1],
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.requests += o.requests;
        self.bytes += o.bytes;
        for (a, b) in self.latency.iter_mut().zip(o.latency) {
            *a += b;
        }
    }
}

/// The latency bucket of `ms` (None: the timer did not run).
fn latency_bucket(ms: i64) -> Option<usize> {
    (ms >= 0).then(|| LATENCY_BOUNDS_MS.iter().position(|&b| ms <= b).unwrap_or(LATENCY_BOUNDS_MS.len()))
}

/// One column's rows: fixed-width bytes, or strings (Native: a VarUInt
/// length and the bytes, per row).
#[derive(Clone, Debug, Default)]
struct Data {
    bytes: Vec<u8>,
}

/// A cell of the row being read, before the line is known to be good.
#[derive(Clone, Copy, Debug)]
enum Cell {
    Empty,
    Fixed([u8; 16]),
    /// A range of `Rows::text`.
    Text(u32, u32),
}

/// The log shard's rows, column by column, and the row being read.
#[derive(Clone, Debug)]
pub struct HttpRows {
    kinds: Vec<HttpType>,
    sources: Vec<HttpSource>,
    /// Per field and part: the column (`usize::MAX`: none).
    by_field: Vec<Vec<usize>>,
    data: Vec<Data>,
    rows: usize,
    row: Vec<Cell>,
    text: String,
    rollup: Option<HttpRollup>,
    /// The rollup's sums by key (the minute, then the dimensions' bytes:
    /// a string as its u32 length and bytes, a fixed width value as its
    /// bytes, `status_class` one byte), and a key's scratch.
    sums: HashMap<Vec<u8>, Sums>,
    key: Vec<u8>,
}

impl HttpRows {
    pub fn new(table: &HttpTable) -> HttpRows {
        let mut by_field: Vec<Vec<usize>> = Vec::new();
        for (i, c) in table.columns.iter().enumerate() {
            if let HttpSource::Field { field, part } = c.source {
                if by_field.len() <= field {
                    by_field.resize(field + 1, Vec::new());
                }
                let parts = &mut by_field[field];
                if parts.len() <= part {
                    parts.resize(part + 1, usize::MAX);
                }
                parts[part] = i;
            }
        }
        HttpRows {
            kinds: table.columns.iter().map(|c| c.kind).collect(),
            sources: table.columns.iter().map(|c| c.source).collect(),
            by_field,
            data: vec![Data::default(); table.columns.len()],
            rows: 0,
            row: vec![Cell::Empty; table.columns.len()],
            text: String::new(),
            rollup: table.rollup.clone(),
            sums: HashMap::new(),
            key: Vec::new(),
        }
    }

    /// Keys the rollup holds now.
    pub fn keys(&self) -> usize {
        self.sums.len()
    }

    /// Whether the rollup holds `keys_max` keys: its sums must go.
    pub fn rollup_full(&self) -> bool {
        self.rollup.as_ref().is_some_and(|r| self.sums.len() >= r.keys_max)
    }

    /// The row's integer in `column` (0 when it has none).
    fn int(&self, column: Option<usize>) -> Option<i64> {
        match self.row.get(column?)? {
            Cell::Fixed(b) => Some(i64::from_le_bytes(b[..8].try_into().unwrap_or_default())),
            _ => None,
        }
    }

    /// Adds the row being committed to the rollup's sums.
    fn sum_row(&mut self) {
        let Some(r) = &self.rollup else { return };
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        let seconds = match self.row[0] {
            Cell::Fixed(b) => u32::from_le_bytes(b[..4].try_into().unwrap_or_default()),
            _ => 0,
        };
        key.extend_from_slice(&(seconds - seconds % 60).to_le_bytes());
        for &d in &r.dims {
            match (self.row[d], self.kinds[d].width()) {
                (Cell::Text(a, b), _) => {
                    key.extend_from_slice(&(b - a).to_le_bytes());
                    key.extend_from_slice(&self.text.as_bytes()[a as usize..b as usize]);
                }
                (_, 0) => key.extend_from_slice(&0u32.to_le_bytes()),
                (Cell::Fixed(bytes), w) => key.extend_from_slice(&bytes[..w]),
                (Cell::Empty, w) => key.extend(std::iter::repeat_n(0, w)),
            }
        }
        if r.status.is_some() {
            key.push(self.int(r.status).map_or(0, |s| (s / 100).clamp(0, 255) as u8));
        }
        let mut add = Sums { requests: 1, bytes: self.int(r.bytes).unwrap_or(0).max(0) as u64, ..Sums::default() };
        if let Some(b) = self.int(r.latency).and_then(latency_bucket) {
            add.latency[b] = 1;
        }
        match self.sums.get_mut(&key) {
            Some(sums) => sums.add(&add),
            None => {
                self.sums.insert(key.clone(), add);
            }
        }
        self.key = key;
    }

    /// Appends the rollup's sums to `out` (one Native block per rollup
    /// table, `ROLLUP_TABLES` order) and clears them; the rows per table.
    pub fn write_rollup_blocks(&mut self, table: &HttpTable, out: &mut [Vec<u8>; 3]) -> [u32; 3] {
        let mut rows = [0; 3];
        let Some(r) = &self.rollup else { return rows };
        if self.sums.is_empty() {
            return rows;
        }
        let dims = r.dimensions(table);
        let minutes = std::mem::take(&mut self.sums);
        for (i, (_, bucket)) in ROLLUP_TABLES.iter().enumerate() {
            let entries: Vec<(Vec<u8>, Sums)> = if i == 0 {
                minutes.iter().map(|(k, v)| (k.clone(), *v)).collect()
            } else {
                let mut coarse: HashMap<Vec<u8>, Sums> = HashMap::new();
                for (k, v) in &minutes {
                    let mut k = k.clone();
                    let seconds = u32::from_le_bytes(k[..4].try_into().unwrap_or_default());
                    k[..4].copy_from_slice(&(seconds - seconds % bucket).to_le_bytes());
                    coarse.entry(k).or_default().add(v);
                }
                coarse.into_iter().collect()
            };
            rows[i] = entries.len() as u32;
            write_rollup_block(table, &dims, &entries, &mut out[i]);
        }
        rows
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Bytes held (about the block's size).
    pub fn bytes(&self) -> usize {
        self.data.iter().map(|d| d.bytes.len()).sum()
    }

    /// A new line: what the last one left (a refused line) is forgotten.
    pub fn begin(&mut self) {
        self.row.iter_mut().for_each(|c| *c = Cell::Empty);
        self.text.clear();
    }

    fn text_cell(&mut self, s: &str) -> Cell {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Cell::Text(start, self.text.len() as u32)
    }

    /// The line was good: its row joins the others, the zero of its type
    /// where it had no value.
    pub fn commit(&mut self) {
        for (i, cell) in self.row.iter().enumerate() {
            let kind = self.kinds[i];
            let out = &mut self.data[i].bytes;
            match (*cell, kind.width()) {
                (Cell::Text(a, b), _) => write_string(&self.text.as_bytes()[a as usize..b as usize], out),
                (Cell::Fixed(bytes), w) if w > 0 => out.extend_from_slice(&bytes[..w]),
                (_, 0) => out.push(0),
                (_, w) => out.extend(std::iter::repeat_n(0, w)),
            }
        }
        self.rows += 1;
        self.sum_row();
    }

    /// Appends the rows as one Native block to `out`, and clears them.
    pub fn write_block(&mut self, table: &HttpTable, out: &mut Vec<u8>) {
        if self.rows == 0 {
            return;
        }
        write_varuint(self.data.len() as u64, out);
        write_varuint(self.rows as u64, out);
        for (c, d) in table.columns.iter().zip(&mut self.data) {
            write_string(c.name.as_bytes(), out);
            write_string(c.kind.block_name().as_bytes(), out);
            out.extend_from_slice(&d.bytes);
            d.bytes.clear();
        }
        self.rows = 0;
    }

    fn set(&mut self, column: usize, value: Value<'_>) {
        let Some(&kind) = self.kinds.get(column) else { return };
        let cell = match (kind, value) {
            (HttpType::LowString | HttpType::String, Value::Text(s)) => self.text_cell(s),
            (HttpType::Int64, Value::Int(n)) => fixed(&n.to_le_bytes()),
            (HttpType::DateTimeMs, Value::Ms(ms)) => fixed(&ms.max(0).to_le_bytes()),
            (HttpType::Ip, Value::Ip(ip)) => {
                let v6 = match ip {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                Cell::Fixed(v6.octets())
            }
            // A field's kind and its column's type agree (`HttpTable::new`).
            _ => return,
        };
        self.row[column] = cell;
    }
}

/// One rollup table's block: `time`, the dimensions (from the keys), the sums.
fn write_rollup_block(table: &HttpTable, dims: &[(&str, HttpType)], entries: &[(Vec<u8>, Sums)], out: &mut Vec<u8>) {
    let columns = table.rollup_columns();
    write_varuint(1 + columns.len() as u64, out);
    write_varuint(entries.len() as u64, out);
    write_string(b"time", out);
    write_string(b"DateTime", out);
    for (k, _) in entries {
        out.extend_from_slice(&k[..4]);
    }
    // Where each key's dimensions start, advanced dimension by dimension.
    let mut at: Vec<usize> = vec![4; entries.len()];
    for (name, kind) in dims {
        write_string(name.as_bytes(), out);
        let block_name = if *name == "status_class" { "UInt8" } else { kind.block_name() };
        write_string(block_name.as_bytes(), out);
        for ((k, _), at) in entries.iter().zip(at.iter_mut()) {
            match kind.width() {
                0 => {
                    let len = u32::from_le_bytes(k[*at..*at + 4].try_into().unwrap_or_default()) as usize;
                    write_string(&k[*at + 4..*at + 4 + len], out);
                    *at += 4 + len;
                }
                w => {
                    out.extend_from_slice(&k[*at..*at + w]);
                    *at += w;
                }
            }
        }
    }
    for (name, bytes) in [("requests", false), ("bytes", true)] {
        write_string(name.as_bytes(), out);
        write_string(b"UInt64", out);
        for (_, s) in entries {
            out.extend_from_slice(&(if bytes { s.bytes } else { s.requests }).to_le_bytes());
        }
    }
    for (b, name) in latency_columns().iter().enumerate() {
        write_string(name.as_bytes(), out);
        write_string(b"UInt64", out);
        entries.iter().for_each(|(_, s)| out.extend_from_slice(&s.latency[b].to_le_bytes()));
    }
}

fn fixed(bytes: &[u8]) -> Cell {
    let mut b = [0; 16];
    b[..bytes.len()].copy_from_slice(bytes);
    Cell::Fixed(b)
}

impl Values for HttpRows {
    fn header(&mut self, h: HeaderValues<'_>) {
        for i in 0..self.sources.len() {
            let cell = match self.sources[i] {
                HttpSource::Time => fixed(&((h.time_ms.max(0) / 1000).min(u32::MAX as i64) as u32).to_le_bytes()),
                HttpSource::TimeMs => fixed(&h.time_ms.max(0).to_le_bytes()),
                HttpSource::Facility => fixed(&[h.facility]),
                HttpSource::Severity => fixed(&[h.severity]),
                HttpSource::Host => self.text_cell(nil_dash(h.host)),
                HttpSource::Program => self.text_cell(nil_dash(h.program)),
                HttpSource::Pid => self.text_cell(nil_dash(h.pid)),
                HttpSource::Field { .. } => continue,
            };
            self.row[i] = cell;
        }
    }

    fn value(&mut self, field: usize, part: usize, value: Value<'_>) {
        if let Some(&column) = self.by_field.get(field).and_then(|parts| parts.get(part)) {
            self.set(column, value);
        }
    }
}

/// The syslog header's `-` (nil) as empty.
fn nil_dash(s: &str) -> &str {
    if s == "-" {
        ""
    } else {
        s
    }
}

#[cfg(test)]
#[path = "httplog_tests.rs"]
mod tests;
