#!/usr/bin/env bash
# bench/sql.sh: what one `SELECT 1` costs on PostgreSQL 15 on loopback.
#
#   (a) raw libpq in C (PQexecParams, blocking) on an open connection: the floor
#   (b) runbook: db:query("SELECT 1") in a loop inside a runbook step
#       (bench/sql.lua), timed with runbook.loop.now() around each call;
#       quiet, and with the statement echoed as a run shows it by default
#   (c) the real psql binary, `psql URL -c 'select 1'`, one process per
#       call: what a bash runbook pays (connect + scram-sha-256 + query)
#   (d) (a) and (b), quiet, again with the client and the server pinned to
#       CPU 0 (pin_tree, bench/common.sh): the floor at its lowest
#
# Starts its own cluster with tests/servers/postgres.py (no TLS, the
# password user over TCP), compiles (a) with gcc, prints medians and each
# one's ratio to (a), then stops the cluster.  Needs PostgreSQL 15 under
# /usr/lib/postgresql/15/bin, gcc, libpq-dev and a built runbook
# ($RUNBOOK_BIN, default build/runbook).  N=3000 in-process calls for (a)
# and RB_N=2000 for (b) per round, ROUNDS=5 rounds, CLI_N=50 psql runs for (c).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
PSQL=/usr/lib/postgresql/15/bin/psql
N=${N:-3000}
RB_N=${RB_N:-2000}
CLI_N=${CLI_N:-50}
ROUNDS=${ROUNDS:-5}

bench_begin sql gcc pkg-config "$PSQL"

serve postgres --no-tls
url=$(head -1 "$work/server.out")

# (a) raw libpq, and (c) timing psql processes from C so the measuring
# costs microseconds, not a shell's milliseconds ---------------------------
cat > "$work/baseline.c" <<'EOF'
#include <libpq-fe.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

#include "timing.h"

static int libpq(const char *url, int n, double *t)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(c));
        return 1;
    }
    for (int i = -200; i < n; i++) {
        double t0 = now();
        PGresult *r = PQexecParams(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0);
        if (i >= 0)
            t[i] = now() - t0;
        if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "1") != 0) {
            fprintf(stderr, "SELECT 1: %s", PQerrorMessage(c));
            return 1;
        }
        PQclear(r);
    }
    PQfinish(c);
    return 0;
}

static int psql(const char *bin, const char *url, int n, double *t)
{
    char *argv[] = { (char *)bin, "-X", "-A", "-t", "-q", (char *)url, "-c", "select 1", NULL };
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", 1, 0);
    for (int i = -2; i < n; i++) {
        double t0 = now();
        pid_t pid;
        int st;
        if (posix_spawn(&pid, bin, &fa, NULL, argv, environ) != 0 || waitpid(pid, &st, 0) != pid
            || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "psql failed\n");
            return 1;
        }
        if (i >= 0)
            t[i] = now() - t0;
    }
    posix_spawn_file_actions_destroy(&fa);
    return 0;
}

/* baseline libpq URL N | baseline psql PSQL URL N: prints the median in us */
int main(int argc, char **argv)
{
    int psql_mode = argc == 5 && strcmp(argv[1], "psql") == 0;
    if (!psql_mode && argc != 4)
        return 2;
    int n = atoi(argv[argc - 1]);
    double *t = malloc(sizeof *t * (size_t)n);
    int rc = psql_mode ? psql(argv[2], argv[3], n, t) : libpq(argv[2], n, t);
    if (rc == 0)
        printf("%.2f\n", median(t, n) * 1e6);
    free(t);
    return rc;
}
EOF
gcc -I"$here" -O2 -Wall -o "$work/baseline" "$work/baseline.c" $(pkg-config --cflags --libs libpq)

# runbook_us QUIET [CMD...]: one round of (b), the runbook started by CMD (taskset)
runbook_us() {
  local quiet=$1
  shift
  rm -f "$work/t.jsonl"
  XDG_STATE_HOME="$work/state" "$@" "$RUNBOOK_BIN" run "$here/sql.lua" --yes \
    --transcript "$work/t.jsonl" -p "db=$url" -p "n=$RB_N" -p "quiet=$quiet" >"$work/rb.out"
  sed -n 's/^@median_us=//p' "$work/rb.out"
}

# The machine is shared: interleave ROUNDS rounds of (a) and (b) so a burst
# of load hits all of them alike, and report the median round.
libpq_us= rb_quiet_us= rb_echo_us= libpq_pin_us= rb_pin_us=
for _ in $(seq "$ROUNDS"); do
  libpq_us+="$("$work/baseline" libpq "$url" "$N"),"
  rb_quiet_us+="$(runbook_us yes),"
  rb_echo_us+="$(runbook_us no),"
  pin_tree 0 "$server_pid"
  libpq_pin_us+="$(taskset -c 0 "$work/baseline" libpq "$url" "$N"),"
  rb_pin_us+="$(runbook_us yes taskset -c 0),"
  pin_tree "$ALL_CPUS" "$server_pid"
done
psql_us=$("$work/baseline" psql "$PSQL" "$url" "$CLI_N")

/usr/bin/python3 - "$libpq_us" "$rb_quiet_us" "$rb_echo_us" "$psql_us" "$N" "$RB_N" "$CLI_N" \
  "$libpq_pin_us" "$rb_pin_us" <<'PY'
import statistics, sys
libpq, quiet, echo, psql = (statistics.median(float(x) for x in a.split(",") if x)
                            for a in sys.argv[1:5])
n, rb_n, cli_n = sys.argv[5:8]
libpq_pin, rb_pin = (statistics.median(float(x) for x in a.split(",") if x) for a in sys.argv[8:10])
rows = [
    (f"(a) libpq PQexecParams, C ({n} calls)", libpq),
    (f"(b) runbook db:query, quiet ({rb_n} calls)", quiet),
    (f"(b) runbook db:query, echoed ({rb_n} calls)", echo),
    (f"(c) psql -c 'select 1', per process ({cli_n} runs)", psql),
    ("(d) libpq, client and server on CPU 0", libpq_pin),
    ("(d) runbook db:query, quiet, on CPU 0", rb_pin),
]
def fmt(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.1f} us"
print("SELECT 1 on PostgreSQL 15, loopback, scram-sha-256 user, no TLS; medians per call"
      " (for (a) and (b), the median of the rounds' medians)")
print(f"| {'method':<48} | {'per call':>10} | {'vs libpq':>9} |")
print(f"|{'-' * 50}|{'-' * 12}|{'-' * 11}|")
for name, us in rows:
    base = libpq_pin if name.startswith("(d)") else libpq
    print(f"| {name:<48} | {fmt(us):>10} | {us / base:>8.2f}x |")
import os
if os.environ.get("BENCH_ROWS"):
    with open(os.environ["BENCH_ROWS"], "a") as f:
        g = "sql SELECT 1 (open conn)"
        def spread(arg):
            v = [float(x) / 1e6 for x in arg.split(",") if x]
            return f"{min(v):.9f}\t{max(v):.9f}"
        f.write(f"{g}\traw libpq PQexecParams, C ({n} calls)\t{libpq / 1e6:.9f}\traw\t{spread(sys.argv[1])}\n")
        f.write(f"{g}\trunbook db:query ({rb_n} calls)\t{quiet / 1e6:.9f}\trunbook\t{spread(sys.argv[2])}\n")
        f.write(f"{g}\tpsql -c 'select 1' ({cli_n} runs)\t{psql / 1e6:.9f}\tcli\t{psql / 1e6:.9f}\t{psql / 1e6:.9f}\n")
        g = "sql SELECT 1, client+server on 1 CPU"
        f.write(f"{g}\traw libpq, C, both pinned to CPU 0\t{libpq_pin / 1e6:.9f}\traw\t{spread(sys.argv[8])}\n")
        f.write(f"{g}\trunbook db:query, pinned\t{rb_pin / 1e6:.9f}\trunbook\t{spread(sys.argv[9])}\n")
PY
