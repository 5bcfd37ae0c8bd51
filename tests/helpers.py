"""Helpers the end-to-end test modules share: clients (HTTP, raw bytes,
UNIX and TCP sockets), waiting for a condition, starting processes that
die with the test process, reading the server's log and processes. Fixtures and the Server class are in conftest.py, which
also re-exports the helpers it has always offered."""

import ctypes
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"


# ---------------------------------------------------------------- clients

# Ports for the servers tests start come from below the kernel's ephemeral
# range (where bind(0) and every client connection take theirs, so a client
# of a test running alongside cannot take a port between free_port() and
# the server's bind) and, under pytest-xdist, from a block of their own per
# worker: two workers never hand out the same port. A random start within
# the block keeps two test sessions on one machine apart too.
_PORTS_LOW, _PORTS_HIGH = 20000, 32000
_PORTS_BLOCK = 1500  # 8 workers' blocks


def _worker_index():
    """pytest-xdist's worker number (PYTEST_XDIST_WORKER=gwN), else 0."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_block = _worker_index() % ((_PORTS_HIGH - _PORTS_LOW) // _PORTS_BLOCK)
_next_port = [_PORTS_LOW + _block * _PORTS_BLOCK + random.randrange(_PORTS_BLOCK)]


def _bindable(port):
    """Nothing is bound to 127.0.0.1:port, nor any connection of a server
    that used it lingers (no SO_REUSEADDR: TIME_WAIT counts as in use)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    """A TCP port on 127.0.0.1 nothing uses now, for a server to bind."""
    low = _PORTS_LOW + _block * _PORTS_BLOCK
    if low + _PORTS_BLOCK > _ephemeral_low():
        # an unusual ip_local_port_range: take the kernel's pick
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(_PORTS_BLOCK):
        port = _next_port[0]
        _next_port[0] = low + (port + 1 - low) % _PORTS_BLOCK
        if _bindable(port):
            return port
    raise AssertionError(f"no free port in {low}..{low + _PORTS_BLOCK - 1}")


def http_get(port, path="/", host="127.0.0.1", timeout=10, headers=None):
    import http.client
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def exchange(port, data, timeout=5.0, shut=False, host="127.0.0.1"):
    """Send raw bytes and read until the server closes. Returns (bytes, end)
    where end is 'eof', 'reset' (data received before a RST is kept) or
    'timeout' (the server kept the connection open)."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            if shut:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading it all
        chunks = []
        end = None
        while end is None:
            try:
                b = s.recv(65536)
            except socket.timeout:
                end = "timeout"
                break
            except ConnectionResetError:
                end = "reset"
                break
            if not b:
                end = "eof"
            chunks.append(b)
        return b"".join(chunks), end
    finally:
        s.close()


def raw_request(port, data, timeout=5.0, host="127.0.0.1"):
    """Send raw bytes, return everything received until close or timeout."""
    return exchange(port, data, timeout=timeout, host=host)[0]


def read_socket(addr, send=b"", timeout=5.0):
    """Connect to a UNIX socket path or a (host, port) pair, send `send`,
    and read to EOF."""
    if isinstance(addr, tuple):
        s = socket.create_connection(addr, timeout=timeout)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
    try:
        if not isinstance(addr, tuple):
            s.connect(str(addr))
        if send:
            s.sendall(send)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    return b"".join(chunks)


class Bg:
    """A GET left running in a background thread: `.result` is the response
    tuple of http_get (or the exception), `.done_at` when it ended."""

    def __init__(self, port, path, timeout=60, headers=None):
        self.result = None
        self.done_at = None
        self.started_at = time.time()
        self.t = threading.Thread(target=self._run, args=(port, path, timeout, headers),
                                  daemon=True)
        self.t.start()

    def _run(self, port, path, timeout, headers):
        try:
            self.result = http_get(port, path, timeout=timeout, headers=headers)
        except Exception as e:  # noqa: BLE001 - recorded for the caller
            self.result = e
        self.done_at = time.time()

    def join(self, timeout):
        self.t.join(timeout)
        assert not self.t.is_alive(), "request still running"
        return self.result


def wait_port(port, timeout=10.0):
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} after {timeout}s")


# ---------------------------------------------------------------- waiting

def poll(pred, timeout, interval=0.05):
    """Call pred() until it returns something truthy or `timeout` passes;
    returns its last value (falsy after a timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()


def wait_for(pred, timeout=5.0, what="condition", interval=0.05):
    """Call pred() until it returns something truthy, and return that; a
    pred() that raises OSError, ValueError or AssertionError counts as not
    yet. Fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError, AssertionError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"{what} not seen within {timeout}s; last: {last!r}")


def mark_query(mark):
    """`mark=FILE` for the test apps' /sleep, which create FILE as the
    request enters the app (see in_app)."""
    from urllib.parse import quote
    return "mark=" + quote(str(mark), safe="")


def in_app(mark, timeout=15.0):
    """Wait until a /sleep request sent with mark_query(mark) is in the app:
    in flight, not still on its way to the server (a fixed sleep guesses)."""
    wait_for(lambda: Path(mark).exists(), timeout, f"the request in the app ({mark})")


# ---------------------------------------------------------------- processes

# A test process that dies without its finalizers (SIGKILL, a CI timeout,
# Ctrl-C at a bad moment) must not leave servers, nginx or wrk running:
# what the tests start gets a parent-death signal. The kernel sends it when
# the THREAD that forked the child exits, so only a child started from the
# main thread gets one (a helper thread's child would die with the thread).
# A server's workers do not inherit it (fork resets it); the server's own
# parent-death signal kills them when their master dies.
#
# The child runs as little Python as can be (another thread of the test may
# hold a lock at the fork): prctl is looked up, and its call path bound by
# the dynamic linker, here with a first harmless call (PR_GET_PDEATHSIG).
_PR_SET_PDEATHSIG, _PR_GET_PDEATHSIG = 1, 2
_SIGKILL = int(signal.SIGKILL)
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_prctl(_PR_GET_PDEATHSIG, ctypes.byref(ctypes.c_int()), 0, 0, 0)


def _die_with(parent):
    def preexec():  # in the child, between fork and exec
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the test process died before prctl
            os._exit(1)
    return preexec


def _tied(kwargs):
    assert "preexec_fn" not in kwargs
    if threading.current_thread() is threading.main_thread():
        kwargs["preexec_fn"] = _die_with(os.getpid())
    return kwargs


def popen(args, **kwargs):
    """subprocess.Popen(args, **kwargs), the process killed (SIGKILL) when
    the test process dies (from the main thread only: see above)."""
    return subprocess.Popen(args, **_tied(kwargs))


def run(args, **kwargs):
    """subprocess.run(args, **kwargs), the process killed (SIGKILL) when the
    test process dies (from the main thread only: see above)."""
    return subprocess.run(args, **_tied(kwargs))



# A process that is meant to outlive its parent (the new master the fifo's
# `f` starts, in a session of its own) gets no parent-death signal: nothing
# the kernel offers kills it when the test process dies. A guardian does:
# it waits for EOF on a pipe only the test process holds (the test is done,
# or died however it died), then kills the process group the watched pid
# leads, if that pid is still the same process (its start time in
# /proc/PID/stat is unchanged, so a reused pid is left alone).
_GUARDIAN = """
import os, signal, sys
pid = int(sys.argv[1])
def started(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
birth = started(pid)
sys.stdout.write("watching\\n"); sys.stdout.flush()
sys.stdin.buffer.read()
if birth is not None and started(pid) == birth:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class killed_with_the_test:
    """`with killed_with_the_test(pid):` SIGKILLs the process group led by
    `pid` (and `pid`) when the block ends or the test process dies, also by
    SIGKILL: for a process started in a session of its own that no
    parent-death signal reaches."""

    def __init__(self, pid):
        import sys
        # not tied to the test process (popen would kill it with the test):
        # it must live on exactly when the test process does not
        self.guardian = subprocess.Popen(
            [sys.executable, "-c", _GUARDIAN, str(pid)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True)
        assert self.guardian.stdout.readline() == b"watching\n"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.guardian.stdin.close()
        self.guardian.wait(10)
        self.guardian.stdout.close()


# ---------------------------------------------------------------- the server

def start_app(serve, port, app, *extra, workers=2, threads=4, **kw):
    """The usual server: --http on `port`, `app`, a master, workers x threads."""
    return serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                  "--processes", str(workers), "--threads", str(threads), *extra],
                 workers=workers, **kw)


def signal_and_wait(proc, sig, timeout):
    """Send `sig` to the server's master and wait for it to exit: seconds taken."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout)
    return time.monotonic() - t0


def quick_stop(server):
    server.stop(sig=signal.SIGQUIT, timeout=10)


def spawned_pids(log):
    """Worker id -> pid of its latest process, from the master's log."""
    pids = {}
    for m in re.finditer(r"spawned uwsgi-rs worker (\d+) \(pid: (\d+)", log):
        pids[int(m.group(1))] = int(m.group(2))
    for m in re.finditer(r"Respawned uwsgi-rs worker (\d+) \(new pid: (\d+)\)", log):
        pids[int(m.group(1))] = int(m.group(2))
    return pids


def alive(pid):
    """pid is a process that runs (a zombie, not yet reaped by its parent,
    counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_members(pgid):
    """Live (non-zombie) processes whose process group is pgid."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[2]) == pgid and rest[0] != "Z":
            found.append(int(d))
    return found


# ---------------------------------------------------------------- apps

def copy_app(name, dst, src_dir=APPS):
    shutil.copy(Path(src_dir) / name, Path(dst) / name)
    return Path(dst) / name


def lineno_of(path, needle):
    """The number of the first line of `path` containing `needle`."""
    for i, ln in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


# ---------------------------------------------------------------- load

WRK = "/usr/bin/wrk"


def parse_wrk(out):
    """(requests, socket errors, non-2xx/3xx responses) from wrk's report."""
    m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    reqs = int(m.group(1)) if m else 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return reqs, errors, int(non2xx.group(1)) if non2xx else 0


def wrk_during(url, connections, seconds, during):
    """Run wrk -t2 on `url` for `seconds`, call `during()` meanwhile, and
    return (requests, errors, non2xx, wrk's report); wrk never outlives it."""
    assert os.path.exists(WRK), f"{WRK} is missing (bash scripts/setup.sh installs it)"
    wrk = popen([WRK, "-t2", f"-c{connections}", f"-d{seconds}s", url],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        during()
        out, _ = wrk.communicate(timeout=seconds + 25)
    finally:
        if wrk.poll() is None:
            wrk.kill()
            wrk.wait()
    return (*parse_wrk(out), out)
