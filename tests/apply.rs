//! `rplan apply` on sparse image files, checked only with tools rplan did not
//! write: sfdisk, sgdisk, blkid, fsck.vfat, e2fsck, mtools, cmp, sha256sum.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn read_range(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Copy a byte range out into its own file, for tools that want a file.
fn extract(path: &Path, offset: u64, len: u64, out: &Path) -> PathBuf {
    std::fs::write(out, read_range(path, offset, len)).unwrap();
    out.to_path_buf()
}

fn blkid(path: &Path) -> String {
    tool("blkid", &["-p", "-o", "export", path.to_str().unwrap()])
}

fn apply(plan: &Path, targets: &[(&str, &Path)], journal: &Path, extra: &[&str]) -> Run {
    let mut r = Rplan::new().args([
        "apply",
        plan.to_str().unwrap(),
        "--yes",
        "--journal",
        journal.to_str().unwrap(),
        // The examples have manual actions; no terminal answers them here.
        "--skip-manual",
    ]);
    for (d, p) in targets {
        r = r.arg("--target").arg(format!("{d}={}", p.display()));
    }
    r.args(extra).run()
}

fn sfdisk(img: &Path) -> serde_json::Value {
    serde_json::from_str(&tool("sfdisk", &["--json", img.to_str().unwrap()])).unwrap()
}

fn part_field(t: &serde_json::Value, node_suffix: &str, field: &str) -> serde_json::Value {
    t["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"].as_str().unwrap().ends_with(node_suffix))
        .unwrap_or_else(|| panic!("no partition {node_suffix} in {t}"))[field]
        .clone()
}

#[test]
fn mbr_workstation_example_restores_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "disk0.img", 1 << 30);
    let plan = example(dir.path(), "workstation-mbr", &img);
    let run = apply(&plan, &[("disk0", &img)], &dir.path().join("j"), &[]);
    // Safe Mode has a manual action: with --skip-manual it fails, as does
    // Last Known Good; ASR recovers.
    run.code(0);
    let t = sfdisk(&img);
    assert_eq!(t["partitiontable"]["label"], "dos");
    assert_eq!(t["partitiontable"]["id"], "0x1a2b3c4d");
    assert_eq!(part_field(&t, "img1", "start"), 2048);
    assert_eq!(part_field(&t, "img1", "size"), 524288);
    assert_eq!(part_field(&t, "img1", "type"), "7");
    assert_eq!(part_field(&t, "img1", "bootable"), true);
    assert_eq!(part_field(&t, "img2", "type"), "c");
    assert_eq!(part_field(&t, "img2", "size"), 131072);
    // Logical partitions inside the extended container; `rest` to the end.
    assert_eq!(part_field(&t, "img5", "size"), 1048576);
    let last_start = part_field(&t, "img6", "start").as_u64().unwrap();
    assert_eq!(
        last_start + part_field(&t, "img6", "size").as_u64().unwrap(),
        2097152
    );

    // The system image, byte for byte.
    let expected = Command::new("zstd")
        .args([
            "-dc",
            root()
                .join("examples/backups/pc07/system.img.zst")
                .to_str()
                .unwrap(),
        ])
        .output()
        .unwrap()
        .stdout;
    assert_eq!(expected.len() as u64, 16 * MIB);
    assert!(
        read_range(&img, 2048 * 512, 16 * MIB) == expected,
        "restored bytes differ"
    );

    // The boot partition: a clean FAT32 with asr.sif.
    let boot_start = part_field(&t, "img2", "start").as_u64().unwrap() * 512;
    let boot = extract(&img, boot_start, 64 * MIB, &dir.path().join("boot.fs"));
    let id = blkid(&boot);
    assert!(
        id.contains("TYPE=vfat") && id.contains("LABEL=BOOT"),
        "{id}"
    );
    tool("fsck.vfat", &["-n", boot.to_str().unwrap()]);
    let spec = format!("{}@@{boot_start}", img.display());
    assert!(tool("mdir", &["-i", &spec, "::/"])
        .to_uppercase()
        .contains("ASR      SIF"));
    let sif = tool("mtype", &["-i", &spec, "::/asr.sif"]);
    assert_eq!(
        sif.as_bytes(),
        std::fs::read(root().join("examples/backups/pc07/asr.sif"))
            .unwrap()
            .as_slice()
    );

    // The data partition: NTFS labelled DATA.
    let data_start = part_field(&t, "img5", "start").as_u64().unwrap() * 512;
    let data = extract(&img, data_start, 512 * MIB, &dir.path().join("data.fs"));
    let id = blkid(&data);
    assert!(
        id.contains("TYPE=ntfs") && id.contains("LABEL=DATA"),
        "{id}"
    );
}

#[test]
fn gpt_workstation_example_has_a_valid_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let sys = image(dir.path(), "disk0.img", 1 << 30);
    let img = image(dir.path(), "disk1.img", 3 << 30);
    apply(
        &example(dir.path(), "gpt-workstation", &sys),
        &[("disk0", &sys), ("disk1", &img)],
        &dir.path().join("j"),
        &[],
    )
    .code(0);
    // The system disk is MBR with the active system partition (XP boots
    // only from MBR) and asr.sif on FAT32.
    let t0 = sfdisk(&sys);
    assert_eq!(t0["partitiontable"]["label"], "dos");
    assert_eq!(part_field(&t0, "img1", "bootable"), true);
    let asr_start = part_field(&t0, "img2", "start").as_u64().unwrap() * 512;
    let asr = extract(&sys, asr_start, 64 * MIB, &dir.path().join("asr.fs"));
    tool("fsck.vfat", &["-n", asr.to_str().unwrap()]);
    let sif = tool(
        "mtype",
        &[
            "-i",
            &format!("{}@@{asr_start}", sys.display()),
            "::/asr.sif",
        ],
    );
    assert_eq!(
        sif.as_bytes(),
        std::fs::read(root().join("examples/backups/ws12/asr.sif"))
            .unwrap()
            .as_slice()
    );
    // The data disk is a valid GPT: MSR, then NTFS data to the end.
    let v = tool("sgdisk", &["-v", img.to_str().unwrap()]);
    assert!(v.contains("No problems found"), "{v}");
    let p = tool("sgdisk", &["-p", img.to_str().unwrap()]);
    assert!(
        p.to_lowercase()
            .contains("6f1c2a8e-4b7d-4e3a-9c51-2d8e7f0a1b3c"),
        "{p}"
    );
    let i1 = tool("sgdisk", &["-i", "1", img.to_str().unwrap()]);
    assert!(i1.contains("E3C9E316-0B5C-4DB8-817D-F92DF00215AE"), "{i1}");
    let i2 = tool("sgdisk", &["-i", "2", img.to_str().unwrap()]);
    assert!(
        i2.to_lowercase()
            .contains("0c3f7e21-5a9b-4d6c-8e2f-7b1a9d4c6e50"),
        "{i2}"
    );
    assert!(i2.contains("Partition name: 'Data'"), "{i2}");
    // The data partition took the rest of this larger disk: it ends at the
    // last usable sector.
    let t = sfdisk(&img);
    let last = &t["partitiontable"]["partitions"][1];
    let end = last["start"].as_u64().unwrap() + last["size"].as_u64().unwrap();
    assert_eq!(end, t["partitiontable"]["lastlba"].as_u64().unwrap() + 1);
    let data = extract(
        &img,
        last["start"].as_u64().unwrap() * 512,
        64 * MIB,
        &dir.path().join("data.head"),
    );
    assert!(blkid(&data).contains("TYPE=ntfs"), "{}", blkid(&data));
}

/// A plan over `disks` member disks of 16 MiB each, one 8 MiB partition
/// per disk, in a volume of `layout` carrying `artifact`.
fn volume_plan(dir: &Path, layout: &str, disks: usize, artifact: &[u8]) -> PathBuf {
    std::fs::write(dir.join("vol.img"), artifact).unwrap();
    let sha = tool("sha256sum", &[dir.join("vol.img").to_str().unwrap()]);
    let sha = sha.split_whitespace().next().unwrap();
    let mut s = format!(
        "version: 1\nname: vol\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\nbackup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: data, path: vol.img, format: raw, size: {}, sha256: {sha} }}\ndisks:\n",
        artifact.len()
    );
    for i in 0..disks {
        s.push_str(&format!("  - {{ id: d{i}, critical: true, table: mbr, signature: \"0x{:08x}\", size: 16MiB, partitions: [ {{ id: m, size: 8MiB, type: ldm }} ] }}\n", 0x100 + i));
    }
    let members: Vec<String> = (0..disks).map(|i| format!("d{i}/m")).collect();
    s.push_str(&format!(
        "volumes:\n  - {{ id: v, layout: {layout}, members: [{}], {}critical: true, content: {{ image: data }} }}\nstages:\n  - {{ id: lkg, kind: last-known-good, actions: [ {{ run: [/bin/false] }} ] }}\n  - {{ id: asr, kind: asr }}\n",
        members.join(", "),
        if layout == "striped" || layout == "raid5" { "stripe_size: 64KiB, " } else { "" }
    ));
    let p = dir.join("vol.yaml");
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn striped_and_raid5_volumes_reassemble_in_userspace() {
    const CHUNK: usize = 64 * 1024;
    for (layout, n) in [("striped", 2), ("raid5", 3), ("spanned", 2)] {
        let dir = tempfile::tempdir().unwrap();
        let data = noise(8 * MIB as usize + 12345, n as u64);
        let plan = volume_plan(dir.path(), layout, n, &data);
        let imgs: Vec<PathBuf> = (0..n)
            .map(|i| image(dir.path(), &format!("d{i}.img"), 16 * MIB))
            .collect();
        let targets: Vec<(String, &Path)> = imgs
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("d{i}"), p.as_path()))
            .collect();
        let targets: Vec<(&str, &Path)> = targets.iter().map(|(d, p)| (d.as_str(), *p)).collect();
        // RAID-5 is a Windows Server feature: layer its platform rules.
        let server = root().join("tests/data/server-volumes.yaml");
        apply(
            &plan,
            &targets,
            &dir.path().join("j"),
            &["--rules", server.to_str().unwrap()],
        )
        .code(0);
        let members: Vec<Vec<u8>> = imgs.iter().map(|p| read_range(p, MIB, 8 * MIB)).collect();
        // Reassemble the way md documents its layouts.
        let mut volume = Vec::new();
        match layout {
            "spanned" => members.iter().for_each(|m| volume.extend_from_slice(m)),
            "striped" => {
                for c in 0..(8 * MIB as usize / CHUNK) {
                    for m in &members {
                        volume.extend_from_slice(&m[c * CHUNK..(c + 1) * CHUNK]);
                    }
                }
            }
            _ => {
                // raid5 left-symmetric: parity on disk (n-1 - stripe % n),
                // data starting on the disk after it.
                for stripe in 0..(8 * MIB as usize / CHUNK) {
                    let parity = n - 1 - stripe % n;
                    let chunk = |d: usize| &members[d][stripe * CHUNK..(stripe + 1) * CHUNK];
                    let mut xor = vec![0_u8; CHUNK];
                    for d in 0..n {
                        xor.iter_mut().zip(chunk(d)).for_each(|(x, b)| *x ^= b);
                    }
                    assert!(
                        xor.iter().all(|&b| b == 0),
                        "raid5 parity wrong in stripe {stripe}"
                    );
                    for k in 1..n {
                        volume.extend_from_slice(chunk((parity + k) % n));
                    }
                }
            }
        }
        assert!(
            volume[..data.len()] == data[..],
            "{layout}: reassembled volume differs from the artifact"
        );
    }
}

fn pattern_fill(path: &Path, len: u64) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let block = vec![0xA5_u8; MIB as usize];
    for _ in 0..len / MIB {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
}

/// Every byte outside `allowed` ranges still holds the 0xA5 pattern.
fn assert_pattern_outside(path: &Path, len: u64, mut allowed: Vec<(u64, u64)>) {
    allowed.sort_unstable();
    let bytes = read_range(path, 0, len);
    let mut at = 0_u64;
    for (start, n) in allowed.iter().copied().chain(std::iter::once((len, 0))) {
        if start > at {
            if let Some(i) = bytes[at as usize..start as usize]
                .iter()
                .position(|&b| b != 0xA5)
            {
                panic!("byte {} outside the declared ranges changed", at + i as u64);
            }
        }
        at = at.max(start + n);
    }
}

#[test]
fn nothing_outside_declared_ranges_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(3 * MIB as usize, 9);
    std::fs::write(dir.path().join("sys.img"), &data).unwrap();
    let sys_sha = sha(&dir.path().join("sys.img"));
    std::fs::write(dir.path().join("note.txt"), b"restore me\n").unwrap();
    let note_sha = sha(&dir.path().join("note.txt"));
    let size = data.len();
    for table in ["mbr", "gpt"] {
        let logical = if table == "mbr" {
            "logical: true, "
        } else {
            ""
        };
        let lg = if table == "mbr" {
            ", logical: true"
        } else {
            ""
        };
        // The MBR system disk's active partition (RP0341).
        let boot = if table == "mbr" {
            "bootable: true, "
        } else {
            ""
        };
        let ident = if table == "mbr" {
            "signature: \"0x0badcafe\""
        } else {
            "guid: 2b1f4c1e-0d7a-4a53-8f3e-6c1d9b0e7a21"
        };
        let plan = format!(
            "version: 1\nname: ranges-{table}\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: sys, path: sys.img, format: raw, size: {size}, sha256: {sys_sha} }}\n    - {{ id: note, path: note.txt, format: file, sha256: {note_sha} }}\n\
disks:\n  - id: d0\n    critical: true\n    table: {table}\n    {ident}\n    size: 96MiB\n    partitions:\n\
\x20\x20\x20\x20\x20\x20- {{ id: sys, start: 2MiB, size: 8MiB, type: ntfs, {boot}content: {{ image: sys }} }}\n\
\x20\x20\x20\x20\x20\x20- {{ id: boot, start: 14MiB, size: 16MiB, type: fat16, content: {{ format: {{ fs: fat16, label: BOOT }}, files: [ {{ artifact: note, to: /notes/note.txt }} ] }} }}\n\
\x20\x20\x20\x20\x20\x20- {{ id: data, start: 40MiB, size: 20MiB, type: ext4, {logical}content: {{ format: {{ fs: ext4, label: data }} }} }}\n\
\x20\x20\x20\x20\x20\x20- {{ id: empty, start: 64MiB, size: 8MiB, type: linux{lg} }}\n\
stages: [ {{ id: asr, kind: asr }} ]\n"
        );
        let p = dir.path().join(format!("{table}.yaml"));
        std::fs::write(&p, plan).unwrap();
        let img = image(dir.path(), &format!("{table}.img"), 96 * MIB);
        pattern_fill(&img, 96 * MIB);
        // XP cannot boot from this GPT disk; the test is about write ranges.
        let rules = root().join("tests/data/no-platform.yaml");
        apply(
            &p,
            &[("d0", &img)],
            &dir.path().join("j"),
            &["--rules", rules.to_str().unwrap()],
        )
        .code(0);
        let t = sfdisk(&img);
        let mut allowed: Vec<(u64, u64)> = Vec::new();
        for part in t["partitiontable"]["partitions"].as_array().unwrap() {
            let (s, n) = (
                part["start"].as_u64().unwrap() * 512,
                part["size"].as_u64().unwrap() * 512,
            );
            if part["type"] == "f" || part["type"] == "5" {
                continue; // the extended container itself is not written, only EBRs
            }
            allowed.push((s, n));
            if table == "mbr" && part["node"].as_str().unwrap().ends_with(|c: char| c >= '5') {
                allowed.push((s - 512, 512)); // its EBR
            }
        }
        if table == "mbr" {
            allowed.push((0, 512));
            assert_eq!(
                t["partitiontable"]["partitions"].as_array().unwrap().len(),
                5,
                "{t}"
            );
        } else {
            allowed.push((0, 34 * 512));
            allowed.push((96 * MIB - 33 * 512, 33 * 512));
            let v = tool("sgdisk", &["-v", img.to_str().unwrap()]);
            assert!(v.contains("No problems found"), "{v}");
        }
        assert_pattern_outside(&img, 96 * MIB, allowed);
        // The partition without content: stale signatures at its head were
        // cleared, and nothing else of it was written.
        assert!(
            read_range(&img, 64 * MIB, 4096).iter().all(|&b| b == 0),
            "{table}: stale signature area not cleared"
        );
        assert!(
            read_range(&img, 65 * MIB, 6 * MIB)
                .iter()
                .all(|&b| b == 0xA5),
            "{table}: the empty partition was written"
        );
        let ext = extract(&img, 40 * MIB, 20 * MIB, &dir.path().join("ext.fs"));
        tool("e2fsck", &["-fn", ext.to_str().unwrap()]);
        let fat = extract(&img, 14 * MIB, 16 * MIB, &dir.path().join("fat.fs"));
        tool("fsck.vfat", &["-n", fat.to_str().unwrap()]);
        assert_eq!(
            tool("mtype", &["-i", fat.to_str().unwrap(), "::/notes/note.txt"]),
            "restore me\n"
        );
        assert!(read_range(&img, 2 * MIB, 3 * MIB) == data);
    }
}

#[test]
fn a_second_apply_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 1 << 30);
    let plan = example(dir.path(), "workstation-mbr", &img);
    apply(&plan, &[("disk0", &img)], &dir.path().join("j"), &[]).code(0);
    let before = sha(&img);
    let run = apply(
        &plan,
        &[("disk0", &img)],
        &dir.path().join("j"),
        &["--format", "json"],
    )
    .code(0);
    assert_eq!(before, sha(&img));
    let mut writes = 0;
    for line in run.stdout.lines() {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if e["event"] == "step-finished" {
            let step = e["step"].as_str().unwrap();
            if ["/clear", "/table", "/restore", "/format", "/files"]
                .iter()
                .any(|s| step.ends_with(s))
            {
                writes += 1;
                assert_eq!(e["outcome"], "unchanged", "{line}");
            }
        }
    }
    assert_eq!(writes, 6);
}

fn small_plan(dir: &Path, stages: &str) -> PathBuf {
    let p = dir.join("small.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: small\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
disks:\n  - {{ id: d0, critical: true, table: mbr, signature: \"0x12345678\", size: 32MiB, partitions: [ {{ id: p, size: 16MiB, type: fat16, bootable: true, content: {{ format: {{ fs: fat16 }} }} }} ] }}\n\
stages:\n{stages}"
        ),
    )
    .unwrap();
    p
}

#[test]
fn escalation_stops_at_the_first_stage_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), "d.img", 32 * MIB);
    let blank = sha(&img);
    // Safe Mode works: ASR never runs, the disk is untouched.
    let p = small_plan(dir.path(), "  - { id: sm, kind: safe-mode, actions: [ { run: [/bin/true] } ], success: { run: [/bin/true] } }\n  - { id: asr, kind: asr }\n");
    let run = apply(
        &p,
        &[("d0", &img)],
        &dir.path().join("j1"),
        &["--format", "json"],
    )
    .code(0);
    let result: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (&result["outcome"], &result["stage"]),
        (&serde_json::json!("recovered"), &serde_json::json!("sm")),
        "{}",
        run.stdout
    );
    assert_eq!(blank, sha(&img));
    // Safe Mode's probe fails, Last Known Good works.
    let p = small_plan(dir.path(), "  - { id: sm, kind: safe-mode, success: { run: [/bin/false] } }\n  - { id: lkg, kind: last-known-good, actions: [ { run: [/bin/true] } ] }\n  - { id: asr, kind: asr }\n");
    let run = apply(
        &p,
        &[("d0", &img)],
        &dir.path().join("j2"),
        &["--format", "json"],
    )
    .code(0);
    assert!(run.stdout.contains("\"stage\":\"lkg\""));
    assert_eq!(blank, sha(&img));
    // Everything fails, ASR included (its probe): exit 3.
    let p = small_plan(dir.path(), "  - { id: sm, kind: safe-mode, actions: [ { run: [sleep, \"5\"], timeout: 1s } ] }\n  - { id: asr, kind: asr, success: { run: [/bin/false] } }\n");
    let run = apply(&p, &[("d0", &img)], &dir.path().join("j3"), &[]).code(3);
    assert!(
        run.stderr
            .contains("did not finish within 1s and was killed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("RP0803"), "{}", run.stderr);
    // ASR did run: the disk has the plan's table now.
    assert_eq!(sfdisk(&img)["partitiontable"]["id"], "0x12345678");
}

#[test]
fn a_failing_non_critical_disk_is_reported_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = noise(MIB as usize, 1);
    std::fs::write(dir.path().join("good.img"), &good).unwrap();
    std::fs::write(dir.path().join("bad.img"), noise(MIB as usize, 2)).unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: partial\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: good, path: good.img, format: raw, size: 1MiB, sha256: {} }}\n    - {{ id: bad, path: bad.img, format: raw, size: 1MiB, sha256: {} }}\n\
disks:\n  - {{ id: d0, critical: true, table: mbr, size: 8MiB, partitions: [ {{ id: p, size: 4MiB, type: ntfs, bootable: true, content: {{ image: good }} }} ] }}\n\
\x20\x20- {{ id: d1, table: mbr, size: 8MiB, partitions: [ {{ id: p, size: 4MiB, type: ntfs, content: {{ image: bad }} }} ] }}\n\
stages: [ {{ id: asr, kind: asr }} ]\n",
            sha(&dir.path().join("good.img")),
            // The plan's hash for `bad` is wrong: its restore fails verification.
            sha(&dir.path().join("good.img")),
        ),
    )
    .unwrap();
    let (d0, d1) = (
        image(dir.path(), "d0", 8 * MIB),
        image(dir.path(), "d1", 8 * MIB),
    );
    let run = apply(
        &p,
        &[("d0", &d0), ("d1", &d1)],
        &dir.path().join("j"),
        &["--no-artifacts"],
    )
    .code(0);
    assert!(
        run.stderr
            .contains("warning[RP0802]: step `asr/d1/p/restore` failed"),
        "{}",
        run.stderr
    );
    assert!(read_range(&d0, MIB, MIB) == good);
}

#[test]
fn refusals_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_plan(dir.path(), "  - { id: asr, kind: asr }\n");
    let j = dir.path().join("j");
    // Too small.
    let small = image(dir.path(), "small.img", 16 * MIB);
    let before = sha(&small);
    let run = apply(&p, &[("d0", &small)], &j, &[]).code(4);
    assert!(run.stderr.contains("RP0702"), "{}", run.stderr);
    assert_eq!(before, sha(&small));
    // Another disk's table (signature 0xdeadbeef).
    let other = image(dir.path(), "other.img", 32 * MIB);
    let mut child = Command::new("sfdisk")
        .arg(&other)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: dos\nlabel-id: 0xdeadbeef\n,8MiB,83\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let before = sha(&other);
    let run = apply(&p, &[("d0", &other)], &j, &[]).code(4);
    assert!(
        run.stderr.contains("RP0703") && run.stderr.contains("0xdeadbeef"),
        "{}",
        run.stderr
    );
    assert_eq!(before, sha(&other));
    // ...unless forced.
    apply(&p, &[("d0", &other)], &j, &["--force"]).code(0);
    assert_eq!(sfdisk(&other)["partitiontable"]["id"], "0x12345678");
    // In use: attached to a loop device.
    let busy = image(dir.path(), "busy.img", 32 * MIB);
    let before = sha(&busy);
    let loopdev = tool("losetup", &["-f", "--show", busy.to_str().unwrap()]);
    let run = apply(&p, &[("d0", &busy)], &j, &[]);
    tool("losetup", &["-d", loopdev.trim()]);
    let run = run.code(4);
    assert!(run.stderr.contains("RP0704"), "{}", run.stderr);
    assert_eq!(before, sha(&busy));
    // Locked by another process.
    let locked = image(dir.path(), "locked.img", 32 * MIB);
    let mut holder = Command::new("flock")
        .args([locked.to_str().unwrap(), "sleep", "30"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let run = apply(&p, &[("d0", &locked)], &j, &[]);
    holder.kill().unwrap();
    let _ = holder.wait();
    assert!(
        run.code == 4 && run.stderr.contains("RP0705"),
        "{}",
        run.stderr
    );
    // No --yes and no terminal to ask on.
    let blank = image(dir.path(), "blank.img", 32 * MIB);
    let before = sha(&blank);
    let run = Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", blank.display()),
            "--journal",
            j.to_str().unwrap(),
        ])
        .run()
        .code(4);
    assert!(run.stderr.contains("RP0707"), "{}", run.stderr);
    assert_eq!(before, sha(&blank));
    // A target for a disk the plan does not have: usage error.
    Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--target",
            &format!("d9={}", blank.display()),
        ])
        .run()
        .code(2);
    // A disk without a target: refused.
    let run = Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--target",
            "d0",
            "--journal",
            j.to_str().unwrap(),
        ])
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn a_stale_compiled_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.img"), noise(MIB as usize, 5)).unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: stale\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: a, path: a.img, format: raw, size: 1MiB, sha256: {} }} ] }}\n\
disks: [ {{ id: d0, critical: true, table: mbr, size: 8MiB, partitions: [ {{ id: p, size: 4MiB, type: ntfs, bootable: true, content: {{ image: a }} }} ] }} ]\n\
stages: [ {{ id: asr, kind: asr }} ]\n",
            sha(&dir.path().join("a.img"))
        ),
    )
    .unwrap();
    let compiled = dir.path().join("p.json");
    Rplan::new()
        .args([
            "compile",
            p.to_str().unwrap(),
            "-o",
            compiled.to_str().unwrap(),
        ])
        .run()
        .code(0);
    std::fs::write(dir.path().join("a.img"), noise(MIB as usize, 6)).unwrap();
    let img = image(dir.path(), "d0.img", 8 * MIB);
    let run = apply(&compiled, &[("d0", &img)], &dir.path().join("j"), &[]).code(4);
    assert!(run.stderr.contains("RP0706"), "{}", run.stderr);
    assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn sigkill_then_resume_gives_the_identical_image() {
    let dir = tempfile::tempdir().unwrap();
    let reference = image(dir.path(), "ref.img", 1 << 30);
    let plan = example(dir.path(), "workstation-mbr", &reference);
    apply(
        &plan,
        &[("disk0", &reference)],
        &dir.path().join("jref"),
        &[],
    )
    .code(0);
    let want = sha(&reference);
    for kill_at in [3, 6, 8, 10, 12, 14] {
        let img = image(dir.path(), &format!("k{kill_at}.img"), 1 << 30);
        let journal = dir.path().join(format!("j{kill_at}"));
        let mut child = Command::new(bin())
            .args([
                "apply",
                plan.to_str().unwrap(),
                "--yes",
                "--skip-manual",
                "--format",
                "json",
                "--journal",
                journal.to_str().unwrap(),
            ])
            .arg("--target")
            .arg(format!("disk0={}", img.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut started = 0;
        for line in out.lines() {
            if line.unwrap().contains("\"step-started\"") {
                started += 1;
                if started == kill_at {
                    child.kill().unwrap(); // SIGKILL
                    break;
                }
            }
        }
        let _ = child.wait();
        // Without --resume, an interrupted apply is not silently restarted.
        let run = apply(&plan, &[("disk0", &img)], &journal, &[]);
        if run.code == 4 {
            assert!(run.stderr.contains("RP0710"), "{}", run.stderr);
            apply(&plan, &[("disk0", &img)], &journal, &["--resume"]).code(0);
        } else {
            // The kill came after the last journal record: the run had ended.
            run.code(0);
        }
        assert_eq!(
            sha(&img),
            want,
            "killed at step {kill_at}: resumed image differs"
        );
    }
}

#[test]
fn applies_to_a_block_device() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_plan(dir.path(), "  - { id: asr, kind: asr }\n");
    let img = image(dir.path(), "loop.img", 32 * MIB);
    let dev = tool("losetup", &["-f", "--show", img.to_str().unwrap()])
        .trim()
        .to_string();
    let run = apply(&p, &[("d0", Path::new(&dev))], &dir.path().join("j"), &[]);
    tool("losetup", &["-d", &dev]);
    run.code(0);
    let t = sfdisk(&img);
    assert_eq!(t["partitiontable"]["id"], "0x12345678");
    let fs = extract(&img, MIB, 16 * MIB, &dir.path().join("p.fs"));
    tool("fsck.vfat", &["-n", fs.to_str().unwrap()]);
}

#[test]
fn a_plan_without_disks_needs_no_target() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        "version: 1\nname: nodisk\nsystem: { os: windows-xp, build: rtm+sp2, language: en }\nmedia: { build: sp2-slipstream }\n\
stages:\n\x20\x20- { id: sm, kind: safe-mode, actions: [ { run: [/bin/true] } ], success: { run: [/bin/true] } }\n",
    )
    .unwrap();
    Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--journal",
            dir.path().join("j").to_str().unwrap(),
        ])
        .run()
        .code(0);
}

#[test]
fn a_disk_without_a_target_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_plan(dir.path(), "  - { id: asr, kind: asr }\n");
    let run = Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--journal",
            dir.path().join("j").to_str().unwrap(),
        ])
        .run()
        .code(4);
    assert!(
        run.stderr.contains("RP0708") && run.stderr.contains("no target for disk `d0`"),
        "{}",
        run.stderr
    );
}
