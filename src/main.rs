//! `rplan`: the command line. Parses arguments, runs the compiler or the
//! runtime, renders what they report, and picks the exit code of DESIGN.md.
//! No plan logic lives here.

mod apply;
mod capture;
mod graph;
mod init;
mod inspect;
mod manual;
mod report;
mod report_html;
mod ui;
mod verify;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use report::Format;
use rplan_compiler::{codes, Compilation, Diagnostic, Options, RuleSet, Severity, Source};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Declarative system recovery: compile, check, simulate and apply
/// Windows XP recovery plans (Safe Mode → Last Known Good → ASR).
#[derive(Parser)]
#[command(name = "rplan", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: ui::GlobalFlags,
}

#[derive(clap::Args, Clone)]
pub(crate) struct CompileFlags {
    /// Extra compatibility ruleset (YAML); later files override earlier rules.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Treat warnings as errors; with apply, a recovery in which
    /// non-critical steps failed exits 5 instead of 0.
    #[arg(long)]
    strict: bool,
    /// Refuse manual actions: the plan must run without a person.
    #[arg(long)]
    unattended: bool,
    /// Do not read backup artifacts up front: check a plan away from the
    /// backup store; with apply, skip the pre-read (restores still verify
    /// every byte's sha256 while streaming).
    #[arg(long)]
    no_artifacts: bool,
    /// Disk throughput assumed by estimates, per second (e.g. 50MiB).
    #[arg(long, value_name = "SIZE", default_value = "50MiB", value_parser = parse_throughput)]
    throughput: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Load, validate and analyze plans; print diagnostics, then (human
    /// format) one summary line: how many plans were clean.
    Check {
        /// Plan files (YAML) to check; `-` reads one from standard input
        /// (its artifact paths are then relative to the current directory).
        #[arg(required = true, value_name = "PLAN")]
        plans: Vec<PathBuf>,
        /// `human`: miette reports and a summary on stderr; `json`: one
        /// object on stdout (DESIGN.md); `sarif`: SARIF 2.1.0 on stdout,
        /// for code-scanning services.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        #[command(flatten)]
        flags: CompileFlags,
    },
    /// Compile a plan into the step DAG (JSON), on stdout unless `-o`.
    Compile {
        /// The plan (YAML); `-` reads it from standard input (artifact
        /// paths then relative to the current directory).
        #[arg(value_name = "PLAN")]
        plan: PathBuf,
        /// Write the compiled plan to this file instead of stdout (`-`:
        /// stdout).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        #[command(flatten)]
        flags: CompileFlags,
    },
    /// Draw a plan's step DAG (never reads the backup's artifacts).
    Graph(graph::GraphArgs),
    /// Print the compatibility matrix (backup build × restore media).
    Rules {
        /// Extra ruleset (YAML) layered over the built-in one; repeatable.
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// `table` for people, `json` for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: RulesFormat,
    },
    /// Simulate applying a plan: what is on each disk and what it would
    /// destroy, change or create, in what order, how long (the worst case,
    /// ASR, unless --succeed); writes nothing.
    DryRun(apply::DryRunArgs),
    /// Carry out a plan on targets: stages in order until one succeeds.
    Apply(apply::ApplyArgs),
    /// Show what is on disks or images now: tables, filesystems, signatures.
    Inspect(inspect::InspectArgs),
    /// Describe disks (or an `sfdisk -d` dump) as a plan; with --backup,
    /// image their partitions into artifacts. Reads only.
    Capture(capture::CaptureArgs),
    /// Compare targets with a plan (drift): exit 0 same, 1 drift.
    Verify(verify::VerifyArgs),
    /// Print a JSON Schema.
    Schema {
        /// Which schema (the files under schemas/ are these).
        #[arg(value_enum)]
        which: SchemaKind,
    },
    /// Write a commented starter plan (asks on a terminal; flags otherwise).
    Init(init::InitArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(manual::CompletionsArgs),
    /// Print the manual page (roff), or write one per subcommand with --dir.
    Man(manual::ManArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum RulesFormat {
    /// A matrix for people.
    Table,
    /// Every rule with its source, for tools.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaKind {
    /// A recovery plan (YAML).
    Plan,
    /// A compatibility or platform ruleset (`--rules FILE`).
    Rules,
    /// A compiled plan (`rplan compile`).
    Compiled,
    /// The report in `rplan dry-run --format json`'s result line.
    DryRun,
}

fn parse_throughput(s: &str) -> Result<u64, String> {
    let s = s.trim_end_matches("/s");
    match rplan_compiler::size::Size::parse(s) {
        Ok(size) => match size.bytes(512) {
            Some(0) | None => Err("throughput must be above zero".into()),
            Some(b) => Ok(b),
        },
        Err(e) => Err(e
            .help
            .map_or(e.message.clone(), |h| format!("{}: {h}", e.message))),
    }
}

/// Exit codes of DESIGN.md.
pub(crate) mod exit {
    pub const OK: u8 = 0;
    pub const ERRORS: u8 = 1;
    pub const USAGE: u8 = 2;
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::command()
        .color(ui::clap_color(&args))
        .try_get_matches_from(&args)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m))
        .unwrap_or_else(|e| e.exit());
    ui::init(cli.global);
    let code = match cli.command {
        Command::Check {
            plans,
            format,
            flags,
        } => check(&plans, format, &flags),
        Command::Compile {
            plan,
            output,
            flags,
        } => compile_to(&plan, output.as_deref(), &flags),
        Command::Graph(args) => graph::run(args),
        Command::Rules { rules, format } => print_rules(&rules, format),
        Command::Apply(args) => apply::run(args),
        Command::DryRun(args) => apply::dry_run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Init(args) => init::run(args),
        Command::Completions(args) => manual::completions(args, Cli::command()),
        Command::Man(args) => manual::man(args, Cli::command()),
        Command::Capture(args) => capture::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Schema { which } => {
            let schema = match which {
                SchemaKind::Plan => rplan_compiler::schema::plan_schema(),
                SchemaKind::Rules => rplan_compiler::rules::rules_schema(),
                SchemaKind::Compiled => rplan_compiler::compiled::compiled_schema(),
                SchemaKind::DryRun => rplan_runtime::executor::dry_run_schema(),
            };
            print!("{}", rplan_compiler::schema::to_text(&schema));
            exit::OK
        }
    };
    ExitCode::from(code)
}

impl CompileFlags {
    fn options(&self) -> Options {
        Options {
            unattended: self.unattended,
            no_artifacts: self.no_artifacts,
            defer_hashing: false,
            throughput: self.throughput,
        }
    }
}

/// Diagnostics gathered over several sources, rendered once at the end.
struct Reporter {
    format: Format,
    entries: Vec<(Diagnostic, Option<usize>)>,
    sources: Vec<Source>,
    strict: bool,
    io_error: bool,
}

impl Reporter {
    fn new(format: Format, strict: bool) -> Reporter {
        Reporter {
            format,
            entries: Vec::new(),
            sources: Vec::new(),
            strict,
            io_error: false,
        }
    }

    fn add_source(&mut self, source: Source) -> usize {
        self.sources.push(source);
        self.sources.len() - 1
    }

    fn add(&mut self, mut d: Diagnostic, source: Option<usize>) {
        if self.strict && d.severity == Severity::Warning {
            d.severity = Severity::Error;
        }
        self.entries.push((d, source));
    }

    fn errors(&self) -> usize {
        self.entries.iter().filter(|(d, _)| d.is_error()).count()
    }

    fn exit_code(&self) -> u8 {
        if self.io_error {
            exit::USAGE
        } else if self.errors() > 0 {
            exit::ERRORS
        } else {
            exit::OK
        }
    }

    /// Print everything; machine formats go to stdout, human to stderr.
    /// `plans`: each checked plan's tally, for check's summary (empty for
    /// the other commands).
    fn finish(&self, plans: &[PlanTally]) {
        let located: Vec<report::Located> = self
            .entries
            .iter()
            .map(|(d, s)| report::locate(d, s.map(|i| &self.sources[i]), &self.sources))
            .collect();
        match self.format {
            Format::Json => {
                let mut object = report::json_object(&located);
                if !plans.is_empty() {
                    object["plans"] = serde_json::json!(plans);
                }
                println!("{object}")
            }
            Format::Sarif => println!(
                "{}",
                serde_json::to_string_pretty(&report::sarif(&located)).unwrap_or_default()
            ),
            Format::Human => {
                // -q: errors only.
                let shown: Vec<report::Located> = located
                    .into_iter()
                    .filter(|l| !ui::quiet() || l.diag.is_error())
                    .collect();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{}", report::human(&shown, ui::color_stderr()));
                if ui::quiet() {
                    return;
                }
                let warnings = shown.len() - self.errors();
                if !shown.is_empty() {
                    let _ = writeln!(
                        err,
                        "{} error{}, {} warning{}",
                        self.errors(),
                        plural(self.errors()),
                        warnings,
                        plural(warnings)
                    );
                }
                if !plans.is_empty() {
                    let _ = writeln!(err, "{}", summary(plans));
                }
            }
        }
    }
}

/// One checked plan's result, for check's summary (and its JSON `plans`).
#[derive(serde::Serialize)]
struct PlanTally {
    file: String,
    errors: usize,
    warnings: usize,
}

/// "3 plans checked: 2 clean, 1 with errors" (parts that are zero left out).
fn summary(plans: &[PlanTally]) -> String {
    let errors = plans.iter().filter(|p| p.errors > 0).count();
    let warnings = plans
        .iter()
        .filter(|p| p.errors == 0 && p.warnings > 0)
        .count();
    let clean = plans.len() - errors - warnings;
    let parts: Vec<String> = [
        (clean, "clean"),
        (warnings, "with warnings"),
        (errors, "with errors"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    format!(
        "{} plan{} checked: {}",
        plans.len(),
        plural(plans.len()),
        parts.join(", ")
    )
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The effective ruleset, or its problems recorded in `reporter`.
fn load_rules(files: &[PathBuf], reporter: &mut Reporter) -> Option<RuleSet> {
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    match RuleSet::load(&paths) {
        Ok(set) => Some(set),
        Err((diags, sources)) => {
            let ids: Vec<usize> = sources
                .into_iter()
                .map(|s| reporter.add_source(s))
                .collect();
            for d in diags {
                if d.code == codes::CANNOT_READ {
                    reporter.io_error = true;
                }
                let idx = ids
                    .iter()
                    .copied()
                    .find(|&i| Some(&reporter.sources[i].name) == d.file.as_ref());
                reporter.add(d, idx);
            }
            None
        }
    }
}

/// The name a plan read from standard input goes by in diagnostics.
pub(crate) const STDIN_NAME: &str = "<stdin>";

/// Read a plan: a file, or standard input for `-` (whose relative paths
/// then resolve against the current directory).
// A diagnostic is the error value everywhere in rplan (compiler/src/lib.rs).
#[allow(clippy::result_large_err)]
pub(crate) fn read_source(path: &Path) -> Result<Source, Diagnostic> {
    if path == Path::new("-") {
        Source::from_reader(STDIN_NAME, std::io::stdin().lock())
    } else {
        Source::read(path)
    }
}

/// Compile one plan that was read (or could not be), recording
/// diagnostics; the compilation if there was a source.
fn compile_one(
    read: Result<Source, Diagnostic>,
    rules: &RuleSet,
    options: &Options,
    reporter: &mut Reporter,
) -> Option<Compilation> {
    let source = match read {
        Ok(s) => s,
        Err(d) => {
            reporter.io_error = true;
            reporter.add(d, None);
            return None;
        }
    };
    let compilation = rplan_compiler::compile(&source, rules, options);
    let idx = reporter.add_source(source);
    for d in &compilation.diagnostics {
        reporter.add(d.clone(), Some(idx));
    }
    Some(compilation)
}

fn check(plans: &[PathBuf], format: Format, flags: &CompileFlags) -> u8 {
    let mut reporter = Reporter::new(format, flags.strict);
    let mut tallies = Vec::new();
    if let Some(rules) = load_rules(&flags.rules, &mut reporter) {
        for path in plans {
            let first = reporter.entries.len();
            let read = read_source(path).map_err(|d| d.in_file(display_name(path)));
            compile_one(read, &rules, &flags.options(), &mut reporter);
            let new = reporter.entries.get(first..).unwrap_or_default();
            let errors = new.iter().filter(|(d, _)| d.is_error()).count();
            tallies.push(PlanTally {
                file: display_name(path),
                errors,
                warnings: new.len() - errors,
            });
        }
    }
    reporter.finish(&tallies);
    reporter.exit_code()
}

/// How a plan argument is named in messages.
pub(crate) fn display_name(path: &Path) -> String {
    if path == Path::new("-") {
        STDIN_NAME.to_string()
    } else {
        path.display().to_string()
    }
}

/// Compile one plan for commands that need the result; diagnostics are
/// printed (human) either way.
pub(crate) fn compiled(
    path: &Path,
    flags: &CompileFlags,
) -> Result<rplan_compiler::CompiledPlan, u8> {
    let read = read_source(path).map_err(|d| d.in_file(display_name(path)));
    let mut reporter = Reporter::new(Format::Human, flags.strict);
    let result = load_rules(&flags.rules, &mut reporter)
        .and_then(|rules| compile_one(read, &rules, &flags.options(), &mut reporter));
    reporter.finish(&[]);
    match (reporter.exit_code(), result.and_then(|c| c.compiled)) {
        (exit::OK, Some(c)) => Ok(c),
        (exit::OK, None) => Err(exit::ERRORS),
        (code, _) => Err(code),
    }
}

/// [`compiled`] for apply and dry-run: a plan whose only errors are about
/// the backup's files (missing, of another size or sha256: a damaged
/// backup) exits `refused` (4, nothing was written), not 1 (a bad plan).
pub(crate) fn compiled_for_apply(
    source: Source,
    flags: &CompileFlags,
    defer_hashing: bool,
    refused: u8,
) -> Result<rplan_compiler::CompiledPlan, u8> {
    const BACKUP_FILES: [&str; 3] = [
        codes::ARTIFACT_MISSING,
        codes::ARTIFACT_SIZE,
        codes::ARTIFACT_SHA256,
    ];
    let mut reporter = Reporter::new(Format::Human, flags.strict);
    let result = load_rules(&flags.rules, &mut reporter).and_then(|rules| {
        let options = Options {
            defer_hashing,
            ..flags.options()
        };
        compile_one(Ok(source), &rules, &options, &mut reporter)
    });
    reporter.finish(&[]);
    let backup_only = reporter
        .entries
        .iter()
        .filter(|(d, _)| d.is_error())
        .all(|(d, _)| BACKUP_FILES.contains(&d.code));
    match (reporter.exit_code(), result.and_then(|c| c.compiled)) {
        (exit::OK, Some(c)) => Ok(c),
        (exit::OK, None) => Err(exit::ERRORS),
        (exit::ERRORS, _) if backup_only => Err(refused),
        (code, _) => Err(code),
    }
}

fn compile_to(plan: &Path, output: Option<&Path>, flags: &CompileFlags) -> u8 {
    let c = match compiled(plan, flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut text = serde_json::to_string_pretty(&c).unwrap_or_default();
    text.push('\n');
    write_output(output, text.as_bytes())
}

/// Write a command's result to a file, or to stdout for none or `-`.
pub(crate) fn write_output(output: Option<&Path>, bytes: &[u8]) -> u8 {
    let Some(output) = output.filter(|o| *o != Path::new("-")) else {
        let mut out = std::io::stdout().lock();
        return match out.write_all(bytes).and_then(|()| out.flush()) {
            Ok(()) => exit::OK,
            // A closed pipe (`| head`) is the reader's choice, not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
            Err(e) => {
                eprintln!("error: cannot write to stdout: {e}");
                exit::USAGE
            }
        };
    };
    match std::fs::write(output, bytes) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", output.display());
            exit::USAGE
        }
    }
}

fn print_rules(files: &[PathBuf], format: RulesFormat) -> u8 {
    let mut reporter = Reporter::new(Format::Human, false);
    let Some(set) = load_rules(files, &mut reporter) else {
        reporter.finish(&[]);
        return reporter.exit_code();
    };
    match format {
        RulesFormat::Table => print!("{}", set.render_table()),
        RulesFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&set.to_json()).unwrap_or_default()
        ),
    }
    exit::OK
}
