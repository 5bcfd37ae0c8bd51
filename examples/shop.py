"""A small demo app for the profiler and the dashboard (docs/ images are
made with it, by scripts/docs_images.py):

GET /api/orders        a "database query" (4 ms wait), then JSON of 300 orders
GET /api/search?q=...  fuzzy matching over 400 product names (CPU)
GET /api/checkout      a payment call (20 ms wait) and a price computation
GET /report            a report that takes 60 s (stuck on a slow query)
anything else          "ok"
"""
import difflib
import json
import time

PRODUCTS = ["%s %s" % (a, b) for a in ("red", "blue", "green", "black", "white", "large",
                                         "small", "wooden", "steel", "plastic")
            for b in ("chair", "table", "lamp", "desk", "shelf", "sofa", "bed", "rug",
                      "clock", "mirror", "vase", "stool", "bench", "cabinet", "drawer",
                      "frame", "pillow", "blanket", "basket", "hook", "rack", "cart",
                      "fan", "heater", "kettle", "toaster", "mixer", "grill", "oven",
                      "fridge", "sink", "tap", "shower", "towel", "soap", "brush",
                      "comb", "razor")]


def query_orders():
    time.sleep(0.004)  # the database
    return [{"id": i, "item": PRODUCTS[i % len(PRODUCTS)], "qty": i % 7,
             "price": round(9.99 + i * 0.37, 2)} for i in range(300)]


def render_json(rows):
    return json.dumps({"orders": rows}).encode()


def search(q):
    return difflib.get_close_matches(q, PRODUCTS, n=5, cutoff=0.3)


def charge_card():
    time.sleep(0.020)  # the payment provider


def compute_total(items):
    total = 0.0
    for i in range(items * 2000):
        total += (i % 97) * 0.01
    return round(total, 2)


def checkout():
    charge_card()
    return compute_total(5)


def slow_query():
    time.sleep(60)


def build_report():
    slow_query()
    return b"report"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/api/orders":
        body = render_json(query_orders())
    elif path == "/api/search":
        q = environ.get("QUERY_STRING", "").partition("q=")[2] or "chair"
        body = json.dumps(search(q)).encode()
    elif path == "/api/checkout":
        body = json.dumps({"total": checkout()}).encode()
    elif path == "/report":
        body = build_report()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
