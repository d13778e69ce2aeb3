"""`runbook report` renders transcripts as a Markdown timeline, and
`runbook list` shows every runbook the project ships."""
import os
import re

from harness import SOURCE_DIR, RunbookTestCase

RUNBOOK = """
runbook { name = "rpt", title = "Report me", severity = "P1" }
param("token", { secret = true, default = "tok-5a5a5a5a" })
step("Look", { id = "look" }, function(p) exec { "echo", "looking", readonly = true } end)
step("Ask", { id = "ask" }, function() confirm("Proceed with the fix?") end)
step("Fix", { id = "fix" }, function(p) sh("exit 4") end)
"""


class Report(RunbookTestCase):
    def make_transcript(self, name, answers):
        rb = self.write("rpt.lua", RUNBOOK)
        a = self.write(f"{name}.answers", answers)
        t = self.path(f"{name}.jsonl")
        p = self.run_rb("run", rb, "--answers", a, "--transcript", t)
        self.assertExit(p, 0 if "skip" in answers else 1)
        return t

    def test_timeline_actions_and_confirmations(self):
        t = self.make_transcript("one", "[ask] Proceed with the fix? = yes\n[fix] !error = skip\n")
        p = self.run_rb("report", t)
        self.assertExit(p, 0)
        md = p.stdout
        self.assertTrue(md.startswith("# Incident timeline: Report me"), md[:200])
        self.assertIn("| Status | done |", md)
        self.assertRegex(md, r"\| Duration \| \d\.\d s \|", "a run under 10 s says its tenths, not 0 s")
        self.assertIn("verified, ", md)
        self.assertRegex(md, r"\| \d\d:\d\d:\d\d\.\d{3} \| Step 1 \"Look\" started \|")
        self.assertIn("exec `echo looking`: ok, exit 0", md)
        self.assertIn("sh `exit 4`: failed, exit 4", md)
        self.assertIn("Step 3 skipped: ", md)
        self.assertRegex(md, r"\"Proceed with the fix\?\" -> \*\*yes\*\* by answers")
        self.assertRegex(md, r"step fix skipped, decision \*\*skip\*\* by answers")
        self.assertNotIn("tok-5a5a5a5a", md)
        self.assertNotRegex(md, r"exit \d+\.0", "integers must not print as floats")

    def test_the_retry_question_answered_from_a_file_is_shown_as_asked(self):
        rb = self.write("rpt.lua", RUNBOOK)
        a = self.write("skip.answers", "[ask] Proceed with the fix? = yes\n[fix] !error = skip\n")
        p = self.run_rb("run", rb, "--answers", a, "--transcript", self.path("s.jsonl"))
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, r"\? Step 3 failed\. \[r\]etry, \[s\]kip, \[a\]bort\? "
                         r"\[from answers file: skip\]")
        self.assertNotIn("!error", p.stdout)

    def test_a_file_call_names_its_path(self):
        note = self.path("note.txt")
        rb = self.write("files.lua", f"""
runbook {{ name = "files" }}
step("Write", function() file.write("{note}", "x") file.stat("{note}") end)
""")
        t = self.path("files.jsonl")
        self.assertExit(self.run_rb("run", rb, "--yes", "--transcript", t), 0)
        md = self.run_rb("report", t).stdout
        self.assertIn(f"file.write `{note}`: ok", md)
        self.assertIn(f"file.stat `{note}`: ok", md)

    def test_a_redis_call_shows_its_command(self):
        # the call event as prim/redis.lua records it (its argv as a list)
        t = self.write("redis.jsonl", '{"seq":1,"ts":"2026-12-02T06:00:00.000Z","run":"r1",'
                       '"event":"run.start","runbook":"r","operator":"o","host":"h"}\n'
                       '{"seq":2,"ts":"2026-12-02T06:00:00.001Z","run":"r1",'
                       '"event":"call","primitive":"redis.call","outcome":"ok","step":"s",'
                       '"args":{"server":"127.0.0.1:6379","command":["GET","k"]}}\n')
        md = self.run_rb("report", t).stdout
        self.assertIn("redis.call `GET k`: ok", md)

    def test_a_redacted_value_stays_three_stars_in_the_html_page(self):
        rb = self.write("sec.lua", """
runbook { name = "sec" }
param("token", { secret = true, default = "tok-7c7c7c7c" })
step("Say", function(p) log.info("the token is " .. p.token) end)
""")
        t = self.path("sec.jsonl")
        self.assertExit(self.run_rb("run", rb, "--yes", "--transcript", t), 0)
        page = self.run_rb("report", "--html", t).stdout
        self.assertIn("the token is ***", page)
        self.assertNotIn("tok-7c7c7c7c", page)

    def test_several_transcripts_merge_into_one_timeline(self):
        a = self.make_transcript("a", "[ask] Proceed with the fix? = no\n")
        b = self.make_transcript("b", "[ask] Proceed with the fix? = yes\n[fix] !error = skip\n")
        p = self.run_rb("report", a, b, "-o", self.path("r.md"))
        self.assertExit(p, 0)
        with open(self.path("r.md")) as f:
            md = f.read()
        self.assertEqual(len(re.findall(r"^## Run ", md, re.M)), 2, md)
        self.assertIn("| Time | Run | Event |", md)
        times = re.findall(r"^\| (\d\d:\d\d:\d\d\.\d{3}) \|", md, re.M)
        self.assertEqual(times, sorted(times), "the merged timeline must be in time order")

    def test_a_tampered_transcript_is_flagged(self):
        t = self.make_transcript("t", "[ask] Proceed with the fix? = yes\n[fix] !error = skip\n")
        with open(t) as f:
            lines = f.readlines()
        n = next(i for i, line in enumerate(lines) if '"event":"step.start"' in line)
        edited = lines[n].replace('"title":"Look"', '"title":"Lock"')
        self.assertNotEqual(edited, lines[n])
        lines[n] = edited
        with open(t, "w") as f:
            f.writelines(lines)
        p = self.run_rb("report", t)
        self.assertExit(p, 0)
        self.assertIn(f"**does not verify** at line {n + 1}", p.stdout)

    def test_usage_errors(self):
        self.assertExit(self.run_rb("report"), 2)
        p = self.run_rb("report", self.path("missing.jsonl"))
        self.assertExit(p, 2)
        self.assertIn("missing.jsonl", p.stderr)


class ListShipped(RunbookTestCase):
    def test_list_shows_every_shipped_runbook_with_severity_and_title(self):
        p = self.run_rb("list", cwd=SOURCE_DIR)
        self.assertExit(p, 0)
        shipped = sorted(f[:-4] for f in os.listdir(os.path.join(SOURCE_DIR, "runbooks"))
                         if f.endswith(".lua"))
        for name in ("triage", "api-issues", "service-restart", "db-diagnose", "db-restore",
                     "tls-renewal", "rollback", "post-incident"):
            self.assertIn(name, shipped, f"runbooks/{name}.lua is not shipped")
        for name in shipped:
            self.assertRegex(p.stdout, rf"(?m)^{re.escape(name)}\s+P[0-3]\s+\S", p.stdout)
