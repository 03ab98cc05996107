//! The console (`weir-console`) as this process serves it: its own store
//! connection on its own thread, so graphs never wait behind inserts nor
//! inserts behind graphs, and its counters.
//!
//! - Embedded store: a second chDB connection to the writer's database
//!   (chDB allows several in one process; each has its own session), set
//!   `readonly = 2` once, so it reads and may only tighten settings.
//! - Remote store: its own HTTP client; each query carries `readonly = 2`.
//!
//! Every query carries `console.query_timeout_s`,
//! `console.query_memory_bytes_max` and `console.query_result_rows_max`
//! (`max_execution_time`, `max_memory_usage`, `max_result_rows` with
//! `result_overflow_mode = 'throw'`); the engine enforces them.

pub mod metrics;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use tracing::warn;
use weir_console::api::{Console, Pending, QueryError, QueryFailure, Store};
use weir_console::columns::Catalogue;
use weir_console::filter::SqlDialect;
use weir_core::config::{Config, RawStore};
use weir_core::schema::{stored_columns, ServerVersion};

use crate::store::Engine;
use metrics::ConsoleMetrics;

/// Console queries waiting for the console's connection.
const QUEUE: usize = 32;

/// A console query on its way to the store.
struct Job {
    sql: String,
    names: bool,
    reply: tokio::sync::oneshot::Sender<Result<Vec<u8>, QueryError>>,
}

/// The console's side of the store: a thread with its own connection.
pub struct ConsoleStore {
    jobs: Sender<Job>,
    /// Whether the server stores addresses as `FixedString(16)` (before 19.3).
    fixed_string_addresses: Arc<AtomicBool>,
}

impl Store for ConsoleStore {
    fn select(&self, sql: String, names: bool) -> Pending<Result<Vec<u8>, QueryError>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.jobs.try_send(Job { sql, names, reply });
        Box::pin(async move {
            let unavailable =
                |message: &str| QueryError { failure: QueryFailure::Unavailable, message: message.into() };
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(unavailable("too many console queries are waiting")),
                Err(TrySendError::Disconnected(_)) => return Err(unavailable("the console's store thread stopped")),
            }
            answer.await.unwrap_or_else(|_| Err(unavailable("the console's store thread stopped")))
        })
    }

    fn dialect(&self) -> SqlDialect {
        if self.fixed_string_addresses.load(Relaxed) {
            SqlDialect::FIXED_STRING_ADDRESSES
        } else {
            SqlDialect::MODERN
        }
    }
}

/// The console's routes: the API under `/api/v0/console`, the web app at `/`.
pub fn routes(console: Arc<Console>) -> axum::Router {
    axum::Router::new().nest("/api/v0/console", weir_console::api::routes(console)).merge(weir_console::web::routes())
}

/// Starts the console's store thread and builds the console over it.
pub fn start(config: &Config, metrics: Arc<ConsoleMetrics>) -> Result<Arc<Console>, String> {
    let columns = Catalogue::new(&stored_columns(&config.store.schema_settings()));
    let (jobs, queue) = bounded::<Job>(QUEUE);
    let fixed = Arc::new(AtomicBool::new(false));
    let store = Arc::new(ConsoleStore { jobs, fixed_string_addresses: fixed.clone() });
    let raw_table = match config.store.raw {
        RawStore::Table => "flows",
        RawStore::Segments => "flows_segments",
    };
    let mut console = Console::new(
        columns,
        config.console.clone(),
        config.store.database.clone(),
        raw_table.into(),
        store,
        metrics,
        env!("CARGO_PKG_VERSION"),
    )?;
    // HAProxy's requests in the store (`weir run`'s, or another
    // appliance's for a console alone): the HTTP source.
    if config.haproxy.store {
        console = console.with_http(Catalogue::http(&config.haproxy.http_table()));
    }
    let worker = Worker { config: config.clone(), engine: None, retry_at: Instant::now(), fixed };
    thread::Builder::new()
        .name("weir-console".into())
        .spawn(move || worker.run(queue))
        .map_err(|e| format!("cannot start the console's store thread: {e}"))?;
    Ok(Arc::new(console))
}

struct Worker {
    config: Config,
    engine: Option<Engine>,
    retry_at: Instant,
    fixed: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self, queue: Receiver<Job>) {
        for job in queue {
            let answer = self.answer(&job.sql, job.names);
            let _ = job.reply.send(answer);
        }
    }

    fn answer(&mut self, sql: &str, names: bool) -> Result<Vec<u8>, QueryError> {
        let c = &self.config.console;
        let limits = [
            ("max_execution_time", c.query_timeout_s),
            ("max_memory_usage", c.query_memory_bytes_max),
            ("max_result_rows", c.query_result_rows_max),
        ];
        let engine = self.connected()?;
        let format = if names { "TabSeparatedWithNames" } else { "TabSeparated" };
        engine.console_query(sql, format, &limits).map_err(|message| {
            let failure = QueryFailure::of(&message);
            if failure == QueryFailure::Failed {
                warn!("console: query failed: {message}\n  {sql}");
            }
            QueryError { failure, message }
        })
    }

    fn connected(&mut self) -> Result<&mut Engine, QueryError> {
        if self.engine.is_none() {
            let unavailable = |message: String| QueryError { failure: QueryFailure::Unavailable, message };
            if Instant::now() < self.retry_at {
                return Err(unavailable("the store is not reachable; retrying".into()));
            }
            self.retry_at = Instant::now() + Duration::from_secs(5);
            let mut engine = Engine::connect_console(&self.config.store).map_err(unavailable)?;
            let version = engine.version().map_err(unavailable)?;
            self.fixed.store(version < ServerVersion(19, 3), Relaxed);
            self.engine = Some(engine);
        }
        Ok(self.engine.as_mut().expect("connected above"))
    }
}
