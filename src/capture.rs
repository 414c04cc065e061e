//! `rplan capture`: describe disks (or an `sfdisk -d` dump) as a plan and,
//! with `--backup`, image their partitions into artifacts. The sources are
//! opened read-only. Exit 0, or 2 (usage or I/O error).

use crate::exit;
use rplan_runtime::capture::{self, backup, Captured, Machine};
use rplan_runtime::target::{self, Access};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Where the modeline points editors for the plan's schema (its `$id`).
const SCHEMA_URL: &str = "https://rplan.dev/schemas/plan.schema.json";

#[derive(clap::Args)]
pub struct CaptureArgs {
    /// A disk to describe, as ID=PATH (a block device or a disk image),
    /// opened read-only; repeat for more disks. The ID names the disk in
    /// the plan (and `--target ID=…` when applying it).
    #[arg(long = "disk", value_name = "ID=PATH", value_parser = parse_disk,
          required_unless_present = "from_sfdisk", conflicts_with = "from_sfdisk")]
    disks: Vec<(String, PathBuf)>,
    /// Describe the disk of an `sfdisk -d` dump instead (MBR or GPT):
    /// a plan without artifacts. Its size is the end of the last partition
    /// unless `--size` says it.
    #[arg(long, value_name = "FILE")]
    from_sfdisk: Option<PathBuf>,
    /// With --from-sfdisk: the disk's size (e.g. 80GiB); default: just
    /// large enough for the dump's partitions and a GPT's backup header.
    #[arg(long, value_name = "SIZE", requires = "from_sfdisk")]
    size: Option<String>,
    /// Where to write the plan (`-` for stdout).
    #[arg(short, long, value_name = "PLAN")]
    output: PathBuf,
    /// Image every partition into artifacts in DIR (created if missing):
    /// NTFS, FAT and ext2/3/4 used blocks only through partclone
    /// (`partclone-zstd`), anything else whole (`raw-zstd`), and each MBR
    /// disk's LBA 0 as its `boot_code`, and each dynamic volume (read from
    /// the disks' LDM database) as one `raw-zstd` artifact of its logical
    /// bytes. Without it, filesystems are described as `format:` (ASR
    /// makes them anew, empty).
    #[arg(long, value_name = "DIR", conflicts_with = "from_sfdisk")]
    backup: Option<PathBuf>,
    /// The backup set's id (default: `capture-YYYY-MM-DD`).
    #[arg(long, value_name = "ID", requires = "backup")]
    backup_id: Option<String>,
    /// The plan's `name` (default: the plan file's name without `.yaml`).
    #[arg(long)]
    name: Option<String>,
    /// `system.build`: the Windows XP build at backup time (`rplan rules`
    /// lists them). Without it the plan carries a TODO that check reports.
    #[arg(long, value_name = "BUILD")]
    build: Option<String>,
    /// `media.build`: the restore CD's build (default: --build).
    #[arg(long, value_name = "BUILD")]
    media: Option<String>,
    /// `system.language`: ISO 639-1 code (e.g. `en`). Without it the plan
    /// carries a TODO that check reports.
    #[arg(long, value_name = "CODE")]
    language: Option<String>,
    /// `system.edition`: home, professional, media-center or tablet.
    #[arg(long, value_parser = ["home", "professional", "media-center", "tablet"])]
    edition: Option<String>,
    /// `system.arch`: x86 or x64 (default: x64 when a disk is GPT).
    #[arg(long, value_parser = ["x86", "x64"])]
    arch: Option<String>,
}

fn parse_disk(s: &str) -> Result<(String, PathBuf), String> {
    let (id, path) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected ID=PATH, e.g. disk0=/dev/sdb"))?;
    let ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok || path.is_empty() {
        return Err(format!(
            "`{s}`: the ID is letters, digits, `.`, `_`, `-` (starting with a letter or digit), then =PATH"
        ));
    }
    Ok((id.to_string(), PathBuf::from(path)))
}

fn fail(what: impl std::fmt::Display) -> u8 {
    eprintln!("error[{}]: {what}", rplan_compiler::codes::CANNOT_READ);
    exit::USAGE
}

pub fn run(args: CaptureArgs) -> u8 {
    let plan_dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = args.name.clone().unwrap_or_else(|| {
        args.output
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty() && s != "-")
            .unwrap_or_else(|| "captured".to_string())
    });
    let machine = Machine {
        name,
        build: args.build.clone(),
        media: args.media.clone(),
        language: args.language.clone(),
        edition: args.edition.clone(),
        arch: args.arch.clone(),
    };
    let mut captured = Captured::default();
    if let Some(dump) = &args.from_sfdisk {
        let text = match std::fs::read_to_string(dump) {
            Ok(t) => t,
            Err(e) => return fail(format!("cannot read {}: {e}", dump.display())),
        };
        match capture::sfdisk::parse(&text, args.size.as_deref()) {
            Ok(d) => captured.disks.push(d),
            Err(e) => return fail(format!("{}: {e}", dump.display())),
        }
    }
    let mut seen = Vec::new();
    for (id, path) in &args.disks {
        if seen.contains(id) {
            return fail(format!("disk id `{id}` given twice"));
        }
        seen.push(id.clone());
        let dev = match target::open_target(path, Access::ReadOnly) {
            Ok(d) => d,
            Err(e) => return fail(format!("cannot open {}: {e}", path.display())),
        };
        match capture::read_disk(id, dev.as_ref(), path) {
            Ok(d) => captured.disks.push(d),
            Err(e) => return fail(format!("cannot describe {}: {e}", path.display())),
        }
    }
    captured.volumes = capture::volumes::collect(&mut captured.disks);
    // Every disk again, read-only, for reading through a volume.
    let open_all = || -> Result<Vec<Box<dyn target::Device>>, String> {
        args.disks
            .iter()
            .map(|(_, path)| {
                target::open_target(path, Access::ReadOnly)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))
            })
            .collect()
    };
    for v in &mut captured.volumes {
        let devs = match open_all() {
            Ok(d) => d,
            Err(e) => return fail(e),
        };
        match capture::volumes::VolumeDevice::new(devs, v) {
            Some(vol) => match capture::volumes::probe_fs(&vol) {
                Ok(fs) => v.fs = fs,
                Err(e) => return fail(format!("reading volume {}: {e}", v.name)),
            },
            None => {
                return fail(format!(
                    "volume {}: its members do not make a volume on these disks",
                    v.name
                ))
            }
        }
    }
    if let Some(dir) = &args.backup {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return fail(format!("cannot create {}: {e}", dir.display()));
        }
        let root = match backup::relative(&plan_dir, dir) {
            Ok(r) => r,
            Err(e) => return fail(format!("{}: {e}", dir.display())),
        };
        let mut set = backup::BackupSet {
            id: args
                .backup_id
                .clone()
                .unwrap_or_else(|| format!("capture-{}", today())),
            root,
            artifacts: Vec::new(),
        };
        let mut progress = backup::progress_bar(std::io::stderr().is_terminal());
        for (disk, (_, path)) in captured.disks.iter_mut().zip(&args.disks) {
            let dev = match target::open_target(path, Access::ReadOnly) {
                Ok(d) => d,
                Err(e) => return fail(format!("cannot open {}: {e}", path.display())),
            };
            if let Err(e) =
                backup::back_up_disk(disk, dev.as_ref(), path, dir, &mut set, &mut progress)
            {
                return fail(format!("backing up {}: {e}", path.display()));
            }
        }
        for v in &mut captured.volumes {
            let devs = match open_all() {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            let Some(vol) = capture::volumes::VolumeDevice::new(devs, v) else {
                continue;
            };
            if let Err(e) = capture::volumes::back_up(&vol, v, dir, &mut set, &mut progress) {
                return fail(format!("backing up volume {}: {e}", v.name));
            }
        }
        captured.backup = Some(set);
    }
    let text = captured.to_yaml(&machine, SCHEMA_URL);
    let code = crate::write_output(Some(&args.output), text.as_bytes());
    if code == exit::OK && args.output != Path::new("-") {
        eprintln!(
            "wrote {} ({} disk{}{}); check it with `rplan check {}`",
            args.output.display(),
            captured.disks.len(),
            crate::plural(captured.disks.len()),
            captured
                .backup
                .as_ref()
                .map(|b| format!(", {} artifacts", b.artifacts.len()))
                .unwrap_or_default(),
            args.output.display()
        );
    }
    code
}

/// Today's date (UTC) as YYYY-MM-DD, for the default backup id.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
