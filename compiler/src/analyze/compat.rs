//! Compatibility: may a backup of `system.build` be restored with
//! `media.build` in this language? Answered by the ruleset, never assumed.

use crate::diagnostic::{codes, Diagnostic};
use crate::model::Plan;
use crate::rules::{RuleSet, Verdict};
use crate::schema::did_you_mean;

/// Check the plan's builds and language; return the citing rule if allowed.
pub fn check(plan: &Plan, rules: &RuleSet, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let backup = plan.system.build.as_str();
    let media = plan.media.build.as_str();
    let (language, language_ptr) = match &plan.media.language {
        Some(l) => (l.as_str(), "/media/language"),
        None => (plan.system.language.as_str(), "/system/language"),
    };
    if plan
        .media
        .language
        .as_deref()
        .is_some_and(|l| l != plan.system.language)
    {
        diags.push(
            Diagnostic::warning(
                codes::LANGUAGE_NOTE,
                "/media/language",
                format!(
                    "restore media language `{language}` differs from the system's `{}`",
                    plan.system.language
                ),
            )
            .help(
                "ASR installs a minimal Windows from the media; use media of the system's language",
            ),
        );
    }
    let mut known = true;
    for (id, pointer, role) in [
        (backup, "/system/build", "backup"),
        (media, "/media/build", "media"),
    ] {
        if rules.build(id).is_none() {
            known = false;
            let ids: Vec<String> = match role {
                "backup" => rules.backup_builds().iter().map(|b| b.id.clone()).collect(),
                _ => rules.media_builds().iter().map(|b| b.id.clone()).collect(),
            };
            let help = match did_you_mean(id, ids.iter()) {
                Some(s) => format!(
                    "did you mean `{s}`? known {role} builds: {}",
                    ids.join(", ")
                ),
                None => format!("known {role} builds: {}", ids.join(", ")),
            };
            diags.push(
                Diagnostic::error(
                    codes::UNKNOWN_BUILD,
                    pointer,
                    format!("unknown build id `{id}`"),
                )
                .help(help),
            );
        }
    }
    if !known {
        return None;
    }
    let name = |id: &str, media: bool| {
        rules
            .build(id)
            .map(|b| {
                if media {
                    b.media.clone().unwrap_or_else(|| b.backup.clone())
                } else {
                    b.backup.clone()
                }
            })
            .unwrap_or_else(|| id.to_string())
    };
    let alternatives = || {
        let ok = rules.supported_media(backup, language);
        if ok.is_empty() {
            format!("no media build is supported for a `{backup}` backup in language `{language}`")
        } else {
            format!(
                "media builds supported for a `{backup}` backup: {}",
                ok.join(", ")
            )
        }
    };
    let Some(rule) = rules.rule(backup, media) else {
        diags.push(
            Diagnostic::error(
                codes::NO_RULE,
                "/media/build",
                format!(
                    "no rule covers a `{backup}` ({}) backup restored with `{media}` ({}) media",
                    name(backup, false),
                    name(media, true)
                ),
            )
            .help(format!(
                "{}; or add a rule with --rules FILE",
                alternatives()
            )),
        );
        return None;
    };
    let row = rule
        .rule
        .row
        .map(|r| format!(", table row {r}"))
        .unwrap_or_default();
    if rule.rule.verdict == Verdict::NotSupported {
        diags.push(
            Diagnostic::error(
                codes::UNSUPPORTED_PAIR,
                "/media/build",
                format!(
                    "ASR does not support restoring a `{backup}` ({}) backup with `{media}` ({}) media (rule {}{row})",
                    name(backup, false),
                    name(media, true),
                    rule.cite
                ),
            )
            .help(alternatives()),
        );
        return None;
    }
    if rule.rule.except_languages.iter().any(|l| l == language) {
        diags.push(
            Diagnostic::error(
                codes::LANGUAGE_EXCEPTED,
                language_ptr,
                format!(
                    "ASR supports a `{backup}` backup with `{media}` media except in language `{language}` (rule {}{row}: not {})",
                    rule.cite,
                    rule.rule.except_languages.join(", ")
                ),
            )
            .help(alternatives()),
        );
        return None;
    }
    for note in rules
        .notes
        .iter()
        .filter(|n| n.languages.iter().any(|l| l == language))
    {
        diags.push(
            Diagnostic::warning(
                codes::LANGUAGE_NOTE,
                language_ptr,
                format!("language `{language}`: {}", note.text),
            )
            .help(format!(
                "rule {}{row} allows this pair, but the source's note says this language is not supported; test the restore",
                rule.cite
            )),
        );
    }
    Some(rule.cite.clone())
}
