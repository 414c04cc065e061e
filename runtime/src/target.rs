//! Targets: the disks rplan writes to, image files or block devices.
//!
//! Every write in rplan goes through [`Device`], so the executor, dry-run's
//! simulated device and tests all share one narrow surface.
//!
//! This module is for opening a *named* target safely (exclusive access,
//! "is it mounted or in use?"), and for confining code to a byte window of a
//! device ([`Region`]) so that a partition writer cannot touch anything
//! outside its partition. [`MemDevice`] is a sparse in-memory device for
//! tests and simulations.
//!
//! It is not for deciding *whether* to write (refusals are the executor's,
//! using [`mounted_or_in_use`] and the errors here), and it knows nothing
//! about partition tables or filesystems (see `table` and `restore`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A byte-addressable disk: an image file, a block device or a simulation.
// `len` is a disk's size, not an element count; an `is_empty` would mean
// nothing here.
#[allow(clippy::len_without_is_empty)]
pub trait Device: Send {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Logical sector size in bytes (512 or 4096).
    fn sector_size(&self) -> u32;
    /// Fill `buf` from `offset` (read_exact semantics).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Write all of `buf` at `offset`. Writing past `len()` is an error.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Make `[offset, offset+len)` read back as zeros (punch a hole,
    /// BLKZEROOUT, or write zeros), without touching bytes outside it.
    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Whether [`Device::zero_range`] costs next to nothing whatever the
    /// length: a punched hole, or a disk that zeroes by itself (write-zeroes
    /// offload). `false` for a disk without it, where BLKZEROOUT makes the
    /// kernel write every zero byte at the disk's write speed: callers then
    /// zero only what must read as zeros, and estimates count those bytes.
    fn zeroing_is_cheap(&self) -> bool {
        true
    }
    /// Flush written data to stable storage.
    fn sync(&mut self) -> io::Result<()>;
    /// Start writing `[offset, offset+len)` back to the disk without
    /// waiting for it (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): a long
    /// stream of writes then keeps the disk busy, and the final
    /// [`Device::sync`] finds little left to do. Only a hint: no-op where
    /// there is nothing to start.
    fn start_writeback(&self, _offset: u64, _len: u64) {}
    /// The next range inside `[offset, end)` that may hold data other than
    /// zeros, or `None` if all of the rest reads as zeros. Devices that
    /// cannot tell (block devices) say all of it may.
    fn data_extent(&self, offset: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
        Ok((offset < end).then_some((offset, end)))
    }
    /// Tell the kernel a new partition table was written (block devices:
    /// BLKRRPART); nothing to do for images and simulations.
    fn table_changed(&self) -> io::Result<()> {
        Ok(())
    }
    /// For a simulated target: the ranges whose bytes a run changed.
    fn written_ranges(&self) -> Option<Vec<(u64, u64)>> {
        None
    }
}

/// How a target is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading only (dry-run, verify, capture). Shares the target with
    /// other readers.
    ReadOnly,
    /// Reading and writing (apply). Exclusive: a second writer or reader
    /// that asks for exclusivity is refused.
    ReadWrite,
}

/// Why a target could not be opened. The caller knows the path and the
/// target's name and adds them when it reports the error.
#[derive(Debug)]
pub enum TargetError {
    /// Nothing exists at the path.
    NotFound,
    /// The path exists but is neither a regular file nor a block device;
    /// the payload says what it is.
    NotADisk(String),
    /// The kernel or the system says someone else uses the device (mounted,
    /// swap, held by md/dm/LVM, or backing a loop device).
    InUse(String),
    /// Another process (usually another rplan) holds a conflicting lock.
    Locked,
    /// A sector size other than a power of two between 512 and 64 KiB.
    BadSectorSize(u32),
    /// Any other I/O error while opening or probing.
    Io(io::Error),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::NotFound => write!(f, "no such file or device"),
            TargetError::NotADisk(what) => {
                write!(
                    f,
                    "not a disk: {what} (expected an image file or a block device)"
                )
            }
            TargetError::InUse(why) => write!(f, "in use: {why}"),
            TargetError::Locked => write!(
                f,
                "locked by another process (is another rplan running on this target?)"
            ),
            TargetError::BadSectorSize(s) => write!(f, "unsupported sector size {s}"),
            TargetError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for TargetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TargetError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for TargetError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::NotFound {
            TargetError::NotFound
        } else {
            TargetError::Io(e)
        }
    }
}

/// Open `path` as whichever kind of target it is: a regular file becomes an
/// [`ImageFile`], a block device a [`BlockDevice`]; anything else is
/// [`TargetError::NotADisk`].
pub fn open_target(path: impl AsRef<Path>, access: Access) -> Result<Box<dyn Device>, TargetError> {
    let path = path.as_ref();
    let meta = fs::metadata(path)?;
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(Box::new(ImageFile::open(path, access)?))
    } else if ft.is_block_device() {
        Ok(Box::new(BlockDevice::open(path, access)?))
    } else {
        Err(TargetError::NotADisk(describe_file_type(&meta)))
    }
}

fn describe_file_type(meta: &fs::Metadata) -> String {
    let ft = meta.file_type();
    let what = if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "an unknown file type"
    };
    what.to_string()
}

fn check_sector_size(sector_size: u32) -> Result<u32, TargetError> {
    if sector_size.is_power_of_two() && (512..=65536).contains(&sector_size) {
        Ok(sector_size)
    } else {
        Err(TargetError::BadSectorSize(sector_size))
    }
}

fn past_end_write(offset: u64, len: usize, size: u64) -> io::Error {
    // StorageFull is what a real block device answers (ENOSPC) when written
    // past its end; callers can treat all targets alike.
    io::Error::new(
        io::ErrorKind::StorageFull,
        format!("write of {len} bytes at offset {offset} would go past the end ({size} bytes)"),
    )
}

fn past_end_read(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("read of {len} bytes at offset {offset} would go past the end ({size} bytes)"),
    )
}

/// `offset + len <= size`, without overflow.
fn fits(offset: u64, len: u64, size: u64) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= size)
}

fn read_only_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "target was opened read-only",
    )
}

/// Zeros to write from when a device cannot zero a range natively. Static so
/// it lives in .bss and costs nothing until touched.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

fn write_zeros(file: &File, mut offset: u64, mut len: u64) -> io::Result<()> {
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], offset)?;
        offset += n as u64;
        len -= n as u64;
    }
    Ok(())
}

fn flock(file: &File, access: Access) -> Result<(), TargetError> {
    let op = match access {
        Access::ReadOnly => libc::LOCK_SH,
        Access::ReadWrite => libc::LOCK_EX,
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Err(TargetError::Locked),
            _ => return Err(TargetError::Io(err)),
        }
    }
}

/// A disk image: a regular file, usually sparse.
///
/// While open it holds an advisory `flock` (exclusive for
/// [`Access::ReadWrite`], shared for [`Access::ReadOnly`]), so two rplan
/// processes cannot write the same image at once. The lock goes away when
/// the value is dropped.
#[derive(Debug)]
pub struct ImageFile(DiskFile);

impl ImageFile {
    /// Open an existing image file. Its size is the device size; it is never
    /// grown or truncated.
    pub fn open(path: impl AsRef<Path>, access: Access) -> Result<ImageFile, TargetError> {
        let path = path.as_ref();
        let meta = fs::metadata(path)?;
        if !meta.file_type().is_file() {
            return Err(TargetError::NotADisk(describe_file_type(&meta)));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .open(path)?;
        // Check again on the descriptor: the path may have been swapped
        // between the stat and the open.
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Err(TargetError::NotADisk(describe_file_type(&meta)));
        }
        flock(&file, access)?;
        Ok(ImageFile(DiskFile {
            file,
            len: meta.len(),
            sector_size: 512,
            writable: access == Access::ReadWrite,
        }))
    }

    /// Use another logical sector size (an image has none of its own; the
    /// plan's disk says which one its tables were made for).
    pub fn with_sector_size(mut self, sector_size: u32) -> Result<ImageFile, TargetError> {
        self.0.sector_size = check_sector_size(sector_size)?;
        Ok(self)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> io::Result<()> {
        let (Ok(off), Ok(l)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range too large",
            ));
        };
        // SAFETY: fallocate only reads the descriptor and integers.
        let rc = unsafe {
            libc::fallocate(
                self.0.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                l,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Device for ImageFile {
    fn len(&self) -> u64 {
        self.0.len
    }

    fn sector_size(&self) -> u32 {
        self.0.sector_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(buf, offset)
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.0.check_write(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        match self.punch_hole(offset, len) {
            Ok(()) => Ok(()),
            // Filesystems without hole punching (or odd ones that refuse the
            // mode) still get a correct result, only slower and not sparse.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL)
                ) =>
            {
                write_zeros(&self.0.file, offset, len)
            }
            Err(e) => Err(e),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        // The size never changes, so data (not metadata) is what matters.
        self.0.file.sync_data()?;
        self.0.still_there()
    }

    fn data_extent(&self, offset: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
        crate::fingerprint::data_extent(&self.0.file, offset, end.min(self.0.len))
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        start_writeback(&self.0.file, offset, len);
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: queue the range's dirty pages
/// for writeback and return. Errors are not reported here: the final
/// `fdatasync` reports any write error.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(off), Ok(n)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return;
    };
    // SAFETY: a plain syscall on our own open descriptor; it reads no memory.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), off, n, libc::SYNC_FILE_RANGE_WRITE);
    }
}

// Block-layer ioctls, from <linux/fs.h>. libc does not export all of them.
// The encodings are the asm-generic ones (x86, arm, riscv, loongarch, s390).
const BLKSSZGET: libc::Ioctl = 0x1268 as libc::Ioctl;
const BLKRRPART: libc::Ioctl = 0x125f as libc::Ioctl;
const BLKZEROOUT: libc::Ioctl = 0x127f as libc::Ioctl;
// _IOR(0x12, 114, size_t) with an 8-byte size_t.
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272_u32 as libc::Ioctl;

/// A block device (a whole disk such as `/dev/sdb`, or a loop device).
///
/// Opened for writing with `O_EXCL`, which the kernel refuses while the
/// device or any of its partitions is mounted, used as swap or held by md,
/// device-mapper or another exclusive opener. Read-only opens do not ask for
/// exclusivity, so dry-run can inspect a disk that is busy and report why
/// `apply` would refuse it.
#[derive(Debug)]
pub struct BlockDevice(DiskFile);

impl BlockDevice {
    /// Open a block device.
    pub fn open(path: impl AsRef<Path>, access: Access) -> Result<BlockDevice, TargetError> {
        let path = path.as_ref();
        let meta = fs::metadata(path)?;
        if !meta.file_type().is_block_device() {
            return Err(TargetError::NotADisk(describe_file_type(&meta)));
        }
        let mut options = OpenOptions::new();
        options.read(true);
        if access == Access::ReadWrite {
            options.write(true).custom_flags(libc::O_EXCL);
        }
        let file = options.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                TargetError::InUse(mounted_or_in_use(path).unwrap_or_else(|| {
                    "the kernel refused exclusive access (mounted, swap, or held by md, \
                         device-mapper, LVM or another program)"
                        .to_string()
                }))
            } else {
                TargetError::from(e)
            }
        })?;
        let fd = file.as_raw_fd();
        let mut len: u64 = 0;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer.
        if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut len as *mut u64) } != 0 {
            return Err(TargetError::Io(io::Error::last_os_error()));
        }
        let mut ssz: libc::c_int = 0;
        // SAFETY: BLKSSZGET writes one int through the pointer.
        if unsafe { libc::ioctl(fd, BLKSSZGET, &mut ssz as *mut libc::c_int) } != 0 {
            return Err(TargetError::Io(io::Error::last_os_error()));
        }
        let sector_size = u32::try_from(ssz).map_err(|_| TargetError::BadSectorSize(0))?;
        Ok(BlockDevice(DiskFile {
            file,
            len,
            sector_size: check_sector_size(sector_size)?,
            writable: access == Access::ReadWrite,
        }))
    }

    /// Ask the kernel to re-read the partition table (BLKRRPART), so that
    /// partition device nodes match a table just written. Fails with EBUSY
    /// while a partition of the disk is in use.
    pub fn reread_partitions(&self) -> io::Result<()> {
        // SAFETY: BLKRRPART takes no argument.
        if unsafe { libc::ioctl(self.0.file.as_raw_fd(), BLKRRPART) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn blkzeroout(&self, offset: u64, len: u64) -> io::Result<()> {
        let range: [u64; 2] = [offset, len];
        // SAFETY: BLKZEROOUT reads two u64 through the pointer.
        if unsafe { libc::ioctl(self.0.file.as_raw_fd(), BLKZEROOUT, range.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Device for BlockDevice {
    fn table_changed(&self) -> io::Result<()> {
        self.reread_partitions()
    }

    fn len(&self) -> u64 {
        self.0.len
    }

    fn sector_size(&self) -> u32 {
        self.0.sector_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_at(buf, offset)
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.0.check_write(offset, len)?;
        // BLKZEROOUT wants both ends on a logical-sector boundary: zero the
        // unaligned head and tail by hand and let the device do the middle.
        let ss = u64::from(self.0.sector_size);
        let end = offset + len;
        let mid_start = offset.div_ceil(ss) * ss;
        let mid_end = (end / ss) * ss;
        if mid_start >= mid_end {
            return write_zeros(&self.0.file, offset, len);
        }
        write_zeros(&self.0.file, offset, mid_start - offset)?;
        write_zeros(&self.0.file, mid_end, end - mid_end)?;
        match self.blkzeroout(mid_start, mid_end - mid_start) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::EINVAL)
                ) =>
            {
                write_zeros(&self.0.file, mid_start, mid_end - mid_start)
            }
            Err(e) => Err(e),
        }
    }

    fn zeroing_is_cheap(&self) -> bool {
        write_zeroes_offload(&self.0.file)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.file.sync_all()
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        start_writeback(&self.0.file, offset, len);
    }
}

/// Whether the block device open as `file` zeroes ranges by itself: its
/// queue's `write_zeroes_max_bytes` (in sysfs; a partition's is its disk's)
/// is not 0. Read on every call: a loop device whose backing file cannot
/// zero turns it to 0 at its first refusal. Unknown counts as not offloaded
/// (the safe guess for time estimates; correctness never depends on it).
fn write_zeroes_offload(file: &File) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let rdev = meta.rdev();
    let node = PathBuf::from(format!(
        "/sys/dev/block/{}:{}",
        libc::major(rdev),
        libc::minor(rdev)
    ));
    let queue = if node.join("partition").exists() {
        node.join("../queue")
    } else {
        node.join("queue")
    };
    fs::read_to_string(queue.join("write_zeroes_max_bytes"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

/// What an image file and a block device share: an open file of fixed
/// size whose reads and writes are checked against that size (pwrite on a
/// regular file would silently grow it; a disk cannot) and against the
/// access it was opened with.
#[derive(Debug)]
struct DiskFile {
    file: File,
    len: u64,
    sector_size: u32,
    writable: bool,
}

impl DiskFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if !fits(offset, buf.len() as u64, self.len) {
            return Err(past_end_read(offset, buf.len(), self.len));
        }
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match self.check_write_part(offset, buf.len() as u64)? {
            None => self.file.write_all_at(buf, offset),
            // The fault seam tears this write: its first part lands.
            Some(part) => {
                self.file
                    .write_all_at(&buf[..part.min(buf.len())], offset)?;
                Err(crate::fault::torn_write_error())
            }
        }
    }

    /// May this zeroing go ahead?
    fn check_write(&self, offset: u64, len: u64) -> io::Result<()> {
        match self.check_write_part(offset, len)? {
            None => Ok(()),
            Some(_) => Err(crate::fault::torn_write_error()),
        }
    }

    /// May this write or zeroing go ahead? Every one passes here before it
    /// touches the device. `Some(n)`: only the first `n` bytes may (the
    /// tests' fault seam tearing a write; never in a release build).
    fn check_write_part(&self, offset: u64, len: u64) -> io::Result<Option<usize>> {
        if !self.writable {
            return Err(read_only_error());
        }
        if !fits(offset, len, self.len) {
            return Err(past_end_write(offset, len as usize, self.len));
        }
        self.still_there()?;
        // Every write and zeroing passes here: the tests' crash and fault
        // points.
        crate::fault::before_write(offset, len)
    }

    /// An image file must still be the file of the size it was opened
    /// with: truncated, a pwrite past its new end would silently grow it
    /// back sparse; removed, every write would land in an orphaned inode.
    /// (A block device that shrinks or goes away fails its writes itself.)
    fn still_there(&self) -> io::Result<()> {
        let meta = self.file.metadata()?;
        if !meta.file_type().is_file() {
            return Ok(());
        }
        if meta.nlink() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the target image file was removed while rplan was writing it",
            ));
        }
        if meta.len() != self.len {
            return Err(io::Error::other(format!(
                "the target image's size changed while rplan was writing it: {} bytes now, {} when opened",
                meta.len(),
                self.len
            )));
        }
        Ok(())
    }
}

/// Why `path` must not be written now, or `None` if nothing says it is busy.
///
/// For a block device: the device or one of its partitions is mounted
/// (`/proc/self/mountinfo`), used as swap (`/proc/swaps`), or held by another
/// kernel driver (`/sys/dev/block/MAJ:MIN/holders`, e.g. md, dm, LVM). For an
/// image file: a loop device is attached to it (`/sys/block/loop*/loop/
/// backing_file`), which covers `mount -o loop` too. Anything that cannot
/// be stat'ed gives `None`: opening it fails anyway, with a better message.
pub fn mounted_or_in_use(path: impl AsRef<Path>) -> Option<String> {
    let path = path.as_ref();
    let meta = fs::metadata(path).ok()?;
    if meta.file_type().is_block_device() {
        block_device_in_use(meta.rdev())
    } else if meta.file_type().is_file() {
        image_in_use(path, &meta)
    } else {
        None
    }
}

/// glibc's `gnu_dev_major`/`gnu_dev_minor` encoding of a `dev_t`.
fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// `/sys/dev/block/MAJ:MIN` of a block device number.
pub(crate) fn sysfs_block_dir(rdev: u64) -> PathBuf {
    let (major, minor) = dev_major_minor(rdev);
    PathBuf::from(format!("/sys/dev/block/{major}:{minor}"))
}

/// The file behind a loop device, from its sysfs directory (`None` for
/// anything else).
pub(crate) fn loop_backing_file(sys_dir: &Path) -> Option<PathBuf> {
    let backing = fs::read_to_string(sys_dir.join("loop/backing_file")).ok()?;
    let backing = backing.trim_end_matches('\n');
    Some(PathBuf::from(
        backing.strip_suffix(" (deleted)").unwrap_or(backing),
    ))
}

fn block_device_in_use(rdev: u64) -> Option<String> {
    let (major, minor) = dev_major_minor(rdev);
    let disk_id = format!("{major}:{minor}");
    let sys = sysfs_block_dir(rdev);
    let disk_name = sysfs_name(&sys).unwrap_or_else(|| disk_id.clone());

    // The disk itself and each of its partitions, as (maj:min, name, rdev).
    let mut devices = vec![(disk_id, disk_name, rdev)];
    if let Ok(entries) = fs::read_dir(&sys) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.join("partition").exists() {
                continue;
            }
            let Ok(id) = fs::read_to_string(dir.join("dev")) else {
                continue;
            };
            let id = id.trim().to_string();
            let Some(rdev) = parse_major_minor(&id) else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            devices.push((id, name, rdev));
        }
    }

    let find = |id: &str| devices.iter().find(|(d, _, _)| d == id);
    let find_rdev = |r: u64| devices.iter().find(|(_, _, d)| *d == r);

    if let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") {
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(id), Some(mount_point)) = (fields.get(2), fields.get(4)) else {
                continue;
            };
            // After the optional fields comes "-", then fstype and source.
            let rest = fields.iter().skip_while(|f| **f != "-").skip(1);
            let mut rest = rest.copied();
            let fstype = rest.next().unwrap_or("?");
            let source = rest.next().map(unescape_mount_field).unwrap_or_default();
            // Some filesystems (btrfs) report an anonymous maj:min; their
            // source path still names the real device.
            let hit = find(id).or_else(|| {
                if source.starts_with('/') {
                    fs::metadata(&source)
                        .ok()
                        .filter(|m| m.file_type().is_block_device())
                        .and_then(|m| find_rdev(m.rdev()))
                } else {
                    None
                }
            });
            if let Some((_, name, _)) = hit {
                return Some(format!(
                    "{name} is mounted on {} ({fstype})",
                    unescape_mount_field(mount_point)
                ));
            }
        }
    }

    if let Ok(swaps) = fs::read_to_string("/proc/swaps") {
        for line in swaps.lines().skip(1) {
            let Some(file) = line.split_whitespace().next() else {
                continue;
            };
            let file = unescape_mount_field(file);
            if let Some((_, name, _)) = fs::metadata(&file)
                .ok()
                .filter(|m| m.file_type().is_block_device())
                .and_then(|m| find_rdev(m.rdev()))
            {
                return Some(format!("{name} is in use as swap"));
            }
        }
    }

    for (id, name, _) in &devices {
        let holders = PathBuf::from(format!("/sys/dev/block/{id}/holders"));
        if let Ok(entries) = fs::read_dir(&holders) {
            let held_by: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if !held_by.is_empty() {
                return Some(format!(
                    "{name} is held by {} (md, device-mapper or LVM)",
                    held_by.join(", ")
                ));
            }
        }
    }
    None
}

fn sysfs_name(sys: &Path) -> Option<String> {
    let target = fs::canonicalize(sys).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

pub(crate) fn parse_major_minor(id: &str) -> Option<u64> {
    let (major, minor) = id.split_once(':')?;
    let major: u64 = major.parse().ok()?;
    let minor: u64 = minor.parse().ok()?;
    // Inverse of dev_major_minor (glibc's makedev).
    Some(
        ((major & 0xfff) << 8)
            | ((major & !0xfff) << 32)
            | (minor & 0xff)
            | ((minor & !0xff) << 12),
    )
}

/// mountinfo and /proc/swaps escape space, tab, newline and backslash as
/// `\ooo` octal.
fn unescape_mount_field(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(v) = bytes.get(i + 1..i + 4).and_then(octal_byte) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |acc, &d| {
        if (b'0'..=b'7').contains(&d) {
            acc.checked_mul(8)?.checked_add(d - b'0')
        } else {
            None
        }
    })
}

fn image_in_use(path: &Path, meta: &fs::Metadata) -> Option<String> {
    let canonical = fs::canonicalize(path).ok();
    let entries = fs::read_dir("/sys/block").ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Some(backing) = loop_backing_file(&entry.path()) else {
            continue;
        };
        // Same inode is the real test (paths differ across bind mounts and
        // namespaces); the path comparison catches what stat cannot see.
        let same_inode = fs::metadata(&backing)
            .map(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
            .unwrap_or(false);
        let same_path = canonical.as_deref() == Some(backing.as_path());
        if same_inode || same_path {
            return Some(format!("it is attached to /dev/{name}"));
        }
    }
    None
}

/// A window `[start, start+len)` of a device, as a file-like stream.
///
/// Code handed a `Region` cannot reach outside it: a write that would cross
/// the end fails with [`io::ErrorKind::StorageFull`] (like a full partition)
/// and writes nothing, a seek past the end fails with
/// [`io::ErrorKind::InvalidInput`], and reads stop at the end. It is also a
/// [`Device`] itself, with offsets relative to `start`, so a partition can be
/// handed to code written for whole devices.
pub struct Region<'a> {
    dev: &'a mut dyn Device,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Region<'a> {
    /// The window `[start, start+len)` of `dev`; it must lie inside it.
    pub fn new(dev: &'a mut dyn Device, start: u64, len: u64) -> io::Result<Region<'a>> {
        if !fits(start, len, dev.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "region {start}+{len} lies outside the device ({} bytes)",
                    dev.len()
                ),
            ));
        }
        Ok(Region {
            dev,
            start,
            len,
            pos: 0,
        })
    }

    /// The whole device.
    pub fn whole(dev: &'a mut dyn Device) -> Region<'a> {
        let len = dev.len();
        Region {
            dev,
            start: 0,
            len,
            pos: 0,
        }
    }

    /// Where the window starts on the device.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl fmt::Debug for Region<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

fn seek_to(pos: u64, len: u64, from: SeekFrom) -> io::Result<u64> {
    let target = match from {
        SeekFrom::Start(p) => Some(p),
        SeekFrom::End(d) => len.checked_add_signed(d),
        SeekFrom::Current(d) => pos.checked_add_signed(d),
    };
    match target {
        Some(t) if t <= len => Ok(t),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("seek to {from:?} leaves the region ({len} bytes)"),
        )),
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        self.dev.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Region<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // All or nothing: a partial write up to the edge would leave the
        // caller believing it may retry the rest.
        if !fits(self.pos, buf.len() as u64, self.len) {
            return Err(past_end_write(self.pos, buf.len(), self.len));
        }
        self.dev.write_at(buf, self.start + self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Durability is `Device::sync`'s job; flush has no buffer to empty.
        Ok(())
    }
}

impl Seek for Region<'_> {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        self.pos = seek_to(self.pos, self.len, from)?;
        Ok(self.pos)
    }
}

impl Device for Region<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn sector_size(&self) -> u32 {
        self.dev.sector_size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if !fits(offset, buf.len() as u64, self.len) {
            return Err(past_end_read(offset, buf.len(), self.len));
        }
        self.dev.read_at(buf, self.start + offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !fits(offset, buf.len() as u64, self.len) {
            return Err(past_end_write(offset, buf.len(), self.len));
        }
        self.dev.write_at(buf, self.start + offset)
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if !fits(offset, len, self.len) {
            return Err(past_end_write(offset, len as usize, self.len));
        }
        self.dev.zero_range(self.start + offset, len)
    }

    fn zeroing_is_cheap(&self) -> bool {
        self.dev.zeroing_is_cheap()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.dev.sync()
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        if fits(offset, len, self.len) {
            self.dev.start_writeback(self.start + offset, len);
        }
    }

    fn data_extent(&self, offset: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
        let end = end.min(self.len);
        if offset >= end {
            return Ok(None);
        }
        Ok(self
            .dev
            .data_extent(self.start + offset, self.start + end)?
            .map(|(a, b)| (a - self.start, b - self.start)))
    }
}

/// A read-only window `[start, start+len)` of a device, as a stream.
pub struct RegionReader<'a> {
    dev: &'a dyn Device,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> RegionReader<'a> {
    /// The window `[start, start+len)` of `dev`; it must lie inside it.
    pub fn new(dev: &'a dyn Device, start: u64, len: u64) -> io::Result<RegionReader<'a>> {
        if !fits(start, len, dev.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "region {start}+{len} lies outside the device ({} bytes)",
                    dev.len()
                ),
            ));
        }
        Ok(RegionReader {
            dev,
            start,
            len,
            pos: 0,
        })
    }

    /// The whole device.
    pub fn whole(dev: &'a dyn Device) -> RegionReader<'a> {
        RegionReader {
            dev,
            start: 0,
            len: dev.len(),
            pos: 0,
        }
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for RegionReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionReader")
            .field("start", &self.start)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl Read for RegionReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        self.dev.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RegionReader<'_> {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        self.pos = seek_to(self.pos, self.len, from)?;
        Ok(self.pos)
    }
}

const MEM_CHUNK: u64 = 64 * 1024;

/// A sparse in-memory disk: 64 KiB chunks in a map, an absent chunk reads
/// as zeros. For tests and simulations; it remembers which byte ranges were
/// ever written (including zeroed), so a test can check that nothing was
/// written outside the ranges it allowed.
#[derive(Debug, Clone)]
pub struct MemDevice {
    len: u64,
    sector_size: u32,
    chunks: BTreeMap<u64, Box<[u8]>>,
    /// Written ranges, merged: start -> end (exclusive).
    written: BTreeMap<u64, u64>,
}

impl MemDevice {
    /// An all-zero device of `len` bytes.
    pub fn new(len: u64, sector_size: u32) -> MemDevice {
        MemDevice {
            len,
            sector_size,
            chunks: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    /// Every byte range ever written or zeroed, as sorted, merged
    /// `(offset, len)` pairs.
    pub fn written_ranges(&self) -> Vec<(u64, u64)> {
        self.written.iter().map(|(&s, &e)| (s, e - s)).collect()
    }

    /// Forget the written ranges (the contents stay).
    pub fn clear_written(&mut self) {
        self.written.clear();
    }

    /// Bytes of memory held by chunks.
    pub fn allocated_bytes(&self) -> u64 {
        self.chunks.len() as u64 * MEM_CHUNK
    }

    fn record(&mut self, start: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut start = start;
        let mut end = start + len;
        // Merge with every range that touches [start, end).
        let touching: Vec<(u64, u64)> = self
            .written
            .range(..=end)
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.written.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.written.insert(start, end);
    }

    /// Split `[offset, offset+len)` into per-chunk pieces:
    /// (chunk index, offset in chunk, piece length, offset in the request).
    fn pieces(offset: u64, len: u64) -> impl Iterator<Item = (u64, usize, usize, usize)> {
        let end = offset + len;
        let mut at = offset;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let chunk = at / MEM_CHUNK;
            let in_chunk = at % MEM_CHUNK;
            let n = (MEM_CHUNK - in_chunk).min(end - at);
            let piece = (chunk, in_chunk as usize, n as usize, (at - offset) as usize);
            at += n;
            Some(piece)
        })
    }
}

impl Device for MemDevice {
    fn len(&self) -> u64 {
        self.len
    }

    fn sector_size(&self) -> u32 {
        self.sector_size
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if !fits(offset, buf.len() as u64, self.len) {
            return Err(past_end_read(offset, buf.len(), self.len));
        }
        for (chunk, at, n, done) in Self::pieces(offset, buf.len() as u64) {
            let out = &mut buf[done..done + n];
            match self.chunks.get(&chunk) {
                Some(data) => out.copy_from_slice(&data[at..at + n]),
                None => out.fill(0),
            }
        }
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !fits(offset, buf.len() as u64, self.len) {
            return Err(past_end_write(offset, buf.len(), self.len));
        }
        for (chunk, at, n, done) in Self::pieces(offset, buf.len() as u64) {
            let data = self
                .chunks
                .entry(chunk)
                .or_insert_with(|| vec![0u8; MEM_CHUNK as usize].into_boxed_slice());
            data[at..at + n].copy_from_slice(&buf[done..done + n]);
        }
        self.record(offset, buf.len() as u64);
        Ok(())
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if !fits(offset, len, self.len) {
            return Err(past_end_write(offset, len as usize, self.len));
        }
        for (chunk, at, n, _) in Self::pieces(offset, len) {
            if n as u64 == MEM_CHUNK {
                self.chunks.remove(&chunk);
            } else if let Some(data) = self.chunks.get_mut(&chunk) {
                data[at..at + n].fill(0);
            }
        }
        self.record(offset, len);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}
