"""`cpack -G DEB` makes a Debian package of the build: the binary, its
network modules, stdlib, the runbooks, the man page, the completions and
the examples, depending on Debian's library packages.  It is installed two
ways, neither touching the machine: unpacked with `dpkg -x` into a temp
root and run from there, and installed with the real `dpkg -i` inside a
private mount namespace where /usr and /var/lib/dpkg are overlays whose
writes land in a temp dir (so the machine's /usr and dpkg database stay as
they were), then run from /usr/bin as a user would, and removed."""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import RUNBOOK, SOURCE_DIR, RunbookTestCase

BUILD_DIR = os.path.dirname(RUNBOOK)
LIBRARY_PACKAGES = ("libc6", "liblua5.4-0", "lua-cjson", "libnettle8", "libedit2", "libssl3", "libcurl4",
                    "libpq5", "libhiredis0.14", "libssh2-1")

# Inside the namespace: overlays, dpkg -i, the installed runbook at work,
# dpkg -r.  $1 the temp dir, $2 the .deb.
IN_NAMESPACE = r'''
set -eu
T=$1; DEB=$2
for d in usr var/lib/dpkg; do
  mkdir -p "$T/up/$d" "$T/work/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$T/up/$d,workdir=$T/work/$d" "/$d"
done
dpkg --log="$T/dpkg.log" --no-triggers -i "$DEB" >"$T/dpkg-i.log" 2>&1 || { cat "$T/dpkg-i.log"; exit 3; }
set +e
echo "@status $(dpkg-query -W -f='${Status}' runbook)"
echo "@which $(command -v runbook)"
cd "$T/cwd"
echo "@list"
env -u RUNBOOK_DATADIR -u RUNBOOK_MODDIR runbook list
echo "@demo"
env -u RUNBOOK_DATADIR -u RUNBOOK_MODDIR runbook run /usr/share/doc/runbook/examples/demo.lua --yes \
  --transcript "$T/demo.jsonl"
echo "@demo-rc $?"
env -u RUNBOOK_DATADIR -u RUNBOOK_MODDIR runbook verify "$T/demo.jsonl"
echo "@verify-rc $?"
R="env -u RUNBOOK_DATADIR -u RUNBOOK_MODDIR runbook"
$R list --json >"$T/list.json"; echo "@list-json-rc $?"
$R stats --json "$T/demo.jsonl" >"$T/stats.json"; echo "@stats-rc $?"
$R report --html -o "$T/report.html" "$T/demo.jsonl"; echo "@html-rc $?"
printf 'help(http.get)\nprint(json.decode("[1]")[1])\n' | $R repl >"$T/repl.out" 2>&1; echo "@repl-rc $?"
echo "@man $(man -w runbook)"
echo "@bash $(bash --norc --noprofile -c '. /usr/share/bash-completion/bash_completion 2>/dev/null;
  _completion_loader runbook 2>/dev/null; complete -p runbook')"
if command -v zsh >/dev/null; then
  # -d: compinit writes its dump file even with -D, by a rename: never /dev/null
  echo "@zsh $(T="$T" zsh -f -c 'autoload -U compinit; compinit -u -D -d "$T/zcompdump"; print -r -- $_comps[runbook]')"
fi
dpkg --log="$T/dpkg.log" --no-triggers -r runbook >"$T/dpkg-r.log" 2>&1
echo "@removed $(test -e /usr/bin/runbook && echo no || echo yes)"
'''


def control(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


class DebTest(RunbookTestCase):
    @classmethod
    def setUpClass(cls):
        cls.out = tempfile.mkdtemp(prefix="rbdeb-")
        proc = subprocess.run(["cpack", "-G", "DEB", "--config",
                               os.path.join(BUILD_DIR, "CPackConfig.cmake"), "-B", cls.out],
                              capture_output=True, text=True, timeout=300, cwd=BUILD_DIR)
        debs = glob.glob(os.path.join(cls.out, "*.deb"))
        # The staging tree is not needed once the .deb is there.
        shutil.rmtree(os.path.join(cls.out, "_CPack_Packages"), True)
        if proc.returncode != 0 or len(debs) != 1:
            shutil.rmtree(cls.out, True)
            raise AssertionError(f"cpack -G DEB failed ({debs}):\n{proc.stdout}\n{proc.stderr}")
        cls.deb = debs[0]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, True)

    def contents(self):
        out = subprocess.run(["dpkg-deb", "-c", self.deb], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        return {line.split()[-1].lstrip(".") for line in out.splitlines()}

    def test_depends_on_debian_library_packages(self):
        depends = control(self.deb, "Depends")
        names = {d.split()[0] for d in depends.split(", ")}
        for pkg in LIBRARY_PACKAGES:
            self.assertIn(pkg, names, f"Depends lacks {pkg}: {depends}")
        for pkg in names:
            # Each is a package this Debian knows and has installed (the
            # binary runs here), so the names are Debian 12's.
            q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(q.stdout, "install ok installed", f"{pkg}: {q.stderr}")
        self.assertEqual(control(self.deb, "Package"), "runbook")

    def test_holds_binary_modules_stdlib_runbooks_page_completions(self):
        files = self.contents()
        want = ["/usr/bin/runbook", "/usr/share/runbook/stdlib/runbook/engine.lua",
                "/usr/share/runbook/stdlib/runbook/cmd/run.lua", "/usr/share/man/man1/runbook.1",
                "/usr/share/bash-completion/completions/runbook",
                "/usr/share/zsh/vendor-completions/_runbook",
                "/usr/share/doc/runbook/examples/demo.lua"]
        # the guides --help and the page name
        want += ["/usr/share/doc/runbook/" + f for f in os.listdir(os.path.join(SOURCE_DIR, "docs"))
                 if f.endswith(".md")]
        want += ["/usr/share/runbook/runbooks/" + f for f in os.listdir(os.path.join(SOURCE_DIR, "runbooks"))
                 if f.endswith((".lua", ".md"))]
        for name in ("http", "sql", "redis", "ssh"):
            want += [f for f in files if f.endswith(f"/runbook/{name}.so")][:1] or [f"(no {name}.so)"]
        for f in want:
            self.assertIn(f, files)
        self.assertFalse([f for f in files if f.startswith("/usr/local")], "files under /usr/local")

    def test_unpacked_root_runs_list_and_the_demo(self):
        root = self.path("root")
        subprocess.run(["dpkg-deb", "-x", self.deb, root], check=True, timeout=60)
        binary = os.path.join(root, "usr", "bin", "runbook")
        env = dict(self.env)
        env.pop("RUNBOOK_DATADIR", None)
        env.pop("RUNBOOK_MODDIR", None)
        cwd = self.path("cwd")
        os.makedirs(cwd)

        def run(*args):
            return subprocess.run([binary, *args], capture_output=True, text=True, env=env,
                                  cwd=cwd, timeout=60, stdin=subprocess.DEVNULL)

        share = os.path.join(root, "usr", "share", "runbook", "runbooks")
        listing = run("list")
        self.assertExit(listing, 0)
        self.assertIn("triage", listing.stdout)
        self.assertIn(f"({share})", listing.stdout, "list does not read the package's share dir")
        demo = run("run", os.path.join(root, "usr", "share", "doc", "runbook", "examples", "demo.lua"),
                   "--yes", "--transcript", self.path("d.jsonl"))
        self.assertExit(demo, 0)
        self.assertIn("run done", demo.stdout)
        net = self.write("net.lua", 'step("http loads", function()\n'
                         '  local ok, err = pcall(http.get, "http://127.0.0.1:1/", { timeout = 2 })\n'
                         '  assert(not ok and tostring(err):find("refused"), tostring(err))\nend)\n')
        self.assertExit(run("run", net, "--transcript", self.path("n.jsonl")), 0)
        page = subprocess.run(["man", "--warnings", "-l",
                               os.path.join(root, "usr", "share", "man", "man1", "runbook.1")],
                              capture_output=True, text=True, timeout=60, env=dict(env, MANWIDTH="80"))
        self.assertEqual((page.returncode, page.stderr), (0, ""))
        self.assertIn("runbook run NAME|FILE", page.stdout)

    @unittest.skipUnless(shutil.which("unshare") and os.geteuid() == 0,
                         "needs unshare and root for a private mount namespace")
    def test_dpkg_i_in_a_private_namespace_installs_runs_and_removes(self):
        t = self.path("ns")
        os.makedirs(os.path.join(t, "cwd"))
        script = self.write("in-namespace.sh", IN_NAMESPACE)
        before = os.path.exists("/usr/bin/runbook")
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", script, t,
                               self.deb], capture_output=True, text=True, timeout=180, env=self.env,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0 and "mount" in proc.stderr and "@status" not in proc.stdout:
            self.skipTest(f"no overlay mount here: {proc.stderr.strip()}")
        self.assertExit(proc, 0)
        out = proc.stdout
        self.assertIn("@status install ok installed", out)
        self.assertIn("@which /usr/bin/runbook", out)
        self.assertIn("(/usr/share/runbook/runbooks)", out.split("@list", 1)[1].split("@demo", 1)[0])
        self.assertIn("run done", out)
        self.assertIn("@demo-rc 0", out)
        self.assertIn("@verify-rc 0", out)
        # issue 13's tools, from the installed paths: JSON, stats, the HTML page, the REPL's help
        for what in ("list-json", "stats", "html", "repl"):
            self.assertIn(f"@{what}-rc 0", out)
        with open(os.path.join(t, "list.json")) as f:
            names = [r["name"] for r in json.load(f)]
        self.assertIn("db-restore", names)
        with open(os.path.join(t, "stats.json")) as f:
            self.assertEqual(json.load(f)["transcripts"]["used"], 1)
        with open(os.path.join(t, "report.html")) as f:
            self.assertIn("<svg", f.read())
        with open(os.path.join(t, "repl.out")) as f:
            repl = f.read()
        self.assertIn("http.get(url", repl)
        self.assertRegex(repl, r"(?m)^1$", "a JSON integer prints as 1 from the installed REPL")
        self.assertIn("@man /usr/share/man/man1/runbook.1", out)
        self.assertIn("@bash complete -F _runbook runbook", out,
                      "bash-completion does not load the installed completion by name")
        if shutil.which("zsh"):
            self.assertIn("@zsh _runbook", out, "zsh's $fpath does not find the installed _runbook")
        self.assertIn("@removed yes", out)
        # The machine itself is as it was.
        self.assertEqual(os.path.exists("/usr/bin/runbook"), before)
        q = subprocess.run(["dpkg-query", "-W", "runbook"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(q.returncode, 0, "runbook is in the machine's dpkg database")
