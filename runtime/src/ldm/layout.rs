//! Dynamic-volume data layouts: how a volume's bytes are spread over the
//! LDM partitions that make it up, as Windows' dynamic-disk driver (and
//! libldm's device-mapper tables) read them.
//!
//! - `spanned` (and `simple`): the partitions one after another, each
//!   partition's volume offset the sum of the sizes before it;
//! - `striped`: `chunk`-byte stripes round-robin over the partitions in
//!   column order (dm `striped`);
//! - `mirrored`: every partition holds the whole volume (dm `raid1`);
//! - `raid5`: stripes with one rotating parity chunk, left-symmetric (dm
//!   `raid5_ls`, what libldm assembles a Windows RAID-5 volume with).
//!
//! [`VolumeWriter`] is a `Read + Write + Seek` over the logical volume, so an
//! image restore or a filesystem creation streams through it exactly as it
//! would into a plain partition.
//!
//! What this module is not: it writes no metadata (the LDM database is
//! [`super::database`]) and never reconstructs a degraded volume (reads come
//! from healthy members only: a mirror reads its first partition, raid5
//! reads data chunks, never parity).
//!
//! Sizes: striped and raid5 partitions are used in whole chunks of the
//! smallest one (Windows makes them equal); spanned uses every partition
//! whole.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::target::Device;

/// The smallest stripe rplan writes (one page; Windows always uses 64 KiB).
const MIN_CHUNK: u64 = 4096;

/// How a volume's logical bytes map onto its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Members one after another (plan layouts `simple` and `spanned`).
    Spanned,
    /// Striped in `chunk`-byte pieces round-robin (plan `striped`).
    Striped { chunk: u64 },
    /// Every member holds the whole volume (plan `mirrored`).
    Mirrored,
    /// Striped with one rotating parity chunk per stripe, left-symmetric
    /// (plan `raid5`).
    Raid5 { chunk: u64 },
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Spanned => "spanned",
            Layout::Striped { .. } => "striped",
            Layout::Mirrored => "mirrored",
            Layout::Raid5 { .. } => "raid5",
        }
    }

    fn min_members(self) -> usize {
        match self {
            Layout::Spanned => 1,
            Layout::Striped { .. } | Layout::Mirrored => 2,
            Layout::Raid5 { .. } => 3,
        }
    }

    fn chunk(self) -> Option<u64> {
        match self {
            Layout::Striped { chunk } | Layout::Raid5 { chunk } => Some(chunk),
            Layout::Spanned | Layout::Mirrored => None,
        }
    }
}

/// One member of a volume: the byte range `[start, start + len)` of device
/// number `device` (an index into the device list given to [`VolumeWriter`]),
/// normally a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub device: usize,
    pub start: u64,
    pub len: u64,
}

/// The size of the logical volume.
///
/// Spanned: the sum of the members. Striped: members × the smallest member
/// rounded down to whole chunks. Mirrored: the smallest member. Raid5:
/// (members − 1) × the smallest member rounded down to whole chunks.
/// Zero when there are no members (or a zero chunk).
pub fn usable_size(layout: Layout, members: &[Member]) -> u64 {
    let n = members.len() as u64;
    let min = members.iter().map(|m| m.len).min().unwrap_or(0);
    match layout {
        Layout::Spanned => members
            .iter()
            .fold(0u64, |acc, m| acc.saturating_add(m.len)),
        Layout::Mirrored => min,
        Layout::Striped { chunk } => n.saturating_mul(round_down(min, chunk)),
        Layout::Raid5 { chunk } => n.saturating_sub(1).saturating_mul(round_down(min, chunk)),
    }
}

fn round_down(value: u64, chunk: u64) -> u64 {
    match value.checked_div(chunk) {
        Some(whole) => whole * chunk,
        None => 0,
    }
}

/// Where logical byte `logical_offset` lives: `(index into members, offset
/// from that member's start)`.
///
/// Spanned and striped give one entry. Mirrored gives one entry per member (every
/// copy). Raid5 gives two: the data byte first, then the parity byte that
/// covers it. Empty when the offset is past the end of the volume.
pub fn map(layout: Layout, members: &[Member], logical_offset: u64) -> Vec<(usize, u64)> {
    if logical_offset >= usable_size(layout, members) {
        return Vec::new();
    }
    match layout {
        Layout::Mirrored => (0..members.len()).map(|i| (i, logical_offset)).collect(),
        Layout::Raid5 { chunk } => {
            let place = raid5_place(chunk, members.len() as u64, logical_offset);
            vec![
                (place.data as usize, place.member_offset),
                (place.parity as usize, place.member_offset),
            ]
        }
        Layout::Spanned | Layout::Striped { .. } => match locate(layout, members, logical_offset) {
            Some(piece) => vec![(piece.member, piece.member_offset)],
            None => Vec::new(),
        },
    }
}

/// A run of logical bytes that sits contiguously on one member.
#[derive(Debug, Clone, Copy)]
struct Piece {
    member: usize,
    member_offset: u64,
    /// How many bytes from here on stay contiguous on that member.
    run: u64,
}

/// Maps an in-range offset to the member holding its data (raid1: the first
/// member; raid5: the data chunk, not parity).
fn locate(layout: Layout, members: &[Member], offset: u64) -> Option<Piece> {
    let n = members.len() as u64;
    match layout {
        Layout::Spanned => {
            let mut base = 0u64;
            for (i, m) in members.iter().enumerate() {
                if offset < base + m.len {
                    let member_offset = offset - base;
                    return Some(Piece {
                        member: i,
                        member_offset,
                        run: m.len - member_offset,
                    });
                }
                base += m.len;
            }
            None
        }
        Layout::Mirrored => {
            let len = usable_size(layout, members);
            Some(Piece {
                member: 0,
                member_offset: offset,
                run: len.checked_sub(offset)?,
            })
        }
        Layout::Striped { chunk } => {
            let index = offset / chunk;
            let within = offset % chunk;
            Some(Piece {
                member: (index % n) as usize,
                member_offset: (index / n) * chunk + within,
                run: chunk - within,
            })
        }
        Layout::Raid5 { chunk } => {
            let place = raid5_place(chunk, n, offset);
            Some(Piece {
                member: place.data as usize,
                member_offset: place.member_offset,
                run: chunk - offset % chunk,
            })
        }
    }
}

/// RAID-5 left-symmetric placement (Linux's `raid5_compute_sector`,
/// ALGORITHM_LEFT_SYMMETRIC): stripe `s` keeps parity on member
/// `n-1 - s mod n`, and its data chunks follow the parity member round-robin.
#[derive(Debug, Clone, Copy)]
struct Raid5Place {
    data: u64,
    parity: u64,
    member_offset: u64,
}

fn raid5_place(chunk: u64, n: u64, offset: u64) -> Raid5Place {
    let data_disks = n - 1;
    let chunk_index = offset / chunk;
    let stripe = chunk_index / data_disks;
    let column = chunk_index % data_disks;
    let parity = raid5_parity_member(stripe, n);
    Raid5Place {
        data: raid5_data_member(stripe, column, n),
        parity,
        member_offset: stripe * chunk + offset % chunk,
    }
}

fn raid5_parity_member(stripe: u64, n: u64) -> u64 {
    (n - 1) - stripe % n
}

fn raid5_data_member(stripe: u64, column: u64, n: u64) -> u64 {
    (raid5_parity_member(stripe, n) + 1 + column) % n
}

/// Why a volume cannot be opened for writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeError {
    TooFewMembers {
        layout: &'static str,
        need: usize,
        got: usize,
    },
    BadChunk {
        chunk: u64,
    },
    UnknownDevice {
        member: usize,
        device: usize,
        devices: usize,
    },
    EmptyMember {
        member: usize,
    },
    MemberOutOfRange {
        member: usize,
        end: u64,
        device_len: u64,
    },
    MembersOverlap {
        first: usize,
        second: usize,
    },
    TooSmall {
        layout: &'static str,
    },
}

impl fmt::Display for VolumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeError::TooFewMembers { layout, need, got } => {
                write!(f, "a {layout} volume needs at least {need} members, it has {got}")
            }
            VolumeError::BadChunk { chunk } => write!(
                f,
                "chunk size {chunk} is not a power of two of at least {MIN_CHUNK} bytes"
            ),
            VolumeError::UnknownDevice { member, device, devices } => write!(
                f,
                "member {member} is on device {device}, but only {devices} devices were given"
            ),
            VolumeError::EmptyMember { member } => write!(f, "member {member} is empty"),
            VolumeError::MemberOutOfRange { member, end, device_len } => write!(
                f,
                "member {member} ends at byte {end}, past the end of its device ({device_len} bytes)"
            ),
            VolumeError::MembersOverlap { first, second } => {
                write!(f, "members {first} and {second} overlap on the same device")
            }
            VolumeError::TooSmall { layout } => {
                write!(f, "the {layout} volume has no usable bytes (members smaller than one chunk?)")
            }
        }
    }
}

impl std::error::Error for VolumeError {}

/// A raid5 stripe being assembled in memory, so sequential writes can
/// compute parity from the data alone instead of reading old data back.
#[derive(Debug)]
struct PendingStripe {
    stripe: u64,
    /// The stripe's data chunks, column after column.
    data: Vec<u8>,
    /// Per column, the one contiguous range `[lo, hi)` of `data` that holds
    /// bytes to write. Kept to a single range by reading any gap from disk.
    dirty: Vec<Option<(usize, usize)>>,
}

/// `Read + Write + Seek` over a volume's logical address space.
///
/// It borrows every device the members live on as `&mut dyn Device`
/// (`Member::device` indexes this list), which works the same for
/// `Box<dyn Device>` targets (`boxed.as_mut()`) and for plain values.
///
/// Mirrored writes go to every member; reads come from the first. Raid5 writes
/// are gathered per stripe: a stripe that is written completely (sequential
/// streaming) is written with its parity without reading anything; a stripe
/// left partly written is completed by reading the missing data bytes of
/// the touched columns and recomputing their parity. The pending stripe is
/// written out when a write or read leaves it, on [`Write::flush`],
/// [`VolumeWriter::finish`] and (errors ignored, like `BufWriter`) on drop:
/// call `finish` to see errors.
///
/// No write ever leaves the members' byte ranges; writing past the end of
/// the volume is an error.
pub struct VolumeWriter<'a> {
    devices: Vec<&'a mut dyn Device>,
    layout: Layout,
    members: Vec<Member>,
    size: u64,
    pos: u64,
    pending: Option<PendingStripe>,
    /// Scratch parity chunk for raid5, kept to avoid reallocating.
    parity: Vec<u8>,
}

impl<'a> VolumeWriter<'a> {
    /// Checks the layout against the members and devices: enough members,
    /// a sane chunk, members inside their devices and not overlapping.
    pub fn new(
        devices: Vec<&'a mut dyn Device>,
        layout: Layout,
        members: &[Member],
    ) -> Result<Self, VolumeError> {
        validate(&devices, layout, members)?;
        Ok(VolumeWriter {
            devices,
            layout,
            members: members.to_vec(),
            size: usable_size(layout, members),
            pos: 0,
            pending: None,
            parity: Vec::new(),
        })
    }

    /// The volume's size in bytes ([`usable_size`]).
    pub fn len(&self) -> u64 {
        self.size
    }

    /// True for a volume of no bytes (never the case once constructed).
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Writes out the pending stripe and reports any error.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_stripe()
    }

    /// Writes out the pending stripe, then syncs every device a member is on.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush_stripe()?;
        let mut synced: Vec<usize> = Vec::new();
        for m in &self.members {
            if !synced.contains(&m.device) {
                synced.push(m.device);
                self.devices[m.device].sync()?;
            }
        }
        Ok(())
    }

    fn device_offset(
        &self,
        member: usize,
        member_offset: u64,
        len: u64,
    ) -> io::Result<(usize, u64)> {
        let m = self.members[member];
        // `validate` and the layout maths keep every access inside the
        // member; this is the last line of defence for "never write outside
        // the ranges the plan declares", so it is checked even so.
        if member_offset.checked_add(len).is_none_or(|end| end > m.len) {
            return Err(io::Error::other(format!(
                "internal error: volume mapping left member {member} ({member_offset}+{len} > {})",
                m.len
            )));
        }
        Ok((m.device, m.start + member_offset))
    }

    fn member_read(&self, member: usize, member_offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let (device, offset) = self.device_offset(member, member_offset, buf.len() as u64)?;
        self.devices[device].read_at(buf, offset)
    }

    fn member_write(&mut self, member: usize, member_offset: u64, buf: &[u8]) -> io::Result<()> {
        let (device, offset) = self.device_offset(member, member_offset, buf.len() as u64)?;
        self.devices[device].write_at(buf, offset)
    }

    /// Writes `buf` at the current position for the layouts that need no
    /// buffering (linear, raid0, raid1).
    fn write_direct(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let offset = self.pos + done as u64;
            let piece = locate(self.layout, &self.members, offset).ok_or_else(past_end)?;
            let take = piece.run.min((buf.len() - done) as u64) as usize;
            let part = &buf[done..done + take];
            if self.layout == Layout::Mirrored {
                for member in 0..self.members.len() {
                    self.member_write(member, piece.member_offset, part)?;
                }
            } else {
                self.member_write(piece.member, piece.member_offset, part)?;
            }
            done += take;
        }
        Ok(())
    }

    /// Buffers `buf` (which lies within one stripe) into the pending stripe.
    fn write_raid5(&mut self, buf: &[u8], chunk: u64) -> io::Result<()> {
        let n = self.members.len() as u64;
        let stripe_bytes = chunk * (n - 1);
        let stripe = self.pos / stripe_bytes;
        if self.pending.as_ref().is_some_and(|p| p.stripe != stripe) {
            self.flush_stripe()?;
        }
        let mut pending = match self.pending.take() {
            Some(p) => p,
            None => PendingStripe {
                stripe,
                data: vec![0u8; stripe_bytes as usize],
                dirty: vec![None; (n - 1) as usize],
            },
        };
        let result = self.fill_stripe(&mut pending, buf, chunk);
        let full = pending
            .dirty
            .iter()
            .all(|d| *d == Some((0, chunk as usize)));
        self.pending = Some(pending);
        result?;
        if full {
            self.flush_stripe()?;
        }
        Ok(())
    }

    fn fill_stripe(&self, pending: &mut PendingStripe, buf: &[u8], chunk: u64) -> io::Result<()> {
        let n = self.members.len() as u64;
        let stripe_bytes = chunk * (n - 1);
        let start = (self.pos % stripe_bytes) as usize;
        let chunk = chunk as usize;
        let mut done = 0usize;
        while done < buf.len() {
            let at = start + done;
            let column = at / chunk;
            let lo = at % chunk;
            let hi = (lo + buf.len() - done).min(chunk);
            let take = hi - lo;
            // Keep one dirty range per column: fill any gap between the old
            // range and this write from disk, so what gets written back is
            // what is already there.
            let range = match pending.dirty[column] {
                None => (lo, hi),
                Some((a, b)) => {
                    let gap = if hi < a {
                        Some((hi, a))
                    } else if lo > b {
                        Some((b, lo))
                    } else {
                        None
                    };
                    if let Some((g0, g1)) = gap {
                        let member = raid5_data_member(pending.stripe, column as u64, n) as usize;
                        let base = column * chunk;
                        self.member_read(
                            member,
                            pending.stripe * chunk as u64 + g0 as u64,
                            &mut pending.data[base + g0..base + g1],
                        )?;
                    }
                    (a.min(lo), b.max(hi))
                }
            };
            pending.dirty[column] = Some(range);
            pending.data[at..at + take].copy_from_slice(&buf[done..done + take]);
            done += take;
        }
        Ok(())
    }

    /// Writes the pending raid5 stripe: its dirty data and the parity of
    /// every column offset any write touched.
    fn flush_stripe(&mut self) -> io::Result<()> {
        let (Some(mut pending), Layout::Raid5 { chunk }) = (self.pending.take(), self.layout)
        else {
            return Ok(());
        };
        let n = self.members.len() as u64;
        let chunk_usize = chunk as usize;
        let Some(lo) = pending.dirty.iter().flatten().map(|d| d.0).min() else {
            return Ok(());
        };
        let hi = pending
            .dirty
            .iter()
            .flatten()
            .map(|d| d.1)
            .max()
            .unwrap_or(lo);
        let member_base = pending.stripe * chunk;

        // Parity at in-chunk offset o covers byte o of every column, so the
        // columns' clean bytes in [lo, hi) must come from disk. A fully
        // written stripe has none: that is the no-read streaming path.
        for column in 0..pending.dirty.len() {
            let base = column * chunk_usize;
            let member = raid5_data_member(pending.stripe, column as u64, n) as usize;
            let clean: [(usize, usize); 2] = match pending.dirty[column] {
                None => [(lo, hi), (hi, hi)],
                Some((a, b)) => [(lo, a.max(lo)), (b.min(hi), hi)],
            };
            for (c0, c1) in clean {
                if c0 < c1 {
                    self.member_read(
                        member,
                        member_base + c0 as u64,
                        &mut pending.data[base + c0..base + c1],
                    )?;
                }
            }
        }

        self.parity.clear();
        self.parity.resize(hi - lo, 0);
        for column in 0..pending.dirty.len() {
            let base = column * chunk_usize;
            for (p, d) in self
                .parity
                .iter_mut()
                .zip(&pending.data[base + lo..base + hi])
            {
                *p ^= *d;
            }
        }

        for column in 0..pending.dirty.len() {
            if let Some((a, b)) = pending.dirty[column] {
                let base = column * chunk_usize;
                let member = raid5_data_member(pending.stripe, column as u64, n) as usize;
                self.member_write(
                    member,
                    member_base + a as u64,
                    &pending.data[base + a..base + b],
                )?;
            }
        }
        let parity_member = raid5_parity_member(pending.stripe, n) as usize;
        let parity = std::mem::take(&mut self.parity);
        let result = self.member_write(parity_member, member_base + lo as u64, &parity);
        self.parity = parity;
        result
    }
}

fn validate(
    devices: &[&mut dyn Device],
    layout: Layout,
    members: &[Member],
) -> Result<(), VolumeError> {
    let need = layout.min_members();
    if members.len() < need {
        return Err(VolumeError::TooFewMembers {
            layout: layout.name(),
            need,
            got: members.len(),
        });
    }
    if let Some(chunk) = layout.chunk() {
        // A power-of-two chunk of at least a page, as Windows writes them;
        // a power of two also keeps the buffer maths exact.
        if chunk < MIN_CHUNK || !chunk.is_power_of_two() || usize::try_from(chunk).is_err() {
            return Err(VolumeError::BadChunk { chunk });
        }
    }
    for (i, m) in members.iter().enumerate() {
        let device = devices.get(m.device).ok_or(VolumeError::UnknownDevice {
            member: i,
            device: m.device,
            devices: devices.len(),
        })?;
        if m.len == 0 {
            return Err(VolumeError::EmptyMember { member: i });
        }
        let end = m.start.saturating_add(m.len);
        if end > device.len() {
            return Err(VolumeError::MemberOutOfRange {
                member: i,
                end,
                device_len: device.len(),
            });
        }
        for (j, other) in members.iter().enumerate().take(i) {
            if other.device == m.device && m.start < other.start + other.len && other.start < end {
                return Err(VolumeError::MembersOverlap {
                    first: j,
                    second: i,
                });
            }
        }
    }
    if usable_size(layout, members) == 0 {
        return Err(VolumeError::TooSmall {
            layout: layout.name(),
        });
    }
    if let Layout::Raid5 { chunk } = layout {
        // The pending stripe lives in memory.
        let stripe = chunk.checked_mul(members.len() as u64 - 1);
        if stripe.and_then(|s| usize::try_from(s).ok()).is_none() {
            return Err(VolumeError::BadChunk { chunk });
        }
    }
    Ok(())
}

fn past_end() -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, "write past the end of the volume")
}

impl Write for VolumeWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.size {
            return Err(past_end());
        }
        let mut take = buf
            .len()
            .min((self.size - self.pos).try_into().unwrap_or(usize::MAX));
        match self.layout {
            Layout::Raid5 { chunk } => {
                // One stripe per call keeps the buffering simple; write_all
                // loops.
                let stripe_bytes = chunk * (self.members.len() as u64 - 1);
                let left_in_stripe = stripe_bytes - self.pos % stripe_bytes;
                take = take.min(left_in_stripe.try_into().unwrap_or(usize::MAX));
                self.write_raid5(&buf[..take], chunk)?;
            }
            Layout::Spanned | Layout::Striped { .. } | Layout::Mirrored => {
                self.write_direct(&buf[..take])?
            }
        }
        self.pos += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_stripe()
    }
}

impl Read for VolumeWriter<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Reads see the disk, so put the pending stripe there first.
        self.flush_stripe()?;
        let mut done = 0usize;
        while done < buf.len() && self.pos < self.size {
            let piece = locate(self.layout, &self.members, self.pos).ok_or_else(past_end)?;
            let take = piece
                .run
                .min((buf.len() - done) as u64)
                .min(self.size - self.pos) as usize;
            self.member_read(
                piece.member,
                piece.member_offset,
                &mut buf[done..done + take],
            )?;
            done += take;
            self.pos += take as u64;
        }
        Ok(done)
    }
}

impl Seek for VolumeWriter<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the volume",
            )
        })?;
        Ok(self.pos)
    }
}

impl Drop for VolumeWriter<'_> {
    fn drop(&mut self) {
        // Like BufWriter: best effort; `finish` reports errors.
        let _ = self.flush_stripe();
    }
}

impl fmt::Debug for VolumeWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VolumeWriter")
            .field("layout", &self.layout)
            .field("members", &self.members)
            .field("size", &self.size)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}
