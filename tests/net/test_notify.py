"""notify through the config's channels (a Slack-compatible webhook on a
real HTTP server, and a command), and the config file's targets with
secrets read from the environment."""
import http.server
import json
import os
import threading

from harness import RunbookTestCase


class Webhook:
    """A real HTTP server on loopback that keeps every POSTed body and
    answers with the status it is told to."""

    def __init__(self):
        self.bodies, self.status = [], 200
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append((self.path, self.headers.get("Content-Type"),
                                    self.rfile.read(n).decode()))
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class NotifyTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.hook = Webhook()
        self.addCleanup(self.hook.stop)
        self.pager_out = self.path("pager.txt")
        self.write("config/runbook/config.lua", f'''
targets = {{
  staging = {{ base_url = "http://staging.example", db = env("STAGING_DB"),
              params = {{ service = "api" }} }},
}}
notify = {{
  ops = {{ webhook = "{self.hook.url()}" }},
  pager = {{ command = {{ "/bin/sh", "-c",
    "cat > {self.pager_out}; echo \\" severity=$RUNBOOK_NOTIFY_SEVERITY channel=$RUNBOOK_NOTIFY_CHANNEL\\" >> {self.pager_out}" }} }},
  broken = {{ command = {{ "/bin/sh", "-c", "echo no route to pager >&2; exit 3" }} }},
}}
''')
        self.env["STAGING_DB"] = "postgresql://app:Db-s3cret-77@db.staging:5432/app"
        self.transcript = self.path("t.jsonl")

    def run_book(self, body, *args, code=0):
        rb = self.write("rb.lua", 'param("service", { default = "x" })\n' + body)
        p = self.run_rb("run", rb, "--transcript", self.transcript, *args)
        self.assertExit(p, code)
        return p

    def notify_events(self):
        return [e for e in self.events(self.transcript) if e["event"] == "notify"]


class Notify(NotifyTestCase):
    def test_webhook_gets_slack_json_and_command_gets_the_text(self):
        p = self.run_book('''
step("tell", function()
  local r = notify("DB restore started", { severity = "P1" })
  assert(#r == 3, "three channels")
end)''')
        self.assertEqual(len(self.hook.bodies), 1, self.hook.bodies)
        path, ctype, body = self.hook.bodies[0]
        self.assertEqual(path, "/hook")
        self.assertIn("application/json", ctype)
        self.assertEqual(json.loads(body), {"text": "[P1] DB restore started"})
        with open(self.pager_out) as f:
            self.assertEqual(f.read(), "DB restore started severity=P1 channel=pager\n")
        ev = self.notify_events()[0]
        by = {c["channel"]: c for c in ev["channels"]}
        self.assertEqual(ev["text"], "DB restore started")
        self.assertTrue(by["ops"]["ok"] and by["pager"]["ok"], ev)
        self.assertEqual(by["ops"]["answer"]["status"], 200)
        self.assertFalse(by["broken"]["ok"])
        self.assertIn("exited with code 3", by["broken"]["error"])
        self.assertIn("warn: notify: broken: command exited with code 3", p.stdout)

    def test_what_leaves_the_host_is_redacted(self):
        # A message built from a marked secret, a URL password, a token and
        # a command's output: neither the webhook nor the pager gets them.
        planted = ("Db-s3cret-77", "Pw-in-url-31", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "Xq7-marked-value-9Zk")
        self.run_book('''
step("tell", function()
  local marked = secret("Xq7-marked-value-9Zk")
  local out = exec { "sh", "-c", "echo STRIPE_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc", readonly = true }.stdout
  local url = "postgres://app:Pw-in-url-31@db.staging:5432/app"
  notify("restore of " .. target.db .. " from " .. url .. " failed; " .. out .. " token " .. marked,
    { severity = "P1" })
end)''', "--target", "staging")
        ((path, _, body),) = self.hook.bodies
        with open(self.pager_out) as f:
            paged = f.read()
        for value in planted:
            self.assertNotIn(value, body, "the webhook got a secret")
            self.assertNotIn(value, paged, "the pager got a secret")
        text = json.loads(body)["text"]
        self.assertIn("db.staging:5432", text, "the message lost what is not secret")
        self.assertIn("STRIPE_KEY=", text)
        self.assertIn("***", paged)

    def test_a_failing_channel_is_fatal_only_when_required(self):
        self.hook.status = 500
        self.run_book('''
step("not required", function() notify("hello", { channel = "ops" }) end)
step("required", function() notify("hello", { channel = "ops", required = true }) end)
''', code=1)
        ends = [(e["id"], e["status"]) for e in self.events(self.transcript) if e["event"] == "step.end"]
        self.assertEqual(ends, [("not-required", "ok"), ("required", "failed")])
        ev = self.notify_events()
        self.assertEqual([c["error"] for c in ev[0]["channels"]], ["webhook answered 500"])

    def test_dry_run_sends_nothing(self):
        p = self.run_book('step("tell", function() notify("rehearsal", { channel = { "ops", "pager" } }) end)',
                          "--dry-run")
        self.assertEqual(self.hook.bodies, [])
        self.assertFalse(os.path.exists(self.pager_out))
        self.assertIn("would notify ops: rehearsal", p.stdout)
        self.assertTrue(all(c.get("simulated") for c in self.notify_events()[0]["channels"]))

    def test_unknown_channel_is_reported(self):
        p = self.run_book('step("tell", function() notify("x", { channel = "nope" }) end)')
        self.assertIn("nope: no such channel", p.stdout)


class Targets(NotifyTestCase):
    def test_target_is_visible_and_its_secret_never_shown(self):
        p = self.run_book('''
step("use the target", function(p)
  log.info("db %s, service %s, base %s", target.db, p.service, target.base_url)
  assert(target.db:find("Db%-s3cret%-77"), "the runbook sees the real value")
end)''', "--target", "staging")
        self.assertIn("service api", p.stdout, "target params are defaults for runbook params")
        self.assertIn("base http://staging.example", p.stdout)
        with open(self.transcript) as f:
            record = f.read()
        for text in (p.stdout, p.stderr, record):
            self.assertNotIn("Db-s3cret-77", text)
        start = self.events(self.transcript)[0]
        self.assertEqual(start["target"], "staging")

    def test_unknown_target_lists_the_known_ones(self):
        p = self.run_book('step("x", function() end)', "--target", "prod", code=2)
        self.assertIn('no target "prod"', p.stderr)
        self.assertIn("targets: staging", p.stderr)

    def test_a_target_without_any_config_file_says_the_file_is_missing(self):
        # (a newcomer's drill: "no target \"drill\" in ~/.config/runbook/config.lua
        # (targets: none)" when that file did not exist at all)
        self.env["XDG_CONFIG_HOME"] = self.path("nowhere")
        p = self.run_book('step("x", function() end)', "--target", "drill", code=2)
        self.assertIn("--target drill: there is no config file (looked for "
                      + self.path("nowhere") + "/runbook/config.lua)", p.stderr)
        self.assertIn("--config FILE", p.stderr)
        self.assertNotIn("targets: none", p.stderr)

    def test_missing_environment_variable_is_a_clear_error(self):
        del self.env["STAGING_DB"]
        p = self.run_book('step("x", function() end)', "--target", "staging", code=2)
        self.assertIn("environment variable STAGING_DB is not set", p.stderr)

    def test_config_flag_and_a_missing_config_file(self):
        other = self.write("other.lua", 'targets = { qa = { params = { service = "qa-api" } } }\n')
        p = self.run_book('step("x", function(p) log.info("service %s", p.service) end)',
                          "--config", other, "--target", "qa")
        self.assertIn("service qa-api", p.stdout)
        p = self.run_book('step("x", function() end)', "--config", self.path("nope.lua"), code=2)
        self.assertIn("--config: cannot read", p.stderr)
