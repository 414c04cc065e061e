//! Targets, partition tables and image restore, checked on sparse temp
//! images with outside tools only: what sfdisk, sgdisk, cmp, sha256sum and
//! blkid see is what a recovered machine will see.

mod ttr_support;

use rplan_runtime::restore::{
    hex, open_artifact, restore, sha256_file_stream, ArtifactFormat, Expected, RestoreError,
    RestoreOptions,
};
use rplan_runtime::table::{
    clear_signatures, gpt_partition_guid, read_table, table_matches, write_table, ExtendedLayout,
    PartSpec, TableError, TableKind, TableSpec,
};
use rplan_runtime::target::{
    mounted_or_in_use, open_target, Access, BlockDevice, Device, ImageFile, MemDevice, Region,
    TargetError,
};
use std::io::{Read, Seek, SeekFrom, Write};
use ttr_support::*;
use uuid::Uuid;

const EFI: Uuid = uuid::uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
const MSR: Uuid = uuid::uuid!("E3C9E316-0B5C-4DB8-817D-F92DF00215AE");
const BASIC_DATA: Uuid = uuid::uuid!("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
const DISK_GUID: Uuid = uuid::uuid!("6f1e0c52-3a1b-4d2e-9f00-1234567890ab");
const EFI_GUID: Uuid = uuid::uuid!("0b6a9f3e-58c4-4a7e-8d1c-aabbccddeeff");
const IMAGE: u64 = 32 * MIB;

fn part(start_lba: u64, size_lba: u64) -> PartSpec {
    PartSpec {
        start_lba,
        size_lba,
        mbr_type: 0x07,
        gpt_type: BASIC_DATA,
        guid: None,
        name: String::new(),
        bootable: false,
        logical: false,
    }
}

/// Two primaries around an extended container with two logical partitions.
fn mbr_spec() -> TableSpec {
    TableSpec {
        kind: TableKind::Mbr {
            signature: 0x1a2b_3c4d,
        },
        sector_size: 512,
        partitions: vec![
            PartSpec {
                bootable: true,
                ..part(2048, 8192)
            },
            PartSpec {
                mbr_type: 0x83,
                logical: true,
                ..part(12288, 4096)
            },
            PartSpec {
                mbr_type: 0x0b,
                logical: true,
                ..part(18432, 4096)
            },
            PartSpec {
                mbr_type: 0x0c,
                ..part(24576, 8192)
            },
        ],
        boot_code: None,
        extended: None,
    }
}

fn gpt_spec() -> TableSpec {
    TableSpec {
        kind: TableKind::Gpt {
            disk_guid: DISK_GUID,
        },
        sector_size: 512,
        partitions: vec![
            PartSpec {
                gpt_type: EFI,
                guid: Some(EFI_GUID),
                name: "EFI system".into(),
                ..part(2048, 4096)
            },
            PartSpec {
                gpt_type: MSR,
                name: "Microsoft reserved".into(),
                ..part(6144, 2048)
            },
            PartSpec {
                name: "system".into(),
                bootable: true,
                ..part(8192, 40960)
            },
        ],
        boot_code: None,
        extended: None,
    }
}

/// Byte ranges a table writer may touch, worked out here independently of
/// rplan: LBA 0, the EBR before each logical partition, and for GPT the 34
/// sectors at the front and 33 at the back.
fn declared_ranges(spec: &TableSpec, disk: u64) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = spec
        .partitions
        .iter()
        .map(|p| (p.start_lba * 512, p.size_lba * 512))
        .collect();
    match spec.kind {
        TableKind::Mbr { .. } => {
            r.push((0, 512));
            for p in spec.partitions.iter().filter(|p| p.logical) {
                r.push(((p.start_lba - 1) * 512, 512));
            }
        }
        TableKind::Gpt { .. } => {
            r.push((0, 34 * 512));
            r.push((disk - 33 * 512, 33 * 512));
        }
    }
    r
}

fn write_spec(path: &std::path::Path, spec: &TableSpec) {
    let mut img = ImageFile::open(path, Access::ReadWrite).expect("open image");
    write_table(&mut img, spec).expect("write table");
}

fn matches(path: &std::path::Path, spec: &TableSpec) -> bool {
    let img = ImageFile::open(path, Access::ReadOnly).expect("open image");
    table_matches(&img, spec).expect("table_matches")
}

#[test]
fn mbr_with_logical_partitions_reads_back_in_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "mbr.img", IMAGE);
    write_spec(&img, &mbr_spec());

    let t = sfdisk_json(s(&img));
    assert_eq!(t["label"], "dos");
    assert_eq!(t["id"], "0x1a2b3c4d");
    assert_eq!(t["partitions"].as_array().unwrap().len(), 5, "{t}");

    let p1 = sfdisk_part(&t, 1);
    assert_eq!(
        (p1["start"].as_u64(), p1["size"].as_u64()),
        (Some(2048), Some(8192))
    );
    assert_eq!(p1["type"], "7");
    assert_eq!(p1["bootable"], true);

    // The extended container sits in the slot of the first logical
    // partition and spans from its EBR to the end of the last one.
    let ext = sfdisk_part(&t, 2);
    assert_eq!(ext["type"], "f");
    let (ext_start, ext_size) = (
        ext["start"].as_u64().unwrap(),
        ext["size"].as_u64().unwrap(),
    );
    assert_eq!((ext_start, ext_size), (12287, 18432 + 4096 - 12287));
    assert!(ext.get("bootable").is_none());

    let p3 = sfdisk_part(&t, 3);
    assert_eq!(
        (p3["start"].as_u64(), p3["size"].as_u64()),
        (Some(24576), Some(8192))
    );
    assert_eq!(p3["type"], "c");

    for (n, start, ty) in [(5, 12288, "83"), (6, 18432, "b")] {
        let l = sfdisk_part(&t, n);
        assert_eq!(l["start"].as_u64(), Some(start), "{l}");
        assert_eq!(l["size"].as_u64(), Some(4096), "{l}");
        assert_eq!(l["type"], ty);
        assert!(start > ext_start && start + 4096 <= ext_start + ext_size);
    }
    let verify = tool_ok("sfdisk", &["--verify", s(&img)]);
    assert!(verify.contains("No errors detected"), "{verify}");
}

#[test]
fn gpt_reads_back_in_sgdisk_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "gpt.img", IMAGE);
    let spec = gpt_spec();
    write_spec(&img, &spec);

    let v = tool_ok("sgdisk", &["-v", s(&img)]);
    assert!(v.contains("No problems found"), "{v}");

    let upper = |u: Uuid| u.hyphenated().to_string().to_uppercase();
    let derived2 = gpt_partition_guid(DISK_GUID, 2);
    let derived3 = gpt_partition_guid(DISK_GUID, 3);
    assert_ne!(derived2, derived3);
    for (n, guid, ty, name) in [
        (1, EFI_GUID, EFI, "EFI system"),
        (2, derived2, MSR, "Microsoft reserved"),
        (3, derived3, BASIC_DATA, "system"),
    ] {
        let info = tool_ok("sgdisk", &["-i", &n.to_string(), s(&img)]);
        assert!(
            info.contains(&format!("Partition unique GUID: {}", upper(guid))),
            "{info}"
        );
        assert!(
            info.contains(&format!("Partition GUID code: {}", upper(ty))),
            "{info}"
        );
        assert!(
            info.contains(&format!("Partition name: '{name}'")),
            "{info}"
        );
    }
    let info3 = tool_ok("sgdisk", &["-A", "3:show", s(&img)]);
    assert!(info3.contains("legacy BIOS bootable"), "{info3}");

    let t = sfdisk_json(s(&img));
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["id"], upper(DISK_GUID));
    assert_eq!(t["firstlba"].as_u64(), Some(34));
    assert_eq!(t["lastlba"].as_u64(), Some(IMAGE / 512 - 34));
    for (n, p) in spec.partitions.iter().enumerate() {
        let got = sfdisk_part(&t, n as u32 + 1);
        assert_eq!(got["start"].as_u64(), Some(p.start_lba));
        assert_eq!(got["size"].as_u64(), Some(p.size_lba));
        assert_eq!(got["type"], upper(p.gpt_type));
    }

    // Same plan, another blank disk: the very same bytes.
    let again = sparse(dir.path(), "again.img", IMAGE);
    write_spec(&again, &spec);
    assert_eq!(sha256sum(&img), sha256sum(&again));
}

#[test]
fn xp_extended_layout_reads_back_in_sfdisk_and_matches() {
    // Windows XP's: type 0x05, EBRs 63 sectors before their partitions,
    // the container running past the last logical partition.
    let mut spec = mbr_spec();
    spec.extended = Some(ExtendedLayout {
        mbr_type: 0x05,
        ebr_gap: 63,
        end_lba: Some(24000),
    });
    spec.partitions[3].start_lba = 24576;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("xp.img");
    std::fs::File::create(&img).unwrap().set_len(IMAGE).unwrap();
    write_spec(&img, &spec);
    let dump = tool_ok("sfdisk", &["-d", s(&img)]);
    let starts: Vec<String> = dump
        .lines()
        .filter(|l| l.contains("start="))
        .map(|l| {
            l.split(':')
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .collect::<String>()
        })
        .collect();
    assert!(
        starts.contains(&"start=12225,size=11775,type=5".to_string()),
        "{dump}"
    );
    assert!(
        starts.contains(&"start=18432,size=4096,type=b".to_string()),
        "{dump}"
    );
    assert!(matches(&img, &spec));
    let dev = ImageFile::open(&img, Access::ReadOnly).unwrap();
    let t = read_table(&dev).unwrap().unwrap();
    assert_eq!(t.extended, spec.extended);
    assert!(t.problems.is_empty(), "{:?}", t.problems);
    // The same partitions in rplan's default container are another table.
    assert!(!matches(
        &img,
        &TableSpec {
            extended: None,
            ..spec.clone()
        }
    ));
}

#[test]
fn table_matches_only_the_exact_table() {
    let dir = tempfile::tempdir().unwrap();
    for spec in [mbr_spec(), gpt_spec()] {
        let img = sparse(dir.path(), "m.img", IMAGE);
        assert!(!matches(&img, &spec), "a blank disk matches nothing");
        write_spec(&img, &spec);
        assert!(matches(&img, &spec));

        let mut smaller = spec.clone();
        smaller.partitions[0].size_lba -= 1024;
        assert!(!matches(&img, &smaller));

        let mut other_disk = spec.clone();
        other_disk.kind = match spec.kind {
            TableKind::Mbr { signature } => TableKind::Mbr {
                signature: signature ^ 1,
            },
            TableKind::Gpt { .. } => TableKind::Gpt {
                disk_guid: Uuid::from_u128(7),
            },
        };
        assert!(!matches(&img, &other_disk));

        let mut flag = spec.clone();
        flag.partitions[0].bootable = !flag.partitions[0].bootable;
        assert!(!matches(&img, &flag));

        // Rewriting a matching table changes nothing on disk.
        let before = sha256sum(&img);
        write_spec(&img, &spec);
        assert_eq!(before, sha256sum(&img));

        // And a changed spec, once written, matches in turn.
        write_spec(&img, &smaller);
        assert!(matches(&img, &smaller));
        assert!(!matches(&img, &spec));
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn read_table_understands_tables_made_by_sfdisk_and_sgdisk() {
    let dir = tempfile::tempdir().unwrap();
    let blank = sparse(dir.path(), "blank.img", IMAGE);
    let dev = ImageFile::open(&blank, Access::ReadOnly).unwrap();
    assert!(read_table(&dev).unwrap().is_none());
    drop(dev);

    // sfdisk's own EBR layout (gaps of 2048 sectors) with logical partitions.
    let mbr = sparse(dir.path(), "mbr.img", IMAGE);
    let script = "label: dos\nlabel-id: 0xcafe0001\n2048,8192,7,*\n10240,40960,5\n12288,4096,83\n18432,4096,b\n";
    let out = std::process::Command::new("sfdisk")
        .args(["-q", s(&mbr)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    let t = read_table(&ImageFile::open(&mbr, Access::ReadOnly).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        t.kind,
        TableKind::Mbr {
            signature: 0xcafe_0001
        }
    );
    let got: Vec<(u32, u64, u64, u8, bool, bool)> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.number,
                p.start_lba,
                p.size_lba,
                p.mbr_type,
                p.bootable,
                p.logical,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 2048, 8192, 0x07, true, false),
            (5, 12288, 4096, 0x83, false, true),
            (6, 18432, 4096, 0x0b, false, true),
        ]
    );
    assert!(t.problems.is_empty(), "{:?}", t.problems);

    let gpt = sparse(dir.path(), "gpt.img", IMAGE);
    tool_ok(
        "sgdisk",
        &[
            "-U",
            &DISK_GUID.to_string(),
            "-n",
            "1:2048:+4M",
            "-t",
            "1:EF00",
            "-c",
            "1:ESP",
            "-u",
            &format!("1:{EFI_GUID}"),
            "-n",
            "3:0:+8M",
            "-t",
            "3:0700",
            s(&gpt),
        ],
    );
    let t = read_table(&ImageFile::open(&gpt, Access::ReadOnly).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        t.kind,
        TableKind::Gpt {
            disk_guid: DISK_GUID
        }
    );
    assert_eq!(t.partitions.len(), 2);
    let p1 = &t.partitions[0];
    assert_eq!((p1.number, p1.start_lba, p1.size_lba), (1, 2048, 8192));
    assert_eq!(
        (p1.gpt_type, p1.guid, p1.name.as_str()),
        (EFI, Some(EFI_GUID), "ESP")
    );
    let p3 = &t.partitions[1];
    assert_eq!(
        (p3.number, p3.start_lba, p3.gpt_type),
        (3, 10240, BASIC_DATA)
    );
    assert!(t.problems.is_empty(), "{:?}", t.problems);

    // Damage the backup header: still readable, with a problem noted.
    poke(&gpt, IMAGE - 512 + 8, b"broken!!");
    let t = read_table(&ImageFile::open(&gpt, Access::ReadOnly).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(t.partitions.len(), 2);
    assert_eq!(t.problems.len(), 1, "{:?}", t.problems);
    // Damage the primary too: corrupt, not "blank".
    poke(&gpt, 512 + 8, b"broken!!");
    let err = read_table(&ImageFile::open(&gpt, Access::ReadOnly).unwrap()).unwrap_err();
    assert!(matches!(err, TableError::Corrupt(_)), "{err}");
}

#[test]
fn an_ebr_chain_that_loops_is_corrupt_not_endless() {
    let mut dev = MemDevice::new(IMAGE, 512);
    write_table(&mut dev, &mbr_spec()).unwrap();
    // Point the second EBR's link back at the first one.
    let mut ebr = [0u8; 512];
    dev.read_at(&mut ebr, 12287 * 512).unwrap();
    let mut second = [0u8; 512];
    dev.read_at(&mut second, 18431 * 512).unwrap();
    second[462..478].copy_from_slice(&ebr[462..478]);
    dev.write_at(&second, 18431 * 512).unwrap();
    let err = read_table(&dev).unwrap_err();
    assert!(matches!(err, TableError::Corrupt(_)), "{err}");
}

#[test]
fn invalid_specs_are_refused_without_writing() {
    let mut dev = MemDevice::new(IMAGE, 512);
    let cases: Vec<(&str, TableSpec)> = vec![
        ("overlap", {
            let mut s = mbr_spec();
            s.partitions[3].start_lba = 20000;
            s
        }),
        ("no room for EBR", {
            let mut s = mbr_spec();
            s.partitions[1].start_lba = 2048 + 8192;
            s
        }),
        ("two bootable", {
            let mut s = mbr_spec();
            s.partitions[3].bootable = true;
            s
        }),
        ("past the end", {
            let mut s = gpt_spec();
            s.partitions[2].size_lba = IMAGE / 512;
            s
        }),
        ("GPT backup area", {
            let mut s = gpt_spec();
            s.partitions[2].size_lba = IMAGE / 512 - 8192 - 20;
            s
        }),
        ("sector size", {
            let mut s = gpt_spec();
            s.sector_size = 4096;
            s
        }),
    ];
    for (what, spec) in cases {
        assert!(write_table(&mut dev, &spec).is_err(), "{what} was accepted");
        assert!(dev.written_ranges().is_empty(), "{what} wrote something");
    }
}

/// Restore an artifact into partition 3 of a GPT image and compare with cmp.
fn restore_into_image(format: ArtifactFormat, skip_zeros: bool) {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "disk.img", IMAGE);
    let spec = gpt_spec();
    write_spec(&img, &spec);

    // 5 MiB + 123 bytes with a 1 MiB run of zeros in the middle.
    let size = 5 * MIB + 123;
    let raw = pattern_file(dir.path(), "system.img", size, 42);
    poke(&raw, 2 * MIB, &vec![0u8; MIB as usize]);
    let sha = sha256sum(&raw);
    let artifact = match format {
        ArtifactFormat::Raw | ArtifactFormat::File => raw.clone(),
        ArtifactFormat::RawZstd => {
            let zst = dir.path().join("system.img.zst");
            tool_ok("zstd", &["-q", "-3", s(&raw), "-o", s(&zst)]);
            zst
        }
        ArtifactFormat::PartcloneZstd => unreachable!("a filesystem: see partclone_image_…"),
    };
    let mut expected = Expected {
        size: Some(size),
        sha256: [0; 32],
    };
    hex_into(&sha, &mut expected.sha256);

    let p = &spec.partitions[2];
    let (start, capacity) = (p.start_lba * 512, p.size_lba * 512);
    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    let mut src = open_artifact(&artifact, format).unwrap();
    let mut seen = Vec::new();
    let stats = restore(
        &mut dev,
        start,
        capacity,
        &mut *src,
        &expected,
        &RestoreOptions { skip_zeros },
        &mut |n| seen.push(n),
    )
    .unwrap();
    drop(dev);

    assert_eq!(stats.bytes_in, size);
    assert_eq!(seen.last(), Some(&size));
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    if skip_zeros {
        assert_eq!(stats.bytes_skipped_zero, MIB);
        assert_eq!(stats.bytes_written, size - MIB);
    } else {
        assert_eq!((stats.bytes_written, stats.bytes_skipped_zero), (size, 0));
    }
    assert!(
        same_bytes(&img, start, &raw, 0, size),
        "restored bytes differ"
    );
    // Still a valid table afterwards.
    let v = tool_ok("sgdisk", &["-v", s(&img)]);
    assert!(v.contains("No problems found"), "{v}");
}

fn hex_into(hex_str: &str, out: &mut [u8; 32]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex_str[2 * i..2 * i + 2], 16).unwrap();
    }
}

#[test]
fn raw_image_restores_byte_for_byte() {
    restore_into_image(ArtifactFormat::Raw, false);
}

#[test]
fn raw_image_restores_skipping_zeros_on_a_fresh_image() {
    restore_into_image(ArtifactFormat::Raw, true);
}

#[test]
fn zstd_image_made_by_the_cli_restores_byte_for_byte() {
    restore_into_image(ArtifactFormat::RawZstd, true);
}

/// A partclone image made by partclone itself (its default CRC32 blocks
/// checksums included), through zstd: restored into partition 3 with
/// zero skipping, it gives back the filesystem image byte for byte
/// (mkfs on a sparse file leaves free blocks as zeros), nothing past the
/// partition changes, and e2fsck finds it clean.
#[test]
fn partclone_image_made_by_partclone_restores_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "disk.img", IMAGE);
    let spec = gpt_spec();
    write_spec(&img, &spec);
    let fs = dir.path().join("fs.img");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("a.bin"), vec![7u8; 300_000]).unwrap();
    tool_ok("truncate", &["-s", "4M", s(&fs)]);
    tool_ok("mkfs.ext4", &["-q", "-F", "-d", s(&files), s(&fs)]);
    let pcl = dir.path().join("fs.pcl");
    tool_ok(
        "partclone.extfs",
        &["-c", "-q", "-L", "/dev/null", "-s", s(&fs), "-o", s(&pcl)],
    );
    let zst = dir.path().join("fs.pcl.zst");
    tool_ok("zstd", &["-q", "-3", s(&pcl), "-o", s(&zst)]);
    let size = 4 * MIB;
    let mut expected = Expected {
        size: Some(size),
        sha256: [0; 32],
    };
    hex_into(&sha256sum(&fs), &mut expected.sha256);

    let p = &spec.partitions[2];
    let start = p.start_lba * 512;
    let after = start + size;
    poke(&img, after, &[0xAB; 512]);
    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    let mut src = open_artifact(&zst, ArtifactFormat::PartcloneZstd).unwrap();
    let stats = restore(
        &mut dev,
        start,
        size,
        &mut *src,
        &expected,
        &RestoreOptions { skip_zeros: true },
        &mut |_| {},
    )
    .unwrap();
    drop(dev);
    assert_eq!(stats.bytes_in, size);
    assert!(
        stats.bytes_skipped_zero > MIB,
        "free blocks were written: {stats:?}"
    );
    assert!(
        same_bytes(&img, start, &fs, 0, size),
        "restored bytes differ"
    );
    let mut tail = [0u8; 512];
    use std::io::{Read as _, Seek as _};
    let mut f = std::fs::File::open(&img).unwrap();
    f.seek(std::io::SeekFrom::Start(after)).unwrap();
    f.read_exact(&mut tail).unwrap();
    assert_eq!(tail, [0xAB; 512], "written past the partition");
}

#[test]
fn a_wrong_sha256_is_reported_with_the_real_digest() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "disk.img", 8 * MIB);
    let raw = pattern_file(dir.path(), "a.img", MIB + 7, 3);
    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    let mut src = open_artifact(&raw, ArtifactFormat::Raw).unwrap();
    let wrong = Expected {
        size: None,
        sha256: [0xab; 32],
    };
    let err = restore(
        &mut dev,
        MIB,
        4 * MIB,
        &mut *src,
        &wrong,
        &RestoreOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    match err {
        RestoreError::Sha256Mismatch { expected, actual } => {
            assert_eq!(expected, [0xab; 32]);
            assert_eq!(hex(&actual), sha256sum(&raw));
        }
        other => panic!("expected a sha256 mismatch, got {other}"),
    }
    // A stated size that differs is caught too.
    let mut src = open_artifact(&raw, ArtifactFormat::Raw).unwrap();
    let (sha, len) = sha256_file_stream(&mut *src).unwrap();
    assert_eq!((hex(&sha), len), (sha256sum(&raw), MIB + 7));
    let mut src = open_artifact(&raw, ArtifactFormat::Raw).unwrap();
    let err = restore(
        &mut dev,
        MIB,
        4 * MIB,
        &mut *src,
        &Expected {
            size: Some(MIB + 8),
            sha256: sha,
        },
        &RestoreOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, RestoreError::SizeMismatch { expected, actual } if expected == MIB + 8 && actual == MIB + 7),
        "{err}"
    );
}

#[test]
fn a_too_big_image_is_refused_before_writing_past_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern_file(dir.path(), "disk.img", 16 * MIB, 99);
    let orig = dir.path().join("orig.img");
    copy(&img, &orig);
    let raw = pattern_file(dir.path(), "big.img", 6 * MIB, 5);
    let (start, capacity) = (2 * MIB, 5 * MIB);

    // Size unknown: the overflow shows only while streaming.
    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    let mut src = open_artifact(&raw, ArtifactFormat::Raw).unwrap();
    let err = restore(
        &mut dev,
        start,
        capacity,
        &mut *src,
        &Expected {
            size: None,
            sha256: [0; 32],
        },
        &RestoreOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    drop(dev);
    assert!(
        matches!(err, RestoreError::TooLarge { capacity: c, .. } if c == capacity),
        "{err}"
    );
    assert!(
        same_bytes(&img, 0, &orig, 0, start),
        "bytes before the range changed"
    );
    let end = start + capacity;
    assert!(
        same_bytes(&img, end, &orig, end, 16 * MIB - end),
        "wrote past capacity"
    );
    // The first 4 MiB buffer did go in: the test would notice a restore
    // that silently wrote nothing.
    assert!(same_bytes(&img, start, &raw, 0, 4 * MIB));

    // Size stated: refused before anything is written.
    copy(&orig, &img);
    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    let mut src = open_artifact(&raw, ArtifactFormat::Raw).unwrap();
    let err = restore(
        &mut dev,
        start,
        capacity,
        &mut *src,
        &Expected {
            size: Some(6 * MIB),
            sha256: [0; 32],
        },
        &RestoreOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    drop(dev);
    assert!(
        matches!(err, RestoreError::TooLarge { size, .. } if size == 6 * MIB),
        "{err}"
    );
    assert_eq!(sha256sum(&img), sha256sum(&orig));
}

/// The whole ASR write path on a disk full of old data: only the declared
/// ranges may change.
fn only_declared_ranges_change(spec: TableSpec) {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern_file(dir.path(), "disk.img", IMAGE, 7);
    let orig = dir.path().join("orig.img");
    copy(&img, &orig);
    let raw = pattern_file(dir.path(), "p1.img", 2 * MIB - 3, 11);
    let (sha, _) = sha256_file_stream(&mut std::fs::File::open(&raw).unwrap()).unwrap();

    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    write_table(&mut dev, &spec).unwrap();
    let p = &spec.partitions[0];
    let mut src = open_artifact(&raw, ArtifactFormat::Raw).unwrap();
    restore(
        &mut dev,
        p.start_lba * 512,
        p.size_lba * 512,
        &mut *src,
        &Expected {
            size: Some(2 * MIB - 3),
            sha256: sha,
        },
        &RestoreOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    let ranges: Vec<(u64, u64)> = spec
        .partitions
        .iter()
        .skip(1)
        .map(|p| (p.start_lba * 512, p.size_lba * 512))
        .collect();
    let cleared = clear_signatures(&mut dev, &ranges).unwrap();
    assert_eq!(cleared.len(), 2 * ranges.len(), "{cleared:?}");
    assert!(clear_signatures(&mut dev, &ranges).unwrap().is_empty());
    drop(dev);

    assert_untouched_outside(&orig, &img, &declared_ranges(&spec, IMAGE), IMAGE);
    // Things did change where they should.
    assert!(same_bytes(&img, p.start_lba * 512, &raw, 0, 2 * MIB - 3));
    assert!(!same_bytes(&img, 0, &orig, 0, 512));
    let (head, len) = ranges[0];
    assert!(same_bytes(
        &img,
        head,
        std::path::Path::new("/dev/zero"),
        0,
        128 * 1024
    ));
    assert!(same_bytes(
        &img,
        head + len - 128 * 1024,
        std::path::Path::new("/dev/zero"),
        0,
        128 * 1024
    ));
    assert!(same_bytes(
        &img,
        head + 128 * 1024,
        &orig,
        head + 128 * 1024,
        len - 256 * 1024
    ));
    let t = sfdisk_json(s(&img));
    // The table is still whole in the eyes of sfdisk.
    let listed = t["partitions"].as_array().unwrap().len();
    assert!(listed >= spec.partitions.len(), "{t}");
}

#[test]
fn mbr_apply_writes_only_inside_declared_ranges() {
    only_declared_ranges_change(mbr_spec());
}

#[test]
fn gpt_apply_writes_only_inside_declared_ranges() {
    only_declared_ranges_change(gpt_spec());
}

#[test]
fn clear_signatures_erases_what_blkid_finds() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "disk.img", IMAGE);
    let spec = gpt_spec();
    write_spec(&img, &spec);
    let p = &spec.partitions[2];
    let (start, len) = (p.start_lba * 512, p.size_lba * 512);

    // Make a real ext4 in the partition with mkfs, then ask blkid.
    let fs = sparse(dir.path(), "fs.img", len);
    tool_ok("mkfs.ext4", &["-q", "-F", s(&fs)]);
    tool_ok(
        "dd",
        &[
            &format!("if={}", s(&fs)),
            &format!("of={}", s(&img)),
            "bs=1M",
            &format!("seek={}", start / MIB),
            "conv=notrunc,sparse",
            "status=none",
        ],
    );
    let probe = |img: &std::path::Path| {
        tool(
            "blkid",
            &[
                "-p",
                "-O",
                &start.to_string(),
                "-S",
                &len.to_string(),
                "-o",
                "export",
                s(img),
            ],
        )
    };
    let before = probe(&img);
    assert!(String::from_utf8_lossy(&before.stdout).contains("TYPE=ext4"));

    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    let report = clear_signatures(&mut dev, &[(start, len)]).unwrap();
    drop(dev);
    assert!(
        report.iter().any(|r| r.contains("ext2/3/4 superblock")),
        "{report:?}"
    );
    let after = probe(&img);
    assert!(
        !String::from_utf8_lossy(&after.stdout).contains("TYPE="),
        "{after:?}"
    );
    assert_eq!(after.status.code(), Some(2), "blkid still finds something");
    let v = tool_ok("sgdisk", &["-v", s(&img)]);
    assert!(v.contains("No problems found"), "{v}");
}

#[test]
fn a_second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "disk.img", 4 * MIB);
    let first = ImageFile::open(&img, Access::ReadWrite).unwrap();
    assert!(matches!(
        ImageFile::open(&img, Access::ReadWrite),
        Err(TargetError::Locked)
    ));
    assert!(matches!(
        ImageFile::open(&img, Access::ReadOnly),
        Err(TargetError::Locked)
    ));
    assert!(matches!(
        open_target(&img, Access::ReadWrite),
        Err(TargetError::Locked)
    ));
    drop(first);

    let r1 = ImageFile::open(&img, Access::ReadOnly).unwrap();
    let r2 = ImageFile::open(&img, Access::ReadOnly).unwrap();
    assert!(matches!(
        ImageFile::open(&img, Access::ReadWrite),
        Err(TargetError::Locked)
    ));
    drop((r1, r2));
    let mut w = ImageFile::open(&img, Access::ReadWrite).unwrap();
    // A read-only open cannot write, and a write never grows the image.
    assert!(w.write_at(b"x", 4 * MIB).is_err());
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 4 * MIB);
}

#[test]
fn open_target_picks_by_file_type() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        open_target(dir.path(), Access::ReadOnly),
        Err(TargetError::NotADisk(_))
    ));
    assert!(matches!(
        open_target(dir.path().join("missing.img"), Access::ReadOnly),
        Err(TargetError::NotFound)
    ));
    assert!(matches!(
        open_target("/dev/null", Access::ReadOnly),
        Err(TargetError::NotADisk(_))
    ));
    let img = sparse(dir.path(), "disk.img", 3 * MIB);
    let dev = open_target(&img, Access::ReadOnly).unwrap();
    assert_eq!((dev.len(), dev.sector_size()), (3 * MIB, 512));
    assert!(mounted_or_in_use(&img).is_none());
    let four_k = ImageFile::open(&img, Access::ReadOnly)
        .unwrap()
        .with_sector_size(4096)
        .unwrap();
    assert_eq!(four_k.sector_size(), 4096);
}

#[test]
fn image_zero_range_punches_a_hole_and_stays_in_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern_file(dir.path(), "disk.img", 4 * MIB, 1);
    let orig = dir.path().join("orig.img");
    copy(&img, &orig);
    let mut dev = ImageFile::open(&img, Access::ReadWrite).unwrap();
    dev.zero_range(MIB + 100, 2 * MIB).unwrap();
    assert!(dev.zero_range(3 * MIB, 2 * MIB).is_err());
    drop(dev);
    let zero = std::path::Path::new("/dev/zero");
    assert!(same_bytes(&img, MIB + 100, zero, 0, 2 * MIB));
    assert!(same_bytes(&img, 0, &orig, 0, MIB + 100));
    let end = 3 * MIB + 100;
    assert!(same_bytes(&img, end, &orig, end, 4 * MIB - end));
    // The hole is real: fewer blocks are allocated than the file's size.
    let blocks = tool_ok("du", &["--block-size=1", s(&img)]);
    let used: u64 = blocks.split_whitespace().next().unwrap().parse().unwrap();
    assert!(used <= 3 * MIB, "no hole punched: {used} bytes allocated");
}

#[test]
fn a_region_cannot_reach_outside_its_window() {
    let mut mem = MemDevice::new(MIB, 512);
    {
        let mut r = Region::new(&mut mem, 4096, 8192).unwrap();
        r.write_all(&[0xaa; 8192]).unwrap();
        let err = r.write(&[1]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(
            r.seek(SeekFrom::Start(8193)).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        r.seek(SeekFrom::End(-10)).unwrap();
        let err = r.write(&[1; 11]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
        assert!(Device::write_at(&mut r, &[1], 8192).is_err());
        r.seek(SeekFrom::Start(8190)).unwrap();
        let mut buf = [0u8; 10];
        assert_eq!(r.read(&mut buf).unwrap(), 2);
        assert!(Region::new(&mut mem, MIB - 10, 11).is_err());
    }
    assert_eq!(mem.written_ranges(), vec![(4096, 8192)]);
    mem.zero_range(0, 6000).unwrap();
    let mut b = [9u8; 8];
    mem.read_at(&mut b, 5996).unwrap();
    assert_eq!(b, [0, 0, 0, 0, 0xaa, 0xaa, 0xaa, 0xaa]);
    assert_eq!(mem.written_ranges(), vec![(0, 12288)]);
}

/// Block devices, on a loop device with 4096-byte sectors: size and sector
/// size from the kernel, O_EXCL, BLKZEROOUT, a GPT for 4K sectors checked by
/// sgdisk, and the in-use checks. Skipped where loop devices are missing.
#[test]
fn block_device_on_a_4k_loop_device() {
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "loop.img", IMAGE);
    let Some(lo) = Loop::attach(&img, 4096) else {
        return;
    };
    let reason = mounted_or_in_use(&img).expect("an attached image is in use");
    assert!(
        reason.contains(lo.dev.trim_start_matches("/dev/")),
        "{reason}"
    );
    assert!(mounted_or_in_use(&lo.dev).is_none());

    let spec = TableSpec {
        kind: TableKind::Gpt {
            disk_guid: DISK_GUID,
        },
        sector_size: 4096,
        partitions: vec![
            PartSpec {
                name: "data".into(),
                ..part(256, 2048)
            },
            PartSpec {
                gpt_type: MSR,
                ..part(2304, 1024)
            },
        ],
        boot_code: None,
        extended: None,
    };
    {
        let mut dev = BlockDevice::open(&lo.dev, Access::ReadWrite).unwrap();
        assert_eq!((dev.len(), dev.sector_size()), (IMAGE, 4096));
        assert!(matches!(
            BlockDevice::open(&lo.dev, Access::ReadWrite),
            Err(TargetError::InUse(_))
        ));
        // Sector size from the plan must match the device's.
        assert!(matches!(
            write_table(&mut dev, &gpt_spec()),
            Err(TableError::SectorSizeMismatch { .. })
        ));
        write_table(&mut dev, &spec).unwrap();
        assert!(table_matches(&dev, &spec).unwrap());

        dev.write_at(&noise(3 * MIB as usize, 5), 9 * MIB).unwrap();
        dev.zero_range(9 * MIB + 1000, MIB + 5000).unwrap();
        dev.sync().unwrap();
    }
    let zero = std::path::Path::new("/dev/zero");
    let loopdev = std::path::Path::new(&lo.dev);
    assert!(same_bytes(loopdev, 9 * MIB + 1000, zero, 0, MIB + 5000));
    assert!(!same_bytes(loopdev, 9 * MIB, zero, 0, 1000));
    assert!(!same_bytes(loopdev, 10 * MIB + 6000, zero, 0, 1000));

    let v = tool_ok("sgdisk", &["-v", &lo.dev]);
    assert!(v.contains("No problems found"), "{v}");
    let t = sfdisk_json(&lo.dev);
    assert_eq!(t["sectorsize"].as_u64(), Some(4096));
    assert_eq!(t["id"], DISK_GUID.hyphenated().to_string().to_uppercase());
    let p1 = sfdisk_part(&t, 1);
    assert_eq!(
        (p1["start"].as_u64(), p1["size"].as_u64()),
        (Some(256), Some(2048))
    );

    // A mounted filesystem makes its device in use. (Containers often
    // cannot scan loop partitions, so this mounts a whole loop device.)
    let fs_img = sparse(dir.path(), "fs.img", 16 * MIB);
    tool_ok("mkfs.ext4", &["-q", "-F", s(&fs_img)]);
    let Some(fs_lo) = Loop::attach(&fs_img, 512) else {
        return;
    };
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !tool("mount", &[&fs_lo.dev, s(&mnt)]).status.success() {
        eprintln!("cannot mount {}, skipping the mounted case", fs_lo.dev);
        return;
    }
    let reason = mounted_or_in_use(&fs_lo.dev);
    let opened = BlockDevice::open(&fs_lo.dev, Access::ReadWrite);
    let read_only = BlockDevice::open(&fs_lo.dev, Access::ReadOnly);
    tool_ok("umount", &[s(&mnt)]);
    let reason = reason.expect("a mounted device is in use");
    assert!(
        reason.contains(" is mounted on ") && reason.contains("/mnt (ext4)"),
        "{reason}"
    );
    match opened {
        Err(TargetError::InUse(why)) => assert!(why.contains("mounted"), "{why}"),
        other => panic!("expected InUse, got {other:?}"),
    }
    assert!(
        read_only.is_ok(),
        "dry-run must be able to read a busy disk"
    );
    assert!(mounted_or_in_use(&fs_lo.dev).is_none());
}
