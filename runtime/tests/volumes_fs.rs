//! Volumes, filesystems and FAT installs, on sparse image files.
//!
//! Volume data is reassembled here by reference code written straight from
//! the documented layouts (dm's linear/striped/raid5_ls, as libldm assembles
//! Windows volumes; not from the crate), parity is checked by XOR,
//! and filesystems are judged by the system's own tools: `blkid`, `fsck.vfat`,
//! `e2fsck`, `ntfsinfo`, `mdir`/`mtype`/`mcopy`, `cmp`. Every image is filled
//! with noise around (and often inside) the ranges first, so a stray write
//! shows up.

mod vfs_support;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rplan_runtime::fat::{self, FatError};
use rplan_runtime::ldm::layout::{self as ldm_layout, Layout, Member, VolumeError, VolumeWriter};
use rplan_runtime::mkfs::{self, FormatOptions, Fs, Holes, MkfsError};
use rplan_runtime::target::Device;
use tempfile::TempDir;
use vfs_support::*;

// ---------------------------------------------------------------- volumes

/// Noise-filled images and what they held before the test wrote anything.
struct Rig {
    _dir: TempDir,
    dir: PathBuf,
    images: Vec<PathBuf>,
    before: Vec<Vec<u8>>,
}

fn rig(sizes: &[u64]) -> Rig {
    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().to_path_buf();
    let mut images = Vec::new();
    let mut before = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let image = path.join(format!("disk{i}.img"));
        before.push(noise_image(&image, size, 1000 + i as u64));
        images.push(image);
    }
    Rig {
        _dir: dir,
        dir: path,
        images,
        before,
    }
}

impl Rig {
    fn devices(&self) -> Vec<FileDevice> {
        self.images.iter().map(|p| FileDevice::open(p)).collect()
    }

    /// Opens a writer over the rig's images, runs `f`, then `finish`es.
    fn with_volume<R>(
        &self,
        layout: Layout,
        members: &[Member],
        f: impl FnOnce(&mut VolumeWriter<'_>) -> R,
    ) -> R {
        let mut devices = self.devices();
        let refs: Vec<&mut dyn Device> = devices.iter_mut().map(|d| d as &mut dyn Device).collect();
        let mut volume = VolumeWriter::new(refs, layout, members).expect("open volume");
        let result = f(&mut volume);
        volume.finish().expect("finish volume");
        result
    }

    /// The current bytes of each member, read straight from the image files.
    fn member_bytes(&self, members: &[Member]) -> Vec<Vec<u8>> {
        members
            .iter()
            .map(|m| read_range(&self.images[m.device], m.start, m.len))
            .collect()
    }

    /// Every byte outside the members' ranges still holds its noise.
    fn assert_outside_untouched(&self, members: &[Member]) {
        for (i, image) in self.images.iter().enumerate() {
            let now = std::fs::read(image).expect("read image");
            let before = &self.before[i];
            assert_eq!(now.len(), before.len(), "image {i} changed size");
            let inside = |at: usize| {
                members.iter().any(|m| {
                    m.device == i && (m.start as usize..(m.start + m.len) as usize).contains(&at)
                })
            };
            if let Some(at) = (0..now.len()).find(|&at| now[at] != before[at] && !inside(at)) {
                panic!("image {i} changed at byte {at}, outside every member");
            }
        }
    }

    /// Writes `bytes` to a file and `cmp`s it with the reassembled volume.
    fn assert_same_with_cmp(&self, name: &str, expected: &[u8], reassembled: &[u8]) {
        let a = self.dir.join(format!("{name}.expected"));
        let b = self.dir.join(format!("{name}.reassembled"));
        std::fs::write(&a, expected).expect("write expected");
        std::fs::write(&b, reassembled).expect("write reassembled");
        cmp_files(&a, &b);
    }
}

/// Streams `data` into the volume in pieces of uneven sizes, the way a
/// decompressor hands out its output.
fn stream(volume: &mut VolumeWriter<'_>, data: &[u8], seed: u64) {
    let mut noise = Noise::new(seed);
    let mut at = 0usize;
    while at < data.len() {
        let n = (1 + noise.below(200_000) as usize).min(data.len() - at);
        volume.write_all(&data[at..at + n]).expect("write volume");
        at += n;
    }
}

fn read_back(volume: &mut VolumeWriter<'_>) -> Vec<u8> {
    volume.seek(SeekFrom::Start(0)).expect("seek");
    let mut out = Vec::new();
    volume.read_to_end(&mut out).expect("read volume");
    out
}

// Reference reassembly, straight from the layouts' documentation: spanned appends
// the members; raid0 takes chunk r of member 0, 1, .., n-1 for each row r;
// raid5 left-symmetric puts row r's parity on member n-1-(r mod n) and its
// data on the members right after it, wrapping around.

fn ref_linear(members: &[Vec<u8>]) -> Vec<u8> {
    members.concat()
}

fn rows(members: &[Vec<u8>], chunk: usize) -> usize {
    members.iter().map(Vec::len).min().unwrap_or(0) / chunk
}

fn ref_raid0(members: &[Vec<u8>], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for r in 0..rows(members, chunk) {
        for m in members {
            out.extend_from_slice(&m[r * chunk..(r + 1) * chunk]);
        }
    }
    out
}

fn ref_raid5(members: &[Vec<u8>], chunk: usize) -> Vec<u8> {
    let n = members.len();
    let mut out = Vec::new();
    for r in 0..rows(members, chunk) {
        let parity = n - 1 - r % n;
        for k in 1..n {
            let m = &members[(parity + k) % n];
            out.extend_from_slice(&m[r * chunk..(r + 1) * chunk]);
        }
    }
    out
}

/// Rows `[first, last)` of the members XOR to zero (data ^ parity).
fn assert_parity(members: &[Vec<u8>], chunk: usize, first: usize, last: usize) {
    for at in first * chunk..last * chunk {
        let x = members.iter().fold(0u8, |acc, m| acc ^ m[at]);
        assert_eq!(
            x,
            0,
            "raid5 parity wrong at member offset {at} (row {})",
            at / chunk
        );
    }
}

#[test]
fn linear_volume_is_the_members_end_to_end() {
    let rig = rig(&[6 * MIB, 6 * MIB, 6 * MIB]);
    let members = [
        Member {
            device: 0,
            start: MIB,
            len: 2 * MIB + 512,
        },
        Member {
            device: 1,
            start: 3 * MIB,
            len: MIB,
        },
        Member {
            device: 2,
            start: 512 * KIB,
            len: 3 * MIB,
        },
    ];
    let size = ldm_layout::usable_size(Layout::Spanned, &members);
    assert_eq!(size, 6 * MIB + 512);
    let data = Noise::new(1).bytes(size as usize);

    let back = rig.with_volume(Layout::Spanned, &members, |v| {
        stream(v, &data, 2);
        read_back(v)
    });

    assert!(
        back == data,
        "reading the volume back differs from what was written"
    );
    rig.assert_same_with_cmp("linear", &data, &ref_linear(&rig.member_bytes(&members)));
    rig.assert_outside_untouched(&members);
}

#[test]
fn striped_volume_stripes_chunks_round_robin() {
    let chunk = 64 * KIB;
    let rig = rig(&[6 * MIB, 6 * MIB, 6 * MIB]);
    // Unequal members: whole chunks of the smallest are used.
    let members = [
        Member {
            device: 0,
            start: MIB,
            len: 4 * MIB,
        },
        Member {
            device: 1,
            start: 0,
            len: 4 * MIB + 100 * KIB,
        },
        Member {
            device: 2,
            start: MIB,
            len: 4 * MIB + 4 * KIB,
        },
    ];
    let layout = Layout::Striped { chunk };
    assert_eq!(ldm_layout::usable_size(layout, &members), 12 * MIB);
    let data = Noise::new(3).bytes(12 * MIB as usize);

    let back = rig.with_volume(layout, &members, |v| {
        stream(v, &data, 4);
        read_back(v)
    });

    assert!(
        back == data,
        "reading the volume back differs from what was written"
    );
    let now = rig.member_bytes(&members);
    rig.assert_same_with_cmp("raid0", &data, &ref_raid0(&now, chunk as usize));
    // The members' rounded-off tails are not part of the volume.
    assert_eq!(
        now[1][4 * MIB as usize..],
        rig.before[1][(4 * MIB) as usize..(4 * MIB + 100 * KIB) as usize]
    );
    rig.assert_outside_untouched(&members);
}

#[test]
fn raid1_volume_writes_every_mirror() {
    // Two mirrors on one image (distinct ranges) and one on another.
    let rig = rig(&[8 * MIB, 5 * MIB]);
    let members = [
        Member {
            device: 0,
            start: MIB,
            len: 3 * MIB,
        },
        Member {
            device: 1,
            start: 2 * MIB,
            len: 3 * MIB,
        },
        Member {
            device: 0,
            start: 4 * MIB + 4096,
            len: 3 * MIB + 4096,
        },
    ];
    let size = ldm_layout::usable_size(Layout::Mirrored, &members);
    assert_eq!(size, 3 * MIB);
    let data = Noise::new(5).bytes(size as usize);

    let back = rig.with_volume(Layout::Mirrored, &members, |v| {
        stream(v, &data, 6);
        read_back(v)
    });

    assert!(
        back == data,
        "reading the volume back differs from what was written"
    );
    for (i, m) in rig.member_bytes(&members).iter().enumerate() {
        rig.assert_same_with_cmp(&format!("raid1-{i}"), &data, &m[..size as usize]);
    }
    rig.assert_outside_untouched(&members);
}

fn raid5_rig() -> (Rig, [Member; 4], Layout, u64) {
    let chunk = 64 * KIB;
    let rig = rig(&[5 * MIB, 5 * MIB, 5 * MIB, 5 * MIB]);
    let members = [
        Member {
            device: 0,
            start: 0,
            len: 4 * MIB,
        },
        Member {
            device: 1,
            start: 256 * KIB,
            len: 4 * MIB + 4096,
        },
        Member {
            device: 2,
            start: 512 * KIB,
            len: 4 * MIB + 8192,
        },
        Member {
            device: 3,
            start: 768 * KIB,
            len: 4 * MIB,
        },
    ];
    (rig, members, Layout::Raid5 { chunk }, chunk)
}

#[test]
fn raid5_streaming_write_is_left_symmetric_with_parity() {
    let (rig, members, layout, chunk) = raid5_rig();
    let size = ldm_layout::usable_size(layout, &members);
    assert_eq!(size, 12 * MIB);
    let data = Noise::new(7).bytes(size as usize);

    let back = rig.with_volume(layout, &members, |v| {
        stream(v, &data, 8);
        read_back(v)
    });

    assert!(
        back == data,
        "reading the volume back differs from what was written"
    );
    let now = rig.member_bytes(&members);
    rig.assert_same_with_cmp("raid5", &data, &ref_raid5(&now, chunk as usize));
    assert_parity(&now, chunk as usize, 0, rows(&now, chunk as usize));
    rig.assert_outside_untouched(&members);
}

#[test]
fn raid5_streaming_write_reads_nothing_back() {
    // Whole stripes arrive in order, so parity comes from the data alone.
    let (rig, members, layout, _) = raid5_rig();
    let data = Noise::new(9).bytes(ldm_layout::usable_size(layout, &members) as usize);
    let mut devices: Vec<CountingDevice> = rig
        .devices()
        .into_iter()
        .map(|inner| CountingDevice {
            inner,
            reads: 0.into(),
        })
        .collect();
    {
        let refs: Vec<&mut dyn Device> = devices.iter_mut().map(|d| d as &mut dyn Device).collect();
        let mut volume = VolumeWriter::new(refs, layout, &members).expect("open volume");
        stream(&mut volume, &data, 10);
        volume.finish().expect("finish");
    }
    let reads: u64 = devices.iter().map(|d| d.reads.get()).sum();
    assert_eq!(reads, 0, "a streaming raid5 write read {reads} times");
}

struct CountingDevice {
    inner: FileDevice,
    reads: std::cell::Cell<u64>,
}

impl Device for CountingDevice {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn sector_size(&self) -> u32 {
        self.inner.sector_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_at(buf, offset)
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn zero_range(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.zero_range(offset, len)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
}

#[test]
fn raid5_scattered_overwrites_keep_parity_consistent() {
    let (rig, members, layout, chunk) = raid5_rig();
    let size = ldm_layout::usable_size(layout, &members) as usize;
    let mut model = Noise::new(11).bytes(size);
    let mut noise = Noise::new(12);

    rig.with_volume(layout, &members, |v| {
        stream(v, &model, 13);
        for round in 0..300 {
            let len = 1 + noise.below(150_000) as usize;
            let at = noise.below((size - len) as u64) as usize;
            let bytes = noise.bytes(len);
            v.seek(SeekFrom::Start(at as u64)).expect("seek");
            v.write_all(&bytes).expect("overwrite");
            model[at..at + len].copy_from_slice(&bytes);
            // Reads in between must see the pending stripe.
            if round % 7 == 0 {
                let probe = noise.below(size as u64 - 4096) as usize;
                let mut got = vec![0u8; 4096];
                v.seek(SeekFrom::Start(probe as u64)).expect("seek");
                v.read_exact(&mut got).expect("read");
                assert!(
                    got == model[probe..probe + 4096],
                    "read at {probe} after overwrite differs"
                );
            }
        }
    });

    let now = rig.member_bytes(&members);
    rig.assert_same_with_cmp("raid5-scattered", &model, &ref_raid5(&now, chunk as usize));
    assert_parity(&now, chunk as usize, 0, rows(&now, chunk as usize));
    rig.assert_outside_untouched(&members);
}

#[test]
fn raid5_partial_last_stripe_is_completed_from_disk() {
    let (rig, members, layout, chunk) = raid5_rig();
    let stripe = 3 * chunk as usize;
    // Five whole stripes and one and a half chunks of the sixth.
    let len = 5 * stripe + chunk as usize + chunk as usize / 2;
    let data = Noise::new(14).bytes(len);

    rig.with_volume(layout, &members, |v| stream(v, &data, 15));

    let now = rig.member_bytes(&members);
    let volume = ref_raid5(&now, chunk as usize);
    assert!(volume[..len] == data[..], "written prefix differs");
    assert!(
        volume[len..6 * stripe]
            == ref_raid5(&rig_before(&rig, &members), chunk as usize)[len..6 * stripe]
    );
    assert_parity(&now, chunk as usize, 0, 6);
    // Rows after the written ones still hold their old bytes everywhere.
    for (m, before) in now.iter().zip(rig_before(&rig, &members)) {
        assert!(
            m[6 * chunk as usize..] == before[6 * chunk as usize..],
            "a row past the write changed"
        );
    }
    rig.assert_outside_untouched(&members);
}

fn rig_before(rig: &Rig, members: &[Member]) -> Vec<Vec<u8>> {
    members
        .iter()
        .map(|m| rig.before[m.device][m.start as usize..(m.start + m.len) as usize].to_vec())
        .collect()
}

#[test]
fn map_agrees_with_the_layout_formulas() {
    let m = |len| Member {
        device: 0,
        start: 0,
        len,
    };
    let four = [m(MIB), m(MIB), m(MIB), m(MIB)];
    let chunk = 64 * KIB;
    let mut noise = Noise::new(16);
    for _ in 0..1000 {
        let off = noise.below(3 * MIB);
        let c = off / chunk;
        let (row, col) = (c / 3, c % 3);
        let parity = 3 - row % 4;
        let data = (parity + 1 + col) % 4;
        let at = row * chunk + off % chunk;
        assert_eq!(
            ldm_layout::map(Layout::Raid5 { chunk }, &four, off),
            vec![(data as usize, at), (parity as usize, at)],
            "raid5 offset {off}"
        );
        let off0 = noise.below(4 * MIB);
        let c0 = off0 / chunk;
        assert_eq!(
            ldm_layout::map(Layout::Striped { chunk }, &four, off0),
            vec![((c0 % 4) as usize, (c0 / 4) * chunk + off0 % chunk)],
            "raid0 offset {off0}"
        );
    }
    assert_eq!(
        ldm_layout::map(Layout::Mirrored, &four, 5),
        vec![(0, 5), (1, 5), (2, 5), (3, 5)]
    );
    let spans = [m(100), m(50)];
    assert_eq!(ldm_layout::map(Layout::Spanned, &spans, 99), vec![(0, 99)]);
    assert_eq!(ldm_layout::map(Layout::Spanned, &spans, 100), vec![(1, 0)]);
    assert_eq!(ldm_layout::map(Layout::Spanned, &spans, 150), vec![]);
    assert_eq!(
        ldm_layout::map(Layout::Raid5 { chunk }, &four, 3 * MIB),
        vec![]
    );
}

#[test]
fn usable_size_rounds_to_whole_stripes() {
    let m = |len| Member {
        device: 0,
        start: 0,
        len,
    };
    let chunk = 64 * KIB;
    let members = [m(MIB + 1000), m(2 * MIB), m(MIB + 70 * KIB)];
    assert_eq!(
        ldm_layout::usable_size(Layout::Spanned, &members),
        4 * MIB + 1000 + 70 * KIB
    );
    assert_eq!(
        ldm_layout::usable_size(Layout::Mirrored, &members),
        MIB + 1000
    );
    assert_eq!(
        ldm_layout::usable_size(Layout::Striped { chunk }, &members),
        3 * MIB
    );
    assert_eq!(
        ldm_layout::usable_size(Layout::Raid5 { chunk }, &members),
        2 * MIB
    );
    assert_eq!(ldm_layout::usable_size(Layout::Raid5 { chunk }, &[]), 0);
}

#[test]
fn volumes_refuse_bad_shapes_and_writes_past_the_end() {
    let rig = rig(&[2 * MIB, 2 * MIB]);
    let open = |layout, members: &[Member]| {
        let mut devices = rig.devices();
        let refs: Vec<&mut dyn Device> = devices.iter_mut().map(|d| d as &mut dyn Device).collect();
        VolumeWriter::new(refs, layout, members).map(|_| ())
    };
    let a = Member {
        device: 0,
        start: 0,
        len: MIB,
    };
    let b = Member {
        device: 1,
        start: 0,
        len: MIB,
    };
    let chunk = 64 * KIB;
    assert!(matches!(
        open(Layout::Raid5 { chunk }, &[a, b]),
        Err(VolumeError::TooFewMembers { need: 3, .. })
    ));
    assert!(matches!(
        open(Layout::Striped { chunk: 3000 }, &[a, b]),
        Err(VolumeError::BadChunk { .. })
    ));
    assert!(matches!(
        open(Layout::Mirrored, &[a, Member { device: 2, ..b }]),
        Err(VolumeError::UnknownDevice { device: 2, .. })
    ));
    assert!(matches!(
        open(
            Layout::Mirrored,
            &[
                a,
                Member {
                    start: MIB + 1,
                    ..b
                }
            ]
        ),
        Err(VolumeError::MemberOutOfRange { .. })
    ));
    assert!(matches!(
        open(
            Layout::Mirrored,
            &[
                a,
                Member {
                    device: 0,
                    start: MIB - 1,
                    len: 10
                }
            ]
        ),
        Err(VolumeError::MembersOverlap {
            first: 0,
            second: 1
        })
    ));
    assert!(matches!(
        open(Layout::Striped { chunk: 2 * MIB }, &[a, b]),
        Err(VolumeError::TooSmall { .. })
    ));

    let members = [a, b];
    let result = rig.with_volume(Layout::Striped { chunk }, &members, |v| {
        v.write_all(&vec![0xA5; (2 * MIB + 1) as usize])
    });
    assert!(
        result.is_err(),
        "writing past the end of the volume succeeded"
    );
    rig.assert_outside_untouched(&members);
}

// ------------------------------------------------------------------- mkfs

const FS_OFFSET: u64 = MIB;

fn format_opts<'a>(
    dir: &'a Path,
    label: Option<&'a str>,
    sector_size: u32,
    holes: Holes,
) -> FormatOptions<'a> {
    FormatOptions {
        label,
        sector_size,
        seed: 42,
        partition_start_sector: 0,
        holes,
        temp_dir: Some(dir),
    }
}

/// Formats `[1 MiB, 1 MiB + len)` of an image with noise around the range
/// and in the first and last MiBs of it (where boot sectors, FATs and backup
/// boot sectors go), checks the bytes around it, and returns the extracted
/// filesystem for the tools. The result must equal formatting a zeroed
/// range, or stale bytes survived.
fn format_in_noise(
    dir: &Path,
    fs: Fs,
    len: u64,
    label: &str,
    sector_size: u32,
) -> (PathBuf, mkfs::FormatReport) {
    let image = dir.join(format!("{fs}.img"));
    let (head, tail) = guarded_sparse_image(&image, len + 2 * FS_OFFSET, FS_OFFSET, 77);
    let file = File::options()
        .read(true)
        .write(true)
        .open(&image)
        .expect("open image");
    let mut noise = Noise::new(78);
    for at in [FS_OFFSET, FS_OFFSET + len - 4 * MIB] {
        file.write_all_at(&noise.bytes(4 * MIB as usize), at)
            .expect("write noise");
    }
    let report = mkfs::format(
        &mut Window::new(&file, FS_OFFSET, len),
        len,
        fs,
        &format_opts(dir, Some(label), sector_size, Holes::WriteZeros),
    )
    .unwrap_or_else(|e| panic!("format {fs}: {e}"));
    assert!(
        read_range(&image, 0, FS_OFFSET) == head,
        "{fs}: bytes before the range changed"
    );
    assert!(
        read_range(&image, FS_OFFSET + len, FS_OFFSET) == tail,
        "{fs}: bytes after the range changed"
    );
    assert_eq!(
        report.data_bytes + report.zero_bytes,
        len,
        "{fs}: WriteZeros must cover the range"
    );
    let part = extract(&image, FS_OFFSET, len, &dir.join(format!("{fs}.part")));

    let clean = dir.join(format!("{fs}.clean"));
    File::create(&clean)
        .and_then(|f| f.set_len(len))
        .expect("create clean image");
    let clean_file = File::options()
        .read(true)
        .write(true)
        .open(&clean)
        .expect("open clean image");
    mkfs::format(
        &mut Window::new(&clean_file, 0, len),
        len,
        fs,
        &format_opts(dir, Some(label), sector_size, Holes::AlreadyZero),
    )
    .unwrap_or_else(|e| panic!("format {fs} (clean): {e}"));
    cmp_files(&part, &clean);
    (part, report)
}

fn assert_blkid(part: &Path, fs_type: &str, label: &str, id: &str) {
    let tags = blkid(part);
    assert_eq!(
        blkid_value(&tags, "TYPE").as_deref(),
        Some(fs_type),
        "blkid: {tags:?}"
    );
    assert_eq!(
        blkid_value(&tags, "LABEL").as_deref(),
        Some(label),
        "blkid: {tags:?}"
    );
    assert_eq!(
        blkid_value(&tags, "UUID").as_deref(),
        Some(id),
        "blkid: {tags:?}"
    );
}

#[test]
fn mkfs_fat16_in_a_range() {
    let dir = TempDir::new().expect("temp dir");
    let (part, report) = format_in_noise(dir.path(), Fs::Fat16, 32 * MIB, "RPLANBOOT", 512);
    assert_blkid(&part, "vfat", "RPLANBOOT", &report.id);
    assert_eq!(
        blkid_value(&blkid(&part), "VERSION").as_deref(),
        Some("FAT16")
    );
    run_ok(Command::new("fsck.vfat").arg("-n").arg(&part));
}

#[test]
fn mkfs_fat32_in_a_range_with_4k_sectors() {
    let dir = TempDir::new().expect("temp dir");
    let (part, report) = format_in_noise(dir.path(), Fs::Fat32, 300 * MIB, "DATA4K", 4096);
    let tags = blkid(&part);
    assert_blkid(&part, "vfat", "DATA4K", &report.id);
    assert_eq!(blkid_value(&tags, "VERSION").as_deref(), Some("FAT32"));
    assert_eq!(blkid_value(&tags, "BLOCK_SIZE").as_deref(), Some("4096"));
    run_ok(Command::new("fsck.vfat").arg("-n").arg(&part));
}

#[test]
fn mkfs_ext4_in_a_range() {
    let dir = TempDir::new().expect("temp dir");
    let (part, report) = format_in_noise(dir.path(), Fs::Ext4, 32 * MIB, "rplan-data", 512);
    assert_blkid(&part, "ext4", "rplan-data", &report.id);
    run_ok(Command::new("e2fsck").arg("-fn").arg(&part));
}

#[test]
fn mkfs_ntfs_in_a_range() {
    let dir = TempDir::new().expect("temp dir");
    let (part, report) = format_in_noise(dir.path(), Fs::Ntfs, 32 * MIB, "System", 512);
    assert_blkid(&part, "ntfs", "System", &report.id);
    let info = stdout_of(Command::new("ntfsinfo").arg("-m").arg(&part));
    assert!(info.contains("Volume Name: System"), "ntfsinfo -m:\n{info}");
    run_ok(Command::new("ntfsfix").arg("-n").arg(&part));
}

#[test]
fn mkfs_is_reproducible_and_sparse() {
    let dir = TempDir::new().expect("temp dir");
    let len = 40 * MIB;
    for fs in [Fs::Fat16, Fs::Fat32, Fs::Ext4, Fs::Ntfs] {
        let mut parts = Vec::new();
        let mut ids = Vec::new();
        for (run, seed) in [(0, 42), (1, 42), (2, 43)] {
            let image = dir.path().join(format!("{fs}-{run}.img"));
            let (head, tail) = guarded_sparse_image(&image, len + 2 * FS_OFFSET, FS_OFFSET, run);
            let file = File::options()
                .read(true)
                .write(true)
                .open(&image)
                .expect("open image");
            let opts = FormatOptions {
                seed,
                ..format_opts(dir.path(), Some("REPRO"), 512, Holes::AlreadyZero)
            };
            let report = mkfs::format(&mut Window::new(&file, FS_OFFSET, len), len, fs, &opts)
                .unwrap_or_else(|e| panic!("format {fs}: {e}"));
            assert_eq!(report.data_bytes + report.skipped_bytes, len, "{fs}");
            assert_eq!(report.zero_bytes, 0, "{fs}: AlreadyZero wrote zeros");
            assert!(
                report.data_bytes < len / 4,
                "{fs}: wrote {} of {len} bytes",
                report.data_bytes
            );
            assert!(
                read_range(&image, 0, FS_OFFSET) == head,
                "{fs}: head guard changed"
            );
            assert!(
                read_range(&image, FS_OFFSET + len, FS_OFFSET) == tail,
                "{fs}: tail guard changed"
            );
            let part = extract(
                &image,
                FS_OFFSET,
                len,
                &dir.path().join(format!("{fs}-{run}.part")),
            );
            assert_eq!(
                blkid_value(&blkid(&part), "UUID").as_deref(),
                Some(report.id.as_str())
            );
            parts.push(part);
            ids.push(report.id);
        }
        cmp_files(&parts[0], &parts[1]);
        assert_eq!(ids[0], ids[1], "{fs}: same seed, different id");
        assert_ne!(ids[0], ids[2], "{fs}: different seed, same id");
    }
}

#[test]
fn mkfs_refuses_bad_labels_and_sizes() {
    let dir = TempDir::new().expect("temp dir");
    let mut sink = std::io::Cursor::new(Vec::new());
    let try_format = |sink: &mut std::io::Cursor<Vec<u8>>, fs, len, label, sector| {
        mkfs::format(
            sink,
            len,
            fs,
            &format_opts(dir.path(), label, sector, Holes::WriteZeros),
        )
    };
    assert!(matches!(
        try_format(&mut sink, Fs::Fat32, 64 * MIB, Some("TWELVE_CHARS"), 512),
        Err(MkfsError::InvalidLabel { fs: Fs::Fat32, .. })
    ));
    assert!(matches!(
        try_format(
            &mut sink,
            Fs::Ext4,
            64 * MIB,
            Some("a-label-longer-than-16"),
            512
        ),
        Err(MkfsError::InvalidLabel { .. })
    ));
    assert!(matches!(
        try_format(&mut sink, Fs::Ntfs, 64 * MIB, None, 1000),
        Err(MkfsError::InvalidArgument(_))
    ));
    assert!(matches!(
        try_format(&mut sink, Fs::Fat16, 1000, None, 512),
        Err(MkfsError::InvalidArgument(_))
    ));
    // mkfs.fat only warns about a FAT32 this small; Windows would read it
    // as FAT16.
    let err = try_format(&mut sink, Fs::Fat32, 8 * MIB, None, 512).expect_err("FAT32 in 8 MiB");
    assert!(
        matches!(err, MkfsError::UnsuitableSize { fs: Fs::Fat32, .. }),
        "{err}"
    );
    // Too small for anything: the tool's own complaint comes back.
    let err = try_format(&mut sink, Fs::Fat16, 16 * KIB, None, 512).expect_err("FAT16 in 16 KiB");
    assert!(
        matches!(
            err,
            MkfsError::ToolFailed {
                tool: "mkfs.fat",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        sink.get_ref().is_empty(),
        "a refused format wrote something"
    );
}

// -------------------------------------------------------------------- FAT

const MTOOLS_ENV: (&str, &str) = ("MTOOLS_SKIP_CHECK", "1");

fn mtools(tool: &str, image: &Path, args: &[&str]) -> String {
    stdout_of(
        Command::new(tool)
            .env(MTOOLS_ENV.0, MTOOLS_ENV.1)
            .arg("-i")
            .arg(format!("{}@@{}", image.display(), FS_OFFSET))
            .args(args),
    )
}

fn fat_installs(fs: Fs, len: u64, sector_size: u32) {
    let dir = TempDir::new().expect("temp dir");
    let image = dir.path().join("boot.img");
    let (head, tail) = guarded_sparse_image(&image, len + 2 * FS_OFFSET, FS_OFFSET, 5);
    let file = File::options()
        .read(true)
        .write(true)
        .open(&image)
        .expect("open image");
    let window = || Window::new(&file, FS_OFFSET, len);
    mkfs::format(
        &mut window(),
        len,
        fs,
        &format_opts(dir.path(), Some("ASRBOOT"), sector_size, Holes::AlreadyZero),
    )
    .expect("format");

    let first_sif =
        b"[VERSION]\r\nSignature=\"$Windows NT$\"\r\nASR-Version=\"1.0\"\r\n".repeat(40);
    let sif = b"[VERSION]\r\nSignature=\"$Windows NT$\"\r\n".to_vec();
    let blob = Noise::new(21).bytes(300_000);
    let small = b"second file\n".to_vec();
    assert_eq!(
        fat::install_file(window(), "/asr.sif", &mut &first_sif[..]).expect("install"),
        first_sif.len() as u64
    );
    fat::install_file(window(), "/sub/dir/file.txt", &mut &blob[..]).expect("install nested");
    fat::install_file(window(), "/sub/Second File.bin", &mut &small[..])
        .expect("install long name");
    // Overwrite with something shorter: the old tail must not survive.
    assert_eq!(
        fat::install_file(window(), "/asr.sif", &mut &sif[..]).expect("overwrite"),
        sif.len() as u64
    );

    let root = mtools("mdir", &image, &["-a", "::/"]);
    assert!(
        root.contains("ASR") && root.contains("SIF") && root.contains("SUB"),
        "mdir ::/\n{root}"
    );
    let sub = mtools("mdir", &image, &["::/sub"]);
    assert!(
        sub.contains("Second File.bin") && sub.contains("DIR"),
        "mdir ::/sub\n{sub}"
    );
    assert_eq!(
        mtools("mtype", &image, &["::/asr.sif"]).as_bytes(),
        &sif[..],
        "mtype ::/asr.sif"
    );
    assert_eq!(
        mtools("mtype", &image, &["::/sub/second file.bin"]).as_bytes(),
        &small[..]
    );
    let copied = dir.path().join("file.txt");
    mtools(
        "mcopy",
        &image,
        &[
            "::/sub/dir/file.txt",
            copied.to_str().expect("utf-8 temp path"),
        ],
    );
    let expected = dir.path().join("file.expected");
    std::fs::write(&expected, &blob).expect("write expected");
    cmp_files(&copied, &expected);

    let mut back = Vec::new();
    assert_eq!(
        fat::read_file(window(), "/sub/dir/file.txt", &mut back).expect("read_file"),
        blob.len() as u64
    );
    assert!(back == blob, "read_file differs from what was installed");

    let part = extract(&image, FS_OFFSET, len, &dir.path().join("boot.part"));
    run_ok(Command::new("fsck.vfat").arg("-n").arg(&part));
    assert!(
        read_range(&image, 0, FS_OFFSET) == head,
        "head guard changed"
    );
    assert!(
        read_range(&image, FS_OFFSET + len, FS_OFFSET) == tail,
        "tail guard changed"
    );
}

#[test]
fn fat32_install_files() {
    fat_installs(Fs::Fat32, 64 * MIB, 512);
}

#[test]
fn fat32_install_files_4k_sectors() {
    fat_installs(Fs::Fat32, 300 * MIB, 4096);
}

#[test]
fn fat16_install_files() {
    fat_installs(Fs::Fat16, 32 * MIB, 512);
}

#[test]
fn fat_refuses_bad_paths_and_non_fat_ranges() {
    let dir = TempDir::new().expect("temp dir");
    let image = dir.path().join("zero.img");
    File::create(&image)
        .and_then(|f| f.set_len(8 * MIB))
        .expect("create image");
    let file = File::options()
        .read(true)
        .write(true)
        .open(&image)
        .expect("open image");
    let window = || Window::new(&file, 0, 8 * MIB);

    for bad in [
        "asr.sif",
        "/",
        "/a//b",
        "/a/../b",
        "/./a",
        "/a/",
        "/what?.txt",
        "/a:b",
        "/tab\there",
        "/dot.",
        "/emoji\u{1F600}",
    ] {
        match fat::install_file(window(), bad, &mut &b"x"[..]) {
            Err(FatError::InvalidPath { .. }) => {}
            other => panic!("{bad:?}: expected InvalidPath, got {other:?}"),
        }
    }
    assert!(matches!(
        fat::install_file(window(), "/ok.txt", &mut &b"x"[..]),
        Err(FatError::NotFat(_))
    ));

    let len = 32 * MIB;
    let image = dir.path().join("fat.img");
    File::create(&image)
        .and_then(|f| f.set_len(len))
        .expect("create image");
    let file = File::options()
        .read(true)
        .write(true)
        .open(&image)
        .expect("open image");
    let window = || Window::new(&file, 0, len);
    mkfs::format(
        &mut window(),
        len,
        Fs::Fat16,
        &format_opts(dir.path(), None, 512, Holes::AlreadyZero),
    )
    .expect("format");
    assert!(matches!(
        fat::read_file(window(), "/missing.txt", &mut Vec::new()),
        Err(FatError::NotFound { .. })
    ));
    fat::install_file(window(), "/plain", &mut &b"x"[..]).expect("install");
    let err = fat::install_file(window(), "/plain/under.txt", &mut &b"x"[..])
        .expect_err("file as a directory");
    assert!(matches!(err, FatError::Io { .. }), "{err}");
}
