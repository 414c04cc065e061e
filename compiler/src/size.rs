//! Sizes and durations as they are written in plans.
//!
//! A size is integer bytes or a string with a unit: binary (`KiB`…`TiB`),
//! decimal (`KB`…`TB`), `B`, or `s` for sectors of the disk it is on. `1G` is
//! refused on purpose: whether it means GB or GiB is a 7% difference on a
//! disk, and a recovery plan must not guess. Durations are `30s`, `15m`, `2h`.

use schemars::JsonSchema;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// The JSON Schema pattern of a size string; schema diagnostics recognise it
/// to explain a bad size with [`Size::parse`]'s message instead of a regex.
pub const SIZE_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB|s)?$";
/// The JSON Schema pattern of a duration string.
pub const DURATION_PATTERN: &str = r"^[0-9]+(s|m|h)$";

/// A size as written: bytes, or sectors that resolve against a sector size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    Bytes(u64),
    Sectors(u64),
}

/// Why a size or duration string was refused, with a hint to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnitError {}

impl Size {
    /// Bytes on a disk with `sector_size`-byte sectors; `None` on overflow.
    pub fn bytes(self, sector_size: u64) -> Option<u64> {
        match self {
            Size::Bytes(b) => Some(b),
            Size::Sectors(s) => s.checked_mul(sector_size),
        }
    }

    pub fn parse(text: &str) -> Result<Size, UnitError> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        if number.is_empty() {
            return Err(UnitError {
                message: format!("`{text}` is not a size"),
                help: Some("write a number with a unit, e.g. `512MiB` or `40GiB`".into()),
            });
        }
        let multiplier = match unit {
            "" | "B" => 1,
            "s" => return whole(number, text).map(Size::Sectors),
            "KiB" => KIB,
            "MiB" => MIB,
            "GiB" => GIB,
            "TiB" => TIB,
            "KB" => 1000,
            "MB" => 1000_u64.pow(2),
            "GB" => 1000_u64.pow(3),
            "TB" => 1000_u64.pow(4),
            _ => return Err(unknown_unit(text, number, unit)),
        };
        scaled(number, multiplier, text).map(Size::Bytes)
    }
}

fn unknown_unit(text: &str, number: &str, unit: &str) -> UnitError {
    let lower = unit.to_ascii_lowercase();
    let binary = match lower.trim_end_matches('b') {
        "k" => Some("KiB"),
        "m" => Some("MiB"),
        "g" => Some("GiB"),
        "t" => Some("TiB"),
        _ => None,
    };
    let help = match binary {
        Some(bin) => format!(
            "`{unit}` is ambiguous: write `{number}{bin}` (binary, {bin}) or `{number}{}` (decimal)",
            bin.replace('i', "")
        ),
        None => "units are B, KiB, MiB, GiB, TiB (binary), KB, MB, GB, TB (decimal) or s (sectors)"
            .into(),
    };
    UnitError {
        message: format!("`{text}` has an unknown size unit `{unit}`"),
        help: Some(help),
    }
}

fn whole(number: &str, text: &str) -> Result<u64, UnitError> {
    number.parse::<u64>().map_err(|_| UnitError {
        message: format!("`{text}` is not a whole number of sectors"),
        help: None,
    })
}

/// `number × multiplier` exactly, allowing a decimal fraction only when the
/// result is a whole number of bytes (`1.5GiB` yes, `0.3B` no).
fn scaled(number: &str, multiplier: u64, text: &str) -> Result<u64, UnitError> {
    let too_big = || UnitError {
        message: format!("`{text}` is too large"),
        help: Some("sizes must fit in 64 bits of bytes".into()),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let int: u64 = int.parse().map_err(|_| UnitError {
        message: format!("`{text}` is not a size"),
        help: None,
    })?;
    let mut bytes = int.checked_mul(multiplier).ok_or_else(too_big)?;
    if !frac.is_empty() {
        if frac.len() > 12 || frac.contains('.') {
            return Err(UnitError {
                message: format!("`{text}` has too many decimals"),
                help: None,
            });
        }
        let digits: u128 = frac.parse().map_err(|_| too_big())?;
        let scale = 10_u128.pow(frac.len() as u32);
        let part = digits * u128::from(multiplier);
        if part % scale != 0 {
            return Err(UnitError {
                message: format!("`{text}` is not a whole number of bytes"),
                help: Some("use a smaller unit, e.g. MiB instead of GiB".into()),
            });
        }
        let part = u64::try_from(part / scale).map_err(|_| too_big())?;
        bytes = bytes.checked_add(part).ok_or_else(too_big)?;
    }
    Ok(bytes)
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::Sectors(s) => write!(f, "{s}s"),
            Size::Bytes(b) => f.write_str(&human_bytes(b)),
        }
    }
}

/// The shortest exact binary rendering: `41GiB`, `1536KiB`, `513B`.
pub fn human_bytes(b: u64) -> String {
    for (unit, m) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
        if b >= m && b % m == 0 {
            return format!("{}{unit}", b / m);
        }
    }
    format!("{b}B")
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Size::Bytes(b) => s.serialize_u64(b),
            Size::Sectors(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: bytes, or a string like `40GiB`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size::Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size::Bytes)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Integer bytes, or a string with a unit: B, KiB, MiB, GiB, TiB (binary), KB, MB, GB, TB (decimal), s (sectors).",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": SIZE_PATTERN }
            ]
        })
    }
}

/// The longest duration a plan may give: a stage, action or probe that has
/// not finished in 30 days is not a recovery step. The bound also keeps
/// every deadline the runtime computes far from overflowing.
pub const MAX_DURATION_SECS: u64 = 30 * 24 * 3600;

/// A duration in whole seconds, written `30s`, `15m` or `2h`, at most
/// [`MAX_DURATION_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duration(pub u64);

impl Duration {
    pub fn parse(text: &str) -> Result<Duration, UnitError> {
        let t = text.trim();
        let bad = || UnitError {
            message: format!("`{text}` is not a duration"),
            help: Some("write whole seconds, minutes or hours: `30s`, `15m`, `2h`".into()),
        };
        let last = t.char_indices().last().map_or(0, |(i, _)| i);
        let (number, unit) = t.split_at(last);
        let m = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let too_long = || UnitError {
            message: format!("`{text}` is longer than 30 days"),
            help: Some(format!(
                "durations are at most {}h ({}s): a step that takes longer has failed",
                MAX_DURATION_SECS / 3600,
                MAX_DURATION_SECS
            )),
        };
        // Too many digits for u64 is too long, not malformed.
        let n: u64 = number.parse().map_err(|_| too_long())?;
        match n.checked_mul(m) {
            Some(s) if s <= MAX_DURATION_SECS => Ok(Duration(s)),
            _ => Err(too_long()),
        }
    }

    pub fn secs(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s != 0 && s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        Duration::parse(&text).map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Whole seconds, minutes or hours: `30s`, `15m`, `2h`.",
            "type": "string",
            "pattern": DURATION_PATTERN
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(Size::parse("40GiB"), Ok(Size::Bytes(40 * GIB)));
        assert_eq!(Size::parse("1.5GiB"), Ok(Size::Bytes(1536 * MIB)));
        assert_eq!(Size::parse("2GB"), Ok(Size::Bytes(2_000_000_000)));
        assert_eq!(
            Size::parse("2048s"),
            Ok(Size::Bytes(0)).map(|_| Size::Sectors(2048))
        );
        assert_eq!(Size::parse("17"), Ok(Size::Bytes(17)));
    }

    #[test]
    fn ambiguous_g_suggests_gib() {
        let e = Size::parse("1G").unwrap_err();
        assert!(e.help.unwrap().contains("`1GiB`"));
    }

    #[test]
    fn refuses_fractional_bytes_and_overflow() {
        assert!(Size::parse("0.3B").is_err());
        assert!(Size::parse("99999999999TiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("15m"), Ok(Duration(900)));
        assert!(Duration::parse("15").is_err());
        assert!(Duration::parse("5日本").is_err());
        assert!(Duration::parse("").is_err());
        assert_eq!(Duration(7200).to_string(), "2h");
        assert_eq!(Duration::parse("720h"), Ok(Duration(MAX_DURATION_SECS)));
        for huge in ["721h", "5124095576030431h", "99999999999999999999999s"] {
            let e = Duration::parse(huge).unwrap_err();
            assert!(e.message.contains("30 days"), "{huge}: {e}");
        }
    }
}
