"""Static files through the real binary, driven by curl, http.client and raw
sockets: --static-map (directories, a single file, several maps),
--static-map2, --check-static, --static-index, --static-skip-ext,
--static-safe, --mimefile, --static-expires*, --static-gzip*, Range, 304,
HEAD, traversal attempts that must never leave the mapped directory, and
the offload threads that send big files without holding a request thread.
"""

import email.utils
import gzip
import http.client
import os
import socket
import subprocess
import time

import pytest

from conftest import free_port, http_get, raw_request
from helpers import popen

APP = '''def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        import time
        time.sleep(1.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"app:" + environ["PATH_INFO"].encode("latin-1")]
'''


@pytest.fixture
def site(tmp_path):
    """tmp/site/static/{a.css, a.css.gz, doc.txt, sub/index.html, empty/,
    skip.py, out -> tmp/secret, in -> a.css}, tmp/site/media/only-media.txt,
    tmp/secret/passwd, tmp/site/robots.txt, app.py in tmp."""
    (tmp_path / "app.py").write_text(APP)
    s = tmp_path / "site" / "static"
    (s / "sub").mkdir(parents=True)
    (s / "empty").mkdir()
    (tmp_path / "site" / "media").mkdir()
    (tmp_path / "secret").mkdir()
    (s / "a.css").write_text("body { color: red }\n" * 10)
    (s / "a.css.gz").write_bytes(gzip.compress(b"body { color: red }\n" * 10))
    (s / "doc.txt").write_text("0123456789")
    (s / "data.blob").write_text("custom type")
    (s / "sub" / "index.html").write_text("<h1>index</h1>")
    (s / "skip.py").write_text("print('source')")
    (tmp_path / "secret" / "passwd").write_text("root:x:0:0")
    (tmp_path / "site" / "media" / "only-media.txt").write_text("media")
    (tmp_path / "site" / "robots.txt").write_text("User-agent: *")
    os.symlink(tmp_path / "secret", s / "out")
    os.symlink("a.css", s / "in")
    return tmp_path


def start(serve, site, *args, threads=1):
    port = free_port()
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py",
                 "--threads", str(threads), *args], cwd=site)
    return srv, port


def curl(*args):
    r = subprocess.run(["curl", "-s", "--max-time", "20", *args], capture_output=True,
                       timeout=30)
    return r.stdout


def request(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def test_maps_types_and_headers(serve, site):
    srv, port = start(serve, site, "--static-map", "/static=site/static",
                      "--static-map", "/static=site/media",
                      "--static-map", "/robots.txt=site/robots.txt",
                      "--static-map2", "/site=.", "--static-index", "index.html")
    status, h, body = request(port, "GET", "/static/a.css")
    assert (status, body) == (200, (site / "site/static/a.css").read_bytes())
    assert h["content-type"] == "text/css"
    assert h["content-length"] == str(len(body))
    mtime = int((site / "site/static/a.css").stat().st_mtime)
    assert h["last-modified"] == email.utils.formatdate(mtime, usegmt=True)
    assert "etag" not in h, "uWSGI sends no ETag"
    # The second map of the same mountpoint is tried when the first has no file.
    assert request(port, "GET", "/static/only-media.txt")[2] == b"media"
    assert request(port, "GET", "/robots.txt")[2] == b"User-agent: *"
    # static-map2 appends the whole PATH_INFO: /site/static/doc.txt under "."
    assert request(port, "GET", "/site/static/doc.txt")[2] == b"0123456789"
    assert request(port, "GET", "/static/sub/")[2] == b"<h1>index</h1>"
    assert request(port, "GET", "/static/sub")[2] == b"<h1>index</h1>"
    assert request(port, "GET", "/static/in")[2].startswith(b"body")
    # Not a file: the app answers, as in uWSGI.
    assert request(port, "GET", "/static/empty/")[2] == b"app:/static/empty/"
    assert request(port, "GET", "/static/missing.css")[2] == b"app:/static/missing.css"
    assert request(port, "POST", "/static/a.css")[2] == b"app:/static/a.css"
    # Static requests are in the access log like any other.
    srv.wait_log("GET /static/a.css => generated 200 bytes in ")
    assert "(HTTP/1.1 200)" in srv.log


@pytest.mark.parametrize("path", [
    "/static/../../secret/passwd",
    "/static/../secret/passwd",
    "/static/%2e%2e/%2e%2e/secret/passwd",
    "/static/%2E%2E%2Fsecret%2Fpasswd",
    "/static/..%2fsecret/passwd",
    "/static/out/passwd",
    "/static/a.css%00.png",
    "/static//etc/passwd",
    "/static/../../../../../../etc/passwd",
])
def test_traversal_never_leaves_the_map(serve, site, path):
    srv, port = start(serve, site, "--static-map", "/static=site/static")
    raw = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      .encode())
    assert b"root:" not in raw, raw
    assert b"body { color" not in raw, raw
    assert raw.startswith(b"HTTP/1.1 "), raw
    # And with curl, which must not normalise the path either.
    out = curl("--path-as-is", f"http://127.0.0.1:{port}{path}")
    assert b"root:" not in out and b"body { color" not in out
    # The worker keeps serving.
    assert request(port, "GET", "/static/doc.txt")[2] == b"0123456789"


def test_static_safe_allows_a_symlinked_dir(serve, site):
    srv, port = start(serve, site, "--static-map", "/static=site/static",
                      "--static-safe", str(site / "secret"))
    assert request(port, "GET", "/static/out/passwd")[2] == b"root:x:0:0"
    assert request(port, "GET", "/static/../secret/passwd")[2] != b"root:x:0:0"


def test_check_static_skip_ext_and_mimefile(serve, site):
    (site / "mime.types").write_text("application/x-blob\tblob\n")
    srv, port = start(serve, site, "--check-static", "site/static",
                      "--static-skip-ext", ".py", "--mimefile", "mime.types")
    status, h, body = request(port, "GET", "/doc.txt")
    assert (status, body, h["content-type"]) == (200, b"0123456789", "text/plain")
    assert request(port, "GET", "/data.blob")[1]["content-type"] == "application/x-blob"
    assert request(port, "GET", "/skip.py")[2] == b"app:/skip.py"
    assert request(port, "GET", "/")[2] == b"app:/"


def test_range_304_and_head(serve, site):
    srv, port = start(serve, site, "--static-map", "/static=site/static")
    status, h, body = request(port, "GET", "/static/doc.txt", {"Range": "bytes=2-5"})
    assert (status, body, h["content-range"]) == (206, b"2345", "bytes 2-5/10")
    status, h, body = request(port, "GET", "/static/doc.txt", {"Range": "bytes=-3"})
    assert (status, body) == (206, b"789")
    status, h, body = request(port, "GET", "/static/doc.txt", {"Range": "bytes=7-"})
    assert (status, body) == (206, b"789")
    status, h, _ = request(port, "GET", "/static/doc.txt", {"Range": "bytes=10-20"})
    assert (status, h["content-range"]) == (416, "bytes */10")
    lm = request(port, "GET", "/static/doc.txt")[1]["last-modified"]
    status, h, body = request(port, "GET", "/static/doc.txt", {"If-Modified-Since": lm})
    assert (status, body) == (304, b"")
    old = email.utils.formatdate(time.time() - 86400 * 365 * 30, usegmt=True)
    assert request(port, "GET", "/static/doc.txt", {"If-Modified-Since": old})[0] == 200
    # If-Range with the current date: the range; anything else: the whole file.
    assert request(port, "GET", "/static/doc.txt", {"Range": "bytes=0-1", "If-Range": lm})[0] == 206
    assert request(port, "GET", "/static/doc.txt",
                   {"Range": "bytes=0-1", "If-Range": '"etag"'})[2] == b"0123456789"
    status, h, body = request(port, "HEAD", "/static/doc.txt")
    assert (status, body, h["content-length"]) == (200, b"", "10")
    # curl agrees on ranges.
    assert curl("-r", "3-4", f"http://127.0.0.1:{port}/static/doc.txt") == b"34"


def test_gzip_variants(serve, site):
    plain = (site / "site/static/a.css").read_bytes()
    for args in (["--static-gzip-all"], ["--static-gzip-dir", "site/static"],
                 ["--static-gzip-ext", ".css"]):
        srv, port = start(serve, site, "--static-map", "/static=site/static", *args)
        status, h, body = request(port, "GET", "/static/a.css", {"Accept-Encoding": "gzip, deflate"})
        assert h.get("content-encoding") == "gzip", args
        assert h["content-type"] == "text/css"
        assert gzip.decompress(body) == plain
        status, h, body = request(port, "GET", "/static/a.css")
        assert "content-encoding" not in h and body == plain
        # No .gz beside it: the file itself.
        assert request(port, "GET", "/static/doc.txt",
                       {"Accept-Encoding": "gzip"})[2] == b"0123456789"
        assert curl("--compressed", f"http://127.0.0.1:{port}/static/a.css") == plain
        srv.stop()


def test_expires(serve, site):
    srv, port = start(serve, site, "--static-map", "/static=site/static",
                      "--static-expires-type", "text/css=3600",
                      "--static-expires-type-mtime", "text/plain=60",
                      "--static-expires-uri", r"\.html 120")
    before = time.time()
    h = request(port, "GET", "/static/a.css")[1]
    exp = email.utils.parsedate_to_datetime(h["expires"]).timestamp()
    assert before + 3600 - 2 <= exp <= time.time() + 3600 + 1
    h = request(port, "GET", "/static/doc.txt")[1]
    mtime = int((site / "site/static/doc.txt").stat().st_mtime)
    assert h["expires"] == email.utils.formatdate(mtime + 60, usegmt=True)
    h = request(port, "GET", "/static/sub/index.html")[1]
    assert abs(email.utils.parsedate_to_datetime(h["expires"]).timestamp() - time.time() - 120) < 3


def make_big(site, mb=50):
    big = site / "site" / "static" / "big.bin"
    with open(big, "wb") as f:
        f.truncate(mb << 20)
    return big


@pytest.mark.serial  # loads the machine, or asserts a latency
def test_big_file_is_offloaded(serve, site):
    """A 50 MB file to a client that reads slowly does not hold the only
    request thread: quick requests on the same worker are served at once,
    and the slow client still gets every byte, then keeps its connection."""
    big = make_big(site)
    srv, port = start(serve, site, "--static-map", "/static=site/static", threads=1)
    slow = socket.create_connection(("127.0.0.1", port), timeout=30)
    slow.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    t0 = time.monotonic()
    for _ in range(20):
        assert http_get(port, "/quick")[2] == b"app:/quick"
        assert request(port, "GET", "/static/doc.txt")[2] == b"0123456789"
    quick = time.monotonic() - t0
    assert quick < 5, f"20 quick requests took {quick:.1f}s behind a slow static client"
    # A slow reader: 64 KiB at a time, never silent for a socket timeout.
    got, head = 0, b""
    while b"\r\n\r\n" not in head:
        head += slow.recv(65536)
    head, _, rest = head.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % big.stat().st_size in head
    got = len(rest)
    while got < big.stat().st_size:
        chunk = slow.recv(1 << 16)
        assert chunk, f"connection closed after {got} bytes"
        got += len(chunk)
        if got < (8 << 20):
            time.sleep(0.0005)
    assert got == big.stat().st_size
    # Keep-alive goes on after an offloaded transfer.
    slow.sendall(b"GET /static/doc.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    again = b""
    while not again.endswith(b"0123456789"):
        more = slow.recv(65536)
        assert more, again
        again += more
    slow.close()
    assert f"GET /static/big.bin => generated {big.stat().st_size} bytes" in srv.log


@pytest.mark.serial  # loads the machine, or asserts a latency
def test_many_big_transfers_and_quick_requests(serve, site):
    """Four concurrent 50 MB downloads (curl) while the app serves quick
    requests on a single-threaded worker: all complete, byte-exact."""
    big = make_big(site)
    srv, port = start(serve, site, "--static-map", "/static=site/static",
                      "--offload-threads", "2", threads=1)
    procs = [popen(["curl", "-s", "--limit-rate", "20M", "-o", "/dev/null", "-w",
                    "%{http_code} %{size_download}",
                    f"http://127.0.0.1:{port}/static/big.bin"],
                   stdout=subprocess.PIPE) for _ in range(4)]
    time.sleep(0.3)
    t0 = time.monotonic()
    for _ in range(10):
        assert http_get(port, "/q")[0] == 200
    assert time.monotonic() - t0 < 3
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert out.decode() == f"200 {big.stat().st_size}"


def test_a_client_that_never_reads_is_cut(serve, site):
    make_big(site, mb=50)
    srv, port = start(serve, site, "--static-map", "/static=site/static",
                      "--socket-timeout", "1")
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(3)
    # The offload thread gave up on it: reading now ends early.
    s.settimeout(5)
    got = 0
    try:
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            got += len(b)
    except OSError:
        pass
    assert got < 50 << 20
    assert http_get(port, "/after")[2] == b"app:/after"


def test_static_over_the_uwsgi_protocol(serve, site):
    from test_hostile import uwsgi_packet
    port = free_port()
    serve(["--socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py",
           "--static-map", "/static=site/static"], cwd=site)
    raw = raw_request(port, uwsgi_packet([(b"REQUEST_METHOD", b"GET"),
                                          (b"PATH_INFO", b"/static/doc.txt"),
                                          (b"REQUEST_URI", b"/static/doc.txt"),
                                          (b"SERVER_PROTOCOL", b"HTTP/1.1"),
                                          (b"HTTP_RANGE", b"bytes=0-3")]))
    assert raw.startswith(b"HTTP/1.1 206 Partial Content\r\n"), raw
    assert raw.endswith(b"\r\n\r\n0123")
