"""A 50 MB response body as a list of 1 MB bytes objects, built per request
(the issue-12 memory case: the server must not hold a second copy)."""

CHUNK = 1024 * 1024
N = 50


def application(environ, start_response):
    body = [bytes([65 + i % 26]) * CHUNK for i in range(N)]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return body


app = application
