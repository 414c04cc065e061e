//! Dynamic volumes written by `rplan apply`, judged by `ldmtool` (libldm,
//! Debian's reader of Windows dynamic disks): it must find the disk group,
//! every disk, and each volume with the plan's type, size and partitions;
//! the volume's bytes, read back in the order ldmtool reports (spanned:
//! partitions end to end; striped: chunks round-robin), must be what was
//! restored (sha256) or formatted (blkid, fsck) into the volume.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What ldmtool says about the one disk group on `imgs`.
struct Group {
    imgs: Vec<PathBuf>,
    guid: String,
    json: Value,
}

impl Group {
    fn scan(imgs: &[PathBuf]) -> Group {
        let args: Vec<&str> = imgs.iter().map(|p| p.to_str().unwrap()).collect();
        let scan: Value =
            serde_json::from_str(&tool("ldmtool", &[&["scan"][..], &args[..]].concat())).unwrap();
        let groups = scan.as_array().expect("scan lists disk groups");
        assert_eq!(groups.len(), 1, "one disk group: {scan}");
        let guid = groups[0].as_str().unwrap().to_string();
        let json = ldmtool(imgs, &["show", "diskgroup", &guid]);
        Group {
            imgs: imgs.to_vec(),
            guid,
            json,
        }
    }

    fn show(&self, what: &str, name: &str) -> Value {
        ldmtool(&self.imgs, &["show", what, &self.guid, name])
    }

    /// The volume's bytes as ldmtool's description lays them out.
    fn volume_bytes(&self, name: &str) -> (Value, Vec<u8>) {
        let v = self.show("volume", name);
        let parts: Vec<(PathBuf, u64, u64)> = v["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let p = self.show("partition", p.as_str().unwrap());
                let d = self.show("disk", p["disk"].as_str().unwrap());
                assert_eq!(d["present"], true, "{d}");
                let start = d["data-start"].as_u64().unwrap() + p["start"].as_u64().unwrap();
                (
                    PathBuf::from(d["device"].as_str().unwrap()),
                    start * 512,
                    p["size"].as_u64().unwrap() * 512,
                )
            })
            .collect();
        let size = v["size"].as_u64().unwrap() * 512;
        let mut out = Vec::new();
        match v["type"].as_str().unwrap() {
            "simple" | "spanned" => {
                for (img, start, len) in &parts {
                    out.extend(read_range(img, *start, *len));
                }
            }
            "striped" => {
                let chunk = v["chunk-size"].as_u64().unwrap() * 512;
                let mut row = 0;
                while (out.len() as u64) < size {
                    for (img, start, _) in &parts {
                        out.extend(read_range(img, start + row * chunk, chunk));
                    }
                    row += 1;
                }
            }
            other => panic!("no reassembly for {other}"),
        }
        out.truncate(size as usize);
        (v, out)
    }
}

/// A plan with one disk per entry of `members` (disk size, member size in
/// MiB), the members forming one volume of `layout` with `content`.
fn plan(dir: &Path, layout: &str, members: &[(u64, u64)], content: &str) -> PathBuf {
    let mut s = String::from(
        "version: 1\nname: fileserver-02\nsystem: { os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }\nmedia: { build: sp2-slipstream }\n",
    );
    if let Ok(a) = std::fs::read(dir.join("vol.img")) {
        s.push_str(&format!(
            "backup:\n  id: b\n  root: .\n  artifacts:\n    - {{ id: data, path: vol.img, format: raw, size: {}, sha256: {} }}\n",
            a.len(),
            sha(&dir.join("vol.img"))
        ));
    }
    s.push_str("disks:\n");
    for (i, (disk, member)) in members.iter().enumerate() {
        s.push_str(&format!(
            "  - {{ id: d{i}, critical: true, table: mbr, signature: \"0x{:08x}\", size: {disk}MiB, partitions: [ {{ id: m, size: {member}MiB, type: ldm }} ] }}\n",
            0x1d0 + i
        ));
    }
    let names: Vec<String> = (0..members.len()).map(|i| format!("d{i}/m")).collect();
    s.push_str(&format!(
        "volumes:\n  - {{ id: data, layout: {layout}, members: [{}], critical: true, content: {content} }}\nstages:\n  - {{ id: asr, kind: asr }}\n",
        names.join(", ")
    ));
    let p = dir.join("plan.yaml");
    std::fs::write(&p, s).unwrap();
    p
}

fn apply(dir: &Path, plan: &Path, imgs: &[PathBuf]) -> Run {
    let mut r = Rplan::new().args([
        "apply",
        plan.to_str().unwrap(),
        "--yes",
        "--journal",
        dir.join("journal").to_str().unwrap(),
    ]);
    for (i, p) in imgs.iter().enumerate() {
        r = r.arg("--target").arg(format!("d{i}={}", p.display()));
    }
    r.run()
}

fn images(dir: &Path, members: &[(u64, u64)]) -> Vec<PathBuf> {
    members
        .iter()
        .enumerate()
        .map(|(i, (disk, _))| image(dir, &format!("d{i}.img"), disk * MIB))
        .collect()
}

/// Restores an artifact into a `layout` volume and checks everything
/// ldmtool reports against the plan; returns the group and the volume's
/// bytes.
fn restored(layout: &str, members: &[(u64, u64)], artifact_len: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let data = noise(artifact_len, members.len() as u64);
    std::fs::write(dir.path().join("vol.img"), &data).unwrap();
    let p = plan(dir.path(), layout, members, "{ image: data }");
    let imgs = images(dir.path(), members);
    apply(dir.path(), &p, &imgs).code(0);

    let g = Group::scan(&imgs);
    assert_eq!(g.json["name"], "fileserver-02Dg0");
    assert_eq!(g.json["volumes"], serde_json::json!(["Volume1"]));
    let disks: Vec<String> = (1..=members.len()).map(|i| format!("Disk{i}")).collect();
    assert_eq!(g.json["disks"], serde_json::json!(disks));
    for (i, d) in disks.iter().enumerate() {
        let disk = g.show("disk", d);
        assert_eq!(disk["device"], imgs[i].to_str().unwrap(), "{disk}");
        // The database is the disk's last 1 MiB.
        assert_eq!(disk["metadata-size"], 2048);
        assert_eq!(
            disk["metadata-start"].as_u64().unwrap(),
            members[i].0 * MIB / 512 - 2048
        );
        // Every MBR says "dynamic disk": one partition of type 0x42.
        let t: Value =
            serde_json::from_str(&tool("sfdisk", &["--json", imgs[i].to_str().unwrap()])).unwrap();
        let parts = t["partitiontable"]["partitions"].as_array().unwrap();
        assert_eq!(parts.len(), 1, "{t}");
        assert_eq!(parts[0]["type"], "42");
        assert_eq!(t["partitiontable"]["id"], format!("0x{:08x}", 0x1d0 + i));
    }
    let (v, bytes) = g.volume_bytes("Volume1");
    assert_eq!(v["type"], layout, "{v}");
    let parts: Vec<String> = (1..=members.len()).map(|i| format!("Disk{i}-01")).collect();
    assert_eq!(v["partitions"], serde_json::json!(parts));
    for (i, name) in parts.iter().enumerate() {
        let part = g.show("partition", name);
        assert_eq!(part["disk"], format!("Disk{}", i + 1));
        // At the byte the plan put the partition (1 MiB), from sector 63.
        assert_eq!(part["start"].as_u64().unwrap() + 63, MIB / 512, "{part}");
    }
    let out = dir.path().join("volume.bin");
    std::fs::write(&out, &bytes[..data.len()]).unwrap();
    assert_eq!(
        sha(&out),
        sha(&dir.path().join("vol.img")),
        "{layout}: the volume read in ldmtool's order is not the artifact"
    );
    bytes
}

#[test]
fn spanned_volume_over_two_disks_reads_back_in_ldmtools_order() {
    // Unequal members: a spanned volume is their sum.
    let bytes = restored("spanned", &[(16, 6), (24, 10)], 15 * MIB as usize + 777);
    assert_eq!(bytes.len() as u64, 16 * MIB);
}

#[test]
fn striped_volume_over_three_disks_reads_back_in_ldmtools_order() {
    let bytes = restored(
        "striped",
        &[(16, 8), (16, 8), (16, 8)],
        20 * MIB as usize + 4321,
    );
    assert_eq!(bytes.len() as u64, 24 * MIB);
}

#[test]
fn striped_volume_over_two_disks_uses_whole_stripes_of_the_smaller() {
    let bytes = restored("striped", &[(16, 8), (24, 12)], 9 * MIB as usize);
    assert_eq!(bytes.len() as u64, 16 * MIB);
}

#[test]
fn formatted_volumes_are_filesystems_in_ldmtools_order() {
    for (layout, fs, check) in [("striped", "fat32", "fsck.vfat"), ("spanned", "ntfs", "")] {
        let dir = tempfile::tempdir().unwrap();
        let members = [(48, 40), (48, 40)];
        let p = plan(
            dir.path(),
            layout,
            &members,
            &format!("{{ format: {{ fs: {fs}, label: SHARES }} }}"),
        );
        let imgs = images(dir.path(), &members);
        apply(dir.path(), &p, &imgs).code(0);
        let (_, bytes) = Group::scan(&imgs).volume_bytes("Volume1");
        let out = dir.path().join("volume.fs");
        std::fs::write(&out, &bytes).unwrap();
        let id = tool("blkid", &["-p", "-o", "export", out.to_str().unwrap()]);
        assert!(
            id.contains(&format!("TYPE={}", if fs == "fat32" { "vfat" } else { fs }))
                && id.contains("LABEL=SHARES"),
            "{layout}/{fs}: {id}"
        );
        if check == "fsck.vfat" {
            tool("fsck.vfat", &["-n", out.to_str().unwrap()]);
        } else {
            let info = tool("ntfsinfo", &["-m", out.to_str().unwrap()]);
            assert!(info.contains("SHARES"), "{info}");
        }
    }
}

#[test]
fn a_second_apply_leaves_the_dynamic_disks_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let members = [(16, 8), (16, 8)];
    std::fs::write(dir.path().join("vol.img"), noise(MIB as usize, 7)).unwrap();
    let p = plan(dir.path(), "striped", &members, "{ image: data }");
    let imgs = images(dir.path(), &members);
    apply(dir.path(), &p, &imgs).code(0);
    let before: Vec<String> = imgs.iter().map(|i| sha(i)).collect();
    let run = apply(dir.path(), &p, &imgs).code(0);
    let after: Vec<String> = imgs.iter().map(|i| sha(i)).collect();
    let out = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(before, after, "{out}");
    for table in ["asr/d0/table", "asr/d1/table"] {
        assert!(
            out.lines()
                .any(|l| l.contains(table) && l.contains("unchanged")),
            "{out}"
        );
    }
}

#[test]
fn a_dynamic_disk_is_described_whole_by_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let text = "version: 1
name: t
system: { os: windows-xp, build: sp2-slipstream, language: en }
media: { build: sp2-slipstream }
disks:
  - id: d0
    critical: true
    table: mbr
    signature: \"0x1\"
    size: 64MiB
    partitions:
      - { id: m, size: 8MiB, type: ldm, bootable: true }
      - { id: loose, size: 8MiB, type: ntfs }
  - id: d1
    critical: true
    table: gpt
    guid: 0b8b1d3e-4d0a-4b8e-9a51-5d6a1c0c2f10
    size: 64MiB
    partitions:
      - { id: m, size: 8MiB, type: ldm }
volumes:
  - { id: v, layout: spanned, members: [d0/m, d1/m], critical: true }
stages:
  - { id: asr, kind: asr }
";
    let p = dir.path().join("plan.yaml");
    std::fs::write(&p, text).unwrap();
    let run = Rplan::new()
        .args(["check", p.to_str().unwrap(), "--format", "json"])
        .run()
        .code(1);
    let found: Vec<(String, i64)> = codes_at(&run)
        .into_iter()
        .filter(|(c, _, _)| c == "RP0340")
        .map(|(c, l, _)| (c, l))
        .collect();
    let at = |line| ("RP0340".to_string(), line);
    // The bootable member (at its `members` entry), the loose partition,
    // and the GPT member disk.
    for want in [at(22), at(13), at(16)] {
        assert!(
            found.contains(&want),
            "{want:?} not in {found:?}\n{}",
            run.stdout
        );
    }
}

/// The shipped file-server example: its two data disks become one disk
/// group with the striped `shares` volume, NTFS-formatted.
#[test]
fn fileserver_example_writes_a_disk_group_ldmtool_reads() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let imgs: Vec<PathBuf> = [1 << 30, 512 * MIB, 512 * MIB]
        .iter()
        .enumerate()
        .map(|(i, &len)| image(dir.path(), &format!("d{i}.img"), len))
        .collect();
    // Commands succeed once disk0 carries a table (after ASR).
    for script in ["page-oncall", "probe-smb"] {
        let path = bin.join(script);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nsfdisk -d '{}' >/dev/null 2>&1\n",
                imgs[0].display()
            ),
        )
        .unwrap();
        tool("chmod", &["+x", path.to_str().unwrap()]);
    }
    let text = std::fs::read_to_string(root().join("examples/fileserver-dynamic.yaml")).unwrap();
    let text = text
        .replace("/usr/local/sbin/", &format!("{}/", bin.display()))
        .replace("/usr/local/bin/", &format!("{}/", bin.display()))
        .replace(
            "root: backups/",
            &format!("root: {}/examples/backups/", root().display()),
        );
    let p = dir.path().join("fileserver.yaml");
    std::fs::write(&p, text).unwrap();
    let mut r = Rplan::new().args([
        "apply",
        p.to_str().unwrap(),
        "--yes",
        "--journal",
        dir.path().join("j").to_str().unwrap(),
        // The example's Safe Mode and Last Known Good stages have manual
        // actions; no terminal answers them here (they fail, ASR runs).
        "--skip-manual",
    ]);
    for (i, img) in imgs.iter().enumerate() {
        r = r.arg("--target").arg(format!("disk{i}={}", img.display()));
    }
    r.run().code(0);
    let g = Group::scan(&imgs[1..]);
    assert_eq!(g.json["name"], "fileserver-01Dg0");
    let (v, bytes) = g.volume_bytes("Volume1");
    assert_eq!(v["type"], "striped");
    assert_eq!(v["chunk-size"], 128);
    assert_eq!(v["size"].as_u64().unwrap() * 512, 512 * MIB);
    let out = dir.path().join("shares.fs");
    std::fs::write(&out, &bytes).unwrap();
    let id = tool("blkid", &["-p", "-o", "export", out.to_str().unwrap()]);
    assert!(
        id.contains("TYPE=ntfs") && id.contains("LABEL=SHARES"),
        "{id}"
    );
}

/// Mirrored and RAID-5 volumes are Windows Server features: with a Server
/// platform layer they are written, and ldmtool reads their type, size and
/// partitions.
#[test]
fn mirrored_and_raid5_volumes_under_a_server_ruleset() {
    for (layout, members, size_mib) in [("mirrored", 2, 8), ("raid5", 3, 16)] {
        let dir = tempfile::tempdir().unwrap();
        let m: Vec<(u64, u64)> = (0..members).map(|_| (16, 8)).collect();
        std::fs::write(dir.path().join("vol.img"), noise(MIB as usize, 3)).unwrap();
        let p = plan(dir.path(), layout, &m, "{ image: data }");
        let imgs = images(dir.path(), &m);
        let check = Rplan::new()
            .args(["check", p.to_str().unwrap(), "--format", "json"])
            .run()
            .code(1);
        assert!(
            codes_at(&check).iter().any(|(c, _, _)| c == "RP0220"),
            "{layout} passes XP's rules: {}",
            check.stdout
        );
        let server = root().join("tests/data/server-volumes.yaml");
        let mut r = Rplan::new().args([
            "apply",
            p.to_str().unwrap(),
            "--yes",
            "--rules",
            server.to_str().unwrap(),
            "--journal",
            dir.path().join("j").to_str().unwrap(),
        ]);
        for (i, img) in imgs.iter().enumerate() {
            r = r.arg("--target").arg(format!("d{i}={}", img.display()));
        }
        r.run().code(0);
        let g = Group::scan(&imgs);
        let v = g.show("volume", "Volume1");
        assert_eq!(
            v["type"],
            if layout == "raid5" { "RAID5" } else { layout },
            "{v}"
        );
        assert_eq!(v["size"].as_u64().unwrap() * 512, size_mib * MIB, "{v}");
        assert_eq!(v["partitions"].as_array().unwrap().len(), members, "{v}");
        if layout == "mirrored" {
            // Every partition holds the whole volume.
            let a = read_range(&imgs[0], MIB, 8 * MIB);
            let b = read_range(&imgs[1], MIB, 8 * MIB);
            assert!(a == b, "mirror halves differ");
            assert!(a[..MIB as usize] == noise(MIB as usize, 3)[..]);
        }
    }
}

/// A dynamic disk's partitions are LDM partitions, not MBR entries: more
/// than four are fine (the MBR holds only the 0x42 entry).
#[test]
fn a_dynamic_disk_holds_more_than_four_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<String> = (0..6)
        .map(|k| format!("{{ id: p{k}, size: 2MiB, type: ldm }}"))
        .collect();
    let members: Vec<String> = (0..6).map(|k| format!("d0/p{k}")).collect();
    let text = format!(
        "version: 1\nname: many\nsystem: {{ os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }}\nmedia: {{ build: sp2-slipstream }}\ndisks:\n  - {{ id: d0, critical: true, table: mbr, signature: \"0x600d\", size: 16MiB, partitions: [ {} ] }}\nvolumes:\n  - {{ id: data, layout: spanned, members: [{}], critical: true, content: {{ format: {{ fs: fat16, label: MANY }} }} }}\nstages:\n  - {{ id: asr, kind: asr }}\n",
        parts.join(", "),
        members.join(", ")
    );
    let p = dir.path().join("plan.yaml");
    std::fs::write(&p, text).unwrap();
    let imgs = vec![image(dir.path(), "d0.img", 16 * MIB)];
    apply(dir.path(), &p, &imgs).code(0);
    let g = Group::scan(&imgs);
    let (v, bytes) = g.volume_bytes("Volume1");
    assert_eq!(v["partitions"].as_array().unwrap().len(), 6, "{v}");
    assert_eq!(v["size"].as_u64().unwrap() * 512, 12 * MIB);
    let out = dir.path().join("many.fs");
    std::fs::write(&out, &bytes).unwrap();
    tool("fsck.vfat", &["-n", out.to_str().unwrap()]);
}
