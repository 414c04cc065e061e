//! Compatibility rules: which backup build may be restored with which media,
//! and what the platform (Windows XP, by edition and architecture) can boot
//! and see.
//!
//! A ruleset is data (YAML with its own JSON Schema). The defaults are the
//! table of KB 818903 and the XP platform facts, embedded in the binary;
//! `--rules FILE` layers more on top, a later file's rule replacing an
//! earlier one for the same (backup, media) pair and a later platform fact
//! one with the same id. A pair no rule covers is never a silent "yes".

use crate::diagnostic::{codes, Diagnostic};
use crate::load::{parse_yaml, Source};
use crate::schema::SchemaValidator;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

/// The default ruleset's file name and text.
pub const DEFAULT_NAME: &str = "builtin:xp-asr-kb818903.yaml";
pub const DEFAULT_TEXT: &str = include_str!("../rules/xp-asr-kb818903.yaml");
/// The default platform ruleset (what Windows XP can boot and see).
pub const PLATFORM_NAME: &str = "builtin:xp-platform.yaml";
pub const PLATFORM_TEXT: &str = include_str!("../rules/xp-platform.yaml");

/// One ruleset file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rplan compatibility ruleset", extend("$id" = "https://raw.githubusercontent.com/rplan/rplan/main/schemas/rules.schema.json"))]
pub struct RulesetFile {
    /// Short name, used to cite rules (`name#row`).
    #[schemars(pattern(crate::model::ID_PATTERN))]
    pub name: String,
    /// Where the rules come from.
    pub source: String,
    /// Build ids this file introduces or renames.
    #[serde(default)]
    pub builds: Vec<Build>,
    /// Notes that apply to every supported pair of the listed languages.
    #[serde(default)]
    pub notes: Vec<Note>,
    /// Rules: which backup build restores from which media.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Platform facts: what the restored system can boot and see.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platform: Vec<PlatformFact>,
}

/// What a platform fact checks; its parameters are the fact's other fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FactCheck {
    /// The disk holding the active (system) partition must not be GPT.
    GptBootDisk,
    /// No disk may be GPT.
    GptDisk,
    /// Disks have one of `sector_sizes` (logical bytes per sector).
    SectorSize,
    /// Dynamic volumes have one of `layouts` (none listed: no dynamic disks).
    DynamicVolumes,
    /// A FAT16 filesystem is at most `max_size`.
    Fat16Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FactSeverity {
    #[default]
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformFact {
    /// Short name, cited as `ruleset#id`; a later file's fact with the same
    /// id replaces this one.
    #[schemars(pattern(crate::model::ID_PATTERN))]
    pub id: String,
    /// What the fact checks.
    pub check: FactCheck,
    /// `error` or `warning` when a plan breaks it.
    #[serde(default)]
    pub severity: FactSeverity,
    /// Editions it applies to; none listed: every edition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub editions: Vec<crate::model::Edition>,
    /// Architectures it applies to; none listed: both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archs: Vec<crate::model::Arch>,
    /// `dynamic-volumes`: the layouts the platform has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layouts: Vec<crate::model::Layout>,
    /// `sector-size`: the logical sector sizes the platform can use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sector_sizes: Vec<u32>,
    /// `fat16-size`: the largest FAT16 filesystem, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// The fact as people read it (shown in diagnostics and `rplan rules`).
    pub text: String,
    /// Where it comes from: a KB article or Microsoft document.
    pub source: String,
}

impl PlatformFact {
    /// Whether the fact applies to this edition and architecture.
    pub fn applies(&self, edition: crate::model::Edition, arch: crate::model::Arch) -> bool {
        (self.editions.is_empty()
            || self
                .editions
                .iter()
                .any(|e| e.platform() == edition.platform()))
            && (self.archs.is_empty() || self.archs.contains(&arch))
    }
}

/// A platform fact with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcedFact {
    #[serde(flatten)]
    pub fact: PlatformFact,
    /// `ruleset#id`.
    pub cite: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Build {
    /// The build id plans use (`system.build`, `media.build`).
    #[schemars(length(min = 1))]
    #[schemars(example = &"sp2-slipstream")]
    pub id: String,
    /// How the source names this build on the computer at backup time.
    pub backup: String,
    /// How the source names it as restore media, if it exists as media.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The note as people read it.
    pub text: String,
    /// Languages (ISO 639-1) this note warns about.
    #[serde(default)]
    pub languages: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Supported,
    NotSupported,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Build id on the computer at backup time.
    pub backup: String,
    /// Build id of the restore media.
    pub media: String,
    /// `supported` or `unsupported`.
    pub verdict: Verdict,
    /// Languages this supported pair does not cover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except_languages: Vec<String>,
    /// The row of the source's table this rule transcribes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<u32>,
    /// The row as the source prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A rule together with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourcedRule {
    #[serde(flatten)]
    pub rule: Rule,
    /// `ruleset#row` (or `ruleset#index` when the rule has no row).
    pub cite: String,
    pub ruleset: String,
    pub file: String,
}

/// The effective rules: every file layered in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleSet {
    pub files: Vec<RulesetFile>,
    pub builds: Vec<Build>,
    pub notes: Vec<Note>,
    pub rules: BTreeMap<(String, String), SourcedRule>,
    /// Platform facts in the order first declared; a later file's fact
    /// replaces the one with the same id in place.
    pub platform: Vec<SourcedFact>,
}

pub fn rules_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(RulesetFile)).unwrap_or_default();
    crate::schema::drop_null_alternatives(&mut schema);
    schema
}

fn validator() -> &'static SchemaValidator {
    static V: OnceLock<SchemaValidator> = OnceLock::new();
    V.get_or_init(|| SchemaValidator::new(&rules_schema()))
}

/// Parse and check one ruleset file. Problems carry `source.name` as file.
pub fn parse_file(source: &Source) -> Result<RulesetFile, Vec<Diagnostic>> {
    let tag = |ds: Vec<Diagnostic>| -> Vec<Diagnostic> {
        ds.into_iter()
            .map(|d| d.in_file(source.name.clone()))
            .collect()
    };
    let value = parse_yaml(source).map_err(|e| tag(vec![e.diagnostic()]))?;
    let problems = validator().validate(&value);
    if !problems.is_empty() {
        return Err(tag(problems));
    }
    let file: RulesetFile = serde_json::from_value(value).map_err(|e| {
        tag(vec![Diagnostic::error(
            codes::RULESET_INVALID,
            "",
            e.to_string(),
        )])
    })?;
    let mut problems = Vec::new();
    let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, fact) in file.platform.iter().enumerate() {
        if let Some(first) = ids.insert(&fact.id, i) {
            problems.push(
                Diagnostic::error(
                    codes::RULESET_CONFLICT,
                    format!("/platform/{i}/id"),
                    format!("platform fact `{}` is declared twice in this file", fact.id),
                )
                .related(format!("/platform/{first}/id"), "first declared here")
                .help("keep one fact per id"),
            );
        }
    }
    let mut seen: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (i, rule) in file.rules.iter().enumerate() {
        if let Some(first) = seen.insert((&rule.backup, &rule.media), i) {
            let other = &file.rules[first];
            let (code, what) = if other.verdict == rule.verdict
                && other.except_languages == rule.except_languages
            {
                (codes::RULESET_CONFLICT, "repeats")
            } else {
                (codes::RULESET_CONFLICT, "contradicts")
            };
            problems.push(
                Diagnostic::error(
                    code,
                    format!("/rules/{i}"),
                    format!(
                        "rule for backup `{}` with media `{}` {what} rule {} of this file",
                        rule.backup,
                        rule.media,
                        first + 1
                    ),
                )
                .related(format!("/rules/{first}"), "first rule for this pair")
                .help("keep one rule per (backup, media) pair"),
            );
        }
    }
    if problems.is_empty() {
        Ok(file)
    } else {
        Err(tag(problems))
    }
}

impl RuleSet {
    /// The built-in KB 818903 ruleset.
    pub fn builtin() -> &'static RuleSet {
        static DEFAULT: OnceLock<RuleSet> = OnceLock::new();
        DEFAULT.get_or_init(|| {
            let mut set = RuleSet::default();
            for (name, text) in [(DEFAULT_NAME, DEFAULT_TEXT), (PLATFORM_NAME, PLATFORM_TEXT)] {
                match parse_file(&Source::new(name, text)) {
                    Ok(file) => set.add(file, name),
                    // A test proves the embedded files are valid.
                    Err(e) => panic!("built-in ruleset {name} is invalid: {e:?}"),
                }
            }
            set
        })
    }

    /// The built-in ruleset with `files` layered on top, or every problem
    /// found in them (with their sources, to render them).
    pub fn load(files: &[&Path]) -> Result<RuleSet, (Vec<Diagnostic>, Vec<Source>)> {
        let mut set = RuleSet::builtin().clone();
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for path in files {
            match Source::read(path) {
                Err(d) => problems.push(d.in_file(path.display().to_string())),
                Ok(source) => {
                    match parse_file(&source) {
                        Ok(file) => set.add(file, &source.name),
                        Err(ds) => problems.extend(ds),
                    }
                    sources.push(source);
                }
            }
        }
        if problems.is_empty() {
            Ok(set)
        } else {
            Err((problems, sources))
        }
    }

    /// Layer `file` on top: its builds and rules replace same-keyed ones.
    pub fn add(&mut self, file: RulesetFile, file_name: &str) {
        for b in &file.builds {
            match self.builds.iter_mut().find(|x| x.id == b.id) {
                Some(x) => *x = b.clone(),
                None => self.builds.push(b.clone()),
            }
        }
        self.notes.extend(file.notes.iter().cloned());
        for (i, rule) in file.rules.iter().enumerate() {
            let cite = format!("{}#{}", file.name, rule.row.unwrap_or(i as u32 + 1));
            for id in [&rule.backup, &rule.media] {
                if !self.builds.iter().any(|b| &b.id == id) {
                    // An undeclared build still works; it just has no long name.
                    self.builds.push(Build {
                        id: id.clone(),
                        backup: id.clone(),
                        media: Some(id.clone()),
                    });
                }
            }
            self.rules.insert(
                (rule.backup.clone(), rule.media.clone()),
                SourcedRule {
                    rule: rule.clone(),
                    cite,
                    ruleset: file.name.clone(),
                    file: file_name.to_string(),
                },
            );
        }
        for fact in &file.platform {
            let sourced = SourcedFact {
                fact: fact.clone(),
                cite: format!("{}#{}", file.name, fact.id),
                file: file_name.to_string(),
            };
            match self.platform.iter_mut().find(|f| f.fact.id == fact.id) {
                Some(f) => *f = sourced,
                None => self.platform.push(sourced),
            }
        }
        self.files.push(file);
    }

    pub fn rule(&self, backup: &str, media: &str) -> Option<&SourcedRule> {
        self.rules.get(&(backup.to_string(), media.to_string()))
    }

    pub fn build(&self, id: &str) -> Option<&Build> {
        self.builds.iter().find(|b| b.id == id)
    }

    /// Builds that occur as backup builds, in declaration order.
    pub fn backup_builds(&self) -> Vec<&Build> {
        self.builds
            .iter()
            .filter(|b| self.rules.keys().any(|(k, _)| *k == b.id))
            .collect()
    }

    /// Builds that occur as restore media, in declaration order.
    pub fn media_builds(&self) -> Vec<&Build> {
        self.builds
            .iter()
            .filter(|b| self.rules.keys().any(|(_, m)| *m == b.id))
            .collect()
    }

    /// Whether `language` is supported by `rule` (verdict and exceptions).
    pub fn supports(rule: &Rule, language: &str) -> bool {
        rule.verdict == Verdict::Supported && !rule.except_languages.iter().any(|l| l == language)
    }

    /// Media builds that would be supported for `backup` in `language`.
    pub fn supported_media(&self, backup: &str, language: &str) -> Vec<&str> {
        self.media_builds()
            .into_iter()
            .filter(|m| {
                self.rule(backup, &m.id)
                    .is_some_and(|r| Self::supports(&r.rule, language))
            })
            .map(|m| m.id.as_str())
            .collect()
    }

    /// The canonical JSON of the effective rules, for `plan_hash`.
    pub fn canonical(&self) -> serde_json::Value {
        let rules: Vec<&SourcedRule> = self.rules.values().collect();
        serde_json::json!({ "notes": self.notes, "rules": rules, "platform": self.platform })
    }

    /// The matrix as a table for people: backup builds × media builds.
    pub fn render_table(&self) -> String {
        let media = self.media_builds();
        let backups = self.backup_builds();
        let mut footnotes: Vec<Vec<String>> = Vec::new();
        let mut rows: Vec<Vec<String>> = Vec::new();
        for b in &backups {
            let mut row = vec![b.id.clone()];
            for m in &media {
                row.push(match self.rule(&b.id, &m.id) {
                    None => "·".into(),
                    Some(r) if r.rule.verdict == Verdict::NotSupported => "✘".into(),
                    Some(r) if r.rule.except_languages.is_empty() => "✔".into(),
                    Some(r) => {
                        let n = match footnotes.iter().position(|f| *f == r.rule.except_languages) {
                            Some(n) => n,
                            None => {
                                footnotes.push(r.rule.except_languages.clone());
                                footnotes.len() - 1
                            }
                        };
                        format!("✔{}", superscript(n + 1))
                    }
                });
            }
            rows.push(row);
        }
        let mut header = vec!["backup \\ media".to_string()];
        header.extend(media.iter().map(|m| m.id.clone()));
        let widths: Vec<usize> = (0..header.len())
            .map(|c| {
                std::iter::once(&header)
                    .chain(rows.iter())
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 0 {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str("  ");
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(&header);
        for r in &rows {
            out.push_str(&line(r));
        }
        out.push_str("\n✔ supported   ✘ not supported   · no rule (refused)\n");
        for (i, langs) in footnotes.iter().enumerate() {
            out.push_str(&format!(
                "{} except languages: {}\n",
                superscript(i + 1),
                langs.join(", ")
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {}", note.text));
            if !note.languages.is_empty() {
                out.push_str(&format!(" (warns for: {})", note.languages.join(", ")));
            }
            out.push('\n');
        }
        let names: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("{} — {}", f.name, f.source))
            .collect();
        if !self.platform.is_empty() {
            out.push_str("\nplatform: what the restored Windows XP can boot and see\n");
            for f in &self.platform {
                let mut scope = Vec::new();
                if !f.fact.editions.is_empty() {
                    let e: Vec<&str> = f.fact.editions.iter().map(|e| e.name()).collect();
                    scope.push(e.join("/"));
                }
                if !f.fact.archs.is_empty() {
                    let a: Vec<&str> = f.fact.archs.iter().map(|a| a.name()).collect();
                    scope.push(a.join("/"));
                }
                let scope = if scope.is_empty() {
                    "every edition".to_string()
                } else {
                    scope.join(", ")
                };
                let severity = match f.fact.severity {
                    FactSeverity::Error => "error",
                    FactSeverity::Warning => "warning",
                };
                out.push_str(&format!(
                    "{} ({severity}; {scope}): {}\n    source: {}\n",
                    f.cite, f.fact.text, f.fact.source
                ));
            }
        }
        out.push_str(&format!("rules: {}\n", names.join("; ")));
        out
    }

    /// The matrix as JSON for tools.
    pub fn to_json(&self) -> serde_json::Value {
        let rules: Vec<&SourcedRule> = self.rules.values().collect();
        serde_json::json!({
            "rulesets": self.files.iter().map(|f| serde_json::json!({"name": f.name, "source": f.source})).collect::<Vec<_>>(),
            "builds": self.builds,
            "backup_builds": self.backup_builds().iter().map(|b| &b.id).collect::<Vec<_>>(),
            "media_builds": self.media_builds().iter().map(|b| &b.id).collect::<Vec<_>>(),
            "notes": self.notes,
            "rules": rules,
            "platform": self.platform,
        })
    }
}

fn superscript(n: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    n.to_string()
        .chars()
        .map(|c| DIGITS[c.to_digit(10).unwrap_or(0) as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_the_fifteen_seed_rows() {
        let set = RuleSet::builtin();
        assert_eq!(set.rules.len(), 15);
        let rows: Vec<u32> = set.rules.values().filter_map(|r| r.rule.row).collect();
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=15).collect::<Vec<_>>());
    }
}
