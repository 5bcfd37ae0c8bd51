"""uwsgi-rs built for, and run on, every CPython 3.9-3.13 on the machine.

scripts/pythons.sh finds the interpreters (pyenv's, python3.X on PATH,
Debian's /usr/bin/python3.X) and builds one binary per interpreter with
PYO3_PYTHON pointing at it, each in its own target directory. For each build
this module serves an app with that binary and checks that:

- the app runs on exactly that interpreter (version, prefix) and the binary
  loads that interpreter's libpython (build.rs's run path), not another one
  of the same version;
- the tracebacker dumps a request sleeping in Python;
- the tracebacker dumps a request holding the GIL in C (busy.py, GIL-free
  path) in under a second.

`scripts/pythons.sh check [VERSION...]` runs only this module; the build
directories default to target/py-VERSION (override with UWSGI_RS_PY_TARGET,
a prefix to which the version is appended).
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import conftest
from conftest import APPS, ROOT, http_get, Bg

SCRIPT = ROOT / "scripts" / "pythons.sh"
SUPPORTED = [(3, m) for m in range(8, 14)]
RESULTS = {}  # version -> dict(python=..., build_s=..., gil_dump_ms=...)


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
    t0 = time.monotonic()
    r = subprocess.run([str(SCRIPT), "build", python], capture_output=True, text=True,
                       timeout=900, cwd=ROOT)
    assert r.returncode == 0, f"build for {python} failed:\n{r.stderr[-6000:]}"
    version, py, binary = r.stdout.split()[-3:]
    assert py == python and os.access(binary, os.X_OK), r.stdout
    return binary, time.monotonic() - t0


def interp_facts(python):
    code = ("import sys, sysconfig, platform, json; print(json.dumps({"
            "'version': platform.python_version(), 'prefix': sys.prefix, "
            "'libdir': sysconfig.get_config_var('LIBDIR'), "
            "'ldlibrary': sysconfig.get_config_var('LDLIBRARY')}))")
    import json
    return json.loads(subprocess.run([python, "-c", code], check=True, capture_output=True,
                                     text=True, timeout=60).stdout)


def loaded_libpython(binary):
    """The libpython the dynamic linker picks for the binary (ldd)."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True,
                         timeout=30).stdout
    libs = [ln.split("=>")[1].split("(")[0].strip() for ln in out.splitlines()
            if "libpython" in ln and "=>" in ln]
    assert len(libs) == 1, out
    return libs[0]


def dump(binary, sock, timeout=10):
    t0 = time.monotonic()
    r = subprocess.run([binary, "--connect-and-read", sock], capture_output=True,
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
def test_build_and_run(version, python, serve, tmp_path, monkeypatch, port):
    facts = interp_facts(python)
    assert facts["version"] == version
    binary, build_s = build(python)
    RESULTS[version + " " + python] = {"build_s": build_s}
    monkeypatch.setattr(conftest, "BIN", binary)

    # linked against this interpreter's libpython, found through the run path
    lib = loaded_libpython(binary)
    assert os.path.realpath(lib) == os.path.realpath(
        os.path.join(facts["libdir"], facts["ldlibrary"])), (lib, facts)

    # 1. the app runs on that interpreter
    app = tmp_path / "pkg_version.py"
    shutil.copy(APPS / "pkg_version.py", app)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base])
    st, _, body = http_get(port, "/")
    import json
    info = json.loads(body)
    assert st == 200 and info["version"] == version, info
    assert os.path.realpath(info["prefix"]) == os.path.realpath(facts["prefix"]), info
    assert info["gil_enabled"] is True

    # 2. a request sleeping in Python, dumped through the interpreter
    Bg(port, "/sleep?30")
    text = wait_dump(binary, base + "1", "function = nap")
    assert "*** uWSGI Python tracebacker output ***" in text
    assert re.search(rf"thread_id = uWSGIWorker1Core[01] filename = {re.escape(str(app))} "
                     r"lineno = \d+ function = application line = nap\(", text), text
    assert re.search(r"thread_id = uWSGIWorker1Core[01] .* function = nap line = "
                     r"time\.sleep\(seconds\)", text), text
    srv.stop(signal.SIGQUIT, timeout=10)

    # 3. a request holding the GIL in C: the dump still comes back, fast
    busy = tmp_path / "busy.py"
    shutil.copy(APPS / "busy.py", busy)
    port2 = conftest.free_port()
    base2 = f"{tmp_path}/tb2."
    srv2 = serve(["--http", f"127.0.0.1:{port2}", "--wsgi-file", str(busy), "--master",
                  "--threads", "2", "--reload-mercy", "1", "--py-tracebacker", base2])
    Bg(port2, "/busy")
    # wait until the request is inside crunch() (any dump path), then time dumps
    wait_dump(binary, base2 + "1", "function = crunch")
    times = []
    for _ in range(3):
        r, took = dump(binary, base2 + "1")
        out = r.stdout.decode("utf-8", "replace")
        assert r.returncode == 0, r
        assert re.search(r"thread_id = uWSGIWorker1Core[01] filename = \S*busy\.py lineno = 5 "
                         r"function = crunch line = return sum\(range\(10\*\*10\)\)", out), out
        times.append(took)
    assert max(times) < 1.0, times
    RESULTS[version + " " + python]["gil_dump_ms"] = max(times) * 1000
    srv2.stop(signal.SIGQUIT, timeout=10)
    assert "DAMN" not in srv2.log, srv2.log


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
