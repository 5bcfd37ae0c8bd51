"""Slow request bodies wait in the poller, not in a request thread: a
complete head whose Content-Length body (up to 64 KiB) has not all arrived
is parked like an incomplete head, and the app is called once the body is
there. Without --harakiri, clients that trickle their bodies used to hold
every core. Also: bodies split over many writes arrive whole and in order
(HTTP and the uwsgi protocol), a client that stalls mid-body is cut by
--socket-timeout, `Expect: 100-continue` gets its 100 before the body is
awaited, and a reload does not lose a body on its way."""

import signal
import socket
import struct
import threading
import time

import pytest

from conftest import APPS, free_port, http_get
from helpers import wait_port

APP = str(APPS / "rel_app.py")


@pytest.fixture
def body_srv(serve):
    def start(threads=2, timeout=4, proto="http", extra=()):
        port = free_port()
        flag = "--http" if proto == "http" else "--socket"
        srv = serve([flag, f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                     "--processes", "1", "--threads", str(threads),
                     "--socket-timeout", str(timeout), *extra])
        srv.port = port
        if proto != "http":
            wait_port(port)
        return srv
    return start


def connect(port, timeout=15):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def echo_head(length, extra=b""):
    return (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n"
            % (length, extra))


_leftover = {}


def _recv(s):
    chunk = s.recv(65536)
    if not chunk:
        raise AssertionError("closed before the whole response")
    return chunk


def read_head(s, data=b""):
    """Read up to the end of a response head: (head, what came after it)."""
    while b"\r\n\r\n" not in data:
        data += _recv(s)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def read_response(s):
    """The next HTTP response with a Content-Length body on `s`: (status,
    body). What came after it (a pipelined response) is kept for the next
    call."""
    head, rest = read_head(s, _leftover.pop(s.fileno(), b""))
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        rest += _recv(s)
    if len(rest) > length:
        _leftover[s.fileno()] = rest[length:]
    return status, Body(rest[:length])


class Body(bytes):
    """Response bytes that compare as bytes and print short (a mismatch
    of a 200 KB body is not 200 KB of log)."""

    def __repr__(self):
        import hashlib
        return f"<{len(self)} bytes, sha1 {hashlib.sha1(self).hexdigest()[:12]}, {bytes(self[:24])!r}...>"


def timed(f):
    t0 = time.monotonic()
    out = f()
    return out, time.monotonic() - t0


def normal_post(port, body=b"normal-body"):
    s = connect(port, timeout=10)
    try:
        s.sendall(echo_head(len(body)) + body)
        return read_response(s)
    finally:
        s.close()


def uwsgi_packet(pairs):
    block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                     for k, v in pairs)
    return struct.pack("<BHB", 0, len(block), 0) + block


def uwsgi_echo(length):
    return uwsgi_packet([(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/echo"),
                         (b"REQUEST_URI", b"/echo"), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
                         (b"CONTENT_LENGTH", str(length).encode())])


def read_uwsgi_response(s):
    """A response to a uwsgi request: the server closes after it."""
    data = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b"\r\n")[0].split()[1]), Body(body)


@pytest.mark.serial  # asserts a latency
def test_slow_bodies_do_not_hold_the_cores(body_srv):
    """2 cores, no harakiri, 6 clients that send a head and then one body
    byte every 0.5 s: a normal GET and a normal POST are answered within
    2 s meanwhile, and each slow client gets its own body back once it is
    all sent. (Before the bodies were awaited in the poller, the slow
    clients took both cores for 4 s each.)"""
    srv = body_srv(threads=2)
    port = srv.port
    bodies = [b"slow-%d-" % i + b"x" * 2 for i in range(6)]  # 8 bytes: 4 s each
    slow = []
    stop = threading.Event()
    errors = []

    def trickle():
        try:
            for i in range(len(bodies[0])):
                if stop.wait(0.5):
                    return
                for s, body in zip(slow, bodies):
                    s.sendall(body[i:i + 1])
        except OSError as e:
            errors.append(repr(e))

    try:
        for body in bodies:
            s = connect(port)
            s.sendall(echo_head(len(body)))
            slow.append(s)
        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        time.sleep(0.7)  # every slow client is mid-body now
        (status, _, body), took = timed(lambda: http_get(port, "/say/fresh", timeout=10))
        assert (status, body) == (200, b"fresh")
        assert took < 2.0, f"a normal GET waited {took:.2f} s behind slow bodies"
        (status, body), took = timed(lambda: normal_post(port))
        assert (status, body) == (200, b"normal-body")
        assert took < 2.0, f"a normal POST waited {took:.2f} s behind slow bodies"
        t.join(15)
        assert errors == []
        for s, sent in zip(slow, bodies):
            assert read_response(s) == (200, sent)
        assert srv.proc.poll() is None
    finally:
        stop.set()
        for s in slow:
            s.close()


@pytest.mark.parametrize("size", [3000, 60_000, 200_000])
def test_a_body_in_many_small_writes_arrives_whole_and_in_order_http(body_srv, size):
    """A body written a few bytes at a time (awaited in the poller up to
    64 KiB, also past the 4 KiB head buffer; streamed to the app above),
    and a pipelined request right behind its last byte: both answered, in
    order, byte for byte."""
    srv = body_srv(threads=1)
    body = bytes(i * 7 % 251 for i in range(size))
    step = max(1, size // 150)
    s = connect(srv.port)
    try:
        s.sendall(echo_head(len(body)))
        pieces = [body[i:i + step] for i in range(0, len(body), step)]
        for piece in pieces[:-1]:
            s.sendall(piece)
            time.sleep(0.002)
        s.sendall(pieces[-1] + echo_head(4) + b"next")
        assert read_response(s) == (200, Body(body))
        assert read_response(s) == (200, b"next")
    finally:
        s.close()


@pytest.mark.parametrize("size", [3000, 60_000, 200_000])
def test_a_body_in_many_small_writes_arrives_whole_and_in_order_uwsgi(body_srv, size):
    srv = body_srv(threads=1, proto="uwsgi")
    body = bytes(i * 13 % 251 for i in range(size))
    step = max(1, size // 150)
    s = connect(srv.port)
    try:
        packet = uwsgi_echo(len(body))
        # The packet itself in two writes too, then the body in pieces.
        s.sendall(packet[:7])
        time.sleep(0.01)
        s.sendall(packet[7:])
        for i in range(0, len(body), step):
            s.sendall(body[i:i + step])
            time.sleep(0.002)
        assert read_uwsgi_response(s) == (200, Body(body))
    finally:
        s.close()


@pytest.mark.serial  # asserts a latency
def test_slow_uwsgi_bodies_do_not_hold_the_core(body_srv):
    """The uwsgi protocol (nginx with proxy_request_buffering off): a
    packet whose body trickles is awaited in the poller too."""
    srv = body_srv(threads=1, proto="uwsgi")
    slow = []
    try:
        for i in range(3):
            s = connect(srv.port)
            s.sendall(uwsgi_echo(4) + b"s%d" % i)
            slow.append(s)
        time.sleep(0.3)
        fast = connect(srv.port, timeout=10)
        (status, body), took = timed(lambda: (fast.sendall(uwsgi_echo(2) + b"ok"),
                                              read_uwsgi_response(fast))[1])
        fast.close()
        assert (status, body) == (200, b"ok")
        assert took < 2.0, f"a normal request waited {took:.2f} s"
        for i, s in enumerate(slow):
            s.sendall(b"!!")
            assert read_uwsgi_response(s) == (200, b"s%d!!" % i)
    finally:
        for s in slow:
            s.close()


@pytest.mark.serial  # asserts a latency
def test_a_client_that_stalls_mid_body_is_cut_by_the_socket_timeout(body_srv):
    """Head and 3 of 10 body bytes, then silence: the connection is closed
    after --socket-timeout (2 s) as a stalled head would be (and the lost
    request logged), no core waits for it meanwhile, and the worker keeps
    serving."""
    srv = body_srv(threads=1, timeout=2)
    s = connect(srv.port)
    try:
        t0 = time.monotonic()
        s.sendall(echo_head(10) + b"abc")
        time.sleep(0.2)
        (status, _, body), took = timed(lambda: http_get(srv.port, "/say/fresh", timeout=10))
        assert (status, body) == (200, b"fresh")
        assert took < 1.0, f"the only core waited {took:.2f} s for a stalled body"
        s.settimeout(8)
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
        waited = time.monotonic() - t0
        assert got == b"", f"answered a request whose body never came: {got!r}"
        assert 1.5 < waited < 5.0, f"closed after {waited:.2f} s with --socket-timeout 2"
    finally:
        s.close()
    srv.wait_log("POST /echo: request body not received (3 of 10 bytes")
    assert http_get(srv.port, "/say/after")[2] == b"after"
    assert srv.proc.poll() is None


@pytest.mark.serial  # asserts a latency
def test_expect_100_continue_is_answered_before_the_body_is_awaited(body_srv):
    """A client that sends `Expect: 100-continue` waits for the 100 before
    its body: it gets it at once (not after a timeout), sends the body
    slowly while the only core serves others, then gets one response (no
    second 100)."""
    srv = body_srv(threads=1)
    s = connect(srv.port)
    try:
        s.sendall(echo_head(6, b"Expect: 100-continue\r\n"))
        s.settimeout(3)
        assert read_head(s) == (b"HTTP/1.1 100 Continue", b""), "one 100, nothing else"
        s.sendall(b"abc")
        (status, _, body), took = timed(lambda: http_get(srv.port, "/say/fresh", timeout=10))
        assert (status, body) == (200, b"fresh")
        assert took < 1.0, f"the only core waited {took:.2f} s for a body"
        s.sendall(b"def")
        s.settimeout(10)
        assert read_response(s) == (200, b"abcdef")
    finally:
        s.close()


def test_a_body_on_its_way_during_a_reload_is_not_lost(body_srv):
    """A graceful reload (SIGHUP) while a client is mid-body: the stopping
    worker waits for the body (as for a request in flight, up to the
    reload mercy), serves the request, then exits; idle keep-alive clients
    get only a second of grace, and this body takes longer than that."""
    srv = body_srv(threads=1)
    s = connect(srv.port)
    body = b"reloaded"
    try:
        s.sendall(echo_head(len(body)) + body[:1])
        time.sleep(0.3)
        srv.proc.send_signal(signal.SIGHUP)
        for i in range(1, len(body)):
            time.sleep(0.3)
            s.sendall(body[i:i + 1])
        s.settimeout(10)
        assert read_response(s) == (200, body)
    finally:
        s.close()
    assert http_get(srv.port, "/say/after", timeout=15)[2] == b"after"
