"""Shared fixtures for the end-to-end tests: start the real uwsgi-rs binary
on free loopback ports in a per-test temporary directory, capture its log,
and always stop what was started (the whole process group). Plain helpers
are in helpers.py (re-exported here for the modules that import them from
conftest). Tests that build the project are marked `slow`:
`pytest -m "not slow" tests/` runs the rest."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from helpers import (  # noqa: F401 - re-exported for the test modules
    APPS, Bg, free_port, http_get, popen, raw_request, signal_and_wait, wait_port)

ROOT = Path(__file__).resolve().parent.parent
# the console script scripts/develop.sh installs (tests/run.sh runs it first)
BIN = os.environ.get("UWSGI_RS_BIN", str(ROOT / ".venv" / "bin" / "uwsgi-rs"))
# The tests' `python3` (and pip, venv) is the server's interpreter, also when
# pytest is started as `.venv/bin/python -m pytest` without tests/run.sh's PATH.
if (Path(BIN).parent / "python3").exists() and \
        os.environ.get("PATH", "").split(os.pathsep)[0] != str(Path(BIN).parent):
    os.environ["PATH"] = str(Path(BIN).parent) + os.pathsep + os.environ.get("PATH", "")
# pytest-xdist's workers inherit COLUMNS=80 and LINES=24, which curses
# programs run in a tmux pane (uwsgitop, --top) would take over the pane's size.
for _var in ("COLUMNS", "LINES"):
    os.environ.pop(_var, None)


WHEELS = ROOT / "target" / "wheels"


def installed_wheel():
    """The wheel scripts/develop.sh built from this checkout and installed
    into .venv (what BIN runs)."""
    found = sorted(WHEELS.glob("uwsgi_rs-*.whl"))
    assert len(found) == 1, f"expected one wheel in {WHEELS} (run scripts/develop.sh): {found}"
    return found[0]


def venv_with_uwsgi_rs(path, python, wheel=None):
    """A new venv of `python` (without pip of its own) into which the test
    runner's pip installs the wheel; returns the venv's bin/uwsgi-rs."""
    path = Path(path)
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120, capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(path / "bin" / "python"),
                    "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index",
                    str(wheel or installed_wheel())],
                   check=True, timeout=300, capture_output=True)
    return path / "bin" / "uwsgi-rs"


class Server:
    """A running uwsgi-rs master started by a test."""

    def __init__(self, args, cwd, env=None, workers=1, prefix=(), pass_fds=()):
        """`prefix` runs before BIN (a launcher that execs it, e.g.
        fake_systemd.py's); `pass_fds` are inherited by it."""
        self.args = args
        self.cwd = Path(cwd)
        self.log_path = self.cwd / "server.log"
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.pop("VIRTUAL_ENV", None)
        full_env.update(env or {})
        self.proc = popen(
            list(prefix) + [BIN] + args, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=full_env, start_new_session=True, pass_fds=pass_fds)
        self.workers = workers

    @property
    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_log(self, needle, timeout=10.0, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log.count(needle) >= count:
                return True
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)  # a start is ~0.1 s: look often
        raise AssertionError(f"{needle!r} x{count} not in log within {timeout}s:\n{self.log}")

    def wait_ready(self, timeout=15.0):
        self.wait_log(") ready", timeout=timeout, count=self.workers)

    def worker_pids(self):
        import re
        pids = {}
        for m in re.finditer(r"worker (\d+) \(pid: (\d+)\) ready", self.log):
            pids[int(m.group(1))] = int(m.group(2))
        return pids

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


# Modules that build the project (cargo, maturin, other Pythons): minutes each.
SLOW_MODULES = {"test_pythons.py", "test_packaging.py"}


# Tests that assert latencies or CPU time, and those that load both cores
# (wrk, hundreds of clients, a profiler's load, a browser, the builds):
# tests/run.sh runs them in a second round, alone and one after another,
# after the others ran in parallel (pytest-xdist). These modules entirely;
# single tests elsewhere say @pytest.mark.serial. (pytest-xdist's
# --dist loadgroup cannot keep them in one worker instead: with pytest 9
# its xdist_group marks have no effect.)
SERIAL_MODULES = {"test_cores.py", "test_control_pressure.py", "test_harakiri.py",
                  "test_observability.py", "test_profiler.py", "test_tracebacker.py",
                  "test_lifecycle.py", "test_dashboard.py"} | SLOW_MODULES


def pytest_addoption(parser):
    parser.addoption("--serial-tests", choices=("with", "skip", "only"), default="with",
                     help="with (default), skip or only the serial tests (tests/run.sh runs "
                          "the others in parallel, then these alone)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: builds the project; minutes (-m 'not slow' skips)")
    config.addinivalue_line("markers", "serial: asserts a latency or loads the machine: "
                            "tests/run.sh runs it alone (--serial-tests)")


def pytest_collection_modifyitems(config, items):
    which = config.getoption("--serial-tests")
    kept, dropped = [], []
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        serial = item.path.name in SERIAL_MODULES or item.get_closest_marker("serial")
        (dropped if which == ("skip" if serial else "only") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@contextlib.contextmanager
def running(args, cwd, workers=1, env=None):
    """A server for several tests (a module-scoped fixture's), ready, and
    stopped on the way out."""
    srv = Server(args, cwd, env=env, workers=workers)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def serve(tmp_path):
    """serve(args, workers=N) -> Server; stopped at teardown."""
    started = []

    def start(args, workers=1, env=None, ready=True, cwd=None, **kw):
        s = Server(args, cwd or tmp_path, env=env, workers=workers, **kw)
        started.append(s)
        if ready:
            s.wait_ready()
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def port():
    return free_port()


@pytest.fixture(scope="session")
def nobody_venv_bin():
    """uwsgi-rs installed into a venv of Debian's python3.X (this X.Y), in a
    directory user nobody can read all of, while this interpreter (and
    .venv's, based on it) may live under /root, which nobody cannot enter.
    Built once per session (per xdist worker): installing the wheel takes
    seconds, and the tests that run as nobody only run it."""
    deb = "/usr/bin/python%d.%d" % sys.version_info[:2]
    assert os.access(deb, os.X_OK), f"{deb} is missing (Debian's python3 provides it)"
    d = tempfile.mkdtemp(prefix="uwsgi-rs-nobody-venv-")
    try:
        os.chmod(d, 0o755)
        yield venv_with_uwsgi_rs(os.path.join(d, "venv"), deb)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def nobody_bin(nobody_venv_bin, monkeypatch):
    """The servers this test starts run nobody_venv_bin's uwsgi-rs."""
    monkeypatch.setattr(sys.modules[__name__], "BIN", str(nobody_venv_bin))
    return nobody_venv_bin






NGINX = "/usr/sbin/nginx"


@contextlib.contextmanager
def nginx_running(tmp_path, port, http_conf, conf_dir=None):
    """Debian's nginx in the foreground, one process, every file under
    tmp_path; `http_conf` goes inside its `http {}` block (servers, includes)
    and must listen on 127.0.0.1:port. nginx.conf goes in `conf_dir` (default
    tmp_path), which relative includes start from. Stopped (SIGQUIT, then SIGKILL to its
    group) on the way out."""
    assert os.path.exists(NGINX), f"{NGINX} is missing: install nginx"
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    conf = (conf_dir or tmp_path) / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {tmp_path}/nginx-access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{http_conf}
}}
""")
    log = open(tmp_path / "nginx-stderr.log", "wb")
    proc = popen([NGINX, "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log"),
                  "-c", str(conf)],
                 stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                 start_new_session=True)
    try:
        try:
            wait_port(port)
        except AssertionError:
            errors = tmp_path / "nginx-error.log"
            raise AssertionError("nginx did not start:\n"
                                 + (tmp_path / "nginx-stderr.log").read_text()
                                 + (errors.read_text() if errors.exists() else ""))
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        log.close()


@pytest.fixture
def nginx(tmp_path):
    """nginx listening on 127.0.0.1:<port>, passing everything to
    unix:<tmp_path>/app.sock with uwsgi_pass. Yields (port, socket path)."""
    assert os.path.exists("/etc/nginx/uwsgi_params")
    port = free_port()
    sock = tmp_path / "app.sock"
    with nginx_running(tmp_path, port, f"""
    client_max_body_size 20m;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass unix:{sock};
            uwsgi_read_timeout 20s;
        }}
    }}"""):
        yield port, sock
