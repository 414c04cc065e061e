//! `rplan verify`: compare targets with a plan and report drift in the
//! dry-run's style. Exit 0 same, 1 drift, 2 usage or I/O error. Read-only.

use crate::apply::{load_plan, parse_target};
use crate::{exit, CompileFlags};
use rplan_compiler::codes;
use rplan_runtime::events::printable;
use rplan_runtime::executor::TargetArg;
use rplan_runtime::verify::{self, Drift};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// A plan (YAML) or a compiled plan (JSON from `rplan compile`).
    plan: PathBuf,
    /// DISK=PATH: the device or image file that should match the plan's
    /// disk DISK (opened read-only); repeat for each disk to compare.
    #[arg(long = "target", value_name = "DISK=PATH", value_parser = parse_target, required = true)]
    targets: Vec<TargetArg>,
    /// Also hash every restored range against its artifact's sha256 (reads
    /// the images' bytes on the targets, a dynamic volume's through its
    /// layout; the artifacts are not needed).
    #[arg(long)]
    content: bool,
    /// `json`: one object, `{"same":bool,"drift":[{change,item,field,plan,found}]}`.
    #[arg(long, value_enum, default_value = "human")]
    format: VerifyFormat,
    #[command(flatten)]
    flags: CompileFlags,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VerifyFormat {
    Human,
    Json,
}

pub fn run(mut args: VerifyArgs) -> u8 {
    // The plan's hashes are what targets are compared with: the backup
    // store itself need not be at hand.
    args.flags.no_artifacts = true;
    let plan = match load_plan(&args.plan, &args.flags) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut drift: Vec<Drift> = Vec::new();
    for t in &args.targets {
        let Some(disk) = plan.disk(&t.disk) else {
            eprintln!(
                "error[{}]: the plan has no disk `{}` (its disks: {})",
                codes::CANNOT_READ,
                printable(&t.disk),
                plan.disks
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return exit::USAGE;
        };
        match verify::verify_disk(&plan, disk, &t.path, args.content) {
            Ok(d) => drift.extend(d),
            Err(e) => {
                eprintln!(
                    "error[{}]: cannot compare {}: {e}",
                    codes::CANNOT_READ,
                    t.path.display()
                );
                return exit::USAGE;
            }
        }
    }
    let given: Vec<(usize, &std::path::Path)> = args
        .targets
        .iter()
        .filter_map(|t| {
            let di = plan.disks.iter().position(|d| d.id == t.disk)?;
            Some((di, t.path.as_path()))
        })
        .collect();
    match verify::verify_volumes(&plan, &given, args.content) {
        Ok(d) => drift.extend(d),
        Err(e) => {
            eprintln!(
                "error[{}]: cannot compare the dynamic volumes: {e}",
                codes::CANNOT_READ
            );
            return exit::USAGE;
        }
    }
    match args.format {
        VerifyFormat::Json => println!(
            "{}",
            serde_json::json!({ "same": drift.is_empty(), "drift": drift })
        ),
        VerifyFormat::Human => {
            if drift.is_empty() {
                println!("no drift: the targets match the plan");
            }
            for d in &drift {
                println!("{}", printable(&d.line()));
            }
        }
    }
    if drift.is_empty() {
        exit::OK
    } else {
        exit::ERRORS
    }
}
