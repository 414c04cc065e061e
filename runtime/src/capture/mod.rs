//! The backup half of ASR: describe disks as a plan, and (with
//! [`backup`]) image their partitions into artifacts.
//!
//! For: turning what [`crate::inspect`] and [`crate::table`] read off a
//! disk (or what an `sfdisk -d` dump says, [`sfdisk`]) into a [`Captured`]
//! description, and rendering that as the YAML of a plan that `rplan
//! check` accepts: the yaml-language-server modeline, human sizes,
//! comments for people, explicit starts and sizes (so applying the plan
//! gives back the very same table), and the default ladder
//! (safe-mode → last-known-good → asr) with its probes left for the user.
//!
//! Not for: writing to the source (it is opened read-only and only ever
//! read), nor deciding anything about a restore.

pub mod backup;
pub mod partclone;
mod pipe;
pub mod sfdisk;
pub mod volumes;

use crate::inspect::{self, approx_bytes};
use crate::table::{self, TableKind};
use crate::target::Device;
use std::fmt::Write as _;
use std::path::Path;
use uuid::Uuid;

/// The builds of the default ruleset, for the TODO comments.
const BUILDS: &str = "rtm, rtm+sp1, sp1-slipstream, sp1a-slipstream+sp2, sp2-slipstream, rtm+sp2";

/// What the person said on the command line about the machine.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// The plan's `name`.
    pub name: String,
    pub build: Option<String>,
    pub media: Option<String>,
    pub language: Option<String>,
    pub edition: Option<String>,
    pub arch: Option<String>,
}

/// One disk as captured.
#[derive(Debug, Clone)]
pub struct CapturedDisk {
    pub id: String,
    /// Where it was read from (a path, or the dump's device), for comments.
    pub source: String,
    pub table: TableKind,
    pub sector_size: u32,
    /// Bytes.
    pub size: u64,
    pub partitions: Vec<CapturedPartition>,
    /// The artifact holding LBA 0 (its first 440 bytes are the boot code).
    pub boot_code: Option<String>,
    /// Things found that the plan cannot say, written as comments.
    pub notes: Vec<String>,
    /// A dynamic disk's LDM database: its partitions are the LDM
    /// partitions (type `ldm`), its volumes go under `volumes:`.
    pub ldm: Option<crate::ldm::read::Database>,
    /// MBR: the extended container's layout when not rplan's default.
    pub extended: Option<table::ExtendedLayout>,
}

/// A filesystem found in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFs {
    /// blkid's name: `ntfs`, `vfat`, `ext4`…
    pub kind: String,
    /// blkid's version (`FAT32`, `1.0`…).
    pub version: Option<String>,
    pub label: Option<String>,
    pub used: Option<u64>,
}

impl FoundFs {
    /// The plan's filesystem name, when rplan can make this one.
    pub fn plan_fs(&self) -> Option<&'static str> {
        match (self.kind.as_str(), self.version.as_deref()) {
            ("ntfs", _) => Some("ntfs"),
            ("ext4", _) => Some("ext4"),
            ("vfat", Some("FAT32")) => Some("fat32"),
            ("vfat", Some("FAT16")) => Some("fat16"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CapturedPartition {
    pub id: String,
    /// As Linux numbers it (1–4 primary, 5… logical; GPT entry + 1).
    pub number: u32,
    /// Bytes.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// `0x07` or a GPT type GUID.
    pub kind: String,
    pub bootable: bool,
    pub logical: bool,
    pub guid: Option<Uuid>,
    pub name: Option<String>,
    pub fs: Option<FoundFs>,
    /// The image artifact restoring it, once backed up.
    pub image: Option<String>,
}

/// A whole capture: disks, and the artifacts of `--backup`.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    pub disks: Vec<CapturedDisk>,
    /// The dynamic volumes of the disks' LDM disk group.
    pub volumes: Vec<volumes::CapturedVolume>,
    pub backup: Option<backup::BackupSet>,
}

/// Read one disk (opened read-only by the caller) into a description.
pub fn read_disk(id: &str, dev: &dyn Device, path: &Path) -> std::io::Result<CapturedDisk> {
    let found = inspect::inspect(dev, path)?;
    let existing = table::read_table(dev)
        .map_err(|e| std::io::Error::other(format!("its partition table: {e}")))?;
    let Some(existing) = existing else {
        return Err(std::io::Error::other(
            "no MBR or GPT partition table to describe",
        ));
    };
    let ss = u64::from(existing.sector_size);
    let mut partitions = Vec::new();
    let mut notes = existing.problems.clone();
    for p in &existing.partitions {
        let (Some(start), Some(size)) = (p.start_lba.checked_mul(ss), p.size_lba.checked_mul(ss))
        else {
            notes.push(format!(
                "partition {} lies beyond 2^64 bytes: left out",
                p.number
            ));
            continue;
        };
        let fs = found
            .partitions
            .iter()
            .find(|f| f.number == p.number)
            .and_then(|f| f.content.as_ref())
            .map(|s| FoundFs {
                kind: s.kind.clone(),
                version: s.version.clone(),
                label: s.label.clone(),
                used: s.used,
            });
        let kind = match existing.kind {
            TableKind::Mbr { .. } => format!("0x{:02x}", p.mbr_type),
            TableKind::Gpt { .. } => p.gpt_type.to_string().to_uppercase(),
        };
        partitions.push(CapturedPartition {
            id: String::new(),
            number: p.number,
            start,
            size,
            kind,
            bootable: p.bootable,
            logical: p.logical,
            guid: p.guid,
            name: (!p.name.is_empty()).then(|| p.name.clone()),
            fs,
            image: None,
        });
    }
    let mut ldm = None;
    if found.signatures.iter().any(|s| s.kind == "ldm") {
        match crate::ldm::read::read_database(dev) {
            Ok(Some(db)) => {
                ldm_partitions(&db, &mut partitions);
                ldm = Some(db);
            }
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "a Windows dynamic disk whose LDM database cannot be read ({e}): \
                 its MBR partitions are described, add its volumes under `volumes:`"
            )),
        }
    }
    name_partitions(&mut partitions);
    Ok(CapturedDisk {
        id: id.to_string(),
        source: path.display().to_string(),
        table: existing.kind,
        sector_size: existing.sector_size,
        size: dev.len(),
        partitions,
        boot_code: None,
        notes,
        ldm,
        extended: existing.extended,
    })
}

/// A dynamic disk's partitions are its LDM partitions (at the bytes the
/// database puts them), in place of the MBR's one 0x42 partition that
/// covers them all.
fn ldm_partitions(db: &crate::ldm::read::Database, partitions: &mut Vec<CapturedPartition>) {
    partitions.retain(|p| p.kind != "0x42");
    let this = db.this_disk();
    let mut mine: Vec<(u64, u64)> = db
        .volumes
        .iter()
        .flat_map(|v| &v.members)
        .filter(|m| Some(m.disk) == this)
        .filter_map(|m| {
            let start = db.public_start.checked_add(m.start)?.checked_mul(SECTOR)?;
            Some((start, m.size.checked_mul(SECTOR)?))
        })
        .collect();
    mine.sort_unstable();
    let base = partitions.iter().map(|p| p.number).max().unwrap_or(0);
    for (k, (start, size)) in mine.into_iter().enumerate() {
        partitions.push(CapturedPartition::plain(
            base + 1 + k as u32,
            start,
            size,
            "ldm",
        ));
    }
}

impl CapturedPartition {
    /// A partition with nothing but its place and type.
    pub fn plain(number: u32, start: u64, size: u64, kind: &str) -> CapturedPartition {
        CapturedPartition {
            id: String::new(),
            number,
            start,
            size,
            kind: kind.to_string(),
            bootable: false,
            logical: false,
            guid: None,
            name: None,
            fs: None,
            image: None,
        }
    }
}

const SECTOR: u64 = crate::ldm::SECTOR;

/// Give partitions ids: the filesystem label when it makes a good,
/// unique id, else `p<number>`.
pub fn name_partitions(parts: &mut [CapturedPartition]) {
    let mut taken: Vec<String> = Vec::new();
    for p in parts.iter_mut() {
        let from_label =
            p.fs.as_ref()
                .and_then(|f| f.label.as_deref())
                .or(p.name.as_deref())
                .map(|l| {
                    l.trim()
                        .to_lowercase()
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                        .collect::<String>()
                        .trim_matches('-')
                        .to_string()
                })
                .filter(|l| !l.is_empty() && l.len() <= 32 && !taken.contains(l));
        let id = from_label.unwrap_or_else(|| format!("p{}", p.number));
        let id = if taken.contains(&id) {
            format!("{id}-{}", p.number)
        } else {
            id
        };
        taken.push(id.clone());
        p.id = id;
    }
}

/// A size as the plan writes it: the largest binary unit that divides it
/// exactly, else sectors, else bytes.
pub fn plan_size(bytes: u64, sector_size: u32) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{name}", bytes / unit);
        }
    }
    let ss = u64::from(sector_size);
    if bytes > 0 && bytes % ss == 0 && sector_size == 512 {
        return format!("{}s", bytes / ss);
    }
    bytes.to_string()
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

impl Captured {
    /// The plan, as YAML text. `schema` is the modeline's path to
    /// `plan.schema.json`.
    pub fn to_yaml(&self, machine: &Machine, schema: &str) -> String {
        let mut y = String::new();
        let _ = writeln!(y, "# yaml-language-server: $schema={schema}");
        y.push_str("#\n# Captured by `rplan capture` from:\n");
        for d in &self.disks {
            let _ = writeln!(
                y,
                "#   {}: {} ({}, {} partition table)",
                d.id,
                d.source.replace('\n', " "),
                approx_bytes(d.size),
                table_name(&d.table).to_uppercase()
            );
        }
        y.push_str(
            "# Starts and sizes are the disk's own, so applying this plan rebuilds\n\
             # the very same partition table. Check it with `rplan check`.\n",
        );
        y.push_str("version: 1\n");
        let _ = writeln!(y, "name: {}", quote(&machine.name));
        y.push_str("system:\n  os: windows-xp\n");
        if let Some(e) = &machine.edition {
            let _ = writeln!(y, "  edition: {}", quote(e));
        } else {
            y.push_str(
                "  # edition: professional   # home | professional | media-center | tablet\n",
            );
        }
        let arch = machine.arch.clone().or_else(|| {
            self.disks
                .iter()
                .any(|d| matches!(d.table, TableKind::Gpt { .. }))
                .then(|| "x64".to_string())
        });
        match (&arch, &machine.arch) {
            (Some(a), Some(_)) => {
                let _ = writeln!(y, "  arch: {}", quote(a));
            }
            (Some(a), None) => {
                let _ = writeln!(
                    y,
                    "  arch: {}   # a GPT disk: only 64-bit Windows XP sees one",
                    quote(a)
                );
            }
            _ => y.push_str("  # arch: x86   # x86 | x64\n"),
        }
        todo_field(
            &mut y,
            "build",
            machine.build.as_deref(),
            "the build at backup time",
        );
        todo_field(
            &mut y,
            "language",
            machine.language.as_deref(),
            "ISO 639-1 code of the installed Windows, e.g. en",
        );
        y.push_str("media:                 # the restore media\n");
        todo_field(
            &mut y,
            "build",
            machine.media.as_deref().or(machine.build.as_deref()),
            "the build of the restore CD",
        );
        if let Some(b) = &self.backup {
            b.to_yaml(&mut y);
        }
        y.push_str("disks:\n");
        let critical = self.critical_disk();
        for (i, d) in self.disks.iter().enumerate() {
            disk_yaml(&mut y, d, Some(i) == critical);
        }
        if !self.volumes.is_empty() {
            y.push_str(
                "volumes:                # Windows dynamic volumes (the disks' LDM database)\n",
            );
            for v in &self.volumes {
                volume_yaml(&mut y, v);
            }
        }
        y.push_str(LADDER);
        y
    }

    /// The disk to mark critical: the MBR disk with an active partition
    /// (what XP starts from). None without one: check then warns that no
    /// disk is critical, rather than failing on a system disk with nothing
    /// to start.
    fn critical_disk(&self) -> Option<usize> {
        self.disks.iter().position(|d| {
            matches!(d.table, TableKind::Mbr { .. }) && d.partitions.iter().any(|p| p.bootable)
        })
    }
}

fn table_name(t: &TableKind) -> &'static str {
    match t {
        TableKind::Mbr { .. } => "mbr",
        TableKind::Gpt { .. } => "gpt",
    }
}

/// `  build: sp2-slipstream`, or a `TODO` that `check` refuses with a
/// clear message, and a comment saying what to write.
fn todo_field(y: &mut String, key: &str, value: Option<&str>, what: &str) {
    match value {
        Some(v) => {
            let _ = writeln!(y, "  {key}: {}", quote(v));
        }
        None => {
            let hint = if what.contains("restore") {
                format!("{what}: one of rtm, sp1-slipstream, sp2-slipstream")
            } else if key == "build" {
                format!("{what}: one of {BUILDS}")
            } else {
                what.to_string()
            };
            let _ = writeln!(
                y,
                "  {key}: TODO   # TODO: {hint} (rplan capture --{})",
                flag_of(key, what)
            );
        }
    }
}

fn flag_of(key: &str, what: &str) -> &'static str {
    match key {
        "language" => "language",
        _ if what.contains("restore") => "media",
        _ => "build",
    }
}

fn disk_yaml(y: &mut String, d: &CapturedDisk, critical: bool) {
    let _ = writeln!(y, "  - id: {}", d.id);
    if critical {
        y.push_str("    critical: true      # needed to start the computer\n");
    }
    for n in &d.notes {
        let _ = writeln!(y, "    # note: {}", n.replace('\n', " "));
    }
    match d.table {
        TableKind::Mbr { signature } => {
            let _ = writeln!(y, "    table: mbr\n    signature: \"0x{signature:08x}\"");
        }
        TableKind::Gpt { disk_guid } => {
            let _ = writeln!(y, "    table: gpt\n    guid: {disk_guid}");
        }
    }
    let _ = writeln!(y, "    sector_size: {}", d.sector_size);
    let _ = writeln!(
        y,
        "    size: {}   # {} as captured: the smallest target this plan fits",
        plan_size(d.size, d.sector_size),
        approx_bytes(d.size)
    );
    if let Some(b) = &d.boot_code {
        let _ = writeln!(y, "    boot_code: {{ artifact: {b} }}");
    }
    if let Some(e) = d.extended {
        let end = e.end_lba.map_or(String::new(), |l| {
            let bytes = l.saturating_mul(u64::from(d.sector_size));
            format!(", end: {}", plan_size(bytes, d.sector_size))
        });
        let _ = writeln!(
            y,
            "    extended: {{ type: \"0x{:02x}\", ebr_gap: {}{end} }}",
            e.mbr_type, e.ebr_gap
        );
    }
    if d.partitions.is_empty() {
        y.push_str("    partitions: []\n");
        return;
    }
    y.push_str("    partitions:\n");
    for p in &d.partitions {
        partition_yaml(y, p, d.sector_size);
    }
}

fn partition_yaml(y: &mut String, p: &CapturedPartition, ss: u32) {
    let what = what_is_on(p.size, p.fs.as_ref());
    let _ = writeln!(
        y,
        "      - id: {}   # partition {}: {}",
        p.id,
        p.number,
        what.replace('\n', " ")
    );
    let _ = writeln!(y, "        start: {}", plan_size(p.start, ss));
    let _ = writeln!(y, "        size: {}", plan_size(p.size, ss));
    let _ = writeln!(y, "        type: {}", quote(&p.kind));
    if p.bootable {
        y.push_str("        bootable: true\n");
    }
    if p.logical {
        y.push_str("        logical: true\n");
    }
    if let Some(g) = p.guid {
        let _ = writeln!(y, "        guid: {g}");
    }
    if let Some(n) = &p.name {
        let _ = writeln!(y, "        name: {}", quote(n));
    }
    content_yaml(y, "        ", p.image.as_deref(), p.fs.as_ref());
}

fn volume_yaml(y: &mut String, v: &volumes::CapturedVolume) {
    let what = what_is_on(v.size, v.fs.as_ref());
    let _ = writeln!(
        y,
        "  - id: {}   # {}: {}",
        v.id,
        v.name.replace('\n', " "),
        what.replace('\n', " ")
    );
    let _ = writeln!(y, "    layout: {}", v.plan_layout());
    if let Some(s) = v.stripe() {
        let _ = writeln!(y, "    stripe_size: {}", plan_size(s, 512));
    }
    let _ = writeln!(y, "    members: [{}]", v.members.join(", "));
    content_yaml(y, "    ", v.image.as_deref(), v.fs.as_ref());
}

/// `content:` of a partition or volume: its image, else the filesystem
/// to make anew, else a comment.
fn content_yaml(y: &mut String, indent: &str, image: Option<&str>, fs: Option<&FoundFs>) {
    match (image, fs) {
        (Some(a), _) => {
            let _ = writeln!(y, "{indent}content: {{ image: {a} }}");
        }
        (None, Some(f)) => match f.plan_fs() {
            Some(fs) => {
                let label = f
                    .label
                    .as_deref()
                    .filter(|l| !l.is_empty())
                    .map(|l| format!(", label: {}", quote(l)))
                    .unwrap_or_default();
                let _ = writeln!(
                    y,
                    "{indent}# no backup of its files: ASR would make it anew, empty"
                );
                let _ = writeln!(y, "{indent}content: {{ format: {{ fs: {fs}{label} }} }}");
            }
            None => {
                let _ = writeln!(
                    y,
                    "{indent}# holds {}, which rplan cannot make: capture with --backup to keep it",
                    describe_fs(f)
                );
            }
        },
        (None, None) => {}
    }
}

/// A partition's or volume's comment: its filesystem and how full, or
/// its size and that none was found.
fn what_is_on(size: u64, fs: Option<&FoundFs>) -> String {
    match fs {
        Some(f) => format!("{}, {}", describe_fs(f), inspect::approx_size(size, f.used)),
        None => format!("{}, no filesystem found", approx_bytes(size)),
    }
}

fn describe_fs(f: &FoundFs) -> String {
    let kind = match (f.kind.as_str(), f.version.as_deref()) {
        ("vfat", Some(v)) => v.to_lowercase(),
        (k, _) => k.to_string(),
    };
    match f.label.as_deref().filter(|l| !l.is_empty()) {
        Some(l) => format!("{kind} `{l}`"),
        None => kind,
    }
}

const LADDER: &str = "\
stages:                 # the escalation ladder, tried in order until one succeeds
  - id: safe-mode
    kind: safe-mode
    timeout: 15m
    actions:
      - manual: Boot with F8, choose Safe Mode, check the event log
    # success:            # the probe that tells the machine is back; add yours
    #   run: [/usr/local/sbin/probe-boot, HOSTNAME]
    #   timeout: 5m
  - id: last-known-good
    kind: last-known-good
    timeout: 15m
    actions:
      - manual: Boot with F8, choose Last Known Good Configuration
    # success:
    #   run: [/usr/local/sbin/probe-boot, HOSTNAME]
  - id: asr
    kind: asr           # its steps come from the disks, volumes and backup above
    # success:
    #   run: [/usr/local/sbin/probe-boot, HOSTNAME]
";
