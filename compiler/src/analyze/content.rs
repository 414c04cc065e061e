//! Content: what goes into a partition or volume. An image is restored raw;
//! a filesystem is made and files are copied into it (FAT only, as ASR's
//! own `asr.sif` floppy is FAT). The content must fit where it goes.

use crate::compiled::{CArtifact, CDisk, CVolume};
use crate::diagnostic::{codes, Diagnostic};
use crate::fslimits;
use crate::model::{ArtifactFormat, Content, Fs, Plan};
use crate::size::{human_bytes, GIB, MIB};

pub fn check(
    plan: &Plan,
    disks: &[CDisk],
    volumes: &[CVolume],
    artifacts: &[CArtifact],
    diags: &mut Vec<Diagnostic>,
) {
    let mut ctx = Ctx {
        artifacts,
        has_backup: plan.backup.is_some(),
        diags,
    };
    for (i, d) in plan.disks.iter().enumerate() {
        for (j, p) in d.partitions.iter().enumerate() {
            let Some(content) = &p.content else { continue };
            let capacity = disks
                .get(i)
                .and_then(|cd| cd.partitions.get(j))
                .map_or(0, |cp| cp.min_size);
            let what = format!("partition `{}/{}`", d.id, p.id);
            ctx.content(
                content,
                &format!("/disks/{i}/partitions/{j}/content"),
                Place {
                    capacity,
                    sector_size: u64::from(d.sector_size),
                    what: &what,
                },
            );
            if let Some(f) = &content.format {
                check_type_matches(
                    &p.kind,
                    f.fs,
                    &format!("/disks/{i}/partitions/{j}/type"),
                    ctx.diags,
                );
            }
        }
    }
    for (k, v) in plan.volumes.iter().enumerate() {
        let Some(content) = &v.content else { continue };
        let capacity = volumes.get(k).map_or(0, |cv| cv.usable_size);
        // A volume's sectors are its first member disk's.
        let sector_size = volumes
            .get(k)
            .and_then(|cv| cv.members.first())
            .and_then(|m| disks.iter().find(|d| d.id == m.disk))
            .map_or(512, |d| u64::from(d.sector_size));
        ctx.content(
            content,
            &format!("/volumes/{k}/content"),
            Place {
                capacity,
                sector_size,
                what: &format!("volume `{}`", v.id),
            },
        );
    }
}

/// Where content goes: its size, its sectors, and how to name it.
struct Place<'a> {
    capacity: u64,
    sector_size: u64,
    what: &'a str,
}

struct Ctx<'a> {
    artifacts: &'a [CArtifact],
    has_backup: bool,
    diags: &'a mut Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn artifact(
        &mut self,
        id: &str,
        pointer: String,
        want: &[ArtifactFormat],
    ) -> Option<&CArtifact> {
        let Some(a) = self.artifacts.iter().find(|a| a.id == id) else {
            let ids: Vec<String> = self.artifacts.iter().map(|a| a.id.clone()).collect();
            let help = if !self.has_backup {
                "declare it under `backup.artifacts`".to_string()
            } else {
                match crate::schema::did_you_mean(id, ids.iter()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "artifacts in this plan: {}",
                        if ids.is_empty() {
                            "none".into()
                        } else {
                            ids.join(", ")
                        }
                    ),
                }
            };
            self.diags.push(
                Diagnostic::error(
                    codes::DANGLING_ARTIFACT,
                    pointer,
                    format!("no artifact `{id}` in the backup"),
                )
                .help(help),
            );
            return None;
        };
        if !want.contains(&a.format) {
            let (is, use_as) = match a.format {
                ArtifactFormat::File => ("a `file`", "an image"),
                _ => ("an image", "a file"),
            };
            self.diags.push(
                Diagnostic::error(codes::ARTIFACT_KIND, pointer, format!("artifact `{id}` is {is}, used here as {use_as}"))
                    .help("images (`raw`, `raw-zstd`) go into `content.image`; `file` artifacts into `content.files`"),
            );
            return None;
        }
        Some(a)
    }

    fn content(&mut self, c: &Content, cp: &str, place: Place<'_>) {
        let Place { capacity, what, .. } = place;
        if c.image.is_some() && c.format.is_some() {
            self.diags.push(
                Diagnostic::error(
                    codes::BAD_CONTENT,
                    format!("{cp}/format"),
                    format!("{what} has both an image and a new filesystem"),
                )
                .help("an image brings its own filesystem: keep one of `image` and `format`"),
            );
        }
        if c.image.is_none() && c.format.is_none() && c.files.is_empty() {
            self.diags.push(
                Diagnostic::warning(
                    codes::BAD_CONTENT,
                    cp.to_string(),
                    format!("{what} has empty content"),
                )
                .help("remove `content`, or say what goes in"),
            );
        }
        if let Some(image) = &c.image {
            if let Some(a) = self.artifact(
                image,
                format!("{cp}/image"),
                &[
                    ArtifactFormat::Raw,
                    ArtifactFormat::RawZstd,
                    ArtifactFormat::PartcloneZstd,
                ],
            ) {
                if let Some(size) = a.size.filter(|&s| capacity > 0 && s > capacity) {
                    self.diags.push(
                        Diagnostic::error(
                            codes::CONTENT_TOO_LARGE,
                            format!("{cp}/image"),
                            format!(
                                "image `{image}` ({}) does not fit {what} ({})",
                                human_bytes(size),
                                human_bytes(capacity)
                            ),
                        )
                        .help(format!("make it at least {}", human_bytes(size))),
                    );
                }
            }
        }
        if let Some(f) = &c.format {
            check_fs(
                f.fs,
                f.label.as_deref(),
                &place,
                &format!("{cp}/format"),
                self.diags,
            );
        }
        if !c.files.is_empty() && !c.format.as_ref().is_some_and(|f| f.fs.is_fat()) {
            self.diags.push(
                Diagnostic::error(
                    codes::BAD_CONTENT,
                    format!("{cp}/files"),
                    format!("files are installed into FAT filesystems, and {what} has none"),
                )
                .help("add `format: { fs: fat32 }` (or fat16)"),
            );
        }
        let mut total = 0_u64;
        let mut targets: Vec<String> = Vec::new();
        for (n, f) in c.files.iter().enumerate() {
            let fp = format!("{cp}/files/{n}");
            if let Some(a) = self.artifact(
                &f.artifact,
                format!("{fp}/artifact"),
                &[ArtifactFormat::File],
            ) {
                total = total.saturating_add(a.size.unwrap_or(0));
            }
            if let Some(why) = fslimits::fat_path_problem(&f.to) {
                self.diags.push(Diagnostic::error(
                    codes::BAD_CONTENT,
                    format!("{fp}/to"),
                    format!("`{}` cannot be a FAT path: {why}", f.to),
                ));
            }
            let key = f.to.to_ascii_uppercase();
            if targets.contains(&key) {
                self.diags.push(Diagnostic::error(
                    codes::BAD_CONTENT,
                    format!("{fp}/to"),
                    format!(
                        "two files are installed to `{}` (FAT names ignore case)",
                        f.to
                    ),
                ));
            }
            targets.push(key);
        }
        // A place of 0 bytes was reported where it is declared.
        if capacity > 0 && total > capacity {
            self.diags.push(Diagnostic::error(
                codes::CONTENT_TOO_LARGE,
                format!("{cp}/files"),
                format!(
                    "the files ({}) do not fit {what} ({})",
                    human_bytes(total),
                    human_bytes(capacity)
                ),
            ));
        }
    }
}

/// Limits the system's mkfs tools enforce, checked before anything runs
/// (the rules live in [`fslimits`], shared with nothing device-facing).
fn check_fs(fs: Fs, label: Option<&str>, place: &Place<'_>, fp: &str, diags: &mut Vec<Diagnostic>) {
    let name = match fs {
        Fs::Fat16 => "FAT16",
        Fs::Fat32 => "FAT32",
        Fs::Ext4 => "ext4",
        Fs::Ntfs => "NTFS",
    };
    // An empty or unresolved place is reported where it is declared.
    if place.capacity > 0 {
        diags.extend(fs_size_problem(fs, name, place, format!("{fp}/fs")));
    }
    if let Some(label) = label {
        if let Some(r) = fslimits::label_problem(fs, label) {
            diags.push(
                Diagnostic::error(codes::BAD_LABEL, format!("{fp}/label"), r.message).help(r.help),
            );
        } else if let Some(r) = fslimits::label_warning(fs, label) {
            diags.push(
                Diagnostic::warning(codes::BAD_LABEL, format!("{fp}/label"), r.message)
                    .help(r.help),
            );
        }
    }
}

/// Whether the tool makes a `fs` filesystem of this size, and one the
/// runtime keeps (for FAT: the cluster count decides the type Windows sees).
fn fs_size_problem(fs: Fs, name: &str, place: &Place<'_>, pointer: String) -> Option<Diagnostic> {
    let Place {
        capacity,
        sector_size,
        what,
    } = *place;
    let (min, max) = match fs {
        Fs::Fat16 => (0, 4 * GIB),
        // mkfs.fat addresses 2^32 - 1 sectors at most.
        Fs::Fat32 => (0, u64::from(u32::MAX) * sector_size),
        Fs::Ext4 | Fs::Ntfs => (2 * MIB, u64::MAX),
    };
    let fat_ok = !fs.is_fat() || fslimits::fat_size_ok(fs, capacity, sector_size);
    if fat_ok && capacity >= min && capacity <= max {
        return None;
    }
    if capacity > max {
        return Some(
            Diagnostic::error(
                codes::BAD_CONTENT,
                pointer,
                format!(
                    "{name} holds at most {} and {what} is {}",
                    human_bytes(max),
                    human_bytes(capacity)
                ),
            )
            .help(match fs {
                Fs::Fat16 => "use fat32 above 4GiB",
                _ => "use ntfs, or a smaller partition",
            }),
        );
    }
    if !fs.is_fat() {
        return Some(
            Diagnostic::error(
                codes::BAD_CONTENT,
                pointer,
                format!(
                    "{name} needs at least {} and {what} is {}",
                    human_bytes(min),
                    human_bytes(capacity)
                ),
            )
            .help("make it larger"),
        );
    }
    let (lo, hi) = fslimits::cluster_range(fs);
    let layout = fslimits::mkfs_fat_layout(fs, capacity, sector_size);
    let why = match layout {
        Some(l) => format!(
            "mkfs.fat would make {} clusters of {}, and Windows takes a FAT with {} clusters for {}",
            l.clusters,
            human_bytes(l.sectors_per_cluster * sector_size),
            if l.clusters < lo { format!("fewer than {lo}") } else { format!("more than {hi}") },
            match (fs, l.clusters < lo) {
                (Fs::Fat32, true) => "FAT16",
                (_, true) => "FAT12",
                _ => "FAT32",
            }
        ),
        None => format!(
            "mkfs.fat refuses it: at every cluster size it tries, {name} would have too few or too many clusters"
        ),
    };
    let min_size = fslimits::fat_min_size(fs, sector_size);
    let help = match (fs, min_size) {
        (Fs::Fat32, Some(m)) if capacity < m => format!(
            "make it at least {} (on {sector_size}-byte sectors){}",
            human_bytes(m),
            if fslimits::fat_size_ok(Fs::Fat16, capacity, sector_size) {
                ", or use fat16"
            } else {
                ""
            }
        ),
        (Fs::Fat16, Some(m)) if capacity < m => format!(
            "make it at least {} (on {sector_size}-byte sectors)",
            human_bytes(m)
        ),
        (Fs::Fat16, _) => "use fat32 for a partition this large".to_string(),
        _ => "choose another size".to_string(),
    };
    Some(
        Diagnostic::error(
            codes::BAD_CONTENT,
            pointer,
            format!(
                "{name} cannot be made in {what} ({}): {why}",
                human_bytes(capacity)
            ),
        )
        .help(help),
    )
}

fn check_type_matches(kind: &str, fs: Fs, pointer: &str, diags: &mut Vec<Diagnostic>) {
    let k = kind.to_ascii_lowercase();
    let fits = match fs {
        Fs::Fat16 => ["fat16", "0x06", "0x04", "0x0e", "efi"].contains(&k.as_str()),
        Fs::Fat32 => ["fat32", "0x0b", "0x0c", "efi"].contains(&k.as_str()),
        Fs::Ext4 => ["ext4", "linux", "0x83"].contains(&k.as_str()),
        Fs::Ntfs => ["ntfs", "0x07"].contains(&k.as_str()),
    };
    let alias = ["ntfs", "fat32", "fat16", "ext4", "linux", "efi"].contains(&k.as_str())
        || k.starts_with("0x");
    if !fits && alias {
        diags.push(
            Diagnostic::warning(
                codes::BAD_CONTENT,
                pointer.to_string(),
                format!(
                    "partition type `{kind}` does not match its {} filesystem",
                    format!("{fs:?}").to_lowercase()
                ),
            )
            .help("Windows picks the driver by type: match the type to the filesystem"),
        );
    }
}
