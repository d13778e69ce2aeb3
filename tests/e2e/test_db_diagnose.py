"""runbook run db-diagnose against a real PostgreSQL 15 where one session
holds a row lock and another waits on it: the run shows connections by
state, the blocking pair and the root blocker; terminating the chosen
backend (answers file) ends it after confirmation and frees the waiter;
declining leaves it running; a dry run only shows the pg_terminate_backend;
pg.cancel cancels the waiting query; the shipped game-day scenario walks
the saturated-connections and blocking-chain branch, and a copy whose
rule no longer matches pg.lua's SQL says so at the end of the run."""
import os
import time
import unittest

from dbcase import SCENARIOS, DbTestCase
from servers.postgres import USER


def setUpModule():
    DbTestCase.start_cluster()


def tearDownModule():
    DbTestCase.stop_cluster()


class Diagnose(DbTestCase):
    def setUp(self):
        super().setUp()
        self.sql("create table acc (id int primary key, v int); insert into acc values (1, 0);")

    def block(self):
        """A holder with a row lock (sleeping in its transaction) and a writer
        waiting on that row.  Returns (holder pid, waiter pid, waiter process)."""
        self.holder_proc = self.session("holder", "begin; update acc set v = v + 1 where id = 1; "
                                        "select pg_sleep(30); commit;")
        holder = self.wait_for("holder", "wait_event = 'PgSleep'")
        waiter_proc = self.session("waiter", "update acc set v = v + 10 where id = 1;")
        waiter = self.wait_for("waiter", "wait_event_type = 'Lock'")
        return holder, waiter, waiter_proc

    def alive(self, pid):
        return self.query(f"select count(*) from pg_stat_activity where pid = {pid}") == "1"

    def answers(self, *lines):
        return self.write("answers", "".join(line + "\n" for line in lines))

    def test_shows_connections_the_blocking_pair_and_the_root_blocker(self):
        holder, waiter, _ = self.block()
        p = self.run_book("db-diagnose", "--yes", "-p", f"db={self.url}")
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, r"(\d+) client connections of max_connections 60")
        self.assertRegex(p.stdout, r"\n\s+active\s+([2-9]|\d\d)\n", "two active sessions not counted")
        self.assertRegex(p.stdout, rf"pid {waiter} \({USER}, waiting \S+\): update acc set v = v \+ 10"
                                   rf".*\n\s+blocked by pid {holder} \({USER}, active for \S+\): begin; update acc")
        self.assertIn(f"root blocker(s), waiting on nobody: pid {holder}", p.stdout)
        self.assertIn("no query or transaction running longer than 60s", p.stdout)
        self.assertRegex(p.stdout, r"public\.acc\s+\d+ kB")
        self.assertIn("nothing terminated", p.stdout, "--yes alone must not terminate anything")
        self.assertTrue(self.alive(holder))

    def test_terminates_the_chosen_backend_after_confirmation(self):
        holder, waiter, waiter_proc = self.block()
        answers = self.answers(
            f"[terminate] Backend to terminate (a pid from the list, or none) = {holder}",
            f"[terminate] Terminate backend {holder}? = yes")
        p = self.run_book("db-diagnose", "--answers", answers, "-p", f"db={self.url}")
        self.assertExit(p, 0)
        self.assertIn(f"backend {holder} terminated", p.stdout)
        self.assertFalse(self.alive(holder), "the backend is still there")
        confirms = [(e["question"], e["answer"]) for e in self.events(self.transcript) if e["event"] == "confirm"]
        self.assertEqual(confirms, [(f"Terminate backend {holder}?", "yes")])
        self.assertEqual(waiter_proc.wait(timeout=10), 0, "the waiting update did not go through")
        self.assertNotEqual(self.holder_proc.wait(timeout=10), 0)
        self.assertEqual(self.query("select v from acc where id = 1"), "10",
                         "the holder's update should have been rolled back, the waiter's applied")

    def test_declining_the_confirmation_leaves_the_backend_running(self):
        holder, _, _ = self.block()
        answers = self.answers(
            f"[terminate] Backend to terminate (a pid from the list, or none) = {holder}",
            f"[terminate] Terminate backend {holder}? = no",
            "[terminate] !error = abort")
        p = self.run_book("db-diagnose", "--answers", answers, "-p", f"db={self.url}")
        self.assertExit(p, 1)
        self.assertEqual(self.step_ends()["terminate"]["status"], "declined")
        self.assertTrue(self.alive(holder), "a declined terminate ended the backend")
        self.assertEqual([c for c in self.calls("sql.exec")], [])

    def test_dry_run_shows_the_terminate_and_leaves_the_backend(self):
        holder, _, _ = self.block()
        answers = self.answers(
            f"[terminate] Backend to terminate (a pid from the list, or none) = {holder}",
            f"[terminate] Terminate backend {holder}? = yes")
        p = self.run_book("db-diagnose", "--dry-run", "--answers", answers, "-p", f"db={self.url}",
                          "-p", "min_seconds=0")
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, rf"pid {holder}\s+{USER}\s+\S+\s+active\s+Timeout:PgSleep begin;",
                         "min_seconds=0 should list the sleeping holder as long-running")
        self.assertRegex(p.stdout, r"would run: sql exec on .*pg_terminate_backend")
        self.assertIn(f"dry run: backend {holder} left running", p.stdout)
        self.assertTrue(self.alive(holder))
        self.assertEqual([c["outcome"] for c in self.calls("sql.exec")], ["simulated"])

    def test_scenario_saturated_connections_and_a_blocking_chain(self):
        p = self.run_book("db-diagnose", "--dry-run", "--yes", "-p", f"db={self.url}",
                          "--scenario", os.path.join(SCENARIOS, "db-diagnose.lua"))
        self.assertExit(p, 0)
        self.assertIn("55 client connections of max_connections 60", p.stdout)
        self.assertIn("warn: connections at 55 of 60", p.stdout)
        self.assertIn("warn: 4 session(s) idle in transaction", p.stdout)
        self.assertRegex(p.stdout, r"pid 4242 \(app, waiting 95s\).*\n\s+blocked by pid 4141 "
                                   r"\(app, idle in transaction for 2h01m\)")
        self.assertIn("root blocker(s), waiting on nobody: pid 4141;", p.stdout)
        self.assertRegex(p.stdout, r"pid 4141\s+root blocker\s+\(gone\)")
        fired = {c["scenario"] for c in self.calls("sql.query") if c.get("scenario")}
        self.assertEqual(fired, {"connections nearly exhausted", "writers behind an idle transaction"})
        self.assertNotIn("never fired", p.stdout)
        self.assertEqual([e for e in self.events(self.transcript) if e["event"] == "scenario.unused"], [])

    def test_a_scenario_rule_that_no_longer_matches_the_sql_is_reported(self):
        # The rule's match is written against pg.lua's SQL text: an edit of
        # either side leaves the rule matching nothing, and the rehearsal
        # would run the happy path against the real (quiet) server.
        with open(os.path.join(SCENARIOS, "db-diagnose.lua")) as f:
            text = f.read()
        self.assertIn('match = "coalesce%(state"', text)
        edited = self.write("db-diagnose.lua", text.replace('match = "coalesce%(state"',
                                                            'match = "coalesce%(status"'))
        line = next(n for n, l in enumerate(text.split("\n"), 1) if "coalesce%(state" in l)
        p = self.run_book("db-diagnose", "--dry-run", "--yes", "-p", f"db={self.url}", "--scenario", edited)
        self.assertExit(p, 0)
        self.assertNotIn("55 client connections of max_connections 60", p.stdout)
        self.assertIn(f"1 of 2 rule(s) of {edited} never fired: this rehearsal did not exercise them", p.stdout)
        self.assertIn(f'rule 1 "connections nearly exhausted" ({edited}:{line}): no sql.query call matched '
                      '"coalesce%(status"', p.stdout)
        unused = [e for e in self.events(self.transcript) if e["event"] == "scenario.unused"]
        self.assertEqual([[r["name"] for r in e["rules"]] for e in unused], [["connections nearly exhausted"]])

    def test_pg_cancel_cancels_the_waiting_query_not_the_holder(self):
        holder, waiter, waiter_proc = self.block()
        rb = self.write("cancel.lua", f"""runbook {{ name = "cancel" }}
param("db", {{ secret = true }})
step("cancel", function(p)
  local pg = require("pg")
  pg.cancel(pg.connect(p.db), {waiter})
end)
""")
        self.assertExit(self.run_book(rb, "-p", f"db={self.url}"), 0)
        out, err = waiter_proc.communicate(timeout=10)
        self.assertIn("canceling statement due to user request", err)
        self.assertTrue(self.alive(holder))

    def test_an_access_exclusive_lock_is_diagnosed_without_waiting_and_its_holder_terminated(self):
        self.populate()
        blocker = self.lock_orders()
        self.session("reader", "select count(*) from orders;")
        self.wait_for("reader", "wait_event_type = 'Lock'")
        t0 = time.monotonic()
        p = self.run_book("db-diagnose", "--yes", "-p", f"db={self.url}", "-p", f"pid={blocker}",
                          timeout=120)
        took = time.monotonic() - t0
        print(f"\ndb-diagnose with orders locked by pid {blocker}: {took:.1f} s", flush=True)
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, rf"public\.orders\s+size unknown: locked by pid {blocker}")
        self.assertRegex(p.stdout, r"public\.users\s+\d+ kB", "the other tables' sizes must be shown")
        self.assertIn(f"backend {blocker} terminated", p.stdout)
        self.assertFalse(self.alive(blocker), "the blocker is still there")

    def test_the_age_at_the_question_is_read_at_the_question(self):
        self.session("sleeper", "select pg_sleep(30);")
        holder = self.wait_for("sleeper", "wait_event = 'PgSleep'")
        # the long-running step saw the backend two hours old; the question
        # must show its age as read when asking, not that earlier figure
        scenario = self.write("stale.lua", f"""return {{
  {{ name = "stale age", primitive = "sql.query", step = "long-running", match = "client_addr",
    result = {{ rows = {{ {{ pid = {holder}, usename = "app", state = "active", seconds = 7260,
      query = "update acc" }} }} }} }},
}}""")
        answers = self.answers("[terminate] Backend to terminate (a pid from the list, or none) = none")
        p = self.run_book("db-diagnose", "--dry-run", "--answers", answers, "-p", f"db={self.url}",
                          "--scenario", scenario)
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, rf"pid {holder}\s+app\s+2h01m",
                         "the scenario's stale age must show in the long-running step")
        line = [l for l in p.stdout.splitlines() if l.strip().startswith(f"pid {holder}") and "long-running" in l]
        self.assertEqual(len(line), 1, p.stdout)
        self.assertNotIn("2h01m", line[0], "the question showed the age read at the start")
        self.assertRegex(line[0], r"long-running \d+s\b")

    def test_runbook_check_passes(self):
        self.assertExit(self.run_rb("check", "db-diagnose"), 0)


if __name__ == "__main__":
    unittest.main()
