//! The compiled plan: what `rplan compile` writes and the runtime executes.
//!
//! Everything here is resolved: absolute byte offsets, table entry numbers,
//! GUIDs, ranks, timeouts, artifact paths. It is deterministic — the same
//! plan, rules and artifacts give byte-identical JSON — and carries a
//! `plan_hash` so that the runtime can refuse a compiled plan whose
//! artifacts changed since it was made.

use crate::model::{ArtifactFormat, Content, Layout, StageKind, TableKind};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;

/// A compiled plan: the step DAG `rplan compile` writes and `rplan apply`
/// and `rplan dry-run` carry out (refused when stale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rplan compiled plan", extend("$id" = "https://raw.githubusercontent.com/rplan/rplan/main/schemas/compiled.schema.json"))]
pub struct CompiledPlan {
    /// The compiled plan format's version.
    pub format_version: u32,
    /// sha256 of the canonical plan, the rules used and the artifact hashes.
    pub plan_hash: String,
    /// The plan's `name`.
    pub name: String,
    /// The compatibility rule that allows this restore (`ruleset#row`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Bytes per second the estimates assume.
    pub throughput: u64,
    /// The backup's artifacts, paths resolved.
    #[serde(default)]
    pub artifacts: Vec<CArtifact>,
    /// The disks, partitions laid out in bytes.
    #[serde(default)]
    pub disks: Vec<CDisk>,
    /// The dynamic volumes.
    #[serde(default)]
    pub volumes: Vec<CVolume>,
    /// The escalation ladder with each stage's steps.
    pub stages: Vec<CStage>,
    /// A topological order of every step id, stage by stage.
    pub order: Vec<String>,
    /// Worst case: every stage tried, each to its end.
    pub rto_estimate_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CArtifact {
    /// The artifact's id.
    pub id: String,
    /// Path as resolved from the plan's directory and `backup.root`.
    pub path: String,
    /// How the file is stored.
    pub format: ArtifactFormat,
    /// Bytes once decompressed, if stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// sha256 of the decompressed bytes.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CDisk {
    /// The disk's id.
    pub id: String,
    /// Needed to start the computer.
    pub critical: bool,
    /// `mbr` or `gpt`.
    pub table: TableKind,
    /// MBR disk signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<u32>,
    /// GPT disk GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<uuid::Uuid>,
    /// Logical sector size in bytes.
    pub sector_size: u32,
    /// The smallest target, bytes.
    pub min_size: u64,
    /// The partitions, in table order.
    pub partitions: Vec<CPartition>,
    /// The artifact whose first 440 bytes are the MBR boot code to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_code: Option<String>,
    /// MBR: the extended container's layout when it is not rplan's default
    /// (type 0x0f, EBRs in the sector before each logical partition, ending
    /// with the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended: Option<CExtended>,
}

/// An MBR extended container laid out as the plan says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CExtended {
    /// The container's MBR type byte: 0x05 or 0x0f.
    pub mbr_type: u8,
    /// Sectors from each EBR to its logical partition (at least 1).
    pub ebr_gap: u64,
    /// End offset in bytes; `null`: the end of the last logical partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CPartition {
    /// The partition's id.
    pub id: String,
    /// Table entry number, 1-based (MBR logical partitions from 5).
    pub number: u32,
    /// Offset in bytes.
    pub start: u64,
    /// Length in bytes; `null` for `rest` (to the end of the target).
    pub size: Option<u64>,
    /// Length on the smallest target the plan fits.
    pub min_size: u64,
    /// MBR type byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbr_type: Option<u8>,
    /// GPT type GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_guid: Option<uuid::Uuid>,
    /// GPT partition GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<uuid::Uuid>,
    /// GPT partition name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// MBR active flag.
    pub bootable: bool,
    /// MBR: inside the extended container.
    pub logical: bool,
    /// Its disk is critical.
    pub critical: bool,
    /// What goes into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// The volume this partition is a member of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CMember {
    /// The member's disk id.
    pub disk: String,
    /// The member's partition id.
    pub partition: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CVolume {
    /// The volume's id.
    pub id: String,
    /// How the members combine.
    pub layout: Layout,
    /// The member partitions.
    pub members: Vec<CMember>,
    /// Stripe size in bytes (striped and raid5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_size: Option<u64>,
    /// Needed to start the computer.
    pub critical: bool,
    /// Usable bytes on the smallest targets.
    pub usable_size: u64,
    /// What goes into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CStage {
    /// The stage's id.
    pub id: String,
    /// The stage's kind.
    pub kind: StageKind,
    /// Its place on the ladder (gentler lower).
    pub rank: u32,
    /// The stage's time limit, seconds.
    pub timeout_s: u64,
    /// Whether `timeout_s` was written in the plan or is rplan's default.
    pub timeout_defaulted: bool,
    /// The stage's steps.
    pub steps: Vec<CStep>,
    /// Estimated seconds for the whole stage.
    pub estimate_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// Open the target, check size, identity and exclusive access.
    CheckTarget,
    /// Zero stale filesystem/RAID signatures inside declared ranges.
    ClearSignatures,
    WriteTable,
    RestoreImage,
    Format,
    InstallFiles,
    /// Set a restored NTFS/FAT boot sector's hidden-sectors field to the
    /// partition's start (an image made at another offset).
    FixBootSector,
    AssembleVolume,
    Verify,
    Run,
    Manual,
    Probe,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CStep {
    /// The step's id, unique in the plan.
    pub id: String,
    /// What the step does.
    pub kind: StepKind,
    /// Ids of steps that must finish first.
    pub after: Vec<String>,
    /// A failure fails the stage.
    pub critical: bool,
    /// Estimated seconds.
    pub estimate_s: u64,
    /// The disk it works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// The partition it works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The volume it works on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Commands: argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// Manual actions: the instruction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Time limit, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Human summary, e.g. "restore system-image (2 GiB) into disk0/system".
    pub description: String,
}

impl CompiledPlan {
    pub fn disk(&self, id: &str) -> Option<&CDisk> {
        self.disks.iter().find(|d| d.id == id)
    }
    pub fn volume(&self, id: &str) -> Option<&CVolume> {
        self.volumes.iter().find(|v| v.id == id)
    }
    pub fn artifact(&self, id: &str) -> Option<&CArtifact> {
        self.artifacts.iter().find(|a| a.id == id)
    }
    pub fn step(&self, id: &str) -> Option<(&CStage, &CStep)> {
        self.stages
            .iter()
            .find_map(|s| s.steps.iter().find(|st| st.id == id).map(|st| (s, st)))
    }
}

impl CDisk {
    pub fn partition(&self, id: &str) -> Option<&CPartition> {
        self.partitions.iter().find(|p| p.id == id)
    }
}

impl CompiledPlan {
    /// What the runtime relies on in a compiled plan read from a file (which
    /// anyone could have edited): sector sizes, and partitions that lie on
    /// their disk. Each problem as a message.
    pub fn sanity(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.format_version != FORMAT_VERSION {
            out.push(format!(
                "compiled plan format {} is not supported (this rplan writes {FORMAT_VERSION})",
                self.format_version
            ));
        }
        for d in &self.disks {
            if d.sector_size != 512 && d.sector_size != 4096 {
                out.push(format!(
                    "disk `{}`: sector size {} is not 512 or 4096",
                    d.id, d.sector_size
                ));
                continue;
            }
            let ss = u64::from(d.sector_size);
            for p in &d.partitions {
                let end = p.start.checked_add(p.size.unwrap_or(p.min_size));
                if p.start % ss != 0 || p.min_size % ss != 0 || end.is_none_or(|e| e > d.min_size) {
                    out.push(format!(
                        "disk `{}`: partition `{}` does not lie on the disk",
                        d.id, p.id
                    ));
                }
            }
        }
        for s in &self.stages {
            for st in &s.steps {
                if !self.order.contains(&st.id) {
                    out.push(format!("step `{}` is missing from `order`", st.id));
                }
            }
        }
        out
    }
}

pub fn compiled_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(CompiledPlan)).unwrap_or_default()
}
