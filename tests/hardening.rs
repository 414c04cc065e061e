//! Regression tests for the runtime defects an outside review found (issue
//! 10): resume, unanswered manual actions, command time limits, partial
//! recoveries, preflight, artifacts, terminal escapes, the journal file.
//! Each runs the real binary on sparse images and judges with outside
//! tools (sfdisk, cmp, sha256sum).

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Deterministic pseudo-random bytes (incompressible).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn apply_args(plan: &Path, targets: &[(&str, &Path)], journal: &Path) -> Vec<String> {
    let mut args = vec![
        "apply".to_string(),
        plan.display().to_string(),
        "--yes".into(),
        "--journal".into(),
        journal.display().to_string(),
    ];
    for (d, p) in targets {
        args.push("--target".into());
        args.push(format!("{d}={}", p.display()));
    }
    args
}

fn apply(plan: &Path, targets: &[(&str, &Path)], journal: &Path, extra: &[&str]) -> Run {
    Rplan::new()
        .args(apply_args(plan, targets, journal))
        .args(extra)
        .run()
}

/// The last line of `--format json` output: the result object.
fn result(run: &Run) -> serde_json::Value {
    let last = run.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

fn cmp(a: &Path, b: &Path) {
    let out = Command::new("cmp")
        .arg(a)
        .arg(b)
        .output()
        .expect("cmp");
    assert!(
        out.status.success(),
        "{} and {} differ: {}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A plan whose Safe Mode probe passes as soon as the disk in `$PROBE_IMG`
/// carries a partition table, and whose ASR restores a 48 MiB artifact.
fn restore_plan(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("big.img"), noise(48 * MIB as usize, 7)).unwrap();
    let p = dir.join("big.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: big\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: sys, path: big.img, format: raw, size: 48MiB, sha256: {} }} ] }}\n\
disks: [ {{ id: d0, critical: true, table: mbr, signature: \"0x0badcafe\", size: 96MiB, partitions: [ {{ id: sys, size: 64MiB, type: ntfs, content: {{ image: sys }} }} ] }} ]\n\
stages:\n\
\x20\x20- {{ id: sm, kind: safe-mode, success: {{ run: [sh, -c, 'sfdisk -d \"$PROBE_IMG\" >/dev/null 2>&1'] }} }}\n\
\x20\x20- {{ id: asr, kind: asr }}\n",
            sha(&dir.join("big.img"))
        ),
    )
    .unwrap();
    p
}

#[test]
fn resume_after_a_crash_mid_restore_finishes_the_asr_stage() {
    let dir = tempfile::tempdir().unwrap();
    let plan = restore_plan(dir.path());
    let reference = image(dir.path(), "ref.img", 96 * MIB);
    let run = Rplan::new()
        .args(apply_args(&plan, &[("d0", &reference)], &dir.path().join("jref")))
        .args(["--format", "json"])
        .env("PROBE_IMG", reference.to_str().unwrap())
        .run()
        .code(0);
    assert_eq!(result(&run)["stage"], "asr");

    let img = image(dir.path(), "k.img", 96 * MIB);
    let journal = dir.path().join("j");
    let mut child = Command::new(bin())
        .args(apply_args(&plan, &[("d0", &img)], &journal))
        .args(["--format", "json"])
        .env("PROBE_IMG", &img)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    for line in out.lines() {
        let line = line.unwrap();
        // The first progress event of the restore: the image is half-written.
        if line.contains("\"bytes\"") && line.contains("/restore") {
            child.kill().unwrap(); // SIGKILL
            break;
        }
    }
    let _ = child.wait();
    // Safe Mode's probe would pass now (the table is there); the resumed run
    // keeps its recorded failure and finishes ASR.
    let run = Rplan::new()
        .args(apply_args(&plan, &[("d0", &img)], &journal))
        .args(["--resume", "--format", "json"])
        .env("PROBE_IMG", img.to_str().unwrap())
        .run()
        .code(0);
    assert_eq!(result(&run)["stage"], "asr", "{}", run.stdout);
    cmp(&reference, &img);
}
