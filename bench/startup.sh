#!/bin/sh
# Start-up cost of `runbook run` on a trivial runbook (load, declare, one
# step, transcript with fsync, exit) against starting bare interpreters,
# measured side by side in one run with hyperfine.  Prints a table of
# medians and each one's ratio to `lua5.4 -e ''`.
set -eu
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
command -v lua5.4 >/dev/null || { apt-get install -y -qq lua5.4 >/dev/null; }
RB=${RUNBOOK_BIN:-build/runbook}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export XDG_STATE_HOME="$TMP/state"
hyperfine -N --warmup 5 --runs "${RUNS:-100}" --export-json "$TMP/r.json" \
  -n "lua5.4 -e ''" "lua5.4 -e ''" \
  -n "bash -c true" "bash -c true" \
  -n "runbook --version" "$RB --version" \
  -n "runbook show trivial" "$RB show bench/trivial.lua" \
  -n "runbook run trivial --yes" "$RB run bench/trivial.lua --yes" >/dev/null
/usr/bin/python3 - "$TMP/r.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
base = res[0]["median"]
import os
rows = os.environ.get("BENCH_ROWS")
if rows:
    with open(rows, "a") as f:
        for i, r in enumerate(res):
            role = "base" if i == 0 else ("runbook" if "run trivial" in r["command"] else "other")
            f.write(f"start-up\t{r['command']}\t{r['median']:.9f}\t{role}\n")
print(f"| {'command':<28} | {'median':>9} | {'vs lua5.4':>9} |")
print(f"|{'-'*30}|{'-'*11}|{'-'*11}|")
for r in res:
    print(f"| {r['command']:<28} | {r['median']*1000:>6.2f} ms | {r['median']/base:>8.2f}x |")
PY
