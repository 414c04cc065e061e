//! What editors see: every property of every schema under schemas/ has a
//! description (yaml-language-server shows it on hover), `$id`s are where
//! the files are published in the repository, `$ref`s resolve, and every
//! YAML file in the repository names its schema in a modeline that points
//! at the file.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn schemas() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(root().join("schemas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".schema.json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// JSON pointers of every property (in `properties` anywhere) that has no
/// `description`.
fn undescribed(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, p) in props {
                    let text = p.get("description").and_then(Value::as_str).unwrap_or("");
                    if text.trim().is_empty() {
                        out.push(format!("{at}/properties/{name}"));
                    }
                }
            }
            for (k, x) in map {
                undescribed(x, &format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                undescribed(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_schema_property_has_a_description() {
    let all = schemas();
    assert_eq!(
        all.len(),
        4,
        "{:?}",
        all.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    let mut missing = Vec::new();
    for (name, v) in &all {
        let mut here = Vec::new();
        undescribed(v, "", &mut here);
        missing.extend(here.into_iter().map(|p| format!("{name}#{p}")));
        assert!(
            v["title"].is_string() && v["description"].is_string(),
            "{name}: no title/description"
        );
    }
    assert!(
        missing.is_empty(),
        "properties without a description:\n{}",
        missing.join("\n")
    );
    // The walker finds what is missing.
    let mut found = Vec::new();
    undescribed(
        &serde_json::json!({"properties": {"a": {"description": "x"}, "b": {"$defs": {"properties": {"c": {}}}}}}),
        "",
        &mut found,
    );
    assert_eq!(found, ["/properties/b", "/properties/b/$defs/properties/c"]);
}

#[test]
fn the_plan_schema_offers_examples_for_hand_written_values() {
    let plan = schemas()
        .into_iter()
        .find(|s| s.0 == "plan.schema.json")
        .unwrap()
        .1;
    for pointer in [
        "/properties/name",
        "/$defs/System/properties/build",
        "/$defs/Disk/properties/size",
        "/$defs/Partition/properties/size",
        "/$defs/Stage/properties/timeout",
    ] {
        let ex = plan.pointer(&format!("{pointer}/examples"));
        assert!(
            ex.and_then(Value::as_array).is_some_and(|a| !a.is_empty()),
            "{pointer}: no examples"
        );
    }
}

/// `https://github.com/OWNER/REPO` → where GitHub serves its files on main.
fn published(file: &str) -> String {
    let repo = env!("CARGO_PKG_REPOSITORY").trim_end_matches('/');
    let path = repo
        .strip_prefix("https://github.com/")
        .expect("a GitHub repository");
    format!("https://raw.githubusercontent.com/{path}/main/schemas/{file}")
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|x| refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn ids_are_the_files_in_the_repository_and_refs_resolve() {
    for (name, v) in schemas() {
        assert_eq!(v["$id"], published(&name), "{name}");
        // The $id's path is this file's path in the repository.
        let id = v["$id"].as_str().unwrap();
        let rel = id.split("/main/").nth(1).unwrap();
        assert!(root().join(rel).is_file(), "{id} is not a file here");
        let mut all = Vec::new();
        refs(&v, &mut all);
        for r in all {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{name}: external $ref {r}"));
            assert!(
                v.pointer(pointer).is_some(),
                "{name}: $ref {r} resolves to nothing"
            );
        }
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_example_and_ruleset_names_its_schema() {
    let mut seen = 0;
    for (dir, schema) in [
        ("examples", "plan.schema.json"),
        ("compiler/rules", "rules.schema.json"),
    ] {
        let dir = root().join(dir);
        for file in yaml_files(&dir) {
            let text = std::fs::read_to_string(&file).unwrap();
            let first = text.lines().next().unwrap_or_default();
            let target = first
                .strip_prefix("# yaml-language-server: $schema=")
                .unwrap_or_else(|| panic!("{}: no modeline on line 1", file.display()));
            let resolved = file.parent().unwrap().join(target);
            assert!(
                resolved.is_file() && target.ends_with(schema),
                "{}: modeline points at {target}",
                file.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 5, "{seen}");
    // `rplan schema` prints exactly what the modelines point at.
    let printed = Rplan::new().args(["schema", "plan"]).run().code(0).stdout;
    assert_eq!(
        printed,
        std::fs::read_to_string(root().join("schemas/plan.schema.json")).unwrap()
    );
}

#[test]
fn init_names_the_plan_schema_by_its_id() {
    let text = Rplan::new().args(["init", "-"]).run().code(0).stdout;
    let url = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# yaml-language-server: $schema="))
        .expect("modeline");
    assert_eq!(url, published("plan.schema.json"));
}
