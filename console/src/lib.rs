//! Weir's console back end: what operators look at traffic through.
//!
//! - [`columns`]: the enabled columns as the console sees them (kinds,
//!   counterparts, which tables hold them).
//! - [`filter`]: the filter language, parsed to a tree and compiled to SQL.
//!
//! The modules are pure (no I/O); the runtime (`weir run`, `weir console`)
//! serves them over HTTP against the store.

pub mod api;
pub mod cache;
pub mod columns;
pub mod docs;
pub mod filter;
pub mod harness;
pub mod query;
pub mod saved;
pub mod users;
pub mod web;
