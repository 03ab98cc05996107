//! The REST API under `/api/v0/console/`, with Akvorado's paths and JSON
//! shapes. Errors are `{"message": ...}`: 400 for a bad request (the
//! message says what), 404, 503 when the store cannot answer now, 504 when
//! a query ran past `console.query_timeout_s`, 422 when it ran past the
//! memory or result bounds.
//!
//! Every SQL statement is built here from parsed and checked parts; nothing
//! a client sends is executed. The store runs each one read-only, bounded
//! in time, memory and result rows ([`Store`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Extension, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use weir_core::config::ConsoleConfig;

use crate::cache::{Cache, Cached};
use crate::columns::{Catalogue, Kind, Source};
use crate::filter::{self, SqlDialect};
use crate::query::{self, Builder, Choice, GraphRequest, Limits, Tables, Units};
use crate::saved::SavedFilters;
use crate::users::{Auth, User};

/// Why a console query failed, as the engine said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryFailure {
    /// Past `console.query_timeout_s`.
    Timeout,
    /// Past `console.query_memory_bytes_max`.
    Memory,
    /// Past `console.query_result_rows_max`.
    Rows,
    /// The store is not there (starting, down, not migrated yet).
    Unavailable,
    /// Anything else the engine refused.
    Failed,
}

impl QueryFailure {
    pub const ALL: [QueryFailure; 5] = [
        QueryFailure::Timeout,
        QueryFailure::Memory,
        QueryFailure::Rows,
        QueryFailure::Unavailable,
        QueryFailure::Failed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            QueryFailure::Timeout => "timeout",
            QueryFailure::Memory => "memory",
            QueryFailure::Rows => "result_rows",
            QueryFailure::Unavailable => "unavailable",
            QueryFailure::Failed => "failed",
        }
    }

    /// From the engine's error text (`Code: N.`).
    pub fn of(message: &str) -> QueryFailure {
        let code = message.split("Code: ").nth(1).and_then(|c| c.split(|ch: char| !ch.is_ascii_digit()).next());
        match code.and_then(|c| c.parse::<u32>().ok()) {
            Some(159) => QueryFailure::Timeout,
            Some(241) => QueryFailure::Memory,
            Some(396) => QueryFailure::Rows,
            Some(60 | 81) => QueryFailure::Unavailable,
            _ => QueryFailure::Failed,
        }
    }
}

/// A failed console query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub failure: QueryFailure,
    pub message: String,
}

/// A boxed future, so the store can be a trait object.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What runs the console's SQL: one SELECT at a time, read-only, within
/// the console's time, memory and result-row bounds, answering
/// `TabSeparatedWithNames` when `names`, else `TabSeparated`.
pub trait Store: Send + Sync + 'static {
    fn select(&self, sql: String, names: bool) -> Pending<Result<Vec<u8>, QueryError>>;

    /// How the server spells addresses (known once connected).
    fn dialect(&self) -> SqlDialect {
        SqlDialect::MODERN
    }
}

/// How the console is doing, per endpoint.
pub trait Observer: Send + Sync + 'static {
    /// A request to `endpoint` answered `status` after `took`.
    fn request(&self, endpoint: &'static str, status: u16, took: Duration);
    /// A query failed for `failure`.
    fn query_failed(&self, failure: QueryFailure);
    /// An answer came from the cache (`hit`) or had to be computed.
    fn cache(&self, hit: bool);
}

/// The console: the schema's columns, the config, and the store.
pub struct Console {
    /// The flows' columns.
    pub columns: Catalogue,
    /// HAProxy's requests' columns, when `[haproxy] store` keeps them.
    pub http: Option<Catalogue>,
    pub config: ConsoleConfig,
    pub database: String,
    /// `flows` or `flows_segments`.
    pub raw_table: String,
    pub store: Arc<dyn Store>,
    pub observer: Arc<dyn Observer>,
    pub version: &'static str,
    /// Per source (flows, HTTP).
    tables: Mutex<[Option<(Instant, Tables)>; 2]>,
    auth: Auth,
    /// Opened at start when there are built-ins, else at first use.
    saved: Mutex<Option<Arc<SavedFilters>>>,
    cache: Cache,
}

/// How long the tables' oldest rows are trusted.
const TABLES_TTL: Duration = Duration::from_secs(60);
/// The longest `X-SQL-Query` header.
const SQL_HEADER_MAX: usize = 8192;

impl Console {
    /// Checks the configured filters against the columns.
    pub fn new(
        columns: Catalogue,
        config: ConsoleConfig,
        database: String,
        raw_table: String,
        store: Arc<dyn Store>,
        observer: Arc<dyn Observer>,
        version: &'static str,
    ) -> Result<Console, String> {
        for (key, f) in [
            ("console.homepage_graph_filter", &config.homepage_graph_filter),
            ("console.default_visualize_options.filter", &config.default_visualize_options.filter),
        ] {
            filter::parse(f, &columns).map_err(|e| format!("{key}: {e}"))?;
        }
        for (i, d) in config.default_visualize_options.dimensions.iter().enumerate() {
            if !columns.find(d).is_some_and(|c| c.dimension) {
                return Err(format!("console.default_visualize_options.dimensions[{i}]: {d:?} is not a dimension"));
            }
        }
        for (i, f) in config.saved_filters.iter().enumerate() {
            filter::parse(&f.content, &columns).map_err(|e| format!("console.saved_filters[{i}].content: {e}"))?;
        }
        let saved = if config.saved_filters.is_empty() {
            None
        } else {
            Some(Arc::new(SavedFilters::open(&config.database, &config.saved_filters)?))
        };
        let auth = Auth::new(&config.auth);
        let cache = Cache::new(config.cache_bytes_max as usize);
        Ok(Console {
            columns,
            http: None,
            config,
            database,
            raw_table,
            store,
            observer,
            version,
            tables: Mutex::new([None, None]),
            auth,
            saved: Mutex::new(saved),
            cache,
        })
    }

    /// Adds the HTTP source: HAProxy's requests (`Catalogue::http`).
    pub fn with_http(mut self, columns: Catalogue) -> Console {
        self.http = Some(columns);
        self
    }

    /// The columns of `source`.
    fn catalogue(&self, source: Source) -> Result<&Catalogue, Failure> {
        match source {
            Source::Flows => Ok(&self.columns),
            Source::Http => self
                .http
                .as_ref()
                .ok_or_else(|| bad("source: http needs HAProxy's requests in the store ([haproxy] store = true)")),
        }
    }

    /// How long a graph's answer is kept: `console.cache_ttl_s`, or 10 s
    /// while its last bucket may still be filling.
    fn graph_ttl(&self, request: &GraphRequest) -> Duration {
        let live = query::parse_time("end", &request.end).map_or(true, |end| end > now() - 120);
        Duration::from_secs(if live { self.config.cache_ttl_s.min(10) } else { self.config.cache_ttl_s })
    }

    fn saved(&self) -> Result<Arc<SavedFilters>, Failure> {
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        if saved.is_none() {
            let opened =
                SavedFilters::open(&self.config.database, &self.config.saved_filters).map_err(Failure::Internal)?;
            *saved = Some(Arc::new(opened));
        }
        Ok(saved.clone().expect("opened above"))
    }

    fn limits(&self) -> Limits {
        Limits {
            dimensions_limit: self.config.dimensions_limit,
            range_max_s: self.config.range_max_days as i64 * 86_400,
        }
    }

    fn builder<'a>(&'a self, columns: &'a Catalogue, tables: &'a Tables) -> Builder<'a> {
        Builder { columns, database: &self.database, dialect: self.store.dialect(), tables }
    }

    async fn select(&self, sql: String) -> Result<Vec<u8>, Failure> {
        self.store.select(sql, false).await.map_err(|e| {
            self.observer.query_failed(e.failure);
            Failure::Query(e)
        })
    }

    /// The tables of `source` and their oldest rows, cached for a minute.
    async fn tables(&self, source: Source) -> Result<Tables, Failure> {
        let slot = source as usize;
        if let Some((at, t)) = self.tables.lock().unwrap()[slot].as_ref() {
            if at.elapsed() < TABLES_TTL {
                return Ok(t.clone());
            }
        }
        let empty = Tables::of(source, &self.raw_table, [None; 4]);
        let parts: Vec<String> = empty
            .names
            .iter()
            .enumerate()
            .map(|(i, t)| format!("SELECT {i}, toUInt32(min({})) FROM {}.{t}", empty.time, self.database))
            .collect();
        let out = self.select(parts.join(" UNION ALL ")).await?;
        let mut oldest = [None; 4];
        for row in query::parse_rows(&out, 0).map_err(Failure::Internal)? {
            if let Some(slot) = oldest.get_mut(row.bucket as usize) {
                *slot = Some(row.value as i64).filter(|t| *t > 0);
            }
        }
        let tables = Tables { oldest, ..empty };
        self.tables.lock().unwrap()[slot] = Some((Instant::now(), tables.clone()));
        Ok(tables)
    }
}

/// Why a request failed.
#[derive(Debug)]
enum Failure {
    BadRequest(String),
    NotFound(String),
    Query(QueryError),
    Internal(String),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Failure::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Failure::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Failure::Query(e) => match e.failure {
                QueryFailure::Timeout => {
                    (StatusCode::GATEWAY_TIMEOUT, format!("the query ran too long: {}", e.message))
                }
                QueryFailure::Memory | QueryFailure::Rows => {
                    (StatusCode::UNPROCESSABLE_ENTITY, format!("the query is too large: {}", e.message))
                }
                QueryFailure::Unavailable => {
                    (StatusCode::SERVICE_UNAVAILABLE, format!("the store cannot answer now: {}", e.message))
                }
                QueryFailure::Failed => (StatusCode::INTERNAL_SERVER_ERROR, format!("the query failed: {}", e.message)),
            },
            Failure::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (status, Json(ErrorBody { message })).into_response()
    }
}

fn bad(message: impl Into<String>) -> Failure {
    Failure::BadRequest(message.into())
}

type Answer = Result<Response, Failure>;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// An error: what went wrong, for a person to read.
#[derive(Serialize, ToSchema)]
struct ErrorBody {
    message: String,
}

/// The visualize page's defaults.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct VisualizeOptions {
    graph_type: String,
    start: String,
    end: String,
    filter: String,
    dimensions: Vec<String>,
    limit: u64,
    limit_type: String,
    bidirectional: bool,
    previous_period: bool,
}

/// What the front end needs to start.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Configuration {
    version: String,
    default_visualize_options: VisualizeOptions,
    dimensions_limit: u64,
    /// The columns a graph may group by.
    dimensions: Vec<String>,
    /// The address columns `truncate-v4`/`truncate-v6` apply to.
    truncatable: Vec<String>,
    homepage_top_widgets: Vec<String>,
    branding: bool,
    /// What can be graphed: `flows`, and `http` with `[haproxy] store`.
    sources: Vec<Source>,
    /// The columns a graph of HTTP requests may group by (empty without them).
    http_dimensions: Vec<String>,
}

/// Flow records per second over the last 5 minutes.
#[derive(Serialize, ToSchema)]
struct FlowRate {
    rate: f64,
    period: String,
}

/// The exporters heard in the last 7 days.
#[derive(Serialize, ToSchema)]
struct Exporters {
    exporters: Vec<String>,
}

/// One of the 5 largest, as a percentage of the bytes.
#[derive(Serialize, ToSchema)]
struct TopItem {
    name: String,
    percent: f64,
}

#[derive(Serialize, ToSchema)]
struct Top {
    top: Vec<TopItem>,
}

#[derive(Serialize, ToSchema)]
struct HomePoint {
    t: String,
    gbps: f64,
}

/// The home page graph.
#[derive(Serialize, ToSchema)]
struct HomeGraph {
    data: Vec<HomePoint>,
}

/// A filter checked: `ok` and its SQL, or the error and where.
#[derive(Serialize, ToSchema)]
struct Validation {
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parsed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<filter::FilterError>>,
}

#[derive(Serialize, ToSchema)]
struct Completions {
    completions: Vec<Completion>,
}

/// The user's saved filters and the shared ones.
#[derive(Serialize, ToSchema)]
struct SavedList {
    filters: Vec<crate::saved::SavedFilter>,
}

/// The OpenAPI document, from the routes' annotations and types.
#[derive(OpenApi)]
#[openapi(
    info(title = "Weir console API", description = "Graphs, top talkers, filters and saved filters over Weir's flow store. Akvorado's paths and shapes."),
    servers((url = "/api/v0/console")),
    paths(
        configuration, flow_last, flow_rate, exporters, top, home_graph, line, sankey, table_interval,
        validate, complete, saved_list, saved_add, saved_delete, user_info, docs_list, docs_page, openapi
    )
)]
pub struct ApiDoc;

/// The document, built once.
pub fn openapi_json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().unwrap_or_default())
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// Every endpoint's name in the metrics, as `routes` names them.
pub const ENDPOINTS: [&str; 14] = [
    "configuration",
    "widget/flow-last",
    "widget/flow-rate",
    "widget/exporters",
    "widget/top",
    "widget/graph",
    "graph/line",
    "graph/sankey",
    "graph/table-interval",
    "filter/validate",
    "filter/complete",
    "filter/saved",
    "user/info",
    "docs",
];

/// The routes, to nest under `/api/v0/console`.
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/configuration", get(configuration))
        .route("/widget/flow-last", get(flow_last))
        .route("/widget/flow-rate", get(flow_rate))
        .route("/widget/exporters", get(exporters))
        .route("/widget/top/{name}", get(top))
        .route("/widget/graph", get(home_graph))
        .route("/graph/line", post(line))
        .route("/graph/sankey", post(sankey))
        .route("/graph/table-interval", post(table_interval))
        .route("/filter/validate", post(validate))
        .route("/filter/complete", post(complete))
        .route("/filter/saved", get(saved_list).post(saved_add))
        .route("/filter/saved/{id}", delete(saved_delete))
        .route("/user/info", get(user_info))
        .route("/docs", get(docs_list))
        .route("/docs/{name}", get(docs_page))
        .route("/openapi.json", get(openapi))
        .layer(middleware::from_fn_with_state(console.clone(), authenticate))
        .with_state(console)
}

/// Names the request's user (an `Extension<User>`), or answers 401.
async fn authenticate(State(c): State<Arc<Console>>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
    // Without the peer's address (no connection info), no header is believed.
    let user = match peer {
        Some(ip) => c.auth.user(ip, request.headers()),
        None => c.auth.user(std::net::IpAddr::from([0u8; 16]), &Default::default()),
    };
    match user {
        Some(user) => {
            request.extensions_mut().insert(user);
            next.run(request).await
        }
        None => (StatusCode::UNAUTHORIZED, Json(ErrorBody { message: "No user logged in.".into() })).into_response(),
    }
}

/// A documentation page's name and title.
#[derive(Serialize, ToSchema)]
struct DocEntry {
    name: String,
    title: String,
}

#[derive(Serialize, ToSchema)]
struct DocList {
    pages: Vec<DocEntry>,
}

/// The documentation pages: the README's operator sections, as this binary has them.
#[utoipa::path(get, path = "/docs", responses((status = 200, body = DocList)))]
async fn docs_list(State(c): State<Arc<Console>>) -> Response {
    observed(&c, "docs", async {
        let pages = crate::docs::pages().into_iter().map(|p| DocEntry { name: p.name, title: p.title }).collect();
        Ok(Json(DocList { pages }).into_response())
    })
    .await
}

/// One documentation page, as Markdown.
#[utoipa::path(get, path = "/docs/{name}", params(("name" = String, Path)), responses((status = 200, body = crate::docs::Page), (status = 404, body = ErrorBody)))]
async fn docs_page(State(c): State<Arc<Console>>, Path(name): Path<String>) -> Response {
    observed(&c, "docs", async {
        match crate::docs::pages().into_iter().find(|p| p.name == name) {
            Some(page) => Ok(Json(page).into_response()),
            None => Err(Failure::NotFound(format!("no documentation page {name:?}"))),
        }
    })
    .await
}

/// Who the request is from (the trusted proxy's headers, or the default user).
#[utoipa::path(get, path = "/user/info", responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
async fn user_info(State(c): State<Arc<Console>>, Extension(user): Extension<User>) -> Response {
    observed(&c, "user/info", async { Ok(Json(user).into_response()) }).await
}

/// The user's saved filters and the shared ones.
#[utoipa::path(get, path = "/filter/saved", responses((status = 200, body = SavedList)))]
async fn saved_list(State(c): State<Arc<Console>>, Extension(user): Extension<User>) -> Response {
    observed(&c, "filter/saved", async {
        let filters = c.saved()?.list(&user.login).map_err(Failure::Internal)?;
        Ok(Json(SavedList { filters }).into_response())
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SaveRequest {
    description: String,
    content: String,
    #[serde(default)]
    shared: bool,
}

/// Saves a filter for the user.
#[utoipa::path(post, path = "/filter/saved", request_body = SaveRequest, responses((status = 204), (status = 400, body = ErrorBody)))]
async fn saved_add(
    State(c): State<Arc<Console>>,
    Extension(user): Extension<User>,
    payload: Result<Json<SaveRequest>, JsonRejection>,
) -> Response {
    observed(&c, "filter/saved", async {
        let r = body(payload)?;
        // A filter of flows, or of HTTP requests.
        if let Err(e) = filter::parse(&r.content, &c.columns) {
            if c.http.as_ref().is_none_or(|h| filter::parse(&r.content, h).is_err()) {
                return Err(bad(format!("content: {e}")));
            }
        }
        match c.saved()?.add(&user.login, r.shared, &r.description, &r.content) {
            Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(Ok(why)) => Err(bad(why)),
            Err(Err(e)) => Err(Failure::Internal(e)),
        }
    })
    .await
}

/// Deletes one of the user's saved filters.
#[utoipa::path(delete, path = "/filter/saved/{id}", params(("id" = i64, Path)), responses((status = 204), (status = 400, body = ErrorBody, description = "bad ID format"), (status = 404, body = ErrorBody, description = "filter not found")))]
async fn saved_delete(
    State(c): State<Arc<Console>>,
    Extension(user): Extension<User>,
    Path(id): Path<String>,
) -> Response {
    observed(&c, "filter/saved", async {
        let id: i64 = id.parse().map_err(|_| bad("bad ID format"))?;
        if c.saved()?.delete(&user.login, id).map_err(Failure::Internal)? {
            Ok(StatusCode::NO_CONTENT.into_response())
        } else {
            Err(Failure::NotFound("filter not found".into()))
        }
    })
    .await
}

/// Times and counts each request under its endpoint's name.
async fn observed(console: &Console, endpoint: &'static str, work: impl Future<Output = Answer>) -> Response {
    let started = Instant::now();
    let response = match work.await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    };
    console.observer.request(endpoint, response.status().as_u16(), started.elapsed());
    response
}

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, Failure> {
    payload.map(|Json(t)| t).map_err(|e| bad(e.body_text()))
}

/// Defaults for the visualize page, the dimensions, the home page widgets.
#[utoipa::path(get, path = "/configuration", responses((status = 200, body = Configuration)))]
async fn configuration(State(c): State<Arc<Console>>) -> Response {
    observed(&c, "configuration", async {
        let d = &c.config.default_visualize_options;
        let dimensions: Vec<&str> = c.columns.dimensions().map(|d| d.name.as_str()).collect();
        let truncatable: Vec<&str> = query::TRUNCATABLE.into_iter().filter(|t| c.columns.find(t).is_some()).collect();
        let options = VisualizeOptions {
            graph_type: d.graph_type.clone(),
            start: d.start.clone(),
            end: d.end.clone(),
            filter: d.filter.clone(),
            dimensions: d.dimensions.clone(),
            limit: d.limit,
            limit_type: d.limit_type.clone(),
            bidirectional: d.bidirectional,
            previous_period: d.previous_period,
        };
        Ok(Json(Configuration {
            version: c.version.to_string(),
            default_visualize_options: options,
            dimensions_limit: c.config.dimensions_limit,
            dimensions: dimensions.iter().map(|d| d.to_string()).collect(),
            truncatable: truncatable.iter().map(|d| d.to_string()).collect(),
            homepage_top_widgets: c.config.homepage_top_widgets.clone(),
            branding: false,
            sources: std::iter::once(Source::Flows).chain(c.http.as_ref().map(|_| Source::Http)).collect(),
            http_dimensions: c
                .http
                .as_ref()
                .map(|h| h.dimensions().map(|d| d.name.clone()).collect())
                .unwrap_or_default(),
        })
        .into_response())
    })
    .await
}

/// The newest flow (the last hour), column by column, as operators read the values.
#[utoipa::path(get, path = "/widget/flow-last", responses((status = 200, body = std::collections::BTreeMap<String, String>), (status = 404, body = ErrorBody, description = "No flow currently in database.")))]
async fn flow_last(State(c): State<Arc<Console>>) -> Response {
    observed(
        &c,
        "widget/flow-last",
        cached(&c, "widget/flow-last".into(), FIVE_S, async {
            let names: Vec<&str> =
                std::iter::once("TimeReceived").chain(c.columns.columns.iter().map(|col| col.name.as_str())).collect();
            let select: Vec<String> = names.iter().map(|n| c.columns.text_sql(n, n)).collect();
            let sql = format!(
                "SELECT {} FROM {}.{} WHERE TimeReceived >= now() - 3600 ORDER BY TimeReceived DESC LIMIT 1",
                select.join(", "),
                c.database,
                c.raw_table
            );
            let out = c.select(sql).await?;
            let text = String::from_utf8_lossy(&out);
            let Some(line) = text.lines().next() else {
                return Err(Failure::NotFound("No flow currently in database.".into()));
            };
            let mut flow = std::collections::BTreeMap::new();
            for (name, value) in names.iter().zip(line.split('\t')) {
                let value = query::unescape_tsv(value);
                flow.insert(name.to_string(), query::label(&c.columns, name, &value));
            }
            Ok(cache_json(&flow, None))
        }),
    )
    .await
}

/// Flow records per second over the last 5 minutes.
#[utoipa::path(get, path = "/widget/flow-rate", responses((status = 200, body = FlowRate)))]
async fn flow_rate(State(c): State<Arc<Console>>) -> Response {
    observed(
        &c,
        "widget/flow-rate",
        cached(&c, "widget/flow-rate".into(), FIVE_S, async {
            let sql = format!("SELECT count() FROM {}.{} WHERE TimeReceived >= now() - 300", c.database, c.raw_table);
            let out = c.select(sql).await?;
            let count: f64 = String::from_utf8_lossy(&out).trim().parse().unwrap_or(0.0);
            Ok(cache_json(&FlowRate { rate: count / 300.0, period: "second".into() }, None))
        }),
    )
    .await
}

/// The exporters heard in the last 7 days.
#[utoipa::path(get, path = "/widget/exporters", responses((status = 200, body = Exporters)))]
async fn exporters(State(c): State<Arc<Console>>) -> Response {
    observed(
        &c,
        "widget/exporters",
        cached(&c, "widget/exporters".into(), THIRTY_S, async {
            let sql = format!(
            "SELECT DISTINCT IPv6NumToString(ExporterAddress) FROM {}.flows_1h WHERE TimeReceived >= now() - 7 * 86400",
            c.database
        );
            let out = c.select(sql).await?;
            let mut names: Vec<String> = String::from_utf8_lossy(&out)
                .lines()
                .map(|l| query::label(&c.columns, "ExporterAddress", &query::unescape_tsv(l)))
                .collect();
            names.sort();
            Ok(cache_json(&Exporters { exporters: names }, None))
        }),
    )
    .await
}

/// The HTTP column the `http-host` widget ranks: the captured `Host`
/// request header (the default field list's `request_headers`).
pub const HTTP_HOST: &str = "request_headers_host";

/// The 5 largest over the last 5 minutes: by bytes (flows), by requests (`http-*`).
#[utoipa::path(get, path = "/widget/top/{name}", params(("name" = String, Path, description = "src-as, dst-as, exporter, protocol, etype, src-port, dst-port, src-country, dst-country, http-host or http-status")), responses((status = 200, body = Top), (status = 400, body = ErrorBody)))]
async fn top(State(c): State<Arc<Console>>, Path(name): Path<String>) -> Response {
    let key = format!("widget/top/{name}");
    observed(
        &c,
        "widget/top",
        cached(&c, key, THIRTY_S, async {
            let (source, column) = match name.as_str() {
                "src-as" => (Source::Flows, "SrcAS"),
                "dst-as" => (Source::Flows, "DstAS"),
                "exporter" => (Source::Flows, "ExporterAddress"),
                "protocol" => (Source::Flows, "Proto"),
                "etype" => (Source::Flows, "EType"),
                "src-port" => (Source::Flows, "SrcPort"),
                "dst-port" => (Source::Flows, "DstPort"),
                "src-country" => (Source::Flows, "SrcCountry"),
                "dst-country" => (Source::Flows, "DstCountry"),
                "http-host" => (Source::Http, HTTP_HOST),
                "http-status" => (Source::Http, "status"),
                other => {
                    let known = weir_core::config::TOP_WIDGETS.join(", ");
                    return Err(bad(format!("unknown top widget {other:?}; known: {known}")));
                }
            };
            let columns = c.catalogue(source)?;
            let Some(col) = columns.find(column) else {
                let why = if source == Source::Flows { "GeoIP enrichment" } else { "a field of haproxy.fields" };
                return Err(bad(format!("{name} needs the {column} column, which this store does not hold ({why})")));
            };
            // Bits for flows, requests for HTTP (graphs' sums: the shares
            // are the same), over the last 5 minutes, from the 1 m table
            // where it has the column.
            let tables = Tables::of(source, &c.raw_table, [None; 4]);
            let table = &tables.names[usize::from(col.consolidated)];
            let units = if source == Source::Flows { Units::L3Bps } else { Units::Rps };
            let metric = units.metric(columns, !col.consolidated).map_err(Failure::Internal)?;
            let from = format!("FROM {}.{table} WHERE {} >= now() - 300", c.database, tables.time);
            let sql = format!(
                "SELECT * FROM (SELECT 0, {metric} AS v, {} AS d {from} GROUP BY d ORDER BY v DESC LIMIT 5) \
             UNION ALL SELECT 1, {metric}, '' {from}",
                columns.text_sql(column, column)
            );
            let rows = query::parse_rows(&c.select(sql).await?, 1).map_err(Failure::Internal)?;
            let total: f64 = rows.iter().filter(|r| r.bucket == 1).map(|r| r.value).sum();
            let mut top: Vec<(String, f64)> = rows
                .iter()
                .filter(|r| r.bucket == 0)
                .map(|r| {
                    let name = query::label(columns, column, &r.labels[0]);
                    (if name.is_empty() { "Unknown".into() } else { name }, r.value)
                })
                .collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top: Vec<TopItem> = top
                .into_iter()
                .map(|(name, v)| TopItem { name, percent: if total > 0.0 { v * 100.0 / total } else { 0.0 } })
                .collect();
            Ok(cache_json(&Top { top }, None))
        }),
    )
    .await
}

/// The home page graph: Gbit/s over `console.homepage_graph_time_range_s`.
#[utoipa::path(get, path = "/widget/graph", responses((status = 200, body = HomeGraph)))]
async fn home_graph(State(c): State<Arc<Console>>) -> Response {
    observed(
        &c,
        "widget/graph",
        cached(&c, "widget/graph".into(), Duration::from_secs(300), async {
            let end = now();
            let start = end - c.config.homepage_graph_time_range_s as i64;
            let request = GraphRequest {
                source: Source::Flows,
                start: query::format_time(start),
                end: query::format_time(end),
                dimensions: Vec::new(),
                limit: 1,
                limit_type: Default::default(),
                filter: c.config.homepage_graph_filter.clone(),
                truncate_v4: 0,
                truncate_v6: 0,
                units: Units::L3Bps,
                points: Some(200),
                bidirectional: false,
                previous_period: false,
                graph_type: None,
            };
            let (answer, _) = run_line(&c, &request).await?;
            let data: Vec<HomePoint> = answer
                .t
                .iter()
                .zip(answer.points.first().cloned().unwrap_or_else(|| vec![0.0; answer.t.len()]))
                .map(|(t, bps)| HomePoint { t: t.clone(), gbps: bps / 1e9 })
                .collect();
            Ok(cache_json(&HomeGraph { data }, None))
        }),
    )
    .await
}

/// A checked graph request this server can answer.
fn checked(c: &Console, request: &GraphRequest) -> Result<query::Checked, Failure> {
    let r = request.check(c.catalogue(request.source)?, c.limits(), now()).map_err(bad)?;
    if (r.truncate_v4 > 0 || r.truncate_v6 > 0) && c.store.dialect() != SqlDialect::MODERN {
        return Err(bad("truncate-v4 and truncate-v6 need ClickHouse 19.3 or later (IPv6CIDRToRange)"));
    }
    Ok(r)
}

async fn run_line(c: &Console, request: &GraphRequest) -> Result<(query::LineAnswer, String), Failure> {
    let r = checked(c, request)?;
    let points = request.points.ok_or_else(|| bad("points is required (5..2000)"))?;
    let columns = c.catalogue(request.source)?;
    let tables = c.tables(request.source).await?;
    let choice = query::choose_table(&tables, r.start, r.end, points, r.needs_raw(columns));
    let axes = c.builder(columns, &tables).line(&r, &choice).map_err(bad)?;
    let mut results = Vec::with_capacity(axes.len());
    for q in axes {
        let out = c.select(q.sql.clone()).await?;
        let rows = query::parse_rows(&out, q.dimensions).map_err(Failure::Internal)?;
        results.push((q, rows));
    }
    let sql = results.first().map(|(q, _)| q.sql.clone()).unwrap_or_default();
    Ok((query::line_answer(columns, &r, &choice, &results), sql))
}

/// An answer to keep: its JSON and the SQL behind it.
fn cache_json<T: Serialize>(value: &T, sql: Option<String>) -> Cached {
    Cached { body: serde_json::to_vec(value).unwrap_or_default().into(), sql }
}

fn respond(answer: Cached) -> Response {
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], answer.body).into_response();
    if let Some(sql) = answer.sql.filter(|s| s.len() <= SQL_HEADER_MAX) {
        if let Ok(v) = HeaderValue::from_str(&sql) {
            response.headers_mut().insert("x-sql-query", v);
        }
    }
    response
}

/// The answer from the cache, or from `work` (kept `ttl` when it succeeds).
async fn cached(
    c: &Console,
    key: String,
    ttl: Duration,
    work: impl Future<Output = Result<Cached, Failure>>,
) -> Answer {
    if let Some(hit) = c.cache.get(&key, Instant::now()) {
        c.observer.cache(true);
        return Ok(respond(hit));
    }
    c.observer.cache(false);
    let answer = work.await?;
    c.cache.put(key, answer.clone(), ttl, Instant::now());
    Ok(respond(answer))
}

const FIVE_S: Duration = Duration::from_secs(5);
const THIRTY_S: Duration = Duration::from_secs(30);

/// Time series per top row of the dimensions, `Other`, reverse and previous-period axes.
#[utoipa::path(post, path = "/graph/line", request_body = GraphRequest, responses((status = 200, body = query::LineAnswer), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody, description = "past the memory or result-row bound"), (status = 504, body = ErrorBody, description = "past the time bound")))]
async fn line(State(c): State<Arc<Console>>, payload: Result<Json<GraphRequest>, JsonRejection>) -> Response {
    observed(&c, "graph/line", async {
        let request = body(payload)?;
        let key = format!("graph/line:{}", serde_json::to_string(&request).unwrap_or_default());
        cached(&c, key, c.graph_ttl(&request), async {
            let (answer, sql) = run_line(&c, &request).await?;
            Ok(cache_json(&answer, Some(sql)))
        })
        .await
    })
    .await
}

/// Each dimension against the top rows, with the links between consecutive dimensions.
#[utoipa::path(post, path = "/graph/sankey", request_body = GraphRequest, responses((status = 200, body = query::SankeyAnswer), (status = 400, body = ErrorBody)))]
async fn sankey(State(c): State<Arc<Console>>, payload: Result<Json<GraphRequest>, JsonRejection>) -> Response {
    observed(&c, "graph/sankey", async {
        let request = body(payload)?;
        let key = format!("graph/sankey:{}", serde_json::to_string(&request).unwrap_or_default());
        cached(&c, key, c.graph_ttl(&request), async {
            let r = checked(&c, &request)?;
            let columns = c.catalogue(request.source)?;
            let tables = c.tables(request.source).await?;
            let choice = query::choose_table(&tables, r.start, r.end, 20, r.needs_raw(columns));
            let axes = c.builder(columns, &tables).sankey(&r, &choice).map_err(bad)?;
            let mut results = Vec::with_capacity(axes.len());
            for q in axes {
                let out = c.select(q.sql.clone()).await?;
                let rows = query::parse_rows(&out, q.dimensions).map_err(Failure::Internal)?;
                results.push((q, rows));
            }
            let sql = results.first().map(|(q, _)| q.sql.clone()).unwrap_or_default();
            Ok(cache_json(&query::sankey_answer(columns, &r, &choice, &results), Some(sql)))
        })
        .await
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct IntervalRequest {
    #[serde(default)]
    source: Source,
    start: String,
    end: String,
    points: u64,
}

#[derive(Serialize, ToSchema)]
struct IntervalAnswer {
    table: String,
    interval: u64,
}

/// The table and interval a graph over the range would use.
#[utoipa::path(post, path = "/graph/table-interval", request_body = IntervalRequest, responses((status = 200, body = IntervalAnswer), (status = 400, body = ErrorBody)))]
async fn table_interval(
    State(c): State<Arc<Console>>,
    payload: Result<Json<IntervalRequest>, JsonRejection>,
) -> Response {
    observed(&c, "graph/table-interval", async {
        let r = body(payload)?;
        let start = query::parse_time("start", &r.start).map_err(bad)?;
        let end = query::parse_time("end", &r.end).map_err(bad)?;
        if end <= start {
            return Err(bad("end must be after start"));
        }
        if !(5..=2000).contains(&r.points) {
            return Err(bad("points must be 5..2000"));
        }
        c.catalogue(r.source)?;
        let tables = c.tables(r.source).await?;
        let Choice { table, interval, .. } = query::choose_table(&tables, start, end, r.points, false);
        Ok(Json(IntervalAnswer { table, interval }).into_response())
    })
    .await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FilterRequest {
    filter: String,
    /// Whose columns: `flows` (the default) or `http`.
    #[serde(default)]
    source: Source,
}

/// Checks a filter: its SQL, or the error with line, column and offset (always 200).
#[utoipa::path(post, path = "/filter/validate", request_body = FilterRequest, responses((status = 200, body = Validation)))]
async fn validate(State(c): State<Arc<Console>>, payload: Result<Json<FilterRequest>, JsonRejection>) -> Response {
    observed(&c, "filter/validate", async {
        let r = body(payload)?;
        Ok(Json(match filter::parse(&r.filter, c.catalogue(r.source)?) {
            Ok(None) => Validation { message: "ok".into(), parsed: None, errors: None },
            Ok(Some(e)) => Validation { message: "ok".into(), parsed: Some(e.to_sql(c.store.dialect())), errors: None },
            Err(e) => Validation { message: e.to_string(), parsed: None, errors: Some(vec![e]) },
        })
        .into_response())
    })
    .await
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    /// Whose columns: `flows` (the default) or `http`.
    #[serde(default)]
    source: Source,
    what: String,
    #[serde(default)]
    column: Option<String>,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    limit: Option<usize>,
}

/// A completion: the text to insert, what it is, whether to quote it.
#[derive(Serialize, ToSchema)]
struct Completion {
    label: String,
    detail: String,
    quoted: bool,
}

fn completion(label: impl Into<String>, detail: &str, quoted: bool) -> Completion {
    Completion { label: label.into(), detail: detail.into(), quoted }
}

/// Completions for a column name, an operator, or a value.
#[utoipa::path(post, path = "/filter/complete", request_body = CompleteRequest, responses((status = 200, body = Completions), (status = 400, body = ErrorBody)))]
async fn complete(State(c): State<Arc<Console>>, payload: Result<Json<CompleteRequest>, JsonRejection>) -> Response {
    observed(&c, "filter/complete", async {
        let r = body(payload)?;
        let key = format!("filter/complete:{}", serde_json::to_string(&r).unwrap_or_default());
        cached(&c, key, Duration::from_secs(60), async {
            let limit = r.limit.unwrap_or(20).clamp(1, 100);
            let prefix = r.prefix.to_ascii_lowercase();
            let columns = c.catalogue(r.source)?;
            let column = || {
                let name = r.column.as_deref().ok_or_else(|| bad("column is required"))?;
                columns.find(name).ok_or_else(|| bad(format!("unknown column {name:?}")))
            };
            let mut out: Vec<Completion> = match r.what.as_str() {
                "column" => columns.columns.iter().map(|col| completion(&col.name, "column name", false)).collect(),
                "operator" => {
                    column()?.kind.operators().iter().map(|op| completion(*op, "comparison operator", false)).collect()
                }
                "value" => {
                    let col = column()?;
                    let mut values = values(&c, columns, col.name.as_str(), col.kind, &r.prefix).await?;
                    // Columns of the same kind compare too.
                    values.extend(
                        columns
                            .columns
                            .iter()
                            .filter(|o| {
                                o.name != col.name
                                    && o.kind == col.kind
                                    && !matches!(o.kind, Kind::Boundary | Kind::EType | Kind::Direction)
                            })
                            .map(|o| completion(&o.name, "column name", false)),
                    );
                    values
                }
                other => return Err(bad(format!("what: {other:?} is not column, operator or value"))),
            };
            out.retain(|x| x.label.to_ascii_lowercase().starts_with(&prefix));
            out.truncate(limit);
            Ok(cache_json(&Completions { completions: out }, None))
        })
        .await
    })
    .await
}

/// Values worth offering for `column`: fixed lists, or the store's most
/// frequent recent values.
async fn values(
    c: &Console,
    columns: &Catalogue,
    column: &str,
    kind: Kind,
    prefix: &str,
) -> Result<Vec<Completion>, Failure> {
    let fixed =
        |labels: &[&str], detail: &str, quoted: bool| labels.iter().map(|l| completion(*l, detail, quoted)).collect();
    Ok(match kind {
        Kind::EType => fixed(&["IPv4", "IPv6"], "ethernet type", false),
        Kind::Direction => fixed(&["ingress", "egress"], "flow direction", false),
        Kind::Boundary => fixed(&["external", "internal", "undefined"], "network boundary", false),
        Kind::Proto => {
            weir_core::migrate::PROTOCOLS.iter().map(|(_, name, _)| completion(*name, "protocol", true)).collect()
        }
        Kind::Ip | Kind::Asn | Kind::UInt { .. } | Kind::Int | Kind::Mac | Kind::Str => {
            let consolidated = columns.find(column).is_some_and(|col| col.consolidated);
            let tables = Tables::of(columns.source, &c.raw_table, [None; 4]);
            // A minute of flows is plenty; requests are fewer.
            let raw_window = if columns.source == Source::Flows { 60 } else { 3600 };
            let (table, window) =
                if consolidated { (&tables.names[3], 86_400) } else { (&tables.names[0], raw_window) };
            let mut sql = format!(
                "SELECT 0, count() AS n, {} AS v FROM {}.{table} WHERE {} >= now() - {window}",
                columns.text_sql(column, column),
                c.database,
                tables.time
            );
            if !prefix.is_empty() && kind == Kind::Str {
                sql.push_str(&format!(" AND startsWith(lower({column}), {})", filter::quote(&prefix.to_lowercase())));
            }
            sql.push_str(" GROUP BY v ORDER BY n DESC LIMIT 20");
            let rows = query::parse_rows(&c.select(sql).await?, 1).map_err(Failure::Internal)?;
            let detail = match kind {
                Kind::Ip => "IP address",
                Kind::Asn => "AS number",
                Kind::Mac => "MAC address",
                _ => "recent value",
            };
            rows.into_iter()
                .map(|row| {
                    let label = query::label(columns, column, &row.labels[0]);
                    completion(label, detail, kind == Kind::Str)
                })
                .collect()
        }
        Kind::AsPath | Kind::UIntArray | Kind::Communities | Kind::LargeCommunities => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_route() {
        let doc: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for endpoint in ENDPOINTS {
            let path = match endpoint {
                "widget/top" => "/widget/top/{name}".to_string(),
                e => format!("/{e}"),
            };
            assert!(paths.contains_key(&path), "{path} is not documented");
        }
        assert!(paths.contains_key("/filter/saved/{id}") && paths.contains_key("/openapi.json"));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in
            ["GraphRequest", "LineAnswer", "SankeyAnswer", "Units", "Source", "FilterError", "User", "SavedFilter"]
        {
            assert!(schemas.contains_key(name), "schema {name}");
        }
        let units = &schemas["Units"]["enum"];
        assert!(units.as_array().unwrap().contains(&serde_json::json!("inl2%")), "{units}");
        assert!(units.as_array().unwrap().contains(&serde_json::json!("latency-p99")), "{units}");
        let line = &doc["paths"]["/graph/line"]["post"];
        assert!(line["requestBody"].is_object() && line["responses"]["400"].is_object());
    }
}
