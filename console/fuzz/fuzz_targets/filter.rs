#![no_main]
//! The console's filter language: anything an operator (or an attacker)
//! can type into the filter box or send to the API.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_console::harness::filter(data));
