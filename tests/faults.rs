//! Faults under apply (issue 15): an I/O error at a step's N-th write or at
//! a byte offset, a torn (short) write, a full disk under the target and
//! under the journal (real ENOSPC, on a small tmpfs), a journal record torn
//! by a full disk, an artifact that cannot be read, a probe that hangs past
//! its time limit, a target that shrinks or disappears mid-run.
//!
//! Each runs the real binary (debug build: `RPLAN_FAULT`, runtime/src/fault.rs)
//! on an image pre-filled with a pattern, and checks the exit code and
//! diagnostic, that the journal is consistent JSON lines, that the bytes
//! outside the plan's declared ranges still hold the pattern (`cmp`), and
//! that finishing the job gives the bytes an uninterrupted apply gives
//! (`cmp`), judged by `sfdisk` and `mtype` too: `--resume`, both where the
//! run was interrupted and where it ended on a write step's failure (the
//! ASR stage is retried), and a plain apply from the same faulty state.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DISK: u64 = 64 * MIB;
/// Outside every declared range of [`plan`]: LBA 2 to the first partition
/// (LBA 0 is the MBR, LBA 1 may be cleared of a stale GPT header), the gap
/// between the partitions, and the tail after the last one.
const OUTSIDE: [(u64, u64); 3] = [
    (1024, MIB - 1024),
    (17 * MIB, 3 * MIB),
    (40 * MIB, 24 * MIB),
];
const PATTERN_SEED: u64 = 15;

/// One MBR disk: a 12 MiB raw image restored into `sys`, a FAT16 `boot`
/// made and given a file; only an ASR stage (plus `extra_stage` before it).
fn plan(dir: &Path, extra_stage: &str) -> PathBuf {
    xp_plan(
        dir,
        "faults.yaml",
        "x86",
        &noise(12 * MIB as usize, 7),
        &b"hello fault\n".repeat(1000),
        &format!("disks:\n  - id: d0\n    critical: true\n    table: mbr\n    signature: \"0x0fa17000\"\n    size: 64MiB\n    partitions:\n\
\x20     - {{ id: sys, start: 1MiB, size: 16MiB, type: ntfs, bootable: true, content: {{ image: sys }} }}\n\
\x20     - {{ id: boot, start: 20MiB, size: 20MiB, type: fat16, content: {{ format: {{ fs: fat16, label: BOOT }}, files: [ {{ artifact: note, to: /note.txt }} ] }} }}\n\
stages:\n{extra_stage}  - {{ id: asr, kind: asr }}\n"),
    )
}

/// A disk image full of the pattern (so anything written outside the
/// plan's ranges shows).
fn patterned(path: &Path) -> PathBuf {
    std::fs::write(path, noise(DISK as usize, PATTERN_SEED)).unwrap();
    path.to_path_buf()
}

/// The pattern outside the declared ranges (and in the table sector),
/// holes inside the partitions.
fn sparse_patterned(path: &Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::create(path).unwrap();
    file.set_len(DISK).unwrap();
    let pattern = noise(DISK as usize, PATTERN_SEED);
    for (at, len) in [(0, MIB)].into_iter().chain(OUTSIDE) {
        file.write_all_at(&pattern[at as usize..(at + len) as usize], at)
            .unwrap();
    }
}

fn apply(plan: &Path, img: &Path, journal: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut r = Rplan::new()
        .args(["apply", plan.to_str().unwrap(), "--yes", "--force"])
        .args(["--journal", journal.to_str().unwrap()])
        .args(["--target", &format!("d0={}", img.display())])
        .args(extra);
    for (k, v) in env {
        r = r.env(k, v);
    }
    r.run()
}

struct Case {
    dir: tempfile::TempDir,
    plan: PathBuf,
    reference: PathBuf,
    img: PathBuf,
    journal: PathBuf,
}

/// A plan, the image an uninterrupted apply makes, and a fresh patterned
/// target for the faulty run.
fn case(extra_stage: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), extra_stage);
    let reference = patterned(&dir.path().join("ref.img"));
    apply(&plan, &reference, &dir.path().join("jref"), &[], &[]).code(0);
    let img = patterned(&dir.path().join("t.img"));
    let journal = dir.path().join("j");
    Case {
        dir,
        plan,
        reference,
        img,
        journal,
    }
}

impl Case {
    fn run(&self, extra: &[&str], env: &[(&str, &str)]) -> Run {
        apply(&self.plan, &self.img, &self.journal, extra, env)
    }

    /// The journal's records; every line must be a JSON object, except a
    /// last one torn by the fault.
    fn journal_records(&self, torn_tail_allowed: bool) -> Vec<serde_json::Value> {
        let file = std::fs::read_dir(&self.journal)
            .unwrap()
            .next()
            .expect("a journal file")
            .unwrap()
            .path();
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) if line.ends_with('\n') => out.push(v),
                _ => assert!(
                    torn_tail_allowed && i + 1 == lines.len(),
                    "journal line {i} is damaged: {line:?}\n{text}"
                ),
            }
        }
        out
    }

    /// Every `step-done` closes the step started last; no stage or run ends
    /// inside a step.
    fn assert_journal_consistent(&self, torn_tail_allowed: bool) -> Vec<serde_json::Value> {
        let records = self.journal_records(torn_tail_allowed);
        assert_eq!(records[0]["event"], "begin", "{records:?}");
        let mut open: Option<String> = None;
        for r in &records {
            match r["event"].as_str().unwrap() {
                // A step the interruption left open is started again by
                // the resumed run (or another one is).
                "step-started" => open = Some(r["step"].as_str().unwrap().to_string()),
                "step-done" => {
                    assert_eq!(open.as_deref(), r["step"].as_str(), "{records:?}");
                    open = None;
                }
                _ => assert!(open.is_none(), "record inside an open step: {records:?}"),
            }
        }
        records
    }

    fn assert_outside_untouched(&self) {
        let pattern = patterned(&self.dir.path().join("pattern.img"));
        for (at, len) in OUTSIDE {
            let out = Command::new("cmp")
                .arg(format!("--ignore-initial={at}"))
                .arg(format!("--bytes={len}"))
                .arg(&pattern)
                .arg(&self.img)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "bytes outside the declared ranges changed at {at}+{len}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    /// The target holds exactly what the uninterrupted apply made, and
    /// outside tools agree it is a good disk.
    fn assert_finished(&self) {
        let out = Command::new("cmp")
            .arg(&self.reference)
            .arg(&self.img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "differs from an uninterrupted apply: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let t = tool("sfdisk", &["-d", self.img.to_str().unwrap()]);
        assert!(t.contains("label-id: 0x0fa17000"), "{t}");
        let fat = format!("{}@@{}", self.img.display(), 20 * MIB);
        let note = tool("mtype", &["-i", &fat, "::/note.txt"]);
        assert_eq!(note, "hello fault\n".repeat(1000));
        self.assert_outside_untouched();
    }

    /// After a fault that ended the run (its ASR stage failed on a write
    /// step): `--resume` retries the stage and finishes, the journal says
    /// so (`retry`, then a recovered `end`); and, from the same faulty
    /// state, a plain apply finishes too.
    fn assert_resume_and_reapply_finish(&self, fault: &[(&str, &str)]) {
        let resumed = self.run(&["--resume"], &[]);
        assert_eq!(resumed.code, 0, "{}", resumed.stderr);
        assert!(resumed.stderr.contains("RP0760"), "{}", resumed.stderr);
        let records = self.assert_journal_consistent(false);
        let begins = records.iter().filter(|r| r["event"] == "begin").count();
        assert_eq!(begins, 1, "a resume begins no new run: {records:?}");
        let retry = records
            .iter()
            .position(|r| r["event"] == "retry" && r["stage"] == "asr")
            .unwrap_or_else(|| panic!("no retry record: {records:?}"));
        assert_eq!(records[retry - 1]["event"], "end", "{records:?}");
        assert_eq!(records[retry - 1]["ok"], false, "{records:?}");
        let last = records.last().unwrap();
        assert!(last["event"] == "end" && last["ok"] == true, "{records:?}");
        self.assert_finished();
        // Once recovered, there is nothing to resume.
        let again = self.run(&["--resume"], &[]);
        assert_eq!(again.code, 4, "{}", again.stderr);
        assert!(
            again.stderr.contains("RP0710") && again.stderr.contains("recovered"),
            "{}",
            again.stderr
        );
        // The same fault from the start, then a plain apply.
        let _ = std::fs::remove_dir_all(&self.journal);
        patterned(&self.img);
        self.run(&[], fault).code(3);
        self.run(&[], &[]).code(0);
        self.assert_finished();
    }
}

/// A step that failed on a target error: exit 3, the diagnostic names the
/// step and the OS error, the journal records the step failed.
fn assert_step_failed(c: &Case, run: &Run, step: &str, error: &str) {
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("error[RP0801]: step `{step}` failed"))
            && run.stderr.contains(error),
        "{}",
        run.stderr
    );
    let records = c.assert_journal_consistent(false);
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "step-done" && r["step"] == step && r["ok"] == false),
        "{records:?}"
    );
    assert_eq!(records.last().unwrap()["event"], "end");
    c.assert_outside_untouched();
}

#[test]
fn an_io_error_at_a_steps_nth_write_fails_the_step_and_resume_finishes() {
    let c = case("");
    let fault = [("RPLAN_FAULT", "eio@asr/d0/sys/restore:2")];
    let run = c.run(&[], &fault);
    assert_step_failed(&c, &run, "asr/d0/sys/restore", "Input/output error");
    c.assert_resume_and_reapply_finish(&fault);
}

#[test]
fn an_io_error_at_a_byte_offset_fails_the_step_that_writes_it() {
    let c = case("");
    // 5 MiB into `sys`: past the head the clear step zeroes, inside the
    // restored image.
    let at = (6 * MIB).to_string();
    let spec = format!("eio-at@{at}");
    let fault = [("RPLAN_FAULT", spec.as_str())];
    let run = c.run(&[], &fault);
    assert_step_failed(&c, &run, "asr/d0/sys/restore", "Input/output error");
    c.assert_resume_and_reapply_finish(&fault);
}

#[test]
fn a_short_write_is_an_error_and_its_half_is_redone() {
    let c = case("");
    // Write 1 is the restore's zeroing of its range (a failure there only
    // means zero runs are written too); write 2 is the first data.
    let fault = [("RPLAN_FAULT", "short@asr/d0/sys/restore:2")];
    let run = c.run(&[], &fault);
    assert_step_failed(&c, &run, "asr/d0/sys/restore", "short write");
    c.assert_resume_and_reapply_finish(&fault);
}

#[test]
fn an_injected_enospc_on_the_target_fails_the_step() {
    let c = case("");
    let fault = [("RPLAN_FAULT", "enospc@asr/d0/boot/files:1")];
    let run = c.run(&[], &fault);
    assert_step_failed(&c, &run, "asr/d0/boot/files", "No space left on device");
    c.assert_resume_and_reapply_finish(&fault);
}

#[test]
fn an_artifact_that_cannot_be_read_fails_its_restore() {
    let c = case("");
    let k = (5 * MIB).to_string();
    let spec = format!("artifact-eio@{k}");
    let fault = [("RPLAN_FAULT", spec.as_str())];
    let run = c.run(&[], &fault);
    assert_step_failed(&c, &run, "asr/d0/sys/restore", "Input/output error");
    c.assert_resume_and_reapply_finish(&fault);
}

/// A tmpfs of `size` at `dir/name` (unmounted when dropped).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, name: &str, size: &str) -> Tmpfs {
        let at = dir.join(name);
        std::fs::create_dir_all(&at).unwrap();
        tool(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                at.to_str().unwrap(),
            ],
        );
        Tmpfs(at)
    }

    fn resize(&self, size: &str) {
        tool(
            "mount",
            &[
                "-o",
                &format!("remount,size={size}"),
                self.0.to_str().unwrap(),
            ],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_under_a_sparse_target_fails_the_step_and_resume_finishes() {
    let mut c = case("");
    // The reference starts from the same sparse image (its partitions
    // read zeros, not the pattern).
    c.reference = c.dir.path().join("sparse-ref.img");
    sparse_patterned(&c.reference);
    apply(&c.plan, &c.reference, &c.dir.path().join("jref2"), &[], &[]).code(0);
    // A sparse target on a 36 MiB tmpfs: the pattern outside the ranges is
    // 27 MiB of it, so the partitions' writes run out of space for real.
    let fs = Tmpfs::mount(c.dir.path(), "small", "36M");
    c.img = fs.0.join("t.img");
    sparse_patterned(&c.img);
    let run = c.run(&[], &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("error[RP0801]") && run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    c.assert_journal_consistent(false);
    c.assert_outside_untouched();
    fs.resize("128M");
    let resumed = c.run(&["--resume"], &[]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    c.assert_journal_consistent(false);
    c.assert_finished();
    // The same full disk from the start, then a plain apply.
    let _ = std::fs::remove_dir_all(&c.journal);
    std::fs::remove_file(&c.img).unwrap();
    fs.resize("36M");
    sparse_patterned(&c.img);
    c.run(&[], &[]).code(3);
    fs.resize("128M");
    c.run(&[], &[]).code(0);
    c.assert_finished();
}

#[test]
fn a_full_journal_disk_refuses_before_any_write() {
    let mut c = case("");
    let fs = Tmpfs::mount(c.dir.path(), "full", "64k");
    // Fill it to the last byte.
    let _ = std::fs::write(fs.0.join("filler"), vec![1u8; 1 << 20]);
    c.journal = fs.0.join("j");
    std::fs::create_dir_all(&c.journal).ok();
    let before = sha(&c.img);
    let run = c.run(&[], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("journal") && run.stderr.contains("No space left on device"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sha(&c.img),
        before,
        "the target was written without a journal"
    );
}

#[test]
fn a_journal_record_torn_by_a_full_disk_stops_the_run_and_resume_finishes() {
    let c = case("");
    // Record 14 is the restore's step-started: the restore never runs; 15,
    // its step-done, would tear after the restore wrote everything.
    for n in ["14", "15"] {
        let _ = std::fs::remove_dir_all(&c.journal);
        patterned(&c.img);
        let run = c.run(&[], &[("RPLAN_FAULT", &format!("journal-enospc@{n}"))]);
        assert_eq!(run.code, 2, "record {n}: {}", run.stderr);
        assert!(
            run.stderr.contains("cannot write journal") && run.stderr.contains("No space left"),
            "{}",
            run.stderr
        );
        let records = c.journal_records(true);
        assert_ne!(records.last().unwrap()["event"], "end");
        c.assert_outside_untouched();
        c.run(&["--resume"], &[]).code(0);
        c.assert_journal_consistent(false);
        c.assert_finished();
    }
}

#[test]
fn a_probe_that_hangs_past_its_time_limit_is_killed_and_fails_its_stage() {
    let c = case(
        "  - { id: sm, kind: safe-mode, success: { run: [sh, -c, 'sleep 60'], timeout: 1s } }\n",
    );
    let started = Instant::now();
    let run = c.run(&["--format", "json"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the hung probe held the run for {:?}",
        started.elapsed()
    );
    assert!(run.stdout.contains("RP0804"), "{}", run.stdout);
    let records = c.assert_journal_consistent(false);
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "stage-done" && r["stage"] == "sm" && r["ok"] == false),
        "{records:?}"
    );
    c.assert_finished();
}

/// Run apply with `RPLAN_FAULT=stop@STEP:N`, do `meanwhile` to the world
/// while it is stopped, then let it go on.
fn stopped_at(c: &Case, at: &str, meanwhile: impl FnOnce()) -> Run {
    let mut child = Command::new(bin())
        .args(["apply", c.plan.to_str().unwrap(), "--yes", "--force"])
        .args(["--journal", c.journal.to_str().unwrap()])
        .args(["--target", &format!("d0={}", c.img.display())])
        .env("RPLAN_FAULT", format!("stop@{at}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stat = format!("/proc/{}/stat", child.id());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = std::fs::read_to_string(&stat).unwrap_or_default();
        // The state follows the parenthesised command name.
        if s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('T'))
        {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "apply ended before the stop point"
        );
        assert!(
            Instant::now() < deadline,
            "apply never reached the stop point"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    meanwhile();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_target_that_shrinks_mid_run_fails_the_step_and_is_then_refused_as_too_small() {
    let c = case("");
    let run = stopped_at(&c, "asr/d0/table:1", || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&c.img)
            .unwrap()
            .set_len(30 * MIB)
            .unwrap();
    });
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("error[RP0801]")
            && run
                .stderr
                .contains("size changed while rplan was writing it"),
        "{}",
        run.stderr
    );
    c.assert_journal_consistent(false);
    let len = std::fs::metadata(&c.img).unwrap().len();
    assert_eq!(len, 30 * MIB, "rplan grew the shrunk target back");
    let again = c.run(&[], &[]);
    assert_eq!(again.code, 4, "{}", again.stderr);
    assert!(again.stderr.contains("RP0702"), "{}", again.stderr);
}

#[test]
fn a_target_that_disappears_mid_run_fails_the_step_and_resume_names_it_missing() {
    let c = case("");
    let run = stopped_at(&c, "asr/d0/boot/format:1", || {
        std::fs::remove_file(&c.img).unwrap();
    });
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("error[RP0801]") && run.stderr.contains("removed"),
        "{}",
        run.stderr
    );
    c.assert_journal_consistent(false);
    let again = c.run(&[], &[]);
    assert_eq!(again.code, 4, "{}", again.stderr);
    assert!(again.stderr.contains("RP0701"), "{}", again.stderr);
}

#[test]
fn resume_after_an_asr_its_probe_failed_has_nothing_to_retry() {
    let c = case("");
    let text = std::fs::read_to_string(&c.plan).unwrap();
    std::fs::write(
        &c.plan,
        text.replace(
            "{ id: asr, kind: asr }",
            "{ id: asr, kind: asr, success: { run: [sh, -c, 'exit 1'] } }",
        ),
    )
    .unwrap();
    c.run(&[], &[]).code(3);
    let records = c.assert_journal_consistent(false);
    let img = sha(&c.img);
    // The probe's answer stands: the resume asks nothing again and writes
    // nothing.
    let resumed = c.run(&["--resume"], &[]);
    assert_eq!(resumed.code, 4, "{}", resumed.stderr);
    assert!(
        resumed.stderr.contains("RP0761")
            && resumed.stderr.contains("probe's answer")
            && resumed.stderr.contains("run without --resume"),
        "{}",
        resumed.stderr
    );
    assert_eq!(sha(&c.img), img);
    assert_eq!(c.assert_journal_consistent(false), records);
}
