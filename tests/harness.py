"""Shared helpers for the end-to-end tests: run build/runbook as a user would,
in a temporary directory, either with pipes or through a real pseudo-terminal.
"""
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

SOURCE_DIR = os.environ.get(
    "RUNBOOK_SOURCE_DIR",
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNBOOK = os.environ.get("RUNBOOK_BIN", os.path.join(SOURCE_DIR, "build", "runbook"))
TESTS_DIR = os.path.join(SOURCE_DIR, "tests")


# The retry/skip/abort question after a failed step, as a regex.
RETRY_SKIP_ABORT = r"\[r\]etry, \[s\]kip, \[a\]bort\? "

# Lua for test runbooks that report values on stdout as "@key=<json>" lines:
# emit(k, v), and try(f, ...) which emits ok and err of pcall(f, ...).
LUA_EMIT = """local function emit(k, v) print("@" .. k .. "=" .. json.encode(v)) end
local function try(f, ...)
  local ok, err = pcall(f, ...)
  emit("ok", ok)
  emit("err", ok and "" or tostring(err))
  return ok, err
end
"""

# Lua for a test runbook: peak_rss_kb(), the process's peak RSS so far (kB).
LUA_PEAK_RSS = """local function peak_rss_kb()
  return tonumber(file.read("/proc/self/status"):match("VmHWM:%s*(%d+)"))
end
"""


def emitted(stdout):
    """What a LUA_EMIT runbook emitted: {key: [value, ...]} in order."""
    out = {}
    for m in re.finditer(r"^@(\w+)=(.*)$", stdout, re.M):
        out.setdefault(m.group(1), []).append(json.loads(m.group(2)))
    return out


def runbook_path(name):
    """A test runbook under tests/runbooks/."""
    return os.path.join(TESTS_DIR, "runbooks", name)


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_pid(path):
    with open(path) as f:
        return int(f.read())


class RunbookTestCase(unittest.TestCase):
    """Each test gets its own temporary HOME, XDG dirs and working directory."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rbtest-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.env = dict(os.environ)
        self.env.update({
            "HOME": self.tmp,
            "XDG_STATE_HOME": os.path.join(self.tmp, "state"),
            "XDG_CONFIG_HOME": os.path.join(self.tmp, "config"),
            "TERM": "xterm",
        })
        for var in ("NO_COLOR", "RUNBOOK_PATH"):
            self.env.pop(var, None)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, text):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        return p

    def run_rb(self, *args, stdin=None, timeout=60, env=None, cwd=None):
        """Run runbook with stdin a pipe (not a terminal)."""
        e = dict(self.env)
        if env:
            e.update(env)
        return subprocess.run(
            [RUNBOOK, *args], input=stdin if stdin is not None else "",
            capture_output=True, text=True, timeout=timeout, env=e,
            cwd=cwd or self.tmp)

    def assertExit(self, proc, code):
        self.assertEqual(
            proc.returncode, code,
            f"expected exit {code}, got {proc.returncode}\n--- stdout\n{proc.stdout}"
            f"\n--- stderr\n{proc.stderr}")

    def events(self, transcript):
        with open(transcript) as f:
            return [json.loads(line) for line in f if line.strip()]

    def pty(self, *args, env=None, cwd=None, timeout=15):
        """runbook ARGS on a real pseudo-terminal (PtySession)."""
        return self._session(PtySession, args, env, cwd, timeout)

    def piped(self, *args, env=None, cwd=None, timeout=15):
        """runbook ARGS with stdin /dev/null, stdout and stderr on one pipe
        (PipedSession)."""
        return self._session(PipedSession, args, env, cwd, timeout)

    def _session(self, kind, args, env, cwd, timeout):
        e = dict(self.env)
        if env:
            e.update(env)
        session = kind([RUNBOOK, *args], env=e, cwd=cwd or self.tmp, timeout=timeout)
        self.addCleanup(session.close)
        return session

    def ctrlc_tree(self, start):
        """tests/runbooks/ctrlc.lua, started by start(PATH, ARGS...), until
        its shell and the shell's background sleep run: the session and
        their two pids, which are killed at cleanup whatever the test did."""
        pids = self.path("pids")
        os.makedirs(pids)
        session = start(runbook_path("ctrlc.lua"), "-p", f"dir={pids}")
        session.expect(r"\| tree-started")
        found = []
        for name in ("child.pid", "grandchild.pid"):
            pid = read_pid(os.path.join(pids, name))
            self.addCleanup(kill_quietly, pid)
            self.assertTrue(alive(pid), f"{name} {pid} should run before the test interrupts it")
            found.append(pid)
        return session, found

    def assertGone(self, pids, within=5.0, what="after runbook exited"):
        """Every pid ends within a few seconds (what says after what)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.01)
        left = [p for p in pids if alive(p)]
        self.assertEqual(left, [], f"processes still running {within} s {what}: {left}")


class Session:
    """A program the test started, its output read from fd (a pty master
    or a pipe): wait for what it prints, type to it, reap it.  timeout is
    the default of expect() and wait()."""

    def __init__(self, pid, fd, timeout=15):
        self.pid, self.fd, self.timeout = pid, fd, timeout
        self.output = ""
        self.status = None

    def _read(self, timeout):
        if self.fd < 0:         # close_terminal() was called: nothing to read
            time.sleep(min(timeout, 0.005))
            return False
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        if not data:
            raise EOFError
        self.output += data.decode("utf-8", "replace")
        return True

    def expect(self, pattern, timeout=None):
        """Wait until pattern (a regex) appears in the output after the last
        match; return the match.  Fail with the whole output on timeout."""
        timeout = timeout or self.timeout
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        start = getattr(self, "_pos", 0)
        while True:
            m = rx.search(self.output, start)
            if m:
                self._pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"expected {pattern!r} within {timeout} s; output so far:\n{self.output}")
            try:
                self._read(left)
            except EOFError:
                m = rx.search(self.output, start)
                if m:
                    self._pos = m.end()
                    return m
                raise AssertionError(
                    f"program ended before {pattern!r} appeared; output:\n{self.output}")

    def send(self, text):
        os.write(self.fd, text.encode())

    def sendline(self, text=""):
        self.send(text + "\r")

    def ctrl_c(self):
        self.send("\x03")

    def wait(self, timeout=None):
        """Read until the program ends; return its exit code, or -N when
        signal N killed it."""
        timeout = timeout or self.timeout
        deadline = time.monotonic() + timeout
        while self.status is None:
            try:
                self._read(0.05)
            except EOFError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = status
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"program still running after {timeout} s; output:\n{self.output}")
        try:
            while self._read(0.05):
                pass
        except EOFError:
            pass
        return os.waitstatus_to_exitcode(self.status)

    def close_terminal(self):
        """Close our end (the pty master, or the pipe): the terminal is gone."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.status = 0
        self.close_terminal()


class PtySession(Session):
    """A program on a real pseudo-terminal: it is the session leader with
    the pty as its controlling terminal, so ^C is delivered as SIGINT by the
    line discipline, exactly as for a person at a keyboard."""

    def __init__(self, argv, env, cwd, timeout=15):
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        super().__init__(pid, fd, timeout)


class PipedSession(Session):
    """A program with no terminal: stdin /dev/null, stdout and stderr on
    one pipe, as under cron or a CI job."""

    def __init__(self, argv, env, cwd, timeout=15):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.chdir(cwd)
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(w, 1)
                os.dup2(w, 2)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        os.close(w)
        super().__init__(pid, r, timeout)
