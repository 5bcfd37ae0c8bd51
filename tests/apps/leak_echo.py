"""Echoes what each request was handed, for tests/test_leaks.py: the
server caches environ value strs by position and reuses start_response's
buffers from request to request, so every response must carry exactly
its own request's values and headers, never another's.

GET/POST any path: the environ's str values and the body as JSON
(ASCII-escaped, so latin-1 values round-trip), with the response headers
the request's `X-Resp: N:TAG` asks for (X-R0: TAG-0 ... X-R<N-1>).
`X-Raise: 1` raises after start_response (a 500 with none of its headers).
`X-Slow: 1` holds the request's thread 10 ms.
`X-Bad-First: 1` makes a first start_response the server refuses.
`X-Exc: TAG` also makes a first start_response with other headers, then a
second one with exc_info (PEP 3333): only the second's may go out.
`/keep`: stashes the environ's str values (the objects and a copy of
their bytes), start_response and write, and streams its body (no
Content-Length). `/check`: the stashed strs must be unchanged, and the
stashed write must refuse to write into this request's connection."""

import json
import sys
import threading
import time

stash = {}


def _headers(environ):
    count, _, tag = environ.get("HTTP_X_RESP", "0:").partition(":")
    # X-Secret: the server's --del-header removes it from every response.
    return [("Content-Type", "application/json"), ("X-Secret", tag)] + [
        (f"X-R{j}", f"{tag}-{j}") for j in range(int(count))]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    strs = {k: v for k, v in environ.items() if isinstance(v, str)}
    if path == "/keep":
        stash.update(strs=strs, copies={k: v.encode("latin-1") for k, v in strs.items()})
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        stash.update(sr=start_response, write=write)
        write(b"kept;")
        return iter([b"streamed"])
    if path == "/check":
        changed = sorted(k for k, v in stash["strs"].items()
                         if v.encode("latin-1") != stash["copies"][k])
        try:
            stash["write"](b"LEAKED-FROM-KEEP")
            old_write = "wrote"
        except Exception as e:
            old_write = type(e).__name__
        body = json.dumps({"changed": changed, "old_write": old_write,
                           "same_sr": stash["sr"] is start_response}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    body = environ["wsgi.input"].read()
    if "HTTP_X_SLOW" in environ:
        time.sleep(0.01)  # the other clients' requests go to the other threads
    echo = dict(strs, body=body.decode("latin-1"), thread=threading.get_ident())
    if "HTTP_X_EXC" in environ:
        start_response("200 OK", [("X-First", environ["HTTP_X_EXC"]), ("Content-Length", "1")])
        try:
            raise RuntimeError("replaced")
        except RuntimeError:
            start_response("203 Replaced", _headers(environ), sys.exc_info())
    else:
        if "HTTP_X_BAD_FIRST" in environ:
            # A first call the server refuses (a header name that is not a
            # token) changes nothing: the next call is the response.
            try:
                start_response("500 Bad", [("X-Secret", "s"), ("Bad Name", "x")])
            except ValueError:
                pass
        start_response("200 OK", _headers(environ))
    if "HTTP_X_RAISE" in environ:
        raise RuntimeError("after start_response: the server answers 500 instead")
    return [json.dumps(echo).encode()]
