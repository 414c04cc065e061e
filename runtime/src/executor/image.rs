//! The restore step: an image streamed into its partition or volume
//! (`crate::restore` does the streaming), unless it is already there.

use super::*;

impl Run<'_> {
    pub(super) fn restore(&mut self, step: &CStep) -> StepResult {
        let image = self
            .content_of(step)
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let (path, format, expected) = self.artifact(&image)?;
        let size = expected.size.unwrap_or(0);
        let sha = hex(&expected.sha256);
        let here = self.place_identity(step);
        let prior = self
            .journal
            .done_before(&step.id, here.as_deref())
            .is_some();
        let matched = step
            .disk
            .as_deref()
            .and_then(|d| self.plan.disks.iter().position(|x| x.id == d))
            .and_then(|di| self.targets[di].as_ref())
            .is_some_and(|t| t.table_matched);
        let obs = &mut *self.obs;
        let step_id = step.id.clone();
        with_place(self.plan, &mut self.targets, step, |dev, first_sector| {
            // Already there (a re-apply)? Then nothing needs writing. An
            // image whose boot sector the `bootsector` step relocated counts
            // as there when it hashes as made.
            if (prior || matched) && size <= dev.len() {
                let there = hash_range(dev, 0, size, &mut |_| {}).ok().as_deref()
                    == Some(sha.as_str())
                    || (step.volume.is_none()
                        && restore::open_artifact(&path, format)
                            .and_then(|mut src| {
                                crate::bootsector::hash_as_made(dev, first_sector, size, &mut src)
                            })
                            .ok()
                            .flatten()
                            .as_deref()
                            == Some(sha.as_str()));
                if there {
                    return Ok(StepOk::Unchanged {
                        fingerprint: Some(sha.clone()),
                    });
                }
            }

            let mut src = restore::open_artifact(&path, format)
                .map_err(|e| (codes::ARTIFACT_MISSING, format!("{}: {e}", path.display())))?;
            // Zero the image's range first where that is cheap (a punched
            // hole, or a disk's write-zeroes offload), so zero runs of the
            // image need not be written at all. Where the kernel would write
            // the zeros itself, that would write the range twice: the image
            // is written whole instead, zeros included.
            let zeroed = dev.zeroing_is_cheap() && dev.zero_range(0, size.min(dev.len())).is_ok();
            let mut throttle = Throttle::new(size);
            let total = size;
            let capacity = dev.len();
            let stats = restore::restore(
                dev,
                0,
                capacity,
                &mut src,
                &expected,
                &RestoreOptions { skip_zeros: zeroed },
                &mut |done| {
                    if throttle.due(done) {
                        obs.event(&Event::Bytes {
                            step: &step_id,
                            done,
                            total,
                        });
                    }
                },
            )
            .map_err(|e| {
                let code = if matches!(
                    e,
                    restore::RestoreError::Sha256Mismatch { .. }
                        | restore::RestoreError::SizeMismatch { .. }
                ) {
                    codes::VERIFY_MISMATCH
                } else {
                    codes::IO_FAILED
                };
                (code, e)
            })?;
            let _ = stats;
            Ok(StepOk::Done {
                fingerprint: Some(sha.clone()),
            })
        })
    }
}
