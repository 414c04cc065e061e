//! `rplan completions SHELL` and `rplan man`: the bash script is sourced
//! by bash and completes subcommands and flags; the manual pages are
//! rendered by groff (or man) and list what `--help` lists.

mod common;
use common::*;
use std::process::Command;

/// Run a bash script with rplan's completion loaded; its stdout.
fn bash(script: &str) -> String {
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(format!(
            "source <('{}' completions bash) || exit 9\n{script}",
            bin()
        ))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What bash would offer after typing `words` (the last one partial).
fn complete(words: &str) -> Vec<String> {
    let n = words.split_whitespace().count() - 1;
    let out = bash(&format!(
        "COMP_WORDS=({words}); COMP_CWORD={n}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}\n\
         _rplan rplan \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$((COMP_CWORD-1))]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\""
    ));
    out.lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_is_registered_and_completes() {
    let spec = bash("complete -p rplan");
    assert!(
        spec.contains("-F _rplan") && spec.trim_end().ends_with(" rplan"),
        "{spec}"
    );
    let subs = complete("rplan ch");
    assert_eq!(subs, ["check"], "{subs:?}");
    let all = complete("rplan c");
    for c in ["check", "compile", "completions"] {
        assert!(all.iter().any(|s| s == c), "{all:?}");
    }
    let flags = complete("rplan graph --fo");
    assert_eq!(flags, ["--format"], "{flags:?}");
    let values = complete("rplan check --format s");
    assert_eq!(values, ["sarif"], "{values:?}");
}

#[test]
fn other_shells_get_scripts_their_shell_parses() {
    for (shell, check) in [("zsh", "-n"), ("fish", "--no-execute")] {
        let script = Rplan::new()
            .args(["completions", shell])
            .run()
            .code(0)
            .stdout;
        assert!(script.contains("rplan"));
        match Command::new(shell)
            .arg(check)
            .arg("/dev/stdin")
            .stdin(std::process::Stdio::piped())
            .spawn()
        {
            Ok(mut child) => {
                use std::io::Write;
                let _ = child
                    .stdin
                    .take()
                    .map(|mut s| s.write_all(script.as_bytes()));
                assert!(
                    child.wait().unwrap().success(),
                    "{shell} rejects its script"
                );
            }
            Err(_) => eprintln!("skipped parsing the {shell} script: {shell} is not installed"),
        }
    }
    Rplan::new().args(["completions", "tcsh"]).run().code(2);
}

/// Render a man page with groff as man would (`-k`: preconv for UTF-8); `None` when groff is missing.
fn groff(page: &[u8]) -> Option<(String, String)> {
    use std::io::Write;
    let mut child = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-ww", "-rLL=100n"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(page).ok()?;
    let out = child.wait_with_output().ok()?;
    assert!(out.status.success());
    Some((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// groff's UTF-8 output overstrikes bold and underline (`x\bx`): plain text.
fn plain(s: &str) -> String {
    let mut out: Vec<char> = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        out.push(c);
    }
    out.into_iter().collect::<String>().replace("\x1b[", "")
}

#[test]
fn man_pages_render_and_list_every_subcommand() {
    let page = Rplan::new().arg("man").run().code(0).stdout;
    // The roff structure man expects.
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH rplan 1"),
        "{}",
        &page[..200.min(page.len())]
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    let Some((text, warnings)) = groff(page.as_bytes()) else {
        eprintln!("skipped rendering: groff is not installed");
        return;
    };
    assert_eq!(warnings, "", "groff warns about the page");
    let text = plain(&text);
    for sub in [
        "rplan-check(1)",
        "rplan-compile(1)",
        "rplan-graph(1)",
        "rplan-completions(1)",
        "rplan-man(1)",
    ] {
        assert!(text.contains(sub), "{sub} missing from:\n{text}");
    }
    assert!(text.contains("NO_COLOR"));

    // --dir: one page per subcommand, each rendering its own flags.
    let dir = tempfile::tempdir().unwrap();
    Rplan::new()
        .args(["man", "--dir"])
        .arg(dir.path().to_str().unwrap())
        .run()
        .code(0);
    let check = std::fs::read(dir.path().join("rplan-check.1")).expect("rplan-check.1");
    let (text, warnings) = groff(&check).unwrap();
    assert_eq!(warnings, "");
    let text = plain(&text);
    for flag in ["--format", "--strict", "--no-artifacts", "--quiet", "PLAN"] {
        assert!(
            text.contains(flag),
            "{flag} missing from rplan-check(1):\n{text}"
        );
    }
    assert!(dir.path().join("rplan.1").exists());
}
