//! `--report FILE.html`: the page is judged by a real browser. Headless
//! Chromium lays it out (a measuring script in a copy of the page reads the
//! boxes of the graph and the disk tables) and takes a screenshot whose
//! pixels must show the graph's nodes and the disks' bars in their colours.
//! Without `chromium` these tests say so and skip, unless
//! RPLAN_REQUIRE_CHROMIUM is set (CI sets it): then they fail.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A plan whose name, manual action and filesystem label try to inject
/// markup and script into the page.
const HOSTILE_NAME: &str = "<img src=x onerror=\"document.title='PWNED'\">";
const HOSTILE_MANUAL: &str = "</title><script>document.title='PWNED'</script><b id=injected>x</b>";
const HOSTILE_LABEL: &str = "<i id=lbl>&amp;";
/// The label of the filesystem on the target now (ext4: 16 bytes at most).
const HOSTILE_FS_LABEL: &str = "<u id=fsl>x&lt;";

fn plan(dir: &Path) -> PathBuf {
    let data: Vec<u8> = (0..2 * MIB as usize).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("sys.img"), &data).unwrap();
    let sys = sha(&dir.join("sys.img"));
    let p = dir.join("plan.yaml");
    let yaml = format!(
        "version: 1\nname: {name}\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\n\
backup: {{ id: b, root: ., artifacts: [ {{ id: sys, path: sys.img, format: raw, size: 2MiB, sha256: {sys} }} ] }}\n\
disks:\n  - {{ id: d0, critical: true, table: mbr, signature: \"0x5117d00d\", size: 64MiB, partitions: [ {{ id: sys, size: 8MiB, type: ntfs, bootable: true, content: {{ image: sys }} }}, {{ id: data, size: rest, type: ntfs, content: {{ format: {{ fs: ntfs, label: {label} }} }} }} ] }}\n\
stages:\n  - {{ id: lkg, kind: last-known-good, actions: [ {{ manual: {manual} }} ] }}\n  - {{ id: asr, kind: asr }}\n",
        name = serde_json::to_string(HOSTILE_NAME).unwrap(),
        label = serde_json::to_string(HOSTILE_LABEL).unwrap(),
        manual = serde_json::to_string(HOSTILE_MANUAL).unwrap(),
    );
    std::fs::write(&p, yaml).unwrap();
    p
}

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var_os("RPLAN_REQUIRE_CHROMIUM").is_none(),
            "RPLAN_REQUIRE_CHROMIUM is set but chromium is not installed"
        );
        eprintln!("SKIP: chromium not found on PATH; the HTML report is not rendered (apt-get install chromium)");
    }
    found
}

const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2400;

fn headless(browser: &Path, extra: &[&str], page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            "--force-device-scale-factor=1",
            &format!("--window-size={WIDTH},{HEIGHT}"),
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lay the page out in Chromium and read what a person would see: boxes,
/// counts and text, through a script added to a copy of the page (the page
/// itself forbids scripts; the copy drops that rule so that an injection
/// that escaped the escaping would run and show).
const MEASURE: &str = r#"<script>
const box = e => { if (!e) return null; const r = e.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
const q = s => document.querySelector(s);
const m = {
  title: document.title,
  h1: q('h1').textContent,
  injected: document.querySelectorAll('#injected, #lbl, #fsl, img').length,
  scripts: document.scripts.length,
  graph: box(q('#graph')),
  nodes: [...document.querySelectorAll('#graph g.node')].map(g => [g.dataset.step, g.getAttribute('class'), box(g)]),
  before_bar: box(q('.disk svg.bar')),
  after_bar: box(document.querySelectorAll('.disk svg.bar')[1]),
  before_bar_text: q('.disk svg.bar')?.textContent,
  before_rows: [...document.querySelectorAll('.disk table.before tr')].slice(1).map(r => r.textContent),
  after_rows: [...document.querySelectorAll('.disk table.after tr')].slice(1).map(r => r.textContent),
  after_table: box(q('.disk table.after')),
  stages: [...document.querySelectorAll('#stages tr')].slice(1).map(r => r.textContent),
  rto: q('#rto b') && q('#rto b').textContent,
  timeline: document.querySelectorAll('#timeline tr').length,
  manual: [...document.querySelectorAll('#timeline td')].map(t => t.textContent).filter(t => t.includes('PWNED')),
};
document.body.setAttribute('data-measure', JSON.stringify(m));
</script>"#;

fn measure(browser: &Path, page: &Path) -> Value {
    let html = std::fs::read_to_string(page).unwrap();
    let csp_end = html.find("img-src data:\">").unwrap() + "img-src data:\">".len();
    let csp_start = html[..csp_end].rfind("<meta").unwrap();
    let mut copy = format!("{}{}", &html[..csp_start], &html[csp_end..]);
    let end = copy.rfind("</body>").unwrap();
    copy.insert_str(end, MEASURE);
    let measured = page.with_extension("measure.html");
    std::fs::write(&measured, copy).unwrap();
    let dom = headless(browser, &["--dump-dom"], &measured);
    let start = dom
        .find("data-measure=\"")
        .expect("the measuring script ran")
        + 14;
    let end = start + dom[start..].find('"').unwrap();
    let json = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap()
}

struct Shot {
    width: usize,
    rgb: Vec<[u8; 3]>,
}

impl Shot {
    fn take(browser: &Path, page: &Path) -> Shot {
        let png_path = page.with_extension("png");
        headless(
            browser,
            &[&format!("--screenshot={}", png_path.display())],
            page,
        );
        let decoder = png::Decoder::new(std::fs::File::open(&png_path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let step = match info.color_type {
            png::ColorType::Rgba => 4,
            png::ColorType::Rgb => 3,
            other => panic!("screenshot in {other:?}"),
        };
        let rgb = buf[..info.buffer_size()]
            .chunks(step)
            .map(|p| [p[0], p[1], p[2]])
            .collect();
        Shot {
            width: info.width as usize,
            rgb,
        }
    }

    /// Pixels within `bx` ([x, y, w, h] from the browser) close to `colour`.
    fn count(&self, bx: &Value, colour: [u8; 3]) -> usize {
        let n = |i: usize| bx[i].as_f64().unwrap().max(0.0) as usize;
        let (x0, y0, w, h) = (n(0), n(1), n(2), n(3));
        let height = self.rgb.len() / self.width;
        let mut hits = 0;
        for y in y0..(y0 + h).min(height) {
            for x in x0..(x0 + w).min(self.width) {
                let p = self.rgb[y * self.width + x];
                if p.iter().zip(colour).all(|(a, b)| a.abs_diff(b) <= 6) {
                    hits += 1;
                }
            }
        }
        hits
    }
}

const OK_FILL: [u8; 3] = [0xc8, 0xe6, 0xc9];
const FAILED_FILL: [u8; 3] = [0xff, 0xcd, 0xd2];

fn dry_run_report(dir: &Path) -> (PathBuf, PathBuf, String) {
    let p = plan(dir);
    let img = image(dir, "d0.img", 64 * MIB);
    // What is on the target now is user input too: an ext4 whose label is
    // markup (shown in the "now" table and bar).
    let mkfs = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", HOSTILE_FS_LABEL])
        .arg(&img)
        .status()
        .unwrap();
    assert!(mkfs.success());
    let before = sha(&img);
    let html = dir.join("report.html");
    Rplan::new()
        .args([
            "dry-run",
            p.to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
            "--force",
            "--report",
            html.to_str().unwrap(),
        ])
        .run()
        .code(0);
    assert_eq!(before, sha(&img), "dry-run --report wrote to the target");
    (p, html, before)
}

#[test]
fn report_is_self_contained_and_escapes_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (_, html, _) = dry_run_report(dir.path());
    let text = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch, nothing to run.
    for needle in [
        "<script", "<img", " src=\"", " href=\"", "@import", "url(http",
    ] {
        assert!(!text.contains(needle), "the page contains `{needle}`");
    }
    assert!(text.contains("Content-Security-Policy"));
    for raw in [
        HOSTILE_NAME,
        HOSTILE_MANUAL,
        HOSTILE_LABEL,
        HOSTILE_FS_LABEL,
    ] {
        assert!(!text.contains(raw), "`{raw}` is in the page unescaped");
    }
    // The hostile text is there, as text.
    assert!(text.contains("&lt;img src=x onerror=&quot;document.title=&#x27;PWNED&#x27;&quot;&gt;"));
}

#[test]
fn chromium_shows_the_graph_and_the_disk_table() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, html, _) = dry_run_report(dir.path());
    let m = measure(&browser, &html);

    // The injections stayed text: no element came out of them, no script
    // but the measuring one ran, and the title is the plan's name.
    assert_eq!(m["injected"], 0, "{m}");
    assert_eq!(m["scripts"], 1, "{m}");
    assert_eq!(m["title"], format!("rplan dry-run: {HOSTILE_NAME}"));
    assert_eq!(m["h1"], m["title"]);
    assert!(!m["manual"].as_array().unwrap().is_empty(), "{m}");

    // The graph: every step a node, laid out inside the viewport's width.
    let graph = &m["graph"];
    let nodes = m["nodes"].as_array().unwrap();
    assert!(nodes.len() >= 8, "{m}");
    assert!(graph[2].as_f64().unwrap() > 300.0 && graph[3].as_f64().unwrap() > 150.0);
    assert!(graph[0].as_f64().unwrap() + graph[2].as_f64().unwrap() <= f64::from(WIDTH));
    let class_of = |id: &str| {
        nodes
            .iter()
            .find(|n| n[0] == id)
            .map(|n| n[1].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no node {id}: {m}"))
    };
    assert!(class_of("lkg/action-1").contains("failed"));
    assert!(class_of("asr/d0/sys/restore").contains("ok"));
    // Later steps of the ASR stage sit to the right of the table step.
    let x_of = |id: &str| {
        nodes.iter().find(|n| n[0] == id).unwrap()[2][0]
            .as_f64()
            .unwrap()
    };
    assert!(x_of("asr/d0/sys/restore") > x_of("asr/d0/table"));

    // The disk table: before → after, with the plan's partitions.
    let rows: Vec<&str> = m["after_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows[1].contains("sys") && rows[1].contains("8 MiB"),
        "{rows:?}"
    );
    assert!(rows[2].contains(HOSTILE_LABEL), "{rows:?}");
    assert!(m["after_table"][3].as_f64().unwrap() > 40.0);
    let now = m["before_rows"][0].as_str().unwrap();
    assert!(
        now.contains("ext4") && now.contains(HOSTILE_FS_LABEL),
        "{m}"
    );
    assert!(
        m["before_bar_text"]
            .as_str()
            .unwrap()
            .contains(HOSTILE_FS_LABEL),
        "{m}"
    );
    assert!(
        m["stages"][1].as_str().unwrap().contains("recovered"),
        "{m}"
    );
    assert!(m["rto"].as_str().unwrap().ends_with('s'), "{m}");

    // The pixels: green and red nodes inside the graph's box, the new
    // partitions green in the "after" bar, nothing red there.
    let shot = Shot::take(&browser, &html);
    assert!(
        shot.count(graph, OK_FILL) > 20_000,
        "too few ok-node pixels"
    );
    assert!(
        shot.count(graph, FAILED_FILL) > 3_000,
        "no failed-node pixels"
    );
    assert!(shot.count(&m["after_bar"], OK_FILL) > 5_000);
    assert_eq!(shot.count(&m["after_bar"], FAILED_FILL), 0);
    // The ext4 on the target now is destroyed: red in the "now" bar.
    assert!(shot.count(&m["before_bar"], FAILED_FILL) > 5_000);
}

#[test]
fn apply_report_shows_what_the_run_did() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path());
    let img = image(dir.path(), "d0.img", 64 * MIB);
    let html = dir.path().join("apply.html");
    Rplan::new()
        .args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--skip-manual",
            "--journal",
            dir.path().join("journal").to_str().unwrap(),
            "--target",
            &format!("d0={}", img.display()),
            "--report",
            html.to_str().unwrap(),
        ])
        .run()
        .code(0);
    let Some(browser) = chromium() else {
        return;
    };
    let m = measure(&browser, &html);
    assert_eq!(m["title"], format!("rplan apply: {HOSTILE_NAME}"));
    let stages: Vec<&str> = m["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        stages[0].contains("failed") && stages[1].contains("recovered"),
        "{stages:?}"
    );
    let nodes = m["nodes"].as_array().unwrap();
    let restore = nodes.iter().find(|n| n[0] == "asr/d0/sys/restore").unwrap();
    assert!(restore[1].as_str().unwrap().contains("ok"), "{m}");
    // The disk: blank before the run, the plan's table and partitions after.
    let rows = m["after_rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{m}");
    assert!(rows[2].as_str().unwrap().contains(HOSTILE_LABEL), "{m}");
    assert_eq!(m["injected"], 0);
}

#[test]
fn an_unwritable_report_is_rp0830_and_a_refused_run_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path());
    let img = image(dir.path(), "d0.img", 64 * MIB);
    let target = format!("d0={}", img.display());
    let run = Rplan::new()
        .args(["dry-run", p.to_str().unwrap(), "--target", &target])
        .args([
            "--report",
            dir.path().join("no/such/dir/r.html").to_str().unwrap(),
        ])
        .run()
        .code(2);
    assert!(run.stderr.contains("RP0830"), "{}", run.stderr);
    // A target too small: refused before anything ran, so no page.
    let small = image(dir.path(), "small.img", 8 * MIB);
    let html = dir.path().join("refused.html");
    Rplan::new()
        .args(["dry-run", p.to_str().unwrap(), "--target"])
        .arg(format!("d0={}", small.display()))
        .args(["--report", html.to_str().unwrap()])
        .run()
        .code(4);
    assert!(!html.exists());
}

#[test]
fn a_report_over_a_target_or_the_plan_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(dir.path());
    let img = image(dir.path(), "d0.img", 64 * MIB);
    let target = format!("d0={}", img.display());
    let (img_sha, plan_sha) = (sha(&img), sha(&p));
    for report in [img.to_str().unwrap(), p.to_str().unwrap(), "/dev/null"] {
        let run = Rplan::new()
            .args(["apply", p.to_str().unwrap(), "--yes", "--skip-manual"])
            .args(["--journal", dir.path().join("j").to_str().unwrap()])
            .args(["--target", &target, "--report", report])
            .run()
            .code(2);
        assert!(run.stderr.contains("RP0831"), "{}", run.stderr);
        let run = Rplan::new()
            .args(["dry-run", p.to_str().unwrap(), "--target", &target])
            .args(["--report", report])
            .run()
            .code(2);
        assert!(run.stderr.contains("RP0831"), "{}", run.stderr);
    }
    assert_eq!(img_sha, sha(&img), "the target was written");
    assert_eq!(plan_sha, sha(&p), "the plan was overwritten");
}
