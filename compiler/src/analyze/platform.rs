//! The platform: what the restored Windows XP can boot and see, checked
//! against `system.edition` and `system.arch` with the ruleset's platform
//! facts (`compiler/rules/xp-platform.yaml` and `--rules` layers).
//!
//! Every fact is data with a source; this module only knows how to evaluate
//! each kind of check (GPT boot disk, GPT disks, sector sizes, dynamic
//! volume layouts, FAT16 size) and where in the plan to point. It also
//! withdraws the disk analysis's "use `table: gpt`" hints on disks where
//! the platform forbids GPT (and on dynamic disks, which rplan writes on
//! MBR): no help may recommend what the plan cannot have.
//!
//! Absent `edition`/`arch`: the plan is checked as Windows XP Professional
//! (the edition most XP machines with more than one disk ran, and the one
//! whose rules every existing plan was written for) on x86 (the stricter
//! architecture: no GPT disk at all), with a warning saying so.

use crate::compiled::{CDisk, CVolume};
use crate::diagnostic::{codes, Diagnostic};
use crate::model::{Arch, Edition, Fs, Plan, TableKind};
use crate::rules::{FactCheck, FactSeverity, RuleSet, SourcedFact};
use crate::size::human_bytes;

pub fn check(
    plan: &Plan,
    rules: &RuleSet,
    disks: &[CDisk],
    volumes: &[CVolume],
    diags: &mut Vec<Diagnostic>,
) {
    let edition = plan.system.edition.unwrap_or(Edition::Professional);
    let arch = plan.system.arch.unwrap_or(Arch::X86);
    let mut missing = Vec::new();
    if plan.system.edition.is_none() {
        missing.push("`edition` (checked as professional)");
    }
    if plan.system.arch.is_none() {
        missing.push("`arch` (checked as x86)");
    }
    if !missing.is_empty() {
        diags.push(
            Diagnostic::warning(
                codes::PLATFORM_ASSUMED,
                "/system",
                format!(
                    "the system has no {}: what Windows XP can boot and see depends on them",
                    missing.join(" and no ")
                ),
            )
            .help("add `edition: home|professional` and `arch: x86|x64` to `system`"),
        );
    }
    let facts: Vec<&SourcedFact> = rules
        .platform
        .iter()
        .filter(|f| f.fact.applies(edition, arch))
        .collect();
    let boot = boot_disk(disks);
    let mut gpt_forbidden = vec![false; disks.len()];
    for (i, d) in disks.iter().enumerate() {
        let dp = format!("/disks/{i}");
        let gpt_boot = facts
            .iter()
            .find(|f| f.fact.check == FactCheck::GptBootDisk)
            .filter(|_| boot == Some(i));
        let gpt_any = facts.iter().find(|f| f.fact.check == FactCheck::GptDisk);
        // rplan writes dynamic disks on MBR only (see `volumes`).
        let dynamic = d.partitions.iter().any(|p| p.volume.is_some());
        if gpt_boot.is_some() || gpt_any.is_some() || dynamic {
            gpt_forbidden[i] = true;
        }
        if d.table == TableKind::Gpt {
            if let Some(f) = gpt_boot {
                diags.push(fact_diag(
                    f,
                    format!("{dp}/table"),
                    format!(
                        "disk `{}` holds the system (active) partition and is GPT: {}",
                        d.id, f.fact.text
                    ),
                    "use `table: mbr` (with `signature:`) for the system disk".into(),
                ));
            } else if let Some(f) = gpt_any {
                diags.push(fact_diag(
                    f,
                    format!("{dp}/table"),
                    format!("disk `{}` is GPT: {}", d.id, f.fact.text),
                    format!(
                        "use `table: mbr`{}",
                        if arch == Arch::X86 {
                            ", or `arch: x64` if the system is Windows XP x64 and this is a data disk"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        for f in facts
            .iter()
            .filter(|f| f.fact.check == FactCheck::SectorSize)
        {
            if !f.fact.sector_sizes.contains(&d.sector_size) {
                let allowed: Vec<String> =
                    f.fact.sector_sizes.iter().map(|s| s.to_string()).collect();
                diags.push(fact_diag(
                    f,
                    format!("{dp}/sector_size"),
                    format!(
                        "disk `{}` has {}-byte sectors: {}",
                        d.id, d.sector_size, f.fact.text
                    ),
                    format!("use `sector_size: {}`", allowed.join("` or `")),
                ));
            }
        }
        for (j, p) in d.partitions.iter().enumerate() {
            let fat16 = p
                .content
                .as_ref()
                .and_then(|c| c.format.as_ref())
                .is_some_and(|f| f.fs == Fs::Fat16);
            if fat16 {
                let pointer = match plan.disks.get(i).and_then(|pd| pd.partitions.get(j)) {
                    Some(pp) if matches!(pp.size, crate::model::PartSize::Size(_)) => {
                        format!("{dp}/partitions/{j}/size")
                    }
                    _ => format!("{dp}/partitions/{j}/content/format/fs"),
                };
                check_fat16(
                    &facts,
                    &format!("partition `{}/{}`", d.id, p.id),
                    p.min_size,
                    pointer,
                    diags,
                );
            }
        }
    }
    for (k, v) in volumes.iter().enumerate() {
        let vp = format!("/volumes/{k}");
        for f in facts
            .iter()
            .filter(|f| f.fact.check == FactCheck::DynamicVolumes)
        {
            if f.fact.layouts.contains(&v.layout) {
                continue;
            }
            let layout = v.layout.name();
            let help = if f.fact.layouts.is_empty() {
                "keep the data on basic disks (partitions with their own content)".to_string()
            } else {
                let names: Vec<&str> = f.fact.layouts.iter().map(|l| l.name()).collect();
                format!(
                    "use one of `{}`, or layer a ruleset for the Windows Server that has it (`--rules`)",
                    names.join("`, `")
                )
            };
            diags.push(fact_diag(
                f,
                format!("{vp}/layout"),
                format!(
                    "volume `{}` is {layout} on Windows XP {}: {}",
                    v.id,
                    edition.platform().name(),
                    f.fact.text
                ),
                help,
            ));
        }
        let fat16 = v
            .content
            .as_ref()
            .and_then(|c| c.format.as_ref())
            .is_some_and(|f| f.fs == Fs::Fat16);
        if fat16 {
            check_fat16(
                &facts,
                &format!("volume `{}`", v.id),
                v.usable_size,
                format!("{vp}/content/format/fs"),
                diags,
            );
        }
    }
    withdraw_gpt_hints(&gpt_forbidden, diags);
}

/// The disk XP boots from: the one holding an active partition, else the
/// first critical disk (the one ASR restores first).
fn boot_disk(disks: &[CDisk]) -> Option<usize> {
    disks
        .iter()
        .position(|d| d.partitions.iter().any(|p| p.bootable))
        .or_else(|| disks.iter().position(|d| d.critical))
}

/// The strictest FAT16 fact the size breaks (the largest limit exceeded).
fn check_fat16(
    facts: &[&SourcedFact],
    what: &str,
    size: u64,
    pointer: String,
    diags: &mut Vec<Diagnostic>,
) {
    let broken = facts
        .iter()
        .filter(|f| f.fact.check == FactCheck::Fat16Size)
        .filter(|f| f.fact.max_size.is_some_and(|m| size > m))
        .max_by_key(|f| f.fact.max_size);
    if let Some(f) = broken {
        let max = f.fact.max_size.unwrap_or(0);
        diags.push(fact_diag(
            f,
            pointer,
            format!(
                "{what} would be a {} FAT16 filesystem, above {}: {}",
                human_bytes(size),
                human_bytes(max),
                f.fact.text
            ),
            format!("use `fs: fat32`, or make it at most {}", human_bytes(max)),
        ));
    }
}

fn fact_diag(f: &SourcedFact, pointer: String, message: String, help: String) -> Diagnostic {
    let d = match f.fact.severity {
        FactSeverity::Error => Diagnostic::error(codes::PLATFORM, pointer, message),
        FactSeverity::Warning => Diagnostic::warning(codes::PLATFORM, pointer, message),
    };
    d.help(format!("{help} ({}; source: {})", f.cite, f.fact.source))
}

/// Hints of the disk analysis that suggest `table: gpt`, rewritten for
/// disks the platform keeps on MBR.
fn withdraw_gpt_hints(gpt_forbidden: &[bool], diags: &mut [Diagnostic]) {
    for d in diags.iter_mut() {
        let Some(help) = d.help.as_deref() else {
            continue;
        };
        if !help.contains("table: gpt") {
            continue;
        }
        let disk = d
            .pointer
            .strip_prefix("/disks/")
            .and_then(|r| r.split('/').next())
            .and_then(|n| n.parse::<usize>().ok());
        if !disk.is_some_and(|i| gpt_forbidden.get(i).copied().unwrap_or(false)) {
            continue;
        }
        let replacement = if d.code == codes::MBR_TOO_LARGE {
            "this disk must stay MBR here (the platform, or a dynamic disk): plan a disk of at most 2 TiB"
        } else if d.code == codes::MBR_PRIMARIES {
            "mark the later partitions `logical: true`"
        } else if d.code == codes::DISK_IDENTITY {
            "use `signature: \"0x…\"`"
        } else {
            "keep this disk MBR: GPT is not possible for it here"
        };
        d.help = Some(replacement.to_string());
    }
}
