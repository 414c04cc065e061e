//! `rplan capture --backup DIR`: every partition into an artifact, its
//! sha256 and size recorded as restore will verify them.
//!
//! A filesystem whose allocation partclone reads (NTFS, FAT, ext2/3/4) is
//! captured used blocks only, as a `partclone-zstd` artifact
//! ([`crate::capture::partclone`] runs the tool); anything else, or when
//! partclone is missing or fails, as `raw-zstd`: the partition's bytes
//! through zstd, where runs of zeros cost next to nothing. Either way the
//! recorded sha256 and size are those of the partition's bytes as a
//! restore writes them back (free space as zeros), so `check` and the
//! restore verify both formats the same way.
//!
//! Streaming with bounded memory: the pipeline's chunk pool
//! ([`super::pipe`]: 8 × 1 MiB) and the zstd encoder's window, whatever
//! the partition's size; reading, compressing and hashing overlap. The source is only
//! read. MBR disks also get their LBA 0 as a small `boot_code` artifact.

use super::{CapturedDisk, CapturedPartition};
use crate::restore::hex;
use crate::target::{Device, RegionReader};
use rplan_compiler::model::ArtifactFormat;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;

/// zstd level: 3 is zstd's own default, fast enough to keep up with a disk.
pub const LEVEL: i32 = 3;

/// One artifact written.
#[derive(Debug, Clone)]
pub struct Written {
    pub id: String,
    /// Relative to the backup root.
    pub path: String,
    pub format: ArtifactFormat,
    /// Bytes once decompressed (restored).
    pub size: u64,
    pub sha256: String,
    /// Bytes on disk, for the summary.
    pub stored: u64,
}

/// The backup section of the plan.
#[derive(Debug, Clone)]
pub struct BackupSet {
    pub id: String,
    /// The artifacts' directory relative to the plan's.
    pub root: String,
    pub artifacts: Vec<Written>,
}

impl BackupSet {
    pub fn to_yaml(&self, y: &mut String) {
        let _ = writeln!(y, "backup:\n  id: {}", super::quote(&self.id));
        let _ = writeln!(
            y,
            "  root: {}   # relative to this file",
            super::quote(&self.root)
        );
        y.push_str("  artifacts:\n");
        for a in &self.artifacts {
            let _ = writeln!(y, "    - id: {}", a.id);
            let _ = writeln!(y, "      path: {}", super::quote(&a.path));
            let _ = writeln!(y, "      format: {}", a.format.name());
            let _ = writeln!(
                y,
                "      size: {}   # {} stored",
                super::plan_size(a.size, 512),
                crate::inspect::approx_bytes(a.stored)
            );
            let _ = writeln!(y, "      sha256: {}", a.sha256);
        }
    }
}

/// Progress of one artifact: (artifact id, bytes done, bytes total).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Image every partition of `disk` (read from `dev`, opened from `path`)
/// into `dir`, recording the artifacts in `set` and the partitions'
/// `image` and the disk's `boot_code`.
pub fn back_up_disk(
    disk: &mut CapturedDisk,
    dev: &dyn Device,
    path: &Path,
    dir: &Path,
    set: &mut BackupSet,
    progress: Progress<'_>,
) -> io::Result<()> {
    if matches!(disk.table, crate::table::TableKind::Mbr { .. }) {
        let mut lba0 = vec![0u8; 512];
        dev.read_at(&mut lba0, 0)?;
        let id = format!("{}-boot-code", disk.id);
        let name = format!("{id}.bin");
        std::fs::write(dir.join(&name), &lba0)?;
        set.artifacts.push(Written {
            id: id.clone(),
            path: name,
            format: ArtifactFormat::File,
            size: 512,
            sha256: hex(&Sha256::digest(&lba0)),
            stored: 512,
        });
        disk.boot_code = Some(id);
    }
    // LDM partitions are backed up as their volumes ([`super::volumes`]).
    for p in disk.partitions.iter_mut().filter(|p| p.kind != "ldm") {
        let id = format!("{}-{}", disk.id, p.id);
        let written = match super::partclone::tool_for(p) {
            Some(tool) => match super::partclone::capture(tool, dev, path, p, dir, &id, progress) {
                Ok(w) => w,
                Err(e) => {
                    disk.notes.push(format!(
                        "partition {}: partclone failed ({e}); imaged whole as raw-zstd",
                        p.number
                    ));
                    raw_zstd(dev, p, dir, &id, progress)?
                }
            },
            None => raw_zstd(dev, p, dir, &id, progress)?,
        };
        p.image = Some(written.id.clone());
        set.artifacts.push(written);
    }
    Ok(())
}

/// The partition's bytes through zstd, hashed on the way (on two
/// threads: [`super::pipe`]).
pub(crate) fn raw_zstd(
    dev: &dyn Device,
    p: &CapturedPartition,
    dir: &Path,
    id: &str,
    progress: Progress<'_>,
) -> io::Result<Written> {
    let name = format!("{id}.img.zst");
    let enc = encoder(&dir.join(&name))?;
    let mut src = RegionReader::new(dev, p.start, p.size)?;
    let (sha, enc) = super::pipe::run(
        &mut src,
        enc,
        |feed, done| {
            let mut hasher = Sha256::new();
            feed.for_each(|b| {
                hasher.update(b);
                done.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(())
            })?;
            Ok(hasher.finalize())
        },
        &mut |done| progress(id, done, p.size),
    )?;
    Ok(Written {
        id: id.to_string(),
        path: name,
        format: ArtifactFormat::RawZstd,
        size: p.size,
        sha256: hex(&sha),
        stored: finish(enc)?,
    })
}

/// The zstd writer of an artifact file.
pub type Encoder = zstd::stream::write::Encoder<'static, BufWriter<File>>;

pub fn encoder(path: &Path) -> io::Result<Encoder> {
    zstd::stream::write::Encoder::new(BufWriter::new(File::create(path)?), LEVEL)
}

/// End the zstd frame, sync the file; its size on disk.
pub fn finish(enc: Encoder) -> io::Result<u64> {
    let mut out = enc.finish()?;
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// `to` relative to the directory `from` (both made absolute first), for
/// `backup.root`. By hand: a dozen lines, not worth a crate.
pub fn relative(from: &Path, to: &Path) -> io::Result<String> {
    let from = std::fs::canonicalize(from)?;
    let to = std::fs::canonicalize(to)?;
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..a.len() {
        rel.push("..");
    }
    for c in &b[common..] {
        rel.push(c.as_os_str());
    }
    let s = rel.to_string_lossy().into_owned();
    Ok(if s.is_empty() { ".".to_string() } else { s })
}

/// Progress for people: an indicatif bar per artifact on a terminal,
/// nothing otherwise.
pub fn progress_bar(terminal: bool) -> impl FnMut(&str, u64, u64) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let mut current: Option<(String, ProgressBar)> = None;
    move |id: &str, done: u64, total: u64| {
        if !terminal {
            return;
        }
        if current.as_ref().is_none_or(|(c, _)| c != id) {
            if let Some((_, bar)) = current.take() {
                bar.finish_and_clear();
            }
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "   {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(crate::events::printable(id));
            current = Some((id.to_string(), bar));
        }
        if let Some((_, bar)) = &current {
            bar.set_position(done);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }
}
