"""A small application service for the ops runbooks' end-to-end tests
(triage, api-issues, service-restart), managed for real through the
"commands" service manager.

    app = AppService(tmpdir)          # writes bin/{start,stop,restart,status,logs}
    port = app.add("api")             # a service on a free port
    app.start("api")                  # through bin/start, as a runbook would
    app.url("api", "/health")         # http://127.0.0.1:PORT/health
    app.commands_lua()                # the target's `commands` table, as Lua
    app.close()                       # stops every service

The server (`appserver.py serve DIR`, the system Python's http.server)
answers:
  GET  /health           200 {"status":"ok"}; 503 when DIR/unhealthy exists
                         or the process was wedged (below)
  GET  /health/detailed  {"status":..., "db":{"status":"ok","pool":{"size":10,
                         "in_use":3,"waiting":0}}, "redis":{"status":"ok"}, ...};
                         DIR/pool.json replaces the pool
  POST /admin/wedge      this process answers 503 on /health until it is
                         restarted: the failure a restart fixes (the
                         detailed health says so in its status; its db
                         and redis stay ok: they are not what failed)
  DIR/redis              HOST:PORT of a Redis the app depends on, as a Node
                         app does: every /health* request PINGs it for
                         real, /health answers 503 when it does not answer
                         PONG, and /health/detailed answers in the style
                         of a Node app (node-postgres pool counts, ok
                         booleans): {"status":"ok"|"error", "db":{"ok":true,
                         "pool":{"max":10,"total":4,"idle":1,"waiting":0}},
                         "redis":{"ok":false,"error":"connect ECONNREFUSED
                         127.0.0.1:PORT"}}, 503 when a dependency is down
  DIR/delay              seconds to wait before answering any /health* request
  DIR/hang               any /health* request hangs while this file exists
                         (up to 10 minutes): an app whose workers are stuck
It logs every request, and an ERROR line for every failing health check,
to DIR/app.log; with DIR/broken present it refuses to start (a config
error), so a restart fails the way a real one does.

The scripts take the service name: start (launch in the background, wait
until it listens, exit 1 with the log's tail if it dies first), stop,
restart, status (exit 0 if the pid is alive, 3 if not) and logs (tail -n
200 of app.log).  Each service's state is ROOT/svc/NAME/.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Also run as a script (the service itself): find the servers package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers.common import free_port  # noqa: E402

PYTHON = "/usr/bin/python3"
HERE = os.path.abspath(__file__)
SOURCE_DIR = os.environ.get("RUNBOOK_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", "..", ".."))
DEFAULT_POOL = {"size": 10, "in_use": 3, "waiting": 0}


def lua(value, indent=""):
    """A Python value as a Lua literal (for config files)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(lua(v) for v in value) + " }"
    if isinstance(value, dict):
        inner = indent + "  "
        items = [f"{inner}[{lua(k)}] = {lua(v, inner)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + indent + "}"
    raise TypeError(f"cannot write {type(value)} as Lua")


# -- the scripts -------------------------------------------------------------

PRELUDE = """#!/bin/sh
# {what}
set -u
name="${{1:?usage: $0 SERVICE}}"
d="{root}/svc/$name"
[ -d "$d" ] || {{ echo "$(basename "$0"): no service $name (no $d)" >&2; exit 2; }}
# (a zombie is not alive: nobody may reap the server once start has exited)
running() {{ kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" | cut -c1)" != Z ]; }}
alive() {{ [ -f "$d/pid" ] && running "$(cat "$d/pid")"; }}
"""

SCRIPTS = {
    "start": """{prelude}
if alive; then echo "$name already running (pid $(cat "$d/pid"))"; exit 0; fi
rm -f "$d/ready" "$d/pid"
setsid {python} {appserver} serve "$d" </dev/null >>"$d/app.log" 2>&1 &
child=$!
i=0
while [ $i -lt 100 ]; do          # up to 10 s
  if [ -f "$d/ready" ]; then echo "$name started (pid $(cat "$d/pid"), port $(cat "$d/port"))"; exit 0; fi
  if ! running $child; then
    echo "$name exited during startup; last lines of $d/app.log:" >&2
    tail -n 3 "$d/app.log" >&2
    exit 1
  fi
  sleep 0.1; i=$((i + 1))
done
echo "$name did not start listening within 10 s" >&2
exit 1
""",
    "stop": """{prelude}
if ! alive; then echo "$name not running"; rm -f "$d/pid"; exit 0; fi
pid=$(cat "$d/pid")
kill -TERM "$pid"
i=0
while running "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
running "$pid" && kill -KILL "$pid"
rm -f "$d/pid" "$d/ready"
echo "$name stopped (pid $pid)"
""",
    "restart": """{prelude}
"$(dirname "$0")/stop" "$name" || exit $?
exec "$(dirname "$0")/start" "$name"
""",
    "status": """{prelude}
if alive; then echo "$name running (pid $(cat "$d/pid"), port $(cat "$d/port"))"; exit 0; fi
echo "$name not running"
exit 3
""",
    "logs": """{prelude}
tail -n "${{2:-200}}" "$d/app.log" 2>/dev/null || true
""",
}


class AppService:
    def __init__(self, root):
        self.root = root
        self.bin = os.path.join(root, "bin")
        self.names = []
        os.makedirs(self.bin, exist_ok=True)
        for action, body in SCRIPTS.items():
            prelude = PRELUDE.format(what=f"{action} SERVICE: the test app server", root=root)
            path = os.path.join(self.bin, action)
            with open(path, "w") as f:
                f.write(body.format(prelude=prelude, python=PYTHON, appserver=HERE))
            os.chmod(path, 0o755)

    def dir(self, name):
        return os.path.join(self.root, "svc", name)

    def add(self, name="api"):
        d = self.dir(name)
        os.makedirs(d, exist_ok=True)
        port = free_port()
        with open(os.path.join(d, "port"), "w") as f:
            f.write(str(port))
        self.names.append(name)
        return port

    def port(self, name="api"):
        with open(os.path.join(self.dir(name), "port")) as f:
            return int(f.read())

    def url(self, name="api", path="/health"):
        return f"http://127.0.0.1:{self.port(name)}{path}"

    def script(self, action):
        return os.path.join(self.bin, action)

    def ctl(self, action, name="api"):
        return subprocess.run([self.script(action), name], capture_output=True, text=True, timeout=30)

    def start(self, name="api"):
        p = self.ctl("start", name)
        if p.returncode != 0:
            raise RuntimeError(f"bin/start {name} failed ({p.returncode}): {p.stdout}{p.stderr}")

    def stop(self, name="api"):
        self.ctl("stop", name)

    def pid(self, name="api"):
        """The pid of the running server, or None."""
        try:
            with open(os.path.join(self.dir(name), "pid")) as f:
                pid = int(f.read())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def flag(self, name, flag, on=True, text=""):
        path = os.path.join(self.dir(name), flag)
        if on:
            with open(path, "w") as f:
                f.write(text)
        elif os.path.exists(path):
            os.unlink(path)

    def set_unhealthy(self, name="api", on=True):
        self.flag(name, "unhealthy", on)

    def set_broken(self, name="api", on=True):
        self.flag(name, "broken", on)

    def set_delay(self, name="api", seconds=0.0):
        self.flag(name, "delay", seconds > 0, str(seconds))

    def set_hang(self, name="api", on=True):
        self.flag(name, "hang", on)

    def set_pool(self, name="api", **pool):
        self.flag(name, "pool.json", True, json.dumps(pool))

    def depend_on_redis(self, hostport, name="api"):
        """The app PINGs the Redis at HOST:PORT on every health request."""
        self.flag(name, "redis", True, hostport)

    def wedge(self, name="api"):
        import urllib.request
        req = urllib.request.Request(self.url(name, "/admin/wedge"), data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            r.read()

    def log(self, name="api"):
        try:
            with open(os.path.join(self.dir(name), "app.log")) as f:
                return f.read()
        except OSError:
            return ""

    def commands(self):
        """The target's commands table (argv lists, %s = the service)."""
        return {a: [self.script(a), "%s"] for a in ("start", "stop", "restart", "status", "logs")}

    def close(self):
        for name in self.names:
            pid = self.pid(name)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


# -- what the three test files share -------------------------------------------

class OpsFixture:
    """A mixin for harness.RunbookTestCase: an AppService with its services
    started, a config file whose target `staging` manages them through the
    "commands" manager, and a notify channel (a command) that appends
    "SEVERITY|TEXT" lines to a file.

        class T(OpsFixture, RunbookTestCase):
            def setUp(self):
                super().setUp()
                self.setup_ops(db=PG.url(), redis=RS.url(db=2))
    """

    TARGET = "staging"

    def setup_ops(self, services=("api",), **target):
        self.app = AppService(self.path("app"))
        self.addCleanup(self.app.close)
        for name in services:
            self.app.add(name)
            self.app.start(name)
        self.notify_file = self.path("notify.txt")
        self.env["RUNBOOK_PATH"] = os.path.join(SOURCE_DIR, "runbooks")
        # the app server stamps its log lines in UTC with no zone, which a
        # reader takes as local time
        self.env["TZ"] = "UTC"
        self.runs = 0
        base = {"services": list(services), "manager": "commands", "commands": self.app.commands()}
        if services:
            base["health"] = [self.app.url(services[0], "/health")]
            base["detailed_health"] = self.app.url(services[0], "/health/detailed")
        base.update(target)
        self.write_config(base)

    def write_config(self, staging, **more_targets):
        targets = {self.TARGET: staging}
        targets.update(more_targets)
        sh = (f'printf "%s|" "$RUNBOOK_NOTIFY_SEVERITY" >> {self.notify_file}; '
              f'cat >> {self.notify_file}; echo >> {self.notify_file}')
        notify = {"ops": {"command": ["/bin/sh", "-c", sh]}}
        self.target = staging
        return self.write("config/runbook/config.lua",
                          f"targets = {lua(targets)}\nnotify = {lua(notify)}\n")

    def notices(self):
        """[(severity, text)] as the notify channel received them."""
        try:
            with open(self.notify_file) as f:
                return [tuple(line.rstrip("\n").split("|", 1)) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def rb(self, *args, answers=None, expect=0, target=True, timeout=60):
        """runbook run ARGS... --target staging, with a fresh transcript."""
        self.runs += 1
        self.transcript = self.path(f"t{self.runs}.jsonl")
        extra = ["--transcript", self.transcript]
        if target:
            extra += ["--target", self.TARGET]
        if answers is not None:
            extra += ["--answers", self.write(f"answers{self.runs}.txt", answers)]
        p = self.run_rb("run", *args, *extra, timeout=timeout)
        if expect is not None:
            self.assertExit(p, expect)
        return p

    def ev(self, kind=None, **match):
        out = []
        for e in self.events(self.transcript):
            if kind is not None and e["event"] != kind:
                continue
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def step_end(self, step_id):
        ends = self.ev("step.end", id=step_id)
        self.assertTrue(ends, f"no step.end for {step_id!r} in the transcript")
        return ends[-1]

    def messages(self, step_id=None):
        """The log lines (log.* and print) of a step, or of the run."""
        return [e["message"] for e in self.ev("log") if step_id is None or e.get("step") == step_id]

    def assertLogged(self, text, step_id=None):
        msgs = self.messages(step_id)
        self.assertTrue(any(text in m for m in msgs),
                        f"expected a log line containing {text!r}"
                        f"{' in step ' + step_id if step_id else ''}; logged:\n" + "\n".join(msgs))


# -- the server ----------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    server_version = "appserver/1.0"

    def log_message(self, fmt, *args):
        self.server.log("INFO", fmt % args)

    def _reply(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _delay(self):
        try:
            with open(os.path.join(self.server.dir, "delay")) as f:
                time.sleep(min(float(f.read() or 0), 30))
        except (OSError, ValueError):
            pass

    def _hang(self):
        flag = os.path.join(self.server.dir, "hang")
        deadline = time.monotonic() + 600
        while os.path.exists(flag) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _healthy(self):
        if self.server.wedged:
            return False, "worker threads wedged (restart needed)"
        if os.path.exists(os.path.join(self.server.dir, "unhealthy")):
            return False, "database connection refused"
        return True, ""

    def _redis(self):
        """None when the app depends on no Redis, else (ok, error) of a
        real PING to it."""
        try:
            with open(os.path.join(self.server.dir, "redis")) as f:
                host, port = f.read().strip().rsplit(":", 1)
        except (OSError, ValueError):
            return None
        try:
            with socket.create_connection((host, int(port)), timeout=2) as c:
                c.sendall(b"PING\r\n")
                reply = c.recv(64)
        except ConnectionRefusedError:
            return False, f"connect ECONNREFUSED {host}:{port}"
        except OSError as e:
            return False, f"redis {host}:{port}: {e}"
        if not reply.startswith(b"+PONG"):
            return False, f"redis {host}:{port} answered {reply[:40]!r}"
        return True, ""

    def _node_detailed(self, ok, why, redis):
        """The detailed health as a Node app with pg and ioredis writes it."""
        redis_ok, redis_error = redis
        doc = {"status": "ok" if ok and redis_ok else "error",
               "uptime": round(time.monotonic() - self.server.started, 3),
               "db": {"ok": True, "pool": {"max": 10, "total": 4, "idle": 1, "waiting": 0}},
               "redis": {"ok": redis_ok}}
        if not redis_ok:
            doc["redis"]["error"] = redis_error
        if not ok:
            doc["error"] = why
        return self._reply(200 if ok and redis_ok else 503, doc)

    def do_GET(self):
        if self.path == "/health":
            self._hang()
            self._delay()
            ok, why = self._healthy()
            redis = self._redis()
            if ok and redis is not None and not redis[0]:
                ok, why = False, "redis: " + redis[1]
            if not ok:
                self.server.log("ERROR", f"health check failing: {why}")
                return self._reply(503, {"status": "unhealthy", "error": why})
            return self._reply(200, {"status": "ok"})
        if self.path == "/health/detailed":
            self._hang()
            self._delay()
            ok, why = self._healthy()
            redis = self._redis()
            if redis is not None:
                return self._node_detailed(ok, why, redis)
            db_down = os.path.exists(os.path.join(self.server.dir, "unhealthy"))
            pool = dict(DEFAULT_POOL)
            try:
                with open(os.path.join(self.server.dir, "pool.json")) as f:
                    pool.update(json.load(f))
            except (OSError, ValueError):
                pass
            doc = {"status": "ok" if ok else "degraded", "version": "1.4.2", "pid": os.getpid(),
                   "uptime": round(time.monotonic() - self.server.started, 3),
                   "db": {"status": "down" if db_down else "ok", "pool": pool},
                   "redis": {"status": "ok"}}
            if not ok and not db_down:
                doc["error"] = why          # wedged: the app itself, not a dependency
            return self._reply(200 if ok else 503, doc)
        self._reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path == "/admin/wedge":
            self.server.wedged = True
            self.server.log("ERROR", "worker threads wedged")
            return self._reply(200, {"wedged": True})
        self._reply(404, {"error": "not found"})


class AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory, port):
        self.dir = directory
        self.wedged = False
        self.started = time.monotonic()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)

    def log(self, level, msg):
        with self.lock:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            sys.stderr.write(f"{stamp} {level} [{os.getpid()}] {msg}\n")
            sys.stderr.flush()


def serve(directory):
    if os.path.exists(os.path.join(directory, "broken")):
        sys.stderr.write(f"FATAL config error: cannot parse {directory}/app.conf (line 3: "
                         f"unexpected '}}')\n")
        sys.exit(1)
    with open(os.path.join(directory, "port")) as f:
        port = int(f.read())
    server = AppServer(directory, port)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    with open(os.path.join(directory, "pid"), "w") as f:
        f.write(str(os.getpid()))
    with open(os.path.join(directory, "ready"), "w") as f:
        f.write(str(os.getpid()))
    server.log("INFO", f"listening on 127.0.0.1:{port}")
    server.serve_forever(poll_interval=0.1)
    server.log("INFO", "stopped")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit("usage: appserver.py serve DIR")
