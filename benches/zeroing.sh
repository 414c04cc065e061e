#!/usr/bin/env bash
# Zeroing on a disk without write-zeroes offload (BLKZEROOUT's slow case).
#
# Two block devices of (SIZE_MIB + 64) MiB, both loop devices with direct
# I/O, so that writes reach a filesystem as they are:
#   offload  over a sparse file on BENCH_DIR's filesystem (ext4 here): the
#            loop device zeroes with fallocate, nothing is written
#   slow     over a file on an ext2 filesystem (mounted from an image in the
#            work dir), which cannot fallocate: the loop device refuses
#            write-zeroes and the kernel writes every zero page, as on a
#            disk without offload
# Per repetition (REPS, default 4; medians), on each device:
#   zeroout   blkdiscard -z of SIZE_MIB MiB (the BLKZEROOUT rplan issues)
#   ddzero    dd if=/dev/zero bs=4M oflag=direct of the same range (slow only:
#             the disk's write speed for zeros, the floor for the slow case)
#   format    rplan apply of a plan that makes NTFS on a SIZE_MIB partition
#   restore   rplan apply restoring a SIZE_MIB random raw image (compiled
#             plan, --no-artifacts); RPLAN_BEFORE=OLD_BINARY adds the same
#             run of an older binary
# with the bytes the kernel counted as written to the device
# (/sys/block/loopN/stat) and the dry-run's estimate of each plan.
#
# Env: SIZE_MIB (1024), REPS (4), BENCH_DIR (/tmp), RPLAN, RPLAN_BEFORE.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan

SIZE_MIB="${SIZE_MIB:-1024}"
REPS="${REPS:-4}"
BENCH_DIR="${BENCH_DIR:-/tmp}"
BYTES=$((SIZE_MIB * 1048576))
DISK=$(((SIZE_MIB + 64) * 1048576))
[[ $(id -u) == 0 ]] || { echo "needs root (loop devices, mount)" >&2; exit 2; }
W="$(mktemp -d "$BENCH_DIR/rplan-bench-zeroing.XXXXXX")"
LOOPS=()
cleanup() {
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    for _ in 1 2 3 4 5; do umount "$W/mnt" 2>/dev/null && break; sleep 0.2; done
    [[ "${KEEP:-0}" == 1 ]] || rm -rf "$W"
}
trap cleanup EXIT

machine_info
rplan_info
echo "size: $SIZE_MIB MiB; reps: $REPS (medians); work dir: $W"

truncate -s "$DISK" "$W/offload.img"
truncate -s $((DISK + 128 * 1048576)) "$W/ext2.img"
mke2fs -q -t ext2 -F "$W/ext2.img"
mkdir "$W/mnt"
mount -o loop "$W/ext2.img" "$W/mnt"
truncate -s "$DISK" "$W/mnt/slow.img"
declare -A DEV
DEV[offload]=$(losetup -f --show --direct-io=on "$W/offload.img"); LOOPS+=("${DEV[offload]}")
DEV[slow]=$(losetup -f --show --direct-io=on "$W/mnt/slow.img"); LOOPS+=("${DEV[slow]}")
# A loop device learns at its first refused write-zeroes that its file
# cannot zero; a real disk without offload says so from the start.
blkdiscard -z -o 0 -l 4096 "${DEV[slow]}"
for k in offload slow; do
    echo "$k: ${DEV[$k]}, write_zeroes_max_bytes $(cat /sys/block/$(basename "${DEV[$k]}")/queue/write_zeroes_max_bytes)"
done

random_file "$W/rand.raw" "$BYTES"
plan() { # NAME CONTENT ARTIFACTS
    cat >"$W/$1.yaml" <<EOF
version: 1
name: bench-zeroing-$1
system: { os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }
media: { build: sp2-slipstream }
$3
disks:
  - id: disk0
    critical: true
    table: mbr
    signature: "0x0be4c400"
    size: $((SIZE_MIB + 64))MiB
    partitions:
      - { id: p1, start: 1MiB, size: ${SIZE_MIB}MiB, type: ntfs, bootable: true, content: $2 }
stages: [ { id: asr, kind: asr } ]
EOF
    "$RPLAN" compile "$W/$1.yaml" -o "$W/$1.json" 2>/dev/null
}
plan format "{ format: { fs: ntfs, label: SYS } }" ""
plan restore "{ image: img }" "backup: { id: b, root: ., artifacts: [ { id: img, path: rand.raw, format: raw, size: $BYTES, sha256: $(sha256sum "$W/rand.raw" | cut -d' ' -f1) } ] }"

written() { awk '{printf "%.0f\n", $7 * 512}' "/sys/block/$(basename "$1")/stat"; }
R="$W/results.tsv"
: >"$R"
run() { # DEVICE NAME CMD...
    local dev=${DEV[$1]} w0 w1 t0 t1
    # Every run starts from a disk of zeros (not timed).
    blkdiscard -f -z "$dev" 2>/dev/null
    sync
    echo 3 >/proc/sys/vm/drop_caches
    cat "$W/rand.raw" >/dev/null
    rm -rf "$W/j"
    w0=$(written "$dev")
    t0=$(now_ns)
    "${@:3}" >/dev/null 2>"$W/err" || { echo "$2 on $1 failed:" >&2; cat "$W/err" >&2; exit 1; }
    t1=$(now_ns)
    w1=$(written "$dev")
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$((t1 - t0))" "$((w1 - w0))" >>"$R"
}
apply() { # BINARY DEVICE PLAN [FLAGS]
    "$1" apply "$W/$3" --target disk0="${DEV[$2]}" --yes --force --journal "$W/j" -q "${@:4}"
}
for ((rep = 1; rep <= REPS; rep++)); do
    echo "rep $rep/$REPS" >&2
    for k in offload slow; do
        run "$k" zeroout blkdiscard -z -o 1048576 -l "$BYTES" "${DEV[$k]}"
        [[ $k == slow ]] && run "$k" ddzero dd if=/dev/zero of="${DEV[$k]}" bs=4M count=$((SIZE_MIB / 4)) \
            seek=1M oflag=direct,seek_bytes status=none
        run "$k" format apply "$RPLAN" "$k" format.json
        # Which binary goes first alternates: a run right after another's
        # on the same loop device was seen to go 3x faster or slower.
        if ((rep % 2)) || [[ -z "${RPLAN_BEFORE:-}" ]]; then
            run "$k" restore apply "$RPLAN" "$k" restore.json --no-artifacts
        fi
        if [[ -n "${RPLAN_BEFORE:-}" ]]; then
            run "$k" restore-before apply "$RPLAN_BEFORE" "$k" restore.json --no-artifacts
            ((rep % 2)) || run "$k" restore apply "$RPLAN" "$k" restore.json --no-artifacts
        fi
    done
done
for k in offload slow; do
    for p in format restore; do
        est=$("$RPLAN" dry-run "$W/$p.json" --target disk0="${DEV[$k]}" --force --format json 2>/dev/null |
            tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin)["dry_run"]; print(d["rto_estimate_s"])')
        printf '%s\testimate-%s\t%s\t\n' "$k" "$p" "$est" >>"$R"
    done
done

echo
python3 - "$R" "$BYTES" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
size = int(sys.argv[2])
def med(dev, name, col=2):
    v = [int(r[col]) for r in rows if r[0] == dev and r[1] == name and r[col] != ""]
    return statistics.median(v) if v else None
print("medians; written = bytes the kernel counted on the device, as a multiple of the range")
for dev in ("offload", "slow"):
    print("\n%s" % dev)
    base = med(dev, "zeroout")
    for name in ("zeroout", "ddzero", "format", "restore", "restore-before"):
        t = med(dev, name)
        if t is None:
            continue
        print("  %-15s %7.3f s  written %5.2f×  time / offload's zeroout: %s"
              % (name, t / 1e9, med(dev, name, 3) / size,
                 "%.1f" % (t / med("offload", "zeroout")) if med("offload", "zeroout") else "-"))
    print("  dry-run RTO estimate: format %s s, restore %s s"
          % (med(dev, "estimate-format"), med(dev, "estimate-restore")))
s, o = med("slow", "zeroout"), med("offload", "zeroout")
print("\nBLKZEROOUT of %d MiB: slow case %.3f s vs offloaded %.3f s (ratio %.0f); vs dd of zeros on the slow disk: ratio %.2f"
      % (size >> 20, s / 1e9, o / 1e9, s / o, s / med("slow", "ddzero")))
EOF
