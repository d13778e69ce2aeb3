#!/usr/bin/env bash
# bench/room.sh: what the incident room costs a run, and how late a watcher
# sees a line, for both backends (docs/room.md).
#
#   (a) the cost a published line adds to a recorded call: r:ping() in a
#       loop inside a runbook step (each call is one transcript line),
#       timed with runbook.loop.now() around each call, without a room and
#       with a room on PostgreSQL and on Redis; rounds interleaved (none,
#       postgres, redis, down, none, ...) so a burst of load hits them
#       alike; "down" is a Redis room nothing listens on (the store away).
#       Reported: the median of the rounds' medians per call, the spread
#       (lowest and highest round median) and the difference to no room.
#   (b) the delay from a line written to `runbook watch` printing it: a run
#       logs its own CLOCK_MONOTONIC time every 20 ms; a watcher started
#       from now, on its own connection, prints the lines; this script reads
#       them from the watcher's pipe and takes its own monotonic time.
#       Median and p99 over the lines.
#
# Starts its own redis-server and PostgreSQL cluster (tests/servers/) on
# free loopback ports; needs redis-server, PostgreSQL 15 and a built
# runbook ($RUNBOOK_BIN).  N=3000 calls per round, ROUNDS=5 rounds of
# each, MARKS=300 lines for (b).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
N=${N:-3000}
ROUNDS=${ROUNDS:-5}
MARKS=${MARKS:-300}

bench_begin room redis-server
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --logfile "$work/redis.log" >/dev/null 2>&1 &
server_pid=$!
# The room's Redis is another server than the one the runbook pings: a
# team's store is not the server an incident's runbook works on.
room_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$room_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --logfile "$work/room-redis.log" --dbfilename room.rdb >/dev/null 2>&1 &
room_pid=$!
/usr/bin/python3 "$here/../tests/servers/postgres.py" --no-tls >"$work/pg.out" 2>"$work/pg.err" &
pg_pid=$!
trap 'kill -TERM "$pg_pid" "$room_pid" 2>/dev/null; wait "$pg_pid" "$room_pid" 2>/dev/null; bench_end' EXIT
for _ in $(seq 300); do
  [ -s "$work/pg.out" ] && break
  sleep 0.1
done
pg_url=$(head -1 "$work/pg.out")
[ -n "$pg_url" ] || { echo "PostgreSQL did not start" >&2; cat "$work/pg.err" >&2; exit 1; }
redis_url="redis://127.0.0.1:$port"
room_redis_url="redis://127.0.0.1:$room_port"

echo "room = { backend = \"postgres\", url = os.getenv(\"BENCH_PG_URL\") }" > "$work/postgres.lua"
echo "room = { backend = \"redis\", url = \"$room_redis_url\" }" > "$work/redis.lua"
echo "targets = {}" > "$work/none.lua"
# "down": a room whose store refuses every connection (nothing listens).
down_port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo "room = { backend = \"redis\", url = \"redis://127.0.0.1:$down_port\" }" > "$work/down.lua"
export BENCH_PG_URL=$pg_url

# (a) the cost per recorded call ---------------------------------------------
cat > "$work/cost.lua" <<EOF
runbook { name = "bench-room-cost" }
local now = require("runbook.loop").now
step("ping", function()
  local r = redis.connect("$redis_url")
  for _ = 1, 200 do r:ping() end
  local t = {}
  for i = 1, $N do
    local t0 = now()
    r:ping()
    t[i] = now() - t0
  end
  table.sort(t)
  io.stdout:write(string.format("RESULT %.9f\n", t[$N // 2 + 1]))
end)
EOF
cost_round() {
  rm -f "$work/t.jsonl"
  "$RUNBOOK_BIN" run --yes --config "$work/$1.lua" --transcript "$work/t.jsonl" "$work/cost.lua" \
    > "$work/rb.out" 2>&1 || { echo "the cost runbook failed ($1):" >&2; cat "$work/rb.out" >&2; exit 1; }
  sed -n "s/^RESULT //p" "$work/rb.out" >> "$work/cost.$1"
}
for _ in $(seq "$ROUNDS"); do
  for how in none postgres redis down; do cost_round "$how"; done
done

# (b) the delay to a watcher ----------------------------------------------------
cat > "$work/marks.lua" <<EOF
runbook { name = "bench-room-delay" }
local now = require("runbook.loop").now
step("wait for the watcher", function() wait(2) end)
step("marks", function()
  for _ = 1, $MARKS do
    log.info("mark %.6f", now())
    wait(0.02)
  end
end)
EOF
cat > "$work/delay.py" <<'EOF'
import json, os, re, subprocess, sys, time
rb, cfg, work = sys.argv[1], sys.argv[2], sys.argv[3]
env = dict(os.environ, HOME=work)
t = os.path.join(work, "d.jsonl")
if os.path.exists(t):
    os.unlink(t)
run = subprocess.Popen([rb, "run", "--yes", "--config", cfg, "--transcript", t,
                        os.path.join(work, "marks.lua")], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
while not (os.path.exists(t) and os.path.getsize(t) > 0):
    time.sleep(0.01)
run_id = json.loads(open(t).readline())["run"]
time.sleep(0.5)
watch = subprocess.Popen([rb, "watch", run_id, "--config", cfg], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
delays = []
for line in watch.stdout:
    seen = time.monotonic()
    m = re.search(rb"mark (\d+\.\d+)", line)
    if m:
        delays.append(seen - float(m.group(1)))
watch.wait()
run.wait()
delays.sort()
print("%.9f %.9f %d" % (delays[len(delays) // 2], delays[int(len(delays) * 0.99)], len(delays)))
EOF
delay() {
  /usr/bin/python3 "$work/delay.py" "$RUNBOOK_BIN" "$work/$1.lua" "$work"
}
read -r pg_med pg_p99 pg_n < <(delay postgres)
read -r rd_med rd_p99 rd_n < <(delay redis)

# table ----------------------------------------------------------------------------
spread() { sort -g "$1" | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f-%.1f us", lo * 1e6, hi * 1e6 }'; }
none=$(median < "$work/cost.none")
echo "The incident room: r:ping() per call (one transcript line each), median of $ROUNDS rounds of $N"
line "room" "per call" "round spread"
for how in none postgres redis down; do
  m=$(median < "$work/cost.$how")
  line "$how" "$(fmt "$m")" "$(spread "$work/cost.$how")"
done
for how in postgres redis down; do
  m=$(median < "$work/cost.$how")
  line "added by the room ($how)" "$(awk -v a="$m" -v b="$none" 'BEGIN { printf "%+.1f us", (a - b) * 1e6 }')"
done
echo
echo "Delay from a line written to 'runbook watch' printing it (lines every 20 ms)"
line "backend" "median" "p99"
line "postgres (LISTEN/NOTIFY, n=$pg_n)" "$(fmt "$pg_med")" "$(fmt "$pg_p99")"
line "redis (XREAD BLOCK, n=$rd_n)" "$(fmt "$rd_med")" "$(fmt "$rd_p99")"

g="room"
bench_row "$g" "r:ping() without a room" "$none" runbook
bench_row "$g" "r:ping() publishing to postgres" "$(median < "$work/cost.postgres")" other
bench_row "$g" "r:ping() publishing to redis" "$(median < "$work/cost.redis")" other
