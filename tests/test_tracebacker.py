"""End-to-end tests of --py-tracebacker and --connect-and-read: the dump's
exact format, the seed example, the GIL-held (GIL-free) path, app threads,
non-ASCII code, socket security and life cycle, and dump latency.
Apps that start threads when imported run with --lazy-apps: preloaded, those
threads would live in the loader only.
"""

import json
import os
import re
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

from conftest import APPS, BIN, ROOT, http_get, Bg
from helpers import copy_app, lineno_of, popen, quick_stop, read_socket, spawned_pids
import helpers

HEADER = "*** uWSGI Python tracebacker output ***"
FRAME_RE = re.compile(
    r"^thread_id = (?P<tid>.+?) filename = (?P<file>\S.*?) lineno = (?P<lineno>\d+)"
    r" function = (?P<func>\S+?)(?: line = (?P<line>.+))?$")
# A thread whose frames a dump could not all see is marked, never cut
# silently: `thread_id = NAME ... what happened`, where the cut is.
MARK_RE = re.compile(r"^thread_id = (?P<tid>.+?) (?P<mark>\.\.\. .+)$")
NAIVE = unicodedata.normalize("NFC", "tb_naïve.py")


# ---------------------------------------------------------------- helpers

def read_tb(path, timeout=5.0):
    """Connect to a tracebacker socket, read to EOF: (bytes, seconds)."""
    t0 = time.perf_counter()
    data = read_socket(path, timeout=timeout)
    return data, time.perf_counter() - t0


def connect_and_read(path, *extra, timeout=15):
    return helpers.run([BIN, "--connect-and-read", str(path), *extra],
                       capture_output=True, timeout=timeout)


def parse_dump(data, marks=None):
    """Strictly parse a dump: [(thread_name, [frame dicts])]. Cut marks go
    into `marks` (thread name -> (index of the frame after it, text)) if
    given, else they fail the parse."""
    text = data.decode("utf-8")
    assert text.startswith(HEADER + "\n\n"), f"bad header: {text[:200]!r}"
    rest = text[len(HEADER) + 2:]
    if not rest:
        return []
    assert rest.endswith("\n\n"), f"dump must end with a blank line: {text[-200:]!r}"
    threads = []
    for block in rest[:-2].split("\n\n"):
        lines = block.split("\n")
        frames = []
        for ln in lines:
            mark = MARK_RE.match(ln)
            if mark and marks is not None and not FRAME_RE.match(ln):
                marks[mark["tid"]] = (len(frames), mark["mark"])
                continue
            m = FRAME_RE.match(ln)
            assert m, f"bad frame line {ln!r} in dump:\n{text}"
            d = m.groupdict()
            d["lineno"] = int(d["lineno"])
            frames.append(d)
        tids = {f["tid"] for f in frames}
        assert len(tids) == 1, f"one thread per block, got {tids}:\n{text}"
        threads.append((frames[0]["tid"], frames))
    return threads


def funcs(frames):
    return [f["func"] for f in frames]


def wait_dump(path, pred, timeout=10.0, what="condition"):
    """Poll the socket until pred(parsed dump) is true; return the dump."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            data, _ = read_tb(path)
            last = data
            if pred(parse_dump(data)):
                return parse_dump(data)
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} not seen on {path} within {timeout}s; last dump:\n"
                         f"{(last or b'').decode('utf-8', 'replace')}")


def wait_socks(server, paths, timeout=20.0):
    """The worker is up once its tracebacker socket answers with a header."""
    deadline = time.time() + timeout
    for p in paths:
        while True:
            try:
                if read_tb(p)[0].startswith(HEADER.encode()):
                    break
            except OSError:
                pass
            assert server.proc.poll() is None, f"server exited:\n{server.log}"
            assert time.time() < deadline, f"{p} never answered:\n{server.log}"
            time.sleep(0.05)










# ---------------------------------------------------------------- the seed

def test_seed_example_end_to_end(serve, port, tmp_path):
    """The seed's command line exactly, 4 concurrent curls, both sockets."""
    slow = copy_app("slow.py", tmp_path, ROOT / "examples")  # the seed app the README runs
    base = f"{tmp_path}/tbsocket."
    srv = serve(["--http", f":{port}", "-w", "slow", "--master", "--processes", "2",
                 "--threads", "4", "--py-tracebacker", base], workers=2, ready=False)
    socks = [base + "1", base + "2"]
    curls = []
    try:
        wait_socks(srv, socks)
        for _ in range(4):
            curls.append(popen(
                ["curl", "-s", "-m", "70", f"http://localhost:{port}/"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 15
        while True:
            outs = [connect_and_read(p) for p in socks]
            for o in outs:
                assert o.returncode == 0, o.stderr
            busy = sum(len(parse_dump(o.stdout)) for o in outs)
            if busy >= 4 or time.time() > deadline:
                break
            time.sleep(0.1)
        frame_re = re.compile(
            r"^thread_id = uWSGIWorker[12]Core[0-3] filename = \S+/slow\.py lineno = \d+ "
            r"function = (application|dormi5|dormi4|dormi3|dormi2|dormi) line = .+$")
        expect = [("application", 20, "dormi5()"), ("dormi5", 16, "dormi4()"),
                  ("dormi4", 13, "dormi3()"), ("dormi3", 10, "dormi2()"),
                  ("dormi2", 7, "dormi()"), ("dormi", 4, "time.sleep(60)")]
        total = 0
        for w, o in zip((1, 2), outs):
            text = o.stdout.decode("utf-8")
            lines = text.split("\n")
            assert lines[0] == HEADER and lines[1] == "", text
            body = lines[2:]
            assert body[-1] == "", "output ends with a newline"
            body = body[:-1]
            # blocks of exactly 6 frame lines, each followed by a blank line
            assert len(body) % 7 == 0, text
            cores = set()
            for i in range(0, len(body), 7):
                block, blank = body[i:i + 6], body[i + 6]
                assert blank == "", text
                for ln in block:
                    assert frame_re.match(ln), f"line {ln!r} fails the strict regex"
                tp = parse_dump((HEADER + "\n\n" + "\n".join(block) + "\n\n").encode())
                (tid, frames), = tp
                assert re.fullmatch(rf"uWSGIWorker{w}Core[0-3]", tid), (w, tid)
                assert tid not in cores, f"{tid} twice"
                cores.add(tid)
                got = [(f["func"], f["lineno"], f["line"]) for f in frames]
                assert got == expect, text
                for f in frames:
                    assert os.path.samefile(f["file"], slow), f["file"]
                total += 1
        assert total == 4, [o.stdout.decode() for o in outs]
    finally:
        for c in curls:
            c.kill()
            c.wait(5)
        quick_stop(srv)


# ------------------------------------------------------- connect-and-read

def test_connect_and_read_client(tmp_path):
    # success: prints exactly what the peer sends, exit 0
    ok_path = tmp_path / "ok.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(ok_path))
    srv.listen(4)
    payload = "hello\nwörld\n".encode() + bytes(range(256)) * 300

    def answer():
        c, _ = srv.accept()
        c.sendall(payload)
        c.close()
    t = threading.Thread(target=answer, daemon=True)
    t.start()
    r = connect_and_read(ok_path)
    assert r.returncode == 0 and r.stdout == payload, r
    srv.close()

    def fails(result, path):
        assert result.returncode != 0, result
        assert result.stdout == b"", result
        err = result.stderr.decode("utf-8", "replace")
        lines = err.splitlines()
        assert len(lines) == 1 and err.endswith("\n"), err
        assert lines[0].startswith("uwsgi-rs: "), err
        assert str(path) in lines[0], err

    # missing socket
    missing = tmp_path / "nope.1"
    fails(connect_and_read(missing), missing)
    # refused: a stale socket file nobody listens on
    stale = tmp_path / "stale.1"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    fails(connect_and_read(stale), stale)
    # timeout: a peer that accepts and never writes nor closes
    hang = tmp_path / "hang.1"
    h = socket.socket(socket.AF_UNIX)
    h.bind(str(hang))
    h.listen(4)
    held = []
    ht = threading.Thread(target=lambda: held.append(h.accept()), daemon=True)
    ht.start()
    t0 = time.monotonic()
    r = connect_and_read(hang, "--socket-timeout", "1", timeout=10)
    took = time.monotonic() - t0
    fails(r, hang)
    assert 0.8 <= took < 4, took
    for c, _ in held:
        c.close()
    h.close()


# ------------------------------------------------------------- GIL path

def test_idle_and_busy_cores_gil_path(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--threads", "4", "--reload-mercy", "1", "--py-tracebacker", base],
                ready=False)
    try:
        wait_socks(srv, [base + "1"])
        data, _ = read_tb(base + "1")
        assert data == (HEADER + "\n\n").encode(), "idle threads must print nothing"
        assert http_get(port, "/ping")[0] == 200
        reqs = [Bg(port, "/sleep/30"), Bg(port, "/sleep/31")]
        dump = wait_dump(base + "1", lambda d: len(d) == 2, what="two busy cores")
        names = sorted(t for t, _ in dump)
        assert all(re.fullmatch(r"uWSGIWorker1Core[0-3]", n) for n in names), names
        assert len(set(names)) == 2
        nap_line = lineno_of(app, "time.sleep(seconds)")
        for _, frames in dump:
            assert funcs(frames) == ["application", "nap"], frames
            assert frames[-1]["lineno"] == nap_line
            assert frames[-1]["line"] == "time.sleep(seconds)"
            assert os.path.samefile(frames[0]["file"], app)
        assert reqs[0].result is None  # still asleep: dumping did not disturb it
    finally:
        quick_stop(srv)


# ------------------------------------------------------------ GIL held

def _gil_held_timings(path, n=5, marks=None):
    """Call 0.5 s after the GIL-holding request was sent. The first connect
    is the slow one (it waits for the GIL before going GIL-free); later ones
    may go GIL-free at once while the first collection still waits. Cut
    marks of each dump are appended to `marks` if given."""
    time.sleep(0.5)
    times = []
    dumps = []
    for _ in range(n):
        data, took = read_tb(path, timeout=5)
        times.append(took)
        m = {}
        dumps.append(parse_dump(data, m if marks is not None else None))
        if marks is not None:
            marks.append(m)
    return times, dumps


def test_dump_while_gil_held_in_c(serve, port, tmp_path):
    busy = copy_app("busy.py", tmp_path, APPS)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(busy), "--master",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base],
                ready=False)
    try:
        wait_socks(srv, [base + "1"])
        pid_before = spawned_pids(srv.log)[1]
        Bg(port, "/busy", timeout=30)
        times, dumps = _gil_held_timings(base + "1")
        print(f"\nGIL-held dump (busy.py): first {times[0]*1000:.1f} ms, median "
              f"{statistics.median(times)*1000:.1f} ms, max {max(times)*1000:.1f} ms")
        assert max(times) < 0.2, times
        for d in dumps:
            assert len(d) == 1, d
            tid, frames = d[0]
            assert re.fullmatch(r"uWSGIWorker1Core[01]", tid), tid
            tail = [(f["func"], f["lineno"], f["line"]) for f in frames[-2:]]
            assert tail == [("application", 10, "crunch()"),
                            ("crunch", 5, "return sum(range(10**10))")], frames
            assert all(f["file"].endswith("/busy.py") for f in frames)
        # the client works too, and the worker survived both dumps
        r = connect_and_read(base + "1", timeout=10)
        assert r.returncode == 0 and b"function = crunch" in r.stdout, r
        assert spawned_pids(srv.log) == {1: pid_before}
        assert "DAMN" not in srv.log and "died" not in srv.log, srv.log
        os.kill(pid_before, 0)
        with open(f"/proc/{pid_before}/stat") as f:
            assert f.read().split(") ")[1][0] in "RS", "worker must still run"
    finally:
        quick_stop(srv)


def _rich_dump(path):
    """The JSON dump; asked again if this client was descheduled past the
    server's 10 ms request wait (it then got the plain dump)."""
    for _ in range(5):
        data = read_socket(path, send=b"json\n", timeout=10)
        if not data.startswith(HEADER.encode()):
            return json.loads(data)
    raise AssertionError(f"no JSON dump from {path} in 5 tries")


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_gil_stuck_before_first_dump_later_dumps_skip_the_wait(serve, port, tmp_path):
    """The dump's GIL collector is started by the first dump. When the app
    already holds the GIL in C by then (the usual case: one dumps a stuck
    worker), the collector never gets the GIL, not even to attach: the
    first dump waits the full GIL bound (60 ms) and goes GIL-free, and
    every later one must see the GIL stuck and go GIL-free at once
    (gil_wait_ms 0). Before the fix each of them waited the 60 ms again
    (collect_ms ~62, ~112 ms per back-to-back dump)."""
    busy = copy_app("busy.py", tmp_path, APPS)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(busy), "--master",
                 "--threads", "2", "--py-tracebacker", base])
    try:
        pid = srv.worker_pids()[1]
        deadline = time.time() + 10
        while not os.path.exists(base + "1"):
            assert time.time() < deadline, f"no tracebacker socket:\n{srv.log}"
            time.sleep(0.02)
        # No dump before crunch() holds the GIL: its CPU time says it runs.
        cpu0 = _cpu_seconds(pid)
        Bg(port, "/busy", timeout=30)
        deadline = time.time() + 20
        while _cpu_seconds(pid) - cpu0 < 0.3:
            assert time.time() < deadline, "crunch() never ran"
            time.sleep(0.05)
        first, took = read_tb(base + "1", timeout=10)
        assert [funcs(f)[-1] for _, f in parse_dump(first)] == ["crunch"], first
        for _ in range(3):
            w = _rich_dump(base + "1")
            assert w["collected_by"] == "signal", w
            assert w["gil_wait_ms"] == 0, (
                f"a dump waited {w['gil_wait_ms']:.1f} ms for a GIL known stuck "
                f"(first dump {took * 1000:.1f} ms); collect_ms {w['collect_ms']:.1f}")
            assert w["collect_ms"] < 60, w["collect_ms"]
            core = [t for t in w["threads"] if t["state"] == "busy"]
            assert len(core) == 1 and core[0]["holds_gil"] is True, w["threads"]
            assert core[0]["frames"][-1]["function"] == "crunch", core[0]
    finally:
        quick_stop(srv)


def test_lone_client_dumping_back_to_back_is_not_spaced(serve, port, tmp_path):
    """Snapshots are spaced 50 ms apart only once clients overlap (the
    storm guard, test_control_pressure.py): one client dumping again as soon
    as it has its answer, as bench/tracebacker.py and a watch loop do, is
    answered after the 10 ms request wait and the collection, with the GIL
    held in C too. Spaced 50 ms, every such dump took 50 ms or more."""
    busy = copy_app("busy.py", tmp_path, APPS)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(busy), "--master",
                 "--threads", "2", "--py-tracebacker", base])
    try:
        wait_socks(srv, [base + "1"])
        Bg(port, "/busy", timeout=30)
        wait_dump(base + "1", lambda d: any(funcs(f)[-1:] == ["crunch"] for _, f in d),
                  what="a core in crunch()")
        times = []
        for _ in range(10):
            data, took = read_tb(base + "1", timeout=10)
            assert [funcs(f)[-1] for _, f in parse_dump(data)] == ["crunch"], data
            times.append(took)
        med = statistics.median(times)
        print(f"\nlone client, back to back, GIL held: median {med * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms")
        assert med < 0.045, times
    finally:
        quick_stop(srv)


# ------------------------------------------------------------ non-ASCII

def test_non_ascii_file_function_and_source(serve, port, tmp_path):
    app = copy_app(NAIVE, tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base],
                ready=False)
    want_sleep = [("application", 17, "schläft()"),
                  ("schläft", 6, "time.sleep(30)  # ждать")]
    want_busy = [("application", 19, "считать()"),
                 ("считать", 10, "return sum(range(10**10))  # жжж")]

    def check(frames, want):
        assert [(f["func"], f["lineno"], f["line"]) for f in frames] == want, frames
        for f in frames:
            assert unicodedata.normalize("NFC", os.path.basename(f["file"])) == NAIVE, f
            assert os.path.samefile(f["file"], app)
    try:
        wait_socks(srv, [base + "1"])
        Bg(port, "/sleep")
        d = wait_dump(base + "1", lambda d: len(d) == 1, what="schläft")
        check(d[0][1], want_sleep)
        # GIL held in C from a non-ASCII function; the sleeper is still shown
        Bg(port, "/busy", timeout=30)
        time.sleep(0.5)
        data, took = read_tb(base + "1")
        print(f"\nGIL-held dump (non-ASCII app, first): {took*1000:.1f} ms")
        assert took < 0.2, took
        d = dict(parse_dump(data))
        assert len(d) == 2, d
        by_func = {funcs(f)[-1]: f for f in d.values()}
        check(by_func["schläft"], want_sleep)
        check(by_func["считать"], want_busy)
        assert set(d) == {"uWSGIWorker1Core0", "uWSGIWorker1Core1"}, d.keys()
    finally:
        quick_stop(srv)


# ------------------------------------------------------------ app threads

def test_app_thread_names(serve, port, tmp_path):
    app = copy_app("tb_poller.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master", "--lazy-apps",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base],
                ready=False)
    poll_line = lineno_of(app, "def poll_forever") + 2
    unnamed_line = lineno_of(app, "def unnamed_loop") + 2

    def check_threads(d, full):
        names = [t for t, _ in d]
        assert names.count("my-poller") == 1, names
        assert names.count("<UnnamedPythonThread>") == 1, names
        poller = dict(d)["my-poller"]
        assert poller[-1]["func"] == "poll_forever", poller
        assert poller[-1]["lineno"] in (poll_line - 1, poll_line), poller
        unnamed = dict(d)["<UnnamedPythonThread>"]
        assert funcs(unnamed) == ["unnamed_loop"], unnamed
        assert unnamed[-1]["lineno"] in (unnamed_line - 1, unnamed_line), unnamed
        if full:  # the GIL path shows threading's bootstrap frames too
            assert poller[0]["func"] == "_bootstrap", poller
            assert poller[0]["file"].endswith("threading.py")
            assert poller[-1]["line"] == "time.sleep(0.05)", poller
    try:
        wait_socks(srv, [base + "1"])
        d = wait_dump(base + "1", lambda d: len(d) == 2, what="app threads")
        check_threads(d, True)
        Bg(port, "/busy", timeout=30)
        time.sleep(0.5)
        data, took = read_tb(base + "1")
        assert took < 0.2, took
        d = parse_dump(data)
        assert len(d) == 3, d
        check_threads(d, False)
        core = [f for t, f in d if t.startswith("uWSGIWorker1Core")]
        assert len(core) == 1 and funcs(core[0])[-2:] == ["application", "crunch"], d
    finally:
        quick_stop(srv)


# ------------------------------------------------------------ socket security

def test_socket_mode_default_and_chmod(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    for extra, mode in (([], 0o600), (["--chmod-socket=660"], 0o660)):
        base = f"{tmp_path}/m{mode:o}."
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                     "--processes", "2", "--py-tracebacker", base, *extra],
                    workers=2, ready=False)
        wait_socks(srv, [base + "1", base + "2"])
        for w in (1, 2):
            st = os.lstat(base + str(w))
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == mode, (extra, oct(st.st_mode))
        srv.stop()


def _connect_as_nobody(path, timeout=10.0):
    """Fork, drop to uid/gid 65534, read the socket: 'DATA <n>' or an error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only plain syscalls, then _exit
        msg = b"ERR"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(path)
            got = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
            msg = b"DATA %d " % len(got) + got[:200]
        except PermissionError:
            msg = b"EACCES"
        except BaseException as e:  # noqa: BLE001
            msg = b"ERR " + repr(e).encode()
        finally:
            os.write(w, msg)
            os._exit(0)
    os.close(w)
    deadline = time.time() + timeout
    while time.time() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    out = os.read(r, 65536)
    os.close(r)
    return out


def test_other_uid_is_refused(serve, port, tmp_path):
    assert os.geteuid() == 0, "this test drops to nobody and must run as root"
    app = copy_app("tb_app.py", tmp_path)
    d = tempfile.mkdtemp(prefix="tbuid", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        base = f"{d}/tb."
        # default 0600: nobody cannot even connect
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                     "--py-tracebacker", base], ready=False)
        wait_socks(srv, [base + "1"])
        assert _connect_as_nobody(base + "1") == b"EACCES"
        srv.stop()
        # 666: nobody connects, gets nothing, and the refusal is logged
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                     "--threads", "2", "--reload-mercy", "1",
                     "--chmod-socket=666", "--py-tracebacker", base], ready=False)
        wait_socks(srv, [base + "1"])
        assert stat.S_IMODE(os.lstat(base + "1").st_mode) == 0o666
        Bg(port, "/sleep/30")
        wait_dump(base + "1", lambda x: len(x) == 1, what="a busy core")
        assert _connect_as_nobody(base + "1") == b"DATA 0 "
        srv.wait_log("refused a connection from uid 65534", timeout=5)
        # root (and the owner) still get the dump
        assert len(parse_dump(read_tb(base + "1")[0])) == 1
        quick_stop(srv)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------ socket life cycle

def test_stale_socket_is_replaced(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    base = f"{tmp_path}/tb."
    s = socket.socket(socket.AF_UNIX)
    s.bind(base + "1")
    s.close()
    assert stat.S_ISSOCK(os.lstat(base + "1").st_mode)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--py-tracebacker", base], ready=False)
    wait_socks(srv, [base + "1"])
    assert read_tb(base + "1")[0] == (HEADER + "\n\n").encode()
    assert http_get(port, "/ping")[0] == 200


def test_regular_file_is_never_replaced(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    base = f"{tmp_path}/tb."
    victim = Path(base + "1")
    victim.write_bytes(b"precious data\n")
    before = os.stat(victim)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--py-tracebacker", base], ready=False)
    rc = srv.proc.wait(20)
    assert rc != 0, srv.log
    assert any(str(victim) in ln for ln in srv.log.splitlines()), srv.log
    after = os.stat(victim)
    assert stat.S_ISREG(after.st_mode) and victim.read_bytes() == b"precious data\n"
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_sockets_removed_on_shutdown_and_recreated_on_respawn(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    base = f"{tmp_path}/tb."
    socks = [base + "1", base + "2"]
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master", "--lazy-apps",
                 "--processes", "2", "--py-tracebacker", base],
                workers=2, ready=False, env={"TB_PID_THREAD": "1"})
    wait_socks(srv, socks)
    pids = spawned_pids(srv.log)
    for w in (1, 2):
        wait_dump(socks[w - 1], lambda d, w=w: [t for t, _ in d] == [f"tb-pid-{pids[w]}"],
                  what=f"worker {w}'s pid thread")
    os.kill(pids[1], signal.SIGKILL)
    srv.wait_log("Respawned uwsgi-rs worker 1 (new pid: ", timeout=10)
    new = spawned_pids(srv.log)[1]
    assert new != pids[1]
    wait_dump(socks[0], lambda d: [t for t, _ in d] == [f"tb-pid-{new}"],
              what="the respawned worker's dump")
    assert [t for t, _ in parse_dump(read_tb(socks[1])[0])] == [f"tb-pid-{pids[2]}"]
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(15) == 0, srv.log
    for p in socks:
        assert not os.path.lexists(p), f"{p} left behind"
    assert tmp_path.is_dir() and app.exists()


# ------------------------------------------------------------ latency

def test_latency_64_threads_100_deep(serve, port, tmp_path):
    app = copy_app("tb_deep.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master", "--lazy-apps",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base],
                ready=False)
    sleep_line = lineno_of(app, "time.sleep(1)")

    def all_deep(d):
        deep = [f for t, f in d if t.startswith("deep-")]
        return len(deep) == 64 and all(funcs(f).count("descend") == 100 for f in deep)
    try:
        wait_socks(srv, [base + "1"])
        d = wait_dump(base + "1", all_deep, timeout=15, what="64 x 100 frames")
        assert sorted(t for t, _ in d) == [f"deep-{i:02d}" for i in range(64)]
        for _, f in d:
            assert f[-1]["func"] == "descend" and f[-1]["lineno"] == sleep_line, f[-1]
            assert f[-1]["line"] == "time.sleep(1)"
        times = []
        for _ in range(9):
            data, took = read_tb(base + "1")
            assert all_deep(parse_dump(data))
            times.append(took)
        med = statistics.median(times)
        print(f"\nGIL-path dump 64x100: median {med*1000:.1f} ms "
              f"(min {min(times)*1000:.1f}, max {max(times)*1000:.1f}), {len(data)} bytes")
        # A promptness bound, not a speed target: the speed figure (about
        # 30 ms median on a quiet machine) lives in bench/tracebacker.py,
        # since this 2-core machine is shared while the suite runs.
        assert med < 0.5, times
        # and with the GIL held in C by a request: faulthandler shows only
        # the innermost 100 frames of each thread; the 3 outer ones (threading's
        # bootstrap) come back from the exact dumps above, marked as such.
        Bg(port, "/busy", timeout=30)
        marks = []
        times, dumps = _gil_held_timings(base + "1", marks=marks)
        print(f"GIL-held dump 64x100: first {times[0]*1000:.1f} ms, median "
              f"{statistics.median(times)*1000:.1f} ms (max {max(times)*1000:.1f})")
        # The 200 ms bound is asserted on the light apps above; this heavy
        # case (about 1 MB of text through faulthandler) gets a looser bound.
        assert max(times) < 0.5, times
        for d, m in zip(dumps, marks):
            names = [t for t, _ in d]
            assert sum(n.startswith("deep-") for n in names) == 64, names
            for t, f in d:
                if t.startswith("deep-"):
                    assert len(f) == 103 and f[0]["func"] == "_bootstrap", funcs(f)[:5]
                    at, text = m[t]
                    assert at == 3 and "the 3 frames above are from an exact dump" in text, m[t]
            core = [f for t, f in d if t.startswith("uWSGIWorker1Core")]
            assert len(core) == 1 and funcs(core[0])[-2:] == ["application", "crunch"]
    finally:
        quick_stop(srv)


# ------------------------------------------------- fidelity of app threads

def test_app_thread_frames_are_pythons_own(serve, port, tmp_path):
    """An app thread's stack is what Python has (threading's bootstrap, then
    the app), as uWSGI prints it: no frame of code the server injected, and
    every filename is a real file. Checked on both dump paths."""
    app = copy_app("tb_poller.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master", "--lazy-apps",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base],
                ready=False)

    def check(d):
        poller = dict(d)["my-poller"]
        assert funcs(poller) == ["_bootstrap", "_bootstrap_inner", "run",
                                 "poll_forever"], "\n".join(
            f"{f['file']}:{f['lineno']} {f['func']}" for f in poller)
        for _, frames in d:
            for f in frames:
                assert os.path.isfile(f["file"]), f"frame from no file: {f}"
    try:
        wait_socks(srv, [base + "1"])
        check(wait_dump(base + "1", lambda d: len(d) == 2, what="app threads"))
        Bg(port, "/busy", timeout=30)
        time.sleep(0.5)
        d = parse_dump(read_tb(base + "1")[0])
        assert len(d) == 3, d
        check(d)
    finally:
        quick_stop(srv)


def test_renamed_app_thread_shows_current_name_with_gil_held(serve, port, tmp_path):
    """The thread's name at dump time, even when the GIL is held in C and
    no GIL-path dump ran since the rename."""
    app = copy_app("tb_rename.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master", "--lazy-apps",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base],
                ready=False)
    try:
        wait_socks(srv, [base + "1"])
        wait_dump(base + "1", lambda d: [t for t, _ in d] == ["before-rename"],
                  what="the thread before its rename")
        assert http_get(port, "/rename")[0] == 200
        time.sleep(0.3)
        Bg(port, "/busy", timeout=30)
        time.sleep(0.5)
        d = parse_dump(read_tb(base + "1")[0])
        names = sorted(t for t, _ in d)
        assert len(names) == 2 and names[0] == "after-rename", names
    finally:
        quick_stop(srv)
