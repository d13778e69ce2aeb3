"""What every test server module needs: a free port, a way to stop the
server process it started, close() and `with` for its class, a listener
that accepts and never answers, and one whose accept queue is full."""
import fcntl
import os
import random
import socket
import subprocess
import threading
import time


_PORT_LOCKS = "/tmp/rb-port-locks"
_PORT_LOW = 20000     # free_port picks from here to just below the ephemeral range
_held = []      # lock files of the ports this process took, open until it exits


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port on 127.0.0.1 for a server a test is about to start.  A port
    the kernel hands out with bind(0) comes from the ephemeral range, the
    same range every outgoing connection takes its source port from, so in
    a parallel run a client elsewhere may hold it by the time the server
    binds (PostgreSQL then fails with "Address already in use").  This one
    comes from below that range, and is claimed with a lock file held
    until this process exits, so that two tests do not take the same one."""
    os.makedirs(_PORT_LOCKS, mode=0o1777, exist_ok=True)
    high = _ephemeral_low() - 1
    for _ in range(200):
        port = random.randint(_PORT_LOW, high)
        fd = os.open(os.path.join(_PORT_LOCKS, str(port)), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                os.close(fd)
                continue
        _held.append(fd)
        return port
    raise RuntimeError(f"no free port found in {_PORT_LOW}-{high} after 200 tries")


def log_tail(path, n=20, missing="(no log)"):
    """The last n lines of a server's log, for an error message; missing
    when it cannot be read."""
    try:
        with open(path) as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return missing


def _ended(proc, seconds):
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def stop_process(proc, asked=0, grace=5):
    """Ends a server process a test started and reaps it, so that neither
    a zombie nor an orphan outlives the test (tests/leaks.py looks).  One
    that was asked to shut down (SHUTDOWN, `supervisorctl shutdown`, a
    signal to its group) gets `asked` seconds first; then SIGTERM and
    `grace` seconds (none with grace=0); then SIGKILL.  None, or a process
    that already ended, is fine."""
    if proc is None or proc.poll() is not None:
        return
    if asked and _ended(proc, asked):
        return
    if grace:
        proc.terminate()
        if _ended(proc, grace):
            return
    proc.kill()
    proc.wait(10)


class Stoppable:
    """close() and `with` for a class that defines stop(): the servers and
    the listeners below."""

    def close(self):
        self.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class SilentListener(Stoppable):
    """A TCP port on 127.0.0.1 that accepts and never says a word: a client
    connects, then waits for a banner or a reply until its own timeout.
    Subclasses may override answer(conn) to say something first."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.1)
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.answer(conn)

    def answer(self, conn):
        self.held.append(conn)

    def stop(self):
        self.stopped = True
        self.thread.join(5)
        for c in self.held:
            c.close()
        self.sock.close()


class StalledListener(Stoppable):
    """A listener whose accept queue is full: Linux drops further SYNs, so a
    TCP connect to it hangs until the client's own timeout."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        for _ in range(8):      # fill the queue; stop once a connect stalls
            c = socket.socket()
            c.setblocking(False)
            rc = c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
            if rc not in (0, 115):      # EINPROGRESS
                break
            time.sleep(0.02)
            try:
                c.getpeername()
            except OSError:
                break           # still connecting: the queue is full

    def stop(self):
        for c in self.fillers:
            c.close()
        self.sock.close()
