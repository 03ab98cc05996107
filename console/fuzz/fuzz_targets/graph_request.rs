#![no_main]
//! The console's graph requests: JSON as clients send it (then, after a NUL,
//! what the store would answer), checked, turned into SQL and into series.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_console::harness::graph_request(data));
