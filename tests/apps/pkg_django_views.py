"""Views the Django test project (made by `django-admin startproject`)
adds to its urls.py: static files served by Django's own
django.views.static.serve (a FileResponse), a probe telling whether Django
handed the last one to the server's wsgi.file_wrapper, and a view that gets
stuck."""

import time

from django.conf import settings
from django.http import JsonResponse
from django.views import static

LAST_STATIC = []


def static_serve(request, path):
    response = static.serve(request, path, document_root=settings.STATIC_ROOT)
    LAST_STATIC[:] = [response.file_to_stream]
    return response


def last_static(request):
    """Django's WSGIHandler replaces the file's close() by the response's
    only when it passes the file to environ['wsgi.file_wrapper']; the server
    closes the wrapper (and so the file) once the file is sent."""
    f = LAST_STATIC[0]
    return JsonResponse({"wrapped": "close" in vars(f), "closed": f.closed,
                         "file_wrapper": repr(request.environ.get("wsgi.file_wrapper"))})


def stuck_view(request):
    time.sleep(float(request.GET.get("s", "30")))
    return JsonResponse({"stuck": False})


def remote(request):
    return JsonResponse({k: request.META.get(k) for k in
                         ("REMOTE_ADDR", "SERVER_PROTOCOL", "HTTP_HOST", "wsgi.url_scheme")})
