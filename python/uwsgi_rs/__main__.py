"""`python -m uwsgi_rs ...` is `uwsgi-rs ...`.

The guard matters: multiprocessing's spawn and forkserver start methods
re-import the parent's main module in the child (as `__mp_main__`), and
that must not start a second server.
"""

if __name__ == "__main__":
    import sys

    from uwsgi_rs import main

    sys.exit(main())
