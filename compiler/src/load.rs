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

    /// Read a file; a file that is not UTF-8 or cannot be read is a diagnostic.
    pub fn read(path: &Path) -> Result<Source, Diagnostic> {
        let bytes = std::fs::read(path).map_err(|e| {
            Diagnostic::error(
                codes::CANNOT_READ,
                "",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Diagnostic::error(
                codes::CANNOT_READ,
                "",
                format!(
                    "{} is not UTF-8 text (byte {})",
                    path.display(),
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        let mut source = Source::new(path.display().to_string(), text);
        source.path = Some(path.to_path_buf());
        Ok(source)
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

/// Parse YAML into a JSON value. Syntax errors come back as one diagnostic
/// whose pointer is empty and whose position is carried in `line_col`.
pub fn parse_yaml(source: &Source) -> Result<Value, YamlError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(&source.text).map_err(|e| {
        let message = e.to_string();
        let spans = &source.spans;
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
        } else {
            None
        };
        YamlError {
            offset: hint
                .map(|s| s.offset)
                .or_else(|| e.location().map(|l| l.index())),
            message,
        }
    })?;
    to_json(yaml, "").map_err(|(pointer, message)| YamlError {
        offset: source.spans.value(&pointer).map(|s| s.offset),
        message,
    })
}

/// A YAML error, positioned by byte offset rather than pointer (the document
/// may have no structure yet).
#[derive(Debug, Clone)]
pub struct YamlError {
    pub offset: Option<usize>,
    pub message: String,
}

impl YamlError {
    pub fn diagnostic(&self) -> Diagnostic {
        // Strip serde_yaml's " at line X column Y": we render the position ourselves.
        let message = match self.message.find(" at line ") {
            Some(i) => &self.message[..i],
            None => &self.message,
        };
        let d = Diagnostic::error(codes::YAML_SYNTAX, "", format!("YAML: {message}"));
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
