//! `rplan apply`: load a plan (YAML, compiled here) or a compiled plan
//! (JSON, checked for staleness), then hand it to the runtime executor with
//! the operator's answers wired to the terminal.

use crate::{exit, CompileFlags};
use rplan_compiler::{codes, CompiledPlan, Diagnostic};
use rplan_runtime::events::{printable, printable_lines, Human, Json, Observer};
use rplan_runtime::executor::{self, ApplyOptions, DryRunReport, Outcome, TargetArg};
use rplan_runtime::preflight::{self, Verifying};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub const REFUSED: u8 = 4;
pub const ALL_FAILED: u8 = 3;
/// `--strict`: a stage recovered, but non-critical steps of it failed.
pub const PARTIAL: u8 = 5;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A plan (YAML) or a compiled plan (JSON from `rplan compile`); `-`
    /// reads it from standard input (then --yes is needed, and artifact
    /// paths are relative to the current directory).
    #[arg(value_name = "PLAN")]
    plan: PathBuf,
    /// DISK=PATH: the device or image file to restore disk DISK onto.
    #[arg(long = "target", value_name = "DISK=PATH", value_parser = parse_target)]
    targets: Vec<TargetArg>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Continue an interrupted apply from its journal; or, after an apply
    /// that ended (exit 3) because its last stage failed on a write step
    /// (I/O error, full disk, unreadable artifact, verify mismatch), retry
    /// that stage from its first step not done on this target, keeping the
    /// earlier stages' recorded failures. Refused (exit 4) when there is
    /// nothing to resume: no journal, a run that recovered, or one whose
    /// stages failed on a command's or probe's answer.
    #[arg(long)]
    resume: bool,
    /// Overwrite a target that carries another disk's partition table.
    #[arg(long)]
    force: bool,
    /// Count every `manual` action as failed instead of asking. Without a
    /// terminal (nobody to answer), a plan with manual actions is refused
    /// (exit 4) unless this is given: the ladder then goes on to the next
    /// stage, which may be a destructive ASR.
    #[arg(long)]
    skip_manual: bool,
    /// Where the journal lives (default: /var/lib/rplan/journal as root,
    /// else $XDG_STATE_HOME/rplan/journal).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Where temporary filesystem images are made (default: $TMPDIR).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// How many steps may run at the same time: steps on different disks
    /// (restores, formats, verifies) overlap; steps on the same disk always
    /// run one after another, in the plan's order. Default: one per target.
    /// `--jobs 1` runs every step in turn.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// `json` streams one event per line on stdout.
    #[arg(long, value_enum, default_value = "human")]
    format: EventFormat,
    /// MBR boot code (440 bytes, or a 512-byte sector holding it, e.g.
    /// syslinux's mbr.bin) for the system disk when the plan has no
    /// `boot_code`.
    #[arg(long, value_name = "FILE")]
    boot_code: Option<PathBuf>,
    /// Also write a self-contained HTML page to FILE: the step graph, each
    /// step's and stage's result, each disk before the run and after, the
    /// timeline and the estimated time to recover.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    flags: CompileFlags,
}

/// The first 440 bytes of a 440- to 512-byte boot code file.
fn read_boot_code(path: &Path) -> Result<[u8; 440], String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--boot-code {}: {e}", path.display()))?;
    match bytes.get(..440) {
        Some(code) if bytes.len() <= 512 => {
            let mut out = [0u8; 440];
            out.copy_from_slice(code);
            Ok(out)
        }
        _ => Err(format!(
            "--boot-code {}: {} bytes; MBR boot code is 440 (or a 512-byte sector holding it)",
            path.display(),
            bytes.len()
        )),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum EventFormat {
    Human,
    Json,
}

pub fn parse_target(s: &str) -> Result<TargetArg, String> {
    match s.split_once('=') {
        Some((disk, path)) if !disk.is_empty() && !path.is_empty() => Ok(TargetArg {
            disk: disk.to_string(),
            path: PathBuf::from(path),
        }),
        _ => Err(format!(
            "`{s}` is not DISK=PATH, e.g. disk0=/dev/sdb or disk0=disk0.img"
        )),
    }
}

/// A plan file or a compiled plan, compiled or checked for staleness, its
/// artifacts hashed against it unless `--no-artifacts`.
pub fn load_plan(path: &Path, flags: &CompileFlags) -> Result<CompiledPlan, u8> {
    let (plan, verifying) = load(path, flags, false)?;
    debug_assert!(verifying.is_none());
    Ok(plan)
}

/// [`load_plan`] for apply: the artifacts' hashing is started here and
/// goes on while the targets are inspected and the operator is asked; the
/// executor awaits it before the first write.
fn load_plan_verifying(
    path: &Path,
    flags: &CompileFlags,
) -> Result<(CompiledPlan, Option<Verifying>), u8> {
    load(path, flags, true)
}

fn load(
    path: &Path,
    flags: &CompileFlags,
    defer: bool,
) -> Result<(CompiledPlan, Option<Verifying>), u8> {
    let source = crate::read_source(path).map_err(|d| {
        print_diagnostics(&[d]);
        exit::USAGE
    })?;
    let looks_compiled = source.text.trim_start().starts_with('{');
    let hash = !flags.no_artifacts;
    if !looks_compiled {
        let plan = crate::compiled_for_apply(source, flags, defer && hash, REFUSED)?;
        // Without the hashing (skipped or deferred), the cheap checks: a
        // missing, truncated or special file is refused before any write.
        if flags.no_artifacts || defer {
            refuse_unless_empty(preflight::artifact_files(&plan))?;
        }
        let verifying = (defer && hash).then(|| preflight::verify_later(&plan, false));
        return Ok((plan, verifying));
    }
    let plan: CompiledPlan = serde_json::from_str(&source.text).map_err(|e| {
        eprintln!(
            "error[{}]: {} is not a compiled plan: {e}",
            codes::STALE_COMPILED,
            source.name
        );
        exit::ERRORS
    })?;
    let insane = plan.sanity();
    if !insane.is_empty() {
        for problem in insane {
            eprintln!(
                "error[{}]: {}: {problem}",
                codes::STALE_COMPILED,
                source.name
            );
        }
        eprintln!("  help: compile the plan again with `rplan compile`");
        return Err(REFUSED);
    }
    // --no-artifacts: no pre-read of the backup; restores still verify every
    // byte's sha256 as they stream, and a mismatch fails the step.
    if flags.no_artifacts || defer {
        refuse_unless_empty(preflight::artifact_files(&plan))?;
    }
    if !hash {
        return Ok((plan, None));
    }
    if defer {
        let verifying = preflight::verify_later(&plan, true);
        return Ok((plan, Some(verifying)));
    }
    refuse_unless_empty(executor::check_artifacts(&plan))?;
    Ok((plan, None))
}

fn refuse_unless_empty(problems: Vec<Diagnostic>) -> Result<(), u8> {
    if problems.is_empty() {
        return Ok(());
    }
    print_diagnostics(&problems);
    Err(REFUSED)
}

pub fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags.iter().filter(|d| !crate::ui::quiet() || d.is_error()) {
        let level = if d.is_error() { "error" } else { "warning" };
        // Messages carry plan text and command output: escaped.
        let _ = writeln!(err, "{level}[{}]: {}", d.code, printable_lines(&d.message));
        if let Some(h) = &d.help {
            let _ = writeln!(err, "  help: {}", printable_lines(h));
        }
    }
}

fn default_journal_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/rplan/journal");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("rplan/journal")
}

fn ask(question: &str) -> Option<String> {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question}");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}

pub fn run(args: ApplyArgs) -> u8 {
    let (plan, verifying) = match load_plan_verifying(&args.plan, &args.flags) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = check_report_path(args.report.as_deref(), &args.plan, &plan, &args.targets) {
        return code;
    }
    let terminal = std::io::stdin().is_terminal();
    let confirm: Option<executor::Ask> = if args.yes {
        None
    } else if terminal {
        Some(Box::new(|q: &str| {
            ask(&format!("{q}Type `yes` to go on: ")).as_deref() == Some("yes")
        }))
    } else {
        eprintln!(
            "error[{}]: no terminal to confirm on; nothing was written",
            codes::NOT_CONFIRMED
        );
        eprintln!("  help: pass --yes to apply without asking");
        return REFUSED;
    };
    if !terminal && !args.skip_manual {
        if let Some(d) = unanswerable_manual(&plan) {
            print_diagnostics(&[d]);
            return REFUSED;
        }
    }
    let unattended = args.flags.unattended || args.skip_manual || !terminal;
    let boot_code = match args.boot_code.as_deref().map(read_boot_code).transpose() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let options = ApplyOptions {
        boot_code,
        jobs: args.jobs.map(usize::from),
        verifying,
        force: args.force,
        resume: args.resume,
        unattended,
        journal_dir: args.journal.unwrap_or_else(default_journal_dir),
        temp_dir: args.temp_dir,
        confirm,
        dry_run: None,
        own_files: own_files(&args.plan),
        color: crate::ui::color_stderr(),
        manual: Box::new(|text: &str| {
            ask(&format!(
                "manual action: {}\nPress Enter when done, or type `fail`: ",
                printable(text)
            ))
            .is_some_and(|a| a != "fail")
        }),
    };
    let mut observer = observer(args.format);
    let (outcome, report) = executor::apply(&plan, &args.targets, options, observer.as_mut());
    let code = finish(&outcome, args.format, None, args.flags.strict);
    write_html(
        args.report.as_deref(),
        &plan,
        "apply",
        &report,
        &outcome,
        code,
    )
}

/// `--report FILE` must be a new or regular file that is none of the run's
/// targets or the plan's files: the page is written over it after the run.
fn check_report_path(
    path: Option<&Path>,
    plan_path: &Path,
    plan: &CompiledPlan,
    targets: &[TargetArg],
) -> Result<(), u8> {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = path else { return Ok(()) };
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let refuse = |why: String| {
        eprintln!(
            "error[{}]: --report {}: {why}; nothing was run",
            codes::REPORT_PATH,
            path.display()
        );
        Err(exit::USAGE)
    };
    if !meta.is_file() {
        return refuse("not a regular file".to_string());
    }
    let same = |other: &Path| {
        std::fs::metadata(other).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    };
    let own = std::iter::once(("the plan".to_string(), plan_path.to_path_buf()))
        .chain(
            targets
                .iter()
                .map(|t| (format!("the target of disk `{}`", t.disk), t.path.clone())),
        )
        .chain(plan.artifacts.iter().map(|a| {
            (
                format!("backup artifact `{}`", a.id),
                PathBuf::from(&a.path),
            )
        }));
    for (what, other) in own {
        if same(&other) {
            return refuse(format!("it is {}", printable(&what)));
        }
    }
    Ok(())
}

/// `--report FILE`: the HTML page of a run that got going (a refused run
/// has nothing to show). The run's exit code, unless the page cannot be
/// written (RP0830, exit 2).
fn write_html(
    path: Option<&Path>,
    plan: &CompiledPlan,
    command: &str,
    report: &DryRunReport,
    outcome: &Outcome,
    code: u8,
) -> u8 {
    let recovered = match outcome {
        Outcome::Recovered { stage, .. } => Some(stage.as_str()),
        Outcome::AllFailed { .. } => None,
        _ => return code,
    };
    let Some(path) = path else {
        return code;
    };
    let page = crate::report_html::Page {
        plan,
        command,
        report,
        recovered,
        exit: code,
    };
    match std::fs::write(path, crate::report_html::render(&page)) {
        Ok(()) => code,
        Err(e) => {
            eprintln!(
                "error[{}]: cannot write the report {}: {e}",
                codes::REPORT_WRITE,
                path.display()
            );
            exit::USAGE
        }
    }
}

/// A plan with manual actions and nobody to answer them: every one would
/// count as failed and the ladder climb, unasked, to ASR. Refused unless
/// the operator says so (`--skip-manual`).
fn unanswerable_manual(plan: &CompiledPlan) -> Option<Diagnostic> {
    use rplan_compiler::compiled::StepKind;
    let (stage, step) = plan.stages.iter().find_map(|stage| {
        stage
            .steps
            .iter()
            .find(|s| s.kind == StepKind::Manual)
            .map(|s| (stage, s))
    })?;
    Some(
        Diagnostic::error(
            codes::MANUAL_UNATTENDED,
            "",
            format!(
                "stage `{}` has a manual action (`{}`) and there is no terminal to answer it; nothing was written",
                stage.id,
                step.text.as_deref().unwrap_or_default()
            ),
        )
        .help("run rplan on a terminal, or pass --skip-manual to count manual actions as failed (the next stage, ASR included, then runs)"),
    )
}

/// The plan's own file, which no target may be; none when it came on stdin.
fn own_files(plan: &Path) -> Vec<(String, PathBuf)> {
    if plan == Path::new("-") {
        Vec::new()
    } else {
        vec![("the plan".to_string(), plan.to_path_buf())]
    }
}

fn observer(format: EventFormat) -> Box<dyn Observer> {
    match format {
        EventFormat::Json => Box::new(Json),
        EventFormat::Human if crate::ui::quiet() => Box::new(Quiet),
        EventFormat::Human => Box::new(Human::new(std::io::stderr().is_terminal())),
    }
}

/// Print the outcome (and a dry-run's report) and pick the exit code. A
/// refused or failed-to-start run has no report to print.
fn finish(outcome: &Outcome, format: EventFormat, report: Option<&Scenario>, strict: bool) -> u8 {
    let report = report.filter(|_| {
        matches!(
            outcome,
            Outcome::Recovered { .. } | Outcome::AllFailed { .. }
        )
    });
    let (code, word, diags) = match outcome {
        Outcome::Recovered {
            diagnostics,
            failed_steps,
            ..
        } if strict && !failed_steps.is_empty() => (PARTIAL, "recovered", diagnostics),
        Outcome::Recovered { diagnostics, .. } => (exit::OK, "recovered", diagnostics),
        Outcome::AllFailed { diagnostics } => (ALL_FAILED, "all-stages-failed", diagnostics),
        Outcome::Refused { diagnostics } => (REFUSED, "refused", diagnostics),
        Outcome::Usage { diagnostics } => (exit::USAGE, "error", diagnostics),
    };
    match format {
        EventFormat::Json => {
            let list: Vec<_> = diags
                .iter()
                .map(|d| serde_json::json!({"severity": d.severity, "code": d.code, "message": d.message, "help": d.help}))
                .collect();
            let mut result = serde_json::json!({"event": "result", "outcome": word, "exit": code, "diagnostics": list});
            if let Outcome::Recovered {
                stage,
                failed_steps,
                ..
            } = outcome
            {
                result["stage"] = serde_json::json!(stage);
                result["non_critical_failures"] = serde_json::json!(failed_steps);
            }
            if let Some(r) = report {
                result["dry_run"] = serde_json::to_value(&r.report).unwrap_or_default();
            }
            println!("{result}");
        }
        EventFormat::Human => {
            if let Some(r) = report {
                print!("{}", render_report(r, outcome));
            }
        }
    }
    print_diagnostics(diags);
    if let (
        EventFormat::Human,
        Outcome::Recovered {
            stage,
            failed_steps,
            ..
        },
    ) = (format, outcome)
    {
        if !failed_steps.is_empty() && report.is_none() {
            // The last word: this recovery is partial.
            eprintln!(
                "recovered by stage {} with {}: {}{}",
                printable(stage),
                rplan_runtime::events::non_critical_failures(failed_steps.len()),
                printable(&failed_steps.join(", ")),
                if strict { " (--strict: exit 5)" } else { "" }
            );
        }
    }
    code
}

/// A dry-run's report, and whether to colour it.
pub struct Scenario {
    report: DryRunReport,
    color: bool,
}

fn render_report(scenario: &Scenario, outcome: &Outcome) -> String {
    use rplan_compiler::size::human_bytes;
    use std::fmt::Write as _;
    let r = &scenario.report;
    let mut out = format!("dry-run ({}); nothing was written\n", r.scenario);
    for d in &r.disks {
        let _ = write!(
            out,
            "\n{}",
            rplan_runtime::preview::render(&d.preview, scenario.color)
        );
    }
    out.push_str("\ntimeline\n");
    let mut stage = "";
    let mut at = 0_u64;
    for s in &r.steps {
        if s.stage != stage {
            stage = &s.stage;
            let _ = writeln!(out, "  stage {}", printable(stage));
        }
        let _ = writeln!(
            out,
            "    +{:>6}  {:<9} {}  ({})",
            duration(at),
            s.outcome,
            printable(&s.step),
            printable(&s.description)
        );
        at = at.saturating_add(s.estimate_s);
    }
    let _ = writeln!(
        out,
        "\nescalation: {}",
        match outcome {
            Outcome::Recovered { stage, .. } => format!("recovered by stage {}", printable(stage)),
            Outcome::AllFailed { .. } => "every stage fails".to_string(),
            _ => "stopped".to_string(),
        }
    );
    let _ = writeln!(
        out,
        "estimated time to recover: {}",
        duration(r.rto_estimate_s)
    );
    for d in &r.disks {
        let _ = writeln!(
            out,
            "\n{}: {}",
            printable(&d.preview.disk),
            if d.changes.is_empty() {
                "no change".to_string()
            } else if d.table_unchanged {
                "table already in place; bytes that would change:".to_string()
            } else {
                "table would be written; bytes that would change:".to_string()
            }
        );
        // One line per table area or partition: how much would change.
        let mut groups: Vec<(&str, u64, u64, u64)> = Vec::new();
        for c in &d.changes {
            match groups.iter_mut().find(|g| g.0 == c.within) {
                Some(g) => {
                    g.2 = g.2.max(c.start + c.len);
                    g.3 += c.len;
                }
                None => groups.push((&c.within, c.start, c.start + c.len, c.len)),
            }
        }
        for (what, lo, hi, bytes) in groups {
            let _ = writeln!(
                out,
                "  {}: {} would change, between byte {lo} and {hi}",
                printable(what),
                human_bytes(bytes)
            );
        }
    }
    out
}

pub(crate) fn duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[derive(clap::Args)]
pub struct DryRunArgs {
    /// A plan (YAML) or a compiled plan (JSON from `rplan compile`); `-`
    /// reads it from standard input (artifact paths then relative to the
    /// current directory).
    #[arg(value_name = "PLAN")]
    plan: PathBuf,
    /// DISK=PATH: the device or image file the plan would be applied to
    /// (read, never written).
    #[arg(long = "target", value_name = "DISK=PATH", value_parser = parse_target)]
    targets: Vec<TargetArg>,
    /// Simulate this stage failing (repeatable). Without --succeed, every
    /// stage before ASR fails (the worst case: the restore runs).
    #[arg(long = "fail", value_name = "STAGE")]
    fail: Vec<String>,
    /// Simulate this stage succeeding (and the ones before it failing): a
    /// gentler outcome than the default worst case.
    #[arg(long = "succeed", value_name = "STAGE")]
    succeed: Option<String>,
    /// Simulate even if a target is not blank and not the plan's own disk.
    #[arg(long)]
    force: bool,
    /// MBR boot code (440–512 bytes) for the system disk, as `apply
    /// --boot-code` would write it.
    #[arg(long, value_name = "FILE")]
    boot_code: Option<PathBuf>,
    /// Where the simulation's scratch files go (default: $TMPDIR).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// How many steps may run at the same time: steps on different disks
    /// (restores, formats, verifies) overlap; steps on the same disk always
    /// run one after another, in the plan's order. Default: one per target.
    /// `--jobs 1` runs every step in turn.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// `json`: events as JSON lines, then the report in the result line.
    #[arg(long, value_enum, default_value = "human")]
    format: EventFormat,
    /// Also write a self-contained HTML page to FILE: the step graph, each
    /// disk's before → after, the timeline, each stage's result and the
    /// estimated time to recover.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    #[command(flatten)]
    flags: CompileFlags,
}

pub fn dry_run(args: DryRunArgs) -> u8 {
    let plan = match load_plan(&args.plan, &args.flags) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(code) = check_report_path(args.report.as_deref(), &args.plan, &plan, &args.targets) {
        return code;
    }
    let ids: Vec<&str> = plan.stages.iter().map(|s| s.id.as_str()).collect();
    for (flag, f) in args
        .fail
        .iter()
        .map(|f| ("--fail", f))
        .chain(args.succeed.iter().map(|f| ("--succeed", f)))
    {
        if !ids.contains(&f.as_str()) {
            eprintln!(
                "error: {flag} {f}: the plan has no stage `{}` (stages: {})",
                printable(f),
                ids.join(", ")
            );
            return exit::USAGE;
        }
        if flag == "--succeed" && args.fail.contains(f) {
            eprintln!("error: stage `{f}` cannot both --fail and --succeed");
            return exit::USAGE;
        }
    }
    let (failing, headline) = scenario(&plan, &args.fail, args.succeed.as_deref());
    let boot_code = match args.boot_code.as_deref().map(read_boot_code).transpose() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let options = ApplyOptions {
        force: args.force,
        resume: false,
        unattended: true,
        journal_dir: PathBuf::new(),
        temp_dir: args.temp_dir,
        confirm: None,
        manual: Box::new(|_| false),
        dry_run: Some(failing),
        own_files: own_files(&args.plan),
        color: false,
        boot_code,
        jobs: args.jobs.map(usize::from),
        verifying: None,
    };
    let mut observer: Box<dyn Observer> = match args.format {
        EventFormat::Json => Box::new(Json),
        EventFormat::Human => Box::new(Quiet),
    };
    let (outcome, mut report) = executor::dry_run(&plan, &args.targets, options, observer.as_mut());
    report.scenario = headline;
    let scenario = Scenario {
        report,
        color: crate::ui::color_stdout(),
    };
    let code = finish(&outcome, args.format, Some(&scenario), args.flags.strict);
    write_html(
        args.report.as_deref(),
        &plan,
        "dry-run",
        &scenario.report,
        &outcome,
        code,
    )
}

/// Which stages fail in the simulation, and the sentence that says so.
/// Default: the worst case, every stage before the ASR stage fails, so the
/// restore runs. `--succeed S`: the stages before S fail, S succeeds.
/// `--fail` adds stages that fail in any case.
fn scenario(plan: &CompiledPlan, fail: &[String], succeed: Option<&str>) -> (Vec<String>, String) {
    use rplan_compiler::model::StageKind;
    let asr = plan
        .stages
        .iter()
        .find(|s| s.kind == StageKind::Asr)
        .map(|s| s.id.as_str());
    // Without an ASR stage nothing is destructive: the first stage works.
    let until = succeed
        .or(asr)
        .or_else(|| plan.stages.first().map(|s| s.id.as_str()));
    let mut failing: Vec<String> = plan
        .stages
        .iter()
        .map(|s| s.id.clone())
        .take_while(|id| Some(id.as_str()) != until)
        .collect();
    for f in fail {
        if !failing.contains(f) {
            failing.push(f.clone());
        }
    }
    let before = |stage: &str| {
        plan.stages
            .iter()
            .take_while(|s| s.id != stage)
            .map(|s| format!("`{}`", s.id))
            .collect::<Vec<_>>()
    };
    let headline = match (succeed, asr, until) {
        (Some(s), ..) => format!("modelled: `{s}` succeeds"),
        (None, Some(asr), _) if before(asr).is_empty() => {
            format!("worst case: the ladder starts with `{asr}`")
        }
        (None, Some(asr), _) => format!(
            "worst case: {} fail{}, so `{asr}` runs; --succeed STAGE models a gentler outcome",
            before(asr).join(", "),
            if before(asr).len() == 1 { "s" } else { "" }
        ),
        (None, None, Some(first)) => {
            format!("no ASR stage, nothing destructive: modelled: `{first}` succeeds")
        }
        (None, None, None) => "no stages".to_string(),
    };
    let headline = if fail.is_empty() {
        headline
    } else {
        format!("{headline}; --fail {}", fail.join(", "))
    };
    (failing, headline)
}

/// A dry-run's human output is its report; the step-by-step events would
/// only repeat it.
struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: &rplan_runtime::events::Event) {}
}
