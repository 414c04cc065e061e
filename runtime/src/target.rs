//! Targets: the disks rplan writes to, image files or block devices.
//!
//! Every write in rplan goes through [`Device`], so the executor, dry-run's
//! simulated device and tests all share one narrow surface.

use std::io;

/// A byte-addressable disk: an image file, a block device or a simulation.
pub trait Device: Send {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Logical sector size in bytes (512 or 4096).
    fn sector_size(&self) -> u32;
    /// Fill `buf` from `offset` (read_exact semantics).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`. Writing past `len()` is an error.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make `[offset, offset+len)` read back as zeros (punch a hole,
    /// BLKZEROOUT, or write zeros), without touching bytes outside it.
    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Flush written data to stable storage.
    fn sync(&mut self) -> io::Result<()>;
}
