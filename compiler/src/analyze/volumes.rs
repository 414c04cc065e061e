//! Dynamic volumes: members resolve to partitions, the layout's member rules
//! hold, every disk holding a member can be a Windows dynamic disk (LDM, as
//! the runtime writes it), and the usable size follows LDM's layouts.

use crate::compiled::{CDisk, CMember, CVolume};
use crate::diagnostic::{codes, Diagnostic};
use crate::model::{Layout, Plan, TableKind};
use crate::size::{human_bytes, KIB, MIB};

pub const DEFAULT_STRIPE: u64 = 64 * KIB;
/// The largest stripe a plan may ask for. Windows' own dynamic volumes
/// always use 64 KiB; the runtime buffers a stripe per member, so an
/// unbounded one costs unbounded memory.
pub const MAX_STRIPE: u64 = 1024 * KIB;
/// The LDM database (private region) at the end of every dynamic disk.
pub const LDM_DATABASE: u64 = MIB;
/// Where a dynamic disk's public region starts, in 512-byte sectors (after
/// the first track, as Windows XP lays dynamic disks out; the PRIVHEAD is in
/// sector 6).
pub const LDM_PUBLIC_START: u64 = 63;

/// Whether the plan makes disk `id` a dynamic disk: it holds a member of a
/// volume.
pub fn is_dynamic(plan: &Plan, id: &str) -> bool {
    plan.volumes.iter().any(|v| {
        v.members
            .iter()
            .any(|m| m.split_once('/').is_some_and(|(d, _)| d == id))
    })
}

/// Usable bytes of a volume over members of `sizes` bytes (LDM's layouts:
/// striped and RAID-5 use whole stripes of the smallest member).
pub fn usable_size(layout: Layout, stripe: u64, sizes: &[u64]) -> u64 {
    let n = sizes.len() as u64;
    let min = sizes.iter().copied().min().unwrap_or(0);
    let chunked = |m: u64| m.checked_div(stripe).map_or(m, |q| q * stripe);
    match layout {
        Layout::Simple | Layout::Spanned => sizes.iter().fold(0_u64, |a, s| a.saturating_add(*s)),
        Layout::Striped => chunked(min).saturating_mul(n),
        Layout::Mirrored => min,
        Layout::Raid5 => chunked(min).saturating_mul(n.saturating_sub(1)),
    }
}

pub fn check(plan: &Plan, disks: &mut [CDisk], diags: &mut Vec<Diagnostic>) -> Vec<CVolume> {
    super::unique_ids(
        plan.volumes
            .iter()
            .enumerate()
            .map(|(k, v)| (v.id.as_str(), format!("/volumes/{k}/id"))),
        codes::DUPLICATE_ID,
        "volume",
        diags,
    );
    let all_members: Vec<String> = disks
        .iter()
        .flat_map(|d| {
            d.partitions
                .iter()
                .map(move |p| format!("{}/{}", d.id, p.id))
        })
        .collect();
    let mut out = Vec::new();
    for (k, v) in plan.volumes.iter().enumerate() {
        let vp = format!("/volumes/{k}");
        let mut members = Vec::new();
        let mut sizes = Vec::new();
        let mut has_rest = false;
        for (m, name) in v.members.iter().enumerate() {
            let mp = format!("{vp}/members/{m}");
            let found = name.split_once('/').and_then(|(d, p)| {
                let di = disks.iter().position(|x| x.id == d)?;
                let pi = disks[di].partitions.iter().position(|x| x.id == p)?;
                Some((di, pi))
            });
            let Some((di, pi)) = found else {
                let help = match crate::schema::did_you_mean(name, all_members.iter()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if name.contains('/') => format!(
                        "members are `disk/partition`; this plan has: {}",
                        all_members.join(", ")
                    ),
                    None => "members are written `disk/partition`, e.g. `disk1/data`".to_string(),
                };
                diags.push(
                    Diagnostic::error(
                        codes::DANGLING_MEMBER,
                        mp,
                        format!("member `{name}` is not a partition of this plan"),
                    )
                    .help(help),
                );
                continue;
            };
            let part = &mut disks[di].partitions[pi];
            if let Some(other) = &part.volume {
                diags.push(
                    Diagnostic::error(
                        codes::MEMBER_REUSED,
                        mp,
                        format!("partition `{name}` is already a member of volume `{other}`"),
                    )
                    .help("a partition can belong to one volume, once"),
                );
                continue;
            }
            if part.content.is_some() {
                diags.push(
                    Diagnostic::error(
                        codes::MEMBER_REUSED,
                        mp.clone(),
                        format!(
                            "partition `{name}` has its own content but is a member of volume `{}`",
                            v.id
                        ),
                    )
                    .help("put the content on the volume; members get theirs through it"),
                );
            }
            part.volume = Some(v.id.clone());
            has_rest |= part.size.is_none();
            sizes.push(part.min_size);
            members.push((
                CMember {
                    disk: disks[di].id.clone(),
                    partition: part.id.clone(),
                },
                mp,
            ));
        }
        check_layout(v.layout, &vp, &members, &sizes, has_rest, diags);
        for (member, mp) in &members {
            if let Some(d) = disks.iter().find(|d| d.id == member.disk) {
                check_member_partition(d, member, mp, diags);
            }
        }
        let sector_size = members
            .first()
            .and_then(|(m, _)| disks.iter().find(|d| d.id == m.disk))
            .map_or(512, |d| u64::from(d.sector_size));
        let stripe = check_stripe(v, &vp, &sizes, sector_size, diags);
        let usable_size = usable_size(v.layout, stripe.unwrap_or(0), &sizes);
        if v.critical {
            for (member, mp) in &members {
                if disks.iter().any(|d| d.id == member.disk && !d.critical) {
                    diags.push(
                        Diagnostic::error(
                            codes::CRITICAL_CLOSURE,
                            format!("{vp}/critical"),
                            format!("critical volume `{}` has a member on disk `{}`, which is not critical", v.id, member.disk),
                        )
                        .related(mp.clone(), "this member")
                        .help(format!("mark disk `{}` `critical: true`: the volume cannot be restored without it", member.disk)),
                    );
                }
            }
        }
        out.push(CVolume {
            id: v.id.clone(),
            layout: v.layout,
            members: members.into_iter().map(|(m, _)| m).collect(),
            stripe_size: stripe,
            critical: v.critical,
            usable_size,
            content: v.content.clone(),
        });
    }
    check_dynamic_disks(plan, disks, diags);
    out
}

/// A member partition becomes an LDM partition: it is not in the MBR, so it
/// cannot be active or logical, and it lies in the public region (after
/// sector 63, before the database).
fn check_member_partition(d: &CDisk, member: &CMember, mp: &str, diags: &mut Vec<Diagnostic>) {
    let Some(p) = d.partitions.iter().find(|p| p.id == member.partition) else {
        return;
    };
    let name = format!("{}/{}", member.disk, member.partition);
    if p.bootable || p.logical {
        diags.push(
            Diagnostic::error(
                codes::DYNAMIC_DISK,
                mp.to_string(),
                format!(
                    "member `{name}` is {}, but a volume member lives in the LDM database, not the MBR",
                    if p.bootable { "bootable" } else { "logical" }
                ),
            )
            .help("remove `bootable`/`logical` from the member partition"),
        );
    }
    let public_start = LDM_PUBLIC_START * 512;
    if p.start < public_start {
        diags.push(
            Diagnostic::error(
                codes::DYNAMIC_DISK,
                mp.to_string(),
                format!(
                    "member `{name}` starts at byte {}, before sector {LDM_PUBLIC_START} where a dynamic disk's partitions begin",
                    p.start
                ),
            )
            .help("start it at 1MiB (the default)"),
        );
    }
}

/// Every disk holding a member is a dynamic disk as a whole: MBR, 512-byte
/// sectors, every partition in a volume. (Its last 1 MiB, the LDM database,
/// is kept free by the disk analysis.)
fn check_dynamic_disks(plan: &Plan, disks: &[CDisk], diags: &mut Vec<Diagnostic>) {
    for (i, d) in disks.iter().enumerate() {
        if !is_dynamic(plan, &d.id) {
            continue;
        }
        let dp = format!("/disks/{i}");
        if d.table != TableKind::Mbr {
            diags.push(
                Diagnostic::error(
                    codes::DYNAMIC_DISK,
                    format!("{dp}/table"),
                    format!(
                        "disk `{}` holds volume members, and rplan writes dynamic disks on MBR only",
                        d.id
                    ),
                )
                .help("use `table: mbr` for the volume's member disks"),
            );
        }
        if d.sector_size != 512 {
            diags.push(Diagnostic::error(
                codes::DYNAMIC_DISK,
                format!("{dp}/sector_size"),
                format!(
                    "disk `{}` holds volume members; its LDM database needs 512-byte sectors",
                    d.id
                ),
            ));
        }
        for (j, p) in d.partitions.iter().enumerate() {
            if p.volume.is_none() {
                diags.push(
                    Diagnostic::error(
                        codes::DYNAMIC_DISK,
                        format!("{dp}/partitions/{j}/id"),
                        format!(
                            "partition `{}/{}` is in no volume, but its disk is a dynamic disk",
                            d.id, p.id
                        ),
                    )
                    .help("every partition of a dynamic disk is a volume: make it a `simple` volume, or move it to a basic disk"),
                );
            }
        }
    }
}

fn check_layout(
    layout: Layout,
    vp: &str,
    members: &[(CMember, String)],
    sizes: &[u64],
    has_rest: bool,
    diags: &mut Vec<Diagnostic>,
) {
    let n = members.len();
    let (min, what) = match layout {
        Layout::Simple => (1, "exactly 1 member"),
        Layout::Spanned | Layout::Striped | Layout::Mirrored => (2, "at least 2 members"),
        Layout::Raid5 => (3, "at least 3 members"),
    };
    let layout_name = format!("{layout:?}").to_lowercase();
    if n < min || (layout == Layout::Simple && n > 1) {
        diags.push(
            Diagnostic::error(
                codes::MEMBER_COUNT,
                format!("{vp}/members"),
                format!("a {layout_name} volume needs {what}, this one has {n}"),
            )
            .help(match layout {
                Layout::Simple => "use `spanned` to join several partitions",
                Layout::Raid5 => "add a member: RAID-5 needs three",
                _ => "add a member, or use `simple` for one partition",
            }),
        );
    }
    if matches!(layout, Layout::Striped | Layout::Mirrored | Layout::Raid5) {
        for (i, (m, mp)) in members.iter().enumerate() {
            if let Some((first, fp)) = members[..i].iter().find(|(x, _)| x.disk == m.disk) {
                diags.push(
                    Diagnostic::error(
                        codes::MEMBERS_SHARE_DISK,
                        mp.clone(),
                        format!("members `{}/{}` and `{}/{}` are on the same disk", first.disk, first.partition, m.disk, m.partition),
                    )
                    .related(fp.clone(), "the other member")
                    .help(format!("a {layout_name} volume gains nothing from two members on one disk: put each on its own disk")),
                );
            }
        }
        if has_rest {
            diags.push(
                Diagnostic::error(
                    codes::UNEQUAL_MEMBERS,
                    format!("{vp}/members"),
                    format!("a member of this {layout_name} volume has size `rest`"),
                )
                .help(
                    "its size would depend on the target disk: give members explicit, equal sizes",
                ),
            );
        }
    }
    let (lo, hi) = (sizes.iter().min(), sizes.iter().max());
    if let (Some(&lo), Some(&hi)) = (lo, hi) {
        if lo != hi && !has_rest {
            let msg = format!(
                "member sizes differ ({} to {})",
                human_bytes(lo),
                human_bytes(hi)
            );
            match layout {
                Layout::Mirrored | Layout::Raid5 => diags.push(
                    Diagnostic::error(codes::UNEQUAL_MEMBERS, format!("{vp}/members"), msg)
                        .help(format!("make every member {}", human_bytes(hi))),
                ),
                Layout::Striped => diags.push(
                    Diagnostic::warning(codes::UNEQUAL_MEMBERS, format!("{vp}/members"), msg).help(
                        format!(
                            "a striped volume uses {} of each member; the rest is wasted",
                            human_bytes(lo)
                        ),
                    ),
                ),
                _ => {}
            }
        }
    }
}

fn check_stripe(
    v: &crate::model::Volume,
    vp: &str,
    sizes: &[u64],
    sector_size: u64,
    diags: &mut Vec<Diagnostic>,
) -> Option<u64> {
    let striped = matches!(v.layout, Layout::Striped | Layout::Raid5);
    let sp = format!("{vp}/stripe_size");
    match (striped, v.stripe_size) {
        (false, Some(_)) => {
            diags.push(
                Diagnostic::error(
                    codes::STRIPE_SIZE,
                    sp,
                    "`stripe_size` applies to striped and raid5 volumes only",
                )
                .help("remove it"),
            );
            None
        }
        (false, None) => None,
        (true, None) => Some(DEFAULT_STRIPE),
        (true, Some(s)) => {
            let b = s.bytes(sector_size).unwrap_or(u64::MAX);
            if !b.is_power_of_two() || b < 4 * KIB {
                diags.push(
                    Diagnostic::error(
                        codes::STRIPE_SIZE,
                        sp,
                        format!(
                            "stripe size {} is not a power of two of at least 4KiB",
                            human_bytes(b)
                        ),
                    )
                    .help("Windows stripes in powers of two: 64KiB is what it uses"),
                );
                return Some(DEFAULT_STRIPE);
            }
            if b > MAX_STRIPE {
                diags.push(
                    Diagnostic::error(
                        codes::STRIPE_SIZE,
                        sp,
                        format!(
                            "stripe size {} is larger than {}",
                            human_bytes(b),
                            human_bytes(MAX_STRIPE)
                        ),
                    )
                    .help("Windows' dynamic volumes use 64KiB stripes (the default): leave `stripe_size` out"),
                );
                return Some(DEFAULT_STRIPE);
            }
            if sizes.iter().any(|&m| m < b) {
                diags.push(Diagnostic::error(
                    codes::STRIPE_SIZE,
                    sp,
                    format!("stripe size {} is larger than a member", human_bytes(b)),
                ));
            }
            Some(b)
        }
    }
}
