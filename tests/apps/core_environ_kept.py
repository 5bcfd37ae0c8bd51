"""Changes and keeps the environ it is handed: the server reuses a core's
environ for the next request only when nothing else holds it and the app
changed nothing in it, so every request must still see a clean environ,
and a kept one must never change after its request."""

import json

kept = {}


def snapshot(environ):
    return {k: v if isinstance(v, (str, bool, tuple)) else type(v).__name__
            for k, v in environ.items()}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ("/keep", "/mutate"):
        # Add a key, delete a required one, change a constant one.
        environ["app.added"] = "1"
        del environ["QUERY_STRING"]
        environ["wsgi.url_scheme"] = "gopher"
        if path == "/keep":
            kept["env"] = environ
            kept["copy"] = dict(environ)
    elif path == "/hold":
        # Kept unchanged.
        kept["env"] = environ
        kept["copy"] = dict(environ)
    elif path == "/restore":
        # Set a key to another value and back: the dict ends as handed.
        environ["PATH_INFO"] = "/elsewhere"
        environ["PATH_INFO"] = path
    body = {
        "keys": sorted(environ),
        "order": list(environ),
        "env": snapshot(environ),
        "input": environ["wsgi.input"].read().decode(),
        "kept_same": kept["env"] == kept["copy"] if kept else None,
        "kept_is_this": kept.get("env") is environ,
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
