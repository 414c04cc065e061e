//! Recovery time: work that does not depend on the size of what is
//! restored or formatted, judged by what the kernel saw rplan do (strace's
//! record of every `pread64` on the target) and by the filesystem tools
//! (blkid, e2fsck, ntfsinfo), not by timing.
//!
//! - A journal entry from an apply onto another disk does not make rplan
//!   read the new disk's range to see whether the image is already there.
//! - A format costs what mkfs writes: nothing of a large sparse partition is
//!   read back, and a later run still notices a changed byte in it.
//! - The backup is hashed while the targets are opened and inspected, and
//!   all of it before the first byte is written to a target.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const GIB: u64 = 1 << 30;

fn plan(dir: &Path, name: &str, image: Option<(&str, &[u8])>, disk: u64, parts: &str) -> PathBuf {
    let artifacts = match image {
        Some((file, bytes)) => {
            std::fs::write(dir.join(file), bytes).unwrap();
            format!(
                "backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: img, path: {file}, format: raw, size: {}, sha256: {} }}\n",
                bytes.len(),
                sha(&dir.join(file))
            )
        }
        None => String::new(),
    };
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: {name}\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n{artifacts}\
disks:\n  - id: d0\n    critical: true\n    table: mbr\n    signature: \"0x0be4c400\"\n    size: {disk}\n    partitions:\n{parts}\
stages: [ {{ id: asr, kind: asr }} ]\n"
        ),
    )
    .unwrap();
    p
}

/// `rplan apply` under strace; returns the run and the bytes it read from
/// `target` with pread64 (strace -y names each descriptor's file).
fn traced_apply(plan: &Path, target: &Path, journal: &Path, dir: &Path) -> (Run, u64) {
    let (run, lines) = strace_apply(
        plan,
        target,
        journal,
        dir,
        "trace=pread64",
        &["--format", "json"],
    );
    let name = std::fs::canonicalize(target).unwrap();
    let needle = format!("<{}>", name.display());
    let bytes = lines
        .iter()
        .filter(|l| l.contains("pread64(") && l.contains(&needle))
        .map(|l| returned(l))
        .sum();
    (run, bytes)
}

/// `rplan apply --yes` of `plan` onto `target` under `strace -f -y -e
/// TRACE`: the run, and the syscalls in the order strace saw them across
/// all threads (`-y`: each descriptor's file named).
fn strace_apply(
    plan: &Path,
    target: &Path,
    journal: &Path,
    dir: &Path,
    trace: &str,
    extra: &[&str],
) -> (Run, Vec<String>) {
    let log = dir.join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-y", "-e", trace, "-e", "signal=none", "-o"])
        .arg(&log)
        .arg(bin())
        .args(["apply", "--yes", "--journal"])
        .arg(journal)
        .args(extra)
        .arg("--target")
        .arg(format!("d0={}", target.display()))
        .arg(plan)
        .output()
        .expect("strace (apt-get install strace)");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let lines = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (run, lines)
}

/// What a traced syscall returned, when it is a byte count.
fn returned(line: &str) -> u64 {
    line.rsplit("= ")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn outcomes(run: &Run) -> Vec<(String, String)> {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step-finished")
        .map(|e| {
            (
                e["step"].as_str().unwrap_or_default().to_string(),
                e["outcome"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn outcome_of(run: &Run, suffix: &str) -> String {
    outcomes(run)
        .into_iter()
        .find(|(s, _)| s.ends_with(suffix))
        .map(|(_, o)| o)
        .unwrap_or_else(|| panic!("no step {suffix} in {}", run.stdout))
}

#[test]
fn a_journal_entry_for_another_disk_causes_no_reads_on_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const IMG: u64 = 16 * MIB;
    let bytes = noise(IMG as usize, 13);
    let p = plan(
        d,
        "other",
        Some(("sys.img", &bytes)),
        64 * MIB,
        "      - { id: sys, start: 1MiB, size: 16MiB, type: ntfs, bootable: true, content: { image: img } }\n",
    );
    let journal = d.join("j");
    let first = image(d, "first.img", 64 * MIB);
    let (run, _) = traced_apply(&p, &first, &journal, d);
    run.code(0);
    // A brand-new disk, the same journal directory: the earlier success on
    // `first` is no reason to hash this disk's range before writing it.
    let second = image(d, "second.img", 64 * MIB);
    let (run, read) = traced_apply(&p, &second, &journal, d);
    let run = run.code(0);
    assert_eq!(outcome_of(&run, "/restore"), "ok");
    assert!(
        read < IMG / 4,
        "read {read} bytes of the new target before restoring {IMG} bytes onto it"
    );
    let restored = d.join("restored.img");
    tool(
        "dd",
        &[
            &format!("if={}", second.display()),
            &format!("of={}", restored.display()),
            "bs=1M",
            "skip=1",
            "count=16",
            "status=none",
        ],
    );
    assert_eq!(sha(&restored), sha(&d.join("sys.img")));
    // The same disk again: the journal's entry is for it, and the image is
    // found in place without a write.
    let (run, _) = traced_apply(&p, &second, &journal, d);
    assert_eq!(outcome_of(&run.code(0), "/restore"), "unchanged");
}

#[test]
fn the_backup_is_hashed_while_the_targets_are_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Large enough that hashing it outlasts opening and inspecting the target.
    const IMG: u64 = 128 * MIB;
    let mut bytes = vec![0u8; IMG as usize];
    bytes[..MIB as usize].copy_from_slice(&noise(MIB as usize, 21));
    let p = plan(
        d,
        "overlap",
        Some(("sys.img", &bytes)),
        192 * MIB,
        "      - { id: sys, start: 1MiB, size: 128MiB, type: ntfs, bootable: true, content: { image: img } }\n",
    );
    let target = image(d, "t.img", 192 * MIB);
    let (run, lines) = strace_apply(
        &p,
        &target,
        &d.join("j"),
        d,
        "trace=openat,read,pwrite64",
        &[],
    );
    run.code(0);
    let art = format!(
        "<{}>",
        std::fs::canonicalize(d.join("sys.img")).unwrap().display()
    );
    let tgt = std::fs::canonicalize(&target)
        .unwrap()
        .display()
        .to_string();
    let opened = lines
        .iter()
        .position(|l| l.contains("openat(") && l.contains(&tgt) && !l.contains("= -1"))
        .expect("the target is opened");
    let first_write = lines
        .iter()
        .position(|l| l.contains("pwrite64(") && l.contains(&format!("<{tgt}>")))
        .expect("the target is written");
    // Each completed read of the backup: (line where it returned, bytes).
    // strace splits a call another thread interrupts into `<unfinished ...>`
    // and `<... read resumed>` lines; only the first names the file.
    let mut pending = std::collections::HashSet::new();
    let mut backup_reads: Vec<(usize, u64)> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let pid = l.split_whitespace().next().unwrap_or("");
        if l.contains(" read(") && l.contains(&art) {
            if l.contains("<unfinished ...>") {
                pending.insert(pid.to_string());
            } else {
                backup_reads.push((i, returned(l)));
            }
        } else if l.contains("<... read resumed>") && pending.remove(pid) {
            backup_reads.push((i, returned(l)));
        }
    }
    let reads_of_backup = |range: std::ops::Range<usize>| -> (usize, u64) {
        let within: Vec<u64> = backup_reads
            .iter()
            .filter(|(i, _)| range.contains(i))
            .map(|&(_, n)| n)
            .collect();
        (within.len(), within.iter().sum())
    };
    // Hashing goes on after the target was opened: the two overlap.
    let (during, _) = reads_of_backup(opened..first_write);
    assert!(
        during > 0,
        "the backup was read only before the target was opened"
    );
    // And all of the backup was read before the first write to a target.
    let (_, before_write) = reads_of_backup(0..first_write);
    assert!(
        before_write >= IMG,
        "only {before_write} of {IMG} bytes of the backup were verified before the first write"
    );
}

#[test]
fn formatting_a_large_sparse_partition_reads_none_of_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = plan(
        d,
        "big",
        None,
        20 * GIB,
        concat!(
            "      - { id: sys, start: 1MiB, size: 10GiB, type: ntfs, bootable: true, content: { format: { fs: ntfs, label: SYS } } }\n",
            "      - { id: data, size: 9GiB, type: ext4, content: { format: { fs: ext4, label: data } } }\n",
        ),
    );
    let journal = d.join("j");
    let t = image(d, "t.img", 20 * GIB);
    let (run, read) = traced_apply(&p, &t, &journal, d);
    let run = run.code(0);
    assert_eq!(outcome_of(&run, "sys/format"), "ok");
    assert_eq!(outcome_of(&run, "data/format"), "ok");
    // What the filesystems hold (du: the blocks the image file allocates)
    // is a few dozen MiB of the 19 GiB formatted.
    let allocated: u64 = tool("du", &["-B1", t.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(allocated < GIB, "{allocated} bytes allocated");
    assert!(
        read < 16 * MIB,
        "read {read} bytes back from a target with 19 GiB of new filesystems"
    );
    // The filesystems are what mkfs makes (judged by their own tools).
    let sys_at = MIB;
    let data_at = sys_at + 10 * GIB;
    let blk = tool(
        "blkid",
        &[
            "-p",
            "-o",
            "value",
            "-s",
            "TYPE",
            "-O",
            &sys_at.to_string(),
            t.to_str().unwrap(),
        ],
    );
    assert_eq!(blk.trim(), "ntfs");
    // e2fsprogs' unix I/O manager takes the partition's offset.
    tool(
        "e2fsck",
        &["-fn", &format!("{}?offset={data_at}", t.display())],
    );

    // Applied again: found unchanged, again without reading the holes.
    let (run, read) = traced_apply(&p, &t, &journal, d);
    let run = run.code(0);
    assert_eq!(outcome_of(&run, "data/format"), "unchanged");
    // The format steps' checks and the verify steps read what is
    // allocated, each once: not the 19 GiB.
    assert!(
        read <= 2 * allocated + 16 * MIB,
        "re-apply read {read} bytes, {allocated} allocated"
    );

    // One byte written where the ext4 filesystem has a hole: the next run
    // notices and formats again.
    let f = std::fs::OpenOptions::new().write(true).open(&t).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"X", data_at + 5 * GIB + 12345).unwrap();
    drop(f);
    let (run, _) = traced_apply(&p, &t, &journal, d);
    let run = run.code(0);
    assert_eq!(outcome_of(&run, "data/format"), "ok");
    assert_eq!(outcome_of(&run, "sys/format"), "unchanged");
}
