#!/usr/bin/env bash
# bench/idle.sh: what a run costs while it waits (issue 12: "polling and
# waiting cost nothing while idle").  Three runbooks, each waiting WAIT
# seconds (default 60): wait(WAIT); poll() of a condition that stays false,
# every second; a child process (sleep WAIT) the step waits on.  Each run's
# CPU time (user + system, GNU time: 10 ms resolution) is printed beside
# its wall time; the target is under 50 ms of CPU for a 60 s wait.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
WAIT=${WAIT:-60}

bench_begin idle
export XDG_STATE_HOME="$work/state"
cat > "$work/wait.lua" <<LUA
runbook { name = "idle-wait" }
step("wait", function() wait($WAIT) end)
LUA
cat > "$work/poll.lua" <<LUA
runbook { name = "idle-poll" }
step("poll", function()
  pcall(poll, function() return false end, { every = 1, timeout = $WAIT, what = "never" })
end)
LUA
cat > "$work/exec.lua" <<LUA
runbook { name = "idle-exec" }
step("child", function() exec { "sleep", "$WAIT", readonly = true, timeout = $WAIT + 30 } end)
LUA

printf '%-34s %12s %12s\n' "a run that waits ${WAIT} s" "wall" "CPU (u+s)"
for b in wait poll exec; do
  /usr/bin/time -f "%e %U %S" -o "$work/$b.time" "$RUNBOOK_BIN" run "$work/$b.lua" \
    --transcript "$work/$b.jsonl" >/dev/null 2>"$work/$b.err" || { cat "$work/$b.err" >&2; exit 1; }
  read -r wall user sys < "$work/$b.time"
  awk -v b="$b" -v w="$wall" -v u="$user" -v s="$sys" 'BEGIN { printf "%-34s %10.2f s %9.0f ms\n", b, w, (u + s) * 1000 }'
  bench_row "CPU time of a ${WAIT} s wait" "$b (GNU time, 10 ms resolution)" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" other
done
