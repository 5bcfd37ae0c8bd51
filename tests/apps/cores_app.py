"""Requests that block or compute, to check how a worker's cores share them.

GET /sleep?s=N   sleeps N seconds (releases the GIL), answers the core's name
                 (&mark=FILE: creates FILE first, once the request is in the app)
GET /spin?s=N    runs Python bytecode for N seconds (holds the GIL, switched
                 out every switch interval), answers the core's name
anything else    answers the core's name at once
"""
import threading
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        if "mark" in q:
            open(q["mark"], "w").close()
        time.sleep(float(q.get("s", "1")))
    elif path == "/spin":
        end = time.monotonic() + float(q.get("s", "1"))
        n = 0
        while time.monotonic() < end:
            n += 1
    body = threading.current_thread().name.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
