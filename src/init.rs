//! `rplan init`: write a commented starter plan. On a terminal it asks
//! (dialoguer); otherwise, or with `--no-input`, it takes its flags and
//! defaults. What it cannot know (where the backup is, the image's size and
//! sha256) is left as `TODO` markers that `check` rejects until filled.

use crate::exit;
use rplan_compiler::RuleSet;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InitArgs {
    /// Where to write the plan; `-` prints it on stdout.
    #[arg(value_name = "FILE", default_value = "plan.yaml")]
    output: PathBuf,
    /// The machine's name (the plan's `name`).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The Windows XP build at backup time, a build id of the ruleset
    /// (`rplan rules` lists them), e.g. sp2-slipstream.
    #[arg(long, value_name = "BUILD")]
    build: Option<String>,
    /// The restore media's build id (default: the same as --build).
    #[arg(long, value_name = "BUILD")]
    media_build: Option<String>,
    /// The system's language, ISO 639-1 (e.g. en, de).
    #[arg(long, value_name = "LANG")]
    language: Option<String>,
    /// The Windows XP edition.
    #[arg(long, value_enum)]
    edition: Option<Edition>,
    /// 32-bit (x86) or 64-bit (x64) Windows XP.
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// The system disk's size: the smallest disk the plan fits (e.g. 80GiB).
    #[arg(long, value_name = "SIZE")]
    disk_size: Option<String>,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    /// Never ask, even on a terminal: flags and defaults only.
    #[arg(long)]
    no_input: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Edition {
    Home,
    Professional,
    MediaCenter,
    Tablet,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Arch {
    X86,
    X64,
}

/// The answers a starter plan is made of.
struct Answers {
    name: String,
    build: String,
    media_build: String,
    language: String,
    edition: Edition,
    arch: Arch,
    disk_size: String,
}

const DEFAULT_BUILD: &str = "sp2-slipstream";

pub fn run(args: InitArgs) -> u8 {
    let to_stdout = args.output.as_os_str() == "-";
    if !to_stdout && !args.force && args.output.exists() {
        eprintln!(
            "error: {} exists; pass --force to replace it",
            args.output.display()
        );
        return exit::USAGE;
    }
    let rules = match RuleSet::load(&[]) {
        Ok(r) => r,
        Err(_) => {
            eprintln!("error: the built-in ruleset does not load");
            return exit::USAGE;
        }
    };
    let interactive =
        !args.no_input && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let answers = if interactive {
        match ask(&args, &rules) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USAGE;
            }
        }
    } else {
        from_flags(&args)
    };
    if let Err(e) = validate(&answers, &rules) {
        eprintln!("error: {e}");
        return exit::USAGE;
    }
    let text = render(&answers);
    if to_stdout {
        return crate::write_output(None, text.as_bytes());
    }
    let code = crate::write_output(Some(&args.output), text.as_bytes());
    if code == exit::OK && !crate::ui::quiet() {
        eprintln!(
            "wrote {}: fill in its TODOs, then run `rplan check {}`",
            args.output.display(),
            args.output.display()
        );
    }
    code
}

fn from_flags(args: &InitArgs) -> Answers {
    let build = args.build.clone().unwrap_or_else(|| DEFAULT_BUILD.into());
    Answers {
        name: args.name.clone().unwrap_or_else(|| "pc01".into()),
        media_build: args.media_build.clone().unwrap_or_else(|| build.clone()),
        build,
        language: args.language.clone().unwrap_or_else(|| "en".into()),
        edition: args.edition.unwrap_or(Edition::Professional),
        arch: args.arch.unwrap_or(Arch::X86),
        disk_size: args.disk_size.clone().unwrap_or_else(|| "80GiB".into()),
    }
}

/// Ask on the terminal, offering the flags (or defaults) as answers.
fn ask(args: &InitArgs, rules: &RuleSet) -> Result<Answers, dialoguer::Error> {
    use dialoguer::{Input, Select};
    let d = from_flags(args);
    let name: String = Input::new()
        .with_prompt("Machine name")
        .default(d.name)
        .validate_with(|s: &String| check_name(s))
        .interact_text()?;
    let pick = |prompt: &str, builds: Vec<&rplan_compiler::rules::Build>, default: &str| {
        let labels: Vec<String> = builds
            .iter()
            .map(|b| format!("{} ({})", b.id, b.backup))
            .collect();
        let at = builds.iter().position(|b| b.id == default).unwrap_or(0);
        Select::new()
            .with_prompt(prompt)
            .items(&labels)
            .default(at)
            .interact()
            .map(|i| builds.get(i).map(|b| b.id.clone()).unwrap_or_default())
    };
    let build = pick(
        "Windows XP build at backup time",
        rules.backup_builds(),
        &d.build,
    )?;
    let media_default = args.media_build.clone().unwrap_or_else(|| build.clone());
    let media_build = pick("Restore media build", rules.media_builds(), &media_default)?;
    let language: String = Input::new()
        .with_prompt("Language (ISO 639-1)")
        .default(d.language)
        .validate_with(|s: &String| check_language(s))
        .interact_text()?;
    let editions = [
        Edition::Home,
        Edition::Professional,
        Edition::MediaCenter,
        Edition::Tablet,
    ];
    let edition = Select::new()
        .with_prompt("Edition")
        .items(["home", "professional", "media-center", "tablet"])
        .default(editions.iter().position(|e| *e == d.edition).unwrap_or(1))
        .interact()?;
    let arch = Select::new()
        .with_prompt("Architecture")
        .items(["x86 (32-bit)", "x64 (64-bit)"])
        .default(usize::from(d.arch == Arch::X64))
        .interact()?;
    let disk_size: String = Input::new()
        .with_prompt("System disk size (the smallest disk it fits)")
        .default(d.disk_size)
        .validate_with(|s: &String| check_size(s))
        .interact_text()?;
    Ok(Answers {
        name,
        build,
        media_build,
        language,
        edition: editions
            .get(edition)
            .copied()
            .unwrap_or(Edition::Professional),
        arch: if arch == 1 { Arch::X64 } else { Arch::X86 },
        disk_size,
    })
}

fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > 128 || s.chars().any(char::is_control) {
        Err("a name of 1 to 128 printable characters".into())
    } else {
        Ok(())
    }
}

fn check_language(s: &str) -> Result<(), String> {
    if s.len() == 2 && s.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!(
            "`{s}` is not an ISO 639-1 code (two lowercase letters, e.g. en)"
        ))
    }
}

fn check_size(s: &str) -> Result<(), String> {
    match rplan_compiler::size::Size::parse(s).map(|z| z.bytes(512)) {
        Ok(Some(b)) if b > 0 => Ok(()),
        Ok(_) => Err(format!("`{s}` is not a disk size")),
        Err(e) => Err(e
            .help
            .map_or(e.message.clone(), |h| format!("{}: {h}", e.message))),
    }
}

fn validate(a: &Answers, rules: &RuleSet) -> Result<(), String> {
    check_name(&a.name).map_err(|e| format!("--name: {e}"))?;
    check_language(&a.language).map_err(|e| format!("--language: {e}"))?;
    check_size(&a.disk_size).map_err(|e| format!("--disk-size: {e}"))?;
    for (flag, build, known) in [
        ("--build", &a.build, rules.backup_builds()),
        ("--media-build", &a.media_build, rules.media_builds()),
    ] {
        if !known.iter().any(|b| b.id == *build) {
            let ids: Vec<&str> = known.iter().map(|b| b.id.as_str()).collect();
            return Err(format!(
                "{flag} {build}: not a build of the ruleset (one of: {})",
                ids.join(", ")
            ));
        }
    }
    Ok(())
}

/// A 32-bit MBR disk signature that differs from run to run (the plan's
/// own, so apply can recognise its disk later).
fn signature() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() as u32).max(1)
}

/// YAML scalars: quoted through JSON (a JSON string is a YAML string).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn render(a: &Answers) -> String {
    let edition = match a.edition {
        Edition::Home => "home",
        Edition::Professional => "professional",
        Edition::MediaCenter => "media-center",
        Edition::Tablet => "tablet",
    };
    let arch = match a.arch {
        Arch::X86 => "x86",
        Arch::X64 => "x64",
    };
    format!(
        r#"# yaml-language-server: $schema=https://raw.githubusercontent.com/rplan/rplan/main/schemas/plan.schema.json
#
# Recovery plan for {name}, started by `rplan init`. Fill in every TODO
# (`grep -n TODO` finds them), then: rplan check THIS-FILE
#
# The ladder below tries the gentle stages first (Safe Mode, then Last Known
# Good Configuration) and only then ASR, which repartitions disk0 and
# restores the system image. See DESIGN.md for every field.
version: 1
name: {name}
system:                     # the machine when the backup was taken
  os: windows-xp
  edition: {edition}
  arch: {arch}
  build: {build}
  language: {language}
media:                      # the restore media (CD) ASR boots from
  build: {media}
backup:
  id: full-backup
  root: TODO-backup-dir     # TODO: the backup's directory, relative to this file
  artifacts:
    - id: system-image
      path: TODO-system.img.zst  # TODO: the system partition's image, in root
      format: raw-zstd           # raw | raw-zstd
      size: TODO-size            # TODO: bytes once decompressed, e.g. 20GiB
      sha256: TODO-sha256        # TODO: sha256 of the decompressed image (zstdcat F | sha256sum)
disks:
  - id: disk0               # apply names its target: --target disk0=/dev/sdX
    critical: true          # needed to start the computer
    table: mbr              # Windows XP boots from MBR disks only
    signature: "0x{signature:08x}"   # the disk signature Windows knows the disk by
    size: {disk_size}       # the smallest disk this plan fits
    partitions:
      - id: system
        size: rest          # the remainder of the disk
        type: ntfs
        bootable: true
        content:
          image: system-image
stages:                     # tried in order until one succeeds
  - id: safe-mode
    kind: safe-mode
    actions:
      - manual: Boot with F8, choose Safe Mode, check the event log
  - id: last-known-good
    kind: last-known-good
    actions:
      - manual: Boot with F8, choose Last Known Good Configuration
  - id: asr
    kind: asr               # its steps come from disks and backup
"#,
        name = q(&a.name),
        build = q(&a.build),
        media = q(&a.media_build),
        language = q(&a.language),
        disk_size = q(&a.disk_size),
        signature = signature(),
    )
}
