"""Non-ASCII file name, function names and source lines."""
import time


def schläft():
    time.sleep(30)  # ждать


def считать():
    return sum(range(10**10))  # жжж


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    path = environ.get("PATH_INFO")
    if path == "/sleep":
        schläft()
    elif path == "/busy":
        считать()
    return [b"ok"]
