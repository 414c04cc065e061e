//! Relocated boot sectors: an XP-layout disk (MBR boot code, active NTFS or
//! FAT partition at sector 63) captured and restored at sector 2048. The
//! boot code is byte-identical, the restored boot sector (and its backup)
//! says hidden sectors = 2048, and ntfsinfo/ntfsfix or fsck.vfat find the
//! filesystem clean; nothing else in the partition differs from the image.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const OLD: u64 = 63;
const NEW: u64 = 2048;
const PART: u64 = 24 * MIB;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// An XP-layout disk's artifacts: its MBR boot code (440 bytes, as
/// captured from LBA 0) and its partition at sector 63, made by `mkfs`.
fn xp_disk(dir: &Path, fs: &str) -> (PathBuf, PathBuf) {
    let part = dir.join("system.img");
    std::fs::File::create(&part).unwrap().set_len(PART).unwrap();
    let p = part.to_str().unwrap();
    match fs {
        "ntfs" => tool(
            "mkntfs",
            &[
                "-F", "-Q", "-q", "-p", "63", "-H", "255", "-S", "63", "-L", "XP", p,
            ],
        ),
        _ => tool("mkfs.fat", &["-F", "16", "-h", "63", "-n", "XP", p]),
    };
    // XP's disk: MBR with boot code, the partition at sector 63.
    let xp = dir.join("xp.img");
    let mut disk = vec![0u8; (OLD * 512 + PART + MIB) as usize];
    for (i, b) in disk[..440].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(13).wrapping_add(0x33);
    }
    disk[(OLD * 512) as usize..(OLD * 512 + PART) as usize]
        .copy_from_slice(&std::fs::read(&part).unwrap());
    std::fs::write(&xp, &disk).unwrap();
    let mut sf = Command::new("sfdisk")
        .args(["--no-reread", "--no-tell-kernel", xp.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    let t = if fs == "ntfs" { "7" } else { "6" };
    writeln!(
        sf.stdin.as_mut().unwrap(),
        "label: dos\nlabel-id: 0x1234abcd\nstart={OLD}, size={}, type={t}, bootable",
        PART / 512
    )
    .unwrap();
    drop(sf.stdin.take());
    assert!(sf.wait().unwrap().success());
    // Capture: LBA 0's boot code, and the partition as it is on XP's disk.
    let xp_bytes = std::fs::read(&xp).unwrap();
    let mbr = dir.join("mbr.bin");
    std::fs::write(&mbr, &xp_bytes[..440]).unwrap();
    std::fs::write(
        &part,
        &xp_bytes[(OLD * 512) as usize..(OLD * 512 + PART) as usize],
    )
    .unwrap();
    (mbr, part)
}

fn plan(dir: &Path, fs: &str, mbr: &Path, part: &Path) -> PathBuf {
    let text = format!(
        "version: 1\nname: xp-relocated\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\nbackup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: mbr, path: mbr.bin, format: file, size: 440, sha256: {} }}\n    - {{ id: system, path: system.img, format: raw, size: {PART}, sha256: {} }}\ndisks:\n  - id: disk0\n    critical: true\n    table: mbr\n    signature: \"0x1234abcd\"\n    size: 64MiB\n    boot_code: {{ artifact: mbr }}\n    partitions:\n      - {{ id: system, size: 32MiB, type: {fs}, bootable: true, content: {{ image: system }} }}\nstages:\n  - {{ id: asr, kind: asr }}\n",
        sha(mbr),
        sha(part)
    );
    let p = dir.join("plan.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `rplan apply PLAN --yes --journal J --target disk0=IMG EXTRA…`.
fn apply(plan: &Path, img: &Path, journal: &Path, extra: &[&str]) -> Rplan {
    Rplan::new()
        .args(["apply", plan.to_str().unwrap(), "--yes", "--journal"])
        .arg(journal.to_str().unwrap())
        .arg("--target")
        .arg(format!("disk0={}", img.display()))
        .args(extra)
}

fn restore(fs: &str) -> (tempfile::TempDir, PathBuf, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (mbr, part) = xp_disk(dir.path(), fs);
    let p = plan(
        dir.path(),
        if fs == "ntfs" { "ntfs" } else { "fat16" },
        &mbr,
        &part,
    );
    let img = image(dir.path(), "disk0.img", 64 * MIB);
    let run = apply(&p, &img, &dir.path().join("j"), &["--format", "json"])
        .run()
        .code(0);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("asr/disk0/system/bootsector")
                && l.contains("step-finished")
                && l.contains("\"outcome\":\"ok\"")),
        "{}",
        run.stdout
    );
    let disk = std::fs::read(&img).unwrap();
    // The boot code is the captured one, byte for byte.
    assert!(disk[..440] == std::fs::read(&mbr).unwrap()[..]);
    let restored = disk[(NEW * 512) as usize..(NEW * 512 + PART) as usize].to_vec();
    let original = std::fs::read(&part).unwrap();
    (dir, img, restored, original)
}

/// Every byte but the hidden-sectors fields at `patched` is the image's.
fn only_fields_differ(restored: &[u8], original: &[u8], patched: &[usize]) {
    for &s in patched {
        assert_eq!(u32_at(original, s + 0x1C), OLD as u32);
        assert_eq!(u32_at(restored, s + 0x1C), NEW as u32, "sector at {s}");
    }
    let differ: Vec<usize> = (0..original.len())
        .filter(|&i| restored[i] != original[i])
        .collect();
    let allowed: Vec<usize> = patched.iter().flat_map(|&s| s + 0x1C..s + 0x20).collect();
    assert!(differ.iter().all(|i| allowed.contains(i)), "{differ:?}");
}

#[test]
fn ntfs_made_at_sector_63_restored_at_2048_boots_from_its_new_start() {
    let (dir, _img, restored, original) = restore("ntfs");
    // The boot sector and its backup (the sector after the volume).
    let total = u64::from_le_bytes(original[0x28..0x30].try_into().unwrap());
    only_fields_differ(&restored, &original, &[0, (total * 512) as usize]);
    // NTFS boot code (after the BPB) is untouched.
    assert!(restored[0x54..0x1FE] == original[0x54..0x1FE]);
    let fs = dir.path().join("restored.ntfs");
    std::fs::write(&fs, &restored).unwrap();
    let info = tool("ntfsinfo", &["-m", fs.to_str().unwrap()]);
    assert!(info.contains("XP"), "{info}");
    tool("ntfsfix", &["-n", fs.to_str().unwrap()]);
}

#[test]
fn fat16_made_at_sector_63_restored_at_2048_boots_from_its_new_start() {
    let (dir, _img, restored, original) = restore("fat");
    only_fields_differ(&restored, &original, &[0]);
    assert!(restored[0x3E..0x1FE] == original[0x3E..0x1FE]);
    let fs = dir.path().join("restored.fat");
    std::fs::write(&fs, &restored).unwrap();
    tool("fsck.vfat", &["-n", fs.to_str().unwrap()]);
}

#[test]
fn a_second_apply_recognises_the_relocated_image_and_writes_nothing() {
    let (dir, img, _, _) = restore("ntfs");
    let before = sha(&img);
    let p = dir.path().join("plan.yaml");
    let run = apply(&p, &img, &dir.path().join("j"), &["--format", "json"])
        .run()
        .code(0);
    assert_eq!(before, sha(&img));
    for step in ["table", "system/restore", "system/bootsector"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(&format!("asr/disk0/{step}\""))
                    && l.contains("step-finished")
                    && l.contains("\"outcome\":\"unchanged\"")),
            "{step}: {}",
            run.stdout
        );
    }
}

#[test]
fn a_crash_between_the_two_boot_sector_writes_is_finished_by_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (mbr, part) = xp_disk(dir.path(), "ntfs");
    let p = plan(dir.path(), "ntfs", &mbr, &part);
    let img = image(dir.path(), "disk0.img", 64 * MIB);
    let journal = dir.path().join("j");
    // Killed before the second write: the boot sector says 2048, its
    // backup still 63.
    let crashed = apply(&p, &img, &journal, &[])
        .env("RPLAN_CRASH_AT", "asr/disk0/system/bootsector:2")
        .run();
    assert_ne!(crashed.code, 0, "the run was not interrupted");
    let original = std::fs::read(&part).unwrap();
    let total = u64::from_le_bytes(original[0x28..0x30].try_into().unwrap());
    let backup = (NEW * 512 + total * 512) as usize;
    let torn = std::fs::read(&img).unwrap();
    assert_eq!(u32_at(&torn, (NEW * 512) as usize + 0x1C), NEW as u32);
    assert_eq!(u32_at(&torn, backup + 0x1C), OLD as u32);
    apply(&p, &img, &journal, &["--resume"]).run().code(0);
    let disk = std::fs::read(&img).unwrap();
    let restored = &disk[(NEW * 512) as usize..(NEW * 512 + PART) as usize];
    only_fields_differ(restored, &original, &[0, (total * 512) as usize]);
}
