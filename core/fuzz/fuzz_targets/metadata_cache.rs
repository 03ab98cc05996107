#![no_main]
//! Metadata cache files: truncated, edited by hand, from another version.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::metadata_cache(data));
