"""The five example documents of examples/markdown/, each run as a team
would run its wiki page, against a real stack: PostgreSQL (the target's
db), Redis (its redis), and a Node app under a real PM2 (its health URL,
manager = "pm2"), each with the fault the document is for.

For every document: a dry run with an answers file goes through every
step, runs the reads for real and runs no write (the app keeps its pid,
the database its rows); a real run, every confirmation answered from the
file (no --yes), runs the writes (pm2 restarts the app, pg_restore brings
the lost rows back, pg_terminate_backend ends the blocking session) and
its transcript verifies; `runbook import` gives Lua that passes `check`,
shows the same steps and dry-runs to the end with the same answers."""
import os
import unittest

from dbcase import DbTestCase
from harness import SOURCE_DIR
from servers.pm2 import PM2, PM2Server
from servers.redis import RedisServer

EXAMPLES = os.path.join(SOURCE_DIR, "examples", "markdown")

CHECKLIST_ANSWERS = [
    "Acknowledge the page = done", "Post in #incidents that you are looking = done",
    "Time detected = 03:12", "Run: pm2 restart api = yes",
    "Confirm health is green again = done", "Root cause hypothesis = a slow query",
    "Write the summary in the incident doc = not done",
]


def steps_of(out):
    """The step titles `show` prints, in order."""
    return [l.split("]", 1)[1].split("  (id", 1)[0].strip() for l in out.splitlines()
            if l.strip()[:1].isdigit()]


def setUpModule():
    DbTestCase.start_cluster()


def tearDownModule():
    DbTestCase.stop_cluster()


class MarkdownExamples(DbTestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer()
        cls.pm = PM2Server()
        try:
            cls.pm.add("api")
            cls.pm.start()
        except Exception:
            cls.pm.stop()
            cls.redis.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pm.stop()
        cls.redis.stop()

    def setUp(self):
        super().setUp()
        self.populate()
        self.env["PATH"] = os.path.dirname(PM2) + ":" + self.env.get("PATH", "")
        self.env["PM2_HOME"] = self.pm.home
        self.health = self.pm.url("api", "/health")
        self.write_config('targets = { stage = { db = %r, redis = %r, health = %r, manager = "pm2",\n'
                          '  services = { "api" } } }\n' % (self.url, self.redis.url(), self.health))

    # ---- helpers ---------------------------------------------------------

    def answers(self, name, lines):
        return self.write(name + ".answers", "".join("[*] " + l + "\n" for l in lines))

    def run_doc(self, doc, answers, *args, dry=False, tag="real"):
        t = self.path(f"{os.path.basename(doc)}.{tag}.jsonl")
        argv = [doc, "--target", "stage", "--answers", answers, *args] + (["--dry-run"] if dry else [])
        p = self.run_book(*argv, transcript=t, timeout=180)
        self.assertExit(p, 0)
        self.assertExit(self.run_rb("verify", t), 0)
        ends = [e["status"] for e in self.events(t) if e["event"] == "step.end"]
        self.assertEqual(ends, ["ok"] * len(ends))
        return p, t

    def commands(self, t):
        """(command line, simulated?) of every sh call."""
        return [(c["args"]["cmd"] if "cmd" in c["args"] else " ".join(c["args"].get("argv", [])),
                 c["outcome"] == "simulated", c["args"].get("readonly"))
                for c in self.calls("sh", transcript=t)]

    def assertNoWriteRan(self, t):
        for cmd, simulated, readonly in self.commands(t):
            self.assertTrue(simulated or readonly, f"a write ran in the dry run: {cmd}")
        for c in self.calls("sql.exec", transcript=t):
            self.assertEqual(c["outcome"], "simulated", c)

    def assertSamePlanOnImport(self, name, answers, *args):
        doc = os.path.join(EXAMPLES, name)
        lua = self.path(name.replace(".md", ".lua"))
        self.assertExit(self.run_rb("import", doc, "-o", lua), 0)
        self.assertExit(self.run_rb("check", lua), 0)
        self.assertEqual(steps_of(self.run_rb("show", lua).stdout), steps_of(self.run_rb("show", doc).stdout))
        self.run_doc(lua, answers, *args, dry=True, tag="import")

    # ---- the documents ---------------------------------------------------------

    def test_oncall_checklist_restarts_the_app_through_pm2(self):
        doc = os.path.join(EXAMPLES, "oncall-checklist.md")
        a = self.answers("checklist", CHECKLIST_ANSWERS)
        before = self.pm.pid("api")
        p, t = self.run_doc(doc, a, dry=True, tag="dry")
        self.assertIn('"status":"ok"', p.stdout)                  # curl of the health URL ran
        self.assertIn("accepting connections", p.stdout)          # pg_isready with $DATABASE_URL
        self.assertIn("not for this host (systemd)", p.stdout)    # the other managers' lines skipped
        self.assertIn("would run: pm2 restart api", p.stdout)
        self.assertNoWriteRan(t)
        self.assertEqual(self.pm.pid("api"), before, "the dry run restarted the app")
        p, t = self.run_doc(doc, a)
        self.assertNotEqual(self.pm.pid("api"), before, "the real run did not restart the app")
        asked = {e["question"]: e["answer"] for e in self.events(t) if e["event"] == "prompt"}
        self.assertEqual(asked.get("Time detected"), "03:12")
        with open(t) as f:
            self.assertNotIn(self.url.split("@")[0].split(":")[-1], f.read(), "the db password was recorded")
        self.assertSamePlanOnImport("oncall-checklist.md", a)

    def test_incident_response_restores_the_lost_rows(self):
        doc = os.path.join(EXAMPLES, "incident-response.md")
        dump = self.dump()
        self.sql("delete from orders where id > 100;")            # the fault: rows lost
        a = self.answers("ir", [
            "Confirm the alert is real (check the dashboard) = done", "Assign an incident lead = done",
            "Time detected = 03:12", "Incident lead = alice", "Note the last good backup = done",
            "Root cause hypothesis = a bad migration",
            "Get approval from the incident lead before the restore = done",
            "Run: pm2 stop api = yes", "Run: pm2 start api = yes",
            f"Destructive: pg_restore --clean --if-exists -d \"$DATABASE_URL\" '{dump}' -- type stage to run it = stage",
            "Health is green = done", "Post the all-clear in the incident channel = done"])
        args = ("-p", "backup_file=" + dump)
        p, t = self.run_doc(doc, a, *args, dry=True, tag="dry")
        self.assertIn("orders=100", p.stdout)                      # the SELECT ran against the db
        self.assertIn("TABLE public orders", p.stdout)             # pg_restore --list, marked readonly
        self.assertIn("| PONG", p.stdout)                          # redis-cli -u $REDIS_URL
        self.assertNoWriteRan(t)
        self.assertEqual(self.query("select count(*) from orders"), "100")
        p, t = self.run_doc(doc, a, *args)
        self.assertEqual(self.query("select count(*) from orders"), "120")
        self.assertIn("orders after the restore: 120", p.stdout)
        self.assertIsNotNone(self.pm.pid("api"), "the app is not back after the restore")
        self.assertSamePlanOnImport("incident-response.md", a, *args)

    def test_api_latency_ends_the_blocking_session(self):
        doc = os.path.join(EXAMPLES, "api-latency.md")
        locker = self.lock_orders()                                # the fault: a lock held
        self.session("waiter", "select count(*) from orders;")
        self.wait_for("waiter", "wait_event_type = 'Lock'")
        a = self.answers("lat", [
            f"Destructive: psql \"$DATABASE_URL\" -c \"SELECT pg_terminate_backend({locker})\" "
            "-- type stage to run it = stage",
            f"Run: curl -fsS -X POST '{self.health}' = yes", "Latency back under SLO = done"])
        args = ("-p", f"pid={locker}")
        p, t = self.run_doc(doc, a, *args, dry=True, tag="dry")
        self.assertIn(f"pid={locker}", p.stdout)                   # the blocker, found by the SELECT
        self.assertNoWriteRan(t)
        self.assertTrue(self.query(f"select count(*) from pg_stat_activity where pid = {locker}") == "1")
        self.run_doc(doc, a, *args)
        self.assertEqual(self.query(f"select count(*) from pg_stat_activity where pid = {locker}"), "0")
        self.assertSamePlanOnImport("api-latency.md", a, *args)

    def test_links_run_the_linked_checklist_when_asked(self):
        doc = os.path.join(EXAMPLES, "links.md")
        a = self.answers("links", [
            "Open the dashboards = done", "Work through the on-call checklist = done",
            "Run the linked runbook ./oncall-checklist.md now (Work through the on-call checklist)? = run it now",
            "Roll back the last deploy = skipped", "Tell support: #support-escalations = done",
            *CHECKLIST_ANSWERS])
        before = self.pm.pid("api")
        p, t = self.run_doc(doc, a, dry=True, tag="dry")
        self.assertIn("-> ./oncall-checklist.md 2/5: Check the service", p.stdout)
        self.assertIn("runbook run ./rollback.md", p.stdout)       # not there: named, not run
        self.assertNoWriteRan(t)
        self.assertEqual(self.pm.pid("api"), before)
        p, t = self.run_doc(doc, a)
        self.assertNotEqual(self.pm.pid("api"), before, "the linked checklist's restart did not run")
        linked = [e["title"] for e in self.events(t) if e["event"] == "linked"]
        self.assertEqual(linked, ["Triage & communicate", "Check the service", "Check the database",
                                  "Mitigate", "Hand over"])
        self.assertSamePlanOnImport("links.md", a)

    def test_oncall_procedures_declares_the_chosen_severity(self):
        doc = os.path.join(EXAMPLES, "oncall-procedures.md")
        a = self.answers("proc", ["Declare the severity from the matrix above. = 2"])
        args = ("-p", "status_url=" + self.health)
        for dry in (True, False):
            p, t = self.run_doc(doc, a, *args, dry=dry, tag=str(dry))
            self.assertIn("Escalation matrix:", p.stdout)          # the contacts, shown at the start
            self.assertIn("Engineering manager", p.stdout)
            self.assertIn('"status":"ok"', p.stdout)
            sev = [(e["level"], e["action"]) for e in self.events(t) if e["event"] == "severity"]
            self.assertEqual(sev, [("P1", "declared")])
        self.assertSamePlanOnImport("oncall-procedures.md", a, *args)


if __name__ == "__main__":
    unittest.main()
