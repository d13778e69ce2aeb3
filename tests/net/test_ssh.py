"""ssh.connect / s:exec / ssh.exec against a real OpenSSH sshd on loopback
(tests/servers/sshd.py): output, exit codes, stdin, host key checking
(unknown, accept_new, changed), authentication (wrong key, passphrase,
agent), each connection failure with its own message, a server that never
answers, exec timeouts, Ctrl-C, dry run, the transcript and fan-out over
20 sessions."""
import json
import os
import re
import signal
import subprocess
import time
import unittest

from harness import LUA_EMIT, RETRY_SKIP_ABORT, emitted
from servers.sshd import PASSPHRASE, SilentServer, SSHServer, StalledListener, free_port
from sshcase import SSHServerCase, lua

RSA = RETRY_SKIP_ABORT

PRELUDE = """runbook { name = "ssh-test" }
""" + LUA_EMIT


class SSHTestCase(SSHServerCase):
    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")
        self.known_hosts = self.path(".ssh", "known_hosts")
        os.makedirs(os.path.dirname(self.known_hosts), mode=0o700)
        self.trust(self.server)

    def opts(self, server=None, **extra):
        """Lua connect options for server (default: the class's sshd)."""
        server = server or self.server
        fields = {"host": "127.0.0.1", "port": server.port, "user": server.user, "key": server.key}
        fields.update(extra)
        return "{ " + ", ".join(f"{k} = {lua(v) if isinstance(v, str) else json.dumps(v)}"
                                for k, v in fields.items() if v is not None) + " }"

    def runbook(self, steps, *args, expect=0):
        """Run PRELUDE + steps; return the process and what it emitted
        (emit(k, v) -> {k: [v...]})."""
        path = self.write("rb.lua", PRELUDE + steps)
        p = self.run_rb("run", "--yes", "--transcript", self.transcript, *args, path)
        if expect is not None:
            self.assertExit(p, expect)
        return p, emitted(p.stdout)

    def calls(self):
        return [e for e in self.events(self.transcript)
                if e["event"] == "call" and e["primitive"] == "ssh"]

    def known_hosts_text(self):
        with open(self.known_hosts) as f:
            return f.read()


class Exec(SSHTestCase):
    def test_exec_returns_stdout_stderr_and_exit_code(self):
        p, out = self.runbook(f"""
step("exec", function()
  local s = ssh.connect{self.opts()}
  local r = s:exec("echo out; echo err >&2; exit 3", {{ check = false }})
  emit("failed", {{ r.code, r.ok, r.stdout, r.stderr, r.host }})
  r = s:exec("printf hi")
  emit("good", {{ r.code, r.ok, r.stdout, r.stderr }})
  r = s:exec({{ "printf", "%s|", "two words", "it's" }})
  emit("argv", r.stdout)
  r = s:exec("kill -TERM $$", {{ check = false }})
  emit("signal", {{ r.code, r.ok, r.signal }})
  s:close()
  try(s.exec, s, "true")
  local kept
  do
    local scoped <close> = ssh.connect{self.opts()}
    kept = scoped
  end
  emit("scoped_closed", kept.handle == nil)
end)
""")
        target = f"{self.server.user}@127.0.0.1:{self.server.port}"
        self.assertEqual(out["failed"], [[3, False, "out\n", "err\n", target]])
        self.assertEqual(out["good"], [[0, True, "hi", ""]])
        self.assertEqual(out["argv"], ["two words|it's|"], "a list must be quoted for the remote shell")
        self.assertEqual(out["signal"], [[143, False, "TERM"]])
        self.assertIn("| out", p.stdout, "the command's output is shown as it arrives")
        self.assertIn("the session is closed (connect again)", out["err"][0])
        self.assertEqual(out["scoped_closed"], [True], "a <close> variable must close the session")

    def test_exec_feeds_stdin_then_eof(self):
        p, out = self.runbook(f"""
step("stdin", function()
  local s = ssh.connect{self.opts()}
  emit("upper", s:exec("tr a-z A-Z", {{ stdin = "hello\\nworld\\n", quiet = true }}).stdout)
  -- 3 MiB: more than the channel's window, so the writes must wait for it
  emit("count", s:exec("wc -c", {{ stdin = string.rep("x", 3 * 1024 * 1024), quiet = true }}).stdout)
  emit("no_stdin", s:exec("cat; echo end", {{ quiet = true }}).stdout)
end)
""")
        self.assertEqual(out["upper"], ["HELLO\nWORLD\n"])
        self.assertEqual(out["count"][0].strip(), str(3 * 1024 * 1024))
        self.assertEqual(out["no_stdin"], ["end\n"], "without stdin= the command must see EOF at once")

    def test_nonzero_exit_raises_unless_check_false(self):
        p, out = self.runbook(f"""
step("check", function()
  local s = ssh.connect{self.opts()}
  try(s.exec, s, "echo boom >&2; exit 7")
  local r = s:exec("exit 7", {{ check = false }})
  emit("unchecked", {{ r.code, r.ok }})
end)
step("fails", function()
  local s = ssh.connect{self.opts()}
  s:exec("echo broken >&2; exit 2")
end)
""", expect=1)
        self.assertEqual(out["ok"], [False])
        self.assertRegex(out["err"][0], rf"ssh \w+@127\.0\.0\.1:{self.server.port}: `echo boom >&2; "
                         r"exit 7` exited with code 7: boom$")
        self.assertEqual(out["unchecked"], [[7, False]])
        self.assertRegex(p.stdout, r"rb\.lua:\d+: ssh \S+: `echo broken >&2; exit 2` exited with code 2: broken",
                         "the error must name the runbook's line")

    def test_exec_timeout_closes_the_channel_and_the_session_stays_usable(self):
        p, out = self.runbook(f"""
step("timeout", function()
  local s = ssh.connect{self.opts()}
  local t0 = time.clock()
  try(s.exec, s, "sleep 10", {{ timeout = 1 }})
  emit("elapsed", time.clock() - t0)
  emit("again", s:exec("echo again", {{ quiet = true }}).stdout)
  try(s.exec, s, "sleep 10", {{ timeout = 0.5 }})
  emit("third", s:exec("echo third", {{ quiet = true }}).stdout)
  s:close()
end)
""")
        self.assertEqual(out["ok"], [False, False])
        self.assertRegex(out["err"][0], r"ssh \S+: `sleep 10` timed out after 1\.0 s \(its channel was closed")
        self.assertGreaterEqual(out["elapsed"][0], 0.9)
        self.assertLess(out["elapsed"][0], 3, "the timeout must fire on time")
        self.assertEqual(out["again"], ["again\n"], "after a timeout the session must still run commands")
        self.assertEqual(out["third"], ["third\n"])

    def test_step_timeout_stops_a_remote_command(self):
        t0 = time.monotonic()
        p, out = self.runbook(f"""
step("slow", {{ timeout = 1 }}, function()
  local s = ssh.connect{self.opts()}
  s:exec("sleep 10")
end)
""", expect=1)
        self.assertLess(time.monotonic() - t0, 6)
        self.assertIn("`sleep 10` stopped: the step's timeout ran out", p.stdout)


class HostKeys(SSHTestCase):
    def test_unknown_host_key_is_refused_with_its_fingerprint(self):
        open(self.known_hosts, "w").close()
        p, out = self.runbook(f"""
step("unknown", function() try(ssh.connect, {self.opts()}) end)
""")
        err = out["err"][0]
        self.assertIn(f"ssh: host key for 127.0.0.1:{self.server.port} is not known "
                      f"(ED25519 {self.server.fingerprint()})", err)
        self.assertIn(self.known_hosts, err, "the message must name the known_hosts file")
        self.assertIn("accept_new = true", err, "the message must say how to accept the key")
        self.assertEqual(self.known_hosts_text(), "", "a refused key must not be written")

    def test_accept_new_adds_the_key_and_later_connects_check_it(self):
        os.remove(self.known_hosts)
        os.rmdir(os.path.dirname(self.known_hosts))
        p, out = self.runbook(f"""
step("accept", function()
  local s = ssh.connect{self.opts(accept_new=True)}
  emit("fp", s.fingerprint)
  s:close()
  s = ssh.connect{self.opts()}
  emit("second", s:exec("echo ok", {{ quiet = true }}).stdout)
end)
""")
        self.assertEqual(out["fp"], [self.server.fingerprint()])
        self.assertEqual(out["second"], ["ok\n"])
        self.assertEqual(self.known_hosts_text(), self.server.known_hosts_line(),
                         "exactly one entry, in OpenSSH's format")
        self.assertIn(f"added the host key of 127.0.0.1:{self.server.port}", p.stdout)
        found = subprocess.run(["ssh-keygen", "-F", f"[127.0.0.1]:{self.server.port}", "-f",
                                self.known_hosts], capture_output=True, text=True)
        self.assertEqual(found.returncode, 0, "OpenSSH must find the entry runbook wrote")
        self.assertEqual(os.stat(self.known_hosts).st_mode & 0o777, 0o600)

    def test_changed_host_key_is_refused_even_with_accept_new(self):
        other = SSHServer().start()     # the same address, another host key
        self.addCleanup(other.stop)
        with open(self.known_hosts, "w") as f:
            f.write("# a comment line\n")
        self.trust(self.server, port=other.port)
        p, out = self.runbook(f"""
step("changed", function()
  try(ssh.connect, {self.opts(other)})
  try(ssh.connect, {self.opts(other, accept_new=True)})
end)
""")
        self.assertEqual(out["ok"], [False, False])
        for err in out["err"]:
            self.assertIn(f"ssh: host key for 127.0.0.1:{other.port} has CHANGED "
                          f"(ED25519 {other.fingerprint()}), known_hosts says ED25519 "
                          f"{self.server.fingerprint()} ({self.known_hosts} line 2)", err)
            self.assertIn(f"ssh-keygen -R '[127.0.0.1]:{other.port}'", err)
        self.assertEqual(self.known_hosts_text().count("\n"), 2, "a changed key must never be added")


class KnownKeyTypes(SSHTestCase):
    """A server with an RSA and an ED25519 host key, known_hosts holding
    only one of them (plain, hashed or revoked): the key the server presents
    must be checked against the one on file, never appended in its place."""

    @classmethod
    def setUpClass(cls):
        # `server` also signs with ssh-rsa, the only RSA algorithm libssh2
        # 1.10 checks; `strict` keeps OpenSSH 9's default, SHA-2 only
        cls.server = SSHServer(host_keys=("rsa", "ed25519"), ssh_rsa=True).start()
        cls.strict = SSHServer(host_keys=("rsa", "ed25519")).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.strict.stop()

    def hold(self, *lines):
        with open(self.known_hosts, "w") as f:
            f.write("".join(lines))
        return self.known_hosts_text()

    def connect(self, server, **extra):
        return self.runbook(f"""
step("connect", function()
  local ok, s = try(ssh.connect, {self.opts(server, accept_new=True, **extra)})
  if ok then emit("key", {{ s.key_type, s.fingerprint }}) s:close() end
end)
""")

    def test_rsa_on_file_is_what_the_server_is_checked_against(self):
        before = self.hold(self.server.known_hosts_line(kind="rsa"))
        p, out = self.connect(self.server)
        self.assertEqual(out["err"], [""])
        self.assertEqual(out["key"], [["RSA", self.server.fingerprint("rsa")]],
                         "the RSA key on file must be negotiated and checked, not the ED25519 one")
        self.assertEqual(self.known_hosts_text(), before, "a host with a key on file gets nothing added")
        self.assertNotIn("added the host key", p.stdout)

    def test_changed_rsa_key_is_refused_though_the_server_has_another_type(self):
        other = SSHServer(host_keys=("rsa",))   # only for its RSA key; never started
        self.addCleanup(other.stop)
        kind, blob = other.host_pub()
        before = self.hold(f"[127.0.0.1]:{self.server.port} {kind} {blob}\n")
        p, out = self.connect(self.server)
        self.assertEqual(out["ok"], [False])
        self.assertIn(f"has CHANGED (RSA {self.server.fingerprint('rsa')}), known_hosts says RSA "
                      f"{other.fingerprint()}", out["err"][0])
        self.assertEqual(self.known_hosts_text(), before)

    def test_server_without_the_type_on_file_is_refused_not_appended(self):
        before = self.hold(self.strict.known_hosts_line(kind="rsa"))
        p, out = self.connect(self.strict)
        self.assertEqual(out["ok"], [False], "an ED25519 key must not be trusted in place of RSA")
        err = out["err"][0]
        self.assertIn(f"known_hosts {self.known_hosts} holds only RSA host keys for this host", err)
        self.assertIn("is not added", err)
        self.assertIn("ssh-rsa", err, "the message must say why RSA could not be negotiated")
        self.assertEqual(self.known_hosts_text(), before, "nothing may be appended")

    def test_ed25519_on_file_still_connects_to_a_server_with_both(self):
        before = self.hold(self.strict.known_hosts_line(kind="ed25519"))
        p, out = self.connect(self.strict)
        self.assertEqual(out["key"], [["ED25519", self.strict.fingerprint("ed25519")]])
        self.assertEqual(self.known_hosts_text(), before)

    def test_hashed_entry_is_found_and_its_type_negotiated(self):
        self.hold("# hashed by ssh-keygen -H\n", self.server.known_hosts_line(kind="rsa"))
        subprocess.run(["ssh-keygen", "-q", "-H", "-f", self.known_hosts], check=True,
                       capture_output=True)
        before = self.known_hosts_text()
        self.assertIn("|1|", before)
        self.assertNotIn("127.0.0.1", before)
        p, out = self.connect(self.server)
        self.assertEqual(out["key"], [["RSA", self.server.fingerprint("rsa")]])
        self.assertEqual(self.known_hosts_text(), before)

    def test_revoked_key_is_refused_with_its_line(self):
        kind, blob = self.strict.host_pub("ed25519")
        before = self.hold(self.strict.known_hosts_line(kind="ed25519"), f"@revoked * {kind} {blob}\n")
        p, out = self.connect(self.strict)
        self.assertEqual(out["ok"], [False])
        self.assertIn(f"ssh: host key for 127.0.0.1:{self.strict.port} (ED25519 "
                      f"{self.strict.fingerprint('ed25519')}) is REVOKED: {self.known_hosts} line 2 "
                      f"marks it @revoked", out["err"][0])
        self.assertEqual(self.known_hosts_text(), before)

    def test_revoked_key_is_not_trusted_on_first_use(self):
        kind, blob = self.strict.host_pub("ed25519")
        before = self.hold(f"@revoked [127.0.0.1]:{self.strict.port} {kind} {blob}\n")
        p, out = self.connect(self.strict)
        self.assertEqual(out["ok"], [False], "accept_new must not trust a revoked key")
        self.assertIn("is REVOKED", out["err"][0])
        self.assertEqual(self.known_hosts_text(), before)


class Auth(SSHTestCase):
    def test_wrong_key_fails_authentication_naming_the_key(self):
        p, out = self.runbook(f"""
step("auth", function() try(ssh.connect, {self.opts(key=self.server.wrong_key)}) end)
""")
        self.assertRegex(out["err"][0], rf"ssh: authentication failed for \w+@127\.0\.0\.1:{self.server.port} "
                         rf"\(tried key {re.escape(self.server.wrong_key)}: refused by the server; "
                         r"the server accepts: publickey\)")

    def test_key_with_passphrase(self):
        p, out = self.runbook(f"""
step("pass", function()
  local s = ssh.connect{self.opts(key=self.server.pass_key, passphrase=PASSPHRASE)}
  emit("ran", s:exec("echo in", {{ quiet = true }}).stdout)
  try(ssh.connect, {self.opts(key=self.server.pass_key, passphrase="not the passphrase")})
  try(ssh.connect, {self.opts(key=self.server.pass_key)})
end)
""")
        self.assertEqual(out["ran"], ["in\n"])
        for err in out["err"]:
            self.assertIn(f"tried key {self.server.pass_key}: cannot be used: wrong passphrase", err)
        with open(self.transcript) as f:
            self.assertNotIn(PASSPHRASE, f.read(), "the passphrase must never reach the transcript")
        self.assertNotIn(PASSPHRASE, p.stdout + p.stderr)
        connect = [c for c in self.calls() if c["args"]["op"] == "connect"][0]
        self.assertEqual(connect["args"]["passphrase"], "***")

    def test_agent_keys(self):
        sock = self.path("agent.sock")
        agent = subprocess.run(["ssh-agent", "-a", sock], capture_output=True, text=True, check=True)
        pid = int(re.search(r"SSH_AGENT_PID=(\d+)", agent.stdout).group(1))
        self.addCleanup(os.kill, pid, signal.SIGTERM)
        env = {"SSH_AUTH_SOCK": sock}
        subprocess.run(["ssh-add", self.server.key], env=dict(os.environ, **env), check=True,
                       capture_output=True)
        path = self.write("rb.lua", PRELUDE + f"""
step("agent", function()
  local s = ssh.connect{self.opts(key=None, agent=True)}
  emit("ran", s:exec("echo via agent", {{ quiet = true }}).stdout)
end)
""")
        p = self.run_rb("run", "--yes", "--transcript", self.transcript, path, env=env)
        self.assertExit(p, 0)
        self.assertIn('@ran="via agent\\n"', p.stdout)
        connect = self.calls()[0]
        self.assertEqual(connect["result"]["auth"][:9], "agent key")


class ConnectFailures(SSHTestCase):
    def test_connection_refused(self):
        port = free_port()
        p, out = self.runbook(f"""
step("refused", function() try(function() ssh.connect{self.opts(port=port)} end) end)
""")
        self.assertRegex(out["err"][0], rf"rb\.lua:\d+: ssh \w+@127\.0\.0\.1:{port}: connection refused by "
                         rf"127\.0\.0\.1:{port} \(is sshd running and listening on port {port}\?")

    def test_name_not_resolved(self):
        p, out = self.runbook(f"""
step("dns", function() try(ssh.connect, {self.opts(host="no-such-host.invalid")}) end)
""")
        self.assertRegex(out["err"][0], r"ssh \w+@no-such-host\.invalid:\d+: cannot resolve host name "
                         r"'no-such-host\.invalid': .+ \(check the host name and DNS\)")

    def test_server_that_accepts_and_never_answers_times_out(self):
        silent = SilentServer()
        self.addCleanup(silent.stop)
        p, out = self.runbook(f"""
step("silent", function()
  local t0 = time.clock()
  try(ssh.connect, {self.opts(port=silent.port, timeout=1)})
  emit("elapsed", time.clock() - t0)
end)
""")
        self.assertRegex(out["err"][0], rf"ssh \w+@127\.0\.0\.1:{silent.port}: SSH handshake timed out "
                         r"after 1\.0 s \(the server accepted the connection but did not answer")
        self.assertGreaterEqual(out["elapsed"][0], 0.9)
        self.assertLess(out["elapsed"][0], 3)

    def test_tcp_connect_that_gets_no_answer_times_out(self):
        stalled = StalledListener()
        self.addCleanup(stalled.stop)
        p, out = self.runbook(f"""
step("stalled", function()
  local t0 = time.clock()
  try(ssh.connect, {self.opts(port=stalled.port, timeout=0.5)})
  emit("elapsed", time.clock() - t0)
end)
""")
        self.assertRegex(out["err"][0], rf"ssh \w+@127\.0\.0\.1:{stalled.port}: connect timed out "
                         r"after 0\.5 s \(is the host up, and the port not dropped by a firewall\? "
                         r"check host= and port=; timeout= raises the limit\)")
        self.assertLess(out["elapsed"][0], 2)

    def test_missing_key_file_is_refused_before_connecting(self):
        p, out = self.runbook(f"""
step("nokey", function() try(ssh.connect, {self.opts(key=self.path("nope"))}) end)
""")
        self.assertIn(f"ssh.connect: cannot read key file {self.path('nope')}", out["err"][0])
        self.assertEqual(self.calls(), [], "nothing was attempted, so nothing is recorded")

    def test_unknown_option_is_refused(self):
        p, out = self.runbook("""
step("typo", function() try(ssh.connect, { host = "127.0.0.1", acept_new = true }) end)
""")
        self.assertIn('ssh.connect: unknown option "acept_new"', out["err"][0])


class Interrupt(SSHTestCase):
    def test_ctrl_c_interrupts_a_remote_command(self):
        path = self.write("ctrlc.lua", PRELUDE + f"""
step("block", function()
  local s = ssh.connect{self.opts()}
  s:exec("echo started; sleep 10")
end)
""")
        s = self.pty("run", "--transcript", self.transcript, path, env={"NO_COLOR": "1"})
        s.expect(r"\| started")
        t0 = time.monotonic()
        s.ctrl_c()
        s.expect(rf"ssh \w+@127\.0\.0\.1:{self.server.port}: `echo started; sleep 10` interrupted \(Ctrl-C\)")
        s.expect(RSA)
        self.assertLess(time.monotonic() - t0, 3.0, "Ctrl-C took too long to interrupt the exec")
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        call = self.calls()[-1]
        self.assertEqual((call["args"]["op"], call["outcome"]), ("exec", "error"))
        self.assertIn("interrupted", call["error"])


    def test_ctrl_c_interrupts_a_fan_out(self):
        path = self.write("fan.lua", PRELUDE + f"""
step("fan", function()
  local hosts = {{}}
  for i = 1, 5 do hosts[i] = "127.0.0.1" end
  print("fanning out")
  ssh.exec(hosts, "sleep 10", {{ port = {self.server.port}, user = {lua(self.server.user)},
    key = {lua(self.server.key)} }})
end)
""")
        s = self.pty("run", "--transcript", self.transcript, path, env={"NO_COLOR": "1"})
        s.expect("fanning out")
        deadline = time.monotonic() + 10
        while len([c for c in self.calls() if c["args"]["op"] == "connect"]) < 5:
            self.assertLess(time.monotonic(), deadline, "the 5 sessions never connected")
            time.sleep(0.05)
        time.sleep(0.3)                 # the execs are under way
        t0 = time.monotonic()
        s.ctrl_c()
        s.expect(r"ssh\.exec on 5 hosts: interrupted \(Ctrl-C\)")
        s.expect(RSA)
        self.assertLess(time.monotonic() - t0, 3.0, "Ctrl-C took too long to interrupt the fan-out")
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        execs = [c for c in self.calls() if c["args"]["op"] == "exec"]
        self.assertEqual(len(execs), 5)
        self.assertTrue(all("interrupted" in c["error"] for c in execs), execs)


class DryRun(SSHTestCase):
    def test_scenario_replaces_connect_and_exec(self):
        scenario = self.write("scenario.lua", """return {
  { primitive = "ssh", match = "connect .*:1$", error = "connect timed out after 10.0 s" },
  { primitive = "ssh", match = "systemctl", result = { code = 3, stderr = "inactive" } },
}
""")
        p, out = self.runbook(f"""
step("scenario", function()
  try(ssh.connect, {self.opts(port=1)})
  local s = ssh.connect{self.opts()}
  local r = s:exec("systemctl is-active web", {{ check = false }})
  emit("replaced", {{ r.code, r.ok, r.stderr, r.stdout }})
  emit("real", s:exec("echo real", {{ quiet = true }}).stdout)
end)
""", "--scenario", scenario)
        self.assertEqual(out["err"], ["ssh: connect timed out after 10.0 s"])
        self.assertEqual(out["replaced"], [[3, False, "inactive", ""]])
        self.assertEqual(out["real"], ["real\n"])

    def test_dry_run_simulates_exec_unless_readonly(self):
        marker = self.path("touched")
        open(self.known_hosts, "w").close()
        p, out = self.runbook(f"""
step("rehearse", function()
  local s = ssh.connect{self.opts(accept_new=True)}
  local r = s:exec("touch {marker}")
  emit("simulated", {{ r.code, r.ok, r.stdout, r.dry_run }})
  emit("real", s:exec("echo real", {{ readonly = true }}).stdout)
  local rs = ssh.exec({{ "127.0.0.1", "127.0.0.1" }}, "touch {marker}",
    {{ port = {self.server.port}, user = {lua(self.server.user)}, key = {lua(self.server.key)},
       accept_new = true }})
  emit("fan", {{ #rs, rs[1].ok, rs[2].dry_run }})
end)
""", "--dry-run")
        self.assertFalse(os.path.exists(marker), "a dry run must not run a mutating remote command")
        self.assertEqual(out["simulated"], [[0, True, "", True]])
        self.assertEqual(out["real"], ["real\n"], "a readonly command runs for real in a dry run")
        self.assertEqual(out["fan"], [[2, True, True]])
        self.assertRegex(p.stdout, rf"would run: ssh \w+@127\.0\.0\.1:{self.server.port}: touch ")
        self.assertIn("would add: the host key", p.stdout)
        self.assertEqual(self.known_hosts_text(), "", "a dry run must not write known_hosts")
        outcomes = [(c["args"]["op"], c["outcome"]) for c in self.calls()]
        self.assertEqual(outcomes[:3], [("connect", "ok"), ("exec", "simulated"), ("exec", "ok")])


class Transcript(SSHTestCase):
    def test_every_call_is_recorded_with_outcome_and_duration(self):
        p, out = self.runbook(f"""
step("rec", function()
  local s = ssh.connect{self.opts()}
  s:exec("echo recorded", {{ stdin = "abc" }})
  try(s.exec, s, "exit 5")
  try(ssh.connect, {self.opts(port=free_port())})
end)
""")
        calls = self.calls()
        self.assertEqual([(c["args"]["op"], c["outcome"]) for c in calls],
                         [("connect", "ok"), ("exec", "ok"), ("exec", "ok"), ("connect", "error")])
        connect, first = calls[0], calls[1]
        self.assertEqual(connect["args"]["keys"], [self.server.key])
        self.assertEqual(connect["result"]["fingerprint"], self.server.fingerprint())
        self.assertEqual((first["args"]["cmd"], first["args"]["stdin_bytes"]), ("echo recorded", 3))
        self.assertEqual((first["result"]["code"], first["result"]["stdout"]), (0, "recorded\n"))
        self.assertEqual(calls[2]["result"]["code"], 5)
        self.assertIn("connection refused", calls[3]["error"])
        for c in calls:
            self.assertIsInstance(c["duration"], float)


class FanOut(SSHTestCase):
    def test_fan_out_runs_20_real_sessions_at_once(self):
        p, out = self.runbook(f"""
step("fan", function()
  local hosts = {{}}
  for i = 1, 20 do hosts[i] = {lua(self.server.user)} .. "@127.0.0.1:{self.server.port}" end
  local t0 = time.clock()
  local rs = ssh.exec(hosts, "sleep 1; echo $SSH_CLIENT", {{ key = {lua(self.server.key)} }})
  emit("elapsed", time.clock() - t0)
  local got = {{}}
  for i, r in ipairs(rs) do got[i] = {{ r.ok, r.code, r.stdout, r.host }} end
  emit("results", got)
end)
""")
        results = out["results"][0]
        self.assertEqual(len(results), 20)
        self.assertTrue(all(r[0] and r[1] == 0 for r in results), results)
        client_ports = {r[2].split()[1] for r in results}
        self.assertEqual(len(client_ports), 20, f"20 separate SSH connections expected, saw {client_ports}")
        self.assertLess(out["elapsed"][0], 6, "20 x `sleep 1` must run concurrently, not one after another")
        self.assertEqual(len([c for c in self.calls() if c["args"]["op"] == "connect"]), 20)

    def test_fan_out_reports_each_host(self):
        bad = free_port()
        p, out = self.runbook(f"""
step("partial", function()
  local hosts = {{ "127.0.0.1", {{ host = "127.0.0.1", port = {bad} }}, "127.0.0.1" }}
  local opts = {{ port = {self.server.port}, user = {lua(self.server.user)}, key = {lua(self.server.key)},
                 check = false }}
  local rs = ssh.exec(hosts, "hostname >/dev/null; exit 0", opts)
  emit("oks", {{ rs[1].ok, rs[2].ok, rs[3].ok }})
  emit("bad", rs[2].error)
  opts.check = nil
  try(function() ssh.exec(hosts, "true", opts) end)
  local rs2 = ssh.exec({{ "127.0.0.1" }}, "exit 3", {{ port = {self.server.port},
    user = {lua(self.server.user)}, key = {lua(self.server.key)}, check = false }})
  emit("exit", {{ rs2[1].ok, rs2[1].code, rs2[1].error }})
end)
""")
        self.assertEqual(out["oks"], [[True, False, True]])
        self.assertIn(f"connection refused by 127.0.0.1:{bad}", out["bad"][0])
        self.assertRegex(out["err"][0], rf"rb\.lua:\d+: ssh\.exec: 1 of 3 hosts failed: ssh \w+@127\.0\.0\.1:{bad}: "
                         r"connection refused")
        self.assertEqual(out["exit"][0][:2], [False, 3])
        self.assertIn("exited with code 3", out["exit"][0][2])

    def test_an_error_budget_stops_launching_and_names_the_hosts_not_tried(self):
        bad = free_port()
        p, out = self.runbook(f"""
step("budget", function()
  local hosts = {{}}
  for i = 1, 3 do hosts[#hosts + 1] = {{ host = "127.0.0.1", port = {bad} }} end
  for i = 1, 5 do hosts[#hosts + 1] = "127.0.0.1" end
  local rs = ssh.exec(hosts, "true", {{ port = {self.server.port}, user = {lua(self.server.user)},
    key = {lua(self.server.key)}, check = false, parallel = 1, max_errors = 1 }})
  local kinds = {{}}
  for i, r in ipairs(rs) do kinds[i] = r.ok and "ok" or r.kind end
  emit("kinds", kinds)
  emit("said", rs[8].error)
end)
""")
        # one at a time: the first two refused spend the budget of 1; the rest are not tried
        self.assertEqual(out["kinds"], [["refused", "refused"] + ["untried"] * 6])
        self.assertIn("not tried: more than max_errors (1) had failed", out["said"][0])


if __name__ == "__main__":
    unittest.main()
