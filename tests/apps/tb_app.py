"""Helper app for the tracebacker / harakiri tests.

GET /ping           -> "<worker_id> <pid>" at once
GET /sleep/N        -> sleeps N seconds in Python (nap), then the same
GET /busy           -> holds the GIL in C: sum(range(10**10))
GET /user0          -> uwsgi.set_user_harakiri(0), then sleeps 4 s
GET /user1          -> uwsgi.set_user_harakiri(1), then sleeps 10 s
With TB_PID_THREAD=1 an app thread named tb-pid-<pid> idles in Python.
"""
import os
import threading
import time

import uwsgi


def crunch():
    return sum(range(10**10))


def nap(seconds):
    time.sleep(seconds)


def _idle():
    while True:
        time.sleep(0.05)


if os.environ.get("TB_PID_THREAD") == "1":
    threading.Thread(target=_idle, name="tb-pid-%d" % os.getpid(), daemon=True).start()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/sleep/"):
        nap(float(path[len("/sleep/"):]))
    elif path == "/busy":
        crunch()
    elif path == "/user0":
        uwsgi.set_user_harakiri(0)
        nap(4)
    elif path == "/user1":
        uwsgi.set_user_harakiri(1)
        nap(10)
    body = ("%d %d" % (uwsgi.worker_id(), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
