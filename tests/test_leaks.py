"""Nothing leaks between requests: the worker caches environ value strs by
position (reused when a value's bytes equal the last one's at that
position), keeps start_response's status and header buffers from request
to request, and reuses start_response and wsgi.input when the app kept
nothing of them. Several keep-alive clients (and uwsgi-protocol clients)
interleave requests whose values differ by one byte, in length, in
latin-1 bytes above 127, in header count (past the 64 cached positions)
and order; every response must be exactly its own request's."""

import json
import random
import socket
import struct
import threading

import pytest

from conftest import APPS, free_port, running
from helpers import wait_port

APP = str(APPS / "leak_echo.py")


class Conn:
    """A keep-alive client speaking raw bytes (so header values can be any
    latin-1 byte) that reads responses framed by Content-Length or chunked."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _more(self):
        data = self.sock.recv(65536)
        assert data, f"connection closed; unread: {self.buf!r}"
        self.buf += data

    def _until(self, sep):
        while sep not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(sep)
        return line

    def _exactly(self, n):
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def request(self, raw):
        self.sock.sendall(raw)
        return self.response()

    def response(self):
        head = self._until(b"\r\n\r\n").split(b"\r\n")
        status = head[0]
        headers = [tuple(h.split(b": ", 1)) for h in head[1:]]
        lengths = [v for k, v in headers if k.lower() == b"content-length"]
        if lengths:
            body = self._exactly(int(lengths[0]))
        else:
            assert (b"Transfer-Encoding", b"chunked") in headers, head
            body = b""
            while True:
                n = int(self._until(b"\r\n"), 16)
                body += self._exactly(n)
                assert self._exactly(2) == b"\r\n"
                if n == 0:
                    break
        return status, headers, body

    def closed(self):
        """The server closed the connection after the responses read."""
        extra = self.buf + read_all(self.sock)
        assert extra == b"", f"stray bytes before the close: {extra!r}"

    def nothing_more(self):
        """Nothing was sent past the responses read (no stray bytes)."""
        self.sock.settimeout(0.3)
        try:
            extra = self.sock.recv(65536)
        except socket.timeout:
            extra = b""
        finally:
            self.sock.settimeout(10)
        assert self.buf + extra == b"", f"stray bytes after the responses: {self.buf + extra!r}"


def cgi(name):
    name = name.upper().replace("-", "_")
    return name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name


def unquote_latin1(path):
    out, i = bytearray(), 0
    while i < len(path):
        if path[i:i + 1] == b"%" and len(path) >= i + 3:
            out.append(int(path[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(path[i])
            i += 1
    return bytes(out).decode("latin-1")


def variant(rng, client, i, raising=True):
    """One request of `client`: (raw bytes, expected environ items,
    expected X-R headers, exc_info tag or None). Positions keep most
    values from one request to the next, changed by one byte, in length,
    in latin-1 bytes, in count and order."""
    tag = f"c{client}r{i}"
    path = rng.choice([b"/same/path", b"/same/patH", b"/same/path/longer",
                       b"/caf%E9/%41b", b"/caf\xe9/Ab", b"/" + tag.encode()])
    query = rng.choice([b"", b"q=1", b"q=2", b"q=1&" + tag.encode()])
    target = path + (b"?" + query if query else b"")
    headers = [(b"Host", rng.choice([b"h1", b"h2", b"h1.longer"])),
               (b"User-Agent", rng.choice([b"ua-A", b"ua-B", b"ua-AB", tag.encode()])),
               (b"X-Latin", rng.choice([b"caf\xe9", b"caf\xe8", b"cafe", b"caf\xe9\xff"]))]
    if rng.random() < 0.5:
        headers += [(b"Cookie", b"a=" + tag.encode()), (b"X-Mid", b"m"),
                    (b"Cookie", rng.choice([b"b=2", b"b=3"]))]
    if rng.random() < 0.5:
        headers += [(b"X-Rep", b"1"), (b"X-Rep", rng.choice([b"2", b"22"]))]
    if rng.random() < 0.3:
        # Past the 64 cached value positions (and the 32 on the stack).
        headers += [(b"X-Many-%d" % j, b"v%d-%s" % (j, tag.encode())) for j in range(70)]
        headers.append((b"X-Rep", b"last"))
    order = headers[1:]
    rng.shuffle(order)
    headers = headers[:1] + order
    resp_count = rng.choice([0, 1, 3, 7])
    headers.append((b"X-Resp", b"%d:%s" % (resp_count, tag.encode())))
    if raising and rng.random() < 0.08:
        headers.append((b"X-Raise", b"1"))
    exc = rng.random() < 0.2
    if exc:
        headers.append((b"X-Exc", tag.encode()))
    elif rng.random() < 0.2:
        headers.append((b"X-Bad-First", b"1"))
    if rng.random() < 0.3:
        # Busy threads: the other clients' requests go to the others, so
        # every thread's caches see every client's values.
        headers.append((b"X-Slow", b"1"))
    body = b""
    if rng.random() < 0.4:
        body = rng.choice([b"body-" + tag.encode(), b"x", b"\xe9" * rng.randint(1, 50)])
        headers += [(b"Content-Type", b"text/plain"), (b"Content-Length", b"%d" % len(body))]
    expected = {"PATH_INFO": unquote_latin1(path), "QUERY_STRING": query.decode(),
                "REQUEST_URI": target.decode("latin-1"), "REQUEST_METHOD": "POST" if body else "GET",
                "body": body.decode("latin-1")}
    for name, value in headers:
        key = cgi(name.decode())
        value = value.decode("latin-1")
        if key in expected:
            expected[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            expected[key] = value
    raw = b"%s %s HTTP/1.1\r\n" % (b"POST" if body else b"GET", target)
    raw += b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n" + body
    resp = [(b"X-R%d" % j, b"%s-%d" % (tag.encode(), j)) for j in range(resp_count)]
    return raw, expected, resp, exc


def check_echo(echo, expected, what):
    got = {k: v for k, v in echo.items()
           if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")}
    want = {k: v for k, v in expected.items()
            if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")}
    assert got == want, what
    for key in ("PATH_INFO", "QUERY_STRING", "REQUEST_URI", "REQUEST_METHOD", "body"):
        assert echo[key] == expected[key], (what, key)


def check_http_response(resp, want_headers, exc, what):
    """The echo of a response with exactly the headers asked for; None for
    the 500 of a request whose app raised (the connection then closes)."""
    status, headers, body = resp
    if status == b"HTTP/1.1 500 Internal Server Error":
        assert b"X-Raise: 1" in what[-1], what
        own = [(k, v) for k, v in headers if k.lower() not in (b"date", b"content-length")]
        assert own == [(b"Content-Type", b"text/plain"), (b"Connection", b"close")], what
        assert body == b"Internal Server Error\n", what
        return None
    assert status == (b"HTTP/1.1 203 Replaced" if exc else b"HTTP/1.1 200 OK"), what
    # Exactly this request's headers: none of an earlier call's (exc_info,
    # a refused first call) or request's; X-Secret removed (--del-header).
    own = [(k, v) for k, v in headers if k.lower() not in (b"date", b"content-length")]
    assert own == [(b"Content-Type", b"application/json")] + want_headers, what
    return json.loads(body)


def serve_app(tmp_path_factory, bind, *extra):
    """The app on a free port (`bind`: --http or --socket), 1 worker x 3
    threads, so several cores, each with its own caches, serve."""
    port = free_port()
    d = tmp_path_factory.mktemp("leaks")
    with running([bind, f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                  "--processes", "1", "--threads", "3", *extra], d) as srv:
        wait_port(port)
        srv.port = port
        yield srv


def run_clients(client, port, clients, rounds):
    """`client(port, c, rounds, errors, barrier)` in `clients` threads that
    start together; the first error a client met is raised here."""
    errors, barrier = [], threading.Barrier(clients)
    threads = [threading.Thread(target=client, args=(port, c, rounds, errors, barrier))
               for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def http_srv(tmp_path_factory):
    yield from serve_app(tmp_path_factory, "--http", "--del-header", "X-Secret")


def client_loop(port, client, rounds, errors, barrier):
    rng = random.Random(1000 + client)
    conn = Conn(port)
    try:
        barrier.wait(10)
        for i in range(rounds):
            raw, expected, want_headers, exc = variant(rng, client, i)
            what = (client, i, raw)
            echo = check_http_response(conn.request(raw), want_headers, exc, what)
            if echo is None:  # the app raised: 500, connection closed
                conn.closed()
                conn.close()
                conn = Conn(port)
                continue
            check_echo(echo, expected, what)
            local_port = conn.sock.getsockname()[1]
            assert echo["REMOTE_ADDR"] == "127.0.0.1" and echo["REMOTE_PORT"] == str(local_port)
        conn.nothing_more()
    except BaseException as e:  # reported by the test's thread
        errors.append(e)
    finally:
        conn.close()


def test_interleaved_keepalive_clients_each_get_only_their_own_values(http_srv):
    run_clients(client_loop, http_srv.port, clients=4, rounds=60)


def test_pipelined_requests_each_get_only_their_own_values(http_srv):
    # Several requests in one send: each is parsed from what the one
    # before left over, and answered in order with its own values.
    rng = random.Random(3000)
    conn = Conn(http_srv.port)
    try:
        for batch in range(6):
            # No 500s here: the close after one would reset the rest.
            reqs = [variant(rng, 9, batch * 10 + i, raising=False) for i in range(5)]
            conn.sock.sendall(b"".join(raw for raw, _, _, _ in reqs))
            for raw, expected, want_headers, exc in reqs:
                what = (batch, raw)
                check_echo(check_http_response(conn.response(), want_headers, exc, what),
                           expected, what)
        conn.nothing_more()
    finally:
        conn.close()


def test_one_connection_alternating_values_differing_by_one_byte(http_srv):
    # The same positions on one connection (one core), each value one byte
    # (or one character's width) away from the one before.
    conn = Conn(http_srv.port)
    try:
        for i in range(40):
            flip = i % 2
            host = b"h%d" % flip
            ua = b"caf\xe9" if flip else b"caf\xe8"
            path = b"/p/a" if flip else b"/p/b"
            query = b"x=1" if i % 3 else b"x=12"
            raw = (b"GET %s?%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\n"
                   b"X-Resp: %d:t%d\r\n\r\n" % (path, query, host, ua, flip * 2, i))
            status, headers, body = conn.request(raw)
            echo = json.loads(body)
            assert (echo["PATH_INFO"], echo["QUERY_STRING"], echo["HTTP_HOST"],
                    echo["HTTP_USER_AGENT"]) == (path.decode(), query.decode(), host.decode(),
                                                 ua.decode("latin-1")), i
            assert [h for h in headers if h[0].startswith(b"X-R")] == \
                [(b"X-R%d" % j, b"t%d-%d" % (i, j)) for j in range(flip * 2)], i
        conn.nothing_more()
    finally:
        conn.close()


def test_values_kept_by_the_app_stay_unchanged_and_its_old_write_sends_nothing(http_srv):
    # One connection: /keep stashes its environ strs, start_response and
    # write; the requests after it reuse the same positions with other
    # bytes (and equal ones), then /check looks at the stash.
    conn = Conn(http_srv.port)
    try:
        status, _, body = conn.request(
            b"GET /keep?k=1 HTTP/1.1\r\nHost: keep\r\nUser-Agent: caf\xe9\r\nCookie: a=1\r\n\r\n")
        assert (status, body) == (b"HTTP/1.1 200 OK", b"kept;streamed")
        for raw in (b"GET /keeq?k=2 HTTP/1.1\r\nHost: keeq\r\nUser-Agent: caf\xe8\r\n\r\n",
                    b"GET /kee?k=1 HTTP/1.1\r\nHost: keep\r\nUser-Agent: caf\xe9\r\nCookie: a=1\r\n\r\n"):
            status, _, body = conn.request(raw)
            assert status == b"HTTP/1.1 200 OK"
            json.loads(body)
        status, headers, body = conn.request(b"GET /check HTTP/1.1\r\nHost: keep\r\n\r\n")
        assert status == b"HTTP/1.1 200 OK", body
        # The stashed write belongs to /keep's response, long finished: it
        # must not put a byte on the wire (it would land in this response or
        # in another client's connection that got the same descriptor).
        assert json.loads(body) == {"changed": [], "old_write": "ValueError", "same_sr": False}
        status, _, body = conn.request(b"GET /after HTTP/1.1\r\nHost: keep\r\n\r\n")
        assert status == b"HTTP/1.1 200 OK" and json.loads(body)["PATH_INFO"] == "/after"
        conn.nothing_more()
    finally:
        conn.close()


# ---------------------------------------------------------------- uwsgi protocol

def uwsgi_packet(pairs):
    block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in pairs)
    return struct.pack("<BHB", 0, len(block), 0) + block


def read_all(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@pytest.fixture(scope="module")
def uwsgi_srv(tmp_path_factory):
    yield from serve_app(tmp_path_factory, "--socket")


def uwsgi_variant(rng, client, i):
    tag = b"u%dr%d" % (client, i)
    pairs = [(b"REQUEST_METHOD", b"GET"),
             (b"PATH_INFO", rng.choice([b"/same", b"/samE", b"/same/longer", b"/caf\xe9", b"/" + tag])),
             (b"QUERY_STRING", rng.choice([b"", b"q=1", b"q=2", tag])),
             (b"REQUEST_URI", rng.choice([b"/same", b"/samf", b"/" + tag])),
             (b"SERVER_PROTOCOL", b"HTTP/1.1"),
             (b"REMOTE_ADDR", rng.choice([b"10.0.0.1", b"10.0.0.2", b"10.0.0.10"])),
             (b"HTTP_HOST", rng.choice([b"h1", b"h2", b"h1.longer"])),
             (b"HTTP_USER_AGENT", rng.choice([b"ua-A", b"ua-B", b"caf\xe9", b"caf\xe8", tag])),
             (b"HTTP_X_RESP", b"%d:%s" % (rng.choice([0, 2, 5]), tag))]
    if rng.random() < 0.3:
        pairs.append((b"HTTP_X_SLOW", b"1"))
    if rng.random() < 0.3:
        pairs += [(b"HTTP_X_MANY_%d" % j, b"v%d-%s" % (j, tag)) for j in range(70)]
    if rng.random() < 0.5:
        pairs.append((b"HTTP_X_OPTIONAL", rng.choice([b"o", b"oo", b"\xff"])))
    rng.shuffle(pairs)  # a proxy's order: the positions' values move
    return pairs


def uwsgi_client(port, client, rounds, errors, barrier):
    rng = random.Random(2000 + client)
    try:
        barrier.wait(10)
        for i in range(rounds):
            pairs = uwsgi_variant(rng, client, i)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(uwsgi_packet(pairs))
                raw = read_all(s)
            head, _, body = raw.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            what = (client, i, pairs)
            assert lines[0] == b"HTTP/1.1 200 OK", what
            sent = dict(pairs)
            count, _, tag = sent[b"HTTP_X_RESP"].partition(b":")
            resp = [tuple(h.split(b": ", 1)) for h in lines[1:]]
            assert [h for h in resp if h[0].startswith(b"X-R")] == \
                [(b"X-R%d" % j, b"%s-%d" % (tag, j)) for j in range(int(count))], what
            echo = json.loads(body)
            got = {k: v for k, v in echo.items() if k.startswith("HTTP_") or k.isupper()}
            want = {k.decode(): v.decode("latin-1") for k, v in pairs}
            assert {k: got.get(k) for k in want} == want, what
            assert sorted(k for k in got if k.startswith("HTTP_")) == \
                sorted(k for k in want if k.startswith("HTTP_")), what
    except BaseException as e:
        errors.append(e)


def test_interleaved_uwsgi_clients_each_get_only_their_own_vars(uwsgi_srv):
    run_clients(uwsgi_client, uwsgi_srv.port, clients=4, rounds=40)
