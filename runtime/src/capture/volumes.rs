//! Dynamic volumes in a capture: what the disks' LDM databases
//! ([`crate::ldm::read`]) say, as the plan's `volumes:` (layout, stripe
//! size, members as `disk/partition`), the filesystem found by reading
//! through the volume, and with `--backup` the volume's logical bytes as one
//! `raw-zstd` artifact restored onto the volume.
//!
//! [`VolumeDevice`] is a read-only [`Device`] over a volume's logical bytes
//! (mapped through [`crate::ldm::layout::map`]), so the backup and the
//! filesystem probe read a volume exactly like a partition.

use super::{CapturedDisk, FoundFs};
use crate::ldm::layout::{self, Layout, Member};
use crate::ldm::read::{LdmLayout, LdmVolume};
use crate::ldm::SECTOR;
use crate::target::Device;
use std::io;

/// One dynamic volume, as the plan states it.
#[derive(Debug, Clone)]
pub struct CapturedVolume {
    pub id: String,
    /// Its name in the LDM database (`Volume1`), for comments.
    pub name: String,
    pub layout: LdmLayout,
    /// `disk/partition` ids, in volume order.
    pub members: Vec<String>,
    /// Where each member lies: (index into the capture's disks, byte start,
    /// bytes).
    pub at: Vec<(usize, u64, u64)>,
    /// Bytes.
    pub size: u64,
    pub fs: Option<FoundFs>,
    /// The image artifact restoring it, once backed up.
    pub image: Option<String>,
}

impl CapturedVolume {
    pub fn plan_layout(&self) -> &'static str {
        match self.layout {
            LdmLayout::Simple => "simple",
            LdmLayout::Spanned => "spanned",
            LdmLayout::Striped { .. } => "striped",
            LdmLayout::Mirrored => "mirrored",
            LdmLayout::Raid5 { .. } => "raid5",
        }
    }

    /// The stripe size in bytes (striped, raid5).
    pub fn stripe(&self) -> Option<u64> {
        match self.layout {
            LdmLayout::Striped { chunk } | LdmLayout::Raid5 { chunk } => chunk.checked_mul(SECTOR),
            _ => None,
        }
    }

    fn layout(&self) -> Option<Layout> {
        Some(match self.layout {
            LdmLayout::Simple | LdmLayout::Spanned => Layout::Spanned,
            LdmLayout::Striped { .. } => Layout::Striped {
                chunk: self.stripe()?,
            },
            LdmLayout::Mirrored => Layout::Mirrored,
            LdmLayout::Raid5 { .. } => Layout::Raid5 {
                chunk: self.stripe()?,
            },
        })
    }
}

/// The volumes of the disk group found on `disks`, each member matched to
/// the captured disk (by LDM disk GUID) and partition (by start) holding
/// it. A volume with a member on a disk not captured is left out, with a
/// note on the first disk that has its group.
pub fn collect(disks: &mut [CapturedDisk]) -> Vec<CapturedVolume> {
    let Some(first) = disks.iter().position(|d| d.ldm.is_some()) else {
        return Vec::new();
    };
    let Some(db) = disks[first].ldm.clone() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (k, v) in db.volumes.iter().enumerate() {
        match members(disks, &db, v) {
            Ok((members, at)) => out.push(CapturedVolume {
                id: format!("volume{}", k + 1),
                name: v.name.clone(),
                layout: v.layout,
                members,
                at,
                size: v.size.saturating_mul(SECTOR),
                fs: None,
                image: None,
            }),
            Err(why) => notes.push(format!(
                "dynamic volume `{}` left out: {why}",
                v.name.replace('\n', " ")
            )),
        }
    }
    for d in disks.iter_mut() {
        if let Some(other) = &d.ldm {
            if other.group_guid != db.group_guid {
                d.notes.push(format!(
                    "a second disk group (`{}`): only `{}` is described",
                    other.group_name, db.group_name
                ));
            }
        }
    }
    disks[first].notes.extend(notes);
    out
}

type Members = (Vec<String>, Vec<(usize, u64, u64)>);

fn members(
    disks: &[CapturedDisk],
    db: &crate::ldm::read::Database,
    v: &LdmVolume,
) -> Result<Members, String> {
    let mut ids = Vec::new();
    let mut at = Vec::new();
    for m in &v.members {
        let guid = db.disks.get(m.disk).map(|d| d.guid.as_str()).unwrap_or("");
        let (di, disk, dbm) = disks
            .iter()
            .enumerate()
            .find_map(|(i, d)| {
                d.ldm
                    .as_ref()
                    .filter(|x| x.disk_guid == guid && x.group_guid == db.group_guid)
                    .map(|x| (i, d, x))
            })
            .ok_or_else(|| format!("its member `{}` is on a disk not captured", m.name))?;
        let start = dbm
            .public_start
            .checked_add(m.start)
            .and_then(|s| s.checked_mul(SECTOR))
            .ok_or("a member past 2^64 bytes")?;
        let p = disk
            .partitions
            .iter()
            .find(|p| p.start == start && p.kind == "ldm")
            .ok_or_else(|| format!("its member `{}` is not on {}", m.name, disk.id))?;
        ids.push(format!("{}/{}", disk.id, p.id));
        at.push((di, p.start, p.size));
    }
    Ok((ids, at))
}

/// A volume's logical bytes, read through its layout from the member
/// disks. Read-only: writing is refused.
pub struct VolumeDevice {
    devices: Vec<Box<dyn Device>>,
    layout: Layout,
    members: Vec<Member>,
    size: u64,
}

impl VolumeDevice {
    /// `devices` by capture disk index. `None` when the volume's layout or
    /// members do not make a volume (a zero chunk, a member outside its
    /// disk).
    pub fn new(devices: Vec<Box<dyn Device>>, v: &CapturedVolume) -> Option<Self> {
        let layout = v.layout()?;
        let members: Vec<Member> =
            v.at.iter()
                .map(|&(device, start, len)| Member { device, start, len })
                .collect();
        Self::from_members(devices, layout, &members).map(|mut d| {
            d.size = d.size.min(v.size);
            d
        })
    }

    /// Over `members` (their `device` indexing `devices`) in `layout`.
    pub fn from_members(
        devices: Vec<Box<dyn Device>>,
        layout: Layout,
        members: &[Member],
    ) -> Option<Self> {
        for m in members {
            let dev = devices.get(m.device)?;
            if m.start.checked_add(m.len)? > dev.len() {
                return None;
            }
        }
        let size = layout::usable_size(layout, members);
        (size > 0).then_some(VolumeDevice {
            devices,
            layout,
            members: members.to_vec(),
            size,
        })
    }
}

impl Device for VolumeDevice {
    fn len(&self) -> u64 {
        self.size
    }
    fn sector_size(&self) -> u32 {
        SECTOR as u32
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let o = offset + done as u64;
            let &(mi, mo) = layout::map(self.layout, &self.members, o)
                .first()
                .ok_or_else(|| io::Error::other("a read past the volume's end"))?;
            let m = self.members[mi];
            let run = match self.layout {
                Layout::Striped { chunk } | Layout::Raid5 { chunk } => chunk - o % chunk,
                Layout::Spanned | Layout::Mirrored => m.len - mo,
            };
            let n = usize::try_from(run)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            self.devices[m.device].read_at(&mut buf[done..done + n], m.start + mo)?;
            done += n;
        }
        Ok(())
    }
    fn write_at(&mut self, _: &[u8], _: u64) -> io::Result<()> {
        Err(io::Error::other("a captured volume is read only"))
    }
    fn zero_range(&mut self, _: u64, _: u64) -> io::Result<()> {
        Err(io::Error::other("a captured volume is read only"))
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The filesystem on a volume, as blkid sees it: the volume's first 64 MiB
/// (and for NTFS its MFT's first 1 MiB, where the label lives) copied into
/// a sparse temporary file of the volume's size, probed there.
pub fn probe_fs(vol: &VolumeDevice) -> io::Result<Option<FoundFs>> {
    use std::os::unix::fs::FileExt;
    const HEAD: u64 = 64 << 20;
    const BLOCK: usize = 1 << 20;
    let tmp = tempfile::tempfile()?;
    tmp.set_len(vol.len())?;
    let copy = |from: u64, len: u64| -> io::Result<()> {
        let end = from.saturating_add(len).min(vol.len());
        let mut at = from;
        let mut buf = vec![0u8; BLOCK];
        while at < end {
            let n = (end - at).min(BLOCK as u64) as usize;
            vol.read_at(&mut buf[..n], at)?;
            if buf[..n].iter().any(|&b| b != 0) {
                tmp.write_all_at(&buf[..n], at)?;
            }
            at += n as u64;
        }
        Ok(())
    };
    copy(0, HEAD)?;
    let mut boot = [0u8; 512];
    if vol.len() >= 512 {
        vol.read_at(&mut boot, 0)?;
        if &boot[3..11] == b"NTFS    " {
            let bps = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
            let spc = u64::from(boot[13]);
            let lcn = u64::from_le_bytes(boot[48..56].try_into().unwrap_or([0; 8]));
            if let Some(at) = lcn.checked_mul(bps).and_then(|x| x.checked_mul(spc)) {
                if at < vol.len() {
                    copy(at, 1 << 20)?;
                }
            }
        }
    }
    let prober = crate::inspect::probe::Prober::new(&tmp, 0, vol.len())?;
    Ok(prober
        .signatures()?
        .into_iter()
        .find(|s| s.usage.as_deref() == Some("filesystem"))
        .map(|s| FoundFs {
            kind: s.kind,
            version: s.version,
            label: s.label,
            used: s.used,
        }))
}

/// `--backup`: the volume's logical bytes as one `raw-zstd` artifact
/// (`<volume id>.img.zst`), which a restore writes back through the
/// volume's layout. partclone is not used here: it reads a block device or
/// file, and a striped volume is neither until assembled.
pub fn back_up(
    vol: &VolumeDevice,
    v: &mut CapturedVolume,
    dir: &std::path::Path,
    set: &mut super::backup::BackupSet,
    progress: super::backup::Progress<'_>,
) -> io::Result<()> {
    let whole = super::CapturedPartition::plain(0, 0, vol.len(), "");
    let written = super::backup::raw_zstd(vol, &whole, dir, &v.id, progress)?;
    v.image = Some(written.id.clone());
    set.artifacts.push(written);
    Ok(())
}
