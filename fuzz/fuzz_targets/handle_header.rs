//! libFuzzer target: see corral_fuzz::handle_header.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::peak::within_budget(data, corral_fuzz::handle_header));
