"""What the tests against the real sshd share (tests/net/test_ssh.py,
test_fanout.py): one sshd per test class, its host key trusted in the
test's own known_hosts, and Lua string literals."""
import json

from harness import RunbookTestCase
from servers.sshd import SSHServer


def lua(s):
    """A Lua string literal (JSON's escapes are Lua's for these strings)."""
    return json.dumps(s)


class SSHServerCase(RunbookTestCase):
    """A test class with its own sshd (cls.server); setUp sets
    self.known_hosts before calling trust."""

    @classmethod
    def setUpClass(cls):
        cls.server = SSHServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def trust(self, server, port=None):
        with open(self.known_hosts, "a") as f:
            f.write(server.known_hosts_line(port))
