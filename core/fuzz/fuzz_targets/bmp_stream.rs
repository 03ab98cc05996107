#![no_main]
//! A BMP connection's bytes: framed, decoded, applied to a routing table.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::bmp_stream(data));
