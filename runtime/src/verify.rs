//! `rplan verify`: does a machine still match its plan (drift)?
//!
//! For: comparing what [`crate::inspect`] and [`crate::table`] read off
//! each target with what the compiled plan says: the table's kind and
//! identity (signature, GUID), each partition's place, type, flags, GUID
//! and name, the filesystem type and label of what the plan formats, and
//! (with `content`) every restored range against its artifact's sha256.
//!
//! Only what the plan describes is compared: a GPT name or partition GUID
//! the plan leaves out, a filesystem inside an image, free space, files
//! installed into a filesystem, are not drift. Partitions the plan does
//! not have are (applying the plan would remove them). Not for: fixing
//! anything; it opens every target read-only.

use crate::inspect::{self, approx_bytes};
use crate::table::{self, TableKind};
use crate::target::{self, Access, Device};
use rplan_compiler::compiled::{CDisk, CompiledPlan};
use rplan_compiler::model::{Fs, TableKind as PlanTable};
use std::path::Path;

/// One difference between a target and the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// `changed`, `missing` (in the plan, not on the disk) or `extra` (on
    /// the disk, not in the plan).
    pub change: &'static str,
    /// `disk0` or `disk0/data`.
    pub item: String,
    /// What differs: `type`, `label`, `signature`, `content`…
    pub field: String,
    /// The plan's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The target's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

impl Drift {
    fn changed(item: &str, field: &str, plan: impl ToString, found: impl ToString) -> Drift {
        Drift {
            change: "changed",
            item: item.to_string(),
            field: field.to_string(),
            plan: Some(plan.to_string()),
            found: Some(found.to_string()),
        }
    }

    /// In the dry-run's style: `~ partition disk0/data: type 0x07 → 0x83`.
    pub fn line(&self) -> String {
        let plan = self.plan.as_deref().unwrap_or("");
        let found = self.found.as_deref().unwrap_or("");
        match self.change {
            "missing" => format!(
                "- {}: {} missing (the plan has {plan})",
                self.item, self.field
            ),
            "extra" => format!("+ {}: {} not in the plan ({found})", self.item, self.field),
            _ => format!("~ {}: {} {plan} → {found}", self.item, self.field),
        }
    }
}

/// Compare `disk` with the target at `path`.
pub fn verify_disk(
    plan: &CompiledPlan,
    disk: &CDisk,
    path: &Path,
    content: bool,
) -> Result<Vec<Drift>, String> {
    let dev = target::open_target(path, Access::ReadOnly).map_err(|e| e.to_string())?;
    let dev = dev.as_ref();
    let found = inspect::inspect(dev, path).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let id = &disk.id;
    if dev.len() < disk.min_size {
        out.push(Drift::changed(
            id,
            "size",
            format!("at least {}", approx_bytes(disk.min_size)),
            approx_bytes(dev.len()),
        ));
    }
    let existing = match table::read_table(dev) {
        Ok(Some(t)) => t,
        Ok(None) | Err(_) => {
            out.push(Drift {
                change: "missing",
                item: id.clone(),
                field: "partition table".into(),
                plan: Some(plan_table_name(disk)),
                found: None,
            });
            return Ok(out);
        }
    };
    match (disk.table, existing.kind) {
        (PlanTable::Mbr, TableKind::Mbr { signature }) => {
            if let Some(want) = disk.signature.filter(|&w| w != signature) {
                out.push(Drift::changed(
                    id,
                    "signature",
                    format!("0x{want:08x}"),
                    format!("0x{signature:08x}"),
                ));
            }
        }
        (PlanTable::Gpt, TableKind::Gpt { disk_guid }) => {
            if let Some(want) = disk.guid.filter(|&w| w != disk_guid) {
                out.push(Drift::changed(id, "GUID", want, disk_guid));
            }
        }
        (_, kind) => {
            out.push(Drift::changed(
                id,
                "partition table",
                plan_table_name(disk),
                match kind {
                    TableKind::Mbr { .. } => "MBR",
                    TableKind::Gpt { .. } => "GPT",
                },
            ));
            return Ok(out);
        }
    }
    if crate::ldm::is_dynamic(disk) {
        // Its partitions are LDM partitions, compared as the members of
        // its volumes ([`verify_volumes`]); the MBR says "dynamic".
        if !existing.partitions.iter().any(|e| e.mbr_type == 0x42) {
            out.push(Drift::changed(
                id,
                "partition table",
                "a dynamic disk (one partition of type 0x42)",
                "no 0x42 partition",
            ));
        }
        return Ok(out);
    }
    let ss = u64::from(existing.sector_size);
    for p in &disk.partitions {
        let item = format!("{id}/{}", p.id);
        let Some(e) = existing.partitions.iter().find(|e| e.number == p.number) else {
            out.push(Drift {
                change: "missing",
                item,
                field: format!("partition {}", p.number),
                plan: Some(place(p.start, p.size)),
                found: None,
            });
            continue;
        };
        let (start, size) = (
            e.start_lba.saturating_mul(ss),
            e.size_lba.saturating_mul(ss),
        );
        if start != p.start || p.size.is_some_and(|s| s != size) {
            out.push(Drift::changed(
                &item,
                "place",
                place(p.start, p.size),
                place(start, Some(size)),
            ));
        }
        match (p.mbr_type, p.type_guid) {
            (Some(t), _) if t != e.mbr_type => out.push(Drift::changed(
                &item,
                "type",
                format!("0x{t:02x}"),
                format!("0x{:02x}", e.mbr_type),
            )),
            (_, Some(g)) if g != e.gpt_type => {
                out.push(Drift::changed(&item, "type", g, e.gpt_type))
            }
            _ => {}
        }
        if matches!(disk.table, PlanTable::Mbr) && p.bootable != e.bootable {
            out.push(Drift::changed(&item, "bootable", p.bootable, e.bootable));
        }
        if let Some(g) = p.guid.filter(|g| Some(*g) != e.guid) {
            out.push(Drift::changed(
                &item,
                "GUID",
                g,
                e.guid.map_or("none".to_string(), |g| g.to_string()),
            ));
        }
        if let Some(n) = p.name.as_ref().filter(|n| **n != e.name) {
            out.push(Drift::changed(&item, "name", n, &e.name));
        }
        let fs = found
            .partitions
            .iter()
            .find(|f| f.number == p.number)
            .and_then(|f| f.content.clone());
        let Some(c) = &p.content else { continue };
        if let Some(f) = &c.format {
            let found = fs
                .as_ref()
                .map(|s| (s.kind.as_str(), s.version.as_deref(), s.label.as_deref()));
            out.extend(format_drift(&item, f, found));
        }
        if let (true, Some(image)) = (content, &c.image) {
            if let Some(d) = content_drift(plan, dev, p.start, image, &item)? {
                out.push(d);
            }
        }
    }
    for e in &existing.partitions {
        if !disk.partitions.iter().any(|p| p.number == e.number) {
            out.push(Drift {
                change: "extra",
                item: id.clone(),
                field: format!("partition {}", e.number),
                plan: None,
                found: Some(place(
                    e.start_lba.saturating_mul(ss),
                    Some(e.size_lba.saturating_mul(ss)),
                )),
            });
        }
    }
    Ok(out)
}

/// Compare the plan's dynamic volumes with the LDM database on the
/// targets (`(plan disk index, path)`): each volume's layout, size, stripe
/// size and members (disk and place), as the plan would write them on
/// targets of these sizes. Volumes are matched by their first member, not
/// by name or GUID (a database Windows wrote names them its own way).
/// Volumes with a member on a disk not given are left out; volumes in the
/// database the plan does not have are `extra`.
pub fn verify_volumes(
    plan: &CompiledPlan,
    targets: &[(usize, &Path)],
    content: bool,
) -> Result<Vec<Drift>, String> {
    use crate::ldm::read::{read_database, LdmLayout};
    let mut out = Vec::new();
    if plan.volumes.is_empty() {
        return Ok(out);
    }
    let mut lens = vec![0u64; plan.disks.len()];
    let mut paths: Vec<Option<&Path>> = vec![None; plan.disks.len()];
    for &(di, path) in targets {
        if let Some(p) = paths.get_mut(di) {
            *p = Some(path);
        }
    }
    // The database each given dynamic disk carries, by plan disk index.
    let mut dbs = vec![None; plan.disks.len()];
    for &(di, path) in targets {
        let Some(disk) = plan.disks.get(di).filter(|d| crate::ldm::is_dynamic(d)) else {
            continue;
        };
        let dev = target::open_target(path, Access::ReadOnly).map_err(|e| e.to_string())?;
        lens[di] = dev.len();
        match read_database(dev.as_ref()) {
            Ok(Some(db)) => dbs[di] = Some(db),
            Ok(None) => out.push(Drift {
                change: "missing",
                item: disk.id.clone(),
                field: "LDM database".into(),
                plan: Some("a dynamic disk".into()),
                found: None,
            }),
            Err(e) => out.push(Drift::changed(&disk.id, "LDM database", "readable", e)),
        }
    }
    let Some(db) = dbs.iter().flatten().next().cloned() else {
        return Ok(out);
    };
    for (di, d) in plan.disks.iter().enumerate() {
        if lens[di] == 0 {
            lens[di] = d.min_size;
        }
    }
    let group = crate::ldm::group(plan, &lens)?.ok_or("the plan has no volumes")?;
    let dynamic: Vec<usize> = (0..plan.disks.len())
        .filter(|&di| crate::ldm::is_dynamic(&plan.disks[di]))
        .collect();
    // A member as `disk/partition at start` in plan terms, from the
    // database's disk GUID and public-region start.
    let place_of = |guid: &str, start: u64, size: u64| -> String {
        let hit = dynamic.iter().find_map(|&di| {
            let x = dbs[di].as_ref().filter(|x| x.disk_guid == guid)?;
            Some((di, x.public_start.checked_add(start)? * crate::ldm::SECTOR))
        });
        match hit {
            Some((di, at)) => {
                let d = &plan.disks[di];
                let part = d
                    .partitions
                    .iter()
                    .find(|p| p.start == at)
                    .map_or(format!("at {at}"), |p| p.id.clone());
                format!(
                    "{}/{part} ({})",
                    d.id,
                    approx_bytes(size * crate::ldm::SECTOR)
                )
            }
            None => format!(
                "a disk not given ({})",
                approx_bytes(size * crate::ldm::SECTOR)
            ),
        }
    };
    let mut matched = Vec::new();
    for (v, want) in plan.volumes.iter().zip(&group.volumes) {
        let item = format!("volume {}", v.id);
        let parts: Vec<&crate::ldm::database::Partition> =
            want.components.iter().flat_map(|c| &c.partitions).collect();
        // Where each expected member is: its target's disk GUID.
        let Some(guids) = parts
            .iter()
            .map(|p| {
                let di = *dynamic.get(p.disk)?;
                Some(dbs[di].as_ref()?.disk_guid.clone())
            })
            .collect::<Option<Vec<String>>>()
        else {
            continue;
        };
        let found = db.volumes.iter().position(|f| {
            f.members.first().is_some_and(|m| {
                db.disks.get(m.disk).map(|d| d.guid.as_str()) == Some(guids[0].as_str())
                    && m.start == parts[0].start
            })
        });
        let Some(fi) = found else {
            out.push(Drift {
                change: "missing",
                item,
                field: "dynamic volume".into(),
                plan: Some(format!(
                    "{} over {}",
                    v.layout.name(),
                    v.members
                        .iter()
                        .map(|m| format!("{}/{}", m.disk, m.partition))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                found: None,
            });
            continue;
        };
        matched.push(fi);
        let f = &db.volumes[fi];
        let layout = match f.layout {
            LdmLayout::Simple | LdmLayout::Spanned => "spanned",
            LdmLayout::Striped { .. } => "striped",
            LdmLayout::Mirrored => "mirrored",
            LdmLayout::Raid5 { .. } => "raid5",
        };
        let want_layout = match v.layout {
            rplan_compiler::model::Layout::Simple => "spanned",
            l => l.name(),
        };
        if layout != want_layout {
            out.push(Drift::changed(&item, "layout", want_layout, layout));
            continue;
        }
        let chunk = match f.layout {
            LdmLayout::Striped { chunk } | LdmLayout::Raid5 { chunk } => Some(chunk),
            _ => None,
        };
        let want_chunk = want.components.first().and_then(|c| c.chunk);
        if chunk != want_chunk {
            let show = |c: Option<u64>| {
                c.map_or("none".to_string(), |c| approx_bytes(c * crate::ldm::SECTOR))
            };
            out.push(Drift::changed(
                &item,
                "stripe size",
                show(want_chunk),
                show(chunk),
            ));
        }
        if f.size != want.size {
            out.push(Drift::changed(
                &item,
                "size",
                approx_bytes(want.size * crate::ldm::SECTOR),
                approx_bytes(f.size * crate::ldm::SECTOR),
            ));
        }
        let want_members: Vec<String> = parts
            .iter()
            .zip(&guids)
            .map(|(p, g)| place_of(g, p.start, p.size))
            .collect();
        let got_members: Vec<String> = f
            .members
            .iter()
            .map(|m| {
                let g = db.disks.get(m.disk).map_or("", |d| d.guid.as_str());
                place_of(g, m.start, m.size)
            })
            .collect();
        if want_members != got_members {
            out.push(Drift::changed(
                &item,
                "members",
                want_members.join(", "),
                got_members.join(", "),
            ));
        }
        if let (true, Some(image)) = (content, v.content.as_ref().and_then(|c| c.image.as_ref())) {
            let vol = open_volume(plan, v, &lens, &paths)?;
            if let Some(d) = content_drift(plan, &vol, 0, image, &item)? {
                out.push(d);
            }
        }
        if let Some(f) = v.content.as_ref().and_then(|c| c.format.as_ref()) {
            let vol = open_volume(plan, v, &lens, &paths)?;
            let found = crate::capture::volumes::probe_fs(&vol).map_err(|e| e.to_string())?;
            let found = found
                .as_ref()
                .map(|s| (s.kind.as_str(), s.version.as_deref(), s.label.as_deref()));
            out.extend(format_drift(&item, f, found));
        }
    }
    for (fi, f) in db.volumes.iter().enumerate() {
        if !matched.contains(&fi) {
            out.push(Drift {
                change: "extra",
                item: db.group_name.clone(),
                field: format!("dynamic volume {}", f.name),
                plan: None,
                found: Some(approx_bytes(f.size.saturating_mul(crate::ldm::SECTOR))),
            });
        }
    }
    Ok(out)
}

/// A formatted partition's or volume's filesystem and label against
/// what blkid found (`(kind, version, label)`).
fn format_drift(
    item: &str,
    f: &rplan_compiler::model::Format,
    found: Option<(&str, Option<&str>, Option<&str>)>,
) -> Option<Drift> {
    let found_fs = found.map(|(kind, version, _)| fs_name(kind, version));
    if found_fs.as_deref() != Some(f.fs.name()) {
        return Some(Drift::changed(
            item,
            "filesystem",
            f.fs,
            found_fs.unwrap_or_else(|| "none".to_string()),
        ));
    }
    let want = f.label.as_ref()?;
    let got = found.and_then(|(_, _, l)| l).unwrap_or_default();
    let same = if f.fs.is_fat() {
        want.eq_ignore_ascii_case(got.trim_end())
    } else {
        want == got
    };
    (!same).then(|| Drift::changed(item, "label", want, got))
}

/// Plan volume `v`'s logical bytes, read through its layout on the
/// targets (`paths` by plan disk index).
fn open_volume(
    plan: &CompiledPlan,
    v: &rplan_compiler::compiled::CVolume,
    lens: &[u64],
    paths: &[Option<&Path>],
) -> Result<crate::capture::volumes::VolumeDevice, String> {
    let members = crate::layout::members(plan, v, |di| lens.get(di).copied().unwrap_or(0))
        .ok_or("a member not in the plan")?;
    let mut devices: Vec<Box<dyn Device>> = Vec::new();
    let mut index: Vec<usize> = Vec::new();
    let mut local = Vec::new();
    for m in &members {
        let i = match index.iter().position(|&d| d == m.device) {
            Some(i) => i,
            None => {
                let path = paths
                    .get(m.device)
                    .copied()
                    .flatten()
                    .ok_or("a member disk not given")?;
                devices
                    .push(target::open_target(path, Access::ReadOnly).map_err(|e| e.to_string())?);
                index.push(m.device);
                index.len() - 1
            }
        };
        local.push(crate::ldm::layout::Member { device: i, ..*m });
    }
    let layout = crate::ldm::volume_layout(v.layout, v.stripe_size);
    crate::capture::volumes::VolumeDevice::from_members(devices, layout, &local)
        .ok_or_else(|| "its members do not make a volume on these disks".to_string())
}

/// The image's bytes on the target against the artifact's sha256.
fn content_drift(
    plan: &CompiledPlan,
    dev: &dyn Device,
    start: u64,
    image: &str,
    item: &str,
) -> Result<Option<Drift>, String> {
    let Some(a) = plan.artifact(image) else {
        return Ok(None);
    };
    let Some(size) = a.size else {
        return Err(format!(
            "artifact `{}` has no size in the plan: its range cannot be hashed",
            a.id
        ));
    };
    let got =
        crate::executor::hash_range(dev, start, size, &mut |_| {}).map_err(|e| e.to_string())?;
    Ok((!got.eq_ignore_ascii_case(&a.sha256)).then(|| {
        Drift::changed(
            item,
            "content",
            format!("sha256 {} (artifact `{}`)", short(&a.sha256), a.id),
            format!("sha256 {}", short(&got)),
        )
    }))
}

fn short(h: &str) -> &str {
    h.get(..12).unwrap_or(h)
}

fn plan_table_name(d: &CDisk) -> String {
    match d.table {
        PlanTable::Mbr => "MBR".into(),
        PlanTable::Gpt => "GPT".into(),
    }
}

fn place(start: u64, size: Option<u64>) -> String {
    match size {
        Some(s) => format!("{} at {}", approx_bytes(s), start),
        None => format!("the rest of the disk from {start}"),
    }
}

/// The plan's name for a filesystem blkid found.
fn fs_name(kind: &str, version: Option<&str>) -> String {
    match (kind, version) {
        ("vfat", Some("FAT32")) => Fs::Fat32.name().to_string(),
        ("vfat", Some("FAT16")) => Fs::Fat16.name().to_string(),
        (k, _) => k.to_string(),
    }
}
