"""App for the worker lifecycle tests (tests/test_lifecycle.py): recycling,
reloads, mercy, memory limits, signal handlers the app installs.

Endpoints:
  /pid                  {"pid": ...}
  /sleep?s=N&mark=PATH  appends its pid to PATH when it starts, sleeps N s
                        (with &until=FILE: until FILE exists, at most N s)
  /forever?mark=PATH    the same, for an hour (a request that never returns)
  /leak?mb=N            keeps N more MiB (touched), answers the RSS in KiB
  /signals              installs handlers for SIGTERM, SIGHUP, SIGINT and
                        SIGUSR1 (main thread only: use --threads 1)
  /version              VERSION of the module named by LIFE_IMPORT
  /raise                raises

LIFE_SIGNALS_AT_IMPORT=1 installs the handlers when the module is imported;
each handler appends "<signal number> <pid>" to LIFE_SIGNAL_LOG and returns.
LIFE_IMPORT names a module imported at import time (--py-autoreload tests).
"""

import importlib
import json
import os
import signal
import time

_kept = []


def _record(signum, frame):
    log = os.environ.get("LIFE_SIGNAL_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{signum} {os.getpid()}\n")


def _install():
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, _record)


if os.environ.get("LIFE_SIGNALS_AT_IMPORT") == "1":
    _install()

_helper = importlib.import_module(os.environ["LIFE_IMPORT"]) if os.environ.get("LIFE_IMPORT") else None


def _qs(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _json(start_response, obj):
    body = json.dumps(obj).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _mark(q):
    if "mark" in q:
        with open(q["mark"], "a") as f:
            f.write(f"{os.getpid()}\n")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = _qs(environ)
    if path == "/sleep":
        _mark(q)
        deadline = time.monotonic() + float(q.get("s", "1"))
        if "until" in q:
            while not os.path.exists(q["until"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            time.sleep(float(q.get("s", "1")))
    elif path == "/forever":
        _mark(q)
        time.sleep(3600)
    elif path == "/leak":
        chunk = bytearray(int(q.get("mb", "10")) << 20)
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1
        _kept.append(chunk)
        return _json(start_response, {"pid": os.getpid(), "rss_kib": _rss_kib()})
    elif path == "/signals":
        _install()
    elif path == "/version":
        return _json(start_response, {"pid": os.getpid(), "version": getattr(_helper, "VERSION", None)})
    elif path == "/raise":
        raise RuntimeError("raised on purpose")
    return _json(start_response, {"pid": os.getpid()})
