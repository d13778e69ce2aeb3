"""A real PM2 (7.0.4, installed by scripts/setup into .tools/ of the
source dir) managing small Node HTTP apps, for the service-restart and
triage tests.

    with PM2Server() as pm:
        port = pm.add("api", env={"API_SECRET": "..."})   # an app on a free port
        pm.start()                   # pm2 start ECOSYSTEM; waits for /health
        pm.pid("api")                # from pm2 jlist
        pm.url("api", "/health")
        pm.kill()                    # pm2 kill: the daemon and its apps are gone
        pm.target()                  # the target keys a runbook config needs

Everything lives in a fresh temporary directory under TMPDIR: PM2_HOME
(the daemon's socket, pid file and logs), the ecosystem file and the app.
Any pm2 command starts a daemon when none runs (even `pm2 kill` and
`pm2 --version`), so this module checks PM2_HOME/pm2.pid before asking
pm2 anything; stop() runs `pm2 kill` only when a daemon runs, then kills
whatever still carries this PM2_HOME in its environment and removes the
directory.

The app (APP_JS, node's http module): GET /health answers 200
{"status":"ok","pid":N}; it logs coloured lines (ANSI escapes) to stdout
as real apps do; with CRASH=1 in its environment it prints an error to
stderr and exits at once, so pm2 restarts it over and over (its ecosystem
entry sets max_restarts high so pm2 keeps trying, and says "online").
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers.common import Stoppable, free_port  # noqa: E402

SOURCE_DIR = os.environ.get("RUNBOOK_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PM2 = os.environ.get("RB_PM2") or os.path.join(SOURCE_DIR, ".tools", "node_modules", ".bin", "pm2")

APP_JS = r"""// A small HTTP app for runbook's tests, run under pm2 or supervisord.
const http = require('http');
const port = Number(process.env.PORT);
const colour = (code, text) => `\x1b[${code}m${text}\x1b[39m`;
if (process.env.CRASH === '1') {
  console.error(`${colour(31, 'FATAL')} cannot read config: /srv/app/config.json: no such file`);
  process.exit(1);
}
const server = http.createServer((req, res) => {
  const ok = req.url === '/health';
  res.writeHead(ok ? 200 : 404, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(ok ? { status: 'ok', pid: process.pid } : { error: 'not found' }));
  console.log(`${colour(32, 'INFO')} ${req.method} ${req.url} ${res.statusCode}`);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`${colour(32, 'INFO')} listening on 127.0.0.1:${port} (pid ${process.pid})`);
});
// (exit at once: server.close() would wait for idle keep-alive clients)
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
"""


def write_app(directory):
    path = os.path.join(directory, "app.js")
    with open(path, "w") as f:
        f.write(APP_JS)
    return path


def health(url, timeout=2):
    """The /health answer as a dict, or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read()) if r.status == 200 else None
    except (OSError, ValueError):
        return None


def processes_with_env(var, value):
    """Pids of the processes whose environment has var=value."""
    mark = f"{var}={value}".encode()
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if mark in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


class PM2Server(Stoppable):
    def __init__(self):
        if not os.access(PM2, os.X_OK):
            raise RuntimeError(f"pm2 not found at {PM2}: scripts/setup installs it into .tools/")
        self.dir = tempfile.mkdtemp(prefix="rbpm2-")
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        self.ecosystem = os.path.join(self.dir, "ecosystem.config.js")
        self.app_js = write_app(self.dir)
        self.apps = {}

    def add(self, name="api", crash=False, env=None):
        """An app entry in the ecosystem file; returns its port."""
        port = free_port()
        app_env = {"PORT": str(port), **(env or {})}
        if crash:
            app_env["CRASH"] = "1"
        self.apps[name] = {"name": name, "script": self.app_js, "cwd": self.dir, "env": app_env,
                           "autorestart": True, "max_restarts": 1000000 if crash else 16,
                           "crash": crash, "port": port}
        self.write_ecosystem()
        return port

    def write_ecosystem(self):
        apps = [{k: v for k, v in a.items() if k not in ("crash", "port")} for a in self.apps.values()]
        with open(self.ecosystem, "w") as f:
            f.write("module.exports = " + json.dumps({"apps": apps}, indent=2) + ";\n")

    def env(self):
        e = dict(os.environ)
        e["PM2_HOME"] = self.home
        return e

    def pm2(self, *args, check=True, timeout=60):
        p = subprocess.run([PM2, *args, "--no-color"], capture_output=True, text=True, env=self.env(),
                           cwd=self.dir, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"pm2 {' '.join(args)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
        return p

    def daemon_pid(self):
        """The pid of this PM2_HOME's daemon, or None (asks pm2 nothing)."""
        try:
            with open(os.path.join(self.home, "pm2.pid")) as f:
                pid = int(f.read())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def start(self, only=None, timeout=20):
        """pm2 start ECOSYSTEM [--only NAME]; waits until every healthy app
        answers /health."""
        args = ["start", self.ecosystem] + (["--only", only] if only else [])
        self.pm2(*args)
        for name, a in self.apps.items():
            if not a["crash"] and (only is None or only == name):
                self.wait_healthy(name, timeout)
        return self

    def wait_healthy(self, name="api", timeout=20):
        deadline = time.monotonic() + timeout
        while health(self.url(name)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer /health within {timeout} s; "
                                   f"pm2 logs:\n{self.pm2('logs', name, '--nostream', check=False).stdout}")
            time.sleep(0.1)

    def jlist(self):
        """pm2 jlist, or [] with no daemon (without starting one)."""
        if self.daemon_pid() is None:
            return []
        out = self.pm2("jlist").stdout
        return json.loads(out[out.index("["):])

    def proc(self, name="api"):
        for p in self.jlist():
            if p["name"] == name:
                return p
        return None

    def pid(self, name="api"):
        p = self.proc(name)
        return p["pid"] if p and p["pid"] else None

    def url(self, name="api", path="/health"):
        return f"http://127.0.0.1:{self.apps[name]['port']}{path}"

    def target(self, services=None):
        return {"manager": "pm2", "services": list(services or self.apps), "pm2_bin": PM2,
                "pm2_home": self.home, "pm2_ecosystem": self.ecosystem}

    def kill(self):
        """pm2 kill: the daemon and every app it manages stop."""
        if self.daemon_pid() is not None:
            self.pm2("kill", check=False)

    def stop(self):
        if self.dir is None:
            return
        self.kill()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = processes_with_env("PM2_HOME", self.home)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            if pids:
                time.sleep(0.5)
        shutil.rmtree(self.dir, True)
        self.dir = None


if __name__ == "__main__":
    with PM2Server() as pm:
        pm.add("api")
        pm.start()
        print(json.dumps(pm.target()), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
