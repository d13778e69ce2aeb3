#!/usr/bin/env bash
# bench/redis.sh: what one Redis PING costs on an open connection.
#
#   (a) raw hiredis in C (blocking redisCommand): the floor
#   (b) runbook: r:ping() in a loop inside a runbook step, timed with
#       runbook.loop.now() around each call (includes the call event
#       written to the transcript and the event loop round)
#   (c) `redis-cli ping`, one process per call: what a bash runbook pays
#
# Starts its own redis-server on a free loopback port and compiles (a) with
# gcc; needs redis-server, redis-cli, gcc, libhiredis-dev and a built
# runbook ($RUNBOOK_BIN, default build/runbook).  N=5000 sets the number of
# in-process calls, CLI_N=100 the number of redis-cli runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNBOOK_BIN=${RUNBOOK_BIN:-$here/../build/runbook}
N=${N:-5000}
CLI_N=${CLI_N:-100}

for tool in redis-server redis-cli gcc pkg-config; do
  command -v "$tool" >/dev/null || { echo "bench/redis.sh: $tool is not installed" >&2; exit 2; }
done
[ -x "$RUNBOOK_BIN" ] || { echo "bench/redis.sh: no runbook binary at $RUNBOOK_BIN (set RUNBOOK_BIN)" >&2; exit 2; }

work=$(mktemp -d /tmp/rbbench-redis.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --logfile "$work/redis.log" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$port" ping >/dev/null || { echo "redis-server did not start" >&2; cat "$work/redis.log" >&2; exit 1; }

# (a) raw hiredis ------------------------------------------------------------
cat > "$work/ping.c" <<'EOF'
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "timing.h"

int main(int argc, char **argv)
{
    int port = atoi(argv[1]), n = atoi(argv[2]);
    redisContext *c = redisConnect("127.0.0.1", port);
    if (c == NULL || c->err) {
        fprintf(stderr, "connect: %s\n", c ? c->errstr : "oom");
        return 1;
    }
    double *t = malloc(sizeof *t * (size_t)n);
    for (int i = 0; i < 200; i++)
        freeReplyObject(redisCommand(c, "PING"));
    for (int i = 0; i < n; i++) {
        double t0 = now();
        redisReply *r = redisCommand(c, "PING");
        t[i] = now() - t0;
        if (r == NULL || r->type != REDIS_REPLY_STATUS) {
            fprintf(stderr, "PING failed\n");
            return 1;
        }
        freeReplyObject(r);
    }
    qsort(t, (size_t)n, sizeof *t, cmp);
    printf("%.2f\n", t[n / 2] * 1e6);
    redisFree(c);
    free(t);
    return 0;
}
EOF
# shellcheck disable=SC2046
gcc -I"$here" -O2 -o "$work/ping" "$work/ping.c" $(pkg-config --cflags --libs hiredis)
raw_us=$("$work/ping" "$port" "$N")

# (b) runbook r:ping() ---------------------------------------------------------
cat > "$work/bench.lua" <<EOF
runbook { name = "bench-redis" }
step("ping", function()
  local now = require("runbook.loop").now
  local r = redis.connect("redis://127.0.0.1:$port")
  for _ = 1, 200 do r:ping() end
  local t = {}
  for i = 1, $N do
    local t0 = now()
    r:ping()
    t[i] = now() - t0
  end
  table.sort(t)
  io.stdout:write(string.format("RESULT %.2f\n", t[$N // 2 + 1] * 1e6))
end)
EOF
rb_us=$("$RUNBOOK_BIN" run --yes --transcript "$work/t.jsonl" "$work/bench.lua" | sed -n 's/^RESULT //p')
[ -n "$rb_us" ] || { echo "the runbook benchmark failed" >&2; exit 1; }

# (c) redis-cli ping per call ---------------------------------------------------
: > "$work/cli.txt"
for _ in $(seq "$CLI_N"); do
  t0=$EPOCHREALTIME
  redis-cli -p "$port" ping >/dev/null
  t1=$EPOCHREALTIME
  echo "$t0 $t1" >> "$work/cli.txt"
done
cli_us=$(awk '{ printf "%.2f\n", ($2 - $1) * 1e6 }' "$work/cli.txt" | sort -n |
  awk '{ v[NR] = $1 } END { print v[int(NR / 2) + 1] }')

# table ----------------------------------------------------------------------------
fmt() { awk -v us="$1" 'BEGIN { if (us >= 1000) printf "%.2f ms", us / 1000; else printf "%.1f us", us }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1fx", a / b }'; }
echo "Redis PING on an open connection, loopback, median per call (redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'))"
printf '%-42s %12s %14s\n' "how" "per call" "vs hiredis"
printf '%-42s %12s %14s\n' "(a) raw hiredis, C (n=$N)" "$(fmt "$raw_us")" "1.0x"
printf '%-42s %12s %14s\n' "(b) runbook r:ping() (n=$N)" "$(fmt "$rb_us")" "$(ratio "$rb_us" "$raw_us")"
printf '%-42s %12s %14s\n' "(c) redis-cli ping, a process (n=$CLI_N)" "$(fmt "$cli_us")" "$(ratio "$cli_us" "$raw_us")"
printf '%-42s %12s\n' "redis-cli / runbook" "$(ratio "$cli_us" "$rb_us")"

# rows for bench/run's combined table: group, how, seconds
if [ -n "${BENCH_ROWS:-}" ]; then
  awk -v a="$raw_us" -v b="$rb_us" -v c="$cli_us" -v n="$N" -v cn="$CLI_N" 'BEGIN {
    printf "redis PING (open conn)\traw hiredis, C (n=%d)\t%.9f\traw\n", n, a / 1e6
    printf "redis PING (open conn)\trunbook r:ping() (n=%d)\t%.9f\trunbook\n", n, b / 1e6
    printf "redis PING (open conn)\tredis-cli ping (n=%d)\t%.9f\tcli\n", cn, c / 1e6 }' >> "$BENCH_ROWS"
fi
