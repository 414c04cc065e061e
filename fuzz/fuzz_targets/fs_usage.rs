//! Used-space readers of inspection (ext2/3/4 superblock, FAT through
//! fatfs, NTFS `$Bitmap` through the ntfs crate) on arbitrary bytes laid
//! at the start of a partition of 64 MiB at 1 MiB.
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::fs_usage(data));
