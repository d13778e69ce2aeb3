"""http primitive: real requests to a real HTTP + HTTPS server on loopback.

The server (tests/servers/https.py) runs in a subprocess with its own CA;
each test writes a small runbook, runs build/runbook on it and checks the
screen, the transcript and what the server saw.
"""
import json
import os
import re
import sys
import time
import unittest

from harness import RunbookTestCase

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "servers"))
from https import CERT_DAYS, HttpsServer  # noqa: E402


def lua(s):
    """A Lua string literal for s (ASCII)."""
    return json.dumps(s)


class HttpCase(RunbookTestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = HttpsServer()
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        super().setUp()
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
            self.env.pop(var, None)

    def url(self, path, tls=False, host=None):
        return self.srv.url(path, tls=tls, host=host)

    def run_book(self, steps, *args, timeout=60):
        """Run a runbook made of `steps` (Lua); return the process and its events."""
        self.source = 'runbook { name = "t", title = "http test" }\n' + steps
        path = self.write("t.lua", self.source)
        transcript = self.path("t.jsonl")
        if os.path.exists(transcript):
            os.unlink(transcript)
        proc = self.run_rb("run", path, "--yes", "--transcript", transcript, *args, timeout=timeout)
        events = self.events(transcript) if os.path.exists(transcript) else []
        return proc, events

    def calls(self, events):
        return [e for e in events if e["event"] == "call" and e.get("primitive") == "http"]

    def line(self, text):
        """The line of the last runbook that holds text."""
        return self.source[:self.source.index(text)].count("\n") + 1

    def assertFailsWith(self, steps, pattern, at):
        """The step fails, the run exits 1, the message matches pattern on the
        screen, after the position of the runbook line holding `at`, and in
        the call event; returns the call event."""
        proc, events = self.run_book(steps)
        self.assertExit(proc, 1)
        out = proc.stdout + proc.stderr
        where = rf"t\.lua:{self.line(at)}: "
        self.assertRegex(out, where + pattern,
                         f"expected an error matching {where + pattern!r} on the screen")
        calls = self.calls(events)
        self.assertTrue(calls, f"expected a call event; events: {events}")
        self.assertEqual(calls[-1]["outcome"], "error", f"expected outcome error, saw {calls[-1]}")
        self.assertRegex(calls[-1]["error"], pattern)
        self.assertIsInstance(calls[-1]["duration"], float)
        return calls[-1]


class TestHttpSuccess(HttpCase):
    def test_get_returns_status_headers_body_time_and_json(self):
        proc, events = self.run_book(f"""
step("get", function()
  local r = http.get({lua(self.url('/json'))})
  assert(r.status == 200, "status " .. tostring(r.status))
  assert(r.headers["content-type"] == "application/json", tostring(r.headers["content-type"]))
  assert(r.body == '{{"ok": true, "n": 42}}', r.body)
  assert(type(r.time) == "number" and r.time > 0 and r.time < 5, tostring(r.time))
  local j = r:json()
  assert(j.ok == true and j.n == 42)
  log.info("json n=%d", j.n)
end)
""")
        self.assertExit(proc, 0)
        self.assertIn("json n=42", proc.stdout)
        self.assertIn("http GET " + self.url("/json"), proc.stdout, "expected the call on the screen")
        call = self.calls(events)[0]
        self.assertEqual(call["args"]["method"], "GET")
        self.assertEqual(call["args"]["url"], self.url("/json"))
        self.assertEqual(call["outcome"], "ok")
        self.assertEqual(call["result"]["status"], 200)
        self.assertGreater(call["duration"], 0)

    def test_post_json_sends_encoded_body_content_type_and_headers(self):
        proc, _ = self.run_book(f"""
step("post", function()
  local r = http.post({lua(self.url('/echo'))}, {{ json = {{ reason = "deploy", n = 3 }},
    headers = {{ ["X-Trace"] = "abc-123" }}, expect = 200 }})
  local e = r:json()
  assert(e.method == "POST", e.method)
  assert(e.headers["content-type"] == "application/json", tostring(e.headers["content-type"]))
  assert(e.headers["x-trace"] == "abc-123")
  local sent = json.decode(e.body)
  assert(sent.reason == "deploy" and sent.n == 3, e.body)
  print("posted ok")
end)
""")
        self.assertExit(proc, 0)
        self.assertIn("posted ok", proc.stdout)
        posts = [r for r in self.srv.requests() if r[0] == "POST"]
        self.assertTrue(posts, "expected the server to have seen a POST")

    def test_other_methods_body_string_and_request_forms(self):
        proc, _ = self.run_book(f"""
step("methods", function()
  local r = http.put({lua(self.url('/echo'))}, {{ body = "raw text", headers = {{ ["Content-Type"] = "text/plain" }} }})
  local e = r:json()
  assert(e.method == "PUT" and e.body == "raw text" and e.headers["content-type"] == "text/plain", r.body)
  assert(http.delete({lua(self.url('/echo'))}):json().method == "DELETE")
  assert(http.patch({lua(self.url('/echo'))}, {{ body = "p" }}):json().body == "p")
  local h = http.head({lua(self.url('/json'))})
  assert(h.status == 200 and h.body == "" and h.headers["content-length"] == "21", h.body)
  assert(http.request("post", {lua(self.url('/echo'))}):json().method == "POST")
  local t = http.request {{ method = "PUT", url = {lua(self.url('/echo'))}, body = "x", expect = 200 }}
  assert(t:json().method == "PUT" and t:json().body == "x")
  print("methods ok")
end)
""")
        self.assertExit(proc, 0)
        self.assertIn("methods ok", proc.stdout)

    def test_expect_accepts_a_listed_status(self):
        proc, events = self.run_book(f"""
step("expect", function()
  local r = http.get({lua(self.url('/status/404'))}, {{ expect = {{ 200, 404 }} }})
  assert(r.status == 404)
  local n = http.get({lua(self.url('/status/503'))})
  assert(n.status == 503, "without expect a 503 is a result, not an error")
  assert(http.get({lua(self.url('/status/500'))}, {{ expect = false }}).status == 500)
  print("expect ok")
end)
""")
        self.assertExit(proc, 0)
        self.assertIn("expect ok", proc.stdout)
        self.assertEqual([c["result"]["status"] for c in self.calls(events)], [404, 503, 500])

    def test_expect_mismatch_raises_with_status_and_body_excerpt(self):
        call = self.assertFailsWith(f"""
step("expect", function()
  http.get({lua(self.url('/status/503'))}, {{ expect = 200 }})
end)
""", r"http GET http://127\.0\.0\.1:\d+/status/503: got status 503, expected 200 "
     r"\(body: \"status 503 from the test server", at="http.get(")
        self.assertEqual(call["args"]["expect"], [200])

    def test_redirects_are_followed_and_bounded(self):
        proc, events = self.run_book(f"""
step("redirects", function()
  local r = http.get({lua(self.url('/redirect/3'))})
  assert(r.status == 200 and r.redirects == 3 and r.url:match("/redirect/0$"), r.url)
  local far = http.get({lua(self.url('/redirect/7'))}, {{ max_redirects = 8 }})
  assert(far.redirects == 7)
  local stay = http.get({lua(self.url('/redirect/2'))}, {{ follow = false }})
  assert(stay.status == 302 and stay.headers.location == "/redirect/1", tostring(stay.status))
  http.get({lua(self.url('/redirect/6'))})
end)
""")
        self.assertExit(proc, 1)
        self.assertRegex(proc.stdout, rf"t\.lua:{self.line('/redirect/6')}: http GET http://127\.0\.0\.1:\d+/redirect/6: too many "
                                      r"redirects \(more than 5; check for a redirect loop, or raise max_redirects=\)")
        calls = self.calls(events)
        self.assertEqual(calls[0]["result"]["redirects"], 3)
        self.assertEqual(calls[-1]["outcome"], "error")

    def test_connections_to_the_same_host_are_reused(self):
        proc, _ = self.run_book(f"""
step("reuse", function()
  local ports, reused = {{}}, {{}}
  for i = 1, 4 do
    local r = http.get({lua(self.url('/echo'))})
    ports[i], reused[i] = math.tointeger(r:json().peer_port), r.reused
  end
  print("ports " .. table.concat(ports, " "))
  print("reused " .. tostring(reused[1]) .. " " .. tostring(reused[4]))
end)
""")
        self.assertExit(proc, 0)
        ports = re.search(r"ports ([\d ]+)", proc.stdout).group(1).split()
        self.assertEqual(len(set(ports)), 1,
                         f"expected all 4 requests on one connection (one client port), saw ports {ports}")
        self.assertIn("reused false true", proc.stdout)

    def test_fresh_opens_a_connection_of_its_own_and_does_not_keep_it(self):
        proc, _ = self.run_book(f"""
step("fresh", function()
  local ports = {{}}
  ports[1] = math.tointeger(http.get({lua(self.url('/echo'))}):json().peer_port)
  ports[2] = math.tointeger(http.get({lua(self.url('/echo'))}, {{ fresh = true }}):json().peer_port)
  ports[3] = math.tointeger(http.get({lua(self.url('/echo'))}):json().peer_port)
  print("ports " .. table.concat(ports, " "))
end)
""")
        self.assertExit(proc, 0)
        a, b, c = re.search(r"ports (\d+) (\d+) (\d+)", proc.stdout).groups()
        self.assertNotEqual(a, b, "fresh = true must not reuse the kept connection")
        self.assertEqual(a, c, "the kept connection is still there after a fresh request")

    def test_json_of_a_non_json_body_names_the_url(self):
        proc, _ = self.run_book(f"""
step("json", function()
  local r = http.get({lua(self.url('/text'))})
  r:json()
end)
""")
        self.assertExit(proc, 1)
        self.assertRegex(proc.stdout, rf"t\.lua:{self.line('r:json()')}: http GET http://127\.0\.0\.1:\d+/text: the response is not JSON "
                                      r"\(status 200, content-type text/plain; body: \"hello, not json")

    def test_misuse_is_refused_at_the_calling_line(self):
        proc, events = self.run_book(f"""
step("typo", function()
  http.get({lua(self.url('/json?typo'))}, {{ timout = 5 }})
end)
""")
        self.assertExit(proc, 1)
        self.assertRegex(proc.stdout, r't\.lua:4: http\.get: unknown option "timout" \(options: .*timeout')
        self.assertNotIn(("GET", "/json?typo"), self.srv.requests(), "a refused call must not reach the server")
        proc, _ = self.run_book("""
step("scheme", function() http.get("ftp://example.com/") end)
""")
        self.assertExit(proc, 1)
        self.assertIn('t.lua:3: http.get: expected an http:// or https:// URL, got "ftp://example.com/"',
                      proc.stdout)


class TestHttpErrors(HttpCase):
    def test_connection_refused(self):
        self.assertFailsWith(f"""
step("refused", function() http.get("http://127.0.0.1:{self.srv.refused}/health") end)
""", r"http GET http://127\.0\.0\.1:\d+/health: connection refused "
     r"by 127\.0\.0\.1:\d+ \(is the service running and listening on port \d+\? check the URL/--target\)",
     at="http.get(")

    def test_name_not_resolved(self):
        self.assertFailsWith("""
step("dns", function() http.get("http://no-such-host.invalid/health", { timeout = 10 }) end)
""", r"http GET http://no-such-host\.invalid/health: cannot resolve host name 'no-such-host\.invalid' "
     r"\(check the host name in the URL/--target and DNS\)", at="http.get(")

    def test_timeout_when_the_server_accepts_and_never_answers(self):
        started = time.monotonic()
        call = self.assertFailsWith(f"""
step("silent", function() http.get("http://127.0.0.1:{self.srv.blackhole}/", {{ timeout = 1 }}) end)
""", r"http GET http://127\.0\.0\.1:\d+/: timed out after 1\.0 s waiting for the response "
     r"\(the server accepted the connection but did not answer: is it stuck or overloaded, or not "
     r"an HTTP server\? timeout= raises the limit\)", at="http.get(")
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(call["duration"], 0.95, f"expected the timeout to fire after 1 s, saw {call}")
        self.assertLess(call["duration"], 1.6, f"expected the timeout to fire at 1 s, saw {call}")
        self.assertLess(elapsed, 5, f"expected the whole run to end soon after the timeout, took {elapsed:.1f} s")

    def test_connect_timeout_when_the_connection_is_never_accepted(self):
        call = self.assertFailsWith(f"""
step("no accept", function()
  http.get("http://127.0.0.1:{self.srv.full}/", {{ timeout = 10, connect_timeout = 0.5 }})
end)
""", r"http GET http://127\.0\.0\.1:\d+/: connect timed out after 0\.5 s \(is the host up, and "
     r"the port not dropped by a firewall\? check the URL/--target; connect_timeout= raises the limit\)",
     at="http.get(")
        self.assertLess(call["duration"], 1.5, f"expected connect_timeout to bound the call, saw {call}")

    def test_timeout_during_a_tls_handshake_that_never_completes(self):
        self.assertFailsWith(f"""
step("silent tls", function() http.get("https://127.0.0.1:{self.srv.blackhole}/", {{ timeout = 0.5 }}) end)
""", r"http GET https://127\.0\.0\.1:\d+/: TLS handshake timed out after 0\.5 s",
                             at="http.get(")

    def test_tls_verify_failure_without_the_ca(self):
        self.assertFailsWith(f"""
step("verify", function() http.get({lua(self.url('/json', tls=True))}) end)
""", r"http GET https://localhost:\d+/json: TLS certificate verify failed \(SSL certificate "
     r"problem: unable to get local issuer certificate; pass cacert= or insecure=true knowingly\)",
            at="http.get(")

    def test_tls_name_mismatch_is_a_verify_failure(self):
        self.assertFailsWith(f"""
step("name", function()
  http.get("https://127.0.0.2:{self.srv.https_other}/json", {{ cacert = {lua(self.srv.ca)} }})
end)
""", r"http GET https://127\.0\.0\.2:\d+/json: TLS certificate verify failed \(.*127\.0\.0\.2.*; "
     r"pass cacert= or insecure=true knowingly\)", at="http.get(")

    def test_tls_handshake_failure_on_a_plain_http_port(self):
        self.assertFailsWith(f"""
step("handshake", function() http.get("https://127.0.0.1:{self.srv.http}/json") end)
""", r"http GET https://127\.0\.0\.1:\d+/json: TLS handshake failed \(.*wrong version number; "
     r"is this really a TLS port\? check http:// vs https://", at="http.get(")

    def test_step_timeout_stops_a_request(self):
        call = self.assertFailsWith(f"""
step("limited", {{ timeout = 0.5 }}, function()
  http.get("http://127.0.0.1:{self.srv.blackhole}/", {{ timeout = 30 }})
end)
""", r"http GET http://127\.0\.0\.1:\d+/: request stopped: the step's timeout ran out", at="http.get(")
        self.assertLess(call["duration"], 1.5)


class TestHttpTls(HttpCase):
    def test_certificate_subject_issuer_and_expiry_with_a_private_ca(self):
        proc, events = self.run_book(f"""
step("tls", function()
  for i = 1, 2 do
    local r = http.get({lua(self.url('/json', tls=True))}, {{ cacert = {lua(self.srv.ca)} }})
    local t = r.tls
    print(string.format("tls %d reused=%s subject=[%s] issuer=[%s] days=%.3f expires=%d verified=%s",
      i, tostring(r.reused), t.subject, t.issuer, t.expires_in_days, t.expires, tostring(t.verified)))
  end
  local ip = http.get("https://127.0.0.1:{self.srv.https}/json", {{ cacert = {lua(self.srv.ca)} }})
  assert(ip.status == 200 and ip.tls.subject:find("localhost"))
end)
""")
        self.assertExit(proc, 0)
        lines = re.findall(r"tls (\d) reused=(\w+) subject=\[(.*?)\] issuer=\[(.*?)\] days=([\d.]+) "
                           r"expires=(\d+) verified=(\w+)", proc.stdout)
        self.assertEqual(len(lines), 2, proc.stdout)
        for i, reused, subject, issuer, days, expires, verified in lines:
            self.assertIn("CN = localhost", subject)
            self.assertIn("CN = runbook test CA", issuer)
            self.assertTrue(CERT_DAYS - 1 < float(days) <= CERT_DAYS + 0.01,
                            f"expected about {CERT_DAYS} days to expiry, saw {days}")
            self.assertAlmostEqual(int(expires), time.time() + CERT_DAYS * 86400, delta=2 * 86400)
            self.assertEqual(verified, "true")
        self.assertEqual([l[1] for l in lines], ["false", "true"],
                         "expected the second request on the reused connection, with the same TLS details")
        call = self.calls(events)[0]
        self.assertIn("CN = localhost", call["result"]["tls"]["subject"])

    def test_insecure_is_an_explicit_opt_out_shown_and_recorded(self):
        proc, events = self.run_book(f"""
step("insecure", function()
  local r = http.get({lua(self.url('/json', tls=True))}, {{ insecure = true }})
  print("insecure status " .. r.status .. " verified=" .. tostring(r.tls.verified))
end)
""")
        self.assertExit(proc, 0)
        self.assertIn("insecure status 200 verified=false", proc.stdout)
        self.assertRegex(proc.stdout, r"warning:.* TLS verification is off for http GET https://localhost:\d+/json "
                                      r"\(insecure=true\)")
        call = self.calls(events)[0]
        self.assertIs(call["args"].get("insecure"), True, f"expected insecure recorded, saw {call['args']}")
        self.assertIs(call["result"]["tls"]["verified"], False)

    def test_verification_is_on_by_default_and_not_shared_with_insecure_connections(self):
        # an insecure connection must not be reused by a later verifying call
        self.assertFailsWith(f"""
step("mixed", function()
  http.get({lua(self.url('/json', tls=True))}, {{ insecure = true }})
  http.get({lua(self.url('/json', tls=True))}, {{ timeout = 5 }})
end)
""", r"http GET https://localhost:\d+/json: TLS certificate verify failed", at="timeout = 5")


class TestHttpRedaction(HttpCase):
    def test_credentials_never_reach_the_transcript_or_the_screen(self):
        secrets = ["urlpassw0rd", "bearer-tok-123456", "sessioncookie987", "apikey-xyz-555", "viasecret-424242"]
        url = self.url("/echo").replace("http://", "http://admin:urlpassw0rd@")
        proc, events = self.run_book(f"""
step("creds", function()
  local r = http.get({lua(url)}, {{ headers = {{
    Authorization = "Bearer bearer-tok-123456",
    Cookie = "session=sessioncookie987",
    ["X-Api-Key"] = "apikey-xyz-555",
    ["X-Custom"] = secret("viasecret-424242"),
  }} }})
  local h = r:json().headers
  assert(h.authorization == "Bearer bearer-tok-123456", "the server got the Authorization header")
  assert(h.cookie == "session=sessioncookie987")
  assert(h["x-api-key"] == "apikey-xyz-555" and h["x-custom"] == "viasecret-424242")
  print("echoed: " .. r.body)
  log.info("asked %s", {lua(url)})
  http.get({lua(url.replace('/echo', '/status/500'))}, {{ expect = 200,
    headers = {{ Authorization = "Bearer bearer-tok-123456" }} }})
end)
""")
        self.assertExit(proc, 1)   # the last call fails on purpose: its error goes through redaction too
        self.assertIn("echoed: ", proc.stdout)
        self.assertIn("admin:***@", proc.stdout)
        with open(self.path("t.jsonl")) as f:
            transcript = f.read()
        for s in secrets:
            self.assertNotIn(s, proc.stdout, f"secret {s} reached the screen")
            self.assertNotIn(s, proc.stderr, f"secret {s} reached stderr")
            self.assertNotIn(s, transcript, f"secret {s} reached the transcript")
        import base64
        basic = base64.b64encode(b"admin:urlpassw0rd").decode()
        self.assertNotIn(basic, proc.stdout, "the Basic credentials curl made from the URL reached the screen")
        self.assertNotIn(basic, transcript)
        call = self.calls(events)[0]
        self.assertEqual(call["args"]["headers"]["Authorization"], "***")
        self.assertEqual(call["args"]["headers"]["Cookie"], "***")
        self.assertEqual(call["args"]["headers"]["X-Api-Key"], "***")
        self.assertIn("admin:***@", call["args"]["url"])


class TestHttpDryRun(HttpCase):
    def test_dry_run_runs_get_for_real_and_simulates_other_methods(self):
        marker = f"dry{os.getpid()}{int(time.time() * 1000) % 100000}"
        proc, events = self.run_book(f"""
step("dry", function()
  local g = http.get({lua(self.url('/status/201?' + marker))})
  print("get status " .. g.status)
  local p = http.post({lua(self.url('/echo?post' + marker))}, {{ json = {{ a = 1 }}, expect = 201 }})
  print("post status " .. p.status .. " dry_run=" .. tostring(p.dry_run) .. " body=[" .. p.body .. "]")
  assert(next(p:json()) == nil)
  local d = http.delete({lua(self.url('/echo?delete' + marker))})
  local ro = http.put({lua(self.url('/echo?readonly' + marker))}, {{ body = "x", readonly = true }})
  print("readonly put ran: " .. ro:json().method)
end)
""", "--dry-run")
        self.assertExit(proc, 0)
        self.assertIn("get status 201", proc.stdout)
        self.assertIn("post status 200 dry_run=true body=[]", proc.stdout)
        self.assertRegex(proc.stdout, r"would run:.* http POST http://127\.0\.0\.1:\d+/echo\?post" + marker)
        self.assertRegex(proc.stdout, r"would run:.* http DELETE ")
        self.assertIn("readonly put ran: PUT", proc.stdout)
        seen = [r for r in self.srv.requests() if marker in r[1]]
        self.assertEqual(sorted(m for m, _ in seen), ["GET", "PUT"],
                         f"expected only the GET and the readonly PUT to reach the server, saw {seen}")
        outcomes = [(c["args"]["method"], c["outcome"]) for c in self.calls(events)]
        self.assertEqual(outcomes, [("GET", "ok"), ("POST", "simulated"), ("DELETE", "simulated"),
                                    ("PUT", "ok")])


class TestHttpScenario(HttpCase):
    def test_a_scenario_result_behaves_like_a_response(self):
        scenario = self.write("scenario.lua", """return {
  { name = "api down", primitive = "http", match = "/health", result = { status = 503, body = '{"db":"down"}' } },
}
""")
        proc, events = self.run_book(f"""
step("rehearse", function()
  local r = http.get({lua(self.url('/health'))})
  print("scenario status " .. r.status .. " db=" .. r:json().db)
  http.get({lua(self.url('/health'))}, {{ expect = 200 }})
end)
""", "--scenario", scenario)
        self.assertExit(proc, 1)
        self.assertIn("scenario status 503 db=down", proc.stdout)
        self.assertRegex(proc.stdout, rf"t\.lua:{self.line('expect = 200')}: http GET http://127\.0\.0\.1:\d+/health: "
                                      r"got status 503, expected 200")
        self.assertNotIn(("GET", "/health"), self.srv.requests(), "a scenario call must not reach the server")


class TestHttpConcurrency(HttpCase):
    def test_fan_out_of_100_gets_through_parallel(self):
        proc, events = self.run_book(f"""
step("fan out", function()
  local base = {lua(self.url('/delay'))}
  local t0 = time.clock()
  http.get(base .. "?ms=100&i=0", {{ quiet = true }})
  local single = time.clock() - t0
  local items = {{}}
  for i = 1, 100 do items[i] = i end
  t0 = time.clock()
  local results = parallel(items, function(i)
    local r = http.get(base .. "?ms=" .. (50 + (i % 4) * 25) .. "&i=" .. i, {{ quiet = true, expect = 200 }})
    return r:json().path
  end)
  local wall = time.clock() - t0
  for i = 1, 100 do
    assert(results[i]:match("&i=" .. i .. "$"), "result " .. i .. " is " .. tostring(results[i]))
  end
  print(string.format("single %.3f s, 100 in parallel %.3f s", single, wall))
end)
""")
        self.assertExit(proc, 0)
        m = re.search(r"single ([\d.]+) s, 100 in parallel ([\d.]+) s", proc.stdout)
        single, wall = float(m.group(1)), float(m.group(2))
        self.assertLess(wall, 100 * single / 10,
                        f"expected 100 parallel GETs well under 100 x {single:.3f} s, took {wall:.3f} s")
        calls = self.calls(events)
        self.assertEqual(len(calls), 101)
        self.assertTrue(all(c["outcome"] == "ok" for c in calls))

    def test_parallel_requests_with_failures_keep_their_own_results(self):
        proc, _ = self.run_book(f"""
step("mixed", function()
  local urls = {{ {lua(self.url('/delay?ms=300'))}, "http://127.0.0.1:{self.srv.refused}/",
    {lua(self.url('/json'))}, "http://127.0.0.1:{self.srv.blackhole}/", {lua(self.url('/status/418'))} }}
  local res, errs = parallel(urls, function(u) return http.get(u, {{ timeout = 1, quiet = true }}).status end,
    {{ check = false }})
  print(string.format("statuses %s %s %s %s %s", tostring(res[1]), tostring(res[2]), tostring(res[3]),
    tostring(res[4]), tostring(res[5])))
  print("err2 " .. tostring(errs[2]))
  print("err4 " .. tostring(errs[4]))
end)
""")
        self.assertExit(proc, 0)
        self.assertIn("statuses 200 nil 200 nil 418", proc.stdout)
        self.assertRegex(proc.stdout, r"err2 .*connection refused")
        self.assertRegex(proc.stdout, r"err4 .*timed out after 1\.0 s")


class TestHttpInterrupt(HttpCase):
    def test_ctrl_c_interrupts_a_request_to_a_silent_server(self):
        path = self.write("t.lua", f"""runbook {{ name = "t" }}
step("silent", function()
  http.get("http://127.0.0.1:{self.srv.blackhole}/", {{ timeout = 60 }})
end)
""")
        s = self.pty("run", path, "--transcript", self.path("t.jsonl"))
        s.expect(r"http GET http://127\.0\.0\.1:\d+/")
        time.sleep(0.3)
        pressed = time.monotonic()
        s.ctrl_c()
        s.expect(r"interrupted", timeout=5)
        self.assertLess(time.monotonic() - pressed, 3, "expected Ctrl-C to stop the request within 3 s")
        s.expect(r"\[a\]bort")
        s.sendline("a")
        self.assertEqual(s.wait(), 1)
        calls = self.calls(self.events(self.path("t.jsonl")))
        self.assertRegex(calls[0]["error"], r"http GET http://127\.0\.0\.1:\d+/: request interrupted \(Ctrl-C\)")

    def test_ctrl_c_interrupts_parallel_requests(self):
        path = self.write("t.lua", f"""runbook {{ name = "t" }}
step("silent fan-out", function()
  local items = {{}}
  for i = 1, 20 do items[i] = i end
  parallel(items, function() http.get("http://127.0.0.1:{self.srv.blackhole}/", {{ timeout = 60, quiet = true }}) end)
end)
""")
        s = self.pty("run", path, "--transcript", self.path("t.jsonl"))
        s.expect(r"silent fan-out")
        time.sleep(0.5)
        pressed = time.monotonic()
        s.ctrl_c()
        s.expect(r"interrupted", timeout=5)
        self.assertLess(time.monotonic() - pressed, 3)
        s.expect(r"\[a\]bort")
        s.ctrl_c()          # a second Ctrl-C at the question ends the run
        self.assertEqual(s.wait(), 130)
        calls = self.calls(self.events(self.path("t.jsonl")))
        self.assertEqual(len(calls), 20)
        self.assertTrue(all("interrupted" in c["error"] for c in calls), [c.get("error") for c in calls])


if __name__ == "__main__":
    unittest.main()
