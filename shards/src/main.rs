//! The `weir` binary. Its rooms (DESIGN.md §6), lower ones first; a room
//! imports only rooms above it in this list, never one below:
//! - `ops`: the control-plane HTTP server (axum), `/metrics` exposition,
//!   health, profiling, systemd, logging, CPU pinning. Knows no feature.
//! - `store`: the store writer, chDB and ClickHouse engines, the spool,
//!   `/latency` and `POST /query`.
//! - `console`: the console API (`weir-console`) over its own store
//!   connection, and its counters.
//! - `kafka`: the flow pipeline's Kafka side (the inlet's producers and
//!   spills, the outlet's consumer shards), and the Kafka client logging
//!   the HAProxy input shares.
//! - `receive`: the data plane: pinned shards, reuseport sockets, sinks.
//! - `haproxy`: the access-log input (unix socket to Kafka).
//! - `cli`: one file per one-shot subcommand (`decode`, `query`,
//!   `migrate`, `config`).
//! - `run`: `weir run`, wiring only: starts the rooms and registers each
//!   feature's counters, probes and routes; `run_console`: `weir console`,
//!   the console alone against a remote store, wiring only.

mod cli;
mod console;
mod enrich;
mod haproxy;
mod kafka;
mod ops;
mod receive;
mod run;
mod run_console;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weir", version, about = "Weir: a thread-per-core network flow collector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode NetFlow v5/v9, IPFIX and sFlow datagrams from a pcap file:
    /// one JSON object per flow on stdout, a summary on stderr.
    Decode(cli::decode::Args),
    /// Run the collector: one pinned shard per configured CPU.
    Run(run::Args),
    /// Receive only: each shard produces its datagrams, undecoded, to its
    /// Kafka partition (`[kafka]`), for `weir outlet`s to decode and store.
    Inlet(run::Args),
    /// Consume the inlets' records (`[kafka]`, `[kafka.outlet]`): one
    /// consumer shard per configured CPU decodes, enriches and stores
    /// (`[store]`), storing offsets once the store took the rows.
    Outlet(run::Args),
    /// Serve the console API alone, against the configuration's remote store.
    Console(run_console::Args),
    /// Create or alter the store's tables to match the configuration.
    Migrate(cli::migrate::MigrateArgs),
    /// Run SQL against the configured store and print the result.
    Query(cli::query::QueryArgs),
    /// Check a configuration file, or print the defaults.
    #[command(subcommand)]
    Config(cli::config::ConfigCommand),
}

fn main() -> ExitCode {
    ops::profile::tune_allocator();
    let cli = Cli::parse();
    let service = matches!(cli.command, Command::Run(_) | Command::Inlet(_) | Command::Outlet(_) | Command::Console(_));
    let result = match cli.command {
        Command::Decode(args) => cli::decode::run(&args),
        Command::Run(args) => run::run(&args, run::Mode::Run),
        Command::Inlet(args) => run::run(&args, run::Mode::Inlet),
        Command::Outlet(args) => run::run(&args, run::Mode::Outlet),
        Command::Console(args) => run_console::run(&args),
        Command::Migrate(args) => cli::migrate::migrate_command(&args),
        Command::Query(args) => cli::query::query_command(&args),
        Command::Config(c) => cli::config::config_command(&c),
    };
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("weir: {e}");
            1
        }
    };
    if service {
        // The embedded engine's C++ static destructors run at exit and
        // crash (SIGSEGV) when a thread is still inside the engine: a store
        // writer still connecting when the start fails after it began, a
        // console session. By now everything Weir writes is flushed and
        // closed, so the exit skips them.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: ends the process; nothing runs after it.
        unsafe { libc::_exit(code) };
    }
    ExitCode::from(code as u8)
}
