"""systemd integration, driven by a fake systemd (tests/fake_systemd.py):
readiness through NOTIFY_SOCKET (READY=1 once the workers accept,
RELOADING=1 and READY=1 around a reload, STOPPING=1, MAINPID, STATUS,
WATCHDOG=1; abstract and path addresses) and socket activation
(LISTEN_FDS: the passed sockets matched to the configured addresses, or
served as they are; their files left to systemd)."""

import os
import signal
import socket
import struct

import pytest

from conftest import APPS, free_port, http_get
from fake_systemd import FakeSystemd
from helpers import read_socket

APP = str(APPS / "ctl_app.py")


@pytest.fixture
def systemd():
    fake = FakeSystemd()
    yield fake
    fake.close()


def uwsgi_get(path, uri="/"):
    """A GET over the uwsgi protocol on a UNIX socket; the raw answer."""
    pairs = [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", uri.encode()), (b"REQUEST_URI", uri.encode()),
             (b"QUERY_STRING", b""), (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"HTTP_HOST", b"x")]
    block = b"".join(struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v for k, v in pairs)
    return read_socket(str(path), struct.pack("<BHB", 0, len(block), 0) + block)


def test_ready_reloading_stopping(serve, port, systemd):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--processes", "2"],
                workers=2, env=systemd.env, ready=False)
    i, ready = systemd.wait_for("READY")
    assert ready["READY"] == "1"
    assert ready["MAINPID"] == str(srv.proc.pid)
    assert "2 worker(s)" in ready["STATUS"], ready
    # READY means serving: both workers said so before it was sent.
    assert srv.log.count(") ready") == 2, srv.log
    assert http_get(port)[0] == 200
    # The master took NOTIFY_SOCKET out of the environment it hands on.
    assert "NOTIFY_SOCKET" not in http_get(port, "/env")[2].decode()

    os.kill(srv.proc.pid, signal.SIGHUP)
    j, reloading = systemd.wait_for("RELOADING", after=i + 1)
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    k, ready2 = systemd.wait_for("READY", after=j + 1)
    # Ready again only once every worker is of the new generation.
    assert "generation 2" in ready2["STATUS"], ready2
    assert srv.log.count(") ready") == 4, srv.log

    srv.proc.send_signal(signal.SIGTERM)
    systemd.wait_for("STOPPING", after=k + 1)
    assert srv.proc.wait(15) == 0


def test_notify_socket_path_and_watchdog(serve, port, tmp_path):
    fake = FakeSystemd(notify_path=tmp_path / "notify")
    try:
        env = dict(fake.env, WATCHDOG_USEC="400000")  # every 200 ms
        srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP], env=env, ready=False)
        fake.wait_for("READY")
        i, _ = fake.wait_for("WATCHDOG")
        fake.wait_for("WATCHDOG", after=i + 1, timeout=3)
        srv.stop()
    finally:
        fake.close()


def test_socket_activation_without_configured_listeners(serve, tmp_path, systemd):
    """A .socket unit with two sockets and an ini with none: both served,
    each with the protocol its FileDescriptorName says."""
    tcp = systemd.listen_tcp()
    port = tcp.getsockname()[1]
    path = tmp_path / "app.sock"
    unix = systemd.listen_unix(path, mode=0o660)
    prefix, fds = systemd.activation([tcp, unix], ["http", "uwsgi"])
    srv = serve(["--wsgi-file", APP, "--processes", "2"], workers=2, env=systemd.env,
                prefix=prefix, pass_fds=fds, ready=False)
    systemd.wait_for("READY")
    assert srv.log.count("inherited from systemd") == 2, srv.log
    status, _, body = http_get(port, "/")
    assert status == 200, body
    answer = uwsgi_get(path)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    # systemd's socket file: the server neither changes nor removes it.
    assert oct(os.stat(path).st_mode & 0o777) == "0o660"
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(15) == 0
    assert path.exists()
    # The listening socket lives on in systemd (here: this test), ready for
    # the next activation.
    c = socket.create_connection(("127.0.0.1", port), timeout=2)
    c.close()


def test_socket_activation_matches_configured_addresses(serve, tmp_path, systemd):
    """The ini names the addresses systemd passes: the server takes the
    passed sockets with the ini's protocols instead of binding (which would
    fail: the addresses are in use), and binds what systemd did not pass."""
    tcp = systemd.listen_tcp()
    port = tcp.getsockname()[1]
    other = free_port()
    prefix, fds = systemd.activation([tcp])
    srv = serve(["--http-socket", f"127.0.0.1:{port}", "--http-socket", f"127.0.0.1:{other}",
                 "--wsgi-file", APP], env=systemd.env, prefix=prefix, pass_fds=fds, ready=False)
    systemd.wait_for("READY")
    assert f"uwsgi-rs socket 127.0.0.1:{port} (http) inherited from systemd (fd 3)" in srv.log
    assert http_get(port)[0] == 200
    assert http_get(other)[0] == 200
    srv.stop()


def test_listen_fds_for_another_process_are_not_taken(serve, port, tmp_path):
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP], env=env)
    assert "inherited from systemd" not in srv.log
    assert http_get(port)[0] == 200
