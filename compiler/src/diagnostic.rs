//! Diagnostics: every problem rplan reports, from YAML syntax to a failed
//! verify, is one [`Diagnostic`] addressed by JSON pointer.
//!
//! Pointers are resolved to line/column only when rendering, through the
//! [`SpanIndex`](crate::span::SpanIndex) of the file the pointer belongs to.
//! The list of codes lives in [`codes`]; categories follow DESIGN.md.

use crate::span::Span;
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// Where a diagnostic points: the plan itself, or another file (a ruleset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    /// JSON pointer into `file` ("" is the whole document).
    pub pointer: String,
    /// Point at the key of `pointer` rather than its value (unknown fields).
    #[serde(skip)]
    pub at_key: bool,
    /// An exact position, for problems found before there is structure to
    /// point into (YAML syntax errors).
    #[serde(skip)]
    pub span: Option<Span>,
    /// Which file `pointer` is in; `None` means the plan being checked.
    #[serde(skip)]
    pub file: Option<String>,
    pub help: Option<String>,
    /// Other places worth showing, e.g. the partition this one overlaps.
    #[serde(skip)]
    pub related: Vec<(String, String)>,
}

impl Diagnostic {
    pub fn error(
        code: &'static str,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            pointer: pointer.into(),
            at_key: false,
            span: None,
            file: None,
            help: None,
            related: Vec::new(),
        }
    }

    pub fn warning(
        code: &'static str,
        pointer: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, pointer, message)
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    pub fn at_key(mut self) -> Self {
        self.at_key = true;
        self
    }

    pub fn at_span(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn related(mut self, pointer: impl Into<String>, label: impl Into<String>) -> Self {
        self.related.push((pointer.into(), label.into()));
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Escape one JSON-pointer reference token (RFC 6901).
pub fn escape_token(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// Every diagnostic code, one place. `RPxxyy`: `xx` is the category.
pub mod codes {
    // 01 — YAML syntax and schema
    pub const CANNOT_READ: &str = "RP0100";
    pub const YAML_SYNTAX: &str = "RP0101";
    pub const UNKNOWN_FIELD: &str = "RP0102";
    pub const WRONG_TYPE: &str = "RP0103";
    pub const MISSING_FIELD: &str = "RP0104";
    pub const BAD_VALUE: &str = "RP0105";
    pub const BAD_SIZE: &str = "RP0106";
    pub const BAD_VERSION: &str = "RP0107";
    pub const SCHEMA_OTHER: &str = "RP0108";
    pub const PLAN_TOO_LARGE: &str = "RP0109";

    // 02 — compatibility rules
    pub const UNSUPPORTED_PAIR: &str = "RP0201";
    pub const LANGUAGE_EXCEPTED: &str = "RP0202";
    pub const NO_RULE: &str = "RP0203";
    pub const UNKNOWN_BUILD: &str = "RP0204";
    pub const LANGUAGE_NOTE: &str = "RP0205";
    pub const RULESET_INVALID: &str = "RP0206";
    pub const RULESET_CONFLICT: &str = "RP0207";
    /// A platform fact (what Windows XP can boot and see) the plan breaks.
    pub const PLATFORM: &str = "RP0220";
    /// `system.edition`/`arch` absent: the platform was checked with defaults.
    pub const PLATFORM_ASSUMED: &str = "RP0221";

    // 03 — disk graph and volumes
    pub const DUPLICATE_ID: &str = "RP0301";
    pub const OVERLAP: &str = "RP0302";
    pub const OUTSIDE_DISK: &str = "RP0303";
    pub const MISALIGNED: &str = "RP0304";
    pub const UNDER_ALIGNED: &str = "RP0305";
    pub const REST_MISPLACED: &str = "RP0306";
    pub const MBR_PRIMARIES: &str = "RP0307";
    pub const MBR_TOO_LARGE: &str = "RP0308";
    pub const DISK_IDENTITY: &str = "RP0309";
    pub const GPT_ENTRIES: &str = "RP0310";
    pub const GPT_DUPLICATE_GUID: &str = "RP0311";
    pub const GPT_HEADER_ROOM: &str = "RP0312";
    pub const UNKNOWN_PART_TYPE: &str = "RP0313";
    pub const DANGLING_MEMBER: &str = "RP0314";
    pub const MEMBERS_SHARE_DISK: &str = "RP0315";
    pub const UNEQUAL_MEMBERS: &str = "RP0316";
    pub const MEMBER_COUNT: &str = "RP0317";
    pub const STRIPE_SIZE: &str = "RP0318";
    pub const CONTENT_TOO_LARGE: &str = "RP0319";
    pub const CRITICAL_CLOSURE: &str = "RP0320";
    pub const BAD_CONTENT: &str = "RP0321";
    pub const MEMBER_REUSED: &str = "RP0322";
    pub const EMPTY_PARTITION: &str = "RP0323";
    pub const LOGICAL_ON_GPT: &str = "RP0324";
    pub const NO_CRITICAL_DISK: &str = "RP0325";
    pub const SECTOR_SIZE: &str = "RP0326";
    pub const BAD_LABEL: &str = "RP0327";
    pub const DUPLICATE_IDENTITY: &str = "RP0328";
    /// A dynamic disk (one holding volume members) that LDM, as rplan
    /// writes it, cannot describe.
    pub const DYNAMIC_DISK: &str = "RP0340";
    /// Active (`bootable`) flags the MBR boot code cannot follow.
    pub const BOOT_FLAG: &str = "RP0341";
    /// `extended:` on a disk without an MBR extended container (GPT, no
    /// logical partitions, or dynamic).
    pub const EXTENDED_UNUSED: &str = "RP0342";
    /// `extended.type` other than 0x05 or 0x0f.
    pub const EXTENDED_TYPE: &str = "RP0343";
    /// `extended.ebr_gap` of 0, or one that puts an EBR before sector 1.
    pub const EBR_GAP: &str = "RP0344";
    /// `extended.end` before the last logical partition's end, past the
    /// disk, off a sector boundary, or with a `rest` logical partition.
    pub const EXTENDED_END: &str = "RP0345";

    // 04 — stages and escalation
    pub const DUPLICATE_STAGE: &str = "RP0401";
    pub const RANK_ORDER: &str = "RP0402";
    pub const SECOND_ASR: &str = "RP0403";
    pub const ASR_NOT_LAST: &str = "RP0404";
    pub const ASR_FIRST: &str = "RP0405";
    pub const MANUAL_UNATTENDED: &str = "RP0406";
    pub const RANK_MISSING: &str = "RP0407";
    pub const BAD_ACTION: &str = "RP0408";
    pub const DANGLING_AFTER: &str = "RP0409";
    pub const DUPLICATE_ACTION: &str = "RP0410";
    pub const NO_STAGES: &str = "RP0411";
    pub const ASR_WITHOUT_DISKS: &str = "RP0412";
    pub const DISKS_WITHOUT_ASR: &str = "RP0413";
    pub const TIMEOUT_EXCEEDS_STAGE: &str = "RP0414";

    // 05 — backup artifacts
    pub const DUPLICATE_ARTIFACT: &str = "RP0501";
    pub const DANGLING_ARTIFACT: &str = "RP0502";
    pub const ARTIFACT_MISSING: &str = "RP0503";
    pub const ARTIFACT_SIZE: &str = "RP0504";
    pub const ARTIFACT_SHA256: &str = "RP0505";
    pub const ARTIFACT_UNUSED: &str = "RP0506";
    pub const ARTIFACT_KIND: &str = "RP0507";
    pub const ARTIFACT_NO_SIZE: &str = "RP0508";
    pub const NO_BACKUP: &str = "RP0509";
    pub const ARTIFACT_PATH: &str = "RP0510";

    // 06 — step graph
    pub const CYCLE: &str = "RP0601";
    /// `graph --format svg` needs Graphviz's `dot`, and it is not on PATH.
    pub const DOT_MISSING: &str = "RP0602";
    /// `dot` ran but failed to draw the graph.
    pub const DOT_FAILED: &str = "RP0603";

    // 07 — runtime refusals
    pub const TARGET_MISSING: &str = "RP0701";
    pub const TARGET_TOO_SMALL: &str = "RP0702";
    pub const SIGNATURE_MISMATCH: &str = "RP0703";
    pub const TARGET_IN_USE: &str = "RP0704";
    pub const TARGET_LOCKED: &str = "RP0705";
    pub const STALE_COMPILED: &str = "RP0706";
    pub const NOT_CONFIRMED: &str = "RP0707";
    pub const UNKNOWN_TARGET: &str = "RP0708";
    pub const SECTOR_MISMATCH: &str = "RP0709";
    pub const JOURNAL_MISMATCH: &str = "RP0710";
    /// `--resume` after a run that ended with its last stage failed on a
    /// write step's runtime failure: that stage is retried (a warning).
    pub const RESUME_RETRIES_STAGE: &str = "RP0760";
    /// `--resume` after a run that ended with every stage failed on what a
    /// retry would not change (a command's or probe's answer, a stage's
    /// time limit): nothing to resume.
    pub const RESUME_NOTHING_TO_RETRY: &str = "RP0761";
    /// A target holds a filesystem, swap, RAID/LVM/LDM signature or
    /// partition table that is not the plan's own disk.
    pub const NOT_BLANK: &str = "RP0720";
    /// A target is one of the plan's own files (an artifact, the plan, the
    /// compiled plan, the journal) or another target.
    pub const TARGET_IS_OWN_FILE: &str = "RP0721";

    // 08 — runtime failures
    pub const IO_FAILED: &str = "RP0801";
    pub const VERIFY_MISMATCH: &str = "RP0802";
    pub const COMMAND_FAILED: &str = "RP0803";
    pub const COMMAND_TIMEOUT: &str = "RP0804";
    pub const TOOL_MISSING: &str = "RP0805";
    /// The HTML report (`--report FILE`) could not be written.
    pub const REPORT_WRITE: &str = "RP0830";
    /// `--report FILE` names a target, one of the plan's files or something
    /// that is not a regular file: refused before anything runs.
    pub const REPORT_PATH: &str = "RP0831";
}

/// What a code's category covers (DESIGN.md "Diagnostics").
pub fn category(code: &str) -> &'static str {
    match code.get(2..4) {
        Some("01") => "YAML syntax and schema",
        Some("02") => "compatibility rules",
        Some("03") => "disk graph and volumes",
        Some("04") => "stages and escalation",
        Some("05") => "backup artifacts",
        Some("06") => "step graph",
        Some("07") => "runtime refusal",
        Some("08") => "runtime failure",
        _ => "other",
    }
}
