//! rplan-compiler: a recovery plan in, a compiled step DAG out.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! load    — YAML text → JSON value + span index        (load.rs, span.rs)
//! schema  — JSON Schema validation, every violation     (schema.rs)
//! types   — typed Plan via serde, deny_unknown_fields   (model.rs, size.rs)
//! analyze — rules · disks · volumes · content · stages  (analyze/, rules.rs)
//! lower   — per-stage petgraph DAG, order, estimates    (lower.rs)
//! emit    — the compiled plan JSON                      (compiled.rs)
//! ```
//!
//! Problems at every stage are [`Diagnostic`]s addressed by JSON pointer.
//! Nothing here opens a device; artifact files are the only I/O besides the
//! plan itself.

// A Diagnostic is the error value throughout; it is returned once per
// problem, never in a hot loop, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod analyze;
pub mod compiled;
pub mod diagnostic;
pub mod fslimits;
pub mod graph;
pub mod load;
pub mod lower;
pub mod model;
pub mod partclone;
pub mod rules;
pub mod schema;
pub mod size;
pub mod span;

pub use compiled::CompiledPlan;
pub use diagnostic::{codes, Diagnostic, Severity};
pub use load::Source;
pub use model::Plan;
pub use rules::RuleSet;

/// Knobs of a compilation (CLI flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Refuse `manual` actions.
    pub unattended: bool,
    /// Do not open artifact files (CI away from the backup store).
    pub no_artifacts: bool,
    /// Check the artifact files but leave hashing them to the caller
    /// ([`analyze::artifacts::verify`]), which runs it alongside other work
    /// (apply: while the targets are inspected and the operator asked).
    pub defer_hashing: bool,
    /// Bytes per second assumed by estimates.
    pub throughput: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            unattended: false,
            no_artifacts: false,
            defer_hashing: false,
            throughput: lower::DEFAULT_THROUGHPUT,
        }
    }
}

/// The result of compiling one plan: every diagnostic, and as far as it got.
#[derive(Debug, Default)]
pub struct Compilation {
    pub diagnostics: Vec<Diagnostic>,
    pub plan: Option<Plan>,
    pub compiled: Option<CompiledPlan>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Run the whole pipeline on one source.
pub fn compile(source: &Source, rules: &RuleSet, options: &Options) -> Compilation {
    let mut out = Compilation::default();
    let value = match load::parse_yaml(source) {
        Ok(v) => v,
        Err(e) => {
            out.diagnostics.push(e.diagnostic());
            return out;
        }
    };
    out.diagnostics = schema::SchemaValidator::plan().validate(&value);
    if !out.diagnostics.is_empty() {
        return out;
    }
    let plan = match model::Plan::from_value(value) {
        Ok(p) => p,
        Err(d) => {
            out.diagnostics.push(d);
            return out;
        }
    };
    let (analysis, diags) = analyze::analyze(&plan, options, rules, &source.base_dir());
    out.diagnostics = diags;
    if !out.has_errors() {
        match lower::lower(&plan, &analysis, rules, options) {
            Ok(c) => out.compiled = Some(c),
            Err(ds) => out.diagnostics.extend(ds),
        }
    }
    out.plan = Some(plan);
    out
}

impl model::Plan {
    /// The typed plan from a schema-valid value. Anything the schema cannot
    /// express (a size that overflows, say) is reported at its pointer.
    pub fn from_value(value: serde_json::Value) -> Result<Plan, Diagnostic> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let mut pointer = String::new();
            for seg in e.path().iter() {
                use serde_path_to_error::Segment;
                match seg {
                    Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                    Segment::Map { key } => {
                        pointer.push('/');
                        pointer.push_str(&diagnostic::escape_token(key));
                    }
                    Segment::Enum { .. } | Segment::Unknown => {}
                }
            }
            let message = e.into_inner().to_string();
            let unit_field = ["/size", "/start", "/stripe_size", "/timeout"]
                .iter()
                .any(|f| pointer.ends_with(f));
            let code = if unit_field || message.contains("size") || message.contains("duration") {
                codes::BAD_SIZE
            } else {
                codes::SCHEMA_OTHER
            };
            // serde keeps only the message of a refused duration; its bound
            // is worth repeating as help.
            let help = message.contains("longer than 30 days").then(|| {
                format!(
                    "durations are at most {}h (30 days): a step that takes longer has failed",
                    size::MAX_DURATION_SECS / 3600
                )
            });
            Diagnostic::error(code, pointer, message).maybe_help(help)
        })
    }
}
