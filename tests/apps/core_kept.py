"""Keeps what one request was handed (start_response, the write callable
it returned, wsgi.input) and uses them in a later request: the server
reuses these objects from request to request only when nothing else
holds them, so the kept ones must stay the old request's, refusing use,
and never write into the later response."""

kept = {}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/keep":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        kept.update(sr=start_response, write=write, input=environ["wsgi.input"])
        return [b"kept"]
    if path == "/use":
        results = []
        try:
            kept["input"].read()
            results.append("input read")
        except Exception as e:
            results.append("input: " + type(e).__name__)
        try:
            kept["write"](b"LEAK")
            results.append("write ok")
        except Exception as e:
            results.append("write: " + type(e).__name__)
        results.append("same sr" if kept["sr"] is start_response else "new sr")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [";".join(results).encode()]
    body = environ["wsgi.input"].read()
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"w:" + body + b";")
    return [b"plain"]
