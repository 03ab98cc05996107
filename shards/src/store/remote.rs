//! A ClickHouse server over HTTP, through the `clickhouse` crate: batches go
//! as pre-encoded Native blocks (`insert_formatted_with`), LZ4-compressed in
//! ClickHouse's block format when `store.remote.compression` is on; queries
//! come back as bytes in the format asked for.
//!
//! The crate is async: the store thread owns a current-thread tokio runtime
//! and blocks on each call, with `store.remote.timeout_ms` as a bound. Row
//! validation is off (it needs `RowBinaryWithNamesAndTypes`, which servers
//! before 19.x lack, and Weir's rows are checked by its own tests).

use std::time::Duration;

use bytes::Bytes;
use clickhouse::{Client, Compression};
use weir_core::config::RemoteStoreConfig;

pub struct Remote {
    client: Client,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
    /// A cluster's node: inserts go into the `_local` tables.
    cluster: bool,
}

impl Remote {
    pub fn connect(config: &RemoteStoreConfig) -> Result<Remote, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("store.remote: cannot start the HTTP runtime: {e}"))?;
        let mut client = Client::default()
            .with_url(&config.url)
            .with_user(&config.user)
            .with_validation(false)
            .with_compression(if config.compression { Compression::Lz4 } else { Compression::None });
        if !config.password.is_empty() {
            client = client.with_password(&config.password);
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        Ok(Remote { client, runtime, timeout, cluster: !config.cluster.is_empty() })
    }

    /// Sends `rows` (Native blocks) with `insert_sql` (`INSERT ... FORMAT
    /// Native`); on a cluster, into the local table of this node's shard.
    pub fn insert(&mut self, insert_sql: &str, rows: &[u8]) -> Result<(), String> {
        let client = &self.client;
        let data = Bytes::copy_from_slice(rows);
        let insert_sql =
            if self.cluster { weir_core::cluster::local_insert(insert_sql) } else { insert_sql.to_string() };
        let work = async move {
            let mut insert = client.insert_formatted_with(insert_sql);
            insert.send(data).await?;
            insert.end().await
        };
        self.block_on(work)
    }

    /// Runs `sql` and returns its output in `format`.
    pub fn query(&mut self, sql: &str, format: &str) -> Result<Vec<u8>, String> {
        self.fetch(self.client.query_raw(sql), format)
    }

    /// `query` with the server's `readonly = 1`: it refuses anything that
    /// writes, changes settings or calls a table function.
    pub fn query_read_only(&mut self, sql: &str, format: &str) -> Result<Vec<u8>, String> {
        self.fetch(self.client.query_raw(sql).with_setting("readonly", "1"), format)
    }

    /// A console SELECT: `readonly = 2` and the console's `limits`.
    pub fn console_query(&mut self, sql: &str, format: &str, limits: &[(&str, u64)]) -> Result<Vec<u8>, String> {
        let mut query = self.client.query_raw(sql).with_setting("readonly", "2");
        for (name, value) in limits {
            query = query.with_setting(*name, value.to_string());
        }
        self.fetch(query.with_setting("result_overflow_mode", "throw"), format)
    }

    fn fetch(&self, query: clickhouse::query::Query, format: &str) -> Result<Vec<u8>, String> {
        self.block_on(async move {
            let mut cursor = query.fetch_bytes(format)?;
            cursor.collect().await.map(|b| b.to_vec())
        })
    }

    /// Runs a statement with no result (DDL, INSERT ... VALUES). On a
    /// cluster the server waits for every node to run an `ON CLUSTER`
    /// statement for at most a second less than `timeout_ms`, then says
    /// which have not (they run it from the queue when they return).
    pub fn execute(&mut self, sql: &str) -> Result<(), String> {
        let client = &self.client;
        let mut query = client.query_raw(sql);
        if self.cluster {
            let wait = (self.timeout.as_secs().saturating_sub(1)).max(1);
            query = query.with_setting("distributed_ddl_task_timeout", wait.to_string());
        }
        self.block_on(async move { query.execute().await })
    }

    fn block_on<T>(&self, work: impl std::future::Future<Output = clickhouse::error::Result<T>>) -> Result<T, String> {
        self.runtime.block_on(async {
            match tokio::time::timeout(self.timeout, work).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
            }
        })
    }
}
