//! Fault injection for the tests: `RPLAN_CRASH_AT=STEP:N` kills the
//! process (SIGKILL, as a power cut or the OOM killer would) just before
//! the N-th device write or zeroing of step STEP, so a test can tear a step at an
//! exact write instead of racing a timer; `RPLAN_HIDE_TOOLS=mkfs.ntfs,…`
//! makes installed tools look missing.
//!
//! Only in debug builds (the test suite) or with the `fault-injection`
//! feature; in a release build both hooks are empty and the variable is
//! never read.

#[cfg(any(debug_assertions, feature = "fault-injection"))]
mod active {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    static STEP: Mutex<String> = Mutex::new(String::new());
    static WRITES: AtomicU64 = AtomicU64::new(0);

    pub fn step_started(id: &str) {
        if let Ok(mut s) = STEP.lock() {
            id.clone_into(&mut s);
        }
        WRITES.store(0, Ordering::SeqCst);
    }

    pub fn tool_hidden(name: &str) -> bool {
        std::env::var("RPLAN_HIDE_TOOLS").is_ok_and(|v| v.split(',').any(|t| t == name))
    }

    pub fn before_write() {
        let Some(spec) = std::env::var_os("RPLAN_CRASH_AT") else {
            return;
        };
        let spec = spec.to_string_lossy();
        let Some((step, n)) = spec.rsplit_once(':') else {
            return;
        };
        let Ok(n) = n.parse::<u64>() else { return };
        let current = STEP.lock().map(|s| s.as_str() == step).unwrap_or(false);
        if current && WRITES.fetch_add(1, Ordering::SeqCst) + 1 == n {
            // SAFETY: plain syscalls on our own process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    }
}

#[cfg(any(debug_assertions, feature = "fault-injection"))]
pub use active::{before_write, step_started, tool_hidden};

#[cfg(not(any(debug_assertions, feature = "fault-injection")))]
pub fn step_started(_id: &str) {}

#[cfg(not(any(debug_assertions, feature = "fault-injection")))]
pub fn before_write() {}

#[cfg(not(any(debug_assertions, feature = "fault-injection")))]
pub fn tool_hidden(_name: &str) -> bool {
    false
}
