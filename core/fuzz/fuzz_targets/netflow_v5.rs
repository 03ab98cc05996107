#![no_main]
//! Sequences of datagrams forced to one format, decoded with shared state.
use libfuzzer_sys::fuzz_target;
use weir_core::decoder::Format;

fuzz_target!(|data: &[u8]| weir_core::harness::decode_datagrams(Some(Format::NetflowV5), data));
