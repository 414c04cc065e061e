#!/usr/bin/env bash
# The Ansible role against three local hosts (ansible_connection: local),
# one plan and one sparse image target each, judged by outside tools:
#   --check (dry-run): every image's sha256 unchanged, one fleet report with
#     every host's result;
#   apply: sfdisk --json shows each plan's table, cmp finds the restored
#     bytes, the fleet report says every host recovered;
#   a host whose plan has errors stops on the controller: its image is
#     untouched and the playbook fails.
# Needs ansible-playbook (ansible-core) on PATH and a built rplan
# (RPLAN=path, default target/debug/rplan). Fails, never skips: CI runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
RPLAN="${RPLAN:-$repo/target/debug/rplan}"
command -v ansible-playbook >/dev/null || { echo "FAIL: ansible-playbook not on PATH (pip install ansible-core)" >&2; exit 1; }
[ -x "$RPLAN" ] || (cd "$repo" && cargo build --quiet)
for tool in sfdisk sha256sum cmp python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool missing" >&2; exit 1; }
done

T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
export ANSIBLE_LOCAL_TEMP="$T/ansible-local" ANSIBLE_REMOTE_TEMP="$T/ansible-remote"
export ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_HOST_KEY_CHECKING=0
export ANSIBLE_ROLES_PATH="$here/roles"
MIB=$((1024 * 1024))

# The backup: one raw system image shared by every plan.
mkdir -p "$T/backup"
head -c $((2 * MIB)) /dev/urandom > "$T/backup/sys.img"
sys_sha="$(sha256sum "$T/backup/sys.img" | cut -d' ' -f1)"

plan() { # NAME SIGNATURE SYS_MIB [BROKEN]
  local artifact=sys
  [ "${4:-}" = broken ] && artifact=no-such-artifact
  cat > "$T/$1.yaml" <<PLAN
version: 1
name: $1
system: { os: windows-xp, edition: professional, arch: x86, build: sp2-slipstream, language: en }
media: { build: sp2-slipstream }
backup: { id: b, root: $T/backup, artifacts: [ { id: sys, path: sys.img, format: raw, size: 2MiB, sha256: $sys_sha } ] }
disks:
  - id: d0
    critical: true
    table: mbr
    signature: "$2"
    size: 64MiB
    partitions:
      - { id: sys, size: ${3}MiB, type: ntfs, bootable: true, content: { image: $artifact } }
      - { id: data, size: rest, type: ext4, content: { format: { fs: ext4, label: DATA } } }
stages:
  - { id: lkg, kind: last-known-good, actions: [ { run: [/bin/false] } ] }
  - { id: asr, kind: asr }
PLAN
  truncate -s 64M "$T/$1.img"
}

hosts=(pc01 pc02 pc03)
sigs=(0x10000001 0x10000002 0x10000003)
sizes=(4 6 8)
{
  echo "all:"
  echo "  vars:"
  echo "    ansible_connection: local"
  echo "    ansible_python_interpreter: '{{ ansible_playbook_python }}'"
  echo "    rplan_binary: $RPLAN"
  echo "    rplan_local_dir: $T/out"
  echo "  children:"
  echo "    fleet:"
  echo "      hosts:"
  for i in 0 1 2; do
    h=${hosts[$i]}
    plan "$h" "${sigs[$i]}" "${sizes[$i]}"
    echo "        $h: { rplan_plan: $T/$h.yaml, rplan_targets: [d0=$T/$h.img], rplan_remote_dir: $T/remote/$h }"
  done
  plan broken 0x10000009 4 broken
  echo "    bad:"
  echo "      hosts:"
  echo "        broken: { rplan_plan: $T/broken.yaml, rplan_targets: [d0=$T/broken.img], rplan_remote_dir: $T/remote/broken }"
} > "$T/inventory.yml"

sums() { for h in "${hosts[@]}" broken; do sha256sum "$T/$h.img"; done; }
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== check mode: dry-run on every host"
sums > "$T/before.sha"
ansible-playbook -i "$T/inventory.yml" --limit fleet --check "$here/playbook.yml" > "$T/check.log" 2>&1 \
  || { cat "$T/check.log"; fail "the check-mode playbook failed"; }
sums | diff "$T/before.sha" - || fail "check mode changed an image"
python3 - "$T/out/fleet-report.json" <<'PY' || fail "check-mode fleet report"
import json, sys
r = json.load(open(sys.argv[1]))
hosts = {h["host"]: h for h in r["hosts"]}
assert sorted(hosts) == ["pc01", "pc02", "pc03"], hosts.keys()
for name, h in hosts.items():
    assert h["mode"] == "dry-run" and h["exit"] == 0, h
    assert h["outcome"] == "recovered" and h["stage"] == "asr", h
    after = [a for a in h["dry_run"]["disks"][0]["after"] if a["what"] == "partition"]
    assert [a["id"] for a in after] == ["sys", "data"], after
print("fleet report (dry-run): 3 hosts recovered by asr, nothing written")
PY
for h in "${hosts[@]}"; do
  grep -q "<svg id=\"graph\"" "$T/out/$h.html" || fail "no HTML report from $h"
done

echo "== apply on every host"
ansible-playbook -i "$T/inventory.yml" --limit fleet "$here/playbook.yml" > "$T/apply.log" 2>&1 \
  || { cat "$T/apply.log"; fail "the apply playbook failed"; }
for i in 0 1 2; do
  h=${hosts[$i]}
  sfdisk --json "$T/$h.img" > "$T/$h.sfdisk.json" || fail "sfdisk cannot read $h's table"
  python3 - "$T/$h.sfdisk.json" "${sigs[$i]}" "${sizes[$i]}" <<'PY' || fail "$h's table is not its plan's"
import json, sys
t = json.load(open(sys.argv[1]))["partitiontable"]
sig, sys_mib = sys.argv[2], int(sys.argv[3])
assert t["label"] == "dos" and int(t["id"], 16) == int(sig, 16), t
p = t["partitions"]
assert len(p) == 2, p
assert p[0]["start"] == 2048 and p[0]["size"] == sys_mib * 2048 and p[0]["type"] == "7", p
assert p[0].get("bootable") is True, p
assert p[1]["start"] == 2048 + sys_mib * 2048 and p[1]["type"] == "83", p
PY
  cmp -n $((2 * MIB)) -i $((2048 * 512)):0 "$T/$h.img" "$T/backup/sys.img" || fail "$h's system partition is not the image"
done
python3 - "$T/out/fleet-report.json" <<'PY' || fail "apply fleet report"
import json, sys
r = json.load(open(sys.argv[1]))
assert len(r["hosts"]) == 3, r
for h in r["hosts"]:
    assert h["mode"] == "apply" and h["exit"] == 0 and h["outcome"] == "recovered" and h["stage"] == "asr", h
print("fleet report (apply): 3 hosts recovered by asr")
PY

echo "== a host whose plan has errors stops on the controller"
broken_before="$(sha256sum "$T/broken.img")"
if ansible-playbook -i "$T/inventory.yml" --limit bad "$here/playbook.yml" > "$T/bad.log" 2>&1; then
  cat "$T/bad.log"; fail "the playbook passed a plan with errors"
fi
grep -q "Check the plan on the controller" "$T/bad.log" && grep -q "RP0" "$T/bad.log" || { cat "$T/bad.log"; fail "no diagnostic from the controller's check"; }
[ ! -e "$T/remote/broken/plan.json" ] || fail "a broken plan was shipped"
[ "$(sha256sum "$T/broken.img")" = "$broken_before" ] || fail "the broken host's image changed"
echo "ansible: OK"
