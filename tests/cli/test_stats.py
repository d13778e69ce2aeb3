"""`runbook stats` on transcripts of real runs: the figures of its table
and its JSON, each worked out again here from the transcript lines."""
import datetime
import json
import os
import re
import statistics

from harness import RunbookTestCase

# Declares a severity, asks, changes something (exec true, mutating), then
# a step that fails.  The param `started` is triage's "as reported".
RUNBOOK = """
local incident = require("incident")
runbook { name = "fixit", title = "Fix it", severity = "P2" }
param("level", { default = "P1" })
param("started", { help = "when it started, as reported" })
step("Declare", { id = "declare" }, function(p) incident.declare(p.level, "the test says so") end)
step("Ask", { id = "ask" }, function() confirm("Restart now?") end)
step("Fix", { id = "fix" }, function() exec { "true" } end)
step("Flaky", { id = "flaky" }, function() sh("exit 3", { check = true }) end)
"""

YES = "[ask] Restart now? = yes\n[flaky] !error = skip\n"
NO = "[ask] Restart now? = no\n[ask] !error = skip\n[flaky] !error = skip\n"
RETRY = "[ask] Restart now? = yes\n[flaky] !error = retry\n[flaky] !error = skip\n"


def epoch(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def lines_of(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def expected_incident(events):
    """detect/mitigate/resolve of one run, from its lines, as docs/stats.md
    defines them (a run alone: its own incident)."""
    start = epoch(events[0]["ts"])
    for ev in events:
        if ev["event"] == "param" and ev["name"] == "started" and isinstance(ev.get("value"), str):
            t = datetime.datetime.strptime(ev["value"], "%Y-%m-%d %H:%M:%S UTC").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            start = min(start, t)
    detected = next(epoch(e["ts"]) for e in events if e["event"] == "severity"
                    and e["action"] in ("confirmed", "changed", "declared", "raised"))
    changed, mitigated = set(), None
    for e in events:
        if e["event"] == "call" and e.get("mutating") and e["outcome"] == "ok":
            changed.add(e["step"])
        if e["event"] == "step.end" and e["status"] == "ok" and e["id"] in changed and mitigated is None:
            mitigated = epoch(e["ts"])
    end = [e for e in events if e["event"] == "run.end"][0]
    resolved = epoch(end["ts"]) if end["status"] == "done" else None
    return {"ttd": round(detected - start, 3), "ttm": round(mitigated - start, 3),
            "ttr": None if resolved is None else round(resolved - start, 3)}


def percentile(xs, p):
    s = sorted(xs)
    pos = (len(s) - 1) * p / 100
    lo = int(pos)
    return s[lo] if lo + 1 >= len(s) else s[lo] + (s[lo + 1] - s[lo]) * (pos - lo)


def table_duration(s):
    """out.duration of stdlib/runbook/stats_out.lua."""
    if s is None:
        return "-"
    if s < 10:
        return f"{s:.2f} s"
    return f"{s:.1f} s"


class Stats(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.rb = self.write("fixit.lua", RUNBOOK)
        self.dir = self.path("transcripts")
        os.makedirs(os.path.join(self.dir, "deeper"))

    def run_fixit(self, name, answers, *args):
        a = self.write(f"{name}.answers", answers)
        t = os.path.join(self.dir, f"{name}.jsonl")
        p = self.run_rb("run", self.rb, "--answers", a, "--transcript", t, *args)
        self.assertExit(p, 0)
        return t

    def stats(self, *args, code=0):
        p = self.run_rb("stats", *args)
        self.assertExit(p, code)
        return p

    def three_runs(self):
        started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
        a = self.run_fixit("a", YES, "-p", "started=" + started.strftime("%Y-%m-%d %H:%M:%S UTC"))
        b = self.run_fixit("deeper/b", NO, "-p", "level=P0")
        c = self.run_fixit("c", RETRY)
        return a, b, c

    def test_incidents_and_mttr_by_severity_match_the_transcripts(self):
        paths = self.three_runs()
        got = json.loads(self.stats("--json", "--gap", "0", self.dir).stdout)
        self.assertEqual(got["transcripts"], {"found": 3, "used": 3, "dry_runs": 0, "left_out": []})
        self.assertEqual(len(got["incidents"]), 3, got["incidents"])
        by_file = {inc["runs"][0]["file"]: inc for inc in got["incidents"]}
        want = {p: expected_incident(lines_of(p)) for p in paths}
        for p in paths:
            inc = by_file[p]
            self.assertEqual(inc["time_to_detect"], want[p]["ttd"], p)
            self.assertEqual(inc["time_to_mitigate"], want[p]["ttm"], p)
            self.assertEqual(inc["time_to_resolve"], want[p]["ttr"], p)
            self.assertEqual(inc["status"], "resolved")
        self.assertEqual(by_file[paths[0]]["start_source"], "reported")
        self.assertGreaterEqual(want[paths[0]]["ttd"], 300, "measured from the reported start")
        self.assertEqual(by_file[paths[1]]["severity"], "P0")
        sev = {s["severity"]: s for s in got["severities"]}
        self.assertEqual([s["severity"] for s in got["severities"]], ["P0", "P1"])
        p1 = [want[paths[0]]["ttr"], want[paths[2]]["ttr"]]
        self.assertAlmostEqual(sev["P1"]["mttr"], sum(p1) / 2, delta=0.001)
        self.assertEqual((sev["P1"]["incidents"], sev["P1"]["resolved"]), (2, 2))
        self.assertEqual(sev["P0"]["mttr"], want[paths[1]]["ttr"])

        table = self.stats("--gap", "0", self.dir).stdout
        self.assertIn("incidents: 3 (from 3 of 3 transcripts)", table)
        self.assertRegex(table, r"(?m)^P1\s+2\s+2\s+")
        row = re.search(r"(?m)^\S+\s+-\s+P0\s+(.+?)\s{2,}(.+?)\s{2,}(.+?)\s{2,}fixit$", table)
        self.assertIsNotNone(row, table)
        self.assertEqual(row.groups(), tuple(table_duration(want[paths[1]][k]) for k in ("ttd", "ttm", "ttr")))

    def test_step_medians_failure_and_skip_rates_and_no_answers(self):
        paths = self.three_runs()
        got = json.loads(self.stats("--json", self.dir).stdout)
        rb = got["runbooks"][0]
        self.assertEqual((rb["runbook"], rb["runs"]), ("fixit", 3))
        ends = [e for p in paths for e in lines_of(p) if e["event"] == "step.end"]
        table = self.stats(self.dir).stdout
        for step in rb["steps"]:
            mine = [e for e in ends if e["id"] == step["id"]]
            ok = [e["duration"] for e in mine if e["status"] == "ok"]
            failed = sum(1 for e in mine if e["status"] != "ok")
            last = {}
            for p in paths:
                for e in lines_of(p):
                    if e["event"] == "step.end" and e["id"] == step["id"]:
                        last[p] = e["status"]
            skipped = sum(1 for s in last.values() if s == "skipped")
            self.assertEqual(step["attempts"], len(mine), step)
            self.assertEqual(step["failed"], failed, step)
            self.assertAlmostEqual(step["failure_rate"], failed / len(mine), places=9)
            self.assertEqual(step["skipped"], skipped, step)
            self.assertAlmostEqual(step["skip_rate"], skipped / 3, places=9)
            if ok:
                self.assertEqual(step["median_duration"], round(statistics.median(ok), 3), step)
                self.assertEqual(step["p90_duration"], round(percentile(ok, 90), 3), step)
            else:
                self.assertNotIn("median_duration", step)
            self.assertRegex(table, rf"(?m)^  {step['id']}\s+{len(mine)}\s+.*\s{round(100 * failed / len(mine))}%"
                             rf"\s+{round(100 * skipped / 3)}%$")
        flaky = next(s for s in rb["steps"] if s["id"] == "flaky")
        self.assertEqual((flaky["attempts"], flaky["failed"], flaky["skip_rate"]), (4, 4, 1))
        ask = next(s for s in rb["steps"] if s["id"] == "ask")
        self.assertEqual((ask["failed"], ask["skipped"]), (1, 1), "the declined ask was skipped")
        self.assertEqual(rb["answered_no"], [{"question": "Restart now?", "step": "ask", "asked": 3, "no": 1}])
        self.assertIn("answered no 1 of 3: [ask] Restart now?", table)

    def test_runs_close_in_time_on_one_target_are_one_incident(self):
        paths = self.three_runs()
        got = json.loads(self.stats("--json", self.dir).stdout)
        self.assertEqual(len(got["incidents"]), 1, got["incidents"])
        inc = got["incidents"][0]
        self.assertEqual(inc["severity"], "P0", "the worst level declared in its runs")
        self.assertEqual(sorted(r["file"] for r in inc["runs"]), sorted(paths))
        reported = next(e["value"] for e in lines_of(paths[0]) if e["event"] == "param" and e["name"] == "started")
        start = datetime.datetime.strptime(reported, "%Y-%m-%d %H:%M:%S UTC").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        self.assertEqual(inc["start_source"], "reported")
        detected = min(epoch(e["ts"]) for p in paths for e in lines_of(p) if e["event"] == "severity")
        resolved = epoch(lines_of(paths[2])[-1]["ts"])
        self.assertEqual(inc["time_to_detect"], round(detected - start, 3))
        self.assertEqual(inc["time_to_resolve"], round(resolved - start, 3), "the last fixing run's end")

    def test_a_tampered_or_truncated_transcript_is_named_and_left_out(self):
        a, b, c = self.three_runs()
        with open(b) as f:
            lines = f.readlines()
        n = next(i for i, line in enumerate(lines) if '"event":"step.end"' in line)
        lines[n] = lines[n].replace('"status":"ok"', '"status":"failed"')
        with open(b, "w") as f:
            f.writelines(lines)
        with open(c) as f:
            text = f.read()
        with open(c, "w") as f:
            f.write(text[:len(text) - 40])
        p = self.stats("--json", "--gap", "0", self.dir, code=1)
        got = json.loads(p.stdout)
        left = {entry["file"]: entry for entry in got["transcripts"]["left_out"]}
        self.assertEqual(set(left), {b, c})
        self.assertEqual(left[b]["line"], n + 1)
        self.assertEqual(left[c]["line"], len(text.splitlines()))
        self.assertIn(f"left out {b}:{n + 1}: does not verify", p.stderr)
        self.assertIn(f"left out {c}:{len(text.splitlines())}: ", p.stderr)
        self.assertEqual(got["transcripts"]["used"], 1)
        self.assertEqual([i["runs"][0]["file"] for i in got["incidents"]], [a])
        self.assertEqual(got["runbooks"][0]["runs"], 1)

    def test_dry_runs_are_not_incidents(self):
        self.run_fixit("a", YES)
        self.run_fixit("d", YES, "--dry-run")
        got = json.loads(self.stats("--json", self.dir).stdout)
        self.assertEqual(got["transcripts"]["dry_runs"], 1)
        self.assertEqual(len(got["incidents"]), 1)
        self.assertEqual(got["runbooks"][0]["runs"], 1)
        table = self.stats(self.dir).stdout
        self.assertNotIn("*", table, "no start was reported in triage: no mark, no footnote for one")
        self.assertIn("(times are from the start)", table)

    def test_errors_before_anything_to_report(self):
        p = self.stats("--json", self.path("missing.jsonl"), code=2)
        self.assertEqual(p.stdout, "")
        self.assertIn("missing.jsonl", p.stderr)
        p = self.stats("--json", "/dev/null", code=2)
        self.assertEqual(p.stdout, "")
        self.assertIn("/dev/null: not a regular file", p.stderr)
        p = self.stats("--json", "--gap", "soon", self.dir, code=2)
        self.assertEqual(p.stdout, "")
        self.assertIn("--gap", p.stderr)
        empty = json.loads(self.stats("--json", self.dir).stdout)
        self.assertEqual(empty["incidents"], [])
        self.assertEqual(empty["runbooks"], [])
        self.assertEqual(empty["transcripts"]["found"], 0)

    def test_no_argument_reads_the_default_transcript_directory(self):
        p = self.run_rb("run", self.rb, "--answers", self.write("y.answers", YES))
        self.assertExit(p, 0)
        got = json.loads(self.stats("--json").stdout)
        self.assertEqual(got["transcripts"]["used"], 1)
        self.assertTrue(got["incidents"][0]["runs"][0]["file"].startswith(
            os.path.join(self.env["XDG_STATE_HOME"], "runbook", "transcripts")))
