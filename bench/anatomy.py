"""Bench-only views for ``bench/proxy.py``: the token endpoint rebuilt one step at a time on top
of the ceiling view, so that the time of each step (service key, connection, token, hand-out
count, and the audit row it replaced) can be read off as a difference in requests/s.

``bench/wsgi.py`` serves ``/bench/lean/…`` through a handler with only the middleware the API
needs, to show what the rest of the middleware costs the API.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.handlers.wsgi import WSGIHandler
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path

from connections_app import api, lifecycle
from connections_app.access import get_connection_for_service_key
from connections_app.lifecycle import Actor
from connections_app.models import AuditAction, AuditEvent, Connection, ServiceKey, TokenHandout


def _json(payload: dict[str, object]) -> JsonResponse:
    response = JsonResponse(payload)
    response["Cache-Control"] = "no-store"
    return response


def _key(request: HttpRequest) -> ServiceKey:
    raw = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    key = ServiceKey.authenticate(raw)
    if key is None:
        raise Http404
    key.note_use()
    return key


def key(request: HttpRequest, code: str) -> JsonResponse:
    _key(request)
    row = Connection.objects.filter(code=code).values("code", "name", "status").first()
    return _json({"connection": row})


def connection(request: HttpRequest, code: str) -> JsonResponse:
    found = get_connection_for_service_key(_key(request), code)
    return _json({"connection": {"code": str(found.code), "name": found.name}})


def _token(request: HttpRequest, code: str) -> tuple[ServiceKey, Connection, JsonResponse]:
    service_key = _key(request)
    found = get_connection_for_service_key(service_key, code)
    token = lifecycle.get_access_token(found, actor=Actor(label=service_key.name))
    response = _json({"access_token": token.access_token, "expires_at": str(token.expires_at)})
    return service_key, found, response


def token(request: HttpRequest, code: str) -> JsonResponse:
    return _token(request, code)[2]


def counted(request: HttpRequest, code: str) -> JsonResponse:
    service_key, found, response = _token(request, code)
    TokenHandout.bump(service_key=service_key, connection=found)
    return response


def audited(request: HttpRequest, code: str) -> JsonResponse:
    """What the endpoint did before the hourly counter: one audit row per token handed out."""
    service_key, found, response = _token(request, code)
    AuditEvent.record(
        AuditAction.TOKEN_ISSUED,
        actor_label=f"service key {service_key.name}",
        connection=found,
        service_key=service_key,
        detail="valid until …",
    )
    return response


def urlpatterns_for(ceiling: Callable[..., HttpResponse]) -> list[URLPattern]:
    return [
        path("bench/anatomy/key/<str:code>", key),
        path("bench/anatomy/connection/<str:code>", connection),
        path("bench/anatomy/token/<str:code>", token),
        path("bench/anatomy/counted/<str:code>", counted),
        path("bench/anatomy/audited/<str:code>", audited),
        path("bench/lean/ceiling/<int:pk>", ceiling),
        path("bench/lean/token/<str:code>", api.connection_token),
    ]


# What the service API needs of the middleware: HTTPS rules (HSTS, nosniff, referrer policy).
API_MIDDLEWARE = ["django.middleware.security.SecurityMiddleware"]


class ApiMiddlewareOnly(WSGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        from django.conf import settings

        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full
