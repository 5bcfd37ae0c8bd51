"""Real uWSGI deployments, started unchanged: every uwsgi.ini in
tests/migration/configs/ (stored verbatim; index.json names each one's
repository, path and commit) is started by the real server in a sandbox, and
must do today what index.json says: serve a request on one of its listeners,
or refuse to start with the named blocker. A served config's start-up report
must name the options it does not honour.

The sandbox changes only what cannot exist here: absolute paths are moved under
a temporary root (/srv/app -> ROOT/srv/app), TCP listeners get free loopback
ports, uid/gid (and chown-socket) become the current user, the environment
variables the project's image sets are set, a virtualenv is created where the
config names one, and a stub WSGI app is written where it names its app
(found with `uwsgi-rs --get`, i.e. after uwsgi-rs's own expansion), and a
stub script that exits 0 where its hooks, daemons or cron jobs run one of
the project's (`./manage.py migrate`).

Run as a script (`python3 tests/test_migration.py`) it prints, per config,
what happens and what stops the ones that do not start: the work queue of the
option families.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import BIN, Server, free_port  # noqa: E402
from test_hostile import uwsgi_packet  # noqa: E402
import helpers

CONFIGS = Path(__file__).resolve().parent / "migration" / "configs"
INDEX = json.loads((CONFIGS / "index.json").read_text())["configs"]

# First path components that are the deployment's own directories. Anything
# else that starts with "/" (a URL mount like /static, /proc/sys/...) stays.
ROOTS = ("app", "app-data", "application", "data", "etc", "home", "labonneboite", "opt",
         "physionet", "run", "seed", "src", "srv", "tmp", "usr", "var", "vagrant")
PATH_RE = re.compile(r"(?<![\w.%$@)/-])(/(?:" + "|".join(map(re.escape, ROOTS))
                     + r")(?=[/\s;,:\"']|$)[^\s;,\"']*)")
LISTENER_KEYS = ("http", "http-socket", "http11-socket", "socket", "uwsgi-socket", "https",
                 "stats", "stats-server")
TCP_LINE = re.compile(r"^(\s*(?:" + "|".join(map(re.escape, LISTENER_KEYS))
                      + r")\s*=\s*)(\[[^\]]*\]|[\w.-]*):(\d+)\b", re.M)
OWNER_LINE = re.compile(r"^(\s*)(uid|gid|chown-socket)(\s*=\s*).*$", re.M)
# A project's own script run by a hook, a daemon or a cron job (./manage.py).
PROJECT_SCRIPT = re.compile(r"(?<![\w/.])\./([\w-]+\.py)\b")
STUB = '''import os


def {callable}(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"migrated " + os.path.basename(__file__).encode()]
'''


def localize(text, root):
    """The sandbox's version of a config's text (see the module docstring)."""
    text = PATH_RE.sub(lambda m: str(root) + m.group(1), text)
    text = TCP_LINE.sub(lambda m: f"{m.group(1)}127.0.0.1:{free_port()}", text)
    uid, gid = os.getuid(), os.getgid()

    def owner(m):
        value = {"uid": str(uid), "gid": str(gid), "chown-socket": f"{uid}:{gid}"}[m.group(2)]
        return f"{m.group(1)}{m.group(2)}{m.group(3)}{value}"
    return OWNER_LINE.sub(owner, text)


def fill(s, root, port):
    return s.replace("{sandbox}", str(root)).replace("{port}", str(port))


def server_env(extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("UWSGI_") or k.startswith("UWSGI_RS_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(extra)
    return env


def get(ini, args, env, cwd, option):
    """`uwsgi-rs ... --get OPTION`: the option's expanded value, or None."""
    r = helpers.run([BIN, "--ini", str(ini), *args, "--get", option], cwd=cwd, env=env,
                    capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"--get {option}: {r.stderr}"
    out = r.stdout.strip("\n")
    return out or None


def make_venv(path):
    """A virtualenv at `path` for the Python uwsgi-rs embeds (no pip: fast)."""
    path = Path(path)
    if (path / "pyvenv.cfg").exists():
        return
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   capture_output=True, timeout=120)


def write_stub(path, callable_name):
    path.parent.mkdir(parents=True, exist_ok=True)
    body = STUB.format(callable=callable_name)
    if callable_name != "application":
        body += f"\napplication = {callable_name}\n"
    path.write_text(body)


def sandbox(entry, root):
    """Lay out the sandbox for `entry`: (ini path, args, env)."""
    port = free_port()
    ini = root / entry["file"]
    ini.write_text(localize((CONFIGS / entry["file"]).read_text(), root))
    for dest, name in entry.get("files", {}).items():
        target = root / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(localize((CONFIGS / name).read_text(), root))
    args = [fill(a, root, port) for a in entry.get("args", [])]
    env = server_env({k: fill(v, root, port) for k, v in entry.get("env", {}).items()})
    # Every directory a rewritten path lives in exists, as on the real host.
    for text in [ini.read_text()] + [(root / d).read_text() for d in entry.get("files", {})]:
        for m in PATH_RE.finditer(text):
            p = Path(m.group(1))
            if str(p).startswith(str(root)):
                (p if str(p).endswith("/") else p.parent).mkdir(parents=True, exist_ok=True)
    if entry["expect"] == "refuse":
        return ini, args, env
    # The directories of sockets, pidfiles and logs named through placeholders
    # and variables (/run/uwsgi/%(deb-confname)/socket), as the init script makes them.
    for key in ("socket", "uwsgi-socket", "http-socket", "pidfile", "stats", "logto"):
        value = get(ini, args, env, root, key)
        if value and value.startswith(str(root)):
            Path(value).parent.mkdir(parents=True, exist_ok=True)
    home = get(ini, args, env, root, "home")
    if home:
        make_venv(home if os.path.isabs(home) else root / home)
    chdir = Path(get(ini, args, env, root, "chdir") or root)
    if not chdir.is_absolute():
        chdir = root / chdir
    chdir.mkdir(parents=True, exist_ok=True)
    callable_name = get(ini, args, env, root, "callable") or "application"
    module = get(ini, args, env, root, "module")
    if module:
        name, _, attr = module.partition(":")
        parts = name.split(".")
        for i in range(1, len(parts)):
            init = chdir.joinpath(*parts[:i]) / "__init__.py"
            init.parent.mkdir(parents=True, exist_ok=True)
            init.touch()
        write_stub(chdir.joinpath(*parts[:-1]) / f"{parts[-1]}.py", attr or callable_name)
    wsgi_file = get(ini, args, env, root, "wsgi-file")
    if wsgi_file:
        write_stub(chdir / wsgi_file, callable_name)
    mount = get(ini, args, env, root, "mount")
    if mount:
        write_stub(chdir / mount.partition("=")[2], callable_name)
    for script in set(PROJECT_SCRIPT.findall(ini.read_text())):
        stub = chdir / script
        if not stub.exists():
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return ini, args, env


def connect(addr, timeout):
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    host, _, port = addr.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)


def request(proto, addr, timeout=10):
    """One GET / on a listener: (status, body)."""
    s = connect(addr, timeout)
    try:
        if proto == "http":
            s.sendall(b"GET /migrated HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        else:
            s.sendall(uwsgi_packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/migrated"),
                                    (b"REQUEST_URI", b"/migrated"), (b"QUERY_STRING", b""),
                                    (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"SERVER_NAME", b"test"),
                                    (b"SERVER_PORT", b"80"), (b"HTTP_HOST", b"test")]))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


def run(entry, root, ready_timeout=30):
    """Start the config in its sandbox: a dict with what happened."""
    ini, args, env = sandbox(entry, root)
    srv = Server(["--ini", str(ini), *args], root, env=env)
    files = [Path(fill(p, root, 0)) for p in entry.get("logs", [])]

    def log():
        """stdout, then the files the config logs to."""
        return srv.log + "".join(f.read_text(errors="replace") for f in files if f.exists())
    result = {"file": entry["file"]}
    try:
        deadline = time.time() + ready_timeout
        while time.time() < deadline and ") ready" not in log() and srv.proc.poll() is None:
            time.sleep(0.05)
        if srv.proc.poll() is not None:
            result.update(started=False, code=srv.proc.returncode)
            return result
        listeners = re.findall(r"serving (http|uwsgi) on (\S+)", log())
        listeners.sort(key=lambda l: (l[0] != "http", l[1].startswith("/")))
        result["started"] = True
        proto, addr = listeners[0]
        addr = addr.replace("0.0.0.0", "127.0.0.1")
        result["status"], result["body"] = request(proto, addr)
        result["via"] = f"{proto} {addr}"
        return result
    finally:
        srv.stop()
        result["log"] = log()


def not_honoured_help():
    """Names of the options `uwsgi-rs --help` lists as not honoured yet."""
    out = helpers.run([BIN, "--help"], capture_output=True, text=True, timeout=10,
                      check=True).stdout
    names, inside = set(), False
    for line in out.splitlines():
        if not line.startswith(" "):
            inside = line.startswith("Not honoured yet")
        elif inside:
            names.update(re.findall(r"--([a-z0-9-]+)", re.split(r"\s{2,}", line.strip())[0]))
    return names


def top_level_keys(text):
    """Keys of the [uwsgi] section outside if/for blocks (always applied)."""
    keys, section, depth = [], None, 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]").strip()
            continue
        if section != "uwsgi":
            continue
        key = line.split("=", 1)[0].strip()
        if key.startswith("if-") or key == "for" or key.startswith("for-"):
            depth += 1
        elif key in ("endif", "end-if", "endfor", "end-for", "end"):
            depth = 0
        elif depth == 0:
            keys.append(key)
    return keys


@pytest.fixture(scope="module")
def not_yet():
    return not_honoured_help()


def test_the_corpus_is_complete():
    """At least 30 configs, each stored verbatim with its source named."""
    assert len(INDEX) >= 30
    files = {e["file"] for e in INDEX} | {x["file"] for e in INDEX
                                          for x in e.get("extra_sources", [])}
    assert files == {p.name for p in CONFIGS.glob("*.ini")}
    for e in INDEX + [x for e in INDEX for x in e.get("extra_sources", [])]:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e["repo"]) and e["path"], e
        assert re.fullmatch(r"[0-9a-f]{40}", e["commit"]), e
    served = sum(e["expect"] == "serve" for e in INDEX)
    assert served * 10 >= len(INDEX) * 8, f"only {served} of {len(INDEX)} expected to serve"


@pytest.mark.parametrize("entry", INDEX, ids=[e["file"] for e in INDEX])
def test_real_config(entry, not_yet):
    root = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))  # short: unix socket paths
    try:
        r = run(entry, root)
        if entry["expect"] == "refuse":
            assert not r["started"], f"{entry['file']} starts now: flip it to serve in index.json"
            assert r["code"] == 1, r["log"]
            assert entry["because"] in r["log"], r["log"]
            # Every problem is reported in the one run, each on its own line.
            assert "uwsgi-rs: " in r["log"]
            return
        assert r["started"], f"{entry['file']} did not start:\n{r['log']}"
        assert r["status"] == 200 and r["body"].startswith(b"migrated "), r
        # What the config asks for and is not honoured is named at start.
        report = re.search(r"NOT HONOURED YET \(the server runs without them\): (.*)", r["log"])
        named = set(re.findall(r"--([a-z0-9-]+)", report.group(1))) if report else set()
        text = (root / entry["file"]).read_text()
        asked = {k for k in top_level_keys(text)}
        for dest in entry.get("files", {}):
            asked |= set(top_level_keys((root / dest).read_text()))
        canonical = {k for k in asked if k in not_yet}
        assert canonical <= named, (canonical - named, r["log"])
        assert named <= {k for k in re.findall(r"^\s*([\w-]+)", text, re.M)} | set(
            k for d in entry.get("files", {}) for k in re.findall(r"^\s*([\w-]+)",
                                                                  (root / d).read_text(), re.M)), named
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    """Print what every config does today, and what stops those that do not start."""
    served, rows = 0, []
    for entry in INDEX:
        root = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
        try:
            r = run(entry, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        if r.get("started"):
            ok = r.get("status") == 200
            served += ok
            report = re.search(r"NOT HONOURED YET[^:]*: (.*)", r["log"])
            rows.append((entry["file"], f"serves ({r['via']})" if ok else f"started, status {r.get('status')}",
                         report.group(1) if report else ""))
        else:
            err = [l for l in r["log"].splitlines() if l.strip()]
            rows.append((entry["file"], f"does not start (exit {r['code']})", " | ".join(err[-6:])))
    for f, what, detail in rows:
        print(f"{f:28} {what}\n{'':28} {detail}" if detail else f"{f:28} {what}")
    print(f"\n{served} of {len(INDEX)} configs start and serve")


if __name__ == "__main__":
    main()
