//! Disk images that hold something already, made with the system's own
//! tools (sfdisk, sgdisk, mkfs.*, mkswap, mkntfs): what an operator might
//! point rplan at by mistake. Identities (UUIDs, serials, signatures) are
//! fixed so that reports about them can be compared with snapshots.

#![allow(dead_code)]

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The kinds of non-blank disk the tests use.
pub const KINDS: [&str; 11] = [
    "foreign-dos",
    "whole-ext4",
    "swap",
    "gpt-wiped-lba0",
    "whole-vfat",
    "own-signature-other-partitions",
    "whole-xfs",
    "whole-btrfs",
    "iso9660",
    "lvm-pv",
    "sun-label",
];

pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .env("E2FSPROGS_FAKE_TIME", "946684800")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sfdisk(img: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .args(["-q", img.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk {script}");
}

/// Make a filesystem in a scratch file and copy it into `img` at `start`.
fn fs_at(img: &Path, start: u64, len: u64, mkfs: impl FnOnce(&str)) {
    let scratch = img.with_extension(format!("part{start}"));
    std::fs::File::create(&scratch)
        .unwrap()
        .set_len(len)
        .unwrap();
    mkfs(scratch.to_str().unwrap());
    let data = std::fs::read(&scratch).unwrap();
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&data, start).unwrap();
    std::fs::remove_file(scratch).unwrap();
}

pub fn ext4<'a>(label: &'a str, uuid: &'a str) -> impl FnOnce(&str) + 'a {
    move |p: &str| {
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-L",
                label,
                "-U",
                uuid,
                "-E",
                &format!("hash_seed={uuid}"),
                p,
            ],
        )
    }
}

fn ntfs<'a>(label: &'a str, serial: &'a str) -> impl FnOnce(&str) + 'a {
    move |p: &str| {
        run("mkntfs", &["-q", "-F", "-L", label, p]);
        run("ntfslabel", &[&format!("--new-serial={serial}"), p]);
    }
}

/// An image of the given kind in `dir`: 64 MiB, or what its filesystem
/// needs at least (XFS: 300 MiB, btrfs: 109 MiB).
pub fn make(dir: &Path, kind: &str) -> PathBuf {
    let len = match kind {
        "whole-xfs" => 320 * MIB,
        "whole-btrfs" => 128 * MIB,
        _ => 64 * MIB,
    };
    let img = image(dir, &format!("{kind}.img"), len);
    let p = img.to_str().unwrap();
    match kind {
        // A DOS table with two primaries and a logical partition: ext4
        // ROOTFS, ext4 HOME (with a file in it), NTFS WINDATA.
        "foreign-dos" => {
            sfdisk(
                &img,
                "label: dos\nlabel-id: 0x399fcc79\nstart=2048, size=16MiB, type=83\nstart=34816, size=16MiB, type=83\nstart=67584, type=5\nstart=69632, size=24MiB, type=7\n",
            );
            fs_at(
                &img,
                MIB,
                16 * MIB,
                ext4("ROOTFS", "11111111-2222-3333-4444-555555555555"),
            );
            fs_at(&img, 17 * MIB, 16 * MIB, |f| {
                ext4("HOME", "66666666-7777-8888-9999-000000000000")(f);
                let junk = format!("{f}.junk");
                std::fs::write(&junk, vec![0x5a; 3 * MIB as usize]).unwrap();
                run("debugfs", &["-w", "-R", &format!("write {junk} junk"), f]);
                std::fs::remove_file(junk).unwrap();
            });
            fs_at(
                &img,
                34 * MIB,
                24 * MIB,
                ntfs("WINDATA", "1122334455667788"),
            );
        }
        "whole-ext4" => ext4("WHOLE", "abcdefab-cdef-abcd-efab-cdefabcdefab")(p),
        "swap" => run(
            "mkswap",
            &[
                "-q",
                "-L",
                "SWAP",
                "-U",
                "0a0b0c0d-0e0f-1011-1213-141516171819",
                p,
            ],
        ),
        // A GPT whose protective MBR was zeroed: blkid sees nothing, gdisk
        // and wipefs still find the headers.
        "gpt-wiped-lba0" => {
            run(
                "sgdisk",
                &[
                    "-U",
                    "0c0c0c0c-1111-2222-3333-444444444444",
                    "-n",
                    "1:2048:+20M",
                    "-t",
                    "1:0700",
                    "-u",
                    "1:0d0d0d0d-1111-2222-3333-444444444444",
                    p,
                ],
            );
            fs_at(&img, MIB, 20 * MIB, |f| {
                run("mkfs.vfat", &["-i", "5eed5eed", "-n", "GPTDATA", f])
            });
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            f.write_all_at(&[0u8; 512], 0).unwrap();
        }
        // FAT on the bare disk: its boot sector ends in 0x55AA like an MBR.
        "whole-vfat" => run("mkfs.vfat", &["-i", "0badcafe", "-n", "WHOLEFAT", p]),
        // The plan's own disk signature, but other partitions than the plan's.
        "own-signature-other-partitions" => {
            sfdisk(
                &img,
                "label: dos\nlabel-id: 0x1a2b3c4d\nstart=2048, size=30MiB, type=83\n",
            );
            fs_at(
                &img,
                MIB,
                30 * MIB,
                ext4("OLDROOT", "77777777-7777-7777-7777-777777777777"),
            );
        }
        "whole-xfs" => run(
            "mkfs.xfs",
            &[
                "-q",
                "-f",
                "-L",
                "XFSDISK",
                "-m",
                "uuid=12345678-1234-1234-1234-123456789abc",
                p,
            ],
        ),
        "whole-btrfs" => run(
            "mkfs.btrfs",
            &[
                "-q",
                "-f",
                "-L",
                "BTRDISK",
                "-U",
                "22345678-1234-1234-1234-123456789abc",
                p,
            ],
        ),
        // A CD image written to a disk (ISO 9660 descriptors from 32 KiB).
        "iso9660" => {
            let content = dir.join("iso-content");
            std::fs::create_dir_all(&content).unwrap();
            std::fs::write(content.join("README.TXT"), b"an installation CD\n").unwrap();
            let iso = dir.join("cd.iso");
            run(
                "xorriso",
                &[
                    "-as",
                    "mkisofs",
                    "-quiet",
                    "-V",
                    "ISODISK",
                    "-o",
                    iso.to_str().unwrap(),
                    content.to_str().unwrap(),
                ],
            );
            let data = std::fs::read(&iso).unwrap();
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
            f.write_all_at(&data, 0).unwrap();
        }
        // An LVM physical volume on the bare disk. pvcreate wants a block
        // device: a loop device over the image, without udev.
        "lvm-pv" => {
            let dev = tool("losetup", &["-f", "--show", p]).trim().to_string();
            let out = Command::new("pvcreate")
                .args([
                    "-q",
                    "--config",
                    "devices { obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 }",
                    "--norestorefile",
                    "-u",
                    "3Lxrfw-n2H8-IMEB-zVG8-QN4f-J6VH-HlyErE",
                    &dev,
                ])
                .env("LVM_SUPPRESS_FD_WARNINGS", "1")
                .output();
            tool("losetup", &["-d", &dev]);
            let out = out.unwrap();
            assert!(
                out.status.success(),
                "pvcreate: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // A partition table of a kind rplan does not read (Sun VTOC).
        "sun-label" => {
            sfdisk(&img, "label: sun\n,20M,83\n");
        }
        other => panic!("unknown kind {other}"),
    }
    img
}

/// A plan for one 64 MiB MBR disk with the signature 0x1a2b3c4d: a raw
/// image in `sys`, ext4 `DATA` in the rest. Stages: Last Known Good (a
/// command that fails), then ASR.
pub fn plan(dir: &Path) -> PathBuf {
    let data: Vec<u8> = (0..MIB as usize).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(dir.join("sys.img"), &data).unwrap();
    let sys = sha(&dir.join("sys.img"));
    let p = dir.join("plan.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: blank-test\nsystem: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: x86 }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: sys, path: sys.img, format: raw, size: 1MiB, sha256: {sys} }} ] }}\n\
disks:\n\x20\x20- {{ id: d0, critical: true, table: mbr, signature: \"0x1a2b3c4d\", size: 64MiB, partitions: [ {{ id: sys, size: 8MiB, type: ntfs, bootable: true, content: {{ image: sys }} }}, {{ id: data, size: rest, type: linux, content: {{ format: {{ fs: ext4, label: DATA }} }} }} ] }}\n\
stages:\n\x20\x20- {{ id: lkg, kind: last-known-good, actions: [ {{ run: [/bin/false] }} ] }}\n\x20\x20- {{ id: asr, kind: asr }}\n"
        ),
    )
    .unwrap();
    p
}

/// `blkid -p -o export` of the window at `offset` (whole disk: 0) as
/// KEY=VALUE pairs; empty when blkid finds nothing.
pub fn blkid(img: &Path, offset: u64) -> Vec<(String, String)> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export", "-O", &offset.to_string()])
        .arg(img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `wipefs` (no writing): every signature it finds, as (offset, type).
pub fn wipefs(img: &Path) -> Vec<(String, String)> {
    let out = tool(
        "wipefs",
        &[
            "--noheadings",
            "--output",
            "OFFSET,TYPE",
            img.to_str().unwrap(),
        ],
    );
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}
