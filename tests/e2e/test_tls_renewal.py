"""tls-renewal runbook against a real HTTPS server on loopback whose
certificate the test makes with the openssl CLI (a CA, and a server
certificate expiring in 5 days).  certbot is replaced by a script named in
the target config that signs a new 90-day certificate (and only prints with
--dry-run); the reload command sends SIGHUP to the server, which loads the
certificate files again: without the reload it keeps serving the old one.

TestCertbotPebble meets the real tools: Debian's certbot renewing from a
real pebble on loopback (tests/servers/pebble.py), configured the way a
user would (certonly --server once, then the documented certbot renew),
and the same reloadable HTTPS server serving certbot's live files.
"""
import calendar
import json
import os
import re
import subprocess
import sys
import time

from appserver import lua
from harness import LUA_EMIT, SOURCE_DIR, RunbookTestCase, emitted
from servers.pebble import PebbleServer

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

# HTTPS on 127.0.0.1: the certificate is loaded at start and on SIGHUP only.
# HTTP/1.0, so every check is a new connection and a new handshake.
SERVER = r'''
import http.server, os, signal, ssl, sys
d = sys.argv[1]
cert = sys.argv[2] if len(sys.argv) > 3 else os.path.join(d, "server.pem")
key = sys.argv[3] if len(sys.argv) > 3 else os.path.join(d, "server.key")
def context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok\n")
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    ctx = context()
    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr
    def handle_error(self, request, client_address): pass
def reload(signum, frame):
    S.ctx = context()
    with open(os.path.join(d, "reloads.log"), "a") as f: f.write("reload\n")
signal.signal(signal.SIGHUP, reload)
srv = S(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
'''

# certbot renew [--dry-run]: --dry-run only prints; else a new 90-day
# certificate for the same key replaces server.pem.
RENEW = r'''#!/bin/sh
set -e
cd %(dir)s
echo "renew $*" >> renew.log
case " $* " in
  *" --dry-run "*) echo "Simulating renewal of an existing certificate for localhost"
                   echo "Congratulations, all simulated renewals succeeded"; exit 0 ;;
esac
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
  -extfile ext.cnf -out server.pem.new 2>/dev/null
mv server.pem.new server.pem
echo "Congratulations, all renewals succeeded: server.pem (success)"
'''

RELOAD = r'''#!/bin/sh
kill -HUP %(pid)d && echo "reloaded"
'''


def openssl(d, *args):
    subprocess.run(["openssl", *args], cwd=d, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


def make_certs(d, days):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(d, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "365",
            "-subj", "/O=runbook tests/CN=tls-renewal test CA")
    openssl(d, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", str(days), "-extfile", "ext.cnf")


def read(path):
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()


class TlsCase(RunbookTestCase):
    days = 5

    def setUp(self):
        super().setUp()
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            self.env.pop(var, None)
        self.d = self.path("tls")
        os.makedirs(self.d)
        make_certs(self.d, self.days)
        self.write("tls/server.py", SERVER)
        self.srv = subprocess.Popen([PYTHON, os.path.join(self.d, "server.py"), self.d],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.stop_server)
        line = self.srv.stdout.readline()
        self.assertTrue(line.strip().isdigit(), f"the test HTTPS server did not start: {line!r}")
        self.port = int(line)
        self.url = f"https://localhost:{self.port}/"
        renew = self.write("tls/renew", RENEW % {"dir": self.d})
        reload = self.write("tls/reload", RELOAD % {"pid": self.srv.pid})
        os.chmod(renew, 0o755)
        os.chmod(reload, 0o755)
        self.config()

    def stop_server(self):
        self.srv.kill()
        self.srv.wait(timeout=10)
        self.srv.stdout.close()
        self.srv.stderr.close()

    def config(self, cacert=True, extra=""):
        d = self.d
        tls = f'''{{
      endpoints = {{ "{self.url}" }},
      files = {{ "{d}/server.pem" }},
      renew = {{ "{d}/renew", "renew" }},
      reload = {{ "{d}/reload" }},
      cacert = {json.dumps(d + "/ca.pem") if cacert else "nil"},
      warn_days = 21,
    }}'''
        self.write("config/runbook/config.lua", f"targets = {{ prod = {{ tls = {tls}, {extra} }},\n"
                   f"  bare = {{ services = {{ \"api\" }} }} }}\n")

    def renewal(self, *args, target="prod"):
        self.transcript = self.path("tls.jsonl")
        if os.path.exists(self.transcript):
            os.unlink(self.transcript)
        proc = self.run_rb("run", "tls-renewal", "--target", target, "--transcript", self.transcript,
                           *args, cwd=SOURCE_DIR)
        self.ev = self.events(self.transcript) if os.path.exists(self.transcript) else []
        return proc

    def logs(self):
        return [e["message"] for e in self.ev if e["event"] == "log"]

    def days_logged(self, kind, step):
        """Days left logged by tls.check for each certificate of `kind` in `step`."""
        out = []
        for e in self.ev:
            if e["event"] == "log" and e.get("step") == step:
                m = re.match(kind + r" (\S+): expires .*?, (-?[\d.]+) days left", e["message"])
                if m:
                    out.append(float(m.group(2)))
        return out

    def step_status(self, sid):
        ends = [e for e in self.ev if e["event"] == "step.end" and e["id"] == sid]
        return ends[-1]["status"] if ends else None

    def served_days(self):
        """Days left of the certificate the server serves now, seen by openssl s_client."""
        p = subprocess.run(f"openssl s_client -connect 127.0.0.1:{self.port} -servername localhost "
                           "</dev/null 2>/dev/null | openssl x509 -noout -enddate", shell=True,
                           capture_output=True, text=True, timeout=30)
        end = p.stdout.strip().split("=", 1)[1]
        return (calendar.timegm(time.strptime(end, "%b %d %H:%M:%S %Y GMT")) - time.time()) / 86400


class TestRenewal(TlsCase):
    def test_renews_a_certificate_expiring_in_5_days_and_sees_90_after_the_reload(self):
        self.assertAlmostEqual(self.served_days(), 5, delta=0.1)
        proc = self.renewal("--yes")
        self.assertExit(proc, 0)
        before_ep = self.days_logged("endpoint", "check-expiry")
        before_file = self.days_logged("file", "check-expiry")
        self.assertEqual(len(before_ep), 1, f"expected one endpoint checked; logs: {self.logs()}")
        self.assertAlmostEqual(before_ep[0], 5, delta=0.1)
        self.assertAlmostEqual(before_file[0], 5, delta=0.1)
        renewed = [m for m in self.logs() if m.startswith("renewed: ")]
        self.assertEqual(len(renewed), 2, f"expected a 'renewed:' line per certificate; logs: {self.logs()}")
        for line in renewed:
            m = re.search(r": ([\d.]+) -> ([\d.]+) days left", line)
            self.assertTrue(m, line)
            self.assertAlmostEqual(float(m.group(1)), 5, delta=0.1, msg=line)
            self.assertAlmostEqual(float(m.group(2)), 90, delta=0.1, msg=line)
        self.assertAlmostEqual(self.served_days(), 90, delta=0.1)
        self.assertEqual(read(os.path.join(self.d, "renew.log")).splitlines(),
                         ["renew renew --dry-run", "renew renew"],
                         "expected the rehearsal, then the renewal")
        self.assertEqual(read(os.path.join(self.d, "reloads.log")).splitlines(), ["reload"])
        confirms = [e for e in self.ev if e["event"] == "confirm" and e["step"] == "renew"]
        self.assertTrue(confirms and "/renew renew`?" in confirms[0]["question"]
                        and "5.0 days left" in confirms[0]["question"], f"confirm events: {confirms}")
        self.assertFalse([m for m in self.logs() if "severity declared" in m],
                         "5 days left is not a severity change")

    def test_dry_run_rehearses_for_real_and_changes_nothing(self):
        pem = read(os.path.join(self.d, "server.pem"))
        proc = self.renewal("--dry-run", "--yes")
        self.assertExit(proc, 0)
        self.assertEqual(read(os.path.join(self.d, "renew.log")).splitlines(), ["renew renew --dry-run"],
                         "expected only certbot's own --dry-run to run")
        self.assertIn("Congratulations, all simulated renewals succeeded", proc.stdout)
        self.assertRegex(proc.stdout, r"would run: \S+/renew renew\n")
        self.assertRegex(proc.stdout, r"would run: \S+/reload\n")
        self.assertEqual(read(os.path.join(self.d, "server.pem")), pem)
        self.assertEqual(read(os.path.join(self.d, "reloads.log")), "")
        self.assertIn("dry run: nothing was renewed, so the expiry above is unchanged", self.logs())
        self.assertAlmostEqual(self.days_logged("endpoint", "verify")[0], 5, delta=0.1)

    def test_nothing_due_renews_nothing(self):
        proc = self.renewal("--yes", "-p", "warn_days=3")
        self.assertExit(proc, 0)
        self.assertEqual(read(os.path.join(self.d, "renew.log")), "", "expected certbot never run")
        self.assertTrue(any(m.startswith("no certificate expires within 3 days") for m in self.logs()),
                        f"logs: {self.logs()}")
        self.assertEqual(self.step_status("renew"), "ok")
        self.assertIn("nothing due: the renewal skipped (-p force=yes renews anyway)", self.logs())

    def test_scenario_expired_certificate_and_failed_challenge(self):
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "tls-renewal.lua")
        proc = self.renewal("--dry-run", "--yes", "--scenario", scenario)
        self.assertExit(proc, 1)
        self.assertTrue(any(m.startswith("severity declared: P1") and "has expired" in m for m in self.logs()),
                        f"expected P1 declared for the expired certificate; logs: {self.logs()}")
        self.assertTrue(any("EXPIRED" in m for m in self.logs()), f"logs: {self.logs()}")
        self.assertEqual(self.step_status("check-expiry"), "ok")
        self.assertEqual(self.step_status("renew-dry-run"), "failed")
        end = [e for e in self.ev if e["event"] == "step.end" and e["id"] == "renew-dry-run"][-1]
        self.assertIn("Challenge failed for domain app.example", end["error"])
        self.assertIsNone(self.step_status("renew"), "expected the renewal never reached")
        self.assertEqual(read(os.path.join(self.d, "renew.log")), "")


def serial_of_file(path):
    p = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", path], capture_output=True,
                       text=True, timeout=30, check=True)
    return p.stdout.strip().split("=", 1)[1].lower().lstrip("0")


class PebbleCase(RunbookTestCase):
    """Real certbot renewing from a real pebble, as a user sets them up: a
    certificate obtained once with `certbot certonly --server ...` (its
    renewal config remembers the server and the dirs), then the documented
    `renew = { "certbot", "renew", <dirs> }`, REQUESTS_CA_BUNDLE given
    through env, and an HTTPS server on loopback serving certbot's live
    files, reloaded with SIGHUP."""

    def setUp(self):
        super().setUp()
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            self.env.pop(var, None)
        self.pb = PebbleServer()
        self.addCleanup(self.pb.stop)
        self.live = self.pb.obtain("localhost")
        self.d = self.path("tls")
        os.makedirs(self.d)
        self.write("tls/server.py", SERVER)
        self.srv = subprocess.Popen([PYTHON, os.path.join(self.d, "server.py"), self.d,
                                     os.path.join(self.live, "fullchain.pem"),
                                     os.path.join(self.live, "privkey.pem")],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.stop_server)
        line = self.srv.stdout.readline()
        self.assertTrue(line.strip().isdigit(), f"the test HTTPS server did not start: {line!r}")
        self.port = int(line)
        root = self.write("tls/pebble-root.pem", self.pb.root_ca())
        reload = self.write("tls/reload", RELOAD % {"pid": self.srv.pid})
        os.chmod(reload, 0o755)
        renew = ["env", f"REQUESTS_CA_BUNDLE={self.pb.ca_bundle}", "certbot", "renew", *self.pb.dirs()]
        tls = {"endpoints": [f"https://localhost:{self.port}/"],
               "files": [os.path.join(self.live, "cert.pem")],
               "renew": renew, "reload": [reload], "cacert": root}
        self.write("config/runbook/config.lua", f"targets = {{ prod = {{ tls = {lua(tls)} }} }}\n")
        self.serial = serial_of_file(os.path.join(self.live, "cert.pem"))
        self.pebble_log_before = len(self.pb.log())

    def stop_server(self):
        self.srv.kill()
        self.srv.wait(timeout=10)
        self.srv.stdout.close()
        self.srv.stderr.close()

    def renewal(self, *args):
        self.transcript = self.path(f"tls-{len(os.listdir(self.tmp))}.jsonl")
        proc = self.run_rb("run", "tls-renewal", "--target", "prod", "--transcript", self.transcript,
                           *args, cwd=SOURCE_DIR, timeout=180)
        self.ev = self.events(self.transcript) if os.path.exists(self.transcript) else []
        return proc

    def logs(self, step=None):
        return [e["message"] for e in self.ev if e["event"] == "log" and (step is None or e.get("step") == step)]

    def argv_run(self, step):
        """The argv of the exec calls (run or simulated) of a step."""
        return [c["args"]["argv"] for c in self.ev
                if c["event"] == "call" and c["primitive"] == "exec" and c.get("step") == step
                and "certbot" in c["args"]["argv"]]

    def served_serial(self):
        p = subprocess.run(f"openssl s_client -connect 127.0.0.1:{self.port} -servername localhost "
                           "</dev/null 2>/dev/null | openssl x509 -noout -serial", shell=True,
                           capture_output=True, text=True, timeout=30)
        return p.stdout.strip().split("=", 1)[1].lower().lstrip("0")

    def new_pebble_log(self):
        return self.pb.log()[self.pebble_log_before:]

    def reloads(self):
        return read(os.path.join(self.d, "reloads.log")).splitlines()


class TestCertbotPebble(PebbleCase):
    def test_forced_renewal_gets_a_new_certificate_from_pebble_and_the_reload_serves_it(self):
        self.assertEqual(self.served_serial(), self.serial)
        proc = self.renewal("--yes", "-p", "force=yes")
        self.assertExit(proc, 0)
        new = serial_of_file(os.path.join(self.live, "cert.pem"))
        self.assertNotEqual(new, self.serial, "certbot did not replace the certificate")
        issued = [m.lower().lstrip("0") for m in
                  re.findall(r"Issued certificate serial ([0-9a-fA-F]+)", self.new_pebble_log())]
        self.assertIn(new, issued, "expected pebble to have issued the new certificate")
        self.assertEqual(self.served_serial(), new, "the server does not serve the new certificate")
        self.assertEqual(self.reloads(), ["reload"])
        renew = self.argv_run("renew")[-1]
        self.assertIn("--force-renewal", renew)
        self.assertIn("--no-random-sleep-on-renew", renew)
        self.assertNotIn("--dry-run", renew)
        self.assertTrue(any(m.startswith("renewed: endpoint") for m in self.logs("verify")), self.logs())

    def test_not_due_says_certbot_skipped_and_reloads_nothing(self):
        # 4000 days: the runbook finds pebble's 5-year certificate due, certbot does not
        proc = self.renewal("--yes", "-p", "warn_days=4000")
        self.assertExit(proc, 0)
        self.assertEqual(serial_of_file(os.path.join(self.live, "cert.pem")), self.serial)
        skipped = [m for m in self.logs("renew") if m.startswith("certbot renewed nothing")]
        self.assertTrue(skipped, f"expected the runbook to say certbot skipped; logs: {self.logs()}")
        self.assertIn("it skipped every certificate as not yet due", skipped[0])
        self.assertIn("-p force=yes", skipped[0])
        self.assertEqual(self.reloads(), [], "reloaded although certbot renewed nothing")
        self.assertTrue(any("certbot renewed nothing (not yet due): the reload skipped" in m
                            for m in self.logs("reload")), self.logs())
        renew = self.argv_run("renew")[-1]
        self.assertIn("--no-random-sleep-on-renew", renew)
        self.assertNotIn("--force-renewal", renew)

    def test_rehearsal_dry_run_reaches_pebble_not_staging(self):
        proc = self.renewal("--dry-run", "--yes", "-p", "force=yes")
        self.assertExit(proc, 0)
        self.assertIn("Congratulations, all simulated renewals succeeded", proc.stdout)
        rehearsal = self.argv_run("renew-dry-run")[-1]
        self.assertIn("--dry-run", rehearsal)
        self.assertEqual(rehearsal[rehearsal.index("--server") + 1], self.pb.directory, rehearsal)
        log = self.new_pebble_log()
        self.assertIn("POST /order-plz", log, "pebble saw no order from the rehearsal")
        self.assertIn("Issued certificate serial", log)
        self.assertNotIn("acme-staging", proc.stdout + proc.stderr)
        self.assertEqual(serial_of_file(os.path.join(self.live, "cert.pem")), self.serial,
                         "a dry run renewed the certificate")
        self.assertEqual(self.reloads(), [])
        self.assertRegex(proc.stdout, r"would run: env \S+ certbot renew ")


class TestStatic(RunbookTestCase):
    def test_the_runbook_and_its_scenario_pass_check_and_load(self):
        proc = self.run_rb("check", "tls-renewal", cwd=SOURCE_DIR)
        self.assertExit(proc, 0)
        self.assertIn("ok: ./runbooks/tls-renewal.lua", proc.stdout)
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "tls-renewal.lua")
        self.assertTrue(os.path.exists(scenario), "expected a game-day scenario for tls-renewal")


class TestChecks(TlsCase):
    def test_a_certificate_that_does_not_verify_still_reports_its_expiry(self):
        self.config(cacert=False)
        proc = self.renewal("--dry-run", "--yes")
        self.assertExit(proc, 0)
        line = [m for m in self.logs() if m.startswith("endpoint ")][0]
        self.assertIn("(does not verify)", line)
        self.assertAlmostEqual(self.days_logged("endpoint", "check-expiry")[0], 5, delta=0.1)
        calls = [e for e in self.ev if e["event"] == "call" and e["primitive"] == "http"]
        self.assertEqual([c["outcome"] for c in calls[:2]], ["error", "ok"])
        self.assertIn("verify failed", calls[0]["error"])
        self.assertTrue(calls[1]["args"].get("insecure"), f"expected the second read insecure: {calls[1]}")

    def test_a_target_without_tls_says_which_key_to_add(self):
        proc = self.renewal("--yes", target="bare")
        self.assertExit(proc, 1)
        self.assertEqual(self.step_status("check-expiry"), "failed")
        self.assertIn("add targets.<name>.tls = {", proc.stdout + proc.stderr)

    def test_renew_command_adds_only_what_certbot_lacks(self):
        conf = self.path("le")
        os.makedirs(os.path.join(conf, "renewal"))
        self.write("le/renewal/a.conf", "version = 2.1.0\n[renewalparams]\nserver = https://acme.internal/dir\n")
        self.write("le/renewal/b.conf", "[renewalparams]\nserver = https://acme.internal/dir\n")
        self.write("le2/renewal/x.conf", "[renewalparams]\nserver = https://one/dir\n")
        self.write("le2/renewal/y.conf", "[renewalparams]\nauthenticator = webroot\n")
        book = self.write("renew_command.lua", LUA_EMIT + r'''
runbook { name = "renew-command", title = "tls.renew_command" }
local tls = require("tls")
step("cases", function()
  local function run(argv, opts)
    local out, cb = tls.renew_command(argv, opts)
    emit("argv", table.concat(out, " "))
    emit("notes", cb and #cb.notes or -1)
  end
  run({ "certbot", "renew", "--config-dir", @CONF@ }, { dry_run = true, force = false })
  run({ "certbot", "renew", "--config-dir=" .. @CONF@, "--server", "https://s/dir",
        "--no-random-sleep-on-renew" }, { dry_run = true })
  run({ "sudo", "-n", "/usr/bin/certbot", "renew", "--config-dir", @CONF@ }, { force = true })
  run({ "certbot", "renew", "--config-dir", @CONF2@ }, { dry_run = true })
  run({ "/opt/renew.sh", "renew" }, { dry_run = true, force = true })
  run({ "certbot", "certificates" }, { dry_run = true })
  local o = tls.certbot_outcome("The following certificates are not due for renewal yet:\n" ..
    "  /etc/le/live/a/fullchain.pem expires on 2031-12-01 (skipped)\nNo renewals were attempted.\n")
  emit("due", { o.nothing_due, #o.not_due })
  o = tls.certbot_outcome("Congratulations, all renewals succeeded: \n  /etc/le/live/a/fullchain.pem (success)\n" ..
    "The following certificates are not due for renewal yet:\n  /etc/le/live/b/fullchain.pem expires on 2031-12-01 (skipped)\n")
  emit("due", { o.nothing_due, #o.not_due, #o.renewed })
end)
'''.replace("@CONF@", json.dumps(conf)).replace("@CONF2@", json.dumps(self.path("le2"))))
        proc = self.run_rb("run", book, "--yes", "--transcript", self.path("rc.jsonl"))
        self.assertExit(proc, 0)
        got = emitted(proc.stdout)
        self.assertEqual(got["argv"], [
            f"certbot renew --config-dir {conf} --no-random-sleep-on-renew --dry-run --server https://acme.internal/dir",
            f"certbot renew --config-dir={conf} --server https://s/dir --no-random-sleep-on-renew --dry-run",
            f"sudo -n /usr/bin/certbot renew --config-dir {conf} --no-random-sleep-on-renew --force-renewal",
            f"certbot renew --config-dir {self.path('le2')} --no-random-sleep-on-renew --dry-run",
            "/opt/renew.sh renew --dry-run",
            "certbot certificates --dry-run",
        ])
        self.assertEqual(got["notes"], [2, 0, 2, 2, -1, -1])
        self.assertEqual(got["due"], [[True, 1], [False, 1, 1]])

    def test_parse_date_is_utc_whatever_the_time_zone(self):
        book = self.write("dates.lua", r'''
runbook { name = "dates", title = "tls.parse_date" }
local tls = require("tls")
step("parse", function()
  local cases = {
    ["notAfter=Jun  1 12:00:00 2025 GMT"] = 1748779200,
    ["Feb 29 00:00:00 2024 GMT"] = 1709164800,
    ["Jan 19 03:14:08 2038 GMT"] = 2147483648,
    ["Dec 31 23:59:59 1999 GMT"] = 946684799,
  }
  for text, want in pairs(cases) do
    local got = tls.parse_date(text)
    assert(got == want, string.format("%q: expected %d, got %s", text, want, tostring(got)))
  end
  assert(tls.parse_date("not a date") == nil, "expected nil for garbage")
  local c = tls.file(@PEM@)
  log.info("file days %.4f", c.days_left)
end)
''' .replace("@PEM@", json.dumps(os.path.join(self.d, "server.pem"))))
        for tz in ("America/New_York", "Asia/Kolkata"):
            t = self.path(f"dates-{tz.replace('/', '_')}.jsonl")
            proc = self.run_rb("run", book, "--yes", "--transcript", t, env={"TZ": tz})
            self.assertExit(proc, 0)
            msg = [e["message"] for e in self.events(t) if e["event"] == "log"][0]
            self.assertAlmostEqual(float(msg.split()[-1]), 5, delta=0.1, msg=f"TZ={tz}: {msg}")


if __name__ == "__main__":
    import unittest
    unittest.main()
