//! `rplan dry-run`: the same steps as apply against a simulation of the
//! real targets; nothing is written, and what it predicts is what apply
//! then does.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn plan(dir: &Path) -> PathBuf {
    let data: Vec<u8> = (0..3 * MIB as usize).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("sys.img"), &data).unwrap();
    let sys = sha(&dir.join("sys.img"));
    let p = dir.join("plan.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: sim\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: sys, path: sys.img, format: raw, size: 3MiB, sha256: {sys} }} ] }}\n\
disks:\n\x20\x20- {{ id: d0, critical: true, table: mbr, signature: \"0x5117d00d\", size: 64MiB, partitions: [ {{ id: sys, size: 8MiB, type: ntfs, bootable: true, content: {{ image: sys }} }}, {{ id: data, size: rest, type: ext4, content: {{ format: {{ fs: ext4 }} }} }} ] }}\n\
stages:\n\x20\x20- {{ id: lkg, kind: last-known-good, actions: [ {{ run: [/bin/false] }} ] }}\n\x20\x20- {{ id: asr, kind: asr }}\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn dry_run_writes_nothing_and_predicts_what_apply_changes() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path());
    let img = image(dir.path(), "d0.img", 64 * MIB);
    let before = sha(&img);
    let run = Rplan::new()
        .args([
            "dry-run",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
            "--fail",
            "lkg",
            "--format",
            "json",
        ])
        .run()
        .code(0);
    assert_eq!(before, sha(&img), "dry-run wrote to the target");
    let result: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["outcome"], "recovered");
    assert_eq!(result["stage"], "asr");
    let report = &result["dry_run"];
    assert!(report["rto_estimate_s"].as_u64().unwrap() > 0);
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps[0], "lkg/action-1");
    assert!(steps.contains(&"asr/d0/sys/restore"));
    let predicted: Vec<(u64, u64)> = report["disks"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["start"].as_u64().unwrap(), c["len"].as_u64().unwrap()))
        .collect();
    assert!(report["disks"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["within"] != "outside declared ranges"));

    // Now apply for real and diff the image against the blank one in the
    // same 64 KiB granules.
    Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--journal",
            dir.path().join("j").to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
        ])
        .run()
        .code(0);
    let bytes = std::fs::read(&img).unwrap();
    let mut changed: Vec<(u64, u64)> = Vec::new();
    for (i, granule) in bytes.chunks(64 * 1024).enumerate() {
        if granule.iter().any(|&b| b != 0) {
            let at = i as u64 * 64 * 1024;
            match changed.last_mut() {
                Some((s, l)) if *s + *l == at => *l += 64 * 1024,
                _ => changed.push((at, 64 * 1024)),
            }
        }
    }
    // The prediction is exact to the byte where writes are smaller than a
    // granule (table sectors); compare covering granules.
    let granules = |ranges: &[(u64, u64)]| -> Vec<u64> {
        let mut g: Vec<u64> = ranges
            .iter()
            .flat_map(|&(s, l)| (s / 65536..(s + l).div_ceil(65536)).collect::<Vec<_>>())
            .collect();
        g.dedup();
        g
    };
    assert_eq!(
        granules(&predicted),
        granules(&changed),
        "dry-run predicted other changes than apply made"
    );
}

#[test]
fn dry_run_shows_the_escalation_path_and_refuses_like_apply() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path());
    let img = image(dir.path(), "d0.img", 64 * MIB);
    // By default the worst case: every stage before ASR fails, and the
    // first line says so.
    let run = Rplan::new()
        .args([
            "dry-run",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
        ])
        .run()
        .code(0);
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("worst case") && first.contains("`lkg` fails, so `asr` runs"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("escalation: recovered by stage asr"),
        "{}",
        run.stdout
    );
    // --succeed models a gentler outcome: Last Known Good works, ASR is
    // not reached, nothing on the disk changes.
    let run = Rplan::new()
        .args([
            "dry-run",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
            "--succeed",
            "lkg",
        ])
        .run()
        .code(0);
    assert!(
        run.stdout
            .lines()
            .next()
            .unwrap_or_default()
            .contains("`lkg` succeeds"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("escalation: recovered by stage lkg"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("d0: no change") && !run.stdout.contains("will destroy"),
        "{}",
        run.stdout
    );
    // Every stage fails: exit 3, like apply.
    let run = Rplan::new()
        .args([
            "dry-run",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
            "--fail",
            "lkg",
            "--fail",
            "asr",
        ])
        .run()
        .code(3);
    assert!(
        run.stdout.contains("escalation: every stage fails"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("partition sys:"), "{}", run.stdout);
    // A target too small is refused, as apply would.
    let small = image(dir.path(), "small.img", 32 * MIB);
    let run = Rplan::new()
        .args([
            "dry-run",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", small.display()),
        ])
        .run()
        .code(4);
    assert!(run.stderr.contains("RP0702"), "{}", run.stderr);
    assert!(
        run.stdout.is_empty(),
        "a refused dry-run printed a report: {}",
        run.stdout
    );
    // An unknown stage for --fail is a usage error.
    Rplan::new()
        .args([
            "dry-run",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
            "--fail",
            "nope",
        ])
        .run()
        .code(2);
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0));
}
