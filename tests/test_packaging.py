"""uwsgi-rs installed the way Python teams install an app server: a wheel,
with pip, into the app's virtualenv.

- `pip wheel .` builds a manylinux wheel (pyproject.toml's backend: maturin,
  linking with zig for glibc 2.28); `auditwheel show` agrees, and the
  extension needs no libpython (the interpreter that imports it provides
  Python);
- the wheel built here with pyenv's CPython 3.11 installs in seconds, with no
  compiler, into a venv of Debian's own python3.11 (another build of 3.11,
  statically linked), and serves in that interpreter: sys.version,
  sys.prefix, sys.executable are the venv's, the worker maps Debian's
  python and nothing of the build machine's Python; both `uwsgi-rs` and
  `python -m uwsgi_rs` work, as do the client commands; the GIL-free
  tracebacker path works in the static interpreter (a harakiri dump while a
  request holds the GIL); pip uninstalls it.
(docs/MIGRATING.md against `--help`: tests/test_config.py.)
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import conftest
from conftest import APPS, BIN, ROOT, Bg, http_get
import helpers

VERSION_APP = APPS / "pkg_version.py"
DEBIAN_PYTHON = "/usr/bin/python3.11"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYO3_PYTHON",
                        "CARGO_TARGET_DIR", "CONDA_PREFIX", "MATURIN_PEP517_ARGS")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def run(cmd, timeout=600, **kw):
    t0 = time.monotonic()
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       timeout=timeout, **kw)
    took = time.monotonic() - t0
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
    return r, took


def mapped_files(pid):
    """Every file mapped into process `pid` (its executable and libraries)."""
    with open(f"/proc/{pid}/maps") as f:
        return {line.split(None, 5)[5].strip() for line in f
                if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith("/")}


def python_facts(python):
    code = ("import json, platform, sys; print(json.dumps({'version': sys.version, "
            "'base_prefix': sys.base_prefix, 'tag': 'cp%d%d' % sys.version_info[:2]}))")
    return json.loads(run([python, "-c", code], timeout=60, env=clean_env())[0].stdout)


def dynamic_needs(so):
    out = run(["readelf", "-d", so], timeout=30)[0].stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def test_pip_wheel_is_manylinux(tmp_path):
    """`pip wheel .` from the checkout: a manylinux wheel for this CPython,
    whose extension links no libpython."""
    facts = python_facts(sys.executable)
    dist = tmp_path / "dist"
    # its own cargo directory under target/, kept, so a rerun is incremental
    target = ROOT / "target" / "pip-wheel"
    r, took = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, ROOT],
                  timeout=1200, env=clean_env(CARGO_TARGET_DIR=str(target)))
    wheels = list(dist.glob("uwsgi_rs-*.whl"))
    assert len(wheels) == 1, r.stdout
    wheel = wheels[0]
    print(f"\npip wheel: {took:.0f} s -> {wheel.name} ({wheel.stat().st_size / 1e6:.2f} MB)")
    tag = facts["tag"]
    m = re.fullmatch(rf"uwsgi_rs-[^-]+-{tag}-{tag}-manylinux_2_(\d+)_x86_64\.whl", wheel.name)
    assert m and int(m.group(1)) <= 28, wheel.name
    r, _ = run([Path(sys.executable).parent / "auditwheel", "show", wheel], timeout=120)
    text = " ".join(r.stdout.split())
    assert f'consistent with the following platform tag: "manylinux_2_{m.group(1)}_x86_64"' in text, r.stdout
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        so = [n for n in names if re.fullmatch(r"uwsgi_rs/_native\..*\.so", n)]
        assert len(so) == 1, names
        assert "uwsgi_rs/__init__.py" in names and "uwsgi_rs/__main__.py" in names, names
        entry = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry[0]).decode().replace(" ", "") if entry else ""
        assert "uwsgi-rs=uwsgi_rs:main" in scripts, names
        z.extract(so[0], tmp_path)
    needs = dynamic_needs(tmp_path / so[0])
    assert not [n for n in needs if "python" in n], needs


@pytest.fixture(scope="module")
def debian_venv(tmp_path_factory):
    """A venv of Debian's python3.11 with the wheel built from this checkout
    (by scripts/develop.sh, with .venv's CPython: pyenv's 3.11) installed
    by pip; (venv, seconds pip took)."""
    assert os.access(DEBIAN_PYTHON, os.X_OK), f"{DEBIAN_PYTHON} is missing: apt-get install python3.11"
    wheel = conftest.installed_wheel()
    assert "-cp311-cp311-" in wheel.name, f"the wheel must be for CPython 3.11: {wheel.name}"
    venv = tmp_path_factory.mktemp("debian") / "venv"
    run([DEBIAN_PYTHON, "-m", "venv", "--without-pip", venv], timeout=120, env=clean_env())
    # pip from the test runner, told which interpreter to install for; no
    # index, no build isolation: a wheel installs without compiling anything
    _, took = run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
                   "--no-index", "--no-deps", wheel], timeout=300, env=clean_env())
    print(f"\npip install {wheel.name} into a venv of {DEBIAN_PYTHON}: {took:.1f} s")
    return venv, took


def test_wheel_serves_in_debians_python(debian_venv, serve, monkeypatch, tmp_path):
    venv, install_s = debian_venv
    assert install_s < 30, install_s
    deb = python_facts(DEBIAN_PYTHON)
    build = python_facts(sys.executable)
    assert deb["version"] != build["version"], "the point is two different builds of 3.11"
    binary = venv / "bin" / "uwsgi-rs"
    assert binary.read_text().startswith(f"#!{venv}/bin/python"), binary.read_text()[:200]
    r, _ = run([binary, "--version"])
    assert r.stdout.startswith("uwsgi-rs "), r.stdout

    monkeypatch.setattr(conftest, "BIN", str(binary))
    port = conftest.free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(VERSION_APP),
                 "--master", "--processes", "2"], workers=2)
    st, _, body = http_get(port, "/")
    info = json.loads(body)
    assert st == 200
    assert info["version"] == deb["version"].split()[0], (info, deb)
    assert os.path.realpath(info["prefix"]) == os.path.realpath(venv), info
    assert os.path.realpath(info["base_prefix"]) == os.path.realpath(deb["base_prefix"]) == "/usr", info
    assert info["executable"] == str(venv / "bin" / "python"), info
    assert [p for p in info["path"] if p.endswith("site-packages")] == [
        str(venv / "lib" / "python3.11" / "site-packages")], info["path"]

    # what the workers (and the master) have mapped: Debian's python, the
    # wheel's extension from the venv, nothing of the build machine's Python
    build_base = os.path.realpath(build["base_prefix"])
    for pid in [srv.proc.pid] + list(srv.worker_pids().values()):
        files = mapped_files(pid)
        assert "/usr/bin/python3.11" in files, sorted(files)
        assert not [f for f in files if f.startswith(build_base) or "/.pyenv/" in f
                    or str(ROOT / ".venv") in f], sorted(files)
        assert not [f for f in files if "libpython" in f], sorted(files)
        native = [f for f in files if "/uwsgi_rs/_native" in f]
        assert len(native) == 1 and native[0].startswith(str(venv) + "/"), native
    srv.stop()
    assert srv.proc.returncode == 0, srv.log


def test_python_dash_m_and_client_commands(debian_venv, serve, monkeypatch, tmp_path):
    """`python -m uwsgi_rs` is the console script; --help, --version and
    --connect-and-read need nothing but the interpreter."""
    venv, _ = debian_venv
    py = venv / "bin" / "python"
    r, _ = run([py, "-m", "uwsgi_rs", "--version"])
    assert r.stdout.startswith("uwsgi-rs "), r.stdout
    r, _ = run([py, "-m", "uwsgi_rs", "--help"])
    assert "--py-tracebacker" in r.stdout
    r = helpers.run([py, "-m", "uwsgi_rs", "--no-such-option"], capture_output=True, text=True,
                    timeout=30)
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0, r
    assert "unknown option" in r.stderr, r.stderr

    monkeypatch.setattr(conftest, "BIN", str(py))
    port = conftest.free_port()
    base = f"{tmp_path}/tb."
    serve(["-m", "uwsgi_rs", "--http", f"127.0.0.1:{port}", "--wsgi-file", str(VERSION_APP),
           "--py-tracebacker", base])
    Bg(port, "/sleep?20")
    deadline = time.monotonic() + 10
    out = ""
    while "function = nap" not in out and time.monotonic() < deadline:
        out = helpers.run([venv / "bin" / "uwsgi-rs", "--connect-and-read", base + "1"],
                          capture_output=True, text=True, timeout=10).stdout
        time.sleep(0.1)
    assert "function = nap line = time.sleep(seconds)" in out, out
    # the launcher's frames (runpy, __main__, uwsgi_rs.main) are not the app's
    assert "runpy" not in out and "uwsgi_rs" not in out, out


def test_gil_free_dump_and_harakiri_in_a_static_interpreter(debian_venv, serve, monkeypatch,
                                                            tmp_path):
    """Debian's python3.11 links libpython statically: the GIL-free path
    (faulthandler's dumper) still dumps a request holding the GIL, and
    harakiri logs it."""
    venv, _ = debian_venv
    assert not [n for n in dynamic_needs(DEBIAN_PYTHON) if "libpython" in n]
    busy = tmp_path / "busy.py"
    shutil.copy(APPS / "busy.py", busy)
    monkeypatch.setattr(conftest, "BIN", str(venv / "bin" / "uwsgi-rs"))
    port = conftest.free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(busy), "--master",
                 "--harakiri", "3", "--reload-mercy", "1"])
    Bg(port, "/busy")
    srv.wait_log("HARAKIRI triggered by worker 1 core 0", timeout=15)
    assert re.search(r"thread_id = uWSGIWorker1Core0 filename = \S*busy\.py lineno = 5 "
                     r"function = crunch line = return sum\(range\(10\*\*10\)\)", srv.log), srv.log
    srv.wait_log("Respawned uwsgi-rs worker 1", timeout=10)
    srv.stop(signal.SIGQUIT)


def test_pip_uninstall(tmp_path):
    venv = tmp_path / "venv"
    binary = conftest.venv_with_uwsgi_rs(venv, sys.executable)
    assert os.access(binary, os.X_OK)
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "uninstall", "-y",
         "uwsgi-rs"], env=clean_env())
    assert not binary.exists()
    assert not list(venv.glob("lib/python3*/site-packages/uwsgi_rs"))


