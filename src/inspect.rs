//! `rplan inspect`: what is on disks or disk images now, as the runtime's
//! inspection sees it (the same view dry-run's "before" and apply's
//! refusals use). Read-only.

use crate::exit;
use rplan_compiler::codes;
use rplan_runtime::events::printable;
use rplan_runtime::inspect::{self, approx_bytes, Inspection};
use rplan_runtime::target::{self, Access};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Disks or disk image files to look at (opened read-only).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// `json`: one object, `{"disks":[{"path":…, …}]}`.
    #[arg(long, value_enum, default_value = "human")]
    format: InspectFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum InspectFormat {
    Human,
    Json,
}

pub fn run(args: InspectArgs) -> u8 {
    let mut found = Vec::new();
    let mut code = exit::OK;
    for path in &args.paths {
        let result = target::open_target(path, Access::ReadOnly)
            .map_err(|e| e.to_string())
            .and_then(|dev| inspect::inspect(dev.as_ref(), path).map_err(|e| e.to_string()));
        match result {
            Ok(i) => found.push((path, i)),
            Err(e) => {
                eprintln!(
                    "error[{}]: cannot inspect {}: {e}",
                    codes::CANNOT_READ,
                    path.display()
                );
                code = exit::USAGE;
            }
        }
    }
    match args.format {
        InspectFormat::Json => {
            let disks: Vec<serde_json::Value> = found
                .iter()
                .map(|(p, i)| {
                    let mut v = serde_json::to_value(i).unwrap_or_default();
                    v["path"] = serde_json::json!(p.display().to_string());
                    v
                })
                .collect();
            println!("{}", serde_json::json!({ "disks": disks }));
        }
        InspectFormat::Human => {
            for (p, i) in &found {
                print!("{}", render(&p.display().to_string(), i));
            }
        }
    }
    code
}

fn render(path: &str, i: &Inspection) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{} ({}, {}-byte sectors)\n",
        printable(path),
        approx_bytes(i.size),
        i.sector_size
    );
    if i.is_blank() {
        out.push_str("  blank: no partition table, no signature\n");
    }
    for line in i.findings() {
        let _ = writeln!(out, "  {}", printable(&line));
    }
    out
}
