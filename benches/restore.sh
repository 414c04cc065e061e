#!/usr/bin/env bash
# Restore throughput benchmark: `rplan apply` vs dd / zstd|dd.
#
# Makes three artifacts of SIZE_MIB MiB (default 1024):
#   rand  random raw
#   half  raw, alternating 4 MiB random / 4 MiB zero blocks (50% zero)
#   zst   `zstd -1 -T0` of `half` (format raw-zstd)
# and for each a tiny plan: one MBR disk (artifact + 64 MiB), one partition at
# 1 MiB with `content: { image: ... }`, stages [ {id: asr, kind: asr} ].
#
# Per repetition (REPS, default 3; medians reported) and artifact, each on a
# fresh sparse target (`truncate -s`), page cache dropped before every timed
# command when possible (DROP_CACHES=1, default; needs root):
#   baseline    dd if=ART of=IMG bs=4M conv=fsync,notrunc oflag=seek_bytes seek=1M
#               (zst: zstd -dc ART | dd ... iflag=fullblock)
#   apply       rplan apply PLAN.yaml --target disk0=IMG --yes --journal DIR
#               (includes the up-front compile that hashes the artifact and
#               the verify step that re-reads the partition); its phases are
#               split by timestamping the `--format json` event stream
#   compile     rplan compile PLAN.yaml -o C.json (hashes the artifact)
#   apply-c     rplan apply C.json ... (re-hashes the artifact: staleness check)
# plus, as a reference for one pass over an artifact, a cold `cat rand.raw`
# and a cold `openssl dgst -sha256 rand.raw` (sha256sum without openssl).
# Peak RSS of every rplan run via /usr/bin/time -v (max reported).
# Ratios are throughput ratios: baseline_time / rplan_time (> 1: rplan faster).
#
# Env: SIZE_MIB (1024), REPS (3), DROP_CACHES (1), BENCH_DIR (parent of the
# work dir; default /tmp), KEEP=1 keeps the work dir.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan

SIZE_MIB="${SIZE_MIB:-1024}"
REPS="${REPS:-3}"
DROP_CACHES="${DROP_CACHES:-1}"
BENCH_DIR="${BENCH_DIR:-/tmp}"
BYTES=$((SIZE_MIB * 1048576))
for tool in zstd dd python3 /usr/bin/time sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y zstd time)" >&2; exit 2; }
done

need_kib=$((SIZE_MIB * 1024 * 4))   # rand + half + zst (<= half) + one target
avail_kib=$(df -Pk "$BENCH_DIR" | awk 'NR==2 {print $4}')
if ((avail_kib < need_kib)); then
    echo "not enough space in $BENCH_DIR: need ~$((need_kib / 1024)) MiB, have $((avail_kib / 1024)) MiB" >&2
    exit 2
fi
W="$(mktemp -d "$BENCH_DIR/rplan-bench-restore.XXXXXX")"
[[ "${KEEP:-0}" == 1 ]] || trap 'rm -rf "$W"' EXIT

drop() {
    sync
    if [[ "$DROP_CACHES" == 1 ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
if [[ "$DROP_CACHES" == 1 ]] && ! (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then
    echo "cannot drop the page cache (not root?): running warm" >&2
    DROP_CACHES=0
fi

machine_info
rplan_info
echo "work dir: $W ($(df -h "$W" | awk 'NR==2 {print $1 ", " $4 " free"}'))"
echo "size: $SIZE_MIB MiB; reps: $REPS (median); page cache dropped before each timed run: $([[ $DROP_CACHES == 1 ]] && echo yes || echo no)"

# ---- artifacts --------------------------------------------------------------
echo "generating artifacts ..." >&2
if command -v openssl >/dev/null; then
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:rplan-bench </dev/zero 2>/dev/null | head -c "$BYTES" >"$W/rand.raw" || true
else
    head -c "$BYTES" /dev/urandom >"$W/rand.raw"
fi
[[ $(stat -c %s "$W/rand.raw") == "$BYTES" ]] || { echo "could not make rand.raw" >&2; exit 2; }
python3 - "$W/rand.raw" "$W/half.raw" <<'EOF'
import sys
B = 4 << 20
zero = bytes(B)
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
    i = 0
    while True:
        chunk = src.read(B)
        if not chunk:
            break
        dst.write(chunk if i % 2 == 0 else zero[: len(chunk)])
        i += 1
EOF
zstd -q -1 -T0 "$W/half.raw" -o "$W/half.raw.zst"
sha_rand=$(sha256sum "$W/rand.raw" | cut -d' ' -f1)
sha_half=$(sha256sum "$W/half.raw" | cut -d' ' -f1)
echo "artifacts: rand.raw $BYTES B, half.raw $BYTES B, half.raw.zst $(stat -c %s "$W/half.raw.zst") B"

write_plan() { # KIND FILE FORMAT SHA
    cat >"$W/plan-$1.yaml" <<EOF
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
    "$RPLAN" check "$W/plan-$1.yaml" --format json >/dev/null || { echo "plan-$1 does not check" >&2; exit 1; }
}
write_plan rand rand.raw raw "$sha_rand"
write_plan half half.raw raw "$sha_half"
write_plan zst half.raw.zst raw-zstd "$sha_half"
declare -A ART=([rand]=rand.raw [half]=half.raw [zst]=half.raw.zst)
declare -A REF=([rand]=rand.raw [half]=half.raw [zst]=half.raw)

fresh_target() { rm -f "$W/t.img"; truncate -s $(((SIZE_MIB + 64) * 1048576)) "$W/t.img"; rm -rf "$W/journal"; }
if command -v openssl >/dev/null; then HASHCMD=(openssl dgst -sha256); else HASHCMD=(sha256sum); fi
R="$W/results.tsv"
: >"$R"
rss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1"; }

run_baseline() { # KIND REP
    fresh_target; drop
    local t0 t1
    t0=$(now_ns)
    if [[ $1 == zst ]]; then
        zstd -dc "$W/${ART[$1]}" | dd of="$W/t.img" bs=4M iflag=fullblock conv=fsync,notrunc oflag=seek_bytes seek=1M status=none
    else
        dd if="$W/${ART[$1]}" of="$W/t.img" bs=4M conv=fsync,notrunc oflag=seek_bytes seek=1M status=none
    fi
    t1=$(now_ns)
    printf '%s\tbaseline\t%s\t%s\t\t\t\t\n' "$1" "$2" "$(awk -v d=$((t1 - t0)) 'BEGIN{printf "%.4f", d/1e9}')" >>"$R"
}

run_read() { # REP OP CMD... : cold read of rand.raw (reference for one pass over an artifact)
    local rep=$1 op=$2; shift 2
    drop
    local t0 t1
    t0=$(now_ns)
    "$@" >/dev/null
    t1=$(now_ns)
    printf 'rand\t%s\t%s\t%s\t\t\t\t\n' "$op" "$rep" "$(awk -v d=$((t1 - t0)) 'BEGIN{printf "%.4f", d/1e9}')" >>"$R"
}

run_apply() { # KIND REP OP PLANFILE [EXTRA FLAGS…]
    local extra=("${@:5}")
    fresh_target; drop
    python3 "$BENCH_ROOT/benches/phase_timer.py" "$W/phases.json" -- \
        /usr/bin/time -v -o "$W/time.txt" "$RPLAN" apply "$4" --target disk0="$W/t.img" \
        --yes --journal "$W/journal" --format json "${extra[@]}" ||
        { echo "rplan apply failed ($1 $3)" >&2; exit 1; }
    python3 - "$W/phases.json" "$1" "$3" "$2" "$(rss "$W/time.txt")" >>"$R" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["steps"]
def span(suffix):
    for k, (a, b) in s.items():
        if k.endswith(suffix) and b is not None:
            return b - a
    return ""
restore, verify = span("/restore"), span("/verify")
first = d["first_event"] or 0
rest = d["total"] - first - (restore or 0) - (verify or 0)
print("\t".join(map(str, [sys.argv[2], sys.argv[3], sys.argv[4], "%.4f" % d["total"],
                          "%.4f" % first, restore and "%.4f" % restore, verify and "%.4f" % verify, sys.argv[5],
                          "%.4f" % rest])))
EOF
    if [[ $2 == 1 ]]; then # correctness, untimed, once per op
        cmp -s -i 1048576:0 -n "$BYTES" "$W/t.img" "$W/${REF[$1]}" || { echo "restored bytes differ ($1 $3)" >&2; exit 1; }
    fi
}

run_compile() { # KIND REP
    drop
    local t0 t1
    t0=$(now_ns)
    /usr/bin/time -v -o "$W/time.txt" "$RPLAN" compile "$W/plan-$1.yaml" -o "$W/compiled-$1.json" 2>/dev/null ||
        { echo "rplan compile failed ($1)" >&2; exit 1; }
    t1=$(now_ns)
    printf '%s\tcompile\t%s\t%s\t\t\t\t%s\n' "$1" "$2" "$(awk -v d=$((t1 - t0)) 'BEGIN{printf "%.4f", d/1e9}')" "$(rss "$W/time.txt")" >>"$R"
}

for ((rep = 1; rep <= REPS; rep++)); do
    run_read "$rep" read-cat cat "$W/rand.raw"
    run_read "$rep" read-sha256 "${HASHCMD[@]}" "$W/rand.raw"
    for k in rand half zst; do
        echo "rep $rep/$REPS: $k" >&2
        run_baseline "$k" "$rep"
        run_apply "$k" "$rep" apply "$W/plan-$k.yaml"
        run_compile "$k" "$rep"
        run_apply "$k" "$rep" apply-c "$W/compiled-$k.json"
        # Streaming verification only: no pre-read of the artifact.
        run_apply "$k" "$rep" apply-s "$W/compiled-$k.json" --no-artifacts
    done
done

echo
python3 - "$R" "$BYTES" "${HASHCMD[*]}" <<'EOF'
import statistics, sys
rows = [(l.rstrip("\n").split("\t") + [""] * 9)[:9] for l in open(sys.argv[1]) if l.strip()]
size = int(sys.argv[2])
def med(kind, op, col):
    v = [float(r[col]) for r in rows if r[0] == kind and r[1] == op and r[col] != ""]
    return statistics.median(v) if v else None
mbs = lambda t: size / 1048576 / t
rc, rh = med("rand", "read-cat", 3), med("rand", "read-sha256", 3)
print("reference, one cold pass over rand.raw: cat %.3f s (%.0f MiB/s), %s %.3f s (%.0f MiB/s)"
      % (rc, mbs(rc), sys.argv[3], rh, mbs(rh)))
print()
names = {"rand": "random raw", "half": "50%-zero raw", "zst": "zstd of 50%-zero"}
base_name = {"rand": "dd", "half": "dd", "zst": "zstd -dc | dd"}
target = {"rand": 0.9, "half": 1.5, "zst": 0.9}
print("medians of %d runs; seconds (MiB/s); ratio = baseline_time / rplan_time" % max(int(r[2]) for r in rows))
peak = 0
for r in rows:
    if r[7]:
        peak = max(peak, int(r[7]))
for k in ("rand", "half", "zst"):
    b = med(k, "baseline", 3)
    a, pre, rs, vf, rest = (med(k, "apply", c) for c in (3, 4, 5, 6, 8))
    c = med(k, "compile", 3)
    ac, acpre, acrs, acvf = (med(k, "apply-c", c) for c in (3, 4, 5, 6))
    print("%s (%s)" % (names[k], k))
    print("  baseline %-14s %8.3f s (%6.0f MiB/s)" % (base_name[k], b, mbs(b)))
    print("  rplan apply PLAN.yaml    %8.3f s (%6.0f MiB/s)  ratio %.2f  [target >= %.1f: %s]"
          % (a, mbs(a), b / a, target[k], "met" if b / a >= target[k] else "MISSED"))
    print("    phases: before 1st event (load+analysis+artifact hash) %.3f s, restore step %.3f s, verify step %.3f s, other %.3f s"
          % (pre, rs, vf, rest))
    print("    restore step alone vs baseline: ratio %.2f" % (b / rs))
    print("  rplan compile (hash)     %8.3f s" % c)
    print("  rplan apply COMPILED     %8.3f s (%6.0f MiB/s)  ratio %.2f   (before 1st event %.3f s, restore %.3f s, verify %.3f s)"
          % (ac, mbs(ac), b / ac, acpre, acrs, acvf))
    print("  compile + apply COMPILED %8.3f s  ratio %.2f" % (c + ac, b / (c + ac)))
    sa, srs = med(k, "apply-s", 3), med(k, "apply-s", 5)
    print("  apply COMPILED --no-artifacts (sha256 verified while streaming, no pre-read)")
    print("                           %8.3f s (%6.0f MiB/s)  ratio %.2f  [target >= %.1f: %s]   (restore step %.3f s)"
          % (sa, mbs(sa), b / sa, target[k], "met" if b / sa >= target[k] else "MISSED", srs))
    print()
kib = [int(r[7]) for r in rows if r[7]]
print("peak RSS of rplan (max over all runs): %.1f MiB  [target <= 64 MiB: %s]"
      % (peak / 1024, "met" if peak <= 64 * 1024 else "MISSED"))
for op in ("apply", "compile", "apply-c", "apply-s"):
    v = [int(r[7]) for r in rows if r[1] == op and r[7]]
    if v:
        print("  %-8s max %.1f MiB, median %.1f MiB" % (op, max(v) / 1024, statistics.median(v) / 1024))
EOF
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
