"""Helper app for the observability tests (--tracebacks, --stats, slow log).

GET /ping         -> "<worker_id> <pid>" at once
GET /sleep/N      -> sleeps N seconds in Python (obs_nap), then the same
GET /raise        -> the app raises RuntimeError (an exception in the stats)
GET /locals/N     -> obs_locals(): holds a 10,000-char string, a value whose
                     __repr__ raises and a small int as locals, sleeps N s
With OBS_APP_THREAD=1 an app thread named obs-app-thread idles in Python.
"""
import os
import threading
import time

import uwsgi


class BadRepr:
    def __repr__(self):
        raise ValueError("no repr for you")


def obs_nap(seconds):
    time.sleep(seconds)


def obs_app_idle():
    while True:
        time.sleep(0.05)


if os.environ.get("OBS_APP_THREAD") == "1":
    threading.Thread(target=obs_app_idle, name="obs-app-thread", daemon=True).start()


def obs_locals(seconds):
    big_string = "x" * 10000
    bad_value = BadRepr()
    small_int = 12345
    time.sleep(seconds)
    return len(big_string) + small_int + (bad_value is not None)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/sleep/"):
        obs_nap(float(path[len("/sleep/"):]))
    elif path.startswith("/locals/"):
        obs_locals(float(path[len("/locals/"):]))
    elif path == "/raise":
        raise RuntimeError("obs_app raised on purpose")
    body = ("%d %d" % (uwsgi.worker_id(), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
