//! The store's schema, defined once: every column of the raw flows table
//! with its smallest ClickHouse type, which columns are optional (off until
//! `store.optional_columns` names them), which survive into the consolidated
//! tables, the sort keys, partitions and TTLs, and the DDL for a given server.
//!
//! `Schema::new(settings, version)` picks the columns and the dialect;
//! `columns::Columns` holds flows in `Schema::columns` order and writes them
//! as Native blocks;
//! `migrate::plan` compares the schema with the live database.
//!
//! Degraded types are chosen so their bytes are the same as the modern
//! ones (`FixedString(16)` for `IPv6`, `UInt64` milliseconds for
//! `DateTime64(3)`, `String` for `LowCardinality(String)`): the same column
//! data goes to chDB 26 and to ClickHouse 18.16, only the type names in the
//! Native block headers differ (`columns::retype`).

use crate::enrich::networks::NetAttr;
use crate::flow::Field;

/// The name of the raw flows table.
pub const RAW_TABLE: &str = "flows";

/// The raw table's `merge_selector_base` (ClickHouse's default: 5).
pub const RAW_MERGE_SELECTOR_BASE: u32 = 10;

/// The table setting that caps the parts merges make.
pub const MERGE_CAP_SETTING: &str = "max_bytes_to_merge_at_max_space_in_pool";

/// The table setting under which (in bytes) a part is compact.
pub const WIDE_PART_SETTING: &str = "min_bytes_for_wide_part";

/// What a column holds on disk; the ClickHouse type depends on the dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    /// Seconds since the epoch, 4 bytes.
    DateTime,
    /// Milliseconds since the epoch, 8 bytes.
    DateTimeMs,
    /// 16 bytes, IPv4 mapped into IPv6.
    Address,
    /// A MAC address in the low 48 bits (Akvorado's representation).
    Mac,
    /// A list of 32-bit values (MPLS labels, AS path, communities).
    ArrayUInt32,
    /// A list of 128-bit values (large communities: `ASN << 64 | LD1 <<
    /// 32 | LD2`, Akvorado's representation); `Array(FixedString(16))`
    /// holding the same little-endian bytes where the server has no
    /// `UInt128`.
    ArrayUInt128,
    /// A string from enrichment: `LowCardinality(String)` (`String` on a
    /// server without it), written from records (`enrich::metadata`).
    LowString,
    /// An interface boundary: `Enum8` undefined/external/internal.
    Boundary,
    /// A metadata record's id (`UInt64`, a hash of the record: no codec
    /// helps it).
    RecordId,
}

/// Where a column's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A field of the decoded flow.
    Flow(Field),
    /// An attribute of the flow's exporter (`enrich::metadata`).
    Exporter(ExporterAttr),
    /// An attribute of the flow's input or output interface.
    InIf(IfAttr),
    OutIf(IfAttr),
    /// An attribute of the network holding the flow's source or
    /// destination address (`enrich::networks`).
    SrcNet(NetAttr),
    DstNet(NetAttr),
    /// The id of the row's exporter (0), input (1) or output (2) interface
    /// record, or its source (3) or destination (4) network's record: what
    /// the raw table stores of the metadata.
    RecordId(usize),
    /// An attribute of the BGP route of the flow's source or destination
    /// (`enrich::rib`) that no flow field carries.
    SrcRoute(RouteAttr),
    DstRoute(RouteAttr),
}

/// A BGP route attribute, as a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAttr {
    Communities,
    LargeCommunities,
}

/// The raw table's route columns that no flow field carries: (name,
/// source, type, optional). Akvorado's, which keeps the source's off by
/// default.
pub const ROUTE_COLUMNS: [(&str, Source, ColumnType, bool); 3] = [
    ("SrcCommunities", Source::SrcRoute(RouteAttr::Communities), ColumnType::ArrayUInt32, true),
    ("DstLargeCommunities", Source::DstRoute(RouteAttr::LargeCommunities), ColumnType::ArrayUInt128, false),
    ("SrcLargeCommunities", Source::SrcRoute(RouteAttr::LargeCommunities), ColumnType::ArrayUInt128, true),
];

impl Source {
    /// Which of a row's records a metadata column reads: 0 its exporter's,
    /// 1 its input interface's, 2 its output interface's (`Meta`'s order),
    /// 3 and 4 its source and destination networks'; None for a flow
    /// field and a record id.
    pub fn record(self) -> Option<usize> {
        match self {
            Source::Flow(_) | Source::RecordId(_) | Source::SrcRoute(_) | Source::DstRoute(_) => None,
            Source::Exporter(_) => Some(0),
            Source::InIf(_) => Some(1),
            Source::OutIf(_) => Some(2),
            Source::SrcNet(_) => Some(3),
            Source::DstNet(_) => Some(4),
        }
    }

    /// A network attribute's side and attribute.
    pub fn network(self) -> Option<(usize, NetAttr)> {
        match self {
            Source::SrcNet(a) => Some((0, a)),
            Source::DstNet(a) => Some((1, a)),
            _ => None,
        }
    }
}

/// An exporter attribute, as a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExporterAttr {
    Name,
    Group,
    Role,
    Site,
    Region,
    Tenant,
}

/// An interface attribute, as a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfAttr {
    Name,
    Description,
    Speed,
    Provider,
    Connectivity,
    Boundary,
}

/// The metadata columns: (name, source, kind), each consolidated.
pub const METADATA_COLUMNS: [(&str, Source, ColumnType); 18] = {
    use ColumnType::{Boundary as B, LowString as S, UInt32 as U};
    use ExporterAttr as E;
    use IfAttr as I;
    use Source::{Exporter, InIf, OutIf};
    [
        ("ExporterName", Exporter(E::Name), S),
        ("ExporterGroup", Exporter(E::Group), S),
        ("ExporterRole", Exporter(E::Role), S),
        ("ExporterSite", Exporter(E::Site), S),
        ("ExporterRegion", Exporter(E::Region), S),
        ("ExporterTenant", Exporter(E::Tenant), S),
        ("InIfName", InIf(I::Name), S),
        ("OutIfName", OutIf(I::Name), S),
        ("InIfDescription", InIf(I::Description), S),
        ("OutIfDescription", OutIf(I::Description), S),
        ("InIfSpeed", InIf(I::Speed), U),
        ("OutIfSpeed", OutIf(I::Speed), U),
        ("InIfProvider", InIf(I::Provider), S),
        ("OutIfProvider", OutIf(I::Provider), S),
        ("InIfConnectivity", InIf(I::Connectivity), S),
        ("OutIfConnectivity", OutIf(I::Connectivity), S),
        ("InIfBoundary", InIf(I::Boundary), B),
        ("OutIfBoundary", OutIf(I::Boundary), B),
    ]
};

/// The network columns: (name, source, kind), each consolidated. The
/// names are Akvorado's.
pub const NET_COLUMNS: [(&str, Source, ColumnType); 16] = {
    use ColumnType::LowString as S;
    use NetAttr as N;
    use Source::{DstNet, SrcNet};
    [
        ("SrcNetName", SrcNet(N::Name), S),
        ("DstNetName", DstNet(N::Name), S),
        ("SrcNetRole", SrcNet(N::Role), S),
        ("DstNetRole", DstNet(N::Role), S),
        ("SrcNetSite", SrcNet(N::Site), S),
        ("DstNetSite", DstNet(N::Site), S),
        ("SrcNetRegion", SrcNet(N::Region), S),
        ("DstNetRegion", DstNet(N::Region), S),
        ("SrcNetTenant", SrcNet(N::Tenant), S),
        ("DstNetTenant", DstNet(N::Tenant), S),
        ("SrcCountry", SrcNet(N::Country), S),
        ("DstCountry", DstNet(N::Country), S),
        ("SrcGeoState", SrcNet(N::State), S),
        ("DstGeoState", DstNet(N::State), S),
        ("SrcGeoCity", SrcNet(N::City), S),
        ("DstGeoCity", DstNet(N::City), S),
    ]
};

/// Aliases of the raw table for the first, second and third AS of the
/// destination's AS path (`Schema::derived_aliases`), where `DstASPath` is
/// stored: the first is the neighbour the traffic leaves through, the
/// second and third the networks behind it.
pub const PATH_ALIASES: [&str; 3] = ["Dst1stAS", "Dst2ndAS", "Dst3rdAS"];

/// The raw table's record id columns: (name, record), in `Meta`'s order,
/// then the networks'.
pub const RECORD_COLUMNS: [(&str, usize); 5] =
    [("ExporterRecord", 0), ("InIfRecord", 1), ("OutIfRecord", 2), ("SrcNetRecord", 3), ("DstNetRecord", 4)];

/// The tables of metadata records the raw table's ids point into:
/// `exporter_records` (`ExporterName`, `ExporterGroup`, ... by `Id`),
/// `interface_records` (`IfName`, `IfDescription`, ...: the interface
/// columns without `In`) and `network_records` (`NetName`, `Country`,
/// `GeoCity`, ...: the network columns without `Src`), `Join` tables the
/// alias columns read with `joinGet`. Index 0 for the exporter's, 1 for
/// an interface's, 2 for a network's.
pub const RECORD_TABLES: [&str; 3] = ["exporter_records", "interface_records", "network_records"];

/// The records table of record kind `record` (`Source::record`).
pub fn records_table_of(record: usize) -> usize {
    match record {
        0 => 0,
        1 | 2 => 1,
        _ => 2,
    }
}

/// A metadata column's name in its records table.
pub fn record_column_name(name: &str) -> &str {
    ["In", "Out", "Src", "Dst"].iter().find_map(|p| name.strip_prefix(p)).unwrap_or(name)
}

/// The metadata columns of records table `table` (0 exporters, 1
/// interfaces): (name in the records table, the attribute, kind), in
/// table order (an interface's attributes as the input side names them).
pub fn record_table_columns(table: usize) -> Vec<(&'static str, Source, ColumnType)> {
    METADATA_COLUMNS
        .iter()
        .chain(NET_COLUMNS.iter())
        .filter(|(_, source, _)| match table {
            0 => matches!(source, Source::Exporter(_)),
            1 => matches!(source, Source::InIf(_)),
            _ => matches!(source, Source::SrcNet(_)),
        })
        .map(|&(name, source, kind)| (record_column_name(name), source, kind))
        .collect()
}

/// One column of the raw table: stored, or (a metadata column) an alias
/// that reads its record (`Column::stored`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub source: Source,
    pub kind: ColumnType,
    /// Off by default; switched on by naming it in `store.optional_columns`.
    pub optional: bool,
    /// A dimension kept in the 1 min / 5 min / 1 h tables.
    pub consolidated: bool,
}

impl Column {
    /// Whether the raw table stores it (and a raw block carries it): every
    /// column but the metadata ones, which the raw table reads from the
    /// records its `RecordId` columns point to; the consolidated tables
    /// store them.
    pub fn stored(&self) -> bool {
        self.source.record().is_none()
    }
}

/// Every column the flow record can fill, in table order. `Field::column`
/// gives the same names (a test checks it).
pub fn catalog() -> Vec<Column> {
    use ColumnType::*;
    use Field as F;
    // (field, type, optional, consolidated)
    let rows: &[(Field, ColumnType, bool, bool)] = &[
        (F::TimeReceived, DateTime, false, false),
        (F::SamplingRate, UInt32, false, false),
        (F::ExporterAddress, Address, false, true),
        (F::ObservationDomain, UInt32, true, true),
        (F::FlowStart, DateTimeMs, true, false),
        (F::FlowEnd, DateTimeMs, true, false),
        (F::InIfIndex, UInt32, false, true),
        (F::OutIfIndex, UInt32, false, true),
        (F::InIfPhysicalIndex, UInt32, true, false),
        (F::OutIfPhysicalIndex, UInt32, true, false),
        (F::SrcAddr, Address, false, false),
        (F::DstAddr, Address, false, false),
        (F::SrcNetMask, UInt8, false, false),
        (F::DstNetMask, UInt8, false, false),
        (F::SrcAS, UInt32, false, true),
        (F::DstAS, UInt32, false, true),
        (F::NextHop, Address, true, false),
        (F::BGPNextHop, Address, true, false),
        (F::EType, UInt16, false, true),
        (F::Proto, UInt8, false, true),
        (F::SrcPort, UInt16, false, false),
        (F::DstPort, UInt16, false, false),
        (F::Bytes, UInt64, false, false),
        (F::Packets, UInt64, false, false),
        (F::ForwardingStatus, UInt8, false, true),
        (F::FlowDirection, UInt8, true, true),
        (F::TCPFlags, UInt16, true, false),
        (F::SrcAddrNAT, Address, true, false),
        (F::DstAddrNAT, Address, true, false),
        (F::SrcPortNAT, UInt16, true, false),
        (F::DstPortNAT, UInt16, true, false),
        (F::SrcMAC, Mac, true, false),
        (F::DstMAC, Mac, true, false),
        (F::SrcVlan, UInt16, true, true),
        (F::DstVlan, UInt16, true, true),
        (F::IPTTL, UInt8, true, false),
        (F::IPTos, UInt8, true, false),
        (F::IPFragmentID, UInt32, true, false),
        (F::IPFragmentOffset, UInt16, true, false),
        (F::IPv6FlowLabel, UInt32, true, false),
        (F::ICMPv4Type, UInt8, true, false),
        (F::ICMPv4Code, UInt8, true, false),
        (F::ICMPv6Type, UInt8, true, false),
        (F::ICMPv6Code, UInt8, true, false),
        (F::IngressVRFID, UInt32, true, true),
        (F::EgressVRFID, UInt32, true, true),
        (F::MPLSLabels, ArrayUInt32, true, false),
        (F::DstASPath, ArrayUInt32, false, false),
        (F::DstCommunities, ArrayUInt32, false, false),
    ];
    rows.iter()
        .map(|&(field, kind, optional, consolidated)| Column {
            name: field.column(),
            source: Source::Flow(field),
            kind,
            optional,
            consolidated,
        })
        .chain(ROUTE_COLUMNS.iter().map(|&(name, source, kind, optional)| Column {
            name,
            source,
            kind,
            optional,
            consolidated: false,
        }))
        .chain(RECORD_COLUMNS.iter().map(|&(name, record)| Column {
            name,
            source: Source::RecordId(record),
            kind: ColumnType::RecordId,
            optional: false,
            consolidated: false,
        }))
        .chain(METADATA_COLUMNS.iter().chain(NET_COLUMNS.iter()).map(|&(name, source, kind)| Column {
            name,
            source,
            kind,
            optional: false,
            consolidated: true,
        }))
        .collect()
}

/// The names of the optional columns, for error messages and the README.
pub fn optional_column_names() -> Vec<&'static str> {
    catalog().into_iter().filter(|c| c.optional).map(|c| c.name).collect()
}

/// A ClickHouse server version, `major.minor.patch...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion(pub u32, pub u32);

impl ServerVersion {
    /// Parses `SELECT version()` output (`26.7.2.1`, `18.16.1`).
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(ServerVersion(major, minor))
    }
}

/// What the server's DDL can say. Each flag is the release that brought it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dialect {
    /// `IPv6` domain type (19.3); otherwise `FixedString(16)`, same bytes.
    pub ipv6: bool,
    /// Table and column `TTL` (19.6); otherwise data is kept until dropped by hand.
    pub ttl: bool,
    /// Column compression codecs (19.11 for DoubleDelta with LZ4 chains).
    pub codecs: bool,
    /// `DateTime64` (20.1); otherwise `UInt64` milliseconds, same bytes.
    pub datetime64: bool,
    /// `ALTER ... MODIFY ORDER BY` when adding a consolidated dimension (19.1).
    pub modify_order_by: bool,
    /// The `ttl_only_drop_parts` table setting (and `MODIFY SETTING`). From
    /// the version, 20.3; the migration asks the server instead
    /// (`with_merge_tree_settings`).
    pub ttl_only_drop_parts: bool,
    /// The `merge_selector_base` table setting; the migration asks the server.
    pub merge_selector_base: bool,
    /// `max_bytes_to_merge_at_max_space_in_pool` as a table setting that
    /// `MODIFY SETTING` can change (with `ttl_only_drop_parts`, 20.3); the
    /// migration asks the server.
    pub merge_cap: bool,
    /// `min_bytes_for_wide_part` as a table setting that `MODIFY SETTING`
    /// can change (compact parts came in 20.3); the migration asks the
    /// server.
    pub compact_parts: bool,
    /// `LowCardinality(String)` without an experimental setting (19.0);
    /// otherwise `String` (`columns::retype` expands the dictionaries).
    pub low_cardinality: bool,
    /// `joinGet('db.table', ...)` in a column's `ALIAS` (20.1 taken as the
    /// bound; 18.16 resolves the table in the query's current database,
    /// and a table whose alias names none cannot be loaded at start):
    /// the raw table's metadata columns read the records tables. Without
    /// it the raw table keeps the record ids only.
    pub join_get: bool,
    /// `UInt128` without an experimental setting (21.7); otherwise
    /// `FixedString(16)`, same bytes.
    pub uint128: bool,
}

impl Dialect {
    pub fn for_version(v: ServerVersion) -> Dialect {
        Dialect {
            ipv6: v >= ServerVersion(19, 3),
            ttl: v >= ServerVersion(19, 6),
            codecs: v >= ServerVersion(19, 11),
            datetime64: v >= ServerVersion(20, 1),
            modify_order_by: v >= ServerVersion(19, 1),
            ttl_only_drop_parts: v >= ServerVersion(20, 3),
            merge_selector_base: v >= ServerVersion(25, 1),
            merge_cap: v >= ServerVersion(20, 3),
            compact_parts: v >= ServerVersion(20, 3),
            low_cardinality: v >= ServerVersion(19, 1),
            join_get: v >= ServerVersion(20, 1),
            uint128: v >= ServerVersion(21, 7),
        }
    }

    /// The dialect with the table settings the server lists in
    /// `system.merge_tree_settings` (`names`), whatever its version says.
    pub fn with_merge_tree_settings(mut self, names: &[String]) -> Dialect {
        let has = |n: &str| names.iter().any(|m| m == n);
        self.ttl_only_drop_parts = self.ttl && has("ttl_only_drop_parts");
        self.merge_selector_base = has("merge_selector_base");
        self.merge_cap = self.ttl_only_drop_parts && has(MERGE_CAP_SETTING);
        self.compact_parts = self.ttl_only_drop_parts && has(WIDE_PART_SETTING);
        self
    }

    /// What an operator loses on this server, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.ipv6 {
            w.push("server has no IPv6 type: addresses are FixedString(16) (use IPv6NumToString to read them)".into());
        }
        if !self.ttl {
            w.push(
                "server has no TTL: flows and consolidated tables are never expired; drop old partitions by hand"
                    .into(),
            );
        }
        if self.ttl && !self.ttl_only_drop_parts {
            w.push("server has no ttl_only_drop_parts: expiry rewrites the parts that keep rows".into());
        }
        if !self.low_cardinality {
            w.push("server has no LowCardinality: enrichment's strings are plain String columns".into());
        }
        if !self.join_get {
            w.push(
                "server has no joinGet with a database: the raw table keeps record ids (ExporterRecord, InIfRecord, \
                 OutIfRecord, SrcNetRecord, DstNetRecord) without the names, and no SrcNetPrefix/DstNetPrefix; the \
                 consolidated tables keep the names"
                    .into(),
            );
        }
        if !self.uint128 {
            w.push(
                "server has no UInt128: large communities are FixedString(16), little-endian \
                 (reinterpretAsUInt128 on a newer server reads them)"
                    .into(),
            );
        }
        if !self.codecs {
            w.push("server has no compression codecs: columns use the server's default compression".into());
        }
        if !self.datetime64 {
            w.push("server has no DateTime64: FlowStart/FlowEnd are UInt64 milliseconds".into());
        }
        if !self.modify_order_by {
            w.push(
                "server cannot extend a sort key: enabling a consolidated dimension adds it as a plain column".into(),
            );
        }
        w
    }

    /// The ClickHouse type of `kind`.
    pub fn type_name(&self, kind: ColumnType) -> &'static str {
        match kind {
            ColumnType::UInt8 => "UInt8",
            ColumnType::UInt16 => "UInt16",
            ColumnType::UInt32 => "UInt32",
            ColumnType::UInt64 | ColumnType::Mac | ColumnType::RecordId => "UInt64",
            ColumnType::DateTime => "DateTime",
            ColumnType::DateTimeMs if self.datetime64 => "DateTime64(3)",
            ColumnType::DateTimeMs => "UInt64",
            ColumnType::Address if self.ipv6 => "IPv6",
            ColumnType::Address => "FixedString(16)",
            ColumnType::ArrayUInt32 => "Array(UInt32)",
            ColumnType::ArrayUInt128 if self.uint128 => "Array(UInt128)",
            ColumnType::ArrayUInt128 => "Array(FixedString(16))",
            ColumnType::LowString if self.low_cardinality => "LowCardinality(String)",
            ColumnType::LowString => "String",
            ColumnType::Boundary => BOUNDARY_TYPE,
        }
    }
}

/// The boundary's type: Akvorado's names and values.
pub const BOUNDARY_TYPE: &str = "Enum8('undefined' = 0, 'external' = 1, 'internal' = 2)";

/// One consolidated table: its name, bucket function and time to live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consolidation {
    /// `flows_1m`, `flows_5m`, `flows_1h`.
    pub table: &'static str,
    /// ClickHouse function rounding TimeReceived down to the bucket.
    pub bucket: &'static str,
    pub ttl_hours: u32,
}

/// What the operator chooses (from `[store]` in the config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaSettings {
    pub database: String,
    /// Optional columns to store, by name.
    pub optional_columns: Vec<String>,
    pub ttl_raw_hours: u32,
    pub ttl_1m_hours: u32,
    pub ttl_5m_hours: u32,
    pub ttl_1h_hours: u32,
    /// Expire whole parts only (`ttl_only_drop_parts = 1`): no rewrite of
    /// the rows that stay, at the price of keeping a part until its newest
    /// row expires (at most one partition longer: a day, a month for flows_1h).
    pub ttl_only_drop_parts: bool,
    /// The largest part merges make in the raw table, in bytes
    /// (`max_bytes_to_merge_at_max_space_in_pool`); 0: the engine's own.
    pub raw_part_bytes_max: u64,
    /// The consolidated tables' parts under this size are compact
    /// (`min_bytes_for_wide_part`); 0: the engine's own.
    pub consolidated_wide_part_bytes: u64,
    /// HAProxy's requests' table (`[haproxy] store = true`).
    pub http: Option<crate::httplog::HttpTable>,
    /// The ClickHouse cluster the tables are made on (`crate::cluster`).
    pub cluster: Option<String>,
}

/// The schema for one server: the columns in insert order and the dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    /// The server the dialect was chosen for.
    pub version: ServerVersion,
    pub database: String,
    pub columns: Vec<Column>,
    pub dialect: Dialect,
    pub ttl_raw_hours: u32,
    pub consolidations: Vec<Consolidation>,
    /// `SchemaSettings::ttl_only_drop_parts`, where the server can.
    pub ttl_only_drop_parts: bool,
    /// `SchemaSettings::raw_part_bytes_max`.
    pub raw_part_bytes_max: u64,
    /// `SchemaSettings::consolidated_wide_part_bytes`.
    pub consolidated_wide_part_bytes: u64,
    pub http: Option<crate::httplog::HttpTable>,
    pub cluster: Option<String>,
}

impl Schema {
    /// The columns switched on by `settings`. Unknown names are refused by
    /// the config check (`unknown_optional_columns`), so none are here.
    pub fn new(settings: &SchemaSettings, version: ServerVersion) -> Schema {
        let columns = stored_columns(settings);
        let consolidations = vec![
            Consolidation { table: "flows_1m", bucket: "toStartOfMinute", ttl_hours: settings.ttl_1m_hours },
            Consolidation { table: "flows_5m", bucket: "toStartOfFiveMinute", ttl_hours: settings.ttl_5m_hours },
            Consolidation { table: "flows_1h", bucket: "toStartOfHour", ttl_hours: settings.ttl_1h_hours },
        ];
        Schema {
            version,
            database: settings.database.clone(),
            columns,
            dialect: Dialect::for_version(version),
            ttl_raw_hours: settings.ttl_raw_hours,
            consolidations,
            ttl_only_drop_parts: settings.ttl_only_drop_parts,
            raw_part_bytes_max: settings.raw_part_bytes_max,
            consolidated_wide_part_bytes: settings.consolidated_wide_part_bytes,
            http: settings.http.clone(),
            cluster: settings.cluster.clone(),
        }
    }

    /// The statement every batch is sent with; the Native blocks follow it.
    pub fn insert_sql(&self) -> String {
        insert_sql(&self.database, &self.column_names())
    }

    /// The raw table's stored columns' names: what an insert names.
    pub fn column_names(&self) -> Vec<&'static str> {
        self.columns.iter().filter(|c| c.stored()).map(|c| c.name).collect()
    }

    /// The raw table's columns an insert writes, in table order.
    pub fn stored_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.stored())
    }

    /// A metadata column of the raw table: an alias reading the record
    /// its row's id points to (the exporter's address as its name when it
    /// has no record yet: the name a shard gives an unknown exporter).
    /// None where the server cannot (`Dialect::join_get`).
    pub fn metadata_alias(&self, c: &Column) -> Option<String> {
        let expression = self.metadata_expression(c)?;
        Some(format!("{} {} ALIAS {expression}", c.name, self.dialect.type_name(c.kind)))
    }

    /// The expression `metadata_alias` gives metadata column `c`.
    pub fn metadata_expression(&self, c: &Column) -> Option<String> {
        if !self.dialect.join_get {
            return None;
        }
        let (table, id) = match c.source {
            Source::Exporter(_) => (RECORD_TABLES[0], RECORD_COLUMNS[0].0),
            Source::InIf(_) => (RECORD_TABLES[1], RECORD_COLUMNS[1].0),
            Source::OutIf(_) => (RECORD_TABLES[1], RECORD_COLUMNS[2].0),
            Source::SrcNet(_) => (RECORD_TABLES[2], RECORD_COLUMNS[3].0),
            Source::DstNet(_) => (RECORD_TABLES[2], RECORD_COLUMNS[4].0),
            Source::Flow(_) | Source::RecordId(_) | Source::SrcRoute(_) | Source::DstRoute(_) => return None,
        };
        let get = format!("joinGet('{}.{table}', '{}', {id})", self.database, record_column_name(c.name));
        Some(if c.source == Source::Exporter(ExporterAttr::Name) {
            format!("if({id} = 0, {}, {get})", address_name("ExporterAddress"))
        } else {
            get
        })
    }

    /// The raw table's alias columns computed from its stored ones:
    /// (name, type, definition).
    /// - `SrcNetPrefix` and `DstNetPrefix`: the address cut to its mask,
    ///   as text (`192.0.2.0/24`, `2001:db8::/32`), for IPv4 and IPv6
    ///   flows; not where the server lacks `IPv6CIDRToRange` (taken with
    ///   `Dialect::join_get`: 20.1).
    /// - `Dst1stAS`, `Dst2ndAS`, `Dst3rdAS` (`PATH_ALIASES`): the first
    ///   three AS numbers of `DstASPath` (0 past its end), when it is stored.
    pub fn derived_aliases(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut aliases = Vec::new();
        if self.dialect.join_get {
            for (name, addr, mask) in
                [("SrcNetPrefix", "SrcAddr", "SrcNetMask"), ("DstNetPrefix", "DstAddr", "DstNetMask")]
            {
                let v4 = format!(
                    "concat(replaceRegexpOne(IPv6NumToString(tupleElement(IPv6CIDRToRange({addr}, toUInt8(96 + least({mask}, 32))), 1)), '^::ffff:', ''), '/', toString({mask}))"
                );
                let v6 = format!(
                    "concat(IPv6NumToString(tupleElement(IPv6CIDRToRange({addr}, least({mask}, 128)), 1)), '/', toString({mask}))"
                );
                aliases.push((
                    name,
                    "String",
                    format!("{name} String ALIAS multiIf(EType = 2048, {v4}, EType = 34525, {v6}, '')"),
                ));
            }
        }
        if self.columns.iter().any(|c| c.source == Source::Flow(Field::DstASPath)) {
            for (i, name) in PATH_ALIASES.iter().enumerate() {
                aliases.push((name, "UInt32", format!("{name} UInt32 ALIAS DstASPath[{}]", i + 1)));
            }
        }
        aliases
    }

    /// `CREATE TABLE` of records table `table` (`RECORD_TABLES`): a `Join`
    /// table by `Id`, held in memory by the engine and on disk for its
    /// restarts; `ANY`, so the first row of an id stays (an id is a hash
    /// of its record: a second row of it says the same).
    pub fn create_records_table(&self, table: usize) -> String {
        let mut cols = vec!["Id UInt64".to_string()];
        cols.extend(record_table_columns(table).iter().map(|(n, _, k)| format!("{n} {}", self.dialect.type_name(*k))));
        format!(
            "CREATE TABLE IF NOT EXISTS {}.{} (\n  {}\n) ENGINE = Join(ANY, LEFT, Id)",
            self.database,
            RECORD_TABLES[table],
            cols.join(",\n  ")
        )
    }

    /// `INSERT INTO db.<records table> (Id, ...) FORMAT Native`.
    pub fn records_insert_sql(&self, table: usize) -> String {
        records_insert_sql(&self.database, table)
    }

    /// A column's definition: name, type, codec.
    pub fn column_definition(&self, c: &Column) -> String {
        let mut def = format!("{} {}", c.name, self.dialect.type_name(c.kind));
        if self.dialect.codecs {
            match c.kind {
                ColumnType::DateTime => def.push_str(" CODEC(DoubleDelta, LZ4)"),
                ColumnType::UInt64 => def.push_str(" CODEC(T64, LZ4)"),
                _ => {}
            }
        }
        def
    }

    /// `CREATE TABLE` of the raw table.
    pub fn create_raw_table(&self) -> String {
        let mut columns: Vec<String> = self.stored_columns().map(|c| self.column_definition(c)).collect();
        // Alias columns cost nothing on disk and spare the console the arithmetic.
        columns.push("PacketSize UInt64 ALIAS intDiv(Bytes, greatest(Packets, 1))".into());
        columns.extend(self.columns.iter().filter_map(|c| self.metadata_alias(c)));
        columns.extend(self.derived_aliases().into_iter().map(|(_, _, definition)| definition));
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{RAW_TABLE} (\n  {cols}\n) ENGINE = MergeTree\n\
             PARTITION BY toYYYYMMDD(TimeReceived)\nORDER BY (TimeReceived, ExporterAddress, InIfIndex, OutIfIndex){ttl}{settings}",
            db = self.database,
            cols = columns.join(",\n  "),
            ttl = self.ttl_clause(self.ttl_raw_hours),
            settings = self.settings_clause(true),
        )
    }

    /// ` TTL ...` (with its leading newline), empty when the server has none.
    pub fn ttl_clause(&self, hours: u32) -> String {
        if self.dialect.ttl {
            format!("\n{}", self.ttl_expression(hours))
        } else {
            String::new()
        }
    }

    /// ` SETTINGS ...` of a table (with the leading newline); empty when
    /// the server takes none of Weir's.
    pub fn settings_clause(&self, raw: bool) -> String {
        let settings: Vec<String> = self.table_settings(raw).iter().map(|(n, v)| format!("{n} = {v}")).collect();
        if settings.is_empty() {
            String::new()
        } else {
            format!("\nSETTINGS {}", settings.join(", "))
        }
    }

    /// The table settings Weir chooses, as the server prints them back, for
    /// the raw table (`raw`) or a consolidated one; each needs the server to
    /// have it (perf/RESULTS.md, "Expiry and merges", measured both):
    /// - `ttl_only_drop_parts`: whole parts are dropped, not rewritten
    ///   without their expired rows (about 4 rewrites per expired row otherwise);
    /// - `merge_selector_base` (raw table only): merges wait for more parts
    ///   of a size, so each row is rewritten fewer times (1.09 vs 1.74 rows
    ///   merged per row inserted over 100 one-million-row inserts, 15 % less
    ///   CPU), for more parts per partition (20 vs 10: queries on the raw
    ///   table 11 % slower; 20 would save 24 % for 23 % slower queries);
    /// - `max_bytes_to_merge_at_max_space_in_pool` (raw table only,
    ///   `raw_part_bytes_max`): merges stop at parts of that size, so a
    ///   row is rewritten about log10(cap / insert) times instead of
    ///   log10(partition / insert) ("merges in steady state": 2.5 → 1.0
    ///   rewrites with a cap at 1 % of the partition);
    /// - `min_bytes_for_wide_part` (consolidated tables only, when
    ///   `consolidated_wide_part_bytes` is set; off by default): their parts
    ///   stay compact, one file for all columns. A SummingMergeTree merges
    ///   every column at once (never column by column), with a write buffer
    ///   per file: 217–225 MiB per merge of wide parts against 25–28 MiB of
    ///   compact ones, for the same CPU, but the console's queries over
    ///   them 1.2–1.35× slower (perf/RESULTS.md, 2026-12-04).
    pub fn table_settings(&self, raw: bool) -> Vec<(&'static str, String)> {
        let mut settings = Vec::new();
        if self.dialect.ttl && self.dialect.ttl_only_drop_parts {
            settings.push(("ttl_only_drop_parts", u8::from(self.ttl_only_drop_parts).to_string()));
        }
        if raw && self.dialect.merge_selector_base {
            settings.push(("merge_selector_base", RAW_MERGE_SELECTOR_BASE.to_string()));
        }
        if raw && self.dialect.merge_cap && self.raw_part_bytes_max > 0 {
            settings.push((MERGE_CAP_SETTING, self.raw_part_bytes_max.to_string()));
        }
        if !raw && self.dialect.compact_parts && self.consolidated_wide_part_bytes > 0 {
            settings.push((WIDE_PART_SETTING, self.consolidated_wide_part_bytes.to_string()));
        }
        settings
    }

    /// The TTL as the server prints it back in `create_table_query`.
    pub fn ttl_expression(&self, hours: u32) -> String {
        format!("TTL TimeReceived + toIntervalHour({hours})")
    }

    /// The dimensions of the consolidated tables, in key order.
    pub fn dimensions(&self) -> Vec<&Column> {
        self.columns.iter().filter(|c| c.consolidated).collect()
    }

    /// `CREATE TABLE` of a consolidated table: sums of bytes, packets and
    /// flows, scaled up by the sampling rate, per bucket and dimension.
    pub fn create_consolidated_table(&self, c: &Consolidation) -> String {
        let dims = self.dimensions();
        let mut cols: Vec<String> = vec![if self.dialect.codecs {
            "TimeReceived DateTime CODEC(DoubleDelta, LZ4)".to_string()
        } else {
            "TimeReceived DateTime".to_string()
        }];
        cols.extend(dims.iter().map(|d| format!("{} {}", d.name, self.dialect.type_name(d.kind))));
        cols.extend(["Bytes UInt64", "Packets UInt64", "Flows UInt64"].map(String::from));
        let key: Vec<&str> = std::iter::once("TimeReceived").chain(dims.iter().map(|d| d.name)).collect();
        let partition = if c.table == "flows_1h" { "toYYYYMM(TimeReceived)" } else { "toYYYYMMDD(TimeReceived)" };
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} (\n  {cols}\n) ENGINE = SummingMergeTree((Bytes, Packets, Flows))\n\
             PARTITION BY {partition}\nORDER BY ({key}){ttl}{settings}",
            db = self.database,
            table = c.table,
            cols = cols.join(",\n  "),
            key = key.join(", "),
            ttl = self.ttl_clause(c.ttl_hours),
            settings = self.settings_clause(false),
        )
    }

    /// What the consolidated table holds, as a query over the raw table:
    /// the SELECT the materialized views ran before Weir summed in the
    /// shards (`consolidate`), kept as the reference the tests compare
    /// with (its buckets in the server's time zone: UTC in the tests).
    ///
    /// A server without the raw table's metadata aliases (`Dialect::
    /// join_get`) gets what a collector without providers stores instead:
    /// exporters named by their address, the rest empty.
    pub fn consolidation_select(&self, c: &Consolidation) -> String {
        let dims: Vec<&str> = self.dimensions().iter().map(|d| d.name).collect();
        let selected: Vec<String> = self
            .dimensions()
            .iter()
            .map(|d| match d.source {
                _ if d.stored() || self.dialect.join_get => d.name.to_string(),
                Source::Exporter(ExporterAttr::Name) => format!("{} AS {}", address_name("ExporterAddress"), d.name),
                _ => format!("CAST(0 AS {}) AS {}", self.dialect.type_name(d.kind), d.name)
                    .replace("CAST(0 AS String)", "''")
                    .replace("CAST(0 AS LowCardinality(String))", "''"),
            })
            .collect();
        let rate = "toUInt64(greatest(SamplingRate, 1))";
        format!(
            "SELECT {bucket}(TimeReceived) AS TimeReceived, {selected}, sum(Bytes * {rate}) AS Bytes, \
             sum(Packets * {rate}) AS Packets, count() AS Flows FROM {db}.{RAW_TABLE} GROUP BY TimeReceived, {dims}",
            selected = selected.join(", "),
            dims = dims.join(", "),
            bucket = c.bucket,
            db = self.database,
        )
    }

    /// The statement a shard's summed rows for `c` are inserted with.
    pub fn consolidated_insert_sql(&self, c: &Consolidation) -> String {
        consolidated_insert_sql(&self.database, c.table, &self.dimensions().iter().map(|d| d.name).collect::<Vec<_>>())
    }
}

/// `INSERT INTO db.table (TimeReceived, dims..., Bytes, Packets, Flows)
/// FORMAT Native` for a consolidated table.
pub fn consolidated_insert_sql(database: &str, table: &str, dims: &[&str]) -> String {
    let mut columns = vec!["TimeReceived"];
    columns.extend_from_slice(dims);
    columns.extend(["Bytes", "Packets", "Flows"]);
    format!("INSERT INTO {database}.{table} ({}) FORMAT Native", columns.join(", "))
}

/// `INSERT INTO db.<records table> (Id, ...) FORMAT Native` for records
/// table `table` (`RECORD_TABLES`).
pub fn records_insert_sql(database: &str, table: usize) -> String {
    let mut columns = vec!["Id"];
    columns.extend(record_table_columns(table).iter().map(|(n, _, _)| *n));
    format!("INSERT INTO {database}.{} ({}) FORMAT Native", RECORD_TABLES[table], columns.join(", "))
}

/// An address column as a name: IPv4 dotted (out of its IPv6 mapping),
/// IPv6 as ClickHouse prints it.
pub fn address_name(column: &str) -> String {
    format!("replaceRegexpOne(IPv6NumToString({column}), '^::ffff:', '')")
}

/// The raw table's columns `settings` switches on, in table order: the
/// stored ones, then the metadata ones (`Column::stored`: aliases of the
/// records in the raw table, stored in the consolidated tables). The
/// server version changes types, never the columns or their bytes, so the
/// shards encode before the store is reached.
pub fn stored_columns(settings: &SchemaSettings) -> Vec<Column> {
    catalog().into_iter().filter(|c| !c.optional || settings.optional_columns.iter().any(|n| n == c.name)).collect()
}

/// `INSERT INTO db.flows (a, b, ...) FORMAT Native` for the columns of a
/// batch (a spooled batch keeps the columns it was encoded with).
pub fn insert_sql(database: &str, columns: &[&str]) -> String {
    format!("INSERT INTO {database}.{RAW_TABLE} ({}) FORMAT Native", columns.join(", "))
}

/// Columns that were optional and are now stored by default: naming them
/// in `store.optional_columns` is still accepted.
pub const FORMERLY_OPTIONAL: [&str; 2] = ["DstASPath", "DstCommunities"];

/// The optional column names in `names` that the catalog does not know, with
/// their index (for config errors), and non-optional ones (always stored).
pub fn unknown_optional_columns(names: &[String]) -> Option<(usize, String)> {
    let catalog = catalog();
    names.iter().enumerate().find_map(|(i, n)| match catalog.iter().find(|c| c.name == n) {
        // Named while they were optional: stored anyway, no error.
        Some(c) if c.optional || FORMERLY_OPTIONAL.contains(&c.name) => None,
        Some(_) => Some((i, format!("{n} is always stored; only optional columns are listed here"))),
        None => Some((i, format!("unknown column {n}; optional columns are: {}", optional_column_names().join(", ")))),
    })
}

/// Settings with the default TTLs and `optional` switched on, for tests.
#[cfg(test)]
pub(crate) fn test_settings(optional: &[&str]) -> SchemaSettings {
    SchemaSettings {
        database: "weir".into(),
        optional_columns: optional.iter().map(|s| s.to_string()).collect(),
        ttl_raw_hours: 168,
        ttl_1m_hours: 360,
        ttl_5m_hours: 2160,
        ttl_1h_hours: 8760,
        ttl_only_drop_parts: true,
        raw_part_bytes_max: 4 << 30,
        consolidated_wide_part_bytes: 1 << 30,
        http: None,
        cluster: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_one_column_named_like_it() {
        let cat = catalog();
        assert_eq!(
            cat.len(),
            Field::ALL.len() + ROUTE_COLUMNS.len() + RECORD_COLUMNS.len() + METADATA_COLUMNS.len() + NET_COLUMNS.len()
        );
        for f in Field::ALL {
            assert_eq!(cat.iter().filter(|c| c.source == Source::Flow(*f)).count(), 1, "{f:?}");
        }
    }

    #[test]
    fn optional_columns_are_off_until_named() {
        let base = Schema::new(&test_settings(&[]), ServerVersion(26, 7));
        assert!(!base.column_names().contains(&"SrcMAC"));
        let macs = Schema::new(&test_settings(&["SrcMAC", "DstMAC"]), ServerVersion(26, 7));
        assert!(macs.column_names().contains(&"SrcMAC") && macs.column_names().contains(&"DstMAC"));
        assert_eq!(unknown_optional_columns(&["SrcMAC".into(), "Nope".into()]).unwrap().0, 1);
        assert!(unknown_optional_columns(&["Bytes".into()]).unwrap().1.contains("always stored"));
    }

    #[test]
    fn old_servers_get_types_with_the_same_bytes() {
        let old = Schema::new(&test_settings(&["FlowStart"]), ServerVersion::parse("18.16.1").unwrap());
        let ddl = old.create_raw_table();
        assert!(ddl.contains("SrcAddr FixedString(16)") && ddl.contains("FlowStart UInt64"));
        assert!(!ddl.contains("TTL") && !ddl.contains("CODEC"));
        assert_eq!(old.dialect.warnings().len(), 8);
        assert!(ddl.contains("DstLargeCommunities Array(FixedString(16))"), "{ddl}");
        assert!(ddl.contains("InIfRecord UInt64") && !ddl.contains("InIfName"), "{ddl}");
        let new = Schema::new(&test_settings(&["FlowStart"]), ServerVersion::parse("26.7.2.1").unwrap());
        let ddl = new.create_raw_table();
        assert!(ddl.contains("SrcAddr IPv6") && ddl.contains("FlowStart DateTime64(3)"));
        assert!(ddl.contains("DstLargeCommunities Array(UInt128)") && !ddl.contains("SrcCommunities"));
        assert!(ddl.contains(
            "TTL TimeReceived + toIntervalHour(168)\nSETTINGS ttl_only_drop_parts = 1, merge_selector_base = 10, \
             max_bytes_to_merge_at_max_space_in_pool = 4294967296"
        ));
        assert!(new
            .create_consolidated_table(&new.consolidations[2])
            .ends_with("SETTINGS ttl_only_drop_parts = 1, min_bytes_for_wide_part = 1073741824"));
        assert!(!new.create_raw_table().contains(WIDE_PART_SETTING), "consolidated tables only");
        assert!(new.dialect.warnings().is_empty());
        let middle = Schema::new(&test_settings(&[]), ServerVersion(19, 16));
        assert!(middle.create_raw_table().contains("TTL") && !middle.create_raw_table().contains("SETTINGS"));
        assert_eq!(middle.dialect.warnings().len(), 4);
        // What the server lists wins over its version.
        let listed = new.dialect.with_merge_tree_settings(&["ttl_only_drop_parts".to_string()]);
        assert!(listed.ttl_only_drop_parts && !listed.merge_selector_base && !listed.merge_cap);
        let none = new.dialect.with_merge_tree_settings(&[]);
        assert!(!none.ttl_only_drop_parts && !none.merge_selector_base && !none.merge_cap);
        // The cap needs MODIFY SETTING (taken from ttl_only_drop_parts): not on 18.16, which lists it.
        let cap = [MERGE_CAP_SETTING.to_string()];
        let old18 = Schema::new(&test_settings(&[]), ServerVersion(18, 16));
        assert!(!old18.dialect.with_merge_tree_settings(&cap).merge_cap);
        let off = Schema::new(&SchemaSettings { raw_part_bytes_max: 0, ..test_settings(&[]) }, ServerVersion(26, 7));
        assert!(!off.create_raw_table().contains(MERGE_CAP_SETTING), "0: the engine's own");
        // Compact parts likewise: listed and modifiable, else not asked for; 0 leaves the engine's.
        let wide = [WIDE_PART_SETTING.to_string()];
        assert!(!old18.dialect.with_merge_tree_settings(&wide).compact_parts);
        assert!(!listed.compact_parts && !none.compact_parts);
        let wide = Schema::new(
            &SchemaSettings { consolidated_wide_part_bytes: 0, ..test_settings(&[]) },
            ServerVersion(26, 7),
        );
        assert!(!wide.create_consolidated_table(&wide.consolidations[0]).contains(WIDE_PART_SETTING));
        assert!(!middle.create_consolidated_table(&middle.consolidations[0]).contains("SETTINGS"));
    }

    #[test]
    fn the_raw_table_stores_record_ids_and_reads_the_names() {
        let s = Schema::new(&test_settings(&[]), ServerVersion(26, 7));
        let ddl = s.create_raw_table();
        assert!(ddl.contains("\n  OutIfRecord UInt64,\n"), "no codec helps a hash: {ddl}");
        assert!(ddl
            .contains("InIfName LowCardinality(String) ALIAS joinGet('weir.interface_records', 'IfName', InIfRecord)"));
        assert!(ddl.contains("ExporterName LowCardinality(String) ALIAS if(ExporterRecord = 0, replaceRegexpOne("));
        assert!(!s.insert_sql().contains("InIfName") && s.insert_sql().contains("InIfRecord"), "{}", s.insert_sql());
        // The consolidated tables store the names.
        let sums = s.create_consolidated_table(&s.consolidations[0]);
        assert!(sums.contains("InIfName LowCardinality(String),") && !sums.contains("InIfRecord"), "{sums}");
        assert_eq!(
            s.records_insert_sql(1),
            "INSERT INTO weir.interface_records (Id, IfName, IfDescription, IfSpeed, IfProvider, IfConnectivity, \
             IfBoundary) FORMAT Native"
        );
        assert!(s
            .create_records_table(0)
            .ends_with("ExporterTenant LowCardinality(String)\n) ENGINE = Join(ANY, LEFT, Id)"));
    }

    #[test]
    fn consolidated_inserts_name_the_dimensions() {
        let c = Schema::new(&test_settings(&["SrcVlan", "SrcMAC"]), ServerVersion(26, 7));
        let sql = c.consolidated_insert_sql(&c.consolidations[0]);
        assert!(sql.starts_with("INSERT INTO weir.flows_1m (TimeReceived, ExporterAddress, InIfIndex"), "{sql}");
        assert!(sql.contains("SrcVlan") && !sql.contains("SrcMAC"), "only consolidated columns: {sql}");
        assert!(sql.ends_with("Bytes, Packets, Flows) FORMAT Native"), "{sql}");
    }
}
