//! Installing files into a FAT12/16/32 filesystem that lives inside a
//! partition or volume, through the `fatfs` library, without mounting.
//!
//! The filesystem is reached through any `Read + Write + Seek` whose offset 0
//! is the filesystem's boot sector (a partition window over a device, or a
//! [`crate::ldm::layout::VolumeWriter`]), so the bytes written stay inside that
//! range by construction. This is how an ASR restore puts `asr.sif` and
//! friends onto a freshly formatted boot partition.
//!
//! Timestamps are pinned (2000-01-01 00:00:00) so that installing the same
//! file twice, e.g. on `--resume`, leaves identical bytes.
//!
//! What this module is not: it does not create filesystems ([`crate::mkfs`]
//! does), delete files, set attributes or write long paths FAT cannot hold;
//! paths are checked up front and refused with the reason.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use fatfs::{Date, DateTime, FileSystem, FsOptions, Time, TimeProvider};

/// FAT stores file sizes in 32 bits.
const MAX_FILE_SIZE: u64 = u32::MAX as u64;

#[derive(Debug)]
pub enum FatError {
    /// The path cannot name a file on FAT; `reason` says why.
    InvalidPath {
        path: String,
        reason: String,
    },
    /// The range does not hold a FAT filesystem fatfs can open.
    NotFat(io::Error),
    NotFound {
        path: String,
    },
    /// The source is larger than FAT's 4 GiB − 1 file size limit.
    TooLarge {
        path: String,
    },
    Io {
        context: String,
        source: io::Error,
    },
}

impl fmt::Display for FatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatError::InvalidPath { path, reason } => {
                write!(f, "invalid FAT path {path:?}: {reason}")
            }
            FatError::NotFat(e) => write!(f, "not a FAT filesystem: {e}"),
            FatError::NotFound { path } => write!(f, "{path} does not exist in the FAT filesystem"),
            FatError::TooLarge { path } => {
                write!(
                    f,
                    "{path} is larger than FAT's file size limit of 4 GiB - 1 byte"
                )
            }
            FatError::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for FatError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FatError::NotFat(e) | FatError::Io { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// Writes `src` to `to` (an absolute path such as `/asr.sif` or
/// `/i386/system32/x.dll`), creating missing parent directories and
/// replacing an existing file. Returns the number of bytes written.
pub fn install_file<T: Read + Write + Seek>(
    fs_window: T,
    to: &str,
    src: &mut dyn Read,
) -> Result<u64, FatError> {
    let written = install_files(fs_window, &mut [(to, src)])?;
    Ok(written.first().copied().unwrap_or(0))
}

/// [`install_file`] for many files in one pass: the filesystem is opened
/// and closed once (2 000 files one by one meant 2 000 mounts and FAT
/// flushes), then the directories made are repaired once each. Returns
/// the bytes written per file, in order.
pub fn install_files<T: Read + Write + Seek>(
    fs_window: T,
    files: &mut [(&str, &mut dyn Read)],
) -> Result<Vec<u64>, FatError> {
    // Every path is checked before the filesystem is touched.
    for (to, _) in files.iter() {
        if components(to)?.is_empty() {
            return Err(invalid(to, "it names no file"));
        }
    }
    // fatfs gets `&mut` so the window is still ours for the repair below.
    let mut fs_window = fs_window;
    let mut cached =
        BlockCache::new(&mut fs_window).map_err(io_context("reading the filesystem"))?;
    let fs = open(&mut cached)?;
    let mut repairs: Vec<Vec<[u8; 11]>> = Vec::new();
    let mut written = Vec::with_capacity(files.len());
    for (to, src) in files.iter_mut() {
        let (n, short_names) = create_one(&fs, to, &mut **src)?;
        written.push(n);
        // Each directory path once; a prefix of a longer one is repaired
        // on the way to it, but repairing it again is cheap and harmless.
        if !short_names.is_empty() && !repairs.contains(&short_names) {
            repairs.push(short_names);
        }
    }
    // Unmount explicitly: dropping the filesystem would swallow errors from
    // the final FSInfo and dirty-flag writes.
    fs.unmount()
        .map_err(io_context("closing the FAT filesystem"))?;
    cached
        .flush()
        .map_err(io_context("writing the FAT filesystem"))?;
    drop(cached);
    for path in &repairs {
        dot_entries::repair_path(&mut fs_window, path)
            .map_err(io_context("repairing the directories made"))?;
    }
    Ok(written)
}

/// One file into an open filesystem; its size and the short names of its
/// parent directories (for the repair).
fn create_one<T: Read + Write + Seek>(
    fs: &FileSystem<T>,
    to: &str,
    src: &mut dyn Read,
) -> Result<(u64, Vec<[u8; 11]>), FatError> {
    let parts = components(to)?;
    let Some((name, parents)) = parts.split_last() else {
        return Err(invalid(to, "it names no file"));
    };
    let mut short_names = Vec::with_capacity(parents.len());
    let mut dir = fs.root_dir();
    let mut so_far = String::new();
    for part in parents {
        so_far.push('/');
        so_far.push_str(part);
        let child = dir
            .create_dir(part)
            .map_err(io_context(format!("creating directory {so_far}")))?;
        short_names
            .push(short_name_of(&dir, part).map_err(io_context(format!("looking up {so_far}")))?);
        dir = child;
    }
    let mut file = dir
        .create_file(name)
        .map_err(io_context(format!("creating {to}")))?;
    // create_file opens an existing file as is: cut it to nothing first.
    file.truncate()
        .map_err(io_context(format!("truncating {to}")))?;
    let written = copy_limited(src, &mut file, to)?;
    file.flush().map_err(io_context(format!("writing {to}")))?;
    Ok((written, short_names))
}

/// The 8.3 name fatfs gave directory `name` in `parent`, in the 11-byte
/// on-disk form, so the raw repair can find it.
fn short_name_of<T: Read + Write + Seek>(
    parent: &fatfs::Dir<'_, T>,
    name: &str,
) -> io::Result<[u8; 11]> {
    let wanted = name.to_uppercase();
    for entry in parent.iter() {
        let entry = entry?;
        if entry.is_dir()
            && (entry.file_name().to_uppercase() == wanted
                || entry.short_file_name().to_uppercase() == wanted)
        {
            return Ok(dot_entries::raw_short_name(
                entry.short_file_name_as_bytes(),
            ));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "directory vanished after creating it",
    ))
}

/// Copies the file at `path` into `sink`; returns its size. For verifying
/// what [`install_file`] wrote.
pub fn read_file<T: Read + Write + Seek>(
    fs_window: T,
    path: &str,
    sink: &mut dyn Write,
) -> Result<u64, FatError> {
    let rel = components(path)?.join("/");
    if rel.is_empty() {
        return Err(invalid(path, "it names no file"));
    }
    let fs = open(fs_window)?;
    let copied = {
        let mut file = fs.root_dir().open_file(&rel).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => FatError::NotFound {
                path: path.to_owned(),
            },
            _ => FatError::Io {
                context: format!("opening {path}"),
                source: e,
            },
        })?;
        io::copy(&mut file, sink).map_err(io_context(format!("reading {path}")))?
    };
    fs.unmount()
        .map_err(io_context("closing the FAT filesystem"))?;
    Ok(copied)
}

/// [`read_file`] for many files in one pass (one mount): each file's
/// bytes go to its own sink.
pub fn read_files<T: Read + Write + Seek>(
    fs_window: T,
    files: &mut [(&str, &mut dyn Write)],
) -> Result<Vec<u64>, FatError> {
    let mut fs_window = fs_window;
    let mut cached =
        BlockCache::new(&mut fs_window).map_err(io_context("reading the filesystem"))?;
    let fs = open(&mut cached)?;
    let mut sizes = Vec::with_capacity(files.len());
    for (path, sink) in files.iter_mut() {
        let rel = components(path)?.join("/");
        if rel.is_empty() {
            return Err(invalid(path, "it names no file"));
        }
        let mut file = fs.root_dir().open_file(&rel).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => FatError::NotFound {
                path: path.to_string(),
            },
            _ => FatError::Io {
                context: format!("opening {path}"),
                source: e,
            },
        })?;
        sizes.push(io::copy(&mut file, sink).map_err(io_context(format!("reading {path}")))?);
    }
    fs.unmount()
        .map_err(io_context("closing the FAT filesystem"))?;
    Ok(sizes)
}

/// A write-back cache of 4 KiB blocks between fatfs and the window. fatfs
/// 0.3 reads and writes directory entries and FAT entries a few bytes at
/// a time, each a system call on the device; through the cache a pass of
/// thousands of files touches each metadata block once. Bounded: past
/// [`CACHE_BLOCKS`] blocks, dirty ones are written out and all dropped.
/// Dirty blocks reach the window only on [`Write::flush`] (fatfs flushes
/// on unmount; the caller flushes after).
struct BlockCache<T> {
    inner: T,
    len: u64,
    pos: u64,
    blocks: std::collections::HashMap<u64, (Vec<u8>, bool)>,
}

const CACHE_BLOCK: u64 = 4096;
const CACHE_BLOCKS: usize = 8192; // 32 MiB

impl<T: Read + Write + Seek> BlockCache<T> {
    fn new(mut inner: T) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        Ok(BlockCache {
            inner,
            len,
            pos: 0,
            blocks: std::collections::HashMap::new(),
        })
    }

    /// Block `n`, read from the window on first use.
    fn block(&mut self, n: u64) -> io::Result<&mut (Vec<u8>, bool)> {
        if !self.blocks.contains_key(&n) {
            if self.blocks.len() >= CACHE_BLOCKS {
                self.write_back()?;
                self.blocks.clear();
            }
            let start = n * CACHE_BLOCK;
            let size = (self.len - start).min(CACHE_BLOCK) as usize;
            let mut buf = vec![0_u8; size];
            self.inner.seek(SeekFrom::Start(start))?;
            self.inner.read_exact(&mut buf)?;
            self.blocks.insert(n, (buf, false));
        }
        self.blocks
            .get_mut(&n)
            .ok_or_else(|| io::Error::other("block cache lost a block"))
    }

    fn write_back(&mut self) -> io::Result<()> {
        let mut dirty: Vec<u64> = self
            .blocks
            .iter()
            .filter(|(_, (_, d))| *d)
            .map(|(n, _)| *n)
            .collect();
        dirty.sort_unstable();
        for n in dirty {
            if let Some((buf, d)) = self.blocks.get_mut(&n) {
                self.inner.seek(SeekFrom::Start(n * CACHE_BLOCK))?;
                self.inner.write_all(buf)?;
                *d = false;
            }
        }
        Ok(())
    }
}

impl<T: Read + Write + Seek> Read for BlockCache<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let n = self.pos / CACHE_BLOCK;
        let at = (self.pos % CACHE_BLOCK) as usize;
        let block = &self.block(n)?.0;
        let take = (block.len() - at).min(buf.len());
        buf[..take].copy_from_slice(&block[at..at + take]);
        self.pos += take as u64;
        Ok(take)
    }
}

impl<T: Read + Write + Seek> Write for BlockCache<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the filesystem",
            ));
        }
        let n = self.pos / CACHE_BLOCK;
        let at = (self.pos % CACHE_BLOCK) as usize;
        let size = (self.len - n * CACHE_BLOCK).min(CACHE_BLOCK) as usize;
        if at == 0 && buf.len() >= size && !self.blocks.contains_key(&n) {
            // A whole block of file data: nothing to read first.
            if self.blocks.len() >= CACHE_BLOCKS {
                self.write_back()?;
                self.blocks.clear();
            }
            self.blocks.insert(n, (buf[..size].to_vec(), true));
            self.pos += size as u64;
            return Ok(size);
        }
        let entry = self.block(n)?;
        let take = (entry.0.len() - at).min(buf.len());
        entry.0[at..at + take].copy_from_slice(&buf[..take]);
        entry.1 = true;
        self.pos += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_back()?;
        self.inner.flush()
    }
}

impl<T: Read + Write + Seek> Seek for BlockCache<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

fn open<T: Read + Write + Seek>(mut fs_window: T) -> Result<FileSystem<T>, FatError> {
    // fatfs expects the stream at the boot sector.
    fs_window
        .seek(SeekFrom::Start(0))
        .map_err(io_context("seeking to the boot sector"))?;
    let options = FsOptions::new()
        .update_accessed_date(false)
        .time_provider(&FIXED_TIME);
    FileSystem::new(fs_window, options).map_err(FatError::NotFat)
}

fn copy_limited(src: &mut dyn Read, dst: &mut dyn Write, path: &str) -> Result<u64, FatError> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(FatError::Io {
                    context: format!("reading the source of {path}"),
                    source: e,
                })
            }
        };
        total += n as u64;
        if total > MAX_FILE_SIZE {
            return Err(FatError::TooLarge {
                path: path.to_owned(),
            });
        }
        dst.write_all(&buf[..n])
            .map_err(io_context(format!("writing {path}")))?;
    }
}

/// Splits an absolute path into names FAT can hold, or says why not.
fn components(path: &str) -> Result<Vec<&str>, FatError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(invalid(path, "it must be absolute (start with `/`)"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|name| {
            check_name(name)
                .map(|()| name)
                .map_err(|reason| invalid(path, reason))
        })
        .collect()
}

/// A long file name FAT (and fatfs) accepts.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it has an empty component (`//` or a trailing `/`)".into());
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not allowed".into());
    }
    if name.encode_utf16().count() > 255 {
        return Err(format!("`{name}` is longer than FAT's 255 characters"));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        // Windows strips these, so such a file could not be opened there.
        return Err(format!("`{name}` ends with a dot or space"));
    }
    // The characters fatfs writes into long names: FAT's own rules
    // (no control characters, no " * / : < > ? \ |) minus what needs UTF-16
    // surrogate pairs.
    if let Some(c) = name.chars().find(|&c| !valid_char(c)) {
        return Err(format!(
            "`{name}` contains {c:?}, which FAT names cannot hold"
        ));
    }
    Ok(())
}

fn valid_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || ('\u{80}'..='\u{FFFF}').contains(&c)
        || "$%'-_@~`!(){}. +,;=[]^#&".contains(c)
}

fn invalid(path: &str, reason: impl Into<String>) -> FatError {
    FatError::InvalidPath {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io_context(context: impl Into<String>) -> impl FnOnce(io::Error) -> FatError {
    move |source| FatError::Io {
        context: context.into(),
        source,
    }
}

/// Pins every timestamp fatfs writes.
#[derive(Debug)]
struct FixedTime;

static FIXED_TIME: FixedTime = FixedTime;

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> Date {
        Date {
            year: 2000,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> DateTime {
        DateTime {
            date: self.get_current_date(),
            time: Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

/// The fields of a FAT boot sector (BPB) that locate its areas.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BootSector {
    pub bytes_per_sector: u64,
    pub sectors_per_cluster: u64,
    pub reserved: u64,
    pub fats: u64,
    pub root_entries: u64,
    pub total_sectors: u64,
    pub fat_sectors: u64,
    /// FAT32: the root directory's first cluster.
    pub root_cluster: u32,
}

impl BootSector {
    /// Parse the first 48 bytes of a boot sector (`bs` must hold them).
    pub(crate) fn parse(bs: &[u8]) -> Option<BootSector> {
        let b = bs.get(..48)?;
        let u16_at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let either = |small: u64, large: u32| if small != 0 { small } else { u64::from(large) };
        Some(BootSector {
            bytes_per_sector: u16_at(11),
            sectors_per_cluster: u64::from(b[13]),
            reserved: u16_at(14),
            fats: u64::from(b[16]),
            root_entries: u16_at(17),
            total_sectors: either(u16_at(19), u32_at(32)),
            fat_sectors: either(u16_at(22), u32_at(36)),
            root_cluster: u32_at(44),
        })
    }

    /// Sectors of the FAT12/16 fixed root directory (0 on FAT32).
    pub(crate) fn root_sectors(&self) -> u64 {
        (self.root_entries * 32).div_ceil(self.bytes_per_sector.max(1))
    }

    /// The first sector of the data area.
    pub(crate) fn first_data_sector(&self) -> u64 {
        self.reserved + self.fats * self.fat_sectors + self.root_sectors()
    }

    /// Data clusters, which alone decide FAT12/16/32 (Microsoft's spec);
    /// `None` when the data area would start past the end.
    pub(crate) fn clusters(&self) -> Option<u64> {
        let data = self.total_sectors.checked_sub(self.first_data_sector())?;
        Some(data / self.sectors_per_cluster.max(1))
    }
}

/// fatfs 0.3 (the newest release) writes a long-name entry in front of a
/// new directory's `.` and `..` entries and points `..` at the FAT32 root's
/// cluster instead of 0 (rafalh/rust-fatfs#117). fsck.fat and chkdsk treat
/// that as corruption, so after fatfs is done the directories on the
/// installed path are repaired with raw reads and writes. The repair only
/// touches a directory whose first four slots have exactly that shape, so
/// it is idempotent and leaves directories made by anyone else alone.
mod dot_entries {
    use std::io::{self, Read, Seek, SeekFrom, Write};

    const SLOT: usize = 32;
    const ATTR: usize = 11;
    const ATTR_LFN: u8 = 0x0F;
    const ATTR_DIR: u8 = 0x10;
    const ATTR_VOLUME: u8 = 0x08;
    const DELETED: u8 = 0xE5;
    const DOT: &[u8; 11] = b".          ";
    const DOTDOT: &[u8; 11] = b"..         ";

    /// `SUB` or `SECOND~1.BIN` as the space-padded 11 bytes on disk.
    pub(super) fn raw_short_name(display: &[u8]) -> [u8; 11] {
        let mut raw = [b' '; 11];
        let (base, ext) = match display.iter().position(|&b| b == b'.') {
            Some(dot) => (&display[..dot], &display[dot + 1..]),
            None => (display, &display[..0]),
        };
        for (dst, src) in raw[..8].iter_mut().zip(base) {
            *dst = *src;
        }
        for (dst, src) in raw[8..].iter_mut().zip(ext) {
            *dst = *src;
        }
        raw
    }

    fn invalid(what: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("FAT structure is damaged: {what}"),
        )
    }

    /// What of the boot sector the walk needs.
    struct Geometry {
        bytes_per_sector: u64,
        sectors_per_cluster: u64,
        fat_start: u64,
        /// FAT12/16 fixed root directory: (offset, bytes). None on FAT32.
        fixed_root: Option<(u64, u64)>,
        root_cluster: u32,
        data_start: u64,
        clusters: u32,
        fat_bits: u8,
    }

    impl Geometry {
        fn read<T: Read + Seek>(disk: &mut T) -> io::Result<Geometry> {
            let mut bs = [0u8; 512];
            disk.seek(SeekFrom::Start(0))?;
            disk.read_exact(&mut bs)?;
            let b = super::BootSector::parse(&bs).ok_or_else(|| invalid("short boot sector"))?;
            let (bytes_per_sector, sectors_per_cluster) =
                (b.bytes_per_sector, b.sectors_per_cluster);
            if bytes_per_sector == 0 || sectors_per_cluster == 0 {
                return Err(invalid("zero sector or cluster size"));
            }
            let first_data = b.first_data_sector();
            let clusters = b.clusters().ok_or_else(|| invalid("no data area"))?;
            // The same thresholds fatfs (and Microsoft's spec) use.
            let fat_bits = match clusters {
                0..4085 => 12,
                4085..65525 => 16,
                _ => 32,
            };
            let fixed_root = (fat_bits != 32).then(|| {
                (
                    (b.reserved + b.fats * b.fat_sectors) * bytes_per_sector,
                    b.root_entries * SLOT as u64,
                )
            });
            Ok(Geometry {
                bytes_per_sector,
                sectors_per_cluster,
                fat_start: b.reserved * bytes_per_sector,
                fixed_root,
                root_cluster: b.root_cluster,
                data_start: first_data * bytes_per_sector,
                clusters: u32::try_from(clusters).map_err(|_| invalid("too many clusters"))?,
                fat_bits,
            })
        }

        fn cluster_bytes(&self) -> u64 {
            self.bytes_per_sector * self.sectors_per_cluster
        }

        fn cluster_offset(&self, cluster: u32) -> io::Result<u64> {
            if cluster < 2 || cluster - 2 >= self.clusters {
                return Err(invalid("cluster number out of range"));
            }
            Ok(self.data_start + u64::from(cluster - 2) * self.cluster_bytes())
        }

        /// The next cluster of a chain, or None at its end.
        fn next<T: Read + Seek>(&self, disk: &mut T, cluster: u32) -> io::Result<Option<u32>> {
            let c = u64::from(cluster);
            let (offset, width) = match self.fat_bits {
                12 => (c + c / 2, 2),
                16 => (c * 2, 2),
                _ => (c * 4, 4),
            };
            let mut raw = [0u8; 4];
            disk.seek(SeekFrom::Start(self.fat_start + offset))?;
            disk.read_exact(&mut raw[..width])?;
            let value = u32::from_le_bytes(raw);
            let (value, end) = match self.fat_bits {
                12 => (
                    if cluster % 2 == 1 {
                        value >> 4
                    } else {
                        value & 0xFFF
                    },
                    0xFF8,
                ),
                16 => (value, 0xFFF8),
                _ => (value & 0x0FFF_FFFF, 0x0FFF_FFF8),
            };
            Ok((value < end).then_some(value))
        }

        /// Byte ranges holding a directory: the fixed root, or a chain.
        fn dir_extents<T: Read + Seek>(
            &self,
            disk: &mut T,
            first: Option<u32>,
        ) -> io::Result<Vec<(u64, u64)>> {
            let mut cluster = match (first, self.fixed_root) {
                (None, Some(root)) => return Ok(vec![root]),
                (None, None) => self.root_cluster,
                (Some(c), _) => c,
            };
            let mut extents = Vec::new();
            loop {
                extents.push((self.cluster_offset(cluster)?, self.cluster_bytes()));
                if extents.len() > self.clusters as usize {
                    return Err(invalid("cluster chain loops"));
                }
                match self.next(disk, cluster)? {
                    Some(next) => cluster = next,
                    None => return Ok(extents),
                }
            }
        }
    }

    /// Finds subdirectory `name` in the directory starting at `dir` (None:
    /// the root) and returns its first cluster.
    fn find_subdir<T: Read + Seek>(
        disk: &mut T,
        geo: &Geometry,
        dir: Option<u32>,
        name: &[u8; 11],
    ) -> io::Result<u32> {
        let mut slot = [0u8; SLOT];
        for (start, len) in geo.dir_extents(disk, dir)? {
            disk.seek(SeekFrom::Start(start))?;
            for _ in 0..len / SLOT as u64 {
                disk.read_exact(&mut slot)?;
                if slot[0] == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        "directory entry not found",
                    ));
                }
                let attr = slot[ATTR];
                if slot[0] == DELETED
                    || attr == ATTR_LFN
                    || attr & ATTR_VOLUME != 0
                    || attr & ATTR_DIR == 0
                {
                    continue;
                }
                if &slot[..11] == name {
                    let hi = if geo.fat_bits == 32 {
                        u32::from(u16::from_le_bytes([slot[20], slot[21]]))
                    } else {
                        0
                    };
                    return Ok(hi << 16 | u32::from(u16::from_le_bytes([slot[26], slot[27]])));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "directory entry not found",
        ))
    }

    /// Repairs every directory along `path` (short names from the root).
    pub(super) fn repair_path<T: Read + Write + Seek>(
        disk: &mut T,
        path: &[[u8; 11]],
    ) -> io::Result<()> {
        if path.is_empty() {
            return Ok(());
        }
        let geo = Geometry::read(disk)?;
        let mut parent: Option<u32> = None;
        for name in path {
            let cluster = find_subdir(disk, &geo, parent, name)?;
            repair_dir(disk, &geo, cluster, parent.is_none())?;
            parent = Some(cluster);
        }
        disk.flush()
    }

    fn repair_dir<T: Read + Write + Seek>(
        disk: &mut T,
        geo: &Geometry,
        cluster: u32,
        parent_is_root: bool,
    ) -> io::Result<()> {
        let offset = geo.cluster_offset(cluster)?;
        let mut slots = [0u8; 4 * SLOT];
        disk.seek(SeekFrom::Start(offset))?;
        disk.read_exact(&mut slots)?;
        let name = |i: usize| &slots[i * SLOT..i * SLOT + 11];
        let attr = |i: usize| slots[i * SLOT + ATTR];
        let broken =
            attr(0) == ATTR_LFN && name(1) == DOT && attr(2) == ATTR_LFN && name(3) == DOTDOT;
        if !broken {
            return Ok(());
        }
        let mut fixed = [0u8; 4 * SLOT];
        fixed[..SLOT].copy_from_slice(&slots[SLOT..2 * SLOT]);
        fixed[SLOT..2 * SLOT].copy_from_slice(&slots[3 * SLOT..]);
        if parent_is_root {
            // `..` of a directory in the root names cluster 0, FAT32 too.
            for b in [20, 21, 26, 27] {
                fixed[SLOT + b] = 0;
            }
        }
        fixed[2 * SLOT] = DELETED;
        fixed[3 * SLOT] = DELETED;
        disk.seek(SeekFrom::Start(offset))?;
        disk.write_all(&fixed)
    }
}
