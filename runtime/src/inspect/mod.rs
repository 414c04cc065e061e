//! What is on a disk now: the one reader of existing disks that apply's
//! preflight and confirmation, dry-run's before → after report (and later
//! capture and verify) share.
//!
//! A disk is described as blkid and sfdisk/sgdisk would describe it: its
//! partition table (MBR with logical partitions, or GPT, including one
//! whose protective MBR was wiped and that only a primary or backup header
//! still describes), every signature on the whole disk (a filesystem, swap,
//! LVM, md, LDM…), and for each partition what it holds, with label, UUID,
//! size and, where cheap to know, the space in use.
//!
//! Signatures are probed by libblkid ([`probe`]), the library behind
//! `blkid -p` and `wipefs`, so rplan and the tools an operator checks with
//! agree on what is there. Partition tables are read by [`crate::table`],
//! the same reader that decides whether a disk already carries the plan's
//! table. What this module is not: it never writes, and it does not decide
//! what to do about what it found (the executor does).

pub(crate) mod probe;
mod usage;

use crate::table::{self, ExistingTable, TableKind};
use crate::target::Device;
use std::path::Path;

pub use probe::{ldm_privhead, Signature};
/// Public for the fuzz targets (`fuzz/`), which feed it arbitrary bytes.
pub use usage::used_bytes;

/// Everything found on one target.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Inspection {
    /// Size of the target in bytes.
    pub size: u64,
    pub sector_size: u32,
    /// The partition table, if any (primary or recovered from a backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<FoundTable>,
    /// Signatures on the whole disk, outside any partition: a filesystem
    /// made on the bare disk, swap, a RAID or LVM member, an LDM database.
    pub signatures: Vec<Signature>,
    pub partitions: Vec<FoundPartition>,
}

/// A partition table on the target.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct FoundTable {
    /// `mbr` or `gpt`.
    pub kind: String,
    /// The disk's identity: `0x1a2b3c4d` (MBR signature) or the GPT disk GUID.
    pub id: String,
    /// Damage that did not prevent reading it (e.g. "no protective MBR:
    /// read from the primary header").
    pub problems: Vec<String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub raw: Option<TableKind>,
    /// Byte ranges of the table's magic numbers (0x55AA, `EFI PART`), so a
    /// table that is being replaced by one of another kind can be wiped.
    #[serde(skip)]
    #[schemars(skip)]
    pub magic: Vec<(u64, u64)>,
}

/// One partition of the existing table.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct FoundPartition {
    /// The partition's number as Linux and sfdisk count it (1–4 primary,
    /// 5… logical; GPT entry index + 1).
    pub number: u32,
    /// Start in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// The MBR type byte (`0x83`) or the GPT type GUID.
    pub r#type: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub logical: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bootable: bool,
    /// GPT partition name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the partition holds, as libblkid probes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Signature>,
}

impl Inspection {
    /// What could not be read: not blank, contents unknown.
    pub fn unreadable(size: u64, sector_size: u32, why: &std::io::Error) -> Inspection {
        Inspection {
            size,
            sector_size,
            table: Some(FoundTable {
                kind: "unknown".to_string(),
                id: "(could not be read)".to_string(),
                problems: vec![why.to_string()],
                raw: None,
                magic: Vec::new(),
            }),
            signatures: Vec::new(),
            partitions: Vec::new(),
        }
    }

    /// Nothing at all: no table (primary or backup), no signature.
    pub fn is_blank(&self) -> bool {
        self.table.is_none() && self.signatures.is_empty()
    }

    /// One line per thing found, for refusals and confirmations.
    pub fn findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = &self.table {
            let mut line = format!(
                "{} partition table {} with {} partition{}",
                t.kind.to_uppercase(),
                t.id,
                self.partitions.len(),
                if self.partitions.len() == 1 { "" } else { "s" }
            );
            if let Some(p) = t.problems.first() {
                line.push_str(&format!(" ({p})"));
            }
            out.push(line);
        }
        for s in &self.signatures {
            out.push(format!("{} on the whole disk", s.describe()));
        }
        for p in &self.partitions {
            out.push(format!("partition {}: {}", p.number, p.describe()));
        }
        out
    }
}

impl FoundPartition {
    /// `ext4 `HOME` 512 MiB (312 MiB used)`, or `type 0x83, 512 MiB` when
    /// no filesystem was found.
    pub fn describe(&self) -> String {
        match &self.content {
            Some(s) => format!("{}, {}", s.describe(), approx_size(self.size, s.used)),
            None => format!(
                "no filesystem (type {}), {}",
                self.r#type,
                approx_bytes(self.size)
            ),
        }
    }
}

/// `512 MiB (312 MiB used)`.
pub fn approx_size(size: u64, used: Option<u64>) -> String {
    match used {
        Some(u) => format!("{} ({} used)", approx_bytes(size), approx_bytes(u)),
        None => approx_bytes(size),
    }
}

/// Sizes for people: three significant digits in the largest binary unit
/// (`19.9 GiB`, `512 MiB`, `4 KiB`, `100 B`).
pub fn approx_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scaled = b as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    let digits = if unit == 0 || scaled >= 100.0 {
        0
    } else if scaled >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text} {}", UNITS[unit])
}

/// Inspect `dev` (opened from `path`). `path` is opened once more,
/// read-only, for libblkid.
pub fn inspect(dev: &dyn Device, path: &Path) -> std::io::Result<Inspection> {
    let file = std::fs::File::open(path)?;
    let len = dev.len();
    let whole = probe::Prober::new(&file, 0, len)?;
    let signatures = whole.signatures()?;
    // libblkid decides whether LBA 0 is a partition table or the boot sector
    // of a filesystem made on the bare disk (both end in 0x55AA); our reader
    // then reads the table it found. A GPT whose protective MBR is gone is
    // found from its primary or backup header.
    let pt = whole.partition_table_type()?;
    let existing = match pt.as_deref() {
        Some("dos") | Some("gpt") | Some("PMBR") => Some(table::read_table(dev)),
        // A table rplan does not read (Apple, Sun, SGI, BSD, Atari, AIX…):
        // not blank, whatever is inside it.
        Some(_) => None,
        None if signatures.iter().any(|s| s.at_lba0()) => None,
        None => table::read_headerless_gpt(dev).map(|t| Ok(Some(t))),
    };
    let (table, partitions) = match existing {
        Some(Ok(Some(t))) => {
            let parts = partitions(dev, &file, &t)?;
            (Some(found_table(dev, &t, pt.as_deref())), parts)
        }
        // libblkid sees a table our reader cannot read: damaged, but there.
        // Its magic: 0x55AA (and a GPT's headers).
        Some(Err(e)) => {
            let ss = u64::from(dev.sector_size());
            let last = (len / ss).saturating_sub(1) * ss;
            let (kind, magic) = match pt.as_deref() {
                Some("dos") => ("mbr".to_string(), vec![(510, 2)]),
                Some("gpt") | Some("PMBR") => {
                    ("gpt".to_string(), vec![(510, 2), (ss, 8), (last, 8)])
                }
                _ => ("mbr".to_string(), vec![(510, 2)]),
            };
            (
                Some(FoundTable {
                    kind,
                    id: "(unreadable)".to_string(),
                    problems: vec![e.to_string()],
                    raw: None,
                    magic,
                }),
                Vec::new(),
            )
        }
        Some(Ok(None)) | None => match pt.as_deref() {
            Some(other) if !matches!(other, "dos" | "gpt" | "PMBR") => (
                Some(FoundTable {
                    kind: other.to_string(),
                    id: "(not read by rplan)".to_string(),
                    problems: vec![format!(
                        "blkid calls it `{other}`; rplan reads only MBR and GPT"
                    )],
                    raw: None,
                    // Its label sector is no MBR boot code to keep.
                    magic: vec![(0, 512)],
                }),
                Vec::new(),
            ),
            _ => (None, Vec::new()),
        },
    };
    let mut signatures = signatures;
    if let Some(ldm) = probe::ldm_privhead(dev) {
        signatures.push(ldm);
    }
    Ok(Inspection {
        size: len,
        sector_size: dev.sector_size(),
        table,
        signatures,
        partitions,
    })
}

fn found_table(dev: &dyn Device, t: &ExistingTable, pt: Option<&str>) -> FoundTable {
    let ss = u64::from(dev.sector_size());
    let last = (dev.len() / ss).saturating_sub(1) * ss;
    let mut problems = t.problems.clone();
    let (kind, id, magic) = match t.kind {
        TableKind::Mbr { signature } => ("mbr", format!("0x{signature:08x}"), vec![(510, 2)]),
        TableKind::Gpt { disk_guid } => {
            if pt.is_none() {
                problems.insert(
                    0,
                    "no protective MBR in LBA 0: read from the GPT headers".to_string(),
                );
            }
            (
                "gpt",
                disk_guid.to_string(),
                vec![(510, 2), (ss, 8), (last, 8)],
            )
        }
    };
    FoundTable {
        kind: kind.to_string(),
        id,
        problems,
        raw: Some(t.kind),
        magic,
    }
}

fn partitions(
    dev: &dyn Device,
    file: &std::fs::File,
    t: &ExistingTable,
) -> std::io::Result<Vec<FoundPartition>> {
    let ss = u64::from(t.sector_size);
    let mut out = Vec::new();
    for p in &t.partitions {
        let (Some(start), Some(size)) = (p.start_lba.checked_mul(ss), p.size_lba.checked_mul(ss))
        else {
            continue;
        };
        let inside = start.checked_add(size).is_some_and(|end| end <= dev.len());
        let content = if inside && size > 0 {
            let mut found = probe::Prober::new(file, start, size)?.signatures()?;
            // A partition holds one thing; libblkid lists the strongest first.
            let mut first = (!found.is_empty()).then(|| found.remove(0));
            if let Some(s) = first.as_mut() {
                s.used = usage::used_bytes(dev, start, size, &s.kind);
            }
            first
        } else {
            None
        };
        let r#type = match t.kind {
            TableKind::Mbr { .. } => format!("0x{:02x}", p.mbr_type),
            TableKind::Gpt { .. } => p.gpt_type.to_string(),
        };
        out.push(FoundPartition {
            number: p.number,
            start,
            size,
            r#type,
            logical: p.logical,
            bootable: p.bootable,
            name: (!p.name.is_empty()).then(|| p.name.clone()),
            content,
        });
    }
    Ok(out)
}
