"""Responses sent before the request is read: an app that refuses an
upload without reading it (403 to a 2 MB POST), and the server's own
errors for a request it stops reading (400, 413, 414, 431). Closing with
request bytes unread makes the kernel send a reset, which destroyed the
response for clients still sending (Python's http.client, nginx: 502).
The server now shuts down its write side and discards the rest, in the
poller, bounded in bytes and time: the client always gets the response."""

import http.client
import os
import socket
import struct
import time

import pytest

from conftest import APPS, free_port, http_get

APP = str(APPS / "rel_app.py")
BODY = os.urandom(2 * 1024 * 1024)
N = 20


def uwsgi_packet(pairs):
    block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                     for k, v in pairs)
    return struct.pack("<BHB", 0, len(block), 0) + block


def strict_exchange(port, data, timeout=10):
    """Send everything, then read the answer, like nginx and http.client: a
    send that fails (reset, broken pipe) loses the request. Returns the
    bytes received, or None if the send failed or the answer was reset.
    The send buffer is fixed at 64 KiB: on loopback an autotuned one swallows
    a 2 MB body at once, which hides the reset (as it would not over a
    network)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    try:
        try:
            s.sendall(data)
        except OSError:
            return None
        got = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                return None
            if not b:
                return got
            got += b
    finally:
        s.close()


def http_client_post(port, path, body, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    except OSError as e:
        return type(e).__name__, b""
    finally:
        c.close()


@pytest.fixture
def both(serve, tmp_path):
    """One server with an HTTP and a uwsgi listener: (http port, uwsgi port)."""
    hp, up = free_port(), free_port()
    srv = serve(["--http", f"127.0.0.1:{hp}", "--socket", f"127.0.0.1:{up}", "--wsgi-file", APP,
                 "--processes", "1", "--threads", "2", "--limit-post", str(4 * len(BODY))])
    srv.ports = hp, up
    return srv


@pytest.mark.parametrize("path", [b"/deny", b"/deny?stream=1"])
def test_app_refusing_an_upload_is_heard_over_http(both, path):
    """A client that sends the whole body before it reads (0 of 20 got the
    403 before; Python's http.client with its default buffers 14 of 20)."""
    hp, _ = both.ports
    req = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path, len(BODY)) + BODY
    got = [strict_exchange(hp, req) for _ in range(N)]
    ok = [g is not None and g.startswith(b"HTTP/1.1 403 ") and b"denied" in g for g in got]
    assert sum(ok) == N, f"{sum(ok)} of {N}"
    assert [http_client_post(hp, path.decode(), BODY) for _ in range(N)] == [(403, b"denied\n")] * N
    assert http_get(hp, "/say/after")[2] == b"after"


def test_app_refusing_an_upload_is_heard_over_the_uwsgi_protocol(both):
    _, up = both.ports
    packet = uwsgi_packet([(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/deny"),
                           (b"REQUEST_URI", b"/deny"), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
                           (b"CONTENT_LENGTH", str(len(BODY)).encode())]) + BODY
    got = [strict_exchange(up, packet) for _ in range(N)]
    ok = [g is not None and g.startswith(b"HTTP/1.1 403 ") and g.endswith(b"denied\n") for g in got]
    assert sum(ok) == N, f"{sum(ok)} of {N}"


def test_app_refusing_an_upload_is_heard_through_nginx(serve, nginx, tmp_path):
    """nginx sends the body to the uwsgi socket after reading it whole; a
    reset while it writes is a 502 (`writev() failed (32: Broken pipe)`):
    2 of 20 got the 403 before (0 of 20 for the streamed one); now 20 of 20."""
    port, sock = nginx
    serve(["--socket", str(sock), "--wsgi-file", APP, "--processes", "1", "--threads", "2"])
    for path in ("/deny", "/deny?stream=1"):
        got = [http_client_post(port, path, BODY) for _ in range(N)]
        assert got == [(403, b"denied\n")] * N, (path, [g[0] for g in got])
    errors = (tmp_path / "nginx-error.log").read_text()
    assert "failed" not in errors, errors[-2000:]


def big_head(n):
    return b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * n + b"\r\n\r\n"


@pytest.mark.parametrize("name,request_bytes,status", [
    ("431: a 1 MiB header", big_head(1 << 20), 431),
    ("414: a 1 MiB URI", b"GET /" + b"u" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("400: Transfer-Encoding gzip and a 2 MB body",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + BODY, 400),
    ("413: a 2 MB body over --limit-post",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY, 413),
])
def test_error_before_the_request_is_read_is_heard(serve, name, request_bytes, status):
    """The server's own early errors reach a client that sends everything
    before reading (0 of 20 for the 400 with http.client before)."""
    port = free_port()
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--threads", "2",
           "--limit-post", "1000"])
    got = [strict_exchange(port, request_bytes) for _ in range(N)]
    ok = [g is not None and g.startswith(b"HTTP/1.1 %d " % status)
          and b"Connection: close" in g for g in got]
    assert sum(ok) == N, f"{name}: {sum(ok)} of {N}"


def test_lingering_holds_no_core_and_ends_after_socket_timeout(serve):
    """Clients that announce a huge body, get refused, and then neither send
    nor close: they hold no request thread (a normal request is served at
    once) and are closed after --socket-timeout of silence."""
    port = free_port()
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--threads", "2",
           "--socket-timeout", "2"])
    stalled = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /deny HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1000)
        stalled.append(s)
    for s in stalled:
        head = s.recv(65536)
        assert head.startswith(b"HTTP/1.1 403 "), head
    t0 = time.monotonic()
    assert http_get(port, "/say/free", timeout=5)[2] == b"free"
    assert time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    for s in stalled:
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass  # closed with the announced body still unread: expected
        s.close()
    assert time.monotonic() - t0 < 6.0


def test_expect_100_continue_refused_without_100_and_closed(serve):
    """A client that waits for 100 Continue and is refused gets the final
    response alone (no 100 after it) and the connection closes."""
    port = free_port()
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP])
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"POST /deny?stream=1 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5000000\r\n\r\n")
        got = b""
        t0 = time.monotonic()
        while True:
            b = s.recv(65536)
            if not b:
                break  # the server closed its side after the response
            got += b
        assert got.startswith(b"HTTP/1.1 403 "), got
        assert b"100 Continue" not in got, got
        assert time.monotonic() - t0 < 2.0
    finally:
        s.close()
