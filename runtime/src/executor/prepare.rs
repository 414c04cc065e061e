//! Everything before the first step: the targets opened and checked
//! (read-only under an overlay for a dry-run), the operator asked, the
//! journal opened or resumed; and the compiled plan's artifacts checked
//! for staleness.

use super::*;
use rplan_compiler::compiled::CArtifact;

/// Check the compiled plan's artifacts still hash to what it says: a
/// compiled plan whose backup changed is stale, like an old Terraform plan.
/// (Without hashing, `preflight::artifact_files` is the whole check.)
pub fn check_artifacts(plan: &CompiledPlan) -> Vec<Diagnostic> {
    stale_artifacts(&plan.artifacts)
}

/// The compiled artifacts hashed (several at once): a file that no longer
/// is what was compiled makes the plan stale, whatever way it differs.
pub(crate) fn stale_artifacts(artifacts: &[CArtifact]) -> Vec<Diagnostic> {
    rplan_compiler::analyze::artifacts::verify(artifacts)
        .into_iter()
        .map(|d| match d.code {
            codes::ARTIFACT_SHA256 | codes::ARTIFACT_SIZE => {
                Diagnostic::error(codes::STALE_COMPILED, "", d.message)
                    .help("the artifact changed since the plan was compiled: compile the plan again against the current backup")
            }
            _ => d,
        })
        .collect()
}

/// Everything before the first step: targets opened and checked (read-only
/// under an overlay for a dry-run), the operator asked, the journal opened.
pub(super) fn prepare(
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

pub(super) fn journal_write_failed(e: std::io::Error) -> Outcome {
    Outcome::Usage {
        diagnostics: vec![Diagnostic::error(
            codes::IO_FAILED,
            "",
            format!("cannot write journal: {e}"),
        )],
    }
}

/// Every file of the plan's that a target must not be: its artifacts, the
/// files the caller names (plan, compiled plan) and, when applying, the
/// journal.
pub(super) fn own_files(plan: &CompiledPlan, opts: &ApplyOptions) -> Vec<(String, PathBuf)> {
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
pub(super) fn nothing_to_resume(plan: &CompiledPlan, journal_path: &Path) -> Option<Diagnostic> {
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
pub(super) fn ending_step<'p>(stage: &'p CStage, journal: &Journal) -> Option<&'p CStep> {
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
pub(super) fn retryable_stage<'p>(plan: &'p CompiledPlan, journal: &Journal) -> Option<&'p CStage> {
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
pub(super) fn other_journals(path: &Path) -> Vec<String> {
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
pub(super) fn disks_torn_by_us(
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
pub(super) fn open_checked(
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
pub(super) fn refuse_foreign(
    name: &str,
    found: &Inspection,
    spec: &table::TableSpec,
) -> Option<Diagnostic> {
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
