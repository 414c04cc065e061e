#!/usr/bin/env bash
# Parallel restore (issue 13): two disks, each restoring its own SIZE_MIB
# MiB random raw artifact (default 512), with the default `--jobs` (one per
# target: both disks at once) against `--jobs 1` (one after the other).
# The plan is compiled once; every timed run is
#   rplan apply c.json --target d0=A --target d1=B --yes --journal J --no-artifacts [--jobs 1]
# on fresh sparse targets, page cache warm (the artifacts read just before)
# and cold (`sync; echo 3 > /proc/sys/vm/drop_caches` before each run: needs
# root). Target: default <= 0.65x the time of --jobs 1. Peak RSS of every
# run from /usr/bin/time.
# Env: SIZE_MIB (512), REPS (3; medians), CACHES ("warm cold"), BENCH_DIR (/tmp).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan
SIZE_MIB="${SIZE_MIB:-512}"
REPS="${REPS:-3}"
W="$(mktemp -d "${BENCH_DIR:-/tmp}/rplan-bench-parallel.XXXXXX")"
trap 'rm -rf "$W"' EXIT
machine_info
rplan_info
BYTES=$((SIZE_MIB * 1048576))
arts=""
for a in a0 a1; do
    head -c "$BYTES" /dev/urandom >"$W/$a.raw"
    arts+="    - { id: $a, path: $a.raw, format: raw, size: $BYTES, sha256: $(sha256sum "$W/$a.raw" | cut -c1-64) }
"
done
cat >"$W/p.yaml" <<YAML
version: 1
name: bench-parallel
system: { os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }
media: { build: sp2-slipstream }
backup:
  id: b
  root: .
  artifacts:
$arts
disks:
  - id: d0
    critical: true
    table: mbr
    signature: "0x13b0be00"
    size: $((SIZE_MIB + 64))MiB
    partitions:
      - { id: sys, start: 1MiB, size: rest, type: ntfs, bootable: true, content: { image: a0 } }
  - id: d1
    table: mbr
    signature: "0x13b0be01"
    size: $((SIZE_MIB + 64))MiB
    partitions:
      - { id: data, start: 1MiB, size: rest, type: ntfs, content: { image: a1 } }
stages:
  - { id: asr, kind: asr }
YAML
(cd "$W" && "$RPLAN" compile p.yaml -o c.json >/dev/null 2>&1)
run() { # CACHE JOBS-ARGS...
    rm -rf "$W/j" "$W/d0.img" "$W/d1.img"
    truncate -s $(((SIZE_MIB + 64) * 1048576)) "$W/d0.img" "$W/d1.img"
    sync
    if [[ $1 == cold ]]; then
        echo 3 >/proc/sys/vm/drop_caches
    else
        cat "$W/a0.raw" "$W/a1.raw" >/dev/null
    fi
    local t0 t1
    t0=$(now_ns)
    (cd "$W" && /usr/bin/time -f %M -o rss "$RPLAN" apply c.json --target d0=d0.img --target d1=d1.img --yes \
        --journal j --no-artifacts "${@:2}" >/dev/null 2>&1) || { echo "apply failed" >&2; exit 1; }
    t1=$(now_ns)
    echo "$(((t1 - t0) / 1000000))"
    cat "$W/rss" >>"$W/rss.all"
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for cache in ${CACHES:-warm cold}; do
    par=() seq=()
    for ((r = 0; r < REPS; r++)); do
        seq+=("$(run "$cache" --jobs 1)")
        par+=("$(run "$cache")")
    done
    ms=$(med "${seq[@]}")
    mp=$(med "${par[@]}")
    echo "$cache cache"
    echo "  --jobs 1 (ms): ${seq[*]}  median $ms"
    echo "  default  (ms): ${par[*]}  median $mp"
    echo "  ratio default / --jobs 1: $(ratio "$mp" "$ms") (target <= 0.65)"
done
echo "peak RSS of rplan: $(sort -n "$W/rss.all" | tail -1) KiB"
