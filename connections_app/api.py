"""The JSON API through which the team's own services fetch fresh access tokens, or call
Kroger through the portal (the proxy, ``proxy.py``) without ever holding a token.

Services authenticate with a service key (``Authorization: Bearer kcp_…``), not a session, so
these views are exempt from CSRF and read no cookies. Every response, errors included, carries
``Cache-Control: no-store``: a token must never sit in a cache. The API is described by
``openapi.json`` next to this module, which a test keeps true to these views.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from connections_app import lifecycle, proxy
from connections_app.access import get_connection_for_service_key
from connections_app.lifecycle import Actor
from connections_app.models import Connection, ServiceKey, TokenHandout, TokenUnavailable

OPENAPI_PATH = Path(__file__).with_name("openapi.json")

ApiView = Callable[..., HttpResponse]


def error(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _unauthorized(message: str, *, invalid: bool) -> JsonResponse:
    response = error(401, "unauthorized", message)
    # RFC 6750 section 3: name the scheme; say "invalid_token" only when one was presented.
    challenge = 'Bearer realm="api"'
    if invalid:
        challenge += ', error="invalid_token"'
    response["WWW-Authenticate"] = challenge
    return response


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def api_view_for(*methods: str) -> Callable[[ApiView], ApiView]:
    """Only ``methods``, never cached, and a JSON 404 for connections the key may not see."""
    allowed = ", ".join(methods)

    def decorate(view: ApiView) -> ApiView:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            # Not even HEAD on the token endpoint: it would hand out a token nobody sees.
            if request.method not in methods:
                response: HttpResponse = error(
                    405,
                    "method_not_allowed",
                    f"This endpoint only answers {' and '.join(methods)} requests.",
                )
                response["Allow"] = allowed
                return response
            try:
                response = view(request, *args, **kwargs)
            except Http404:
                response = error(
                    404,
                    "not_found",
                    "There is no such connection, or this service key may not use it.",
                )
            response["Cache-Control"] = "no-store"
            return response

        return wrapped

    return decorate


api_view = api_view_for("GET")


def service_key_required(view: ApiView) -> ApiView:
    return _key_required(view)


def proxy_key_required(view: ApiView) -> ApiView:
    """``service_key_required`` for the proxy: on PostgreSQL the query that reads the key
    also counts the call in the client's budget (``ServiceKey.authenticate_for``) when the
    path names a Kroger API; a call the proxy then refuses before sending it is refunded."""
    return _key_required(view, counts_calls=True)


def token_key_required(view: ApiView) -> ApiView:
    """``service_key_required`` for the token endpoint: on PostgreSQL the query that reads
    the key also counts the hand-out (``ServiceKey.authenticate_for``), one statement in all
    for a token that is handed out as stored."""
    return _key_required(view, hands_out_tokens=True)


def _key_required(
    view: ApiView, *, hands_out_tokens: bool = False, counts_calls: bool = False
) -> ApiView:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        raw = _bearer(request)
        if raw is None:
            return _unauthorized(
                "Send a service key: Authorization: Bearer <service key>.", invalid=False
            )
        # A call about one connection reads the key and the connection in one query.
        code = kwargs.get("code")
        if code is None:
            key = ServiceKey.authenticate(raw)
        else:
            now = timezone.now()
            key = ServiceKey.authenticate_for(
                raw,
                code,
                now,
                hand_out_at=now if hands_out_tokens else None,
                call_to=_api_of(kwargs.get("path", "")) if counts_calls else None,
            )
        if key is None:
            return _unauthorized(
                "This service key is not valid: it is unknown, revoked or expired.", invalid=True
            )
        key.note_use()
        request.service_key = key  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapped


def _api_of(path: str) -> str | None:
    """The Kroger API a proxied call to ``path`` counts against, or None for a path the
    proxy refuses."""
    try:
        return proxy.Call("GET", proxy.checked_path(path), "", None).api
    except proxy.Refused:
        return None


def _connection_json(connection: Connection) -> dict[str, Any]:
    return {
        "id": str(connection.code),
        "name": connection.name,
        "environment": connection.environment,
        "scopes": sorted(scope.name for scope in connection.scopes.all()),
        "status": connection.status,
        "expires_at": connection.token_expires_at.isoformat()
        if connection.token_expires_at
        else None,
    }


@api_view
@service_key_required
def connection_list(request: HttpRequest) -> HttpResponse:
    key: ServiceKey = request.service_key  # type: ignore[attr-defined]
    connections = key.usable_connections().prefetch_related("scopes").order_by("name")
    return JsonResponse({"connections": [_connection_json(c) for c in connections]})


@api_view
@token_key_required
def connection_token(request: HttpRequest, code: str) -> HttpResponse:
    key: ServiceKey = request.service_key  # type: ignore[attr-defined]
    if not key.may_fetch_tokens:
        return error(
            403,
            "token_not_allowed",
            "This service key may not fetch access tokens: call Kroger through "
            "/api/v1/connections/<id>/kroger/<path>, or ask an administrator to allow tokens.",
        )
    connection = get_connection_for_service_key(key, code)
    counted = key.hand_out_counted
    try:
        token = lifecycle.get_access_token(connection, actor=Actor(label=f"service key {key.name}"))
    except TokenUnavailable as exc:
        if counted is not None:
            TokenHandout.take_back(counted, service_key=key, connection=connection)
        return error(409, exc.code, exc.reason)
    # One counter per key, connection and hour rather than an audit row per token.
    if counted is None:
        TokenHandout.bump(service_key=key, connection=connection)
    elif counted.count == 1:
        TokenHandout.prune(timezone.now())  # the hour's first hand-out
    return JsonResponse(
        {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_at": token.expires_at.isoformat(),
            "scope": token.scope,
            "environment": connection.environment,
            "base_url": connection.base_url,
        }
    )


@api_view_for(*proxy.METHODS)
@proxy_key_required
def connection_proxy(request: HttpRequest, code: str, path: str) -> HttpResponse:
    key: ServiceKey = request.service_key  # type: ignore[attr-defined]
    if not key.may_proxy:
        return error(
            403,
            "proxy_not_allowed",
            "This service key may not call Kroger through the portal: ask an administrator "
            "to allow the proxy for it.",
        )
    method = request.method or "GET"
    try:
        proxy.checked_headers(request.META)
        call = proxy.Call(
            method=method,
            path=proxy.checked_path(path),
            query=proxy.checked_query(request.META.get("QUERY_STRING", "")),
            body=proxy.checked_body(method, _body(request, method)),
        )
        answer = proxy.forward(key, code, call)
    except proxy.Refused as refused:
        proxy.take_back(key)  # refused before it went out: not a call to Kroger
        refusal = error(refused.status, refused.code, refused.message)
        if refused.retry_after is not None:
            refusal["Retry-After"] = str(refused.retry_after)
        return refusal
    # Kroger's status, body and type only: none of its other headers (cookies, hop-by-hop).
    response = HttpResponse(answer.body, status=answer.status)
    if answer.content_type:
        response["Content-Type"] = answer.content_type
    else:
        del response["Content-Type"]
    if answer.status == 429 and answer.retry_after is not None:
        response["Retry-After"] = str(answer.retry_after)
    return response


def _body(request: HttpRequest, method: str) -> bytes | None:
    if method not in proxy.BODY_METHODS:
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > proxy.MAX_BODY_BYTES:
        raise proxy.body_too_large()  # refused before reading it
    return request.body


@cache
def _openapi_document() -> bytes:
    # Parsed and re-serialized once, so a malformed file fails at the first request.
    return json.dumps(json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))).encode()


@api_view
def openapi(request: HttpRequest) -> HttpResponse:
    return HttpResponse(_openapi_document(), content_type="application/json")
