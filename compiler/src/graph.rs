//! Drawing the step DAG: Graphviz DOT and Mermaid, grouped by stage, critical
//! steps marked, stages chained in escalation order.

use crate::compiled::{CompiledPlan, StepKind};
use std::fmt::Write;

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(plan: &CompiledPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", quote(&plan.name));
    out.push_str("  rankdir=TB;\n  compound=true;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    for (i, stage) in plan.stages.iter().enumerate() {
        let _ = writeln!(out, "  subgraph \"cluster_{i}\" {{");
        let _ = writeln!(
            out,
            "    label=\"{} ({}, rank {})\";",
            quote(&stage.id),
            stage.kind.name(),
            stage.rank
        );
        for step in &stage.steps {
            let style = if step.critical {
                ", penwidth=2, color=\"#b00020\""
            } else {
                ""
            };
            let shape = match step.kind {
                StepKind::Probe => ", shape=diamond",
                StepKind::Manual => ", shape=note",
                _ => "",
            };
            let _ = writeln!(
                out,
                "    \"{}\" [label=\"{}\\n{}{}\"{style}{shape}];",
                quote(&step.id),
                quote(
                    step.id
                        .strip_prefix(&format!("{}/", stage.id))
                        .unwrap_or(&step.id)
                ),
                quote(&format!("{:?}", step.kind)),
                if step.critical { " (critical)" } else { "" }
            );
        }
        out.push_str("  }\n");
        for step in &stage.steps {
            for a in &step.after {
                let _ = writeln!(out, "  \"{}\" -> \"{}\";", quote(a), quote(&step.id));
            }
        }
    }
    for pair in plan.stages.windows(2) {
        if let (Some(a), Some(b)) = (pair[0].steps.last(), pair[1].steps.first()) {
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [style=dashed, label=\"on failure\"];",
                quote(&a.id),
                quote(&b.id)
            );
        }
    }
    out.push_str("}\n");
    out
}

pub fn mermaid(plan: &CompiledPlan) -> String {
    let mut out = String::from("flowchart TD\n");
    let node = |id: &str| format!("n{:x}", fxhash(id));
    for stage in &plan.stages {
        let _ = writeln!(
            out,
            "  subgraph {}[\"{} ({})\"]",
            node(&format!("stage:{}", stage.id)),
            stage.id,
            stage.kind.name()
        );
        for step in &stage.steps {
            let label = step
                .id
                .strip_prefix(&format!("{}/", stage.id))
                .unwrap_or(&step.id)
                .replace('"', "'");
            let label = if step.critical {
                format!("{label} ⚠")
            } else {
                label
            };
            let shape = match step.kind {
                StepKind::Probe => format!("{{\"{label}\"}}"),
                _ => format!("[\"{label}\"]"),
            };
            let _ = writeln!(out, "    {}{shape}", node(&step.id));
        }
        out.push_str("  end\n");
        for step in &stage.steps {
            for a in &step.after {
                let _ = writeln!(out, "  {} --> {}", node(a), node(&step.id));
            }
        }
    }
    for pair in plan.stages.windows(2) {
        let _ = writeln!(
            out,
            "  {} -. on failure .-> {}",
            node(&format!("stage:{}", pair[0].id)),
            node(&format!("stage:{}", pair[1].id))
        );
    }
    out
}

/// A small stable hash for Mermaid node names (ids may hold any character).
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
