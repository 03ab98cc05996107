//! HAProxy access-log lines for the benchmarks: the RFC 5424 form of the
//! README's HAProxy configuration, every line with distinct values.

use std::io::Write;

/// Distinct lines in HAProxy's RFC 5424 form with the README's fields.
pub fn haproxy_lines(n: usize) -> Vec<Vec<u8>> {
    let paths = ["/", "/index.html", "/static/app.js", "/api/v1/items?page=2", "/images/logo.png"];
    let agents = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1", "Go-http-client/1.1"];
    (0..n)
        .map(|i| {
            let mut line = Vec::with_capacity(512);
            let status = if i % 20 == 0 { 404 } else { 200 };
            let _ = write!(
                line,
                "<134>1 2026-11-21T12:00:{:02}.{:06}+00:00 cache1 haproxy 4242 - [weir@1 ci=\"10.{}.{}.{}\" \
                 cp=\"{}\" t=\"1795262400.{:03}\" ft=\"www\" b=\"app\" s=\"app{}\" TR=\"0\" Tw=\"0\" Tc=\"1\" \
                 Tr=\"{}\" Ta=\"{}\" ST=\"{status}\" B=\"{}\" tsc=\"----\" rt=\"{i}\" cache=\"0\" \
                 hr=\"{{cache.example|{}|req-{i}}}\" hs=\"{{text/html|HIT}}\"] \"GET {} HTTP/1.1\"",
                i / 1_000_000 % 60,
                i % 1_000_000,
                i % 256,
                i / 256 % 256,
                i / 65_536 % 256,
                1024 + i % 60_000,
                i % 1000,
                i % 4,
                i % 50,
                i % 50 + 1,
                500 + i % 100_000,
                agents[i % agents.len()],
                paths[i % paths.len()],
            );
            line
        })
        .collect()
}
