"""A small fake systemd for the tests, since no systemd runs here: the two
protocols uwsgi-rs speaks with it.

- Readiness (sd_notify): a datagram socket (an abstract `@name` or a path)
  whose address goes into NOTIFY_SOCKET; `messages()` returns what the
  server sent, one dict of KEY=VALUE lines per datagram.
- Socket activation: listening sockets made here (as a .socket unit would)
  and passed to the server as fds 3.. with LISTEN_FDS, LISTEN_PID (the
  server's own pid) and LISTEN_FDNAMES. Run as a script, this file is the
  launcher that does it: `python fake_systemd.py FD,FD NAME:NAME PROGRAM
  ARGS...` moves the fds to 3.., sets the variables and execs PROGRAM (so
  PROGRAM keeps the launcher's pid, which LISTEN_PID names).
"""

import fcntl
import os
import socket
import sys
import time
import uuid
from pathlib import Path


class FakeSystemd:
    def __init__(self, notify_path=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if notify_path is None:
            name = f"uwsgi-rs-test-notify-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.sock.bind(str(notify_path))
            self.address = str(notify_path)
        self.sock.setblocking(False)
        self.received = []
        self.listeners = []

    def close(self):
        self.sock.close()
        for s in self.listeners:
            s.close()

    @property
    def env(self):
        return {"NOTIFY_SOCKET": self.address}

    def messages(self):
        """Every datagram so far, oldest first, as dicts."""
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.received
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.received.append(fields)

    def wait_for(self, key, timeout=20.0, after=0):
        """The first message with `key` among those from index `after` on;
        returns (index, message)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, m in enumerate(self.messages()[after:], start=after):
                if key in m:
                    return i, m
            time.sleep(0.02)
        raise AssertionError(f"no {key} from the server within {timeout}s: {self.received}")

    # ------------------------------------------------------ socket activation

    def listen_tcp(self, host="127.0.0.1", port=0, backlog=16):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(backlog)
        self.listeners.append(s)
        return s

    def listen_unix(self, path, mode=0o660, backlog=16):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(path))
        os.chmod(path, mode)
        s.listen(backlog)
        self.listeners.append(s)
        return s

    def activation(self, socks, names=None):
        """(prefix, pass_fds) for conftest's Server: the launcher hands
        `socks` to the server as fds 3.. named `names`."""
        fds = [s.fileno() for s in socks]
        names = ":".join(names or [""] * len(socks))
        prefix = [sys.executable, str(Path(__file__).resolve()), ",".join(map(str, fds)), names]
        return prefix, tuple(fds)


def _launch(argv):
    fds = [int(f) for f in argv[1].split(",") if f]
    names = argv[2]
    program = argv[3:]
    # Out of the way first (a target 3.. may be one of the fds), then down.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
    for fd in fds:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i, inheritable=True)
        os.close(fd)
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.environ["LISTEN_FDS"] = str(len(fds))
    if names:
        os.environ["LISTEN_FDNAMES"] = names
    os.execv(program[0], program)


if __name__ == "__main__":
    _launch(sys.argv)
