//! The span index: JSON pointer → byte span in the plan's source text.
//!
//! serde_yaml gives values without positions, so we walk the same text once
//! more with yaml-rust2's event parser, which reports a marker for every node,
//! and remember where each key and each value starts. Every later stage
//! addresses problems by pointer; rendering maps them back here.

use crate::diagnostic::escape_token;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A byte range in a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    values: HashMap<String, Span>,
    keys: HashMap<String, Span>,
    line_starts: Vec<usize>,
}

impl SpanIndex {
    /// Index `text`. A YAML error stops indexing where it happened; what was
    /// indexed before it is kept (the syntax error itself is reported from
    /// the loader).
    pub fn build(text: &str) -> SpanIndex {
        let mut builder = Builder {
            text,
            line_starts: line_starts(text),
            stack: Vec::new(),
            index: SpanIndex::default(),
            done: false,
        };
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut builder, false);
        let mut index = builder.index;
        index.line_starts = builder.line_starts;
        index
    }

    /// The span of the value at `pointer`, or of its nearest indexed parent.
    pub fn value(&self, pointer: &str) -> Option<Span> {
        let mut p = pointer;
        loop {
            if let Some(s) = self.values.get(p) {
                return Some(*s);
            }
            p = &p[..p.rfind('/')?];
        }
    }

    /// The span of the key that introduces `pointer` (falls back to value).
    pub fn key(&self, pointer: &str) -> Option<Span> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.value(pointer))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = text
            .get(start..offset.min(text.len()))
            .map_or(0, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Byte offset of a 1-based line and column (in characters).
    pub fn offset_of(&self, text: &str, line: usize, col: usize) -> usize {
        offset_of(&self.line_starts, text, line, col)
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

fn offset_of(line_starts: &[usize], text: &str, line: usize, col: usize) -> usize {
    let Some(&start) = line_starts.get(line.saturating_sub(1)) else {
        return text.len();
    };
    let rest = &text[start..];
    rest.char_indices()
        .nth(col.saturating_sub(1))
        .map_or(text.len(), |(i, _)| start + i)
}

enum Frame {
    Mapping {
        pointer: String,
        key: Option<String>,
        first: bool,
    },
    Sequence {
        pointer: String,
        next: usize,
    },
}

struct Builder<'t> {
    text: &'t str,
    line_starts: Vec<usize>,
    stack: Vec<Frame>,
    index: SpanIndex,
    done: bool,
}

impl Builder<'_> {
    fn offset(&self, mark: &Marker) -> usize {
        // yaml-rust2 markers: 1-based line, 0-based column in characters.
        offset_of(&self.line_starts, self.text, mark.line(), mark.col() + 1)
    }

    /// The pointer of a node starting now, or `None` if it is a mapping key
    /// (which is recorded as such).
    fn place(&mut self, key_text: Option<&str>, span: Span) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { pointer, next }) => {
                let p = format!("{pointer}/{next}");
                *next += 1;
                Some(p)
            }
            Some(Frame::Mapping {
                pointer,
                key,
                first,
            }) => match key.take() {
                Some(k) => Some(format!("{pointer}/{}", escape_token(&k))),
                None => {
                    if std::mem::take(first) {
                        // A block mapping's own marker sits oddly (after its
                        // first key); its first key is where a person looks.
                        // A flow mapping's `{` is right as it is.
                        let flow = self
                            .index
                            .values
                            .get(pointer.as_str())
                            .is_some_and(|m| self.text.as_bytes().get(m.offset) == Some(&b'{'));
                        if !flow {
                            self.index.values.insert(pointer.clone(), span);
                        }
                    }
                    let k = key_text.unwrap_or_default().to_string();
                    let p = format!("{pointer}/{}", escape_token(&k));
                    self.index.keys.entry(p).or_insert(span);
                    *key = Some(k);
                    None
                }
            },
        }
    }

    fn scalar_len(&self, offset: usize, style: TScalarStyle) -> usize {
        let rest = &self.text[offset.min(self.text.len())..];
        let quoted = |q: char| {
            let mut escaped = false;
            for (i, c) in rest.char_indices().skip(1) {
                match c {
                    '\\' if q == '"' && !escaped => escaped = true,
                    c if c == q && !escaped => return i + 1,
                    _ => escaped = false,
                }
            }
            rest.len()
        };
        match style {
            TScalarStyle::DoubleQuoted => quoted('"'),
            TScalarStyle::SingleQuoted => quoted('\''),
            _ => {
                let line = rest.split('\n').next().unwrap_or("");
                let end = line
                    .find(" #")
                    .or_else(|| line.find([',', ']', '}']))
                    .unwrap_or(line.len());
                line[..end].trim_end().len().max(1)
            }
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        let offset = self.offset(&mark);
        match ev {
            Event::Scalar(value, style, ..) => {
                let span = Span {
                    offset,
                    len: self.scalar_len(offset, style),
                };
                if let Some(p) = self.place(Some(&value), span) {
                    self.index.values.entry(p).or_insert(span);
                }
            }
            Event::Alias(_) => {
                let span = Span { offset, len: 1 };
                if let Some(p) = self.place(Some(""), span) {
                    self.index.values.entry(p).or_insert(span);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let span = Span { offset, len: 1 };
                let pointer = self.place(None, span).unwrap_or_default();
                self.index.values.entry(pointer.clone()).or_insert(span);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Mapping {
                        pointer,
                        key: None,
                        first: true,
                    }
                } else {
                    Frame::Sequence { pointer, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(index: &SpanIndex, text: &str, pointer: &str) -> (usize, usize, String) {
        let s = index.value(pointer).unwrap();
        let (l, c) = index.line_col(text, s.offset);
        (l, c, text[s.offset..s.offset + s.len].to_string())
    }

    #[test]
    fn indexes_values_and_keys() {
        let text = "version: 1\nname: \"pc07\"\ndisks:\n  - id: disk0\n    size: 80GiB # big\n    partitions: [ {id: a, size: 1MiB} ]\n";
        let ix = SpanIndex::build(text);
        assert_eq!(at(&ix, text, "/version"), (1, 10, "1".into()));
        assert_eq!(at(&ix, text, "/name"), (2, 7, "\"pc07\"".into()));
        assert_eq!(at(&ix, text, "/disks/0/id"), (4, 9, "disk0".into()));
        assert_eq!(at(&ix, text, "/disks/0/size"), (5, 11, "80GiB".into()));
        assert_eq!(
            at(&ix, text, "/disks/0/partitions/0/size"),
            (6, 33, "1MiB".into())
        );
        let k = ix.key("/disks/0/size").unwrap();
        assert_eq!(ix.line_col(text, k.offset), (5, 5));
        // An unindexed child falls back to its parent.
        assert_eq!(ix.value("/disks/0/nope"), ix.value("/disks/0"));
    }
}
