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
}

/// A captured header's name as a column name's end.
fn header_suffix(header: &str) -> String {
    header.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

impl HttpTable {
    /// The columns of `fields` (the config's `haproxy.fields`, compiled).
    pub fn new(fields: &[Field], ttl_hours: u32) -> HttpTable {
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
        HttpTable { columns, ttl_hours }
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

    /// `CREATE TABLE` in `database` for a server of `dialect`.
    pub fn create_sql(&self, database: &str, dialect: &Dialect) -> String {
        let columns: Vec<String> = self.columns.iter().map(|c| self.column_definition(c, dialect)).collect();
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
        }
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
