//! A journal file (`--resume` reads it; a crash can tear it, anyone can
//! edit it) on arbitrary bytes: parse, then every question resume asks.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::journal(data));
