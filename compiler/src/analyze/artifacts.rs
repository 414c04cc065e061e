//! The backup set: artifact ids, paths, and — unless `--no-artifacts` — the
//! files themselves: regular files inside the backup root, present, of the
//! stated size, with the stated sha256 (hashed as a stream, so a 10 GiB
//! image costs three 4 MiB buffers, read on one thread and hashed on
//! another, never past the stated size + 1; several artifacts are hashed at
//! once).
//!
//! zstd artifacts are decoded here and by the restore with the same
//! settings ([`zstd_decoder`]): windows up to [`ZSTD_WINDOW_LOG_MAX`]
//! (2 GiB, `zstd --long=31`) are accepted, larger ones are an error at
//! check time rather than a failed restore.

use crate::compiled::CArtifact;
use crate::diagnostic::{codes, Diagnostic};
use crate::model::{ArtifactFormat, Plan};
use crate::size::human_bytes;
use crate::Options;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path};

pub fn check(
    plan: &Plan,
    options: &Options,
    base_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Vec<CArtifact> {
    let Some(backup) = &plan.backup else {
        return Vec::new();
    };
    super::unique_ids(
        backup
            .artifacts
            .iter()
            .enumerate()
            .map(|(n, a)| (a.id.as_str(), format!("/backup/artifacts/{n}/id"))),
        codes::DUPLICATE_ARTIFACT,
        "artifact",
        diags,
    );
    let root = base_dir.join(&backup.root);
    let used = used_artifacts(plan);
    let mut out = Vec::new();
    // Per artifact: its diagnostics in order, and the file to hash (hashed
    // below, several at once).
    let mut found: Vec<(Vec<Diagnostic>, Option<ToHash>)> = Vec::new();
    let all = diags;
    for (n, a) in backup.artifacts.iter().enumerate() {
        let mut local = Vec::new();
        let diags = &mut local;
        let mut job = None;
        let ap = format!("/backup/artifacts/{n}");
        let rel = Path::new(&a.path);
        let escapes =
            rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir));
        if escapes {
            diags.push(
                Diagnostic::error(
                    codes::ARTIFACT_PATH,
                    format!("{ap}/path"),
                    format!("artifact path `{}` leaves the backup root", a.path),
                )
                .help("artifact paths are relative to `backup.root`, without `..`"),
            );
        }
        let size = a.size.and_then(|s| s.bytes(512));
        if size.is_none() && a.format != ArtifactFormat::File {
            diags.push(
                Diagnostic::error(
                    codes::ARTIFACT_NO_SIZE,
                    ap.clone(),
                    format!("image artifact `{}` has no `size`", a.id),
                )
                .help("give its decompressed size, so the plan can check that it fits"),
            );
        }
        if !used.contains(&a.id.as_str()) {
            diags.push(
                Diagnostic::warning(codes::ARTIFACT_UNUSED, format!("{ap}/id"), format!("artifact `{}` is not used by any disk or volume", a.id))
                    .help("restore it with `content.image`, install it with `content.files`, or remove it"),
            );
        }
        // Absolute, so that a compiled plan works from any directory.
        let path = std::path::absolute(root.join(&a.path)).unwrap_or_else(|_| root.join(&a.path));
        // A path that leaves the root is never opened, let alone hashed.
        if !options.no_artifacts && !escapes && inside_root(&root, &path, &ap, diags) {
            job = Some(ToHash {
                path: path.clone(),
                format: a.format,
                size,
                sha256: a.sha256.clone(),
                ap,
            });
        }
        out.push(CArtifact {
            id: a.id.clone(),
            path: path.display().to_string(),
            format: a.format,
            size,
            sha256: a.sha256.to_ascii_lowercase(),
        });
        found.push((local, job));
    }
    if !options.defer_hashing {
        hash_all(&mut found);
    }
    for (local, _) in found {
        all.extend(local);
    }
    out
}

/// Hash the artifacts of a plan compiled with [`crate::Options::defer_hashing`]
/// (several at once) and report each that is missing, unreadable, or not
/// of the plan's size and sha256: the diagnostics `check` would have given,
/// with the artifact's id in front since they are shown without the plan.
pub fn verify(artifacts: &[CArtifact]) -> Vec<Diagnostic> {
    let mut found: Vec<(Vec<Diagnostic>, Option<ToHash>)> = artifacts
        .iter()
        .enumerate()
        .map(|(n, a)| {
            let job = ToHash {
                path: a.path.clone().into(),
                format: a.format,
                size: a.size,
                sha256: a.sha256.clone(),
                ap: format!("/backup/artifacts/{n}"),
            };
            (Vec::new(), Some(job))
        })
        .collect();
    hash_all(&mut found);
    artifacts
        .iter()
        .zip(found)
        .flat_map(|(a, (diags, _))| {
            diags.into_iter().map(move |mut d| {
                d.message = format!("artifact `{}`: {}", a.id, d.message);
                d
            })
        })
        .collect()
}

/// An artifact file to check against the plan.
struct ToHash {
    path: std::path::PathBuf,
    format: ArtifactFormat,
    size: Option<u64>,
    sha256: String,
    ap: String,
}

/// Verify every artifact that has a job, several at once (one per CPU,
/// at most four: each is one sequential read of the backup store), adding
/// each one's diagnostics to its own list so the order stays the plan's.
fn hash_all(found: &mut [(Vec<Diagnostic>, Option<ToHash>)]) {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4);
    let slots: Vec<std::sync::Mutex<&mut (Vec<Diagnostic>, Option<ToHash>)>> = found
        .iter_mut()
        .filter(|(_, job)| job.is_some())
        .map(std::sync::Mutex::new)
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers.min(slots.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(slot) = slots.get(i) else { break };
                // Each slot is taken by one worker only: never contended.
                let Ok(mut slot) = slot.lock() else { break };
                let (diags, job) = &mut **slot;
                if let Some(j) = job.take() {
                    verify_file(&j.path, j.format, j.size, &j.sha256, &j.ap, diags);
                }
            });
        }
    });
}

fn used_artifacts(plan: &Plan) -> Vec<&str> {
    let contents = plan
        .disks
        .iter()
        .flat_map(|d| d.partitions.iter().filter_map(|p| p.content.as_ref()))
        .chain(plan.volumes.iter().filter_map(|v| v.content.as_ref()));
    let mut used: Vec<&str> = plan
        .disks
        .iter()
        .filter_map(|d| d.boot_code.as_ref().map(|b| b.artifact.as_str()))
        .collect();
    for c in contents {
        used.extend(c.image.as_deref());
        used.extend(c.files.iter().map(|f| f.artifact.as_str()));
    }
    used
}

/// Whether `path`, symlinks resolved, is still inside `root` (a missing
/// file is left to [`verify_file`] to report).
fn inside_root(root: &Path, path: &Path, ap: &str, diags: &mut Vec<Diagnostic>) -> bool {
    let (Ok(root), Ok(real)) = (root.canonicalize(), path.canonicalize()) else {
        return true;
    };
    if real.starts_with(&root) {
        return true;
    }
    diags.push(
        Diagnostic::error(
            codes::ARTIFACT_PATH,
            format!("{ap}/path"),
            format!(
                "artifact {} leads outside the backup root (to {}) through a symbolic link",
                path.display(),
                real.display()
            ),
        )
        .help("artifacts must be files inside `backup.root`"),
    );
    false
}

fn verify_file(
    path: &Path,
    format: ArtifactFormat,
    size: Option<u64>,
    sha256: &str,
    ap: &str,
    diags: &mut Vec<Diagnostic>,
) {
    if let Err(d) = check_kind(path, format, ap) {
        diags.push(d);
        return;
    }
    let measured = hash_artifact_upto(path, format, size);
    match measured {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => diags.push(
            Diagnostic::error(codes::ARTIFACT_MISSING, format!("{ap}/path"), format!("artifact file {} does not exist", path.display()))
                .help("check `backup.root` and the path, or use --no-artifacts to check the plan away from the backup store"),
        ),
        Err(e) => diags.push(Diagnostic::error(codes::ARTIFACT_MISSING, format!("{ap}/path"), format!("cannot read artifact {}: {e}", path.display()))),
        Ok((hash, len)) => {
            if let Some(size) = size.filter(|&s| s != len) {
                diags.push(
                    Diagnostic::error(codes::ARTIFACT_SIZE, format!("{ap}/size"), format!("artifact is {} ({len} bytes) decompressed, the plan says {}", human_bytes(len), human_bytes(size)))
                        .help(format!("size: {len}")),
                );
            }
            if !hash.eq_ignore_ascii_case(sha256) {
                // A common slip: the sha256 of the .zst file itself.
                let of_compressed = matches!(format, ArtifactFormat::RawZstd | ArtifactFormat::PartcloneZstd)
                    && hash_artifact_upto(path, ArtifactFormat::Raw, None)
                        .is_ok_and(|(h, _)| h.eq_ignore_ascii_case(sha256));
                let d = Diagnostic::error(codes::ARTIFACT_SHA256, format!("{ap}/sha256"), format!("artifact sha256 is {hash}, the plan says {sha256}"));
                diags.push(if of_compressed {
                    d.help(format!("the plan's sha256 is that of the compressed file; `sha256` is of the decompressed bytes: sha256: {hash}"))
                } else {
                    d.help("the backup changed or is damaged: recapture it, or correct the plan if the file is right")
                });
            }
        }
    }
}

/// The largest zstd window accepted (2^31 bytes: `zstd --long=31`), by
/// check and restore alike. A restore needs that much memory at most.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 31;

/// The zstd decoder check and restore both use.
pub fn zstd_decoder<R: Read>(
    r: R,
) -> std::io::Result<zstd::stream::read::Decoder<'static, std::io::BufReader<R>>> {
    let mut d = zstd::stream::read::Decoder::new(r)?;
    d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
    Ok(d)
}

/// The window a zstd file's first frame needs, from its header; `None` if
/// it is not a zstd frame.
pub fn zstd_window(head: &[u8]) -> Option<u64> {
    if head.get(..4)? != [0x28, 0xB5, 0x2F, 0xFD] {
        return None;
    }
    let fhd = *head.get(4)?;
    let single_segment = fhd & 0x20 != 0;
    if !single_segment {
        let wd = *head.get(5)?;
        let log = 10 + u32::from(wd >> 3);
        let base = 1_u64 << log;
        return Some(base + (base / 8) * u64::from(wd & 7));
    }
    // Single segment: the window is the content size.
    let did = [0, 1, 2, 4][usize::from(fhd & 3)];
    let at = 5 + did;
    let fcs = match fhd >> 6 {
        0 => u64::from(*head.get(at)?),
        1 => u64::from(u16::from_le_bytes(head.get(at..at + 2)?.try_into().ok()?)) + 256,
        2 => u64::from(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?)),
        _ => u64::from_le_bytes(head.get(at..at + 8)?.try_into().ok()?),
    };
    Some(fcs)
}

/// The file is what the plan's `format` says: a regular file (not a
/// device or FIFO, read forever), zstd if and only if `raw-zstd`, and a
/// zstd window rplan decodes.
fn check_kind(path: &Path, format: ArtifactFormat, ap: &str) -> Result<(), Diagnostic> {
    let kind =
        |message: String| Diagnostic::error(codes::ARTIFACT_KIND, format!("{ap}/format"), message);
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(()); // missing: reported by the hashing
    };
    if !meta.is_file() {
        return Err(Diagnostic::error(
            codes::ARTIFACT_KIND,
            format!("{ap}/path"),
            format!(
                "artifact {} is not a regular file (a device, FIFO or directory)",
                path.display()
            ),
        )
        .help("artifacts are regular files inside `backup.root`"));
    }
    let mut head = [0_u8; 18];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let window = zstd_window(&head[..n]);
    match (format, window) {
        (ArtifactFormat::Raw, Some(_)) => Err(kind(format!(
            "artifact {} is a zstd file, but its format is `raw`",
            path.display()
        ))
        .help("this is a zstd file: use `format: raw-zstd`")),
        (ArtifactFormat::RawZstd | ArtifactFormat::PartcloneZstd, Some(w)) if w > (1_u64 << ZSTD_WINDOW_LOG_MAX) + 1 => Err(kind(format!(
            "artifact {} needs a zstd window of {} bytes; rplan decodes windows up to 2^{ZSTD_WINDOW_LOG_MAX} bytes",
            path.display(),
            w
        ))
        .help(format!("recompress it with `zstd --long={ZSTD_WINDOW_LOG_MAX}` or less"))),
        _ => Ok(()),
    }
}

/// sha256 and length of an artifact's decompressed bytes, streamed.
pub fn hash_artifact(path: &Path, format: ArtifactFormat) -> std::io::Result<(String, u64)> {
    hash_artifact_upto(path, format, None)
}

/// Like [`hash_artifact`], but reading no more than `size + 1` bytes when
/// the size is known: enough to tell the file is too long. Only regular
/// files are read (a device or FIFO could be read forever).
pub fn hash_artifact_upto(
    path: &Path,
    format: ArtifactFormat,
    size: Option<u64>,
) -> std::io::Result<(String, u64)> {
    // Checked before opening too: opening a FIFO would block.
    let not_regular = || std::io::Error::other("not a regular file (a device, FIFO or directory)");
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    let decoded: Box<dyn Read + Send> = match format {
        ArtifactFormat::RawZstd => Box::new(zstd_decoder(file)?),
        ArtifactFormat::PartcloneZstd => {
            Box::new(crate::partclone::Expand::new(zstd_decoder(file)?)?)
        }
        _ => Box::new(file),
    };
    let mut reader = decoded.take(size.map_or(u64::MAX, |s| s.saturating_add(1)));
    // Reading (and decompressing) on one thread, hashing on this one: the
    // pass costs the slower of the two, not their sum.
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(HASH_BUFFERS);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_BUFFERS);
    for _ in 0..HASH_BUFFERS {
        let _ = free_tx.send(vec![0_u8; HASH_BUF]);
    }
    std::thread::scope(|s| {
        let reading = s.spawn(move || -> std::io::Result<()> {
            while let Ok(mut buf) = free_rx.recv() {
                let n = fill(&mut reader, &mut buf)?;
                if n == 0 || full_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        let mut hasher = Sha256::new();
        let mut len = 0_u64;
        for (buf, n) in full_rx {
            hasher.update(&buf[..n]);
            len += n as u64;
            let _ = free_tx.send(buf);
        }
        reading
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the reading thread panicked")))?;
        Ok((hex(&hasher.finalize()), len))
    })
}

/// Buffers in flight between the reading and the hashing thread.
const HASH_BUFFERS: usize = 3;
const HASH_BUF: usize = 4 << 20;

/// Read until `buf` is full or the stream ends; the bytes read (short
/// only at the end of the stream). Shared with the restore's reader.
pub fn fill(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match r.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(len)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
