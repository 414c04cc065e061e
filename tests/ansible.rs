//! The Ansible role (`contrib/ansible/`) run by `ansible-playbook` against
//! local inventory hosts: `contrib/ansible/test.sh` does the work and judges
//! it with sfdisk, cmp and sha256sum; this test runs it with the binary
//! under test, so that `cargo test` is the one test command.
//!
//! ansible-core comes from PyPI: `.ci/run` installs it into
//! `target/ansible-venv` and sets `RPLAN_REQUIRE_ANSIBLE=1`, which turns a
//! missing `ansible-playbook` from a skip into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn ansible_bin_dir(repo: &Path) -> Option<PathBuf> {
    let venv = repo.join("target/ansible-venv/bin");
    if venv.join("ansible-playbook").is_file() {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("ansible-playbook").is_file())
}

#[test]
fn ansible_role_checks_dry_runs_and_applies_a_fleet() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(bin_dir) = ansible_bin_dir(repo) else {
        assert!(
            std::env::var_os("RPLAN_REQUIRE_ANSIBLE").is_none(),
            "RPLAN_REQUIRE_ANSIBLE is set but ansible-playbook is neither in \
             target/ansible-venv/bin nor on PATH"
        );
        eprintln!(
            "SKIP: ansible-playbook not found (pip install ansible-core, or run .ci/run)"
        );
        return;
    };
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .expect("PATH entries join");
    let out = Command::new("bash")
        .arg(repo.join("contrib/ansible/test.sh"))
        .env("PATH", path)
        .env("RPLAN", env!("CARGO_BIN_EXE_rplan"))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "contrib/ansible/test.sh failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
