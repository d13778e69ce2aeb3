"""`--json` on list, show, check and verify: one JSON value on stdout in
the shape docs/json.md gives, the same exit codes as without it, and
nothing on stdout for an error before there is anything to report."""
import json
import os

from harness import SOURCE_DIR, RunbookTestCase

RUNBOOK = """
runbook { name = "shape", title = "Shape of things", severity = "P2", tags = { "db" } }
param("token", { secret = true, default = "tok-9c9c9c9c" })
param("mode", { help = "how", choices = { "fast", "slow" }, default = "fast" })
step("Look", { id = "look" }, function(p) exec { "true", readonly = true } end)
step("Change", { id = "change", dangerous = true, timeout = 30, undo = function() end }, function() end)
"""

BAD = """
runbook { name = "bad", title = "Bad" }
step("Use", function(p) print(p.nowhere) end)
"""


class Json(RunbookTestCase):
    def json_of(self, *args, code=0, **kw):
        p = self.run_rb(*args, **kw)
        self.assertExit(p, code)
        self.assertEqual(p.stdout.count("\n"), 1, "one line of JSON: " + p.stdout)
        return json.loads(p.stdout)

    def test_list_gives_every_runbook_list_shows(self):
        got = self.json_of("list", "--json", cwd=SOURCE_DIR)
        self.assertIsInstance(got, list)
        text = self.run_rb("list", cwd=SOURCE_DIR).stdout.splitlines()[1:]
        self.assertEqual([r["name"] for r in got], [line.split()[0] for line in text])
        triage = next(r for r in got if r["name"] == "triage")
        self.assertEqual(set(triage), {"name", "file", "dir", "severity", "title"})
        self.assertEqual((triage["file"], triage["dir"], triage["severity"]),
                         ("./runbooks/triage.lua", "./runbooks", "P1"))

    def test_list_names_a_runbook_that_does_not_load(self):
        self.write("runbooks/broken.lua", "step('x', function() end\n")
        got = self.json_of("list", "--json")
        broken = next(r for r in got if r["name"] == "broken")
        self.assertIn("broken.lua:", broken["error"])
        self.assertNotIn("severity", broken)

    def test_show_gives_the_plan_and_hides_a_secret_default(self):
        rb = self.write("shape.lua", RUNBOOK)
        p = self.run_rb("show", "--json", rb)
        self.assertExit(p, 0)
        self.assertNotIn("tok-9c9c9c9c", p.stdout)
        self.assertNotIn("\\/", p.stdout, "paths are written with plain slashes")
        got = json.loads(p.stdout)
        self.assertEqual({k: got[k] for k in ("name", "title", "severity", "tags", "file", "markdown")},
                         {"name": "shape", "title": "Shape of things", "severity": "P2", "tags": ["db"],
                          "file": rb, "markdown": False})
        self.assertEqual(got["params"][0], {"name": "token", "required": False, "secret": True, "default": "***"})
        self.assertEqual(got["params"][1]["choices"], ["fast", "slow"])
        self.assertEqual(got["steps"][0], {"index": 1, "id": "look", "title": "Look", "dangerous": False,
                                           "verify": False, "undo": False})
        self.assertEqual(got["steps"][1], {"index": 2, "id": "change", "title": "Change", "dangerous": True,
                                           "verify": False, "undo": True, "timeout": 30})

    def test_show_of_a_markdown_checklist(self):
        md = os.path.join(SOURCE_DIR, "examples", "markdown", "oncall-checklist.md")
        got = self.json_of("show", "--json", md)
        self.assertTrue(got["markdown"])
        self.assertGreater(len(got["steps"]), 0)

    def test_check_says_which_problems_and_keeps_exit_2(self):
        good = self.write("shape.lua", RUNBOOK)
        bad = self.write("bad.lua", BAD)
        got = self.json_of("check", "--json", good, bad, "nosuchbook", code=2)
        self.assertFalse(got["ok"])
        g, b, missing = got["runbooks"]
        self.assertEqual((g["name"], g["ok"], g["steps"], g["params"], g["problems"]), (good, True, 2, 2, []))
        self.assertFalse(b["ok"])
        prob = next(x for x in b["problems"] if "nowhere" in x["message"])
        self.assertEqual((prob["file"], prob["line"]), (bad, 3))
        self.assertEqual(prob["text"], f"{bad}:3: {prob['message']}")
        self.assertFalse(missing["ok"])
        self.assertNotIn("steps", missing)
        self.assertIn("nosuchbook", missing["problems"][0]["message"])
        self.assertTrue(self.json_of("check", "--json", good)["ok"])

    def test_check_usage_error_leaves_stdout_empty(self):
        p = self.run_rb("check", "--json")
        self.assertExit(p, 2)
        self.assertEqual(p.stdout, "")

    def make_transcript(self):
        rb = self.write("shape.lua", RUNBOOK)
        t = self.path("t.jsonl")
        self.assertExit(self.run_rb("run", rb, "--yes", "--transcript", t), 0)
        with open(t) as f:
            return t, f.readlines()

    def test_verify_intact_tampered_and_expected_hash(self):
        t, lines = self.make_transcript()
        got = self.json_of("verify", "--json", t)
        last = json.loads(lines[-1])["hash"]
        self.assertEqual(got, {"file": t, "ok": True, "lines": len(lines), "last_hash": last, "ended": True})
        other = "0" * 64
        got = self.json_of("verify", "--json", "--expect-hash", other, t, code=1)
        self.assertFalse(got["ok"])
        self.assertEqual(got["expect_hash"], other)
        self.assertIn("no line has the expected hash", got["reason"])
        first = json.loads(lines[0])["hash"]
        got = self.json_of("verify", "--json", "--expect-hash", first, t, code=1)
        self.assertEqual(got["expect_line"], 1)
        lines[2] = lines[2].replace('"seq":3', '"seq":33')
        with open(t, "w") as f:
            f.writelines(lines)
        got = self.json_of("verify", "--json", t, code=1)
        self.assertEqual((got["ok"], got["bad_line"], got["lines"], got["ended"]), (False, 3, 2, False))
        self.assertIn("reason", got)

    def test_verify_of_a_missing_file_leaves_stdout_empty(self):
        p = self.run_rb("verify", "--json", self.path("nope.jsonl"))
        self.assertExit(p, 2)
        self.assertEqual(p.stdout, "")
        self.assertIn("nope.jsonl", p.stderr)
