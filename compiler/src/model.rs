//! The typed plan, version 1: exactly the format of DESIGN.md "Plan format".
//!
//! These types are the source of `schemas/plan.schema.json` (via schemars)
//! and refuse unknown fields. They hold what the person wrote; resolved
//! values (absolute offsets, defaulted timeouts, ranks) are computed by
//! analysis, not stored here.

use crate::size::{Duration, Size};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An identifier: letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub type Id = String;
pub const ID_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]*$";
/// ISO 639-1: two lowercase letters.
pub const LANGUAGE_PATTERN: &str = "^[a-z]{2}$";

/// A recovery plan for one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rplan recovery plan", extend("$id" = "https://raw.githubusercontent.com/rplan/rplan/main/schemas/plan.schema.json"))]
pub struct Plan {
    /// Plan format version; only 1 exists.
    #[schemars(range(min = 1, max = 1))]
    #[schemars(example = 1)]
    pub version: u32,
    /// The machine's name; it also names the apply journal's file.
    #[schemars(length(min = 1, max = 128))]
    #[schemars(example = &"accounting-pc-07")]
    pub name: String,
    /// The machine when the backup was taken.
    pub system: System,
    /// The restore media.
    pub media: Media,
    /// The ASR backup set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// The physical disks to recreate, each with its partition table and partitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<Disk>,
    /// Dynamic volumes across partitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// The escalation ladder, tried in order until one stage succeeds.
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Os {
    WindowsXp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct System {
    /// The operating system at backup time; only `windows-xp`.
    pub os: Os,
    /// A build id from the ruleset, e.g. `sp2-slipstream`.
    #[schemars(length(min = 1))]
    #[schemars(example = &"sp2-slipstream", example = &"rtm+sp1")]
    pub build: String,
    /// ISO 639-1 language code, e.g. `en`.
    #[schemars(pattern(LANGUAGE_PATTERN))]
    #[schemars(example = &"en")]
    pub language: String,
    /// The Windows XP edition: what the platform rules allow depends on it
    /// (media-center and tablet are Professional underneath). When absent,
    /// the plan is checked as `professional`, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<Edition>,
    /// 32-bit (`x86`) or 64-bit (`x64`) Windows XP. When absent, the plan is
    /// checked as `x86` (the stricter: no GPT disk at all), with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootCode {
    /// A `file` artifact.
    pub artifact: Id,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Edition {
    Home,
    Professional,
    MediaCenter,
    Tablet,
}

impl Edition {
    /// The edition the platform rules know it as: Media Center and Tablet PC
    /// editions are Windows XP Professional with extra components.
    pub fn platform(self) -> Edition {
        match self {
            Edition::MediaCenter | Edition::Tablet => Edition::Professional,
            e => e,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Edition::Home => "home",
            Edition::Professional => "professional",
            Edition::MediaCenter => "media-center",
            Edition::Tablet => "tablet",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    X86,
    X64,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86 => "x86",
            Arch::X64 => "x64",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// A build id from the ruleset.
    #[schemars(length(min = 1))]
    #[schemars(example = &"sp2-slipstream")]
    pub build: String,
    /// ISO 639-1 code; defaults to `system.language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(LANGUAGE_PATTERN))]
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// The backup set's name, e.g. the date it was taken.
    #[schemars(pattern(ID_PATTERN))]
    #[schemars(example = &"full-2026-11-20")]
    pub id: Id,
    /// Directory of the artifacts, relative to the plan file.
    #[schemars(example = &"backups/pc07")]
    pub root: String,
    /// The files of the backup set: images to restore and files to install.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactFormat {
    /// A raw image.
    Raw,
    /// A zstd-compressed raw image.
    RawZstd,
    /// A zstd-compressed partclone image (used blocks only, from
    /// `rplan capture --backup`); `size` and `sha256` are those of the
    /// partition's bytes it restores, free space as zeros.
    PartcloneZstd,
    /// A plain file to install into a filesystem.
    File,
}

impl ArtifactFormat {
    /// The plan's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactFormat::Raw => "raw",
            ArtifactFormat::RawZstd => "raw-zstd",
            ArtifactFormat::PartcloneZstd => "partclone-zstd",
            ArtifactFormat::File => "file",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// The artifact's id, used by `content.image`, `files[].artifact` and `boot_code.artifact`.
    #[schemars(pattern(ID_PATTERN))]
    #[schemars(example = &"system-image")]
    pub id: Id,
    /// Path relative to `backup.root`.
    #[schemars(length(min = 1))]
    pub path: String,
    /// How the file is stored: `raw`, `raw-zstd` (images) or `file` (installed as is).
    pub format: ArtifactFormat,
    /// Size in bytes once decompressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"2GiB")]
    pub size: Option<Size>,
    /// sha256 of the decompressed bytes, lowercase hex.
    #[schemars(pattern(r"^[0-9a-fA-F]{64}$"))]
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    Mbr,
    Gpt,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// The disk's id; `--target ID=PATH` names the device or image it is restored onto.
    #[schemars(pattern(ID_PATTERN))]
    #[schemars(example = &"disk0")]
    pub id: Id,
    /// Needed to start the computer: a failure on it fails the ASR stage.
    #[serde(default)]
    pub critical: bool,
    /// The partition table: `mbr` or `gpt`.
    pub table: TableKind,
    /// MBR disk signature, 32-bit hex, e.g. `"0x1a2b3c4d"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^0[xX][0-9a-fA-F]{1,8}$"))]
    #[schemars(example = &"0x1a2b3c4d")]
    pub signature: Option<String>,
    /// GPT disk GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<uuid::Uuid>,
    /// Logical sector size: 512 or 4096.
    #[serde(default = "default_sector_size")]
    #[schemars(extend("enum" = [512, 4096]))]
    pub sector_size: u32,
    /// The smallest target this plan fits.
    #[schemars(example = &"80GiB")]
    pub size: Size,
    /// The partitions, in table order.
    #[serde(default)]
    pub partitions: Vec<Partition>,
    /// MBR boot code to write: a `file` artifact of 440 to 512 bytes (an
    /// `mbr.bin`, or LBA 0 as captured), whose first 440 bytes are used.
    /// Without it the disk's existing code is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_code: Option<BootCode>,
    /// MBR: how the extended container around the logical partitions is laid
    /// out. Default: type `0x0f`, each EBR in the sector just before its
    /// logical partition, the container ending with the last one. Windows XP
    /// and DOS fdisk lay it out track-aligned:
    /// `{ type: "0x05", ebr_gap: 63, end: <the disk's size> }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<Extended>,
}

/// The MBR extended container's layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Extended {
    /// The container's MBR type: `"0x0f"` (LBA, the default) or `"0x05"`
    /// (CHS, as Windows XP writes it).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["0x05", "0x0f"]))]
    pub kind: Option<String>,
    /// Sectors from each EBR to its logical partition (default 1; Windows XP
    /// uses 63, one track). The first EBR starts the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[schemars(example = &63)]
    pub ebr_gap: Option<u64>,
    /// Where the container ends, as an offset from the start of the disk
    /// (default: the end of the last logical partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"80GiB")]
    pub end: Option<Size>,
}

fn default_sector_size() -> u32 {
    512
}

/// A partition's size: a size, or `rest` for the remainder of the target disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PartSize {
    Rest(Rest),
    Size(Size),
}

// By hand rather than `untagged`: an untagged enum swallows the inner
// error ("`0.3B` is not a whole number of bytes") into "no variant matched".
impl<'de> Deserialize<'de> for PartSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PartSize, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if v.as_str() == Some("rest") {
            return Ok(PartSize::Rest(Rest::Rest));
        }
        Size::deserialize(v)
            .map(PartSize::Size)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rest {
    Rest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// The partition's id, unique on its disk; volumes name it as `disk/partition`.
    #[schemars(pattern(ID_PATTERN))]
    #[schemars(example = &"system")]
    pub id: Id,
    /// Offset from the start of the disk; default: packed after the previous one, 1 MiB aligned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Size>,
    /// The partition's size, or `rest` for the remainder of the target disk (at most one per disk, and last).
    #[schemars(example = &"40GiB", example = &"rest")]
    pub size: PartSize,
    /// An alias (ntfs, fat32, fat16, ext4, linux, efi, msr, ldm), an MBR type byte `"0x07"`, or a GPT type GUID.
    #[serde(rename = "type")]
    #[schemars(length(min = 1))]
    #[schemars(example = &"ntfs", example = &"0x07")]
    pub kind: String,
    /// MBR active flag.
    #[serde(default)]
    pub bootable: bool,
    /// MBR: a logical partition inside an extended container.
    #[serde(default)]
    pub logical: bool,
    /// GPT partition GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<uuid::Uuid>,
    /// GPT partition name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    pub name: Option<String>,
    /// What goes into the partition: an image to restore, or a filesystem to make and files to copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
}

/// What goes into a partition or volume: an image, or a new filesystem and files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// Restore this image artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Id>,
    /// Make a new filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Copy file artifacts into the (FAT) filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileInstall>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Fs {
    Fat16,
    Fat32,
    Ext4,
    Ntfs,
}

impl Fs {
    pub fn is_fat(self) -> bool {
        matches!(self, Fs::Fat16 | Fs::Fat32)
    }

    /// The plan's name for it (`fat16`, `fat32`, `ext4`, `ntfs`).
    pub fn name(self) -> &'static str {
        match self {
            Fs::Fat16 => "fat16",
            Fs::Fat32 => "fat32",
            Fs::Ext4 => "ext4",
            Fs::Ntfs => "ntfs",
        }
    }
}

impl std::fmt::Display for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Format {
    /// The filesystem to make: `fat16`, `fat32`, `ext4` or `ntfs`.
    pub fs: Fs,
    /// The filesystem's label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[schemars(example = &"BOOT")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileInstall {
    /// A `file` artifact.
    pub artifact: Id,
    /// Absolute path inside the filesystem.
    #[schemars(pattern(r"^/"))]
    pub to: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Simple,
    Spanned,
    Striped,
    Mirrored,
    Raid5,
}

impl Layout {
    /// The plan's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Simple => "simple",
            Layout::Spanned => "spanned",
            Layout::Striped => "striped",
            Layout::Mirrored => "mirrored",
            Layout::Raid5 => "raid5",
        }
    }
}

// The array examples are consts: schemars' derive parses an array literal
// in an attribute only with syn's "full" feature, which not every build of
// this crate (`cargo build -p`, the fuzz workspace) switches on.
const MEMBERS_EXAMPLE: [&str; 2] = ["disk1/data", "disk2/data"];
const RUN_EXAMPLE: [&str; 3] = ["/usr/local/sbin/bmc-boot", "pc07", "safe"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// The volume's id.
    #[schemars(pattern(ID_PATTERN))]
    #[schemars(example = &"data")]
    pub id: Id,
    /// How the members combine: `simple`, `spanned`, `striped`, `mirrored` or `raid5` (Windows dynamic disks).
    pub layout: Layout,
    /// Member partitions as `disk/partition`.
    #[schemars(length(min = 1))]
    #[schemars(example = &MEMBERS_EXAMPLE)]
    pub members: Vec<String>,
    /// Striped and raid5 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"64KiB")]
    pub stripe_size: Option<Size>,
    /// Needed to start the computer: a failure on it fails the ASR stage, and its member disks must be critical.
    #[serde(default)]
    pub critical: bool,
    /// What goes into the volume: an image, or a filesystem and files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    SafeMode,
    LastKnownGood,
    Asr,
    Custom,
}

impl StageKind {
    /// The rank of the built-in kinds: gentler stages rank lower.
    pub fn default_rank(self) -> Option<u32> {
        match self {
            StageKind::SafeMode => Some(10),
            StageKind::LastKnownGood => Some(20),
            StageKind::Asr => Some(30),
            StageKind::Custom => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StageKind::SafeMode => "safe-mode",
            StageKind::LastKnownGood => "last-known-good",
            StageKind::Asr => "asr",
            StageKind::Custom => "custom",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage's id, unique in the plan.
    #[schemars(pattern(ID_PATTERN))]
    #[schemars(example = &"safe-mode")]
    pub id: Id,
    /// `safe-mode`, `last-known-good`, `asr` (its steps come from disks, volumes and backup) or `custom` (with `rank`).
    pub kind: StageKind,
    /// Custom stages: where on the ladder (safe-mode 10, last-known-good 20, asr 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    /// The whole stage's time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"15m")]
    pub timeout: Option<Duration>,
    /// What the stage does, in order unless `after` says otherwise; an ASR stage has none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// The probe that decides whether the stage worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<Probe>,
}

/// One action: a `manual` instruction for a person, or a command to `run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{"required": ["manual"]}, {"required": ["run"]}]))]
pub struct Action {
    /// An id other actions of the stage can name in `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ID_PATTERN))]
    pub id: Option<Id>,
    /// An instruction for the operator, who says whether it worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    #[schemars(example = &"Boot with F8, choose Safe Mode, check the event log")]
    pub manual: Option<String>,
    /// argv, never a shell string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    #[schemars(example = &RUN_EXAMPLE)]
    pub run: Option<Vec<String>>,
    /// The command's time limit, e.g. `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"2m")]
    pub timeout: Option<Duration>,
    /// Ids of actions of the same stage that must finish first (default: the previous one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Vec<Id>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// argv of the probe; exit 0 means the stage succeeded.
    #[schemars(length(min = 1))]
    pub run: Vec<String>,
    /// The probe's time limit, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"5m")]
    pub timeout: Option<Duration>,
}
