//! The simulated target of `dry-run`: reads come from the real target
//! (opened read-only), writes go to a sparse scratch file beside, and the
//! ranges written are remembered. The executor runs the very same steps on
//! it as on a real target, so a dry-run can only differ from an apply in
//! what it does not do: touch the disk.
//!
//! The scratch file (not memory) holds what was written, so simulating the
//! restore of a 100 GiB image costs disk space for the data actually written
//! and a few bytes of memory per extent.

use crate::target::Device;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub struct Overlay {
    base: Box<dyn Device>,
    scratch: File,
    /// Written extents: start → end, disjoint and merged.
    written: BTreeMap<u64, u64>,
}

impl Overlay {
    pub fn new(base: Box<dyn Device>, temp_dir: Option<&std::path::Path>) -> io::Result<Overlay> {
        let scratch = match temp_dir {
            Some(d) => tempfile::tempfile_in(d)?,
            None => tempfile::tempfile()?,
        };
        scratch.set_len(base.len())?;
        Ok(Overlay {
            base,
            scratch,
            written: BTreeMap::new(),
        })
    }

    fn mark(&mut self, start: u64, end: u64) {
        let (mut s, mut e) = (start, end);
        // Merge with every extent that touches [s, e).
        let touching: Vec<(u64, u64)> = self
            .written
            .range(..=e)
            .rev()
            .take_while(|(_, &oe)| oe >= s)
            .map(|(&os, &oe)| (os, oe))
            .collect();
        for (os, oe) in touching {
            self.written.remove(&os);
            s = s.min(os);
            e = e.max(oe);
        }
        self.written.insert(s, e);
    }

    /// Whether `at` lies in a written extent, and where that stretch
    /// (written, or not) ends, at most at `end`.
    fn stretch(&self, at: u64, end: u64) -> (bool, u64) {
        let covering = self
            .written
            .range(..=at)
            .next_back()
            .filter(|(_, &e)| e > at);
        match covering {
            Some((_, &e)) => (true, e.min(end)),
            None => (
                false,
                self.written
                    .range(at..)
                    .next()
                    .map_or(end, |(&s, _)| s.min(end)),
            ),
        }
    }

    fn check(&self, offset: u64, len: usize) -> io::Result<u64> {
        offset
            .checked_add(len as u64)
            .filter(|&end| end <= self.base.len())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "access past the end of the simulated target",
                )
            })
    }
}

impl Device for Overlay {
    fn len(&self) -> u64 {
        self.base.len()
    }

    fn sector_size(&self) -> u32 {
        self.base.sector_size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = self.check(offset, buf.len())?;
        let mut at = offset;
        while at < end {
            let (from_scratch, upto) = self.stretch(at, end);
            let piece = &mut buf[(at - offset) as usize..(upto - offset) as usize];
            if from_scratch {
                self.scratch.read_exact_at(piece, at)?;
            } else {
                self.base.read_at(piece, at)?;
            }
            at = upto;
        }
        Ok(())
    }

    fn data_extent(&self, offset: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
        let end = end.min(self.base.len());
        let mut at = offset;
        while at < end {
            let (written, upto) = self.stretch(at, end);
            let found = if written {
                // Written here: the scratch file knows where its data is.
                crate::fingerprint::data_extent(&self.scratch, at, upto)?
            } else {
                self.base.data_extent(at, upto)?
            };
            if found.is_some() {
                return Ok(found);
            }
            at = upto;
        }
        Ok(None)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let end = self.check(offset, buf.len())?;
        self.scratch.write_all_at(buf, offset)?;
        self.mark(offset, end);
        Ok(())
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.base.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "zeroing past the end"))?;
        let zeros = vec![0_u8; 1 << 20];
        let mut at = offset;
        // The scratch file is sparse: writing zeros to it would allocate;
        // punching keeps it cheap.
        // SAFETY: fallocate on our own descriptor with valid bounds.
        let punched = unsafe {
            libc::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&self.scratch),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        } == 0;
        while !punched && at < end {
            let n = (end - at).min(zeros.len() as u64) as usize;
            self.scratch.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.mark(offset, end);
        Ok(())
    }

    /// As cheap as on the real target: dry-run's estimates are the real
    /// run's.
    fn zeroing_is_cheap(&self) -> bool {
        self.base.zeroing_is_cheap()
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The written ranges whose bytes now differ from the real target, in
    /// 64 KiB granules: rewriting a byte with itself is no change.
    fn written_ranges(&self) -> Option<Vec<(u64, u64)>> {
        const GRANULE: u64 = 64 * 1024;
        let mut out: Vec<(u64, u64)> = Vec::new();
        let (mut ours, mut theirs) = (vec![0_u8; GRANULE as usize], vec![0_u8; GRANULE as usize]);
        for (&start, &end) in &self.written {
            let mut at = start;
            // Up to here the pieces may hold data on one side or the
            // other; past it, the next data is looked up and the stretch
            // that is a hole on both sides (zeros = zeros) skipped unread.
            let mut data_end = start;
            while at < end {
                if at >= data_end {
                    let all = Some((at, end));
                    let ours =
                        crate::fingerprint::data_extent(&self.scratch, at, end).unwrap_or(all);
                    let theirs = self.base.data_extent(at, end).unwrap_or(all);
                    let Some((from, to)) = [ours, theirs].into_iter().flatten().min() else {
                        break;
                    };
                    at = at.max(from / GRANULE * GRANULE);
                    data_end = to;
                }
                let n = (end - at).min(GRANULE - at % GRANULE);
                let (a, b) = (&mut ours[..n as usize], &mut theirs[..n as usize]);
                let differs = match (self.scratch.read_exact_at(a, at), self.base.read_at(b, at)) {
                    (Ok(()), Ok(())) => a != b,
                    _ => true,
                };
                if differs {
                    match out.last_mut() {
                        Some((s, l)) if *s + *l == at => *l += n,
                        _ => out.push((at, n)),
                    }
                }
                at += n;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::MemDevice;

    #[test]
    fn reads_see_writes_and_the_base_elsewhere() {
        let mut base = MemDevice::new(1 << 20, 512);
        base.write_at(&[7; 4096], 0).unwrap();
        let mut o = Overlay::new(Box::new(base), None).unwrap();
        o.write_at(&[1; 100], 1000).unwrap();
        o.write_at(&[2; 100], 1050).unwrap();
        o.zero_range(3000, 500).unwrap();
        let mut buf = vec![0; 4096];
        o.read_at(&mut buf, 0).unwrap();
        assert!(buf[..1000].iter().all(|&b| b == 7));
        assert!(buf[1000..1050].iter().all(|&b| b == 1));
        assert!(buf[1050..1150].iter().all(|&b| b == 2));
        assert!(buf[1150..3000].iter().all(|&b| b == 7));
        assert!(buf[3000..3500].iter().all(|&b| b == 0));
        assert!(buf[3500..].iter().all(|&b| b == 7));
        assert_eq!(o.written_ranges(), Some(vec![(1000, 150), (3000, 500)]));
        // Writing what is already there is no change.
        o.write_at(&[7; 10], 100).unwrap();
        assert_eq!(o.written_ranges(), Some(vec![(1000, 150), (3000, 500)]));
        assert!(o.write_at(&[0; 2], (1 << 20) - 1).is_err());
    }
}
