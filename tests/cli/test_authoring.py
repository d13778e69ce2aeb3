"""Authoring commands (list, show, check, new), --help on every subcommand,
and usage errors: unknown commands and flags exit 2 and name what was
wrong."""
import glob
import os
import re
import unittest

from harness import SOURCE_DIR, TESTS_DIR, RunbookTestCase, runbook_path

HEADER = 'runbook { name = "%s", title = "%s", severity = "P2" }\n'


class Help(RunbookTestCase):
    def commands(self):
        """The subcommands `runbook --help` lists."""
        p = self.run_rb("--help")
        self.assertExit(p, 0)
        section = p.stdout.split("commands:", 1)[1].split("\n\n", 1)[0]
        names = re.findall(r"^\s+([a-z][a-z-]*)\s", section, re.M)
        self.assertTrue({"run", "list", "show", "check", "new", "repl", "verify"} <= set(names),
                        f"--help lists {names}")
        return names

    def test_top_level_help_lists_commands_and_exit_codes(self):
        p = self.run_rb("--help")
        self.assertExit(p, 0)
        self.assertIn("usage: runbook <command>", p.stdout)
        self.assertIn("130 interrupted", p.stdout)

    def test_help_on_every_subcommand(self):
        for cmd in self.commands():
            for flag in ("--help", "-h"):
                with self.subTest(command=cmd, flag=flag):
                    p = self.run_rb(cmd, flag)
                    self.assertExit(p, 0)
                    self.assertTrue(p.stdout.startswith(f"usage: runbook {cmd}"),
                                    f"expected 'usage: runbook {cmd}' first, got:\n{p.stdout}")
                    self.assertIn("--help", p.stdout, "the options table is missing")
                    self.assertEqual(p.stderr, "")

    def test_run_help_lists_its_options(self):
        p = self.run_rb("run", "--help")
        for opt in ("--param", "--dry-run", "--yes", "--answers", "--start-at", "--resume",
                    "--transcript", "--target"):
            self.assertIn(opt, p.stdout)

    def test_no_arguments_is_a_usage_error(self):
        p = self.run_rb()
        self.assertExit(p, 2)
        self.assertIn("usage: runbook", p.stderr)

    def test_unknown_command_exits_2_naming_it(self):
        p = self.run_rb("frobnicate")
        self.assertExit(p, 2)
        self.assertIn("'frobnicate' is not a command", p.stderr)

    def test_unknown_flag_exits_2_naming_it_on_every_subcommand(self):
        for cmd in self.commands():
            with self.subTest(command=cmd):
                p = self.run_rb(cmd, "--no-such-flag")
                self.assertExit(p, 2)
                self.assertIn("unknown option '--no-such-flag'", p.stderr)
                self.assertIn(f"Try 'runbook {cmd} --help'", p.stderr)

    def test_misspelt_flag_gets_a_suggestion(self):
        p = self.run_rb("run", runbook_path("flow.lua"), "--dryrun")
        self.assertExit(p, 2)
        self.assertIn("unknown option '--dryrun' (did you mean '--dry-run'?)", p.stderr)

    def test_unknown_short_flag_and_missing_value(self):
        p = self.run_rb("run", "-Z", runbook_path("flow.lua"))
        self.assertExit(p, 2)
        self.assertIn("'-Z'", p.stderr)
        p = self.run_rb("run", runbook_path("flow.lua"), "--transcript")
        self.assertExit(p, 2)
        self.assertIn("option '--transcript' needs a value", p.stderr)


class ListAndShow(RunbookTestCase):
    def add(self, directory, name, title, body='step("s", function() end)\n'):
        return self.write(os.path.join(directory, f"{name}.lua"), HEADER % (name, title) + body)

    def test_list_with_no_runbooks_of_ours(self):
        # Only the runbooks shipped in the share dir (the source tree for an
        # uninstalled build) can show up.
        shipped = sorted(os.path.basename(f)[:-4]
                         for f in glob.glob(os.path.join(SOURCE_DIR, "runbooks", "*.lua")))
        p = self.run_rb("list")
        self.assertExit(p, 0)
        if not shipped:
            self.assertIn("no runbooks found in ./runbooks", p.stdout)
        else:
            names = sorted(line.split()[0] for line in p.stdout.splitlines()[1:] if line.strip())
            self.assertEqual(names, shipped)

    def test_list_shows_runbooks_from_runbooks_dir_and_runbook_path(self):
        self.add("runbooks", "db-restore", "Restore the database")
        self.add("shared", "cache-flush", "Flush the cache")
        self.add("shared", "db-restore", "A shadowed copy")
        p = self.run_rb("list", env={"RUNBOOK_PATH": self.path("shared")})
        self.assertExit(p, 0)
        rows = {line.split()[0]: line for line in p.stdout.splitlines()[1:] if line.strip()}
        self.assertIn("db-restore", rows)
        self.assertIn("cache-flush", rows)
        self.assertRegex(rows["db-restore"], r"db-restore\s+P2\s+Restore the database \(\./runbooks\)")
        self.assertIn(f"Flush the cache ({self.path('shared')})", rows["cache-flush"])
        self.assertNotIn("A shadowed copy", p.stdout, "./runbooks must win over $RUNBOOK_PATH")

    def test_list_marks_a_runbook_that_does_not_load(self):
        self.write("runbooks/broken.lua", "step(\n")
        self.add("runbooks", "fine", "Fine")
        p = self.run_rb("list")
        self.assertExit(p, 0)
        self.assertRegex(p.stdout, r"broken\s+\?\s+\(load error: .*broken\.lua:\d+:")
        self.assertIn("Fine", p.stdout)

    def test_list_takes_no_arguments(self):
        self.assertExit(self.run_rb("list", "x"), 2)

    def test_show_prints_the_plan_without_running_it(self):
        mark = self.path("ran")
        rb = self.write("runbooks/plan.lua", HEADER % ("plan", "The plan") + f'''
param("db", {{ help = "database URL", required = true, secret = true }})
param("mode", {{ help = "how", default = "fast", choices = {{ "fast", "slow" }} }})
step("Look", function(p) io.open("{mark}", "w"):close() end)
step("Stop it", {{ id = "stop", dangerous = true, timeout = 30, undo = function() end }}, function() end)
step("Check", {{ verify = function() return true end }}, function() end)
''')
        p = self.run_rb("show", "plan")
        self.assertExit(p, 0)
        self.assertIn("plan: The plan [P2]", p.stdout)
        self.assertRegex(p.stdout, r"db\s+database URL \(required, secret\)")
        self.assertRegex(p.stdout, r"mode\s+how \(default fast, one of fast\|slow\)")
        self.assertRegex(p.stdout, r"1\. \[ \] Look\s+\(id look\)")
        self.assertRegex(p.stdout, r"2\. \[ \] Stop it\s+\(id stop, dangerous, timeout 30 s, has undo\)")
        self.assertRegex(p.stdout, r"3\. \[ \] Check\s+\(id check, verified\)")
        self.assertFalse(os.path.exists(mark), "show ran a step")
        self.assertExit(self.run_rb("show", rb), 0)

    def test_show_unknown_or_broken_runbook_exits_2(self):
        p = self.run_rb("show", "nothing-here")
        self.assertExit(p, 2)
        self.assertIn('no runbook named "nothing-here"', p.stderr)
        rb = self.write("bad.lua", HEADER % ("bad", "Bad") + "step('x', function() end\n")
        p = self.run_rb("show", rb)
        self.assertExit(p, 2)
        self.assertIn(f"{rb}:3:", p.stderr)


class Check(RunbookTestCase):
    def check(self, *files):
        return self.run_rb("check", *files)

    def test_a_good_runbook_passes(self):
        p = self.check(runbook_path("flow.lua"))
        self.assertExit(p, 0)
        self.assertIn("flow.lua (3 steps, 4 params)", p.stdout)

    def test_syntax_error_names_file_and_line(self):
        rb = self.write("syntax.lua", HEADER % ("syntax", "S") + "step('a', function()\n  if then\nend)\n")
        p = self.check(rb)
        self.assertExit(p, 2)
        self.assertIn(f"{rb}:3:", p.stderr)

    def test_error_while_declaring_names_file_and_line(self):
        rb = self.write("decl.lua", HEADER % ("decl", "D") + "step('a', function() end)\n"
                        "step('b', { timeout = -1 }, function() end)\n")
        p = self.check(rb)
        self.assertExit(p, 2)
        self.assertIn(f"{rb}:3: step \"b\": timeout must be a positive number", p.stderr)

    def test_duplicate_step_ids(self):
        rb = self.write("dup.lua", HEADER % ("dup", "D") +
                        "step('Restart', function() end)\n"
                        "step('Other', { id = 'restart' }, function() end)\n")
        p = self.check(rb)
        self.assertExit(p, 2)
        self.assertIn(f'{rb}:3: duplicate step id "restart" (step 1 at line 2 has it already)', p.stderr)

    def test_use_of_undeclared_params(self):
        rb = self.write("undeclared.lua", HEADER % ("undeclared", "U") +
                        "param('host', {})\n"
                        "step('a', function(p)\n"
                        "  print(p.host)\n"
                        "  print(p.hots)\n"
                        "end)\n"
                        "step('b', { undo = function(params) print(params['port']) end }, function() end)\n")
        p = self.check(rb)
        self.assertExit(p, 2)
        self.assertIn(f'{rb}:5: undeclared param "hots"', p.stderr)
        self.assertIn(f'{rb}:7: undeclared param "port"', p.stderr)
        self.assertNotIn('"host"', p.stderr)

    def test_several_files_each_reported(self):
        bad = self.write("bad.lua", "step(\n")
        p = self.check(runbook_path("flaky.lua"), bad)
        self.assertExit(p, 2)
        self.assertIn("ok: ", p.stdout)
        self.assertIn(f"{bad}:", p.stderr)

    def test_missing_header_or_steps(self):
        rb = self.write("empty.lua", "-- nothing yet\n")
        p = self.check(rb)
        self.assertExit(p, 2)
        self.assertIn("no steps declared", p.stderr)
        self.assertIn("no runbook{name=, title=, severity=} header", p.stderr)

    def test_check_needs_a_runbook(self):
        self.assertExit(self.check(), 2)

    def test_shipped_and_test_runbooks_pass_check(self):
        files = sorted(glob.glob(os.path.join(TESTS_DIR, "runbooks", "*.lua")) +
                       glob.glob(os.path.join(SOURCE_DIR, "runbooks", "*.lua")) +
                       glob.glob(os.path.join(SOURCE_DIR, "examples", "*.lua")))
        files = [f for f in files if os.path.basename(f) != "declare.lua"]   # broken on purpose
        self.assertGreater(len(files), 5)
        for f in files:
            with self.subTest(runbook=os.path.relpath(f, SOURCE_DIR)):
                p = self.check(f)
                self.assertExit(p, 0)


class New(RunbookTestCase):
    def test_new_writes_a_commented_skeleton_that_passes_check_and_runs(self):
        p = self.run_rb("new", "disk-full")
        self.assertExit(p, 0)
        path = self.path("runbooks", "disk-full.lua")
        self.assertIn("wrote runbooks/disk-full.lua", p.stdout)
        with open(path) as f:
            text = f.read()
        comments = [l for l in text.splitlines() if l.strip().startswith("--")]
        self.assertGreaterEqual(len(comments), 3, f"expected a commented skeleton:\n{text}")
        self.assertIn('name = "disk-full"', text)
        self.assertExit(self.run_rb("check", path), 0)
        self.assertExit(self.run_rb("check", "disk-full"), 0)
        p = self.run_rb("list")
        self.assertRegex(p.stdout, r"disk-full\s+P2")
        p = self.run_rb("run", "disk-full", "--yes", "--dry-run")
        self.assertExit(p, 0)
        self.assertIn("would run: true", p.stdout)

    def test_new_does_not_overwrite_without_force(self):
        self.assertExit(self.run_rb("new", "x1"), 0)
        path = self.path("runbooks", "x1.lua")
        with open(path, "a") as f:
            f.write("-- my edits\n")
        p = self.run_rb("new", "x1")
        self.assertExit(p, 2)
        self.assertIn("exists (use --force to overwrite)", p.stderr)
        with open(path) as f:
            self.assertIn("-- my edits", f.read())
        self.assertExit(self.run_rb("new", "x1", "--force"), 0)
        with open(path) as f:
            self.assertNotIn("-- my edits", f.read())

    def test_new_into_another_directory(self):
        self.assertExit(self.run_rb("new", "elsewhere", "--dir", "team/books"), 0)
        self.assertTrue(os.path.isfile(self.path("team", "books", "elsewhere.lua")))

    def test_new_rejects_bad_or_missing_names(self):
        p = self.run_rb("new", "../escape")
        self.assertExit(p, 2)
        self.assertIn("not a valid name", p.stderr)
        self.assertFalse(os.path.exists(self.path("escape.lua")))
        self.assertExit(self.run_rb("new"), 2)


if __name__ == "__main__":
    unittest.main()
