"""Control of a running server, end to end: the master fifo's commands
(uWSGI's r R q Q c C w f l 0-9), attached daemons started, restarted and
stopped with the server, hooks (the Docker images' `unix_signal:15
gracefully_kill_them_all`, the phases in order, a failing hook), cron and
py-call-osafterfork. systemd is in test_systemd.py."""

import json
import os
import re
import signal
import threading
import time

import pytest

from conftest import APPS, http_get
from helpers import alive, in_app, killed_with_the_test, mark_query, wait_for

APP = str(APPS / "ctl_app.py")


def fifo_send(path, data):
    """Write commands to a master fifo (the master holds it open, so this
    never waits for a reader)."""
    fd = os.open(str(path), os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def in_background(fn):
    """Run fn in a thread; returns a function that joins it and returns
    fn's result (or raises its exception)."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:  # handed to the caller
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def result(timeout=20):
        t.join(timeout)
        assert not t.is_alive(), "still running"
        if "error" in out:
            raise out["error"]
        return out["value"]

    return result


def new_pids(srv, old, count=2, timeout=15):
    """Wait until the log shows `count` ready workers none of which is in
    `old`; returns them."""
    def fresh():
        now = srv.worker_pids()
        return len(now) == count and not set(now.values()) & set(old.values()) and now
    return wait_for(fresh, timeout, "workers replaced")


# ------------------------------------------------------------ master fifo

def fifo_server(serve, port, tmp_path, *extra, workers=2):
    args = ["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
            "--processes", str(workers), "--master-fifo", str(tmp_path / "fifo0"),
            "--master-fifo", str(tmp_path / "fifo1"), *extra]
    return serve(args, workers=workers)


def test_fifo_reloads_and_slots(serve, port, tmp_path):
    srv = fifo_server(serve, port, tmp_path)
    fifo0, fifo1 = tmp_path / "fifo0", tmp_path / "fifo1"
    assert f"master fifo: {fifo0}" in srv.log
    assert fifo0.is_fifo() and not fifo1.exists()

    # w: every worker replaced at once, from the code already loaded.
    before = srv.worker_pids()
    fifo_send(fifo0, "w\n")
    before = new_pids(srv, before)
    assert "master fifo: reload of the workers: gracefully replacing every worker at once" in srv.log
    assert "generation 2" not in srv.log
    assert http_get(port)[0] == 200

    # r: the app loaded anew (generation 2), then the workers one by one.
    fifo_send(fifo0, "r")
    before = new_pids(srv, before)
    srv.wait_log("replacing the workers one at a time with generation 2")
    assert http_get(port)[0] == 200

    # c: a chain reload, one worker at a time, same generation.
    fifo_send(fifo0, "c")
    before = new_pids(srv, before)
    assert "master fifo: chain reload: chain reload starting..." in srv.log
    assert "generation 3" not in srv.log

    # R: the app anew, then every worker killed and replaced at once.
    fifo_send(fifo0, "R")
    before = new_pids(srv, before)
    srv.wait_log("replacing the workers all at once with generation 3")
    assert srv.log.count("killed by signal 9") == 2, srv.log

    # 1: commands come from the second fifo from now on; 0 goes back.
    fifo_send(fifo0, "1")
    srv.wait_log(f"active master fifo is now {fifo1}")
    assert fifo1.is_fifo()
    # C: every worker goes (after its requests); the next connection
    # brings them back.
    fifo_send(fifo1, "C")
    srv.wait_log("master fifo: cheap mode: going cheap...")
    srv.wait_log("cheap mode enabled: waiting for socket connection...")
    wait_for(lambda: srv.log.count("cheaped.") == 2, 15, "both workers cheaped")
    assert http_get(port)[0] == 200
    assert "a connection came in cheap mode: spawning 2 worker(s)" in srv.log
    before = new_pids(srv, before)
    # An unknown byte is named and ignored; the server keeps serving.
    fifo_send(fifo1, "x")
    srv.wait_log("master fifo: unknown command x: ignored")
    fifo_send(fifo1, "0w")
    srv.wait_log(f"active master fifo is now {fifo0}")
    workers = new_pids(srv, before)
    assert http_get(port)[0] == 200
    # Only the master holds the fifos: no worker could read a command.
    for pid in workers.values():
        held = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        assert not {str(fifo0), str(fifo1)} & set(held), held

    # q: graceful; the request in flight is answered, then the master exits 0.
    mark = tmp_path / "in-app"
    answer = in_background(lambda: http_get_query(port, "/sleep", f"s=1&{mark_query(mark)}"))
    in_app(mark)
    fifo_send(fifo0, "q")
    assert answer()[0] == 200
    assert srv.proc.wait(15) == 0
    assert "master fifo: graceful shutdown: shutting down gracefully" in srv.log
    # The master removed the fifos it made.
    assert not fifo0.exists() and not fifo1.exists()


def test_fifo_l_reopens_the_log(serve, port, tmp_path):
    """logrotate's rename, then `l`: the master and the workers write to a
    new file of the same name."""
    logfile = tmp_path / "app.log"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--master-fifo", str(tmp_path / "fifo0"), "--logto", str(logfile)], ready=False)
    wait_for(lambda: ") ready" in logfile.read_text(), 15, "the worker")
    logfile.rename(tmp_path / "app.log.1")
    fifo_send(tmp_path / "fifo0", "l")
    wait_for(lambda: "master fifo: log reopening: log files reopened" in logfile.read_text(),
             10, "the reopened log")
    assert http_get(port, "/after-reopen")[0] == 200
    wait_for(lambda: "GET /after-reopen" in logfile.read_text(), 10, "the request line")
    assert "after-reopen" not in (tmp_path / "app.log.1").read_text()


def http_get_query(port, path, query):
    return http_get(port, f"{path}?{query}", timeout=20)


def test_fifo_Q_stops_now(serve, port, tmp_path):
    srv = fifo_server(serve, port, tmp_path, workers=1)
    mark = tmp_path / "in-app"
    answer = in_background(lambda: http_get_query(port, "/sleep", f"s=10&{mark_query(mark)}"))
    in_app(mark)
    t0 = time.monotonic()
    fifo_send(tmp_path / "fifo0", "Q")
    assert srv.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5
    # The request in flight was cut, not waited for.
    with pytest.raises(Exception):
        answer()
    assert "master fifo: immediate shutdown: immediate shutdown requested" in srv.log


def test_fifo_f_starts_a_new_master_on_the_same_sockets(serve, port, tmp_path):
    """uWSGI's zerg dance: `1f` through fifo0 makes this master listen on
    fifo1 and start a new master, which takes fifo0 and the sockets; `q`
    through fifo1 then stops the old one, and the port never stops
    answering."""
    pidfile = tmp_path / "pid"
    srv = fifo_server(serve, port, tmp_path, "--pidfile", str(pidfile))
    old = srv.proc.pid
    fifo_send(tmp_path / "fifo0", "1f")
    srv.wait_log("new master copy spawned with pid")
    new = int(re.search(r"new master copy spawned with pid (\d+)", srv.log).group(1))
    # The new master runs in a session of its own, beyond the reach of the
    # server fixture and of any parent-death signal: killed when the test
    # ends or its process dies.
    with killed_with_the_test(new):
        # The new master (same log) adopts the sockets and starts workers.
        srv.wait_log("inherited from systemd", timeout=15)
        srv.wait_log(") ready", count=4, timeout=20)
        wait_for(lambda: pidfile.read_text().strip() == str(new), 10, "the new pidfile")
        fifo_send(tmp_path / "fifo1", "q")
        assert srv.proc.wait(15) == 0
        assert alive(new)
        for _ in range(5):
            status, _, body = http_get(port, "/")
            assert status == 200
            assert int(body) != old
        # The old master left the new one's fifo and pidfile alone.
        assert (tmp_path / "fifo0").is_fifo()
        assert pidfile.read_text().strip() == str(new)
        fifo_send(tmp_path / "fifo0", "q")
        wait_for(lambda: not alive(new), 15, "the new master to stop")


# ------------------------------------------------------------ daemons

# The daemons set their traps before writing their pid: a stop signal sent
# as soon as the pid is seen must find them. /bin/sh -c runs the script in
# a child shell; the trap's clean-up takes a while, and the master must wait
# for it (the whole process group) before it counts the daemon as stopped.
DAEMON = """#!/bin/sh
trap 'sleep 0.3; echo stopped $$ >> {pids}; exit 0' TERM
echo $$ >> {pids}
while :; do sleep 0.1; done
"""


def daemon_pids(path):
    if not path.exists():
        return []
    return [int(l) for l in path.read_text().splitlines() if l.isdigit()]


def test_attach_daemon_started_restarted_and_stopped(serve, port, tmp_path):
    pids = tmp_path / "pids"
    script = tmp_path / "daemon.sh"
    script.write_text(DAEMON.format(pids=pids))
    script.chmod(0o755)
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--attach-daemon", str(script)])
    first = wait_for(lambda: daemon_pids(pids), 10, "the daemon")[0]
    assert alive(first)
    # It dies: the master starts it again.
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: daemon_pids(pids)[1:], 15, "the daemon again")[0]
    assert alive(second) and not alive(first)
    # (/bin/sh runs the command, as in uWSGI: the shell reports the kill.)
    srv.wait_log(f'[uwsgi-daemons] respawning "{script}"')
    # A graceful reload restarts it too (stop signal SIGTERM, then a new one).
    os.kill(srv.proc.pid, signal.SIGHUP)
    third = wait_for(lambda: daemon_pids(pids)[2:], 15, "the daemon after the reload")[0]
    assert f"stopped {second}" in pids.read_text()
    assert not alive(second)
    assert alive(third)
    # The server stops: so does the daemon, before the master exits.
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(15) == 0
    assert f"stopped {third}" in pids.read_text()
    assert not alive(third)


def test_smart_attach_daemon_outlives_the_server(serve, port, tmp_path):
    pidfile = tmp_path / "d.pid"
    # A command that daemonizes: the shell leaves, its child writes the pidfile.
    cmd = f"sh -c 'sleep 60 & echo $! > {pidfile}'"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--smart-attach-daemon", f"{pidfile} {cmd}"])
    pid = wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, "the pidfile")
    pid = int(pid)
    try:
        wait_for(lambda: alive(pid), 5, "the daemon")
        # Killed: the master sees its pidfile name a dead process and starts it again.
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: pidfile.read_text().strip() not in ("", str(pid)), 15, "a new daemon")
        pid = int(pidfile.read_text())
        assert alive(pid)
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(15) == 0
        assert alive(pid), "a smart daemon outlives the server"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_attach_control_daemon_death_stops_the_server(serve, port, tmp_path):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--attach-control-daemon", "sleep 0.5"])
    assert srv.proc.wait(15) == 0
    assert "a control daemon died: shutting down gracefully" in srv.log


DAEMON2 = """#!/bin/sh
trap 'echo usr1 $$ >> {pids}; exit 0' USR1
trap 'echo term $$ >> {pids}; exit 0' TERM
echo "$$ $(pwd)" >> {pids}
while :; do sleep 0.1; done
"""


def test_attach_daemon2_keys_are_honoured(serve, port, tmp_path):
    """attach-daemon2's key=value form: cmd, chdir, stopsignal and touch
    (restart when a file's mtime changes) all take effect."""
    pids = tmp_path / "pids"
    script = tmp_path / "daemon2.sh"
    script.write_text(DAEMON2.format(pids=pids))
    script.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    touch = tmp_path / "restart-daemon"
    touch.write_text("")
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--attach-daemon2",
                 f"cmd={script},chdir={work},stopsignal=10,touch={touch}"])
    lines = lambda: [l.split() for l in pids.read_text().splitlines()] if pids.exists() else []
    first = wait_for(lambda: [l for l in lines() if l[0].isdigit()], 10, "the daemon")[0]
    assert first[1] == str(work), "chdir= is where the daemon runs"
    # touch=: a newer mtime restarts it, stopped with stopsignal= (10, SIGUSR1).
    later = time.time() + 5
    os.utime(touch, (later, later))
    started = wait_for(lambda: [l for l in lines() if l[0].isdigit()][1:], 15,
                       "the daemon restarted after the touch")
    assert ["usr1", first[0]] in lines(), "stopped with SIGUSR1, not SIGTERM"
    srv.wait_log("touched: restarting it")
    # The server stops: the daemon gets its stop signal too.
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(15) == 0
    assert ["usr1", started[0][0]] in lines()
    assert not alive(int(started[0][0]))


def test_exit_on_reload_stops_instead_of_reloading(serve, port, tmp_path):
    """--exit-on-reload (glance-api.ini in the corpus has it): SIGHUP stops
    the server gracefully, answering the request in flight, instead of
    reloading the workers."""
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--exit-on-reload"])
    mark = tmp_path / "in-app"
    answer = in_background(lambda: http_get_query(port, "/sleep", f"s=1&{mark_query(mark)}"))
    in_app(mark)
    os.kill(srv.proc.pid, signal.SIGHUP)
    assert srv.proc.wait(15) == 0
    status, _, _ = answer()
    assert status == 200
    assert "--exit-on-reload: exiting instead of reloading" in srv.log
    assert "shutting down gracefully" in srv.log
    assert srv.log.count(") ready:") == 1, "no worker was started again"


# ------------------------------------------------------------ hooks

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_unix_signal_hook_binds_a_signal_to_a_graceful_stop(serve, port, tmp_path, sig):
    """Docker images' `hook-master-start = unix_signal:15
    gracefully_kill_them_all`: SIGTERM stops gracefully (the request in
    flight is answered). The same hook on SIGUSR1, which otherwise reopens
    the logs, shows the hook is what does it."""
    hook = f"unix_signal:{int(sig)} gracefully_kill_them_all"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--hook-master-start", hook])
    srv.wait_log(f'running "{hook}" (master-start)')
    time.sleep(0.2)
    mark = tmp_path / "in-app"
    answer = in_background(lambda: http_get_query(port, "/sleep", f"s=1&{mark_query(mark)}"))
    in_app(mark)
    srv.proc.send_signal(sig)
    assert answer()[0] == 200
    assert srv.proc.wait(15) == 0
    assert f"{sig.name} received: shutting down gracefully" in srv.log


def test_unix_signal_outside_the_master_is_a_config_error(serve, port, tmp_path):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--hook-post-fork", "unix_signal:15 gracefully_kill_them_all",
                 "--hook-master-start", "unix_signal:15 no_such_function"], ready=False)
    assert srv.proc.wait(10) == 1
    assert "--hook-post-fork" in srv.log and "no_such_function" in srv.log


def test_hook_phases_in_order(serve, port, tmp_path):
    out = tmp_path / "phases"
    args = ["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master", "--processes", "2"]
    for phase in ["asap", "as-root", "pre-app", "post-app", "post-fork", "accepting",
                  "accepting1-once", "master-start"]:
        args += [f"--hook-{phase}", f"appendn:{out} {phase}"]
    args += ["--exec-as-user", f"echo exec-as-user >> {out}",
             "--hook-asap", "putenv:CTL_HOOK=from-asap"]
    srv = serve(args, workers=2)
    wait_for(lambda: "master-start" in out.read_text(), 10, "master-start")
    lines = out.read_text().split()
    # Master phases before the app, the app's around its import (once: the
    # loader), then per worker.
    assert lines[:3] == ["asap", "as-root", "exec-as-user"], lines
    assert lines.index("pre-app") < lines.index("post-app") < lines.index("post-fork")
    assert lines.count("pre-app") == 1 and lines.count("post-app") == 1
    assert lines.count("post-fork") == 2 and lines.count("accepting") == 2
    assert lines.count("accepting1-once") == 1
    # putenv reaches the app's os.environ.
    env = json.loads(http_get(port, "/env")[2])
    assert env["CTL_HOOK"] == "from-asap"
    # accepting1-once: not again when worker 1 is replaced.
    os.kill(srv.worker_pids()[1], signal.SIGKILL)
    srv.wait_log("Respawned uwsgi-rs worker 1")
    srv.wait_log(") ready", count=3)
    wait_for(lambda: out.read_text().split().count("accepting") == 3, 5, "accepting again")
    assert out.read_text().split().count("accepting1-once") == 1


def test_failing_hook_stops_the_start(serve, port, tmp_path):
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                 "--hook-as-root", "exec:exit 3"], ready=False)
    assert srv.proc.wait(10) != 0
    assert 'hook "exec:exit 3" (as root) failed: exit code 3' in srv.log
    srv2 = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP,
                  "--hook-asap", "exit:7"], ready=False)
    assert srv2.proc.wait(10) == 7


# ------------------------------------------------------------ cron

def test_cron_runs_a_command(serve, port, tmp_path):
    out = tmp_path / "cron"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 f"--unique-cron=-1 -1 -1 -1 -1 echo ran >> {out}"])
    wait_for(lambda: out.exists() and "ran" in out.read_text(), 10, "the cron job")
    # At most once a minute.
    time.sleep(1.5)
    assert out.read_text().count("ran") == 1
    srv.stop()


def test_cron2_runs_a_command_and_harakiri_kills_it(serve, port, tmp_path):
    """cla_backend's `cron2 = minute=-15,unique=1,harakiri=30 CMD` form: keys
    not given match any time; a job still running after harakiri=N seconds is
    killed with its process group (--cron-harakiri for jobs without one)."""
    out = tmp_path / "cron2"
    slept = tmp_path / "slept"
    srv = serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
                 "--cron2", f"unique=1 echo ran >> {out}",
                 "--cron2", f"unique=1,harakiri=1 sleep 30; touch {slept}",
                 "--cron-harakiri", "1",
                 "--cron2", f"minute=-1 sleep 30; touch {slept}"])
    wait_for(lambda: out.exists() and "ran" in out.read_text(), 10, "the cron2 job")
    wait_for(lambda: srv.log.count("*** HARAKIRI ON CRON") == 2, 10, "both cron harakiris")
    assert 'HARAKIRI ON CRON "unique=1' not in srv.log  # the command, without its keys
    assert not slept.exists()
    srv.stop()


# ------------------------------------------------------------ py-call-osafterfork

def test_workers_run_python_after_fork_hooks(serve, port, tmp_path):
    """As uWSGI with --py-call-osafterfork (always on here): a preloaded
    app's os.register_at_fork(after_in_child=...) runs in each worker, and
    a Python signal handler set at import runs there."""
    serve(["--http", f"127.0.0.1:{port}", "--wsgi-file", APP, "--master",
           "--py-call-osafterfork"])
    forked = json.loads(http_get(port, "/forked")[2])
    assert forked["imported_in"] != forked["pid"]  # preloaded, then forked
    assert forked["after_in_child_ran_in"] == forked["pid"]
    assert json.loads(http_get(port, "/signal")[2])["usr2"] == 1
