//! The control-plane HTTP server: axum on a small tokio runtime whose
//! threads are pinned to the control core.
//!
//! `routes` answers what operations own (`/metrics`, `/health/live`,
//! `/health/ready`, `/version`, `/debug/pprof/profile`, `/debug/memory`);
//! features mount their own routes beside them (the store's `/latency` and
//! `POST /query`, later the console's API) with `Router::merge` in `run`.
//! Requests are served concurrently: scrapes and health checks run on the
//! runtime's workers, and anything that waits (a CPU profile, a store
//! query) waits on the blocking pool, so a slow one never delays a scrape.
//!
//! Bounds, for requests from anyone who can reach the port:
//! `CONNECTIONS_MAX` open connections (more are closed at once), `HEADER_BYTES_MAX` of request line and headers in at most
//! `HEADERS_MAX` headers (hyper answers 431 past them), `BODY_BYTES_MAX` of
//! body (413), the head read within `HEADER_READ_TIMEOUT`, and a connection
//! closed after `CONNECTION_SECONDS_MAX`. One request per connection
//! (`Connection: close`), as simple clients and the tests expect. Errors
//! the handlers make are JSON: `{"error": "..."}`. Connections that end
//! without an answer are counted by reason
//! (`weir_http_connections_dropped_total`), answers by status class.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tower::Service;
use tracing::warn;

use super::exposition::{self, counter_by, Exported, Exposition};
use super::health::Health;
use super::profile::{self, CpuError, CpuFormat};

/// Open connections at most; more are closed on accept.
pub const CONNECTIONS_MAX: usize = 256;
/// Request line and headers, bytes (hyper's smallest read buffer is 8 KiB).
pub const HEADER_BYTES_MAX: usize = 16 << 10;
pub const HEADERS_MAX: usize = 64;
/// Request body, bytes (the SQL of `POST /query`).
pub const BODY_BYTES_MAX: usize = 1 << 20;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest profile and a minute to send it.
pub const CONNECTION_SECONDS_MAX: u64 = profile::SECONDS_MAX + 60;
/// Runtime workers; waiting work goes to at most `BLOCKING_THREADS_MAX`
/// blocking threads.
const WORKERS: usize = 2;
const BLOCKING_THREADS_MAX: usize = 16;

/// What the operations routes read.
pub struct Ops {
    pub exposition: Exposition,
    pub health: Arc<Health>,
    /// `http.debug`: the profiling endpoints.
    pub debug: bool,
}

struct OpsState {
    registry: Registry,
    /// The latest scrape, shared by the scrapes waiting while it rendered.
    latest_scrape: tokio::sync::Mutex<Option<Scrape>>,
    exposition: Exposition,
    health: Arc<Health>,
    debug: bool,
}

/// Why a connection ended without the answers it asked for (the `reason` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectionDrop {
    /// Closed on accept: `CONNECTIONS_MAX` were open.
    Refused,
    /// Not HTTP/1, headers past the bounds (hyper answered 400 or 431), a
    /// head not read within `HEADER_READ_TIMEOUT`, a client gone mid-request.
    ProtocolError,
    /// Still open after `CONNECTION_SECONDS_MAX`.
    Timeout,
}

impl ConnectionDrop {
    const ALL: [ConnectionDrop; 3] = [ConnectionDrop::Refused, ConnectionDrop::ProtocolError, ConnectionDrop::Timeout];
    fn label(self) -> &'static str {
        match self {
            ConnectionDrop::Refused => "refused",
            ConnectionDrop::ProtocolError => "protocol_error",
            ConnectionDrop::Timeout => "timeout",
        }
    }
}

/// The server's own counters, registered with the exposition by `serve`'s caller.
#[derive(Default)]
pub struct HttpMetrics {
    /// Answers from the routes, by status class: 1xx..5xx.
    responses: [AtomicU64; 5],
    closed: [AtomicU64; ConnectionDrop::ALL.len()],
}

impl Exported for HttpMetrics {
    fn encode(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let by_class: Vec<(&str, u64)> =
            classes.iter().zip(&self.responses).map(|(c, n)| (*c, n.load(Relaxed))).collect();
        let help = "Answers of the control-plane HTTP server's routes, by status class.";
        counter_by(e, "weir_http_responses", help, "code", &by_class)?;
        let closed = ConnectionDrop::ALL.map(|r| (r.label(), self.closed[r as usize].load(Relaxed)));
        let help = "Connections closed before their request was answered, by reason.";
        counter_by(e, "weir_http_connections_dropped", help, "reason", &closed)
    }
}

/// A JSON error: `{"error": message}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The operations endpoints.
pub fn routes(ops: Ops) -> Router {
    let state = Arc::new(OpsState {
        registry: ops.exposition.registry(),
        latest_scrape: tokio::sync::Mutex::new(None),
        exposition: ops.exposition,
        health: ops.health,
        debug: ops.debug,
    });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/version", get(version))
        .route("/debug/pprof/profile", get(cpu_profile))
        .route("/debug/memory", get(memory))
        .with_state(state)
}

/// Binds `address` (an error here stops start-up) and serves `app` on a
/// tokio runtime pinned to `core`, with the bounds above.
pub fn serve(address: SocketAddr, app: Router, core: usize, metrics: Arc<HttpMetrics>) -> std::io::Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .thread_name("weir-http")
        .on_thread_start(move || super::cpu::pin_to(core))
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(address))?;
    let local = listener.local_addr()?;
    let app = app
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn(refuse_long_bodies))
        .layer(middleware::from_fn_with_state(metrics.clone(), count_responses));
    std::thread::Builder::new()
        .name("weir-http".into())
        .spawn(move || runtime.block_on(accept(listener, app, metrics)))?;
    Ok(local)
}

async fn accept(listener: tokio::net::TcpListener, app: Router, metrics: Arc<HttpMetrics>) {
    let open = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics.closed[ConnectionDrop::Refused as usize].fetch_add(1, Relaxed);
            continue;
        };
        let (app, metrics) = (app.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().call(request.map(Body::new))
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .title_case_headers(true)
                .max_buf_size(HEADER_BYTES_MAX)
                .max_headers(HEADERS_MAX)
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // A client that stops reading, or never ends its body, is dropped.
            let dropped = match tokio::time::timeout(Duration::from_secs(CONNECTION_SECONDS_MAX), connection).await {
                Ok(Ok(())) => None,
                Ok(Err(_)) => Some(ConnectionDrop::ProtocolError),
                Err(_) => Some(ConnectionDrop::Timeout),
            };
            if let Some(reason) = dropped {
                metrics.closed[reason as usize].fetch_add(1, Relaxed);
            }
            drop(permit);
        });
    }
}

async fn count_responses(State(metrics): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let class = (response.status().as_u16() / 100).clamp(1, 5) as usize - 1;
    metrics.responses[class].fetch_add(1, Relaxed);
    response
}

/// A body announced longer than `BODY_BYTES_MAX` is refused before it is
/// read (a body without a length is cut by `DefaultBodyLimit` as it comes).
async fn refuse_long_bodies(request: Request, next: Next) -> Response {
    let length = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if length.is_some_and(|n| n > BODY_BYTES_MAX as u64) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is longer than {BODY_BYTES_MAX} bytes"));
    }
    next.run(request).await
}

async fn not_found(request: Request) -> Response {
    error(StatusCode::NOT_FOUND, format!("no such endpoint: {}", request.uri().path()))
}

async fn method_not_allowed(request: Request) -> Response {
    let message = format!("{} is not allowed on {}", request.method(), request.uri().path());
    error(StatusCode::METHOD_NOT_ALLOWED, message)
}

/// One rendering of the exposition, in both formats (the text one made
/// when first asked).
struct Scrape {
    started: Instant,
    openmetrics: Bytes,
    text: Option<Bytes>,
}

/// Prometheus asks for OpenMetrics; other clients get the Prometheus text
/// format. Scrapes that arrive together share one rendering: a scrape
/// takes the latest one if it started after the scrape arrived (its
/// counters are then as fresh as a rendering of its own), else renders.
async fn metrics(State(s): State<Arc<OpsState>>, headers: HeaderMap) -> Response {
    let arrived = Instant::now();
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let mut latest = s.latest_scrape.lock().await;
    let scrape = match latest.as_mut() {
        Some(scrape) if scrape.started >= arrived => scrape,
        _ => {
            let started = Instant::now();
            let openmetrics = Bytes::from(exposition::render(&s.registry));
            latest.insert(Scrape { started, openmetrics, text: None })
        }
    };
    if openmetrics {
        return ([(header::CONTENT_TYPE, exposition::OPENMETRICS)], scrape.openmetrics.clone()).into_response();
    }
    let text = scrape.text.get_or_insert_with(|| {
        // Rendered from a String: UTF-8.
        Bytes::from(exposition::prometheus_text(std::str::from_utf8(&scrape.openmetrics).unwrap_or_default()))
    });
    ([(header::CONTENT_TYPE, exposition::PROMETHEUS_TEXT)], text.clone()).into_response()
}

async fn live(State(s): State<Arc<OpsState>>) -> Response {
    health(s.health.live())
}

async fn ready(State(s): State<Arc<OpsState>>) -> Response {
    health(s.health.ready())
}

fn health((ok, body): (bool, String)) -> Response {
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `/version`: the release and the build.
async fn version() -> Response {
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "debug_build": cfg!(debug_assertions),
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string() + "\n").into_response()
}

const DEBUG_OFF: &str = "profiling is off (http.debug = false)";

/// The query string of `/debug/pprof/profile`, checked by `cpu_request`.
#[derive(Deserialize)]
struct CpuParams {
    seconds: Option<String>,
    frequency: Option<String>,
    format: Option<String>,
}

async fn cpu_profile(State(s): State<Arc<OpsState>>, params: Result<Query<CpuParams>, QueryRejection>) -> Response {
    if !s.debug {
        return error(StatusCode::NOT_FOUND, DEBUG_OFF);
    }
    let Query(params) = match params {
        Ok(params) => params,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let (seconds, frequency, format) = match cpu_request(&params) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    // Seconds long: on the blocking pool, so scrapes go on.
    let result = tokio::task::spawn_blocking(move || profile::cpu(seconds, frequency, format)).await;
    match (result, format) {
        (Ok(Ok(svg)), CpuFormat::Svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        (Ok(Ok(pprof)), CpuFormat::Pprof) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], pprof).into_response()
        }
        (Ok(Err(CpuError::Busy)), _) => error(StatusCode::CONFLICT, "another profile is running"),
        (Ok(Err(CpuError::Failed(e))), _) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        (Err(e), _) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the profile did not finish: {e}")),
    }
}

/// `seconds` (default 30, at most `profile::SECONDS_MAX`), `frequency` in
/// Hz (default 99, at most 1000) and `format` (`pprof` or `svg`).
fn cpu_request(params: &CpuParams) -> Result<(u64, i32, CpuFormat), String> {
    let seconds = match &params.seconds {
        None => 30,
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| (1..=profile::SECONDS_MAX).contains(s))
            .ok_or_else(|| format!("seconds: {s:?} is not a whole number in 1..={}", profile::SECONDS_MAX))?,
    };
    let frequency = match &params.frequency {
        None => 99,
        Some(f) => f
            .parse()
            .ok()
            .filter(|f| (1..=1000).contains(f))
            .ok_or(format!("frequency: {f:?} is not in 1..=1000 Hz"))?,
    };
    let format = match params.format.as_deref() {
        None | Some("pprof") => CpuFormat::Pprof,
        Some("svg") => CpuFormat::Svg,
        Some(f) => return Err(format!("format: {f:?} is neither pprof nor svg")),
    };
    Ok((seconds, frequency, format))
}

#[derive(Deserialize)]
struct MemoryParams {
    malloc_info: Option<String>,
}

async fn memory(State(s): State<Arc<OpsState>>, params: Result<Query<MemoryParams>, QueryRejection>) -> Response {
    if !s.debug {
        return error(StatusCode::NOT_FOUND, DEBUG_OFF);
    }
    if params.is_ok_and(|Query(p)| p.malloc_info.is_some()) {
        return ([(header::CONTENT_TYPE, "application/xml")], profile::malloc_info()).into_response();
    }
    let body = serde_json::to_string_pretty(&profile::memory(s.exposition.memory())).unwrap_or_default() + "\n";
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seconds: Option<&str>, frequency: Option<&str>, format: Option<&str>) -> CpuParams {
        CpuParams {
            seconds: seconds.map(Into::into),
            frequency: frequency.map(Into::into),
            format: format.map(Into::into),
        }
    }

    #[test]
    fn profile_parameters_have_defaults_and_bounds() {
        assert_eq!(cpu_request(&params(None, None, None)).unwrap(), (30, 99, CpuFormat::Pprof));
        assert_eq!(cpu_request(&params(Some("2"), Some("250"), Some("svg"))).unwrap(), (2, 250, CpuFormat::Svg));
        for bad in [params(Some("0"), None, None), params(Some("301"), None, None), params(Some("x"), None, None)] {
            assert!(cpu_request(&bad).unwrap_err().starts_with("seconds:"));
        }
        assert!(cpu_request(&params(None, Some("5000"), None)).unwrap_err().starts_with("frequency:"));
        assert!(cpu_request(&params(None, None, Some("png"))).unwrap_err().starts_with("format:"));
    }
}
