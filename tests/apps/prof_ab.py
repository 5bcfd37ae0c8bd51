"""The profiler's accuracy app: GET /a spends 30 ms in hot_a(), GET /b
10 ms in hot_b() (both spin on the CPU, so a sampler that counts only
running threads, like py-spy, sees the same); GET /busy holds the GIL in
C; anything else answers at once."""
import time


def spin(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def hot_a():
    return spin(0.030)


def hot_b():
    return spin(0.010)


def crunch():
    return sum(range(10**10))


def application(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/a":
        hot_a()
    elif path == "/b":
        hot_b()
    elif path == "/busy":
        crunch()
    # bench/profiler.py runs this app too: bench.py's hello answer.
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]
