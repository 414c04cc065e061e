//! What the executor tells the world while it works: step and stage events,
//! bytes done. People get indicatif progress bars on a terminal (plain lines
//! otherwise); tools get one JSON object per line (`--format json`).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::Write;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event<'a> {
    StageStarted {
        stage: &'a str,
        kind: &'a str,
    },
    StepStarted {
        step: &'a str,
        description: &'a str,
        total_bytes: Option<u64>,
    },
    Bytes {
        step: &'a str,
        done: u64,
        total: u64,
    },
    StepFinished {
        step: &'a str,
        outcome: &'a str,
        message: Option<&'a str>,
    },
    StageFinished {
        stage: &'a str,
        ok: bool,
    },
    Finished {
        ok: bool,
        stage: Option<&'a str>,
        /// Non-critical steps of the recovering stage that failed.
        failed_steps: &'a [String],
    },
}

pub trait Observer {
    fn event(&mut self, e: &Event);
}

/// For people: a progress bar per running long step on a terminal (steps
/// on different disks run at the same time: one bar each).
pub struct Human {
    bars: MultiProgress,
    running: std::collections::HashMap<String, ProgressBar>,
    terminal: bool,
}

impl Human {
    pub fn new(terminal: bool) -> Human {
        Human {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            running: std::collections::HashMap::new(),
            terminal,
        }
    }
}

impl Observer for Human {
    fn event(&mut self, e: &Event) {
        let mut err = std::io::stderr().lock();
        match e {
            Event::StageStarted { stage, kind } => {
                let _ = writeln!(err, "── stage {} ({kind})", printable(stage));
            }
            Event::StepStarted {
                step,
                description,
                total_bytes,
            } => {
                if let (true, Some(total)) = (self.terminal, total_bytes) {
                    let bar = self.bars.add(ProgressBar::new(*total));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "   {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_message(printable(description));
                    self.running.insert(step.to_string(), bar);
                } else {
                    let line = format!("   {} …", printable(description));
                    if self.running.is_empty() {
                        let _ = writeln!(err, "{line}");
                    } else {
                        // Above the bars, not through them.
                        let _ = self.bars.println(line);
                    }
                }
            }
            Event::Bytes { step, done, .. } => {
                if let Some(bar) = self.running.get(*step) {
                    bar.set_position(*done);
                }
            }
            Event::StepFinished {
                step,
                outcome,
                message,
            } => {
                if let Some(bar) = self.running.remove(*step) {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                let mark = match *outcome {
                    "ok" => "✔",
                    "skipped" | "unchanged" => "·",
                    _ => "✘",
                };
                let line = format!(
                    "   {mark} {} {outcome}{}",
                    printable(step),
                    message
                        .map(|m| format!(": {}", printable(m)))
                        .unwrap_or_default()
                );
                if self.running.is_empty() {
                    let _ = writeln!(err, "{line}");
                } else {
                    // Above the other steps' bars, not through them.
                    let _ = self.bars.println(line);
                }
            }
            Event::StageFinished { stage, ok } => {
                let _ = writeln!(
                    err,
                    "── stage {} {}",
                    printable(stage),
                    if *ok { "succeeded" } else { "failed" }
                );
            }
            Event::Finished {
                ok,
                stage,
                failed_steps,
            } => {
                let _ = match (ok, stage) {
                    (true, Some(s)) if failed_steps.is_empty() => {
                        writeln!(err, "recovered by stage {}", printable(s))
                    }
                    (true, Some(s)) => writeln!(
                        err,
                        "recovered by stage {} with {}: {}",
                        printable(s),
                        non_critical_failures(failed_steps.len()),
                        printable(&failed_steps.join(", "))
                    ),
                    _ => writeln!(err, "every stage failed"),
                };
            }
        }
    }
}

/// "1 non-critical failure", "2 non-critical failures".
pub fn non_critical_failures(n: usize) -> String {
    format!("{n} non-critical failure{}", if n == 1 { "" } else { "s" })
}

/// For tools: JSON lines on stdout.
pub struct Json;

impl Observer for Json {
    fn event(&mut self, e: &Event) {
        if let Ok(line) = serde_json::to_string(e) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// Plan-supplied text (names, ids, labels, command output) made safe for
/// a terminal: control characters (ESC, CR, BEL, …) and bidirectional
/// overrides are shown as escapes (`\u{1b}`), so the text cannot move the
/// cursor, clear the screen or hide what is printed around it.
pub fn printable(s: &str) -> String {
    escape(s, false)
}

/// [`printable`] for multi-line text of our own making around plan text:
/// newlines are kept, every other control character escaped.
pub fn printable_lines(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> String {
    let unsafe_char = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Throttles byte events to about one per 1% of a step (or per 64 MiB).
pub struct Throttle {
    last: u64,
    every: u64,
}

impl Throttle {
    pub fn new(total: u64) -> Throttle {
        Throttle {
            last: 0,
            every: (total / 100).clamp(1 << 20, 64 << 20),
        }
    }

    pub fn due(&mut self, done: u64) -> bool {
        if done >= self.last.saturating_add(self.every) {
            self.last = done;
            true
        } else {
            false
        }
    }
}
