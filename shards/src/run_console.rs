//! `weir console --config FILE`, wiring only: the console API alone, against the remote
//! store of FILE (a ClickHouse server another `weir run` fills), on
//! `console.listen` (or `http.listen`), with `/metrics` and the health
//! routes. The embedded store cannot be shared between processes, so there
//! `weir run` serves the console itself.

use std::path::PathBuf;
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::info;
use weir_core::config::StoreKind;

use crate::cli::config::read_config_logging_warnings;
use crate::console::{self, metrics::ConsoleMetrics};
use crate::ops::exposition::Exposition;
use crate::ops::health::Health;
use crate::ops::http::{self, HttpMetrics, Ops};

#[derive(clap::Args)]
pub struct Args {
    /// The collector's configuration: its [store.remote] and [console].
    #[arg(long)]
    pub config: PathBuf,
}

pub fn run(args: &Args) -> Result<(), String> {
    let config = read_config_logging_warnings(&args.config)?;
    if config.store.kind != StoreKind::Remote {
        return Err(format!(
            "{}: weir console needs store.kind = \"remote\"; with the embedded store, `weir run` serves the console",
            args.config.display()
        ));
    }
    let address =
        config.console.listen.or(config.http.listen).ok_or("neither console.listen nor http.listen is set")?;
    let signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).map_err(|e| e.to_string())?;
    let metrics = Arc::new(ConsoleMetrics::default());
    let http_metrics = Arc::new(HttpMetrics::default());
    let mut exposition = Exposition::default();
    exposition.register(metrics.clone());
    exposition.register(http_metrics.clone());
    let health = Arc::new(Health::new(Vec::new()));
    health.set_started();
    let ops = Ops { exposition, health, debug: config.http.debug };
    let app = http::routes(ops).merge(console::routes(console::start(&config, metrics)?));
    let local = http::serve(address, app, config.shards.control_core, http_metrics)
        .map_err(|e| format!("console address {address}: {e}"))?;
    info!("console API at http://{local}/api/v0/console/, metrics at http://{local}/metrics");
    let mut signals = signals;
    if let Some(signal) = signals.forever().next() {
        info!("stopping on signal {signal}");
    }
    Ok(())
}
