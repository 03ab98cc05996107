//! `weir query "SQL"`: a look inside the store until the console exists.
//!
//! It asks the running collector first (`POST /query` on its `http.listen`
//! address, answered on the store writer's connection): an embedded chDB
//! path is locked by the process that opened it, so that is the only way in
//! while `weir run` is up. When nothing answers there, it opens the store
//! itself. Either way the statement runs read-only unless
//! `http.query_writes` is on (`store::Engine::operator_query`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::config::read_config_printing_warnings as read_config;
use crate::store::Engine;

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The configuration file; its `[store]` and `[http]` sections are used.
    #[arg(long)]
    pub config: PathBuf,
    /// Output format (any ClickHouse output format: PrettyCompact, TSV, CSV, JSONEachRow...).
    #[arg(long, default_value = "PrettyCompact")]
    pub format: String,
    /// The running collector's HTTP address, when it is not `http.listen`.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// The SQL (tables live in the configured database: weir.flows, weir.flows_1m...).
    pub sql: String,
}

pub fn query_command(args: &QueryArgs) -> Result<(), String> {
    let config = read_config(&args.config)?;
    let address = args.http.or(config.http.listen.filter(|a| a.port() != 0));
    if let Some(output) = address.map(|a| ask_collector(a, &args.sql, &args.format)).transpose()?.flatten() {
        return print(&output);
    }
    let mut engine = Engine::connect(&config.store)?;
    print(&engine.operator_query(&args.sql, &args.format, config.http.query_writes)?)
}

fn print(output: &[u8]) -> Result<(), String> {
    std::io::stdout().write_all(output).map_err(|e| e.to_string())
}

/// The answer of a running collector; None when none listens there.
fn ask_collector(address: SocketAddr, sql: &str, format: &str) -> Result<Option<Vec<u8>>, String> {
    // A wildcard listen address is reached on loopback.
    let mut target = address;
    if target.ip().is_unspecified() {
        target.set_ip(if address.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else { return Ok(None) };
    let request = format!(
        "POST /query?format={format} HTTP/1.1\r\nHost: {target}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
        sql.len()
    );
    let mut response = Vec::new();
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.read_to_end(&mut response))
        .map_err(|e| format!("http://{target}/query: {e}"))?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("truncated answer from the collector")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response[split + 4..].to_vec();
    let status = head.split_whitespace().nth(1).unwrap_or("");
    match status {
        "200" => Ok(Some(body)),
        // An older collector, or one whose sink is not the store.
        "404" => Ok(None),
        // The collector's errors are JSON: {"error": "..."}.
        _ => Err(serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string())),
    }
}
