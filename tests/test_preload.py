"""App loading: preload (the default, as in uWSGI) and --lazy-apps.

Preload: one loader process imports the app, the workers are forked from it
(copy-on-write) and are still the master's children; a respawn is a fork;
SIGHUP imports the new code in a new loader and replaces the workers one at
a time; new code that does not import leaves the old workers serving.
Lazy: every worker imports the app itself. In both, multiprocessing's spawn
and forkserver work inside a request (the children run the venv's python
and do not start a second server), and the master never imports the app.
Around the import: --pyargv (sys.argv), --import (modules imported first,
where the app is) and --chdir2 (each worker's directory once it is loaded).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import APPS, free_port, http_get
from helpers import alive

APP = APPS / "pre_app.py"


def start(serve, port, tmp_path, *extra, workers=2):
    shutil.copy(APP, tmp_path / "pre_app.py")
    log = tmp_path / "imports.log"
    srv = serve(["--http", f"127.0.0.1:{port}", "-w", "pre_app", "--master",
                 "--processes", str(workers), "--threads", "2", "--reload-mercy", "2", *extra],
                workers=workers, env={"PRE_IMPORT_LOG": str(log)}, cwd=tmp_path)
    return srv, log


def imports(log):
    return [int(x) for x in log.read_text().split()] if log.exists() else []


def get(port, path="/"):
    st, _, body = http_get(port, path, timeout=30)
    assert st == 200, body
    return json.loads(body)


def set_generation(tmp_path, text):
    app = tmp_path / "pre_app.py"
    app.write_text(re.sub(r"^GENERATION = .*$", text, app.read_text(), flags=re.M))
    # a new mtime second, so no stale bytecode is used
    st = app.stat()
    os.utime(app, (st.st_atime + 2, st.st_mtime + 2))


def reload_to(srv, port, tmp_path, generation, workers=2):
    """Edit the app to `generation`, SIGHUP, wait for the replaced workers
    and until every answer comes from the new code (or 10 s)."""
    set_generation(tmp_path, f"GENERATION = {generation}")
    ready = srv.log.count(") ready")
    os.kill(srv.proc.pid, signal.SIGHUP)
    srv.wait_log(") ready", count=ready + workers, timeout=20)
    deadline = time.time() + 10
    while time.time() < deadline and {get(port)["generation"] for _ in range(6)} != {generation}:
        time.sleep(0.1)


def loader_pids(log_text):
    return [int(p) for p in re.findall(r"by the loader \(pid: (\d+)", log_text)]


def test_preload_imports_once_and_forks_workers_as_the_masters_children(serve, port, tmp_path):
    srv, log = start(serve, port, tmp_path, workers=4)
    workers = srv.worker_pids()
    [loader] = loader_pids(srv.log)
    assert imports(log) == [loader], (imports(log), srv.log)
    assert loader not in workers.values() and loader != srv.proc.pid
    for pid in workers.values():
        assert int(open(f"/proc/{pid}/stat").read().split(") ", 1)[1].split()[1]) == srv.proc.pid
    seen = {get(port)["pid"]: get(port)["ppid"] for _ in range(8)}
    assert all(ppid == srv.proc.pid for ppid in seen.values()), seen
    # a respawn is a fork of the loader: no second import
    os.kill(workers[1], signal.SIGKILL)
    srv.wait_log("Respawned uwsgi-rs worker 1", timeout=5)
    srv.wait_log(") ready", count=5, timeout=10)
    assert imports(log) == [loader]
    assert srv.worker_pids()[1] != workers[1]


def test_lazy_apps_imports_in_every_worker(serve, port, tmp_path):
    srv, log = start(serve, port, tmp_path, "--lazy-apps", workers=4)
    assert sorted(imports(log)) == sorted(srv.worker_pids().values()), srv.log
    assert not loader_pids(srv.log)
    assert get(port)["ppid"] == srv.proc.pid


def test_reload_loads_new_code_and_retires_the_old_loader(serve, port, tmp_path):
    srv, log = start(serve, port, tmp_path)
    [old_loader] = loader_pids(srv.log)
    assert get(port)["generation"] == 1
    failures = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                get(port)
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    t = threading.Thread(target=load)
    t.start()
    try:
        reload_to(srv, port, tmp_path, 2)
    finally:
        stop.set()
        t.join(30)
    assert failures == [], failures[:5]
    assert {get(port)["generation"] for _ in range(6)} == {2}
    loaders = loader_pids(srv.log)
    assert len(loaders) == 2 and loaders[0] == old_loader, srv.log
    assert imports(log) == loaders
    deadline = time.time() + 5
    while alive(old_loader) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive(old_loader)


def test_reload_with_code_that_does_not_import_keeps_serving(serve, port, tmp_path):
    srv, log = start(serve, port, tmp_path)
    before = set(srv.worker_pids().values())
    set_generation(tmp_path, "GENERATION = 1 / 0")
    os.kill(srv.proc.pid, signal.SIGHUP)
    srv.wait_log("keeping the workers of generation 1", timeout=15)
    assert "ZeroDivisionError" in srv.log
    assert {get(port)["generation"] for _ in range(6)} == {1}
    assert set(srv.worker_pids().values()) == before
    assert srv.proc.poll() is None
    # fixed: the next reload takes
    reload_to(srv, port, tmp_path, 3)
    assert {get(port)["generation"] for _ in range(6)} == {3}


@pytest.mark.parametrize("mode", ["preload", "lazy"])
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_in_a_request(serve, port, tmp_path, mode, method):
    """The children run sys.executable, the venv's python, which re-imports
    the console script as __mp_main__: no second server starts."""
    extra = ["--lazy-apps"] if mode == "lazy" else []
    srv, log = start(serve, port, tmp_path, *extra, workers=1)
    d = get(port, f"/mp?{method}")
    assert d["child"]["tag"] == "hello" and d["child"]["pid"] != d["parent"], d
    # the venv's python (the one that runs the tests and the server)
    assert os.path.dirname(d["child"]["executable"]) == os.path.dirname(sys.executable), d
    assert d["child"]["main"] == "__mp_main__", d
    time.sleep(0.5)
    assert "unknown option" not in srv.log and srv.log.count("serving http") == 1, srv.log
    assert srv.proc.poll() is None


def test_master_never_imports_the_app(serve, port, tmp_path):
    """Neither mode imports the app in the master (its pid is never in the
    import log) and the master maps no more than a bare interpreter."""
    for extra in ([], ["--lazy-apps"]):
        p = port if not extra else __import__("conftest").free_port()
        d = tmp_path / ("lazy" if extra else "preload")
        d.mkdir()
        srv, log = start(serve, p, d, *extra)
        assert srv.proc.pid not in imports(log)
        assert "pre_app" not in open(f"/proc/{srv.proc.pid}/maps").read()
        srv.stop()


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise AssertionError(f"no Pss for {pid}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def django_site(tmp_path):
    proj = tmp_path / "site"
    proj.mkdir()
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(proj)],
                   check=True, timeout=60, capture_output=True)
    return proj


@pytest.mark.serial  # loads the machine, or asserts a latency
def test_django_memory_preload_vs_lazy(serve, django_site):
    """4 workers of a Django project: preloading shares the imported code
    between them, so their proportional set size (PSS: shared pages split
    between the processes that map them) is smaller than with --lazy-apps."""
    from conftest import free_port
    figures = {}
    for mode, extra in (("preload", []), ("lazy", ["--lazy-apps"])):
        port = free_port()
        srv = serve(["--http", f"127.0.0.1:{port}", "--module", "mysite.wsgi", "--master",
                     "--processes", "4", "--threads", "2", *extra], workers=4, cwd=django_site)
        for _ in range(20):  # every worker serves the admin login page (full import)
            st, _, _ = http_get(port, "/admin/login/", timeout=30)
            assert st == 200
        time.sleep(0.5)
        pids = list(srv.worker_pids().values())
        loaders = loader_pids(srv.log)
        figures[mode] = {
            "workers_pss": sum(pss_kib(p) for p in pids),
            "workers_rss": sum(rss_kib(p) for p in pids),
            "loader_pss": sum(pss_kib(p) for p in loaders if alive(p)),
            "master_rss": rss_kib(srv.proc.pid),
        }
        srv.stop()
    pre, lazy = figures["preload"], figures["lazy"]
    print(f"\nDjango, 4 workers x 2 threads (KiB): {json.dumps(figures)}")
    # measured: 85 MiB vs 136 MiB; gc.freeze in the loader is most of it
    assert pre["workers_pss"] + pre["loader_pss"] < 0.8 * lazy["workers_pss"], figures


def test_threads_started_at_import_are_named_in_a_warning(serve, port, tmp_path):
    """They live in the loader only (fork copies one thread): said once."""
    app = tmp_path / "thr_app.py"
    app.write_text("import threading, time\n"
                   "threading.Thread(target=time.sleep, args=(60,), name='poller', daemon=True).start()\n"
                   "def application(e, sr):\n"
                   "    sr('200 OK', [('Content-Length', '2')])\n"
                   "    return [b'ok']\n")
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--processes", "2"],
                workers=2)
    assert srv.log.count("the app started 1 thread(s) while being imported (poller)") == 1, srv.log
    assert "--lazy-apps" in srv.log
    lazy = serve(["--http", f"127.0.0.1:{__import__('conftest').free_port()}", "--wsgi-file",
                  str(app), "--lazy-apps"])
    assert "while being imported" not in lazy.log


def test_loader_crashing_at_every_import_never_spins_the_master(serve, port, tmp_path):
    """A loader that segfaults while importing (a signal, not a load error)
    is restarted with a back-off, as a worker would be with --lazy-apps."""
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "rel_crashloop.py"),
                 "--processes", "1"], ready=False,
                env={"REL_CRASH_MARKER": str(tmp_path / "m"), "REL_CRASH_ALWAYS": "1"})
    t0 = time.time()
    cpu0 = sum(map(int, open(f"/proc/{srv.proc.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]))
    time.sleep(3.5)
    log = srv.log
    assert srv.proc.poll() is None, log
    deaths = log.count("DAMN ! the loader")
    assert 2 <= deaths < 10, f"{deaths} loader deaths in 3.5 s:\n{log}"
    assert "killed by signal 11" in log and "starting a new one in" in log, log
    cpu = sum(map(int, open(f"/proc/{srv.proc.pid}/stat").read().rsplit(")", 1)[1].split()[11:13]))
    assert (cpu - cpu0) / os.sysconf("SC_CLK_TCK") < 0.5 * (time.time() - t0), "the master spun"
    assert "spawned uwsgi-rs worker" not in log


# ---------------------------------------------------- --pyargv, --import, --chdir2
# The app-loading options uWSGI applies around the import of the app.

FACTS_APP = '''import json, os, sys
IMPORT_CWD = os.getcwd()
ARGV_AT_IMPORT = list(sys.argv)
BEFORE_ME = [m for m in ("first_import", "srv_second_import") if m in sys.modules]


def application(environ, start_response):
    first = sys.modules.get("first_import")
    body = json.dumps({
        "argv_at_import": ARGV_AT_IMPORT, "argv": sys.argv, "import_cwd": IMPORT_CWD,
        "cwd": os.getcwd(), "before_me": BEFORE_ME, "pid": os.getpid(),
        "first_import_pid": getattr(first, "PID", None),
        "order": os.environ.get("IMPORT_ORDER", ""),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
'''

IMPORTED = '''import os
PID = os.getpid()
os.environ["IMPORT_ORDER"] = os.environ.get("IMPORT_ORDER", "") + "{name} "
'''


def facts_server(serve, port, tmp_path, *extra, workers=1, ready=True):
    (tmp_path / "facts_app.py").write_text(FACTS_APP)
    return serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(tmp_path / "facts_app.py"),
                  "--processes", str(workers), *extra], workers=workers, cwd=tmp_path,
                 ready=ready)


def test_pyargv_sets_sys_argv_for_the_app(serve, port, tmp_path):
    """The program's name, then the words of --pyargv split at blanks as
    uWSGI splits them (no quoting), already when the app is imported;
    without it, the program's name alone (never uwsgi-rs's flags)."""
    srv = facts_server(serve, port, tmp_path, "--pyargv=--settings prod\t-v  'a b'")
    d = get(port)
    assert d["argv"][1:] == ["--settings", "prod", "-v", "'a", "b'"], d
    assert d["argv_at_import"] == d["argv"]
    assert "NOT HONOURED" not in srv.log
    other, plain = free_port(), tmp_path / "plain"
    plain.mkdir()
    facts_server(serve, other, plain)
    assert get(other)["argv"] == d["argv"][:1]


@pytest.mark.parametrize("lazy", [False, True], ids=["preload", "lazy-apps"])
def test_import_runs_modules_before_the_app_where_it_is_loaded(serve, port, tmp_path, lazy):
    """--import (a module) and --shared-import (a file): imported in order,
    before the app, by the process that imports the app: the loader that
    forks the workers, or each worker with --lazy-apps."""
    (tmp_path / "first_import.py").write_text(IMPORTED.format(name="first"))
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    (srv_dir / "second_import.py").write_text(IMPORTED.format(name="second"))
    extra = ["--lazy-apps"] if lazy else []
    srv = facts_server(serve, port, tmp_path, "--import", "first_import",
                       "--shared-import", "srv/second_import.py", *extra, workers=2)
    seen = {}
    for _ in range(12):
        d = get(port)
        seen[d["pid"]] = d
    for d in seen.values():
        assert d["before_me"] == ["first_import", "srv_second_import"], d
        assert d["order"] == "first second ", d
        if lazy:
            assert d["first_import_pid"] == d["pid"], d
        else:
            assert d["first_import_pid"] == loader_pids(srv.log)[0], (d, srv.log)
    assert "NOT HONOURED" not in srv.log


@pytest.mark.parametrize("lazy", [False, True], ids=["preload", "lazy-apps"])
def test_import_that_fails_stops_the_start_like_the_app(serve, port, tmp_path, lazy):
    (tmp_path / "facts_app.py").write_text(FACTS_APP)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(tmp_path / "facts_app.py"),
                 "--import", "no_such_module_for_import_test",
                 *(["--lazy-apps"] if lazy else [])], ready=False, cwd=tmp_path)
    assert srv.proc.wait(15) == 1, srv.log
    assert "\nModuleNotFoundError: No module named 'no_such_module_for_import_test'\n" in srv.log
    assert ("unable to load app: --import no_such_module_for_import_test: ModuleNotFoundError: "
            "No module named 'no_such_module_for_import_test'") in srv.log, srv.log
    assert ") ready" not in srv.log


@pytest.mark.parametrize("lazy", [False, True], ids=["preload", "lazy-apps"])
def test_chdir2_changes_directory_after_the_app_is_loaded(serve, port, tmp_path, lazy):
    """The app is imported in the starting directory; the workers serve in
    --chdir2's (a respawned one too)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    srv = facts_server(serve, port, tmp_path, "--chdir2", str(elsewhere),
                       *(["--lazy-apps"] if lazy else []))
    d = get(port)
    assert (d["import_cwd"], d["cwd"]) == (str(tmp_path), str(elsewhere)), d
    os.kill(d["pid"], signal.SIGKILL)
    srv.wait_log(") ready", count=2, timeout=10)
    d2 = get(port)
    assert d2["pid"] != d["pid"] and d2["cwd"] == str(elsewhere), d2
    assert "NOT HONOURED" not in srv.log


def test_chdir2_to_a_missing_directory_stops_the_start(serve, port, tmp_path):
    missing = tmp_path / "missing"
    srv = facts_server(serve, port, tmp_path, "--chdir2", str(missing), ready=False)
    assert srv.proc.wait(15) == 1, srv.log
    assert f"--chdir2: cannot chdir to {missing}" in srv.log, srv.log
