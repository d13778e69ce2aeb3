#!/usr/bin/env bash
# bench/http.sh: what one HTTP GET costs on a kept-alive connection, and a
# fan-out of 100 GETs.
#
#   (a) raw libcurl easy in C (curl_easy_perform on one handle): the floor
#   (b) runbook: http.get() in a loop inside a runbook step, timed with
#       runbook.loop.now() around each call (includes the multi interface,
#       the event loop round and the call event written to the transcript);
#       once with quiet = true, once printing the call line as by default;
#       and the C module's request alone (src/lib_http.c), through the same
#       event loop, without the Lua API and the transcript
#   (c) `curl -fsS URL`, one process per call: what a bash runbook pays
#   (d) (a) and (b) again with the client and nginx pinned to CPU 0
#       (pin_tree, bench/common.sh): the floor at its lowest
#   then 100 GETs from one runbook step: a plain loop vs parallel().
#
# Starts its own nginx (plain HTTP, loopback, a free port, its own prefix
# and config) and compiles (a) with gcc; needs nginx, curl, gcc,
# libcurl-dev and a built runbook ($RUNBOOK_BIN, default build/runbook).
# N=3000 sets the number of in-process calls, CLI_N=100 the curl runs,
# FAN=100 the fan-out size, ROUNDS=5 the rounds of (a) and (b).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
N=${N:-3000}
ROUNDS=${ROUNDS:-5}
CLI_N=${CLI_N:-100}
FAN=${FAN:-100}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

bench_begin http curl gcc pkg-config "$NGINX"
chmod 755 "$work"          # nginx's workers run as nobody
mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $work/tmp;
  server {
    listen 127.0.0.1:$port;
    location = /json { default_type application/json; return 200 '{"ok":true,"n":42}'; }
  }
}
EOF
"$NGINX" -p "$work" -c "$work/nginx.conf" 2>"$work/logs/start.log" &
server_pid=$!
url="http://127.0.0.1:$port/json"
for _ in $(seq 100); do
  curl -fsS "$url" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -fsS "$url" >/dev/null || { echo "nginx did not start" >&2; cat "$work/logs/"* >&2; exit 1; }

# (a) raw libcurl easy ---------------------------------------------------------
cat > "$work/get.c" <<'EOF'
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "timing.h"

static size_t sink(char *p, size_t s, size_t n, void *ud)
{
    (void)p; (void)ud;
    return s * n;
}

int main(int argc, char **argv)
{
    const char *url = argv[1];
    int n = atoi(argv[2]);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    double *t = malloc(sizeof *t * (size_t)n);
    for (int i = 0; i < 200 + n; i++) {
        double t0 = now();
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200) {
            fprintf(stderr, "GET failed: %s %ld\n", curl_easy_strerror(rc), status);
            return 1;
        }
        if (i >= 200)
            t[i - 200] = now() - t0;
    }
    printf("%.9f\n", median(t, n));
    curl_easy_cleanup(e);
    free(t);
    return 0;
}
EOF
# shellcheck disable=SC2046
gcc -I"$here" -O2 -o "$work/get" "$work/get.c" $(pkg-config --cflags --libs libcurl)

# (b) runbook http.get, and the fan-out ---------------------------------------
cat > "$work/bench.lua" <<EOF
runbook { name = "bench-http" }
local now = require("runbook.loop").now

-- The median time of n calls of get.
local function median(n, get)
  local t = {}
  for i = 1, n do
    local t0 = now()
    local r = get()
    t[i] = now() - t0
    if r.status ~= 200 then error("status " .. r.status) end
  end
  table.sort(t)
  return t[n // 2 + 1]
end

step("per call", function()
  local quiet = function() return http.get("$url", { quiet = true }) end
  median(200, quiet)
  io.stdout:write(string.format("RESULT quiet %.9f\n", median($N, quiet)))
  io.stdout:write(string.format("RESULT shown %.9f\n", median($N // 3, function() return http.get("$url") end)))
  local request = require("runbook.lazy")("runbook.http").request
  local spec = { method = "GET", url = "$url", timeout = 30 }
  local module = function() return request(spec) end
  median(200, module)
  io.stdout:write(string.format("RESULT module %.9f\n", median($N, module)))
end)

step("fan-out", function()
  local items = {}
  for i = 1, $FAN do items[i] = i end
  local get = function() return http.get("$url", { quiet = true }).status end
  parallel(items, get)                       -- warm: open the connections
  local seq, par = {}, {}
  for round = 1, 5 do
    local t0 = now()
    for i = 1, $FAN do get(i) end
    seq[round] = now() - t0
    t0 = now()
    parallel(items, get)
    par[round] = now() - t0
  end
  table.sort(seq)
  table.sort(par)
  io.stdout:write(string.format("RESULT seq %.9f\nRESULT par %.9f\n", seq[3], par[3]))
end)
EOF
# The machine is shared: interleave ROUNDS rounds of (a) and (b) so a burst
# of load hits both alike, and report the median round.
results="quiet shown module seq par"
for _ in $(seq "$ROUNDS"); do
  "$work/get" "$url" "$N" >> "$work/raw"
  runbook_round "$work/bench.lua" "" "$results"
  pin_tree 0 "$server_pid"
  taskset -c 0 "$work/get" "$url" "$N" >> "$work/raw.cpu0"
  runbook_round "$work/bench.lua" .cpu0 "$results" taskset -c 0
  pin_tree "$ALL_CPUS" "$server_pid"
done
raw=$(median < "$work/raw")
rb=$(median < "$work/rb.quiet")
rb_shown=$(median < "$work/rb.shown")
rb_module=$(median < "$work/rb.module")
seq=$(median < "$work/rb.seq")
par=$(median < "$work/rb.par")
raw1=$(median < "$work/raw.cpu0")
rb1=$(median < "$work/rb.quiet.cpu0")
rb1_module=$(median < "$work/rb.module.cpu0")

# (c) curl -fsS per call -------------------------------------------------------
cli=$(wall_median "$CLI_N" curl -fsS "$url")

# table -------------------------------------------------------------------------
echo "HTTP GET on a kept-alive connection, loopback, median per call" \
  "($("$NGINX" -v 2>&1 | sed 's/.*version: //'), $(curl --version | head -1 | cut -d' ' -f1-2))"
line "how (median of $ROUNDS rounds)" "per call" "vs libcurl"
row "(a) raw libcurl easy, C (n=$N)" "$raw" "$raw"
row "(b) runbook http.get, quiet (n=$N)" "$rb" "$raw"
row "(b) runbook http.get, call line shown (n=$((N / 3)))" "$rb_shown" "$raw"
row "(b) runbook's C module alone, on the event loop (n=$N)" "$rb_module" "$raw"
row "(c) curl -fsS URL, a process (n=$CLI_N)" "$cli" "$raw"
row "(d) raw libcurl easy, client and nginx on CPU 0" "$raw1" "$raw1"
row "(d) runbook http.get, quiet, on CPU 0" "$rb1" "$raw1"
row "(d) runbook's C module alone, on CPU 0" "$rb1_module" "$raw1"
line "curl CLI / runbook http.get" "$(ratio "$cli" "$rb")"
echo
per_get() { fmt "$(awk -v a="$1" -v n="$FAN" 'BEGIN { print a / n }')"; }
line "$FAN GETs from one step (median of 5)" "wall" "per GET"
line "sequential loop" "$(fmt "$seq")" "$(per_get "$seq")"
line "parallel()" "$(fmt "$par")" "$(per_get "$par")"
line "sequential / parallel" "$(ratio "$seq" "$par")"

g="http GET (keep-alive)"
bench_row "$g" "raw libcurl easy, C (n=$N)" "$raw" raw "$work/raw"
bench_row "$g" "runbook C module alone (no API/transcript)" "$rb_module" other "$work/rb.module"
bench_row "$g" "runbook http.get (n=$N)" "$rb" runbook "$work/rb.quiet"
bench_row "$g" "curl -fsS URL (n=$CLI_N)" "$cli" cli
g="http GET, client+nginx on 1 CPU"
bench_row "$g" "raw libcurl easy, C, both pinned to CPU 0" "$raw1" raw "$work/raw.cpu0"
bench_row "$g" "runbook C module alone, pinned" "$rb1_module" other "$work/rb.module.cpu0"
bench_row "$g" "runbook http.get, pinned" "$rb1" runbook "$work/rb.quiet.cpu0"
bench_row "$FAN http GETs (fan-out)" "runbook, one after another" "$seq" seq "$work/rb.seq"
bench_row "$FAN http GETs (fan-out)" "runbook parallel()" "$par" fan "$work/rb.par"
