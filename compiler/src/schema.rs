//! JSON Schema: generated from the typed model, validated with `jsonschema`.
//!
//! The schemas in `schemas/` are these functions' output, committed; a test
//! fails when they drift. Validation reports every violation, each turned
//! into a coded diagnostic at its JSON pointer, with the message rewritten
//! for a person (a bad size explains the units, an unknown field suggests
//! the one that was probably meant).

use crate::diagnostic::{codes, Diagnostic};
use crate::model::{ID_PATTERN, LANGUAGE_PATTERN};
use crate::size::{Duration, Size, DURATION_PATTERN};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The most schema diagnostics listed for one plan; the rest are counted.
pub const MAX_DIAGNOSTICS: usize = 10_000;

/// The plan schema as JSON.
pub fn plan_schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(crate::model::Plan)).unwrap_or_default();
    drop_null_alternatives(&mut schema);
    schema
}

/// Optional fields are written by leaving them out, never as `null`; so an
/// input schema says "a mapping" rather than "a mapping or null". Besides
/// being what a person means, it keeps each violation a plain error at its
/// pointer instead of an `anyOf` failure one level up.
pub fn drop_null_alternatives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let is_null = |s: &Value| s.get("type").and_then(Value::as_str) == Some("null");
            if let Some(Value::Array(alts)) = map.get("anyOf") {
                if alts.len() == 2 && alts.iter().any(is_null) {
                    let keep = alts
                        .iter()
                        .find(|a| !is_null(a))
                        .cloned()
                        .unwrap_or_default();
                    map.remove("anyOf");
                    if let Value::Object(inner) = keep {
                        for (k, val) in inner {
                            map.entry(k).or_insert(val);
                        }
                    }
                }
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    map.insert("type".into(), only);
                }
            }
            map.values_mut().for_each(drop_null_alternatives);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_alternatives),
        _ => {}
    }
}

/// Pretty JSON text of a schema, as committed under `schemas/`.
pub fn to_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

/// A compiled validator plus the property names it knows (for suggestions).
pub struct SchemaValidator {
    validator: Validator,
    schema: Value,
    properties: BTreeSet<String>,
}

impl SchemaValidator {
    pub fn new(schema: &Value) -> SchemaValidator {
        let validator = match jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
        {
            Ok(v) => v,
            // Our own generated schemas are valid; a test proves it.
            Err(e) => panic!("built-in schema is invalid: {e}"),
        };
        let mut properties = BTreeSet::new();
        collect_properties(schema, &mut properties);
        SchemaValidator {
            validator,
            schema: schema.clone(),
            properties,
        }
    }

    pub fn plan() -> &'static SchemaValidator {
        static PLAN: OnceLock<SchemaValidator> = OnceLock::new();
        PLAN.get_or_init(|| SchemaValidator::new(&plan_schema()))
    }

    /// Every violation in `instance`, as diagnostics.
    pub fn validate(&self, instance: &Value) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = Vec::new();
        // Seen (pointer, message) pairs: a set, so that a plan with
        // thousands of errors costs linear time, not quadratic.
        let mut seen = std::collections::HashSet::new();
        let mut unlisted = 0_usize;
        for error in self.validator.iter_errors(instance) {
            for d in self.explain(&error) {
                if out.len() >= MAX_DIAGNOSTICS {
                    // Counted, not kept: a hostile plan's millions of
                    // problems must not cost memory.
                    unlisted += 1;
                } else if seen.insert((d.pointer.clone(), d.message.clone())) {
                    out.push(d);
                }
            }
        }
        if unlisted > 0 {
            out.push(
                Diagnostic::error(
                    codes::SCHEMA_OTHER,
                    "",
                    format!("… and {unlisted} more problems, not listed"),
                )
                .help(format!(
                    "rplan lists the first {MAX_DIAGNOSTICS} problems of a plan: fix those first"
                )),
            );
        }
        out
    }

    fn explain(&self, error: &ValidationError) -> Vec<Diagnostic> {
        let pointer = error.instance_path().as_str().to_string();
        let instance = error.instance().as_ref();
        let found = describe(instance);
        let d = match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                // The fields this very mapping allows, from the schema node
                // that refused the extra one.
                let parent = error.schema_path().as_str().trim_end_matches("/additionalProperties").to_string();
                let here: Vec<String> = self
                    .schema
                    .pointer(&parent)
                    .and_then(|n| n.get("properties"))
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                return unexpected
                    .iter()
                    .map(|field| {
                        let p = format!("{pointer}/{}", crate::diagnostic::escape_token(field));
                        let help = match did_you_mean(field, here.iter()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None if here.is_empty() => String::new(),
                            None if self.properties.contains(field) => {
                                let owners: Vec<String> = self
                                    .schema
                                    .get("$defs")
                                    .and_then(Value::as_object)
                                    .map(|defs| {
                                        defs.iter()
                                            .filter(|(_, d)| d.pointer(&format!("/properties/{field}")).is_some())
                                            .map(|(name, _)| format!("`{}`", name.to_lowercase()))
                                            .collect()
                                    })
                                    .unwrap_or_default();
                                format!(
                                    "`{field}` is a field of {}, not of this mapping, which takes: {}",
                                    owners.join(" or "),
                                    here.join(", ")
                                )
                            }
                            None => format!("this mapping takes: {}", here.join(", ")),
                        };
                        let d = Diagnostic::error(codes::UNKNOWN_FIELD, p, format!("unknown field `{field}`")).at_key();
                        if help.is_empty() {
                            d
                        } else {
                            d.help(help)
                        }
                    })
                    .collect();
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                Diagnostic::error(
                    codes::MISSING_FIELD,
                    pointer,
                    format!("missing field `{name}`"),
                )
            }
            ValidationErrorKind::Type { kind } => {
                let d = Diagnostic::error(
                    codes::WRONG_TYPE,
                    pointer,
                    format!("expected {}, found {found}", type_names(kind)),
                );
                if instance.is_number() && type_names(kind).contains("a string") {
                    d.help("YAML reads this as a number; put it in quotes to keep it as written")
                } else {
                    d
                }
            }
            ValidationErrorKind::Enum { options } => {
                let names: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(|o| o.to_string().replace('"', "`")).collect())
                    .unwrap_or_default();
                let help = instance.as_str().and_then(|s| {
                    let plain: Vec<String> = names.iter().map(|n| n.replace('`', "")).collect();
                    did_you_mean(s, plain.iter()).map(|m| format!("did you mean `{m}`?"))
                });
                Diagnostic::error(
                    codes::BAD_VALUE,
                    pointer,
                    format!("{found} is not one of {}", names.join(", ")),
                )
                .maybe_help(help)
            }
            ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. }
                if pointer == "/version" =>
            {
                Diagnostic::error(
                    codes::BAD_VERSION,
                    pointer,
                    format!("plan format version {found} is not supported"),
                )
                .help("this rplan reads `version: 1`")
            }
            ValidationErrorKind::Pattern { pattern } => pattern_error(pattern, instance, pointer),
            ValidationErrorKind::OneOfNotValid { .. }
            | ValidationErrorKind::AnyOf { .. }
            | ValidationErrorKind::OneOfMultipleValid { .. } => {
                self.one_of_error(instance, pointer, error)
            }
            ValidationErrorKind::MinItems { limit } => Diagnostic::error(
                codes::BAD_VALUE,
                pointer,
                format!(
                    "needs at least {limit} item{}",
                    if *limit == 1 { "" } else { "s" }
                ),
            ),
            ValidationErrorKind::MinLength { .. } => {
                Diagnostic::error(codes::BAD_VALUE, pointer, "must not be empty")
            }
            ValidationErrorKind::MaxLength { limit } => {
                let help = if pointer == "/name" {
                    Some("the name also names the journal file `apply` keeps (`NAME-HASH.jsonl`, at most 255 bytes): shorten it".to_string())
                } else if pointer.ends_with("/label") {
                    Some("labels hold at most 11 characters on FAT, 16 bytes on ext4, 32 characters on NTFS".to_string())
                } else {
                    None
                };
                Diagnostic::error(
                    codes::BAD_VALUE,
                    pointer,
                    format!("{found} is longer than {limit} characters"),
                )
                .maybe_help(help)
            }
            ValidationErrorKind::Format { format } if format == "uuid" => Diagnostic::error(
                codes::BAD_VALUE,
                pointer,
                format!("{found} is not a GUID"),
            )
            .help("write it as 8-4-4-4-12 hexadecimal digits, e.g. 6f1c2a8e-4b7d-4e3a-9c51-2d8e7f0a1b3c"),
            _ => Diagnostic::error(codes::SCHEMA_OTHER, pointer, error.to_string()),
        };
        vec![d]
    }
}

fn pattern_error(pattern: &str, instance: &Value, pointer: String) -> Diagnostic {
    let text = instance.as_str().unwrap_or_default();
    if pattern == DURATION_PATTERN {
        let e = Duration::parse(text).err();
        return Diagnostic::error(
            codes::BAD_SIZE,
            pointer,
            e.as_ref().map_or_else(
                || format!("`{text}` is not a duration"),
                |e| e.message.clone(),
            ),
        )
        .maybe_help(e.and_then(|e| e.help));
    }
    let (message, help) = match pattern {
        ID_PATTERN => (
            format!("`{text}` is not a valid id"),
            "ids use letters, digits, `.`, `_` and `-`, and start with a letter or digit",
        ),
        LANGUAGE_PATTERN => (
            format!("`{text}` is not an ISO 639-1 language code"),
            "use two lowercase letters, e.g. `en`, `de`, `ja`, `es`",
        ),
        p if p.contains("{64}") => (
            format!("`{text}` is not a sha256"),
            "a sha256 is 64 hexadecimal digits",
        ),
        p if p.contains("{1,8}") => (
            format!("`{text}` is not a 32-bit disk signature"),
            "write 1 to 8 hexadecimal digits after 0x, e.g. \"0x1a2b3c4d\"",
        ),
        "^/" => (
            format!("`{text}` is not an absolute path"),
            "paths inside a filesystem start with `/`, e.g. `/asr.sif`",
        ),
        _ => (format!("`{text}` does not match `{pattern}`"), ""),
    };
    let d = Diagnostic::error(codes::BAD_VALUE, pointer, message);
    if help.is_empty() {
        d
    } else {
        d.help(help)
    }
}

impl SchemaValidator {
    /// `oneOf`/`anyOf` failures: enums whose values are documented one by
    /// one, sizes (integer or unit string, or `rest`) and actions (exactly
    /// one of `manual`, `run`).
    fn one_of_error(
        &self,
        instance: &Value,
        pointer: String,
        error: &ValidationError,
    ) -> Diagnostic {
        // An enum with documented values is a oneOf of consts.
        let consts: Vec<String> = self
            .schema
            .pointer(error.schema_path().as_str())
            .and_then(Value::as_array)
            .map(|alts| {
                alts.iter()
                    .filter_map(|a| a.get("const").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if !consts.is_empty() {
            let listed: Vec<String> = consts.iter().map(|c| format!("`{c}`")).collect();
            let help = instance
                .as_str()
                .and_then(|s| did_you_mean(s, consts.iter()))
                .map(|m| format!("did you mean `{m}`?"));
            return Diagnostic::error(
                codes::BAD_VALUE,
                pointer,
                format!("{} is not one of {}", describe(instance), listed.join(", ")),
            )
            .maybe_help(help);
        }
        one_of_error(instance, pointer, error)
    }
}

fn one_of_error(instance: &Value, pointer: String, error: &ValidationError) -> Diagnostic {
    let path = error.evaluation_path().as_str().to_string();
    match instance {
        Value::String(s) => match Size::parse(s) {
            Err(e) => Diagnostic::error(codes::BAD_SIZE, pointer, e.message).maybe_help(e.help),
            Ok(_) => Diagnostic::error(
                codes::BAD_VALUE,
                pointer,
                format!("`{s}` is not allowed here"),
            ),
        },
        Value::Object(map)
            if path.contains("Action") || map.contains_key("manual") || map.contains_key("run") =>
        {
            Diagnostic::error(
                codes::BAD_VALUE,
                pointer,
                "an action has exactly one of `manual` or `run`",
            )
            .help("split it into two actions, one `manual` and one `run`")
        }
        Value::Number(_) => Diagnostic::error(
            codes::BAD_SIZE,
            pointer,
            format!("{} is not a size", describe(instance)),
        )
        .help("sizes are whole non-negative bytes, or a string like `40GiB`"),
        _ if path.contains("Size") => Diagnostic::error(
            codes::WRONG_TYPE,
            pointer,
            format!(
                "expected a size (integer bytes or a string like `40GiB`), found {}",
                describe(instance)
            ),
        ),
        _ => Diagnostic::error(codes::SCHEMA_OTHER, pointer, error.to_string()),
    }
}

fn type_names(kind: &TypeKind) -> String {
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "string" => "a string".to_string(),
        "integer" => "an integer".to_string(),
        "number" => "a number".to_string(),
        "boolean" => "true or false".to_string(),
        "null" => "nothing".to_string(),
        other => other.to_string(),
    };
    match kind {
        TypeKind::Single(t) => name(t),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| name(&t))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// How a value reads in a message: `` `text` ``, `42`, `a list`, …
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("`{}…`", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("`{s}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn collect_properties(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|v| collect_properties(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_properties(v, out)),
        _ => {}
    }
}

/// The closest candidate within a small edit distance, if any.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl Iterator<Item = &'a String>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// Levenshtein distance, counting `-`/`_` swaps as free (sector-size vs sector_size).
fn edit_distance(a: &str, b: &str) -> usize {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let (a, b): (Vec<char>, Vec<char>) = (norm(a).chars().collect(), norm(b).chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
