"""runbook repl: the interactive prompt, driven through a real pseudo-terminal
(line editing, Ctrl-C, Ctrl-D, history) and through a pipe."""
import os
import re
import stat
import time

from harness import RunbookTestCase

PROMPT = r"runbook> "
MORE = r"     \.\.\.> "
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ReplTestCase(RunbookTestCase):

    def start(self, *args, transcript="repl.jsonl", env=None):
        """A REPL on a pty, at its first prompt; returns the session."""
        self.transcript = self.path(transcript)
        s = self.pty("repl", "--transcript", self.transcript, *args, env=env)
        s.expect(r"runbook \S+ repl")
        s.expect(PROMPT)
        return s

    def enter(self, s, line, prompt=PROMPT):
        """Type a line (after its prompt), wait for its echo and the next
        prompt; return what was printed in between, colours removed."""
        s.sendline(line)
        echo = s.expect(re.escape(line) + r"\r\n")
        nxt = s.expect(prompt)
        return ANSI.sub("", s.output[echo.end():nxt.start()]).replace("\r\n", "\n")

    def quit(self, s):
        s.send("\x04")
        code = s.wait()
        self.assertEqual(code, 0, f"expected Ctrl-D to exit 0, got {code}; output:\n{s.output}")
        return code

    def evals(self):
        return [e for e in self.events(self.transcript) if e["event"] == "eval"]


class TestReplPrompt(ReplTestCase):

    def test_expression_result_is_printed(self):
        s = self.start()
        self.assertEqual(self.enter(s, "1+2"), "3\n")
        self.assertEqual(self.enter(s, "'a' .. 'b', 7"), '"ab"\t7\n')
        self.assertEqual(self.enter(s, "nil"), "nil\n")
        self.assertEqual(self.enter(s, "x = 1"), "", "expected a statement to print nothing")
        self.quit(s)

    def test_table_is_pretty_printed(self):
        s = self.start()
        self.assertEqual(self.enter(s, '{b=2, a=1, list={1,2,3}, ["x y"]=true}'),
                         '{ a = 1, b = 2, list = { 1, 2, 3 }, ["x y"] = true }\n')
        self.enter(s, 't = {name="n", text=("x"):rep(90), sub={deep={1,2}}}')
        self.enter(s, "t.self = t")
        long = "x" * 90
        self.assertEqual(
            self.enter(s, "t"),
            "{\n"
            '  name = "n",\n'
            "  self = <cycle>,\n"
            "  sub = { deep = { 1, 2 } },\n"
            f'  text = "{long}",\n'
            "}\n",
            "expected sorted keys, one entry a line, the cycle marked and the long string whole")
        self.quit(s)

    def test_utf8_input_is_kept(self):
        s = self.start(env={"LC_ALL": "C.UTF-8"})
        self.assertEqual(self.enter(s, "'héllo → ok'"), '"héllo → ok"\n')
        self.quit(s)

    def test_multiline_chunk_uses_continuation_prompt(self):
        s = self.start()
        self.enter(s, "function f(x)", prompt=MORE)
        self.enter(s, "  return x*2", prompt=MORE)
        self.enter(s, "end")
        self.assertEqual(self.enter(s, "f(21)"), "42\n")
        self.quit(s)
        codes = [e["code"] for e in self.evals()]
        self.assertEqual(codes, ["function f(x)\n  return x*2\nend", "f(21)"],
                         "expected the three lines recorded as one evaluation")

    def test_globals_persist_and_locals_do_not(self):
        s = self.start()
        self.enter(s, "x = 41")
        self.assertEqual(self.enter(s, "x + 1"), "42\n")
        self.enter(s, "local y = 5")
        self.assertEqual(self.enter(s, "y"), "nil\n")
        self.quit(s)

    def test_exec_runs_a_process(self):
        s = self.start()
        out = self.enter(s, 'exec{"echo","hi"}.stdout')
        self.assertEqual(out.splitlines()[-1], '"hi\\n"', f"expected the stdout string, got {out!r}")
        self.quit(s)
        calls = [e for e in self.events(self.transcript) if e["event"] == "call"]
        self.assertEqual([(c["primitive"], c["outcome"]) for c in calls], [("exec", "ok")])

    def test_error_is_reported_and_the_repl_goes_on(self):
        s = self.start()
        self.assertEqual(self.enter(s, 'error("boom")'), "error: repl:1: boom\n")
        self.assertRegex(self.enter(s, "1 +* 2"), r"^error: repl:1: unexpected symbol near")
        self.assertEqual(self.enter(s, "1+1"), "2\n")
        self.quit(s)
        ev = self.evals()
        self.assertEqual([e["ok"] for e in ev], [False, False, True])
        self.assertEqual(ev[0]["error"], "repl:1: boom")

    def test_ctrl_c_interrupts_the_running_evaluation(self):
        s = self.start()
        s.sendline('exec{"sleep","31.25"}')
        s.expect(r"\$ sleep 31\.25")
        time.sleep(0.3)         # "$ sleep" is printed just before the process starts
        t0 = time.monotonic()
        s.ctrl_c()
        s.expect(r"error: exec sleep: .*interrupted \(Ctrl-C\)", timeout=5)
        s.expect(PROMPT, timeout=5)
        took = time.monotonic() - t0
        self.assertLess(took, 3.0, f"expected the prompt back within 3 s of Ctrl-C, took {took:.1f} s")
        self.assertFalse(sleepers("31.25"), "expected the interrupted sleep to be killed")
        s.sendline("wait(30)")
        time.sleep(0.3)
        s.ctrl_c()
        s.expect(r"error: wait: .*interrupted", timeout=5)
        s.expect(PROMPT)
        self.assertEqual(self.enter(s, "1+1"), "2\n")
        self.quit(s)
        ev = self.evals()
        self.assertEqual([e.get("interrupted") for e in ev], [True, True, None])

    def test_ctrl_c_at_the_prompt_discards_the_line(self):
        s = self.start()
        s.send('error("typed")')
        time.sleep(0.2)
        s.ctrl_c()
        s.expect(PROMPT)
        self.enter(s, "function g(", prompt=MORE)
        s.ctrl_c()
        s.expect(PROMPT)
        for _ in range(3):      # three presses in a row do not end it either
            s.ctrl_c()
            s.expect(PROMPT)
        self.assertEqual(self.enter(s, "1+1"), "2\n")
        self.quit(s)
        self.assertEqual([e["code"] for e in self.evals()], ["1+1"],
                         "expected only the completed line to be evaluated")

    def test_ctrl_d_ends_with_a_verifiable_transcript(self):
        s = self.start()
        for line in ("a = 1", "a + 1", "print('printed')", "nosuch()"):
            self.enter(s, line)
        self.quit(s)
        final = re.search(r"final hash: ([0-9a-f]{64})", s.output)
        self.assertIsNotNone(final, f"expected the final hash printed at the end:\n{s.output}")
        events = self.events(self.transcript)
        self.assertEqual(events[0]["event"], "run.start")
        self.assertEqual(events[0]["runbook"], "repl")
        self.assertEqual(events[-1]["event"], "run.end")
        self.assertEqual(events[-1]["evals"], 4)
        self.assertEqual(events[-1]["hash"], final.group(1))
        ev = self.evals()
        self.assertEqual([e["code"] for e in ev], ["a = 1", "a + 1", "print('printed')", "nosuch()"])
        self.assertEqual(ev[1]["result"], "2")
        self.assertEqual([e["ok"] for e in ev], [True, True, True, False])
        self.assertIn("nosuch", ev[3]["error"])
        v = self.run_rb("verify", self.transcript)
        self.assertExit(v, 0)
        self.assertIn("hash chain intact", v.stdout)

    def test_secret_is_redacted_on_screen_in_transcript_and_history(self):
        s = self.start()
        self.enter(s, 's = secret("abc123")')
        after = len(s.output)
        self.assertEqual(self.enter(s, "s"), '"***"\n')
        self.assertEqual(self.enter(s, "{token = 'x-' .. s}"), '{ token = "x-***" }\n')
        self.assertEqual(self.enter(s, "print(s)"), "***\n")
        self.quit(s)
        self.assertNotIn("abc123", s.output[after:], "expected the secret never printed in clear")
        with open(self.transcript) as f:
            self.assertNotIn("abc123", f.read(), "expected the secret redacted in the transcript")
        self.assertEqual(self.evals()[0]["code"], 's = secret("***")')
        with open(self.path("state", "runbook", "repl_history")) as f:
            self.assertNotIn("abc123", f.read(), "expected the secret redacted in the history")

    def test_history_is_saved_and_recalled(self):
        s = self.start()
        self.assertEqual(self.enter(s, "1+2"), "3\n")
        self.quit(s)
        hist = self.path("state", "runbook", "repl_history")
        self.assertEqual(stat.S_IMODE(os.stat(hist).st_mode), 0o600)
        with open(hist) as f:
            self.assertIn("1+2", f.read().split("\n"))
        s = self.start(transcript="second.jsonl")
        s.send("\x1b[A")            # up arrow: the line from the last session
        s.expect(r"1\+2")
        s.sendline("")
        s.expect(r"\r\n3\r\n")
        s.expect(PROMPT)
        self.quit(s)
        self.assertEqual([e["code"] for e in self.evals()], ["1+2"])


class TestReplOptions(RunbookTestCase):

    def test_piped_stdin_is_evaluated_without_prompts(self):
        p = self.run_rb("repl", stdin="print(1+1)\nfunction f(x)\nreturn x+1\nend\nf(2)\n")
        self.assertExit(p, 0)
        self.assertNotIn("runbook>", p.stdout)
        lines = p.stdout.splitlines()
        self.assertIn("2", lines)
        self.assertIn("3", lines)
        self.assertRegex(p.stdout, r"final hash: [0-9a-f]{64}")

    def test_piped_failure_exits_1(self):
        p = self.run_rb("repl", stdin='error("bad")\n1+1\n')
        self.assertExit(p, 1)
        self.assertIn("error: repl:1: bad", p.stderr)
        self.assertIn("2", p.stdout.splitlines(), "expected the lines after a failure to run")

    def test_incomplete_chunk_at_end_of_input_is_an_error(self):
        p = self.run_rb("repl", stdin="function f(\n")
        self.assertExit(p, 1)
        self.assertIn("<eof>", p.stderr)

    def test_help(self):
        p = self.run_rb("repl", "--help")
        self.assertExit(p, 0)
        for flag in ("--target", "--dry-run", "--config", "--transcript"):
            self.assertIn(flag, p.stdout)

    def test_usage_errors_exit_2(self):
        self.assertExit(self.run_rb("repl", "extra"), 2)
        self.assertExit(self.run_rb("repl", "--dryrun"), 2)
        p = self.run_rb("repl", "--target", "nowhere")
        self.assertExit(p, 2)
        self.assertIn("nowhere", p.stderr)
        taken = self.write("taken.jsonl", "")
        p = self.run_rb("repl", "--transcript", taken)
        self.assertExit(p, 2)
        self.assertIn(taken, p.stderr)

    def test_dry_run_shows_mutating_exec_and_runs_readonly(self):
        victim = self.write("victim.txt", "keep me\n")
        t = self.path("dry.jsonl")
        p = self.run_rb("repl", "--dry-run", "--transcript", t,
                        stdin=f'exec{{"rm", "{victim}"}}.dry_run\n'
                              'exec{"echo", "real", readonly=true}.stdout\n')
        self.assertExit(p, 0)
        self.assertIn("dry run", p.stdout)
        self.assertRegex(p.stdout, r"would run:.* rm ")
        self.assertIn("true", p.stdout.splitlines())
        self.assertIn('"real\\n"', p.stdout)
        self.assertTrue(os.path.exists(victim), "expected the dry run to leave the file alone")
        events = self.events(t)
        self.assertTrue(events[0]["dry_run"])
        outcomes = [e["outcome"] for e in events if e["event"] == "call"]
        self.assertEqual(outcomes, ["simulated", "ok"])

    def test_target_from_config(self):
        cfg = self.write("cfg.lua", 'targets = { staging = { host = "db.staging" } }\n')
        p = self.run_rb("repl", "--config", cfg, "--target", "staging", stdin="target.host\n")
        self.assertExit(p, 0)
        self.assertIn('"db.staging"', p.stdout.splitlines())


def sleepers(arg):
    """Processes running `sleep arg`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", arg.encode()]:
            found.append(int(pid))
    return found


if __name__ == "__main__":
    import unittest
    unittest.main()
