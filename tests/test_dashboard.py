"""The dashboard (issue 15): `--stats ADDR --stats-http` gives browsers
(`Accept: text/html`) one self-contained page, checked in a real browser
(headless chromium: the rendered DOM and a screenshot), while other
clients keep uWSGI's JSON; who may see it (UNIX socket, or TCP with
--stats-dashboard)."""

import json
import os
import re
import shutil
import socket
import subprocess
import time

from conftest import Bg
from helpers import copy_app, free_port, lineno_of, quick_stop, read_socket, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path, url, *what):
    """Run headless chromium on `url` with a virtual time budget; `what` is
    --dump-dom or --screenshot=FILE."""
    assert CHROMIUM, "chromium is not installed (scripts/setup.sh installs it)"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'chromium'}",
                        "--virtual-time-budget=5000", "--window-size=1400,1700", *what, url],
                       capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    return r.stdout.decode(errors="replace")


def http(addr, path, accept=None, timeout=10):
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
    if accept:
        head += f"Accept: {accept}\r\n"
    data = read_socket(addr, send=(head + "\r\n").encode(), timeout=timeout)
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]


def test_dashboard_in_a_real_browser(serve, port, tmp_path):
    app = copy_app("slow.py", tmp_path, os.path.join(ROOT, "examples"))
    sport = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--processes", "2", "--threads", "2", "--stats", f"127.0.0.1:{sport}",
                 "--stats-http", "--stats-dashboard", "--py-tracebacker-slow", "1"], workers=2)
    addr = ("127.0.0.1", sport)
    started = time.monotonic()
    Bg(port, "/report?id=42&x=<b>", timeout=120)
    # Someone has been looking (the page polls this); the first traceback
    # arrives within a second of the first look.
    def busy_with_traceback():
        _, body = http(addr, "/dashboard/state")
        cores = [c for w in json.loads(body)["workers"] for c in w["cores"] if c["request"]]
        return cores and cores[0]["frames"] and cores[0]
    core = wait_for(busy_with_traceback, 10, "a busy core with its traceback")
    assert core["request"]["uri"] == "/report?id=42&x=<b>"
    # The page is read once the request is past --py-tracebacker-slow (1 s):
    # a browser that starts fast would otherwise see it not slow yet.
    time.sleep(max(0.0, started + 1.5 - time.monotonic()))
    dom = chromium(tmp_path, f"http://127.0.0.1:{sport}/", "--dump-dom")
    assert "GET /report?id=42&amp;x=&lt;b&gt;" in dom, dom[-3000:]  # text, not markup
    assert "<b>" not in dom.split("<body", 1)[1].replace("<b>worker", ""), "no injection"
    # a function of the live traceback, with its file and line
    dormi = lineno_of(app, "time.sleep(60)")
    assert re.search(rf'File "{re.escape(str(app))}", line {dormi}, in <span class="fn">dormi</span>',
                     dom), dom[-3000:]
    assert 'class="core slow"' in dom, "past --py-tracebacker-slow: highlighted"
    assert re.search(r'<table id="workers">.*?<td>1</td><td>\d+</td>', dom, re.S)
    shot = tmp_path / "dashboard.png"
    chromium(tmp_path, f"http://127.0.0.1:{sport}/", f"--screenshot={shot}")
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    # the flame graph it embeds: inferno's SVG of the last seconds
    status, svg = http(addr, "/dashboard/flamegraph.svg?seconds=30")
    assert status == 200 and b"<svg" in svg
    wait_for(lambda: b"dormi" in http(addr, "/dashboard/flamegraph.svg?seconds=30")[1], 10,
             "the profile in the flame graph")
    # The request sleeps 60 s: SIGTERM would wait out the stop's 15 s.
    quick_stop(srv)


def test_json_for_everyone_else_and_no_dashboard_on_tcp_without_opt_in(serve, port, tmp_path):
    app = copy_app("slow.py", tmp_path, os.path.join(ROOT, "examples"))
    sport = free_port()
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
           "--stats", f"127.0.0.1:{sport}", "--stats-http"])
    addr = ("127.0.0.1", sport)
    status, body = http(addr, "/")
    assert status == 200 and json.loads(body)["workers"][0]["id"] == 1
    status, body = http(addr, "/", accept="application/json")
    assert status == 200 and json.loads(body)["version"].startswith("uwsgi-rs")
    for path in ("/", "/dashboard/state", "/dashboard/flamegraph.svg"):
        status, body = http(addr, path, accept="text/html")
        assert status == 403 and b"--stats-dashboard" in body, (path, body)
    status, body = http(addr, "/metrics")
    assert status == 200 and b"uwsgi_rs_requests_total" in body


def test_dashboard_on_a_unix_stats_socket(serve, port, tmp_path):
    """On a UNIX socket (0600, same-uid peers) the page is served without an
    opt-in: whoever can connect could read the tracebacker sockets too."""
    app = copy_app("slow.py", tmp_path, os.path.join(ROOT, "examples"))
    sock = tmp_path / "stats.sock"
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
           "--stats", str(sock), "--stats-http"])
    assert oct(os.stat(sock).st_mode & 0o777) == "0o600"
    status, body = http(str(sock), "/", accept="text/html,application/xhtml+xml")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert b"<script src" not in body and b"<link" not in body
    status, body = http(str(sock), "/dashboard/state")
    assert status == 200 and json.loads(body)["workers"][0]["cores"][0]["state"] == "idle"
    status, body = http(str(sock), "/")
    assert json.loads(body)["workers"], "JSON for clients that do not ask for HTML"
