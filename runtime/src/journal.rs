//! The journal: an append-only JSON-lines file per (plan, targets), fsynced
//! after every record, so that after a crash `--resume` knows which steps
//! finished. A step is recorded `started` before it touches anything and
//! `done` only after its writes were synced; a step found started but not
//! done is redone from scratch (every step is idempotent).

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Record {
    /// An apply began: which plan, onto which targets.
    Begin {
        plan_hash: String,
        targets: Vec<(String, String)>,
        /// Each target's identity when the run began (disk id → what
        /// `identity::fingerprint` says), so that a resume writes only to
        /// the same disk, not to whatever now answers to the same path.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        identities: Vec<(String, String)>,
    },
    StepStarted {
        step: String,
    },
    /// `fingerprint`: sha256 of what the step left in its range, so a later
    /// run can tell the bytes are still there.
    StepDone {
        step: String,
        ok: bool,
        fingerprint: Option<String>,
        message: Option<String>,
        /// Identity of the target(s) the step wrote to
        /// (`identity::fingerprint`, `+`-joined for a volume's members):
        /// a result recorded for another disk is no reason to expect it
        /// on this one. Absent in journals written before it was recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    StageDone {
        stage: String,
        ok: bool,
    },
    /// The apply ended (a stage succeeded, or all failed).
    End {
        ok: bool,
        stage: Option<String>,
    },
    /// `--resume` after a run that ended with its last stage failed on a
    /// runtime failure: the `end` before it and stage `stage`'s recorded
    /// outcome are withdrawn, and the run goes on (the stage is retried
    /// from its first step not done on this target). Journals written
    /// before this record existed never hold it.
    Retry {
        stage: String,
    },
}

pub struct Journal {
    path: PathBuf,
    /// `None`: a dry-run's journal, kept in memory only.
    file: Option<File>,
    pub records: Vec<Record>,
}

impl Journal {
    /// The journal file for a plan and its targets inside `dir`.
    pub fn path_for(dir: &Path, plan_name: &str, plan_hash: &str) -> PathBuf {
        let safe: String = plan_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let hash: String = plan_hash
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(16)
            .collect();
        dir.join(format!("{safe}-{hash}.jsonl"))
    }

    /// Open (creating) the journal at `path`, reading what is there.
    ///
    /// A torn last record (a crash or a full disk mid-write) is cut off, so
    /// the next record starts on a line of its own; a damaged record with
    /// complete ones after it is an error ([`io::ErrorKind::InvalidData`]):
    /// the journal is not what rplan wrote, and guessing would be unsafe.
    /// The file is never reached through a symlink (`O_NOFOLLOW`) and must
    /// be a regular file, so a planted link cannot redirect the writes.
    pub fn open(path: &Path) -> io::Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| not_a_link(e, path))?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, valid) = parse(&bytes, path)?;
        if valid < bytes.len() as u64 {
            file.set_len(valid)?;
            file.sync_all()?;
        }
        if let Some(dir) = path.parent() {
            // Make the new directory entry durable too.
            File::open(dir)?.sync_all()?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file: Some(file),
            records,
        })
    }

    /// The journal at `path` as it is, read-only (empty if there is none).
    pub fn read(path: &Path) -> io::Result<Journal> {
        let records = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(mut f) => {
                if !f.metadata()?.is_file() {
                    return Err(io::Error::other(format!(
                        "{} is not a regular file",
                        path.display()
                    )));
                }
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                parse(&bytes, path)?.0
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(not_a_link(e, path)),
        };
        Ok(Journal {
            path: path.to_path_buf(),
            file: None,
            records,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A journal that writes nothing (dry-run).
    pub fn in_memory() -> Journal {
        Journal {
            path: PathBuf::from("(dry-run: no journal)"),
            file: None,
            records: Vec::new(),
        }
    }

    pub fn append(&mut self, record: Record) -> io::Result<()> {
        let mut line = serde_json::to_string(&record).map_err(io::Error::other)?;
        line.push('\n');
        if let Some(file) = &mut self.file {
            // The tests' fault seam: a journal whose disk fills mid-record.
            if let Some(part) = crate::fault::journal_write(line.len()) {
                file.write_all(&line.as_bytes()[..part])?;
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            file.write_all(line.as_bytes())?;
            file.sync_data()?;
        }
        self.records.push(record);
        Ok(())
    }

    /// The last run's state: did it begin, did it end? A `retry` after
    /// its `end` takes the end back: the run is going on again.
    pub fn state(&self) -> JournalState {
        let begun = self
            .records
            .iter()
            .rposition(|r| matches!(r, Record::Begin { .. }));
        match begun {
            None => JournalState::Empty,
            Some(b) => match self.records[b..].iter().rev().find_map(|r| match r {
                Record::End { ok, .. } => Some(Some(*ok)),
                Record::Retry { .. } => Some(None),
                _ => None,
            }) {
                Some(Some(ok)) => JournalState::Ended { ok },
                Some(None) | None => JournalState::Interrupted,
            },
        }
    }

    /// The records of the last run: from its `begin` on.
    pub fn current(&self) -> &[Record] {
        let begun = self
            .records
            .iter()
            .rposition(|r| matches!(r, Record::Begin { .. }))
            .unwrap_or(0);
        &self.records[begun..]
    }

    /// How stage `stage` ended in the last run, if it did (and was not
    /// retried since).
    pub fn stage_outcome(&self, stage: &str) -> Option<bool> {
        self.current().iter().rev().find_map(|r| match r {
            Record::StageDone { stage: s, ok } if s == stage => Some(Some(*ok)),
            Record::Retry { stage: s } if s == stage => Some(None),
            _ => None,
        })?
    }

    /// Whether the last run was resumed with stage `stage` retried.
    pub fn retried(&self, stage: &str) -> bool {
        self.current()
            .iter()
            .any(|r| matches!(r, Record::Retry { stage: s } if s == stage))
    }

    /// The step whose failure ended stage `stage` in the last run: the
    /// latest step recorded failed for which `ends_it` holds (a critical
    /// step of the stage), since the stage was last retried.
    pub fn failing_step(&self, stage: &str, ends_it: impl Fn(&str) -> bool) -> Option<&str> {
        self.current().iter().rev().find_map(|r| match r {
            Record::StepDone {
                step, ok: false, ..
            } if ends_it(step) => Some(Some(step.as_str())),
            Record::Retry { stage: s } if s == stage => Some(None),
            _ => None,
        })?
    }

    /// How step `step` ended in the last run, if it did: success, and the
    /// message recorded with it. A step started but not done is `None`.
    pub fn step_outcome(&self, step: &str) -> Option<(bool, Option<&str>)> {
        self.current().iter().rev().find_map(|r| match r {
            Record::StepDone {
                step: s,
                ok,
                message,
                ..
            } if s == step => Some(Some((*ok, message.as_deref()))),
            Record::StepStarted { step: s } if s == step => Some(None),
            _ => None,
        })?
    }

    /// The targets the last run was begun with.
    pub fn targets(&self) -> Option<&[(String, String)]> {
        self.records.iter().rev().find_map(|r| match r {
            Record::Begin { targets, .. } => Some(targets.as_slice()),
            _ => None,
        })
    }

    /// The targets' identities recorded by the latest `begin`.
    pub fn identities(&self) -> &[(String, String)] {
        self.records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Begin { identities, .. } => Some(identities.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// `Some(fingerprint)` if the latest record of `step` says it finished
    /// successfully; `None` if it never ran, failed, or was torn by a crash.
    pub fn done(&self, step: &str) -> Option<Option<&str>> {
        self.records.iter().rev().find_map(|r| match r {
            Record::StepDone {
                step: s,
                ok,
                fingerprint,
                ..
            } if s == step => Some(ok.then_some(fingerprint.as_deref())),
            Record::StepStarted { step: s } if s == step => Some(None),
            _ => None,
        })?
    }

    /// Like [`Journal::done`], for the step now running: its own fresh
    /// `started` record is passed over. `target`: the identity of the
    /// target the step now writes to; a success recorded on another target
    /// (or with none recorded) counts as never done here.
    pub fn done_before(&self, step: &str, target: Option<&str>) -> Option<Option<&str>> {
        let mut passed_current = false;
        self.records.iter().rev().find_map(|r| match r {
            Record::StepDone {
                step: s,
                ok,
                fingerprint,
                target: on,
                ..
            } if s == step => Some(
                (*ok && on.is_some() && on.as_deref() == target).then_some(fingerprint.as_deref()),
            ),
            Record::StepStarted { step: s } if s == step && !passed_current => {
                passed_current = true;
                None
            }
            Record::StepStarted { step: s } if s == step => Some(None),
            _ => None,
        })?
    }

    /// Whether `step`, now running again, was started before and never
    /// finished (a crash tore it).
    pub fn torn(&self, step: &str) -> bool {
        let mut about = self.records.iter().rev().filter(|r| match r {
            Record::StepStarted { step: s } | Record::StepDone { step: s, .. } => s == step,
            _ => false,
        });
        about.next();
        matches!(about.next(), Some(Record::StepStarted { .. }))
    }
}

/// The records of a journal file and the length of its intact part: every
/// complete line but a damaged last one (torn by a crash).
fn parse(bytes: &[u8], path: &Path) -> io::Result<(Vec<Record>, u64)> {
    let mut records = Vec::new();
    let mut valid = 0_u64;
    let mut damaged: Option<usize> = None;
    let mut at = 0_usize;
    for (n, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        at += line.len();
        let complete = line.ends_with(b"\n");
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text.iter().all(u8::is_ascii_whitespace) && complete {
            valid = at as u64;
            continue;
        }
        if let Some(bad) = damaged {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "journal {}: record {} is damaged and later records follow it",
                    path.display(),
                    bad + 1
                ),
            ));
        }
        match serde_json::from_slice::<Record>(text) {
            Ok(r) if complete => {
                records.push(r);
                valid = at as u64;
            }
            // A record without its newline was torn mid-write.
            Ok(_) | Err(_) => damaged = Some(n),
        }
    }
    Ok((records, valid))
}

fn not_a_link(e: io::Error, path: &Path) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::other(format!(
            "{} is a symbolic link; the journal is never written through one",
            path.display()
        ))
    } else {
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalState {
    Empty,
    Interrupted,
    Ended { ok: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal(lines: &str) -> Journal {
        let (records, _) = parse(lines.as_bytes(), Path::new("j")).unwrap();
        Journal {
            path: PathBuf::from("j"),
            file: None,
            records,
        }
    }

    const FAILED: &str = concat!(
        r#"{"event":"begin","plan_hash":"h","targets":[["d0","/t"]]}"#,
        "\n",
        r#"{"event":"stage-done","stage":"sm","ok":false}"#,
        "\n",
        r#"{"event":"step-started","step":"asr/w"}"#,
        "\n",
        r#"{"event":"step-done","step":"asr/w","ok":false,"fingerprint":null,"message":"EIO"}"#,
        "\n",
        r#"{"event":"stage-done","stage":"asr","ok":false}"#,
        "\n",
        r#"{"event":"end","ok":false,"stage":null}"#,
        "\n",
    );

    #[test]
    fn a_journal_without_retry_reads_as_before() {
        let j = journal(FAILED);
        assert_eq!(j.state(), JournalState::Ended { ok: false });
        assert_eq!(j.stage_outcome("asr"), Some(false));
        assert!(!j.retried("asr"));
        assert_eq!(j.failing_step("asr", |s| s == "asr/w"), Some("asr/w"));
    }

    #[test]
    fn a_retry_reopens_the_run_and_its_stage_only() {
        let j = journal(&format!(
            "{FAILED}{}\n",
            r#"{"event":"retry","stage":"asr"}"#
        ));
        assert_eq!(j.state(), JournalState::Interrupted);
        assert_eq!(j.stage_outcome("asr"), None);
        assert_eq!(j.stage_outcome("sm"), Some(false));
        assert!(j.retried("asr"));
        assert_eq!(j.failing_step("asr", |s| s == "asr/w"), None);
        // The failed step is redone, not taken as done.
        assert_eq!(j.done("asr/w"), None);
        // The retried run ends again: ended, and its new outcome counts.
        let again = format!(
            "{FAILED}{}\n{}\n{}\n",
            r#"{"event":"retry","stage":"asr"}"#,
            r#"{"event":"stage-done","stage":"asr","ok":true}"#,
            r#"{"event":"end","ok":true,"stage":"asr"}"#
        );
        let j = journal(&again);
        assert_eq!(j.state(), JournalState::Ended { ok: true });
        assert_eq!(j.stage_outcome("asr"), Some(true));
    }
}
