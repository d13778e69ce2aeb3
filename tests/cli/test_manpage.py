"""runbook(1): written at build time from the tables `--help` prints, a
section per command with every option, rendered by man without warnings,
and installed by `cmake --install`."""
import os
import re
import shutil
import subprocess

from harness import RUNBOOK, SOURCE_DIR, RunbookTestCase

BUILD_DIR = os.path.dirname(RUNBOOK)
PAGE = os.path.join(BUILD_DIR, "runbook.1")


def commands(help_text):
    """The command names `runbook --help` lists."""
    block = help_text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def help_options(help_text):
    """The long options a command's --help lists."""
    return re.findall(r"^  (?:-\w, |    )--([\w-]+)", help_text, re.M)


class ManPageTest(RunbookTestCase):
    def man(self, path):
        env = dict(self.env, MANWIDTH="80", LC_ALL="C.UTF-8")
        return subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                              timeout=60, env=env)

    def sections(self, rendered):
        """Command name -> the text of its section under COMMANDS."""
        body = rendered.split("\nCOMMANDS\n", 1)[1].split("\nEXIT STATUS\n", 1)[0]
        parts = re.split(r"^   runbook +([\w-]+)", body, flags=re.M)
        return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}

    def test_the_built_page_is_what_the_tables_say_now(self):
        # A table that gained an option after the page was written (a build
        # that did not regenerate it) fails here.
        self.assertTrue(os.path.isfile(PAGE), f"the build wrote no {PAGE}")
        fresh = self.run_rb("__manpage")
        self.assertExit(fresh, 0)
        with open(PAGE) as f:
            self.assertEqual(f.read(), fresh.stdout, "build/runbook.1 differs from the option tables")

    def test_a_section_per_command_with_every_option_of_its_help(self):
        top = self.run_rb("--help")
        self.assertExit(top, 0)
        names = commands(top.stdout)
        self.assertIn("run", names)
        page = self.man(PAGE)
        self.assertEqual(page.returncode, 0, page.stderr)
        found = self.sections(page.stdout)
        self.assertEqual(sorted(found), sorted(names), "the page's command sections")
        for name in names:
            h = self.run_rb(name, "--help")
            self.assertExit(h, 0)
            opts = help_options(h.stdout)
            self.assertIn("help", opts, f"{name} --help lists no options?\n{h.stdout}")
            for opt in opts:
                self.assertRegex(found[name], rf"(?m)^       (-\w, )?--{re.escape(opt)}\b",
                                 f"the section of {name} lacks --{opt}")

    def test_man_renders_it_without_warnings(self):
        page = self.man(PAGE)
        self.assertEqual(page.returncode, 0, page.stderr)
        self.assertEqual(page.stderr, "", "man --warnings complained")
        for head in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"):
            self.assertIn("\n" + head + "\n", page.stdout)
        too_long = [line for line in page.stdout.splitlines() if len(line) > 80]
        self.assertEqual(too_long, [], "lines wider than MANWIDTH")

    def test_an_option_added_to_a_table_appears_on_the_page(self):
        # The page is the tables': a copy of stdlib/ whose `new` command
        # gained an option gives a page with it, in new's section.
        data = self.path("data")
        shutil.copytree(os.path.join(SOURCE_DIR, "stdlib"), os.path.join(data, "stdlib"))
        cmd = os.path.join(data, "stdlib", "runbook", "cmd", "new.lua")
        with open(cmd) as f:
            text = f.read()
        marker = '{ name = "force", short = "f", help = "overwrite an existing file" },'
        self.assertIn(marker, text)
        with open(cmd, "w") as f:
            f.write(text.replace(marker, marker + '\n    { name = "frobnicate", value = "HOW", '
                                 'help = "an option only this test has" },'))
        out = self.run_rb("__manpage", self.path("p.1"), env={"RUNBOOK_DATADIR": data})
        self.assertExit(out, 0)
        found = self.sections(self.man(self.path("p.1")).stdout)
        self.assertIn("--frobnicate HOW", found["new"])
        self.assertIn("an option only this test has", found["new"])
        self.assertNotIn("frobnicate", found["run"])

    def test_roff_in_a_description_is_text(self):
        # A description line starting with '.' or holding a backslash must
        # not become a roff request or escape.
        data = self.path("data")
        shutil.copytree(os.path.join(SOURCE_DIR, "stdlib"), os.path.join(data, "stdlib"))
        cmd = os.path.join(data, "stdlib", "runbook", "cmd", "list.lua")
        with open(cmd) as f:
            text = f.read()
        with open(cmd, "w") as f:
            f.write(text.replace('description = "', 'description = ".SH BOGUS C:\\\\temp\\n'
                                 '.TH x\\n', 1))
        out = self.run_rb("__manpage", self.path("p.1"), env={"RUNBOOK_DATADIR": data})
        self.assertExit(out, 0)
        page = self.man(self.path("p.1"))
        self.assertEqual(page.stderr, "")
        # man justifies the paragraph: which gaps it widens depends on the
        # lines before it, so the words are compared, not the spaces
        words = " ".join(self.sections(page.stdout)["list"].split())
        self.assertIn(".SH BOGUS C:\\temp .TH x", words)

    def test_cmake_install_puts_the_page_and_completions_in_place(self):
        prefix = self.path("prefix")
        proc = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        man = os.path.join(prefix, "share", "man", "man1", "runbook.1")
        with open(man) as f, open(PAGE) as g:
            self.assertEqual(f.read(), g.read(), "installed page differs from the built one")
        env = dict(self.env, MANPATH=os.path.join(prefix, "share", "man"))
        where = subprocess.run(["man", "-w", "runbook"], capture_output=True, text=True, env=env,
                               timeout=60)
        self.assertEqual(where.stdout.strip(), man, "man does not find the page by name")
        bash = os.path.join(prefix, "share", "bash-completion", "completions", "runbook")
        zsh = os.path.join(prefix, "share", "zsh", "site-functions", "_runbook")
        for path, src in ((bash, "runbook.bash"), (zsh, "_runbook")):
            with open(path) as f, open(os.path.join(SOURCE_DIR, "dist", "completion", src)) as g:
                self.assertEqual(f.read(), g.read(), f"{path} is not dist/completion/{src}")
        self.assertTrue(os.path.isfile(os.path.join(prefix, "share", "doc", "runbook", "examples",
                                                    "demo.lua")), "examples not installed")
