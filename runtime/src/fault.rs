//! Fault injection for the tests. Only in debug builds (the test suite) or
//! with the `fault-injection` feature; in a release build every hook is
//! empty and no variable is read.
//!
//! - `RPLAN_CRASH_AT=STEP:N` kills the process (SIGKILL, as a power cut or
//!   the OOM killer would) just before the N-th device write or zeroing of
//!   step STEP, so a test can tear a step at an exact write instead of
//!   racing a timer.
//! - `RPLAN_WRITE_LOG=FILE` appends `STEP N` to FILE for every such write
//!   (where a test can choose its crash points from).
//! - `RPLAN_HIDE_TOOLS=mkfs.ntfs,…` makes installed tools look missing.
//! - `RPLAN_FAULT=KIND@WHERE` injects one fault (tests/faults.rs):
//!   - `eio@STEP:N`, `enospc@STEP:N`: the N-th device write or zeroing of
//!     STEP fails with EIO / ENOSPC, nothing of it written;
//!   - `short@STEP:N`: the N-th write of STEP writes its first half, then
//!     fails (EIO: a torn write);
//!   - `eio-at@K`: every write or zeroing covering target byte K fails;
//!   - `stop@STEP:N`: the process stops itself (SIGSTOP) before the N-th
//!     write of STEP, so a test can change the world (shrink or remove the
//!     target, kill -9) at an exact point and then SIGCONT or SIGKILL it;
//!   - `journal-enospc@N`: the N-th journal record written by this process
//!     lands half, then ENOSPC, and so do (with nothing) all later ones;
//!   - `artifact-eio@K`: reading an artifact fails once K bytes were read.
//!
//! The hooks sit in the I/O seams only: `DiskFile` writes (target.rs),
//! `Journal::append`, `restore::open_artifact`.

#[cfg(any(debug_assertions, feature = "fault-injection"))]
mod active {
    use std::cell::RefCell;
    use std::io::{self, Read};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};

    /// The step a thread writes for and that step's write counter: per
    /// thread, since steps on different disks run at the same time; a
    /// step's helper threads (the restore's writer) adopt its context.
    #[derive(Clone, Default)]
    pub struct Context(Option<(Arc<str>, Arc<AtomicU64>)>);

    thread_local! {
        static CONTEXT: RefCell<Context> = RefCell::new(Context::default());
    }
    static JOURNAL_WRITES: AtomicU64 = AtomicU64::new(0);

    /// This thread's step context, for a helper thread to [`adopt`].
    pub fn context() -> Context {
        CONTEXT.with(|c| c.borrow().clone())
    }

    /// Write for the step `ctx` belongs to (on a step's helper thread).
    pub fn adopt(ctx: Context) {
        CONTEXT.with(|c| *c.borrow_mut() = ctx);
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Fault {
        /// (errno, step, n): the n-th write of the step fails.
        Fail(i32, String, u64),
        Short(String, u64),
        FailAt(u64),
        Stop(String, u64),
        JournalFull(u64),
        ArtifactEio(u64),
    }

    fn fault() -> Option<&'static Fault> {
        static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
        FAULT
            .get_or_init(|| parse(&std::env::var("RPLAN_FAULT").ok()?))
            .as_ref()
    }

    fn parse(spec: &str) -> Option<Fault> {
        let (kind, at) = spec.split_once('@')?;
        let step_n = || -> Option<(String, u64)> {
            let (step, n) = at.rsplit_once(':')?;
            Some((step.to_string(), n.parse().ok()?))
        };
        Some(match kind {
            "eio" => step_n().map(|(s, n)| Fault::Fail(libc::EIO, s, n))?,
            "enospc" => step_n().map(|(s, n)| Fault::Fail(libc::ENOSPC, s, n))?,
            "short" => step_n().map(|(s, n)| Fault::Short(s, n))?,
            "stop" => step_n().map(|(s, n)| Fault::Stop(s, n))?,
            "eio-at" => Fault::FailAt(at.parse().ok()?),
            "journal-enospc" => Fault::JournalFull(at.parse().ok()?),
            "artifact-eio" => Fault::ArtifactEio(at.parse().ok()?),
            _ => return None,
        })
    }

    pub fn step_started(id: &str) {
        adopt(Context(Some((Arc::from(id), Arc::new(AtomicU64::new(0))))));
    }

    fn current() -> Option<(Arc<str>, Arc<AtomicU64>)> {
        context().0
    }

    pub fn tool_hidden(name: &str) -> bool {
        std::env::var("RPLAN_HIDE_TOOLS").is_ok_and(|v| v.split(',').any(|t| t == name))
    }

    fn in_step(current: Option<&str>, step: &str) -> bool {
        current == Some(step)
    }

    /// `RPLAN_WRITE_LOG=FILE`: one line `STEP N` per device write or
    /// zeroing, so a test can choose crash points among the real writes.
    fn log_write(step: &str, n: u64) {
        use std::io::Write;
        static LOG: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
        let log = LOG.get_or_init(|| {
            let path = std::env::var_os("RPLAN_WRITE_LOG")?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()?;
            Some(Mutex::new(file))
        });
        if let Some(log) = log {
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "{step} {n}");
            }
        }
    }

    pub fn before_write(offset: u64, len: u64) -> io::Result<Option<usize>> {
        let cur = current();
        let n = cur
            .as_ref()
            .map_or(1, |(_, w)| w.fetch_add(1, Ordering::SeqCst) + 1);
        let cur = cur.as_ref().map(|(s, _)| &**s);
        log_write(cur.unwrap_or(""), n);
        if let Some(spec) = std::env::var_os("RPLAN_CRASH_AT") {
            let spec = spec.to_string_lossy();
            if let Some((step, at)) = spec.rsplit_once(':') {
                if at.parse::<u64>() == Ok(n) && in_step(cur, step) {
                    // SAFETY: plain syscalls on our own process.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
            }
        }
        match fault() {
            Some(Fault::Fail(errno, step, at)) if *at == n && in_step(cur, step) => {
                Err(io::Error::from_raw_os_error(*errno))
            }
            Some(Fault::Short(step, at)) if *at == n && in_step(cur, step) => {
                Ok(Some(usize::try_from(len / 2).unwrap_or(usize::MAX)))
            }
            Some(Fault::FailAt(k)) if offset <= *k && *k - offset < len => {
                Err(io::Error::from_raw_os_error(libc::EIO))
            }
            Some(Fault::Stop(step, at)) if *at == n && in_step(cur, step) => {
                // SAFETY: plain syscalls on our own process.
                unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    pub fn journal_write(len: usize) -> Option<usize> {
        let n = JOURNAL_WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        // A full disk stays full: the N-th record lands half, later ones
        // not at all.
        match fault() {
            Some(Fault::JournalFull(at)) if *at == n => Some(len / 2),
            Some(Fault::JournalFull(at)) if *at < n => Some(0),
            _ => None,
        }
    }

    pub fn artifact_reader(inner: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        match fault() {
            Some(Fault::ArtifactEio(k)) => Box::new(FailingReader { inner, left: *k }),
            _ => inner,
        }
    }

    /// Reads through until `left` bytes were read, then fails.
    struct FailingReader {
        inner: Box<dyn Read + Send>,
        left: u64,
    }

    impl Read for FailingReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let max = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let n = self.inner.read(&mut buf[..max])?;
            self.left -= n as u64;
            Ok(n)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn specs_parse() {
            assert_eq!(
                parse("eio@asr/disk0/table:3"),
                Some(Fault::Fail(libc::EIO, "asr/disk0/table".into(), 3))
            );
            assert_eq!(parse("eio-at@512"), Some(Fault::FailAt(512)));
            assert_eq!(parse("journal-enospc@2"), Some(Fault::JournalFull(2)));
            assert_eq!(parse("eio@nocount"), None);
            assert_eq!(parse("melt@x:1"), None);
        }
    }
}

#[cfg(any(debug_assertions, feature = "fault-injection"))]
pub use active::{
    adopt, artifact_reader, before_write, context, journal_write, step_started, tool_hidden,
    Context,
};

#[cfg(not(any(debug_assertions, feature = "fault-injection")))]
mod inactive {
    use std::io::{self, Read};

    pub fn step_started(_id: &str) {}

    #[derive(Clone, Default)]
    pub struct Context;

    pub fn context() -> Context {
        Context
    }

    pub fn adopt(_ctx: Context) {}

    pub fn before_write(_offset: u64, _len: u64) -> io::Result<Option<usize>> {
        Ok(None)
    }

    pub fn journal_write(_len: usize) -> Option<usize> {
        None
    }

    pub fn artifact_reader(inner: Box<dyn Read + Send>) -> Box<dyn Read + Send> {
        inner
    }

    pub fn tool_hidden(_name: &str) -> bool {
        false
    }
}

#[cfg(not(any(debug_assertions, feature = "fault-injection")))]
pub use inactive::*;

/// The error of a write the fault seam tore (its first part landed).
pub fn torn_write_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::WriteZero,
        "short write: the device took only part of the data (injected)",
    )
}
