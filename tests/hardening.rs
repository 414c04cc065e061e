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
    let out = Command::new("cmp").arg(a).arg(b).output().expect("cmp");
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
            "version: 1\nname: big\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: sys, path: big.img, format: raw, size: 48MiB, sha256: {} }} ] }}\n\
disks: [ {{ id: d0, critical: true, table: mbr, signature: \"0x0badcafe\", size: 96MiB, partitions: [ {{ id: sys, size: 64MiB, type: ntfs, bootable: true, content: {{ image: sys }} }} ] }} ]\n\
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
        .args(apply_args(
            &plan,
            &[("d0", &reference)],
            &dir.path().join("jref"),
        ))
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

#[test]
fn resume_after_a_crash_inside_an_mbr_table_write_needs_no_force() {
    let dir = tempfile::tempdir().unwrap();
    let reference = image(dir.path(), "ref.img", 1 << 30);
    let plan = example(dir.path(), "workstation-mbr", &reference);
    apply(
        &plan,
        &[("disk0", &reference)],
        &dir.path().join("jref"),
        &["--skip-manual"],
    )
    .code(0);
    let want = sha(&reference);
    // Every write of the table step (MBR, then the EBR chain) as a kill point.
    let mut torn = 0;
    for n in 1..=8 {
        let img = image(dir.path(), &format!("t{n}.img"), 1 << 30);
        let plan = example(dir.path(), "workstation-mbr", &img);
        let journal = dir.path().join(format!("j{n}"));
        let crashed = Rplan::new()
            .args(apply_args(&plan, &[("disk0", &img)], &journal))
            .arg("--skip-manual")
            .env("RPLAN_CRASH_AT", &format!("asr/disk0/table:{n}"))
            .run();
        if crashed.code == 0 {
            break; // past the step's last write
        }
        torn += 1;
        let run = apply(
            &plan,
            &[("disk0", &img)],
            &journal,
            &["--resume", "--skip-manual"],
        );
        assert_eq!(run.code, 0, "killed at write {n}: {}", run.stderr);
        assert_eq!(
            sha(&img),
            want,
            "killed at write {n}: resumed image differs"
        );
        let t = tool("sfdisk", &["-d", img.to_str().unwrap()]);
        assert!(t.contains("label-id: 0x1a2b3c4d"), "{t}");
    }
    assert!(torn >= 3, "the table step wrote only {torn} times");
}

/// Crash the restore of [`restore_plan`] at its third write.
fn crashed_restore(dir: &Path, plan: &Path, img: &Path, journal: &Path) {
    let run = Rplan::new()
        .args(apply_args(plan, &[("d0", img)], journal))
        .env("RPLAN_CRASH_AT", "asr/d0/sys/restore:3")
        .env("PROBE_IMG", img.to_str().unwrap())
        .run();
    assert_ne!(run.code, 0, "the crash did not happen: {}", run.stderr);
    let _ = dir;
}

fn journal_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[test]
fn resume_with_nothing_to_resume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = restore_plan(dir.path());
    let img = image(dir.path(), "d.img", 96 * MIB);
    let blank = sha(&img);
    // No journal at all.
    let run = apply(
        &plan,
        &[("d0", &img)],
        &dir.path().join("none"),
        &["--resume"],
    )
    .code(4);
    assert!(
        run.stderr.contains("RP0710") && run.stderr.contains("nothing to resume"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&img), blank);
    // A journal of another version of the plan (same name, other hash).
    let journal = dir.path().join("j");
    crashed_restore(dir.path(), &plan, &img, &journal);
    let torn = sha(&img);
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(&plan, text.replace("size: 96MiB", "size: 95MiB")).unwrap();
    let run = apply(&plan, &[("d0", &img)], &journal, &["--resume"]).code(4);
    assert!(
        run.stderr.contains("another version of this plan"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&img), torn);
    // A finished run.
    std::fs::write(&plan, text).unwrap();
    let done = tempfile::tempdir().unwrap();
    let fresh = image(done.path(), "f.img", 96 * MIB);
    Rplan::new()
        .args(apply_args(&plan, &[("d0", &fresh)], &done.path().join("j")))
        .env("PROBE_IMG", fresh.to_str().unwrap())
        .run()
        .code(0);
    let run = apply(
        &plan,
        &[("d0", &fresh)],
        &done.path().join("j"),
        &["--resume"],
    )
    .code(4);
    assert!(run.stderr.contains("nothing to resume"), "{}", run.stderr);
}

#[test]
fn a_torn_last_journal_record_is_cut_off_and_a_damaged_one_reported() {
    let dir = tempfile::tempdir().unwrap();
    let plan = restore_plan(dir.path());
    let reference = image(dir.path(), "ref.img", 96 * MIB);
    Rplan::new()
        .args(apply_args(
            &plan,
            &[("d0", &reference)],
            &dir.path().join("jref"),
        ))
        .env("PROBE_IMG", reference.to_str().unwrap())
        .run()
        .code(0);
    let img = image(dir.path(), "d.img", 96 * MIB);
    let journal = dir.path().join("j");
    crashed_restore(dir.path(), &plan, &img, &journal);
    let file = journal_file(&journal);
    let intact = std::fs::read_to_string(&file).unwrap();

    // A damaged record in the middle: reported, nothing written.
    let lines: Vec<&str> = intact.lines().collect();
    let mut damaged = lines.clone();
    damaged.insert(1, "{\"event\":\"step-do");
    std::fs::write(&file, damaged.join("\n") + "\n").unwrap();
    let before = sha(&img);
    let run = apply(&plan, &[("d0", &img)], &journal, &["--resume"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("damaged"), "{}", run.stderr);
    assert_eq!(sha(&img), before);

    // A torn last record (a crash mid-write): cut off, the run resumes.
    std::fs::write(&file, format!("{intact}{{\"event\":\"step-st")).unwrap();
    Rplan::new()
        .args(apply_args(&plan, &[("d0", &img)], &journal))
        .arg("--resume")
        .env("PROBE_IMG", img.to_str().unwrap())
        .run()
        .code(0);
    cmp(&reference, &img);
    // Every line of the journal is a whole record again.
    for line in std::fs::read_to_string(&file).unwrap().lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("journal line {line:?}: {e}"));
    }
}

#[test]
fn manual_actions_with_nobody_to_answer_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 1 << 30);
    let plan = example(dir.path(), "workstation-mbr", &img);
    let blank = sha(&img);
    // No terminal (stdin is /dev/null), --yes, manual actions: refused.
    let run = apply(&plan, &[("disk0", &img)], &dir.path().join("j"), &[]).code(4);
    assert!(
        run.stderr.contains("RP0406") && run.stderr.contains("--skip-manual"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("stage safe-mode"), "{}", run.stderr);
    assert_eq!(sha(&img), blank);
    // The operator says manual actions count as failed: ASR runs.
    let run = apply(
        &plan,
        &[("disk0", &img)],
        &dir.path().join("j"),
        &["--skip-manual", "--format", "json"],
    )
    .code(0);
    assert_eq!(result(&run)["stage"], "asr");
    // The help says so.
    let help = Rplan::new().args(["apply", "--help"]).run().code(0);
    assert!(help.stdout.contains("--skip-manual"), "{}", help.stdout);
}

fn no_disk_plan(dir: &Path, name: &str, stages: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: {name}\nsystem: {{ os: windows-xp, build: rtm+sp2, language: en, edition: professional, arch: x86 }}\nmedia: {{ build: sp2-slipstream }}\nstages:\n{stages}"
        ),
    )
    .unwrap();
    p
}

#[test]
fn time_limits_hold_when_a_descendant_keeps_the_output_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = no_disk_plan(
        dir.path(),
        "pipes",
        "\x20\x20- { id: sm, kind: safe-mode, actions: [ { run: [sh, -c, 'setsid sleep 30 & sleep 60'], timeout: 2s } ] }\n\
\x20\x20- { id: lkg, kind: last-known-good, actions: [ { run: [sh, -c, 'sleep 20 & exit 0'] } ], success: { run: [sh, -c, 'sleep 25 & exit 0'], timeout: 3s } }\n",
    );
    let started = Instant::now();
    let run = Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--format",
            "json",
            "--journal",
            dir.path().join("j").to_str().unwrap(),
        ])
        .run()
        .code(0);
    // Generous: the limits are 2 s and 3 s, the descendants live 20-30 s.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(result(&run)["stage"], "lkg", "{}", run.stdout);
    assert!(
        run.stdout.contains("did not finish within 2s"),
        "{}",
        run.stdout
    );
}

#[test]
fn huge_durations_in_a_compiled_plan_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = no_disk_plan(
        dir.path(),
        "huge",
        "\x20\x20- { id: sm, kind: safe-mode, timeout: 1h, actions: [ { run: [/bin/true], timeout: 1m } ], success: { run: [/bin/true] } }\n",
    );
    let compiled = Rplan::new()
        .args(["compile", p.to_str().unwrap(), "-o", "-"])
        .run()
        .code(0);
    let mut c: serde_json::Value = serde_json::from_str(&compiled.stdout).unwrap();
    for stage in c["stages"].as_array_mut().unwrap() {
        stage["timeout_s"] = u64::MAX.into();
        stage["estimate_s"] = u64::MAX.into();
        for step in stage["steps"].as_array_mut().unwrap() {
            step["estimate_s"] = u64::MAX.into();
            if step.get("timeout_s").is_some() {
                step["timeout_s"] = u64::MAX.into();
            }
        }
    }
    let cp = dir.path().join("huge.json");
    std::fs::write(&cp, c.to_string()).unwrap();
    Rplan::new()
        .args(["dry-run", cp.to_str().unwrap()])
        .run()
        .code(0);
    let run = Rplan::new()
        .args([
            "apply",
            cp.to_str().unwrap(),
            "--yes",
            "--journal",
            dir.path().join("j").to_str().unwrap(),
        ])
        .run()
        .code(0);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_recovery_with_non_critical_failures_says_so_and_strict_exits_5() {
    let dir = tempfile::tempdir().unwrap();
    let good = noise(MIB as usize, 1);
    std::fs::write(dir.path().join("good.img"), &good).unwrap();
    std::fs::write(dir.path().join("bad.img"), noise(MIB as usize, 2)).unwrap();
    let good_sha = sha(&dir.path().join("good.img"));
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: partial\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\nmedia: {{ build: sp2-slipstream }}\n\
backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: good, path: good.img, format: raw, size: 1MiB, sha256: {good_sha} }}\n    - {{ id: bad, path: bad.img, format: raw, size: 1MiB, sha256: {good_sha} }}\n\
disks:\n  - {{ id: d0, critical: true, table: mbr, signature: \"0x11111111\", size: 8MiB, partitions: [ {{ id: p, size: 4MiB, type: ntfs, bootable: true, content: {{ image: good }} }} ] }}\n\
\x20\x20- {{ id: d1, table: mbr, signature: \"0x22222222\", size: 8MiB, partitions: [ {{ id: p, size: 4MiB, type: ntfs, content: {{ image: bad }} }} ] }}\n\
stages: [ {{ id: sm, kind: safe-mode, actions: [ {{ run: [/bin/false] }} ] }}, {{ id: asr, kind: asr }} ]\n"
        ),
    )
    .unwrap();
    let targets = |tag: &str| {
        (
            image(dir.path(), &format!("{tag}-d0"), 8 * MIB),
            image(dir.path(), &format!("{tag}-d1"), 8 * MIB),
        )
    };
    let (d0, d1) = targets("a");
    let run = apply(
        &p,
        &[("d0", &d0), ("d1", &d1)],
        &dir.path().join("ja"),
        &["--no-artifacts"],
    )
    .code(0);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last, "recovered by stage asr with 1 non-critical failure: asr/d1/p/restore",
        "{}",
        run.stderr
    );
    let (d0, d1) = targets("b");
    let run = apply(
        &p,
        &[("d0", &d0), ("d1", &d1)],
        &dir.path().join("jb"),
        &["--no-artifacts", "--format", "json"],
    )
    .code(0);
    assert_eq!(
        result(&run)["non_critical_failures"],
        serde_json::json!(["asr/d1/p/restore"])
    );
    let (d0, d1) = targets("c");
    apply(
        &p,
        &[("d0", &d0), ("d1", &d1)],
        &dir.path().join("jc"),
        &["--no-artifacts", "--strict"],
    )
    .code(5);
}

/// A one-disk plan restoring raw artifact `a.img` (1 MiB) and formatting a
/// FAT partition.
fn preflight_plan(dir: &Path) -> PathBuf {
    let data = noise(MIB as usize, 9);
    std::fs::write(dir.join("a.img"), &data).unwrap();
    let p = dir.join("pre.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: pre\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: a, path: a.img, format: raw, size: 1MiB, sha256: {} }} ] }}\n\
disks: [ {{ id: d0, critical: true, table: mbr, signature: \"0x01020304\", size: 32MiB, partitions: [ {{ id: p, size: 4MiB, type: ntfs, bootable: true, content: {{ image: a }} }}, {{ id: f, size: 16MiB, type: fat16, content: {{ format: {{ fs: fat16 }} }} }} ] }} ]\n\
stages: [ {{ id: asr, kind: asr }} ]\n",
            sha(&dir.join("a.img"))
        ),
    )
    .unwrap();
    p
}

#[test]
fn preflight_refuses_before_the_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = preflight_plan(dir.path());
    let img = image(dir.path(), "d.img", 32 * MIB);
    let blank = sha(&img);
    let j = dir.path().join("j");
    let artifact = dir.path().join("a.img");
    let good = std::fs::read(&artifact).unwrap();
    let refused = |extra: &[&str], what: &str, code: &str| {
        let run = apply(&p, &[("d0", &img)], &j, extra);
        assert_eq!(run.code, 4, "{what}: {}", run.stderr);
        assert!(run.stderr.contains(code), "{what}: {}", run.stderr);
        assert_eq!(sha(&img), blank, "{what}: the target was written");
    };
    // A YAML plan with --no-artifacts: missing, truncated, not a file.
    std::fs::remove_file(&artifact).unwrap();
    refused(&["--no-artifacts"], "missing artifact", "RP0503");
    std::fs::write(&artifact, &good[..1000]).unwrap();
    refused(&["--no-artifacts"], "truncated artifact", "RP0504");
    std::fs::remove_file(&artifact).unwrap();
    tool("mkfifo", &[artifact.to_str().unwrap()]);
    refused(&["--no-artifacts"], "FIFO artifact", "RP0507");
    std::fs::remove_file(&artifact).unwrap();
    // A damaged backup (one byte changed) without --no-artifacts: 4, not 1.
    let mut damaged = good.clone();
    damaged[77] ^= 1;
    std::fs::write(&artifact, &damaged).unwrap();
    refused(&[], "damaged artifact", "RP0505");
    std::fs::write(&artifact, &good).unwrap();
    // A temp directory that is not there.
    refused(
        &["--temp-dir", dir.path().join("nowhere").to_str().unwrap()],
        "bad --temp-dir",
        "nowhere",
    );
    // A missing mkfs tool.
    let run = Rplan::new()
        .args(apply_args(&p, &[("d0", &img)], &j))
        .env("RPLAN_HIDE_TOOLS", "mkfs.fat")
        .run();
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("RP0805") && run.stderr.contains("mkfs.fat"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&img), blank);
    // All well: it applies.
    apply(&p, &[("d0", &img)], &j, &["--no-artifacts"]).code(0);
}

/// A plan whose one artifact is `path` (relative to `backup/`), restored
/// into a 4 MiB partition.
fn artifact_plan(dir: &Path, path: &str, format: &str, size: &str, sha256: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("backup")).unwrap();
    let p = dir.join("art.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: art\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: backup, artifacts: [ {{ id: a, path: \"{path}\", format: {format}, size: {size}, sha256: {sha256} }} ] }}\n\
disks: [ {{ id: d0, critical: true, table: mbr, signature: \"0x01020304\", size: 8MiB, partitions: [ {{ id: p, size: 4MiB, type: ntfs, bootable: true, content: {{ image: a }} }} ] }} ]\n\
stages: [ {{ id: sm, kind: safe-mode, actions: [ {{ run: [/bin/false] }} ] }}, {{ id: asr, kind: asr }} ]\n"
        ),
    )
    .unwrap();
    p
}

fn check(plan: &Path) -> Run {
    Rplan::new()
        .args(["check", plan.to_str().unwrap(), "--format", "json"])
        .run()
}

fn has_code(run: &Run, code: &str) -> bool {
    codes_at(run).iter().any(|(c, ..)| c == code)
}

const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn artifacts_are_regular_files_inside_the_backup_root() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("secret.img"), noise(MIB as usize, 3)).unwrap();
    let secret = sha(&d.join("secret.img"));
    // `../`: refused without being opened: its sha256 is nowhere.
    let run = check(&artifact_plan(d, "../secret.img", "raw", "1MiB", ZEROS)).code(1);
    assert!(has_code(&run, "RP0510"), "{}", run.stdout);
    assert!(!run.stdout.contains(&secret), "{}", run.stdout);
    // A symlink inside the root that leads out of it.
    std::fs::create_dir_all(d.join("backup")).unwrap();
    std::os::unix::fs::symlink(d.join("secret.img"), d.join("backup/link.img")).unwrap();
    let run = check(&artifact_plan(d, "link.img", "raw", "1MiB", ZEROS)).code(1);
    assert!(has_code(&run, "RP0510"), "{}", run.stdout);
    assert!(!run.stdout.contains(&secret), "{}", run.stdout);
    // /dev/zero through a link, and a FIFO: refused, not read forever.
    std::os::unix::fs::symlink("/dev/zero", d.join("backup/zero.img")).unwrap();
    let run = check(&artifact_plan(d, "zero.img", "raw", "1MiB", ZEROS)).code(1);
    assert!(has_code(&run, "RP0510"), "{}", run.stdout);
    tool("mkfifo", &[d.join("backup/fifo.img").to_str().unwrap()]);
    let run = check(&artifact_plan(d, "fifo.img", "raw", "1MiB", ZEROS)).code(1);
    assert!(has_code(&run, "RP0507"), "{}", run.stdout);
    // A huge (sparse) file stated as 1 MiB: hashing stops at 1 MiB + 1.
    let huge = std::fs::File::create(d.join("backup/huge.img")).unwrap();
    huge.set_len(1 << 40).unwrap();
    let started = Instant::now();
    let run = check(&artifact_plan(d, "huge.img", "raw", "1MiB", ZEROS)).code(1);
    assert!(has_code(&run, "RP0504"), "{}", run.stdout);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

fn zstd_of(data: &[u8], args: &[&str]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("zstd")
        .args(args)
        .args(["-q", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn zstd_artifacts_check_as_they_restore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("backup")).unwrap();
    let data = noise(MIB as usize, 4);
    std::fs::write(d.join("raw.img"), &data).unwrap();
    let want = sha(&d.join("raw.img"));
    // A long window (--long=31, streamed so zstd cannot shrink it): accepted.
    std::fs::write(d.join("backup/long.zst"), zstd_of(&data, &["--long=31"])).unwrap();
    check(&artifact_plan(d, "long.zst", "raw-zstd", "1MiB", &want)).code(0);
    // A window over 2^31 (the header's window descriptor raised): a coded
    // diagnostic at check time.
    let mut big = zstd_of(&data, &["--long=31"]);
    assert_eq!(big[4] & 0x20, 0, "expected a window descriptor");
    big[5] = (21 << 3) | 1; // 2^31 + 2^28
    std::fs::write(d.join("backup/big.zst"), &big).unwrap();
    let run = check(&artifact_plan(d, "big.zst", "raw-zstd", "1MiB", &want)).code(1);
    assert!(has_code(&run, "RP0507"), "{}", run.stdout);
    assert!(run.stdout.contains("--long=31"), "{}", run.stdout);
    // The sha256 of the compressed file: recognised.
    std::fs::write(d.join("backup/s.zst"), zstd_of(&data, &["-3"])).unwrap();
    let of_zst = sha(&d.join("backup/s.zst"));
    let run = check(&artifact_plan(d, "s.zst", "raw-zstd", "1MiB", &of_zst)).code(1);
    assert!(run.stdout.contains("compressed file"), "{}", run.stdout);
    assert!(run.stdout.contains(&want), "{}", run.stdout);
    // `format: raw` on a zstd file.
    let run = check(&artifact_plan(d, "s.zst", "raw", "1MiB", &want)).code(1);
    assert!(
        run.stdout.contains("use `format: raw-zstd`"),
        "{}",
        run.stdout
    );
}

#[test]
fn plan_text_and_command_output_reach_the_terminal_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let p = no_disk_plan(
        dir.path(),
        "esc",
        "\x20\x20- { id: sm, kind: safe-mode, actions: [ { run: [sh, -c, 'printf \"\\033[2J\\033]0;owned\\007boom\" >&2; exit 1'] } ] }\n\
\x20\x20- { id: lkg, kind: last-known-good, actions: [ { run: [/bin/true] } ] }\n",
    );
    let run = Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--journal",
            dir.path().join("j").to_str().unwrap(),
        ])
        .run()
        .code(0);
    assert!(run.stderr.contains("boom"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\x1b') && !run.stderr.contains('\x07'),
        "{:?}",
        run.stderr
    );
    assert!(run.stderr.contains("\\u{1b}[2J"), "{}", run.stderr);
}

#[test]
fn an_escape_sequence_in_the_plan_name_cannot_hide_the_disk_list() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 96 * MIB);
    let plan = restore_plan(dir.path());
    // ESC [8m: everything after it invisible; ESC [2J: the screen cleared.
    let text = std::fs::read_to_string(&plan).unwrap();
    std::fs::write(
        &plan,
        text.replace("name: big", "name: \"big\\e[8m\\e[2J\""),
    )
    .unwrap();
    let cmd = format!(
        "{} {}",
        bin(),
        apply_args(&plan, &[("d0", &img)], &dir.path().join("j"))
            .iter()
            .filter(|a| *a != "--yes")
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // A terminal to be asked on: `script` gives rplan a pty; we answer no.
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"no\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("Type `yes` to go on"), "{screen:?}");
    assert!(
        screen.contains(&format!("d0 = {}", img.display())),
        "{screen:?}"
    );
    assert!(!screen.contains('\x1b'), "{screen:?}");
    assert!(screen.contains("big\\u{1b}[8m"), "{screen:?}");
    assert_eq!(sha(&img), sha(&image(dir.path(), "blank.img", 96 * MIB)));
}

#[test]
fn the_journal_never_follows_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let p = no_disk_plan(
        dir.path(),
        "link",
        "\x20\x20- { id: sm, kind: safe-mode, actions: [ { run: [/bin/true] } ] }\n",
    );
    let j = dir.path().join("j");
    let run = |j: &Path| {
        Rplan::new()
            .args([
                "apply",
                p.to_str().unwrap(),
                "--yes",
                "--journal",
                j.to_str().unwrap(),
            ])
            .run()
    };
    run(&j).code(0);
    let journal = journal_file(&j);
    std::fs::remove_file(&journal).unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, &journal).unwrap();
    let out = run(&j);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("symbolic link"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn mkfs_temp_files_do_not_outlive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let p = preflight_plan(dir.path());
    let img = image(dir.path(), "d.img", 32 * MIB);
    let temp = dir.path().join("tmp");
    std::fs::create_dir_all(&temp).unwrap();
    let run = Rplan::new()
        .args(apply_args(&p, &[("d0", &img)], &dir.path().join("j")))
        .args(["--temp-dir", temp.to_str().unwrap()])
        .env("RPLAN_CRASH_AT", "asr/d0/f/format:1")
        .run();
    assert_ne!(run.code, 0, "no crash: {}", run.stderr);
    let left: Vec<_> = std::fs::read_dir(&temp).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // And the resumed run formats as usual, through the same unnamed file.
    apply(
        &p,
        &[("d0", &img)],
        &dir.path().join("j"),
        &["--resume", "--temp-dir", temp.to_str().unwrap()],
    )
    .code(0);
    let fs = dir.path().join("f.fs");
    let t = tool("sfdisk", &["--json", img.to_str().unwrap()]);
    let t: serde_json::Value = serde_json::from_str(&t).unwrap();
    let start = t["partitiontable"]["partitions"][1]["start"]
        .as_u64()
        .unwrap()
        * 512;
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&fs, &bytes[start as usize..(start + 16 * MIB) as usize]).unwrap();
    tool("fsck.vfat", &["-n", fs.to_str().unwrap()]);
}

#[test]
fn two_thousand_fat_files_install_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.txt"), "one of many\r\n").unwrap();
    let mut files = String::new();
    for d in 0..20 {
        for f in 0..100 {
            files.push_str(&format!(
                "            - {{ artifact: f, to: /dir{d:02}/file{f:03}.txt }}\n"
            ));
        }
    }
    let p = dir.path().join("many.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: many\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: f, path: f.txt, format: file, size: 13, sha256: {} }} ] }}\n\
disks:\n  - id: d0\n    critical: true\n    table: mbr\n    signature: \"0x05060708\"\n    size: 128MiB\n    partitions:\n      - id: boot\n        size: 64MiB\n        type: fat32\n        bootable: true\n        content:\n          format: {{ fs: fat32, label: BOOT }}\n          files:\n{files}\
stages: [ {{ id: sm, kind: safe-mode, actions: [ {{ run: [/bin/false] }} ] }}, {{ id: asr, kind: asr }} ]\n",
            sha(&dir.path().join("f.txt"))
        ),
    )
    .unwrap();
    let img = image(dir.path(), "d.img", 128 * MIB);
    let started = Instant::now();
    apply(&p, &[("d0", &img)], &dir.path().join("j"), &[]).code(0);
    // Generous: one file at a time took over a minute.
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "took {:?}",
        started.elapsed()
    );
    let fs = dir.path().join("boot.fs");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&fs, &bytes[MIB as usize..(65 * MIB) as usize]).unwrap();
    tool("fsck.vfat", &["-n", fs.to_str().unwrap()]);
    let listing = tool("mdir", &["-i", fs.to_str().unwrap(), "-/", "-b", "::/"]);
    let txt = listing
        .lines()
        .filter(|l| l.to_lowercase().ends_with(".txt"))
        .count();
    assert_eq!(txt, 2000, "{listing}");
    let one = tool(
        "mtype",
        &["-i", fs.to_str().unwrap(), "::/dir19/file099.txt"],
    );
    assert_eq!(one, "one of many\r\n");
}

#[test]
fn the_readme_exit_code_table_holds_for_usage_and_io() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("## Exit codes")
        .nth(1)
        .expect("README has an Exit codes section");
    for code in 0..=5 {
        assert!(section.contains(&format!("\n| {code} |")), "code {code}");
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 2: usage and I/O.
    Rplan::new().arg("frobnicate").run().code(2);
    Rplan::new()
        .args(["apply", "x.yaml", "--no-such-flag"])
        .run()
        .code(2);
    Rplan::new()
        .args(["check", "/nonexistent/plan.yaml"])
        .run()
        .code(2);
    Rplan::new()
        .args(["apply", "/nonexistent/plan.yaml", "--yes"])
        .run()
        .code(2);
    Rplan::new()
        .args(["rules", "--rules", "/nonexistent/rules.yaml"])
        .run()
        .code(2);
    let plan = root().join("examples/workstation-mbr.yaml");
    Rplan::new()
        .args([
            "compile",
            plan.to_str().unwrap(),
            "--no-artifacts",
            "-o",
            "/nonexistent/x.json",
        ])
        .run()
        .code(2);
    // 1: not a compiled plan; 0: the read-only commands.
    std::fs::write(d.join("c.json"), "{\"x\": 1}").unwrap();
    Rplan::new()
        .args(["apply", d.join("c.json").to_str().unwrap(), "--yes"])
        .run()
        .code(1);
    Rplan::new().args(["schema", "plan"]).run().code(0);
    Rplan::new().arg("rules").run().code(0);
}
