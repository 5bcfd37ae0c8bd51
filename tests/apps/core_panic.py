"""A hostile app for the request path's panic guard: /panic raises PyO3's
PanicException (the Rust binding uwsgi-rs is built on), which PyO3 turns
back into a panic of the server's request thread, as a panic in the
server's own code would be."""
import os


def _panic_exception():
    # PyO3 creates the type the first time it fetches an exception (e.g.
    # after /raise); it lives in no module, only among the subclasses.
    for cls in BaseException.__subclasses__():
        if cls.__name__ == "PanicException":
            return cls
    return None


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/raise":
        raise ValueError("an ordinary exception")
    if path == "/panic":
        panic = _panic_exception()
        if panic is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no PanicException type yet"]
        raise panic("panicked on purpose")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
