//! The filter language: Akvorado's grammar (conditions on columns joined
//! with `AND`, `OR`, `NOT` and parentheses), parsed into a tree that is the
//! only thing SQL is built from. Every literal is checked for its column's
//! kind and written back by Weir (numbers as numbers, addresses through
//! `toIPv6`, strings re-escaped), so no text of the filter reaches the SQL.
//!
//! ```text
//! SrcAS = AS65000 AND (DstPort IN (80, 443) OR Proto = 'UDP') -- comment
//! NOT SrcAddr << 192.0.2.0/24 /* block comment */
//! ```
//!
//! Keywords and column names are case-insensitive; strings take `'…'` or
//! `"…"` with `\\` and an escaped own quote as the only escapes. Errors
//! carry the line, column and byte offset of the farthest point the parser
//! reached, with what it expected there.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::columns::{Catalogue, ConsoleColumn, Kind};

/// The longest filter accepted, in bytes.
pub const FILTER_BYTES_MAX: usize = 64 * 1024;
/// How deep parentheses may nest, and how many `NOT` a filter may hold
/// (each is a level of recursion in the parser).
pub const NESTING_MAX: usize = 64;

/// A parsed filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cond(Cond),
}

/// One condition on a column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// The column's name as the schema spells it.
    pub column: String,
    pub test: Test,
}

/// What a condition checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Test {
    /// `column <op> literal`.
    Compare(Cmp, Value),
    /// `column <op> other_column` (same kind).
    Columns(Cmp, String),
    /// `[NOT] [I]LIKE 'pattern'`.
    Like { negated: bool, insensitive: bool, pattern: String },
    /// The address is (not) in a subnet: `<<`, `!<<`, or `=`/`!=` a subnet.
    Within { negated: bool, net: Net },
    /// `IN (…)` / `NOTIN (…)`.
    In { negated: bool, values: Vec<Value> },
    /// A list column (AS path, communities, MPLS labels) does (not) hold a value.
    Has { negated: bool, value: u128 },
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn sql(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

/// A checked literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    UInt(u64),
    Int(i64),
    Str(String),
    Ip(Ipv6Addr),
    Net(Net),
}

/// A subnet as its first and last address (IPv4 mapped into IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    pub first: Ipv6Addr,
    pub last: Ipv6Addr,
}

/// Where and why a filter does not parse.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FilterError {
    pub message: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// 0-based, in bytes.
    pub offset: usize,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at line {}, position {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for FilterError {}

/// How the server spells what the SQL needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlDialect {
    /// The function turning an address's text into the column's type:
    /// `toIPv6` (19.x and later), `IPv6StringToNum` (FixedString(16) columns).
    pub ipv6: &'static str,
}

impl SqlDialect {
    pub const MODERN: SqlDialect = SqlDialect { ipv6: "toIPv6" };
    pub const FIXED_STRING_ADDRESSES: SqlDialect = SqlDialect { ipv6: "IPv6StringToNum" };
}

/// Parses `text` against the enabled columns. A blank filter (only
/// whitespace and comments) is `Ok(None)`: every flow.
pub fn parse(text: &str, columns: &Catalogue) -> Result<Option<Expr>, FilterError> {
    if text.len() > FILTER_BYTES_MAX {
        return Err(FilterError {
            message: format!("the filter is longer than {FILTER_BYTES_MAX} bytes"),
            line: 1,
            column: 1,
            offset: 0,
        });
    }
    if let Some(offset) = too_deep(text) {
        let (line, column) = line_column(text, offset);
        let message = format!("nested deeper than {NESTING_MAX} levels (parentheses and NOT)");
        return Err(FilterError { message, line, column, offset });
    }
    match grammar::input(text, columns) {
        Ok(expr) => Ok(expr),
        Err(e) => {
            let mut expected: Vec<&str> = e.expected.tokens().map(|t| t.trim_matches('"')).collect();
            expected.sort_unstable();
            expected.dedup();
            let message = match expected.as_slice() {
                [] => "unexpected input".to_string(),
                [one] => format!("expecting {one}"),
                [init @ .., last] => format!("expecting {} or {last}", init.join(", ")),
            };
            Err(FilterError { message, line: e.location.line, column: e.location.column, offset: e.location.offset })
        }
    }
}

/// The byte offset where `text` first nests deeper than [`NESTING_MAX`]
/// (parentheses open at once, or `NOT` keywords in all), strings and
/// comments skipped. Checked before parsing, which recurses per level.
fn too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let (mut i, mut depth, mut nots) = (0, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' => {
                depth += 1;
                if depth > NESTING_MAX {
                    return Some(i);
                }
            }
            b')' => depth = depth.saturating_sub(1),
            c if c.is_ascii_alphabetic() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) => {
                let end = b[i..].iter().position(|c| !c.is_ascii_alphanumeric()).map_or(b.len(), |n| i + n);
                if b[i..end].eq_ignore_ascii_case(b"NOT") {
                    nots += 1;
                    if nots > NESTING_MAX {
                        return Some(i);
                    }
                }
                i = end - 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Expr {
    /// The same filter for traffic in the other direction: each column
    /// swapped for its counterpart where that column is enabled (Src↔Dst,
    /// In↔Out).
    pub fn reversed(&self, columns: &Catalogue) -> Expr {
        match self {
            Expr::And(a, b) => Expr::And(Box::new(a.reversed(columns)), Box::new(b.reversed(columns))),
            Expr::Or(a, b) => Expr::Or(Box::new(a.reversed(columns)), Box::new(b.reversed(columns))),
            Expr::Not(a) => Expr::Not(Box::new(a.reversed(columns))),
            Expr::Cond(c) => {
                let test = match &c.test {
                    Test::Columns(op, other) => Test::Columns(*op, columns.counterpart(other).to_string()),
                    t => t.clone(),
                };
                Expr::Cond(Cond { column: columns.counterpart(&c.column).to_string(), test })
            }
        }
    }

    /// Every column the filter reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |c| {
            out.push(c.column.as_str());
            if let Test::Columns(_, other) = &c.test {
                out.push(other.as_str());
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Cond)) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Not(a) => a.walk(f),
            Expr::Cond(c) => f(c),
        }
    }

    /// Whether only the raw `flows` table has every column the filter reads.
    pub fn needs_raw_table(&self, columns: &Catalogue) -> bool {
        self.columns().iter().any(|n| columns.find(n).is_none_or(|c| !c.consolidated))
    }

    /// The filter as a ClickHouse boolean expression.
    pub fn to_sql(&self, dialect: SqlDialect) -> String {
        let mut out = String::new();
        self.write_sql(dialect, &mut out);
        out
    }

    fn write_sql(&self, d: SqlDialect, out: &mut String) {
        let child = |e: &Expr, out: &mut String| match e {
            Expr::Cond(_) => e.write_sql(d, out),
            _ => {
                out.push('(');
                e.write_sql(d, out);
                out.push(')');
            }
        };
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                child(a, out);
                out.push_str(if matches!(self, Expr::And(..)) { " AND " } else { " OR " });
                child(b, out);
            }
            Expr::Not(a) => {
                out.push_str("NOT (");
                a.write_sql(d, out);
                out.push(')');
            }
            Expr::Cond(c) => c.write_sql(d, out),
        }
    }
}

impl Cond {
    fn write_sql(&self, d: SqlDialect, out: &mut String) {
        let col = &self.column;
        match &self.test {
            Test::Within { negated, net } => {
                let not = if *negated { "NOT " } else { "" };
                out.push_str(&format!("{col} {not}BETWEEN {} AND {}", ip(d, net.first), ip(d, net.last)));
            }
            Test::Compare(op, v) => out.push_str(&format!("{col} {} {}", op.sql(), value(d, v))),
            Test::Columns(op, other) => out.push_str(&format!("{col} {} {other}", op.sql())),
            Test::Like { negated, insensitive, pattern } => {
                let not = if *negated { "NOT " } else { "" };
                let i = if *insensitive { "I" } else { "" };
                out.push_str(&format!("{col} {not}{i}LIKE {}", quote(pattern)));
            }
            Test::In { negated, values } => {
                let (nets, singles): (Vec<&Value>, Vec<&Value>) =
                    values.iter().partition(|v| matches!(v, Value::Net(_)));
                let mut parts = Vec::new();
                if !singles.is_empty() {
                    let list: Vec<String> = singles.iter().map(|v| value(d, v)).collect();
                    parts.push(format!("{col} IN ({})", list.join(", ")));
                }
                for n in nets {
                    if let Value::Net(net) = n {
                        parts.push(format!("{col} BETWEEN {} AND {}", ip(d, net.first), ip(d, net.last)));
                    }
                }
                let all = parts.join(" OR ");
                if *negated {
                    out.push_str(&format!("NOT ({all})"));
                } else if parts.len() > 1 {
                    out.push_str(&format!("({all})"));
                } else {
                    out.push_str(&all);
                }
            }
            Test::Has { negated, value } => {
                let not = if *negated { "NOT " } else { "" };
                if *value > u128::from(u64::MAX) {
                    // Past 64 bits a literal is not read as an integer everywhere.
                    out.push_str(&format!("{not}has({col}, toUInt128('{value}'))"));
                } else {
                    out.push_str(&format!("{not}has({col}, {value})"));
                }
            }
        }
    }
}

fn value(d: SqlDialect, v: &Value) -> String {
    match v {
        Value::UInt(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Str(s) => quote(s),
        Value::Ip(a) => ip(d, *a),
        Value::Net(n) => format!("{} AND {}", ip(d, n.first), ip(d, n.last)),
    }
}

fn ip(d: SqlDialect, a: Ipv6Addr) -> String {
    format!("{}('{a}')", d.ipv6)
}

/// A ClickHouse string literal: quotes and backslashes escaped, control
/// characters written as `\xHH`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

// Literal parsers the grammar calls; each error is what the filter expected.

fn parse_uint(s: &str, bits: u8) -> Result<u64, &'static str> {
    let n: u64 = s.parse().map_err(|_| "")?;
    if bits < 64 && n >> bits != 0 {
        return Err("");
    }
    Ok(n)
}

fn parse_ip(s: &str) -> Result<Ipv6Addr, &'static str> {
    if let Ok(v4) = s.parse::<Ipv4Addr>() {
        return Ok(v4.to_ipv6_mapped());
    }
    s.parse::<Ipv6Addr>().map_err(|_| "")
}

fn parse_net(s: &str) -> Result<Net, &'static str> {
    let (addr, len) = s.split_once('/').ok_or("")?;
    let len: u32 = len.parse().map_err(|_| "")?;
    let (a, len) = match addr.parse::<Ipv4Addr>() {
        Ok(v4) if len <= 32 => (v4.to_ipv6_mapped(), len + 96),
        Ok(_) => return Err(""),
        Err(_) => (addr.parse::<Ipv6Addr>().map_err(|_| "")?, len),
    };
    if len > 128 {
        return Err("");
    }
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    let bits = u128::from(a);
    Ok(Net { first: Ipv6Addr::from(bits & mask), last: Ipv6Addr::from(bits | !mask) })
}

fn parse_mac(s: &str) -> Result<u64, &'static str> {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let colons = s.split(':').count() == 6 && s.split(':').all(|p| p.len() == 2);
    let dashes = s.split('-').count() == 6 && s.split('-').all(|p| p.len() == 2);
    let dots = s.split('.').count() == 3 && s.split('.').all(|p| p.len() == 4);
    if hex.len() != 12 || !(colons || dashes || dots) {
        return Err("");
    }
    u64::from_str_radix(&hex, 16).map_err(|_| "")
}

fn parse_community(a: &str, b: &str) -> Result<u64, &'static str> {
    let (a, b) = (parse_uint(a, 16)?, parse_uint(b, 16)?);
    Ok((a << 16) | b)
}

/// `a:b:c` as Akvorado stores it: `a << 64 | b << 32 | c`.
fn parse_large_community(a: &str, b: &str, c: &str) -> Result<u128, &'static str> {
    let (a, b, c) = (parse_uint(a, 32)?, parse_uint(b, 32)?, parse_uint(c, 32)?);
    Ok(u128::from(a) << 64 | u128::from(b) << 32 | u128::from(c))
}

fn proto_number(name: &str) -> Result<u64, &'static str> {
    weir_core::migrate::PROTOCOLS
        .iter()
        .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
        .map(|(p, _, _)| *p as u64)
        .ok_or("")
}

fn etype_number(name: &str) -> Result<u64, &'static str> {
    match name.to_ascii_lowercase().as_str() {
        "ipv4" => Ok(0x0800),
        "ipv6" => Ok(0x86dd),
        _ => Err(""),
    }
}

fn direction_number(name: &str) -> Result<u64, &'static str> {
    match name.to_ascii_lowercase().as_str() {
        "ingress" => Ok(0),
        "egress" => Ok(1),
        _ => Err(""),
    }
}

fn boundary(name: &str) -> Result<String, &'static str> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "external" | "internal" | "undefined" => Ok(lower),
        _ => Err(""),
    }
}

fn check(ok: bool) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err("")
    }
}

fn is_uint(k: Kind) -> bool {
    matches!(k, Kind::UInt { .. })
}

fn bits(k: Kind) -> u8 {
    match k {
        Kind::UInt { bits } => bits,
        _ => 64,
    }
}

/// Columns a column may be compared with: the same kind (integers of any
/// width and sign).
fn comparable(a: Kind, b: Kind) -> bool {
    let integer = |k: Kind| is_uint(k) || k == Kind::Int;
    a == b || (integer(a) && integer(b))
}

fn cond(c: &ConsoleColumn, test: Test) -> Expr {
    Expr::Cond(Cond { column: c.name.clone(), test })
}

fn eq_or_has(negated: bool, value: impl Into<u128>) -> Test {
    Test::Has { negated, value: value.into() }
}

fn compare(negated: bool, v: Value) -> Test {
    Test::Compare(if negated { Cmp::Ne } else { Cmp::Eq }, v)
}

peg::parser! {
    grammar grammar<'c>(cx: &'c Catalogue) for str {
        pub rule input() -> Option<Expr> = quiet!{_ ![_]} { None } / _ e:or() _ end() { Some(e) }

        rule end() = ![_] / expected!("the end of the filter")

        // Whitespace and comments.
        rule _() = (quiet!{[' ' | '\t' | '\r' | '\n']+ / "--" [^'\n']*} / block_comment())*
        rule block_comment() = quiet!{"/*"} quiet!{(!"*/" [_])*} (quiet!{"*/"} / expected!("*/ closing the comment"))

        rule kw(k: &'static str) = quiet!{ s:$(['a'..='z' | 'A'..='Z']+) !['_'] {? check(s.eq_ignore_ascii_case(k)) } } / expected!(k)

        rule or() -> Expr = l:and() r:(_ kw("OR") _ e:and() { e })* {
            r.into_iter().fold(l, |a, b| Expr::Or(Box::new(a), Box::new(b)))
        }
        rule and() -> Expr = l:unit() r:(_ kw("AND") _ e:unit() { e })* {
            r.into_iter().fold(l, |a, b| Expr::And(Box::new(a), Box::new(b)))
        }
        rule unit() -> Expr
            = "(" _ e:or() _ ")" { e }
            / kw("NOT") _ u:unit() { Expr::Not(Box::new(u)) }
            / condition()

        rule column() -> &'c ConsoleColumn
            = quiet!{ n:$(['a'..='z' | 'A'..='Z' | '0'..='9' | '_']+) {? cx.find(n).ok_or("") } }
            / expected!("a column name")
        rule same_kind(c: &ConsoleColumn) -> &'c ConsoleColumn
            = quiet!{ o:column() {? if comparable(o.kind, c.kind) { Ok(o) } else { Err("") } } }
            / expected!("another column of the same kind")

        rule condition() -> Expr = c:column() _ t:test(c) { cond(c, t) }

        rule test(c: &ConsoleColumn) -> Test
            = when(c.kind == Kind::Ip) t:ip_test(c) { t }
            / when(is_uint(c.kind)) t:uint_test(c) { t }
            / when(c.kind == Kind::Int) t:int_test(c) { t }
            / when(c.kind == Kind::Proto) t:proto_test(c) { t }
            / when(c.kind == Kind::Asn) t:asn_test(c) { t }
            / when(c.kind == Kind::AsPath) n:eq_ne() _ v:asn() { eq_or_has(n, v) }
            / when(c.kind == Kind::UIntArray) n:eq_ne() _ v:uint(32) { eq_or_has(n, v) }
            / when(c.kind == Kind::Communities) n:eq_ne() _ v:community() { eq_or_has(n, v) }
            / when(c.kind == Kind::LargeCommunities) n:eq_ne() _ v:large_community() { eq_or_has(n, v) }
            / when(c.kind == Kind::Mac) t:mac_test() { t }
            / when(c.kind == Kind::Str) t:str_test(c) { t }
            / when(c.kind == Kind::EType) n:eq_ne() _ v:etype() { compare(n, Value::UInt(v)) }
            / when(c.kind == Kind::Direction) n:eq_ne() _ v:direction() { compare(n, Value::UInt(v)) }
            / when(c.kind == Kind::Boundary) n:eq_ne() _ v:boundary() { compare(n, Value::Str(v)) }

        rule when(ok: bool) = quiet!{ {? check(ok) } }

        rule eq_ne() -> bool = "!=" { true } / "=" { false }
        rule cmp() -> Cmp
            = "<=" { Cmp::Le } / ">=" { Cmp::Ge } / "!=" { Cmp::Ne } / "=" { Cmp::Eq } / "<" { Cmp::Lt } / ">" { Cmp::Gt }
        rule in_kw() -> bool = kw("NOTIN") { true } / kw("IN") { false }
        rule list<T>(item: rule<T>) -> Vec<T> = "(" _ v:(item() ++ (_ "," _)) _ ")" { v }
        rule not_word() = !['a'..='z' | 'A'..='Z' | '0'..='9' | '_']

        rule ip_test(c: &ConsoleColumn) -> Test
            = n:eq_ne() _ v:ip_or_net() {
                match v { Value::Net(net) => Test::Within { negated: n, net }, v => compare(n, v) }
            }
            / n:eq_ne() _ o:same_kind(c) { Test::Columns(if n { Cmp::Ne } else { Cmp::Eq }, o.name.clone()) }
            / "<<" _ net:net() { Test::Within { negated: false, net } }
            / "!<<" _ net:net() { Test::Within { negated: true, net } }
            / n:in_kw() _ values:list(<ip_or_net()>) { Test::In { negated: n, values } }
        rule ip_or_net() -> Value = n:net() { Value::Net(n) } / a:ip() { Value::Ip(a) }
        rule ip() -> Ipv6Addr
            = quiet!{ s:$(['0'..='9' | 'a'..='f' | 'A'..='F' | ':' | '.']+) not_word() {? parse_ip(s) } }
            / expected!("an IP address")
        rule net() -> Net
            = quiet!{ s:$(['0'..='9' | 'a'..='f' | 'A'..='F' | ':' | '.']+ "/" ['0'..='9']+) not_word() {? parse_net(s) } }
            / expected!("a subnet")

        rule uint(bits: u8) -> u64
            = quiet!{ s:$(['0'..='9']+) not_word() {? parse_uint(s, bits) } }
            / expected!(Kind::UInt { bits }.describe())
        rule uint_test(c: &ConsoleColumn) -> Test
            = op:cmp() _ v:uint(bits(c.kind)) { Test::Compare(op, Value::UInt(v)) }
            / op:cmp() _ o:same_kind(c) { Test::Columns(op, o.name.clone()) }
            / n:in_kw() _ v:list(<uint(bits(c.kind))>) { Test::In { negated: n, values: v.into_iter().map(Value::UInt).collect() } }

        rule int() -> i64
            = quiet!{ s:$("-"? ['0'..='9']+) not_word() {? s.parse::<i64>().map_err(|_| "") } }
            / expected!(Kind::Int.describe())
        rule int_test(c: &ConsoleColumn) -> Test
            = op:cmp() _ v:int() { Test::Compare(op, Value::Int(v)) }
            / op:cmp() _ o:same_kind(c) { Test::Columns(op, o.name.clone()) }
            / n:in_kw() _ v:list(<int()>) { Test::In { negated: n, values: v.into_iter().map(Value::Int).collect() } }

        rule proto() -> u64
            = uint(8)
            / quiet!{ s:string() {? proto_number(&s) } }
            / quiet!{ s:$(['a'..='z' | 'A'..='Z' | '0'..='9' | '-']+) not_word() {? proto_number(s) } }
            / expected!("a protocol name")
        rule proto_test(c: &ConsoleColumn) -> Test
            = op:cmp() _ v:proto() { Test::Compare(op, Value::UInt(v)) }
            / op:cmp() _ o:same_kind(c) { Test::Columns(op, o.name.clone()) }
            / n:in_kw() _ v:list(<proto()>) { Test::In { negated: n, values: v.into_iter().map(Value::UInt).collect() } }

        rule asn() -> u64
            = quiet!{ ['a' | 'A'] ['s' | 'S'] s:$(['0'..='9']+) not_word() {? parse_uint(s, 32) } }
            / quiet!{ s:$(['0'..='9']+) not_word() {? parse_uint(s, 32) } }
            / expected!("an AS number")
        rule asn_test(c: &ConsoleColumn) -> Test
            = n:eq_ne() _ v:asn() { compare(n, Value::UInt(v)) }
            / n:eq_ne() _ o:same_kind(c) { Test::Columns(if n { Cmp::Ne } else { Cmp::Eq }, o.name.clone()) }
            / n:in_kw() _ v:list(<asn()>) { Test::In { negated: n, values: v.into_iter().map(Value::UInt).collect() } }

        rule community() -> u64
            = quiet!{ a:$(['0'..='9']+) ":" b:$(['0'..='9']+) !(":" / ['a'..='z' | 'A'..='Z' | '_']) {? parse_community(a, b) } }
            / expected!("a community (a:b, 16-bit parts)")
        rule large_community() -> u128
            = quiet!{ a:$(['0'..='9']+) ":" b:$(['0'..='9']+) ":" c:$(['0'..='9']+) not_word() {? parse_large_community(a, b, c) } }
            / expected!("a large community (a:b:c, 32-bit parts)")

        rule mac() -> u64
            = quiet!{ s:$(['0'..='9' | 'a'..='f' | 'A'..='F' | ':' | '.' | '-']+) not_word() {? parse_mac(s) } }
            / expected!("a 6-byte MAC address")
        rule mac_test() -> Test
            = n:eq_ne() _ v:mac() { compare(n, Value::UInt(v)) }
            / n:in_kw() _ v:list(<mac()>) { Test::In { negated: n, values: v.into_iter().map(Value::UInt).collect() } }

        rule string() -> String
            = quiet!{&['\'' | '"']} s:(sq() / dq()) { s }
            / expected!("a quoted string")
        rule sq() -> String
            = "'" cs:(quiet!{"\\\\" { '\\' } / "\\'" { '\'' } / [^ '\'' | '\n' | '\r']})* (quiet!{"'"} / expected!("the closing quote (')")) {
                cs.into_iter().collect()
            }
        rule dq() -> String
            = "\"" cs:(quiet!{"\\\\" { '\\' } / "\\\"" { '"' } / [^ '"' | '\n' | '\r']})* (quiet!{"\""} / expected!("the closing quote (\")")) {
                cs.into_iter().collect()
            }
        rule str_test(c: &ConsoleColumn) -> Test
            = n:eq_ne() _ s:string() { compare(n, Value::Str(s)) }
            / n:eq_ne() _ o:same_kind(c) { Test::Columns(if n { Cmp::Ne } else { Cmp::Eq }, o.name.clone()) }
            / kw("LIKE") _ s:string() { Test::Like { negated: false, insensitive: false, pattern: s } }
            / kw("ILIKE") _ s:string() { Test::Like { negated: false, insensitive: true, pattern: s } }
            / kw("UNLIKE") _ s:string() { Test::Like { negated: true, insensitive: false, pattern: s } }
            / kw("IUNLIKE") _ s:string() { Test::Like { negated: true, insensitive: true, pattern: s } }
            / n:in_kw() _ v:list(<string()>) { Test::In { negated: n, values: v.into_iter().map(Value::Str).collect() } }

        rule word() -> &'input str = $(['a'..='z' | 'A'..='Z' | '0'..='9' | '-']+)
        rule etype() -> u64
            = quiet!{ s:word() not_word() {? etype_number(s) } } / uint(16) / expected!("IPv4 or IPv6")
        rule direction() -> u64
            = quiet!{ s:word() not_word() {? direction_number(s) } } / expected!("ingress or egress")
        rule boundary() -> String
            = quiet!{ s:word() not_word() {? boundary(s) } }
            / quiet!{ s:string() {? boundary(&s) } }
            / expected!("external, internal or undefined")
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
