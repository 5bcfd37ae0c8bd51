"""HTTP/1.x behaviour of the --http listener, seen from real clients."""

import hashlib
import http.client
import json
import os
import resource
import socket
import subprocess
import threading
import time

import pytest

from conftest import APPS, free_port, http_get, raw_request, running
from helpers import start_app

ECHO = str(APPS / "core_echo.py")


def start_echo(serve, port, *extra, **kw):
    return start_app(serve, port, ECHO, *extra, **kw)


@pytest.fixture(scope="module")
def echo_port(tmp_path_factory):
    """The port of one echo server (2 workers x 4 threads, default limits)
    shared by the tests that need nothing else: they only send requests."""
    port = free_port()
    with running(["--http", f"127.0.0.1:{port}", "--wsgi-file", ECHO, "--master",
                  "--processes", "2", "--threads", "4"],
                 tmp_path_factory.mktemp("http_echo"), workers=2):
        yield port


class RawResponse:
    def __init__(self, status_line, headers, body, raw_head):
        self.status_line = status_line
        self.status = int(status_line.split()[1])
        self.headers = headers
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


def read_response(f, head_request=False):
    """Read one HTTP response from a buffered socket file."""
    raw_head = b""
    status_line = f.readline()
    raw_head += status_line
    if not status_line:
        raise ConnectionError("connection closed before a status line")
    headers = []
    while True:
        line = f.readline()
        raw_head += line
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    resp = RawResponse(status_line.decode("latin-1").strip(), headers, b"", raw_head)
    if head_request or resp.status in (100, 204, 304):
        return resp
    te = resp.header("Transfer-Encoding")
    cl = resp.header("Content-Length")
    if te and "chunked" in te.lower():
        body = b""
        while True:
            size_line = f.readline()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b""):
                    pass
                break
            body += f.read(size)
            assert f.read(2) == b"\r\n"
        resp.body = body
    elif cl is not None:
        resp.body = f.read(int(cl))
    else:
        resp.body = f.read()
    return resp


def connect(port, timeout=5.0, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=timeout)
    return s, s.makefile("rb")


def is_closed(sock, wait=3.0):
    """True when the peer closed the connection (EOF) within `wait` s."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


# ---------------------------------------------------------------- keep-alive

def test_keepalive_several_requests_one_connection(echo_port):
    port = echo_port
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    remote_ports = set()
    local_ports = set()
    for i in range(6):
        c.request("GET", "/pid")
        r = c.getresponse()
        assert r.status == 200
        assert r.getheader("Connection", "").lower() != "close"
        data = json.loads(r.read())
        remote_ports.add(data["remote_port"])
        local_ports.add(c.sock.getsockname()[1])
    c.close()
    # One client socket, and the server saw one peer address for all requests.
    assert len(local_ports) == 1
    assert remote_ports == {str(next(iter(local_ports)))}


def test_pipelining_three_requests_in_one_send(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        reqs = b"".join(
            b"GET /say/%s HTTP/1.1\r\nHost: x\r\n\r\n" % w for w in (b"one", b"two", b"three"))
        s.sendall(reqs)
        bodies = [read_response(f).body for _ in range(3)]
        assert bodies == [b"one", b"two", b"three"]
        # The connection is still usable afterwards.
        s.sendall(b"GET /say/four HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f).body == b"four"
    finally:
        s.close()


def test_back_to_back_keepalive_requests_are_never_left_waiting(echo_port):
    # Connections are parked edge-triggered without a system call: a
    # request that arrives while a core still owns its connection (the
    # next one pipelined, or sent the moment the response is read, or a
    # head in two pieces, or the next request while the app runs) must be
    # served, not left for the keep-alive timeout. 8 clients x 300
    # exchanges, each answered within 3 s.
    port = echo_port
    errors = []

    def client(n):
        s, f = connect(port, timeout=3)
        try:
            for i in range(300):
                want = [b"c%d-%d" % (n, i)]
                req = b"GET /say/%s HTTP/1.1\r\nHost: x\r\n\r\n" % want[0]
                if i % 4 == 0:
                    want.append(want[0] + b"b")
                    s.sendall(req + b"GET /say/%s HTTP/1.1\r\nHost: x\r\n\r\n" % want[1])
                elif i % 4 == 1:
                    s.sendall(req[:9])
                    s.sendall(req[9:])
                elif i % 4 == 2:
                    s.sendall(req)
                else:
                    # The next request comes while the app holds the core
                    # (longer than the 1 ms after which another core polls,
                    # sees its edge and finds the connection owned).
                    s.sendall(b"GET /sleep?s=0.005 HTTP/1.1\r\nHost: x\r\n\r\n")
                    time.sleep(0.002)
                    s.sendall(req)
                    want.insert(0, None)
                got = [read_response(f).body for _ in want]
                if want[0] is None:
                    got[0] = None
                assert got == want, (got, want)
        except Exception as e:  # noqa: BLE001 (reported below, with the client)
            errors.append((n, repr(e)))
        finally:
            f.close()
            s.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client is still waiting"
    assert not errors, errors[:3]


def test_http10_closes_by_default(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        s.sendall(b"GET /say/ten HTTP/1.0\r\n\r\n")
        r = read_response(f)
        assert r.status == 200
        assert r.body == b"ten"
        assert r.status_line.startswith("HTTP/1.")
        assert is_closed(s), "HTTP/1.0 without keep-alive must be closed by the server"
    finally:
        s.close()


def test_http10_keepalive_when_asked(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        for w in (b"a", b"b", b"c"):
            s.sendall(b"GET /say/%s HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % w)
            r = read_response(f)
            assert r.status == 200 and r.body == w
            assert (r.header("Connection") or "").lower() == "keep-alive"
    finally:
        s.close()


def test_http11_connection_close_honoured(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        s.sendall(b"GET /say/bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = read_response(f)
        assert r.body == b"bye"
        assert is_closed(s)
    finally:
        s.close()


def test_head_has_content_length_and_no_body(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        s.sendall(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f, head_request=True)
        assert r.status == 200
        assert r.header("Content-Length") == "10"
        # No body: the next bytes on the connection are the next response.
        s.sendall(b"GET /say/after-head HTTP/1.1\r\nHost: x\r\n\r\n")
        r2 = read_response(f)
        assert r2.status == 200 and r2.body == b"after-head"
    finally:
        s.close()


# ---------------------------------------------------------------- request bodies

def test_chunked_request_body_is_decoded(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n"
                  b"1;ext=1\r\n \r\n"
                  b"A\r\n0123456789\r\n"
                  b"0\r\nX-Trailer: t\r\n\r\n")
        r = read_response(f)
        assert r.status == 200
        assert r.body == b"hello 0123456789"
        # Keep-alive still works after a chunked body.
        s.sendall(b"GET /say/next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f).body == b"next"
    finally:
        s.close()


def test_chunked_10mb_upload_streamed(echo_port):
    port = echo_port
    block = os.urandom(65536 + 17)
    total = 10 * 1024 * 1024
    h = hashlib.sha256()
    pieces = []
    sent = 0
    while sent < total:
        p = block[: min(len(block), total - sent)]
        pieces.append(p)
        h.update(p)
        sent += len(p)

    def gen():
        yield from pieces

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/sha", body=gen(), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    assert r.status == 200
    assert data["length"] == total
    assert data["sha256"] == h.hexdigest()
    assert data["biggest_read"] <= 65536


def test_content_length_body_10mb(echo_port):
    port = echo_port
    body = os.urandom(10 * 1024 * 1024)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/sha", body=body)
    r = c.getresponse()
    data = json.loads(r.read())
    c.close()
    assert r.status == 200
    assert data == {"sha256": hashlib.sha256(body).hexdigest(), "length": len(body),
                    "biggest_read": 65536}


def test_expect_100_continue(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        s.settimeout(3)
        interim = b""
        while b"\r\n\r\n" not in interim:
            b = s.recv(1)
            assert b, "connection closed while waiting for 100 Continue"
            interim += b
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        s.sendall(b"hello world")
        r = read_response(f)
        assert r.status == 200
        assert r.body == b"hello world"
    finally:
        s.close()


# ---------------------------------------------------------------- responses

def test_chunked_response_without_content_length(echo_port):
    port = echo_port
    s, f = connect(port)
    try:
        s.sendall(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f)
        assert r.status == 200
        assert (r.header("Transfer-Encoding") or "").lower() == "chunked", r.raw_head
        assert r.header("Content-Length") is None
        # An empty yielded string must not end the body early.
        assert r.body == b"hello chunked world"
        s.sendall(b"GET /say/again HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f).body == b"again"
    finally:
        s.close()


def test_http10_response_without_content_length_is_delimited_by_close(echo_port):
    port = echo_port
    data = raw_request(port, b"GET /chunked HTTP/1.0\r\n\r\n", timeout=5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0]
    assert b"chunked" not in head.lower()
    assert body == b"hello chunked world"


def test_streaming_is_flushed_as_produced(echo_port):
    port = echo_port
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        t0 = time.monotonic()
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        t_first = t_second = None
        while t_second is None:
            b = s.recv(65536)
            assert b, "closed early"
            buf += b
            now = time.monotonic()
            if t_first is None and b"first" in buf:
                t_first = now
            if b"second" in buf:
                t_second = now
        assert t_first is not None
        assert t_first - t0 < 0.6, f"first chunk took {t_first - t0:.2f}s"
        assert t_second - t_first > 0.7, "first chunk was held back until the second"
    finally:
        s.close()


# ---------------------------------------------------------------- errors

REFUSED = [
    ("malformed request line", b"THIS IS NOT HTTP\r\n\r\n", 400),
    ("headers over --buffer-size",
     b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
    ("Content-Length and Transfer-Encoding",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    # RFC 9112 6.3: chunked not the final coding -> 400 and close (was 501);
    # chunked last but behind a coding the server does not decode -> 501.
    ("Transfer-Encoding not ending in chunked",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunked behind another coding",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 501),
    ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
]


@pytest.mark.parametrize("name,request_bytes,status", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_request_is_answered_and_closed_then_server_still_serves(
        echo_port, name, request_bytes, status):
    s, f = connect(echo_port)
    try:
        s.sendall(request_bytes)
        r = read_response(f)
        assert r.status == status, name
        assert (r.header("Connection") or "").lower() == "close"
        assert is_closed(s)
    finally:
        s.close()
    status, _, body = http_get(echo_port, "/say/fine")
    assert (status, body) == (200, b"fine")


def test_buffer_size_raises_header_limit(serve, port):
    start_echo(serve, port, "--buffer-size", "32768")
    status, _, body = http_get(port, "/env", headers={"X-Big": "b" * 20000})
    assert status == 200
    assert json.loads(body)["values"]["HTTP_X_BIG"] == "b" * 20000
    s, f = connect(port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"c" * 40000 + b"\r\n\r\n")
        assert read_response(f).status == 431
    finally:
        s.close()


def test_limit_post_413(serve, port):
    start_echo(serve, port, "--limit-post", "1000")
    s, f = connect(port)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"z" * 5000)
        r = read_response(f)
        assert r.status == 413
        assert (r.header("Connection") or "").lower() == "close"
    finally:
        s.close()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("POST", "/echo", body=b"y" * 1000)
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"y" * 1000
    c.close()


# ---------------------------------------------------------------- other listeners

def test_ipv6_listener(serve):
    port = free_port()
    serve(["--http", f"[::1]:{port}", "--wsgi-file", ECHO, "--master",
           "--processes", "1", "--threads", "2"])
    status, _, body = http_get(port, "/env", host="::1")
    assert status == 200
    values = json.loads(body)["values"]
    assert values["REMOTE_ADDR"] == "::1"
    assert values["SERVER_PORT"] == str(port)


def test_unix_socket_listener_with_curl(serve, tmp_path):
    sock = tmp_path / "x.sock"
    serve(["--http", str(sock), "--wsgi-file", ECHO, "--master",
           "--processes", "1", "--threads", "2"])
    assert sock.exists()
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--unix-socket", str(sock),
         "-H", "X-Custom: via-unix", "http://localhost/env/unix?q=1"],
        capture_output=True, timeout=15)
    assert out.returncode == 0, out.stderr
    values = json.loads(out.stdout)["values"]
    assert values["PATH_INFO"] == "/env/unix"
    assert values["QUERY_STRING"] == "q=1"
    assert values["HTTP_X_CUSTOM"] == "via-unix"
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--unix-socket", str(sock),
         "--data-binary", "posted-over-unix", "http://localhost/echo"],
        capture_output=True, timeout=15)
    assert out.returncode == 0 and out.stdout == b"posted-over-unix"


# ---------------------------------------------------------------- idle connections

@pytest.mark.serial  # loads the machine, or asserts a latency
def test_1000_idle_keepalive_connections_do_not_block_new_clients(serve, port):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    start_echo(serve, port, "--socket-timeout", "60", "--listen", "1024")
    held = []
    try:
        # 500 connections that made one request and now sit idle in keep-alive,
        for i in range(500):
            s, f = connect(port, timeout=10)
            held.append((s, f))
            s.sendall(b"GET /say/k HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(f).body == b"k"
        # and 500 that connected and never sent anything.
        for i in range(500):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append((s, None))
        time.sleep(0.3)
        t0 = time.monotonic()
        status, _, body = http_get(port, "/say/fresh", timeout=5)
        elapsed = time.monotonic() - t0
        assert status == 200 and body == b"fresh"
        assert elapsed < 2.0, f"new client waited {elapsed:.2f}s"
        # The idle keep-alive connections are still alive and usable.
        for s, f in held[:500:50]:
            s.sendall(b"GET /say/still HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(f).body == b"still"
    finally:
        for s, f in held:
            if f is not None:
                f.close()
            s.close()
