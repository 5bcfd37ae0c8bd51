"""Hello world, plus /sleep?s=SECONDS: the long requests that
bench/reload_under_load.py --long keeps in flight across reloads."""

import time

BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/sleep":
        query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
        time.sleep(float(query.get("s", "1")))
    start_response("200 OK", HEADERS)
    return [BODY]
