//! libFuzzer target: see corral_fuzz::config_file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::peak::within_budget(data, corral_fuzz::config_file));
