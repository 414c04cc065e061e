# Shared helpers for the benchmark scripts (source it; not executable on its own).
# Timing is wall-clock; figures are meant to be compared as ratios against a
# baseline measured in the same run, since the machine may be shared.

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RPLAN="${RPLAN:-$BENCH_ROOT/target/release/rplan}"
RUNS="${RUNS:-5}"

ensure_rplan() {
    if [[ ! -x "$RPLAN" ]]; then
        echo "building release binary ..." >&2
        (cd "$BENCH_ROOT" && cargo build --release >&2) || exit 2
    fi
}

now_ns() { date +%s%N; }

# median_time CMD... : run CMD $RUNS times (after one warm-up), print
# "MEDIAN MIN" wall time in seconds (the minimum is the figure least
# disturbed by other load on a shared machine). Uses hyperfine (-N: no intermediate shell)
# when installed, otherwise a bash loop with `date +%s%N`. CMD's stdout and
# stderr are discarded; a failing run aborts the script.
median_time() {
    if command -v hyperfine >/dev/null 2>&1; then
        local j
        j="$(mktemp)"
        hyperfine -N --style none --warmup 1 --runs "$RUNS" --export-json "$j" \
            -- "$(printf '%q ' "$@")" >/dev/null 2>&1 || { echo "failed: $*" >&2; rm -f "$j"; exit 1; }
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.6f %.6f" % (r["median"], r["min"]))' "$j"
        rm -f "$j"
    else
        "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
        local i t0 t1 ts=()
        for ((i = 0; i < RUNS; i++)); do
            t0=$(now_ns)
            "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }
            t1=$(now_ns)
            ts+=("$((t1 - t0))")
        done
        printf '%s\n' "${ts[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.6f %.6f\n", a[int((NR+1)/2)]/1e9, a[1]/1e9}'
    fi
}

# ratio A B : A / B with 2 decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# check_clean PLAN : rplan check --no-artifacts must report 0 errors
check_clean() {
    local out
    out="$("$RPLAN" check --no-artifacts --format json "$1")" || { echo "rplan check failed on $1" >&2; exit 1; }
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(1 if d["errors"] else 0)' "$out" \
        || { echo "$1 has errors" >&2; exit 1; }
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%d errors, %d warnings" % (d["errors"], d["warnings"]))' "$out"
}

machine_info() {
    echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
}

rplan_info() {
    local head dirty
    head=$(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
    dirty=$(git -C "$BENCH_ROOT" status --porcelain --untracked-files=no 2>/dev/null | wc -l)
    echo "rplan: $RPLAN (built $(date -u -r "$RPLAN" +%Y-%m-%dT%H:%MZ); tree at $head, $dirty modified tracked files)"
}

# random_file PATH BYTES : BYTES of incompressible data (an AES-CTR stream:
# much faster than /dev/urandom), the same bytes on every run.
random_file() {
    openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:rplan-bench </dev/zero 2>/dev/null |
        head -c "$2" >"$1" || true
    [[ $(stat -c %s "$1") == "$2" ]] || { echo "could not make $1" >&2; exit 2; }
}
