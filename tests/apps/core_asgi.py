"""ASGI apps in the shapes frameworks give them, and WSGI look-alikes.

`app` is a bare ASGI function, `starlette_like` an object with an async
__call__ (FastAPI, Starlette, Quart, Django's ASGIHandler), `create_app`
a factory returning one. The WSGI ones
must still load: an object with a plain __call__, and a class whose
instances are the response iterable (valid WSGI: the class is the app).
"""


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi"})


class Starlette:
    async def __call__(self, scope, receive, send):
        await app(scope, receive, send)


starlette_like = Starlette()


def create_app():
    """A factory (`--module core_asgi:create_app()`) returning an ASGI app."""
    return starlette_like


class Wsgi:
    def __call__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"wsgi object"]


wsgi_object = Wsgi()


class wsgi_class:
    def __init__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        self.body = [b"wsgi class"]

    def __iter__(self):
        return iter(self.body)
