#![no_main]
//! SNMP answers: whatever an agent (or someone spoofing one) sends back.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::snmp_response(data));
