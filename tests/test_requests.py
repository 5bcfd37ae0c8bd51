"""The "sockets and requests" options through the real binary: routes
(--route, --route-uri, --route-host, --route-qs, --route-if, --route-run and
their actions), --add-header, --mount with --manage-script-name (several
apps, longest prefix), and the rest of the family as each lands.
"""

import errno
import http.client
import socket
import subprocess
import time

from conftest import free_port, http_get, raw_request
from helpers import popen
from test_hostile import uwsgi_packet
import helpers

APP = '''def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s|%s|%s" % (TAG, environ["SCRIPT_NAME"], environ["PATH_INFO"])).encode()]
'''


def write_app(path, tag):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"TAG = {tag!r}\n" + APP)


def request(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def start(serve, tmp_path, *args):
    write_app(tmp_path / "app.py", "main")
    port = free_port()
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py", *args],
                cwd=tmp_path)
    return srv, port


def test_route_actions(serve, tmp_path):
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "x.txt").write_text("from static")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "f.txt").write_text("routed file")
    srv, port = start(
        serve, tmp_path,
        "--static-map", "/static=static",
        "--route", "^/static/ addheader:Content-Security-Policy: sandbox",
        "--route", "^/gone return:410",
        "--route", "^/old/(.*) redirect-301:/new/$1",
        "--route", "^/tmp redirect:/elsewhere?q=${QUERY_STRING}",
        "--route", "^/f/(.*) static:" + str(tmp_path / "files") + "/$1",
        "--route", "^/api continue:",
        "--route-uri", r"\?admin=1 return:403",
        "--route-host", r"^blocked\.example$ return:421",
        "--route-qs", "^debug$ addheader:X-Debug: on",
        "--route-if", "startswith:${PATH_INFO};/hdr addheader:X-Path: ${PATH_INFO}",
        "--route-if-not", "equal:${REQUEST_METHOD};GET return:405",
        "--route-run", "addheader:X-Served-By: uwsgi-rs",
        "--route", "^/quiet donotlog:",
        "--route", "^/x rewrite:/y",
    )
    # addheader on a static file, and on the app's responses too.
    s, h, b = request(port, "GET", "/static/x.txt")
    assert (s, b, h["content-security-policy"]) == (200, b"from static", "sandbox")
    assert h["x-served-by"] == "uwsgi-rs"
    s, h, b = request(port, "GET", "/hdr/1?debug")
    assert (s, b) == (200, b"main||/hdr/1")
    assert (h["x-path"], h["x-debug"], h["x-served-by"]) == ("/hdr/1", "on", "uwsgi-rs")
    s, h, b = request(port, "GET", "/gone")
    assert (s, b, h["content-type"]) == (410, b"Gone", "text/plain")
    s, h, b = request(port, "GET", "/old/a/b")
    assert (s, h["location"], b) == (301, "/new/a/b", b"Moved Permanently")
    s, h, b = request(port, "GET", "/tmp?x=1")
    assert (s, h["location"]) == (302, "/elsewhere?q=x=1")
    assert request(port, "GET", "/f/f.txt")[2] == b"routed file"
    # static: to a path that leaves its directory is refused.
    assert request(port, "GET", "/f/../static/x.txt")[0] == 404
    # continue: straight to the app, no later rule applies.
    s, h, b = request(port, "GET", "/api/v1?admin=1")
    assert (s, b) == (200, b"main||/api/v1") and "x-served-by" not in h
    assert request(port, "GET", "/page?admin=1")[0] == 403
    assert request(port, "GET", "/", {"Host": "blocked.example"})[0] == 421
    assert request(port, "POST", "/form")[0] == 405
    assert request(port, "HEAD", "/gone")[0] == 410
    request(port, "GET", "/quiet")
    request(port, "GET", "/after-quiet")
    srv.wait_log("GET /after-quiet")
    assert "GET /quiet " not in srv.log
    assert "GET /gone => generated 4 bytes" in srv.log
    # The unhonoured action was named at start, and the route ignored.
    assert "the route action 'rewrite' is not honoured yet; this route is ignored" in srv.log
    assert request(port, "GET", "/x")[2] == b"main||/x"
    # Keep-alive survives a route's answer.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for path in ("/gone", "/old/z", "/ok"):
        c.request("GET", path)
        c.getresponse().read()
    c.close()


def test_add_header(serve, tmp_path):
    srv, port = start(serve, tmp_path, "--add-header", "X-Frame-Options: DENY",
                      "--add-header", "X-Two: 2")
    s, h, b = request(port, "GET", "/a")
    assert (h["x-frame-options"], h["x-two"]) == ("DENY", "2")
    # Connection: close (glance, searxng) closes after each response.
    srv2, port2 = start(serve, tmp_path, "--add-header", "Connection: close")
    raw = raw_request(port2, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.count(b"HTTP/1.1 200") == 1, raw
    assert raw.count(b"Connection: close") == 1, raw


def test_mounts_and_manage_script_name(serve, tmp_path):
    write_app(tmp_path / "kpi" / "wsgi.py", "kpi")
    write_app(tmp_path / "admin.py", "admin")
    (tmp_path / "pkgapp.py").write_text("TAG = 'module'\n" + APP.replace("application", "app"))
    srv, port = start(serve, tmp_path, "--manage-script-name",
                      "--mount", "/kpi=kpi/wsgi.py",
                      "--mount", "/kpi/admin=admin.py",
                      "--mount", "/mod=pkgapp:app")
    assert request(port, "GET", "/kpi/api/v2")[2] == b"kpi|/kpi|/api/v2"
    assert request(port, "GET", "/kpi")[2] == b"kpi|/kpi|"
    assert request(port, "GET", "/kpi/admin/users")[2] == b"admin|/kpi/admin|/users"
    assert request(port, "GET", "/mod/x")[2] == b"module|/mod|/x"
    # Not at a '/': not that mount. No mount: the main app.
    assert request(port, "GET", "/kpix")[2] == b"main||/kpix"
    assert request(port, "GET", "/")[2] == b"main||/"
    assert request(port, "GET", "/kpi/%61dmin/y")[2] == b"admin|/kpi/admin|/y"


def test_only_mounts_the_first_is_the_default(serve, tmp_path):
    write_app(tmp_path / "kpi" / "wsgi.py", "kpi")
    port = free_port()
    serve(["--http-socket", f"127.0.0.1:{port}", "--manage-script-name",
           "--mount", "/kpi=kpi/wsgi.py"], cwd=tmp_path)
    assert request(port, "GET", "/kpi/x")[2] == b"kpi|/kpi|/x"
    assert request(port, "GET", "/other")[2] == b"kpi||/other"


def test_mount_chosen_by_the_proxys_script_name(serve, tmp_path):
    """Without --manage-script-name the proxy's SCRIPT_NAME picks the app."""
    write_app(tmp_path / "a.py", "a")
    write_app(tmp_path / "main.py", "main")
    port = free_port()
    serve(["--socket", f"127.0.0.1:{port}", "--wsgi-file", "main.py", "--mount", "/a=a.py"],
          cwd=tmp_path)

    def ask(script, path):
        raw = raw_request(port, uwsgi_packet([
            (b"REQUEST_METHOD", b"GET"), (b"SCRIPT_NAME", script), (b"PATH_INFO", path),
            (b"REQUEST_URI", script + path), (b"SERVER_PROTOCOL", b"HTTP/1.1")]))
        return raw.partition(b"\r\n\r\n")[2]
    assert ask(b"/a", b"/x") == b"a|/a|/x"
    assert ask(b"", b"/a/x") == b"main||/a/x"


def test_route_return_over_uwsgi(serve, tmp_path):
    write_app(tmp_path / "app.py", "main")
    port = free_port()
    serve(["--socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py",
           "--route", "^/nope return:404"], cwd=tmp_path)
    raw = raw_request(port, uwsgi_packet([(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/nope"),
                                          (b"REQUEST_URI", b"/nope")]))
    assert raw.startswith(b"HTTP/1.0 404 Not Found\r\n"), raw
    assert raw.endswith(b"Not Found")


def test_uwsgi_response_head_is_the_apps_and_http_gets_date_and_connection(serve, tmp_path):
    """To a uwsgi proxy (nginx's uwsgi_pass) the head is the app's alone,
    as uWSGI sends it: the proxy dates the response and owns its own
    connections, so the server adds no Date and no Connection line (each
    one more line nginx parses per response). A route's answer too. An
    HTTP client of the same server still gets both."""
    write_app(tmp_path / "app.py", "main")
    port, hport = free_port(), free_port()
    serve(["--socket", f"127.0.0.1:{port}", "--http-socket", f"127.0.0.1:{hport}",
           "--wsgi-file", "app.py", "--route", "^/nope return:404"], cwd=tmp_path)

    def over_uwsgi(path, protocol=b"HTTP/1.1"):
        raw = raw_request(port, uwsgi_packet([
            (b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", path), (b"REQUEST_URI", path),
            (b"SERVER_PROTOCOL", protocol)]))
        return raw.partition(b"\r\n\r\n")
    head, _, body = over_uwsgi(b"/x")
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8", head
    assert body == b"main||/x"
    head, _, body = over_uwsgi(b"/x", b"HTTP/1.0")
    assert head == b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8", head
    head, _, body = over_uwsgi(b"/nope")
    assert head == b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9", head
    assert body == b"Not Found"
    # HTTP: the server dates the response and says when it closes.
    raw = raw_request(hport, b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = raw.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 200 OK" and b"Connection: close" in head, head
    assert any(h.startswith(b"Date: ") and h.endswith(b" GMT") for h in head), head
    raw = raw_request(hport, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = raw.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 404 Not Found" and b"Connection: close" in head, head
    assert any(h.startswith(b"Date: ") for h in head), head


# ------------------------------------------------------------ sockets and requests

ECHO = '''import os, resource, sys, tempfile, time

def application(environ, start_response):
    called = time.time()
    body = environ["wsgi.input"].read()
    tmp = tempfile.gettempdir()
    on_disk = any(os.readlink("/proc/self/fd/" + fd).startswith(tmp)
                  and os.readlink("/proc/self/fd/" + fd).endswith("(deleted)")
                  for fd in os.listdir("/proc/self/fd")
                  if os.path.islink("/proc/self/fd/" + fd))
    out = {
        "addr": environ["REMOTE_ADDR"], "port": environ["REMOTE_PORT"],
        "called": called, "len": len(body), "disk": on_disk,
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "stdin": os.readlink("/proc/self/fd/0"),
        "wrapper": "wsgi.file_wrapper" in environ,
        "optimize": sys.flags.optimize,
    }
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(out).encode()]
'''


def start_echo(serve, tmp_path, *args, env=None):
    (tmp_path / "echo.py").write_text(ECHO)
    port = free_port()
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "echo.py", *args],
                cwd=tmp_path, env=env)
    return srv, port


def echo(raw):
    import ast
    return ast.literal_eval(raw.partition(b"\r\n\r\n")[2].decode())


def exchange(port, data, timeout=5):
    """Send `data` on one connection, read until the response is complete
    (one Content-Length response) or the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    got = b""
    while True:
        head, sep, rest = got.partition(b"\r\n\r\n")
        if sep:
            length = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                      if l.lower().startswith(b"content-length:")]
            if length and len(rest) >= length[0]:
                break
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        got += chunk
    return s, got


def test_proxy_protocol(serve, tmp_path):
    import struct
    srv, port = start_echo(serve, tmp_path, "--enable-proxy-protocol")
    req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    s, raw = exchange(port, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n" + req)
    assert (echo(raw)["addr"], echo(raw)["port"]) == ("203.0.113.7", "51234")
    # The next request on the connection keeps the client's address.
    s.sendall(req)
    got = s.recv(65536)
    assert echo(got)["addr"] == "203.0.113.7"
    s.close()
    s, raw = exchange(port, b"PROXY TCP6 2001:db8::5 ::1 4000 443\r\n" + req)
    assert (echo(raw)["addr"], echo(raw)["port"]) == ("2001:db8::5", "4000")
    # v2, sent in two pieces.
    v2 = b"\r\n\r\n\0\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack(">H", 12)
    v2 += bytes([198, 51, 100, 9, 10, 0, 0, 1]) + struct.pack(">HH", 40000, 80)
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    c.sendall(v2[:7])
    import time
    time.sleep(0.2)
    c.sendall(v2[7:] + req)
    got = b""
    while b"}" not in got:
        got += c.recv(65536)
    assert (echo(got)["addr"], echo(got)["port"]) == ("198.51.100.9", "40000")
    c.close()
    # LOCAL (a health check) and no header at all: the peer's address.
    local = b"\r\n\r\n\0\r\nQUIT\n" + bytes([0x20, 0x00, 0, 0])
    assert echo(exchange(port, local + req)[1])["addr"] == "127.0.0.1"
    assert echo(exchange(port, req)[1])["addr"] == "127.0.0.1"
    # Malformed: 400 and close; the worker goes on.
    raw = raw_request(port, b"PROXY TCP4 1.2.3.4 nonsense\r\n" + req)
    assert raw.startswith(b"HTTP/1.1 400"), raw
    assert b"Connection: close" in raw
    assert "malformed PROXY protocol header" in srv.log
    assert echo(exchange(port, req)[1])["addr"] == "127.0.0.1"


def test_without_proxy_protocol_a_proxy_line_is_a_bad_request(serve, tmp_path):
    srv, port = start_echo(serve, tmp_path)
    raw = raw_request(port, b"PROXY TCP4 203.0.113.7 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 400"), raw


def test_post_buffering(serve, tmp_path):
    import time
    srv, port = start_echo(serve, tmp_path, "--post-buffering", "1000",
                           "--post-buffering-bufsize", "4096")
    for size, disk in ((999, False), (200_000, True)):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        s.sendall(b"a" * (size // 2))
        time.sleep(0.5)
        second_half = time.time()
        s.sendall(b"a" * (size - size // 2))
        got = b""
        while b"}" not in got:
            got += s.recv(65536)
        out = echo(got)
        assert out["len"] == size
        assert out["called"] >= second_half - 0.05, "the app ran before the body was in"
        assert out["disk"] is disk, (size, out)
        s.close()
    # Expect: 100-continue is answered before the body is read.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
    s.sendall(b"b" * 5000)
    got = b""
    while b"}" not in got:
        got += s.recv(65536)
    assert echo(got)["len"] == 5000
    # A client that stops halfway is dropped; the worker goes on.
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc")
    s.close()
    srv.wait_log("request body not received")
    assert echo(exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[1])["len"] == 0


def test_worker_environment_options(serve, tmp_path):
    srv, port = start_echo(serve, tmp_path, "--max-fd", "2048", "--wsgi-disable-file-wrapper",
                           "--optimize", "2", "--no-site", "--http-timeout", "30",
                           "--ignore-sigpipe")
    out = echo(exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[1])
    assert out["nofile"] == 2048
    assert out["stdin"] == "/dev/null"
    assert out["wrapper"] is False
    assert "--optimize 2 is not in effect (the interpreter runs at level 0)" in srv.log
    assert "--no-site" in srv.log and "--http-timeout" in srv.log  # named as without effect
    srv2, port2 = start_echo(serve, tmp_path, "--optimize", "1", env={"PYTHONOPTIMIZE": "1"})
    out = echo(exchange(port2, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[1])
    assert (out["optimize"], out["wrapper"]) == (1, True)
    assert "is not in effect" not in srv2.log


def test_honour_stdin(tmp_path):
    import os
    import subprocess
    import time
    from conftest import BIN
    (tmp_path / "echo.py").write_text(ECHO)
    stdin = tmp_path / "stdin.txt"
    stdin.write_text("data")
    for honour in (False, True):
        port = free_port()
        with open(stdin) as f, open(tmp_path / "log", "wb") as log:
            p = popen([BIN, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file",
                       "echo.py", *(["--honour-stdin"] if honour else [])],
                      cwd=tmp_path, stdin=f, stdout=log, stderr=subprocess.STDOUT,
                      start_new_session=True)
        try:
            for _ in range(100):
                if b") ready" in (tmp_path / "log").read_bytes():
                    break
                time.sleep(0.05)
            out = echo(exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[1])
            assert out["stdin"] == (str(stdin) if honour else "/dev/null")
        finally:
            os.killpg(p.pid, 9)
            p.wait()


def test_umask_and_chown_socket(serve, tmp_path):
    import os
    import stat
    (tmp_path / "echo.py").write_text(ECHO)
    sock = tmp_path / "app.sock"
    serve(["--socket", str(sock), "--wsgi-file", "echo.py", "--umask", "027",
           "--chown-socket", f"{os.getuid()}:{os.getgid()}"], cwd=tmp_path)
    st = sock.stat()
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    if os.getuid() == 0:
        sock2 = tmp_path / "nobody.sock"
        serve(["--socket", str(sock2), "--wsgi-file", "echo.py", "--chown-socket", "65534:65534"],
              cwd=tmp_path)
        assert (sock2.stat().st_uid, sock2.stat().st_gid) == (65534, 65534)
    r = helpers.run([BIN_(), "--socket", str(tmp_path / "x.sock"), "--wsgi-file", "echo.py",
                     "--chown-socket", "no-such-user-here"], cwd=tmp_path,
                    capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "--chown-socket no-such-user-here: no such user" in r.stderr + r.stdout
    assert not (tmp_path / "x.sock").exists()


def BIN_():
    from conftest import BIN
    return BIN


STREAM = '''import time

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    def gen():
        for i in range(200):
            yield b"x" * 65536
            time.sleep(0.01)
        open("finished", "w").write("yes")
    return gen()
'''


def test_write_errors(serve, tmp_path):
    """A client that leaves mid-response: an OSError traceback by default;
    none with --disable-write-exception (and the app stops being iterated)
    or --ignore-write-errors."""
    import time
    (tmp_path / "stream.py").write_text(STREAM)
    for args, traceback in (([], True), (["--disable-write-exception"], False),
                            (["--ignore-write-errors"], False)):
        port = free_port()
        srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "stream.py", *args],
                    cwd=tmp_path)
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct_linger())
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(1000)
        s.close()  # reset
        srv.wait_log("GET / => generated", timeout=15)
        time.sleep(0.2)
        assert ("error writing response" in srv.log) is traceback, (args, srv.log)
        assert not (tmp_path / "finished").exists()
        srv.stop()


def struct_linger():
    import struct
    return struct.pack("ii", 1, 0)


def test_del_header(serve, tmp_path):
    (tmp_path / "hdr.py").write_text('''def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Powered-By", "PHP"),
                              ("Server", "app"), ("X-Keep", "1")])
    return [b"ok"]
''')
    port = free_port()
    serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "hdr.py",
           "--del-header", "x-powered-by", "--route", "^/r delheader:Server"], cwd=tmp_path)
    h = request(port, "GET", "/")[1]
    assert "x-powered-by" not in h and h["server"] == "app" and h["x-keep"] == "1"
    h = request(port, "GET", "/r")[1]
    assert "x-powered-by" not in h and "server" not in h and h["x-keep"] == "1"


def bind_beside(port):
    """Whether a socket with SO_REUSEPORT can bind and listen on `port`
    while the server listens there (EADDRINUSE: it cannot)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        return True
    except OSError as e:
        assert e.errno == errno.EADDRINUSE, e
        return False
    finally:
        s.close()


def test_reuse_port(serve, tmp_path):
    """--reuse-port: another process of the same user can bind the port the
    server listens on (SO_REUSEPORT on the listener); without it, it cannot."""
    write_app(tmp_path / "app.py", "a")
    for extra, shared in (([], False), (["--reuse-port"], True)):
        port = free_port()
        srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py", *extra],
                    cwd=tmp_path)
        assert request(port, "GET", "/")[0] == 200
        assert bind_beside(port) is shared, extra
        assert "NOT HONOURED" not in srv.log
        srv.stop()


def server_side_timer(port, client_port):
    """The kernel timer of the server's end of an established connection
    (/proc/net/tcp's `tr`: 0 none, 1 retransmit, 2 keepalive)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (int(local.split(":")[1], 16), int(remote.split(":")[1], 16), state) == \
                    (port, client_port, "01"):
                return int(fields[5].split(":")[0], 16)
    return None


def test_so_keepalive(serve, tmp_path):
    """--so-keepalive: the connections the workers accept have SO_KEEPALIVE
    (the kernel's keepalive timer runs on an idle one); without it, none."""
    write_app(tmp_path / "app.py", "a")
    for extra, timer in (([], 0), (["--so-keepalive"], 2)):
        port = free_port()
        srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py", *extra],
                    cwd=tmp_path)
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            got = b""
            while not got.endswith(b"0\r\n\r\n") and b"\r\n\r\na|" not in got:
                chunk = c.recv(4096)
                assert chunk, got
                got += chunk
            # The connection stays open (keep-alive), idle.
            client_port = c.getsockname()[1]
            deadline = time.time() + 5
            seen = server_side_timer(port, client_port)
            while seen not in (0, 2) and time.time() < deadline:  # 1: an ACK still due
                time.sleep(0.05)
                seen = server_side_timer(port, client_port)
            assert seen == timer, (extra, seen)
        finally:
            c.close()
        assert "NOT HONOURED" not in srv.log
        srv.stop()
