//! Streamed image restore: copy an artifact (raw or zstd) into a byte range
//! of a device, hashing while streaming and verifying size and SHA-256.
//!
//! For: the hot path of an ASR restore. Memory stays small and fixed (four
//! 4 MiB buffers plus the zstd window: the one the file was compressed
//! with, 8 MiB at the usual levels, accepted up to 2 GiB for `--long=31`,
//! like `check`) whatever the image size. Three stages run at once, passing buffers along without
//! copying them: the calling thread reads (and decompresses), a second
//! thread hashes, a third writes and starts writeback every
//! [`WRITEBACK_EVERY`] bytes without waiting for it, so that the device's
//! writeback overlaps the reading and hashing instead of all landing in one
//! long final sync, and no mid-stream sync stalls the pipeline.
//!
//! Not for: deciding where an image goes or whether the target may be
//! written (the executor does that), or rolling back: a failed verification
//! leaves the written bytes in place and reports an error, and the step is
//! re-run.

use crate::target::Device;
use rplan_compiler::analyze::artifacts::fill;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes read, hashed and written per step. Large enough that syscalls and
/// channel hand-offs cost nothing, small enough for the memory budget.
const BUF_SIZE: usize = 4 << 20;
/// One buffer per stage (read, hash, write) and one in flight.
const BUFFERS: usize = 4;
/// The writer starts writeback after this many bytes written
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait): the
/// disk is kept busy while later buffers are read and hashed, dirty memory
/// stays bounded, and the one `fdatasync` at the end finds little to do.
/// An `fdatasync` here instead (what rplan did before) stalls the whole
/// pipeline until the disk has caught up (BENCHMARKS.md).
pub const WRITEBACK_EVERY: u64 = 16 << 20;

/// How the writer flushes while streaming. `RPLAN_RESTORE_SYNC` picks one
/// for benchmarks (benches/restore.sh compares them); the default is
/// [`SyncMode::Writeback`]. Every mode ends with one `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncMode {
    /// Start writeback every [`WRITEBACK_EVERY`] bytes, never wait.
    Writeback,
    /// `fdatasync` every [`WRITEBACK_EVERY`] bytes (the old way).
    Fdatasync,
    /// Nothing until the final sync.
    Final,
}

impl SyncMode {
    fn from_env() -> SyncMode {
        match std::env::var("RPLAN_RESTORE_SYNC").as_deref() {
            Ok("fdatasync") => SyncMode::Fdatasync,
            Ok("final") => SyncMode::Final,
            _ => SyncMode::Writeback,
        }
    }
}
/// Granularity of zero skipping. Aligned to the artifact's own offsets,
/// which are aligned on the device when the partition is (1 MiB usually).
const ZERO_BLOCK: usize = 64 << 10;

/// What the artifact must turn out to be, from the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Decompressed size in bytes, if the plan states it.
    pub size: Option<u64>,
    /// SHA-256 of the decompressed bytes.
    pub sha256: [u8; 32],
}

/// How to restore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    /// The target range already reads back as zeros (a fresh sparse image,
    /// or after `Device::zero_range`), so all-zero blocks need not be
    /// written. Wrong if set on a range holding old data: old bytes would
    /// show through where the image has zeros.
    pub skip_zeros: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Bytes of (decompressed) image read.
    pub bytes_in: u64,
    /// Bytes written to the device.
    pub bytes_written: u64,
    /// Bytes of zeros not written because of `skip_zeros`.
    pub bytes_skipped_zero: u64,
}

/// Why a restore failed.
#[derive(Debug)]
pub enum RestoreError {
    /// `[start, start+capacity)` is not inside the device.
    OutsideDevice {
        start: u64,
        capacity: u64,
        device_len: u64,
    },
    /// The image is larger than the range; nothing past the range was
    /// written. `size` is the stated size, or how much had been read when
    /// the capacity was exceeded.
    TooLarge { capacity: u64, size: u64 },
    /// The image's size differs from the plan's. When it is longer,
    /// `actual` is how much had been read when reading stopped.
    SizeMismatch { expected: u64, actual: u64 },
    /// The bytes restored are not the bytes backed up.
    Sha256Mismatch {
        expected: [u8; 32],
        actual: [u8; 32],
    },
    /// Reading or decompressing the artifact failed.
    Read(io::Error),
    /// Writing or syncing the device failed.
    Write(io::Error),
}

/// Lowercase hex, as sha256sum prints it.
pub use rplan_compiler::analyze::artifacts::hex;

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::OutsideDevice {
                start,
                capacity,
                device_len,
            } => write!(
                f,
                "restore range {start}+{capacity} lies outside the device ({device_len} bytes)"
            ),
            RestoreError::TooLarge { capacity, size } => write!(
                f,
                "image of at least {size} bytes does not fit the {capacity} bytes it goes to"
            ),
            RestoreError::SizeMismatch { expected, actual } => {
                write!(f, "image is {actual} bytes, the plan says {expected}")
            }
            RestoreError::Sha256Mismatch { expected, actual } => write!(
                f,
                "sha256 mismatch: expected {}, restored bytes hash to {}",
                hex(expected),
                hex(actual)
            ),
            RestoreError::Read(e) => write!(f, "reading the image: {e}"),
            RestoreError::Write(e) => write!(f, "writing the target: {e}"),
        }
    }
}

impl std::error::Error for RestoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RestoreError::Read(e) | RestoreError::Write(e) => Some(e),
            _ => None,
        }
    }
}

/// A filled buffer on its way through the hasher to the writer.
struct Filled {
    buf: Vec<u8>,
    len: usize,
    /// Offset of `buf[0]` in the image.
    offset: u64,
}

/// Stream `src` into `[start, start+capacity)` of `dev`, verify it against
/// `expected`, then sync. `progress` is called with the bytes read so far.
///
/// Nothing is ever written past `start+capacity` (nor past the expected
/// size): an image that turns out too large fails before its first byte
/// beyond the range would be written.
pub fn restore(
    dev: &mut dyn Device,
    start: u64,
    capacity: u64,
    src: &mut dyn Read,
    expected: &Expected,
    opts: &RestoreOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<RestoreStats, RestoreError> {
    let device_len = dev.len();
    if start
        .checked_add(capacity)
        .is_none_or(|end| end > device_len)
    {
        return Err(RestoreError::OutsideDevice {
            start,
            capacity,
            device_len,
        });
    }
    if let Some(size) = expected.size {
        if size > capacity {
            return Err(RestoreError::TooLarge { capacity, size });
        }
    }

    let (read_tx, read_rx) = sync_channel::<Filled>(BUFFERS);
    let (hashed_tx, hashed_rx) = sync_channel::<Filled>(BUFFERS);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        // Cannot fail: the channel has room for all of them.
        free_tx
            .send(vec![0u8; BUF_SIZE])
            .map_err(|_| RestoreError::Write(io::Error::other("buffer pool closed")))?;
    }
    let skip_zeros = opts.skip_zeros;

    // Lend the device to the writer thread for the scope only; it is needed
    // again afterwards to sync.
    let target: &mut dyn Device = &mut *dev;
    let (read_result, digest, write_result) = std::thread::scope(|s| {
        let hasher = s.spawn(move || hash_loop(read_rx, hashed_tx));
        let fault = crate::fault::context();
        let writer = s.spawn(move || {
            crate::fault::adopt(fault);
            write_loop(target, start, skip_zeros, hashed_rx, free_tx)
        });
        let read_result = read_loop(src, expected, capacity, read_tx, free_rx, progress);
        let digest = hasher
            .join()
            .map_err(|_| RestoreError::Read(io::Error::other("the hashing thread panicked")));
        let write_result = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the writer thread panicked")));
        (read_result, digest, write_result)
    });
    // A write error explains a read loop that stopped early, so it wins.
    let (bytes_written, bytes_skipped_zero) = write_result.map_err(RestoreError::Write)?;
    let bytes_in = read_result?;
    let actual = digest?;

    if let Some(size) = expected.size {
        if bytes_in != size {
            return Err(RestoreError::SizeMismatch {
                expected: size,
                actual: bytes_in,
            });
        }
    }
    if actual != expected.sha256 {
        return Err(RestoreError::Sha256Mismatch {
            expected: expected.sha256,
            actual,
        });
    }
    dev.sync().map_err(RestoreError::Write)?;
    Ok(RestoreStats {
        bytes_in,
        bytes_written,
        bytes_skipped_zero,
    })
}

/// Read, check bounds, hand over. Returns the bytes read. Takes `full_tx`
/// by value so that returning (also on error) closes the channel and lets
/// the other stages finish.
fn read_loop(
    src: &mut dyn Read,
    expected: &Expected,
    capacity: u64,
    full_tx: SyncSender<Filled>,
    free_rx: Receiver<Vec<u8>>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, RestoreError> {
    let mut bytes_in: u64 = 0;
    // The writer hands buffers back; if it died, the loop ends and its
    // error is reported by the caller.
    while let Ok(mut buf) = free_rx.recv() {
        let len = fill(src, &mut buf).map_err(RestoreError::Read)?;
        if len == 0 {
            break;
        }
        let total = bytes_in + len as u64;
        if let Some(size) = expected.size {
            if total > size {
                return Err(RestoreError::SizeMismatch {
                    expected: size,
                    actual: total,
                });
            }
        }
        if total > capacity {
            return Err(RestoreError::TooLarge {
                capacity,
                size: total,
            });
        }
        let offset = bytes_in;
        bytes_in = total;
        if full_tx.send(Filled { buf, len, offset }).is_err() {
            break;
        }
        progress(bytes_in);
        if len < BUF_SIZE {
            // `fill` only comes back short at the end of the stream.
            break;
        }
    }
    Ok(bytes_in)
}

/// Hash each buffer in stream order and pass it on. If the writer is gone,
/// stop: the digest no longer matters, the write error does.
fn hash_loop(rx: Receiver<Filled>, tx: SyncSender<Filled>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for filled in rx {
        hasher.update(&filled.buf[..filled.len]);
        if tx.send(filled).is_err() {
            break;
        }
    }
    hasher.finalize().into()
}

/// Write each filled buffer at its place, skipping zero blocks if allowed,
/// starting writeback every [`WRITEBACK_EVERY`] bytes. Returns (bytes written, bytes
/// skipped).
fn write_loop(
    dev: &mut dyn Device,
    start: u64,
    skip_zeros: bool,
    full_rx: Receiver<Filled>,
    free_tx: SyncSender<Vec<u8>>,
) -> io::Result<(u64, u64)> {
    let mut written = 0u64;
    let mut skipped = 0u64;
    let mut synced = 0u64;
    // Image offset up to which writeback has been started.
    let mut queued = 0u64;
    let mode = SyncMode::from_env();
    for Filled { buf, len, offset } in full_rx {
        let data = &buf[..len];
        let at = start + offset;
        if !skip_zeros {
            dev.write_at(data, at)?;
            written += len as u64;
        } else {
            // Coalesce consecutive non-zero blocks into one write.
            let mut run: Option<usize> = None;
            for (i, block) in data.chunks(ZERO_BLOCK).enumerate() {
                let b = i * ZERO_BLOCK;
                if is_zero(block) {
                    if let Some(r) = run.take() {
                        dev.write_at(&data[r..b], at + r as u64)?;
                        written += (b - r) as u64;
                    }
                    skipped += block.len() as u64;
                } else if run.is_none() {
                    run = Some(b);
                }
            }
            if let Some(r) = run {
                dev.write_at(&data[r..], at + r as u64)?;
                written += (len - r) as u64;
            }
        }
        if written - synced >= WRITEBACK_EVERY {
            // Start writeback of what this stretch wrote, and go on.
            let end = offset + len as u64;
            match mode {
                SyncMode::Writeback => dev.start_writeback(start + queued, end - queued),
                SyncMode::Fdatasync => dev.sync()?,
                SyncMode::Final => {}
            }
            synced = written;
            queued = end;
        }
        // The reader may already have finished; then the buffer just drops.
        let _ = free_tx.send(buf);
    }
    Ok((written, skipped))
}

/// Whether `block` is all zeros. OR-folds page by page: the fold
/// vectorises, and data blocks usually fail on their first page. Shared by
/// every zero-skipping pass (restore, mkfs output, fingerprints).
pub(crate) fn is_zero(block: &[u8]) -> bool {
    block
        .chunks(4096)
        .all(|page| page.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// How an artifact is stored: the plan's own type.
pub use rplan_compiler::model::ArtifactFormat;

/// Open an artifact for streaming its (decompressed) bytes.
pub fn open_artifact(
    path: impl AsRef<Path>,
    format: ArtifactFormat,
) -> io::Result<Box<dyn Read + Send>> {
    // The tests' fault seam may make the file's reads fail part way.
    open_artifact_file(path.as_ref(), format).map(crate::fault::artifact_reader)
}

fn open_artifact_file(path: &Path, format: ArtifactFormat) -> io::Result<Box<dyn Read + Send>> {
    // O_NONBLOCK: opening a FIFO must not block (it is refused below).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(
            "not a regular file (a device, FIFO or directory)",
        ));
    }
    match format {
        // No BufReader: restore reads in 4 MiB pieces already, and a
        // buffer in between would only add a copy.
        ArtifactFormat::Raw | ArtifactFormat::File => Ok(Box::new(file)),
        ArtifactFormat::RawZstd => {
            // The very decoder `check` hashed the artifact with.
            let decoder = rplan_compiler::analyze::artifacts::zstd_decoder(file)?;
            Ok(Box::new(ZstdReader {
                inner: decoder,
                path: path.to_path_buf(),
            }))
        }
        // Expanded into the partition's bytes (free space as zeros), so
        // the restore below treats it exactly like raw-zstd.
        ArtifactFormat::PartcloneZstd => {
            let decoder = rplan_compiler::analyze::artifacts::zstd_decoder(file)?;
            let zstd = ZstdReader {
                inner: decoder,
                path: path.to_path_buf(),
            };
            Ok(Box::new(rplan_compiler::partclone::Expand::new(zstd)?))
        }
    }
}

/// Adds the artifact's path, and a hint for the window limit, to zstd's
/// terse errors.
struct ZstdReader<R> {
    inner: R,
    path: PathBuf,
}

impl<R: Read> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let hint = if e.to_string().contains("too much memory") {
                " (compressed with a window over 2 GiB; recompress with `zstd --long=31` or less)"
            } else {
                ""
            };
            io::Error::new(
                e.kind(),
                format!("{}: zstd: {e}{hint}", self.path.display()),
            )
        })
    }
}

/// SHA-256 and length of everything `r` yields.
pub fn sha256_file_stream(r: &mut dyn Read) -> io::Result<([u8; 32], u64)> {
    sha256_stream(r, &mut |_| {})
}

/// [`sha256_file_stream`], telling `progress` the bytes hashed so far after
/// each read.
pub fn sha256_stream(
    r: &mut dyn Read,
    progress: &mut dyn FnMut(u64),
) -> io::Result<([u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
                progress(total);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((hasher.finalize().into(), total))
}
