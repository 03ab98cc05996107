#![no_main]
//! Compressed segment files (zstd frames) as the start-up recovery reads them.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::zstd_frames(data));
