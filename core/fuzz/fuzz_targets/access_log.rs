#![no_main]
//! HAProxy access-log lines (RFC 5424 with structured data), as the
//! HAProxy input parses them.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::access_log(data));
