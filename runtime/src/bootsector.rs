//! Relocated boot sectors: an NTFS or FAT boot sector records where its
//! partition starts ("hidden sectors", the 32-bit field at 0x1C), and
//! Windows XP's boot code uses it to find NTLDR. An image restored into a
//! partition that starts elsewhere (XP's sector 63 → today's 1 MiB) gets the
//! field set to the new start, in the boot sector and in its backup (NTFS:
//! the sector after the volume; FAT32: `BPB_BkBootSec`), as Clonezilla's
//! tools do.
//!
//! What this module is not: a filesystem checker. A sector that is not a
//! plausible NTFS or FAT boot sector (signature, sector size, cluster size,
//! type string) is left alone, and nothing outside the two sectors changes.

use crate::target::Device;
use sha2::{Digest, Sha256};
use std::io::{self, Read};

const HIDDEN: usize = 0x1C;

/// What a partition's boot sector needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    /// `ntfs` or `fat`.
    pub fs: &'static str,
    /// The hidden-sectors value found and the one to write.
    pub from: u32,
    pub to: u32,
    /// Byte offsets (within the partition) of the sectors to patch.
    pub sectors: Vec<u64>,
}

/// Reads the boot sector of the partition `dev` (a window starting at the
/// partition) and says what to change for a partition starting at
/// `start_lba`; `None` when there is no NTFS/FAT boot sector or the field
/// (and its backup's) already holds `start_lba`.
pub fn plan(dev: &dyn Device, start_lba: u64) -> io::Result<Option<Relocation>> {
    let Ok(to) = u32::try_from(start_lba) else {
        return Ok(None); // the field cannot hold it; XP could not boot there
    };
    if dev.len() < 512 {
        return Ok(None);
    }
    let mut b = [0u8; 512];
    dev.read_at(&mut b, 0)?;
    plan_sector(dev, &b, to)
}

/// [`plan`] for boot sector `b` (sector 0 of `dev`, as read or as it was).
fn plan_sector(dev: &dyn Device, b: &[u8; 512], to: u32) -> io::Result<Option<Relocation>> {
    let Some((fs, bps)) = kind(b) else {
        return Ok(None);
    };
    let from = u32::from_le_bytes([b[HIDDEN], b[HIDDEN + 1], b[HIDDEN + 2], b[HIDDEN + 3]]);
    let mut sectors = Vec::new();
    if from != to {
        sectors.push(0u64);
    }
    let backup = match fs {
        "ntfs" => {
            let total = u64::from_le_bytes([
                b[0x28], b[0x29], b[0x2A], b[0x2B], b[0x2C], b[0x2D], b[0x2E], b[0x2F],
            ]);
            total.checked_mul(bps)
        }
        _ => {
            // FAT32 only: BPB_BkBootSec (FAT12/16 have no backup).
            let fat32 = b[0x52..0x57] == *b"FAT32";
            let bk = u64::from(u16::from_le_bytes([b[0x32], b[0x33]]));
            (fat32 && bk != 0 && bk != 0xFFFF).then(|| bk * bps)
        }
    };
    if let Some(at) = backup.filter(|&at| at > 0 && at.saturating_add(512) <= dev.len()) {
        let mut c = [0u8; 512];
        dev.read_at(&mut c, at)?;
        // Only a copy of this very boot sector (same type, same old value,
        // or already the new one).
        let field = &c[HIDDEN..HIDDEN + 4];
        let copy = kind(&c).map(|k| k.0) == Some(fs);
        let relocating =
            from != to && (field == &b[HIDDEN..HIDDEN + 4] || field == to.to_le_bytes());
        // The primary already says `to` but the backup does not: a run
        // interrupted between the two writes. Finish it.
        let interrupted = from == to && field != to.to_le_bytes();
        if copy && (relocating || interrupted) {
            sectors.push(at);
        }
    }
    if sectors.is_empty() {
        return Ok(None);
    }
    Ok(Some(Relocation {
        fs,
        from,
        to,
        sectors,
    }))
}

/// Writes `r.to` into every planned sector's field and syncs.
pub fn apply(dev: &mut dyn Device, r: &Relocation) -> io::Result<()> {
    for &at in &r.sectors {
        dev.write_at(&r.to.to_le_bytes(), at + HIDDEN as u64)?;
    }
    dev.sync()
}

/// `(fs, bytes per sector)` of a plausible NTFS or FAT boot sector.
fn kind(b: &[u8; 512]) -> Option<(&'static str, u64)> {
    if b[510..512] != [0x55, 0xAA] {
        return None;
    }
    let bps = u16::from_le_bytes([b[0x0B], b[0x0C]]);
    if !matches!(bps, 512 | 1024 | 2048 | 4096) {
        return None;
    }
    let spc = b[0x0D];
    if &b[3..11] == b"NTFS    " {
        // NTFS writes large cluster sizes as a negative power of two.
        return (spc != 0 && (spc.is_power_of_two() || spc >= 0xF4))
            .then_some(("ntfs", u64::from(bps)));
    }
    let fat16 = b[0x36..0x39] == *b"FAT";
    let fat32 = b[0x52..0x57] == *b"FAT32";
    (spc.is_power_of_two() && (fat16 || fat32)).then_some(("fat", u64::from(bps)))
}

/// sha256 (hex) of the partition's first `len` bytes as the image was made:
/// with the hidden-sectors fields this module set to `start_lba` put back
/// to `image_head`'s value (the image's first sector). `None` when the
/// partition holds no boot sector this module relocated.
///
/// So a re-apply recognises an image it restored and relocated, rather than
/// restoring it again.
pub fn hash_as_made(
    dev: &dyn Device,
    start_lba: u64,
    len: u64,
    image: &mut dyn Read,
) -> io::Result<Option<String>> {
    let mut head = [0u8; 512];
    if image.read_exact(&mut head).is_err() || kind(&head).is_none() {
        return Ok(None);
    }
    let original = [
        head[HIDDEN],
        head[HIDDEN + 1],
        head[HIDDEN + 2],
        head[HIDDEN + 3],
    ];
    let Ok(to) = u32::try_from(start_lba) else {
        return Ok(None);
    };
    // Plan the relocation as if the field still held the image's value.
    let sectors = {
        let mut b = [0u8; 512];
        if dev.len() < 512 {
            return Ok(None);
        }
        dev.read_at(&mut b, 0)?;
        if b[HIDDEN..HIDDEN + 4] != to.to_le_bytes() || u32::from_le_bytes(original) == to {
            return Ok(None);
        }
        b[HIDDEN..HIDDEN + 4].copy_from_slice(&original);
        let Some(r) = plan_sector(dev, &b, to)? else {
            return Ok(None);
        };
        r.sectors
    };
    let mut h = Sha256::new();
    let mut buf = vec![0_u8; 4 << 20];
    let mut done = 0_u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        dev.read_at(&mut buf[..n], done)?;
        for &s in &sectors {
            let at = s + HIDDEN as u64;
            if at >= done && at + 4 <= done + n as u64 {
                let i = (at - done) as usize;
                buf[i..i + 4].copy_from_slice(&original);
            }
        }
        h.update(&buf[..n]);
        done += n as u64;
    }
    Ok(Some(crate::restore::hex(&h.finalize())))
}
