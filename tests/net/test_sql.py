"""sql.connect / db:query / db:exec / db:tx against a real PostgreSQL 15 on
loopback: typed rows, bound parameters, transactions, every connection
failure with its own message (refused, name not resolved, authentication,
missing database, TLS, a server that never answers), query timeouts that
cancel on the server and leave the connection usable, Ctrl-C through a
pty, dry run (READ ONLY for query, simulated exec), redaction of the URL's
password, one connection per URL kept for the run, and parallel queries on
separate connections."""
import json
import os
import time
import unittest

from harness import RunbookTestCase, LUA_EMIT, LUA_PEAK_RSS, RETRY_SKIP_ABORT, emitted
from servers.postgres import (PASSWORD, USER, NoTLSListener, PostgresServer, SilentListener,
                              free_port)

RSA = RETRY_SKIP_ABORT

PRELUDE = """runbook { name = "sql-test" }
param("db", { help = "database URL" })
""" + LUA_EMIT
PRELUDE_LINES = PRELUDE.count("\n")


PG = None


def setUpModule():
    global PG
    PG = PostgresServer()     # one cluster for every test here: it takes 1.5 s to start


def tearDownModule():
    PG.stop()


class SqlTestCase(RunbookTestCase):
    @property
    def pg(self):
        return PG

    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")
        self.table = f"t_{self.id().rsplit('.', 1)[-1][:40]}"
        self.pg.psql(f"drop table if exists {self.table}; drop table if exists x;"
                     f"create table {self.table} (id serial primary key, v text, n int);"
                     f"alter table {self.table} owner to {USER};"
                     f"create table x (keep int); alter table x owner to {USER};")

    def runbook(self, steps, *args, url=None, expect=0, timeout=60):
        """Run PRELUDE + steps with -p db=URL; return the process and what
        it emitted ({key: [values...]})."""
        path = self.write("rb.lua", PRELUDE + steps)
        p = self.run_rb("run", "--yes", "--transcript", self.transcript, path,
                        "-p", f"db={url or self.pg.url()}", *args, timeout=timeout)
        if expect is not None:
            self.assertExit(p, expect)
        return p, emitted(p.stdout)

    def calls(self, primitive=None):
        return [e for e in self.events(self.transcript) if e["event"] == "call"
                and (primitive is None or e["primitive"] == primitive)]

    def read_transcript(self):
        with open(self.transcript) as f:
            return f.read()

    def rows(self, sql):
        return [line.split("|") for line in self.pg.psql(sql).splitlines() if line]


class Queries(SqlTestCase):
    def test_rows_are_keyed_by_column_and_typed(self):
        p, out = self.runbook("""
step("types", function(p)
  local db = sql.connect(p.db)
  local r = db:query([[select 1::int2 as i2, 2147483647::int4 as i4, 9007199254740993::int8 as i8,
    1.5::float4 as f4, 0.1::float8 as f8, 12.25::numeric as num, true as yes, false as no,
    null::int as missing, 'text' as t, '{"a":1}'::jsonb as j, 'a'::text || null as nulltext,
    '2026-01-02'::date as d, 'NaN'::float8 as nan]])[1]
  for _, k in ipairs({ "i2", "i4", "i8", "f4", "f8", "num", "yes", "no", "t", "j", "d" }) do
    emit(k, { math.type(r[k]) or type(r[k]), tostring(r[k]) })
  end
  emit("exact_int8", r.i8 == 9007199254740993)
  emit("missing_is_nil", r.missing == nil and r.nulltext == nil)
  emit("nan", r.nan ~= r.nan)
  local many = db:query("select g as n, g * 2 as twice from generate_series(1, 3) g order by g")
  emit("many", many)
  emit("none", #db:query("select 1 where false"))
end)
""")
        self.assertEqual(out["i2"], [["integer", "1"]])
        self.assertEqual(out["i4"], [["integer", "2147483647"]])
        self.assertEqual(out["i8"], [["integer", "9007199254740993"]])
        self.assertEqual(out["exact_int8"], [True], "int8 must be a Lua integer, not a float")
        self.assertEqual(out["f4"], [["float", "1.5"]])
        self.assertEqual(out["f8"], [["float", "0.1"]])
        self.assertEqual(out["num"], [["float", "12.25"]], "numeric must come back as a number")
        self.assertEqual(out["yes"], [["boolean", "true"]])
        self.assertEqual(out["no"], [["boolean", "false"]])
        self.assertEqual(out["t"], [["string", "text"]])
        self.assertEqual(out["j"], [["string", '{"a": 1}']], "jsonb must come back as its text")
        self.assertEqual(out["d"], [["string", "2026-01-02"]])
        self.assertEqual(out["missing_is_nil"], [True])
        self.assertEqual(out["nan"], [True])
        self.assertEqual(out["many"], [[{"n": 1, "twice": 2}, {"n": 2, "twice": 4},
                                        {"n": 3, "twice": 6}]])
        self.assertEqual(out["none"], [0])

    def test_parameters_are_bound_and_stored_verbatim(self):
        t = self.table
        hostile = ["'; drop table x; --", "O'Brien \"quoted\" \\ backslash $1 $$ dollar",
                   "línea\nnueva\ttab"]
        p, out = self.runbook(f"""
step("insert", function(p)
  local db = sql.connect(p.db)
  local vals = json.decode([==[{json.dumps(hostile)}]==])
  for i, v in ipairs(vals) do
    emit("affected", db:exec("insert into {t} (v, n) values ($1, $2)", v, i))
  end
  db:exec("insert into {t} (v, n) values ($1, $2)", nil, 4)
  local back = db:query("select v from {t} where v = $1", vals[1])
  emit("found", #back)
  emit("typed_params", db:query("select $1::int + $2::int as s, $3::bool as b, $4::float8 as f",
    40, "2", true, 0.25)[1])
  emit("null_param", db:query("select $1::text is null as isnull", nil)[1].isnull)
end)
""")
        self.assertEqual(out["affected"], [1, 1, 1])
        self.assertEqual(out["found"], [1], "a WHERE with a hostile bound value must match it exactly")
        self.assertEqual(out["typed_params"], [{"s": 42, "b": True, "f": 0.25}])
        self.assertEqual(out["null_param"], [True], "nil must be sent as SQL NULL")
        stored = self.pg.psql(f"select coalesce(v, '<NULL>') from {t} order by n")
        self.assertEqual(stored, "\n".join(hostile + ["<NULL>"]) + "\n",
                         "each value must be stored byte for byte")
        self.assertEqual(self.pg.psql("select count(*) from pg_tables where tablename = 'x'").strip(), "1",
                         "the injected 'drop table x' must not have run")
        insert = [c for c in self.calls("sql.exec")][0]
        self.assertEqual(insert["args"]["params"], [hostile[0], 1],
                         "the transcript must show the bound parameters apart from the SQL")

    def test_exec_returns_affected_rows_and_the_command_tag(self):
        t = self.table
        self.pg.psql(f"insert into {t} (v, n) select 'r', g from generate_series(1, 5) g")
        p, out = self.runbook(f"""
step("update", function(p)
  local db = sql.connect(p.db)
  local n, tag = db:exec("update {t} set v = 'u' where n <= $1", 3)
  emit("n", n); emit("tag", tag)
  emit("ddl", db:exec("create index on {t} (n)"))
  emit("deleted", db:exec("delete from {t}"))
end)
""")
        self.assertEqual(out["n"], [3])
        self.assertEqual(out["tag"], ["UPDATE 3"])
        self.assertEqual(out["ddl"], [0])
        self.assertEqual(out["deleted"], [5])

    def test_exec_without_parameters_runs_a_script_all_or_nothing(self):
        t = self.table
        p, out = self.runbook(f"""
step("script", function(p)
  local db = sql.connect(p.db)
  emit("n", {{ db:exec("insert into {t} (v) values ('a'); insert into {t} (v) values ('b'), ('c')") }})
  try(db.exec, db, "insert into {t} (v) values ('d'); insert into {t} (id) values (1)")
  try(db.query, db, "select 1; select 2")
end)
""")
        self.assertEqual(out["n"], [[2, "INSERT 0 2"]], "a script returns its last statement's count")
        self.assertRegex(out["err"][0], r"duplicate key value .*SQLSTATE 23505")
        self.assertRegex(out["err"][1], r"cannot insert multiple commands into a prepared statement",
                         "db:query must refuse several statements")
        self.assertEqual(self.rows(f"select v from {t} order by id"), [["a"], ["b"], ["c"]],
                         "a failing script must leave nothing behind")

    def test_syntax_error_carries_the_server_message_at_the_runbook_line(self):
        p, out = self.runbook("""
step("bad sql", function(p)
  local db = sql.connect(p.db)
  try(db.query, db, "selec 1")
  emit("still_works", db:query("select 7 as n")[1].n)
  db:query("select * from no_such_table")
end)
""", expect=1)
        self.assertRegex(out["err"][0],
                         rf'^sql: query on 127\.0\.0\.1:{self.pg.port}/runbook failed: syntax error at or '
                         r'near "selec" at character 1 \(SQLSTATE 42601; check the SQL text\)$')
        self.assertEqual(out["still_works"], [7], "a server error must leave the connection usable")
        line = PRELUDE_LINES + 6
        self.assertRegex(p.stdout, rf'rb\.lua:{line}: sql: query on 127\.0\.0\.1:\d+/runbook failed: '
                         r'relation "no_such_table" does not exist',
                         "the step's error must name the runbook line and the server's message")
        failed = [c for c in self.calls("sql.query") if c["outcome"] == "error"]
        self.assertEqual(len(failed), 2)
        self.assertIn("42601", failed[0]["error"])
        self.assertGreaterEqual(failed[0]["duration"], 0)

    def test_every_call_is_recorded_with_outcome_and_duration(self):
        t = self.table
        self.runbook(f"""
step("calls", function(p)
  local db = sql.connect(p.db)
  db:query("select 1 as one")
  db:exec("insert into {t} (v) values ($1)", "a")
  db:tx(function() db:exec("insert into {t} (v) values ('b')") end)
end)
""")
        calls = self.calls()
        kinds = [(c["primitive"], c["args"].get("sql")) for c in calls]
        self.assertEqual(kinds, [("sql.connect", None), ("sql.query", "select 1 as one"),
                                 ("sql.exec", f"insert into {t} (v) values ($1)"),
                                 ("sql.tx", "BEGIN"), ("sql.exec", f"insert into {t} (v) values ('b')"),
                                 ("sql.tx", "COMMIT")])
        for c in calls:
            self.assertEqual(c["outcome"], "ok", c)
            self.assertIsInstance(c["duration"], float, c)
            self.assertEqual(c["step"], "calls")
            self.assertRegex(c["args"]["url"], rf"^postgresql://runbook:\*\*\*@127\.0\.0\.1:{self.pg.port}/runbook$")
        self.assertEqual(calls[1]["result"]["rows"], 1)
        self.assertEqual(calls[2]["result"]["affected"], 1)
        self.assertEqual(calls[0]["result"]["reused"], False)


class Transactions(SqlTestCase):
    def test_tx_commits_and_returns_the_function_results(self):
        t = self.table
        p, out = self.runbook(f"""
step("tx", function(p)
  local db = sql.connect(p.db)
  local a, b = db:tx(function(tx)
    tx:exec("insert into {t} (v) values ('one')")
    tx:exec("insert into {t} (v) values ('two')")
    return "done", #tx:query("select * from {t}")
  end)
  emit("results", {{ a, b }})
end)
""")
        self.assertEqual(out["results"], [["done", 2]])
        self.assertEqual(self.rows(f"select v from {t} order by id"), [["one"], ["two"]])

    def test_tx_rolls_back_and_reraises_the_error(self):
        t = self.table
        p, out = self.runbook(f"""
step("tx", function(p)
  local db = sql.connect(p.db)
  try(db.tx, db, function()
    db:exec("insert into {t} (v) values ('gone')")
    error("changed my mind")
  end)
  try(db.tx, db, function()
    db:exec("insert into {t} (v) values ('gone too')")
    db:exec("insert into {t} (id) values (1), (1)")
  end)
  emit("after", db:query("select count(*)::int as n from {t}")[1].n)
  local caught = db:tx(function()
    db:exec("insert into {t} (v) values ('kept?')")
    return pcall(db.exec, db, "insert into {t} (id, v) values (1, 'a'), (1, 'b')")
  end)
end)
""", expect=1)
        self.assertEqual(out["ok"], [False, False])
        self.assertRegex(out["err"][0], rf"rb\.lua:{PRELUDE_LINES + 6}: changed my mind$",
                         "the function's own error must come back unchanged")
        self.assertRegex(out["err"][1], r"duplicate key value violates unique constraint .*SQLSTATE 23505")
        self.assertEqual(out["after"], [0], "nothing of a failed tx may be committed")
        self.assertRegex(p.stdout, r"sql: transaction on postgresql://runbook:\*\*\*@[^ ]+ rolled back, not "
                         r"committed: a statement in it failed",
                         "an error caught inside db:tx must not let COMMIT pass as a success")
        self.assertEqual(self.rows(f"select count(*) from {t}"), [["0"]])
        ends = [c["args"]["sql"] for c in self.calls("sql.tx")]
        self.assertEqual(ends, ["BEGIN", "ROLLBACK"] * 3)

    def test_nested_tx_is_a_savepoint(self):
        t = self.table
        self.runbook(f"""
step("nested", function(p)
  local db = sql.connect(p.db)
  db:tx(function()
    db:exec("insert into {t} (v) values ('outer')")
    pcall(db.tx, db, function()
      db:exec("insert into {t} (v) values ('inner, rolled back')")
      error("inner fails")
    end)
    db:tx(function() db:exec("insert into {t} (v) values ('inner, kept')") end)
  end)
end)
""")
        self.assertEqual(self.rows(f"select v from {t} order by id"), [["outer"], ["inner, kept"]])


class ConnectionFailures(SqlTestCase):
    """Each cause has its own message naming the server and what to check."""

    CONNECT = """
step("connect", function(p)
  local t0 = time.clock()
  try(sql.connect, p.db, %s)
  emit("elapsed", time.clock() - t0)
  if %s then sql.connect(p.db, %s) end
end)
"""

    def connect_error(self, url, opts="nil", recorded=True, twice=True):
        """Connect under pcall (the message), then, when twice, without (the
        step fails at the runbook's line)."""
        p, out = self.runbook(self.CONNECT % (opts, str(twice).lower(), opts), url=url,
                              expect=1 if twice else 0)
        self.assertEqual(out["ok"], [False])
        if twice:
            self.assertRegex(p.stdout, rf"rb\.lua:{PRELUDE_LINES + 6}: sql[.:]",
                             "the step's error must name the runbook line of sql.connect")
        if recorded:
            call = self.calls("sql.connect")[0]
            self.assertEqual(call["outcome"], "error")
            self.assertEqual(call["error"], out["err"][0])
        else:
            self.assertEqual(self.calls("sql.connect"), [], "a URL that does not parse is not a call")
        return out["err"][0], out["elapsed"][0], p

    def test_connection_refused(self):
        port = free_port()
        err, elapsed, _ = self.connect_error(f"postgresql://u:pw@127.0.0.1:{port}/db")
        self.assertRegex(err, rf"^sql: connection to 127\.0\.0\.1:{port} refused after \d+\.\d s "
                         r"\(is PostgreSQL running\? check the host and port in the URL, or --target\)$")
        self.assertLess(elapsed, 2)

    def test_host_name_not_resolved(self):
        err, _, _ = self.connect_error("postgresql://u:pw@nonexistent.invalid:5432/db")
        self.assertRegex(err, r'^sql: cannot resolve host name "nonexistent\.invalid" \(check the host '
                         r'in the URL or --target, and DNS\)')

    def test_authentication_failed(self):
        wrong = "Wr0ng-pa55word"
        err, _, p = self.connect_error(self.pg.url(password=wrong))
        self.assertEqual(err, f'sql: authentication failed for user "runbook" at 127.0.0.1:{self.pg.port} '
                         "(check the password in the URL or ~/.pgpass, and the user's pg_hba.conf method)")
        for where, text in (("stdout", p.stdout), ("stderr", p.stderr),
                            ("transcript", self.read_transcript())):
            self.assertNotIn(wrong, text, f"the wrong password must not appear on {where}")

    def test_database_does_not_exist(self):
        err, _, _ = self.connect_error(self.pg.url(db="no_such_db"))
        self.assertEqual(err, f'sql: database "no_such_db" does not exist on 127.0.0.1:{self.pg.port} '
                         "(check the database name in the URL; \\l in psql lists them)")

    def test_tls_certificate_not_trusted(self):
        err, _, _ = self.connect_error(self.pg.url(sslmode="verify-ca", sslrootcert=self.pg.other_ca))
        self.assertRegex(err, rf"^sql: TLS failure connecting to 127\.0\.0\.1:{self.pg.port}: "
                         r"SSL error: certificate verify failed \(check sslmode, sslrootcert")

    def test_tls_required_but_server_offers_none(self):
        with NoTLSListener() as srv:
            err, _, _ = self.connect_error(f"postgresql://u:pw@127.0.0.1:{srv.port}/db?sslmode=require")
        self.assertRegex(err, rf"^sql: TLS failure connecting to 127\.0\.0\.1:{srv.port}: server does not "
                         r"support SSL, but SSL was required")

    def test_tls_in_use_when_required(self):
        p, out = self.runbook("""
step("tls", function(p)
  emit("ok", true)
  local db = sql.connect(p.db)
  emit("ssl", db:query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")[1].ssl)
end)
""", url=self.pg.url(sslmode="require"))
        self.assertEqual(out["ssl"], [True])
        self.assertTrue(self.calls("sql.connect")[0]["result"]["tls"])

    def test_server_that_never_answers_hits_the_connect_timeout(self):
        with SilentListener() as srv:
            err, elapsed, _ = self.connect_error(f"postgresql://u:pw@127.0.0.1:{srv.port}/db",
                                                 opts="{ connect_timeout = 0.5 }")
        self.assertRegex(err, rf"^sql: connection to 127\.0\.0\.1:{srv.port} timed out after 0\.5 s "
                         r"\(the server accepted nothing or did not answer")
        self.assertGreaterEqual(elapsed, 0.45)
        self.assertLess(elapsed, 2, "the connect timeout must stop the wait")

    def test_connect_timeout_from_the_url(self):
        with SilentListener() as srv:
            err, elapsed, _ = self.connect_error(
                f"postgresql://u:pw@127.0.0.1:{srv.port}/db?connect_timeout=1", twice=False)
        self.assertIn("timed out after 1.0 s", err)
        self.assertLess(elapsed, 2.5)

    def test_bad_url_is_refused_before_connecting(self):
        err, _, _ = self.connect_error("postgresql://u:pw@127.0.0.1:5432/db?bogus_option=1", recorded=False)
        self.assertRegex(err, r'^sql\.connect: cannot parse the connection URL: invalid URI query parameter: '
                         r'"bogus_option" \(expected postgresql://')


class Timeouts(SqlTestCase):
    def test_query_timeout_cancels_on_the_server_and_the_connection_stays_usable(self):
        p, out = self.runbook("""
step("slow", function(p)
  local db = sql.connect(p.db, { timeout = 0.5 })
  local pid = db:query("select pg_backend_pid() as pid")[1].pid
  local t0 = time.clock()
  try(db.query, db, "select pg_sleep(10)")
  emit("elapsed", time.clock() - t0)
  local r = db:query("select pg_backend_pid() as pid, count(*)::int as n from pg_stat_activity " ..
    "where query = 'select pg_sleep(10)' and state = 'active'")[1]
  emit("same_conn", r.pid == pid)
  emit("still_sleeping", r.n)
end)
""")
        self.assertRegex(out["err"][0], rf"^sql: query on 127\.0\.0\.1:{self.pg.port}/runbook timed out after "
                         r"0\.5 s; the statement was cancelled on the server \(raise timeout= in sql\.connect")
        self.assertLess(out["elapsed"][0], 2.5)
        self.assertGreaterEqual(out["elapsed"][0], 0.45)
        self.assertEqual(out["same_conn"], [True], "the connection must stay usable after a timeout")
        self.assertEqual(out["still_sleeping"], [0], "the timed-out statement must be cancelled on the server")

    def test_statement_timeout_is_enforced_by_the_server(self):
        p, out = self.runbook("""
step("slow", function(p)
  local db = sql.connect(p.db, { statement_timeout = 0.2 })
  try(db.query, db, "select pg_sleep(3)")
  emit("setting", db:query("show statement_timeout")[1].statement_timeout)
  local other = sql.connect(p.db)
  emit("other", other:query("show statement_timeout")[1].statement_timeout)
end)
""")
        self.assertRegex(out["err"][0], r"canceling statement due to statement timeout \(SQLSTATE 57014")
        self.assertEqual(out["setting"], ["200ms"])
        self.assertEqual(out["other"], ["0"], "statement_timeout must not leak to other connections")

    def test_step_timeout_stops_a_query(self):
        p, _ = self.runbook("""
step("limited", { timeout = 0.5 }, function(p)
  sql.connect(p.db):query("select pg_sleep(10)")
end)
""", expect=1)
        self.assertRegex(p.stdout, r"sql: query on \S+ stopped: the step's timeout ran out; the statement "
                         r"was cancelled on the server")

    def test_ctrl_c_interrupts_a_query_and_cancels_it(self):
        path = self.write("rb.lua", PRELUDE + """
step("sleep", function(p)
  local db = sql.connect(p.db)
  db:query("select pg_sleep(30)")
end)
""")
        s = self.pty("run", path, "-p", f"db={self.pg.url()}", "--transcript", self.transcript)
        s.expect(r"sql> select pg_sleep\(30\)")
        deadline = time.monotonic() + 10
        while "pg_sleep(30)" not in self.pg.psql("select query from pg_stat_activity where state = 'active'"):
            self.assertLess(time.monotonic(), deadline, "the query never started on the server")
            time.sleep(0.05)
        t0 = time.monotonic()
        s.ctrl_c()
        s.expect(r"interrupted", timeout=5)
        took = time.monotonic() - t0
        s.expect(RSA, timeout=5)
        active = self.pg.psql("select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' "
                              "and state = 'active'").strip()
        s.sendline("a")
        code = s.wait(timeout=10)
        self.assertLess(took, 3, f"Ctrl-C must stop the query at once, took {took:.1f} s")
        self.assertEqual(active, "0", "Ctrl-C must cancel the statement on the server")
        self.assertIn("sql: query on", s.output)
        self.assertIn("interrupted (Ctrl-C); the statement was cancelled on the server", s.output)
        self.assertEqual(code, 1)


    def test_ctrl_c_interrupts_a_connect(self):
        with SilentListener() as srv:
            path = self.write("rb.lua", PRELUDE + """
step("connect", function(p)
  print("connecting")
  sql.connect(p.db, { connect_timeout = 30 })
end)
""")
            s = self.pty("run", path, "-p", f"db=postgresql://u:pw@127.0.0.1:{srv.port}/db",
                         "--transcript", self.transcript)
            s.expect("connecting")
            time.sleep(0.3)
            t0 = time.monotonic()
            s.ctrl_c()
            s.expect(rf"sql: connection to 127\.0\.0\.1:{srv.port} interrupted \(Ctrl-C\)", timeout=5)
            took = time.monotonic() - t0
            s.expect(RSA, timeout=5)
            s.sendline("a")
            self.assertEqual(s.wait(timeout=10), 1, s.output)
        self.assertLess(took, 3, f"Ctrl-C must stop the connect at once, took {took:.1f} s")


class DryRun(SqlTestCase):
    def test_query_runs_read_only_and_exec_is_simulated(self):
        t = self.table
        self.pg.psql(f"insert into {t} (v) values ('real')")
        p, out = self.runbook(f"""
step("rehearse", function(p)
  local db = sql.connect(p.db)
  emit("read", db:query("select v from {t}")[1].v)
  emit("exec", db:exec("delete from {t} where v = $1", "real"))
  try(db.query, db, "insert into {t} (v) values ('sneaky') returning id")
  try(db.query, db, "set transaction read write")
  emit("tx", db:tx(function()
    db:exec("insert into {t} (v) values ('in tx')")
    return db:query("select count(*)::int as n from {t}")[1].n
  end))
  try(db.tx, db, function() db:query("set transaction read write") end)
  emit("after", db:query("select count(*)::int as n from {t}")[1].n)
end)
""", "--dry-run")
        self.assertEqual(out["read"], ["real"], "a dry run must read the real data")
        self.assertEqual(out["exec"], [0], "a simulated exec returns 0")
        self.assertRegex(p.stdout, rf"would run: sql exec on postgresql://runbook:\*\*\*@127\.0\.0\.1:"
                         rf"{self.pg.port}/runbook: delete from {t} where v = \$1")
        self.assertEqual(out["ok"], [False, False, False])
        self.assertRegex(out["err"][0], r"cannot execute INSERT in a read-only transaction \(SQLSTATE 25006; "
                         r"dry run: db:query runs in a READ ONLY transaction")
        self.assertRegex(out["err"][1], r"transaction read-write mode must be set before any query|"
                         r"cannot set transaction read-write mode")
        self.assertRegex(out["err"][2], r"transaction read-write mode must be set before any query")
        self.assertEqual(out["tx"], [1])
        self.assertEqual(out["after"], [1])
        self.assertEqual(self.rows(f"select v from {t}"), [["real"]], "a dry run must change nothing")
        execs = self.calls("sql.exec")
        self.assertEqual([c["outcome"] for c in execs], ["simulated", "simulated"])
        self.assertTrue(all(c["dry_run"] for c in execs))
        tx = [(c["args"]["sql"], c["outcome"]) for c in self.calls("sql.tx")]
        self.assertEqual(tx, [("BEGIN READ ONLY", "ok"), ("COMMIT", "simulated"), ("ROLLBACK", "ok"),
                              ("BEGIN READ ONLY", "ok"), ("ROLLBACK", "ok")])


class Redaction(SqlTestCase):
    def test_password_never_reaches_the_screen_or_the_transcript(self):
        url = self.pg.url()
        self.assertIn(PASSWORD, url)
        p, out = self.runbook("""
step("use", function(p)
  local db = sql.connect(p.db)
  emit("url", tostring(db))
  db:query("select $1::text as echo", p.db)
  log.info("connected to %s", p.db)
  db:exec("select 1")
  db:query("select * from nope")
end)
""", "--dry-run", url=url, expect=1)
        for where, text in (("stdout", p.stdout), ("stderr", p.stderr),
                            ("transcript", self.read_transcript())):
            self.assertNotIn(PASSWORD, text, f"the password must not appear on {where}")
            self.assertNotIn(PASSWORD.replace("$", "\\$"), text)
        self.assertEqual(out["url"], [f"sql connection postgresql://runbook:***@127.0.0.1:{self.pg.port}/runbook"])
        self.assertIn("postgresql://runbook:***@", p.stdout)

    def test_keyword_conninfo_password_is_redacted(self):
        conninfo = f"host=127.0.0.1 port={self.pg.port} dbname=runbook user={USER} password='{PASSWORD}'"
        p, out = self.runbook("""
step("use", function(p)
  local db = sql.connect(p.db)
  emit("url", tostring(db))
  db:query("select 1")
end)
""", url=conninfo)
        self.assertEqual(out["url"], [f"sql connection host=127.0.0.1 port={self.pg.port} dbname=runbook "
                                      f"user={USER} password=***"])
        self.assertNotIn(PASSWORD, self.calls("sql.query")[0]["args"]["url"])


class Connections(SqlTestCase):
    def test_one_connection_per_url_is_kept_for_the_run(self):
        p, out = self.runbook("""
for i = 1, 3 do
  step("step " .. i, function(p)
    emit("pid", sql.connect(p.db):query("select pg_backend_pid() as pid")[1].pid)
  end)
end
""")
        self.assertEqual(len(set(out["pid"])), 1, f"every step must reuse one connection, saw pids {out['pid']}")
        reused = [c["result"]["reused"] for c in self.calls("sql.connect")]
        self.assertEqual(reused, [False, True, True])
        deadline = time.monotonic() + 5
        while self.pg.psql(f"select count(*) from pg_stat_activity where pid = {out['pid'][0]}").strip() != "0":
            self.assertLess(time.monotonic(), deadline, "the connection must be closed when the run ends")
            time.sleep(0.05)

    def test_parallel_queries_run_concurrently_on_separate_connections(self):
        p, out = self.runbook("""
step("fan out", function(p)
  local db = sql.connect(p.db)
  local t0 = time.clock()
  local pids = parallel({ 1, 2, 3, 4, 5 }, function(i)
    return db:query("select pg_backend_pid() as pid, pg_sleep(0.5)::text as s, $1::int as i", i)[1].pid
  end)
  emit("elapsed", time.clock() - t0)
  emit("pids", pids)
  emit("again", #db:query("select 1"))
end)
""")
        self.assertLess(out["elapsed"][0], 1.5, "5 queries of 0.5 s each must overlap")
        self.assertEqual(len(set(out["pids"][0])), 5, f"each must have its own connection: {out['pids']}")

    def test_close_and_reconnect(self):
        p, out = self.runbook("""
step("close", function(p)
  do
    local db <close> = sql.connect(p.db)
    emit("a", db:query("select pg_backend_pid() as pid")[1].pid)
  end
  local db = sql.connect(p.db)
  emit("b", db:query("select pg_backend_pid() as pid")[1].pid)
  db:close()
  emit("c", db:query("select 1 as n")[1].n)
end)
""")
        self.assertNotEqual(out["a"], out["b"], "a closed connection must not be reused")
        self.assertEqual(out["c"], [1], "a call after close reconnects")

    def test_connection_lost_is_reported_and_the_next_call_reconnects(self):
        p, out = self.runbook("""
step("lost", function(p)
  local db = sql.connect(p.db)
  local pid = db:query("select pg_backend_pid() as pid")[1].pid
  sql.connect(p.db .. "?application_name=killer"):query("select pg_terminate_backend($1)", pid)
  try(db.query, db, "select 1")
  emit("after", db:query("select 2 as n")[1].n)
end)
""")
        self.assertRegex(out["err"][0], rf"^sql: connection to 127\.0\.0\.1:{self.pg.port}/runbook lost during "
                         r"query: .*\(check the server and its log; the next call reconnects\)")
        self.assertEqual(out["after"], [2])

    def test_misuse_raises_at_once(self):
        p, out = self.runbook("""
step("misuse", function(p)
  try(sql.connect, 42)
  try(sql.connect, p.db, { timeout = -1 })
  local db = sql.connect(p.db)
  try(db.query, db, nil)
  try(db.query, db, "select $1", {})
  try(db.tx, db, "not a function")
end)
""")
        self.assertEqual(out["ok"], [False] * 5)
        self.assertRegex(out["err"][0], r"sql\.connect: expected a connection URL")
        self.assertRegex(out["err"][1], r"sql\.connect: timeout must be a positive number of seconds")
        self.assertRegex(out["err"][2], r"db:query expects an SQL string")
        self.assertRegex(out["err"][3], r"parameter \$1 is a table")
        self.assertRegex(out["err"][4], r"db:tx expects a function")


TWO_MILLION = "select g as id, 'row ' || g as v from generate_series(1, 2000000) g"


class BigResults(SqlTestCase):
    """2 million rows from the real server: db:query keeps a capped part and
    says so; db:each streams them all with memory staying flat."""

    def test_query_keeps_at_most_max_rows_and_says_so(self):
        p, out = self.runbook(LUA_PEAK_RSS + f"""
step("cut", function(p)
  local db = sql.connect(p.db)
  local rows = db:query("{TWO_MILLION}")
  emit("n", #rows)
  emit("truncated", rows.truncated)
  emit("total", rows.total)
  emit("last", rows[#rows].id)
  emit("rss_kb", peak_rss_kb())
  local few = db:query("{TWO_MILLION}", {{ max_rows = 10 }})
  emit("few", #few)
  local small = db:query("select repeat('x', 100) as v from generate_series(1, 50)", {{ max_bytes = 250 }})
  emit("small", #small)
  emit("small_total", small.total)
  local whole = db:query("select g from generate_series(1, 5) g")
  emit("whole", #whole)
  emit("whole_truncated", whole.truncated == true)
end)
""", timeout=300)
        self.assertEqual(out["n"], [100000])
        self.assertEqual(out["truncated"], [True])
        self.assertEqual(out["total"], [2000000])
        self.assertEqual(out["last"], [100000])
        self.assertEqual(out["few"], [10])
        self.assertEqual(out["small"], [2])
        self.assertEqual(out["small_total"], [50])
        self.assertEqual(out["whole"], [5])
        self.assertEqual(out["whole_truncated"], [False])
        self.assertIn("returned 2000000 rows; kept the first 100000", p.stdout)
        warns = [e for e in self.events(self.transcript)
                 if e["event"] == "log" and e["level"] == "warn"]
        self.assertEqual(len(warns), 3, warns)
        self.assertIn("returned 2000000 rows; kept the first 100000", warns[0]["message"])
        first = self.calls("sql.query")[0]
        self.assertEqual((first["result"]["rows"], first["result"]["truncated"],
                          first["result"]["rows_total"]), (100000, True, 2000000))
        print(f"\npeak RSS, db:query of 2M rows capped at 100k: {out['rss_kb'][0] / 1024:.0f} MB")

    def test_each_streams_every_row_with_flat_memory(self):
        p, out = self.runbook(LUA_PEAK_RSS + f"""
step("stream", function(p)
  local db = sql.connect(p.db)
  local sum, seen = 0, 0
  local n = db:each("{TWO_MILLION} where g > $1", 0, function(row)
    sum = sum + row.id
    seen = seen + 1
  end)
  emit("n", n)
  emit("seen", seen)
  emit("sum", sum)
  emit("rss_kb", peak_rss_kb())
  local firsts = {{}}
  emit("stopped", db:each("{TWO_MILLION}", function(row)
    firsts[#firsts + 1] = row.v
    return #firsts < 3
  end))
  emit("firsts", firsts)
  emit("after", db:query("select 42 as x")[1].x)
end)
""", timeout=300)
        self.assertEqual(out["n"], [2000000])
        self.assertEqual(out["seen"], [2000000])
        self.assertEqual(out["sum"], [2000000 * 2000001 // 2])
        self.assertEqual(out["stopped"], [3])
        self.assertEqual(out["firsts"], [["row 1", "row 2", "row 3"]])
        self.assertEqual(out["after"], [42])
        # All 2M rows in a result took 518 MB; streamed, memory must not grow
        # with the row count (a memory bound, not a timing one).  Under
        # AddressSanitizer freed memory stays quarantined, so RSS says nothing.
        if "ASAN_OPTIONS" not in os.environ:
            self.assertLess(out["rss_kb"][0], 64 * 1024, f"peak RSS {out['rss_kb'][0]} kB")
        each = self.calls("sql.each")
        self.assertEqual([c["result"]["rows"] for c in each], [2000000, 3])
        print(f"\npeak RSS, db:each over 2M rows: {out['rss_kb'][0] / 1024:.0f} MB")

    def test_each_stops_on_an_error_in_fn_and_the_connection_stays_usable(self):
        p, out = self.runbook("""
step("boom", function(p)
  local db = sql.connect(p.db)
  local ok, err = pcall(db.each, db, "select g from generate_series(1, 100000) g", function(row)
    if row.g == 5 then error("stop at five", 0) end
  end)
  emit("ok", ok)
  emit("err", err)
  emit("after", db:query("select 7 as x")[1].x)
  try(db.each, db, "select 1")
  try(db.query, db, "select 1", { max_rows = -1 })
  try(db.query, db, "select 1", { max_row = 1 })
end)
""")
        self.assertEqual(out["ok"], [False, False, False, False])
        self.assertEqual(out["err"][0], "stop at five")
        self.assertEqual(out["after"], [7])
        self.assertRegex(out["err"][1], r"db:each expects an SQL string, its \$1..\$n parameters, then a function")
        self.assertRegex(out["err"][2], r"option max_rows must be a non-negative integer")
        self.assertRegex(out["err"][3], r'db:query has no option "max_row"')

    def test_dry_run_streams_inside_read_only(self):
        p, out = self.runbook(f"""
step("dry", function(p)
  local db = sql.connect(p.db)
  emit("n", db:each("select g from generate_series(1, 3000) g", function() end))
  try(db.each, db, "insert into x values (1) returning keep", function() end)
end)
""", "--dry-run")
        self.assertEqual(out["n"], [3000])
        self.assertEqual(out["ok"], [False])
        self.assertIn("25006", out["err"][0])
        self.assertEqual(self.rows("select count(*) from x"), [["0"]])


if __name__ == "__main__":
    unittest.main()
