//! The format step: a filesystem made by mkfs in a temp file and copied
//! into its range, which is zeroed first (with progress where the disk
//! cannot zero by itself).

use super::*;

impl Run<'_> {
    pub(super) fn format(&mut self, step: &CStep) -> StepResult {
        let Some(f) = self.content_of(step).and_then(|c| c.format.clone()) else {
            return Err((codes::IO_FAILED, "no filesystem to make").into());
        };
        let fs = f.fs;
        if let Some(unchanged) = self.unchanged(step) {
            return Ok(unchanged);
        }
        let sector_size = self.sector_size(step);
        let seed_bytes = stable_hash(&[&self.plan.name, &step.id, "filesystem"]);
        let seed = u64::from_le_bytes([
            seed_bytes[0],
            seed_bytes[1],
            seed_bytes[2],
            seed_bytes[3],
            seed_bytes[4],
            seed_bytes[5],
            seed_bytes[6],
            seed_bytes[7],
        ]);
        let temp = self.opts.temp_dir.clone();
        let obs = &mut *self.obs;
        let step_id = step.id.clone();
        with_place(self.plan, &mut self.targets, step, |dev, first_sector| {
            let len = dev.len();
            // Even without write-zeroes offload, the kernel's zeroing
            // (BLKZEROOUT writing zero pages) beats zeros written from here
            // through the page cache (BENCHMARKS.md, "Zeroing"); it then
            // takes the disk's write time, and shows progress.
            let mut throttle = Throttle::new(len);
            let zeroed = zero_showing_progress(dev, len, &mut |done| {
                if throttle.due(done) {
                    obs.event(&Event::Bytes {
                        step: &step_id,
                        done,
                        total: len,
                    });
                }
            });
            let holes = if zeroed.is_ok() {
                Holes::AlreadyZero
            } else {
                Holes::WriteZeros
            };
            let opts = FormatOptions {
                label: f.label.as_deref(),
                sector_size,
                seed,
                partition_start_sector: first_sector,
                holes,
                temp_dir: temp.as_deref(),
            };
            let mut region = Region::whole(dev);
            let made = mkfs::format(&mut region, len, fs, &opts).map_err(|e| {
                let code = match e {
                    mkfs::MkfsError::ToolMissing(..) => codes::TOOL_MISSING,
                    // Reading or writing the target or the temp file.
                    mkfs::MkfsError::Io { .. } => codes::IO_FAILED,
                    _ => codes::COMMAND_FAILED,
                };
                (code, e)
            })?;
            region.flush().map_err(|e| (codes::IO_FAILED, e))?;
            // Fingerprinted from what was written, not read back: the cost
            // follows mkfs's output, not the partition's size.
            Ok(StepOk::Done {
                fingerprint: Some(made.fingerprint),
            })
        })
    }
}

/// Pieces in which a disk without write-zeroes offload is zeroed, so that a
/// long zeroing shows progress (and each BLKZEROOUT stays short).
pub(super) const ZERO_PIECE: u64 = 256 << 20;

/// Zero `[0, len)` of `dev`: at once where that is cheap, else piece by
/// piece, calling `progress` with the bytes zeroed so far.
pub(super) fn zero_showing_progress(
    dev: &mut dyn Device,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<()> {
    if dev.zeroing_is_cheap() {
        return dev.zero_range(0, len);
    }
    let mut at = 0;
    while at < len {
        let n = (len - at).min(ZERO_PIECE);
        dev.zero_range(at, n)?;
        at += n;
        progress(at);
    }
    Ok(())
}
