//! Range fingerprints whose cost follows the data, not the range's size.
//!
//! A format step leaves a partition that is almost all zeros: a few MiB of
//! filesystem metadata in a range of any size. Hashing every byte of it
//! (SHA-256 of the whole range) costs ~1 s per GiB even where the range is a
//! hole in a sparse image. The fingerprint here hashes only the non-zero
//! 4 KiB blocks, each with its offset, and then the range's length: two
//! ranges have the same fingerprint exactly when they hold the same bytes
//! (up to SHA-256 collisions). Where the device can say where its data is
//! (`SEEK_DATA`/`SEEK_HOLE` on an image file, a dry-run's overlay), only the
//! data extents are read; a block device is read whole, but only hashed
//! where not zero.
//!
//! The fingerprint is written `z1:<hex>`, so it is never mistaken for a
//! plain SHA-256 of the range (which older journals recorded): see
//! [`range_matches`].
//!
//! Not for: artifacts and restored images, whose fingerprint is the image's
//! own SHA-256 as the backup recorded it.

use crate::target::Device;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// The unit of zero detection, and the alignment of the blocks hashed.
const BLOCK: u64 = 4096;
/// How much is read at a time.
const CHUNK: u64 = 4 << 20;
/// Marks the fingerprint's kind in the journal.
const PREFIX: &str = "z1:";

/// The data extent of `[pos, end)` a source reports next: `Some((start,
/// stop))` with `pos <= start < stop <= end`, or `None` when the rest reads
/// as zeros.
pub type NextData<'a> = dyn FnMut(u64, u64) -> io::Result<Option<(u64, u64)>> + 'a;
/// Positional read (read_exact semantics).
pub type ReadAt<'a> = dyn FnMut(&mut [u8], u64) -> io::Result<()> + 'a;

/// The fingerprint of `[0, len)` of a source given by its two functions.
pub fn sparse_sha256(
    len: u64,
    next_data: &mut NextData<'_>,
    read_at: &mut ReadAt<'_>,
) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0_u8; CHUNK as usize];
    // Everything before `done` has been hashed (or is known zero).
    let mut done = 0_u64;
    while done < len {
        let Some((start, stop)) = next_data(done, len)? else {
            break;
        };
        if start >= stop || start < done || stop > len {
            return Err(io::Error::other(format!(
                "data extent {start}..{stop} is not inside {done}..{len}"
            )));
        }
        // Whole blocks only, so that the hash does not depend on where the
        // source's extents happen to begin and end.
        let mut at = (start / BLOCK * BLOCK).max(done);
        let stop = stop.div_ceil(BLOCK).saturating_mul(BLOCK).min(len);
        while at < stop {
            let n = (stop - at).min(CHUNK);
            let piece = &mut buf[..n as usize];
            read_at(piece, at)?;
            for (i, block) in piece.chunks(BLOCK as usize).enumerate() {
                if !crate::restore::is_zero(block) {
                    h.update((at + i as u64 * BLOCK).to_le_bytes());
                    h.update(block);
                }
            }
            at += n;
        }
        done = stop;
    }
    h.update(b"len");
    h.update(len.to_le_bytes());
    Ok(format!("{PREFIX}{}", crate::restore::hex(&h.finalize())))
}

/// The fingerprint of `[0, len)` of `dev`.
pub fn of_device(dev: &dyn Device, len: u64) -> io::Result<String> {
    sparse_sha256(
        len,
        &mut |pos, end| dev.data_extent(pos, end),
        &mut |buf, at| dev.read_at(buf, at),
    )
}

/// The fingerprint of `[0, len)` of a (sparse) file.
pub fn of_file(file: &File, len: u64) -> io::Result<String> {
    use std::os::unix::fs::FileExt;
    sparse_sha256(
        len,
        &mut |pos, end| data_extent(file, pos, end),
        &mut |buf, at| file.read_exact_at(buf, at),
    )
}

/// Whether `fp` is a fingerprint of this module's kind.
pub fn is_sparse(fp: &str) -> bool {
    fp.starts_with(PREFIX)
}

/// Whether `[0, len)` of `dev` still holds what `recorded` describes: a
/// `z1:` fingerprint, or (journals from before it) the plain SHA-256 of the
/// whole range.
pub fn range_matches(dev: &dyn Device, len: u64, recorded: &str) -> io::Result<bool> {
    if is_sparse(recorded) {
        return Ok(of_device(dev, len)? == recorded);
    }
    Ok(crate::executor::hash_range(dev, 0, len, &mut |_| {})? == recorded)
}

/// The next data extent of `file` inside `[pos, end)` (`SEEK_DATA` then
/// `SEEK_HOLE`), or `None` if the rest is a hole. Filesystems without
/// `SEEK_DATA` report everything as data.
pub fn data_extent(file: &File, pos: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
    if pos >= end {
        return Ok(None);
    }
    let start = match lseek(file, pos, libc::SEEK_DATA) {
        Ok(at) => at,
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Some((pos, end))),
        Err(e) => return Err(e),
    };
    if start >= end {
        return Ok(None);
    }
    let stop = match lseek(file, start, libc::SEEK_HOLE) {
        Ok(at) => at.min(end),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => end,
        Err(e) => return Err(e),
    };
    Ok(Some((start, stop.max(start + 1).min(end))))
}

fn lseek(file: &File, pos: u64, whence: libc::c_int) -> io::Result<u64> {
    let offset = libc::off_t::try_from(pos)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    // SAFETY: lseek only reads the descriptor number, which `file` keeps
    // open for the duration of the call. Moving the file position is fine:
    // every read and write of these files is positional.
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if at < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::MemDevice;

    #[test]
    fn same_bytes_same_fingerprint_whatever_the_extents() {
        let mut a = MemDevice::new(1 << 20, 512);
        a.write_at(&[7; 100], 5000).unwrap();
        let whole = of_device(&a, 1 << 20).unwrap();
        // The same bytes, reported as many odd extents.
        let mut odd = |pos: u64, end: u64| Ok((pos < end).then(|| (pos, (pos + 777).min(end))));
        let split = sparse_sha256(1 << 20, &mut odd, &mut |b, at| a.read_at(b, at)).unwrap();
        assert_eq!(whole, split);
        // A byte more, or a longer range, is another fingerprint.
        a.write_at(&[1], 900_000).unwrap();
        assert_ne!(of_device(&a, 1 << 20).unwrap(), whole);
        assert_ne!(of_device(&a, 1 << 19).unwrap(), whole);
    }
}
