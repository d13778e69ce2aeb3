#!/usr/bin/env bash
# bench/output.sh: what showing a command's output costs.
#
#   (a) 100 MB of log lines (about 107 bytes each) shown to a pipe:
#       `runbook run` of a step whose exec cats the file, its stdout piped
#       to `cat >/dev/null`, against `cat FILE | cat >/dev/null` (the same
#       bytes through one more process and pipe); the runbook row includes
#       everything a run pays: the 32 MiB capture, escape stripping, the
#       per-line display, redaction, and the call event recording stdout
#   (b) the same runbook with quiet = true (capture and record, nothing
#       shown), to split display from capture
#   (c) one line without a newline of 16 KB, 64 KB and 1 MB: the whole
#       `runbook run` (the sink was quadratic in a line's length)
#
# ROUNDS=5 interleaved rounds of (a) and (b), the median round reported with
# the spread (fastest-slowest), so a burst of load on the shared VM hits
# both alike.  BASE_BIN=path/to/other/runbook times a second build in the
# same rounds (before/after a change).  Needs a built runbook
# ($RUNBOOK_BIN, default build/runbook); writes its 100 MB file under a
# temporary directory removed at exit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
ROUNDS=${ROUNDS:-5}
MB=${MB:-100}

bench_begin output cat head tr awk
export XDG_STATE_HOME="$work/state"

awk -v mb="$MB" 'BEGIN {
  want = mb * 1048576
  for (i = 0; n < want; i++) {
    l = sprintf("2026-12-01T20:00:00.000Z INFO  api[1234]: GET /v1/orders/%06d 200 12ms user=%05d trace=abcdef0123456789", i % 999999, i % 99999)
    print l
    n += length(l) + 1
  }
}' > "$work/log.txt"

for q in false true; do
  cat > "$work/show-$q.lua" <<EOF
runbook { name = "bench-output" }
step("show", function()
  exec { "cat", "$work/log.txt", readonly = true, quiet = $q, timeout = 600 }
end)
EOF
done

# time_of CMD: wall seconds of one run of the shell command CMD.
time_of() {
  local t0 t1
  t0=$EPOCHREALTIME
  bash -c "$1" || { echo "bench/output.sh: failed: $1" >&2; return 1; }
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
}

# rb_show QUIET [BIN]
rb_show() { echo "rm -f '$work/t.jsonl'; '${2:-$RUNBOOK_BIN}' run --yes --transcript '$work/t.jsonl' '$work/show-$1.lua' | cat >/dev/null"; }

: > "$work/cat.t"; : > "$work/rb.t"; : > "$work/rbq.t"; : > "$work/base.t"; : > "$work/baseq.t"
cat "$work/log.txt" >/dev/null          # in the page cache for every round
for _ in $(seq "$ROUNDS"); do
  time_of "cat '$work/log.txt' | cat >/dev/null" >> "$work/cat.t"
  time_of "$(rb_show false)" >> "$work/rb.t"
  time_of "$(rb_show true)" >> "$work/rbq.t"
  if [ -n "${BASE_BIN:-}" ]; then
    time_of "$(rb_show false "$BASE_BIN")" >> "$work/base.t"
    time_of "$(rb_show true "$BASE_BIN")" >> "$work/baseq.t"
  fi
done
cat_s=$(median < "$work/cat.t")
rb_s=$(median < "$work/rb.t")
rbq_s=$(median < "$work/rbq.t")

# spread FILE: "fastest-slowest" of a row's rounds.
spread() { sort -g "$1" | awk 'NR == 1 { a = $1 } { b = $1 } END { printf "%.2f-%.2f s", a, b }'; }

for n in 16384 65536 1048576; do
  cat > "$work/line-$n.lua" <<EOF
runbook { name = "bench-line" }
step("one line", function()
  local r = sh("head -c $n /dev/zero | tr '\\\\0' x", { readonly = true })
  assert(#r.stdout == $n, "stdout has " .. #r.stdout .. " bytes")
end)
EOF
done
line_s() {
  wall_median 3 bash -c "rm -f '$work/t.jsonl'; '$RUNBOOK_BIN' run --yes --transcript '$work/t.jsonl' '$work/line-$1.lua' >/dev/null"
}

line "${MB} MB of log lines shown to a pipe" "median" "vs cat"
row "cat FILE | cat" "$cat_s" "$cat_s"
row "runbook run (exec cat FILE) | cat" "$rb_s" "$cat_s"
row "runbook run, quiet = true (capture + record only)" "$rbq_s" "$cat_s"
if [ -n "${BASE_BIN:-}" ]; then
  row "BASE_BIN run (exec cat FILE) | cat" "$(median < "$work/base.t")" "$cat_s"
  row "BASE_BIN run, quiet = true" "$(median < "$work/baseq.t")" "$cat_s"
fi
line "spread of the $ROUNDS rounds: cat $(spread "$work/cat.t"), runbook $(spread "$work/rb.t"), quiet $(spread "$work/rbq.t")"
[ -z "${BASE_BIN:-}" ] || line "  BASE_BIN $(spread "$work/base.t"), quiet $(spread "$work/baseq.t")"
bench_row "show ${MB} MB to a pipe" "cat FILE | cat" "$cat_s" raw
bench_row "show ${MB} MB to a pipe" "runbook exec cat FILE | cat" "$rb_s" runbook
bench_row "show ${MB} MB to a pipe" "runbook, quiet (capture + record)" "$rbq_s" other
echo
line "one line without a newline, whole run" "median"
for n in 16384 65536 1048576; do
  s=$(line_s "$n")
  row "$((n / 1024)) KB" "$s"
  bench_row "one long line" "runbook run, $((n / 1024)) KB line" "$s" other
done
