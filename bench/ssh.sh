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
# Starts its own sshd on a free loopback port with a generated host key,
# client key and config (MaxStartups raised for the fan-out; SHLVL=1 so
# the remote bash does not read root's ~/.bashrc), and compiles the C
# client with gcc.  Needs /usr/sbin/sshd, ssh, ssh-keygen, parallel-ssh,
# gcc, libssh2-1-dev and a built runbook ($RUNBOOK_BIN, default
# build/runbook).  N=200 in-process execs, CLI_N=15 ssh runs, R=5 rounds
# of each fan-out.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNBOOK_BIN=${RUNBOOK_BIN:-$here/../build/runbook}
N=${N:-200}
CLI_N=${CLI_N:-15}
R=${R:-5}
HOSTS=20

for tool in /usr/sbin/sshd ssh ssh-keygen parallel-ssh gcc pkg-config; do
  command -v "$tool" >/dev/null || { echo "bench/ssh.sh: $tool is not installed" >&2; exit 2; }
done
[ -x "$RUNBOOK_BIN" ] || { echo "bench/ssh.sh: no runbook binary at $RUNBOOK_BIN (set RUNBOOK_BIN)" >&2; exit 2; }

work=$(mktemp -d /tmp/rbbench-ssh.XXXXXX)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- the server ---------------------------------------------------------------
user=$(id -un)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ssh-keygen -q -t ed25519 -N '' -C '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -C '' -f "$work/id_ed25519"
cp "$work/id_ed25519.pub" "$work/authorized_keys"
cat > "$work/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 100:30:200
MaxSessions 200
UseDNS no
PrintMotd no
SetEnv SHLVL=1
LogLevel ERROR
EOF
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$work/host_key.pub")" > "$work/known_hosts"
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
server_pid=$!
key=$work/id_ed25519
ssh_opts=(-F /dev/null -p "$port" -i "$key" -o BatchMode=yes -o IdentitiesOnly=yes
          -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes)
for _ in $(seq 100); do
  ssh "${ssh_opts[@]}" "$user@127.0.0.1" true 2>/dev/null && break
  sleep 0.05
done
ssh "${ssh_opts[@]}" "$user@127.0.0.1" true || { echo "sshd did not start" >&2; cat "$work/sshd.log" >&2; exit 1; }

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

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
    qsort(t, (size_t)n, sizeof *t, cmp);
    printf("%.6f %.6f\n", t[n / 2], setup);
    libssh2_session_disconnect(s, "done");
    libssh2_session_free(s);
    return 0;
}
EOF
gcc -I"$here" -O2 -o "$work/exec" "$work/exec.c" $(pkg-config --cflags --libs libssh2)
read -r raw_exec raw_setup < <("$work/exec" "$port" "$user" "$key.pub" "$key" "$N")

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
out=$("$RUNBOOK_BIN" run --yes --transcript "$work/t.jsonl" "$work/bench.lua") || {
  echo "$out" >&2; echo "bench/ssh.sh: the runbook part failed" >&2; exit 1; }
read -r rb_exec rb_fan rb_seq < <(echo "$out" | sed -n 's/^@RESULT //p')

# --- (a) one ssh process per call -----------------------------------------------
for _ in $(seq "$CLI_N"); do
  t0=$EPOCHREALTIME
  ssh "${ssh_opts[@]}" "$user@127.0.0.1" true
  t1=$EPOCHREALTIME
  echo "$t1 - $t0" | bc -l
done | median > "$work/cli"
cli_exec=$(cat "$work/cli")

# --- (b) parallel-ssh -------------------------------------------------------------
for _ in $(seq "$HOSTS"); do echo "127.0.0.1:$port"; done > "$work/hosts"
for _ in $(seq "$R"); do
  t0=$EPOCHREALTIME
  parallel-ssh -h "$work/hosts" -p "$HOSTS" -l "$user" -t 60 \
    -x "-F /dev/null -i $key -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=yes" \
    true > "$work/pssh.out" || { cat "$work/pssh.out" >&2; exit 1; }
  t1=$EPOCHREALTIME
  echo "$t1 - $t0" | bc -l
done | median > "$work/pssh"
pssh_fan=$(cat "$work/pssh")

# --- the table ---------------------------------------------------------------------
fmt() { awk -v s="$1" 'BEGIN { if (s < 1) printf "%.2f ms", s * 1000; else printf "%.2f s", s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }
printf '\nssh: medians on loopback sshd (%s), libssh2 %s, %s\n' \
  "$(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1 || true)" "$(pkg-config --modversion libssh2)" "$(date -u +%F)"
printf '%-58s %12s %10s\n' "(a) exec \`true\` on an open session (N=$N, ssh: $CLI_N)" "per call" "vs raw"
printf '%-58s %12s %10s\n' "    raw libssh2, C, blocking, TCP_NODELAY" "$(fmt "$raw_exec")" "1.00x"
printf '%-58s %12s %10s\n' "    runbook s:exec (recorded in the transcript)" "$(fmt "$rb_exec")" "$(ratio "$rb_exec" "$raw_exec")"
printf '%-58s %12s %10s\n' "    ssh host true (a new OpenSSH client each call)" "$(fmt "$cli_exec")" "$(ratio "$cli_exec" "$raw_exec")"
printf '%-58s %12s %10s\n' "(b) \`true\` on $HOSTS sessions, connect included (R=$R)" "wall" "vs runbook"
printf '%-58s %12s %10s\n' "    runbook ssh.exec over $HOSTS hosts at once" "$(fmt "$rb_fan")" "1.00x"
printf '%-58s %12s %10s\n' "    runbook, one host after another" "$(fmt "$rb_seq")" "$(ratio "$rb_seq" "$rb_fan")"
printf '%-58s %12s %10s\n' "    parallel-ssh -p $HOSTS" "$(fmt "$pssh_fan")" "$(ratio "$pssh_fan" "$rb_fan")"
printf '%-58s %12s\n' "    (libssh2 session setup, raw C: connect, kex, login)" "$(fmt "$raw_setup")"

# rows for bench/run's combined table: group, how, seconds, role
if [ -n "${BENCH_ROWS:-}" ]; then
  {
    printf 'ssh exec true (open session)\traw libssh2, C (n=%s)\t%s\traw\n' "$N" "$raw_exec"
    printf 'ssh exec true (open session)\trunbook s:exec (n=%s)\t%s\trunbook\n' "$N" "$rb_exec"
    printf 'ssh exec true (open session)\tssh host true (n=%s)\t%s\tcli\n' "$CLI_N" "$cli_exec"
    printf '%s ssh sessions (fan-out)\trunbook, one after another\t%s\tseq\n' "$HOSTS" "$rb_seq"
    printf '%s ssh sessions (fan-out)\trunbook ssh.exec\t%s\tfan\n' "$HOSTS" "$rb_fan"
    printf '%s ssh sessions (fan-out)\tparallel-ssh -p %s\t%s\tpssh\n' "$HOSTS" "$HOSTS" "$pssh_fan"
  } >> "$BENCH_ROWS"
fi
