"""Imports fine the first time, fails on every later import: the marker file
named by $CORE_CRASH_MARKER records that the first import happened."""

import os

_marker = os.environ["CORE_CRASH_MARKER"]
if os.path.exists(_marker):
    raise RuntimeError("core_crashloop: failing on purpose after the first start")
with open(_marker, "w") as f:
    f.write(str(os.getpid()))


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
