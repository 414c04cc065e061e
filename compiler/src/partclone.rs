//! Reading partclone's image format (version 0002, what partclone 0.3
//! writes): the used blocks of a filesystem, expanded back into the
//! partition's bytes with free space as zeros.
//!
//! For: the `partclone-zstd` artifact format. [`Expand`] turns the image
//! into one stream of exactly `device_size` bytes, so everything that
//! handles `raw-zstd` handles it the same way: `check` hashes that stream,
//! restore writes it through the confined writer (never past the
//! partition, all-zero blocks skipped on a blank target) and verifies its
//! sha256 while streaming. Memory: the block bitmap (one bit per block:
//! 64 KiB for a 2 GiB filesystem of 4 KiB blocks) and one block.
//!
//! Here rather than in the runtime because `check` (this crate) hashes
//! artifacts; written rather than running `partclone.restore` because the
//! format is small (a header, a bitmap, the blocks) and a tool writing to
//! the device itself could not be confined to the partition, zero-skipped
//! or hashed on the way.
//!
//! Layout, from partclone's `partclone.h` (`image_desc_v2`, packed,
//! little-endian on the machines that write it): magic "partclone-image\0"
//! (16), partclone version (14), image version "0002" (4), endianness
//! 0xC0DE (2); file system name (16), device size, total blocks, used
//! blocks, used blocks per bitmap (u64 each), block size, feature size
//! (u32), image version, cpu bits, checksum mode, checksum size (u16),
//! blocks per checksum (u32), reseed, bitmap mode (u8); header CRC (u32) —
//! 110 bytes. Then the bitmap (bit `i` of byte `i / 8`, least significant
//! first) and its CRC (u32), then each used block in order, with a
//! checksum of `checksum size` bytes after every `blocks per checksum`
//! blocks and after the last.
//!
//! One addition of rplan's: the image may be followed by the partition's
//! bytes past its last block (`device_size - total_blocks × block_size`).
//! partclone does not copy them, and NTFS keeps its backup boot sector
//! there; `rplan capture` appends them so a restore gives the partition
//! back whole. An image without them (partclone's own) expands them to
//! zeros; partclone itself ignores them.

use std::io::{self, Read};

/// Bytes of the header (`image_desc_v2`).
pub const HEADER_LEN: usize = 110;
/// No bitmap above this (4 Ti blocks): a header claiming more is damage.
const MAX_BITMAP: u64 = 512 << 20;

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The file system partclone read (`NTFS`, `FAT32`, `EXTFS`…).
    pub fs: String,
    /// Bytes of the partition: the expanded stream's length.
    pub device_size: u64,
    pub total_blocks: u64,
    pub used_blocks: u64,
    pub block_size: u32,
    checksum_size: u16,
    blocks_per_checksum: u32,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("partclone image: {}", what.into()),
    )
}

impl Header {
    /// Parse the 110-byte header.
    pub fn parse(h: &[u8; HEADER_LEN]) -> io::Result<Header> {
        if &h[..16] != b"partclone-image\0" {
            return Err(bad("no partclone-image magic"));
        }
        if &h[0x1E..0x22] != b"0002" {
            return Err(bad(format!(
                "image version `{}`; rplan reads version 0002 (partclone 0.3 and later)",
                String::from_utf8_lossy(&h[0x1E..0x22])
            )));
        }
        let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if u16_at(0x22) != 0xC0DE {
            return Err(bad("written on a big-endian machine; not supported"));
        }
        let fs_raw = &h[0x24..0x34];
        let fs_end = fs_raw.iter().position(|&b| b == 0).unwrap_or(fs_raw.len());
        let header = Header {
            fs: String::from_utf8_lossy(&fs_raw[..fs_end]).into_owned(),
            device_size: u64_at(0x34),
            total_blocks: u64_at(0x3C),
            used_blocks: u64_at(0x44),
            block_size: u32_at(0x54),
            checksum_size: u16_at(0x62),
            blocks_per_checksum: u32_at(0x64),
        };
        if h[0x69] != 1 {
            return Err(bad(format!(
                "bitmap mode {}; rplan reads the bit bitmap (mode 1)",
                h[0x69]
            )));
        }
        if !header.block_size.is_power_of_two() || !(512..=(64 << 20)).contains(&header.block_size)
        {
            return Err(bad(format!("block size {}", header.block_size)));
        }
        let blocks_bytes = header
            .total_blocks
            .checked_mul(u64::from(header.block_size))
            .filter(|&b| b <= header.device_size)
            .ok_or_else(|| bad("more blocks than the device holds"))?;
        let _ = blocks_bytes;
        if header.used_blocks > header.total_blocks {
            return Err(bad("more used blocks than blocks"));
        }
        if header.total_blocks.div_ceil(8) > MAX_BITMAP {
            return Err(bad("a bitmap over 512 MiB"));
        }
        if header.checksum_size > 0 && header.blocks_per_checksum == 0 {
            return Err(bad("checksums every 0 blocks"));
        }
        Ok(header)
    }
}

/// A partclone image expanded into the partition's bytes.
pub struct Expand<R> {
    inner: R,
    header: Header,
    bitmap: Vec<u8>,
    /// The block being handed out, and how much of it has been.
    block: u64,
    in_block: usize,
    buf: Vec<u8>,
    /// Whether `buf` holds the current block's data (else it is free).
    loaded: bool,
    /// Used blocks read since the last checksum; all used blocks read.
    since_checksum: u32,
    used_read: u64,
    /// Bytes handed out.
    pos: u64,
    /// Whether the bytes past the last block follow the image: not known
    /// until they are reached.
    tail: Option<bool>,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            bad(format!("ends inside {what}"))
        } else {
            e
        }
    })
}

fn skip<R: Read>(r: &mut R, n: u64, what: &str) -> io::Result<()> {
    let got = io::copy(&mut r.take(n), &mut io::sink())?;
    if got != n {
        return Err(bad(format!("ends inside {what}")));
    }
    Ok(())
}

impl<R: Read> Expand<R> {
    /// Read the header and bitmap; the blocks follow as the stream is read.
    pub fn new(mut inner: R) -> io::Result<Expand<R>> {
        let mut h = [0u8; HEADER_LEN];
        read_full(&mut inner, &mut h, "the header")?;
        let header = Header::parse(&h)?;
        let len = usize::try_from(header.total_blocks.div_ceil(8))
            .map_err(|_| bad("bitmap too large"))?;
        let mut bitmap = vec![0u8; len];
        read_full(&mut inner, &mut bitmap, "the bitmap")?;
        // The bitmap's CRC: the sha256 of the expanded bytes is what rplan
        // checks, so partclone's own CRCs are skipped, not recomputed.
        skip(&mut inner, 4, "the bitmap's checksum")?;
        let set: u64 = bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
        // Bits past the last block do not count.
        let tail_bits = (len as u64 * 8).saturating_sub(header.total_blocks);
        let stray = if tail_bits > 0 {
            bitmap
                .last()
                .map_or(0, |&b| u64::from((b >> (8 - tail_bits)).count_ones()))
        } else {
            0
        };
        if set - stray != header.used_blocks {
            return Err(bad(format!(
                "the bitmap marks {} blocks used, the header says {}",
                set - stray,
                header.used_blocks
            )));
        }
        let block_size = header.block_size as usize;
        Ok(Expand {
            inner,
            header,
            bitmap,
            block: 0,
            in_block: 0,
            buf: vec![0u8; block_size],
            loaded: false,
            since_checksum: 0,
            used_read: 0,
            pos: 0,
            tail: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    fn used(&self, block: u64) -> bool {
        let byte = usize::try_from(block / 8).unwrap_or(usize::MAX);
        self.bitmap
            .get(byte)
            .is_some_and(|b| b & (1 << (block % 8)) != 0)
    }

    /// Load block `self.block`'s data when it is used.
    fn load(&mut self) -> io::Result<()> {
        self.loaded = self.used(self.block);
        if !self.loaded {
            return Ok(());
        }
        read_full(&mut self.inner, &mut self.buf, "a block")?;
        self.used_read += 1;
        self.since_checksum += 1;
        let cs = u64::from(self.header.checksum_size);
        if cs > 0
            && (self.since_checksum == self.header.blocks_per_checksum
                || self.used_read == self.header.used_blocks)
        {
            skip(&mut self.inner, cs, "a checksum")?;
            self.since_checksum = 0;
        }
        Ok(())
    }
}

impl<R: Read> Read for Expand<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let size = self.header.device_size;
        let bs = self.header.block_size as usize;
        let mut n = 0;
        while n < out.len() && self.pos < size {
            if self.block >= self.header.total_blocks {
                // Past the last block: the tail rplan appends, else zeros.
                let k = usize::try_from((size - self.pos).min((out.len() - n) as u64))
                    .unwrap_or(out.len() - n);
                let got = if self.tail == Some(false) {
                    out[n..n + k].fill(0);
                    k
                } else {
                    match self.inner.read(&mut out[n..n + k])? {
                        0 if self.tail.is_none() => {
                            self.tail = Some(false);
                            continue;
                        }
                        0 => return Err(bad("ends inside the bytes after the last block")),
                        got => {
                            self.tail = Some(true);
                            got
                        }
                    }
                };
                n += got;
                self.pos += got as u64;
                continue;
            }
            if self.in_block == 0 {
                self.load()?;
            }
            let k = (bs - self.in_block).min(out.len() - n);
            if self.loaded {
                out[n..n + k].copy_from_slice(&self.buf[self.in_block..self.in_block + k]);
            } else {
                out[n..n + k].fill(0);
            }
            n += k;
            self.pos += k as u64;
            self.in_block += k;
            if self.in_block == bs {
                self.in_block = 0;
                self.block += 1;
            }
        }
        if n == 0 && self.pos >= size && !out.is_empty() {
            // The stream must end where the image does: trailing bytes
            // mean damage or another file appended.
            let mut extra = [0u8; 1];
            if self.inner.read(&mut extra)? != 0 {
                return Err(bad("data after the last block"));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(total: u64, bs: u32, used: &[u64], cs: u16, per: u32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        h[..16].copy_from_slice(b"partclone-image\0");
        h[0x1E..0x22].copy_from_slice(b"0002");
        h[0x22..0x24].copy_from_slice(&0xC0DEu16.to_le_bytes());
        h[0x24..0x28].copy_from_slice(b"TEST");
        h[0x34..0x3C].copy_from_slice(&(total * u64::from(bs) + 100).to_le_bytes());
        h[0x3C..0x44].copy_from_slice(&total.to_le_bytes());
        h[0x44..0x4C].copy_from_slice(&(used.len() as u64).to_le_bytes());
        h[0x54..0x58].copy_from_slice(&bs.to_le_bytes());
        h[0x62..0x64].copy_from_slice(&cs.to_le_bytes());
        h[0x64..0x68].copy_from_slice(&per.to_le_bytes());
        h[0x69] = 1;
        let mut bitmap = vec![0u8; total.div_ceil(8) as usize];
        for &b in used {
            bitmap[(b / 8) as usize] |= 1 << (b % 8);
        }
        h.extend(bitmap);
        h.extend([0u8; 4]);
        for (i, &b) in used.iter().enumerate() {
            h.extend(vec![b as u8 + 1; bs as usize]);
            if cs > 0 && ((i + 1) % per as usize == 0 || i + 1 == used.len()) {
                h.extend(vec![0xEE; cs as usize]);
            }
        }
        h
    }

    fn expand(img: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Expand::new(img)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn used_blocks_land_at_their_offsets_and_free_ones_are_zeros() {
        for (cs, per) in [(0, 0), (4, 2), (4, 1)] {
            let out = expand(&image(11, 512, &[0, 3, 4, 10], cs, per)).unwrap();
            assert_eq!(out.len(), 11 * 512 + 100);
            for block in 0..11u64 {
                let want = if [0, 3, 4, 10].contains(&block) {
                    block as u8 + 1
                } else {
                    0
                };
                let at = (block * 512) as usize;
                assert!(
                    out[at..at + 512].iter().all(|&b| b == want),
                    "block {block}"
                );
            }
            assert!(out[11 * 512..].iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn the_bytes_after_the_last_block_are_read_when_appended() {
        let mut img = image(11, 512, &[1], 0, 0);
        img.extend([7u8; 100]);
        let out = expand(&img).unwrap();
        assert_eq!(out.len(), 11 * 512 + 100);
        assert!(out[11 * 512..].iter().all(|&b| b == 7));
        let short = &img[..img.len() - 1];
        assert!(expand(short).is_err());
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let good = image(11, 512, &[0, 3], 0, 0);
        assert!(expand(&good[..good.len() - 1]).is_err());
        let mut extra = good.clone();
        extra.push(1);
        assert!(expand(&extra).is_err());
        let mut wrong_count = good.clone();
        wrong_count[0x44] = 3;
        assert!(expand(&wrong_count).is_err());
        for cut in [0, 50, HEADER_LEN, HEADER_LEN + 1] {
            assert!(expand(&good[..cut]).is_err());
        }
        let mut huge = good.clone();
        huge[0x3C..0x44].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(expand(&huge).is_err());
    }
}
