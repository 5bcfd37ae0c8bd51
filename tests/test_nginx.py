"""uwsgi-rs behind Debian's nginx, speaking the uwsgi protocol over a UNIX
socket (uwsgi_pass)."""

import hashlib
import http.client
import json
import os
import signal
import time

import pytest

from conftest import APPS, http_get
from helpers import wrk_during
ECHO = str(APPS / "core_echo.py")


def start_app(serve, sock):
    return serve(["--socket", str(sock), "--wsgi-file", ECHO, "--master",
                  "--processes", "2", "--threads", "2"], workers=2)


def test_get_through_nginx(serve, nginx):
    port, sock = nginx
    srv = start_app(serve, sock)
    status, headers, body = http_get(port, "/env/some/caf%C3%A9?a=1&b=two",
                                     headers={"X-Custom": "through nginx", "X_Custom": "spoofed"})
    assert status == 200, body
    v = json.loads(body)["values"]
    assert v["REQUEST_METHOD"] == "GET"
    assert v["PATH_INFO"] == "/env/some/cafÃ©"
    assert v["QUERY_STRING"] == "a=1&b=two"
    assert v["REQUEST_URI"] == "/env/some/caf%C3%A9?a=1&b=two"
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert v["SERVER_PORT"] == str(port)
    assert v["REMOTE_ADDR"] == "127.0.0.1"
    # nginx drops header names with "_" by default (underscores_in_headers
    # off): on a uwsgi socket that is the proxy's decision (README).
    assert v["HTTP_X_CUSTOM"] == "through nginx"
    assert v["SCRIPT_NAME"] == ""
    assert v["wsgi.url_scheme"] == "http"
    assert v["wsgi.version"] == [1, 0]
    # Plain text, a chunked (generator) response and a HEAD.
    status, _, body = http_get(port, "/say/hello")
    assert status == 200 and body == b"hello"
    status, _, body = http_get(port, "/chunked")
    assert status == 200 and body == b"hello chunked world"
    assert "GET /env/some/caf%C3%A9?a=1&b=two" in srv.log


def test_post_through_nginx(serve, nginx):
    port, sock = nginx
    start_app(serve, sock)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("POST", "/env/form?x=y", body=b"field=value&other=2",
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse()
    v = json.loads(r.read())["values"]
    assert r.status == 200
    assert v["REQUEST_METHOD"] == "POST"
    assert v["PATH_INFO"] == "/env/form"
    assert v["QUERY_STRING"] == "x=y"
    assert v["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert v["CONTENT_LENGTH"] == "19"
    c.request("POST", "/echo", body=b"echo me through nginx")
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"echo me through nginx"
    big = os.urandom(5 * 1024 * 1024)
    c.request("POST", "/sha", body=big)
    r = c.getresponse()
    d = json.loads(r.read())
    assert r.status == 200
    assert d["length"] == len(big)
    assert d["sha256"] == hashlib.sha256(big).hexdigest()
    c.close()


def test_app_error_through_nginx(serve, nginx):
    port, sock = nginx
    srv = start_app(serve, sock)
    status, _, _ = http_get(port, "/raise")
    assert status == 500
    status, _, body = http_get(port, "/say/after")
    assert status == 200 and body == b"after"


@pytest.mark.serial  # loads the machine
def test_recycling_and_reloads_behind_nginx_lose_no_request(serve, nginx):
    """nginx opens a uwsgi connection per request, and the kernel wakes one
    worker per connection on the shared socket (EPOLLEXCLUSIVE): workers
    recycling every 50 requests and two rolling reloads under wrk must cost
    no request (nginx answers 502 for any the server drops)."""
    port, sock = nginx
    srv = serve(["--socket", str(sock), "--wsgi-file", ECHO, "--master",
                 "--processes", "2", "--threads", "2", "--disable-logging",
                 "--max-requests", "50", "--min-worker-lifetime", "0"], workers=2)

    def reloads():
        for _ in range(2):
            time.sleep(2)
            os.kill(srv.proc.pid, signal.SIGHUP)

    reqs, errors, non2xx, out = wrk_during(f"http://127.0.0.1:{port}/say/x", 16, 6, reloads)
    assert srv.log.count("SIGHUP received") == 2
    assert errors == 0 and non2xx == 0, out
    assert reqs > 500, out
    # Workers did recycle all along (and every one was replaced).
    assert srv.log.count("is done (max requests 50 reached)") >= 4, srv.log[-3000:]
    status, _, body = http_get(port, "/say/after")
    assert status == 200 and body == b"after"
