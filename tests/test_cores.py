"""How the cores (request threads) of one worker share requests.

One core polls and serves what it finds while the app answers quickly; when
it stays in one request (the app blocks or computes), another core takes
over within a millisecond. These tests check the second half: a slow
request never holds up the others while a core is free."""

import time

from conftest import APPS, Bg, http_get
from helpers import in_app, mark_query, start_app

APP = str(APPS / "cores_app.py")


def start(serve, port, threads=4):
    return start_app(serve, port, APP, "--disable-logging", workers=1, threads=threads)


def test_a_blocked_request_does_not_hold_up_quick_ones(serve, port):
    start(serve, port)
    slow = Bg(port, "/sleep?s=3")
    time.sleep(0.3)
    t0 = time.monotonic()
    names = set()
    for _ in range(20):
        t = time.monotonic()
        status, _, body = http_get(port, "/", timeout=5)
        assert status == 200
        assert time.monotonic() - t < 0.5
        names.add(body.decode())
    assert time.monotonic() - t0 < 2.0
    assert slow.done_at is None, "the quick requests were served while it slept"
    status, _, body = slow.join(10)
    assert status == 200 and body.decode() not in names, (body, names)


def test_four_blocking_requests_run_on_four_cores_at_once(serve, port):
    start(serve, port)
    t0 = time.time()
    sleepers = [Bg(port, "/sleep?s=1.5") for _ in range(4)]
    cores = {s.join(10)[2].decode() for s in sleepers}
    assert cores == {f"uWSGIWorker1Core{c}" for c in range(4)}
    assert max(s.done_at for s in sleepers) - t0 < 2.8


def test_a_fifth_request_waits_for_a_free_core_and_is_served(serve, port, tmp_path):
    start(serve, port)
    t0 = time.time()
    marks = [tmp_path / f"in-app-{i}" for i in range(4)]
    sleepers = [Bg(port, f"/sleep?s=1.5&{mark_query(m)}") for m in marks]
    for m in marks:
        in_app(m)  # every core busy
    status, _, _ = http_get(port, "/", timeout=10)
    took = time.time() - t0
    assert status == 200
    assert 1.2 < took < 4.0, took
    for s in sleepers:
        assert s.join(10)[0] == 200


def test_a_request_computing_in_python_does_not_stop_the_others(serve, port):
    start(serve, port)
    spinner = Bg(port, "/spin?s=2")
    time.sleep(0.3)
    for _ in range(10):
        t = time.monotonic()
        status, _, _ = http_get(port, "/", timeout=5)
        assert status == 200
        # the spinner gives up the GIL every switch interval (5 ms)
        assert time.monotonic() - t < 1.0
    assert spinner.done_at is None
    assert spinner.join(10)[0] == 200


def test_one_thread_serves_everything(serve, port, tmp_path):
    start(serve, port, threads=1)
    slow = Bg(port, f"/sleep?s=2&{mark_query(tmp_path / 'in-app')}")
    in_app(tmp_path / "in-app")
    t = time.monotonic()
    status, _, body = http_get(port, "/", timeout=5)
    assert status == 200 and body == b"uWSGIWorker1Core0"
    assert time.monotonic() - t > 0.5, "with one core the quick request waits"
    assert slow.join(5)[0] == 200


def test_new_connections_are_not_kept_waiting_by_busy_keep_alive_ones(serve, port):
    """Eight keep-alive clients keep both cores busy (20 ms requests, one
    after the other on each connection); then eight clients connect at once.
    A core that finishes a request takes a queued connection before it
    polls again, so the newcomers wait about one request each. Taken only
    through the poller (one accept per turn of the listener, behind every
    ready keep-alive connection), the last of them waited ~0.9 s."""
    import http.client
    import threading

    start(serve, port, threads=2)
    stop = threading.Event()
    errors = []

    def keep_busy():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            while not stop.is_set():
                c.request("GET", "/sleep?s=0.02")
                r = c.getresponse()
                r.read()
                assert r.status == 200
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    busy = [threading.Thread(target=keep_busy) for _ in range(8)]
    for t in busy:
        t.start()
    try:
        time.sleep(0.5)
        firsts = []

        def newcomer():
            t0 = time.monotonic()
            status, _, _ = http_get(port, "/sleep?s=0.02", timeout=10)
            firsts.append((status, time.monotonic() - t0))

        new = [threading.Thread(target=newcomer) for _ in range(8)]
        for t in new:
            t.start()
        for t in new:
            t.join(15)
    finally:
        stop.set()
        for t in busy:
            t.join(15)
    assert not errors, errors
    assert [s for s, _ in firsts] == [200] * 8, firsts
    slowest = max(d for _, d in firsts)
    assert slowest < 0.45, sorted(round(d, 3) for _, d in firsts)
