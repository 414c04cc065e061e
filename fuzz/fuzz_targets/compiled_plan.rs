//! A compiled plan read from a file (`rplan apply plan.json`) is anyone's
//! JSON: load it as apply does (serde, then `sanity`), then compute what
//! apply computes from it before touching a target: each disk's table,
//! partition extents and table areas on targets of a few sizes, the LDM
//! disk group and volume members, the system disk, the graph.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::compiled_plan(data));
