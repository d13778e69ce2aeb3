"""runbook run, piped (stdin not a terminal): declaration, params, steps in
order, questions answered by --yes or --answers or not at all, dry run,
--start-at and --resume, exit codes.  Interactive runs are in
test_interactive.py, the transcript file itself in test_transcript.py."""
import os
import re
import shutil
import unittest

from harness import LUA_EMIT, LUA_PEAK_RSS, SOURCE_DIR, RunbookTestCase, emitted, runbook_path

FLOW = runbook_path("flow.lua")
QUESTIONS = runbook_path("questions.lua")
FLAKY = runbook_path("flaky.lua")
DRYRUN = runbook_path("dryrun.lua")
RESUME = runbook_path("resume.lua")
DECLARE = runbook_path("declare.lua")


def line_of(path, text):
    """1-based number of the first line of path containing text."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if text in line:
                return n
    raise AssertionError(f"{text!r} not in {path}")


class RunTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.marks = self.path("marks")
        os.makedirs(self.marks)
        self.transcript = self.path("t.jsonl")

    def run_file(self, runbook, *args, **kw):
        return self.run_rb("run", runbook, "--transcript", self.transcript, *args, **kw)

    def marks_made(self):
        return sorted(os.listdir(self.marks))

    def step_ends(self):
        return [(e["id"], e["status"]) for e in self.events(self.transcript)
                if e["event"] == "step.end"]

    def assertInOrder(self, text, parts):
        pos = 0
        for part in parts:
            i = text.find(part, pos)
            self.assertGreaterEqual(i, 0, f"expected {part!r} after offset {pos} in:\n{text}")
            pos = i + len(part)


class StepsAndParams(RunTestCase):
    def test_steps_run_in_order_each_shown_with_outcome_and_duration(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}")
        self.assertExit(p, 0)
        self.assertInOrder(p.stdout, ["[1/3] Greet", "[2/3] Run a command", "[3/3] Levels"])
        # each step's block ends with its outcome and duration
        blocks = re.split(r"^\[\d/3\] ", p.stdout, flags=re.M)[1:]
        self.assertEqual(len(blocks), 3, p.stdout)
        for block in blocks:
            self.assertRegex(block, r"\n\s+ok \(\d+ ms\)\n", f"no 'ok (<duration>)' in:\n{block}")
        self.assertEqual(self.marks_made(), ["1-greet", "2-cmd", "3-levels"])
        starts = [e["id"] for e in self.events(self.transcript) if e["event"] == "step.start"]
        self.assertEqual(starts, ["greet", "cmd", "levels"])
        self.assertEqual(self.step_ends(), [("greet", "ok"), ("cmd", "ok"), ("levels", "ok")])
        self.assertIn("run done", p.stdout)
        call = next(e for e in self.events(self.transcript) if e["event"] == "call" and e["primitive"] == "exec")
        self.assertEqual((call["primitive"], call["args"]["argv"], call["args"]["timeout"]),
                         ("exec", ["echo", "from", "exec"], 60), "exec's default timeout is 60 s")
        self.assertEqual((call["result"]["code"], call["result"]["stdout"]), (0, "from exec\n"))

    def test_param_from_command_line_wins_over_default(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}", "--param=who=alice", "-p", "color=red")
        self.assertExit(p, 0)
        self.assertIn("hello alice in red", p.stdout)
        params = {e["name"]: e for e in self.events(self.transcript) if e["event"] == "param"}
        self.assertEqual((params["who"]["value"], params["who"]["source"]), ("alice", "argument"))
        self.assertEqual((params["fail_at"]["value"], params["fail_at"]["source"]), ("none", "default"))

    def test_default_used_when_param_not_given(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}")
        self.assertExit(p, 0)
        self.assertIn("hello world in blue", p.stdout)

    def test_missing_required_param_stops_before_step_1_with_exit_2(self):
        p = self.run_file(FLOW)
        self.assertExit(p, 2)
        self.assertIn('missing required param "dir"', p.stderr)
        self.assertIn("-p dir=VALUE", p.stderr)
        self.assertNotIn("[1/3]", p.stdout)
        self.assertEqual(self.marks_made(), [], "no step may run when a param is missing")

    def test_unknown_param_is_a_usage_error_naming_it(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}", "-p", "colour=red")
        self.assertExit(p, 2)
        self.assertIn('unknown param "colour"', p.stderr)
        self.assertEqual(self.marks_made(), [])

    def test_value_outside_choices_is_a_usage_error(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}", "-p", "color=green")
        self.assertExit(p, 2)
        self.assertRegex(p.stderr, r'param "color": "green" is not one of: blue, red')

    def test_param_without_equals_is_a_usage_error(self):
        p = self.run_file(FLOW, "-p", "dir")
        self.assertExit(p, 2)
        self.assertIn("expected K=V", p.stderr)

    def test_declaration_phase_only_registers(self):
        # The top level of declare.lua calls exec: it must be refused, the
        # command must not run, and the run stops as a load error.
        mark = self.path("declared-mark")
        p = self.run_file(DECLARE, env={"RB_TEST_MARK": mark})
        self.assertExit(p, 2)
        self.assertIn(f"declare.lua:{line_of(DECLARE, 'exec {')}: exec: cannot run while "
                      "the runbook is being declared", p.stderr)
        self.assertFalse(os.path.exists(mark), "exec ran during the declaration phase")
        self.assertFalse(os.path.exists(self.transcript))

    def test_failed_step_stops_the_run_with_exit_1(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}", "-p", "fail_at=cmd")
        self.assertExit(p, 1)
        self.assertRegex(p.stdout, r"\[2/3\] Run a command\n(.*\n)*\s+failed \(\d+ ms\): .*"
                                   r"exec sh: exited with code 3: broken")
        self.assertNotIn("[3/3]", p.stdout)
        self.assertEqual(self.marks_made(), ["1-greet", "2-cmd"])
        self.assertEqual(self.step_ends(), [("greet", "ok"), ("cmd", "failed")])
        end = self.events(self.transcript)[-1]
        self.assertEqual((end["event"], end["status"], end["exit"]), ("run.end", "aborted", 1))

    def test_step_error_names_the_runbook_file_and_line(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}", "-p", "fail_at=greet")
        self.assertExit(p, 1)
        want = f"flow.lua:{line_of(FLOW, 'greet failed on purpose')}: greet failed on purpose"
        self.assertIn(want, p.stdout)
        p = self.run_rb("run", FLOW, "-p", f"dir={self.marks}", "-p", "fail_at=cmd")
        want = f"flow.lua:{line_of(FLOW, 'exit 3')}: exec sh: exited with code 3"
        self.assertIn(want, p.stdout, "exec's error must point at the runbook line that called it")

    def test_log_levels_on_screen_and_in_transcript(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}")
        self.assertExit(p, 0)
        self.assertIn("info: an info line", p.stdout)
        self.assertIn("warn: a warn line", p.stdout)
        self.assertIn("error: an error line", p.stderr)
        logs = [(e["level"], e["message"]) for e in self.events(self.transcript)
                if e["event"] == "log" and e.get("step") == "levels"]
        self.assertEqual(logs, [("info", "an info line"), ("warn", "a warn line"),
                                ("error", "an error line")])

    def test_no_colour_escapes_when_output_is_not_a_terminal(self):
        p = self.run_file(FLOW, "-p", f"dir={self.marks}", "-p", "fail_at=levels")
        self.assertExit(p, 1)
        self.assertNotIn("\x1b[", p.stdout + p.stderr)

    def test_name_is_looked_up_in_runbooks_dir_then_runbook_path(self):
        os.makedirs(self.path("runbooks"))
        shutil.copy(FLOW, self.path("runbooks", "flow.lua"))
        p = self.run_rb("run", "flow", "-p", f"dir={self.marks}")
        self.assertExit(p, 0)
        other = self.path("elsewhere")
        os.makedirs(other)
        shutil.copy(RESUME, os.path.join(other, "resume.lua"))
        open(os.path.join(self.marks, "allow"), "w").close()
        p = self.run_rb("run", "resume", "-p", f"dir={self.marks}", env={"RUNBOOK_PATH": other})
        self.assertExit(p, 0)
        self.assertIn("[4/4] Four", p.stdout)

    def test_unknown_runbook_name_exits_2_saying_where_it_looked(self):
        p = self.run_rb("run", "no-such-runbook")
        self.assertExit(p, 2)
        self.assertIn('no runbook named "no-such-runbook" in ./runbooks', p.stderr)
        p = self.run_rb("run")
        self.assertExit(p, 2)
        self.assertIn("which runbook?", p.stderr)


class Memory(RunTestCase):
    def test_garbage_is_collected_while_the_runbook_runs(self):
        # The collector is stopped while the modules load (src/alloc.c)
        # and restarted before the command runs: 600 MB of short-lived
        # strings must not stay.
        path = self.write("garbage.lua", 'runbook { name = "garbage" }\n' + LUA_EMIT + LUA_PEAK_RSS + """
step("churn", function()
  local made = 0
  for i = 1, 300000 do made = made + #(string.rep("x", 2000) .. i) end
  emit("made_mb", made // (1024 * 1024))
  emit("rss_kb", peak_rss_kb())
end)
""")
        # (AddressSanitizer keeps 256 MB of freed blocks back: not here)
        env = {"ASAN_OPTIONS": self.env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"}
        p = self.run_file(path, "--yes", env=env, timeout=120)
        self.assertExit(p, 0)
        out = emitted(p.stdout)
        self.assertEqual(out["made_mb"], [573])
        self.assertLess(out["rss_kb"][0], 100 * 1024,
                        f"peak RSS {out['rss_kb'][0]} kB: the collector did not run")


class Questions(RunTestCase):
    def answers(self, text):
        return self.write("answers.txt", text)

    def test_question_without_terminal_is_an_error_naming_it_not_a_hang(self):
        p = self.run_file(QUESTIONS, timeout=20)
        self.assertExit(p, 1)
        self.assertIn('"Has the incident lead approved?"', p.stdout)
        self.assertIn("standard input is not a terminal", p.stdout)
        self.assertIn("id 'approve'", p.stdout)
        self.assertEqual(self.step_ends(), [("approve", "failed")])

    def test_yes_answers_confirmations_and_aborts_on_first_failure(self):
        p = self.run_file(QUESTIONS, "--yes", timeout=20)
        self.assertExit(p, 1)
        self.assertIn("Has the incident lead approved? [--yes]", p.stdout)
        # --yes is for confirmations: a question for a value is still an error
        self.assertIn('"Which replica?"', p.stdout)
        self.assertEqual(self.step_ends(), [("approve", "ok"), ("details", "failed")])
        confirm = [e for e in self.events(self.transcript) if e["event"] == "confirm"]
        self.assertEqual((confirm[0]["answer"], confirm[0]["source"]), ("yes", "yes"))

    def test_answers_file_answers_by_step_id_and_question(self):
        a = self.answers(
            "# rehearsal answers\n"
            "[approve] Has the incident lead approved? = yes\n"
            "[*] Which replica? = any-replica\n"
            "[details] Which replica? = replica-2\n"
            "Which region? = 2\n"
            "Drain first? = no\n"
            "[details] Batch size? = 25\n"
            "[checklist] Tell the status page the restore has started = done\n")
        p = self.run_file(QUESTIONS, "--answers", a)
        self.assertExit(p, 0)
        self.assertIn("replica=replica-2 region=us-east drain=false size=25", p.stdout)
        asked = [(e["event"], e["question"], e["answer"], e["source"])
                 for e in self.events(self.transcript) if e["event"] in ("confirm", "prompt", "manual")]
        self.assertEqual(asked, [
            ("confirm", "Has the incident lead approved?", "yes", "answers"),
            ("prompt", "Which replica?", "replica-2", "answers"),
            ("prompt", "Which region?", "us-east", "answers"),
            ("prompt", "Drain first?", "no", "answers"),
            ("prompt", "Batch size?", "25", "answers"),
            ("manual", "Tell the status page the restore has started", "done", "answers"),
        ])

    def test_yes_takes_defaults_of_questions_that_have_one(self):
        a = self.answers("Which replica? = r1\nWhich region? = eu-west\nDrain first? = yes\n")
        p = self.run_file(QUESTIONS, "--yes", "--answers", a)
        self.assertExit(p, 0)
        self.assertIn("replica=r1 region=eu-west drain=true size=10", p.stdout)

    def test_answer_for_another_step_does_not_apply(self):
        a = self.answers("[details] Has the incident lead approved? = yes\n")
        p = self.run_file(QUESTIONS, "--answers", a, timeout=20)
        self.assertExit(p, 1)
        self.assertIn("answer it with --answers FILE (a line '[approve] Has the incident lead "
                      "approved? = ANSWER')", p.stdout)

    def test_invalid_answer_is_an_error(self):
        a = self.answers("Has the incident lead approved? = maybe\n")
        p = self.run_file(QUESTIONS, "--answers", a)
        self.assertExit(p, 1)
        self.assertIn('"maybe" is not a valid answer to "Has the incident lead approved?"', p.stdout)

    def test_declined_confirmation_declines_the_step(self):
        a = self.answers("Has the incident lead approved? = no\n")
        p = self.run_file(QUESTIONS, "--answers", a)
        self.assertExit(p, 1)
        self.assertIn("declined", p.stdout)
        self.assertEqual(self.step_ends(), [("approve", "declined")])

    def test_malformed_or_missing_answers_file_is_a_usage_error(self):
        a = self.answers("# fine\nno equals sign here\n")
        p = self.run_file(QUESTIONS, "--answers", a)
        self.assertExit(p, 2)
        self.assertIn(f"{a}:2:", p.stderr)
        p = self.run_file(QUESTIONS, "--answers", self.path("missing.txt"))
        self.assertExit(p, 2)
        self.assertIn("missing.txt", p.stderr)


class Failures(RunTestCase):
    def test_yes_aborts_on_the_first_failure(self):
        p = self.run_file(FLAKY, "--yes")
        self.assertExit(p, 1)
        self.assertNotIn("last step ran", p.stdout)
        end = [e for e in self.events(self.transcript) if e["event"] == "step.end"]
        self.assertEqual((end[0]["status"], end[0]["decision"]), ("failed", "abort"))

    def test_answers_error_retry_runs_the_step_again(self):
        a = self.write("a.txt", "[flaky] !error = retry\n")
        p = self.run_file(FLAKY, "--answers", a, "-p", "fails=2")
        self.assertExit(p, 0)
        self.assertInOrder(p.stdout, ["attempt 1", "(attempt 2)", "attempt 2", "(attempt 3)",
                                      "attempt 3", "last step ran"])
        attempts = [e["attempt"] for e in self.events(self.transcript)
                    if e["event"] == "step.start" and e["id"] == "flaky"]
        self.assertEqual(attempts, [1, 2, 3])

    def test_answers_error_skip_goes_on_with_the_next_step(self):
        a = self.write("a.txt", "!error = skip\n")
        p = self.run_file(FLAKY, "--answers", a)
        self.assertExit(p, 0)
        self.assertIn("last step ran", p.stdout)
        self.assertIn("1 ok, 1 skipped of 2 steps", p.stdout)
        self.assertEqual(self.step_ends(), [("flaky", "skipped"), ("last", "ok")])

    def test_answers_error_abort_stops_with_exit_1(self):
        a = self.write("a.txt", "[flaky] !error = abort\n")
        p = self.run_file(FLAKY, "--answers", a)
        self.assertExit(p, 1)
        self.assertNotIn("last step ran", p.stdout)

    def test_answers_error_undo_runs_the_undo(self):
        a = self.write("a.txt", "[flaky] !error = undo\n[flaky] !error = abort\n")
        p = self.run_file(FLAKY, "--answers", a)
        self.assertExit(p, 1)
        self.assertIn("undo of flaky ran", p.stdout)
        undo = [e for e in self.events(self.transcript) if e["event"] == "undo"]
        self.assertEqual([(u["step"], u["ok"]) for u in undo], [("flaky", True)])
        end = [e for e in self.events(self.transcript)
               if e["event"] == "step.end" and e["id"] == "flaky"][-1]
        self.assertEqual((end["decision"], end.get("undone")), ("abort", True),
                         f"step.end should record the decision taken after the undo: {end}")

    def test_undo_then_skip_records_skipped(self):
        a = self.write("a.txt", "[flaky] !error = undo\n[flaky] !error = skip\n")
        p = self.run_file(FLAKY, "--answers", a)
        self.assertExit(p, 0)
        self.assertEqual(self.step_ends(), [("flaky", "skipped"), ("last", "ok")])


class DryRun(RunTestCase):
    def test_mutating_calls_are_shown_recorded_and_not_run(self):
        p = self.run_file(DRYRUN, "--dry-run", "--yes", "-p", f"dir={self.marks}")
        self.assertExit(p, 0)
        self.assertIn(f"would run: touch {self.marks}/exec-mark", p.stdout)
        self.assertIn(f"would run: echo sh > {self.marks}/sh-mark", p.stdout)
        self.assertIn('stand-in: code=0 ok=true stdout=""', p.stdout)
        self.assertIn("sh stand-in: code=0", p.stdout)
        self.assertEqual(self.marks_made(), ["readonly-mark"],
                         "only the readonly command may touch the world in a dry run")
        self.assertIn("readonly said readonly-ran", p.stdout)
        ev = self.events(self.transcript)
        self.assertTrue(ev[0]["dry_run"])
        calls = [(c["primitive"], c["outcome"], c["args"]["readonly"])
                 for c in ev if c["event"] == "call"]
        self.assertEqual(calls, [("exec", "simulated", False), ("sh", "simulated", False),
                                 ("exec", "ok", True)])

    def test_step_code_still_runs_so_branches_and_confirmations_are_rehearsed(self):
        p = self.run_file(DRYRUN, "--dry-run", "--yes", "-p", f"dir={self.marks}")
        self.assertExit(p, 0)
        self.assertIn("branch: rehearsal", p.stdout)
        self.assertIn("Continue after the change? [--yes]", p.stdout)
        # without --yes the confirmation is asked, and with nobody there it fails
        os.remove(os.path.join(self.marks, "readonly-mark"))
        p = self.run_rb("run", DRYRUN, "--dry-run", "-p", f"dir={self.marks}")
        self.assertExit(p, 1)
        self.assertIn('"Continue after the change?"', p.stdout)

    def test_without_dry_run_the_commands_run(self):
        p = self.run_file(DRYRUN, "--yes", "-p", f"dir={self.marks}")
        self.assertExit(p, 0)
        self.assertEqual(self.marks_made(), ["exec-mark", "readonly-mark", "sh-mark"])
        self.assertIn("branch: for real", p.stdout)
        self.assertNotIn("would run", p.stdout)


class StartAtAndResume(RunTestCase):
    def allow(self):
        open(os.path.join(self.marks, "allow"), "w").close()

    def read_mark(self, name):
        with open(os.path.join(self.marks, name)) as f:
            return f.read().split()

    def test_start_at_by_number_and_by_id(self):
        self.allow()
        for key in ("3", "three"):
            with self.subTest(start_at=key):
                t = self.path(f"start-{key}.jsonl")
                p = self.run_rb("run", RESUME, "--start-at", key, "--transcript", t,
                                "-p", f"dir={self.marks}")
                self.assertExit(p, 0)
                self.assertNotIn("[1/4]", p.stdout)
                self.assertNotIn("[2/4]", p.stdout)
                self.assertInOrder(p.stdout, ["[3/4] Three", "[4/4] Four"])
                ends = [(e["id"], e["status"], e.get("reason")) for e in self.events(t)
                        if e["event"] == "step.end"]
                self.assertEqual(ends, [("one", "skipped", "--start-at"), ("two", "skipped", "--start-at"),
                                        ("three", "ok", None), ("four", "ok", None)])
        self.assertFalse(os.path.exists(os.path.join(self.marks, "one")))

    def test_start_at_unknown_step_exits_2_listing_the_steps(self):
        p = self.run_file(RESUME, "--start-at", "nine", "-p", f"dir={self.marks}")
        self.assertExit(p, 2)
        self.assertIn('no step "nine"', p.stderr)
        self.assertIn("ids: one, two, three, four", p.stderr)

    def test_resume_continues_after_last_ok_step_with_same_params(self):
        first = self.path("first.jsonl")
        p = self.run_rb("run", "resume.lua", "--transcript", first, "-p", f"dir={self.marks}",
                        "-p", "color=red", cwd=os.path.dirname(RESUME))
        self.assertExit(p, 1)
        self.allow()
        second = self.path("second.jsonl")
        # by relative file name, as an operator would type it
        p = self.run_rb("run", "resume.lua", "--resume", first, "--transcript", second,
                        cwd=os.path.dirname(RESUME))
        self.assertExit(p, 0)
        self.assertIn(f"resuming {first} at step 3", p.stdout)
        self.assertNotIn("[1/4]", p.stdout)
        self.assertNotIn("[2/4]", p.stdout)
        self.assertEqual(self.read_mark("one"), ["red"], "step one ran again")
        self.assertEqual(self.read_mark("three"), ["red"], "the resumed run lost the params")
        self.assertEqual(self.read_mark("four"), ["red"])
        old = self.events(first)
        new = self.events(second)
        start = new[0]
        self.assertEqual(start["event"], "run.start")
        self.assertEqual(start["resumed_from"]["transcript"], first)
        self.assertEqual(start["resumed_from"]["run"], old[0]["run"])
        self.assertEqual(start["resumed_from"]["last_hash"], old[-1]["hash"])
        self.assertNotEqual(start["run"], old[0]["run"])
        ends = [(e["id"], e["status"]) for e in new if e["event"] == "step.end"]
        self.assertEqual(ends, [("one", "skipped"), ("two", "skipped"), ("three", "ok"), ("four", "ok")])
        self.assertExit(self.run_rb("verify", first), 0)

    def test_resume_by_name(self):
        os.makedirs(self.path("runbooks"))
        shutil.copy(RESUME, self.path("runbooks", "resume.lua"))
        first = self.path("first.jsonl")
        self.assertExit(self.run_rb("run", "resume", "--transcript", first,
                                    "-p", f"dir={self.marks}"), 1)
        self.allow()
        p = self.run_rb("run", "resume", "--resume", first)
        self.assertExit(p, 0)
        self.assertIn("[3/4] Three", p.stdout)

    def test_resume_of_a_run_that_ended_done_says_there_is_nothing_left(self):
        first = self.path("first.jsonl")
        self.allow()
        self.assertExit(self.run_rb("run", RESUME, "--transcript", first, "-p", f"dir={self.marks}"), 0)
        again = self.path("again.jsonl")
        p = self.run_rb("run", RESUME, "--resume", first, "--transcript", again)
        self.assertExit(p, 2)
        self.assertIn("every step of that run ended ok", p.stderr)
        self.assertIn("step 4 of 4", p.stderr)
        self.assertFalse(os.path.exists(again), "a transcript of a run that did nothing")

    def test_resume_refuses_a_transcript_that_does_not_verify(self):
        first = self.path("first.jsonl")
        self.run_rb("run", RESUME, "--transcript", first, "-p", f"dir={self.marks}")
        with open(first) as f:
            lines = f.readlines()
        n = next(i for i, l in enumerate(lines) if '"value":"blue"' in l)
        lines[n] = lines[n].replace('"value":"blue"', '"value":"green"')
        with open(first, "w") as f:
            f.writelines(lines)
        p = self.run_rb("run", RESUME, "--resume", first)
        self.assertExit(p, 2)
        self.assertIn(f"does not verify (line {n + 1}", p.stderr)

    def test_resume_refuses_a_transcript_of_another_runbook(self):
        first = self.path("first.jsonl")
        self.run_rb("run", FLOW, "--transcript", first, "-p", f"dir={self.marks}", "-p", "fail_at=cmd")
        p = self.run_rb("run", RESUME, "--resume", first)
        self.assertExit(p, 2)
        self.assertIn('is a transcript of runbook "flow"', p.stderr)


class StdlibBytecode(RunTestCase):
    """The stdlib loads from bytecode without line numbers (src/luac.c);
    RUNBOOK_STDLIB_SOURCE=1 loads its sources, so a fault inside it names
    the line."""

    def test_a_stdlib_fault_names_its_file_and_its_line_only_from_source(self):
        path = self.write("fault.lua", """runbook { name = "fault" }
step("fault", function()
  local ok, err = pcall(require("runbook.duration").text, {})
  print("@err=" .. err)
end)
""")
        internals = {"RUNBOOK_TEST_INTERNALS": "1"}
        src = os.path.join(SOURCE_DIR, "stdlib", "runbook", "duration.lua")
        fault_line = line_of(src, "math.floor(seconds + 0.5)")
        messages = {}
        for source in ("", "1"):
            p = self.run_rb("run", path, "--yes", "--transcript", self.path(f"t{source}.jsonl"),
                            env={**internals, "RUNBOOK_STDLIB_SOURCE": source})
            self.assertExit(p, 0)
            messages[source] = re.search(r"^@err=(.*)$", p.stdout, re.M).group(1)
        self.assertRegex(messages[""], r"stdlib/runbook/duration\.lua:-1: attempt to perform arithmetic",
                         "the bytecode names the file of a fault, but holds no line")
        self.assertRegex(messages["1"], rf"stdlib/runbook/duration\.lua:{fault_line}: attempt to perform "
                         r"arithmetic on a table value \(local 'seconds'\)",
                         "from source, the fault names its line and the local's name")


if __name__ == "__main__":
    unittest.main()
