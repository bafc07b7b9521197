"""The bench's WSGI application: the portal, with ``/bench/lean/…`` served by a handler that
runs only the middleware the service API needs (see ``bench/anatomy.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

portal = get_wsgi_application()


def _lean() -> WSGIHandler:
    from bench.anatomy import ApiMiddlewareOnly  # the portal's modules need Django set up

    return ApiMiddlewareOnly()


lean = _lean()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO", "").startswith("/bench/lean/"):
        return lean(environ, start_response)
    return portal(environ, start_response)
