"""Approvals by a second person and status updates through the incident
room, on a real PostgreSQL and a real Redis with two authenticated
identities each (alice runs the runbook, bob approves): `runbook approve`
and `runbook update` from other processes, the operator's own approval
refused, who cannot be forged, the timeout, Ctrl-C through a real pty;
without a room the approval is attested by the operator."""
import json
import socket
import subprocess
import time
import unittest

from harness import RETRY_SKIP_ABORT, RunbookTestCase
from servers.postgres import PG_BIN, PostgresServer
from servers.redis import ROOM_ACL, RedisServer, ReplyError, encode, parse
from test_notify import Webhook

PASSWORDS = {"alice": "alice-Pa55-w0rd", "bob": "bob-Pa55-w0rd", "carol": "carol-Pa55-w0rd"}

APPROVE_BOOK = '''
runbook { name = "ap", title = "approvals", severity = "P1" }
step("Restore", { id = "restore" }, function()
  local a = approve("Restore prod from last night's dump?", { timeout = TIMEOUT })
  print("@approved-by=" .. a.by)
end)
step("After", { id = "after" }, function() print("@after-ran") end)
'''

# A step that waits for a flag file, then a step with approval = "other".
BOUNDARY_BOOK = '''
runbook { name = "bd", title = "boundary", severity = "P1" }
param("flag")
step("Wait for the flag", { id = "hold" }, function(p)
  poll(function() return file.stat(p.flag) ~= nil end, { every = 0.05, timeout = 30, what = "the flag" })
end)
step("Restart everything", { id = "restart", approval = APPROVAL, approval_timeout = 30 }, function()
  print("@restart-ran")
end)
'''

# An update posted during the first step reaches the run at the second
# step's start; one posted while the third waits for its approval, then.
UPDATE_BOOK = BOUNDARY_BOOK.replace('step("Restart everything"',
                                    'step("Look again", { id = "look" }, function() print("@look-ran") end)\n'
                                    'step("Restart everything"')

PG = None
REDIS = None


def setUpModule():
    global PG, REDIS
    PG = PostgresServer(tls=False)
    try:
        for name, pw in PASSWORDS.items():
            PG.psql(f"create role {name} login password '{pw}';", db="postgres")
        # alice may create the room's schema on first use; bob gets the
        # grants docs/room-approvals.md gives a teammate.
        PG.psql("grant create on database runbook to alice;", db="postgres")
        REDIS = RedisServer(password="default-Pa55")
        for name, pw in PASSWORDS.items():
            REDIS.command("ACL", "SETUSER", *ROOM_ACL.format(name=name, pw=pw).split()[1:])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    global PG, REDIS
    if PG is not None:
        PG.stop()
        PG = None
    if REDIS is not None:
        REDIS.stop()
        REDIS = None


def pg_grants():
    """What an administrator grants a teammate once the schema exists."""
    PG.psql("grant usage on schema runbook_room to bob, carol;"
            "grant select, insert on runbook_room.messages to bob, carol;"
            "grant usage on sequence runbook_room.messages_id_seq to bob, carol;"
            "grant select, insert, update on runbook_room.runs to bob, carol;")


def redis_as(user, *args):
    """One command on a fresh connection authenticated as user."""
    with socket.create_connection((REDIS.host, REDIS.port), timeout=5) as s:
        f = s.makefile("rb")
        s.sendall(encode("AUTH", user, PASSWORDS[user]))
        r = parse(f)
        if isinstance(r, ReplyError):
            raise r
        s.sendall(encode(*args))
        return parse(f)


class RoomCase:
    """The tests both backends pass (a mixin: Postgres and Redis below)."""
    BACKEND = None

    def url(self, user):
        if self.BACKEND == "postgres":
            return f"postgresql://{user}:{PASSWORDS[user]}@{PG.host}:{PG.port}/runbook"
        return f"redis://{user}:{PASSWORDS[user]}@{REDIS.host}:{REDIS.port}"

    def setUp(self):
        super().setUp()
        self.hook = Webhook()
        self.addCleanup(self.hook.stop)
        self.configs = {}
        for user in PASSWORDS:
            self.configs[user] = self.write(f"{user}/config.lua", f'''
room = {{ backend = "{self.BACKEND}", url = env("ROOM_URL_{user.upper()}") }}
notify = {{ ops = {{ webhook = "{self.hook.url()}" }} }}
''')
            self.env[f"ROOM_URL_{user.upper()}"] = self.url(user)
        self.transcript = self.path("t.jsonl")
        if self.BACKEND == "postgres":
            # alice's first connection creates the schema (IF NOT EXISTS: again is fine)
            p = self.rb_as("alice", "update", "no-such-run", "-m", "x")
            self.assertExit(p, 1)
            self.assertIn("no run no-such-run in the room", p.stderr)
            pg_grants()

    def rb_as(self, user, *args, code=None):
        p = self.run_rb(*args, "--config", self.configs[user])
        if code is not None:
            self.assertExit(p, code)
        return p

    def start(self, body, *args, session="piped", **subs):
        for k, v in subs.items():
            body = body.replace(k, v)
        rb = self.write("rb.lua", body)
        start = self.piped if session == "piped" else self.pty
        s = start("run", rb, "--transcript", self.transcript, "--config", self.configs["alice"], *args,
                  timeout=30)
        return s

    def in_room(self, s):
        """The run's id once its first step boundary put it in the room
        (running, not waiting)."""
        s.expect(r"\[1/\d\] Wait for the flag")
        run = self.events("run.start")[0]["run"]
        for _ in range(200):
            p = self.rb_as("bob", "approve", run)
            if "no run" not in p.stderr:
                return run
        self.fail(f"run {run} never appeared in the room: {p.stderr}")

    def run_id(self, s):
        return s.expect(r"runbook approve (\S+) \[-m TEXT\]").group(1)

    def events(self, name=None):
        evs = super().events(self.transcript)
        return [e for e in evs if name is None or e["event"] == name]

    def test_a_second_identity_approves_and_the_operators_own_approval_is_refused(self):
        s = self.start(APPROVE_BOOK, TIMEOUT="60")
        s.expect("waiting for approval from another person")
        run = self.run_id(s)
        own = self.rb_as("alice", "approve", run, "-m", "self-approval", code=1)
        self.assertIn("you are alice, the identity run " + run + " itself uses in the room", own.stderr)
        self.assertIn("nothing was sent", own.stderr)
        self.post_as("alice", run)           # written to the store by hand: the run refuses it too
        s.expect(r"refused: alice is this run's own identity in the room: the operator cannot approve")
        s.expect("still waiting")
        p = self.rb_as("bob", "approve", run[:-3], "-m", "go ahead, backups checked", code=0)
        self.assertIn("as bob", p.stdout)
        s.expect(r"approved by bob \(\S+@\S+\)[^\n]*: \"go ahead, backups checked\"")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertIn("@approved-by=bob", s.output)
        self.assertIn("@after-ran", s.output)
        (waiting,) = self.events("waiting")
        self.assertEqual((waiting["on"], waiting["step"]), ("approval", "restore"))
        (refused,) = self.events("approval.refused")
        self.assertEqual(refused["by"], "alice")
        (ap,) = self.events("approval")
        self.assertEqual((ap["approved"], ap["by"], ap["text"], ap["step"]),
                         (True, "bob", "go ahead, backups checked", "restore"))
        self.assertTrue(ap["os_user"] and ap["host"] and ap["at"], ap)
        self.assertNotIn("attested", ap)
        rep = self.run_rb("report", self.transcript)
        self.assertExit(rep, 0)
        self.assertRegex(rep.stdout, r"approval .* from alice refused: alice is this run's own identity")
        self.assertRegex(rep.stdout, r"approval .* -> \*\*approved\*\* by bob \(\S+@\S+, identity from the "
                                     r"room's store\): \"go ahead, backups checked\"")
        # the run is not waiting any more: approving again is refused
        again = self.rb_as("bob", "approve", run, code=1)
        self.assertIn("is not waiting for an approval", again.stderr)

    def test_a_rejection_declines_the_step(self):
        s = self.start(APPROVE_BOOK, TIMEOUT="60")
        run = self.run_id(s)
        self.rb_as("bob", "approve", run, "--reject", "-m", "not during the peak", code=0)
        s.expect(r"rejected by bob")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertIn('approval rejected by bob: "not during the peak"', s.output)
        self.assertNotIn("@after-ran", s.output)
        (ap,) = self.events("approval")
        self.assertEqual((ap["approved"], ap["by"], ap["text"]), (False, "bob", "not during the peak"))
        ends = {e["id"]: e["status"] for e in self.events("step.end")}
        self.assertEqual(ends, {"restore": "declined"})

    def test_step_approval_from_named_people_refuses_anyone_else(self):
        flag = self.path("flag")
        s = self.start(BOUNDARY_BOOK, "-p", f"flag={flag}", APPROVAL='{ "bob" }')
        open(flag, "w").close()
        run = self.run_id(s)
        self.rb_as("carol", "approve", run, code=0)
        s.expect(r"refused: carol is not one of the approvers this step names \(bob\)")
        self.rb_as("bob", "approve", run, code=0)
        self.assertEqual(s.wait(), 0, s.output)
        self.assertIn("@restart-ran", s.output)
        self.assertEqual([e["by"] for e in self.events("approval.refused")], ["carol"])
        self.assertEqual([(e["by"], e["approved"]) for e in self.events("approval")], [("bob", True)])

    def test_the_timeout_ends_the_wait_and_fails_the_step(self):
        s = self.start(APPROVE_BOOK, TIMEOUT="1")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertIn("no approval from another person within 1.0 s", s.output)
        (ap,) = self.events("approval")
        self.assertEqual((ap["approved"], ap["timed_out"]), (False, 1))
        ends = {e["id"]: e["status"] for e in self.events("step.end")}
        self.assertEqual(ends, {"restore": "failed"})

    def test_an_approval_wait_past_the_response_time_escalates_once(self):
        with open(self.configs["alice"], "a") as f:
            f.write('respond = { P1 = 1 }\n')
        s = self.start(APPROVE_BOOK, TIMEOUT="60")
        run = self.run_id(s)
        s.expect("escalat")                  # the line saying where it went, after 1 s
        time.sleep(1.5)                      # more ticks of the wait: still one escalation
        self.rb_as("bob", "approve", run, "-m", "late but fine", code=0)
        self.assertEqual(s.wait(), 0, s.output)
        esc = self.events("escalation")
        self.assertEqual([(e["on"], e["step"]) for e in esc], [("approval", "restore")], esc)
        texts = [json.loads(b)["text"] for _, _, b in self.hook.bodies]
        self.assertEqual(len([t for t in texts if t.startswith("[P1] Escalation:")]), 1, texts)

    def test_the_wait_outlives_its_connection_being_killed(self):
        s = self.start(APPROVE_BOOK, TIMEOUT="60")
        run = self.run_id(s)
        # the approval wait's connection and the publisher's: both come back
        self.assertEqual(self.kill_alices_connections(), 2, "alice's two room connections")
        # The publisher may have lost the line saying the run waits with
        # its connection: until it is back and has sent it again, the
        # room says the run is running, and approve says so (seen under
        # AddressSanitizer's slowness); killed before its first batch went
        # out, it lost every line, and the room knows no such run yet
        # (seen with the suite's two jobs at once).  Bob tries again, as a
        # person would.
        for _ in range(100):
            p = self.rb_as("bob", "approve", run, "-m", "after the restart")
            if p.returncode == 0:
                break
            self.assertRegex(p.stderr, f"run {run} is not waiting for an approval|no run {run} in the room")
            time.sleep(0.1)
        else:
            self.fail(f"the room never showed run {run} waiting again: {p.stderr}")
        s.expect(r'approved by bob \(\S+\)[^\n]*: "after the restart"')
        self.assertEqual(s.wait(), 0, s.output)

    def test_the_steps_own_timeout_bounds_the_wait(self):
        s = self.start(APPROVE_BOOK.replace('{ id = "restore" }', '{ id = "restore", timeout = 1 }'), TIMEOUT="600")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertIn("step's timeout ran out", s.output)
        self.assertNotIn("warn: room:", s.output, "the step's timeout was taken for the store failing")

    def test_ctrl_c_interrupts_the_wait(self):
        s = self.start(APPROVE_BOOK, TIMEOUT="600", session="pty")
        s.expect("waiting for approval")
        s.ctrl_c()
        s.expect("interrupted")
        s.expect(RETRY_SKIP_ABORT)
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertEqual([e["count"] for e in self.events("interrupt")], [1])
        ends = {e["id"]: (e["status"], e["decision"]) for e in self.events("step.end")}
        self.assertEqual(ends, {"restore": ("interrupted", "abort")})

    def test_update_from_another_process_reaches_the_webhook_at_the_step_boundary(self):
        flag = self.path("flag")
        s = self.start(UPDATE_BOOK, "-p", f"flag={flag}", APPROVAL='"other"')
        run = self.in_room(s)
        p = self.rb_as("bob", "update", run, "-m", "restore 40% done, ETA 10 min", code=0)
        self.assertIn("sent as bob", p.stdout)
        open(flag, "w").close()
        s.expect(r"update from bob \(\S+@\S+\): restore 40% done")
        self.run_id(s)
        p = self.rb_as("bob", "update", run, "-m", "still on track", code=0)
        s.expect(r"update from bob \(\S+@\S+\): still on track")
        self.rb_as("bob", "approve", run, code=0)
        self.assertEqual(s.wait(), 0, s.output)
        texts = [json.loads(b)["text"] for _, _, b in self.hook.bodies]
        self.assertEqual(texts, ["[P1] update from bob: restore 40% done, ETA 10 min",
                                 "[P1] update from bob: still on track"])
        ups = [(e["by"], e["source"], e["text"], e["step"]) for e in self.events("update")]
        self.assertEqual(ups, [("bob", "room", "restore 40% done, ETA 10 min", "look"),
                               ("bob", "room", "still on track", "restart")])

    def test_approve_and_update_fail_clearly(self):
        p = self.rb_as("bob", "approve", "nope", code=1)
        self.assertIn("no run nope in the room", p.stderr)
        self.assertExit(self.rb_as("bob", "approve", "x", "--reject"), 2)
        self.assertExit(self.rb_as("bob", "update", "x"), 2)
        self.assertExit(self.rb_as("bob", "approve"), 2)
        flag = self.path("flag")
        s = self.start(BOUNDARY_BOOK, "-p", f"flag={flag}", APPROVAL='"other"')
        run = self.in_room(s)
        p = self.rb_as("bob", "approve", run)
        self.assertExit(p, 1)
        self.assertIn(f"run {run} is not waiting for an approval (its state: running)", p.stderr)
        open(flag, "w").close()
        self.rb_as("bob", "approve", self.run_id(s), code=0)
        self.assertEqual(s.wait(), 0, s.output)


class Postgres(RoomCase, RunbookTestCase):
    BACKEND = "postgres"

    def test_a_role_cannot_forge_who(self):
        out = subprocess.run(
            [f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-h", PG.host, "-p", str(PG.port), "-U", "carol",
             "-d", "runbook", "-c", "insert into runbook_room.messages(run, kind, body, who) "
             "values ('r1', 'approve', '{}', 'bob') returning who"],
            capture_output=True, text=True, timeout=30, env={**self.env, "PGPASSWORD": PASSWORDS["carol"]})
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout.strip(), "carol")


    def post_as(self, user, run):
        """An approval written straight into the messages table as user."""
        subprocess.run([f"{PG_BIN}/psql", "-X", "-q", self.url(user), "-c",
                        f"insert into runbook_room.messages(run, kind, body) values ('{run}', 'approve', '{{}}')"],
                       check=True, capture_output=True, timeout=30)

    def kill_alices_connections(self):
        return int(PG.psql("select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity "
                           "where usename = 'alice') k;", db="postgres").strip())


class Redis(RoomCase, RunbookTestCase):
    BACKEND = "redis"

    def post_as(self, user, run):
        """An approval written straight into the store as user: the content
        under the user's own by: key, the run's inbox pointing at it."""
        ref = redis_as(user, "XADD", f"runbook:room:by:{user}:{run}", "*", "kind", "approve", "body", "{}")
        redis_as(user, "XADD", f"runbook:room:in:{run}", "*", "kind", "approve", "who", user, "ref", ref)

    def kill_alices_connections(self):
        return REDIS.command("CLIENT", "KILL", "USER", "alice")

    def test_a_user_cannot_write_under_another_users_key_nor_point_at_it(self):
        with self.assertRaisesRegex(ReplyError, "NOPERM"):
            r = redis_as("carol", "XADD", "runbook:room:by:bob:r1", "*", "kind", "approve", "body", "{}")
            if isinstance(r, ReplyError):
                raise r
        s = self.start(APPROVE_BOOK, TIMEOUT="60")
        run = self.run_id(s)
        # carol's own content, and an `in` entry claiming bob wrote it
        ref = redis_as("carol", "XADD", f"runbook:room:by:carol:{run}", "*", "kind", "approve", "body", "{}")
        redis_as("carol", "XADD", f"runbook:room:in:{run}", "*", "kind", "approve", "who", "bob", "ref", ref)
        s.expect(r"approval from bob refused: no entry \S+ under runbook:room:by:bob:")
        self.rb_as("bob", "approve", run, code=0)
        self.assertEqual(s.wait(), 0, s.output)
        (refused,) = self.events("approval.refused")
        self.assertEqual(refused["by"], "bob")
        self.assertIn("only bob can write there", refused["reason"])


class NoRoom(RunbookTestCase):
    def test_attested_approval_is_recorded_and_shown_as_such(self):
        rb = self.write("rb.lua", APPROVE_BOOK.replace("TIMEOUT", "5"))
        answers = self.write("answers", "[restore] Restore prod from last night's dump? = yes\n"
                                        "[restore] Approver's name = Dana Lead\n"
                                        "[restore] Approver's words = go\n")
        t = self.path("t.jsonl")
        p = self.run_rb("run", rb, "--answers", answers, "--transcript", t)
        self.assertExit(p, 0)
        self.assertIn("no incident room configured", p.stdout)
        self.assertIn('approved by Dana Lead (attested by the operator', p.stdout)
        (ap,) = [e for e in self.events(t) if e["event"] == "approval"]
        self.assertEqual((ap["approved"], ap["by"], ap["attested"], ap["text"]), (True, "Dana Lead", True, "go"))
        rep = self.run_rb("report", t)
        self.assertExit(rep, 0)
        self.assertRegex(rep.stdout, r"approval .*Dana Lead.*attested by the operator")

    def test_yes_attests_in_the_operators_own_name_and_says_so(self):
        rb = self.write("rb.lua", APPROVE_BOOK.replace("TIMEOUT", "5"))
        t = self.path("t.jsonl")
        p = self.run_rb("run", rb, "--yes", "--transcript", t, env={"SUDO_USER": "opal"})
        self.assertExit(p, 0)
        self.assertIn("approved by opal (attested by the operator opal with --yes: nobody else was asked", p.stdout)
        (ap,) = [e for e in self.events(t) if e["event"] == "approval"]
        self.assertEqual((ap["by"], ap["attested"], ap["source"]), ("opal", True, "yes"))

    def test_approve_and_update_need_a_room(self):
        cfg = self.write("config/runbook/config.lua", "targets = { staging = {} }\n")
        for args in (("approve", "r1"), ("update", "r1", "-m", "x"), ("approve", "r1", "--target", "staging")):
            p = self.run_rb(*args, "--config", cfg)
            self.assertExit(p, 2)
            self.assertIn("no room is configured: add room = {", p.stderr)
        bad = self.write("bad.lua", 'room = { backend = "mysql", url = "x" }\n')
        p = self.run_rb("approve", "r1", "--config", bad)
        self.assertExit(p, 2)
        self.assertIn('room.backend must be "postgres" or "redis" (got mysql)', p.stderr)
        for cmd, flag in (("approve", "--reject"), ("update", "--message")):
            h = self.run_rb(cmd, "--help")
            self.assertExit(h, 0)
            self.assertIn(flag, h.stdout)
            self.assertIn("--config", h.stdout)
            self.assertIn("--target", h.stdout)

    def test_misuse_names_the_runbook_line(self):
        rb = self.write("rb.lua", 'step("a", function()\n  approve("ok?", { from = "alice" })\nend)\n')
        p = self.run_rb("run", rb, "--yes", "--transcript", self.path("t.jsonl"))
        self.assertExit(p, 1)
        self.assertIn('rb.lua:2: approve: from must be "other" or a list of names', p.stdout)
        rb = self.write("rb2.lua", 'step("a", { approval = 7 }, function() end)\n')
        p = self.run_rb("check", rb)
        self.assertExit(p, 2)
        self.assertIn('rb2.lua:1: step "a": approval: from must be "other" or a list of names', p.stdout + p.stderr)

    def test_dry_run_says_it_would_wait_and_goes_on(self):
        rb = self.write("rb.lua", APPROVE_BOOK.replace("TIMEOUT", "5"))
        p = self.run_rb("run", rb, "--dry-run", "--transcript", self.path("t.jsonl"))
        self.assertExit(p, 0)
        self.assertIn("would wait for approval from another person: Restore prod", p.stdout)
        self.assertIn("@after-ran", p.stdout)
        shown = self.run_rb("show", self.write("b.lua", BOUNDARY_BOOK.replace("APPROVAL", '{ "alice", "bob" }')))
        self.assertExit(shown, 0)
        self.assertIn("approval by alice or bob", shown.stdout)


if __name__ == "__main__":
    unittest.main()
