"""Shell completion (dist/completion/): a real bash calling the completion
function with COMP_WORDS/COMP_CWORD set, with and without Debian's
bash-completion loaded, and a real interactive zsh on a pty pressing Tab.
The candidates come from `runbook __complete` (stdlib/runbook/shellcomplete.lua)."""
import os
import shutil
import subprocess
import unittest

from harness import RUNBOOK, SOURCE_DIR, PtySession, RunbookTestCase

BASH_SCRIPT = os.path.join(SOURCE_DIR, "dist", "completion", "runbook.bash")
ZSH_DIR = os.path.join(SOURCE_DIR, "dist", "completion")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"

MINE = '''
runbook { name = "mine", title = "A runbook of the test's own" }
param("service", { help = "the unit to restart", default = "api" })
param("settle", { help = "seconds to wait" })
step("Look first", { id = "look" }, function() end)
step("Restart the service", function() end)
step("Check it came back", { id = "check-back" }, function() end)
'''

CONFIG = '''
targets = {
  prod = { description = "production", db = "postgres://db/app" },
  staging = { db = "postgres://staging/app" },
}
'''


class CompletionTestCase(RunbookTestCase):
    def setUp(self):
        super().setUp()
        self.write("work/runbooks/mine.lua", MINE)
        self.write("work/incident.md", "# x\n")
        self.write("work/answers.txt", "x = y\n")
        self.write("config/runbook/config.lua", CONFIG)
        self.write("other.lua", 'targets = { elsewhere = {} }\n')
        tdir = self.path("state", "runbook", "transcripts")
        os.makedirs(tdir)
        self.transcripts = []
        for i, name in enumerate(["mine-20261201T100000Z-aaaa", "triage-20261201T110000Z-bbbb",
                                  "mine-20261201T120000Z-cccc"]):
            p = os.path.join(tdir, name + ".jsonl")
            with open(p, "w") as f:
                f.write("{}\n")
            os.utime(p, (1_700_000_000 + i * 60, 1_700_000_000 + i * 60))
            self.transcripts.append(p)
        # runbook on PATH as the user types it; the build's own, so the
        # completion asks the binary under test.
        self.env["PATH"] = os.path.dirname(RUNBOOK) + ":" + self.env["PATH"]
        self.work = self.path("work")


class BashCompletionTest(CompletionTestCase):
    def complete(self, *words, preload=False):
        """COMPREPLY for the command line `words` (the last one being
        typed), from bash calling _runbook as Tab would."""
        pre = f"source {BASH_COMPLETION}\n" if preload else ""
        script = pre + f'''source {BASH_SCRIPT}
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}
_runbook
printf '%s\\n' "${{COMPREPLY[@]}}"
'''
        proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", *words],
                              capture_output=True, text=True, env=self.env, cwd=self.work, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stderr, "", "the completion printed errors")
        return [w for w in proc.stdout.split("\n") if w]

    def test_the_function_is_registered_for_runbook(self):
        proc = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                               f"source {BASH_SCRIPT}; complete -p runbook"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.stdout.strip(), "complete -F _runbook runbook")

    def test_commands(self):
        self.assertEqual(self.complete("runbook", "re"), ["repl", "report"])
        every = self.complete("runbook", "")
        top = self.run_rb("--help").stdout
        for name in ("run", "list", "show", "check", "verify", "report", "watch"):
            self.assertIn(name, every)
            self.assertIn(f"  {name} ", top)
        self.assertNotIn("__complete", every, "a hidden command is offered")

    def test_flags_of_each_command_from_its_table(self):
        flags = self.complete("runbook", "run", "--")
        for f in ("--target", "--start-at", "--resume", "--dry-run", "--param", "--help"):
            self.assertIn(f, flags)
        self.assertEqual(self.complete("runbook", "verify", "--e"), ["--expect-hash"])
        self.assertEqual(self.complete("runbook", "run", "mine", "--dry-run", "--d"), [],
                         "a flag already given is offered again")
        self.assertEqual(self.complete("runbook", "run", "-p", "a=b", "--pa"), ["--param"],
                         "a repeatable option is not offered again")

    def test_runbook_names_and_files(self):
        got = self.complete("runbook", "run", "")
        self.assertIn("mine", got, "./runbooks not offered")
        self.assertIn("triage", got, "the share dir's runbooks not offered")
        self.assertIn("incident.md", got, "a markdown file beside is not offered")
        self.assertIn("runbooks", got, "directories are not offered for a path")
        self.assertNotIn("answers.txt", got, "a file that is no runbook is offered")
        self.assertEqual(self.complete("runbook", "show", "mi"), ["mine"])
        self.assertEqual(self.complete("runbook", "check", "runbooks/m"), ["runbooks/mine.lua"])

    def test_target_names_from_the_config(self):
        self.assertEqual(self.complete("runbook", "run", "mine", "--target", ""), ["prod", "staging"])
        self.assertEqual(self.complete("runbook", "repl", "-t", "st"), ["staging"])
        self.assertEqual(self.complete("runbook", "run", "--config", self.path("other.lua"),
                                       "mine", "-t", ""), ["elsewhere"],
                         "--config on the line is not the config read")

    def test_step_ids_for_start_at(self):
        self.assertEqual(self.complete("runbook", "run", "mine", "--start-at", ""),
                         ["look", "restart-the-service", "check-back"])
        self.assertEqual(self.complete("runbook", "run", "mine", "--start-at", "c"), ["check-back"])
        self.assertEqual(self.complete("runbook", "run", "runbooks/mine.lua", "--start-at", "l"),
                         ["look"])

    def test_params_for_p(self):
        self.assertEqual(self.complete("runbook", "run", "mine", "-p", "se"),
                         ["service=", "settle="])

    def test_transcripts_for_resume_verify_and_report(self):
        newest_first = list(reversed(self.transcripts))
        got = self.complete("runbook", "verify", "")
        self.assertEqual(got[:3], newest_first, "verify: the transcripts, newest first")
        self.assertEqual(self.complete("runbook", "report", "")[:3], newest_first)
        mine = [p for p in newest_first if "/mine-" in p]
        self.assertEqual(self.complete("runbook", "run", "mine", "--resume", "")[:2], mine,
                         "--resume: the runbook's own transcripts")
        self.assertNotIn(self.transcripts[1], self.complete("runbook", "run", "mine", "--resume", ""))

    def test_files_where_the_table_says_file(self):
        self.assertIn("answers.txt", self.complete("runbook", "run", "mine", "--answers", ""))
        self.assertEqual(self.complete("runbook", "import", "inc"), ["incident.md"])
        self.assertEqual(self.complete("runbook", "import", "ans"), [], "import offers a non-.md file")

    @unittest.skipUnless(os.path.isfile(BASH_COMPLETION), "bash-completion is not installed")
    def test_with_bash_completion_loaded_k_equals_v_is_one_word(self):
        # bash-completion's word splitting keeps `--param=se` whole.
        self.assertEqual(self.complete("runbook", "run", "mine", "--param=se", preload=True),
                         ["--param=service=", "--param=settle="])
        self.assertEqual(self.complete("runbook", "run", "mine", "--start-at", "ch", preload=True),
                         ["check-back"])

    def test_broken_config_or_runbook_completes_nothing_quietly(self):
        self.write("config/runbook/config.lua", "targets = {{{\n")
        self.write("work/runbooks/broken.lua", "step(\n")
        self.assertEqual(self.complete("runbook", "run", "broken", "--target", ""), [])
        self.assertEqual(self.complete("runbook", "run", "broken", "--start-at", ""), [])
        raw = self.run_rb("__complete", "run", "broken", "--start-at", "", cwd=self.work)
        self.assertExit(raw, 0)
        self.assertEqual((raw.stdout, raw.stderr), ("", ""))


@unittest.skipUnless(shutil.which("zsh"), "zsh is not installed (scripts/setup installs it)")
class ZshCompletionTest(CompletionTestCase):
    """An interactive zsh on a pty with compinit and dist/completion on
    $fpath.  `runbook` is a function that runs the build's binary for
    __complete and otherwise prints its argv, so pressing Enter after Tab
    shows the line the completion made."""

    def zsh(self):
        self.write(".zshrc", f"PS1='zsh> '\nfpath=({ZSH_DIR} $fpath)\nautoload -U compinit\n"
                   "compinit -u -D\nrunbook() {\n  if [[ $1 == __complete ]]; then $RUNBOOK_REAL \"$@\"\n"
                   "  else print -r -- \"ARGV<$*>\"; fi\n}\n")
        env = dict(self.env, TERM="dumb", ZDOTDIR=self.tmp, RUNBOOK_REAL=RUNBOOK)
        # -d: no /etc/zsh/*rc, only the test's own .zshrc.
        sh = PtySession([shutil.which("zsh"), "-d", "-i"], env=env, cwd=self.work, timeout=20)
        self.addCleanup(sh.close)
        sh.expect("zsh> ", timeout=90)    # compinit reads all of $fpath: slow on a loaded machine
        return sh

    def line(self, sh, typed):
        sh.send(typed + "\t")
        sh.sendline()
        return sh.expect(r"ARGV<([^>]*)>", timeout=60).group(1)

    def test_tab_completes_commands_flags_steps_targets_params(self):
        sh = self.zsh()
        self.assertEqual(self.line(sh, "runbook chec"), "check")
        self.assertEqual(self.line(sh, "runbook run mine --start"), "run mine --start-at")
        self.assertEqual(self.line(sh, "runbook run mine --start-at chec"), "run mine --start-at check-back")
        self.assertEqual(self.line(sh, "runbook run mine -t pr"), "run mine -t prod")
        self.assertEqual(self.line(sh, "runbook run mine -p sett"), "run mine -p settle=")
        self.assertEqual(self.line(sh, "runbook show mi"), "show mine")
        self.assertEqual(self.line(sh, "runbook import inc"), "import incident.md")

    def test_tab_completes_transcripts(self):
        sh = self.zsh()
        self.assertEqual(self.line(sh, f"runbook verify {self.transcripts[1][:-12]}"),
                         f"verify {self.transcripts[1]}")

    def test_tab_lists_several_with_their_descriptions(self):
        sh = self.zsh()
        sh.send("runbook run mine --start-at \t")
        sh.expect(r"restart-the-service +-- step 2: Restart the service")   # zsh sorts them
        self.assertRegex(sh.output, r"look +-- step 1: Look first")
        self.assertRegex(sh.output, r"check-back +-- step 3: Check it came back")
