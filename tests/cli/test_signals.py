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
import pty
import re
import select
import signal
import sys
import termios
import time
import unittest

from harness import RUNBOOK, RunbookTestCase, runbook_path
from servers.postgres import PostgresServer
from servers.redis import RedisServer

CTRLC = runbook_path("ctrlc.lua")    # sh + a background sleep, pids in files
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


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def figure(what, seconds):
    print(f"\n[figure] {what}: {seconds * 1000:.0f} ms", file=sys.stderr, flush=True)


class Running:
    """runbook started with stdout a pipe (or a pty): wait for its output,
    signal it, reap it."""

    def __init__(self, pid, fd):
        self.pid, self.fd, self.output, self.status = pid, fd, "", None

    def read_until(self, pattern, timeout=30):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while not rx.search(self.output):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected {pattern!r} within {timeout} s; output:\n{self.output}")
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    raise AssertionError(f"runbook ended before {pattern!r}; output:\n{self.output}")
                self.output += data.decode("utf-8", "replace")

    def close_terminal(self):
        """Close our end (the pty master, or the pipe): the terminal is gone."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def wait(self, timeout=30):
        """Reap runbook (reading what it still prints); its exit code, or
        -N when a signal killed it."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            if self.fd >= 0:
                r, _, _ = select.select([self.fd], [], [], 0.02)
                if r:
                    try:
                        data = os.read(self.fd, 65536)
                    except OSError:
                        data = b""
                    if data:
                        self.output += data.decode("utf-8", "replace")
            else:
                time.sleep(0.005)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = status
            elif time.monotonic() > deadline:
                raise AssertionError(f"runbook still running {timeout} s after; output:\n{self.output}")
        return os.waitstatus_to_exitcode(self.status)

    def stop(self):
        if self.status is None:
            kill_quietly(self.pid)
            os.waitpid(self.pid, 0)
            self.status = 0
        self.close_terminal()


class SignalTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")
        self.env["NO_COLOR"] = "1"

    def start(self, *args, tty=False):
        """runbook run --transcript T ARGS, stdout and stderr on one pipe (or
        a pty as its controlling terminal); stdin is /dev/null or the pty."""
        argv = [RUNBOOK, *args]
        if tty:
            pid, fd = pty.fork()
            if pid == 0:
                try:
                    os.chdir(self.tmp)
                    os.execve(argv[0], argv, self.env)
                finally:
                    os._exit(127)
        else:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.chdir(self.tmp)
                    null = os.open("/dev/null", os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(w, 1)
                    os.dup2(w, 2)
                    os.execve(argv[0], argv, self.env)
                finally:
                    os._exit(127)
            os.close(w)
            fd = r
        run = Running(pid, fd)
        self.addCleanup(run.stop)
        return run

    def run_file(self, body, *args, tty=False):
        path = self.write("rb.lua", 'runbook { name = "sig", title = "Signals", severity = "P3" }\n' + body)
        return self.start("run", "--transcript", self.transcript, path, *args, tty=tty)

    def tree(self, tty=False):
        """ctrlc.lua until its shell and the shell's background sleep run;
        returns the run and both pids."""
        pids = self.path("pids")
        os.makedirs(pids)
        run = self.start("run", "--transcript", self.transcript, CTRLC, "-p", f"dir={pids}", tty=tty)
        run.read_until(r"\| tree-started")
        found = []
        for name in ("child.pid", "grandchild.pid"):
            with open(os.path.join(pids, name)) as f:
                pid = int(f.read())
            self.addCleanup(kill_quietly, pid)
            self.assertTrue(alive(pid), f"{name} {pid} should run before the signal")
            found.append(pid)
        return run, found

    def signal_and_wait(self, run, sig, what, close_terminal=False):
        t0 = time.monotonic()
        os.kill(run.pid, sig)
        if close_terminal:
            run.close_terminal()
        code = run.wait()
        figure(f"{what}: {signal.Signals(sig).name} to exit", time.monotonic() - t0)
        return code

    def assertGone(self, pids, within=5.0, what="after runbook exited"):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.01)
        left = [p for p in pids if alive(p)]
        self.assertEqual(left, [], f"processes still running {within} s {what}: {left}")

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
        run.read_until(r"Go on\? \[y/n\] ")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "at a question"), 143, run.output)
        events = self.assertTerminated("SIGTERM", 143)
        self.assertEqual([e["status"] for e in events if e["event"] == "step.end"], ["terminated"])

    def test_sigterm_at_a_secret_param_prompt_gives_the_terminal_back(self):
        # Before the run starts (no transcript yet), with echo off for the
        # secret: the terminal must not be left without echo.
        run = self.run_file('param("token", { secret = true, required = true })\n'
                            'step("Use it", function() end)\n', tty=True)
        run.read_until(r"Value for param token: ")
        self.assertFalse(termios.tcgetattr(run.fd)[3] & termios.ECHO, "echo should be off at the prompt")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "at a param prompt"), 143, run.output)
        self.assertIn("SIGTERM before the run started: nothing was run", run.output)
        self.assertTrue(termios.tcgetattr(run.fd)[3] & termios.ECHO, "the terminal was left without echo")

    def test_sigterm_in_busy_lua_code_ends_the_run(self):
        run = self.run_file('step("Spin", function() print("spinning"); while true do end end)\n')
        run.read_until("spinning")
        self.assertEqual(self.signal_and_wait(run, signal.SIGTERM, "busy Lua"), 143, run.output)
        self.assertTerminated("SIGTERM", 143)

    def test_more_signals_during_the_cleanup_leave_a_whole_transcript(self):
        # The child ignores SIGTERM, so ending it takes the 1 s grace before
        # SIGKILL; signals keep coming all through that and what follows.
        run = self.run_file('step("Stubborn", function()\n'
                            '  exec { "sh", "-c", "trap \'\' TERM; echo stubborn-started; '
                            'while :; do sleep 0.1; done", timeout = 600 }\n'
                            'end)\n')
        run.read_until(r"\| stubborn-started")
        t0 = time.monotonic()
        os.kill(run.pid, signal.SIGTERM)
        sent = 1
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
        run.read_until(r"\| working")
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
        run.read_until(r"\| working")
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
        run.read_until(r"\| working")
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
        run.read_until(r"\| sleeping")
        with open(pidfile) as f:
            child = int(f.read())
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
        run.read_until(r"runbook> ")
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
        run.read_until(r"\| sleeping")
        with open(pidfile) as f:
            child = int(f.read())
        self.addCleanup(kill_quietly, child)
        code = self.signal_and_wait(run, signal.SIGHUP, "repl eval", close_terminal=True)
        self.assertEqual(code, 129)
        self.assertGone([child])
        events = self.assertTerminated("SIGHUP", 129)
        evals = [e for e in events if e["event"] == "eval"]
        self.assertEqual([(e["ok"], e.get("interrupted")) for e in evals], [(False, True)])


if __name__ == "__main__":
    unittest.main()
