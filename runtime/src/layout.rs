//! From the compiled plan to concrete extents on a concrete target: `rest`
//! partitions stretch to the end of the real disk (a dynamic disk's end is
//! where its LDM database starts), and the plan's partitions become the
//! table writer's [`TableSpec`] and the volume writer's members.

use crate::ldm;
use crate::table::{ExtendedLayout, PartSpec, TableKind as SpecKind, TableSpec};
use rplan_compiler::analyze::disks::usable_range;
use rplan_compiler::compiled::{CDisk, CPartition, CVolume, CompiledPlan};
use rplan_compiler::model::TableKind;

/// A partition's byte range on a target of `target_len` bytes.
///
/// On an MBR disk `rest` stops where MBR's 32-bit sector numbers do (2 TiB
/// with 512-byte sectors), as Windows does on a larger disk: the check
/// refuses MBR plans beyond that, but the real target may be larger than
/// the plan's disk, and a table entry past the limit cannot be written.
pub fn extent(disk: &CDisk, part: &CPartition, target_len: u64) -> (u64, u64) {
    let ss = u64::from(disk.sector_size);
    let len = match part.size {
        Some(size) => size,
        None => {
            let (_, end) = usable_range(disk.table, ss, target_len / ss * ss);
            let mut end = match disk.table {
                TableKind::Mbr => end.min(mbr_addressable(ss)),
                TableKind::Gpt => end,
            };
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

/// The bytes an MBR table can address with `sector_size`-byte sectors.
pub fn mbr_addressable(sector_size: u64) -> u64 {
    sector_size.saturating_mul(1 << 32)
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
            extended: None,
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
        extended: disk.extended.map(|e| ExtendedLayout {
            mbr_type: e.mbr_type,
            ebr_gap: e.ebr_gap,
            end_lba: e.end.map(|b| b / ss),
        }),
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
    rplan_compiler::analyze::boot::system_disk(&plan.disks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(table: TableKind) -> CDisk {
        CDisk {
            id: "d".into(),
            critical: true,
            table,
            signature: Some(1),
            guid: None,
            boot_code: None,
            extended: None,
            sector_size: 512,
            min_size: 1 << 30,
            partitions: vec![CPartition {
                id: "p".into(),
                number: 1,
                start: 1 << 20,
                size: None,
                min_size: (1 << 30) - (1 << 20),
                mbr_type: Some(7),
                type_guid: None,
                guid: None,
                name: None,
                bootable: false,
                logical: false,
                critical: true,
                content: None,
                volume: None,
            }],
        }
    }

    #[test]
    fn mbr_rest_stops_at_two_tib_on_a_larger_target() {
        let d = disk(TableKind::Mbr);
        let three_tib = 3 << 40;
        let (start, len) = extent(&d, &d.partitions[0], three_tib);
        assert_eq!(start + len, 2 << 40);
        let spec = table_spec(&d, three_tib);
        let p = &spec.partitions[0];
        assert!(u32::try_from(p.start_lba + p.size_lba - 1).is_ok());
        // Within the limit nothing changes.
        let (_, len) = extent(&d, &d.partitions[0], 1 << 40);
        assert_eq!(start + len, 1 << 40);
    }
}
