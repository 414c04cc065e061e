//! Analysis: everything that can be known about a typed plan without
//! touching a disk. Each submodule checks one concern and resolves what the
//! person left implicit (offsets, sizes, ranks, timeouts, GUIDs):
//!
//! - [`compat`]: backup build × media × language against the ruleset;
//! - [`disks`]: partition layout per disk, table limits, identities;
//! - [`volumes`]: dynamic volumes over member partitions;
//! - [`platform`]: what the restored Windows XP can boot and see;
//! - [`boot`]: active flags the MBR boot code can follow;
//! - [`content`]: what goes into a partition or volume;
//! - [`artifacts`]: the backup set, on disk or not (`--no-artifacts`);
//! - [`stages`]: the escalation ladder and its actions.
//!
//! Analysis collects every diagnostic it can; a later check never depends on
//! an earlier one having passed, only on what it could resolve.

pub mod artifacts;
pub mod boot;
pub mod compat;
pub mod content;
pub mod disks;
pub mod platform;
pub mod stages;
pub mod volumes;

use crate::compiled::{CArtifact, CDisk, CVolume};
use crate::diagnostic::Diagnostic;
use crate::model::Plan;
use crate::rules::RuleSet;
use crate::Options;
use std::path::Path;

/// What analysis resolved, ready to be lowered into steps.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// The rule that allowed the restore (`ruleset#row`).
    pub rule: Option<String>,
    pub artifacts: Vec<CArtifact>,
    pub disks: Vec<CDisk>,
    pub volumes: Vec<CVolume>,
    pub stages: Vec<stages::ResolvedStage>,
}

/// Check `plan` and resolve it. `base_dir` is the plan file's directory.
pub fn analyze(
    plan: &Plan,
    options: &Options,
    rules: &RuleSet,
    base_dir: &Path,
) -> (Analysis, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let rule = compat::check(plan, rules, &mut diags);
    let artifacts = artifacts::check(plan, options, base_dir, &mut diags);
    let mut disks = disks::check(plan, &mut diags);
    let volumes = volumes::check(plan, &mut disks, &mut diags);
    platform::check(plan, rules, &disks, &volumes, &mut diags);
    boot::check(plan, &mut disks, &artifacts, &mut diags);
    content::check(plan, &disks, &volumes, &artifacts, &mut diags);
    let stages = stages::check(plan, options, &mut diags);
    (
        Analysis {
            rule,
            artifacts,
            disks,
            volumes,
            stages,
        },
        diags,
    )
}

/// Report ids that occur more than once; `items` yields (id, pointer).
pub(crate) fn unique_ids<'a>(
    items: impl Iterator<Item = (&'a str, String)>,
    code: &'static str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let mut seen: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for (id, pointer) in items {
        if let Some(first) = seen.get(id) {
            diags.push(
                Diagnostic::error(code, pointer, format!("duplicate {what} id `{id}`"))
                    .related(first.clone(), "first defined here")
                    .help(format!("every {what} needs its own id")),
            );
        } else {
            seen.insert(id, pointer);
        }
    }
}
