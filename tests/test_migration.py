"""Real uWSGI deployments, started unchanged: every uwsgi.ini in
tests/migration/configs/ (stored verbatim; index.json names each one's
repository, path and commit) is started by the real server in a sandbox, and
must do today what index.json says: serve a request on one of its listeners,
or refuse to start with the named blocker. A served config's start-up report
must name the options it does not honour.

Some deployments are a command line rather than an ini file: an entry with
"kind": "script" stores the project's start script verbatim, and the script
itself is run (with a `uwsgi` on PATH that records its arguments) to get the
command line it starts; "kind": "dockerfile" stores the Dockerfile, whose ENV
lines and exec-form CMD are the environment and the command line.

The sandbox changes only what cannot exist here: absolute paths are moved under
a temporary root (/srv/app -> ROOT/srv/app), TCP listeners get free loopback
ports, uid/gid (and chown-socket) become the current user, the environment
variables the project's image sets are set, a virtualenv is created where the
config names one, and a stub WSGI app is written where it names its app
(found with `uwsgi-rs --get`, i.e. after uwsgi-rs's own expansion), or a
stub PasteDeploy where it loads its app with --paste, and a
stub script that exits 0 where its hooks, daemons or cron jobs run one of
the project's (`./manage.py migrate`).

Run as a script (`python3 tests/test_migration.py`) it prints, per config,
what happens and what stops the ones that do not start: the work queue of the
option families.
"""

import json
import os
import re
import shlex
import shutil
import signal
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
ROOTS = ("app", "app-data", "application", "code", "data", "etc", "home", "label-studio",
         "labonneboite", "mapproxy", "opt", "physionet", "run", "seed", "src", "srv", "tmp",
         "usr", "var", "vagrant", "venv")
PATH_RE = re.compile(r"(?<![\w.%$@)/-])(/(?:" + "|".join(map(re.escape, ROOTS))
                     + r")(?=[/\s;,:\"']|$)[^\s;,\"']*)")
LISTENER_KEYS = ("http", "http-socket", "http11-socket", "socket", "uwsgi-socket", "https",
                 "stats", "stats-server")
# `key = value` (ini), `key: value` (YAML) or `<key>value</key>` (XML).
TCP_LINE = re.compile(r"^(\s*(?:" + "|".join(map(re.escape, LISTENER_KEYS))
                      + r")\s*[=:]\s*)(\[[^\]]*\]|[\w.-]*):(\d+)\b", re.M)
TCP_ELEMENT = re.compile(r"(<(?:" + "|".join(map(re.escape, LISTENER_KEYS))
                         + r")>\s*)(\[[^\]]*\]|[\w.-]*):(\d+)\b")
OWNER_LINE = re.compile(r"^(\s*)(uid|gid|chown-socket)(\s*[=:]\s*)[^\n]*$", re.M)
OWNER_ELEMENT = re.compile(r"(<)(uid|gid|chown-socket)(>)[^<]*(?=</)")
# A project's own script run by a hook, a daemon or a cron job (./manage.py).
PROJECT_SCRIPT = re.compile(r"(?<![\w/.])\./([\w-]+\.py)\b")
STUB = '''import os


def {callable}(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"migrated " + os.path.basename(__file__).encode()]
'''


# PasteDeploy, where a config loads its app with --paste: loadapp(URI) of the
# paste ini the config names gives the stub app.
PASTE_STUB = '''import os


def loadapp(uri, name=None, relative_to=None, global_conf=None):
    path = uri[len("config:"):]
    assert uri.startswith("config:") and os.path.isabs(path), uri

    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"migrated " + os.path.basename(path).encode()]
    return application
'''


def localize(text, root):
    """The sandbox's version of a config's text (see the module docstring)."""
    text = PATH_RE.sub(lambda m: str(root) + m.group(1), text)
    for tcp in (TCP_LINE, TCP_ELEMENT):
        text = tcp.sub(lambda m: f"{m.group(1)}127.0.0.1:{free_port()}", text)
    uid, gid = os.getuid(), os.getgid()

    def owner(m):
        value = {"uid": str(uid), "gid": str(gid), "chown-socket": f"{uid}:{gid}"}[m.group(2)]
        return f"{m.group(1)}{m.group(2)}{m.group(3)}{value}"
    return OWNER_ELEMENT.sub(owner, OWNER_LINE.sub(owner, text))


def file_option(name):
    """The option that reads a stored config file: --ini, --yaml or --xml."""
    return {".yaml": "--yaml", ".yml": "--yaml", ".xml": "--xml"}.get(Path(name).suffix, "--ini")


def fill(s, root, port):
    return (s.replace("{sandbox}", str(root)).replace("{port}", str(port))
            .replace("{uid}", str(os.getuid())).replace("{gid}", str(os.getgid())))


def dockerfile_command(text):
    """(environment, argv) of a Dockerfile: its ENV lines and its exec-form CMD."""
    text = re.sub(r"\\\n", " ", text)
    env = {}
    for line in re.findall(r"^ENV\s+(.*)$", text, re.M):
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            env[key] = value
    cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", text, re.M)
    return env, json.loads(cmd[-1])


def script_command(script, env, root):
    """The argv with which the start script execs uwsgi: the script is run
    with a `uwsgi` on PATH that records its arguments and exits."""
    shim_dir = root / "shim-bin"
    shim_dir.mkdir()
    record = root / "argv.json"
    shim = shim_dir / "uwsgi"
    shim.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(record)!r}, 'w').write(json.dumps(sys.argv))\n")
    shim.chmod(0o755)
    run_env = dict(env, PATH=f"{shim_dir}{os.pathsep}{env.get('PATH', '')}")
    helpers.run(["sh", str(script)], cwd=root, env=run_env, check=True, timeout=30,
                capture_output=True)
    return json.loads(record.read_text())


def server_env(extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("UWSGI_") or k.startswith("UWSGI_RS_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(extra)
    return env


def get(args, env, cwd, option):
    """`uwsgi-rs ARGS --get OPTION`: the option's expanded value, or None."""
    r = helpers.run([BIN, *args, "--get", option], cwd=cwd, env=env,
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
    if callable_name.endswith("()"):
        # module:factory(): uWSGI's python plugin calls it for the app.
        factory = callable_name[:-2]
        body = STUB.format(callable="application")
        body += f"\n\ndef {factory}():\n    return application\n"
    else:
        body = STUB.format(callable=callable_name)
        if callable_name != "application":
            body += f"\napplication = {callable_name}\n"
    path.write_text(body)


def write_module_stub(chdir, spec, callable_name):
    """The stub app for `module[:callable]`, with its packages' __init__.py."""
    name, _, attr = spec.partition(":")
    parts = name.split(".")
    for i in range(1, len(parts)):
        init = chdir.joinpath(*parts[:i]) / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        init.touch()
    write_stub(chdir.joinpath(*parts[:-1]) / f"{parts[-1]}.py", attr or callable_name)


def command_line(entry, root, port):
    """(args, env) of a command-line entry (see the module docstring)."""
    stored = (CONFIGS / entry["file"]).read_text()
    env = {}
    if entry["kind"] == "dockerfile":
        env, argv = dockerfile_command(stored)
        env = {k: localize_arg(v, root) for k, v in env.items()}
    env.update({k: fill(v, root, port) for k, v in entry.get("env", {}).items()})
    env = server_env(env)
    if entry["kind"] == "script":
        script = root / entry["file"]
        script.write_text(stored)
        argv = script_command(script, env, root)
    return [localize_arg(a, root) for a in argv[1:]], env


def localize_arg(arg, root):
    """A command-line word with its absolute paths moved under the sandbox."""
    return PATH_RE.sub(lambda m: str(root) + m.group(1), arg)


def sandbox(entry, root):
    """Lay out the sandbox for `entry`: (ini path or None, args, env); args
    are the whole command line after the program's name."""
    port = free_port()
    if "kind" in entry:
        ini = None
        args, env = command_line(entry, root, port)
        texts = [" ".join(args)] + list(env.values())
    else:
        ini = root / entry.get("as", entry["file"])
        ini.write_text(localize((CONFIGS / entry["file"]).read_text(), root))
        for dest, name in entry.get("files", {}).items():
            target = root / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(localize((CONFIGS / name).read_text(), root))
        args = [file_option(ini.name), str(ini)] + [fill(a, root, port)
                                                     for a in entry.get("args", [])]
        env = server_env({k: fill(v, root, port) for k, v in entry.get("env", {}).items()})
        texts = [ini.read_text()] + [(root / d).read_text() for d in entry.get("files", {})]
    # Every directory a rewritten path lives in exists, as on the real host.
    for text in texts:
        for m in PATH_RE.finditer(text):
            p = Path(m.group(1))
            if str(p).startswith(str(root)):
                (p if str(p).endswith("/") else p.parent).mkdir(parents=True, exist_ok=True)
    if entry["expect"] == "refuse":
        return ini, args, env
    # The directories of sockets, pidfiles and logs named through placeholders
    # and variables (/run/uwsgi/%(deb-confname)/socket), as the init script makes them.
    for key in ("socket", "uwsgi-socket", "http-socket", "pidfile", "stats", "logto", "logto2"):
        value = get(args, env, root, key)
        if value and value.startswith(str(root)):
            Path(value).parent.mkdir(parents=True, exist_ok=True)
    home = get(args, env, root, "home")
    if home:
        make_venv(home if os.path.isabs(home) else root / home)
    chdir = Path(get(args, env, root, "chdir") or root)
    if not chdir.is_absolute():
        chdir = root / chdir
    chdir.mkdir(parents=True, exist_ok=True)
    callable_name = get(args, env, root, "callable") or "application"
    module = get(args, env, root, "module")
    if module:
        write_module_stub(chdir, module, callable_name)
    wsgi_file = get(args, env, root, "wsgi-file")
    if wsgi_file:
        write_stub(chdir / wsgi_file, callable_name)
    if get(args, env, root, "paste"):
        # A namespace portion (no __init__.py): the real PasteDeploy's
        # nspkg.pth imports `paste` at start-up, and a regular package of that
        # name would no longer be looked at; a portion ahead on sys.path is.
        (chdir / "paste").mkdir(exist_ok=True)
        (chdir / "paste" / "deploy.py").write_text(PASTE_STUB)
    mount = get(args, env, root, "mount")
    if mount:
        app = mount.partition("=")[2]
        # A file (a path, .py or .wsgi) or module[:callable], as uWSGI tells them apart.
        if "/" in app or app.endswith((".py", ".wsgi")):
            write_stub(chdir / app, callable_name)
        else:
            write_module_stub(chdir, app, callable_name)
    for script in set(PROJECT_SCRIPT.findall("\n".join(texts))):
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


def request(proto, addr, path="/migrated", timeout=10):
    """One GET PATH on a listener: (status, body)."""
    s = connect(addr, timeout)
    p = path.encode()
    try:
        if proto == "http":
            s.sendall(b"GET " + p + b" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        else:
            s.sendall(uwsgi_packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", p),
                                    (b"REQUEST_URI", p), (b"QUERY_STRING", b""),
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
    srv = Server(args, root, env=env)
    files = [Path(fill(p, root, 0)) for p in entry.get("logs", [])]

    def log():
        """stdout, then the files the config logs to."""
        return srv.log + "".join(f.read_text(errors="replace") for f in files if f.exists())
    result = {"file": entry["file"], "args": args, "env": env}
    daemon = None  # the master's pid, when the config daemonizes

    def daemonized():
        m = re.search(r"master process \(pid: (\d+)\)", log())
        return int(m.group(1)) if srv.proc.poll() == 0 and m else None
    try:
        deadline = time.time() + ready_timeout
        while time.time() < deadline and ") ready" not in log():
            if srv.proc.poll() is not None and daemonized() is None and srv.proc.poll() != 0:
                break
            time.sleep(0.05)
        daemon = daemonized()
        if srv.proc.poll() is not None and daemon is None:
            result.update(started=False, code=srv.proc.returncode)
            return result
        listeners = re.findall(r"serving (http|uwsgi) on ([^\s\"]+)", log())
        listeners.sort(key=lambda l: (l[0] != "http", l[1].startswith("/")))
        result["started"] = True
        proto, addr = listeners[0]
        addr = addr.replace("0.0.0.0", "127.0.0.1")
        result["status"], result["body"] = request(proto, addr, entry.get("request", "/migrated"))
        result["via"] = f"{proto} {addr}"
        return result
    finally:
        srv.stop()
        if daemon:
            stop_daemon(daemon)
        result["log"] = log()


def stop_daemon(pid, timeout=15):
    """SIGTERM a daemonized master (its own session: srv.stop's killpg
    misses it) and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(os.getpgid(pid), signal.SIGKILL)


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
    """Keys of the [uwsgi] section outside if/for blocks (always applied);
    of the uwsgi: mapping of a YAML file, of the <uwsgi> element of an XML one."""
    if text.lstrip().startswith("<"):
        return [k for k in re.findall(r"<([\w-]+)[\s/>]", re.sub(r"<!--.*?-->", "", text, flags=re.S))
                if k != "uwsgi"]
    if re.match(r"(?:\s*#[^\n]*\n)*\s*uwsgi:", text):
        return re.findall(r"^\s+([\w-]+)\s*:", text, re.M)
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
    """At least 40 deployments, each stored verbatim with its source named."""
    assert len(INDEX) >= 40
    files = {e["file"] for e in INDEX} | {x["file"] for e in INDEX
                                          for x in e.get("extra_sources", [])}
    assert files == {p.name for p in CONFIGS.iterdir() if p.name != "index.json"}
    for e in INDEX + [x for e in INDEX for x in e.get("extra_sources", [])]:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e["repo"]) and e["path"], e
        assert re.fullmatch(r"[0-9a-f]{40}", e["commit"]), e
        assert e.get("kind", "ini") in ("ini", "script", "dockerfile"), e
    served = sum(e["expect"] == "serve" for e in INDEX)
    assert served * 10 >= len(INDEX) * 8, f"only {served} of {len(INDEX)} expected to serve"


def asked_options(entry, root, r):
    """(options the deployment always asks for, every name it mentions)."""
    if "kind" in entry:
        words = [a[2:].partition("=")[0] for a in r["args"] if a.startswith("--")]
        words += [k[6:].lower().replace("_", "-") for k in r["env"]
                  if k.startswith("UWSGI_") and not k.startswith("UWSGI_RS_")]
        return set(words), set(words)
    texts = [(root / entry.get("as", entry["file"])).read_text()]
    texts += [(root / d).read_text() for d in entry.get("files", {})]
    asked = {k for t in texts for k in top_level_keys(t)}
    mentioned = {k for t in texts for k in re.findall(r"^\s*<?([\w-]+)", t, re.M)}
    return asked, mentioned | {a[2:] for a in entry.get("args", []) if a.startswith("--")}


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
        asked, mentioned = asked_options(entry, root, r)
        canonical = {k for k in asked if k in not_yet}
        assert canonical <= named, (canonical - named, r["log"])
        assert named <= mentioned, named
        for line in entry.get("log_has", []):
            assert line in r["log"], (line, r["log"])
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
