#!/usr/bin/env python3
"""Run a command that streams `rplan apply --format json` events on stdout and
timestamp each event line as it arrives, to split the wall time into phases.

Usage: phase_timer.py OUT.json -- CMD...

Writes OUT.json: {"exit": rc, "total": s, "first_event": s,
"steps": {step_id: [start_s, end_s]}} (times relative to the spawn).
The phases are seen from outside: "first_event" is everything before the
executor starts (load, schema, analysis, the up-front artifact hashing);
a step's span runs from its step-started to its step-finished event.
"""
import json
import subprocess
import sys
import time


def main():
    out = sys.argv[1]
    assert sys.argv[2] == "--"
    cmd = sys.argv[3:]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = None
    steps = {}
    for line in p.stdout:
        t = time.monotonic() - t0
        if first is None:
            first = t
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        kind = ev.get("event")
        if kind == "step-started":
            steps[ev["step"]] = [t, None]
        elif kind == "step-finished" and ev.get("step") in steps:
            steps[ev["step"]][1] = t
    rc = p.wait()
    total = time.monotonic() - t0
    with open(out, "w") as f:
        json.dump({"exit": rc, "total": total, "first_event": first, "steps": steps}, f)
    sys.exit(rc)


if __name__ == "__main__":
    main()
