#!/usr/bin/env python3
"""Where the time goes behind nginx: uwsgi-rs and uWSGI, each behind
Debian's nginx with uwsgi_pass over a UNIX socket (bench.py's nginx mode,
same config), rounds alternating. Per request, under `wrk -t2 -c32`:
CPU of the server's workers and of nginx (us), their context switches,
and with `perf` their system calls by name and the wake-ups each side
sends (tracepoint counts, cheap enough not to change the picture the way
strace does), plus how idle the machine was. bench.py gives req/s; this says which side spent what.
With --direct, wrk talks to each server's HTTP port and there is no nginx
(e.g. --servers uwsgi-rs,uwsgi-rs/t1,bjoern: where a worker's threads cost).

    python3 bench/upstream_probe.py [--workloads big,hello] [--rounds 3]
        [--duration 4] [--uwsgi-rs PATH] [--same-session] [--no-perf]
        [--direct] [--servers uwsgi-rs,uWSGI]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

SERVERS = ["uwsgi-rs", "uWSGI"]
SYSCALLS = ["accept4", "read", "readv", "recvfrom", "sendmsg", "writev", "close", "connect",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "poll", "futex", "sched_yield"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime + stime of a process (all its threads), seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


def switches(pid):
    """Voluntary and involuntary context switches of all of a process's threads."""
    vol = inv = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0, 0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                status = f.read()
        except OSError:
            continue
        vol += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
        inv += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", status, re.M).group(1))
    return vol, inv


def snapshot(pids):
    sw = [switches(p) for p in pids]
    return sum(cpu_s(p) for p in pids), sum(v for v, _ in sw), sum(i for _, i in sw)


def cpu_jiffies():
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return sum(vals), vals[3] + vals[4]


def perf_stat(pids, out):
    """perf stat counting syscall tracepoints of `pids` until SIGINT, or None."""
    # sched_waking counted on a process: the wake-ups it sends (a thread
    # it makes runnable), which cost it more when the target's CPU idles
    events = ",".join(["raw_syscalls:sys_enter", "sched:sched_waking"] +
                      ["syscalls:sys_enter_" + s for s in SYSCALLS])
    return subprocess.Popen(["perf", "stat", "-x,", "-e", events, "-o", out,
                             "-p", ",".join(map(str, pids))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def read_perf(path):
    counts = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(",")
                if len(parts) > 2 and parts[0].isdigit():
                    name = parts[2].replace("syscalls:sys_enter_", "")
                    name = {"raw_syscalls:sys_enter": "all",
                            "sched:sched_waking": "wakeups sent"}.get(name, name)
                    counts[name] = int(parts[0])
    except OSError:
        pass
    return counts


def server_argv(name, port, uwsgi_rs, workload, sock):
    """bench.py's command for `name`; "uwsgi-rs/tN" is uwsgi-rs with N
    threads per worker instead of 4 (to tell thread scheduling apart), and
    "uwsgi-rs[/tN]=BINARY" runs that build instead (to compare two)."""
    name, _, other_build = name.partition("=")
    uwsgi_rs = other_build or uwsgi_rs
    base, _, threads = name.partition("/t")
    argv, cwd, stop_sig, binary = bench.server_spec(base, port, uwsgi_rs, workload, sock)
    if threads:
        argv[argv.index("--threads") + 1] = threads
    return argv, cwd, stop_sig, binary


def probe(name, workload, duration, uwsgi_rs, use_perf, log_dir, direct=False):
    run_dir = tempfile.mkdtemp(prefix="probe-", dir=log_dir)
    port = bench.free_port()
    sock = None if direct else os.path.join(run_dir, "app.sock")
    argv, cwd, stop_sig, binary = server_argv(name, port, uwsgi_rs, workload, sock)
    if binary is None:
        return {"server": name, "error": "not installed"}
    label = name.split("=")[0].replace("/", "-") + ("-other" if "=" in name else "")
    srv = bench.Server(label, argv, cwd, stop_sig, log_dir).start()
    front = None
    try:
        if direct:
            bench.wait_ready(srv, port)
        else:
            bench.wait_upstream(srv, None, sock)
            front = bench.start_nginx(run_dir, port, sock, None, log_dir)
        bench.check_workload(workload, port)
        script = bench.wrk_script(workload, run_dir)
        bench.run_wrk(port, bench.WARMUP_S, latency=False, script=script)
        workers = srv.workers()
        stats = []
        sides = [("srv", workers)] + ([("nginx", [front.pid])] if front else [])
        if use_perf:
            stats = [perf_stat(pids, os.path.join(run_dir, side + ".perf"))
                     for side, pids in sides]
            time.sleep(0.5)
        before, m0 = [snapshot(pids) for _, pids in sides], cpu_jiffies()
        out = subprocess.run(["wrk", "-t2", "-c32", "-d%ds" % duration] +
                             (["-s", script] if script else []) +
                             ["http://127.0.0.1:%d/" % port],
                             capture_output=True, text=True).stdout
        after, m1 = [snapshot(pids) for _, pids in sides], cpu_jiffies()
        for p in stats:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)
        bench.check_workload(workload, port)
        n = int(re.search(r"(\d+) requests in", out).group(1))
        res = {"server": name, "workload": workload, "requests": n,
               "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
               "idle_pct": 100.0 * (m1[1] - m0[1]) / max(1, m1[0] - m0[0])}
        for (side, _), a, b in zip(sides, before, after):
            res[side + "_us"] = (b[0] - a[0]) / n * 1e6
            res[side + "_cs_vol"] = (b[1] - a[1]) / n
            res[side + "_cs_inv"] = (b[2] - a[2]) / n
        if use_perf:
            for side, _ in sides:
                counts = read_perf(os.path.join(run_dir, side + ".perf"))
                res[side + "_sys"] = {k: v / n for k, v in counts.items() if v}
        return res
    except Exception as exc:
        return {"server": name, "workload": workload, "error": str(exc)}
    finally:
        if front:
            front.stop()
        srv.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def show(r):
    if "error" in r:
        print("%-8s %s" % (r["server"], r["error"]))
        return
    line = "%-8s %7.0f req/s  server %5.1f us %4.2f+%4.2f cs" % (
        r["server"], r["rps"], r["srv_us"], r["srv_cs_vol"], r["srv_cs_inv"])
    if "nginx_us" in r:
        line += "  nginx %5.1f us %4.2f+%4.2f cs" % (
            r["nginx_us"], r["nginx_cs_vol"], r["nginx_cs_inv"])
    print(line + "  (machine idle %.0f%%)" % r["idle_pct"])
    for side in ("srv", "nginx"):
        sys_ = r.get(side + "_sys")
        if sys_:
            calls = " ".join("%s %.2f" % (k, v) for k, v in sorted(sys_.items(),
                                                                  key=lambda kv: -kv[1]))
            print("         %-6s syscalls (and wakeups sent)/request: %s" % (side, calls))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="big")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--uwsgi-rs", default=bench.DEFAULT_UWSGI_RS)
    ap.add_argument("--same-session", action="store_true",
                    help="start the servers and nginx in this script's session")
    ap.add_argument("--no-perf", action="store_true", help="no syscall counts")
    ap.add_argument("--direct", action="store_true",
                    help="wrk straight to the servers' HTTP port, no nginx")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="comma-separated; bench.py's names, or uwsgi-rs/tN for N threads, "
                    "or uwsgi-rs[/tN]=BINARY for another build")
    args = ap.parse_args()
    bench.SESSION["own"] = not args.same_session
    use_perf = not args.no_perf and shutil.which("perf") is not None
    log_dir = tempfile.mkdtemp(prefix="upstream-probe-")
    os.chmod(log_dir, 0o755)
    if "django" in args.workloads.split(","):
        bench.make_django_db(log_dir)
    try:
        print("# wrk -t2 -c32 -d%ds %s; per request: CPU in us, context switches "
              "voluntary+involuntary" % (args.duration, "direct" if args.direct else
                                         "behind nginx (uwsgi_pass, UNIX socket)"))
        for workload in args.workloads.split(","):
            for rnd in range(args.rounds):
                print("## %s, round %d" % (workload, rnd + 1), flush=True)
                servers = args.servers.split(",")
                order = servers if rnd % 2 == 0 else servers[::-1]
                for name in order:
                    show(probe(name, workload, args.duration, args.uwsgi_rs, use_perf, log_dir,
                               args.direct))
                    sys.stdout.flush()
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
