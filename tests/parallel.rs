//! Parallel execution of the step DAG (issue 13): steps on different disks
//! overlap (by `--jobs`, default one per target), `--jobs 1` is the
//! sequential run, the disks come out byte-identical (`cmp`) either way
//! and after a kill -9 in the middle of parallel restores plus `--resume`;
//! the `--format json` stream stays one whole object per line.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const ART: usize = 8 * MIB as usize;

/// Two disks, each restoring its own 8 MiB raw artifact.
fn plan(dir: &Path) -> PathBuf {
    let mut arts = String::new();
    for (id, seed) in [("a0", 130), ("a1", 131)] {
        let p = dir.join(format!("{id}.raw"));
        std::fs::write(&p, noise(ART, seed)).unwrap();
        arts.push_str(&format!(
            "    - {{ id: {id}, path: {id}.raw, format: raw, size: {ART}, sha256: {} }}\n",
            sha(&p)
        ));
    }
    let p = dir.join("par.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: par\n\
system: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\n\
media: {{ build: sp2-slipstream }}\n\
backup:\n  id: b\n  root: .\n  artifacts:\n{arts}\
disks:\n\
\x20 - id: d0\n    critical: true\n    table: mbr\n    signature: \"0x13b00000\"\n    size: 16MiB\n    partitions:\n\
\x20     - {{ id: sys, size: rest, type: ntfs, bootable: true, content: {{ image: a0 }} }}\n\
\x20 - id: d1\n    table: mbr\n    signature: \"0x13b00001\"\n    size: 16MiB\n    partitions:\n\
\x20     - {{ id: data, size: rest, type: ntfs, content: {{ image: a1 }} }}\n\
stages:\n  - {{ id: asr, kind: asr }}\n"
        ),
    )
    .unwrap();
    p
}

/// Fresh blank images for d0 and d1 under `dir/name`.
fn disks(dir: &Path, name: &str) -> Vec<PathBuf> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    ["d0", "d1"]
        .iter()
        .map(|id| image(&d, &format!("{id}.img"), 16 * MIB))
        .collect()
}

fn apply(plan: &Path, disks: &[PathBuf], journal: &Path, extra: &[&str]) -> Rplan {
    let mut r = Rplan::new()
        .in_dir(plan.parent().unwrap())
        .args(["apply", plan.to_str().unwrap(), "--yes", "--format", "json"])
        .args(["--journal", journal.to_str().unwrap()])
        .args(extra);
    for (id, p) in ["d0", "d1"].iter().zip(disks) {
        r = r.args(["--target", &format!("{id}={}", p.display())]);
    }
    r
}

/// Every stdout line parsed as one JSON object; every step event names
/// its step.
fn events(run: &Run) -> Vec<serde_json::Value> {
    run.stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {l:?}\n{}", run.stdout));
            let kind = v["event"].as_str().unwrap_or_default();
            if kind.starts_with("step-") || kind == "bytes" {
                assert!(v["step"].is_string(), "no step id: {l}");
            }
            v
        })
        .collect()
}

/// The most steps running at once, by event order.
fn most_at_once(events: &[serde_json::Value]) -> usize {
    let (mut now, mut most) = (0_usize, 0);
    for e in events {
        match e["event"].as_str() {
            Some("step-started") => {
                now += 1;
                most = most.max(now);
            }
            Some("step-finished") if now > 0 => now -= 1,
            _ => {}
        }
    }
    most
}

/// Position of `kind` for `step` in the stream.
fn at(events: &[serde_json::Value], kind: &str, step: &str) -> usize {
    events
        .iter()
        .position(|e| e["event"] == kind && e["step"] == step)
        .unwrap_or_else(|| panic!("no {kind} for {step}"))
}

fn cmp(want: &[PathBuf], got: &[PathBuf]) {
    for (w, g) in want.iter().zip(got) {
        let out = Command::new("cmp").arg(w).arg(g).output().unwrap();
        assert!(
            out.status.success(),
            "{} differs from {}: {}",
            g.display(),
            w.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn disks_restore_at_the_same_time_and_end_as_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());

    let one = disks(dir.path(), "one");
    let run = apply(&plan, &one, &dir.path().join("j1"), &["--jobs", "1"])
        .run()
        .code(0);
    let seq = events(&run);
    assert_eq!(
        most_at_once(&seq),
        1,
        "--jobs 1 overlapped:\n{}",
        run.stdout
    );

    let par = disks(dir.path(), "par");
    let run = apply(&plan, &par, &dir.path().join("j2"), &[])
        .run()
        .code(0);
    let ev = events(&run);
    let (r0, r1) = ("asr/d0/sys/restore", "asr/d1/data/restore");
    let last_start = at(&ev, "step-started", r0).max(at(&ev, "step-started", r1));
    let first_end = at(&ev, "step-finished", r0).min(at(&ev, "step-finished", r1));
    assert!(
        last_start < first_end,
        "the two restores did not overlap:\n{}",
        run.stdout
    );
    // The same steps, each once.
    let started = |ev: &[serde_json::Value]| {
        let mut s: Vec<String> = ev
            .iter()
            .filter(|e| e["event"] == "step-started")
            .map(|e| e["step"].as_str().unwrap().to_string())
            .collect();
        s.sort();
        s
    };
    assert_eq!(started(&seq), started(&ev));
    cmp(&one, &par);
    // And what outside tools see: the restored bytes in each partition.
    for (img, seed) in par.iter().zip([130, 131]) {
        let table = tool("sfdisk", &["-J", img.to_str().unwrap()]);
        let t: serde_json::Value = serde_json::from_str(&table).unwrap();
        let start = t["partitiontable"]["partitions"][0]["start"]
            .as_u64()
            .unwrap()
            * 512;
        let bytes = std::fs::read(img).unwrap();
        let got = &bytes[start as usize..start as usize + ART];
        let want = noise(ART, seed);
        // The boot-sector step may adjust hidden sectors in sector 0 only.
        assert!(
            got[512..] == want[512..],
            "{} holds other bytes",
            img.display()
        );
    }
}

#[test]
fn kill_during_parallel_restores_then_resume_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let want = disks(dir.path(), "want");
    apply(&plan, &want, &dir.path().join("jw"), &["--jobs", "1"])
        .run()
        .code(0);

    let got = disks(dir.path(), "got");
    let journal = dir.path().join("jg");
    let killed = apply(&plan, &got, &journal, &[])
        .env("RPLAN_CRASH_AT", "asr/d1/data/restore:2")
        .run();
    assert_eq!(killed.code, -1, "not killed:\n{}", killed.stderr);
    let ev = events(&killed);
    // Killed inside d1's restore, which never finished.
    at(&ev, "step-started", "asr/d1/data/restore");
    assert!(
        !ev.iter()
            .any(|e| e["event"] == "step-finished" && e["step"] == "asr/d1/data/restore"),
        "{}",
        killed.stdout
    );
    apply(&plan, &got, &journal, &[]).run().code(4);
    let resumed = apply(&plan, &got, &journal, &["--resume"]).run().code(0);
    events(&resumed);
    cmp(&want, &got);
}

#[test]
fn dry_run_report_is_in_plan_order_whatever_finishes_first() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let disks = disks(dir.path(), "dry");
    let result = |jobs: &[&str]| {
        let mut r = Rplan::new()
            .in_dir(dir.path())
            .args(["dry-run", plan.to_str().unwrap(), "--format", "json"])
            .args(jobs);
        for (id, p) in ["d0", "d1"].iter().zip(&disks) {
            r = r.args(["--target", &format!("{id}={}", p.display())]);
        }
        let run = r.run().code(0);
        let ev = events(&run);
        let last = ev.last().cloned().unwrap();
        assert_eq!(last["event"], "result", "{}", run.stdout);
        last
    };
    let seq = result(&["--jobs", "1"]);
    assert!(seq.to_string().contains("asr/d1/data/restore"), "{seq}");
    for _ in 0..3 {
        assert_eq!(result(&[]), seq);
    }
    // Nothing was written.
    for d in &disks {
        let n = (16 * MIB).to_string();
        let same = Command::new("cmp")
            .args(["-n", &n, d.to_str().unwrap(), "/dev/zero"])
            .status()
            .unwrap();
        assert!(same.success(), "{} was written", d.display());
    }
}
