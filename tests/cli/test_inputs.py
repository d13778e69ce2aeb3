"""Inputs that are too big, malformed or missing, and a disk that fills up:
`--answers`, `--resume`, `verify` and `report` stop at a bound instead of
reading until memory runs out; a malformed or foreign file is named with
file:line and what is wrong; a bad scenario rule or an unset config
variable is reported before anything runs, and only when it matters; a
full disk stops the run cleanly and leaves a transcript that verifies."""
import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import threading

from harness import RUNBOOK, SOURCE_DIR, RunbookTestCase

ONE_STEP = """
runbook { name = "one", title = "One step" }
step("Look", { id = "look" }, function() log.info("looked") end)
"""

# Enough small events to fill a 64 KiB file system many times over.
FILL = """
runbook { name = "fill", title = "Fill the disk" }
step("Fill", { id = "fill" }, function()
  for i = 1, 5000 do log.info("filler line %d of a long incident", i) end
end)
step("After", { id = "after" }, function() log.info("after") end)
"""


class Case(RunbookTestCase):
    def transcript(self, name="ok.jsonl", runbook=ONE_STEP):
        rb = self.write("one.lua", runbook)
        t = self.path(name)
        self.assertExit(self.run_rb("run", rb, "--yes", "--transcript", t), 0)
        with open(t) as f:
            return t, f.read().splitlines(keepends=True)

    def assertClean(self, proc):
        """No Lua traceback or internal error reaches the operator."""
        out = proc.stdout + proc.stderr
        self.assertNotIn("traceback", out)
        self.assertNotIn("internal error", out)
        self.assertNotRegex(out, r"\.lua:\d+: in ", "a Lua stack frame was shown")


class EndlessInputs(Case):
    """Before: each of these grew to the 1 GB address-space limit of the
    check (7 to 17 s) and then failed with "Cannot allocate memory"."""

    def test_answers_from_dev_zero_stops_at_the_bound(self):
        rb = self.write("one.lua", ONE_STEP)
        p = self.run_rb("run", rb, "--answers", "/dev/zero", timeout=30)
        self.assertExit(p, 2)
        self.assertIn("/dev/zero: larger than 1024 KiB, the bound for an answers file", p.stderr)
        self.assertClean(p)

    def test_answers_from_a_fifo_that_never_ends_stops_at_the_bound(self):
        rb = self.write("one.lua", ONE_STEP)
        fifo = self.path("answers.fifo")
        os.mkfifo(fifo)
        stop = threading.Event()

        def feed():
            try:
                with open(fifo, "w") as f:
                    while not stop.is_set():
                        f.write("[*] Go on? = yes\n" * 1000)
            except (BrokenPipeError, OSError):
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        p = self.run_rb("run", rb, "--answers", fifo, timeout=30)
        stop.set()
        # Release the writer if runbook never opened the FIFO.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
        writer.join(10)
        self.assertExit(p, 2)
        self.assertIn(f"{fifo}: larger than 1024 KiB", p.stderr)

    def test_resume_from_dev_zero_stops_at_the_line_bound(self):
        rb = self.write("one.lua", ONE_STEP)
        p = self.run_rb("run", rb, "--resume", "/dev/zero", timeout=30)
        self.assertExit(p, 2)
        self.assertIn("/dev/zero:1: line longer than 16 MiB", p.stderr)
        self.assertClean(p)

    def test_resume_with_a_huge_last_line_stops_at_the_line_bound(self):
        t, lines = self.transcript()
        with open(t, "a") as f:
            f.write("x" * (17 << 20))
        rb = self.write("one.lua", ONE_STEP)
        p = self.run_rb("run", rb, "--resume", t, timeout=30)
        self.assertExit(p, 2)
        self.assertIn(f"{t}:{len(lines) + 1}: line longer than 16 MiB", p.stderr)

    def test_verify_of_dev_zero_stops_at_the_line_bound(self):
        p = self.run_rb("verify", "/dev/zero", timeout=30)
        self.assertExit(p, 2)
        self.assertIn("/dev/zero:1: line longer than 16 MiB, the bound for a transcript line", p.stderr)

    def test_report_of_dev_zero_stops_at_the_line_bound(self):
        p = self.run_rb("report", "/dev/zero", timeout=30)
        self.assertExit(p, 2)
        self.assertIn("/dev/zero:1: line longer than 16 MiB", p.stderr)
        self.assertClean(p)


class MalformedReport(Case):
    def edited(self, mutate):
        """A transcript whose first step.start is changed by mutate(event)."""
        t, lines = self.transcript()
        n = next(i for i, line in enumerate(lines) if '"event":"step.start"' in line)
        ev = json.loads(lines[n])
        mutate(ev)
        lines[n] = json.dumps(ev) + "\n"
        with open(t, "w") as f:
            f.writelines(lines)
        return t, n + 1

    def test_step_start_without_id_names_file_and_line(self):
        t, n = self.edited(lambda ev: ev.pop("id"))
        p = self.run_rb("report", t)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(f"{t}:{n}: step.start event has no id", p.stderr)
        self.assertClean(p)

    def test_bad_timestamp_names_file_and_line(self):
        t, n = self.edited(lambda ev: ev.update(ts="yesterday at noon"))
        p = self.run_rb("report", t)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(f'{t}:{n}: ts "yesterday at noon" is not a UTC time', p.stderr)
        self.assertClean(p)

    def test_line_that_is_not_json_names_file_and_line(self):
        t, lines = self.transcript()
        lines.insert(2, "this is no JSON\n")
        with open(t, "w") as f:
            f.writelines(lines)
        p = self.run_rb("report", t)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(f"{t}:3: not a JSON object", p.stderr)
        self.assertClean(p)

    def test_a_non_transcript_is_refused_not_reported_empty(self):
        passwd = self.write("passwd", "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2::/:/bin/false\n")
        p = self.run_rb("report", passwd)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertEqual(p.stdout, "", "no report may be printed for a non-transcript")
        self.assertIn(f"{passwd}:1: not a JSON object", p.stderr)

    def test_json_lines_of_another_tool_are_refused(self):
        other = self.write("other.jsonl", '{"level":"info","msg":"started"}\n')
        p = self.run_rb("report", other)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn(f"{other}:1: the line has no seq", p.stderr)

    def test_report_reads_a_fifo_once(self):
        t, lines = self.transcript()
        fifo = self.path("t.fifo")
        os.mkfifo(fifo)

        def feed():
            with open(fifo, "w") as f, open(t) as src:
                f.write(src.read())

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        p = self.run_rb("report", fifo)
        writer.join(10)
        self.assertExit(p, 0)
        self.assertIn('Step 1 "Look" started', p.stdout)
        self.assertIn(f"verified, {len(lines)} lines", p.stdout)

    def test_report_file_is_0600(self):
        t, _ = self.transcript()
        out = self.path("report.md")
        p = self.run_rb("report", t, "-o", out)
        self.assertExit(p, 0)
        mode = stat.S_IMODE(os.stat(out).st_mode)
        self.assertEqual(mode, 0o600, f"expected the report mode 0600, got {mode:o}")


class VerifyVerdicts(Case):
    def test_empty_file_is_not_a_valid_transcript(self):
        empty = self.write("empty.jsonl", "")
        p = self.run_rb("verify", empty)
        self.assertExit(p, 1)
        self.assertIn(f"{empty}: empty file: not a runbook transcript", p.stderr)
        self.assertNotIn("intact", p.stdout)

    def test_text_file_is_not_a_valid_transcript(self):
        passwd = self.write("passwd", "root:x:0:0:root:/root:/bin/bash\n")
        p = self.run_rb("verify", passwd)
        self.assertExit(p, 1)
        self.assertIn(f"{passwd}:1: not a runbook transcript", p.stderr)

    def test_appended_line_is_reported_as_appended(self):
        t, lines = self.transcript()
        final = json.loads(lines[-1])["hash"]
        # A line appended after the final hash was noted: a second run's
        # transcript head makes a chain that verifies on its own terms.
        last = json.loads(lines[-1])
        body = (f'{{"seq":{last["seq"] + 1},"ts":"{last["ts"]}","run":"{last["run"]}",'
                f'"event":"log","message":"added later","prev":"{final}"')
        h = hashlib.sha256((final + body + "}").encode()).hexdigest()
        with open(t, "a") as f:
            f.write(f'{body},"hash":"{h}"}}\n')
        self.assertExit(self.run_rb("verify", t), 0)
        p = self.run_rb("verify", t, "--expect-hash", final)
        self.assertExit(p, 1)
        self.assertNotIn("missing", p.stderr)
        self.assertIn(f"the expected hash is line {len(lines)}'s of {len(lines) + 1}", p.stderr)
        self.assertIn("1 line(s) after the expected final hash", p.stderr)

    def test_cut_lines_are_reported_as_missing(self):
        t, lines = self.transcript()
        final = json.loads(lines[-1])["hash"]
        with open(t, "w") as f:
            f.writelines(lines[:-1])
        p = self.run_rb("verify", t, "--expect-hash", final)
        self.assertExit(p, 1)
        self.assertIn(f"no line has the expected hash {final}: lines are missing at the end", p.stderr)

    def test_expect_hash_must_be_a_hash(self):
        t, _ = self.transcript()
        p = self.run_rb("verify", t, "--expect-hash", "abc123")
        self.assertExit(p, 2)
        self.assertIn("--expect-hash", p.stderr)


class ScenarioRules(Case):
    def test_bad_pattern_stops_the_run_before_anything_runs(self):
        rb = self.write("one.lua", ONE_STEP)
        # The broken part comes after a literal: matching "" would never
        # reach it, so only a real check of the pattern finds it.
        sc = self.write("game.lua", "return {\n"
                        '  { name = "fine", primitive = "exec", match = "echo", result = { code = 0 } },\n'
                        '  { name = "broken", primitive = "exec",\n'
                        '    match = "pg_restore [%-%-clean", result = { code = 1 } },\n'
                        "}\n")
        t = self.path("never.jsonl")
        p = self.run_rb("run", rb, "--dry-run", "--scenario", sc, "--transcript", t)
        self.assertExit(p, 2)
        self.assertIn(f"{sc}:4: rule 2", p.stderr)
        self.assertIn('match "pg_restore [%-%-clean" is not a valid Lua pattern', p.stderr)
        self.assertIn("malformed pattern (missing ']')", p.stderr)
        self.assertFalse(os.path.exists(t), "nothing may run (no transcript) after a bad scenario")
        self.assertNotIn("[1/1]", p.stdout)

    def test_shipped_scenarios_still_load(self):
        rb = self.write("one.lua", ONE_STEP)
        d = os.path.join(SOURCE_DIR, "examples", "scenarios")
        for name in sorted(os.listdir(d)):
            p = self.run_rb("run", rb, "--dry-run", "--yes", "--scenario", os.path.join(d, name))
            self.assertExit(p, 0)


CONFIG = """
targets = {
  staging = { db = "postgresql://127.0.0.1/app" },
  prod = {
    services = { "api" },
    db = env("RB_TEST_PROD_DB_URL"),
  },
}
"""


class ConfigEnv(Case):
    def setUp(self):
        super().setUp()
        self.env.pop("RB_TEST_PROD_DB_URL", None)
        self.cfg = self.write("config.lua", CONFIG)
        self.rb = self.write("one.lua", ONE_STEP)

    def test_run_without_a_target_is_not_blocked(self):
        p = self.run_rb("run", self.rb, "--yes", "--config", self.cfg)
        self.assertExit(p, 0)

    def test_another_target_is_not_blocked(self):
        p = self.run_rb("run", self.rb, "--yes", "--config", self.cfg, "--target", "staging")
        self.assertExit(p, 0)

    def test_the_target_that_needs_it_names_variable_target_and_line(self):
        p = self.run_rb("run", self.rb, "--yes", "--config", self.cfg, "--target", "prod")
        self.assertExit(p, 2)
        self.assertIn(f"target prod: environment variable RB_TEST_PROD_DB_URL is not set (config {self.cfg}:6)",
                      p.stderr)
        self.assertClean(p)

    def test_set_variable_is_used(self):
        p = self.run_rb("run", self.rb, "--yes", "--config", self.cfg, "--target", "prod",
                        env={"RB_TEST_PROD_DB_URL": "postgresql://127.0.0.1/prod"})
        self.assertExit(p, 0)


class EmptyAnswer(Case):
    def test_empty_answer_takes_the_default(self):
        rb = self.write("ask.lua", """
runbook { name = "ask", title = "Ask" }
step("Ask", function()
  print("@replica=" .. prompt("Which replica?", { default = "replica-1" }))
end)
""")
        a = self.write("a.txt", "[*] Which replica? = \n")
        p = self.run_rb("run", rb, "--answers", a)
        self.assertExit(p, 0)
        self.assertIn("@replica=replica-1", p.stdout)


class FullDisk(Case):
    """A full disk used to end the run with two Lua tracebacks and no
    run.end.  The test mounts a 64 KiB tmpfs (as root).  Where mount is not
    permitted it falls back to RLIMIT_FSIZE, which makes write(2) fail with
    EFBIG instead of ENOSPC: a stand-in that takes the same write-failure
    path, said in the test's output."""

    def small_disk(self):
        d = self.path("disk")
        os.makedirs(d)
        m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d],
                           capture_output=True, text=True)
        if m.returncode == 0:
            self.addCleanup(subprocess.run, ["umount", d], check=True)
            return d, None, "No space left on device"

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))
        print(f"mount not permitted ({m.stderr.strip()}): RLIMIT_FSIZE stands in for a full disk")
        return d, limit, "File too large"

    def test_full_disk_stops_the_run_cleanly_and_what_was_written_verifies(self):
        d, preexec, cause = self.small_disk()
        rb = self.write("fill.lua", FILL)
        t = os.path.join(d, "t.jsonl")
        env = dict(self.env)
        p = subprocess.run([RUNBOOK, "run", rb, "--yes", "--transcript", t],
                           capture_output=True, text=True, env=env, cwd=self.tmp, timeout=60,
                           preexec_fn=preexec)
        self.assertExit(p, 1)
        self.assertClean(p)
        self.assertIn(f"transcript {t}: cannot write the log event: {cause}", p.stderr)
        self.assertIn("the run stopped at step 1 'Fill'", p.stderr)
        self.assertNotIn("[2/2]", p.stdout, "the run must stop, not go on unrecorded")
        with open(t, "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"\n"), "no half line at the end")
        events = [json.loads(line) for line in data.decode().splitlines()]
        self.assertGreater(len(events), 10)
        v = self.run_rb("verify", t)
        self.assertExit(v, 0)
        self.assertIn(f"{len(events)} lines, hash chain intact", v.stdout)

    def test_full_disk_asks_no_question_even_when_an_answer_is_ready(self):
        # Nothing after the failed write could be recorded: the run stops at
        # once instead of asking retry/skip/abort (an answers file would
        # otherwise skip the step and go on unrecorded).
        d, preexec, cause = self.small_disk()
        rb = self.write("fill.lua", FILL)
        a = self.write("a.txt", "[*] !error = skip\n")
        t = os.path.join(d, "t.jsonl")
        p = subprocess.run([RUNBOOK, "run", rb, "--answers", a, "--transcript", t],
                           capture_output=True, text=True, env=dict(self.env), cwd=self.tmp, timeout=60,
                           preexec_fn=preexec)
        self.assertExit(p, 1)
        self.assertClean(p)
        self.assertNotIn("!error", p.stdout, "a retry/skip/abort question was asked after the write failed")
        self.assertNotIn("[2/2]", p.stdout, "the run must stop, not go on unrecorded")
        self.assertIn(f"cannot write the log event: {cause}", p.stderr)
        self.assertExit(self.run_rb("verify", t), 0)

