//! `weir config check FILE` and `weir config defaults`, and the one way
//! every command reads its configuration file.

use std::path::{Path, PathBuf};

use weir_core::config::Config;

use crate::ops::cpu::online_cpus;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Parse and check a file against this machine; errors name the key.
    Check { file: PathBuf },
    /// Print the default configuration, every key with its value.
    Defaults,
}

pub fn config_command(c: &ConfigCommand) -> Result<(), String> {
    match c {
        ConfigCommand::Check { file } => {
            let config = read_config_printing_warnings(file)?;
            let cores = config.check_machine(online_cpus()).map_err(|e| format!("{}: {e}", file.display()))?;
            println!("{}: ok ({} shards on CPUs {cores:?})", file.display(), cores.len());
            Ok(())
        }
        ConfigCommand::Defaults => {
            print!("{}", include_str!("../../../config/weir.toml"));
            Ok(())
        }
    }
}

/// Reads the file, applies `WEIR_SECTION__KEY` environment overrides and
/// renamed keys, and checks it; returns the deprecation warnings (one per
/// old name used) for the caller to log.
pub fn read_config(path: &Path) -> Result<(Config, Vec<String>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let env: Vec<(String, String)> = std::env::vars().filter(|(name, _)| name.starts_with("WEIR_")).collect();
    let (config, warnings) =
        Config::load(&text, &env, weir_core::config::RENAMED).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((config, warnings.into_iter().map(|w| format!("{}: {w}", path.display())).collect()))
}

/// For the services (`weir run`, `weir console`): the config, logging set up
/// from it, its warnings logged.
pub fn read_config_logging_warnings(path: &Path) -> Result<Config, String> {
    let (config, warnings) = read_config(path)?;
    crate::ops::logging::init(&config.log);
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(config)
}

/// For the one-shot commands (`config check`, `migrate`, `query`), which
/// print rather than log: the config, its warnings on standard error.
pub fn read_config_printing_warnings(path: &Path) -> Result<Config, String> {
    let (config, warnings) = read_config(path)?;
    for w in warnings {
        eprintln!("weir: warning: {w}");
    }
    Ok(config)
}
