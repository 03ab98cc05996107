//! Remote metadata sources (`[[metadata.sources]]`): a JSON or CSV document
//! fetched over HTTP on an interval (`shards/src/enrich/sources.rs`) and
//! read here into the static provider's shape, exporters by subnet with
//! their attributes and interfaces. Pure, so that the fuzz target
//! (`remote_source`) reads documents exactly as the collector does.
//!
//! - JSON: a list of objects, at the top or at `path` (dot-separated keys:
//!   `results`, `data.exporters`). Each object gives the fields of a
//!   `[[metadata.exporters]]` entry (`subnet`, `name`, `site`, ...,
//!   `interfaces` as an object keyed by ifIndex or as a list of objects
//!   with an `if_index`); `rename` maps a source field, by its dot path
//!   (`primary_ip4.address`), to one of ours.
//! - CSV: a header row, then one row per exporter or per interface: the
//!   exporter's fields, and `if_index`, `if_name`, `if_description`,
//!   `if_speed`, `if_provider`, `if_connectivity`, `if_boundary`; rows of
//!   one subnet merge (its first row's attributes count).
//!
//! An entry that does not read (no subnet, a bad boundary, a wrong type) is
//! skipped and counted; the document's other entries still count.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::{parse_cidr, NetworkInfo, StaticExporter, NETWORK_FIELDS, STATIC_EXPORTER_FIELDS};

/// Entries one document may hold, at most (the rest are counted invalid).
pub const ENTRIES_MAX: usize = 65_536;

/// CSV columns of an interface, and the interface field each one fills.
const CSV_INTERFACE_COLUMNS: [(&str, &str); 6] = [
    ("if_name", "name"),
    ("if_description", "description"),
    ("if_speed", "speed"),
    ("if_provider", "provider"),
    ("if_connectivity", "connectivity"),
    ("if_boundary", "boundary"),
];

/// A document's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// What a document gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Read {
    pub exporters: Vec<StaticExporter>,
    /// Entries skipped: what each lacked, for the first few.
    pub invalid: usize,
    pub reasons: Vec<String>,
}

impl Read {
    fn refuse(&mut self, reason: String) {
        self.invalid += 1;
        if self.reasons.len() < 4 {
            self.reasons.push(reason);
        }
    }
}

/// Reads `body`; an error when the document itself does not parse (the
/// source then keeps its last good data).
pub fn read(format: Format, path: &str, rename: &BTreeMap<String, String>, body: &[u8]) -> Result<Read, String> {
    let items = match format {
        Format::Json => json_items(path, body)?,
        Format::Csv => csv_items(body)?,
    };
    let mut read = Read::default();
    for (i, item) in items.into_iter().enumerate() {
        if read.exporters.len() >= ENTRIES_MAX {
            read.refuse(format!("past {ENTRIES_MAX} entries"));
            continue;
        }
        match entry(&item, rename) {
            Ok(e) => read.exporters.push(e),
            Err(why) => read.refuse(format!("entry {i}: {why}")),
        }
    }
    if format == Format::Csv {
        read.exporters = merge_by_subnet(read.exporters);
    }
    Ok(read)
}

/// What a network document (`[[networks.sources]]`) gave: (prefix,
/// attributes) pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworksRead {
    pub networks: Vec<(String, NetworkInfo)>,
    pub invalid: usize,
    pub reasons: Vec<String>,
}

/// Reads a network document: a list of objects (JSON, at `path`) or rows
/// (CSV) with a `prefix` and any of `name`, `role`, `site`, `region`,
/// `tenant`, `country`, `state`, `city` and `asn` (a number, or `AS64500`);
/// `rename` maps a source field (dot path) to one of these. An entry that
/// does not read is skipped and counted.
pub fn read_networks(
    format: Format,
    path: &str,
    rename: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<NetworksRead, String> {
    let items = match format {
        Format::Json => json_items(path, body)?,
        Format::Csv => csv_items(body)?,
    };
    let mut read = NetworksRead::default();
    for (i, item) in items.into_iter().enumerate() {
        let result = if read.networks.len() >= ENTRIES_MAX {
            Err(format!("past {ENTRIES_MAX} entries"))
        } else {
            network_entry(&item, rename)
        };
        match result {
            Ok(n) => read.networks.push(n),
            Err(why) => {
                read.invalid += 1;
                if read.reasons.len() < 4 {
                    read.reasons.push(format!("entry {i}: {why}"));
                }
            }
        }
    }
    Ok(read)
}

fn network_entry(item: &Value, rename: &BTreeMap<String, String>) -> Result<(String, NetworkInfo), String> {
    let mut ours = our_fields(item, rename, &NETWORK_FIELDS)?;
    ours.retain(|_, v| !v.is_null());
    let prefix = ours.remove("prefix").as_ref().and_then(text).ok_or("no prefix")?;
    if parse_cidr(&prefix).is_none() {
        return Err(format!("{prefix:?} is not a prefix"));
    }
    for (key, v) in ours.iter_mut() {
        match (key.as_str(), &*v) {
            ("asn", Value::String(s)) => {
                let n = s.trim_start_matches("AS").trim_start_matches("as").parse::<u32>();
                *v = Value::from(n.map_err(|_| format!("asn {s:?} is not an AS number"))?);
            }
            ("asn", _) => {}
            (_, Value::Number(n)) => *v = Value::String(n.to_string()),
            _ => {}
        }
    }
    let info: NetworkInfo = serde_json::from_value(Value::Object(ours)).map_err(|e| e.to_string())?;
    info.check(&|k: &str| k.to_string()).map_err(|e| e.to_string())?;
    Ok((prefix, info))
}

/// The list at `path` in a JSON document.
fn json_items(path: &str, body: &[u8]) -> Result<Vec<Value>, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut at = &document;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        at = at.get(key).ok_or_else(|| format!("no {key:?} in the document (path {path:?})"))?;
    }
    match at {
        Value::Array(items) => Ok(items.clone()),
        _ => Err(format!("not a list at path {path:?}")),
    }
}

/// CSV rows as objects keyed by the header.
fn csv_items(body: &[u8]) -> Result<Vec<Value>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(body);
    let header: Vec<String> =
        reader.headers().map_err(|e| format!("not CSV: {e}"))?.iter().map(str::to_string).collect();
    let mut items = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| format!("not CSV: {e}"))?;
        let mut item = Map::new();
        for (key, value) in header.iter().zip(row.iter()) {
            if !value.is_empty() {
                item.insert(key.clone(), Value::String(value.to_string()));
            }
        }
        items.push(Value::Object(item));
        if items.len() > ENTRIES_MAX {
            break;
        }
    }
    Ok(items)
}

/// The value at a dot path of `item`.
fn at_path<'a>(item: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(item, |v, key| v.get(key))
}

/// `fields` of `item` (an object): those `rename` maps from a source
/// field (a dot path) first, then the ones it holds under our names.
fn our_fields(item: &Value, rename: &BTreeMap<String, String>, fields: &[&str]) -> Result<Map<String, Value>, String> {
    if !item.is_object() {
        return Err("not an object".into());
    }
    let mut ours = Map::new();
    for (from, to) in rename {
        if let Some(v) = at_path(item, from) {
            ours.insert(to.clone(), v.clone());
        }
    }
    for field in fields {
        if let (false, Some(v)) = (ours.contains_key(*field), item.get(*field)) {
            ours.insert(field.to_string(), v.clone());
        }
    }
    Ok(ours)
}

/// One entry: our fields taken (renamed) from `item`, then checked.
fn entry(item: &Value, rename: &BTreeMap<String, String>) -> Result<StaticExporter, String> {
    let mut ours = our_fields(item, rename, &STATIC_EXPORTER_FIELDS)?;
    // CSV: the interface of the row.
    if let Some(index) = item.get("if_index") {
        let mut interface = Map::new();
        for (column, field) in CSV_INTERFACE_COLUMNS {
            if let Some(v) = item.get(column) {
                interface.insert(field.to_string(), v.clone());
            }
        }
        let index = text(index).ok_or("if_index is not a number")?;
        ours.insert("interfaces".into(), Value::Object(Map::from_iter([(index, Value::Object(interface))])));
    }
    // Interfaces as a list of objects with an ifIndex.
    if let Some(Value::Array(list)) = ours.get("interfaces") {
        let mut by_index = Map::new();
        for i in list {
            let index = ["if_index", "ifindex", "index"].iter().find_map(|k| i.get(*k)).and_then(text);
            let index = index.ok_or("an interface has no if_index")?;
            let mut i = i.clone();
            if let Some(o) = i.as_object_mut() {
                o.retain(|k, _| !["if_index", "ifindex", "index"].contains(&k.as_str()));
            }
            by_index.insert(index, i);
        }
        ours.insert("interfaces".into(), Value::Object(by_index));
    }
    typed(&mut ours);
    let e: StaticExporter = serde_json::from_value(Value::Object(ours)).map_err(|e| e.to_string())?;
    e.check().map_err(|e| e.to_string())?;
    Ok(e)
}

/// A string or a number as text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// CSV gives strings: the numbers and booleans our fields want.
fn typed(ours: &mut Map<String, Value>) {
    // JSON's null is "not given".
    ours.retain(|_, v| !v.is_null());
    if let Some(Value::String(s)) = ours.get("skip_missing_interfaces") {
        let b = matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "1");
        ours.insert("skip_missing_interfaces".into(), Value::Bool(b));
    }
    // NetBox-style addresses carry their length: 192.0.2.1/32 is fine as
    // it is; numbers where strings are wanted are turned into strings.
    for field in ["subnet", "name", "group", "role", "site", "region", "tenant"] {
        if let Some(v @ Value::Number(_)) = ours.get(field) {
            let s = v.to_string();
            ours.insert(field.into(), Value::String(s));
        }
    }
    let fix = |i: &mut Value| {
        let Some(o) = i.as_object_mut() else { return };
        if let Some(Value::String(s)) = o.get("speed") {
            let speed = s.parse::<u64>().map(|n| Value::from(n.min(u64::from(u32::MAX)))).unwrap_or(Value::Null);
            o.insert("speed".into(), speed);
        }
        o.retain(|_, v| !v.is_null());
    };
    if let Some(m) = ours.get_mut("interfaces").and_then(Value::as_object_mut) {
        m.values_mut().for_each(fix);
    }
    if let Some(d) = ours.get_mut("default_interface") {
        fix(d);
    }
}

/// Rows of one subnet into one entry, in the order subnets first appear.
fn merge_by_subnet(rows: Vec<StaticExporter>) -> Vec<StaticExporter> {
    let mut out: Vec<StaticExporter> = Vec::new();
    let mut at: BTreeMap<String, usize> = BTreeMap::new();
    for row in rows {
        match at.get(&row.subnet) {
            Some(&i) => out[i].interfaces.extend(row.interfaces),
            None => {
                at.insert(row.subnet.clone(), out.len());
                out.push(row);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_rename() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn json_in_our_shape_with_interfaces_keyed_or_listed() {
        let body = br#"{"data": {"exporters": [
            {"subnet": "192.0.2.0/24", "site": "par", "interfaces": {"17": {"name": "et-17", "speed": 100000, "boundary": "external"}}},
            {"subnet": "198.51.100.1", "name": "edge2", "interfaces": [{"if_index": 3, "name": "et-3", "description": "core"}]},
            {"subnet": "nope", "name": "broken"},
            {"subnet": "203.0.113.1", "interfaces": {"4": {"boundary": "sideways"}}},
            "not an object"
        ]}}"#;
        let read = read(Format::Json, "data.exporters", &no_rename(), body).unwrap();
        assert_eq!(read.exporters.len(), 2);
        assert_eq!(read.invalid, 3);
        assert!(read.reasons[0].contains("entry 2"), "{:?}", read.reasons);
        assert_eq!(read.exporters[0].interfaces["17"].speed, 100_000);
        assert_eq!(read.exporters[1].interfaces["3"].description, "core");
        assert!(super::read(Format::Json, "data.missing", &no_rename(), body).is_err());
        assert!(super::read(Format::Json, "", &no_rename(), b"{not json").is_err());
    }

    #[test]
    fn netbox_like_json_through_rename() {
        let body = br#"{"count": 1, "results": [
            {"name": "edge1-par", "primary_ip4": {"address": "192.0.2.1/32"}, "site": {"slug": "par"},
             "role": {"slug": "edge"}, "tenant": null, "custom_fields": {"region": "europe"}}
        ]}"#;
        let rename: BTreeMap<String, String> = [
            ("primary_ip4.address", "subnet"),
            ("site.slug", "site"),
            ("role.slug", "role"),
            ("custom_fields.region", "region"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let read = read(Format::Json, "results", &rename, body).unwrap();
        assert_eq!(read.invalid, 0, "{:?}", read.reasons);
        let e = &read.exporters[0];
        assert_eq!(
            (e.subnet.as_str(), e.name.as_str(), e.site.as_str(), e.role.as_str(), e.region.as_str()),
            ("192.0.2.1/32", "edge1-par", "par", "edge", "europe")
        );
    }

    #[test]
    fn network_documents_in_json_and_csv() {
        let body = br#"{"prefixes": [
            {"prefix": "192.0.2.0/24", "name": "paris", "asn": "AS64500", "country": "FR"},
            {"net": {"cidr": "2001:db8::/32"}, "name": 7, "asn": 64501},
            {"prefix": "nope"},
            {"prefix": "198.51.100.0/24", "country": "France"},
            {"name": "no prefix"}
        ]}"#;
        let rename: BTreeMap<String, String> = [("net.cidr".to_string(), "prefix".to_string())].into();
        let read = read_networks(Format::Json, "prefixes", &rename, body).unwrap();
        assert_eq!(read.networks.len(), 2, "{:?}", read.reasons);
        assert_eq!(read.invalid, 3);
        assert_eq!((read.networks[0].1.asn, read.networks[0].1.country.as_str()), (64500, "FR"));
        assert_eq!((read.networks[1].0.as_str(), read.networks[1].1.name.as_str()), ("2001:db8::/32", "7"));
        let csv = b"prefix,name,site,asn\n10.0.0.0/8,lan,par1,\n10.1.0.0/16,,,64512\nbad,x,,\n";
        let read = read_networks(Format::Csv, "", &no_rename(), csv).unwrap();
        assert_eq!((read.networks.len(), read.invalid), (2, 1), "{:?}", read.reasons);
        assert_eq!(read.networks[0].1.site, "par1");
        assert_eq!(read.networks[1].1.asn, 64512);
        assert!(read_networks(Format::Json, "", &no_rename(), b"{").is_err());
    }

    #[test]
    fn csv_rows_per_interface_merge_by_subnet() {
        let body = b"subnet,name,site,if_index,if_name,if_description,if_speed,if_boundary\n\
            192.0.2.1,edge1,par,17,et-17,\"Transit: Cogent, 1-38\",100000,external\n\
            192.0.2.1,,,18,et-18,,,\n\
            192.0.2.2,edge2,ams,,,,,\n\
            192.0.2.3,bad,,x,,,,\n";
        let read = read(Format::Csv, "", &no_rename(), body).unwrap();
        assert_eq!(read.invalid, 1, "{:?}", read.reasons);
        assert_eq!(read.exporters.len(), 2);
        let e = &read.exporters[0];
        assert_eq!((e.name.as_str(), e.interfaces.len()), ("edge1", 2));
        assert_eq!(e.interfaces["17"].description, "Transit: Cogent, 1-38");
        assert_eq!(e.interfaces["17"].speed, 100_000);
        assert_eq!(e.interfaces["18"].name, "et-18");
        assert_eq!(read.exporters[1].site, "ams");
    }
}
