"""Master/worker process management: respawn, reload, shutdown, recycling,
start-up errors, configuration files."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import APPS, BIN, Bg, free_port, http_get, signal_and_wait
from helpers import group_members, in_app, mark_query, start_app
import helpers

ECHO = str(APPS / "core_echo.py")


def start(serve, port, *extra, **kw):
    return start_app(serve, port, ECHO, *extra, **kw)


def get_json(port, path, timeout=10):
    status, _, body = http_get(port, path, timeout=timeout)
    assert status == 200, (status, body)
    return json.loads(body)




def wait_group_gone(pgid, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = group_members(pgid)
        if not left:
            return []
        time.sleep(0.05)
    return group_members(pgid)


def run_bin(args, cwd, timeout=10):
    t0 = time.monotonic()
    r = helpers.run([BIN] + args, cwd=cwd, capture_output=True, text=True,
                    timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=True)
    return r, time.monotonic() - t0


def nonempty_lines(text):
    return [l for l in text.splitlines() if l.strip()]


# ---------------------------------------------------------------- respawn

def test_sigkilled_worker_is_respawned(serve, port):
    srv = start(serve, port)
    pids = srv.worker_pids()
    assert set(pids) == {1, 2}
    victim = pids[1]
    os.kill(victim, signal.SIGKILL)
    srv.wait_log(f"DAMN ! worker 1 (pid: {victim}) died, killed by signal 9", timeout=5)
    srv.wait_log("Respawned uwsgi-rs worker 1 (new pid: ", timeout=5)
    srv.wait_log(") ready", count=3, timeout=10)
    new = int(re.search(r"Respawned uwsgi-rs worker 1 \(new pid: (\d+)\)", srv.log).group(1))
    assert new != victim
    assert srv.worker_pids()[1] == new
    seen = set()
    for _ in range(40):
        seen.add(get_json(port, "/pid")["pid"])
    assert victim not in seen
    assert seen <= {new, pids[2]}
    assert srv.proc.poll() is None


def test_worker_exiting_in_request_is_respawned(serve, port):
    srv = start(serve, port, workers=1, threads=2)
    old = srv.worker_pids()[1]
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        http_get(port, "/exit", timeout=5)
    srv.wait_log(f"worker 1 (pid: {old}) died, exit code 3", timeout=5)
    srv.wait_log("Respawned uwsgi-rs worker 1 (new pid: ", timeout=5)
    srv.wait_log(") ready", count=2, timeout=10)
    new = get_json(port, "/pid")["pid"]
    assert new != old and new == srv.worker_pids()[1]


# ---------------------------------------------------------------- reload

class Load:
    """Threads issuing fast requests: half on fresh connections, half on
    keep-alive connections. A keep-alive request that fails before any
    response byte on a *reused* connection (the server closed it while idle,
    the race every HTTP/1.1 client must handle) is retried once on a new
    connection and counted in `stale_retries`; everything else is a failure."""

    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []
        self.stale_retries = 0
        self.pids = set()
        self.lock = threading.Lock()

    def _record(self, ok=None, fail=None, pid=None):
        with self.lock:
            if ok:
                self.ok += 1
                self.pids.add(pid)
            if fail:
                self.failures.append(fail)

    def fresh(self, n):
        i = 0
        while not self.stop.is_set() and i < n:
            i += 1
            try:
                st, _, body = http_get(self.port, "/pid", timeout=10)
                if st != 200:
                    self._record(fail=f"fresh: status {st}")
                else:
                    self._record(ok=True, pid=json.loads(body)["pid"])
            except Exception as e:  # noqa: BLE001
                self._record(fail=f"fresh: {e!r}")

    def keepalive(self, n):
        c = None
        used = False
        i = 0
        while not self.stop.is_set() and i < n:
            i += 1
            for attempt in (0, 1):
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                    used = False
                try:
                    c.request("GET", "/pid")
                    r = c.getresponse()
                    body = r.read()
                    used = True
                    if r.status != 200:
                        self._record(fail=f"keepalive: status {r.status}")
                    else:
                        self._record(ok=True, pid=json.loads(body)["pid"])
                    if r.getheader("Connection", "").lower() == "close":
                        c.close()
                        c = None
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError,
                        BrokenPipeError) as e:
                    reused = used
                    c.close()
                    c = None
                    if reused and attempt == 0:
                        with self.lock:
                            self.stale_retries += 1
                        continue
                    self._record(fail=f"keepalive: {e!r}")
                    break
                except Exception as e:  # noqa: BLE001
                    c.close()
                    c = None
                    self._record(fail=f"keepalive: {e!r}")
                    break
        if c is not None:
            c.close()


@pytest.mark.serial  # loads the machine, or asserts a latency
def test_sighup_rolling_reload_under_load_loses_no_request(serve, port):
    srv = start(serve, port, workers=2, threads=4)
    first_pids = set(srv.worker_pids().values())
    load = Load(port)
    unbounded = 10 ** 9
    with ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(load.fresh, unbounded) for _ in range(3)]
        futs += [ex.submit(load.keepalive, unbounded) for _ in range(3)]
        try:
            ready = 2
            for k in range(3):
                time.sleep(0.4)
                os.kill(srv.proc.pid, signal.SIGHUP)
                ready += 2
                srv.wait_log(") ready", count=ready, timeout=20)
            # Keep the load going a little after the last reload, and until
            # at least ~1500 requests were made.
            deadline = time.time() + 30
            time.sleep(0.3)
            while load.ok + len(load.failures) < 1500 and time.time() < deadline:
                time.sleep(0.05)
        finally:
            load.stop.set()
            for f in futs:
                f.result(timeout=30)
    log = srv.log
    assert log.count("SIGHUP received") == 3
    assert load.failures == [], (len(load.failures), load.failures[:10], load.stale_retries)
    assert load.ok >= 1500
    final = set(srv.worker_pids().values())
    assert not (final & first_pids), "every worker must have been replaced"
    assert len(load.pids) >= 6, "requests were served by the workers of every generation"
    assert srv.proc.poll() is None
    print(f"reload load: ok={load.ok} stale keep-alive retries={load.stale_retries}")


# ---------------------------------------------------------------- shutdown

def test_sigterm_graceful_shutdown(serve, port, tmp_path):
    sock = tmp_path / "app.sock"
    srv = serve(["--http", f"127.0.0.1:{port}", "--http", str(sock), "--wsgi-file", ECHO,
                 "--master", "--processes", "2", "--threads", "2"], workers=2)
    assert sock.exists()
    workers = list(srv.worker_pids().values())
    slow = Bg(port, f"/sleep?s=2&{mark_query(tmp_path / 'in-app')}", timeout=10)
    in_app(tmp_path / "in-app")
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(10)
    resp = slow.join(10)
    assert not isinstance(resp, Exception), resp
    status, _, body = resp
    assert status == 200 and json.loads(body)["slept"] == "2"
    assert rc == 0, srv.log
    assert wait_group_gone(srv.proc.pid) == []
    for w in workers:
        assert not os.path.exists(f"/proc/{w}") or open(f"/proc/{w}/stat").read().split(")")[1].split()[0] == "Z"
    assert not sock.exists(), "unix socket file left behind"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_sigint_graceful_shutdown(serve, port):
    srv = start(serve, port, workers=1, threads=1)
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(10) == 0
    assert wait_group_gone(srv.proc.pid) == []


def test_sigquit_immediate_shutdown(serve, port, tmp_path):
    sock = tmp_path / "q.sock"
    srv = serve(["--http", f"127.0.0.1:{port}", "--http", str(sock), "--wsgi-file", ECHO,
                 "--master", "--processes", "2", "--threads", "2"], workers=2)
    slow = Bg(port, f"/sleep?s=5&{mark_query(tmp_path / 'in-app')}", timeout=10)
    in_app(tmp_path / "in-app")
    took = signal_and_wait(srv.proc, signal.SIGQUIT, 5)
    assert took < 2.0, f"SIGQUIT took {took:.2f}s"
    assert isinstance(slow.join(10), Exception), \
        "the in-flight request must not complete after SIGQUIT"
    assert wait_group_gone(srv.proc.pid, timeout=3) == []
    assert not sock.exists()


# ---------------------------------------------------------------- start-up errors

def test_unknown_option(tmp_path):
    r, took = run_bin(["--http", "127.0.0.1:1", "--no-such-option"], tmp_path)
    assert r.returncode != 0 and took < 5
    lines = nonempty_lines(r.stdout + r.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("uwsgi-rs:") and "--no-such-option" in lines[0]


def test_missing_option_value(tmp_path):
    r, took = run_bin(["--wsgi-file", ECHO, "--http"], tmp_path)
    assert r.returncode != 0 and took < 5
    lines = nonempty_lines(r.stdout + r.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("uwsgi-rs:") and "http" in lines[0]


def test_bad_option_value(tmp_path):
    r, took = run_bin(["--http", f"127.0.0.1:{free_port()}", "--wsgi-file", ECHO,
                       "--processes", "many"], tmp_path)
    assert r.returncode != 0 and took < 5
    lines = nonempty_lines(r.stdout + r.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("uwsgi-rs:") and "processes" in lines[0]


def test_module_that_fails_to_import(tmp_path):
    r, took = run_bin(["--http", f"127.0.0.1:{free_port()}", "--wsgi-file",
                       str(APPS / "core_broken.py"), "--master"], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert took < 8
    assert "Traceback (most recent call last)" in out
    assert "ModuleNotFoundError: No module named 'core_module_that_does_not_exist_anywhere'" in out
    # The traceback points at the offending line of the app file.
    assert 'core_broken.py", line 3' in out, out
    assert len([l for l in out.splitlines() if "unable to load app" in l]) == 1
    # preloaded: the loader imports it, once
    assert re.search(r"loader \(pid: \d+\): unable to load app:", out), out


def test_module_flag_that_fails_to_import(tmp_path):
    r, took = run_bin(["--http", f"127.0.0.1:{free_port()}", "-w", "core_broken",
                       "--chdir", str(APPS), "--master", "--processes", "2"], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and took < 8, out
    assert "Traceback (most recent call last)" in out
    assert "unable to load app" in out


def test_missing_callable(tmp_path):
    r, took = run_bin(["--http", f"127.0.0.1:{free_port()}", "--wsgi-file", ECHO,
                       "--callable", "nope", "--master"], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and took < 8, out
    lines = [l for l in out.splitlines() if "unable to load app" in l]
    assert len(lines) == 1 and "nope" in lines[0], out


def test_missing_app_file(tmp_path):
    r, took = run_bin(["--http", f"127.0.0.1:{free_port()}", "--wsgi-file",
                       str(tmp_path / "does_not_exist.py"), "--master"], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and took < 8, out
    assert "does_not_exist.py" in out


def test_address_already_in_use(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    p = holder.getsockname()[1]
    try:
        r, took = run_bin(["--http", f"127.0.0.1:{p}", "--wsgi-file", ECHO, "--master"],
                          tmp_path)
    finally:
        holder.close()
    out = r.stdout + r.stderr
    assert r.returncode != 0 and took < 5, out
    lines = nonempty_lines(out)
    assert len(lines) == 1, lines
    assert lines[0].startswith("uwsgi-rs:")
    assert "in use" in lines[0].lower() and str(p) in lines[0]


# ---------------------------------------------------------------- recycling

def test_max_requests_recycles_worker(serve, port):
    srv = start(serve, port, "--max-requests", "5", "--min-worker-lifetime", "0",
                workers=1, threads=1)
    first = srv.worker_pids()[1]
    pids = []
    for _ in range(13):
        pids.append(get_json(port, "/pid")["pid"])
    assert pids[:5] == [first] * 5
    assert pids[5] != first
    assert len(set(pids)) >= 3, pids
    # Each pid served at most 5 requests.
    for p in set(pids):
        assert pids.count(p) <= 5
    assert "DAMN" not in srv.log


def _crashloop(serve, port, tmp_path, settle):
    marker = tmp_path / "crash.marker"
    # each worker imports the app (--lazy-apps); a preloading loader's crash
    # loop is tests/test_preload.py's
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "core_crashloop.py"),
                 "--master", "--lazy-apps", "--processes", "1"],
                env={"CORE_CRASH_MARKER": str(marker)})
    first = srv.worker_pids()[1]
    assert http_get(port, "/")[0] == 200
    time.sleep(settle)
    os.kill(first, signal.SIGKILL)
    srv.wait_log("Respawned uwsgi-rs worker 1", timeout=5)
    time.sleep(3.0)
    log = srv.log
    spawns = log.count("Respawned uwsgi-rs worker 1")
    # The app did load once and served a request: a later load failure is a
    # crash loop to back off from, not a start-up error to exit on.
    assert srv.proc.poll() is None, log
    assert "respawning in" in log, log
    assert spawns < 10, f"{spawns} respawns within ~3 s"
    assert log.count("failing on purpose") >= 2


def test_crash_looping_worker_backs_off(serve, port, tmp_path):
    _crashloop(serve, port, tmp_path, settle=1.0)


def test_crash_loop_right_after_first_ready_backs_off(serve, port, tmp_path):
    """Same, with the first worker killed right after it served (within the
    master's 200 ms tick)."""
    _crashloop(serve, port, tmp_path, settle=0.0)


# ---------------------------------------------------------------- config

def test_ini_file(serve, port, tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text(
        "[uwsgi]\n"
        f"http = 127.0.0.1:{port}\n"
        f"wsgi-file = {ECHO}\n"
        "master = true\n"
        "processes = 2\n"
        "threads = 2\n"
        "env = CORE_FROM_INI=yes\n"
        "\n[other]\nprocesses = 7\n")
    srv = serve(["--ini", str(ini)], workers=2)
    assert len(srv.worker_pids()) == 2
    v = get_json(port, "/env")["values"]
    assert v["wsgi.multiprocess"] is True and v["wsgi.multithread"] is True
    assert "2 worker(s) x 2 thread(s)" in srv.log
    assert get_json(port, "/osenv?k=CORE_FROM_INI")["value"] == "yes"


def test_env_option(serve, port):
    start(serve, port, "--env", "CORE_ENV_A=hello world", "--env", "CORE_ENV_B=x=y",
          workers=1, threads=1)
    assert get_json(port, "/osenv?k=CORE_ENV_A")["value"] == "hello world"
    assert get_json(port, "/osenv?k=CORE_ENV_B")["value"] == "x=y"


def test_pidfile_written_and_removed(serve, port, tmp_path):
    pidfile = tmp_path / "master.pid"
    srv = start(serve, port, "--pidfile", str(pidfile), workers=1, threads=1)
    assert pidfile.read_text().strip() == str(srv.proc.pid)
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(10) == 0
    assert not pidfile.exists()


@pytest.mark.parametrize("lazy", [False, True], ids=["preload", "lazy-apps"])
@pytest.mark.parametrize("callable_", ["app", "starlette_like"])
def test_asgi_app_is_refused_at_start_with_one_line(tmp_path, callable_, lazy):
    args = ["--http", f"127.0.0.1:{free_port()}", "--wsgi-file",
            str(APPS / "core_asgi.py"), "--callable", callable_, "--master"]
    r, took = run_bin(args + (["--lazy-apps"] if lazy else []), tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and took < 8, out
    lines = [l for l in out.splitlines() if "ASGI" in l]
    assert len(lines) == 1, out
    assert f"core_asgi.{callable_}' is an ASGI app" in lines[0]
    assert "uvicorn" in lines[0]


def test_asgi_app_from_a_factory_is_refused_at_start_with_one_line(tmp_path):
    """`module:create_app()` (FastAPI projects' usual shape) is checked as
    `module:app` is: what the factory returns is refused if it is ASGI."""
    args = ["--http", f"127.0.0.1:{free_port()}", "--pythonpath", str(APPS),
            "--module", "core_asgi:create_app()", "--master"]
    r, took = run_bin(args, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and took < 8, out
    lines = [l for l in out.splitlines() if "ASGI" in l]
    assert len(lines) == 1, out
    assert "core_asgi:create_app()' is an ASGI app" in lines[0]


@pytest.mark.parametrize("callable_,body", [("wsgi_object", b"wsgi object"),
                                            ("wsgi_class", b"wsgi class")])
def test_wsgi_objects_and_classes_are_not_mistaken_for_asgi(serve, port, callable_, body):
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "core_asgi.py"),
           "--callable", callable_])
    status, _, got = http_get(port, "/")
    assert (status, got) == (200, body)
