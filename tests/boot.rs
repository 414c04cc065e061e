//! A bootable MBR: `boot_code: { artifact: ID }` writes the 440 bytes of
//! boot code, `--boot-code FILE` supplies them for the system disk, and a
//! blank system disk without either is warned about at its check step.
//! Judged with sfdisk (the table and signature stay intact) and cmp.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn head(path: &Path, len: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[..len].to_vec()
}

/// Pseudo-random "boot code" (what matters is that every byte lands).
fn code(seed: u8) -> Vec<u8> {
    (0..440u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A one-disk plan; `boot_code` is the disk's `boot_code:` line or "".
fn plan(dir: &Path, boot_code: &str) -> PathBuf {
    std::fs::write(dir.join("mbr.bin"), code(7)).unwrap();
    let sha = sha(&dir.join("mbr.bin"));
    let artifacts = if boot_code.is_empty() {
        String::new()
    } else {
        format!("backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: mbr, path: mbr.bin, format: file, size: 440, sha256: {sha} }}\n")
    };
    let text = format!(
        "version: 1\nname: boot\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n{artifacts}disks:\n  - id: d0\n    critical: true\n    table: mbr\n    signature: \"0x0b007c0d\"\n    size: 32MiB\n{boot_code}    partitions:\n      - {{ id: c, size: 16MiB, type: fat16, bootable: true, content: {{ format: {{ fs: fat16, label: C }} }} }}\nstages:\n  - {{ id: asr, kind: asr }}\n"
    );
    let p = dir.join("plan.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn apply(dir: &Path, plan: &Path, img: &Path, extra: &[&str]) -> Run {
    Rplan::new()
        .args([
            "apply",
            plan.to_str().unwrap(),
            "--yes",
            "--journal",
            dir.join("j").to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
        ])
        .args(extra)
        .run()
}

fn assert_table_intact(img: &Path) {
    let t: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", img.to_str().unwrap()])).unwrap();
    assert_eq!(t["partitiontable"]["id"], "0x0b007c0d", "{t}");
    let p = &t["partitiontable"]["partitions"][0];
    assert_eq!(p["bootable"], true, "{t}");
    assert_eq!(p["type"], "6", "{t}");
}

#[test]
fn the_plans_boot_code_artifact_is_written_to_the_mbr() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "    boot_code: { artifact: mbr }\n");
    let img = image(dir.path(), "d0.img", 32 * MIB);
    let run = apply(dir.path(), &p, &img, &[]).code(0);
    assert!(!run.stderr.contains("RP0341"), "{}", run.stderr);
    assert_eq!(head(&img, 440), code(7));
    assert_table_intact(&img);
    // A second apply finds the table, boot code included, in place.
    let before = sha(&img);
    apply(dir.path(), &p, &img, &[]).code(0);
    assert_eq!(before, sha(&img));
}

#[test]
fn boot_code_flag_supplies_the_system_disks_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "");
    let img = image(dir.path(), "d0.img", 32 * MIB);
    let file = dir.path().join("syslinux-mbr.bin");
    std::fs::write(&file, code(99)).unwrap();
    let run = apply(
        dir.path(),
        &p,
        &img,
        &["--boot-code", file.to_str().unwrap()],
    )
    .code(0);
    assert!(!run.stderr.contains("RP0341"), "{}", run.stderr);
    assert_eq!(head(&img, 440), code(99));
    assert_table_intact(&img);
    // A file that is not boot code is a usage error, before anything is written.
    let blank = image(dir.path(), "other.img", 32 * MIB);
    std::fs::write(&file, vec![1u8; 1000]).unwrap();
    apply(
        dir.path(),
        &p,
        &blank,
        &["--boot-code", file.to_str().unwrap()],
    )
    .code(2);
    assert!(std::fs::read(&blank).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn a_blank_system_disk_without_boot_code_is_warned_and_existing_code_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "");
    let img = image(dir.path(), "d0.img", 32 * MIB);
    let run = apply(dir.path(), &p, &img, &[]).code(0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("RP0341") && out.contains("no MBR boot code"),
        "{out}"
    );
    assert!(head(&img, 440).iter().all(|&b| b == 0));
    // Boot code put there since (by an installer) is kept by a re-apply.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[..440].copy_from_slice(&code(3));
    std::fs::write(&img, &bytes).unwrap();
    let run = apply(dir.path(), &p, &img, &[]).code(0);
    assert!(!format!("{}{}", run.stdout, run.stderr).contains("RP0341"));
    assert_eq!(head(&img, 440), code(3));
    assert_table_intact(&img);
}

#[test]
fn boot_code_must_be_a_file_artifact_of_440_to_512_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "    boot_code: { artifact: mbr }\n");
    let text = std::fs::read_to_string(&p).unwrap();
    // Stated as 1000 bytes: an error at the disk's `boot_code.artifact`.
    let wrong = text.replace("size: 440", "size: 1000");
    std::fs::write(&p, wrong).unwrap();
    let run = Rplan::new()
        .args([
            "check",
            "--no-artifacts",
            "--format",
            "json",
            p.to_str().unwrap(),
        ])
        .run()
        .code(1);
    assert!(
        codes_at(&run).contains(&("RP0341".to_string(), 16, 28)),
        "{}",
        run.stdout
    );
    let dangling = text.replace(
        "boot_code: { artifact: mbr }",
        "boot_code: { artifact: mbrr }",
    );
    std::fs::write(&p, dangling).unwrap();
    let run = Rplan::new()
        .args([
            "check",
            "--no-artifacts",
            "--format",
            "json",
            p.to_str().unwrap(),
        ])
        .run()
        .code(1);
    assert!(
        codes_at(&run)
            .iter()
            .any(|(c, l, _)| c == "RP0502" && *l == 16),
        "{}",
        run.stdout
    );
}

fn check(plan: &Path, extra: &[&str]) -> Run {
    Rplan::new()
        .args(["check", "--no-artifacts"])
        .args(extra)
        .arg(plan.to_str().unwrap())
        .run()
}

fn write_plan(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("plan.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_system_disk_without_an_active_partition_is_an_error_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(", bootable: true"));
    std::fs::write(&p, text.replace(", bootable: true", "")).unwrap();
    // An error (not a warning) at the system disk's `partitions`: exit 1.
    let run = check(&p, &["--format", "json"]).code(1);
    let json = run.json();
    let boot: Vec<_> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "RP0341")
        .collect();
    assert_eq!(boot.len(), 1, "{}", run.stdout);
    assert_eq!(boot[0]["severity"], "error", "{}", run.stdout);
    assert_eq!(boot[0]["pointer"], "/disks/0/partitions", "{}", run.stdout);
    assert_eq!(
        (boot[0]["line"].as_i64(), boot[0]["column"].as_i64()),
        (Some(12), Some(7)),
        "{}",
        run.stdout
    );
    assert!(
        boot[0]["help"]
            .as_str()
            .unwrap()
            .contains("mark Windows' system partition `bootable: true`"),
        "{}",
        run.stdout
    );
    // The people's rendering says the same, and exits 1 too.
    let run = check(&p, &[]).code(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("RP0341") && out.contains("no partition is active"),
        "{out}"
    );
    // And it is not compiled.
    Rplan::new()
        .args(["compile", "--no-artifacts", p.to_str().unwrap(), "-o", "-"])
        .run()
        .code(1);
}

/// A plan with no basic MBR disk has no system disk for RP0341 to check.
#[test]
fn plans_of_dynamic_or_gpt_data_disks_alone_need_no_active_partition() {
    let dir = tempfile::tempdir().unwrap();
    // Only dynamic disks (LDM members of a spanned volume), critical ones.
    let dynamic = write_plan(
        dir.path(),
        "version: 1\nname: dyn\nsystem: { os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }\nmedia: { build: sp2-slipstream }\ndisks:\n  - { id: d1, critical: true, table: mbr, signature: \"0x1\", size: 512MiB,\n      partitions: [ { id: m, size: 256MiB, type: ldm } ] }\n  - { id: d2, critical: true, table: mbr, signature: \"0x2\", size: 512MiB,\n      partitions: [ { id: m, size: 256MiB, type: ldm } ] }\nvolumes:\n  - { id: v, layout: spanned, members: [d1/m, d2/m], critical: true, content: { format: { fs: ntfs, label: DATA } } }\nstages:\n  - { id: asr, kind: asr }\n",
    );
    let run = check(&dynamic, &[]).code(0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(!out.contains("RP0341"), "{out}");
    // Only GPT data disks (XP x64 sees them).
    let gpt = write_plan(
        dir.path(),
        "version: 1\nname: gpt\nsystem: { os: windows-xp, edition: professional, arch: x64, build: sp2-slipstream, language: en }\nmedia: { build: sp2-slipstream }\ndisks:\n  - { id: g, critical: false, table: gpt, guid: 7c2a8e4f-6b1d-4c3e-9f5a-2d8e7f0a1b3c, size: 1GiB,\n      partitions: [ { id: d, size: 512MiB, type: ntfs } ] }\nstages:\n  - { id: safe-mode, kind: safe-mode, actions: [ { run: [/bin/true] } ] }\n",
    );
    let run = check(&gpt, &[]).code(0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(!out.contains("RP0341"), "{out}");
    // A non-critical basic MBR data disk next to them is no system disk either.
    let text = std::fs::read_to_string(&gpt).unwrap().replace(
        "stages:",
        "  - { id: m, critical: false, table: mbr, signature: \"0x3\", size: 1GiB,\n      partitions: [ { id: d, size: 512MiB, type: ntfs } ] }\nstages:",
    );
    std::fs::write(&gpt, text).unwrap();
    let run = check(&gpt, &[]).code(0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(!out.contains("RP0341"), "{out}");
}

#[test]
fn new_boot_code_on_a_restored_disk_changes_only_the_boot_code() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path(), "");
    let img = image(dir.path(), "d0.img", 32 * MIB);
    apply(dir.path(), &p, &img, &[]).code(0);
    let mut before = std::fs::read(&img).unwrap();
    // Now with boot code: only those 440 bytes may change; the restored
    // partitions are not cleared and made again.
    let file = dir.path().join("syslinux-mbr.bin");
    std::fs::write(&file, code(42)).unwrap();
    // dry-run takes the same code and predicts just that.
    let dry = Rplan::new()
        .args(["dry-run", p.to_str().unwrap(), "--boot-code"])
        .arg(file.to_str().unwrap())
        .arg("--target")
        .arg(format!("d0={}", img.display()))
        .run()
        .code(0);
    assert!(
        dry.stdout.contains("partition table: 512B would change")
            && !dry.stdout.contains("partition c:"),
        "{}",
        dry.stdout
    );
    let run = apply(
        dir.path(),
        &p,
        &img,
        &["--boot-code", file.to_str().unwrap(), "--format", "json"],
    )
    .code(0);
    // Only the table step wrote (the boot code); clearing, formatting and
    // restoring found their work in place.
    let wrote: Vec<String> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step-finished" && e["outcome"] == "ok")
        .filter_map(|e| e["step"].as_str().map(String::from))
        .filter(|s| {
            s.starts_with("asr/")
                && !s.ends_with("/check")
                && !s.ends_with("/verify")
                && s != "asr/success"
        })
        .collect();
    assert_eq!(wrote, ["asr/d0/table"], "{}", run.stdout);
    let after = std::fs::read(&img).unwrap();
    assert_eq!(&after[..440], &code(42)[..]);
    before[..440].copy_from_slice(&code(42));
    assert!(before == after, "bytes other than the boot code changed");
}
