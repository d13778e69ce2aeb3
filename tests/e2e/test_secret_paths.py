"""Secrets a runbook reads itself: `secret = true` on exec, sh, ssh, http,
redis and sql, against real servers (tests/servers: the HTTPS server,
PostgreSQL 15, redis-server, OpenSSH sshd); a multi-line secret shown line
by line; env() inside a runbook; exec{env = ...}; a short secret param in
the recorded argv; secret answers and params that fail their check.

Each test plants a value, runs runbook, and asserts the value is absent
from its stdout and stderr, from the transcript file and from `runbook
report TRANSCRIPT`, and that the runbook still got it (the test runbooks
write what they got to DIR/<name>.got)."""
import json
import os
import unittest

from harness import RunbookTestCase, runbook_path
from servers.https import HttpsServer
from servers.postgres import PostgresServer
from servers.redis import RedisServer
from servers.sshd import SSHServer

LOCAL = runbook_path("secret_local.lua")
NET = runbook_path("secret_net.lua")
QUESTIONS = runbook_path("secret_questions.lua")


class SecretCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")
        self.dir = self.path("planted")
        os.makedirs(self.dir)

    def plant(self, name, value):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(value)
        return value.strip()

    def got(self, name):
        with open(os.path.join(self.dir, name + ".got")) as f:
            return f.read()

    def run_book(self, path, *args, expect=0, env=None, yes=True):
        p = self.run_rb("run", path, *(["--yes"] if yes else []), "--transcript", self.transcript,
                        "-p", f"dir={self.dir}", *args, env=env)
        if expect is not None:
            self.assertExit(p, expect)
        return p

    def report(self):
        r = self.run_rb("report", self.transcript)
        self.assertExit(r, 0)
        return r.stdout + r.stderr

    def assertHidden(self, secret, screen, stderr=""):
        """secret is nowhere: not on the screen (stdout, stderr), not in the
        transcript (raw, and JSON-escaped), not in the report."""
        places = {"stdout": screen, "stderr": stderr}
        if os.path.exists(self.transcript):
            with open(self.transcript) as f:
                places["transcript"] = f.read()
            places["report"] = self.report()
        escaped = json.dumps(secret)[1:-1]
        leaks = [where for where, text in places.items() if secret in text or escaped in text]
        self.assertEqual(leaks, [], f"{secret!r} in clear in the {', '.join(leaks)}:\n" +
                         "\n".join(f"--- {w}\n{places[w]}" for w in leaks))

    def calls(self, primitive):
        return [e for e in self.events(self.transcript)
                if e["event"] == "call" and e["primitive"] == primitive]


class LocalCalls(SecretCase):
    def test_exec_secret_true_records_no_output_and_marks_the_value(self):
        pw = self.plant("exec.txt", "Exec-Planted-41x\n")
        p = self.run_book(LOCAL, "-p", "only=exec")
        self.assertHidden(pw, p.stdout, p.stderr)
        self.assertEqual(self.got("exec"), pw + "\n", "the runbook did not get the value")
        call = self.calls("exec")[0]
        self.assertTrue(call["secret"], call)
        self.assertNotIn("stdout", call["result"], call)
        self.assertEqual(call["result"]["stdout_bytes"], len(pw) + 1, call)
        self.assertIn("trimmed: ***", p.stdout)

    def test_sh_secret_true(self):
        pw = self.plant("sh.txt", "Sh-Planted-52y\n")
        p = self.run_book(LOCAL, "-p", "only=sh")
        self.assertHidden(pw, p.stdout, p.stderr)
        self.assertEqual(self.got("sh"), pw + "\n")
        self.assertTrue(self.calls("sh")[0]["secret"])

    def test_a_failing_secret_command_does_not_show_its_output(self):
        pw = self.plant("fail.txt", "Fail-Planted-63z\n")
        p = self.run_book(LOCAL, "-p", "only=fail")
        self.assertHidden(pw, p.stdout, p.stderr)
        self.assertEqual(self.got("fail"), pw + "\n")
        self.assertRegex(p.stdout, r"exited with code 3 \(output not shown: secret = true\)")

    def test_a_multi_line_secret_is_redacted_line_by_line(self):
        lines = ["-----BEGIN TEST KEY-----", "Line-One-Planted-aa1", "Line-Two-Planted-bb2",
                 "-----END TEST KEY-----"]
        self.plant("key.pem", "\n".join(lines) + "\n")
        p = self.run_book(LOCAL, "-p", "only=multiline")
        for line in lines:
            self.assertHidden(line, p.stdout, p.stderr)
        self.assertEqual(self.got("multiline"), "\n".join(lines) + "\n")

    def test_env_in_a_runbook_is_marked(self):
        value = "Env-Planted-74w"
        p = self.run_book(LOCAL, "-p", "only=env", env={"RB_PLANTED_ENV": value})
        self.assertHidden(value, p.stdout, p.stderr)
        self.assertEqual(self.got("env"), value)
        self.assertIn("env gave ***", p.stdout)

    def test_exec_env_records_names_not_values(self):
        value = self.plant("env.txt", "Setting-Planted-85v\n")
        p = self.run_book(LOCAL, "-p", "only=exec-env")
        self.assertHidden(value, p.stdout, p.stderr)
        self.assertEqual(self.got("exec-env"), value, "the child did not get its environment")
        call = self.calls("exec")[0]
        self.assertEqual(call["args"]["env"], ["APP_SETTING", "OUT", "PGPASSWORD"], call)

    def test_a_short_secret_param_is_hidden_in_the_recorded_argv(self):
        p = self.run_book(LOCAL, "-p", "only=param", "-p", "pw=abc", "--param=pw=xyz",
                          "--param", "pw=def", "-ppw=q1")
        self.assertEqual(self.got("param"), "q1", "the last -p wins")
        start = self.events(self.transcript)[0]
        self.assertEqual(start["event"], "run.start")
        argv = start["argv"]
        for shown in ("pw=abc", "--param=pw=xyz", "pw=def", "-ppw=q1"):
            self.assertNotIn(shown, argv)
        self.assertIn("pw=***", argv)
        self.assertIn("--param=pw=***", argv)
        self.assertIn("-ppw=***", argv)
        self.assertIn("only=param", argv, "a param that is not secret is recorded as given")


class Questions(SecretCase):
    def test_a_rejected_answers_file_answer_to_a_secret_prompt_is_not_echoed(self):
        bad = "Bad-Answer-Planted-9"
        answers = self.write("answers.txt", f"[ask] API token = {bad}\n")
        p = self.run_book(QUESTIONS, "-p", "level=alpha-1", "--answers", answers, yes=False,
                          expect=1)
        self.assertHidden(bad, p.stdout, p.stderr)
        self.assertIn("is not a valid answer to \"API token\"", p.stdout)
        self.assertIn("tok%-%d+", p.stdout, "the error names the rule")

    def test_a_secret_param_outside_its_choices_is_not_echoed(self):
        # (a value under 4 characters is never hunted as a substring)
        for bad in ("Wrong-Level-Planted-7", "zq"):
            p = self.run_book(QUESTIONS, "-p", f"level={bad}", expect=2)
            self.assertHidden(bad, p.stdout, p.stderr)
            self.assertIn('param "level": its value (from -p; secret, not shown) is not one of: '
                          'alpha-1, beta-2', p.stderr)

    def test_typed_secret_answers_that_fail_are_not_echoed(self):
        s = self.pty("run", QUESTIONS, "--transcript", self.transcript, "-p", f"dir={self.dir}",
                     env={"NO_COLOR": "1"})
        s.expect(r"Value for param level \(a secret choice\): ")
        s.sendline("Typed-Level-Planted-6")
        code = s.wait()
        self.assertEqual(code, 2, s.output)
        self.assertIn('param "level"', s.output)
        self.assertHidden("Typed-Level-Planted-6", s.output)

    def test_a_typed_secret_prompt_that_fails_its_pattern_asks_again(self):
        s = self.pty("run", QUESTIONS, "--transcript", self.transcript, "-p", f"dir={self.dir}",
                     "-p", "level=beta-2", env={"NO_COLOR": "1"})
        s.expect(r"API token: ")
        s.sendline("Typed-Token-Planted-5")
        s.expect(r"the answer must match tok%-%d\+")
        s.expect(r"API token: ")
        s.sendline("tok-4242")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertEqual(self.got("token"), "tok-4242")
        self.assertHidden("Typed-Token-Planted-5", s.output)
        self.assertHidden("tok-4242", s.output)


class Http(SecretCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = HttpsServer()
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def check(self, url, *extra):
        value = self.plant("http.txt", "Http-Planted-96u")
        p = self.run_book(NET, "-p", "only=http", "-p", f"http={url}", *extra)
        self.assertHidden(value, p.stdout, p.stderr)
        self.assertEqual(self.got("http"), value, "the runbook did not get the echoed body")
        self.assertIn("expect 201: false", p.stdout)
        self.assertIn("got status 200, expected 201 (body not shown: secret = true)", p.stdout)
        for call in self.calls("http"):
            self.assertTrue(call["secret"], call)

    def test_http_secret_true(self):
        self.check(self.srv.url("/echo"))

    def test_https_secret_true(self):
        self.check(self.srv.url("/echo", tls=True), "-p", f"cacert={self.srv.ca}")


class Redis(SecretCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = RedisServer(password="Redis-Url-Pa55")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_redis_secret_true(self):
        value, field = "Redis-Planted-17t", "Redis-Field-Planted-28s"
        self.srv.command("SET", "vault:db", value)
        self.srv.command("HSET", "vault:h", "api", field)
        p = self.run_book(NET, "-p", "only=redis", "-p", f"redis={self.srv.url()}")
        for s in (value, field, "Redis-Url-Pa55"):
            self.assertHidden(s, p.stdout, p.stderr)
        self.assertEqual(self.got("redis"), value)
        self.assertEqual(self.got("redis-hash"), field)
        calls = self.calls("redis.call")
        self.assertEqual(len(calls), 2, calls)
        self.assertEqual(calls[0]["result"], {"type": "string", "bytes": len(value)})
        self.assertEqual(calls[1]["result"], {"type": "array", "count": 2})
        self.assertTrue(all(c["secret"] for c in calls))


class Sql(SecretCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PostgresServer()
        cls.pg.psql("create table creds (name text, pw text, note text);"
                    "insert into creds values ('api', 'Sql-Planted-39r', 'Note-Planted-40q');"
                    "create function leak_notice() returns void language plpgsql as $$"
                    " begin raise notice 'pw is %', (select pw from creds limit 1); end $$;"
                    "alter table creds owner to runbook;")

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def test_sql_secret_true(self):
        p = self.run_book(NET, "-p", "only=sql", "-p", f"db={self.pg.url()}")
        for s in ("Sql-Planted-39r", "Note-Planted-40q"):
            self.assertHidden(s, p.stdout, p.stderr)
        self.assertEqual(self.got("sql"), "Sql-Planted-39r")
        self.assertIn("exec gave 0", p.stdout)
        calls = self.calls("sql.query") + self.calls("sql.exec")
        self.assertEqual(len(calls), 3, calls)
        for c in calls:
            self.assertTrue(c["secret"], c)
            self.assertNotIn("notices", c["result"], c)
        self.assertEqual(calls[0]["result"]["rows"], 1)


class Ssh(SecretCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = SSHServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_ssh_secret_true(self):
        value = self.plant("ssh.txt", "Ssh-Planted-51p\n")
        fan = self.plant("ssh-fan.txt", "Ssh-Fan-Planted-62o\n")
        known = self.write("known_hosts", self.srv.known_hosts_line())
        p = self.run_book(NET, "-p", "only=ssh", "-p", f"ssh_port={self.srv.port}",
                          "-p", f"ssh_key={self.srv.key}", "-p", f"known_hosts={known}")
        for s in (value, fan):
            self.assertHidden(s, p.stdout, p.stderr)
        self.assertEqual(self.got("ssh"), value + "\n")
        self.assertEqual(self.got("ssh-fan"), fan + "\n")
        self.assertIn("exited with code 3 (output not shown: secret = true)", p.stdout)
        self.assertIn("exited with code 4 (output not shown: secret = true)", p.stdout)
        execs = [c for c in self.calls("ssh") if c["args"]["op"] == "exec"]
        self.assertEqual(len(execs), 3, execs)
        for c in execs:
            self.assertTrue(c["secret"], c)
            self.assertNotIn("stdout", c.get("result", {}), c)


if __name__ == "__main__":
    unittest.main()
