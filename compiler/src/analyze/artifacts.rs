//! The backup set: artifact ids, paths, and — unless `--no-artifacts` — the
//! files themselves: present, of the stated size, with the stated sha256
//! (hashed as a stream, so a 10 GiB image costs a 1 MiB buffer).

use crate::compiled::CArtifact;
use crate::diagnostic::{codes, Diagnostic};
use crate::model::{ArtifactFormat, Plan};
use crate::size::human_bytes;
use crate::Options;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path};

pub fn check(
    plan: &Plan,
    options: &Options,
    base_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Vec<CArtifact> {
    let Some(backup) = &plan.backup else {
        return Vec::new();
    };
    super::unique_ids(
        backup
            .artifacts
            .iter()
            .enumerate()
            .map(|(n, a)| (a.id.as_str(), format!("/backup/artifacts/{n}/id"))),
        codes::DUPLICATE_ARTIFACT,
        "artifact",
        diags,
    );
    let root = base_dir.join(&backup.root);
    let used = used_artifacts(plan);
    let mut out = Vec::new();
    for (n, a) in backup.artifacts.iter().enumerate() {
        let ap = format!("/backup/artifacts/{n}");
        let rel = Path::new(&a.path);
        if rel.is_absolute() || rel.components().any(|c| matches!(c, Component::ParentDir)) {
            diags.push(
                Diagnostic::error(
                    codes::ARTIFACT_PATH,
                    format!("{ap}/path"),
                    format!("artifact path `{}` leaves the backup root", a.path),
                )
                .help("artifact paths are relative to `backup.root`, without `..`"),
            );
        }
        let size = a.size.and_then(|s| s.bytes(512));
        if size.is_none() && a.format != ArtifactFormat::File {
            diags.push(
                Diagnostic::error(
                    codes::ARTIFACT_NO_SIZE,
                    ap.clone(),
                    format!("image artifact `{}` has no `size`", a.id),
                )
                .help("give its decompressed size, so the plan can check that it fits"),
            );
        }
        if !used.contains(&a.id.as_str()) {
            diags.push(
                Diagnostic::warning(codes::ARTIFACT_UNUSED, format!("{ap}/id"), format!("artifact `{}` is not used by any disk or volume", a.id))
                    .help("restore it with `content.image`, install it with `content.files`, or remove it"),
            );
        }
        // Absolute, so that a compiled plan works from any directory.
        let path = std::path::absolute(root.join(&a.path)).unwrap_or_else(|_| root.join(&a.path));
        if !options.no_artifacts {
            verify_file(&path, a.format, size, &a.sha256, &ap, diags);
        }
        out.push(CArtifact {
            id: a.id.clone(),
            path: path.display().to_string(),
            format: a.format,
            size,
            sha256: a.sha256.to_ascii_lowercase(),
        });
    }
    out
}

fn used_artifacts(plan: &Plan) -> Vec<&str> {
    let contents = plan
        .disks
        .iter()
        .flat_map(|d| d.partitions.iter().filter_map(|p| p.content.as_ref()))
        .chain(plan.volumes.iter().filter_map(|v| v.content.as_ref()));
    let mut used: Vec<&str> = plan
        .disks
        .iter()
        .filter_map(|d| d.boot_code.as_ref().map(|b| b.artifact.as_str()))
        .collect();
    for c in contents {
        used.extend(c.image.as_deref());
        used.extend(c.files.iter().map(|f| f.artifact.as_str()));
    }
    used
}

fn verify_file(
    path: &Path,
    format: ArtifactFormat,
    size: Option<u64>,
    sha256: &str,
    ap: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let measured = hash_artifact(path, format);
    match measured {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => diags.push(
            Diagnostic::error(codes::ARTIFACT_MISSING, format!("{ap}/path"), format!("artifact file {} does not exist", path.display()))
                .help("check `backup.root` and the path, or use --no-artifacts to check the plan away from the backup store"),
        ),
        Err(e) => diags.push(Diagnostic::error(codes::ARTIFACT_MISSING, format!("{ap}/path"), format!("cannot read artifact {}: {e}", path.display()))),
        Ok((hash, len)) => {
            if let Some(size) = size.filter(|&s| s != len) {
                diags.push(
                    Diagnostic::error(codes::ARTIFACT_SIZE, format!("{ap}/size"), format!("artifact is {} ({len} bytes) decompressed, the plan says {}", human_bytes(len), human_bytes(size)))
                        .help(format!("size: {len}")),
                );
            }
            if !hash.eq_ignore_ascii_case(sha256) {
                diags.push(
                    Diagnostic::error(codes::ARTIFACT_SHA256, format!("{ap}/sha256"), format!("artifact sha256 is {hash}, the plan says {sha256}"))
                        .help("the backup changed or is damaged: recapture it, or correct the plan if the file is right"),
                );
            }
        }
    }
}

/// sha256 and length of an artifact's decompressed bytes, streamed.
pub fn hash_artifact(path: &Path, format: ArtifactFormat) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    let mut reader: Box<dyn Read> = match format {
        ArtifactFormat::RawZstd => Box::new(zstd::stream::read::Decoder::new(file)?),
        _ => Box::new(file),
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0_u8; 1 << 20];
    let mut len = 0_u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex(&hasher.finalize()), len))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
