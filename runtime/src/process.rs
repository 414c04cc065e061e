//! Running the plan's commands: argv (never a shell), a time limit, and the
//! whole process group killed when the limit passes, so a hung `bmc-boot`
//! cannot hold up the escalation ladder.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Run `argv` for at most `timeout`; stdout and stderr are captured (the
/// last few KiB are kept for the report).
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
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let readers = [
        std::thread::spawn(move || tail(out.as_mut())),
        std::thread::spawn(move || tail(err.as_mut())),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: plain syscall on the child's own process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Outcome::NotStarted(e.to_string()),
        }
    };
    let output: String = readers
        .into_iter()
        .filter_map(|r| r.join().ok())
        .collect::<Vec<_>>()
        .join("");
    match status {
        None => Outcome::TimedOut,
        Some(s) if s.success() => Outcome::Success,
        Some(s) => Outcome::Failed {
            code: s.code(),
            output,
        },
    }
}

fn tail(r: Option<&mut impl Read>) -> String {
    let Some(r) = r else { return String::new() };
    let mut all = Vec::new();
    let mut buf = [0_u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
        if all.len() > 64 * 1024 {
            all.drain(..all.len() - 4096);
        }
    }
    let start = all.len().saturating_sub(4096);
    String::from_utf8_lossy(&all[start..]).into_owned()
}
