#!/usr/bin/env bash
# bench/markdown.sh: what reading a markdown checklist costs.
#
#   `runbook show` of a 10,000-line markdown runbook (625 sections, each
#   with checklist items, a placeholder, an inline command, a blank and a
#   fenced bash block), against `runbook show` of the same runbook as Lua
#   (its `runbook import`, written by runbook.mdimport in the same round),
#   and `runbook --version` as the process's own floor.  ROUNDS (default
#   7) interleaved rounds: medians with the spread, and peak RSS of one run
#   of each (GNU time's %M).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
ROUNDS=${ROUNDS:-7}
LINES=${LINES:-10000}

bench_begin markdown awk lua5.4
export XDG_STATE_HOME="$work/state"

awk -v want="$LINES" 'BEGIN {
  print "# A long incident checklist\n"; n = 2
  for (s = 1; n < want; s++) {
    print "## Phase " s ": part " s "\n"; n += 2
    for (k = 1; k <= 6; k++) { print "- [ ] Check item " s "." k " on <HOST_" (s % 7) ">"; n++ }
    print "- Health: `curl -fsS http://127.0.0.1:8080/health`"
    print "- Time detected: ____\n"
    print "```bash\nsystemctl status app-" s ".service\nsudo systemctl restart app-" s ".service\n```\n"
    n += 8
  }
}' > "$work/big.md"
lua5.4 -e "package.path = '$here/../stdlib/?.lua;' .. package.path
  local f = io.open('$work/big.md'); local doc = assert(require('runbook.markdown').parse(f:read('a'), 'big.md'))
  io.open('$work/big.lua', 'w'):write(require('runbook.mdimport').to_lua(doc))"

: > "$work/md.t"; : > "$work/lua.t"; : > "$work/ver.t"
for _ in $(seq "$ROUNDS"); do
  wall_median 1 "$RUNBOOK_BIN" show "$work/big.md" >> "$work/md.t"
  wall_median 1 "$RUNBOOK_BIN" show "$work/big.lua" >> "$work/lua.t"
  wall_median 1 "$RUNBOOK_BIN" --version >> "$work/ver.t"
done
rss() { /usr/bin/time -f "%M" "$@" 2>&1 >/dev/null | tail -1; }
spread() { sort -g | awk 'NR == 1 { a = $1 } { b = $1 } END { printf "%.3f-%.3f s", a, b }'; }

md_s=$(median < "$work/md.t"); lua_s=$(median < "$work/lua.t"); ver_s=$(median < "$work/ver.t")
line "show of a $(wc -l < "$work/big.md")-line markdown runbook" "median" "vs Lua"
row "runbook show FILE.md" "$md_s" "$lua_s"
row "runbook show FILE.lua (its import)" "$lua_s" "$lua_s"
row "runbook --version" "$ver_s"
line "spread: md $(spread < "$work/md.t"), lua $(spread < "$work/lua.t")"
line "peak RSS: md $(rss "$RUNBOOK_BIN" show "$work/big.md") KB, lua $(rss "$RUNBOOK_BIN" show "$work/big.lua") KB"
