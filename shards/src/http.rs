//! The control-plane HTTP server: `/metrics`, health, `/version`,
//! `/latency`, the profiling endpoints and `POST /query`.
//!
//! One thread answers one request at a time (a scrape every few seconds
//! needs no more); a CPU profile, which takes seconds, gets a thread of its
//! own so scrapes and health checks go on meanwhile.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use prometheus_client::registry::Registry;

use crate::exposition;
use crate::metrics::Metrics;
use crate::profile::{self, CpuError, CpuFormat};
use crate::store::writer::QueryRequest;

/// What the server needs besides the socket.
pub struct Server {
    pub metrics: Arc<Metrics>,
    /// Present with the store as sink: `POST /query`.
    pub queries: Option<Sender<QueryRequest>>,
    /// `http.debug`: the profiling endpoints.
    pub debug: bool,
}

type Response = (&'static str, &'static str, Vec<u8>);

/// Binds the address (an error here stops start-up) and serves it on a
/// thread. `POST /query?format=F` (the SQL as the body) runs a query on the
/// store writer's connection, for `weir query`: from loopback peers only,
/// since it runs any SQL.
pub fn serve(address: SocketAddr, server: Server) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let local = listener.local_addr()?;
    let registry = exposition::registry(server.metrics.clone());
    std::thread::Builder::new().name("weir-http".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = server.answer(stream, &registry);
        }
    })?;
    Ok(local)
}

struct Request {
    method: String,
    path: String,
    query: String,
    accept: String,
    body: Vec<u8>,
}

impl Request {
    fn read(stream: &TcpStream) -> std::io::Result<Request> {
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or(""));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let (path, query) = (path.to_string(), query.to_string());
        // Read the headers to their end so the client sees a clean close.
        let (mut content_length, mut accept) = (0usize, String::new());
        line.clear();
        while reader.read_line(&mut line)? > 2 {
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("accept") {
                    accept = value.trim().to_string();
                }
            }
            line.clear();
        }
        let mut body = vec![0u8; if method == "POST" { content_length.min(1 << 20) } else { 0 }];
        reader.read_exact(&mut body)?;
        Ok(Request { method, path, query, accept, body })
    }

    /// The value of `key` in the query string.
    fn param(&self, key: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

impl Server {
    fn answer(&self, stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
        let request = Request::read(&stream)?;
        let metrics = &self.metrics;
        let response: Response = match (request.method.as_str(), request.path.as_str()) {
            // Prometheus asks for OpenMetrics; other clients get the
            // Prometheus text format.
            (_, "/metrics") if request.accept.contains("application/openmetrics-text") => {
                ("200 OK", exposition::OPENMETRICS, exposition::render(registry).into_bytes())
            }
            (_, "/metrics") => {
                let text = exposition::prometheus_text(&exposition::render(registry));
                ("200 OK", exposition::PROMETHEUS_TEXT, text.into_bytes())
            }
            ("POST", "/query") => self.query(&stream, &request),
            (_, "/health/live") => health(metrics.health.live()),
            (_, "/health/ready") => {
                health(metrics.health.ready(metrics.store.as_deref().map(crate::health::StoreSample::of)))
            }
            (_, "/version") => ("200 OK", "application/json", version_json().into_bytes()),
            (_, "/latency") => match &metrics.store {
                Some(store) => ("200 OK", "text/plain", store.commit_delay.quantiles().into_bytes()),
                None => ("404 Not Found", "text/plain", b"no store: sink.kind is not store\n".to_vec()),
            },
            (_, "/debug/pprof/profile" | "/debug/memory") if !self.debug => {
                ("404 Not Found", "text/plain", b"profiling is off (http.debug = false)\n".to_vec())
            }
            (_, "/debug/pprof/profile") => match cpu_request(&request) {
                Ok((seconds, frequency, format)) => {
                    // Seconds long: on its own thread, so scrapes go on.
                    std::thread::Builder::new().name("weir-profile".into()).spawn(move || {
                        let response = cpu_response(profile::cpu(seconds, frequency, format), format);
                        let _ = respond(&stream, response);
                    })?;
                    return Ok(());
                }
                Err(message) => ("400 Bad Request", "text/plain", message.into_bytes()),
            },
            (_, "/debug/memory") if request.param("malloc_info").is_some() => {
                ("200 OK", "application/xml", profile::malloc_info().into_bytes())
            }
            (_, "/debug/memory") => {
                let body = serde_json::to_string_pretty(&profile::memory(metrics)).unwrap_or_default() + "\n";
                ("200 OK", "application/json", body.into_bytes())
            }
            _ => (
                "404 Not Found",
                "text/plain",
                b"/metrics, /health/live, /health/ready, /version, /latency, /debug/pprof/profile, /debug/memory, \
                  or POST /query\n"
                    .to_vec(),
            ),
        };
        respond(&stream, response)
    }

    fn query(&self, stream: &TcpStream, request: &Request) -> Response {
        let loopback = stream.peer_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
        match (&self.queries, loopback) {
            (None, _) => ("404 Not Found", "text/plain", b"no store: sink.kind is not store\n".to_vec()),
            (_, false) => ("403 Forbidden", "text/plain", b"/query answers loopback peers only\n".to_vec()),
            (Some(q), true) => run_query(q, &String::from_utf8_lossy(&request.body), request.param("format")),
        }
    }
}

fn respond(mut stream: &TcpStream, (status, kind, body): Response) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)
}

/// `seconds` (default 30, at most `profile::SECONDS_MAX`), `frequency` in
/// Hz (default 99, at most 1000) and `format` (`pprof` or `svg`).
fn cpu_request(request: &Request) -> Result<(u64, i32, CpuFormat), String> {
    let seconds = match request.param("seconds") {
        None => 30,
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| (1..=profile::SECONDS_MAX).contains(s))
            .ok_or_else(|| format!("seconds: {s:?} is not a whole number in 1..={}\n", profile::SECONDS_MAX))?,
    };
    let frequency = match request.param("frequency") {
        None => 99,
        Some(f) => f
            .parse()
            .ok()
            .filter(|f| (1..=1000).contains(f))
            .ok_or(format!("frequency: {f:?} is not in 1..=1000 Hz\n"))?,
    };
    let format = match request.param("format") {
        None | Some("pprof") => CpuFormat::Pprof,
        Some("svg") => CpuFormat::Svg,
        Some(f) => return Err(format!("format: {f:?} is neither pprof nor svg\n")),
    };
    Ok((seconds, frequency, format))
}

fn cpu_response(result: Result<Vec<u8>, CpuError>, format: CpuFormat) -> Response {
    match (result, format) {
        (Ok(svg), CpuFormat::Svg) => ("200 OK", "image/svg+xml", svg),
        (Ok(pprof), CpuFormat::Pprof) => ("200 OK", "application/octet-stream", pprof),
        (Err(CpuError::Busy), _) => ("409 Conflict", "text/plain", b"another profile is running\n".to_vec()),
        (Err(CpuError::Failed(e)), _) => ("500 Internal Server Error", "text/plain", format!("{e}\n").into_bytes()),
    }
}

fn health((ok, body): (bool, String)) -> Response {
    (if ok { "200 OK" } else { "503 Service Unavailable" }, "application/json", body.into_bytes())
}

/// `/version`: the release and the build.
fn version_json() -> String {
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "debug_build": cfg!(debug_assertions),
    })
    .to_string()
        + "\n"
}

fn run_query(queries: &Sender<QueryRequest>, sql: &str, format: Option<&str>) -> Response {
    let format =
        format.filter(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric())).unwrap_or("TabSeparated");
    let (reply, answer) = bounded(1);
    let request = QueryRequest { sql: sql.to_string(), format: format.to_string(), reply };
    if queries.send(request).is_err() {
        return ("503 Service Unavailable", "text/plain", b"the store writer has stopped\n".to_vec());
    }
    match answer.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(bytes)) => ("200 OK", "application/octet-stream", bytes),
        Ok(Err(e)) => ("400 Bad Request", "text/plain", format!("{e}\n").into_bytes()),
        Err(_) => ("504 Gateway Timeout", "text/plain", b"the store did not answer within 60 s\n".to_vec()),
    }
}
