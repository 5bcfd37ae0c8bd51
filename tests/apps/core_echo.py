"""Multi-purpose WSGI app for the end-to-end tests; dispatches on PATH_INFO.

Every endpoint is small and fast unless its name says otherwise."""

import hashlib
import json
import os
import sys
import time
from urllib.parse import unquote


def _qs(environ):
    out = {}
    for part in environ.get("QUERY_STRING", "").split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _types(environ):
    return {k: type(v).__name__ for k, v in environ.items()}


def _env_values(environ):
    out = {}
    for k, v in environ.items():
        if isinstance(v, (str, bool, int)) or v is None:
            out[k] = v
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = repr(type(v))
    return out


class Recorder:
    """An iterable whose close() is recorded into a file named by ?log=."""

    def __init__(self, path, fail_at=None):
        self.path = path
        self.fail_at = fail_at

    def __iter__(self):
        for i in range(3):
            if self.fail_at is not None and i == self.fail_at:
                raise RuntimeError("iterator failed on purpose")
            yield b"part%d\n" % i

    def close(self):
        with open(self.path, "a") as f:
            f.write("closed\n")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = _qs(environ)

    if path.startswith("/say/"):
        body = path[5:].encode("latin-1")
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    if path.startswith("/env"):
        return _json(start_response, {"types": _types(environ),
                                      "values": _env_values(environ)})

    if path == "/pid":
        return _json(start_response, {"pid": os.getpid(),
                                      "remote_port": environ.get("REMOTE_PORT")})

    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    if path == "/list":
        # n bytes objects of `size` bytes, each of its own byte value
        n, size = int(q.get("n", "3")), int(q.get("size", "10"))
        body = [bytes([i % 251]) * size for i in range(n)]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return body

    if path == "/readmix":
        # a partial read, then the rest in one read()
        inp = environ["wsgi.input"]
        first = inp.read(int(q.get("first", "10")))
        rest = inp.read()
        after = inp.read()
        h = hashlib.sha256(first + rest).hexdigest()
        return _json(start_response, {"sha256": h, "first": len(first), "rest": len(rest),
                                      "after": len(after)})

    if path == "/sha":
        # Read incrementally, never the whole body at once.
        inp = environ["wsgi.input"]
        h = hashlib.sha256()
        total = 0
        biggest = 0
        while True:
            b = inp.read(65536)
            if not b:
                break
            biggest = max(biggest, len(b))
            total += len(b)
            h.update(b)
        return _json(start_response, {"sha256": h.hexdigest(), "length": total,
                                      "biggest_read": biggest})

    if path == "/input":
        inp = environ["wsgi.input"]
        mode = q.get("mode", "read")
        if mode == "readn":
            parts = []
            while True:
                b = inp.read(3)
                if not b:
                    break
                parts.append(b.decode("latin-1"))
            res = parts
        elif mode == "readline":
            res = []
            while True:
                line = inp.readline()
                if not line:
                    break
                res.append(line.decode("latin-1"))
        elif mode == "readline_size":
            res = [inp.readline(4).decode("latin-1"), inp.readline().decode("latin-1"),
                   inp.read().decode("latin-1")]
        elif mode == "readlines":
            res = [l.decode("latin-1") for l in inp.readlines()]
        elif mode == "iter":
            res = [l.decode("latin-1") for l in inp]
        else:
            res = [inp.read().decode("latin-1")]
        return _json(start_response, {"result": res})

    if path == "/chunked":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"hello "
            yield b""
            yield b"chunked "
            yield b"world"
        return gen()

    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"first\n"
            time.sleep(1.0)
            yield b"second\n"
        return gen()

    if path == "/sleep":
        if "mark" in q:  # tells a test the request is in the app
            open(unquote(q["mark"]), "w").close()
        time.sleep(float(q.get("s", "1")))
        return _json(start_response, {"slept": q.get("s", "1"), "pid": os.getpid()})

    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-1;")
        write(b"written-2;")
        return [b"returned"]

    if path == "/exc_before":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("503 Service Unavailable",
                           [("Content-Type", "text/plain"), ("X-Replaced", "yes")],
                           sys.exc_info())
        return [b"replaced"]

    if path == "/exc_after":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"headers-sent;")
        try:
            raise ValueError("too late")
        except ValueError:
            try:
                start_response("500 Internal Server Error",
                               [("Content-Type", "text/plain")], sys.exc_info())
            except ValueError:
                with open(q["log"], "a") as f:
                    f.write("reraised\n")
                raise
        with open(q["log"], "a") as f:
            f.write("not reraised\n")
        return [b"should not happen"]

    if path == "/exc_no_info_twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("200 OK", [("Content-Type", "text/plain")])
        except Exception as e:
            return [b"second call rejected: " + type(e).__name__.encode()]
        return [b"second call accepted"]

    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        fail = q.get("fail")
        return Recorder(q["log"], int(fail) if fail is not None else None)

    if path == "/close_raise_before":
        # The app raises before returning anything: nothing to close.
        raise RuntimeError("app raised early")

    if path == "/raise":
        raise RuntimeError("boom from core_echo")

    if path == "/exit":
        os._exit(3)

    if path == "/file":
        f = open(q["path"], "rb")
        if q.get("bytesio"):
            import io
            f = io.BytesIO(f.read())
        size = os.path.getsize(q["path"])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f, 8192)

    if path == "/sys":
        return _json(start_response, {"version": sys.version, "prefix": sys.prefix,
                                      "base_prefix": sys.base_prefix})

    if path == "/osenv":
        return _json(start_response, {"value": os.environ.get(q.get("k", ""))})

    if path == "/hdrval":
        # a response header whose value is the percent-decoded (UTF-8) `v`
        value = unquote(q.get("v", ""))
        body = b"ok"
        start_response("200 OK", [("X-Value", value),
                                  ("Content-Length", str(len(body)))])
        return [body]

    if path == "/head":
        body = b"0123456789"
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    body = b"hello from core_echo\n"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
