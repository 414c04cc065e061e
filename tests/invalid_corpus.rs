//! The invalid-plan corpus: tests/data/invalid/*.yaml are realistic plans with
//! exactly one defect each, named for it. Their first line says what `rplan
//! check` must report:
//!
//! ```text
//! # expect: RP0302 at 41:16
//! # expect: RP0106 at 60:14 mentions: "duration"
//! # expect: RP0406 at 66:17 args: --unattended
//! ```
//!
//! The check exits 1; a diagnostic with exactly that code, line and column
//! is present (and, with `mentions`, says that text in its message or
//! help); and every error reported is in the same category as the expected
//! code (`RP03…`): one defect must not set off unrelated errors.
//!
//! Files named `bug-*.yaml` state what a user would expect where rplan
//! currently disagrees (suspected bugs). They are checked by their own test,
//! which lists every disagreement, and also fails once a bug is fixed so the
//! prefix gets dropped.
//!
//! Artifacts the plans name live under tests/data/invalid/backups/.
//! The valid examples/ must check with no diagnostics at all.

mod common;
use common::*;

use std::path::{Path, PathBuf};

#[derive(Debug)]
struct Case {
    path: PathBuf,
    name: String,
    code: String,
    line: i64,
    column: i64,
    mentions: Option<String>,
    args: Vec<String>,
}

impl Case {
    fn is_bug(&self) -> bool {
        self.name.starts_with("bug-")
    }
}

fn parse_header(path: &Path) -> Result<Case, String> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let first = text.lines().next().unwrap_or_default();
    let bad = || {
        format!("{name}: first line must be `# expect: RPxxyy at LINE:COL [mentions: \"…\"] [args: …]`, not {first:?}")
    };
    let rest = first.strip_prefix("# expect: ").ok_or_else(bad)?;
    let (rest, args) = match rest.split_once(" args: ") {
        Some((r, a)) => (r, a.split_whitespace().map(str::to_string).collect()),
        None => (rest, Vec::new()),
    };
    let (rest, mentions) = match rest.split_once(" mentions: ") {
        Some((r, m)) => (
            r,
            Some(
                m.strip_prefix('"')
                    .and_then(|m| m.strip_suffix('"'))
                    .ok_or_else(bad)?
                    .to_string(),
            ),
        ),
        None => (rest, None),
    };
    let (code, at) = rest.split_once(" at ").ok_or_else(bad)?;
    let (line, column) = at.split_once(':').ok_or_else(bad)?;
    let valid_code =
        code.len() == 6 && code.starts_with("RP") && code[2..].bytes().all(|b| b.is_ascii_digit());
    if !valid_code {
        return Err(bad());
    }
    let line = line.trim().parse().map_err(|_| bad())?;
    let column = column.trim().parse().map_err(|_| bad())?;
    Ok(Case {
        path: path.to_path_buf(),
        name,
        code: code.to_string(),
        line,
        column,
        mentions,
        args,
    })
}

fn corpus() -> Vec<Case> {
    let dir = root().join("tests/data/invalid");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let (cases, errors): (Vec<_>, Vec<_>) = paths
        .iter()
        .map(|p| parse_header(p))
        .partition(Result::is_ok);
    let errors: Vec<String> = errors.into_iter().map(Result::unwrap_err).collect();
    assert!(
        errors.is_empty(),
        "malformed corpus headers:\n{}",
        errors.join("\n")
    );
    cases.into_iter().map(Result::unwrap).collect()
}

/// What is wrong with rplan's answer for `case`, if anything.
fn mismatch(case: &Case) -> Option<String> {
    let path = case.path.to_string_lossy().into_owned();
    // The corpus tests its plans' one defect, not the XP platform rules
    // (see the file).
    let platform = root().join("tests/data/no-platform.yaml");
    let run = Rplan::new()
        .args(["check", path.as_str(), "--format", "json"])
        .arg("--rules")
        .arg(platform.to_string_lossy())
        .args(&case.args)
        .run();
    let mut problems = Vec::new();
    if run.code != 1 {
        problems.push(format!("exit code {} (want 1)", run.code));
    }
    if run.stderr.contains("panicked") {
        problems.push("panicked".to_string());
    }
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&run.stdout) else {
        problems.push(format!(
            "stdout is not JSON:\n{}\n{}",
            run.stdout, run.stderr
        ));
        return Some(problems.join("; "));
    };
    let diags = json["diagnostics"].as_array().cloned().unwrap_or_default();
    let text = |d: &serde_json::Value| {
        format!(
            "{} {}",
            d["message"].as_str().unwrap_or_default(),
            d["help"].as_str().unwrap_or_default()
        )
        .to_lowercase()
    };
    let at = codes_at(&run);
    let hit = at.iter().zip(&diags).any(|((code, line, column), d)| {
        *code == case.code
            && *line == case.line
            && *column == case.column
            && case
                .mentions
                .as_ref()
                .is_none_or(|m| text(d).contains(&m.to_lowercase()))
    });
    if !hit {
        problems.push(format!(
            "no {} at {}:{}{}",
            case.code,
            case.line,
            case.column,
            case.mentions
                .as_ref()
                .map(|m| format!(" mentioning {m:?}"))
                .unwrap_or_default()
        ));
    }
    let category = &case.code[..4];
    for d in &diags {
        let code = d["code"].as_str().unwrap_or_default();
        if d["severity"] == "error" && !code.starts_with(category) {
            problems.push(format!("unrelated error {code} (not {category}xx)"));
        }
    }
    if problems.is_empty() {
        return None;
    }
    let mut report = format!(
        "{}: {}\n    want {} at {}:{}",
        case.name,
        problems.join("; "),
        case.code,
        case.line,
        case.column
    );
    if let Some(m) = &case.mentions {
        report.push_str(&format!(" mentioning {m:?}"));
    }
    if !case.args.is_empty() {
        report.push_str(&format!(" (args: {})", case.args.join(" ")));
    }
    if diags.is_empty() {
        report.push_str("\n    got no diagnostics");
    }
    for d in &diags {
        report.push_str(&format!(
            "\n    got {} {} at {}:{} {} — {}{}",
            d["severity"].as_str().unwrap_or_default(),
            d["code"].as_str().unwrap_or_default(),
            d["line"],
            d["column"],
            d["pointer"].as_str().unwrap_or_default(),
            d["message"].as_str().unwrap_or_default(),
            d["help"]
                .as_str()
                .map(|h| format!(" (help: {h})"))
                .unwrap_or_default(),
        ));
    }
    Some(report)
}

#[test]
fn corpus_is_large_and_covers_every_category() {
    let cases = corpus();
    assert!(
        cases.len() >= 40,
        "only {} plans in tests/data/invalid",
        cases.len()
    );
    for category in ["RP01", "RP02", "RP03", "RP04", "RP05", "RP06"] {
        let n = cases
            .iter()
            .filter(|c| !c.is_bug() && c.code.starts_with(category))
            .count();
        assert!(n > 0, "no passing corpus plan for category {category}xx");
    }
}

#[test]
fn invalid_plans_report_their_one_defect() {
    let cases = corpus();
    let failures: Vec<String> = cases
        .iter()
        .filter(|c| !c.is_bug())
        .filter_map(mismatch)
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} corpus plans are not reported as expected:\n\n{}",
        failures.len(),
        cases.iter().filter(|c| !c.is_bug()).count(),
        failures.join("\n\n")
    );
}

/// `bug-*.yaml`: what a user would expect where rplan disagrees today.
/// Fails listing every disagreement; fails too when one is fixed, so that
/// its `bug-` prefix is dropped.
#[test]
fn suspected_bugs() {
    let cases = corpus();
    let bugs: Vec<&Case> = cases.iter().filter(|c| c.is_bug()).collect();
    let mut report = Vec::new();
    let mut fixed = Vec::new();
    for case in &bugs {
        match mismatch(case) {
            Some(m) => report.push(m),
            None => fixed.push(case.name.clone()),
        }
    }
    let mut message = String::new();
    if !fixed.is_empty() {
        message.push_str(&format!(
            "these suspected bugs are fixed: drop the `bug-` prefix from {}\n\n",
            fixed.join(", ")
        ));
    }
    if !report.is_empty() {
        message.push_str(&format!(
            "{} suspected bug(s): tests/data/invalid/bug-*.yaml expect what a user would, rplan disagrees:\n\n{}",
            report.len(),
            report.join("\n\n")
        ));
    }
    assert!(message.is_empty(), "{message}");
}

#[test]
fn examples_are_clean() {
    let dir = root().join("examples");
    let mut plans: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    plans.sort();
    assert!(!plans.is_empty(), "no examples/*.yaml");
    for plan in plans {
        let run = Rplan::new()
            .args(["check", &plan.to_string_lossy(), "--format", "json"])
            .run()
            .code(0);
        let json = run.json();
        assert_eq!(
            (
                json["errors"].as_u64(),
                json["warnings"].as_u64(),
                json["diagnostics"].as_array().map(Vec::len)
            ),
            (Some(0), Some(0), Some(0)),
            "{}: {}",
            plan.display(),
            run.stdout
        );
    }
}
