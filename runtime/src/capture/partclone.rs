//! Used-blocks capture through partclone (`partclone.ntfs`, `.fat`,
//! `.extfs`): the tools that know these filesystems' allocation, rather
//! than allocation-bitmap readers of our own.
//!
//! partclone reads a whole device, so the partition is shown to it as a
//! read-only loop device over exactly its range (`losetup --read-only
//! --offset --sizelimit`): it cannot read, let alone write, anything else.
//! Its image (`-a0`: no per-block CRC, the sha256 below covers every byte)
//! streams from its stdout into the zstd file and, at the same time on
//! another thread ([`super::pipe`]), through
//! [`rplan_compiler::partclone::Expand`] into the sha256 and size of the
//! partition's bytes as a restore writes them back.

use super::backup::{encoder, finish, Encoder, Progress, Written};
use super::CapturedPartition;
use crate::restore::hex;
use crate::target::{Device, RegionReader};
use rplan_compiler::model::ArtifactFormat;
use rplan_compiler::partclone::{Expand, Header, HEADER_LEN};
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

/// The partclone tool for what the partition holds, if it is installed.
pub fn tool_for(p: &CapturedPartition) -> Option<&'static str> {
    let tool = match p.fs.as_ref()?.kind.as_str() {
        "ntfs" => "partclone.ntfs",
        "vfat" => "partclone.fat",
        "ext2" | "ext3" | "ext4" => "partclone.extfs",
        _ => return None,
    };
    crate::mkfs::find_tool(tool).map(|_| tool)
}

/// A read-only loop device over one partition, detached on drop.
struct Loop(String);

impl Loop {
    fn attach(path: &Path, start: u64, size: u64) -> io::Result<Loop> {
        let out = Command::new("losetup")
            .args(["--find", "--show", "--read-only", "--offset"])
            .arg(start.to_string())
            .arg("--sizelimit")
            .arg(size.to_string())
            .arg(path)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "losetup: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if dev.is_empty() {
            return Err(io::Error::other("losetup named no device"));
        }
        Ok(Loop(dev))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Capture partition `p` of the disk at `path` (read through `dev`) with
/// `tool` into `dir/<id>.pcl.zst`: partclone's image, then the
/// partition's bytes past its last block (see [`rplan_compiler::partclone`]).
pub fn capture(
    tool: &str,
    dev: &dyn Device,
    path: &Path,
    p: &CapturedPartition,
    dir: &Path,
    id: &str,
    progress: Progress<'_>,
) -> io::Result<Written> {
    let lo = Loop::attach(path, p.start, p.size)?;
    let name = format!("{id}.pcl.zst");
    let mut child = Command::new(tool)
        .args(["-c", "-a0", "-q", "-L", "/dev/null", "-s"])
        .arg(&lo.0)
        .args(["-o", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let Some(mut stdout) = child.stdout.take() else {
        return Err(io::Error::other("no pipe from partclone"));
    };
    let enc = encoder(&dir.join(&name))?;
    let result = (|| -> io::Result<(([u8; 32], u64), Encoder)> {
        let mut head = [0u8; HEADER_LEN];
        stdout.read_exact(&mut head)?;
        let header = Header::parse(&head)?;
        let blocks_end = header
            .total_blocks
            .saturating_mul(u64::from(header.block_size))
            .min(p.size);
        let tail = RegionReader::new(dev, p.start + blocks_end, p.size - blocks_end)?;
        let mut src = io::Cursor::new(head).chain(stdout).chain(tail);
        super::pipe::run(
            &mut src,
            enc,
            |feed, done| {
                let mut expand = Expand::new(feed.reader())?;
                crate::restore::sha256_stream(&mut expand, &mut |total| {
                    done.store(total, Ordering::Relaxed)
                })
            },
            &mut |done| progress(id, done, p.size),
        )
    })();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait()?;
    let ((sha, size), enc) = result?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "{tool} exited with {status}: {}",
            stderr.lines().last().unwrap_or("").trim()
        )));
    }
    if size != p.size {
        return Err(io::Error::other(format!(
            "{tool} described {size} bytes, the partition has {}",
            p.size
        )));
    }
    Ok(Written {
        id: id.to_string(),
        path: name,
        format: ArtifactFormat::PartcloneZstd,
        size,
        sha256: hex(&sha),
        stored: finish(enc)?,
    })
}
