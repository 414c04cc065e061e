//! `rplan check` never panics, whatever it is fed.
//!
//! Every example plan is mutated many ways (truncated, bytes replaced or
//! flipped, lines deleted, duplicated or re-indented), and odd inputs are
//! added (deep nesting, a 5 MB plan, empty/binary/non-UTF-8 files, an anchor
//! bomb). Each goes through the real binary; the process must exit 0, 1 or 2
//! — never by a signal, never with "panicked" on stderr, never hang — and
//! `--format json` must still print one JSON object.
//!
//! Variants are written next to a stand-in copy of examples/backups (tiny
//! artifacts: paths resolve and artifact checks run, without hashing 16 MiB
//! images in a debug build) and checked many files per invocation; a failing
//! batch is bisected down to the variants that fail, which are saved under
//! the target's tmp dir for reproduction.

mod common;
use common::*;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A zstd frame of `rplan stand-in image\n`.
const TINY_ZSTD: &[u8] = &[
    0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0xa9, 0x00, 0x00, 0x72, 0x70, 0x6c, 0x61, 0x6e, 0x20, 0x73,
    0x74, 0x61, 0x6e, 0x64, 0x2d, 0x69, 0x6e, 0x20, 0x69, 0x6d, 0x61, 0x67, 0x65, 0x0a, 0xe1, 0xeb,
    0x9f, 0x17,
];

/// Bytes put in place of one byte of a plan.
const REPLACEMENTS: &[&[u8]] = &[
    b":",
    b"-",
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b"\n",
    b"\t",
    b"#",
    b"&",
    b"*",
    b"!",
    b"|",
    b">",
    b"\xff",
    b" ",
    b"\r",
    b"\0",
    "é".as_bytes(),
    "…".as_bytes(),
    "日本".as_bytes(),
];

const BATCH_TIMEOUT: Duration = Duration::from_secs(180);

struct Variant {
    what: String,
    bytes: Vec<u8>,
}

fn variant(what: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Variant {
    Variant {
        what: what.into(),
        bytes: bytes.into(),
    }
}

fn examples() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(root().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read example"),
            )
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no example plans found");
    out
}

/// A temp dir holding `backups/<set>/` stand-ins for every examples/backups set.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for set in std::fs::read_dir(root().join("examples/backups")).expect("examples/backups") {
        let set = set.expect("dir entry").path();
        let to = dir.path().join("backups").join(set.file_name().unwrap());
        std::fs::create_dir_all(&to).expect("mkdir");
        for f in std::fs::read_dir(&set).expect("backup set") {
            let f = f.expect("dir entry").path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".zst") {
                std::fs::write(to.join(&name), TINY_ZSTD).expect("write stand-in");
            } else {
                std::fs::copy(&f, to.join(&name)).expect("copy artifact");
            }
        }
    }
    dir
}

/// Every mutation of one plan.
fn mutations(name: &str, text: &[u8]) -> Vec<Variant> {
    let mut out = Vec::new();
    for cut in (0..text.len()).step_by(7) {
        out.push(variant(
            format!("{name} truncated to {cut} bytes"),
            &text[..cut],
        ));
    }
    for (n, pos) in (0..text.len()).step_by(4).enumerate() {
        let r = REPLACEMENTS[(n * 7) % REPLACEMENTS.len()];
        let mut b = text.to_vec();
        b.splice(pos..=pos, r.iter().copied());
        let shown = std::str::from_utf8(r).map_or_else(
            |_| format!("byte {}", r.escape_ascii()),
            |s| format!("{s:?}"),
        );
        out.push(variant(format!("{name} byte {pos} replaced by {shown}"), b));
    }
    for (n, pos) in (0..text.len()).step_by(11).enumerate() {
        let mut b = text.to_vec();
        b[pos] ^= 1 << (n % 8);
        out.push(variant(
            format!("{name} byte {pos} bit {} flipped", n % 8),
            b,
        ));
    }
    let lines: Vec<&[u8]> = text.split_inclusive(|&c| c == b'\n').collect();
    let join = |ls: &[&[u8]]| ls.concat();
    for i in 0..lines.len() {
        let mut ls = lines.clone();
        ls.remove(i);
        out.push(variant(format!("{name} line {} deleted", i + 1), join(&ls)));
        let mut ls = lines.clone();
        ls.insert(i, lines[i]);
        out.push(variant(
            format!("{name} line {} duplicated", i + 1),
            join(&ls),
        ));
        for (how, f) in [
            (
                "indented 1 more",
                &(|l: &[u8]| [b" ", l].concat()) as &dyn Fn(&[u8]) -> Vec<u8>,
            ),
            ("indented 2 more", &|l: &[u8]| [b"  ", l].concat()),
            ("indented 1 less", &|l: &[u8]| {
                l.strip_prefix(b" ").unwrap_or(l).to_vec()
            }),
            ("indented with a tab", &|l: &[u8]| {
                [b"\t", l.strip_prefix(b"  ").unwrap_or(l)].concat()
            }),
        ] {
            let changed = f(lines[i]);
            if changed != lines[i] {
                let mut ls: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                ls[i] = changed;
                out.push(variant(format!("{name} line {} {how}", i + 1), ls.concat()));
            }
        }
    }
    // Two lines swapped.
    for i in 1..lines.len() {
        let mut ls = lines.clone();
        ls.swap(i - 1, i);
        out.push(variant(
            format!("{name} lines {i} and {} swapped", i + 1),
            join(&ls),
        ));
    }
    out
}

/// Why one run of `rplan check` is not acceptable, if it is not.
fn run_check(
    dir: &Path,
    files: &[PathBuf],
    args: &[&str],
    timeout: Duration,
) -> Result<(), String> {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (out_path, err_path) = (
        dir.join(format!("run{n}.out")),
        dir.join(format!("run{n}.err")),
    );
    let mut child = Command::new(bin())
        .arg("check")
        .args(args)
        .args(files)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn rplan");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait rplan") {
            break Some(status);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = std::fs::read(&out_path).unwrap_or_default();
    let stderr =
        String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into_owned();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let excerpt = |s: &str| s.chars().take(1000).collect::<String>();
    let Some(status) = status else {
        return Err(format!(
            "no exit after {timeout:?} (a hang, or far too slow)"
        ));
    };
    match status.code() {
        None => {
            return Err(format!(
                "killed by a signal ({status})\n--- stderr\n{}",
                excerpt(&stderr)
            ))
        }
        Some(c) if !(0..=2).contains(&c) => {
            return Err(format!("exit code {c}\n--- stderr\n{}", excerpt(&stderr)))
        }
        Some(_) => {}
    }
    if stderr.contains("panicked") {
        return Err(format!("panicked\n--- stderr\n{}", excerpt(&stderr)));
    }
    if args.windows(2).any(|w| w == ["--format", "json"]) {
        match serde_json::from_slice::<serde_json::Value>(&stdout) {
            Ok(v) if v["diagnostics"].is_array() => {}
            Ok(_) => return Err("--format json printed JSON without `diagnostics`".into()),
            Err(e) => {
                return Err(format!(
                    "--format json printed no JSON object ({e}):\n{}",
                    excerpt(&String::from_utf8_lossy(&stdout))
                ))
            }
        }
    }
    Ok(())
}

/// The files among `files` that fail on their own (bisecting a failed batch).
fn culprits(
    dir: &Path,
    files: &[PathBuf],
    args: &[&str],
    timeout: Duration,
    found: &mut Vec<(PathBuf, String)>,
) {
    if found.len() >= 10 {
        return;
    }
    match run_check(dir, files, args, timeout) {
        Ok(()) => {}
        Err(why) if files.len() == 1 => found.push((files[0].clone(), why)),
        Err(why) => {
            let before = found.len();
            let (a, b) = files.split_at(files.len() / 2);
            culprits(dir, a, args, timeout, found);
            culprits(dir, b, args, timeout, found);
            if found.len() == before {
                // Only the combination fails: report the whole batch.
                found.push((
                    files[0].clone(),
                    format!("a batch of {} files starting here: {why}", files.len()),
                ));
            }
        }
    }
}

/// Write `variants` into `dir`, check them in batches on all cores, with
/// each argument set, and fail listing every variant that misbehaves.
fn check_all(
    dir: &Path,
    variants: &[Variant],
    arg_sets: &[&[&str]],
    batch: usize,
    timeout: Duration,
) {
    let files: Vec<PathBuf> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = dir.join(format!("variant-{i:05}.yaml"));
            std::fs::write(&p, &v.bytes).expect("write variant");
            p
        })
        .collect();
    let jobs: Vec<(&[PathBuf], &[&str])> = arg_sets
        .iter()
        .flat_map(|args| files.chunks(batch.max(1)).map(move |c| (c, *args)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(chunk, args)) = jobs.get(j) else {
                    break;
                };
                let mut found = Vec::new();
                culprits(dir, chunk, args, timeout, &mut found);
                failures
                    .lock()
                    .unwrap()
                    .extend(found.into_iter().map(|(f, why)| (f, args.join(" "), why)));
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        return;
    }
    let keep = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no_panic");
    let _ = std::fs::create_dir_all(&keep);
    let mut report = format!(
        "rplan check misbehaved on {} input(s) (the first 30 follow):\n",
        failures.len()
    );
    for (file, args, why) in failures.iter().take(30) {
        let i = files.iter().position(|f| f == file).expect("known variant");
        let saved = keep.join(file.file_name().unwrap());
        let _ = std::fs::write(&saved, &variants[i].bytes);
        report.push_str(&format!(
            "\n* {}\n  saved as {} (next to a copy of examples/backups: `rplan check {} FILE`)\n  {}\n",
            variants[i].what,
            saved.display(),
            args,
            why.replace('\n', "\n  ")
        ));
    }
    panic!("{report}");
}

const JSON: &[&str] = &["--format", "json"];
const HUMAN: &[&str] = &["--format", "human"];

#[test]
fn mutated_examples_never_panic() {
    let dir = workspace();
    let mut variants = Vec::new();
    for (name, text) in examples() {
        variants.extend(mutations(&name, &text));
    }
    assert!(variants.len() > 3000, "only {} variants", variants.len());
    check_all(dir.path(), &variants, &[JSON, HUMAN], 300, BATCH_TIMEOUT);
}

#[test]
fn mutated_examples_with_flags_never_panic() {
    // A sample of the variants again, with the other flags that change analysis.
    let dir = workspace();
    let mut variants = Vec::new();
    for (name, text) in examples() {
        variants.extend(mutations(&name, &text).into_iter().step_by(5));
    }
    check_all(
        dir.path(),
        &variants,
        &[
            &["--format", "sarif", "--unattended", "--strict"],
            &["--format", "json", "--no-artifacts", "--throughput", "1B"],
        ],
        300,
        BATCH_TIMEOUT,
    );
}

#[test]
fn deep_nesting_never_panics() {
    let dir = workspace();
    let deep = 10_000;
    let mut variants = vec![
        variant("10 000 `[`", "[".repeat(deep)),
        variant(
            "10 000 `[` then 10 000 `]`",
            format!("{}{}", "[".repeat(deep), "]".repeat(deep)),
        ),
        variant("10 000 `{`", "{".repeat(deep)),
        variant("10 000 `{a: `", "{a: ".repeat(deep)),
        variant(
            "10 000 `- ` on one line",
            format!("{}x\n", "- ".repeat(deep)),
        ),
        variant(
            "name: 10 000 `[`",
            format!("version: 1\nname: {}\n", "[".repeat(deep)),
        ),
        variant(
            "name: 10 000 `[` closed",
            format!(
                "version: 1\nname: {}{}\n",
                "[".repeat(deep),
                "]".repeat(deep)
            ),
        ),
    ];
    // Nested block mappings, 1 000 levels deep.
    let mut nested = String::from("version: 1\nname:\n");
    for level in 1..1000 {
        nested.push_str(&" ".repeat(level));
        nested.push_str("a:\n");
    }
    variants.push(variant("1 000 nested block mappings", nested));
    // A real plan whose stages hide a deeply nested flow value.
    let (name, text) = examples().remove(0);
    let text = String::from_utf8(text).expect("example is UTF-8");
    let plan = text.replacen(
        "stages:",
        &format!("x-deep: {}{}\nstages:", "[".repeat(deep), "]".repeat(deep)),
        1,
    );
    variants.push(variant(format!("{name} with a 10 000 deep list"), plan));
    // Deeper still: a stack overflow must not depend on the build profile.
    variants.push(variant(
        "100 000 `- ` on one line",
        format!("{}x\n", "- ".repeat(10 * deep)),
    ));
    check_all(dir.path(), &variants, &[JSON, HUMAN], 1, BATCH_TIMEOUT);
}

/// JSON is YAML: a generated plan may well be one long line. Checking it
/// must not take time quadratic in the line's length.
#[test]
fn one_line_json_plan_is_checked_in_bounded_time() {
    let dir = workspace();
    let partitions: Vec<serde_json::Value> = (0..24_000)
        .map(|n| serde_json::json!({"id": format!("p{n:05}"), "size": "1MiB", "type": "ntfs"}))
        .collect();
    let plan = serde_json::json!({
        "version": 1,
        "name": "cad-ws-12",
        "system": {"os": "windows-xp", "build": "rtm+sp2", "language": "de"},
        "media": {"build": "sp1-slipstream"},
        "disks": [{"id": "disk0", "critical": true, "table": "gpt", "size": "200GiB", "partitions": partitions}],
        "stages": [{"id": "safe-mode", "kind": "safe-mode"}, {"id": "asr", "kind": "asr"}],
    });
    let text = format!("{plan}\n");
    assert!(text.len() > 1_000_000, "{} bytes", text.len());
    check_all(
        dir.path(),
        &[variant(
            "a 1 MB plan as one line of JSON (24 000 partitions)",
            text,
        )],
        &[JSON],
        1,
        Duration::from_secs(20),
    );
}

#[test]
fn huge_plan_never_panics() {
    // ~5 MB: a GPT disk with 110 000 partitions (the table holds 128).
    let dir = workspace();
    let text =
        String::from_utf8(std::fs::read(root().join("examples/gpt-workstation.yaml")).unwrap())
            .unwrap();
    let at = text
        .find("      - id: data")
        .expect("gpt example has a data partition");
    let mut plan = String::with_capacity(5_300_000);
    plan.push_str(&text[..at].replace("size: 2GiB", "size: 200GiB"));
    for n in 0..110_000 {
        plan.push_str(&format!(
            "      - {{ id: p{n:06}, size: 1MiB, type: ntfs }}\n"
        ));
    }
    plan.push_str(&text[at..]);
    assert!(plan.len() > 5_000_000);
    check_all(
        dir.path(),
        &[variant("5 MB plan of 110 000 partitions", plan)],
        &[JSON],
        1,
        Duration::from_secs(300),
    );
}

#[test]
fn odd_files_never_panic() {
    let dir = workspace();
    let (name, text) = examples().remove(0);
    let mut binary = Vec::with_capacity(64 * 1024);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        binary.push((x >> 32) as u8);
    }
    let ascii_noise: Vec<u8> = binary.iter().map(|b| b & 0x7f).collect();
    let mut latin1 = text.clone();
    latin1.extend_from_slice(b"# Sch\xf6ne Gr\xfc\xdfe\n");
    let mut bom = "\u{feff}".as_bytes().to_vec();
    bom.extend_from_slice(&text);
    let crlf = String::from_utf8_lossy(&text).replace('\n', "\r\n");
    let cr_only = String::from_utf8_lossy(&text).replace('\n', "\r");
    let utf16: Vec<u8> = String::from_utf8_lossy(&text)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let variants = vec![
        variant("an empty file", Vec::new()),
        variant("one newline", "\n"),
        variant("only spaces", "    \n  \n"),
        variant("only a comment", "# nothing here\n"),
        variant("`---` only", "---\n"),
        variant("`...` only", "...\n"),
        variant("a lone NUL", vec![0_u8]),
        variant("64 KiB of random bytes", binary),
        variant("64 KiB of random ASCII", ascii_noise),
        variant(format!("{name} with a Latin-1 comment (not UTF-8)"), latin1),
        variant(format!("{name} with a UTF-8 BOM"), bom),
        variant(format!("{name} with CRLF line ends"), crlf),
        variant(format!("{name} with CR line ends"), cr_only),
        variant(format!("{name} in UTF-16"), utf16),
        variant("a scalar", "42\n"),
        variant("a list", "- 1\n- 2\n"),
        variant("a tagged mapping", "!plan {version: 1}\n"),
        variant("a complex key", "? [a, b]\n: c\n"),
        variant("an alias as key", "a: &k version\n*k : 1\n"),
        variant("a self-referencing alias", "a: &a [*a]\n"),
        variant(
            "a huge integer",
            "version: 99999999999999999999999999999999\n",
        ),
        variant("a huge float", "version: 1e999\n"),
        variant("NaN", "version: .nan\n"),
        variant(
            "a 1 MB scalar",
            format!("version: 1\nname: {}\n", "x".repeat(1 << 20)),
        ),
        variant("a 100 000-line comment", "#\n".repeat(100_000)),
    ];
    check_all(dir.path(), &variants, &[JSON, HUMAN], 1, BATCH_TIMEOUT);
    // Paths that are not plan files at all.
    for path in [
        dir.path().join("does-not-exist.yaml"),
        dir.path().join("backups"),
    ] {
        let why = run_check(dir.path(), std::slice::from_ref(&path), JSON, BATCH_TIMEOUT);
        assert!(why.is_ok(), "{}: {}", path.display(), why.unwrap_err());
    }
}

#[test]
fn anchor_bomb_never_panics() {
    // "Billion laughs": 9 levels of 9 aliases each, 387 420 489 leaves.
    let mut bomb =
        String::from("version: 1\nname: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut prev = 'a';
    for level in b'b'..=b'i' {
        let l = level as char;
        bomb.push_str(&format!(
            "x-{l}: &{l} [{}]\n",
            vec![format!("*{prev}"); 9].join(", ")
        ));
        prev = l;
    }
    let (name, text) = examples().remove(0);
    let text = String::from_utf8(text).unwrap();
    let mut in_plan = text.replacen(
        "stages:",
        &bomb.replacen("version: 1\nname:", "x-laughs:", 1),
        1,
    );
    in_plan.push_str("x-end: *i\n");
    let variants = vec![
        variant("billion laughs", bomb.clone()),
        variant(
            "billion laughs, used as the name",
            format!("{bomb}stages: *i\n"),
        ),
        variant(format!("{name} with billion laughs inside"), in_plan),
        variant("quadratic blowup", {
            let big = "x".repeat(100_000);
            format!("a: &a {big}\nb: [{}]\n", vec!["*a"; 10_000].join(", "))
        }),
    ];
    let dir = workspace();
    check_all(
        dir.path(),
        &variants,
        &[JSON, HUMAN],
        1,
        Duration::from_secs(120),
    );
}
