//! Running the plan's commands: argv (never a shell), a time limit, and the
//! whole process group killed when the limit passes, so a hung `bmc-boot`
//! cannot hold up the escalation ladder.
//!
//! The time limit is the command's, not its pipes': a descendant that
//! keeps stdout/stderr open (`sleep 20 &`, or `setsid sleep 30 &`, which
//! leaves the process group) does not hold the step. When the command ends
//! or is killed, what is left in its process group is killed too, and the
//! output read so far is taken after a short grace, without waiting for
//! the pipes to close.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long output may keep arriving after the command ended.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);
/// How much output is kept for the report (the end of it).
const KEEP: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 0.
    Success,
    Failed {
        code: Option<i32>,
        output: String,
    },
    TimedOut,
    /// The program could not be started.
    NotStarted(String),
}

/// Run `argv` for at most `timeout` (any `Duration`, however large);
/// stdout and stderr are captured (the last few KiB are kept for the
/// report).
pub fn run(argv: &[String], timeout: Duration) -> Outcome {
    let Some((program, args)) = argv.split_first() else {
        return Outcome::NotStarted("empty command".into());
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::NotStarted(format!("{program}: {e}")),
    };
    let Ok(group) = i32::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Outcome::NotStarted(format!("{program}: process id out of range"));
    };
    let tails = [
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    ];
    let (eof_tx, eof_rx) = mpsc::channel::<()>();
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    for (stream, tail) in streams.into_iter().zip(&tails) {
        let (tail, eof) = (Arc::clone(tail), eof_tx.clone());
        // Detached: a descendant may hold the pipe open for long after the
        // command; the thread then ends when it closes, unobserved.
        std::thread::spawn(move || {
            if let Some(s) = stream {
                keep_tail(s, &tail);
            }
            let _ = eof.send(());
        });
    }
    drop(eof_tx);
    let (status_tx, status_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let status: Option<ExitStatus> = match status_rx.recv_timeout(timeout) {
        Ok(Ok(status)) => Some(status),
        Ok(Err(e)) => return Outcome::NotStarted(e.to_string()),
        Err(RecvTimeoutError::Timeout) => {
            kill_group(group);
            // Reaped by the waiting thread; SIGKILL cannot be ignored.
            let _ = status_rx.recv();
            None
        }
        Err(RecvTimeoutError::Disconnected) => {
            return Outcome::NotStarted("lost the command's status".into())
        }
    };
    // What the command left behind in its group goes with it.
    kill_group(group);
    let grace_end = Instant::now() + OUTPUT_GRACE;
    for _ in 0..2 {
        let left = grace_end.saturating_duration_since(Instant::now());
        if eof_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let output: String = tails
        .iter()
        .map(|t| {
            let bytes = t.lock().map(|b| b.clone()).unwrap_or_default();
            let start = bytes.len().saturating_sub(KEEP);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        })
        .collect();
    match status {
        None => Outcome::TimedOut,
        Some(s) if s.success() => Outcome::Success,
        Some(s) => Outcome::Failed {
            code: s.code(),
            output,
        },
    }
}

fn kill_group(group: i32) {
    // SAFETY: plain syscall on the child's own process group.
    unsafe { libc::kill(-group, libc::SIGKILL) };
}

/// Read `r` to its end, keeping the last [`KEEP`] bytes (at most 2×KEEP
/// in memory).
fn keep_tail(mut r: impl Read, tail: &Mutex<Vec<u8>>) {
    let mut buf = [0_u8; 8192];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let Ok(mut t) = tail.lock() else { return };
        t.extend_from_slice(&buf[..n]);
        if t.len() > 2 * KEEP {
            let cut = t.len() - KEEP;
            t.drain(..cut);
        }
    }
}
