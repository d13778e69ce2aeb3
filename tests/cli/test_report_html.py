"""`runbook report --html`: one self-contained page with the timeline drawn
as an SVG chart, checked in a real headless Chromium.

One real run makes the transcript (through a pty: the operator answers a
confirmation, retries a step that failed, skips one that fails again and
types the approver of an approval with no room; the run waits and polls
and notifies a real webhook on loopback), then:
  - the page, parsed, refers to nothing outside itself and escapes what it
    took from the transcript (a step name and an output holding <script>);
  - Chromium loads it with name resolution disabled and a net log: no
    request is made; its screenshot shows each bar in its colour where the
    SVG puts it; its DOM holds the step names in the SVG, and the injected
    scripts did not run (checked on a copy without the page's CSP, so the
    escaping alone is what is tested);
  - a control page that does hold a live script and an external image shows
    that both checks can fail.
"""
import html.parser
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import unittest
import zlib

from harness import RETRY_SKIP_ABORT, RunbookTestCase
from net.test_notify import Webhook

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# The chart's colours (stdlib/runbook/report_html.lua's COLOR).
OK, FAILED, STRIPE = (0x2e, 0x7d, 0x32), (0xc6, 0x28, 0x28), (0x7b, 0x11, 0x11)
OPERATOR, APPROVAL, TIMER = (0xf9, 0xa8, 0x25), (0x7b, 0x1f, 0xa2), (0x02, 0x88, 0xd1)
NOTIFY, PLOT = (0x15, 0x65, 0xc0), (0xf3, 0xf5, 0xf8)

STEP_XSS = "Look <script>document.title='pwned-step'</script>"
OUTPUT_XSS = "<script>document.title='pwned-output'</script>"
QUESTION_XSS = "Fail over now? <img src=x onerror=\"document.title='pwned-img'\">"

RUNBOOK = r'''
runbook { name = "pic", title = "Failover drill", severity = "P1" }
param("flag")
step("Look <script>document.title='pwned-step'</script>", { id = "look" }, function()
  exec { "echo", "<script>document.title='pwned-output'</script>", readonly = true }
end)
step("Ask", { id = "ask" }, function()
  confirm("Fail over now? <img src=x onerror=\"document.title='pwned-img'\">")
end)
step("Flaky", { id = "flaky" }, function(p)
  wait(0.3)
  if not file.stat(p.flag) then
    file.write(p.flag, "1")
    error("replica not ready yet")
  end
end)
step("Broken", { id = "broken" }, function()
  wait(0.1)
  error("always broken")
end)
step("Approve", { id = "approve" }, function()
  approve("Promote the replica?", { timeout = 30 })
end)
step("Settle", { id = "settle" }, function()
  local n = 0
  poll(function() n = n + 1; return n > 4 end, { every = 0.05, timeout = 10, what = "replication lag" })
  notify("replica promoted", { severity = "P1" })
end)
'''


def decode_png(path):
    """(width, height, rows of RGB(A) bytes, bytes per pixel) of an 8-bit,
    non-interlaced RGB or RGBA PNG, as Chromium writes them."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    stride, rows, prev = width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        ft, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


class Page(html.parser.HTMLParser):
    """The page as the tests look at it: every start tag with its
    attributes, the text inside <svg>, the <style> text, the title."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.svg_text, self.style, self.title = [], [], [], ""
        self._in = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "link", "br", "hr", "img", "input", "source", "wbr"):
            self._in.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if "svg" in self._in:
            self.svg_text.append(data)
        if self._in and self._in[-1] == "style":
            self.style.append(data)
        if self._in and self._in[-1] == "title" and "svg" not in self._in:
            self.title += data

    def all(self, tag, **want):
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in want.items())]


def net_requests(netlog_path):
    """Every URL request a page made, from Chromium's net log: the browser's
    own (component updates, the clock) have initiator "not an origin", a
    page's have its origin ("null" for a file)."""
    with open(netlog_path) as f:
        log = json.load(f)
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    found = []
    for e in log["events"]:
        p = e.get("params") or {}
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p:
            if p.get("initiator") != "not an origin" or "file://" in p.get("network_isolation_key", ""):
                found.append(p["url"])
    return found


def browser_requests(netlog_path):
    """All URLs the net log shows (the browser's own included)."""
    with open(netlog_path) as f:
        return re.findall(r'"url": ?"([^"]+)"', f.read())


class ChromiumRun:
    """Headless Chromium on one file, in a fresh profile, with every host
    name unresolvable (nothing can leave the machine) and a net log, in a
    process group of its own so nothing it starts outlives it."""

    def __init__(self, tmp, name, page, *args, env):
        self.dir = tempfile.mkdtemp(prefix=f"chromium-{name}-", dir=tmp)
        self.netlog = os.path.join(self.dir, "netlog.json")
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                f"--user-data-dir={os.path.join(self.dir, 'profile')}",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--disable-extensions",
                "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--log-net-log={self.netlog}", *args, "file://" + page]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True, env=env, cwd=self.dir)

    def finish(self, timeout=90):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.stdout, self.stderr = out.decode(errors="replace"), err.decode(errors="replace")
        return self.proc.returncode


def harness_helpers():
    """The harness's helpers (a temporary HOME, run_rb, pty) for
    setUpClass: a case of a class made here, so no loader collects it."""
    class Helpers(RunbookTestCase):
        def runTest(self):
            pass
    return Helpers()


class HtmlReport(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError("needs Debian's chromium (scripts/setup installs it)")
        mk = cls.mk = harness_helpers()
        mk.setUp()
        cls.addClassCleanup(mk.doCleanups)
        hook = cls.hook = Webhook()
        cls.addClassCleanup(hook.stop)
        mk.write("config/runbook/config.lua", f'notify = {{ ops = {{ webhook = "{hook.url()}" }} }}\n')
        cls.transcript = cls.make_transcript(mk)
        cls.html_path = mk.path("report.html")
        p = mk.run_rb("report", "--html", cls.transcript, "-o", cls.html_path)
        assert p.returncode == 0, p.stdout + p.stderr
        with open(cls.html_path, encoding="utf-8") as f:
            cls.html = f.read()
        cls.page = Page(cls.html)
        cls.browse(mk)

    @classmethod
    def make_transcript(cls, mk):
        t = mk.path("t.jsonl")
        rb = mk.write("pic.lua", RUNBOOK)
        s = mk.pty("run", rb, "-p", "flag=" + mk.path("flag"), "--transcript", t, timeout=30)
        # (each answer a little late, as a person's, so the waits have a length)
        for prompt, answer in ((r"\[y/n\] ", "y"), (RETRY_SKIP_ABORT, "r"), (RETRY_SKIP_ABORT, "s"),
                               (r"Promote the replica\? \[y/n.*?\] ", "y"), (r"Approver's name.*: ", "Dana Lead"),
                               (r"Their words.*?: ", "go")):
            s.expect(prompt)
            threading.Event().wait(0.25)
            s.sendline(answer)
        code = s.wait()
        assert code == 0, s.output
        return t

    @classmethod
    def browse(cls, mk):
        """Three Chromium runs at once: the page (screenshot), a copy without
        its CSP (DOM), a control page that makes a request and runs a script."""
        with open(cls.html_path, encoding="utf-8") as f:
            text = f.read()
        no_csp = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
        assert no_csp != text, "the page has no CSP meta to take out"
        cls.bare_path = mk.write("bare.html", no_csp)
        cls.control_path = mk.write("control.html", "<!DOCTYPE html><title>control</title>"
                                    "<script>document.title='pwned-control'</script>"
                                    '<img src="http://rb-control.invalid/x.png">')
        svg_h = int(cls.page.all("svg", id="rb-chart")[0]["height"])
        cls.shot = mk.path("shot.png")
        env = dict(mk.env)
        runs = [ChromiumRun(mk.tmp, "shot", cls.html_path, f"--screenshot={cls.shot}",
                            f"--window-size=1200,{svg_h + 700}", env=env),
                ChromiumRun(mk.tmp, "dom", cls.bare_path, "--dump-dom", env=env),
                ChromiumRun(mk.tmp, "control", cls.control_path, "--dump-dom", env=env)]
        cls.codes = [r.finish() for r in runs]
        cls.shot_run, cls.dom_run, cls.control_run = runs
        shot_copy = os.environ.get("RUNBOOK_TEST_SHOT")
        if shot_copy and os.path.exists(cls.shot):
            shutil.copyfile(cls.shot, shot_copy)

    # -- the file itself

    def test_page_refers_to_nothing_outside_itself(self):
        page = self.page
        for tag in ("script", "link", "img", "iframe", "object", "embed", "base", "form", "audio", "video",
                    "source", "image", "use", "foreignobject"):
            self.assertEqual(page.all(tag), [], f"the page has a <{tag}>")
        for tag, attrs in page.tags:
            for k, v in attrs.items():
                self.assertFalse(k.startswith("on"), f"<{tag}> has an event handler {k}={v!r}")
                if k in ("src", "href", "xlink:href", "action", "poster", "data", "srcset", "background"):
                    self.fail(f"<{tag}> refers to {v!r}")
                for ref in re.findall(r"url\(\s*([^)]*)\)", v or ""):
                    self.assertTrue(ref.startswith("#"), f"<{tag} {k}> refers to url({ref})")
        style = "".join(page.style)
        self.assertNotIn("@import", style)
        self.assertNotRegex(style, r"url\(", "the style sheet fetches something")
        csp = page.all("meta", **{"http-equiv": "Content-Security-Policy"})
        self.assertEqual(len(csp), 1)
        self.assertIn("default-src 'none'", csp[0]["content"])

    def test_transcript_text_is_escaped_not_markup(self):
        # The injected markup is there as text: in the chart, the actions, the events.
        self.assertIn(STEP_XSS, "".join(self.page.svg_text))
        self.assertIn("&lt;script&gt;document.title=&#39;pwned-output&#39;&lt;/script&gt;", self.html)
        self.assertIn("&lt;img src=x onerror=&quot;document.title=&#39;pwned-img&#39;&quot;&gt;", self.html)
        self.assertNotIn("<script", self.html)
        self.assertNotIn("<img", self.html)

    def test_chart_has_the_rows_bars_and_marks_of_the_run(self):
        page = self.page
        bars = {(a["data-step"], a["data-attempt"]): a for a in page.all("rect", **{"data-kind": "attempt"})}
        self.assertEqual(bars[("flaky", "1")]["data-status"], "failed")
        self.assertEqual(bars[("flaky", "2")]["data-status"], "ok")
        self.assertEqual(bars[("broken", "1")]["data-status"], "failed", "a failed step the operator skipped")
        for step in ("look", "ask", "approve", "settle"):
            self.assertEqual(bars[(step, "1")]["data-status"], "ok", step)
        self.assertTrue(page.all("path", **{"class": "retry"}), "no retry shape")
        self.assertGreaterEqual(len(page.all("path", **{"class": "cross"})), 2, "no failure crosses")
        waits = [a["data-wait"] for a in page.all("rect", **{"data-kind": "wait"})]
        self.assertGreaterEqual(waits.count("operator"), 5, waits)     # confirm, r, s, approver's name, words
        self.assertEqual(waits.count("timer"), 4, waits)              # wait x2, wait, poll
        marks = {a["data-kind"]: a for a in page.all("g", **{"class": "mark"})}
        self.assertEqual(marks["approval"]["data-step"], "approve")
        self.assertEqual(marks["notify"]["data-step"], "settle")
        text = "".join(page.svg_text)
        for words in ("Flaky (2 attempts)", "failed → retry", "retry 2: ok", "failed → skip",
                      "asked: Promote the replica?", "poll: replication lag", "time (UTC)", "notified"):
            self.assertIn(words, text)
        self.assertEqual(len(self.hook.bodies), 1, "the webhook got the notification")
        self.assertIn("approved by Dana Lead (attested by the operator", self.html)
        self.assertIn("waiting for the operator: &quot;Promote the replica?&quot;", self.html)

    def test_verification_is_at_the_top_with_the_final_hash(self):
        with open(self.transcript) as f:
            last = json.loads(f.readlines()[-1])
        first_section = self.html.index('<section id="verification">')
        self.assertLess(first_section, self.html.index('<svg'))
        self.assertRegex(self.html, r'data-ok="true"><span class="badge">chain ok</span>')
        self.assertIn(f'<code class="hash">{last["hash"]}</code>', self.html)

    def test_a_broken_chain_is_shown_with_its_line(self):
        with open(self.transcript) as f:
            lines = f.readlines()
        n = next(i for i, line in enumerate(lines) if '"id":"broken"' in line)
        lines[n] = lines[n].replace("Broken", "Fine")
        bad = self.mk.write("bad.jsonl", "".join(lines))
        out = self.mk.path("bad.html")
        p = self.mk.run_rb("report", "--html", bad, "-o", out)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out) as f:
            text = f.read()
        self.assertIn(f'data-ok="false"><span class="badge">chain broken at line {n + 1}</span>', text)

    # -- in the browser

    def test_chromium_makes_no_request_for_the_page(self):
        self.assertEqual(self.codes[:2], [0, 0], self.shot_run.stderr[-2000:] + self.dom_run.stderr[-2000:])
        for run in (self.shot_run, self.dom_run):
            self.assertEqual(net_requests(run.netlog), [], "the page made requests")
        # The control page's request is seen: the check above can fail.
        self.assertEqual(self.codes[2], 0, self.control_run.stderr[-2000:])
        self.assertEqual(net_requests(self.control_run.netlog), ["http://rb-control.invalid/x.png"],
                         browser_requests(self.control_run.netlog))

    def test_injected_scripts_do_not_run(self):
        dom = self.dom_run.stdout
        self.assertIn('<svg id="rb-chart"', dom)
        title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
        self.assertEqual(title, "Incident timeline: Failover drill")
        self.assertNotRegex(dom, r"<script|<img", "markup from the transcript became elements")
        # The same check sees a script that ran.
        self.assertIn("<title>pwned-control</title>", self.control_run.stdout)

    def test_dom_has_the_step_names_in_the_svg(self):
        dom = self.dom_run.stdout
        svg = dom[dom.index('<svg id="rb-chart"'):dom.index("</svg>")]
        for name in ("Ask", "Flaky", "Broken", "Approve", "Settle", "Look &lt;script&gt;"):
            self.assertRegex(svg, rf'<text class="t-step"[^>]*>.*?{re.escape(name)}', name)

    def test_screenshot_shows_each_bar_in_its_colour_where_the_svg_puts_it(self):
        width, height, rows, bpp = decode_png(self.shot)

        def px(x, y):
            return tuple(rows[y][x * bpp:x * bpp + 3])

        # Where the chart is on the screen: the plot's background colour
        # starts at the plot rectangle's corner.
        plot = self.page.all("rect", id="rb-plot")[0]
        spots = [(x, y) for y in range(height) for x in range(0, width, 2) if px(x, y) == PLOT]
        self.assertTrue(spots, "the plot's background is not on the screenshot")
        dx = min(x for x, _ in spots) - int(plot["x"])
        dy = min(y for _, y in spots) - int(plot["y"])

        def share(attrs, colours):
            x0, y0 = int(attrs["x"]) + dx, int(attrs["y"]) + dy
            box = [px(x, y) for y in range(y0 + 1, y0 + int(attrs["height"]) - 1)
                   for x in range(x0 + 1, x0 + max(int(attrs["width"]) - 1, 2))]
            hit = colours if callable(colours) else (lambda p: p in colours)
            return sum(map(hit, box)) / len(box), box

        # The failed bars' hatch: its red, its dark stripes and the blend of
        # the two where the rotated stripes' edges are smoothed.
        def hatch(p):
            return p[0] >= STRIPE[0] - 2 and p[1] <= FAILED[1] + 2 and p[2] <= FAILED[2] + 2

        expected = {"ok": {OK}, "failed": hatch}
        checked = 0
        for a in self.page.all("rect", **{"data-kind": "attempt"}):
            if int(a["width"]) >= 4:
                got, box = share(a, expected[a["data-status"]])
                self.assertGreater(got, 0.6, f"{a['data-step']} attempt {a['data-attempt']} "
                                   f"({a['data-status']}) at {a['x']},{a['y']}: {sorted(set(box))[:6]}")
                checked += 1
        for a in self.page.all("rect", **{"data-kind": "wait"}):
            if int(a["width"]) >= 4:
                colour = {"operator": OPERATOR, "approval": APPROVAL, "timer": TIMER}[a["data-wait"]]
                got, box = share(a, {colour})
                self.assertGreater(got, 0.6, f"{a['data-wait']} wait at {a['x']},{a['y']}")
                checked += 1
        self.assertGreaterEqual(checked, 8, "too few bars wide enough to check")
        failed = self.page.all("rect", **{"data-step": "flaky", "data-attempt": "1"})[0]
        self.assertGreater(share(failed, {FAILED})[0], 0.3, "the failed bar's own red is missing")
        colours = {px(x, y) for y in range(0, height, 3) for x in range(0, width, 3)}
        for c in (NOTIFY, APPROVAL):
            self.assertIn(c, colours, f"the mark colour {c} is not on the screenshot")


SMALL = """
runbook { name = "small", title = "Small", severity = "P2" }
step("One", { id = "one" }, function() end)
step("Two", { id = "two" }, function() wait(0.05) end)
step("Three", { id = "three" }, function() wait(0.05) end)
"""


class HtmlReportShapes(RunbookTestCase):
    """Runs that are not the happy path, without a browser: the page still
    comes out whole, and says what happened."""

    def html_of(self, *transcripts):
        out = self.path("r.html")
        p = self.run_rb("report", "--html", *transcripts, "-o", out)
        self.assertExit(p, 0)
        with open(out) as f:
            return f.read()

    def test_an_unfinished_run_a_start_at_and_two_runs_in_one_page(self):
        rb = self.write("small.lua", SMALL)
        whole, later = self.path("a.jsonl"), self.path("b.jsonl")
        self.assertExit(self.run_rb("run", rb, "--yes", "--transcript", whole), 0)
        self.assertExit(self.run_rb("run", rb, "--yes", "--start-at", "three", "--transcript", later), 0)
        # The first run as if the machine died in step 3: no step.end, no run.end.
        with open(whole) as f:
            lines = f.readlines()
        cut_at = next(i for i, line in enumerate(lines) if '"event":"step.start"' in line and '"three"' in line)
        cut = self.write("cut.jsonl", "".join(lines[:cut_at + 1]))
        page = Page(self.html_of(cut, later))
        bars = [(a["data-step"], a["data-status"]) for a in page.all("rect", **{"data-kind": "attempt"})]
        self.assertIn(("three", "unfinished"), bars, "the step the run died in")
        self.assertEqual(bars.count(("one", "skipped")), 1, "--start-at skipped step 1 of the second run")
        self.assertEqual(bars.count(("three", "ok")), 1, bars)
        text = "".join(page.svg_text)
        self.assertIn("unfinished: run ", text)
        self.assertIn("done: run ", text)
        self.assertEqual(len(page.all("p", **{"data-ok": "true"})), 2, "both transcripts verify")
        with open(self.path("r.html")) as f:
            self.assertIn("<th>Time (UTC)</th><th>Run</th><th>Step</th>", f.read(),
                          "several runs: the actions table says which")

    def test_html_goes_to_stdout_without_o(self):
        rb = self.write("small.lua", SMALL)
        t = self.path("t.jsonl")
        self.assertExit(self.run_rb("run", rb, "--yes", "--transcript", t), 0)
        p = self.run_rb("report", "--html", t)
        self.assertExit(p, 0)
        self.assertTrue(p.stdout.startswith("<!DOCTYPE html>"), p.stdout[:100])
        self.assertTrue(p.stdout.rstrip().endswith("</html>"))
        h = self.run_rb("report", "--help")
        self.assertIn("--html", h.stdout)


if __name__ == "__main__":
    unittest.main()
