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
. "$here/common.sh"
N=${N:-5000}
CLI_N=${CLI_N:-100}

bench_begin redis redis-server redis-cli gcc pkg-config
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
    printf("%.9f\n", median(t, n));
    redisFree(c);
    free(t);
    return 0;
}
EOF
# shellcheck disable=SC2046
gcc -I"$here" -O2 -o "$work/ping" "$work/ping.c" $(pkg-config --cflags --libs hiredis)
raw=$("$work/ping" "$port" "$N")

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
  io.stdout:write(string.format("RESULT %.9f\n", t[$N // 2 + 1]))
end)
EOF
rb=$("$RUNBOOK_BIN" run --yes --transcript "$work/t.jsonl" "$work/bench.lua" | sed -n 's/^RESULT //p')
[ -n "$rb" ] || { echo "the runbook benchmark failed" >&2; exit 1; }

# (c) redis-cli ping per call ---------------------------------------------------
cli=$(wall_median "$CLI_N" redis-cli -p "$port" ping)

# table ----------------------------------------------------------------------------
echo "Redis PING on an open connection, loopback, median per call (redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'))"
printf '%-42s %12s %14s\n' "how" "per call" "vs hiredis"
printf '%-42s %12s %14s\n' "(a) raw hiredis, C (n=$N)" "$(fmt "$raw")" "1.00x"
printf '%-42s %12s %14s\n' "(b) runbook r:ping() (n=$N)" "$(fmt "$rb")" "$(ratio "$rb" "$raw")"
printf '%-42s %12s %14s\n' "(c) redis-cli ping, a process (n=$CLI_N)" "$(fmt "$cli")" "$(ratio "$cli" "$raw")"
printf '%-42s %12s\n' "redis-cli / runbook" "$(ratio "$cli" "$rb")"

g="redis PING (open conn)"
bench_row "$g" "raw hiredis, C (n=$N)" "$raw" raw
bench_row "$g" "runbook r:ping() (n=$N)" "$rb" runbook
bench_row "$g" "redis-cli ping (n=$CLI_N)" "$cli" cli
