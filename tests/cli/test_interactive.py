"""runbook run on a real pseudo-terminal: the operator answers questions,
decides retry/skip/abort/undo after a failure, presses Ctrl-C, types
secrets; colours appear only on a terminal and never with NO_COLOR."""
import time
import unittest

from harness import RunbookTestCase, runbook_path

CONFIRM = runbook_path("confirm.lua")
FLAKY = runbook_path("flaky.lua")
INTERACTIVE = runbook_path("interactive.lua")
TTY = runbook_path("tty.lua")

RSA = r"\[r\]etry, \[s\]kip, \[a\]bort\? "
RSUA = r"\[r\]etry, \[s\]kip, \[u\]ndo, \[a\]bort\? "


class InteractiveTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.transcript = self.path("t.jsonl")

    def session(self, runbook, *args, color=False):
        env = None if color else {"NO_COLOR": "1"}
        return self.pty("run", "--transcript", self.transcript, runbook, *args, env=env)

    def ends(self):
        return [(e["id"], e["status"]) for e in self.events(self.transcript) if e["event"] == "step.end"]


class Confirmations(InteractiveTestCase):
    def test_confirm_yes_continues(self):
        s = self.session(CONFIRM)
        s.expect(r"\? Restart the service\? \[y/n\] ")
        s.sendline("y")
        s.expect("confirmed")
        s.expect("after ran")
        self.assertEqual(s.wait(), 0, s.output)
        confirm = [e for e in self.events(self.transcript) if e["event"] == "confirm"]
        self.assertEqual([(c["answer"], c["source"]) for c in confirm], [("yes", "operator")])

    def test_confirm_no_declines_and_abort_ends_with_exit_1(self):
        s = self.session(CONFIRM)
        s.expect(r"Restart the service\? \[y/n\] ")
        s.sendline("n")
        s.expect(r"declined \(\d+ ms\): declined: Restart the service\?")
        s.expect(r"Step 1 declined\. " + RSA)
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertNotIn("after ran", s.output)
        self.assertEqual(self.ends(), [("ask", "declined")])

    def test_confirm_no_then_skip_goes_on(self):
        s = self.session(CONFIRM)
        s.expect(r"\[y/n\] ")
        s.sendline("no")
        s.expect(RSA)
        s.sendline("s")
        s.expect("after ran")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertEqual(self.ends(), [("ask", "skipped"), ("after", "ok")])

    def test_an_answer_that_is_not_yes_or_no_is_asked_again(self):
        s = self.session(CONFIRM)
        s.expect(r"\[y/n\] ")
        s.sendline("maybe")
        s.expect("answer yes or no")
        s.expect(r"Restart the service\? \[y/n\] ")
        s.sendline("yes")
        s.expect("after ran")
        self.assertEqual(s.wait(), 0, s.output)


class Questions(InteractiveTestCase):
    def test_prompt_choose_yesno_default_and_manual_on_a_terminal(self):
        s = self.session(runbook_path("questions.lua"))
        s.expect(r"Has the incident lead approved\? \[y/n\] ")
        s.sendline("y")
        s.expect(r"\? Which replica\?: ")
        s.sendline("replica-3")
        s.expect(r"\? Which region\?\r\n\s+1\) eu-west\r\n\s+2\) us-east\r\n\s+choice \[1-2\]: ")
        s.sendline("7")
        s.expect("choose a number from 1 to 2")
        s.expect(r"choice \[1-2\]: ")
        s.sendline("2")
        s.expect(r"Drain first\? \[y/n\] ")
        s.sendline("n")
        s.expect(r"Batch size\? \[10\]: ")
        s.sendline("")
        s.expect("replica=replica-3 region=us-east drain=false size=10")
        s.expect(r"\[manual\] Tell the status page the restore has started\r\n"
                 r"\s+done\? \[Enter = done, n = not done\] ")
        s.sendline("")
        s.expect("run done")
        self.assertEqual(s.wait(), 0, s.output)
        manual = [e for e in self.events(self.transcript) if e["event"] == "manual"]
        self.assertEqual([(m["answer"], m["source"]) for m in manual], [("done", "operator")])

    def test_manual_not_done_declines_the_step(self):
        s = self.session(runbook_path("questions.lua"), "--start-at", "checklist")
        s.expect(r"done\? \[Enter = done, n = not done\] ")
        s.sendline("n")
        s.expect(r"Step 3 declined\. " + RSA)
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertEqual(self.ends()[-1], ("checklist", "declined"))


class AfterAFailure(InteractiveTestCase):
    def test_retry_runs_the_step_again(self):
        s = self.session(FLAKY, "-p", "fails=1")
        s.expect(r"failed \(\d+ ms\): .*flaky\.lua:\d+: flaky failure 1")
        s.expect(r"Step 1 failed\. " + RSUA)
        s.sendline("r")
        s.expect(r"\[1/2\] Flaky step \(attempt 2\)")
        s.expect("attempt 2")
        s.expect("last step ran")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertEqual(self.ends(), [("flaky", "failed"), ("flaky", "ok"), ("last", "ok")])
        ends = [e for e in self.events(self.transcript) if e["event"] == "step.end"]
        self.assertEqual((ends[0]["decision"], ends[0]["decided_by"]), ("retry", "operator"))

    def test_skip_goes_on_with_the_next_step(self):
        s = self.session(FLAKY, "-p", "fails=5")
        s.expect(RSUA)
        s.sendline("s")
        s.expect("last step ran")
        s.expect(r"1 ok, 1 skipped of 2 steps")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertEqual(self.ends(), [("flaky", "skipped"), ("last", "ok")])

    def test_abort_ends_the_run_with_exit_1(self):
        s = self.session(FLAKY, "-p", "fails=5")
        s.expect(RSUA)
        s.sendline("a")
        s.expect("run aborted")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertNotIn("last step ran", s.output)
        self.assertEqual(self.events(self.transcript)[-1]["status"], "aborted")

    def test_undo_runs_the_steps_undo_then_asks_again(self):
        s = self.session(FLAKY, "-p", "fails=1")
        s.expect(RSUA)
        s.sendline("u")
        s.expect("undo of flaky ran")
        s.expect(r"Step 1 undone\. " + RSUA)
        s.sendline("r")
        s.expect("attempt 2")
        s.expect("last step ran")
        self.assertEqual(s.wait(), 0, s.output)
        undo = [e for e in self.events(self.transcript) if e["event"] == "undo"]
        self.assertEqual([(u["step"], u["ok"]) for u in undo], [("flaky", True)])

    def test_undo_then_abort(self):
        s = self.session(FLAKY, "-p", "fails=5")
        s.expect(RSUA)
        s.sendline("u")
        s.expect("undo of flaky ran")
        s.expect(r"undone\. " + RSUA)
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertNotIn("last step ran", s.output)


class CtrlC(InteractiveTestCase):
    def start_tree(self):
        """Run ctrlc.lua until its shell and the shell's sleep are running;
        return the session and both pids."""
        s, (child, grandchild) = self.ctrlc_tree(self.session)
        return s, child, grandchild

    def test_ctrl_c_terminates_the_process_group_and_asks(self):
        s, child, grandchild = self.start_tree()
        t0 = time.monotonic()
        s.ctrl_c()
        s.expect(r"interrupted \(\d+ ms\): .*interrupted \(Ctrl-C\)")
        s.expect(r"Step 1 interrupted\. " + RSA)
        asked_after = time.monotonic() - t0
        self.assertGone([child, grandchild], what="after Ctrl-C")
        self.assertLess(asked_after, 3.0, "Ctrl-C took too long to interrupt the wait")
        s.sendline("s")
        s.expect("after ran")
        self.assertEqual(s.wait(), 0, s.output)
        interrupts = [e["count"] for e in self.events(self.transcript) if e["event"] == "interrupt"]
        self.assertEqual(interrupts, [1])

    def test_second_ctrl_c_ends_the_run_with_130_and_both_are_recorded(self):
        s, child, grandchild = self.start_tree()
        s.ctrl_c()
        s.expect(RSA)
        self.assertGone([child, grandchild], what="after Ctrl-C")
        s.ctrl_c()
        s.expect("run interrupted")
        self.assertEqual(s.wait(), 130, s.output)
        self.assertNotIn("after ran", s.output)
        ev = self.events(self.transcript)
        self.assertEqual([e["count"] for e in ev if e["event"] == "interrupt"], [1, 2])
        self.assertEqual((ev[-1]["event"], ev[-1]["status"], ev[-1]["exit"]),
                         ("run.end", "interrupted", 130))
        self.assertExit(self.run_rb("verify", self.transcript), 0)

    def test_ctrl_c_then_retry_runs_the_command_again(self):
        s, child, grandchild = self.start_tree()
        s.ctrl_c()
        s.expect(RSA)
        self.assertGone([child, grandchild], what="after Ctrl-C")
        s.sendline("r")
        s.expect(r"\(attempt 2\)")
        s.expect(r"\| tree-started")
        s.ctrl_c()
        s.expect(RSA)
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)


class Terminal(InteractiveTestCase):
    def test_secret_prompt_is_not_echoed(self):
        s = self.session(INTERACTIVE)
        s.expect(r"Proceed\? \[y/n\] ")
        s.sendline("y")
        s.expect(r"\$ sleep 30")
        s.ctrl_c()
        s.expect(RSA)
        s.sendline("s")
        s.expect(r"\? Token: ")
        s.sendline("tok-Very-Secret-81")
        s.expect(r"got 18 chars: \*\*\*")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertNotIn("tok-Very-Secret-81", s.output)
        with open(self.transcript) as f:
            self.assertNotIn("tok-Very-Secret-81", f.read())

    def test_missing_required_params_are_prompted_for_on_a_terminal(self):
        s = self.session(TTY)
        s.expect(r"Value for param target_host \(the host to act on\): ")
        s.sendline("db-7.internal")
        s.expect(r"Value for param api_key \(the API key\): ")
        s.sendline("key-Hidden-5521")
        s.expect(r"\[1/2\] Confirm")
        s.expect(r"host db-7\.internal, key \*\*\*")
        s.expect(r"Proceed with db-7\.internal\? \[y/n\] ")
        s.sendline("y")
        # a secret prompt, then a plain one: echo must be back on
        s.expect(r"\? Password: ")
        s.sendline("pw-Hidden-9034")
        s.expect(r"\? Your name: ")
        s.sendline("visible-answer")
        s.expect("visible-answer")
        s.expect(r"password has 14 chars; name is visible-answer; password is \*\*\*")
        s.expect(r"\? A number: ")
        s.sendline("abc")
        s.expect(r"the answer must match %d\+")
        s.expect(r"\? A number: ")
        s.sendline("42")
        s.expect("number 42")
        self.assertEqual(s.wait(), 0, s.output)
        echoed = s.output.split("Your name: ", 1)[1]
        self.assertTrue(echoed.startswith("visible-answer"),
                        f"a plain answer must be echoed; output after the prompt: {echoed[:80]!r}")
        for secret in ("key-Hidden-5521", "pw-Hidden-9034"):
            self.assertNotIn(secret, s.output)
            with open(self.transcript) as f:
                self.assertNotIn(secret, f.read())
        params = {e["name"]: e for e in self.events(self.transcript) if e["event"] == "param"}
        self.assertEqual((params["target_host"]["value"], params["target_host"]["source"]),
                         ("db-7.internal", "prompt"))
        self.assertEqual(params["api_key"]["value"], "***")

    def test_colours_on_a_terminal(self):
        s = self.session(CONFIRM, color=True)
        s.expect(r"\[y/n\] ")
        s.sendline("y")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertIn("\x1b[32mok\x1b[0m", s.output, "expected green 'ok' on a terminal")
        self.assertIn("\x1b[1m[1/2] Ask first\x1b[0m", s.output)

    def test_no_colours_with_no_color_set(self):
        s = self.pty("run", "--transcript", self.transcript, CONFIRM, env={"NO_COLOR": "1"})
        s.expect(r"\[y/n\] ")
        s.sendline("y")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertIn("[1/2] Ask first", s.output)
        self.assertNotIn("\x1b[", s.output)


if __name__ == "__main__":
    unittest.main()
