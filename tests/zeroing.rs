//! Disks that cannot zero by themselves: without write-zeroes offload,
//! BLKZEROOUT makes the kernel write every zero byte at the disk's speed.
//! rplan then restores an image in one pass of writes (not zeros first and
//! the image over them), and its estimates count the zeros a format writes.
//!
//! The slow disk is real: a loop device with direct I/O over a file on an
//! ext2 filesystem, which cannot `fallocate`, so the loop device refuses
//! write-zeroes and the kernel falls back to writing zero pages. It is
//! judged by the kernel's own count of sectors written to it
//! (`/sys/block/loopN/stat`) and by `cmp` of the restored bytes.

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// A loop device that the test detaches however it ends.
struct Loop {
    dev: String,
}

impl Loop {
    /// `losetup` over `file` with direct I/O: writes reach the file's
    /// filesystem as they are, not through a second page cache.
    fn attach(file: &Path) -> Loop {
        let dev = tool(
            "losetup",
            &["-f", "--show", "--direct-io=on", file.to_str().unwrap()],
        );
        Loop {
            dev: dev.trim().to_string(),
        }
    }

    fn queue(&self, name: &str) -> String {
        let base = Path::new(&self.dev).file_name().unwrap().to_str().unwrap();
        std::fs::read_to_string(format!("/sys/block/{base}/{name}"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Sectors written to the device so far, by the kernel's count.
    fn bytes_written(&self) -> u64 {
        let stat = self.queue("stat");
        let sectors: u64 = stat.split_whitespace().nth(6).unwrap().parse().unwrap();
        sectors * 512
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup")
            .args(["-d", &self.dev])
            .status();
    }
}

/// A filesystem the test mounted, unmounted however it ends.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        // A loop device just detached from a file in it may still hold the
        // file for a moment: retry, then unmount lazily.
        for _ in 0..20 {
            let done = std::process::Command::new("umount").arg(&self.0).status();
            if done.is_ok_and(|s| s.success()) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A `len`-byte disk without write-zeroes offload, and the ext2
/// filesystem it lives on (mounted through a loop device of its own,
/// `mount -o loop`). The disk is detached before the filesystem is
/// unmounted: the tuple drops in that order.
fn slow_disk(dir: &Path, len: u64) -> (Loop, Mount) {
    let fs = dir.join("ext2.img");
    tool(
        "truncate",
        &["-s", &(len + 64 * MIB).to_string(), fs.to_str().unwrap()],
    );
    tool("mke2fs", &["-q", "-t", "ext2", "-F", fs.to_str().unwrap()]);
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    tool(
        "mount",
        &["-o", "loop", fs.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    let holder = Mount(mnt.clone());
    let file = mnt.join("disk.img");
    tool(
        "truncate",
        &["-s", &len.to_string(), file.to_str().unwrap()],
    );
    let disk = Loop::attach(&file);
    // A loop device learns that its file cannot zero at the first refusal
    // (the kernel then writes the zeros itself); a real disk without
    // offload says so from the start.
    tool("blkdiscard", &["-z", "-o", "0", "-l", "4096", &disk.dev]);
    assert_eq!(
        disk.queue("queue/write_zeroes_max_bytes"),
        "0",
        "{} should have no write-zeroes offload",
        disk.dev
    );
    (disk, holder)
}

/// One MBR disk of `disk` bytes, one partition of `part` bytes at 1 MiB.
fn plan(dir: &Path, disk: u64, part: u64, content: &str, artifacts: &str) -> PathBuf {
    let p = dir.join("p.yaml");
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: zeroing\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n{artifacts}\
disks:\n  - id: d0\n    critical: true\n    table: mbr\n    signature: \"0x0be4c400\"\n    size: {disk}\n    partitions:\n      - {{ id: sys, start: 1MiB, size: {part}, type: ntfs, bootable: true, content: {content} }}\n\
stages: [ {{ id: asr, kind: asr }} ]\n"
        ),
    )
    .unwrap();
    p
}

/// `rplan apply --yes --force PLAN --target d0=DEV` with a journal in `dir`.
fn apply(plan: &Path, dev: &str, dir: &Path, extra: &[&str]) -> Run {
    Rplan::new()
        .args([
            "apply",
            plan.to_str().unwrap(),
            "--yes",
            "--force",
            "--journal",
        ])
        .arg(dir.join("j").to_str().unwrap())
        .args(extra)
        .args(["--target", &format!("d0={dev}")])
        .run()
}

#[test]
fn an_image_is_written_once_onto_a_disk_that_cannot_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const IMG: u64 = 32 * MIB;
    std::fs::write(d.join("sys.img"), noise(IMG as usize, 31)).unwrap();
    let p = plan(
        d,
        64 * MIB,
        IMG,
        "{ image: img }",
        &format!(
            "backup: {{ id: b, root: ., artifacts: [ {{ id: img, path: sys.img, format: raw, size: {IMG}, sha256: {} }} ] }}\n",
            sha(&d.join("sys.img"))
        ),
    );
    let (disk, _holder) = slow_disk(d, 64 * MIB);
    let before = disk.bytes_written();
    apply(&p, &disk.dev, d, &[]).code(0);
    let written = disk.bytes_written() - before;
    // The image, the table and a little metadata; zeroing the range first
    // would have written the image's size twice.
    assert!(
        written < IMG + IMG / 4,
        "{written} bytes written to restore a {IMG}-byte image"
    );
    assert!(
        written >= IMG,
        "{written} bytes written: the image is not all there"
    );
    let restored = d.join("restored.img");
    tool(
        "dd",
        &[
            &format!("if={}", disk.dev),
            &format!("of={}", restored.display()),
            "bs=1M",
            "skip=1",
            "count=32",
            "status=none",
        ],
    );
    assert_eq!(sha(&restored), sha(&d.join("sys.img")));
}

#[test]
fn a_format_on_a_disk_that_cannot_zero_is_estimated_at_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Only dry-run here: nothing is written, so the disks can be large.
    const DISK: u64 = 1 << 30;
    let p = plan(
        d,
        DISK,
        512 * MIB,
        "{ format: { fs: ntfs, label: SYS } }",
        "",
    );
    let dry_run = |target: &str| {
        let run = Rplan::new()
            .args([
                "dry-run",
                p.to_str().unwrap(),
                "--force",
                "--format",
                "json",
                "--target",
                &format!("d0={target}"),
            ])
            .run()
            .code(0);
        // The event stream's last line is the result, with the report.
        let last = run.stdout.lines().last().unwrap_or_default().to_string();
        serde_json::from_str::<serde_json::Value>(&last).unwrap()
    };
    let format_step = |report: &serde_json::Value| {
        report["dry_run"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"].as_str().unwrap().ends_with("/format"))
            .cloned()
            .unwrap()
    };
    // A loop device over a file of this machine's filesystem zeroes by
    // punching holes: the compiler's estimate stands.
    let file = image(d, "fast.img", DISK);
    let fast = Loop::attach(&file);
    assert_ne!(fast.queue("queue/write_zeroes_max_bytes"), "0");
    let cheap = format_step(&dry_run(&fast.dev));
    drop(fast);
    let (slow, _holder) = slow_disk(d, DISK);
    let slow_run = dry_run(&slow.dev);
    let costly = format_step(&slow_run);
    assert!(
        costly["description"]
            .as_str()
            .unwrap()
            .contains("zeros written in full"),
        "{costly}"
    );
    assert!(
        !cheap["description"].as_str().unwrap().contains("zeros"),
        "{cheap}"
    );
    // 512 MiB at the plan's assumed throughput (50 MiB/s), on top of mkfs's
    // own time.
    assert!(
        costly["estimate_s"].as_u64() > cheap["estimate_s"].as_u64(),
        "{costly} vs {cheap}"
    );
    assert!(slow_run["dry_run"]["rto_estimate_s"].as_u64() > Some(0));
}

#[test]
fn zeroing_a_disk_that_cannot_zero_shows_progress_and_makes_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const PART: u64 = 512 * MIB;
    let p = plan(
        d,
        PART + 64 * MIB,
        PART,
        "{ format: { fs: ntfs, label: SYS } }",
        "",
    );
    let (disk, _holder) = slow_disk(d, PART + 64 * MIB);
    let before = disk.bytes_written();
    let run = apply(&p, &disk.dev, d, &["--format", "json"]).code(0);
    // The kernel wrote the partition's zeros: that is what the format's
    // fingerprint stands for.
    let written = disk.bytes_written() - before;
    assert!(written >= PART, "only {written} bytes written");
    // ...piece by piece, each piece a progress event of the format step.
    let progress: Vec<u64> = run
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "bytes" && e["step"].as_str().unwrap_or("").ends_with("/format"))
        .filter_map(|e| e["done"].as_u64())
        .collect();
    assert!(progress.len() >= 2, "{}", run.stdout);
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&PART));
    let probe = tool(
        "blkid",
        &["-p", "-O", &MIB.to_string(), "-o", "export", &disk.dev],
    );
    assert!(
        probe.contains("TYPE=ntfs") && probe.contains("LABEL=SYS"),
        "{probe}"
    );
}
