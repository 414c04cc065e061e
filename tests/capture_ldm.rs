//! `rplan capture` of Windows dynamic disks: the LDM database read back
//! into the plan's `volumes:`, judged by `ldmtool` (libldm) on the source
//! and on blank images the captured plan is applied to, and by blkid and
//! fsck.vfat on the volume's bytes assembled in ldmtool's order.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

/// Everything ldmtool says of the disk group's volumes on `imgs`, with
/// the device paths left out (they differ between source and restore),
/// and each volume's bytes in ldmtool's order.
fn volumes(imgs: &[PathBuf]) -> (Vec<Value>, Vec<Vec<u8>>) {
    let args: Vec<&str> = imgs.iter().map(|p| p.to_str().unwrap()).collect();
    let scan: Value =
        serde_json::from_str(&tool("ldmtool", &[&["scan"][..], &args[..]].concat())).unwrap();
    let guid = scan[0].as_str().expect("a disk group").to_string();
    let group = ldmtool(imgs, &["show", "diskgroup", &guid]);
    let show = |what: &str, name: &str| ldmtool(imgs, &["show", what, &guid, name]);
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    for name in group["volumes"].as_array().unwrap() {
        let mut v = show("volume", name.as_str().unwrap());
        let mut parts = Vec::new();
        let mut at = Vec::new();
        for p in v["partitions"].as_array().unwrap() {
            let p = show("partition", p.as_str().unwrap());
            let d = show("disk", p["disk"].as_str().unwrap());
            let start = d["data-start"].as_u64().unwrap() + p["start"].as_u64().unwrap();
            at.push((
                PathBuf::from(d["device"].as_str().unwrap()),
                start * 512,
                p["size"].as_u64().unwrap() * 512,
            ));
            parts.push(serde_json::json!([
                p["name"], p["disk"], p["start"], p["size"]
            ]));
        }
        v["partitions"] = Value::Array(parts);
        v.as_object_mut().unwrap().remove("guid");
        let size = v["size"].as_u64().unwrap() * 512;
        let mut b = Vec::new();
        match v["type"].as_str().unwrap() {
            "simple" | "spanned" => {
                for (img, start, len) in &at {
                    b.extend(read_range(img, *start, *len));
                }
            }
            "striped" => {
                let chunk = v["chunk-size"].as_u64().unwrap() * 512;
                let mut row = 0;
                while (b.len() as u64) < size {
                    for (img, start, _) in &at {
                        b.extend(read_range(img, start + row * chunk, chunk));
                    }
                    row += 1;
                }
            }
            // Every member a whole copy.
            "mirrored" => b.extend(read_range(&at[0].0, at[0].1, at[0].2)),
            // Its members' bytes, data and parity as they lie.
            _ => {
                for (img, start, len) in &at {
                    b.extend(read_range(img, *start, *len));
                }
            }
        }
        if v["type"] != "RAID5" {
            b.truncate(size as usize);
        }
        out.push(v);
        bytes.push(b);
    }
    (out, bytes)
}

/// Two dynamic disks: a striped volume restored from random bytes, a
/// simple FAT16 volume labelled MORE.
fn source(dir: &Path) -> Vec<PathBuf> {
    std::fs::write(dir.join("vol.img"), noise((20 * MIB) as usize, 7)).unwrap();
    let plan = format!(
        "version: 1\nname: fs02\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\n\
         media: {{ build: sp2-slipstream }}\n\
         backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: data, path: vol.img, format: raw, size: {}, sha256: {} }}\n\
         disks:\n\
         \x20 - {{ id: d0, critical: true, table: mbr, signature: \"0x000001d0\", size: 64MiB, partitions: [ {{ id: m, size: 36MiB, type: ldm }}, {{ id: n, size: 20MiB, type: ldm }} ] }}\n\
         \x20 - {{ id: d1, critical: true, table: mbr, signature: \"0x000001d1\", size: 64MiB, partitions: [ {{ id: m, size: 36MiB, type: ldm }} ] }}\n\
         volumes:\n\
         \x20 - {{ id: data, layout: striped, stripe_size: 64KiB, members: [d0/m, d1/m], critical: true, content: {{ image: data }} }}\n\
         \x20 - {{ id: more, layout: simple, members: [d0/n], critical: false, content: {{ format: {{ fs: fat16, label: MORE }} }} }}\n\
         stages:\n  - {{ id: asr, kind: asr }}\n",
        20 * MIB,
        sha(&dir.join("vol.img"))
    );
    std::fs::write(dir.join("plan.yaml"), plan).unwrap();
    let imgs = vec![image(dir, "a.img", 64 * MIB), image(dir, "b.img", 64 * MIB)];
    apply(dir, &dir.join("plan.yaml"), &imgs, "j0");
    imgs
}

fn apply(dir: &Path, plan: &Path, imgs: &[PathBuf], journal: &str) {
    apply_with(dir, plan, imgs, journal, &[]);
}

/// `rules`: extra flags (`--rules FILE`) for apply and check.
fn apply_with(dir: &Path, plan: &Path, imgs: &[PathBuf], journal: &str, rules: &[&str]) {
    let mut r = Rplan::new().args([
        "apply",
        plan.to_str().unwrap(),
        "--yes",
        "--skip-manual",
        "--journal",
        dir.join(journal).to_str().unwrap(),
    ]);
    r = r.args(rules);
    for (i, p) in imgs.iter().enumerate() {
        r = r.arg("--target").arg(format!("d{i}={}", p.display()));
    }
    r.run().code(0);
}

fn capture(dir: &Path, imgs: &[PathBuf], extra: &[&str]) -> PathBuf {
    capture_with(dir, imgs, extra, &[])
}

fn capture_with(dir: &Path, imgs: &[PathBuf], extra: &[&str], rules: &[&str]) -> PathBuf {
    let out = dir.join("captured.yaml");
    let mut r = Rplan::new()
        .args(["capture", "-o", out.to_str().unwrap()])
        .args(MACHINE);
    for (i, p) in imgs.iter().enumerate() {
        r = r.arg("--disk").arg(format!("d{i}={}", p.display()));
    }
    r.args(extra).run().code(0);
    let check = Rplan::new()
        .args(["check", out.to_str().unwrap()])
        .args(rules)
        .run();
    assert_eq!(
        check.code,
        0,
        "the captured plan must check clean: {}\n{}",
        check.stderr,
        std::fs::read_to_string(&out).unwrap()
    );
    out
}

fn verify(plan: &Path, imgs: &[PathBuf]) -> Run {
    verify_with(plan, imgs, &[])
}

fn verify_with(plan: &Path, imgs: &[PathBuf], extra: &[&str]) -> Run {
    let mut r = Rplan::new()
        .args(["verify", plan.to_str().unwrap()])
        .args(extra);
    for (i, p) in imgs.iter().enumerate() {
        r = r.arg("--target").arg(format!("d{i}={}", p.display()));
    }
    r.run()
}

/// `plan` applied to two blank images: ldmtool must see `want` there;
/// the images and the volumes' bytes.
fn restore(dir: &Path, plan: &Path, want: &[Value]) -> (Vec<PathBuf>, Vec<Vec<u8>>) {
    let blank = vec![
        image(dir, "ra.img", 64 * MIB),
        image(dir, "rb.img", 64 * MIB),
    ];
    apply(dir, plan, &blank, "j1");
    let (got, got_bytes) = volumes(&blank);
    assert_eq!(got, want, "ldmtool sees other volumes after the round trip");
    (blank, got_bytes)
}

/// A FAT volume's bytes: blkid sees the label, fsck.vfat finds it clean.
fn fat_label(dir: &Path, bytes: &[u8]) -> String {
    let f = dir.join("vol.bin");
    std::fs::write(&f, bytes).unwrap();
    tool("fsck.vfat", &["-n", f.to_str().unwrap()]);
    let label = tool(
        "blkid",
        &["-p", "-o", "value", "-s", "LABEL", f.to_str().unwrap()],
    );
    std::fs::remove_file(&f).unwrap();
    label.trim().to_string()
}

#[test]
fn captured_volumes_restore_to_what_ldmtool_saw_with_backup() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (want, want_bytes) = volumes(&src);
    assert_eq!(want.len(), 2);
    let plan = capture(
        dir.path(),
        &src,
        &["--backup", dir.path().join("bk").to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.contains("layout: striped") && text.contains("stripe_size: 64KiB"),
        "{text}"
    );
    let (blank, got_bytes) = restore(dir.path(), &plan, &want);
    // The volumes' bytes are the source's: the random striped volume and
    // the FAT16 one.
    assert_eq!(got_bytes, want_bytes);
    assert_eq!(fat_label(dir.path(), &got_bytes[1]), "MORE");
    // verify: the same on both; the disks given the other way round, a
    // stripe size the disks do not have, a database wiped by dd are drift.
    assert_eq!(verify(&plan, &src).code, 0);
    assert_eq!(verify(&plan, &blank).code, 0);
    let swapped = verify(&plan, &[blank[1].clone(), blank[0].clone()]);
    assert_eq!(swapped.code, 1, "{}", swapped.stdout);
    assert!(
        swapped.stdout.contains(
            "- volume volume1: dynamic volume missing (the plan has striped over d0/p1, d1/p1)"
        ),
        "{}",
        swapped.stdout
    );
    let other = dir.path().join("other.yaml");
    std::fs::write(
        &other,
        text.replace("stripe_size: 64KiB", "stripe_size: 128KiB"),
    )
    .unwrap();
    let r = verify(&other, &blank);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("~ volume volume1: stripe size 128 KiB → 64 KiB"),
        "{}",
        r.stdout
    );
    // --content: the volume's bytes against its artifact; a stripe
    // overwritten by dd is drift.
    let r = verify_with(&plan, &blank, &["--content"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let b = blank[1].to_str().unwrap();
    tool(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={b}"),
            "bs=64K",
            "seek=32",
            "count=1",
            "conv=notrunc",
            "status=none",
        ],
    );
    assert_eq!(
        verify(&plan, &blank).code,
        0,
        "the volume's bytes only with --content"
    );
    let r = verify_with(&plan, &blank, &["--content"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("~ volume volume1: content sha256"),
        "{}",
        r.stdout
    );
    tool(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={b}"),
            "bs=1M",
            "seek=63",
            "count=1",
            "conv=notrunc",
            "status=none",
        ],
    );
    let r = verify(&plan, &blank);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("d1: LDM database"), "{}", r.stdout);
    for i in src.iter().chain(&blank) {
        std::fs::remove_file(i).unwrap();
    }
}

#[test]
fn captured_volumes_without_backup_are_made_anew_with_their_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let (want, _) = volumes(&src);
    let plan = capture(dir.path(), &src, &[]);
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.contains("layout: simple") && text.contains("fs: fat16, label: \"MORE\""),
        "{text}"
    );
    let (blank, got_bytes) = restore(dir.path(), &plan, &want);
    assert_eq!(fat_label(dir.path(), &got_bytes[1]), "MORE");
    // verify reads the filesystem through the volume: a label changed by
    // mtools is drift.
    assert_eq!(verify(&plan, &blank).code, 0);
    let at = format!("{}@@{}", blank[0].display(), 37 * MIB);
    tool("mlabel", &["-i", &at, "::OTHER"]);
    let r = verify(&plan, &blank);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("~ volume volume2: label MORE → OTHER"),
        "{}",
        r.stdout
    );
}

/// Mirrored and RAID-5 volumes (Windows Server, so under a Server ruleset)
/// are captured with their layout and members and come back the same:
/// ldmtool's description, and every member's bytes (RAID-5: data and
/// parity as they lie).
#[test]
fn mirrored_and_raid5_volumes_round_trip_under_a_server_ruleset() {
    let server = root().join("tests/data/server-volumes.yaml");
    let rules = ["--rules", server.to_str().unwrap()];
    for (layout, n) in [("mirrored", 2), ("raid5", 3)] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("vol.img"), noise((2 * MIB) as usize, 5)).unwrap();
        let mut plan = format!(
            "version: 1\nname: srv\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\n\
             media: {{ build: sp2-slipstream }}\n\
             backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: data, path: vol.img, format: raw, size: {}, sha256: {} }}\ndisks:\n",
            2 * MIB,
            sha(&d.join("vol.img"))
        );
        for i in 0..n {
            plan.push_str(&format!(
                "  - {{ id: d{i}, critical: true, table: mbr, signature: \"0x0000aa0{i}\", size: 16MiB, partitions: [ {{ id: m, size: 8MiB, type: ldm }} ] }}\n"
            ));
        }
        let members: Vec<String> = (0..n).map(|i| format!("d{i}/m")).collect();
        plan.push_str(&format!(
            "volumes:\n  - {{ id: data, layout: {layout}, members: [{}], critical: true, content: {{ image: data }} }}\nstages:\n  - {{ id: asr, kind: asr }}\n",
            members.join(", ")
        ));
        std::fs::write(d.join("plan.yaml"), plan).unwrap();
        let src: Vec<PathBuf> = (0..n)
            .map(|i| image(d, &format!("s{i}.img"), 16 * MIB))
            .collect();
        apply_with(d, &d.join("plan.yaml"), &src, "j0", &rules);
        let (want, want_bytes) = volumes(&src);
        let captured = capture_with(
            d,
            &src,
            &["--backup", d.join("bk").to_str().unwrap()],
            &rules,
        );
        let text = std::fs::read_to_string(&captured).unwrap();
        assert!(text.contains(&format!("layout: {layout}")), "{text}");
        let blank: Vec<PathBuf> = (0..n)
            .map(|i| image(d, &format!("r{i}.img"), 16 * MIB))
            .collect();
        apply_with(d, &captured, &blank, "j1", &rules);
        let (got, got_bytes) = volumes(&blank);
        assert_eq!(got, want, "{layout}: ldmtool sees another volume");
        assert!(
            got_bytes == want_bytes,
            "{layout}: the members' bytes differ"
        );
        let r = verify_with(&captured, &blank, &[&rules[..], &["--content"]].concat());
        assert_eq!(r.code, 0, "{layout}: {}{}", r.stdout, r.stderr);
    }
}
