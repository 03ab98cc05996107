#![no_main]
//! GeoIP/ASN database files (MaxMind format): whatever lies at the path.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| weir_core::harness::geo_database(data));
