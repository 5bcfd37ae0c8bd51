"""GET /deep: a request 150 Python frames deep (each its own function, as
a real framework's stack is) that sleeps, then holds the GIL in C.
Query: ?sleep=SECONDS before the C loop (default 0)."""
import time

DEPTH = 150


def crunch():
    return sum(range(10**10))


def bottom(pause):
    if pause:
        time.sleep(pause)
    return crunch()


# level0 -> level1 -> ... -> level149 -> bottom, each a function of its own.
_src = []
for i in range(DEPTH):
    callee = "bottom" if i == DEPTH - 1 else "level%d" % (i + 1)
    _src.append("def level%d(pause):\n    return %s(pause)\n" % (i, callee))
exec("\n".join(_src))


def application(environ, start_response):
    pause = 0.0
    for kv in environ.get("QUERY_STRING", "").split("&"):
        if kv.startswith("sleep="):
            pause = float(kv[6:])
    if environ.get("PATH_INFO") == "/deep":
        level0(pause)  # noqa: F821 - defined by exec above
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
