#![no_main]
//! Records of `weir outlet`'s state topic (templates shared between outlets).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::state_record(data));
