//! The verify step, and hashing a range of a device.

use super::*;

impl Run<'_> {
    pub(super) fn verify(&mut self, step: &CStep) -> StepResult {
        let content = self.content_of(step).cloned().unwrap_or(Content {
            image: None,
            format: None,
            files: Vec::new(),
        });
        // What the last content step recorded, or the image's own hash.
        let producer = step.after.first().cloned().unwrap_or_default();
        if let Some(fp) = self.fresh.get(&producer) {
            // Written in this run and checked as it was written (a restore's
            // stream hashed against the artifact, files read back through
            // the filesystem): reading it all again would only re-read the
            // page cache. A later run's verify reads the target itself.
            return Ok(StepOk::Done {
                fingerprint: Some(fp.clone()),
            });
        }
        let mut source = None;
        let (len, expect) = match (&content.image, self.journal.done(&producer).flatten()) {
            (Some(image), _) => {
                let (path, format, e) = self.artifact(image)?;
                source = Some((path, format));
                (e.size, hex(&e.sha256))
            }
            (None, Some(fp)) => (None, fp.to_string()),
            (None, None) => {
                return Err((
                    codes::VERIFY_MISMATCH,
                    format!("nothing recorded for `{producer}` to verify against"),
                )
                    .into())
            }
        };
        let obs = &mut *self.obs;
        let id = step.id.clone();
        let partition = step.volume.is_none();
        with_place(self.plan, &mut self.targets, step, |dev, first_sector| {
            let n = len.unwrap_or(dev.len());
            let mut throttle = Throttle::new(n);
            let got = if crate::fingerprint::is_sparse(&expect) {
                crate::fingerprint::of_device(dev, n)
            } else {
                hash_range(dev, 0, n, &mut |done| {
                    if throttle.due(done) {
                        obs.event(&Event::Bytes {
                            step: &id,
                            done,
                            total: n,
                        });
                    }
                })
            }
            .map_err(|e| (codes::IO_FAILED, e))?;
            // An image restored in an earlier run and relocated by its
            // `bootsector` step: compare it as made.
            let as_made = || {
                let (path, format) = source.as_ref()?;
                let mut src = restore::open_artifact(path, *format).ok()?;
                crate::bootsector::hash_as_made(dev, first_sector, n, &mut src)
                    .ok()
                    .flatten()
            };
            if got != expect && !(partition && as_made().as_deref() == Some(expect.as_str())) {
                return Err((
                    codes::VERIFY_MISMATCH,
                    format!("read back sha256 {got}, expected {expect}"),
                )
                    .into());
            }
            Ok(StepOk::Done {
                fingerprint: Some(expect.clone()),
            })
        })
    }
}

/// sha256 of `[start, start+len)` of `dev`, read in 4 MiB blocks.
pub fn hash_range(
    dev: &dyn Device,
    start: u64,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0_u8; 4 << 20];
    let mut done = 0_u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        dev.read_at(&mut buf[..n], start + done)?;
        h.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(hex(&h.finalize()))
}
