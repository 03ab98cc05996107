#![no_main]
//! Damaged decoder state files.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::restore_snapshot(data));
