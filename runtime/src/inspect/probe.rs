//! Signature probing through libblkid (the `libblkid-rs-sys` binding): the
//! library behind `blkid -p` and `wipefs`, so what rplan reports is what
//! the operator's own tools report. Each probe looks at one window of the
//! target (the whole disk, or one partition) through a read-only file
//! descriptor; libblkid never writes here (no `blkid_do_wipe`).
//!
//! One thing libblkid does not know is added by hand: the LDM PRIVHEAD
//! that Windows dynamic disks carry at sector 6.

use crate::target::Device;
use libblkid_rs_sys as sys;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::raw::{c_char, c_int};
use std::os::unix::io::AsRawFd;

/// One signature: a filesystem, swap, RAID/LVM member or the like.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Signature {
    /// The type as blkid names it: `ext4`, `vfat`, `ntfs`, `swap`,
    /// `LVM2_member`, `linux_raid_member`, `iso9660`, `ldm`…
    pub kind: String,
    /// blkid's usage class: `filesystem`, `raid`, `crypto`, `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Bytes in use, where cheap to know (ext2/3/4 and FAT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// Absolute byte ranges of the signature's magic on the target: what
    /// `wipefs` would erase to make it disappear.
    #[serde(skip)]
    #[schemars(skip)]
    pub magic: Vec<(u64, u64)>,
}

impl Signature {
    /// `ext4 `HOME``, `swap`.
    pub fn describe(&self) -> String {
        match &self.label {
            Some(l) if !l.is_empty() => format!("{} `{}`", self.kind, l),
            _ => self.kind.clone(),
        }
    }

    /// Its magic lies in the first sector (a boot sector of a filesystem
    /// made on the bare disk, which also ends in 0x55AA like an MBR).
    pub fn at_lba0(&self) -> bool {
        self.magic.iter().any(|&(at, _)| at < 512)
    }
}

/// A window of a target to probe.
pub struct Prober<'f> {
    file: &'f File,
    offset: u64,
    len: u64,
}

/// One libblkid probe, freed on drop. The binding's safe layer
/// (`libblkid-rs`) turns every value into a UTF-8 string and so cannot
/// return binary magic numbers (ext4's 0x53EF), which erasing a signature
/// the way wipefs does needs: these few calls go to the -sys crate directly.
struct Probe(sys::blkid_probe);

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: made by blkid_new_probe, freed once.
        unsafe { sys::blkid_free_probe(self.0) }
    }
}

fn check(what: &str, rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::other(format!("libblkid: {what} failed ({rc})")))
    } else {
        Ok(rc)
    }
}

impl Probe {
    fn new(file: &File, offset: u64, len: u64) -> io::Result<Probe> {
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::other("window beyond 2^63 bytes"));
        };
        // SAFETY: no preconditions; null on allocation failure.
        let raw = unsafe { sys::blkid_new_probe() };
        if raw.is_null() {
            return Err(io::Error::other("libblkid: cannot allocate a probe"));
        }
        let probe = Probe(raw);
        // SAFETY: a valid probe and an open descriptor that outlives it
        // (the probe lives only inside Prober's methods, which borrow it).
        check("set_device", unsafe {
            sys::blkid_probe_set_device(probe.0, file.as_raw_fd(), offset, len)
        })?;
        Ok(probe)
    }

    /// A value of the last result as libblkid stores it: text values with
    /// their trailing NUL, binary ones (SBMAGIC) exactly.
    fn bytes(&self, name: &CStr) -> Option<Vec<u8>> {
        let mut data: *const c_char = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: valid probe, NUL-terminated name, out-pointers to locals.
        let rc =
            unsafe { sys::blkid_probe_lookup_value(self.0, name.as_ptr(), &mut data, &mut size) };
        if rc != 0 || data.is_null() {
            return None;
        }
        // SAFETY: libblkid returns `size` bytes at `data`, NUL included,
        // valid until the next probe call; copied out at once.
        let raw = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), size) };
        Some(raw.to_vec())
    }

    fn text(&self, name: &CStr) -> Option<String> {
        self.bytes(name)
            .map(|b| String::from_utf8_lossy(b.strip_suffix(&[0]).unwrap_or(&b)).into_owned())
            .filter(|v| !v.is_empty())
    }
}

impl<'f> Prober<'f> {
    pub fn new(file: &'f File, offset: u64, len: u64) -> io::Result<Prober<'f>> {
        Ok(Prober { file, offset, len })
    }

    /// Every superblock signature in the window, as `wipefs` lists them.
    pub fn signatures(&self) -> io::Result<Vec<Signature>> {
        let p = Probe::new(self.file, self.offset, self.len)?;
        let flags = sys::BLKID_SUBLKS_LABEL
            | sys::BLKID_SUBLKS_UUID
            | sys::BLKID_SUBLKS_TYPE
            | sys::BLKID_SUBLKS_USAGE
            | sys::BLKID_SUBLKS_VERSION
            | sys::BLKID_SUBLKS_MAGIC;
        // SAFETY: a valid probe.
        unsafe {
            check(
                "enable_partitions",
                sys::blkid_probe_enable_partitions(p.0, 0),
            )?;
            check(
                "enable_superblocks",
                sys::blkid_probe_enable_superblocks(p.0, 1),
            )?;
            check(
                "set_superblocks_flags",
                sys::blkid_probe_set_superblocks_flags(p.0, flags as c_int),
            )?;
        }
        let mut out: Vec<Signature> = Vec::new();
        // libblkid reports one signature per call; bounded, since a damaged
        // image must not keep us here.
        for _ in 0..64 {
            // SAFETY: a valid probe.
            if check("do_probe", unsafe { sys::blkid_do_probe(p.0) })? == 1 {
                break;
            }
            let Some(kind) = p.text(c"TYPE") else {
                continue;
            };
            let at = p
                .text(c"SBMAGIC_OFFSET")
                .and_then(|o| o.parse::<u64>().ok());
            let magic = match (at, p.bytes(c"SBMAGIC")) {
                (Some(at), Some(m)) if !m.is_empty() => self
                    .offset
                    .checked_add(at)
                    .map(|abs| vec![(abs, m.len() as u64)])
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let sig = Signature {
                kind,
                usage: p.text(c"USAGE"),
                label: p.text(c"LABEL"),
                uuid: p.text(c"UUID"),
                version: p.text(c"VERSION"),
                used: None,
                magic,
            };
            match out
                .iter_mut()
                .find(|s| s.kind == sig.kind && s.uuid == sig.uuid)
            {
                // Some filesystems carry several magic strings (a backup
                // superblock); wipefs lists each, we keep one entry.
                Some(same) => same.magic.extend(sig.magic),
                None => out.push(sig),
            }
        }
        Ok(out)
    }

    /// The partition table libblkid sees in the window: `dos`, `gpt`,
    /// `PMBR`… or none. It tells a table from a filesystem's boot sector
    /// (both end in 0x55AA).
    pub fn partition_table_type(&self) -> io::Result<Option<String>> {
        let p = Probe::new(self.file, self.offset, self.len)?;
        // SAFETY: a valid probe.
        unsafe {
            check(
                "enable_superblocks",
                sys::blkid_probe_enable_superblocks(p.0, 0),
            )?;
            check(
                "enable_partitions",
                sys::blkid_probe_enable_partitions(p.0, 1),
            )?;
            check("do_safeprobe", sys::blkid_do_safeprobe(p.0))?;
        }
        Ok(p.text(c"PTTYPE"))
    }
}

/// Windows dynamic disks carry the LDM PRIVHEAD at sector 6 (the Linux-NTFS
/// project's LDM documentation; the kernel's `block/partitions/ldm.c`).
/// libblkid does not probe it.
pub fn ldm_privhead(dev: &dyn Device) -> Option<Signature> {
    const AT: u64 = 6 * 512;
    let mut buf = [0u8; 8];
    dev.read_at(&mut buf, AT).ok()?;
    (&buf == b"PRIVHEAD").then(|| Signature {
        kind: "ldm".to_string(),
        usage: Some("raid".to_string()),
        label: None,
        uuid: None,
        version: None,
        used: None,
        magic: vec![(AT, 8)],
    })
}
