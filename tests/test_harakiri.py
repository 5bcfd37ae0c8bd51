"""End-to-end tests of --harakiri: the master's log (dump included, also
without --py-tracebacker and with the GIL held in C), respawn, the other
worker serving throughout, per-request deadlines, --harakiri-verbose and
uwsgi.set_user_harakiri() / uwsgi.worker_id()."""

import re
import time

from conftest import APPS, http_get, Bg
from helpers import copy_app, read_socket, spawned_pids, wait_for

HEADER = "*** uWSGI Python tracebacker output ***"
STAMP = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} - "
FRAME_RE = re.compile(
    r"^thread_id = (?P<tid>.+?) filename = (?P<file>\S.*?) lineno = (?P<lineno>\d+)"
    r" function = (?P<func>\S+?)(?: line = (?P<line>.+))?$")


# ---------------------------------------------------------------- helpers







def master_lines(log):
    """The log without the workers' access-log and ready lines, which may be
    interleaved with the master's harakiri report."""
    return [ln for ln in log.splitlines()
            if not ln.startswith("[pid: ") and ") ready" not in ln]


def harakiri_report(log, path, verbose=False):
    """Check the whole harakiri sequence for the one harakiri in the log;
    return (worker, pid, core, since, dump threads, verbose lines)."""
    lines = master_lines(log)
    starts = [i for i, ln in enumerate(lines) if "*** HARAKIRI ON WORKER" in ln]
    assert len(starts) == 1, log
    i = starts[0]
    m = re.fullmatch(STAMP + r"\*\*\* HARAKIRI ON WORKER (\d+) \(pid: (\d+), try: 1, "
                     r"graceful: no\) \*\*\*", lines[i])
    assert m, lines[i]
    w, pid = int(m.group(1)), int(m.group(2))
    assert spawned_pids(log[:log.index("*** HARAKIRI ON WORKER")])[w] == pid, log
    # the dump, right after
    assert lines[i + 1] == HEADER and lines[i + 2] == "", log
    j = i + 3
    threads, cur = [], []
    while not re.fullmatch(STAMP + rf"HARAKIRI !!! worker {w} status !!!", lines[j]):
        if lines[j] == "":
            assert cur, f"empty thread block in:\n{log}"
            threads.append(cur)
            cur = []
        else:
            fm = FRAME_RE.match(lines[j])
            assert fm, f"not a frame line: {lines[j]!r}\n{log}"
            cur.append(fm.groupdict())
        j += 1
        assert j < len(lines), log
    assert not cur, f"no blank line after the last thread:\n{log}"
    # the status of the busy cores
    j += 1
    m = re.fullmatch(STAMP + r"HARAKIRI \[core (\d+)\] 127\.0\.0\.1 - GET (\S+) since (\d+)",
                     lines[j])
    assert m and m.group(2) == path, f"{lines[j]!r}\n{log}"
    core, since = int(m.group(1)), int(m.group(3))
    j += 1
    extra = []
    while not re.fullmatch(STAMP + rf"HARAKIRI !!! end of worker {w} status !!!", lines[j]):
        em = re.fullmatch(STAMP + r"HARAKIRI \[core (\d+)\] {3}(.*)", lines[j])
        other = re.fullmatch(STAMP + r"HARAKIRI \[core \d+\] 127\.0\.0\.1 - GET \S+ since \d+",
                             lines[j])
        assert em or other, f"unexpected {lines[j]!r}\n{log}"
        if em and int(em.group(1)) == core:
            extra.append(em.group(2))
        j += 1
        assert j < len(lines), log
    assert bool(extra) == verbose, f"verbose={verbose} but extra lines {extra}\n{log}"
    assert re.fullmatch(STAMP + rf"HARAKIRI triggered by worker {w} core {core} !!!",
                        lines[j + 1]), f"{lines[j + 1]!r}\n{log}"
    rest = lines[j + 2:]
    assert rest[0] == (f"DAMN ! worker {w} (pid: {pid}) died, killed by signal 9 "
                       f":( trying respawn ..."), log
    m = re.fullmatch(rf"Respawned uwsgi-rs worker {w} \(new pid: (\d+)\)", rest[1])
    assert m and int(m.group(1)) != pid, log
    return w, pid, core, since, threads, extra


def _dump_has(path, needle):
    try:
        return needle.encode() in read_socket(path, timeout=3)
    except OSError:
        return False


def wait_harakiri(srv, t0, timeout=10):
    """Seconds from t0 until the harakiri line appears in the log."""
    wait_for(lambda: "*** HARAKIRI ON WORKER" in srv.log, timeout, "no harakiri")
    return time.time() - t0


def ping(port, timeout=3):
    status, _, body = http_get(port, "/ping", timeout=timeout)
    assert status == 200
    wid, pid = body.decode().split()
    return int(wid), int(pid)


# ---------------------------------------------------------------- tests

def test_harakiri_report_respawn_and_other_worker_serves(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--processes", "2", "--harakiri", "2", "--py-tracebacker", base],
                workers=2)
    pids = spawned_pids(srv.log)
    t0 = time.time()
    stuck = Bg(port, "/sleep/30", timeout=20)
    busy_w = wait_for(lambda: next((x for x in (1, 2) if _dump_has(f"{base}{x}", "function = nap")),
                                   None), 2, "the stuck request not in any dump")
    # keep asking while a worker is stuck: every answer comes, fast, from the other
    served = []
    while "Respawned uwsgi-rs worker" not in srv.log:
        assert time.time() - t0 < 10, f"no respawn:\n{srv.log}"
        t = time.time()
        served.append(ping(port, timeout=2))
        assert time.time() - t < 1.0, "the healthy worker must answer at once"
        time.sleep(0.1)
    w, pid, core, since, threads, _ = harakiri_report(srv.log, "/sleep/30")
    assert pid == pids[w] and core == 0 and w == busy_w
    assert abs(since - t0) <= 2, (since, t0)
    assert served and all(s == (3 - w, pids[3 - w]) for s in served), (w, served)
    # the dump of the stuck request
    nap_line = next(i for i, ln in enumerate(app.read_text().splitlines(), 1)
                    if "time.sleep(seconds)" in ln)
    (frames,) = threads
    assert {f["tid"] for f in frames} == {f"uWSGIWorker{w}Core0"}
    assert [f["func"] for f in frames] == ["application", "nap"], frames
    assert frames[-1]["lineno"] == str(nap_line)
    assert frames[-1]["line"] == "time.sleep(seconds)"
    # the client's connection was cut at about the deadline
    res = stuck.join(10)
    assert isinstance(res, Exception), res
    assert 1.9 <= stuck.done_at - t0 <= 3.5, stuck.done_at - t0
    # the respawned worker serves, with its new pid
    new = spawned_pids(srv.log)[w]
    assert new != pid
    wait_for(lambda: srv.log.count(f"worker {w} (pid: {new}) ready") == 1, 10,
             "respawned worker not ready")
    # occupy one (single-core) worker, seen in its dump, then ask again: the
    # blocked one and the free one both answer, one of them the respawned one
    blocker = Bg(port, "/sleep/1", timeout=10)
    x = wait_for(lambda: next((x for x in (1, 2) if _dump_has(f"{base}{x}", "function = nap")),
                              None), 5, "the blocking request not in any dump")
    got = {ping(port, timeout=0.9)}
    status, _, body = blocker.join(10)
    assert status == 200
    got.add(tuple(map(int, body.split())))
    assert got == {(w, new), (3 - w, pids[3 - w])}, (x, got)
    assert "running for" not in srv.log


def test_harakiri_dump_without_py_tracebacker(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--harakiri", "2"])
    t0 = time.time()
    Bg(port, "/sleep/30", timeout=20)
    took = wait_harakiri(srv, t0)
    assert 1.9 <= took <= 3.5, took
    srv.wait_log("Respawned uwsgi-rs worker 1", timeout=5)
    w, _, core, _, threads, _ = harakiri_report(srv.log, "/sleep/30")
    assert (w, core) == (1, 0)
    assert len(threads) == 1
    assert [f["func"] for f in threads[0]] == ["application", "nap"], threads
    assert not list(tmp_path.glob("*tbsocket*")), "no tracebacker socket in cwd"


def test_harakiri_dump_when_gil_held_in_c(serve, port, tmp_path):
    """uWSGI logs no traceback here (its tracebacker waits for the GIL)."""
    busy = copy_app("busy.py", tmp_path, APPS)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(busy), "--master",
                 "--processes", "2", "--harakiri", "2"], workers=2)
    t0 = time.time()
    Bg(port, "/busy", timeout=20)
    time.sleep(0.5)  # the busy request holds its worker's only core by now
    while "Respawned uwsgi-rs worker" not in srv.log:
        assert time.time() - t0 < 4.5, f"harakiri with the GIL held too slow:\n{srv.log}"
        t = time.time()
        status, _, body = http_get(port, "/", timeout=2)
        assert (status, body) == (200, b"ok")
        assert time.time() - t < 1.0, "the other worker must keep serving"
        time.sleep(0.1)
    took = time.time() - t0
    w, pid, core, _, threads, _ = harakiri_report(srv.log, "/busy")
    assert core == 0
    (frames,) = threads
    assert {f["tid"] for f in frames} == {f"uWSGIWorker{w}Core0"}
    tail = [(f["func"], f["lineno"], f["line"]) for f in frames[-2:]]
    assert tail == [("application", "10", "crunch()"),
                    ("crunch", "5", "return sum(range(10**10))")], frames
    assert all(f["file"].endswith("/busy.py") for f in frames)
    print(f"\nharakiri with the GIL held: respawned {took:.2f} s after the request")


def test_harakiri_is_per_request_not_cleared_by_other_core(serve, port, tmp_path):
    """uWSGI 2.0.31 never kills the sleeper once core 1 finished a request."""
    app = copy_app("tb_app.py", tmp_path)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--processes", "1", "--threads", "2", "--harakiri", "3"])
    t0 = time.time()
    stuck = Bg(port, "/sleep/30", timeout=20)
    time.sleep(0.2)
    done_before_deadline = 0
    while "*** HARAKIRI ON WORKER" not in srv.log:
        assert time.time() - t0 < 8, f"the sleeper was never killed:\n{srv.log}"
        try:
            ping(port, timeout=2)
            if time.time() - t0 < 2.9:
                done_before_deadline += 1
        except Exception:  # noqa: BLE001
            if "*** HARAKIRI ON WORKER" not in srv.log:
                raise
        time.sleep(0.25)
    took = time.time() - t0
    assert done_before_deadline >= 3, done_before_deadline
    assert 2.9 <= took <= 4.3, f"harakiri {took:.2f} s after the request (want ~3-4)"
    srv.wait_log("Respawned uwsgi-rs worker 1", timeout=5)
    _, _, core, _, threads, _ = harakiri_report(srv.log, "/sleep/30")
    sleeper = [t for t in threads if t[-1]["func"] == "nap"]
    assert len(sleeper) == 1 and sleeper[0][0]["tid"] == f"uWSGIWorker1Core{core}", threads
    assert isinstance(stuck.join(10), Exception)


def test_harakiri_verbose(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--harakiri", "2", "--harakiri-verbose"])
    t0 = time.time()
    Bg(port, "/sleep/30", timeout=20, headers={"X-Tb-Marker": "tb-123"})
    wait_harakiri(srv, t0)
    srv.wait_log("Respawned uwsgi-rs worker 1", timeout=5)
    _, _, _, _, _, extra = harakiri_report(srv.log, "/sleep/30", verbose=True)
    assert any(re.fullmatch(r"(?i:x-tb-marker): tb-123", e) for e in extra), extra
    assert any(re.fullmatch(r"(?i:host): 127\.0\.0\.1:\d+", e) for e in extra), extra
    m = [re.fullmatch(r"running for (\d+\.\d) s", e) for e in extra]
    m = [x for x in m if x]
    assert len(m) == 1 and extra[-1] == m[0].group(0), extra
    assert 2.0 <= float(m[0].group(1)) <= 3.5, extra


def test_user_harakiri_and_worker_id(serve, port, tmp_path):
    app = copy_app("tb_app.py", tmp_path)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--harakiri", "2"])
    assert ping(port) == (1, spawned_pids(srv.log)[1])
    # set_user_harakiri(0) clears the 2 s deadline: a 4 s request completes
    t0 = time.time()
    status, _, body = http_get(port, "/user0", timeout=10)
    assert status == 200 and body.split()[0] == b"1"
    assert time.time() - t0 >= 3.9
    assert "HARAKIRI" not in srv.log and "DAMN" not in srv.log, srv.log
    # set_user_harakiri(1) shortens it: killed after ~1 s, not 2 s
    t0 = time.time()
    Bg(port, "/user1", timeout=20)
    took = wait_harakiri(srv, t0)
    assert 0.9 <= took <= 1.75, took
    srv.wait_log("Respawned uwsgi-rs worker 1", timeout=5)
    harakiri_report(srv.log, "/user1")
    wait_for(lambda: srv.log.count(") ready") >= 2, 10, "respawned worker not ready")
    assert ping(port) == (1, spawned_pids(srv.log)[1])


def test_request_arriving_with_a_stuck_one_goes_to_the_idle_worker(serve, port, tmp_path):
    """2 single-core workers, both idle; a slow request and a quick one arrive
    together (two connections opened back to back). The quick one must not
    wait behind the slow one on the same worker while the other worker idles
    (with harakiri it would be killed with the stuck one)."""
    import socket
    app = copy_app("tb_app.py", tmp_path)
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
           "--processes", "2", "--disable-logging"], workers=2)
    waits = []
    for _ in range(5):
        c1 = socket.create_connection(("127.0.0.1", port), timeout=5)
        c2 = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            c1.sendall(b"GET /sleep/0.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            t = time.time()
            c2.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert c2.recv(4096).startswith(b"HTTP/1.1 200")
            waits.append(round((time.time() - t) * 1000))
            while c1.recv(4096):
                pass
        finally:
            c1.close()
            c2.close()
    assert max(waits) < 300, f"quick request latency (ms) per round: {waits}"
