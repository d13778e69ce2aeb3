"""runbook run db-restore against a real PostgreSQL 15: a database with three
tables is dumped (pg_dump -Fc), damaged (a table dropped, rows deleted) and
restored; the verify step compares row counts with the dump.  Also: the
target's newest dump, its service (a real HTTP server under the "commands"
manager) stopped, the migration, the service started and healthy; no
service means stop/start say so and run nothing; --dry-run changes nothing
and claims nothing it simulated; a corrupt dump stops at the preflight; a
newest dump cut in half (table of contents intact) stops the run before the
service is stopped and is never swapped for an older one without the
operator, who chooses from the listed dumps; a table locked by another
session is reported, not waited for; the shipped game-day scenario makes
pg_restore fail and the run fails at that step (and its undo brings the
service back); a target with maintenance commands is put in maintenance
mode instead of stopped (service.down/up), and only said so in a dry run;
a run resumed after the approval was declined restores the dump the
operator chose in the first run (kept in `state`), not the newest."""
import os
import re
import subprocess
import time
import unittest

from appserver import AppService
from dbcase import DAMAGE, DAMAGED, FULL, SCENARIOS, SCHEMA, DbTestCase
from servers.postgres import PASSWORD, PG_BIN


def setUpModule():
    DbTestCase.start_cluster()


def tearDownModule():
    DbTestCase.stop_cluster()


class Restore(DbTestCase):
    def setUp(self):
        super().setUp()
        self.populate()
        self.dump_path = self.dump()
        self.sql(DAMAGE)
        self.assertEqual(self.counts(), DAMAGED, "the damage did not apply")

    def service_target(self, services=False, maintenance=False):
        """A target whose service "api" is a real HTTP server managed through
        the "commands" manager (tests/e2e/appserver.py), with its health URL,
        and a migration that appends to a log; with maintenance, commands
        maintenance_on/off that append "on api"/"off api" to another."""
        self.app = AppService(self.path("app"))
        self.addCleanup(self.app.close)
        self.app.add("api")
        self.app.start("api")
        self.log = self.path("migrate.log")
        commands = ", ".join(f'{a} = {{ "{self.app.script(a)}", "%s" }}' for a in ("start", "stop", "status"))
        self.mlog = self.path("maintenance.log")
        if maintenance:
            script = self.write("bin/maintenance", f'#!/bin/sh\necho "$1 $2" >> {self.mlog}\n')
            os.chmod(script, 0o755)
            commands += f', maintenance_on = {{ "{script}", "on", "%s" }}, ' \
                        f'maintenance_off = {{ "{script}", "off", "%s" }}'
        self.write_config(f"""
targets = {{
  staging = {{
    db = env("STAGING_DB_URL"),
    backup_dir = "{self.path('backups')}",
    manager = "commands",{' services = { "api" },' if services else ''}
    commands = {{ {commands} }},
    health = {{ "{self.app.url('api')}" }},
    migrate = {{ "sh", "-c", "echo migrate ${{DATABASE_URL:+with-url}} >> {self.log}" }},
  }},
}}
""")
        return {"STAGING_DB_URL": self.url}

    def read_log(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return f.read().split("\n")[:-1]

    def test_restore_brings_the_data_back_and_verify_compares_row_counts(self):
        p = self.run_book("db-restore", "--yes", "-p", f"db={self.url}", "-p", f"dump={self.dump_path}")
        self.assertExit(p, 0)
        self.assertEqual(self.counts(), FULL, "the restore did not bring every row back")
        self.assertEqual(self.query("""select note from "Order Items" where id = 3"""),
                         "line one\nline two of 3", "a value with a newline came back changed")
        ends = self.step_ends()
        self.assertEqual([ends[s]["status"] for s in ("preflight", "approval", "lock", "stop", "restore",
                                                      "migrate", "start", "verify")], ["ok"] * 8)
        verify = self.logs("verify")
        self.assertIn("row counts match the dump for all 3 table(s)", verify)
        for rel, n in (('public."Order Items"', 7), ("public.orders", 120), ("public.users", 50)):
            self.assertRegex(p.stdout, re.escape(rel) + rf"\s+dump\s+{n}\s+database {n}\b",
                             f"the verify step did not show {rel}'s counts")
        restore = [c for c in self.calls("exec") if c["step"] == "restore"]
        self.assertEqual(len(restore), 1, restore)
        argv = restore[0]["args"]["argv"]
        self.assertIn("--single-transaction", argv)
        self.assertTrue(all(PASSWORD not in a for a in argv), f"the password reached argv: {argv}")
        with open(self.transcript) as f:
            self.assertNotIn(PASSWORD, f.read(), "the password reached the transcript")
        self.assertNotIn(PASSWORD, p.stdout + p.stderr)

    def read_maintenance(self):
        if not os.path.exists(self.mlog):
            return []
        with open(self.mlog) as f:
            return f.read().split("\n")[:-1]

    def test_maintenance_mode_instead_of_a_stop_when_the_target_names_it(self):
        env = self.service_target(maintenance=True)
        before = self.app.pid("api")
        p = self.run_book("db-restore", "--yes", "--target", "staging", "-p", "service=api",
                          "-p", f"dump={self.dump_path}", env=env)
        self.assertExit(p, 0)
        self.assertEqual(self.counts(), FULL)
        self.assertEqual(self.read_maintenance(), ["on api", "off api"])
        self.assertEqual(self.app.pid("api"), before, "the service was stopped, not put in maintenance mode")
        self.assertIn("api: maintenance mode on", self.logs("stop"))
        self.assertIn("api: maintenance mode off", self.logs("start"))
        steps = [c["step"] for c in self.calls("exec") if "maintenance" in c["args"]["argv"][0]]
        self.assertEqual(steps, ["stop", "start"])

    def test_a_dry_run_only_says_it_would_turn_maintenance_mode_on(self):
        env = self.service_target(maintenance=True)
        p = self.run_book("db-restore", "--dry-run", "--yes", "--target", "staging", "-p", "service=api",
                          "-p", f"dump={self.dump_path}", env=env)
        self.assertExit(p, 0)
        self.assertEqual(self.read_maintenance(), [], "a dry run turned maintenance mode on")
        self.assertIn("dry run: would turn maintenance mode on for api", self.logs("stop"))
        self.assertIn("dry run: would turn maintenance mode off for api", self.logs("start"))
        self.assertNotRegex(p.stdout, r"maintenance mode on\b(?! for)")

    def test_a_resumed_run_restores_the_dump_the_operator_chose(self):
        env = self.service_target()
        self.truncated_newest(env)
        answers = self.write("answers", "[preflight] Which dump to restore? = 2\n"
                                        "[approval] Has the incident lead approved this restore? = no\n"
                                        "[approval] Approver's name = Dana Lead\n")
        first = self.path("first.jsonl")
        p = self.run_book("db-restore", "--answers", answers, "--target", "staging", "-p", "service=api",
                          env=env, transcript=first)
        self.assertExit(p, 1)
        self.assertEqual(self.step_ends(first)["approval"]["status"], "declined")
        p = self.run_book("db-restore", "--yes", "--resume", first, env=env)
        self.assertExit(p, 0)
        self.assertIn(f"dump read through: {self.dump_path}", p.stdout)
        restore = [c for c in self.calls("exec") if c["step"] == "restore"]
        self.assertIn(self.dump_path, restore[0]["args"]["argv"], "the resumed run restored another dump")
        self.assertEqual(self.counts(), FULL)

    def test_without_service_stop_and_start_say_so_and_run_nothing(self):
        p = self.run_book("db-restore", "--yes", "-p", f"db={self.url}", "-p", f"dump={self.dump_path}")
        self.assertExit(p, 0)
        for step in ("stop", "start"):
            msgs = self.logs(step)
            self.assertTrue(any(m.startswith("skipped: no service given") for m in msgs),
                            f"step {step} did not say it was skipped: {msgs}")
            self.assertEqual([c for c in self.calls("exec") if c["step"] == step], [],
                             f"step {step} ran a command without a service")
        self.assertIn("skipped: the target names no migrate command", " ".join(self.logs("migrate")))

    def test_target_newest_dump_service_stopped_migrated_started_and_healthy(self):
        # An older dump of a smaller database must lose to the newer one.
        env = self.service_target()
        old = self.path("backups", "old.dump")
        os.rename(self.dump_path, self.path("backups", "new.dump"))
        self.sql("drop table orders; drop table users;"
                 "create table users (id int primary key, name text);"
                 "insert into users values (1, 'only');")
        self.dump("old.dump")
        self.sql("drop table users;")
        os.utime(old, (1_600_000_000, 1_600_000_000))
        before = self.app.pid("api")
        p = self.run_book("db-restore", "--yes", "--target", "staging", "-p", "service=api", env=env)
        self.assertExit(p, 0)
        self.assertIn("new.dump (the newest dump in", p.stdout)
        self.assertEqual(self.counts(), FULL)
        self.assertEqual(self.read_log(), ["migrate with-url"], "the migration did not run with DATABASE_URL")
        order = [(e["step"], os.path.basename(e["args"]["argv"][0])) for e in self.calls("exec")
                 if e["step"] in ("stop", "restore", "migrate", "start")]
        self.assertEqual(order, [("stop", "stop"), ("restore", "pg_restore"), ("migrate", "sh"),
                                 ("start", "start")])
        after = self.app.pid("api")
        self.assertIsNotNone(after, "the service is not running after the restore")
        self.assertNotEqual(after, before, "the service was not stopped and started again")
        self.assertRegex(" ".join(self.logs("verify")), r"health: 1 checks?: 1 ok")
        self.assertEqual(self.calls("lock")[0]["args"]["name"], "db-restore:staging")

    def test_dry_run_changes_nothing(self):
        env = self.service_target()
        before = self.app.pid("api")
        p = self.run_book("db-restore", "--dry-run", "--yes", "--target", "staging", "-p", "service=api",
                          "-p", f"dump={self.dump_path}", env=env)
        self.assertExit(p, 0)
        self.assertEqual(self.counts(), DAMAGED, "a dry run changed the database")
        self.assertEqual(self.read_log(), [], "a dry run ran the migration")
        self.assertEqual(self.app.pid("api"), before, "a dry run stopped or restarted the service")
        self.assertRegex(p.stdout, r"would run: \S*pg_restore --clean")
        self.assertRegex(p.stdout, r"would take lock db-restore:staging")
        outcomes = {(c["step"], c["outcome"]) for c in self.calls("exec")}
        self.assertIn(("preflight", "ok"), outcomes, "the dump's table of contents was not read for real")
        self.assertIn(("verify", "ok"), outcomes, "the dump's rows were not counted for real")
        self.assertIn(("restore", "simulated"), outcomes)
        self.assertEqual(self.calls("lock.release"), [], "a dry run took the lock")
        self.assertIn("dry run: nothing was restored", " ".join(self.logs("verify")))

    def test_the_targets_first_service_is_stopped_without_a_service_param(self):
        # Without -p service the dangerous "Stop the service" step used to be
        # confirmed and then skip: the restore ran under a live app.
        env = self.service_target(services=True)
        before = self.app.pid("api")
        p = self.run_book("db-restore", "--yes", "--target", "staging", "-p", f"dump={self.dump_path}", env=env)
        self.assertExit(p, 0)
        self.assertEqual(self.counts(), FULL)
        self.assertIn("api stopped", self.logs("stop"))
        self.assertIn("api started", self.logs("start"))
        self.assertNotEqual(self.app.pid("api"), before, "the service was not stopped and started again")

    def test_a_dry_run_reads_health_once_instead_of_waiting_for_a_start_it_simulated(self):
        # The service is down and the dry run starts nothing, so waiting 60 s
        # for its health could only time out and fail the rehearsal.
        env = self.service_target(services=True)
        self.app.stop("api")
        p = self.run_book("db-restore", "--dry-run", "--yes", "--target", "staging",
                          "-p", f"dump={self.dump_path}", env=env)
        self.assertExit(p, 0)
        self.assertIn("dry run: would start api", self.logs("start"))
        self.assertTrue(any(m.startswith("would wait up to 60 s for every health check of the target to pass "
                                         "(the real state is still down") for m in self.logs("verify")),
                        self.logs("verify"))
        self.assertEqual([c for c in self.calls("poll") if c["step"] == "verify"], [], "the dry run polled")
        self.assertIsNone(self.app.pid("api"), "a dry run started the service")

    def test_a_failed_restore_says_the_service_is_still_stopped(self):
        # A real run (the stop is real) whose pg_restore fails (the shipped
        # game-day scenario stands in for it): --yes aborts, and the error the
        # run ends with must say the service is down and how to bring it back.
        env = self.service_target(services=True)
        p = self.run_book("db-restore", "--yes", "--target", "staging", "-p", f"dump={self.dump_path}",
                          "--scenario", os.path.join(SCENARIOS, "db-restore.lua"), env=env)
        self.assertExit(p, 1)
        err = self.step_ends()["restore"]["error"]
        self.assertIn("api is stopped: bring it back with undo, or `runbook run db-restore --start-at start`", err)
        self.assertIn("api is stopped", p.stdout + p.stderr)
        self.assertIsNone(self.app.pid("api"), "expected the service stopped by the run")
        self.assertEqual(self.counts(), DAMAGED)

    def test_a_corrupt_dump_stops_at_the_preflight(self):
        bad = self.write("backups/bad.dump", "PGDMP this is not a dump\n")
        p = self.run_book("db-restore", "--yes", "-p", f"db={self.url}", "-p", f"dump={bad}")
        self.assertExit(p, 1)
        ends = self.step_ends()
        self.assertEqual(ends["preflight"]["status"], "failed")
        self.assertIn("pg_restore", ends["preflight"]["error"])
        self.assertNotIn("restore", ends)
        self.assertEqual(self.counts(), DAMAGED)

    def truncated_newest(self, env):
        """backup_dir: the good dump, older, and a newer one cut to half
        its size (a backup job killed while writing).  Returns its path."""
        # rows that do not compress, so that half the file is past the
        # table of contents (at its start): only reading the data shows the cut
        self.sql('drop table if exists "Order Items", orders, users;' + SCHEMA +
                 "create table bulk (id int, v text); insert into bulk select g, md5(random()::text) || "
                 "md5(random()::text) from generate_series(1, 40000) g;")
        self.dump("good.dump")
        self.sql("drop table bulk;" + DAMAGE)
        os.utime(self.dump_path, (1_600_000_000, 1_600_000_000))
        half = self.path("backups", "newest.dump")
        with open(self.dump_path, "rb") as src, open(half, "wb") as dst:
            dst.write(src.read())
        subprocess.run(["truncate", "-s", str(os.path.getsize(half) // 2), half], check=True)
        listed = subprocess.run([f"{PG_BIN}/pg_restore", "--list", half], capture_output=True)
        self.assertEqual(listed.returncode, 0, "the cut must leave the table of contents readable")
        return half

    def test_a_truncated_newest_dump_stops_the_run_before_anything_is_stopped(self):
        env = self.service_target()
        half = self.truncated_newest(env)
        before = self.app.pid("api")
        p = self.run_book("db-restore", "--yes", "--target", "staging", "-p", "service=api", env=env)
        self.assertExit(p, 1)
        ends = self.step_ends()
        self.assertEqual(ends["preflight"]["status"], "failed", p.stdout)
        err = ends["preflight"]["error"]
        self.assertIn(f"the dump {half} does not read through", err)
        self.assertRegex(err, r"pg_restore: error: .*(could not read|unexpected end|end of file)",
                         "pg_restore's own message must say why")
        self.assertIn("Nothing has been stopped. 1 other dump(s) in", err)
        for later in ("approval", "stop", "restore"):
            self.assertNotIn(later, ends, f"step {later} ran after a dump that does not read through")
        self.assertEqual(self.app.pid("api"), before, "the service was stopped")
        self.assertEqual(self.counts(), DAMAGED, "an older dump was restored without the operator")
        self.assertIn("newest.dump", p.stdout)
        self.assertIn("good.dump", p.stdout, "the other dumps must be listed to choose from")

    def test_the_operator_chooses_an_older_dump_from_the_list(self):
        env = self.service_target()
        self.truncated_newest(env)
        answers = self.write("answers", "[preflight] Which dump to restore? = 2\n")
        p = self.run_book("db-restore", "--yes", "--answers", answers, "--target", "staging",
                          "-p", "service=api", env=env)
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, r"1\) newest\.dump\s+[\d.]+ [kM]B\s+\d{4}-\d\d-\d\d \d\d:\d\d UTC")
        self.assertRegex(p.stdout, r"2\) good\.dump\s+[\d.]+ [kM]B\s+2020-09-13 12:26 UTC")
        self.assertIn(f"dump read through: {self.dump_path}", p.stdout)
        self.assertEqual(self.counts(), FULL)

    def test_preflight_and_verify_do_not_wait_behind_a_locked_table(self):
        blocker = self.lock_orders()
        t0 = time.monotonic()
        p = self.run_book("db-restore", "--dry-run", "--yes", "-p", f"db={self.url}",
                          "-p", f"dump={self.dump_path}", timeout=120)
        print(f"\ndb-restore --dry-run with orders locked by pid {blocker}: "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, rf"public\.orders\s+rows unknown: locked by pid {blocker}")
        self.assertIn(f"public.orders is locked by pid {blocker}: the restore would wait", p.stdout)
        self.assertRegex(p.stdout, rf"public\.orders\s+dump\s+120\s+database rows unknown: "
                                   rf"locked by pid {blocker}")

    def test_dry_run_claims_nothing_it_only_simulated(self):
        env = self.service_target()
        p = self.run_book("db-restore", "--dry-run", "--yes", "--target", "staging", "-p", "service=api",
                          "-p", f"dump={self.dump_path}", env=env)
        self.assertExit(p, 0)
        for claim in (r"\bapi stopped\b", r"\bapi started\b", r"\brestored .* in \d", r"maintenance mode on"):
            self.assertNotRegex(p.stdout, claim, "a dry run reported as done what it simulated")
        self.assertIn("dry run: would stop api", p.stdout)
        self.assertIn(f"dry run: would restore {self.dump_path}", p.stdout)
        self.assertIn("dry run: would start api", p.stdout)

    def test_scenario_pg_restore_fails_then_the_undo_brings_the_service_back(self):
        env = self.service_target()
        answers = self.write("answers", "[restore] !error = undo\n")
        p = self.run_book("db-restore", "--dry-run", "--yes", "--answers", answers, "--target", "staging",
                          "-p", "service=api", "-p", f"dump={self.dump_path}",
                          "--scenario", os.path.join(SCENARIOS, "db-restore.lua"), env=env)
        self.assertExit(p, 1)
        ends = self.step_ends()
        self.assertEqual(ends["restore"]["status"], "failed")
        self.assertIn("canceling statement due to lock timeout", ends["restore"]["error"])
        undo = [e for e in self.events(self.transcript) if e["event"] == "undo"]
        self.assertEqual([(u["step"], u["ok"]) for u in undo], [("restore", True)])
        self.assertRegex(p.stdout, r"undo:.*\n(.*\n)*?.*would run: \S*/bin/start api")
        for later in ("migrate", "start", "verify"):
            self.assertNotIn(later, ends, f"step {later} ran after the failed restore")
        self.assertEqual(self.counts(), DAMAGED)
        self.assertEqual(self.read_log(), [])


class Check(DbTestCase):
    def test_runbook_check_passes(self):
        p = self.run_rb("check", "db-restore")
        self.assertExit(p, 0)


if __name__ == "__main__":
    unittest.main()
