"""The transcript: where it goes, its mode, its hash chain (checked here
independently of the binary), writing per event and fsync at step
boundaries, `runbook verify` on intact and tampered files, a run killed
with SIGKILL, and secrets kept out of the file and off the screen."""
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
import unittest

from harness import RUNBOOK, RunbookTestCase, runbook_path

FLOW = runbook_path("flow.lua")
KILLED = runbook_path("killed.lua")
SECRETS = runbook_path("secrets.lua")


class TranscriptTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.marks = self.path("marks")
        os.makedirs(self.marks)

    def run_flow(self, *args, **kw):
        return self.run_rb("run", FLOW, "-p", f"dir={self.marks}", *args, **kw)

    def only_file(self, directory):
        self.assertTrue(os.path.isdir(directory), f"expected the directory {directory}")
        files = os.listdir(directory)
        self.assertEqual(len(files), 1, f"expected one transcript in {directory}, found {files}")
        return os.path.join(directory, files[0])

    def read_lines(self, path):
        with open(path) as f:
            return f.readlines()

    def write_lines(self, path, lines):
        with open(path, "w") as f:
            f.writelines(lines)


class WhereAndHow(TranscriptTestCase):
    def test_default_directory_under_xdg_state_home(self):
        p = self.run_flow()
        self.assertExit(p, 0)
        d = os.path.join(self.env["XDG_STATE_HOME"], "runbook", "transcripts")
        path = self.only_file(d)
        self.assertRegex(os.path.basename(path), r"^flow-\d{8}T\d{6}Z-[0-9a-f]+\.jsonl$")
        # the path is printed at the start and at the end
        self.assertEqual(p.stdout.count(f"transcript: {path}"), 2, p.stdout)

    def test_default_directory_under_home_without_xdg_state_home(self):
        del self.env["XDG_STATE_HOME"]
        p = self.run_flow()
        self.assertExit(p, 0)
        path = self.only_file(self.path(".local", "state", "runbook", "transcripts"))
        self.assertIn(f"transcript: {path}", p.stdout)

    def test_file_mode_0600_and_directories_0700(self):
        self.assertExit(self.run_flow(), 0)
        d = os.path.join(self.env["XDG_STATE_HOME"], "runbook", "transcripts")
        path = self.only_file(d)
        self.assertEqual(oct(stat.S_IMODE(os.stat(path).st_mode)), "0o600")
        self.assertEqual(oct(stat.S_IMODE(os.stat(d).st_mode)), "0o700")

    def test_transcript_option_sets_the_path_and_mode(self):
        t = self.path("deep", "er", "run.jsonl")
        p = self.run_flow("--transcript", t)
        self.assertExit(p, 0)
        self.assertEqual(oct(stat.S_IMODE(os.stat(t).st_mode)), "0o600")
        self.assertIn(f"transcript: {t}", p.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.env["XDG_STATE_HOME"], "runbook")))

    def test_an_existing_file_is_never_overwritten(self):
        t = self.write("exists.jsonl", "precious\n")
        p = self.run_flow("--transcript", t)
        self.assertExit(p, 2)
        self.assertIn("File exists", p.stderr)
        with open(t) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertEqual(os.listdir(self.marks), [], "no step may run without a transcript")

    def test_lines_are_hash_chained_as_documented(self):
        # Recompute the chain here, from transcript.h's definition, rather
        # than trusting `runbook verify`.
        t = self.path("t.jsonl")
        self.assertExit(self.run_flow("--transcript", t), 0)
        prev = "0" * 64
        lines = self.read_lines(t)
        run = None
        for n, line in enumerate(lines, 1):
            ev = json.loads(line)
            self.assertEqual(ev["seq"], n)
            self.assertRegex(ev["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            run = run or ev["run"]
            self.assertEqual(ev["run"], run)
            self.assertEqual(ev["prev"], prev, f"line {n}: prev is not the hash of line {n - 1}")
            body, sep, _ = line.rstrip("\n").rpartition(',"hash":"')
            self.assertTrue(sep, f"line {n} has no hash member last")
            want = hashlib.sha256((prev + body + "}").encode()).hexdigest()
            self.assertEqual(ev["hash"], want, f"line {n}: hash does not cover prev and the line")
            prev = ev["hash"]
        kinds = [json.loads(l)["event"] for l in lines]
        self.assertEqual(kinds[0], "run.start")
        self.assertEqual(kinds[-1], "run.end")
        for k in ("param", "step.start", "call", "log", "step.end"):
            self.assertIn(k, kinds)
        start = json.loads(lines[0])
        for k in ("runbook", "operator", "host", "argv", "dry_run"):
            self.assertIn(k, start)
        self.assertIn(f"final hash: {prev}", self.run_rb("verify", t).stdout)

    def traced(self, *args):
        """Run `runbook run ARGS --transcript T` under strace: the events
        written, and the transcript's write(2)s ("write", seq), fsyncs
        ("fsync", None) and the polls that may wait 100 ms or more
        ("wait", ms), in order."""
        t = self.path("t.jsonl")
        trace = self.path("strace.txt")
        # LeakSanitizer cannot run under ptrace: leave leaks to the other tests
        env = dict(self.env, ASAN_OPTIONS=self.env.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
        p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=write,fsync,fdatasync,poll", "-s", "32",
                            "-o", trace, RUNBOOK, "run", *args, "--transcript", t],
                           capture_output=True, text=True, env=env, cwd=self.tmp, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        events = [json.loads(l)["event"] for l in self.read_lines(t)]
        # which fd holds the transcript: the one the first line went to
        calls = []
        fd = None
        with open(trace) as f:
            for line in f:
                m = re.search(r'write\((\d+), "\{\\"seq\\":(\d+),', line)
                if m:
                    fd = fd or m.group(1)
                    if m.group(1) == fd:
                        calls.append(("write", int(m.group(2))))
                    continue
                m = re.search(r"f(?:data)?sync\((\d+)\)", line)
                if m and m.group(1) == fd:
                    calls.append(("fsync", None))
                m = re.search(r"\bpoll\(\[.*\], \d+, (\d+)\)", line)
                if m and int(m.group(1)) >= 100:
                    calls.append(("wait", int(m.group(1))))
        writes = [seq for kind, seq in calls if kind == "write"]
        self.assertEqual(writes, list(range(1, len(events) + 1)),
                         "expected each event in exactly one write(2), in order")
        return events, calls

    @unittest.skipUnless(shutil.which("strace"), "needs strace to watch write(2) and fsync(2)")
    def test_one_write_per_event_and_fsync_at_step_boundaries(self):
        events, calls = self.traced(FLOW, "-p", f"dir={self.marks}")
        calls = [c for c in calls if c[0] != "wait"]
        # The last step's end owes its fsync to run.end's, written next
        # with nothing acting in between (no cleanup, no call).
        last_step_end = max(n for n, e in enumerate(events, 1) if e == "step.end")
        for i, (kind, seq) in enumerate(calls):
            if kind == "write" and events[seq - 1] in ("step.end", "run.end") and seq != last_step_end:
                nxt = calls[i + 1] if i + 1 < len(calls) else None
                self.assertEqual(nxt, ("fsync", None),
                                 f"expected fsync right after line {seq} ({events[seq - 1]})")
        after_last = calls[calls.index(("write", last_step_end)) + 1:]
        self.assertEqual(after_last[-2:], [("write", len(events)), ("fsync", None)])
        self.assertNotIn(("fsync", None), after_last[:-1],
                         "the last step's end is synced with run.end, not on its own")
        self.assertEqual(events[-1], "run.end")

    @unittest.skipUnless(shutil.which("strace"), "needs strace to watch write(2) and fsync(2)")
    def test_a_one_step_run_syncs_once_at_its_end(self):
        rb = self.path("one.lua")
        with open(rb, "w") as f:
            f.write('runbook { name = "one" }\nstep("Nothing", function() end)\n')
        events, calls = self.traced(rb)
        self.assertEqual(events, ["run.start", "step.start", "step.end", "run.end"])
        # run.start owes its fsync: the step's end (here run.end's) covers it
        self.assertEqual([c for c in calls if c[0] != "wait"],
                         [("write", 1), ("write", 2), ("write", 3), ("write", 4), ("fsync", None)])

    @unittest.skipUnless(shutil.which("strace"), "needs strace to watch write(2), fsync(2), poll(2)")
    def test_run_start_is_on_disk_before_the_run_first_waits(self):
        # A step that does nothing but wait (poll's pause between two tries
        # of a plain Lua condition): the owed fsync of run.start is done
        # before that wait, not left for the step's end.
        rb = self.path("waits.lua")
        with open(rb, "w") as f:
            f.write('runbook { name = "waits" }\n'
                    'step("Wait once", function()\n'
                    '  local n = 0\n'
                    '  poll(function() n = n + 1; return n > 1 end, { every = 0.3, timeout = 10 })\n'
                    'end)\n')
        events, calls = self.traced(rb)
        self.assertEqual(events[:2], ["run.start", "step.start"])
        first_wait = next(i for i, c in enumerate(calls) if c[0] == "wait")
        self.assertGreaterEqual(calls[first_wait][1], 250, calls)
        self.assertEqual(calls[first_wait - 1], ("fsync", None),
                         f"expected run.start and step.start synced just before the wait: {calls}")
        self.assertEqual(calls[:first_wait - 1], [("write", 1), ("write", 2)],
                         "run.start is not synced on its own")
        self.assertEqual(calls[-2:], [("write", len(events)), ("fsync", None)])


class Verify(TranscriptTestCase):
    def setUp(self):
        super().setUp()
        self.t = self.path("t.jsonl")
        self.assertExit(self.run_flow("--transcript", self.t, "-p", "fail_at=levels"), 1)
        self.lines = self.read_lines(self.t)
        self.assertGreater(len(self.lines), 8)

    def verify(self, path, *args):
        return self.run_rb("verify", path, *args)

    def test_intact_file_verifies(self):
        p = self.verify(self.t)
        self.assertExit(p, 0)
        self.assertIn(f"{len(self.lines)} lines, hash chain intact", p.stdout)
        self.assertNotIn("did not finish", p.stdout)

    def test_edited_line_is_named(self):
        n = next(i for i, l in enumerate(self.lines) if '"event":"log"' in l)
        self.lines[n] = self.lines[n].replace('"level":"info"', '"level":"warn"', 1)
        self.write_lines(self.t, self.lines)
        p = self.verify(self.t)
        self.assertExit(p, 1)
        self.assertIn(f"{self.t}:{n + 1}: hash mismatch", p.stderr)

    def test_edit_that_recomputes_the_hash_is_caught_on_the_next_line(self):
        n = 4
        ev = json.loads(self.lines[n - 1])
        line = self.lines[n - 1].replace('"event":"', '"forged":true,"event":"', 1)
        body = line.rstrip("\n").rpartition(',"hash":"')[0]
        forged = hashlib.sha256((ev["prev"] + body + "}").encode()).hexdigest()
        self.lines[n - 1] = f'{body},"hash":"{forged}"}}\n'
        self.write_lines(self.t, self.lines)
        p = self.verify(self.t)
        self.assertExit(p, 1)
        self.assertIn(f"{self.t}:{n + 1}:", p.stderr)

    def test_removed_line_is_named(self):
        del self.lines[5]
        self.write_lines(self.t, self.lines)
        p = self.verify(self.t)
        self.assertExit(p, 1)
        self.assertRegex(p.stderr, rf"{re.escape(self.t)}:6: .*(removed|reordered)")

    def test_removed_first_line_is_named(self):
        self.write_lines(self.t, self.lines[1:])
        p = self.verify(self.t)
        self.assertExit(p, 1)
        self.assertIn(f"{self.t}:1:", p.stderr)

    def test_reordered_lines_are_named(self):
        self.lines[3], self.lines[4] = self.lines[4], self.lines[3]
        self.write_lines(self.t, self.lines)
        p = self.verify(self.t)
        self.assertExit(p, 1)
        self.assertIn(f"{self.t}:4:", p.stderr)

    def test_lines_cut_from_the_end_are_caught_with_the_final_hash(self):
        final = json.loads(self.lines[-1])["hash"]
        self.write_lines(self.t, self.lines[:-2])
        p = self.verify(self.t, "--expect-hash", final)
        self.assertExit(p, 1)
        self.assertIn("lines are missing at the end", p.stderr)
        self.assertExit(self.verify(self.t), 0)

    def test_garbage_line_is_named(self):
        self.lines.insert(2, '{"seq":3, "not": "a transcript line"}\n')
        self.write_lines(self.t, self.lines)
        p = self.verify(self.t)
        self.assertExit(p, 1)
        self.assertIn(f"{self.t}:3:", p.stderr)

    def test_missing_file_is_a_usage_error(self):
        p = self.verify(self.path("nope.jsonl"))
        self.assertExit(p, 2)
        self.assertIn("nope.jsonl", p.stderr)


class Killed(TranscriptTestCase):
    def test_sigkill_mid_run_leaves_a_transcript_that_verifies(self):
        t = self.path("t.jsonl")
        proc = subprocess.Popen([RUNBOOK, "run", KILLED, "--transcript", t],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=self.env, cwd=self.tmp)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        # Every event reaches the file as it happens: the log line of the
        # waiting step is there while the step still waits.
        deadline = time.monotonic() + 10
        text = ""
        while "waiting now" not in text and time.monotonic() < deadline:
            time.sleep(0.02)
            if os.path.exists(t):
                with open(t) as f:
                    text = f.read()
        self.assertIn("waiting now", text, "the transcript was not written while the run went on")
        proc.send_signal(signal.SIGKILL)
        self.assertEqual(proc.wait(10), -signal.SIGKILL)
        events = self.events(t)
        self.assertEqual([e["event"] for e in events][-2:], ["step.start", "log"])
        self.assertNotIn("run.end", [e["event"] for e in events])
        p = self.run_rb("verify", t)
        self.assertExit(p, 0)
        self.assertIn(f"{len(events)} lines, hash chain intact", p.stdout)
        self.assertIn("did not finish", p.stdout)


class Secrets(TranscriptTestCase):
    TOKEN = "Tok-Param-9137"
    KEY = "Vault-Key-4420"
    PHRASE = "Zebra-Phrase-42"
    URL_PASSWORD = "Pa55-in-url-77"

    def test_secrets_never_appear_in_clear(self):
        t = self.path("t.jsonl")
        a = self.write("answers.txt", f"[use] Passphrase = {self.PHRASE}\n")
        p = self.run_rb("run", SECRETS, "-p", f"token={self.TOKEN}", "--answers", a,
                        "--transcript", t, env={"RB_TEST_VAULT_KEY": self.KEY})
        self.assertExit(p, 1)
        with open(t) as f:
            text = f.read()
        screen = p.stdout + p.stderr
        for secret in (self.TOKEN, self.KEY, self.PHRASE, self.URL_PASSWORD):
            self.assertNotIn(secret, text, f"{secret} in the transcript")
            self.assertNotIn(secret, screen, f"{secret} on the screen")
        # the run did use them, and says so with ***
        self.assertIn("token is ***", p.stdout)
        self.assertIn("key is ***", p.stdout)
        self.assertIn("passphrase is ***", p.stdout)
        self.assertIn("postgres://admin:***@db.example:5432/app", p.stdout)
        self.assertIn("failing with *** and *** and ***", p.stdout)
        ev = self.events(t)
        self.assertIn("token=***", ev[0]["argv"])
        token = next(e for e in ev if e["event"] == "param" and e["name"] == "token")
        self.assertEqual(token["value"], "***")
        self.assertExit(self.run_rb("verify", t), 0)

    def test_show_does_not_print_a_secret_default(self):
        rb = self.write("sd.lua", 'runbook { name = "sd", title = "t", severity = "P3" }\n'
                        'param("pw", { secret = true, default = "Dflt-Secret-5" })\n'
                        'step("s", function() end)\n')
        p = self.run_rb("show", rb)
        self.assertExit(p, 0)
        self.assertNotIn("Dflt-Secret-5", p.stdout)
        self.assertIn("default ***", p.stdout)


if __name__ == "__main__":
    unittest.main()
