"""A worker that dies by a signal before it is ready.

The first import writes the marker file named by $REL_CRASH_MARKER; every
later import segfaults while the marker exists (removing it "fixes" the app,
and the next start serves again). With $REL_CRASH_ALWAYS set, every import
segfaults, the first one included."""

import ctypes
import os

_marker = os.environ["REL_CRASH_MARKER"]
if os.environ.get("REL_CRASH_ALWAYS") or os.path.exists(_marker):
    ctypes.string_at(0)
with open(_marker, "w") as f:
    f.write(str(os.getpid()))


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
