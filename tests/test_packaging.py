"""uwsgi-rs installed the way Python teams install an app server: with pip,
into the app's virtualenv (pyproject.toml, maturin, `bindings = "bin"`).

- a wheel built from the repository (`pip wheel`) installs into a fresh venv
  and puts a `uwsgi-rs` command into its bin/; run from there (by path, and
  by name with the venv activated) the app sees `sys.prefix` == the venv,
  imports a package pip installed only in the venv and cannot import the
  base interpreter's packages; the build tree is deleted first, so nothing
  from it is needed at run time, and the only library outside the venv that
  the binary loads is the venv's base interpreter's libpython;
- `pip install <repo>` into a fresh venv of another CPython builds for that
  venv's interpreter;
- `cargo install --path .` still works.
(docs/MIGRATING.md against `--help`: tests/test_config.py.)

Each install compiles the crate in a fresh target directory (about a minute
each on two cores).
"""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import conftest
from conftest import APPS, BIN, ROOT, http_get

VERSION_APP = APPS / "pkg_version.py"


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYO3_PYTHON",
                        "CARGO_TARGET_DIR", "CONDA_PREFIX")}
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


def interp(python):
    code = ("import json, platform, sys, sysconfig; print(json.dumps({"
            "'version': platform.python_version(), 'prefix': sys.prefix, "
            "'base_prefix': sys.base_prefix, 'tag': 'cp%d%d' % sys.version_info[:2], "
            "'libdir': sysconfig.get_config_var('LIBDIR')}))")
    r, _ = run([python, "-c", code], timeout=60, env=clean_env())
    return json.loads(r.stdout)


def make_venv(path, python="python3"):
    run([python, "-m", "venv", path], timeout=120, env=clean_env())
    return Path(path)


def venv_only_wheel(dst):
    """A tiny pure-Python wheel (pkg_venvonly) for pip to install into a venv."""
    files = {
        "pkg_venvonly/__init__.py": "MARKER = 'installed-in-the-venv'\n",
        "pkg_venvonly-1.0.dist-info/METADATA":
            "Metadata-Version: 2.1\nName: pkg-venvonly\nVersion: 1.0\n",
        "pkg_venvonly-1.0.dist-info/WHEEL":
            "Wheel-Version: 1.0\nGenerator: test_packaging\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("pkg_venvonly-1.0.dist-info/RECORD,,")
    path = Path(dst) / "pkg_venvonly-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("pkg_venvonly-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def libpython_of(binary):
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    found = [ln.split("=>")[1].split("(")[0].strip() for ln in out.splitlines()
             if "libpython" in ln and "=>" in ln]
    assert len(found) == 1 and found[0].startswith("/"), out
    return found[0]


def other_python():
    """The newest supported CPython whose minor version differs from
    python3's (so `pip install .` demonstrably builds for the venv's Python),
    else python3 itself."""
    out = subprocess.run([str(ROOT / "scripts" / "pythons.sh"), "list"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    mine = ".".join(interp("python3")["version"].split(".")[:2])
    others = [ln.split(" ", 1) for ln in out.splitlines() if ln.strip()]
    others = [p for v, p in others if not v.startswith(mine + ".")]
    return others[-1] if others else "python3"


def check_served_by_venv(serve, port, venv, facts, binary, env=None):
    """Serve pkg_version.py with `binary`; it must run in `venv`."""
    s = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(VERSION_APP)], env=env)
    st, _, body = http_get(port, "/")
    info = json.loads(body)
    assert st == 200
    assert os.path.realpath(info["prefix"]) == os.path.realpath(venv), info
    assert os.path.realpath(info["exec_prefix"]) == os.path.realpath(venv), info
    assert os.path.realpath(info["base_prefix"]) == os.path.realpath(facts["base_prefix"]), info
    assert info["version"] == facts["version"], info
    site = [p for p in info["path"] if p.endswith("site-packages")]
    assert site and all(os.path.realpath(p).startswith(os.path.realpath(venv) + "/")
                        for p in site), info["path"]
    # a package pip installed only in the venv imports ...
    st, _, body = http_get(port, "/import/pkg_venvonly")
    d = json.loads(body)
    assert d["ok"] and d["marker"] == "installed-in-the-venv", d
    assert os.path.realpath(d["file"]).startswith(os.path.realpath(venv) + "/"), d
    # ... one installed only outside it (pytest, in the base python3) does not
    st, _, body = http_get(port, "/import/pytest")
    assert json.loads(body)["ok"] is False
    return s, info


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """One wheel built from the repository with `pip wheel` for python3,
    in a fresh cargo target directory that is deleted afterwards."""
    tmp = tmp_path_factory.mktemp("wheel")
    target = tmp / "target"
    r, took = run(["python3", "-m", "pip", "wheel", "--no-deps", "-w", tmp / "dist", ROOT],
                  timeout=900, env=clean_env(CARGO_TARGET_DIR=str(target)))
    shutil.rmtree(target)
    wheels = list((tmp / "dist").glob("uwsgi_rs-*.whl"))
    assert len(wheels) == 1, r.stdout
    print(f"\npip wheel: {took:.0f} s -> {wheels[0].name}")
    return wheels[0]


def test_wheel_into_fresh_venv(wheel, tmp_path, serve, monkeypatch):
    facts = interp("python3")
    # a binary wheel for this CPython (it embeds libpython), and it holds the command
    assert re.fullmatch(rf"uwsgi_rs-[^-]+-{facts['tag']}-{facts['tag']}-linux_\w+\.whl",
                        wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as z:
        scripts = [n for n in z.namelist() if n.endswith(".data/scripts/uwsgi-rs")]
    assert scripts, "no uwsgi-rs in the wheel's scripts"

    venv = make_venv(tmp_path / "venv")
    vpy = venv / "bin" / "python"
    run([vpy, "-m", "pip", "install", "--no-index", wheel, venv_only_wheel(tmp_path)],
        env=clean_env())
    binary = venv / "bin" / "uwsgi-rs"
    assert os.access(binary, os.X_OK)
    r, _ = run([binary, "--version"])
    assert r.stdout.startswith("uwsgi-rs "), r.stdout

    # the only thing outside the venv it loads: the base interpreter's libpython
    lib = libpython_of(binary)
    assert os.path.realpath(lib).startswith(os.path.realpath(facts["libdir"]) + "/"), lib

    # run by path, venv not activated (conftest removes VIRTUAL_ENV)
    monkeypatch.setattr(conftest, "BIN", str(binary))
    s, info = check_served_by_venv(serve, conftest.free_port(), venv, facts, binary)
    s.stop()
    # run by name with the venv activated, from an unrelated directory
    monkeypatch.setattr(conftest, "BIN", "uwsgi-rs")
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:/usr/bin:/bin"}
    s, info = check_served_by_venv(serve, conftest.free_port(), venv, facts, binary, env=env)
    s.stop()
    assert s.proc.returncode == 0, s.log

    # pip knows the file and removes it
    r, _ = run([vpy, "-m", "pip", "show", "-f", "uwsgi-rs"], env=clean_env())
    assert re.search(r"^\s*\.\./\.\./\.\./bin/uwsgi-rs$", r.stdout, re.M), r.stdout
    run([vpy, "-m", "pip", "uninstall", "-y", "uwsgi-rs"], env=clean_env())
    assert not binary.exists()


def test_pip_install_repo_into_fresh_venv_of_another_python(tmp_path, serve, monkeypatch):
    python = other_python()
    venv = make_venv(tmp_path / "venv", python)
    vpy = venv / "bin" / "python"
    facts = interp(vpy)
    target = tmp_path / "target"
    r, took = run([vpy, "-m", "pip", "install", ROOT, venv_only_wheel(tmp_path)],
                  timeout=900, env=clean_env(CARGO_TARGET_DIR=str(target)))
    print(f"\npip install . ({facts['version']}): {took:.0f} s")
    shutil.rmtree(target)
    binary = venv / "bin" / "uwsgi-rs"
    lib = libpython_of(binary)
    assert os.path.realpath(lib).startswith(os.path.realpath(facts["libdir"]) + "/"), lib
    monkeypatch.setattr(conftest, "BIN", str(binary))
    check_served_by_venv(serve, conftest.free_port(), venv, facts, binary)


def test_cargo_install(tmp_path, serve, monkeypatch):
    facts = interp("python3")
    root = tmp_path / "cargo-root"
    r, took = run(["cargo", "install", "--locked", "--path", ROOT, "--root", root],
                  timeout=900, env=clean_env(CARGO_TARGET_DIR=str(tmp_path / "target")))
    print(f"\ncargo install: {took:.0f} s")
    shutil.rmtree(tmp_path / "target")
    binary = root / "bin" / "uwsgi-rs"
    r, _ = run([binary, "--version"])
    assert r.stdout.startswith("uwsgi-rs ")
    monkeypatch.setattr(conftest, "BIN", str(binary))
    port = conftest.free_port()
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(VERSION_APP)])
    info = json.loads(http_get(port, "/")[2])
    assert info["version"] == facts["version"], info
    assert os.path.realpath(info["prefix"]) == os.path.realpath(facts["prefix"]), info


