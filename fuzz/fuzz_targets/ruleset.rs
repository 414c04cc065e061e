//! `--rules FILE` on arbitrary bytes: parse, validate, layer over the
//! built-in ruleset, render the matrix.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::ruleset(data));
