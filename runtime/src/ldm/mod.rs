//! Windows dynamic disks (LDM, the Logical Disk Manager), written the way
//! Windows 2000/XP write them, so Windows, the Linux kernel and `ldmtool`
//! assemble the plan's volumes.
//!
//! A disk holding a member of any of the plan's volumes is a dynamic disk:
//!
//! - its MBR (the plan's signature, the disk's boot code kept) carries one
//!   partition of type 0x42 from sector 63 to the end of the disk, so
//!   legacy tools see the disk as used (see [`DYNAMIC_START`]);
//! - sector 6 holds the PRIVHEAD and the last 1 MiB the private region: the
//!   LDM database of the whole disk group (TOCBLOCKs, VMDB, VBLKs, KLOG,
//!   PRIVHEAD copies), identical on every member disk but for the PRIVHEADs;
//! - the plan's partitions on it are LDM partitions (at the same bytes the
//!   plan declares them), each in a component of its volume.
//!
//! All the plan's dynamic disks form one disk group named after the plan
//! (`<name>Dg0`, as Windows names a machine's group). Names follow Windows
//! (`Disk1`, `Volume1`, `Volume1-01`, `Disk1-01`, numbered in plan order);
//! GUIDs are derived from the plan's ids, object ids are counted in plan
//! order, so the same plan on the same targets writes the same bytes.
//!
//! [`layout`] maps a volume's bytes onto its partitions; [`database`]
//! encodes the structures. What this module is not: a reader (`ldmtool` and
//! the kernel judge what is written, in the tests), nor a GPT dynamic-disk
//! writer (the compiler keeps dynamic disks on MBR with 512-byte sectors).

pub mod database;
pub mod layout;
pub mod read;

pub use database::{Group, PRIVATE_SECTORS, SECTOR};

use crate::target::Device;
use database::{Component, ComponentKind, Disk, Partition, Volume};
use rplan_compiler::analyze::disks::derived_guid;
use rplan_compiler::compiled::{CDisk, CompiledPlan};
use rplan_compiler::model::{Fs, Layout as PlanLayout};
use std::io;

/// Where a dynamic disk's public region (and its 0x42 partition) starts:
/// sector 63, after the first track, as XP lays dynamic disks out.
pub const DYNAMIC_START: u64 = rplan_compiler::analyze::volumes::LDM_PUBLIC_START;

/// Whether the plan makes `disk` a dynamic disk.
pub fn is_dynamic(disk: &CDisk) -> bool {
    disk.partitions.iter().any(|p| p.volume.is_some())
}

/// The LDM data layout of a plan volume.
pub fn volume_layout(layout: PlanLayout, stripe: Option<u64>) -> layout::Layout {
    let chunk = stripe.unwrap_or(rplan_compiler::analyze::volumes::DEFAULT_STRIPE);
    match layout {
        PlanLayout::Simple | PlanLayout::Spanned => layout::Layout::Spanned,
        PlanLayout::Striped => layout::Layout::Striped { chunk },
        PlanLayout::Mirrored => layout::Layout::Mirrored,
        PlanLayout::Raid5 => layout::Layout::Raid5 { chunk },
    }
}

/// The disk group the plan's dynamic disks form on targets of `lens` bytes
/// (by disk index); `None` when the plan has no volumes.
pub fn group(plan: &CompiledPlan, lens: &[u64]) -> Result<Option<Group>, String> {
    if plan.volumes.is_empty() {
        return Ok(None);
    }
    let mut next = 0u64;
    let mut id = || {
        next += 1;
        next
    };
    let group_id = id();
    let mut disks: Vec<Disk> = Vec::new();
    let mut plan_index: Vec<usize> = Vec::new();
    for (di, d) in plan.disks.iter().enumerate().filter(|(_, d)| is_dynamic(d)) {
        let len = lens.get(di).copied().unwrap_or(0);
        let sectors = len / SECTOR;
        let private = sectors.saturating_sub(PRIVATE_SECTORS);
        if private <= DYNAMIC_START {
            return Err(format!(
                "disk `{}` is too small for a dynamic disk ({len} bytes)",
                d.id
            ));
        }
        plan_index.push(di);
        disks.push(Disk {
            id: id(),
            name: format!("Disk{}", disks.len() + 1),
            guid: derived_guid(&["ldm disk", &plan.name, &d.id]),
            signature: d.signature.unwrap_or(0),
            sectors,
            public_start: DYNAMIC_START,
            public_size: private - DYNAMIC_START,
        });
    }
    let mut per_disk = vec![0usize; disks.len()];
    let mut volumes = Vec::new();
    for (k, v) in plan.volumes.iter().enumerate() {
        let number = u8::try_from(k + 1).map_err(|_| "more than 255 volumes".to_string())?;
        let name = format!("Volume{number}");
        let vol_id = id();
        let members = crate::layout::members(plan, v, |di| lens.get(di).copied().unwrap_or(0))
            .ok_or_else(|| format!("volume `{}` has a member that is not in the plan", v.id))?;
        let lay = volume_layout(v.layout, v.stripe_size);
        let size = layout::usable_size(lay, &members);
        if size == 0 || size % SECTOR != 0 {
            return Err(format!("volume `{}` has no usable whole sectors", v.id));
        }
        // Striped, mirrored and RAID-5 partitions are the part the volume uses.
        let used = match lay {
            layout::Layout::Spanned => None,
            layout::Layout::Mirrored => Some(size),
            layout::Layout::Striped { chunk } | layout::Layout::Raid5 { chunk } => {
                let min = members.iter().map(|m| m.len).min().unwrap_or(0);
                Some(min / chunk * chunk)
            }
        };
        let mut parts = Vec::new();
        let mut offset = 0u64;
        for (index, m) in members.iter().enumerate() {
            let gd = plan_index
                .iter()
                .position(|&di| di == m.device)
                .ok_or_else(|| format!("volume `{}`: member disk is not dynamic", v.id))?;
            let disk = &disks[gd];
            per_disk[gd] += 1;
            let len = used.unwrap_or(m.len) / SECTOR;
            let start = (m.start / SECTOR)
                .checked_sub(disk.public_start)
                .filter(|s| {
                    s.checked_add(len)
                        .is_some_and(|end| end <= disk.public_size)
                })
                .ok_or_else(|| {
                    format!(
                        "volume `{}`: a member lies outside disk {}'s LDM public region",
                        v.id, disk.name
                    )
                })?;
            parts.push(Partition {
                id: 0,
                name: format!("{}-{:02}", disk.name, per_disk[gd]),
                disk: gd,
                start,
                size: len,
                volume_offset: if lay == layout::Layout::Spanned {
                    offset
                } else {
                    0
                },
                index: if lay == layout::Layout::Mirrored {
                    0
                } else {
                    index as u64
                },
            });
            offset += len;
        }
        let chunk = match lay {
            layout::Layout::Striped { chunk } | layout::Layout::Raid5 { chunk } => {
                Some(chunk / SECTOR)
            }
            _ => None,
        };
        let kind = match lay {
            layout::Layout::Striped { .. } => ComponentKind::Striped,
            layout::Layout::Raid5 { .. } => ComponentKind::Raid,
            _ => ComponentKind::Spanned,
        };
        // A mirror is one spanned component per copy; the rest is one
        // component over every partition.
        let groups: Vec<Vec<Partition>> = if lay == layout::Layout::Mirrored {
            parts.into_iter().map(|p| vec![p]).collect()
        } else {
            vec![parts]
        };
        let mut components = Vec::new();
        for (c, mut ps) in groups.into_iter().enumerate() {
            let comp_id = id();
            for p in &mut ps {
                p.id = id();
            }
            components.push(Component {
                id: comp_id,
                name: format!("{name}-{:02}", c + 1),
                kind,
                chunk,
                partitions: ps,
            });
        }
        volumes.push(Volume {
            id: vol_id,
            name,
            guid: derived_guid(&["ldm volume", &plan.name, &v.id]),
            number,
            size: size / SECTOR,
            partition_type: partition_type(v.content.as_ref()),
            raid5: matches!(lay, layout::Layout::Raid5 { .. }),
            components,
        });
    }
    Ok(Some(Group {
        name: group_name(&plan.name),
        guid: derived_guid(&["ldm disk group", &plan.name]),
        host_guid: derived_guid(&["ldm host", &plan.name]),
        id: group_id,
        disks,
        volumes,
    }))
}

/// `<plan name>Dg0`, ASCII letters, digits and `-` only, at most 31 bytes.
fn group_name(plan: &str) -> String {
    let base: String = plan
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(28)
        .collect();
    format!("{base}Dg0")
}

/// The MBR-style type byte Windows records for what a volume holds.
fn partition_type(content: Option<&rplan_compiler::model::Content>) -> u8 {
    match content.and_then(|c| c.format.as_ref()).map(|f| f.fs) {
        Some(Fs::Fat16) => 0x06,
        Some(Fs::Fat32) => 0x0C,
        Some(Fs::Ext4) => 0x83,
        Some(Fs::Ntfs) | None => 0x07,
    }
}

/// What plan disk `di` carries of the group: `(byte offset, bytes)` runs
/// (the PRIVHEAD at sector 6 and the private region). Empty for a basic
/// disk.
pub fn disk_writes(
    plan: &CompiledPlan,
    group: Option<&Group>,
    di: usize,
) -> Result<Vec<(u64, Vec<u8>)>, String> {
    let (Some(group), Some(disk)) = (group, plan.disks.get(di)) else {
        return Ok(Vec::new());
    };
    if !is_dynamic(disk) {
        return Ok(Vec::new());
    }
    let gd = plan.disks[..di].iter().filter(|d| is_dynamic(d)).count();
    database::disk_image(group, gd)
        .ok_or_else(|| "the disk group is too large for an LDM database".to_string())
}

/// The byte ranges a dynamic disk's database takes on a `len`-byte target:
/// the PRIVHEAD sector and the last 1 MiB. Empty for a basic disk.
pub fn areas(disk: &CDisk, len: u64) -> Vec<(u64, u64)> {
    if !is_dynamic(disk) {
        return Vec::new();
    }
    let private = (len / SECTOR).saturating_sub(PRIVATE_SECTORS) * SECTOR;
    vec![
        (database::PRIVHEAD_SECTOR * SECTOR, SECTOR),
        (private, PRIVATE_SECTORS * SECTOR),
    ]
}

/// Whether `dev` already holds every byte of `writes`.
pub fn matches(dev: &dyn Device, writes: &[(u64, Vec<u8>)]) -> io::Result<bool> {
    for (offset, bytes) in writes {
        let mut have = vec![0u8; bytes.len()];
        dev.read_at(&mut have, *offset)?;
        if &have != bytes {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Write `writes` (from [`disk_writes`]) and sync.
pub fn write(dev: &mut dyn Device, writes: &[(u64, Vec<u8>)]) -> io::Result<()> {
    for (offset, bytes) in writes {
        dev.write_at(bytes, *offset)?;
    }
    dev.sync()
}
