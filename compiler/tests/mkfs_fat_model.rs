//! `fslimits::mkfs_fat_layout` predicts what `mkfs.fat` makes, so that
//! `check` refuses a FAT size the runtime's mkfs step would refuse. This
//! runs the real tool, with the runtime's arguments, on sparse files of many
//! sizes (the boundaries where its cluster size changes, and random ones),
//! and compares cluster counts. Skipped where mkfs.fat is not installed.

use rplan_compiler::fslimits::mkfs_fat_layout;
use rplan_compiler::model::Fs;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1024 * 1024;

fn mkfs_fat() -> Option<&'static str> {
    [
        "/usr/sbin/mkfs.fat",
        "/sbin/mkfs.fat",
        "/usr/local/sbin/mkfs.fat",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// (clusters, sectors per cluster) of what mkfs.fat made, or None if it refused.
fn real(
    tool: &str,
    dir: &Path,
    fs: Fs,
    len: u64,
    sector_size: u64,
    hidden: u64,
) -> Option<(u64, u64)> {
    let path = dir.join("fat.img");
    let _ = std::fs::remove_file(&path);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    let out = Command::new(tool)
        .args([
            "--invariant",
            "-F",
            if fs == Fs::Fat16 { "16" } else { "32" },
            "-S",
        ])
        .arg(sector_size.to_string())
        .args(["-g", "255/63", "-h"])
        .arg(hidden.to_string())
        .arg(&path)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    let mut bs = [0_u8; 64];
    std::io::Read::read_exact(&mut std::fs::File::open(&path).unwrap(), &mut bs).unwrap();
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([bs[o], bs[o + 1]]));
    let u32_at = |o: usize| u64::from(u32::from_le_bytes([bs[o], bs[o + 1], bs[o + 2], bs[o + 3]]));
    let bps = u16_at(11);
    let spc = u64::from(bs[13]);
    let reserved = u16_at(14);
    let fats = u64::from(bs[16]);
    let root = (u16_at(17) * 32).div_ceil(bps);
    let total = if u16_at(19) != 0 {
        u16_at(19)
    } else {
        u32_at(32)
    };
    let fat_len = if u16_at(22) != 0 {
        u16_at(22)
    } else {
        u32_at(36)
    };
    Some(((total - reserved - fats * fat_len - root) / spc, spc))
}

#[test]
fn the_model_agrees_with_mkfs_fat() {
    let Some(tool) = mkfs_fat() else {
        eprintln!("mkfs.fat not installed: skipped");
        return;
    };
    let dir = std::env::temp_dir().join(format!("rplan-mkfs-fat-model-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let mut mismatches = Vec::new();
    let mut cases = 0;
    for ss in [512_u64, 4096] {
        for fs in [Fs::Fat16, Fs::Fat32] {
            let mut sizes: Vec<u64> = [
                1, 4, 8, 9, 16, 32, 33, 34, 64, 256, 257, 260, 261, 300, 2048, 2080, 2088, 4096,
                8193,
            ]
            .iter()
            .map(|m| m * MIB)
            .collect();
            for edge in [260 * MIB, 2080 * MIB, 8192 * MIB] {
                sizes.extend([edge - ss, edge + ss]);
            }
            for _ in 0..12 {
                sizes.push(random(MIB / ss, 3 * 1024 * MIB / ss) * ss);
            }
            for len in sizes {
                let hidden = random(0, 1 << 20);
                let model =
                    mkfs_fat_layout(fs, len, ss).map(|l| (l.clusters, l.sectors_per_cluster));
                let tool = real(tool, &dir, fs, len, ss, hidden);
                cases += 1;
                if model != tool {
                    mismatches.push(format!(
                        "{fs} {len} bytes on {ss}-byte sectors: model {model:?}, mkfs.fat {tool:?}"
                    ));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        mismatches.is_empty(),
        "{} of {cases} differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
