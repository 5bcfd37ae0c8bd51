"""Helper app for the dump-latency test: 64 threads named obs-sleeper-N,
started at import, each sleeping in Python forever (a few frames deep)."""
import threading
import time

N_THREADS = 64


def obs_sleep_inner():
    while True:
        time.sleep(0.5)


def obs_sleep_outer():
    obs_sleep_inner()


for _i in range(N_THREADS):
    threading.Thread(target=obs_sleep_outer, name="obs-sleeper-%d" % _i,
                     daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
