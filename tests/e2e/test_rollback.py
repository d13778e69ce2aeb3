"""rollback runbook: a real git release directory (and a releases/ + current
symlink layout), a small service the test starts that reports the VERSION
of the release it was started from at /health, and a restart command from
the target config that really restarts it.
"""
import json
import os
import socket
import subprocess
import urllib.request

from harness import SOURCE_DIR, RunbookTestCase

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"

# The service: reads VERSION once at start (so only a restart shows a
# rollback), writes its pid file once it listens, answers /health.
SERVICE = r'''
import http.server, json, os, sys
port, version_file, pidfile = int(sys.argv[1]), sys.argv[2], sys.argv[3]
version = open(version_file).read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = json.dumps({"status": "ok", "version": version}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.HTTPServer(("127.0.0.1", port), H)
with open(pidfile + ".tmp", "w") as f: f.write(str(os.getpid()))
os.rename(pidfile + ".tmp", pidfile)
srv.serve_forever()
'''

# restart SERVICE: stop the old process, start a new one in its own session
# (the runbook's exec kills its child's process group when it ends), and
# return once it listens, as `systemctl restart` does.
RESTART = r'''#!/bin/sh
set -u
D=%(dir)s
# a dead process stays a zombie until its new parent reaps it: not alive
alive() { [ -r "/proc/$1/status" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
echo "$1" >> "$D/restarts.log"
if [ -f "$D/svc.pid" ]; then
  pid=$(cat "$D/svc.pid"); rm -f "$D/svc.pid"
  kill "$pid" 2>/dev/null
  i=0; while alive "$pid" && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
setsid %(python)s "$D/service.py" %(port)d "%(version)s" "$D/svc.pid" </dev/null >>"$D/svc.log" 2>&1 &
i=0; while [ ! -f "$D/svc.pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
[ -f "$D/svc.pid" ] || { echo "service did not start" >&2; cat "$D/svc.log" >&2; exit 1; }
echo "restarted $1"
'''


def read(path):
    with open(path) as f:
        return f.read()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RollbackCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            self.env.pop(var, None)
        self.env.update({"GIT_AUTHOR_NAME": "Dana Deployer", "GIT_AUTHOR_EMAIL": "dana@example.com",
                         "GIT_COMMITTER_NAME": "Dana Deployer",
                         "GIT_COMMITTER_EMAIL": "dana@example.com",
                         "GIT_CONFIG_NOSYSTEM": "1"})
        self.port = free_port()
        self.svc = self.path("svc")
        os.makedirs(self.svc)
        self.write("svc/service.py", SERVICE)

    def git(self, *args, cwd=None):
        p = subprocess.run(["git", *args], cwd=cwd or self.rel, env=self.env, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 0, f"git {args}: {p.stderr}")
        return p.stdout.strip()

    def make_git_releases(self):
        """A release directory with three deployments: 1.0.0, 1.1.0, 1.2.0."""
        self.rel = self.path("app")
        os.makedirs(self.rel)
        self.git("init", "-q", "-b", "main")
        self.commits = []
        for v, msg in (("1.0.0", "first release"), ("1.1.0", "add the search page"),
                       ("1.2.0", "switch the session store")):
            with open(os.path.join(self.rel, "VERSION"), "w") as f:
                f.write(v + "\n")
            self.git("add", "VERSION")
            self.git("commit", "-q", "-m", msg)
            self.commits.append(self.git("rev-parse", "HEAD"))
        return self.rel

    def make_symlink_releases(self):
        """releases/r8, r9, r10 (r10 is newest only in natural order), a stray
        file r9b.tar.gz, and current -> releases/r10 (a relative link)."""
        self.rel = self.path("app")
        for r in ("r8", "r9", "r10"):
            os.makedirs(os.path.join(self.rel, "releases", r))
            with open(os.path.join(self.rel, "releases", r, "VERSION"), "w") as f:
                f.write(f"2.{r[1:]}.0\n")
        with open(os.path.join(self.rel, "releases", "r9b.tar.gz"), "w") as f:
            f.write("an upload left behind: not a release (a file, not a directory)\n")
        os.symlink("releases/r10", os.path.join(self.rel, "current"))
        return self.rel

    def start_service(self, version_file):
        script = RESTART % {"dir": self.svc, "python": PYTHON, "port": self.port, "version": version_file}
        self.restart = self.write("svc/restart", script)
        os.chmod(self.restart, 0o755)
        self.addCleanup(self.stop_service)
        p = subprocess.run([self.restart, "api"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, f"the test service did not start: {p.stderr}")
        os.unlink(os.path.join(self.svc, "restarts.log"))

    def stop_service(self):
        pidfile = os.path.join(self.svc, "svc.pid")
        if os.path.exists(pidfile):
            try:
                os.kill(int(read(pidfile)), 15)
            except (OSError, ValueError):
                pass

    def restarts(self):
        p = os.path.join(self.svc, "restarts.log")
        return read(p).split() if os.path.exists(p) else []

    def version(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
            return json.loads(r.read())["version"]

    def config(self, layout):
        cfg = f'''targets = {{
  prod = {{
    services = {{ "api" }},
    manager = "commands",
    commands = {{ restart = {{ {json.dumps(self.restart)}, "%s" }} }},
    health = {{ "http://127.0.0.1:{self.port}/health" }},
    releases = {{ dir = {json.dumps(self.rel)}, layout = "{layout}" }},
  }},
}}
'''
        self.write("config/runbook/config.lua", cfg)

    def rollback(self, *args):
        self.transcript = self.path("rollback.jsonl")
        if os.path.exists(self.transcript):
            os.unlink(self.transcript)
        proc = self.run_rb("run", "rollback", "--target", "prod", "--transcript", self.transcript, *args,
                           cwd=SOURCE_DIR)
        self.ev = self.events(self.transcript) if os.path.exists(self.transcript) else []
        return proc

    def logs(self):
        return [e["message"] for e in self.ev if e["event"] == "log"]

    def step_status(self, sid):
        ends = [e for e in self.ev if e["event"] == "step.end" and e["id"] == sid]
        return ends[-1]["status"] if ends else None


class TestGitLayout(RollbackCase):
    def setUp(self):
        super().setUp()
        self.make_git_releases()
        self.start_service(os.path.join(self.rel, "VERSION"))
        self.config("git")

    def test_rolls_back_to_the_previous_commit_restarts_and_records_the_reverted_one(self):
        self.assertEqual(self.version(), "1.2.0")
        proc = self.rollback("--yes")
        self.assertExit(proc, 0)
        self.assertEqual(self.version(), "1.1.0",
                         "expected the restarted service to report the previous release")
        self.assertEqual(self.git("rev-parse", "HEAD"), self.commits[1])
        self.assertEqual(self.git("rev-parse", "main"), self.commits[2],
                         "expected the branch left where it was (checkout --detach, not reset)")
        self.assertEqual(self.restarts(), ["api"], "expected one restart of service api")
        confirms = [e for e in self.ev if e["event"] == "confirm" and e["step"] == "rollback"]
        self.assertEqual(len(confirms), 1, f"expected one confirmation of the rollback: {self.ev}")
        plan = [e for e in self.ev if e["event"] == "log" and e["message"].startswith("plan: ")]
        self.assertEqual(len(plan), 1, f"expected the plan shown before the confirmation; logs: {self.logs()}")
        self.assertLess(plan[0]["seq"], confirms[0]["seq"])
        self.assertRegex(plan[0]["message"], f"from {self.commits[2][:7]} .* to {self.commits[1][:7]} ")
        recorded = [m for m in self.logs() if "reverted deployment" in m]
        self.assertTrue(recorded, f"expected a 'reverted deployment' record; logs: {self.logs()}")
        self.assertIn(self.commits[2][:7], recorded[-1])
        self.assertIn("switch the session store", recorded[-1])
        self.assertIn(self.commits[1][:7] + " ", recorded[-1].split("now running")[1])
        self.assertTrue(any("healthy" in m and "1.1.0" in m for m in self.logs()),
                        f"expected the health check to show 1.1.0; logs: {self.logs()}")
        notes = [e for e in self.ev if e["event"] == "notify"]
        self.assertTrue(notes and self.commits[2][:7] in notes[0]["text"],
                        f"expected the rollback in a notify event: {notes}")
        v = self.run_rb("verify", self.transcript)
        self.assertExit(v, 0)

    def test_to_param_goes_back_to_a_named_commit(self):
        proc = self.rollback("--yes", "-p", "to=" + self.commits[0][:8])
        self.assertExit(proc, 0)
        self.assertEqual(self.version(), "1.0.0")
        self.assertEqual(self.git("rev-parse", "HEAD"), self.commits[0])

    def test_dry_run_lists_and_checks_health_but_changes_nothing(self):
        proc = self.rollback("--dry-run", "--yes")
        self.assertExit(proc, 0)
        self.assertEqual(self.git("rev-parse", "HEAD"), self.commits[2], "expected HEAD untouched")
        self.assertEqual(self.restarts(), [], "expected no restart in a dry run")
        self.assertEqual(self.version(), "1.2.0")
        self.assertRegex(proc.stdout, r"would run: git -C \S+ checkout --detach --quiet " + self.commits[1])
        self.assertRegex(proc.stdout, r"would run: \S+/restart api")
        gets = [e for e in self.ev if e["event"] == "call" and e["primitive"] == "http"]
        self.assertTrue(gets and gets[-1]["outcome"] == "ok" and not gets[-1].get("dry_run"),
                        f"expected the health check to run for real: {gets}")

    def test_declining_the_confirmation_changes_nothing(self):
        question = "Step 2 'Roll back the release' is marked dangerous. Run it?"
        answers = self.write("answers.txt", "[rollback] Approve step 2 'Roll back the release'? = yes\n"
                             "[rollback] Approver's name = Dana Lead\n"
                             f"[rollback] {question} = no\n[rollback] !error = abort\n")
        proc = self.rollback("--answers", answers)
        self.assertExit(proc, 1)
        self.assertEqual(self.step_status("rollback"), "declined")
        self.assertEqual(self.git("rev-parse", "HEAD"), self.commits[2])
        self.assertEqual(self.restarts(), [])

    def test_refuses_to_check_out_over_local_changes(self):
        with open(os.path.join(self.rel, "VERSION"), "a") as f:
            f.write("hotfix typed on the server\n")
        proc = self.rollback("--yes")
        self.assertExit(proc, 1)
        self.assertEqual(self.step_status("rollback"), "failed")
        self.assertIn("local changes", proc.stdout + proc.stderr)
        self.assertEqual(self.git("rev-parse", "HEAD"), self.commits[2])
        self.assertIn("hotfix typed on the server", read(os.path.join(self.rel, "VERSION")))
        self.assertEqual(self.restarts(), [])

    def test_scenario_unhealthy_after_rollback_declares_p0_and_fails_the_check(self):
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "rollback.lua")
        proc = self.rollback("--dry-run", "--yes", "--scenario", scenario, "-p", "health_timeout=2")
        self.assertExit(proc, 1)
        self.assertEqual(self.step_status("verify-health"), "failed")
        end = [e for e in self.ev if e["event"] == "step.end" and e["id"] == "verify-health"][-1]
        self.assertIn("503", end["error"])
        self.assertTrue(any(m.startswith("severity declared: P0") for m in self.logs()),
                        f"expected the severity raised to P0; logs: {self.logs()}")
        scripted = [e for e in self.ev if e["event"] == "call" and e.get("scenario")]
        self.assertTrue(scripted, "expected calls replaced by the scenario")
        self.assertEqual(self.git("rev-parse", "HEAD"), self.commits[2])
        self.assertEqual(self.version(), "1.2.0")


class TestStatic(RunbookTestCase):
    def test_the_runbook_and_its_scenario_pass_check_and_load(self):
        proc = self.run_rb("check", "rollback", cwd=SOURCE_DIR)
        self.assertExit(proc, 0)
        self.assertIn("ok: ./runbooks/rollback.lua", proc.stdout)
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "rollback.lua")
        self.assertTrue(os.path.exists(scenario), "expected a game-day scenario for rollback")


class TestSymlinkLayout(RollbackCase):
    def setUp(self):
        super().setUp()
        self.make_symlink_releases()
        self.start_service(os.path.join(self.rel, "current", "VERSION"))
        self.config("symlink")

    def test_repoints_current_to_the_previous_release_in_natural_order(self):
        self.assertEqual(self.version(), "2.10.0")
        proc = self.rollback("--yes")
        self.assertExit(proc, 0)
        link = os.readlink(os.path.join(self.rel, "current"))
        self.assertEqual(link, "releases/r9", "expected current -> releases/r9 (relative, like before)")
        self.assertEqual(self.version(), "2.9.0")
        leftovers = [n for n in os.listdir(self.rel) if n.startswith(".current")]
        self.assertEqual(leftovers, [], "expected no temporary links left behind")
        recorded = [m for m in self.logs() if "reverted deployment" in m]
        self.assertTrue(recorded and "reverted deployment r10" in recorded[-1]
                        and recorded[-1].endswith("now running r9"), f"logs: {self.logs()}")
        self.assertRegex(proc.stdout, r"\$ ln -sfn releases/r9 \S+/\.current\.tmp-")
        self.assertRegex(proc.stdout, r"\$ mv -T \S+/\.current\.tmp-\S+ \S+/current")

    def test_dry_run_leaves_the_link(self):
        proc = self.rollback("--dry-run", "--yes")
        self.assertExit(proc, 0)
        self.assertEqual(os.readlink(os.path.join(self.rel, "current")), "releases/r10")
        self.assertEqual(self.restarts(), [])
        self.assertIn("would run: ln -sfn releases/r9", proc.stdout)


if __name__ == "__main__":
    import unittest
    unittest.main()
