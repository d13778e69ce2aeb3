"""A real supervisord (supervisor 4.2, Debian) for the service-restart and
triage tests, running the same small Node app as tests/servers/pm2.py.

    with SupervisordServer() as sv:
        port = sv.add("api")          # a [program:api] on a free port
        sv.start()                    # supervisord -n -c CONF; waits for RUNNING and /health
        sv.ctl("status", "api")       # supervisorctl -c CONF status api
        sv.pid("api")
        sv.target()                   # the target keys a runbook config needs

Its config, unix socket, pidfile and logs (its own and each program's)
live in a fresh temporary directory under TMPDIR; supervisord runs in the
foreground as this process's child, and stop() shuts it down
(`supervisorctl shutdown`, then SIGTERM, SIGKILL), which stops its
programs, and removes the directory.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers.common import Stoppable, free_port, log_tail, stop_process  # noqa: E402
from servers.pm2 import health, write_app  # noqa: E402

SUPERVISORD = os.environ.get("RB_SUPERVISORD", "/usr/bin/supervisord")
SUPERVISORCTL = os.environ.get("RB_SUPERVISORCTL", "/usr/bin/supervisorctl")
NODE = os.environ.get("RB_NODE", "/usr/bin/node")

CONF = """[unix_http_server]
file={dir}/supervisor.sock
chmod=0700

[supervisord]
pidfile={dir}/supervisord.pid
logfile={dir}/supervisord.log
childlogdir={dir}
nodaemon=true

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock
"""

PROGRAM = """
[program:{name}]
command={node} {app}
directory={dir}
environment={env}
autostart=true
autorestart=true
startsecs=1
startretries=3
stopsignal=TERM
stdout_logfile={dir}/{name}.out.log
stderr_logfile={dir}/{name}.err.log
"""


def env_line(env):
    return ",".join(f'{k}="{v}"' for k, v in env.items())


class SupervisordServer(Stoppable):
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rbsv-")
        self.conf = os.path.join(self.dir, "supervisord.conf")
        self.app_js = write_app(self.dir)
        self.apps = {}
        self.proc = None

    def add(self, name="api", crash=False, env=None):
        port = free_port()
        app_env = {"PORT": str(port), **(env or {})}
        if crash:
            app_env["CRASH"] = "1"
        self.apps[name] = {"port": port, "env": app_env, "crash": crash}
        return port

    def write_conf(self):
        text = CONF.format(dir=self.dir)
        for name, a in self.apps.items():
            text += PROGRAM.format(name=name, node=NODE, app=self.app_js, dir=self.dir, env=env_line(a["env"]))
        with open(self.conf, "w") as f:
            f.write(text)

    def ctl(self, *args, timeout=30):
        return subprocess.run([SUPERVISORCTL, "-c", self.conf, *args], capture_output=True, text=True,
                              timeout=timeout)

    def status(self, name="api"):
        """(STATE, pid or None) as supervisorctl status prints them."""
        out = self.ctl("status", name).stdout
        m = re.match(rf"^{re.escape(name)}\s+(\S+)\s*(.*)$", out.strip())
        if not m:
            return None, None
        pid = re.search(r"pid (\d+)", m.group(2))
        return m.group(1), int(pid.group(1)) if pid else None

    def pid(self, name="api"):
        state, pid = self.status(name)
        return pid if state == "RUNNING" else None

    def start(self, timeout=20):
        self.write_conf()
        self.proc = subprocess.Popen([SUPERVISORD, "-n", "-c", self.conf], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=self.dir)
        deadline = time.monotonic() + timeout
        for name, a in self.apps.items():
            if a["crash"]:
                continue
            while self.pid(name) is None or health(self.url(name)) is None:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.log_tail()
                    self.stop()
                    raise RuntimeError(f"supervisord: {name} not RUNNING and healthy within {timeout} s:\n{log}")
                time.sleep(0.1)
        return self

    def log_tail(self, n=20):
        return log_tail(os.path.join(self.dir, "supervisord.log"), n)

    def url(self, name="api", path="/health"):
        return f"http://127.0.0.1:{self.apps[name]['port']}{path}"

    def target(self, services=None):
        return {"manager": "supervisor", "services": list(services or self.apps),
                "supervisor_conf": self.conf, "supervisorctl_bin": SUPERVISORCTL}

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.ctl("shutdown", timeout=10)
            except subprocess.TimeoutExpired:
                pass        # supervisord still stopping a program: stop_process ends it
            stop_process(self.proc, asked=10)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, True)
            self.dir = None


if __name__ == "__main__":
    with SupervisordServer() as sv:
        sv.add("api")
        sv.start()
        print(sv.conf, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
