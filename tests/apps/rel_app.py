"""WSGI app for the hostile-input and fault tests; dispatches on PATH_INFO.

Well-behaved endpoints (/say/W, /pid, /echo, /big, /sleep) and misbehaving
ones: the app crashes its worker (/kill, /segv, /exit) or breaks PEP 3333
in a chosen way (/bad/...)."""

import ctypes
import json
import os
import signal
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


def _send(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


class ClosingList(list):
    """A list body whose close() raises: the whole body is known before
    close(), so the server can still answer 500."""

    def close(self):
        raise RuntimeError("rel_app: close() failed on purpose (list)")


class ClosingIter:
    """A streamed body whose close() raises after every part was sent."""

    def __iter__(self):
        yield b"part-one;"
        yield b"part-two;"

    def close(self):
        raise RuntimeError("rel_app: close() failed on purpose (stream)")


def _bad(kind, start_response):
    ok_headers = [("Content-Type", "text/plain")]
    if kind == "status_short":
        start_response("200", ok_headers)
        return [b"x"]
    if kind == "status_letters":
        start_response("OK 200", ok_headers)
        return [b"x"]
    if kind == "status_int":
        start_response(200, ok_headers)
        return [b"x"]
    if kind == "status_crlf":
        start_response("200 OK\r\nX-Injected: yes", ok_headers)
        return [b"x"]
    if kind == "header_crlf":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: injected=1")])
        return [b"x"]
    if kind == "header_lf":
        start_response("200 OK", [("X-Evil", "a\nX-Injected: yes")])
        return [b"x"]
    if kind == "header_name":
        start_response("200 OK", [("X Bad:Name", "v")])
        return [b"x"]
    if kind == "header_bytes":
        start_response("200 OK", [(b"X-Bytes", b"v")])
        return [b"x"]
    if kind == "headers_dict":
        start_response("200 OK", {"X-A": "b"})
        return [b"x"]
    if kind == "non_bytes_list":
        start_response("200 OK", ok_headers)
        return ["a str, not bytes"]
    if kind == "none_body":
        start_response("200 OK", ok_headers)
        return None
    if kind == "non_bytes_stream":
        start_response("200 OK", ok_headers)

        def gen():
            yield b"first-part;"
            yield "then a str"
        return gen()
    if kind == "no_start_response":
        return [b"never started"]
    if kind == "close_list":
        start_response("200 OK", ok_headers)
        return ClosingList([b"listed"])
    if kind == "close_stream":
        start_response("200 OK", ok_headers)
        return ClosingIter()
    if kind == "cl_overrun":
        # Declares 5 bytes, produces 10: the extra bytes must never reach
        # the wire as the start of a next response.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])

        def gen():
            yield b"01234"
            yield b"56789"
        return gen()
    if kind == "cl_overrun_list":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"0123456789"]
    if kind == "cl_underrun":
        # Declares 100 bytes, produces 10: the client must not be left
        # waiting for the rest on a kept-alive connection.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])

        def gen():
            yield b"0123456789"
        return gen()
    if kind == "raise_streaming":
        start_response("200 OK", ok_headers)

        def gen():
            yield b"first-part;"
            raise RuntimeError("rel_app: failed mid-stream")
        return gen()
    # The message carries request data verbatim (as real apps' do).
    raise LookupError("unknown kind of breakage: " + kind)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = _qs(environ)

    if path.startswith("/say/"):
        return _send(start_response, path[5:].encode("latin-1"))

    if path == "/pid":
        return _send(start_response, json.dumps({
            "pid": os.getpid(), "ppid": os.getppid(),
            "uid": os.getuid(), "euid": os.geteuid(),
            "gid": os.getgid(), "egid": os.getegid(), "groups": sorted(os.getgroups()),
        }).encode(), ctype="application/json")

    if path == "/echo":
        body = environ["wsgi.input"].read()
        return _send(start_response, body, ctype="application/octet-stream")

    if path == "/deny":
        # Answers without touching wsgi.input, whatever the body (a view
        # that refuses an upload); ?stream=1 sends the body from a generator.
        if q.get("stream"):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return iter([b"denied", b"\n"])
        return _send(start_response, b"denied\n", status="403 Forbidden")

    if path == "/fork":
        # The child is let back into the server (a bug in the app): it
        # returns a response (?how=return), writes one itself (write) or
        # reads the parent's request body (read). The parent answers once
        # the child is gone, with how the child ended.
        how = q.get("how", "return")
        pid = os.fork()
        if pid == 0 and how == "background":
            # A child left running (a multiprocessing pool's, say): it
            # holds whatever the worker had open when it forked.
            time.sleep(float(q.get("s", "20")))
            os._exit(0)
        if how == "background":
            return _send(start_response, json.dumps({"parent": os.getpid(),
                                                     "child": pid}).encode())
        if pid == 0:
            if how == "write":
                start_response("200 OK", [("Content-Type", "text/plain")])(b"child wrote")
            elif how == "read":
                environ["wsgi.input"].read()
            return _send(start_response, b"child answered")
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return _send(start_response, json.dumps({"parent": os.getpid(), "child": pid,
                                                 "child_exit": code}).encode())

    if path == "/env":
        vals = {k: v for k, v in environ.items() if isinstance(v, str)}
        return _send(start_response, json.dumps(vals).encode(), ctype="application/json")

    if path == "/big":
        n = int(q.get("n", "1048576"))
        return _send(start_response, b"b" * n, ctype="application/octet-stream")

    if path == "/sleep":
        if "mark" in q:  # tells a test the request is in the app
            open(unquote(q["mark"]), "w").close()
        time.sleep(float(q.get("s", "1")))
        return _send(start_response, json.dumps({"slept": q.get("s", "1"),
                                                 "pid": os.getpid()}).encode())

    if path == "/tagged":
        # Record which worker took request ?id= before doing anything else,
        # so a test can tell which worker a failed request was on.
        # Written to a temporary name and renamed: a worker that dies
        # between open() and write() must not leave an empty tag behind.
        tag = os.path.join(os.environ["REL_TAG_DIR"], q["id"])
        with open(tag + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(tag + ".tmp", tag)
        time.sleep(float(q.get("s", "0")))
        return _send(start_response, str(os.getpid()).encode())

    if path == "/kill":
        os.kill(os.getpid(), int(q.get("sig", str(int(signal.SIGKILL)))))
        time.sleep(5)
        return _send(start_response, b"survived a signal")

    if path == "/segv":
        ctypes.string_at(0)
        return _send(start_response, b"survived a segfault")

    if path == "/exit":
        os._exit(int(q.get("code", "7")))

    if path.startswith("/bad/"):
        return _bad(path[5:], start_response)

    if path == "/print":
        # The app writes request data to the log itself (its own business).
        sys.stderr.write("rel_app print\n")
        return _send(start_response, b"printed")

    return _send(start_response, b"rel_app\n")
