//! Knowing what is on a disk before writing it: inspection agrees with the
//! operator's own tools, a disk is blank only when nothing is found, what
//! is not blank is refused (and left byte-identical) unless `--force`, a
//! forced apply leaves nothing of the old disk, a target is never one of
//! the plan's own files, and dry-run shows before → after.

mod common;
#[path = "common/foreign.rs"]
mod foreign;

use common::*;
use foreign::{blkid, wipefs, KINDS};
use std::path::Path;

fn inspect_json(img: &Path) -> serde_json::Value {
    let run = Rplan::new()
        .args(["inspect", "--format", "json", img.to_str().unwrap()])
        .run()
        .code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["disks"][0].clone()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What blkid says of a window must be what rplan says of it.
fn agrees(what: &str, blk: &[(String, String)], sig: &serde_json::Value) {
    assert_eq!(
        get(blk, "TYPE"),
        sig["kind"].as_str(),
        "{what}: type (blkid {blk:?}, rplan {sig})"
    );
    assert_eq!(get(blk, "LABEL"), sig["label"].as_str(), "{what}: label");
    assert_eq!(get(blk, "UUID"), sig["uuid"].as_str(), "{what}: uuid");
}

/// (start, size) in sectors and the type of each partition sfdisk lists,
/// extended containers left out (rplan lists what they contain).
fn sfdisk_parts(img: &Path) -> Vec<(u64, u64, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", img.to_str().unwrap()])).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !matches!(p["type"].as_str(), Some("5" | "f" | "85")))
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn inspection_agrees_with_blkid_sfdisk_sgdisk_and_wipefs() {
    let dir = tempfile::tempdir().unwrap();
    for kind in KINDS {
        let img = foreign::make(dir.path(), kind);
        agrees_with_outside_tools(dir.path(), kind, &img);
    }
}

/// `rplan inspect` of `img` against blkid -p (whole disk and each
/// partition), sfdisk --json or sgdisk, wipefs, and the used space that
/// dumpe2fs and ntfsinfo count.
fn agrees_with_outside_tools(dir: &Path, kind: &str, img: &Path) {
    let found = inspect_json(img);
    let whole = blkid(img, 0);
    let table = &found["table"];
    match kind {
        "foreign-dos" | "own-signature-other-partitions" | "applied" => {
            assert_eq!(get(&whole, "PTTYPE"), Some("dos"), "{kind}");
            assert_eq!(
                format!("0x{}", get(&whole, "PTUUID").unwrap()),
                table["id"].as_str().unwrap(),
                "{kind}: disk signature"
            );
            let ours: Vec<(u64, u64, String)> = found["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["start"].as_u64().unwrap() / 512,
                        p["size"].as_u64().unwrap() / 512,
                        p["type"]
                            .as_str()
                            .unwrap()
                            .trim_start_matches("0x")
                            .trim_start_matches('0')
                            .to_string(),
                    )
                })
                .collect();
            assert_eq!(ours, sfdisk_parts(img), "{kind}: partitions");
        }
        "sun-label" => {
            assert_eq!(get(&whole, "PTTYPE"), Some("sun"), "{kind}");
            assert_eq!(table["kind"], "sun", "{kind}: {table}");
        }
        "gpt-wiped-lba0" => {
            // blkid -p gives up without a protective MBR; wipefs and
            // sgdisk still find the GPT, and so does rplan.
            assert!(whole.is_empty(), "{whole:?}");
            let sigs = wipefs(img);
            assert!(
                sigs.contains(&("0x200".to_string(), "gpt".to_string())),
                "{sigs:?}"
            );
            assert_eq!(table["kind"], "gpt");
            assert_eq!(table["id"], "0c0c0c0c-1111-2222-3333-444444444444");
            let p = tool("sgdisk", &["-i", "1", img.to_str().unwrap()]);
            let first = &found["partitions"][0];
            assert!(
                p.contains(&format!(
                    "First sector: {} ",
                    first["start"].as_u64().unwrap() / 512
                )),
                "{p}"
            );
            assert!(p.contains("0D0D0D0D-1111-2222-3333-444444444444"), "{p}");
        }
        _ => {
            // A signature on the bare disk, no table.
            assert!(table.is_null(), "{kind}: {table}");
            agrees(kind, &whole, &found["signatures"][0]);
        }
    }
    for p in found["partitions"].as_array().unwrap() {
        let at = p["start"].as_u64().unwrap();
        let blk = blkid(img, at);
        agrees(&format!("{kind} partition at {at}"), &blk, &p["content"]);
        let kind_of = p["content"]["kind"].as_str().unwrap_or_default();
        if !matches!(kind_of, "ext4" | "ntfs") {
            continue;
        }
        // Used space as the filesystem's own tools count it.
        let part = dir.join("part.fs");
        let data = std::fs::read(img).unwrap();
        let len = p["size"].as_u64().unwrap() as usize;
        std::fs::write(&part, &data[at as usize..at as usize + len]).unwrap();
        let (header, size, total, free) = if kind_of == "ext4" {
            (
                tool("dumpe2fs", &["-h", part.to_str().unwrap()]),
                "Block size:",
                "Block count:",
                "Free blocks:",
            )
        } else {
            (
                tool("ntfsinfo", &["-m", part.to_str().unwrap()]),
                "Cluster Size:",
                "Volume Size in Clusters:",
                "Free Clusters:",
            )
        };
        let field = |name: &str| -> u64 {
            header
                .lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .unwrap()
                .parse()
                .unwrap()
        };
        let used = (field(total) - field(free)) * field(size);
        assert_eq!(p["content"]["used"].as_u64(), Some(used), "{kind}");
    }
}

/// `rplan apply PLAN --yes --target d0=IMG --journal J EXTRA…`.
fn apply(plan: &Path, img: &Path, journal: &Path, extra: &[&str]) -> Rplan {
    Rplan::new()
        .args(["apply", plan.to_str().unwrap(), "--yes", "--target"])
        .arg(target(img))
        .args(["--journal", journal.to_str().unwrap()])
        .args(extra)
}

fn target(img: &Path) -> String {
    format!("d0={}", img.display())
}

/// What each kind must be reported as in a refusal.
fn named(kind: &str) -> &'static [&'static str] {
    match kind {
        "foreign-dos" => &["0x399fcc79", "ROOTFS", "HOME", "WINDATA", "ntfs"],
        "whole-ext4" => &["ext4 `WHOLE` on the whole disk"],
        "swap" => &["swap `SWAP` on the whole disk"],
        "gpt-wiped-lba0" => &["GPT partition table 0c0c0c0c", "GPTDATA"],
        "whole-vfat" => &["vfat `WHOLEFAT` on the whole disk"],
        "whole-xfs" => &["xfs `XFSDISK` on the whole disk"],
        "whole-btrfs" => &["btrfs `BTRDISK` on the whole disk"],
        "iso9660" => &["iso9660 `ISODISK` on the whole disk"],
        "lvm-pv" => &["LVM2_member on the whole disk"],
        "sun-label" => &["SUN partition table (not read by rplan)"],
        _ => &[],
    }
}

#[test]
fn a_disk_that_is_not_blank_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    let journal = dir.path().join("journal");
    for kind in KINDS {
        if kind == "own-signature-other-partitions" {
            continue; // the plan's own disk: not refused (below)
        }
        let img = foreign::make(dir.path(), kind);
        let before = sha(&img);
        let run = apply(&plan, &img, &journal, &[]).run().code(4);
        assert!(
            run.stderr.contains("RP0703") || run.stderr.contains("RP0720"),
            "{kind}: {}",
            run.stderr
        );
        for word in named(kind) {
            assert!(
                run.stderr.contains(word),
                "{kind}: {word} in {}",
                run.stderr
            );
        }
        assert!(
            !run.stderr.contains("signature 0x00000000"),
            "{kind}: {}",
            run.stderr
        );
        let dry = Rplan::new()
            .args(["dry-run", plan.to_str().unwrap(), "--target"])
            .arg(target(&img))
            .run()
            .code(4);
        assert!(
            dry.stdout.is_empty(),
            "{kind}: a refused dry-run printed {}",
            dry.stdout
        );
        assert_eq!(sha(&img), before, "{kind}: the refused target changed");
    }
}

#[test]
fn a_forced_apply_leaves_only_the_plan_on_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    for kind in KINDS {
        let img = foreign::make(dir.path(), kind);
        let journal = dir.path().join(format!("journal-{kind}"));
        apply(&plan, &img, &journal, &["--force"]).run().code(0);
        // wipefs sees the plan's MBR and nothing of the old disk.
        assert_eq!(
            wipefs(&img),
            vec![("0x1fe".to_string(), "dos".to_string())],
            "{kind}"
        );
        let whole = blkid(&img, 0);
        assert_eq!(get(&whole, "PTUUID"), Some("1a2b3c4d"), "{kind}: {whole:?}");
        assert_eq!(get(&whole, "TYPE"), None, "{kind}: {whole:?}");
        let parts = sfdisk_parts(&img);
        assert_eq!(parts.len(), 2, "{kind}: {parts:?}");
        // The plan's filesystem, and only it, in its partition.
        let data = blkid(&img, parts[1].0 * 512);
        assert_eq!(get(&data, "TYPE"), Some("ext4"), "{kind}: {data:?}");
        assert_eq!(get(&data, "LABEL"), Some("DATA"), "{kind}: {data:?}");
        assert!(blkid(&img, parts[0].0 * 512).is_empty(), "{kind}");
        // sgdisk finds no valid GPT left either (only the new MBR).
        let v = tool("sgdisk", &["-v", img.to_str().unwrap()]);
        assert!(v.contains("Found invalid GPT and valid MBR"), "{kind}: {v}");
        // And rplan's inspection of the result agrees with them.
        agrees_with_outside_tools(dir.path(), "applied", &img);
    }
}

/// Dry-run output with the temporary directory's path replaced.
fn normalized(text: &str, dir: &Path) -> String {
    text.replace(&dir.display().to_string(), "$TMP")
}

#[test]
fn dry_run_shows_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    let matching = image(dir.path(), "matching.img", 64 * MIB);
    apply(&plan, &matching, &dir.path().join("j"), &[])
        .run()
        .code(0);
    let cases = [
        ("blank", image(dir.path(), "blank.img", 64 * MIB)),
        ("matching", matching),
        ("foreign-dos", foreign::make(dir.path(), "foreign-dos")),
        ("whole-ext4", foreign::make(dir.path(), "whole-ext4")),
        (
            "gpt-wiped-lba0",
            foreign::make(dir.path(), "gpt-wiped-lba0"),
        ),
        (
            "own-signature-other-partitions",
            foreign::make(dir.path(), "own-signature-other-partitions"),
        ),
    ];
    for (name, img) in cases {
        let before = sha(&img);
        let human = Rplan::new()
            .args(["dry-run", plan.to_str().unwrap(), "--force", "--target"])
            .arg(target(&img))
            .run()
            .code(0);
        snapshot(
            &format!("dry-run/{name}.txt"),
            &normalized(&human.stdout, dir.path()),
        );
        let json = Rplan::new()
            .args([
                "dry-run",
                plan.to_str().unwrap(),
                "--force",
                "--format",
                "json",
            ])
            .arg("--target")
            .arg(target(&img))
            .run()
            .code(0);
        let result: serde_json::Value =
            serde_json::from_str(json.stdout.lines().last().unwrap()).unwrap();
        let report = &result["dry_run"];
        validate_report(report);
        snapshot(
            &format!("dry-run/{name}.json"),
            &normalized(&serde_json::to_string_pretty(report).unwrap(), dir.path()),
        );
        assert_eq!(sha(&img), before, "{name}: dry-run wrote to the target");
        // The destroyed list is what the human summary closes with.
        let destroyed = report["disks"][0]["destroyed"].as_array().unwrap();
        assert_eq!(
            destroyed.is_empty(),
            !human.stdout.contains("will destroy:"),
            "{name}"
        );
        match name {
            "blank" | "matching" => assert!(destroyed.is_empty(), "{name}"),
            "foreign-dos" => {
                let what: Vec<&str> = destroyed
                    .iter()
                    .map(|d| d["what"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    what,
                    [
                        "MBR partition table 0x399fcc79",
                        "ext4 `ROOTFS`",
                        "ext4 `HOME`",
                        "ntfs `WINDATA`"
                    ]
                );
                assert!(
                    human.stdout.contains(
                        "will destroy: MBR partition table 0x399fcc79, ext4 `ROOTFS` 16 MiB ("
                    ),
                    "{}",
                    human.stdout
                );
            }
            _ => assert!(!destroyed.is_empty(), "{name}"),
        }
    }
}

fn validate_report(report: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/dry-run.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn estimates_and_sizes_are_those_of_the_real_target() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    let big = image(dir.path(), "big.img", 1 << 30);
    let run = Rplan::new()
        .args([
            "dry-run",
            plan.to_str().unwrap(),
            "--format",
            "json",
            "--target",
        ])
        .arg(target(&big))
        .run()
        .code(0);
    let result: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    let steps = result["dry_run"]["steps"].as_array().unwrap();
    let format = steps
        .iter()
        .find(|s| s["step"] == "asr/d0/data/format")
        .unwrap();
    let data_len = (1u64 << 30) - 9 * MIB;
    assert_eq!(format["description"], "make ext4 on d0/data (1015 MiB)");
    // 5 s plus 1/256 of it at the default 50 MiB/s (the plan's 56 MiB
    // minimum would give 6 s).
    assert_eq!(
        format["estimate_s"].as_u64(),
        Some(5 + (data_len / 256).div_ceil(50 * MIB))
    );
    let after = result["dry_run"]["disks"][0]["after"].as_array().unwrap();
    let data = after.iter().find(|a| a["id"] == "data").unwrap();
    assert_eq!(data["size"].as_u64(), Some(data_len));
}

#[test]
fn a_target_is_never_one_of_the_plans_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    let artifact = dir.path().join("sys.img");
    let artifact_sha = sha(&artifact);
    let link = dir.path().join("link-to-artifact");
    std::os::unix::fs::symlink(&artifact, &link).unwrap();
    let plan_sha = sha(&plan);
    let journal = dir.path().join("journal");
    // A finished apply leaves its journal behind.
    let good = image(dir.path(), "good.img", 64 * MIB);
    apply(&plan, &good, &journal, &[]).run().code(0);
    let journal_file = std::fs::read_dir(&journal)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let journal_sha = sha(&journal_file);
    for (what, path) in [
        ("backup artifact `sys`", &artifact),
        ("backup artifact `sys`", &link),
        ("the plan", &plan),
        ("the journal", &journal_file),
    ] {
        for command in ["apply", "dry-run"] {
            if command == "dry-run" && what == "the journal" {
                continue; // a dry-run keeps no journal
            }
            let mut rplan = Rplan::new()
                .args([command, plan.to_str().unwrap(), "--force", "--target"])
                .arg(target(path));
            if command == "apply" {
                rplan = rplan.args(["--yes", "--journal", journal.to_str().unwrap()]);
            }
            let run = rplan.run().code(4);
            assert!(
                run.stderr.contains("RP0721") && run.stderr.contains(what),
                "{command} onto {what}: {}",
                run.stderr
            );
        }
    }
    assert_eq!(sha(&artifact), artifact_sha);
    assert_eq!(sha(&plan), plan_sha);
    assert_eq!(sha(&journal_file), journal_sha);
}

#[test]
fn the_same_disk_given_twice_is_refused_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("two.yaml");
    std::fs::write(
        &p,
        "version: 1\nname: two\nsystem: { os: windows-xp, build: sp2-slipstream, language: en }\nmedia: { build: sp2-slipstream }\n\
disks:\n\
\x20\x20- { id: d0, critical: true, table: mbr, signature: \"0x11111111\", size: 16MiB, partitions: [ { id: a, size: rest, type: linux, bootable: true } ] }\n\
\x20\x20- { id: d1, critical: false, table: mbr, signature: \"0x22222222\", size: 16MiB, partitions: [ { id: b, size: rest, type: linux } ] }\n\
stages:\n\x20\x20- { id: asr, kind: asr }\n",
    )
    .unwrap();
    let img = image(dir.path(), "one.img", 16 * MIB);
    let hard = dir.path().join("hardlink.img");
    std::fs::hard_link(&img, &hard).unwrap();
    for second in [&img, &hard] {
        let run = Rplan::new()
            .args(["apply", p.to_str().unwrap(), "--yes", "--target"])
            .arg(format!("d0={}", img.display()))
            .arg("--target")
            .arg(format!("d1={}", second.display()))
            .args(["--journal", dir.path().join("j").to_str().unwrap()])
            .run()
            .code(4);
        assert!(
            run.stderr.contains("RP0721") && run.stderr.contains("are the same disk"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("locked"), "{}", run.stderr);
    }
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn apply_asks_with_the_same_summary() {
    // A terminal for rplan's prompt: script(1) gives it a pty; answering
    // "no" writes nothing.
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    let img = foreign::make(dir.path(), "foreign-dos");
    let before = sha(&img);
    let command = format!(
        "{} apply {} --force --target d0={} --journal {}",
        bin(),
        plan.display(),
        img.display(),
        dir.path().join("j").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"no\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("- partition 2  ext4 `HOME`")
            && text.contains("will destroy: MBR partition table 0x399fcc79, ext4 `ROOTFS`")
            && text.contains("Type `yes` to go on"),
        "{text}"
    );
    assert!(!text.contains("\x1b[31m"), "NO_COLOR was ignored: {text}");
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert_eq!(sha(&img), before);
}

#[test]
fn a_loop_device_backed_by_an_artifact_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    // A 64 MiB artifact-backed loop device would pass the size check: make
    // the artifact that large (the plan only checks it when it restores).
    let artifact = dir.path().join("sys.img");
    let before = sha(&artifact);
    let dev = tool("losetup", &["-f", "--show", artifact.to_str().unwrap()])
        .trim()
        .to_string();
    let run = Rplan::new()
        .args([
            "apply",
            plan.to_str().unwrap(),
            "--yes",
            "--force",
            "--no-artifacts",
        ])
        .args(["--target", &format!("d0={dev}")])
        .args(["--journal", dir.path().join("j").to_str().unwrap()])
        .run();
    tool("losetup", &["-d", &dev]);
    let run = run.code(4);
    assert!(
        run.stderr.contains("RP0721") && run.stderr.contains("backup artifact `sys`"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&artifact), before);
}

#[test]
fn a_forced_apply_killed_midway_resumes_without_force_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    let reference = foreign::make(dir.path(), "foreign-dos");
    apply(&plan, &reference, &dir.path().join("jref"), &["--force"])
        .run()
        .code(0);
    let want = sha(&reference);
    std::fs::remove_file(&reference).unwrap();
    // Killed inside the signature clearing (the old table still there, its
    // signatures half erased) and inside the table write.
    for crash in ["asr/d0/clear:1", "asr/d0/clear:2", "asr/d0/table:1"] {
        let img = foreign::make(dir.path(), "foreign-dos");
        let journal = dir.path().join(format!("j-{}", crash.replace('/', "_")));
        let crashed = apply(&plan, &img, &journal, &["--force"])
            .env("RPLAN_CRASH_AT", crash)
            .run();
        assert_ne!(crashed.code, 0, "{crash}: the run was not interrupted");
        let run = apply(&plan, &img, &journal, &["--resume"]).run();
        assert_eq!(run.code, 0, "{crash}: {}", run.stderr);
        assert_eq!(sha(&img), want, "{crash}: the resumed image differs");
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn dynamic_disks_are_seen_as_dynamic_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dyn.yaml");
    std::fs::write(
        &p,
        "version: 1\nname: dyn\nsystem: { os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }\nmedia: { build: sp2-slipstream }\n\
disks:\n\
\x20\x20- { id: d0, critical: true, table: mbr, signature: \"0x0000d000\", size: 16MiB, partitions: [ { id: sys, size: rest, type: fat16, bootable: true, content: { format: { fs: fat16, label: SYS } } } ] }\n\
\x20\x20- { id: d1, table: mbr, signature: \"0x0000d001\", size: 32MiB, partitions: [ { id: a, size: 16MiB, type: ldm } ] }\n\
\x20\x20- { id: d2, table: mbr, signature: \"0x0000d002\", size: 32MiB, partitions: [ { id: b, size: 16MiB, type: ldm } ] }\n\
volumes:\n\
\x20\x20- { id: pool, layout: spanned, members: [d1/a, d2/b], content: { format: { fs: fat16, label: POOL } } }\n\
stages:\n\x20\x20- { id: asr, kind: asr }\n",
    )
    .unwrap();
    let imgs = [
        image(dir.path(), "d0.img", 16 * MIB),
        image(dir.path(), "d1.img", 32 * MIB),
        image(dir.path(), "d2.img", 32 * MIB),
    ];
    let targets: Vec<String> = ["d0", "d1", "d2"]
        .iter()
        .zip(&imgs)
        .flat_map(|(d, i)| ["--target".to_string(), format!("{d}={}", i.display())])
        .collect();
    let dry = Rplan::new()
        .args(["dry-run", p.to_str().unwrap()])
        .args(&targets)
        .run()
        .code(0);
    assert!(
        dry.stdout
            .contains("+ dynamic      LDM: a (member of volume `pool`: format fat16 `POOL`)"),
        "{}",
        dry.stdout
    );
    Rplan::new()
        .args(["apply", p.to_str().unwrap(), "--yes"])
        .args(&targets)
        .args(["--journal", dir.path().join("j").to_str().unwrap()])
        .run()
        .code(0);
    // What ldmtool reads as a dynamic disk, inspection reports as one.
    let scan = tool(
        "ldmtool",
        &["scan", imgs[1].to_str().unwrap(), imgs[2].to_str().unwrap()],
    );
    assert!(scan.contains('-'), "ldmtool found no disk group: {scan}");
    let found = inspect_json(&imgs[1]);
    assert_eq!(found["signatures"][0]["kind"], "ldm", "{found}");
    assert_eq!(found["partitions"][0]["type"], "0x42", "{found}");
    // The plan's own dynamic disk: a second dry-run keeps everything.
    let again = Rplan::new()
        .args(["dry-run", p.to_str().unwrap()])
        .args(&targets)
        .run()
        .code(0);
    assert!(!again.stdout.contains("will destroy"), "{}", again.stdout);
    assert!(
        again.stdout.contains("= dynamic      LDM: a"),
        "{}",
        again.stdout
    );
}

#[test]
fn a_resume_never_writes_another_disk_that_took_the_targets_path() {
    let dir = tempfile::tempdir().unwrap();
    let plan = foreign::plan(dir.path());
    let img = foreign::make(dir.path(), "foreign-dos");
    let journal = dir.path().join("j");
    let crashed = apply(&plan, &img, &journal, &["--force"])
        .env("RPLAN_CRASH_AT", "asr/d0/clear:1")
        .run();
    assert_ne!(crashed.code, 0, "the run was not interrupted");
    // After the "reboot", another disk answers to the same path.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = foreign::make(&other_dir, "whole-ext4");
    std::fs::rename(&other, &img).unwrap();
    let before = sha(&img);
    let run = apply(&plan, &img, &journal, &["--resume"]).run().code(4);
    assert!(
        run.stderr.contains("RP0720") && run.stderr.contains("WHOLE"),
        "{}",
        run.stderr
    );
    assert_eq!(sha(&img), before, "the other disk was written");
}
