"""The "sockets and requests" options through the real binary: routes
(--route, --route-uri, --route-host, --route-qs, --route-if, --route-run and
their actions), --add-header, --mount with --manage-script-name (several
apps, longest prefix), and the rest of the family as each lands.
"""

import http.client

from conftest import free_port, http_get, raw_request
from test_hostile import uwsgi_packet

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
