"""A throwaway redis-server for tests and benchmarks.

    with RedisServer(password="s3cret") as rs:
        rs.url()                 # redis://:s3cret@127.0.0.1:PORT
        rs.command("GET", "k")   # a direct check, without the runbook binary

The server runs in a fresh temporary directory on a free port of
127.0.0.1, with persistence off (`--save '' --appendonly no`), and is
stopped (SHUTDOWN NOSAVE, then SIGKILL) and removed afterwards.  With a
password it is `requirepass`, and USER/USER_PASSWORD is an ACL user too.

Also here: silent_listener() (accepts and never answers) and
full_listener() (its accept queue is full, so a connect never completes),
for the timeout tests.

Run it as a script to start a server by hand:
    /usr/bin/python3 tests/servers/redis.py [PASSWORD]   # prints the URL
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# Also run as a script: find the servers package from this file.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers.common import Stoppable, free_port, log_tail, stop_process  # noqa: E402
from servers.common import SilentListener as silent_listener  # noqa: E402,F401 (re-exported for the tests)
from servers.common import StalledListener as full_listener  # noqa: E402,F401 (re-exported for the tests)

REDIS_SERVER = os.environ.get("RB_REDIS_SERVER", "/usr/bin/redis-server")
USER = "ops"
USER_PASSWORD = "ops-Pa55-w0rd"





def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class ReplyError(Exception):
    pass


def parse(f):
    """One RESP2 reply from a binary file object; error replies are
    returned as ReplyError instances (not raised)."""
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return ReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [parse(f) for _ in range(n)]
    raise ConnectionError(f"not RESP: {line!r}")


class RedisServer(Stoppable):
    def __init__(self, password=None, start=True):
        self.password = password
        self.host = "127.0.0.1"
        self.port = None
        self.dir = None
        self.proc = None
        if start:
            self.start()

    def url(self, db=None, password=True, user=None, query=None):
        auth = ""
        if user:
            auth = f"{user}:{USER_PASSWORD}@"
        elif password and self.password:
            auth = f":{self.password}@"
        u = f"redis://{auth}{self.host}:{self.port}"
        if db is not None:
            u += f"/{db}"
        if query:
            u += "?" + query
        return u

    def log_tail(self, n=20):
        return log_tail(os.path.join(self.dir, "redis.log"), n)

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="rbredis-")
        for _ in range(5):      # another process may take the free port first
            self.port = free_port()
            argv = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host,
                    "--save", "", "--appendonly", "no", "--dir", self.dir,
                    "--logfile", os.path.join(self.dir, "redis.log"),
                    "--daemonize", "no", "--databases", "16"]
            if self.password:
                argv += ["--requirepass", self.password,
                         "--user", USER, "on", f">{USER_PASSWORD}", "~*", "&*", "+@all"]
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, cwd=self.dir)
            if self._wait_ready(5.0):
                return self
            stop_process(self.proc, grace=0)
            if "Address already in use" not in self.log_tail():
                break
        log = self.log_tail()
        shutil.rmtree(self.dir, True)
        self.dir = None
        raise RuntimeError(f"redis-server did not start:\n{log}")

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.command("PING") == "PONG":
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def command(self, *args, db=0, timeout=5):
        """Run one command on a fresh connection (as the default user)."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            f = s.makefile("rb")
            pre = []
            if self.password:
                pre.append(("AUTH", self.password))
            if db:
                pre.append(("SELECT", db))
            for p in pre:
                s.sendall(encode(*p))
                r = parse(f)
                if isinstance(r, ReplyError):
                    raise r
            s.sendall(encode(*args))
            return parse(f)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.command("SHUTDOWN", "NOSAVE", timeout=2)
            except (OSError, ConnectionError):
                pass
            stop_process(self.proc, asked=3, grace=0)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, True)
            self.dir = None


if __name__ == "__main__":
    import sys
    with RedisServer(password=sys.argv[1] if len(sys.argv) > 1 else None) as rs:
        print(rs.url(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


# docs/room.md's ACL for the incident room, one user per person: read on
# every room key, write on the shared ones and on the user's own by: keys
# (approvals), the publisher's MULTI/EXEC.  "user NAME on >PW rules...".
ROOM_ACL = ("user {name} on >{pw} resetkeys %R~runbook:room:* ~runbook:room:run:* "
            "~runbook:room:info:* ~runbook:room:runs ~runbook:room:in:* "
            "~runbook:room:by:{name}:* resetchannels -@all +@connection +@read +@write "
            "+@stream +@sortedset +@hash +@transaction -@dangerous +acl|whoami")
