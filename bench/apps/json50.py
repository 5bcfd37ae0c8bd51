"""App-bound workload: 50 items built and serialised to JSON per request."""

import json


def application(environ, start_response):
    items = [{"id": i, "name": "item %d" % i, "price": i * 1.25, "tags": ["a", "b"],
              "active": i % 2 == 0} for i in range(50)]
    body = json.dumps({"count": len(items), "items": items}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


app = application
