use super::*;

fn field(name: &str, source: Source, kind: Kind, required: bool) -> Field {
    Field { name: name.into(), source, kind, required, headers: Vec::new(), decode: kind.default_decode() }
}

fn sd(name: &str) -> Source {
    Source::Sd(name.into())
}

/// The format of the README's example and of the HAProxy test.
fn format() -> Format {
    let mut headers = field("request_headers", sd("hr"), Kind::Headers, false);
    headers.headers = vec!["host".into(), "user-agent".into(), "x-request-id".into()];
    let fields = vec![
        field("client_ip", sd("ci"), Kind::Ip, true),
        field("client_port", sd("cp"), Kind::Int, false),
        field("frontend", sd("ft"), Kind::String, false),
        field("backend", sd("b"), Kind::String, false),
        field("server", sd("s"), Kind::String, false),
        field("tr_ms", sd("Tr"), Kind::Int, false),
        field("ta_ms", sd("Ta"), Kind::Int, false),
        field("status", sd("ST"), Kind::Int, true),
        field("bytes", sd("B"), Kind::Int, false),
        field("request_counter", sd("rt"), Kind::Int, false),
        field("accept_ms", sd("t"), Kind::ClfTime, false),
        field("request", Source::Message(1), Kind::Request, true),
        headers,
        field("cache", Source::Message(0), Kind::String, false),
    ];
    Format::new("weir@1", fields, Some("request_counter"), Some("client_ip"))
}

const LINE: &str = "<134>1 2026-11-21T12:00:00.123456+01:00 cache1 haproxy 4242 - \
    [weir@1 ci=\"192.0.2.7\" cp=\"5123\" ft=\"www\" b=\"app\" s=\"app1\" Tr=\"3\" Ta=\"-1\" ST=\"200\" B=\"+512\" \
    rt=\"17\" t=\"21/Nov/2026:11:00:00.120\" hr=\"{example.com|Mozilla/5.0 (X11; Linux)|a#7Cb}\"][other@2 x=\"y\"] \
    HIT \"GET /a?b=c HTTP/1.1\"";

fn render(f: &Format, line: &str) -> Result<(serde_json::Value, Rendered<'static>), LineError> {
    let line: &'static str = Box::leak(line.to_string().into_boxed_str());
    let mut out = Vec::new();
    let r = f.render(line.as_bytes(), &mut out)?;
    Ok((serde_json::from_slice(&out).expect("valid JSON"), r))
}

#[test]
fn a_haproxy_line_becomes_typed_json() {
    let (v, r) = render(&format(), LINE).unwrap();
    // 12:00:00.123 at +01:00 is 11:00:00.123 UTC.
    let expected_ms = rfc3339_ms("2026-11-21T11:00:00.123Z").unwrap();
    assert_eq!(v["time_ms"], expected_ms);
    assert_eq!(v["accept_ms"], expected_ms - 3);
    assert_eq!(
        (v["host"].as_str(), v["program"].as_str(), v["pid"].as_str()),
        (Some("cache1"), Some("haproxy"), Some("4242"))
    );
    assert_eq!((v["facility"].as_u64(), v["severity"].as_u64()), (Some(16), Some(6)));
    assert_eq!(v["client_ip"], "192.0.2.7");
    assert_eq!(v["client_port"], 5123);
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 512);
    assert_eq!(v["ta_ms"], -1);
    assert_eq!(v["request"]["method"], "GET");
    assert_eq!(v["request"]["uri"], "/a?b=c");
    assert_eq!(v["request"]["version"], "HTTP/1.1");
    assert_eq!(v["request_headers"]["host"], "example.com");
    assert_eq!(v["request_headers"]["user-agent"], "Mozilla/5.0 (X11; Linux)");
    assert_eq!(v["request_headers"]["x-request-id"], "a|b", "#7C is HAProxy's escape of |");
    assert_eq!(v["cache"], "HIT");
    assert_eq!(r.counter, Some(17));
    assert_eq!(r.key.as_deref(), Some("192.0.2.7"));
    assert_eq!((&*r.host, &*r.procid, r.time_ms), ("cache1", "4242", expected_ms));
}

#[test]
fn escapes_in_structured_data_are_undone_and_json_is_escaped() {
    let f = Format::new("a", vec![field("v", sd("v"), Kind::String, true)], None, None);
    let (v, _) = render(&f, r#"<14>1 - - - - - [a v="q\"uo\\te\] \x"] msg"#).unwrap();
    assert_eq!(v["v"], r#"q"uo\te] \x"#);
    assert_eq!(v["time_ms"], 0);
    assert!(v["host"].is_null());
}

#[test]
fn missing_and_nil_fields() {
    let f = format();
    let without_status = LINE.replace(" ST=\"200\"", "");
    assert_eq!(render(&f, &without_status).unwrap_err().reason, LineReason::MissingField);
    let nil_status = LINE.replace("ST=\"200\"", "ST=\"-\"");
    let e = render(&f, &nil_status).unwrap_err();
    assert_eq!((e.reason, e.detail.as_str()), (LineReason::MissingField, "status"));
    // Optional ones are left out of the object.
    let (v, _) = render(&f, &LINE.replace("B=\"+512\"", "B=\"-\"")).unwrap();
    assert!(v.get("bytes").is_none());
    // No structured data at all: the required SD fields are missing.
    let e = render(&f, "<134>1 2026-11-21T12:00:00Z h haproxy 1 - - HIT \"GET / HTTP/1.1\"").unwrap_err();
    assert_eq!(e.reason, LineReason::MissingField);
}

#[test]
fn each_bad_line_has_its_reason() {
    let f = format();
    let cases: &[(&[u8], LineReason)] = &[
        (b"\xff\xfe", LineReason::BadHeader),
        (b"", LineReason::BadHeader),
        (b"hello world", LineReason::BadHeader),
        (b"<999>1 - - - - - -", LineReason::BadHeader),
        (b"<13>Nov 21 12:00:00 host app: BSD syslog", LineReason::BadHeader),
        (b"<13>1 2026-11-21", LineReason::BadHeader),
        (b"<13>1 yesterday h a 1 - - m", LineReason::BadTimestamp),
        (b"<13>1 2026-13-21T12:00:00Z h a 1 - - m", LineReason::BadTimestamp),
        (b"<13>1 2026-11-21T12:00:00+25:00 h a 1 - - m", LineReason::BadTimestamp),
        (b"<13>1 2026-11-21T12:00:00Z h a 1 - [weir@1 ci=\"1.2.3.4\" m", LineReason::BadStructuredData),
        (b"<13>1 2026-11-21T12:00:00Z h a 1 - [weir@1 ci=1.2.3.4] m", LineReason::BadStructuredData),
        (b"<13>1 2026-11-21T12:00:00Z h a 1 - junk m", LineReason::BadStructuredData),
    ];
    for (line, reason) in cases {
        let mut out = Vec::new();
        let e = f.render(line, &mut out).unwrap_err();
        assert_eq!(e.reason, *reason, "{:?}: {e}", String::from_utf8_lossy(line));
    }
    let bad_ip = LINE.replace("192.0.2.7", "192.0.2.700");
    assert_eq!(render(&f, &bad_ip).unwrap_err().reason, LineReason::BadField);
    let bad_int = LINE.replace("ST=\"200\"", "ST=\"2x\"");
    let e = render(&f, &bad_int).unwrap_err();
    assert_eq!((e.reason, e.detail.starts_with("status:")), (LineReason::BadField, true), "{e}");
}

#[test]
fn message_tokens_keep_quotes_and_braces_whole() {
    let mut out = Vec::new();
    message_tokens("a  \"b c\" {d e|f} g", 10, &mut out);
    assert_eq!(out, ["a", "\"b c\"", "{d e|f}", "g"]);
    out.clear();
    message_tokens("\"unterminated", 3, &mut out);
    assert_eq!(out, ["\"unterminated"]);
    out.clear();
    message_tokens("a b c", 2, &mut out);
    assert_eq!(out, ["a", "b"]);
}

#[test]
fn times() {
    assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(rfc3339_ms("1970-01-01T01:00:00.5+01:00"), Some(500));
    assert_eq!(rfc3339_ms("2000-03-01T00:00:00.000001-00:30"), Some(951_870_600_000));
    assert_eq!(clf_time_ms("01/Jan/1970:00:00:01.250"), Some(1250));
    assert_eq!(clf_time_ms("[01/Jan/1970:01:00:00 +0100]"), Some(0));
    assert_eq!(clf_time_ms("01/Foo/1970:00:00:00"), None);
    assert_eq!(epoch_ms("1795258800"), Some(1_795_258_800_000));
    assert_eq!(epoch_ms("12.3"), Some(12_300));
    assert_eq!(epoch_ms("-1"), None);
    assert_eq!(epoch_ms("1e9"), None);
}

#[test]
fn requests_without_a_method_and_a_trailing_newline() {
    let f = Format::new("x", vec![field("r", Source::Message(0), Kind::Request, true)], None, None);
    let (v, _) = render(&f, "<13>1 - - - - - - \"<BADREQ>\"\n").unwrap();
    assert!(v["r"]["method"].is_null());
    assert_eq!(v["r"]["uri"], "<BADREQ>");
}

/// The README's production shape: captured request headers in SD
/// parameters (`%{+E}[capture.req.hdr(N)]`, raw bytes), `%hr`, `%HP`.
fn captures(invalid: InvalidUtf8) -> Format {
    let mut hr = field("request_headers", sd("hr"), Kind::Headers, false);
    hr.headers = vec!["user-agent".into(), "referer".into()];
    let mut path = field("path", sd("HP"), Kind::String, false);
    path.decode = Decode::HaproxyHex;
    let fields = vec![
        field("user_agent", sd("ua"), Kind::String, false),
        field("referer", sd("ref"), Kind::String, false),
        field("status", sd("ST"), Kind::Int, false),
        path,
        field("query", sd("HQ"), Kind::String, false),
        hr,
        field("request", Source::Message(0), Kind::Request, false),
    ];
    Format::new("weir@1", fields, None, Some("user_agent")).with_invalid_utf8(invalid)
}

fn render_bytes(f: &Format, line: &[u8]) -> (serde_json::Value, Rendered<'static>) {
    let mut out = Vec::new();
    let r = f.render(line, &mut out).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(line)));
    let r = Rendered {
        host: Cow::Owned(r.host.into_owned()),
        procid: Cow::Owned(r.procid.into_owned()),
        key: r.key.map(|k| Cow::Owned(k.into_owned())),
        ..r
    };
    (serde_json::from_slice(&out).expect("valid JSON"), r)
}

fn sites(r: &Rendered) -> Vec<(&'static str, u16)> {
    r.repairs.counts().iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (Repairs::label(i), *n)).collect()
}

#[test]
fn invalid_utf8_is_replaced_in_the_field_it_is_in_and_counted() {
    // As HAProxy 2.6 logged them: a Latin-1 User-Agent, a Referer cut in
    // the middle of a two-byte character by `len 10`.
    let line = b"<134>1 2026-11-21T12:00:00Z cache1 haproxy 7 - [weir@1 ua=\"caf\xe9 latin\" ref=\"ab\xc3\xa9cdef\xc3\" ST=\"200\" \
        hr=\"{caf#E9|ok}\"] \"GET /ok HTTP/1.1\"";
    let (v, r) = render_bytes(&captures(InvalidUtf8::Replace), line);
    assert_eq!(v["user_agent"], "caf\u{fffd} latin");
    assert_eq!(v["referer"], "ab\u{e9}cdef\u{fffd}", "the valid character kept, the cut one replaced");
    assert_eq!(v["request_headers"]["user-agent"], "caf\u{fffd}", "#E9 decodes to a byte that is not UTF-8");
    assert_eq!(v["request"]["uri"], "/ok");
    assert_eq!(v["status"], 200);
    assert_eq!(sites(&r), [("string", 2), ("headers", 1)]);
    assert_eq!(r.key.as_deref(), Some("caf\u{fffd} latin"));
    let (v, r) = render_bytes(&captures(InvalidUtf8::Escape), line);
    assert_eq!(v["user_agent"], "caf\\xE9 latin");
    assert_eq!(v["referer"], "ab\u{e9}cdef\\xC3");
    assert_eq!(v["request_headers"]["user-agent"], "caf\\xE9");
    assert_eq!(sites(&r), [("string", 2), ("headers", 1)]);
    // A valid line repairs nothing.
    let (_, r) = render_bytes(&captures(InvalidUtf8::Replace), LINE.as_bytes());
    assert!(!r.repairs.any());
}

#[test]
fn invalid_utf8_in_the_header_the_message_and_escaped_sd_values() {
    let f = captures(InvalidUtf8::Replace);
    let line = b"<134>1 - cache\xff haproxy 7 - [weir@1 ua=\"a\\\"\xe9\\]\" other=\"\xe9\"] \"GET /x\xe9y HTTP/1.1\"\n";
    let (v, r) = render_bytes(&f, line);
    assert_eq!(v["host"], "cache\u{fffd}");
    assert_eq!(r.host, "cache\u{fffd}");
    assert_eq!(v["user_agent"], "a\"\u{fffd}]");
    assert_eq!(v["request"]["uri"], "/x\u{fffd}y");
    // Bytes in a parameter no field reads count nowhere.
    assert_eq!(sites(&r), [("syslog_header", 1), ("string", 1), ("request", 1)]);
    // An integer with a stray byte does not fit its type.
    let mut out = Vec::new();
    let e = f.render(b"<134>1 - - - - - [weir@1 ST=\"20\xe9\"] -", &mut out).unwrap_err();
    assert_eq!(e.reason, LineReason::BadField);
    // Only a structure that does not parse goes to the dead-letter topic.
    let e = f.render(b"<134>1 - - - - - [weir@1 ua=\"\xe9] -", &mut out).unwrap_err();
    assert_eq!(e.reason, LineReason::BadStructuredData);
}

#[test]
fn haproxy_hex_decoding_is_per_field() {
    // HAProxy 2.6 with `option accept-invalid-http-request`, for
    // `GET /été/"x"?q=<Latin-1 é>&r="1"`.
    let line = b"<134>1 - - haproxy 7 - [weir@1 HP=\"/#C3#A9t#C3#A9/#22x#22\" HQ=\"?q=#E9&r=#221#22\" \
        ua=\"x#22y\" hr=\"{a#2322b|#7C}\"] \"GET /#C3#A9t#C3#A9/#22x#22?q=#E9 HTTP/1.1\"";
    let (v, r) = render_bytes(&captures(InvalidUtf8::Replace), line);
    assert_eq!(v["path"], "/\u{e9}t\u{e9}/\"x\"", "decode = haproxy_hex");
    assert_eq!(v["query"], "?q=#E9&r=#221#22", "a string is kept as it is by default");
    assert_eq!(v["user_agent"], "x#22y", "a literal #22 a client sent survives in a single capture");
    assert_eq!(v["request_headers"]["user-agent"], "a#22b", "%hr writes # as #23");
    assert_eq!(v["request_headers"]["referer"], "|");
    assert_eq!(v["request"]["uri"], "/\u{e9}t\u{e9}/\"x\"?q=\u{fffd}");
    assert_eq!(sites(&r), [("request", 1)]);
    // A request field can keep the escapes.
    let mut request = field("request", Source::Message(0), Kind::Request, true);
    request.decode = Decode::None;
    let f = Format::new("weir@1", vec![request], None, None);
    let (v, r) = render_bytes(&f, line);
    assert_eq!(v["request"]["uri"], "/#C3#A9t#C3#A9/#22x#22?q=#E9");
    assert!(!r.repairs.any());
}

#[test]
fn unparsable_requests_are_flagged() {
    let f = captures(InvalidUtf8::Replace);
    let (_, r) = render_bytes(&f, b"<134>1 - - haproxy 7 - [weir@1 ST=\"400\" HP=\"<BADREQ>\"] \"<BADREQ>\"");
    assert!(r.bad_request);
    let (_, r) = render_bytes(&f, LINE.as_bytes());
    assert!(!r.bad_request);
}
