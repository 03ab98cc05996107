#![no_main]
//! Remote metadata source documents: whatever an inventory serves.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::remote_source(data));
