//! One step: the dispatch on its kind, the command, manual, table and
//! volume steps, and what every write step shares (its place on a disk or
//! volume, whether the journal says it is already done).

use super::*;

impl Run<'_> {
    pub(super) fn step(&mut self, step: &CStep, deadline: Option<Instant>) -> StepResult {
        let remaining = deadline.map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        match step.kind {
            StepKind::Run | StepKind::Manual | StepKind::Probe if self.opts.dry_run.is_some() => {
                // A dry-run runs no commands and asks no one: the stages
                // named with --fail fail, the others succeed.
                let stage = self.plan.step(&step.id).map_or("", |(s, _)| s.id.as_str());
                let fail = self
                    .opts
                    .dry_run
                    .as_ref()
                    .is_some_and(|f| f.iter().any(|x| x == stage));
                if fail {
                    Err((codes::COMMAND_FAILED, "fails in this simulation").into())
                } else {
                    Ok(StepOk::Done { fingerprint: None })
                }
            }
            StepKind::Run | StepKind::Probe => {
                let argv = step.argv.clone().unwrap_or_default();
                let limit = Duration::from_secs(step.timeout_s.unwrap_or(600)).min(remaining);
                match crate::process::run(&argv, limit) {
                    crate::process::Outcome::Success => Ok(StepOk::Done { fingerprint: None }),
                    crate::process::Outcome::TimedOut => Err((
                        codes::COMMAND_TIMEOUT,
                        format!(
                            "`{}` did not finish within {}s and was killed",
                            argv.join(" "),
                            limit.as_secs()
                        ),
                    )
                        .into()),
                    crate::process::Outcome::NotStarted(e) => Err((
                        codes::COMMAND_FAILED,
                        format!("cannot run `{}`: {e}", argv.join(" ")),
                    )
                        .into()),
                    crate::process::Outcome::Failed { code, output } => {
                        let tail = output
                            .lines()
                            .last()
                            .map(|l| format!(": {l}"))
                            .unwrap_or_default();
                        Err((
                            codes::COMMAND_FAILED,
                            format!(
                                "`{}` exited with {}{tail}",
                                argv.join(" "),
                                code.map_or("a signal".into(), |c| c.to_string())
                            ),
                        )
                            .into())
                    }
                }
            }
            StepKind::Manual => {
                let text = step.text.clone().unwrap_or_default();
                if self.opts.unattended {
                    return Err((
                        codes::COMMAND_FAILED,
                        "a manual action needs a person, and this run is unattended",
                    )
                        .into());
                }
                if (self.opts.manual)(&text) {
                    Ok(StepOk::Done { fingerprint: None })
                } else {
                    Err((
                        codes::COMMAND_FAILED,
                        "the operator reported the manual action failed",
                    )
                        .into())
                }
            }
            StepKind::CheckTarget => {
                let di = disk_index(self.plan, step.disk.as_deref().unwrap_or_default())?;
                let min = self.plan.disks[di].min_size;
                let supplied =
                    self.plan.disks[di].boot_code.is_some() || self.opts.boot_code.is_some();
                let system = layout::system_disk(self.plan) == Some(di);
                let t = target(self.plan, &mut self.targets, di)?;
                if t.device.len() < min {
                    return Err((
                        codes::TARGET_TOO_SMALL,
                        format!("{} is smaller than {}", t.path.display(), human_bytes(min)),
                    )
                        .into());
                }
                if system && !supplied {
                    let mut code = [0u8; 440];
                    t.device
                        .read_at(&mut code, 0)
                        .map_err(|e| (codes::IO_FAILED, e))?;
                    if code.iter().all(|&b| b == 0) {
                        let message = format!(
                            "{} has no MBR boot code and the plan supplies none: the restored machine cannot start from disk `{}`",
                            t.path.display(),
                            self.plan.disks[di].id
                        );
                        self.reports.push(
                            Diagnostic::warning(codes::BOOT_FLAG, "", message).help(
                                "add `boot_code: { artifact: … }` to the disk, or pass `--boot-code FILE` (e.g. syslinux's mbr.bin)",
                            ),
                        );
                    }
                }
                Ok(StepOk::Done { fingerprint: None })
            }
            StepKind::ClearSignatures => {
                let (disk, t, spec, _) = self.disk_table(step)?;
                // The disk is already ours when its layout is the plan's: its
                // partitions hold restored data. New boot code alone is the
                // table step's to write, and no reason to clear anything.
                let layout = table::TableSpec {
                    boot_code: None,
                    ..spec.clone()
                };
                if table::table_matches(t.device.as_ref(), &layout)
                    .map_err(|e| (codes::IO_FAILED, e))?
                {
                    return Ok(StepOk::Unchanged { fingerprint: None });
                }
                let ranges: Vec<(u64, u64)> = disk
                    .partitions
                    .iter()
                    .map(|p| layout::extent(disk, p, t.device.len()))
                    .collect();
                table::clear_signatures(t.device.as_mut(), &ranges)
                    .map_err(|e| (codes::IO_FAILED, e))?;
                // What inspection found on the disk being replaced and the new
                // table will not cover: erased as wipefs would, magic only.
                for (at, n) in t.stale_magic(&spec) {
                    t.device
                        .zero_range(at, n)
                        .map_err(|e| (codes::IO_FAILED, e))?;
                }
                t.device.sync().map_err(|e| (codes::IO_FAILED, e))?;
                Ok(StepOk::Done { fingerprint: None })
            }
            StepKind::WriteTable => {
                let database = self.ldm_writes(step)?;
                let (_, t, spec, matches) = self.disk_table(step)?;
                let database_matches = ldm::matches(t.device.as_ref(), &database)
                    .map_err(|e| (codes::IO_FAILED, e))?;
                if matches && database_matches {
                    return Ok(StepOk::Unchanged { fingerprint: None });
                }
                if !database_matches {
                    ldm::write(t.device.as_mut(), &database).map_err(|e| (codes::IO_FAILED, e))?;
                }
                table::write_table(t.device.as_mut(), &spec).map_err(|e| (codes::IO_FAILED, e))?;
                // Partition device nodes follow the new table; if the kernel
                // cannot re-read it now (EBUSY), the next boot will.
                let not_reread = t.device.table_changed().err().map(|e| {
                    format!(
                        "the kernel did not re-read the partition table of {}: {e}",
                        t.path.display()
                    )
                });
                if let Some(message) = not_reread {
                    self.reports
                        .push(Diagnostic::warning(codes::IO_FAILED, "", message));
                }
                Ok(StepOk::Done { fingerprint: None })
            }
            StepKind::AssembleVolume => {
                let v = self
                    .plan
                    .volume(step.volume.as_deref().unwrap_or_default())
                    .ok_or_else(|| {
                        StepError(Diagnostic::error(
                            codes::UNKNOWN_TARGET,
                            "",
                            "unknown volume",
                        ))
                    })?;
                self.with_place(step, |dev, _| {
                    if dev.len() < v.usable_size {
                        return Err((
                            codes::TARGET_TOO_SMALL,
                            format!(
                                "volume `{}` has {} usable, the plan needs {}",
                                v.id,
                                human_bytes(dev.len()),
                                human_bytes(v.usable_size)
                            ),
                        )
                            .into());
                    }
                    Ok(StepOk::Done { fingerprint: None })
                })
            }
            StepKind::RestoreImage => self.restore(step),
            StepKind::Format => self.format(step),
            StepKind::InstallFiles => self.files(step),
            StepKind::Verify => self.verify(step),
            StepKind::FixBootSector => self.with_place(step, |dev, first_sector| {
                let fix = crate::bootsector::plan(dev, first_sector)
                    .map_err(|e| (codes::IO_FAILED, e))?;
                match fix {
                    None => Ok(StepOk::Unchanged { fingerprint: None }),
                    Some(fix) => {
                        crate::bootsector::apply(dev, &fix).map_err(|e| (codes::IO_FAILED, e))?;
                        Ok(StepOk::Done { fingerprint: None })
                    }
                }
            }),
        }
    }

    pub(super) fn with_place<R>(
        &mut self,
        step: &CStep,
        f: impl FnOnce(&mut dyn Device, u64) -> Result<R, StepError>,
    ) -> Result<R, StepError> {
        with_place(self.plan, &mut self.targets, step, f)
    }

    /// The MBR boot code to write on disk `di`: its `boot_code` artifact, or
    /// for the system disk `--boot-code`; `None` keeps what the disk has.
    pub(super) fn boot_code(&self, di: usize) -> Result<Option<[u8; 440]>, StepError> {
        let disk = &self.plan.disks[di];
        let Some(id) = &disk.boot_code else {
            return Ok(self
                .opts
                .boot_code
                .filter(|_| layout::system_disk(self.plan) == Some(di)));
        };
        let (path, _, _) = self.artifact(id)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            (
                codes::ARTIFACT_MISSING,
                format!("boot code {}: {e}", path.display()),
            )
        })?;
        match bytes.get(..440) {
            Some(code) if bytes.len() <= 512 => {
                let mut out = [0u8; 440];
                out.copy_from_slice(code);
                Ok(Some(out))
            }
            _ => Err((
                codes::ARTIFACT_SIZE,
                format!(
                    "boot code {} is {} bytes; MBR boot code is 440 (or a 512-byte sector)",
                    path.display(),
                    bytes.len()
                ),
            )
                .into()),
        }
    }

    /// What a table step writes of the LDM database on its disk (nothing
    /// on a basic disk). The database describes every member disk, so every
    /// member's target must be open.
    pub(super) fn ldm_writes(&self, step: &CStep) -> Result<Vec<(u64, Vec<u8>)>, StepError> {
        let di = disk_index(self.plan, step.disk.as_deref().unwrap_or_default())?;
        if !ldm::is_dynamic(&self.plan.disks[di]) {
            return Ok(Vec::new());
        }
        let lens: Vec<u64> = self
            .targets
            .iter()
            .map(|t| t.as_ref().map_or(0, |t| t.device.len()))
            .collect();
        let group = ldm::group(self.plan, &lens).map_err(|e| (codes::UNKNOWN_TARGET, e))?;
        ldm::disk_writes(self.plan, group.as_ref(), di)
            .map_err(|e| (codes::UNKNOWN_TARGET, e).into())
    }

    /// A disk step's disk, its target, the table to write on it, and
    /// whether the target already carries exactly that table.
    pub(super) fn disk_table(
        &mut self,
        step: &CStep,
    ) -> Result<(&CDisk, &mut Target, table::TableSpec, bool), StepError> {
        let plan = self.plan;
        let di = disk_index(plan, step.disk.as_deref().unwrap_or_default())?;
        let disk = &plan.disks[di];
        let boot_code = self.boot_code(di)?;
        let t = target(plan, &mut self.targets, di)?;
        let mut spec = layout::table_spec(disk, t.device.len());
        spec.boot_code = boot_code;
        let matches =
            table::table_matches(t.device.as_ref(), &spec).map_err(|e| (codes::IO_FAILED, e))?;
        Ok((disk, t, spec, matches))
    }

    pub(super) fn artifact(
        &self,
        id: &str,
    ) -> Result<(PathBuf, ArtifactFormat, Expected), StepError> {
        let a = self.plan.artifact(id).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::ARTIFACT_MISSING,
                "",
                format!("no artifact `{id}`"),
            ))
        })?;
        let sha = decode_sha(&a.sha256).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::ARTIFACT_SHA256,
                "",
                format!("artifact `{id}` has a malformed sha256"),
            ))
        })?;
        Ok((
            PathBuf::from(&a.path),
            a.format,
            Expected {
                size: a.size,
                sha256: sha,
            },
        ))
    }
}

impl Run<'_> {
    /// A write step the journal says was done, whose range still hashes to
    /// the recorded fingerprint: skip it.
    pub(super) fn unchanged(&mut self, step: &CStep) -> Option<StepOk> {
        let here = self.place_identity(step);
        let fp = self
            .journal
            .done_before(&step.id, here.as_deref())??
            .to_string();
        // The content chain after this step changes the range: only the last
        // step's fingerprint describes what is there now.
        let later = self
            .plan
            .stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|s| s.after.contains(&step.id) && matches!(s.kind, StepKind::InstallFiles))
            .map(|s| s.id.clone())
            .next();
        let expect = match later {
            Some(next) => self.journal.done(&next)??.to_string(),
            None => fp.clone(),
        };
        let same = self.with_place(step, |dev, _| {
            let len = dev.len();
            crate::fingerprint::range_matches(dev, len, &expect)
                .map_err(|e| (codes::IO_FAILED, e).into())
        });
        same.ok()?.then_some(StepOk::Unchanged {
            fingerprint: Some(fp),
        })
    }

    pub(super) fn sector_size(&self, step: &CStep) -> u32 {
        step.disk
            .as_deref()
            .and_then(|d| self.plan.disk(d))
            .or_else(|| {
                step.volume
                    .as_deref()
                    .and_then(|v| self.plan.volume(v))
                    .and_then(|v| v.members.first())
                    .and_then(|m| self.plan.disk(&m.disk))
            })
            .map_or(512, |d| d.sector_size)
    }
}

/// Run `f` on the step's place: its partition's [`Region`], or its volume
/// through its LDM data layout. `f` also gets the partition's first sector (0 for
/// a volume).
pub(super) fn with_place<R>(
    plan: &CompiledPlan,
    targets: &mut [Option<Target>],
    step: &CStep,
    f: impl FnOnce(&mut dyn Device, u64) -> Result<R, StepError>,
) -> Result<R, StepError> {
    if let Some(vid) = &step.volume {
        let v = plan.volume(vid).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::UNKNOWN_TARGET,
                "",
                format!("no volume `{vid}`"),
            ))
        })?;
        let lens: Vec<u64> = targets
            .iter()
            .map(|t| t.as_ref().map_or(0, |t| t.device.len()))
            .collect();
        let mut members = layout::members(plan, v, |di| lens[di]).ok_or_else(|| {
            StepError(Diagnostic::error(
                codes::UNKNOWN_TARGET,
                "",
                "a volume member is missing",
            ))
        })?;
        // VolumeWriter indexes the devices it is given: hand it only the
        // member disks, renumbered.
        let used: Vec<usize> = {
            let mut u: Vec<usize> = members.iter().map(|m| m.device).collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        for m in &mut members {
            m.device = used.iter().position(|&d| d == m.device).unwrap_or(0);
        }
        let mut devices: Vec<&mut dyn Device> = Vec::new();
        for (di, t) in targets.iter_mut().enumerate() {
            if used.contains(&di) {
                match t {
                    Some(t) => devices.push(t.device.as_mut()),
                    None => {
                        return Err((
                            codes::UNKNOWN_TARGET,
                            format!("no target for member disk `{}`", plan.disks[di].id),
                        )
                            .into())
                    }
                }
            }
        }
        let writer = VolumeWriter::new(devices, layout::volume_layout(v), &members)
            .map_err(|e| (codes::IO_FAILED, e))?;
        let mut dev = VolumeDevice::new(writer);
        let r = f(&mut dev, 0)?;
        dev.finish().map_err(|e| (codes::IO_FAILED, e))?;
        return Ok(r);
    }
    let (Some(d), Some(p)) = (&step.disk, &step.partition) else {
        return Err((codes::UNKNOWN_TARGET, "step has no place").into());
    };
    let di = disk_index(plan, d)?;
    let disk = &plan.disks[di];
    let part = disk.partition(p).ok_or_else(|| {
        StepError(Diagnostic::error(
            codes::UNKNOWN_TARGET,
            "",
            format!("no partition `{p}`"),
        ))
    })?;
    let t = target(plan, targets, di)?;
    let (start, len) = layout::extent(disk, part, t.device.len());
    let mut region =
        Region::new(t.device.as_mut(), start, len).map_err(|e| (codes::IO_FAILED, e))?;
    let r = f(&mut region, start / u64::from(disk.sector_size))?;
    region.sync().map_err(|e| (codes::IO_FAILED, e))?;
    Ok(r)
}

pub(super) fn disk_index(plan: &CompiledPlan, id: &str) -> Result<usize, StepError> {
    plan.disks.iter().position(|d| d.id == id).ok_or_else(|| {
        StepError(Diagnostic::error(
            codes::UNKNOWN_TARGET,
            "",
            format!("no disk `{id}`"),
        ))
    })
}

pub(super) fn target<'t>(
    plan: &CompiledPlan,
    targets: &'t mut [Option<Target>],
    di: usize,
) -> Result<&'t mut Target, StepError> {
    let id = &plan.disks[di].id;
    targets[di].as_mut().ok_or_else(|| {
        StepError(Diagnostic::error(
            codes::UNKNOWN_TARGET,
            "",
            format!("no target for disk `{id}`"),
        ))
    })
}

fn decode_sha(s: &str) -> Option<[u8; 32]> {
    let mut out = [0_u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
