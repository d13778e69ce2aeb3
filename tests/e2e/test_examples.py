"""examples/: every example passes `runbook check`, runs to the end, and
rehearses under --dry-run; the ones that need a server run against a real
one (HTTP, PostgreSQL, sshd) started here."""
import glob
import os
import shutil

from harness import SOURCE_DIR, RunbookTestCase
from servers.https import HttpsServer
from servers.postgres import PostgresServer
from servers.sshd import SSHServer

EXAMPLES = os.path.join(SOURCE_DIR, "examples")
LOCAL = {  # example -> extra arguments for a run without a terminal
    "demo.lua": ["--yes"],
    "questions.lua": ["--answers", os.path.join(EXAMPLES, "questions.answers")],
    "processes.lua": ["--yes"],
    "fan-out.lua": ["--yes"],
    "polling.lua": ["--yes"],
    "verify-undo.lua": ["--yes"],
    "secrets.lua": ["--yes", "-p", "token=tok-9f8e7d6c"],
    "dry-run.lua": ["--yes"],
}


def example(name):
    return os.path.join(EXAMPLES, name)


class Examples(RunbookTestCase):
    def run_example(self, name, *args):
        t = self.path(f"{name}.{len(os.listdir(self.tmp))}.jsonl")
        p = self.run_rb("run", example(name), "--transcript", t, *args, timeout=60)
        return p, t

    def test_every_example_passes_check(self):
        files = sorted(glob.glob(os.path.join(EXAMPLES, "*.lua")))
        self.assertGreaterEqual(len(files), 10, f"expected one example per feature, found {files}")
        for f in files:
            p = self.run_rb("check", f)
            self.assertExit(p, 0)

    def test_local_examples_run_to_the_end_and_in_a_dry_run(self):
        for name, args in LOCAL.items():
            with self.subTest(example=name):
                p, t = self.run_example(name, *args)
                self.assertExit(p, 0)
                self.assertIn("run done", p.stdout)
                self.assertExit(self.run_rb("verify", t), 0)
                d, _ = self.run_example(name, "--dry-run", *args)
                self.assertExit(d, 0)

    def test_secrets_example_never_shows_the_token(self):
        p, t = self.run_example("secrets.lua", *LOCAL["secrets.lua"])
        self.assertExit(p, 0)
        with open(t) as f:
            record = f.read()
        for text in (p.stdout, p.stderr, record):
            self.assertNotIn("tok-9f8e7d6c", text)
            self.assertNotIn("TOK-9F8E7D6C", text)
        self.assertIn("***", p.stdout)

    def test_dry_run_example_changes_nothing(self):
        marker = "/tmp/runbook-example-changed"
        if os.path.exists(marker):
            os.remove(marker)
        p, _ = self.run_example("dry-run.lua", "--dry-run", "--yes")
        self.assertExit(p, 0)
        self.assertIn("would run:", p.stdout)
        self.assertFalse(os.path.exists(marker), "a dry run touched the file")


class ServerExamples(RunbookTestCase):
    def test_http_check_against_a_real_http_server(self):
        with HttpsServer() as srv:
            p = self.run_rb("run", example("http-check.lua"), "-p", "url=" + srv.url("/json"),
                            "--transcript", self.path("h.jsonl"))
            self.assertExit(p, 0)
            self.assertRegex(p.stdout, r"info: 200 in \d+ ms")
            bad = self.run_rb("run", example("http-check.lua"), "-p", "url=" + srv.url("/status/503"),
                              "--transcript", self.path("h2.jsonl"))
            self.assertExit(bad, 1)
            self.assertIn("503", bad.stdout)

    def test_sql_report_against_a_real_postgres(self):
        pg = PostgresServer(tls=False)
        self.addCleanup(pg.stop)
        p = self.run_rb("run", example("sql-report.lua"), "-p", "db=" + pg.url(), "-p", "slow=0",
                        "--transcript", self.path("s.jsonl"))
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, r"info: active\s+\d+")
        self.assertRegex(p.stdout, r"info: \d+ slow queries")

    def test_ssh_fan_out_against_a_real_sshd(self):
        srv = SSHServer().start()
        self.addCleanup(srv.stop)
        ssh_dir = self.path(".ssh")
        os.makedirs(ssh_dir, mode=0o700)
        shutil.copy(srv.key, os.path.join(ssh_dir, "id_ed25519"))
        with open(os.path.join(ssh_dir, "known_hosts"), "w") as f:
            f.write(srv.known_hosts_line())
        hosts = ",".join([f"{srv.user}@127.0.0.1:{srv.port}"] * 3)
        p = self.run_rb("run", example("ssh-fan-out.lua"), "-p", "hosts=" + hosts,
                        "--transcript", self.path("f.jsonl"))
        self.assertExit(p, 0)
        self.assertEqual(p.stdout.count("load average"), 3, p.stdout)
