#!/usr/bin/env python3
"""Throughput/latency/memory benchmark: uwsgi-rs against granian, gunicorn,
uWSGI, bjoern and fastwsgi, on five workloads, direct and behind nginx.

Workloads (bench/apps/): hello (13 bytes), big (a 100 KB body), post (a
64 KB POST the app reads whole), json (50 items built and serialised per
request), django (a Django view rendering a template from a 50-row sqlite
query). Every server runs 2 processes x 4 threads where it has threads
(bjoern and fastwsgi: 2 single-threaded processes). Each run starts the
server, checks its answer, warms up with wrk for 2 s, then runs

    wrk -t2 -c32 -d<duration>s --latency [-s post.lua] URL

while the RSS of the workers is sampled, and stops it. Modes: "direct"
(wrk talks HTTP/1.1 keep-alive to the server) and "nginx" (Debian's nginx,
one worker process, in front: uwsgi_pass over a UNIX socket for the
servers that speak uwsgi, uwsgi-rs and uWSGI; proxy_pass with HTTP/1.1
keep-alive to the upstream over loopback TCP for the HTTP-only ones).
Rounds are interleaved; ONE table shows the median of each metric.

    python3 bench/bench.py [--duration 10] [--rounds 3] [--workloads hello,big,post,json,django]
                           [--modes direct,nginx] [--only uwsgi-rs,granian] [--json out.json]

The peers come from bench/setup.sh (a venv, bench/.venv). Stdlib only.
Every server runs in its own process group (session); all of them are
stopped on exit, error, Ctrl-C or SIGTERM, escalating to SIGKILL.
"""

import argparse
import datetime
import glob
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
# the console script scripts/setup.sh (and tests/run.sh) install
DEFAULT_UWSGI_RS = os.path.join(REPO_DIR, ".venv", "bin", "uwsgi-rs")
APPS_DIR = os.path.join(BENCH_DIR, "apps")
# the peers' venv (bench/setup.sh)
PEERS_BIN = os.path.join(BENCH_DIR, ".venv", "bin")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXPECTED_BODY = b"Hello, World!"
POST_SIZE = 64 * 1024
WRK_THREADS, WRK_CONNS, WARMUP_S = 2, 32, 2

# --------------------------------------------------------------------------
# process management
# --------------------------------------------------------------------------

_LIVE = []  # every Server started and not yet stopped
# Servers start in their own session (own=True) or only their own process
# group (--same-session). On kernels that group CPU time per session
# (sched_autogroup_enabled=1) the first gives the server and wrk equal CPU
# shares, as separate services get; the second is a shell running both.
SESSION = {"own": True}


class Server:
    """A server process started in its own process group (and session, see SESSION)."""

    def __init__(self, name, argv, cwd, stop_signal=signal.SIGTERM, log_dir=None):
        self.name, self.argv, self.cwd, self.stop_signal = name, argv, cwd, stop_signal
        self.proc = None
        self.log_path = os.path.join(log_dir or tempfile.gettempdir(),
                                     "%s-%d.log" % (name, os.getpid()))
        self.seen = {}  # pid -> start time of every descendant seen (in case one left the group)

    def start(self):
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=SESSION["own"],
                                         process_group=None if SESSION["own"] else 0)
        finally:
            log.close()
        _LIVE.append(self)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def workers(self):
        """Pids of the server's processes except the master (the group leader).

        If the server runs as a single process (no master), that process."""
        kids = descendants(self.pid)
        self._remember(kids)
        # uwsgi-rs preloads the app in a loader process the workers are
        # forked from: it serves nothing, so it is not counted as a worker
        kids = [k for k in kids if k not in self.loaders()]
        return kids or ([self.pid] if self.alive() else [])

    def loaders(self):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return set()
        return {int(p) for p in re.findall(r"by the loader \(pid: (\d+)", text)}

    def _remember(self, pids):
        for pid in pids:
            st = proc_stat(pid)
            if st:
                self.seen[pid] = st[3]

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self, timeout=10.0):
        """Stop the master politely, then SIGKILL whatever is left of the group."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # its own group: the leader's pid is the pgid
        self._remember(descendants(pgid))
        if self.proc.poll() is None:
            try:
                os.kill(pgid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 3.0
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, started in self.seen.items():  # a descendant that left the group
            st = proc_stat(pid)
            if st and st[0] != "Z" and st[3] == started:  # same process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 5.0
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self in _LIVE:
            _LIVE.remove(self)


def stop_all():
    for srv in list(_LIVE):
        try:
            srv.stop()
        except Exception as exc:  # keep stopping the others
            print("warning: stopping %s: %s" % (srv.name, exc), file=sys.stderr)


def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def install_signal_handlers():
    # SIGINT too: a shell starting us in the background leaves it ignored (SIG_IGN)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def proc_stat(pid):
    """(state, ppid, pgrp, starttime) of pid from /proc, or None."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[19])


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def descendants(root):
    parent = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[0] != "Z":
            parent[pid] = st[1]
    out = []
    for pid in parent:
        p, hops = parent.get(pid), 0
        while p and hops < 64:
            if p == root:
                out.append(pid)
                break
            p, hops = parent.get(p), hops + 1
    return sorted(out)


def group_alive(pgid):
    for pid in all_pids():
        st = proc_stat(pid)
        if st and st[2] == pgid and st[0] != "Z":
            return True
    return False


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_jiffies():
    """The "cpu" line of /proc/stat: jiffies of all CPUs together per state
    (user, nice, system, idle, iowait, irq, softirq, steal, ...)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def busy_of(v):
    """Busy jiffies in a cpu_jiffies() reading (user+nice+system+irq+softirq+steal)."""
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def steal_of(v):
    """Jiffies in a cpu_jiffies() reading that the hypervisor ran something
    else while a vCPU of ours wanted to run (0 on bare metal)."""
    return v[7] if len(v) > 7 else 0


def machine_busy_jiffies():
    """Busy jiffies of all CPUs together."""
    return busy_of(cpu_jiffies())


def proc_cpu_jiffies(pids):
    return sum(per_pid_cpu_jiffies(pids).values())


def per_pid_cpu_jiffies(pids):
    out = {}
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                data = f.read().decode("ascii", "replace")
        except OSError:
            continue
        rest = data[data.rindex(")") + 2:].split()
        out[pid] = int(rest[11]) + int(rest[12])
    return out


def other_cpu_pct(seconds):
    """CPU busy during the next `seconds` (we are idle meanwhile), in % of one core."""
    b0, t0 = machine_busy_jiffies(), time.monotonic()
    time.sleep(seconds)
    busy = machine_busy_jiffies() - b0
    return 100.0 * busy / CLK_TCK / (time.monotonic() - t0)


def wait_quiet(max_pct, max_wait, out=sys.stdout):
    """Wait (up to max_wait s) until other processes use < max_pct % of one core."""
    deadline = time.monotonic() + max_wait
    pct = other_cpu_pct(1.0)
    waited = False
    while pct >= max_pct and time.monotonic() < deadline:
        if not waited:
            print("  (machine busy: %.0f%% CPU used by other processes; waiting up to %d s)"
                  % (pct, max_wait), file=out, flush=True)
            waited = True
        pct = other_cpu_pct(2.0)
    return pct


def established_inodes(port):
    """Socket inodes of ESTABLISHED TCP connections whose local port is `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            pass
    return inodes


def conns_per_process(pids, port):
    """How many accepted client connections on `port` each pid holds open."""
    inodes = established_inodes(port)
    out = []
    for pid in pids:
        n = 0
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    n += 1
        except OSError:
            pass
        out.append(n)
    return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# HTTP checks
# --------------------------------------------------------------------------

def http_get(port, path="/", timeout=3.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


def wait_ready(srv, port, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError("exited with status %s before answering" % srv.proc.returncode)
        try:
            return http_get(port, timeout=1.0)
        except (OSError, http.client.HTTPException) as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError("no answer on port %d after %.0f s (%s)" % (port, timeout, last))


def verify(resp):
    """The hello app's answer, exactly."""
    status, headers, body = resp
    problems = []
    if status != 200:
        problems.append("status %s" % status)
    if body != EXPECTED_BODY:
        problems.append("body %r" % body[:60])
    if not headers.get("content-type", "").startswith("text/plain"):
        problems.append("content-type %r" % headers.get("content-type"))
    if headers.get("content-length") != str(len(EXPECTED_BODY)):
        problems.append("content-length %r" % headers.get("content-length"))
    if problems:
        raise RuntimeError("bad response: " + ", ".join(problems))


def http_post(port, body, timeout=3.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


def check_workload(workload, port):
    """Ask once as wrk will and check the answer; raises on a wrong one."""
    if workload == "post":
        status, _, body = http_post(port, b"x" * POST_SIZE)
        ok = status == 200 and body == str(POST_SIZE).encode()
    else:
        status, headers, body = http_get(port)
        if workload == "hello":
            return verify((status, headers, body))
        if workload == "big":
            ok = status == 200 and len(body) == 100 * 1024
        elif workload == "json":
            ok = status == 200 and json.loads(body)["count"] == 50
        else:  # django
            ok = status == 200 and b"Item 49" in body and body.count(b"<tr class=") == 50
    if not ok:
        raise RuntimeError("bad %s response: %s %r" % (workload, status, body[:80]))


# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out):
    res = {"rps": None, "p50_ms": None, "p99_ms": None, "requests": None,
           "non2xx": 0, "sock_connect": 0, "sock_read": 0, "sock_write": 0, "sock_timeout": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        res["requests"] = int(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % pct, out, re.M)
        if m:
            res[key] = _ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        (res["sock_connect"], res["sock_read"],
         res["sock_write"], res["sock_timeout"]) = map(int, m.groups())
    res["errors"] = res["non2xx"] + res["sock_connect"] + res["sock_read"] + \
        res["sock_write"] + res["sock_timeout"]
    return res


def wrk_counts(out):
    """From wrk's output: requests (None if it printed no total), socket
    errors (connect, read, write, timeout) and non-2xx/3xx responses."""
    r = parse_wrk(out)
    return r["requests"], r["errors"] - r["non2xx"], r["non2xx"]


def wrk_script(workload, run_dir):
    """The wrk Lua script the workload needs (the 64 KB POST), or None."""
    if workload != "post":
        return None
    script = os.path.join(run_dir, "post.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.body = string.rep("x", %d)\n'
                'wrk.headers["Content-Type"] = "application/octet-stream"\n' % POST_SIZE)
    return script


def run_wrk(port, duration, latency=True, sampler=None, server_pids=None, script=None,
            extra_pids=()):
    """Run wrk; if sampler is given, call it every 0.5 s while wrk runs.

    Returns (wrk output, cpu) where cpu holds the server's CPU use and the CPU
    used by everything else on the machine (other_cpu_pct, in % of one core:
    noise from other processes) during the run."""
    cmd = ["wrk", "-t%d" % WRK_THREADS, "-c%d" % WRK_CONNS, "-d%ds" % duration]
    if latency:
        cmd.append("--latency")
    if script:
        cmd += ["-s", script]
    cmd.append("http://127.0.0.1:%d/" % port)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    me0 = resource.getrusage(resource.RUSAGE_SELF)
    srv_pids = server_pids() if server_pids else []
    extra0 = proc_cpu_jiffies(extra_pids)  # nginx: ours, not noise
    per0, stat0, t0 = per_pid_cpu_jiffies(srv_pids), cpu_jiffies(), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if sampler is not None:
            start = time.monotonic()
            while proc.poll() is None:
                time.sleep(0.5)
                # skip the first second: connections and threads are still ramping up
                if proc.poll() is None and time.monotonic() - start > 1.0:
                    sampler()
        out, _ = proc.communicate(timeout=duration + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stat1 = cpu_jiffies()
    busy = busy_of(stat1) - busy_of(stat0)
    steal = steal_of(stat1) - steal_of(stat0)
    elapsed = time.monotonic() - t0
    per1 = per_pid_cpu_jiffies(server_pids()) if server_pids else {}
    per = {pid: per1[pid] - per0.get(pid, 0) for pid in per1}
    srv = sum(per.values())
    extra = proc_cpu_jiffies(extra_pids) - extra0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    ours_s = (srv + extra) / CLK_TCK + (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) + \
        (me1.ru_utime + me1.ru_stime - me0.ru_utime - me0.ru_stime)
    cpu = {"server_cpu_pct": 100.0 * srv / CLK_TCK / elapsed,
           # seconds, for the CPU per request (the front's, nginx, apart)
           "server_cpu_s": srv / CLK_TCK, "front_cpu_s": extra / CLK_TCK,
           "other_cpu_pct": max(0.0, 100.0 * (busy / CLK_TCK - ours_s) / elapsed),
           # CPU time the hypervisor took from our vCPUs: it comes in ~100 ms
           # pauses that stall whatever thread is on the paused vCPU.
           "steal_ms": 1000.0 * steal / CLK_TCK,
           # CPU of each server process (master first), % of one core: shows load imbalance
           "proc_cpu_pct": [round(100.0 * per[p] / CLK_TCK / elapsed, 1) for p in sorted(per)]}
    out = out.decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError("wrk failed (%d): %s" % (proc.returncode, out.strip()[-300:]))
    return out, cpu


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

# Noise control (the machine may be shared): before each run wait (up to "wait" s) until
# other processes use < "pct" % of one core; redo a run (up to "retries" times) when other
# processes used more than "noisy" % of one core during it, or the hypervisor stole more
# than "steal_ms" of CPU from this VM, keeping the quietest attempt. Steal is small in CPU
# terms but comes as ~100 ms pauses of a vCPU: one of them stalls every connection
# whose thread was on that vCPU, and since wrk corrects for coordinated omission a
# single pause can decide a run's p99 whatever the server.
QUIET = {"pct": 35.0, "wait": 120, "noisy": 30.0, "steal_ms": 50.0, "retries": 3}


def noise_of(r):
    """How noisy a run was: (stolen ms over the limit, other CPU %): smaller is quieter."""
    return (max(0.0, r.get("steal_ms", 0.0) - QUIET["steal_ms"]), r["other_cpu_pct"])


def is_quiet(r):
    return r["other_cpu_pct"] <= QUIET["noisy"] and r.get("steal_ms", 0.0) <= QUIET["steal_ms"]

SERVER_ORDER = ["uwsgi-rs", "granian", "gunicorn", "uWSGI", "bjoern", "fastwsgi"]
# servers that speak the uwsgi protocol: behind nginx they get uwsgi_pass
UWSGI_PROTOCOL = {"uwsgi-rs", "uWSGI"}
# workload -> (module, callable) in bench/apps
WORKLOADS = {"hello": ("hello", "app"), "big": ("big", "app"), "post": ("post", "app"),
             "json": ("json50", "app"), "django": ("djangoapp.wsgi", "application")}
WORKLOAD_ORDER = ["hello", "big", "post", "json", "django"]
MODES = ["direct", "nginx"]


def peer_binary(name):
    """A peer's command from bench/.venv (bench/setup.sh), else from PATH."""
    path = os.path.join(PEERS_BIN, name)
    return path if os.access(path, os.X_OK) else shutil.which(name)


def server_spec(name, port, uwsgi_rs_path, workload="hello", sock=None):
    """(argv, cwd, stop signal, binary) for one server serving `workload` on
    127.0.0.1:`port` (HTTP), or on UNIX socket `sock` (uwsgi protocol; for
    the servers in UWSGI_PROTOCOL behind nginx). argv[0] is the binary."""
    module, func = WORKLOADS[workload]
    spec = "%s:%s" % (module, func)
    addr = "127.0.0.1:%d" % port
    if name == "uwsgi-rs":
        binary = uwsgi_rs_path if os.access(uwsgi_rs_path, os.X_OK) else None
        bind = ["--socket", sock] if sock else ["--http", addr]
        argv = [uwsgi_rs_path] + bind + ["--pythonpath", APPS_DIR, "--module", spec,
                                         "--master", "--processes", "2", "--threads", "4",
                                         "--disable-logging"]
        return argv, APPS_DIR, signal.SIGTERM, binary
    if name == "uWSGI":
        binary = peer_binary("uwsgi")
        # --http11-socket: uWSGI's HTTP/1.1 keep-alive socket (--http-socket
        # closes the connection after every response)
        bind = ["--socket", sock] if sock else ["--http11-socket", addr]
        argv = [binary or "uwsgi"] + bind + ["--pythonpath", APPS_DIR, "--module", spec,
                                             "--master", "--processes", "2", "--threads", "4",
                                             "--disable-logging"]
        # uWSGI 2.0 reloads on SIGTERM (unless --die-on-term); SIGINT shuts it down
        return argv, APPS_DIR, signal.SIGINT, binary
    if name == "granian":
        binary = peer_binary("granian")
        argv = [binary or "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port",
                str(port), "--workers", "2", "--blocking-threads", "4", "--no-access-log", spec]
        return argv, APPS_DIR, signal.SIGTERM, binary
    if name == "gunicorn":
        binary = peer_binary("gunicorn")
        argv = [binary or "gunicorn", "-k", "gthread", "-w", "2", "--threads", "4",
                "-b", addr, spec]
        return argv, APPS_DIR, signal.SIGTERM, binary
    if name in ("bjoern", "fastwsgi"):
        # no command of their own: bench/peer_run.py forks 2 processes
        python = os.path.join(PEERS_BIN, "python")
        have = os.access(python, os.X_OK) and subprocess.run(
            [python, "-c", "import " + name], capture_output=True).returncode == 0
        argv = [python, os.path.join(BENCH_DIR, "peer_run.py"), name, spec, "127.0.0.1",
                str(port), "2"]
        return argv, APPS_DIR, signal.SIGTERM, python if have else None
    raise ValueError(name)


NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    # bodies and responses of the workloads stay in memory (nginx's
    # defaults would spool a 64 KB POST or a 100 KB response to disk)
    client_body_buffer_size 128k;
    upstream app {{
        {upstream}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            {location}
        }}
    }}
}}
"""


def nginx_conf(tmp, port, uwsgi_sock=None, http_port=None):
    if uwsgi_sock:
        # nginx never keeps uwsgi upstream connections alive (its uwsgi
        # module sets no keep-alive): one UNIX connection per request
        upstream = "server unix:%s;" % uwsgi_sock
        location = ("include /etc/nginx/uwsgi_params;\n            uwsgi_pass app;\n"
                    "            uwsgi_buffers 16 16k;")
    else:
        upstream = "server 127.0.0.1:%d;\n        keepalive 32;" % http_port
        location = ("proxy_pass http://app;\n            proxy_http_version 1.1;\n"
                    "            proxy_set_header Connection \"\";\n"
                    "            proxy_set_header Host $host;\n"
                    "            proxy_buffers 16 16k;")
    return NGINX_CONF.format(tmp=tmp, port=port, upstream=upstream, location=location)


def snapshot_binary(path, into_dir):
    """Copy the uwsgi-rs binary so every round runs the same build even if it is rebuilt
    meanwhile. Returns (copy path, description) or (path, None) if it is missing.
    A console script (the package installed in a venv) is not copied: it runs the
    venv's installed extension, which is described by its digest instead."""
    if not os.access(path, os.X_OK):
        return path, None
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"#!"):
        venv = os.path.dirname(os.path.dirname(os.path.abspath(path)))
        native = sorted(glob.glob(os.path.join(venv, "lib", "python3*", "site-packages",
                                               "uwsgi_rs", "_native*.so")))
        if not native:
            return path, "%s (console script; no installed extension found)" % path
        with open(native[0], "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:12]
        mtime = datetime.datetime.fromtimestamp(os.stat(native[0]).st_mtime)
        return path, "%s (extension %s, mtime %s, sha256 %s)" % (
            path, native[0], mtime.isoformat(timespec="seconds"), digest)
    digest = hashlib.sha256(data).hexdigest()[:12]
    mtime = datetime.datetime.fromtimestamp(os.stat(path).st_mtime).isoformat(timespec="seconds")
    copy = os.path.join(into_dir, "uwsgi-rs")
    shutil.copy2(path, copy)
    return copy, "%s (mtime %s, sha256 %s)" % (path, mtime, digest)


def display_cmd(argv, port=None):
    """The command line as documented: binary names bare, hello.py relative to the repo,
    the (random) port shown as PORT."""
    out = []
    for a in argv:
        if port is not None:
            a = a.replace(str(port), "PORT")
        if a.startswith(REPO_DIR + os.sep):
            a = os.path.relpath(a, REPO_DIR)
        out.append(a)
    if out and out[0].endswith("/uwsgi-rs"):
        out[0] = "uwsgi-rs"
    return " ".join(out)


def version_of(name, binary):
    if not binary:
        return None
    if name in ("bjoern", "fastwsgi"):
        flag = ["-c", "import importlib.metadata as m; print(m.version(%r))" % name]
    else:
        flag = ["--version"]
    try:
        out = subprocess.run([binary] + flag, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception:
        return None


def measure_quiet(name, duration, uwsgi_rs_path, log_dir, extra_args=(), label=None,
                  workload="hello", mode="direct"):
    """measure(), redone while other processes were busy during the run."""
    best = None
    for attempt in range(QUIET["retries"] + 1):
        r = measure(name, duration, uwsgi_rs_path, log_dir, extra_args, label, workload, mode)
        r["attempts"] = attempt + 1
        if "error" in r:
            return r
        if best is None or noise_of(r) < noise_of(best):
            best = r
        if is_quiet(r):
            break
        print("  (%s: other processes used %.0f%% of a core and the hypervisor stole %.0f ms "
              "during the run; %s)"
              % (label or name, r["other_cpu_pct"], r.get("steal_ms", 0.0),
                 "redoing it" if attempt < QUIET["retries"] else "keeping the quietest"),
              flush=True)
    best["attempts"] = attempt + 1
    return best


def wait_upstream(srv, port=None, sock=None, timeout=30.0):
    """Wait until the server accepts connections (before nginx is started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            raise RuntimeError("exited with status %s before listening" % srv.proc.returncode)
        try:
            if sock:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(sock)
            else:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("not listening after %.0f s" % timeout)


def start_nginx(run_dir, port, sock=None, upstream_port=None, log_dir=None):
    """nginx on 127.0.0.1:`port` in front of the server (its files in `run_dir`),
    once it answers. The caller stops it."""
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        os.mkdir(os.path.join(run_dir, d))
    conf = os.path.join(run_dir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_conf(run_dir, port, sock, upstream_port))
    front = Server("nginx", [NGINX, "-p", run_dir, "-e",
                             os.path.join(run_dir, "nginx-error.log"), "-c", conf],
                   run_dir, signal.SIGQUIT, log_dir).start()
    wait_ready(front, port)
    return front


def measure(name, duration, uwsgi_rs_path, log_dir, extra_args=(), label=None,
            workload="hello", mode="direct"):
    """Start one server (and nginx in front in mode "nginx"), verify it, warm it
    up, load it, stop it. Returns a result dict."""
    port = free_port()  # where wrk connects
    run_dir = tempfile.mkdtemp(prefix="run-", dir=log_dir)
    sock = upstream_port = None
    if mode == "nginx":
        if name in UWSGI_PROTOCOL:
            sock = os.path.join(run_dir, "app.sock")
        else:
            upstream_port = free_port()
    argv, cwd, stop_sig, binary = server_spec(name, upstream_port or port, uwsgi_rs_path,
                                              workload, sock)
    argv = list(argv) + list(extra_args)
    res = {"server": label or name, "workload": workload, "mode": mode, "port": port,
           "cmd": display_cmd(argv, upstream_port or port).replace(run_dir, "TMP")}
    if binary is None:
        res["error"] = "missing (not installed: bash bench/setup.sh)"
        return res
    if mode == "nginx" and not os.access(NGINX, os.X_OK):
        res["error"] = "missing nginx"
        return res
    if QUIET["wait"] > 0:
        res["idle_other_cpu_pct"] = wait_quiet(QUIET["pct"], QUIET["wait"])
    srv = Server(label or name, argv, cwd, stop_sig, log_dir).start()
    front = None
    script = wrk_script(workload, run_dir)
    try:
        if mode == "nginx":
            wait_upstream(srv, upstream_port, sock)
            front = start_nginx(run_dir, port, sock, upstream_port, log_dir)
        else:
            wait_ready(srv, port)
        check_workload(workload, port)
        run_wrk(port, WARMUP_S, latency=False, script=script)
        samples = []

        conns = []

        def sample():
            pids = srv.workers()
            samples.append((len(pids), sum(rss_kib(p) for p in pids)))
            if not conns and mode == "direct":  # once: how the connections spread
                conns.append(conns_per_process(pids, port))

        out, cpu = run_wrk(port, duration, sampler=sample,
                           server_pids=lambda: [srv.pid] + descendants(srv.pid),
                           script=script, extra_pids=[front.pid] if front else [])
        # master (the leader) first, then the workers
        pcts = cpu.pop("proc_cpu_pct")
        pids = sorted([srv.pid] + descendants(srv.pid))
        cpu["master_cpu_pct"] = pcts[pids.index(srv.pid)] if srv.pid in pids and \
            len(pcts) == len(pids) else None
        cpu["worker_cpu_pct"] = [p for pid, p in zip(pids, pcts) if pid != srv.pid] \
            if len(pcts) == len(pids) else pcts
        res.update(parse_wrk(out))
        res.update(cpu)
        res.update(cpu_per_request(res))
        res["worker_conns"] = conns[0] if conns else None
        res["wrk_output"] = out
        check_workload(workload, port)  # still healthy after the load
        if samples:
            n, kib = max(samples, key=lambda s: s[1])  # peak sum under load
            res["workers"] = n
            res["rss_sum_mib"] = kib / 1024.0
            res["rss_worker_mib"] = kib / 1024.0 / max(n, 1)
        if res["rps"] is None:
            raise RuntimeError("could not parse wrk output: " + out[-300:])
    except Exception as exc:
        res["error"] = "error: %s" % exc
        tail = srv.log_tail()
        if tail:
            res["log_tail"] = tail
    finally:
        if front:
            front.stop()
        srv.stop()
    return res


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------

def cpu_per_request(r):
    """CPU time per request in microseconds: the server's (master and workers)
    and, behind nginx, nginx's. Throughput on this 2-core machine moves with
    whatever else runs; the CPU a request costs moves much less, so this is
    the column to compare servers by when req/s cells disagree between runs."""
    n = r.get("requests")
    if not n:
        return {}
    out = {"cpu_us_per_req": 1e6 * r["server_cpu_s"] / n}
    if r.get("front_cpu_s"):
        out["front_us_per_req"] = 1e6 * r["front_cpu_s"] / n
    return out


def paired_ratio(s, ref, key):
    """(median, low, high) of s's `key` over ref's, taken round by round and
    then the median, or None without a round both completed. The VM's speed
    moves between rounds for every server alike, so a ratio within one round
    is steadier than one of two medians taken over different rounds."""
    mine, theirs = s.get("per_round") or {}, ref.get("per_round") or {}
    ratios = [mine[r][key] / theirs[r][key] for r in mine
              if r in theirs and mine[r].get(key) and theirs[r].get(key)]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios)


def cpu_ratio(s, ref):
    """" (CPU/req 0.93x)": the server's CPU per request over the reference's
    (below 1: it spends less per request), round by round, or "" without
    both figures."""
    r = paired_ratio(s, ref, "cpu_us_per_req")
    return " (CPU/req %.2fx)" % r[0] if r else ""


def cpu_split(r):
    """CPU per worker (% of a core) and, in brackets, client connections per worker."""
    cpu = "/".join("%.0f%%" % p for p in r.get("worker_cpu_pct") or []) or "-"
    if r.get("worker_conns") is not None:
        cpu += " (conns %s)" % "/".join(str(c) for c in r["worker_conns"])
    return cpu


def median_of(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None and "error" not in r]
    return statistics.median(vals) if vals else None


def summarize(names, rounds_results):
    """rounds_results: {name: [result per round]} -> list of summary dicts in names order."""
    summary = []
    for name in names:
        rows = rounds_results.get(name, [])
        ok = [r for r in rows if "error" not in r]
        s = {"server": name, "cmd": rows[0]["cmd"] if rows else "",
             "rounds_ok": len(ok), "rounds": len(rows)}
        for key in ("rps", "p50_ms", "p99_ms", "rss_worker_mib", "rss_sum_mib", "workers",
                    "server_cpu_pct", "other_cpu_pct", "steal_ms", "cpu_us_per_req",
                    "front_us_per_req"):
            s[key] = median_of(ok, key)
        # per round, for ratios taken within a round (paired_ratio)
        s["per_round"] = {r.get("round", i + 1): {k: r.get(k) for k in ("rps", "cpu_us_per_req")}
                          for i, r in enumerate(rows) if "error" not in r}
        s["errors"] = sum(r.get("errors", 0) for r in ok)
        s["error_detail"] = {k: sum(r.get(k, 0) for r in ok) for k in
                             ("non2xx", "sock_connect", "sock_read", "sock_write", "sock_timeout")}
        failures = [r["error"] for r in rows if "error" in r]
        if failures:
            s["failure"] = failures[0]
        summary.append(s)
    return summary


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def print_table(summary, ref="granian", subject="uwsgi-rs", out=sys.stdout):
    refrow = next((s for s in summary if s["server"] == ref), None)
    ref_rps = refrow["rps"] if refrow else None
    hdr = ["server", "req/s", "p50 ms", "p99 ms", "RSS/worker MiB", "RSS sum MiB",
           "vs %s" % ref, "other CPU", "steal ms", "errors", "command"]
    rows = []
    for s in summary:
        if s["rps"] is None:
            rows.append([s["server"], s.get("failure", "no result"), "", "", "", "", "", "", "",
                         "", s["cmd"]])
            continue
        ratio = "%.2fx" % (s["rps"] / ref_rps) if ref_rps else "n/a"
        err = str(s["errors"])
        if s["errors"]:
            err += " (" + ", ".join("%s %d" % (k, v) for k, v in s["error_detail"].items() if v) + ")"
        if s["rounds_ok"] < s["rounds"]:
            err += " [%d/%d rounds failed]" % (s["rounds"] - s["rounds_ok"], s["rounds"])
        rows.append([s["server"], fmt(s["rps"], ".0f"), fmt(s["p50_ms"], ".2f"),
                     fmt(s["p99_ms"], ".2f"), fmt(s["rss_worker_mib"], ".1f"),
                     fmt(s["rss_sum_mib"], ".1f"), ratio, fmt(s["other_cpu_pct"], ".0f", "-") + "%",
                     fmt(s.get("steal_ms"), ".0f"), err, s["cmd"]])
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr) - 1)]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))) + "  " + cells[-1]

    print(line(hdr), file=out)
    print(line(["-" * w for w in widths] + ["-------"]), file=out)
    for r in rows:
        if r[2] == "" and r[1] and not r[1][0].isdigit():  # failure row: message spans columns
            print(r[0].ljust(widths[0]) + "  " + r[1] + "  " + r[-1], file=out)
        else:
            print(line(r), file=out)
    subj = next((s for s in summary if s["server"] == subject), None)
    if subj and subj["rps"] and ref_rps:
        print("%s / %s = %.2fx" % (subject, ref, subj["rps"] / ref_rps), file=out)
    elif subj:
        if not subj["rps"]:
            why = "%s: %s" % (subject, subj.get("failure", "no result"))
        elif refrow:
            why = "%s: %s" % (ref, refrow.get("failure", "no result"))
        else:
            why = "%s not run" % ref
        print("%s / %s = n/a (%s)" % (subject, ref, why), file=out)


def print_workload_table(summary, out=sys.stdout):
    """ONE table: every workload x mode x server, with the ratios the goals are
    stated in: direct vs granian, behind nginx vs nginx + uWSGI, hello vs
    bjoern and fastwsgi."""
    by = {(s["workload"], s["mode"], s["server"]): s for s in summary}

    def ratio(s, ref_name, mode=None, spread=False):
        """req/s over the reference's: the median of the per-round ratios
        (with their range if `spread` and there is more than one round)."""
        ref = by.get((s["workload"], mode or s["mode"], ref_name))
        r = paired_ratio(s, ref, "rps") if ref else None
        if not r:
            return "-"
        if spread and r[1] != r[2]:
            return "%.2fx [%.2f-%.2f]" % r
        return "%.2fx" % r[0]

    def cpu_us(s):
        """Server CPU per request, plus nginx's behind nginx."""
        own = fmt(s.get("cpu_us_per_req"), ".1f")
        if s.get("front_us_per_req") is not None:
            own += " + %.1f" % s["front_us_per_req"]
        return own

    hdr = ["workload", "mode", "server", "req/s", "p50 ms", "p99 ms", "CPU us/req",
           "vs granian", "vs nginx+uWSGI", "RSS/worker MiB", "other CPU", "errors"]
    rows = []
    for s in summary:
        if s["rps"] is None:
            rows.append([s["workload"], s["mode"], s["server"],
                         s.get("failure", "no result")] + [""] * 8)
            continue
        err = str(s["errors"])
        if s["errors"]:
            err += " (" + ", ".join("%s %d" % (k, v) for k, v in s["error_detail"].items()
                                    if v) + ")"
        if s["rounds_ok"] < s["rounds"]:
            err += " [%d/%d rounds failed]" % (s["rounds"] - s["rounds_ok"], s["rounds"])
        rows.append([s["workload"], s["mode"], s["server"], fmt(s["rps"], ".0f"),
                     fmt(s["p50_ms"], ".2f"), fmt(s["p99_ms"], ".2f"), cpu_us(s),
                     ratio(s, "granian") if s["mode"] == "direct" else "",
                     ratio(s, "uWSGI") if s["mode"] == "nginx" else "",
                     fmt(s["rss_worker_mib"], ".1f"), fmt(s["other_cpu_pct"], ".0f") + "%", err])
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    num = set(range(3, len(hdr) - 1))

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in num else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    print(line(hdr), file=out)
    print(line(["-" * w for w in widths]), file=out)
    for r in rows:
        print(line(r), file=out)
    print(file=out)
    print("ratios: median of the per-round ratios [lowest-highest round]", file=out)
    for w in WORKLOAD_ORDER:
        parts = []
        for ref, mode in (("granian", "direct"), ("uWSGI", "nginx"), ("bjoern", "direct"),
                          ("fastwsgi", "direct")):
            s = by.get((w, mode, "uwsgi-rs"))
            if s and (w, mode, ref) in by:
                r = ratio(s, ref, spread=True)
                if r != "-":
                    parts.append("%s %s vs %s%s%s" % (r, mode, ref, "" if mode == "direct"
                                                       else " (both behind nginx)",
                                                       cpu_ratio(s, by[(w, mode, ref)])))
        if parts:
            print("uwsgi-rs on %-6s %s" % (w + ":", "; ".join(parts)), file=out)


def machine_info():
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            info["cpu"] = m.group(1).strip() if m else None
    except OSError:
        pass
    try:
        info["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True,
                                     text=True).stdout.splitlines()[0]
    except Exception:
        info["wrk"] = None
    return info


def add_quiet_args(ap):
    ap.add_argument("--quiet-pct", type=float, default=QUIET["pct"],
                    help="before each run wait until other processes use less than this %% "
                         "of one core (default %(default)s)")
    ap.add_argument("--quiet-wait", type=int, default=QUIET["wait"],
                    help="but wait at most this many seconds; 0 = don't check "
                         "(default %(default)s)")
    ap.add_argument("--noisy-pct", type=float, default=QUIET["noisy"],
                    help="redo a run if other processes used more than this %% of one core "
                         "during it (default %(default)s)")
    ap.add_argument("--noisy-steal-ms", type=float, default=QUIET["steal_ms"],
                    help="or if the hypervisor stole more than this many ms of CPU from the "
                         "VM during it (default %(default)s)")
    ap.add_argument("--noisy-retries", type=int, default=QUIET["retries"],
                    help="at most this many times (default %(default)s; 0 = never)")


def set_quiet(args):
    QUIET.update(pct=args.quiet_pct, wait=args.quiet_wait, noisy=args.noisy_pct,
                 steal_ms=args.noisy_steal_ms, retries=max(0, args.noisy_retries))


def make_django_db(log_dir):
    """One database for every server, made before any of them starts; the
    servers find it through BENCH_DJANGO_DB."""
    os.environ["BENCH_DJANGO_DB"] = os.path.join(log_dir, "django.sqlite3")
    python = os.path.join(PEERS_BIN, "python")
    if not os.access(python, os.X_OK):
        python = os.path.join(REPO_DIR, ".venv", "bin", "python")
    made = subprocess.run([python, "-m", "djangoapp.setup_db"], cwd=APPS_DIR,
                          capture_output=True, text=True)
    if made.returncode != 0:
        sys.exit("cannot create the Django database: " + made.stderr.strip()[-500:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds of load per run (default 10)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--only", help="comma-separated servers: " + ",".join(SERVER_ORDER))
    ap.add_argument("--workloads", default=",".join(WORKLOAD_ORDER),
                    help="comma-separated workloads (default %(default)s)")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="direct, nginx or both (default %(default)s)")
    ap.add_argument("--json", metavar="OUT", help="write raw and summary results as JSON")
    ap.add_argument("--uwsgi-rs", dest="uwsgi_rs", default=DEFAULT_UWSGI_RS,
                    help="path of the uwsgi-rs binary (default %(default)s)")
    ap.add_argument("--same-session", action="store_true",
                    help="start servers in this script's session (as from one shell) instead "
                         "of their own; see SESSION")
    add_quiet_args(ap)
    args = ap.parse_args(argv)
    set_quiet(args)
    SESSION["own"] = not args.same_session
    if args.duration < 1 or args.rounds < 1:
        ap.error("--duration and --rounds must be >= 1")

    def pick(text, choices, what):
        lower = {c.lower(): c for c in choices}
        wanted = [w.strip().lower() for w in text.split(",") if w.strip()]
        bad = [w for w in wanted if w not in lower]
        if bad:
            ap.error("unknown %s %s; choose from %s" % (what, bad, ",".join(choices)))
        return [c for c in choices if c.lower() in wanted]

    names = pick(args.only, SERVER_ORDER, "server(s)") if args.only else SERVER_ORDER
    workloads = pick(args.workloads, WORKLOAD_ORDER, "workload(s)")
    modes = pick(args.modes, MODES, "mode(s)")
    if not shutil.which("wrk"):
        sys.exit("wrk not found in PATH")

    install_signal_handlers()
    log_dir = tempfile.mkdtemp(prefix="uwsgi-rs-bench-")
    os.chmod(log_dir, 0o755)
    info = machine_info()
    if "uwsgi-rs" in names:
        args.uwsgi_rs, info["uwsgi_rs_binary"] = snapshot_binary(args.uwsgi_rs, log_dir)
        if info["uwsgi_rs_binary"]:
            print("# uwsgi-rs binary: " + info["uwsgi_rs_binary"])
    if "django" in workloads:
        make_django_db(log_dir)
    versions = {}
    for n in names:
        _, _, _, binary = server_spec(n, 0, args.uwsgi_rs)
        versions[n] = version_of(n, binary)
    print("# %s, %s CPUs (%s), python %s, %s" % (info["date"], info["cpus"], info.get("cpu"),
                                                 info["python"], info["wrk"]))
    print("# versions: " + ", ".join("%s=%s" % (k, v or "missing") for k, v in versions.items()))
    print("# wrk -t%d -c%d -d%ds --latency, %d s warm-up, %d round(s), median shown; servers in %s"
          % (WRK_THREADS, WRK_CONNS, args.duration, WARMUP_S, args.rounds,
             "their own session" if SESSION["own"] else "the bench's session"))

    keys = [(w, m, n) for w in workloads for m in modes for n in names]
    results = {k: [] for k in keys}
    try:
        for rnd in range(args.rounds):
            for (w, m, n) in keys:
                r = measure_quiet(n, args.duration, args.uwsgi_rs, log_dir, workload=w, mode=m)
                r["round"] = rnd + 1
                results[(w, m, n)].append(r)
                what = "round %d  %-6s %-6s %-9s" % (rnd + 1, w, m, n)
                if "error" in r:
                    print("%s %s" % (what, r["error"]), flush=True)
                    if r.get("log_tail"):
                        print("    " + r["log_tail"].replace("\n", "\n    "), flush=True)
                else:
                    print("%s %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  RSS %5.1f MiB x %d  "
                          "errors %d  CPU/worker %s  CPU/req %.1f us  other CPU %.0f%%  "
                          "steal %.0f ms"
                          % (what, r["rps"], r["p50_ms"] or 0, r["p99_ms"] or 0,
                             r.get("rss_worker_mib") or 0, r.get("workers") or 0,
                             r["errors"], cpu_split(r), r.get("cpu_us_per_req") or 0,
                             r["other_cpu_pct"],
                             r.get("steal_ms", 0.0)), flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        stop_all()
        sys.exit(130)
    finally:
        stop_all()
        shutil.rmtree(log_dir, ignore_errors=True)

    summary = []
    for (w, m, n) in keys:
        (s,) = summarize([n], {n: results[(w, m, n)]})
        s.update(workload=w, mode=m)
        summary.append(s)
    print()
    print_workload_table(summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "versions": versions, "duration": args.duration,
                       "rounds": args.rounds, "summary": summary,
                       "runs": {"%s/%s/%s" % k: v for k, v in results.items()}}, f, indent=2)
        print("# wrote %s" % args.json)


if __name__ == "__main__":
    main()
