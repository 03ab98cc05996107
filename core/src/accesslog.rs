//! HAProxy access logs in RFC 5424 syslog form, to one JSON object each.
//!
//! HAProxy (`log ... format rfc5424`) sends one datagram per request:
//!
//! ```text
//! <134>1 2026-11-21T12:00:00.123456+01:00 cache1 haproxy 4242 - [weir@1 ci="192.0.2.7" st="200"] 192.0.2.7:5123 "GET / HTTP/1.1" {Mozilla/5.0|example.com}
//! PRI  V TIMESTAMP (fraction, offset)     HOST   APP     PROCID MSGID SD (log-format-sd)      MSG (log-format)
//! ```
//!
//! `Format` is compiled once from the configuration: each field names its
//! source (a parameter of the structured-data element with the configured
//! SD-ID, or the Nth token of the message), a type and whether it is
//! required. `Format::render` parses one line without copying it (only
//! escaped values are unescaped, and only those) and writes the JSON object
//! into a reused buffer:
//!
//! ```json
//! {"time_ms":1795258800123,"host":"cache1","program":"haproxy","pid":"4242",
//!  "facility":16,"severity":6,"client_ip":"192.0.2.7","status":200,...}
//! ```
//!
//! A line that does not parse, or misses a required field, is an error
//! with one `LineReason` (a bounded set: the `reason` label of the metrics
//! and of the dead-letter messages).
//!
//! Bytes that are not UTF-8 never cost a line: HAProxy copies captured
//! header bytes as they came (a Latin-1 User-Agent) and cuts captures at a
//! byte count (a multi-byte character cut in two). Each invalid sequence is
//! replaced (U+FFFD) or written as escaped bytes (`\xE9`), as
//! `InvalidUtf8` says, in the field it occurs in, and `Rendered::repairs`
//! counts the fields so repaired, per kind. The same holds for bytes a
//! field's `#XX` decoding (`Decode::HaproxyHex`) yields.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;

/// Why a line was not turned into a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineReason {
    /// Longer than the configured maximum (cut by the kernel).
    TooLong,
    /// The RFC 5424 header (PRI, version, host, app, procid, msgid) is malformed.
    BadHeader,
    /// The header's timestamp is not RFC 3339.
    BadTimestamp,
    /// The structured data does not follow RFC 5424.
    BadStructuredData,
    /// A required field is absent or `-`.
    MissingField,
    /// A field's value does not fit its type.
    BadField,
}

impl LineReason {
    pub const ALL: [LineReason; 6] = [
        LineReason::TooLong,
        LineReason::BadHeader,
        LineReason::BadTimestamp,
        LineReason::BadStructuredData,
        LineReason::MissingField,
        LineReason::BadField,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LineReason::TooLong => "too_long",
            LineReason::BadHeader => "bad_header",
            LineReason::BadTimestamp => "bad_timestamp",
            LineReason::BadStructuredData => "bad_structured_data",
            LineReason::MissingField => "missing_field",
            LineReason::BadField => "bad_field",
        }
    }
}

/// A line that could not be used: the reason and what it was about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub reason: LineReason,
    pub detail: String,
}

impl LineError {
    fn new(reason: LineReason, detail: impl Into<String>) -> Self {
        LineError { reason, detail: detail.into() }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.label(), self.detail)
    }
}

/// How a field's text becomes a JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// As it is.
    String,
    /// A signed integer (HAProxy's timers are -1 when they did not run; a
    /// leading `+`, as in `%B` with `option logasap`, is accepted).
    Int,
    /// An IPv4 or IPv6 address, checked.
    Ip,
    /// `21/Nov/2026:12:00:00.123` with an optional ` +0100` (HAProxy's `%t`,
    /// `%T`; no offset means UTC): epoch milliseconds.
    ClfTime,
    /// Seconds since the epoch, optionally with a fraction (`%Ts`): epoch ms.
    EpochSeconds,
    /// `GET /path?q HTTP/1.1` (`%r`): `{"method", "uri", "version"}`.
    Request,
    /// Captured headers `{a|b|c}` (`%hr`, `%hs`): an object keyed by the
    /// field's `headers` names, in order; HAProxy's `#XX` escapes decoded.
    Headers,
}

impl Kind {
    pub const ALL: [Kind; 7] =
        [Kind::String, Kind::Int, Kind::Ip, Kind::ClfTime, Kind::EpochSeconds, Kind::Request, Kind::Headers];

    /// The configuration's name (also the `kind` label of the metrics).
    pub fn label(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Int => "int",
            Kind::Ip => "ip",
            Kind::ClfTime => "clf_time",
            Kind::EpochSeconds => "epoch_seconds",
            Kind::Request => "request",
            Kind::Headers => "headers",
        }
    }

    /// How the kind reads HAProxy's `#XX` escapes unless a field says:
    /// `%r`, `%hr` and `%hs` always escape (`#` itself as `#23`), so they
    /// are decoded; anything else, a single captured header above all, is
    /// taken as it is (a literal `#22` a client sent survives).
    pub fn default_decode(self) -> Decode {
        match self {
            Kind::Request | Kind::Headers => Decode::HaproxyHex,
            _ => Decode::None,
        }
    }

    /// Whether a `decode` option means anything for the kind (text kinds).
    pub fn decodes(self) -> bool {
        matches!(self, Kind::String | Kind::Request | Kind::Headers)
    }
}

/// How a text field's escapes are undone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    /// As it is.
    #[default]
    None,
    /// HAProxy's `#XX` (hex) escapes, as `%r`, `%HU`, `%HP`, `%HQ`, `%hr`
    /// and `%hs` write `"`, `#`, control and non-ASCII bytes, undone.
    HaproxyHex,
}

/// What bytes that are not UTF-8 become, in the field they occur in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidUtf8 {
    /// One U+FFFD per invalid sequence.
    #[default]
    Replace,
    /// Each invalid byte as the four characters `\xHH` (upper-case hex).
    Escape,
}

impl InvalidUtf8 {
    /// The `reason` label of the fields repaired this way.
    pub fn label(self) -> &'static str {
        match self {
            InvalidUtf8::Replace => "invalid_utf8_replaced",
            InvalidUtf8::Escape => "invalid_utf8_escaped",
        }
    }
}

/// Fields of one line whose invalid UTF-8 was repaired, per site: the
/// syslog header's host, app-name and procid, then each `Kind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repairs([u16; Repairs::SITES]);

impl Repairs {
    pub const SITES: usize = Kind::ALL.len() + 1;

    /// The `kind` label of each site.
    pub fn label(site: usize) -> &'static str {
        match site.checked_sub(1) {
            None => "syslog_header",
            Some(k) => Kind::ALL.get(k).map_or("unknown", |k| k.label()),
        }
    }

    fn header(&mut self) {
        self.0[0] = self.0[0].saturating_add(1);
    }

    fn field(&mut self, kind: Kind) {
        let site = &mut self.0[1 + kind as usize];
        *site = site.saturating_add(1);
    }

    /// Fields repaired, by site.
    pub fn counts(&self) -> &[u16; Repairs::SITES] {
        &self.0
    }

    pub fn any(&self) -> bool {
        self.0.iter().any(|&n| n > 0)
    }
}

/// Where a field's text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A parameter of the structured-data element with the format's SD-ID.
    Sd(String),
    /// The Nth token of the message (0-based; tokens are separated by
    /// spaces, and `"..."` or `{...}` is one token).
    Message(usize),
}

/// One output field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The JSON key.
    pub name: String,
    pub source: Source,
    pub kind: Kind,
    pub required: bool,
    /// For `Kind::Headers`: the captured headers' names, in capture order.
    pub headers: Vec<String>,
    /// Escapes undone in the text (see `Kind::default_decode`).
    pub decode: Decode,
}

/// The configured log format, compiled.
#[derive(Clone, Debug)]
pub struct Format {
    sd_id: String,
    fields: Vec<Field>,
    /// Index into `fields` of HAProxy's request counter (`%rt`).
    counter: Option<usize>,
    /// Index into `fields` of the Kafka message key.
    key: Option<usize>,
    /// The largest message position any field reads.
    positions: usize,
    /// SD parameter name to the fields that read it.
    by_param: HashMap<String, Vec<usize>>,
    invalid_utf8: InvalidUtf8,
}

/// What `render` learnt besides the JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered<'a> {
    /// The header's timestamp, epoch ms.
    pub time_ms: i64,
    pub host: Cow<'a, str>,
    pub procid: Cow<'a, str>,
    /// The request counter, when configured and present.
    pub counter: Option<i64>,
    /// The key field's text, when configured and present.
    pub key: Option<Cow<'a, str>>,
    /// HAProxy could not parse the request: a request or string field is
    /// `<BADREQ>` (HAProxy 2.6 numbers such a request but also uses up the
    /// next counter value).
    pub bad_request: bool,
    /// Fields whose invalid UTF-8 was repaired.
    pub repairs: Repairs,
}

/// A typed value of a line, as `render_with` hands it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Text(&'a str),
    Int(i64),
    Ip(IpAddr),
    /// Epoch milliseconds (`clf_time`, `epoch_seconds`).
    Ms(i64),
}

/// The syslog header of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderValues<'a> {
    pub time_ms: i64,
    pub host: &'a str,
    pub program: &'a str,
    pub pid: &'a str,
    pub facility: u8,
    pub severity: u8,
}

/// Takes a line's typed values as they are parsed (the store's columns).
/// A line that fails after some values came is still refused by
/// `render_with`: the taker drops what it got of it.
pub trait Values {
    fn header(&mut self, header: HeaderValues<'_>);
    /// Field `field` (index into `Format::fields`), part `part`: 0 but for
    /// a request (0 method, 1 URI, 2 version) and captured headers (the
    /// header's index). A field the line lacks, or `-`, comes not at all.
    fn value(&mut self, field: usize, part: usize, value: Value<'_>);
}

/// A `Values` that keeps nothing (`render`).
struct NoValues;

impl Values for NoValues {
    fn header(&mut self, _: HeaderValues<'_>) {}
    fn value(&mut self, _: usize, _: usize, _: Value<'_>) {}
}

impl Rendered<'_> {
    fn into_owned(self) -> Rendered<'static> {
        Rendered {
            host: Cow::Owned(self.host.into_owned()),
            procid: Cow::Owned(self.procid.into_owned()),
            key: self.key.map(|k| Cow::Owned(k.into_owned())),
            ..self
        }
    }
}

impl Format {
    /// `counter` and `key` name fields of `fields` (checked by the config).
    pub fn new(sd_id: &str, fields: Vec<Field>, counter: Option<&str>, key: Option<&str>) -> Format {
        let find = |name: Option<&str>| name.and_then(|n| fields.iter().position(|f| f.name == n));
        let positions = fields
            .iter()
            .filter_map(|f| match f.source {
                Source::Message(i) => Some(i + 1),
                Source::Sd(_) => None,
            })
            .max()
            .unwrap_or(0);
        let mut by_param: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            if let Source::Sd(name) = &f.source {
                by_param.entry(name.clone()).or_default().push(i);
            }
        }
        Format {
            sd_id: sd_id.to_string(),
            counter: find(counter),
            key: find(key),
            positions,
            fields,
            by_param,
            invalid_utf8: InvalidUtf8::default(),
        }
    }

    /// What invalid UTF-8 becomes (replaced unless set).
    pub fn with_invalid_utf8(mut self, invalid_utf8: InvalidUtf8) -> Format {
        self.invalid_utf8 = invalid_utf8;
        self
    }

    pub fn invalid_utf8(&self) -> InvalidUtf8 {
        self.invalid_utf8
    }

    /// Whether a request counter field is configured.
    pub fn counts_requests(&self) -> bool {
        self.counter.is_some()
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Parses `line` and writes its JSON object to `out` (cleared first).
    pub fn render<'a>(&self, line: &'a [u8], out: &mut Vec<u8>) -> Result<Rendered<'a>, LineError> {
        self.render_with(line, out, &mut NoValues)
    }

    /// `render`, handing each typed value to `values` too.
    pub fn render_with<'a>(
        &self,
        line: &'a [u8],
        out: &mut Vec<u8>,
        values: &mut dyn Values,
    ) -> Result<Rendered<'a>, LineError> {
        match std::str::from_utf8(line) {
            Ok(text) => self.render_text(text, &[], out, values),
            // Rare: repaired into a copy, the structure unchanged (only
            // bytes of 0x80 and above are ever invalid; the structure is ASCII).
            Err(_) => {
                let mut text = String::with_capacity(line.len() + 16);
                let mut at = Vec::new();
                repair_into(line, self.invalid_utf8, &mut text, &mut at);
                self.render_text(&text, &at, out, values).map(Rendered::into_owned)
            }
        }
    }

    /// `render` of a line in text; `repaired` holds the offsets in `text`
    /// where an invalid sequence was repaired (ascending).
    fn render_text<'a>(
        &self,
        text: &'a str,
        repaired: &[usize],
        out: &mut Vec<u8>,
        values_out: &mut dyn Values,
    ) -> Result<Rendered<'a>, LineError> {
        out.clear();
        // HAProxy ends lines with a newline on some transports.
        let text = text.strip_suffix('\n').unwrap_or(text);
        let line = Line::parse(text)?;
        let touched = |span: &str| touches(text, repaired, span);
        // Each field's SD value (the raw text and the unescaped value), by field index.
        let mut values: Vec<Option<(&'a str, Cow<'a, str>)>> = vec![None; self.fields.len()];
        if let Some(sd) = line.structured_data {
            sd_params(sd, &self.sd_id, &mut |name, raw, value| {
                if let Some(fields) = self.by_param.get(name) {
                    for &i in fields {
                        values[i] = Some((raw, value.clone()));
                    }
                }
            })?;
        }
        let mut tokens: Vec<&str> = Vec::with_capacity(self.positions);
        message_tokens(line.message, self.positions, &mut tokens);
        let h = &line.header;
        let mut rendered = Rendered {
            time_ms: h.time_ms,
            host: Cow::Borrowed(h.host),
            procid: Cow::Borrowed(h.procid),
            ..Default::default()
        };
        for part in [h.host, h.app, h.procid] {
            if touched(part) {
                rendered.repairs.header();
            }
        }
        out.extend_from_slice(b"{\"time_ms\":");
        // Writes to a Vec cannot fail.
        let _ = write!(out, "{}", h.time_ms);
        out.extend_from_slice(b",\"host\":");
        json_nil_or_str(out, h.host);
        out.extend_from_slice(b",\"program\":");
        json_nil_or_str(out, h.app);
        out.extend_from_slice(b",\"pid\":");
        json_nil_or_str(out, h.procid);
        let _ = write!(out, ",\"facility\":{},\"severity\":{}", h.pri >> 3, h.pri & 7);
        values_out.header(HeaderValues {
            time_ms: h.time_ms,
            host: h.host,
            program: h.app,
            pid: h.procid,
            facility: h.pri >> 3,
            severity: h.pri & 7,
        });
        for (i, field) in self.fields.iter().enumerate() {
            let value: Option<(&'a str, Cow<'a, str>)> = match &field.source {
                Source::Sd(_) => values[i].take(),
                Source::Message(p) => tokens.get(*p).map(|t| (*t, Cow::Borrowed(*t))),
            };
            let value = value.filter(|(_, v)| v != "-" && !v.is_empty());
            let Some((raw, value)) = value else {
                if field.required {
                    return Err(LineError::new(LineReason::MissingField, field.name.clone()));
                }
                continue;
            };
            // `<BADREQ>`, quoted or not (length first: most values are longer).
            if matches!(value.len(), 8 | 10)
                && matches!(field.kind, Kind::Request | Kind::String)
                && value.trim_matches('"') == "<BADREQ>"
            {
                rendered.bad_request = true;
            }
            out.push(b',');
            json_str(out, &field.name);
            out.push(b':');
            let mut take = |part: usize, v: Value<'_>| values_out.value(i, part, v);
            let written = write_value(out, field, &value, self.invalid_utf8, &mut take)
                .map_err(|why| LineError::new(LineReason::BadField, format!("{}: {why}", field.name)))?;
            if written.repaired || touched(raw) {
                rendered.repairs.field(field.kind);
            }
            if Some(i) == self.counter {
                rendered.counter = written.int;
            }
            if Some(i) == self.key {
                rendered.key = Some(value);
            }
        }
        out.push(b'}');
        Ok(rendered)
    }
}

/// Whether a repair offset of `text` lies in `span` (a slice of `text`).
fn touches(text: &str, repaired: &[usize], span: &str) -> bool {
    if repaired.is_empty() {
        return false;
    }
    let start = (span.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let first = repaired.partition_point(|&at| at < start);
    repaired.get(first).is_some_and(|&at| at < start + span.len())
}

/// `bytes` into `out`, each invalid UTF-8 sequence repaired as `mode`
/// says; the offset in `out` of each repair is pushed to `at`.
fn repair_into(bytes: &[u8], mode: InvalidUtf8, out: &mut String, at: &mut Vec<usize>) {
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if chunk.invalid().is_empty() {
            continue;
        }
        at.push(out.len());
        match mode {
            InvalidUtf8::Replace => out.push(char::REPLACEMENT_CHARACTER),
            InvalidUtf8::Escape => {
                for b in chunk.invalid() {
                    let _ = fmt::Write::write_fmt(out, format_args!("\\x{b:02X}"));
                }
            }
        }
    }
}

/// What `write_value` wrote besides the JSON.
struct Written {
    /// The integer of a `Kind::Int`.
    int: Option<i64>,
    /// Decoding escapes yielded invalid UTF-8, repaired.
    repaired: bool,
}

/// Writes `value` as `field.kind`.
/// Writes `value` as `field.kind`, and hands its typed parts to `take`.
fn write_value(
    out: &mut Vec<u8>,
    field: &Field,
    value: &str,
    invalid: InvalidUtf8,
    take: &mut dyn FnMut(usize, Value<'_>),
) -> Result<Written, String> {
    let mut repaired = false;
    let mut decoded = |s| decode(s, field.decode, invalid, &mut repaired);
    match field.kind {
        Kind::String => {
            let text = decoded(value);
            json_str(out, &text);
            take(0, Value::Text(&text));
        }
        Kind::Int => {
            let n: i64 =
                value.strip_prefix('+').unwrap_or(value).parse().map_err(|_| format!("{value:?} is not an integer"))?;
            let _ = write!(out, "{n}");
            take(0, Value::Int(n));
            return Ok(Written { int: Some(n), repaired: false });
        }
        Kind::Ip => {
            let ip: IpAddr = value.parse().map_err(|_| format!("{value:?} is not an IP address"))?;
            // An address's text needs no JSON escaping.
            let _ = write!(out, "\"{ip}\"");
            take(0, Value::Ip(ip));
        }
        Kind::ClfTime => {
            let ms =
                clf_time_ms(value).ok_or_else(|| format!("{value:?} is not dd/Mon/yyyy:HH:MM:SS[.mmm] [+zzzz]"))?;
            let _ = write!(out, "{ms}");
            take(0, Value::Ms(ms));
        }
        Kind::EpochSeconds => {
            let ms = epoch_ms(value).ok_or_else(|| format!("{value:?} is not seconds since the epoch"))?;
            let _ = write!(out, "{ms}");
            take(0, Value::Ms(ms));
        }
        Kind::Request => {
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            let mut parts = value.splitn(3, ' ');
            let (first, second, third) = (parts.next(), parts.next(), parts.next());
            let (method, uri, version) = match (first, second, third) {
                (Some(m), Some(u), v) => (Some(m), u, v),
                // `<BADREQ>` and the like: no method to tell.
                (Some(u), None, _) => (None, u, None),
                _ => (None, "", None),
            };
            let (method, uri, version) = (method.map(&mut decoded), decoded(uri), version.map(&mut decoded));
            out.extend_from_slice(b"{\"method\":");
            json_opt_str(out, method.as_deref());
            out.extend_from_slice(b",\"uri\":");
            json_str(out, &uri);
            out.extend_from_slice(b",\"version\":");
            json_opt_str(out, version.as_deref());
            out.push(b'}');
            if let Some(m) = &method {
                take(0, Value::Text(m));
            }
            take(1, Value::Text(&uri));
            if let Some(v) = &version {
                take(2, Value::Text(v));
            }
        }
        Kind::Headers => {
            let inner = value
                .strip_prefix('{')
                .and_then(|v| v.strip_suffix('}'))
                .ok_or_else(|| format!("{value:?} is not a {{a|b}} header capture"))?;
            out.push(b'{');
            for (i, (name, v)) in field.headers.iter().zip(inner.split('|')).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, name);
                out.push(b':');
                let text = decoded(v);
                json_str(out, &text);
                take(i, Value::Text(&text));
            }
            out.push(b'}');
        }
    }
    Ok(Written { int: None, repaired })
}

/// `s` with the escapes `how` names undone; `repaired` is set when that
/// yielded invalid UTF-8.
fn decode<'s>(s: &'s str, how: Decode, invalid: InvalidUtf8, repaired: &mut bool) -> Cow<'s, str> {
    match how {
        Decode::None => Cow::Borrowed(s),
        Decode::HaproxyHex => {
            let (text, bad) = hash_decoded(s, invalid);
            *repaired |= bad;
            text
        }
    }
}

/// HAProxy escapes bytes in logged values as `#XX` (hex); undoes it. A `#`
/// not followed by two hex digits stays as it is. Decoded bytes that are
/// not UTF-8 are repaired as `invalid` says (then the flag is true).
fn hash_decoded(s: &str, invalid: InvalidUtf8) -> (Cow<'_, str>, bool) {
    if !s.contains('#') {
        return (Cow::Borrowed(s), false);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'#', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(text) => (Cow::Owned(text), false),
        Err(e) => {
            let mut text = String::with_capacity(b.len() + 8);
            repair_into(e.as_bytes(), invalid, &mut text, &mut Vec::new());
            (Cow::Owned(text), true)
        }
    }
}

struct Header<'a> {
    pri: u8,
    time_ms: i64,
    host: &'a str,
    app: &'a str,
    procid: &'a str,
}

struct Line<'a> {
    header: Header<'a>,
    /// The SD text (`[...]...`), or `None` for `-`.
    structured_data: Option<&'a str>,
    message: &'a str,
}

impl<'a> Line<'a> {
    fn parse(text: &'a str) -> Result<Line<'a>, LineError> {
        let bad = |what: &str| LineError::new(LineReason::BadHeader, what.to_string());
        let rest = text.strip_prefix('<').ok_or_else(|| bad("no <PRI>"))?;
        let (pri, rest) = rest.split_once('>').ok_or_else(|| bad("no <PRI>"))?;
        let pri: u8 = match pri.parse() {
            Ok(p) if p <= 191 && pri.len() <= 3 && !pri.starts_with('+') => p,
            _ => return Err(bad("PRI is not 0..=191")),
        };
        let rest = rest.strip_prefix("1 ").ok_or_else(|| bad("version is not 1 (is the log line RFC 5424?)"))?;
        let mut parts = rest.splitn(6, ' ');
        let mut next = |what| parts.next().filter(|p| !p.is_empty()).ok_or_else(|| bad(what));
        let timestamp = next("no timestamp")?;
        let host = next("no hostname")?;
        let app = next("no app-name")?;
        let procid = next("no procid")?;
        let _msgid = next("no msgid")?;
        let rest = parts.next().unwrap_or("");
        let time_ms = if timestamp == "-" {
            0
        } else {
            rfc3339_ms(timestamp).ok_or_else(|| LineError::new(LineReason::BadTimestamp, timestamp.to_string()))?
        };
        let (structured_data, message) = if let Some(after) = rest.strip_prefix('-') {
            (None, after.strip_prefix(' ').unwrap_or(after))
        } else if rest.starts_with('[') {
            let end = sd_end(rest)?;
            let message = &rest[end..];
            (Some(&rest[..end]), message.strip_prefix(' ').unwrap_or(message))
        } else {
            return Err(LineError::new(LineReason::BadStructuredData, "neither [ nor -"));
        };
        // RFC 5424 allows a UTF-8 BOM before the message.
        let message = message.strip_prefix('\u{feff}').unwrap_or(message);
        Ok(Line { header: Header { pri, time_ms, host, app, procid }, structured_data, message })
    }
}

/// The length of the SD elements at the start of `s` (`[..][..]`).
fn sd_end(s: &str) -> Result<usize, LineError> {
    let b = s.as_bytes();
    let bad = |what: &str| LineError::new(LineReason::BadStructuredData, what.to_string());
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        let (mut quoted, mut escaped) = (false, false);
        i += 1;
        loop {
            let c = *b.get(i).ok_or_else(|| bad("element not closed"))?;
            i += 1;
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (_, false, b'"') => quoted = !quoted,
                (false, _, b']') => break,
                _ => {}
            }
        }
    }
    Ok(i)
}

/// The parameters of the element `[id name="value" ...]` in `sd`, values
/// unescaped (`\"`, `\\`, `\]`), after the raw text of each. Other
/// elements are skipped.
fn sd_params<'a>(sd: &'a str, id: &str, out: &mut dyn FnMut(&str, &'a str, Cow<'a, str>)) -> Result<(), LineError> {
    let bad = |what: String| LineError::new(LineReason::BadStructuredData, what);
    let mut rest = sd;
    while let Some(element) = rest.strip_prefix('[') {
        let name_end = element.find([' ', ']']).ok_or_else(|| bad("element not closed".into()))?;
        let this_id = &element[..name_end];
        let mut p = &element[name_end..];
        loop {
            p = p.trim_start_matches(' ');
            if let Some(after) = p.strip_prefix(']') {
                rest = after;
                break;
            }
            let (name, quoted) = p
                .split_once('=')
                .and_then(|(name, after)| Some((name, after.strip_prefix('"')?)))
                .ok_or_else(|| bad(format!("[{this_id}: a parameter without =\"")))?;
            if name.is_empty() || name.contains([' ', ']', '"']) {
                return Err(bad(format!("[{this_id}: bad parameter name {name:?}")));
            }
            let (value, after) = sd_value(quoted).ok_or_else(|| bad(format!("[{this_id} {name}: value not closed")))?;
            if this_id == id {
                // Up to the closing quote.
                let raw = &quoted[..quoted.len() - after.len() - 1];
                out(name, raw, value);
            }
            p = after;
        }
    }
    Ok(())
}

/// A quoted SD value up to its closing quote: (unescaped value, rest).
fn sd_value(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut escapes = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                escapes = true;
                i += 2;
            }
            b'"' => {
                let raw = &s[..i];
                let value = if escapes { Cow::Owned(sd_unescape(raw)) } else { Cow::Borrowed(raw) };
                return Some((value, &s[i + 1..]));
            }
            _ => i += 1,
        }
    }
    None
}

fn sd_unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ ('"' | '\\' | ']'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The first `n` tokens of the message: space-separated, a `"..."` or a
/// `{...}` run being one token with its quotes or braces.
fn message_tokens<'a>(message: &'a str, n: usize, out: &mut Vec<&'a str>) {
    let b = message.as_bytes();
    let mut i = 0;
    while out.len() < n {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if i >= b.len() {
            return;
        }
        let start = i;
        let close = match b[i] {
            b'"' => Some(b'"'),
            b'{' => Some(b'}'),
            _ => None,
        };
        match close {
            Some(close) => {
                i += 1;
                while i < b.len() && b[i] != close {
                    i += 1;
                }
                i = (i + 1).min(b.len());
            }
            None => {
                while i < b.len() && b[i] != b' ' {
                    i += 1;
                }
            }
        }
        out.push(&message[start..i]);
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Most values need no escaping: copied as they are.
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// RFC 5424's NILVALUE `-` as null.
fn json_nil_or_str(out: &mut Vec<u8>, s: &str) {
    json_opt_str(out, (s != "-").then_some(s));
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp as i64 + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `n` ASCII digits at the start of `s`: their value and the rest.
fn digits(s: &str, n: usize) -> Option<(u32, &str)> {
    let d = s.get(..n)?;
    if !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((d.parse().ok()?, &s[n..]))
}

/// Epoch ms of a wall-clock time, after range checks.
fn epoch_ms_of((y, mo, d): (u32, u32, u32), (h, mi, s): (u32, u32, u32), ms: u32, offset_min: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y as i64, mo, d);
    Some(((days * 86_400 + (h * 3600 + mi * 60 + s) as i64 - offset_min * 60) * 1000) + ms as i64)
}

/// `.123456` (any number of digits) as ms; the rest after it.
fn fraction_ms(s: &str) -> (u32, &str) {
    let Some(f) = s.strip_prefix('.') else { return (0, s) };
    let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
    let ms =
        f[..end].bytes().take(3).fold(0u32, |v, c| v * 10 + u32::from(c - b'0')) * 10u32.pow(3 - end.min(3) as u32);
    (ms, &f[end..])
}

/// `2026-11-21T12:00:00.123456+01:00` (or `Z`) to epoch ms.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let (y, s) = digits(s, 4)?;
    let (mo, s) = digits(s.strip_prefix('-')?, 2)?;
    let (d, s) = digits(s.strip_prefix('-')?, 2)?;
    let (h, s) = digits(s.strip_prefix(['T', 't'])?, 2)?;
    let (mi, s) = digits(s.strip_prefix(':')?, 2)?;
    let (sec, s) = digits(s.strip_prefix(':')?, 2)?;
    let (ms, s) = fraction_ms(s);
    let offset = match s {
        "Z" | "z" => 0,
        _ => {
            let sign = match s.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, rest) = digits(&s[1..], 2)?;
            let (om, rest) = digits(rest.strip_prefix(':')?, 2)?;
            if !rest.is_empty() || oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 60 + om) as i64
        }
    };
    epoch_ms_of((y, mo, d), (h, mi, sec), ms, offset)
}

/// `21/Nov/2026:12:00:00.123 +0100` (offset optional: UTC) to epoch ms.
pub fn clf_time_ms(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let s = s.strip_prefix('[').map_or(s, |s| s.strip_suffix(']').unwrap_or(s));
    let (d, s) = digits(s, 2)?;
    let s = s.strip_prefix('/')?;
    let mo = MONTHS.iter().position(|m| s.starts_with(m))? as u32 + 1;
    let (y, s) = digits(s.get(3..)?.strip_prefix('/')?, 4)?;
    let (h, s) = digits(s.strip_prefix(':')?, 2)?;
    let (mi, s) = digits(s.strip_prefix(':')?, 2)?;
    let (sec, s) = digits(s.strip_prefix(':')?, 2)?;
    let (ms, s) = fraction_ms(s);
    let offset = match s.strip_prefix(' ') {
        None if s.is_empty() => 0,
        Some(z) if z.len() == 5 => {
            let sign = match z.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, rest) = digits(&z[1..], 2)?;
            let (om, _) = digits(rest, 2)?;
            sign * (oh * 60 + om) as i64
        }
        _ => return None,
    };
    epoch_ms_of((y, mo, d), (h, mi, sec), ms, offset)
}

/// `1795258800` or `1795258800.123` to epoch ms.
pub fn epoch_ms(s: &str) -> Option<i64> {
    let (whole, rest) = s.split_at(s.find('.').unwrap_or(s.len()));
    if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) || whole.len() > 12 {
        return None;
    }
    let (ms, rest) = fraction_ms(rest);
    rest.is_empty().then(|| whole.parse::<i64>().ok()).flatten().map(|s| s * 1000 + ms as i64)
}

#[cfg(test)]
#[path = "accesslog_tests.rs"]
mod tests;
