"""SIGTERM and SIGHUP end a run the way a second Ctrl-C does, without a
question: the child process groups are terminated, a running query is
cancelled on the server, the team lock is released, the transcript ends
with run.end status "terminated" (and the signal), and runbook exits
128 + the signal.  With the terminal gone (SIGHUP after the ssh session to
the bastion dropped) writing to it fails, and the cleanup goes on.  If
runbook itself is SIGKILLed, what it spawned dies too (PR_SET_PDEATHSIG).
Real PostgreSQL and Redis servers (tests/servers/); real ptys.

Each test prints how long runbook took from the signal to its exit (on
stderr, for the report; nothing is asserted about it)."""
import json
import os
import signal
import sys
import termios
import time
import unittest

from harness import RunbookTestCase, alive, kill_quietly, read_pid
from servers.postgres import PostgresServer
from servers.redis import RedisServer

PG = None
REDIS = None


def setUpModule():
    global PG, REDIS
    PG = PostgresServer(tls=False)
    REDIS = RedisServer()


def tearDownModule():
    for server in (PG, REDIS):
        if server is not None:
            server.stop()


def figure(what, seconds):
    print(f"\n[figure] {what}: {seconds * 1000:.0f} ms", file=sys.stderr, flush=True)


class SignalTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")
        self.env["NO_COLOR"] = "1"

    def start(self, *args, tty=False):
        """runbook ARGS on a pty as its controlling terminal, or with stdin
        /dev/null and stdout and stderr on one pipe."""
        return (self.pty if tty else self.piped)(*args, timeout=30)

    def run_file(self, body, *args, tty=False):
        path = self.write("rb.lua", 'runbook { name = "sig", title = "Signals", severity = "P3" }\n' + body)
        return self.start("run", "--transcript", self.transcript, path, *args, tty=tty)

    def tree(self, tty=False):
        """ctrlc.lua until its shell and the shell's background sleep run;
        returns the run and both pids."""
        return self.ctrlc_tree(
            lambda *args: self.start("run", "--transcript", self.transcript, *args, tty=tty))

    def signal_and_wait(self, run, sig, what, close_terminal=False):
        t0 = time.monotonic()
        os.kill(run.pid, sig)
        if close_terminal:
            run.close_terminal()
        code = run.wait()
        figure(f"{what}: {signal.Signals(sig).name} to exit", time.monotonic() - t0)
        return code

    def assertTerminated(self, signame, code):
        """The transcript is whole, verifies and ends with run.end status
        terminated for signame."""
        with open(self.transcript, "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\n"), f"the transcript ends in a partial line: {raw[-200:]!r}")
        events = [json.loads(line) for line in raw.decode().splitlines()]
        last = events[-1]
        self.assertEqual((last["event"], last.get("status"), last.get("signal"), last.get("exit")),
                         ("run.end", "terminated", signame, code), f"last event: {last}")
        self.assertExit(self.run_rb("verify", self.transcript), 0)
        return events


class Sigterm(SignalTestCase):
    def test_sigterm_during_exec_ends_the_process_group_and_the_run(self):
        run, pids = self.tree()
        code = self.signal_and_wait(run, signal.SIGTERM, "exec sh + sleep")
        self.assertEqual(code, 143, run.output)
        self.assertGone(pids)
        events = self.assertTerminated("SIGTERM", 143)
        ends = [(e["id"], e["status"], e.get("decided_by")) for e in events if e["event"] == "step.end"]
        self.assertEqual(ends, [("tree", "terminated", "SIGTERM")])
        self.assertNotIn("after ran", run.output)
        self.assertNotRegex(run.output, r"\[r\]etry", "a terminating signal asks no question")
        self.assertRegex(run.output, r"run terminated \(SIGTERM\)")

    def test_sigterm_on_a_terminal_asks_no_question(self):
        run, pids = self.tree(tty=True)
        code = self.signal_and_wait(run, signal.SIGTERM, "exec on a pty")
        self.assertEqual(code, 143, run.output)
        self.assertGone(pids)
        self.assertNotRegex(run.output, r"\[r\]etry")
        self.assertTerminated("SIGTERM", 143)

    def test_sigterm_at_a_question_ends_the_run(self):
        run = self.run_file('step("Ask", { id = "ask" }, function() confirm("Go on?") end)\n', tty=True)
        run.expect(r"Go on\? \[y/n\] ")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "at a question"), 143, run.output)
        events = self.assertTerminated("SIGTERM", 143)
        self.assertEqual([e["status"] for e in events if e["event"] == "step.end"], ["terminated"])

    def test_sigterm_at_a_secret_param_prompt_gives_the_terminal_back(self):
        # Before the run starts (no transcript yet), with echo off for the
        # secret: the terminal must not be left without echo.
        run = self.run_file('param("token", { secret = true, required = true })\n'
                            'step("Use it", function() end)\n', tty=True)
        run.expect(r"Value for param token: ")
        self.assertFalse(termios.tcgetattr(run.fd)[3] & termios.ECHO, "echo should be off at the prompt")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "at a param prompt"), 143, run.output)
        self.assertIn("SIGTERM before the run started: nothing was run", run.output)
        self.assertTrue(termios.tcgetattr(run.fd)[3] & termios.ECHO, "the terminal was left without echo")

    def test_sigterm_in_busy_lua_code_ends_the_run(self):
        run = self.run_file('step("Spin", function() print("spinning"); while true do end end)\n')
        run.expect("spinning")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "busy Lua"), 143, run.output)
        self.assertTerminated("SIGTERM", 143)

    def test_more_signals_during_the_cleanup_leave_a_whole_transcript(self):
        # The child ignores SIGTERM, so ending it takes the 1 s grace before
        # SIGKILL; signals keep coming all through that and what follows.
        run = self.run_file('step("Stubborn", function()\n'
                            '  exec { "sh", "-c", "trap \'\' TERM; echo stubborn-started; '
                            'while :; do sleep 0.1; done", timeout = 600 }\n'
                            'end)\n')
        run.expect(r"\| stubborn-started")
        t0 = time.monotonic()
        os.kill(run.pid, signal.SIGTERM)
        sent = 1
        # the first is taken before the others come: two standard signals
        # pending at once are delivered lowest number first (SIGHUP before
        # SIGTERM), which on a loaded machine made "the first" a SIGHUP
        time.sleep(0.2)
        while time.monotonic() - t0 < 30:
            pid, status = os.waitpid(run.pid, os.WNOHANG)
            if pid == run.pid:
                run.status = status
                break
            try:
                os.kill(run.pid, (signal.SIGTERM, signal.SIGHUP)[sent % 2])
                sent += 1
            except ProcessLookupError:
                pass
            time.sleep(0.002)
        code = run.wait()
        figure(f"stubborn child, {sent} signals: first SIGTERM to exit", time.monotonic() - t0)
        self.assertEqual(code, 143, run.output)
        self.assertTerminated("SIGTERM", 143)


class Sighup(SignalTestCase):
    def test_sighup_then_the_terminal_closes(self):
        run, pids = self.tree(tty=True)
        code = self.signal_and_wait(run, signal.SIGHUP, "pty", close_terminal=True)
        self.assertEqual(code, 129)
        self.assertGone(pids)
        self.assertTerminated("SIGHUP", 129)

    def test_sighup_during_parallel_is_said_as_sighup_not_ctrl_c(self):
        run = self.run_file('''step("Fan out", function()
  print("fanning")
  parallel({ 1, 2, 3 }, function() exec { "sleep", "600" } end)
end)
''')
        run.expect("fanning")
        time.sleep(0.3)
        self.assertEqual(self.signal_and_wait(run, signal.SIGHUP, "parallel"), 129, run.output)
        self.assertTerminated("SIGHUP", 129)
        with open(self.transcript) as f:
            ends = [json.loads(l) for l in f if '"step.end"' in l]
        self.assertIn("parallel: terminated (SIGHUP)", ends[-1]["error"])
        self.assertNotIn("Ctrl-C", ends[-1]["error"])

    def test_closing_the_terminal_is_a_sighup(self):
        # runbook is the session leader of the pty: the kernel sends SIGHUP
        # when the master side closes, as when sshd or tmux goes away.
        run, pids = self.tree(tty=True)
        t0 = time.monotonic()
        run.close_terminal()
        code = run.wait()
        figure("pty master closed to exit", time.monotonic() - t0)
        self.assertEqual(code, 129)
        self.assertGone(pids)
        self.assertTerminated("SIGHUP", 129)


class Servers(SignalTestCase):
    ACTIVE = ("select count(*) from pg_stat_activity where state = 'active' "
              "and query = 'select pg_sleep(600)'")

    def pg_count(self, sql):
        return PG.psql(sql).strip()

    def wait_pg(self, sql, want, timeout=10):
        deadline = time.monotonic() + timeout
        got = self.pg_count(sql)
        while got != want and time.monotonic() < deadline:
            time.sleep(0.05)
            got = self.pg_count(sql)
        return got

    def test_sigterm_cancels_the_running_query_on_the_server(self):
        run = self.run_file(f'step("Sleep in the database", function()\n'
                            f'  local db = sql.connect("{PG.url()}", {{ timeout = 900 }})\n'
                            f'  db:query("select pg_sleep(600)")\n'
                            f'end)\n')
        self.assertEqual(self.wait_pg(self.ACTIVE, "1"), "1", "the query never started:\n" + run.output)
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "pg_sleep(600)"), 143, run.output)
        # Checked from another connection; before the fix the backend went on
        # sleeping for its 600 s after runbook died.
        self.assertEqual(self.wait_pg(self.ACTIVE, "0", timeout=5), "0",
                         "pg_sleep(600) still runs on the server after runbook exited")
        self.assertTerminated("SIGTERM", 143)

    def locked_run(self, lock_table):
        self.write("config/runbook/config.lua", f"lock = {lock_table}\n")
        return self.run_file('step("Take the lock", function() lock("signals:test") end)\n'
                             'step("Work", function()\n'
                             '  exec { "sh", "-c", "echo working; sleep 600", timeout = 900 }\n'
                             'end)\n')

    def assertReleaseRecorded(self, events):
        released = [e["outcome"] for e in events
                    if e["event"] == "call" and e["primitive"] == "lock.release"]
        self.assertEqual(released, ["ok"])

    def test_sigterm_releases_a_redis_lock_at_once(self):
        key = "runbook:lock:signals:test"
        self.addCleanup(REDIS.command, "DEL", key)
        run = self.locked_run(f'{{ backend = "redis", url = "{REDIS.url()}", ttl = 600 }}')
        run.expect(r"\| working")
        self.assertIsNotNone(REDIS.command("GET", key), "the lock was not taken")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "redis lock"), 143, run.output)
        self.assertIsNone(REDIS.command("GET", key),
                          f"the lock key outlived the run (PTTL {REDIS.command('PTTL', key)} ms)")
        self.assertReleaseRecorded(self.assertTerminated("SIGTERM", 143))

    def test_sigterm_during_the_release_lets_it_finish(self):
        # The run ends on its own; Redis holds writes back (CLIENT PAUSE), so
        # the release waits; a SIGTERM then must not cut the release short.
        key = "runbook:lock:signals:test"
        self.addCleanup(REDIS.command, "DEL", key)
        self.write("config/runbook/config.lua",
                   f'lock = {{ backend = "redis", url = "{REDIS.url()}", ttl = 600 }}\n')
        go = self.path("go")
        run = self.run_file('step("Take the lock", function() lock("signals:test") end)\n'
                            'step("Work", { id = "work" }, function()\n'
                            f'  exec {{ "sh", "-c", "echo working; while [ ! -e {go} ]; do sleep 0.02; done" }}\n'
                            'end)\n')
        run.expect(r"\| working")
        REDIS.command("CLIENT", "PAUSE", "3000", "WRITE")
        self.addCleanup(REDIS.command, "CLIENT", "UNPAUSE")
        with open(go, "w"):
            pass
        deadline = time.monotonic() + 10
        while not any(e["event"] == "step.end" and e["id"] == "work" for e in self.events(self.transcript)):
            self.assertLess(time.monotonic(), deadline, "the last step never ended:\n" + run.output)
            time.sleep(0.01)
        time.sleep(0.3)     # into the release, which the pause holds for 3 s
        self.assertIsNotNone(REDIS.command("GET", key), "the lock was released before the signal")
        os.kill(run.pid, signal.SIGTERM)
        code = run.wait()
        self.assertEqual(code, 0, run.output)
        self.assertIsNone(REDIS.command("GET", key), "the SIGTERM cut the release short")
        with open(self.transcript) as f:
            events = [json.loads(line) for line in f]
        self.assertEqual((events[-1]["event"], events[-1]["status"], events[-1].get("signal")),
                         ("run.end", "done", "SIGTERM"))
        self.assertReleaseRecorded(events)

    def test_sigterm_releases_a_postgres_advisory_lock(self):
        run = self.locked_run(f'{{ backend = "postgres", url = "{PG.url()}" }}')
        run.expect(r"\| working")
        held = "select count(*) from pg_locks where locktype = 'advisory' and granted"
        self.assertEqual(self.pg_count(held), "1", "the lock was not taken")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "postgres lock"), 143, run.output)
        self.assertEqual(self.wait_pg(held, "0", timeout=5), "0")
        self.assertReleaseRecorded(self.assertTerminated("SIGTERM", 143))


class Sigkill(SignalTestCase):
    def test_the_child_dies_with_a_sigkilled_runbook(self):
        pidfile = self.path("child.pid")
        run = self.run_file(f'step("Sleep", function()\n'
                            f'  exec {{ "sh", "-c", "echo $$ > {pidfile}; echo sleeping; exec sleep 600" }}\n'
                            f'end)\n')
        run.expect(r"\| sleeping")
        child = read_pid(pidfile)
        self.addCleanup(kill_quietly, child)
        self.assertTrue(alive(child))
        t0 = time.monotonic()
        os.kill(run.pid, signal.SIGKILL)
        self.assertEqual(run.wait(), -signal.SIGKILL)
        self.assertGone([child], what="after runbook was SIGKILLed")
        figure("SIGKILL of runbook to its child gone", time.monotonic() - t0)


class Repl(SignalTestCase):
    def repl(self):
        run = self.start("repl", "--transcript", self.transcript, tty=True)
        run.expect(r"runbook> ")
        return run

    def test_sigterm_at_the_prompt(self):
        run = self.repl()
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "repl prompt"), 143, run.output)
        self.assertTerminated("SIGTERM", 143)

    def test_sighup_during_an_evaluation_with_the_terminal_gone(self):
        run = self.repl()
        pidfile = self.path("child.pid")
        os.write(run.fd, f'exec {{ "sh", "-c", "echo $$ > {pidfile}; echo sleeping; exec sleep 600" }}\r'
                 .encode())
        run.expect(r"\| sleeping")
        child = read_pid(pidfile)
        self.addCleanup(kill_quietly, child)
        code = self.signal_and_wait(run, signal.SIGHUP, "repl eval", close_terminal=True)
        self.assertEqual(code, 129)
        self.assertGone([child])
        events = self.assertTerminated("SIGHUP", 129)
        evals = [e for e in events if e["event"] == "eval"]
        self.assertEqual([(e["ok"], e.get("interrupted")) for e in evals], [(False, True)])


if __name__ == "__main__":
    unittest.main()
