//! A ClickHouse server over HTTP, through the `clickhouse` crate: batches go
//! as pre-encoded Native blocks (`insert_formatted_with`), LZ4-compressed in
//! ClickHouse's block format when `store.remote.compression` is on; queries
//! come back as bytes in the format asked for.
//!
//! The crate is async: the store thread owns a current-thread tokio runtime
//! and blocks on each call, with `store.remote.timeout_ms` as a bound. Row
//! validation is off (it needs `RowBinaryWithNamesAndTypes`, which servers
//! before 19.x lack, and Weir's rows are checked by its own tests).
//!
//! **Nodes.** `store.remote.url` first, then `store.remote.failover` in
//! order: a call that cannot connect to the node in use (refused,
//! unreachable) goes to the next, which stays in use; a node other than
//! `url` gives way to `url` again after [`RETURN_AFTER`]. A node that
//! answers, even with an error, or that does not answer within
//! `timeout_ms`, is not left (the insert may have been stored: only a
//! replica of the same shard would drop it again).
//!
//! **Copies.** On a cluster, a table every node keeps for itself (the
//! records tables: `Join` engines, which do not replicate) takes each
//! insert on the node in use, and then a copy on every other listed node,
//! so that the raw table's name aliases read the same on any node. A copy
//! that fails waits in that node's queue (at most [`COPIES_MAX`] bytes, the
//! oldest dropped and counted beyond) and is sent again, in order, by the
//! writer's loop [`COPY_RETRY`] later (doubling while it fails, up to
//! [`COPY_RETRY_MAX`]), with at most [`COPY_TIMEOUT`] per try.
//! A record sent twice is harmless: its id is its content's hash, and a
//! `Join(ANY, ...)` table keeps the first row of an id.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clickhouse::{Client, Compression};
use weir_core::config::RemoteStoreConfig;

/// How long a failover node is used before `url` is tried first again.
pub const RETURN_AFTER: Duration = Duration::from_secs(60);
/// The bytes of copies one node may have waiting.
pub const COPIES_MAX: usize = 32 << 20;
/// How long a node whose copy failed is left alone at first; the wait
/// doubles with each failure in a row, up to [`COPY_RETRY_MAX`].
pub const COPY_RETRY: Duration = Duration::from_secs(5);
pub const COPY_RETRY_MAX: Duration = Duration::from_secs(60);
/// The longest a copy may take (they are a few kilobytes).
pub const COPY_TIMEOUT: Duration = Duration::from_secs(2);

/// What happened to the copies of the per-node tables' inserts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyCounts {
    /// Copies a node took.
    pub sent: u64,
    /// Tries that failed (each is tried again).
    pub failed: u64,
    /// Copies dropped from a full queue.
    pub dropped: u64,
    /// Copies waiting, all nodes together.
    pub waiting: u64,
}

/// A node's copies still to send, and when to try next.
#[derive(Default)]
struct Copies {
    queue: VecDeque<(String, Bytes)>,
    bytes: usize,
    next_try: Option<Instant>,
    /// The wait after the last failure (zero after a success).
    wait: Duration,
}

pub struct Remote {
    /// `url`, then the failover nodes: their URL and client.
    nodes: Vec<(String, Client)>,
    /// The node in use, and since when.
    current: usize,
    since: Instant,
    /// Moves to another node because the one in use could not be reached.
    pub failovers: u64,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
    /// A cluster's node: inserts go into the `_local` tables.
    cluster: bool,
    /// Per node (as `nodes`): copies of the per-node tables' inserts.
    copies: Vec<Copies>,
    pub copy_counts: CopyCounts,
}

impl Remote {
    pub fn connect(config: &RemoteStoreConfig) -> Result<Remote, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("store.remote: cannot start the HTTP runtime: {e}"))?;
        let client = |url: &str| {
            let client = Client::default()
                .with_url(url)
                .with_user(&config.user)
                .with_validation(false)
                .with_compression(if config.compression { Compression::Lz4 } else { Compression::None });
            if config.password.is_empty() {
                client
            } else {
                client.with_password(&config.password)
            }
        };
        let nodes: Vec<_> =
            std::iter::once(&config.url).chain(&config.failover).map(|u| (u.clone(), client(u))).collect();
        Ok(Remote {
            copies: nodes.iter().map(|_| Copies::default()).collect(),
            copy_counts: CopyCounts::default(),
            nodes,
            current: 0,
            since: Instant::now(),
            failovers: 0,
            runtime,
            timeout: Duration::from_millis(config.timeout_ms),
            cluster: !config.cluster.is_empty(),
        })
    }

    /// The node in use: 0 is `url`, then the failover nodes in order.
    pub fn node(&self) -> usize {
        self.current
    }

    /// Sends `rows` (Native blocks) with `insert_sql` (`INSERT ... FORMAT
    /// Native`); on a cluster, into the local table of this node's shard,
    /// or, for a table every node keeps for itself, into that of the node
    /// in use and then of every other node (see "Copies").
    pub fn insert(&mut self, insert_sql: &str, rows: &[u8]) -> Result<(), String> {
        let data = Bytes::copy_from_slice(rows);
        let per_node = self.cluster && weir_core::cluster::per_node_insert(insert_sql);
        let insert_sql =
            if self.cluster { weir_core::cluster::local_insert(insert_sql) } else { insert_sql.to_string() };
        self.on_a_node(|client| send(client, insert_sql.clone(), data.clone()))?;
        if per_node {
            let took = self.current;
            for (i, copies) in self.copies.iter_mut().enumerate().filter(|(i, _)| *i != took) {
                copies.queue.push_back((insert_sql.clone(), data.clone()));
                copies.bytes += data.len();
                while copies.bytes > COPIES_MAX {
                    let Some((_, old)) = copies.queue.pop_front() else { break };
                    copies.bytes -= old.len();
                    self.copy_counts.dropped += 1;
                    tracing::warn!(node = %self.nodes[i].0, "store.remote: a records copy dropped, its node's queue is full");
                }
            }
        }
        // The writer's loop sends them (`send_copies`) after each round.
        Ok(())
    }

    /// Sends the copies waiting, node by node, in order, until one fails;
    /// a node that failed waits its turn (`Copies::next_try`).
    pub fn send_copies(&mut self) {
        if self.copies.iter().all(|c| c.queue.is_empty()) {
            return;
        }
        let now = Instant::now();
        for i in 0..self.nodes.len() {
            if self.copies[i].next_try.is_some_and(|t| now < t) {
                continue;
            }
            while let Some((sql, data)) = self.copies[i].queue.front().cloned() {
                let copy = send(self.nodes[i].1.clone(), sql, data.clone());
                let answer = self.block_on(COPY_TIMEOUT.min(self.timeout), copy);
                let copies = &mut self.copies[i];
                match answer {
                    Ok(()) => {
                        copies.queue.pop_front();
                        copies.bytes -= data.len();
                        (copies.next_try, copies.wait) = (None, Duration::ZERO);
                        self.copy_counts.sent += 1;
                    }
                    Err(why) => {
                        if copies.wait.is_zero() {
                            tracing::warn!(node = %self.nodes[i].0, "store.remote: a records copy failed, tried again from {} s to {} s later: {why}", COPY_RETRY.as_secs(), COPY_RETRY_MAX.as_secs());
                        }
                        copies.wait = (copies.wait * 2).clamp(COPY_RETRY, COPY_RETRY_MAX);
                        copies.next_try = Some(now + copies.wait);
                        self.copy_counts.failed += 1;
                        break;
                    }
                }
            }
        }
        self.copy_counts.waiting = self.copies.iter().map(|c| c.queue.len() as u64).sum();
    }

    /// Runs `sql` and returns its output in `format`.
    pub fn query(&mut self, sql: &str, format: &str) -> Result<Vec<u8>, String> {
        self.fetch(sql, format, &[])
    }

    /// `query` with the server's `readonly = 1`: it refuses anything that
    /// writes, changes settings or calls a table function.
    pub fn query_read_only(&mut self, sql: &str, format: &str) -> Result<Vec<u8>, String> {
        self.fetch(sql, format, &[("readonly", "1".into())])
    }

    /// A console SELECT: `readonly = 2` and the console's `limits`.
    pub fn console_query(&mut self, sql: &str, format: &str, limits: &[(&str, u64)]) -> Result<Vec<u8>, String> {
        let mut settings = vec![("readonly", "2".to_string()), ("result_overflow_mode", "throw".into())];
        settings.extend(limits.iter().map(|(name, value)| (*name, value.to_string())));
        self.fetch(sql, format, &settings)
    }

    fn fetch(&mut self, sql: &str, format: &str, settings: &[(&str, String)]) -> Result<Vec<u8>, String> {
        self.on_a_node(|client| {
            let mut query = client.query_raw(sql);
            for (name, value) in settings {
                query = query.with_setting(*name, value.clone());
            }
            async move {
                let mut cursor = query.fetch_bytes(format)?;
                cursor.collect().await.map(|b| b.to_vec())
            }
        })
    }

    /// Runs a statement with no result (DDL, INSERT ... VALUES). On a
    /// cluster the server waits for every node to run an `ON CLUSTER`
    /// statement for at most a second less than `timeout_ms`, then says
    /// which have not (they run it from the queue when they return), and
    /// an `INSERT ... VALUES` (a helper table's rows, replicated to every
    /// node) is not deduplicated: a table emptied and filled again takes
    /// the same rows again.
    pub fn execute(&mut self, sql: &str) -> Result<(), String> {
        let wait = (self.cluster).then(|| (self.timeout.as_secs().saturating_sub(1)).max(1).to_string());
        self.on_a_node(|client| {
            let mut query = client.query_raw(sql);
            if let Some(wait) = &wait {
                query = query
                    .with_setting("distributed_ddl_task_timeout", wait.clone())
                    .with_setting("insert_deduplicate", "0");
            }
            query.execute()
        })
    }

    /// `work` on the node in use, or on the next that can be reached.
    fn on_a_node<T, F: Future<Output = clickhouse::error::Result<T>>>(
        &mut self,
        mut work: impl FnMut(Client) -> F,
    ) -> Result<T, String> {
        // Back to `url` first once a failover node has served a while.
        let first = if self.current != 0 && self.since.elapsed() >= RETURN_AFTER { 0 } else { self.current };
        let n = self.nodes.len();
        let mut unreachable = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let answer = self.block_on(self.timeout, work(self.nodes[i].1.clone()));
            match answer {
                Err(e) if n > 1 && cannot_connect(&e) => unreachable.push(format!("{}: {e}", self.nodes[i].0)),
                answer => {
                    if i != self.current {
                        if i != 0 || !unreachable.is_empty() {
                            self.failovers += 1;
                        }
                        (self.current, self.since) = (i, Instant::now());
                    }
                    return answer;
                }
            }
        }
        Err(format!("no node could be reached: {}", unreachable.join("; ")))
    }

    /// `work` on the runtime, for at most `limit`.
    fn block_on<T>(
        &self,
        limit: Duration,
        work: impl Future<Output = clickhouse::error::Result<T>>,
    ) -> Result<T, String> {
        self.runtime.block_on(async {
            match tokio::time::timeout(limit, work).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
            }
        })
    }
}

/// One insert of `data` (the rows of `sql`'s format) on `client`'s node.
async fn send(client: Client, sql: String, data: Bytes) -> clickhouse::error::Result<()> {
    let mut insert = client.insert_formatted_with(sql);
    insert.send(data).await?;
    insert.end().await
}

/// Whether the request never reached the server (a connection refused or
/// unreachable): safe to send to another node.
fn cannot_connect(error: &str) -> bool {
    error.starts_with("network error") && error.contains("Connect")
}

#[cfg(test)]
mod tests {
    use super::cannot_connect;

    #[test]
    fn only_a_request_that_never_reached_a_node_goes_to_another() {
        assert!(cannot_connect("network error: client error (Connect)"));
        assert!(!cannot_connect("no answer within 10000 ms"), "it may have been stored");
        assert!(!cannot_connect("bad response: Code: 252. DB::Exception: Too many parts"));
        assert!(!cannot_connect("network error: connection closed before message completed"));
    }
}
