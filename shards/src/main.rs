//! The `weir` binary. Subcommands live in their own modules:
//! - `weir run --config FILE` (`run`): the collector — pinned shards
//!   (`shard`) receiving on reuseport sockets (`socket`), decoding into a
//!   sink (`sink`), counted at `/metrics` (`metrics`).
//! - `weir decode FILE.pcap` (`decode`): the flows of a capture as JSON lines.
//! - `weir migrate` / `weir query "SQL"` (`store::commands`): the store's
//!   schema and a look inside it.
//! - `weir config check FILE` / `weir config defaults`.

mod decode;
mod exposition;
mod haproxy;
mod health;
mod http;
mod logging;
mod metrics;
mod profile;
mod run;
mod shard;
mod sink;
mod socket;
mod store;
mod systemd;

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
    Decode(decode::Args),
    /// Run the collector: one pinned shard per configured CPU.
    Run(run::Args),
    /// Create or alter the store's tables to match the configuration.
    Migrate(store::commands::MigrateArgs),
    /// Run SQL against the configured store and print the result.
    Query(store::commands::QueryArgs),
    /// Check a configuration file, or print the defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and check a file against this machine; errors name the key.
    Check { file: std::path::PathBuf },
    /// Print the default configuration, every key with its value.
    Defaults,
}

fn config_command(c: &ConfigCommand) -> Result<(), String> {
    match c {
        ConfigCommand::Check { file } => {
            let config = run::read_config_printing_warnings(file)?;
            let cores = config.check_machine(run::online_cpus()).map_err(|e| format!("{}: {e}", file.display()))?;
            println!("{}: ok ({} shards on CPUs {cores:?})", file.display(), cores.len());
            Ok(())
        }
        ConfigCommand::Defaults => {
            print!("{}", include_str!("../../config/weir.toml"));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Migrate(args) => store::commands::migrate_command(&args),
        Command::Query(args) => store::commands::query_command(&args),
        Command::Config(c) => config_command(&c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}
