//! `rplan init`: a starter plan that `check` rejects until its TODOs are
//! filled, and accepts once they are (filled with sed, the image made with
//! zstd and hashed with sha256sum); the interactive path is driven through
//! a pseudo-terminal (util-linux `script`).

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// A zstd-compressed system image in `dir`: (file name, size, sha256 of the
/// decompressed bytes).
fn system_image(dir: &Path) -> (String, String, String) {
    let raw = dir.join("sys.img");
    std::fs::write(&raw, noise(4 * MIB as usize, 3)).unwrap();
    let sha = sha(&raw);
    tool("zstd", &["-q", "--rm", raw.to_str().unwrap()]);
    ("sys.img.zst".into(), "4MiB".into(), sha)
}

/// Fill the TODOs the way a person would, with sed.
fn fill(plan: &Path, image: &(String, String, String)) {
    let (path, size, sha) = image;
    tool(
        "sed",
        &[
            "-i",
            "-e",
            "s/TODO-backup-dir/backups/",
            "-e",
            &format!("s/TODO-system.img.zst/{path}/"),
            "-e",
            &format!("s/TODO-size/{size}/"),
            "-e",
            &format!("s/TODO-sha256/{sha}/"),
            plan.to_str().unwrap(),
        ],
    );
}

#[test]
fn the_starter_plan_checks_once_its_todos_are_filled() {
    let dir = tempfile::tempdir().unwrap();
    let run = Rplan::new()
        .args([
            "init",
            "--name",
            "pc07",
            "--build",
            "sp1-slipstream",
            "--language",
            "de",
        ])
        .args(["--edition", "home", "--disk-size", "40GiB"])
        .in_dir(dir.path())
        .run()
        .code(0);
    assert!(run.stderr.contains("TODO"), "{}", run.stderr);
    let plan = dir.path().join("plan.yaml");
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.starts_with("# yaml-language-server: $schema=https://"));
    assert!(text.contains("build: \"sp1-slipstream\"") && text.contains("edition: home"));

    // As written, check refuses it, pointing at the TODO lines.
    let todo_lines: Vec<i64> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(": TODO-"))
        .map(|(i, _)| i as i64 + 1)
        .collect();
    assert_eq!(todo_lines.len(), 4, "{text}");
    let run = Rplan::new()
        .args(["check", "--format", "json", "plan.yaml"])
        .in_dir(dir.path())
        .run()
        .code(1);
    let lines: Vec<i64> = codes_at(&run).iter().map(|c| c.1).collect();
    for l in &lines {
        assert!(
            todo_lines.contains(l),
            "error on line {l}, not a TODO line: {}",
            run.stdout
        );
    }

    // Filled in: clean.
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let image = system_image(&backups);
    fill(&plan, &image);
    let run = Rplan::new()
        .args(["check", "--strict", "plan.yaml"])
        .in_dir(dir.path())
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("1 plan checked: 1 clean"),
        "{}",
        run.stderr
    );
}

#[test]
fn init_refuses_to_overwrite_and_bad_answers() {
    let dir = tempfile::tempdir().unwrap();
    Rplan::new()
        .args(["init", "p.yaml"])
        .in_dir(dir.path())
        .run()
        .code(0);
    let run = Rplan::new()
        .args(["init", "p.yaml"])
        .in_dir(dir.path())
        .run()
        .code(2);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    Rplan::new()
        .args(["init", "p.yaml", "--force", "--name", "other"])
        .in_dir(dir.path())
        .run()
        .code(0);
    assert!(std::fs::read_to_string(dir.path().join("p.yaml"))
        .unwrap()
        .contains("name: \"other\""));
    let run = Rplan::new()
        .args(["init", "-", "--build", "vista"])
        .run()
        .code(2);
    assert!(
        run.stderr.contains("sp2-slipstream"),
        "lists the builds: {}",
        run.stderr
    );
    Rplan::new()
        .args(["init", "-", "--language", "EN"])
        .run()
        .code(2);
    Rplan::new()
        .args(["init", "-", "--disk-size", "1G"])
        .run()
        .code(2);
    let printed = Rplan::new().args(["init", "-"]).run().code(0);
    assert!(printed.stdout.contains("kind: asr"));
}

#[test]
fn init_asks_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    // Name typed; builds, language and edition by Enter (the defaults);
    // architecture one down (x64); disk size typed.
    let keys = "pc42\n\n\n\n\n\x1b[B\n60GiB\n";
    let mut child = Command::new("script")
        .args(["-qec", &format!("{} init asked.yaml", bin()), "/dev/null"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(keys.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("Machine name"), "{screen}");
    let text = std::fs::read_to_string(dir.path().join("asked.yaml"))
        .unwrap_or_else(|e| panic!("no plan written ({e}):\n{screen}"));
    assert!(text.contains("name: \"pc42\""), "{text}");
    assert!(text.contains("arch: x64"), "{text}");
    assert!(text.contains("size: \"60GiB\""), "{text}");
    assert!(text.contains("build: \"sp2-slipstream\""), "{text}");
    // The same TODO-filling makes it pass.
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    fill(&dir.path().join("asked.yaml"), &system_image(&backups));
    Rplan::new()
        .args(["check", "asked.yaml"])
        .in_dir(dir.path())
        .run()
        .code(0);
}
