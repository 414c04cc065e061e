//! From the compiled plan to concrete extents on a concrete target: `rest`
//! partitions stretch to the end of the real disk, and the plan's partitions
//! become the table writer's [`TableSpec`] and the volume writer's members.

use crate::raid;
use crate::table::{PartSpec, TableKind as SpecKind, TableSpec};
use rplan_compiler::analyze::disks::usable_range;
use rplan_compiler::compiled::{CDisk, CPartition, CVolume, CompiledPlan};
use rplan_compiler::model::{Layout, TableKind};

/// A partition's byte range on a target of `target_len` bytes.
pub fn extent(disk: &CDisk, part: &CPartition, target_len: u64) -> (u64, u64) {
    let ss = u64::from(disk.sector_size);
    let len = match part.size {
        Some(size) => size,
        None => {
            let (_, end) = usable_range(disk.table, ss, target_len / ss * ss);
            end.saturating_sub(part.start) / ss * ss
        }
    };
    (part.start, len)
}

/// The partition table to write on a target of `target_len` bytes.
pub fn table_spec(disk: &CDisk, target_len: u64) -> TableSpec {
    let ss = u64::from(disk.sector_size);
    let kind = match disk.table {
        TableKind::Mbr => SpecKind::Mbr {
            signature: disk.signature.unwrap_or(0),
        },
        TableKind::Gpt => SpecKind::Gpt {
            disk_guid: disk.guid.unwrap_or_default(),
        },
    };
    let mut partitions: Vec<(u32, PartSpec)> = disk
        .partitions
        .iter()
        .map(|p| {
            let (start, len) = extent(disk, p, target_len);
            (
                p.number,
                PartSpec {
                    start_lba: start / ss,
                    size_lba: len / ss,
                    mbr_type: p.mbr_type.unwrap_or(0),
                    gpt_type: p.type_guid.unwrap_or_default(),
                    guid: p.guid,
                    name: p.name.clone().unwrap_or_default(),
                    bootable: p.bootable,
                    logical: p.logical,
                },
            )
        })
        .collect();
    partitions.sort_by_key(|(n, _)| *n);
    TableSpec {
        kind,
        sector_size: disk.sector_size,
        partitions: partitions.into_iter().map(|(_, p)| p).collect(),
    }
}

/// The md layout of a volume.
pub fn raid_layout(volume: &CVolume) -> raid::Layout {
    let chunk = volume
        .stripe_size
        .unwrap_or(rplan_compiler::analyze::volumes::DEFAULT_STRIPE);
    match volume.layout {
        Layout::Simple | Layout::Spanned => raid::Layout::Linear,
        Layout::Striped => raid::Layout::Raid0 { chunk },
        Layout::Mirrored => raid::Layout::Raid1,
        Layout::Raid5 => raid::Layout::Raid5 { chunk },
    }
}

/// The volume's members as (disk index in `plan.disks`, byte range).
pub fn members(
    plan: &CompiledPlan,
    volume: &CVolume,
    target_len: impl Fn(usize) -> u64,
) -> Option<Vec<raid::Member>> {
    volume
        .members
        .iter()
        .map(|m| {
            let di = plan.disks.iter().position(|d| d.id == m.disk)?;
            let disk = &plan.disks[di];
            let part = disk.partition(&m.partition)?;
            let (start, len) = extent(disk, part, target_len(di));
            Some(raid::Member {
                device: di,
                start,
                len,
            })
        })
        .collect()
}
