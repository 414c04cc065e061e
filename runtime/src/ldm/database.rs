//! The LDM database's on-disk structures, encoded byte for byte: PRIVHEAD,
//! TOCBLOCK, VMDB, the VBLK records (disk group, disks, partitions,
//! components, volumes) and the KLOG.
//!
//! Sources: the Linux-NTFS project's LDM documentation (flatcap), the Linux
//! kernel's reader (`block/partitions/ldm.c`, `ldm.h`) and libldm's reader
//! (`src/ldm.c`, behind `ldmtool`). Every multi-byte number is big-endian;
//! "vnum"s are a length byte and that many big-endian bytes; "vstr"s a
//! length byte and that many characters. Offsets and sizes are in 512-byte
//! sectors. Windows 2000/XP write PRIVHEAD version 2.11 and VMDB 4.10, which
//! is what is written here.
//!
//! What this module is not: it decides nothing (names, ids, GUIDs and
//! geometry come in a [`Group`] from [`super::group`]) and writes nothing.

use uuid::Uuid;

pub const SECTOR: u64 = 512;
/// Sectors of the private region (the database) at the end of each disk.
pub const PRIVATE_SECTORS: u64 = 2048;
/// The first PRIVHEAD, just after the MBR, in absolute sectors.
pub const PRIVHEAD_SECTOR: u64 = 6;
/// Within the private region.
const TOC_SECTORS: [u64; 4] = [1, 2, 2045, 2046];
const PRIVHEAD_COPIES: [u64; 2] = [1856, 2047];
const CONFIG_START: u64 = 17;
const CONFIG_SECTORS: u64 = 1470;
const LOG_START: u64 = CONFIG_START + CONFIG_SECTORS;
const LOG_SECTORS: u64 = 224;
const VBLK_SIZE: usize = 128;
const KLOG_PAGES: u32 = 4;
/// The one transaction that created the database.
const COMMIT: u64 = 1;
/// A fixed FILETIME (2001-10-25, XP's release), so rewrites are identical.
const TIMESTAMP: u64 = 126_487_296_000_000_000;

/// How a volume's component lays out its partitions (component VBLK type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    Striped,
    Spanned,
    Raid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub guid: Uuid,
    pub host_guid: Uuid,
    pub id: u64,
    pub disks: Vec<Disk>,
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub id: u64,
    pub name: String,
    pub guid: Uuid,
    pub signature: u32,
    /// Whole disk, sectors.
    pub sectors: u64,
    /// Public region (where partitions live), sectors.
    pub public_start: u64,
    pub public_size: u64,
}

impl Disk {
    pub fn private_start(&self) -> u64 {
        self.sectors.saturating_sub(PRIVATE_SECTORS)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: u64,
    pub name: String,
    pub guid: Uuid,
    /// 1-based, as Windows numbers them.
    pub number: u8,
    /// Sectors.
    pub size: u64,
    /// MBR-style type byte of what the volume holds (0x07 NTFS…).
    pub partition_type: u8,
    pub raid5: bool,
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub id: u64,
    pub name: String,
    pub kind: ComponentKind,
    /// Stripe size in sectors (striped and RAID components).
    pub chunk: Option<u64>,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub id: u64,
    pub name: String,
    /// Index into [`Group::disks`].
    pub disk: usize,
    /// Sectors from the disk's public region start.
    pub start: u64,
    pub size: u64,
    /// Sectors from the volume's start (spanned); 0 for the other layouts.
    pub volume_offset: u64,
    /// Column within the component.
    pub index: u64,
}

/// The bytes one member disk carries: `(absolute byte offset, bytes)` for
/// the first PRIVHEAD and for the whole private region. `None` for an
/// unknown disk or a group too large for the config region.
pub fn disk_image(group: &Group, disk: usize) -> Option<Vec<(u64, Vec<u8>)>> {
    let d = group.disks.get(disk)?;
    let privhead = privhead(group, d);
    let mut region = vec![0u8; (PRIVATE_SECTORS * SECTOR) as usize];
    let mut put = |sector: u64, bytes: &[u8]| {
        let at = (sector * SECTOR) as usize;
        region[at..at + bytes.len()].copy_from_slice(bytes);
    };
    let toc = tocblock();
    for s in TOC_SECTORS {
        put(s, &toc);
    }
    for s in PRIVHEAD_COPIES {
        put(s, &privhead);
    }
    let config = config(group);
    if config.len() as u64 > CONFIG_SECTORS * SECTOR {
        return None;
    }
    put(CONFIG_START, &config);
    for page in 0..KLOG_PAGES {
        put(LOG_START + u64::from(page), &klog(page));
    }
    Some(vec![
        (PRIVHEAD_SECTOR * SECTOR, privhead.to_vec()),
        (d.private_start() * SECTOR, region),
    ])
}

fn be16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}
fn be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn text(b: &mut [u8], at: usize, len: usize, s: &str) {
    let bytes = s.as_bytes();
    let n = bytes.len().min(len);
    b[at..at + n].copy_from_slice(&bytes[..n]);
}

/// Sum of every byte of the sector but the 4-byte checksum at 0x08.
fn checksum(sector: &mut [u8]) {
    let sum = sector
        .iter()
        .enumerate()
        .filter(|(i, _)| !(8..12).contains(i))
        .fold(0u32, |a, (_, &b)| a.wrapping_add(u32::from(b)));
    be32(sector, 8, sum);
}

fn privhead(group: &Group, d: &Disk) -> [u8; 512] {
    let mut b = [0u8; 512];
    text(&mut b, 0x00, 8, "PRIVHEAD");
    be16(&mut b, 0x0C, 2);
    be16(&mut b, 0x0E, 11);
    be64(&mut b, 0x10, TIMESTAMP);
    be64(&mut b, 0x18, COMMIT);
    be64(&mut b, 0x20, PRIVHEAD_COPIES[0]);
    be64(&mut b, 0x28, PRIVHEAD_COPIES[1]);
    text(&mut b, 0x30, 64, &d.guid.hyphenated().to_string());
    text(&mut b, 0x70, 64, &group.host_guid.hyphenated().to_string());
    text(&mut b, 0xB0, 64, &group.guid.hyphenated().to_string());
    text(&mut b, 0xF0, 31, &group.name);
    be32(&mut b, 0x10F, SECTOR as u32);
    be64(&mut b, 0x11B, d.public_start);
    be64(&mut b, 0x123, d.public_size);
    be64(&mut b, 0x12B, d.private_start());
    be64(&mut b, 0x133, PRIVATE_SECTORS);
    be64(&mut b, 0x13B, TOC_SECTORS[1]);
    be64(&mut b, 0x143, TOC_SECTORS[3]);
    be32(&mut b, 0x14B, 1);
    be32(&mut b, 0x14F, 1);
    be64(&mut b, 0x153, CONFIG_SECTORS);
    be64(&mut b, 0x15B, LOG_SECTORS);
    be32(&mut b, 0x163, d.signature);
    b[0x167..0x177].copy_from_slice(group.guid.as_bytes());
    b[0x177..0x187].copy_from_slice(group.guid.as_bytes());
    checksum(&mut b);
    b
}

fn tocblock() -> [u8; 512] {
    let mut b = [0u8; 512];
    text(&mut b, 0x00, 8, "TOCBLOCK");
    be64(&mut b, 0x0C, COMMIT);
    for (at, name, start, size) in [
        (0x24, "config", CONFIG_START, CONFIG_SECTORS),
        (0x46, "log", LOG_START, LOG_SECTORS),
    ] {
        text(&mut b, at, 8, name);
        be64(&mut b, at + 0x0A, start);
        be64(&mut b, at + 0x12, size);
        be16(&mut b, at + 0x1A, 6);
        be16(&mut b, at + 0x1C, 1);
    }
    checksum(&mut b);
    b
}

fn klog(page: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    text(&mut b, 0x00, 4, "KLOG");
    be64(&mut b, 0x04, COMMIT);
    be32(&mut b, 0x0C, 1);
    be32(&mut b, 0x10, KLOG_PAGES);
    be32(&mut b, 0x14, page);
    if page == 0 {
        // The latest commit entry heads the first page.
        b[0x18] = 0x03;
        be64(&mut b, 0x19, COMMIT);
        be64(&mut b, 0x21, COMMIT);
    }
    b
}

/// The config region from its start: the VMDB sector, then the VBLKs.
fn config(group: &Group) -> Vec<u8> {
    let mut records: Vec<Vec<u8>> = Vec::new();
    records.push(disk_group_record(group));
    for d in &group.disks {
        records.push(disk_record(d));
    }
    let mut counts = [0u32; 4]; // volumes, components, partitions, disks
    counts[3] = group.disks.len() as u32;
    for v in &group.volumes {
        records.push(volume_record(v));
        counts[0] += 1;
        for c in &v.components {
            records.push(component_record(c, v.id));
            counts[1] += 1;
            for p in &c.partitions {
                let disk_id = group.disks.get(p.disk).map_or(0, |d| d.id);
                records.push(partition_record(p, c.id, disk_id));
                counts[2] += 1;
            }
        }
    }
    // The VMDB fills the first four VBLK-sized slots; VBLKs follow in
    // whole sectors (a reader expects the magic in every slot it scans).
    let per_sector = SECTOR as usize / VBLK_SIZE;
    let slots = records.len().div_ceil(per_sector) * per_sector;
    let first_seq = per_sector as u32;
    let mut out = vec![0u8; SECTOR as usize + slots * VBLK_SIZE];
    let last_seq = first_seq + slots as u32;
    vmdb(&mut out[..SECTOR as usize], group, last_seq, counts);
    for slot in 0..slots {
        let seq = first_seq + slot as u32;
        let at = SECTOR as usize + slot * VBLK_SIZE;
        let v = &mut out[at..at + VBLK_SIZE];
        text(v, 0, 4, "VBLK");
        be32(v, 0x04, seq);
        if let Some(rec) = records.get(slot) {
            be32(v, 0x08, seq);
            be16(v, 0x0C, 0);
            be16(v, 0x0E, 1);
            let n = rec.len().min(VBLK_SIZE - 0x10);
            v[0x10..0x10 + n].copy_from_slice(&rec[..n]);
        }
    }
    out
}

fn vmdb(b: &mut [u8], group: &Group, last_seq: u32, counts: [u32; 4]) {
    text(b, 0x00, 4, "VMDB");
    be32(b, 0x04, last_seq);
    be32(b, 0x08, VBLK_SIZE as u32);
    be32(b, 0x0C, SECTOR as u32);
    be16(b, 0x10, 1); // consistent: no pending transaction
    be16(b, 0x12, 4);
    be16(b, 0x14, 10);
    text(b, 0x16, 31, &group.name);
    text(b, 0x35, 64, &group.guid.hyphenated().to_string());
    be64(b, 0x75, COMMIT);
    be64(b, 0x7D, COMMIT);
    for (i, c) in counts.iter().enumerate() {
        be32(b, 0x85 + 4 * i, *c);
        be32(b, 0xA1 + 4 * i, *c);
    }
    be64(b, 0xBD, TIMESTAMP);
}

/// A VBLK record: status, flags, type/revision, size of what follows, body.
struct Record {
    flags: u8,
    kind: u8,
    body: Vec<u8>,
}

impl Record {
    fn new(kind: u8) -> Self {
        Record {
            flags: 0,
            kind,
            body: Vec::new(),
        }
    }
    fn vnum(&mut self, v: u64) -> &mut Self {
        let bytes = v.to_be_bytes();
        let skip = bytes.iter().take(7).take_while(|&&b| b == 0).count();
        self.body.push((8 - skip) as u8);
        self.body.extend_from_slice(&bytes[skip..]);
        self
    }
    fn vstr(&mut self, s: &str) -> &mut Self {
        let b = &s.as_bytes()[..s.len().min(255)];
        self.body.push(b.len() as u8);
        self.body.extend_from_slice(b);
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.body.extend_from_slice(b);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.body.resize(self.body.len() + n, 0);
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    fn finish(&self) -> Vec<u8> {
        let mut out = vec![0, 0, self.flags, self.kind];
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn disk_group_record(g: &Group) -> Vec<u8> {
    let mut r = Record::new(0x35);
    r.vnum(g.id)
        .vstr(&g.name)
        .vstr(&g.guid.hyphenated().to_string())
        .zeros(4)
        .u64(COMMIT);
    r.finish()
}

fn disk_record(d: &Disk) -> Vec<u8> {
    let mut r = Record::new(0x34);
    r.vnum(d.id)
        .vstr(&d.name)
        .vstr(&d.guid.hyphenated().to_string())
        .vstr("")
        .zeros(4)
        .u64(COMMIT);
    r.finish()
}

fn volume_record(v: &Volume) -> Vec<u8> {
    let mut state = [0u8; 14];
    text(&mut state, 0, 14, "ACTIVE");
    let mut r = Record::new(0x51);
    r.vnum(v.id)
        .vstr(&v.name)
        .vstr(if v.raid5 { "raid5" } else { "gen" })
        .vstr("")
        .bytes(&state)
        .bytes(&[if v.raid5 { 4 } else { 3 }, 0, v.number, 0, 0, 0, 0])
        .vnum(v.components.len() as u64)
        .u64(COMMIT)
        .u64(0)
        .vnum(v.size)
        .zeros(4)
        .bytes(&[v.partition_type])
        .bytes(v.guid.as_bytes());
    r.finish()
}

fn component_record(c: &Component, volume: u64) -> Vec<u8> {
    let mut r = Record::new(0x32);
    r.vnum(c.id)
        .vstr(&c.name)
        .vstr("ACTIVE")
        .bytes(&[match c.kind {
            ComponentKind::Striped => 1,
            ComponentKind::Spanned => 2,
            ComponentKind::Raid => 3,
        }]);
    r.zeros(4)
        .vnum(c.partitions.len() as u64)
        .u64(COMMIT)
        .zeros(8)
        .vnum(volume)
        .zeros(1);
    if let Some(chunk) = c.chunk {
        r.flags = 0x10;
        r.vnum(chunk).vnum(c.partitions.len() as u64);
    }
    r.finish()
}

fn partition_record(p: &Partition, component: u64, disk: u64) -> Vec<u8> {
    let mut r = Record::new(0x33);
    r.flags = 0x08;
    r.vnum(p.id)
        .vstr(&p.name)
        .zeros(4)
        .u64(COMMIT)
        .u64(p.start)
        .u64(p.volume_offset)
        .vnum(p.size)
        .vnum(component)
        .vnum(disk)
        .vnum(p.index);
    r.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn guid(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    /// Two disks: a spanned volume over both, a striped one over both, a
    /// mirror (two components).
    pub(crate) fn group() -> Group {
        let disk = |id, n: u8| Disk {
            id,
            name: format!("Disk{n}"),
            guid: guid(n),
            signature: 0x100 + u32::from(n),
            sectors: 65536,
            public_start: 63,
            public_size: 65536 - 2048 - 63,
        };
        let part = |id, name: &str, disk, start, size, off, index| Partition {
            id,
            name: name.into(),
            disk,
            start,
            size,
            volume_offset: off,
            index,
        };
        let volume = |id, number, size, components| Volume {
            id,
            name: format!("Volume{number}"),
            guid: guid(0x40 + number),
            number,
            size,
            partition_type: 7,
            raid5: false,
            components,
        };
        Group {
            name: "testDg0".into(),
            guid: guid(0x10),
            host_guid: guid(0x11),
            id: 1,
            disks: vec![disk(2, 1), disk(3, 2)],
            volumes: vec![
                volume(
                    4,
                    1,
                    4096,
                    vec![Component {
                        id: 5,
                        name: "Volume1-01".into(),
                        kind: ComponentKind::Spanned,
                        chunk: None,
                        partitions: vec![
                            part(6, "Disk1-01", 0, 1985, 2048, 0, 0),
                            part(7, "Disk2-01", 1, 1985, 2048, 2048, 1),
                        ],
                    }],
                ),
                volume(
                    8,
                    2,
                    8192,
                    vec![Component {
                        id: 9,
                        name: "Volume2-01".into(),
                        kind: ComponentKind::Striped,
                        chunk: Some(128),
                        partitions: vec![
                            part(10, "Disk1-02", 0, 4033, 4096, 0, 0),
                            part(11, "Disk2-02", 1, 4033, 4096, 0, 1),
                        ],
                    }],
                ),
                volume(
                    12,
                    3,
                    2048,
                    (0..2)
                        .map(|c| Component {
                            id: 13 + 2 * c as u64,
                            name: format!("Volume3-0{}", c + 1),
                            kind: ComponentKind::Spanned,
                            chunk: None,
                            partitions: vec![part(
                                14 + 2 * c as u64,
                                "DiskX-03",
                                c,
                                8129,
                                2048,
                                0,
                                0,
                            )],
                        })
                        .collect(),
                ),
            ],
        }
    }

    fn be(b: &[u8], at: usize, n: usize) -> u64 {
        b[at..at + n]
            .iter()
            .fold(0, |a, &x| (a << 8) | u64::from(x))
    }

    /// The Linux kernel's `ldm_relative`: cumulative size of the
    /// variable-length fields up to and including the one at `base+offset`.
    fn relative(buf: &[u8], base: usize, offset: usize) -> usize {
        let at = base + offset;
        assert!(
            at < buf.len() && at + usize::from(buf[at]) < buf.len(),
            "field past the VBLK"
        );
        usize::from(buf[at]) + offset + 1
    }

    /// The kernel's size check for each record type (`ldm_parse_*`).
    fn kernel_accepts(v: &[u8]) -> bool {
        let size = be(v, 0x14, 4) as usize;
        let flags = v[0x12];
        let r_objid = relative(v, 0x18, 0);
        let r_name = relative(v, 0x18, r_objid);
        match v[0x13] {
            0x32 => {
                let r_vstate = relative(v, 0x18, r_name);
                let r_child = relative(v, 0x1D, r_vstate);
                let r_parent = relative(v, 0x2D, r_child);
                let len = if flags & 0x10 != 0 {
                    let r_stripe = relative(v, 0x2E, r_parent);
                    relative(v, 0x2E, r_stripe)
                } else {
                    r_parent
                };
                len + 22 == size
            }
            0x33 => {
                let r_size = relative(v, 0x34, r_name);
                let r_parent = relative(v, 0x34, r_size);
                let r_disk = relative(v, 0x34, r_parent);
                let len = if flags & 0x08 != 0 {
                    relative(v, 0x34, r_disk)
                } else {
                    r_disk
                };
                len + 28 <= size
            }
            0x34 => {
                let r_diskid = relative(v, 0x18, r_name);
                let r_alt = relative(v, 0x18, r_diskid);
                let id = std::str::from_utf8(&v[0x19 + r_name..0x19 + r_name + 36]).unwrap();
                Uuid::parse_str(id).is_ok() && r_alt + 12 == size
            }
            0x35 => relative(v, 0x18, r_name) + 12 == size,
            0x51 => {
                let r_vtype = relative(v, 0x18, r_name);
                let r_dis = relative(v, 0x18, r_vtype);
                let r_child = relative(v, 0x2D, r_dis);
                let r_size = relative(v, 0x3D, r_child);
                r_size + 58 <= size
            }
            _ => false,
        }
    }

    #[test]
    fn the_database_passes_the_linux_kernels_checks() {
        let g = group();
        for d in 0..g.disks.len() {
            let image = disk_image(&g, d).unwrap();
            let (at, ph) = &image[0];
            assert_eq!(*at, 6 * 512);
            let (cs, region) = &image[1];
            assert_eq!(*cs, (65536 - 2048) * 512);
            // PRIVHEAD: magic, 2.11, public region before the database,
            // the copies at +1856 and +2047 identical.
            assert_eq!(&ph[..8], b"PRIVHEAD");
            assert_eq!((be(ph, 0x0C, 2), be(ph, 0x0E, 2)), (2, 11));
            let (start, size) = (be(ph, 0x11B, 8), be(ph, 0x123, 8));
            let (config_start, config_size) = (be(ph, 0x12B, 8), be(ph, 0x133, 8));
            assert_eq!((config_start, config_size), (65536 - 2048, 2048));
            assert!(size > 0 && start + size <= config_start);
            assert!(Uuid::parse_str(std::str::from_utf8(&ph[0x30..0x30 + 36]).unwrap()).is_ok());
            for s in [1856, 2047] {
                assert_eq!(
                    &region[s * 512..s * 512 + 512],
                    &ph[..],
                    "PRIVHEAD copy {s}"
                );
            }
            // Four identical TOCBLOCKs, bitmaps inside the database.
            let toc = &region[512..1024];
            for s in [1, 2, 2045, 2046] {
                assert_eq!(&region[s * 512..s * 512 + 512], toc, "TOCBLOCK {s}");
            }
            assert_eq!(&toc[..8], b"TOCBLOCK");
            assert_eq!(&toc[0x24..0x2A], b"config");
            assert_eq!(&toc[0x46..0x49], b"log");
            let (b1, b1s) = (be(toc, 0x2E, 8), be(toc, 0x36, 8));
            let (b2, b2s) = (be(toc, 0x50, 8), be(toc, 0x58, 8));
            assert!(b1 + b1s <= config_size && b2 + b2s <= config_size);
            // VMDB: 4.10, consistent, VBLKs within the config bitmap.
            let vmdb = &region[17 * 512..18 * 512];
            assert_eq!(&vmdb[..4], b"VMDB");
            assert_eq!((be(vmdb, 0x12, 2), be(vmdb, 0x14, 2)), (4, 10));
            assert_eq!(be(vmdb, 0x10, 2), 1);
            let (vblk_size, offset, last) = (be(vmdb, 8, 4), be(vmdb, 0x0C, 4), be(vmdb, 4, 4));
            assert_eq!((vblk_size, offset), (128, 512));
            assert!(vblk_size * last <= b1s << 9);
            // Every VBLK slot the kernel scans has the magic, and each
            // record passes its size check; counts match the VMDB's.
            let mut kinds = std::collections::BTreeMap::new();
            for sector in 1..(vblk_size * last) >> 9 {
                for slot in 0..4 {
                    let at = ((17 + sector) * 512 + slot * 128) as usize;
                    let v = &region[at..at + 128];
                    assert_eq!(&v[..4], b"VBLK", "slot at {at}");
                    if be(v, 0x0E, 2) == 1 {
                        assert!(kernel_accepts(v), "record type {:#x} at {at}", v[0x13]);
                        *kinds.entry(v[0x13]).or_insert(0u64) += 1;
                    }
                }
            }
            assert_eq!(kinds.get(&0x35), Some(&1));
            assert_eq!(kinds.get(&0x34).copied(), Some(be(vmdb, 0x91, 4)));
            assert_eq!(kinds.get(&0x33).copied(), Some(be(vmdb, 0x8D, 4)));
            assert_eq!(kinds.get(&0x32).copied(), Some(be(vmdb, 0x89, 4)));
            assert_eq!(kinds.get(&0x51).copied(), Some(be(vmdb, 0x85, 4)));
            // Every disk carries the same database (VMDB and VBLKs).
            let other = disk_image(&g, 1 - d).unwrap();
            assert_eq!(
                &other[1].1[17 * 512..1487 * 512],
                &region[17 * 512..1487 * 512]
            );
            assert_eq!(&region[1487 * 512..1487 * 512 + 4], b"KLOG");
        }
    }

    #[test]
    fn vnums_are_minimal_and_zero_has_one_byte() {
        let mut r = Record::new(0);
        r.vnum(0).vnum(0x1234).vnum(u64::MAX);
        assert_eq!(
            r.body,
            [
                &[1u8, 0][..],
                &[2, 0x12, 0x34],
                &[8, 255, 255, 255, 255, 255, 255, 255, 255]
            ]
            .concat()
        );
    }

    #[test]
    fn checksum_skips_its_own_field() {
        let t = tocblock();
        let sum: u32 = t
            .iter()
            .enumerate()
            .filter(|(i, _)| !(8..12).contains(i))
            .map(|(_, &b)| u32::from(b))
            .sum();
        assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), sum);
    }
}
