"""A small app wrapped in wsgiref.validate.validator: any PEP 3333 violation
by the server raises AssertionError (logged as a traceback / 500)."""

from wsgiref.validate import validator


def _app(environ, start_response):
    inp = environ["wsgi.input"]
    if environ["REQUEST_METHOD"] == "POST":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        first = inp.readline()
        rest = inp.read(max(0, n - len(first)))
        body = b"got:" + first + rest
    elif environ["PATH_INFO"] == "/lines":
        body = b"".join(inp.readlines())
        for line in inp:
            body += line
        body = b"lines:" + body
    elif environ["PATH_INFO"] == "/gen":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            yield b"a"
            yield b"b"
        return gen()
    else:
        body = ("path:" + environ["PATH_INFO"] + " qs:" + environ["QUERY_STRING"]).encode("latin-1")
    environ["wsgi.errors"].write("validated request\n")
    environ["wsgi.errors"].writelines(["", ""])
    environ["wsgi.errors"].flush()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


application = validator(_app)
