#!/usr/bin/env bash
# Compiler scaling benchmark.
#
# Times `rplan check --no-artifacts` and `rplan compile --no-artifacts -o
# /dev/null` on generated plans of 1x, 10x, 100x size (80 GPT partitions per
# disk, one disk per x; see gen_plan.py), median of $RUNS (default 5) runs
# after one warm-up. Baselines measured in the same run:
#   * `rplan --version` (process start-up), subtracted for the
#     start-up-corrected scaling ratios;
#   * the PyPI tool check-jsonschema validating the same YAML against
#     `rplan schema plan` (schema validation only; rplan compile does schema
#     validation + full analysis + lowering + JSON emission).
#
# Env: RUNS (default 5), SCALES (default "1 10 100"), CJS (path to
# check-jsonschema; default /tmp/cjs/bin/check-jsonschema, created on demand
# with `python3 -m venv /tmp/cjs && /tmp/cjs/bin/pip install check-jsonschema`),
# SKIP_CJS=1 to skip the check-jsonschema comparison.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
ensure_rplan

SCALES="${SCALES:-1 10 100}"
CJS="${CJS:-/tmp/cjs/bin/check-jsonschema}"
if [[ "${SKIP_CJS:-0}" != 1 && ! -x "$CJS" ]]; then
    echo "installing check-jsonschema into /tmp/cjs ..." >&2
    python3 -m venv /tmp/cjs && /tmp/cjs/bin/pip install -q check-jsonschema >&2 || SKIP_CJS=1
fi

W="$(mktemp -d /tmp/rplan-bench-compile.XXXXXX)"
trap 'rm -rf "$W"' EXIT

machine_info
rplan_info
echo "runs per figure: $RUNS (median and min reported; after 1 warm-up); timer: $(command -v hyperfine >/dev/null && echo hyperfine || echo 'bash date +%s%N')"
"$RPLAN" schema plan >"$W/plan.schema.json"

read -r startup startup_min < <(median_time "$RPLAN" --version)
[[ -n "${startup:-}" ]] || { echo "timing rplan --version failed" >&2; exit 1; }
echo "baseline rplan --version (start-up): median ${startup}s, min ${startup_min}s"
echo

declare -A C K J Cm Km Jm P
printf '%-6s %6s %8s | %-17s | %-17s | %8s | %-17s | %-11s | %-11s\n' \
    "" "" "" "rplan check" "rplan compile" "compile" "check-jsonschema" "compile/cjs" "check/cjs"
printf '%-6s %6s %8s | %8s %8s | %8s %8s | %8s | %8s %8s | %5s %5s | %5s %5s\n' \
    scale parts bytes median min median min us/part median min med min med min
for s in $SCALES; do
    plan="$W/plan-${s}x.yaml"
    python3 "$BENCH_ROOT/benches/gen_plan.py" "$s" -o "$plan" 2>/dev/null
    check_clean "$plan" >/dev/null
    parts=$((s * 80))
    bytes=$(stat -c %s "$plan")
    read -r K[$s] Km[$s] < <(median_time "$RPLAN" check --no-artifacts "$plan")
    read -r C[$s] Cm[$s] < <(median_time "$RPLAN" compile --no-artifacts "$plan" -o /dev/null)
    if [[ "${SKIP_CJS:-0}" != 1 ]]; then
        read -r J[$s] Jm[$s] < <(median_time "$CJS" --schemafile "$W/plan.schema.json" "$plan")
    else
        J[$s]=0; Jm[$s]=0
    fi
    [[ -n "${K[$s]:-}" && -n "${C[$s]:-}" && -n "${J[$s]:-}" ]] || { echo "timing failed at ${s}x" >&2; exit 1; }
    P[$s]=$parts
    printf '%-6s %6d %8d | %8.4f %8.4f | %8.4f %8.4f | %8.1f | %8.3f %8.3f | %5s %5s | %5s %5s\n' \
        "${s}x" "$parts" "$bytes" "${K[$s]}" "${Km[$s]}" "${C[$s]}" "${Cm[$s]}" \
        "$(awk -v t="${C[$s]}" -v p="$parts" 'BEGIN{printf "%.1f", t*1e6/p}')" \
        "${J[$s]}" "${Jm[$s]}" \
        "$(ratio "${C[$s]}" "${J[$s]}")" "$(ratio "${Cm[$s]}" "${Jm[$s]}")" \
        "$(ratio "${K[$s]}" "${J[$s]}")" "$(ratio "${Km[$s]}" "${Jm[$s]}")"
done

sub() { awk -v a="$1" -v b="$2" -v z="$3" 'BEGIN{ if (b-z>0) printf "%.2f", (a-z)/(b-z); else print "n/a"}'; }
echo
echo "scaling: time ratio between consecutive scales (10.00 = linear), from medians [from minima];"
echo "'-startup' subtracts the rplan --version time from both sides"
prev=""
for s in $SCALES; do
    if [[ -n "$prev" ]]; then
        printf '  %sx/%sx (size x%s):\n' "$s" "$prev" "$(ratio "$s" "$prev")"
        printf '    compile %s [%s], -startup %s [%s]\n' \
            "$(ratio "${C[$s]}" "${C[$prev]}")" "$(ratio "${Cm[$s]}" "${Cm[$prev]}")" \
            "$(sub "${C[$s]}" "${C[$prev]}" "$startup")" "$(sub "${Cm[$s]}" "${Cm[$prev]}" "$startup_min")"
        printf '    check   %s [%s], -startup %s [%s]\n' \
            "$(ratio "${K[$s]}" "${K[$prev]}")" "$(ratio "${Km[$s]}" "${Km[$prev]}")" \
            "$(sub "${K[$s]}" "${K[$prev]}" "$startup")" "$(sub "${Km[$s]}" "${Km[$prev]}" "$startup_min")"
        if [[ "${SKIP_CJS:-0}" != 1 ]]; then
            printf '    check-jsonschema %s [%s]\n' "$(ratio "${J[$s]}" "${J[$prev]}")" "$(ratio "${Jm[$s]}" "${Jm[$prev]}")"
        fi
    fi
    prev=$s
done
echo
echo "compile/cjs < 1 means rplan (schema + analysis + lowering) is faster than check-jsonschema (schema only)."
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
