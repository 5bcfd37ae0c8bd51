"""WSGI app for the control tests (master fifo, hooks, daemons, systemd,
py-call-osafterfork): /env (os.environ as JSON), /pid, /forked (whether
os.register_at_fork's after_in_child ran in this process), /signal (whether
the SIGUSR2 handler set at import has run here), /sleep?s=N (with
&mark=FILE: FILE is created once the request is in the app)."""

import json
import os
import signal
import time
from urllib.parse import parse_qs

_AT_IMPORT = os.getpid()
_FORK_HOOK = {"ran_in": None}
_SIGNALS = {"usr2": 0}


def _after_in_child():
    _FORK_HOOK["ran_in"] = os.getpid()


os.register_at_fork(after_in_child=_after_in_child)


def _on_usr2(signum, frame):
    _SIGNALS["usr2"] += 1


signal.signal(signal.SIGUSR2, _on_usr2)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/env":
        body = json.dumps(dict(os.environ)).encode()
    elif path == "/forked":
        body = json.dumps({"pid": os.getpid(), "imported_in": _AT_IMPORT,
                           "after_in_child_ran_in": _FORK_HOOK["ran_in"]}).encode()
    elif path == "/signal":
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(100):  # Python runs the handler between bytecodes
            if _SIGNALS["usr2"]:
                break
            time.sleep(0.01)
        body = json.dumps({"usr2": _SIGNALS["usr2"]}).encode()
    elif path == "/sleep":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        if "mark" in q:
            open(q["mark"][0], "w").close()
        time.sleep(float(q.get("s", ["1"])[0]))
        body = b"slept"
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
