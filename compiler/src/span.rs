//! The span index: JSON pointer → byte span in the plan's source text.
//!
//! serde_yaml gives values without positions, so we walk the same text once
//! more with yaml-rust2's event parser, which reports a marker for every node,
//! and remember where each key and each value starts. Every later stage
//! addresses problems by pointer; rendering maps them back here.

use crate::diagnostic::escape_token;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper than this the loader refuses the document (see `too_deep`).
const MAX_DEPTH: usize = crate::load::MAX_NESTING;

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
    /// Where a person should look for a YAML error, when the parser's own
    /// position is later than the cause: the first repeated key, the start
    /// of a second document, the innermost unclosed `{`/`[`, or where
    /// yaml-rust2 stopped.
    pub duplicate_key: Option<Span>,
    pub second_document: Option<Span>,
    pub unclosed: Option<Span>,
    pub scan_stop: Option<Span>,
    /// Where the document first nests deeper than the loader allows.
    pub too_deep: Option<Span>,
}

impl SpanIndex {
    /// Index `text`. A YAML error stops indexing where it happened; what was
    /// indexed before it is kept (the syntax error itself is reported from
    /// the loader).
    pub fn build(text: &str) -> SpanIndex {
        let mut builder = Builder {
            text,
            cursor: (0, 0),
            stack: Vec::new(),
            index: SpanIndex::default(),
        };
        // Both YAML scanners (yaml-rust2 here, libyaml in the loader) slow
        // down quadratically with flow nesting, before any event arrives:
        // measure it first, linearly, and index nothing past the limit.
        if let Some(offset) = flow_too_deep(text, MAX_DEPTH) {
            builder.index.too_deep = Some(Span { offset, len: 1 });
            let mut index = builder.index;
            index.line_starts = line_starts(text);
            return index;
        }
        // Pull events one at a time: yaml-rust2's `load` recurses per
        // nesting level and would overflow the stack on hostile input.
        let mut parser = Parser::new_from_str(text);
        let mut ended = false;
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) => break,
                Ok((Event::DocumentEnd, _)) => ended = true,
                Ok((Event::DocumentStart, mark)) if ended => {
                    let offset = builder.offset(&mark);
                    builder.index.second_document = Some(Span { offset, len: 3 });
                    break;
                }
                // Too deep to be a plan: stop here (pointers that deep
                // would cost memory quadratic in the depth), and tell the
                // loader, whose YAML scanner is slow on deep flow nesting.
                Ok((_, mark)) if builder.stack.len() > MAX_DEPTH => {
                    let offset = builder.offset(&mark);
                    builder.index.too_deep = Some(Span { offset, len: 1 });
                    break;
                }
                Ok((event, mark)) => builder.on_event(event, mark),
                Err(e) => {
                    // The innermost open flow collection is usually what
                    // was left unclosed; else where the scanner gave up.
                    let open = builder.stack.iter().rev().find_map(|f| match f {
                        Frame::Mapping {
                            flow: true, start, ..
                        }
                        | Frame::Sequence {
                            flow: true, start, ..
                        } => Some(*start),
                        _ => None,
                    });
                    let at = builder.offset(e.marker());
                    builder.index.unclosed = open;
                    builder.index.scan_stop = Some(Span { offset: at, len: 1 });
                    break;
                }
            }
        }
        let mut index = builder.index;
        index.line_starts = line_starts(text);
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
}

/// Where `[`/`{` first nest more than `limit` deep, in one pass that skips
/// quoted scalars and comments. A bracket counts only where a flow
/// collection can begin (after a line start, `:`, `-`, `,`, `?`, or another
/// bracket), so a plain scalar like `a[1]` is not mistaken for one.
fn flow_too_deep(text: &str, limit: usize) -> Option<usize> {
    let mut depth = 0_usize;
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = b'\n'; // last byte that was not a space
    let mut prev_raw = b'\n';
    for (i, &b) in text.as_bytes().iter().enumerate() {
        if comment {
            if b == b'\n' {
                comment = false;
                prev = b'\n';
                prev_raw = b'\n';
            }
            continue;
        }
        if let Some(q) = quote {
            match b {
                b'\\' if q == b'"' && !escaped => escaped = true,
                _ if b == q && !escaped => {
                    quote = None;
                    prev = b;
                }
                _ => escaped = false,
            }
            prev_raw = b;
            continue;
        }
        let token_start = matches!(prev, b'\n' | b':' | b'-' | b',' | b'?' | b'[' | b'{');
        match b {
            b'#' if matches!(prev_raw, b' ' | b'\t' | b'\n') => comment = true,
            b'"' | b'\'' if token_start => quote = Some(b),
            b'[' | b'{' if token_start => {
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !matches!(b, b' ' | b'\t' | b'\r') {
            prev = b;
        }
        prev_raw = b;
    }
    None
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

enum Frame {
    Mapping {
        pointer: String,
        key: Option<String>,
        first: bool,
        flow: bool,
        start: Span,
        seen: std::collections::HashSet<String>,
    },
    Sequence {
        pointer: String,
        next: usize,
        flow: bool,
        start: Span,
    },
}

struct Builder<'t> {
    text: &'t str,
    /// (character index, byte offset) of the last marker: markers count
    /// characters and arrive in document order, so walking forward from
    /// the last one keeps the whole index linear in the text's size.
    cursor: (usize, usize),
    stack: Vec<Frame>,
    index: SpanIndex,
}

impl Builder<'_> {
    fn offset(&mut self, mark: &Marker) -> usize {
        let target = mark.index();
        let (mut chars, mut bytes) = self.cursor;
        // Markers mostly move forward; a block mapping's start comes a few
        // characters behind its first key, so walk back just that far.
        let mut back = self.text[..bytes].chars().rev();
        while chars > target {
            match back.next() {
                Some(c) => {
                    chars -= 1;
                    bytes -= c.len_utf8();
                }
                None => break,
            }
        }
        let mut it = self.text[bytes..].chars();
        while chars < target {
            match it.next() {
                Some(c) => {
                    chars += 1;
                    bytes += c.len_utf8();
                }
                None => break,
            }
        }
        self.cursor = (chars, bytes);
        bytes
    }

    fn in_flow(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame::Mapping { flow: true, .. } | Frame::Sequence { flow: true, .. })
        )
    }

    /// The pointer of a node starting now, or `None` if it is a mapping key
    /// (which is recorded as such).
    fn place(&mut self, key_text: Option<&str>, span: Span) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { pointer, next, .. }) => {
                let p = format!("{pointer}/{next}");
                *next += 1;
                Some(p)
            }
            Some(Frame::Mapping {
                pointer,
                key,
                first,
                flow,
                seen,
                ..
            }) => match key.take() {
                Some(k) => Some(format!("{pointer}/{}", escape_token(&k))),
                None => {
                    // A block mapping's own marker sits oddly (after its
                    // first key); its first key is where a person looks. A
                    // flow mapping's `{` is right as it is.
                    if std::mem::take(first) && !*flow {
                        self.index.values.insert(pointer.clone(), span);
                    }
                    let k = key_text.unwrap_or_default().to_string();
                    if !seen.insert(k.clone()) && self.index.duplicate_key.is_none() {
                        self.index.duplicate_key = Some(span);
                    }
                    let p = format!("{pointer}/{}", escape_token(&k));
                    self.index.keys.entry(p).or_insert(span);
                    *key = Some(k);
                    None
                }
            },
        }
    }

    /// How long a scalar's source text is, looked for at most a few KiB
    /// ahead (a label needs no more, and a bound keeps this linear).
    fn scalar_len(&self, offset: usize, style: TScalarStyle) -> usize {
        const LOOK: usize = 4096;
        let rest = &self.text[offset.min(self.text.len())..];
        let quoted = |q: char| {
            let mut escaped = false;
            for (i, c) in rest.char_indices().skip(1).take(LOOK) {
                match c {
                    '\\' if q == '"' && !escaped => escaped = true,
                    c if c == q && !escaped => return i + 1,
                    _ => escaped = false,
                }
            }
            1
        };
        match style {
            TScalarStyle::DoubleQuoted => quoted('"'),
            TScalarStyle::SingleQuoted => quoted('\''),
            _ => {
                let flow = self.in_flow();
                let mut end = 0;
                let mut prev = ' ';
                for (i, c) in rest.char_indices().take(LOOK) {
                    if c == '\n'
                        || (c == '#' && prev == ' ')
                        || (flow && matches!(c, ',' | ']' | '}'))
                    {
                        break;
                    }
                    end = i + c.len_utf8();
                    prev = c;
                }
                rest[..end].trim_end().len().max(1)
            }
        }
    }

    fn on_event(&mut self, ev: Event, mark: Marker) {
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
                let flow = matches!(self.text.as_bytes().get(offset), Some(b'{' | b'['));
                let pointer = self.place(None, span).unwrap_or_default();
                self.index.values.entry(pointer.clone()).or_insert(span);
                self.stack.push(if matches!(ev, Event::MappingStart(..)) {
                    Frame::Mapping {
                        pointer,
                        key: None,
                        first: true,
                        flow,
                        start: span,
                        seen: std::collections::HashSet::new(),
                    }
                } else {
                    Frame::Sequence {
                        pointer,
                        next: 0,
                        flow,
                        start: span,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
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

    #[test]
    fn deep_flow_nesting_is_found_without_parsing() {
        let deep = format!("name: {}", "[".repeat(200));
        assert_eq!(flow_too_deep(&deep, 128), Some(6 + 128));
        let quoted = format!(
            "name: \"{}\"\nx: [a[1], {{b: c}}] # [[[[\n",
            "[".repeat(200)
        );
        assert_eq!(flow_too_deep(&quoted, 128), None);
        assert!(SpanIndex::build(&deep).too_deep.is_some());
    }
}
