"""PEP 3333 semantics as seen by real apps (including Flask and
wsgiref.validate), and which Python the server embeds."""

import hashlib
import http.client
import json
import os
import re
import subprocess
import time

import pytest
import requests

from conftest import APPS, free_port, http_get, running
from helpers import raw_request, start_app, wait_for
import helpers

ECHO = str(APPS / "core_echo.py")


def start(serve, port, app=ECHO, *extra, workers=1, threads=2):
    return start_app(serve, port, app, *extra, workers=workers, threads=threads)


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory):
    """One echo server (1 worker x 2 threads, what start() starts by
    default) for the tests that only send it requests."""
    port = free_port()
    with running(["--http", f"127.0.0.1:{port}", "--wsgi-file", ECHO, "--master",
                  "--processes", "1", "--threads", "2"],
                 tmp_path_factory.mktemp("wsgi_echo")) as srv:
        srv.port = port
        yield srv


class EchoView:
    """The shared echo server as one test sees it: its port, its master,
    and only what it logged since the test began."""

    def __init__(self, srv):
        self.srv, self.port, self.proc = srv, srv.port, srv.proc
        self.mark = len(srv.log)

    @property
    def log(self):
        return self.srv.log[self.mark:]


@pytest.fixture
def echo(echo_server):
    yield EchoView(echo_server)
    assert echo_server.proc.poll() is None, f"the shared echo server exited:\n{echo_server.log}"


def post(port, path, body, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict(r.getheaders()), data




# ---------------------------------------------------------------- environ

def test_environ_keys_and_types(serve, port):
    start(serve, port, ECHO, workers=2, threads=2)
    status, _, body = post(port, "/env/caf%C3%A9?x=1&y=%20two", b"k=v",
                           headers={"X-Custom": "custom value",
                                    "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    d = json.loads(body)
    t, v = d["types"], d["values"]
    str_keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING",
                "CONTENT_TYPE", "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT",
                "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_X_CUSTOM",
                "HTTP_HOST", "wsgi.url_scheme"]
    for k in str_keys:
        assert t.get(k) == "str", (k, t.get(k))
    for k in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert t.get(k) == "bool", (k, t.get(k))
    assert t["wsgi.version"] == "tuple"
    assert "wsgi.input" in t and "wsgi.errors" in t
    assert v["REQUEST_METHOD"] == "POST"
    assert v["SCRIPT_NAME"] == ""
    assert v["PATH_INFO"] == b"/env/caf\xc3\xa9".decode("latin-1") == "/env/cafÃ©"
    assert v["QUERY_STRING"] == "x=1&y=%20two"
    assert v["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert v["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in v and "HTTP_CONTENT_LENGTH" not in v
    assert v["SERVER_NAME"]
    assert v["SERVER_PORT"] == str(port)
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert v["REMOTE_ADDR"] == "127.0.0.1"
    assert v["REMOTE_PORT"].isdigit() and 0 < int(v["REMOTE_PORT"]) < 65536
    assert v["HTTP_X_CUSTOM"] == "custom value"
    assert v["wsgi.version"] == [1, 0]
    assert v["wsgi.url_scheme"] == "http"
    assert v["wsgi.multithread"] is True
    assert v["wsgi.multiprocess"] is True
    assert v["wsgi.run_once"] is False


def test_environ_single_process_single_thread_flags(serve, port):
    start(serve, port, ECHO, workers=1, threads=1)
    status, _, body = http_get(port, "/env")
    v = json.loads(body)["values"]
    assert v["wsgi.multithread"] is False
    assert v["wsgi.multiprocess"] is False
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert v["QUERY_STRING"] == ""


def test_environ_http10_protocol_and_repeated_headers(echo):
    port = echo.port
    data = raw_request(port, b"GET /env HTTP/1.0\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n")
    v = json.loads(data.partition(b"\r\n\r\n")[2])["values"]
    assert v["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert v["HTTP_X_MULTI"] in ("a,b", "a, b")


# ---------------------------------------------------------------- wsgi.input

@pytest.mark.parametrize("mode,expected", [
    ("read", ["line one\nline two\nthree"]),
    ("readn", ["lin", "e o", "ne\n", "lin", "e t", "wo\n", "thr", "ee"]),
    ("readline", ["line one\n", "line two\n", "three"]),
    ("readline_size", ["line", " one\n", "line two\nthree"]),
    ("readlines", ["line one\n", "line two\n", "three"]),
    ("iter", ["line one\n", "line two\n", "three"]),
])
def test_wsgi_input_methods(echo, mode, expected):
    port = echo.port
    status, _, body = post(port, f"/input?mode={mode}", b"line one\nline two\nthree")
    assert status == 200
    assert json.loads(body)["result"] == expected


def test_wsgi_input_chunked_readline(echo):
    port = echo.port
    data = raw_request(port, b"POST /input?mode=readline HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n"
              b"4\r\nab\nc\r\n3\r\nd\ne\r\n0\r\n\r\n")
    assert json.loads(data.partition(b"\r\n\r\n")[2])["result"] == ["ab\n", "cd\n", "e"]


@pytest.mark.parametrize("first", [0, 10, 70000])
def test_wsgi_input_read_in_one_allocation(echo, first):
    """read(n) then read(): the rest of a 1 MB body arrives whole (read
    straight into the bytes object), exact to the byte, and read() at the
    end is empty."""
    port = echo.port
    body = os.urandom(1 << 20)
    status, _, data = post(port, f"/readmix?first={first}", body)
    assert status == 200
    d = json.loads(data)
    assert (d["first"], d["rest"], d["after"]) == (first, len(body) - first, 0)
    assert d["sha256"] == hashlib.sha256(body).hexdigest()


def test_wsgi_input_read_after_100_continue(echo):
    """Expect: 100-continue, then read(): the server says 100 Continue and
    the body is read straight from the socket."""
    port = echo.port
    body = b"z" * 300000
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.putrequest("POST", "/readmix?first=0")
    c.putheader("Content-Length", str(len(body)))
    c.putheader("Expect", "100-continue")
    c.endheaders()
    sock = c.sock
    sock.settimeout(5)
    interim = sock.recv(100)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
    sock.sendall(body)
    data = b""
    while b"}" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    d = json.loads(data.partition(b"\r\n\r\n")[2])
    assert d["rest"] == len(body) and d["sha256"] == hashlib.sha256(body).hexdigest()
    c.close()


@pytest.mark.parametrize("n,size", [(1, 5), (3, 3000), (200, 5000), (1500, 100), (1100, 4096)])
def test_list_body_is_sent_whole_and_in_order(echo, n, size):
    """A list body is written from the app's own bytes objects (more of them
    than one sendmsg takes, short ones copied, long ones referenced): the
    client gets every byte in order, with a Content-Length."""
    port = echo.port
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("GET", f"/list?n={n}&size={size}")
    r = c.getresponse()
    data = r.read()
    assert r.status == 200
    assert r.getheader("Content-Length") == str(n * size)
    assert data == b"".join(bytes([i % 251]) * size for i in range(n))
    c.close()


def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_big_list_body_is_not_copied(serve, port):
    """A 50 MB list body (50 bytes objects of 1 MB, built per request) is
    written from the app's objects: the worker's peak RSS grows by the
    app's 50 MB, not by a second (or third) copy in the server (it grew by
    150 MB), and the memory is given back after the response."""
    start(serve, port, threads=1)
    pid = json.loads(http_get(port, "/pid")[2])["pid"]
    before = _status_kib(pid, "VmRSS")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (the peak) to the current RSS
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", f"/list?n=50&size={1 << 20}")
    r = c.getresponse()
    got = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        got += len(chunk)
    c.close()
    assert r.status == 200 and got == 50 << 20
    grew_mib = (_status_kib(pid, "VmHWM") - before) / 1024
    assert grew_mib < 80, f"peak RSS grew by {grew_mib:.0f} MiB for a 50 MB body"
    # ...and gives the memory back once the body is written, without
    # waiting for another request.
    wait_for(lambda: _status_kib(pid, "VmRSS") - before < 20 * 1024, timeout=5,
             what="the worker's RSS back within 20 MiB of its start")


# ---------------------------------------------------------------- start_response

def test_header_values_go_out_as_latin1(echo):
    """PEP 3333: header values are native strings, sent as latin-1 (as
    wsgiref and gunicorn send them); one that latin-1 cannot hold is the
    app's error: a 500, and the worker keeps serving."""
    def head(raw):
        return raw.split(b"\r\n\r\n", 1)[0]

    got = raw_request(echo.port, b"GET /hdrval?v=caf%C3%A9%20ok HTTP/1.0\r\n\r\n")
    assert b"\r\nX-Value: caf\xe9 ok\r\n" in head(got), got
    got = raw_request(echo.port, b"GET /hdrval?v=%E2%82%AC5 HTTP/1.0\r\n\r\n")
    assert got.startswith(b"HTTP/1.0 500 "), got
    assert b"X-Value" not in head(got)
    wait_for(lambda: "not latin-1" in echo.log, what="the error in the log")
    assert http_get(echo.port, "/hdrval?v=plain")[0] == 200


def test_write_callable(echo):
    port = echo.port
    status, _, body = http_get(port, "/write")
    assert status == 200
    assert body == b"written-1;written-2;returned"


def test_objects_kept_by_the_app_are_not_reused(serve, port):
    # One core: every request below is served by the same one, which
    # reuses its start_response and wsgi.input only when the app kept
    # nothing of them.
    start(serve, port, str(APPS / "core_kept.py"), threads=1)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for body in (b"a", b"bb", b"ccc"):
            c.request("POST", "/plain", body=body)
            r = c.getresponse()
            assert (r.status, r.read()) == (200, b"w:" + body + b";plain")
        c.request("GET", "/keep")
        assert c.getresponse().read() == b"kept"
        c.request("GET", "/use")
        r = c.getresponse()
        # The kept objects belong to their request: wsgi.input and write()
        # refuse (no stray bytes reach this response or the next: both
        # parse), and this request got its own start_response.
        assert (r.status, r.read()) == (200, b"input: ValueError;write: ValueError;new sr")
        c.request("POST", "/plain", body=b"after")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"w:after;plain")
    finally:
        c.close()


def test_environ_changed_or_kept_by_the_app_is_clean_on_the_next_request(serve, port):
    # One core, one keep-alive connection: every request is served by the
    # core that reuses its environ when the app kept none and changed
    # nothing. Whatever the app did to the last one, each request sees a
    # fresh-looking environ, and one the app kept never changes afterwards.
    start(serve, port, str(APPS / "core_environ_kept.py"), threads=1)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(path, body=None, headers=None):
        c.request("POST" if body else "GET", path, body=body, headers=headers or {})
        r = c.getresponse()
        assert r.status == 200
        return json.loads(r.read())

    try:
        first = get("/plain?q=1")
        again = get("/plain?q=1")
        assert again["order"] == first["order"]
        assert again["env"] == first["env"]
        clean_keys = first["keys"]
        assert "app.added" not in clean_keys and "QUERY_STRING" in clean_keys
        for path in ("/mutate", "/keep", "/restore", "/hold", "/mutate"):
            changed = get(path + "?q=2")
            assert ("app.added" in changed["keys"]) == (path in ("/mutate", "/keep"))
            # A request of the same shape (same keys, in the same order).
            same = get("/plain?q=3")
            assert same["keys"] == clean_keys, path
            assert same["order"] == first["order"], path
            assert same["env"]["QUERY_STRING"] == "q=3"
            assert same["env"]["wsgi.url_scheme"] == "http"
            assert same["env"]["PATH_INFO"] == "/plain"
            assert not same["kept_is_this"]
            if same["kept_same"] is not None:
                # The environ kept on /keep or /hold is as its request left it.
                assert same["kept_same"] is True, path
            # One of another shape, then the first shape again.
            other = get("/plain?q=4", body=b"body-4", headers={"X-Extra": "e"})
            assert "app.added" not in other["keys"], path
            assert other["env"]["HTTP_X_EXTRA"] == "e"
            assert other["input"] == "body-4"
            plain = get("/plain?q=5")
            assert plain["keys"] == clean_keys, path
            assert plain["env"]["QUERY_STRING"] == "q=5"
            assert plain["input"] == ""
        assert get("/plain")["kept_same"] is True
    finally:
        c.close()


def test_exc_info_before_headers_sent_replaces_status(echo):
    port = echo.port
    status, headers, body = http_get(port, "/exc_before")
    assert status == 503
    assert headers.get("X-Replaced") == "yes"
    assert body == b"replaced"


def test_exc_info_after_headers_sent_reraises(echo, tmp_path):
    srv, port = echo, echo.port
    log = tmp_path / "exc_after.log"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", f"/exc_after?log={log}")
    r = c.getresponse()
    # The headers (200) were already sent; the body is cut short.
    assert r.status == 200
    try:
        body = r.read()
    except http.client.IncompleteRead as e:
        body = e.partial
    c.close()
    assert body.startswith(b"headers-sent;")
    wait_for(log.exists, what="exc_after log")
    assert log.read_text() == "reraised\n"
    wait_for(lambda: "ValueError: too late" in srv.log, what="traceback in log")
    assert http_get(port, "/say/next")[0] == 200


def test_start_response_twice_without_exc_info_is_an_error(echo):
    port = echo.port
    status, _, body = http_get(port, "/exc_no_info_twice")
    assert status == 200
    assert body.startswith(b"second call rejected")


# ---------------------------------------------------------------- close()

def test_close_called_on_iterable(echo, tmp_path):
    port = echo.port
    log = tmp_path / "close.log"
    for i in range(3):
        status, _, body = http_get(port, f"/close?log={log}")
        assert status == 200
        assert body == b"part0\npart1\npart2\n"
    wait_for(lambda: log.exists() and log.read_text().count("closed") == 3,
             what="3 close() calls")


def test_close_called_when_iterator_raises(echo, tmp_path):
    srv, port = echo, echo.port
    log = tmp_path / "close_raise.log"
    # Raises before the first chunk: a 500 can still be sent.
    status, _, _ = http_get(port, f"/close?log={log}&fail=0")
    assert status == 500
    wait_for(lambda: log.exists() and log.read_text().count("closed") == 1,
             what="close() after iterator raised at the start")
    # Raises after a chunk was sent: the response is cut short, close() still runs.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", f"/close?log={log}&fail=2")
    r = c.getresponse()
    try:
        r.read()
    except (http.client.IncompleteRead, ConnectionError):
        pass
    c.close()
    wait_for(lambda: log.read_text().count("closed") == 2,
             what="close() after iterator raised midway")
    assert "iterator failed on purpose" in srv.log
    assert http_get(port, "/say/alive")[0] == 200


# ---------------------------------------------------------------- validator

def test_wsgiref_validator_finds_no_violation(serve, port):
    srv = start(serve, port, str(APPS / "core_validated.py"), workers=1, threads=2)
    s = requests.Session()
    try:
        r = s.get(f"http://127.0.0.1:{port}/some/path?a=b", timeout=5)
        assert r.status_code == 200 and r.text == "path:/some/path qs:a=b"
        r = s.post(f"http://127.0.0.1:{port}/post", data=b"first line\nsecond line\n", timeout=5)
        assert r.status_code == 200 and r.content == b"got:first line\nsecond line\n"
        r = s.post(f"http://127.0.0.1:{port}/post", data=b"", timeout=5)
        assert r.status_code == 200 and r.content == b"got:"
        r = s.get(f"http://127.0.0.1:{port}/gen", timeout=5)
        assert r.status_code == 200 and r.content == b"ab"
        r = s.get(f"http://127.0.0.1:{port}/lines", timeout=5)
        assert r.status_code == 200 and r.content == b"lines:"
        r = requests.head(f"http://127.0.0.1:{port}/head", timeout=5)
        assert r.status_code == 200
    finally:
        s.close()
    time.sleep(0.3)
    log = srv.log
    assert "validated request" in log
    assert "AssertionError" not in log, log
    assert "Traceback" not in log, log
    assert " 500)" not in log


# ---------------------------------------------------------------- errors

def test_exception_in_app_gives_500_traceback_and_next_request_works(echo):
    srv, port = echo, echo.port
    status, headers, _ = http_get(port, "/raise")
    assert status == 500
    wait_for(lambda: "RuntimeError: boom from core_echo" in srv.log, what="traceback")
    log = srv.log
    # The traceback names the frame that raised (file, line, function).
    assert re.search(r'core_echo\.py", line \d+, in application', log), log
    for _ in range(3):
        status, _, body = http_get(port, "/say/ok")
        assert status == 200 and body == b"ok"
    assert srv.proc.poll() is None


# ---------------------------------------------------------------- file_wrapper

@pytest.mark.parametrize("kind", ["file", "bytesio"])
def test_file_wrapper_serves_real_file(echo, tmp_path, kind):
    port = echo.port
    data = os.urandom(3 * 1024 * 1024 + 123)
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    extra = "&bytesio=1" if kind == "bytesio" else ""
    status, headers, body = http_get(port, f"/file?path={f}{extra}", timeout=20)
    assert status == 200
    assert headers["Content-Length"] == str(len(data))
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- Flask

def test_flask_app(serve, port):
    serve(["--http", f"127.0.0.1:{port}", "-w", "core_flask:app", "--chdir", str(APPS),
           "--master", "--processes", "2", "--threads", "2"], workers=2)
    base = f"http://127.0.0.1:{port}"
    with requests.Session() as s:
        r = s.get(base + "/", timeout=5)
        assert r.status_code == 200 and r.text == "flask index"
        r = s.get(base + "/user/zoë?x=1", timeout=5)
        assert r.status_code == 200
        assert r.json() == {"name": "zoë", "args": {"x": "1"}}
        r = s.post(base + "/json", json={"numbers": [1, 2, 3], "s": "x"}, timeout=5)
        assert r.status_code == 200
        assert r.json() == {"received": {"numbers": [1, 2, 3], "s": "x"}, "doubled": [2, 4, 6]}
        content = os.urandom(200_000)
        r = s.post(base + "/upload", data={"title": "hello", "n": "42"},
                   files={"file": ("data.bin", content, "application/octet-stream")},
                   timeout=10)
        assert r.status_code == 200
        assert r.json() == {"form": {"title": "hello", "n": "42"}, "filename": "data.bin",
                            "size": len(content),
                            "sha256": hashlib.sha256(content).hexdigest()}
        r = s.get(base + "/nope", timeout=5)
        assert r.status_code == 404 and r.json() == {"error": "not found", "path": "/nope"}


def test_module_with_callable_flag_and_pythonpath(serve, port):
    serve(["--http", f"127.0.0.1:{port}", "-w", "core_named", "--pythonpath", str(APPS),
           "--callable", "myapp"])
    status, _, body = http_get(port, "/")
    assert status == 200 and body == b"named callable"


FACTORY_APP = """
calls = []


def uwsgi_app():
    calls.append(1)

    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"made %d by %s" % (len(calls), environ["SCRIPT_NAME"].encode())]
    return application
"""


@pytest.mark.parametrize("how", ["module", "callable", "mount"])
def test_module_factory_is_called_for_the_app(serve, port, tmp_path, how):
    """`module:name()` (Galaxy's `buildapp:uwsgi_app()`): uWSGI's module
    loader calls name() once, without arguments, and serves what it returns."""
    (tmp_path / "factory_app.py").write_text(FACTORY_APP)
    app = {"module": ["--module", "factory_app:uwsgi_app()"],
           "callable": ["--module", "factory_app", "--callable", "uwsgi_app()"],
           "mount": ["--mount", "/g=factory_app:uwsgi_app()", "--manage-script-name"]}[how]
    serve(["--http", f"127.0.0.1:{port}", "--pythonpath", str(tmp_path), *app])
    for _ in range(2):
        status, _, body = http_get(port, "/g/x")
        assert status == 200 and body == (b"made 1 by /g" if how == "mount" else b"made 1 by "), body


# ---------------------------------------------------------------- embedded Python

def _python_facts(python="python3"):
    out = subprocess.run(
        [python, "-c", "import sys,json;print(json.dumps([sys.version, sys.prefix, sys.base_prefix]))"],
        capture_output=True, text=True, timeout=20, check=True)
    return json.loads(out.stdout)


def test_embedded_python_is_the_one_built_for(echo):
    version, prefix, _ = _python_facts()
    port = echo.port
    status, _, body = http_get(port, "/sys")
    assert status == 200
    d = json.loads(body)
    assert d["version"] == version
    assert os.path.realpath(d["prefix"]) == os.path.realpath(prefix)


def test_virtualenv(serve, port, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(venv)],
                   check=True, timeout=60, capture_output=True)
    sp = list(venv.glob("lib/python3*/site-packages"))
    assert len(sp) == 1, sp
    (sp[0] / "core_venvmod.py").write_text("MARKER = 'from-the-venv'\n")
    _, _, base_prefix = _python_facts()
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "core_venv.py"),
           "--virtualenv", str(venv), "--master"])
    status, _, body = http_get(port, "/")
    assert status == 200
    d = json.loads(body)
    assert d["marker"] == "from-the-venv"
    assert os.path.realpath(d["module_file"]).startswith(os.path.realpath(sp[0]))
    assert os.path.realpath(d["prefix"]) == os.path.realpath(venv)
    assert os.path.realpath(d["base_prefix"]) == os.path.realpath(base_prefix)


def _venv_of_another_minor(path):
    """A venv (without pip) of a CPython 3.X other than the server's."""
    import sys
    mine = "%d.%d" % sys.version_info[:2]
    for minor in range(9, 14):
        other = f"3.{minor}"
        pys = [p for p in (f"/usr/bin/python{other}",
                           *sorted(__import__("glob").glob(
                               os.path.expanduser(f"~/.pyenv/versions/{other}.*/bin/python{other}"))))
               if os.access(p, os.X_OK)]
        if other != mine and pys:
            subprocess.run([pys[0], "-m", "venv", "--without-pip", str(path)],
                           check=True, timeout=60, capture_output=True)
            return other
    raise AssertionError("no CPython 3.9-3.13 other than the server's here")


def test_virtualenv_of_another_python_is_refused(tmp_path):
    """The interpreter already runs: --home naming a venv of another X.Y is
    one line saying to install uwsgi-rs there; $VIRTUAL_ENV left over from
    another shell only warns, and the server serves."""
    from conftest import BIN, free_port
    other = _venv_of_another_minor(tmp_path / "other")
    r = helpers.run([BIN, "--http", f"127.0.0.1:{free_port()}", "--wsgi-file",
                     str(APPS / "core_venv.py"), "--home", str(tmp_path / "other")],
                    capture_output=True, text=True, timeout=30, cwd=tmp_path)
    lines = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith("uwsgi-rs:")]
    assert r.returncode == 1 and len(lines) == 1, (r.stdout, r.stderr)
    assert f"is a Python {other} environment" in lines[0], lines
    assert "install uwsgi-rs into it" in lines[0], lines


def test_stale_virtual_env_of_another_python_only_warns(serve, port, tmp_path):
    other = _venv_of_another_minor(tmp_path / "other")
    s = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "pkg_version.py")],
              env={"VIRTUAL_ENV": str(tmp_path / "other")})
    assert f"ignoring VIRTUAL_ENV: {tmp_path / 'other'} is a Python {other} environment" in s.log
    assert http_get(port, "/")[0] == 200


def test_without_virtualenv_the_venv_module_is_missing(serve, port, tmp_path):
    """Control for test_virtualenv: the module really only exists in the venv."""
    s = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "core_venv.py"),
               "--master"], ready=False)
    rc = s.proc.wait(15)
    assert rc != 0
    assert "core_venvmod" in s.log
