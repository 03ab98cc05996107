#![no_main]
//! Capture files, as `weir decode` reads them.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::read_pcap(data));
