#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time, one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET…]     (default: 60 seconds, every target)
#   fuzz/run.sh seed                     (only make the seed corpora)
#
# Needs the nightly toolchain and `cargo install cargo-fuzz`. Corpora live
# in fuzz/corpus/TARGET (not committed); they are seeded from examples/,
# tests/data/ and small images made here with sfdisk, sgdisk, mkfs.* and
# zstd. A crash stops the run with its input in fuzz/artifacts/TARGET/:
# fix it, and keep the input under tests/data/fuzz/ (tests/fuzz_regressions.rs
# replays every file there through the real code path on `cargo test`).
# Local runs, not CI: the issue asks for ≥ 10 minutes per target.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=(plan_check ruleset compiled_plan disk_tables disk_inspect fs_usage zstd_artifact partclone_artifact journal)
if [ $# -gt 0 ]; then TARGETS=("$@"); fi
JOBS=${FUZZ_JOBS:-1}
root=$(cd .. && pwd)

seed() {
  local t=$1 d=corpus/$1
  [ -d "$d" ] && [ -n "$(ls -A "$d")" ] && return 0
  mkdir -p "$d"
  local tmp
  tmp=$(mktemp -d)
  case $t in
    plan_check)
      cp "$root"/examples/*.yaml "$d"/
      find "$root"/tests/data -name '*.yaml' -size -64k | while read -r f; do
        cp "$f" "$d/$(echo "$f" | sha1sum | cut -c1-12).yaml"; done ;;
    ruleset) cp "$root"/compiler/rules/*.yaml "$d"/ ;;
    compiled_plan)
      (cd "$root" && cargo build -q --bin rplan)
      for f in "$root"/examples/*.yaml; do
        "$root"/target/debug/rplan compile --no-artifacts "$f" -o "$d/$(basename "$f" .yaml).json" || true
      done ;;
    disk_tables|disk_inspect)
      # pick byte (size 2^k MiB) + the image's first 48 KiB + its last 16.5 KiB
      # (the backup GPT): the target lays the input's last quarter at the end.
      local img=$tmp/d.img
      truncate -s 8M "$img"
      printf 'label: dos\n2048,4096,7\n,4096,5\n,1024,b\n,1024,83\n' | sfdisk -q "$img"
      mk_disk_seed "$img" 3 > "$d/mbr-logical"
      truncate -s 0 "$img"; truncate -s 8M "$img"
      sgdisk -q -n1:2048:+2M -t1:0700 -n2:0:0 "$img" >/dev/null
      mk_disk_seed "$img" 3 > "$d/gpt"
      truncate -s 0 "$img"; truncate -s 8M "$img"
      mkfs.vfat "$img" >/dev/null 2>&1 && mk_disk_seed "$img" 3 > "$d/bare-fat" ;;
    fs_usage)
      local img=$tmp/p.img i=0
      for mk in "mkfs.ext4 -q -F" "mkfs.vfat" "mkfs.ntfs -q -F -f"; do
        truncate -s 0 "$img"; truncate -s 16M "$img"
        if $mk "$img" >/dev/null 2>&1; then
          { printf "\\x$(printf %02x $i)"; head -c 262144 "$img"; } > "$d/$i"
        fi
        i=$((i + 1))
      done ;;
    zstd_artifact)
      cp "$root"/examples/backups/*/system.img.zst "$tmp"/ 2>/dev/null || true
      for f in "$root"/examples/backups/*/system.img.zst; do
        cp "$f" "$d/$(basename "$(dirname "$f")").zst"; done
      head -c 100000 /dev/urandom | zstd -q -19 > "$d/random.zst"
      head -c 3000000 /dev/zero | zstd -q > "$d/zeros.zst" ;;
    partclone_artifact)
      truncate -s 2M "$tmp/fat.img"
      mkfs.vfat -n SEED "$tmp/fat.img" >/dev/null
      echo hello > "$tmp/a.txt"; mcopy -i "$tmp/fat.img" "$tmp/a.txt" ::a.txt
      partclone.fat -c -s "$tmp/fat.img" -o "$d/fat-crc32" -L /dev/null >/dev/null 2>&1
      partclone.fat -c -a0 -s "$tmp/fat.img" -o "$d/fat-nocs" -L /dev/null >/dev/null 2>&1 ;;
    journal)
      printf '%s\n' \
        '{"event":"begin","plan_hash":"ab","targets":[["disk0","/x.img"]],"identities":[["disk0","file:1:2"]]}' \
        '{"event":"step-started","step":"asr/disk0/table"}' \
        '{"event":"step-done","step":"asr/disk0/table","ok":true,"fingerprint":"00","message":null}' \
        '{"event":"step-started","step":"asr/disk0/system/restore"}' > "$d/torn"
      printf '%s\n' '{"event":"stage-done","stage":"asr","ok":false}' '{"event":"end","ok":false,"stage":null}' >> "$d/torn"
      printf '%s' '{"event":"step-sta' >> "$d/torn" ;;
  esac
  rm -rf "$tmp"
}

mk_disk_seed() { # IMAGE PICK -> stdout
  printf "\\x$(printf %02x "$2")"
  head -c 49152 "$1"
  tail -c 16896 "$1"
}

for t in "${TARGETS[@]}"; do
  seed "$t"
  [ "$SECONDS_PER_TARGET" = seed ] && continue
  echo "== $t: ${SECONDS_PER_TARGET}s"
  par=()
  [ "$JOBS" -gt 1 ] && par=(-jobs="$JOBS" -workers="$JOBS")
  cargo +nightly fuzz run "$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" "${par[@]}" -rss_limit_mb=4096 -print_final_stats=1 2>&1 | tee "corpus/$t.log" | grep -E '^(Done|stat::|==|SUMMARY|#[0-9]+ +DONE)' || true
  if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "!! $t: crash inputs in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
