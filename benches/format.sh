#!/usr/bin/env bash
# Format cost vs partition size (issue 13): `rplan apply` making NTFS + ext4
# on a sparse 20 GiB target and on a 10x larger (200 GiB) one, and
# `rplan dry-run` of the same plan on a 100 GiB target. The format's cost
# should follow what mkfs writes, not the partition size: target ratio
# 200 GiB / 20 GiB <= 1.5. Page cache warm, and cold (`sync; echo 3 >
# /proc/sys/vm/drop_caches` before each run: needs root; mkfs.* and rplan
# itself then start from disk). Peak RSS via /usr/bin/time.
# Env: REPS (3), CACHES ("warm cold"), BENCH_DIR (/tmp).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan
REPS="${REPS:-3}"
W="$(mktemp -d "${BENCH_DIR:-/tmp}/rplan-bench-format.XXXXXX")"
trap 'rm -rf "$W"' EXIT
machine_info
rplan_info
plan() { # NAME DISK SYS DATA
    cat >"$W/$1.yaml" <<YAML
version: 1
name: $1
system: { os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }
media: { build: sp2-slipstream }
disks:
  - id: d0
    critical: true
    table: mbr
    signature: "0x0be4c400"
    size: $2
    partitions:
      - { id: sys, start: 1MiB, size: $3, type: ntfs, bootable: true, content: { format: { fs: ntfs, label: SYS } } }
      - { id: data, size: $4, type: ext4, content: { format: { fs: ext4, label: data } } }
stages: [ { id: asr, kind: asr } ]
YAML
}
plan f20 20GiB 10GiB 9GiB
plan f200 200GiB 100GiB 90GiB
plan f100 100GiB 50GiB 49GiB
run() { # CACHE KIND NAME SIZE
    local cache=$1
    shift
    rm -rf "$W/t.img" "$W/j"
    truncate -s "$3" "$W/t.img"
    sync
    [[ $cache == cold ]] && echo 3 >/proc/sys/vm/drop_caches
    local t0 t1
    t0=$(now_ns)
    /usr/bin/time -f %M -o "$W/rss" "$RPLAN" "$1" "$W/$2.yaml" --target d0="$W/t.img" \
        $([[ $1 == apply ]] && echo "--yes --journal $W/j") >/dev/null 2>"$W/err" ||
        { echo "rplan $1 $2 failed:" >&2; cat "$W/err" >&2; exit 1; }
    t1=$(now_ns)
    echo "$cache-$1 $2 $(awk -v d=$((t1 - t0)) 'BEGIN{printf "%.3f", d/1e9}') $(cat "$W/rss")"
}
for ((i = 0; i < REPS; i++)); do
    for cache in ${CACHES:-warm cold}; do
        run "$cache" apply f20 20G
        run "$cache" apply f200 200G
        run "$cache" dry-run f100 100G
    done
done | tee "$W/res"
python3 - "$W/res" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = lambda k, n: statistics.median(float(r[2]) for r in rows if r[0] == k and r[1] == n)
for cache in sorted({r[0].split("-")[0] for r in rows}, reverse=True):
    a20, a200 = med(cache + "-apply", "f20"), med(cache + "-apply", "f200")
    d100 = med(cache + "-dry-run", "f100")
    print(f"{cache} cache (medians)")
    print(f"  apply NTFS+ext4, 20 GiB sparse target:  {a20:.3f} s  [target <= 3 s]")
    print(f"  apply NTFS+ext4, 200 GiB sparse target: {a200:.3f} s  ratio 200/20 = {a200 / a20:.2f}  [target <= 1.5]")
    print(f"  dry-run, 100 GiB sparse target:         {d100:.3f} s  [target <= 5 s]")
rss = max(int(r[3]) for r in rows) / 1024
print(f"peak RSS: {rss:.1f} MiB  [target <= 64 MiB]")
PY
