//! Helpers for `target_table_restore.rs`: sparse and pattern-filled images,
//! and thin wrappers around the outside tools (sfdisk, sgdisk, cmp,
//! sha256sum, blkid, losetup) that the tests trust instead of rplan's own
//! readers.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIB: u64 = 1 << 20;

/// Run a tool; panic with its stderr if it cannot be started.
pub fn tool(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Run a tool that must succeed; return its stdout.
pub fn tool_ok(cmd: &str, args: &[&str]) -> String {
    let out = tool(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A sparse file of `len` bytes.
pub fn sparse(dir: &Path, name: &str, len: u64) -> PathBuf {
    let path = dir.join(name);
    let f = File::create(&path).expect("create image");
    f.set_len(len).expect("size image");
    path
}

/// Deterministic pseudo-random bytes (xorshift64*), never a long zero run.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A file of `len` pseudo-random bytes.
pub fn pattern_file(dir: &Path, name: &str, len: u64, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut f = File::create(&path).expect("create pattern file");
    let chunk = MIB as usize;
    let mut done = 0u64;
    let mut k = 0;
    while done < len {
        let n = chunk.min((len - done) as usize);
        f.write_all(&noise(n, seed.wrapping_add(k)))
            .expect("write pattern");
        done += n as u64;
        k += 1;
    }
    path
}

/// Copy a file byte for byte (the pristine reference for `cmp`).
pub fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy");
}

/// `cmp`: are `len` bytes at `off_a` in `a` equal to those at `off_b` in `b`?
pub fn same_bytes(a: &Path, off_a: u64, b: &Path, off_b: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    let skip = format!("{off_a}:{off_b}");
    let n = len.to_string();
    let out = tool("cmp", &["-s", "-i", &skip, "-n", &n, s(a), s(b)]);
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("cmp failed: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// With `cmp`, check that every byte of `new` outside the `allowed`
/// `(offset, len)` ranges equals `orig`.
pub fn assert_untouched_outside(orig: &Path, new: &Path, allowed: &[(u64, u64)], total: u64) {
    let mut allowed = allowed.to_vec();
    allowed.sort();
    let mut at = 0u64;
    for (off, len) in allowed.iter().copied().chain(std::iter::once((total, 0))) {
        if off > at {
            assert!(
                same_bytes(orig, at, new, at, off - at),
                "bytes {at}..{off} (outside every declared range) changed"
            );
        }
        at = at.max(off + len);
    }
}

/// `sha256sum` of a file, lowercase hex.
pub fn sha256sum(path: &Path) -> String {
    let out = tool_ok("sha256sum", &[s(path)]);
    out.split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// `sfdisk --json` of an image or device.
pub fn sfdisk_json(path: &str) -> serde_json::Value {
    let out = tool_ok("sfdisk", &["--json", path]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("sfdisk JSON");
    v["partitiontable"].clone()
}

/// An `sfdisk --json` partition by its number suffix (`img5` -> 5).
pub fn sfdisk_part(table: &serde_json::Value, number: u32) -> serde_json::Value {
    let parts = table["partitions"].as_array().expect("partitions");
    parts
        .iter()
        .find(|p| {
            let node = p["node"].as_str().unwrap_or("");
            let digits: String = node
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits == number.to_string()
        })
        .unwrap_or_else(|| panic!("no partition {number} in {table}"))
        .clone()
}

/// Open a file read-write without rplan (to plant test data).
pub fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.write_all_at(bytes, offset).expect("poke");
}

/// A loop device attached for the test and detached when dropped.
pub struct Loop {
    pub dev: String,
}

impl Loop {
    /// `losetup --find --show`, or `None` where loop devices are missing.
    pub fn attach(file: &Path, sector_size: u32) -> Option<Loop> {
        let ss = sector_size.to_string();
        let out = Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--partscan",
                "--sector-size",
                &ss,
                s(file),
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "losetup unavailable, skipping: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            return None;
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Loop { dev })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}
