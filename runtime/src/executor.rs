//! The executor: carries out a compiled plan, stage by stage up the
//! escalation ladder, step by step in the compiled order.
//!
//! Safety first, in this order: every target is opened exclusively and
//! checked (in use, size, sector size, identity) before any byte is written
//! anywhere; the operator confirms unless `--yes`; every step is journaled
//! before and after; writes stay inside table areas and declared partition
//! ranges (the [`Region`] a step gets cannot reach further); restored bytes
//! are verified by sha256. Within ASR a failed critical step fails the
//! stage, a failed non-critical step is reported and skips only what
//! depends on it (the seed: ASR restores at least the disks needed to boot).

use crate::events::{printable, Event, Observer, Throttle};
use crate::inspect::{self, Inspection};
use crate::journal::{Journal, JournalState, Record};
use crate::layout;
use crate::ldm::{self, layout::VolumeWriter};
use crate::mkfs::{self, FormatOptions, Holes};
use crate::overlay::Overlay;
use crate::preview::{self, DiskPreview, Reach};
use crate::restore::{self, hex, Expected, RestoreOptions};
use crate::table;
use crate::target::{self, Access, Device, ImageFile, Region, TargetError};
use rplan_compiler::analyze::disks::stable_hash;
use rplan_compiler::compiled::{CDisk, CStage, CStep, CompiledPlan, StepKind};
use rplan_compiler::model::{ArtifactFormat, Content, StageKind};
use rplan_compiler::size::human_bytes;
use rplan_compiler::{codes, Diagnostic};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `--target disk0=PATH`.
#[derive(Debug, Clone)]
pub struct TargetArg {
    pub disk: String,
    pub path: PathBuf,
}

/// A question to the operator: the text in, yes or no out.
pub type Ask = Box<dyn FnMut(&str) -> bool>;

pub struct ApplyOptions {
    /// Proceed despite a foreign partition table or a sector-size mismatch.
    pub force: bool,
    /// Continue an interrupted apply from its journal.
    pub resume: bool,
    /// Manual actions fail instead of asking.
    pub unattended: bool,
    pub journal_dir: PathBuf,
    /// Where mkfs's temporary images go.
    pub temp_dir: Option<PathBuf>,
    /// Asks the operator to go ahead; `None` means `--yes`.
    pub confirm: Option<Ask>,
    /// Asks a person to carry out a manual action; true when done.
    pub manual: Ask,
    /// Simulate instead (dry-run): `Some(ids of the stages to fail)`.
    pub dry_run: Option<Vec<String>>,
    /// The plan's own files besides its artifacts (the plan, the compiled
    /// plan), each with what it is: no target may be one of them.
    pub own_files: Vec<(String, PathBuf)>,
    /// Colour in the confirmation's summary (a terminal, no NO_COLOR).
    pub color: bool,
    /// MBR boot code for the system disk when the plan has none
    /// (`--boot-code FILE`).
    pub boot_code: Option<[u8; 440]>,
    /// How many steps may run at the same time (`--jobs`); `None`: one
    /// per target. Steps on the same disk always run one after another.
    pub jobs: Option<usize>,
    /// The artifacts' pre-verification, running since the plan was loaded
    /// ([`crate::preflight::verify_later`]): awaited once the targets are
    /// checked and the operator has answered, before the journal or any
    /// target is written; its problems refuse the run (exit 4).
    pub verifying: Option<crate::preflight::Verifying>,
}

/// What a dry-run found: the path up the ladder, the steps with their
/// estimates, and what would change on each target.
#[derive(Debug, Default, serde::Serialize, schemars::JsonSchema)]
#[schemars(title = "rplan dry-run report", extend("$id" = "https://raw.githubusercontent.com/rplan/rplan/main/schemas/dry-run.schema.json"))]
pub struct DryRunReport {
    /// The outcome modelled: "worst case: … fail, so `asr` runs" or
    /// "modelled: `safe-mode` succeeds".
    #[serde(default)]
    pub scenario: String,
    /// The steps on the simulated path, in order, with their outcome.
    pub steps: Vec<SimStep>,
    /// Each target: before → after, and the bytes that would change.
    pub disks: Vec<SimDisk>,
    /// Sum of the estimates of the steps on the simulated path.
    pub rto_estimate_s: u64,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct SimStep {
    /// The stage the step belongs to.
    pub stage: String,
    /// The step's id.
    pub step: String,
    /// What the step does.
    pub description: String,
    /// ok, unchanged, failed or skipped.
    pub outcome: String,
    /// Estimated seconds.
    pub estimate_s: u64,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct SimDisk {
    /// Before → after: what is there now, what the plan makes of it.
    #[serde(flatten)]
    pub preview: DiskPreview,
    /// The target already carries exactly the plan's table.
    pub table_unchanged: bool,
    /// The byte ranges the simulation changed.
    pub changes: Vec<SimChange>,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct SimChange {
    /// First byte that would change.
    pub start: u64,
    /// How many bytes.
    pub len: u64,
    /// `partition table`, `partition <id>`, or `outside declared ranges`.
    pub within: String,
}

/// How an apply ended, with what it has to say.
#[derive(Debug)]
pub enum Outcome {
    /// A stage succeeded, possibly with non-critical steps of it failed
    /// (`failed_steps`, each also reported in `diagnostics`): a partial
    /// recovery, which `--strict` turns into its own exit code.
    Recovered {
        stage: String,
        failed_steps: Vec<String>,
        diagnostics: Vec<Diagnostic>,
    },
    /// Every stage failed.
    AllFailed { diagnostics: Vec<Diagnostic> },
    /// Nothing was done: a target or the plan was refused.
    Refused { diagnostics: Vec<Diagnostic> },
    /// Bad invocation or an I/O problem outside the targets (journal).
    Usage { diagnostics: Vec<Diagnostic> },
}

struct Target {
    path: PathBuf,
    device: Box<dyn Device>,
    /// The disk already carried exactly the plan's table when we opened it.
    table_matched: bool,
    /// What was on it when we opened it.
    found: Inspection,
}

impl Target {
    /// Signatures to erase (as `wipefs` would: their magic bytes only)
    /// when this disk's table is replaced: whole-disk filesystems, swap,
    /// RAID/LDM headers, and a table of the other kind, which the new table
    /// would not overwrite (a GPT's headers under a new MBR).
    fn stale_magic(&self, spec: &table::TableSpec) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = self
            .found
            .signatures
            .iter()
            .flat_map(|s| s.magic.iter().copied())
            .collect();
        // A filesystem made on the bare disk has its boot sector where an
        // MBR keeps boot code, which the table writer would otherwise keep:
        // its BPB would still read as that filesystem.
        if self.found.signatures.iter().any(|s| s.at_lba0()) {
            out.push((0, 440));
        }
        if let Some(t) = &self.found.table {
            let same_kind = matches!(
                (t.raw, spec.kind),
                (
                    Some(table::TableKind::Mbr { .. }),
                    table::TableKind::Mbr { .. }
                ) | (
                    Some(table::TableKind::Gpt { .. }),
                    table::TableKind::Gpt { .. }
                )
            );
            if !same_kind {
                out.extend(t.magic.iter().copied());
            }
        }
        let len = self.device.len();
        out.retain(|&(at, n)| at.checked_add(n).is_some_and(|end| end <= len));
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The JSON Schema of a dry-run's report (`dry_run` in the result line of
/// `rplan dry-run --format json`).
pub fn dry_run_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(DryRunReport)).unwrap_or_default()
}

/// Check the compiled plan's artifacts still hash to what it says: a
/// compiled plan whose backup changed is stale, like an old Terraform plan.
pub fn check_artifacts(plan: &CompiledPlan, hash: bool) -> Vec<Diagnostic> {
    if hash {
        // Hashed several at once; a file that no longer is what was
        // compiled is a stale plan, whatever way it differs.
        return rplan_compiler::analyze::artifacts::verify(&plan.artifacts)
            .into_iter()
            .map(|d| match d.code {
                codes::ARTIFACT_SHA256 | codes::ARTIFACT_SIZE => {
                    Diagnostic::error(codes::STALE_COMPILED, "", d.message)
                        .help("the artifact changed since the plan was compiled: compile the plan again against the current backup")
                }
                _ => d,
            })
            .collect();
    }
    let mut out = Vec::new();
    for a in &plan.artifacts {
        // Without the pre-read: it must exist, and a raw one must have its
        // size; the sha256 is checked while restoring.
        let measured = std::fs::metadata(&a.path).map(|m| {
            matches!(a.format, ArtifactFormat::Raw | ArtifactFormat::File).then_some(m.len())
        });
        match measured {
            Err(e) => out.push(Diagnostic::error(
                codes::STALE_COMPILED,
                "",
                format!("artifact `{}` ({}): {e}", a.id, a.path),
            )),
            Ok(len) => {
                if matches!((a.size, len), (Some(want), Some(got)) if want != got) {
                    out.push(
                        Diagnostic::error(
                            codes::STALE_COMPILED,
                            "",
                            format!("artifact `{}` changed since the plan was compiled", a.id),
                        )
                        .help("compile the plan again against the current backup"),
                    );
                }
            }
        }
    }
    out
}

/// Everything before the first step: targets opened and checked (read-only
/// under an overlay for a dry-run), the operator asked, the journal opened.
fn prepare(
    plan: &CompiledPlan,
    targets: &[TargetArg],
    opts: &mut ApplyOptions,
) -> Result<(Vec<Option<Target>>, Journal), Outcome> {
    let simulate = opts.dry_run.is_some();
    let machine = crate::preflight::machine(plan, opts.temp_dir.as_deref());
    if !machine.is_empty() {
        return Err(Outcome::Refused {
            diagnostics: machine,
        });
    }
    // Which disks need targets: all of them, if there is an ASR stage.
    let has_asr = plan.stages.iter().any(|s| s.kind == StageKind::Asr);
    let mut problems = Vec::new();
    for t in targets {
        if plan.disk(&t.disk).is_none() {
            let ids: Vec<&str> = plan.disks.iter().map(|d| d.id.as_str()).collect();
            return Err(Outcome::Usage {
                diagnostics: vec![Diagnostic::error(
                    codes::UNKNOWN_TARGET,
                    "",
                    format!(
                        "--target names disk `{}`, which the plan does not have",
                        t.disk
                    ),
                )
                .help(format!("the plan's disks: {}", ids.join(", ")))],
            });
        }
        if targets.iter().filter(|o| o.disk == t.disk).count() > 1 {
            return Err(Outcome::Usage {
                diagnostics: vec![Diagnostic::error(
                    codes::UNKNOWN_TARGET,
                    "",
                    format!("disk `{}` is given two targets", t.disk),
                )],
            });
        }
    }
    let own_files = own_files(plan, opts);
    let named: Vec<(String, PathBuf)> = targets
        .iter()
        .map(|t| (t.disk.clone(), t.path.clone()))
        .collect();
    let overlapping = crate::identity::check(&named, &own_files);
    if !overlapping.is_empty() {
        return Err(Outcome::Refused {
            diagnostics: overlapping,
        });
    }
    let torn_by_us = disks_torn_by_us(plan, targets, opts);
    let mut opened: Vec<Option<Target>> = Vec::new();
    for (di, disk) in plan.disks.iter().enumerate() {
        let Some(t) = targets.iter().find(|t| t.disk == disk.id) else {
            if has_asr {
                problems.push(
                    Diagnostic::error(codes::UNKNOWN_TARGET, "", format!("no target for disk `{}`", disk.id))
                        .help(format!("name it: --target {}=/dev/sdX (or an image file); rplan never guesses which disk to overwrite", disk.id)),
                );
            }
            opened.push(None);
            continue;
        };
        match open_checked(
            plan,
            di,
            &t.path,
            opts.force,
            torn_by_us.contains(&disk.id),
            simulate.then_some(opts.temp_dir.as_deref()),
        ) {
            Ok(target) => opened.push(Some(target)),
            Err(d) => {
                problems.extend(d);
                opened.push(None);
            }
        }
    }
    if !problems.is_empty() {
        return Err(Outcome::Refused {
            diagnostics: problems,
        });
    }
    let pairs: Vec<(String, String)> = targets
        .iter()
        .map(|t| (t.disk.clone(), t.path.display().to_string()))
        .collect();
    if let Some(confirm) = opts.confirm.as_mut().filter(|_| !simulate) {
        let summaries: Vec<String> = plan
            .disks
            .iter()
            .zip(&opened)
            .filter_map(|(disk, t)| {
                let t = t.as_ref()?;
                let p = preview::preview(
                    plan,
                    disk,
                    &t.path.display().to_string(),
                    &t.found,
                    t.table_matched,
                    Reach::Worst,
                );
                Some(preview::render(&p, opts.color))
            })
            .collect();
        let question = format!(
            "rplan will try the stages of `{}` in order; if it comes to ASR, it overwrites the partition tables and partitions of these disks:\n\n{}\n",
            printable(&plan.name),
            summaries.join("\n")
        );
        if !confirm(&question) {
            return Err(Outcome::Refused {
                diagnostics: vec![Diagnostic::error(
                    codes::NOT_CONFIRMED,
                    "",
                    "not confirmed; nothing was written",
                )
                .help("answer `yes`, or pass --yes")],
            });
        }
    }
    if let Some(verifying) = opts.verifying.take() {
        let problems = verifying.wait();
        if !problems.is_empty() {
            return Err(Outcome::Refused {
                diagnostics: problems,
            });
        }
    }
    if simulate {
        return Ok((opened, Journal::in_memory()));
    }
    let journal_path = Journal::path_for(&opts.journal_dir, &plan.name, &plan.plan_hash);
    if opts.resume {
        if let Some(d) = nothing_to_resume(plan, &journal_path) {
            return Err(Outcome::Refused {
                diagnostics: vec![d],
            });
        }
    }
    let mut journal = match Journal::open(&journal_path) {
        Ok(j) => j,
        Err(e) => {
            return Err(Outcome::Usage {
                diagnostics: vec![Diagnostic::error(
                    codes::IO_FAILED,
                    "",
                    format!("cannot open journal {}: {e}", journal_path.display()),
                )
                .help("choose another directory with --journal DIR")],
            })
        }
    };
    match (journal.state(), opts.resume) {
        (JournalState::Interrupted, false) => {
            return Err(Outcome::Refused {
                diagnostics: vec![Diagnostic::error(
                codes::JOURNAL_MISMATCH,
                "",
                format!(
                    "an earlier apply of this plan was interrupted ({})",
                    journal.path().display()
                ),
            )
            .help(
                "continue it with --resume; the end state will be the same as an uninterrupted run",
            )],
            })
        }
        (JournalState::Interrupted | JournalState::Ended { ok: false }, true)
            if journal.targets() != Some(pairs.as_slice()) =>
        {
            return Err(Outcome::Refused {
                diagnostics: vec![Diagnostic::error(
                    codes::JOURNAL_MISMATCH,
                    "",
                    "the apply being resumed used other targets",
                )
                .help(format!(
                    "resume with the same --target arguments: {:?}",
                    journal.targets().unwrap_or_default()
                ))],
            })
        }
        (JournalState::Interrupted, true) => {}
        (JournalState::Ended { ok: false }, true) => {
            // `nothing_to_resume` let it through: the last stage failed on
            // a write step, and is retried on the same targets.
            let Some(stage) = retryable_stage(plan, &journal) else {
                return Err(Outcome::Refused {
                    diagnostics: vec![Diagnostic::error(
                        codes::RESUME_NOTHING_TO_RETRY,
                        "",
                        "nothing to resume: the last apply ended",
                    )
                    .help("to apply again, run without --resume")],
                });
            };
            let retry = Record::Retry {
                stage: stage.id.clone(),
            };
            journal.append(retry).map_err(journal_write_failed)?;
        }
        _ => {
            let identities = targets
                .iter()
                .filter_map(|t| Some((t.disk.clone(), crate::identity::fingerprint(&t.path)?)))
                .collect();
            let begin = Record::Begin {
                plan_hash: plan.plan_hash.clone(),
                targets: pairs.clone(),
                identities,
            };
            journal.append(begin).map_err(journal_write_failed)?;
        }
    }
    Ok((opened, journal))
}

fn journal_write_failed(e: std::io::Error) -> Outcome {
    Outcome::Usage {
        diagnostics: vec![Diagnostic::error(
            codes::IO_FAILED,
            "",
            format!("cannot write journal: {e}"),
        )],
    }
}

/// Carry out the plan: how it ended, and what the run did for `--report`
/// (its timeline; each disk before the run and after, without byte ranges).
pub fn apply(
    plan: &CompiledPlan,
    targets: &[TargetArg],
    opts: ApplyOptions,
    obs: &mut dyn Observer,
) -> (Outcome, DryRunReport) {
    execute(plan, targets, opts, obs)
}

/// Simulate: the very same steps against the real targets opened read-only
/// under an [`Overlay`]. Commands are not run: a stage named in
/// `opts.dry_run` fails, the others succeed. Nothing is written anywhere,
/// no journal is kept.
pub fn dry_run(
    plan: &CompiledPlan,
    targets: &[TargetArg],
    opts: ApplyOptions,
    obs: &mut dyn Observer,
) -> (Outcome, DryRunReport) {
    execute(plan, targets, opts, obs)
}

fn execute(
    plan: &CompiledPlan,
    targets: &[TargetArg],
    mut opts: ApplyOptions,
    obs: &mut dyn Observer,
) -> (Outcome, DryRunReport) {
    let (opened, journal) = match prepare(plan, targets, &mut opts) {
        Ok(p) => p,
        Err(outcome) => return (outcome, DryRunReport::default()),
    };
    let resuming = opts.resume;
    let mut run = Run {
        plan,
        targets: opened,
        journal,
        opts: &mut opts,
        obs,
        reports: Vec::new(),
        resuming,
        timeline: Vec::new(),
        fresh: std::collections::HashMap::new(),
        failed_steps: Vec::new(),
    };
    let outcome = run.stages();
    let report = run.report();
    (outcome, report)
}

/// Every file of the plan's that a target must not be: its artifacts, the
/// files the caller names (plan, compiled plan) and, when applying, the
/// journal.
fn own_files(plan: &CompiledPlan, opts: &ApplyOptions) -> Vec<(String, PathBuf)> {
    let mut own = opts.own_files.clone();
    own.extend(plan.artifacts.iter().map(|a| {
        (
            format!("backup artifact `{}`", a.id),
            PathBuf::from(&a.path),
        )
    }));
    if opts.dry_run.is_none() {
        own.push((
            "the journal".to_string(),
            Journal::path_for(&opts.journal_dir, &plan.name, &plan.plan_hash),
        ));
    }
    own
}

/// On `--resume`: why there is nothing to resume, if there is not. An
/// apply is never started afresh under `--resume`: the operator believes
/// a run is half done, and something else (another journal directory,
/// another version of the plan) is the likely truth.
fn nothing_to_resume(plan: &CompiledPlan, journal_path: &Path) -> Option<Diagnostic> {
    let refuse = |message: String| Diagnostic::error(codes::JOURNAL_MISMATCH, "", message);
    let journal = match Journal::read(journal_path) {
        Ok(j) => j,
        // Unreadable or damaged: `Journal::open` reports it.
        Err(_) => return None,
    };
    match journal.state() {
        JournalState::Interrupted => {
            let hash = journal.current().iter().find_map(|r| match r {
                Record::Begin { plan_hash, .. } => Some(plan_hash.as_str()),
                _ => None,
            });
            (hash != Some(plan.plan_hash.as_str())).then(|| {
                refuse(format!(
                    "the interrupted apply in {} was of another plan (hash {})",
                    journal_path.display(),
                    hash.unwrap_or("?")
                ))
                .help("resume with the plan that was interrupted")
            })
        }
        JournalState::Ended { ok: false } if retryable_stage(plan, &journal).is_some() => None,
        JournalState::Ended { ok: true } => Some(
            refuse(format!(
                "nothing to resume: the last apply of `{}` recovered ({})",
                plan.name,
                journal_path.display()
            ))
            .help("to apply again, run without --resume"),
        ),
        JournalState::Ended { ok: false } => {
            let why = plan
                .stages
                .last()
                .and_then(|last| Some((last, ending_step(last, &journal)?)))
                .filter(|(_, step)| {
                    matches!(
                        step.kind,
                        StepKind::Run | StepKind::Manual | StepKind::Probe
                    )
                })
                .map_or_else(
                    || "not on a write step a resume could retry (a stage ran out of time)".to_string(),
                    |(last, step)| {
                        format!(
                            "its last stage `{}` on `{}`, a command's or probe's answer, which a resume does not ask again",
                            last.id, step.id
                        )
                    },
                );
            Some(
                Diagnostic::error(
                    codes::RESUME_NOTHING_TO_RETRY,
                    "",
                    format!(
                        "nothing to resume: the last apply of `{}` ended with every stage failed, {why} ({})",
                        plan.name,
                        journal_path.display()
                    ),
                )
                .help("to apply again, run without --resume"),
            )
        }
        JournalState::Empty => {
            // Another version of the plan (same name, another hash)?
            let others = other_journals(journal_path);
            let help = if others.is_empty() {
                "check --journal DIR: it must be the directory the interrupted apply used"
                    .to_string()
            } else {
                format!(
                    "found a journal of another version of this plan (a different plan hash): {}; resume needs the very plan that was interrupted",
                    others.join(", ")
                )
            };
            Some(
                refuse(format!(
                    "nothing to resume: no journal of this plan at {}",
                    journal_path.display()
                ))
                .help(help),
            )
        }
    }
}

/// The critical step of `stage` whose failure ended it in the journal's
/// last run (since the stage was last retried), if a step's failure did.
fn ending_step<'p>(stage: &'p CStage, journal: &Journal) -> Option<&'p CStep> {
    let critical = |id: &str| stage.steps.iter().find(|s| s.id == id && s.critical);
    critical(journal.failing_step(&stage.id, |id| critical(id).is_some())?)
}

/// On `--resume` after a run that ended with every stage failed: the stage
/// to retry, if there is one. Only the plan's last stage (the one the run
/// ended on), and only when what failed it was a write step (restore,
/// format, table, file install, verify: a runtime failure of rplan's own
/// I/O, RP08xx). A failed command, manual action or probe is the machine's
/// answer, which a resume keeps rather than asks again; a stage that ran
/// out of time is not retried either. Earlier stages keep their recorded
/// failures: their probes might pass now only because of the half-done
/// ASR.
fn retryable_stage<'p>(plan: &'p CompiledPlan, journal: &Journal) -> Option<&'p CStage> {
    if journal.state() != (JournalState::Ended { ok: false }) {
        return None;
    }
    let hash = journal.current().iter().find_map(|r| match r {
        Record::Begin { plan_hash, .. } => Some(plan_hash.as_str()),
        _ => None,
    });
    let last = plan.stages.last()?;
    if hash != Some(plan.plan_hash.as_str()) || journal.stage_outcome(&last.id) != Some(false) {
        return None;
    }
    let step = ending_step(last, journal)?;
    (!matches!(
        step.kind,
        StepKind::Run | StepKind::Manual | StepKind::Probe
    ))
    .then_some(last)
}

/// Journals next to `path` of a plan with the same name but another hash.
fn other_journals(path: &Path) -> Vec<String> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    // `<name>-<16 hex>.jsonl`: the plan's part is before the last `-`.
    let Some((stem, _)) = name.rsplit_once('-') else {
        return Vec::new();
    };
    let prefix = format!("{stem}-");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".jsonl") && n != name)
        })
        .map(|p| p.display().to_string())
        .collect();
    found.sort();
    found
}

/// On `--resume`: the disks whose signatures or partition table the
/// interrupted run (on the same targets) had started clearing or writing.
/// Whatever is there now is rplan's own half-done work (a torn table, an
/// old disk's table with its signatures already erased under `--force`),
/// not another disk's, and needs no `--force` again.
fn disks_torn_by_us(
    plan: &CompiledPlan,
    targets: &[TargetArg],
    opts: &ApplyOptions,
) -> HashSet<String> {
    let mut out = HashSet::new();
    if !opts.resume || opts.dry_run.is_some() {
        return out;
    }
    let path = Journal::path_for(&opts.journal_dir, &plan.name, &plan.plan_hash);
    let Ok(journal) = Journal::read(&path) else {
        return out;
    };
    if journal.state() != JournalState::Interrupted && retryable_stage(plan, &journal).is_none() {
        return out;
    }
    let recorded = journal.targets().unwrap_or_default();
    let identities = journal.identities();
    for t in targets {
        // The same path, and the same disk behind it: device names change
        // across the reboot a crash usually brings.
        let same_disk = identities
            .iter()
            .find(|(d, _)| *d == t.disk)
            .is_none_or(|(_, was)| crate::identity::fingerprint(&t.path).as_ref() == Some(was));
        let same_target = same_disk
            && recorded
                .iter()
                .any(|(d, p)| *d == t.disk && Path::new(p) == t.path);
        let table_started = journal.current().iter().any(|r| match r {
            Record::StepStarted { step } => plan.step(step).is_some_and(|(_, s)| {
                matches!(s.kind, StepKind::WriteTable | StepKind::ClearSignatures)
                    && s.disk.as_deref() == Some(t.disk.as_str())
            }),
            _ => false,
        });
        if same_target && table_started {
            out.insert(t.disk.clone());
        }
    }
    out
}

/// Open one target exclusively and check it; every refusal is collected.
/// `ours`: the journal says rplan itself was writing this disk's table
/// when it was interrupted, so a torn or half-written table is expected.
/// `overlay`: `Some(scratch dir)` for a dry-run, which opens the target
/// read-only and puts an [`Overlay`] over it.
fn open_checked(
    plan: &CompiledPlan,
    di: usize,
    path: &Path,
    force: bool,
    ours: bool,
    overlay: Option<Option<&Path>>,
) -> Result<Target, Vec<Diagnostic>> {
    let access = if overlay.is_some() {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    };
    let disk = &plan.disks[di];
    let name = format!("{}={}", disk.id, path.display());
    if let Some(why) = target::mounted_or_in_use(path) {
        return Err(vec![Diagnostic::error(
            codes::TARGET_IN_USE,
            "",
            format!("target {name} is in use: {why}"),
        )
        .help(
            "unmount it and stop what uses it; rplan never writes to a disk in use",
        )]);
    }
    let opened: Result<Box<dyn Device>, TargetError> = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => ImageFile::open(path, access)
            .and_then(|f| f.with_sector_size(disk.sector_size))
            .map(|f| Box::new(f) as Box<dyn Device>),
        _ => target::open_target(path, access),
    };
    let device = opened.map_err(|e| {
        let code = match e {
            TargetError::NotFound => codes::TARGET_MISSING,
            TargetError::Locked => codes::TARGET_LOCKED,
            TargetError::InUse(_) => codes::TARGET_IN_USE,
            _ => codes::TARGET_MISSING,
        };
        vec![Diagnostic::error(
            code,
            "",
            format!("cannot open target {name}: {e}"),
        )]
    })?;
    let mut problems = Vec::new();
    if device.len() < disk.min_size {
        problems.push(
            Diagnostic::error(
                codes::TARGET_TOO_SMALL,
                "",
                format!(
                    "target {name} holds {}, the plan needs at least {}",
                    human_bytes(device.len()),
                    human_bytes(disk.min_size)
                ),
            )
            .help("restore onto a disk at least as large as the original"),
        );
    }
    if device.sector_size() != disk.sector_size && !force {
        problems.push(Diagnostic::error(
            codes::SECTOR_MISMATCH,
            "",
            format!(
                "target {name} has {}-byte sectors, the plan's disk {}-byte ones",
                device.sector_size(),
                disk.sector_size
            ),
        ));
    }
    let spec = layout::table_spec(disk, device.len());
    let table_matched =
        problems.is_empty() && table::table_matches(device.as_ref(), &spec).unwrap_or(false);
    let found = match inspect::inspect(device.as_ref(), path) {
        Ok(found) => found,
        // A disk too damaged to inspect is still one to restore onto, if
        // the operator says so: it counts as holding something unknown.
        Err(e) if force => Inspection::unreadable(device.len(), device.sector_size(), &e),
        Err(e) => {
            return Err(vec![Diagnostic::error(
                codes::IO_FAILED,
                "",
                format!("cannot read target {name} to see what is on it: {e}"),
            )
            .help("if it really is to be overwritten, pass --force")])
        }
    };
    if !table_matched && !force && !ours {
        if let Some(refusal) = refuse_foreign(&name, &found, &spec) {
            problems.push(refusal);
        }
    }
    let device = match overlay {
        None => device,
        Some(dir) => match Overlay::new(device, dir) {
            Ok(o) => Box::new(o),
            Err(e) => {
                return Err(vec![Diagnostic::error(
                    codes::IO_FAILED,
                    "",
                    format!("cannot make the dry-run's scratch file: {e}"),
                )])
            }
        },
    };
    if problems.is_empty() {
        Ok(Target {
            path: path.to_path_buf(),
            device,
            table_matched,
            found,
        })
    } else {
        Err(problems)
    }
}

/// A target is fine to write when it is blank (inspection found nothing)
/// or carries this plan's own disk identity; anything else is refused,
/// naming what is there.
fn refuse_foreign(name: &str, found: &Inspection, spec: &table::TableSpec) -> Option<Diagnostic> {
    let own = found
        .table
        .as_ref()
        .is_some_and(|t| t.raw == Some(spec.kind));
    if own || found.is_blank() {
        return None;
    }
    let plan_disk = match spec.kind {
        table::TableKind::Mbr { signature } => format!("MBR disk 0x{signature:08x}"),
        table::TableKind::Gpt { disk_guid } => format!("GPT disk {disk_guid}"),
    };
    let list: Vec<String> = found
        .findings()
        .iter()
        .map(|f| format!("\n    {}", printable(f)))
        .collect();
    let code = if found.table.is_some() {
        codes::SIGNATURE_MISMATCH
    } else {
        codes::NOT_BLANK
    };
    Some(
        Diagnostic::error(
            code,
            "",
            format!(
                "target {} is not blank and not the plan's {plan_disk}; it holds:{}",
                printable(name),
                list.concat()
            ),
        )
        .help("is this the right disk? To overwrite it anyway pass --force; `rplan dry-run` shows what would be destroyed"),
    )
}

struct Run<'a> {
    plan: &'a CompiledPlan,
    targets: Vec<Option<Target>>,
    journal: Journal,
    opts: &'a mut ApplyOptions,
    obs: &'a mut dyn Observer,
    /// Non-critical failures and other things to tell at the end.
    reports: Vec<Diagnostic>,
    resuming: bool,
    /// Every step taken or skipped, in order (the dry-run's timeline).
    timeline: Vec<SimStep>,
    /// Content steps that wrote (and checked) their range in this run,
    /// with their fingerprints.
    fresh: std::collections::HashMap<String, String>,
    /// Non-critical steps of the current stage that failed.
    failed_steps: Vec<String>,
}

/// Why a step did not succeed.
struct StepError(Diagnostic);

impl<E: std::fmt::Display> From<(&'static str, E)> for StepError {
    fn from((code, e): (&'static str, E)) -> Self {
        StepError(Diagnostic::error(code, "", e.to_string()))
    }
}

type StepResult = Result<StepOk, StepError>;

enum StepOk {
    Done {
        fingerprint: Option<String>,
    },
    /// Found already in place; nothing written.
    Unchanged {
        fingerprint: Option<String>,
    },
}

impl Run<'_> {
    fn journal(&mut self, r: Record) -> Result<(), Diagnostic> {
        self.journal.append(r).map_err(|e| {
            Diagnostic::error(
                codes::IO_FAILED,
                "",
                format!(
                    "cannot write journal {}: {e}",
                    self.journal.path().display()
                ),
            )
        })
    }

    fn stages(&mut self) -> Outcome {
        let plan = self.plan;
        for stage in &plan.stages {
            self.obs.event(&Event::StageStarted {
                stage: &stage.id,
                kind: stage.kind.name(),
            });
            // A resumed run keeps what the interrupted one recorded: a stage
            // that had failed is not tried again (its probe might pass now,
            // over a half-done ASR).
            let recorded = self.recorded_stage(stage);
            if recorded.is_none() && self.resuming && self.journal.retried(&stage.id) {
                self.reports.push(
                    Diagnostic::warning(
                        codes::RESUME_RETRIES_STAGE,
                        "",
                        format!(
                            "stage `{}` failed on a write step in the last apply; resumed, it is retried from its first step not done on this target",
                            stage.id
                        ),
                    )
                    .help("the steps done before the failure are checked, not redone; earlier stages keep their recorded failures"),
                );
            }
            if recorded == Some(false) {
                self.reports.push(
                    Diagnostic::warning(
                        codes::JOURNAL_MISMATCH,
                        "",
                        format!(
                            "stage `{}` failed before the interruption; resumed, it is not tried again",
                            stage.id
                        ),
                    )
                    .help("its failure is in the journal; a probe might pass now only because of the half-done later stage"),
                );
            }
            let ok = match recorded {
                Some(ok) => ok,
                None => match self.stage(stage) {
                    Ok(ok) => ok,
                    Err(d) => {
                        return Outcome::Usage {
                            diagnostics: vec![d],
                        }
                    }
                },
            };
            self.obs.event(&Event::StageFinished {
                stage: &stage.id,
                ok,
            });
            if recorded.is_none() {
                if let Err(d) = self.journal(Record::StageDone {
                    stage: stage.id.clone(),
                    ok,
                }) {
                    return Outcome::Usage {
                        diagnostics: vec![d],
                    };
                }
            }
            if ok {
                // What failed on the way up the ladder is history now.
                for d in &mut self.reports {
                    d.severity = rplan_compiler::Severity::Warning;
                }
                let _ = self.journal(Record::End {
                    ok: true,
                    stage: Some(stage.id.clone()),
                });
                let failed_steps = std::mem::take(&mut self.failed_steps);
                self.obs.event(&Event::Finished {
                    ok: true,
                    stage: Some(&stage.id),
                    failed_steps: &failed_steps,
                });
                return Outcome::Recovered {
                    stage: stage.id.clone(),
                    failed_steps,
                    diagnostics: std::mem::take(&mut self.reports),
                };
            }
        }
        let _ = self.journal(Record::End {
            ok: false,
            stage: None,
        });
        self.obs.event(&Event::Finished {
            ok: false,
            stage: None,
            failed_steps: &[],
        });
        Outcome::AllFailed {
            diagnostics: std::mem::take(&mut self.reports),
        }
    }

    /// Run one stage; Ok(success). Err only for journal failures.
    ///
    /// Steps on different disks run at the same time, up to `--jobs`
    /// (see [`crate::parallel`]); the journal, the observer and the
    /// report are kept on this thread only. Diagnostics, the timeline and
    /// the failed steps are put in the compiled order, not the order steps
    /// finished in, so a report does not depend on timing.
    fn stage(&mut self, stage: &CStage) -> Result<bool, Diagnostic> {
        self.failed_steps.clear();
        let timeline_mark = self.timeline.len();
        let mut tagged: Vec<(usize, Diagnostic)> = Vec::new();
        let order: Vec<&CStep> = self
            .plan
            .order
            .iter()
            .filter_map(|id| stage.steps.iter().find(|s| &s.id == id))
            .collect();
        let result = self.schedule(stage, &order, &mut tagged);
        tagged.sort_by_key(|(i, _)| *i);
        self.reports.extend(tagged.into_iter().map(|(_, d)| d));
        let rank = |id: &str| order.iter().position(|s| s.id == id);
        self.timeline[timeline_mark..].sort_by_key(|s| rank(&s.step));
        self.failed_steps.sort_by_key(|id| rank(id));
        result
    }

    fn schedule(
        &mut self,
        stage: &CStage,
        order: &[&CStep],
        tagged: &mut Vec<(usize, Diagnostic)>,
    ) -> Result<bool, Diagnostic> {
        use crate::parallel::State;
        let started = Instant::now();
        // A compiled plan may carry any u64: beyond what an Instant can
        // hold, the stage has no deadline rather than a panic.
        let deadline = started.checked_add(Duration::from_secs(stage.timeout_s));
        let plan = self.plan;
        let places: Vec<Option<Vec<usize>>> = order
            .iter()
            .map(|s| crate::parallel::disks(plan, s))
            .collect();
        let after: Vec<Vec<usize>> = order
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|a| order.iter().position(|o| &o.id == a))
                    .collect()
            })
            .collect();
        let jobs = self
            .opts
            .jobs
            .unwrap_or_else(|| self.targets.iter().filter(|t| t.is_some()).count())
            .max(1);
        let mut states = vec![State::Waiting; order.len()];
        let mut busy = vec![false; self.targets.len()];
        let mut running = 0_usize;
        let mut failed: HashSet<&str> = HashSet::new();
        // Some(ok) once no further step may start: a critical step failed
        // or time ran out (what is running still finishes and is recorded).
        let mut stop: Option<bool> = None;
        let mut error: Option<Diagnostic> = None;
        let (tx, rx) = std::sync::mpsc::channel::<Message>();
        std::thread::scope(|scope| {
            loop {
                while stop.is_none() && running < jobs {
                    let Some(i) = crate::parallel::next(&states, &places, &after, &busy, running)
                    else {
                        break;
                    };
                    let step = order[i];
                    states[i] = State::Finished;
                    let mark = self.reports.len();
                    if let Some(dep) = step.after.iter().find(|a| failed.contains(a.as_str())) {
                        failed.insert(&step.id);
                        let msg = format!("skipped: `{dep}` failed");
                        self.finished(stage, step, "skipped", Some(&msg));
                        continue;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        tagged.push((
                            usize::MAX,
                            Diagnostic::error(
                                codes::COMMAND_TIMEOUT,
                                "",
                                format!(
                                    "stage `{}` ran out of time ({}s) before `{}`",
                                    stage.id, stage.timeout_s, step.id
                                ),
                            ),
                        ));
                        states[i] = State::Waiting;
                        stop = Some(false);
                        break;
                    }
                    match self.recorded_command(step) {
                        Some(Ok(())) => {
                            self.finished(
                                stage,
                                step,
                                "unchanged",
                                Some("done before the interruption"),
                            );
                            continue;
                        }
                        Some(Err(d)) => {
                            self.finished(stage, step, "failed", Some(&d.message));
                            failed.insert(&step.id);
                            if self.step_failed(step, d) {
                                stop = Some(false);
                            }
                            tag(&mut self.reports, mark, i, tagged);
                            continue;
                        }
                        None => {}
                    }
                    self.obs.event(&Event::StepStarted {
                        step: &step.id,
                        description: &step.description,
                        total_bytes: self.step_bytes(step),
                    });
                    if let Err(d) = self.journal(Record::StepStarted {
                        step: step.id.clone(),
                    }) {
                        error = Some(d);
                        stop = Some(false);
                        break;
                    }
                    let Some(disks) = &places[i] else {
                        // Runs alone, here (a manual action asks on this
                        // thread's terminal).
                        crate::fault::step_started(&step.id);
                        let result = self.step(step, deadline);
                        self.step_ended(stage, step, result, &mut failed, &mut stop, &mut error);
                        tag(&mut self.reports, mark, i, tagged);
                        continue;
                    };
                    states[i] = State::Running;
                    running += 1;
                    let mut mine: Vec<Option<Target>> =
                        (0..self.targets.len()).map(|_| None).collect();
                    for &d in disks {
                        busy[d] = true;
                        mine[d] = self.targets[d].take();
                    }
                    let job = Job {
                        index: i,
                        targets: mine,
                        journal: snapshot(&self.journal),
                        fresh: self.fresh.clone(),
                        resuming: self.resuming,
                        opts: WorkerOptions::of(self.opts),
                    };
                    let tx = tx.clone();
                    scope.spawn(move || job.run(plan, step, deadline, tx));
                }
                if running == 0 {
                    break;
                }
                match rx.recv() {
                    Ok(Message::Bytes { step, done, total }) => self.obs.event(&Event::Bytes {
                        step: &step,
                        done,
                        total,
                    }),
                    Ok(Message::Done {
                        index,
                        targets,
                        result,
                        reports,
                    }) => {
                        running -= 1;
                        states[index] = State::Finished;
                        for (d, t) in targets.into_iter().enumerate() {
                            if let Some(t) = t {
                                self.targets[d] = Some(t);
                            }
                            if places[index].as_ref().is_some_and(|p| p.contains(&d)) {
                                busy[d] = false;
                            }
                        }
                        let mark = self.reports.len();
                        self.reports.extend(reports);
                        let step = order[index];
                        self.step_ended(stage, step, result, &mut failed, &mut stop, &mut error);
                        tag(&mut self.reports, mark, index, tagged);
                    }
                    // Cannot happen while this thread holds `tx`; should
                    // it, stop rather than wait.
                    Err(_) => {
                        error = Some(Diagnostic::error(
                            codes::IO_FAILED,
                            "",
                            "a step's thread ended without a result",
                        ));
                        break;
                    }
                }
            }
        });
        if let Some(d) = error {
            return Err(d);
        }
        if let Some(ok) = stop {
            return Ok(ok);
        }
        if self
            .opts
            .dry_run
            .as_ref()
            .is_some_and(|f| f.contains(&stage.id))
        {
            // A stage without commands fails here in a --fail simulation.
            tagged.push((
                usize::MAX,
                Diagnostic::error(
                    codes::COMMAND_FAILED,
                    "",
                    format!("stage `{}` fails in this simulation", stage.id),
                ),
            ));
            return Ok(false);
        }
        Ok(true)
    }

    /// Record how a started step ended: the journal, the observer, the
    /// timeline; a failed critical step stops the stage.
    fn step_ended<'s>(
        &mut self,
        stage: &CStage,
        step: &'s CStep,
        result: StepResult,
        failed: &mut HashSet<&'s str>,
        stop: &mut Option<bool>,
        error: &mut Option<Diagnostic>,
    ) {
        if let (
            Ok(StepOk::Done {
                fingerprint: Some(fp),
            }),
            StepKind::RestoreImage | StepKind::Format | StepKind::InstallFiles,
        ) = (&result, step.kind)
        {
            self.fresh.insert(step.id.clone(), fp.clone());
        }
        let (ok, fingerprint, message, outcome) = match &result {
            Ok(StepOk::Done { fingerprint }) => (true, fingerprint.clone(), None, "ok"),
            Ok(StepOk::Unchanged { fingerprint }) => (
                true,
                fingerprint.clone(),
                Some("already in place".to_string()),
                "unchanged",
            ),
            Err(StepError(d)) => (false, None, Some(d.message.clone()), "failed"),
        };
        let target = self.place_identity(step);
        if let Err(d) = self.journal(Record::StepDone {
            step: step.id.clone(),
            ok,
            fingerprint,
            message: message.clone(),
            target,
        }) {
            // As a sequential run: nothing after a record that could not
            // be written is reported as done.
            error.get_or_insert(d);
            stop.get_or_insert(false);
            return;
        }
        self.finished(stage, step, outcome, message.as_deref());
        if let Err(StepError(d)) = result {
            failed.insert(&step.id);
            if self.step_failed(step, d) {
                stop.get_or_insert(false);
            }
        }
    }

    /// Report a failed step; true if it fails its stage (it is critical).
    fn step_failed(&mut self, step: &CStep, d: Diagnostic) -> bool {
        let d = Diagnostic {
            message: format!("step `{}` failed: {}", step.id, d.message),
            ..d
        };
        if step.critical {
            self.reports.push(d);
            return true;
        }
        self.failed_steps.push(step.id.clone());
        self.reports.push(
            Diagnostic {
                severity: rplan_compiler::Severity::Warning,
                ..d
            }
            .help("not critical: the rest of the restore went on"),
        );
        false
    }

    /// On `--resume`, how the interrupted run recorded `stage` ending.
    fn recorded_stage(&self, stage: &CStage) -> Option<bool> {
        self.resuming
            .then(|| self.journal.stage_outcome(&stage.id))
            .flatten()
    }

    /// On `--resume`, the recorded outcome of a command step (run, manual,
    /// probe) of the interrupted run: those are not run again, whatever
    /// they would say now. Write steps are redone or found unchanged by
    /// their own idempotence checks.
    fn recorded_command(&self, step: &CStep) -> Option<Result<(), Diagnostic>> {
        if !self.resuming
            || !matches!(
                step.kind,
                StepKind::Run | StepKind::Manual | StepKind::Probe
            )
        {
            return None;
        }
        let (ok, message) = self.journal.step_outcome(&step.id)?;
        Some(if ok {
            Ok(())
        } else {
            Err(Diagnostic::error(
                codes::COMMAND_FAILED,
                "",
                format!("{} (before the interruption)", message.unwrap_or("failed")),
            ))
        })
    }

    /// Tell the observer a step finished, and keep it for the timeline.
    fn finished(&mut self, stage: &CStage, step: &CStep, outcome: &str, message: Option<&str>) {
        self.obs.event(&Event::StepFinished {
            step: &step.id,
            outcome,
            message,
        });
        let (estimate_s, description) = self
            .on_this_target(step)
            .unwrap_or_else(|| (step.estimate_s, step.description.clone()));
        self.timeline.push(SimStep {
            stage: stage.id.clone(),
            step: step.id.clone(),
            description,
            outcome: outcome.to_string(),
            estimate_s: if outcome == "skipped" { 0 } else { estimate_s },
        });
    }

    /// The identity of the disk(s) `step` writes to, as the journal
    /// records it: `identity::fingerprint` of the target, or of every member
    /// disk of its volume joined with `+`. `None` for a step with no place
    /// or a target that cannot be identified.
    fn place_identity(&self, step: &CStep) -> Option<String> {
        let disks: Vec<&str> = match (&step.volume, &step.disk) {
            (Some(v), _) => {
                let mut d: Vec<&str> = self
                    .plan
                    .volume(v)?
                    .members
                    .iter()
                    .map(|m| m.disk.as_str())
                    .collect();
                d.sort_unstable();
                d.dedup();
                d
            }
            (None, Some(d)) => vec![d.as_str()],
            (None, None) => return None,
        };
        let ids = disks
            .iter()
            .map(|d| {
                let di = self.plan.disks.iter().position(|x| x.id == *d)?;
                crate::identity::fingerprint(&self.targets.get(di)?.as_ref()?.path)
            })
            .collect::<Option<Vec<String>>>()?;
        Some(ids.join("+"))
    }

    /// A format step's estimate and description for the real target: the
    /// compiled plan only knows a `rest` partition's size on the smallest
    /// disk the plan fits, and assumes the disk zeroes its free space
    /// cheaply (a punched hole, write-zeroes offload). On a disk without
    /// offload every byte of the partition is written.
    fn on_this_target(&self, step: &CStep) -> Option<(u64, String)> {
        if step.kind != StepKind::Format {
            return None;
        }
        let (d, p) = (step.disk.as_deref()?, step.partition.as_deref()?);
        let di = self.plan.disks.iter().position(|x| x.id == d)?;
        let disk = &self.plan.disks[di];
        let part = disk.partition(p)?;
        let device = &self.targets.get(di)?.as_ref()?.device;
        let cheap = device.zeroing_is_cheap();
        if part.size.is_some() && cheap {
            return None;
        }
        let (_, capacity) = layout::extent(disk, part, device.len());
        let fs = format!("{:?}", part.content.as_ref()?.format.as_ref()?.fs).to_lowercase();
        let size = inspect::approx_bytes(capacity);
        let throughput = self.plan.throughput.max(1);
        Some(if cheap {
            // The compiler's estimate for a format: 5 s plus writing 1/256
            // of it.
            (
                5 + (capacity / 256).div_ceil(throughput),
                format!("make {fs} on {d}/{p} ({size})"),
            )
        } else {
            (
                5 + capacity.div_ceil(throughput),
                format!(
                    "make {fs} on {d}/{p} ({size}; zeros written in full: \
                     the disk has no write-zeroes offload)"
                ),
            )
        })
    }

    /// The ASR stage reached this disk when its table step ran.
    fn reached(&self, disk: &str) -> bool {
        self.timeline.iter().any(|s| {
            matches!(s.outcome.as_str(), "ok" | "unchanged")
                && self.plan.step(&s.step).is_some_and(|(_, st)| {
                    st.kind == StepKind::WriteTable && st.disk.as_deref() == Some(disk)
                })
        })
    }

    /// What the run did, for a dry-run's report (and apply's `--report`):
    /// the timeline and each target's before → after; per simulated target
    /// also the ranges written and what they belong to.
    fn report(&self) -> DryRunReport {
        let mut disks = Vec::new();
        for (di, t) in self.targets.iter().enumerate() {
            let (Some(t), Some(disk)) = (t, self.plan.disks.get(di)) else {
                continue;
            };
            // A real target keeps no record of what was written: no
            // changes, and its "after" is the plan's if ASR got there.
            let written = t.device.written_ranges();
            let ranges = written.as_deref().unwrap_or_default();
            let len = t.device.len();
            let spec = layout::table_spec(disk, len);
            let mut areas = table::table_areas(&spec, len);
            let database = ldm::areas(disk, len);
            areas.extend(&database);
            let stale = t.stale_magic(&spec);
            let within = |start: u64, n: u64| {
                let inside = |(s, l): (u64, u64)| start >= s && start + n <= s + l;
                if database.iter().any(|&a| inside(a)) {
                    return "LDM database".to_string();
                }
                if areas.iter().any(|&a| inside(a)) {
                    return "partition table".to_string();
                }
                if stale.iter().any(|&a| inside(a)) {
                    return "old signatures".to_string();
                }
                disk.partitions
                    .iter()
                    .find(|p| inside(layout::extent(disk, p, len)))
                    .map_or_else(
                        || "outside declared ranges".to_string(),
                        |p| format!("partition {}", p.id),
                    )
            };
            // Split written ranges at table-area and partition boundaries.
            let mut cuts: Vec<u64> = areas
                .iter()
                .chain(&stale)
                .flat_map(|&(s, l)| [s, s + l])
                .collect();
            for p in &disk.partitions {
                let (s, l) = layout::extent(disk, p, len);
                cuts.extend([s, s + l]);
            }
            cuts.sort_unstable();
            let mut changes: Vec<SimChange> = Vec::new();
            for &(start, n) in ranges {
                let mut at = start;
                let end = start + n;
                for &c in cuts
                    .iter()
                    .filter(|&&c| c > start && c < end)
                    .chain(std::iter::once(&end))
                {
                    let what = within(at, c - at);
                    match changes.last_mut() {
                        Some(last) if last.within == what && last.start + last.len == at => {
                            last.len += c - at
                        }
                        _ => changes.push(SimChange {
                            start: at,
                            len: c - at,
                            within: what,
                        }),
                    }
                    at = c;
                }
            }
            let reach = match (self.reached(&disk.id), &written) {
                (false, _) => Reach::Untouched,
                (true, Some(ranges)) => Reach::Wrote(ranges),
                (true, None) => Reach::Worst,
            };
            let preview = preview::preview(
                self.plan,
                disk,
                &t.path.display().to_string(),
                &t.found,
                t.table_matched,
                reach,
            );
            disks.push(SimDisk {
                preview,
                table_unchanged: t.table_matched,
                changes,
            });
        }
        DryRunReport {
            scenario: String::new(),
            rto_estimate_s: self
                .timeline
                .iter()
                .fold(0_u64, |sum, s| sum.saturating_add(s.estimate_s)),
            steps: self.timeline.clone(),
            disks,
        }
    }

    fn step_bytes(&self, step: &CStep) -> Option<u64> {
        match step.kind {
            StepKind::RestoreImage | StepKind::Verify => {
                let content = self.content_of(step)?;
                content
                    .image
                    .as_ref()
                    .and_then(|i| self.plan.artifact(i))
                    .and_then(|a| a.size)
            }
            _ => None,
        }
    }

    fn content_of(&self, step: &CStep) -> Option<&Content> {
        match (&step.volume, &step.disk, &step.partition) {
            (Some(v), ..) => self.plan.volume(v)?.content.as_ref(),
            (None, Some(d), Some(p)) => self.plan.disk(d)?.partition(p)?.content.as_ref(),
            _ => None,
        }
    }

    fn step(&mut self, step: &CStep, deadline: Option<Instant>) -> StepResult {
        let remaining = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        match step.kind {
            StepKind::Run | StepKind::Manual | StepKind::Probe if self.opts.dry_run.is_some() => {
                // A dry-run runs no commands and asks no one: the stages
                // named with --fail fail, the others succeed.
                let stage = self.plan.step(&step.id).map_or("", |(s, _)| s.id.as_str());
                let fail = self
                    .opts
                    .dry_run
                    .as_ref()
                    .is_some_and(|f| f.iter().any(|x| x == stage));
                if fail {
                    Err((codes::COMMAND_FAILED, "fails in this simulation").into())
                } else {
                    Ok(StepOk::Done { fingerprint: None })
                }
            }
            StepKind::Run | StepKind::Probe => {
                let argv = step.argv.clone().unwrap_or_default();
                let limit = Duration::from_secs(step.timeout_s.unwrap_or(600)).min(remaining);
                match crate::process::run(&argv, limit) {
                    crate::process::Outcome::Success => Ok(StepOk::Done { fingerprint: None }),
                    crate::process::Outcome::TimedOut => Err((
                        codes::COMMAND_TIMEOUT,
                        format!(
                            "`{}` did not finish within {}s and was killed",
                            argv.join(" "),
                            limit.as_secs()
                        ),
                    )
                        .into()),
                    crate::process::Outcome::NotStarted(e) => Err((
                        codes::COMMAND_FAILED,
                        format!("cannot run `{}`: {e}", argv.join(" ")),
                    )
                        .into()),
                    crate::process::Outcome::Failed { code, output } => {
                        let tail = output
                            .lines()
                            .last()
                            .map(|l| format!(": {l}"))
                            .unwrap_or_default();
                        Err((
                            codes::COMMAND_FAILED,
                            format!(
                                "`{}` exited with {}{tail}",
                                argv.join(" "),
                                code.map_or("a signal".into(), |c| c.to_string())
                            ),
                        )
                            .into())
                    }
                }
            }
            StepKind::Manual => {
                let text = step.text.clone().unwrap_or_default();
                if self.opts.unattended {
                    return Err((
                        codes::COMMAND_FAILED,
                        "a manual action needs a person, and this run is unattended",
                    )
                        .into());
                }
                if (self.opts.manual)(&text) {
                    Ok(StepOk::Done { fingerprint: None })
                } else {
                    Err((
                        codes::COMMAND_FAILED,
                        "the operator reported the manual action failed",
                    )
                        .into())
                }
            }
            StepKind::CheckTarget => {
                let di = disk_index(self.plan, step.disk.as_deref().unwrap_or_default())?;
                let min = self.plan.disks[di].min_size;
                let supplied =
                    self.plan.disks[di].boot_code.is_some() || self.opts.boot_code.is_some();
                let system = layout::system_disk(self.plan) == Some(di);
                let t = target(self.plan, &mut self.targets, di)?;
                if t.device.len() < min {
                    return Err((
                        codes::TARGET_TOO_SMALL,
                        format!("{} is smaller than {}", t.path.display(), human_bytes(min)),
                    )
                        .into());
                }
                if system && !supplied {
                    let mut code = [0u8; 440];
                    t.device
                        .read_at(&mut code, 0)
                        .map_err(|e| (codes::IO_FAILED, e))?;
                    if code.iter().all(|&b| b == 0) {
                        let message = format!(
                            "{} has no MBR boot code and the plan supplies none: the restored machine cannot start from disk `{}`",
                            t.path.display(),
                            self.plan.disks[di].id
                        );
                        self.reports.push(
                            Diagnostic::warning(codes::BOOT_FLAG, "", message).help(
                                "add `boot_code: { artifact: … }` to the disk, or pass `--boot-code FILE` (e.g. syslinux's mbr.bin)",
                            ),
                        );
                    }
                }
                Ok(StepOk::Done { fingerprint: None })
            }
            StepKind::ClearSignatures => {
                let (disk, t, spec, _) = self.disk_table(step)?;
                // The disk is already ours when its layout is the plan's: its
                // partitions hold restored data. New boot code alone is the
                // table step's to write, and no reason to clear anything.
                let layout = table::TableSpec {
                    boot_code: None,
                    ..spec.clone()
                };
                if table::table_matches(t.device.as_ref(), &layout)
                    .map_err(|e| (codes::IO_FAILED, e))?
                {
                    return Ok(StepOk::Unchanged { fingerprint: None });
                }
                let ranges: Vec<(u64, u64)> = disk
                    .partitions
                    .iter()
                    .map(|p| layout::extent(disk, p, t.device.len()))
                    .collect();
                table::clear_signatures(t.device.as_mut(), &ranges)
                    .map_err(|e| (codes::IO_FAILED, e))?;
                // What inspection found on the disk being replaced and the new
                // table will not cover: erased as wipefs would, magic only.
                for (at, n) in t.stale_magic(&spec) {
                    t.device
                        .zero_range(at, n)
                        .map_err(|e| (codes::IO_FAILED, e))?;
                }
                t.device.sync().map_err(|e| (codes::IO_FAILED, e))?;
                Ok(StepOk::Done { fingerprint: None })
            }
            StepKind::WriteTable => {
                let database = self.ldm_writes(step)?;
                let (_, t, spec, matches) = self.disk_table(step)?;
                let database_matches = ldm::matches(t.device.as_ref(), &database)
                    .map_err(|e| (codes::IO_FAILED, e))?;
                if matches && database_matches {
                    return Ok(StepOk::Unchanged { fingerprint: None });
                }
                if !database_matches {
                    ldm::write(t.device.as_mut(), &database).map_err(|e| (codes::IO_FAILED, e))?;
                }
                table::write_table(t.device.as_mut(), &spec).map_err(|e| (codes::IO_FAILED, e))?;
                // Partition device nodes follow the new table; if the kernel
                // cannot re-read it now (EBUSY), the next boot will.
                let not_reread = t.device.table_changed().err().map(|e| {
                    format!(
                        "the kernel did not re-read the partition table of {}: {e}",
                        t.path.display()
                    )
                });
                if let Some(message) = not_reread {
                    self.reports
                        .push(Diagnostic::warning(codes::IO_FAILED, "", message));
                }
                Ok(StepOk::Done { fingerprint: None })
            }
            StepKind::AssembleVolume => {
                let v = self
                    .plan
                    .volume(step.volume.as_deref().unwrap_or_default())
                    .ok_or_else(|| {
                        StepError(Diagnostic::error(
                            codes::UNKNOWN_TARGET,
                            "",
                            "unknown volume",
                        ))
                    })?;
                self.with_place(step, |dev, _| {
                    if dev.len() < v.usable_size {
                        return Err((
                            codes::TARGET_TOO_SMALL,
                            format!(
                                "volume `{}` has {} usable, the plan needs {}",
                                v.id,
                                human_bytes(dev.len()),
                                human_bytes(v.usable_size)
                            ),
                        )
                            .into());
                    }
                    Ok(StepOk::Done { fingerprint: None })
                })
            }
            StepKind::RestoreImage => self.restore(step),
            StepKind::Format => self.format(step),
            StepKind::InstallFiles => self.files(step),
            StepKind::Verify => self.verify(step),
            StepKind::FixBootSector => self.with_place(step, |dev, first_sector| {
                let fix = crate::bootsector::plan(dev, first_sector)
                    .map_err(|e| (codes::IO_FAILED, e))?;
                match fix {
                    None => Ok(StepOk::Unchanged { fingerprint: None }),
                    Some(fix) => {
                        crate::bootsector::apply(dev, &fix).map_err(|e| (codes::IO_FAILED, e))?;
                        Ok(StepOk::Done { fingerprint: None })
                    }
                }
            }),
        }
    }

    fn with_place<R>(
        &mut self,
        step: &CStep,
        f: impl FnOnce(&mut dyn Device, u64) -> Result<R, StepError>,
    ) -> Result<R, StepError> {
        with_place(self.plan, &mut self.targets, step, f)
    }

    /// The MBR boot code to write on disk `di`: its `boot_code` artifact, or
    /// for the system disk `--boot-code`; `None` keeps what the disk has.
    fn boot_code(&self, di: usize) -> Result<Option<[u8; 440]>, StepError> {
        let disk = &self.plan.disks[di];
        let Some(id) = &disk.boot_code else {
            return Ok(self
                .opts
                .boot_code
                .filter(|_| layout::system_disk(self.plan) == Some(di)));
        };
        let (path, _, _) = self.artifact(id)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            (
                codes::ARTIFACT_MISSING,
                format!("boot code {}: {e}", path.display()),
            )
        })?;
        match bytes.get(..440) {
            Some(code) if bytes.len() <= 512 => {
                let mut out = [0u8; 440];
                out.copy_from_slice(code);
                Ok(Some(out))
            }
            _ => Err((
                codes::ARTIFACT_SIZE,
                format!(
                    "boot code {} is {} bytes; MBR boot code is 440 (or a 512-byte sector)",
                    path.display(),
                    bytes.len()
                ),
            )
                .into()),
        }
    }

    /// What a table step writes of the LDM database on its disk (nothing
    /// on a basic disk). The database describes every member disk, so every
    /// member's target must be open.
    fn ldm_writes(&self, step: &CStep) -> Result<Vec<(u64, Vec<u8>)>, StepError> {
        let di = disk_index(self.plan, step.disk.as_deref().unwrap_or_default())?;
        if !ldm::is_dynamic(&self.plan.disks[di]) {
            return Ok(Vec::new());
        }
        let lens: Vec<u64> = self
            .targets
            .iter()
            .map(|t| t.as_ref().map_or(0, |t| t.device.len()))
            .collect();
        let group = ldm::group(self.plan, &lens).map_err(|e| (codes::UNKNOWN_TARGET, e))?;
        ldm::disk_writes(self.plan, group.as_ref(), di)
            .map_err(|e| (codes::UNKNOWN_TARGET, e).into())
    }

    /// A disk step's disk, its target, the table to write on it, and
    /// whether the target already carries exactly that table.
    fn disk_table(
        &mut self,
        step: &CStep,
    ) -> Result<(&CDisk, &mut Target, table::TableSpec, bool), StepError> {
        let plan = self.plan;
        let di = disk_index(plan, step.disk.as_deref().unwrap_or_default())?;
        let disk = &plan.disks[di];
        let boot_code = self.boot_code(di)?;
        let t = target(plan, &mut self.targets, di)?;
        let mut spec = layout::table_spec(disk, t.device.len());
        spec.boot_code = boot_code;
        let matches =
            table::table_matches(t.device.as_ref(), &spec).map_err(|e| (codes::IO_FAILED, e))?;
        Ok((disk, t, spec, matches))
    }

    fn artifact(&self, id: &str) -> Result<(PathBuf, ArtifactFormat, Expected), StepError> {
        let a = self.plan.artifact(id).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::ARTIFACT_MISSING,
                "",
                format!("no artifact `{id}`"),
            ))
        })?;
        let sha = decode_sha(&a.sha256).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::ARTIFACT_SHA256,
                "",
                format!("artifact `{id}` has a malformed sha256"),
            ))
        })?;
        Ok((
            PathBuf::from(&a.path),
            a.format,
            Expected {
                size: a.size,
                sha256: sha,
            },
        ))
    }

    fn restore(&mut self, step: &CStep) -> StepResult {
        let image = self
            .content_of(step)
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let (path, format, expected) = self.artifact(&image)?;
        let size = expected.size.unwrap_or(0);
        let sha = hex(&expected.sha256);
        let here = self.place_identity(step);
        let prior = self
            .journal
            .done_before(&step.id, here.as_deref())
            .is_some();
        let matched = step
            .disk
            .as_deref()
            .and_then(|d| self.plan.disks.iter().position(|x| x.id == d))
            .and_then(|di| self.targets[di].as_ref())
            .is_some_and(|t| t.table_matched);
        let obs = &mut *self.obs;
        let step_id = step.id.clone();
        with_place(self.plan, &mut self.targets, step, |dev, first_sector| {
            // Already there (a re-apply)? Then nothing needs writing. An
            // image whose boot sector the `bootsector` step relocated counts
            // as there when it hashes as made.
            if (prior || matched) && size <= dev.len() {
                let there = hash_range(dev, 0, size, &mut |_| {}).ok().as_deref()
                    == Some(sha.as_str())
                    || (step.volume.is_none()
                        && restore::open_artifact(&path, format)
                            .and_then(|mut src| {
                                crate::bootsector::hash_as_made(dev, first_sector, size, &mut src)
                            })
                            .ok()
                            .flatten()
                            .as_deref()
                            == Some(sha.as_str()));
                if there {
                    return Ok(StepOk::Unchanged {
                        fingerprint: Some(sha.clone()),
                    });
                }
            }

            let mut src = restore::open_artifact(&path, format)
                .map_err(|e| (codes::ARTIFACT_MISSING, format!("{}: {e}", path.display())))?;
            // Zero the image's range first where that is cheap (a punched
            // hole, or a disk's write-zeroes offload), so zero runs of the
            // image need not be written at all. Where the kernel would write
            // the zeros itself, that would write the range twice: the image
            // is written whole instead, zeros included.
            let zeroed = dev.zeroing_is_cheap() && dev.zero_range(0, size.min(dev.len())).is_ok();
            let mut throttle = Throttle::new(size);
            let total = size;
            let capacity = dev.len();
            let stats = restore::restore(
                dev,
                0,
                capacity,
                &mut src,
                &expected,
                &RestoreOptions { skip_zeros: zeroed },
                &mut |done| {
                    if throttle.due(done) {
                        obs.event(&Event::Bytes {
                            step: &step_id,
                            done,
                            total,
                        });
                    }
                },
            )
            .map_err(|e| {
                let code = if matches!(
                    e,
                    restore::RestoreError::Sha256Mismatch { .. }
                        | restore::RestoreError::SizeMismatch { .. }
                ) {
                    codes::VERIFY_MISMATCH
                } else {
                    codes::IO_FAILED
                };
                (code, e)
            })?;
            let _ = stats;
            Ok(StepOk::Done {
                fingerprint: Some(sha.clone()),
            })
        })
    }

    fn format(&mut self, step: &CStep) -> StepResult {
        let Some(f) = self.content_of(step).and_then(|c| c.format.clone()) else {
            return Err((codes::IO_FAILED, "no filesystem to make").into());
        };
        let fs = f.fs;
        if let Some(unchanged) = self.unchanged(step) {
            return Ok(unchanged);
        }
        let sector_size = self.sector_size(step);
        let seed_bytes = stable_hash(&[&self.plan.name, &step.id, "filesystem"]);
        let seed = u64::from_le_bytes([
            seed_bytes[0],
            seed_bytes[1],
            seed_bytes[2],
            seed_bytes[3],
            seed_bytes[4],
            seed_bytes[5],
            seed_bytes[6],
            seed_bytes[7],
        ]);
        let temp = self.opts.temp_dir.clone();
        let obs = &mut *self.obs;
        let step_id = step.id.clone();
        with_place(self.plan, &mut self.targets, step, |dev, first_sector| {
            let len = dev.len();
            // Even without write-zeroes offload, the kernel's zeroing
            // (BLKZEROOUT writing zero pages) beats zeros written from here
            // through the page cache (BENCHMARKS.md, "Zeroing"); it then
            // takes the disk's write time, and shows progress.
            let mut throttle = Throttle::new(len);
            let zeroed = zero_showing_progress(dev, len, &mut |done| {
                if throttle.due(done) {
                    obs.event(&Event::Bytes {
                        step: &step_id,
                        done,
                        total: len,
                    });
                }
            });
            let holes = if zeroed.is_ok() {
                Holes::AlreadyZero
            } else {
                Holes::WriteZeros
            };
            let opts = FormatOptions {
                label: f.label.as_deref(),
                sector_size,
                seed,
                partition_start_sector: first_sector,
                holes,
                temp_dir: temp.as_deref(),
            };
            let mut region = Region::whole(dev);
            let made = mkfs::format(&mut region, len, fs, &opts).map_err(|e| {
                let code = match e {
                    mkfs::MkfsError::ToolMissing(..) => codes::TOOL_MISSING,
                    // Reading or writing the target or the temp file.
                    mkfs::MkfsError::Io { .. } => codes::IO_FAILED,
                    _ => codes::COMMAND_FAILED,
                };
                (code, e)
            })?;
            region.flush().map_err(|e| (codes::IO_FAILED, e))?;
            // Fingerprinted from what was written, not read back: the cost
            // follows mkfs's output, not the partition's size.
            Ok(StepOk::Done {
                fingerprint: Some(made.fingerprint),
            })
        })
    }

    fn files(&mut self, step: &CStep) -> StepResult {
        let files = self
            .content_of(step)
            .map(|c| c.files.clone())
            .unwrap_or_default();
        if let Some(unchanged) = self.unchanged(step) {
            return Ok(unchanged);
        }
        // A torn install after a crash: make the filesystem again first, so
        // that the result is byte-identical to an uninterrupted run.
        if self.journal.torn(&step.id) {
            let format_step = step
                .after
                .first()
                .and_then(|id| self.plan.step(id))
                .map(|(_, s)| s.clone());
            if let Some(fs_step) = format_step.filter(|s| s.kind == StepKind::Format) {
                self.format(&fs_step)?;
            }
        }
        let mut sources = Vec::new();
        for f in &files {
            let (path, _, expected) = self.artifact(&f.artifact)?;
            sources.push((f.to.clone(), path, expected));
        }
        self.with_place(step, |dev, _| {
            install_and_check(dev, &sources)?;
            let len = dev.len();
            let fp = crate::fingerprint::of_device(dev, len).map_err(|e| (codes::IO_FAILED, e))?;
            Ok(StepOk::Done {
                fingerprint: Some(fp),
            })
        })
    }

    /// A write step the journal says was done, whose range still hashes to
    /// the recorded fingerprint: skip it.
    fn unchanged(&mut self, step: &CStep) -> Option<StepOk> {
        let here = self.place_identity(step);
        let fp = self
            .journal
            .done_before(&step.id, here.as_deref())??
            .to_string();
        // The content chain after this step changes the range: only the last
        // step's fingerprint describes what is there now.
        let later = self
            .plan
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|s| s.after.contains(&step.id) && matches!(s.kind, StepKind::InstallFiles))
            .map(|s| s.id.clone())
            .next();
        let expect = match later {
            Some(next) => self.journal.done(&next)??.to_string(),
            None => fp.clone(),
        };
        let same = self.with_place(step, |dev, _| {
            let len = dev.len();
            crate::fingerprint::range_matches(dev, len, &expect)
                .map_err(|e| (codes::IO_FAILED, e).into())
        });
        same.ok()?.then_some(StepOk::Unchanged {
            fingerprint: Some(fp),
        })
    }

    fn sector_size(&self, step: &CStep) -> u32 {
        step.disk
            .as_deref()
            .and_then(|d| self.plan.disk(d))
            .or_else(|| {
                step.volume
                    .as_deref()
                    .and_then(|v| self.plan.volume(v))
                    .and_then(|v| v.members.first())
                    .and_then(|m| self.plan.disk(&m.disk))
            })
            .map_or(512, |d| d.sector_size)
    }

    fn verify(&mut self, step: &CStep) -> StepResult {
        let content = self.content_of(step).cloned().unwrap_or(Content {
            image: None,
            format: None,
            files: Vec::new(),
        });
        // What the last content step recorded, or the image's own hash.
        let producer = step.after.first().cloned().unwrap_or_default();
        if let Some(fp) = self.fresh.get(&producer) {
            // Written in this run and checked as it was written (a restore's
            // stream hashed against the artifact, files read back through
            // the filesystem): reading it all again would only re-read the
            // page cache. A later run's verify reads the target itself.
            return Ok(StepOk::Done {
                fingerprint: Some(fp.clone()),
            });
        }
        let mut source = None;
        let (len, expect) = match (&content.image, self.journal.done(&producer).flatten()) {
            (Some(image), _) => {
                let (path, format, e) = self.artifact(image)?;
                source = Some((path, format));
                (e.size, hex(&e.sha256))
            }
            (None, Some(fp)) => (None, fp.to_string()),
            (None, None) => {
                return Err((
                    codes::VERIFY_MISMATCH,
                    format!("nothing recorded for `{producer}` to verify against"),
                )
                    .into())
            }
        };
        let obs = &mut *self.obs;
        let id = step.id.clone();
        let partition = step.volume.is_none();
        with_place(self.plan, &mut self.targets, step, |dev, first_sector| {
            let n = len.unwrap_or(dev.len());
            let mut throttle = Throttle::new(n);
            let got = if crate::fingerprint::is_sparse(&expect) {
                crate::fingerprint::of_device(dev, n)
            } else {
                hash_range(dev, 0, n, &mut |done| {
                    if throttle.due(done) {
                        obs.event(&Event::Bytes {
                            step: &id,
                            done,
                            total: n,
                        });
                    }
                })
            }
            .map_err(|e| (codes::IO_FAILED, e))?;
            // An image restored in an earlier run and relocated by its
            // `bootsector` step: compare it as made.
            let as_made = || {
                let (path, format) = source.as_ref()?;
                let mut src = restore::open_artifact(path, *format).ok()?;
                crate::bootsector::hash_as_made(dev, first_sector, n, &mut src)
                    .ok()
                    .flatten()
            };
            if got != expect && !(partition && as_made().as_deref() == Some(expect.as_str())) {
                return Err((
                    codes::VERIFY_MISMATCH,
                    format!("read back sha256 {got}, expected {expect}"),
                )
                    .into());
            }
            Ok(StepOk::Done {
                fingerprint: Some(expect.clone()),
            })
        })
    }
}

/// Install every file into the FAT filesystem on `dev` in one pass, then
/// read them all back through the filesystem in one more and compare each
/// with its artifact's sha256.
fn install_and_check(
    dev: &mut dyn Device,
    sources: &[(String, PathBuf, Expected)],
) -> Result<(), StepError> {
    // Opened one at a time as fatfs reads them: thousands of files must not
    // mean thousands of open descriptors.
    let mut opened: Vec<LazyArtifact> = sources
        .iter()
        .map(|(_, path, _)| LazyArtifact {
            path: path.clone(),
            file: None,
            done: false,
        })
        .collect();
    let mut files: Vec<(&str, &mut dyn Read)> = sources
        .iter()
        .zip(opened.iter_mut())
        .map(|((to, _, _), f)| (to.as_str(), f as &mut dyn Read))
        .collect();
    crate::fat::install_files(Region::whole(&mut *dev), &mut files)
        .map_err(|e| (codes::IO_FAILED, format!("installing files: {e}")))?;
    // Read them back through the filesystem: verify every byte.
    let mut sinks: Vec<HashingSink> = sources.iter().map(|_| HashingSink::default()).collect();
    let mut reads: Vec<(&str, &mut dyn Write)> = sources
        .iter()
        .zip(sinks.iter_mut())
        .map(|((to, _, _), s)| (to.as_str(), s as &mut dyn Write))
        .collect();
    crate::fat::read_files(Region::whole(&mut *dev), &mut reads)
        .map_err(|e| (codes::VERIFY_MISMATCH, format!("reading back: {e}")))?;
    for ((to, path, expected), sink) in sources.iter().zip(sinks) {
        if sink.hasher.finalize().as_slice() != expected.sha256 {
            return Err((
                codes::VERIFY_MISMATCH,
                format!("{to} reads back different from artifact {}", path.display()),
            )
                .into());
        }
    }
    Ok(())
}

/// An artifact file opened on its first read and closed at its end.
struct LazyArtifact {
    path: PathBuf,
    file: Option<Box<dyn Read + Send>>,
    done: bool,
}

impl Read for LazyArtifact {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                restore::open_artifact(&self.path, ArtifactFormat::File).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
                })?,
            ),
        };
        let n = file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.file = None;
            self.done = true;
        }
        Ok(n)
    }
}

/// Run `f` on the step's place: its partition's [`Region`], or its volume
/// through its LDM data layout. `f` also gets the partition's first sector (0 for
/// a volume).
fn with_place<R>(
    plan: &CompiledPlan,
    targets: &mut [Option<Target>],
    step: &CStep,
    f: impl FnOnce(&mut dyn Device, u64) -> Result<R, StepError>,
) -> Result<R, StepError> {
    if let Some(vid) = &step.volume {
        let v = plan.volume(vid).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::UNKNOWN_TARGET,
                "",
                format!("no volume `{vid}`"),
            ))
        })?;
        let lens: Vec<u64> = targets
            .iter()
            .map(|t| t.as_ref().map_or(0, |t| t.device.len()))
            .collect();
        let mut members = layout::members(plan, v, |di| lens[di]).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::UNKNOWN_TARGET,
                "",
                "a volume member is missing",
            ))
        })?;
        // VolumeWriter indexes the devices it is given: hand it only the
        // member disks, renumbered.
        let used: Vec<usize> = {
            let mut u: Vec<usize> = members.iter().map(|m| m.device).collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        for m in &mut members {
            m.device = used.iter().position(|&d| d == m.device).unwrap_or(0);
        }
        let mut devices: Vec<&mut dyn Device> = Vec::new();
        for (di, t) in targets.iter_mut().enumerate() {
            if used.contains(&di) {
                match t {
                    Some(t) => devices.push(t.device.as_mut()),
                    None => {
                        return Err((
                            codes::UNKNOWN_TARGET,
                            format!("no target for member disk `{}`", plan.disks[di].id),
                        )
                            .into())
                    }
                }
            }
        }
        let writer = VolumeWriter::new(devices, layout::volume_layout(v), &members)
            .map_err(|e| (codes::IO_FAILED, e))?;
        let mut dev = VolumeDevice::new(writer);
        let r = f(&mut dev, 0)?;
        dev.finish().map_err(|e| (codes::IO_FAILED, e))?;
        return Ok(r);
    }
    let (Some(d), Some(p)) = (&step.disk, &step.partition) else {
        return Err((codes::UNKNOWN_TARGET, "step has no place").into());
    };
    let di = disk_index(plan, d)?;
    let disk = &plan.disks[di];
    let part = disk.partition(p).ok_or_else(|| {
        StepError(Diagnostic::error(
            codes::UNKNOWN_TARGET,
            "",
            format!("no partition `{p}`"),
        ))
    })?;
    let t = target(plan, targets, di)?;
    let (start, len) = layout::extent(disk, part, t.device.len());
    let mut region =
        Region::new(t.device.as_mut(), start, len).map_err(|e| (codes::IO_FAILED, e))?;
    let r = f(&mut region, start / u64::from(disk.sector_size))?;
    region.sync().map_err(|e| (codes::IO_FAILED, e))?;
    Ok(r)
}

fn disk_index(plan: &CompiledPlan, id: &str) -> Result<usize, StepError> {
    plan.disks.iter().position(|d| d.id == id).ok_or_else(|| {
        StepError(Diagnostic::error(
            codes::UNKNOWN_TARGET,
            "",
            format!("no disk `{id}`"),
        ))
    })
}

fn target<'t>(
    plan: &CompiledPlan,
    targets: &'t mut [Option<Target>],
    di: usize,
) -> Result<&'t mut Target, StepError> {
    let id = &plan.disks[di].id;
    targets[di].as_mut().ok_or_else(|| {
        StepError(Diagnostic::error(
            codes::UNKNOWN_TARGET,
            "",
            format!("no target for disk `{id}`"),
        ))
    })
}

/// sha256 of `[start, start+len)` of `dev`, read in 4 MiB blocks.
pub fn hash_range(
    dev: &dyn Device,
    start: u64,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0_u8; 4 << 20];
    let mut done = 0_u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        dev.read_at(&mut buf[..n], start + done)?;
        h.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(hex(&h.finalize()))
}

fn decode_sha(s: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Default)]
struct HashingSink {
    hasher: Sha256,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Pieces in which a disk without write-zeroes offload is zeroed, so that a
/// long zeroing shows progress (and each BLKZEROOUT stays short).
const ZERO_PIECE: u64 = 256 << 20;

/// Zero `[0, len)` of `dev`: at once where that is cheap, else piece by
/// piece, calling `progress` with the bytes zeroed so far.
fn zero_showing_progress(
    dev: &mut dyn Device,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    if dev.zeroing_is_cheap() {
        return dev.zero_range(0, len);
    }
    let mut at = 0;
    while at < len {
        let n = (len - at).min(ZERO_PIECE);
        dev.zero_range(at, n)?;
        at += n;
        progress(at);
    }
    Ok(())
}

/// A volume seen as one [`Device`]: reads and writes go through the LDM
/// layout to the member partitions.
struct VolumeDevice<'a> {
    inner: Mutex<VolumeWriter<'a>>,
    len: u64,
}

impl<'a> VolumeDevice<'a> {
    fn new(w: VolumeWriter<'a>) -> Self {
        let len = w.len();
        VolumeDevice {
            inner: Mutex::new(w),
            len,
        }
    }

    fn finish(self) -> std::io::Result<()> {
        self.inner
            .into_inner()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?
            .finish()
    }
}

impl Device for VolumeDevice<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut w = self
            .inner
            .lock()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?;
        w.seek(SeekFrom::Start(offset))?;
        w.read_exact(buf)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let w = self
            .inner
            .get_mut()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?;
        w.seek(SeekFrom::Start(offset))?;
        w.write_all(buf)
    }
    fn zero_range(&mut self, _offset: u64, _len: u64) -> std::io::Result<()> {
        // Zeroing through a layout would write every byte; report that it
        // is not cheap so callers write zeros only where they must.
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no cheap zeroing through a volume layout",
        ))
    }
    fn zeroing_is_cheap(&self) -> bool {
        false
    }
    fn sync(&mut self) -> std::io::Result<()> {
        let w = self
            .inner
            .get_mut()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?;
        w.flush()?;
        w.sync()
    }
}

/// Move the diagnostics pushed since `mark` to `tagged`, as step `i`'s.
fn tag(
    reports: &mut Vec<Diagnostic>,
    mark: usize,
    i: usize,
    tagged: &mut Vec<(usize, Diagnostic)>,
) {
    tagged.extend(
        reports
            .split_off(mark.min(reports.len()))
            .into_iter()
            .map(|d| (i, d)),
    );
}

/// What a step's thread tells the stage's thread.
enum Message {
    Bytes {
        step: String,
        done: u64,
        total: u64,
    },
    /// The step ended: its result, the diagnostics it raised, and the
    /// targets it was lent.
    Done {
        index: usize,
        targets: Vec<Option<Target>>,
        result: StepResult,
        reports: Vec<Diagnostic>,
    },
}

/// Forwards a step thread's progress to the stage's thread, which alone
/// talks to the observer: the JSON stream stays one whole object a line.
struct Forward(std::sync::mpsc::Sender<Message>);

impl Observer for Forward {
    fn event(&mut self, e: &Event) {
        if let Event::Bytes { step, done, total } = e {
            let _ = self.0.send(Message::Bytes {
                step: step.to_string(),
                done: *done,
                total: *total,
            });
        }
    }
}

/// The options a step reads, without the operator's callbacks (a step
/// that asks someone runs on the stage's thread).
struct WorkerOptions {
    force: bool,
    resume: bool,
    unattended: bool,
    temp_dir: Option<PathBuf>,
    dry_run: Option<Vec<String>>,
    boot_code: Option<[u8; 440]>,
    jobs: Option<usize>,
}

impl WorkerOptions {
    fn of(o: &ApplyOptions) -> Self {
        WorkerOptions {
            force: o.force,
            resume: o.resume,
            unattended: o.unattended,
            temp_dir: o.temp_dir.clone(),
            dry_run: o.dry_run.clone(),
            boot_code: o.boot_code,
            jobs: o.jobs,
        }
    }

    fn into_options(self) -> ApplyOptions {
        ApplyOptions {
            force: self.force,
            resume: self.resume,
            unattended: self.unattended,
            journal_dir: PathBuf::new(),
            temp_dir: self.temp_dir,
            confirm: None,
            manual: Box::new(|_| false),
            dry_run: self.dry_run,
            own_files: Vec::new(),
            color: false,
            boot_code: self.boot_code,
            jobs: self.jobs,
            verifying: None,
        }
    }
}

/// One step to run on its own thread with the targets it occupies.
struct Job {
    index: usize,
    targets: Vec<Option<Target>>,
    /// A read-only copy of the journal: the stage's thread writes it.
    journal: Journal,
    fresh: std::collections::HashMap<String, String>,
    resuming: bool,
    opts: WorkerOptions,
}

impl Job {
    fn run(
        self,
        plan: &CompiledPlan,
        step: &CStep,
        deadline: Option<Instant>,
        tx: std::sync::mpsc::Sender<Message>,
    ) {
        let mut opts = self.opts.into_options();
        let mut forward = Forward(tx.clone());
        let mut run = Run {
            plan,
            targets: self.targets,
            journal: self.journal,
            opts: &mut opts,
            obs: &mut forward,
            reports: Vec::new(),
            resuming: self.resuming,
            timeline: Vec::new(),
            fresh: self.fresh,
            failed_steps: Vec::new(),
        };
        crate::fault::step_started(&step.id);
        // The stage's thread waits for this message: a panic must still
        // send it (with the targets), or the stage would wait for ever.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.step(step, deadline)))
                .unwrap_or_else(|_| {
                    Err(StepError(Diagnostic::error(
                        codes::IO_FAILED,
                        "",
                        "the step's thread panicked",
                    )))
                });
        let Run {
            targets, reports, ..
        } = run;
        let _ = tx.send(Message::Done {
            index: self.index,
            targets,
            result,
            reports,
        });
    }
}

/// A copy of `journal`'s records that writes nowhere.
fn snapshot(journal: &Journal) -> Journal {
    let mut copy = Journal::in_memory();
    copy.records.clone_from(&journal.records);
    copy
}
