//! HAProxy's log shard's rows for `http_requests` (`[haproxy] store =
//! true`): the parsed requests as columns (`weir_core::httplog::HttpRows`),
//! handed to the store writer as one Native block per batch, beside the
//! flows' batches (same writer, spool and retries).
//!
//! The log shard never waits for the store: Kafka delivery goes on at its
//! own pace. A hand-over with no batch buffer free (the writer stuck in an
//! insert) is put off; rows keep coming up to twice `store_batch_rows_max`,
//! and past that a request is left out of the store (still produced to
//! Kafka), counted as `weir_haproxy_store_rows_dropped_total`.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use weir_core::accesslog::{HeaderValues, Value, Values};
use weir_core::httplog::{HttpRows, HttpTable};

use super::writer::{free_buffer, Batch, Blocks};

pub struct HttpSink {
    table: HttpTable,
    rows: HttpRows,
    rows_max: usize,
    first_row_at: Instant,
    flush_interval: Duration,
    full: Sender<Batch>,
    free: Receiver<Blocks>,
    /// The line being read is past the bound: nothing of it is kept.
    skipping: bool,
    /// Rows handed over, and left out (the writer behind).
    pub handed_over: u64,
    pub dropped: u64,
}

impl HttpSink {
    pub(super) fn new(
        table: HttpTable,
        rows_max: usize,
        flush_interval: Duration,
        full: Sender<Batch>,
        free: Receiver<Blocks>,
    ) -> HttpSink {
        HttpSink {
            rows: HttpRows::new(&table),
            table,
            rows_max: rows_max.max(1),
            first_row_at: Instant::now(),
            flush_interval,
            full,
            free,
            skipping: false,
            handed_over: 0,
            dropped: 0,
        }
    }

    /// A new line: its values follow (`Values`), then `commit` or nothing.
    pub fn begin(&mut self) {
        self.skipping = self.rows.len() >= 2 * self.rows_max;
        self.rows.begin();
    }

    /// The line was good: its row is kept (or counted as dropped when the
    /// writer has been behind for two batches).
    pub fn commit(&mut self) {
        if self.skipping {
            self.dropped += 1;
            return;
        }
        if self.rows.is_empty() {
            self.first_row_at = Instant::now();
        }
        self.rows.commit();
        if self.rows.len() >= self.rows_max || self.rows.rollup_full() {
            self.hand_over(false);
        }
    }

    /// Housekeeping: the batch goes once its first row is old enough.
    pub fn tick(&mut self) {
        if !self.rows.is_empty() && self.first_row_at.elapsed() >= self.flush_interval {
            self.hand_over(false);
        }
    }

    /// A stop: what is left goes, waiting for a buffer.
    pub fn flush(&mut self) {
        self.hand_over(true);
    }

    fn hand_over(&mut self, wait: bool) {
        if self.rows.is_empty() {
            return;
        }
        // None free: the rows wait for the next tick.
        let Ok(mut blocks) = free_buffer(&self.free, wait) else { return };
        let rows = self.rows.len();
        self.rows.write_block(&self.table, &mut blocks.http);
        let http_rollup_rows = self.rows.write_rollup_blocks(&self.table, &mut blocks.http_rollups);
        let batch = Batch {
            rows: 0,
            blocks,
            consolidated_rows: [0; 3],
            http_rows: rows as u32,
            http_rollup_rows,
            early: false,
            arrivals: Vec::new(),
            // Untracked (no acknowledgement waits on it).
            shard: u32::MAX,
            ticket: 0,
        };
        if self.full.send(batch).is_ok() {
            self.handed_over += rows as u64;
        }
    }
}

impl Values for HttpSink {
    fn header(&mut self, header: HeaderValues<'_>) {
        if !self.skipping {
            self.rows.header(header);
        }
    }

    fn value(&mut self, field: usize, part: usize, value: Value<'_>) {
        if !self.skipping {
            self.rows.value(field, part, value);
        }
    }
}
