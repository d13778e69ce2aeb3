"""Structured errors against real servers: a runbook branches on err.kind
(refused, timeout, server, auth, failed, usage), each error object names
its primitive and the runbook's own line, and tostring(err) is the text
the operator saw before errors were objects."""
import unittest

from harness import RunbookTestCase, LUA_EMIT, emitted
from servers.postgres import PostgresServer
from servers.redis import RedisServer, free_port

PRELUDE = """runbook { name = "errors-test" }
""" + LUA_EMIT + """
-- What the runbook does on each kind of failure: the branch it took.
local function branch(f)
  local ok, err = pcall(f)
  if ok then return emit("branch", "ok") end
  emit("kind", err.kind)
  emit("primitive", err.primitive)
  emit("where", err.where)
  emit("text", tostring(err))
  emit("message", err.message)
  if err.kind == "refused" then emit("branch", "start the server")
  elseif err.kind == "timeout" then emit("branch", "wait longer")
  elseif err.kind == "server" then emit("branch", "fix the command")
  else emit("branch", "other: " .. tostring(err.kind)) end
end
"""


class KindTestCase(RunbookTestCase):
    def runbook(self, steps):
        path = self.write("rb.lua", PRELUDE + steps)
        p = self.run_rb("run", "--yes", "--transcript", self.path("t.jsonl"), path)
        self.assertExit(p, 0)
        return path, emitted(p.stdout)

    def line_of(self, path, marker):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if marker in line:
                    return n
        self.fail(f"no {marker!r} in {path}")


class Redis(KindTestCase):
    @classmethod
    def setUpClass(cls):
        cls.rs = RedisServer()

    @classmethod
    def tearDownClass(cls):
        cls.rs.stop()

    def test_refused_and_timeout_take_their_own_branch(self):
        port = free_port()
        path, out = self.runbook(f"""
step("refused", function()
  branch(function() redis.connect("redis://127.0.0.1:{port}") end)   -- @refused
end)
step("timeout", function()
  local r = redis.connect("{self.rs.url()}")
  branch(function() r:call {{ "BLPOP", "never", 5, timeout = 0.3 }} end)   -- @timeout
end)
step("error reply", function()
  local r = redis.connect("{self.rs.url()}")
  r:call("SET", "s", "text")
  branch(function() r:call("INCR", "s") end)   -- @server
end)
""")
        self.assertEqual(out["branch"], ["start the server", "wait longer", "fix the command"])
        self.assertEqual(out["kind"], ["refused", "timeout", "server"])
        self.assertEqual(out["primitive"], ["redis.connect", "redis.call", "redis.call"])
        lines = [self.line_of(path, m) for m in ("@refused", "@timeout", "@server")]
        # short_src: the path as given, cut to Lua's LUA_IDSIZE from the left
        wheres = [w.rsplit(":", 1) for w in out["where"]]
        self.assertEqual([int(n) for _, n in wheres], lines)
        self.assertTrue(all(path.endswith(f.lstrip(".")) for f, _ in wheres), out["where"])
        # the text the operator sees is "where: message", as before
        self.assertEqual(out["text"], [f"{w}: {m}" for w, m in zip(out["where"], out["message"])])
        self.assertEqual(out["message"][0], f"redis 127.0.0.1:{port}: connection refused by 127.0.0.1:{port} (is Redis "
                         f"running and listening on port {port}? check the host and port in the URL)")
        self.assertTrue(out["message"][1].startswith(f"redis 127.0.0.1:{self.rs.port}: BLPOP timed out "
                                                     "after 0.3 s"), out["message"][1])
        self.assertTrue(out["message"][2].startswith(f"redis 127.0.0.1:{self.rs.port}: INCR: ERR "),
                        out["message"][2])

    def test_a_module_beside_the_runbook_is_the_authors_code_and_its_line_is_named(self):
        port = free_port()
        self.write("lib/wrap.lua", f"""
local M = {{}}
function M.ping() return redis.connect("redis://127.0.0.1:{port}"):ping() end
M.port = {port}
return M
""")
        path, out = self.runbook("""
local wrap = require("lib.wrap")
step("via a module", function()
  branch(function() wrap.ping() end)
  local ok, err = pcall(function() exec { "sh", "-c", "exit 3" } end)
  emit("exec_kind", err.kind)
  emit("exec_code", err.code)
  ok, err = pcall(function() exec { } end)
  emit("usage_kind", err.kind)
  emit("usage_message", err.message)
  ok, err = pcall(redis.connect, "redis://127.0.0.1:" .. wrap.port)
  emit("direct", tostring(err))
end)
""")
        # a module beside the runbook is the author's code: its own line counts
        self.assertEqual(out["kind"], ["refused"])
        self.assertTrue(out["where"][0].endswith("wrap.lua:3"), out["where"])  # M.ping's line
        self.assertEqual(out["exec_kind"], ["failed"])
        self.assertEqual(out["exec_code"], [3])
        self.assertEqual(out["usage_kind"], ["usage"])
        self.assertEqual(out["usage_message"], ["exec: no command given"])
        # a primitive handed to pcall itself names no line, as Lua's own pcall does
        self.assertEqual(out["direct"], [f"redis 127.0.0.1:{port}: connection refused by 127.0.0.1:{port} (is Redis "
                                         f"running and listening on port {port}? check the host and port in the URL)"])


class Sql(KindTestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def test_refused_timeout_auth_and_server_error_take_their_own_branch(self):
        port = free_port()
        _, out = self.runbook(f"""
step("refused", function()
  branch(function() sql.connect("postgresql://u@127.0.0.1:{port}/db?sslmode=disable") end)
end)
step("timeout", function()
  local db = sql.connect("{self.pg.url()}", {{ timeout = 0.3 }})
  branch(function() db:query("select pg_sleep(5)") end)
end)
step("server", function()
  local db = sql.connect("{self.pg.url()}")
  branch(function() db:query("select * from no_such_table") end)
end)
step("auth", function()
  branch(function() sql.connect("{self.pg.url(password='wrong-password')}") end)
end)
""")
        self.assertEqual(out["kind"], ["refused", "timeout", "server", "auth"])
        self.assertTrue(all(w is not None for w in out["where"]), out["where"])
        self.assertEqual(out["branch"][:3], ["start the server", "wait longer", "fix the command"])
        self.assertEqual(out["primitive"], ["sql.connect", "sql.query", "sql.query", "sql.connect"])
        self.assertTrue(out["message"][0].startswith(f"sql: connection to 127.0.0.1:{port} refused"),
                        out["message"][0])


if __name__ == "__main__":
    unittest.main()
