#![no_main]
//! Configuration files: typos, wrong types, broken TOML, absurd values.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::parse_config(data));
