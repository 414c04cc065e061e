//! The disk graph: resolve each disk's partition layout and check it against
//! the disk and its partition table's limits.
//!
//! Offsets are resolved in plan order: a partition without `start` is packed
//! after the previous one on a 1 MiB boundary (an MBR logical partition also
//! leaves room for its EBR). `rest` runs to the last usable sector of the
//! smallest disk the plan fits; the runtime stretches it to the real target.

use crate::compiled::{CDisk, CExtended, CPartition};
use crate::diagnostic::{codes, Diagnostic};
use crate::model::{Disk, PartSize, Plan, TableKind};
use crate::size::{human_bytes, MIB};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Where partitions may live on a disk of `total` bytes, as [first, end).
pub fn usable_range(table: TableKind, sector_size: u64, total: u64) -> (u64, u64) {
    match table {
        TableKind::Mbr => (sector_size, total),
        TableKind::Gpt => {
            // Protective MBR + header + 128 entries of 128 bytes at the
            // front; entries + header at the back.
            let entries = (128 * 128_u64).div_ceil(sector_size) * sector_size;
            (
                2 * sector_size + entries,
                total.saturating_sub(sector_size + entries),
            )
        }
    }
}

pub fn align_up(v: u64, to: u64) -> Option<u64> {
    v.checked_next_multiple_of(to)
}

pub fn check(plan: &Plan, diags: &mut Vec<Diagnostic>) -> Vec<CDisk> {
    super::unique_ids(
        plan.disks
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.as_str(), format!("/disks/{i}/id"))),
        codes::DUPLICATE_ID,
        "disk",
        diags,
    );
    let disks: Vec<CDisk> = plan
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| resolve_disk(plan, d, i, diags))
        .collect();
    check_guids(plan, diags);
    check_identities(plan, &disks, diags);
    if !plan.disks.is_empty() && !plan.disks.iter().any(|d| d.critical) {
        diags.push(
            Diagnostic::warning(codes::NO_CRITICAL_DISK, "/disks", "no disk is marked critical")
                .help("ASR must restore at least the disks needed to start the computer: mark them `critical: true`"),
        );
    }
    disks
}

fn resolve_disk(plan: &Plan, disk: &Disk, i: usize, diags: &mut Vec<Diagnostic>) -> CDisk {
    let dp = format!("/disks/{i}");
    let ss = u64::from(disk.sector_size);
    let total = disk.size.bytes(ss).unwrap_or(u64::MAX);
    let mut out = CDisk {
        id: disk.id.clone(),
        critical: disk.critical,
        table: disk.table,
        signature: None,
        guid: None,
        sector_size: disk.sector_size,
        min_size: total,
        partitions: Vec::new(),
        boot_code: None,
        extended: None,
    };
    resolve_identity(plan, disk, &dp, &mut out, diags);
    if disk.sector_size != 512 && disk.sector_size != 4096 {
        diags.push(Diagnostic::error(
            codes::SECTOR_SIZE,
            format!("{dp}/sector_size"),
            "sector size must be 512 or 4096",
        ));
        return out;
    }
    if total % ss != 0 {
        diags.push(
            Diagnostic::error(
                codes::MISALIGNED,
                format!("{dp}/size"),
                format!("disk size {total} is not a whole number of {ss}-byte sectors"),
            )
            .help(format!("use {}", human_bytes(total / ss * ss))),
        );
    }
    if disk.table == TableKind::Mbr && total / ss > u64::from(u32::MAX) + 1 {
        diags.push(
            Diagnostic::error(
                codes::MBR_TOO_LARGE,
                format!("{dp}/size"),
                format!(
                    "an MBR table addresses at most {} with {ss}-byte sectors",
                    human_bytes(ss << 32)
                ),
            )
            .help("use `table: gpt` for disks larger than 2 TiB"),
        );
    }
    let (first, mut end) = usable_range(disk.table, ss, total / ss * ss);
    if super::volumes::is_dynamic(plan, &disk.id) {
        // A dynamic disk's last 1 MiB holds its LDM database.
        end = end.min((total / ss * ss).saturating_sub(super::volumes::LDM_DATABASE));
    }
    if end <= first {
        diags.push(Diagnostic::error(
            codes::GPT_HEADER_ROOM,
            format!("{dp}/size"),
            format!(
                "a {} disk has no room for partitions: both GPT headers need {}",
                human_bytes(total),
                human_bytes(2 * first)
            ),
        ));
        return out;
    }
    resolve_partitions(disk, &dp, first, end, &mut out, diags);
    resolve_extended(plan, disk, &dp, total, &mut out, diags);
    check_overlaps(&dp, &out, diags);
    match disk.table {
        // A dynamic disk's partitions are LDM partitions, not MBR entries.
        TableKind::Mbr if super::volumes::is_dynamic(plan, &disk.id) => {}
        TableKind::Mbr => check_mbr(&dp, &out, diags),
        TableKind::Gpt if disk.partitions.len() > 128 => diags.push(
            Diagnostic::error(
                codes::GPT_ENTRIES,
                format!("{dp}/partitions/128"),
                format!(
                    "{} partitions; a GPT table holds 128",
                    disk.partitions.len()
                ),
            )
            .help("split the partitions over more disks"),
        ),
        TableKind::Gpt => {}
    }
    out
}

/// Signature (MBR) or GUID (GPT); derived from the plan when absent so that
/// applying the same plan twice writes the same bytes.
fn resolve_identity(
    plan: &Plan,
    disk: &Disk,
    dp: &str,
    out: &mut CDisk,
    diags: &mut Vec<Diagnostic>,
) {
    match disk.table {
        TableKind::Mbr => {
            if disk.guid.is_some() {
                diags.push(
                    Diagnostic::error(
                        codes::DISK_IDENTITY,
                        format!("{dp}/guid"),
                        "an MBR disk has a signature, not a GUID",
                    )
                    .help("use `signature: \"0x…\"`, or `table: gpt`"),
                );
            }
            out.signature = Some(match &disk.signature {
                Some(s) => {
                    u32::from_str_radix(s.trim_start_matches("0x").trim_start_matches("0X"), 16)
                        .unwrap_or(0)
                }
                None => {
                    let h = stable_hash(&[&plan.name, &disk.id, "signature"]);
                    u32::from_le_bytes([h[0], h[1], h[2], h[3]])
                }
            });
            if out.signature == Some(0) {
                diags.push(
                    Diagnostic::warning(
                        codes::DISK_IDENTITY,
                        format!("{dp}/signature"),
                        "disk signature 0 means \"no signature\" to Windows",
                    )
                    .help("ASR recreates the original signature: copy it from the backup"),
                );
            }
            for (j, p) in disk.partitions.iter().enumerate() {
                if p.guid.is_some() {
                    diags.push(Diagnostic::error(
                        codes::DISK_IDENTITY,
                        format!("{dp}/partitions/{j}/guid"),
                        "partition GUIDs exist only in GPT tables",
                    ));
                }
                if p.name.is_some() {
                    diags.push(Diagnostic::warning(
                        codes::DISK_IDENTITY,
                        format!("{dp}/partitions/{j}/name"),
                        "partition names exist only in GPT tables; this one is ignored",
                    ));
                }
            }
        }
        TableKind::Gpt => {
            if disk.signature.is_some() {
                diags.push(
                    Diagnostic::error(
                        codes::DISK_IDENTITY,
                        format!("{dp}/signature"),
                        "a GPT disk has a GUID, not a signature",
                    )
                    .help("use `guid: <uuid>`, or `table: mbr`"),
                );
            }
            out.guid = Some(
                disk.guid
                    .unwrap_or_else(|| derived_guid(&[&plan.name, &disk.id, "disk-guid"])),
            );
        }
    }
}

fn resolve_partitions(
    disk: &Disk,
    dp: &str,
    first: u64,
    end: u64,
    out: &mut CDisk,
    diags: &mut Vec<Diagnostic>,
) {
    let ss = u64::from(disk.sector_size);
    let mut cursor = first;
    let mut primaries = 0_u32;
    let mut logicals = 0_u32;
    let last = disk.partitions.len().saturating_sub(1);
    let mut ids = std::collections::HashMap::new();
    // Once a partition runs past the end, every later one packed after it
    // does too: report the first, not its echo.
    let mut overflowed = false;
    for (j, p) in disk.partitions.iter().enumerate() {
        let pp = format!("{dp}/partitions/{j}");
        if let Some(first) = ids.insert(p.id.as_str(), j) {
            diags.push(
                Diagnostic::error(
                    codes::DUPLICATE_ID,
                    format!("{pp}/id"),
                    format!("duplicate partition id `{}` on disk `{}`", p.id, disk.id),
                )
                .related(format!("{dp}/partitions/{first}/id"), "first defined here"),
            );
        }
        let logical = p.logical && disk.table == TableKind::Mbr;
        if p.logical && disk.table == TableKind::Gpt {
            diags.push(
                Diagnostic::error(
                    codes::LOGICAL_ON_GPT,
                    format!("{pp}/logical"),
                    "logical partitions exist only in MBR tables",
                )
                .help("GPT holds 128 partitions without an extended container: drop `logical`"),
            );
        }
        // A logical partition's EBR sits `ebr_gap` sectors before it.
        let packed_from = if logical {
            cursor.saturating_add(ebr_gap(disk).saturating_mul(ss))
        } else {
            cursor
        };
        let start = match p.start {
            Some(s) => {
                let b = s.bytes(ss).unwrap_or(u64::MAX);
                if b % ss != 0 {
                    diags.push(
                        Diagnostic::error(
                            codes::MISALIGNED,
                            format!("{pp}/start"),
                            format!("start {b} is not on a {ss}-byte sector boundary"),
                        )
                        .help(format!(
                            "start it at {}",
                            human_bytes(align_up(b, MIB).unwrap_or(b))
                        )),
                    );
                } else if b % MIB != 0 {
                    diags.push(
                        Diagnostic::warning(
                            codes::UNDER_ALIGNED,
                            format!("{pp}/start"),
                            format!("start {} is not 1 MiB aligned", human_bytes(b)),
                        )
                        .help("modern disks and SSDs are fastest with 1 MiB alignment"),
                    );
                }
                b
            }
            None => align_up(packed_from, MIB).unwrap_or(u64::MAX),
        };
        let (size, min_size) = match p.size {
            PartSize::Rest(_) => {
                if j != last {
                    diags.push(
                        Diagnostic::error(
                            codes::REST_MISPLACED,
                            format!("{pp}/size"),
                            "`rest` must be the last partition of its disk",
                        )
                        .help("move this partition to the end of the list, or give it a size"),
                    );
                }
                (None, end.saturating_sub(start) / ss * ss)
            }
            PartSize::Size(s) => {
                let b = s.bytes(ss).unwrap_or(u64::MAX);
                if b % ss != 0 {
                    diags.push(
                        Diagnostic::error(
                            codes::MISALIGNED,
                            format!("{pp}/size"),
                            format!("size {b} is not a whole number of {ss}-byte sectors"),
                        )
                        .help(format!("use {}", human_bytes(align_up(b, ss).unwrap_or(b)))),
                    );
                }
                (Some(b), b)
            }
        };
        let echo = overflowed && p.start.is_none();
        if min_size == 0 && !echo {
            diags.push(
                Diagnostic::error(
                    codes::EMPTY_PARTITION,
                    format!("{pp}/size"),
                    format!("partition `{}` is empty", p.id),
                )
                .help(if size.is_none() {
                    "no room is left on the disk for `rest`"
                } else {
                    "give it a size above zero"
                }),
            );
        }
        let stop = start.checked_add(min_size);
        let outside = start < first || stop.is_none_or(|e| e > end);
        if outside && !echo {
            let (code, what) = if disk.table == TableKind::Gpt
                && (start < first || stop.is_some_and(|e| e <= end + first))
            {
                (codes::GPT_HEADER_ROOM, "GPT headers")
            } else {
                (codes::OUTSIDE_DISK, "disk")
            };
            let help = if start < first {
                format!(
                    "partitions start at {} or later on this disk",
                    human_bytes(align_up(first, MIB).unwrap_or(first))
                )
            } else {
                let disk_at_least = stop
                    .and_then(|s| s.checked_add(out.min_size.saturating_sub(end)))
                    .map_or_else(|| "a size that fits in 64 bits".to_string(), human_bytes);
                if start >= end {
                    format!(
                        "it starts at {}, where the usable space has already ended ({}): move it, or make the disk at least {disk_at_least}",
                        human_bytes(start),
                        human_bytes(end),
                    )
                } else {
                    format!(
                        "the usable space ends at {}: make it at most {}, or the disk at least {disk_at_least}",
                        human_bytes(end),
                        human_bytes(end.saturating_sub(start)),
                    )
                }
            };
            diags.push(
                Diagnostic::error(
                    code,
                    format!(
                        "{pp}/{}",
                        if p.start.is_some() && start < first {
                            "start"
                        } else {
                            "size"
                        }
                    ),
                    format!(
                        "partition `{}` ({} at {}) does not fit inside the {what}",
                        p.id,
                        human_bytes(min_size),
                        human_bytes(start)
                    ),
                )
                .help(help),
            );
        }
        let number = if logical {
            logicals += 1;
            4 + logicals
        } else {
            primaries += 1;
            primaries
        };
        let (mbr_type, type_guid) = match part_type(&p.kind, disk.table) {
            Ok(t) => t,
            Err(help) => {
                diags.push(
                    Diagnostic::error(
                        codes::UNKNOWN_PART_TYPE,
                        format!("{pp}/type"),
                        format!(
                            "partition type `{}` is not usable in an {} table",
                            p.kind,
                            table_name(disk.table)
                        ),
                    )
                    .help(help),
                );
                (None, None)
            }
        };
        if p.bootable && disk.table == TableKind::Gpt {
            diags.push(
                Diagnostic::warning(
                    codes::DISK_IDENTITY,
                    format!("{pp}/bootable"),
                    "`bootable` is the MBR active flag; GPT disks boot from an EFI partition",
                )
                .help("use `type: efi` for the boot partition"),
            );
        }
        out.partitions.push(CPartition {
            id: p.id.clone(),
            number,
            start,
            size,
            min_size,
            mbr_type,
            type_guid,
            guid: match disk.table {
                TableKind::Gpt => Some(p.guid.unwrap_or_else(|| {
                    derived_guid(&[
                        &out.guid.map(|g| g.to_string()).unwrap_or_default(),
                        &p.id,
                        "partition-guid",
                    ])
                })),
                TableKind::Mbr => None,
            },
            name: match disk.table {
                TableKind::Gpt => Some(p.name.clone().unwrap_or_else(|| p.id.clone())),
                TableKind::Mbr => None,
            },
            bootable: p.bootable,
            logical,
            critical: disk.critical,
            content: p.content.clone(),
            volume: None,
        });
        overflowed |= stop.is_none_or(|e| e > end);
        cursor = stop.unwrap_or(u64::MAX);
    }
}

/// Overlaps, found by sorting on start and sweeping; each reported once, at
/// the partition listed later, naming the one it runs into.
fn check_overlaps(dp: &str, disk: &CDisk, diags: &mut Vec<Diagnostic>) {
    let mut order: Vec<usize> = (0..disk.partitions.len()).collect();
    order.sort_by_key(|&j| (disk.partitions[j].start, j));
    let ss = u64::from(disk.sector_size);
    let gap = disk.extended.map_or(1, |e| e.ebr_gap).saturating_mul(ss);
    let mut reach: Option<usize> = None; // partition that ends furthest so far
    for &j in &order {
        let p = &disk.partitions[j];
        if let Some(r) = reach {
            let q = &disk.partitions[r];
            let q_end = q.start.saturating_add(q.min_size);
            // An EBR needs the sector `gap` before a logical partition.
            let ebr_room = if p.logical { gap } else { 0 };
            let need = q_end.saturating_add(ebr_room);
            if p.start < need && p.min_size > 0 && q.min_size > 0 {
                let (later, earlier) = if j > r { (j, r) } else { (r, j) };
                let (lp, ep) = (&disk.partitions[later], &disk.partitions[earlier]);
                let free = align_up(need, MIB).unwrap_or(q_end);
                let msg = if p.start < q_end {
                    format!("partition `{}` overlaps `{}`", lp.id, ep.id)
                } else {
                    format!(
                        "logical partition `{}` leaves no room for its EBR after `{}`",
                        p.id, q.id
                    )
                };
                diags.push(
                    Diagnostic::error(
                        codes::OVERLAP,
                        format!("{dp}/partitions/{later}/start"),
                        msg,
                    )
                    .related(
                        format!("{dp}/partitions/{earlier}"),
                        format!(
                            "`{}` spans {}..{}",
                            ep.id,
                            human_bytes(ep.start),
                            human_bytes(ep.start.saturating_add(ep.min_size))
                        ),
                    )
                    .help(format!("start it at {} or later", human_bytes(free))),
                );
            }
            if p.start.saturating_add(p.min_size) > q_end {
                reach = Some(j);
            }
        } else {
            reach = Some(j);
        }
    }
}

/// The sectors from each EBR to its logical partition the plan asks for
/// (1 when it says nothing or something invalid, which RP0344 reports).
fn ebr_gap(disk: &Disk) -> u64 {
    disk.extended
        .as_ref()
        .and_then(|e| e.ebr_gap)
        .filter(|&g| g > 0)
        .unwrap_or(1)
}

/// Check `disk.extended` and, when it is valid, put it in `out`.
fn resolve_extended(
    plan: &Plan,
    disk: &Disk,
    dp: &str,
    total: u64,
    out: &mut CDisk,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(ext) = &disk.extended else {
        return;
    };
    let ep = format!("{dp}/extended");
    let ss = u64::from(disk.sector_size);
    let logicals: Vec<&CPartition> = out.partitions.iter().filter(|p| p.logical).collect();
    if disk.table != TableKind::Mbr
        || logicals.is_empty()
        || super::volumes::is_dynamic(plan, &disk.id)
    {
        diags.push(
            Diagnostic::error(
                codes::EXTENDED_UNUSED,
                ep,
                "`extended` describes the MBR extended container, which only an MBR disk with logical partitions has",
            )
            .help("drop `extended`, or mark partitions `logical: true`"),
        );
        return;
    }
    let mut ok = true;
    let mbr_type = match ext.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("0x0f") => 0x0f,
        Some("0x05") => 0x05,
        Some(other) => {
            diags.push(
                Diagnostic::error(
                    codes::EXTENDED_TYPE,
                    format!("{ep}/type"),
                    format!(
                        "extended container type `{other}`: only \"0x05\" and \"0x0f\" are written"
                    ),
                )
                .help("use \"0x05\" as Windows XP does, or \"0x0f\""),
            );
            ok = false;
            0x0f
        }
    };
    let gap = ext.ebr_gap.unwrap_or(1);
    let first_start = logicals.first().map_or(0, |p| p.start);
    match gap.checked_mul(ss) {
        Some(0) => {
            diags.push(
                Diagnostic::error(
                    codes::EBR_GAP,
                    format!("{ep}/ebr_gap"),
                    "`ebr_gap` is 0: an EBR cannot share its partition's first sector",
                )
                .help("use 1 (rplan's default) or 63 (Windows XP's)"),
            );
            ok = false;
        }
        Some(g) if g < first_start => {}
        _ => {
            diags.push(
                Diagnostic::error(
                    codes::EBR_GAP,
                    format!("{ep}/ebr_gap"),
                    format!(
                        "an EBR {gap} sectors before the first logical partition (at {}) would not fit after the MBR",
                        human_bytes(first_start)
                    ),
                )
                .help("use a smaller `ebr_gap`, or start the first logical partition later"),
            );
            ok = false;
        }
    }
    let mut end = None;
    if let Some(e) = ext.end {
        let last = logicals.last().copied();
        let last_end = last.and_then(|p| p.size.map(|z| p.start.saturating_add(z)));
        let err = match (e.bytes(ss), last_end) {
            (_, None) => Some(
                "the last logical partition's size is `rest`: the container ends with it"
                    .to_string(),
            ),
            (None, _) => Some("`end` is beyond 2^64 bytes".to_string()),
            (Some(b), _) if b % ss != 0 => {
                Some(format!("`end` {b} is not on a {ss}-byte sector boundary"))
            }
            (Some(b), Some(l)) if b < l => Some(format!(
                "`end` {} is before the end of the last logical partition ({})",
                human_bytes(b),
                human_bytes(l)
            )),
            (Some(b), _) if b > total => Some(format!(
                "`end` {} is past the end of the disk ({})",
                human_bytes(b),
                human_bytes(total)
            )),
            (Some(b), _) => {
                end = Some(b);
                None
            }
        };
        if let Some(msg) = err {
            diags.push(
                Diagnostic::error(codes::EXTENDED_END, format!("{ep}/end"), msg)
                    .help("end the container at or after its last logical partition, inside the disk, or drop `end`"),
            );
            ok = false;
        }
    }
    if ok {
        out.extended = Some(CExtended {
            mbr_type,
            ebr_gap: gap,
            end,
        });
    }
}

fn check_mbr(dp: &str, out: &CDisk, diags: &mut Vec<Diagnostic>) {
    let primaries: Vec<usize> = (0..out.partitions.len())
        .filter(|&j| !out.partitions[j].logical)
        .collect();
    let has_logical = out.partitions.iter().any(|p| p.logical);
    let slots = primaries.len() + usize::from(has_logical);
    if slots > 4 {
        let j = primaries
            .get(if has_logical { 3 } else { 4 })
            .copied()
            .unwrap_or(0);
        diags.push(
            Diagnostic::error(
                codes::MBR_PRIMARIES,
                format!("{dp}/partitions/{j}"),
                format!(
                    "{} primary partitions{}; an MBR table holds 4",
                    primaries.len(),
                    if has_logical {
                        " plus the extended container"
                    } else {
                        ""
                    }
                ),
            )
            .help("mark the later partitions `logical: true`, or use `table: gpt`"),
        );
    }
    if has_logical {
        // The extended container is one contiguous range: no primary inside it.
        let logical = out.partitions.iter().filter(|p| p.logical);
        let lo = logical.clone().map(|p| p.start).min().unwrap_or(0);
        let hi = logical
            .map(|p| p.start.saturating_add(p.min_size))
            .max()
            .unwrap_or(0);
        let hi = out.extended.and_then(|e| e.end).unwrap_or(hi).max(hi);
        for &j in &primaries {
            let p = &out.partitions[j];
            if p.start > lo && p.start < hi {
                diags.push(
                    Diagnostic::error(codes::MBR_PRIMARIES, format!("{dp}/partitions/{j}"), format!("primary partition `{}` lies between logical partitions", p.id))
                        .help("logical partitions share one extended container: keep them together, or make this one logical too"),
                );
            }
        }
    }
}

fn check_guids(plan: &Plan, diags: &mut Vec<Diagnostic>) {
    let mut seen: std::collections::HashMap<Uuid, String> = std::collections::HashMap::new();
    for (i, d) in plan.disks.iter().enumerate() {
        let mut check = |g: Option<Uuid>, pointer: String| {
            let Some(g) = g else { return };
            if let Some(first) = seen.get(&g) {
                diags.push(
                    Diagnostic::error(
                        codes::GPT_DUPLICATE_GUID,
                        pointer,
                        format!("GUID {g} is used twice"),
                    )
                    .related(first.clone(), "first used here")
                    .help("every disk and partition needs its own GUID"),
                );
            } else {
                seen.insert(g, pointer);
            }
        };
        check(d.guid, format!("/disks/{i}/guid"));
        for (j, p) in d.partitions.iter().enumerate() {
            check(p.guid, format!("/disks/{i}/partitions/{j}/guid"));
        }
    }
}

/// Windows XP finds its disks by their identity: `MountedDevices` maps
/// drive letters to an MBR signature (or GPT GUID) and boot.ini's
/// `signature()` paths name the boot disk by it. Two disks with one
/// signature make Windows rewrite one of them at boot, and a derived
/// signature is not the one the backed-up system knows.
fn check_identities(plan: &Plan, disks: &[CDisk], diags: &mut Vec<Diagnostic>) {
    let mut seen: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, (d, cd)) in plan.disks.iter().zip(disks).enumerate() {
        let dp = format!("/disks/{i}");
        match d.table {
            TableKind::Mbr if d.signature.is_none() => diags.push(
                Diagnostic::warning(
                    codes::DISK_IDENTITY,
                    dp.clone(),
                    format!(
                        "disk `{}` has no `signature`; rplan would write 0x{:08x}, derived from the plan",
                        d.id,
                        cd.signature.unwrap_or(0)
                    ),
                )
                .help("Windows XP finds its volumes by disk signature (MountedDevices, boot.ini): copy the original from the backup (`rplan capture` records it)"),
            ),
            TableKind::Gpt if d.guid.is_none() => diags.push(
                Diagnostic::warning(
                    codes::DISK_IDENTITY,
                    dp.clone(),
                    format!(
                        "disk `{}` has no `guid`; rplan would write {}, derived from the plan",
                        d.id,
                        cd.guid.unwrap_or_default()
                    ),
                )
                .help("Windows finds its disks by GUID: copy the original from the backup (`rplan capture` records it)"),
            ),
            _ => {}
        }
        let Some(sig) = cd
            .signature
            .filter(|&s| s != 0 && d.table == TableKind::Mbr)
        else {
            continue;
        };
        match seen.get(&sig) {
            Some(&first) => {
                let at = |k: usize| {
                    if plan.disks[k].signature.is_some() {
                        format!("/disks/{k}/signature")
                    } else {
                        format!("/disks/{k}")
                    }
                };
                diags.push(
                    Diagnostic::error(
                        codes::DUPLICATE_IDENTITY,
                        at(i),
                        format!(
                            "disks `{}` and `{}` have the same signature 0x{sig:08x}",
                            plan.disks[first].id, d.id
                        ),
                    )
                    .related(at(first), "the same signature")
                    .help("every disk needs its own signature: Windows would rewrite one of them at boot and lose its drive letters"),
                );
            }
            None => {
                seen.insert(sig, i);
            }
        }
    }
}

fn table_name(t: TableKind) -> &'static str {
    match t {
        TableKind::Mbr => "MBR",
        TableKind::Gpt => "GPT",
    }
}

const BASIC_DATA: &str = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";
const LINUX_DATA: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";

/// Partition type aliases: (alias, MBR byte, GPT type GUID).
pub const PART_TYPES: &[(&str, Option<u8>, Option<&str>)] = &[
    ("ntfs", Some(0x07), Some(BASIC_DATA)),
    ("fat32", Some(0x0c), Some(BASIC_DATA)),
    ("fat16", Some(0x06), Some(BASIC_DATA)),
    ("ext4", Some(0x83), Some(LINUX_DATA)),
    ("linux", Some(0x83), Some(LINUX_DATA)),
    (
        "linux-raid",
        Some(0xfd),
        Some("a19d880f-05fc-4d3b-a006-743f0f84911e"),
    ),
    (
        "efi",
        Some(0xef),
        Some("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
    ),
    ("msr", None, Some("e3c9e316-0b5c-4db8-817d-f92df00215ae")),
    (
        "ldm",
        Some(0x42),
        Some("af9b60a0-1431-4f62-bc68-3311714a69ad"),
    ),
];

/// Resolve a partition type for a table: (MBR byte, GPT GUID), or help text.
pub fn part_type(kind: &str, table: TableKind) -> Result<(Option<u8>, Option<Uuid>), String> {
    let lower = kind.to_ascii_lowercase();
    if let Some((_, byte, guid)) = PART_TYPES.iter().find(|(a, ..)| *a == lower) {
        return match table {
            TableKind::Mbr => byte
                .map(|b| (Some(b), None))
                .ok_or_else(|| format!("`{kind}` exists only on GPT disks")),
            TableKind::Gpt => Ok((None, guid.and_then(|g| Uuid::parse_str(g).ok()))),
        };
    }
    let aliases: Vec<&str> = PART_TYPES.iter().map(|(a, ..)| *a).collect();
    if let Some(hex) = lower.strip_prefix("0x") {
        let byte = u8::from_str_radix(hex, 16).map_err(|_| {
            format!(
                "an MBR type is one byte, \"0x00\" to \"0xff\"; or one of {}",
                aliases.join(", ")
            )
        })?;
        return match table {
            TableKind::Mbr if matches!(byte, 0x05 | 0x0f | 0x85) => Err(
                "rplan lays out the extended container itself: mark partitions `logical: true`"
                    .into(),
            ),
            TableKind::Mbr if byte == 0 => Err("type 0x00 marks an unused entry".into()),
            TableKind::Mbr => Ok((Some(byte), None)),
            TableKind::Gpt => Err(format!(
                "GPT types are GUIDs; use an alias: {}",
                aliases.join(", ")
            )),
        };
    }
    if let Ok(guid) = Uuid::parse_str(&lower) {
        return match table {
            TableKind::Gpt if guid.is_nil() => Err("the nil GUID marks an unused entry".into()),
            TableKind::Gpt => Ok((None, Some(guid))),
            TableKind::Mbr => Err(format!(
                "MBR types are bytes like \"0x07\"; or use an alias: {}",
                aliases.join(", ")
            )),
        };
    }
    let candidates: Vec<String> = aliases.iter().map(|s| s.to_string()).collect();
    Err(match crate::schema::did_you_mean(&lower, candidates.iter()) {
        Some(s) => format!("did you mean `{s}`? types are an alias ({}), an MBR byte \"0x07\" or a GPT type GUID", aliases.join(", ")),
        None => format!("types are an alias ({}), an MBR byte \"0x07\" or a GPT type GUID", aliases.join(", ")),
    })
}

pub fn stable_hash(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// A GUID derived from `parts`: same input, same GUID (RFC 9562 version 8).
pub fn derived_guid(parts: &[&str]) -> Uuid {
    let h = stable_hash(parts);
    let mut b = [0_u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}
