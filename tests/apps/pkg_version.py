"""Reports which interpreter and environment serve it; /sleep parks the
request in nap() so a tracebacker dump can show it; /import/NAME imports a
module and reports where it came from."""

import importlib
import json
import platform
import sys
import time


def nap(seconds):
    time.sleep(seconds)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        nap(float(environ.get("QUERY_STRING") or 30))
        info = {"slept": True}
    elif path.startswith("/import/"):
        try:
            mod = importlib.import_module(path[len("/import/"):])
            info = {"ok": True, "file": getattr(mod, "__file__", None),
                    "marker": getattr(mod, "MARKER", None)}
        except ImportError as e:
            info = {"ok": False, "error": repr(e)}
    else:
        info = {
            "version": platform.python_version(),
            "hexversion": sys.hexversion,
            "prefix": sys.prefix,
            "base_prefix": sys.base_prefix,
            "exec_prefix": sys.exec_prefix,
            "executable": sys.executable,
            "path": sys.path,
            "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        }
    body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
