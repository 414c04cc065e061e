//! Parallel steps: a step run on its own thread with the targets it
//! occupies, its events and diagnostics forwarded to the stage loop.

use super::*;

/// Move the diagnostics pushed since `mark` to `tagged`, as step `i`'s.
pub(super) fn tag(
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
pub(super) enum Message {
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
pub(super) struct Forward(std::sync::mpsc::Sender<Message>);

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
pub(super) struct WorkerOptions {
    force: bool,
    resume: bool,
    unattended: bool,
    temp_dir: Option<PathBuf>,
    dry_run: Option<Vec<String>>,
    boot_code: Option<[u8; 440]>,
    jobs: Option<usize>,
}

impl WorkerOptions {
    pub(super) fn of(o: &ApplyOptions) -> Self {
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
pub(super) struct Job {
    pub(super) index: usize,
    pub(super) targets: Vec<Option<Target>>,
    /// A read-only copy of the journal: the stage's thread writes it.
    pub(super) journal: Journal,
    pub(super) fresh: std::collections::HashMap<String, String>,
    pub(super) resuming: bool,
    pub(super) opts: WorkerOptions,
}

impl Job {
    pub(super) fn run(
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
pub(super) fn snapshot(journal: &Journal) -> Journal {
    let mut copy = Journal::in_memory();
    copy.records.clone_from(&journal.records);
    copy
}
