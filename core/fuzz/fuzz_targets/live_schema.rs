#![no_main]
//! What the store's migrations read back from a server (version, system
//! tables and columns as TabSeparated), then planned.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::live_schema(data));
