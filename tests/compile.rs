//! `rplan compile`, `graph` and `schema` on the shipped examples.

mod common;
use common::*;

const EXAMPLES: [&str; 3] = ["workstation-mbr", "gpt-workstation", "fileserver-dynamic"];

#[test]
fn committed_schemas_match_the_code() {
    for kind in ["plan", "rules", "compiled", "dry-run"] {
        let run = Rplan::new().args(["schema", kind]).run().code(0);
        let committed =
            std::fs::read_to_string(root().join(format!("schemas/{kind}.schema.json"))).unwrap();
        assert!(run.stdout == committed, "schemas/{kind}.schema.json drifted from the code: run `rplan schema {kind} > schemas/{kind}.schema.json`");
    }
}

#[test]
fn examples_compile_to_their_snapshots_byte_identically() {
    for name in EXAMPLES {
        let plan = format!("examples/{name}.yaml");
        let a = Rplan::new()
            .args(["compile", &plan, "-o", "-"])
            .in_dir(root())
            .run()
            .code(0);
        let b = Rplan::new()
            .args(["compile", &plan, "-o", "-"])
            .in_dir(root())
            .run()
            .code(0);
        assert_eq!(a.stdout, b.stdout, "{name}: two compilations differ");
        let portable = a
            .stdout
            .replace(&format!("{}/", root().display()), "$ROOT/");
        snapshot(&format!("{name}.compiled.json"), &portable);
        let c = a.json();
        assert_eq!(c["format_version"], 1);
        assert_eq!(c["plan_hash"].as_str().map(str::len), Some(64));
        // `order` is a topological order of every step.
        let order: Vec<&str> = c["order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let steps: Vec<&serde_json::Value> = c["stages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["steps"].as_array().unwrap())
            .collect();
        assert_eq!(order.len(), steps.len());
        for step in steps {
            let at = order.iter().position(|s| *s == step["id"]).unwrap();
            for dep in step["after"].as_array().unwrap() {
                let before = order.iter().position(|s| *s == dep).unwrap();
                assert!(before < at, "{name}: {dep} must come before {}", step["id"]);
            }
        }
    }
}

#[test]
fn compiled_output_validates_against_its_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/compiled.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for name in EXAMPLES {
        let run = Rplan::new()
            .args(["compile", &format!("examples/{name}.yaml"), "-o", "-"])
            .in_dir(root())
            .run()
            .code(0);
        let errors: Vec<String> = validator
            .iter_errors(&run.json())
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
}

#[test]
fn plan_hash_changes_with_the_plan_and_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("examples/workstation-mbr.yaml")).unwrap();
    let hash = |text: &str, extra: &[&str]| {
        let p = dir.path().join("p.yaml");
        std::fs::write(&p, text).unwrap();
        let run = Rplan::new()
            .args(["compile", "--no-artifacts", p.to_str().unwrap(), "-o", "-"])
            .args(extra)
            .run()
            .code(0);
        run.json()["plan_hash"].as_str().unwrap().to_string()
    };
    let base = hash(&text, &[]);
    assert_eq!(base, hash(&text, &[]));
    assert_ne!(
        base,
        hash(&text.replace("label: DATA", "label: DATA2"), &[])
    );
    let rules = dir.path().join("r.yaml");
    std::fs::write(&rules, "name: extra\nsource: test\nrules:\n  - { backup: rtm+sp1, media: sp2-slipstream, verdict: supported }\n").unwrap();
    assert_ne!(base, hash(&text, &["--rules", rules.to_str().unwrap()]));
}

#[test]
fn compile_refuses_a_plan_with_errors_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, "version: 1\nname: x\n").unwrap();
    let out = dir.path().join("out.json");
    Rplan::new()
        .args(["compile", p.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .run()
        .code(1);
    assert!(!out.exists());
}

#[test]
fn graph_dot_is_accepted_by_graphviz() {
    for name in EXAMPLES {
        let run = Rplan::new()
            .args(["graph", &format!("examples/{name}.yaml"), "--format", "dot"])
            .in_dir(root())
            .run()
            .code(0);
        let dir = tempfile::tempdir().unwrap();
        let dot = dir.path().join("g.dot");
        std::fs::write(&dot, &run.stdout).unwrap();
        let svg = tool("dot", &["-Tsvg", dot.to_str().unwrap()]);
        assert!(svg.contains("<svg"), "{name}");
        // Critical steps are marked.
        assert!(run.stdout.contains("(critical)"), "{name}");
    }
}

#[test]
fn graph_mermaid_groups_steps_by_stage() {
    let run = Rplan::new()
        .args([
            "graph",
            "examples/fileserver-dynamic.yaml",
            "--format",
            "mermaid",
        ])
        .in_dir(root())
        .run()
        .code(0);
    assert!(run.stdout.starts_with("flowchart TD\n"));
    assert_eq!(run.stdout.matches("  subgraph ").count(), 3);
    assert!(run.stdout.contains("volume/shares/assemble"));
    assert!(run.stdout.contains("-. on failure .->"));
}

#[test]
fn check_sarif_is_sarif_2_1_0() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(&p, "version: 1\nname: x\nsystem: { os: windows-xp, edition: home, arch: x86, build: rtm, language: en }\nmedia: { build: sp1-slipstream }\nstages: []\n").unwrap();
    let run = Rplan::new()
        .args(["check", "--format", "sarif", p.to_str().unwrap()])
        .run()
        .code(1);
    let s = run.json();
    assert_eq!(s["version"], "2.1.0");
    let results = s["runs"][0]["results"].as_array().unwrap();
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["RP0201", "RP0411"]);
    let region = &results[0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (region["startLine"].as_i64(), region["startColumn"].as_i64()),
        (Some(4), Some(17))
    );
    let rules = s["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2);
}

#[test]
fn check_io_error_is_exit_2() {
    let run = Rplan::new()
        .args(["check", "--format", "json", "/nonexistent/plan.yaml"])
        .run()
        .code(2);
    assert_eq!(run.json()["diagnostics"][0]["code"], "RP0100");
}
