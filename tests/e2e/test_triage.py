"""runbooks/triage.lua against a real app server (managed through the
"commands" manager), PostgreSQL 15 and Redis on loopback: the start time
and scope are noted, every check runs, the severity proposed follows the
findings (P0 for a failing health check or no service running, P1 for slow
responses, P2 for long-running queries or Redis down, P3 when nothing is
wrong), the operator confirms or changes it (answers file and a real
terminal), and the announcement reaches the notify channel.  Also
stdlib/incident.lua through the host, and the game-day scenario under
--dry-run.  Against a real PM2 and supervisord: a healthy app whose pm2
log headers come coloured is P3, not P2; a crash-looping app is a crash
loop, not "online"; with no pm2 daemon triage says so and starts none;
and the secret in the app's environment stays off screen and transcript.
Resumed after a SIGHUP at the severity question, the severity step
proposes from what the first run's checks found (kept in `state`), even
after the app recovered, and reads nothing again; resumed after a failed
announcement, it announces the severity and scope confirmed in the first
run; started at the severity step, it checks again and proposes what is
true now; the announce step announces only a severity confirmed in its
run or the run it resumes; with nothing to
check (no --target) no all-clear is proposed; error lines older than
log_window are left out (by their timestamps for commands and pm2, by
journalctl/compose --since), and a line with no timestamp is said to be
of unknown age."""
import json
import os
import signal
import subprocess
import time
import unittest

from appserver import OpsFixture, free_port
from harness import SOURCE_DIR, RunbookTestCase
from servers.pm2 import PM2, PM2Server, health, processes_with_env
from servers.postgres import PG_BIN, PostgresServer
from servers.redis import RedisServer
from servers.supervisord import SupervisordServer

# Planted in the apps' environment: `pm2 jlist` would print it.
SECRET = "Tr1-planted-app-secret-k8wz"

PG = None
RS = None


def setUpModule():
    global PG, RS
    PG = PostgresServer(tls=False)
    RS = RedisServer()


def tearDownModule():
    if RS:
        RS.stop()
    if PG:
        PG.stop()


class TriageTest(OpsFixture, RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.setup_ops(db=PG.url(), redis=RS.url(db=1))

    def declared(self):
        """The (severity, text) of the one announcement sent."""
        notes = self.notices()
        self.assertEqual(len(notes), 1, f"expected one announcement, got {notes}")
        return notes[0]

    def test_healthy_target_proposes_p3_and_the_operator_changes_it_to_p2(self):
        self.rb("triage", answers="[start] What is affected (scope)? = checkout slow for some users\n"
                                  "[severity] Severity for this incident? = P2\n")
        self.assertLogged("scope: checkout slow for some users", "start")
        self.assertLogged("1 check: 1 ok, 0 failing", "health")
        self.assertLogged("api (commands): api running", "status")
        self.assertLogged("database answers", "database")
        self.assertLogged("no query has run longer than 30 s", "database")
        self.assertLogged("Redis answers PONG", "redis")
        self.assertLogged("Proposed: P3 (cosmetic)", "severity")
        self.assertLogged("proposed P3, declared P2", "severity")
        choice = self.ev("prompt", question="Severity for this incident?")
        self.assertEqual([(c["answer"], c["source"]) for c in choice], [("P2", "answers")])
        sev, text = self.declared()
        self.assertEqual(sev, "P2", f"announced severity: {text}")
        self.assertIn("severity P2 (a minor feature down, or intermittent errors) declared by", text)
        self.assertIn("Incident on staging", text)
        self.assertIn("Scope: checkout slow for some users", text)
        self.assertIn("the checks found nothing wrong", text)
        notify = self.ev("notify")
        self.assertEqual(len(notify), 1)
        self.assertEqual(notify[0]["severity"], "P2")
        self.assertTrue(notify[0]["channels"][0]["ok"], notify[0])
        kinds = {(c["primitive"], c["outcome"]) for c in self.ev("call")}
        self.assertIn(("sql.query", "ok"), kinds)
        self.assertIn(("redis.call", "ok"), kinds)

    def test_health_check_answering_503_proposes_p0_and_announces_it(self):
        self.app.set_unhealthy()
        self.rb("triage", "--yes", "-p", "scope=everything returns 503")
        self.assertLogged("FAIL  503", "health")
        self.assertLogged("every health check fails (1 of 1)", "health")
        # the app logged an ERROR line for the failing check: the log step finds it
        self.assertLogged("api logged 1 error line(s) in the last 10 min; the newest is", "logs")
        self.assertLogged("Proposed: P0 (outage, data loss or security breach)", "severity")
        sev, text = self.declared()
        self.assertEqual(sev, "P0", text)
        self.assertIn("severity P0 (outage, data loss or security breach)", text)
        self.assertIn("answered 503, expected 2xx", text)
        self.assertIn("Scope: everything returns 503", text)

    def test_stopped_service_is_an_outage(self):
        self.app.stop("api")
        self.rb("triage", "--yes", "-p", "scope=site down")
        self.assertLogged("api (commands): api not running", "status")
        self.assertLogged("no service is running: api", "status")
        self.assertLogged("connection refused", "health")
        self.assertEqual(self.declared()[0], "P0")

    def test_responses_over_slow_after_propose_p1(self):
        self.app.set_delay(seconds=0.6)
        self.rb("triage", "--yes", "-p", "slow_after=0.3", "-p", "scope=pages are slow")
        self.assertLogged("SLOW  200", "health")
        self.assertLogged("(over 0.3 s)", "health")
        self.assertLogged("Proposed: P1 (a major feature down, or responses over 5 s)", "severity")
        sev, text = self.declared()
        self.assertEqual(sev, "P1", text)
        self.assertIn("/health took", text)

    def test_long_running_query_and_redis_down_propose_p2(self):
        psql = subprocess.Popen([f"{PG_BIN}/psql", PG.url(), "-X", "-q", "-c", "select pg_sleep(20)"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop_sleeper():
            PG.psql("select pg_terminate_backend(pid) from pg_stat_activity "
                    "where query like 'select pg_sleep%'")
            psql.kill()
            psql.wait(5)
        self.addCleanup(stop_sleeper)
        deadline = time.monotonic() + 10
        while "t" not in PG.psql("select count(*) > 0 from pg_stat_activity where query like "
                                 "'select pg_sleep%' and now() - query_start > interval '0.6 s'"):
            self.assertLess(time.monotonic(), deadline, "the pg_sleep query never showed up")
            time.sleep(0.1)
        self.target["redis"] = f"redis://127.0.0.1:{free_port()}/0"      # nothing listens there
        self.write_config(self.target)
        self.rb("triage", "--yes", "-p", "long_query=0.5", "-p", "scope=reports time out")
        self.assertLogged("1 query running longer than 0.5 s (oldest: pid", "database")
        self.assertLogged("select pg_sleep(20)", "database")
        self.assertLogged("Redis PING failed", "redis")
        self.assertLogged("refused", "redis")
        sev, text = self.declared()
        self.assertEqual(sev, "P2", text)
        self.assertIn("1 query running longer than 0.5 s", text)
        self.assertIn("Redis PING failed", text)

    def test_unreachable_database_is_a_major_finding(self):
        self.target["db"] = f"postgresql://runbook:x@127.0.0.1:{free_port()}/runbook"
        self.write_config(self.target)
        self.rb("triage", "--yes", "-p", "scope=logins fail")
        self.assertLogged("database unreachable: sql: connection to 127.0.0.1", "database")
        self.assertEqual(self.declared()[0], "P1")

    def test_severity_chosen_on_a_terminal(self):
        s = self.pty("run", "triage", "--target", "staging", "-p", "scope=search broken",
                     "--transcript", self.path("pty.jsonl"))
        s.expect(r"Proposed: P3")
        s.expect(r"Severity for this incident\?")
        s.expect(r"1\) P0")
        s.expect(r"choice \[1-4\]: ")
        s.sendline("7")
        s.expect(r"choose a number from 1 to 4")
        s.sendline("2")
        self.assertEqual(s.wait(30), 0, s.output)
        self.assertIn("proposed P3, declared P1", s.output)
        sev, text = self.declared()
        self.assertEqual(sev, "P1", text)
        self.assertIn("Scope: search broken", text)

    def test_scenario_rehearsal_proposes_p0_and_sends_nothing(self):
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "triage.lua")
        pid = self.app.pid()
        self.rb("triage", "--dry-run", "--yes", "--scenario", scenario)
        self.assertLogged("every health check fails", "health")
        self.assertLogged("Proposed: P0", "severity")
        self.assertEqual(self.notices(), [], "a dry run must not notify anyone")
        notify = self.ev("notify")
        self.assertEqual(len(notify), 1)
        self.assertTrue(notify[0].get("dry_run"), notify[0])
        self.assertIn("severity P0 (outage", notify[0]["text"])
        replaced = [c for c in self.ev("call") if c.get("scenario")]
        self.assertEqual([c["primitive"] for c in replaced], ["http"])
        self.assertEqual(self.app.pid(), pid, "the service was touched in a dry run")
        mutating = [c for c in self.ev("call") if c["primitive"] == "exec" and not c["args"]["readonly"]]
        self.assertEqual(mutating, [], "triage ran a command not marked readonly")

    def test_runbook_check_passes(self):
        p = self.run_rb("check", os.path.join(SOURCE_DIR, "runbooks", "triage.lua"))
        self.assertExit(p, 0)

    def test_journalctl_and_compose_select_the_window_by_time(self):
        # No systemd or Docker daemon runs here: their output comes from a
        # scenario, in a dry run; what is checked is the argv they are given.
        cases = {
            "systemd": ({"manager": "systemd"}, "^journalctl",
                        ["journalctl", "-u", "api", "-n", "200", "--no-pager", "-p", "err", "--since", "-900s"]),
            "compose": ({"manager": "compose", "compose_file": "/srv/app/compose.yml"}, "^docker compose",
                        ["docker", "compose", "-f", "/srv/app/compose.yml", "logs", "--no-color", "--tail", "200",
                         "--since", "900s", "api"]),
        }
        for name, (keys, pattern, argv) in cases.items():
            with self.subTest(manager=name):
                self.write_config(dict(services=["api"], **keys))
                scenario = self.write(f"{name}.lua", "return { { primitive = \"exec\", match = %s, result = "
                                      "{ code = 0, stdout = \"api-1  | ERROR upstream timed out\\n\" } } }\n"
                                      % json.dumps(pattern))
                self.rb("triage", "--dry-run", "--yes", "--scenario", scenario, "-p", "scope=x",
                        "-p", "log_window=900")
                logs = [c["args"]["argv"] for c in self.ev("call", primitive="exec") if c.get("step") == "logs"]
                self.assertEqual(logs, [argv])
                self.assertLogged(f"api logged 1 error line(s) in the last 15 min ({name} selects them by time)",
                                  "logs")

    def test_resumed_after_sighup_at_the_severity_question_proposes_p0_from_the_first_runs_findings(self):
        # The app is down; the ssh session to the bastion drops at the question.
        self.app.set_unhealthy()
        first = self.path("first.jsonl")
        s = self.pty("run", "triage", "--target", "staging", "-p", "scope=site down",
                     "-p", "started=03:10 UTC", "--transcript", first)
        s.expect(r"Proposed: P0")
        s.expect(r"Severity for this incident\?")
        os.kill(s.pid, signal.SIGHUP)
        self.assertEqual(s.wait(30), 129, s.output)
        self.assertEqual(self.notices(), [], "the cut run announced something")
        # By the time the operator resumes, the app answers again: the
        # incident was still an outage, which is what the first run found.
        self.app.set_unhealthy(on=False)
        self.rb("triage", "--resume", first, "--yes")
        skipped = [e["id"] for e in self.ev("step.end", status="skipped")]
        self.assertEqual(skipped, ["start", "health", "status", "logs", "database", "redis"])
        self.assertLogged("resumed: proposing from what the resumed run's checks found (health at", "severity")
        self.assertFalse([m for m in self.messages() if "checking again" in m], self.messages())
        self.assertEqual(self.ev("call", primitive="http"), [], "the resumed run read the health endpoint again")
        restored = self.ev("state")[0]
        self.assertIn("answered 503, expected 2xx", json.dumps(restored["set"]["findings"]))
        self.assertLogged("Proposed: P0 (outage, data loss or security breach)", "severity")
        self.assertFalse([m for m in self.messages() if "P3" in m and "Proposed" in m], self.messages())
        sev, text = self.declared()
        self.assertEqual(sev, "P0", text)
        self.assertIn("answered 503, expected 2xx", text)
        self.assertNotIn("the checks found nothing wrong", text)
        self.assertIn("Scope: site down.", text)
        self.assertIn("Started: 03:10 UTC.", text)

    def test_resumed_after_a_failed_announcement_announces_what_the_first_run_confirmed(self):
        # The notify channel cannot write (its directory is missing): the
        # announce step fails after the operator typed the scope and chose P2.
        self.notify_file = self.path("down", "notify.txt")
        self.write_config(self.target)
        self.rb("triage", answers="[start] What is affected (scope)? = search is broken\n"
                                  "[severity] Severity for this incident? = P2\n", expect=1)
        first = self.transcript
        self.assertEqual(self.step_end("announce")["status"], "failed")
        os.makedirs(self.path("down"))
        self.rb("triage", "--resume", first, "--yes")
        self.assertEqual(self.step_end("announce")["status"], "ok")
        self.assertEqual(self.ev("prompt"), [], "the resumed run asked again what the first run was told")
        self.assertEqual(self.ev("severity"), [], "the resumed run proposed a severity again")
        sev, text = self.declared()
        self.assertEqual(sev, "P2", text)
        self.assertIn("Scope: search is broken.", text)
        self.assertIn("the checks found nothing wrong", text)

    def test_start_at_severity_checks_again_and_asks_the_scope(self):
        self.app.set_unhealthy()
        self.rb("triage", "--start-at", "severity",
                answers="[severity] What is affected (scope)? = checkout down\n"
                        "[severity] Severity for this incident? = P0\n")
        self.assertLogged("resumed: checking again before proposing a severity", "severity")
        self.assertLogged("Proposed: P0", "severity")
        sev, text = self.declared()
        self.assertEqual(sev, "P0", text)
        self.assertIn("Scope: checkout down.", text)
        self.assertIn("Started: (not known: the start step did not run in this run", text)

    def test_start_at_announce_announces_nothing_unconfirmed(self):
        self.app.set_unhealthy()
        self.rb("triage", "--start-at", "announce", "--yes", "-p", "scope=site down", expect=1)
        end = self.step_end("announce")
        self.assertEqual(end["status"], "failed")
        self.assertIn("no severity was proposed and confirmed in this run, so none is announced", end["error"])
        self.assertEqual(self.notices(), [])
        self.assertEqual(self.ev("notify"), [])

    def test_no_target_checks_nothing_and_proposes_no_all_clear(self):
        p = self.rb("triage", "--yes", "-p", "scope=site down", target=False, expect=1)
        end = self.step_end("severity")
        self.assertEqual(end["status"], "failed")
        self.assertIn("nothing was checked: no --target", end["error"])
        self.assertIn("did you forget --target?", p.stdout + p.stderr)
        self.assertEqual(self.ev("severity"), [], "a severity was proposed with nothing checked")
        self.assertEqual(self.notices(), [])

    def test_target_with_nothing_to_check_proposes_no_all_clear(self):
        self.write_config({"manager": "commands"})
        self.rb("triage", "--yes", "-p", "scope=site down", expect=1)
        end = self.step_end("severity")
        self.assertIn("nothing was checked: target staging names no health, db, redis or services",
                      end["error"])
        self.assertEqual(self.ev("severity"), [])
        self.assertEqual(self.notices(), [])

    def test_error_lines_older_than_the_window_are_left_out(self):
        # An earlier episode, 30 and 25 minutes ago, left ERROR lines (one
        # stamped in UTC with no zone, one in UTC+2 saying so); the stack is
        # healthy now.
        older = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 30 * 60))
        old = time.strftime("%Y-%m-%d %H:%M:%S.250+02:00", time.gmtime(time.time() - 25 * 60 + 2 * 3600))
        with open(os.path.join(self.app.dir("api"), "app.log"), "a") as f:
            f.write(f"{older} ERROR [4242] health check failing: database connection refused\n"
                    f"{old} ERROR [4242] worker crashed\n")
        self.rb("triage", "--yes", "-p", "scope=checkout slow")
        self.assertLogged("api: 2 error line(s) older than 10 min left out (the newest of them 25 min old)",
                          "logs")
        self.assertLogged("Proposed: P3 (cosmetic)", "severity")
        self.assertEqual(self.declared()[0], "P3")
        # a wider window takes it in, and the finding says how old it is
        self.rb("triage", "--yes", "-p", "scope=checkout slow", "-p", "log_window=3600")
        self.assertLogged("api logged 2 error line(s) in the last 60 min; the newest is 25 min old", "logs")
        self.assertLogged("Proposed: P2", "severity")


class RealManagerTriageTest(OpsFixture, RunbookTestCase):
    """triage's status and log checks against a real PM2 and supervisord
    (no database or Redis in the target: those checks say so and skip).
    pm2 is also on PATH and PM2_HOME in the environment, as on an
    operator's shell."""

    def setUp(self):
        super().setUp()
        self.setup_ops(services=())
        self.env["PATH"] = os.path.dirname(PM2) + ":" + self.env.get("PATH", "")

    def pm2(self, crash=False):
        pm = PM2Server()
        self.addCleanup(pm.stop)
        self.env["PM2_HOME"] = pm.home
        pm.add("api", crash=crash, env={"API_SECRET": SECRET})
        pm.start()
        self.use(pm)
        return pm

    def use(self, server):
        target = server.target()
        target["health"] = [server.url("api")]
        self.write_config(target)

    def assertNoSecret(self, p):
        self.assertFalse(SECRET in p.stdout + p.stderr, "the app's secret reached the screen")
        with open(self.transcript) as f:
            self.assertFalse(SECRET in f.read(), "the app's secret reached the transcript")

    def test_healthy_pm2_app_with_coloured_logs_proposes_p3(self):
        pm = self.pm2()
        for _ in range(3):
            health(pm.url("api"))       # coloured INFO lines in its log
        p = self.rb("triage", "--yes", "-p", "scope=checkout slow")
        self.assertLogged("api (pm2): online", "status")
        self.assertLogged("api: 0 error line(s) in the last 0 line(s) read (filtered by the manager)", "logs")
        logs = [c for c in self.ev("call", primitive="exec") if c.get("step") == "logs"
                and c["args"]["argv"][0] == PM2]
        self.assertEqual([c["args"]["argv"][1:] for c in logs],
                         [["logs", "api", "--lines", "200", "--nostream", "--no-color", "--err"]])
        self.assertLogged("Proposed: P3 (cosmetic)", "severity")
        self.assertEqual(self.declared()[0], "P3")
        self.assertNoSecret(p)

    def test_old_pm2_error_line_is_left_out_and_an_untimed_one_says_so(self):
        pm = self.pm2()
        errlog = os.path.join(pm.home, "logs", "api-error.log")
        old = time.strftime("%Y-%m-%dT%H:%M:%S.123Z", time.gmtime(time.time() - 40 * 60))
        with open(errlog, "a") as f:
            f.write(f"{old} ERROR redis: connect ECONNREFUSED 127.0.0.1:6379\n")
        self.rb("triage", "--yes", "-p", "scope=checkout slow")
        self.assertLogged("api: 1 error line(s) older than 10 min left out (the newest of them 40 min old)",
                          "logs")
        self.assertEqual(self.declared()[0], "P3")
        with open(errlog, "a") as f:
            f.write("TypeError: cannot read properties of undefined\n")
        os.unlink(self.notify_file)
        self.rb("triage", "--yes", "-p", "scope=checkout slow")
        self.assertLogged("api logged 1 error line(s) of unknown age (the 10 min window could not be "
                          "applied: no timestamp in the line); last: 0|api", "logs")
        self.assertLogged("TypeError: cannot read properties of undefined", "logs")
        self.assertEqual(self.declared()[0], "P2")

    def test_crash_looping_pm2_app_is_a_crash_loop_not_online(self):
        self.pm2(crash=True)
        p = self.rb("triage", "--yes", "-p", "scope=site down")
        status = " ".join(self.messages("status"))
        self.assertRegex(status, r"api \(pm2\): (crash loop: \d+ restarts, \d+ of them in \d+\.\d s; up \d+ s "
                                 r"\(pm2 says \w+\)|errored after \d+ restarts: a crash loop)", status)
        self.assertNotIn("api (pm2): online", status)
        self.assertRegex(status, r"no service is running: api \((crash loop|errored)")
        self.assertLogged("cannot read config", "logs")       # the app's own error line, escapes removed
        self.assertFalse(any("\x1b" in m for m in self.messages()), "an escape sequence reached a log line")
        self.assertEqual(self.declared()[0], "P0")
        self.assertNoSecret(p)

    def test_no_pm2_daemon_is_said_and_none_is_started(self):
        pm = self.pm2()
        pm.kill()
        self.rb("triage", "--yes", "-p", "scope=site down")
        self.assertLogged(f"api (pm2): pm2 daemon not running (no {pm.home}/pm2.pid)", "status")
        self.assertLogged("logs of api: service api: logs through pm2 (here): pm2 daemon not running", "logs")
        self.assertEqual(self.declared()[0], "P0")
        self.assertIsNone(pm.daemon_pid(), "triage started a pm2 daemon")
        self.assertFalse(os.path.exists(os.path.join(pm.home, "rpc.sock")), "PM2_HOME has a new rpc.sock")
        self.assertEqual(processes_with_env("PM2_HOME", pm.home), [], "a pm2 process runs")

    def test_healthy_supervisord_program_proposes_p3(self):
        sv = SupervisordServer()
        self.addCleanup(sv.stop)
        sv.add("api", env={"API_SECRET": SECRET})
        sv.start()
        self.use(sv)
        p = self.rb("triage", "--yes", "-p", "scope=checkout slow")
        self.assertRegex(" ".join(self.messages("status")), r"api \(supervisor\): RUNNING \(pid \d+, uptime ")
        self.assertLogged("api: 0 error line(s)", "logs")
        self.assertEqual(self.declared()[0], "P3")
        self.assertNoSecret(p)

    def declared(self):
        notes = self.notices()
        self.assertEqual(len(notes), 1, f"expected one announcement, got {notes}")
        return notes[0]


INCIDENT_TEST = r"""
runbook { name = "incident-module", title = "stdlib/incident.lua", severity = "P3" }
local incident = require("incident")
local function eq(got, want, what)
  if got ~= want then error(string.format("%s: expected %s, got %s", what, tostring(want), tostring(got)), 2) end
end
local function raises(text, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok or not tostring(err):find(text, 1, true) then
    error(string.format("expected an error containing %q, got %s", text, ok and "no error" or tostring(err)), 2)
  end
end

step("propose takes the most severe finding", function()
  local sev, why = incident.propose({})
  eq(sev, "P3", "no findings"); eq(why[1], "the checks found nothing wrong", "reason")
  sev, why = incident.propose({ { kind = "errors", what = "a" }, { kind = "slow", what = "b" },
    { kind = "feature_down", what = "c" }, { kind = "degraded", what = "d" } })
  eq(sev, "P1", "slow + feature_down"); eq(#why, 2, "reasons at P1"); eq(why[1] .. why[2], "bc", "reasons")
  eq((incident.propose({ { severity = "P0", what = "x" }, { kind = "cosmetic" } })), "P0", "severity=")
  for _, k in ipairs({ "outage", "data_loss", "security" }) do eq((incident.propose({ { kind = k } })), "P0", k) end
  eq((incident.propose({ { kind = "intermittent" } })), "P2", "intermittent")
  eq((incident.propose({ { kind = "cosmetic" } })), "P3", "cosmetic")
  raises('has kind "bogus"', incident.propose, { { kind = "bogus", what = "z" } })
  raises('"P5" is not a severity', incident.propose, { { severity = "P5" } })
end)

step("escalate, worse, rank and meaning", function()
  eq(incident.escalate("P2"), "P1", "P2 up"); eq(incident.escalate("P0"), "P0", "P0 stays")
  eq(incident.escalate("P3", { at_least = "P1" }), "P1", "at_least")
  eq(incident.escalate("P1", { at_least = "P1" }), "P0", "at_least below")
  eq(incident.worse("P2", "P1"), "P1", "worse"); eq(incident.worse("P0", "P3"), "P0", "worse")
  eq(incident.rank("P3"), 3, "rank")
  eq(incident.meaning("P1"), "a major feature down, or responses over 5 s", "meaning")
  raises('"high" is not a severity', incident.rank, "high")
end)

step("messages fill their templates", function()
  local m = incident.message("declared", { severity = "P1", service = "api", scope = "checkout",
    started = "09:00", reasons = { "a", "b" } })
  eq(m, "Incident on staging: severity P1 (a major feature down, or responses over 5 s) declared by " ..
    os.getenv("USER_NAME") .. ". Service: api. Started: 09:00. Scope: checkout. Findings: a; b.", "declared")
  m = incident.message("restart_failed", { severity = "P1", previous = "P2", service = "api", attempts = 2,
    error = "exit 1" })
  eq(m, "Restart of api on staging failed after 2 attempt(s): exit 1. Severity raised from P2 to P1 " ..
    "(a major feature down, or responses over 5 s).", "restart_failed")
  m = incident.message("resolved", { severity = "P2", service = "api", operator = "ana" })
  eq(m, "Resolved: api on staging: (not given). Severity was P2; resolved by ana.", "resolved")
  raises('no template "nope"', incident.message, "nope", {})
  incident.templates.custom = "${service} is ${state}"
  eq(incident.message("custom", { service = "db", state = "read-only" }), "db is read-only", "custom")
end)

step("the operator confirms or changes the proposal", { id = "confirm" }, function()
  eq(incident.confirm("P1", { "why" }), "P2", "changed")
  eq(incident.confirm("P0", { "why" }), "P0", "confirmed")
end)

step("announce sends the message through notify", function()
  local text = incident.announce("resolved", { severity = "P2", service = "api", summary = "back" })
  assert(text:find("Resolved: api on staging: back.", 1, true), text)
end)
"""


class IncidentModuleTest(OpsFixture, RunbookTestCase):
    def test_incident_module_through_the_host(self):
        self.setup_ops(services=())
        rb = self.write("incident_test.lua", INCIDENT_TEST)
        import pwd
        self.env["USER_NAME"] = self.env.get("SUDO_USER") or pwd.getpwuid(os.geteuid()).pw_name
        p = self.rb(rb, answers="[confirm] Severity for this incident? = P2\n"
                                "[confirm] Severity for this incident? = P0\n")
        ends = self.ev("step.end")
        self.assertEqual([e["status"] for e in ends], ["ok"] * 5, p.stdout)
        self.assertIn("proposed P1, declared P2", p.stdout)
        self.assertEqual(self.notices(), [("P2", "Resolved: api on staging: back. Severity was P2; resolved by "
                                           + self.env["USER_NAME"] + ".")])


if __name__ == "__main__":
    unittest.main()
