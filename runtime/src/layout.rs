//! From the compiled plan to concrete extents on a concrete target: `rest`
//! partitions stretch to the end of the real disk (a dynamic disk's end is
//! where its LDM database starts), and the plan's partitions become the
//! table writer's [`TableSpec`] and the volume writer's members.

use crate::ldm;
use crate::table::{PartSpec, TableKind as SpecKind, TableSpec};
use rplan_compiler::analyze::disks::usable_range;
use rplan_compiler::compiled::{CDisk, CPartition, CVolume, CompiledPlan};
use rplan_compiler::model::TableKind;

/// A partition's byte range on a target of `target_len` bytes.
pub fn extent(disk: &CDisk, part: &CPartition, target_len: u64) -> (u64, u64) {
    let ss = u64::from(disk.sector_size);
    let len = match part.size {
        Some(size) => size,
        None => {
            let (_, mut end) = usable_range(disk.table, ss, target_len / ss * ss);
            if ldm::is_dynamic(disk) {
                end = end.min(
                    (target_len / ldm::SECTOR).saturating_sub(ldm::PRIVATE_SECTORS) * ldm::SECTOR,
                );
            }
            end.saturating_sub(part.start) / ss * ss
        }
    };
    (part.start, len)
}

/// The partition table to write on a target of `target_len` bytes. A
/// dynamic disk's MBR holds one 0x42 partition from sector 63 to the end of
/// the disk; its partitions are in the LDM database.
pub fn table_spec(disk: &CDisk, target_len: u64) -> TableSpec {
    let ss = u64::from(disk.sector_size);
    if ldm::is_dynamic(disk) {
        let total = (target_len / ss).min(1 << 32);
        return TableSpec {
            kind: SpecKind::Mbr {
                signature: disk.signature.unwrap_or(0),
            },
            sector_size: disk.sector_size,
            partitions: vec![PartSpec {
                start_lba: ldm::DYNAMIC_START,
                size_lba: total.saturating_sub(ldm::DYNAMIC_START).max(1),
                mbr_type: 0x42,
                gpt_type: Default::default(),
                guid: None,
                name: String::new(),
                bootable: false,
                logical: false,
            }],
            boot_code: None,
        };
    }
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
        boot_code: None,
    }
}

/// The LDM data layout of a volume.
pub fn volume_layout(volume: &CVolume) -> ldm::layout::Layout {
    ldm::volume_layout(volume.layout, volume.stripe_size)
}

/// The volume's members as (disk index in `plan.disks`, byte range).
pub fn members(
    plan: &CompiledPlan,
    volume: &CVolume,
    target_len: impl Fn(usize) -> u64,
) -> Option<Vec<ldm::layout::Member>> {
    volume
        .members
        .iter()
        .map(|m| {
            let di = plan.disks.iter().position(|d| d.id == m.disk)?;
            let disk = &plan.disks[di];
            let part = disk.partition(&m.partition)?;
            let (start, len) = extent(disk, part, target_len(di));
            Some(ldm::layout::Member {
                device: di,
                start,
                len,
            })
        })
        .collect()
}

/// The disk the restored machine starts from: the one holding an active
/// partition, else the first critical basic MBR disk.
pub fn system_disk(plan: &CompiledPlan) -> Option<usize> {
    plan.disks
        .iter()
        .position(|d| d.partitions.iter().any(|p| p.bootable))
        .or_else(|| {
            plan.disks
                .iter()
                .position(|d| d.critical && d.table == TableKind::Mbr && !ldm::is_dynamic(d))
        })
}
