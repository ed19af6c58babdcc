//! libFuzzer's entry to the `config` target of tests/fuzz/targets.rs.

#![no_main]

#[allow(dead_code)]
#[path = "../../tests/fuzz/targets.rs"]
mod targets;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    targets::config(input);
});
