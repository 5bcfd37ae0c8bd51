"""An app whose callable is not called `application`."""


def myapp(environ, start_response):
    body = b"named callable"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
