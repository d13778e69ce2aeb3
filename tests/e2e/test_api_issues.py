"""runbooks/api-issues.lua against a real app server (managed through the
"commands" manager) and a real Redis on loopback: health endpoints
measured against their expectations with response times, the database
pool read from the detailed health, and each fix behind its confirmation:
a restart that cures a wedged instance, cache keys deleted by pattern with
SCAN + DEL (and nothing deleted in a dry run), FLUSHDB refused when the
operator types the wrong target name and done (on that database only)
when the name is right, typed on a real terminal too.  Also
stdlib/health.lua through the host, and the game-day scenario.  An app
that hangs on /health (its probes time out, said as timeouts, the fix
offered after one timeout), a dry-run restart of a stopped service (the
real state read once), and HTTPS health checks against a private CA.
With the app's Redis down (a real Redis, stopped) the 503 detailed
health is read: the pool (node-postgres counts) and the Redis error are
reported, no restart is proposed, and the last step fails; fix=none
with the health still failing ends failed, not done."""
import datetime
import os
import sys
import unittest

from appserver import OpsFixture, free_port
from harness import SOURCE_DIR, RunbookTestCase
from servers.https import HttpsServer
from servers.redis import RedisServer

RS = None


def setUpModule():
    global RS
    RS = RedisServer()


def tearDownModule():
    if RS:
        RS.stop()


class ApiIssuesTest(OpsFixture, RunbookTestCase):
    DB = 0

    def setUp(self):
        super().setUp()
        # each test its own Redis database, emptied first
        ApiIssuesTest.DB = ApiIssuesTest.DB % 14 + 1
        self.db = ApiIssuesTest.DB
        RS.command("FLUSHDB", db=self.db)
        RS.command("FLUSHDB", db=15)
        self.setup_ops(redis=RS.url(db=self.db))

    def fill(self, db=None, **groups):
        """groups: prefix=count -> keys prefix:1..count, written in one MSET."""
        args = []
        for prefix, n in groups.items():
            for i in range(1, n + 1):
                args += [f"{prefix.replace('_', ':')}:{i}", "v"]
        RS.command("MSET", *args, db=db or self.db)

    def count(self, pattern, db=None):
        keys = RS.command("KEYS", pattern, db=db or self.db)
        return len(keys)

    def test_reports_health_times_and_the_database_pool(self):
        self.app.set_pool(in_use=4, waiting=0)
        p = self.rb("api-issues", "-p", "fix=none")
        self.assertIn("ok    200", p.stdout)
        self.assertLogged("1 check: 1 ok, 0 failing, 0 slow; slowest", "health")
        gets = [c for c in self.ev("call", primitive="http") if c.get("step") == "health"
                and c["args"]["url"].endswith("/health")]
        self.assertEqual(len(gets), 3, "samples=3 means three requests per endpoint")
        self.assertTrue(all(isinstance(c["result"]["time"], float) for c in gets), gets)
        self.assertLogged("database pool (db.pool): 4/10 in use, 0 waiting, 6 idle (40% used)", "detailed")
        self.assertIn("db         ok", p.stdout)
        self.assertLogged("fix: none (from -p fix)", "fix")
        self.assertLogged("not chosen (fix: none)", "restart")
        self.assertLogged("after the fix (none): 1 check: 1 ok", "verify")

    def test_waiting_pool_is_a_finding_and_the_proposed_fix_is_a_restart(self):
        self.app.set_pool(in_use=10, waiting=7)
        self.rb("api-issues", answers="Which fix? = none\n")
        self.assertLogged("7 request(s) waiting for a database connection (pool 10/10 in use, 7 waiting)",
                          "detailed")
        self.assertLogged("this looks like P2", "fix")
        self.assertLogged("proposed fix: restart", "fix")
        self.assertLogged("fix: none (not the proposal)", "fix")

    def test_restart_cures_a_wedged_instance(self):
        self.app.wedge()
        before = self.app.pid()
        self.rb("api-issues", "-p", "samples=1",
                answers="Which fix? = restart\n[restart] Restart the unhealthy instance now? = yes\n")
        self.assertLogged("every health check fails", "health")
        self.assertLogged("proposed fix: restart", "fix")
        after = self.app.pid()
        self.assertIsNotNone(after, "the service is not running after the restart")
        self.assertNotEqual(after, before, "the server process was not restarted")
        self.assertLogged("api restarted and healthy", "restart")
        self.assertLogged("after the fix (restart): 1 check: 1 ok", "verify")
        confirms = self.ev("confirm", question="Restart the unhealthy instance now?")
        self.assertEqual([c["answer"] for c in confirms], ["yes"])

    def test_declined_restart_changes_nothing(self):
        self.app.wedge()
        before = self.app.pid()
        self.rb("api-issues", "-p", "samples=1", "-p", "fix=restart", expect=1,
                answers="[restart] Restart the unhealthy instance now? = no\n[restart] !error = abort\n")
        self.assertEqual(self.step_end("restart")["status"], "declined")
        self.assertEqual(self.app.pid(), before)

    def test_cache_keys_matching_the_pattern_are_deleted_with_scan_and_del(self):
        self.fill(cache_user=1200, cache_product=3, session=2)
        self.rb("api-issues", "-p", "fix=delete-cache-keys", "-p", "samples=1",
                answers="[cache] Cache key pattern to delete (Redis MATCH syntax)? = cache:user:*\n"
                        "[cache] Delete the keys matching the pattern? = yes\n")
        self.assertEqual(self.count("cache:user:*"), 0, "cache:user:* keys left")
        self.assertEqual(self.count("cache:product:*"), 3, "other cache keys were deleted")
        self.assertEqual(self.count("session:*"), 2, "session keys were deleted")
        self.assertLogged("1200 key(s) match cache:user:*", "cache")
        self.assertLogged("DEL removed 1200 of 1200 key(s); 0 still match cache:user:*", "cache")
        commands = [c["args"]["command"][0] for c in self.ev("call", primitive="redis.call")
                    if c.get("step") == "cache"]
        self.assertIn("SCAN", commands)
        self.assertEqual(commands.count("DEL"), 3, "1200 keys are three DELs of at most 500")

    def test_dry_run_deletes_no_cache_key(self):
        self.fill(cache_user=20)
        self.rb("api-issues", "--dry-run", "--yes", "-p", "fix=delete-cache-keys", "-p", "pattern=cache:*",
                "-p", "samples=1")
        self.assertEqual(self.count("cache:user:*"), 20, "a dry run deleted keys")
        self.assertLogged("20 key(s) match cache:*", "cache")
        dels = [c for c in self.ev("call", primitive="redis.call") if c["args"]["command"][0] == "DEL"]
        self.assertTrue(dels and all(c["outcome"] == "simulated" for c in dels), dels)

    def test_pattern_matching_everything_is_refused(self):
        self.fill(cache_user=2)
        self.rb("api-issues", "-p", "fix=delete-cache-keys", "-p", "pattern=*", "-p", "samples=1", expect=1)
        self.assertIn("matches every key: that is flush-redis", self.step_end("cache")["error"])
        self.assertEqual(self.count("*"), 2)

    def test_flush_refused_when_the_typed_name_is_wrong(self):
        self.fill(cache_user=5, session=1)
        self.rb("api-issues", "-p", "fix=flush-redis", "-p", "samples=1", expect=1,
                answers="[flush] Type the target's name to flush its Redis database = production\n")
        end = self.step_end("flush")
        self.assertEqual(end["status"], "failed")
        self.assertIn('flush refused: you typed "production", the target is "staging"; nothing was flushed',
                      end["error"])
        self.assertEqual(self.count("*"), 6, "keys were lost although the flush was refused")
        flushes = [c for c in self.ev("call", primitive="redis.call") if c["args"]["command"][0] == "FLUSHDB"]
        self.assertEqual(flushes, [])

    def test_flush_with_the_target_name_empties_only_that_database(self):
        self.fill(cache_user=5, session=1)
        self.fill(db=15, other=3)
        self.rb("api-issues", "-p", "fix=flush-redis", "-p", "samples=1",
                answers="[flush] Type the target's name to flush its Redis database = staging\n"
                "[flush] Approve flushing the target's Redis database (FLUSHDB, no undo)? = yes\n"
                "[flush] Approver's name = Dana Lead\n")
        self.assertEqual(self.count("*"), 0, "the target's database was not flushed")
        self.assertEqual(self.count("*", db=15), 3, "another database was flushed too")
        self.assertLogged("FLUSHDB deletes all 6 key(s)", "flush")
        self.assertLogged("FLUSHDB done; 0 key(s) left", "flush")

    def test_flush_name_typed_on_a_terminal(self):
        self.fill(cache_user=4)
        s = self.pty("run", "api-issues", "--target", "staging", "-p", "fix=flush-redis", "-p", "samples=1",
                     "--transcript", self.path("pty.jsonl"))
        s.expect(r"FLUSHDB deletes all 4 key\(s\)")
        s.expect(r"Type the target's name to flush its Redis database: ")
        s.sendline("staging")
        s.expect(r"Approve flushing the target's Redis database \(FLUSHDB, no undo\)\? \[y/n, as the approver answered\] ")
        s.sendline("y")
        s.expect(r"Approver's name \(who answered\): ")
        s.sendline("Dana Lead")
        s.expect(r"Their words \(Enter for none\): ")
        s.sendline("")
        self.assertEqual(s.wait(30), 0, s.output)
        self.assertEqual(self.count("*"), 0)

    def test_scenario_rehearsal_takes_the_restart_and_fails_with_the_scripted_error(self):
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "api-issues.lua")
        pid = self.app.pid()
        self.rb("api-issues", "--dry-run", "--yes", "--scenario", scenario, expect=1)
        self.assertLogged("25 request(s) waiting for a database connection (pool 10/10 in use, 25 waiting)",
                          "detailed")
        self.assertLogged("proposed fix: restart", "fix")
        end = self.step_end("restart")
        self.assertEqual(end["status"], "failed")
        self.assertIn("restart through commands (here) exited with code 1: api: bind 0.0.0.0:8080: "
                      "Address already in use", end["error"])
        self.assertEqual(self.app.pid(), pid, "the service was touched in a dry run")

    def seconds_to_first_question(self):
        """From run.start to the first question the operator is asked (transcript times)."""
        def ts(e):
            return datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
        events = self.events(self.transcript)
        start = [e for e in events if e["event"] == "run.start"][0]
        asked = [e for e in events if e["event"] in ("prompt", "confirm", "choose")]
        self.assertTrue(asked, "no question was asked")
        return ts(asked[0]) - ts(start)

    def test_hung_app_says_timeout_and_offers_the_fix_after_one_probe_timeout(self):
        self.app.set_hang()
        self.rb("api-issues", answers="Which fix? = none\n", timeout=120, expect=1)
        waited = self.seconds_to_first_question()
        sys.stderr.write(f"\n[figure] api-issues, app hung on /health, probe timeout 10 s, samples 3: "
                         f"first question after {waited:.1f} s\n")
        findings = [m for m in self.messages("health") if m.startswith("finding (")]
        self.assertTrue(findings and all("timed out" in m for m in findings), findings)
        self.assertLogged("no detailed health, so no database pool to read:", "detailed")
        self.assertLogged("timed out", "detailed")
        self.assertFalse([m for m in self.messages() if "no database pool section" in m],
                         "a timeout was reported as a missing pool section")
        self.assertLogged("proposed fix: restart", "fix")

    def test_503_is_said_as_503(self):
        self.app.set_unhealthy()
        self.rb("api-issues", "-p", "samples=1", answers="Which fix? = none\n", expect=1)
        self.assertLogged("answered 503, expected 2xx", "health")
        self.assertLogged("/health/detailed: 503 in", "detailed")
        self.assertLogged("database pool (db.pool): 3/10 in use", "detailed")

    def test_redis_down_is_read_from_the_503_body_and_no_restart_is_proposed(self):
        down = RedisServer()            # a real Redis the app used, now stopped
        port = down.port
        down.stop()
        self.app.depend_on_redis(f"127.0.0.1:{port}")
        pid = self.app.pid()
        p = self.rb("api-issues", "--yes", "-p", "samples=1", "-p", "settle=2", expect=1)
        refused = f"connect ECONNREFUSED 127.0.0.1:{port}"
        self.assertLogged("/health/detailed: 503 in", "detailed")
        self.assertIn(f"redis      down: {refused}", p.stdout)
        self.assertLogged(f"redis is down in the detailed health: {refused}", "detailed")
        self.assertLogged("database pool (db.pool): 3/10 in use, 0 waiting, 1 idle (30% used)", "detailed")
        self.assertFalse([m for m in self.messages() if "no database pool" in m], self.messages("detailed"))
        self.assertLogged(f"not proposing a restart: redis ({refused}) is down; restarting api does not "
                          "bring it back", "fix")
        self.assertLogged("proposed fix: none", "fix")
        self.assertEqual(self.app.pid(), pid, "the app was restarted for a dependency that is down")
        self.assertEqual([c for c in self.ev("call", primitive="exec") if "restart" in " ".join(c["args"]["argv"])],
                         [], "a restart ran")
        end = self.step_end("verify")
        self.assertEqual(end["status"], "failed")
        self.assertIn("still failing, and no fix was applied (fix: none)", end["error"])
        self.assertIn(f"down, says the detailed health: redis ({refused})", end["error"])

    def test_node_style_detailed_health_with_redis_up_is_healthy(self):
        self.app.depend_on_redis(f"127.0.0.1:{RS.port}")
        p = self.rb("api-issues", "-p", "fix=none", "-p", "samples=1")
        self.assertLogged("/health/detailed: 200 in", "detailed")
        self.assertIn("redis      ok", p.stdout)
        self.assertLogged("database pool (db.pool): 3/10 in use, 0 waiting, 1 idle (30% used)", "detailed")
        self.assertFalse([m for m in self.messages() if m.startswith("finding (")], self.messages())
        self.assertLogged("after the fix (none): 1 check: 1 ok", "verify")

    def test_fix_none_while_the_health_check_fails_ends_failed(self):
        self.app.wedge()
        self.rb("api-issues", "-p", "fix=none", "-p", "samples=1", expect=1)
        end = self.step_end("verify")
        self.assertEqual(end["status"], "failed")
        self.assertIn("still failing, and no fix was applied (fix: none): 1 check: 0 ok, 1 failing", end["error"])
        run_end = self.ev("run.end")[-1]
        self.assertNotEqual(run_end["status"], "done", run_end)
        self.assertEqual(run_end["exit"], 1, run_end)

    def test_dry_run_restart_of_a_down_service_reads_the_real_state_once(self):
        self.app.stop("api")
        self.rb("api-issues", "--dry-run", "--yes", "-p", "fix=restart", "-p", "samples=1",
                "-p", "settle=600", timeout=120)
        self.assertLogged("would wait up to 600 s for every health endpoint of api passing "
                          "(the real state is still down: 1 check: 0 ok, 1 failing", "restart")
        self.assertLogged("dry run: the restart was simulated; would expect every check to pass "
                          "(the real state is still down:", "verify")
        self.assertIsNone(self.app.pid(), "a dry run started the service")

    def test_runbook_check_passes(self):
        self.assertExit(self.run_rb("check", os.path.join(SOURCE_DIR, "runbooks", "api-issues.lua")), 0)


class HttpsHealthTest(OpsFixture, RunbookTestCase):
    """A healthy HTTPS service signed by a private CA is healthy, with the
    CA from the target's tls.cacert or from the health entry's cacert."""

    def setUp(self):
        super().setUp()
        self.srv = HttpsServer()
        self.srv.start()
        self.addCleanup(self.srv.stop)

    def check_no_finding(self):
        self.rb("api-issues", "-p", "fix=none", "-p", "samples=1")
        self.assertLogged("1 check: 1 ok, 0 failing", "health")
        self.assertFalse([m for m in self.messages() if m.startswith("finding (")], self.messages())
        gets = [c for c in self.ev("call", primitive="http") if c.get("step") == "health"]
        self.assertTrue(gets and all(c["args"].get("cacert") == self.srv.ca for c in gets), gets)

    def test_the_targets_tls_cacert_is_used(self):
        self.setup_ops(health=[self.srv.url("/json", tls=True)], detailed_health=None,
                       tls={"cacert": self.srv.ca})
        self.check_no_finding()

    def test_a_health_entry_names_its_cacert(self):
        self.setup_ops(health=[{"url": self.srv.url("/json", tls=True), "cacert": self.srv.ca}],
                       detailed_health=None)
        self.check_no_finding()


HEALTH_TEST = r"""
runbook { name = "health-module", title = "stdlib/health.lua", severity = "P3" }
param("up", {}) param("down", {}) param("closed", {})
local health = require("health")
local function eq(got, want, what)
  if got ~= want then error(string.format("%s: expected %s, got %s", what, tostring(want), tostring(got)), 2) end
end

step("expectations: status, contains, json", function(p)
  local r = health.check({
    p.up,
    { url = p.down, name = "down", expect = 503, contains = "unhealthy" },
    { url = p.up, json = { status = "ok" } },
    { url = p.up, expect = { 204, 301 } },
    { url = p.up, contains = "nope" },
    { url = p.down, json = { status = "ok" }, expect = 503 },
  })
  eq(#r, 6, "results")
  eq(r[1].ok, true, "up"); eq(r[1].status, 200, "status"); assert(r[1].time > 0, "time")
  eq(r[2].ok, true, "expect 503"); eq(r[2].name, "down", "name")
  eq(r[3].ok, true, "json")
  eq(r[4].ok, false, "expect list"); eq(r[4].problem, "GET " .. p.up .. " answered 200, expected 204 or 301", "problem")
  assert(r[5].problem:find('does not contain "nope"', 1, true), r[5].problem)
  assert(r[6].problem:find("JSON field status is unhealthy, expected ok", 1, true), r[6].problem)
  local s = health.summary(r)
  eq(s.total, 6, "total"); eq(s.ok, 3, "ok"); eq(s.failing, 3, "failing")
  assert(s.text:find("^6 checks: 3 ok, 3 failing, 0 slow; slowest "), s.text)
end)

step("refused connections fail; findings", function(p)
  local r = health.check({ p.closed, p.up }, { quiet = true, samples = 2 })
  eq(r[1].ok, false, "closed"); eq(r[1].failures, 2, "failures"); eq(r[1].intermittent, false, "intermittent")
  assert(r[1].problem:find("refused", 1, true), r[1].problem)
  local f = health.findings(r)
  eq(#f, 1, "findings"); eq(f[1].kind, "feature_down", "kind")
  f = health.findings(health.check({ p.closed }, { quiet = true }))
  eq(f[1].kind, "outage", "all failing")
  f = health.findings(health.check({ p.up }, { quiet = true, slow_after = 0 }))
  eq(f[1].kind, "slow", "slow_after = 0")
end)

step("detailed health and the pool", function(p)
  local d = health.detailed(p.up .. "/detailed")
  eq(d.ok, true, "ok"); eq(d.status, 200, "status")
  eq(d.pool.size, 10, "size"); eq(d.pool.in_use, 3, "in_use"); eq(d.pool.waiting, 0, "waiting")
  eq(d.pool.path, "db.pool", "path"); eq(#d.components, 2, "components")
  local pool = health.pool({ checks = { database = { pool = { size = 5, active = 5 } } } })
  eq(pool.path, "checks.database.pool", "nested"); eq(pool.in_use, 5, "active"); eq(pool.idle, 0, "idle")
  eq(health.pool({ status = "ok" }), nil, "no pool")
  pool = health.pool({ db = { ok = true, pool = { max = 10, total = 4, idle = 1, waiting = 0 } } })
  eq(pool.size, 10, "max"); eq(pool.in_use, 3, "total - idle"); eq(pool.idle, 1, "idle")
  pool = health.pool({ db = { pool = { totalCount = 5, idleCount = 0, waitingCount = 2 } } })
  eq(pool.size, 5, "totalCount"); eq(pool.size_is_open, true, "open"); eq(pool.in_use, 5, "busy")
  eq(pool.waiting, 2, "waitingCount")
  d = health.detailed(p.closed)
  eq(d.ok, false, "closed"); eq(d.findings[1].kind, "feature_down", "closed finding")
end)
"""


class HealthModuleTest(OpsFixture, RunbookTestCase):
    def test_health_module_through_the_host(self):
        self.setup_ops(services=("api", "bad"))
        self.app.set_unhealthy("bad")
        rb = self.write("health_test.lua", HEALTH_TEST)
        p = self.rb(rb, "-p", f"up={self.app.url('api')}", "-p", f"down={self.app.url('bad')}",
                    "-p", f"closed=http://127.0.0.1:{free_port()}/health")
        ends = self.ev("step.end")
        self.assertEqual([e["status"] for e in ends], ["ok"] * 3, p.stdout)


if __name__ == "__main__":
    unittest.main()
