"""Bench-only views for ``bench/proxy.py``: the token endpoint rebuilt one step at a time on top
of the ceiling view, through the pages' middleware and with the ORM's queries it used to make
(one per step), so that the time of each step (service key, connection, token, hand-out count,
and the audit row it replaced) can be read off as a difference in requests/s.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, JsonResponse
from django.urls import path

from connections_app import lifecycle
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


def _connection(key: ServiceKey, code: str) -> Connection:
    try:
        return key.usable_connections().select_related("client").get(code=code)
    except Connection.DoesNotExist:
        raise Http404 from None


def connection(request: HttpRequest, code: str) -> JsonResponse:
    found = _connection(_key(request), code)
    return _json({"connection": {"code": str(found.code), "name": found.name}})


def _token(request: HttpRequest, code: str) -> tuple[ServiceKey, Connection, JsonResponse]:
    service_key = _key(request)
    found = _connection(service_key, code)
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


urlpatterns = [
    path("bench/anatomy/key/<str:code>", key),
    path("bench/anatomy/connection/<str:code>", connection),
    path("bench/anatomy/token/<str:code>", token),
    path("bench/anatomy/counted/<str:code>", counted),
    path("bench/anatomy/audited/<str:code>", audited),
]
