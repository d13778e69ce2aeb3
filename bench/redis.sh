#!/usr/bin/env bash
# bench/redis.sh: what one Redis PING costs on an open connection.
#
#   (a) raw hiredis in C (blocking redisCommand): the floor
#   (a') the same with 10 us of busy work between calls (outside the timed
#       part): on a VM whose idle vCPUs poll before they halt (cpuidle
#       haltpoll), any gap between round trips makes the next one slower;
#       this row shows how much, for a client doing a runbook's bookkeeping
#   (b) runbook: r:ping() in a loop inside a runbook step, timed with
#       runbook.loop.now() around each call (includes the call event
#       written to the transcript and the event loop round); and the C
#       module's conn:call alone, through the same event loop, without the
#       Lua API and the transcript
#   (c) `redis-cli ping`, one process per call: what a bash runbook pays
#   (d) (a) and (b) again with the client and redis-server pinned to CPU 0
#       (pin_tree): no vCPU halts and wakes between the two, so the round
#       trip is two context switches and the floor is at its lowest (about
#       9 us here against 8-100 us unpinned, depending on where the
#       scheduler puts the two); what runbook adds is its own CPU time
#
# Starts its own redis-server on a free loopback port and compiles (a) with
# gcc; needs redis-server, redis-cli, gcc, libhiredis-dev and a built
# runbook ($RUNBOOK_BIN, default build/runbook).  N=5000 sets the number of
# in-process calls per round, ROUNDS=5 the rounds of (a), (a') and (b),
# interleaved so a burst of load hits them alike (the median round is
# reported), CLI_N=100 the number of redis-cli runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
N=${N:-5000}
CLI_N=${CLI_N:-100}
ROUNDS=${ROUNDS:-5}

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

/* ping PORT N GAP_US: the median seconds of N PINGs, GAP_US of busy work
 * after each */
int main(int argc, char **argv)
{
    int port = atoi(argv[1]), n = atoi(argv[2]);
    double gap = atof(argv[3]) * 1e-6;
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
        for (double g0 = now(); now() - g0 < gap;)
            ;
    }
    printf("%.9f\n", median(t, n));
    redisFree(c);
    free(t);
    return 0;
}
EOF
# shellcheck disable=SC2046
gcc -I"$here" -O2 -o "$work/ping" "$work/ping.c" $(pkg-config --cflags --libs hiredis)

# (b) runbook r:ping(), and its C module alone -----------------------------------
cat > "$work/bench.lua" <<EOF
runbook { name = "bench-redis" }
local now = require("runbook.loop").now
local function median(f)
  for _ = 1, 200 do f() end
  local t = {}
  for i = 1, $N do
    local t0 = now()
    f()
    t[i] = now() - t0
  end
  table.sort(t)
  return t[$N // 2 + 1]
end
step("ping", function()
  local r = redis.connect("redis://127.0.0.1:$port")
  io.stdout:write(string.format("RESULT api %.9f\n", median(function() r:ping() end)))
  local c = require("runbook.lazy")("runbook.redis").open("127.0.0.1", $port, 5, "bench")
  local argv = { "PING" }
  io.stdout:write(string.format("RESULT module %.9f\n", median(function() c:call(10, argv) end)))
end)
EOF

for _ in $(seq "$ROUNDS"); do
  "$work/ping" "$port" "$N" 0 >> "$work/raw"
  "$work/ping" "$port" "$N" 10 >> "$work/raw.gap"
  runbook_round "$work/bench.lua" "" "api module"
  pin_tree 0 "$server_pid"
  taskset -c 0 "$work/ping" "$port" "$N" 0 >> "$work/raw.cpu0"
  runbook_round "$work/bench.lua" .cpu0 "api module" taskset -c 0
  pin_tree "$ALL_CPUS" "$server_pid"
done
raw=$(median < "$work/raw")
raw_gap=$(median < "$work/raw.gap")
rb=$(median < "$work/rb.api")
rb_module=$(median < "$work/rb.module")
raw1=$(median < "$work/raw.cpu0")
rb1=$(median < "$work/rb.api.cpu0")
rb1_module=$(median < "$work/rb.module.cpu0")

# (c) redis-cli ping per call ---------------------------------------------------
cli=$(wall_median "$CLI_N" redis-cli -p "$port" ping)

# table ----------------------------------------------------------------------------
echo "Redis PING on an open connection, loopback, median per call (redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'))"
line "how (median of $ROUNDS rounds)" "per call" "vs hiredis"
row "(a) raw hiredis, C (n=$N)" "$raw" "$raw"
row "(a') raw hiredis, 10 us of work between calls" "$raw_gap" "$raw"
row "(b) runbook r:ping() (n=$N)" "$rb" "$raw"
row "(b) runbook's C module alone, on the event loop" "$rb_module" "$raw"
row "(c) redis-cli ping, a process (n=$CLI_N)" "$cli" "$raw"
row "(d) raw hiredis, client and server on CPU 0" "$raw1" "$raw1"
row "(d) runbook r:ping(), on CPU 0" "$rb1" "$raw1"
row "(d) runbook's C module alone, on CPU 0" "$rb1_module" "$raw1"
line "redis-cli / runbook" "$(ratio "$cli" "$rb")"

g="redis PING (open conn)"
bench_row "$g" "raw hiredis, C (n=$N)" "$raw" raw "$work/raw"
bench_row "$g" "raw hiredis, 10 us work between calls" "$raw_gap" other "$work/raw.gap"
bench_row "$g" "runbook C module alone (no API/transcript)" "$rb_module" other "$work/rb.module"
bench_row "$g" "runbook r:ping() (n=$N)" "$rb" runbook "$work/rb.api"
bench_row "$g" "redis-cli ping (n=$CLI_N)" "$cli" cli
g="redis PING, client+server on 1 CPU"
bench_row "$g" "raw hiredis, C, both pinned to CPU 0" "$raw1" raw "$work/raw.cpu0"
bench_row "$g" "runbook C module alone, pinned" "$rb1_module" other "$work/rb.module.cpu0"
bench_row "$g" "runbook r:ping(), pinned" "$rb1" runbook "$work/rb.api.cpu0"
