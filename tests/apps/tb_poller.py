"""An app that starts named (and one unnamed) Python threads at import time.

GET /busy holds the GIL in C; anything else answers "ok" at once.
"""
import _thread
import threading
import time


def poll_forever():
    while True:
        time.sleep(0.05)


def unnamed_loop():
    while True:
        time.sleep(0.05)


threading.Thread(target=poll_forever, name="my-poller", daemon=True).start()
_thread.start_new_thread(unnamed_loop, ())


def crunch():
    return sum(range(10**10))


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ.get("PATH_INFO") == "/busy":
        crunch()
    return [b"ok"]
