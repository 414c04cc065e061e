//! The escalation ladder. The seed: ASR is the last resort, after Safe Mode
//! and Last Known Good. Stages must not get more gentle as they go, ASR comes
//! once and last, and every wait has a timeout (written or defaulted here).

use crate::diagnostic::{codes, Diagnostic};
use crate::model::{Plan, StageKind};
use crate::size::Duration;
use crate::Options;

/// Timeouts used where the plan gives none (seconds).
pub const DEFAULT_RUN_TIMEOUT: u64 = 10 * 60;
pub const DEFAULT_MANUAL_TIMEOUT: u64 = 30 * 60;
pub const DEFAULT_PROBE_TIMEOUT: u64 = 5 * 60;

#[derive(Debug, Clone)]
pub struct ResolvedStage {
    pub rank: u32,
    /// (seconds, defaulted)
    pub timeout: Option<(u64, bool)>,
    /// Per action: its id (written or `index`), timeout, and predecessors.
    pub actions: Vec<ResolvedAction>,
    pub probe_timeout: u64,
}

#[derive(Debug, Clone)]
pub struct ResolvedAction {
    pub id: String,
    pub timeout_s: u64,
    pub after: Vec<String>,
}

pub fn check(plan: &Plan, options: &Options, diags: &mut Vec<Diagnostic>) -> Vec<ResolvedStage> {
    if plan.stages.is_empty() {
        diags.push(
            Diagnostic::error(codes::NO_STAGES, "/stages", "the plan has no stages")
                .help("start with `safe-mode`, then `last-known-good`, then `asr`"),
        );
    }
    super::unique_ids(
        plan.stages
            .iter()
            .enumerate()
            .map(|(s, st)| (st.id.as_str(), format!("/stages/{s}/id"))),
        codes::DUPLICATE_STAGE,
        "stage",
        diags,
    );
    let mut out = Vec::new();
    let mut prev: Option<(u32, usize)> = None;
    let mut asr_at: Option<usize> = None;
    for (s, st) in plan.stages.iter().enumerate() {
        let sp = format!("/stages/{s}");
        let rank = match (st.kind.default_rank(), st.rank) {
            (None, Some(r)) => r,
            (Some(d), Some(r)) => {
                if r != d {
                    diags.push(
                        Diagnostic::error(
                            codes::RANK_MISSING,
                            format!("{sp}/rank"),
                            format!(
                                "a `{}` stage has rank {d}; `rank` is for custom stages",
                                st.kind.name()
                            ),
                        )
                        .help("remove `rank`"),
                    );
                }
                d
            }
            (Some(d), None) => d,
            (None, None) => {
                diags.push(
                    Diagnostic::error(
                        codes::RANK_MISSING,
                        format!("{sp}/kind"),
                        "a custom stage needs a `rank`",
                    )
                    .help("rank places it on the ladder: safe-mode 10, last-known-good 20, asr 30"),
                );
                0
            }
        };
        // A custom stage's place on the ladder is its `rank`; a missing one
        // was reported above and says nothing about order.
        let rank_ptr = if st.rank.is_some() && st.kind == StageKind::Custom {
            format!("{sp}/rank")
        } else {
            format!("{sp}/kind")
        };
        let ranked = st.kind != StageKind::Custom || st.rank.is_some();
        if let (Some((p, ps)), true) = (prev, ranked) {
            if rank < p {
                diags.push(
                    Diagnostic::error(
                        codes::RANK_ORDER,
                        rank_ptr,
                        format!("stage `{}` (rank {rank}) is gentler than `{}` (rank {p}) before it", st.id, plan.stages[ps].id),
                    )
                    .related(format!("/stages/{ps}"), "the harsher stage")
                    .help("order stages from least to most destructive: safe-mode, last-known-good, asr"),
                );
            }
        }
        if ranked {
            prev = Some((rank, s));
        }
        if st.kind == StageKind::Asr {
            if let Some(first) = asr_at {
                diags.push(
                    Diagnostic::error(
                        codes::SECOND_ASR,
                        format!("{sp}/kind"),
                        "a plan has at most one ASR stage",
                    )
                    .related(format!("/stages/{first}"), "the first ASR stage"),
                );
            } else {
                asr_at = Some(s);
            }
        }
        out.push(resolve_stage(st, &sp, rank, options, diags));
    }
    if let Some(a) = asr_at {
        if a + 1 != plan.stages.len() {
            diags.push(
                Diagnostic::error(
                    codes::ASR_NOT_LAST,
                    format!("/stages/{a}/kind"),
                    "the ASR stage must be the last stage",
                )
                .help("ASR replaces the disks' contents: nothing after it could still help"),
            );
        }
        if !plan.stages[..a].iter().any(|st| st.kind != StageKind::Asr) {
            diags.push(
                Diagnostic::warning(
                    codes::ASR_FIRST,
                    format!("/stages/{a}"),
                    "ASR is the first stage: nothing gentler is tried before it",
                )
                .help("KB 818903: ASR is a last resort; try Safe Mode and Last Known Good first"),
            );
        }
        if plan.disks.is_empty() {
            diags.push(
                Diagnostic::error(
                    codes::ASR_WITHOUT_DISKS,
                    format!("/stages/{a}"),
                    "the ASR stage has no disks to restore",
                )
                .help("describe the disks under `disks:` (`rplan capture` writes them)"),
            );
        }
    } else if !plan.disks.is_empty() {
        diags.push(
            Diagnostic::warning(
                codes::DISKS_WITHOUT_ASR,
                "/disks",
                "the plan describes disks but has no ASR stage to restore them",
            )
            .help("add `- { id: asr, kind: asr }` as the last stage"),
        );
    }
    out
}

fn resolve_stage(
    st: &crate::model::Stage,
    sp: &str,
    rank: u32,
    options: &Options,
    diags: &mut Vec<Diagnostic>,
) -> ResolvedStage {
    let ids: Vec<String> = st
        .actions
        .iter()
        .enumerate()
        .map(|(a, act)| {
            act.id
                .clone()
                .unwrap_or_else(|| format!("action-{}", a + 1))
        })
        .collect();
    super::unique_ids(
        ids.iter()
            .enumerate()
            .map(|(a, id)| (id.as_str(), format!("{sp}/actions/{a}/id"))),
        codes::DUPLICATE_ACTION,
        "action",
        diags,
    );
    if st.kind == StageKind::Asr && !st.actions.is_empty() {
        diags.push(
            Diagnostic::error(
                codes::BAD_ACTION,
                format!("{sp}/actions"),
                "the ASR stage's steps come from disks, volumes and backup; it takes no actions",
            )
            .help("put preparation in a custom stage before it"),
        );
    }
    let any_after = st.actions.iter().any(|a| a.after.is_some());
    let mut actions = Vec::new();
    for (a, act) in st.actions.iter().enumerate() {
        let ap = format!("{sp}/actions/{a}");
        match (&act.manual, &act.run) {
            (Some(_), Some(_)) | (None, None) => diags.push(Diagnostic::error(
                codes::BAD_ACTION,
                ap.clone(),
                "an action has exactly one of `manual` or `run`",
            )),
            (Some(_), None) if options.unattended => diags.push(
                Diagnostic::error(
                    codes::MANUAL_UNATTENDED,
                    format!("{ap}/manual"),
                    "a manual action cannot run unattended",
                )
                .help("replace it with a `run` command, or drop --unattended"),
            ),
            (None, Some(argv)) if argv.first().is_none_or(|c| c.trim().is_empty()) => diags.push(
                Diagnostic::error(
                    codes::BAD_ACTION,
                    format!("{ap}/run"),
                    "the command is empty",
                )
                .help("`run` is an argv list: [program, arg, …]"),
            ),
            _ => {}
        }
        let after = match &act.after {
            Some(list) => {
                for (n, dep) in list.iter().enumerate() {
                    if !ids.contains(dep) {
                        diags.push(
                            Diagnostic::error(
                                codes::DANGLING_AFTER,
                                format!("{ap}/after/{n}"),
                                format!("no action `{dep}` in stage `{}`", st.id),
                            )
                            .maybe_help(
                                crate::schema::did_you_mean(dep, ids.iter())
                                    .map(|s| format!("did you mean `{s}`?")),
                            ),
                        );
                    }
                }
                list.clone()
            }
            // Without any `after:`, actions run in order; with some, an
            // action without `after` has no predecessor.
            None if !any_after && a > 0 => vec![ids[a - 1].clone()],
            None => Vec::new(),
        };
        if let (Some(limit), Some(own)) = (st.timeout, act.timeout) {
            diags.extend(exceeds_stage(
                &st.id,
                limit,
                own,
                format!("{ap}/timeout"),
                "this action",
            ));
        }
        let timeout_s = act
            .timeout
            .map(|t| t.secs())
            .unwrap_or(if act.manual.is_some() {
                DEFAULT_MANUAL_TIMEOUT
            } else {
                DEFAULT_RUN_TIMEOUT
            });
        actions.push(ResolvedAction {
            id: ids[a].clone(),
            timeout_s,
            after,
        });
    }
    if let (Some(limit), Some(own)) = (st.timeout, st.success.as_ref().and_then(|p| p.timeout)) {
        diags.extend(exceeds_stage(
            &st.id,
            limit,
            own,
            format!("{sp}/success/timeout"),
            "the success probe",
        ));
    }
    ResolvedStage {
        rank,
        timeout: st.timeout.map(|t| (t.secs(), false)),
        actions,
        probe_timeout: st
            .success
            .as_ref()
            .and_then(|p| p.timeout)
            .map_or(DEFAULT_PROBE_TIMEOUT, |t| t.secs()),
    }
}

/// A time limit inside a stage that the stage's own limit cuts short: the
/// runtime stops the whole stage when its timeout runs out, so the inner
/// limit never applies and the step ends early for no visible reason.
fn exceeds_stage(
    stage: &str,
    limit: Duration,
    own: Duration,
    pointer: String,
    what: &str,
) -> Option<Diagnostic> {
    (own > limit).then(|| {
        Diagnostic::warning(
            codes::TIMEOUT_EXCEEDS_STAGE,
            pointer,
            format!(
                "{what} may take {own}, longer than stage `{stage}`'s whole timeout of {limit}"
            ),
        )
        .help(format!(
            "stage `{stage}` is stopped after {limit} whatever its steps' own limits: \
             raise the stage's `timeout` or lower this one"
        ))
    })
}
