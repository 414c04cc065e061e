//! Loading: plan text → a JSON value plus its span index.
//!
//! This is the only module that knows the YAML crate. Everything after it
//! works on `serde_json::Value` (which is what JSON Schema validates) and on
//! JSON pointers, so swapping serde_yaml for another parser touches only this
//! file.

use crate::diagnostic::{codes, Diagnostic};
use crate::span::SpanIndex;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The largest plan (or ruleset) file read: far above any real plan, far
/// below what would strain memory.
pub const MAX_PLAN_BYTES: u64 = 4 * 1024 * 1024;

/// How deeply mappings and lists may nest: serde_yaml's own limit. Deeper
/// documents are refused before serde_yaml sees them, because its scanner
/// slows down quadratically with flow nesting (`[[[[…`).
pub const MAX_NESTING: usize = 128;

/// A source file: its name as shown to people, its text and its spans.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    /// Where the file is, for resolving relative paths (`backup.root`).
    pub path: Option<PathBuf>,
    pub text: String,
    pub spans: SpanIndex,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        let text = text.into();
        Source {
            name: name.into(),
            path: None,
            spans: SpanIndex::build(&text),
            text,
        }
    }

    /// Read a file; a file that is not UTF-8, cannot be read or is larger
    /// than [`MAX_PLAN_BYTES`] is a diagnostic. At most that many bytes
    /// (plus one) are read, so `/dev/zero` or a huge file costs no memory.
    pub fn read(path: &Path) -> Result<Source, Diagnostic> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|e| cannot_read(&name, e))?;
        if file
            .metadata()
            .is_ok_and(|m| m.is_file() && m.len() > MAX_PLAN_BYTES)
        {
            return Err(too_large(&name));
        }
        let mut source = Source::from_reader(&name, file)?;
        source.path = Some(path.to_path_buf());
        Ok(source)
    }

    /// Read a plan from a stream (standard input): the same limits as
    /// [`Source::read`]; with no file, relative paths in it are resolved
    /// against the current directory.
    pub fn from_reader(name: &str, reader: impl std::io::Read) -> Result<Source, Diagnostic> {
        use std::io::Read;
        let mut bytes = Vec::new();
        reader
            .take(MAX_PLAN_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| cannot_read(name, e))?;
        if bytes.len() as u64 > MAX_PLAN_BYTES {
            return Err(too_large(name));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            Diagnostic::error(
                codes::CANNOT_READ,
                "",
                format!(
                    "{name} is not UTF-8 text (byte {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Ok(Source::new(name, text))
    }

    /// The directory relative paths in this file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }
}

fn cannot_read(name: &str, e: std::io::Error) -> Diagnostic {
    Diagnostic::error(codes::CANNOT_READ, "", format!("cannot read {name}: {e}"))
}

fn too_large(name: &str) -> Diagnostic {
    Diagnostic::error(
        codes::PLAN_TOO_LARGE,
        "",
        format!(
            "{name} is larger than {}: not a recovery plan",
            crate::size::human_bytes(MAX_PLAN_BYTES)
        ),
    )
    .help("a plan describes disks and stages in a few KiB; check the file name")
}

/// Parse YAML into a JSON value. Syntax errors come back as one diagnostic
/// whose pointer is empty and whose position is carried in `line_col`.
/// Merge keys (`<<: *anchor`) are applied.
pub fn parse_yaml(source: &Source) -> Result<Value, YamlError> {
    let spans = &source.spans;
    if let Some(at) = spans.too_deep {
        return Err(YamlError {
            offset: Some(at.offset),
            message: format!("YAML: nested more than {MAX_NESTING} levels deep"),
            help: Some("a plan needs a handful of levels: look for unclosed `[` or `{`".into()),
        });
    }
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&source.text).map_err(|e| {
        let message = e.to_string();
        let reported = e.location().map(|l| l.index());
        // serde_yaml reports some errors where it noticed them, not where
        // the cause is; the span index saw the cause.
        let hint = if message.contains("duplicate entry") {
            spans.duplicate_key
        } else if message.contains("more than one document") {
            spans.second_document
        } else if message.contains("end of stream") {
            // Ran off the end: where the unfinished thing began.
            spans.unclosed.or(spans.scan_stop)
        } else if message.contains("did not find expected ',' or") {
            spans.unclosed
        } else if message.contains("could not find expected ':'") {
            // Noticed on the line after the key that lacks its colon.
            reported
                .and_then(|at| previous_content_line(&source.text, at))
                .map(|offset| crate::span::Span { offset, len: 1 })
        } else {
            None
        };
        let offset = hint.map(|s| s.offset).or(reported);
        YamlError {
            help: yaml_help(&message, &source.text, offset),
            offset,
            message,
        }
    })?;
    yaml.apply_merge().map_err(|e| YamlError {
        offset: None,
        message: format!("YAML: {e}"),
        help: Some(
            "a merge key takes a mapping or a list of mappings: `<<: *defaults` or `<<: [*a, *b]`"
                .into(),
        ),
    })?;
    to_json(yaml, "").map_err(|(pointer, message)| YamlError {
        offset: source.spans.value(&pointer).map(|s| s.offset),
        message,
        help: None,
    })
}

/// Where a key without its colon begins: the first non-blank character of
/// the line holding `at` if the key is on it, else of the last line before
/// it that has content other than a comment (the scanner only notices the
/// missing colon at the next token).
fn previous_content_line(text: &str, at: usize) -> Option<usize> {
    let line_start = text.get(..at)?.rfind('\n').map_or(0, |i| i + 1);
    let here = text.get(line_start..at)?;
    if !here.trim().is_empty() {
        return Some(line_start + (here.len() - here.trim_start().len()));
    }
    let before = text.get(..line_start)?;
    let mut end = before.len();
    while end > 0 {
        let start = before[..end.saturating_sub(1)]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = &before[start..end];
        let trimmed = line.trim_start();
        if !trimmed.trim().is_empty() && !trimmed.starts_with('#') {
            return Some(start + (line.len() - trimmed.len()));
        }
        end = start;
    }
    None
}

/// A hint for the YAML errors people make most: tabs and indentation.
fn yaml_help(message: &str, text: &str, offset: Option<usize>) -> Option<String> {
    let line_at = |o: usize| {
        let start = text
            .get(..o)
            .and_then(|t| t.rfind('\n'))
            .map_or(0, |i| i + 1);
        let end = text
            .get(o..)
            .and_then(|t| t.find('\n'))
            .map_or(text.len(), |i| o + i);
        text.get(start..end).unwrap_or_default()
    };
    let tab_indented = offset.is_some_and(|o| {
        line_at(o)
            .chars()
            .take_while(|c| c.is_whitespace())
            .any(|c| c == '\t')
    });
    if message.contains("tab") || tab_indented {
        return Some("YAML forbids tabs for indentation: indent with spaces".into());
    }
    if message.contains("could not find expected ':'") {
        return Some("a key needs a colon and a space after it: `key: value`".into());
    }
    if message.contains("did not find expected ',' or") || message.contains("end of stream") {
        return Some("a `[`, `{` or quote opened here is never closed".into());
    }
    if message.contains("did not find expected")
        || message.contains("mapping values are not allowed")
        || message.contains("block sequence entries are not allowed")
    {
        return Some(
            "check the indentation: entries of one mapping or list start in the same column, \
             and nested ones further right"
                .into(),
        );
    }
    None
}

/// A YAML error, positioned by byte offset rather than pointer (the document
/// may have no structure yet).
#[derive(Debug, Clone)]
pub struct YamlError {
    pub offset: Option<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl YamlError {
    pub fn diagnostic(&self) -> Diagnostic {
        // Strip serde_yaml's " at line X column Y": we render the position ourselves.
        let message = match self.message.find(" at line ") {
            Some(i) => &self.message[..i],
            None => &self.message,
        };
        let message = message.strip_prefix("YAML: ").unwrap_or(message);
        let d = Diagnostic::error(codes::YAML_SYNTAX, "", format!("YAML: {message}"))
            .maybe_help(self.help.clone());
        match self.offset {
            Some(offset) => d.at_span(crate::span::Span { offset, len: 1 }),
            None => d,
        }
    }
}

/// JSON has string keys only and no tags; YAML has both. Scalar keys become
/// strings, tags are dropped, anything else is refused with its pointer.
fn to_json(v: serde_yaml::Value, pointer: &str) -> Result<Value, (String, String)> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| {
                        (
                            pointer.to_string(),
                            format!("YAML: `{n}` is not a finite number"),
                        )
                    })?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{pointer}/{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, item) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_string(),
                    _ => {
                        return Err((
                            pointer.to_string(),
                            "YAML: mapping keys must be plain scalars".to_string(),
                        ))
                    }
                };
                let child = format!("{pointer}/{}", crate::diagnostic::escape_token(&key));
                out.insert(key, to_json(item, &child)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => to_json(t.value, pointer)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_at(text: &str) -> (usize, usize, Option<String>) {
        let source = Source::new("t.yaml", text);
        let e = parse_yaml(&source).unwrap_err();
        let (l, c) = source.spans.line_col(text, e.offset.unwrap());
        (l, c, e.help)
    }

    #[test]
    fn a_missing_colon_is_reported_on_its_own_line() {
        for (text, at) in [
            ("a: 1\nb\n", (2, 1)),
            ("a: 1\nb", (2, 1)),
            ("a: 1\nb\n# c\n\nc: 2\n", (2, 1)),
            ("a:\n  x: 1\n  y\n  z: 2\n", (3, 3)),
        ] {
            let (l, c, help) = error_at(text);
            assert_eq!((l, c), at, "{text:?}");
            assert!(help.unwrap_or_default().contains("colon"), "{text:?}");
        }
    }

    #[test]
    fn merge_keys_merge_and_tabs_get_help() {
        let v = parse_yaml(&Source::new("t", "a: &x { p: 1 }\nb: { <<: *x, q: 2 }\n")).unwrap();
        assert_eq!(v["b"]["p"], 1);
        let (_, _, help) = error_at("a:\n\tb: 1\n");
        assert!(help.unwrap_or_default().contains("tabs"));
    }
}
