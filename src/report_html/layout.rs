//! The step graph as SVG: a layered drawing written here rather than taken
//! from a layout crate (ARCHITECTURE.md says why). Each stage is a band,
//! stacked in escalation order with a dashed "on failure" arrow between
//! bands; inside a band a step's column is its longest `after` path from the
//! stage's first steps, and one barycenter sweep orders each column to keep
//! edges short. Nothing here knows about HTML beyond escaping text.

use super::esc;
use rplan_compiler::compiled::{CompiledPlan, StepKind};
use std::collections::HashMap;
use std::fmt::Write;

const NODE_W: u32 = 190;
const NODE_H: u32 = 46;
const GAP_X: u32 = 56;
const GAP_Y: u32 = 16;
const BAND_HEAD: u32 = 34;
const BAND_GAP: u32 = 40;
const MARGIN: u32 = 16;
/// Longer step labels are cut (the full id is in the node's tooltip).
const LABEL_CHARS: usize = 24;

/// A step's place in the drawing.
struct Placed {
    x: u32,
    y: u32,
}

/// Draw `plan`'s steps; `outcome` gives a step's result (`ok`, `failed`,
/// `skipped`, `unchanged`), `None` for a step that did not run.
pub fn svg(plan: &CompiledPlan, outcome: &dyn Fn(&str) -> Option<String>) -> String {
    let mut placed: HashMap<&str, Placed> = HashMap::new();
    let mut bands: Vec<(u32, u32)> = Vec::new(); // (top, height)
    let mut width = 2 * MARGIN + NODE_W;
    let mut top = MARGIN;
    for stage in &plan.stages {
        let columns = columns(stage);
        let rows = columns.iter().map(Vec::len).max().unwrap_or(0) as u32;
        for (c, column) in columns.iter().enumerate() {
            for (r, &i) in column.iter().enumerate() {
                let x = MARGIN + 12 + c as u32 * (NODE_W + GAP_X);
                let y = top + BAND_HEAD + r as u32 * (NODE_H + GAP_Y);
                placed.insert(stage.steps[i].id.as_str(), Placed { x, y });
            }
        }
        width = width.max(2 * MARGIN + 24 + columns.len() as u32 * (NODE_W + GAP_X) - GAP_X);
        let height = BAND_HEAD + rows.max(1) * (NODE_H + GAP_Y) + 4;
        bands.push((top, height));
        top += height + BAND_GAP;
    }
    let height = top.saturating_sub(BAND_GAP) + MARGIN;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="step graph"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>"##
    );
    for (stage, &(top, h)) in plan.stages.iter().zip(&bands) {
        let _ = write!(
            out,
            r#"<g class="stage"><rect x="{MARGIN}" y="{top}" width="{}" height="{h}" rx="10" class="band"/><text x="{}" y="{}" class="band-title">{} <tspan class="muted">({}, rank {})</tspan></text></g>"#,
            width - 2 * MARGIN,
            MARGIN + 12,
            top + 22,
            esc(&stage.id),
            stage.kind.name(),
            stage.rank
        );
    }
    for pair in bands.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let x = MARGIN + 40;
        let _ = write!(
            out,
            r#"<path d="M{x},{} L{x},{}" class="escalate" marker-end="url(#arrow)"/><text x="{}" y="{}" class="muted">on failure</text>"#,
            a.0 + a.1,
            b.0,
            x + 8,
            a.0 + a.1 + BAND_GAP / 2 + 4
        );
    }
    for stage in &plan.stages {
        for step in &stage.steps {
            let Some(to) = placed.get(step.id.as_str()) else {
                continue;
            };
            for a in &step.after {
                let Some(from) = placed.get(a.as_str()) else {
                    continue;
                };
                let (x1, y1) = (from.x + NODE_W, from.y + NODE_H / 2);
                let (x2, y2) = (to.x, to.y + NODE_H / 2);
                // Same column (a cross-stage edge): leave from the bottom.
                let d = if x2 > x1 {
                    let mid = (x1 + x2) / 2;
                    format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")
                } else {
                    let (bx, by) = (from.x + NODE_W / 2, from.y + NODE_H);
                    format!(
                        "M{bx},{by} C{bx},{} {},{y2} {x2},{y2}",
                        by + 30,
                        x2.saturating_sub(30)
                    )
                };
                let _ = write!(
                    out,
                    r#"<path d="{d}" class="edge" marker-end="url(#arrow)"/>"#
                );
            }
        }
    }
    for stage in &plan.stages {
        for step in &stage.steps {
            let Some(p) = placed.get(step.id.as_str()) else {
                continue;
            };
            let result = outcome(&step.id);
            let class = result.as_deref().map_or("not-run", outcome_class);
            let label = step
                .id
                .strip_prefix(&format!("{}/", stage.id))
                .unwrap_or(&step.id);
            let _ = write!(
                out,
                r#"<g class="node {class}{}" data-step="{}"><title>{} — {}: {}</title><rect x="{}" y="{}" width="{NODE_W}" height="{NODE_H}" rx="{}"/><text x="{}" y="{}" class="label">{}</text><text x="{}" y="{}" class="kind">{}{}</text></g>"#,
                if step.critical { " critical" } else { "" },
                esc(&step.id),
                esc(&step.id),
                result.as_deref().unwrap_or("not run"),
                esc(&step.description),
                p.x,
                p.y,
                if step.kind == StepKind::Probe { 18 } else { 6 },
                p.x + 10,
                p.y + 19,
                esc(&cut(label, LABEL_CHARS)),
                p.x + 10,
                p.y + 36,
                kind_name(step.kind),
                if step.critical { " · critical" } else { "" },
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// The CSS class of a step result (anything unknown draws as not run).
pub fn outcome_class(outcome: &str) -> &'static str {
    match outcome {
        "ok" => "ok",
        "unchanged" => "unchanged",
        "failed" => "failed",
        "skipped" => "skipped",
        _ => "not-run",
    }
}

fn kind_name(kind: StepKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A stage's steps (indices) in columns: a step's column is one more than
/// the furthest of its predecessors in the same stage; each column after
/// the first is ordered by the mean row of those predecessors.
fn columns(stage: &rplan_compiler::compiled::CStage) -> Vec<Vec<usize>> {
    let index: HashMap<&str, usize> = stage
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let preds: Vec<Vec<usize>> = stage
        .steps
        .iter()
        .map(|s| {
            s.after
                .iter()
                .filter_map(|a| index.get(a.as_str()).copied())
                .collect()
        })
        .collect();
    // Relaxation, at most one pass per step: a compiled plan has no
    // cycles (RP0601), and a hand-edited one cannot make this loop.
    let mut layer = vec![0_usize; stage.steps.len()];
    for _ in 0..stage.steps.len() {
        let mut changed = false;
        for (i, ps) in preds.iter().enumerate() {
            let want = ps.iter().map(|&p| layer[p] + 1).max().unwrap_or(0);
            if want > layer[i] && want < stage.steps.len() {
                layer[i] = want;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let depth = layer.iter().max().map_or(0, |m| m + 1);
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); depth];
    for (i, &l) in layer.iter().enumerate() {
        columns[l].push(i);
    }
    let mut row = vec![0.0_f64; stage.steps.len()];
    for (c, column) in columns.iter_mut().enumerate() {
        if c > 0 {
            let key = |i: usize| {
                let ps = &preds[i];
                if ps.is_empty() {
                    f64::MAX
                } else {
                    ps.iter().map(|&p| row[p]).sum::<f64>() / ps.len() as f64
                }
            };
            column.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
        }
        for (r, &i) in column.iter().enumerate() {
            row[i] = r as f64;
        }
    }
    columns
}
