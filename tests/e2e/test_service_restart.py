"""runbooks/service-restart.lua against a real app server managed through
the "commands" manager, here and over ssh (a real sshd on loopback), and
against real PM2 and supervisord (tests/servers/pm2.py, supervisord.py):
the
restart brings the process back (a new pid) and its health checks pass; a
restart that keeps failing is tried `attempts` times, the severity is
raised and the failure announced; a service that runs but stays unhealthy
raises it too; a dry run restarts nothing.  With pm2: a crash loop is not
"online", an app the daemon lost after `pm2 kill` is started from the
ecosystem file in one attempt, a read-only look with no daemon starts
none, and the secret in the app's environment (which `pm2 jlist` prints)
reaches neither the screen nor the transcript.  stdlib/service.lua's argv and
output parsing for systemd, docker compose and pm2 are checked through the
host with --dry-run and a scenario standing in for those tools' answers
(none of them runs on this machine), and a target missing a key says which
one to add."""
import json
import os
import re
import unittest

from appserver import OpsFixture, lua
from harness import LUA_EMIT, SOURCE_DIR, RunbookTestCase, emitted
from servers.pm2 import PM2, PM2Server, health, processes_with_env
from servers.sshd import SSHServer
from servers.supervisord import SupervisordServer

# Planted in the apps' environment: `pm2 jlist` prints it.
SECRET = "Sv9-planted-app-secret-7f3q"


class ServiceRestartTest(OpsFixture, RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.setup_ops()

    def restarts(self):
        return [c for c in self.ev("call") if c.get("step") == "restart" and c["primitive"] in ("exec", "ssh")
                and "restart" in json.dumps(c["args"])]

    def test_restart_brings_the_service_back_and_announces_it_resolved(self):
        before = self.app.pid()
        self.rb("service-restart", "--yes", answers="Announce the incident as resolved? = yes\n")
        after = self.app.pid()
        self.assertIsNotNone(after, "not running after the restart")
        self.assertNotEqual(after, before, "the process was not restarted")
        self.assertEqual(len(self.restarts()), 1)
        self.assertLogged("restart attempt 1 of 2 (1 in this run)", "restart")
        self.assertLogged("api is running after attempt 1", "restart")
        self.assertLogged("healthy: 1 check: 1 ok", "after")
        self.assertEqual(self.notices(), [("P2", "Resolved: api on staging: restarted after 1 attempt(s); status "
                                           "and health checks pass. Severity was P2; resolved by "
                                           + self.ev("run.start")[0]["operator"] + ".")])

    def test_failing_restart_is_retried_then_raises_the_severity_and_notifies(self):
        self.app.set_broken()
        self.rb("service-restart", "--yes", "-p", "attempts=2", "-p", "severity=P2", expect=1)
        self.assertEqual(len(self.restarts()), 2, "expected two restart attempts")
        self.assertLogged("attempt 1 failed: restart through commands exited with code 1: FATAL config error",
                          "restart")
        self.assertLogged("severity raised from P2 to P1", "restart")
        notes = self.notices()
        self.assertEqual(len(notes), 1, notes)
        sev, text = notes[0]
        self.assertEqual(sev, "P1")
        self.assertTrue(text.startswith("Restart of api on staging failed after 2 attempt(s): restart through "
                                        "commands exited with code 1: FATAL config error"), text)
        self.assertIn("Severity raised from P2 to P1 (a major feature down, or responses over 5 s).", text)
        end = self.step_end("restart")
        self.assertEqual(end["status"], "failed")
        self.assertIn("(severity now P1)", end["error"])
        self.assertIsNone(self.app.pid(), "the broken service should not be running")

    def test_service_that_runs_but_stays_unhealthy_raises_the_severity(self):
        self.app.set_unhealthy()
        self.rb("service-restart", "--yes", "-p", "severity=P1", "-p", "settle=1", expect=1)
        self.assertEqual(self.step_end("restart")["status"], "ok")
        end = self.step_end("after")
        self.assertEqual(end["status"], "failed")
        self.assertIn("api runs but its health checks fail: 1 check: 0 ok, 1 failing", end["error"])
        self.assertEqual([n[0] for n in self.notices()], ["P0"], "P1 raised once should be P0")
        self.assertIn("Severity raised from P1 to P0", self.notices()[0][1])

    def test_dry_run_restarts_nothing(self):
        before = self.app.pid()
        p = self.rb("service-restart", "--dry-run", "--yes")
        self.assertEqual(self.app.pid(), before, "a dry run restarted the service")
        self.assertRegex(p.stdout, r"would run: \S+/bin/restart api")
        self.assertLogged("dry run: the restart was not run", "restart")
        (restart,) = self.restarts()
        self.assertEqual(restart["outcome"], "simulated")
        status = [c for c in self.ev("call", primitive="exec") if "status" in c["args"]["argv"][0]]
        self.assertTrue(status and all(c["outcome"] == "ok" and c["args"]["readonly"] for c in status), status)

    def test_dry_run_of_a_stopped_service_reads_its_state_once_and_claims_nothing(self):
        # Nothing was restarted, so the dry run neither waits out settle for
        # the service to come up nor raises the severity because it did not.
        self.app.stop()
        self.rb("service-restart", "--dry-run", "--yes", "-p", "settle=600", timeout=60)
        self.assertIsNone(self.app.pid(), "a dry run started the service")
        self.assertLogged("dry run: the restart was simulated, so api was not waited for; its state now: api not running", "after")
        self.assertLogged("would wait up to 600 s for health endpoints passing", "after")
        self.assertEqual(self.ev("severity"), [], "a dry run raised the severity")
        self.assertEqual(self.step_end("after")["status"], "ok")
        self.assertEqual([n for n in self.ev("notify")], [], "a dry run announced a failure")

    def test_scenario_rehearsal_raises_the_severity_without_touching_anything(self):
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "service-restart.lua")
        before = self.app.pid()
        self.rb("service-restart", "--dry-run", "--yes", "-p", "severity=P2", "--scenario", scenario, expect=1)
        self.assertEqual(self.app.pid(), before)
        self.assertEqual(len(self.restarts()), 2)
        self.assertTrue(all(c.get("scenario") == "restart fails" for c in self.restarts()))
        self.assertEqual(self.notices(), [], "a dry run must not notify anyone")
        (note,) = self.ev("notify")
        self.assertTrue(note.get("dry_run"))
        self.assertEqual(note["severity"], "P1")
        self.assertIn("failed after 2 attempt(s): restart through commands exited with code 1: Job for "
                      "api.service failed", note["text"])
        self.assertIn("Severity raised from P2 to P1", note["text"])

    def test_restart_over_ssh(self):
        sshd = SSHServer()
        sshd.start()
        self.addCleanup(sshd.stop)
        known = self.write("known_hosts", sshd.known_hosts_line())
        self.target["ssh"] = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user, "key": sshd.key,
                              "known_hosts": known}
        self.write_config(self.target)
        before = self.app.pid()
        self.rb("service-restart", "--yes")
        self.assertNotEqual(self.app.pid(), before, "not restarted over ssh")
        self.assertIsNotNone(self.app.pid())
        execs = [c for c in self.ev("call", primitive="ssh") if c["args"]["op"] == "exec"]
        self.assertTrue(any(re.search(r"/bin/restart api$", c["args"]["cmd"]) for c in execs), execs)
        self.assertTrue(any(re.search(r"/bin/status api$", c["args"]["cmd"]) and c["args"]["readonly"]
                            for c in execs), execs)
        self.assertEqual(len([c for c in self.ev("call", primitive="ssh") if c["args"]["op"] == "connect"]), 1,
                         "one ssh session for the whole run")
        self.assertEqual([c["primitive"] for c in self.ev("call") if c["primitive"] == "exec"], [],
                         "a command ran locally although the target has ssh")
        self.assertLogged(f"{sshd.user}@127.0.0.1:{sshd.port}", "before")

    def test_target_without_a_manager_says_which_key_to_add(self):
        del self.target["manager"]
        self.write_config(self.target)
        self.rb("service-restart", "--yes", expect=1)
        self.assertIn('targets.staging has no manager; add manager = "systemd" (or "compose", "pm2", '
                      '"supervisor", "commands") to it in the config file', self.step_end("before")["error"])

    def test_runbook_check_passes(self):
        self.assertExit(self.run_rb("check", os.path.join(SOURCE_DIR, "runbooks", "service-restart.lua")), 0)


class RealManagerMixin:
    """service-restart against a real PM2 or supervisord, with the target's
    notify channel from OpsFixture.  pm2 is also on PATH and PM2_HOME in
    the environment, as on an operator's shell, so a runbook that ignored
    the target's pm2 keys would still reach this daemon."""

    def setup_real(self):
        self.setup_ops(services=())
        self.env["PATH"] = os.path.dirname(PM2) + ":" + self.env.get("PATH", "")

    def use_target(self, server, **more):
        target = server.target()
        target["health"] = [server.url("api")]
        target.update(more)
        self.write_config(target)

    def assertNoSecret(self, p):
        """The secret in the app's environment (which `pm2 jlist` would
        print, and exec record) is on neither the screen nor the transcript."""
        self.assertFalse(SECRET in p.stdout + p.stderr, "the app's secret reached the screen")
        with open(self.transcript) as f:
            recorded = f.read()
        self.assertFalse(SECRET in recorded, "the app's secret reached the transcript")

    def changes(self):
        """The argv of every mutating exec of the restart step."""
        return [c["args"]["argv"] for c in self.ev("call", primitive="exec")
                if c.get("step") == "restart" and not c["args"]["readonly"]]


class PM2ServiceRestartTest(RealManagerMixin, OpsFixture, RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.setup_real()
        self.pm = PM2Server()
        self.addCleanup(self.pm.stop)
        self.env["PM2_HOME"] = self.pm.home

    def test_restart_of_a_real_pm2_app_brings_it_back(self):
        self.pm.add("api", env={"API_SECRET": SECRET})
        self.pm.start()
        self.use_target(self.pm)
        before = self.pm.pid("api")
        p = self.rb("service-restart", "--yes")
        after = self.pm.pid("api")
        self.assertIsNotNone(after, "not running after the restart")
        self.assertNotEqual(after, before, "pm2 did not restart the app")
        self.assertEqual(health(self.pm.url("api"))["pid"], after, "/health is not answered by the new process")
        self.assertEqual(self.changes(), [[PM2, "restart", "api", "--no-color"]])
        self.assertLogged("api: online (pm2, here)", "before")
        self.assertLogged("api is running after attempt 1", "restart")
        self.assertLogged("healthy: 1 check: 1 ok", "after")
        calls = [c for c in self.ev("call", primitive="exec") if c["args"]["argv"][0] == PM2]
        self.assertTrue(calls and all("PM2_HOME" in json.dumps(c["args"].get("env")) for c in calls),
                        "pm2 ran without the target's pm2_home")
        self.assertNoSecret(p)

    def test_crash_loop_is_not_reported_online(self):
        self.pm.add("api", crash=True, env={"API_SECRET": SECRET})
        self.pm.start()
        self.use_target(self.pm)
        self.rb("service-restart", "--yes", "-p", "attempts=1", "-p", "settle=4", expect=1)
        before = " ".join(self.messages("before"))
        self.assertRegex(before, r"api: (crash loop: \d+ restarts, \d+ of them in \d+\.\d s; up \d+ s \(pm2 says "
                                 r"\w+\)|errored after \d+ restarts: a crash loop)", before)
        self.assertNotIn("api: online", before)
        self.assertNotIn("is running after attempt", " ".join(self.messages("restart")))
        err = self.step_end("restart")["error"]
        # pm2's own restart of a crash-looping app sometimes fails ("Process
        # with pid N already exists"): then the error says what the app is now
        self.assertRegex(err, r"(api restarted but is |; api is now: )(crash loop|errored after \d+ restarts: a "
                              r"crash loop)", err)
        self.assertEqual([n[0] for n in self.notices()], ["P1"])

    def test_after_pm2_kill_the_app_is_started_from_the_ecosystem_file(self):
        self.pm.add("api", env={"API_SECRET": SECRET})
        self.pm.start()
        self.pm.kill()
        self.assertIsNone(self.pm.daemon_pid())
        self.use_target(self.pm)
        p = self.rb("service-restart", "--yes")
        self.assertLogged("api: pm2 daemon not running (no " + self.pm.home + "/pm2.pid)", "before")
        self.assertEqual(self.changes(), [[PM2, "start", self.pm.ecosystem, "--only", "api", "--no-color"]],
                         "expected one start from the ecosystem file and no `pm2 restart`")
        self.assertLogged("restart attempt 1 of 2 (1 in this run)", "restart")
        self.assertLogged("started api from " + self.pm.ecosystem, "restart")
        self.assertLogged("api is running after attempt 1", "restart")
        self.assertIsNotNone(self.pm.pid("api"))
        self.assertIsNotNone(health(self.pm.url("api")), "the app started from the ecosystem file does not answer")
        self.assertNoSecret(p)

    def test_without_an_ecosystem_file_a_lost_app_is_not_retried(self):
        self.pm.add("api")
        self.pm.start()
        self.pm.kill()
        self.use_target(self.pm, pm2_ecosystem=None)
        self.rb("service-restart", "--yes", expect=1)
        self.assertEqual(self.changes(), [], "a pm2 command ran that cannot work")
        self.assertLogged("not trying again", "restart")
        self.assertIn("add pm2_ecosystem", self.step_end("restart")["error"])
        self.assertIsNone(self.pm.daemon_pid(), "a pm2 daemon was started")

    def test_a_pm2_that_cannot_run_is_named_by_its_target_key(self):
        # (a newcomer's drill: "/.../stdlib/service.lua:199: exec: cannot run
        # 'pm2'" reached the operator and the notification)
        self.pm.add("api")
        self.pm.start()
        self.pm.kill()
        missing = self.path("no-such-dir/pm2")
        self.use_target(self.pm, pm2_bin=missing)
        self.rb("service-restart", "--yes", expect=1)
        err = self.step_end("restart")["error"]
        self.assertIn(f'service: cannot run {missing} for manager "pm2" here (not installed, or not on PATH): '
                      "give its full path as pm2_bin in the target", err)
        self.assertNotIn("service.lua", err)
        self.assertNotIn("service.lua", " ".join(t for _, t in self.notices()))

    def test_read_only_look_with_no_daemon_starts_none(self):
        self.pm.add("api")
        self.pm.start()
        self.pm.kill()
        self.use_target(self.pm)
        p = self.rb("service-restart", "--dry-run", "--yes")
        self.assertLogged("api: pm2 daemon not running", "before")
        self.assertLogged("dry run: the restart was simulated, so api was not waited for; its state now: pm2 daemon not running", "after")
        self.assertRegex(p.stdout, r"would run: \S*pm2 start \S*ecosystem.config.js --only api")
        self.assertLogged("would start api from " + self.pm.ecosystem, "restart")
        self.assertIsNone(self.pm.daemon_pid(), "a read-only look started a pm2 daemon")
        self.assertFalse(os.path.exists(os.path.join(self.pm.home, "rpc.sock")), "PM2_HOME has a new rpc.sock")
        self.assertEqual(processes_with_env("PM2_HOME", self.pm.home), [], "a pm2 process runs")


    def test_restart_of_a_pm2_app_over_ssh(self):
        sshd = SSHServer()
        sshd.start()
        self.addCleanup(sshd.stop)
        self.pm.add("api")
        self.pm.start()
        known = self.write("known_hosts", sshd.known_hosts_line())
        self.use_target(self.pm, ssh={"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                                      "key": sshd.key, "known_hosts": known})
        before = self.pm.pid("api")
        self.rb("service-restart", "--yes")
        self.assertNotEqual(self.pm.pid("api"), before, "not restarted over ssh")
        self.assertIsNotNone(health(self.pm.url("api")))
        cmds = [c["args"]["cmd"] for c in self.ev("call", primitive="ssh") if c["args"]["op"] == "exec"]
        self.assertIn(f"env PM2_HOME={self.pm.home} {PM2} restart api --no-color", cmds)
        self.assertTrue(all(c.startswith(f"env PM2_HOME={self.pm.home} ") for c in cmds), cmds)
        self.assertEqual([c for c in self.ev("call", primitive="exec")], [], "a command ran here, not over ssh")


class SupervisorServiceRestartTest(RealManagerMixin, OpsFixture, RunbookTestCase):
    def test_restart_of_a_real_supervisord_program_brings_it_back(self):
        self.setup_real()
        sv = SupervisordServer()
        self.addCleanup(sv.stop)
        sv.add("api", env={"API_SECRET": SECRET})
        sv.start()
        self.use_target(sv)
        before = sv.pid("api")
        p = self.rb("service-restart", "--yes")
        after = sv.pid("api")
        self.assertIsNotNone(after, "not RUNNING after the restart")
        self.assertNotEqual(after, before, "supervisord did not restart the program")
        self.assertEqual(health(sv.url("api"))["pid"], after)
        self.assertEqual(self.changes(), [[sv.target()["supervisorctl_bin"], "-c", sv.conf, "restart", "api"]])
        self.assertLogged(f"api: RUNNING (pid {before}, uptime", "before")
        self.assertLogged("api is running after attempt 1", "restart")
        self.assertLogged("healthy: 1 check: 1 ok", "after")
        self.assertNoSecret(p)


SERVICE_TEST = LUA_EMIT + r"""
runbook { name = "service-module", title = "stdlib/service.lua", severity = "P3" }
local service = require("service")
step("status", function()
  local st = service.status("api")
  emit("status", { running = st.running, state = st.state, restarts = st.restarts, manager = st.manager })
end)
step("logs", function()
  local lg = service.logs("api")
  emit("logs", { lines = #lg.lines, errors = lg.errors, filtered = lg.filtered })
end)
step("restart", function()
  local r = service.restart("api")
  emit("restart", { ok = r.ok, dry_run = r.dry_run or false })
end)
"""

SYSTEMCTL_STATUS = """\u25cf api.service - API server
     Loaded: loaded (/etc/systemd/system/api.service; enabled; preset: enabled)
     Active: active (running) since Mon 2026-01-05 09:00:00 UTC; 2h ago
   Main PID: 812 (api)
"""

MANAGERS = {
    "systemd": {
        "target": {"manager": "systemd"},
        "rules": [("^systemctl status", {"code": 0, "stdout": SYSTEMCTL_STATUS}),
                  ("^journalctl", {"code": 0, "stdout": "Jan 05 09:01:02 app1 api[812]: db timeout\n"
                                                        "Jan 05 09:01:03 app1 api[812]: panic: nil map\n"})],
        "argv": [["systemctl", "status", "--no-pager", "--lines=0", "api"],
                 ["journalctl", "-u", "api", "-n", "200", "--no-pager", "-p", "err"],
                 ["systemctl", "restart", "api"]],
        "status": {"running": True, "state": "active (running)", "manager": "systemd"},
        "logs": {"lines": 2, "filtered": True, "errors": ["Jan 05 09:01:02 app1 api[812]: db timeout",
                                                          "Jan 05 09:01:03 app1 api[812]: panic: nil map"]},
    },
    "compose": {
        "target": {"manager": "compose", "compose_file": "/srv/app/compose.yml"},
        "rules": [("^docker compose %-f /srv/app/compose.yml ps",
                   {"code": 0, "stdout": '{"Name":"app-api-1","Service":"api","State":"exited","Health":""}\n'
                                         '{"Name":"app-db-1","Service":"db","State":"running","Health":""}\n'}),
                  ("^docker compose %-f /srv/app/compose.yml logs",
                   {"code": 0, "stdout": "api-1  | INFO GET / 200\napi-1  | ERROR upstream timed out\n"})],
        "argv": [["docker", "compose", "-f", "/srv/app/compose.yml", "ps", "--all", "--format", "json", "api"],
                 ["docker", "compose", "-f", "/srv/app/compose.yml", "logs", "--no-color", "--tail", "200", "api"],
                 ["docker", "compose", "-f", "/srv/app/compose.yml", "restart", "api"]],
        "status": {"running": False, "state": "exited", "manager": "compose"},
        "logs": {"lines": 2, "filtered": False, "errors": ["api-1  | ERROR upstream timed out"]},
    },
    # pm2 looks for its daemon first (DAEMON: the check of PM2_HOME's files,
    # which starts none), colours its log headers (escapes must not hide
    # them from the header filter) and is told --no-color.
    "pm2": {
        "target": {"manager": "pm2"},
        "rules": [("pm2%-daemon%-check", {"code": 0, "stdout": "pm2 daemon running (pid 4000, PM2_HOME "
                                                               "/root/.pm2)\n"}),
                  ("^pm2 ls %-m", {"code": 0, "stdout": "[PM2][WARN] Current process list is not synchronized "
                                                        "with saved list.\n+--- web\nnamespace : default\npid : 0\n"
                                                        "status : stopped\nrestarted : 0\nuptime : 0\n\n"
                                                        "+--- api\nnamespace : default\npid : 4242\npm2 id : 1\n"
                                                        "status : online\nmode : fork\nrestarted : 3\n"
                                                        "uptime : 2h\nmemory usage : 60.1mb \n\n"}),
                  ("^pm2 logs", {"code": 0, "stdout": "\x1b[1m\x1b[90m[TAILING] Tailing last 200 lines for [api] "
                                                      "process (change the value with --lines option)\x1b[39m"
                                                      "\x1b[22m\n\x1b[90m/root/.pm2/logs/api-error.log last 200 "
                                                      "lines:\x1b[39m\n\x1b[31m0|api      | \x1b[39mTypeError: "
                                                      "x is undefined\n\n"})],
        "argv": ["DAEMON", ["pm2", "ls", "-m", "--no-color"],
                 "DAEMON", ["pm2", "logs", "api", "--lines", "200", "--nostream", "--no-color", "--err"],
                 "DAEMON", ["pm2", "ls", "-m", "--no-color"], ["pm2", "restart", "api", "--no-color"]],
        "status": {"running": True, "state": "online", "restarts": 3, "manager": "pm2"},
        "logs": {"lines": 1, "filtered": True, "errors": ["0|api      | TypeError: x is undefined"]},
    },
    # supervisorctl exits 0 for a program in BACKOFF: the state word decides.
    "supervisor": {
        "target": {"manager": "supervisor", "supervisor_conf": "/etc/sv.conf"},
        "rules": [("^supervisorctl %-c /etc/sv.conf status", {
                      "code": 0, "stdout": "api                              BACKOFF   Exited too quickly "
                                           "(process log may have details)\n"}),
                  ("^supervisorctl %-c /etc/sv.conf tail", {
                      "code": 0, "stdout": "ng line cut by the byte count\nError: connect ECONNREFUSED\n"})],
        "argv": [["supervisorctl", "-c", "/etc/sv.conf", "status", "api"],
                 ["supervisorctl", "-c", "/etc/sv.conf", "tail", "-51200", "api", "stderr"],
                 ["supervisorctl", "-c", "/etc/sv.conf", "restart", "api"]],
        "status": {"running": False, "manager": "supervisor",
                   "state": "BACKOFF (Exited too quickly (process log may have details)): a crash loop"},
        "logs": {"lines": 2, "filtered": True, "errors": ["ng line cut by the byte count",
                                                          "Error: connect ECONNREFUSED"]},
    },
}


class ServiceModuleTest(OpsFixture, RunbookTestCase):
    """The managers none of which runs here: their argv as recorded, and
    what the module reads from their (scenario-given) output."""

    def scenario(self, rules):
        lines = ["return {"]
        for pattern, result in rules:
            res = ", ".join(f"{k} = {lua(v)}" for k, v in result.items())
            lines.append(f"  {{ primitive = \"exec\", match = {json.dumps(pattern)}, result = {{ {res} }} }},")
        lines.append("}")
        return self.write("scenario.lua", "\n".join(lines) + "\n")

    def check_manager(self, name):
        m = MANAGERS[name]
        self.write_config(dict(services=["api"], **m["target"]))
        rb = self.write("service_test.lua", SERVICE_TEST)
        p = self.rb(rb, "--dry-run", "--scenario", self.scenario(m["rules"]))
        out = {k: v[-1] for k, v in emitted(p.stdout).items()}
        self.assertEqual(out.get("status"), m["status"], p.stdout)
        self.assertEqual(out.get("logs"), m["logs"], p.stdout)
        self.assertEqual(out.get("restart"), {"ok": True, "dry_run": True}, p.stdout)
        calls = self.ev("call", primitive="exec")
        self.assertEqual([("DAEMON" if c["args"]["argv"][-1] == "pm2-daemon-check" else c["args"]["argv"])
                          for c in calls], m["argv"])
        self.assertEqual([c["args"]["readonly"] for c in calls], [True] * (len(m["argv"]) - 1) + [False])
        self.assertEqual([c["outcome"] for c in calls], ["ok"] * (len(m["argv"]) - 1) + ["simulated"])

    def setUp(self):
        super().setUp()
        self.setup_ops(services=())

    def test_systemd(self):
        self.check_manager("systemd")

    def test_compose(self):
        self.check_manager("compose")

    def test_pm2(self):
        self.check_manager("pm2")

    def test_supervisor(self):
        self.check_manager("supervisor")

    def test_missing_keys_are_named(self):
        rb = self.write("service_test.lua", SERVICE_TEST)
        for target, expected in [
                ({"manager": "compose"}, 'targets.staging has no compose_file; add compose_file = '
                                         '"/srv/app/docker-compose.yml"'),
                ({"manager": "commands", "commands": {"status": ["true"]}, "services": ["api"]},
                 None),
                ({"manager": "upstart"}, 'targets.staging has manager = "upstart"; use one of systemd, '
                                         'compose, pm2, supervisor, commands'),
                ({"manager": "supervisor"}, 'targets.staging has no supervisor_conf; add supervisor_conf = '
                                            '"/etc/supervisor/supervisord.conf"'),
                ({"manager": "pm2", "pm2_home": 7}, 'targets.staging: pm2_home must be a non-empty string')]:
            self.write_config(target)
            p = self.rb(rb, "--dry-run", expect=1)
            if expected:
                self.assertIn(expected, self.step_end("status")["error"])
            else:
                self.assertEqual(self.step_end("status")["status"], "ok")
                self.assertIn('targets.staging has no commands.logs; add commands.logs = { "/srv/bin/ctl", '
                              '"logs", "%s" }', self.step_end("logs")["error"], p.stdout)


if __name__ == "__main__":
    unittest.main()
