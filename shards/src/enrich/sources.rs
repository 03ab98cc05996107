//! Remote metadata sources: one thread ("weir-sources", a current-thread
//! tokio runtime) fetches each `[[metadata.sources]]` document over HTTP
//! on its interval, reads it (`weir_core::enrich::sources`) and hands the
//! entries to the metadata control thread, which resolves again what it
//! knows. A fetch or a document that fails is counted and logged; the
//! source keeps its last good entries.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crossbeam_channel::Sender;
use weir_core::config::MetadataSource;
use weir_core::enrich::sources::{read, Format, Read};

/// A document larger than this is refused (memory stays bounded).
pub const BODY_MAX: usize = 64 << 20;

/// One source's counters.
#[derive(Default)]
pub struct SourceMetrics {
    pub name: String,
    /// Fetches that gave a document read, that failed.
    pub fetches: [AtomicU64; 2],
    /// Entries of the last good document (gauge), and those skipped.
    pub entries: AtomicU64,
    pub invalid: AtomicU64,
}

/// A fetch's outcome, for the control thread.
pub struct Update {
    pub source: usize,
    pub result: Result<Read, String>,
}

/// Starts the fetching thread; `control` is woken with each update. The
/// thread ends once the control thread stops reading updates.
pub fn start(sources: &[MetadataSource], updates: Sender<Update>, control: std::thread::Thread) -> Result<(), String> {
    if sources.is_empty() {
        return Ok(());
    }
    let sources = sources.to_vec();
    std::thread::Builder::new()
        .name("weir-sources".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    let _ = updates.send(Update { source: 0, result: Err(format!("no runtime: {e}")) });
                    return;
                }
            };
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for (i, source) in sources.into_iter().enumerate() {
                    let (updates, control) = (updates.clone(), control.clone());
                    tasks.push(tokio::spawn(async move {
                        let client =
                            reqwest::Client::builder().timeout(Duration::from_millis(source.timeout_ms)).build();
                        loop {
                            let result = match &client {
                                Ok(c) => fetch(c, &source).await.and_then(|body| {
                                    let format = if source.format == "csv" { Format::Csv } else { Format::Json };
                                    read(format, &source.path, &source.rename, &body)
                                }),
                                Err(e) => Err(format!("no HTTP client: {e}")),
                            };
                            if updates.send(Update { source: i, result }).is_err() {
                                return;
                            }
                            control.unpark();
                            tokio::time::sleep(Duration::from_secs(source.interval_s)).await;
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })
        .map_err(|e| format!("cannot start the metadata sources thread: {e}"))?;
    Ok(())
}

/// The document at the source's URL (a 2xx answer, at most `BODY_MAX`).
async fn fetch(client: &reqwest::Client, source: &MetadataSource) -> Result<Vec<u8>, String> {
    let mut request = client.get(&source.url);
    for (k, v) in &source.headers {
        request = request.header(k, v);
    }
    let mut response = request.send().await.map_err(|e| format!("{}: {e}", source.url))?;
    if !response.status().is_success() {
        return Err(format!("{}: HTTP {}", source.url, response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("{}: {e}", source.url))? {
        if body.len() + chunk.len() > BODY_MAX {
            return Err(format!("{}: larger than {BODY_MAX} bytes", source.url));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The last good entries of each source, combined in configured order.
#[derive(Default)]
pub struct LastGood(BTreeMap<usize, Vec<weir_core::config::StaticExporter>>);

impl LastGood {
    /// Whether they differ from the last ones.
    pub fn set(&mut self, source: usize, exporters: Vec<weir_core::config::StaticExporter>) -> bool {
        self.0.insert(source, exporters.clone()).is_none_or(|old| old != exporters)
    }

    pub fn all(&self) -> Vec<weir_core::config::StaticExporter> {
        self.0.values().flatten().cloned().collect()
    }
}
