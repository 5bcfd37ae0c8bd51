"""Hostile and broken input: every case gets a clean error (or a cleanly cut
response), an error in the log, and the worker keeps serving.

Covers malformed HTTP/1.1, broken uwsgi packets, slow clients (slowloris,
clients that never read), misbehaving WSGI apps, and log injection."""

import json
import re
import socket
import struct
import threading
import time

import pytest

from conftest import APPS, Server, free_port, http_get
from helpers import exchange

APP = str(APPS / "rel_app.py")
LIMIT_POST = 1000


# ---------------------------------------------------------------- helpers



class Resp:
    def __init__(self, status_line, headers, body, complete):
        self.status_line = status_line
        parts = status_line.split(b" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        self.headers = headers
        self.body = body
        self.complete = complete

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status_line!r} {self.headers} body={self.body[:60]!r} complete={self.complete}>"


def parse_responses(data):
    """Split raw bytes into HTTP responses; the last may be incomplete."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            out.append(Resp(head.split(b"\r\n")[0], [], b"", False))
            break
        lines = head.split(b"\r\n")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
        r = Resp(lines[0], headers, b"", True)
        te = (r.header("Transfer-Encoding") or "").lower()
        cl = r.header("Content-Length")
        if "chunked" in te:
            body = b""
            complete = False
            while True:
                line, sep, after = rest.partition(b"\r\n")
                if not sep:
                    break
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    if after.startswith(b"\r\n"):
                        complete = True
                        rest = after[2:]
                    else:
                        rest = b""
                    break
                if len(after) < size + 2:
                    body += after[:size]
                    rest = b""
                    break
                body += after[:size]
                rest = after[size + 2:]
            r.body, r.complete = body, complete
            data = rest if complete else b""
        elif cl is not None:
            n = int(cl)
            r.body, r.complete = rest[:n], len(rest) >= n
            data = rest[n:]
        else:
            r.body = rest
            data = b""
        out.append(r)
    return out


def one_response(port, data, **kw):
    raw, end = exchange(port, data, **kw)
    rs = parse_responses(raw)
    assert len(rs) == 1, (rs, raw[:300], end)
    return rs[0], end


def log_since(srv, mark):
    return srv.log[mark:]


def say_ok(port, word="ok"):
    status, _, body = http_get(port, f"/say/{word}", timeout=5)
    assert (status, body) == (200, word.encode())


def worker_pid(port):
    status, _, body = http_get(port, "/pid", timeout=5)
    assert status == 200
    return json.loads(body)["pid"]


def still_serving(srv, port, pid_before):
    """The next request works, on the same worker process (nothing crashed)."""
    say_ok(port, "next")
    assert worker_pid(port) == pid_before
    assert "DAMN" not in srv.log, srv.log[-3000:]


@pytest.fixture(scope="module")
def http_srv(tmp_path_factory):
    """One server for the whole table of HTTP cases: default --buffer-size
    (4096), --limit-post 1000, one worker with two threads."""
    d = tmp_path_factory.mktemp("hostile_http")
    port = free_port()
    srv = Server(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                  "--processes", "1", "--threads", "2", "--limit-post", str(LIMIT_POST)], d)
    try:
        srv.wait_ready()
        srv.port = port
        srv.pid = srv.worker_pids()[1]
        yield srv
    finally:
        srv.stop()


# ---------------------------------------------------------------- HTTP: refused

H = b"Host: x\r\n"
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) * 4


def _post_chunked(body):
    return b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def _post_cl(cl_lines, body=b"hello"):
    return (b"POST /echo HTTP/1.1\r\nHost: x\r\n" + b"".join(b"Content-Length: %s\r\n" % v for v in cl_lines)
            + b"\r\n" + body)


REFUSED = [
    # request line
    ("no target or version", b"GET\r\n\r\n", 400),
    ("two spaces after the method", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bad method token", b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("method with a non-ASCII byte", b"G\xc3\x89T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("TLS client hello on the plain port", TLS_HELLO, 400),
    ("HTTP/0.9 simple request", b"GET /\r\n", 400),
    ("malformed version", b"GET / HTTP/1.x\r\n" + H + b"\r\n", 400),
    ("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("version with trailing garbage", b"GET / HTTP/1.1 x\r\n" + H + b"\r\n", 400),
    ("HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("HTTP/3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505),
    ("control byte in the target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bare CR in the request line", b"GET /\r HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("bare LF line endings", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    # sizes
    ("URI over the limit (10,000 bytes)", b"GET /" + b"u" * 10000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("URI over the limit (70,000 bytes)", b"GET /" + b"u" * 70000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("one header line over --buffer-size", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
    ("header block over --buffer-size", b"GET / HTTP/1.1\r\n" + H
     + b"".join(b"X-H%02d: %s\r\n" % (i, b"v" * 70) for i in range(60)) + b"\r\n", 431),
    ("101 small headers", b"GET / HTTP/1.1\r\n" + H + b"".join(b"a%d:\r\n" % i for i in range(101)) + b"\r\n", 431),
    ("10,000 headers", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(10000)) + b"\r\n", 431),
    ("endless empty lines before the request", b"\r\n" * 3000, 431),
    # header syntax
    ("NUL in a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("CR in a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("LF in a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\nX-B: b\r\n\r\n", 400),
    ("DEL in a header value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n", 400),
    ("obsolete line folding", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n  folded\r\n\r\n", 400),
    ("obs-fold right after the request line", b"GET / HTTP/1.1\r\n folded\r\n" + H + b"\r\n", 400),
    ("space before the colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : v\r\n\r\n", 400),
    ("space inside a header name", b"GET / HTTP/1.1\r\n" + H + b"X A: v\r\n\r\n", 400),
    ("header line without a colon", b"GET / HTTP/1.1\r\n" + H + b"NoColonHere\r\n\r\n", 400),
    ("missing Host on HTTP/1.1", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two Content-Type headers",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\n"
     b"Content-Length: 5\r\n\r\nhello", 400),
    # Content-Length
    ("Content-Length with a plus sign", _post_cl([b"+5"]), 400),
    ("Content-Length with a minus sign", _post_cl([b"-5"]), 400),
    ("Content-Length with an inner space", _post_cl([b"1 5"]), 400),
    ("Content-Length in hex", _post_cl([b"0x5"]), 400),
    ("Content-Length empty", _post_cl([b""]), 400),
    ("Content-Length that overflows 64 bits", _post_cl([b"99999999999999999999999"]), 400),
    ("duplicate Content-Length that disagree", _post_cl([b"5", b"6"], b"hello!"), 400),
    ("Content-Length list that disagrees", _post_cl([b"5, 6"], b"hello!"), 400),
    ("Content-Length with Transfer-Encoding",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding with Content-Length after it",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400),
    # Transfer-Encoding
    # chunked not the final coding: the length is unknowable, 400 and close
    # (RFC 9112 6.3 MUST); chunked last behind a coding not decoded here: 501.
    ("Transfer-Encoding gzip", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxx", 400),
    ("Transfer-Encoding chunked, gzip",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding chunked then gzip in two fields",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding gzip, chunked",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
    ("Transfer-Encoding identity", b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    ("Transfer-Encoding chunked twice",
     b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding on HTTP/1.0",
     b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    # chunked bodies
    ("chunk size not hex", _post_chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size negative", _post_chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size with 0x prefix", _post_chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size with 17 hex digits", _post_chunked(b"0" * 16 + b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size line empty", _post_chunked(b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk shorter than its size", _post_chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size with a space inside", _post_chunked(b"1 0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"), 400),
    ("chunk size line with bare LF", _post_chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension without a name", _post_chunked(b"5;=v\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension with an unterminated quote", _post_chunked(b'5;a="open\r\nhello\r\n0\r\n\r\n'), 400),
    ("chunk extension over 4 KiB", _post_chunked(b"5;a=" + b"x" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension with a control byte", _post_chunked(b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunked body over --limit-post",
     _post_chunked((b"%x\r\n" % 600 + b"z" * 600 + b"\r\n") * 2 + b"0\r\n\r\n"), 413),
    ("Content-Length over --limit-post", _post_cl([b"5000"], b"z" * 5000), 413),
    # request targets
    ("absolute-form with an empty authority", b"GET http:///say/abs HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form with userinfo", b"GET http://user:pw@h/say/abs HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form with a non-http scheme", b"GET ftp://h/say/abs HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("relative target", b"GET say/abs HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk-form with GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("CONNECT", b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 501),
]


@pytest.mark.parametrize("name,request_bytes,status", REFUSED, ids=[c[0] for c in REFUSED])
def test_http_refused_cleanly_and_worker_keeps_serving(http_srv, name, request_bytes, status):
    mark = len(http_srv.log)
    t0 = time.monotonic()
    r, end = one_response(http_srv.port, request_bytes)
    took = time.monotonic() - t0
    assert r.status == status, (name, r)
    assert r.complete, r
    assert (r.header("Connection") or "").lower() == "close", r
    assert end in ("eof", "reset"), f"connection left open after a {status}"
    assert took < 2.0, f"answered after {took:.1f}s"
    # An error in the log: the rejection line, or the access-log line.
    new = log_since(http_srv, mark)
    assert f"rejected with {status}" in new or f" {status})" in new, new
    still_serving(http_srv, http_srv.port, http_srv.pid)


# ---------------------------------------------------------------- HTTP: accepted edge cases

ACCEPTED = [
    ("valid chunk extensions", _post_chunked(b'5;a=b;c="d e"\r\nhello\r\n0\r\n\r\n'), b"hello"),
    ("chunk size with leading zeros", _post_chunked(b"0005\r\nhello\r\n0\r\n\r\n"), b"hello"),
    ("duplicate Content-Length that agree", _post_cl([b"5", b"5"]), b"hello"),
    ("Content-Length list that agrees", _post_cl([b"5, 5"]), b"hello"),
    ("body exactly at --limit-post", _post_cl([b"%d" % LIMIT_POST], b"y" * LIMIT_POST), b"y" * LIMIT_POST),
    ("absolute-form target", b"GET http://example.com/say/abs?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", b"abs"),
    ("OPTIONS *", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", b"rel_app\n"),
    ("leading empty lines", b"\r\n\r\nGET /say/lead HTTP/1.1\r\n" + H + b"\r\n", b"lead"),
]


@pytest.mark.parametrize("name,request_bytes,body", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_http_edge_cases_accepted_and_connection_reused(http_srv, name, request_bytes, body):
    s = socket.create_connection(("127.0.0.1", http_srv.port), timeout=5)
    try:
        s.sendall(request_bytes + b"GET /say/again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            raw += b
    finally:
        s.close()
    rs = parse_responses(raw)
    assert [r.status for r in rs] == [200, 200], rs
    assert rs[0].body == body
    assert rs[1].body == b"again"
    still_serving(http_srv, http_srv.port, http_srv.pid)


def env_of(port, head_lines, body=b"", method=b"POST", extra=b""):
    """The app's environ (its str values) for one request with these header lines."""
    req = (method + b" /env HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           + b"".join(h + b"\r\n" for h in head_lines) + b"\r\n" + body + extra)
    r, _ = one_response(port, req)
    assert r.status == 200, r
    return json.loads(r.body)


SPOOF = [b"X_Remote_User: admin", b"X-Remote-User: alice", b"Transfer_Encoding: chunked",
         b"Content_Length: 99", b"X_Forwarded_For: 6.6.6.6"]


def test_http_header_names_with_underscores_are_dropped(http_srv):
    """X_Remote_User would reach the app as HTTP_X_REMOTE_USER, the name of
    the proxy's X-Remote-User: a client could inject identity or client-IP
    values. Such names are dropped (as nginx and gunicorn do), silently."""
    mark = len(http_srv.log)
    env = env_of(http_srv.port, SPOOF, method=b"GET")
    assert env["HTTP_X_REMOTE_USER"] == "alice", env
    for key in ("HTTP_TRANSFER_ENCODING", "HTTP_CONTENT_LENGTH", "HTTP_X_FORWARDED_FOR",
                "CONTENT_LENGTH"):
        assert key not in env, (key, env)
    # Nothing logged for it but the access line.
    new = log_since(http_srv, mark)
    assert [line for line in new.splitlines() if "GET /env" not in line] == [], new
    still_serving(http_srv, http_srv.port, http_srv.pid)


def test_http_underscores_in_headers_option_keeps_them(serve, port):
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--http-underscores-in-headers"])
    env = env_of(port, SPOOF, method=b"GET")
    assert env["HTTP_X_REMOTE_USER"] == "admin,alice", env
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6", env
    # Still not framing: no body was expected, none read.
    assert "CONTENT_LENGTH" not in env, env


def test_http_content_length_list_reaches_the_app_as_one_number(http_srv):
    """'5, 5' frames the body as 5 bytes (RFC 9112 6.3); the app must see
    CONTENT_LENGTH '5', not '5, 5' (Django, for one, then reads no body)."""
    for lines in ([b"Content-Length: 5, 5"], [b"Content-Length: 5", b"content-length: 5"],
                  [b"Content-Length: 005"]):
        env = env_of(http_srv.port, lines, body=b"hello")
        assert env["CONTENT_LENGTH"] == "5", (lines, env)
        assert "HTTP_CONTENT_LENGTH" not in env, (lines, env)


def test_http_pipelined_garbage_after_a_good_request(http_srv):
    for garbage in (b"GARBAGE GARBAGE\r\n\r\n", TLS_HELLO, b"GET / HTTP/1.1\r\nX: \x00\r\n\r\n"):
        raw, end = exchange(http_srv.port, b"GET /say/first HTTP/1.1\r\nHost: x\r\n\r\n" + garbage)
        rs = parse_responses(raw)
        assert [r.status for r in rs] == [200, 400], (garbage, rs)
        assert rs[0].body == b"first"
        assert (rs[1].header("Connection") or "").lower() == "close"
        assert end in ("eof", "reset")
    still_serving(http_srv, http_srv.port, http_srv.pid)


def test_http_garbage_byte_by_byte_is_refused_early(http_srv):
    """A peer that is not speaking HTTP is refused at the first byte that
    cannot start a method, not after a buffer's worth or a timeout."""
    for first in (TLS_HELLO[:1], b"GET", b"\x00"):
        s = socket.create_connection(("127.0.0.1", http_srv.port), timeout=5)
        try:
            s.sendall(first)
            s.settimeout(1.5)
            try:
                raw = s.recv(4096)
            except socket.timeout:
                raw = b"<nothing within 1.5 s>"
        finally:
            s.close()
        if first == b"GET":
            assert raw == b"<nothing within 1.5 s>", raw  # a valid prefix: wait for more
        else:
            assert raw.startswith(b"HTTP/1.1 400 "), (first, raw)
    still_serving(http_srv, http_srv.port, http_srv.pid)


# ---------------------------------------------------------------- uwsgi protocol

def uwsgi_packet(pairs, modifier1=0, modifier2=0, datasize=None):
    block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in pairs)
    size = len(block) if datasize is None else datasize
    return struct.pack("<BHB", modifier1, size, modifier2) + block


GOOD_VARS = [(b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/say/uw"), (b"PATH_INFO", b"/say/uw"),
             (b"QUERY_STRING", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"SERVER_NAME", b"x"),
             (b"SERVER_PORT", b"80"), (b"REMOTE_ADDR", b"10.1.2.3")]
GOOD = uwsgi_packet(GOOD_VARS)


@pytest.fixture(scope="module")
def uwsgi_srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile_uwsgi")
    port = free_port()
    srv = Server(["--socket", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                  "--processes", "1", "--threads", "2", "--limit-post", str(LIMIT_POST),
                  "--socket-timeout", "2"], d)
    try:
        srv.wait_ready()
        srv.port = port
        srv.pid = srv.worker_pids()[1]
        yield srv
    finally:
        srv.stop()


def uwsgi_good(srv):
    r, _ = one_response(srv.port, GOOD)
    assert (r.status, r.body) == (200, b"uw"), r
    assert srv.worker_pids()[1] == srv.pid and "DAMN" not in srv.log


def _var_past_end():
    p = bytearray(GOOD)
    p[4:6] = struct.pack("<H", 0xFFFF)  # first key length runs past the block
    return bytes(p)


UWSGI_REFUSED = [
    ("key length past the packet", _var_past_end(), 400),
    ("value length past the packet",
     struct.pack("<BHB", 0, 8, 0) + struct.pack("<H", 2) + b"AB" + struct.pack("<H", 500) + b"xx", 400),
    ("length field cut in half",
     struct.pack("<BHB", 0, 9, 0) + struct.pack("<H", 2) + b"AB" + struct.pack("<H", 2) + b"xy" + b"\x01",
     400),
    ("empty var name", uwsgi_packet([(b"", b"v")] + GOOD_VARS), 400),
    ("modifier1 it does not serve (1)", uwsgi_packet(GOOD_VARS, modifier1=1), 400),
    ("modifier1 it does not serve (5)", uwsgi_packet(GOOD_VARS, modifier1=5), 400),
    ("modifier1 it does not serve (255)", uwsgi_packet(GOOD_VARS, modifier1=255), 400),
    ("packet over --buffer-size", uwsgi_packet(GOOD_VARS + [(b"HTTP_X_BIG", b"b" * 5000)]), 413),
    ("header announcing 65535 bytes", struct.pack("<BHB", 0, 65535, 0), 413),
    ("CONTENT_LENGTH not a number", uwsgi_packet(GOOD_VARS + [(b"CONTENT_LENGTH", b"-1")]), 400),
    ("CONTENT_LENGTH over --limit-post",
     uwsgi_packet(GOOD_VARS + [(b"CONTENT_LENGTH", b"5000")]) + b"z" * 5000, 413),
]

@pytest.mark.parametrize("name,packet,status", UWSGI_REFUSED, ids=[c[0] for c in UWSGI_REFUSED])
def test_uwsgi_bad_packet_refused_and_worker_keeps_serving(uwsgi_srv, name, packet, status):
    r, end = one_response(uwsgi_srv.port, packet)
    assert r.status == status, (name, r)
    assert end in ("eof", "reset")
    uwsgi_good(uwsgi_srv)


def padded_to(datasize):
    """GOOD_VARS and one padding var, the vars block exactly `datasize` bytes."""
    base = len(uwsgi_packet(GOOD_VARS)) - 4
    pad = datasize - base - 4 - len(b"HTTP_X_PAD")
    return uwsgi_packet(GOOD_VARS + [(b"HTTP_X_PAD", b"p" * pad)])


@pytest.mark.parametrize("datasize", [4093, 4094, 4095, 4096])
def test_uwsgi_packet_up_to_buffer_size_is_served(uwsgi_srv, datasize):
    """uWSGI serves a vars block of up to --buffer-size bytes (4096 here),
    which with its 4-byte header is a packet of up to 4100 bytes."""
    packet = padded_to(datasize)
    assert len(packet) == datasize + 4
    r, _ = one_response(uwsgi_srv.port, packet)
    assert (r.status, r.body) == (200, b"uw"), (datasize, r)
    r, _ = one_response(uwsgi_srv.port, padded_to(4097))
    assert r.status == 413, r


@pytest.mark.parametrize("cut", [2, 4, 20, len(GOOD) - 1])
def test_uwsgi_truncated_packet_then_eof_is_dropped(uwsgi_srv, cut):
    raw, end = exchange(uwsgi_srv.port, GOOD[:cut], shut=True, timeout=3)
    assert end == "eof" and raw == b"", (raw, end)
    uwsgi_good(uwsgi_srv)


def test_uwsgi_truncated_packet_then_silence_is_closed_after_socket_timeout(uwsgi_srv):
    """A packet that never completes cannot hold its connection (and file
    descriptor) forever: it is dropped after --socket-timeout (2 s)."""
    t0 = time.monotonic()
    raw, end = exchange(uwsgi_srv.port, GOOD[:20], timeout=6)
    took = time.monotonic() - t0
    assert end in ("eof", "reset"), f"still open after {took:.1f}s (--socket-timeout 2)"
    assert took < 5.0
    uwsgi_good(uwsgi_srv)


def test_uwsgi_body_shorter_than_content_length(uwsgi_srv):
    """The client announces 100 body bytes, sends 10 and goes away: the app
    sees an error reading the body, the worker carries on."""
    raw, end = exchange(uwsgi_srv.port,
                        uwsgi_packet([(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/echo"),
                                      (b"REQUEST_URI", b"/echo"), (b"CONTENT_LENGTH", b"100")])
                        + b"0123456789", shut=True)
    rs = parse_responses(raw)
    assert len(rs) <= 1 and (not rs or rs[0].status in (400, 500)), rs
    uwsgi_good(uwsgi_srv)


@pytest.mark.parametrize("protocol,expected", [(None, "HTTP/1.0"), (b"HTTP/1.0", "HTTP/1.0"),
                                               (b"HTTP/1.1", "HTTP/1.1")])
def test_uwsgi_protocol_is_the_same_in_the_environ_and_the_response(uwsgi_srv, protocol, expected):
    """Without SERVER_PROTOCOL the environ says HTTP/1.0 (PEP 3333 needs
    one), and so does the status line, as under uWSGI."""
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/env"), (b"PATH_INFO", b"/env")]
    if protocol is not None:
        pairs.append((b"SERVER_PROTOCOL", protocol))
    r, _ = one_response(uwsgi_srv.port, uwsgi_packet(pairs))
    assert r.status_line.decode().startswith(expected + " 200"), r
    assert json.loads(r.body)["SERVER_PROTOCOL"] == expected
    uwsgi_good(uwsgi_srv)


def test_a_panic_answers_500_and_a_second_one_restarts_the_worker(serve, port):
    """A panic in a request thread (here PyO3's PanicException raised by
    the app) is a 500 and one log line; the worker keeps serving on every
    core. A second one makes it exit, and the master starts a new one."""
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "core_panic.py"),
                 "--master", "--processes", "1", "--threads", "2"])
    pid = srv.worker_pids()[1]
    assert http_get(port, "/raise")[0] == 500  # PyO3 has made its PanicException type
    status, _, body = http_get(port, "/panic")
    assert status == 500, body
    lines = [ln for ln in srv.log.splitlines() if "panic serving" in ln]
    assert len(lines) == 1, srv.log
    assert "GET /panic" in lines[0] and "panicked on purpose" in lines[0], lines
    assert "second panic" not in lines[0]
    for _ in range(6):
        status, _, body = http_get(port, "/")
        assert (status, body) == (200, str(pid).encode())
    assert http_get(port, "/panic")[0] == 500
    srv.wait_log("second panic: the worker exits to be respawned", timeout=5)
    srv.wait_log("Respawned uwsgi-rs worker 1 (new pid: ", timeout=10)
    srv.wait_log(") ready", count=2, timeout=15)
    status, _, body = http_get(port, "/")
    assert status == 200 and int(body) == srv.worker_pids()[1] != pid
    assert "DAMN" not in srv.log, srv.log


# ---------------------------------------------------------------- slow clients

@pytest.fixture
def slow_srv(serve):
    def start(threads=4, timeout=2, workers=1, extra=()):
        port = free_port()
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                     "--processes", str(workers), "--threads", str(threads),
                     "--socket-timeout", str(timeout), "--listen", "1024", *extra],
                    workers=workers)
        srv.port = port
        return srv
    return start


def timed_get(port, path="/say/fresh", timeout=30):
    t0 = time.monotonic()
    status, _, body = http_get(port, path, timeout=timeout)
    return status, body, time.monotonic() - t0


@pytest.mark.serial  # loads the machine, or asserts a latency
def test_slowloris_500_clients_do_not_stop_a_normal_client(slow_srv):
    """500 clients each trickle a request head at one byte a second, and 500
    more connected and said nothing; normal clients are served at once the
    whole time."""
    srv = slow_srv(threads=2, timeout=2)
    port = srv.port
    conns, silent = [], []
    stop = threading.Event()
    try:
        for i in range(500):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.setblocking(False)
            conns.append(s)
        for i in range(500):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        head = b"GET /say/slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 64

        def trickle():
            i = 0
            while not stop.is_set() and i < len(head):
                for s in conns:
                    try:
                        s.send(head[i:i + 1])
                    except OSError:
                        pass
                i += 1
                stop.wait(1.0)

        t = threading.Thread(target=trickle, daemon=True)
        t.start()
        worst = 0.0
        for _ in range(8):
            time.sleep(0.5)
            status, body, took = timed_get(port, timeout=10)
            assert (status, body) == (200, b"fresh")
            worst = max(worst, took)
        assert worst < 1.0, f"a normal client waited {worst:.2f}s"
        assert srv.proc.poll() is None and "DAMN" not in srv.log
    finally:
        stop.set()
        for s in conns + silent:
            s.close()


def test_silent_partial_head_is_closed_after_socket_timeout(slow_srv):
    """A client that starts a request and then goes silent cannot keep the
    connection (a file descriptor, and a slot of the server's capacity)
    forever: it is closed within --socket-timeout (2 s) plus slack."""
    srv = slow_srv(threads=1, timeout=2)
    t0 = time.monotonic()
    raw, end = exchange(srv.port, b"GET /say/x HTTP/1.1\r\nHost: x\r\n", timeout=6)
    took = time.monotonic() - t0
    assert end in ("eof", "reset"), f"still open after {took:.1f}s with --socket-timeout 2"
    assert took < 5.0
    assert raw == b"" or raw.startswith(b"HTTP/1.1 408 "), raw
    status, body, _ = timed_get(srv.port)
    assert status == 200


def _non_reader(port, path, rcvbuf=4096):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    return s


def test_client_that_never_reads_holds_a_thread_no_longer_than_socket_timeout(slow_srv):
    """One core, one client that asks for 50 MB and never reads: the core is
    freed after --socket-timeout (2 s) of no progress, and the next client
    is served then; the log says why the response was cut."""
    srv = slow_srv(threads=1, timeout=2)
    hog = _non_reader(srv.port, "/big?n=50000000")
    try:
        time.sleep(0.3)
        status, body, took = timed_get(srv.port, timeout=15)
        assert (status, body) == (200, b"fresh")
        assert took < 2.0 + 1.5, f"the normal client waited {took:.2f}s"
        assert "socket timeout" in srv.log, srv.log[-2000:]
    finally:
        hog.close()
    assert "DAMN" not in srv.log


@pytest.mark.serial  # loads the machine, or asserts a latency
def test_500_clients_that_never_read_do_not_stop_a_normal_client(slow_srv):
    """500 clients ask for 64 KiB and never read it (the kernel buffers take
    it: no core is held), and 4 more ask for 8 MB and never read (more than
    loopback socket buffers hold: each holds one of the 4 cores until
    --socket-timeout, 2 s). A normal client is served once those are cut."""
    srv = slow_srv(threads=4, workers=1, timeout=2)
    hogs = []
    try:
        for _ in range(500):
            hogs.append(_non_reader(srv.port, "/big?n=65536"))
        for _ in range(4):
            hogs.append(_non_reader(srv.port, "/big?n=8000000"))
        time.sleep(0.3)
        status, body, took = timed_get(srv.port, timeout=15)
        assert (status, body) == (200, b"fresh")
        assert took < 2.0 + 2.5, f"the normal client waited {took:.2f}s"
        # And again, now that the hogs were cut: at once.
        status, body, took = timed_get(srv.port, timeout=15)
        assert status == 200 and took < 1.0, took
    finally:
        for s in hogs:
            s.close()
    srv.wait_log("socket timeout", timeout=5)
    assert "DAMN" not in srv.log


# ---------------------------------------------------------------- misbehaving apps

@pytest.fixture(scope="module")
def app_srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile_app")
    port = free_port()
    srv = Server(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                  "--processes", "1", "--threads", "2"], d)
    try:
        srv.wait_ready()
        srv.port = port
        srv.pid = srv.worker_pids()[1]
        yield srv
    finally:
        srv.stop()


BAD_APP_500 = [
    ("status_letters", "ValueError"),
    ("status_int", "TypeError"),
    ("status_crlf", "ValueError"),
    ("header_crlf", "ValueError"),
    ("header_lf", "ValueError"),
    ("header_name", "ValueError"),
    ("header_bytes", "TypeError"),
    ("headers_dict", "TypeError"),
    ("non_bytes_list", "TypeError"),
    ("none_body", "TypeError"),
    ("no_start_response", "AssertionError"),
    ("close_list", "RuntimeError: rel_app: close() failed on purpose (list)"),
]


@pytest.mark.parametrize("kind,error", BAD_APP_500, ids=[c[0] for c in BAD_APP_500])
def test_app_error_before_headers_gives_500_and_a_logged_error(app_srv, kind, error):
    mark = len(app_srv.log)
    r, end = one_response(app_srv.port, b"GET /bad/%s HTTP/1.1\r\nHost: x\r\n\r\n" % kind.encode())
    assert r.status == 500, r
    assert r.complete
    assert b"Injected" not in r.status_line and r.header("X-Injected") is None
    assert r.header("Set-Cookie") is None and r.header("X-Evil") is None
    deadline = time.time() + 3
    while time.time() < deadline and error not in log_since(app_srv, mark):
        time.sleep(0.05)
    new = log_since(app_srv, mark)
    assert "Traceback" in new and error in new, new
    assert f"GET /bad/{kind} => generated" in new and "(HTTP/1.1 500)" in new, new
    still_serving(app_srv, app_srv.port, app_srv.pid)


def test_status_without_reason_phrase_is_refused_or_well_formed(app_srv):
    """start_response("200", ...): either refused (500), or the status line
    on the wire still has the SP that RFC 9112 requires after the code."""
    r, _ = one_response(app_srv.port, b"GET /bad/status_short HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    if r.status != 500:
        assert re.fullmatch(rb"HTTP/1\.1 200 [^\r\n]*", r.status_line), r.status_line
    still_serving(app_srv, app_srv.port, app_srv.pid)


@pytest.mark.parametrize("kind,error,body", [
    ("non_bytes_stream", "TypeError", b"first-part;"),
    ("raise_streaming", "rel_app: failed mid-stream", b"first-part;"),
    ("close_stream", "rel_app: close() failed on purpose (stream)", b"part-one;part-two;"),
])
def test_app_error_after_headers_cuts_the_response(app_srv, kind, error, body):
    """Headers already sent: the response is cut (no final chunk), the
    connection closed, the error logged."""
    mark = len(app_srv.log)
    raw, end = exchange(app_srv.port, b"GET /bad/%s HTTP/1.1\r\nHost: x\r\n\r\n" % kind.encode())
    rs = parse_responses(raw)
    assert len(rs) == 1 and rs[0].status == 200, rs
    assert (rs[0].header("Transfer-Encoding") or "").lower() == "chunked"
    assert rs[0].body == body
    assert not rs[0].complete, "a failed response must not look complete"
    assert end in ("eof", "reset")
    deadline = time.time() + 3
    while time.time() < deadline and error not in log_since(app_srv, mark):
        time.sleep(0.05)
    new = log_since(app_srv, mark)
    assert "Traceback" in new and error in new, new
    still_serving(app_srv, app_srv.port, app_srv.pid)


def test_app_content_length_overrun_and_underrun(app_srv):
    """An app that yields more than its Content-Length must not put extra
    bytes on a kept-alive connection (they would read as the next
    response); one that yields less gets its connection closed."""
    s = socket.create_connection(("127.0.0.1", app_srv.port), timeout=5)
    try:
        f = s.makefile("rb")
        for kind in ("cl_overrun", "cl_overrun_list"):
            s.sendall(b"GET /bad/%s HTTP/1.1\r\nHost: x\r\n\r\n" % kind.encode())
            s.sendall(b"GET /say/after HTTP/1.1\r\nHost: x\r\n\r\n")
            got = []
            for _ in range(2):
                line = f.readline()
                hdrs = {}
                while True:
                    h = f.readline()
                    if h in (b"\r\n", b""):
                        break
                    k, _, v = h.decode().partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                got.append((line.split()[1], f.read(int(hdrs["content-length"]))))
            assert got == [(b"200", b"01234"), (b"200", b"after")], (kind, got)
    finally:
        s.close()
    raw, end = exchange(app_srv.port, b"GET /bad/cl_underrun HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert end in ("eof", "reset"), "a short body must end with the connection, not hang"
    still_serving(app_srv, app_srv.port, app_srv.pid)


# ---------------------------------------------------------------- log injection

def _only_server_lines(log):
    """Every line of the log must be one the server (or a traceback) wrote."""
    return [l for l in log.splitlines() if l.startswith("FAKE")]


def test_no_log_injection_through_the_http_uri(app_srv):
    mark = len(app_srv.log)
    target = b"/say/x\\y\xc3\xa9\xff%0d%0aFAKE"
    r, _ = one_response(app_srv.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.status == 200
    deadline = time.time() + 3
    while time.time() < deadline and "GET /say/" not in log_since(app_srv, mark):
        time.sleep(0.05)
    raw = open(app_srv.log_path, "rb").read()[mark:]
    assert b"\xc3\xa9" not in raw and b"\xff" not in raw, raw
    assert "GET /say/x\\x5cy\\xc3\\xa9\\xff%0d%0aFAKE =>" in log_since(app_srv, mark)


def test_no_log_injection_through_uwsgi_vars(uwsgi_srv):
    mark = len(uwsgi_srv.log)
    evil = [(b"REQUEST_METHOD", b"GET\r\nFAKE method"), (b"REQUEST_URI", b"/x\r\nFAKE uri \x1b[31mred\x00"),
            (b"PATH_INFO", b"/say/evil"), (b"QUERY_STRING", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1"),
            (b"REMOTE_ADDR", b"1.2.3.4\nFAKE addr"), (b"SERVER_NAME", b"x"), (b"SERVER_PORT", b"80")]
    r, _ = one_response(uwsgi_srv.port, uwsgi_packet(evil))
    assert (r.status, r.body) == (200, b"evil")
    deadline = time.time() + 3
    while time.time() < deadline and "FAKE uri" not in log_since(uwsgi_srv, mark):
        time.sleep(0.05)
    new = log_since(uwsgi_srv, mark)
    assert "GET\\x0d\\x0aFAKE method /x\\x0d\\x0aFAKE uri \\x1b[31mred\\x00 =>" in new, new
    raw = open(uwsgi_srv.log_path, "rb").read()[mark:]
    assert b"\x1b" not in raw and b"\x00" not in raw
    assert _only_server_lines(new) == [], new


def test_no_log_injection_through_headers_in_harakiri_dump(serve):
    """--harakiri-verbose logs the stuck request's headers: escaped."""
    port = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--processes", "1", "--threads", "1", "--harakiri", "1", "--harakiri-verbose"])
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(b"GET /sleep?s=5 HTTP/1.1\r\nHost: x\r\nX-Evil: tab\there \xc3\xa9\xff \\ end\r\n\r\n")
        srv.wait_log("HARAKIRI triggered", timeout=8)
        srv.wait_log("end of worker 1 status", timeout=3)
    finally:
        s.close()
    log = srv.log
    # Non-ASCII bytes may be shown as \xff or as the escaped U+FFFD they were
    # replaced with; either way nothing raw reaches the log.
    assert re.search(r"X-Evil: tab\\x09here \\xc3\\xa9(\\xff|\\xef\\xbf\\xbd) \\x5c end", log), log
    raw = open(srv.log_path, "rb").read().split(b"HARAKIRI !!! worker 1 status")[1]
    assert b"\xc3\xa9" not in raw and b"\xff" not in raw and b"\t" not in raw


def test_no_log_injection_through_an_exception_message(app_srv):
    """An app exception whose message carries the (percent-decoded) path
    must not forge a log line: the server escapes what it logs."""
    mark = len(app_srv.log)
    r, _ = one_response(app_srv.port, b"GET /bad/%0d%0aFAKE%20LINE%1b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 500
    deadline = time.time() + 3
    while time.time() < deadline and "LookupError" not in log_since(app_srv, mark):
        time.sleep(0.05)
    new = log_since(app_srv, mark)
    assert "LookupError" in new, new
    assert _only_server_lines(new) == [], new
    still_serving(app_srv, app_srv.port, app_srv.pid)
