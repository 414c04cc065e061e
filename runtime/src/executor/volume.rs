//! A dynamic volume seen as one `Device`, through its LDM layout.

use super::*;

/// A volume seen as one [`Device`]: reads and writes go through the LDM
/// layout to the member partitions.
pub(super) struct VolumeDevice<'a> {
    inner: Mutex<VolumeWriter<'a>>,
    len: u64,
}

impl<'a> VolumeDevice<'a> {
    pub(super) fn new(w: VolumeWriter<'a>) -> Self {
        let len = w.len();
        VolumeDevice {
            inner: Mutex::new(w),
            len,
        }
    }

    pub(super) fn finish(self) -> std::io::Result<()> {
        self.inner
            .into_inner()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?
            .finish()
    }
}

impl Device for VolumeDevice<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let mut w = self
            .inner
            .lock()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?;
        w.seek(SeekFrom::Start(offset))?;
        w.read_exact(buf)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let w = self
            .inner
            .get_mut()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?;
        w.seek(SeekFrom::Start(offset))?;
        w.write_all(buf)
    }
    fn zero_range(&mut self, _offset: u64, _len: u64) -> std::io::Result<()> {
        // Zeroing through a layout would write every byte; report that it
        // is not cheap so callers write zeros only where they must.
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no cheap zeroing through a volume layout",
        ))
    }
    fn zeroing_is_cheap(&self) -> bool {
        false
    }
    fn sync(&mut self) -> std::io::Result<()> {
        let w = self
            .inner
            .get_mut()
            .map_err(|_| std::io::Error::other("volume writer poisoned"))?;
        w.flush()?;
        w.sync()
    }
}
