//! `weir migrate`: brings the store's tables to the configured schema (or,
//! with `--dry-run`, prints the steps it would run).

use std::path::PathBuf;

use weir_core::schema::ServerVersion;

use super::config::read_config_printing_warnings as read_config;
use crate::store::{migrate, Engine};

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The configuration file; its `[store]` section is used.
    #[arg(long)]
    pub config: PathBuf,
    /// Print the steps without running them.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn migrate_command(args: &MigrateArgs) -> Result<(), String> {
    let config = read_config(&args.config)?;
    let mut engine = Engine::connect(&config.store)?;
    let (schema, plan) = migrate(&mut engine, &config.store, args.dry_run)?;
    for w in &plan.warnings {
        eprintln!("weir: warn: {w}");
    }
    for step in &plan.steps {
        println!("-- {}\n{};", step.why, step.sql);
    }
    let verb = if args.dry_run { "would run" } else { "ran" };
    let ServerVersion(major, minor) = schema.version;
    eprintln!("weir: server {major}.{minor}: {verb} {} steps", plan.steps.len());
    Ok(())
}
