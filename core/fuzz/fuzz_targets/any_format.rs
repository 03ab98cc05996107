#![no_main]
//! Sequences of datagrams of any format (version detection included).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::decode_datagrams(None, data));
