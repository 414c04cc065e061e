//! Shared test harness: run the real `rplan` binary on real files.
//!
//! `Rplan::new().args(["check", "x.yaml"]).in_dir(dir).run()` gives the
//! exit code, stdout and stderr; assertions read like the README.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rplan")
}

/// The repository root (for examples/ and schemas/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Rplan {
    args: Vec<String>,
    dir: Option<PathBuf>,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Rplan {
    pub fn new() -> Rplan {
        Rplan {
            args: Vec::new(),
            dir: None,
            stdin: None,
            env: Vec::new(),
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Rplan {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    pub fn arg(mut self, a: impl AsRef<str>) -> Rplan {
        self.args.push(a.as_ref().to_string());
        self
    }

    pub fn in_dir(mut self, dir: impl AsRef<Path>) -> Rplan {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Rplan {
        self.stdin = Some(input.into());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Rplan {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn run(self) -> Run {
        let mut cmd = Command::new(bin());
        cmd.args(&self.args).stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rplan");
        if let Some(input) = self.stdin {
            use std::io::Write;
            let mut sin = child.stdin.take().expect("stdin");
            sin.write_all(&input).expect("write stdin");
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait rplan");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Run {
    /// Assert the exit code, showing the output when it differs.
    pub fn code(self, expected: i32) -> Run {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Run a shell tool (sfdisk, sgdisk, …) and return stdout; panics on failure.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The diagnostics of `rplan check --format json` as (code, line, column).
pub fn codes_at(run: &Run) -> Vec<(String, i64, i64)> {
    run.json()["diagnostics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    (
                        d["code"].as_str().unwrap_or_default().to_string(),
                        d["line"].as_i64().unwrap_or(0),
                        d["column"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Compare `actual` with tests/snapshots/NAME; `UPDATE_SNAPSHOTS=1` rewrites it.
pub fn snapshot(name: &str, actual: &str) {
    let path = root().join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing snapshot {}; run with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "snapshot {name} differs (UPDATE_SNAPSHOTS=1 to accept)"
    );
}

pub const MIB: u64 = 1 << 20;

/// A sparse file of `len` bytes: a blank disk image.
pub fn image(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p
}

/// sha256 of a file, by `sha256sum`.
pub fn sha(path: &Path) -> String {
    tool("sha256sum", &[path.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Deterministic pseudo-random bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An example plan, copied into `dir` with its commands pointing at test
/// scripts: BMC calls succeed, and the boot probe "boots" only once disk
/// `probe_disk` carries a partition table (so Safe Mode and Last Known
/// Good fail on a blank disk and ASR's probe succeeds after the restore).
pub fn example(dir: &Path, name: &str, probe_disk: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (script, body) in [
        ("bmc-boot", "exit 0".to_string()),
        ("page-oncall", "exit 0".to_string()),
        (
            "probe-boot",
            format!("sfdisk -d '{}' >/dev/null 2>&1", probe_disk.display()),
        ),
        (
            "probe-smb",
            format!("sfdisk -d '{}' >/dev/null 2>&1", probe_disk.display()),
        ),
    ] {
        let path = bin.join(script);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        tool("chmod", &["+x", path.to_str().unwrap()]);
    }
    let text =
        std::fs::read_to_string(root().join("examples").join(format!("{name}.yaml"))).unwrap();
    let text = text
        .replace("/usr/local/sbin/", &format!("{}/", bin.display()))
        .replace("/usr/local/bin/", &format!("{}/", bin.display()))
        .replace(
            "root: backups/",
            &format!("root: {}/examples/backups/", root().display()),
        );
    // One file per probe disk: a test may make several from one example.
    let p = dir.join(format!(
        "{name}-{}.yaml",
        probe_disk.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&p, text).unwrap();
    p
}

/// A plan file `dir/file` for an XP system (`arch`), whose backup is a raw
/// image `sys.img` (`sys` bytes) and a text file `note.txt` (`note`), both
/// written into `dir` with their sizes and sha256 in the plan; `rest` is
/// the YAML from `disks:` on.
pub fn xp_plan(dir: &Path, file: &str, arch: &str, sys: &[u8], note: &[u8], rest: &str) -> PathBuf {
    std::fs::write(dir.join("sys.img"), sys).unwrap();
    std::fs::write(dir.join("note.txt"), note).unwrap();
    let name = file.trim_end_matches(".yaml");
    let p = dir.join(file);
    std::fs::write(
        &p,
        format!(
            "version: 1\nname: {name}\n\
system: {{ os: windows-xp, build: sp2-slipstream, language: en, edition: professional, arch: {arch} }}\n\
media: {{ build: sp2-slipstream }}\n\
backup:\n  id: b\n  root: .\n  artifacts:\n\
\x20   - {{ id: sys, path: sys.img, format: raw, size: {}, sha256: {} }}\n\
\x20   - {{ id: note, path: note.txt, format: file, size: {}, sha256: {} }}\n{rest}",
            sys.len(),
            sha(&dir.join("sys.img")),
            note.len(),
            sha(&dir.join("note.txt")),
        ),
    )
    .unwrap();
    p
}

/// `len` bytes of `path` from `offset`.
pub fn read_range(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0; len as usize];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// `ldmtool -d IMG… ARGS`, its JSON output parsed.
pub fn ldmtool(imgs: &[PathBuf], args: &[&str]) -> serde_json::Value {
    let mut all: Vec<&str> = Vec::new();
    for i in imgs {
        all.extend(["-d", i.to_str().unwrap()]);
    }
    all.extend(args);
    let out = tool("ldmtool", &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ldmtool {args:?}: {e}: {out}"))
}

/// `rplan capture`'s flags for the machine the tests' plans describe
/// (Windows XP Professional SP2, English, x86).
pub const MACHINE: [&str; 8] = [
    "--build",
    "sp2-slipstream",
    "--language",
    "en",
    "--edition",
    "professional",
    "--arch",
    "x86",
];
