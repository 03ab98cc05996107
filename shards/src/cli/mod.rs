//! The one-shot subcommands, one file each: `decode`, `query`, `migrate`,
//! `config`. Each reads its arguments, does its work and returns; the
//! long-running `weir run` is `run` (wiring) over the rooms.

pub mod config;
pub mod decode;
pub mod migrate;
pub mod query;
