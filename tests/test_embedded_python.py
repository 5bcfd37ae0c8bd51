"""The Python programs the server embeds (src/tracebacker/*.py, loaded with
include_str!), run here as plain Python: the GIL path's collector and the
hook that records the names of the threads an app starts."""

import importlib.util
import sys
import threading
import types
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "tracebacker"


def load(name):
    spec = importlib.util.spec_from_file_location(f"embedded_{name}", SRC / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parked_thread(name):
    """A named thread waiting in a function of its own; (thread, release)."""
    go = threading.Event()

    def parked_here(secret="s3cret"):
        go.wait(10)

    t = threading.Thread(target=parked_here, name=name, daemon=True)
    t.start()
    return t, go.set


def test_collect_returns_other_threads_outermost_first_with_names_and_locals():
    collect = load("collect").collect
    t, release = parked_thread("parked-for-collect")
    try:
        threads, names = collect(True)
    finally:
        release()
        t.join(5)
    me = threading.get_ident()
    assert me not in [ident for ident, _, _ in threads], "the collecting thread is left out"
    (ident, name, frames), = [th for th in threads if th[0] == t.ident]
    assert name == "parked-for-collect" and (t.ident, "parked-for-collect") in names
    funcs = [f[2] for f in frames]
    assert funcs[0] == "_bootstrap" and "parked_here" in funcs, funcs
    filename, lineno, function, line, local_vars = frames[funcs.index("parked_here")]
    assert filename == __file__ and line == "go.wait(10)" and lineno > 0
    assert ("secret", "'s3cret'") in local_vars
    without = dict((i, f) for i, _, f in collect(False)[0])
    assert all(f[4] == [] for f in without.get(t.ident, [])), "no locals unless asked"


def test_collect_bounds_reprs_and_survives_a_failing_repr():
    collect_module = load("collect")

    class Loud:
        def __repr__(self):
            return "x" * 10_000

    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    go = threading.Event()

    def holder(loud=Loud(), broken=Broken()):
        go.wait(10)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    try:
        threads, _ = collect_module.collect(True)
    finally:
        go.set()
        t.join(5)
    frames = [f for ident, _, fs in threads if ident == t.ident for f in fs]
    local_vars = dict(next(f[4] for f in frames if f[2] == "holder"))
    assert len(local_vars["loud"]) <= 120
    assert local_vars["broken"] == "<repr failed: RuntimeError>"


def test_thread_hook_records_starts_and_renames():
    seen = []
    fake_uwsgi = types.ModuleType("uwsgi")
    fake_uwsgi._register_thread = lambda ident, name, native_id: seen.append((ident, name, native_id))
    saved = sys.modules.get("uwsgi")
    original_start, original_name = threading.Thread.start, threading.Thread.name
    sys.modules["uwsgi"] = fake_uwsgi
    try:
        load("thread_hook")
        t, release = parked_thread("hooked")
        t.name = "renamed"
        release()
        t.join(5)
    finally:
        threading.Thread.start, threading.Thread.name = original_start, original_name
        if saved is None:
            sys.modules.pop("uwsgi", None)
        else:
            sys.modules["uwsgi"] = saved
    assert seen == [(t.ident, "hooked", t.native_id), (t.ident, "renamed", t.native_id)]


def test_thread_hook_renaming_the_calling_thread_after_fork_records_its_own_tid():
    """After os.fork(), threading keeps the parent's native_id for the
    forking thread (CPython 3.11); a worker forked from its loader renames
    its main thread, and the recorded tid must be the worker's own."""
    import os
    seen = []
    fake_uwsgi = types.ModuleType("uwsgi")
    fake_uwsgi._register_thread = lambda ident, name, native_id: seen.append(native_id)
    saved = sys.modules.get("uwsgi")
    original_start, original_name = threading.Thread.start, threading.Thread.name
    sys.modules["uwsgi"] = fake_uwsgi
    rd, wr = os.pipe()
    try:
        load("thread_hook")
        pid = os.fork()
        if pid == 0:
            threading.current_thread().name = "renamed-in-child"
            os.write(wr, f"{seen[-1]} {os.getpid()}".encode())
            os._exit(0)
        os.waitpid(pid, 0)
        recorded, child = os.read(rd, 100).decode().split()
    finally:
        os.close(rd)
        os.close(wr)
        threading.Thread.start, threading.Thread.name = original_start, original_name
        if saved is None:
            sys.modules.pop("uwsgi", None)
        else:
            sys.modules["uwsgi"] = saved
    assert recorded == child
