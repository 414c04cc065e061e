//! `rplan`: the command line. Parses arguments, runs the compiler or the
//! runtime, renders what they report, and picks the exit code of DESIGN.md.
//! No plan logic lives here.

mod apply;
mod capture;
mod inspect;
mod report;
mod verify;

use clap::{Parser, Subcommand, ValueEnum};
use report::Format;
use rplan_compiler::{codes, Compilation, Diagnostic, Options, RuleSet, Severity, Source};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Declarative system recovery: compile, check, simulate and apply
/// Windows XP recovery plans (Safe Mode → Last Known Good → ASR).
#[derive(Parser)]
#[command(name = "rplan", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Load, validate and analyze plans; print diagnostics.
    Check {
        #[arg(required = true, value_name = "PLAN")]
        plans: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        #[command(flatten)]
        flags: CompileFlags,
    },
    /// Compile a plan into the step DAG (JSON).
    Compile {
        plan: PathBuf,
        /// Where to write the compiled plan; `-` for stdout.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        #[command(flatten)]
        flags: CompileFlags,
    },
    /// Draw a plan's step DAG.
    Graph {
        plan: PathBuf,
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
        #[command(flatten)]
        flags: CompileFlags,
    },
    /// Print the compatibility matrix (backup build × restore media).
    Rules {
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
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
        #[arg(value_enum)]
        which: SchemaKind,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, ValueEnum)]
enum RulesFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaKind {
    Plan,
    Rules,
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
    let cli = Cli::parse();
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
        } => compile_to(&plan, &output, &flags),
        Command::Graph {
            plan,
            format,
            flags,
        } => graph(&plan, format, &flags),
        Command::Rules { rules, format } => print_rules(&rules, format),
        Command::Apply(args) => apply::run(args),
        Command::DryRun(args) => apply::dry_run(args),
        Command::Inspect(args) => inspect::run(args),
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
    fn finish(&self) {
        let located: Vec<report::Located> = self
            .entries
            .iter()
            .map(|(d, s)| report::locate(d, s.map(|i| &self.sources[i]), &self.sources))
            .collect();
        match self.format {
            Format::Json => println!("{}", report::json_object(&located)),
            Format::Sarif => println!(
                "{}",
                serde_json::to_string_pretty(&report::sarif(&located)).unwrap_or_default()
            ),
            Format::Human => {
                let color = std::io::stderr().is_terminal();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{}", report::human(&located, color));
                let warnings = located.len() - self.errors();
                if !located.is_empty() {
                    let _ = writeln!(
                        err,
                        "{} error{}, {} warning{}",
                        self.errors(),
                        plural(self.errors()),
                        warnings,
                        plural(warnings)
                    );
                }
            }
        }
    }
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

/// Read and compile one plan, recording diagnostics; the compilation if the
/// file could be read.
fn compile_one(
    path: &Path,
    rules: &RuleSet,
    options: &Options,
    reporter: &mut Reporter,
) -> Option<Compilation> {
    let source = match Source::read(path) {
        Ok(s) => s,
        Err(d) => {
            reporter.io_error = true;
            let d = d.in_file(path.display().to_string());
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
    if let Some(rules) = load_rules(&flags.rules, &mut reporter) {
        for path in plans {
            compile_one(path, &rules, &flags.options(), &mut reporter);
        }
    }
    reporter.finish();
    reporter.exit_code()
}

/// Compile one plan for commands that need the result; diagnostics are
/// printed (human) either way.
pub(crate) fn compiled(
    path: &Path,
    flags: &CompileFlags,
) -> Result<rplan_compiler::CompiledPlan, u8> {
    let mut reporter = Reporter::new(Format::Human, flags.strict);
    let result = load_rules(&flags.rules, &mut reporter)
        .and_then(|rules| compile_one(path, &rules, &flags.options(), &mut reporter));
    reporter.finish();
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
    path: &Path,
    flags: &CompileFlags,
    refused: u8,
) -> Result<rplan_compiler::CompiledPlan, u8> {
    const BACKUP_FILES: [&str; 3] = [
        codes::ARTIFACT_MISSING,
        codes::ARTIFACT_SIZE,
        codes::ARTIFACT_SHA256,
    ];
    let mut reporter = Reporter::new(Format::Human, flags.strict);
    let result = load_rules(&flags.rules, &mut reporter)
        .and_then(|rules| compile_one(path, &rules, &flags.options(), &mut reporter));
    reporter.finish();
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

fn compile_to(plan: &Path, output: &Path, flags: &CompileFlags) -> u8 {
    let c = match compiled(plan, flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut text = serde_json::to_string_pretty(&c).unwrap_or_default();
    text.push('\n');
    write_output(output, &text)
}

pub(crate) fn write_output(output: &Path, text: &str) -> u8 {
    if output == Path::new("-") {
        print!("{text}");
        return exit::OK;
    }
    match std::fs::write(output, text) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", output.display());
            exit::USAGE
        }
    }
}

fn graph(plan: &Path, format: GraphFormat, flags: &CompileFlags) -> u8 {
    match compiled(plan, flags) {
        Ok(c) => {
            print!(
                "{}",
                match format {
                    GraphFormat::Dot => rplan_compiler::graph::dot(&c),
                    GraphFormat::Mermaid => rplan_compiler::graph::mermaid(&c),
                }
            );
            exit::OK
        }
        Err(code) => code,
    }
}

fn print_rules(files: &[PathBuf], format: RulesFormat) -> u8 {
    let mut reporter = Reporter::new(Format::Human, false);
    let Some(set) = load_rules(files, &mut reporter) else {
        reporter.finish();
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
