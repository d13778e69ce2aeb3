"""A test HTTP + HTTPS server on loopback, for the http tests and benchmarks.

    with HttpsServer() as srv:
        srv.url("/json")                # http://127.0.0.1:PORT/json
        srv.url("/json", tls=True)      # https://localhost:PORT/json
        srv.ca                          # the test CA's certificate (for cacert=)
        srv.https_other                 # TLS on 127.0.0.2, a name the certificate lacks
        srv.blackhole                   # a port that accepts and never answers
        srv.full                        # a port whose accept queue is full: connects hang
        srv.refused                     # a port where nothing listens
        srv.requests()                  # [(method, path)] seen so far

The CA and the server certificate (for localhost and 127.0.0.1, valid for
CERT_DAYS days) are made with the openssl CLI in a temporary directory; the
server runs in a subprocess (Python's http.server, one thread a connection,
HTTP/1.1 keep-alive) and is killed on exit.

Routes, for any method:
  /json              200 {"ok": true, "n": 42}
  /status/<code>     that status, a text body naming it
  /redirect/<n>      302 to /redirect/<n-1>; /redirect/0 answers 200 JSON
  /echo              200 JSON {method, path, headers (lower-case), body, peer_port}
  /delay?ms=N        200 JSON after N milliseconds
  /text              200 text/plain, not JSON

Run as a script (`https.py DIR`), it writes the certificates into DIR,
prints the ports as one JSON line and serves until killed.
"""
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

CERT_DAYS = 30
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def make_certs(d):
    """A CA, and a server certificate it signed for localhost/127.0.0.1."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/O=runbook tests/CN=runbook test CA")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", str(CERT_DAYS),
            "-extfile", "ext.cnf")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    disable_nagle_algorithm = True     # headers and body go in two writes
    log_path = None

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body, ctype="application/json", extra=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, obj, status=200):
        self._send(status, json.dumps(obj))

    def _route(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        with open(self.log_path, "a") as f:
            f.write(f"{self.command} {self.path}\n")
        parts = url.path.strip("/").split("/")
        if url.path == "/json":
            self._json({"ok": True, "n": 42})
        elif parts[0] == "status" and len(parts) == 2:
            code = int(parts[1])
            self._send(code, f"status {code} from the test server\n", "text/plain")
        elif parts[0] == "redirect" and len(parts) == 2:
            left = int(parts[1])
            if left <= 0:
                self._json({"redirected": True})
            else:
                self._send(302, "", "text/plain", [("Location", f"/redirect/{left - 1}")])
        elif url.path == "/echo":
            self._json({"method": self.command, "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body.decode("utf-8", "replace"),
                        "peer_port": self.client_address[1]})
        elif url.path == "/delay":
            ms = int(query.get("ms", ["0"])[0])
            time.sleep(ms / 1000)
            self._json({"delayed_ms": ms, "path": self.path})
        elif url.path == "/text":
            self._send(200, "hello, not json\n", "text/plain")
        else:
            self._send(404, "no such route\n", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _route


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass    # TLS handshakes the tests make fail on purpose


def blackhole(listener):
    """Accept connections and never answer (keep them open)."""
    held = []
    while True:
        conn, _ = listener.accept()
        held.append(conn)


def serve(d):
    make_certs(d)
    Handler.log_path = os.path.join(d, "requests.log")
    open(Handler.log_path, "w").close()
    plain = Server(("127.0.0.1", 0), Handler)
    tls = Server(("127.0.0.1", 0), Handler)
    other = Server(("127.0.0.2", 0), Handler)     # an address the certificate does not name
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    for srv in (tls, other):
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    # a listener that never accepts, its queue filled: the kernel drops
    # further SYNs, so a client's connect hangs as with a dead host
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(full.getsockname())
        fillers.append(c)
    gone = socket.socket()
    gone.bind(("127.0.0.1", 0))
    refused = gone.getsockname()[1]
    gone.close()
    for target, arg in ((plain.serve_forever, None), (tls.serve_forever, None),
                        (other.serve_forever, None), (blackhole, hole)):
        threading.Thread(target=target, args=(arg,) if arg else (), daemon=True).start()
    print(json.dumps({"http": plain.server_address[1], "https": tls.server_address[1],
                      "https_other": other.server_address[1],
                      "blackhole": hole.getsockname()[1], "full": full.getsockname()[1],
                      "refused": refused}), flush=True)
    threading.Event().wait()


class HttpsServer:
    """The server above in a subprocess, with its own temporary directory."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="rb-https-")
        self.proc = subprocess.Popen([PYTHON, os.path.abspath(__file__), self.dir],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()
            self.stop()
            raise RuntimeError(f"the test HTTPS server did not start: {err}")
        ports = json.loads(line)
        self.http, self.https = ports["http"], ports["https"]
        self.https_other = ports["https_other"]      # on 127.0.0.2, not in the certificate
        self.blackhole, self.refused = ports["blackhole"], ports["refused"]
        self.full = ports["full"]
        self.ca = os.path.join(self.dir, "ca.pem")

    def stop(self):
        if getattr(self, "proc", None) is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc.stdout.close()
            self.proc.stderr.close()
            self.proc = None
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, True)
            self.dir = None

    def url(self, path, tls=False, host=None):
        if tls:
            return f"https://{host or 'localhost'}:{self.https}{path}"
        return f"http://{host or '127.0.0.1'}:{self.http}{path}"

    def requests(self):
        with open(os.path.join(self.dir, "requests.log")) as f:
            return [tuple(line.split(" ", 1)) for line in f.read().splitlines()]


if __name__ == "__main__":
    serve(sys.argv[1])
