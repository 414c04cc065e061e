//! Terminal habits: `NO_COLOR` and `--color`, `-q`, check's summary line,
//! `-` for standard input, compile and graph output, and `--help` that
//! describes every argument. Each test runs the real binary; colour on a
//! terminal is judged through `script` (util-linux), SVG by Graphviz's own
//! output.

mod common;
use common::*;
use std::path::PathBuf;
use std::process::Command;

const ESC: &str = "\x1b[";

fn examples() -> PathBuf {
    root().join("examples")
}

fn invalid(name: &str) -> String {
    root()
        .join("tests/data/invalid")
        .join(name)
        .display()
        .to_string()
}

fn example_path(name: &str) -> String {
    examples().join(name).display().to_string()
}

#[test]
fn check_ends_with_a_summary_of_which_plans_were_clean() {
    let run = Rplan::new()
        .args(["check", "workstation-mbr.yaml", "gpt-workstation.yaml"])
        .arg(invalid("asr-not-last.yaml"))
        .in_dir(examples())
        .run()
        .code(1);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last, "3 plans checked: 2 clean, 1 with errors",
        "{}",
        run.stderr
    );

    // A clean run is no longer silent…
    let run = Rplan::new()
        .args(["check", "workstation-mbr.yaml"])
        .in_dir(examples())
        .run()
        .code(0);
    assert_eq!(run.stderr.trim(), "1 plan checked: 1 clean");
    assert!(run.stdout.is_empty());

    // …unless asked to be.
    let run = Rplan::new()
        .args(["check", "-q", "workstation-mbr.yaml"])
        .in_dir(examples())
        .run()
        .code(0);
    assert_eq!(run.stderr, "");
    // -q keeps errors, drops the tallies.
    let run = Rplan::new()
        .args(["--quiet", "check"])
        .arg(invalid("asr-not-last.yaml"))
        .run()
        .code(1);
    assert!(run.stderr.contains("RP04"), "{}", run.stderr);
    assert!(!run.stderr.contains("checked"), "{}", run.stderr);

    // JSON keeps its shape and gains a per-plan tally.
    let run = Rplan::new()
        .args(["check", "--format", "json", "workstation-mbr.yaml"])
        .arg(invalid("asr-not-last.yaml"))
        .in_dir(examples())
        .run()
        .code(1);
    let v = run.json();
    assert!(v["diagnostics"].is_array() && v["errors"].as_u64() > Some(0));
    let plans = v["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 2);
    assert_eq!(plans[0]["file"], "workstation-mbr.yaml");
    assert_eq!(plans[0]["errors"], 0);
    assert!(plans[1]["errors"].as_u64() > Some(0));
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn warnings_count_as_their_own_kind_of_plan() {
    // A plan with only warnings: not clean, not failed.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("workstation-mbr.yaml")).unwrap();
    let p = dir.path().join("warn.yaml");
    // An artifact nothing uses is a warning (RP0506).
    let text = text.replacen(
        "  artifacts:\n",
        "  artifacts:\n    - { id: spare, path: asr.sif, format: file, sha256: \"0000000000000000000000000000000000000000000000000000000000000000\" }\n",
        1,
    );
    std::fs::write(
        &p,
        text.replace(
            "root: backups/",
            &format!("root: {}/backups/", examples().display()),
        ),
    )
    .unwrap();
    let run = Rplan::new()
        .args(["check", "--no-artifacts", "warn.yaml"])
        .in_dir(dir.path())
        .run();
    let last = run.stderr.lines().last().unwrap_or_default().to_string();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(last, "1 plan checked: 1 with warnings", "{}", run.stderr);
    // -q drops warnings entirely.
    let quiet = Rplan::new()
        .args(["check", "-q", "--no-artifacts", "warn.yaml"])
        .in_dir(dir.path())
        .run()
        .code(0);
    assert_eq!(quiet.stderr, "");
}

/// Run rplan on a pseudo-terminal (util-linux `script`), as a person would.
fn on_terminal(args: &str, no_color: Option<&str>) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{} {args}", bin()), "/dev/null"])
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect("script (util-linux) runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_follows_the_terminal_no_color_and_the_flag() {
    let bad = invalid("asr-not-last.yaml");
    // On a terminal: colour, unless NO_COLOR is set (to anything but "").
    assert!(on_terminal(&format!("check {bad}"), None).contains(ESC));
    let plain = on_terminal(&format!("check {bad}"), Some("1"));
    assert!(plain.contains("RP04"), "{plain}");
    assert!(!plain.contains(ESC), "NO_COLOR ignored: {plain:?}");
    assert!(on_terminal(&format!("check {bad}"), Some("")).contains(ESC));
    // --color never beats the terminal; --color always beats NO_COLOR.
    assert!(!on_terminal(&format!("--color never check {bad}"), None).contains(ESC));
    assert!(on_terminal(&format!("check --color always {bad}"), Some("1")).contains(ESC));

    // clap's own help and usage errors follow the same rules.
    assert!(on_terminal("--help", None).contains(ESC));
    assert!(!on_terminal("--help", Some("1")).contains(ESC));
    assert!(!on_terminal("check --help --color never", None).contains(ESC));
    assert!(!on_terminal("check --color=never --bogus", None).contains(ESC));

    // Through a pipe: plain by default, coloured when asked.
    let piped = Rplan::new().args(["check", &bad]).run().code(1);
    assert!(!piped.stderr.contains(ESC));
    let forced = Rplan::new()
        .args(["check", "--color=always", &bad])
        .run()
        .code(1);
    assert!(forced.stderr.contains(ESC), "{}", forced.stderr);
    Rplan::new()
        .args(["check", "--color", "sometimes", &bad])
        .run()
        .code(2);
}

#[test]
fn a_plan_can_come_from_standard_input() {
    let text = std::fs::read(examples().join("workstation-mbr.yaml")).unwrap();
    // Artifact paths resolve against the current directory: from examples/
    // the backup is found…
    let run = Rplan::new()
        .args(["check", "-"])
        .stdin(text.clone())
        .in_dir(examples())
        .run()
        .code(0);
    assert!(run.stderr.contains("1 plan checked: 1 clean"));
    // …from elsewhere it is not, and the diagnostics name <stdin>.
    let dir = tempfile::tempdir().unwrap();
    let run = Rplan::new()
        .args(["check", "--format", "json", "-"])
        .stdin(text.clone())
        .in_dir(dir.path())
        .run()
        .code(1);
    let v = run.json();
    assert!(
        v["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["code"] == "RP0503"
                && d["file"] == "<stdin>"
                && d["line"].as_u64() > Some(0)),
        "{}",
        run.stdout
    );

    // compile from stdin is byte-identical to compile from the file.
    let from_file = Rplan::new()
        .args(["compile", "workstation-mbr.yaml"])
        .in_dir(examples())
        .run()
        .code(0);
    let from_stdin = Rplan::new()
        .args(["compile", "-"])
        .stdin(text.clone())
        .in_dir(examples())
        .run()
        .code(0);
    assert_eq!(from_file.stdout, from_stdin.stdout);
    assert!(from_file.json()["plan_hash"].is_string());

    // graph reads stdin too, and never the backup store.
    let run = Rplan::new()
        .args(["graph", "-"])
        .stdin(text.clone())
        .in_dir(dir.path())
        .run()
        .code(0);
    assert!(run.stdout.starts_with("digraph"));

    // apply from stdin: stdin is not a terminal, so it is refused unless --yes.
    let img = image(dir.path(), "d.img", 64 * MIB);
    let run = Rplan::new()
        .args(["apply", "-", "--no-artifacts"])
        .arg(format!("--target=disk0={}", img.display()))
        .stdin(text)
        .in_dir(examples())
        .run()
        .code(4);
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
}

#[test]
fn dry_run_reads_a_plan_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(2 * MIB as usize, 7);
    std::fs::write(dir.path().join("sys.img"), &data).unwrap();
    let sys = sha(&dir.path().join("sys.img"));
    let plan = format!(
        "version: 1\nname: piped\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: sys, path: sys.img, format: raw, size: 2MiB, sha256: {sys} }} ] }}\n\
disks:\n  - {{ id: d0, critical: true, table: mbr, signature: \"0x5117d00d\", size: 32MiB, partitions: [ {{ id: sys, size: 8MiB, type: ntfs, bootable: true, content: {{ image: sys }} }} ] }}\n\
stages:\n  - {{ id: asr, kind: asr }}\n"
    );
    let img = image(dir.path(), "d0.img", 32 * MIB);
    let before = sha(&img);
    let run = Rplan::new()
        .args(["dry-run", "-", "--target", "d0=d0.img"])
        .stdin(plan)
        .in_dir(dir.path())
        .run()
        .code(0);
    assert!(run.stdout.contains("nothing was written"), "{}", run.stdout);
    assert!(run.stdout.contains("timeline"), "{}", run.stdout);
    assert_eq!(before, sha(&img));
}

#[test]
fn compile_writes_stdout_by_default_and_a_file_with_o() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.json");
    let stdout = Rplan::new()
        .args(["compile", "workstation-mbr.yaml"])
        .in_dir(examples())
        .run()
        .code(0);
    let file = Rplan::new()
        .args(["compile", "workstation-mbr.yaml", "-o"])
        .arg(out.display().to_string())
        .in_dir(examples())
        .run()
        .code(0);
    assert!(file.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), stdout.stdout);
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok()
}

#[test]
fn graph_writes_files_and_svg_through_dot() {
    let dir = tempfile::tempdir().unwrap();
    let plan = example_path("workstation-mbr.yaml");
    let dot = dir.path().join("g.dot");
    Rplan::new()
        .args(["graph", &plan, "-o"])
        .arg(dot.display().to_string())
        .run()
        .code(0);
    let mermaid = Rplan::new()
        .args(["graph", "--format", "mermaid", &plan])
        .run()
        .code(0);
    assert!(
        mermaid.stdout.starts_with("flowchart"),
        "{}",
        mermaid.stdout
    );

    if have("dot") {
        // Graphviz accepts our dot source…
        let ours = tool("dot", &["-Tsvg", dot.to_str().unwrap()]);
        // …and rplan's SVG is what Graphviz draws from it.
        let svg = dir.path().join("g.svg");
        Rplan::new()
            .args(["graph", "--format", "svg", &plan, "--output"])
            .arg(svg.display().to_string())
            .run()
            .code(0);
        let drawn = std::fs::read_to_string(&svg).unwrap();
        assert_eq!(drawn, ours);
        assert!(drawn.contains("<svg") && drawn.contains("</svg>"));
    } else {
        eprintln!("skipped the SVG comparison: Graphviz's dot is not installed");
    }

    // Without dot on PATH: a clear message, exit 2, nothing on stdout.
    let empty = tempfile::tempdir().unwrap();
    let run = Rplan::new()
        .args(["graph", "--format", "svg", &plan])
        .env("PATH", empty.path().to_str().unwrap())
        .run()
        .code(2);
    assert!(
        run.stderr.contains("RP0602") && run.stderr.contains("graphviz"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn graph_needs_no_backup_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        examples().join("workstation-mbr.yaml"),
        dir.path().join("p.yaml"),
    )
    .unwrap();
    // check reads artifacts and misses them…
    Rplan::new()
        .args(["check", "p.yaml"])
        .in_dir(dir.path())
        .run()
        .code(1);
    // …graph does not need them.
    let run = Rplan::new()
        .args(["graph", "p.yaml"])
        .in_dir(dir.path())
        .run()
        .code(0);
    assert!(run.stdout.starts_with("digraph"));
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// Subcommands as `rplan --help` lists them.
fn subcommands() -> Vec<String> {
    let help = Rplan::new().arg("--help").run().code(0).stdout;
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

/// The argument lines of a `--help` page that have no description: a line
/// naming an argument (`  -x, --long <V>`, `  <PLAN>`) with nothing after
/// it on the line and no indented continuation below.
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut out = Vec::new();
    let mut in_args = false;
    for (i, line) in lines.iter().enumerate() {
        if line.ends_with(':') && !line.starts_with(' ') {
            in_args = line.starts_with("Arguments") || line.starts_with("Options");
            continue;
        }
        let t = line.trim_start();
        let indent = line.len() - t.len();
        if !in_args || indent != 2 || !(t.starts_with('-') || t.starts_with('<')) {
            continue;
        }
        // The argument's own tokens end at the first double space.
        let described_here = t.contains("  ");
        let described_below = lines
            .get(i + 1)
            .is_some_and(|n| n.len() - n.trim_start().len() > 2 && !n.trim().is_empty());
        if !described_here && !described_below {
            out.push(line.to_string());
        }
    }
    out
}

#[test]
fn every_subcommand_describes_every_argument() {
    let subs = subcommands();
    assert!(subs.len() >= 8, "{subs:?}");
    let mut missing = Vec::new();
    for sub in &subs {
        let help = Rplan::new()
            .args([sub.as_str(), "--help"])
            .run()
            .code(0)
            .stdout;
        for line in undescribed(&help) {
            missing.push(format!("{sub}: {line}"));
        }
        assert!(
            help.contains("--color <WHEN>") && help.contains("--quiet"),
            "{sub}"
        );
    }
    assert!(
        missing.is_empty(),
        "arguments without a description:\n{}",
        missing.join("\n")
    );
    // The checker itself sees a missing description.
    assert_eq!(undescribed("Options:\n  --bare\n  --ok  Fine.\n").len(), 1);
}
