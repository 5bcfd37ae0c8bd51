#!/usr/bin/env python3
"""Make the README's images with the server itself: docs/flamegraph.svg
(`uwsgi-rs --profile --format svg`) and docs/dashboard.png (headless
chromium's screenshot of the dashboard), on examples/shop.py under a mixed
load with one stuck request.

    python3 scripts/docs_images.py [--uwsgi-rs .venv/bin/uwsgi-rs]
"""
import argparse
import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(port, stop):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    rnd = random.Random(port)
    while not stop.is_set():
        path = rnd.choice(["/api/orders"] * 5 + ["/api/search?q=lamp"] * 3
                          + ["/api/checkout"] * 2 + ["/health"] * 4)
        try:
            c.request("GET", path)
            c.getresponse().read()
        except OSError:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uwsgi-rs", default=os.path.join(ROOT, ".venv", "bin", "uwsgi-rs"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-docs-")
    port, sport = free_port(), free_port()
    base = os.path.join(tmp, "tb.")
    srv = subprocess.Popen([args.uwsgi_rs, "--http", "127.0.0.1:%d" % port, "--wsgi-file",
                            os.path.join(ROOT, "examples", "shop.py"), "--master",
                            "--processes", "2", "--threads", "4", "--disable-logging",
                            "--py-tracebacker", base, "--py-tracebacker-slow", "5",
                            "--stats", "127.0.0.1:%d" % sport, "--stats-http",
                            "--stats-dashboard"],
                           cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    stop = threading.Event()
    try:
        time.sleep(2)
        threads = [threading.Thread(target=load, args=(port, stop), daemon=True)
                   for _ in range(4)]
        for t in threads:
            t.start()
        out = os.path.join(ROOT, "docs", "flamegraph.svg")
        subprocess.run([args.uwsgi_rs, "--profile", base, "--duration", "10", "--format",
                        "svg", "--output", out], check=True)
        # the dashboard, once it has a minute of charts and a stuck request
        # is past --py-tracebacker-slow
        time.sleep(30)
        stuck = threading.Thread(target=lambda: subprocess.run(
            ["curl", "-s", "-m", "70", "http://127.0.0.1:%d/report?year=2026" % port],
            capture_output=True), daemon=True)
        stuck.start()
        subprocess.run(["curl", "-s", "-o", "/dev/null",
                        "http://127.0.0.1:%d/dashboard/state" % sport])
        time.sleep(25)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                        "--user-data-dir=%s" % os.path.join(tmp, "chromium"),
                        "--virtual-time-budget=5000", "--window-size=1400,1900",
                        "--screenshot=%s" % os.path.join(ROOT, "docs", "dashboard.png"),
                        "http://127.0.0.1:%d/" % sport], check=True, capture_output=True)
        print("wrote docs/flamegraph.svg and docs/dashboard.png")
    finally:
        stop.set()
        os.killpg(srv.pid, signal.SIGQUIT)
        srv.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
