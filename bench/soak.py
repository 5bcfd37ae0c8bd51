#!/usr/bin/env python3
"""Soak test: keep uwsgi-rs under wrk load for a long time and watch for
errors and memory growth. Not part of CI (the full run is 30 minutes).

    python3 bench/soak.py [--duration 1800] [--requests 10000000] [--sample 10]
                          [--warmup 120] [--processes 2] [--threads 4]
                          [--connections 32] [--wrk-threads 2]
                          [--app bench/apps/hello.py] [--uwsgi-rs PATH] [--json out.json]

The server (request logging off) serves --app on a free 127.0.0.1 port.
wrk runs in back-to-back segments of --sample seconds for --duration
seconds (or only until --requests were made, with --stop-at-requests); after every segment
the RSS of each worker and of the master is read from /proc, and one request
is checked by hand (status and body). Printed: the curve (one row per
segment), then a summary: requests, wrk socket errors, non-2xx responses,
failed checks, worker deaths/respawns (from the log), and the worker RSS
after --warmup: first, last, min, max and the least-squares slope.

Exit status 0 only if at least --requests were made, there were no errors
of any kind, no worker died or was respawned, and the RSS of every worker
after warm-up grew by less than --rss-tolerance (default 5 %, at least 2 MiB).
Stdlib only; needs wrk (bash scripts/setup.sh installs it).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BENCH_DIR, REPO_DIR, free_port, wrk_counts  # noqa: E402  (same directory)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def parse_wrk(out):
    reqs, sock, non2xx = wrk_counts(out)
    return {"requests": reqs or 0, "socket_errors": sock, "non2xx": non2xx,
            "parsed": reqs is not None}


def slope_per_min(points):
    """Least-squares slope of (seconds, KiB) points, in KiB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    var = sum((p[0] - mx) ** 2 for p in points)
    if var == 0:
        return 0.0
    return 60.0 * sum((p[0] - mx) * (p[1] - my) for p in points) / var


class Server:
    def __init__(self, binary, app, port, processes, threads, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        app_dir, app_file = os.path.split(os.path.abspath(app))
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        self.proc = subprocess.Popen(
            [binary, "--http", f"127.0.0.1:{port}", "--wsgi-file", app_file, "--master",
             "--processes", str(processes), "--threads", str(threads),
             "--disable-logging", "--listen", "1024"],
            cwd=app_dir, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.processes = processes

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.text().count(") ready") >= self.processes:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.text())

    def workers(self):
        """Current worker pids by id (respawns replace earlier entries)."""
        pids = {}
        for m in re.finditer(r"worker (\d+) \(pid: (\d+)\) ready", self.text()):
            pids[int(m.group(1))] = int(m.group(2))
        return pids

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


def check_once(port, expect):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status == 200 and (expect is None or body == expect)
    except Exception:  # noqa: BLE001
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    ap.add_argument("--requests", type=int, default=10_000_000,
                    help="at least this many requests for an OK verdict (default 10M)")
    ap.add_argument("--stop-at-requests", action="store_true",
                    help="stop as soon as --requests were made, before --duration")
    ap.add_argument("--sample", type=int, default=10, help="wrk segment / RSS sample period, s")
    ap.add_argument("--warmup", type=float, default=120, help="seconds excluded from the RSS verdict")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--app", default=os.path.join(BENCH_DIR, "apps", "hello.py"))
    ap.add_argument("--expect-body", default="Hello, World!",
                    help="body the hand check expects from GET / ('' to skip)")
    ap.add_argument("--rss-tolerance", type=float, default=0.05)
    ap.add_argument("--uwsgi-rs", default=os.path.join(REPO_DIR, ".venv", "bin", "uwsgi-rs"))
    ap.add_argument("--json", help="also write the samples and summary here")
    args = ap.parse_args()

    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk not found in PATH (bash scripts/setup.sh installs it)")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-soak-")
    srv = Server(args.uwsgi_rs, args.app, port, args.processes, args.threads,
                 os.path.join(tmp, "server.log"))
    expect = args.expect_body.encode() if args.expect_body else None

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    samples = []
    totals = {"requests": 0, "socket_errors": 0, "non2xx": 0, "failed_checks": 0, "wrk_failures": 0}
    interrupted = False
    try:
        srv.wait_ready()
        first_workers = srv.workers()
        master_pid = srv.proc.pid
        print(f"# uwsgi-rs soak: {args.processes} worker(s) x {args.threads} thread(s), "
              f"wrk -t{args.wrk_threads} -c{args.connections}, segments of {args.sample} s, "
              f"{args.duration:.0f} s, at least {args.requests} requests; log {srv.log_path}")
        header = f"{'t(s)':>6} {'requests':>11} {'req/s':>8} {'err':>4} {'non2xx':>6} " + \
            " ".join(f"{'w%d RSS(KiB)' % w:>13}" for w in sorted(first_workers)) + f" {'master':>8}"
        print(header, flush=True)
        t_start = time.monotonic()
        while True:
            elapsed = time.monotonic() - t_start
            if elapsed >= args.duration or (args.stop_at_requests and totals["requests"] >= args.requests):
                break
            seg = max(1, int(min(args.sample, args.duration - elapsed + 0.999)))
            p = subprocess.run([wrk, f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{seg}s",
                                f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
            r = parse_wrk(p.stdout)
            if p.returncode != 0 or not r["parsed"]:
                totals["wrk_failures"] += 1
            ok = check_once(port, expect)
            totals["failed_checks"] += 0 if ok else 1
            for k in ("requests", "socket_errors", "non2xx"):
                totals[k] += r[k]
            t = time.monotonic() - t_start
            workers = srv.workers()
            rss = {w: rss_kib(pid) for w, pid in sorted(workers.items())}
            sample = {"t": round(t, 1), "requests": totals["requests"], "rps": r["requests"] / seg,
                      "socket_errors": r["socket_errors"], "non2xx": r["non2xx"], "check_ok": ok,
                      "rss_kib": rss, "master_rss_kib": rss_kib(master_pid)}
            samples.append(sample)
            print(f"{t:6.0f} {totals['requests']:11d} {sample['rps']:8.0f} {r['socket_errors']:4d} "
                  f"{r['non2xx']:6d} " + " ".join(f"{(v if v is not None else -1):13d}" for v in rss.values())
                  + f" {sample['master_rss_kib'] or -1:8d}" + ("" if ok else "  CHECK FAILED"), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("# interrupted", flush=True)
    finally:
        log = srv.text() if os.path.exists(srv.log_path) else ""
        srv.stop()

    deaths = log.count("DAMN !")
    respawns = log.count("Respawned uwsgi-rs worker")
    summary = dict(totals, worker_deaths=deaths, respawns=respawns,
                   seconds=samples[-1]["t"] if samples else 0, interrupted=interrupted)
    errors = sum(totals[k] for k in ("socket_errors", "non2xx", "failed_checks", "wrk_failures"))
    enough = totals["requests"] >= args.requests
    verdict_ok = errors == 0 and enough and deaths == 0 and respawns == 0 and not interrupted
    print()
    print(f"requests        {totals['requests']} in {summary['seconds']:.0f} s "
          f"({totals['requests'] / max(summary['seconds'], 1):.0f} req/s)"
          + ("" if enough else f"  (fewer than --requests {args.requests})"))
    print(f"socket errors   {totals['socket_errors']}")
    print(f"non-2xx         {totals['non2xx']}")
    print(f"failed checks   {totals['failed_checks']}   wrk failures {totals['wrk_failures']}")
    print(f"worker deaths   {deaths}   respawns {respawns}")
    rss_summary = {}
    after = [s for s in samples if s["t"] >= args.warmup]
    if len(after) < 2:
        print(f"RSS             not enough samples after the {args.warmup:.0f} s warm-up for a verdict")
    else:
        for w in sorted(after[0]["rss_kib"]):
            pts = [(s["t"], s["rss_kib"][w]) for s in after if s["rss_kib"].get(w) is not None]
            vals = [v for _, v in pts]
            growth = vals[-1] - vals[0]
            allowed = max(2048, args.rss_tolerance * vals[0])
            flat = growth < allowed
            verdict_ok &= flat
            rss_summary[w] = {"first": vals[0], "last": vals[-1], "min": min(vals), "max": max(vals),
                              "slope_kib_per_min": round(slope_per_min(pts), 2), "flat": flat}
            print(f"worker {w} RSS    after warm-up: first {vals[0]} KiB, last {vals[-1]} KiB, "
                  f"min {min(vals)}, max {max(vals)}, slope {slope_per_min(pts):+.1f} KiB/min "
                  f"-> {'flat' if flat else 'GROWING'}")
    summary["rss_after_warmup"] = rss_summary
    print("verdict         " + ("OK" if verdict_ok else "FAILED"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "samples": samples, "summary": summary}, f, indent=1)
    if verdict_ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# server log kept: {srv.log_path}")
    sys.exit(0 if verdict_ok else 1)


if __name__ == "__main__":
    main()
