//! `rplan apply`: load a plan (YAML, compiled here) or a compiled plan
//! (JSON, checked for staleness), then hand it to the runtime executor with
//! the operator's answers wired to the terminal.

use crate::{compiled, exit, CompileFlags};
use rplan_compiler::{codes, CompiledPlan, Diagnostic};
use rplan_runtime::events::{Human, Json, Observer};
use rplan_runtime::executor::{self, ApplyOptions, DryRunReport, Outcome, TargetArg};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub const REFUSED: u8 = 4;
pub const ALL_FAILED: u8 = 3;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A plan (YAML) or a compiled plan (JSON from `rplan compile`).
    plan: PathBuf,
    /// DISK=PATH: the device or image file to restore disk DISK onto.
    #[arg(long = "target", value_name = "DISK=PATH", value_parser = parse_target)]
    targets: Vec<TargetArg>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Continue an interrupted apply from its journal.
    #[arg(long)]
    resume: bool,
    /// Overwrite a target that carries another disk's partition table.
    #[arg(long)]
    force: bool,
    /// Where the journal lives (default: /var/lib/rplan/journal as root,
    /// else $XDG_STATE_HOME/rplan/journal).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Where temporary filesystem images are made (default: $TMPDIR).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// `json` streams one event per line on stdout.
    #[arg(long, value_enum, default_value = "human")]
    format: EventFormat,
    /// MBR boot code (440 bytes, or a 512-byte sector holding it, e.g.
    /// syslinux's mbr.bin) for the system disk when the plan has no
    /// `boot_code`.
    #[arg(long, value_name = "FILE")]
    boot_code: Option<PathBuf>,
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

/// A plan file or a compiled plan, compiled or checked for staleness.
pub fn load_plan(path: &Path, flags: &CompileFlags) -> Result<CompiledPlan, u8> {
    let text = std::fs::read(path).map_err(|e| {
        eprintln!(
            "error[{}]: cannot read {}: {e}",
            codes::CANNOT_READ,
            path.display()
        );
        exit::USAGE
    })?;
    let looks_compiled = text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !looks_compiled {
        return compiled(path, flags);
    }
    let plan: CompiledPlan = serde_json::from_slice(&text).map_err(|e| {
        eprintln!(
            "error[{}]: {} is not a compiled plan: {e}",
            codes::STALE_COMPILED,
            path.display()
        );
        exit::ERRORS
    })?;
    let insane = plan.sanity();
    if !insane.is_empty() {
        for problem in insane {
            eprintln!(
                "error[{}]: {}: {problem}",
                codes::STALE_COMPILED,
                path.display()
            );
        }
        eprintln!("  help: compile the plan again with `rplan compile`");
        return Err(REFUSED);
    }
    // --no-artifacts: no pre-read of the backup; restores still verify every
    // byte's sha256 as they stream, and a mismatch fails the step.
    let stale = executor::check_artifacts(&plan, !flags.no_artifacts);
    if !stale.is_empty() {
        print_diagnostics(&stale);
        return Err(REFUSED);
    }
    Ok(plan)
}

pub fn print_diagnostics(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let level = if d.is_error() { "error" } else { "warning" };
        let _ = writeln!(err, "{level}[{}]: {}", d.code, d.message);
        if let Some(h) = &d.help {
            let _ = writeln!(err, "  help: {h}");
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
    let plan = match load_plan(&args.plan, &args.flags) {
        Ok(p) => p,
        Err(code) => return code,
    };
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
    let unattended = args.flags.unattended || !terminal;
    let boot_code = match args.boot_code.as_deref().map(read_boot_code).transpose() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let options = ApplyOptions {
        boot_code,
        force: args.force,
        resume: args.resume,
        unattended,
        journal_dir: args.journal.unwrap_or_else(default_journal_dir),
        temp_dir: args.temp_dir,
        confirm,
        dry_run: None,
        manual: Box::new(|text: &str| {
            ask(&format!(
                "manual action: {text}\nPress Enter when done, or type `fail`: "
            ))
            .is_some_and(|a| a != "fail")
        }),
    };
    let mut observer = observer(args.format);
    let outcome = executor::apply(&plan, &args.targets, options, observer.as_mut());
    finish(&outcome, args.format, None)
}

fn observer(format: EventFormat) -> Box<dyn Observer> {
    match format {
        EventFormat::Json => Box::new(Json),
        EventFormat::Human => Box::new(Human::new(std::io::stderr().is_terminal())),
    }
}

/// Print the outcome (and a dry-run's report) and pick the exit code.
fn finish(outcome: &Outcome, format: EventFormat, report: Option<&DryRunReport>) -> u8 {
    let (code, word, diags) = match outcome {
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
            if let Outcome::Recovered { stage, .. } = outcome {
                result["stage"] = serde_json::json!(stage);
            }
            if let Some(r) = report {
                result["dry_run"] = serde_json::to_value(r).unwrap_or_default();
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
    code
}

fn render_report(r: &DryRunReport, outcome: &Outcome) -> String {
    use rplan_compiler::size::human_bytes;
    use std::fmt::Write as _;
    let mut out = String::from("dry-run: nothing was written\n\ntimeline\n");
    let mut stage = "";
    let mut at = 0_u64;
    for s in &r.steps {
        if s.stage != stage {
            stage = &s.stage;
            let _ = writeln!(out, "  stage {stage}");
        }
        let _ = writeln!(
            out,
            "    +{:>6}  {:<9} {}  ({})",
            duration(at),
            s.outcome,
            s.step,
            s.description
        );
        at += s.estimate_s;
    }
    let _ = writeln!(
        out,
        "\nescalation: {}",
        match outcome {
            Outcome::Recovered { stage, .. } => format!("recovered by stage {stage}"),
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
            "\n{} = {}: {}",
            d.disk,
            d.target,
            if d.changes.is_empty() {
                "no change".to_string()
            } else if d.table_unchanged {
                "table already in place".to_string()
            } else {
                "table would be written".to_string()
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
                "  {what}: {} would change, between byte {lo} and {hi}",
                human_bytes(bytes)
            );
        }
    }
    out
}

fn duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[derive(clap::Args)]
pub struct DryRunArgs {
    /// A plan (YAML) or a compiled plan (JSON from `rplan compile`).
    plan: PathBuf,
    /// DISK=PATH: the device or image file the plan would be applied to
    /// (read, never written).
    #[arg(long = "target", value_name = "DISK=PATH", value_parser = parse_target)]
    targets: Vec<TargetArg>,
    /// Simulate this stage failing (repeatable), to see the escalation path.
    #[arg(long = "fail", value_name = "STAGE")]
    fail: Vec<String>,
    /// Simulate even if a target carries another disk's partition table.
    #[arg(long)]
    force: bool,
    /// Where the simulation's scratch files go (default: $TMPDIR).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// `json`: events as JSON lines, then the report in the result line.
    #[arg(long, value_enum, default_value = "human")]
    format: EventFormat,
    #[command(flatten)]
    flags: CompileFlags,
}

pub fn dry_run(args: DryRunArgs) -> u8 {
    let plan = match load_plan(&args.plan, &args.flags) {
        Ok(p) => p,
        Err(code) => return code,
    };
    for f in &args.fail {
        if !plan.stages.iter().any(|s| &s.id == f) {
            let ids: Vec<&str> = plan.stages.iter().map(|s| s.id.as_str()).collect();
            eprintln!(
                "error: --fail {f}: the plan has no stage `{f}` (stages: {})",
                ids.join(", ")
            );
            return exit::USAGE;
        }
    }
    let options = ApplyOptions {
        force: args.force,
        resume: false,
        unattended: true,
        journal_dir: PathBuf::new(),
        temp_dir: args.temp_dir,
        confirm: None,
        manual: Box::new(|_| false),
        dry_run: Some(args.fail),
        boot_code: None,
    };
    let mut observer: Box<dyn Observer> = match args.format {
        EventFormat::Json => Box::new(Json),
        EventFormat::Human => Box::new(Quiet),
    };
    let (outcome, report) = executor::dry_run(&plan, &args.targets, options, observer.as_mut());
    finish(&outcome, args.format, Some(&report))
}

/// A dry-run's human output is its report; the step-by-step events would
/// only repeat it.
struct Quiet;

impl Observer for Quiet {
    fn event(&mut self, _: &rplan_runtime::events::Event) {}
}
