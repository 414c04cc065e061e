#!/usr/bin/env bash
# `rplan capture --backup` of a filesystem 25 % full, against partclone alone
# and against `dd | zstd`.
#
# Makes an ext4 filesystem of SIZE_MIB MiB (default 2048) holding FILL_PCT %
# (default 25) of random files (`mkfs.ext4 -d`), placed at 1 MiB in an MBR
# disk image. With DIRTY=1 (default) the free space holds old random bytes
# (the file is filled before `mkfs.ext4 -E nodiscard`), as on a disk in
# use; DIRTY=0: free space is zeros (a fresh filesystem). Then, on the same files, each timed as the median of $RUNS
# (default 3) after one warm-up:
#   rplan      rplan capture --disk disk0=DISK -o PLAN --backup DIR
#              (partclone.extfs on a read-only loop device, zstd -3, sha256 of
#              the expanded bytes, LBA 0 as boot code, the plan written)
#   partclone  partclone.extfs -c -a0 -s FS -o - | zstd -3 -q -o OUT
#              (partclone alone, the same zstd level)
#   dd|zstd    dd if=FS bs=4M | zstd -3 -q -o OUT   (the whole partition)
#   before     with RPLAN_BEFORE=BINARY (an older rplan): its capture too, and
#              its artifact compared with `cmp` to this rplan's (must be equal)
# Sizes of each artifact; peak RSS of one rplan capture (/usr/bin/time).
# Ratios: baseline_time / rplan_time (> 1: rplan faster).
#
# Env: SIZE_MIB (2048), FILL_PCT (25), DIRTY (1), RUNS (3), BENCH_DIR (/tmp),
# KEEP=1, RPLAN_BEFORE.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan
RUNS="${RUNS:-3}"
SIZE_MIB="${SIZE_MIB:-2048}"
FILL_PCT="${FILL_PCT:-25}"
W="$(mktemp -d "${BENCH_DIR:-/tmp}/rplan-bench-capture.XXXXXX")"
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$W"' EXIT

machine_info
rplan_info
echo "filesystem: ext4, ${SIZE_MIB} MiB, ${FILL_PCT} % random files, free space $([[ "${DIRTY:-1}" == 1 ]] && echo 'old random bytes' || echo zeros); runs: $RUNS (median, after 1 warm-up)"

mkdir "$W/files"
fill_mib=$((SIZE_MIB * FILL_PCT / 100))
for ((i = 0; i < fill_mib / 64; i++)); do
    head -c $((64 << 20)) /dev/urandom > "$W/files/f$i.bin"
done
if [[ "${DIRTY:-1}" == 1 ]]; then
    head -c "$((SIZE_MIB << 20))" /dev/urandom > "$W/fs.img"
else
    truncate -s "${SIZE_MIB}M" "$W/fs.img"
fi
mkfs.ext4 -q -F -E nodiscard -d "$W/files" "$W/fs.img"
rm -rf "$W/files"
truncate -s $(((SIZE_MIB + 1) << 20)) "$W/disk.img"
printf 'label: dos\nstart=2048, size=%d, type=83\n' $((SIZE_MIB * 2048)) | sfdisk -q "$W/disk.img"
dd if="$W/fs.img" of="$W/disk.img" bs=4M seek=1M oflag=seek_bytes conv=notrunc,sparse status=none

cap() { rm -rf "$W/store" "$W/plan.yaml"; "${1:-$RPLAN}" capture --disk "disk0=$W/disk.img" -o "$W/plan.yaml" --backup "$W/store" --build sp2-slipstream --language en --edition professional --arch x86; }
pc() { partclone.extfs -c -a0 -q -L /dev/null -s "$W/fs.img" -o - 2>/dev/null | zstd -3 -q -f -o "$W/pc.zst"; }
ddz() { dd if="$W/fs.img" bs=4M status=none | zstd -3 -q -f -o "$W/dd.zst"; }
export -f cap pc ddz
export W RPLAN RPLAN_BEFORE="${RPLAN_BEFORE:-}"

read -r t_cap t_cap_min < <(median_time bash -c cap)
read -r t_pc t_pc_min < <(median_time bash -c pc)
read -r t_dd t_dd_min < <(median_time bash -c ddz)
if [[ -n "${RPLAN_BEFORE:-}" ]]; then
    read -r t_bf t_bf_min < <(median_time bash -c 'cap "$RPLAN_BEFORE"')
    mv "$W/store" "$W/store.before"
fi
/usr/bin/time -f '%M' -o "$W/rss" bash -c cap >/dev/null 2>&1
rss_kib=$(tail -1 "$W/rss")
"$RPLAN" check "$W/plan.yaml" >/dev/null 2>&1 || { echo "captured plan does not check" >&2; exit 1; }

art=$(ls "$W"/store/*.pcl.zst)
if [[ -n "${RPLAN_BEFORE:-}" ]]; then
    cmp "$art" "$W/store.before/$(basename "$art")" || { echo "the artifact differs from RPLAN_BEFORE's" >&2; exit 1; }
fi
s_cap=$(stat -c %s "$art"); s_pc=$(stat -c %s "$W/pc.zst"); s_dd=$(stat -c %s "$W/dd.zst")
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo
echo "| what | time s (median; min) | artifact | time ratio vs rplan |"
echo "|---|---|---|---|"
echo "| rplan capture --backup | $t_cap ($t_cap_min) | $(mib "$s_cap") | 1.00 |"
echo "| partclone.extfs -a0 \| zstd -3 | $t_pc ($t_pc_min) | $(mib "$s_pc") | $(ratio "$t_pc" "$t_cap") |"
echo "| dd \| zstd -3 | $t_dd ($t_dd_min) | $(mib "$s_dd") | $(ratio "$t_dd" "$t_cap") |"
[[ -z "${RPLAN_BEFORE:-}" ]] || echo "| RPLAN_BEFORE capture --backup | $t_bf ($t_bf_min) | $(mib "$s_cap") (cmp: identical) | $(ratio "$t_bf" "$t_cap") |"
echo
echo "artifact size ratio rplan / partclone: $(ratio "$s_cap" "$s_pc"); rplan / dd|zstd: $(ratio "$s_cap" "$s_dd")"
echo "peak RSS of rplan capture (largest process: rplan, partclone, losetup): $((rss_kib / 1024)) MiB"
