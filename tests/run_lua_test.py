"""Run one tests/lua/*.lua file through build/runbook as a runbook with
--yes; it passes when the run ends with exit 0 and every step was ok."""
import json
import os
import subprocess
import sys
import tempfile

from harness import RUNBOOK

path = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    transcript = os.path.join(tmp, "t.jsonl")
    # These runbooks test the host from inside: they reach runbook.loop,
    # debug and io, which a runbook is not offered (docs/authoring.md).
    env = dict(os.environ, HOME=tmp, XDG_STATE_HOME=tmp, RUNBOOK_TEST_INTERNALS="1")
    proc = subprocess.run([RUNBOOK, "run", "--yes", "--transcript", transcript, path],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=110, env=env)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    events = [json.loads(l) for l in open(transcript)] if os.path.exists(transcript) else []
    ends = [e for e in events if e["event"] == "step.end"]
    bad = [e for e in ends if e["status"] != "ok"]
    if proc.returncode != 0 or bad or not ends:
        print(f"FAIL {path}: exit {proc.returncode}, {len(ends)} steps ended, not ok: "
              + ", ".join(f"{e['id']} ({e.get('error')})" for e in bad))
        sys.exit(1)
    print(f"{len(ends)} passed, 0 failed")
