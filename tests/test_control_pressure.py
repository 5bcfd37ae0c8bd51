"""The control side under pressure (issue 12, items 8 and 9 and the dump
risk): tracebacker and stats clients that connect and never read, or
never send, must delay nobody but themselves; the harakiri path never
depends on the public tracebacker socket; the GIL-free dump never drops
frames silently; concurrent dumps share snapshots; the stats server runs
in a process of its own and comes back if it dies."""

import json
import os
import re
import signal
import socket
import threading
import time

from conftest import BIN, Bg, http_get
from helpers import copy_app, free_port, read_socket, wait_for
import helpers

HEADER = b"*** uWSGI Python tracebacker output ***"
MARK_RE = re.compile(r"^thread_id = (?P<tid>.+?) (?P<mark>\.\.\. .+)$", re.M)


def stalled_unix(path, n, send=b""):
    """n clients connected to a UNIX socket that never read."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(str(path))
        if send:
            s.sendall(send)
        socks.append(s)
    return socks


def stalled_tcp(port, n, send=b""):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        if send:
            s.sendall(send)
        socks.append(s)
    return socks


def close_all(socks):
    for s in socks:
        s.close()


def ask_json(path):
    """The rich dump of one worker. The server gives JSON only if the request
    line comes within 10 ms of the connection (uWSGI's clients send nothing
    and get the plain dump); a client thread descheduled in between (20 of
    them share one GIL here) gets the plain dump: ask again, as
    `uwsgi-rs --tracebacks` does."""
    for _ in range(5):
        data = read_socket(path, send=b"json\n", timeout=10)
        if not data.startswith(HEADER):
            return json.loads(data)
    raise AssertionError(f"no JSON answer from {path} in 5 tries")


def wait_up(srv, path, timeout=20):
    wait_for(lambda: read_socket(path, timeout=5).startswith(HEADER), timeout,
             f"tracebacker {path}")


# ------------------------------------------------ item 8: the tracebacker

def test_silent_tracebacker_clients_delay_neither_harakiri_nor_other_clients(
        serve, port, tmp_path):
    """Three clients that connect to the public socket and never read, with a
    dump far larger than a socket buffer (64 threads x 100 frames, ~1 MB):
    the harakiri dump is logged complete and the kill is on time; another
    client (uWSGI's --connect-and-read) is served meanwhile."""
    app = copy_app("tb_deep.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master", "--lazy-apps",
                 "--threads", "2", "--harakiri", "3", "--py-tracebacker", base],
                ready=False)
    srv.wait_ready(timeout=30)
    wait_up(srv, base + "1")
    stalled = stalled_unix(base + "1", 3)
    try:
        t0 = time.time()
        r = helpers.run([BIN, "--connect-and-read", base + "1"], capture_output=True,
                        timeout=20)
        took = time.time() - t0
        assert r.returncode == 0 and r.stdout.startswith(HEADER), r.stderr
        assert r.stdout.count(b"function = descend") >= 64 * 100
        assert took < 3, took
        more = stalled_unix(base + "1", 3)  # silent ones keep coming
        stalled += more
        t0 = time.time()
        Bg(port, "/busy", timeout=30)
        wait_for(lambda: "killed by signal 9" in srv.log, 10, "the harakiri kill")
        kill_after = time.time() - t0
        log = srv.log
        i = log.index("*** HARAKIRI ON WORKER 1")
        dump = log[i:log.index("HARAKIRI !!! worker 1 status")]
        assert "function = crunch line = return sum(range(10**10))" in dump, log
        assert dump.count("function = descend") >= 64 * 100, "the whole dump was logged"
        assert "cannot read the worker's traceback" not in log
        # --harakiri 3: fires 3 s in (the check runs every 200 ms), the
        # GIL-free dump of ~1 MB takes a fraction of a second.
        assert kill_after < 4.6, kill_after
    finally:
        close_all(stalled)


def test_a_flood_of_public_clients_leaves_the_masters_dumps_alone(serve, port, tmp_path):
    """The master dumps through the worker's private socket (in its 0700
    directory), which has its own client budget: 300 silent clients at the
    public socket (more than it takes at once) change nothing for it."""
    app = copy_app("tb_app.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--harakiri", "2", "--py-tracebacker", base])
    wait_up(srv, base + "1")
    stalled = stalled_unix(base + "1", 300)
    try:
        t0 = time.time()
        Bg(port, "/sleep/30", timeout=20)
        wait_for(lambda: "*** HARAKIRI ON WORKER" in srv.log, 10, "harakiri")
        assert time.time() - t0 < 3.5
        wait_for(lambda: "HARAKIRI triggered" in srv.log, 5, "the end of the report")
        assert "function = nap" in srv.log, srv.log
        assert "clients at once" in srv.log, "the flood was noticed (and logged once)"
    finally:
        close_all(stalled)


def test_gil_free_dump_marks_what_it_cannot_show(serve, port, tmp_path):
    """A request 153 frames deep holding the GIL in C: faulthandler shows the
    innermost 100. Never silently: the cut is marked; and when an exact dump
    of the same thread was taken earlier (here while the request slept at
    that depth), the outermost frames come back from it, marked as such."""
    app = copy_app("obs_deep_gil.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--threads", "2", "--py-tracebacker", base, "--reload-mercy", "1"])
    wait_up(srv, base + "1")
    # 1) no exact dump before the GIL was taken: the mark says frames are missing
    Bg(port, "/deep", timeout=60)

    def cut_dump():
        d = read_socket(base + "1", timeout=10).decode()
        return d if "function = crunch" in d else None
    d = wait_for(cut_dump, 15, "a dump showing crunch")
    marks = MARK_RE.findall(d)
    assert marks and "more frames" in marks[0][1], d[:2000]
    frames = [ln for ln in d.splitlines() if "function = " in ln and "Core" in ln.split()[2]]
    assert len(frames) == 100 and "function = crunch" in frames[-1], len(frames)
    assert "function = application" not in d, "outermost frames are unknown here"
    js = json.loads(helpers.run([BIN, "--tracebacks", base, "--json"], capture_output=True,
                                timeout=30).stdout)
    cut = [t for w in js["workers"] if "threads" in w for t in w["threads"] if t.get("cut")]
    assert cut and cut[0]["cut"]["at"] == 0 and cut[0]["cut"]["outer_age_ms"] is None, cut
    srv.stop(sig=signal.SIGQUIT)

    # 2) an exact dump while the request slept at depth: spliced back, marked
    port2 = free_port()
    srv = serve(["--http", f"127.0.0.1:{port2}", "--wsgi-file", str(app), "--master",
                 "--threads", "2", "--py-tracebacker", base + "b.", "--reload-mercy", "1"])
    wait_up(srv, base + "b.1")
    Bg(port2, "/deep?sleep=1.5", timeout=60)
    wait_for(lambda: "function = bottom line = time.sleep(pause)" in
             read_socket(base + "b.1").decode(), 10, "the exact dump at depth")
    d = wait_for(lambda: (lambda t: t if "function = crunch" in t else None)(
        read_socket(base + "b.1", timeout=10).decode()), 15, "the GIL-held dump")
    mark = MARK_RE.search(d)
    assert mark and "frames above are from an exact dump" in mark["mark"], d[:3000]
    lines = [ln for ln in d.splitlines() if ln.startswith("thread_id = uWSGIWorker")]
    funcs = [re.search(r"function = (\S+)", ln)[1] for ln in lines if "function = " in ln]
    assert funcs[0] == "application" and funcs[-1] == "crunch", funcs[:3] + funcs[-3:]
    assert len(funcs) == 1 + 150 + 2, len(funcs)


def test_concurrent_dumps_share_snapshots(serve, port, tmp_path):
    """20 clients asking at once are answered from a few snapshots, and 20
    clients dumping in a loop get at most ~20 snapshots a second between
    them (MIN_GAP): the worker pays for one client, not twenty."""
    app = copy_app("tb_app.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--py-tracebacker", base])
    wait_up(srv, base + "1")
    answers = []
    go = threading.Event()

    def one():
        go.wait()
        answers.append(ask_json(base + "1"))
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    go.set()
    for t in threads:
        t.join(15)
    assert len(answers) == 20
    snapshots = {a["collect_ms"] for a in answers}
    assert len(snapshots) <= 6, sorted(snapshots)

    seen = set()
    stop = time.time() + 2.0

    def loop():
        while time.time() < stop:
            seen.add(ask_json(base + "1")["collect_ms"])
    threads = [threading.Thread(target=loop) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    # 2 s / 50 ms = 40 at most, plus the one in flight at each end.
    assert 2 <= len(seen) <= 42, len(seen)
    status, _, _ = http_get(port, "/")
    assert status == 200


# ------------------------------------------------ item 9: the stats server

def timed_json_read(addr, send=b"", timeout=10):
    t0 = time.time()
    data = read_socket(addr, send=send, timeout=timeout)
    return data, time.time() - t0


def test_200_silent_stats_readers_delay_no_real_reader(serve, port, tmp_path):
    """--stats (uWSGI's JSON on connect), TCP and UNIX: 200 clients that
    connect and never read; a real reader is served at once, and so is the
    master's harakiri."""
    app = copy_app("tb_app.py", tmp_path)
    stats_port = free_port()
    sock = tmp_path / "stats.sock"
    for addr, stall in ((f"127.0.0.1:{stats_port}", lambda: stalled_tcp(stats_port, 200)),
                        (str(sock), lambda: stalled_unix(sock, 200))):
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                     "--stats", addr, "--harakiri", "2"])
        target = ("127.0.0.1", stats_port) if ":" in addr else str(sock)
        wait_for(lambda: read_socket(target, timeout=5).startswith(b"{"), 10, "stats up")
        stalled = stall()
        try:
            data, took = timed_json_read(target)
            assert json.loads(data)["workers"][0]["id"] == 1
            assert took < 1.0, took
            t0 = time.time()
            Bg(port, "/sleep/30", timeout=20)
            wait_for(lambda: "*** HARAKIRI ON WORKER" in srv.log, 10, "harakiri")
            assert time.time() - t0 < 3.5
        finally:
            close_all(stalled)
            srv.stop()


def test_200_silent_http_stats_clients_delay_no_real_reader(serve, port, tmp_path):
    """--stats-http: 200 clients that connect and send nothing, 200 that send
    a request and never read the answer; a real GET is answered at once."""
    app = copy_app("tb_app.py", tmp_path)
    stats_port = free_port()
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
           "--stats", f"127.0.0.1:{stats_port}", "--stats-http"])
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    wait_for(lambda: b"200 OK" in read_socket(("127.0.0.1", stats_port), send=get), 10,
             "stats up")
    stalled = stalled_tcp(stats_port, 200) + stalled_tcp(stats_port, 200, send=get)
    try:
        for path in (b"/", b"/metrics"):
            data, took = timed_json_read(("127.0.0.1", stats_port),
                                         send=b"GET " + path + b" HTTP/1.1\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 200 OK"), data[:100]
            assert took < 1.0, (path, took)
    finally:
        close_all(stalled)


def test_stats_server_is_its_own_process_and_is_respawned(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    sock = tmp_path / "stats.sock"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--stats", str(sock)])
    pid = int(re.search(r"stats server \(pid: (\d+)\)", srv.log)[1])
    assert pid not in (srv.proc.pid, *srv.worker_pids().values())
    doc = json.loads(read_socket(str(sock)))
    assert doc["pid"] == srv.proc.pid, "the document names the master"
    os.kill(pid, signal.SIGKILL)
    srv.wait_log(f"stats server (pid: {pid}) died (killed by signal 9): respawning")
    wait_for(lambda: json.loads(read_socket(str(sock)))["pid"] == srv.proc.pid, 5,
             "stats served again")
    new = [int(p) for p in re.findall(r"stats server \(pid: (\d+)\) serving", srv.log)]
    assert len(new) == 2 and new[1] != pid
    status, _, _ = http_get(port, "/")
    assert status == 200
    srv.stop()
    assert not sock.exists()
    try:
        os.kill(new[1], 0)
        raise AssertionError("the stats process outlived the master")
    except ProcessLookupError:
        pass
