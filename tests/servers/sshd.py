"""A throwaway OpenSSH server on 127.0.0.1 for the ssh tests and benchmark.

SSHServer() generates, in a temporary directory, its own ed25519 host key
(or the host key types given) and three client keys: `key` (authorized), `pass_key` (authorized, with
PASSPHRASE) and `wrong_key` (not authorized).  start() runs
/usr/sbin/sshd -D on a free port with a generated config; stop() kills it
and removes the directory.  Logins are as the user running the tests (root
here), whose commands start through bash: the config sets SHLVL=1 so bash
does not read ~/.bashrc (on these machines it runs pyenv, 0.4 s a command).

Run as a script it serves until killed and prints one line of JSON with the
port and the paths (bench/ssh.sh uses it that way); its argument, if any,
is MaxStartups.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# Also run as a script: find the servers package from this file.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from servers.common import StalledListener, free_port, stop_process
from servers.common import SilentListener as SilentServer  # noqa: E402,F401 (re-exported for the tests)

SSHD = "/usr/sbin/sshd"
PASSPHRASE = "correct horse battery"


def keygen(path, passphrase="", kind="ed25519"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", "", "-f", path],
                   check=True, stdin=subprocess.DEVNULL)
    return path


def fingerprint(pub_path):
    """'SHA256:...' of a public key file, as ssh-keygen prints it."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", pub_path],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


class SSHServer:
    """host_keys: the types of host key sshd serves (the first is host_key);
    ssh_rsa=True lets sshd sign with ssh-rsa (SHA-1), which OpenSSH 8.8+
    refuses by default and is the only RSA host key algorithm libssh2 1.10
    verifies.  max_startups: sshd's MaxStartups (unauthenticated connections
    at once before it drops some; a fan-out of 200 at once needs more)."""

    def __init__(self, host_keys=("ed25519",), ssh_rsa=False, max_startups="100:30:200"):
        self.dir = tempfile.mkdtemp(prefix="rb-sshd-")
        self.port = free_port()
        self.proc = None
        self.ssh_rsa = ssh_rsa
        self.max_startups = max_startups
        self.host_keys = {kind: keygen(os.path.join(self.dir, f"ssh_host_{kind}_key"), kind=kind)
                          for kind in host_keys}
        self.host_key = self.host_keys[host_keys[0]]
        self.key = keygen(os.path.join(self.dir, "id_ed25519"))
        self.pass_key = keygen(os.path.join(self.dir, "id_pass"), PASSPHRASE)
        self.wrong_key = keygen(os.path.join(self.dir, "id_wrong"))
        self.user = os.environ.get("USER") or "root"
        self.authorized = os.path.join(self.dir, "authorized_keys")
        with open(self.authorized, "w") as out:
            for k in (self.key, self.pass_key):
                with open(k + ".pub") as f:
                    out.write(f.read())
        self.config = os.path.join(self.dir, "sshd_config")
        self.log = os.path.join(self.dir, "sshd.log")

    def write_config(self):
        d = self.dir
        host_keys = "\n".join(f"HostKey {k}" for k in self.host_keys.values())
        if self.ssh_rsa:
            host_keys += "\nHostKeyAlgorithms +ssh-rsa"
        with open(self.config, "w") as f:
            f.write(f"""ListenAddress 127.0.0.1
Port {self.port}
{host_keys}
PidFile {d}/sshd.pid
AuthorizedKeysFile {self.authorized}
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups {self.max_startups}
MaxSessions 200
UseDNS no
PrintMotd no
PrintLastLog no
LoginGraceTime 30
SetEnv SHLVL=1
LogLevel ERROR
""")

    def start(self):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # privilege separation dir
        self.write_config()
        log = open(self.log, "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start on port {self.port}: " + self.read_log())
            time.sleep(0.02)

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            # the listener and its per-connection children; a remote command
            # left running (an interrupted `sleep 30`) leads its own session
            # and ends on its own
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except OSError:
                pass
            stop_process(self.proc, asked=5, grace=0)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def host_pub(self, kind=None):
        with open((self.host_keys[kind] if kind else self.host_key) + ".pub") as f:
            kind, blob = f.read().split()[:2]
        return kind, blob

    def known_hosts_line(self, port=None, kind=None):
        """The known_hosts entry for this server's host key (of type kind,
        default the first), or for its key under another port."""
        kind, blob = self.host_pub(kind)
        return f"[127.0.0.1]:{port or self.port} {kind} {blob}\n"

    def fingerprint(self, kind=None):
        return fingerprint((self.host_keys[kind] if kind else self.host_key) + ".pub")


if __name__ == "__main__":
    server = SSHServer(max_startups=sys.argv[1] if len(sys.argv) > 1 else "100:30:200").start()
    print(json.dumps({"port": server.port, "dir": server.dir, "key": server.key,
                      "pass_key": server.pass_key, "user": server.user,
                      "known_hosts_line": server.known_hosts_line().strip()}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
    try:
        signal.pause()
    except KeyboardInterrupt:
        server.stop()
