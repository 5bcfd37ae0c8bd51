"""End-to-end tests of the observability features: `--tracebacks BASE
[--json]` (every worker, request context, GIL holder, a worker that does not
answer), `--py-tracebacker-locals`, `--py-tracebacker-slow`, the stats
server (`--stats`, uWSGI's JSON, `--stats-http` with Prometheus `/metrics`),
uwsgitop against it in tmux, and the latency of a full dump of 2 x 64
threads. Every server is on loopback and stopped at teardown (SIGQUIT where
requests are still in flight); tmux runs on a private socket in the test's
temporary directory, its server killed in a finally.
Apps that start threads when imported run with --lazy-apps: preloaded, those
threads would live in the loader only.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import APPS, BIN, free_port, http_get, Bg
from helpers import lineno_of, popen, quick_stop, read_socket, wait_for
import helpers

OBS_APP = str(APPS / "obs_app.py")
PLAIN_HEADER = "*** uWSGI Python tracebacker output ***"
PLAIN_FRAME_RE = re.compile(
    r"^thread_id = (?P<tid>.+?) filename = (?P<file>\S.*?) lineno = (?P<lineno>\d+)"
    r" function = (?P<func>\S+?)(?: line = (?P<line>.+))?$")

# --tracebacks text output, line by line.
TB_HEAD_RE = re.compile(r"^\*\*\* uwsgi-rs tracebacks: (\d+) worker\(s\) under (.+) \*\*\*$")
TB_WORKER_RE = re.compile(
    r"^=== worker (?P<w>\d+) \(pid: (?P<pid>\d+)\) via the "
    r"(?P<how>interpreter|GIL-free dumper) in (?P<ms>\d+\.\d) ms ===$")
TB_NOANSWER_RE = re.compile(r"^=== worker (?P<w>\d+): no answer \((?P<why>.+)\) ===$")
TB_CORE_RE = re.compile(
    r"^thread (?P<name>.+?) \[core (?P<core>\d+)\] "
    r"(?:(?P<idle>idle)|busy: (?P<method>\S+) (?P<uri>\S+) from (?P<remote>\S+) "
    r"for (?P<secs>\d+\.\d) s|(?P<busy_noinfo>busy))(?P<gil>, HOLDS THE GIL)?$")
TB_APP_RE = re.compile(r"^thread (?P<name>.+) \(app thread\)(?P<gil>, HOLDS THE GIL)?$")
TB_FILE_RE = re.compile(r'^  File "(?P<file>.+)", line (?P<lineno>\d+), in (?P<func>\S+)$')
TB_SRC_RE = re.compile(r"^    (?P<src>\S.*)$")
TB_LOCAL_RE = re.compile(r"^      (?P<name>\S+) = (?P<repr>.*)$")

SLOW_RE = re.compile(
    r"^.* - SLOW REQUEST on worker (?P<w>\d+) core (?P<core>\d+) \(pid: (?P<pid>\d+)\): "
    r"(?P<method>\S+) (?P<uri>\S+) from (?P<remote>\S+) running for (?P<secs>\d+\.\d) s$")

STATS_TOP_KEYS = ["version", "listen_queue", "load", "pid", "uid", "gid", "cwd",
                  "sockets", "workers"]
STATS_WORKER_KEYS = ["id", "pid", "accepting", "requests", "delta_requests", "exceptions",
                     "harakiri_count", "signals", "status", "rss", "vsz", "running_time",
                     "last_spawn", "respawn_count", "tx", "avg_rt", "apps", "cores"]
STATS_CORE_KEYS = ["id", "in_request", "vars", "req_info", "requests"]


# ---------------------------------------------------------------- helpers

def tracebacks(base, *extra, timeout=20):
    """Run the `--tracebacks` client: (CompletedProcess, wall seconds)."""
    t0 = time.perf_counter()
    r = helpers.run([BIN, "--tracebacks", str(base), *extra],
                    capture_output=True, timeout=timeout)
    return r, time.perf_counter() - t0


def tracebacks_json(base, *extra):
    r, _ = tracebacks(base, "--json", *extra)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return json.loads(r.stdout)


def tracebacks_text(base, *extra):
    r, _ = tracebacks(base, *extra)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode("utf-8")


def ask_json(path, timeout=5.0):
    """In-process equivalent of one worker of `--tracebacks --json`. The
    worker gives JSON only if the request line comes within 10 ms of the
    connection (uWSGI's clients send nothing and get the plain dump); a
    client descheduled in between on a loaded machine gets the plain dump:
    ask again, as `--tracebacks` does."""
    for _ in range(4):
        data = read_socket(path, send=b"json\n", timeout=timeout)
        if not data.startswith(b"*** uWSGI Python tracebacker output ***"):
            return data
    return read_socket(path, send=b"json\n", timeout=timeout)




def wait_tb_sockets(server, base, n):
    """Every worker's tracebacker socket answers a json request."""
    for w in range(1, n + 1):
        wait_for(lambda: json.loads(ask_json(f"{base}{w}"))["worker"] == w
                 if server.proc.poll() is None else None,
                 20, f"tracebacker socket {base}{w} answering")


def occupy(port, uri, n, count_busy, timeout=5):
    """Start n requests one at a time, each only once the previous one is
    seen in a core (count_busy() grew): with n == all cores, every core of
    every worker ends up busy, whatever order the workers accept in."""
    reqs = []
    for k in range(1, n + 1):
        reqs.append(Bg(port, uri))
        wait_for(lambda: count_busy() >= k, timeout, f"{k} busy core(s) after {uri}")
    return reqs


def stats_busy(addr):
    return sum(c["in_request"] for w in read_stats(addr)["workers"] for c in w["cores"])






def parse_tracebacks_text(text):
    """Strictly parse `--tracebacks` text: (count, base, [worker dicts])."""
    lines = text.split("\n")
    assert lines[-1] == "", f"output must end with a newline: {text[-200:]!r}"
    lines = lines[:-1]
    m = TB_HEAD_RE.match(lines[0])
    assert m, f"bad first line {lines[0]!r}:\n{text}"
    count, base = int(m.group(1)), m.group(2)
    workers = []
    thread = None
    frame = None
    i = 1
    while i < len(lines):
        ln = lines[i]
        if ln == "":
            # a blank line only ever precedes a worker header
            assert i + 1 < len(lines) and lines[i + 1].startswith("=== worker "), \
                f"stray blank line at {i}:\n{text}"
            i += 1
            continue
        if (m := TB_WORKER_RE.match(ln)):
            assert lines[i - 1] == "", f"worker header without a blank line before:\n{text}"
            workers.append({"worker": int(m["w"]), "pid": int(m["pid"]), "how": m["how"],
                            "ms": float(m["ms"]), "threads": []})
            thread = frame = None
        elif (m := TB_NOANSWER_RE.match(ln)):
            assert lines[i - 1] == "", f"worker header without a blank line before:\n{text}"
            workers.append({"worker": int(m["w"]), "error": m["why"]})
            thread = frame = None
        elif (m := TB_CORE_RE.match(ln)) or (m2 := TB_APP_RE.match(ln)):
            assert workers and "threads" in workers[-1], f"thread outside a worker: {ln!r}"
            if m:
                state = "idle" if m["idle"] else "busy"
                req = None
                if m["method"]:
                    req = {"method": m["method"], "uri": m["uri"], "remote": m["remote"],
                           "secs": float(m["secs"])}
                thread = {"name": m["name"], "core": int(m["core"]), "state": state,
                          "request": req, "gil": bool(m["gil"]), "frames": []}
            else:
                thread = {"name": m2["name"], "core": None, "state": "app",
                          "request": None, "gil": bool(m2["gil"]), "frames": []}
            workers[-1]["threads"].append(thread)
            frame = None
        elif (m := TB_FILE_RE.match(ln)):
            assert thread is not None, f"frame outside a thread: {ln!r}\n{text}"
            frame = {"file": m["file"], "lineno": int(m["lineno"]), "func": m["func"],
                     "line": None, "locals": {}}
            thread["frames"].append(frame)
        elif (m := TB_LOCAL_RE.match(ln)):
            assert frame is not None, f"local outside a frame: {ln!r}\n{text}"
            frame["locals"][m["name"]] = m["repr"]
        elif (m := TB_SRC_RE.match(ln)):
            assert frame is not None and frame["line"] is None and not frame["locals"], \
                f"source line out of place: {ln!r}\n{text}"
            frame["line"] = m["src"]
        else:
            raise AssertionError(f"unexpected line {ln!r} in --tracebacks output:\n{text}")
        i += 1
    return count, base, workers


def check_json_shape(doc, base):
    """Every documented key, with the documented types."""
    assert doc["base"] == str(base)
    for w in doc["workers"]:
        if "error" in w:
            assert set(w) == {"worker", "error"}, w
            assert isinstance(w["error"], str) and w["error"]
            continue
        for k in ("worker", "pid", "collected_by", "collect_ms", "threads"):
            assert k in w, f"worker lacks {k}: {w}"
        assert w["collected_by"] in ("gil", "signal")
        assert isinstance(w["collect_ms"], (int, float)) and w["collect_ms"] >= 0
        for t in w["threads"]:
            for k in ("name", "ident", "core", "state", "holds_gil", "request", "frames"):
                assert k in t, f"thread lacks {k}: {t}"
            assert t["core"] is None or isinstance(t["core"], int)
            assert t["state"] in ("busy", "idle", "app"), t
            assert t["holds_gil"] in (True, False, None), t
            assert (t["core"] is None) == (t["state"] == "app"), t
            if t["request"] is not None:
                assert set(t["request"]) >= {"method", "uri", "remote", "started",
                                             "running_for"}, t
            for f in t["frames"]:
                assert {"filename", "lineno", "function"} <= set(f), f
                assert set(f) <= {"filename", "lineno", "function", "line", "locals"}, f


def funcs(frames, key="function"):
    return [f[key] for f in frames]


def busy_threads(doc):
    return [(w["worker"], t) for w in doc["workers"] if "threads" in w
            for t in w["threads"] if t["state"] == "busy"]




def read_stats(addr):
    return json.loads(read_socket(addr))


def total_requests(doc):
    return sum(w["requests"] for w in doc["workers"])


def metrics(port):
    status, headers, body = http_get(port, "/metrics", timeout=5)
    assert status == 200, body
    assert headers.get("Content-Type", "").startswith("text/plain"), headers
    samples = {}
    types = {}
    for fam in text_string_to_metric_families(body.decode()):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return types, samples


def by_worker(samples, name):
    return {int(lab["worker"]): v for lab, v in samples.get(name, [])}


# ---------------------------------------------------------------- --tracebacks

def test_tracebacks_text_and_json_every_worker(serve, port, tmp_path):
    """2 workers x 2 cores all busy plus an app thread: text and JSON show
    every worker in order with pid, each core with its request, the frames
    and source lines; no locals without --py-tracebacker-locals."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master", "--lazy-apps",
                 "--processes", "2", "--threads", "2", "--py-tracebacker", base],
                workers=2, env={"OBS_APP_THREAD": "1"})
    try:
        wait_tb_sockets(srv, base, 2)
        pids = srv.worker_pids()
        reqs = occupy(port, "/sleep/6", 4, lambda: len(busy_threads(tracebacks_json(base))))
        doc = wait_for(lambda: (d := tracebacks_json(base)) and len(
            [t for _, t in busy_threads(d) if t["frames"] and
             t["frames"][-1]["function"] == "obs_nap"]) == 4 and d,
            10, "4 busy cores sleeping in obs_nap")
        text = tracebacks_text(base)
        nap_line = lineno_of(OBS_APP, "time.sleep(seconds)")

        # ---- JSON
        check_json_shape(doc, base)
        assert [w["worker"] for w in doc["workers"]] == [1, 2]
        for w in doc["workers"]:
            assert w["pid"] == pids[w["worker"]], (w, pids)
            assert w["collected_by"] == "gil"
            cores = [t for t in w["threads"] if t["core"] is not None]
            assert sorted(t["core"] for t in cores) == [0, 1]
            for t in cores:
                assert t["name"] == f"uWSGIWorker{w['worker']}Core{t['core']}"
                assert t["state"] == "busy" and t["holds_gil"] is not True, t
                r = t["request"]
                assert (r["method"], r["uri"], r["remote"]) == ("GET", "/sleep/6", "127.0.0.1")
                assert 0 <= r["running_for"] < 8, r
                assert abs(r["started"] + r["running_for"] - time.time()) < 3, r
                assert funcs(t["frames"])[-2:] == ["application", "obs_nap"], t
                last = t["frames"][-1]
                assert (last["filename"], last["lineno"], last["line"]) == \
                    (OBS_APP, nap_line, "time.sleep(seconds)")
                assert all("locals" not in f for f in t["frames"]), "locals without the flag"
            apps = [t for t in w["threads"] if t["state"] == "app"]
            assert [t["name"] for t in apps] == ["obs-app-thread"], w["threads"]
            assert funcs(apps[0]["frames"])[-1] == "obs_app_idle"

        # ---- text
        count, tbase, workers = parse_tracebacks_text(text)
        assert (count, tbase) == (2, base)
        assert text.split("\n")[0] == f"*** uwsgi-rs tracebacks: 2 worker(s) under {base} ***"
        assert [w["worker"] for w in workers] == [1, 2]
        for w in workers:
            assert w["pid"] == pids[w["worker"]]
            assert w["how"] == "interpreter"
            cores = [t for t in w["threads"] if t["core"] is not None]
            assert [t["core"] for t in cores] == [0, 1], text
            for t in cores:
                assert t["name"] == f"uWSGIWorker{w['worker']}Core{t['core']}"
                assert t["state"] == "busy" and not t["gil"]
                assert (t["request"]["method"], t["request"]["uri"],
                        t["request"]["remote"]) == ("GET", "/sleep/6", "127.0.0.1")
                assert [f["func"] for f in t["frames"]][-2:] == ["application", "obs_nap"]
                assert (t["frames"][-1]["file"], t["frames"][-1]["lineno"],
                        t["frames"][-1]["line"]) == (OBS_APP, nap_line, "time.sleep(seconds)")
                assert all(not f["locals"] for f in t["frames"]), "locals without the flag"
            apps = [t for t in w["threads"] if t["state"] == "app"]
            assert [t["name"] for t in apps] == ["obs-app-thread"], text
            assert apps[0]["frames"][-1]["func"] == "obs_app_idle"
        assert all(r.result is None for r in reqs), "the sleeps must still be running"
    finally:
        quick_stop(srv)


def test_tracebacks_idle_cores_and_text_matches_json(serve, port, tmp_path):
    """One busy core, one idle: `idle` lines without frames, the busy line
    carries the request; the text says what the JSON says."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "1", "--threads", "2", "--py-tracebacker", base])
    try:
        wait_tb_sockets(srv, base, 1)
        Bg(port, "/sleep/5")
        doc = wait_for(lambda: (d := tracebacks_json(base)) and busy_threads(d) and d,
                       10, "a busy core")
        text = tracebacks_text(base)
        _, _, workers = parse_tracebacks_text(text)
        jt = {t["core"]: t for t in doc["workers"][0]["threads"] if t["core"] is not None}
        tt = {t["core"]: t for t in workers[0]["threads"] if t["core"] is not None}
        assert sorted(jt) == sorted(tt) == [0, 1]
        states = sorted(t["state"] for t in jt.values())
        assert states == ["busy", "idle"], jt
        for c in (0, 1):
            assert tt[c]["state"] == jt[c]["state"]
            if jt[c]["state"] == "idle":
                assert jt[c]["request"] is None and jt[c]["frames"] == []
                assert tt[c]["frames"] == [] and tt[c]["request"] is None
            else:
                assert tt[c]["request"]["uri"] == jt[c]["request"]["uri"] == "/sleep/5"
                assert [f["func"] for f in tt[c]["frames"]] == funcs(jt[c]["frames"])
    finally:
        quick_stop(srv)


def test_connect_and_read_plain_format_unchanged(serve, port, tmp_path):
    """`--connect-and-read BASE1` stays uWSGI's format: header, blank line,
    frame lines, a blank line per thread; no request info, no extra lines."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master", "--lazy-apps",
                 "--processes", "1", "--threads", "2", "--py-tracebacker", base,
                 "--py-tracebacker-locals"], env={"OBS_APP_THREAD": "1"})
    try:
        wait_tb_sockets(srv, base, 1)
        Bg(port, "/sleep/5")
        Bg(port, "/locals/5")
        wait_for(lambda: len([t for _, t in busy_threads(tracebacks_json(base))
                              if len(t["frames"]) >= 2]) == 2, 10, "2 busy cores")
        r = helpers.run([BIN, "--connect-and-read", base + "1"],
                        capture_output=True, timeout=15)
        assert r.returncode == 0, r.stderr
        text = r.stdout.decode("utf-8")
        assert text.startswith(PLAIN_HEADER + "\n\n"), text
        assert text.endswith("\n\n"), text
        blocks = text[len(PLAIN_HEADER) + 2:-2].split("\n\n")
        names = []
        for block in blocks:
            tids = set()
            for ln in block.split("\n"):
                m = PLAIN_FRAME_RE.match(ln)
                assert m, f"extra line {ln!r} in the plain dump:\n{text}"
                tids.add(m["tid"])
            assert len(tids) == 1, f"one thread per block:\n{text}"
            names.append(tids.pop())
        assert sorted(names) == ["obs-app-thread", "uWSGIWorker1Core0", "uWSGIWorker1Core1"], text
        for bad in ("busy:", "[core", "===", 'File "', "HOLDS THE GIL", "/sleep/5 from",
                    "big_string", "uwsgi-rs tracebacks"):
            assert bad not in text, f"{bad!r} leaked into the plain dump:\n{text}"
    finally:
        quick_stop(srv)


def test_tracebacks_worker_not_answering(serve, port, tmp_path):
    """A SIGSTOPped worker: `no answer` for it after --socket-timeout, the
    other worker still printed, in text and JSON."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "2", "--threads", "1", "--py-tracebacker", base], workers=2)
    pids = srv.worker_pids()
    wait_tb_sockets(srv, base, 2)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        def stopped(pid):
            for task in os.listdir(f"/proc/{pid}/task"):
                stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "T":
                    return False
            return True
        wait_for(lambda: stopped(pids[1]), 5, f"every thread of worker 1 ({pids[1]}) stopped")
        r, secs = tracebacks(base, "--socket-timeout", "1")
        assert r.returncode == 0, r.stderr
        text = r.stdout.decode()
        assert secs < 5, f"took {secs:.2f}s with --socket-timeout 1"
        count, _, workers = parse_tracebacks_text(text)
        assert count == 2
        assert [w["worker"] for w in workers] == [1, 2], text
        assert "error" in workers[0], text
        assert re.search(r"^=== worker 1: no answer \(.+\) ===$", text, re.M), text
        assert workers[1].get("pid") == pids[2], text
        assert [t["name"] for t in workers[1]["threads"]] == ["uWSGIWorker2Core0"], text

        r, secs = tracebacks(base, "--json", "--socket-timeout", "1")
        assert r.returncode == 0, r.stderr
        assert secs < 5
        doc = json.loads(r.stdout)
        check_json_shape(doc, base)
        assert doc["workers"][0]["worker"] == 1 and "error" in doc["workers"][0], doc
        assert doc["workers"][1]["worker"] == 2 and doc["workers"][1]["pid"] == pids[2]
    finally:
        os.kill(pids[1], signal.SIGCONT)
    # and once resumed, worker 1 answers again
    wait_for(lambda: "error" not in tracebacks_json(base)["workers"][0], 10,
             "worker 1 answering after SIGCONT")
    quick_stop(srv)


def test_tracebacks_while_gil_held(serve, port, tmp_path):
    """busy.py holds the GIL in C: `--tracebacks` answers within 1 s through
    the GIL-free dumper and names the core that holds the GIL."""
    busy = tmp_path / "busy.py"
    shutil.copy(APPS / "busy.py", busy)
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(busy), "--master",
                 "--processes", "1", "--threads", "2", "--py-tracebacker", base])
    try:
        wait_tb_sockets(srv, base, 1)
        Bg(port, "/busy", timeout=30)
        wait_for(lambda: any(t["frames"] and t["frames"][-1]["function"] == "crunch"
                             for _, t in busy_threads(tracebacks_json(base))),
                 10, "a core in crunch()")
        r, secs = tracebacks(base, "--json")
        assert r.returncode == 0, r.stderr
        assert secs < 1.0, f"--tracebacks --json took {secs:.3f}s with the GIL held"
        doc = json.loads(r.stdout)
        check_json_shape(doc, base)
        w = doc["workers"][0]
        assert w["collected_by"] == "signal", w
        busy_t = [t for t in w["threads"] if t["state"] == "busy"]
        assert len(busy_t) == 1, w["threads"]
        t = busy_t[0]
        assert t["holds_gil"] is True, t
        assert t["request"]["uri"] == "/busy" and t["request"]["method"] == "GET"
        assert funcs(t["frames"])[-2:] == ["application", "crunch"], t
        assert t["frames"][-1]["filename"] == str(busy)
        assert t["frames"][-1]["line"] == "return sum(range(10**10))"
        others = [x for x in w["threads"] if x is not t]
        assert all(x["holds_gil"] is not True for x in others), others

        r, secs = tracebacks(base)
        assert r.returncode == 0, r.stderr
        assert secs < 1.0, f"--tracebacks took {secs:.3f}s with the GIL held"
        text = r.stdout.decode()
        _, _, workers = parse_tracebacks_text(text)
        assert workers[0]["how"] == "GIL-free dumper", text
        holders = [x for x in workers[0]["threads"] if x["gil"]]
        assert len(holders) == 1 and holders[0]["request"]["uri"] == "/busy", text
        assert [f["func"] for f in holders[0]["frames"]][-2:] == ["application", "crunch"]
        assert re.search(r"^thread uWSGIWorker1Core\d \[core \d\] busy: GET /busy from "
                         r"127\.0\.0\.1 for \d+\.\d s, HOLDS THE GIL$", text, re.M), text
    finally:
        quick_stop(srv)


def test_tracebacker_locals(serve, port, tmp_path):
    """--py-tracebacker-locals: truncated reprs in JSON and text; a repr
    that raises shows `<repr failed: ...>` and the dump goes on."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "1", "--threads", "2", "--py-tracebacker", base,
                 "--py-tracebacker-locals"])
    try:
        wait_tb_sockets(srv, base, 1)
        Bg(port, "/locals/20")
        doc = wait_for(lambda: (d := tracebacks_json(base)) and any(
            t["frames"] and t["frames"][-1]["function"] == "obs_locals"
            for _, t in busy_threads(d)) and d, 10, "a core in obs_locals()")
        check_json_shape(doc, base)
        t = [t for _, t in busy_threads(doc)][0]
        app_frame, loc_frame = t["frames"][-2], t["frames"][-1]
        assert app_frame["function"] == "application"
        assert app_frame["locals"]["path"] == "'/locals/20'", app_frame
        loc = loc_frame["locals"]
        assert set(loc) >= {"seconds", "big_string", "bad_value", "small_int"}, loc
        assert loc["seconds"] == "20.0" and loc["small_int"] == "12345", loc
        assert loc["big_string"].startswith("'xxx") and len(loc["big_string"]) < 300, loc
        # the text form carries the same locals, indented under the frame
        _, _, workers = parse_tracebacks_text(tracebacks_text(base))
        tt = [x for x in workers[0]["threads"] if x["state"] == "busy"][0]
        assert tt["frames"][-1]["locals"]["small_int"] == "12345"
        assert len(tt["frames"][-1]["locals"]["big_string"]) < 300
        # a local whose __repr__ raises
        assert loc["bad_value"].startswith("<repr failed:"), loc["bad_value"]
    finally:
        quick_stop(srv)


# ---------------------------------------------------------------- slow requests

def test_slow_request_logged_once_and_not_killed(serve, port, tmp_path):
    """--py-tracebacker-slow 1: each request running > 1 s is logged once
    with the dump of only its thread, and still completes with 200."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "1", "--threads", "3", "--py-tracebacker", base,
                 "--py-tracebacker-slow", "1"])
    pid = srv.worker_pids()[1]
    wait_tb_sockets(srv, base, 1)
    assert http_get(port, "/ping")[0] == 200
    a, b = Bg(port, "/sleep/2.5"), Bg(port, "/sleep/2.5")
    assert http_get(port, "/sleep/0.4")[0] == 200          # fast enough: never logged
    for r in (a, b):
        res = r.join(10)
        assert not isinstance(res, Exception), res
        assert res[0] == 200 and res[2] == f"1 {pid}".encode(), res
    # the same core again, a new request: logged again (once per request, not per core)
    res = http_get(port, "/sleep/1.7")
    assert res[0] == 200 and res[2] == f"1 {pid}".encode()
    time.sleep(0.8)                                       # several master ticks
    log = srv.log
    lines = log.split("\n")
    slow = [(i, SLOW_RE.match(ln)) for i, ln in enumerate(lines) if "SLOW REQUEST" in ln]
    assert all(m for _, m in slow), f"bad SLOW REQUEST line:\n{log}"
    got = sorted((m["uri"], m["method"], m["remote"]) for _, m in slow)
    assert got == [("/sleep/1.7", "GET", "127.0.0.1"), ("/sleep/2.5", "GET", "127.0.0.1"),
                   ("/sleep/2.5", "GET", "127.0.0.1")], log
    cores_25 = {m["core"] for _, m in slow if m["uri"] == "/sleep/2.5"}
    assert len(cores_25) == 2, log
    for i, m in slow:
        assert (int(m["w"]), int(m["pid"])) == (1, pid), log
        assert 1.0 <= float(m["secs"]) < 2.0, log
        # the uWSGI-format dump of that core's thread only
        assert lines[i + 1] == PLAIN_HEADER and lines[i + 2] == "", log
        j = i + 3
        frames = []
        while lines[j] != "":
            fm = PLAIN_FRAME_RE.match(lines[j])
            assert fm, f"unexpected line {lines[j]!r} in the slow dump:\n{log}"
            frames.append(fm)
            j += 1
        assert {f["tid"] for f in frames} == {f"uWSGIWorker1Core{m['core']}"}, log
        assert [f["func"] for f in frames][-2:] == ["application", "obs_nap"], log
    # not killed: no harakiri, no respawn, the worker is the same process
    assert "HARAKIRI" not in log and "Respawned" not in log and "died" not in log, log
    assert srv.proc.poll() is None
    os.kill(pid, 0)
    srv.stop()


# ---------------------------------------------------------------- stats server

@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_stats_json_document(serve, port, tmp_path, kind):
    """--stats (TCP or UNIX): uWSGI's keys; requests and exceptions move
    with load; a busy core shows in_request 1 and its REQUEST_URI."""
    if kind == "tcp":
        sport = free_port()
        addr, arg = ("127.0.0.1", sport), f"127.0.0.1:{sport}"
    else:
        addr = arg = str(tmp_path / "stats.sock")
    uwsgi_port = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--socket", f"127.0.0.1:{uwsgi_port}",
                 "--wsgi-file", OBS_APP, "--master",
                 "--processes", "2", "--threads", "2", "--stats", arg], workers=2)
    try:
        pids = srv.worker_pids()
        doc = read_stats(addr)
        for k in STATS_TOP_KEYS:
            assert k in doc, f"top-level {k} missing: {sorted(doc)}"
        assert doc["pid"] == srv.proc.pid
        assert (doc["uid"], doc["gid"]) == (os.getuid(), os.getgid())
        assert doc["cwd"] == str(tmp_path)
        assert [(s["name"], s["proto"]) for s in doc["sockets"]] == [
            (f"127.0.0.1:{port}", "http"), (f"127.0.0.1:{uwsgi_port}", "uwsgi")]
        assert [w["id"] for w in doc["workers"]] == [1, 2]
        for w in doc["workers"]:
            for k in STATS_WORKER_KEYS:
                assert k in w, f"worker key {k} missing: {sorted(w)}"
            assert w["pid"] == pids[w["id"]]
            assert w["rss"] > 0 and w["vsz"] >= w["rss"]
            assert len(w["cores"]) == 2
            for c in w["cores"]:
                for k in STATS_CORE_KEYS:
                    assert k in c, f"core key {k} missing: {sorted(c)}"
        r0 = total_requests(doc)
        e0 = sum(w["exceptions"] for w in doc["workers"])
        for _ in range(10):
            assert http_get(port, "/ping")[0] == 200
        assert http_get(port, "/raise")[0] == 500
        doc = wait_for(lambda: (d := read_stats(addr)) and total_requests(d) >= r0 + 11 and d,
                       5, "11 more requests in the stats")
        assert total_requests(doc) == r0 + 11
        assert sum(w["exceptions"] for w in doc["workers"]) == e0 + 1
        for w in doc["workers"]:
            assert sum(c["requests"] for c in w["cores"]) == w["requests"], w
            assert w["tx"] > 0 or w["requests"] == 0
        Bg(port, "/sleep/4")

        def busy_core():
            d = read_stats(addr)
            for w in d["workers"]:
                for c in w["cores"]:
                    if c["in_request"] == 1:
                        return d, w, c
            return None
        wait_for(busy_core, 5, "a core in_request")
        time.sleep(0.1)  # a steady state (transitions: see the consistency test)
        d, w, c = busy_core()
        assert "REQUEST_URI=/sleep/4" in c["vars"], c
        assert "REQUEST_METHOD=GET" in c["vars"], c
        assert w["status"] == "busy" and d["load"] >= 1, (w, d["load"])
        assert isinstance(c["req_info"], dict) and "request_start" in c["req_info"], c
        idle = [x for ww in d["workers"] for x in ww["cores"] if x is not c]
        assert all(x["in_request"] == 0 and x["vars"] == [] for x in idle), idle
    finally:
        quick_stop(srv)


def test_stats_document_is_a_consistent_snapshot(serve, port, tmp_path):
    """Under load, every stats document agrees with itself: `load` is the
    number of cores in_request, a worker is `busy` iff one of its cores is."""
    sport = free_port()
    addr = ("127.0.0.1", sport)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "2", "--threads", "2", "--stats", f"127.0.0.1:{sport}"],
                workers=2)
    stop = threading.Event()

    def load():
        while not stop.is_set():
            http_get(port, "/sleep/0.01", timeout=5)
    loaders = [threading.Thread(target=load, daemon=True) for _ in range(2)]
    bad, n = [], 0
    try:
        for t in loaders:
            t.start()
        t0 = time.time()
        while time.time() - t0 < 2.0 and len(bad) < 5:
            d = read_stats(addr)
            n += 1
            busy = sum(c["in_request"] for w in d["workers"] for c in w["cores"])
            if d["load"] != busy:
                bad.append(f"load {d['load']} but {busy} core(s) in_request")
            for w in d["workers"]:
                in_req = any(c["in_request"] for c in w["cores"])
                if in_req != (w["status"] == "busy"):
                    bad.append(f"worker {w['id']} status {w['status']} with cores "
                               f"{[c['in_request'] for c in w['cores']]}")
        assert total_requests(read_stats(addr)) > 20, "the load did not run"
        assert not bad, f"{len(bad)} inconsistent of {n} documents: {bad}"
    finally:
        stop.set()
        for t in loaders:
            t.join(10)
        quick_stop(srv)


def test_stats_http_and_prometheus_metrics(serve, port, tmp_path):
    """--stats-http: GET / is the JSON, GET /metrics Prometheus text whose
    counters, gauges and latency histogram match the requests made."""
    sport = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "2", "--threads", "2", "--stats", f"127.0.0.1:{sport}",
                 "--stats-http"], workers=2)
    try:
        status, headers, body = http_get(sport, "/", timeout=5)
        assert status == 200 and headers.get("Content-Type") == "application/json", headers
        doc = json.loads(body)
        for k in STATS_TOP_KEYS:
            assert k in doc
        assert total_requests(doc) == 0

        types, s = metrics(sport)
        for fam, kind in [("uwsgi_rs_requests", "counter"), ("uwsgi_rs_exceptions", "counter"),
                          ("uwsgi_rs_harakiri", "counter"), ("uwsgi_rs_respawns", "counter"),
                          ("uwsgi_rs_busy_cores", "gauge"), ("uwsgi_rs_worker_rss_bytes", "gauge"),
                          ("uwsgi_rs_request_duration_seconds", "histogram")]:
            assert types.get(fam) == kind, (fam, types)
        assert sum(by_worker(s, "uwsgi_rs_requests_total").values()) == 0

        slow = Bg(port, "/sleep/1.5")
        s = wait_for(lambda: (m := metrics(sport)[1]) and
                     sum(by_worker(m, "uwsgi_rs_busy_cores").values()) == 1 and m,
                     5, "uwsgi_rs_busy_cores == 1")
        assert slow.join(10)[0] == 200
        n_fast = 8
        for _ in range(n_fast):
            assert http_get(port, "/ping")[0] == 200
        assert http_get(port, "/raise")[0] == 500
        total = n_fast + 2
        _, s = wait_for(lambda: (m := metrics(sport)) and sum(by_worker(
            m[1], "uwsgi_rs_request_duration_seconds_count").values()) >= total and m,
            5, f"{total} requests in the histogram")

        req = by_worker(s, "uwsgi_rs_requests_total")
        assert sorted(req) == [1, 2] and sum(req.values()) == total, req
        assert sum(by_worker(s, "uwsgi_rs_exceptions_total").values()) == 1
        assert set(by_worker(s, "uwsgi_rs_harakiri_total").values()) == {0}
        assert set(by_worker(s, "uwsgi_rs_respawns_total").values()) == {0}
        assert set(by_worker(s, "uwsgi_rs_busy_cores").values()) == {0}
        rss = by_worker(s, "uwsgi_rs_worker_rss_bytes")
        assert sorted(rss) == [1, 2] and all(v > 1_000_000 for v in rss.values()), rss

        count = by_worker(s, "uwsgi_rs_request_duration_seconds_count")
        hsum = by_worker(s, "uwsgi_rs_request_duration_seconds_sum")
        assert count == req, (count, req)
        le_totals = {}
        for w in (1, 2):
            buckets = sorted(((float(lab["le"]), v) for lab, v in
                              s["uwsgi_rs_request_duration_seconds_bucket"]
                              if lab["worker"] == str(w)), key=lambda x: x[0])
            assert buckets[-1][0] == float("inf")
            vals = [v for _, v in buckets]
            assert vals == sorted(vals), f"buckets not cumulative: {buckets}"
            assert buckets[-1][1] == count[w]
            for le, v in buckets:
                le_totals[le] = le_totals.get(le, 0) + v
        assert le_totals[float("inf")] == total
        # the 1.5 s request is above the 1 s bound, everything else below it
        assert le_totals[1.0] == total - 1, le_totals
        assert le_totals[2.5] == total, le_totals
        assert 1.5 <= sum(hsum.values()) < 3.0, hsum
        # the JSON agrees with the metrics
        doc = json.loads(http_get(sport, "/", timeout=5)[2])
        assert {w["id"]: w["requests"] for w in doc["workers"]} == req
    finally:
        quick_stop(srv)


# ---------------------------------------------------------------- uwsgitop

UWSGITOP_ROW = re.compile(
    r"^ (?P<wid>\d+)\s+(?P<pct>\d+\.\d)\s+(?P<pid>\d+)\s+(?P<req>\d+)\s+(?P<rps>\d+)\s+"
    r"(?P<exc>\d+)\s+(?P<sig>\d+)\s+(?P<status>\w+)\s+(?P<avg>\d+)ms\s")


def test_uwsgitop_in_tmux(serve, port, tmp_path):
    """uwsgitop (PyPI) reads --stats: every worker's row, with its pid and a
    request count that follows the load."""
    uwsgitop = shutil.which("uwsgitop")
    assert uwsgitop, "uwsgitop is not installed (pip install uwsgitop)"
    assert shutil.which("tmux"), "tmux is not installed"
    sport = free_port()
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "2", "--threads", "2", "--stats", f"127.0.0.1:{sport}"],
                workers=2)
    pids = srv.worker_pids()
    # 4 requests on 2 x 2 cores, all in flight together: both workers serve 2
    warm = occupy(port, "/sleep/0.5", 4, lambda: stats_busy(("127.0.0.1", sport)))
    for r in warm:
        assert r.join(10)[0] == 200
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                http_get(port, "/ping", timeout=5)
            except OSError:
                pass
            time.sleep(0.03)
    loader = threading.Thread(target=load, daemon=True)
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock")]  # a private tmux server
    try:
        loader.start()
        subprocess.run(tmux + ["new-session", "-d", "-s", "T", "-x", "200", "-y", "50",
                               f"{uwsgitop} 127.0.0.1:{sport}; sleep 60"],
                       check=True, timeout=10, env={**os.environ, "TERM": "xterm"})

        def rows():
            out = subprocess.run(tmux + ["capture-pane", "-p", "-t", "T"],
                                 capture_output=True, timeout=10, text=True).stdout
            found = {int(m["wid"]): m for m in map(UWSGITOP_ROW.match, out.split("\n")) if m}
            return (out, found) if sorted(found) == [1, 2] else None
        out, first = wait_for(rows, 10, "uwsgitop rows for workers 1 and 2", interval=0.2)
        assert re.search(r"^uwsgi-uwsgi-rs \S+ - .* - req: \d+ - RPS: \d+ - lq: \d+ - tx: ",
                         out, re.M), out
        assert f"masterpid: {srv.proc.pid}" in out, out
        assert re.search(r"^ WID\s+%\s+PID\s+REQ\s+RPS\s+EXC", out, re.M), out
        for w in (1, 2):
            assert int(first[w]["pid"]) == pids[w], out
            assert int(first[w]["req"]) >= 2, out
            assert first[w]["status"] in ("idle", "busy"), out
        total0 = sum(int(m["req"]) for m in first.values())
        # live: the counts on screen keep growing with the load
        out2, later = wait_for(lambda: (r := rows()) and sum(
            int(m["req"]) for m in r[1].values()) >= total0 + 5 and r,
            10, "uwsgitop request counts growing", interval=0.3)
        stats_total = total_requests(read_stats(("127.0.0.1", sport)))
        assert sum(int(m["req"]) for m in later.values()) <= stats_total, (out2, stats_total)
        head = re.search(r" - req: (\d+) - ", out2)
        assert head and int(head.group(1)) == sum(int(m["req"]) for m in later.values()), out2
    finally:
        stop.set()
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10)
        loader.join(10)
        quick_stop(srv)


# ---------------------------------------------------------------- latency

def test_full_dump_latency_2x64_threads(serve, port, tmp_path):
    """2 workers x 64 app threads sleeping in Python: a full `--tracebacks`
    of both workers completes in < 100 ms (median of 5)."""
    base = f"{tmp_path}/tb."
    app = str(APPS / "obs_threads.py")
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", app, "--master", "--lazy-apps",
                 "--processes", "2", "--threads", "2", "--py-tracebacker", base], workers=2)
    try:
        wait_tb_sockets(srv, base, 2)

        def complete(doc_workers):
            for w in doc_workers:
                assert "threads" in w, f"worker did not answer: {w}"
                names = sorted(t["name"] for t in w["threads"] if t["state"] == "app")
                if names != sorted(f"obs-sleeper-{i}" for i in range(64)):
                    return False
            return True
        wait_for(lambda: complete(tracebacks_json(base)["workers"]), 10, "64 sleepers per worker")

        cli, cli_json, inproc = [], [], []
        for _ in range(5):
            r, secs = tracebacks(base)
            assert r.returncode == 0, r.stderr
            cli.append(secs)
            _, _, workers = parse_tracebacks_text(r.stdout.decode())
            assert [w["worker"] for w in workers] == [1, 2]
            for w in workers:
                apps = [t for t in w["threads"] if t["state"] == "app"]
                assert len(apps) == 64, f"{len(apps)} app threads in worker {w['worker']}"
                assert all([f["func"] for f in t["frames"]][-2:] ==
                           ["obs_sleep_outer", "obs_sleep_inner"] for t in apps)
        for _ in range(5):
            r, secs = tracebacks(base, "--json")
            assert r.returncode == 0
            cli_json.append(secs)
            assert complete(json.loads(r.stdout)["workers"])
        for _ in range(5):
            t0 = time.perf_counter()
            docs = [json.loads(ask_json(f"{base}{w}")) for w in (1, 2)]
            inproc.append(time.perf_counter() - t0)
            assert complete(docs)
        med = {k: statistics.median(v) * 1000 for k, v in
               (("cli_text", cli), ("cli_json", cli_json), ("in_process", inproc))}
        print(f"\nfull dump 2x64 threads, median ms: {med}")
        assert med["in_process"] < 100, med
        assert med["cli_text"] < 100, med
        assert med["cli_json"] < 100, med
    finally:
        quick_stop(srv)


def test_tracebacks_client_quiet_on_closed_stdout(serve, port, tmp_path):
    """`uwsgi-rs --tracebacks BASE [--json] | head -1`: once head closes the
    pipe the client exits 0 without an error line (the output is > 64 KiB,
    so the write does hit the closed pipe)."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", str(APPS / "obs_threads.py"),
                 "--master", "--lazy-apps", "--processes", "2", "--threads", "2", "--py-tracebacker", base],
                workers=2)
    try:
        wait_tb_sockets(srv, base, 2)
        wait_for(lambda: len(tracebacks_text(base)) > 70_000, 10, "a dump > 64 KiB")
        # `| head`: a closed stdout ends the client quietly, text or JSON
        for extra in ([], ["--json"]):
            p = popen([BIN, "--tracebacks", base, *extra], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
            first = p.stdout.readline()
            p.stdout.close()
            try:
                _, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                raise
            assert first, extra
            assert (p.returncode, err) == (0, b""), (extra, p.returncode, err)
    finally:
        quick_stop(srv)


def test_tracebacks_answer_under_cpu_contention(serve, port, tmp_path):
    """With every CPU busy (3 spinning processes per CPU, at least 4),
    `--tracebacks --json` still gets every worker's dump: a client that is
    descheduled between connect and sending `json` must not lose it."""
    base = f"{tmp_path}/tb."
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", OBS_APP, "--master",
                 "--processes", "2", "--threads", "2", "--py-tracebacker", base], workers=2)
    wait_tb_sockets(srv, base, 2)
    hogs = [popen([sys.executable, "-c", "while True: pass"])
            for _ in range(max(4, 3 * (os.cpu_count() or 1)))]
    errors, runs = [], 0
    try:
        t0 = time.time()
        while runs < 150 and time.time() - t0 < 8:
            r, _ = tracebacks(base, "--json")
            runs += 1
            assert r.returncode == 0, r.stderr
            doc = json.loads(r.stdout)
            errors += [w for w in doc["workers"] if "error" in w]
        assert runs >= 10, f"only {runs} runs in 8 s"
        assert not errors, f"{len(errors)} worker errors in {runs} runs: {errors[:3]}"
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait(10)
        quick_stop(srv)
