//! The partclone image reader on arbitrary bytes: `partclone::Expand`
//! (header, bitmap, checksums) streamed by `restore::restore` into a 16 MiB
//! range of a sparse in-memory disk. The image is refused or lands inside
//! its range.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::partclone_artifact(data));
