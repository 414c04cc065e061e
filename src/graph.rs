//! `rplan graph`: draw a plan's step DAG as Graphviz dot, Mermaid, or SVG
//! (dot rendered by Graphviz's `dot` binary when it is installed). The
//! graph depends only on the plan, so the backup's artifacts are never read.

use crate::{exit, CompileFlags};
use rplan_compiler::codes;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(clap::Args)]
pub struct GraphArgs {
    /// The plan (YAML); `-` reads it from standard input.
    #[arg(value_name = "PLAN")]
    plan: PathBuf,
    /// `dot` (Graphviz source), `mermaid` (for Markdown), or `svg` (drawn
    /// by Graphviz's `dot`, which must be on PATH).
    #[arg(long, value_enum, default_value = "dot")]
    format: GraphFormat,
    /// Write the graph to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    flags: CompileFlags,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum GraphFormat {
    /// Graphviz source.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// An SVG picture, through Graphviz's `dot -Tsvg`.
    Svg,
}

pub fn run(mut args: GraphArgs) -> u8 {
    args.flags.no_artifacts = true;
    let c = match crate::compiled(&args.plan, &args.flags) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let bytes = match args.format {
        GraphFormat::Dot => rplan_compiler::graph::dot(&c).into_bytes(),
        GraphFormat::Mermaid => rplan_compiler::graph::mermaid(&c).into_bytes(),
        GraphFormat::Svg => match svg(&rplan_compiler::graph::dot(&c)) {
            Ok(svg) => svg,
            Err(code) => return code,
        },
    };
    crate::write_output(args.output.as_deref(), &bytes)
}

/// Graphviz's `dot` renders the dot source to SVG.
fn svg(dot: &str) -> Result<Vec<u8>, u8> {
    let child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "error[{}]: --format svg needs Graphviz's `dot`, which is not on PATH",
                codes::DOT_MISSING
            );
            eprintln!("  help: install Graphviz (Debian: apt-get install graphviz), or use --format dot and render it elsewhere");
            return Err(exit::USAGE);
        }
        Err(e) => {
            eprintln!("error[{}]: cannot run `dot`: {e}", codes::DOT_FAILED);
            return Err(exit::USAGE);
        }
    };
    // The graph is small (a few KiB): write it all, then read the result.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(dot.as_bytes());
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => Ok(out.stdout),
        Ok(out) => {
            eprintln!(
                "error[{}]: `dot -Tsvg` failed ({}): {}",
                codes::DOT_FAILED,
                out.status,
                rplan_runtime::events::printable_lines(String::from_utf8_lossy(&out.stderr).trim())
            );
            Err(exit::USAGE)
        }
        Err(e) => {
            eprintln!("error[{}]: `dot -Tsvg`: {e}", codes::DOT_FAILED);
            Err(exit::USAGE)
        }
    }
}
