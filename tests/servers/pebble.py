"""A real pebble (Let's Encrypt's test ACME server, Debian's /usr/bin/pebble)
on loopback, and certbot set up against it the way a user would.

    with PebbleServer() as pb:
        pb.directory                 # https://127.0.0.1:PORT/dir
        pb.env()                     # REQUESTS_CA_BUNDLE for certbot (pebble's server CA)
        pb.certbot_args()            # --server URL --config-dir/--work-dir/--logs-dir
        pb.obtain("localhost")       # certbot certonly: an account and a first certificate
        pb.live("localhost")         # DIR/certbot/config/live/localhost/
        pb.root_ca()                 # PEM of the CA that issues (from the management port)
        pb.log()                     # what pebble printed so far

pebble runs with its own JSON config in a temporary directory under
TMPDIR: listenAddress and managementListenAddress on free ports of
127.0.0.1, httpPort/tlsPort (where it would validate challenges) on free
ports too, and a TLS certificate for 127.0.0.1/localhost made here with
the openssl CLI.  PEBBLE_VA_ALWAYS_VALID=1 skips challenge validation,
PEBBLE_VA_NOSLEEP=1 its random sleeps, PEBBLE_WFE_NONCEREJECT=0 its
random bad nonces (certbot retries them, but a test should not depend on
it).  Certificates it issues are valid 5 years; its root and intermediate
are new at every start.  stop() kills it and removes the directory.

The first certificate is obtained with `certbot certonly --webroot`
(with validation always valid, nothing has to be served): certbot writes
the renewal config (server, dirs, authenticator) that a later `certbot
renew` reads, as it does for a user.
"""
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers.common import Stoppable, free_port, stop_process  # noqa: E402

PEBBLE = os.environ.get("RB_PEBBLE", "/usr/bin/pebble")
CERTBOT = os.environ.get("RB_CERTBOT", "/usr/bin/certbot")


def openssl(d, *args):
    subprocess.run(["openssl", *args], cwd=d, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


def make_server_cert(d):
    """pebble's own HTTPS certificate: a CA (server-ca.pem, what certbot
    must trust) and a certificate it signed for 127.0.0.1 and localhost."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(d, "req", "-x509", *ec, "-keyout", "server-ca.key", "-out", "server-ca.pem",
            "-days", "2", "-subj", "/O=runbook tests/CN=pebble server CA")
    openssl(d, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    openssl(d, "x509", "-req", "-in", "server.csr", "-CA", "server-ca.pem", "-CAkey",
            "server-ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "ext.cnf")


class PebbleServer(Stoppable):
    def __init__(self, start=True):
        self.proc = None
        self.dir = None
        if start:
            self.start()

    def start(self):
        if self.proc is not None:
            raise RuntimeError("PebbleServer: already started")
        self.dir = tempfile.mkdtemp(prefix="pebble-")
        make_server_cert(self.dir)
        self.port, self.mgmt_port = free_port(), free_port()
        cfg = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": os.path.join(self.dir, "server.pem"),
            "privateKey": os.path.join(self.dir, "server.key"),
            "httpPort": free_port(), "tlsPort": free_port(),
            "ocspResponderURL": "", "externalAccountBindingRequired": False}}
        self.config = os.path.join(self.dir, "pebble-config.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ, PEBBLE_VA_ALWAYS_VALID="1", PEBBLE_VA_NOSLEEP="1",
                   PEBBLE_WFE_NONCEREJECT="0")
        self.log_path = os.path.join(self.dir, "pebble.log")
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen([PEBBLE, "-config", self.config], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=self.dir)
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self.ca_bundle = os.path.join(self.dir, "server-ca.pem")
        self._wait_ready()
        self.certbot_dir = os.path.join(self.dir, "certbot")
        for sub in ("config", "work", "logs", "webroot"):
            os.makedirs(os.path.join(self.certbot_dir, sub), exist_ok=True)
        return self

    def _wait_ready(self):
        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pebble exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.directory, context=ctx, timeout=2) as r:
                    json.load(r)
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("pebble did not answer on its directory within 20 s")
                time.sleep(0.1)

    def env(self):
        """What certbot needs in its environment to trust pebble."""
        return {"REQUESTS_CA_BUNDLE": self.ca_bundle}

    def dirs(self):
        c = self.certbot_dir
        return ["--config-dir", os.path.join(c, "config"), "--work-dir", os.path.join(c, "work"),
                "--logs-dir", os.path.join(c, "logs")]

    def certbot_args(self):
        return ["--server", self.directory, *self.dirs()]

    def obtain(self, domain="localhost"):
        """An account and a first certificate, with certbot certonly."""
        argv = [CERTBOT, "certonly", "--non-interactive", *self.certbot_args(),
                "--register-unsafely-without-email", "--agree-tos", "--webroot",
                "-w", os.path.join(self.certbot_dir, "webroot"), "-d", domain]
        p = subprocess.run(argv, env=dict(os.environ, **self.env()), capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError(f"certbot certonly failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return self.live(domain)

    def live(self, domain="localhost"):
        return os.path.join(self.certbot_dir, "config", "live", domain)

    def root_ca(self):
        """The root that issues (pebble makes a new one at every start)."""
        ctx = ssl.create_default_context(cafile=self.ca_bundle)
        url = f"https://127.0.0.1:{self.mgmt_port}/roots/0"
        with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
            return r.read().decode()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc, grace=0)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, True)
            self.dir = None


if __name__ == "__main__":
    with PebbleServer() as pb:
        print(json.dumps({"directory": pb.directory, "ca_bundle": pb.ca_bundle,
                          "args": pb.certbot_args()}), flush=True)
        try:
            pb.proc.wait()
        except KeyboardInterrupt:
            pass
