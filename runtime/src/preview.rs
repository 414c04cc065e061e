//! Before → after, per disk: what is on a target now (from [`inspect`]),
//! what the plan puts there, and what is destroyed on the way, in the
//! spirit of `terraform plan`. Apply's confirmation shows it before asking;
//! dry-run shows it after simulating, refined by the bytes the simulation
//! actually changed.
//!
//! Marks: `-` destroyed, `~` changed (same place, new content), `=` kept,
//! `+` created.

use crate::events::printable;
use crate::inspect::{approx_bytes, approx_size, FoundPartition, Inspection};
use crate::layout;
use crate::table::TableSpec;
use rplan_compiler::compiled::{CDisk, CPartition, CompiledPlan};
use rplan_compiler::model::Content;

/// One disk's before → after.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct DiskPreview {
    /// The plan's disk id.
    pub disk: String,
    /// The device or image file it goes onto.
    pub target: String,
    /// The target's size in bytes.
    pub size: u64,
    /// What is on the target now, and what happens to each thing.
    pub before: Vec<BeforeItem>,
    /// What the plan puts on the target.
    pub after: Vec<AfterItem>,
    /// Data that is gone once the plan has run.
    pub destroyed: Vec<Destroyed>,
}

/// What is on the target now, and what happens to it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct BeforeItem {
    /// `-` destroyed, `~` changed, `=` kept.
    pub change: String,
    /// `table`, `disk` (a signature on the bare disk) or `partition`.
    pub what: String,
    /// Partition number (sfdisk's numbering).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
    /// Offset in bytes.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// Table kind and identity, MBR type byte or GPT type GUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Filesystem or other signature (blkid's TYPE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<String>,
    /// Filesystem label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Filesystem UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Bytes in use, where the filesystem says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// The plan's partitions that take its place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced_by: Vec<String>,
}

/// What the plan puts on the target.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct AfterItem {
    /// `+` created, `~` changed, `=` kept.
    pub change: String,
    /// `table` or `partition`.
    pub what: String,
    /// The plan's id for it (partition id; disk id for the table).
    pub id: String,
    /// Offset in bytes.
    pub start: u64,
    /// On the real target (`rest` resolved).
    pub size: u64,
    /// MBR type byte or GPT type GUID; the table kind for the table.
    pub r#type: String,
    /// What goes into it: `restore system-image (16 MiB)`, `format ntfs `DATA``…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Data that is gone once the plan has run.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Destroyed {
    /// `ext4 `HOME``, `partition 2 (no filesystem)`, `GPT partition table`.
    pub what: String,
    /// Partition number, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Bytes (0 for a partition table).
    pub size: u64,
    /// Bytes in use, where the filesystem says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
}

impl Destroyed {
    /// `ext4 `HOME` 512 MiB (312 MiB used)`.
    pub fn describe(&self) -> String {
        if self.size == 0 {
            return self.what.clone();
        }
        format!("{} {}", self.what, approx_size(self.size, self.used))
    }
}

/// How much of the plan reaches this disk.
pub enum Reach<'a> {
    /// Apply's confirmation: the worst case, every write step writes.
    Worst,
    /// A simulation: the ASR stage did not reach the disk.
    Untouched,
    /// A simulation wrote these byte ranges.
    Wrote(&'a [(u64, u64)]),
}

pub fn preview(
    plan: &CompiledPlan,
    disk: &CDisk,
    target: &str,
    found: &Inspection,
    table_matched: bool,
    reach: Reach,
) -> DiskPreview {
    let len = found.size;
    let touched = |start: u64, size: u64| match reach {
        Reach::Worst => true,
        Reach::Untouched => false,
        Reach::Wrote(ranges) => ranges
            .iter()
            .any(|&(s, l)| s < start.saturating_add(size) && start < s.saturating_add(l)),
    };
    let untouched = matches!(reach, Reach::Untouched);
    let rewrite_table = !table_matched && !untouched;
    let spec = layout::table_spec(disk, len);
    let planned = planned(plan, disk, &spec, len);
    let same_place = |fp: &FoundPartition| {
        planned
            .iter()
            .find(|p| p.start == fp.start && p.size == fp.size && p.r#type == fp.r#type)
    };

    let mut before = Vec::new();
    let mut destroyed = Vec::new();
    if let Some(t) = &found.table {
        // Rewriting the disk's own table changes it; any other is gone.
        let change = match (rewrite_table, t.raw == Some(spec.kind)) {
            (false, _) => "=",
            (true, true) => "~",
            (true, false) => "-",
        };
        if change == "-" {
            destroyed.push(Destroyed {
                what: format!("{} partition table {}", t.kind.to_uppercase(), t.id),
                partition: None,
                size: 0,
                used: None,
            });
        }
        before.push(BeforeItem {
            change: change.into(),
            what: "table".into(),
            number: None,
            start: 0,
            size: len,
            r#type: Some(format!("{} {}", t.kind.to_uppercase(), t.id)),
            fs: None,
            label: None,
            uuid: None,
            used: None,
            replaced_by: Vec::new(),
        });
    }
    for s in &found.signatures {
        let change = if rewrite_table { "-" } else { "=" };
        if change == "-" {
            destroyed.push(Destroyed {
                what: format!("{} on the whole disk", s.describe()),
                partition: None,
                size: len,
                used: s.used,
            });
        }
        before.push(BeforeItem {
            change: change.into(),
            what: "disk".into(),
            number: None,
            start: 0,
            size: len,
            r#type: None,
            fs: Some(s.kind.clone()),
            label: s.label.clone(),
            uuid: s.uuid.clone(),
            used: s.used,
            replaced_by: Vec::new(),
        });
    }
    for fp in &found.partitions {
        let kept_place = same_place(fp);
        let written = touched(fp.start, fp.size);
        let change = match (untouched, kept_place, written) {
            (true, ..) => "=",
            (false, Some(_), false) => "=",
            (false, Some(_), true) => "~",
            (false, None, _) if !rewrite_table => "=",
            (false, None, _) => "-",
        };
        let replaced_by: Vec<String> = planned
            .iter()
            .filter(|p| {
                p.start < fp.start.saturating_add(fp.size)
                    && fp.start < p.start.saturating_add(p.size)
            })
            .map(|p| p.id.clone())
            .filter(|_| change != "=")
            .collect();
        if change != "=" {
            destroyed.push(Destroyed {
                what: match &fp.content {
                    Some(s) => s.describe(),
                    None => format!("partition {} (no filesystem found)", fp.number),
                },
                partition: Some(fp.number),
                size: fp.size,
                used: fp.content.as_ref().and_then(|s| s.used),
            });
        }
        before.push(BeforeItem {
            change: change.into(),
            what: "partition".into(),
            number: Some(fp.number),
            start: fp.start,
            size: fp.size,
            r#type: Some(fp.r#type.clone()),
            fs: fp.content.as_ref().map(|s| s.kind.clone()),
            label: fp.content.as_ref().and_then(|s| s.label.clone()),
            uuid: fp.content.as_ref().and_then(|s| s.uuid.clone()),
            used: fp.content.as_ref().and_then(|s| s.used),
            replaced_by,
        });
    }
    let mut after = Vec::new();
    if !untouched {
        let kind = match spec.kind {
            crate::table::TableKind::Mbr { signature } => format!("MBR 0x{signature:08x}"),
            crate::table::TableKind::Gpt { disk_guid } => format!("GPT {disk_guid}"),
        };
        after.push(AfterItem {
            change: if table_matched { "=" } else { "+" }.into(),
            what: "table".into(),
            id: disk.id.clone(),
            start: 0,
            size: len,
            r#type: kind,
            content: None,
        });
        for p in &planned {
            let existed = found
                .partitions
                .iter()
                .any(|fp| same_place(fp).is_some_and(|q| q.id == p.id));
            let change = match (existed, touched(p.start, p.size)) {
                (true, false) => "=",
                (true, true) => "~",
                (false, _) => "+",
            };
            after.push(AfterItem {
                change: change.into(),
                what: "partition".into(),
                id: p.id.clone(),
                start: p.start,
                size: p.size,
                r#type: p.r#type.clone(),
                content: p.content.clone(),
            });
        }
    }
    DiskPreview {
        disk: disk.id.clone(),
        target: target.to_string(),
        size: len,
        before,
        after,
        destroyed,
    }
}

/// A partition of the table the plan writes, on the real target.
struct Planned {
    id: String,
    start: u64,
    size: u64,
    /// As inspection reports types: `0x07`, or the GPT type GUID.
    r#type: String,
    content: Option<String>,
}

/// The table entries the plan writes. A dynamic disk's MBR has one 0x42
/// partition over the whole disk; the plan's partitions on it are LDM
/// partitions inside it, each a piece of a volume.
fn planned(plan: &CompiledPlan, disk: &CDisk, spec: &TableSpec, len: u64) -> Vec<Planned> {
    let member = |p: &CPartition| {
        let v = p.volume.as_deref()?;
        let content = plan
            .volume(v)
            .and_then(|v| v.content.as_ref())
            .map(|c| format!(": {}", describe_content(plan, c)))
            .unwrap_or_default();
        Some(format!("member of volume `{v}`{content}"))
    };
    if crate::ldm::is_dynamic(disk) {
        let ss = u64::from(disk.sector_size);
        let pieces: Vec<String> = disk
            .partitions
            .iter()
            .map(|p| format!("{} ({})", p.id, member(p).unwrap_or_default()))
            .collect();
        return spec
            .partitions
            .iter()
            .map(|e| Planned {
                id: "dynamic".to_string(),
                start: e.start_lba.saturating_mul(ss),
                size: e.size_lba.saturating_mul(ss),
                r#type: format!("0x{:02x}", e.mbr_type),
                content: Some(format!("LDM: {}", pieces.join(", "))),
            })
            .collect();
    }
    disk.partitions
        .iter()
        .map(|p| {
            let (start, size) = layout::extent(disk, p, len);
            Planned {
                id: p.id.clone(),
                start,
                size,
                r#type: p
                    .mbr_type
                    .map(|t| format!("0x{t:02x}"))
                    .or_else(|| p.type_guid.map(|g| g.to_string()))
                    .unwrap_or_default(),
                content: p
                    .content
                    .as_ref()
                    .map(|c| describe_content(plan, c))
                    .or_else(|| member(p)),
            }
        })
        .collect()
}

/// `restore system-image (16 MiB)`, `format ntfs `DATA``, `format fat32 + 2 files`.
pub fn describe_content(plan: &CompiledPlan, c: &Content) -> String {
    let mut parts = Vec::new();
    if let Some(image) = &c.image {
        let size = plan
            .artifact(image)
            .and_then(|a| a.size)
            .map(|s| format!(" ({})", approx_bytes(s)))
            .unwrap_or_default();
        parts.push(format!("restore {image}{size}"));
    }
    if let Some(f) = &c.format {
        let fs = format!("{:?}", f.fs).to_lowercase();
        match &f.label {
            Some(l) => parts.push(format!("format {fs} `{l}`")),
            None => parts.push(format!("format {fs}")),
        }
    }
    if !c.files.is_empty() {
        parts.push(format!(
            "{} file{}",
            c.files.len(),
            if c.files.len() == 1 { "" } else { "s" }
        ));
    }
    parts.join(" + ")
}

/// The human rendering: a header, one line per item, the closing
/// "will destroy" line. `red` wraps that line in ANSI red.
pub fn render(p: &DiskPreview, red: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} = {} ({})",
        p.disk,
        printable(&p.target),
        approx_bytes(p.size)
    );
    if p.before.is_empty() {
        let _ = writeln!(out, "  now: blank (no partition table, no signature)");
    } else {
        let _ = writeln!(out, "  now:");
    }
    for b in &p.before {
        let what = match (b.what.as_str(), b.number) {
            ("table", _) => "table".to_string(),
            ("disk", _) => "whole disk".to_string(),
            (_, Some(n)) => format!("partition {n}"),
            _ => b.what.clone(),
        };
        let desc = match (&b.fs, &b.label, &b.r#type) {
            (Some(fs), Some(l), _) if !l.is_empty() => {
                format!("{fs} `{}`", printable(l))
            }
            (Some(fs), ..) => fs.clone(),
            (None, _, Some(t)) if b.what == "table" => t.clone(),
            (None, _, Some(t)) => format!("type {t}, no filesystem"),
            _ => String::new(),
        };
        let size = if b.what == "table" {
            String::new()
        } else {
            format!("  {}", approx_size(b.size, b.used))
        };
        let at = if b.what == "partition" {
            format!(" at {}", approx_bytes(b.start))
        } else {
            String::new()
        };
        let replaced = if b.replaced_by.is_empty() {
            String::new()
        } else {
            format!("  → inside new {}", quoted(&b.replaced_by))
        };
        let _ = writeln!(
            out,
            "    {} {what:<12} {desc}{size}{at}{replaced}",
            b.change
        );
    }
    if p.after.is_empty() {
        let _ = writeln!(out, "  after: as now (the plan does not reach this disk)");
    } else {
        let _ = writeln!(out, "  after:");
    }
    for a in &p.after {
        let what = if a.what == "table" {
            "table".to_string()
        } else {
            a.id.clone()
        };
        let line = if a.what == "table" {
            a.r#type.clone()
        } else {
            format!(
                "{}  {} at {}, type {}",
                a.content.as_deref().unwrap_or("no content"),
                approx_bytes(a.size),
                approx_bytes(a.start),
                a.r#type
            )
        };
        let _ = writeln!(out, "    {} {:<12} {}", a.change, printable(&what), line);
    }
    if !p.destroyed.is_empty() {
        let list: Vec<String> = p
            .destroyed
            .iter()
            .map(|d| printable(&d.describe()))
            .collect();
        let line = format!("  will destroy: {}", list.join(", "));
        if red {
            let _ = writeln!(out, "\x1b[31m{line}\x1b[0m");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("`{}`", printable(i)))
        .collect::<Vec<_>>()
        .join(", ")
}
