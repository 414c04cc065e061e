//! Every input kept under `tests/data/fuzz/TARGET/` (crashes the fuzzers
//! found, fixed since, and a few seeds) replayed through the fuzz targets'
//! own bodies (`fuzz/bodies.rs`): the very library calls the fuzzers make,
//! run on plain `cargo test`, so CI catches a regression without nightly
//! or cargo-fuzz. Plan and ruleset inputs also go through the binary.

#[path = "../fuzz/bodies.rs"]
mod bodies;
mod common;
use common::*;

/// A fuzz target's body.
type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 9] = [
    ("plan_check", bodies::plan_check),
    ("ruleset", bodies::ruleset),
    ("compiled_plan", bodies::compiled_plan),
    ("disk_tables", bodies::disk_tables),
    ("disk_inspect", bodies::disk_inspect),
    ("fs_usage", bodies::fs_usage),
    ("zstd_artifact", bodies::zstd_artifact),
    ("partclone_artifact", bodies::partclone_artifact),
    ("journal", bodies::journal),
];

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let dir = root().join("tests/data/fuzz").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_input_passes_its_fuzz_target() {
    for (target, body) in TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "no inputs kept for {target}");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{target}: {} panics", file.display());
        }
    }
}

#[test]
fn kept_plans_and_rulesets_never_crash_the_binary() {
    for file in inputs("plan_check") {
        let run = Rplan::new()
            .args(["check", "--no-artifacts", file.to_str().unwrap()])
            .run();
        assert!(
            matches!(run.code, 0 | 1),
            "{}: {}",
            file.display(),
            run.stderr
        );
    }
    for file in inputs("ruleset") {
        let run = Rplan::new()
            .args(["rules", "--rules", file.to_str().unwrap()])
            .run();
        assert!(
            matches!(run.code, 0..=2),
            "{}: {}",
            file.display(),
            run.stderr
        );
    }
}
