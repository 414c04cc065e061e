//! rplan's own readers of what is on a disk, on arbitrary bytes: MBR with
//! its EBR chain and GPT (primary or backup header, with or without the
//! protective MBR) through `table.rs`, and the LDM PRIVHEAD.
//!
//! The first byte picks the disk's size (sparse: 1 MiB up to 2 TiB) and its
//! sector size; the rest of the input is laid at the start of the disk, and
//! its last quarter again at the end (where a backup GPT header and the LDM
//! database live).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::disk_tables(data));
