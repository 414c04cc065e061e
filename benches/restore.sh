#!/usr/bin/env bash
# Restore time against dd: the issue-13 targets, page cache warm and cold.
#
# Artifacts (SIZE_MIB MiB each, default 1024):
#   rand       random raw (AES-CTR stream)
#   half.zst   `zstd -1 -T0` of an image alternating 4 MiB random / 4 MiB zero
# Each has a one-partition MBR plan (artifact + 64 MiB disk, partition at
# 1 MiB), compiled once (`rplan compile`, untimed).
#
# Per repetition (REPS, default 7; medians and minima reported), for CACHE in warm and
# cold, every command on a fresh sparse target (`truncate -s`), interleaved,
# the order rotated by one command each repetition:
#   dd        dd if=rand.raw of=T bs=4M conv=fsync,notrunc oflag=seek_bytes seek=1M
#   noart     rplan apply rand.json --no-artifacts   (sha256 checked while streaming)
#   pre       rplan apply rand.json                  (backup pre-verified first: the default)
#   yaml      rplan apply rand.yaml                  (the same, from the plan itself)
#   zdd       zstd -dc half.raw.zst | dd of=T bs=4M iflag=fullblock conv=fsync,...
#   znoart    rplan apply half.json --no-artifacts
#   zpre      rplan apply half.json
# warm: the artifact read once before (in the page cache), `sync` before each
# command; cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before each.
# Ratios are time ratios rplan / baseline (< 1: rplan faster), as the issue
# states its targets. Peak RSS of every rplan run from /usr/bin/time.
#
# Env: SIZE_MIB (1024), REPS (7), BENCH_DIR (parent of the work dir; /tmp),
# KEEP=1 keeps the work dir, RPLAN (default target/release/rplan).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan

SIZE_MIB="${SIZE_MIB:-1024}"
REPS="${REPS:-7}"
BENCH_DIR="${BENCH_DIR:-/tmp}"
BYTES=$((SIZE_MIB * 1048576))
for tool in zstd dd python3 /usr/bin/time openssl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y zstd time openssl)" >&2; exit 2; }
done
if ! (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    echo "cannot drop the page cache (needs root): the cold figures need it" >&2
    exit 2
fi
need_kib=$((SIZE_MIB * 1024 * 4))
avail_kib=$(df -Pk "$BENCH_DIR" | awk 'NR==2 {print $4}')
if ((avail_kib < need_kib)); then
    echo "not enough space in $BENCH_DIR: need ~$((need_kib / 1024)) MiB" >&2
    exit 2
fi
W="$(mktemp -d "$BENCH_DIR/rplan-bench-restore.XXXXXX")"
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$W"' EXIT

machine_info
rplan_info
echo "size: $SIZE_MIB MiB; reps: $REPS (medians); work dir: $W"

echo "generating artifacts ..." >&2
random_file "$W/rand.raw" "$BYTES"
python3 - "$W/rand.raw" "$W/half.raw" <<'EOF'
import sys
B = 4 << 20
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
    i = 0
    while chunk := src.read(B):
        dst.write(chunk if i % 2 == 0 else bytes(len(chunk)))
        i += 1
EOF
zstd -q -1 -T0 -f "$W/half.raw" -o "$W/half.raw.zst"

write_plan() { # NAME FILE FORMAT SHA
    cat >"$W/$1.yaml" <<EOF
version: 1
name: bench-restore-$1
system: { os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }
media: { build: sp2-slipstream }
backup:
  id: bench-$1
  root: .
  artifacts:
    - { id: img, path: $2, format: $3, size: $BYTES, sha256: $4 }
disks:
  - id: disk0
    critical: true
    table: mbr
    signature: "0x0be4c400"
    size: $((SIZE_MIB + 64))MiB
    partitions:
      - { id: p1, start: 1MiB, size: ${SIZE_MIB}MiB, type: ntfs, bootable: true, content: { image: img } }
stages: [ { id: asr, kind: asr } ]
EOF
    "$RPLAN" compile "$W/$1.yaml" -o "$W/$1.json" 2>/dev/null || { echo "$1.yaml does not compile" >&2; exit 1; }
}
write_plan rand rand.raw raw "$(sha256sum "$W/rand.raw" | cut -d' ' -f1)"
write_plan half half.raw.zst raw-zstd "$(sha256sum "$W/half.raw" | cut -d' ' -f1)"
rm -f "$W/half.raw"

T="$W/t.img"
R="$W/results.tsv"
: >"$R"
fresh() { rm -f "$T"; truncate -s $(((SIZE_MIB + 64) * 1048576)) "$T"; rm -rf "$W/j"; }
prepare() { # CACHE ARTIFACT
    sync
    if [[ $1 == cold ]]; then
        echo 3 >/proc/sys/vm/drop_caches
    else
        cat "$W/$2" >/dev/null
    fi
}
apply() { # PLAN [FLAGS...]
    /usr/bin/time -f %M -o "$W/rss" "$RPLAN" apply "$W/$1" --target disk0="$T" --yes \
        --journal "$W/j" -q "${@:2}" >/dev/null 2>"$W/err" ||
        { echo "rplan apply $* failed:" >&2; cat "$W/err" >&2; exit 1; }
}
run() { # CACHE REP NAME ARTIFACT CMD...
    fresh
    prepare "$1" "$4"
    local t0 t1 rss=""
    t0=$(now_ns)
    "${@:5}"
    t1=$(now_ns)
    [[ $5 == apply ]] && rss=$(cat "$W/rss")
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$((t1 - t0))" "$rss" >>"$R"
    if [[ $2 == 1 && $1 == warm ]]; then # correctness, untimed
        local ref="$W/rand.raw"
        [[ $4 == half.raw.zst ]] && { zstd -dcq "$W/half.raw.zst" >"$W/ref.raw"; ref="$W/ref.raw"; }
        cmp -s -i 1048576:0 -n "$BYTES" "$T" "$ref" || { echo "restored bytes differ ($3)" >&2; exit 1; }
        rm -f "$W/ref.raw"
    fi
}
dd_raw() { dd if="$W/rand.raw" of="$T" bs=4M conv=fsync,notrunc oflag=seek_bytes seek=1M status=none; }
dd_zst() {
    zstd -dcq "$W/half.raw.zst" |
        dd of="$T" bs=4M iflag=fullblock conv=fsync,notrunc oflag=seek_bytes seek=1M status=none
}

CMDS=(
    "dd rand.raw dd_raw"
    "noart rand.raw apply rand.json --no-artifacts"
    "pre rand.raw apply rand.json"
    "yaml rand.raw apply rand.yaml"
    "zdd half.raw.zst dd_zst"
    "znoart half.raw.zst apply half.json --no-artifacts"
    "zpre half.raw.zst apply half.json"
)
for ((rep = 1; rep <= REPS; rep++)); do
    for cache in warm cold; do
        echo "rep $rep/$REPS, $cache" >&2
        # Each repetition starts one command later: what ran just before a
        # command (and left the disk and the page cache busy) rotates too.
        for ((i = 0; i < ${#CMDS[@]}; i++)); do
            # shellcheck disable=SC2086 # words on purpose
            run "$cache" "$rep" ${CMDS[(i + rep - 1) % ${#CMDS[@]}]}
        done
    done
done

echo
python3 - "$R" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
def med(cache, name):
    return statistics.median(int(r[3]) for r in rows if r[0] == cache and r[2] == name) / 1e9
def low(cache, name):
    return min(int(r[3]) for r in rows if r[0] == cache and r[2] == name) / 1e9
def runs(cache, name):
    return " ".join("%.2f" % (int(r[3]) / 1e9) for r in rows if r[0] == cache and r[2] == name)
lines = [
    ("noart", "dd", "apply --no-artifacts vs dd conv=fsync", {"warm": 1.15, "cold": 1.0}),
    ("pre", "dd", "apply (pre-verified) vs dd", {"warm": 1.7, "cold": 2.0}),
    ("yaml", "dd", "apply PLAN.yaml (pre-verified) vs dd", {}),
    ("znoart", "zdd", "raw-zstd apply --no-artifacts vs zstd -dc | dd", {"warm": 1.1, "cold": 1.1}),
    ("zpre", "zdd", "raw-zstd apply (pre-verified) vs zstd -dc | dd", {}),
]
print("time ratio rplan / baseline of the medians (of the minima: the runs least disturbed"
      " by the machine's other load), seconds of each run in brackets")
for cache in ("warm", "cold"):
    print("\n%s cache" % cache)
    for base in ("dd", "zdd"):
        print("  %-6s %6.3f s  [%s]" % (base, med(cache, base), runs(cache, base)))
    for name, base, what, target in lines:
        r = med(cache, name) / med(cache, base)
        rl = low(cache, name) / low(cache, base)
        verdict = ""
        if cache in target:
            verdict = "  target <= %.2f: %s" % (target[cache], "met" if r <= target[cache] else "MISSED")
        print("  %-6s %6.3f s  ratio %.2f (%.2f)  %s%s  [%s]"
              % (name, med(cache, name), r, rl, what, verdict, runs(cache, name)))
rss = [int(r[4]) for r in rows if r[4]]
print("\npeak RSS of rplan over all runs: %.1f MiB  target <= 64 MiB: %s"
      % (max(rss) / 1024, "met" if max(rss) <= 64 * 1024 else "MISSED"))
EOF
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
