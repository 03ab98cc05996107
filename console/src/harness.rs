//! What the fuzz targets run (`console/fuzz`), callable from tests too.

use crate::columns::{Catalogue, Kind};
use crate::filter::{self, SqlDialect};
use crate::query;

/// Every stored column plus string and boundary columns (as enrichment adds).
pub fn fuzz_catalogue() -> Catalogue {
    Catalogue::new(&weir_core::schema::catalog())
        .with("ExporterName", Kind::Str, true)
        .with("InIfName", Kind::Str, true)
        .with("OutIfName", Kind::Str, true)
        .with("InIfBoundary", Kind::Boundary, true)
        .with("OutIfBoundary", Kind::Boundary, true)
}

/// HAProxy's default fields, stored with the default rollups.
pub fn http_catalogue() -> Catalogue {
    let config = weir_core::config::HaproxyConfig { store: true, ..Default::default() };
    Catalogue::http(&config.http_table())
}

/// Parses `data` as a filter. A filter that parses compiles, both ways,
/// to one SQL expression ([`sql_is_one_expression`]), and its reverse
/// reversed is itself.
pub fn filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The flows' columns, and HTTP requests' (signed ints, `_` in names).
    for columns in [fuzz_catalogue(), http_catalogue()] {
        match filter::parse(text, &columns) {
            Ok(Some(e)) => {
                for sql in
                    [e.to_sql(SqlDialect::MODERN), e.reversed(&columns).to_sql(SqlDialect::FIXED_STRING_ADDRESSES)]
                {
                    assert!(sql_is_one_expression(&sql), "{text:?} gave {sql:?}");
                }
                assert_eq!(e.reversed(&columns).reversed(&columns), e);
            }
            Ok(None) => {}
            Err(e) => assert!(e.offset <= text.len() && e.line >= 1 && e.column >= 1, "{e:?}"),
        }
    }
}

/// A graph request: `data` is JSON, then optionally a NUL and what the
/// store would answer (TabSeparated). A request that checks builds line and
/// sankey SQL that is one statement with closed strings (and nothing after
/// a `;` or in a comment); any answer shapes into series without a panic.
pub fn graph_request(data: &[u8]) {
    let (json, answer) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(request) = serde_json::from_slice::<query::GraphRequest>(json) else { return };
    let columns = match request.source {
        query::Source::Flows => fuzz_catalogue(),
        query::Source::Http => http_catalogue(),
    };
    const NOW: i64 = 1_800_000_000;
    let limits = query::Limits { dimensions_limit: 50, range_max_s: 400 * 86_400 };
    let Ok(r) = request.check(&columns, limits, NOW) else { return };
    let day = 86_400;
    let oldest = [Some(NOW - 7 * day), Some(NOW - 15 * day), Some(NOW - 90 * day), Some(NOW - 365 * day)];
    let tables = query::Tables::of(request.source, "flows", oldest);
    let points = request.points.unwrap_or(20);
    let choice = query::choose_table(&tables, r.start, r.end, points, r.needs_raw(&columns));
    assert!(choice.interval > 0 && choice.end > choice.start, "{choice:?}");
    assert!(choice.buckets() <= 2 * 2000 + 2 || r.end - r.start > 2000, "{choice:?}");
    for dialect in [SqlDialect::MODERN, SqlDialect::FIXED_STRING_ADDRESSES] {
        let b = query::Builder { columns: &columns, database: "weir", dialect, tables: &tables };
        let mut axes = b.line(&r, &choice).unwrap_or_default();
        axes.extend(b.sankey(&r, &choice).unwrap_or_default());
        for q in &axes {
            assert!(sql_is_one_expression(&q.sql), "{request:?} gave {}", q.sql);
        }
        if let Some(q) = axes.first() {
            if let Ok(rows) = query::parse_rows(answer, q.dimensions) {
                let shaped = query::line_answer(&columns, &r, &choice, &[(q.clone(), rows.clone())]);
                assert_eq!(shaped.rows.len(), shaped.points.len());
                let _ = query::sankey_answer(&columns, &r, &choice, &[(q.clone(), rows)]);
            }
        }
    }
}

/// Whether `sql` is a single expression as ClickHouse would read it: string
/// literals closed, and outside them no `;`, no comment, no `FORMAT` or
/// `SETTINGS` clause, and parentheses balanced.
pub fn sql_is_one_expression(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut outside = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return false,
                    Some(b'\\') => i += 2,
                    Some(b'\'') => break,
                    Some(_) => i += 1,
                }
            }
            outside.push(b'0');
        } else {
            outside.push(b[i]);
        }
        i += 1;
    }
    let text = String::from_utf8_lossy(&outside).to_ascii_uppercase();
    let mut depth = 0i64;
    for c in text.bytes() {
        depth += match c {
            b'(' => 1,
            b')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return false;
        }
    }
    depth == 0
        && !text.contains(';')
        && !text.contains("--")
        && !text.contains("/*")
        && !text.contains('"')
        && !text.contains('`')
        && !text.contains("FORMAT")
        && !text.contains("SETTINGS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expression_check_sees_statements_and_comments_outside_strings() {
        assert!(sql_is_one_expression("a = 'x; -- /* FORMAT'"));
        assert!(sql_is_one_expression(r"a = 'it\'s' AND (b = 1)"));
        assert!(!sql_is_one_expression("a = 1; DROP TABLE flows"));
        assert!(!sql_is_one_expression("a = 'x"));
        assert!(!sql_is_one_expression("a = 1 -- x"));
        assert!(!sql_is_one_expression("(a = 1"));
        assert!(!sql_is_one_expression("a = 1) OR (1"));
    }
}
