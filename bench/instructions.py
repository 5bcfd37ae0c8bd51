#!/usr/bin/env python3
"""Per-request cost of uwsgi-rs that does not depend on machine load:
user-space instructions (valgrind callgrind), syscalls (strace -c) and peak
worker RSS, for the bench workloads. Stdlib only; needs valgrind and strace.

    python3 bench/instructions.py [--workloads hello,big,post] [--proto http|uwsgi]
                                  [--n 2000] [--syscalls] [--rss] [--keep DIR]
                                  [--venv DIR] [--server uwsgi-rs|bjoern]

Instructions: the server (1 worker x 1 thread, under callgrind) serves
`--n` more requests in one run than in another; the difference of the
worker's instruction totals divided by that difference is the cost of one
request, start-up and warm-up cancelling out. Instructions are
deterministic (within ~0.1%) however busy the machine is, which wall-clock
figures on a shared machine are not. `--keep DIR` keeps the long run's
profile of the request loop alone, from a third run of `--n` requests
(`callgrind_annotate DIR/hello-http.out`; build with MATURIN_STRIP=false
scripts/develop.sh to see the extension's own functions).

Syscalls: strace -c -f on the worker while it serves `--n` requests
(2 x 4 threads as in bench.py, one keep-alive client), per request.

`--venv DIR` measures the uwsgi-rs installed in another venv (a build
kept for before/after comparisons); default: the checkout's .venv.

App-bound workloads: `json` (json50.py) and `django` (bench/apps/djangoapp,
a template rendered from a 50-row sqlite query; the database is made in a
temporary directory first). A Django request is ~22M instructions, ~0.2 s
under callgrind, so `django` defaults to 100 requests over a base of 20.
`--server bjoern` measures bjoern (bench/.venv, bench/setup.sh) the same
way: one process serving the app in-process (no fork), stopped with
SIGINT, the same client (HTTP only, instructions only). Where both spend
the same instructions per request on an app-bound workload, a difference
in CPU time per request under load is not code but scheduling, caches or
the machine (bench/README.md, "App-bound requests").

RSS: peak VmRSS of the worker for one request of the workload (the 50 MB
list response is the interesting one: `--workloads stream50m --rss`).

The client keeps one connection for HTTP and opens one per request for the
uwsgi protocol over a UNIX socket (as nginx's uwsgi_pass does: nginx never
keeps uwsgi upstream connections alive).
"""

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
APPS = os.path.join(BENCH_DIR, "apps")
VENV = os.path.join(REPO_DIR, ".venv")
SERVER = "uwsgi-rs"  # or "bjoern" (--server)

PEERS_PYTHON = os.path.join(BENCH_DIR, ".venv", "bin", "python")

# workload -> (app file, or MODULE:CALLABLE under bench/apps; method, body size)
WORKLOADS = {
    "hello": ("hello.py", "GET", 0),
    "big": ("big.py", "GET", 0),
    "post": ("post.py", "POST", 64 * 1024),
    "json": ("json50.py", "GET", 0),
    "stream50m": ("stream50m.py", "GET", 0),
    "django": ("djangoapp.wsgi:application", "GET", 0),
}
# workload -> (requests measured, base run) when --n is not given
SLOW_WORKLOADS = {"django": (100, 20)}

# bjoern in one process (bench/peer_run.py forks, and a forked child killed
# by its parent leaves no profile): argv = app, port; SIGINT stops it.
BJOERN_RUNNER = """
import importlib, os, sys
sys.path.insert(0, os.getcwd())
app, port = sys.argv[1], int(sys.argv[2])
if ":" in app:
    module, _, func = app.partition(":")
    app = getattr(importlib.import_module(module), func)
else:
    ns = {"__file__": app, "__name__": "bench_app"}
    exec(compile(open(app).read(), app, "exec"), ns)
    app = ns["application"]
import bjoern
bjoern.run(app, "127.0.0.1", port)
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_response(sock, buf=b""):
    """Read one HTTP response with Content-Length (or until close); returns leftover."""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise RuntimeError("connection closed before the response head")
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError("bad response: %r" % head[:80])
    n = None
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            n = int(v)
    if n is None:
        while True:
            d = sock.recv(1 << 20)
            if not d:
                return b""
    while len(rest) < n:
        d = sock.recv(max(65536, n - len(rest)))
        if not d:
            raise RuntimeError("connection closed mid-body")
        rest += d
    return rest[n:]


def http_request(method, body):
    req = "%s / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n" % method
    if body:
        req += "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n" % len(body)
    return req.encode() + b"\r\n" + body


def uwsgi_request(method, body):
    env = {"REQUEST_METHOD": method, "REQUEST_URI": "/", "PATH_INFO": "/",
           "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
           "REMOTE_PORT": "40000", "SERVER_PORT": "80", "SERVER_NAME": "localhost",
           "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "bench", "HTTP_ACCEPT": "*/*",
           "CONTENT_TYPE": "application/octet-stream" if body else "",
           "CONTENT_LENGTH": str(len(body)) if body else ""}
    vars_ = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) +
                     v.encode() for k, v in env.items())
    return struct.pack("<BHB", 0, len(vars_), 0) + vars_ + body


class Client:
    def __init__(self, proto, addr, method, body):
        self.proto, self.addr = proto, addr
        self.req = (http_request if proto == "http" else uwsgi_request)(method, body)
        self.sock = None

    def one(self):
        if self.proto == "http":
            if self.sock is None:
                self.sock = socket.create_connection(self.addr)
            self.sock.sendall(self.req)
            left = read_response(self.sock)
            if left:
                raise RuntimeError("unexpected bytes after the response")
        else:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.addr)
                s.sendall(self.req)
                read_response(s)

    def run(self, n):
        for _ in range(n):
            self.one()

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


def app_args(app):
    if ":" in app:
        return ["--pythonpath", APPS, "--module", app]
    return ["--wsgi-file", os.path.join(APPS, app)]


def start(proto, app, tmp, threads, prefix=(), processes=1):
    if proto == "http":
        port = free_port()
        addr, bind = ("127.0.0.1", port), ["--http", "127.0.0.1:%d" % port]
    else:
        addr = os.path.join(tmp, "app.sock")
        bind = ["--socket", addr]
    if SERVER == "bjoern":
        argv = list(prefix) + [PEERS_PYTHON, "-c", BJOERN_RUNNER,
                               app if ":" in app else os.path.join(APPS, app), str(addr[1])]
    else:
        argv = list(prefix) + [os.path.join(VENV, "bin", "python"),
                               os.path.join(VENV, "bin", "uwsgi-rs")] + bind + app_args(app) + [
            "--master", "--processes", str(processes),
            "--threads", str(threads), "--disable-logging"]
    log = open(os.path.join(tmp, "server.log"), "ab")
    proc = subprocess.Popen(argv, cwd=APPS, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError("server exited: see %s/server.log" % tmp)
        try:
            if proto == "http":
                socket.create_connection(addr, timeout=1).close()
            elif os.path.exists(addr):
                socket.socket(socket.AF_UNIX).connect(addr)
            else:
                raise OSError
            return proc, addr
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGINT if SERVER == "bjoern" else signal.SIGTERM)
        proc.wait(60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def workers_of(tmp):
    """The worker pids the server's log names (workers are forked by the
    master or by the loader process, so they are not all its children)."""
    pids = []
    with open(os.path.join(tmp, "server.log"), errors="replace") as f:
        for line in f:
            m = re.search(r"spawned uwsgi-rs worker \d+ \(pid: (\d+)", line)
            if m:
                pids.append(int(m.group(1)))
    return pids


def serve(workload, proto, tmp, threads, prefix=()):
    """Start the server on a workload's app; returns (process, client)."""
    app, method, size = WORKLOADS[workload]
    proc, addr = start(proto, app, tmp, threads, prefix)
    return proc, Client(proto, addr, method, b"x" * size)


def callgrind_total(workload, proto, n, threads, keep=None):
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-cg-")
    prefix = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg.%%p" % tmp]
    if keep:
        # the kept profile holds the request loop only (start-up left out)
        prefix.append("--toggle-collect=*core_loop*")
    proc, c = serve(workload, proto, tmp, threads, prefix)
    try:
        c.run(n)
        c.close()
    finally:
        stop(proc)
    totals = {}
    for path in glob.glob(os.path.join(tmp, "cg.*")):
        pid = int(path.rsplit(".", 1)[1])
        with open(path) as f:
            for line in f:
                if line.startswith("totals:"):
                    totals[pid] = int(line.split()[1])
    worker = list(totals) if SERVER == "bjoern" else [p for p in totals if p in workers_of(tmp)]
    if len(worker) != 1:
        raise RuntimeError("expected one worker profile in %s, got %s" % (tmp, sorted(totals)))
    if keep:
        os.makedirs(keep, exist_ok=True)
        os.replace(os.path.join(tmp, "cg.%d" % worker[0]),
                   os.path.join(keep, "%s-%s.out" % (workload, proto)))
    # the profiles of a long run are tens of MB: kept only on failure
    shutil.rmtree(tmp, ignore_errors=True)
    return totals[worker[0]]


def instructions(workload, proto, n, threads, keep, base=200):
    t0 = callgrind_total(workload, proto, base, threads)
    t1 = callgrind_total(workload, proto, base + n, threads)
    if keep:
        callgrind_total(workload, proto, n, threads, keep)
    return (t1 - t0) / n


def syscalls(workload, proto, n):
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-st-")
    out = os.path.join(tmp, "strace.txt")
    proc, c = serve(workload, proto, tmp, 4)
    try:
        c.run(200)  # warm up
        st = subprocess.Popen(["strace", "-c", "-f", "-o", out] +
                              sum((["-p", str(p)] for p in workers_of(tmp)), []),
                              stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        c.run(n)
        c.close()
        time.sleep(0.3)
        st.send_signal(signal.SIGINT)
        st.wait(30)
    finally:
        stop(proc)
    calls = {}
    with open(out) as f:
        for line in f:
            # % time, seconds, usecs/call, calls, [errors,] syscall
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    shutil.rmtree(tmp, ignore_errors=True)
    return calls


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_rss(workload, proto):
    """(RSS before, peak during, RSS after) one request, in KiB."""
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-rss-")
    proc, c = serve(workload, proto, tmp, 1)
    try:
        c.run(3)  # warm up: imports, first allocations
        (worker,) = workers_of(tmp)
        before = status_kib(worker, "VmRSS")
        # VmHWM is the peak since start; "5" resets it (Linux >= 4.0)
        with open("/proc/%d/clear_refs" % worker, "w") as f:
            f.write("5")
        c.run(1)
        c.close()
        time.sleep(0.2)
        result = before, status_kib(worker, "VmHWM"), status_kib(worker, "VmRSS")
    finally:
        stop(proc)
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="hello,big,post")
    ap.add_argument("--proto", default="http", choices=["http", "uwsgi"])
    ap.add_argument("--n", type=int, help="requests measured (default 2000; django 100)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--syscalls", action="store_true", help="count syscalls instead")
    ap.add_argument("--rss", action="store_true", help="peak RSS of one request instead")
    ap.add_argument("--keep", help="keep the callgrind profiles in this directory")
    ap.add_argument("--venv", help="the venv whose uwsgi-rs to measure (default: .venv)")
    ap.add_argument("--server", default="uwsgi-rs", choices=["uwsgi-rs", "bjoern"],
                    help="bjoern: bench/.venv's, HTTP, instructions only")
    args = ap.parse_args()
    global VENV, SERVER
    if args.venv:
        VENV = os.path.abspath(args.venv)
    SERVER = args.server
    if SERVER == "bjoern" and (args.proto != "http" or args.syscalls or args.rss or args.keep):
        ap.error("--server bjoern measures instructions over HTTP only")
    workloads = args.workloads.split(",")
    db_dir = None
    if "django" in workloads:
        # one database for every run, made before any server starts
        db_dir = tempfile.mkdtemp(prefix="uwsgi-rs-django-")
        os.environ["BENCH_DJANGO_DB"] = os.path.join(db_dir, "django.sqlite3")
        python = PEERS_PYTHON if SERVER == "bjoern" else os.path.join(VENV, "bin", "python")
        subprocess.run([python, "-m", "djangoapp.setup_db"], cwd=APPS, check=True,
                       stdout=subprocess.DEVNULL)
    try:
        measure(args, workloads)
    finally:
        if db_dir:
            shutil.rmtree(db_dir, ignore_errors=True)


def measure(args, workloads):
    for w in workloads:
        n, base = SLOW_WORKLOADS.get(w, (2000, 200))
        n = args.n or n
        if args.rss:
            before, peak, after = peak_rss(w, args.proto)
            print("%-9s %-5s worker RSS before %.1f MiB, peak %.1f MiB, after %.1f MiB"
                  % (w, args.proto, before / 1024, peak / 1024, after / 1024), flush=True)
        elif args.syscalls:
            calls = syscalls(w, args.proto, n)
            total = sum(calls.values())
            detail = ", ".join("%s %.2f" % (k, v / n) for k, v in
                               sorted(calls.items(), key=lambda kv: -kv[1]) if v / n >= 0.01)
            print("%-9s %-5s %.2f syscalls/request: %s" % (w, args.proto, total / n, detail),
                  flush=True)
        else:
            ins = instructions(w, args.proto, n, args.threads, args.keep, base)
            print("%-9s %-5s %10.0f instructions/request (%s worker, user space)"
                  % (w, args.proto, ins, SERVER), flush=True)


if __name__ == "__main__":
    sys.exit(main())
