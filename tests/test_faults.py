"""Faults: nothing lost, nothing orphaned.

Workers dying mid-request, a crash-looping worker, the master killed,
graceful reload under wrk, graceful shutdown, file-descriptor exhaustion,
a full listen backlog, and privilege dropping with --uid/--gid."""

import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import conftest
from conftest import APPS, Bg, free_port, http_get, signal_and_wait
from helpers import alive, group_members, in_app, mark_query, poll, start_app, wrk_during
import helpers

APP = str(APPS / "rel_app.py")
CRASHLOOP = str(APPS / "rel_crashloop.py")
WHOAMI = str(APPS / "rel_whoami.py")


def start(serve, port, *extra, app=APP, **kw):
    return start_app(serve, port, app, *extra, **kw)






def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def port_is_free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen()
        return True
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------- a worker dies mid-request

class TaggedLoad:
    """Fresh-connection requests, each tagged with an id the app records
    (with its pid) before anything else, so a failure can be attributed."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.results = []  # (id, ok, pid or error)
        self.lock = threading.Lock()

    def one(self, s=0.0):
        rid = uuid.uuid4().hex
        try:
            st, _, body = http_get(self.port, f"/tagged?id={rid}&s={s}", timeout=10)
            res = (rid, st == 200, int(body) if st == 200 else f"status {st}")
        except Exception as e:  # noqa: BLE001
            res = (rid, False, repr(e))
        with self.lock:
            self.results.append(res)
        return res

    def loop(self):
        while not self.stop.is_set():
            self.one(0.01)


@pytest.mark.parametrize("how,path,death", [
    ("sigkill", "/kill?sig=9", "killed by signal 9"),
    ("sigsegv", "/segv", "killed by signal 11"),
    ("os_exit", "/exit?code=7", "exit code 7"),
])
def test_worker_dying_mid_request_fails_only_its_own_requests(serve, port, tmp_path, how, path, death):
    tags = tmp_path / "tags"
    tags.mkdir()
    srv = start(serve, port, workers=2, threads=4, env={"REL_TAG_DIR": str(tags)})
    first = srv.worker_pids()
    load = TaggedLoad(port)
    with ThreadPoolExecutor(8) as ex:
        loops = [ex.submit(load.loop) for _ in range(3)]
        sleepers = [ex.submit(load.one, 1.5) for _ in range(3)]
        try:
            time.sleep(0.4)
            crash = ex.submit(http_get, port, path, timeout=10)
            with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
                crash.result(timeout=10)
            t_dead = time.monotonic()
            m = poll(lambda: re.search(r"DAMN ! worker (\d) \(pid: (\d+)\) died, ([^:]+) :\(", srv.log), 5)
            assert m, srv.log
            wid, dead = int(m.group(1)), int(m.group(2))
            assert m.group(3) == death
            assert dead == first[wid]
            back = poll(lambda: re.search(
                rf"Respawned uwsgi-rs worker {wid} \(new pid: (\d+)\)", srv.log) and srv.log.count(") ready") >= 3, 5)
            t_back = time.monotonic()
            assert back, srv.log
            assert t_back - t_dead < 1.0, f"worker {wid} back after {t_back - t_dead:.2f}s"
            time.sleep(1.0)
        finally:
            # an assertion above must not leave the load loops running forever
            load.stop.set()
        for f in loops + sleepers:
            f.result(timeout=15)
    new = int(re.search(rf"Respawned uwsgi-rs worker {wid} \(new pid: (\d+)\)", srv.log).group(1))
    survivor = first[3 - wid]
    failed = [(rid, why) for rid, ok, why in load.results if not ok]
    for rid, why in failed:
        tag = tags / rid
        on = int(tag.read_text()) if tag.exists() else None
        # A failed request either reached the dying worker's app, or never
        # reached any app (accepted by the dying worker, not yet parsed).
        assert on in (None, dead), (rid, why, on)
    for rid, ok, who in load.results:
        tag = tags / rid
        if tag.exists() and int(tag.read_text()) != dead:
            assert ok, (rid, who)
    assert len(failed) <= 8, failed
    served_by = {who for _, ok, who in load.results if ok}
    assert survivor in served_by and new in served_by, (served_by, survivor, new)
    assert sum(1 for _, ok, _ in load.results if ok) >= 50
    assert srv.proc.poll() is None


def test_worker_crash_looping_at_start_up_backs_off_and_recovers(serve, port, tmp_path):
    """Once the app served, a worker that segfaults while starting is
    respawned with a growing delay (logged), never in a tight loop; when the
    cause goes away it serves again."""
    marker = tmp_path / "crash.marker"
    # each worker imports the app (--lazy-apps): a preloading loader's crash
    # loop is tests/test_preload.py's
    srv = start(serve, port, "--lazy-apps", workers=1, threads=1, app=CRASHLOOP,
                env={"REL_CRASH_MARKER": str(marker)})
    first = srv.worker_pids()[1]
    assert http_get(port, "/")[0] == 200
    master_cpu0 = cpu_seconds(srv.proc.pid)
    os.kill(first, signal.SIGKILL)
    time.sleep(3.0)
    log = srv.log
    spawns = log.count("Respawned uwsgi-rs worker 1")
    assert srv.proc.poll() is None, log
    assert "killed by signal 11" in log, log
    assert 3 <= spawns < 10, f"{spawns} respawns in 3 s:\n{log}"
    assert re.search(r"worker 1 died \d+ times in a row before serving: respawning in \d+ ms", log), log
    assert cpu_seconds(srv.proc.pid) - master_cpu0 < 0.5, "the master spun"
    # Fix the cause: the worker comes back (within the current back-off).
    marker.unlink()
    srv.wait_log(") ready", count=2, timeout=8)
    st, _, body = http_get(port, "/")
    assert st == 200 and int(body) != first


def test_worker_crashing_at_every_start_never_spins_the_master(serve, port, tmp_path):
    """Segfaulting at the very first start too: no exit-on-load-failure
    path applies (it is a signal), so it must be the back-off."""
    srv = start(serve, port, "--lazy-apps", workers=1, threads=1, app=CRASHLOOP, ready=False,
                env={"REL_CRASH_MARKER": str(tmp_path / "m"), "REL_CRASH_ALWAYS": "1"})
    time.sleep(3.5)
    log = srv.log
    starts = log.count("spawned uwsgi-rs worker 1") + log.count("Respawned uwsgi-rs worker 1")
    if srv.proc.poll() is not None:
        # Exiting with a clear error is also not spinning.
        assert srv.proc.returncode != 0 and "worker 1" in log, log
    else:
        assert starts < 10, f"{starts} starts in 3.5 s:\n{log}"
        assert "respawning in" in log, log
    assert "killed by signal 11" in log, log


# ---------------------------------------------------------------- the app forks

@pytest.mark.parametrize("how", ["return", "write", "read"])
def test_child_forked_by_the_app_never_serves(serve, port, how):
    """An app whose os.fork() child returns into the server: the child
    exits without touching the connection (no response, no body read),
    and never accepts a request. It served 20 of 20 before."""
    srv = start(serve, port, workers=1, threads=2)
    worker = srv.worker_pids()[1]
    children = set()
    for i in range(10):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", f"/fork?how={how}", body=b"the parent's body " * 100)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, body
        d = json.loads(body)  # the parent's answer, nothing of the child's before it
        assert d["parent"] == worker and d["child_exit"] == 1, d
        children.add(d["child"])
        # Served by the worker, never by a child that went on accepting.
        c.request("GET", "/pid")
        r = c.getresponse()
        assert json.loads(r.read())["pid"] == worker
        c.close()
    for _ in range(20):
        assert json.loads(http_get(port, "/pid")[2])["pid"] == worker
    assert srv.log.count("returned into the server: it exits without serving") == 10, srv.log
    assert not any(os.path.exists(f"/proc/{pid}") for pid in children)


def test_a_child_the_app_leaves_running_holds_no_client_connection(serve, port):
    """A child the app forks and leaves running (a multiprocessing pool's)
    inherited every client socket the worker had open: a client reading to
    end-of-file (HTTP/1.0; nginx over the uwsgi protocol) waited until the
    child exited (8.0 s of its 8 s, and uWSGI 2.0.31 the same), and once the
    worker died (harakiri, a crash), its idle keep-alive clients hung as
    long. The child closes its copies at once."""
    srv = start(serve, port, workers=1, threads=2)
    worker = srv.worker_pids()[1]
    children = []
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        idle.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in idle.recv(65536)  # now idle, kept alive
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /fork?how=background&s=20 HTTP/1.0\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        took = time.monotonic() - t0
        s.close()
        d = json.loads(data.partition(b"\r\n\r\n")[2])
        children.append(d["child"])
        assert d["parent"] == worker and took < 3.0, (d, took)
        # The worker dies: its idle client sees the end at once.
        os.kill(worker, signal.SIGKILL)
        t0 = time.monotonic()
        try:
            assert idle.recv(65536) == b""
        except ConnectionResetError:
            pass
        took = time.monotonic() - t0
        assert took < 3.0, took
    finally:
        idle.close()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- the master dies

def test_master_sigkill_leaves_no_orphans(serve, port, tmp_path):
    srv = start(serve, port, workers=3, threads=2)
    pids = srv.worker_pids()
    # One worker is a respawned one, one is busy in a request.
    os.kill(pids[2], signal.SIGKILL)
    srv.wait_log(") ready", count=4, timeout=10)
    busy = Bg(port, f"/sleep?s=30&{mark_query(tmp_path / 'in-app')}", timeout=20)
    in_app(tmp_path / "in-app")
    os.kill(srv.proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    srv.proc.wait(5)
    left = poll(lambda: not group_members(srv.proc.pid), 3)
    took = time.monotonic() - t0
    # A killed master cannot remove its private tracebacker directory.
    shutil.rmtree(os.path.join(tempfile.gettempdir(), f"uwsgi-rs.{srv.proc.pid}"), ignore_errors=True)
    assert left, f"orphans still alive: {group_members(srv.proc.pid)}"
    assert took < 3.0
    assert isinstance(busy.join(10), Exception), \
        "the busy worker must not finish its request after the master died"
    # The kernel may keep the dead worker's client connection in FIN_WAIT
    # for a moment after the process is gone; no process holds the port.
    assert poll(lambda: port_is_free(port), 5), "the port is still held"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# A tiny test process: starts a server the way the tests do (conftest's
# Server), says where it is, then waits to be killed.
DRIVER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from conftest import Server
port, app, out = int(sys.argv[2]), sys.argv[3], sys.argv[4]
srv = Server(["--http", f"127.0.0.1:{port}", "--wsgi-file", app, "--master",
              "--processes", "2", "--threads", "2"], os.path.dirname(out), workers=2)
srv.wait_ready()
with open(out + ".tmp", "w") as f:
    json.dump([srv.proc.pid, *srv.worker_pids().values()], f)
os.rename(out + ".tmp", out)
time.sleep(60)
"""


def test_servers_die_with_a_killed_test_process(port, tmp_path):
    """A test process killed before its finalizers run (SIGKILL, a CI
    timeout) leaves no server behind: the master gets the parent-death
    signal helpers.popen gives what the tests start, and its workers die
    with it."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out = tmp_path / "pids.json"
    with open(tmp_path / "driver.log", "wb") as log:
        proc = conftest.popen([sys.executable, str(driver), str(Path(__file__).parent), str(port),
                               APP, str(out)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    pids = []
    try:
        assert poll(lambda: out.exists() or proc.poll() is not None, 30), "no server started"
        assert out.exists(), (tmp_path / "driver.log").read_text()
        pids = json.loads(out.read_text())
        assert len(pids) == 3, pids
        master = pids[0]
        assert http_get(port, "/")[0] == 200
        group = group_members(master)  # the workers, the loader that forks them
        assert set(pids) <= set(group), (pids, group)
        proc.kill()
        proc.wait(5)
        gone = poll(lambda: not group_members(master), 5)
        assert gone, f"still running after the test process died: {group_members(master)}"
        assert not any(alive(pid) for pid in group)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if pids:
            try:
                os.killpg(pids[0], signal.SIGKILL)
            except ProcessLookupError:
                pass
            # A killed master cannot remove its private tracebacker directory.
            shutil.rmtree(os.path.join(tempfile.gettempdir(), f"uwsgi-rs.{pids[0]}"),
                          ignore_errors=True)



GUARDED_DRIVER = """
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from helpers import killed_with_the_test
# what the fifo's `f` makes: a process in a session of its own, untied
orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
with killed_with_the_test(orphan.pid):
    with open(sys.argv[2] + ".tmp", "w") as f:
        f.write(str(orphan.pid))
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    time.sleep(60)
"""


def test_a_process_in_its_own_session_dies_with_a_killed_test_process(tmp_path):
    """The new master of a refork (tests/test_control.py) is in a session of
    its own, which no parent-death signal reaches: killed_with_the_test's
    guardian kills it when the test process is SIGKILLed."""
    driver = tmp_path / "driver.py"
    driver.write_text(GUARDED_DRIVER)
    out = tmp_path / "pid"
    proc = conftest.popen([sys.executable, str(driver), str(Path(__file__).parent), str(out)],
                          stdin=subprocess.DEVNULL)
    orphan = None
    try:
        assert poll(lambda: out.exists() or proc.poll() is not None, 30), "no driver"
        orphan = int(out.read_text())
        assert alive(orphan)
        proc.kill()
        proc.wait(5)
        assert poll(lambda: not alive(orphan), 10), "the session leader outlived the test"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if orphan and alive(orphan):
            os.kill(orphan, signal.SIGKILL)

def _failed_start(args, tmp_path, env):
    r = helpers.run([conftest.BIN] + args, cwd=tmp_path, env=env, capture_output=True,
                    text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, (args, r.stdout, r.stderr)
    return r.stderr


@pytest.fixture
def own_tmpdir():
    """A TMPDIR of the server's own, so other tests cannot change its count.
    Short (/tmp/utXXXXXXXX): the server makes UNIX sockets two levels below
    it, and under pytest-xdist tmp_path is too deep for them (108 bytes)."""
    d = tempfile.mkdtemp(prefix="ut", dir="/tmp")
    env = dict(os.environ, TMPDIR=d)
    env.pop("VIRTUAL_ENV", None)
    yield d, env
    shutil.rmtree(d, ignore_errors=True)


def test_a_long_tmpdir_keeps_the_private_sockets_in_tmp(serve, port, tmp_path):
    """A TMPDIR too long for a socket address (107 bytes) stopped every
    worker at start ("path must be shorter than SUN_LEN"): the private
    directory goes to /tmp instead, and the server serves."""
    long_dir = tmp_path / ("t" * 90)
    long_dir.mkdir()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2"],
                workers=2, env={"TMPDIR": str(long_dir)})
    private = f"/tmp/uwsgi-rs.{srv.proc.pid}"
    assert os.path.isdir(private) and os.listdir(long_dir) == []
    assert http_get(port, "/say/long")[2] == b"long"
    signal_and_wait(srv.proc, signal.SIGTERM, 15)
    assert not os.path.exists(private)


def test_failed_starts_leave_nothing_behind(tmp_path, port, own_tmpdir):
    """A start that fails (bad pidfile or stats path, a second listener
    that cannot bind) removes what it created: the private tracebacker
    directory, UNIX socket files, the pidfile. Each one left a
    uwsgi-rs.<pid> directory in the temp dir."""
    tmpdir, env = own_tmpdir
    sock, pid = tmp_path / "app.sock", tmp_path / "app.pid"
    base = ["--http", f"127.0.0.1:{port}", "--socket", str(sock), "--wsgi-file", APP]
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cases = [
            (["--pidfile", str(tmp_path / "no" / "such" / "dir")], "cannot write pidfile"),
            (["--pidfile", str(pid), "--stats", str(tmp_path / "no" / "dir" / "stats.sock")],
             "cannot bind stats server"),
            (["--http", "127.0.0.1:%d" % busy.getsockname()[1]], "cannot bind"),
        ]
        for extra, why in cases:
            before = sorted(os.listdir(tmp_path))
            assert why in _failed_start(base + extra, tmp_path, env)
            assert os.listdir(tmpdir) == [], (extra, os.listdir(tmpdir))
            assert sorted(os.listdir(tmp_path)) == before, (extra, os.listdir(tmp_path))
            assert not sock.exists() and not pid.exists()
    finally:
        busy.close()


def test_sigkilled_master_leftovers_are_swept_by_the_next_start(serve, tmp_path, own_tmpdir):
    """A master killed with SIGKILL cannot clean up; the next start (failed
    or not) removes its private directory, and a clean stop leaves the temp
    dir as it found it."""
    tmpdir, env = own_tmpdir
    for next_start_fails in (True, False):
        # A fresh port each time: the killed master's may linger in the kernel.
        port = free_port()
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2"],
                    workers=2, env={"TMPDIR": str(tmpdir)})
        left = f"uwsgi-rs.{srv.proc.pid}"
        assert os.listdir(tmpdir) == [left]
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(5)
        assert poll(lambda: not group_members(srv.proc.pid), 5)
        assert os.listdir(tmpdir) == [left], "the killed master's directory stays until a start"
        port = free_port()
        if next_start_fails:
            assert "cannot write pidfile" in _failed_start(
                ["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--pidfile", str(tmp_path / "no" / "dir" / "pid")], tmp_path, env)
            assert os.listdir(tmpdir) == []
        else:
            nxt = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP],
                        env={"TMPDIR": str(tmpdir)})
            assert os.listdir(tmpdir) == [f"uwsgi-rs.{nxt.proc.pid}"]
            assert http_get(port, "/say/swept")[2] == b"swept"
            signal_and_wait(nxt.proc, signal.SIGTERM, 15)
            assert os.listdir(tmpdir) == []


# ---------------------------------------------------------------- reload and shutdown

@pytest.mark.serial  # loads the machine, or asserts a latency
def test_sighup_three_times_during_wrk_no_failed_requests(serve, port):
    """wrk for 8 s with 32 keep-alive connections; three rolling reloads
    (SIGHUP) in the middle: no socket error, no non-2xx response."""
    srv = start(serve, port, "--disable-logging", workers=2, threads=4)
    first = set(srv.worker_pids().values())

    def reloads():
        for k in range(3):
            time.sleep(1.5)
            os.kill(srv.proc.pid, signal.SIGHUP)
            srv.wait_log(") ready", count=2 + 2 * (k + 1), timeout=10)

    reqs, errors, non2xx, out = wrk_during(f"http://127.0.0.1:{port}/say/x", 32, 8, reloads)
    assert srv.log.count("SIGHUP received") == 3
    assert not (set(srv.worker_pids().values()) & first)
    assert errors == 0 and non2xx == 0, out
    assert reqs > 1000, out
    assert "DAMN" not in srv.log, srv.log


def _send_request(sock, path):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())


def _read_response(sock, timeout=15):
    sock.settimeout(timeout)
    f = sock.makefile("rb")
    status = f.readline()
    if not status:
        raise ConnectionError("closed without a response")
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    return int(status.split()[1]), f.read(length)


def test_sigterm_serves_every_accepted_request(serve, port, tmp_path):
    """Both cores busy; a third client has connected (the handshake is done,
    so the server's kernel accepted it) and sent its whole request. SIGTERM
    lets the two finish and still answers the third: nothing the server had
    already accepted is reset."""
    srv = start(serve, port, "--reload-mercy", "10", workers=1, threads=2)
    a, b, c = (socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(3))
    try:
        _send_request(a, f"/sleep?s=1.5&{mark_query(tmp_path / 'a')}")
        _send_request(b, f"/sleep?s=1.5&{mark_query(tmp_path / 'b')}")
        in_app(tmp_path / "a")
        in_app(tmp_path / "b")
        _send_request(c, "/say/accepted")
        time.sleep(0.1)
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        results = {}
        for name, s in (("a", a), ("b", b), ("c", c)):
            try:
                results[name] = _read_response(s)
            except Exception as e:  # noqa: BLE001
                results[name] = repr(e)
        rc = srv.proc.wait(10)
        took = time.monotonic() - t0
    finally:
        for s in (a, b, c):
            s.close()
    assert results["a"][0] == 200 and results["b"][0] == 200, results
    assert results["c"] == (200, b"accepted"), results
    assert rc == 0 and took < 5.0, (rc, took, srv.log)
    assert poll(lambda: not group_members(srv.proc.pid), 3)


def test_sigterm_waits_no_longer_than_reload_mercy(serve, port, tmp_path):
    srv = start(serve, port, "--reload-mercy", "2", workers=1, threads=2)
    slow = Bg(port, f"/sleep?s=30&{mark_query(tmp_path / 'in-app')}", timeout=20)
    in_app(tmp_path / "in-app")
    took = signal_and_wait(srv.proc, signal.SIGTERM, 15)
    assert 1.5 <= took < 5.0, f"shutdown took {took:.1f}s with --reload-mercy 2"
    assert isinstance(slow.join(10), Exception)
    assert poll(lambda: not group_members(srv.proc.pid), 3)
    assert port_is_free(port)


# ---------------------------------------------------------------- resource pressure

@pytest.mark.serial  # loads the machine, or asserts a latency
def test_emfile_logs_sheds_load_and_recovers(serve, port):
    """The worker runs out of file descriptors: it logs, does not spin, keeps
    serving the connections it has, and accepts again once clients go."""
    srv = start(serve, port, "--listen", "128", workers=1, threads=2)
    wpid = srv.worker_pids()[1]
    used = len(os.listdir(f"/proc/{wpid}/fd"))
    limit = used + 6
    resource.prlimit(wpid, resource.RLIMIT_NOFILE, (limit, limit))
    conns = []
    try:
        for _ in range(30):
            # A started request head: handed to the worker at once (also with
            # TCP_DEFER_ACCEPT), and kept open waiting for the rest.
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /say/held HTTP/1.1\r\n")
            conns.append(s)
            time.sleep(0.01)
        srv.wait_log("Too many open files", timeout=5)
        cpu0, t0 = cpu_seconds(wpid), time.monotonic()
        time.sleep(1.5)
        cpu = (cpu_seconds(wpid) - cpu0) / (time.monotonic() - t0)
        assert cpu < 0.5, f"worker used {cpu:.0%} CPU while out of descriptors"
        assert "shedding load" in srv.log
        # A connection it already holds is still served.
        conns[0].sendall(b"Host: x\r\n\r\n")
        assert _read_response(conns[0], timeout=5) == (200, b"held")
        lines = srv.log.count("Too many open files")
        assert lines < 100, f"{lines} log lines in ~2 s"
    finally:
        for s in conns:
            s.close()
    # Pressure gone: new clients are served again.
    t0 = time.monotonic()
    st, _, body = http_get(port, "/say/recovered", timeout=10)
    assert (st, body) == (200, b"recovered")
    assert time.monotonic() - t0 < 3.0
    assert srv.worker_pids()[1] == wpid and "DAMN" not in srv.log


@pytest.mark.serial  # loads the machine, or asserts a latency
def test_full_listen_backlog_logs_and_recovers(serve, port):
    """--listen 4, the only core busy for 2.5 s, 40 clients arrive: the
    master logs that the listen queue is full, and once the core is free
    every client is served (SYN retries bring the dropped ones back)."""
    srv = start(serve, port, "--listen", "4", workers=1, threads=1)
    hold = threading.Thread(target=http_get, args=(port, "/sleep?s=2.5"), kwargs={"timeout": 10})
    hold.start()
    time.sleep(0.3)

    def client(i):
        try:
            st, _, body = http_get(port, f"/say/c{i}", timeout=25)
            return st == 200 and body == f"c{i}".encode()
        except Exception as e:  # noqa: BLE001
            return repr(e)

    with ThreadPoolExecutor(40) as ex:
        results = list(ex.map(client, range(40)))
    hold.join(10)
    assert results == [True] * 40, results
    assert re.search(r"listen queue .*full", srv.log, re.I), srv.log[-2000:]


# ---------------------------------------------------------------- privileges

def _privileged_port():
    for p in range(700, 1000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free port below 1024")


def _status_ids(pid):
    ids = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                ids[k] = [int(x) for x in v.split()]
    return ids


@pytest.fixture
def nobody_dir():
    """A directory user nobody can read (the app) and write (sockets)."""
    d = tempfile.mkdtemp(prefix="uwsgi-rs-uid-")
    try:
        os.chmod(d, 0o755)
        shutil.copy(WHOAMI, os.path.join(d, "rel_whoami.py"))
        os.chmod(os.path.join(d, "rel_whoami.py"), 0o644)
        tb = os.path.join(d, "tb")
        os.mkdir(tb, 0o700)
        os.chown(tb, 65534, 65534)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _check_dropped(srv, port):
    st, _, body = http_get(port, "/")
    assert st == 200, body
    ids = json.loads(body)
    assert (ids["uid"], ids["euid"], ids["gid"], ids["egid"]) == (65534,) * 4, ids
    assert ids["groups"] == [65534], ids
    status = _status_ids(ids["pid"])
    assert status["Uid"] == [65534] * 4 and status["Gid"] == [65534] * 4, status
    return ids["pid"]


def test_uid_gid_drop_after_binding_a_privileged_port(nobody_dir, nobody_bin, serve):
    """Sockets are bound as root (port < 1024), workers serve as
    nobody:nogroup, and so does a respawned worker."""
    port = _privileged_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", os.path.join(nobody_dir, "rel_whoami.py"),
                 "--master", "--processes", "2", "--threads", "2",
                 "--uid", "nobody", "--gid", "nogroup",
                 "--py-tracebacker", os.path.join(nobody_dir, "tb", "sock")],
                workers=2, cwd=nobody_dir)
    for pid in srv.worker_pids().values():
        assert _status_ids(pid)["Uid"] == [65534] * 4
    victim = _check_dropped(srv, port)
    os.kill(victim, signal.SIGKILL)
    srv.wait_log(") ready", count=3, timeout=10)
    for pid in srv.worker_pids().values():
        if pid != victim:
            assert _status_ids(pid)["Uid"] == [65534] * 4
    for _ in range(6):
        _check_dropped(srv, port)


def test_uid_gid_with_default_options_serves(nobody_dir, nobody_bin, serve):
    """The same without --py-tracebacker: the master's private tracebacker
    directory must not stop a worker that runs as nobody from starting."""
    port = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", os.path.join(nobody_dir, "rel_whoami.py"),
                 "--master", "--processes", "1", "--threads", "2",
                 "--uid", "nobody", "--gid", "nogroup"],
                workers=1, cwd=nobody_dir, ready=False)
    ok = poll(lambda: ") ready" in srv.log or srv.proc.poll() is not None, 10, interval=0.05)
    assert ok and ") ready" in srv.log, srv.log
    _check_dropped(srv, port)


def test_pidfile2_is_written_as_the_workers_user(nobody_dir, nobody_bin, serve):
    """--pidfile is written by the master as root; --pidfile2, which uWSGI
    writes after dropping privileges, as --uid's user (so not where only
    root may write). Both hold the master's pid and go at a clean exit."""
    run = os.path.join(nobody_dir, "run")
    os.mkdir(run, 0o755)
    os.chown(run, 65534, 65534)
    first, second = os.path.join(run, "root.pid"), os.path.join(run, "user.pid")
    port = free_port()
    app = os.path.join(nobody_dir, "rel_whoami.py")
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", app,
                 "--uid", "nobody", "--gid", "nogroup", "--pidfile", first, "--pidfile2", second],
                cwd=nobody_dir)
    for path, owner in ((first, 0), (second, 65534)):
        assert open(path).read() == f"{srv.proc.pid}\n", path
        assert os.stat(path).st_uid == owner, path
    _check_dropped(srv, port)
    assert "NOT HONOURED" not in srv.log
    srv.stop()
    assert not os.path.exists(first) and not os.path.exists(second)
    # Where only root may write: no pidfile2, and no start.
    root_only = os.path.join(nobody_dir, "root.pid")
    srv = serve(["--http", f"127.0.0.1:{free_port()}", "--wsgi-file", app,
                 "--uid", "nobody", "--gid", "nogroup", "--pidfile2", root_only],
                cwd=nobody_dir, ready=False)
    assert srv.proc.wait(15) == 1, srv.log
    assert f"cannot write pidfile2 {root_only}" in srv.log, srv.log
    assert not os.path.exists(root_only)


def test_uid_unreadable_wsgi_file_says_permission_denied(nobody_dir, nobody_bin, serve):
    """A --wsgi-file that user nobody may not read (the file, or a directory
    on its path) is reported as such, not as a missing file."""
    closed = os.path.join(nobody_dir, "closed")
    os.mkdir(closed, 0o700)
    shutil.copy(WHOAMI, os.path.join(closed, "app.py"))
    private = os.path.join(nobody_dir, "private.py")
    shutil.copy(WHOAMI, private)
    os.chmod(private, 0o600)
    cases = [(os.path.join(closed, "app.py"), "permission denied (uid 65534, gid 65534)"),
             (private, "permission denied (uid 65534, gid 65534)"),
             (os.path.join(nobody_dir, "missing.py"), "no such file")]
    for app, why in cases:
        srv = serve(["--http", f"127.0.0.1:{free_port()}", "--wsgi-file", app,
                     "--uid", "nobody", "--gid", "nogroup"],
                    cwd=nobody_dir, ready=False)
        assert srv.proc.wait(15) == 1, srv.log
        assert f"unable to load app: {app}: {why}" in srv.log, srv.log
