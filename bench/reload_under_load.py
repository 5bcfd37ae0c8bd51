#!/usr/bin/env python3
"""Graceful reload under load: wrk runs for --duration seconds while the
master gets SIGHUP --reloads times (evenly spaced); every request must
succeed. Not part of CI (tests/test_faults.py has a short version).

    python3 bench/reload_under_load.py [--duration 30] [--reloads 5]
                                       [--processes 2] [--threads 4]
                                       [--connections 32] [--wrk-threads 2]
                                       [--app bench/apps/hello.py] [--uwsgi-rs PATH]

Printed: wrk's output, when each reload was asked for and how long it took
until every worker had been replaced, and the verdict. Exit status 0 only if
wrk reports no socket error (connect, read, write, timeout) and no non-2xx
response, every reload replaced every worker, and no worker died.
Stdlib only; needs wrk (bash scripts/setup.sh installs it).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

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
    ap.add_argument("--app", default=os.path.join(BENCH_DIR, "apps", "hello.py"))
    ap.add_argument("--uwsgi-rs", default=os.path.join(REPO_DIR, ".venv", "bin", "uwsgi-rs"))
    args = ap.parse_args()

    wrk = shutil.which("wrk")
    if not wrk:
        sys.exit("wrk not found in PATH (bash scripts/setup.sh installs it)")
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
         "--disable-logging", "--listen", "1024"],
        cwd=app_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, start_new_session=True)

    def text():
        with open(log_path, errors="replace") as f:
            return f.read()

    def wait_ready(count, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text().count(") ready") >= count:
                return True
            if srv.poll() is not None:
                return False
            time.sleep(0.02)
        return False

    load = None
    reload_times = []
    ok = True
    try:
        if not wait_ready(args.processes, 20):
            sys.exit("server did not start:\n" + text())
        print(f"# wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s, "
              f"{args.reloads} SIGHUP(s), {args.processes} worker(s) x {args.threads} thread(s)", flush=True)
        t0 = time.monotonic()
        load = subprocess.Popen([wrk, f"-t{args.wrk_threads}", f"-c{args.connections}",
                                 f"-d{args.duration}s", f"http://127.0.0.1:{port}/"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ready = args.processes
        for k in range(args.reloads):
            at = args.duration * (k + 1) / (args.reloads + 1)
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            t_hup = time.monotonic()
            os.kill(srv.pid, signal.SIGHUP)
            ready += args.processes
            done = wait_ready(ready, 30)
            took = time.monotonic() - t_hup
            reload_times.append(took)
            print(f"reload {k + 1}: SIGHUP at {t_hup - t0:5.1f} s, all {args.processes} worker(s) "
                  f"replaced {'after %.2f s' % took if done else 'NOT within 30 s'}", flush=True)
            ok &= done
        out, _ = load.communicate(timeout=args.duration + 30)
    finally:
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
    print()
    print(f"requests {reqs}  socket errors {errors}  non-2xx {non2xx}  "
          f"SIGHUPs handled {hups}/{args.reloads}  worker deaths {deaths}")
    ok &= reqs is not None and errors == 0 and non2xx == 0 and deaths == 0 and hups == args.reloads
    print("verdict " + ("OK" if ok else "FAILED"))
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"# server log kept: {log_path}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
