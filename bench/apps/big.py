"""100 KB response body as one bytes object (bench workload "100 KB response")."""

BODY = b"x" * (100 * 1024)
HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]


app = application
