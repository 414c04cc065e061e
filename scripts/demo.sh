#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu machine to rplan doing its job:
# installs the system tools, builds rplan, checks and compiles the examples,
# then restores the MBR workstation example onto a sparse disk image and
# shows the result with sfdisk, blkid and mtools.
#
# The example's stages call a BMC (`bmc-boot`) and a boot probe
# (`probe-boot`) that this machine does not have; the demo stands in for
# them with two tiny scripts in a temp dir: the BMC call succeeds, and the
# probe "boots" once the disk image has a partition table. So Safe Mode and
# Last Known Good fail on the blank image and ASR recovers it.
set -euo pipefail
cd "$(dirname "$0")/.."

need=(sfdisk sgdisk mkfs.fat fsck.vfat mdir mkfs.ext4 mkntfs zstd blkid dot)
missing=()
for t in "${need[@]}"; do command -v "$t" >/dev/null || missing+=("$t"); done
# Building needs libblkid (found by pkg-config) and libclang (bindgen).
pkg-config --exists blkid 2>/dev/null || missing+=(libblkid-dev)
compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null || missing+=(libclang-dev)
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends fdisk gdisk dosfstools mtools e2fsprogs ntfs-3g zstd util-linux graphviz libblkid-dev libclang-dev pkg-config
fi

cargo build --release
rplan=target/release/rplan

echo "== rplan check examples/*.yaml"
$rplan check examples/*.yaml && echo "all examples check clean"
echo "== rplan rules"
$rplan rules
echo "== rplan graph --format mermaid (workstation-mbr)"
$rplan graph examples/workstation-mbr.yaml --format mermaid | head -20

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
printf '#!/bin/sh\nexit 0\n' >"$work/bin/bmc-boot"
printf '#!/bin/sh\nsfdisk -d "%s" >/dev/null 2>&1\n' "$work/disk0.img" >"$work/bin/probe-boot"
chmod +x "$work/bin/"*
sed -e "s|/usr/local/sbin/|$work/bin/|g" -e "s|root: backups/|root: $PWD/examples/backups/|" \
  examples/workstation-mbr.yaml >"$work/plan.yaml"
truncate -s 1G "$work/disk0.img"

echo "== rplan apply (onto a sparse 1 GiB image)"
$rplan apply "$work/plan.yaml" --target disk0="$work/disk0.img" --yes --skip-manual --journal "$work/journal" </dev/null
echo "== the result, as outside tools see it"
sfdisk --dump "$work/disk0.img"
boot=$((526336 * 512))
mdir -i "$work/disk0.img@@$boot" ::/
