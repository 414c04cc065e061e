//! `rplan check` on arbitrary bytes: load, schema, analysis, lowering.
//! Artifacts are not opened (the fuzzer's paths would name random files).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::plan_check(data));
