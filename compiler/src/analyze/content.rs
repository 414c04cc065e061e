//! Content: what goes into a partition or volume. An image is restored raw;
//! a filesystem is made and files are copied into it (FAT only, as ASR's
//! own `asr.sif` floppy is FAT). The content must fit where it goes.

use crate::compiled::{CArtifact, CDisk, CVolume};
use crate::diagnostic::{codes, Diagnostic};
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
                capacity,
                &what,
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
        ctx.content(
            content,
            &format!("/volumes/{k}/content"),
            capacity,
            &format!("volume `{}`", v.id),
        );
    }
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

    fn content(&mut self, c: &Content, cp: &str, capacity: u64, what: &str) {
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
                &[ArtifactFormat::Raw, ArtifactFormat::RawZstd],
            ) {
                if let Some(size) = a.size.filter(|&s| s > capacity) {
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
                capacity,
                &format!("{cp}/format"),
                what,
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
            if let Err(why) = fat_path(&f.to) {
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
        if total > capacity {
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

/// Limits the system's mkfs tools enforce, checked before anything runs.
fn check_fs(
    fs: Fs,
    label: Option<&str>,
    capacity: u64,
    fp: &str,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let (min, max, label_max, name) = match fs {
        Fs::Fat16 => (4 * MIB, 4 * GIB, 11, "FAT16"),
        Fs::Fat32 => (33 * MIB, 16 * 1024 * GIB, 11, "FAT32"),
        Fs::Ext4 => (2 * MIB, u64::MAX, 16, "ext4"),
        Fs::Ntfs => (2 * MIB, u64::MAX, 32, "NTFS"),
    };
    if capacity < min || capacity > max {
        diags.push(
            Diagnostic::error(
                codes::BAD_CONTENT,
                format!("{fp}/fs"),
                format!(
                    "{name} needs {} to {} and {what} is {}",
                    human_bytes(min),
                    if max == u64::MAX {
                        "any size".into()
                    } else {
                        human_bytes(max)
                    },
                    human_bytes(capacity)
                ),
            )
            .help(match fs {
                Fs::Fat16 => "use fat32 above 4GiB",
                Fs::Fat32 => "use fat16 below 33MiB",
                _ => "make it larger",
            }),
        );
    }
    if let Some(label) = label {
        if label.chars().count() > label_max || (fs.is_fat() && !label.is_ascii()) {
            diags.push(
                Diagnostic::error(
                    codes::BAD_CONTENT,
                    format!("{fp}/label"),
                    format!("`{label}` is too long for a {name} label"),
                )
                .help(format!(
                    "{name} labels hold {label_max} characters{}",
                    if fs.is_fat() { " of ASCII" } else { "" }
                )),
            );
        }
    }
}

/// A file path FAT can hold: absolute, no empty, `.` or `..` components, no
/// characters FAT forbids.
pub fn fat_path(to: &str) -> Result<(), String> {
    let rest = to.strip_prefix('/').ok_or("it must start with `/`")?;
    if rest.is_empty() {
        return Err("it names no file".into());
    }
    for part in rest.split('/') {
        match part {
            "" => return Err("it has an empty component".into()),
            "." | ".." => return Err("`.` and `..` are not allowed".into()),
            _ if part.len() > 255 => return Err("a name is longer than 255 characters".into()),
            _ if part
                .chars()
                .any(|c| c.is_control() || "\"*:<>?\\|".contains(c)) =>
            {
                return Err(format!("`{part}` has a character FAT forbids"))
            }
            _ if part.ends_with('.') || part.ends_with(' ') => {
                return Err(format!("`{part}` ends with a dot or space"))
            }
            _ => {}
        }
    }
    Ok(())
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
