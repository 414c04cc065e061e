//! `--report FILE.html`: one self-contained page for people — the step
//! graph drawn as SVG, each disk's before → after, the timeline, each
//! stage's result and the estimated time to recover. No script, no network:
//! inline CSS and SVG only, and a Content-Security-Policy that forbids
//! anything else.
//!
//! Everything that comes from the plan or the targets (ids, labels,
//! descriptions, paths) is user input and goes through [`esc`]. This module
//! renders a report the runtime made; it decides nothing.

mod layout;

use rplan_compiler::compiled::CompiledPlan;
use rplan_runtime::events::printable;
use rplan_runtime::executor::{DryRunReport, SimDisk};
use rplan_runtime::inspect::approx_bytes;
use std::fmt::Write;

/// What the page shows.
pub struct Page<'a> {
    pub plan: &'a CompiledPlan,
    /// `dry-run` or `apply`.
    pub command: &'a str,
    pub report: &'a DryRunReport,
    /// The stage that recovered, if one did.
    pub recovered: Option<&'a str>,
    pub exit: u8,
}

/// Text from the plan or a target, made safe for HTML text and for
/// double-quoted attributes (control characters shown escaped first).
pub fn esc(s: &str) -> String {
    html_escape::encode_safe(&printable(s)).into_owned()
}

const STYLE: &str = r#"
:root { --ok:#2e7d32; --ok-bg:#c8e6c9; --fail:#c62828; --fail-bg:#ffcdd2; --skip:#9e9e9e; --skip-bg:#eeeeee;
        --same:#1565c0; --same-bg:#bbdefb; --new:#2e7d32; --change:#ef6c00; --change-bg:#ffe0b2; --ink:#1d2330; --muted:#667; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); margin: 0; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #c9cfdb; }
main { padding: 8px 28px 40px; max-width: 1500px; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 10px; padding: 14px 18px; margin: 16px 0; overflow-x: auto; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; }
.card { border: 1px solid #dde1e8; border-radius: 8px; padding: 10px 16px; min-width: 150px; background: #fff; }
.card b { display: block; font-size: 22px; }
.card span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; border-bottom: 1px solid #dde1e8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 12.5px; }
.muted { color: var(--muted); fill: var(--muted); font-size: 12px; }
.pill { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.pill.ok, .pill.recovered { background: var(--ok-bg); color: var(--ok); }
.pill.failed { background: var(--fail-bg); color: var(--fail); }
.pill.skipped, .pill.not-run { background: var(--skip-bg); color: #555; }
.pill.unchanged { background: var(--same-bg); color: var(--same); }
.mark { font-family: ui-monospace, monospace; font-weight: 700; width: 1.2em; }
.mark-destroy { color: var(--fail); } .mark-change { color: var(--change); } .mark-keep { color: var(--muted); } .mark-create { color: var(--new); }
.sides > div { margin: 6px 0 10px; }
#graph { max-width: 100%; height: auto; }
.card code { font-size: inherit; }
svg text { font: 12px system-ui, sans-serif; }
.band { fill: #f3f5f9; stroke: #d5dae3; }
.band-title { font-weight: 700; font-size: 13px; fill: var(--ink); }
.node rect { stroke-width: 1.5; }
.node.critical rect { stroke-width: 3; }
.node .label { font-weight: 600; fill: var(--ink); }
.node .kind { fill: var(--muted); font-size: 11px; }
.node.ok rect { fill: var(--ok-bg); stroke: var(--ok); }
.node.failed rect { fill: var(--fail-bg); stroke: var(--fail); }
.node.skipped rect { fill: var(--skip-bg); stroke: var(--skip); }
.node.unchanged rect { fill: var(--same-bg); stroke: var(--same); }
.node.not-run rect { fill: #fff; stroke: var(--skip); stroke-dasharray: 4 3; }
.edge { fill: none; stroke: #555; stroke-width: 1.3; }
.escalate { fill: none; stroke: var(--fail); stroke-width: 1.5; stroke-dasharray: 6 4; }
.legend span { margin-right: 12px; }
.bar { display: block; width: 100%; max-width: 900px; height: auto; }
.seg-destroy { fill: var(--fail-bg); stroke: var(--fail); }
.seg-change { fill: var(--change-bg); stroke: var(--change); }
.seg-keep { fill: #e0e0e0; stroke: #888; }
.seg-create { fill: var(--ok-bg); stroke: var(--ok); }
.seg-free { fill: #fff; stroke: #ccc; }
.tl { position: relative; width: 360px; height: 12px; background: #f0f2f5; border-radius: 3px; }
.tl i { position: absolute; top: 0; height: 12px; border-radius: 3px; min-width: 2px; }
.tl i.ok { background: var(--ok); } .tl i.failed { background: var(--fail); } .tl i.skipped { background: var(--skip); } .tl i.unchanged { background: var(--same); }
footer { color: var(--muted); font-size: 12px; padding: 0 28px 24px; }
"#;

/// The whole page.
pub fn render(page: &Page) -> String {
    let r = page.report;
    let mut out = String::new();
    let title = format!("rplan {}: {}", page.command, page.plan.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        out,
        "<header><h1>{}</h1><p>{}</p></header><main>",
        esc(&title),
        esc(if r.scenario.is_empty() {
            "what the run did"
        } else {
            &r.scenario
        })
    );
    summary(&mut out, page);
    stages(&mut out, page);
    let _ = write!(
        out,
        "<section id=\"graph-section\"><h2>Step graph</h2><p class=\"legend\"><span class=\"pill ok\">ok</span><span class=\"pill unchanged\">unchanged</span><span class=\"pill failed\">failed</span><span class=\"pill skipped\">skipped</span><span class=\"pill not-run\">not run</span><span class=\"muted\">thick border: critical step; dashed arrow: the next stage runs when this one fails</span></p>{}</section>",
        layout::svg(page.plan, &|id| r.steps.iter().rev().find(|s| s.step == id).map(|s| s.outcome.clone()))
    );
    disks(&mut out, page);
    timeline(&mut out, page);
    let _ = writeln!(
        out,
        "</main><footer>rplan {} · plan hash <code>{}</code> · exit code {}</footer></body></html>",
        env!("CARGO_PKG_VERSION"),
        esc(&page.plan.plan_hash),
        page.exit
    );
    out
}

fn summary(out: &mut String, page: &Page) {
    let r = page.report;
    let count = |o: &str| r.steps.iter().filter(|s| s.outcome == o).count();
    let outcome = match page.recovered {
        Some(stage) => format!("recovered by <code>{}</code>", esc(stage)),
        None => "every stage fails".to_string(),
    };
    let _ = write!(
        out,
        "<section id=\"summary\"><div class=\"cards\">\
<div class=\"card\"><span>outcome</span><b class=\"pill {}\">{outcome}</b></div>\
<div class=\"card\" id=\"rto\"><span>estimated time to recover</span><b>{}</b></div>\
<div class=\"card\"><span>steps</span><b>{}</b>{} ok · {} unchanged · {} failed · {} skipped</div>\
<div class=\"card\"><span>disks</span><b>{}</b>{}</div></div></section>",
        if page.recovered.is_some() {
            "recovered"
        } else {
            "failed"
        },
        crate::apply::duration(r.rto_estimate_s),
        r.steps.len(),
        count("ok"),
        count("unchanged"),
        count("failed"),
        count("skipped"),
        page.plan.disks.len(),
        match (page.command, r.disks.len()) {
            ("apply", n) => format!("{n} opened"),
            (_, n) => format!("{n} simulated"),
        }
    );
}

fn stages(out: &mut String, page: &Page) {
    out.push_str("<section id=\"stages\"><h2>Stages, in escalation order</h2><table><tr><th>stage</th><th>kind</th><th>result</th><th>steps run</th><th>estimate</th></tr>");
    for stage in &page.plan.stages {
        let ran: Vec<_> = page
            .report
            .steps
            .iter()
            .filter(|s| s.stage == stage.id)
            .collect();
        let result = if page.recovered == Some(stage.id.as_str()) {
            "recovered"
        } else if ran.is_empty() {
            "not-run"
        } else {
            "failed"
        };
        let estimate: u64 = ran
            .iter()
            .fold(0_u64, |a, s| a.saturating_add(s.estimate_s));
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td><span class=\"pill {result}\">{}</span></td><td class=\"num\">{} of {}</td><td class=\"num\">{}</td></tr>",
            esc(&stage.id),
            stage.kind.name(),
            result.replace('-', " "),
            ran.len(),
            stage.steps.len(),
            crate::apply::duration(estimate)
        );
    }
    out.push_str("</table></section>");
}

fn mark_class(change: &str) -> &'static str {
    match change {
        "-" => "destroy",
        "~" => "change",
        "+" => "create",
        _ => "keep",
    }
}

/// A disk drawn to scale: one row of segments, partitions where they sit
/// (`text` unescaped: it is cut to fit, then escaped).
fn bar(size: u64, segments: &[(u64, u64, &str, String)]) -> String {
    const W: f64 = 900.0;
    let scale = |b: u64| (b as f64 / size.max(1) as f64 * W).clamp(0.0, W);
    let mut out = format!(
        "<svg class=\"bar\" viewBox=\"0 0 {W} 30\" xmlns=\"http://www.w3.org/2000/svg\"><rect class=\"seg-free\" x=\"0.5\" y=\"0.5\" width=\"{}\" height=\"29\"/>",
        W - 1.0
    );
    for (start, len, change, text) in segments {
        let (x, w) = (scale(*start), scale(*len).max(2.0));
        let _ = write!(
            out,
            "<g><title>{}</title><rect class=\"seg-{}\" x=\"{x:.1}\" y=\"2\" width=\"{w:.1}\" height=\"26\" rx=\"3\"/>",
            esc(text),
            mark_class(change)
        );
        if w > 60.0 {
            let chars = (w / 7.0) as usize;
            let shown: String = text.chars().take(chars).collect();
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"19\">{}</text>",
                x + 6.0,
                esc(&shown)
            );
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

fn disks(out: &mut String, page: &Page) {
    out.push_str("<section id=\"disks\"><h2>Disks: before → after</h2>");
    if page.report.disks.is_empty() {
        out.push_str("<p class=\"muted\">No target was opened.</p>");
    }
    for d in &page.report.disks {
        disk(out, d, page.command == "apply");
    }
    out.push_str("</section>");
}

fn disk(out: &mut String, d: &SimDisk, applied: bool) {
    let p = &d.preview;
    let _ = write!(
        out,
        "<div class=\"disk\" data-disk=\"{}\"><h3><code>{}</code> = <code>{}</code> ({})</h3><div class=\"sides\"><div><b>{}</b>",
        esc(&p.disk),
        esc(&p.disk),
        esc(&p.target),
        approx_bytes(p.size),
        if applied { "before the run" } else { "now" }
    );
    let before: Vec<_> = p
        .before
        .iter()
        .filter(|b| b.what != "table")
        .map(|b| {
            let name = b.label.as_deref().filter(|l| !l.is_empty());
            let text = format!(
                "{} {}{}",
                b.number.map_or(String::new(), |n| n.to_string()),
                b.fs.as_deref().unwrap_or(""),
                name.map_or(String::new(), |l| format!(" {l}"))
            );
            (b.start, b.size, b.change.as_str(), text.trim().to_string())
        })
        .collect();
    out.push_str(&bar(p.size, &before));
    if p.before.is_empty() {
        out.push_str("<p class=\"muted\">blank: no partition table, no signature</p>");
    } else {
        out.push_str("<table class=\"before\"><tr><th></th><th>what</th><th>start</th><th>size</th><th>type</th><th>filesystem</th><th>label</th><th>used</th></tr>");
        for b in &p.before {
            let what = match (b.what.as_str(), b.number) {
                ("partition", Some(n)) => format!("partition {n}"),
                ("disk", _) => "whole disk".to_string(),
                (w, _) => w.to_string(),
            };
            let _ = write!(
                out,
                "<tr><td class=\"mark mark-{}\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                mark_class(&b.change),
                esc(&b.change),
                esc(&what),
                approx_bytes(b.start),
                approx_bytes(b.size),
                esc(b.r#type.as_deref().unwrap_or("")),
                esc(b.fs.as_deref().unwrap_or("")),
                esc(b.label.as_deref().unwrap_or("")),
                b.used.map_or(String::new(), approx_bytes)
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</div><div><b>after</b>");
    let after: Vec<_> = p
        .after
        .iter()
        .filter(|a| a.what == "partition")
        .map(|a| (a.start, a.size, a.change.as_str(), a.id.clone()))
        .collect();
    out.push_str(&bar(p.size, &after));
    out.push_str("<table class=\"after\"><tr><th></th><th>what</th><th>id</th><th>start</th><th>size</th><th>type</th><th>content</th></tr>");
    for a in &p.after {
        let _ = write!(
            out,
            "<tr><td class=\"mark mark-{}\">{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            mark_class(&a.change),
            esc(&a.change),
            esc(&a.what),
            esc(&a.id),
            approx_bytes(a.start),
            approx_bytes(a.size),
            esc(&a.r#type),
            esc(a.content.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table></div></div>");
    if !p.destroyed.is_empty() {
        out.push_str("<p><b class=\"mark-destroy\">destroyed:</b> ");
        let gone: Vec<String> = p.destroyed.iter().map(|x| esc(&x.describe())).collect();
        out.push_str(&gone.join("; "));
        out.push_str("</p>");
    }
    if applied {
        // A real target keeps no record of the bytes written.
        out.push_str("</div>");
        return;
    }
    let changed: u64 = d.changes.iter().fold(0_u64, |a, c| a.saturating_add(c.len));
    let _ = write!(
        out,
        "<p class=\"muted\">{}</p></div>",
        if d.changes.is_empty() {
            "no byte of this disk would change".to_string()
        } else {
            format!(
                "{} in {} range{} would be written{}",
                approx_bytes(changed),
                d.changes.len(),
                if d.changes.len() == 1 { "" } else { "s" },
                if d.table_unchanged {
                    "; the table is already in place"
                } else {
                    ""
                }
            )
        }
    );
}

fn timeline(out: &mut String, page: &Page) {
    let r = page.report;
    let total = r.rto_estimate_s.max(1) as f64;
    out.push_str("<section id=\"timeline\"><h2>Timeline</h2><table><tr><th>at</th><th></th><th>result</th><th>step</th><th>what</th><th>estimate</th></tr>");
    let mut at = 0_u64;
    for s in &r.steps {
        let left = at as f64 / total * 100.0;
        let width = (s.estimate_s as f64 / total * 100.0).min(100.0 - left);
        let class = layout::outcome_class(&s.outcome);
        let _ = write!(
            out,
            "<tr><td class=\"num\">+{}</td><td><div class=\"tl\"><i class=\"{class}\" style=\"left:{left:.2}%;width:{width:.2}%\"></i></div></td><td><span class=\"pill {class}\">{}</span></td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td></tr>",
            crate::apply::duration(at),
            esc(&s.outcome),
            esc(&s.step),
            esc(&s.description),
            crate::apply::duration(s.estimate_s)
        );
        at = at.saturating_add(s.estimate_s);
    }
    let _ = write!(
        out,
        "<tr><td class=\"num\"><b>{}</b></td><td colspan=\"5\"><b>estimated time to recover</b></td></tr></table></section>",
        crate::apply::duration(r.rto_estimate_s)
    );
}
