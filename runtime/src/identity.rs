//! A target is never one of the plan's own files: not a backup artifact,
//! not the plan or compiled plan, not the journal, and not another target.
//! Paths can hide that (symlinks, hard links, `./` spellings, a loop device
//! backed by the artifact, a disk holding the filesystem the backup lives
//! on), so files are compared by identity: device and inode for files, the
//! device number for block devices, and for a block device also every file
//! that lives on it or on one of its partitions.
//!
//! Checked before any target is opened, so the same file named twice is
//! reported as such rather than as "locked by another process".

use crate::target::{loop_backing_file, parse_major_minor, sysfs_block_dir};
use rplan_compiler::{codes, Diagnostic};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a path is, for comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// A regular file (or anything not a block device): device and inode.
    File { dev: u64, ino: u64 },
    /// A block device: its device number.
    Block { rdev: u64 },
}

fn identity(path: &Path) -> Option<Identity> {
    let m = std::fs::metadata(path).ok()?;
    Some(if m.file_type().is_block_device() {
        Identity::Block { rdev: m.rdev() }
    } else {
        Identity::File {
            dev: m.dev(),
            ino: m.ino(),
        }
    })
}

/// The whole disk a (partition) device number belongs to.
fn whole_disk(rdev: u64) -> u64 {
    let dir = sysfs_block_dir(rdev);
    if !dir.join("partition").exists() {
        return rdev;
    }
    // /sys/dev/block/8:1 -> ../../devices/…/sda/sda1; the parent has `dev`.
    std::fs::canonicalize(&dir)
        .ok()
        .and_then(|d| d.parent().map(|p| p.join("dev")))
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|s| parse_major_minor(s.trim()))
        .unwrap_or(rdev)
}

/// The file a loop device reads and writes, if `rdev` is one.
fn loop_backing(rdev: u64) -> Option<PathBuf> {
    loop_backing_file(&sysfs_block_dir(rdev))
}

/// Does writing `target` write `file`?
fn covers(target: Identity, file: Identity) -> bool {
    match (target, file) {
        (a, b) if a == b => true,
        (Identity::Block { rdev }, Identity::File { dev, .. }) => {
            // The file lives on a filesystem on this disk or one of its
            // partitions.
            whole_disk(dev) == whole_disk(rdev)
                || loop_backing(rdev)
                    .and_then(|p| identity(&p))
                    .is_some_and(|backing| backing == file)
        }
        (Identity::Block { rdev: a }, Identity::Block { rdev: b }) => {
            // A disk and one of its partitions overlap.
            whole_disk(a) == whole_disk(b)
        }
        _ => false,
    }
}

/// Refusals for targets that are (or contain) one of `own` (a description
/// and a path each: "artifact `sys`", "the plan", "the journal") or another
/// target. Paths that do not exist are skipped: opening reports them.
pub fn check(targets: &[(String, PathBuf)], own: &[(String, PathBuf)]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let ids: Vec<Option<Identity>> = targets.iter().map(|(_, p)| identity(p)).collect();
    for (i, ((disk, path), id)) in targets.iter().zip(&ids).enumerate() {
        let Some(id) = *id else { continue };
        let name = format!("{disk}={}", path.display());
        for (what, file) in own {
            if identity(file).is_some_and(|f| covers(id, f)) {
                out.push(
                    Diagnostic::error(
                        codes::TARGET_IS_OWN_FILE,
                        "",
                        format!(
                            "target {name} would overwrite {what} ({}); nothing was written",
                            file.display()
                        ),
                    )
                    .help("name the disk or image to restore onto, not a file the plan needs"),
                );
            }
        }
        for ((other, other_path), other_id) in targets.iter().zip(&ids).skip(i + 1) {
            if other_id.is_some_and(|o| covers(id, o) || covers(o, id)) {
                out.push(
                    Diagnostic::error(
                        codes::TARGET_IS_OWN_FILE,
                        "",
                        format!(
                            "targets {name} and {other}={} are the same disk (or overlap)",
                            other_path.display()
                        ),
                    )
                    .help("give each disk of the plan its own target"),
                );
            }
        }
    }
    out
}

/// What tells this disk from another that may later answer to the same
/// path: an image file's device, inode and size; a block device's size and
/// serial number (or WWID) from sysfs, else its size and model. `None` for
/// a path that cannot be read.
pub fn fingerprint(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    if !m.file_type().is_block_device() {
        return Some(format!("file {}:{} {} bytes", m.dev(), m.ino(), m.len()));
    }
    let dir = sysfs_block_dir(m.rdev());
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // Loop devices: the file behind them.
    if let Some(backing) = loop_backing(m.rdev()) {
        let b = std::fs::metadata(&backing).ok()?;
        return Some(format!("loop over {}:{}", b.dev(), b.ino()));
    }
    let sectors = read("size").unwrap_or_default();
    let serial = read("device/serial")
        .or_else(|| read("serial"))
        .or_else(|| read("device/wwid"))
        .or_else(|| read("wwid"))
        .or_else(|| read("device/model"))
        .unwrap_or_default();
    Some(format!("block {sectors} sectors {serial}"))
}
