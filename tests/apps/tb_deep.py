"""64 app threads, each 100 Python frames deep, asleep at the bottom.

GET /busy holds the GIL in C; anything else answers "ok" at once.
"""
import threading
import time

THREADS = 64
DEPTH = 100


def descend(n):
    if n > 1:
        return descend(n - 1)
    while True:
        time.sleep(1)


for i in range(THREADS):
    threading.Thread(target=descend, args=(DEPTH,), name="deep-%02d" % i, daemon=True).start()


def crunch():
    return sum(range(10**10))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ.get("PATH_INFO") == "/busy":
        crunch()
    return [b"ok"]
