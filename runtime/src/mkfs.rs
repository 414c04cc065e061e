//! Filesystem creation with the system's `mkfs.*` tools, confined to one
//! partition or volume.
//!
//! A mkfs tool pointed at a real disk would write wherever it likes and
//! cannot write through a [`crate::ldm::layout::VolumeWriter`] or a dry-run
//! simulation at all. So [`format()`] runs the tool on a sparse temporary file
//! of exactly the filesystem's size, then copies only that file's data
//! extents (`SEEK_DATA`/`SEEK_HOLE`) into the destination. The destination is
//! any `Write + Seek` whose offset 0 is the filesystem's first byte: a
//! partition window over a device, or a volume.
//!
//! Holes in the temp file are bytes the tool never wrote and expects to read
//! as zeros. [`Holes`] says whether the destination already reads zeros
//! there (skip them) or must have zeros written (stale data, and stale
//! filesystem signatures, would otherwise survive: the tool only ever saw the
//! temp file, so its own signature wiping never reached the real range).
//!
//! Output is reproducible: timestamps are pinned and the volume id, ext4
//! UUID/hash seed and NTFS serial derive from [`FormatOptions::seed`], so a
//! resumed run rewrites the same bytes. (NTFS gets a 1970 timestamp from
//! `mkntfs -T`, the only way it offers to fix its clock.)
//!
//! What this module is not: it does not mount, resize, check or populate
//! filesystems (FAT file installs are [`crate::fat`]), and it does not look
//! at what the destination held before.

use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Filesystems rplan can create: the plan's own type.
pub use rplan_compiler::model::Fs;

/// What the destination range holds before formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holes {
    /// It reads back zeros (freshly zeroed, a new sparse image, a hole
    /// punched with `Device::zero_range`): write only the tool's data, and
    /// skip all-zero blocks of it too.
    AlreadyZero,
    /// It may hold anything: write every byte of the range, zeros included.
    WriteZeros,
}

/// Everything but the destination and the filesystem type.
#[derive(Debug, Clone, Copy)]
pub struct FormatOptions<'a> {
    pub label: Option<&'a str>,
    /// Logical sector size of the disk underneath (512, 1024, 2048, 4096).
    pub sector_size: u32,
    /// Seeds the FAT volume id, the ext4 UUID and directory hash seed, and
    /// the NTFS serial number. Same seed, same bytes.
    pub seed: u64,
    /// The partition's first sector on its disk, recorded as "hidden
    /// sectors" in FAT and NTFS boot sectors (Windows' boot code needs it to
    /// find its files). 0 for a filesystem on a volume.
    pub partition_start_sector: u64,
    pub holes: Holes,
    /// Where the sparse temp file goes; `std::env::temp_dir()` when `None`.
    /// It must hold the filesystem's metadata (sparse files required).
    pub temp_dir: Option<&'a Path>,
}

impl Default for FormatOptions<'_> {
    fn default() -> Self {
        FormatOptions {
            label: None,
            sector_size: 512,
            seed: 0,
            partition_start_sector: 0,
            // The safe choice: correct whatever the destination held.
            holes: Holes::WriteZeros,
            temp_dir: None,
        }
    }
}

/// What [`format()`] made and how much it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatReport {
    pub fs: Fs,
    pub len: u64,
    /// The id as `blkid` prints it: `ABCD-1234` (FAT), a UUID (ext4), 16 hex
    /// digits (NTFS).
    pub id: String,
    pub label: Option<String>,
    /// Bytes of the tool's output written to the destination.
    pub data_bytes: u64,
    /// Zero bytes written for holes ([`Holes::WriteZeros`]).
    pub zero_bytes: u64,
    /// Bytes not written because the destination already reads zeros.
    pub skipped_bytes: u64,
    /// [`crate::fingerprint`] of the range as formatted.
    pub fingerprint: String,
}

#[derive(Debug)]
pub enum MkfsError {
    /// The tool is not installed: (tool, how to install it).
    ToolMissing(&'static str, &'static str),
    /// The tool ran and failed; `output` is what it printed.
    ToolFailed {
        tool: &'static str,
        status: String,
        output: String,
    },
    InvalidLabel {
        fs: Fs,
        label: String,
        reason: &'static str,
    },
    InvalidArgument(String),
    /// The tool made a filesystem other systems would misread at this size
    /// (FAT type is decided by cluster count, whatever the tool was told).
    UnsuitableSize {
        fs: Fs,
        len: u64,
        reason: String,
    },
    Io {
        context: String,
        source: io::Error,
    },
}

impl fmt::Display for MkfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MkfsError::ToolMissing(tool, hint) => {
                write!(f, "`{tool}` is not installed (try `{hint}`)")
            }
            MkfsError::ToolFailed {
                tool,
                status,
                output,
            } => {
                write!(f, "`{tool}` failed ({status})")?;
                if !output.is_empty() {
                    write!(f, ": {output}")?;
                }
                Ok(())
            }
            MkfsError::InvalidLabel { fs, label, reason } => {
                write!(f, "label {label:?} cannot be used for {fs}: {reason}")
            }
            MkfsError::InvalidArgument(message) => f.write_str(message),
            MkfsError::UnsuitableSize { fs, len, reason } => {
                write!(f, "{len} bytes is not a usable size for {fs}: {reason}")
            }
            MkfsError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for MkfsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MkfsError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> MkfsError {
    move |source| MkfsError::Io {
        context: context.into(),
        source,
    }
}

/// Timestamp pinned into ext4 (2000-01-01T00:00:00Z); mkfs.fat pins its own
/// with `--invariant`, mkntfs with `-T`.
const EXT4_FIXED_TIME: u64 = 946_684_800;

/// The size of the pieces the copy looks at; all-zero pieces are skipped on
/// an already-zero destination.
const BLOCK: usize = 4096;
const COPY_BUFFER: usize = 1 << 20;

/// Creates filesystem `fs` in bytes `[0, len)` of `dst` and writes nothing
/// outside them.
pub fn format<W: Write + Seek + ?Sized>(
    dst: &mut W,
    len: u64,
    fs: Fs,
    opts: &FormatOptions<'_>,
) -> Result<FormatReport, MkfsError> {
    check_args(len, fs, opts)?;
    let dir = opts
        .temp_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let temp = TempImage::new(&dir)?;
    temp.file.set_len(len).map_err(io_err(format!(
        "cannot size temp file {}",
        temp.path.display()
    )))?;

    let id = run_mkfs(&temp.path, fs, opts)?;
    if matches!(fs, Fs::Fat16 | Fs::Fat32) {
        check_fat_clusters(&temp.file, fs, len)?;
    }

    let mut report = FormatReport {
        fs,
        len,
        id,
        label: opts.label.map(str::to_owned),
        data_bytes: 0,
        zero_bytes: 0,
        skipped_bytes: 0,
        fingerprint: String::new(),
    };
    copy_sparse(&temp.file, dst, len, opts.holes, &mut report).map_err(io_err(format!(
        "copying the new {fs} filesystem into place"
    )))?;
    // What the destination now holds is what the temp file holds: the
    // tool's data, zeros elsewhere. Reading the temp file's few data
    // extents again (page cache) is cheap; reading the range back is not.
    report.fingerprint = crate::fingerprint::of_file(&temp.file, len)
        .map_err(io_err("fingerprinting the new filesystem"))?;
    Ok(report)
}

/// The sparse file mkfs works on. Unnamed where the system allows
/// (`O_TMPFILE`, or created and unlinked at once) and handed to the tool
/// as `/proc/<pid>/fd/<n>`, so a crash (SIGKILL, power cut) leaves no
/// partition-sized file behind; a named temp file, removed on drop, only
/// where /proc is missing.
struct TempImage {
    file: File,
    path: PathBuf,
    _named: Option<tempfile::TempPath>,
}

impl TempImage {
    fn new(dir: &Path) -> Result<TempImage, MkfsError> {
        let context = || format!("cannot create a temp file in {}", dir.display());
        if Path::new("/proc/self/fd").is_dir() {
            let file = tempfile::tempfile_in(dir).map_err(io_err(context()))?;
            let path = PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                file.as_raw_fd()
            ));
            return Ok(TempImage {
                file,
                path,
                _named: None,
            });
        }
        let named = tempfile::Builder::new()
            .prefix("rplan-mkfs-")
            .suffix(".img")
            .tempfile_in(dir)
            .map_err(io_err(context()))?;
        let (file, path) = named.into_parts();
        Ok(TempImage {
            file,
            path: path.to_path_buf(),
            _named: Some(path),
        })
    }
}

fn check_args(len: u64, fs: Fs, opts: &FormatOptions<'_>) -> Result<(), MkfsError> {
    if !matches!(opts.sector_size, 512 | 1024 | 2048 | 4096) {
        return Err(MkfsError::InvalidArgument(format!(
            "sector size {} is not 512, 1024, 2048 or 4096",
            opts.sector_size
        )));
    }
    if len == 0 || len % u64::from(opts.sector_size) != 0 {
        return Err(MkfsError::InvalidArgument(format!(
            "filesystem size {len} is not a positive multiple of the sector size {}",
            opts.sector_size
        )));
    }
    if matches!(fs, Fs::Fat16 | Fs::Fat32) && u32::try_from(opts.partition_start_sector).is_err() {
        return Err(MkfsError::InvalidArgument(format!(
            "partition start sector {} does not fit FAT's 32-bit hidden-sector field",
            opts.partition_start_sector
        )));
    }
    if let Some(label) = opts.label {
        check_label(fs, label)?;
    }
    Ok(())
}

fn check_label(fs: Fs, label: &str) -> Result<(), MkfsError> {
    let bad = |reason| {
        Err(MkfsError::InvalidLabel {
            fs,
            label: label.to_owned(),
            reason,
        })
    };
    if label.is_empty() {
        return bad("it is empty (leave the label out instead)");
    }
    if label.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    match fs {
        Fs::Fat16 | Fs::Fat32 => {
            if !label.is_ascii() {
                return bad("FAT labels are ASCII");
            }
            if label.len() > 11 {
                return bad("FAT labels hold at most 11 characters");
            }
            if label.chars().any(|c| "\"*+,./:;<=>?[\\]|".contains(c)) {
                return bad("FAT labels cannot contain \" * + , . / : ; < = > ? [ \\ ] |");
            }
        }
        Fs::Ext4 => {
            if label.len() > 16 {
                return bad("ext4 labels hold at most 16 bytes");
            }
        }
        Fs::Ntfs => {
            if label.encode_utf16().count() > 128 {
                return bad("NTFS labels hold at most 128 characters");
            }
        }
    }
    Ok(())
}

/// mkfs.fat only warns when asked for FAT32 with too few clusters (or
/// FAT16 with too many/few), but Windows and most firmware pick the FAT
/// type from the cluster count alone (Microsoft's FAT spec), so such a
/// filesystem would be read as the wrong type and corrupted. Refuse it.
fn check_fat_clusters(file: &File, fs: Fs, len: u64) -> Result<(), MkfsError> {
    let mut bs = [0u8; 64];
    file.read_exact_at(&mut bs, 0)
        .map_err(io_err("reading the new boot sector"))?;
    let clusters = crate::fat::BootSector::parse(&bs)
        .and_then(|b| b.clusters())
        .unwrap_or(0);
    let (lo, hi) = match fs {
        Fs::Fat16 => (4085, 65524),
        _ => (65525, 0x0FFF_FFF4),
    };
    if (lo..=hi).contains(&clusters) {
        return Ok(());
    }
    Err(MkfsError::UnsuitableSize {
        fs,
        len,
        reason: format!("it gives {clusters} clusters; {fs} needs {lo} to {hi}"),
    })
}

/// 32 bytes derived from the seed for one purpose, so the ids are unrelated
/// to each other but fixed for a seed.
fn derive(seed: u64, purpose: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"rplan-mkfs\0");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(seed.to_le_bytes());
    h.finalize().into()
}

fn derive_uuid(seed: u64, purpose: &str) -> uuid::Uuid {
    let bytes = derive(seed, purpose);
    let mut first = [0u8; 16];
    first.copy_from_slice(&bytes[..16]);
    uuid::Builder::from_random_bytes(first).into_uuid()
}

/// Whether the tools that make `fs` are installed (for apply's preflight:
/// a missing `mkfs.*` is found before the first write, not mid-ASR).
pub fn tools_present(fs: Fs) -> Result<(), MkfsError> {
    match fs {
        Fs::Fat16 | Fs::Fat32 => tool(FAT_TOOL).map(drop),
        Fs::Ext4 => tool(EXT4_TOOL).map(drop),
        Fs::Ntfs => tool(NTFS_TOOL).and(tool(NTFS_SERIAL_TOOL)).map(drop),
    }
}

/// Runs the tool on the temp file and returns the id it was given.
fn run_mkfs(path: &Path, fs: Fs, opts: &FormatOptions<'_>) -> Result<String, MkfsError> {
    match fs {
        Fs::Fat16 | Fs::Fat32 => {
            let bits = derive(opts.seed, "fat-volume-id");
            let volume_id = u32::from_le_bytes([bits[0], bits[1], bits[2], bits[3]]);
            let mut cmd = tool(FAT_TOOL)?;
            // --invariant pins timestamps and other random bits; -i must come
            // after it or the invariant volume id wins.
            cmd.arg("--invariant")
                .arg("-F")
                .arg(if fs == Fs::Fat16 { "16" } else { "32" })
                .arg("-S")
                .arg(opts.sector_size.to_string())
                .arg("-i")
                .arg(format!("{volume_id:08x}"))
                .arg("-g")
                .arg("255/63")
                .arg("-h")
                .arg(opts.partition_start_sector.to_string());
            if let Some(label) = opts.label {
                cmd.arg("-n").arg(label);
            }
            run(FAT_TOOL, cmd.arg(path))?;
            Ok(format!(
                "{:04X}-{:04X}",
                volume_id >> 16,
                volume_id & 0xffff
            ))
        }
        Fs::Ext4 => {
            let uuid = derive_uuid(opts.seed, "ext4-uuid");
            let hash_seed = derive_uuid(opts.seed, "ext4-hash-seed");
            let mut cmd = tool(EXT4_TOOL)?;
            // nodiscard: discarding would punch holes we then copy as "zero
            // already". Lazy init is set explicitly so the bytes do not
            // depend on the host kernel's features; the destination is all
            // zeros when we are done, which is what lazy init relies on.
            cmd.env("E2FSPROGS_FAKE_TIME", EXT4_FIXED_TIME.to_string())
                .args(["-F", "-q", "-b", "4096", "-U"])
                .arg(uuid.to_string())
                .arg("-E")
                .arg(format!(
                    "nodiscard,lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0,hash_seed={hash_seed}"
                ));
            if let Some(label) = opts.label {
                cmd.arg("-L").arg(label);
            }
            run(EXT4_TOOL, cmd.arg(path))?;
            Ok(uuid.to_string())
        }
        Fs::Ntfs => {
            let bits = derive(opts.seed, "ntfs-serial");
            let serial = u64::from_le_bytes([
                bits[0], bits[1], bits[2], bits[3], bits[4], bits[5], bits[6], bits[7],
            ]);
            let mut cmd = tool(NTFS_TOOL)?;
            // -F: the target is a file; -Q: no zeroing pass (holes are
            // handled by the copy); -T: fixed time, which also fixes the
            // serial number it draws.
            cmd.args(["-F", "-Q", "-q", "-T", "-s"])
                .arg(opts.sector_size.to_string())
                .arg("-p")
                .arg(opts.partition_start_sector.to_string())
                .args(["-H", "255", "-S", "63"]);
            if let Some(label) = opts.label {
                cmd.arg("-L").arg(label);
            }
            run(NTFS_TOOL, cmd.arg(path))?;
            // mkntfs has no serial option; ntfslabel rewrites the serial in
            // both boot sectors and nothing else.
            let mut relabel = tool(NTFS_SERIAL_TOOL)?;
            // --force: the mount check resolves the path, and an unnamed
            // temp file's /proc/<pid>/fd/<n> resolves to a deleted name;
            // the file is ours and mounted nowhere.
            relabel
                .args(["-q", "--force"])
                .arg(format!("--new-serial={serial:016x}"))
                .arg(path);
            run(NTFS_SERIAL_TOOL, &mut relabel)?;
            Ok(format!("{serial:016X}"))
        }
    }
}

const FAT_TOOL: (&str, &str) = ("mkfs.fat", "apt-get install dosfstools");
const EXT4_TOOL: (&str, &str) = ("mkfs.ext4", "apt-get install e2fsprogs");
const NTFS_TOOL: (&str, &str) = ("mkfs.ntfs", "apt-get install ntfs-3g");
const NTFS_SERIAL_TOOL: (&str, &str) = ("ntfslabel", "apt-get install ntfs-3g");

/// Finds a tool on PATH or in the sbin directories, which are not on every
/// user's PATH.
fn tool((name, hint): (&'static str, &'static str)) -> Result<Command, MkfsError> {
    find_tool(name)
        .map(Command::new)
        .ok_or(MkfsError::ToolMissing(name, hint))
}

/// Where a system tool is: on PATH or in the sbin directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if crate::fault::tool_hidden(name) {
        return None;
    }
    let path_dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    path_dirs
        .unwrap_or_default()
        .into_iter()
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn run((name, hint): (&'static str, &'static str), cmd: &mut Command) -> Result<(), MkfsError> {
    let output = cmd.output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => MkfsError::ToolMissing(name, hint),
        _ => MkfsError::Io {
            context: format!("cannot run `{name}`"),
            source: e,
        },
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(stdout.trim());
    }
    Err(MkfsError::ToolFailed {
        tool: name,
        status: output.status.to_string(),
        output: text,
    })
}

/// Copies `[0, len)` of `src` into `dst`, visiting only data extents, and
/// zero-filling holes when `holes` says the destination needs it.
fn copy_sparse<W: Write + Seek + ?Sized>(
    src: &File,
    dst: &mut W,
    len: u64,
    holes: Holes,
    report: &mut FormatReport,
) -> io::Result<()> {
    let mut pos = 0u64;
    let mut buf = vec![0u8; COPY_BUFFER];
    while pos < len {
        let Some((data, end)) = crate::fingerprint::data_extent(src, pos, len)? else {
            fill_zeros(dst, pos, len - pos, holes, report)?;
            break;
        };
        if data > pos {
            fill_zeros(dst, pos, data - pos, holes, report)?;
        }
        let mut at = data;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], at)?;
            write_blocks(dst, at, &buf[..n], holes, report)?;
            at += n as u64;
        }
        pos = end;
    }
    dst.flush()
}

/// Writes `data` at `offset`; on an already-zero destination, all-zero
/// blocks are skipped (mkfs tools write plenty of explicit zeros).
fn write_blocks<W: Write + Seek + ?Sized>(
    dst: &mut W,
    offset: u64,
    data: &[u8],
    holes: Holes,
    report: &mut FormatReport,
) -> io::Result<()> {
    if holes == Holes::WriteZeros {
        dst.seek(SeekFrom::Start(offset))?;
        dst.write_all(data)?;
        report.data_bytes += data.len() as u64;
        return Ok(());
    }
    let mut write = |dst: &mut W, start: usize, end: usize| -> io::Result<()> {
        dst.seek(SeekFrom::Start(offset + start as u64))?;
        dst.write_all(&data[start..end])?;
        report.data_bytes += (end - start) as u64;
        Ok(())
    };
    let mut run_start: Option<usize> = None;
    let mut skipped = 0u64;
    for (k, block) in data.chunks(BLOCK).enumerate() {
        let at = k * BLOCK;
        if crate::restore::is_zero(block) {
            skipped += block.len() as u64;
            if let Some(start) = run_start.take() {
                write(dst, start, at)?;
            }
        } else if run_start.is_none() {
            run_start = Some(at);
        }
    }
    if let Some(start) = run_start {
        write(dst, start, data.len())?;
    }
    report.skipped_bytes += skipped;
    Ok(())
}

fn fill_zeros<W: Write + Seek + ?Sized>(
    dst: &mut W,
    offset: u64,
    len: u64,
    holes: Holes,
    report: &mut FormatReport,
) -> io::Result<()> {
    if holes == Holes::AlreadyZero {
        report.skipped_bytes += len;
        return Ok(());
    }
    let zeros = vec![0u8; COPY_BUFFER.min(len.try_into().unwrap_or(usize::MAX))];
    dst.seek(SeekFrom::Start(offset))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        dst.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    report.zero_bytes += len;
    Ok(())
}
