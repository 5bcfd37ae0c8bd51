#!/usr/bin/env python3
"""Benchmark of uwsgi-rs's --py-tracebacker (stdlib only).

1. dump latency: an app whose import starts 64 threads, each recursing 100
   frames and then sleeping; 2 workers x 4 request threads. Connect to worker
   1's socket N times (default 50): median / p99 dump time and dump size; then
   the all-worker dump (socket 1 then socket 2, sequentially), N times.
2. GIL-held dump latency: tests/apps/busy.py (the spec's; copied to a temp dir);
   GET /busy starts a C loop that never releases the GIL; then time
   connect-and-read of the worker's socket (median of 10), both with a plain
   socket client and with `uwsgi-rs --connect-and-read`.
3. idle cost: wrk the hello app with and without --py-tracebacker (rounds
   interleaved, same method as bench.py), ratio of req/s.
4. dump storm: wrk the hello app (2 workers x 4 threads) while 20 clients
   dump both workers in a loop (`json`, the rich form), against wrk alone:
   req/s and p99 (issue 12's risk: 41.3k -> 11.3k req/s, p99 2.85 -> 56.6
   ms before dumps shared snapshots), and how many dumps the clients got.

uWSGI 2.0 (if installed) is measured alongside in 1 and 2 for reference
(--no-uwsgi to skip); it needs --lazy-apps so the app's threads start in the
workers, and its tracebacker cannot answer while a thread holds the GIL.

    python3 bench/tracebacker.py [--n 50] [--busy-n 10] [--duration 10]
                                 [--rounds 3] [--only dump,busy,idle,storm] [--json out.json]
"""

import argparse
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (same directory)

# the spec's busy.py, as the tests keep it (a plain clone has no ../shared)
SPEC_BUSY = os.path.join(bench.REPO_DIR, "tests", "apps", "busy.py")

THREADS_APP = '''\
import threading, time

NTHREADS, DEPTH = 64, 100


def _recurse(n):
    if n == 0:
        while True:
            time.sleep(3600)
    return _recurse(n - 1)


for _i in range(NTHREADS):
    threading.Thread(target=_recurse, args=(DEPTH,), name="deep-%d" % _i, daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]
'''


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def read_dump(path, timeout=10.0):
    """Connect to a tracebacker socket, read to EOF. Returns (seconds, bytes)."""
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return time.perf_counter() - t0, b"".join(chunks)


def start(name, argv, cwd, stop_sig, log_dir):
    srv = bench.Server(name, argv, cwd, stop_sig, log_dir).start()
    return srv


def wait_sockets(srv, paths, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError("%s exited: %s" % (srv.name, srv.log_tail()))
        if all(os.path.exists(p) for p in paths):
            return
        time.sleep(0.05)
    raise RuntimeError("tracebacker sockets %s not created" % paths)


def server_argv(kind, port, app, processes, threads, tb_base, uwsgi_rs):
    if kind == "uwsgi-rs":
        return [uwsgi_rs, "--http", "127.0.0.1:%d" % port, "--wsgi-file", app, "--master",
                "--processes", str(processes), "--threads", str(threads),
                "--disable-logging", "--py-tracebacker", tb_base], signal.SIGTERM
    return ["uwsgi", "--http-socket", "127.0.0.1:%d" % port, "--wsgi-file", app, "--master",
            "--processes", str(processes), "--threads", str(threads), "--disable-logging",
            "--lazy-apps", "--py-tracebacker", tb_base], signal.SIGINT


def fmt_ms(v):
    return "%.2f ms" % (v * 1e3)


# --------------------------------------------------------------------------
# 1. dump latency with 64 deep threads per worker
# --------------------------------------------------------------------------

def dump_latency(kind, n, tmp, uwsgi_rs):
    app = os.path.join(tmp, "deep_threads.py")
    with open(app, "w") as f:
        f.write(THREADS_APP)
    base = os.path.join(tmp, "tb-%s-" % kind)
    port = bench.free_port()
    argv, sig = server_argv(kind, port, app, 2, 4, base, uwsgi_rs)
    res = {"server": kind, "cmd": bench.display_cmd(argv, port).replace(tmp, "TMP")}
    if bench.QUIET["wait"] > 0:
        bench.wait_quiet(bench.QUIET["pct"], bench.QUIET["wait"])
    srv = start(kind, argv, tmp, sig, tmp)
    try:
        bench.verify(bench.wait_ready(srv, port))
        socks = [base + "1", base + "2"]
        wait_sockets(srv, socks)
        # wait until all 64 app threads are 100 frames deep in both workers
        deadline = time.monotonic() + 20
        while True:
            _, d1 = read_dump(socks[0])
            _, d2 = read_dump(socks[1])
            ready = [len(set(l.split(b" ")[2] for l in d.splitlines()
                             if l.startswith(b"thread_id = deep-"))) for d in (d1, d2)]
            if min(ready) >= 64:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("dumps show only %s of 64 threads" % ready)
            time.sleep(0.2)
        times, sizes, lines = [], [], []
        for _ in range(n):
            t, d = read_dump(socks[0])
            times.append(t)
            sizes.append(len(d))
            lines.append(d.count(b"\n"))
        both = []
        for _ in range(n):
            t0 = time.perf_counter()
            for p in socks:
                read_dump(p)
            both.append(time.perf_counter() - t0)
        cli = []
        if kind == "uwsgi-rs":
            for _ in range(10):
                t0 = time.perf_counter()
                out = subprocess.run([uwsgi_rs, "--connect-and-read", socks[0]],
                                     capture_output=True, timeout=20)
                cli.append(time.perf_counter() - t0)
                if b"deep-63" not in out.stdout:
                    raise RuntimeError("--connect-and-read output lacks deep-63")
        frames = d.count(b"thread_id = deep-")
        res.update(n=n, median_s=statistics.median(times), p99_s=pct(times, 99),
                   size_bytes=statistics.median(sizes), lines=statistics.median(lines),
                   deep_frame_lines=frames,
                   all_median_s=statistics.median(both), all_p99_s=pct(both, 99),
                   cli_median_s=statistics.median(cli) if cli else None)
    except Exception as exc:
        res["error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        srv.stop()
    return res


# --------------------------------------------------------------------------
# 2. dump while a request thread holds the GIL (busy.py)
# --------------------------------------------------------------------------

def busy_latency(kind, n, tmp, uwsgi_rs, timeout):
    app = os.path.join(tmp, "busy.py")
    shutil.copyfile(SPEC_BUSY, app)  # the tests' copy stays untouched
    base = os.path.join(tmp, "tb-busy-%s-" % kind)
    port = bench.free_port()
    argv, sig = server_argv(kind, port, app, 1, 2, base, uwsgi_rs)
    res = {"server": kind, "cmd": bench.display_cmd(argv, port).replace(tmp, "TMP")}
    if bench.QUIET["wait"] > 0:
        bench.wait_quiet(bench.QUIET["pct"], bench.QUIET["wait"])
    srv = start(kind + "-busy", argv, tmp, sig, tmp)
    busy = None
    try:
        status, _, body = bench.wait_ready(srv, port)
        if status != 200 or body != b"ok":
            raise RuntimeError("busy.py answered %s %r" % (status, body))
        wait_sockets(srv, [base + "1"])
        busy = socket.create_connection(("127.0.0.1", port))
        busy.sendall(b"GET /busy HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # let crunch() start
        times, sizes, found = [], [], 0
        for _ in range(n):
            try:
                t, d = read_dump(base + "1", timeout=timeout)
            except socket.timeout:
                res["error"] = "no dump within %.0f s (connect-and-read hangs)" % timeout
                break
            times.append(t)
            sizes.append(len(d))
            found += b"crunch" in d
        cli = []
        if kind == "uwsgi-rs" and times:
            for _ in range(n):
                t0 = time.perf_counter()
                out = subprocess.run([uwsgi_rs, "--connect-and-read", base + "1"],
                                     capture_output=True, timeout=timeout)
                cli.append(time.perf_counter() - t0)
                found += b"crunch" in out.stdout
        if times:
            res.update(n=len(times), median_s=statistics.median(times), p99_s=pct(times, 99),
                       size_bytes=statistics.median(sizes),
                       cli_median_s=statistics.median(cli) if cli else None,
                       crunch_found="%d/%d" % (found, len(times) + len(cli)))
    except Exception as exc:
        res["error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        if busy is not None:
            busy.close()
        srv.stop(timeout=3.0)  # the worker is stuck in C: no point waiting long
    return res


# --------------------------------------------------------------------------
# 3. idle tracebacker cost under wrk
# --------------------------------------------------------------------------

def idle_cost(duration, rounds, tmp, uwsgi_rs):
    variants = [("uwsgi-rs", []),
                ("uwsgi-rs +tb", ["--py-tracebacker", os.path.join(tmp, "tb-idle-")])]
    results = {label: [] for label, _ in variants}
    for rnd in range(rounds):
        order = variants if rnd % 2 == 0 else variants[::-1]  # alternate who goes first
        for label, extra in order:
            r = bench.measure_quiet("uwsgi-rs", duration, uwsgi_rs, tmp, extra, label)
            r["cmd"] = r["cmd"].replace(tmp, "TMP")
            results[label].append(r)
            print("  round %d  %-13s %s" % (rnd + 1, label, r.get("error") or
                  "%.0f req/s  p50 %.2f ms  p99 %.2f ms  errors %d  CPU/worker %s  other CPU %.0f%%"
                  % (r["rps"], r["p50_ms"], r["p99_ms"], r["errors"], bench.cpu_split(r),
                     r["other_cpu_pct"])),
                  flush=True)
    return results


# --------------------------------------------------------------------------
# 4. 20 dump loops under load
# --------------------------------------------------------------------------

def storm(duration, rounds, tmp, uwsgi_rs, loops=20):
    """wrk alone, then wrk with `loops` clients dumping in a loop; rounds
    alternate which goes first."""
    results = {"alone": [], "storm": []}
    for rnd in range(rounds):
        order = ["alone", "storm"] if rnd % 2 == 0 else ["storm", "alone"]
        for variant in order:
            port = bench.free_port()
            base = os.path.join(tmp, "tb-storm-%d-" % port)
            app = os.path.join(bench.BENCH_DIR, "apps", "hello.py")
            argv, sig = server_argv("uwsgi-rs", port, app, 2, 4, base, uwsgi_rs)
            srv = start("uwsgi-rs-storm", argv, bench.BENCH_DIR, sig, tmp)
            stop = [False]
            dumps = [0]

            def loop(path):
                while not stop[0]:
                    try:
                        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                            s.settimeout(10)
                            s.connect(path)
                            s.sendall(b"json\n")
                            while s.recv(65536):
                                pass
                        dumps[0] += 1
                    except OSError:
                        time.sleep(0.01)
            threads = []
            try:
                bench.verify(bench.wait_ready(srv, port))
                wait_sockets(srv, [base + "1", base + "2"])
                subprocess.run(["wrk", "-t2", "-c32", "-d2s", "http://127.0.0.1:%d/" % port],
                               capture_output=True, timeout=60)
                if variant == "storm":
                    import threading
                    threads = [threading.Thread(target=loop, args=(base + str(1 + i % 2),),
                                                daemon=True) for i in range(loops)]
                    for t in threads:
                        t.start()
                out, cpu = bench.run_wrk(port, duration, latency=True, server_pids=srv.workers)
                r = bench.parse_wrk(out)
                r.update(cpu, dumps=dumps[0])
                results[variant].append(r)
                print("  round %d  %-6s %.0f req/s  p50 %.2f ms  p99 %.2f ms  dumps %d"
                      "  other CPU %.0f%%" % (rnd + 1, variant, r["rps"], r["p50_ms"],
                                              r["p99_ms"], dumps[0], r["other_cpu_pct"]),
                      flush=True)
            finally:
                stop[0] = True
                for t in threads:
                    t.join(15)
                srv.stop()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="dumps per measurement (default 50)")
    ap.add_argument("--busy-n", type=int, default=10, help="dumps while GIL held (default 10)")
    ap.add_argument("--busy-timeout", type=float, default=5.0,
                    help="give up on a GIL-held dump after this many seconds (default 5)")
    ap.add_argument("--duration", type=int, default=10, help="wrk seconds, part 3 (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, part 3 (default 3)")
    ap.add_argument("--only", default="dump,busy,idle,storm", help="parts to run (default all)")
    ap.add_argument("--no-uwsgi", action="store_true", help="skip the uWSGI reference runs")
    ap.add_argument("--json", metavar="OUT")
    ap.add_argument("--uwsgi-rs", dest="uwsgi_rs", default=bench.DEFAULT_UWSGI_RS)
    bench.add_quiet_args(ap)
    args = ap.parse_args()
    bench.set_quiet(args)
    parts = set(p.strip() for p in args.only.split(","))
    if not os.access(args.uwsgi_rs, os.X_OK):
        sys.exit("uwsgi-rs binary not found: %s" % args.uwsgi_rs)
    kinds = ["uwsgi-rs"]
    if not args.no_uwsgi:
        if shutil.which("uwsgi"):
            kinds.append("uWSGI")
        else:
            print("# uWSGI: missing (not installed), reference runs skipped")

    bench.install_signal_handlers()
    info = bench.machine_info()
    print("# %s, %s CPUs (%s), %s" % (info["date"], info["cpus"], info.get("cpu"),
                                      bench.version_of("uwsgi-rs", args.uwsgi_rs)))
    out = {"machine": info}
    tmp = tempfile.mkdtemp(prefix="uwsgi-rs-tb-")
    args.uwsgi_rs, info["uwsgi_rs_binary"] = bench.snapshot_binary(args.uwsgi_rs, tmp)
    print("# uwsgi-rs binary: %s" % info["uwsgi_rs_binary"])
    try:
        if "dump" in parts:
            print("\n## 1. dump latency: 2 workers x 4 threads, app with 64 threads x 100 frames"
                  " per worker, %d dumps" % args.n)
            rows = [dump_latency(k, args.n, tmp, args.uwsgi_rs) for k in kinds]
            out["dump"] = rows
            print("%-9s %12s %12s %11s %7s %22s %22s %18s" % (
                "server", "median 1 wkr", "p99 1 wkr", "dump bytes", "lines",
                "median all (2 socks)", "p99 all (2 socks)", "CLI median"))
            for r in rows:
                if "error" in r:
                    print("%-9s %s" % (r["server"], r["error"]))
                    continue
                print("%-9s %12s %12s %11d %7d %22s %22s %18s" % (
                    r["server"], fmt_ms(r["median_s"]), fmt_ms(r["p99_s"]), r["size_bytes"],
                    r["lines"], fmt_ms(r["all_median_s"]), fmt_ms(r["all_p99_s"]),
                    fmt_ms(r["cli_median_s"]) if r["cli_median_s"] else "-"))
            for r in rows:
                print("  %s: %s" % (r["server"], r["cmd"]))
        if "busy" in parts:
            print("\n## 2. dump while GET /busy holds the GIL (busy.py, 1 worker x 2 threads),"
                  " %d dumps" % args.busy_n)
            rows = [busy_latency(k, args.busy_n, tmp, args.uwsgi_rs, args.busy_timeout)
                    for k in kinds]
            out["busy"] = rows
            for r in rows:
                if "median_s" in r:
                    print("%-9s median %s  p99 %s  %d bytes  'crunch' in %s dumps%s" % (
                        r["server"], fmt_ms(r["median_s"]), fmt_ms(r["p99_s"]), r["size_bytes"],
                        r["crunch_found"], "  (CLI --connect-and-read median %s)"
                        % fmt_ms(r["cli_median_s"]) if r.get("cli_median_s") else ""))
                else:
                    print("%-9s %s" % (r["server"], r.get("error")))
            for r in rows:
                print("  %s: %s" % (r["server"], r["cmd"]))
        if "storm" in parts:
            print("\n## 4. dump storm: hello app, wrk -t2 -c32 -d%ds, alone and with 20 clients"
                  " dumping both workers in a loop, %d rounds" % (args.duration, args.rounds))
            res = storm(args.duration, args.rounds, tmp, args.uwsgi_rs)
            out["storm"] = res
            for k, v in res.items():
                print("%-6s median %.0f req/s, p99 %.2f ms" % (
                    k, statistics.median(r["rps"] for r in v),
                    statistics.median(r["p99_ms"] for r in v)))
        if "idle" in parts:
            print("\n## 3. idle tracebacker cost: hello app, wrk -t2 -c32 -d%ds, %d rounds"
                  % (args.duration, args.rounds))
            res = idle_cost(args.duration, args.rounds, tmp, args.uwsgi_rs)
            summary = bench.summarize(list(res), res)
            out["idle"] = {"summary": summary, "runs": res}
            print()
            bench.print_table(summary, ref="uwsgi-rs", subject="uwsgi-rs +tb")
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        bench.stop_all()
        sys.exit(130)
    finally:
        bench.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print("# wrote %s" % args.json)


if __name__ == "__main__":
    main()
