"""runbook repl as a tool: Tab completion (globals, fields, methods) that
never calls anything, help() from the text docs/authoring.md is made
from, values printed as Lua writes them back, and a live session's
prompt and write confirmations against dry run's "would run".  Through a
real pseudo-terminal, as an operator types."""
import os
import re
import time

from harness import SOURCE_DIR, RunbookTestCase

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x07")


def clean(text):
    return ANSI.sub("", text).replace("\r\n", "\n")


class Session(RunbookTestCase):
    PROMPT = r"runbook> "

    def start(self, *args, prompt=None):
        self.transcript = self.path("repl.jsonl")
        s = self.pty("repl", "--transcript", self.transcript, *args)
        s.expect(r"runbook \S+ repl")
        s.expect(re.escape(prompt or self.PROMPT))
        self.prompt = prompt or self.PROMPT
        return s

    def enter(self, s, line):
        """Type line and Enter; return what it printed, colours removed."""
        s.sendline(line)
        echo = s.expect(re.escape(line) + r"\r\n")
        nxt = s.expect(re.escape(self.prompt))
        return clean(s.output[echo.end():nxt.start()])

    def listing(self, s, typed, expect):
        """Type `typed` and Tab twice; wait for the regex expect in the
        listing, then clear the line.  Returns the text shown."""
        mark = len(s.output)
        s.send(typed + "\t\t")
        s.expect(expect)
        time.sleep(0.2)
        shown = clean(s.output[mark:])
        s.send("\x15")      # Ctrl-U: the line typed so far goes
        return shown

    def quit(self, s):
        s.send("\x04")
        self.assertEqual(s.wait(), 0, s.output)

    def evals(self):
        return [e for e in self.events(self.transcript) if e["event"] == "eval"]


class Completion(Session):

    def test_a_global_completes_and_runs(self):
        s = self.start()
        s.send("jso\t")
        time.sleep(0.3)
        s.send(".enc\t")
        time.sleep(0.3)
        s.sendline("{1}")
        s.expect(re.escape(self.PROMPT))
        self.quit(s)
        self.assertEqual([e["code"] for e in self.evals()], ["json.encode{1}"],
                         "expected Tab to complete jso to json and json.enc to json.encode")
        self.assertEqual(self.evals()[0]["result"], '"[1]"')

    def test_fields_of_a_table_are_listed(self):
        s = self.start()
        shown = self.listing(s, "json.", r"json\.null")
        self.assertRegex(shown, r"json\.decode\s+json\.encode\s+json\.null",
                         "expected json's three fields listed")
        shown = self.listing(s, "time.", r"time\.now")
        self.assertRegex(shown, r"time\.clock\s+time\.date\s+time\.now")
        self.quit(s)

    def test_a_primitive_not_loaded_yet_is_completed_from_its_documentation(self):
        s = self.start()
        shown = self.listing(s, "http.", r"http\.request")
        self.assertRegex(shown, r"http\.get\s+http\.post\s+http\.request")
        self.quit(s)

    def test_methods_of_a_value_made_on_an_earlier_line(self):
        s = self.start()
        self.enter(s, "Box = {} Box.__index = Box")
        self.enter(s, "function Box:open() return 'opened' end")
        self.enter(s, "function Box:order() end")
        self.enter(s, "b = setmetatable({size = 3}, Box)")
        shown = self.listing(s, "b:o", r"b:order")
        self.assertRegex(shown, r"b:open\s+b:order")
        self.assertNotIn("b:size", shown, "expected only methods after ':'")
        s.send("b:op\t")
        s.expect(r"en")
        s.sendline("()")
        s.expect(r'"opened"')
        s.expect(re.escape(self.PROMPT))
        self.quit(s)
        self.assertEqual(self.evals()[-1]["code"], "b:open()")

    def test_target_fields(self):
        cfg = self.write("cfg.lua", 'targets = { staging = { host = "db.staging", health = "http://x/h" } }\n')
        s = self.start("--config", cfg, "--target", "staging", prompt="runbook[staging live]> ")
        shown = self.listing(s, "target.", r"target\.name")
        self.assertRegex(shown, r"target\.health\s+target\.host\s+target\.name")
        self.quit(s)

    def test_completing_calls_no_function_of_the_value(self):
        s = self.start()
        self.enter(s, "hits = 0")
        self.enter(s, "mt = { __index = function() hits = hits + 1 end }")
        self.enter(s, "mt.__pairs = function() hits = hits + 100 end")
        self.enter(s, "p = setmetatable({ real = 1 }, mt)")
        s.send("p.\t")
        time.sleep(0.3)
        s.sendline("")
        s.expect(r"\r\n1\r\n")
        s.expect(re.escape(self.PROMPT))
        s.send("p:x\t")
        time.sleep(0.3)
        s.send("\x15")
        self.assertEqual(self.enter(s, "hits").strip(), "0",
                         "expected Tab to call neither __index nor __pairs")
        self.quit(s)
        self.assertEqual(self.evals()[-2]["code"], "p.real", "expected p. completed to p.real")


class Help(RunbookTestCase):

    def docs(self):
        with open(os.path.join(SOURCE_DIR, "docs", "authoring.md")) as f:
            return f.read()

    def repl(self, code):
        self.n = getattr(self, "n", 0) + 1
        p = self.run_rb("repl", "--transcript", self.path(f"h{self.n}.jsonl"), stdin=code)
        self.assertExit(p, 0)
        return p.stdout

    def test_help_of_a_function_is_its_section_of_the_docs(self):
        # The Redis section holds "redis://[[user]:password@]host": shown as
        # written, not redacted as a URL's password.
        page = self.docs()
        for name, heading in (("http.get", "HTTP"), ("redis.connect", "Redis")):
            section = re.search(rf"^### {heading}: .*?(?=\n\n### )", page, re.S | re.M).group(0)
            row = re.search(rf"^\| `({re.escape(name)}\(.*?)` \| (.*) \|$", page, re.M)
            out = self.repl(f"help({name})\n")
            body = out.split("\n", 1)[1].rsplit("\ntranscript:", 1)[0]
            self.assertEqual(body, f"{row.group(1)}\n    {row.group(2)}\n\n{section}",
                             f"expected help({name}) to print the usage of the docs' table and "
                             f"the {heading} section of docs/authoring.md, as written there")

    def test_help_lists_every_call_of_the_docs(self):
        page = self.docs()
        part = page.split("Every call at a glance", 1)[1].split("\n### ", 1)[0]
        usages = re.findall(r"^\| `(.*?)` \| ", part, re.M)
        self.assertGreater(len(usages), 40, "expected the docs' table of every call")
        out = self.repl("help()\n")
        for u in usages + ["confirm(q)", "approve(q, {from, timeout})"]:
            self.assertIn("  " + u + "\n", out, f"expected help() to list {u}")

    def test_every_documented_name_exists(self):
        # Each name help() documents as a field (http.get, file.read) is one.
        page = self.docs()
        part = page.split("<!-- help:primitives begin", 1)[1].split("<!-- help:primitives end", 1)[0]
        names = sorted(set(re.findall(r"^\| `([a-z_]+\.[a-z_]+)", part, re.M)))
        code = "".join(f'print("{n}", type({n}))\n' for n in names)
        out = self.repl(code)
        for n in names:
            self.assertRegex(out, rf"(?m)^{re.escape(n)}\t(function|table|userdata)$",
                             f"expected {n} to exist in the REPL")

    def test_help_by_name_and_unknown(self):
        out = self.repl('help("db:query")\nhelp("no.such")\n')
        self.assertIn("db:query(sql, ...) -> rows", out)
        self.assertIn("### PostgreSQL:", out)
        self.assertIn('no help for "no.such"; help() lists every documented call', out)


class Printing(Session):

    def test_values_print_as_lua_writes_them(self):
        s = self.start()
        cases = [
            ("1", "1"), ("1.5", "1.5"), ("1.0", "1.0"), ("0.1 + 0.2", "0.30000000000000004"),
            ("10 // 3, 10 / 2", "3\t5.0"), ("1/0, -1/0", "math.huge\t-math.huge"),
            ("'a\\tb'", '"a\\tb"'),
            ("json.decode('{\"a\":1}')", "{ a = 1 }"),
            ("json.decode('{\"a\":1.5,\"n\":null,\"l\":[1,2]}')", "{ a = 1.5, l = { 1, 2 }, n = json.null }"),
            ("math.type(json.decode('[7]')[1])", '"integer"'),
            ("{ a = { b = { c = { 1, 2 } } } }", "{ a = { b = { c = { 1, 2 } } } }"),
        ]
        for code, want in cases:
            self.assertEqual(self.enter(s, code), want + "\n", f"printing {code}")
        self.enter(s, "t = { name = 'x' } t.me = t")
        self.assertEqual(self.enter(s, "t"), '{ me = <cycle>, name = "x" }\n')
        self.enter(s, "d = {} c = d for i = 1, 12 do c.x = {} c = c.x end")
        self.assertIn("{...}", self.enter(s, "d"), "expected the depth limit marked")
        self.enter(s, "big = {} for i = 1, 300 do big[i] = ('x'):rep(70) end")
        out = self.enter(s, "big")
        self.assertRegex(out, r"\n\.\.\. \[output cut: \d+ more lines, \d+ bytes not shown\]\n$")
        self.assertLessEqual(out.count("\n"), 202, "expected a long result cut at 200 lines")
        self.quit(s)


class Live(Session):

    def config(self):
        return self.write("cfg.lua", 'targets = { staging = { host = "db.staging" } }\n')

    def test_dry_run_prompt_and_would_run(self):
        f = "made"
        s = self.start("--dry-run", "--config", self.config(), "--target", "staging",
                       prompt="runbook[staging dry-run]> ")
        out = self.enter(s, f'exec{{"touch", "{f}"}}.dry_run')
        self.assertIn("would run: touch " + f, out)
        self.quit(s)
        self.assertFalse(os.path.exists(self.path(f)))

    def test_a_write_against_a_live_target_is_confirmed_first(self):
        f = self.path("made")
        s = self.start("--config", self.config(), "--target", "staging", prompt="runbook[staging live]> ")
        s.sendline(f'exec{{"touch", "{f}"}}')
        s.expect(re.escape(f"Live write on staging: touch {f}. Run it? [y/n]"))
        s.sendline("n")
        s.expect(r"error: .*declined")
        s.expect(re.escape(self.prompt))
        self.assertFalse(os.path.exists(f), "expected the declined write not to run")
        s.sendline(f'exec{{"touch", "{f}"}}.code')
        s.expect(re.escape("Run it? [y/n]"))
        s.sendline("y")
        s.expect(r"\r\n0\r\n")
        s.expect(re.escape(self.prompt))
        self.assertTrue(os.path.exists(f))
        out = self.enter(s, 'exec{"true", readonly = true}.code')
        self.assertTrue(out.endswith("\n0\n") and "Run it?" not in out,
                        f"expected a read to run without a question, got {out!r}")
        self.quit(s)
        ev = self.events(self.transcript)
        asked = [(e["question"], e["answer"]) for e in ev if e["event"] == "confirm"]
        q = f"Live write on staging: touch {f}. Run it?"
        self.assertEqual(asked, [(q, "no"), (q, "yes")])
        calls = [(c["args"]["argv"][0], c["outcome"]) for c in ev if c["event"] == "call"]
        self.assertEqual(calls, [("touch", "ok"), ("true", "ok")],
                         "expected the declined write not recorded as run")

    def test_a_write_on_this_machine_is_shown(self):
        f = self.path("made")
        s = self.start()
        out = self.enter(s, f'exec{{"touch", "{f}"}}.code')
        self.assertIn("write: touch " + f, out)
        self.quit(s)
        self.assertTrue(os.path.exists(f))

    def test_piped_live_write_needs_yes(self):
        f = self.path("made")
        cfg = self.config()
        p = self.run_rb("repl", "--config", cfg, "--target", "staging", "--transcript",
                        self.path("a.jsonl"), stdin=f'exec{{"touch", "{f}"}}\n')
        self.assertExit(p, 1)
        self.assertFalse(os.path.exists(f), "expected no write without an answer")
        p = self.run_rb("repl", "--yes", "--config", cfg, "--target", "staging", "--transcript",
                        self.path("b.jsonl"), stdin=f'exec{{"touch", "{f}"}}.code\n')
        self.assertExit(p, 0)
        self.assertTrue(os.path.exists(f))
