//! Kill-and-resume as a property (issue 15): one plan with an MBR disk
//! with logical partitions, a GPT disk, a restore, FAT formats with file
//! installs and a striped dynamic volume; an uninterrupted apply logs
//! every device write (`RPLAN_WRITE_LOG`), 50 of them chosen by a fixed
//! seed (a step at random, then one of its writes) become SIGKILL points
//! (`RPLAN_CRASH_AT`: the process kill -9s itself just before that
//! write), and after each `--resume` every disk must be byte-identical
//! (`cmp`) to the uninterrupted apply's.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SEED: u64 = 0x15_4b11;
const POINTS: usize = 50;
const DISKS: [(&str, u64); 4] = [("d0", 64), ("d1", 48), ("d2", 32), ("d3", 32)];

fn plan(dir: &Path) -> PathBuf {
    let mut sys = noise(3 * MIB as usize, 3);
    sys.resize(4 * MIB as usize, 0);
    xp_plan(
        dir,
        "killpoints.yaml",
        "x64",
        &sys,
        &b"kill me softly\n".repeat(3000),
        "disks:\n\
\x20 - id: d0\n    critical: true\n    table: mbr\n    signature: \"0x6b111000\"\n    size: 64MiB\n    partitions:\n\
\x20     - { id: sys, size: 8MiB, type: ntfs, bootable: true, content: { image: sys } }\n\
\x20     - { id: boot, size: 20MiB, type: fat16, content: { format: { fs: fat16, label: BOOT }, files: [ { artifact: note, to: /note.txt }, { artifact: note, to: /i386/asr.sif } ] } }\n\
\x20     - { id: l1, size: 16MiB, type: fat16, logical: true, content: { format: { fs: fat16, label: L1 }, files: [ { artifact: note, to: /l1.txt } ] } }\n\
\x20     - { id: l2, size: rest, type: ntfs, logical: true }\n\
\x20 - id: d1\n    table: gpt\n    guid: 6f1c2a8e-4b7d-4e3a-9c51-2d8e7f0a1b3d\n    size: 48MiB\n    partitions:\n\
\x20     - { id: msr, size: 8MiB, type: msr }\n\
\x20     - { id: data, size: rest, type: fat16, content: { format: { fs: fat16, label: DATA }, files: [ { artifact: note, to: /g.txt } ] } }\n\
\x20 - id: d2\n    table: mbr\n    signature: \"0x6b111002\"\n    size: 32MiB\n    partitions: [ { id: m, size: 24MiB, type: ldm } ]\n\
\x20 - id: d3\n    table: mbr\n    signature: \"0x6b111003\"\n    size: 32MiB\n    partitions: [ { id: m, size: 24MiB, type: ldm } ]\n\
volumes:\n\
\x20 - { id: stripe, layout: striped, stripe_size: 64KiB, members: [d2/m, d3/m], content: { format: { fs: ntfs, label: STRIPE } } }\n\
stages:\n  - { id: asr, kind: asr }\n",
    )
}

/// Blank images for the four disks in `dir`.
fn disks(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::create_dir_all(dir).unwrap();
    DISKS
        .iter()
        .map(|(id, mib)| (id.to_string(), image(dir, &format!("{id}.img"), mib * MIB)))
        .collect()
}

fn apply(plan: &Path, disks: &[(String, PathBuf)], journal: &Path) -> Command {
    let mut c = Command::new(bin());
    c.args(["apply", plan.to_str().unwrap(), "--yes", "--format", "json"])
        .args(["--journal", journal.to_str().unwrap()]);
    for (id, p) in disks {
        c.args(["--target", &format!("{id}={}", p.display())]);
    }
    c
}

/// `POINTS` distinct (step, write) pairs: a step chosen uniformly, then
/// one of its writes.
fn kill_points(writes: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let steps: Vec<(&String, &u64)> = writes.iter().collect();
    assert!(
        writes.values().sum::<u64>() >= POINTS as u64 * 2,
        "{writes:?}"
    );
    let mut x = SEED;
    let mut next = move |below: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % below
    };
    let mut points: Vec<(String, u64)> = Vec::new();
    while points.len() < POINTS {
        let (step, count) = steps[next(steps.len() as u64) as usize];
        let point = (step.clone(), next(*count) + 1);
        if !points.contains(&point) {
            points.push(point);
        }
    }
    points
}

#[test]
fn fifty_sigkill_points_each_resume_to_the_uninterrupted_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let reference = disks(&dir.path().join("ref"));
    let log = dir.path().join("writes.log");
    let out = apply(&plan, &reference, &dir.path().join("jref"))
        .env("RPLAN_WRITE_LOG", &log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The reference is what it should be (outside tools); its bytes then
    // judge every resumed run.
    let d0 = tool("sfdisk", &["-d", reference[0].1.to_str().unwrap()]);
    assert_eq!(
        d0.matches("type=6").count(),
        2,
        "two FAT16 partitions: {d0}"
    );
    assert!(d0.contains("type=f"), "an extended partition: {d0}");
    assert!(d0.contains("d0.img6 :"), "two logical partitions: {d0}");
    tool("sgdisk", &["-v", reference[1].1.to_str().unwrap()]);

    let mut writes: BTreeMap<String, u64> = BTreeMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let (step, n) = line.rsplit_once(' ').unwrap();
        let n: u64 = n.parse().unwrap();
        let max = writes.entry(step.to_string()).or_default();
        *max = (*max).max(n);
    }
    for step in [
        "asr/d0/table",
        "asr/d1/table",
        "asr/d2/table",
        "asr/d0/sys/restore",
    ] {
        assert!(writes.contains_key(step), "{step} never wrote: {writes:?}");
    }
    assert!(writes.keys().any(|s| s.ends_with("/files")), "{writes:?}");
    assert!(
        writes.contains_key("asr/volume/stripe/format"),
        "{writes:?}"
    );

    let points = kill_points(&writes);
    // Two at a time: CI has two cores.
    let (a, b) = points.split_at(POINTS / 2);
    std::thread::scope(|s| {
        for half in [a, b] {
            let (plan, reference, root) = (&plan, &reference, dir.path());
            s.spawn(move || {
                for (step, n) in half {
                    kill_and_resume(root, plan, reference, step, *n);
                }
            });
        }
    });
}

fn kill_and_resume(root: &Path, plan: &Path, reference: &[(String, PathBuf)], step: &str, n: u64) {
    let at = format!("{step}:{n}");
    let here = root.join(at.replace(['/', ':'], "_"));
    let _ = std::fs::remove_dir_all(&here);
    let targets = disks(&here);
    let journal = here.join("journal");
    let killed = apply(plan, &targets, &journal)
        .env("RPLAN_CRASH_AT", &at)
        .output()
        .unwrap();
    assert_eq!(
        killed.status.signal(),
        Some(libc::SIGKILL),
        "{at}: not killed: {}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let resumed = apply(plan, &targets, &journal)
        .arg("--resume")
        .output()
        .unwrap();
    assert!(
        resumed.status.success(),
        "{at}: resume failed: {}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    for ((id, want), (_, got)) in reference.iter().zip(&targets) {
        let cmp = Command::new("cmp").arg(want).arg(got).output().unwrap();
        assert!(
            cmp.status.success(),
            "killed at {at}, resumed: disk {id} differs from an uninterrupted apply: {}",
            String::from_utf8_lossy(&cmp.stdout)
        );
    }
    std::fs::remove_dir_all(&here).unwrap();
}
