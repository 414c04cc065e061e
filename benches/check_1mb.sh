#!/usr/bin/env bash
# `rplan check` on a ~1 MB plan (target: well under a second, release build).
#
# Generates a plan of at least $BYTES bytes (default 1000000) with
# gen_plan.py (80 GPT partitions per disk, mirrored volumes, stages), then
# times `rplan check --no-artifacts PLAN`, median of $RUNS (default 5) after
# one warm-up. Baselines in the same run, on the same file:
#   * PyYAML: python3 -c 'import yaml,sys; yaml.safe_load(sys.stdin)' < PLAN
#     (parsing only; pure-Python SafeLoader), if PyYAML is importable, and
#     the same with Loader=yaml.CSafeLoader (libyaml) when PyYAML has it;
#   * wc -c < PLAN (reading the bytes; a floor, mostly process start-up).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan

BYTES="${BYTES:-1000000}"
W="$(mktemp -d /tmp/rplan-bench-1mb.XXXXXX)"
trap 'rm -rf "$W"' EXIT
plan="$W/plan-1mb.yaml"
python3 "$BENCH_ROOT/benches/gen_plan.py" --target-bytes "$BYTES" -o "$plan" 2>"$W/gen.txt"
size=$(stat -c %s "$plan")

machine_info
rplan_info
echo "runs: $RUNS (median, after 1 warm-up); timer: $(command -v hyperfine >/dev/null && echo hyperfine || echo 'bash date +%s%N')"
echo "plan: $(sed 's/.*: //' "$W/gen.txt")"
echo "rplan check: $(check_clean "$plan")"

read -r t_check t_check_min < <(median_time "$RPLAN" check --no-artifacts "$plan")
[[ -n "${t_check:-}" ]] || { echo "timing rplan check failed" >&2; exit 1; }
read -r t_wc _ < <(median_time sh -c 'wc -c < "$1"' sh "$plan")
if python3 -c 'import yaml' 2>/dev/null; then
    read -r t_py _ < <(median_time sh -c 'python3 -c "import yaml,sys; yaml.safe_load(sys.stdin)" < "$1"' sh "$plan")
    if python3 -c 'import yaml; assert yaml.__with_libyaml__' 2>/dev/null; then
        read -r t_pyc _ < <(median_time sh -c 'python3 -c "import yaml,sys; yaml.load(sys.stdin, Loader=yaml.CSafeLoader)" < "$1"' sh "$plan")
    else
        t_pyc=""
    fi
else
    t_py=""; t_pyc=""
fi

echo
printf '%-44s %10s %12s\n' "" seconds "MB/s"
mbs() { awk -v b="$size" -v t="$1" 'BEGIN{ printf "%.2f", b/1e6/t }'; }
printf '%-44s %10.4f %12s\n' "rplan check --no-artifacts ($size bytes)" "$t_check" "$(mbs "$t_check")"
printf '%-44s %10.4f %12s\n' "  (fastest of the $RUNS runs)" "$t_check_min" "$(mbs "$t_check_min")"
[[ -n "$t_py" ]] && printf '%-44s %10.4f %12s\n' "baseline: PyYAML safe_load (parse only)" "$t_py" "$(mbs "$t_py")"
[[ -n "$t_pyc" ]] && printf '%-44s %10.4f %12s\n' "baseline: PyYAML CSafeLoader (libyaml)" "$t_pyc" "$(mbs "$t_pyc")"
printf '%-44s %10.4f %12s\n' "baseline: wc -c" "$t_wc" "$(mbs "$t_wc")"
echo
[[ -n "$t_py" ]] && echo "ratio rplan-check / PyYAML-parse: $(ratio "$t_check" "$t_py")  (< 1: rplan's full check is faster than PyYAML only parsing)"
[[ -n "$t_pyc" ]] && echo "ratio rplan-check / PyYAML-libyaml: $(ratio "$t_check" "$t_pyc")"
echo "ratio rplan-check / wc -c:        $(ratio "$t_check" "$t_wc")"
echo "share of the 1 s budget used:     $(ratio "$t_check" 1)"
if awk -v t="$t_check" 'BEGIN{exit !(t < 1)}'; then
    echo "target (< 1 s): met"
else
    echo "target (< 1 s): MISSED"
fi
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
