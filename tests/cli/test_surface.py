"""The closed author surface (docs/authoring.md, "What a runbook can reach"):
what a runbook is not offered is named by `runbook check` with file:line
and the verb to use, and refused with the same words when it runs; the
file verbs are recorded and simulated in a dry run; a stdlib module works
with only what it requires at its top."""
import json
import os
import re
import shutil
import subprocess
import unittest

from harness import RunbookTestCase, SOURCE_DIR

HEADER = 'runbook { name = "reach", title = "Reaches for what is not offered", severity = "P3" }\n'

# Each line of this runbook is one use check must name (the comment after
# it is the words), and the strings and comments mentioning them are not.
REACHING = HEADER + """\
param("dir", { help = "where marks would go", default = "/tmp" })
step("Reach", function(p)
  local sys = require("runbook.sys")
  os.execute("touch " .. p.dir .. "/executed")
  local f = io.open(p.dir .. "/opened", "w")
  local loop = require "runbook.loop"
  log.info("os.execute and io.open in a string are fine") -- so is os.remove here
  --[[ and io.popen in a long comment ]]
  local s = [==[ os.execute("x") ]] ]==] .. 'it\\'s io.open' -- os.exit
  local t = os.time() + os.clock()
  local d = debug.traceback()
end)
"""


def line_of(text, needle):
    for n, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in the runbook")


class Surface(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.env.pop("RUNBOOK_TEST_INTERNALS", None)   # the host tests' hatch: never here

    def test_check_names_each_use_with_file_line_and_the_verb_to_use(self):
        rb = self.write("reach.lua", REACHING)
        p = self.run_rb("check", rb)
        self.assertExit(p, 2)
        want = [
            (line_of(REACHING, 'require("runbook.sys")'),
             'require("runbook.sys"): runbook.sys is a host internal and is not available to runbooks; '
             'use file.stat/file.list/file.read'),
            (line_of(REACHING, "os.execute("), "os.execute is not available to runbooks; use exec{...} or sh(cmd)"),
            (line_of(REACHING, "io.open("), "io.open is not available to runbooks; use file.read/file.write"),
            (line_of(REACHING, 'require "runbook.loop"'),
             'require("runbook.loop"): runbook.loop is a host internal and is not available to runbooks; '
             'use time.clock() for timings, wait(seconds) to pause'),
            (line_of(REACHING, "debug.traceback"), "debug is not available to runbooks"),
        ]
        for line, words in want:
            self.assertIn(f"{rb}:{line}: {words}", p.stderr)
        named = re.findall(r"^" + re.escape(rb) + r":(\d+): ", p.stderr, flags=re.M)
        self.assertEqual(sorted(int(n) for n in named), sorted(l for l, _ in want),
                         f"only the uses, not strings, comments or os.time/os.clock:\n{p.stderr}")

    def test_check_looks_into_the_modules_beside_the_runbook_it_requires(self):
        lib = self.write("lib/helper.lua", 'local m = {}\nfunction m.clean(path) os.remove(path) end\nreturn m\n')
        rb = self.write("uses.lua", HEADER + 'local helper = require("lib.helper")\nstep("s", function() end)\n')
        p = self.run_rb("check", rb)
        self.assertExit(p, 2)
        self.assertIn(f"{lib}:2: os.remove is not available to runbooks; use file.remove(path)", p.stderr)

    def test_a_shipped_verb_passes_check(self):
        rb = self.write("fine.lua", HEADER + 'step("s", function() file.write("/tmp/x", "y"); '
                        'log.info("%d", time.now()) end)\n')
        self.assertExit(self.run_rb("check", rb), 0)

    def test_os_execute_is_refused_when_it_runs_and_does_nothing(self):
        rb = self.write("run.lua", HEADER + 'param("dir", { required = true })\n'
                        'step("s", function(p)\n'
                        '  os.execute("touch " .. p.dir .. "/executed")\n'
                        'end)\n')
        t = self.path("t.jsonl")
        p = self.run_rb("run", "--yes", "--transcript", t, rb, "-p", f"dir={self.tmp}")
        self.assertExit(p, 1)
        self.assertIn(f"{rb}:4: os.execute is not available to runbooks; use exec{{...}} or sh(cmd)", p.stdout)
        self.assertFalse(os.path.exists(self.path("executed")), "os.execute ran")
        end = [e for e in self.events(t) if e["event"] == "step.end"]
        self.assertEqual(end[0]["status"], "failed")

    def test_io_open_is_refused_when_it_runs(self):
        rb = self.write("run.lua", HEADER + 'param("dir", { required = true })\n'
                        'step("s", function(p)\n'
                        '  local f = io.open(p.dir .. "/opened", "w")\n'
                        'end)\n')
        p = self.run_rb("run", "--yes", rb, "-p", f"dir={self.tmp}")
        self.assertExit(p, 1)
        self.assertIn(f"{rb}:4: io.open is not available to runbooks; use file.read/file.write", p.stdout)
        self.assertFalse(os.path.exists(self.path("opened")), "io.open made the file")

    def test_require_of_a_host_internal_is_a_load_error_naming_the_line(self):
        rb = self.write("run.lua", HEADER + 'local sys = require("runbook.sys")\nstep("s", function() end)\n')
        for cmd in (["run", "--yes", rb], ["show", rb], ["check", rb]):
            p = self.run_rb(*cmd)
            self.assertExit(p, 2)
            self.assertIn(f'{rb}:2: require("runbook.sys"): runbook.sys is a host internal and is not '
                          'available to runbooks; use file.stat/file.list/file.read', p.stderr)
            self.assertNotIn("stack traceback", p.stderr)

    def test_lua_libraries_that_reach_the_world_are_refused_by_require_too(self):
        for name, words in (("os", "the os global"), ("io", "file.read/file.write"),
                            ("debug", "not available to runbooks"), ("cjson", "json.encode/json.decode")):
            with self.subTest(module=name):
                rb = self.write(f"{name}.lua", HEADER + f'step("s", function() local m = require("{name}") end)\n')
                p = self.run_rb("run", "--yes", rb)
                self.assertExit(p, 1)
                self.assertIn(f'{rb}:2: require("{name}")', p.stdout)
                self.assertIn(words, p.stdout)


WRITER = HEADER + """\
param("dir", { required = true })
step("Write", { id = "write" }, function(p)
  local r = file.write(p.dir .. "/flag", "maintenance = on\\n")
  log.info("wrote %d bytes%s", r.bytes, r.dry_run and " (dry run)" or "")
  file.write(p.dir .. "/flag", "again\\n", { append = true })
end)
step("Read", { id = "read" }, function(p)
  local names = file.list(p.dir)
  local st = file.stat(p.dir .. "/seen")
  log.info("read %q, %d names, seen is a %s", file.read(p.dir .. "/seen"), #names, st.type)
end)
"""


class Files(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.env.pop("RUNBOOK_TEST_INTERNALS", None)
        self.dir = self.path("d")
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "seen"), "w") as f:
            f.write("s3cret-looking content")
        self.rb = self.write("writer.lua", WRITER)
        self.t = self.path("t.jsonl")

    def calls(self):
        return [e for e in self.events(self.t) if e["event"] == "call"]

    def test_file_write_is_simulated_in_a_dry_run_and_recorded(self):
        p = self.run_rb("run", "--dry-run", "--yes", "--transcript", self.t, self.rb, "-p", f"dir={self.dir}")
        self.assertExit(p, 0)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "flag")), "a dry run wrote the file")
        flag = os.path.join(self.dir, "flag")
        self.assertIn(f"would run: write 17 bytes to {flag}", p.stdout)
        self.assertIn(f"would run: append 6 bytes to {flag}", p.stdout)
        self.assertIn("wrote 17 bytes (dry run)", p.stdout)
        writes = [c for c in self.calls() if c["primitive"] == "file.write"]
        self.assertEqual([(c["outcome"], c.get("dry_run"), c["args"]["path"], c["args"]["bytes"]) for c in writes],
                         [("simulated", True, flag, 17), ("simulated", True, flag, 6)])
        # reads still run for real in a rehearsal
        reads = [(c["primitive"], c["outcome"]) for c in self.calls() if c["step"] == "read"]
        self.assertEqual(reads, [("file.list", "ok"), ("file.stat", "ok"), ("file.read", "ok")])
        self.assertIn('read "s3cret-looking content", 1 names, seen is a file', p.stdout)

    def test_file_write_writes_and_is_recorded_without_the_content(self):
        p = self.run_rb("run", "--yes", "--transcript", self.t, self.rb, "-p", f"dir={self.dir}")
        self.assertExit(p, 0)
        with open(os.path.join(self.dir, "flag")) as f:
            self.assertEqual(f.read(), "maintenance = on\nagain\n")
        writes = [c for c in self.calls() if c["primitive"] == "file.write"]
        self.assertEqual([(c["outcome"], c["args"]["bytes"], c["result"]["bytes"]) for c in writes],
                         [("ok", 17, 17), ("ok", 6, 6)])
        self.assertEqual(writes[1]["args"]["append"], True)
        read = next(c for c in self.calls() if c["primitive"] == "file.read")
        self.assertEqual(read["result"], {"bytes": len("s3cret-looking content")})
        for c in self.calls():
            self.assertNotIn("maintenance = on", json.dumps(c), "what was written is not recorded")
            self.assertNotIn("s3cret-looking", json.dumps(c), "what was read is not recorded")

    def test_a_failed_read_names_the_file_and_the_runbook_line(self):
        rb = self.write("bad.lua", HEADER + 'step("s", function()\n  file.read("/nonexistent/x")\nend)\n')
        p = self.run_rb("run", "--yes", rb)
        self.assertExit(p, 1)
        self.assertIn(f"{rb}:3: file.read /nonexistent/x: No such file or directory", p.stdout)


LUAC = shutil.which("luac5.4") or shutil.which("luac")

# What a stdlib module's environment holds (runbook.surface's module_env).
MODULE_GLOBALS = {"assert", "error", "ipairs", "next", "pairs", "select", "tonumber", "tostring",
                  "type", "setmetatable", "getmetatable", "rawequal", "rawget", "rawset", "rawlen",
                  "_VERSION", "string", "table", "math", "utf8", "coroutine", "os", "pcall", "xpcall",
                  "require"}


class StdlibModules(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.env.pop("RUNBOOK_TEST_INTERNALS", None)

    @unittest.skipUnless(LUAC, "needs luac to list a module's global names")
    def test_each_stdlib_module_names_no_global_beyond_lua_and_its_requires(self):
        stdlib = os.path.join(SOURCE_DIR, "stdlib")
        files = sorted(f for f in os.listdir(stdlib) if f.endswith(".lua"))
        self.assertGreater(len(files), 5)
        for f in files:
            with self.subTest(module=f):
                listing = subprocess.run([LUAC, "-p", "-l", "-l", os.path.join(stdlib, f)],
                                         capture_output=True, text=True, check=True).stdout
                names = set(re.findall(r'[GS]ETTABUP.*_ENV "([A-Za-z_][A-Za-z0-9_]*)"', listing))
                self.assertTrue(names, "no global read at all: the listing format changed?")
                self.assertEqual(names - MODULE_GLOBALS, set(),
                                 f"{f} relies on globals it does not require")

    def test_a_stdlib_module_uses_the_runs_verbs_not_the_runbooks_globals(self):
        if not shutil.which("openssl"):
            self.skipTest("needs openssl to make a certificate")
        cert, key = self.path("c.pem"), self.path("k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "30", "-subj", "/CN=surface.test"],
                       check=True, capture_output=True)
        # The runbook replaces its own exec and log globals; tls.file must
        # still run openssl through the run's exec (recorded), as it says
        # at its top, and never call the runbook's.
        rb = self.write("tls.lua", HEADER + 'param("cert", { required = true })\n'
                        'local tls = require("tls")\n'
                        'exec = function() error("the runbook\'s own exec was called") end\n'
                        'step("s", function(p)\n'
                        '  local c = tls.file(p.cert)\n'
                        '  log.info("days left: %d", math.floor(c.days_left))\n'
                        'end)\n')
        t = self.path("t.jsonl")
        p = self.run_rb("run", "--yes", "--transcript", t, rb, "-p", f"cert={cert}")
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, r"days left: (29|30)")
        execs = [e for e in self.events(t) if e["event"] == "call" and e["primitive"] == "exec"]
        self.assertEqual([e["args"]["argv"][:2] for e in execs], [["openssl", "x509"]])


if __name__ == "__main__":
    unittest.main()
