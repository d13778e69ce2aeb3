#!/usr/bin/env bash
# bench/ssh.sh: what a remote command costs over SSH.
#
#   (a) exec `true` on an open session, per call:
#       raw libssh2 in C (blocking mode, TCP_NODELAY): the floor
#       runbook s:exec in a loop inside a step, timed with runbook.loop.now()
#         around each call (includes the call event in the transcript)
#       `ssh host true`, one OpenSSH client process per call: what a bash
#         runbook pays
#   (b) `true` on 20 hosts (20 entries for the same sshd, each its own
#       session: connect, key exchange, login, exec, close), wall time:
#       runbook ssh.exec over the 20 at once
#       runbook, one host after another (ssh.connect + s:exec + s:close)
#       parallel-ssh -p 20
#
# Starts its own sshd with tests/servers/sshd.py (a free loopback port,
# a generated host key, client key and config, MaxStartups raised for the
# fan-out; SHLVL=1 so the remote bash does not read root's ~/.bashrc), and
# compiles the C client with gcc.  Needs /usr/sbin/sshd, ssh, ssh-keygen, parallel-ssh,
# gcc, libssh2-1-dev and a built runbook ($RUNBOOK_BIN, default
# build/runbook).  N=200 in-process execs, CLI_N=15 ssh runs, R=5 rounds
# of each fan-out inside a runbook run, ROUNDS=3 interleaved rounds of the
# raw client and the runbook.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
N=${N:-200}
CLI_N=${CLI_N:-15}
R=${R:-5}
ROUNDS=${ROUNDS:-3}
HOSTS=20

bench_begin ssh /usr/sbin/sshd ssh ssh-keygen parallel-ssh gcc pkg-config

# --- the server ---------------------------------------------------------------
serve sshd
read -r port user key < <(/usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin)
print(d["port"], d["user"], d["key"]); print(d["known_hosts_line"], file=open(sys.argv[1], "w"))' \
  "$work/known_hosts" < "$work/server.out")
ssh_opts=(-F /dev/null -p "$port" -i "$key" -o BatchMode=yes -o IdentitiesOnly=yes
          -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes)
ssh "${ssh_opts[@]}" "$user@127.0.0.1" true ||
  { echo "bench/ssh.sh: cannot log in to the test sshd" >&2; cat "$work/server.err" >&2; exit 1; }

# --- (a) raw libssh2 ------------------------------------------------------------
cat > "$work/exec.c" <<'EOF'
/* exec `true` N times on one libssh2 session (blocking), print the median
 * seconds per exec and the session setup time.  No host key check: this
 * is the floor, not a client. */
#include <arpa/inet.h>
#include <libssh2.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "timing.h"

static int run_true(LIBSSH2_SESSION *s)
{
    char buf[256];
    LIBSSH2_CHANNEL *ch = libssh2_channel_open_session(s);
    if (ch == NULL || libssh2_channel_exec(ch, "true") != 0)
        return -1;
    while (libssh2_channel_read(ch, buf, sizeof buf) > 0)
        ;
    libssh2_channel_close(ch);
    libssh2_channel_wait_closed(ch);
    int code = libssh2_channel_get_exit_status(ch);
    libssh2_channel_free(ch);
    return code;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        return 2;
    int port = atoi(argv[1]), n = atoi(argv[5]);
    const char *user = argv[2], *pub = argv[3], *key = argv[4];
    libssh2_init(0);
    double t0 = now();
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    LIBSSH2_SESSION *s = libssh2_session_init();
    libssh2_session_set_blocking(s, 1);
    if (libssh2_session_handshake(s, fd) != 0 ||
        libssh2_userauth_publickey_fromfile(s, user, pub, key, NULL) != 0) {
        fprintf(stderr, "handshake or login failed\n");
        return 1;
    }
    double setup = now() - t0;
    for (int i = 0; i < 3; i++)
        run_true(s);
    double *t = malloc(sizeof *t * (size_t)n);
    for (int i = 0; i < n; i++) {
        double t1 = now();
        if (run_true(s) != 0) {
            fprintf(stderr, "exec failed\n");
            return 1;
        }
        t[i] = now() - t1;
    }
    printf("%.9f %.9f\n", median(t, n), setup);
    libssh2_session_disconnect(s, "done");
    libssh2_session_free(s);
    return 0;
}
EOF
gcc -I"$here" -O2 -o "$work/exec" "$work/exec.c" $(pkg-config --cflags --libs libssh2)

# --- (a) and (b) in runbook ----------------------------------------------------
cat > "$work/bench.lua" <<EOF
runbook { name = "ssh-bench" }
local loop = require("runbook.loop")
local function median(t) table.sort(t); return t[(#t + 1) // 2] end
local base = { port = $port, user = "$user", key = "$key", known_hosts = "$work/known_hosts" }
local function opts(extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end
step("bench", function()
  local s = ssh.connect(opts{ host = "127.0.0.1" })
  for _ = 1, 3 do s:exec("true", { quiet = true }) end
  local per = {}
  for i = 1, $N do
    local t0 = loop.now()
    s:exec("true", { quiet = true })
    per[i] = loop.now() - t0
  end
  s:close()
  local hosts = {}
  for i = 1, $HOSTS do hosts[i] = "127.0.0.1" end
  local fan, seq = {}, {}
  for r = 1, $R do
    local t0 = loop.now()
    ssh.exec(hosts, "true", opts{ quiet = true })
    fan[r] = loop.now() - t0
    t0 = loop.now()
    for _, h in ipairs(hosts) do
      local c = ssh.connect(opts{ host = h })
      c:exec("true", { quiet = true })
      c:close()
    end
    seq[r] = loop.now() - t0
  end
  print(string.format("@RESULT %.6f %.6f %.6f", median(per), median(fan), median(seq)))
end)
EOF
# The machine is shared: ROUNDS rounds of the raw client and the runbook,
# interleaved so a burst of load hits both alike; the median round is
# reported, and each row's best and worst round go to bench/run.
for _ in $(seq "$ROUNDS"); do
  read -r e s < <("$work/exec" "$port" "$user" "$key.pub" "$key" "$N")
  echo "$e" >> "$work/raw.exec"
  echo "$s" >> "$work/raw.setup"
  rm -f "$work/t.jsonl"
  out=$("$RUNBOOK_BIN" run --yes --transcript "$work/t.jsonl" "$work/bench.lua") || {
    echo "$out" >&2; echo "bench/ssh.sh: the runbook part failed" >&2; exit 1; }
  read -r e f q < <(echo "$out" | sed -n 's/^@RESULT //p')
  echo "$e" >> "$work/rb.exec"
  echo "$f" >> "$work/rb.fan"
  echo "$q" >> "$work/rb.seq"
done
raw_exec=$(median < "$work/raw.exec")
raw_setup=$(median < "$work/raw.setup")
rb_exec=$(median < "$work/rb.exec")
rb_fan=$(median < "$work/rb.fan")
rb_seq=$(median < "$work/rb.seq")

# --- (a) one ssh process per call -----------------------------------------------
cli_exec=$(wall_median "$CLI_N" ssh "${ssh_opts[@]}" "$user@127.0.0.1" true)

# --- (b) parallel-ssh -------------------------------------------------------------
for _ in $(seq "$HOSTS"); do echo "127.0.0.1:$port"; done > "$work/hosts"
pssh_fan=$(wall_median "$R" parallel-ssh -h "$work/hosts" -p "$HOSTS" -l "$user" -t 60 \
  -x "-F /dev/null -i $key -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=yes" \
  true)

# --- the table ---------------------------------------------------------------------
printf '\nssh: medians on loopback sshd (%s), libssh2 %s, %s\n' \
  "$(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1 || true)" "$(pkg-config --modversion libssh2)" "$(date -u +%F)"
line "(a) exec \`true\` on an open session (N=$N, ssh: $CLI_N)" "per call" "vs raw"
row "    raw libssh2, C, blocking, TCP_NODELAY" "$raw_exec" "$raw_exec"
row "    runbook s:exec (recorded in the transcript)" "$rb_exec" "$raw_exec"
row "    ssh host true (a new OpenSSH client each call)" "$cli_exec" "$raw_exec"
line "(b) \`true\` on $HOSTS sessions, connect included (R=$R)" "wall" "vs runbook"
row "    runbook ssh.exec over $HOSTS hosts at once" "$rb_fan" "$rb_fan"
row "    runbook, one host after another" "$rb_seq" "$rb_fan"
row "    parallel-ssh -p $HOSTS" "$pssh_fan" "$rb_fan"
row "    (libssh2 session setup, raw C: connect, kex, login)" "$raw_setup"

g="ssh exec true (open session)"
bench_row "$g" "raw libssh2, C (n=$N)" "$raw_exec" raw "$work/raw.exec"
bench_row "$g" "runbook s:exec (n=$N)" "$rb_exec" runbook "$work/rb.exec"
bench_row "$g" "ssh host true (n=$CLI_N)" "$cli_exec" cli
g="$HOSTS ssh sessions (fan-out)"
bench_row "$g" "runbook, one after another" "$rb_seq" seq "$work/rb.seq"
bench_row "$g" "runbook ssh.exec" "$rb_fan" fan "$work/rb.fan"
bench_row "$g" "parallel-ssh -p $HOSTS" "$pssh_fan" pssh
