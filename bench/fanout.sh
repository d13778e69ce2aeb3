#!/usr/bin/env bash
# bench/fanout.sh: fan-out at scale (issue 12: 200 sessions, memory linear
# and under 100 MB).  For each host count N in $COUNTS (25 50 100 200),
# each host an SSH session of its own (connect, key exchange, login, exec
# `true`, close) to one loopback sshd:
#   runbook ssh.exec over the N hosts at once (parallel = N): wall time,
#     the process's peak RSS (GNU time's %M) and transcript bytes per host
#   runbook, one host after another (ssh.connect + s:exec + s:close)
#   parallel-ssh -p N, when installed
# and a runbook whose one step does nothing, for the RSS the host starts
# with.  R rounds (default 3), interleaved; the wall times are the minimum
# of the rounds (this machine is shared: the spread is printed), the RSS
# the maximum.  The sshd (tests/servers/sshd.py) runs with MaxStartups
# 400:30:600, since N unauthenticated connections arrive at once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/common.sh"
COUNTS=${COUNTS:-"25 50 100 200"}
R=${R:-3}

bench_begin fanout /usr/sbin/sshd ssh ssh-keygen
export XDG_STATE_HOME="$work/state"
serve sshd 400:30:600
read -r port user key < <(/usr/bin/python3 -c 'import json, sys; d = json.load(sys.stdin)
print(d["port"], d["user"], d["key"]); print(d["known_hosts_line"], file=open(sys.argv[1], "w"))' \
  "$work/known_hosts" < "$work/server.out")
opts="port = $port, user = \"$user\", key = \"$key\", known_hosts = \"$work/known_hosts\", connect_timeout = 120"

cat > "$work/none.lua" <<EOF
runbook { name = "fanout-none" }
step("nothing", function() end)
EOF
for n in $COUNTS; do
  cat > "$work/fan-$n.lua" <<EOF
runbook { name = "fanout-$n" }
step("fan", function()
  local hosts = {}
  for i = 1, $n do hosts[i] = "127.0.0.1" end
  ssh.exec(hosts, "true", { $opts, parallel = $n, quiet = true })
end)
EOF
  cat > "$work/seq-$n.lua" <<EOF
runbook { name = "fanout-seq-$n" }
step("one after another", function()
  for _ = 1, $n do
    local s = ssh.connect{ host = "127.0.0.1", $opts }
    s:exec("true", { quiet = true })
    s:close()
  end
end)
EOF
  for _ in $(seq "$n"); do echo "127.0.0.1:$port"; done > "$work/hosts-$n"
done

# timed KIND N ROUND CMD...: run CMD, append "KIND N seconds rss_kb bytes"
# to $work/results (bytes: the transcript's, for runbook runs).  A runbook
# run that fails stops the bench; parallel-ssh's hosts that failed (its
# ssh clients time out on this loaded machine) are counted in
# $work/pssh-failed and said.
timed() {
  local kind=$1 n=$2 r=$3 t0 t1 rc=0
  shift 3
  t0=$EPOCHREALTIME
  /usr/bin/time -f "%M" -o "$work/rss" "$@" >"$work/out" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  if [ "$rc" != 0 ] && [ "$kind" = pssh ]; then
    echo "$n $(grep -c FAILURE "$work/out")" >> "$work/pssh-failed"
  elif [ "$rc" != 0 ]; then
    echo "bench/fanout.sh: $kind $n failed:" >&2; tail -20 "$work/out" >&2; exit 1
  fi
  local bytes=0
  [ -f "$work/t.jsonl" ] && bytes=$(stat -c %s "$work/t.jsonl") && rm -f "$work/t.jsonl"
  awk -v k="$kind" -v n="$n" -v a="$t0" -v b="$t1" -v m="$(tail -1 "$work/rss")" -v by="$bytes" \
    'BEGIN { printf "%s %s %.6f %s %s\n", k, n, b - a, m, by }' >> "$work/results"
}

rb=("$RUNBOOK_BIN" run --yes --transcript "$work/t.jsonl")
: > "$work/results"
have_pssh=$(command -v parallel-ssh || true)
for r in $(seq "$R"); do
  timed none 0 "$r" "${rb[@]}" "$work/none.lua"
  for n in $COUNTS; do
    timed fan "$n" "$r" "${rb[@]}" "$work/fan-$n.lua"
    timed seq "$n" "$r" "${rb[@]}" "$work/seq-$n.lua"
    [ -z "$have_pssh" ] || timed pssh "$n" "$r" parallel-ssh -h "$work/hosts-$n" -p "$n" -l "$user" -t 120 \
      -x "-F /dev/null -i $key -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=$work/known_hosts -o StrictHostKeyChecking=yes" \
      true
  done
done

# stat KIND N FIELD: "min max" of the rounds' FIELD (3 seconds, 4 rss KB, 5 bytes)
stat_of() { awk -v k="$1" -v n="$2" -v f="$3" '$1 == k && $2 == n { v = $f; if (c++ == 0 || v < lo) lo = v;
  if (c == 1 || v > hi) hi = v } END { if (c) print lo, hi; else print "- -" }' "$work/results"; }

read -r _ base_kb < <(stat_of none 0 4)
printf '\nfan-out: `true` on N ssh sessions to one loopback sshd (%s), %s, %s rounds, %s\n' \
  "$(/usr/sbin/sshd -V 2>&1 | head -1 | cut -d, -f1 || true)" "$(pkg-config --modversion libssh2 2>/dev/null || echo libssh2)" \
  "$R" "$(date -u +%F)"
printf 'a runbook that does nothing: peak RSS %.1f MB\n' "$(awk -v k="$base_kb" 'BEGIN { print k / 1024 }')"
printf '%5s  %10s %14s %10s  %22s %22s %22s\n' hosts "peak RSS" "RSS/host" "bytes/host" \
  "runbook ssh.exec" "one after another" "parallel-ssh -p N"
for n in $COUNTS; do
  read -r _ rss < <(stat_of fan "$n" 4)
  read -r by _ < <(stat_of fan "$n" 5)
  read -r f_lo f_hi < <(stat_of fan "$n" 3)
  read -r s_lo s_hi < <(stat_of seq "$n" 3)
  read -r p_lo p_hi < <(stat_of pssh "$n" 3)
  span() { [ "$1" = - ] && echo "-" || echo "$(fmt "$1") ($(fmt "$2"))"; }
  printf '%5s  %7.1f MB %11.1f KB %10d  %22s %22s %22s\n' "$n" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
    "$(awk -v k="$rss" -v b="$base_kb" -v n="$n" 'BEGIN { print (k - b) / n }')" "$((by / n))" \
    "$(span "$f_lo" "$f_hi")" "$(span "$s_lo" "$s_hi")" "$(span "$p_lo" "$p_hi")"
  g="$n ssh sessions (fan-out at scale)"
  bench_row "$g" "runbook ssh.exec, parallel = $n" "$f_lo" fan
  bench_row "$g" "runbook, one after another" "$s_lo" seq
  [ "$p_lo" = - ] || bench_row "$g" "parallel-ssh -p $n" "$p_lo" pssh
  bench_row "peak RSS of ssh.exec over N" "$n hosts at once" "$((rss * 1024))" rss
done
[ ! -s "$work/pssh-failed" ] ||
  awk '{ printf "parallel-ssh -p %s: %s host(s) failed in one round (timed all the same)\n", $1, $2 }' "$work/pssh-failed"
echo "(wall: the fastest round, the slowest in parentheses; RSS/host: (peak - the do-nothing run's) / N)"
