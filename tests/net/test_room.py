"""The incident room's store on real servers, for both backends: a run
publishes every line (the same text, seq and hash) and a watcher on
another connection, as another identity, sees them all and checks the
chain; `runs` shows each phase's state; a store stopped mid-run and
started again ends with every line, in order; a run without a room is as
before; an unreachable store never holds a run up.  Two identities each:
PostgreSQL roles alice and bob, Redis ACL users alice and bob (the ACL of
docs/room.md, with requirepass, in the test's own redis config)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import RunbookTestCase, kill_quietly
from servers.common import SilentListener, Stoppable, free_port, log_tail, stop_process
from servers.postgres import PG_BIN, PostgresServer, USER as PG_USER
from servers.redis import REDIS_SERVER, ROOM_ACL, ReplyError, encode, parse

ALICE_PW = "alice-R00m-pw-93"
BOB_PW = "bob-R00m-pw-17"
ADMIN_PW = "admin-R00m-pw-55"

# docs/room.md's setup for PostgreSQL, as the database owner would run it.
PG_SETUP = """
create role runbook_room_team nologin;
create role alice login password '{alice}' in role runbook_room_team;
create role bob login password '{bob}' in role runbook_room_team;
create schema runbook_room;
create table runbook_room.lines (run text, seq bigint, line text not null,
  at timestamptz default now(), primary key (run, seq));
create table runbook_room.runs (run text primary key, runbook text, target text, operator text,
  host text, identity text, started timestamptz, updated timestamptz, step text, state text,
  alive timestamptz, beat real);
grant usage on schema runbook_room to runbook_room_team;
grant select, insert on runbook_room.lines to runbook_room_team;
grant select, insert, update on runbook_room.runs to runbook_room_team;
"""

REDIS_ACL = ROOM_ACL       # docs/room.md's, one user per person

LOOP = """runbook {{ name = "room-loop" }}
step("tick", function()
  for i = 1, {n} do log.info("tick %d", i) wait({every}) end
end)
"""

# Ticks until the test creates the file `until`: the test decides when the
# run may end (after the store is back), not a guess at how long it takes.
UNTIL = """runbook {{ name = "room-until" }}
step("tick", function()
  local i = 0
  repeat
    i = i + 1
    log.info("tick %d", i)
    wait(0.05)
  until file.stat("{until}")
end)
"""

QUESTION = """runbook { name = "room-question" }
step("First", function() exec { "echo", "hello from step one" } end)
step("Ask", function() confirm("Go on with the second step?") end)
step("Last", function() log.info("the end") end)
"""

SLEEPER = """runbook { name = "room-sleeper" }
step("Sleep", function() wait(60) end)
"""

FAILING = """runbook { name = "room-failing" }
step("Break", function() error("broken on purpose") end)
"""


class RoomRedis(Stoppable):
    """A redis-server with requirepass and the room's two ACL users, which
    can be stopped and started again on its port (empty: no persistence)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rbroom-redis-")
        self.port = free_port()
        self.proc = None
        conf = [f"port {self.port}", "bind 127.0.0.1", 'save ""', "appendonly no",
                f"dir {self.dir}", f"logfile {self.dir}/redis.log", f"requirepass {ADMIN_PW}",
                REDIS_ACL.format(name="alice", pw=ALICE_PW), REDIS_ACL.format(name="bob", pw=BOB_PW)]
        self.conf = os.path.join(self.dir, "redis.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.start()

    def start(self):
        self.proc = subprocess.Popen([REDIS_SERVER, self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start:\n" + log_tail(f"{self.dir}/redis.log"))

    def command(self, *args):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            f = s.makefile("rb")
            s.sendall(encode("AUTH", ADMIN_PW))
            parse(f)
            s.sendall(encode(*args))
            r = parse(f)
            if isinstance(r, ReplyError):
                raise r
            return r

    def halt(self):
        try:
            self.command("SHUTDOWN", "NOSAVE")
        except (OSError, ConnectionError):
            pass
        stop_process(self.proc, asked=3, grace=0)

    def stop(self):
        if self.proc:
            self.halt()
            self.proc = None
        shutil.rmtree(self.dir, True)

    def url(self, user, pw):
        return f"redis://{user}:{pw}@127.0.0.1:{self.port}"


class RoomCase(RunbookTestCase):
    BACKEND = None

    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")
        self.cfg = self.write("room.lua", f'room = {{ backend = "{self.BACKEND}", '
                              f'url = env("RUNBOOK_ROOM_URL"), heartbeat = 1 }}\n')

    def as_user(self, who):
        return {"RUNBOOK_ROOM_URL": self.url(who)}

    def rb(self, who, *args, timeout=60):
        return self.run_rb(*args, "--config", self.cfg, env=self.as_user(who), timeout=timeout)

    def runs(self, who="bob"):
        p = self.rb(who, "runs", "--json")
        self.assertExit(p, 0)
        return json.loads(p.stdout)

    def run_of(self, run_id, who="bob"):
        for r in self.runs(who):
            if r["run"] == run_id:
                return r
        return None

    def wait_state(self, run_id, state, within=20, step=None):
        """Poll runs (the test's own bounded wait) until run_id shows state
        (and, given step, that step: a run is "running" from its run.start,
        before its first step.start names the step)."""
        deadline, seen = time.monotonic() + within, None
        while time.monotonic() < deadline:
            seen = self.run_of(run_id)
            if seen and seen["state"] == state and (step is None or seen.get("step") == step):
                return seen
            time.sleep(0.2)
        self.fail(f"run {run_id} never showed state {state!r} in {within} s; last seen: {seen}")

    def run_id_from(self, transcript, within=10):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if os.path.exists(transcript) and os.path.getsize(transcript) > 0:
                with open(transcript) as f:
                    return json.loads(f.readline())["run"]
            time.sleep(0.02)
        self.fail(f"no transcript at {transcript}")

    def local_lines(self, transcript=None):
        with open(transcript or self.transcript) as f:
            return f.read().splitlines()

    def wait_published(self, run_id, lines, within=15):
        deadline = time.monotonic() + within
        got = []
        while time.monotonic() < deadline:
            got = self.store_lines(run_id)
            if len(got) >= len(lines):
                break
            time.sleep(0.1)
        return got

    def wait_back(self, within=30):
        """Until the run's transcript records the store back (its room event)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with open(self.transcript) as f:
                text = f.read()
            if re.search(r'"event":"room".*"state":"back"', text):
                return
            time.sleep(0.1)
        self.fail(f"the run never recorded the store back within {within} s")

    def assertSecretsHidden(self, *texts):
        for t in texts:
            for pw in (ALICE_PW, BOB_PW):
                self.assertNotIn(pw, t)

    # ---- the tests --------------------------------------------------------

    def test_a_run_publishes_every_line_and_a_watcher_sees_and_checks_them(self):
        rb = self.write("q.lua", QUESTION)
        run = self.pty("run", "--config", self.cfg, "--transcript", self.transcript, rb,
                       env=self.as_user("alice"), timeout=30)
        run.expect(r"Go on with the second step\? \[y/n\] ")
        run_id = self.run_id_from(self.transcript)
        waiting = self.wait_state(run_id, "waiting for the operator")
        self.assertEqual(waiting["step"], "Ask")
        self.assertEqual(waiting["identity"], "alice")
        self.assertEqual(waiting["runbook"], "room-question")
        watch = self.piped("watch", run_id[:20], "--from-start", "--config", self.cfg,
                           env=self.as_user("bob"), timeout=30)
        watch.expect(r"watching run " + re.escape(run_id) + r" \(as bob\)")
        watch.expect(r"waiting for the operator: Go on with the second step\?")
        run.sendline("y")
        self.assertEqual(run.wait(), 0)
        self.assertEqual(watch.wait(), 0, watch.output)
        for shown in ('Step 1 "First" started', "exec `echo hello from step one`: ok",
                      "| hello from step one",
                      'confirm "Go on with the second step?" -> yes (operator)',
                      "info: the end", "Run ended: done"):
            self.assertIn(shown, watch.output)
        self.assertNotIn("does not chain", watch.output)
        lines = self.local_lines()
        self.assertEqual(self.wait_published(run_id, lines), lines)
        done = self.run_of(run_id)
        self.assertEqual(done["state"], "done")
        self.assertRegex(done["operator"] + "@" + done["host"], r".+@.+")
        self.assertSecretsHidden(run.output, watch.output, "\n".join(lines))

    def test_a_watcher_from_now_follows_a_live_run_and_ends_with_it(self):
        rb = self.write("loop.lua", LOOP.format(n=40, every=0.05))
        p = subprocess.Popen([os.environ.get("RUNBOOK_BIN"), "run", "--yes", "--config", self.cfg,
                              "--transcript", self.transcript, rb], cwd=self.tmp,
                             env=dict(self.env, **self.as_user("alice")),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (kill_quietly(p.pid), p.wait()))
        run_id = self.run_id_from(self.transcript)
        self.wait_state(run_id, "running")
        watch = self.rb("bob", "watch", run_id, timeout=30)
        self.assertEqual(p.wait(30), 0)
        self.assertExit(watch, 0)
        self.assertIn("Run ended: done", watch.stdout)
        self.assertIn("info: tick 40", watch.stdout)
        self.assertNotIn("does not chain", watch.stdout + watch.stderr)

    def test_a_line_missing_from_the_store_is_reported_and_the_watch_goes_on(self):
        rb = self.write("loop.lua", LOOP.format(n=5, every=0.01))
        p = self.rb("alice", "run", "--yes", "--transcript", self.transcript, rb)
        self.assertExit(p, 0)
        run_id = self.run_id_from(self.transcript)
        self.assertEqual(len(self.wait_published(run_id, self.local_lines())), len(self.local_lines()))
        self.drop_line(run_id, 4)
        watch = self.rb("bob", "watch", run_id, "--from-start")
        self.assertExit(watch, 0)
        self.assertIn("line 5 does not chain: its prev is not the hash of line 3", watch.stderr)
        self.assertIn("Run ended: done", watch.stdout)
        self.assertEqual(watch.stderr.count("does not chain"), 1, watch.stderr)

    def test_runs_shows_failed_and_terminated_runs(self):
        failing = self.write("f.lua", FAILING)
        t2 = self.path("t2.jsonl")
        self.assertExit(self.rb("alice", "run", "--yes", "--transcript", t2, failing), 1)
        failed_id = self.run_id_from(t2)
        self.assertEqual(self.wait_state(failed_id, "failed")["step"], "Break")
        sleeper = self.write("s.lua", SLEEPER)
        p = subprocess.Popen([os.environ.get("RUNBOOK_BIN"), "run", "--yes", "--config", self.cfg,
                              "--transcript", self.transcript, sleeper], cwd=self.tmp,
                             env=dict(self.env, **self.as_user("alice")),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (kill_quietly(p.pid), p.wait()))
        run_id = self.run_id_from(self.transcript)
        self.wait_state(run_id, "running", step="Sleep")
        watch = self.piped("watch", run_id, "--config", self.cfg, env=self.as_user("bob"), timeout=30)
        watch.expect(r"watching run ")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        self.wait_state(run_id, "terminated")
        self.assertEqual(watch.wait(), 1, watch.output)
        self.assertIn("stopped publishing without ending", watch.output)
        table = self.rb("bob", "runs")
        self.assertExit(table, 0)
        self.assertRegex(table.stdout, re.escape(run_id) + r".*room-sleeper.*\(alice\).*Sleep\s+terminated")

    def test_ctrl_c_ends_a_watch(self):
        sleeper = self.write("s.lua", SLEEPER)
        p = subprocess.Popen([os.environ.get("RUNBOOK_BIN"), "run", "--yes", "--config", self.cfg,
                              "--transcript", self.transcript, sleeper], cwd=self.tmp,
                             env=dict(self.env, **self.as_user("alice")),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (kill_quietly(p.pid), p.wait()))
        run_id = self.run_id_from(self.transcript)
        self.wait_state(run_id, "running")
        watch = self.pty("watch", run_id, "--config", self.cfg, env=self.as_user("bob"), timeout=20)
        watch.expect(r"watching run ")
        watch.ctrl_c()
        self.assertEqual(watch.wait(), 130, watch.output)
        self.assertEqual(self.run_of(run_id)["state"], "running")

    def test_a_failed_step_waits_for_the_operator_then_the_run_shows_failed(self):
        failing = self.write("f.lua", FAILING)
        run = self.pty("run", "--config", self.cfg, "--transcript", self.transcript, failing,
                       env=self.as_user("alice"), timeout=30)
        run.expect(r"\[r\]etry, \[s\]kip, \[a\]bort\? ")
        run_id = self.run_id_from(self.transcript)
        self.assertEqual(self.wait_state(run_id, "waiting for the operator")["step"], "Break")
        run.sendline("a")
        self.assertEqual(run.wait(), 1)
        self.wait_state(run_id, "failed")

    def test_a_repl_session_is_published_too(self):
        p = self.rb("alice", "repl", "--transcript", self.transcript, timeout=30)
        self.assertExit(p, 0)
        lines = self.local_lines()
        run_id = json.loads(lines[0])["run"]
        self.assertEqual(self.wait_published(run_id, lines), lines)
        self.assertEqual(self.run_of(run_id)["state"], "done")

    def test_a_store_stopped_mid_run_ends_with_every_line_in_order(self):
        release = self.path("release")
        rb = self.write("until.lua", UNTIL.format(until=release))
        p = subprocess.Popen([os.environ.get("RUNBOOK_BIN"), "run", "--yes", "--config", self.cfg,
                              "--transcript", self.transcript, rb], cwd=self.tmp,
                             env=dict(self.env, **self.as_user("alice")),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (kill_quietly(p.pid), p.wait()))
        run_id = self.run_id_from(self.transcript)
        self.wait_state(run_id, "running")
        # bob watches through it all: the watch waits for the store and goes on
        w = subprocess.Popen([os.environ.get("RUNBOOK_BIN"), "watch", run_id, "--from-start", "--config",
                              self.cfg], cwd=self.tmp, env=dict(self.env, **self.as_user("bob")),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (kill_quietly(w.pid), w.wait()))
        time.sleep(0.5)
        self.halt_store()
        time.sleep(1.0)             # lines go on being written while it is away
        self.start_store()
        self.wait_back()
        with open(release, "w"):
            pass
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, out + err)
        wout, werr = w.communicate(timeout=60)
        self.assertEqual(w.returncode, 0, wout + werr)
        self.assertIn("watch: the store went away", werr)
        self.assertIn("watch: the store is back", werr)
        self.assertNotIn("does not chain", werr)
        self.assertEqual(err.count("room: the store is unreachable"), 1, err)
        self.assertEqual(err.count("room: the store is back"), 1, err)
        lines = self.local_lines()
        self.assertEqual(self.wait_published(run_id, lines), lines)
        rooms = [e for e in self.events(self.transcript) if e["event"] == "room"]
        self.assertEqual([e["state"] for e in rooms], ["unreachable", "back"])
        verify = self.run_rb("verify", self.transcript)
        self.assertExit(verify, 0)
        self.assertSecretsHidden(out, err, "\n".join(lines))

    def test_without_a_room_a_run_is_as_before_and_the_room_commands_say_so(self):
        cfg = self.write("plain.lua", "targets = {}\n")
        rb = self.write("loop.lua", LOOP.format(n=3, every=0.01))
        p = self.run_rb("run", "--yes", "--config", cfg, "--transcript", self.transcript, rb)
        self.assertExit(p, 0)
        self.assertNotIn("room:", p.stdout + p.stderr)
        self.assertEqual([e["event"] for e in self.events(self.transcript)],
                         ["run.start", "step.start"] + ["log", "call"] * 3 + ["step.end", "run.end"])
        for cmd in (("runs",), ("watch", "x")):
            c = self.run_rb(*cmd, "--config", cfg)
            self.assertExit(c, 2)
            self.assertIn("no room is configured", c.stderr)

    def test_a_targets_room_wins_and_a_bad_room_is_refused(self):
        cfg = self.write("targets.lua", f'room = {{ backend = "{self.BACKEND}", '
                         f'url = "{self.url("alice", port=free_port())}" }}\n'
                         f'targets = {{ prod = {{ room = {{ backend = "{self.BACKEND}", '
                         f'url = env("RUNBOOK_ROOM_URL"), heartbeat = 1 }} }} }}\n')
        rb = self.write("loop.lua", LOOP.format(n=2, every=0.01))
        p = self.run_rb("run", "--yes", "--config", cfg, "--target", "prod", "--transcript",
                        self.transcript, rb, env=self.as_user("alice"))
        self.assertExit(p, 0)
        self.assertNotIn("room:", p.stderr)
        lines = self.local_lines()
        run_id = json.loads(lines[0])["run"]
        self.assertEqual(self.wait_published(run_id, lines), lines)
        listed = self.run_rb("runs", "--json", "--config", cfg, "--target", "prod", env=self.as_user("bob"))
        self.assertExit(listed, 0)
        self.assertIn(run_id, [r["run"] for r in json.loads(listed.stdout)])
        self.assertEqual([r for r in json.loads(listed.stdout) if r["run"] == run_id][0]["target"], "prod")
        bad = self.write("bad.lua", 'room = { backend = "mysql", url = "mysql://x" }\n')
        for cmd in (("run", "--yes", rb), ("runs",), ("watch", "--latest")):
            c = self.run_rb(*cmd, "--config", bad)
            self.assertExit(c, 2)
            self.assertIn('room.backend must be "postgres" or "redis" (got mysql)', c.stderr)

    def test_an_unreachable_store_never_holds_a_run_up(self):
        silent = SilentListener()
        self.addCleanup(silent.stop)
        wrong_pw = self.url("alice").replace(ALICE_PW, "Wrong-pw-4471")
        for url in (self.url("alice", port=free_port()), self.url("alice", port=silent.port), wrong_pw):
            with self.subTest(url=url.split("@")[-1]):
                if os.path.exists(self.transcript):
                    os.unlink(self.transcript)
                rb = self.write("loop.lua", LOOP.format(n=3, every=0.01))
                p = self.run_rb("run", "--yes", "--config", self.cfg, "--transcript", self.transcript,
                                rb, env={"RUNBOOK_ROOM_URL": url}, timeout=30)
                self.assertExit(p, 0)
                self.assertIn("were not published (the store is unreachable", p.stderr)
                self.assertLessEqual(p.stderr.count("room: the store is unreachable"), 1, p.stderr)
                self.assertSecretsHidden(p.stdout, p.stderr, "\n".join(self.local_lines()))
                self.assertNotIn("Wrong-pw-4471", p.stdout + p.stderr + "\n".join(self.local_lines()))
                if url == wrong_pw:      # said for what it is, not "when the store is back"
                    self.assertIn("room: the store refused the login", p.stderr)


class PostgresRoom(RoomCase):
    BACKEND = "postgres"

    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer(tls=False)
        cls.pg.psql(PG_SETUP.format(alice=ALICE_PW, bob=BOB_PW))

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def url(self, who, port=None):
        pw = ALICE_PW if who == "alice" else BOB_PW
        return f"postgresql://{who}:{pw}@127.0.0.1:{port or self.pg.port}/runbook?connect_timeout=2"

    def store_lines(self, run_id):
        out = self.pg.psql(f"select line from runbook_room.lines where run = '{run_id}' order by seq")
        return out.splitlines()

    def drop_line(self, run_id, seq):
        self.pg.psql(f"delete from runbook_room.lines where run = '{run_id}' and seq = {seq}")

    def halt_store(self):
        self.pg._run([f"{PG_BIN}/pg_ctl", "-D", self.pg.data, "stop", "-m", "fast", "-w"])

    def start_store(self):
        self.pg._start()

    def test_two_first_runs_on_a_fresh_database_create_the_schema_once(self):
        self.pg.psql("drop database if exists room_fresh with (force);"
                     f"create database room_fresh owner {PG_USER};", db="postgres")
        self.addCleanup(self.pg.psql, "drop database if exists room_fresh with (force);", db="postgres")
        owner = {"RUNBOOK_ROOM_URL": self.pg.url(db="room_fresh")}
        empty = self.run_rb("runs", "--config", self.cfg, env=owner)
        self.assertExit(empty, 0)
        self.assertIn("no runs in the room yet", empty.stdout)
        rb = self.write("loop.lua", LOOP.format(n=5, every=0.01))
        paths = [self.path(f"t{i}.jsonl") for i in range(2)]
        procs = [subprocess.Popen([os.environ.get("RUNBOOK_BIN"), "run", "--yes", "--config", self.cfg,
                                   "--transcript", t, rb], cwd=self.tmp, env=dict(self.env, **owner),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for t in paths]
        for p in procs:
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, out + err)
            self.assertNotIn("room:", err)
        for t in paths:
            lines = self.local_lines(t)
            got = self.pg.psql(f"select line from runbook_room.lines where run = '{json.loads(lines[0])['run']}'"
                               " order by seq", db="room_fresh").splitlines()
            self.assertEqual(got, lines)

    def test_sql_wait_returns_notifications_and_times_out(self):
        url = self.url("alice")
        rb = self.write("w.lua", f"""runbook {{ name = "wait" }}
local csql = require("runbook.sql")
step("wait", function()
  local a = assert(csql.connect("{url}", 5))
  local b = assert(csql.connect("{url}", 5))
  assert(a:query("listen room_test", {{ n = 0 }}, 5, "exec"))
  local ch, why = a:wait(0.2)
  assert(ch == nil and why == "timeout", "an idle wait ends in a timeout: " .. tostring(why))
  assert(b:query("select pg_notify('room_test', 'one')", {{ n = 0 }}, 5))
  local c2, payload, pid = a:wait(5)
  assert(c2 == "room_test" and payload == "one" and math.type(pid) == "integer",
    "got " .. tostring(c2) .. " " .. tostring(payload))
  assert(b:query("select pg_notify('room_test', 'two')", {{ n = 0 }}, 5))
  assert(a:query("select 1", {{ n = 0 }}, 5))   -- the notification comes in with this reply
  local c3, p3 = a:wait(0.2)
  assert(c3 == "room_test" and p3 == "two", "a notification read with a reply is kept: " .. tostring(p3))
  b:close()
  a:close()
  local ok = pcall(a.wait, a, 1)
  assert(not ok, "wait on a closed connection raises")
end)
""")
        p = self.run_rb("run", "--yes", "--transcript", self.transcript, rb,
                        env={"RUNBOOK_TEST_INTERNALS": "1"})
        self.assertExit(p, 0)


class RedisRoom(RoomCase):
    BACKEND = "redis"

    @classmethod
    def setUpClass(cls):
        cls.rs = RoomRedis()

    @classmethod
    def tearDownClass(cls):
        cls.rs.stop()

    def url(self, who, port=None):
        pw = ALICE_PW if who == "alice" else BOB_PW
        return f"redis://{who}:{pw}@127.0.0.1:{port or self.rs.port}"

    def entries(self, run_id):
        return self.rs.command("XRANGE", f"runbook:room:run:{run_id}", "-", "+")

    def store_lines(self, run_id):
        return [dict(zip(e[1][::2], e[1][1::2]))["line"] for e in self.entries(run_id)]

    def drop_line(self, run_id, seq):
        for e in self.entries(run_id):
            if dict(zip(e[1][::2], e[1][1::2]))["seq"] == str(seq):
                self.rs.command("XDEL", f"runbook:room:run:{run_id}", e[0])

    def halt_store(self):
        self.rs.halt()

    def start_store(self):
        self.rs.start()

    def test_another_users_keys_are_refused_by_the_documented_acl(self):
        with socket.create_connection(("127.0.0.1", self.rs.port), timeout=5) as s:
            f = s.makefile("rb")
            s.sendall(encode("AUTH", "alice", ALICE_PW))
            self.assertEqual(parse(f), "OK")
            s.sendall(encode("XADD", "runbook:room:by:bob:r1", "*", "kind", "approve"))
            self.assertIsInstance(parse(f), ReplyError)
            s.sendall(encode("XADD", "runbook:room:by:alice:r1", "*", "kind", "approve"))
            self.assertNotIsInstance(parse(f), ReplyError)


del RoomCase

if __name__ == "__main__":
    unittest.main()
