"""redis.connect / r:call / r:ping against a real redis-server on loopback:
reply mapping, error replies, AUTH (requirepass and ACL users), SELECT,
each connection failure with its own message, timeouts, Ctrl-C, dry run
classified from COMMAND INFO, redaction, parallel use and reuse."""
import json
import re
import threading
import time
import unittest

from harness import RunbookTestCase, LUA_EMIT, RETRY_SKIP_ABORT, emitted
from servers.redis import (RedisServer, USER, USER_PASSWORD, free_port,
                           full_listener, silent_listener)

PASSWORD = "Redis-S3cret-pw-71"
RSA = RETRY_SKIP_ABORT

PRELUDE = """runbook { name = "redis-test" }
""" + LUA_EMIT


class RedisTestCase(RunbookTestCase):
    @classmethod
    def setUpClass(cls):
        cls.rs = RedisServer()
        cls.secure = RedisServer(password=PASSWORD)

    @classmethod
    def tearDownClass(cls):
        cls.rs.stop()
        cls.secure.stop()

    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")
        self.rs.command("FLUSHALL")
        self.secure.command("FLUSHALL")

    def runbook(self, steps, *args, expect=0):
        """Run a runbook of the PRELUDE plus steps (Lua source); return the
        process and the values it emitted (emit(k, v) -> {k: [v...]})."""
        path = self.write("rb.lua", PRELUDE + steps)
        p = self.run_rb("run", "--yes", "--transcript", self.transcript, path, *args)
        if expect is not None:
            self.assertExit(p, expect)
        return p, emitted(p.stdout)

    def transcript_text(self):
        with open(self.transcript) as f:
            return f.read()

    def calls(self, primitive="redis.call"):
        return [e for e in self.events(self.transcript)
                if e["event"] == "call" and e["primitive"] == primitive]


class Replies(RedisTestCase):
    def test_every_reply_type_maps_to_lua(self):
        p, out = self.runbook(f"""
step("types", function()
  local r = redis.connect("{self.rs.url()}")
  emit("status", r:call("SET", "s", "v"))
  emit("ping", r:ping())
  emit("string", r:call("GET", "s"))
  emit("binary", #r:call("ECHO", "a\\0b"))
  emit("integer", tostring(r:call("INCRBY", "n", 4611686018427387904)))
  emit("negative", r:call("DECRBY", "m", 5))
  emit("integer_type", math.type(r:call("INCR", "i")))
  emit("nil_is_nil", r:call("GET", "missing") == nil)
  local a = r:call("MGET", "s", "missing", "s")
  emit("array", a)
  emit("array_len", #a)
  emit("empty", #r:call("LRANGE", "nolist", 0, -1))
  r:call("XADD", "x", "1-1", "f", "v")
  emit("nested", r:call("XRANGE", "x", "-", "+"))
  r:call("MULTI"); r:call("INCR", "i"); r:call("LPOP", "s")
  emit("exec", r:call("EXEC"))
  emit("float_arg", r:call("EXPIRE", "s", 10.0))
end)
""")
        self.assertEqual(out["status"], ["OK"])
        self.assertEqual(out["ping"], ["PONG"])
        self.assertEqual(out["string"], ["v"])
        self.assertEqual(out["binary"], [3], "a string with a NUL byte must keep its length")
        self.assertEqual(out["integer"], ["4611686018427387904"])
        self.assertEqual(out["negative"], [-5])
        self.assertEqual(out["integer_type"], ["integer"])
        self.assertEqual(out["nil_is_nil"], [True])
        self.assertEqual(out["array"], [["v", False, "v"]],
                         "a nil inside an array must be false, keeping the length")
        self.assertEqual(out["array_len"], [3])
        self.assertEqual(out["empty"], [0])
        self.assertEqual(out["nested"], [[["1-1", ["f", "v"]]]])
        exec_reply = out["exec"][0]
        self.assertEqual(exec_reply[0], 2)
        self.assertRegex(exec_reply[1]["err"], r"^WRONGTYPE",
                         "an error inside EXEC's array must be {err = text}")
        self.assertEqual(out["float_arg"], [1], "EXPIRE s 10.0 must be sent as 10")

    def test_numbers_are_sent_as_strings_and_a_bad_argument_is_named(self):
        p, out = self.runbook(f"""
step("args", function()
  local r = redis.connect("{self.rs.url()}")
  local sent = {{ 1.5, 0.1, 1 / 3, 2 ^ 53, -0.0, -7, 1e300 }}
  for i, v in ipairs(sent) do r:call("SET", "n" .. i, v) end
  r:call{{ "SET", "t", 2.25, timeout = 5 }}
  local back = {{}}
  for i = 1, #sent do back[i] = r:call("GET", "n" .. i) end
  emit("back", back)
  emit("table_form", r:call("GET", "t"))
  try(r.call, r, "SET", "k", true)
  try(r.call, r, {{ "SET", "k", {{}} }})
  try(r.call, r, "")
  try(r.call, r, {{}})
  try(r.call, r, {{ 5, "k" }})
  try(r.call, r, 42)
  try(r.call, r, {{ "GET", "k", bogus = 1 }})
  try(r.call, r, {{ "GET", "k", timeout = -1 }})
  try(r.call, r, {{ "GET", "k", secret = "yes" }})
  r:call("SET", "k", true)   -- the failing line
end)
""", expect=1)
        self.assertEqual(out["back"], [["1.5", "0.1", "0.33333333333333331", "9007199254740992",
                                        "0", "-7", "1e+300"]],
                         "a float must be sent in the fewest digits that read back the same")
        self.assertEqual(out["table_form"], ["2.25"])
        self.assertEqual(out["ok"], [False] * 9)
        self.assertEqual(out["err"], [
            "redis SET: argument 3 is a boolean; pass strings or numbers",
            "redis SET: argument 3 is a table; pass strings or numbers",
            "redis: the command name must be a non-empty string",
            "redis: the command name must be a non-empty string",
            "redis: the command name must be a non-empty string",
            "redis: r:call(command, args...) or r:call{command, args..., timeout=}",
            'redis: unknown option "bogus" (the table form\'s options are timeout, stand_in and secret)',
            "redis: timeout must be a number of seconds >= 0",
            "redis: secret must be true or false",
        ])
        with open(self.path("rb.lua")) as f:
            line = [n for n, text in enumerate(f, 1) if "the failing line" in text][0]
        self.assertRegex(p.stdout, rf"rb\.lua:{line}: redis SET: argument 3 is a boolean",
                         "a bad argument must be named at the runbook line")
        self.assertEqual(len([c for c in self.calls() if c["args"]["command"][0] == "SET"]), 8,
                         "a refused call is not sent, so not recorded")

    def test_large_values_and_long_arrays_round_trip(self):
        p, out = self.runbook(f"""
step("big", function()
  local r = redis.connect("{self.rs.url()}")
  local big = string.rep("0123456789", 500000)
  r:call("SET", "big", big)
  emit("same", r:call("GET", "big") == big)
  local items = {{}}
  for i = 1, 20000 do items[i] = i end
  emit("pushed", r:call("RPUSH", "list", table.unpack(items)))
  local back = r:call("LRANGE", "list", 0, -1)
  emit("count", #back)
  emit("last", back[20000])
end)
""")
        self.assertEqual(out["same"], [True], "a 5 MB value must come back unchanged")
        self.assertEqual(out["pushed"], [20000])
        self.assertEqual((out["count"], out["last"]), ([20000], ["20000"]))
        set_call = [c for c in self.calls() if c["args"]["command"][0] == "SET"][0]
        self.assertLess(len(set_call["args"]["command"][2]), 1100,
                        "a huge argument must be cut in the record")
        self.assertIn("[5000000 bytes]", set_call["args"]["command"][2])

    def test_error_reply_raises_with_the_server_text_at_the_runbook_line(self):
        p, out = self.runbook(f"""
step("bad", function()
  local r = redis.connect("{self.rs.url()}")
  r:call("SET", "s", "text")
  try(r.call, r, "INCR", "s")
  r:call("INCR", "s")   -- the failing line
end)
""", expect=1)
        with open(self.path("rb.lua")) as f:
            line = [n for n, text in enumerate(f, 1) if "the failing line" in text][0]
        self.assertEqual(out["ok"], [False])
        self.assertEqual(out["err"][0],
                         f"redis 127.0.0.1:{self.rs.port}: INCR: ERR value is not an integer or out of range")
        self.assertRegex(p.stdout, rf"rb\.lua:{line}: redis 127\.0\.0\.1:\d+: INCR: ERR value is not an integer",
                         "the step's error must name the runbook line")
        err = [c for c in self.calls() if c["outcome"] == "error"]
        self.assertEqual(len(err), 2, "each failed call must be recorded with outcome error")
        self.assertIn("ERR value is not an integer", err[0]["error"])


class Authentication(RedisTestCase):
    def test_password_in_the_url_authenticates_and_is_never_shown(self):
        url = self.secure.url(db=3)
        p, out = self.runbook(f"""
step("auth", function()
  local r = redis.connect("{url}")
  r:call("SET", "k", "v")
  emit("whoami", r:call("ACL", "WHOAMI"))
  log.info("connected to %s", "{url}")
  error("failing on purpose, url {url}")
end)
""", expect=1)
        self.assertEqual(out["whoami"], ["default"])
        self.assertEqual(self.secure.command("GET", "k", db=3), "v")
        text = self.transcript_text()
        for where, s in (("stdout", p.stdout), ("stderr", p.stderr), ("transcript", text)):
            self.assertNotIn(PASSWORD, s, f"the password appeared in {where}")
        self.assertIn(f"redis://:***@127.0.0.1:{self.secure.port}/3", p.stdout)
        connect = self.calls("redis.connect")[0]
        self.assertEqual(connect["args"]["url"], f"redis://:***@127.0.0.1:{self.secure.port}/3")

    def test_acl_user_and_password_send_auth_user_password(self):
        p, out = self.runbook(f"""
step("acl", function()
  emit("whoami", redis.connect("{self.secure.url(user=USER)}"):call("ACL", "WHOAMI"))
end)
""")
        self.assertEqual(out["whoami"], [USER])
        self.assertNotIn(USER_PASSWORD, self.transcript_text())

    def test_wrong_password_has_its_own_message(self):
        p, out = self.runbook(f"""
step("wrong", function()
  try(redis.connect, "redis://:not-the-Pa55word@127.0.0.1:{self.secure.port}")
end)
""")
        self.assertEqual(out["ok"], [False])
        self.assertRegex(out["err"][0],
                         rf"^redis 127\.0\.0\.1:{self.secure.port}: authentication failed: WRONGPASS .* "
                         r"\(check the password in the URL\)$")
        self.assertNotIn("not-the-Pa55word", p.stdout + self.transcript_text())

    def test_missing_password_says_the_server_requires_one(self):
        p, out = self.runbook(f"""
step("none", function()
  local r = redis.connect("{self.secure.url(password=False)}")
  try(r.call, r, "GET", "k")
end)
""")
        self.assertEqual(out["err"][0], f"redis 127.0.0.1:{self.secure.port}: GET: NOAUTH "
                         "Authentication required. (the server requires a password: put "
                         ":PASSWORD@ before the host in the URL)")

    def test_auth_command_and_secret_values_are_redacted(self):
        token = "tok-Very-Secret-4471"
        p, out = self.runbook(f"""
step("secrets", function()
  local r = redis.connect("{self.secure.url(password=False)}")
  emit("auth", r:call("AUTH", "{PASSWORD}"))
  emit("set", r:call("SET", "token", secret("{token}")))
  emit("len", #r:call("GET", "token"))
end)
""")
        self.assertEqual(out["auth"], ["OK"])
        self.assertEqual(out["len"], [len(token)])
        text = self.transcript_text()
        for s in (PASSWORD, token):
            self.assertNotIn(s, text, f"{s} reached the transcript")
            self.assertNotIn(s, p.stdout)
        commands = [c["args"]["command"] for c in self.calls()]
        self.assertIn(["AUTH", "***"], commands)
        self.assertIn(["SET", "token", "***"], commands)


class Databases(RedisTestCase):
    def test_db_in_the_url_selects_it(self):
        self.runbook(f"""
step("db", function()
  redis.connect("{self.rs.url(db=5)}"):call("SET", "in5", "yes")
end)
""")
        self.assertEqual(self.rs.command("GET", "in5", db=5), "yes")
        self.assertIsNone(self.rs.command("GET", "in5"), "the key must not be in db 0")

    def test_db_out_of_range_has_its_own_message(self):
        p, out = self.runbook(f"""
step("db", function() try(redis.connect, "{self.rs.url(db=99)}") end)
""")
        self.assertRegex(out["err"][0], rf"^redis 127\.0\.0\.1:{self.rs.port}/99: SELECT 99 failed: "
                         r"ERR DB index is out of range \(check the /db in the URL")

    def test_bad_url_is_refused_before_connecting(self):
        p, out = self.runbook("""
step("url", function()
  try(redis.connect, "http://127.0.0.1:6379")
  try(redis.connect, "redis://127.0.0.1:6379/zero")
  try(redis.connect, "redis://127.0.0.1:6379?retries=3")
end)
""")
        self.assertEqual(out["ok"], [False, False, False])
        self.assertIn("not a redis:// URL", out["err"][0])
        self.assertIn("the path must be a database number", out["err"][1])
        self.assertIn('unknown or bad option "retries=3"', out["err"][2])
        self.assertEqual(self.calls("redis.connect"), [], "a bad URL must not be a call")


class ConnectionErrors(RedisTestCase):
    def timed(self, steps):
        t0 = time.monotonic()
        p, out = self.runbook(steps)
        return p, out, time.monotonic() - t0

    def test_connection_refused_has_its_own_message(self):
        port = free_port()
        p, out, took = self.timed(f"""
step("refused", function() try(redis.connect, "redis://127.0.0.1:{port}") end)
""")
        self.assertEqual(out["err"], [f"redis 127.0.0.1:{port}: connection refused by 127.0.0.1:{port} "
                                      f"(is Redis running and listening on port {port}? check the host "
                                      "and port in the URL)"])
        self.assertLess(took, 3.0)
        self.assertEqual(self.calls("redis.connect")[0]["outcome"], "error")

    def test_unresolvable_name_has_its_own_message(self):
        p, out = self.runbook("""
step("dns", function() try(redis.connect, "redis://nonexistent.invalid:6379") end)
""")
        self.assertRegex(out["err"][0], r"^redis nonexistent\.invalid:6379: cannot resolve host name "
                         r"'nonexistent\.invalid': .+ \(check the host in the URL and DNS\)$")

    def test_server_that_never_answers_times_out_the_command(self):
        with silent_listener() as sl:
            p, out, took = self.timed(f"""
step("silent", function()
  local r = redis.connect("redis://127.0.0.1:{sl.port}?timeout=0.5")
  local t0 = time.clock()
  try(r.ping, r)
  emit("took", time.clock() - t0)
end)
""")
        self.assertEqual(out["err"], [f"redis 127.0.0.1:{sl.port}: PING timed out after 0.5 s waiting "
                                      "for the reply (the server accepted the connection but did not "
                                      "answer: is it stuck or overloaded, or not a Redis server? "
                                      "timeout= raises the limit)"])
        self.assertGreaterEqual(out["took"][0], 0.45)
        self.assertLess(out["took"][0], 2.0)

    def test_connect_that_never_completes_times_out(self):
        with full_listener() as fl:
            p, out, took = self.timed(f"""
step("stalled", function()
  try(redis.connect, "redis://127.0.0.1:{fl.port}", {{ connect_timeout = 0.5 }})
end)
""")
        self.assertEqual(out["err"], [f"redis 127.0.0.1:{fl.port}: connect timed out after 0.5 s (is "
                                      "the host up, and the port not dropped by a firewall? check the "
                                      "host and port in the URL; connect_timeout= raises the limit)"])
        self.assertLess(took, 3.0)

    def test_connection_closed_while_idle_is_replaced_before_the_next_call(self):
        p, out = self.runbook(f"""
step("idle", function()
  local r = redis.connect("{self.rs.url()}")
  local id = r:call("CLIENT", "ID")
  redis.connect("{self.rs.url(db=1)}"):call("CLIENT", "KILL", "ID", id)
  emit("ping", r:ping())
  emit("new_id", r:call("CLIENT", "ID") ~= id)
end)
""")
        self.assertEqual(out["ping"], ["PONG"], "a connection the server closed while idle must be "
                         "replaced, not fail the next call")
        self.assertEqual(out["new_id"], [True])

    def test_connection_closed_during_a_long_computation_is_replaced_too(self):
        # No loop round between the two calls (the step only computes), so
        # the liveness check is owed to the time since the last reply
        # (lib_redis.c's FRESH); the close comes from outside the run.
        def kill_victim():
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                for line in self.rs.command("CLIENT", "LIST").splitlines():
                    if " name=victim " in f" {line} ":
                        self.rs.command("CLIENT", "KILL", "ID", re.search(r"\bid=(\d+)", line)[1])
                        return
                time.sleep(0.02)
        killer = threading.Thread(target=kill_victim)
        killer.start()
        try:
            p, out = self.runbook(f"""
step("busy", function()
  local r = redis.connect("{self.rs.url()}")
  r:call("CLIENT", "SETNAME", "victim")
  local id = r:call("CLIENT", "ID")
  local t0 = time.clock()
  while time.clock() - t0 < 1.5 do end
  emit("ping", r:ping())
  emit("new_id", r:call("CLIENT", "ID") ~= id)
end)
""")
        finally:
            killer.join()
        self.assertEqual(out["ping"], ["PONG"])
        self.assertEqual(out["new_id"], [True], "the server must have closed the first connection")

    def test_connection_closed_during_a_call_fails_it_and_the_next_call_reconnects(self):
        p, out = self.runbook(f"""
step("lost", function()
  local r = redis.connect("{self.rs.url()}")
  local id = r:call("CLIENT", "ID")
  parallel({{ "block", "kill" }}, function(what)
    if what == "block" then
      try(r.call, r, "BLPOP", "never", 5)
    else
      wait(0.2)
      redis.connect("{self.rs.url(db=1)}"):call("CLIENT", "KILL", "ID", id)
    end
  end)
  emit("again", r:ping())
  emit("new_id", r:call("CLIENT", "ID") ~= id)
end)
""")
        self.assertRegex(out["err"][0], rf"^redis 127\.0\.0\.1:{self.rs.port}: BLPOP: the server closed "
                         r"the connection \(check the server's log")
        self.assertEqual(out["again"], ["PONG"])
        self.assertEqual(out["new_id"], [True])


class Interrupt(RedisTestCase):
    def test_ctrl_c_interrupts_a_blocking_call_and_closes_its_connection(self):
        path = self.write("ctrlc.lua", f"""runbook {{ name = "ctrlc" }}
step("block", function()
  local r = redis.connect("{self.rs.url()}")
  print("waiting in BLPOP")
  r:call("BLPOP", "never", 30)
end)
""")
        s = self.pty("run", "--transcript", self.transcript, path, env={"NO_COLOR": "1"})
        s.expect("waiting in BLPOP")
        deadline = time.monotonic() + 5
        while self.blocked_clients() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.blocked_clients(), 1, "the BLPOP never reached the server")
        t0 = time.monotonic()
        s.ctrl_c()
        s.expect(rf"redis 127\.0\.0\.1:{self.rs.port}: BLPOP interrupted \(Ctrl-C\)")
        s.expect(RSA)
        self.assertLess(time.monotonic() - t0, 3.0, "Ctrl-C took too long to interrupt BLPOP")
        deadline = time.monotonic() + 3
        while self.blocked_clients() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.blocked_clients(), 0, "the interrupted connection must be closed")
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        call = self.calls()[-1]
        self.assertEqual((call["outcome"], call["args"]["command"]), ("error", ["BLPOP", "never", "30"]))

    def test_step_timeout_stops_a_blocking_call_and_closes_its_connection(self):
        answers = self.write("answers.txt", "!error = s\n")
        t0 = time.monotonic()
        p, out = self.runbook(f"""
step("limited", {{ timeout = 0.5 }}, function()
  redis.connect("{self.rs.url()}"):call("BLPOP", "never", 5)
end)
step("after", function()
  local info = redis.connect("{self.rs.url(db=1)}"):call("INFO", "clients")
  emit("blocked", tonumber(info:match("blocked_clients:(%d+)")))
end)
""", "--answers", answers)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertRegex(p.stdout, rf"redis 127\.0\.0\.1:{self.rs.port}: BLPOP stopped: "
                         r"the step's timeout ran out")
        self.assertEqual(out["blocked"], [0], "the stopped call's connection must be closed")

    def blocked_clients(self):
        info = self.rs.command("INFO", "clients")
        return int(re.search(r"blocked_clients:(\d+)", info).group(1))


class DryRun(RedisTestCase):
    def test_writes_are_simulated_reads_run_as_the_server_flags_say(self):
        self.rs.command("SET", "present", "real-value")
        self.rs.command("RPUSH", "list", "a", "b")
        self.rs.command("XADD", "stream", "1-1", "f", "v")
        self.rs.command("CONFIG", "RESETSTAT")
        p, out = self.runbook(f"""
step("rehearse", function()
  local r = redis.connect("{self.rs.url()}")
  emit("set", r:call("SET", "new", "v"))
  emit("set_again", r:call("SET", "new2", "v"))
  emit("get", r:call("GET", "present"))
  emit("getex", r:call("GETEX", "present", "EX", 100))
  emit("del", r:call("DEL", "present"))
  emit("encoding", r:call("OBJECT", "ENCODING", "list"))
  emit("xlen", r:call("XLEN", "stream"))
  emit("get_after", r:call("GET", "present"))
  emit("stand_in", r:call{{ "LMPOP", 1, "list", "LEFT", stand_in = {{ "list", {{ "a" }} }} }})
end)
""", "--dry-run")
        self.assertEqual(out["set"], ["OK"])
        self.assertEqual(out["get"], ["real-value"], "GET must run for real in a dry run")
        self.assertEqual(out["del"], [0], "a simulated DEL stands in with 0")
        self.assertIn(out["encoding"][0], ("quicklist", "listpack"), "OBJECT ENCODING (readonly) must run")
        self.assertEqual(out["xlen"], [1], "XLEN (readonly) must run")
        self.assertEqual(out["get_after"], ["real-value"])
        self.assertEqual(out["stand_in"], [["list", ["a"]]])
        self.assertIsNone(self.rs.command("GET", "new"), "a simulated SET must not reach the server")
        self.assertEqual(self.rs.command("TTL", "present"), -1, "a simulated GETEX must not set a TTL")
        self.assertEqual(self.rs.command("LLEN", "list"), 2, "a simulated LMPOP must not pop")
        self.assertRegex(p.stdout, rf"would run: redis SET new v \(127\.0\.0\.1:{self.rs.port}\)")
        self.assertNotRegex(p.stdout, r"would run: redis (GET|XLEN|OBJECT) ")
        by_cmd = {tuple(c["args"]["command"][:2]): c for c in self.calls()}
        getex = by_cmd[("GETEX", "present")]
        self.assertEqual((getex["outcome"], getex["args"]["class"]), ("simulated", "write"))
        self.assertIn("write", getex["args"]["flags"], "the record must carry the server's flags")
        enc = by_cmd[("OBJECT", "ENCODING")]
        self.assertEqual((enc["outcome"], enc["args"]["command_info"], enc["args"]["flags"]),
                         ("ok", "object|encoding", ["readonly"]))
        # The classification came from the server: one COMMAND INFO per
        # command name (set, get, getex, del, object, xlen, lmpop).
        stats = self.rs.command("INFO", "commandstats")
        m = re.search(r"cmdstat_command\|info:calls=(\d+)", stats)
        self.assertIsNotNone(m, f"COMMAND INFO was never called:\n{stats}")
        self.assertEqual(int(m.group(1)), 7)


    def test_when_the_server_refuses_command_info_everything_is_simulated(self):
        self.secure.command("ACL", "SETUSER", "nocmd", "on", ">nocmd-Pa55", "~*", "+@all", "-command")
        self.addCleanup(self.secure.command, "ACL", "DELUSER", "nocmd")
        self.secure.command("SET", "present", "v")
        p, out = self.runbook(f"""
step("rehearse", function()
  local r = redis.connect("redis://nocmd:nocmd-Pa55@127.0.0.1:{self.secure.port}")
  emit("get", r:call("GET", "present"))
  emit("del", r:call("DEL", "present"))
end)
""", "--dry-run")
        self.assertEqual(out["get"], ["OK"], "an unclassified read is simulated too (the safe side)")
        self.assertEqual(self.secure.command("GET", "present"), "v")
        calls = self.calls()
        self.assertEqual([(c["outcome"], c["args"]["class"]) for c in calls],
                         [("simulated", "unclassified")] * 2)
        self.assertRegex(calls[0]["args"]["why"], r"^COMMAND INFO failed: NOPERM")


class Concurrency(RedisTestCase):
    def test_parallel_branches_on_several_connections_overlap(self):
        urls = [self.rs.url(db=d) for d in (1, 2, 3, 4)]
        p, out = self.runbook(f"""
step("fan-out", function()
  local t0 = time.clock()
  local res = parallel({json.dumps(urls).replace("[", "{").replace("]", "}")}, function(url, i)
    local r = redis.connect(url)
    r:call("SET", "me", i)
    r:call("BLPOP", "empty", 0.6)
    return r:call("GET", "me")
  end)
  emit("results", res)
  emit("took", time.clock() - t0)
end)
""")
        self.assertEqual(out["results"], [["1", "2", "3", "4"]])
        self.assertLess(out["took"][0], 1.8, "four 0.6 s BLPOPs must wait together, not in turn")
        for d in (1, 2, 3, 4):
            self.assertEqual(self.rs.command("GET", "me", db=d), str(d))

    def test_same_url_returns_the_same_connection(self):
        p, out = self.runbook(f"""
local ids = {{}}
step("one", function()
  local r = redis.connect("{self.rs.url()}")
  emit("same_object", rawequal(r, redis.connect("{self.rs.url()}")))
  ids[1] = r:call("CLIENT", "ID")
  ids[2] = r:call("CLIENT", "ID")
end)
step("two", function()
  ids[3] = redis.connect("{self.rs.url()}"):call("CLIENT", "ID")
  emit("ids", ids)
end)
""")
        self.assertEqual(out["same_object"], [True])
        ids = out["ids"][0]
        self.assertEqual(len(set(ids)), 1, f"CLIENT ID changed across calls: {ids}")
        self.assertEqual(len(self.calls("redis.connect")), 1, "the second connect must reuse the first")

    def test_one_connection_shared_by_parallel_branches(self):
        p, out = self.runbook(f"""
step("shared", function()
  local r = redis.connect("{self.rs.url()}")
  local first = r:call("CLIENT", "ID")
  local t0 = time.clock()
  local res = parallel({{ "a", "b", "c" }}, function(k)
    r:call("SET", k, k .. "!")
    r:call("BLPOP", "empty", 0.5)
    return r:call("GET", k)
  end)
  emit("took", time.clock() - t0)
  emit("results", res)
  emit("same_after", r:call("CLIENT", "ID") == first)
end)
""")
        self.assertEqual(out["results"], [["a!", "b!", "c!"]])
        self.assertLess(out["took"][0], 1.3, "branches sharing a connection object must not queue")
        self.assertEqual(out["same_after"], [True],
                         "sequential calls must go back to the first connection")


if __name__ == "__main__":
    unittest.main()
