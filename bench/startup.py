#!/usr/bin/env python3
"""Start-up time: from starting the command to every worker ready and the
first response served, for one or more uwsgi-rs commands, runs interleaved.

    python3 bench/startup.py [--runs 10] [--processes 2] [--threads 4]
        [--uwsgi-rs CMD ...] [-- EXTRA SERVER ARGS]

CMD is a command line (split like a shell would), e.g. `.venv/bin/uwsgi-rs`
(the default) or `.venv/bin/python -m uwsgi_rs`; give --uwsgi-rs several
times to compare. Each run serves bench/apps/hello.py on a free port; the time is
taken when the log shows every worker ready and GET / has returned 200, then
the server is stopped (SIGQUIT). Prints min / median / max per command.
"""

import argparse
import http.client
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(cmd, processes, threads, extra, timeout=30.0):
    port = free_port()
    argv = cmd + ["--http", f"127.0.0.1:{port}", "--wsgi-file",
                  os.path.join(BENCH_DIR, "apps", "hello.py"), "--master", "--processes", str(processes),
                  "--threads", str(threads), "--disable-logging"] + extra
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        ready = 0
        deadline = time.perf_counter() + timeout
        while ready < processes:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{argv[0]} exited before it was ready")
            if b") ready" in line:
                ready += 1
            if time.perf_counter() > deadline:
                raise RuntimeError("not ready in time")
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/")
        status = c.getresponse().status
        c.close()
        took = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"GET / answered {status}")
        return took
    finally:
        try:
            os.killpg(proc.pid, signal.SIGQUIT)
        except ProcessLookupError:
            pass
        proc.wait(10)
        proc.stdout.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uwsgi-rs", dest="cmds", action="append",
                    help="command to start (repeatable); default .venv/bin/uwsgi-rs")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("extra", nargs="*", help="more server arguments (after --)")
    args = ap.parse_args()
    cmds = args.cmds or [os.path.join(REPO_DIR, ".venv", "bin", "uwsgi-rs")]
    times = {c: [] for c in cmds}
    for _ in range(args.runs):
        for c in cmds:
            times[c].append(one_start(shlex.split(c), args.processes, args.threads, args.extra))
    print(f"# start to {args.processes} worker(s) ready and GET / answered, {args.runs} runs, "
          f"interleaved (ms: min / median / max)")
    for c, ts in times.items():
        ms = sorted(t * 1000 for t in ts)
        print(f"{ms[0]:8.1f} {statistics.median(ms):8.1f} {ms[-1]:8.1f}  {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
