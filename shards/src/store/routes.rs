//! The store's endpoints on the control-plane server:
//! - `GET /latency`: rows committed and the commit delay's quantiles (ms);
//! - `POST /query?format=F` with the SQL as the body: run on the store
//!   writer's connection, for `weir query`. Loopback peers only, and
//!   read-only unless `http.query_writes` (`Engine::operator_query`).
//!
//! - `GET /api/v0/schema.proto`: the enriched flows' protobuf schema
//!   (`weir_core::flowproto`), generated from the store's columns;
//! - `GET /api/v0/rawflow.proto`: the schema of `weir inlet`'s records.
//!
//! Without the store as sink the first three answer 404 saying so, which `weir query`
//! takes as "open the store yourself".

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use crossbeam_channel::{bounded, Sender, TrySendError};
use serde::Deserialize;

use super::metrics::StoreMetrics;
use super::writer::QueryRequest;
use crate::ops::http::error;

/// How long `POST /query` waits for the store's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the routes reach when the sink is the store.
pub struct StoreEndpoints {
    pub queries: Sender<QueryRequest>,
    pub metrics: Arc<StoreMetrics>,
    /// `http.query_writes`.
    pub writes: bool,
    /// The enriched flows' `.proto` for this store's columns.
    pub schema_proto: String,
}

pub fn routes(store: Option<StoreEndpoints>) -> Router {
    match store {
        Some(store) => Router::new()
            .route("/latency", get(latency))
            .route("/query", post(query))
            .route("/api/v0/schema.proto", get(schema_proto))
            .with_state(Arc::new(store)),
        None => Router::new()
            .route("/latency", any(no_store))
            .route("/query", any(no_store))
            .route("/api/v0/schema.proto", any(no_store)),
    }
    .route("/api/v0/rawflow.proto", get(rawflow_proto))
}

async fn schema_proto(State(store): State<Arc<StoreEndpoints>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], store.schema_proto.clone()).into_response()
}

async fn rawflow_proto() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], weir_core::rawflow::RAW_FLOW_PROTO).into_response()
}

async fn no_store() -> Response {
    error(StatusCode::NOT_FOUND, "no store: sink.kind is not store")
}

async fn latency(State(store): State<Arc<StoreEndpoints>>) -> Response {
    let title = "kernel receive timestamp to row committed to the store, ms, since start";
    ([(header::CONTENT_TYPE, "text/plain")], store.metrics.commit_delay.quantiles(title)).into_response()
}

#[derive(Deserialize)]
struct QueryParams {
    format: Option<String>,
}

async fn query(
    State(store): State<Arc<StoreEndpoints>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    params: Result<Query<QueryParams>, QueryRejection>,
    sql: Result<Bytes, BytesRejection>,
) -> Response {
    if !peer.ip().is_loopback() {
        return error(StatusCode::FORBIDDEN, "/query answers loopback peers only");
    }
    let Query(params) = match params {
        Ok(params) => params,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let format = match params.format {
        None => "TabSeparated".to_string(),
        Some(f) if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric()) => f,
        Some(f) => return error(StatusCode::BAD_REQUEST, format!("format: {f:?} is not a ClickHouse format name")),
    };
    let sql = match sql {
        Ok(sql) => sql,
        // Past http::BODY_BYTES_MAX (413), or a body cut short.
        Err(e) => return error(e.status(), e.body_text()),
    };
    let Ok(sql) = String::from_utf8(sql.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the SQL is not UTF-8");
    };
    let (reply, answer) = bounded(1);
    let request = QueryRequest { sql, format, writes: store.writes, reply };
    match store.queries.try_send(request) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store writer has too many queries waiting")
        }
        Err(TrySendError::Disconnected(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the store writer has stopped")
        }
    }
    // The writer answers between inserts: wait on the blocking pool.
    let answered = tokio::task::spawn_blocking(move || answer.recv_timeout(QUERY_TIMEOUT)).await;
    match answered {
        Ok(Ok(Ok(bytes))) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Ok(Ok(Err(e))) => error(StatusCode::BAD_REQUEST, e),
        Ok(Err(_)) => error(StatusCode::GATEWAY_TIMEOUT, "the store did not answer within 60 s"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the query did not finish: {e}")),
    }
}
