"""uwsgi-rs: a WSGI application server with uWSGI's command line.

`main()` is the `uwsgi-rs` console script (and `python -m uwsgi_rs`). It
hands the command line to the native module, which runs in this very
interpreter: the master prepares it (sys.path, the `uwsgi` module), then
forks the workers from it. So the app runs on the interpreter of the
environment uwsgi-rs is installed in, `sys.executable` is its python, and
`multiprocessing` (spawn, forkserver) starts that python.
"""

import os
import sys

from uwsgi_rs._native import __version__, run

__all__ = ["__version__", "main", "run"]


def main(argv=None):
    """Run uwsgi-rs with `argv` (default `sys.argv`); returns the exit status."""
    if argv is None:
        argv = sys.argv
        # Python put the console script's directory (the environment's
        # bin/) first on sys.path; uWSGI's path starts with the working
        # directory instead, which the server inserts itself.
        if sys.path and argv and sys.path[0] == os.path.dirname(os.path.realpath(argv[0])):
            del sys.path[0]
    return run(list(argv))
