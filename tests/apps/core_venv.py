"""Imports a module that only exists in the test's virtualenv."""

import json
import sys

import core_venvmod


def application(environ, start_response):
    body = json.dumps({"marker": core_venvmod.MARKER, "module_file": core_venvmod.__file__,
                       "prefix": sys.prefix, "base_prefix": sys.base_prefix}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
