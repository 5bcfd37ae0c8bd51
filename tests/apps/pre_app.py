"""Preload vs lazy-apps probe. Every import appends this process's pid to
the file named by $PRE_IMPORT_LOG. / reports the generation (GENERATION,
edited by the reload tests), pid and parent pid; /mp?METHOD runs a function
in a multiprocessing child started with METHOD (spawn, forkserver, fork)."""

import json
import multiprocessing
import os
import sys

GENERATION = 1

with open(os.environ["PRE_IMPORT_LOG"], "a") as _f:
    _f.write(f"{os.getpid()}\n")


def child_facts(tag):
    return {"tag": tag, "pid": os.getpid(), "executable": sys.executable,
            "main": getattr(sys.modules.get("__main__"), "__name__", None)}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/mp":
        method = environ.get("QUERY_STRING") or "spawn"
        ctx = multiprocessing.get_context(method)
        with ctx.Pool(1) as pool:
            facts = pool.apply(child_facts, ("hello",))
        info = {"method": method, "child": facts, "parent": os.getpid()}
    else:
        info = {"generation": GENERATION, "pid": os.getpid(), "ppid": os.getppid()}
    body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
