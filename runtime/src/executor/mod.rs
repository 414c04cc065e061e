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

mod files;
mod format;
mod image;
mod prepare;
mod step;
mod verify;
mod volume;
mod worker;

pub use prepare::check_artifacts;
use prepare::prepare;
pub(crate) use prepare::stale_artifacts;
use step::with_place;
pub use verify::hash_range;
use volume::VolumeDevice;
use worker::{snapshot, tag, Job, Message, WorkerOptions};

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

pub(super) struct Target {
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

pub(super) fn execute(
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
}
