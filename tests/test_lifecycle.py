"""Worker lifecycle: a stopping worker waits for its requests asleep
(issue 12, item 2)."""

import json
import os
import signal
import time

import pytest

from conftest import APPS, http_get
from helpers import wait_for

LIFE = str(APPS / "life_app.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def start(serve, port, *extra, workers=1, threads=1, env=None, ready=True):
    args = ["--http", f"127.0.0.1:{port}", "--wsgi-file", LIFE, "--master",
            "--processes", str(workers), "--threads", str(threads), *extra]
    return serve(args, workers=workers, env=env, ready=ready)


def get(port, path="/pid", timeout=10):
    status, headers, body = http_get(port, path, timeout=timeout)
    assert status == 200, (status, body)
    return json.loads(body)


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def marks(path):
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def long_request(port, tmp_path, seconds, name="long"):
    """Start /sleep?s=seconds in the background; returns (Bg, pid serving it)."""
    from helpers import Bg
    mark = tmp_path / f"{name}.mark"
    bg = Bg(port, f"/sleep?s={seconds}&mark={mark}", timeout=seconds + 30)
    wait_for(lambda: marks(mark), timeout=10, what="the long request to start")
    return bg, marks(mark)[0]


# ------------------------------------------------------------ waiting costs nothing

@pytest.mark.parametrize("how", ["sigterm", "sighup", "max-requests"])
def test_a_worker_waiting_for_a_request_does_not_spin(serve, port, tmp_path, how):
    """A stopping worker waits for its in-flight request asleep: it spun at
    100% of a CPU on an undrained wake-up (issue 12, item 2)."""
    extra = ["--max-requests", "2", "--min-worker-lifetime", "0"] if how == "max-requests" else []
    srv = start(serve, port, *extra, threads=2)
    bg, pid = long_request(port, tmp_path, 6)
    if how == "sigterm":
        srv.proc.send_signal(signal.SIGTERM)
    elif how == "sighup":
        srv.proc.send_signal(signal.SIGHUP)
    else:
        assert get(port)["pid"] == pid  # the 2nd request: the worker's last
    time.sleep(0.5)
    assert alive(pid), "still waiting for its request"
    before = cpu_seconds(pid)
    time.sleep(2.0)
    used = cpu_seconds(pid) - before
    assert used < 0.2, f"{used:.2f} s of CPU in 2 s while waiting ({how})"
    status, _, body = bg.join(30)
    assert status == 200 and json.loads(body)["pid"] == pid


# ------------------------------------------------------------ recycling is not a crash

def test_recycling_is_never_backed_off(serve, port):
    """A worker that serves its --max-requests quota within one master tick
    used to count as a crash and was backed off (up to 16 s; 142 req/s under
    wrk with --max-requests 100). Exit status 0 after serving is a recycle:
    replaced at once (issue 12, item 1)."""
    srv = start(serve, port, "--max-requests", "3")
    pids = [get(port, timeout=20)["pid"] for _ in range(30)]
    assert len(set(pids)) == 10, pids
    assert all(pids.count(p) == 3 for p in set(pids)), pids
    log = srv.log
    assert "respawning in" not in log and "DAMN" not in log, log[-2000:]
