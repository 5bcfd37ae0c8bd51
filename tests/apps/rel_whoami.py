"""Who is serving: pid and credentials of the worker. Imports only modules
that any CPython 3 stdlib has in pure Python or built in (the --uid tests
run it on a stdlib that is not the one the server was built with)."""

import json
import os


def application(environ, start_response):
    body = json.dumps({
        "pid": os.getpid(), "ppid": os.getppid(),
        "uid": os.getuid(), "euid": os.geteuid(),
        "gid": os.getgid(), "egid": os.getegid(), "groups": sorted(os.getgroups()),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
