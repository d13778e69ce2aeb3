"""What runbooks used to fake, as engine support: the run's `state` table
is recorded at each step end (redacted: a secret never in clear) and
restored by --resume, also across a resume of a resumed run, a value
hidden whole coming back nil; a step's `requires` are provided before
each attempt, in the step's task, and an undeclared one is a load error
at the step's line; a --scenario rule that replaced no call is named at
the end of the run, on screen and as a `scenario.unused` event."""
import os

from harness import RunbookTestCase, emitted, runbook_path

STATE = runbook_path("state.lua")
REQUIRES = runbook_path("requires.lua")
SECRET = "tok-Secret-4242-xyz"

ECHO = """
runbook { name = "echo", title = "Echo" }
step("Say", { id = "say" }, function()
  local r = exec { "echo", "hello", readonly = true }
  log.info("said: %s", r.stdout)
end)
"""


class State(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.path("marks")
        os.makedirs(self.dir)

    def run_state(self, transcript, *args):
        return self.run_rb("run", STATE, "--transcript", transcript, *args)

    def state_events(self, transcript):
        return [e for e in self.events(transcript) if e["event"] == "state"]

    def test_state_changes_are_recorded_at_each_step_end_with_secrets_hidden(self):
        t = self.path("first.jsonl")
        self.assertExit(self.run_state(t, "-p", f"dir={self.dir}"), 1)
        ev = self.state_events(t)
        self.assertEqual([(e["step"], sorted(e.get("set", {})), e.get("unset"), e.get("redacted")) for e in ev],
                         [("collect", ["count", "gone", "items", "note", "token"], None, ["note", "token"]),
                          ("change", ["count"], ["gone"], None)],
                         "one event per step that changed something, with what changed")
        self.assertEqual(ev[0]["set"]["items"], ["a", "b", {"name": "c", "ratio": 0.25}])
        self.assertEqual(ev[0]["set"]["token"], "***")
        self.assertEqual(ev[0]["set"]["note"], "token is ***")
        self.assertEqual(ev[1]["set"]["count"], 4)
        with open(t) as f:
            self.assertNotIn(SECRET, f.read(), "the secret kept in state reached the transcript")
        self.assertExit(self.run_rb("verify", t), 0)

    def test_resume_restores_the_state_the_old_run_left(self):
        first, second, third = self.path("first.jsonl"), self.path("second.jsonl"), self.path("third.jsonl")
        p = self.run_state(first, "-p", f"dir={self.dir}")
        self.assertExit(p, 1)
        self.assertEqual(emitted(p.stdout)["seen"][0]["count"], 4)
        # resumed at "use", which fails again: a resume of this resume must
        # still have the state of the first run
        p = self.run_state(second, "--resume", first)
        self.assertExit(p, 1)
        self.assertIn(f"resuming {first} at step 3", p.stdout)
        restored = self.state_events(second)[0]
        self.assertEqual(restored["restored_from"], self.events(first)[0]["run"])
        self.assertEqual(restored["set"]["count"], 4)
        self.write("marks/allow", "")
        p = self.run_state(third, "--resume", second)
        self.assertExit(p, 0)
        self.assertIn(f"resuming {second} at step 3", p.stdout,
                      "a resume of a resumed run must start where that run stopped")
        self.assertEqual([e["id"] for e in self.events(third) if e["event"] == "step.end"
                          and e["status"] == "ok"], ["use"])
        seen = emitted(p.stdout)["seen"]
        self.assertEqual(seen, [{"count": 4, "items": ["a", "b", {"name": "c", "ratio": 0.25}],
                                 "note": "token is ***", "hidden_whole": "(nil)", "gone": "(nil)"}],
                         "the resumed run did not start with the state the first run left")
        self.assertIn("state.token comes back as the resumed run recorded it", p.stdout)
        self.assertIn("a value hidden whole (***) is nil", p.stdout)
        for path in (first, second, third):
            with open(path) as f:
                self.assertNotIn(SECRET, f.read())

    def test_start_at_begins_with_an_empty_state(self):
        t = self.path("t.jsonl")
        self.write("marks/allow", "")
        p = self.run_state(t, "-p", f"dir={self.dir}", "--start-at", "use")
        self.assertExit(p, 0)
        self.assertEqual(emitted(p.stdout)["seen"][0]["hidden_whole"], "(nil)")
        self.assertNotIn("count", emitted(p.stdout)["seen"][0])
        self.assertEqual(self.state_events(t), [])


class Requirements(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.path("marks")
        os.makedirs(self.dir)

    def test_a_requirement_is_provided_before_each_attempt_of_the_steps_naming_it(self):
        t = self.path("t.jsonl")
        answers = self.write("answers", "[flaky] !error = retry\n")
        p = self.run_rb("run", REQUIRES, "--transcript", t, "--answers", answers, "-p", f"dir={self.dir}")
        self.assertExit(p, 0)
        with open(os.path.join(self.dir, "provided")) as f:
            self.assertEqual(f.read().split(), ["provided"] * 3, "one, then flaky's two attempts")
        order = [(e["event"], e.get("id") or e.get("step")) for e in self.events(t)
                 if e["event"] in ("step.start", "call")]
        self.assertEqual(order, [("step.start", "plain"), ("step.start", "one"), ("call", "one"),
                                 ("step.start", "flaky"), ("call", "flaky"),
                                 ("step.start", "flaky"), ("call", "flaky")],
                         "the requirement's call is recorded under the step that needs it, each attempt")
        self.assertEqual(emitted(p.stdout)["ran"], ["plain", "one", "flaky", "flaky"])
        self.assertLess(p.stdout.index("$ sh -c"), p.stdout.index('@ran="one"'),
                        "the requirement was not provided before the step's function")

    def test_a_dry_run_simulates_what_a_requirement_changes(self):
        answers = self.write("answers", "[flaky] !error = retry\n")
        p = self.run_rb("run", REQUIRES, "--dry-run", "--answers", answers, "-p", f"dir={self.dir}")
        self.assertExit(p, 0)
        self.assertIn("would run: sh -c", p.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "provided")), "a dry run provided it for real")

    def test_an_undeclared_requirement_is_a_load_error_at_the_steps_line(self):
        rb = self.write("bad.lua", 'runbook { name = "bad" }\n'
                                   'requirement("ticket", function() end)\n'
                                   'step("Go", { requires = { "tikcet" } }, function() end)\n')
        for cmd in (["check", rb], ["run", rb, "--yes"]):
            p = self.run_rb(*cmd)
            self.assertExit(p, 2)
            self.assertIn(f'{rb}:3: step "Go" requires "tikcet", which no requirement("tikcet", fn) declares '
                          "(declared: ticket)", p.stderr)
            self.assertNotIn("traceback", p.stderr.lower())

    def test_requires_must_be_a_list(self):
        rb = self.write("bad.lua", 'runbook { name = "bad" }\nstep("Go", { requires = "x" }, function() end)\n')
        p = self.run_rb("check", rb)
        self.assertExit(p, 2)
        self.assertIn(f'{rb}:2: step "Go": requires must be a list of requirement names', p.stderr)


class UnusedScenarioRules(RunbookTestCase):
    def test_a_rule_that_never_fired_is_named_at_the_end_of_the_run(self):
        rb = self.write("echo.lua", ECHO)
        sc = self.write("sc.lua", 'return {\n'
                                  '  { name = "hello", primitive = "exec", match = "echo hello",\n'
                                  '    result = { stdout = "replaced" } },\n'
                                  '  { name = "edited", primitive = "exec", match = "echo goodbye",\n'
                                  '    result = { code = 1 } },\n'
                                  '}\n')
        t = self.path("t.jsonl")
        p = self.run_rb("run", rb, "--yes", "--scenario", sc, "--transcript", t)
        self.assertExit(p, 0)
        self.assertIn("said: replaced", p.stdout)
        self.assertIn(f"1 of 2 rule(s) of {sc} never fired: this rehearsal did not exercise them", p.stdout)
        self.assertIn(f'rule 2 "edited" ({sc}:4): no exec call matched "echo goodbye"', p.stdout)
        ev = [e for e in self.events(t) if e["event"] == "scenario.unused"]
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual(ev[0]["scenario"], sc)
        self.assertEqual([(r["index"], r["name"], r["line"], r["match"]) for r in ev[0]["rules"]],
                         [(2, "edited", 4, "echo goodbye")])
        names = [e["event"] for e in self.events(t)]
        self.assertLess(names.index("scenario.unused"), names.index("run.end"))

    def test_no_report_when_every_rule_fired(self):
        rb = self.write("echo.lua", ECHO)
        sc = self.write("sc.lua", 'return { { primitive = "exec", match = "echo", result = { stdout = "x" } } }\n')
        t = self.path("t.jsonl")
        p = self.run_rb("run", rb, "--yes", "--scenario", sc, "--transcript", t)
        self.assertExit(p, 0)
        self.assertNotIn("never fired", p.stdout)
        self.assertEqual([e for e in self.events(t) if e["event"] == "scenario.unused"], [])


if __name__ == "__main__":
    import unittest
    unittest.main()
