//! The `weir` binary. Subcommands live in their own modules; for now:
//! `weir decode FILE.pcap` prints the flows of a capture as JSON lines.

mod decode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}
