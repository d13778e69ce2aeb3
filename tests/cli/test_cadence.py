"""Status updates on the severity's cadence, escalation of a wait past the
response time, and the message templates (runbook.cadence,
runbook.escalation, runbook.templates), with seconds-long cadences: on a
real pseudo-terminal where a person answers, through a pipe where nobody
does, and every message checked where it lands, on a real webhook
receiver."""
import json
import re
import shutil
import subprocess
import time
import unittest

from harness import RUNBOOK, RunbookTestCase
from net.test_notify import Webhook

QUESTION = r"Status update due: send \(Enter\), edit, or snooze \[DURATION\]\? "


class CadenceTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.hook = Webhook()
        self.addCleanup(self.hook.stop)
        self.transcript = self.path("t.jsonl")

    def config(self, extra=""):
        """ops and pager: two channels on the one receiver, told apart by path."""
        return self.write("config.lua", f'''
notify = {{
  ops = {{ webhook = "{self.hook.url('/ops')}" }},
  pager = {{ webhook = "{self.hook.url('/pager')}" }},
}}
{extra}
''')

    def runbook(self, body, header='severity = "P1"'):
        return self.write("rb.lua", f'runbook {{ name = "cad", title = "Checkout errors", {header} }}\n' + body)

    def session(self, rb, cfg, *args):
        return self.pty("run", rb, "--config", cfg, "--transcript", self.transcript, *args,
                        env={"NO_COLOR": "1"}, timeout=30)

    def ev(self, name):
        return [e for e in self.events(self.transcript) if e["event"] == name]

    def texts(self, path):
        """The texts the receiver got on path, in order."""
        return [json.loads(body)["text"] for p, _, body in self.hook.bodies if p == path]


LONG_STEP = '''
step("restore", function() exec { "sleep", "3", readonly = true } end)
step("verify", function() exec { "true", readonly = true } end)
'''


class Reminders(CadenceTestCase):
    def test_due_during_a_long_step_then_offered_at_the_boundary_and_sent(self):
        cfg = self.config('cadence = { P1 = 1 }\nrespond = { P1 = "1h" }')
        s = self.session(self.runbook(LONG_STEP), cfg)
        s.expect(r"update due \(P1: every 1s, last \d+s ago\): offered when this step ends")
        s.expect(r"ok \(")
        s.expect(r"Status update on Checkout errors \(P1, \d+s in\): 1 of 2 steps done, step 2 'verify' next\. "
                 r"Since the last update: steps finished: restore \(ok\); 1 command run \(sleep 3\)\.")
        s.expect(QUESTION)
        s.sendline("")
        s.expect(r"notified ops, pager")
        self.assertEqual(s.wait(), 0, s.output)
        reminders = [(r["action"], r["step"]) for r in self.ev("reminder")]
        self.assertEqual(reminders[:2], [("shown", "restore"), ("sent", "restore")], reminders)
        (update,) = [u for u in self.ev("update")][:1]
        self.assertEqual((update["source"], update["sent"]), ("operator", True))
        self.assertIn("Since the last update: steps finished: restore (ok)", update["text"])
        self.assertEqual(self.texts("/ops")[0], "[P1] " + update["text"])
        self.assertEqual(self.texts("/pager")[0], "[P1] " + update["text"])

    def test_the_update_offered_after_an_abort_says_the_run_ended_so(self):
        cfg = self.config('cadence = { P1 = 1 }')
        rb = self.runbook('step("boom", function() exec { "sleep", "1.5", readonly = true }; '
                          'error("the restore failed") end)\nstep("never", function() end)\n')
        s = self.session(rb, cfg)
        s.expect(r"\[r\]etry, \[s\]kip, \[a\]bort\? ")
        s.sendline("a")
        s.expect(r"Status update on Checkout errors \(P1, \d+s in\): the run ended aborted\.")
        s.expect(QUESTION)
        s.sendline("")
        self.assertEqual(s.wait(), 1, s.output)
        self.assertIn("Next: (none: the run ended aborted)", self.ev("update")[-1]["text"])

    def test_edit_sends_the_line_the_operator_types(self):
        cfg = self.config('cadence = { P1 = 1 }')
        s = self.session(self.runbook(LONG_STEP), cfg)
        s.expect(QUESTION)
        s.sendline("edit")
        s.expect(r"Status update text \(Enter keeps it as shown\): ")
        s.sendline("Restore done, verifying the row counts")
        s.expect(r"notified ops, pager")
        self.assertEqual(s.wait(), 0, s.output)
        edited = [r for r in self.ev("reminder") if r["action"] == "edited"]
        self.assertEqual(len(edited), 1, self.ev("reminder"))
        self.assertEqual(edited[0]["due"], "P1 update")
        self.assertEqual(self.ev("update")[0]["text"], "Restore done, verifying the row counts")
        self.assertEqual(self.texts("/ops")[0], "[P1] Restore done, verifying the row counts")

    def test_snooze_is_recorded_sends_nothing_and_reminds_again_after_it(self):
        cfg = self.config('cadence = { P1 = 1 }')
        rb = self.runbook('''
step("restore", function() exec { "sleep", "2", readonly = true } end)
step("check", function() exec { "sleep", "1", readonly = true } end)
step("again", function() exec { "sleep", "3", readonly = true } end)
step("verify", function() exec { "true", readonly = true } end)
''')
        s = self.session(rb, cfg)
        s.expect(QUESTION)
        s.sendline("snooze 3s")
        s.expect(r"snoozed: reminding again in 3s")
        s.expect(r"\[3/4\] again")              # no reminder before step 3: still snoozed
        s.expect(QUESTION)                        # before step 4: the snooze is over
        s.sendline("")
        self.assertEqual(s.wait(), 0, s.output)
        acts = [(r["action"], r["step"]) for r in self.ev("reminder") if r["action"] != "shown"]
        self.assertEqual(acts, [("snoozed", "restore"), ("sent", "again")], s.output)
        snoozed = [r for r in self.ev("reminder") if r["action"] == "snoozed"]
        self.assertEqual(snoozed[0]["snooze"], 3)
        self.assertEqual(len(self.ev("update")), 1)
        self.assertEqual(len(self.texts("/ops")), 1, self.hook.bodies)

    def test_ctrl_c_at_the_reminder_snoozes_it_and_the_run_goes_on(self):
        cfg = self.config('cadence = { P1 = 1 }')
        s = self.session(self.runbook(LONG_STEP), cfg)
        s.expect(QUESTION)
        s.ctrl_c()
        s.expect(r"snoozed: reminding again in 1s")
        s.expect(r"\[2/2\] verify")
        self.assertEqual(s.wait(), 0, s.output)
        acts = [(r["action"], r["source"]) for r in self.ev("reminder") if r["action"] != "shown"]
        self.assertEqual(acts[0], ("snoozed", "interrupt"), acts)
        self.assertEqual([e["status"] for e in self.ev("step.end")], ["ok", "ok"])
        self.assertEqual(self.ev("interrupt"), [], "the Ctrl-C for the reminder reached the next step")

    def test_with_no_channel_the_update_is_recorded_as_not_sent(self):
        cfg = self.write("none.lua", 'cadence = { P1 = 1 }')
        p = self.run_rb("run", self.runbook(LONG_STEP), "--config", cfg, "--transcript", self.transcript,
                        timeout=30)
        self.assertExit(p, 0)
        self.assertIn("no notify channels configured", p.stdout)
        self.assertFalse(self.ev("update")[0]["sent"], self.ev("update"))

    def test_a_run_without_a_severity_is_never_reminded(self):
        cfg = self.config('cadence = { P1 = 1 }')
        p = self.run_rb("run", self.runbook(LONG_STEP, header='severity = nil'), "--config", cfg,
                        "--transcript", self.transcript)
        self.assertExit(p, 0)
        self.assertEqual(self.ev("reminder"), [])
        self.assertEqual(self.hook.bodies, [])

    def test_a_severity_declared_mid_run_starts_the_cadence(self):
        cfg = self.config('cadence = { P2 = 1 }')
        rb = self.runbook('''
local incident = require("incident")
step("declare", function() incident.declare("P2", "checkout errors at 3 %") end)
''' + LONG_STEP, header='severity = nil')
        p = self.run_rb("run", rb, "--config", cfg, "--transcript", self.transcript, timeout=30)
        self.assertExit(p, 0)
        self.assertTrue(self.ev("update"), p.stdout)
        self.assertTrue(self.texts("/ops")[0].startswith("[P2] Status update on Checkout errors (P2,"),
                        self.hook.bodies)


class Unattended(CadenceTestCase):
    def test_answers_file_edits_the_update_during_the_step_and_nothing_hangs(self):
        cfg = self.config('cadence = { P1 = 1 }')
        answers = self.write("answers.txt", "[*] Status update due = edit\n"
                                            "[*] Status update text = From the answers file\n")
        p = self.run_rb("run", self.runbook(LONG_STEP), "--config", cfg, "--answers", answers,
                        "--transcript", self.transcript, timeout=30)
        self.assertExit(p, 0)
        first = self.ev("reminder")[0]
        self.assertEqual((first["action"], first["source"], first["step"]), ("edited", "answers", "restore"))
        self.assertEqual(self.texts("/ops")[0], "[P1] From the answers file")

    def test_with_no_answer_and_no_terminal_the_update_is_sent_as_it_is(self):
        cfg = self.config('cadence = { P1 = 1 }')
        p = self.run_rb("run", self.runbook(LONG_STEP), "--config", cfg, "--transcript", self.transcript,
                        timeout=30)
        self.assertExit(p, 0)
        first = self.ev("reminder")[0]
        self.assertEqual((first["action"], first["source"]), ("sent", "default"))
        self.assertIn("Status update on Checkout errors", self.texts("/ops")[0])

    def test_dry_run_shows_the_update_and_sends_nothing(self):
        cfg = self.config('cadence = { P1 = 1 }\nrespond = { P1 = 1 }\nannounce = true')
        p = self.run_rb("run", self.runbook(LONG_STEP), "--config", cfg, "--dry-run", "--yes",
                        "--transcript", self.transcript, timeout=30)
        self.assertExit(p, 0)
        self.assertIn("would send the update", p.stdout)
        self.assertIn("would notify ops", p.stdout)
        self.assertEqual(self.hook.bodies, [], "a dry run sent a message")
        self.assertTrue(self.ev("update") and all(u.get("dry_run") for u in self.ev("update")))
        self.assertTrue(all(n.get("dry_run") for n in self.ev("notify")), self.ev("notify"))


class Escalation(CadenceTestCase):
    def test_a_question_past_the_response_time_escalates_once_to_its_channel(self):
        cfg = self.config('cadence = { P1 = "1h" }\nrespond = { P1 = 1 }\nescalation = "pager"')
        rb = self.runbook('step("go", function() confirm("Restore the dump now?") end)')
        s = self.session(rb, cfg)
        s.expect(r"\? Restore the dump now\? \[y/n\] ")
        s.expect(r"escalated: waited \d+s for the operator, past the P1 response time \(1s\); notified pager")
        s.expect(r"\? Restore the dump now\? \[y/n\] ")   # the question again, as it was
        time.sleep(2.5)                                    # well past a second response time
        s.send("y")
        s.sendline("")
        s.expect(r"ok \(")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertEqual(s.output.count("escalated:"), 1, s.output)
        (esc,) = self.ev("escalation")
        self.assertEqual((esc["on"], esc["channel"], esc["step"]), ("operator", "pager", "go"))
        self.assertGreaterEqual(esc["waited"], 1)
        pages = self.texts("/pager")
        self.assertEqual(len(pages), 1, pages)
        self.assertIn("has waited", pages[0])
        self.assertIn("Restore the dump now?", pages[0])
        self.assertEqual(self.texts("/ops"), [], "the escalation went to every channel")
        confirm = self.ev("confirm")
        self.assertEqual(confirm[0]["answer"], "yes", "the typing around the escalation was lost")
        (waiting,) = self.ev("waiting")
        self.assertEqual((waiting["on"], waiting["question"]), ("operator", "Restore the dump now?"))

    def test_the_retry_question_after_a_failure_escalates_too(self):
        # (asked between the step's tasks, where a wait blocks instead of yielding)
        cfg = self.config('respond = { P1 = 1 }')
        rb = self.runbook('step("fail", function() error("pg_restore exited with code 1") end)')
        s = self.session(rb, cfg)
        s.expect(r"\[r\]etry, \[s\]kip, \[a\]bort\? ")
        s.expect(r"escalated: waited \d+s for the operator, past the P1 response time \(1s\); "
                 r"notified every channel")
        s.expect(r"\[r\]etry, \[s\]kip, \[a\]bort\? ")
        s.sendline("a")
        self.assertEqual(s.wait(), 1, s.output)
        (esc,) = self.ev("escalation")
        self.assertEqual((esc["on"], esc.get("channel")), ("operator", None))
        self.assertEqual(len(self.texts("/ops")), 1)
        self.assertEqual(len(self.texts("/pager")), 1)
        self.assertEqual(self.ev("step.end")[0]["decision"], "abort")

    def test_a_question_answered_in_time_does_not_escalate(self):
        cfg = self.config('respond = { P1 = "1h" }')
        rb = self.runbook('step("go", function() confirm("Restore the dump now?") end)')
        s = self.session(rb, cfg)
        s.expect(r"\[y/n\] ")
        s.sendline("y")
        self.assertEqual(s.wait(), 0, s.output)
        self.assertEqual(self.ev("escalation"), [])
        self.assertEqual(self.hook.bodies, [])


class ReadTimeout(CadenceTestCase):
    def test_a_read_that_times_out_in_under_a_millisecond_still_times_out(self):
        # An escalation's read can be left a fraction of a millisecond; a
        # timeout cut to 0 ms meant no timeout at all, and the question
        # never escalated.
        rb = self.write("read.lua", '''
local operator = require("runbook.operator")
step("read", function()
  for _, t in ipairs({ 0.0004, 1e-9 }) do print("read gave " .. tostring(operator.readline({ timeout = t, tick = true }))) end
end)
''')
        s = self.pty("run", rb, "--transcript", self.transcript,
                     env={"NO_COLOR": "1", "RUNBOOK_TEST_INTERNALS": "1"}, timeout=10)
        s.expect(r"read gave false")
        s.expect(r"read gave false")
        self.assertEqual(s.wait(), 0, s.output)


class Durability(CadenceTestCase):
    @unittest.skipUnless(shutil.which("strace"), "needs strace to watch fsync(2) and the sockets")
    def test_the_resolution_goes_out_only_once_the_last_steps_end_is_on_disk(self):
        """The last step's end owes its fsync to run.end's; a call made
        before that (here the resolution cadence.finish announces) settles
        it first."""
        cfg = self.config("announce = true")
        rb = self.runbook('step("fix", function() end)\n')
        trace = self.path("strace.txt")
        # LeakSanitizer cannot run under ptrace
        env = dict(self.env, ASAN_OPTIONS=self.env.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=write,fsync,connect,sendto,sendmsg",
                            "-s", "120", "-o", trace, RUNBOOK, "run", rb, "--config", cfg,
                            "--transcript", self.transcript],
                           capture_output=True, text=True, env=env, cwd=self.tmp, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(self.texts("/ops")), 2, "the alert and the resolution")
        with open(trace) as f:
            lines = f.read().splitlines()
        fd = next(m.group(1) for m in (re.search(r'write\((\d+), "\{\\"seq\\":1,', l) for l in lines) if m)
        end = max(i for i, l in enumerate(lines) if re.search(rf'write\({fd}, .*\\"event\\":\\"step\.end', l))
        after = lines[end + 1:]
        sends = [i for i, l in enumerate(after) if re.search(r"\b(connect|sendto|sendmsg)\(", l)]
        self.assertTrue(sends, "the resolution is sent after the step's end")
        synced = [i for i, l in enumerate(after) if re.search(rf"\bfsync\({fd}\)", l)]
        self.assertTrue(synced and synced[0] < sends[0],
                        "the transcript is fsynced after the last step's end and before the resolution "
                        "goes out:\n" + "\n".join(after[:sends[0] + 1]))


class Templates(CadenceTestCase):
    def test_alert_update_and_resolution_from_the_teams_templates(self):
        cfg = self.config('''cadence = { P1 = 1 }
announce = true
templates = { alert = "ALERT [Service Name] [Severity] lead [Lead]",
              update = "UPDATE [Status] / [Pager Rota]" }''')
        rb = self.runbook(LONG_STEP,
                          header='severity = "P1", templates = { resolved = "DONE [Runbook] after [Duration]" }')
        p = self.run_rb("run", rb, "--config", cfg, "--transcript", self.transcript, timeout=30)
        self.assertExit(p, 0)
        ops = self.texts("/ops")
        self.assertRegex(ops[0], r"^\[P1\] ALERT Checkout errors P1 lead \S+@\S+$")
        self.assertRegex(ops[1], r"^\[P1\] UPDATE 0 of 2 steps done, step 1 'restore' under way / \[Pager Rota\]$")
        self.assertRegex(ops[-1], r"^\[P1\] DONE cad after \d+s$")

    def test_a_markdown_documents_templates_filled_from_its_blanks(self):
        """A checklist's own message templates are the run's: the alert
        when its severity is declared, the update on the cadence, the
        all-clear at the end, with the blanks answered ("Incident lead:
        ____") filling their [placeholders]."""
        cfg = self.config('cadence = { P0 = 1 }\nannounce = true')
        doc = self.write("inc.md", """# Checkout down

## Severity

| Level | Meaning |
|---|---|
| P0 | Outage |
| P1 | Degraded |

## Declare

- Incident lead: ____
- [ ] Declare the severity from the table above

## Restore

```bash
sleep 3
```

## Templates

```markdown
Incident Alert: checkout is down ([Severity]). Lead: [Incident Lead].
```

```markdown
Update: [Status]. Lead: [Incident Lead].
```

```markdown
Resolved: checkout is back after [Duration]. Lead: [Incident Lead].
```
""")
        answers = self.write("a.txt", "[*] Incident lead = dana\n[*] Run: sleep 3 = yes\n")
        p = self.run_rb("run", doc, "--config", cfg, "--answers", answers, "--yes",
                        "--transcript", self.transcript, timeout=30)
        self.assertExit(p, 0)
        ops = self.texts("/ops")
        self.assertEqual(ops[0], "[P0] Incident Alert: checkout is down (P0). Lead: dana.")
        self.assertTrue(any(t.startswith("[P0] Update: ") and t.endswith("Lead: dana.") for t in ops[1:-1]), ops)
        self.assertRegex(ops[-1], r"^\[P0\] Resolved: checkout is back after \d+s\. Lead: dana\.$")

    def test_a_bad_template_in_a_runbook_is_a_load_error_naming_its_line(self):
        rb = self.runbook(LONG_STEP, header='severity = "P1", templates = { update = 5 }')
        p = self.run_rb("run", rb)
        self.assertExit(p, 2)
        self.assertIn("rb.lua:1: runbook{}: templates.update: expected the message text", p.stderr)
        p = self.run_rb("check", rb)
        self.assertExit(p, 2)

    def test_a_bad_duration_in_the_config_is_a_clear_error(self):
        cfg = self.config('cadence = { P1 = "soon" }')
        p = self.run_rb("run", self.runbook(LONG_STEP), "--config", cfg)
        self.assertExit(p, 2)
        self.assertIn('cadence.P1: "soon" is not a duration', p.stderr)
        self.assertNotIn("traceback", p.stderr.lower())
