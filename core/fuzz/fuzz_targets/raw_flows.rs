#![no_main]
//! Kafka records of `weir outlet`: read, re-encoded, their datagrams decoded.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::raw_flows(data));
