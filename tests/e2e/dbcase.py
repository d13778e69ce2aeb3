"""Shared by the db-restore, db-diagnose and lock end-to-end tests: one
PostgreSQL cluster per test module, a fresh database per test with three
tables of known content, pg_dump -Fc of it, the damage an incident does,
and `runbook run NAME` with the shipped runbooks/ on RUNBOOK_PATH.
"""
import os
import subprocess
import time

from harness import SOURCE_DIR, RunbookTestCase
from servers.postgres import PASSWORD, PG_BIN, USER, PostgresServer

RUNBOOKS = os.path.join(SOURCE_DIR, "runbooks")
SCENARIOS = os.path.join(SOURCE_DIR, "examples", "scenarios")

# Rows per table in a fresh database, as (relation as pg_dump names it, count).
FULL = {"users": 50, "orders": 120, "Order Items": 7}

SCHEMA = """
create table users (id int primary key, name text not null);
create table orders (id int primary key, user_id int not null references users, total numeric);
create table "Order Items" (id serial primary key, note text);
insert into users select g, 'user ' || g from generate_series(1, 50) g;
insert into orders select g, 1 + g % 40, g * 1.5 from generate_series(1, 120) g;
insert into "Order Items" (note) select E'line one\\nline two of ' || g from generate_series(1, 7) g;
"""

# What the incident did: a table dropped, rows deleted.
DAMAGE = """
drop table "Order Items";
delete from orders where id > 10;
delete from users where id > 45;
"""
DAMAGED = {"users": 45, "orders": 10, "Order Items": None}


class DbTestCase(RunbookTestCase):
    """Subclasses set PG (a PostgresServer started in setUpModule)."""
    PG = None

    @classmethod
    def start_cluster(cls):
        DbTestCase.PG = PostgresServer(tls=False)

    @classmethod
    def stop_cluster(cls):
        if DbTestCase.PG is not None:
            DbTestCase.PG.stop()
            DbTestCase.PG = None

    @property
    def pg(self):
        return DbTestCase.PG

    def setUp(self):
        super().setUp()
        self.env["RUNBOOK_PATH"] = RUNBOOKS
        self.dbname = "t_" + self.id().rsplit(".", 1)[-1][5:40].lower()
        self.pg.psql(f"drop database if exists {self.dbname} with (force);"
                     f"create database {self.dbname} owner {USER};", db="postgres")
        self.addCleanup(self.pg.psql, f"drop database if exists {self.dbname} with (force);",
                        db="postgres")
        self.url = self.pg.url(db=self.dbname)
        self.transcript = self.path("t.jsonl")

    def sql(self, text):
        """Run SQL as the database's owner (so restored objects keep it)."""
        self.pg.psql(f"set role {USER};\n" + text, db=self.dbname)

    def query(self, text):
        return self.pg.psql(text, db=self.dbname).strip()

    def populate(self):
        self.sql(SCHEMA)

    def dump(self, name="good.dump", directory=None):
        directory = directory or self.path("backups")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        subprocess.run([f"{PG_BIN}/pg_dump", "-Fc", "-h", self.pg.host, "-p", str(self.pg.port),
                        "-U", USER, "-d", self.dbname, "-f", path],
                       check=True, capture_output=True, timeout=60,
                       env={**os.environ, "PGPASSWORD": PASSWORD})
        return path

    def counts(self):
        """Rows per table now; None for a table that does not exist."""
        out = {}
        for name in FULL:
            q = '"' + name.replace('"', '""') + '"'
            exists = self.query(f"select to_regclass('public.{q}') is not null")
            out[name] = int(self.query(f"select count(*) from public.{q}")) if exists == "t" else None
        return out

    def session(self, app, sql):
        """psql as the database's owner, application_name = app, in the background."""
        p = subprocess.Popen([f"{PG_BIN}/psql", "-X", "-q", "-h", self.pg.host, "-p", str(self.pg.port),
                              "-U", USER, "-d", self.dbname, "-c", sql],
                             env={**os.environ, "PGPASSWORD": PASSWORD, "PGAPPNAME": app},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def stop():
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)
        self.addCleanup(stop)
        return p

    def wait_for(self, app, condition, timeout=10):
        """The pid of the backend named app once `condition` (SQL on
        pg_stat_activity) holds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.query(f"select pid from pg_stat_activity where application_name = '{app}' "
                             f"and {condition}")
            if pid:
                return int(pid)
            time.sleep(0.05)
        self.fail(f"backend {app} never reached {condition}: "
                  f"{self.query('select application_name, state, wait_event from pg_stat_activity')}")

    def lock_orders(self):
        """Another session holding orders in ACCESS EXCLUSIVE mode, as a
        forgotten migration or LOCK TABLE does; returns its pid."""
        self.session("locker", "begin; lock table orders in access exclusive mode; select pg_sleep(600);")
        return self.wait_for("locker", "wait_event = 'PgSleep'")

    def write_config(self, text):
        return self.write("config/runbook/config.lua", text)

    def run_book(self, name, *args, env=None, timeout=60, transcript=None):
        return self.run_rb("run", name, "--transcript", transcript or self.transcript, *args,
                           env=env, timeout=timeout)

    def calls(self, primitive=None, transcript=None):
        return [e for e in self.events(transcript or self.transcript) if e["event"] == "call"
                and (primitive is None or e["primitive"] == primitive)]

    def step_ends(self, transcript=None):
        return {e["id"]: e for e in self.events(transcript or self.transcript)
                if e["event"] == "step.end"}

    def logs(self, step=None, transcript=None):
        return [e["message"] for e in self.events(transcript or self.transcript)
                if e["event"] == "log" and (step is None or e.get("step") == step)]
