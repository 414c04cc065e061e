//! Conformance: every row of KB 818903's table × languages, through the real
//! binary. The expected table is transcribed here from the seed, separately
//! from the shipped ruleset, so a typo in either one fails.

mod common;
use common::*;

/// (backup, media, supported, "Japanese and Spanish not supported")
const SEED: [(&str, &str, bool, bool); 15] = [
    ("rtm", "rtm", true, true),
    ("rtm", "sp1-slipstream", false, false),
    ("rtm+sp1", "rtm", true, true),
    ("rtm+sp1", "sp1-slipstream", true, false),
    ("sp1-slipstream", "rtm", false, false),
    ("sp1-slipstream", "sp1-slipstream", true, false),
    ("sp1a-slipstream+sp2", "sp2-slipstream", true, false),
    ("sp1a-slipstream+sp2", "sp1-slipstream", true, false),
    ("sp1a-slipstream+sp2", "rtm", false, false),
    ("sp2-slipstream", "sp2-slipstream", true, false),
    ("sp2-slipstream", "sp1-slipstream", true, false),
    ("sp2-slipstream", "rtm", false, false),
    ("rtm+sp2", "sp2-slipstream", true, false),
    ("rtm+sp2", "sp1-slipstream", true, false),
    ("rtm+sp2", "rtm", true, true),
];

fn plan(backup: &str, media: &str, language: &str) -> String {
    format!(
        "version: 1\nname: conformance\nsystem:\n  os: windows-xp\n  build: {backup}\n  language: {language}\n  edition: professional\n  arch: x86\nmedia:\n  build: {media}\nstages:\n  - id: safe-mode\n    kind: safe-mode\n    actions: [ {{ run: [/bin/true] }} ]\n"
    )
}

fn check(dir: &std::path::Path, name: &str, text: &str, extra: &[&str]) -> Run {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    Rplan::new()
        .args(["check", "--format", "json"])
        .args(extra)
        .arg(path.to_str().unwrap())
        .run()
}

#[test]
fn every_seed_row_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    for (row, (backup, media, supported, except_ja_es)) in SEED.iter().enumerate() {
        for language in ["en", "de", "ja", "es", "fr"] {
            let run = check(dir.path(), "plan.yaml", &plan(backup, media, language), &[]);
            let got = codes_at(&run);
            let ctx = format!("row {} {backup} × {media} in {language}: {got:?}", row + 1);
            let ja_es = language == "ja" || language == "es";
            if !supported {
                assert_eq!(run.code, 1, "{ctx}");
                // media.build is on line 10, its value at column 10.
                assert_eq!(got, vec![("RP0201".to_string(), 10, 10)], "{ctx}");
                let msg = run.json()["diagnostics"][0]["message"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(
                    msg.contains(&format!("table row {}", row + 1)),
                    "{ctx}: {msg}"
                );
            } else if *except_ja_es && ja_es {
                assert_eq!(run.code, 1, "{ctx}");
                // system.language: line 6, column 13.
                assert_eq!(got, vec![("RP0202".to_string(), 6, 13)], "{ctx}");
            } else if ja_es {
                // The seed's closing note: a warning on the other supported rows.
                assert_eq!(run.code, 0, "{ctx}");
                assert_eq!(got, vec![("RP0205".to_string(), 6, 13)], "{ctx}");
                assert_eq!(run.json()["diagnostics"][0]["severity"], "warning", "{ctx}");
            } else {
                assert_eq!(run.code, 0, "{ctx}");
                assert!(got.is_empty(), "{ctx}");
            }
        }
    }
}

#[test]
fn strict_turns_the_language_note_into_an_error() {
    let dir = tempfile::tempdir().unwrap();
    check(
        dir.path(),
        "p.yaml",
        &plan("sp2-slipstream", "sp2-slipstream", "ja"),
        &["--strict"],
    )
    .code(1);
}

#[test]
fn help_names_the_media_that_would_work() {
    let dir = tempfile::tempdir().unwrap();
    let run = check(
        dir.path(),
        "p.yaml",
        &plan("sp2-slipstream", "rtm", "en"),
        &[],
    );
    let help = run.json()["diagnostics"][0]["help"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        help,
        "media builds supported for a `sp2-slipstream` backup: sp1-slipstream, sp2-slipstream"
    );
}

#[test]
fn a_pair_no_rule_covers_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // The seed has no row for an RTM+SP1 backup restored with SP2 media.
    let run = check(
        dir.path(),
        "p.yaml",
        &plan("rtm+sp1", "sp2-slipstream", "en"),
        &[],
    )
    .code(1);
    assert_eq!(codes_at(&run), vec![("RP0203".to_string(), 10, 10)]);
    assert!(run.json()["diagnostics"][0]["message"]
        .as_str()
        .unwrap()
        .starts_with("no rule covers"));
}

#[test]
fn unknown_builds_get_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let run = check(
        dir.path(),
        "p.yaml",
        &plan("sp2-slipstram", "sp2-slipstream", "en"),
        &[],
    )
    .code(1);
    assert_eq!(codes_at(&run), vec![("RP0204".to_string(), 5, 10)]);
    let help = run.json()["diagnostics"][0]["help"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(help.starts_with("did you mean `sp2-slipstream`?"), "{help}");
}

#[test]
fn a_ruleset_file_adds_and_overrides_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("site.yaml");
    std::fs::write(
        &rules,
        "name: site\nsource: our own restore tests, 2026\nrules:\n  - { backup: rtm+sp1, media: sp2-slipstream, verdict: supported }\n  - { backup: sp2-slipstream, media: sp1-slipstream, verdict: not-supported }\n",
    )
    .unwrap();
    let r = rules.to_str().unwrap();
    check(
        dir.path(),
        "a.yaml",
        &plan("rtm+sp1", "sp2-slipstream", "en"),
        &["--rules", r],
    )
    .code(0);
    let run = check(
        dir.path(),
        "b.yaml",
        &plan("sp2-slipstream", "sp1-slipstream", "en"),
        &["--rules", r],
    )
    .code(1);
    let msg = run.json()["diagnostics"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("rule site#2"), "{msg}");
}

#[test]
fn conflicting_rules_in_one_file_are_reported_at_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad.yaml");
    std::fs::write(
        &rules,
        "name: bad\nsource: test\nrules:\n  - { backup: rtm, media: rtm, verdict: supported }\n  - { backup: rtm, media: rtm, verdict: not-supported }\n",
    )
    .unwrap();
    let run = check(
        dir.path(),
        "a.yaml",
        &plan("rtm", "rtm", "en"),
        &["--rules", rules.to_str().unwrap()],
    )
    .code(1);
    let d = &run.json()["diagnostics"][0];
    assert_eq!(d["code"], "RP0207");
    assert_eq!(d["file"], rules.to_str().unwrap());
    assert_eq!(
        (d["line"].as_i64(), d["column"].as_i64()),
        (Some(5), Some(5))
    );
}

#[test]
fn rules_table_matches_snapshot() {
    let run = Rplan::new().arg("rules").run().code(0);
    snapshot("rules.txt", &run.stdout);
    let run = Rplan::new()
        .args(["rules", "--format", "json"])
        .run()
        .code(0);
    snapshot("rules.json", &run.stdout);
    assert_eq!(run.json()["rules"].as_array().map(Vec::len), Some(15));
}
