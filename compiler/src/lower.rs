//! Lowering: an analyzed plan becomes one step DAG per stage (petgraph), in a
//! deterministic topological order, with estimates; then the compiled plan.
//!
//! ASR steps come from the disk graph: per disk check → clear → table; per
//! partition its content (restore, or format then files) then verify; per
//! volume assemble (after every member disk's table) then content and
//! verify; the stage's success probe last. Other stages are their actions
//! (in order, or as their `after:` edges say) and then their probe.

use crate::analyze::stages::{ResolvedStage, DEFAULT_RUN_TIMEOUT};
use crate::analyze::Analysis;
use crate::compiled::{CStage, CStep, CompiledPlan, StepKind, FORMAT_VERSION};
use crate::diagnostic::{codes, Diagnostic};
use crate::model::{Content, Plan, Stage, StageKind, TableKind};
use crate::rules::RuleSet;
use crate::size::human_bytes;
use crate::Options;
use petgraph::graph::{DiGraph, NodeIndex};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};

pub fn lower(
    plan: &Plan,
    analysis: &Analysis,
    rules: &RuleSet,
    options: &Options,
) -> Result<CompiledPlan, Vec<Diagnostic>> {
    let throughput = options.throughput.max(1);
    let mut stages = Vec::new();
    let mut order = Vec::new();
    let mut problems = Vec::new();
    for (s, (stage, resolved)) in plan.stages.iter().zip(&analysis.stages).enumerate() {
        let mut steps = Steps {
            stage: &stage.id,
            list: Vec::new(),
            throughput,
        };
        if stage.kind == StageKind::Asr {
            steps.asr(analysis);
        } else {
            steps.actions(stage, resolved);
        }
        steps.probe(stage, resolved);
        match topological(&steps.list) {
            Ok(ids) => order.extend(ids),
            Err(cycle) => problems.push(cycle_diagnostic(s, stage, &cycle)),
        }
        let sum: u64 = steps.list.iter().map(|st| st.estimate_s).sum();
        let (timeout_s, timeout_defaulted) = match resolved.timeout {
            Some((t, _)) => (t, false),
            // ASR's default leaves room for a slow disk: three times the estimate.
            None if stage.kind == StageKind::Asr => (sum.saturating_mul(3).max(3600), true),
            None => (sum.max(60), true),
        };
        stages.push(CStage {
            id: stage.id.clone(),
            kind: stage.kind,
            rank: resolved.rank,
            timeout_s,
            timeout_defaulted,
            estimate_s: sum.min(timeout_s),
            steps: steps.list,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let rto_estimate_s = stages.iter().map(|s| s.estimate_s).sum();
    Ok(CompiledPlan {
        format_version: FORMAT_VERSION,
        plan_hash: plan_hash(plan, rules, analysis),
        name: plan.name.clone(),
        rule: analysis.rule.clone(),
        throughput,
        artifacts: analysis.artifacts.clone(),
        disks: analysis.disks.clone(),
        volumes: analysis.volumes.clone(),
        stages,
        order,
        rto_estimate_s,
    })
}

/// sha256 over the canonical plan, the effective rules and artifact hashes.
pub fn plan_hash(plan: &Plan, rules: &RuleSet, analysis: &Analysis) -> String {
    let mut h = Sha256::new();
    let mut part = |tag: &str, bytes: &[u8]| {
        h.update(tag.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part("plan", &serde_json::to_vec(plan).unwrap_or_default());
    part(
        "rules",
        &serde_json::to_vec(&rules.canonical()).unwrap_or_default(),
    );
    for a in &analysis.artifacts {
        part("artifact", format!("{}={}", a.id, a.sha256).as_bytes());
    }
    crate::analyze::artifacts::hex(&h.finalize())
}

struct Steps<'a> {
    stage: &'a str,
    list: Vec<CStep>,
    throughput: u64,
}

impl Steps<'_> {
    fn push(
        &mut self,
        suffix: &str,
        kind: StepKind,
        after: Vec<String>,
        critical: bool,
        estimate_s: u64,
        description: String,
    ) -> String {
        let id = format!("{}/{suffix}", self.stage);
        self.list.push(CStep {
            id: id.clone(),
            kind,
            after,
            critical,
            estimate_s,
            disk: None,
            partition: None,
            volume: None,
            argv: None,
            text: None,
            timeout_s: None,
            description,
        });
        id
    }

    fn last(&mut self) -> &mut CStep {
        let n = self.list.len() - 1;
        &mut self.list[n]
    }

    fn secs(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.throughput)
    }

    fn asr(&mut self, analysis: &Analysis) {
        let mut tables = HashMap::new();
        for d in &analysis.disks {
            let c = d.critical;
            let check = self.push(
                &format!("{}/check", d.id),
                StepKind::CheckTarget,
                vec![],
                c,
                1,
                format!("check target for disk {}", d.id),
            );
            self.last().disk = Some(d.id.clone());
            let clear = self.push(
                &format!("{}/clear", d.id),
                StepKind::ClearSignatures,
                vec![check],
                c,
                1,
                format!("clear stale signatures inside disk {}'s partitions", d.id),
            );
            self.last().disk = Some(d.id.clone());
            let table = self.push(
                &format!("{}/table", d.id),
                StepKind::WriteTable,
                vec![clear],
                c,
                1,
                format!(
                    "write the {} of disk {} ({} partition{})",
                    match d.table {
                        _ if d.partitions.iter().any(|p| p.volume.is_some()) => {
                            "MBR (one 0x42 partition) and LDM database"
                        }
                        TableKind::Mbr => "MBR table",
                        TableKind::Gpt => "GPT table",
                    },
                    d.id,
                    d.partitions.len(),
                    if d.partitions.len() == 1 { "" } else { "s" }
                ),
            );
            self.last().disk = Some(d.id.clone());
            tables.insert(d.id.clone(), table.clone());
            for p in d.partitions.iter().filter(|p| p.volume.is_none()) {
                let Some(content) = &p.content else { continue };
                let base = format!("{}/{}", d.id, p.id);
                let mark = |st: &mut CStep| {
                    st.disk = Some(d.id.clone());
                    st.partition = Some(p.id.clone());
                };
                self.content(content, &base, table.clone(), c, p.min_size, analysis, mark);
                if content.image.is_some() {
                    // After verify, which compares the image as restored.
                    let sector = p.start / u64::from(d.sector_size);
                    self.push(
                        &format!("{base}/bootsector"),
                        StepKind::FixBootSector,
                        vec![format!("{}/{base}/verify", self.stage)],
                        c,
                        1,
                        format!(
                            "point {base}'s NTFS/FAT boot sector at its start (hidden sectors = {sector})"
                        ),
                    );
                    mark(self.last());
                }
            }
        }
        for v in &analysis.volumes {
            let mut after: Vec<String> = v
                .members
                .iter()
                .filter_map(|m| tables.get(&m.disk).cloned())
                .collect();
            after.sort();
            after.dedup();
            let assemble = self.push(
                &format!("volume/{}/assemble", v.id),
                StepKind::AssembleVolume,
                after,
                v.critical,
                1,
                format!(
                    "assemble {:?} volume {} over {} members",
                    v.layout,
                    v.id,
                    v.members.len()
                )
                .to_lowercase(),
            );
            self.last().volume = Some(v.id.clone());
            if let Some(content) = &v.content {
                let base = format!("volume/{}", v.id);
                self.content(
                    content,
                    &base,
                    assemble,
                    v.critical,
                    v.usable_size,
                    analysis,
                    |st| st.volume = Some(v.id.clone()),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn content(
        &mut self,
        c: &Content,
        base: &str,
        after: String,
        critical: bool,
        capacity: u64,
        analysis: &Analysis,
        mark: impl Fn(&mut CStep),
    ) {
        let mut prev = after;
        let mut verified = 0;
        if let Some(image) = &c.image {
            let size = analysis
                .artifacts
                .iter()
                .find(|a| &a.id == image)
                .and_then(|a| a.size)
                .unwrap_or(capacity);
            let est = self.secs(size) + 1;
            prev = self.push(
                &format!("{base}/restore"),
                StepKind::RestoreImage,
                vec![prev],
                critical,
                est,
                format!("restore {image} ({}) into {base}", human_bytes(size)),
            );
            mark(self.last());
            verified += size;
        }
        if let Some(f) = &c.format {
            let est = 5 + self.secs(capacity / 256);
            let fs = format!("{:?}", f.fs).to_lowercase();
            prev = self.push(
                &format!("{base}/format"),
                StepKind::Format,
                vec![prev],
                critical,
                est,
                format!("make {fs} on {base} ({})", human_bytes(capacity)),
            );
            mark(self.last());
        }
        if !c.files.is_empty() {
            let total: u64 = c
                .files
                .iter()
                .filter_map(|f| {
                    analysis
                        .artifacts
                        .iter()
                        .find(|a| a.id == f.artifact)
                        .and_then(|a| a.size)
                })
                .sum();
            let names: Vec<&str> = c.files.iter().map(|f| f.to.as_str()).collect();
            prev = self.push(
                &format!("{base}/files"),
                StepKind::InstallFiles,
                vec![prev],
                critical,
                1 + self.secs(total),
                format!("install {} into {base}", names.join(", ")),
            );
            mark(self.last());
            verified += total;
        }
        self.push(
            &format!("{base}/verify"),
            StepKind::Verify,
            vec![prev],
            critical,
            1 + self.secs(verified),
            format!("verify {base}"),
        );
        mark(self.last());
    }

    fn actions(&mut self, stage: &Stage, resolved: &ResolvedStage) {
        for (act, r) in stage.actions.iter().zip(&resolved.actions) {
            let after = r
                .after
                .iter()
                .map(|a| format!("{}/{a}", self.stage))
                .collect();
            let (kind, description) = match (&act.manual, &act.run) {
                (Some(text), _) => (StepKind::Manual, format!("ask: {text}")),
                (None, Some(argv)) => (StepKind::Run, format!("run {}", argv.join(" "))),
                (None, None) => (StepKind::Run, "run nothing".into()),
            };
            self.push(&r.id, kind, after, true, r.timeout_s, description);
            let step = self.last();
            step.argv = act.run.clone();
            step.text = act.manual.clone();
            step.timeout_s = Some(r.timeout_s);
        }
    }

    fn probe(&mut self, stage: &Stage, resolved: &ResolvedStage) {
        let Some(probe) = &stage.success else { return };
        let targets: BTreeSet<&str> = self
            .list
            .iter()
            .flat_map(|s| s.after.iter().map(String::as_str))
            .collect();
        let sinks: Vec<String> = self
            .list
            .iter()
            .filter(|s| !targets.contains(s.id.as_str()))
            .map(|s| s.id.clone())
            .collect();
        let t = resolved.probe_timeout;
        self.push(
            "success",
            StepKind::Probe,
            sinks,
            true,
            t,
            format!("probe {}", probe.run.join(" ")),
        );
        let step = self.last();
        step.argv = Some(probe.run.clone());
        step.timeout_s = Some(t);
    }
}

/// Kahn's algorithm over a petgraph DAG, ready steps taken smallest id
/// first, so the order is the same on every run. `Err` carries a cycle.
pub fn topological(steps: &[CStep]) -> Result<Vec<String>, Vec<String>> {
    let mut g: DiGraph<&str, ()> = DiGraph::new();
    let nodes: HashMap<&str, NodeIndex> = steps
        .iter()
        .map(|s| (s.id.as_str(), g.add_node(s.id.as_str())))
        .collect();
    for s in steps {
        for a in &s.after {
            if let Some(&from) = nodes.get(a.as_str()) {
                g.add_edge(from, nodes[s.id.as_str()], ());
            }
        }
    }
    let mut indegree: HashMap<NodeIndex, usize> = g
        .node_indices()
        .map(|n| (n, g.neighbors_directed(n, petgraph::Incoming).count()))
        .collect();
    let mut ready: BTreeSet<(&str, NodeIndex)> = indegree
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(&n, _)| (g[n], n))
        .collect();
    let mut out = Vec::with_capacity(steps.len());
    while let Some((id, n)) = ready.pop_first() {
        out.push(id.to_string());
        for m in g.neighbors_directed(n, petgraph::Outgoing) {
            if let Some(d) = indegree.get_mut(&m) {
                *d -= 1;
                if *d == 0 {
                    ready.insert((g[m], m));
                }
            }
        }
    }
    if out.len() == steps.len() {
        return Ok(out);
    }
    // Some strongly connected component with more than one node (or a self
    // loop) is the cycle; report it in edge order.
    let scc = petgraph::algo::tarjan_scc(&g)
        .into_iter()
        .find(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))
        .unwrap_or_default();
    let mut cycle: Vec<String> = Vec::new();
    if let Some(&start) = scc.first() {
        let mut at = start;
        loop {
            cycle.push(g[at].to_string());
            let next = g
                .neighbors_directed(at, petgraph::Outgoing)
                .find(|m| scc.contains(m));
            match next {
                Some(m) if m != start && !cycle.iter().any(|c| c == g[m]) => at = m,
                _ => break,
            }
        }
        cycle.push(g[start].to_string());
    }
    Err(cycle)
}

fn cycle_diagnostic(s: usize, stage: &Stage, cycle: &[String]) -> Diagnostic {
    let prefix = format!("{}/", stage.id);
    let names: Vec<&str> = cycle
        .iter()
        .map(|c| c.strip_prefix(&prefix).unwrap_or(c))
        .collect();
    let pointer = names
        .get(1)
        .and_then(|second| {
            stage
                .actions
                .iter()
                .enumerate()
                .find(|(a, act)| {
                    act.id
                        .clone()
                        .unwrap_or_else(|| format!("action-{}", a + 1))
                        == *second
                })
                .map(|(a, _)| format!("/stages/{s}/actions/{a}/after"))
        })
        .unwrap_or_else(|| format!("/stages/{s}"));
    Diagnostic::error(
        codes::CYCLE,
        pointer,
        format!(
            "actions of stage `{}` wait for each other: {}",
            stage.id,
            names.join(" → ")
        ),
    )
    .help("remove one of these `after:` entries")
}

/// Default throughput for estimates: a conservative 50 MiB/s disk.
pub const DEFAULT_THROUGHPUT: u64 = 50 * 1024 * 1024;
const _: u64 = DEFAULT_RUN_TIMEOUT;
