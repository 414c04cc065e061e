//! `rplan completions SHELL` and `rplan man`: shell completion scripts
//! (clap_complete) and manual pages (clap_mangen), both generated from the
//! same clap definition as `--help`, so they cannot drift from it.

use crate::exit;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for. Bash: `source <(rplan
    /// completions bash)`, or save it as
    /// /usr/share/bash-completion/completions/rplan.
    #[arg(value_enum, value_name = "SHELL")]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write rplan.1 and one page per subcommand (rplan-check.1, …) into
    /// this directory instead of printing rplan.1 on stdout.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> u8 {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "rplan", &mut out);
    crate::write_output(None, &out)
}

pub fn man(args: ManArgs, cmd: clap::Command) -> u8 {
    match args.dir {
        Some(dir) => match clap_mangen::generate_to(cmd, &dir) {
            Ok(()) => exit::OK,
            Err(e) => {
                eprintln!("error: cannot write manual pages to {}: {e}", dir.display());
                exit::USAGE
            }
        },
        None => {
            let mut out = Vec::new();
            if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
                eprintln!("error: cannot render the manual page: {e}");
                return exit::USAGE;
            }
            crate::write_output(None, &out)
        }
    }
}
