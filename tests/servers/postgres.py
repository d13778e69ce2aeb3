"""A throwaway PostgreSQL 15 cluster for tests and benchmarks.

    with PostgresServer() as pg:
        url = pg.url()                      # scram-sha-256 password user
        pg.psql("select 1")                 # as the superuser, over the socket

The cluster lives in a fresh temporary directory (data, unix socket, log,
TLS certificate), listens on a free port on 127.0.0.1 and is stopped with
`pg_ctl stop -m immediate` and removed afterwards.  PostgreSQL refuses to
run as root, so when the tests run as root every server command runs as the
`postgres` user and the directory is handed to it.

Roles: USER/PASSWORD log in with scram-sha-256 over TCP; TRUST_USER logs in
without a password (pg_hba `trust`); both own database DB.  With tls=True
(the default) the server offers TLS with a self-signed certificate, so
sslmode=prefer/require work and a client that insists on verifying against
another CA fails the handshake.

Also here: SilentListener (accepts TCP connections and never answers, so
a client's connect timeout must fire) and NoTLSListener (answers the TLS
request with PostgreSQL's "N", as a server without TLS does).

Run it as a script to start a cluster by hand:
    /usr/bin/python3 tests/servers/postgres.py [--no-tls]   # prints the URL; Ctrl-C stops
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

# Also run as a script: find the servers package from this file.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers.common import SilentListener, Stoppable, free_port, log_tail  # noqa: E402,F401 (re-exported for the tests)

PG_BIN = os.environ.get("RB_PG_BIN", "/usr/lib/postgresql/15/bin")
USER = "runbook"
PASSWORD = "Pa55-w0rd-$ecret"
TRUST_USER = "trusted"
DB = "runbook"




class PostgresServer(Stoppable):
    def __init__(self, tls=True, start=True):
        self.tls = tls
        self.host = "127.0.0.1"
        self.port = None
        self.dir = None
        self.as_root = os.geteuid() == 0
        if start:
            self.start()

    # -- running commands as the cluster's owner ---------------------------
    def _run(self, argv, check=True, timeout=60, input=None):
        kw = {}
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           input=input, cwd=self.dir, **kw)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {p.returncode}:\n"
                               f"{p.stdout}\n{p.stderr}\n{self.log_tail()}")
        return p

    def _chown(self, path):
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _write(self, name, text, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        self._chown(path)
        return path

    # -- life cycle ----------------------------------------------------------
    def start(self):
        if self.dir is not None:
            raise RuntimeError(f"this PostgresServer already runs in {self.dir}: a second start "
                               "would leave that cluster running")
        self.dir = tempfile.mkdtemp(prefix="rb-pg-")
        os.chmod(self.dir, 0o755)       # the test user reads the log and certificate
        self._chown(self.dir)
        try:
            self._init()
            self._start()
            self._create_roles()
        except BaseException:
            self.stop()
            raise
        return self

    def _init(self):
        self.data = os.path.join(self.dir, "data")
        pwfile = self._write("pwfile", "superpass\n")
        self._run([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "--pwfile", pwfile,
                   "-E", "UTF8", "--locale=C", "--no-sync", "--auth-local=trust",
                   "--auth-host=scram-sha-256"], timeout=120)
        os.unlink(pwfile)
        hba = (f"local all all trust\n"
               f"host all {TRUST_USER} 127.0.0.1/32 trust\n"
               f"host all all 127.0.0.1/32 scram-sha-256\n")
        self._write("data/pg_hba.conf", hba)
        self.port = free_port()
        conf = [f"port = {self.port}", "listen_addresses = '127.0.0.1'",
                f"unix_socket_directories = '{self.dir}'", "fsync = off",
                "synchronous_commit = off", "full_page_writes = off",
                "shared_buffers = 16MB", "max_connections = 60",
                "lc_messages = 'C'", "log_min_messages = warning"]
        if self.tls:
            self._make_cert()
            conf += ["ssl = on", f"ssl_cert_file = '{self.dir}/server.crt'",
                     f"ssl_key_file = '{self.dir}/server.key'"]
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n".join(conf) + "\n")

    def _make_cert(self):
        """A self-signed certificate for 127.0.0.1 (the server's), and an
        unrelated CA (other_ca.crt) a client can wrongly trust."""
        for name, cn in (("server", "127.0.0.1"), ("other_ca", "not-this-server")):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "2", "-subj", f"/CN={cn}",
                            "-keyout", os.path.join(self.dir, f"{name}.key"),
                            "-out", os.path.join(self.dir, f"{name}.crt")],
                           check=True, capture_output=True, timeout=60)
        for f in ("server.key", "server.crt"):
            os.chmod(os.path.join(self.dir, f), 0o600)
            self._chown(os.path.join(self.dir, f))
        os.chmod(os.path.join(self.dir, "other_ca.crt"), 0o644)
        self.other_ca = os.path.join(self.dir, "other_ca.crt")
        self.server_cert = os.path.join(self.dir, "server.crt")

    def _start(self):
        self.logfile = os.path.join(self.dir, "server.log")
        self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.logfile, "-w",
                   "-t", "30", "start"], timeout=60)

    def _create_roles(self):
        self.psql(f"create role {USER} login password '{PASSWORD}';"
                  f"create role {TRUST_USER} login;"
                  f"create database {DB} owner {USER};"
                  f"grant {USER} to {TRUST_USER};", db="postgres")

    def stop(self):
        if self.dir is None:
            return
        if os.path.exists(os.path.join(self.dir, "data", "postmaster.pid")):
            self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "stop", "-m", "immediate", "-w"],
                      check=False, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    # -- helpers for tests ---------------------------------------------------
    def url(self, user=USER, password=PASSWORD, db=DB, **params):
        auth = user if password is None else f"{user}:{password}"
        q = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://{auth}@{self.host}:{self.port}/{db}" + (f"?{q}" if q else "")

    def psql(self, sql, db=DB, timeout=30):
        """Run sql as the superuser over the unix socket; return stdout."""
        p = self._run([f"{PG_BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                       "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                       "-d", db, "-f", "-"], timeout=timeout, input=sql)
        return p.stdout

    def log_tail(self, n=20):
        return log_tail(os.path.join(self.dir or "", "server.log"), n, missing="")


class NoTLSListener(SilentListener):
    """Reads the client's SSLRequest and declines it with "N"."""

    def answer(self, conn):
        conn.settimeout(2)
        try:
            conn.recv(8)
            conn.sendall(b"N")
        except OSError:
            pass
        self.held.append(conn)


if __name__ == "__main__":
    import signal
    import sys

    def _stop(signum, frame):
        raise KeyboardInterrupt

    # A background job of a script starts with SIGINT ignored: take both
    # SIGINT and SIGTERM as "stop the cluster".
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with PostgresServer(tls="--no-tls" not in sys.argv[1:]) as pg:
        print(pg.url(), flush=True)
        print(f"superuser: psql -h {pg.dir} -p {pg.port} -U postgres", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
