//! The columns the console knows: each stored column with the kind of
//! values the filter language accepts for it, whether the consolidated
//! tables keep it (otherwise a query using it must read raw `flows`), and
//! its counterpart for the reverse direction (Src↔Dst, In↔Out).
//!
//! Built from the schema the store has enabled, so a column switched on in
//! `store.optional_columns` (or added by enrichment) appears in the filter
//! language, the dimensions and the completion without a change here.

use weir_core::httplog::{HttpTable, HttpType};
use weir_core::schema::{Column, ColumnType};

/// What a filter may compare a column with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An IPv6 (or IPv4-mapped) address: addresses, subnets.
    Ip,
    /// An unsigned integer of `bits` bits.
    UInt { bits: u8 },
    /// A signed 64-bit integer (HAProxy's `int` fields: -1 where a timer
    /// did not run).
    Int,
    /// An AS number: `AS65000` or `65000`.
    Asn,
    /// A list of AS numbers; `=` means "contains".
    AsPath,
    /// A list of unsigned 32-bit integers (MPLS labels); `=` means "contains".
    UIntArray,
    /// A list of standard communities `a:b`; `=` means "contains".
    Communities,
    /// A list of large communities `a:b:c` (`UInt128`); `=` means "contains".
    LargeCommunities,
    /// A MAC address stored in the low 48 bits of a UInt64.
    Mac,
    /// A string (names from enrichment).
    Str,
    /// Ethernet type: `IPv4`, `IPv6` or a number.
    EType,
    /// IP protocol: a name (`TCP`) or a number.
    Proto,
    /// Flow direction: `ingress` (0) or `egress` (1).
    Direction,
    /// Interface boundary: `external`, `internal` or `undefined` (a string).
    Boundary,
}

impl Kind {
    /// What a value of this kind is called in error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Ip => "an IP address or subnet",
            Kind::UInt { bits: 8 } => "an unsigned 8-bit integer",
            Kind::UInt { bits: 16 } => "an unsigned 16-bit integer",
            Kind::UInt { bits: 32 } => "an unsigned 32-bit integer",
            Kind::UInt { .. } => "an unsigned 64-bit integer",
            Kind::Int => "a 64-bit integer",
            Kind::Asn | Kind::AsPath => "an AS number",
            Kind::UIntArray => "an unsigned 32-bit integer",
            Kind::Communities => "a community (a:b, 16-bit parts)",
            Kind::LargeCommunities => "a large community (a:b:c, 32-bit parts)",
            Kind::Mac => "a 6-byte MAC address",
            Kind::Str => "a quoted string",
            Kind::EType => "IPv4, IPv6 or an unsigned 16-bit integer",
            Kind::Proto => "a protocol name or an unsigned 8-bit integer",
            Kind::Direction => "ingress or egress",
            Kind::Boundary => "external, internal or undefined",
        }
    }

    /// The operators the filter language accepts after a column of this
    /// kind, as completion offers them.
    pub fn operators(self) -> &'static [&'static str] {
        match self {
            Kind::Ip => &["=", "!=", "<<", "!<<", "IN (", "NOTIN ("],
            Kind::UInt { .. } | Kind::Int | Kind::Proto => &["=", "!=", "<", "<=", ">", ">=", "IN (", "NOTIN ("],
            Kind::Asn | Kind::Mac => &["=", "!=", "IN (", "NOTIN ("],
            Kind::Str => &["=", "!=", "LIKE", "ILIKE", "UNLIKE", "IUNLIKE", "IN (", "NOTIN ("],
            Kind::AsPath
            | Kind::UIntArray
            | Kind::Communities
            | Kind::LargeCommunities
            | Kind::EType
            | Kind::Direction
            | Kind::Boundary => &["=", "!="],
        }
    }
}

/// One column as the console sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleColumn {
    pub name: String,
    pub kind: Kind,
    /// Kept in `flows_1m`, `flows_5m` and `flows_1h`.
    pub consolidated: bool,
    /// Offered as a dimension to group by (not the time, counters or masks).
    pub dimension: bool,
}

/// Where a graph's rows come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The flows: `flows` (or `flows_segments`) and `flows_1m/5m/1h`.
    #[default]
    Flows,
    /// HAProxy's requests (`[haproxy] store`): `http_requests` and
    /// `http_requests_1m/5m/1h`.
    Http,
}

/// The enabled columns of one source, in table order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalogue {
    pub source: Source,
    pub columns: Vec<ConsoleColumn>,
    /// HTTP: the raw table's `int` column summed as the rollups' `bytes`,
    /// and the one their latency buckets count (`haproxy.store_bytes`,
    /// `store_latency`).
    pub bytes: Option<String>,
    pub latency: Option<String>,
}

/// Columns that are neither filters nor dimensions.
const NOT_FILTERABLE: &[&str] = &["TimeReceived", "FlowStart", "FlowEnd"];
/// Filterable, but not something to group by.
const NOT_DIMENSIONS: &[&str] = &["SamplingRate", "Bytes", "Packets", "PacketSize", "SrcNetMask", "DstNetMask"];

impl Catalogue {
    /// The console's view of the stored columns (`schema::stored_columns`),
    /// plus the raw table's `PacketSize` alias, and `Dst1stAS`, `Dst2ndAS`,
    /// `Dst3rdAS` where `DstASPath` is stored.
    pub fn new(stored: &[Column]) -> Catalogue {
        let mut columns: Vec<ConsoleColumn> = stored
            .iter()
            // Record ids are the store's plumbing: their names are the columns.
            .filter(|c| !NOT_FILTERABLE.contains(&c.name) && c.kind != ColumnType::RecordId)
            .map(|c| ConsoleColumn {
                name: c.name.to_string(),
                kind: kind_of(c),
                consolidated: c.consolidated,
                dimension: !NOT_DIMENSIONS.contains(&c.name),
            })
            .collect();
        columns.push(ConsoleColumn {
            name: "PacketSize".into(),
            kind: Kind::UInt { bits: 64 },
            consolidated: false,
            dimension: false,
        });
        // The raw table's aliases over the destination's AS path.
        if stored.iter().any(|c| c.name == "DstASPath") {
            columns.extend(weir_core::schema::PATH_ALIASES.iter().map(|name| ConsoleColumn {
                name: name.to_string(),
                kind: Kind::Asn,
                consolidated: false,
                dimension: true,
            }));
        }
        Catalogue { source: Source::Flows, columns, bytes: None, latency: None }
    }

    /// The console's view of HAProxy's `http_requests` (`[haproxy] store`):
    /// every column but the times, typed from the field list (strings,
    /// signed ints, addresses), `status_class` where the rollups have it;
    /// `consolidated` marks the rollups' dimensions. The `bytes` and
    /// latency columns are filters, not dimensions. A column whose name is
    /// not letters, digits and `_` (not starting with a digit) cannot be
    /// written in a filter and is left out.
    pub fn http(table: &HttpTable) -> Catalogue {
        let rollup = table.rollup.as_ref();
        let summed: Vec<usize> = rollup.map(|r| r.bytes.into_iter().chain(r.latency).collect()).unwrap_or_default();
        let mut columns: Vec<ConsoleColumn> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !matches!(c.kind, HttpType::DateTime | HttpType::DateTimeMs) && identifier(&c.name))
            .map(|(i, c)| ConsoleColumn {
                name: c.name.clone(),
                kind: match c.kind {
                    HttpType::Int64 => Kind::Int,
                    HttpType::Ip => Kind::Ip,
                    HttpType::UInt8 => Kind::UInt { bits: 8 },
                    _ => Kind::Str,
                },
                consolidated: rollup.is_some_and(|r| r.dims.contains(&i)),
                dimension: !summed.contains(&i),
            })
            .collect();
        if rollup.is_some_and(|r| r.status.is_some()) {
            let kind = Kind::UInt { bits: 8 };
            columns.push(ConsoleColumn { name: "status_class".into(), kind, consolidated: true, dimension: true });
        }
        let name = |i: Option<usize>| i.map(|i| table.columns[i].name.clone());
        Catalogue {
            source: Source::Http,
            columns,
            bytes: name(rollup.and_then(|r| r.bytes)),
            latency: name(rollup.and_then(|r| r.latency)),
        }
    }

    /// Adds a column (enrichment's, or a test's).
    pub fn with(mut self, name: &str, kind: Kind, consolidated: bool) -> Catalogue {
        self.columns.push(ConsoleColumn { name: name.into(), kind, consolidated, dimension: true });
        self
    }

    /// The column named `name`, matched case-insensitively.
    pub fn find(&self, name: &str) -> Option<&ConsoleColumn> {
        self.columns.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The column `name` stands for in the reverse direction: Src↔Dst,
    /// In↔Out (anywhere they start the name), when that column is enabled;
    /// otherwise `name` itself.
    pub fn counterpart<'a>(&'a self, name: &'a str) -> &'a str {
        let swapped = [("Src", "Dst"), ("Dst", "Src"), ("In", "Out"), ("Out", "In")]
            .iter()
            .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")));
        match swapped.and_then(|s| self.find(&s)) {
            Some(c) => &c.name,
            None => name,
        }
    }

    /// `value` (column `column`, or an expression of it) as text in SQL:
    /// addresses through `IPv6NumToString`, anything else `toString`.
    pub fn text_sql(&self, column: &str, value: &str) -> String {
        match self.find(column).map(|c| c.kind) {
            Some(Kind::Ip) => format!("IPv6NumToString({value})"),
            _ => format!("toString({value})"),
        }
    }

    /// The dimensions, in table order.
    pub fn dimensions(&self) -> impl Iterator<Item = &ConsoleColumn> {
        self.columns.iter().filter(|c| c.dimension)
    }
}

/// Letters, digits and `_`, not starting with a digit: a name the filter
/// language reads and SQL takes unquoted.
fn identifier(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn kind_of(c: &Column) -> Kind {
    match (c.name, c.kind) {
        ("SrcAS" | "DstAS", _) => Kind::Asn,
        ("DstASPath", _) => Kind::AsPath,
        ("DstCommunities" | "SrcCommunities", _) => Kind::Communities,
        (_, ColumnType::ArrayUInt128) => Kind::LargeCommunities,
        ("EType", _) => Kind::EType,
        ("Proto", _) => Kind::Proto,
        ("FlowDirection", _) => Kind::Direction,
        (_, ColumnType::Address) => Kind::Ip,
        (_, ColumnType::Mac) => Kind::Mac,
        (_, ColumnType::ArrayUInt32) => Kind::UIntArray,
        (_, ColumnType::UInt8) => Kind::UInt { bits: 8 },
        (_, ColumnType::UInt16) => Kind::UInt { bits: 16 },
        (_, ColumnType::UInt32) => Kind::UInt { bits: 32 },
        (_, ColumnType::UInt64 | ColumnType::DateTime | ColumnType::DateTimeMs | ColumnType::RecordId) => {
            Kind::UInt { bits: 64 }
        }
        (_, ColumnType::LowString) => Kind::Str,
        (_, ColumnType::Boundary) => Kind::Boundary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn everything() -> Catalogue {
        let all: Vec<Column> = weir_core::schema::catalog();
        Catalogue::new(&all)
    }

    #[test]
    fn kinds_counterparts_and_dimensions_follow_the_schema() {
        let c = everything();
        assert_eq!(c.find("srcaddr").unwrap().kind, Kind::Ip);
        assert_eq!(c.find("DSTAS").unwrap().kind, Kind::Asn);
        let first = c.find("Dst1stAS").unwrap();
        assert_eq!((first.kind, first.consolidated, first.dimension), (Kind::Asn, false, true), "raw table only");
        assert_eq!(c.counterpart("Dst2ndAS"), "Dst2ndAS");
        let without_path: Vec<Column> =
            weir_core::schema::catalog().into_iter().filter(|c| c.name != "DstASPath").collect();
        assert!(Catalogue::new(&without_path).find("Dst3rdAS").is_none());
        assert_eq!(c.find("SrcPort").unwrap().kind, Kind::UInt { bits: 16 });
        assert_eq!(c.find("DstMAC").unwrap().kind, Kind::Mac);
        assert!(c.find("TimeReceived").is_none());
        assert_eq!(c.counterpart("SrcAS"), "DstAS");
        assert_eq!(c.counterpart("InIfIndex"), "OutIfIndex");
        assert_eq!(c.counterpart("DstASPath"), "DstASPath", "no SrcASPath: kept");
        assert_eq!(c.counterpart("ExporterAddress"), "ExporterAddress");
        assert!(c.find("SrcAS").unwrap().consolidated && !c.find("SrcAddr").unwrap().consolidated);
        assert!(!c.dimensions().any(|d| d.name == "Bytes" || d.name == "SrcNetMask"));
        assert!(c.dimensions().any(|d| d.name == "SrcAddr"));
        // Enrichment's metadata columns, in every table.
        assert_eq!(c.find("InIfProvider").unwrap().kind, Kind::Str);
        assert_eq!(c.find("OutIfBoundary").unwrap().kind, Kind::Boundary);
        assert_eq!(c.counterpart("InIfName"), "OutIfName");
        assert!(c.find("ExporterName").unwrap().consolidated);
    }
}

#[cfg(test)]
mod http_tests {
    use super::*;

    #[test]
    fn http_columns_are_typed_from_the_field_list_and_the_rollups_mark_theirs() {
        let config = weir_core::config::HaproxyConfig { store: true, ..Default::default() };
        let c = Catalogue::http(&config.http_table());
        assert_eq!(c.source, Source::Http);
        let kind = |n: &str| c.find(n).map(|c| (c.kind, c.consolidated, c.dimension));
        assert_eq!(kind("status"), Some((Kind::Int, false, true)));
        assert_eq!(kind("status_class"), Some((Kind::UInt { bits: 8 }, true, true)));
        assert_eq!(kind("backend"), Some((Kind::Str, true, true)));
        assert_eq!(kind("request_method"), Some((Kind::Str, true, true)));
        assert_eq!(kind("request_uri"), Some((Kind::Str, false, true)));
        assert_eq!(kind("client_ip"), Some((Kind::Ip, false, true)));
        assert_eq!(kind("ta_ms"), Some((Kind::Int, false, false)), "the latency: a filter, not a dimension");
        assert_eq!(kind("bytes_read"), Some((Kind::Int, false, false)));
        assert_eq!(kind("facility"), Some((Kind::UInt { bits: 8 }, false, true)));
        assert_eq!((kind("time"), kind("time_ms"), kind("accept_ms")), (None, None, None), "times");
        assert_eq!((c.bytes.as_deref(), c.latency.as_deref()), (Some("bytes_read"), Some("ta_ms")));
        assert_eq!(c.counterpart("server"), "server");
        // Without the rollups: no status_class, nothing consolidated.
        let bare = Catalogue::http(&weir_core::httplog::HttpTable::new(config.format().fields(), 1));
        assert!(bare.find("status_class").is_none() && !bare.columns.iter().any(|c| c.consolidated));
        assert!(!identifier("1x") && !identifier("a-b") && identifier("a_1"));
    }
}
