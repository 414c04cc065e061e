//! Terminal habits shared by every subcommand: the global `--color` and
//! `-q/--quiet` flags, and `NO_COLOR` (no-color.org). Parsed once in
//! `main`, read anywhere through [`color_stderr`], [`color_stdout`] and
//! [`quiet`]. Not for what is printed, only whether and how.

use std::io::IsTerminal;
use std::sync::OnceLock;

/// Flags every subcommand accepts (`global = true`), before or after it.
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct GlobalFlags {
    /// When to colour output: `auto` colours a terminal unless the NO_COLOR
    /// environment variable is set (and not empty); `always` colours even a
    /// pipe and overrides NO_COLOR; `never` never colours.
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        default_value = "auto",
        global = true
    )]
    pub color: ColorChoice,
    /// Print only errors: no warnings, summary lines or progress. Machine
    /// formats (`--format json|sarif`) and requested output (compile,
    /// graph, schema…) are unchanged.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

static FLAGS: OnceLock<GlobalFlags> = OnceLock::new();

/// Remember the parsed flags; the first call wins.
pub fn init(flags: GlobalFlags) {
    let _ = FLAGS.set(flags);
}

fn flags() -> GlobalFlags {
    FLAGS.get().copied().unwrap_or(GlobalFlags {
        color: ColorChoice::Auto,
        quiet: false,
    })
}

/// Whether to colour a stream that is (or is not) a terminal.
fn color(terminal: bool) -> bool {
    match flags().color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// Colour what goes to stderr (diagnostics, progress)?
pub fn color_stderr() -> bool {
    color(std::io::stderr().is_terminal())
}

/// Colour what goes to stdout (reports)?
pub fn color_stdout() -> bool {
    color(std::io::stdout().is_terminal())
}

/// `-q/--quiet`: only errors.
pub fn quiet() -> bool {
    flags().quiet
}

/// clap's own output (help, usage errors) is written before the flags are
/// parsed: find `--color` in the raw arguments so that it follows the
/// flag too (clap's `auto` already honours NO_COLOR).
pub fn clap_color(args: &[std::ffi::OsString]) -> clap::ColorChoice {
    let mut value = None;
    let mut iter = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        if let Some(v) = arg.strip_prefix("--color=") {
            value = Some(v.to_string());
        } else if arg == "--color" {
            value = iter.next().map(|v| v.to_string());
        }
    }
    match value.as_deref() {
        Some("always") => clap::ColorChoice::Always,
        Some("never") => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    }
}
