#![no_main]
//! Native block streams as the spool and the store writer read them back.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::native_blocks(data));
