//! What each filesystem, and the tool rplan makes it with, accepts: volume
//! labels, FAT file names, and the sizes `mkfs.fat` formats as the FAT type
//! asked for.
//!
//! `check` refuses here what the runtime's mkfs step or FAT install would
//! refuse mid-ASR, after the partition table was written. The rules are the
//! runtime's (`runtime/src/mkfs.rs`, `runtime/src/fat.rs`) and the tools'
//! (dosfstools 4.2, e2fsprogs, ntfs-3g), plus what Windows XP itself cannot
//! use (reserved device names, labels Windows could not type). Not here: the
//! platform's rules (FAT16 on XP, GPT) and whether content fits.

use crate::model::Fs;

/// A label or name refused: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub help: String,
}

fn refuse(message: impl Into<String>, help: impl Into<String>) -> Option<Refusal> {
    Some(Refusal {
        message: message.into(),
        help: help.into(),
    })
}

/// Characters FAT volume labels cannot hold (mkfs.fat and Windows' `label`).
pub const FAT_LABEL_FORBIDDEN: &str = "\"*+,./:;<=>?[\\]|";
/// Characters FAT long file names cannot hold.
pub const FAT_NAME_FORBIDDEN: &str = "\"*/:<>?\\|";
/// NTFS labels Windows XP's `format` and `label` accept (mkntfs would take
/// 128 UTF-16 units; Windows could not show or retype such a label).
pub const NTFS_LABEL_UNITS: usize = 32;
pub const EXT4_LABEL_BYTES: usize = 16;
pub const FAT_LABEL_BYTES: usize = 11;

/// Why `label` cannot label a new `fs` filesystem, if it cannot.
pub fn label_problem(fs: Fs, label: &str) -> Option<Refusal> {
    if let Some(c) = label.chars().find(|c| c.is_control()) {
        return refuse(
            format!(
                "the {fs} label `{}` contains the control character {c:?}",
                label.escape_debug()
            ),
            "labels are printable text: remove it",
        );
    }
    match fs {
        Fs::Fat16 | Fs::Fat32 => {
            if let Some(c) = label.chars().find(|c| !c.is_ascii()) {
                return refuse(
                    format!("the FAT label `{label}` contains `{c}`, which is not ASCII"),
                    "FAT labels are stored in the OEM code page: use ASCII letters, digits, spaces and `-_!#$%&'()@^`{}~`",
                );
            }
            if let Some(c) = label.chars().find(|c| FAT_LABEL_FORBIDDEN.contains(*c)) {
                return refuse(
                    format!("the FAT label `{label}` contains `{c}`"),
                    format!(
                        "FAT labels cannot contain any of {}",
                        FAT_LABEL_FORBIDDEN
                            .chars()
                            .map(String::from)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                );
            }
            if label.len() > FAT_LABEL_BYTES {
                return refuse(
                    format!("the FAT label `{label}` is {} characters long", label.len()),
                    format!("FAT labels hold at most {FAT_LABEL_BYTES} characters"),
                );
            }
            if label.starts_with(' ') {
                return refuse(
                    format!("the FAT label `{label}` starts with a space"),
                    "mkfs.fat refuses a leading space: remove it",
                );
            }
        }
        Fs::Ext4 => {
            if label.len() > EXT4_LABEL_BYTES {
                return refuse(
                    format!("the ext4 label `{label}` is {} bytes long", label.len()),
                    format!(
                        "ext4 labels hold at most {EXT4_LABEL_BYTES} bytes of UTF-8 (letters outside ASCII take 2 to 4)"
                    ),
                );
            }
        }
        Fs::Ntfs => {
            let units = label.encode_utf16().count();
            if units > NTFS_LABEL_UNITS {
                return refuse(
                    format!("the NTFS label `{label}` is {units} UTF-16 units long"),
                    format!(
                        "Windows labels NTFS volumes with at most {NTFS_LABEL_UNITS} characters (a character outside the BMP counts twice)"
                    ),
                );
            }
        }
    }
    None
}

/// A FAT label Windows will show differently from how it is written.
pub fn label_warning(fs: Fs, label: &str) -> Option<Refusal> {
    if fs.is_fat() && label.chars().any(|c| c.is_ascii_lowercase()) {
        return refuse(
            format!("the FAT label `{label}` has lowercase letters"),
            format!(
                "Windows stores and shows FAT labels in uppercase: write `{}`",
                label.to_ascii_uppercase()
            ),
        );
    }
    None
}

/// Device names Windows reserves in every directory, with any extension.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// The longest path Windows opens (`MAX_PATH` 260, less `C:\` and the NUL).
pub const FAT_PATH_UNITS: usize = 256;

/// Why `to` cannot be the path of a file installed into FAT, if it cannot:
/// absolute, no empty, `.` or `..` components, names of at most 255 UTF-16
/// units from the characters long names allow (the BMP only: the FAT
/// library writes no surrogate pairs), none of Windows' device names.
pub fn fat_path_problem(to: &str) -> Option<String> {
    let Some(rest) = to.strip_prefix('/') else {
        return Some("it must start with `/`".into());
    };
    if rest.is_empty() {
        return Some("it names no file".into());
    }
    if rest.encode_utf16().count() > FAT_PATH_UNITS {
        return Some(format!(
            "it is longer than the {FAT_PATH_UNITS} characters Windows opens"
        ));
    }
    for part in rest.split('/') {
        let units = part.encode_utf16().count();
        let stem = part.split('.').next().unwrap_or_default().trim_end();
        let problem = match part {
            "" => "it has an empty component".to_string(),
            "." | ".." => "`.` and `..` are not allowed".to_string(),
            _ if units > 255 => format!("a name is {units} characters long; FAT's limit is 255"),
            _ if part.chars().any(|c| c.is_control()) => {
                format!("`{}` contains a control character", part.escape_debug())
            }
            _ if part.chars().any(|c| FAT_NAME_FORBIDDEN.contains(c)) => format!(
                "`{part}` has a character FAT names forbid (any of {})",
                FAT_NAME_FORBIDDEN
                    .chars()
                    .map(String::from)
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            _ if part.chars().any(|c| u32::from(c) > 0xFFFF) => format!(
                "`{part}` has a character outside the Basic Multilingual Plane, which FAT long names here cannot hold"
            ),
            _ if part.ends_with('.') || part.ends_with(' ') => {
                format!("`{part}` ends with a dot or space, which Windows strips")
            }
            _ if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) => {
                format!("`{part}` is a device name Windows reserves")
            }
            _ => continue,
        };
        return Some(problem);
    }
    None
}

/// What `mkfs.fat` makes of a partition: its cluster count and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatLayout {
    pub clusters: u64,
    pub sectors_per_cluster: u64,
}

/// The cluster counts the runtime accepts after mkfs (`runtime/src/mkfs.rs`):
/// Windows decides the FAT type by the cluster count alone.
pub fn cluster_range(fs: Fs) -> (u64, u64) {
    match fs {
        Fs::Fat32 => (65_525, 0x0FFF_FFF4),
        _ => (4_085, 65_524),
    }
}

/// The layout `mkfs.fat -F 12|16|32 -S sector_size -g 255/63` (dosfstools
/// 4.2, as the runtime runs it) gives a filesystem of `len` bytes, or `None`
/// when mkfs.fat refuses the size. A model of its arithmetic, tested against
/// the real tool in `compiler/tests/mkfs_fat_model.rs`.
pub fn mkfs_fat_layout(fs: Fs, len: u64, sector_size: u64) -> Option<FatLayout> {
    if sector_size == 0 || !fs.is_fat() {
        return None;
    }
    let all = (len / sector_size).min(u64::from(u32::MAX));
    // With 63 sectors per track given, mkfs.fat uses whole tracks only.
    let sectors = all / 63 * 63;
    let align = sectors > 8192;
    let align_to = |n: u64, c: u64| if align { n.div_ceil(c) * c } else { n };
    // Its first guess for FAT32 follows Microsoft's table, in sectors of
    // whatever size; FAT16 starts at 4 sectors per cluster.
    let (mut spc, reserved, root_entries) = if fs == Fs::Fat32 {
        let mib = 2048; // 512-byte sectors per MiB, as mkfs.fat counts
        let spc = match all {
            n if n > 32 * 1024 * mib => 64,
            n if n > 16 * 1024 * mib => 32,
            n if n > 8 * 1024 * mib => 16,
            n if n > 260 * mib => 8,
            _ => 1,
        };
        (spc, 32, 0)
    } else {
        (4, 1, 512)
    };
    let root_sectors = (root_entries * 32_u64).div_ceil(sector_size);
    while spc <= 128 {
        let fat_data32 = sectors.checked_sub(align_to(reserved, spc))?;
        let fat_data16 = fat_data32.checked_sub(align_to(root_sectors, spc))?;
        let ok = if fs == Fs::Fat32 {
            let guess = (fat_data32 * sector_size + 16) / (spc * sector_size + 8);
            let fat_len = align_to(((guess + 2) * 4).div_ceil(sector_size), spc);
            let clusters = fat_data32.checked_sub(2 * fat_len)? / spc;
            let max = (fat_len * sector_size / 4).min(0x0FFF_FFF6);
            (clusters <= max).then_some(clusters)
        } else {
            let guess = (fat_data16 * sector_size + 8) / (spc * sector_size + 4);
            let fat_len = align_to(((guess + 2) * 2).div_ceil(sector_size), spc);
            let clusters = fat_data16.checked_sub(2 * fat_len)? / spc;
            let max = (fat_len * sector_size / 2).min(65_524);
            (clusters <= max && clusters >= 4_087).then_some(clusters)
        };
        if let Some(clusters) = ok {
            return Some(FatLayout {
                clusters,
                sectors_per_cluster: spc,
            });
        }
        spc *= 2;
    }
    None
}

/// Whether a `fs` filesystem of `len` bytes on `sector_size`-byte sectors
/// is one the runtime makes (mkfs.fat agrees and the cluster count is
/// right for the type).
pub fn fat_size_ok(fs: Fs, len: u64, sector_size: u64) -> bool {
    let (lo, hi) = cluster_range(fs);
    mkfs_fat_layout(fs, len, sector_size).is_some_and(|l| (lo..=hi).contains(&l.clusters))
}

/// The smallest whole number of MiB that makes a good `fs` filesystem on
/// `sector_size`-byte sectors (searched up to 64 GiB).
pub fn fat_min_size(fs: Fs, sector_size: u64) -> Option<u64> {
    const MIB: u64 = 1024 * 1024;
    (1..=64 * 1024)
        .map(|m| m * MIB)
        .find(|&len| fat_size_ok(fs, len, sector_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fat_labels() {
        for bad in [
            "A.B",
            "A+B",
            "A\"B",
            "A\u{1b}B",
            "A\0B",
            "ÄBC",
            "TWELVECHARSX",
            " LEAD",
            "A[1]",
            "A=B",
        ] {
            assert!(label_problem(Fs::Fat32, bad).is_some(), "{bad:?}");
        }
        for good in ["BOOT", "ASR 2", "NO_NAME-1", "ELEVENCHARS"] {
            assert_eq!(label_problem(Fs::Fat32, good), None, "{good:?}");
        }
        assert!(label_warning(Fs::Fat32, "Boot").is_some());
    }

    #[test]
    fn ext4_and_ntfs_labels() {
        assert!(label_problem(Fs::Ext4, "ééééééééé").is_some()); // 9 chars, 18 bytes
        assert_eq!(label_problem(Fs::Ext4, "sixteen-bytes-ok"), None);
        assert!(label_problem(Fs::Ntfs, &"😀".repeat(17)).is_some()); // 34 units
        assert_eq!(label_problem(Fs::Ntfs, "Données"), None);
        assert!(label_problem(Fs::Ntfs, "a\tb").is_some());
    }

    #[test]
    fn fat_paths() {
        for bad in [
            "/a/😀.txt",
            "/a:b",
            "/x/",
            "/con.txt",
            "/LPT1",
            "/a.",
            "/\u{7}",
        ] {
            assert!(fat_path_problem(bad).is_some(), "{bad:?}");
        }
        for good in [
            "/asr.sif",
            "/Ordner/Übersicht [1].txt",
            "/console.txt",
            "/a b+c;d=e",
        ] {
            assert_eq!(fat_path_problem(good), None, "{good:?}");
        }
    }

    #[test]
    fn fat_sizes() {
        const MIB: u64 = 1024 * 1024;
        assert!(!fat_size_ok(Fs::Fat32, 33 * MIB, 4096));
        assert!(fat_size_ok(Fs::Fat32, 64 * MIB, 512));
        assert!(!fat_size_ok(Fs::Fat32, 32 * MIB, 512));
        assert!(!fat_size_ok(Fs::Fat16, 4 * MIB, 512));
        assert!(fat_size_ok(Fs::Fat16, 16 * MIB, 512));
        assert!(fat_min_size(Fs::Fat32, 4096).is_some_and(|m| m > 256 * MIB));
    }
}
