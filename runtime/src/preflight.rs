//! Apply's preflight: what depends only on the plan and this machine, not
//! on the targets, checked before any target is opened or written (exit 4),
//! so it is never discovered mid-ASR after a table was written: the
//! backup's files (present, regular, of their size and kind), the `mkfs.*`
//! tools the format steps need, a usable temp directory.
//!
//! The artifacts' sha256 is checked here too, on other threads while the
//! targets are opened and inspected and the operator is asked
//! ([`verify_later`]); restores verify it again while streaming.
//!
//! Not here: anything about the targets (the executor's target checks).

use rplan_compiler::analyze::artifacts::{self, ZSTD_WINDOW_LOG_MAX};
use rplan_compiler::compiled::{CompiledPlan, StepKind};
use rplan_compiler::model::ArtifactFormat;
use rplan_compiler::size::human_bytes;
use rplan_compiler::{codes, Diagnostic};
use std::io::Read;
use std::path::Path;
use std::thread::JoinHandle;

/// Artifacts being hashed in the background: [`Verifying::wait`] gives
/// their problems.
#[derive(Debug)]
pub struct Verifying(JoinHandle<Vec<Diagnostic>>);

impl Verifying {
    /// Wait for the hashing to end: the artifacts that are missing,
    /// unreadable, or not of the plan's size and sha256.
    pub fn wait(self) -> Vec<Diagnostic> {
        self.0.join().unwrap_or_else(|_| {
            vec![Diagnostic::error(
                codes::ARTIFACT_MISSING,
                "",
                "verifying the backup's artifacts failed (the hashing thread panicked); nothing was written",
            )]
        })
    }
}

/// Start hashing every artifact of `plan` (several at once) against the
/// plan's size and sha256, and return at once. `compiled`: the plan came
/// compiled, and a file that differs makes it stale (`RP0706`), as
/// [`crate::executor::check_artifacts`] reports it.
pub fn verify_later(plan: &CompiledPlan, compiled: bool) -> Verifying {
    let artifacts = plan.artifacts.clone();
    Verifying(std::thread::spawn(move || {
        if compiled {
            crate::executor::stale_artifacts(&artifacts)
        } else {
            artifacts::verify(&artifacts)
        }
    }))
}

/// Every artifact: a regular file (not a device, FIFO or directory, which
/// would be read forever or block), of the plan's size if raw, and of the
/// kind the plan says (a zstd file is not `raw`).
pub fn artifact_files(plan: &CompiledPlan) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for a in &plan.artifacts {
        let path = Path::new(&a.path);
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(
                    Diagnostic::error(
                        codes::ARTIFACT_MISSING,
                        "",
                        format!("artifact `{}`: {} does not exist", a.id, a.path),
                    )
                    .help("check the backup store; nothing was written"),
                );
                continue;
            }
            Err(e) => {
                out.push(Diagnostic::error(
                    codes::ARTIFACT_MISSING,
                    "",
                    format!("artifact `{}`: cannot read {}: {e}", a.id, a.path),
                ));
                continue;
            }
        };
        if !meta.is_file() {
            out.push(Diagnostic::error(
                codes::ARTIFACT_KIND,
                "",
                format!(
                    "artifact `{}`: {} is not a regular file (a device, FIFO or directory)",
                    a.id, a.path
                ),
            ));
            continue;
        }
        let window = zstd_window(path);
        let zstd = window.is_some();
        let max = (1_u64 << ZSTD_WINDOW_LOG_MAX) + 1;
        match a.format {
            ArtifactFormat::RawZstd | ArtifactFormat::PartcloneZstd
                if window.is_some_and(|w| w > max) =>
            {
                out.push(
                    Diagnostic::error(
                        codes::ARTIFACT_KIND,
                        "",
                        format!(
                            "artifact `{}` needs a zstd window over 2^{ZSTD_WINDOW_LOG_MAX} bytes",
                            a.id
                        ),
                    )
                    .help(format!(
                        "recompress it with `zstd --long={ZSTD_WINDOW_LOG_MAX}` or less"
                    )),
                )
            }
            ArtifactFormat::Raw if zstd => out.push(
                Diagnostic::error(
                    codes::ARTIFACT_KIND,
                    "",
                    format!(
                        "artifact `{}` has `format: raw`, but {} is a zstd file",
                        a.id, a.path
                    ),
                )
                .help("this is a zstd file: use `format: raw-zstd`"),
            ),
            ArtifactFormat::RawZstd | ArtifactFormat::PartcloneZstd if !zstd => {
                out.push(Diagnostic::error(
                    codes::ARTIFACT_KIND,
                    "",
                    format!(
                        "artifact `{}` has `format: {}`, but {} is not a zstd file",
                        a.id,
                        a.format.name(),
                        a.path
                    ),
                ))
            }
            _ => {}
        }
        if let (ArtifactFormat::Raw | ArtifactFormat::File, Some(want)) = (a.format, a.size) {
            if meta.len() != want {
                out.push(
                    Diagnostic::error(
                        codes::ARTIFACT_SIZE,
                        "",
                        format!(
                            "artifact `{}`: {} holds {} ({} bytes), the plan says {} ({want} bytes): truncated or replaced?",
                            a.id,
                            a.path,
                            human_bytes(meta.len()),
                            meta.len(),
                            human_bytes(want)
                        ),
                    )
                    .help("check the backup store; nothing was written"),
                );
            }
        }
    }
    out
}

/// The zstd window the file at `path` needs, `None` if it is not zstd.
fn zstd_window(path: &Path) -> Option<u64> {
    let mut head = [0_u8; 18];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .ok()?;
    artifacts::zstd_window(&head[..n])
}

/// The machine: the tools every format step needs, and the temp directory
/// mkfs (and a dry-run's scratch files) will use.
pub fn machine(plan: &CompiledPlan, temp_dir: Option<&Path>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut formats: Vec<_> = plan
        .stages
        .iter()
        .flat_map(|s| &s.steps)
        .filter(|s| s.kind == StepKind::Format)
        .filter_map(|s| {
            let content = match (&s.volume, &s.disk, &s.partition) {
                (Some(v), ..) => plan.volume(v)?.content.as_ref(),
                (None, Some(d), Some(p)) => plan.disk(d)?.partition(p)?.content.as_ref(),
                _ => None,
            }?;
            Some((content.format.as_ref()?.fs, s.id.clone()))
        })
        .collect();
    formats.dedup_by_key(|(fs, _)| *fs);
    let mut seen = Vec::new();
    for (fs, step) in &formats {
        if seen.contains(fs) {
            continue;
        }
        seen.push(*fs);
        if let Err(e) = crate::mkfs::tools_present(*fs) {
            out.push(
                Diagnostic::error(
                    codes::TOOL_MISSING,
                    "",
                    format!("step `{step}` makes a {fs} filesystem: {e}"),
                )
                .help("install it and apply again; nothing was written"),
            );
        }
    }
    if temp_dir.is_some() || !formats.is_empty() {
        let dir = temp_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        if let Err(e) = tempfile::tempfile_in(&dir) {
            out.push(
                Diagnostic::error(
                    codes::IO_FAILED,
                    "",
                    format!(
                        "cannot make temporary files in {}: {e}",
                        dir.display()
                    ),
                )
                .help("pass --temp-dir with a writable directory on a filesystem with room for the largest formatted partition"),
            );
        }
    }
    out
}
