#![no_main]
//! Classifier rules: whatever an operator (or a config generator) writes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::classifier_rule(data));
