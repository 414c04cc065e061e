//! The whole inspection (`rplan inspect`, apply's preflight): libblkid's
//! probes of the disk and of every partition found, rplan's table reader,
//! LDM, used space, the finding list; on arbitrary bytes in a sparse image
//! file (libblkid reads a file, not memory). Layout of the input as in
//! `disk_tables`: first byte picks size and sector size, the bytes go at
//! the start and their last quarter again at the end.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::disk_inspect(data));
