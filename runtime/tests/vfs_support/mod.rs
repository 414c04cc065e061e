//! Helpers for `volumes_fs.rs`: a file-backed `Device`, a byte window over a
//! file, deterministic noise, and running outside tools.
//!
//! Deliberately independent of the crate's own device types so the tests
//! check the volume, mkfs and FAT code against plain files only.

#![allow(dead_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rplan_runtime::target::Device;

pub const MIB: u64 = 1 << 20;
pub const KIB: u64 = 1 << 10;

/// An image file as a `Device` (pread/pwrite).
pub struct FileDevice {
    pub file: File,
    pub len: u64,
}

impl FileDevice {
    pub fn open(path: &Path) -> FileDevice {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open image");
        let len = file.metadata().expect("stat image").len();
        FileDevice { file, len }
    }
}

impl Device for FileDevice {
    fn len(&self) -> u64 {
        self.len
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past end of image",
            ));
        }
        self.file.write_all_at(buf, offset)
    }
    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.write_at(&vec![0u8; len as usize], offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// `Read + Write + Seek` over `[start, start + len)` of a file; refuses to
/// go outside it, so a test fails loudly if code under test tries.
pub struct Window<'a> {
    pub file: &'a File,
    pub start: u64,
    pub len: u64,
    pub pos: u64,
}

impl<'a> Window<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Window<'a> {
        Window {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        self.file
            .read_exact_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos + buf.len() as u64 > self.len {
            return Err(io::Error::other(format!(
                "write of {} bytes at {} leaves the {}-byte window",
                buf.len(),
                self.pos,
                self.len
            )));
        }
        self.file.write_all_at(buf, self.start + self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => p as i64,
            SeekFrom::End(d) => self.len as i64 + d,
            SeekFrom::Current(d) => self.pos as i64 + d,
        };
        if new < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "negative seek"));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

/// xorshift64*: deterministic noise without a rand dependency.
pub struct Noise(u64);

impl Noise {
    pub fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Creates an image of `len` bytes filled with seeded noise and returns
/// its contents, the reference for "untouched" checks.
pub fn noise_image(path: &Path, len: u64, seed: u64) -> Vec<u8> {
    let data = Noise::new(seed).bytes(len as usize);
    std::fs::write(path, &data).expect("write image");
    data
}

/// A sparse image of `len` bytes whose `guard` bytes at each end are noise
/// and whose middle reads zeros. Returns the two guard contents.
pub fn guarded_sparse_image(path: &Path, len: u64, guard: u64, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let file = File::create(path).expect("create image");
    file.set_len(len).expect("size image");
    let mut noise = Noise::new(seed);
    let head = noise.bytes(guard as usize);
    let tail = noise.bytes(guard as usize);
    file.write_all_at(&head, 0).expect("write head guard");
    file.write_all_at(&tail, len - guard)
        .expect("write tail guard");
    (head, tail)
}

pub fn read_range(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let file = File::open(path).expect("open image");
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset).expect("read range");
    buf
}

/// Copies `[offset, offset+len)` of `image` into a new file with `dd`, the
/// way a person would look at a partition of an image.
pub fn extract(image: &Path, offset: u64, len: u64, out: &Path) -> PathBuf {
    run_ok(Command::new("dd").args([
        format!("if={}", image.display()),
        format!("of={}", out.display()),
        "bs=1M".to_string(),
        format!("skip={offset}"),
        format!("count={len}"),
        "iflag=skip_bytes,count_bytes".to_string(),
        "conv=sparse".to_string(),
        "status=none".to_string(),
    ]));
    out.to_path_buf()
}

/// Runs a command, panicking with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout_of(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

/// `blkid -p -o export` as key/value pairs.
pub fn blkid(path: &Path) -> Vec<(String, String)> {
    stdout_of(Command::new("blkid").args(["-p", "-o", "export"]).arg(path))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn blkid_value(tags: &[(String, String)], key: &str) -> Option<String> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Asserts two files are byte-identical with `cmp`.
pub fn cmp_files(a: &Path, b: &Path) {
    run_ok(Command::new("cmp").arg(a).arg(b));
}
