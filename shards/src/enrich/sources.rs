//! Remote sources: one thread per kind ("weir-sources" for
//! `[[metadata.sources]]`, "weir-net-sources" for `[[networks.sources]]`, a
//! current-thread tokio runtime each) fetches each document over HTTP on
//! its interval, reads it (`weir_core::enrich::sources`) and hands the
//! entries to its control thread (metadata's resolves again what it knows;
//! networks' rebuilds its table). A fetch or a document that fails is
//! counted and logged; the source keeps its last good entries.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crossbeam_channel::Sender;
use weir_core::config::MetadataSource;
use weir_core::enrich::sources::{read, Format, Read};

/// Reads a fetched document of `source` into what its control thread takes.
pub type Reader<T> = fn(&MetadataSource, Format, &[u8]) -> Result<T, String>;

/// The metadata sources' reader: exporters and interfaces.
pub fn read_exporters(source: &MetadataSource, format: Format, body: &[u8]) -> Result<Read, String> {
    read(format, &source.path, &source.rename, body)
}

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
pub struct Update<T = Read> {
    pub source: usize,
    pub result: Result<T, String>,
}

/// Starts the fetching thread (`name`); `control` is woken with each
/// update. The thread ends once the control thread stops reading updates.
pub fn start<T: Send + 'static>(
    name: &str,
    sources: &[MetadataSource],
    reader: Reader<T>,
    updates: Sender<Update<T>>,
    control: std::thread::Thread,
) -> Result<(), String> {
    if sources.is_empty() {
        return Ok(());
    }
    let sources = sources.to_vec();
    std::thread::Builder::new()
        .name(name.into())
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
                                    reader(&source, format, &body)
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
        .map_err(|e| format!("cannot start the {name} thread: {e}"))?;
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

/// The sources' counters as `{prefix}_fetches`, `{prefix}_invalid_entries`
/// and `{prefix}_entries` (`key`: the config key, for the help texts;
/// `what`: what an entry is).
pub fn encode(
    e: &mut prometheus_client::encoding::DescriptorEncoder,
    prefix: &str,
    key: &str,
    what: &str,
    sources: &[SourceMetrics],
) -> std::fmt::Result {
    use prometheus_client::encoding::NoLabelSet;
    use prometheus_client::metrics::MetricType;
    use std::sync::atomic::Ordering::Relaxed;
    let help = format!("Fetches of each {key} document, by result (error: the source keeps its last good entries).");
    let name = format!("{prefix}_fetches");
    let mut metric = e.encode_descriptor(&name, &help, None, MetricType::Counter)?;
    for s in sources {
        for (result, n) in [("ok", &s.fetches[0]), ("error", &s.fetches[1])] {
            let labels = [("source", s.name.as_str()), ("result", result)];
            metric.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n.load(Relaxed), None)?;
        }
    }
    let help = format!("Entries of each {key} document skipped because they do not read (a bad or missing field).");
    let name = format!("{prefix}_invalid_entries");
    let mut metric = e.encode_descriptor(&name, &help, None, MetricType::Counter)?;
    for s in sources {
        let n = s.invalid.load(Relaxed);
        metric.encode_family(&[("source", s.name.as_str())])?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    let help = format!("{what} entries of each {key} document's last good fetch.");
    let name = format!("{prefix}_entries");
    let mut metric = e.encode_descriptor(&name, &help, None, MetricType::Gauge)?;
    for s in sources {
        let n = s.entries.load(Relaxed) as i64;
        metric.encode_family(&[("source", s.name.as_str())])?.encode_gauge(&n)?;
    }
    Ok(())
}
