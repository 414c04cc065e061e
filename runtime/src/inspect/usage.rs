//! Space in use inside a filesystem, where it is cheap to know: the ext2/3/4
//! superblock counts free blocks, a FAT's free-cluster count comes from its
//! FSInfo or one pass over the FAT (through `fatfs`), and NTFS's allocated
//! clusters are the set bits of its `$Bitmap` file (read through the `ntfs`
//! crate: one bit per cluster, 32 KiB per GiB of volume).

use crate::target::{Device, RegionReader};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes in use in the filesystem `kind` at `[start, start + len)`; `None`
/// when it cannot be told.
pub fn used_bytes(dev: &dyn Device, start: u64, len: u64, kind: &str) -> Option<u64> {
    match kind {
        "ext2" | "ext3" | "ext4" => ext_used(dev, start),
        "vfat" => quietly(|| fat_used(dev, start, len)),
        "ntfs" => quietly(|| ntfs_used(dev, start, len)),
        _ => None,
    }
}

/// Run a reader of damaged-disk bytes that may panic (fatfs 0.3 has known
/// panics on malformed images): a panic means "cannot tell", not an abort,
/// and prints nothing. Inspection runs before any worker thread exists.
fn quietly(read: impl FnOnce() -> Option<u64>) -> Option<u64> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    std::panic::set_hook(hook);
    result.ok().flatten()
}

fn ext_used(dev: &dyn Device, start: u64) -> Option<u64> {
    let mut sb = [0u8; 1024];
    dev.read_at(&mut sb, start.checked_add(1024)?).ok()?;
    let u32_at = |o: usize| u64::from(u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]));
    let incompat_64bit = u32_at(0x60) & 0x80 != 0;
    let (hi_blocks, hi_free) = if incompat_64bit {
        (u32_at(0x150), u32_at(0x158))
    } else {
        (0, 0)
    };
    let blocks = (hi_blocks << 32) | u32_at(0x04);
    let free = (hi_free << 32) | u32_at(0x0c);
    let block_size = 1024u64.checked_shl(u32::try_from(u32_at(0x18)).ok()?)?;
    blocks.checked_sub(free)?.checked_mul(block_size)
}

/// fatfs wants Read + Write + Seek; inspection only reads.
struct ReadOnly<'a>(RegionReader<'a>);

impl Read for ReadOnly<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}
impl Write for ReadOnly<'_> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "inspection never writes",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
impl Seek for ReadOnly<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

fn fat_used(dev: &dyn Device, start: u64, len: u64) -> Option<u64> {
    let region = RegionReader::new(dev, start, len).ok()?;
    // Read-only: no FSInfo update, no dirty flag on unmount.
    let options = fatfs::FsOptions::new().update_accessed_date(false);
    let fs = fatfs::FileSystem::new(ReadOnly(region), options).ok()?;
    let stats = fs.stats().ok()?;
    let used = u64::from(stats.total_clusters()).checked_sub(u64::from(stats.free_clusters()))?;
    // Dropping `fs` may try to write its FSInfo back: ReadOnly refuses, and
    // fatfs ignores that on unmount.
    used.checked_mul(u64::from(stats.cluster_size()))
}

fn ntfs_used(dev: &dyn Device, start: u64, len: u64) -> Option<u64> {
    use ntfs::{KnownNtfsFileRecordNumber, Ntfs};
    let mut region = RegionReader::new(dev, start, len).ok()?;
    let fs = Ntfs::new(&mut region).ok()?;
    let bitmap = fs
        .file(&mut region, KnownNtfsFileRecordNumber::Bitmap as u64)
        .ok()?;
    let item = bitmap.data(&mut region, "")?.ok()?;
    let attribute = item.to_attribute().ok()?;
    let mut value = attribute.value(&mut region).ok()?.attach(&mut region);
    let cluster = u64::from(fs.cluster_size());
    let clusters = fs.size() / cluster;
    // A damaged $Bitmap must not make us read forever: one bit per cluster.
    let mut bits = Vec::new();
    (&mut value)
        .take(clusters.div_ceil(8))
        .read_to_end(&mut bits)
        .ok()?;
    let mut used: u64 = bits.iter().map(|b| u64::from(b.count_ones())).sum();
    // Bits past the last cluster (the bitmap is padded) are not space.
    let spare = (bits.len() as u64 * 8).saturating_sub(clusters);
    if spare > 0 {
        if let Some(last) = bits.last() {
            used -= u64::from((last >> (8 - spare)).count_ones());
        }
    }
    used.checked_mul(cluster)
}
