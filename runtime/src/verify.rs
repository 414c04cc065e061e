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
use rplan_compiler::compiled::{CDisk, CPartition, CompiledPlan};
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
            let found_fs = fs.as_ref().map(|s| fs_name(&s.kind, s.version.as_deref()));
            if found_fs.as_deref() != Some(f.fs.name()) {
                out.push(Drift::changed(
                    &item,
                    "filesystem",
                    f.fs,
                    found_fs.unwrap_or_else(|| "none".to_string()),
                ));
            } else if let Some(want) = &f.label {
                let got = fs
                    .as_ref()
                    .and_then(|s| s.label.clone())
                    .unwrap_or_default();
                let same = if f.fs.is_fat() {
                    want.eq_ignore_ascii_case(got.trim_end())
                } else {
                    *want == got
                };
                if !same {
                    out.push(Drift::changed(&item, "label", want, got));
                }
            }
        }
        if let (true, Some(image)) = (content, &c.image) {
            if let Some(d) = content_drift(plan, dev, p, image, &item)? {
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

/// The image's bytes on the target against the artifact's sha256.
fn content_drift(
    plan: &CompiledPlan,
    dev: &dyn Device,
    p: &CPartition,
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
        crate::executor::hash_range(dev, p.start, size, &mut |_| {}).map_err(|e| e.to_string())?;
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
