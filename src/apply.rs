//! `rplan apply`: load a plan (YAML, compiled here) or a compiled plan
//! (JSON, checked for staleness), then hand it to the runtime executor with
//! the operator's answers wired to the terminal.

use crate::{compiled, exit, CompileFlags};
use rplan_compiler::{codes, CompiledPlan, Diagnostic};
use rplan_runtime::events::{Human, Json, Observer};
use rplan_runtime::executor::{self, ApplyOptions, Outcome, TargetArg};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub const REFUSED: u8 = 4;
pub const ALL_FAILED: u8 = 3;

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A plan (YAML) or a compiled plan (JSON from `rplan compile`).
    plan: PathBuf,
    /// DISK=PATH: the device or image file to restore disk DISK onto.
    #[arg(long = "target", value_name = "DISK=PATH", value_parser = parse_target, required = true)]
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
    #[command(flatten)]
    flags: CompileFlags,
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
    let stale = executor::check_artifacts(&plan);
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
    let options = ApplyOptions {
        force: args.force,
        resume: args.resume,
        unattended,
        journal_dir: args.journal.unwrap_or_else(default_journal_dir),
        temp_dir: args.temp_dir,
        confirm,
        manual: Box::new(|text: &str| {
            ask(&format!(
                "manual action: {text}\nPress Enter when done, or type `fail`: "
            ))
            .is_some_and(|a| a != "fail")
        }),
    };
    let mut observer: Box<dyn Observer> = match args.format {
        EventFormat::Json => Box::new(Json),
        EventFormat::Human => Box::new(Human::new(std::io::stderr().is_terminal())),
    };
    let outcome = executor::apply(&plan, &args.targets, options, observer.as_mut());
    let (code, diags) = match &outcome {
        Outcome::Recovered { diagnostics, .. } => (exit::OK, diagnostics),
        Outcome::AllFailed { diagnostics } => (ALL_FAILED, diagnostics),
        Outcome::Refused { diagnostics } => (REFUSED, diagnostics),
        Outcome::Usage { diagnostics } => (exit::USAGE, diagnostics),
    };
    if matches!(args.format, EventFormat::Json) {
        let list: Vec<_> = diags.iter().map(|d| serde_json::json!({"severity": d.severity, "code": d.code, "message": d.message, "help": d.help})).collect();
        let what = match &outcome {
            Outcome::Recovered { stage, .. } => {
                serde_json::json!({"event": "result", "outcome": "recovered", "stage": stage, "exit": code, "diagnostics": list})
            }
            Outcome::AllFailed { .. } => {
                serde_json::json!({"event": "result", "outcome": "all-stages-failed", "exit": code, "diagnostics": list})
            }
            Outcome::Refused { .. } => {
                serde_json::json!({"event": "result", "outcome": "refused", "exit": code, "diagnostics": list})
            }
            Outcome::Usage { .. } => {
                serde_json::json!({"event": "result", "outcome": "error", "exit": code, "diagnostics": list})
            }
        };
        println!("{what}");
    }
    print_diagnostics(diags);
    code
}
