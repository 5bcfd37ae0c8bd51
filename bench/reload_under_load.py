#!/usr/bin/env python3
"""Graceful reload under load: wrk runs for --duration seconds while the
master gets SIGHUP --reloads times (evenly spaced); every request must
succeed. Not part of CI (tests/test_faults.py has a short version).

    python3 bench/reload_under_load.py [--duration 30] [--reloads 5]
                                       [--processes 2] [--threads 4]
                                       [--connections 32] [--wrk-threads 2]
                                       [--long N] [--long-seconds S]
                                       [--max-requests N]
                                       [--app bench/apps/hello.py] [--uwsgi-rs PATH]

Issue 12's modes:
    python3 bench/reload_under_load.py --long 3          # 3 long requests in flight
    python3 bench/reload_under_load.py --max-requests 100 --reloads 0
    python3 bench/reload_under_load.py --max-requests 100  # recycling and reloads

--long N keeps N requests of --long-seconds (default 4) in flight all along
(clients outside wrk, each asking again as soon as one ends, on
bench/apps/sleepy.py unless --app is given): each must succeed, and reloads
must still finish while workers drain them.
--max-requests N passes --max-requests N --min-worker-lifetime 0 to the
server: workers recycle all along, which must lose nothing either.

Printed: wrk's output, when each reload was asked for and how long it took
until every worker ready before it had exited and as many new ones were
ready, and the verdict. Exit status 0 only if wrk reports no socket error
(connect, read, write, timeout) and no non-2xx response, every long request
succeeded, every reload replaced every worker, and no worker died.
Stdlib only; needs wrk (bash scripts/setup.sh installs it).
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import BENCH_DIR, REPO_DIR, free_port, wrk_counts  # noqa: E402  (same directory)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--reloads", type=int, default=5)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--wrk-threads", type=int, default=2)
    ap.add_argument("--long", type=int, default=0, help="long requests kept in flight")
    ap.add_argument("--long-seconds", type=float, default=4.0)
    ap.add_argument("--max-requests", type=int, default=0)
    ap.add_argument("--app", default=None)
    ap.add_argument("--uwsgi-rs", default=os.path.join(REPO_DIR, ".venv", "bin", "uwsgi-rs"))
    args = ap.parse_args()

    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk not found in PATH (bash scripts/setup.sh installs it)")
    if args.app is None:
        args.app = os.path.join(BENCH_DIR, "apps", "sleepy.py" if args.long else "hello.py")
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-reload-")
    log_path = os.path.join(tmp, "server.log")
    app_dir, app_file = os.path.split(os.path.abspath(args.app))
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    log = open(log_path, "wb")
    srv = subprocess.Popen(
        [args.uwsgi_rs, "--http", f"127.0.0.1:{port}", "--wsgi-file", app_file, "--master",
         "--processes", str(args.processes), "--threads", str(args.threads),
         "--disable-logging", "--listen", "1024"]
        + (["--max-requests", str(args.max_requests), "--min-worker-lifetime", "0"]
           if args.max_requests else []),
        cwd=app_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, start_new_session=True)

    def text():
        with open(log_path, errors="replace") as f:
            return f.read()

    def ready_pids():
        return [int(m.group(1)) for m in re.finditer(r"worker \d+ \(pid: (\d+)\) ready", text())]

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def wait_ready(count, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(ready_pids()) >= count:
                return True
            if srv.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    def wait_replaced(before, timeout):
        """Every worker ready before the reload has exited, and as many
        others are ready and alive (recycled ones count: they are new too)."""
        old = set(before)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [p for p in ready_pids() if p not in old and alive(p)]
            if not any(alive(p) for p in old) and len(new) >= args.processes:
                return True
            if srv.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    long_results = []
    long_stop = threading.Event()

    def long_client():
        url = f"http://127.0.0.1:{port}/sleep?s={args.long_seconds}"
        while not long_stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=args.long_seconds + 60) as r:
                    r.read()
                    long_results.append(r.status)
            except Exception as e:  # noqa: BLE001 - counted as a failure
                long_results.append(repr(e))

    load = None
    reload_times = []
    ok = True
    try:
        if not wait_ready(args.processes, 20):
            sys.exit("server did not start:\n" + text())
        print(f"# wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s, "
              f"{args.reloads} SIGHUP(s), {args.processes} worker(s) x {args.threads} thread(s)", flush=True)
        longs = [threading.Thread(target=long_client, daemon=True) for _ in range(args.long)]
        for t in longs:
            t.start()
        if args.long:
            print(f"# {args.long} request(s) of {args.long_seconds} s kept in flight", flush=True)
            time.sleep(0.5)  # in flight before the load and the first reload
        t0 = time.monotonic()
        load = subprocess.Popen([wrk, f"-t{args.wrk_threads}", f"-c{args.connections}",
                                 f"-d{args.duration}s", f"http://127.0.0.1:{port}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for k in range(args.reloads):
            at = args.duration * (k + 1) / (args.reloads + 1)
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            before = [p for p in ready_pids() if alive(p)]
            t_hup = time.monotonic()
            os.kill(srv.pid, signal.SIGHUP)
            done = wait_replaced(before, 30)
            took = time.monotonic() - t_hup
            reload_times.append(took)
            print(f"reload {k + 1}: SIGHUP at {t_hup - t0:5.1f} s, all {args.processes} worker(s) "
                  f"replaced {'after %.2f s' % took if done else 'NOT within 30 s'}", flush=True)
            ok &= done
        out, _ = load.communicate(timeout=args.duration + 30)
        long_stop.set()
        for t in longs:
            t.join(args.long_seconds + 60)
    finally:
        long_stop.set()
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        final_log = text()
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(srv.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        srv.wait()
        log.close()
    print(out.rstrip())
    reqs, errors, non2xx = wrk_counts(out)
    deaths = final_log.count("DAMN !")
    hups = final_log.count("SIGHUP received")
    recycled = len(re.findall(r"max requests \d+ reached", final_log))
    long_failed = [r for r in long_results if r != 200]
    print()
    print(f"requests {reqs}  socket errors {errors}  non-2xx {non2xx}  "
          f"SIGHUPs handled {hups}/{args.reloads}  worker deaths {deaths}")
    if args.long:
        print(f"long requests {len(long_results)}  failed {len(long_failed)} {long_failed[:3]}")
    if args.max_requests:
        print(f"workers recycled by --max-requests {args.max_requests}: {recycled}")
    ok &= reqs is not None and errors == 0 and non2xx == 0 and deaths == 0 and hups == args.reloads
    ok &= not long_failed and (not args.long or len(long_results) > 0)
    ok &= not args.max_requests or recycled > 0
    print("verdict " + ("OK" if ok else "FAILED"))
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# server log kept: {log_path}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
