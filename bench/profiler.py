#!/usr/bin/env python3
"""Benchmark of uwsgi-rs's sampling profiler (`--profile`), stdlib only.

1. accuracy: an app where GET /a spends 30 ms in hot_a() and GET /b 10 ms
   in hot_b() (both spin on the CPU), 2 workers x 2 threads, 2 clients
   alternating /a and /b. Profile it with `uwsgi-rs --profile` (no ptrace),
   then with `py-spy record --format raw --subprocesses` on the same load
   (py-spy needs ptrace rights: root here), and print hot_a's share of the
   hot_a + hot_b samples for both. The expected share is 75%.
2. overhead: a CPU-bound app (each request spins 1 ms), 2 workers x 1
   thread, `wrk -t2 -c8`; rounds alternate a run without a profile and a
   run with `uwsgi-rs --profile --rate 100` over the whole run (who goes
   first alternates too); median req/s of each and the drop.

    python3 bench/profiler.py [--duration 10] [--rounds 5] [--only accuracy,overhead]
                              [--json out.json] [--uwsgi-rs PATH]

Figures are meaningless on a shared or busy machine: see bench/README.md.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (same directory)

# The end-to-end test's app: GET /a spends 30 ms in hot_a(), GET /b 10 ms
# in hot_b(), both spinning on the CPU.
AB_APP = os.path.join(os.path.dirname(bench.BENCH_DIR), "tests", "apps", "prof_ab.py")

CPU_APP = '''\
import time


def work():
    end = time.perf_counter() + 0.001
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


def application(environ, start_response):
    work()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]
'''


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def start_server(uwsgi_rs, app, tmp, processes, threads, tag):
    port = bench.free_port()
    base = os.path.join(tmp, "tb-%s-" % tag)
    argv = [uwsgi_rs, "--http", "127.0.0.1:%d" % port, "--wsgi-file", app, "--master",
            "--processes", str(processes), "--threads", str(threads), "--disable-logging",
            "--py-tracebacker", base]
    srv = bench.Server("uwsgi-rs-" + tag, argv, tmp, log_dir=tmp).start()
    bench.verify(bench.wait_ready(srv, port))
    deadline = time.monotonic() + 20
    while not all(os.path.exists(base + str(w)) for w in range(1, processes + 1)):
        if time.monotonic() > deadline:
            raise RuntimeError("tracebacker sockets missing: " + srv.log_tail())
        time.sleep(0.05)
    return srv, port, base, argv


class Alternating:
    """Clients alternating GET /a and GET /b until stopped."""

    def __init__(self, port, clients):
        self.stop = threading.Event()
        self.count = 0
        self.threads = [threading.Thread(target=self.run, args=(port,), daemon=True)
                        for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, port):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not self.stop.is_set():
            for path in ("/a", "/b"):
                c.request("GET", path)
                c.getresponse().read()
                self.count += 1

    def end(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)


def shares(folded_lines):
    """Samples whose stack holds hot_a, hot_b; from folded or py-spy raw lines."""
    a = b = 0
    for line in folded_lines:
        m = re.match(r"^(.*) (\d+)$", line)
        if not m:
            continue
        frames = [f.split(" (")[0] for f in m.group(1).split(";")]
        n = int(m.group(2))
        if "hot_a" in frames:
            a += n
        elif "hot_b" in frames:
            b += n
    return a, b


def accuracy(uwsgi_rs, duration, tmp):
    app = shutil.copy(AB_APP, os.path.join(tmp, "ab.py"))
    srv, port, base, argv = start_server(uwsgi_rs, app, tmp, 2, 2, "ab")
    res = {"cmd": bench.display_cmd(argv, port).replace(tmp, "TMP")}
    load = Alternating(port, 2)
    try:
        time.sleep(1)
        r = subprocess.run([uwsgi_rs, "--profile", base, "--duration", str(duration),
                            "--rate", "100"], capture_output=True, timeout=duration + 60)
        if r.returncode != 0:
            raise RuntimeError("--profile failed: %s" % r.stderr.decode()[-500:])
        a, b = shares(r.stdout.decode().splitlines())
        res["uwsgi_rs"] = {"hot_a": a, "hot_b": b, "share_pct": 100.0 * a / max(1, a + b),
                           "summary": r.stderr.decode().strip()}
        pyspy = bench.peer_binary("py-spy")  # bench/setup.sh installs it
        if pyspy:
            out = os.path.join(tmp, "pyspy.txt")
            r = subprocess.run([pyspy, "record", "--format", "raw", "--rate", "100",
                                "--duration", str(duration), "--subprocesses",
                                "--pid", str(srv.pid), "--output", out],
                               capture_output=True, timeout=duration + 60)
            if r.returncode == 0 and os.path.exists(out):
                with open(out) as f:
                    a, b = shares(f.read().splitlines())
                res["py_spy"] = {"hot_a": a, "hot_b": b, "share_pct": 100.0 * a / max(1, a + b)}
            else:
                res["py_spy"] = {"error": r.stderr.decode(errors="replace").strip()[-400:]}
        else:
            res["py_spy"] = {"error": "py-spy not installed (pip install py-spy)"}
    finally:
        load.end()
        srv.stop()
    return res


def overhead(uwsgi_rs, duration, rounds, tmp):
    app = write(tmp, "cpu.py", CPU_APP)
    runs = {"off": [], "profiling": []}
    for rnd in range(rounds):
        order = ["off", "profiling"] if rnd % 2 == 0 else ["profiling", "off"]
        for variant in order:
            srv, port, base, argv = start_server(uwsgi_rs, app, tmp, 2, 1, "cpu")
            prof = None
            try:
                subprocess.run(["wrk", "-t2", "-c8", "-d2s", "http://127.0.0.1:%d/" % port],
                               capture_output=True, timeout=60)  # warm up
                if variant == "profiling":
                    prof = subprocess.Popen([uwsgi_rs, "--profile", base, "--duration",
                                             str(duration + 2), "--rate", "100",
                                             "--output", os.devnull],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    time.sleep(0.5)
                out, cpu = bench.run_wrk(port, duration, latency=True, server_pids=srv.workers)
                r = bench.parse_wrk(out)
                r.update(cpu)
                runs[variant].append(r)
                print("  round %d  %-9s %.0f req/s  p50 %.2f ms  p99 %.2f ms  other CPU %.0f%%"
                      % (rnd + 1, variant, r["rps"], r["p50_ms"], r["p99_ms"],
                         r["other_cpu_pct"]), flush=True)
            finally:
                if prof is not None:
                    prof.wait(duration + 30)
                srv.stop()
    med = {k: statistics.median(r["rps"] for r in v) for k, v in runs.items()}
    return {"runs": runs, "median_rps": med,
            "drop_pct": 100.0 * (med["off"] - med["profiling"]) / med["off"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    ap.add_argument("--rounds", type=int, default=5, help="overhead rounds (default 5)")
    ap.add_argument("--only", default="accuracy,overhead")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--uwsgi-rs", dest="uwsgi_rs", default=bench.DEFAULT_UWSGI_RS)
    args = ap.parse_args()
    parts = set(p.strip() for p in args.only.split(","))
    if not os.access(args.uwsgi_rs, os.X_OK):
        sys.exit("uwsgi-rs not found: %s (run scripts/setup.sh)" % args.uwsgi_rs)
    bench.install_signal_handlers()
    info = bench.machine_info()
    print("# %s, %s CPUs (%s), %s" % (info["date"], info["cpus"], info.get("cpu"),
                                      bench.version_of("uwsgi-rs", args.uwsgi_rs)))
    out = {"machine": info}
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-prof-")
    try:
        if "accuracy" in parts:
            print("\n## 1. accuracy: GET /a 30 ms in hot_a, GET /b 10 ms in hot_b, alternated;"
                  " %d s at 100 Hz" % args.duration)
            r = accuracy(args.uwsgi_rs, args.duration, tmp)
            out["accuracy"] = r
            for who in ("uwsgi_rs", "py_spy"):
                v = r.get(who, {})
                if "share_pct" in v:
                    print("%-9s hot_a %5.1f%% of hot samples (hot_a %d, hot_b %d); expected 75%%"
                          % (who.replace("_", "-"), v["share_pct"], v["hot_a"], v["hot_b"]))
                else:
                    print("%-9s %s" % (who.replace("_", "-"), v.get("error")))
            print("  " + r["cmd"])
        if "overhead" in parts:
            print("\n## 2. overhead: CPU-bound app (1 ms per request), 2 workers x 1 thread,"
                  " wrk -t2 -c8 -d%ds, %d rounds" % (args.duration, args.rounds))
            r = overhead(args.uwsgi_rs, args.duration, args.rounds, tmp)
            out["overhead"] = r
            print("median req/s: off %.0f, profiling at 100 Hz %.0f: drop %.1f%%"
                  % (r["median_rps"]["off"], r["median_rps"]["profiling"], r["drop_pct"]))
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
