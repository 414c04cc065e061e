//! The zstd artifact reader on arbitrary bytes: the decoder restore uses
//! (window limit included), streamed by `restore::restore` into a 16 MiB
//! range of a sparse in-memory disk. The image is refused (bad frame,
//! too large, wrong size, wrong sha256) or lands inside its range.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::zstd_artifact(data));
