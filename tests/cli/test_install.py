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
