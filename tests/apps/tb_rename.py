"""An app thread that renames itself when GET /rename is served.

GET /busy holds the GIL in C; anything else answers "ok" at once.
"""
import threading
import time

go = threading.Event()


def renamer():
    go.wait()
    threading.current_thread().name = "after-rename"
    while True:
        time.sleep(0.05)


threading.Thread(target=renamer, name="before-rename", daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    path = environ.get("PATH_INFO")
    if path == "/rename":
        go.set()
    elif path == "/busy":
        sum(range(10**10))
    return [b"ok"]
