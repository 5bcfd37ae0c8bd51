"""uwsgi-rs's wheel built for, and run on, every CPython 3.9-3.13 on the machine.

scripts/pythons.sh finds the interpreters (pyenv's, python3.X on PATH,
Debian's /usr/bin/python3.X) and builds one wheel per X.Y (scripts/wheel.sh;
for two builds of one X.Y, such as pyenv's 3.11.7 and Debian's static
3.11.2, the same wheel serves both). For each interpreter this module
installs its X.Y's wheel into a fresh venv of that interpreter, serves an
app with the venv's `uwsgi-rs` and checks that:

- the app runs on exactly that interpreter (version, sys.prefix the venv,
  sys.executable the venv's python) and the worker maps that interpreter
  (its executable, or its libpython) and no other Python's files;
- the tracebacker dumps a request sleeping in Python;
- the tracebacker dumps a request holding the GIL in C (busy.py, GIL-free
  path) in under a second;
- harakiri kills that request's worker and logs its traceback.

`scripts/pythons.sh check [VERSION...]` runs only this module; the build
directories default to target/py-X.Y (override with UWSGI_RS_PY_TARGET, a
prefix to which X.Y is appended).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import conftest
from conftest import APPS, ROOT, http_get, Bg
import helpers

SCRIPT = ROOT / "scripts" / "pythons.sh"
SUPPORTED = [(3, m) for m in range(9, 14)]
RESULTS = {}  # "version python" -> dict(build_s=..., gil_dump_ms=...)


def discover():
    """[(version, python path)] from scripts/pythons.sh list (or the
    interpreters chosen by `pythons.sh check`, in UWSGI_RS_PYTHONS)."""
    chosen = os.environ.get("UWSGI_RS_PYTHONS")
    args = [str(SCRIPT), "list"] + (chosen.split(":") if chosen else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120).stdout
    found = []
    for line in out.splitlines():
        if line.strip():
            version, path = line.split(" ", 1)
            found.append((version, path))
    return found


PYTHONS = discover()


def build(python):
    """The wheel for `python`'s X.Y (built, or rebuilt incrementally)."""
    t0 = time.monotonic()
    r = subprocess.run([str(SCRIPT), "build", python], capture_output=True, text=True,
                       timeout=1200, cwd=ROOT)
    assert r.returncode == 0, f"build for {python} failed:\n{r.stderr[-6000:]}"
    version, py, wheel = r.stdout.split()[-3:]
    assert py == python and os.path.isfile(wheel), r.stdout
    return wheel, time.monotonic() - t0


def interp_facts(python):
    code = ("import sys, sysconfig, platform, json; print(json.dumps({"
            "'version': platform.python_version(), 'base_prefix': sys.base_prefix, "
            "'executable': __import__('os').path.realpath(sys.executable), "
            "'tag': 'cp%d%d' % sys.version_info[:2]}))")
    return json.loads(subprocess.run([python, "-c", code], check=True, capture_output=True,
                                     text=True, timeout=60).stdout)


def mapped_files(pid):
    files = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                files.add(parts[5].strip())
    return files


def dump(binary, sock, timeout=10):
    t0 = time.monotonic()
    r = helpers.run([str(binary), "--connect-and-read", sock], capture_output=True,
                    timeout=timeout)
    return r, time.monotonic() - t0


def wait_dump(binary, sock, needle, timeout=10):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if os.path.exists(sock):
            last, _ = dump(binary, sock)
            if last.returncode == 0 and needle in last.stdout.decode("utf-8", "replace"):
                return last.stdout.decode("utf-8", "replace")
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never in a dump of {sock}: {last}")


def test_interpreters_found():
    versions = [v for v, _ in PYTHONS]
    assert any(v.startswith("3.11.") for v in versions), f"CPython 3.11 is required: {PYTHONS}"
    for v, _ in PYTHONS:
        assert tuple(int(x) for x in v.split(".")[:2]) in SUPPORTED, v


@pytest.mark.parametrize("version,python", PYTHONS, ids=[f"{v}-{p}" for v, p in PYTHONS])
def test_wheel_in_each_python(version, python, serve, tmp_path, monkeypatch, port):
    facts = interp_facts(python)
    assert facts["version"] == version
    wheel, build_s = build(python)
    assert f"-{facts['tag']}-{facts['tag']}-manylinux_2_" in wheel, wheel
    RESULTS[version + " " + python] = {"build_s": build_s}
    venv = tmp_path / "venv"
    binary = conftest.venv_with_uwsgi_rs(venv, python, wheel)
    monkeypatch.setattr(conftest, "BIN", str(binary))

    # 1. the app runs on that interpreter, in the venv
    app = tmp_path / "pkg_version.py"
    shutil.copy(APPS / "pkg_version.py", app)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base])
    st, _, body = http_get(port, "/")
    info = json.loads(body)
    assert st == 200 and info["version"] == version, info
    assert os.path.realpath(info["prefix"]) == os.path.realpath(venv), info
    assert info["executable"] == str(venv / "bin" / "python"), info
    assert info["gil_enabled"] is True

    # ... and maps it, and no other Python: each other interpreter's prefix
    # is absent (pyenv's live under their own prefix; Debian's is /usr, so
    # for it only its executable and libpython are looked for)
    files = mapped_files(srv.worker_pids()[1])
    mine = os.path.realpath(facts["base_prefix"])
    assert facts["executable"] in files, sorted(files)
    for _, other in PYTHONS:
        of = interp_facts(other)
        if of["executable"] == facts["executable"]:
            continue
        assert of["executable"] not in files, (other, sorted(files))
        theirs = os.path.realpath(of["base_prefix"])
        if theirs != mine and theirs != "/usr":
            assert not [f for f in files if f.startswith(theirs + "/")], (other, sorted(files))
    assert not [f for f in files if "libpython" in f and not f.startswith(mine + "/")], sorted(files)

    # 2. a request sleeping in Python, dumped through the interpreter
    Bg(port, "/sleep?30")
    text = wait_dump(binary, base + "1", "function = nap")
    assert "*** uWSGI Python tracebacker output ***" in text
    assert re.search(rf"thread_id = uWSGIWorker1Core[01] filename = {re.escape(str(app))} "
                     r"lineno = \d+ function = application line = nap\(", text), text
    assert re.search(r"thread_id = uWSGIWorker1Core[01] .* function = nap line = "
                     r"time\.sleep\(seconds\)", text), text
    srv.stop(signal.SIGQUIT, timeout=10)

    # 3. a request holding the GIL in C: the dump still comes back, fast,
    # and harakiri logs it
    busy = tmp_path / "busy.py"
    shutil.copy(APPS / "busy.py", busy)
    port2 = conftest.free_port()
    base2 = f"{tmp_path}/tb2."
    srv2 = serve(["--http", f"127.0.0.1:{port2}", "--wsgi-file", str(busy), "--master",
                  "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base2,
                  "--harakiri", "6"])
    Bg(port2, "/busy")
    # wait until the request is inside crunch() (any dump path), then time dumps
    wait_dump(binary, base2 + "1", "function = crunch")
    times = []
    crunch = (r"thread_id = uWSGIWorker1Core[01] filename = \S*busy\.py lineno = 5 "
              r"function = crunch line = return sum\(range\(10\*\*10\)\)")
    for _ in range(3):
        r, took = dump(binary, base2 + "1")
        out = r.stdout.decode("utf-8", "replace")
        assert r.returncode == 0, r
        assert re.search(crunch, out), out
        times.append(took)
    assert max(times) < 1.0, times
    RESULTS[version + " " + python]["gil_dump_ms"] = max(times) * 1000
    srv2.wait_log("HARAKIRI triggered by worker 1 core", timeout=15)
    assert re.search(crunch, srv2.log), srv2.log
    srv2.wait_log("Respawned uwsgi-rs worker 1", timeout=10)
    srv2.stop(signal.SIGQUIT, timeout=10)


def test_summary(capsys):
    """Prints the interpreters tested (runs last)."""
    with capsys.disabled():
        print("\nCPython versions built and tested:")
        for v, p in PYTHONS:
            r = RESULTS.get(f"{v} {p}")
            if r is None:
                print(f"  {v:8} {p}: not run")
            else:
                print(f"  {v:8} {p}: build {r['build_s']:.0f} s, "
                      f"GIL-held dump {r.get('gil_dump_ms', float('nan')):.0f} ms")
    assert PYTHONS
