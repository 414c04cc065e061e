//! The fuzz targets' bodies: what each feeds arbitrary bytes to, and what
//! must hold. Shared by `fuzz/fuzz_targets/*.rs` (cargo-fuzz) and
//! `tests/fuzz_regressions.rs`, which replays every input kept under
//! `tests/data/fuzz/TARGET/` on plain `cargo test`.
#![allow(dead_code)]

use rplan_compiler::analyze::artifacts::zstd_decoder;
use rplan_compiler::{compile, rules, CompiledPlan, Options, RuleSet, Source};
use rplan_runtime::inspect::{self, used_bytes};
use rplan_runtime::journal::Journal;
use rplan_runtime::restore::{restore, Expected, RestoreOptions};
use rplan_runtime::target::{Access, Device, ImageFile, MemDevice};
use rplan_runtime::{layout, ldm, table};
use std::os::unix::fs::FileExt;

/// Where `fs_usage` and `zstd_artifact` put their partition.
const START: u64 = 1 << 20;
/// `fs_usage`'s partition size.
const LEN: u64 = 64 << 20;
/// `zstd_artifact`'s range size.
const CAPACITY: u64 = 16 << 20;

/// `rplan check` on arbitrary bytes: load, schema, analysis, lowering.
/// Artifacts are not opened (the fuzzer's paths would name random files).
pub fn plan_check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source::new("fuzz.yaml", text);
    let options = Options {
        no_artifacts: true,
        ..Options::default()
    };
    let out = compile(&source, RuleSet::builtin(), &options);
    if let Some(compiled) = out.compiled {
        // What `rplan compile` writes must load back and be sane.
        let json = serde_json::to_vec(&compiled).expect("a compiled plan serialises");
        let back: rplan_compiler::CompiledPlan =
            serde_json::from_slice(&json).expect("a compiled plan loads back");
        assert!(back.sanity().is_empty(), "{:?}", back.sanity());
        let _ = rplan_compiler::graph::dot(&back);
    }
}

/// `--rules FILE` on arbitrary bytes: parse, validate, layer over the
/// built-in ruleset, render the matrix.
pub fn ruleset(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source::new("fuzz-rules.yaml", text);
    if let Ok(file) = rules::parse_file(&source) {
        let mut set = RuleSet::builtin().clone();
        set.add(file, "fuzz-rules.yaml");
        let _ = set.render_table();
        let _ = set.to_json();
        let _ = set.canonical();
    }
}

/// A compiled plan read from a file (`rplan apply plan.json`) is anyone's
/// JSON: load it as apply does (serde, then `sanity`), then compute what
/// apply computes from it before touching a target: each disk's table,
/// partition extents and table areas on targets of a few sizes, the LDM
/// disk group and volume members, the system disk, the graph.
pub fn compiled_plan(data: &[u8]) {
    let Ok(plan) = serde_json::from_slice::<CompiledPlan>(data) else {
        return;
    };
    if !plan.sanity().is_empty() {
        return;
    }
    let _ = rplan_compiler::graph::dot(&plan);
    let _ = rplan_compiler::graph::mermaid(&plan);
    let _ = layout::system_disk(&plan);
    for grow in [0u64, 1 << 20, 1 << 40] {
        let lens: Vec<u64> = plan
            .disks
            .iter()
            .map(|d| d.min_size.saturating_add(grow))
            .collect();
        for (disk, &len) in plan.disks.iter().zip(&lens) {
            let spec = layout::table_spec(disk, len);
            let _ = table::table_areas(&spec, len);
            for part in &disk.partitions {
                let _ = layout::extent(disk, part, len);
            }
        }
        let _ = ldm::group(&plan, &lens);
        for volume in &plan.volumes {
            if let Some(members) = layout::members(&plan, volume, |i| lens[i]) {
                let _ = ldm::layout::usable_size(layout::volume_layout(volume), &members);
            }
        }
    }
}

/// rplan's own readers of what is on a disk, on arbitrary bytes: MBR with
/// its EBR chain and GPT (primary or backup header, with or without the
/// protective MBR) through `table.rs`, and the LDM PRIVHEAD.
///
/// The first byte picks the disk's size (sparse: 1 MiB up to 2 TiB) and its
/// sector size; the rest of the input is laid at the start of the disk, and
/// its last quarter again at the end (where a backup GPT header and the LDM
/// database live).
pub fn disk_tables(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let (len, sector, pieces) = disk_layout(pick, bytes);
    let mut dev = MemDevice::new(len, sector);
    for (at, piece) in pieces {
        let _ = dev.write_at(piece, at);
    }
    if let Ok(Some(found)) = table::read_table(&dev) {
        let _ = format!("{found:?}");
    }
    let _ = table::read_headerless_gpt(&dev);
    let _ = inspect::ldm_privhead(&dev);
}

/// The whole inspection (`rplan inspect`, apply's preflight): libblkid's
/// probes of the disk and of every partition found, rplan's table reader,
/// LDM, used space, the finding list; on arbitrary bytes in a sparse image
/// file (libblkid reads a file, not memory). Layout of the input as in
/// `disk_tables`: first byte picks size and sector size, the bytes go at
/// the start and their last quarter again at the end.
pub fn disk_inspect(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let Ok(file) = tempfile::NamedTempFile::new_in(scratch()) else {
        return;
    };
    let (len, sector, pieces) = disk_layout(pick, bytes);
    let f = file.as_file();
    if f.set_len(len).is_err() || pieces.iter().any(|(at, p)| f.write_all_at(p, *at).is_err()) {
        return;
    }
    let Ok(dev) =
        ImageFile::open(file.path(), Access::ReadOnly).and_then(|d| d.with_sector_size(sector))
    else {
        return;
    };
    if let Ok(found) = inspect::inspect(&dev, file.path()) {
        let _ = found.is_blank();
        let _ = found.findings();
        for part in &found.partitions {
            let _ = part.describe();
        }
        // What `rplan inspect --format json` prints.
        let _ = serde_json::to_string(&found);
    }
}

/// Used-space readers of inspection (ext2/3/4 superblock, FAT through
/// fatfs, NTFS `$Bitmap` through the ntfs crate) on arbitrary bytes laid
/// at the start of a partition of 64 MiB at 1 MiB.
pub fn fs_usage(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let mut dev = MemDevice::new(START + LEN, 512);
    let bytes = &bytes[..bytes.len().min(LEN as usize)];
    let _ = dev.write_at(bytes, START);
    let kind = ["ext4", "vfat", "ntfs"][usize::from(pick % 3)];
    // Any answer is fine (a damaged superblock may claim anything); no
    // panic, no endless read.
    let _ = used_bytes(&dev, START, LEN, kind);
}

/// The zstd artifact reader on arbitrary bytes: the decoder restore uses
/// (window limit included), streamed by `restore::restore` into a 16 MiB
/// range of a sparse in-memory disk. The image is refused (bad frame,
/// too large, wrong size, wrong sha256) or lands inside its range.
pub fn zstd_artifact(data: &[u8]) {
    let Ok(mut decoder) = zstd_decoder(std::io::Cursor::new(data)) else {
        return;
    };
    let mut dev = MemDevice::new(START + CAPACITY + (1 << 20), 512);
    let expected = Expected {
        size: None,
        sha256: [0; 32],
    };
    for skip_zeros in [false, true] {
        let _ = restore(
            &mut dev,
            START,
            CAPACITY,
            &mut decoder,
            &expected,
            &RestoreOptions { skip_zeros },
            &mut |_| {},
        );
    }
    for (at, len) in dev.written_ranges() {
        assert!(
            at >= START && at + len <= START + CAPACITY,
            "wrote {at}+{len}"
        );
    }
}

/// A journal file (`--resume` reads it; a crash can tear it, anyone can
/// edit it) on arbitrary bytes: parse, then every question resume asks.
pub fn journal(data: &[u8]) {
    let Ok(file) = tempfile::NamedTempFile::new_in(scratch()) else {
        return;
    };
    if std::fs::write(file.path(), data).is_err() {
        return;
    }
    let Ok(journal) = Journal::read(file.path()) else {
        return;
    };
    let _ = journal.state();
    let _ = journal.targets();
    let _ = journal.identities();
    for record in journal.current() {
        let _ = format!("{record:?}");
    }
    for id in ["asr", "asr/disk0/table", "asr/disk0/system/restore"] {
        let _ = journal.stage_outcome(id);
        let _ = journal.step_outcome(id);
        let _ = journal.done(id);
        let _ = journal.done_before(id, None);
        let _ = journal.done_before(id, Some("file:1:2:1048576"));
        let _ = journal.torn(id);
    }
}

/// A disk from fuzz input: the first byte picks the size (1 MiB << its
/// low 5 bits, at most 2 TiB, sparse) and the sector size (its top bit:
/// 4096); the rest goes at the start, and its last quarter again at the
/// end (a backup GPT header, the LDM database). (len, sector, pieces).
fn disk_layout(pick: u8, bytes: &[u8]) -> (u64, u32, [(u64, &[u8]); 2]) {
    let sector: u32 = if pick & 0x80 != 0 { 4096 } else { 512 };
    let len = (1u64 << 20) << (pick & 0x1f).min(21);
    let head = &bytes[..bytes.len().min(len as usize / 2)];
    let tail = &bytes[bytes.len() * 3 / 4..];
    (len, sector, [(0, head), (len - tail.len() as u64, tail)])
}

fn scratch() -> &'static str {
    if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    }
}

/// The partclone image reader (`partclone-zstd` artifacts, zstd already
/// undone: the fuzzer spends its effort on partclone's header, bitmap and
/// checksums) on arbitrary bytes, expanded by `partclone::Expand` and
/// streamed by `restore::restore` into a 16 MiB range of a sparse
/// in-memory disk: refused, or inside its range.
pub fn partclone_artifact(data: &[u8]) {
    let Ok(mut image) = rplan_compiler::partclone::Expand::new(std::io::Cursor::new(data)) else {
        return;
    };
    let mut dev = MemDevice::new(START + CAPACITY + (1 << 20), 512);
    let expected = Expected {
        size: None,
        sha256: [0; 32],
    };
    let _ = restore(
        &mut dev,
        START,
        CAPACITY,
        &mut image,
        &expected,
        &RestoreOptions { skip_zeros: true },
        &mut |_| {},
    );
    for (at, len) in dev.written_ranges() {
        assert!(
            at >= START && at + len <= START + CAPACITY,
            "wrote {at}+{len}"
        );
    }
}
