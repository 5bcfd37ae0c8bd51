"""The logging tests' app: each path does one thing to the request or to
the process (close stdout/stderr, print, sleep, answer a status)."""

import os
import sys
import time


def application(environ, start_response):
    path = environ["PATH_INFO"]
    status = "200 OK"
    if path == "/close-stderr":
        os.close(2)
    elif path == "/close-std":
        os.close(1)
        os.close(2)
    elif path == "/print":
        print("app output " + "x" * 100, flush=True)
        sys.stderr.write("app error output\n")
        sys.stderr.flush()
    elif path == "/sleep":
        time.sleep(float(environ.get("QUERY_STRING") or 30))
    elif path.startswith("/status/"):
        status = path.rsplit("/", 1)[1] + " Status"
    elif path == "/stderr-echo":
        try:
            sys.stderr.write("LEAK\n")
            sys.stderr.flush()
        except OSError:
            pass  # fd 2 closed: what the app asked for
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    elif path == "/empty":
        start_response("204 No Content", [])
        return []
    elif path == "/env":
        body = repr(sorted(k for k in environ if k.isupper())).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    body = f"ok {path}\n".encode()
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]
