//! The platform rules: what the restored Windows XP can boot and see, per
//! `system.edition` and `system.arch`, each fact reported at the line that
//! breaks it (compiler/rules/xp-platform.yaml, shown by `rplan rules`).

mod common;
use common::*;

/// A plan whose `system` has `edition`/`arch` (omitted when empty), then
/// `disks` and `volumes` as given (YAML text, indented by two). Line 1 is
/// `version`, `system` spans lines 3-8, `disks:` is line 10.
fn plan(edition: &str, arch: &str, disks: &str, volumes: &str) -> String {
    let line = |k: &str, v: &str| {
        if v.is_empty() {
            "  # (absent)\n".to_string()
        } else {
            format!("  {k}: {v}\n")
        }
    };
    format!(
        "version: 1\nname: platform\nsystem:\n  os: windows-xp\n  build: sp2-slipstream\n  language: en\n{}{}media: {{ build: sp2-slipstream }}\ndisks:\n{disks}{}stages:\n  - {{ id: asr, kind: asr }}\n",
        line("edition", edition),
        line("arch", arch),
        if volumes.is_empty() {
            String::new()
        } else {
            format!("volumes:\n{volumes}")
        }
    )
}

/// An MBR system disk with an active partition (lines 11-12).
const SYSTEM_MBR: &str = "  - { id: sys, critical: true, table: mbr, signature: \"0x1\", size: 1GiB,\n      partitions: [ { id: c, size: 512MiB, type: ntfs, bootable: true } ] }\n";
/// The same as GPT (lines 11-12; `table` at 11:39).
const SYSTEM_GPT: &str = "  - { id: sys, critical: true, table: gpt, guid: 5b1f6c2e-1d3a-4e5f-8a9b-0c1d2e3f4a5b, size: 1GiB,\n      partitions: [ { id: c, size: 512MiB, type: ntfs, bootable: true } ] }\n";
/// A GPT data disk after SYSTEM_MBR (lines 13-14; `table` at 13:41).
const DATA_GPT: &str = "  - { id: data, critical: false, table: gpt, guid: 7c2a8e4f-6b1d-4c3e-9f5a-2d8e7f0a1b3c, size: 1GiB,\n      partitions: [ { id: d, size: 512MiB, type: ntfs } ] }\n";

fn check(text: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plan.yaml");
    std::fs::write(&p, text).unwrap();
    Rplan::new()
        .args(["check", "--format", "json", p.to_str().unwrap()])
        .args(extra)
        .run()
}

/// (code, line, column, severity) of every diagnostic but the ladder's
/// (these plans have ASR as their only stage, RP0405).
fn found(run: &Run) -> Vec<(String, i64, i64, String)> {
    run.json()["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] != "RP0405")
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_i64().unwrap_or(0),
                d["column"].as_i64().unwrap_or(0),
                d["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn platform(run: &Run) -> Vec<(i64, i64, String)> {
    found(run)
        .into_iter()
        .filter(|(c, ..)| c == "RP0220")
        .map(|(_, l, c, s)| (l, c, s))
        .collect()
}

fn err(line: i64, col: i64) -> (i64, i64, String) {
    (line, col, "error".into())
}

fn message(run: &Run, code: &str) -> String {
    run.json()["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == code)
        .map(|d| format!("{} | {}", d["message"], d["help"]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_valid_plan_has_no_platform_diagnostics() {
    for (edition, arch) in [("home", "x86"), ("professional", "x64"), ("tablet", "x86")] {
        let run = check(&plan(edition, arch, SYSTEM_MBR, ""), &[]).code(0);
        assert!(found(&run).is_empty(), "{edition}/{arch}: {}", run.stdout);
    }
}

#[test]
fn xp_cannot_boot_from_gpt_on_either_architecture() {
    for arch in ["x86", "x64"] {
        for edition in ["home", "professional"] {
            let run = check(&plan(edition, arch, SYSTEM_GPT, ""), &[]).code(1);
            // One error, at the system disk's `table`, naming the fact.
            assert_eq!(platform(&run), vec![err(11, 39)], "{edition}/{arch}");
            let m = message(&run, "RP0220");
            assert!(m.contains("cannot boot from a GPT disk"), "{m}");
            assert!(m.contains("xp-platform#gpt-boot"), "{m}");
            assert!(m.contains("Windows and GPT FAQ"), "{m}");
        }
    }
}

#[test]
fn gpt_data_disks_are_an_error_on_x86_and_fine_on_x64() {
    let disks = format!("{SYSTEM_MBR}{DATA_GPT}");
    for edition in ["home", "professional"] {
        let run = check(&plan(edition, "x86", &disks, ""), &[]).code(1);
        assert_eq!(platform(&run), vec![err(13, 41)], "{edition}");
        let m = message(&run, "RP0220");
        assert!(m.contains("32-bit Windows XP cannot see GPT disks"), "{m}");
        assert!(m.contains("arch: x64"), "{m}");
        let run = check(&plan(edition, "x64", &disks, ""), &[]).code(0);
        assert!(platform(&run).is_empty(), "{edition}/x64: {}", run.stdout);
    }
}

#[test]
fn four_k_native_sectors_are_an_error() {
    let disks = "  - { id: sys, critical: true, table: mbr, signature: \"0x1\", size: 1GiB,\n      sector_size: 4096,\n      partitions: [ { id: c, size: 512MiB, type: ntfs, bootable: true } ] }\n";
    for (edition, arch) in [("home", "x86"), ("professional", "x64")] {
        let run = check(&plan(edition, arch, disks, ""), &[]).code(1);
        assert_eq!(platform(&run), vec![err(12, 20)], "{edition}/{arch}");
        assert!(message(&run, "RP0220").contains("KB 2510009"));
    }
}

/// Two 1 GiB MBR data disks after the system disk, one member each.
fn volume_plan(edition: &str, layout: &str, members: usize) -> String {
    let mut disks = SYSTEM_MBR.to_string();
    for i in 0..members {
        disks.push_str(&format!(
            "  - {{ id: d{i}, table: mbr, signature: \"0x{:x}\", size: 1GiB, partitions: [ {{ id: m, size: 256MiB, type: ldm }} ] }}\n",
            0x10 + i
        ));
    }
    let names: Vec<String> = (0..members).map(|i| format!("d{i}/m")).collect();
    // The volume is on line 14 + members; `layout` at column 22.
    plan(
        edition,
        "x86",
        &disks,
        &format!(
            "  - {{ id: v, layout: {layout}, members: [{}] }}\n",
            names.join(", ")
        ),
    )
}

#[test]
fn home_has_no_dynamic_disks() {
    for (layout, n) in [("simple", 1), ("spanned", 2), ("striped", 2)] {
        let run = check(&volume_plan("home", layout, n), &[]).code(1);
        let line = 14 + n as i64;
        assert_eq!(platform(&run), vec![err(line, 22)], "{layout}");
        assert!(message(&run, "RP0220").contains("Home Edition has no dynamic disks"));
        assert!(message(&run, "RP0220").contains("KB 309044"));
    }
}

#[test]
fn professional_has_simple_spanned_and_striped_only() {
    for edition in ["professional", "media-center", "tablet"] {
        for (layout, n) in [("simple", 1), ("spanned", 2), ("striped", 2)] {
            let run = check(&volume_plan(edition, layout, n), &[]).code(0);
            assert!(
                platform(&run).is_empty(),
                "{edition}/{layout}: {}",
                run.stdout
            );
        }
        for (layout, n) in [("mirrored", 2), ("raid5", 3)] {
            let run = check(&volume_plan(edition, layout, n), &[]).code(1);
            let line = 14 + n as i64;
            assert_eq!(platform(&run), vec![err(line, 22)], "{edition}/{layout}");
            let m = message(&run, "RP0220");
            assert!(m.contains("Windows Server features"), "{m}");
            // The help never suggests another forbidden layout.
            assert!(!m.contains("`mirrored`") && !m.contains("`raid5`"), "{m}");
        }
    }
}

#[test]
fn a_server_ruleset_layered_with_rules_allows_mirrors() {
    let server = root().join("tests/data/server-volumes.yaml");
    let run = check(
        &volume_plan("professional", "mirrored", 2),
        &["--rules", server.to_str().unwrap()],
    )
    .code(0);
    assert!(platform(&run).is_empty(), "{}", run.stdout);
}

#[test]
fn fat16_above_4gib_is_an_error_and_above_2gib_a_warning() {
    let disk = |size: &str| {
        format!("  - {{ id: sys, critical: true, table: mbr, signature: \"0x1\", size: 8GiB,\n      partitions: [ {{ id: c, type: fat16, bootable: true,\n          size: {size},\n          content: {{ format: {{ fs: fat16 }} }} }} ] }}\n")
    };
    let run = check(&plan("professional", "x86", &disk("5GiB"), ""), &[]).code(1);
    assert_eq!(platform(&run), vec![err(13, 17)]);
    assert!(message(&run, "RP0220").contains("KB 118335"));
    let run = check(&plan("home", "x86", &disk("3GiB"), ""), &[]).code(0);
    assert_eq!(platform(&run), vec![(13, 17, "warning".into())]);
    assert!(message(&run, "RP0220").contains("64 KiB clusters"));
    let run = check(&plan("home", "x86", &disk("2GiB"), ""), &[]).code(0);
    assert!(platform(&run).is_empty(), "{}", run.stdout);
}

#[test]
fn absent_edition_and_arch_are_checked_as_professional_x86_with_a_warning() {
    let run = check(&plan("", "", SYSTEM_MBR, ""), &[]).code(0);
    let f = found(&run);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].0.as_str(), f[0].1, f[0].3.as_str()),
        ("RP0221", 4, "warning")
    );
    check(&plan("", "", SYSTEM_MBR, ""), &["--strict"]).code(1);
    // x86 is assumed: a GPT data disk is an error until `arch: x64` says otherwise.
    let run = check(
        &plan("professional", "", &format!("{SYSTEM_MBR}{DATA_GPT}"), ""),
        &[],
    )
    .code(1);
    assert_eq!(platform(&run), vec![err(13, 41)]);
    // Professional is assumed: striped volumes pass.
    let text = volume_plan("", "striped", 2);
    let run = check(&text, &[]).code(0);
    assert!(platform(&run).is_empty(), "{}", run.stdout);
}

#[test]
fn unknown_editions_are_schema_errors() {
    let run = check(&plan("server", "x86", SYSTEM_MBR, ""), &[]).code(1);
    assert!(
        found(&run)
            .iter()
            .any(|(c, l, ..)| c.starts_with("RP01") && *l == 7),
        "{}",
        run.stdout
    );
}

#[test]
fn no_hint_recommends_gpt_where_xp_cannot_use_it() {
    // An MBR disk too large for MBR, five primaries, a GUID on MBR: the
    // disk analysis would suggest `table: gpt`.
    let big = "  - { id: sys, critical: true, table: mbr, signature: \"0x1\", size: 3TiB,\n      partitions: [ { id: c, size: 512MiB, type: ntfs, bootable: true } ] }\n";
    let five = "  - { id: sys, critical: true, table: mbr, signature: \"0x1\", size: 8GiB,\n      partitions: [ { id: a, size: 1GiB, type: ntfs, bootable: true }, { id: b, size: 1GiB, type: ntfs }, { id: c, size: 1GiB, type: ntfs }, { id: d, size: 1GiB, type: ntfs }, { id: e, size: 1GiB, type: ntfs } ] }\n";
    let guid = "  - { id: sys, critical: true, table: mbr, guid: 5b1f6c2e-1d3a-4e5f-8a9b-0c1d2e3f4a5b, size: 1GiB,\n      partitions: [ { id: c, size: 512MiB, type: ntfs, bootable: true } ] }\n";
    for (arch, disks) in [
        ("x86", big),
        ("x64", big),
        ("x86", five),
        ("x64", five),
        ("x86", guid),
    ] {
        let run = check(&plan("professional", arch, disks, ""), &[]);
        let helps: Vec<String> = run.json()["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["help"].as_str().map(str::to_string))
            .collect();
        assert!(!helps.is_empty(), "{}", run.stdout);
        assert!(
            helps.iter().all(|h| !h.contains("table: gpt")),
            "{arch}: {helps:?}"
        );
    }
    // On x64 a data disk may be GPT, so the hint stays there.
    let data_big = format!("{SYSTEM_MBR}  - {{ id: data, table: mbr, signature: \"0x2\", size: 3TiB,\n      partitions: [ {{ id: d, size: 1GiB, type: ntfs }} ] }}\n");
    let run = check(&plan("professional", "x64", &data_big, ""), &[]).code(1);
    assert!(
        message(&run, "RP0308").contains("table: gpt"),
        "{}",
        run.stdout
    );
    let run = check(&plan("professional", "x86", &data_big, ""), &[]).code(1);
    assert!(
        !message(&run, "RP0308").contains("table: gpt"),
        "{}",
        run.stdout
    );
}

#[test]
fn rplan_rules_shows_the_platform_facts_with_their_sources() {
    let run = Rplan::new().args(["rules"]).run().code(0);
    for fact in [
        "xp-platform#gpt-boot",
        "xp-platform#gpt-x86",
        "xp-platform#sector-512",
        "xp-platform#home-dynamic",
        "xp-platform#professional-dynamic",
        "xp-platform#fat16-4g",
        "xp-platform#fat16-2g",
    ] {
        assert!(run.stdout.contains(fact), "{fact} missing:\n{}", run.stdout);
    }
    assert!(run.stdout.contains("source: Microsoft KB 309044"));
    let json = Rplan::new()
        .args(["rules", "--format", "json"])
        .run()
        .code(0)
        .json();
    let facts = json["platform"].as_array().unwrap();
    assert_eq!(facts.len(), 7);
    assert!(facts
        .iter()
        .all(|f| !f["source"].as_str().unwrap().is_empty()));
    // A layered file replaces a fact by id.
    let server = root().join("tests/data/server-volumes.yaml");
    let layered = Rplan::new()
        .args([
            "rules",
            "--format",
            "json",
            "--rules",
            server.to_str().unwrap(),
        ])
        .run()
        .code(0)
        .json();
    let pro = layered["platform"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "professional-dynamic")
        .unwrap()
        .clone();
    assert_eq!(pro["cite"], "server-volumes#professional-dynamic");
    assert_eq!(pro["layouts"].as_array().unwrap().len(), 5);
}

#[test]
fn one_active_primary_partition_per_mbr_disk() {
    // Two active primaries: an error at the second `bootable:` line.
    let two = "  - id: sys\n    critical: true\n    table: mbr\n    signature: \"0x1\"\n    size: 1GiB\n    partitions:\n      - id: a\n        size: 256MiB\n        type: ntfs\n        bootable: true\n      - id: b\n        size: 256MiB\n        type: ntfs\n        bootable: true\n";
    let run = check(&plan("professional", "x86", two, ""), &[]).code(1);
    let boot: Vec<_> = found(&run)
        .into_iter()
        .filter(|f| f.0 == "RP0341")
        .collect();
    assert_eq!(
        boot,
        vec![("RP0341".into(), 24, 19, "error".into())],
        "{}",
        run.stdout
    );
    // A logical partition is never active.
    let logical = "  - id: sys\n    critical: true\n    table: mbr\n    signature: \"0x1\"\n    size: 1GiB\n    partitions:\n      - id: a\n        size: 256MiB\n        type: ntfs\n      - id: b\n        size: 256MiB\n        type: ntfs\n        logical: true\n        bootable: true\n";
    let run = check(&plan("professional", "x86", logical, ""), &[]).code(1);
    let boot: Vec<_> = found(&run)
        .into_iter()
        .filter(|f| f.0 == "RP0341")
        .collect();
    assert_eq!(
        boot,
        vec![("RP0341".into(), 24, 19, "error".into())],
        "{}",
        run.stdout
    );
    assert!(message(&run, "RP0341").contains("logical partition `sys/b` cannot be active"));
    // None at all on the system disk: an error at its `partitions`.
    let none = "  - { id: sys, critical: true, table: mbr, signature: \"0x1\", size: 1GiB,\n      partitions: [ { id: c, size: 512MiB, type: ntfs } ] }\n";
    let run = check(&plan("professional", "x86", none, ""), &[]).code(1);
    let boot: Vec<_> = found(&run)
        .into_iter()
        .filter(|f| f.0 == "RP0341")
        .collect();
    assert_eq!(
        boot,
        vec![("RP0341".into(), 12, 19, "error".into())],
        "{}",
        run.stdout
    );
    assert!(message(&run, "RP0341").contains("no partition is active"));
}
