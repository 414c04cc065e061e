//! Booting from an MBR disk: the MBR's boot code starts the one active
//! primary partition. So on each MBR disk at most one partition is
//! `bootable`, never a logical one, and the disk XP starts from (the system
//! disk, [`system_disk`]) has exactly one.
//!
//! These are compile-time errors at the `bootable:` line; the table writer
//! refuses the same shapes at run time, but a plan should not reach ASR to
//! learn it. What this module is not: the platform rules (GPT boot disks are
//! `platform`'s) and the boot code itself (kept from the disk, or
//! `boot_code:`).

use crate::compiled::{CArtifact, CDisk};
use crate::diagnostic::{codes, Diagnostic};
use crate::model::{ArtifactFormat, Plan, TableKind};

/// The MBR boot code area; a `boot_code` artifact may be a whole sector.
pub const BOOT_CODE_LEN: u64 = 440;

pub fn check(
    plan: &Plan,
    disks: &mut [CDisk],
    artifacts: &[CArtifact],
    diags: &mut Vec<Diagnostic>,
) {
    boot_code(plan, disks, artifacts, diags);
    active_flags(disks, diags);
}

/// `boot_code:` names a `file` artifact of 440 to 512 bytes.
fn boot_code(
    plan: &Plan,
    disks: &mut [CDisk],
    artifacts: &[CArtifact],
    diags: &mut Vec<Diagnostic>,
) {
    for (i, d) in plan.disks.iter().enumerate() {
        let Some(b) = &d.boot_code else { continue };
        let pointer = format!("/disks/{i}/boot_code/artifact");
        let Some(a) = artifacts.iter().find(|a| a.id == b.artifact) else {
            diags.push(
                Diagnostic::error(
                    codes::DANGLING_ARTIFACT,
                    pointer,
                    format!("no artifact `{}` in the backup", b.artifact),
                )
                .help("add a `file` artifact with the 440 bytes of boot code (e.g. syslinux's mbr.bin)"),
            );
            continue;
        };
        if a.format != ArtifactFormat::File {
            diags.push(
                Diagnostic::error(
                    codes::ARTIFACT_KIND,
                    pointer,
                    format!("artifact `{}` is an image, used here as boot code", a.id),
                )
                .help("boot code is a `file` artifact of 440 to 512 bytes"),
            );
            continue;
        }
        if let Some(size) = a.size.filter(|s| !(BOOT_CODE_LEN..=512).contains(s)) {
            diags.push(
                Diagnostic::error(
                    codes::BOOT_FLAG,
                    pointer,
                    format!("artifact `{}` is {size} bytes; MBR boot code is 440 (or a 512-byte sector holding it)", a.id),
                )
                .help("use the 440 bytes of an mbr.bin, or LBA 0 of the disk"),
            );
            continue;
        }
        if let Some(cd) = disks.get_mut(i) {
            cd.boot_code = Some(a.id.clone());
        }
    }
}

fn active_flags(disks: &[CDisk], diags: &mut Vec<Diagnostic>) {
    for (i, d) in disks.iter().enumerate() {
        if d.table != TableKind::Mbr {
            continue;
        }
        let mut first: Option<(usize, &str)> = None;
        for (j, p) in d.partitions.iter().enumerate().filter(|(_, p)| p.bootable) {
            let pointer = format!("/disks/{i}/partitions/{j}/bootable");
            if p.logical {
                diags.push(
                    Diagnostic::error(
                        codes::BOOT_FLAG,
                        pointer,
                        format!(
                            "logical partition `{}/{}` cannot be active: the MBR's boot code starts a primary partition",
                            d.id, p.id
                        ),
                    )
                    .help("make it a primary partition (drop `logical`), or drop `bootable`"),
                );
                continue;
            }
            match first {
                None => first = Some((j, p.id.as_str())),
                Some((k, other)) => diags.push(
                    Diagnostic::error(
                        codes::BOOT_FLAG,
                        pointer,
                        format!(
                            "disk `{}` has a second active partition, `{}`: the MBR's boot code starts exactly one",
                            d.id, p.id
                        ),
                    )
                    .related(
                        format!("/disks/{i}/partitions/{k}/bootable"),
                        format!("`{other}` is active already"),
                    )
                    .help("keep `bootable: true` on the partition Windows starts from (its system partition)"),
                ),
            }
        }
    }
    if let Some(i) = system_disk(disks) {
        let d = &disks[i];
        if d.table == TableKind::Mbr && !d.partitions.iter().any(|p| p.bootable) {
            diags.push(
                Diagnostic::error(
                    codes::BOOT_FLAG,
                    format!("/disks/{i}/partitions"),
                    format!(
                        "no partition is active: the MBR boot code of system disk `{}` would find no system partition to start",
                        d.id
                    ),
                )
                .help("mark Windows' system partition `bootable: true`"),
            );
        }
    }
}

/// The disk XP starts from: the one holding an active partition, else the
/// first critical basic MBR disk (a dynamic disk's MBR holds only its 0x42
/// partition). None when the plan has neither: a plan of dynamic or GPT
/// data disks alone has no system disk to check.
pub fn system_disk(disks: &[CDisk]) -> Option<usize> {
    disks
        .iter()
        .position(|d| d.partitions.iter().any(|p| p.bootable))
        .or_else(|| {
            disks.iter().position(|d| {
                d.critical
                    && d.table == TableKind::Mbr
                    && !d.partitions.iter().any(|p| p.volume.is_some())
            })
        })
}
