//! The install step: files put into a FAT filesystem and read back
//! through it.

use super::*;

impl Run<'_> {
    pub(super) fn files(&mut self, step: &CStep) -> StepResult {
        let files = self
            .content_of(step)
            .map(|c| c.files.clone())
            .unwrap_or_default();
        if let Some(unchanged) = self.unchanged(step) {
            return Ok(unchanged);
        }
        // A torn install after a crash: make the filesystem again first, so
        // that the result is byte-identical to an uninterrupted run.
        if self.journal.torn(&step.id) {
            let format_step = step
                .after
                .first()
                .and_then(|id| self.plan.step(id))
                .map(|(_, s)| s.clone());
            if let Some(fs_step) = format_step.filter(|s| s.kind == StepKind::Format) {
                self.format(&fs_step)?;
            }
        }
        let mut sources = Vec::new();
        for f in &files {
            let (path, _, expected) = self.artifact(&f.artifact)?;
            sources.push((f.to.clone(), path, expected));
        }
        self.with_place(step, |dev, _| {
            install_and_check(dev, &sources)?;
            let len = dev.len();
            let fp = crate::fingerprint::of_device(dev, len).map_err(|e| (codes::IO_FAILED, e))?;
            Ok(StepOk::Done {
                fingerprint: Some(fp),
            })
        })
    }
}

/// Install every file into the FAT filesystem on `dev` in one pass, then
/// read them all back through the filesystem in one more and compare each
/// with its artifact's sha256.
pub(super) fn install_and_check(
    dev: &mut dyn Device,
    sources: &[(String, PathBuf, Expected)],
) -> Result<(), StepError> {
    // Opened one at a time as fatfs reads them: thousands of files must not
    // mean thousands of open descriptors.
    let mut opened: Vec<LazyArtifact> = sources
        .iter()
        .map(|(_, path, _)| LazyArtifact {
            path: path.clone(),
            file: None,
            done: false,
        })
        .collect();
    let mut files: Vec<(&str, &mut dyn Read)> = sources
        .iter()
        .zip(opened.iter_mut())
        .map(|((to, _, _), f)| (to.as_str(), f as &mut dyn Read))
        .collect();
    crate::fat::install_files(Region::whole(&mut *dev), &mut files)
        .map_err(|e| (codes::IO_FAILED, format!("installing files: {e}")))?;
    // Read them back through the filesystem: verify every byte.
    let mut sinks: Vec<HashingSink> = sources.iter().map(|_| HashingSink::default()).collect();
    let mut reads: Vec<(&str, &mut dyn Write)> = sources
        .iter()
        .zip(sinks.iter_mut())
        .map(|((to, _, _), s)| (to.as_str(), s as &mut dyn Write))
        .collect();
    crate::fat::read_files(Region::whole(&mut *dev), &mut reads)
        .map_err(|e| (codes::VERIFY_MISMATCH, format!("reading back: {e}")))?;
    for ((to, path, expected), sink) in sources.iter().zip(sinks) {
        if sink.hasher.finalize().as_slice() != expected.sha256 {
            return Err((
                codes::VERIFY_MISMATCH,
                format!("{to} reads back different from artifact {}", path.display()),
            )
                .into());
        }
    }
    Ok(())
}

/// An artifact file opened on its first read and closed at its end.
pub(super) struct LazyArtifact {
    path: PathBuf,
    file: Option<Box<dyn Read + Send>>,
    done: bool,
}

impl Read for LazyArtifact {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                restore::open_artifact(&self.path, ArtifactFormat::File).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display()))
                })?,
            ),
        };
        let n = file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.file = None;
            self.done = true;
        }
        Ok(n)
    }
}

#[derive(Default)]
struct HashingSink {
    hasher: Sha256,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
