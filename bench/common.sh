# bench/common.sh: what bench/{http,redis,sql,ssh}.sh share, sourced after
# they set $here (this directory).  Times passed between these functions
# are in seconds.

RUNBOOK_BIN=${RUNBOOK_BIN:-$here/../build/runbook}
# The bench runbooks time the host from inside (runbook.loop.now, a C
# module alone, io.stdout), which a runbook is not offered: the hatch the
# host's own tests use opens it to them.
export RUNBOOK_TEST_INTERNALS=1

# bench_begin NAME TOOL...: exit 2 naming the first missing tool (or a
# missing runbook binary); make $work, removed at exit after the server
# whose pid the script puts in $server_pid is stopped; pick a free
# loopback $port.
bench_begin() {
  local name=$1 tool
  shift
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "bench/$name.sh: $tool is not installed" >&2; exit 2; }
  done
  [ -x "$RUNBOOK_BIN" ] ||
    { echo "bench/$name.sh: no runbook binary at $RUNBOOK_BIN (set RUNBOOK_BIN)" >&2; exit 2; }
  work=$(mktemp -d "/tmp/rbbench-$name.XXXXXX")
  server_pid=
  trap bench_end EXIT
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
}

bench_end() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}

# serve NAME ARG...: start tests/servers/NAME.py ARG... as the server and
# wait (30 s at most) for the first line it prints, left in $work/server.out.
serve() {
  /usr/bin/python3 "$here/../tests/servers/$1.py" "${@:2}" >"$work/server.out" 2>"$work/server.err" &
  server_pid=$!
  for _ in $(seq 300); do
    [ "$(wc -l < "$work/server.out")" -ge 1 ] && return
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: tests/servers/$1.py did not start:" >&2
  cat "$work/server.err" "$work/server.out" >&2
  exit 1
}

# pin_tree CPUS PID: the CPU affinity of PID, every thread, and of every
# process under it (a server and the workers or backends it forked; one it
# forks later inherits it).  The (d) rows pin a server and its client to
# CPU 0 together: no vCPU then halts and wakes between the two, and the
# floor is at its lowest.
ALL_CPUS=0-$(( $(nproc) - 1 ))
pin_tree() {
  local cpus=$1 pid=$2 child
  if ! taskset -a -p -c "$cpus" "$pid" >/dev/null 2>&1 && kill -0 "$pid" 2>/dev/null; then
    echo "bench: taskset could not set pid $pid to CPU(s) $cpus" >&2   # (not one gone meanwhile)
    exit 1
  fi
  for child in $(pgrep -P "$pid"); do pin_tree "$cpus" "$child"; done
}

# runbook_round LUA SUFFIX "NAME..." [CMD...]: one run of the bench runbook
# LUA, started by CMD (taskset) when given; each of its "RESULT NAME value"
# lines is appended to $work/rb.NAME$SUFFIX.  Its output is shown if it fails.
runbook_round() {
  local lua=$1 suffix=$2 names=$3 r
  shift 3
  rm -f "$work/t.jsonl"
  "$@" "$RUNBOOK_BIN" run --yes --transcript "$work/t.jsonl" "$lua" > "$work/rb.out" 2>&1 ||
    { echo "the runbook benchmark failed:" >&2; cat "$work/rb.out" >&2; exit 1; }
  for r in $names; do sed -n "s/^RESULT $r //p" "$work/rb.out" >> "$work/rb.$r$suffix"; done
}

# median: the median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# wall_median N CMD...: the median wall time of N runs of CMD, in seconds;
# when a run fails, its output goes to stderr and this fails.
wall_median() {
  local n=$1 t0 t1
  shift
  for _ in $(seq "$n"); do
    t0=$EPOCHREALTIME
    "$@" >"$work/wall.out" 2>&1 || { cat "$work/wall.out" >&2; return 1; }
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f\n", b - a }'
  done | median
}

# fmt SECONDS: as "1.23 s", "4.56 ms" or "78.9 us".
fmt() {
  awk -v s="$1" 'BEGIN { if (s >= 1) printf "%.2f s", s; else if (s >= 1e-3) printf "%.2f ms", s * 1e3;
                         else printf "%.1f us", s * 1e6 }'
}

# ratio A B: A / B as "1.23x".
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

# The scripts' own tables, one width for all: line TEXT [TEXT TEXT] a line
# as it is; row LABEL SECONDS [BASE] the time and, with BASE, SECONDS/BASE.
W=58
line() { printf "%-${W}s %12s %12s\n" "$1" "${2:-}" "${3:-}"; }
row() { line "$1" "$(fmt "$2")" "${3:+$(ratio "$2" "$3")}"; }

# bench_row GROUP HOW SECONDS ROLE [ROUNDS_FILE]: one row of bench/run's
# combined table (role: raw, runbook, cli, seq, fan, pssh, base or other),
# when bench/run asked for rows.  With ROUNDS_FILE (one figure a round,
# the round's median) the row also carries the best and worst round, so
# the table shows the spread and takes the raw library's best round as
# the floor.
bench_row() {
  [ -n "${BENCH_ROWS:-}" ] || return 0
  local lo=$3 hi=$3
  if [ -n "${5:-}" ]; then
    read -r lo hi < <(sort -g "$5" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }')
  fi
  printf '%s\t%s\t%.9f\t%s\t%.9f\t%.9f\n' "$1" "$2" "$3" "$4" "$lo" "$hi" >> "$BENCH_ROWS"
}
