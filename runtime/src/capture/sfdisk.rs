//! `rplan capture --from-sfdisk`: a disk described by an `sfdisk -d` dump
//! (`label: dos` or `gpt`), for plans made from existing dumps without the
//! disk: no filesystems, no artifacts.
//!
//! The dump format is sfdisk's own (util-linux `sfdisk(8)`, "Input
//! formats"): header lines `key: value`, then one line per partition,
//! `DEVICE : start=S, size=N, type=T[, bootable][, uuid=U][, name="…"]
//! [, attrs="…"]`. Extended containers (types 5, f, 85) are described by
//! the disk's `extended:` when not rplan's default layout (a note says so
//! when a plan cannot describe the dump's).

use super::{CapturedDisk, CapturedPartition};
use crate::table::TableKind;
use uuid::Uuid;

/// The disk of `text`; `size` (a plan size such as `80GiB`) overrides the
/// one inferred from the partitions.
pub fn parse(text: &str, size: Option<&str>) -> Result<CapturedDisk, String> {
    let mut label = None;
    let mut label_id = None;
    let mut device = String::from("(sfdisk dump)");
    let mut sector_size: u32 = 512;
    let mut last_lba: Option<u64> = None;
    let mut parts = Vec::new();
    let mut extended: Option<(u64, u64, u8)> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n + 1);
        if let Some((dev, fields)) = split_partition(line) {
            let f = fields_of(fields).map_err(at)?;
            let num = |k: &str| -> Result<u64, String> {
                let v = f
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| at(format!("no `{k}=`")))?;
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| at(format!("`{k}={v}` is not a number of sectors")))
            };
            let get = |k: &str| f.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            let (start, len) = (num("start")?, num("size")?);
            let kind = get("type").ok_or_else(|| at("no `type=`".to_string()))?;
            let number = dev
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .len()
                .min(dev.len());
            let number: u32 = dev[number..].parse().unwrap_or(parts.len() as u32 + 1);
            parts.push((number, start, len, kind, f.clone(), dev.to_string()));
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(at(format!(
                "`{line}` is neither `key: value` nor a partition line"
            )));
        };
        let value = value.trim();
        match key.trim() {
            "label" => label = Some(value.to_string()),
            "label-id" => label_id = Some(value.to_string()),
            "device" => device = value.to_string(),
            "sector-size" => {
                sector_size = value
                    .parse()
                    .ok()
                    .filter(|s| *s == 512 || *s == 4096)
                    .ok_or_else(|| at(format!("sector-size {value}: 512 or 4096")))?
            }
            "last-lba" => last_lba = value.parse().ok(),
            "unit" if value != "sectors" => {
                return Err(at(format!("unit `{value}`: sfdisk -d writes sectors")))
            }
            _ => {}
        }
    }
    let ss = u64::from(sector_size);
    let gpt = match label.as_deref() {
        Some("dos") => false,
        Some("gpt") => true,
        Some(other) => return Err(format!("label `{other}`: rplan reads dos and gpt dumps")),
        None => return Err("no `label:` line: not an `sfdisk -d` dump".to_string()),
    };
    let table = if gpt {
        let guid = label_id
            .as_deref()
            .and_then(|g| Uuid::parse_str(g).ok())
            .ok_or("a GPT dump needs `label-id: <disk GUID>`")?;
        TableKind::Gpt { disk_guid: guid }
    } else {
        let sig = label_id
            .as_deref()
            .map(|s| s.trim_start_matches("0x").trim_start_matches("0X"))
            .map(|s| u32::from_str_radix(s, 16))
            .transpose()
            .map_err(|_| "label-id is not a 32-bit hex disk signature")?
            .unwrap_or(0);
        TableKind::Mbr { signature: sig }
    };
    let mut out = Vec::new();
    let mut end_max = 0u64;
    for (number, start, len, kind, f, dev) in parts {
        let end = start
            .checked_add(len)
            .and_then(|e| e.checked_mul(ss))
            .ok_or_else(|| format!("{dev}: beyond 2^64 bytes"))?;
        end_max = end_max.max(end);
        let has = |flag: &str| f.iter().any(|(k, v)| k == flag && v.is_empty());
        let attrs = f
            .iter()
            .find(|(k, _)| k == "attrs")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let (kind, logical, bootable) = if gpt {
            let t = Uuid::parse_str(&kind)
                .map_err(|_| format!("{dev}: type `{kind}` is not a GPT type GUID"))?;
            (
                t.to_string().to_uppercase(),
                false,
                attrs.contains("LegacyBIOSBootable"),
            )
        } else {
            let t = u8::from_str_radix(kind.trim_start_matches("0x"), 16)
                .map_err(|_| format!("{dev}: type `{kind}` is not an MBR type byte"))?;
            if matches!(t, 0x05 | 0x0f | 0x85) {
                extended = Some((start, len, t));
                continue;
            }
            (format!("0x{t:02x}"), number >= 5, has("bootable"))
        };
        let guid = f
            .iter()
            .find(|(k, _)| k == "uuid")
            .and_then(|(_, v)| Uuid::parse_str(v).ok());
        let name = f
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone())
            .filter(|n| !n.is_empty());
        out.push(CapturedPartition {
            id: String::new(),
            number,
            start: start * ss,
            size: len * ss,
            kind,
            bootable,
            logical,
            guid,
            name,
            fs: None,
            image: None,
        });
    }
    let mut notes = Vec::new();
    let mut layout = None;
    if let Some((start, len, t)) = extended {
        let logicals: Vec<(Option<u64>, u64, u64)> = out
            .iter()
            .filter(|p| p.logical)
            .map(|p| (None, p.start / ss, p.size / ss))
            .collect();
        match crate::table::describe_extended(start, len, t, &logicals) {
            Ok(l) => layout = l,
            Err(why) => notes.push(format!("{why}; rplan writes its default container instead")),
        }
    }
    let inferred = if gpt {
        match last_lba {
            Some(l) => l
                .checked_add(34)
                .and_then(|s| s.checked_mul(ss))
                .ok_or("last-lba beyond 2^64 bytes")?,
            None => end_max
                .checked_add(34 * ss)
                .ok_or("the partitions end beyond 2^64 bytes")?,
        }
    } else {
        end_max
    };
    let size = match size {
        Some(s) => rplan_compiler::size::Size::parse(s)
            .ok()
            .and_then(|s| s.bytes(ss))
            .ok_or_else(|| format!("--size {s}: not a size (e.g. 80GiB)"))?,
        None => inferred,
    };
    super::name_partitions(&mut out);
    Ok(CapturedDisk {
        id: "disk0".to_string(),
        source: format!("sfdisk dump of {device}"),
        table,
        sector_size,
        size,
        partitions: out,
        boot_code: None,
        notes,
        ldm: None,
        extended: layout,
    })
}

/// `/dev/sda1 : start=…` → (`/dev/sda1`, `start=…`).
fn split_partition(line: &str) -> Option<(&str, &str)> {
    let (dev, rest) = line.split_once(" : ")?;
    rest.contains("start=").then_some((dev.trim(), rest))
}

/// `start=63, size=100, type=7, bootable, name="a, b"` → pairs (flags
/// have an empty value).
fn fields_of(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| *c == ' ') {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => {
                            if let Some(c) = chars.next() {
                                value.push(c)
                            }
                        }
                        Some(c) => value.push(c),
                        None => return Err("unterminated quoted value".to_string()),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}
