//! CI integrations: SARIF validated against the official SARIF 2.1.0 JSON
//! Schema (vendored under tests/data/), with end positions and related
//! locations; the pre-commit hooks run by `pre-commit try-repo`; the GitHub
//! Actions example's check step run as the runner would.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn sarif_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/data/sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&schema)
        .expect("the SARIF schema compiles")
}

fn assert_valid_sarif(v: &Value, what: &str) {
    let validator = sarif_validator();
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: not SARIF 2.1.0:\n{}",
        errors.join("\n")
    );
}

#[test]
fn sarif_of_the_whole_invalid_corpus_is_valid_sarif_2_1_0() {
    let dir = root().join("tests/data/invalid");
    let mut plans: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    plans.sort();
    assert!(plans.len() > 50, "{}", plans.len());
    let run = Rplan::new()
        .args(["check", "--format", "sarif"])
        .args(&plans)
        .in_dir(&dir)
        .run()
        .code(1);
    let sarif = run.json();
    assert_valid_sarif(&sarif, "rplan check --format sarif");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.len() >= plans.len());
    // Every located result has an end, after its start.
    for r in results {
        let region = &r["locations"][0]["physicalLocation"]["region"];
        if let Some(line) = region["startLine"].as_u64() {
            let start = (line, region["startColumn"].as_u64().unwrap());
            let end = (
                region["endLine"].as_u64().unwrap(),
                region["endColumn"].as_u64().unwrap(),
            );
            assert!(end > start, "{r}");
        }
    }
    // The validator is not a yes-man.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!sarif_validator().is_valid(&broken));
}

#[test]
fn sarif_points_at_the_see_also_places() {
    let dir = root().join("tests/data/invalid");
    let run = Rplan::new()
        .args(["check", "--format", "sarif", "duplicate-partition-id.yaml"])
        .in_dir(&dir)
        .run()
        .code(1);
    let sarif = run.json();
    assert_valid_sarif(&sarif, "duplicate-partition-id");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let dup = results
        .iter()
        .find(|r| r["relatedLocations"].is_array())
        .unwrap_or_else(|| panic!("no relatedLocations: {sarif}"));
    let text = std::fs::read_to_string(dir.join("duplicate-partition-id.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let region_text = |region: &Value| -> String {
        let (l, c0, c1) = (
            region["startLine"].as_u64().unwrap() as usize,
            region["startColumn"].as_u64().unwrap() as usize,
            region["endColumn"].as_u64().unwrap() as usize,
        );
        assert_eq!(region["startLine"], region["endLine"]);
        lines[l - 1].chars().skip(c0 - 1).take(c1 - c0).collect()
    };
    let here = region_text(&dup["locations"][0]["physicalLocation"]["region"]);
    let related = &dup["relatedLocations"][0];
    let there = region_text(&related["physicalLocation"]["region"]);
    // Both regions cover the same id, on different lines.
    assert_eq!(here, there, "{dup}");
    assert_ne!(
        dup["locations"][0]["physicalLocation"]["region"]["startLine"],
        related["physicalLocation"]["region"]["startLine"]
    );
    // The message links to it by id.
    let id = related["id"].as_u64().unwrap();
    let message = dup["message"]["text"].as_str().unwrap();
    assert!(message.contains(&format!("]({id})")), "{message}");
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory holding the rplan binary, first on PATH.
fn path_with_rplan() -> String {
    let bin_dir = Path::new(bin()).parent().unwrap().display().to_string();
    format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default())
}

fn hooks() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(root().join(".pre-commit-hooks.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn pre_commit_hooks_are_well_formed() {
    let hooks = hooks();
    assert_eq!(hooks.len(), 2);
    for h in &hooks {
        for field in ["id", "name", "entry", "language", "files"] {
            assert!(
                h[field].as_str().is_some_and(|s| !s.is_empty()),
                "{field} in {h:?}"
            );
        }
        assert!(h["entry"].as_str().unwrap().starts_with("rplan check"));
        assert!(["rust", "system"].contains(&h["language"].as_str().unwrap()));
    }
}

#[test]
fn pre_commit_runs_the_hook_on_plans() {
    if !have("pre-commit") || !have("git") {
        eprintln!("skipped: pre-commit or git is not installed (.ci/run installs them)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The hook repository: this repository's hook file, committed.
    let hook_repo = tmp.path().join("hooks");
    std::fs::create_dir(&hook_repo).unwrap();
    std::fs::copy(
        root().join(".pre-commit-hooks.yaml"),
        hook_repo.join(".pre-commit-hooks.yaml"),
    )
    .unwrap();
    git(&hook_repo, &["init", "-q"]);
    git(&hook_repo, &["add", "."]);
    git(&hook_repo, &["commit", "-qm", "hooks"]);
    // A user's repository with one good plan, one bad one, one other YAML.
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("plans")).unwrap();
    std::fs::copy(
        root().join("examples/workstation-mbr.yaml"),
        work.join("plans/good.yaml"),
    )
    .unwrap();
    std::fs::write(work.join("other.yaml"), "not: a plan\n").unwrap();
    git(&work, &["init", "-q"]);
    git(&work, &["add", "."]);
    let try_repo = |files: &[&str]| {
        Command::new("pre-commit")
            .args([
                "try-repo",
                hook_repo.to_str().unwrap(),
                "rplan-check-system",
                "--files",
            ])
            .args(files)
            .current_dir(&work)
            .env("PATH", path_with_rplan())
            .env("PRE_COMMIT_HOME", tmp.path().join("cache"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let ok = try_repo(&["plans/good.yaml", "other.yaml"]);
    let said = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(
        ok.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(said.contains("Passed"), "{said}");

    std::fs::copy(
        root().join("tests/data/invalid/asr-not-last.yaml"),
        work.join("plans/bad.yaml"),
    )
    .unwrap();
    git(&work, &["add", "."]);
    let bad = try_repo(&["plans/good.yaml", "plans/bad.yaml", "other.yaml"]);
    let said = String::from_utf8_lossy(&bad.stdout).into_owned();
    assert!(!bad.status.success(), "{said}");
    assert!(said.contains("Failed") && said.contains("RP04"), "{said}");
    assert!(
        said.contains("2 plans checked: 1 clean, 1 with errors"),
        "other.yaml was checked: {said}"
    );
}

#[test]
fn the_github_actions_example_produces_valid_sarif() {
    let text =
        std::fs::read_to_string(root().join("contrib/github-actions/rplan-check.yml")).unwrap();
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(wf["permissions"]["security-events"].as_str(), Some("write"));
    let steps = wf["jobs"]["check"]["steps"].as_sequence().unwrap();
    let check = steps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("rplan check") && r.contains("--format sarif"))
        })
        .expect("a step runs rplan check --format sarif");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif@"))
        })
        .expect("a step uploads the SARIF");
    assert_eq!(upload["if"].as_str(), Some("always()"));
    let sarif_file = upload["with"]["sarif_file"].as_str().unwrap();

    // Run the check step as the runner does (bash -e), in a repository
    // with a good and a bad plan, rplan on PATH.
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("plans")).unwrap();
    std::fs::copy(
        root().join("examples/gpt-workstation.yaml"),
        work.path().join("plans/a.yaml"),
    )
    .unwrap();
    std::fs::copy(
        root().join("tests/data/invalid/overlap.yaml"),
        work.path().join("plans/b.yaml"),
    )
    .unwrap();
    let output = work.path().join("github_output");
    let out = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-eo",
            "pipefail",
            "-c",
            check["run"].as_str().unwrap(),
        ])
        .current_dir(work.path())
        .env("PATH", path_with_rplan())
        .env("PLANS", wf["env"]["PLANS"].as_str().unwrap())
        .env("GITHUB_OUTPUT", &output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "status=1\n");
    let sarif: Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join(sarif_file)).unwrap())
            .unwrap();
    assert_valid_sarif(&sarif, sarif_file);
    let uris: Vec<&str> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str())
        .collect();
    assert!(
        !uris.is_empty() && uris.iter().all(|u| *u == "plans/b.yaml"),
        "{uris:?}"
    );
}
