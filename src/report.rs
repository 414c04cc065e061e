//! Rendering diagnostics: miette for people, the JSON object of DESIGN.md
//! for tools, SARIF 2.1.0 for code-scanning services.
//!
//! This is the one place where a pointer becomes a line and column: through
//! the span index of the source the diagnostic belongs to.

use miette::{LabeledSpan, MietteDiagnostic, Report};
use rplan_compiler::diagnostic::category;
use rplan_compiler::{Diagnostic, Severity, Source};
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Sarif,
}

/// A diagnostic with its file and position resolved.
pub struct Located<'a> {
    pub diag: &'a Diagnostic,
    pub file: String,
    pub source: Option<&'a Source>,
    pub offset: Option<usize>,
    pub len: usize,
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Resolve `diag` against the sources: its own file if it names one,
/// else `default`.
pub fn locate<'a>(
    diag: &'a Diagnostic,
    default: Option<&'a Source>,
    others: &'a [Source],
) -> Located<'a> {
    let source = match &diag.file {
        Some(name) => others.iter().find(|s| &s.name == name),
        None => default,
    };
    let file = diag
        .file
        .clone()
        .or_else(|| default.map(|s| s.name.clone()))
        .unwrap_or_default();
    let span = source.and_then(|s| {
        diag.span.or_else(|| {
            if diag.at_key {
                s.spans.key(&diag.pointer)
            } else {
                s.spans.value(&diag.pointer)
            }
        })
    });
    let (line, column) = match (source, span) {
        (Some(s), Some(sp)) => {
            let (l, c) = s.spans.line_col(&s.text, sp.offset);
            (Some(l), Some(c))
        }
        _ => (None, None),
    };
    Located {
        diag,
        file,
        source,
        offset: span.map(|s| s.offset),
        len: span.map_or(0, |s| s.len),
        line,
        column,
    }
}

pub fn json_object(items: &[Located]) -> Value {
    let diagnostics: Vec<Value> = items
        .iter()
        .map(|l| {
            let mut o = json!({
                "severity": l.diag.severity,
                "code": l.diag.code,
                "message": l.diag.message,
                "pointer": l.diag.pointer,
                "file": l.file,
                "line": l.line,
                "column": l.column,
            });
            if let Some(h) = &l.diag.help {
                o["help"] = json!(h);
            }
            o
        })
        .collect();
    json!({
        "diagnostics": diagnostics,
        "errors": items.iter().filter(|l| l.diag.severity == Severity::Error).count(),
        "warnings": items.iter().filter(|l| l.diag.severity == Severity::Warning).count(),
    })
}

pub fn sarif(items: &[Located]) -> Value {
    let mut codes: Vec<&str> = items.iter().map(|l| l.diag.code).collect();
    codes.sort_unstable();
    codes.dedup();
    let rules: Vec<Value> = codes
        .iter()
        .map(|c| json!({"id": c, "name": category(c), "shortDescription": {"text": format!("rplan: {}", category(c))}}))
        .collect();
    let results: Vec<Value> = items
        .iter()
        .map(|l| {
            let here = match (l.source, l.offset) {
                (Some(src), Some(offset)) => region(src, offset, l.len),
                _ => json!({}),
            };
            // The "see …" places: related locations, linked from the message.
            let related: Vec<(Value, &str)> = l
                .source
                .map(|src| {
                    l.diag
                        .related
                        .iter()
                        .filter_map(|(pointer, text)| {
                            let s = src.spans.value(pointer)?;
                            Some((region(src, s.offset, s.len), text.as_str()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut text = match &l.diag.help {
                Some(h) => format!("{} (help: {h})", l.diag.message),
                None => l.diag.message.clone(),
            };
            if !related.is_empty() {
                let links: Vec<String> = related
                    .iter()
                    .enumerate()
                    .map(|(i, (_, t))| format!("[{}]({})", sarif_escape(t), i + 1))
                    .collect();
                text = format!("{} (see {})", sarif_escape(&text), links.join("; "));
            }
            let related: Vec<Value> = related
                .into_iter()
                .enumerate()
                .map(|(i, (region, t))| {
                    json!({
                        "id": i + 1,
                        "physicalLocation": {"artifactLocation": {"uri": l.file}, "region": region},
                        "message": {"text": t}
                    })
                })
                .collect();
            let mut result = json!({
                "ruleId": l.diag.code,
                "ruleIndex": codes.iter().position(|c| *c == l.diag.code),
                "level": match l.diag.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": l.file}, "region": here},
                    "logicalLocations": [{"fullyQualifiedName": l.diag.pointer, "kind": "member"}]
                }]
            });
            if !related.is_empty() {
                result["relatedLocations"] = json!(related);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "rplan",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/rplan/rplan",
                "rules": rules
            }},
            "columnKind": "unicodeCodePoints",
            "results": results
        }]
    })
}

/// A SARIF region from a byte span: 1-based lines, columns in code points
/// (the run says `unicodeCodePoints`), the end column just past the span.
fn region(src: &Source, offset: usize, len: usize) -> Value {
    let (line, col) = src.spans.line_col(&src.text, offset);
    let (end_line, end_col) = src
        .spans
        .line_col(&src.text, offset.saturating_add(len.max(1)));
    json!({"startLine": line, "startColumn": col, "endLine": end_line, "endColumn": end_col})
}

/// SARIF message text: `[` and `]` are link syntax, so literal ones are
/// escaped (SARIF 2.1.0 §3.11.6).
fn sarif_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('[', "\\[")
        .replace(']', "\\]")
}

/// At most this many diagnostics are drawn for a person; the rest are
/// counted in one line (`--format json` lists them all).
pub const MAX_HUMAN: usize = 500;

/// A source for miette that finds lines through our own line index. miette
/// reads a `str` source from its first byte for every report, which makes
/// many reports on one file quadratic; this hands it only the lines around
/// the span.
#[derive(Debug)]
struct Indexed {
    name: String,
    text: Arc<String>,
    line_starts: Arc<Vec<usize>>,
}

impl Indexed {
    fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }
}

impl miette::SourceCode for Indexed {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let first = self
            .line_of(span.offset())
            .saturating_sub(context_lines_before);
        let last = self.line_of(span.offset() + span.len().saturating_sub(1));
        let start = self.line_starts.get(first).copied().unwrap_or(0);
        let end = self
            .line_starts
            .get(last + context_lines_after + 2)
            .copied()
            .unwrap_or(self.text.len())
            .min(self.text.len());
        let window = self.text.as_bytes().get(start..end).unwrap_or_default();
        let local = miette::SourceSpan::new(span.offset().saturating_sub(start).into(), span.len());
        let inner = window.read_span(&local, context_lines_before, context_lines_after)?;
        let data = inner.data();
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            data,
            miette::SourceSpan::new((inner.span().offset() + start).into(), inner.span().len()),
            inner.line() + first,
            inner.column(),
            inner.line_count() + first,
        )))
    }
}

/// Render for a person, through miette, one report per diagnostic.
pub fn human(items: &[Located], color: bool) -> String {
    let handler = if color {
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode())
    } else {
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
    };
    let mut out = String::new();
    let mut shared: Vec<(String, Arc<String>, Arc<Vec<usize>>)> = Vec::new();
    for l in items.iter().take(MAX_HUMAN) {
        let mut md = MietteDiagnostic::new(l.diag.message.clone())
            .with_code(l.diag.code)
            .with_severity(match l.diag.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            });
        if let Some(h) = &l.diag.help {
            md = md.with_help(h.clone());
        }
        let report = match (l.source, l.offset) {
            (Some(src), Some(offset)) => {
                md = md.with_label(LabeledSpan::new_primary_with_span(
                    Some(label(l.diag)),
                    (offset, l.len.max(1)),
                ));
                // miette draws one snippet per report, so a related place
                // more than a few lines away becomes a note instead.
                let mut notes = Vec::new();
                for (pointer, text) in &l.diag.related {
                    let Some(s) = src.spans.value(pointer) else {
                        continue;
                    };
                    let (line, col) = src.spans.line_col(&src.text, s.offset);
                    if l.line.is_some_and(|pl| pl.abs_diff(line) <= 2) {
                        md = md.with_label(LabeledSpan::new_with_span(
                            Some(text.clone()),
                            (s.offset, s.len.max(1)),
                        ));
                    } else {
                        notes.push(format!("{}:{line}:{col}: {text}", src.name));
                    }
                }
                if !notes.is_empty() {
                    let help = md.help.take().map(|h| format!("{h}\n")).unwrap_or_default();
                    md = md.with_help(format!("{help}see {}", notes.join("; ")));
                }
                let (text, line_starts) = match shared.iter().find(|(n, ..)| *n == src.name) {
                    Some((_, t, l)) => (t.clone(), l.clone()),
                    None => {
                        let t = Arc::new(src.text.clone());
                        let l = Arc::new(
                            std::iter::once(0)
                                .chain(src.text.match_indices('\n').map(|(i, _)| i + 1))
                                .collect::<Vec<usize>>(),
                        );
                        shared.push((src.name.clone(), t.clone(), l.clone()));
                        (t, l)
                    }
                };
                Report::new(md).with_source_code(Indexed {
                    name: src.name.clone(),
                    text,
                    line_starts,
                })
            }
            _ => {
                let where_ = if l.file.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", l.file)
                };
                Report::new(MietteDiagnostic {
                    message: format!("{}{where_}", l.diag.message),
                    ..md
                })
            }
        };
        let _ = handler.render_report(&mut out, report.as_ref());
        out.push('\n');
    }
    if items.len() > MAX_HUMAN {
        out.push_str(&format!(
            "… and {} more diagnostics not shown (`--format json` lists them all)\n",
            items.len() - MAX_HUMAN
        ));
    }
    out
}

fn label(d: &Diagnostic) -> String {
    if d.pointer.is_empty() {
        "here".into()
    } else {
        d.pointer.clone()
    }
}
