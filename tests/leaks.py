"""The suite's own temporary directory, and the check that nothing the
tests started outlived them.

ctest gives every test TMPDIR=<dir>, so each server a test starts
(PostgreSQL, redis-server, sshd, the HTTP(S) servers) and each test's
scratch directory lives under it, and every process a test starts carries
it in its environment.

    leaks.py --setup DIR   (first)  empty DIR, or create it (mode 0755, so
                                    the postgres user can reach its clusters)
    leaks.py --check DIR   (last)   fail, naming them, if a process started
                                    under DIR is still running or anything
                                    is left in DIR; then stop and remove them
                                    so the next run starts clean
"""
import os
import shutil
import signal
import sys
import time


def processes_under(root):
    """(pid, command line) of every process a test started: its environment
    has TMPDIR=root (redis-server rewrites its command line, so that alone
    would miss it), its command line names a path under root, or its working
    directory is under root (a server started with its own environment,
    whose directory may be deleted already: three redis-servers outlived a
    crashed run that way)."""
    mark = b"TMPDIR=" + root.encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if mark in env or root + "/" in line or cwd == root or cwd.startswith(root + "/"):
            found.append((int(pid), line))
    return found


def stop(pids):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except OSError:
                pass
        if not alive:
            return
        time.sleep(1)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("--setup", "--check"):
        print(__doc__, file=sys.stderr)
        return 2
    root = os.path.realpath(argv[2])
    if argv[1] == "--setup":
        stop([pid for pid, _ in processes_under(root)])
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        os.chmod(root, 0o755)
        return 0
    procs = processes_under(root)
    left = sorted(os.listdir(root)) if os.path.isdir(root) else []
    for pid, line in procs:
        print(f"still running after the tests: pid {pid}: {line[:300]}")
    for name in left:
        print(f"left behind in {root}: {name}")
    stop([pid for pid, _ in procs])
    shutil.rmtree(root, ignore_errors=True)
    if procs or left:
        print(f"{len(procs)} process(es) and {len(left)} file(s) outlived the tests that made them")
        return 1
    print(f"no process and no file outlived the tests under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
