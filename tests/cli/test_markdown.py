"""Markdown checklists as runbooks: `show` counts the steps a reader
counts, `check` passes them and names file:line for a broken one, a dry
run runs the reads and no write, a real run runs the confirmed commands,
and what fails names the document's own line.  The examples' own runs,
against real servers, are tests/e2e/test_markdown_examples.py."""
import os
import unittest

from harness import SOURCE_DIR, RunbookTestCase

EXAMPLES = os.path.join(SOURCE_DIR, "examples", "markdown")

STEPS = {
    "oncall-checklist.md": ["Triage & communicate", "Check the service", "Check the database",
                            "Mitigate", "Hand over"],
    "incident-response.md": ["Phase 1: Detection", "Phase 2: Investigation",
                             "Phase 3: Mitigation", "Phase 4: Recovery"],
    "links.md": ["Open the dashboards", "Work through the on-call checklist", "Roll back the last deploy",
                 "Tell support: #support-escalations"],
    "api-latency.md": ["Symptoms", "Impact", "Investigation", "Resolution"],
    "oncall-procedures.md": ["When paged"],
}

DOC = """# Scratch work

## Look

- Listing: `ls {dir}`

## Change

- [ ] Tell the team
- Make the marker: `touch {dir}/marker`
- Owner: ____

## Clean up

```bash
rm {dir}/marker
```
"""


class Markdown(RunbookTestCase):
    def test_show_counts_the_sections_of_each_example(self):
        for name, steps in STEPS.items():
            with self.subTest(doc=name):
                p = self.run_rb("show", os.path.join(EXAMPLES, name))
                self.assertExit(p, 0)
                shown = [l.split("]", 1)[1].split("  (id", 1)[0].strip()
                         for l in p.stdout.splitlines() if l.strip()[:1].isdigit()]
                self.assertEqual(shown, steps)

    def test_check_passes_the_examples(self):
        for name in STEPS:
            with self.subTest(doc=name):
                p = self.run_rb("check", os.path.join(EXAMPLES, name))
                self.assertExit(p, 0)
                self.assertIn(f"({len(STEPS[name])} steps", p.stdout)

    def test_a_broken_document_is_refused_with_its_line(self):
        path = self.write("bad.md", "# T\n\n## A\n\n```bash\necho hi\n")
        p = self.run_rb("check", path)
        self.assertExit(p, 2)
        self.assertIn(f"{path}:5: the code block opened here is never closed", p.stderr)
        path = self.write("quote.md", "# T\n\n## A\n\n- run `echo 'oops`\n")
        p = self.run_rb("check", path)
        self.assertExit(p, 2)
        self.assertIn(f"{path}:5: cannot read the command `echo 'oops`", p.stderr)
        path = self.write("prose.md", "# T\n\nJust prose.\n")
        p = self.run_rb("check", path)
        self.assertExit(p, 2)
        self.assertIn(f"{path}:1: no steps", p.stderr)

    def doc(self):
        work = self.path("work")
        os.makedirs(work)
        return work, self.write("scratch.md", DOC.format(dir=work))

    def test_dry_run_reads_for_real_and_writes_nothing(self):
        work, path = self.doc()
        answers = self.write("a.txt", "[*] Tell the team = done\n[*] Run: touch %s/marker = yes\n"
                             "[*] Owner = alice\n[*] Run: rm %s/marker = yes\n" % (work, work))
        t = self.path("t.jsonl")
        p = self.run_rb("run", "--dry-run", "--answers", answers, "--transcript", t, path)
        self.assertExit(p, 0)
        self.assertIn("$ ls " + work, p.stdout)               # the read ran
        self.assertIn("would run: touch " + work + "/marker", p.stdout)
        self.assertFalse(os.path.exists(os.path.join(work, "marker")))
        self.assertExit(self.run_rb("verify", t), 0)
        asked = [e["answer"] for e in self.events(t) if e["event"] == "prompt"]
        self.assertIn("alice", asked)

    def test_a_real_run_runs_the_confirmed_commands_and_names_the_line_that_fails(self):
        work, path = self.doc()
        t = self.path("t.jsonl")
        answers = self.write("a.txt", "[*] Tell the team = done\n[*] Run: touch %s/marker = yes\n"
                             "[*] Owner = alice\n[*] Run: rm %s/marker = yes\n" % (work, work))
        p = self.run_rb("run", "--answers", answers, "--transcript", t, path)
        self.assertExit(p, 0)
        self.assertFalse(os.path.exists(os.path.join(work, "marker")))    # made, then removed
        self.assertIn("$ touch " + work + "/marker", p.stdout)
        self.assertExit(self.run_rb("verify", t), 0)
        # the clean-up fails once the marker is gone: the error names line 16
        p = self.run_rb("run", "--yes", "--start-at", "clean-up", "--transcript", self.path("t2.jsonl"), path)
        self.assertExit(p, 1)
        self.assertIn(f"{path}:16: sh rm {work}/marker: exited with code 1", p.stdout)


class ChecklistAnswers(RunbookTestCase):
    def test_a_check_takes_the_start_of_its_answer_in_any_case(self):
        doc = self.write("ch.md", "# T\n\n## A\n\n- [ ] One\n- [ ] Two\n- [ ] Three\n")
        t = self.path("ch.jsonl")
        a = self.write("ch.txt", "[*] One = s\n[*] Two = NOT\n[*] Three = d\n")
        self.assertExit(self.run_rb("run", doc, "--answers", a, "--transcript", t), 0)
        answers = [e["answer"] for e in self.events(t) if e["event"] == "prompt"]
        self.assertEqual(answers, ["skipped", "not done", "done"])

    def test_a_start_that_names_two_choices_is_refused(self):
        rb = self.write("two.lua", 'runbook { name = "two" }\nstep("pick", function() '
                        'print("got " .. choose("Region?", { "eu-west", "eu-central" })) end)\n')
        a = self.write("two.txt", "[*] Region? = eu\n")
        p = self.run_rb("run", rb, "--answers", a, "--transcript", self.path("two.jsonl"))
        self.assertExit(p, 1)
        self.assertIn('choose a number from 1 to 2 ("eu" starts more than one)', p.stdout)


class SeverityChoice(RunbookTestCase):
    def test_the_documents_levels_are_chosen_and_recorded_as_severity(self):
        doc = os.path.join(EXAMPLES, "oncall-procedures.md")
        for answer, level, name in (("", "P0", "SEV1"), ("2", "P1", "SEV2")):
            with self.subTest(answer=answer):
                t = self.path(f"t{level}.jsonl")
                a = self.write(f"a{level}.txt", f"[*] Declare the severity from the matrix above. = {answer}\n")
                p = self.run_rb("run", doc, "--dry-run", "--answers", a, "--transcript", t,
                                "-p", "status_url=http://127.0.0.1:1/status")
                self.assertExit(p, 0)
                sev = [e for e in self.events(t) if e["event"] == "severity"]
                self.assertEqual([(e["level"], e["action"]) for e in sev], [(level, "declared")])
                self.assertTrue(sev[0]["reasons"][0].startswith("the document's level " + name), sev[0])


if __name__ == "__main__":
    unittest.main()
