"""post-incident runbook: transcripts made by really running small runbooks
(a confirmation, commands, a declared severity, a failed step that the
operator skipped), then the report written from them with an answers file
for the root cause, contributing factors and lessons.
"""
import json
import os
import re
import time

from harness import SOURCE_DIR, RunbookTestCase

OUTAGE = r'''
runbook { name = "api-outage", title = "API returns 502", severity = "P2" }
param("service", { help = "the service", default = "api" })
step("Look at the service", { id = "look" }, function(p)
  exec { "echo", "checking " .. p.service, readonly = true }
end)
step("Declare", { id = "declare" }, function(p)
  require("incident").declare("P1", p.service .. " down for every customer")
end)
step("Restart it", { id = "restart" }, function(p)
  confirm("Restart " .. p.service .. " now?")
  exec { "echo", "restarted " .. p.service }
end)
'''

CACHE = r'''
runbook { name = "cache-flush", title = "Flush the cache", severity = "P3" }
param("service", { help = "the service", default = "worker" })
step("Flush", { id = "flush" }, function() exec { "sh", "-c", "echo flush failed >&2; exit 3" } end)
step("Check", { id = "check" }, function() log.info("cache checked") end)
'''

TRIAGED = r'''
runbook { name = "triage-like", title = "Checkout is down", severity = "P1" }
local incident = require("incident")
step("Severity", { id = "severity" }, function()
  incident.confirm("P1", { "checkout answers 502" })
end)
'''

EXPIRING = r'''
runbook { name = "tls-like", title = "Certificate expiring", severity = "P2" }
step("Check", { id = "check" }, function()
  log.warn("severity declared: P3 (a log line is not a declaration)")
  require("incident").declare("P1", "api.example.com expires within 3 days")
end)
'''

QUIET = r'''
runbook { name = "quiet-check", title = "A quiet check", severity = "P2" }
step("Look", { id = "look" }, function() log.info("all fine") end)
'''


def read(path):
    with open(path) as f:
        return f.read()


def md_time(ts):
    """2026-11-23T19:03:03.123Z -> 2026-11-23 19:03:03 UTC"""
    return ts[:10] + " " + ts[11:19] + " UTC"


class PostIncidentCase(RunbookTestCase):
    def make_run(self, name, text, *args, stdin=None):
        book = self.write(f"{name}.lua", text)
        t = self.path(f"{name}.jsonl")
        proc = self.run_rb("run", book, "--transcript", t, *args)
        self.assertIn(proc.returncode, (0, 1), proc.stderr)
        return t

    def make_transcripts(self):
        answers = self.write("a1.txt", "[restart] Restart api now? = yes\n")
        self.t1 = self.make_run("outage", OUTAGE, "--answers", answers)
        time.sleep(0.05)
        answers = self.write("a2.txt", "[flush] !error = skip\n")
        self.t2 = self.make_run("cache", CACHE, "--answers", answers)
        self.e1, self.e2 = self.events(self.t1), self.events(self.t2)

    def post_incident(self, *args):
        self.transcript = self.path("post.jsonl")
        if os.path.exists(self.transcript):
            os.unlink(self.transcript)
        proc = self.run_rb("run", "post-incident", "--transcript", self.transcript, *args, cwd=SOURCE_DIR)
        self.ev = self.events(self.transcript) if os.path.exists(self.transcript) else []
        return proc

    def answers(self, root="The 5.2 deploy halved the API's connection pool",
                factors="No alert on pool saturation", lessons="Load-test pool changes"):
        return self.write("answers.txt",
                          f"[questions] Root cause = {root}\n"
                          f"[questions] Contributing factors = {factors}\n"
                          f"[questions] Lessons learned = {lessons}\n")

    def step_status(self, sid):
        ends = [e for e in self.ev if e["event"] == "step.end" and e["id"] == sid]
        return ends[-1]["status"] if ends else None

    def section(self, text, heading):
        m = re.search(r"^## " + re.escape(heading) + r"[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        self.assertTrue(m, f"expected a '## {heading}' section in:\n{text}")
        return m.group(1)


class TestStatic(RunbookTestCase):
    def test_the_runbook_and_its_scenario_pass_check_and_load(self):
        proc = self.run_rb("check", "post-incident", cwd=SOURCE_DIR)
        self.assertExit(proc, 0)
        self.assertIn("ok: ./runbooks/post-incident.lua", proc.stdout)
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "post-incident.lua")
        self.assertTrue(os.path.exists(scenario), "expected a game-day scenario for post-incident")


class TestReport(PostIncidentCase):
    def test_writes_the_ticket_from_two_transcripts(self):
        self.make_transcripts()
        out = self.path("INC.md")
        proc = self.post_incident("--answers", self.answers(), "-p", f"transcripts={self.t1}, {self.t2}",
                                  "-p", "ticket=7", "-p", f"output={out}")
        self.assertExit(proc, 0)
        text = read(out)
        start = self.e1[0]["ts"]
        end = self.e2[-1]["ts"]
        self.assertRegex(text.splitlines()[0], r"^# INC-\d{4}-\d\d-\d\d-007: API returns 502$")
        self.assertTrue(text.startswith(f"# INC-{start[:10]}-007"), "expected the first run's start date in the ID")
        self.assertIn(f"| ID | INC-{start[:10]}-007 |", text)
        self.assertRegex(text, r"\| Severity \| \*\*P1\*\* \(declared by runbook api-outage at [^|]* "
                               r"in api-outage\) \|")
        self.assertIn(f"| Start | {md_time(start)} |", text)
        self.assertIn(f"| End | {md_time(end)} |", text)
        self.assertRegex(text, r"\| Duration \| \d+(\.\d)? s \|")
        self.assertIn("| Affected services | api, worker |", text)
        self.assertIn("| Runbooks run | api-outage (done), cache-flush (done) |", text)
        self.assertIn("| Transcripts | 2, all verified |", text)
        self.assertEqual(self.section(text, "Root cause").strip(),
                         "The 5.2 deploy halved the API's connection pool")
        self.assertEqual(self.section(text, "Contributing factors").strip(), "No alert on pool saturation")
        self.assertEqual(self.section(text, "Lessons learned").strip(), "Load-test pool changes")
        timeline = self.section(text, "Timeline")
        rows = [l for l in timeline.splitlines() if l.startswith("| ") and not l.startswith("| Time")]
        n_events = len([e for e in self.e1 + self.e2 if e["event"] != "param"])
        self.assertEqual(len(rows), n_events, f"expected a timeline row per event:\n{timeline}")
        self.assertTrue(any("api-outage" in r and 'Step 3 "Restart it" started' in r for r in rows), timeline)
        self.assertTrue(any("cache-flush" in r and "Step 1 skipped" in r for r in rows), timeline)
        actions = self.section(text, "Actions taken")
        self.assertIn("exec `echo restarted api`: ok", actions)
        self.assertIn("exec `sh -c echo flush failed >&2; exit 3`: failed, exit 3", actions)
        confirmed = self.section(text, "Who confirmed what")
        self.assertRegex(confirmed, r'"Restart api now\?" -> \*\*yes\*\* by answers')
        self.assertRegex(confirmed, r"step flush skipped, decision \*\*skip\*\* by answers")
        prompts = [e for e in self.ev if e["event"] == "prompt"]
        self.assertEqual([p["question"] for p in prompts], ["Root cause", "Contributing factors", "Lessons learned"])
        self.assertEqual(prompts[0]["source"], "answers")
        writes = [e for e in self.ev if e["event"] == "call" and e["step"] == "write" and e["primitive"] == "exec"]
        self.assertEqual(writes[0]["args"]["argv"], ["cp", "/dev/stdin", out])

    def test_severity_is_the_most_severe_runbook_without_a_declaration(self):
        quiet = self.make_run("quiet", QUIET, "--yes")
        cache = self.make_run("cache", CACHE, "--answers", self.write("a.txt", "!error = skip\n"))
        out = self.path("r.md")
        proc = self.post_incident("--yes", "-p", f"transcripts={cache} {quiet}", "-p", f"output={out}",
                                  "-p", "services=checkout")
        self.assertExit(proc, 0)
        text = read(out)
        self.assertRegex(text, r"^# INC-\d{4}-\d\d-\d\d-001: A quiet check\n")
        self.assertIn("| Severity | **P2** (no severity was recorded; the most severe runbook run) |", text)
        self.assertIn("| Affected services | checkout |", text)
        self.assertEqual(self.section(text, "Root cause").strip(), "to be determined",
                         "expected --yes to take the draft default")

    def test_severity_comes_from_the_recorded_events_not_the_last_log_line(self):
        # The operator changed triage's proposal P1 to P0; a later run declared
        # P1 (and logged a "severity declared" line): the incident was P0.
        triaged = self.make_run("triaged", TRIAGED, "--answers",
                                self.write("t.txt", "[severity] Severity for this incident? = P0\n"))
        time.sleep(0.05)
        expiring = self.make_run("expiring", EXPIRING, "--yes")
        sev = [e for e in self.events(triaged) if e["event"] == "severity"]
        self.assertEqual([(e["action"], e["level"]) for e in sev], [("proposed", "P1"), ("changed", "P0")])
        self.assertEqual(sev[1]["previous"], "P1")
        self.assertRegex(sev[1]["by"], r"^[^@ ]+@[^@ ]+$", "expected the operator as user@host")
        self.assertEqual(sev[0]["by"], "runbook triage-like")
        out = self.path("sev.md")
        proc = self.post_incident("--yes", "-p", f"transcripts={expiring} {triaged}", "-p", f"output={out}")
        self.assertExit(proc, 0)
        text = read(out)
        self.assertRegex(text, r"\| Severity \| \*\*P0\*\* \(changed by [^@ ]+@[^ ]+ at [^|]* in triage-like\) \|")
        history = self.section(text, "Severity")
        rows = [l for l in history.splitlines() if l.startswith("| ") and not l.startswith("| Time")]
        self.assertEqual(len(rows), 3, history)
        self.assertIn("| P1 | proposed |", rows[0])
        self.assertIn("| P0 | changed from P1 |", rows[1])
        self.assertIn("| P1 | declared | runbook tls-like | tls-like |", rows[2])

    def test_dry_run_shows_where_it_would_write_and_writes_nothing(self):
        self.make_transcripts()
        proc = self.post_incident("--dry-run", "--answers", self.answers(), "-p", f"transcripts={self.t1}")
        self.assertExit(proc, 0)
        name = f"INC-{self.e1[0]['ts'][:10]}-001.md"
        self.assertIn(f"would run: cp /dev/stdin {name}", proc.stdout)
        self.assertRegex(proc.stdout, r"dry run: the report \(\d+ lines\) would be written to " + re.escape(name))
        self.assertFalse(os.path.exists(os.path.join(SOURCE_DIR, name)), "expected nothing written")

    def test_an_existing_report_is_replaced_only_after_confirmation(self):
        self.make_transcripts()
        out = self.write("old.md", "the old report\n")
        answers = self.write("ans.txt", read(self.answers())
                             + f"[write] {out} exists. Replace it? = no\n[write] !error = abort\n")
        proc = self.post_incident("--answers", answers, "-p", f"transcripts={self.t1}", "-p", f"output={out}")
        self.assertExit(proc, 1)
        self.assertEqual(self.step_status("write"), "declined")
        self.assertEqual(read(out), "the old report\n")

    def test_a_tampered_transcript_is_flagged_in_the_report(self):
        self.make_transcripts()
        lines = read(self.t2).splitlines()
        ev = json.loads(lines[1])
        ev["value"] = "edited"
        lines[1] = json.dumps(ev)
        with open(self.t2, "w") as f:
            f.write("\n".join(lines) + "\n")
        out = self.path("r.md")
        proc = self.post_incident("--answers", self.answers(), "-p", f"transcripts={self.t1},{self.t2}",
                                  "-p", f"output={out}")
        self.assertExit(proc, 0)
        self.assertIn("| Transcripts | 2, **1 do not verify** |", read(out))
        self.assertTrue(any("does not verify" in e.get("message", "") for e in self.ev if e["event"] == "log"))

    def test_scenario_disk_full_fails_the_write(self):
        self.make_transcripts()
        scenario = os.path.join(SOURCE_DIR, "examples", "scenarios", "post-incident.lua")
        out = self.path("r.md")
        proc = self.post_incident("--dry-run", "--scenario", scenario, "--answers", self.answers(),
                                  "-p", f"transcripts={self.t1}", "-p", f"output={out}")
        self.assertExit(proc, 1)
        self.assertEqual(self.step_status("questions"), "ok")
        self.assertEqual(self.step_status("write"), "failed")
        end = [e for e in self.ev if e["event"] == "step.end" and e["id"] == "write"][-1]
        self.assertIn("No space left on device", end["error"])
        self.assertFalse(os.path.exists(out))

    def test_an_operator_types_the_answers_on_a_terminal(self):
        self.make_transcripts()
        out = self.path("typed.md")
        s = self.pty("run", "post-incident", "-p", f"transcripts={self.t1}", "-p", f"output={out}",
                     cwd=SOURCE_DIR)
        s.expect(r"Root cause \[to be determined\]: ")
        s.sendline("Expired certificate on the load balancer")
        s.expect(r"Contributing factors \[to be determined\]: ")
        s.sendline("")
        s.expect(r"Lessons learned \[to be determined\]: ")
        s.sendline("Alert 21 days before expiry")
        self.assertEqual(s.wait(), 0, s.output)
        text = read(out)
        self.assertEqual(self.section(text, "Root cause").strip(), "Expired certificate on the load balancer")
        self.assertEqual(self.section(text, "Contributing factors").strip(), "to be determined")
        self.assertEqual(self.section(text, "Lessons learned").strip(), "Alert 21 days before expiry")

    def test_missing_transcript_names_the_file(self):
        proc = self.post_incident("--yes", "-p", f"transcripts={self.path('nope.jsonl')}")
        self.assertExit(proc, 1)
        self.assertEqual(self.step_status("load"), "failed")
        self.assertIn("nope.jsonl", proc.stdout + proc.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
