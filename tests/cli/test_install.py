"""`cmake --install` puts the binary, stdlib/ and runbooks/ where the
installed binary finds them, with the source tree out of reach."""
import glob
import os
import subprocess

from harness import RUNBOOK, SOURCE_DIR, RunbookTestCase


class InstallTest(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.prefix = self.path("prefix")
        build_dir = os.path.dirname(RUNBOOK)
        proc = subprocess.run(["cmake", "--install", build_dir, "--prefix", self.prefix],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, f"cmake --install failed:\n{proc.stdout}\n{proc.stderr}")
        self.bin = os.path.join(self.prefix, "bin", "runbook")
        # Hide the source tree: the installed copy must not need it.
        self.env["RUNBOOK_DATADIR"] = ""

    def run_installed(self, *args):
        e = dict(self.env)
        e.pop("RUNBOOK_DATADIR", None)
        return subprocess.run([self.bin, *args], capture_output=True, text=True, timeout=60,
                              env=e, cwd=self.tmp, stdin=subprocess.DEVNULL)

    def test_installed_layout(self):
        share = os.path.join(self.prefix, "share", "runbook")
        self.assertTrue(os.path.isfile(self.bin), "binary not installed")
        self.assertTrue(os.path.isfile(os.path.join(share, "stdlib", "runbook", "engine.lua")),
                        "stdlib not installed under share/runbook/stdlib")
        shipped = sorted(f for f in os.listdir(os.path.join(SOURCE_DIR, "runbooks")) if f.endswith(".lua"))
        installed = sorted(f for f in os.listdir(os.path.join(share, "runbooks")) if f.endswith(".lua"))
        self.assertEqual(installed, shipped, "runbooks/ not installed as shipped")
        mods = glob.glob(os.path.join(self.prefix, "lib*", "**", "runbook", "http.so"), recursive=True)
        self.assertEqual(len(mods), 1, f"the http module is not installed under lib/: {mods}")
        mods = glob.glob(os.path.join(self.prefix, "lib*", "**", "runbook", "lineedit.so"), recursive=True)
        self.assertEqual(len(mods), 1, f"repl's reader module is not installed under lib/: {mods}")
        self.assertTrue(os.path.isfile(os.path.join(share, "bytecode", "runbook", "engine.luac")),
                        "the stdlib's bytecode is not installed under share/runbook/bytecode")

    def test_installed_binary_loads_its_network_modules_on_first_use(self):
        rb = self.write("net.lua", '''
step("http is loaded when first called", function()
  local ok, err = pcall(http.get, "http://127.0.0.1:1/", { timeout = 2 })
  assert(not ok and tostring(err):find("refused"), "expected connection refused, got " .. tostring(err))
end)
''')
        proc = self.run_installed("run", rb, "--transcript", self.path("n.jsonl"))
        self.assertEqual(proc.returncode, 0, f"installed run failed:\n{proc.stdout}\n{proc.stderr}")

    def test_installed_binary_runs_a_runbook_and_lists_share_dir(self):
        with open(os.path.join(SOURCE_DIR, "examples", "demo.lua")) as f:
            rb = self.write("copy.lua", f.read())
        proc = self.run_installed("run", rb, "--yes", "--transcript", self.path("t.jsonl"))
        self.assertEqual(proc.returncode, 0, f"installed run failed:\n{proc.stdout}\n{proc.stderr}")
        self.assertIn("run done", proc.stdout)
        listing = self.run_installed("list")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        share_runbooks = os.path.join(self.prefix, "share", "runbook", "runbooks")
        for f in os.listdir(share_runbooks):
            if f.endswith(".lua"):
                self.assertIn(f[:-4], listing.stdout, f"list does not show installed runbook {f}")

    # A runbook (with the host's internals open, as tests/lua's) that checks
    # what the installed binary loaded for runbook.ui: whether the edit made
    # to the installed ui.lua is in it, and which file and line its
    # ui.print names.
    PROBE = """
step("probe", function()
  local debug = require("debug")
  local ui = require("runbook.ui")
  local info = debug.getinfo(ui.print, "S")
  assert(info.source == "@" .. os.getenv("RB_EXPECT_FILE"),
    "ui.print names " .. info.source .. ", expected @" .. os.getenv("RB_EXPECT_FILE"))
  assert(info.linedefined == tonumber(os.getenv("RB_EXPECT_LINE")),
    "ui.print defined at line " .. info.linedefined .. ", expected " .. os.getenv("RB_EXPECT_LINE"))
  local want = os.getenv("RB_EXPECT_EDIT") == "1"
  assert((ui.EDITED_AFTER_INSTALL == true) == want,
    want and "the edit of the newer ui.lua was not loaded" or "the older ui.lua was compiled instead of its bytecode")
end)
"""

    def probe(self, expect_edit, ui_lua, line):
        rb = self.write(f"probe{int(expect_edit)}.lua", self.PROBE)
        e = dict(self.env, RUNBOOK_TEST_INTERNALS="1", RB_EXPECT_FILE=os.path.realpath(ui_lua),
                 RB_EXPECT_LINE=str(line), RB_EXPECT_EDIT="1" if expect_edit else "0")
        e.pop("RUNBOOK_DATADIR", None)
        proc = subprocess.run([self.bin, "run", rb, "--yes", "--transcript", self.path(f"p{int(expect_edit)}.jsonl")],
                              capture_output=True, text=True, timeout=60, env=e, cwd=self.tmp,
                              stdin=subprocess.DEVNULL)
        self.assertEqual(proc.returncode, 0, f"probe failed:\n{proc.stdout}\n{proc.stderr}")

    def test_installed_stdlib_loads_its_bytecode_unless_the_lua_is_newer(self):
        share = os.path.join(self.prefix, "share", "runbook")
        ui_lua = os.path.join(share, "stdlib", "runbook", "ui.lua")
        ui_luac = os.path.join(share, "bytecode", "runbook", "ui.luac")
        with open(ui_lua) as f:
            src = f.read()
        line = next(i for i, l in enumerate(src.split("\n"), 1) if l.startswith("function ui.print("))
        self.assertTrue(src.rstrip().endswith("return ui"), "ui.lua no longer ends with 'return ui'")
        with open(ui_lua, "w") as f:
            f.write(src.rstrip()[:-len("return ui")] + "ui.EDITED_AFTER_INSTALL = true\nreturn ui\n")
        # Older than its bytecode: the bytecode is what runs, and it names
        # the installed .lua (not the build's source tree) and its lines.
        older = os.stat(ui_luac).st_mtime - 60
        os.utime(ui_lua, (older, older))
        self.probe(False, ui_lua, line)
        # Edited after the build compiled it: the .lua wins.
        newer = os.stat(ui_luac).st_mtime + 60
        os.utime(ui_lua, (newer, newer))
        self.probe(True, ui_lua, line)

    def test_binary_links_only_what_every_command_uses(self):
        # Every library the binary names is loaded and relocated at each
        # start, --version included: libcrypto (ssh's), libedit (repl's) and
        # the network libraries belong to the modules that use them.
        proc = subprocess.run(["readelf", "-d", RUNBOOK], capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        needed = [l.split("[", 1)[1].split("]", 1)[0] for l in proc.stdout.splitlines() if "(NEEDED)" in l]
        for lib in ("libcrypto", "libssl", "libedit", "libcurl", "libpq", "libssh2", "libhiredis"):
            self.assertFalse([n for n in needed if n.startswith(lib)],
                             f"the binary links {lib}: {needed}")
