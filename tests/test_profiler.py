"""The sampling profiler (issue 15): `uwsgi-rs --profile BASE` samples every
worker through its tracebacker socket (no ptrace), attributes samples to
the request each core serves, and writes folded stacks, an inferno SVG or
speedscope JSON; `--top BASE` is a live view, checked in tmux."""

import json
import os
import re
import shutil
import subprocess
import threading
import time

from conftest import BIN, Bg, http_get
from helpers import copy_app, lineno_of, popen, read_socket, wait_for
import helpers

HEADER = b"*** uWSGI Python tracebacker output ***"
FOLDED = re.compile(r"^(?P<stack>.+) (?P<count>\d+)$")


class Load:
    """Clients alternating GET /a and GET /b (with a query string, which
    labels leave out) until stopped."""

    def __init__(self, port, clients=2):
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(port,), daemon=True)
                        for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, port):
        import http.client
        while not self.stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                while not self.stop.is_set():
                    for path in ("/a?x=1", "/b?y=2"):
                        c.request("GET", path)
                        c.getresponse().read()
            except OSError:
                time.sleep(0.05)

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)


def start(serve, port, tmp_path, *extra, workers=2, threads=2):
    app = copy_app("prof_ab.py", tmp_path)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(app), "--master",
                 "--processes", str(workers), "--threads", str(threads),
                 "--py-tracebacker", base, "--disable-logging", "--reload-mercy", "1", *extra],
                workers=workers)
    for w in range(1, workers + 1):
        wait_for(lambda: read_socket(base + str(w)).startswith(HEADER), 10, "tracebacker")
    return srv, app, base


def profile(base, *args, timeout=60):
    return helpers.run([BIN, "--profile", base, *args], capture_output=True,
                       timeout=timeout)


def parse_folded(text):
    stacks = {}
    for line in text.splitlines():
        m = FOLDED.match(line)
        assert m, f"not a folded line: {line!r}"
        stacks[m["stack"]] = stacks.get(m["stack"], 0) + int(m["count"])
    return stacks


def share(stacks, a, b):
    na = sum(n for s, n in stacks.items() if a in s.split(";")[-1] or f";{a} (" in s)
    nb = sum(n for s, n in stacks.items() if b in s.split(";")[-1] or f";{b} (" in s)
    return na, nb


def test_folded_profile_attributes_samples_to_requests(serve, port, tmp_path):
    srv, app, base = start(serve, port, tmp_path)
    load = Load(port)
    try:
        r = profile(base, "--duration", "4")
    finally:
        load.end()
    assert r.returncode == 0, r.stderr
    stacks = parse_folded(r.stdout.decode())
    hot_a = lineno_of(app, "return spin(0.030)")
    spin = lineno_of(app, "while time.perf_counter() < end:")
    app_a = lineno_of(app, "        hot_a()")
    want = (f"GET /a;application ({app}:{app_a});hot_a ({app}:{hot_a});"
            f"spin ({app}:{spin})")
    assert any(s.startswith(want) for s in stacks), list(stacks)[:10]
    labels = {s.split(";")[0] for s in stacks}
    assert labels <= {"GET /a", "GET /b"}, labels  # no query string, no idle cores
    na, nb = share(stacks, "hot_a", "hot_b")
    # 30 ms against 10 ms: 75%. The bench (bench/profiler.py) states the
    # measured figure next to py-spy's; here a bound that cannot flake.
    assert na + nb > 100 and 0.6 <= na / (na + nb) <= 0.9, (na, nb)
    err = r.stderr.decode()
    assert re.search(r"worker 1 \(pid: \d+\): \d+ samples", err), err
    assert re.search(r"worker 2 \(pid: \d+\): \d+ samples", err), err


def test_svg_and_speedscope(serve, port, tmp_path):
    srv, app, base = start(serve, port, tmp_path, workers=1)
    load = Load(port, clients=1)
    try:
        svg = tmp_path / "p.svg"
        r = profile(base, "--duration", "2", "--format", "svg", "--output", str(svg))
        assert r.returncode == 0, r.stderr
        text = svg.read_text()
        assert text.startswith("<?xml") and "<svg" in text and "</svg>" in text
        assert "hot_a" in text and "GET /a" in text and "<script" in text  # inferno's, clickable
        r = profile(base, "--duration", "2", "--format", "speedscope")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["$schema"].endswith("file-format-schema.json")
        frames = doc["shared"]["frames"]
        prof = doc["profiles"][0]
        assert prof["type"] == "sampled" and len(prof["samples"]) == len(prof["weights"])
        names = {frames[i]["name"] for s in prof["samples"] for i in s}
        assert {"GET /a", "hot_a", "spin"} <= names, names
        assert sum(prof["weights"]) == prof["endValue"] > 0
    finally:
        load.end()
    r = profile(base, "--format", "png")
    assert r.returncode != 0 and b"--format" in r.stderr and len(r.stderr.splitlines()) == 1


def test_a_thread_holding_the_gil_in_c_is_sampled(serve, port, tmp_path):
    srv, app, base = start(serve, port, tmp_path, workers=1)
    Bg(port, "/busy", timeout=60)
    time.sleep(0.5)
    r = profile(base, "--duration", "2", "--rate", "50")
    assert r.returncode == 0, r.stderr
    stacks = parse_folded(r.stdout.decode())
    busy = sum(n for s, n in stacks.items() if s.startswith("GET /busy;") and "crunch (" in s)
    assert busy >= 40, stacks  # ~100 at 50 Hz for 2 s
    gil_free = int(re.search(r"(\d+) GIL-free", r.stderr.decode())[1])
    assert gil_free >= 40, r.stderr
    srv.stop(sig=15, timeout=3)


def test_idle_cores_only_with_idle(serve, port, tmp_path):
    srv, app, base = start(serve, port, tmp_path, workers=1)
    r = profile(base, "--duration", "1", "--rate", "20")
    assert r.returncode == 0 and r.stdout == b"", (r.stdout[:200], r.stderr)
    r = profile(base, "--duration", "1", "--rate", "20", "--idle")
    stacks = parse_folded(r.stdout.decode())
    assert set(stacks) == {"idle"} and 30 <= stacks["idle"] <= 44, stacks  # 2 cores x 20


def test_a_second_profile_is_served_and_leaves_the_first_intact(serve, port, tmp_path):
    """Two profiles at once, at different rates: each gets its own rate and
    its own samples (the sessions share one sampler thread)."""
    srv, app, base = start(serve, port, tmp_path, workers=1, threads=1)
    busy = Bg(port, "/a", timeout=60)  # one request, then the core is idle
    busy.join(10)
    load = Load(port, clients=1)
    try:
        first = popen([BIN, "--profile", base, "--duration", "4", "--rate", "100",
                       "--idle"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1)
        second = profile(base, "--duration", "2", "--rate", "25", "--idle")
        out, err = first.communicate(timeout=30)
    finally:
        load.end()
    assert first.returncode == 0 and second.returncode == 0, (err, second.stderr)
    n1 = sum(parse_folded(out.decode()).values())
    n2 = sum(parse_folded(second.stdout.decode()).values())
    # one core: one sample per tick, busy or idle
    assert 320 <= n1 <= 410, n1
    assert 40 <= n2 <= 52, n2


def test_profile_without_workers_fails_in_one_line(tmp_path):
    r = profile(f"{tmp_path}/nothing.")
    assert r.returncode == 1
    assert r.stderr.decode().count("\n") == 1 and b"no tracebacker sockets" in r.stderr


def test_top_in_tmux(serve, port, tmp_path):
    assert shutil.which("tmux"), "tmux is not installed"
    srv, app, base = start(serve, port, tmp_path)
    load = Load(port)
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]
    try:
        subprocess.run(tmux + ["new-session", "-d", "-s", "T", "-x", "150", "-y", "40",
                               f"{BIN} --top {base}; sleep 60"],
                       check=True, timeout=10, env={**os.environ, "TERM": "xterm"})

        def screen():
            out = subprocess.run(tmux + ["capture-pane", "-p", "-t", "T"],
                                 capture_output=True, timeout=10, text=True).stdout
            ok = ("hot_a (" in out and "GET /a" in out and "GET /b" in out
                  and re.search(r"samples: [1-9]\d* ", out))
            return out if ok else None
        out = wait_for(screen, 15, "the top view", interval=0.3)
        assert re.search(r"^\s+%Own\s+%Total\s+OwnTime\s+TotalTime\s+Function", out, re.M), out
        # hot_a's time is spent in spin (own), under hot_a (total)
        row = re.search(r"^\s*(\d+\.\d)%\s+(\d+\.\d)%.*\bhot_a \(", out, re.M)
        assert row and float(row[2]) > 20, out
        # it refreshes: the elapsed seconds in the head line move on
        t1 = int(re.search(r"Hz, (\d+) s", out)[1])
        out2 = wait_for(lambda: (o := screen()) and int(re.search(r"Hz, (\d+) s", o)[1]) > t1
                        and o, 5, "a refresh", interval=0.3)
        assert "Ctrl-C quits" in out2
        subprocess.run(tmux + ["send-keys", "-t", "T", "C-c"], timeout=10)

        def top_gone():
            panes = subprocess.run(tmux + ["list-panes", "-t", "T", "-F",
                                           "#{pane_current_command}"],
                                   capture_output=True, timeout=10, text=True)
            return panes.returncode != 0 or "uwsgi-rs" not in panes.stdout
        wait_for(top_gone, 5, "Ctrl-C to end --top")
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10)
        load.end()
    status, _, _ = http_get(port, "/")
    assert status == 200
