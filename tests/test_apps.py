"""Real apps, served end to end: a Flask app, a Django project created with
`django-admin startproject`, and the deployment examples (examples/uwsgi.ini,
examples/systemd/uwsgi-rs.{service,socket}, examples/nginx/uwsgi-rs.conf)
run together against Debian's nginx, under a fake systemd. Each app has a view that gets stuck, and
the tracebacker shows it."""

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

import conftest
from conftest import APPS, NGINX, ROOT, free_port, nginx_running
from fake_systemd import FakeSystemd
from helpers import lineno_of
import helpers

EXAMPLES = ROOT / "examples"


class Bg:
    """A request left running in a thread."""

    def __init__(self, url, timeout=60):
        self.result = None
        self.t = threading.Thread(target=self._run, args=(url, timeout), daemon=True)
        self.t.start()

    def _run(self, url, timeout):
        try:
            self.result = requests.get(url, timeout=timeout)
        except Exception as e:  # the server is stopped under it
            self.result = e


def dump(sock, timeout=10):
    r = helpers.run([conftest.BIN, "--connect-and-read", str(sock)], capture_output=True,
                    timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def wait_dump(sock, pattern, timeout=10):
    """The first tracebacker dump of `sock` matching the regex `pattern`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if os.path.exists(sock):
            last = dump(sock)
            if last[0] == 0 and re.search(pattern, last[1]):
                return last[1]
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never in a dump of {sock}: {last}")




def stuck_frame(view_file, func, needle):
    """The regex of a dump line showing `func` in `view_file` at `needle`."""
    return (rf"thread_id = uWSGIWorker1Core\d+ filename = {re.escape(str(view_file))} "
            rf"lineno = {lineno_of(view_file, needle)} function = {func} "
            rf"line = {re.escape(needle)}")


# ------------------------------------------------------------ Flask

@pytest.fixture
def flask_app(serve, port, tmp_path):
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--module", "pkg_flask", "--pythonpath", str(APPS),
                 "--master", "--processes", "1", "--threads", "4", "--reload-mercy", "2",
                 "--py-tracebacker", base])
    return srv, f"http://127.0.0.1:{port}", base


def test_flask_routes_and_json(flask_app):
    srv, url, _ = flask_app
    r = requests.get(url + "/", timeout=10)
    assert r.status_code == 200 and "<h1>pkg_flask</h1>" in r.text
    assert "href='/hello/world'" in r.text  # url_for sees SCRIPT_NAME/host right
    r = requests.get(url + "/hello/w%C3%B6rld", timeout=10)
    assert r.status_code == 200 and r.text == "Hello, w\u00f6rld!"
    r = requests.post(url + "/items", json={"name": "caf\u00e9", "tags": ["a", "b"]}, timeout=10)
    assert r.status_code == 201, r.text
    assert r.headers["Content-Type"] == "application/json"
    item = r.json()
    assert item["name"] == "caf\u00e9" and item["tags"] == ["a", "b"]
    assert r.headers["Location"].endswith(f"/items/{item['id']}")
    r = requests.get(url + f"/items/{item['id']}", timeout=10)
    assert r.status_code == 200 and r.json() == item
    r = requests.get(url + "/items/999", timeout=10)
    assert r.status_code == 404 and r.json() == {"error": "not found", "path": "/items/999"}
    r = requests.post(url + "/items", data=b"not json", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "error" in r.json()
    r = requests.get(url + "/items", timeout=10)
    assert r.status_code == 405
    assert "GET /hello/w%C3%B6rld" in srv.log or "GET /hello/w\u00f6rld" in srv.log, srv.log


def test_flask_streaming_response(flask_app):
    """The first chunk arrives while the view is still producing: nothing is
    buffered until the end; HTTP/1.1 gets it chunked."""
    srv, url, _ = flask_app
    port = int(url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        got = b""
        while b"chunk 0\n" not in got:
            b = s.recv(65536)
            assert b, got
            got += b
        head = got.split(b"\r\n\r\n", 1)[0].decode().lower()
        assert head.startswith("http/1.1 200"), head
        assert "transfer-encoding: chunked" in head and "content-length" not in head, head
        assert b"chunk 1" not in got
        assert requests.get(url + "/release", timeout=10).text == "released"
        while not got.endswith(b"\r\n0\r\n\r\n"):
            b = s.recv(65536)
            assert b, got
            got += b
    finally:
        s.close()
    body = got.split(b"\r\n\r\n", 1)[1]
    decoded = b""
    while True:
        size, rest = body.split(b"\r\n", 1)
        n = int(size, 16)
        if n == 0:
            break
        decoded += rest[:n]
        body = rest[n + 2:]
    assert decoded == b"".join(b"chunk %d\n" % i for i in range(5)), decoded


def test_flask_file_upload(flask_app):
    srv, url, _ = flask_app
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = requests.post(url + "/upload", timeout=30,
                      files={"file": ("r\u00e9sum\u00e9.bin", data, "application/octet-stream")},
                      data={"title": "quarterly", "n": "3"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["size"] == len(data) and d["sha256"] == hashlib.sha256(data).hexdigest(), d
    assert d["filename"] == "r\u00e9sum\u00e9.bin" and d["content_type"] == "application/octet-stream"
    assert d["form"] == {"title": "quarterly", "n": "3"}
    r = requests.post(url + "/upload", data={"title": "no file"}, timeout=10)
    assert r.status_code == 400


def test_flask_stuck_view_in_tracebacker(flask_app):
    srv, url, base = flask_app
    Bg(url + "/stuck?s=30")
    text = wait_dump(base + "1", r"function = stuck_view")
    view = APPS / "pkg_flask.py"
    assert re.search(stuck_frame(view, "stuck_view",
                                 'time.sleep(float(request.args.get("s", "30")))'), text), text
    # Flask's own frames lead to it, on the same core
    core = re.search(r"thread_id = (uWSGIWorker1Core\d+) [^\n]*function = stuck_view", text).group(1)
    frames = [ln for ln in text.splitlines() if ln.startswith(f"thread_id = {core} ")]
    assert any("flask" in ln and "function = dispatch_request" in ln for ln in frames), frames
    # the other cores keep serving
    assert requests.get(url + "/hello/x", timeout=10).text == "Hello, x!"
    srv.stop(signal.SIGQUIT)


# ------------------------------------------------------------ Django

# A PasteDeploy deployment as uWSGI's --ini-paste-logged reads it: the
# [uwsgi] section configures the server, [app:main] builds the app and the
# logging sections configure Python's logging.
PASTE_INI = """\
[uwsgi]
http = 127.0.0.1:{port}
master = true
processes = 1
threads = 2

[app:main]
use = call:paste_app:make_app
greeting = hello from paste

[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = plain
[logger_root]
level = INFO
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = plain
[formatter_plain]
format = PASTELOG %(message)s
"""

PASTE_APP = """\
import logging


def make_app(global_conf, greeting="?", **local_conf):
    here = global_conf.get("here", "")

    def app(environ, start_response):
        logging.getLogger("paste_app").info("served %s", environ["PATH_INFO"])
        body = ("%s|%s" % (greeting, here)).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app
"""


def test_ini_paste_logged_builds_the_app_with_pastedeploy(serve, port, tmp_path):
    """--ini-paste-logged FILE, with the real PasteDeploy from PyPI: the app is
    the factory's, given [app:main]'s settings and the file's directory, and
    the app's logging is configured from the same file."""
    (tmp_path / "paste_app.py").write_text(PASTE_APP)
    ini = tmp_path / "deploy.ini"
    ini.write_text(PASTE_INI.format(port=port))
    srv = serve(["--ini-paste-logged", str(ini), "--pythonpath", str(tmp_path)])
    r = requests.get(f"http://127.0.0.1:{port}/from-paste", timeout=10)
    assert r.status_code == 200, r.text
    assert r.text == f"hello from paste|{tmp_path}"
    srv.wait_log("PASTELOG served /from-paste")


@pytest.fixture(scope="module")
def django_project(tmp_path_factory):
    """`django-admin startproject mysite`, plus a few lines to its settings
    and urls, collectstatic, migrate and an admin user."""
    # python3 is the server's interpreter (its Django); `python3 -m django`
    # is what the django-admin script runs
    r = subprocess.run(["python3", "-c", "import django"], capture_output=True, text=True)
    assert r.returncode == 0, f"Django is missing (pip install django: scripts/setup.sh): {r.stderr}"
    top = tmp_path_factory.mktemp("django")
    proj = top / "mysite"
    proj.mkdir()
    subprocess.run(["python3", "-m", "django", "startproject", "mysite", str(proj)], check=True,
                   timeout=60, capture_output=True)
    settings = proj / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + """
# --- added by tests/test_apps.py
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "example.com"]
STATIC_ROOT = BASE_DIR / "staticfiles"
""")
    urls = proj / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + """
# --- added by tests/test_apps.py
from django.urls import re_path
import pkg_django_views
urlpatterns += [
    re_path(r"^static/(?P<path>.*)$", pkg_django_views.static_serve),
    path("probe/last-static/", pkg_django_views.last_static),
    path("stuck/", pkg_django_views.stuck_view),
    path("probe/remote/", pkg_django_views.remote),
]
""")
    env = dict(os.environ, PYTHONPATH=str(APPS), DJANGO_SUPERUSER_PASSWORD="s3cret-pass-42")
    env.pop("VIRTUAL_ENV", None)
    for args in (["collectstatic", "--noinput"], ["migrate", "--noinput"],
                 ["createsuperuser", "--noinput", "--username", "admin",
                  "--email", "admin@example.com"]):
        subprocess.run(["python3", "manage.py"] + args, cwd=proj, env=env, check=True,
                       timeout=120, capture_output=True)
    return proj


@pytest.fixture
def django_server(serve, port, tmp_path, django_project):
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--module", "mysite.wsgi",
                 "--pythonpath", str(APPS), "--master", "--processes", "1", "--threads", "4",
                 "--reload-mercy", "2", "--py-tracebacker", base], cwd=django_project)
    return srv, f"http://127.0.0.1:{port}", base


def test_django_admin_login(django_server):
    srv, url, _ = django_server
    r = requests.get(url + "/admin/", allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"] == "/admin/login/?next=/admin/"
    s = requests.Session()
    r = s.get(url + "/admin/login/?next=/admin/", timeout=10)
    assert r.status_code == 200, r.text[:2000]
    assert "Django administration" in r.text and 'name="username"' in r.text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text).group(1)
    assert "csrftoken" in s.cookies
    r = s.post(url + "/admin/login/?next=/admin/", allow_redirects=False, timeout=10,
               data={"csrfmiddlewaretoken": token, "username": "admin",
                     "password": "s3cret-pass-42", "next": "/admin/"})
    assert r.status_code == 302 and r.headers["Location"] == "/admin/", r.text[:2000]
    r = s.get(url + "/admin/", timeout=10)
    assert r.status_code == 200 and "Site administration" in r.text
    r = requests.get(url + "/no/such/page/", timeout=10)
    assert r.status_code == 404


def test_django_static_file_through_file_wrapper(django_server, django_project):
    srv, url, _ = django_server
    css = django_project / "staticfiles" / "admin" / "css" / "base.css"
    r = requests.get(url + "/static/admin/css/base.css", timeout=10)
    assert r.status_code == 200
    assert r.content == css.read_bytes()
    assert r.headers["Content-Type"].startswith("text/css")
    assert int(r.headers["Content-Length"]) == css.stat().st_size
    probe = requests.get(url + "/probe/last-static/", timeout=10).json()
    assert probe["wrapped"] is True, probe  # Django used environ['wsgi.file_wrapper']
    # and the server closes it once the file is sent (just after the client has it)
    deadline = time.monotonic() + 5
    while not probe["closed"] and time.monotonic() < deadline:
        time.sleep(0.05)
        probe = requests.get(url + "/probe/last-static/", timeout=10).json()
    assert probe["closed"] is True, probe
    # a larger file, and a missing one
    big = django_project / "staticfiles" / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024))
    r = requests.get(url + "/static/big.bin", timeout=30)
    assert r.status_code == 200 and r.content == big.read_bytes()
    assert requests.get(url + "/static/nope.css", timeout=10).status_code == 404


def test_django_stuck_view_in_tracebacker(django_server):
    srv, url, base = django_server
    Bg(url + "/stuck/?s=30")
    text = wait_dump(base + "1", r"function = stuck_view")
    view = APPS / "pkg_django_views.py"
    assert re.search(stuck_frame(view, "stuck_view",
                                 'time.sleep(float(request.GET.get("s", "30")))'), text), text
    core = re.search(r"thread_id = (uWSGIWorker1Core\d+) [^\n]*function = stuck_view", text).group(1)
    frames = [ln for ln in text.splitlines() if ln.startswith(f"thread_id = {core} ")]
    assert any("django/core/handlers" in ln for ln in frames), frames
    assert requests.get(url + "/admin/login/", timeout=10).status_code == 200
    srv.stop(signal.SIGQUIT)


# ------------------------------------------------------------ the deployment examples

def unit_settings(path, section="Service"):
    """The keys of one section of a systemd unit file."""
    out, section, wanted = {}, None, section
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == wanted:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_examples_behind_nginx(tmp_path, serve, django_project, monkeypatch):
    """examples/uwsgi.ini started as examples/systemd/uwsgi-rs.service says,
    on the socket examples/systemd/uwsgi-rs.socket describes (made and
    passed by a fake systemd, which also hears Type=notify's messages),
    behind examples/nginx/uwsgi-rs.conf run by Debian's nginx, serving the
    Django project: paths in the examples are replaced by temporary ones,
    nothing else is changed."""
    assert os.path.exists(NGINX), f"{NGINX} is missing: apt-get install nginx"
    run = tmp_path / "run"
    run.mkdir(mode=0o750)
    # the project lives in /srv/mysite, with its venv (Django from the base Python)
    srv_dir = tmp_path / "srv" / "mysite"
    shutil.copytree(django_project, srv_dir)
    # (python3: the server's interpreter, as in test_wsgi.py)
    subprocess.run(["python3", "-m", "venv", "--without-pip", "--system-site-packages",
                    str(srv_dir / "venv")], check=True, timeout=60)

    def localize(text):
        return (text.replace("/srv/mysite", str(srv_dir))
                    .replace("/run/uwsgi-rs", str(run))
                    .replace("/etc/uwsgi-rs/mysite.ini", str(tmp_path / "mysite.ini")))

    ini = tmp_path / "mysite.ini"
    ini.write_text(localize((EXAMPLES / "uwsgi.ini").read_text()))

    # systemd: Type=notify, so ExecStart runs in the foreground until KillSignal
    # and says READY=1; the .socket unit's socket is passed to it
    unit = unit_settings(EXAMPLES / "systemd" / "uwsgi-rs.service")
    assert unit["Type"] == "notify"
    socket_unit = unit_settings(EXAMPLES / "systemd" / "uwsgi-rs.socket", "Socket")
    systemd = FakeSystemd()
    app_sock = systemd.listen_unix(localize(socket_unit["ListenStream"]),
                                   mode=int(socket_unit["SocketMode"], 8),
                                   backlog=int(socket_unit["Backlog"]))
    prefix, fds = systemd.activation([app_sock])
    exec_start = shlex.split(localize(unit["ExecStart"]))
    assert exec_start[0] == f"{srv_dir}/venv/bin/uwsgi-rs", exec_start
    assert localize(unit["WorkingDirectory"]) == str(srv_dir)
    # the venv's uwsgi-rs: the binary under test (test_packaging.py installs it for real)
    os.symlink(os.path.abspath(conftest.BIN), exec_start[0])
    monkeypatch.setattr(conftest, "BIN", exec_start[0])
    srv = serve(exec_start[1:] + ["--pythonpath", str(APPS)], workers=4, cwd=srv_dir,
                env=systemd.env, prefix=prefix, pass_fds=fds)
    assert f"uwsgi-rs socket {run / 'app.sock'} (uwsgi) inherited from systemd (fd 3)" in srv.log
    assert oct(os.stat(run / "app.sock").st_mode & 0o777) == "0o660"
    ready, _ = systemd.wait_for("READY")

    # nginx with the example server block, as Debian includes sites-enabled/*
    port = free_port()
    conf_dir = tmp_path / "nginx"
    (conf_dir / "sites-enabled").mkdir(parents=True)
    shutil.copy("/etc/nginx/uwsgi_params", conf_dir / "uwsgi_params")
    site = localize((EXAMPLES / "nginx" / "uwsgi-rs.conf").read_text())
    assert "uwsgi_pass unix:" + str(run / "app.sock") + ";" in site
    site = re.sub(r"^\s*listen \[::\]:80;\n", "", site, flags=re.M)
    site = re.sub(r"^(\s*)listen 80;", rf"\1listen 127.0.0.1:{port};", site, flags=re.M)
    (conf_dir / "sites-enabled" / "mysite").write_text(site)
    with nginx_running(tmp_path, port, """
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    include sites-enabled/*;""", conf_dir=conf_dir):
        url = f"http://127.0.0.1:{port}"
        # the app, through uwsgi_pass, in the venv of the ini's home
        r = requests.get(url + "/admin/login/", headers={"Host": "example.com"}, timeout=10)
        assert r.status_code == 200 and "Django administration" in r.text, r.text[:2000]
        srv.wait_log("GET /admin/login/ => generated ", timeout=5)
        # what nginx's uwsgi_params pass reaches the app
        d = requests.get(url + "/probe/remote/", headers={"Host": "example.com"}, timeout=10).json()
        assert d["REMOTE_ADDR"] == "127.0.0.1" and d["HTTP_HOST"] == "example.com", d
        assert d["SERVER_PROTOCOL"] == "HTTP/1.1" and d["wsgi.url_scheme"] == "http", d
        # static files come from nginx itself: uwsgi-rs never sees them
        r = requests.get(url + "/static/admin/css/base.css", timeout=10)
        assert r.status_code == 200
        assert r.content == (srv_dir / "staticfiles/admin/css/base.css").read_bytes()
        assert "Expires" in r.headers
        assert "/static/admin/css/base.css" not in srv.log
        # a stuck view shows in the tracebacker socket the ini names
        stuck = Bg(url + "/stuck/?s=3")
        deadline = time.monotonic() + 3
        text = ""
        while "function = stuck_view" not in text and time.monotonic() < deadline:
            for w in range(1, 5):
                text = dump(run / f"tb.{w}")[1]
                if "function = stuck_view" in text:
                    break
            time.sleep(0.1)
        assert "function = stuck_view" in text, text
        stuck.t.join(10)
        assert stuck.result.status_code == 200, stuck.result
        # stats on the ini's UNIX socket
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(5)
            c.connect(str(run / "stats.sock"))
            raw = b""
            while chunk := c.recv(65536):
                raw += chunk
        stats = json.loads(raw)
        assert len(stats["workers"]) == 4, stats
        # systemctl reload: ExecReload's SIGHUP is a rolling reload
        assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
        os.kill(srv.proc.pid, signal.SIGHUP)
        srv.wait_log("SIGHUP received", timeout=5)
        reloading, _ = systemd.wait_for("RELOADING", after=ready + 1)
        srv.wait_log(") ready", timeout=20, count=5)  # a first worker replaced
        r = requests.get(url + "/admin/login/", timeout=10)
        assert r.status_code == 200
    # systemctl stop: KillSignal (SIGTERM) is a graceful shutdown, done before TimeoutStopSec
    assert unit["KillSignal"] == "SIGTERM"
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(int(unit["TimeoutStopSec"]))
    assert code == 0, srv.log
    assert time.monotonic() - t0 < int(unit["TimeoutStopSec"])
    systemd.wait_for("STOPPING", after=reloading + 1)
    # systemd's socket stays for the next start (vacuum leaves it alone)
    assert (run / "app.sock").exists()
    systemd.close()
