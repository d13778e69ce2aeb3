"""Fan-out at scale and --retry-failed, against real OpenSSH sshds on
loopback (tests/servers/sshd.py).

Scale: ssh.exec over 200 hosts and parallel over 200 items, each item its
own SSH session (connect, key exchange, login, exec, close) to one sshd on
one port, complete; the remote commands themselves count how many run at
once (each appends + and - to a log on this machine), and that count never
passes the fan-out's limit.

--retry-failed: a run where two hosts' sshd is down (refused), one
sshd's command fails and a parallel's item fails with an error budget of
0 (the items after it untried); after the cause is fixed, the retry runs
only those hosts and items, as the remote commands' own log shows, and
records what it retried.  Refused: a transcript that does not verify,
one of another runbook, one with nothing failed, one that is not there,
an item list that changed."""
import os
import resource
import subprocess
import unittest

from harness import RUNBOOK, LUA_EMIT, emitted
from servers.sshd import SSHServer, free_port
from sshcase import SSHServerCase, lua


class FanOutTestCase(SSHServerCase):
    def setUp(self):
        super().setUp()
        self.known_hosts = self.path("known_hosts")
        self.trust(self.server)
        self.log = self.path("remote.log")

    def base(self, server=None):
        s = server or self.server
        return (f"port = {s.port}, user = {lua(s.user)}, key = {lua(s.key)}, "
                f"known_hosts = {lua(self.known_hosts)}, connect_timeout = 120")

    def log_lines(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return f.read().split()

    def peak(self):
        """The most remote commands running at once, from their log."""
        running = most = 0
        for tok in self.log_lines():
            running += 1 if tok.startswith("+") else -1
            most = max(most, running)
        return most


# Each remote command: '+<its session's client port>' when it starts,
# '-<port>' when it ends (O_APPEND writes of a few bytes do not mix).
COUNTED = "c=${{SSH_CLIENT#* }}; c=${{c%% *}}; echo +$c >> {log}; sleep 0.3; echo -$c >> {log}"


class Scale(FanOutTestCase):
    def test_ssh_exec_over_200_hosts_completes_never_past_its_limit(self):
        cmd = COUNTED.format(log=self.log)
        rb = self.write("rb.lua", f"""runbook {{ name = "scale" }}
{LUA_EMIT}
step("fan", function()
  local hosts = {{}}
  for i = 1, 200 do hosts[i] = "127.0.0.1" end
  local rs = ssh.exec(hosts, {lua(cmd)}, {{ {self.base()}, parallel = 40, quiet = true }})
  local ok = 0
  for _, r in ipairs(rs) do if r.ok then ok = ok + 1 end end
  emit("ok", ok)
end)
""")
        p = self.run_rb("run", "--yes", "--transcript", self.path("t.jsonl"), rb, timeout=600)
        self.assertExit(p, 0)
        self.assertEqual(emitted(p.stdout)["ok"], [200])
        starts = [t for t in self.log_lines() if t.startswith("+")]
        self.assertEqual(len(starts), 200, "each of the 200 sessions ran its command")
        self.assertLessEqual(self.peak(), 40, "never more than parallel = 40 commands at once")
        self.assertGreater(self.peak(), 1, "the hosts ran concurrently")
        fan = [e for e in self.events(self.path("t.jsonl")) if e["event"] == "fanout"]
        self.assertEqual([(e["primitive"], e["items"], e["ok"], "failed" in e) for e in fan],
                         [("ssh", 200, 200, False)])

    def test_parallel_over_200_ssh_sessions_completes_never_past_its_limit(self):
        cmd = COUNTED.format(log=self.log)
        rb = self.write("rb.lua", f"""runbook {{ name = "scale" }}
{LUA_EMIT}
step("fan", function()
  local items = {{}}
  for i = 1, 200 do items[i] = i end
  local codes = parallel(items, function(i)
    local s <close> = ssh.connect{{ host = "127.0.0.1", {self.base()} }}
    return s:exec({lua(cmd)}, {{ quiet = true }}).code
  end, {{ limit = 25 }})
  emit("n", #codes)
end)
""")
        p = self.run_rb("run", "--yes", "--transcript", self.path("t.jsonl"), rb, timeout=600)
        self.assertExit(p, 0)
        self.assertEqual(emitted(p.stdout)["n"], [200])
        self.assertEqual(len([t for t in self.log_lines() if t.startswith("+")]), 200)
        self.assertLessEqual(self.peak(), 25, "never more than limit = 25 sessions at once")
        self.assertGreater(self.peak(), 1, "the items ran concurrently")


class DescriptorLimit(FanOutTestCase):
    """A soft limit on open files below the fan-out's sockets (the usual
    soft limit is 1024; 64 here for 120 hosts) is raised toward the hard
    limit, so no host fails with 'Too many open files'."""

    @classmethod
    def setUpClass(cls):
        cls.server = SSHServer(max_startups="400:30:600").start()   # 120 unauthenticated at once

    def test_a_fan_out_past_the_soft_limit_on_open_files_completes(self):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 1024:
            self.skipTest(f"the hard limit on open files is {hard}")
        rb = self.write("rb.lua", f"""runbook {{ name = "nofile" }}
{LUA_EMIT}
step("fan", function()
  local hosts = {{}}
  for i = 1, 120 do hosts[i] = "127.0.0.1" end
  local rs = ssh.exec(hosts, "true", {{ {self.base()}, parallel = 120, quiet = true, check = false }})
  local bad = {{}}
  for _, r in ipairs(rs) do if not r.ok then bad[#bad + 1] = r.error end end
  emit("bad", {{ #bad, bad[1] or "" }})
end)
""")
        p = subprocess.run(["sh", "-c", 'ulimit -Sn 64 && exec "$@"', "sh", RUNBOOK, "run", "--yes",
                            "--transcript", self.path("t.jsonl"), rb],
                           capture_output=True, text=True, timeout=600, env=self.env, cwd=self.tmp)
        self.assertExit(p, 0)
        self.assertEqual(emitted(p.stdout)["bad"], [[0, ""]], "no host failed (the first failure is shown)")


class HostNames(FanOutTestCase):
    def test_a_port_in_a_host_name_wins_over_the_fan_out_port(self):
        other = SSHServer().start()
        self.addCleanup(other.stop)
        self.trust(other)
        with open(other.authorized, "a") as f, open(self.server.key + ".pub") as k:
            f.write(k.read())
        cmd = f"echo ${{SSH_CONNECTION##* }} >> {self.log}"
        rb = self.write("rb.lua", f"""runbook {{ name = "names" }}
step("fan", function()
  ssh.exec({{ "127.0.0.1", "127.0.0.1:{other.port}", "{self.server.user}@127.0.0.1:{other.port}" }}, {lua(cmd)},
    {{ {self.base()} }})
end)
""")
        p = self.run_rb("run", "--yes", "--transcript", self.path("t.jsonl"), rb, timeout=120)
        self.assertExit(p, 0)
        self.assertEqual(sorted(self.log_lines()), sorted([str(self.server.port)] + [str(other.port)] * 2))


class RetryFailed(FanOutTestCase):
    """Server A answers; B's port is refused in the first run; C's commands
    fail while a marker file exists."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.c = SSHServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.c.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.trust(self.c)
        self.b = SSHServer()
        self.addCleanup(self.b.stop)
        self.trust(self.b)
        self.marker = self.path("c-is-broken")
        open(self.marker, "w").close()

    def runbook(self):
        s, b, c = self.server, self.b, self.c
        hosts = [s, b, s, c, s, b, c, s]      # (each server authorizes its own key)
        hosts = ", ".join(f'{{ host = "127.0.0.1", port = {h.port}, key = {lua(h.key)} }}' for h in hosts)
        # the remote command logs its server's port and fails on C while the marker is there
        cmd = (f"p=${{SSH_CONNECTION##* }}; echo host-$p >> {self.log}; "
               f"[ $p != {c.port} ] || [ ! -e {self.marker} ]")
        item = f"echo item-$1 >> {self.log}; [ $1 != b ] || [ ! -e {self.marker} ]"
        return self.write("rb.lua", f"""runbook {{ name = "retry" }}
{LUA_EMIT}
step("prepare", function() exec {{ "sh", "-c", "echo prepare >> {self.log}" }} end)
step("hosts", function()
  local rs = ssh.exec({{ {hosts} }}, {lua(cmd)}, {{ user = {lua(s.user)},
    known_hosts = {lua(self.known_hosts)}, connect_timeout = 60, check = false }})
  local ok = {{}}
  for i, r in ipairs(rs) do ok[i] = r.skipped and "done" or r.ok end
  emit("hosts", ok)
end)
step("items", function()
  local r = parallel({{ "a", "b", "c", "d" }}, function(x)
    return exec {{ "sh", "-c", {lua(item)}, "sh", x }}.ok
  end, {{ limit = 1, max_errors = 0 }})
  emit("items", r)
end)
step("after", function() exec {{ "sh", "-c", "echo after >> {self.log}" }} end)
""")

    def first_run(self):
        rb = self.runbook()
        t1 = self.path("t1.jsonl")
        p = self.run_rb("run", "--yes", "--transcript", t1, rb, timeout=120)
        self.assertExit(p, 1)     # step 'items' failed: b, and c d untried
        self.assertEqual(emitted(p.stdout)["hosts"], [[True, False, True, False, True, False, False, True]])
        return rb, t1

    def test_retry_runs_only_the_failed_and_untried_items(self):
        s, b, c = self.server, self.b, self.c
        rb, t1 = self.first_run()
        self.assertEqual(sorted(self.log_lines()), sorted(
            ["prepare"] + [f"host-{s.port}"] * 4 + [f"host-{c.port}"] * 2 + ["item-a", "item-b"]))
        os.remove(self.log)
        # the causes fixed: B's sshd up, C's marker gone
        b.start()
        os.remove(self.marker)
        t2 = self.path("t2.jsonl")
        # (no NAME: the transcript names the file it ran)
        p = self.run_rb("run", "--yes", "--retry-failed", t1, "--transcript", t2, timeout=120)
        self.assertExit(p, 0)
        self.assertIn("retrying 7 failed or untried item(s)", p.stdout)
        self.assertEqual(emitted(p.stdout)["hosts"], [["done", True, "done", True, "done", True, True, "done"]])
        # only B's and C's hosts, items b, c and d, then the step never reached
        self.assertEqual(sorted(self.log_lines()), sorted(
            [f"host-{b.port}"] * 2 + [f"host-{c.port}"] * 2 + ["item-b", "item-c", "item-d", "after"]))
        ev = self.events(t2)
        first = self.events(t1)
        start = ev[0]
        self.assertEqual(start["retry_failed"], {
            "transcript": t1, "run": first[0]["run"], "last_hash": first[-1]["hash"],
            "fanouts": [{"step": "hosts", "index": 2, "fanout": 1, "items": [2, 4, 6, 7]},
                        {"step": "items", "index": 3, "fanout": 1, "items": [2, 3, 4]}]})
        self.assertNotIn("resumed_from", start)
        ends = [(e["id"], e["status"]) for e in ev if e["event"] == "step.end"]
        self.assertEqual(ends, [("prepare", "skipped"), ("hosts", "ok"), ("items", "ok"), ("after", "ok")])
        fan = [(e["step"], e["retried"], e["done"], e["ok"]) for e in ev if e["event"] == "fanout"]
        self.assertEqual(fan, [("hosts", [2, 4, 6, 7], 4, 4), ("items", [2, 3, 4], 1, 3)])
        # a retry of the retried run: nothing left
        p = self.run_rb("run", "--yes", "--retry-failed", t2, rb)
        self.assertExit(p, 2)
        self.assertIn(f"--retry-failed: {t2} has nothing to retry", p.stderr)

    def test_a_broken_chain_another_runbook_or_a_missing_file_is_refused(self):
        rb, t1 = self.first_run()
        os.remove(self.log)
        with open(t1) as f:
            lines = f.readlines()
        edited = lines[2].replace('"ts":"2', '"ts":"1', 1)
        self.assertNotEqual(edited, lines[2])
        lines[2] = edited
        bad = self.write("bad.jsonl", "".join(lines))
        p = self.run_rb("run", "--yes", "--retry-failed", bad, rb)
        self.assertExit(p, 2)
        self.assertRegex(p.stderr, r"--retry-failed: \S+bad\.jsonl does not verify \(line 3: .*refusing to retry")
        other = self.write("other.lua", 'runbook { name = "other" }\nstep("x", function() end)\n')
        p = self.run_rb("run", "--yes", "--retry-failed", t1, other)
        self.assertExit(p, 2)
        self.assertIn(f'--retry-failed: {t1} is a transcript of runbook "retry", not', p.stderr)
        p = self.run_rb("run", "--yes", "--retry-failed", t1, "--resume", t1, rb)
        self.assertExit(p, 2)
        self.assertIn("--retry-failed and --resume: give one of them", p.stderr)
        p = self.run_rb("run", "--yes", "--retry-failed", self.path("none.jsonl"), rb)
        self.assertExit(p, 2)
        self.assertIn("--retry-failed: cannot read", p.stderr)
        self.assertIn("none.jsonl", p.stderr)
        self.assertEqual(self.log_lines(), [], "nothing ran")

    def test_an_item_list_that_changed_is_refused_not_guessed(self):
        rb, t1 = self.first_run()
        os.remove(self.log)
        with open(rb) as f:
            text = f.read()
        with open(rb, "w") as f:
            f.write(text.replace('{ "a", "b", "c", "d" }', '{ "a", "x", "c", "d" }'))
        p = self.run_rb("run", "--yes", "--retry-failed", t1, rb, timeout=120)
        self.assertExit(p, 1)
        self.assertIn('--retry-failed: item 2 of fan-out 1 of step "items" is x now, b in the run retried', p.stdout)
        self.assertNotIn("item-x", self.log_lines())


if __name__ == "__main__":
    unittest.main()
