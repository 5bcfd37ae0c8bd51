"""The server's log, driven through the real binary: uWSGI's request line
byte for byte, descriptors the app cannot take (issue 12, item 6), a log
reader that stops reading (item 7), and the logging options of issue 10
(logto, logto2, daemonize, log-reopen and logrotate, log-maxsize,
log-master, log-date, log-format, conditional logging, loggers and routes).
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, free_port, http_get
from helpers import APPS, popen, wait_for, wait_port
import helpers

APP = str(APPS / "logapp.py")

# lnav's uwsgi_log format (formats/uwsgi_log.json), the tool the issue names.
LNAV = re.compile(
    r"^\[pid: (?P<pid>\d+)\|app: (?P<app>[\-\d]+)\|req: (?P<req>[\-\d]+)/(?P<total>\d+)\] "
    r"(?P<ip>[^ ]+) \((?P<user>[^\)]*)\) \{(?P<vars>\d+) vars in (?P<bytes>\d+) bytes\} "
    r"\[(?P<ts>[^\]]+)\] (?P<method>[A-Z]+) (?P<stem>[^ \?]+)(?:\?(?P<query>[^ ]*))? "
    r"=> generated (?P<size>\d+) bytes in (?P<runtime>\d+) (?P<unit>\w+) "
    r"\((?P<version>[^ ]+) (?P<status>\d+)\) (?P<headers>\d+) headers in (?P<hbytes>\d+) "
    r"bytes \((?P<switches>\d+) switches on core (?P<core>\d+)\)$")
CTIME = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}$")


def get(port, path, timeout=10.0, extra=b""):
    """One HTTP/1.0 GET on a new connection: everything until EOF."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.0\r\n".encode() + extra + b"\r\n")
        data = b""
        while True:
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                return data
            if not b:
                return data
            data += b
    finally:
        s.close()


def served(port, path):
    """The app's exact answer to `path`, nothing before or after it."""
    data = get(port, path)
    head, _, body = data.partition(b"\r\n\r\n")
    return data.startswith(b"HTTP/1.0 200 OK\r\n") and body == f"ok {path.split('?')[0]}\n".encode()


def uwsgi_packet(pairs):
    body = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
                    for k, v in pairs)
    return struct.pack("<BHB", 0, len(body), 0) + body


def access_lines(text):
    return [m for m in (LNAV.match(l) for l in text.splitlines()) if m]


def wait_text(path, needle, timeout=10.0, count=1):
    def found():
        return Path(path).exists() and Path(path).read_text(errors="replace").count(needle) >= count
    wait_for(found, timeout, what=f"{needle!r} x{count} in {path}")
    return Path(path).read_text(errors="replace")


# ------------------------------------------------------------ the request line

def test_the_default_request_line_is_uwsgis(serve, port):
    """uWSGI's `[pid|app|req] addr (user) {vars} [ctime] method uri =>
    generated ... (N switches on core C)`, which lnav parses, for both
    protocols; a uwsgi packet's vars are counted as uWSGI counts them."""
    usock = f"127.0.0.1:{free_port()}"
    srv = serve(["--http", f"127.0.0.1:{port}", "--socket", usock, "--wsgi-file", APP,
                 "--threads", "2"])
    r = get(port, "/hello?x=1", extra=b"User-Agent: t\r\nX-A: 1\r\nx-a: 2\r\n")
    assert r.endswith(b"ok /hello\n"), r
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/via/uwsgi?q"),
             (b"PATH_INFO", b"/via/uwsgi"), (b"QUERY_STRING", b"q"),
             (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"REMOTE_ADDR", b"10.1.2.3"),
             (b"REMOTE_USER", b"alice"), (b"SERVER_NAME", b"x"), (b"SERVER_PORT", b"80")]
    host, p = usock.split(":")
    s = socket.create_connection((host, int(p)), timeout=5)
    s.sendall(uwsgi_packet(pairs))
    while s.recv(65536):
        pass
    s.close()
    srv.wait_log("GET /via/uwsgi?q =>")
    lines = {m["stem"]: m for m in access_lines(srv.log)}
    h, u = lines["/hello"], lines["/via/uwsgi"]
    assert h["app"] == "0" and h["ip"] == "127.0.0.1" and h["user"] == ""
    assert (h["req"], h["total"]) == ("1", "1") and (u["req"], u["total"]) == ("2", "2")
    assert CTIME.match(h["ts"]), h["ts"]
    assert h["query"] == "x=1" and h["unit"] == "msecs"
    assert (h["version"], h["status"], h["size"], h["switches"]) == ("HTTP/1.0", "200", "10", "1")
    # uWSGI's http parser: 9 fixed vars + 2 headers (X-A merged), 2 per var.
    assert h["vars"] == str(2 * (9 + 2)), h.group(0)
    # Content-Type, Content-Length, Connection: close.
    assert h["headers"] == "3"
    head = r.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert h["hbytes"] == str(len(head))
    assert u["ip"] == "10.1.2.3" and u["user"] == "alice" and u["version"] == "HTTP/1.1"
    assert u["vars"] == str(2 * len(pairs))
    assert u["bytes"] == str(sum(4 + len(k) + len(v) for k, v in pairs))
    assert int(u["pid"]) == int(h["pid"]) and h["core"] in ("0", "1")


# What uWSGI 2.0.31 (PyPI, `--http-socket` and `--socket`, this app) logged
# for UWSGI_REQUESTS, in order. The pid, the date, the time taken and the
# response's header count and size (over HTTP uwsgi-rs sends `Connection`
# and `Date` too; it reports the head it wrote) are masked; the rest must
# match byte for byte, and over the uwsgi protocol the header count and
# size too (the head is the app's, as uWSGI's).
UWSGI_2_0_31 = """\
[pid: 14077|app: 0|req: 1/1] 127.0.0.1 () {22 vars in 223 bytes} [Mon Nov 30 16:45:42 2026] GET /hello?x=1 => generated 10 bytes in 0 msecs (HTTP/1.0 200) 2 headers in 65 bytes (1 switches on core 0)
[pid: 14077|app: 0|req: 2/2] 127.0.0.1 () {22 vars in 228 bytes} [Mon Nov 30 16:45:42 2026] GET /status/404 => generated 15 bytes in 0 msecs (HTTP/1.1 404) 2 headers in 69 bytes (1 switches on core 0)
[pid: 14077|app: 0|req: 3/3] 127.0.0.1 () {20 vars in 192 bytes} [Mon Nov 30 16:45:42 2026] POST /p => generated 6 bytes in 0 msecs (HTTP/1.0 200) 2 headers in 64 bytes (1 switches on core 0)
[pid: 14077|app: 0|req: 4/4] 127.0.0.1 () {18 vars in 182 bytes} [Mon Nov 30 16:45:42 2026] GET /a%0d%0aX => generated 9 bytes in 0 msecs (HTTP/1.0 200) 2 headers in 64 bytes (1 switches on core 0)
[pid: 14077|app: 0|req: 5/5] 10.1.2.3 (alice) {18 vars in 191 bytes} [Mon Nov 30 16:45:42 2026] GET /via/uwsgi?q => generated 14 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 65 bytes (1 switches on core 0)
"""
UWSGI_PAIRS = [(b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/via/uwsgi?q"),
               (b"PATH_INFO", b"/via/uwsgi"), (b"QUERY_STRING", b"q"),
               (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"REMOTE_ADDR", b"10.1.2.3"),
               (b"REMOTE_USER", b"alice"), (b"SERVER_NAME", b"x"), (b"SERVER_PORT", b"80")]
UWSGI_REQUESTS = [
    b"GET /hello?x=1 HTTP/1.0\r\nUser-Agent: t\r\nX-A: 1\r\nx-a: 2\r\n\r\n",
    b"GET /status/404 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
    b"GET /a%0d%0aX HTTP/1.0\r\n\r\n",
]


def masked(line):
    line = re.sub(r"^\[pid: \d+\|", "[pid: P|", line)
    line = re.sub(r"\} \[[^\]]{24}\] ", "} [DATE] ", line)
    line = re.sub(r" in \d+ msecs ", " in T msecs ", line)
    return re.sub(r"\) \d+ headers in \d+ bytes \(", ") H headers in B bytes (", line)


def test_the_default_request_line_matches_uwsgi_2_0_31(serve, port):
    """The same requests, over HTTP and the uwsgi protocol, give uWSGI's
    lines (captured from uWSGI 2.0.31 above) byte for byte, but for what
    differs by nature (pid, date, time taken, the head sent)."""
    usock = free_port()
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--socket", f"127.0.0.1:{usock}",
                 "--wsgi-file", APP])
    heads = []
    for raw in UWSGI_REQUESTS:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(raw)
        data = b""
        while b := s.recv(65536):
            data += b
        s.close()
        heads.append(data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
    s = socket.create_connection(("127.0.0.1", usock), timeout=5)
    s.sendall(uwsgi_packet(UWSGI_PAIRS))
    while s.recv(65536):
        pass
    s.close()
    srv.wait_log("GET /via/uwsgi?q =>")
    ours = [l for l in srv.log.splitlines() if l.startswith("[pid: ")]
    assert [masked(l) for l in ours] == [masked(l) for l in UWSGI_2_0_31.splitlines()]
    head_of = re.compile(r"\) \d+ headers in \d+ bytes \(")
    assert head_of.search(ours[-1])[0] == head_of.search(UWSGI_2_0_31.splitlines()[-1])[0]
    # The masked head: what uwsgi-rs wrote, counted as uWSGI counts it.
    for line, head in zip(ours, heads):
        m = LNAV.match(line)
        assert int(m["hbytes"]) == len(head), (line, head)
        assert int(m["headers"]) == head.count(b"\r\n") - 2, (line, head)


@pytest.mark.parametrize("apps,requests,expected", [
    # A --wsgi-file app is app 0, mounts follow; a static file is no app's.
    (["--wsgi-file", APP, "--mount", f"/b={APP}", "--static-map", "/s={static}"],
     ["/s/f.txt", "/x", "/b/y", "/s/f.txt", "/b/z"],
     ["-1|req: -1/1", "0|req: 1/2", "1|req: 1/3", "-1|req: -1/4", "1|req: 2/5"]),
    # Mounts only: the first is app 0 and the default.
    (["--mount", f"/a={APP}", "--mount", f"/b={APP}"],
     ["/a/x", "/b/y", "/c/z", "/b/w"],
     ["0|req: 1/1", "1|req: 1/2", "0|req: 2/3", "1|req: 2/4"]),
], ids=["wsgi-file-mount-static", "mounts-only"])
def test_app_ids_and_per_app_counts_are_uwsgis(serve, port, tmp_path, apps, requests, expected):
    """`[pid|app: ID|req: N/TOTAL]` as uWSGI 2.0.31 printed for the same
    setups: the app's id in load order, N counted per app in the worker,
    `app: -1|req: -1` for a static file."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "f.txt").write_text("hi\n")
    args = [a.replace("{static}", str(tmp_path / "static")) for a in apps]
    srv = serve(["--http-socket", f"127.0.0.1:{port}", *args, "--manage-script-name"])
    for path in requests:
        assert get(port, path).startswith(b"HTTP/1.0 200 OK"), path
    srv.wait_log(f"GET {requests[-1]} =>")
    got = [re.match(r"\[pid: \d+\|app: (.*?)\] ", l)[1]
           for l in srv.log.splitlines() if l.startswith("[pid: ")]
    assert got == expected, srv.log


def test_request_data_cannot_forge_log_lines(serve, port):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP])
    get(port, "/a%0d%0aFORGED", extra=b"User-Agent: x\r\n")
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /b\x1b[31m HTTP/1.0\r\n\r\n")
    s.recv(100)
    s.close()
    srv.wait_log("GET /a%0d%0aFORGED =>")
    assert not any(l.startswith("FORGED") for l in srv.log.splitlines())


# ------------------------------------------- descriptors the app cannot take

@pytest.mark.parametrize("close", ["/close-stderr", "/close-std"])
def test_an_app_closing_stderr_never_sends_log_lines_to_clients(serve, port, close):
    """Issue 12, item 6: after the app closes fd 2 (and 1), the next
    connections would get those numbers and the server's log lines (with
    other clients' URIs) in their responses. Every response stays exactly
    the app's, and the log lines still reach the log."""
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--threads", "2"])
    assert served(port, close)
    # An idle connection holds the lowest free number while the others come.
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        for i in range(8):
            assert served(port, f"/n/{i}?secret={i}"), i
    finally:
        idle.close()
    for i in range(8):
        srv.wait_log(f"GET /n/{i}?secret={i} => generated")


def test_a_request_body_file_never_becomes_stderr(serve, port):
    """After the app closes fd 2, the next request on the same connection
    (no accept in between) has its body buffered to a temporary file: that
    file must not take number 2, or the app's stderr writes would land in
    a client's body."""
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--post-buffering", "16"])
    body = b"B" * 100
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(b"GET /close-stderr HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"ok /close-stderr\n"):
            first += s.recv(65536)
        s.sendall(b"POST /stderr-echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Length: 100\r\n\r\n" + body)
        data = b""
        while b := s.recv(65536):
            data += b
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n" + body), data
    srv.wait_log("POST /stderr-echo =>")


def test_a_server_started_with_stderr_closed_keeps_its_clients_clean(tmp_path, port):
    """Started with fd 2 (and 0) closed (`2>&- <&-`): /dev/null fills them,
    so no socket ever becomes stderr; the log goes to --logto."""
    log = tmp_path / "f.log"
    proc = popen(
        ["sh", "-c", f'exec "$0" "$@" 2>&- <&- >&-', BIN, "--http", f"127.0.0.1:{port}",
         "--wsgi-file", APP, "--logto", str(log)], cwd=tmp_path, start_new_session=True)
    try:
        wait_text(log, ") ready")
        for i in range(4):
            assert served(port, f"/n/{i}"), i
        wait_text(log, "GET /n/3 =>")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# ------------------------------------------------ a reader that stops reading

class PipedServer:
    """A server whose stdout and stderr are a pipe only the test reads, and
    only when it chooses to (`uwsgi-rs ... | slow-consumer`)."""

    def __init__(self, args, cwd):
        self.r, w = os.pipe()
        self.proc = popen([BIN] + args, cwd=cwd, stdout=w, stderr=w,
                          stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(w)
        self.buf = b""
        self.reader = None

    def start_reading(self):
        def run():
            while True:
                b = os.read(self.r, 65536)
                if not b:
                    return
                self.buf += b
        self.reader = threading.Thread(target=run, daemon=True)
        self.reader.start()

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        if self.reader:
            self.reader.join(5)
        os.close(self.r)


@pytest.fixture
def piped(tmp_path):
    started = []

    def start(args):
        s = PipedServer(args, tmp_path)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


def fill_the_pipe(port, n=600):
    """n requests, each logged (~200 bytes): far more than a 64 KiB pipe."""
    wait_port(port)
    t0 = time.monotonic()
    ok = 0
    for i in range(n):
        if not served(port, f"/n/{i}"):
            break  # (a server stuck on its log: no use waiting for the rest)
        ok += 1
    return ok, time.monotonic() - t0


def test_a_stalled_log_reader_stops_nothing(piped, port):
    """Issue 12, item 7: with nobody reading the log, requests keep being
    served, harakiri fires, and once the reader reads again the log says
    how many lines were dropped; every line that got through is whole."""
    srv = piped(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2",
                 "--harakiri", "2"])
    ok, took = fill_the_pipe(port)
    assert ok == 600, f"{ok} of 600 served"
    assert took < 30, took
    t0 = time.monotonic()
    assert get(port, "/sleep?30") == b""  # killed by harakiri: closed, no answer
    assert time.monotonic() - t0 < 8
    wait_for(lambda: served(port, "/after"), 10, what="a worker serving after harakiri")
    srv.start_reading()
    wait_for(lambda: b"log line(s) dropped" in srv.buf, 5, what="the dropped-lines report")
    text = srv.buf.decode(errors="replace")
    dropped = int(re.search(r"\*\*\* (\d+) log line\(s\) dropped", text).group(1))
    logged = len(access_lines(text))
    assert dropped > 100 and logged > 100, (dropped, logged)
    assert logged + dropped >= 600
    # No line was cut or mixed with another: a line that mentions a request
    # is a whole request line.
    for line in text.splitlines():
        if "GET /n/" in line:
            assert LNAV.match(line), line


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT])
def test_a_stalled_log_reader_does_not_hold_up_a_stop(piped, port, sig):
    srv = piped(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2",
                 "--reload-mercy", "3"])
    assert fill_the_pipe(port, 400)[0] == 400
    t0 = time.monotonic()
    srv.proc.send_signal(sig)
    srv.proc.wait(6)
    assert time.monotonic() - t0 < 5


def test_log_master_keeps_a_printing_app_serving_with_a_stalled_reader(piped, port):
    """With --log-master the app's own stdout and stderr go through the
    master, which never waits: an app that prints on every request keeps
    serving while nobody reads (its prints are dropped and counted)."""
    srv = piped(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2",
                 "--log-master"])
    wait_port(port)
    ok = sum(served(port, "/print") for _ in range(600))
    assert ok == 600
    srv.start_reading()
    wait_for(lambda: b"log line(s) dropped" in srv.buf, 5, what="the dropped-lines report")
    assert b"app output xxx" in srv.buf and b"app error output" in srv.buf


class FifoReader:
    """A log shipper's end of a FIFO: opened without waiting for a writer,
    read without blocking; read() returns everything read so far."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.got = []

    def read(self):
        while True:
            try:
                b = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not b:
                break
            self.got.append(b)
        return b"".join(self.got)

    def close(self):
        os.close(self.fd)


def test_logto_a_fifo_never_waits_for_its_reader(serve, port, tmp_path):
    """--logto naming a FIFO (a log shipper's): the server started only once
    a reader opened it (a shipper down at start: it never started, and
    SIGTERM did nothing), and a reader that stopped reading stopped serving
    after ~320 requests. uWSGI opens it read-write, which never waits. Now
    it starts with nobody reading, serves on with the pipe full, stops at
    once, and a reader that comes finds the lines that fit, whole, and the
    count of those dropped."""
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2",
                 "--logto", str(fifo)], ready=False)
    ok, took = fill_the_pipe(port)
    assert ok == 600, f"{ok} of 600 served"
    assert took < 30, took
    r = FifoReader(fifo)
    try:
        assert r.read(), "the lines written before a reader came are gone"
        wait_for(lambda: served(port, "/after") and b"log line(s) dropped" in r.read(), 10,
                 what="the dropped-lines report")
        wait_for(lambda: b"GET /after =>" in r.read(), 5, what="the next request line")
    finally:
        r.close()
    text = b"".join(r.got).decode(errors="replace")
    assert "uwsgi-rs 0.1.0 serving http" in text
    dropped = int(re.search(r"\*\*\* (\d+) log line\(s\) dropped", text).group(1))
    assert dropped > 100, dropped
    for line in text.splitlines():
        if "GET /n/" in line:
            assert LNAV.match(line), line
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(6)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("reopen", [False, True], ids=["at-start", "after-sigusr1"])
def test_logto_a_fifo_keeps_lines_while_its_reader_restarts(serve, port, tmp_path, reopen):
    """The usual case: a log shipper already reads the FIFO when the server
    starts (or when SIGUSR1 reopens the log), then restarts. The server
    opens the FIFO read-write anyway, as uWSGI opens every log file, so the
    pipe keeps a reader: while nobody reads, requests are served (also one
    whose app print()s: fds 1-2 are on the FIFO too) and their lines wait
    in the pipe for the next reader. Before, it opened write-only when a
    reader was there: with the shipper gone every line failed with EPIPE
    (dropped) and the app's print() raised BrokenPipeError (a 500)."""
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    workers = 1 if reopen else 2  # (one worker: it follows the reopen at once)
    shipper = FifoReader(fifo)
    try:
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                     "--processes", str(workers), "--logto", str(fifo)], ready=False)
        wait_for(lambda: shipper.read().count(b") ready") >= workers, 15, what="workers ready")
        if reopen:
            srv.proc.send_signal(signal.SIGUSR1)
            wait_for(lambda: b"log files reopened" in shipper.read(), 10, what="the reopen")
            # The worker reopens too, on its next line: with the shipper there.
            assert served(port, "/before")
            wait_for(lambda: b"GET /before =>" in shipper.read(), 5, what="GET /before")
    finally:
        shipper.close()
    # Nobody reads: 3 printing requests and 100 others (~20 KB of lines and
    # prints, far less than the 64 KiB a pipe holds).
    paths = ["/print"] * 3 + [f"/n/{i}" for i in range(100)]
    failed = [p for p in paths if not served(port, p)]
    assert not failed, f"{len(failed)} of {len(paths)} not served: {failed[:5]}"
    shipper = FifoReader(fifo)  # the shipper is back
    try:
        wait_for(lambda: b"GET /n/99 =>" in shipper.read(), 10, what="the lines written meanwhile")
        assert served(port, "/after")
        wait_for(lambda: b"GET /after =>" in shipper.read(), 5, what="GET /after")
    finally:
        shipper.close()
    text = b"".join(shipper.got).decode(errors="replace")
    assert text.count("app output " + "x" * 100 + "\n") == 3, text[:2000]
    assert text.count("app error output\n") == 3
    assert "log line(s) dropped" not in text
    # Every request line is whole, and all of those written meanwhile came
    # (two workers log each after its answer: not necessarily in order).
    for line in text.splitlines():
        if "GET /" in line:
            assert LNAV.match(line), line
    stems = sorted(m["stem"] for m in access_lines(text))
    assert stems == sorted(paths + ["/after"]), stems

# ------------------------------------------------------------ log files

def test_logto_writes_everything_to_the_file(serve, port, tmp_path):
    log = tmp_path / "app.log"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--logto", str(log)],
                ready=False)
    wait_text(log, ") ready")
    assert served(port, "/print")
    text = wait_text(log, "GET /print =>")
    # The app's prints go there too, as under uWSGI.
    assert "app output xxx" in text and "app error output" in text
    assert "uwsgi-rs 0.1.0 serving http" in text
    srv.stop()
    assert srv.log == "", srv.log  # nothing on stdout


def test_a_log_file_that_cannot_be_opened_stops_the_start(serve, port, tmp_path):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--logto", str(tmp_path / "no" / "such" / "dir.log")], ready=False)
    assert srv.proc.wait(10) == 1
    assert "cannot open the log file" in srv.log and "dir.log" in srv.log, srv.log


@pytest.fixture
def nobody_dir():
    """A directory user nobody can enter, with the app, and logs/ it may write."""
    d = Path(tempfile.mkdtemp(prefix="uwsgi-rs-log-"))
    try:
        d.chmod(0o755)
        (d / "logapp.py").write_bytes(Path(APP).read_bytes())
        (d / "logapp.py").chmod(0o644)
        (d / "logs").mkdir()
        (d / "logs").chmod(0o777)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_logto_opens_as_root_and_logto2_as_the_worker_user(serve, nobody_dir, nobody_bin):
    app = nobody_dir / "logapp.py"
    for opt, owner in (("--logto", 0), ("--logto2", 65534)):
        port = free_port()
        log = nobody_dir / "logs" / f"{opt[2:]}.log"
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), opt, str(log),
                     "--uid", "nobody", "--gid", "nogroup"], ready=False,
                    cwd=nobody_dir)
        wait_text(log, ") ready")
        assert os.stat(log).st_uid == owner, opt
        assert served(port, "/x")
        wait_text(log, "GET /x =>")
        srv.stop()


# ------------------------------------------------------------ daemonize

def read_pid(path):
    wait_for(lambda: path.exists() and path.read_text().strip(), 10, what=str(path))
    return int(path.read_text())


def stop_daemon(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("opt", ["--daemonize", "--daemonize2"])
def test_daemonize_detaches_and_logs_to_the_file(tmp_path, port, opt):
    """The command returns 0 once the daemon is up (sockets bound, or with
    --daemonize2 the app loaded), the daemon is in its own session, and
    its log is the file."""
    log, pidfile = tmp_path / "d.log", tmp_path / "d.pid"
    r = helpers.run([BIN, "--http", f"127.0.0.1:{port}", "--wsgi-file", APP, opt, str(log),
                     "--pidfile", str(pidfile)], cwd=tmp_path, capture_output=True,
                    timeout=30, stdin=subprocess.DEVNULL)
    pid = read_pid(pidfile)
    try:
        assert r.returncode == 0, r
        assert r.stdout == b"" and r.stderr == b"", r
        if opt == "--daemonize2":
            # Returned after the app loaded: it serves at once.
            assert served(port, "/now")
        # Its own session, and not its leader: it can never get a terminal.
        assert os.getsid(pid) not in (os.getsid(0), pid)
        wait_for(lambda: served(port, "/d"), 10, what="the daemon serving")
        text = wait_text(log, "GET /d =>")
        assert f"master process (pid: {pid})" in text
    finally:
        stop_daemon(pid)
    wait_text(log, "goodbye to uwsgi-rs")


def test_daemonize2_reports_an_app_that_does_not_load(tmp_path, port):
    log = tmp_path / "d.log"
    r = helpers.run([BIN, "--http", f"127.0.0.1:{port}", "--module", "no_such_module_here",
                     "--daemonize2", str(log)], cwd=tmp_path, capture_output=True,
                    timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, r
    assert str(log).encode() in r.stderr, r.stderr
    assert "no_such_module_here" in log.read_text()


def test_daemonize_reports_a_port_in_use_on_the_terminal(tmp_path, port):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        r = helpers.run([BIN, "--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                         "--daemonize", str(tmp_path / "d.log")], cwd=tmp_path,
                        capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and b"127.0.0.1" in r.stderr, r


# ------------------------------------------------------------ logrotate

ROTATIONS = {
    "sigusr1": ([], signal.SIGUSR1),
    "sigusr1-log-master": (["--log-master"], signal.SIGUSR1),
    "sighup-log-reopen": (["--log-reopen"], signal.SIGHUP),
}


@pytest.mark.parametrize("how", list(ROTATIONS))
def test_logrotate_rename_and_signal(serve, port, tmp_path, how):
    """As logrotate does it: rename the file, signal the master. New lines
    go to the new file; no line is lost or written twice."""
    extra, sig = ROTATIONS[how]
    log = tmp_path / "app.log"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--logto", str(log),
                 "--processes", "2", *extra], ready=False)
    wait_text(log, ") ready", count=2)
    for i in range(40):
        assert served(port, f"/n/{i}")
    wait_text(log, "GET /n/39 =>")
    os.rename(log, tmp_path / "app.log.1")
    srv.proc.send_signal(sig)
    if sig == signal.SIGHUP:
        # The rolling reload: the new workers are up.
        wait_text(log, ") ready", count=2, timeout=20)
    else:
        wait_text(log, "log files reopened")
    for i in range(40, 80):
        assert served(port, f"/n/{i}")
    new = wait_text(log, "GET /n/79 =>")
    old = (tmp_path / "app.log.1").read_text()
    seen = [int(m["stem"].rsplit("/", 1)[1]) for m in access_lines(old + new)]
    assert sorted(seen) == list(range(80)), seen
    assert all(int(m["stem"].rsplit("/", 1)[1]) >= 40 for m in access_lines(new))


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_that_dropped_root_follow_a_reopen_through_the_master(serve, nobody_dir,
                                                                       nobody_bin):
    """With --uid the workers cannot reopen a root-owned log: with
    --log-master the master, which writes every line, reopens it alone."""
    tmp_path = nobody_dir
    port = free_port()
    log = tmp_path / "app.log"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(tmp_path / "logapp.py"),
                 "--logto", str(log), "--log-master", "--uid", "nobody", "--gid", "nogroup"],
                ready=False, cwd=tmp_path)
    wait_text(log, ") ready")
    assert served(port, "/before")
    wait_text(log, "GET /before =>")
    os.rename(log, tmp_path / "app.log.1")
    srv.proc.send_signal(signal.SIGUSR1)
    wait_text(log, "log files reopened")
    assert served(port, "/after")
    assert "GET /after =>" in wait_text(log, "GET /after =>")
    assert "GET /after" not in (tmp_path / "app.log.1").read_text()


@pytest.mark.parametrize("log_master", [[], ["--log-master"]], ids=["direct", "log-master"])
def test_touch_logreopen_and_touch_logrotate(serve, port, tmp_path, log_master):
    """--touch-logreopen: logrotate renames the file and touches a file
    instead of signalling. --touch-logrotate: the server renames it itself
    (to --log-backupname). Either way no line is lost or written twice, and
    the workers follow into the new file."""
    log, backup = tmp_path / "app.log", tmp_path / "app.log.bak"
    reopen_file, rotate_file = tmp_path / "reopen", tmp_path / "rotate"
    reopen_file.write_text("")
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--logto", str(log),
           "--processes", "2", "--touch-logreopen", str(reopen_file),
           "--touch-logrotate", str(rotate_file), "--log-backupname", str(backup),
           *log_master], ready=False)
    wait_text(log, ") ready", count=2)
    for i in range(20):
        assert served(port, f"/n/{i}")
    wait_text(log, "GET /n/19 =>")
    os.rename(log, tmp_path / "app.log.1")
    later = time.time() + 5
    os.utime(reopen_file, (later, later))
    wait_text(log, f"{reopen_file} touched (--touch-logreopen): log files reopened")
    for i in range(20, 40):
        assert served(port, f"/n/{i}")
    wait_text(log, "GET /n/39 =>")
    # Creating the rotate file is a touch too.
    rotate_file.write_text("")
    wait_text(log, f"{rotate_file} touched (--touch-logrotate): log files rotated")
    for i in range(40, 60):
        assert served(port, f"/n/{i}")
    new = wait_text(log, "GET /n/59 =>")
    first, second = (tmp_path / "app.log.1").read_text(), backup.read_text()
    assert "triggering rotation to " + str(backup) in second
    chunks = [first, second, new]
    for lo, text in zip((0, 20, 40), chunks):
        got = sorted(int(m["stem"].rsplit("/", 1)[1]) for m in access_lines(text))
        assert got == list(range(lo, lo + 20)), (lo, got)


def test_log_maxsize_rotates_to_the_backup_name(serve, port, tmp_path):
    log, backup = tmp_path / "app.log", tmp_path / "app.log.old"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--logto", str(log),
                 "--log-maxsize", "20000", "--log-backupname", str(backup)], ready=False)
    wait_text(log, ") ready")
    for i in range(130):  # ~27 KB of request lines: one rotation
        assert served(port, f"/n/{i}")
    wait_for(lambda: backup.exists(), 10, what="the rotated file")
    wait_text(log, "GET /n/129 =>")
    old, new = backup.read_text(), log.read_text()
    assert "triggering rotation to " + str(backup) in old
    assert len(new) < 20000
    seen = sorted(int(m["stem"].rsplit("/", 1)[1]) for m in access_lines(old + new))
    assert seen == list(range(130))
    srv.stop()


def test_log_maxsize_rotations_within_one_second_keep_every_line(serve, port, tmp_path):
    """--log-maxsize without --log-backupname renames the log to
    PATH.UNIXTIME; a second rotation in the same second renamed over the
    first, as uWSGI does, and its lines were gone (rotating every ~2 KB,
    113 of 130 request lines lost). A rotation whose name is taken gets
    PATH.UNIXTIME.N."""
    log = tmp_path / "app.log"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--logto", str(log),
                 "--log-maxsize", "2000"], ready=False)
    wait_text(log, ") ready")
    for i in range(130):
        assert served(port, f"/n/{i}")

    def seen():
        text = "".join(p.read_text() for p in tmp_path.glob("app.log*"))
        return sorted(int(m["stem"].rsplit("/", 1)[1]) for m in access_lines(text))
    wait_for(lambda: seen() == list(range(130)), 10, what=f"every request line ({seen()})")
    assert len(list(tmp_path.glob("app.log.*"))) >= 10
    srv.stop()

# ------------------------------------------------------------ line shapes

def test_log_date_prefixes_server_lines(serve, tmp_path):
    port = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--log-date"])
    assert served(port, "/x")
    srv.wait_log("GET /x =>")
    ready = next(l for l in srv.log.splitlines() if ") ready" in l)
    assert CTIME.match(ready.split(" - ", 1)[0]), ready
    # Request lines are uWSGI's, without a prefix (they carry their date).
    assert any(LNAV.match(l) for l in srv.log.splitlines())
    srv.stop()
    port = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--logdate=%Y-%m-%dT%H:%M:%S"])
    ready = next(l for l in srv.log.splitlines() if ") ready" in l)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d - worker 1", ready), ready


def test_log_format_with_uwsgis_variables(serve, port):
    fmt = ('%(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size) '
           '"%(referer)" "%(uagent)" host=%(host) rsize=%(rsize) hsize=%(hsize) cl=%(cl) '
           'ms=%(msecs) us=%(micros) pid=%(pid) wid=%(wid) core=%(core) trace=%(var.HTTP_X_TRACE) '
           'epoch=%(epoch) ctime=[%(ctime)] mem=%(rssM) unknown=%(nope)')
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--log-format", fmt])
    r = get(port, "/f?a=b", extra=b"Host: example.org\r\nReferer: http://r/\r\n"
                                  b"User-Agent: ua/1\r\nX-Trace: t-1\r\n")
    head = r.partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    srv.wait_log('"GET /f?a=b HTTP/1.0"')
    line = next(l for l in srv.log.splitlines() if '"GET /f?a=b' in l)
    pid = srv.worker_pids()[1]
    m = re.fullmatch(
        r'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
        r'"GET /f\?a=b HTTP/1\.0" 200 (\d+) "http://r/" "ua/1" host=example\.org '
        r'rsize=6 hsize=(\d+) cl=0 ms=\d+ us=\d+ pid=(\d+) wid=1 core=0 trace=t-1 '
        r'epoch=(\d+) ctime=\[(.{24})\] mem=(\d+) unknown=-', line)
    assert m, line
    assert int(m[1]) == 6 + len(head) and int(m[2]) == len(head)
    assert int(m[3]) == pid and abs(int(m[4]) - time.time()) < 60
    assert CTIME.match(m[5]) and int(m[6]) > 0


def test_logformat_strftime_uses_the_log_date_format(serve, port):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--log-format", "at %(ftime) %(method) %(uri)", "--logformat-strftime",
                 "--log-date=%Y/%m/%d"])
    assert served(port, "/t")
    srv.wait_log(" GET /t")
    assert re.search(r"^at \d{4}/\d\d/\d\d GET /t$", srv.log, re.M), srv.log


def test_log_micros(serve, port):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--log-micros"])
    assert served(port, "/u")
    srv.wait_log("GET /u =>")
    assert access_lines(srv.log)[0]["unit"] == "micros"


def test_disable_logging_with_log_4xx_5xx_and_slow(serve, port):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--disable-logging",
                 "--log-4xx", "--log-5xx", "--log-slow", "300", "--threads", "2"])
    for path in ("/plain", "/status/404", "/status/503", "/status/302", "/sleep?0.5"):
        get(port, path)
    srv.wait_log("GET /sleep?0.5 =>")
    logged = {m["stem"] for m in access_lines(srv.log)}
    assert logged == {"/status/404", "/status/503", "/sleep"}, srv.log


def test_log_x_forwarded_for(serve, port):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--log-x-forwarded-for"])
    get(port, "/xff", extra=b"X-Forwarded-For: 203.0.113.9\r\n")
    get(port, "/direct")
    srv.wait_log("GET /direct =>")
    ips = {m["stem"]: m["ip"] for m in access_lines(srv.log)}
    assert ips == {"/xff": "203.0.113.9", "/direct": "127.0.0.1"}


def test_loggers_request_logger_and_routes(serve, port, tmp_path):
    """uWSGI's loggers: unnamed loggers get every line, the request logger
    the request lines, and a named logger only what a route sends it (here
    the app's stderr, which the master relays)."""
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--logger", f"file:{tmp_path / 'main.log'}",
                 "--req-logger", f"file:{tmp_path / 'req.log'}",
                 "--logger", f"apperr file:{tmp_path / 'apperr.log'}",
                 "--log-route", "apperr ^app error"], ready=False)
    main = wait_text(tmp_path / "main.log", ") ready")
    assert served(port, "/print")
    req = wait_text(tmp_path / "req.log", "GET /print =>")
    err = wait_text(tmp_path / "apperr.log", "app error output")
    main = wait_text(tmp_path / "main.log", "app output xxx")
    assert "GET /print" not in main and "app error output" not in main
    assert req.count("\n") == 1 and LNAV.match(req.strip()), req
    assert err == "app error output\n", err
    srv.stop()
    assert srv.log == ""


def test_log_encoders_make_json_lines(serve, port):
    """uWSGI's encoder chain: every line through `json` then `nl`; an
    encoder for one logger leaves the others alone."""
    import json
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--log-encoder", 'json {"year":"${strftime:%Y}","msg":"${msg}"}',
                 "--log-encoder", "nl",
                 "--log-req-encoder", "prefix:nobody never: "])
    assert served(port, '/q"uote')
    srv.wait_log("GET /q")
    records = [json.loads(l) for l in srv.log.splitlines()]
    assert all(r["year"] == time.strftime("%Y") for r in records)
    msgs = [r["msg"] for r in records]
    assert any(") ready: app " in m for m in msgs)
    assert any((m := LNAV.match(x)) and m["stem"] == '/q"uote' for x in msgs), msgs
    assert not any("never" in m for m in msgs)


def test_log_drain_req_route_chmod_big_and_zero(serve, port, tmp_path):
    """--log-drain drops matching lines; --log-req-route sends matching
    request lines to a named request logger only; --logfile-chmod sets the
    file's mode; --log-big and --log-zero log with --disable-logging."""
    main, slow = tmp_path / "main.log", tmp_path / "statuses.log"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--logto", str(main),
                 "--logfile-chmod", "600", "--log-drain", "^spawned ",
                 "--req-logger", f"statuses file:{slow}",
                 "--log-req-route", "statuses => generated \\d+ bytes in \\d+ msecs \\(HTTP/1.0 404",
                 "--disable-logging", "--log-zero", "--log-big", "100", "--log-4xx"],
                ready=False)
    wait_text(main, ") ready")
    get(port, "/status/404")                  # 4xx: logged, routed to statuses
    assert served(port, "/small")              # 12 bytes: not logged
    get(port, "/env")                          # > 100 bytes: logged (big)
    get(port, "/empty")                        # no body: logged (zero)
    text = wait_text(main, "GET /empty =>")
    routed = wait_text(slow, "GET /status/404 =>")
    assert "spawned uwsgi-rs worker" not in text, text
    assert "GET /env =>" in text and "/small" not in text and "/status/404" not in text
    assert routed.count("\n") == 1 and LNAV.match(routed.strip()), routed
    assert (main.stat().st_mode & 0o777) == 0o600


def test_a_unix_datagram_logger_absent_at_start_and_restarted_gets_the_lines(serve, port,
                                                                            tmp_path):
    """`--logger socket:/path` (and syslog's /dev/log, the same socket
    kind): the server starts while nothing listens there (uWSGI does; it
    refused to start), and a log daemon that restarts (a new socket at the
    same path) gets the lines again (none reached it before: the socket
    was connected to the first receiver for ever)."""
    path = str(tmp_path / "log.sock")

    def receiver():
        r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        r.bind(path)
        r.settimeout(5)
        return r

    def until(r, needle):
        got = b""
        while needle not in got:
            got += r.recv(65536)
        return got

    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2",
                 "--logger", f"socket:{path}"], ready=False)
    wait_port(port)
    assert f"{path} is not reachable now" in srv.log, srv.log
    for restart in range(2):
        r = receiver()
        try:
            for i in range(4):  # both workers' lines
                assert served(port, f"/up{restart}-{i}")
                until(r, f"GET /up{restart}-{i} =>".encode())
        finally:
            r.close()
            os.unlink(path)
        assert served(port, f"/down{restart}")  # nobody listens: dropped
    assert srv.proc.poll() is None


def test_logto_udp_and_a_unix_datagram_logger(serve, port, tmp_path):
    """uWSGI's `logto HOST:PORT` sends each line as a UDP datagram;
    `--logger socket:/path` to a unix datagram socket."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    path = str(tmp_path / "log.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(path)
    unix.settimeout(5)
    try:
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                     "--logto", f"127.0.0.1:{udp.getsockname()[1]}"], ready=False)
        got = b""
        while b") ready" not in got:
            got += udp.recv(65536) + b"\n"
        assert served(port, "/udp")
        while b"GET /udp =>" not in got:
            got += udp.recv(65536)
        srv.stop()
        port2 = free_port()
        serve(["--http", f"127.0.0.1:{port2}", "--wsgi-file", APP,
               "--logger", f"socket:{path}"], ready=False)
        got = b""
        while b") ready" not in got:
            got += unix.recv(65536)
        assert served(port2, "/unix")
        while b"GET /unix =>" not in got:
            got += unix.recv(65536)
    finally:
        udp.close()
        unix.close()
