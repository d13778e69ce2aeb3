#!/bin/sh
# Start-up cost of `runbook run` on a trivial runbook (load, declare, one
# step, transcript with its fsyncs at the run's start, the step's end and
# the run's end, exit) against starting bare interpreters, measured side
# by side with hyperfine in ROUNDS interleaved rounds (a burst of load on
# the shared VM hits every row alike).  Prints each row's median over the
# rounds' medians, the spread of those medians, its ratio to
# `lua5.4 -e ''` and its peak RSS (/usr/bin/time, the largest of 3 runs).
# BASE_BIN=path/to/other/runbook times a second build in the same rounds.
set -eu
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { apt-get install -y -qq hyperfine >/dev/null; }
command -v lua5.4 >/dev/null || { apt-get install -y -qq lua5.4 >/dev/null; }
RB=${RUNBOOK_BIN:-build/runbook}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-100}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export XDG_STATE_HOME="$TMP/state"

# name<TAB>command, one a line: the rows of the table, in its order.
{
  printf "lua5.4 -e ''\tlua5.4 -e ''\n"
  printf 'bash -c true\tbash -c true\n'
  printf 'runbook --version\t%s --version\n' "$RB"
  printf 'runbook show trivial\t%s show bench/trivial.lua\n' "$RB"
  printf 'runbook run trivial --yes\t%s run bench/trivial.lua --yes\n' "$RB"
  if [ -n "${BASE_BIN:-}" ]; then
    printf 'base: runbook --version\t%s --version\n' "$BASE_BIN"
    printf 'base: runbook show trivial\t%s show bench/trivial.lua\n' "$BASE_BIN"
    printf 'base: runbook run trivial --yes\t%s run bench/trivial.lua --yes\n' "$BASE_BIN"
  fi
} > "$TMP/rows"

per_round=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
r=1
while [ "$r" -le "$ROUNDS" ]; do
  set --
  while IFS="$(printf '\t')" read -r name cmd; do set -- "$@" -n "$name" "$cmd"; done < "$TMP/rows"
  hyperfine -N --warmup 3 --runs "$per_round" --export-json "$TMP/round$r.json" "$@" >/dev/null 2>&1
  r=$((r + 1))
done

# Peak RSS of each row (kB), the largest of three runs.
while IFS="$(printf '\t')" read -r name cmd; do
  max=0
  for _ in 1 2 3; do
    # shellcheck disable=SC2086 # cmd is a command line to split
    kb=$(/usr/bin/time -f '%M' sh -c "exec $cmd >/dev/null 2>&1" 2>&1 | tail -n 1)
    [ "$kb" -gt "$max" ] && max=$kb
  done
  printf '%s\t%s\n' "$name" "$max"
done < "$TMP/rows" > "$TMP/rss"

/usr/bin/python3 - "$TMP" "$ROUNDS" <<'PY'
import json, os, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
rss = dict(line.rstrip("\n").split("\t") for line in open(os.path.join(tmp, "rss")))
by = {}
order = []
for r in range(1, rounds + 1):
    for res in json.load(open(os.path.join(tmp, f"round{r}.json")))["results"]:
        if res["command"] not in by:
            order.append(res["command"])
        by.setdefault(res["command"], []).append(res["median"])
med = {c: statistics.median(v) for c, v in by.items()}
base = med[order[0]]
rows = os.environ.get("BENCH_ROWS")
if rows:
    with open(rows, "a") as f:
        for i, c in enumerate(order):
            if c.startswith("base: "):
                continue
            role = "base" if i == 0 else ("runbook" if "run trivial" in c else "other")
            f.write(f"start-up\t{c}\t{med[c]:.9f}\t{role}\n")
print(f"{rounds} interleaved rounds; median of the rounds' medians, their spread (min-max)")
print(f"| {'command':<32} | {'median':>9} | {'spread':>17} | {'vs lua5.4':>9} | {'peak RSS':>9} |")
print(f"|{'-'*34}|{'-'*11}|{'-'*19}|{'-'*11}|{'-'*11}|")
for c in order:
    lo, hi = min(by[c]) * 1000, max(by[c]) * 1000
    spread = f"{lo:.2f}-{hi:.2f} ms"
    print(f"| {c:<32} | {med[c]*1000:>6.2f} ms | {spread:>17} | {med[c]/base:>8.2f}x | "
          f"{int(rss[c])/1024:>6.1f} MB |")
PY
