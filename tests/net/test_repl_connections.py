"""runbook repl's Tab completion and help on connections made on an
earlier line, against the real Redis and PostgreSQL the suite starts:
`r:<Tab><Tab>` lists the methods from the handle's metatable, a Tab
sends nothing to the server, and help(db.query) is the PostgreSQL
section of docs/authoring.md."""
import re
import time

from servers.postgres import PostgresServer
from servers.redis import RedisServer
from cli.test_repl_tools import Session

PG = None
RS = None


def setUpModule():
    global PG, RS
    PG = PostgresServer()
    RS = RedisServer()


def tearDownModule():
    PG.stop()
    RS.stop()


def processed():
    """Redis's count of the commands it has run (INFO counts itself)."""
    info = RS.command("INFO", "stats")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return int(re.search(r"total_commands_processed:(\d+)", text).group(1))


class Connections(Session):

    def start_with(self, **urls):
        self.transcript = self.path("repl.jsonl")
        s = self.pty("repl", "--transcript", self.transcript, env=urls)
        s.expect(r"runbook \S+ repl")
        s.expect(re.escape(self.PROMPT))
        self.prompt = self.PROMPT
        return s

    def test_redis_connection_methods_complete_without_a_command(self):
        s = self.start_with(REDIS_URL=RS.url())
        self.enter(s, 'r = redis.connect(env("REDIS_URL"))')
        self.assertEqual(self.enter(s, "r:ping()"), '"PONG"\n')
        before = processed()
        shown = self.listing(s, "r:", r"r:ping")
        self.assertRegex(shown, r"r:call\s+r:close\s+r:ping")
        self.assertEqual(processed() - before, 1, "expected the Tab presses to send Redis nothing "
                         "(only this check's own INFO counted)")
        s.send("r:pi\t")
        time.sleep(0.3)
        s.sendline("()")
        s.expect(r'"PONG"')
        s.expect(re.escape(self.PROMPT))
        self.quit(s)
        self.assertEqual(self.evals()[-1]["code"], "r:ping()", "expected r:pi completed to r:ping")

    def test_sql_connection_methods_and_help(self):
        s = self.start_with(PG_URL=PG.url())
        self.enter(s, 'db = sql.connect(env("PG_URL"))')
        self.assertTrue(self.enter(s, 'db:query("select 1 as n")[1].n').endswith("\n1\n"))
        shown = self.listing(s, "db:", r"db:tx")
        self.assertRegex(shown, r"db:close\s+db:each\s+db:exec\s+db:query\s+db:tx")
        out = self.enter(s, "help(db.query)")
        self.assertTrue(out.startswith("db:query(sql, ...) -> rows\n"), out)
        self.assertIn("### PostgreSQL: `sql.connect(url, opts)` -> `db`\n", out)
        self.quit(s)
