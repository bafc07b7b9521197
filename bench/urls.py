"""The portal's URLs plus one bench-only view, reachable only through ``bench.settings``.

``ceiling`` reads one row by primary key and returns it as JSON: the fastest answer this stack
(gunicorn, Django's middleware, PostgreSQL) can give, to compare the token endpoint against.
Under ``/api/bench/`` it runs the same middleware as the service API (API_MIDDLEWARE), so it is
what the token endpoint is measured against; under ``/bench/`` it runs the pages' middleware.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from bench import anatomy
from connections_app.models import Connection
from connections_app.urls import urlpatterns as portal_urlpatterns


def ceiling(request: HttpRequest, pk: int) -> JsonResponse:
    row = Connection.objects.filter(pk=pk).values("code", "name", "status").first()
    response = JsonResponse({"connection": row})
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    *portal_urlpatterns,
    path("api/bench/ceiling/<int:pk>", ceiling),
    path("bench/ceiling/<int:pk>", ceiling),
    *anatomy.urlpatterns,  # bench/proxy.py: the token endpoint step by step
]
