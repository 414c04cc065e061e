//! Partition tables: write an MBR or a GPT exactly as a plan declares it,
//! read back what a disk carries, tell whether the two already agree, and
//! clear stale signatures inside declared ranges.
//!
//! For: the bytes of partition tables (LBA 0, GPT headers and entry arrays,
//! EBRs) and nothing else. MBR tables are written with `mbrman`, GPT with
//! `gpt`. Every write is first staged in memory against the real device,
//! checked to fall inside [`table_areas`], compared with what is on disk
//! (so [`table_matches`] is "rewriting would change no byte") and only then
//! applied, so a table writer can never scribble over partition contents.
//!
//! Not for: deciding sizes or offsets (the compiler resolves them into a
//! [`TableSpec`]), refusing foreign disks (the executor compares
//! [`read_table`]'s answer with the plan), or touching partition contents
//! beyond [`clear_signatures`].
//!
//! Layout rules rplan owns, so that compiler, dry-run and executor agree:
//! - MBR logical partitions are chained in the order given, which must be
//!   ascending; each one's EBR sits in the sector just before it
//!   (`start_lba - 1`); the extended container (type 0x0F, in the primary
//!   slot where the first logical partition appears) runs from the first
//!   EBR to the end of the last logical partition. A plan must leave that
//!   sector free before every logical partition.
//! - GPT: 128 entries of 128 bytes, entry `i` is partition number `i + 1`
//!   in the order given; a partition without a GUID gets
//!   [`gpt_partition_guid`] (derived from the disk GUID and number, so
//!   applying twice gives the same bytes); `bootable` sets the
//!   legacy-BIOS-bootable attribute (bit 2).
//! - The 440 bytes of boot code in LBA 0 are kept when the disk already
//!   carries a readable partition table, so a boot loader installed after
//!   a previous apply survives a re-run; anything else in LBA 0 is replaced.

use crate::target::Device;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use uuid::Uuid;

/// Which kind of table, with the identity that tells one disk from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// DOS/MBR with its 32-bit disk signature (what Windows XP's ASR
    /// recreates).
    Mbr { signature: u32 },
    /// GUID partition table with its disk GUID.
    Gpt { disk_guid: Uuid },
}

/// One partition as the plan declares it, in sectors of the table's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpec {
    pub start_lba: u64,
    pub size_lba: u64,
    /// MBR system id (ignored for GPT).
    pub mbr_type: u8,
    /// GPT type GUID (ignored for MBR).
    pub gpt_type: Uuid,
    /// GPT partition GUID; `None` derives one with [`gpt_partition_guid`].
    pub guid: Option<Uuid>,
    /// GPT partition name, at most 36 UTF-16 code units (ignored for MBR).
    pub name: String,
    /// MBR active flag; GPT legacy-BIOS-bootable attribute.
    pub bootable: bool,
    /// MBR only: a logical partition inside the extended container.
    pub logical: bool,
}

/// A whole partition table as the plan declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub kind: TableKind,
    /// Logical sector size the LBAs are counted in; must equal the device's.
    pub sector_size: u32,
    /// In partition-number order (MBR: primaries by slot, logicals in chain
    /// order; GPT: entry order).
    pub partitions: Vec<PartSpec>,
    /// The 440 bytes of MBR boot code to write; `None` keeps the code the
    /// disk has (when it carries a readable table).
    pub boot_code: Option<[u8; 440]>,
    /// MBR: the extended container's layout; `None` is rplan's default
    /// ([`ExtendedLayout::default`]).
    pub extended: Option<ExtendedLayout>,
}

/// How an MBR extended container is laid out around its logical
/// partitions. rplan's default is type 0x0f with each EBR in the sector
/// before its partition, the container ending with the last one; Windows XP
/// and DOS fdisk write type 0x05, EBRs one track (63 sectors) before their
/// partitions, and often end the container at the end of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedLayout {
    /// The container's MBR type: 0x05 or 0x0f.
    pub mbr_type: u8,
    /// Sectors from each EBR to its logical partition, at least 1. The
    /// first EBR is the container's first sector.
    pub ebr_gap: u64,
    /// The sector after the container; `None`: the end of the last logical
    /// partition.
    pub end_lba: Option<u64>,
}

impl Default for ExtendedLayout {
    fn default() -> Self {
        ExtendedLayout {
            mbr_type: MBR_EXTENDED_LBA,
            ebr_gap: 1,
            end_lba: None,
        }
    }
}

/// The plan's description of an extended container found at `ext_start` +
/// `ext_size` sectors with type `ext_type`, holding `logicals` as
/// `(EBR sector if known, start, size)` in chain order: `Ok(None)` when it is
/// rplan's default layout, `Err` saying why a plan cannot describe it. An
/// unknown EBR sector (an `sfdisk -d` dump has none) is taken to be as far
/// before its partition as the first EBR is.
pub fn describe_extended(
    ext_start: u64,
    ext_size: u64,
    ext_type: u8,
    logicals: &[(Option<u64>, u64, u64)],
) -> Result<Option<ExtendedLayout>, String> {
    let Some(&(_, first_start, _)) = logicals.first() else {
        return Err(format!(
            "an extended container (sectors {ext_start}+{ext_size}) without logical partitions is left out"
        ));
    };
    if !matches!(ext_type, 0x05 | 0x0f) {
        return Err(format!(
            "the extended container's type {ext_type:#04x} is written as 0x0f (rplan writes 0x05 or 0x0f)"
        ));
    }
    let gap = first_start
        .checked_sub(ext_start)
        .filter(|&g| g > 0)
        .ok_or_else(|| {
            format!("the first logical partition does not start after its extended container's start (sector {ext_start})")
        })?;
    let mut prev_end = ext_start;
    for &(ebr, start, size) in logicals {
        let ebr = ebr.unwrap_or(start.saturating_sub(gap));
        if start.checked_sub(ebr) != Some(gap) || ebr < prev_end {
            return Err(format!(
                "the EBRs lie at different distances from their logical partitions (the first {gap} sectors before, \
                 the one of the partition at sector {start} at sector {ebr}); rplan writes each {gap} sectors before"
            ));
        }
        prev_end = start.saturating_add(size);
    }
    let end = ext_start.saturating_add(ext_size);
    if end < prev_end {
        return Err("the last logical partition runs past its extended container".to_string());
    }
    let layout = ExtendedLayout {
        mbr_type: ext_type,
        ebr_gap: gap,
        end_lba: (end != prev_end).then_some(end),
    };
    Ok((layout != ExtendedLayout::default()).then_some(layout))
}

/// A partition found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingPart {
    /// Linux numbering: MBR primaries 1-4 by slot, logicals from 5 in chain
    /// order; GPT entry index + 1.
    pub number: u32,
    pub start_lba: u64,
    pub size_lba: u64,
    /// MBR system id; 0 on GPT.
    pub mbr_type: u8,
    /// GPT type GUID; nil on MBR.
    pub gpt_type: Uuid,
    /// GPT partition GUID; `None` on MBR.
    pub guid: Option<Uuid>,
    /// GPT partition name; empty on MBR.
    pub name: String,
    pub bootable: bool,
    pub logical: bool,
}

/// The partition table a disk carries. MBR extended containers are not
/// listed as partitions (rplan lays them out itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingTable {
    pub kind: TableKind,
    /// The device's logical sector size, which LBAs count in.
    pub sector_size: u32,
    pub partitions: Vec<ExistingPart>,
    /// Damage that did not prevent reading, e.g. an invalid backup GPT
    /// header or one not at the end of the disk.
    pub problems: Vec<String>,
    /// MBR: the extended container's layout when it is not rplan's default
    /// and a plan can describe it (when not, a problem says why).
    pub extended: Option<ExtendedLayout>,
}

/// Why a table could not be written or read.
#[derive(Debug)]
pub enum TableError {
    /// The spec cannot be written on this device as it stands.
    Invalid(String),
    /// The spec counts sectors of another size than the device has.
    SectorSizeMismatch {
        spec: u32,
        device: u32,
    },
    /// The disk carries a table that cannot be read consistently.
    Corrupt(String),
    /// A bug: the writer wanted to write outside the table areas. Nothing
    /// was written.
    Internal(String),
    Io(io::Error),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::Invalid(m) => write!(f, "invalid partition table: {m}"),
            TableError::SectorSizeMismatch { spec, device } => write!(
                f,
                "the plan counts {spec}-byte sectors but the target has {device}-byte sectors"
            ),
            TableError::Corrupt(m) => write!(f, "corrupt partition table: {m}"),
            TableError::Internal(m) => write!(f, "internal error in the table writer: {m}"),
            TableError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TableError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for TableError {
    fn from(e: io::Error) -> Self {
        TableError::Io(e)
    }
}

fn invalid(m: impl Into<String>) -> TableError {
    TableError::Invalid(m.into())
}

const MBR_EXTENDED_LBA: u8 = 0x0f;
const MBR_PROTECTIVE: u8 = 0xee;
const GPT_ENTRIES: u64 = 128;
const GPT_ENTRY_SIZE: u64 = 128;
const GPT_NAME_UNITS: usize = 36;
const GPT_ATTR_LEGACY_BOOTABLE: u64 = 1 << 2;
/// The most logical partitions read_table follows before calling the EBR
/// chain a loop.
const MAX_EBR_CHAIN: usize = 1024;

fn is_extended_type(t: u8) -> bool {
    matches!(t, 0x05 | 0x0f | 0x85)
}

fn gpt_array_sectors(ss: u64) -> u64 {
    (GPT_ENTRIES * GPT_ENTRY_SIZE).div_ceil(ss)
}

/// The GUID of GPT partition `number` (1-based) when the plan gives none:
/// a version-8 UUID made from SHA-256 over the disk GUID and the number, so
/// the same plan always writes the same bytes.
pub fn gpt_partition_guid(disk_guid: Uuid, number: u32) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"rplan gpt partition guid\0");
    h.update(disk_guid.as_bytes());
    h.update(number.to_le_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// What the MBR writer lays out besides the partitions themselves.
struct MbrLayout {
    /// Primary slots in order: a partition index, or the extended container
    /// `(start_lba, size_lba)`.
    slots: Vec<MbrSlot>,
    /// Indices of the logical partitions, in chain order.
    logicals: Vec<usize>,
    /// The extended container's type and EBR distance.
    ext_type: u8,
    ebr_gap: u64,
}

enum MbrSlot {
    Primary(usize),
    Extended { start: u64, size: u64 },
}

/// Check `spec` against a device of `disk_len` bytes and `device_ss`-byte
/// sectors; for MBR, also lay out the extended container.
fn validate(
    spec: &TableSpec,
    disk_len: u64,
    device_ss: u32,
) -> Result<Option<MbrLayout>, TableError> {
    if spec.sector_size != device_ss {
        return Err(TableError::SectorSizeMismatch {
            spec: spec.sector_size,
            device: device_ss,
        });
    }
    if spec.sector_size != 512 && spec.sector_size != 4096 {
        return Err(invalid(format!(
            "sector size {} (512 or 4096 only)",
            spec.sector_size
        )));
    }
    let ss = u64::from(spec.sector_size);
    let total = disk_len / ss;

    // Ranges (first, last inclusive, what) that must not overlap.
    let mut used: Vec<(u64, u64, String)> = Vec::new();
    for (i, p) in spec.partitions.iter().enumerate() {
        let n = i + 1;
        if p.size_lba == 0 {
            return Err(invalid(format!("partition {n} has size 0")));
        }
        let Some(end) = p.start_lba.checked_add(p.size_lba) else {
            return Err(invalid(format!("partition {n} overflows")));
        };
        if end > total {
            return Err(invalid(format!(
                "partition {n} ends at sector {end}, past the end of the disk ({total} sectors)"
            )));
        }
        used.push((p.start_lba, end - 1, format!("partition {n}")));
    }

    let layout = match spec.kind {
        TableKind::Mbr { .. } => Some(validate_mbr(spec, total, &mut used)?),
        TableKind::Gpt { disk_guid } => {
            validate_gpt(spec, disk_guid, total, ss)?;
            None
        }
    };

    used.sort();
    for w in used.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(invalid(format!("{} overlaps {}", w[1].2, w[0].2)));
        }
    }
    Ok(layout)
}

fn validate_mbr(
    spec: &TableSpec,
    total: u64,
    used: &mut Vec<(u64, u64, String)>,
) -> Result<MbrLayout, TableError> {
    let limit = 1u64 << 32;
    let ext = spec.extended.unwrap_or_default();
    let gap = ext.ebr_gap;
    if gap == 0 {
        return Err(invalid("an EBR distance of 0 sectors"));
    }
    if !matches!(ext.mbr_type, 0x05 | 0x0f) {
        return Err(invalid(format!(
            "extended container type {:#04x} (0x05 or 0x0f only)",
            ext.mbr_type
        )));
    }
    let mut bootable = 0;
    let mut slots = Vec::new();
    let mut logicals = Vec::new();
    for (i, p) in spec.partitions.iter().enumerate() {
        let n = i + 1;
        if p.start_lba + p.size_lba > limit {
            return Err(invalid(format!(
                "partition {n} ends past sector 2^32, which MBR cannot address"
            )));
        }
        if p.mbr_type == 0 || is_extended_type(p.mbr_type) || p.mbr_type == MBR_PROTECTIVE {
            return Err(invalid(format!(
                "partition {n} has MBR type {:#04x}, which is reserved",
                p.mbr_type
            )));
        }
        if p.bootable {
            bootable += 1;
        }
        if p.logical {
            if p.bootable {
                return Err(invalid(format!(
                    "partition {n} is logical and cannot be bootable"
                )));
            }
            if p.start_lba <= gap {
                return Err(invalid(format!(
                    "logical partition {n} starts at sector {}, leaving no room for its EBR",
                    p.start_lba
                )));
            }
            if let Some(&prev) = logicals.last() {
                let prev: &PartSpec = &spec.partitions[prev];
                if p.start_lba <= prev.start_lba {
                    return Err(invalid(format!(
                        "logical partition {n} must start after the logical partition before it"
                    )));
                }
            }
            if logicals.is_empty() {
                slots.push(MbrSlot::Extended { start: 0, size: 0 });
            }
            logicals.push(i);
            used.push((
                p.start_lba - gap,
                p.start_lba - gap,
                format!("the EBR of partition {n}"),
            ));
        } else {
            if p.start_lba < 1 {
                return Err(invalid(format!(
                    "partition {n} overlaps the MBR in sector 0"
                )));
            }
            slots.push(MbrSlot::Primary(i));
        }
    }
    if bootable > 1 {
        return Err(invalid(
            "more than one partition is bootable (the MBR boot code wants exactly one active)",
        ));
    }
    if slots.len() > 4 {
        return Err(invalid(format!(
            "{} primary slots needed (primaries plus the extended container); MBR has 4",
            slots.len()
        )));
    }
    if let (Some(&first), Some(&last)) = (logicals.first(), logicals.last()) {
        let start = spec.partitions[first].start_lba - gap;
        let last = &spec.partitions[last];
        let last_end = last.start_lba + last.size_lba;
        let end = ext.end_lba.unwrap_or(last_end);
        if end < last_end || end > total.min(limit) {
            return Err(invalid(format!(
                "the extended container's end (sector {end}) is before its last logical partition's ({last_end}) or past the disk's"
            )));
        }
        let size = end - start;
        for slot in &mut slots {
            if let MbrSlot::Extended { start: s, size: z } = slot {
                *s = start;
                *z = size;
            }
        }
        for (i, p) in spec.partitions.iter().enumerate() {
            if !p.logical && p.start_lba < start + size && start < p.start_lba + p.size_lba {
                return Err(invalid(format!(
                    "primary partition {} lies inside the extended container (sectors {start}..{})",
                    i + 1,
                    start + size
                )));
            }
        }
    }
    Ok(MbrLayout {
        slots,
        logicals,
        ext_type: ext.mbr_type,
        ebr_gap: gap,
    })
}

fn validate_gpt(spec: &TableSpec, disk_guid: Uuid, total: u64, ss: u64) -> Result<(), TableError> {
    if disk_guid.is_nil() {
        return Err(invalid("the disk GUID is nil"));
    }
    if spec.partitions.len() as u64 > GPT_ENTRIES {
        return Err(invalid(format!(
            "{} partitions; the GPT has {GPT_ENTRIES} entries",
            spec.partitions.len()
        )));
    }
    let array = gpt_array_sectors(ss);
    if total < 2 * array + 4 {
        return Err(invalid(format!(
            "a disk of {total} sectors is too small for a GPT"
        )));
    }
    let first_usable = 2 + array;
    let last_usable = total - 2 - array;
    let mut guids: Vec<Uuid> = Vec::new();
    for (i, p) in spec.partitions.iter().enumerate() {
        let n = i + 1;
        if p.gpt_type.is_nil() {
            return Err(invalid(format!(
                "partition {n} has the nil (unused) type GUID"
            )));
        }
        if p.name.encode_utf16().count() > GPT_NAME_UNITS {
            return Err(invalid(format!(
                "partition {n}'s name is longer than {GPT_NAME_UNITS} UTF-16 units"
            )));
        }
        if p.start_lba < first_usable || p.start_lba + p.size_lba - 1 > last_usable {
            return Err(invalid(format!(
                "partition {n} (sectors {}..{}) is outside the usable sectors {first_usable}..={last_usable}",
                p.start_lba,
                p.start_lba + p.size_lba
            )));
        }
        let guid = p
            .guid
            .unwrap_or_else(|| gpt_partition_guid(disk_guid, n as u32));
        if guid.is_nil() {
            return Err(invalid(format!("partition {n} has the nil GUID")));
        }
        if guids.contains(&guid) {
            return Err(invalid(format!(
                "partition {n}'s GUID {guid} is used twice"
            )));
        }
        guids.push(guid);
    }
    Ok(())
}

/// The byte ranges `(offset, len)` that [`write_table`] may write for
/// `spec` on a disk of `disk_len` bytes: LBA 0 and, for MBR, each logical
/// partition's EBR and LBA 1 when no partition covers it (where a stale GPT
/// header is erased); for GPT, the primary header and entries up to the
/// first usable sector and the backup entries and header after the last.
/// Meant for a spec that validates; sorted, not merged.
pub fn table_areas(spec: &TableSpec, disk_len: u64) -> Vec<(u64, u64)> {
    let ss = u64::from(spec.sector_size.max(1));
    let total = disk_len / ss;
    let mut areas = Vec::new();
    match spec.kind {
        TableKind::Mbr { .. } => {
            areas.push((0, ss));
            let lba1_free = !spec
                .partitions
                .iter()
                .any(|p| p.start_lba <= 1 && 1 < p.start_lba.saturating_add(p.size_lba));
            if lba1_free && total > 1 {
                areas.push((ss, ss));
            }
            let gap = spec.extended.unwrap_or_default().ebr_gap;
            for p in spec.partitions.iter().filter(|p| p.logical) {
                areas.push((p.start_lba.saturating_sub(gap) * ss, ss));
            }
        }
        TableKind::Gpt { .. } => {
            let array = gpt_array_sectors(ss);
            areas.push((0, (2 + array) * ss));
            let back = total.saturating_sub(1 + array);
            areas.push((back * ss, (total - back) * ss));
        }
    }
    areas.sort();
    areas
}

/// Write `spec`'s partition table to `dev`, touching only
/// [`table_areas`]; sectors that already hold the right bytes are not
/// rewritten. Syncs the device when anything was written.
pub fn write_table(dev: &mut dyn Device, spec: &TableSpec) -> Result<(), TableError> {
    let changes = plan(dev, spec)?;
    for (offset, bytes) in &changes {
        dev.write_at(bytes, *offset)?;
    }
    if !changes.is_empty() {
        dev.sync()?;
    }
    Ok(())
}

/// Whether `dev` already carries exactly `spec`'s table: writing it would
/// change no byte. Errors if the spec cannot be written on this device.
pub fn table_matches(dev: &dyn Device, spec: &TableSpec) -> Result<bool, TableError> {
    Ok(plan(dev, spec)?.is_empty())
}

/// Stage the table in memory over `dev` and return the sectors that differ
/// from the disk, coalesced into `(offset, bytes)` runs.
fn plan(dev: &dyn Device, spec: &TableSpec) -> Result<Vec<(u64, Vec<u8>)>, TableError> {
    let layout = validate(spec, dev.len(), dev.sector_size())?;
    let keep_boot_code = match (&spec.boot_code, read_table(dev)) {
        (Some(code), _) => {
            let mut lba0 = [0u8; 512];
            lba0[..440].copy_from_slice(code);
            Some(lba0)
        }
        (None, Ok(Some(_))) => {
            let mut lba0 = [0u8; 512];
            dev.read_at(&mut lba0, 0)?;
            Some(lba0)
        }
        _ => None,
    };
    let mut staged = Staged::new(dev, spec.sector_size);
    // LBA 0 is rewritten whole: on 4096-byte sectors nothing stale is left
    // behind the 512-byte MBR.
    staged.write_all_at(&vec![0u8; spec.sector_size as usize], 0)?;
    match (spec.kind, layout) {
        (TableKind::Mbr { signature }, Some(layout)) => stage_mbr(
            &mut staged,
            spec,
            signature,
            &layout,
            keep_boot_code.as_ref(),
        )?,
        (TableKind::Gpt { disk_guid }, _) => {
            stage_gpt(&mut staged, spec, disk_guid, keep_boot_code.as_ref())?
        }
        (TableKind::Mbr { .. }, None) => {
            return Err(TableError::Internal("MBR without a layout".into()))
        }
    }
    let changes = staged.changes()?;
    let areas = table_areas(spec, dev.len());
    for (offset, bytes) in &changes {
        let end = offset + bytes.len() as u64;
        let mut at = *offset;
        while at < end {
            let Some(&(a, l)) = areas.iter().find(|&&(a, l)| a <= at && at < a + l) else {
                return Err(TableError::Internal(format!(
                    "would write byte {at}, outside the table areas {areas:?}"
                )));
            };
            at = a + l;
        }
    }
    Ok(changes)
}

/// CHS address of `lba` in the customary 255-head, 63-sector geometry,
/// saturating at 1023/254/63 as every tool does past 8 GiB.
fn chs(lba: u64) -> (u16, u8, u8) {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return (1023, 254, 63);
    }
    (
        cylinder as u16,
        ((lba / SECTORS) % HEADS) as u8,
        (lba % SECTORS + 1) as u8,
    )
}

fn mbrman_chs(lba: u64) -> mbrman::CHS {
    let (c, h, s) = chs(lba);
    mbrman::CHS::new(c, h, s)
}

fn mbrman_entry(
    bootable: bool,
    sys: u8,
    start: u64,
    size: u64,
) -> Result<mbrman::MBRPartitionEntry, TableError> {
    let (Ok(starting_lba), Ok(sectors)) = (u32::try_from(start), u32::try_from(size)) else {
        return Err(invalid(
            "a partition does not fit MBR's 32-bit sector numbers",
        ));
    };
    Ok(mbrman::MBRPartitionEntry {
        boot: if bootable {
            mbrman::BOOT_ACTIVE
        } else {
            mbrman::BOOT_INACTIVE
        },
        first_chs: mbrman_chs(start),
        sys,
        last_chs: mbrman_chs(start + size - 1),
        starting_lba,
        sectors,
    })
}

/// A 16-byte MBR/EBR entry. `rel_start` is what the entry stores (relative
/// for EBRs); `abs_start` is where it really is, for the CHS fields.
fn encode_entry(
    sys: u8,
    rel_start: u64,
    abs_start: u64,
    size: u64,
) -> Result<[u8; 16], TableError> {
    let (Ok(rel), Ok(sectors)) = (u32::try_from(rel_start), u32::try_from(size)) else {
        return Err(invalid(
            "an EBR entry does not fit MBR's 32-bit sector numbers",
        ));
    };
    let mut e = [0u8; 16];
    let put_chs = |out: &mut [u8], lba: u64| {
        let (c, h, s) = chs(lba);
        out[0] = h;
        out[1] = (s & 0x3f) | (((c >> 8) as u8 & 0x03) << 6);
        out[2] = c as u8;
    };
    put_chs(&mut e[1..4], abs_start);
    e[4] = sys;
    put_chs(&mut e[5..8], abs_start + size - 1);
    e[8..12].copy_from_slice(&rel.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    Ok(e)
}

fn stage_mbr(
    st: &mut Staged<'_>,
    spec: &TableSpec,
    signature: u32,
    layout: &MbrLayout,
    keep: Option<&[u8; 512]>,
) -> Result<(), TableError> {
    let mbr_err = |e: mbrman::Error| TableError::Io(io::Error::other(format!("mbrman: {e}")));
    let mut header = mbrman::MBRHeader::new(signature.to_le_bytes());
    if let Some(lba0) = keep {
        header.bootstrap_code.copy_from_slice(&lba0[..440]);
    }
    let mut extended = None;
    for (i, slot) in layout.slots.iter().enumerate() {
        let entry = match *slot {
            MbrSlot::Primary(p) => {
                let p = &spec.partitions[p];
                mbrman_entry(p.bootable, p.mbr_type, p.start_lba, p.size_lba)?
            }
            MbrSlot::Extended { start, size } => {
                extended = Some(start);
                mbrman_entry(false, layout.ext_type, start, size)?
            }
        };
        let Some(e) = header.get_mut(i + 1) else {
            return Err(TableError::Internal("more than four primary slots".into()));
        };
        *e = entry;
    }
    st.seek(SeekFrom::Start(0))?;
    header.write_into(st).map_err(mbr_err)?;

    // EBRs are written here rather than by mbrman: mbrman 0.6 computes an
    // EBR's byte offset in 32 bits and would misplace any EBR beyond 4 GiB.
    if let Some(ext_start) = extended {
        let ss = u64::from(spec.sector_size);
        for (k, &li) in layout.logicals.iter().enumerate() {
            let p = &spec.partitions[li];
            let gap = layout.ebr_gap;
            let ebr = p.start_lba - gap;
            let mut sector = vec![0u8; ss as usize];
            sector[446..462].copy_from_slice(&encode_entry(
                p.mbr_type,
                gap,
                p.start_lba,
                p.size_lba,
            )?);
            if let Some(&next) = layout.logicals.get(k + 1) {
                let n = &spec.partitions[next];
                let next_ebr = n.start_lba - gap;
                // Linux and Windows both link with type 0x05 and a size
                // covering the next EBR through the end of its partition.
                sector[462..478].copy_from_slice(&encode_entry(
                    0x05,
                    next_ebr - ext_start,
                    next_ebr,
                    n.start_lba + n.size_lba - next_ebr,
                )?);
            }
            sector[510] = 0x55;
            sector[511] = 0xaa;
            st.write_all_at(&sector, ebr * ss)?;
        }
    }

    // A GPT header left in LBA 1 by an earlier table would make tools see
    // two tables; erase it unless a partition owns that sector.
    let ss = u64::from(spec.sector_size);
    let lba1_free = !spec
        .partitions
        .iter()
        .any(|p| p.start_lba <= 1 && 1 < p.start_lba + p.size_lba);
    if lba1_free && st.len >= 2 * ss {
        let mut sig = [0u8; 8];
        st.read_exact_at(&mut sig, ss)?;
        if &sig == b"EFI PART" {
            st.write_all_at(&vec![0u8; ss as usize], ss)?;
        }
    }
    Ok(())
}

fn stage_gpt(
    st: &mut Staged<'_>,
    spec: &TableSpec,
    disk_guid: Uuid,
    keep: Option<&[u8; 512]>,
) -> Result<(), TableError> {
    let gpt_err = |e: gpt::GptError| TableError::Io(io::Error::other(format!("gpt: {e}")));
    let ss = u64::from(spec.sector_size);
    let total = st.len / ss;
    let mut pmbr =
        gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(total - 1).unwrap_or(u32::MAX));
    if let Some(lba0) = keep {
        let mut code = [0u8; 440];
        code.copy_from_slice(&lba0[..440]);
        pmbr.set_bootcode(code);
    }
    pmbr.overwrite_lba0(st)
        .map_err(|e| TableError::Io(io::Error::other(format!("gpt: {e}"))))?;

    let lb = match spec.sector_size {
        512 => gpt::disk::LogicalBlockSize::Lb512,
        4096 => gpt::disk::LogicalBlockSize::Lb4096,
        other => return Err(invalid(format!("sector size {other}"))),
    };
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .create_from_device(&mut *st, Some(disk_guid))
        .map_err(gpt_err)?;
    let mut entries = BTreeMap::new();
    for (i, p) in spec.partitions.iter().enumerate() {
        let number = i as u32 + 1;
        entries.insert(
            number,
            gpt::partition::Partition {
                part_type_guid: gpt::partition_types::Type {
                    guid: p.gpt_type,
                    os: gpt::partition_types::OperatingSystem::None,
                },
                part_guid: p
                    .guid
                    .unwrap_or_else(|| gpt_partition_guid(disk_guid, number)),
                first_lba: p.start_lba,
                last_lba: p.start_lba + p.size_lba - 1,
                flags: if p.bootable {
                    GPT_ATTR_LEGACY_BOOTABLE
                } else {
                    0
                },
                name: p.name.clone(),
            },
        );
    }
    disk.update_partitions(entries).map_err(gpt_err)?;
    disk.write_inplace().map_err(gpt_err)?;
    Ok(())
}

/// Read the partition table on `dev`: `None` for a disk without one (no
/// 0x55AA in LBA 0). A protective MBR (type 0xEE) means GPT, which needs a
/// valid primary or backup header.
pub fn read_table(dev: &dyn Device) -> Result<Option<ExistingTable>, TableError> {
    if dev.len() < 512 {
        return Ok(None);
    }
    let mut lba0 = [0u8; 512];
    dev.read_at(&mut lba0, 0)?;
    if lba0[510..512] != [0x55, 0xaa] {
        return Ok(None);
    }
    let header = mbrman::MBRHeader::read_from(&mut Cursor::new(&lba0[..])).map_err(|e| {
        TableError::Corrupt(format!(
            "LBA 0 ends in 0x55AA but holds no valid MBR ({e}); a whole-disk filesystem?"
        ))
    })?;
    let signature = u32::from_le_bytes(header.disk_signature);
    if header.iter().any(|(_, e)| e.sys == MBR_PROTECTIVE) {
        return read_gpt(dev).map(Some);
    }
    read_mbr(dev, &header, signature).map(Some)
}

/// A GPT whose protective MBR is gone (LBA 0 wiped or overwritten): gdisk
/// and wipefs still find it by its primary (LBA 1) or backup (last LBA)
/// header, and so does rplan, so that such a disk never counts as blank.
pub fn read_headerless_gpt(dev: &dyn Device) -> Option<ExistingTable> {
    let ss = u64::from(dev.sector_size());
    let last = (dev.len() / ss).checked_sub(1)?;
    let has_header = |lba: u64| {
        let mut magic = [0u8; 8];
        lba.checked_mul(ss)
            .is_some_and(|at| dev.read_at(&mut magic, at).is_ok())
            && &magic == b"EFI PART"
    };
    if !has_header(1) && !has_header(last) {
        return None;
    }
    read_gpt(dev).ok()
}

/// One raw MBR/EBR entry.
struct RawEntry {
    boot: u8,
    sys: u8,
    start: u64,
    size: u64,
}

fn parse_entry(e: &[u8]) -> RawEntry {
    let u32_at = |o: usize| u32::from_le_bytes([e[o], e[o + 1], e[o + 2], e[o + 3]]);
    RawEntry {
        boot: e[0],
        sys: e[4],
        start: u64::from(u32_at(8)),
        size: u64::from(u32_at(12)),
    }
}

fn read_mbr(
    dev: &dyn Device,
    header: &mbrman::MBRHeader,
    signature: u32,
) -> Result<ExistingTable, TableError> {
    let ss = u64::from(dev.sector_size());
    let total = dev.len() / ss;
    let mut partitions = Vec::new();
    let mut logicals = Vec::new();
    let mut problems = Vec::new();
    let mut seen_extended = false;
    let mut extended = None;
    for (slot, e) in header.iter() {
        if e.is_unused() {
            continue;
        }
        let (start, size) = (u64::from(e.starting_lba), u64::from(e.sectors));
        if start + size > total {
            problems.push(format!(
                "partition {slot} (sectors {start}+{size}) runs past the end of the disk ({total} sectors)"
            ));
        }
        if e.is_extended() {
            if seen_extended {
                problems.push(format!(
                    "ignoring a second extended partition in slot {slot}"
                ));
                continue;
            }
            seen_extended = true;
            logicals = read_ebr_chain(dev, start, size)?;
            let chain: Vec<(Option<u64>, u64, u64)> = logicals
                .iter()
                .map(|&(ebr, start, size, _)| (Some(ebr), start, size))
                .collect();
            match describe_extended(start, size, e.sys, &chain) {
                Ok(layout) => extended = layout,
                // An empty container is nothing a plan needs to say.
                Err(_) if chain.is_empty() => {}
                Err(why) => problems.push(why),
            }
            continue;
        }
        partitions.push(ExistingPart {
            number: slot as u32,
            start_lba: start,
            size_lba: size,
            mbr_type: e.sys,
            gpt_type: Uuid::nil(),
            guid: None,
            name: String::new(),
            bootable: e.is_active(),
            logical: false,
        });
    }
    for (k, (_, start, size, sys)) in logicals.into_iter().enumerate() {
        partitions.push(ExistingPart {
            number: 5 + k as u32,
            start_lba: start,
            size_lba: size,
            mbr_type: sys,
            gpt_type: Uuid::nil(),
            guid: None,
            name: String::new(),
            bootable: false,
            logical: true,
        });
    }
    Ok(ExistingTable {
        kind: TableKind::Mbr { signature },
        sector_size: dev.sector_size(),
        partitions,
        problems,
        extended,
    })
}

/// Follow the EBR chain of the extended partition at `ext_start`; returns
/// `(EBR sector, start, size, type)` per logical partition. Written by hand (not
/// mbrman) so that every offset from the disk is checked before use.
fn read_ebr_chain(
    dev: &dyn Device,
    ext_start: u64,
    ext_size: u64,
) -> Result<Vec<(u64, u64, u64, u8)>, TableError> {
    let ss = u64::from(dev.sector_size());
    let total = dev.len() / ss;
    let ext_end = ext_start + ext_size;
    let mut out = Vec::new();
    let mut ebr = ext_start;
    let mut sector = [0u8; 512];
    loop {
        if out.len() >= MAX_EBR_CHAIN {
            return Err(TableError::Corrupt(format!(
                "more than {MAX_EBR_CHAIN} EBRs (a loop in the chain?)"
            )));
        }
        if ebr >= total {
            return Err(TableError::Corrupt(format!(
                "an EBR at sector {ebr} is past the end of the disk"
            )));
        }
        dev.read_at(&mut sector, ebr * ss)?;
        if sector[510..512] != [0x55, 0xaa] {
            if ebr == ext_start {
                // An empty extended partition need not hold an EBR.
                return Ok(out);
            }
            return Err(TableError::Corrupt(format!(
                "the EBR at sector {ebr} has no 0x55AA"
            )));
        }
        let this = parse_entry(&sector[446..462]);
        let link = parse_entry(&sector[462..478]);
        if this.boot != 0 && this.boot != 0x80 {
            return Err(TableError::Corrupt(format!(
                "the EBR at sector {ebr} has an invalid boot flag {:#04x}",
                this.boot
            )));
        }
        if this.sys != 0 {
            let start = ebr + this.start;
            if start + this.size > ext_end {
                return Err(TableError::Corrupt(format!(
                    "the logical partition of the EBR at sector {ebr} runs past its extended partition"
                )));
            }
            out.push((ebr, start, this.size, this.sys));
        }
        if !is_extended_type(link.sys) || link.start == 0 {
            return Ok(out);
        }
        let next = ext_start + link.start;
        if next <= ebr || next >= ext_end {
            return Err(TableError::Corrupt(format!(
                "the EBR at sector {ebr} links to sector {next}, not forward inside its extended partition"
            )));
        }
        ebr = next;
    }
}

/// A GPT header that passed every check, with its entry array.
struct GptHeader {
    alternate_lba: u64,
    disk_guid: Uuid,
    entries: Vec<u8>,
    entry_size: u64,
}

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Read and fully check the GPT header at `lba` (signature, header CRC,
/// its own LBA, sane entry geometry, entry-array CRC). The `gpt` crate
/// trusts more than this (it never checks the entry CRC), hence by hand.
fn read_gpt_header(dev: &dyn Device, lba: u64, ss: u64) -> Result<GptHeader, String> {
    let total = dev.len() / ss;
    if lba == 0 || lba >= total {
        return Err(format!("LBA {lba} is outside the disk"));
    }
    let mut sector = vec![0u8; ss as usize];
    dev.read_at(&mut sector, lba * ss)
        .map_err(|e| e.to_string())?;
    if &sector[..8] != b"EFI PART" {
        return Err("no \"EFI PART\" signature".into());
    }
    let u32_at =
        |o: usize| u32::from_le_bytes([sector[o], sector[o + 1], sector[o + 2], sector[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sector[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let header_size = u64::from(u32_at(12));
    if header_size < 92 || header_size > ss {
        return Err(format!("header size {header_size} is invalid"));
    }
    let stored_crc = u32_at(16);
    let mut copy = sector[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    if CRC32.checksum(&copy) != stored_crc {
        return Err("header CRC mismatch".into());
    }
    let my_lba = u64_at(24);
    if my_lba != lba {
        return Err(format!("header at LBA {lba} says it is at LBA {my_lba}"));
    }
    let mut guid = [0u8; 16];
    guid.copy_from_slice(&sector[56..72]);
    let entries_lba = u64_at(72);
    let count = u64::from(u32_at(80));
    let entry_size = u64::from(u32_at(84));
    if entry_size < 128 || entry_size % 8 != 0 || entry_size > 4096 {
        return Err(format!("entry size {entry_size} is invalid"));
    }
    // 64 KiB of entries is far more than any real table (128 × 128 bytes
    // is the norm) and keeps a hostile header from making us allocate much.
    let bytes = count * entry_size;
    if count == 0 || bytes > 64 * 1024 {
        return Err(format!(
            "{count} entries of {entry_size} bytes is implausible"
        ));
    }
    let array_end = entries_lba
        .checked_mul(ss)
        .and_then(|o| o.checked_add(bytes));
    if entries_lba == 0 || array_end.is_none_or(|end| end > dev.len()) {
        return Err(format!(
            "entry array at LBA {entries_lba} is outside the disk"
        ));
    }
    let mut entries = vec![0u8; bytes as usize];
    dev.read_at(&mut entries, entries_lba * ss)
        .map_err(|e| e.to_string())?;
    if CRC32.checksum(&entries) != u32_at(88) {
        return Err("partition entry array CRC mismatch".into());
    }
    Ok(GptHeader {
        alternate_lba: u64_at(32),
        disk_guid: Uuid::from_bytes_le(guid),
        entries,
        entry_size,
    })
}

fn read_gpt(dev: &dyn Device) -> Result<ExistingTable, TableError> {
    let ss = u64::from(dev.sector_size());
    let total = dev.len() / ss;
    let last = total.saturating_sub(1);
    let mut problems = Vec::new();
    let primary = read_gpt_header(dev, 1, ss);
    let backup_lba = match &primary {
        Ok(h) => h.alternate_lba,
        Err(_) => last,
    };
    let backup = read_gpt_header(dev, backup_lba, ss);
    let header = match (primary, backup) {
        (Ok(p), Ok(_)) => p,
        (Ok(p), Err(why)) => {
            problems.push(format!("backup GPT header at LBA {backup_lba}: {why}"));
            p
        }
        (Err(why), Ok(b)) => {
            problems.push(format!("primary GPT header: {why}; using the backup"));
            b
        }
        (Err(why), Err(_)) => {
            // A GPT made for the other sector size is a common mix-up
            // (image copied between 512e and 4Kn disks); say so.
            let other = if ss == 512 { 4096 } else { 512 };
            if read_gpt_header(dev, 1, other).is_ok() {
                return Err(TableError::Corrupt(format!(
                    "the GPT was written for {other}-byte sectors but the target has {ss}-byte sectors"
                )));
            }
            return Err(TableError::Corrupt(format!(
                "protective MBR but no valid GPT header (primary: {why})"
            )));
        }
    };
    if backup_lba != last {
        problems.push(format!(
            "the backup GPT header is at LBA {backup_lba}, not at the last LBA {last} (disk resized?)"
        ));
    }
    let mut partitions = Vec::new();
    for (i, e) in header
        .entries
        .chunks_exact(header.entry_size as usize)
        .enumerate()
    {
        let mut b = [0u8; 16];
        b.copy_from_slice(&e[0..16]);
        let gpt_type = Uuid::from_bytes_le(b);
        if gpt_type.is_nil() {
            continue;
        }
        b.copy_from_slice(&e[16..32]);
        let guid = Uuid::from_bytes_le(b);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&e[o..o + 8]);
            u64::from_le_bytes(x)
        };
        let (first, last_lba, attrs) = (u64_at(32), u64_at(40), u64_at(48));
        if last_lba < first {
            return Err(TableError::Corrupt(format!(
                "GPT entry {} ends (LBA {last_lba}) before it starts (LBA {first})",
                i + 1
            )));
        }
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        partitions.push(ExistingPart {
            number: i as u32 + 1,
            start_lba: first,
            size_lba: last_lba - first + 1,
            mbr_type: 0,
            gpt_type,
            guid: Some(guid),
            name: String::from_utf16_lossy(&units),
            bootable: attrs & GPT_ATTR_LEGACY_BOOTABLE != 0,
            logical: false,
        });
    }
    Ok(ExistingTable {
        kind: TableKind::Gpt {
            disk_guid: header.disk_guid,
        },
        sector_size: dev.sector_size(),
        partitions,
        problems,
        extended: None,
    })
}

/// How much of the head and of the tail of each range
/// [`clear_signatures`] zeroes.
pub const CLEAR_HEAD: u64 = 128 * 1024;
/// See [`CLEAR_HEAD`].
pub const CLEAR_TAIL: u64 = 128 * 1024;

/// Zero the places where stale filesystem, RAID and table signatures live,
/// only inside the given `(offset, len)` byte ranges (the plan's partitions
/// and volumes), so that tools and the next steps do not mistake old
/// contents for new. Returns one line per area it actually changed; areas
/// that already read as zeros are left alone, so a second run returns
/// nothing.
///
/// The areas are the first [`CLEAR_HEAD`] and the last [`CLEAR_TAIL`] bytes
/// of each range, clamped to it. The head covers boot sectors (FAT, NTFS,
/// exFAT), ext2/3/4, XFS, LUKS, LVM2 labels, swap, md 1.1/1.2, ISO 9660 and
/// btrfs/ReiserFS (at 64 KiB, which is why the head is 128 KiB and not
/// 64). The tail covers md 0.90 and 1.0 superblocks, the NTFS backup boot
/// sector and a nested GPT's backup header. Not covered: ZFS labels L1-L3
/// and signatures deeper inside a range; wipe those with `wipefs` first.
pub fn clear_signatures(dev: &mut dyn Device, ranges: &[(u64, u64)]) -> io::Result<Vec<String>> {
    for &(offset, len) in ranges {
        if offset.checked_add(len).is_none_or(|end| end > dev.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "range {offset}+{len} lies outside the device ({} bytes)",
                    dev.len()
                ),
            ));
        }
    }
    let mut report = Vec::new();
    for &(offset, len) in ranges {
        let end = offset + len;
        let head = (offset, len.min(CLEAR_HEAD));
        let tail_len = len.min(CLEAR_TAIL);
        let tail = (end - tail_len, tail_len);
        let areas = if tail.0 <= head.0 + head.1 {
            vec![(head.0, end - head.0)]
        } else {
            vec![head, tail]
        };
        for (at, n) in areas {
            if n == 0 {
                continue;
            }
            let mut buf = vec![0u8; n as usize];
            dev.read_at(&mut buf, at)?;
            if buf.iter().all(|&b| b == 0) {
                continue;
            }
            let found = known_signatures(&buf, at, offset, len);
            dev.zero_range(at, n)?;
            let what = if found.is_empty() {
                "stale data".to_string()
            } else {
                found.join(", ")
            };
            report.push(format!(
                "zeroed bytes {at}..{} of range {offset}+{len}: {what}",
                at + n
            ));
        }
    }
    if !report.is_empty() {
        dev.sync()?;
    }
    Ok(report)
}

/// Names of the signatures recognised in `buf`, which holds the bytes at
/// `at` of a range `[range_start, range_start+range_len)`. Only for the
/// report: everything in the area is zeroed either way.
fn known_signatures(buf: &[u8], at: u64, range_start: u64, range_len: u64) -> Vec<&'static str> {
    const MD_MAGIC: [u8; 4] = 0xa92b_4efc_u32.to_le_bytes();
    // (offset from the range start, magic, name)
    let mut probes: Vec<(u64, &[u8], &'static str)> = vec![
        (3, b"NTFS    ", "NTFS boot sector"),
        (3, b"EXFAT   ", "exFAT boot sector"),
        (54, b"FAT1", "FAT boot sector"),
        (82, b"FAT32   ", "FAT32 boot sector"),
        (0, b"XFSB", "XFS superblock"),
        (0, b"LUKS\xba\xbe", "LUKS header"),
        (0x438, &[0x53, 0xef], "ext2/3/4 superblock"),
        (512, b"LABELONE", "LVM2 label"),
        (512, b"EFI PART", "GPT header"),
        (4086, b"SWAPSPACE2", "swap signature"),
        (0, &MD_MAGIC, "md 1.1 superblock"),
        (4096, &MD_MAGIC, "md 1.2 superblock"),
        (32769, b"CD001", "ISO 9660 descriptor"),
        (65536 + 64, b"_BHRfS_M", "btrfs superblock"),
        (65536 + 52, b"ReIsEr", "ReiserFS superblock"),
    ];
    if range_len >= 65536 {
        probes.push((
            (range_len / 65536 - 1) * 65536,
            &MD_MAGIC,
            "md 0.90 superblock",
        ));
    }
    if range_len >= 8192 {
        probes.push((((range_len - 8192) & !4095), &MD_MAGIC, "md 1.0 superblock"));
    }
    if range_len >= 512 {
        probes.push((range_len - 512 + 3, b"NTFS    ", "NTFS backup boot sector"));
        probes.push((range_len - 512, b"EFI PART", "GPT backup header"));
    }
    if range_len >= 4096 {
        probes.push((range_len - 4096, b"EFI PART", "GPT backup header"));
    }
    let mut found = Vec::new();
    for (off, magic, name) in probes {
        let abs = range_start + off;
        if abs < at || off + magic.len() as u64 > range_len {
            continue;
        }
        let i = (abs - at) as usize;
        if buf.get(i..i + magic.len()) == Some(magic) && !found.contains(&name) {
            found.push(name);
        }
    }
    found
}

/// Table writes staged in memory over a read-only device: reads see the
/// staged sectors, writes never reach the device. The `gpt` and `mbrman`
/// writers run against this, so their output can be checked and compared
/// before a single byte hits the disk.
struct Staged<'a> {
    base: &'a dyn Device,
    ss: u64,
    /// Whole sectors only: the GPT backup lives at the last full sector.
    len: u64,
    pos: u64,
    sectors: BTreeMap<u64, Vec<u8>>,
}

impl fmt::Debug for Staged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("len", &self.len)
            .field("pos", &self.pos)
            .field("staged_sectors", &self.sectors.len())
            .finish()
    }
}

impl<'a> Staged<'a> {
    fn new(base: &'a dyn Device, sector_size: u32) -> Staged<'a> {
        let ss = u64::from(sector_size);
        Staged {
            base,
            ss,
            len: base.len() / ss * ss,
            pos: 0,
            sectors: BTreeMap::new(),
        }
    }

    fn sector_mut(&mut self, lba: u64) -> io::Result<&mut Vec<u8>> {
        if !self.sectors.contains_key(&lba) {
            let mut s = vec![0u8; self.ss as usize];
            self.base.read_at(&mut s, lba * self.ss)?;
            self.sectors.insert(lba, s);
        }
        self.sectors
            .get_mut(&lba)
            .ok_or_else(|| io::Error::other("staged sector vanished"))
    }

    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.read_exact(buf)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.seek(SeekFrom::Start(offset))?;
        self.write_all(buf)
    }

    /// Staged sectors whose bytes differ from the device, coalesced.
    fn changes(&self) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut current = vec![0u8; self.ss as usize];
        for (&lba, bytes) in &self.sectors {
            let offset = lba * self.ss;
            self.base.read_at(&mut current, offset)?;
            if &current == bytes {
                continue;
            }
            match out.last_mut() {
                Some((o, run)) if *o + run.len() as u64 == offset => run.extend_from_slice(bytes),
                _ => out.push((offset, bytes.clone())),
            }
        }
        Ok(out)
    }
}

impl Read for Staged<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let at = self.pos + done as u64;
            let lba = at / self.ss;
            let in_sector = (at % self.ss) as usize;
            let k = (self.ss as usize - in_sector).min(n - done);
            match self.sectors.get(&lba) {
                Some(s) => buf[done..done + k].copy_from_slice(&s[in_sector..in_sector + k]),
                None => self.base.read_at(&mut buf[done..done + k], at)?,
            }
            done += k;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Staged<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "table write past the end of the disk",
            ));
        }
        let mut done = 0;
        while done < buf.len() {
            let at = self.pos + done as u64;
            let lba = at / self.ss;
            let in_sector = (at % self.ss) as usize;
            let k = (self.ss as usize - in_sector).min(buf.len() - done);
            let s = self.sector_mut(lba)?;
            s[in_sector..in_sector + k].copy_from_slice(&buf[done..done + k]);
            done += k;
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Staged<'_> {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        let target = match from {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) if t <= self.len => {
                self.pos = t;
                Ok(t)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the disk",
            )),
        }
    }
}
