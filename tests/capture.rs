//! `rplan capture` round trips: sources built with sfdisk/sgdisk, mkntfs +
//! ntfscp, mkfs.vfat + mcopy, mkfs.ext4 -d and random bytes → `capture
//! --backup` (the source's sha256 unchanged) → `check` clean → `apply` to
//! a blank image → the table as `sfdisk --json` sees it equal but for the
//! device name, the boot code identical, raw partitions byte-identical,
//! filesystems file-identical (read back by ntfscat, mtype, debugfs) and
//! clean (ntfsfix -n, fsck.vfat -n, e2fsck -fn).

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn sh(script: &str) {
    tool("sh", &["-ec", script]);
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Write `fs_image` into `disk` at sector `start`.
fn place(disk: &Path, fs_image: &Path, start: u64) {
    sh(&format!(
        "dd if='{}' of='{}' bs=512 seek={start} conv=notrunc,sparse status=none",
        p(fs_image),
        p(disk)
    ));
}

fn range(path: &Path, start_sector: u64, sectors: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(start_sector * 512)).unwrap();
    let mut buf = vec![0; (sectors * 512) as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// `sfdisk --json` with the device name taken out.
fn table_json(img: &Path) -> String {
    tool("sfdisk", &["--json", p(img)]).replace(p(img), "DEV")
}

struct Source {
    dir: tempfile::TempDir,
    disk: PathBuf,
    blob: Vec<u8>,
}

/// The files every filesystem gets.
fn files(dir: &Path) -> Vec<u8> {
    let blob = noise(300_000, 7);
    std::fs::create_dir_all(dir.join("tree")).unwrap();
    std::fs::write(dir.join("tree/blob.bin"), &blob).unwrap();
    std::fs::write(dir.join("tree/readme.txt"), "hello xp\n").unwrap();
    blob
}

/// An MBR disk: NTFS (bootable), FAT32, then an extended container with
/// an ext4 and a random-bytes logical partition, laid out as rplan lays
/// one out (each EBR in the sector before its partition), and boot code.
fn mbr_source() -> Source {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let blob = files(d);
    let disk = image(d, "source.img", 200 * MIB);
    sh(&format!(
        "sfdisk -q '{}' <<'EOF'
label: dos
label-id: 0x1a2b3c4d
start=2048, size=60MiB, type=7, bootable
start=124928, size=40MiB, type=c
start=208895, size=143362, type=f
start=208896, size=40MiB, type=83
start=290817, size=61440, type=da
EOF",
        p(&disk)
    ));
    let t = d.join("tree");
    let (ntfs, fat, ext) = (d.join("ntfs.img"), d.join("fat.img"), d.join("ext.img"));
    sh(&format!(
        "truncate -s 60M '{n}' && mkntfs -q -F -Q -L SYSTEM -p 2048 -H 255 -S 63 '{n}' >/dev/null 2>&1
         ntfscp '{n}' '{t}/blob.bin' blob.bin >/dev/null && ntfscp '{n}' '{t}/readme.txt' readme.txt >/dev/null
         truncate -s 40M '{f}' && mkfs.vfat -F 32 -h 124928 -n BOOT '{f}' >/dev/null && mcopy -i '{f}' '{t}/blob.bin' '{t}/readme.txt' ::/
         truncate -s 40M '{e}' && mkfs.ext4 -q -F -L DATA -d '{t}' '{e}'",
        n = p(&ntfs),
        f = p(&fat),
        e = p(&ext),
        t = p(&t)
    ));
    place(&disk, &ntfs, 2048);
    place(&disk, &fat, 124928);
    place(&disk, &ext, 208896);
    let raw = d.join("raw.img");
    std::fs::write(&raw, noise(61440 * 512, 3)).unwrap();
    place(&disk, &raw, 290817);
    // Boot code: something that is not zeros.
    let mut lba0 = range(&disk, 0, 1);
    lba0[..440].copy_from_slice(&noise(440, 9));
    std::fs::write(d.join("lba0"), &lba0).unwrap();
    place(&disk, &d.join("lba0"), 0);
    Source { dir, disk, blob }
}

fn capture_backup(src: &Source, extra: &[&str]) -> PathBuf {
    let d = src.dir.path();
    std::fs::create_dir_all(d.join("plan")).unwrap();
    let before = sha(&src.disk);
    let mut args = vec![
        "capture".to_string(),
        "--disk".into(),
        format!("disk0={}", p(&src.disk)),
        "-o".into(),
        "plan/pc.yaml".into(),
        "--backup".into(),
        "store".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Rplan::new().args(args).in_dir(d).run().code(0);
    assert_eq!(sha(&src.disk), before, "capture wrote to its source");
    d.join("plan/pc.yaml")
}

fn apply(plan: &Path, target: &Path) {
    Rplan::new()
        .args(["apply", p(plan), "--yes", "--skip-manual", "--target"])
        .arg(format!("disk0={}", p(target)))
        .run()
        .code(0);
}

#[test]
fn mbr_disk_round_trips_through_capture_backup_and_apply() {
    let src = mbr_source();
    let d = src.dir.path();
    let plan = capture_backup(&src, &MACHINE);
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema="),
        "{text}"
    );
    assert!(
        text.contains("root: \"../store\""),
        "paths relative to the plan: {text}"
    );
    assert!(text.contains("format: partclone-zstd") && text.contains("format: raw-zstd"));
    let check = Rplan::new()
        .args(["check", p(&plan), "--format", "json"])
        .run()
        .code(0);
    assert_eq!(check.json()["errors"], 0, "{}", check.stdout);

    let target = image(d, "target.img", 200 * MIB);
    apply(&plan, &target);
    assert_eq!(table_json(&target), table_json(&src.disk));
    assert_eq!(range(&target, 0, 1)[..440], range(&src.disk, 0, 1)[..440]);
    // Raw content: byte-identical.
    assert_eq!(
        range(&target, 290817, 61440),
        range(&src.disk, 290817, 61440)
    );

    // Used-blocks content: the files, read back by each filesystem's tools.
    sh(&format!(
        "dd if='{t}' of='{d}/ntfs.out' bs=512 skip=2048 count=122880 status=none
         dd if='{t}' of='{d}/fat.out' bs=512 skip=124928 count=81920 status=none
         dd if='{t}' of='{d}/ext.out' bs=512 skip=208896 count=81920 status=none
         ntfsfix -n '{d}/ntfs.out' >/dev/null
         fsck.vfat -n '{d}/fat.out' >/dev/null
         e2fsck -fn '{d}/ext.out' >/dev/null 2>&1
         ntfscat '{d}/ntfs.out' blob.bin > '{d}/ntfs.blob'
         mtype -i '{d}/fat.out' ::/BLOB.BIN > '{d}/fat.blob'
         debugfs -R 'cat /blob.bin' '{d}/ext.out' > '{d}/ext.blob' 2>/dev/null",
        t = p(&target),
        d = p(d)
    ));
    for fs in ["ntfs", "fat", "ext"] {
        let got = std::fs::read(d.join(format!("{fs}.blob"))).unwrap();
        assert!(got == src.blob, "{fs}: the file read back differs");
    }
    assert_eq!(
        tool(
            "blkid",
            &["-o", "value", "-s", "LABEL", p(&d.join("ext.out"))]
        )
        .trim(),
        "DATA"
    );

    // verify: the same, then outside changes named.
    verify(&plan, &target, &["--content"]).code(0);
    let retyped = d.join("retyped.img");
    sh(&format!(
        "cp --sparse=always '{}' '{}'",
        p(&target),
        p(&retyped)
    ));
    tool("sfdisk", &["-q", "--part-type", p(&retyped), "6", "83"]);
    let out = verify(&plan, &retyped, &[]).code(1);
    assert_eq!(out.stdout.trim(), "~ disk0/p6: type 0xda → 0x83");
    let deleted = d.join("deleted.img");
    sh(&format!(
        "cp --sparse=always '{}' '{}'",
        p(&target),
        p(&deleted)
    ));
    tool("sfdisk", &["-q", "--delete", p(&deleted), "2"]);
    let out = verify(&plan, &deleted, &["--format", "json"]).code(1);
    let drift = &out.json()["drift"];
    assert_eq!(drift.as_array().map(Vec::len), Some(1), "{}", out.stdout);
    assert_eq!(drift[0]["change"], "missing");
    assert_eq!(drift[0]["item"], "disk0/boot");
}

fn verify(plan: &Path, target: &Path, extra: &[&str]) -> Run {
    Rplan::new()
        .args(["verify", p(plan), "--target"])
        .arg(format!("disk0={}", p(target)))
        .args(extra)
        .run()
}

#[test]
fn gpt_disk_round_trips_with_guids_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let blob = files(d);
    let disk = image(d, "source.img", 64 * MIB);
    tool(
        "sgdisk",
        &[
            "-U",
            "8A1B2C3D-0000-4000-8000-00000000ABCD",
            "-n",
            "1:2048:+20M",
            "-t",
            "1:8300",
            "-c",
            "1:linux data",
            "-n",
            "2:0:+16M",
            "-t",
            "2:0700",
            "-c",
            "2:raw",
            p(&disk),
        ],
    );
    let ext = d.join("ext.img");
    sh(&format!(
        "truncate -s 20M '{e}' && mkfs.ext4 -q -F -L HOME -d '{t}' '{e}'",
        e = p(&ext),
        t = p(&d.join("tree"))
    ));
    place(&disk, &ext, 2048);
    let raw = d.join("raw.img");
    std::fs::write(&raw, noise(16 << 20, 5)).unwrap();
    place(&disk, &raw, 2048 + 40960);
    let src = Source {
        dir,
        disk: disk.clone(),
        blob,
    };
    let plan = capture_backup(&src, &["--build", "sp2-slipstream", "--language", "en"]);
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.contains("guid: 8a1b2c3d-0000-4000-8000-00000000abcd"),
        "{text}"
    );
    assert!(text.contains("name: \"linux data\""), "{text}");
    Rplan::new().args(["check", p(&plan)]).run().code(0);
    let target = image(d, "target.img", 64 * MIB);
    apply(&plan, &target);
    assert_eq!(table_json(&target), table_json(&disk));
    assert_eq!(
        range(&target, 2048 + 40960, 32768),
        range(&disk, 2048 + 40960, 32768)
    );
    sh(&format!(
        "dd if='{t}' of='{d}/ext.out' bs=512 skip=2048 count=40960 status=none
         e2fsck -fn '{d}/ext.out' >/dev/null 2>&1
         debugfs -R 'cat /blob.bin' '{d}/ext.out' > '{d}/ext.blob' 2>/dev/null",
        t = p(&target),
        d = p(d)
    ));
    assert!(std::fs::read(d.join("ext.blob")).unwrap() == src.blob);
    verify(&plan, &target, &["--content"]).code(0);
}

#[test]
fn verify_names_a_changed_label_and_nothing_the_plan_leaves_out() {
    let src = mbr_source();
    let d = src.dir.path();
    let mut args = vec!["capture".to_string(), "--disk".into()];
    args.push(format!("disk0={}", p(&src.disk)));
    args.extend(["-o", "pc.yaml"].map(String::from));
    args.extend(MACHINE.map(String::from));
    Rplan::new().args(args).in_dir(d).run().code(0);
    let plan = d.join("pc.yaml");
    verify(&plan, &src.disk, &[]).code(0);
    // A file added changes nothing the plan describes.
    sh(&format!(
        "mcopy -i '{}@@{}' '{}' ::/more.txt",
        p(&src.disk),
        124928 * 512,
        p(&d.join("tree/readme.txt"))
    ));
    verify(&plan, &src.disk, &[]).code(0);
    // The ext4 label changed.
    sh(&format!(
        "dd if='{s}' of='{d}/ext' bs=512 skip=208896 count=81920 status=none
         e2label '{d}/ext' HOME
         dd if='{d}/ext' of='{s}' bs=512 seek=208896 conv=notrunc status=none",
        s = p(&src.disk),
        d = p(d)
    ));
    let out = verify(&plan, &src.disk, &[]).code(1);
    assert_eq!(out.stdout.trim(), "~ disk0/data: label DATA → HOME");
}

#[test]
fn without_flags_the_plan_carries_todos_that_check_names() {
    let src = mbr_source();
    let d = src.dir.path();
    Rplan::new()
        .args(["capture", "--disk"])
        .arg(format!("disk0={}", p(&src.disk)))
        .args(["-o", "pc.yaml"])
        .in_dir(d)
        .run()
        .code(0);
    let text = std::fs::read_to_string(d.join("pc.yaml")).unwrap();
    assert!(text.contains("build: TODO"), "{text}");
    // Without --backup, filesystems are described by type and label.
    assert!(
        text.contains("format: { fs: ext4, label: \"DATA\" }"),
        "{text}"
    );
    // The schema's errors come first (the language), then the rules' (the builds).
    assert_eq!(error_pointers(d), ["/system/language"]);
    Rplan::new()
        .args(["capture", "--language", "en", "--disk"])
        .arg(format!("disk0={}", p(&src.disk)))
        .args(["-o", "pc.yaml"])
        .in_dir(d)
        .run()
        .code(0);
    assert_eq!(error_pointers(d), ["/system/build", "/media/build"]);
}

fn error_pointers(d: &Path) -> Vec<String> {
    let check = Rplan::new()
        .args(["check", "pc.yaml", "--format", "json"])
        .in_dir(d)
        .run()
        .code(1);
    check.json()["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["severity"] == "error")
        .map(|x| x["pointer"].as_str().unwrap_or("").to_string())
        .collect()
}

/// `capture --from-sfdisk` on dumps of an XP disk starting at sector 63, an
/// extended/logical layout and a GPT Windows disk → check → apply to a
/// blank image of the disk's size → its own `sfdisk -d` is the dump.
#[test]
fn sfdisk_dumps_round_trip_through_capture_and_apply() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, sectors) in [
        ("xp-sector63", 208_845u64),
        ("logical", 196_608),
        // Windows XP's track-aligned logicals: type 0x05, EBRs 63 sectors
        // before their partitions, the container running to the disk's end.
        ("xp-logicals", 321_300),
        ("gpt-windows", 262_144),
    ] {
        let dump = root().join(format!("tests/data/sfdisk/{name}.dump"));
        let plan = d.join(format!("{name}.yaml"));
        let size = (sectors * 512).to_string();
        Rplan::new()
            .args(["capture", "--from-sfdisk", p(&dump), "--size", &size, "-o"])
            .arg(p(&plan))
            .args(&MACHINE[..6])
            .args([
                "--arch",
                if name.starts_with("gpt") {
                    "x64"
                } else {
                    "x86"
                },
            ])
            .run()
            .code(0);
        let text = std::fs::read_to_string(&plan).unwrap();
        assert!(!text.contains("backup:"), "no artifacts: {text}");
        Rplan::new().args(["check", p(&plan)]).run().code(0);
        let img = image(d, &format!("{name}.img"), sectors * 512);
        apply(&plan, &img);
        let ours = tool("sfdisk", &["-d", p(&img)]).replace(p(&img), "/dev/X");
        let theirs = std::fs::read_to_string(&dump)
            .unwrap()
            .replace("/dev/sda", "/dev/X")
            .replace("/dev/sdb", "/dev/X")
            .replace("/dev/sdc", "/dev/X");
        assert_eq!(ours, theirs, "{name}");
    }
}

#[test]
fn a_dump_that_is_not_one_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.dump");
    std::fs::write(&bad, "hello\n/dev/sda1 : start=x, size=1, type=7\n").unwrap();
    let run = Rplan::new()
        .args(["capture", "--from-sfdisk", p(&bad), "-o", "-"])
        .run()
        .code(2);
    assert!(run.stderr.contains("line 1"), "{}", run.stderr);
}

/// Dumps with numbers no disk has: a logical partition at sector 0 (no
/// room for its EBR), partitions ending past 2^64 bytes, a GPT with no
/// last-lba whose partitions end at the limit. Each is exit 0 or 2 with a
/// message, never a panic (exit 101).
#[test]
fn hostile_dumps_are_refused_or_described_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let dumps = [
        "label: dos\nlabel-id: 0x1\nunit: sectors\n\n/dev/x1 : start=0, size=2048, type=f\n/dev/x5 : start=0, size=100, type=7\n",
        "label: dos\nunit: sectors\n\n/dev/x1 : start=18446744073709551615, size=1, type=7\n",
        "label: dos\nunit: sectors\n\n/dev/x1 : start=36028797018963967, size=1, type=7\n",
        "label: gpt\nlabel-id: 3E4B1C2A-0000-4000-8000-000000000001\nunit: sectors\n\n/dev/x1 : start=36028797018963900, size=60, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
        "label: gpt\nlabel-id: 3E4B1C2A-0000-4000-8000-000000000001\nlast-lba: 18446744073709551615\nunit: sectors\n\n/dev/x1 : start=34, size=60, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
    ];
    for (i, dump) in dumps.iter().enumerate() {
        let path = dir.path().join(format!("{i}.dump"));
        std::fs::write(&path, dump).unwrap();
        let run = Rplan::new()
            .args(["capture", "--from-sfdisk", p(&path), "-o", "-"])
            .run();
        assert!(
            matches!(run.code, 0 | 2),
            "dump {i}: exit {}\n{}",
            run.code,
            run.stderr
        );
    }
}

/// A data disk (no active partition) is not marked critical: a critical
/// MBR disk with nothing to start would fail check (RP0341).
#[test]
fn a_disk_without_an_active_partition_captures_to_a_plan_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = image(d, "data.img", 16 * MIB);
    sh(&format!(
        "printf 'label: dos\\nstart=2048, type=83\\n' | sfdisk -q '{}'",
        p(&disk)
    ));
    Rplan::new()
        .args(["capture", "--disk"])
        .arg(format!("disk1={}", p(&disk)))
        .args(["-o", "data.yaml"])
        .args(MACHINE)
        .in_dir(d)
        .run()
        .code(0);
    let text = std::fs::read_to_string(d.join("data.yaml")).unwrap();
    assert!(!text.contains("critical: true"), "{text}");
    Rplan::new()
        .args(["check", "data.yaml"])
        .in_dir(d)
        .run()
        .code(0);
}

/// An XP-style disk made with sfdisk from tests/data/sfdisk/xp-logicals.dump
/// (sfdisk puts the first EBR at the container's start, 63 sectors before
/// its partition, and later EBRs just before theirs; the test moves those
/// to 63 sectors before, as Windows XP writes them) → `capture --disk` →
/// check → apply to a blank image: `sfdisk -d` is the source's, and every
/// EBR sits where the source's does with the same entries.
#[test]
fn xp_track_aligned_logicals_round_trip_from_a_disk() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sectors = 321_300u64;
    let dump = root().join("tests/data/sfdisk/xp-logicals.dump");
    let src = image(d, "src.img", sectors * 512);
    tool(
        "sh",
        &["-c", &format!("sfdisk -q '{}' < '{}'", p(&src), p(&dump))],
    );
    let (ext, logicals) = (
        64_260u64,
        [(64_323u64, 80_262u64), (144_648, 80_262), (224_973, 48_132)],
    );
    let sector = |f: &mut std::fs::File, lba: u64| {
        let mut b = [0u8; 512];
        f.seek(SeekFrom::Start(lba * 512)).unwrap();
        f.read_exact(&mut b).unwrap();
        b
    };
    let put = |f: &mut std::fs::File, lba: u64, b: &[u8; 512]| {
        f.seek(SeekFrom::Start(lba * 512)).unwrap();
        f.write_all(b).unwrap();
    };
    let u32le = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&src)
            .unwrap();
        for k in 1..logicals.len() {
            let (s, _) = logicals[k];
            let mut ebr = sector(&mut f, s - 1);
            assert_eq!(
                &ebr[510..],
                &[0x55, 0xaa],
                "sfdisk's EBR of logical {k} is not before it"
            );
            put(&mut f, s - 1, &[0u8; 512]);
            ebr[454..458].copy_from_slice(&63u32.to_le_bytes());
            put(&mut f, s - 63, &ebr);
            let prev = if k == 1 { ext } else { logicals[k - 1].0 - 63 };
            let mut pe = sector(&mut f, prev);
            pe[470..474].copy_from_slice(&((s - 63 - ext) as u32).to_le_bytes());
            pe[474..478].copy_from_slice(&((logicals[k].1 + 63) as u32).to_le_bytes());
            put(&mut f, prev, &pe);
        }
    }
    let same_names = |t: String, img: &Path| t.replace(p(img), "/dev/X");
    let theirs = std::fs::read_to_string(&dump)
        .unwrap()
        .replace("/dev/sda", "/dev/X");
    assert_eq!(
        same_names(tool("sfdisk", &["-d", p(&src)]), &src),
        theirs,
        "the source"
    );

    let plan = d.join("pc.yaml");
    Rplan::new()
        .args(["capture", "--disk"])
        .arg(format!("disk0={}", p(&src)))
        .args(["-o", p(&plan)])
        .args(MACHINE)
        .run()
        .code(0);
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.contains("extended: { type: \"0x05\", ebr_gap: 63, end: "),
        "{text}"
    );
    assert!(!text.contains("extended container"), "a note left: {text}");
    Rplan::new().args(["check", p(&plan)]).run().code(0);
    let copy = image(d, "copy.img", sectors * 512);
    apply(&plan, &copy);
    assert_eq!(
        same_names(tool("sfdisk", &["-d", p(&copy)]), &copy),
        theirs,
        "the copy"
    );
    // The EBRs: where the source's are, with the same entries (type and
    // LBA fields; CHS is not compared: sfdisk and Windows differ in it).
    let (mut a, mut b) = (
        std::fs::File::open(&src).unwrap(),
        std::fs::File::open(&copy).unwrap(),
    );
    for (s, _) in logicals {
        let (x, y) = (sector(&mut a, s - 63), sector(&mut b, s - 63));
        assert_eq!(&y[510..], &[0x55, 0xaa], "no EBR at {}", s - 63);
        for e in [446usize, 462] {
            assert_eq!(
                (x[e + 4], u32le(&x, e + 8), u32le(&x, e + 12)),
                (y[e + 4], u32le(&y, e + 8), u32le(&y, e + 12)),
                "EBR at sector {}, entry at byte {e}",
                s - 63
            );
        }
    }
}
