#!/usr/bin/env python3
"""Runs bjoern or fastwsgi for bench.py, which have no command of their own:

    python bench/peer_run.py bjoern|fastwsgi MODULE:CALLABLE HOST PORT PROCESSES

bjoern: the listening socket is made once, then PROCESSES processes are
forked that serve it (each single-threaded, as bjoern is); SIGTERM to the
parent stops them all. fastwsgi forks its own workers (workers=PROCESSES).
"""

import importlib
import os
import signal
import sys


def main():
    server, spec, host, port, processes = sys.argv[1:6]
    port, processes = int(port), int(processes)
    sys.path.insert(0, os.getcwd())  # the apps directory (bench.py runs us there)
    module, _, func = spec.partition(":")
    app = getattr(importlib.import_module(module), func or "application")
    if server == "bjoern":
        import bjoern
        bjoern.listen(app, host, port, reuse_port=True)
        run = bjoern.run
    else:
        import fastwsgi
        fastwsgi.run(wsgi_app=app, host=host, port=port, workers=processes)
        return
    kids = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            run()
            os._exit(0)
        kids.append(pid)

    def stop(*_):
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while kids:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            break
        kids = [k for k in kids if k != pid]


if __name__ == "__main__":
    main()
