//! Reading a dynamic disk's LDM database back: PRIVHEAD → TOCBLOCK → VMDB
//! → VBLKs (disk group, disks, partitions, components, volumes), for
//! `rplan capture` and `rplan verify`.
//!
//! Hand-written because no Rust crate reads LDM (libldm, behind `ldmtool`,
//! is C with GLib; the Linux kernel's reader is in the kernel). The layout
//! is [`super::database`]'s, read the way the kernel's `ldm.c` and libldm
//! read it: every field is bounds-checked, every offset and size is checked
//! against the disk's size, and the number of VBLKs read is bounded by the
//! config region, so damaged bytes give an error, never a panic or a loop.
//! Records split over several VBLKs (Windows does this for long names and
//! many children) are joined before parsing.

use super::database::SECTOR;
use crate::target::Device;
use std::collections::BTreeMap;

/// The config region read whole is at most this (Windows' is 1470 sectors).
const MAX_CONFIG_BYTES: u64 = 8 << 20;
/// A record split over more VBLKs than this is refused as damaged.
const MAX_FRAGMENTS: u16 = 64;

/// What one disk's LDM database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub group_name: String,
    pub group_guid: String,
    /// This disk's GUID (from its PRIVHEAD), as in [`LdmDisk::guid`].
    pub disk_guid: String,
    /// Where this disk's public region starts, sectors.
    pub public_start: u64,
    pub public_size: u64,
    pub disks: Vec<LdmDisk>,
    pub volumes: Vec<LdmVolume>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdmDisk {
    pub id: u64,
    pub name: String,
    /// Lower-case hyphenated.
    pub guid: String,
}

/// How the volume's bytes lie on its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdmLayout {
    /// One partition.
    Simple,
    /// Members end to end.
    Spanned,
    /// Chunk in sectors.
    Striped { chunk: u64 },
    /// Every member a whole copy.
    Mirrored,
    /// Chunk in sectors.
    Raid5 { chunk: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdmVolume {
    pub name: String,
    /// Sectors.
    pub size: u64,
    /// The MBR-style type byte of what it holds.
    pub partition_type: u8,
    pub layout: LdmLayout,
    /// In volume order (spanned: by offset; striped/raid5: by column;
    /// mirrored: one per copy).
    pub members: Vec<LdmPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdmPartition {
    pub name: String,
    /// Index into [`Database::disks`].
    pub disk: usize,
    /// Sectors from the disk's public region start.
    pub start: u64,
    /// Sectors.
    pub size: u64,
    pub volume_offset: u64,
    pub index: u64,
}

fn be(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
}

/// Text up to the first NUL, lossily.
fn text(b: &[u8], at: usize, len: usize) -> Option<String> {
    let s = b.get(at..at.checked_add(len)?)?;
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    Some(String::from_utf8_lossy(&s[..end]).into_owned())
}

fn read(dev: &dyn Device, sector: u64, sectors: u64) -> Result<Vec<u8>, String> {
    let at = sector
        .checked_mul(SECTOR)
        .ok_or("an offset past 2^64 bytes")?;
    let len = sectors
        .checked_mul(SECTOR)
        .ok_or("a size past 2^64 bytes")?;
    if at.checked_add(len).is_none_or(|end| end > dev.len()) {
        return Err(format!(
            "sectors {sector}+{sectors} lie past the disk's end ({} bytes)",
            dev.len()
        ));
    }
    let len = usize::try_from(len).map_err(|_| "a region too large to read")?;
    let mut buf = vec![0u8; len];
    dev.read_at(&mut buf, at)
        .map_err(|e| format!("reading sector {sector}: {e}"))?;
    Ok(buf)
}

/// Reads the LDM database of the dynamic disk `dev`; `Ok(None)` when it has
/// no PRIVHEAD at sector 6 (not a dynamic disk).
pub fn read_database(dev: &dyn Device) -> Result<Option<Database>, String> {
    let disk_sectors = dev.len() / SECTOR;
    if disk_sectors <= super::database::PRIVHEAD_SECTOR {
        return Ok(None);
    }
    let ph = read(dev, super::database::PRIVHEAD_SECTOR, 1)?;
    if &ph[..8] != b"PRIVHEAD" {
        return Ok(None);
    }
    parse(dev, &ph, disk_sectors).map(Some)
}

fn parse(dev: &dyn Device, ph: &[u8], disk_sectors: u64) -> Result<Database, String> {
    let field = |at| be(ph, at, 8).ok_or("a short PRIVHEAD");
    let (public_start, public_size) = (field(0x11B)?, field(0x123)?);
    let (private_start, private_size) = (field(0x12B)?, field(0x133)?);
    let fits = |s: u64, n: u64| s.checked_add(n).is_some_and(|e| e <= disk_sectors);
    if !fits(public_start, public_size) || !fits(private_start, private_size) || private_size < 4 {
        return Err(format!(
            "the PRIVHEAD's regions (public {public_start}+{public_size}, private \
             {private_start}+{private_size} sectors) do not fit the disk's {disk_sectors} sectors"
        ));
    }
    let disk_guid = text(ph, 0x30, 64).unwrap_or_default().to_lowercase();
    let group_guid = text(ph, 0xB0, 64).unwrap_or_default().to_lowercase();
    let group_name = text(ph, 0xF0, 31).unwrap_or_default();
    // The TOCBLOCK: the first of its copies that reads as one.
    let toc = [1, 2, private_size - 3, private_size - 2]
        .into_iter()
        .filter_map(|s| read(dev, private_start + s, 1).ok())
        .find(|b| &b[..8] == b"TOCBLOCK")
        .ok_or("no TOCBLOCK in the private region")?;
    let (config_start, config_size) = [0x24usize, 0x46]
        .into_iter()
        .find(|&at| text(&toc, at, 8).as_deref() == Some("config"))
        .and_then(|at| Some((be(&toc, at + 0x0A, 8)?, be(&toc, at + 0x12, 8)?)))
        .ok_or("the TOCBLOCK has no config region")?;
    if config_start
        .checked_add(config_size)
        .is_none_or(|e| e > private_size)
        || config_size == 0
    {
        return Err(format!(
            "the config region ({config_start}+{config_size}) lies outside the private region"
        ));
    }
    let vmdb = read(dev, private_start + config_start, 1)?;
    if &vmdb[..4] != b"VMDB" {
        return Err("no VMDB at the config region's start".to_string());
    }
    let last_seq = be(&vmdb, 0x04, 4).unwrap_or(0);
    let vblk_size = be(&vmdb, 0x08, 4).unwrap_or(0);
    let first = be(&vmdb, 0x0C, 4).unwrap_or(0);
    if !(0x20..=SECTOR).contains(&vblk_size) || SECTOR % vblk_size != 0 {
        return Err(format!("the VMDB's VBLK size {vblk_size} is not sane"));
    }
    let bytes = last_seq
        .saturating_mul(vblk_size)
        .min(config_size.saturating_mul(SECTOR))
        .min(MAX_CONFIG_BYTES);
    let config = read(dev, private_start + config_start, bytes.div_ceil(SECTOR))?;
    let records = join_vblks(&config, first, vblk_size)?;
    build(
        records,
        group_name,
        group_guid,
        disk_guid,
        public_start,
        public_size,
    )
}

/// A split record so far: (its fragment count, the slot of its first
/// fragment, fragments by index).
type Fragments = (u16, usize, BTreeMap<u16, Vec<u8>>);

/// The records of the config region: every VBLK slot from `first` on,
/// fragments of one record joined in order.
fn join_vblks(config: &[u8], first: u64, vblk_size: u64) -> Result<Vec<Vec<u8>>, String> {
    let size = usize::try_from(vblk_size).map_err(|_| "VBLK size")?;
    let mut at = usize::try_from(first).map_err(|_| "VBLK offset")?;
    // (slot of the record's first fragment, bytes): records keep their
    // order in the database, split or not.
    let mut whole: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut parts: BTreeMap<u64, Fragments> = BTreeMap::new();
    while let Some(v) = config.get(at..at + size) {
        at += size;
        if &v[..4] != b"VBLK" {
            continue;
        }
        let (rec, idx, total) = (
            be(v, 0x08, 4).unwrap_or(0),
            be(v, 0x0C, 2).unwrap_or(0) as u16,
            be(v, 0x0E, 2).unwrap_or(0) as u16,
        );
        let data = v[0x10..].to_vec();
        match total {
            0 => {}
            1 => whole.push((at, data)),
            _ if total > MAX_FRAGMENTS || idx >= total => {
                return Err(format!("VBLK record {rec}: fragment {idx} of {total}"))
            }
            _ => {
                let e = parts.entry(rec).or_insert((total, at, BTreeMap::new()));
                if e.0 != total {
                    return Err(format!("VBLK record {rec}: fragment counts disagree"));
                }
                if idx == 0 {
                    e.1 = at;
                }
                e.2.insert(idx, data);
            }
        }
    }
    for (rec, (total, first, frags)) in parts {
        if frags.len() != usize::from(total) {
            return Err(format!(
                "VBLK record {rec}: {} of its {total} fragments",
                frags.len()
            ));
        }
        // The record header (status, flags, type, size) is the first
        // fragment's; later fragments carry only the rest of the body.
        whole.push((first, frags.into_values().flatten().collect()));
    }
    whole.sort_by_key(|(at, _)| *at);
    Ok(whole.into_iter().map(|(_, r)| r).collect())
}

/// Reads a record's body field after field.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn skip(&mut self, n: usize) -> Option<&mut Self> {
        self.take(n)?;
        Some(self)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u64(&mut self) -> Option<u64> {
        be(self.take(8)?, 0, 8)
    }
    fn vnum(&mut self) -> Option<u64> {
        let n = usize::from(self.u8()?);
        if n == 0 || n > 8 {
            return None;
        }
        be(self.take(n)?, 0, n)
    }
    fn vstr(&mut self) -> Option<String> {
        let n = usize::from(self.u8()?);
        Some(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
}

struct Comp {
    kind: u8,
    chunk: Option<u64>,
    volume: u64,
}

struct Vol {
    id: u64,
    name: String,
    raid5: bool,
    size: u64,
    partition_type: u8,
}

struct Part {
    p: LdmPartition,
    disk_id: u64,
    component: u64,
}

fn build(
    records: Vec<Vec<u8>>,
    group_name: String,
    group_guid: String,
    disk_guid: String,
    public_start: u64,
    public_size: u64,
) -> Result<Database, String> {
    let mut disks = Vec::new();
    let mut vols = Vec::new();
    let mut comps = BTreeMap::new();
    let mut parts = Vec::new();
    for r in &records {
        let (Some(&flags), Some(&kind)) = (r.get(2), r.get(3)) else {
            continue;
        };
        let mut c = Cursor {
            b: r.get(8..).unwrap_or(&[]),
            at: 0,
        };
        let bad = || format!("a damaged VBLK record of type {kind:#04x}");
        match kind {
            0x34 | 0x44 => {
                let id = c.vnum().ok_or_else(bad)?;
                let name = c.vstr().ok_or_else(bad)?;
                let guid = if kind == 0x34 {
                    c.vstr().ok_or_else(bad)?
                } else {
                    let b = c.take(16).ok_or_else(bad)?;
                    uuid::Uuid::from_slice(b).map_err(|_| bad())?.to_string()
                };
                disks.push(LdmDisk {
                    id,
                    name,
                    guid: guid.to_lowercase(),
                });
            }
            0x51 => {
                let id = c.vnum().ok_or_else(bad)?;
                let name = c.vstr().ok_or_else(bad)?;
                let vtype = c.vstr().ok_or_else(bad)?;
                c.vstr().ok_or_else(bad)?;
                c.skip(14 + 7).ok_or_else(bad)?;
                c.vnum().ok_or_else(bad)?;
                c.skip(16).ok_or_else(bad)?;
                let size = c.vnum().ok_or_else(bad)?;
                c.skip(4).ok_or_else(bad)?;
                let partition_type = c.u8().ok_or_else(bad)?;
                vols.push(Vol {
                    id,
                    name,
                    raid5: vtype == "raid5",
                    size,
                    partition_type,
                });
            }
            0x32 => {
                let id = c.vnum().ok_or_else(bad)?;
                c.vstr().ok_or_else(bad)?;
                c.vstr().ok_or_else(bad)?;
                let ckind = c.u8().ok_or_else(bad)?;
                c.skip(4).ok_or_else(bad)?;
                c.vnum().ok_or_else(bad)?;
                c.skip(16).ok_or_else(bad)?;
                let volume = c.vnum().ok_or_else(bad)?;
                c.skip(1).ok_or_else(bad)?;
                let chunk = if flags & 0x10 != 0 {
                    Some(c.vnum().ok_or_else(bad)?)
                } else {
                    None
                };
                comps.insert(
                    id,
                    Comp {
                        kind: ckind,
                        chunk,
                        volume,
                    },
                );
            }
            0x33 => {
                c.vnum().ok_or_else(bad)?;
                let name = c.vstr().ok_or_else(bad)?;
                c.skip(4 + 8).ok_or_else(bad)?;
                let start = c.u64().ok_or_else(bad)?;
                let volume_offset = c.u64().ok_or_else(bad)?;
                let size = c.vnum().ok_or_else(bad)?;
                let component = c.vnum().ok_or_else(bad)?;
                let disk_id = c.vnum().ok_or_else(bad)?;
                let index = if flags & 0x08 != 0 {
                    c.vnum().ok_or_else(bad)?
                } else {
                    0
                };
                parts.push(Part {
                    p: LdmPartition {
                        name,
                        disk: 0,
                        start,
                        size,
                        volume_offset,
                        index,
                    },
                    disk_id,
                    component,
                });
            }
            _ => {}
        }
    }
    // A partition of this disk must lie within its public region.
    let this = disks.iter().find(|d| d.guid == disk_guid).map(|d| d.id);
    let mut volumes = Vec::new();
    for v in vols {
        let vcomps: Vec<(&u64, &Comp)> = comps.iter().filter(|(_, c)| c.volume == v.id).collect();
        let mut members = Vec::new();
        for (cid, _) in &vcomps {
            let mut ps: Vec<LdmPartition> = Vec::new();
            for p in parts.iter().filter(|p| p.component == **cid) {
                let disk = disks
                    .iter()
                    .position(|d| d.id == p.disk_id)
                    .ok_or_else(|| format!("LDM partition `{}` is on no known disk", p.p.name))?;
                if Some(p.disk_id) == this
                    && p.p
                        .start
                        .checked_add(p.p.size)
                        .is_none_or(|e| e > public_size)
                {
                    return Err(format!(
                        "LDM partition `{}` lies past the public region",
                        p.p.name
                    ));
                }
                ps.push(LdmPartition {
                    disk,
                    ..p.p.clone()
                });
            }
            ps.sort_by_key(|p| (p.index, p.volume_offset));
            members.push(ps);
        }
        let chunk = vcomps.first().and_then(|(_, c)| c.chunk);
        let kinds: Vec<u8> = vcomps.iter().map(|(_, c)| c.kind).collect();
        let layout = match (v.raid5, kinds.as_slice(), chunk) {
            (true, [3], Some(chunk)) => LdmLayout::Raid5 { chunk },
            (false, [1], Some(chunk)) => LdmLayout::Striped { chunk },
            (false, [2], _) if members[0].len() == 1 => LdmLayout::Simple,
            (false, [2], _) => {
                members[0].sort_by_key(|p| p.volume_offset);
                LdmLayout::Spanned
            }
            (false, ks, _) if ks.len() > 1 && ks.iter().all(|&k| k == 2) => {
                if members.iter().any(|m| m.len() != 1) {
                    return Err(format!(
                        "volume `{}`: a mirror of spanned copies, which a plan cannot state",
                        v.name
                    ));
                }
                LdmLayout::Mirrored
            }
            _ => {
                return Err(format!(
                    "volume `{}`: components of kinds {kinds:?} make no layout rplan knows",
                    v.name
                ))
            }
        };
        let members: Vec<LdmPartition> = members.into_iter().flatten().collect();
        if members.is_empty() {
            return Err(format!("volume `{}` has no partitions", v.name));
        }
        volumes.push(LdmVolume {
            name: v.name,
            size: v.size,
            partition_type: v.partition_type,
            layout,
            members,
        });
    }
    Ok(Database {
        group_name,
        group_guid,
        disk_guid,
        public_start,
        public_size,
        disks,
        volumes,
    })
}

impl Database {
    /// This disk's index in [`Database::disks`].
    pub fn this_disk(&self) -> Option<usize> {
        self.disks.iter().position(|d| d.guid == self.disk_guid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldm::database::tests::{group, guid};
    use crate::ldm::database::{self, Group};
    use crate::target::MemDevice;

    /// The disks of [`group`]: a spanned volume over both, a striped one
    /// over both, a mirror (two components).
    const SECTORS: u64 = 65536;

    fn device(g: &Group, d: usize) -> MemDevice {
        let mut dev = MemDevice::new(SECTORS * SECTOR, 512);
        for (at, bytes) in database::disk_image(g, d).unwrap() {
            dev.write_at(&bytes, at).unwrap();
        }
        dev
    }

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let g = group();
        let db = read_database(&device(&g, 1)).unwrap().unwrap();
        assert_eq!(db.group_name, "testDg0");
        assert_eq!(db.group_guid, guid(0x10).to_string());
        assert_eq!(db.disk_guid, guid(2).to_string());
        assert_eq!(db.this_disk(), Some(1));
        assert_eq!((db.public_start, db.public_size), (63, SECTORS - 2048 - 63));
        let names: Vec<&str> = db.disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["Disk1", "Disk2"]);
        let v = &db.volumes;
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].layout, LdmLayout::Spanned);
        assert_eq!((v[0].name.as_str(), v[0].size), ("Volume1", 4096));
        let offs: Vec<u64> = v[0].members.iter().map(|m| m.volume_offset).collect();
        assert_eq!(offs, [0, 2048]);
        assert_eq!(v[1].layout, LdmLayout::Striped { chunk: 128 });
        let at: Vec<(usize, u64, u64)> = v[1]
            .members
            .iter()
            .map(|m| (m.disk, m.start, m.size))
            .collect();
        assert_eq!(at, [(0, 4033, 4096), (1, 4033, 4096)]);
        assert_eq!(v[2].layout, LdmLayout::Mirrored);
        let disks: Vec<usize> = v[2].members.iter().map(|m| m.disk).collect();
        assert_eq!(disks, [0, 1]);
    }

    #[test]
    fn not_a_dynamic_disk_is_none() {
        assert_eq!(read_database(&MemDevice::new(1 << 20, 512)).unwrap(), None);
        assert_eq!(read_database(&MemDevice::new(512, 512)).unwrap(), None);
    }

    /// A record split over two VBLKs (as Windows writes long ones) reads
    /// as the one record.
    #[test]
    fn a_record_split_over_two_vblks_is_joined() {
        let g = group();
        let mut dev = device(&g, 0);
        let config = (SECTORS - 2048 + 17) * SECTOR;
        // Find the first volume record's slot and split it into slot + a
        // free slot after the last used one.
        let mut region = vec![0u8; 64 * 512];
        dev.read_at(&mut region, config).unwrap();
        let slot = (4..region.len() / 128)
            .find(|&s| region[s * 128 + 0x13] == 0x51)
            .unwrap();
        // A new slot after the last, the VMDB's last sequence number
        // moved past it.
        let free = (slot..region.len() / 128)
            .find(|&s| &region[s * 128..s * 128 + 4] != b"VBLK")
            .unwrap();
        region[free * 128..free * 128 + 4].copy_from_slice(b"VBLK");
        region[4..8].copy_from_slice(&(free as u32 + 4).to_be_bytes());
        // The record again with a 100-character name: 205 bytes, more
        // than one VBLK's 112.
        let rec = &region[slot * 128 + 0x10..slot * 128 + 128];
        let body_len = u32::from_be_bytes([rec[4], rec[5], rec[6], rec[7]]) as usize;
        let body = &rec[8..8 + body_len];
        let name_len = usize::from(body[2]);
        let long = "V".repeat(100);
        let mut new_body = body[..2].to_vec();
        new_body.push(100);
        new_body.extend_from_slice(long.as_bytes());
        new_body.extend_from_slice(&body[3 + name_len..]);
        let mut whole = rec[..4].to_vec();
        whole.extend_from_slice(&(new_body.len() as u32).to_be_bytes());
        whole.extend_from_slice(&new_body);
        let (a, b) = whole.split_at(112);
        let rec = [0u8, 0, 0, 77];
        for (s, idx, body) in [(slot, 0u8, a), (free, 1, b)] {
            let v = &mut region[s * 128..s * 128 + 128];
            v[0x08..0x0C].copy_from_slice(&rec);
            v[0x0C..0x10].copy_from_slice(&[0, idx, 0, 2]);
            v[0x10..].fill(0);
            v[0x10..0x10 + body.len()].copy_from_slice(body);
        }
        dev.write_at(&region, config).unwrap();
        let db = read_database(&dev).unwrap().unwrap();
        assert_eq!(db.volumes[0].name, long);
        assert_eq!(db.volumes[0].size, 4096);
        assert_eq!(db.volumes[0].layout, LdmLayout::Spanned);
        // A lost fragment is an error, not a half record.
        region[free * 128 + 0x0C..free * 128 + 0x10].copy_from_slice(&[0, 0, 0, 0]);
        dev.write_at(&region, config).unwrap();
        assert!(read_database(&dev).is_err());
    }

    /// Every single-byte change of the database, and random noise over
    /// it, gives a database or an error: never a panic or a hang.
    #[test]
    fn damaged_bytes_never_panic() {
        let g = group();
        let clean = device(&g, 0);
        let private = (SECTORS - 2048) * SECTOR;
        let mut region = vec![0u8; 2048 * 512];
        clean.read_at(&mut region, private).unwrap();
        let mut ph = vec![0u8; 512];
        clean.read_at(&mut ph, 6 * 512).unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // PRIVHEAD fields, TOCBLOCK, VMDB and the VBLKs.
        let spots: Vec<(bool, usize)> = (0..0x190)
            .map(|i| (true, i))
            .chain((512..1024).map(|i| (false, i)))
            .chain((17 * 512..17 * 512 + 4096).map(|i| (false, i)))
            .collect();
        for (in_ph, at) in spots {
            for v in [0u8, 0xFF, (next() & 0xFF) as u8] {
                let mut dev = MemDevice::new(SECTORS * SECTOR, 512);
                let (mut p, mut r) = (ph.clone(), region.clone());
                if in_ph {
                    p[at] = v;
                } else {
                    r[at] = v;
                }
                dev.write_at(&p, 6 * 512).unwrap();
                dev.write_at(&r, private).unwrap();
                let _ = read_database(&dev);
            }
        }
        for _ in 0..200 {
            let mut r = region.clone();
            for _ in 0..32 {
                let at = 17 * 512 + (next() % 4096) as usize;
                r[at] = next() as u8;
            }
            let mut dev = MemDevice::new(SECTORS * SECTOR, 512);
            dev.write_at(&ph, 6 * 512).unwrap();
            dev.write_at(&r, private).unwrap();
            let _ = read_database(&dev);
        }
        // Huge sizes in the PRIVHEAD and the VMDB are refused, not read.
        let mut p = ph.clone();
        p[0x133..0x13B].copy_from_slice(&u64::MAX.to_be_bytes());
        let mut dev = MemDevice::new(SECTORS * SECTOR, 512);
        dev.write_at(&p, 6 * 512).unwrap();
        assert!(read_database(&dev).is_err());
        let mut r = region.clone();
        r[17 * 512 + 4..17 * 512 + 8].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut dev = MemDevice::new(SECTORS * SECTOR, 512);
        dev.write_at(&ph, 6 * 512).unwrap();
        dev.write_at(&r, private).unwrap();
        assert!(read_database(&dev).is_ok(), "bounded by the config region");
        // A truncated disk: the private region lies past its end.
        let mut short = MemDevice::new((SECTORS - 100) * SECTOR, 512);
        short.write_at(&ph, 6 * 512).unwrap();
        assert!(read_database(&short).is_err());
    }
}
