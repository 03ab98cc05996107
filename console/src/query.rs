//! The graph queries: which table answers a request, the SQL per axis, and
//! the series the engine's rows become. Pure: the API runs the SQL.
//!
//! Tables per source (`store.raw` decides the flows' raw one, `flows` or
//! `flows_segments`):
//!
//! | source | table | resolution | what a row holds |
//! |---|---|---|---|
//! | `flows` | raw | 1 s | bytes and packets as exported, × `SamplingRate` in the query |
//! | `flows` | `flows_1m`, `flows_5m`, `flows_1h` | 60, 300, 3600 s | already × `SamplingRate` |
//! | `http` | `http_requests` | 1 s | one request |
//! | `http` | `http_requests_1m`, `_5m`, `_1h` | 60, 300, 3600 s | requests, bytes, latency buckets |
//!
//! A request is answered by the coarsest table whose resolution fits the
//! interval between points and that holds data back to the start; a filter
//! or dimension on a column the consolidated tables do not keep (addresses,
//! ports, URIs...) needs the raw table.

use std::collections::HashMap;

use serde::{Deserialize, Serialize, Serializer};

pub use crate::columns::Source;
use crate::columns::{Catalogue, Kind};
use crate::filter::{self, Expr, SqlDialect};

/// The flows' consolidated tables and their resolution in seconds, finest first.
pub const CONSOLIDATED: [(&str, u64); 3] = [("flows_1m", 60), ("flows_5m", 300), ("flows_1h", 3600)];

/// The resolution of the raw table and of each consolidated one, seconds.
const RESOLUTIONS: [u64; 4] = [1, 60, 300, 3600];

/// Ethernet overhead per packet for L2 rates: header, FCS, preamble, gap.
const L2_OVERHEAD: u64 = 38;

/// What the store holds for a source: the tables and the oldest second in each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// The raw table, then the 1 m, 5 m and 1 h ones.
    pub names: [String; 4],
    /// Their time column.
    pub time: &'static str,
    /// Oldest time (unix seconds) of each table; `None` when empty.
    pub oldest: [Option<i64>; 4],
}

impl Tables {
    /// The flows' tables, `raw` (`flows` or `flows_segments`) first.
    pub fn flows(raw: &str, oldest: [Option<i64>; 4]) -> Tables {
        let [a, b, c] = CONSOLIDATED.map(|(t, _)| t.to_string());
        Tables { names: [raw.to_string(), a, b, c], time: "TimeReceived", oldest }
    }

    /// HAProxy's requests' tables (`weir_core::httplog`).
    pub fn http(oldest: [Option<i64>; 4]) -> Tables {
        let [a, b, c] = weir_core::httplog::ROLLUP_TABLES.map(|(t, _)| t.to_string());
        Tables { names: [weir_core::httplog::HTTP_TABLE.to_string(), a, b, c], time: "time", oldest }
    }

    /// The tables of `source`.
    pub fn of(source: Source, raw: &str, oldest: [Option<i64>; 4]) -> Tables {
        match source {
            Source::Flows => Tables::flows(raw, oldest),
            Source::Http => Tables::http(oldest),
        }
    }

    pub fn raw(&self) -> &str {
        &self.names[0]
    }

    fn all(&self) -> [(&str, u64, Option<i64>); 4] {
        [0, 1, 2, 3].map(|i| (self.names[i].as_str(), RESOLUTIONS[i], self.oldest[i]))
    }
}

/// Which table answers, at what interval, over which whole buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub table: String,
    /// Seconds per point: a multiple of the table's resolution.
    pub interval: u64,
    /// The first bucket's start (unix seconds).
    pub start: i64,
    /// `start` + buckets × `interval`.
    pub end: i64,
}

impl Choice {
    pub fn buckets(&self) -> u64 {
        ((self.end - self.start) as u64) / self.interval
    }

    fn raw(&self, tables: &Tables) -> bool {
        self.table == tables.raw()
    }
}

/// Picks the table for `points` points over `[start, end)`.
pub fn choose_table(tables: &Tables, start: i64, end: i64, points: u64, raw_needed: bool) -> Choice {
    let target = (((end - start).max(1) as u64) / points.max(1)).max(1);
    let all = tables.all();
    let (table, resolution) = if raw_needed {
        (all[0].0, 1)
    } else {
        // A consolidated row stands for its whole bucket: a table holds
        // whole buckets from `oldest + resolution` on.
        let from = |(_, res, oldest): &&(&str, u64, Option<i64>)| oldest.map(|o| o + *res as i64);
        let covering: Vec<_> = all.iter().filter(|t| from(t).is_some_and(|f| f <= start)).collect();
        let candidates: Vec<_> = if covering.is_empty() {
            // Nothing reaches back to the start: the tables that reach
            // furthest, within one point of each other.
            match all.iter().filter_map(|t| from(&t)).min() {
                Some(first) => all.iter().filter(|t| from(t).is_some_and(|f| f <= first + target as i64)).collect(),
                None => Vec::new(),
            }
        } else {
            covering
        };
        let fitting = candidates.iter().filter(|(_, res, _)| *res <= target).max_by_key(|(_, res, _)| *res);
        match fitting.or_else(|| candidates.iter().min_by_key(|(_, res, _)| *res)) {
            Some((name, res, _)) => (*name, *res),
            // An empty store: the raw table, which says so by returning nothing.
            None => (all[0].0, 1),
        }
    };
    let interval = (target / resolution).max(1) * resolution;
    // The start down to the resolution, the end up to it: the last bucket
    // is the one still filling (which is why a series' `last` is the one
    // before it).
    let res = resolution as i64;
    let start = start.div_euclid(res) * res;
    let end = (end + res - 1).div_euclid(res) * res;
    let buckets = ((end - start).max(1) as u64).div_ceil(interval);
    Choice { table: table.to_string(), interval, start, end: start + (buckets * interval) as i64 }
}

/// What the graphs show: rates of flows (`l3bps` ... `fps`), rates of
/// HTTP requests (`rps`, `Bps`), or a latency quantile of HTTP requests
/// (`latency-p50`, `-p90`, `-p99`, milliseconds: not a rate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Units {
    #[serde(rename = "l3bps")]
    L3Bps,
    #[serde(rename = "l2bps")]
    L2Bps,
    #[serde(rename = "pps")]
    Pps,
    #[serde(rename = "fps")]
    Fps,
    #[serde(rename = "inl2%")]
    InL2Percent,
    #[serde(rename = "outl2%")]
    OutL2Percent,
    /// HTTP requests per second.
    #[serde(rename = "rps")]
    Rps,
    /// HTTP response bytes per second (`haproxy.store_bytes`).
    #[serde(rename = "Bps")]
    Bps,
    /// A latency quantile of HTTP requests, ms (`haproxy.store_latency`).
    #[serde(rename = "latency-p50")]
    LatencyP50,
    #[serde(rename = "latency-p90")]
    LatencyP90,
    #[serde(rename = "latency-p99")]
    LatencyP99,
}

impl Units {
    /// The units of each source.
    pub const FLOWS: [Units; 6] =
        [Units::L3Bps, Units::L2Bps, Units::Pps, Units::Fps, Units::InL2Percent, Units::OutL2Percent];
    pub const HTTP: [Units; 5] = [Units::Rps, Units::Bps, Units::LatencyP50, Units::LatencyP90, Units::LatencyP99];

    /// The name requests use.
    pub fn name(self) -> String {
        serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }

    /// The quantile of a latency unit.
    fn quantile(self) -> Option<f64> {
        match self {
            Units::LatencyP50 => Some(0.5),
            Units::LatencyP90 => Some(0.9),
            Units::LatencyP99 => Some(0.99),
            _ => None,
        }
    }

    /// Whether a bucket's value is divided by its seconds (a rate); a
    /// latency quantile is not.
    pub fn rate(self) -> bool {
        self.quantile().is_none()
    }

    /// The aggregate over a group of rows of `columns`' source, from the
    /// raw table or a consolidated one: bits, packets, flows or requests
    /// (divided by the seconds later), or a latency in ms.
    pub fn metric(self, columns: &Catalogue, raw: bool) -> Result<String, String> {
        let source = columns.source;
        let wanted = match source {
            Source::Flows => &Units::FLOWS[..],
            Source::Http => &Units::HTTP[..],
        };
        if !wanted.contains(&self) {
            let names: Vec<String> = wanted.iter().map(|u| u.name()).collect();
            let source = if source == Source::Flows { "flows" } else { "http" };
            return Err(format!("units: {} is not a unit of the {source} source ({})", self.name(), names.join(", ")));
        }
        let rate = if raw { " * SamplingRate" } else { "" };
        let bytes = || columns.bytes.as_deref().ok_or("units: Bps needs haproxy.store_bytes (an int field)");
        let latency = || columns.latency.as_deref().ok_or("units: latency needs haproxy.store_latency (an int field)");
        Ok(match self {
            Units::L3Bps => format!("sum(Bytes{rate} * 8)"),
            Units::L2Bps => format!("sum((Bytes + {L2_OVERHEAD} * Packets){rate} * 8)"),
            Units::Pps => format!("sum(Packets{rate})"),
            Units::Fps if raw => "count()".to_string(),
            Units::Fps => "sum(Flows)".to_string(),
            Units::InL2Percent | Units::OutL2Percent => {
                return Err(
                    "inl2% and outl2% need interface speeds (InIfSpeed, OutIfSpeed), which the store does not hold yet"
                        .into(),
                )
            }
            Units::Rps if raw => "count()".to_string(),
            Units::Rps => "sum(requests)".to_string(),
            // HAProxy logs -1 bytes for a request it never answered.
            Units::Bps if raw => format!("sum(greatest({}, 0))", bytes()?),
            Units::Bps => {
                bytes()?;
                "sum(bytes)".to_string()
            }
            Units::LatencyP50 | Units::LatencyP90 | Units::LatencyP99 => {
                let q = self.quantile().unwrap_or(0.5);
                let latency = latency()?;
                if raw {
                    // -1: the timer did not run; the rollups leave it out too.
                    format!("quantileExactIf({q})({latency}, {latency} >= 0)")
                } else {
                    weir_core::httplog::HttpRollup::quantile_sql(q)
                }
            }
        })
    }

    fn reversed(self) -> Units {
        match self {
            Units::InL2Percent => Units::OutL2Percent,
            Units::OutL2Percent => Units::InL2Percent,
            u => u,
        }
    }

    /// A point as the answer carries it: whole for flows (bits, packets
    /// and flows per second are large), to the thousandth for requests.
    fn rounded(self, v: f64) -> f64 {
        if Units::HTTP.contains(&self) {
            (v * 1000.0).round() / 1000.0
        } else {
            v.round()
        }
    }
}

/// Writes whole numbers as integers, others as decimals (the answers'
/// numbers: flows' are whole, as Akvorado's).
fn numbers<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(|v| Number(*v)))
}

fn nested_numbers<S: Serializer>(values: &[Vec<f64>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(values.iter().map(|row| row.iter().map(|v| Number(*v)).collect::<Vec<_>>()))
}

fn number<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    Number(*value).serialize(s)
}

struct Number(f64);

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

/// How the top rows are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitType {
    #[default]
    Avg,
    Max,
    Last,
}

/// What every graph request holds (Akvorado's field names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphRequest {
    /// What is graphed: `flows` (the default) or `http` (HAProxy's requests, with `[haproxy] store`).
    #[serde(default)]
    pub source: Source,
    /// The range's start, RFC 3339.
    pub start: String,
    /// The range's end, RFC 3339; after the start, at most a day ahead.
    pub end: String,
    /// Columns to group by (`configuration`'s `dimensions`); none: one total series.
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// How many top rows (1..`dimensionsLimit`); the rest is `Other`.
    #[serde(default = "default_limit")]
    pub limit: u64,
    /// How the top rows are ranked: over the range (avg), by their largest interval (max), or the last one.
    #[serde(default, rename = "limitType")]
    pub limit_type: LimitType,
    /// The filter language over the source's columns; empty: every flow (or request).
    #[serde(default)]
    pub filter: String,
    /// Group IPv4 addresses by this prefix length (0: whole addresses).
    #[serde(default, rename = "truncate-v4")]
    pub truncate_v4: u8,
    /// Group IPv6 addresses by this prefix length (0: whole addresses).
    #[serde(default, rename = "truncate-v6")]
    pub truncate_v6: u8,
    pub units: Units,
    /// Line graphs: how many points, 5..=2000.
    #[serde(default)]
    pub points: Option<u64>,
    /// Add axis 2: the other direction (Src/Dst and In/Out swapped in the filter and dimensions); flows only.
    #[serde(default)]
    pub bidirectional: bool,
    /// Add axis 3 (and 4): the total of the previous hour, day, week, 4 weeks or year.
    #[serde(default, rename = "previous-period")]
    pub previous_period: bool,
    /// Accepted for the front end's sake; every type takes the same series.
    #[serde(default, rename = "graphType")]
    pub graph_type: Option<String>,
}

fn default_limit() -> u64 {
    10
}

/// The columns that may be truncated to a prefix.
pub const TRUNCATABLE: [&str; 4] = ["SrcAddr", "DstAddr", "SrcAddrNAT", "DstAddrNAT"];

/// Limits a request is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub dimensions_limit: u64,
    /// How far back a request may start, seconds.
    pub range_max_s: i64,
}

/// A request checked against the schema: times, columns, filters parsed.
#[derive(Clone, Debug)]
pub struct Checked {
    pub start: i64,
    pub end: i64,
    pub dimensions: Vec<String>,
    pub limit: u64,
    pub limit_type: LimitType,
    pub filter: Option<Expr>,
    pub truncate_v4: u8,
    pub truncate_v6: u8,
    pub units: Units,
    pub bidirectional: bool,
    pub previous_period: bool,
}

/// Parses an RFC 3339 time to unix seconds.
pub fn parse_time(field: &str, text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp())
        .map_err(|e| format!("{field}: {text:?} is not an RFC 3339 time ({e})"))
}

/// Unix seconds as RFC 3339 in UTC.
pub fn format_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default()
}

impl GraphRequest {
    /// Checks the request; errors are the 400 messages.
    pub fn check(&self, columns: &Catalogue, limits: Limits, now: i64) -> Result<Checked, String> {
        let start = parse_time("start", &self.start)?;
        let end = parse_time("end", &self.end)?;
        if end <= start {
            return Err("end must be after start".into());
        }
        if now - start > limits.range_max_s || end - now > 86_400 {
            return Err(format!(
                "the time range must start within {} days and end at most a day from now",
                limits.range_max_s / 86_400
            ));
        }
        if self.limit == 0 || self.limit > limits.dimensions_limit {
            return Err(format!("limit must be 1..{} (dimensions_limit)", limits.dimensions_limit));
        }
        if let Some(points) = self.points {
            if !(5..=2000).contains(&points) {
                return Err("points must be 5..2000".into());
            }
        }
        if self.truncate_v4 > 32 || self.truncate_v6 > 128 {
            return Err("truncate-v4 is 0..32 and truncate-v6 0..128".into());
        }
        if self.dimensions.len() > 10 {
            return Err("at most 10 dimensions".into());
        }
        let mut dimensions = Vec::new();
        for d in &self.dimensions {
            match columns.find(d) {
                Some(c) if c.dimension => {
                    if dimensions.contains(&c.name) {
                        return Err(format!("dimension {} is named twice", c.name));
                    }
                    dimensions.push(c.name.clone());
                }
                _ => return Err(format!("unknown dimension {d:?}")),
            }
        }
        self.units.metric(columns, true)?;
        if self.bidirectional && columns.source != Source::Flows {
            return Err("bidirectional: only flows have another direction".into());
        }
        let filter = filter::parse(self.filter.trim(), columns).map_err(|e| format!("filter: {e}"))?;
        Ok(Checked {
            start,
            end,
            dimensions,
            limit: self.limit,
            limit_type: self.limit_type,
            filter,
            truncate_v4: self.truncate_v4,
            truncate_v6: self.truncate_v6,
            units: self.units,
            bidirectional: self.bidirectional,
            previous_period: self.previous_period,
        })
    }
}

impl Checked {
    /// Whether only the raw table can answer (a filter, either way, or a
    /// dimension on a column the consolidated tables lack).
    pub fn needs_raw(&self, columns: &Catalogue) -> bool {
        let filter = self.filter.as_ref().is_some_and(|f| {
            f.needs_raw_table(columns) || (self.bidirectional && f.reversed(columns).needs_raw_table(columns))
        });
        let dims = self.dimensions.iter().any(|d| columns.find(d).is_none_or(|c| !c.consolidated));
        let reversed_dims = self.bidirectional
            && self.dimensions.iter().any(|d| columns.find(columns.counterpart(d)).is_none_or(|c| !c.consolidated));
        filter || dims || reversed_dims
    }
}

/// Everything the SQL builders need besides the request.
pub struct Builder<'a> {
    pub columns: &'a Catalogue,
    pub database: &'a str,
    pub dialect: SqlDialect,
    pub tables: &'a Tables,
}

/// One axis of a graph: 1 direct, 2 reverse, 3 and 4 the previous period.
#[derive(Clone, Debug)]
pub struct AxisQuery {
    pub axis: u8,
    pub sql: String,
    /// Seconds added to the rows' bucket times (the previous period's shift).
    pub shift: i64,
    /// How many dimension columns each row carries after the bucket and value.
    pub dimensions: usize,
}

impl Builder<'_> {
    fn truncated(&self, column: &str, v4: u8, v6: u8) -> String {
        let cut = |bits: u16| format!("tupleElement(IPv6CIDRToRange({column}, {bits}), 1)");
        let v4_part = if v4 > 0 { cut(96 + v4 as u16) } else { column.to_string() };
        let v6_part = if v6 > 0 { cut(v6 as u16) } else { column.to_string() };
        let low = format!("{}('::ffff:0.0.0.0')", self.dialect.ipv6);
        let high = format!("{}('::ffff:255.255.255.255')", self.dialect.ipv6);
        format!("if({column} BETWEEN {low} AND {high}, {v4_part}, {v6_part})")
    }

    fn source(&self, choice: &Choice, start: i64, end: i64, filter: Option<&Expr>) -> String {
        let mut s = format!(
            "FROM {}.{} WHERE {time} >= toDateTime({start}) AND {time} < toDateTime({end})",
            self.database,
            choice.table,
            time = self.tables.time
        );
        if let Some(f) = filter {
            s.push_str(&format!(" AND ({})", f.to_sql(self.dialect)));
        }
        s
    }

    /// The top `limit` combinations of the dimensions (raw values) over
    /// the direct axis, ranked by `limit_type`.
    fn top(&self, r: &Checked, choice: &Choice, metric: &str) -> String {
        let dims: Vec<String> =
            r.dimensions.iter().enumerate().map(|(i, d)| format!("{} AS weir_t{i}", self.value(d, r))).collect();
        let names: Vec<String> = (0..dims.len()).map(|i| format!("weir_t{i}")).collect();
        let (dims, names) = (dims.join(", "), names.join(", "));
        let from = self.source(choice, choice.start, choice.end, r.filter.as_ref());
        match r.limit_type {
            LimitType::Avg => {
                // Ranked over the range, which a coarser table answers in fewer rows.
                let ranking = Choice { table: self.ranking_table(choice).to_string(), ..choice.clone() };
                let from = self.source(&ranking, choice.start, choice.end, r.filter.as_ref());
                format!("SELECT {dims} {from} GROUP BY {names} ORDER BY {metric} DESC LIMIT {}", r.limit)
            }
            LimitType::Max => format!(
                "SELECT {names} FROM (SELECT {dims}, intDiv(toUInt32({}) - {}, {}) AS weir_i, {metric} AS weir_v \
                 {from} GROUP BY {names}, weir_i) GROUP BY {names} ORDER BY max(weir_v) DESC LIMIT {}",
                self.tables.time, choice.start, choice.interval, r.limit
            ),
            LimitType::Last => {
                let last = self.source(choice, choice.end - choice.interval as i64, choice.end, r.filter.as_ref());
                format!("SELECT {dims} {last} GROUP BY {names} ORDER BY {metric} DESC LIMIT {}", r.limit)
            }
        }
    }

    /// The table the top rows are ranked on for a range: the coarsest
    /// consolidated table with at least 20 buckets in the range that holds
    /// whole buckets back to its start, when the graph's table is a finer
    /// consolidated one (its sums are the same, its rows fewer); otherwise
    /// the graph's table.
    fn ranking_table<'c>(&'c self, choice: &'c Choice) -> &'c str {
        let all = self.tables.all();
        let Some(at) = all.iter().skip(1).position(|(t, _, _)| *t == choice.table) else { return &choice.table };
        let range = (choice.end - choice.start).max(0) as u64;
        all[1 + at..]
            .iter()
            .filter(|(_, res, oldest)| {
                let covers = oldest.is_some_and(|o| o + *res as i64 <= choice.start);
                *res * 20 <= range && covers
            })
            .map(|(t, _, _)| *t)
            .next_back()
            .unwrap_or(&choice.table)
    }

    /// A dimension's value as grouped (an address truncated when asked).
    fn value(&self, column: &str, r: &Checked) -> String {
        if TRUNCATABLE.contains(&column) && (r.truncate_v4 > 0 || r.truncate_v6 > 0) {
            self.truncated(column, r.truncate_v4, r.truncate_v6)
        } else {
            column.to_string()
        }
    }

    /// The time-series queries, one per axis.
    pub fn line(&self, r: &Checked, choice: &Choice) -> Result<Vec<AxisQuery>, String> {
        let raw = choice.raw(self.tables);
        let metric = r.units.metric(self.columns, raw)?;
        // Without dimensions there are no top rows, only the total.
        let top = (!r.dimensions.is_empty()).then(|| self.top(r, choice, &metric));
        let mut axes = Vec::new();
        let reversed_filter = r.filter.as_ref().map(|f| f.reversed(self.columns));
        let directions: &[(u8, bool)] = if r.bidirectional { &[(1, false), (2, true)] } else { &[(1, false)] };
        for &(axis, reverse) in directions {
            let units = if reverse { r.units.reversed() } else { r.units };
            let metric = units.metric(self.columns, raw)?;
            let dims: Vec<&str> =
                r.dimensions.iter().map(|d| if reverse { self.columns.counterpart(d) } else { d.as_str() }).collect();
            let filter = if reverse { reversed_filter.as_ref() } else { r.filter.as_ref() };
            let sql = self.series(r, choice, &metric, &dims, filter, top.as_deref(), 0);
            axes.push(AxisQuery { axis, sql, shift: 0, dimensions: dims.len() });
        }
        if r.previous_period {
            let shift = previous_period(choice.end - choice.start);
            for &(axis, reverse) in directions {
                let metric = if reverse { r.units.reversed() } else { r.units }.metric(self.columns, raw)?;
                let filter = if reverse { reversed_filter.as_ref() } else { r.filter.as_ref() };
                let sql = self.series(r, choice, &metric, &[], filter, None, shift);
                axes.push(AxisQuery { axis: axis + 2, sql, shift, dimensions: 0 });
            }
        }
        Ok(axes)
    }

    #[allow(clippy::too_many_arguments)]
    fn series(
        &self,
        r: &Checked,
        choice: &Choice,
        metric: &str,
        dims: &[&str],
        filter: Option<&Expr>,
        top: Option<&str>,
        shift: i64,
    ) -> String {
        let (start, end) = (choice.start - shift, choice.end - shift);
        let bucket = format!("intDiv(toUInt32({}) - {start}, {}) AS weir_i", self.tables.time, choice.interval);
        let from = self.source(choice, start, end, filter);
        let values: Vec<String> = dims.iter().map(|d| self.value(d, r)).collect();
        let Some(top) = top else {
            let shown: Vec<String> = dims
                .iter()
                .zip(&values)
                .enumerate()
                .map(|(i, (d, v))| format!(", {} AS weir_d{i}", self.columns.text_sql(d, v)))
                .collect();
            let group: String = (0..dims.len()).map(|i| format!(", weir_d{i}")).collect();
            return format!("SELECT {bucket}, {metric} AS weir_v{} {from} GROUP BY weir_i{group}", shown.concat());
        };
        // Grouped by the values themselves (numbers, addresses), every row
        // outside the top ones folded into one per bucket; turned into
        // text only on the grouped rows.
        let tuple = format!("({})", values.join(", "));
        let mut inner = format!("SELECT {bucket}, {tuple} IN ({top}) AS weir_top");
        let mut group = "weir_i, weir_top".to_string();
        let mut outer = "SELECT weir_i, weir_v".to_string();
        for (i, (d, v)) in dims.iter().zip(&values).enumerate() {
            inner.push_str(&format!(", if(weir_top, {v}, defaultValueOfArgumentType({v})) AS weir_r{i}"));
            group.push_str(&format!(", weir_r{i}"));
            outer.push_str(&format!(
                ", if(weir_top, {}, 'Other') AS weir_d{i}",
                self.columns.text_sql(d, &format!("weir_r{i}"))
            ));
        }
        format!("{outer} FROM ({inner}, {metric} AS weir_v {from} GROUP BY {group})")
    }

    /// The sankey query: every dimension on its own against the top rows.
    pub fn sankey(&self, r: &Checked, choice: &Choice) -> Result<Vec<AxisQuery>, String> {
        if r.dimensions.is_empty() {
            return Err("a sankey needs at least one dimension".into());
        }
        if !r.units.rate() {
            return Err("a sankey shows rates (rps, Bps), not a latency quantile".into());
        }
        let raw = choice.raw(self.tables);
        let top = self.top(r, choice, &r.units.metric(self.columns, raw)?);
        let range = (choice.end - choice.start).max(1);
        let reversed_filter = r.filter.as_ref().map(|f| f.reversed(self.columns));
        let directions: &[(u8, bool)] = if r.bidirectional { &[(1, false), (2, true)] } else { &[(1, false)] };
        let mut axes = Vec::new();
        for &(axis, reverse) in directions {
            let metric = if reverse { r.units.reversed() } else { r.units }.metric(self.columns, raw)?;
            let mut inner = "SELECT 0 AS weir_i".to_string();
            let mut group = vec!["weir_i".to_string()];
            let mut outer = "SELECT weir_i, weir_v".to_string();
            for (i, d) in r.dimensions.iter().enumerate() {
                let column = if reverse { self.columns.counterpart(d) } else { d.as_str() };
                let value = self.value(column, r);
                inner.push_str(&format!(
                    ", {value} IN (SELECT weir_t{i} FROM ({top})) AS weir_top{i}, \
                     if(weir_top{i}, {value}, defaultValueOfArgumentType({value})) AS weir_r{i}"
                ));
                group.push(format!("weir_top{i}, weir_r{i}"));
                let shown = self.columns.text_sql(column, &format!("weir_r{i}"));
                outer.push_str(&format!(", if(weir_top{i}, {shown}, 'Other') AS weir_d{i}"));
            }
            let filter = if reverse { reversed_filter.as_ref() } else { r.filter.as_ref() };
            let from = self.source(choice, choice.start, choice.end, filter);
            let sql =
                format!("{outer} FROM ({inner}, {metric} / {range} AS weir_v {from} GROUP BY {})", group.join(", "));
            axes.push(AxisQuery { axis, sql, shift: 0, dimensions: r.dimensions.len() });
        }
        Ok(axes)
    }
}

/// How far back the previous period is, for a range of `range` seconds:
/// an hour, a day, a week, four weeks or a year.
pub fn previous_period(range: i64) -> i64 {
    const HOUR: i64 = 3600;
    const DAY: i64 = 24 * HOUR;
    match range {
        r if r < 2 * HOUR => HOUR,
        r if r < 2 * DAY => DAY,
        r if r < 14 * DAY => 7 * DAY,
        r if r < 56 * DAY => 28 * DAY,
        _ => 365 * DAY,
    }
}

/// The name of an axis in the answers.
pub fn axis_name(axis: u8, range: i64) -> String {
    match axis {
        1 => "Direct".into(),
        2 => "Reverse".into(),
        _ => {
            let unit = match previous_period(range) {
                3600 => "hour",
                86_400 => "day",
                604_800 => "week",
                2_419_200 => "month",
                _ => "year",
            };
            format!("Previous {unit}")
        }
    }
}

/// One row of the engine's TSV answer: bucket, value, dimension labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub bucket: u64,
    pub value: f64,
    pub labels: Vec<String>,
}

/// Reads `TabSeparated` output: bucket, value and `dimensions` labels per line.
pub fn parse_rows(tsv: &[u8], dimensions: usize) -> Result<Vec<Row>, String> {
    let text = std::str::from_utf8(tsv).map_err(|_| "the store's answer is not UTF-8".to_string())?;
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<String> = line.split('\t').map(unescape_tsv).collect();
        if fields.len() != 2 + dimensions {
            return Err(format!("the store answered {} fields, not {}", fields.len(), 2 + dimensions));
        }
        let bucket = fields[0].parse().map_err(|_| format!("bad bucket {:?}", fields[0]))?;
        let value = fields[1].parse().map_err(|_| format!("bad value {:?}", fields[1]))?;
        rows.push(Row { bucket, value, labels: fields[2..].to_vec() });
    }
    Ok(rows)
}

/// Undoes TabSeparated escaping (the store's answers).
pub use weir_core::tsv::unescape as unescape_tsv;

/// A dimension value as operators read it: protocol and Ethernet type
/// names, MACs in colon form, addresses without the IPv4-mapped prefix,
/// lists space-separated.
pub fn label(columns: &Catalogue, column: &str, value: &str) -> String {
    if value == "Other" {
        return value.to_string();
    }
    let kind = columns.find(column).map(|c| c.kind);
    match kind {
        Some(Kind::Ip) => value.strip_prefix("::ffff:").filter(|v| v.contains('.')).unwrap_or(value).to_string(),
        Some(Kind::Asn) => format!("AS{value}"),
        Some(Kind::Proto) => value
            .parse::<u8>()
            .ok()
            .and_then(|p| weir_core::migrate::PROTOCOLS.iter().find(|(n, _, _)| *n == p))
            .map_or_else(|| value.to_string(), |(_, name, _)| name.to_string()),
        Some(Kind::EType) => match value {
            "2048" => "IPv4".into(),
            "34525" => "IPv6".into(),
            v => v.to_string(),
        },
        Some(Kind::Direction) => match value {
            "0" => "ingress".into(),
            "1" => "egress".into(),
            v => v.to_string(),
        },
        Some(Kind::Mac) => value.parse::<u64>().map_or_else(
            |_| value.to_string(),
            |m| (0..6).rev().map(|i| format!("{:02x}", (m >> (8 * i)) & 0xff)).collect::<Vec<_>>().join(":"),
        ),
        Some(Kind::AsPath | Kind::UIntArray | Kind::Communities | Kind::LargeCommunities) => {
            let items = value.trim_matches(|c| c == '[' || c == ']').split(',').filter(|s| !s.is_empty());
            let items: Vec<String> = match kind {
                Some(Kind::Communities) => items
                    .map(|s| s.parse::<u32>().map_or_else(|_| s.to_string(), |c| format!("{}:{}", c >> 16, c & 0xffff)))
                    .collect(),
                Some(Kind::LargeCommunities) => items
                    .map(|s| {
                        let word = |c: u128, i: u32| (c >> (32 * i)) as u32;
                        s.parse::<u128>()
                            .map_or_else(|_| s.to_string(), |c| format!("{}:{}:{}", word(c, 2), word(c, 1), word(c, 0)))
                    })
                    .collect(),
                _ => items.map(str::to_string).collect(),
            };
            items.join(" ")
        }
        _ => value.to_string(),
    }
}

/// The `graph/line` answer (Akvorado's shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LineAnswer {
    pub t: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Per series, the value of each bucket: whole for flows' units, to
    /// the thousandth for HTTP's.
    #[serde(serialize_with = "nested_numbers")]
    #[schema(value_type = Vec<Vec<f64>>)]
    pub points: Vec<Vec<f64>>,
    pub axis: Vec<u8>,
    #[serde(rename = "axis-names")]
    pub axis_names: HashMap<u8, String>,
    #[serde(serialize_with = "numbers")]
    pub average: Vec<f64>,
    #[serde(serialize_with = "numbers")]
    pub min: Vec<f64>,
    #[serde(serialize_with = "numbers")]
    pub max: Vec<f64>,
    #[serde(serialize_with = "numbers")]
    pub last: Vec<f64>,
    #[serde(rename = "95th", serialize_with = "numbers")]
    pub p95: Vec<f64>,
    /// Sum × interval: bits, packets, flows or requests over the range; for
    /// a latency quantile (not a rate), the largest point.
    #[serde(serialize_with = "numbers")]
    pub total: Vec<f64>,
}

/// Builds the series from each axis's rows: one per label tuple, every
/// bucket filled (0 where the engine had no row), `Other` last in its axis.
pub fn line_answer(columns: &Catalogue, r: &Checked, choice: &Choice, axes: &[(AxisQuery, Vec<Row>)]) -> LineAnswer {
    let buckets = choice.buckets() as usize;
    let mut answer = LineAnswer {
        t: (0..buckets).map(|i| format_time(choice.start + (i as u64 * choice.interval) as i64)).collect(),
        ..LineAnswer::default()
    };
    for (q, rows) in axes {
        answer.axis_names.insert(q.axis, axis_name(q.axis, choice.end - choice.start));
        let dims: Vec<&str> =
            r.dimensions.iter().map(|d| if q.axis % 2 == 0 { columns.counterpart(d) } else { d.as_str() }).collect();
        let mut series: Vec<(Vec<String>, Vec<f64>)> = Vec::new();
        let mut index: HashMap<Vec<String>, usize> = HashMap::new();
        for row in rows {
            let labels: Vec<String> = row
                .labels
                .iter()
                .enumerate()
                .map(|(i, v)| label(columns, dims.get(i).copied().unwrap_or(""), v))
                .collect();
            let at = *index.entry(labels.clone()).or_insert_with(|| {
                series.push((labels, vec![0.0; buckets]));
                series.len() - 1
            });
            if let Some(p) = series[at].1.get_mut(row.bucket as usize) {
                if r.units.rate() {
                    *p += row.value / choice.interval as f64;
                } else {
                    *p = row.value;
                }
            }
        }
        if q.dimensions == 0 && series.is_empty() {
            // A total line (no dimensions, or the previous period) is drawn even when empty.
            series.push((Vec::new(), vec![0.0; buckets]));
        }
        let rank = |points: &[f64]| -> f64 {
            match r.limit_type {
                LimitType::Avg => points.iter().sum(),
                LimitType::Max => points.iter().cloned().fold(0.0, f64::max),
                LimitType::Last => points.last().copied().unwrap_or(0.0),
            }
        };
        series.sort_by(|a, b| {
            let other = |s: &[String]| !s.is_empty() && s.iter().all(|l| l == "Other");
            other(&a.0).cmp(&other(&b.0)).then(rank(&b.1).total_cmp(&rank(&a.1)))
        });
        let round = |v: f64| r.units.rounded(v);
        for (labels, points) in series {
            let stats = Stats::of(&points);
            answer.rows.push(labels);
            answer.points.push(points.iter().map(|p| round(*p)).collect());
            answer.axis.push(q.axis);
            answer.average.push(round(stats.average));
            answer.min.push(round(stats.min));
            answer.max.push(round(stats.max));
            answer.last.push(round(stats.last));
            answer.p95.push(round(stats.p95));
            let total = if r.units.rate() { stats.sum * choice.interval as f64 } else { stats.max };
            answer.total.push(total.round());
        }
    }
    answer
}

/// Per-series figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub sum: f64,
    pub average: f64,
    /// The smallest non-zero point.
    pub min: f64,
    pub max: f64,
    /// The second-to-last point (the last bucket is still filling).
    pub last: f64,
    /// The 95th percentile, interpolated linearly between ranks.
    pub p95: f64,
}

impl Stats {
    pub fn of(points: &[f64]) -> Stats {
        if points.is_empty() {
            return Stats::default();
        }
        let sum: f64 = points.iter().sum();
        let mut sorted = points.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = 0.95 * (sorted.len() - 1) as f64;
        let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
        let p95 = sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64);
        Stats {
            sum,
            average: sum / points.len() as f64,
            min: sorted.iter().copied().find(|p| *p > 0.0).unwrap_or(0.0),
            max: sorted[sorted.len() - 1],
            last: points[points.len().saturating_sub(2)],
            p95,
        }
    }
}

/// A sankey node.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Node {
    pub name: String,
    pub axis: u8,
}

/// A sankey link between values of consecutive dimensions.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Link {
    pub source: String,
    pub target: String,
    #[serde(serialize_with = "number")]
    pub xps: f64,
    pub axis: u8,
}

/// The `graph/sankey` answer (Akvorado's shape).
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SankeyAnswer {
    pub rows: Vec<Vec<String>>,
    #[serde(serialize_with = "numbers")]
    pub xps: Vec<f64>,
    pub axis: Vec<u8>,
    #[serde(rename = "axis-names")]
    pub axis_names: HashMap<u8, String>,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
}

pub fn sankey_answer(
    columns: &Catalogue,
    r: &Checked,
    choice: &Choice,
    axes: &[(AxisQuery, Vec<Row>)],
) -> SankeyAnswer {
    let mut answer = SankeyAnswer::default();
    let mut links: Vec<Link> = Vec::new();
    for (q, rows) in axes {
        answer.axis_names.insert(q.axis, axis_name(q.axis, choice.end - choice.start));
        let dims: Vec<&str> =
            r.dimensions.iter().map(|d| if q.axis % 2 == 0 { columns.counterpart(d) } else { d.as_str() }).collect();
        let mut rows: Vec<(Vec<String>, f64)> = rows
            .iter()
            .map(|row| {
                let labels = row.labels.iter().enumerate().map(|(i, v)| label(columns, dims[i], v)).collect();
                (labels, row.value)
            })
            .collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (labels, xps) in rows {
            let names: Vec<String> = labels.iter().enumerate().map(|(i, l)| format!("{}: {l}", dims[i])).collect();
            for name in &names {
                if !answer.nodes.iter().any(|n| &n.name == name && n.axis == q.axis) {
                    answer.nodes.push(Node { name: name.clone(), axis: q.axis });
                }
            }
            for pair in names.windows(2) {
                match links.iter_mut().find(|l| l.source == pair[0] && l.target == pair[1] && l.axis == q.axis) {
                    Some(l) => l.xps = r.units.rounded(l.xps + xps),
                    None => links.push(Link {
                        source: pair[0].clone(),
                        target: pair[1].clone(),
                        xps: r.units.rounded(xps),
                        axis: q.axis,
                    }),
                }
            }
            answer.rows.push(labels);
            answer.xps.push(r.units.rounded(xps));
            answer.axis.push(q.axis);
        }
    }
    links.sort_by(|a, b| a.axis.cmp(&b.axis).then(b.xps.total_cmp(&a.xps)));
    answer.links = links;
    answer
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
