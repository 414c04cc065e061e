//! `rplan check` against what an outside review threw at it (issue 10):
//! what check accepts, apply must be able to do; hostile or huge input
//! returns promptly with a coded diagnostic; messages point at the cause.
//!
//! One-defect plans live in tests/data/invalid/ (the corpus); here are the
//! cases that need a generated file, a warning rather than an error, an
//! exact count of diagnostics, or 4096-byte sectors.

mod common;
use common::*;

use serde_json::Value;
use std::path::{Path, PathBuf};

/// A small valid plan; `disks` and `stages` are YAML blocks at column 0.
fn plan(disks: &str, stages: &str) -> String {
    format!(
        "version: 1\nname: pc07\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\n\
         media: {{ build: sp2-slipstream }}\n{disks}{stages}"
    )
}

const ONE_DISK: &str = "disks:
  - id: disk0
    critical: true
    table: mbr
    signature: \"0x1a2b3c4d\"
    size: 1GiB
    partitions:
      - { id: boot, size: 64MiB, type: fat32, bootable: true, content: { format: { fs: fat32, label: BOOT } } }
";

const LADDER: &str = "stages:
  - { id: safe-mode, kind: safe-mode, actions: [ { manual: \"Boot with F8, choose Safe Mode\" } ] }
  - { id: asr, kind: asr }
";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn check(path: &Path) -> (i32, Value) {
    check_with(path, &[])
}

/// The platform layer that confines the XP facts away (tests/data): for
/// the tests of FAT arithmetic on 4096-byte sectors, which XP itself
/// refuses (RP0220, tests/platform.rs).
fn no_platform() -> String {
    root()
        .join("tests/data/no-platform.yaml")
        .to_string_lossy()
        .into_owned()
}

fn check_with(path: &Path, extra: &[&str]) -> (i32, Value) {
    let run = Rplan::new()
        .args(["check", "--format", "json"])
        .args(extra)
        .arg(path.to_string_lossy())
        .run();
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let json = run.json();
    (run.code, json)
}

fn diags(json: &Value) -> Vec<Value> {
    json["diagnostics"].as_array().cloned().unwrap_or_default()
}

fn codes(json: &Value) -> Vec<String> {
    diags(json)
        .iter()
        .map(|d| d["code"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn said(d: &Value) -> String {
    format!(
        "{} {}",
        d["message"].as_str().unwrap_or_default(),
        d["help"].as_str().unwrap_or_default()
    )
}

#[test]
fn the_base_plan_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (code, json) = check(&write(dir.path(), "p.yaml", &plan(ONE_DISK, LADDER)));
    assert_eq!((code, codes(&json)), (0, vec![]), "{json}");
}

// ---- what check accepts, apply must be able to do

#[test]
fn fat32_on_4096_byte_sectors_needs_its_minimum_cluster_count() {
    let dir = tempfile::tempdir().unwrap();
    let disk = |size: &str| {
        format!(
            "disks:\n  - {{ id: disk0, critical: true, table: mbr, signature: \"0x1a2b3c4d\", sector_size: 4096, size: 4GiB,\n      \
             partitions: [ {{ id: boot, size: {size}, type: fat32, bootable: true, content: {{ format: {{ fs: fat32 }} }} }} ] }}\n"
        )
    };
    let rules = no_platform();
    let rules = ["--rules", rules.as_str()];
    // 200 MiB of 4 KiB clusters is about 51 000 clusters: FAT16 to Windows.
    let (code, json) = check_with(
        &write(dir.path(), "small.yaml", &plan(&disk("200MiB"), LADDER)),
        &rules,
    );
    assert_eq!(code, 1, "{json}");
    let d = &diags(&json)[0];
    assert_eq!(d["code"], "RP0321", "{json}");
    assert_eq!(d["pointer"], "/disks/0/partitions/0/content/format/fs");
    assert!(
        said(d).contains("clusters") && said(d).contains("4096-byte"),
        "{json}"
    );
    // On 512-byte sectors the same size is fine, and so is 300 MiB on 4 KiB.
    let (code, json) = check(&write(
        dir.path(),
        "ok512.yaml",
        &plan(
            &disk("200MiB").replace("sector_size: 4096", "sector_size: 512"),
            LADDER,
        ),
    ));
    assert_eq!((code, codes(&json)), (0, vec![]), "{json}");
    let (code, json) = check_with(
        &write(dir.path(), "ok.yaml", &plan(&disk("300MiB"), LADDER)),
        &rules,
    );
    assert_eq!((code, codes(&json)), (0, vec![]), "{json}");
}

#[test]
fn fat16_sizes_follow_mkfs_fat() {
    let dir = tempfile::tempdir().unwrap();
    // 4096-byte sectors are an XP platform error (RP0220); this is about FAT.
    let rules = no_platform();
    let rules = ["--rules", rules.as_str()];
    let disk = |size: &str, ss: u32| {
        format!(
            "disks:\n  - {{ id: disk0, critical: true, table: mbr, signature: \"0x1a2b3c4d\", sector_size: {ss}, size: 4GiB,\n      \
             partitions: [ {{ id: boot, size: {size}, type: fat16, bootable: true, content: {{ format: {{ fs: fat16 }} }} }} ] }}\n"
        )
    };
    for (size, ss, ok) in [
        ("4MiB", 512, false),
        ("16MiB", 512, true),
        ("32MiB", 4096, false),
        ("128MiB", 4096, true),
    ] {
        let (code, json) = check_with(
            &write(dir.path(), "p.yaml", &plan(&disk(size, ss), LADDER)),
            &rules,
        );
        if ok {
            assert_eq!((code, codes(&json)), (0, vec![]), "{size} on {ss}: {json}");
        } else {
            assert_eq!(
                (code, codes(&json)),
                (1, vec!["RP0321".to_string()]),
                "{size} on {ss}: {json}"
            );
        }
    }
}

#[test]
fn duplicate_gpt_guids_across_disks_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let guid = "6f1c2a8e-4b7d-4e3a-9c51-2d8e7f0a1b3c";
    let part = "0c3f7e21-5a9b-4d6c-8e2f-7b1a9d4c6e50";
    let disks = format!(
        "disks:\n\
         \x20 - {{ id: disk0, critical: true, table: gpt, guid: {guid}, size: 1GiB, partitions: [ {{ id: a, size: 64MiB, type: ntfs, guid: {part} }} ] }}\n\
         \x20 - {{ id: disk1, table: gpt, guid: {guid}, size: 1GiB, partitions: [ {{ id: b, size: 64MiB, type: ntfs, guid: {part} }} ] }}\n"
    );
    let (code, json) = check(&write(dir.path(), "p.yaml", &plan(&disks, LADDER)));
    assert_eq!(code, 1);
    let pointers: Vec<String> = diags(&json)
        .iter()
        .filter(|d| d["code"] == "RP0311")
        .map(|d| d["pointer"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        pointers,
        ["/disks/1/guid", "/disks/1/partitions/0/guid"],
        "{json}"
    );
}

#[test]
fn a_derived_signature_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let disks = ONE_DISK.replace("    signature: \"0x1a2b3c4d\"\n", "");
    let (code, json) = check(&write(dir.path(), "p.yaml", &plan(&disks, LADDER)));
    assert_eq!(code, 0, "{json}");
    let d = &diags(&json)[0];
    assert_eq!(
        (d["code"].as_str(), d["severity"].as_str()),
        (Some("RP0309"), Some("warning"))
    );
    assert_eq!(
        (d["line"].as_i64(), d["column"].as_i64()),
        (Some(6), Some(5)),
        "{json}"
    );
    assert!(said(d).contains("MountedDevices"), "{json}");
    // Two disks that would derive… no: two disks given the same signature.
    let two = format!(
        "{ONE_DISK}  - {{ id: disk1, table: mbr, signature: \"0x1A2B3C4D\", size: 1GiB, partitions: [ {{ id: d, size: 64MiB, type: ntfs }} ] }}\n"
    );
    let (code, json) = check(&write(dir.path(), "two.yaml", &plan(&two, LADDER)));
    assert_eq!(
        (code, codes(&json)),
        (1, vec!["RP0328".to_string()]),
        "{json}"
    );
}

#[test]
fn an_mbr_disk_over_2_tib_is_refused_at_check() {
    let dir = tempfile::tempdir().unwrap();
    // One sector more than MBR addresses, with a `rest` partition.
    let disks = "disks:\n  - { id: disk0, critical: true, table: mbr, signature: \"0x1a2b3c4d\", size: 4294967297s,\n      \
                 partitions: [ { id: data, size: rest, type: ntfs, bootable: true } ] }\n";
    let (code, json) = check(&write(dir.path(), "p.yaml", &plan(disks, LADDER)));
    assert_eq!(
        (code, codes(&json)),
        (1, vec!["RP0308".to_string()]),
        "{json}"
    );
}

// ---- time limits

#[test]
fn an_action_timeout_beyond_its_stage_is_flagged_at_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let stages = "stages:
  - id: safe-mode
    kind: safe-mode
    timeout: 15m
    actions:
      - run: [/usr/local/sbin/bmc-boot, pc07, safe]
        timeout: 2h
    success: { run: [/usr/local/sbin/probe-boot], timeout: 20m }
  - { id: asr, kind: asr }
";
    let (code, json) = check(&write(dir.path(), "p.yaml", &plan(ONE_DISK, stages)));
    assert_eq!(code, 0, "{json}");
    let found: Vec<(String, i64, i64)> = diags(&json)
        .iter()
        .map(|d| {
            assert!(said(d).contains("15m"), "{json}");
            (
                d["code"].as_str().unwrap_or_default().to_string(),
                d["line"].as_i64().unwrap_or(0),
                d["column"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("RP0414".to_string(), 19, 18),
            ("RP0414".to_string(), 20, 60)
        ],
        "{json}"
    );
}

#[test]
fn thirty_days_is_the_longest_duration() {
    let dir = tempfile::tempdir().unwrap();
    let stages = |t: &str| {
        LADDER.replace(
            "kind: safe-mode,",
            &format!("kind: safe-mode, timeout: {t},"),
        )
    };
    let (code, json) = check(&write(
        dir.path(),
        "ok.yaml",
        &plan(ONE_DISK, &stages("720h")),
    ));
    assert_eq!((code, codes(&json)), (0, vec![]), "{json}");
    let (code, json) = check(&write(
        dir.path(),
        "long.yaml",
        &plan(ONE_DISK, &stages("721h")),
    ));
    assert_eq!(
        (code, codes(&json)),
        (1, vec!["RP0106".to_string()]),
        "{json}"
    );
}

// ---- bounds

#[test]
fn dev_zero_is_refused_promptly_with_a_diagnostic() {
    let run = Rplan::new()
        .args(["check", "--format", "json", "/dev/zero"])
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(codes(&run.json()), ["RP0109"]);
}

#[test]
fn a_plan_over_4_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = plan(ONE_DISK, LADDER);
    text.push_str(&format!("# {}\n", "x".repeat(5 << 20)));
    let (code, json) = check(&write(dir.path(), "big.yaml", &text));
    assert_eq!(
        (code, codes(&json)),
        (2, vec!["RP0109".to_string()]),
        "{json}"
    );
}

#[test]
fn deep_flow_nesting_is_refused_at_its_depth() {
    let dir = tempfile::tempdir().unwrap();
    // 400 KB of `[`: took 28 s before it was refused up front.
    let text = format!("version: 1\nname: {}\n", "[".repeat(400_000));
    let (code, json) = check(&write(dir.path(), "deep.yaml", &text));
    assert_eq!(code, 1);
    let d = &diags(&json)[0];
    assert_eq!(
        (d["code"].as_str(), d["line"].as_i64(), d["column"].as_i64()),
        (Some("RP0101"), Some(2), Some(7 + 128))
    );
    assert!(said(d).contains("nested"), "{json}");
}

#[test]
fn forty_thousand_errors_are_capped_in_json_and_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let typos: String = (0..40_000).map(|i| format!("unknwn{i}: 1\n")).collect();
    let text = plan(ONE_DISK, LADDER).replacen("version: 1\n", &format!("version: 1\n{typos}"), 1);
    let path = write(dir.path(), "typos.yaml", &text);
    // JSON lists the first 10 000 and counts the rest in a last one.
    let (code, json) = check(&path);
    let all = diags(&json);
    assert_eq!((code, all.len()), (1, 10_001));
    assert!(
        said(&all[10_000]).contains("30000 more problems"),
        "{}",
        all[10_000]
    );
    let run = Rplan::new()
        .args(["check"])
        .arg(path.to_string_lossy())
        .run()
        .code(1);
    assert!(
        run.stderr.contains("and 9501 more diagnostics not shown"),
        "{}",
        &run.stderr[run.stderr.len().saturating_sub(500)..]
    );
    assert!(run
        .stderr
        .ends_with("10001 errors, 0 warnings\n1 plan checked: 1 with errors\n"));
}

// ---- messages that pointed the wrong way

#[test]
fn merge_keys_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    // An anchor on one partition, merged into the next two.
    let text = plan(
        "disks:
  - id: disk0
    critical: true
    table: mbr
    signature: \"0x1a2b3c4d\"
    size: 1GiB
    partitions:
      - &part { id: a, size: 64MiB, type: ntfs }
      - { <<: *part, id: b, bootable: true }
      - <<: *part
        id: c
        size: 128MiB
",
        LADDER,
    );
    let (code, json) = check(&write(dir.path(), "merge.yaml", &text));
    assert_eq!((code, codes(&json)), (0, vec![]), "{json}");
    let bad = text.replace("<<: *part, id: b,", "<<: 5, id: b,");
    let (code, json) = check(&write(dir.path(), "bad.yaml", &bad));
    assert_eq!(code, 1);
    let d = &diags(&json)[0];
    assert_eq!(d["code"], "RP0101", "{json}");
    assert!(said(d).contains("merge"), "{json}");
}

#[test]
fn tabs_get_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let text = plan(ONE_DISK, LADDER).replace("    table: mbr", "\ttable: mbr");
    let (code, json) = check(&write(dir.path(), "tab.yaml", &text));
    assert_eq!(code, 1);
    assert!(
        said(&diags(&json)[0]).contains("YAML forbids tabs"),
        "{json}"
    );
}

#[test]
fn a_partition_past_the_end_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let disks = "disks:
  - id: disk0
    critical: true
    table: mbr
    signature: \"0x1a2b3c4d\"
    size: 1GiB
    partitions:
      - { id: big, size: 2GiB, type: ntfs, bootable: true }
      - { id: next, size: 64MiB, type: fat32, content: { format: { fs: fat32 } } }
      - { id: last, size: rest, type: ntfs }
";
    let (code, json) = check(&write(dir.path(), "p.yaml", &plan(disks, LADDER)));
    assert_eq!(
        (code, codes(&json)),
        (1, vec!["RP0303".to_string()]),
        "{json}"
    );
    assert!(!json.to_string().contains("at most 0B"), "{json}");
}

/// The size check suggests for a FAT filesystem is one apply can make: on
/// 512- and 4096-byte sectors, the smallest size check accepts formats on a
/// sparse image (mkfs.fat and the runtime's cluster check agree with it).
#[test]
fn the_smallest_fat_check_accepts_is_one_apply_makes() {
    let dir = tempfile::tempdir().unwrap();
    // 4096-byte sectors are an XP platform error (RP0220); this is about FAT.
    let rules = no_platform();
    let rules = ["--rules", rules.as_str()];
    let disk = |fs: &str, ss: u32, size: &str| {
        format!(
            "version: 1\nname: pc07\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\n\
             media: {{ build: sp2-slipstream }}\n\
             disks:\n  - {{ id: disk0, critical: true, table: mbr, signature: \"0x1a2b3c4d\", sector_size: {ss}, size: 1GiB,\n      \
             partitions: [ {{ id: p, size: {size}, type: {fs}, bootable: true, content: {{ format: {{ fs: {fs} }} }} }} ] }}\n\
             stages:\n  - {{ id: asr, kind: asr }}\n"
        )
    };
    for (fs, ss) in [
        ("fat32", 4096),
        ("fat16", 4096),
        ("fat32", 512),
        ("fat16", 512),
    ] {
        let (code, json) = check_with(
            &write(dir.path(), "small.yaml", &disk(fs, ss, "2MiB")),
            &rules,
        );
        assert_eq!(code, 1, "{json}");
        let help = diags(&json)[0]["help"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let size = help
            .strip_prefix("make it at least ")
            .and_then(|h| h.split_whitespace().next())
            .unwrap_or_else(|| panic!("{fs} on {ss}: no size in {help:?}"))
            .to_string();
        let plan = write(dir.path(), "fits.yaml", &disk(fs, ss, &size));
        let (code, json) = check_with(&plan, &rules);
        assert_eq!(code, 0, "{fs} {size} on {ss}: {json}");
        let target = image(dir.path(), &format!("{fs}-{ss}.img"), 1 << 30);
        Rplan::new()
            .args(["apply", "--yes", "--journal"])
            .arg(dir.path().to_string_lossy())
            .arg(plan.to_string_lossy())
            .arg("--target")
            .arg(format!("disk0={}", target.display()))
            .args(rules)
            .run()
            .code(0);
    }
}
