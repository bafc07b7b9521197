from __future__ import annotations

import functools
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.db import connection as db_connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from connections_app import kroger
from connections_app.access import can_edit, get_connection_for_user, require_viewer
from connections_app.models import (
    AuditAction,
    AuditEvent,
    AuthorizationAttempt,
    AuthorizationRefused,
    Connection,
    GrantType,
    OAuthClient,
)

logger = logging.getLogger(__name__)

PAGE_SIZE = 25


@login_required
def home(request: HttpRequest) -> HttpResponse:
    require_viewer(request.user)
    connections = (
        Connection.objects.select_related("client").prefetch_related("scopes").order_by("name")
    )
    page = Paginator(connections, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "connections/connection_list.html",
        {"page": page, "can_edit": can_edit(request.user)},
    )


@login_required
def client_list(request: HttpRequest) -> HttpResponse:
    require_viewer(request.user)
    clients = OAuthClient.objects.order_by("name")
    page = Paginator(clients, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "connections/client_list.html",
        {"page": page, "can_edit": can_edit(request.user)},
    )


# --- Authorization ---------------------------------------------------------------------------


def start_authorization(request: HttpRequest, connection: Connection) -> HttpResponse:
    """Send the user to Kroger's consent page for ``connection`` (already saved), or, for
    client credentials, fetch its token right away. Stored tokens are replaced only when new
    ones arrive."""
    if connection.grant_type == GrantType.CLIENT_CREDENTIALS:
        client = connection.client
        try:
            response = kroger.client_credentials(
                environment=connection.environment,
                client_id=client.client_id,
                client_secret=client.client_secret,
                scopes=sorted(scope.name for scope in connection.scopes.all()),
            )
        except kroger.KrogerError as exc:
            return _authorization_failed(request, connection, exc)
        connection.authorize_with(response, actor=request.user)
        messages.success(request, f"“{connection.name}” is Online.")
        return redirect("connection_detail", code=connection.code)
    attempt, state = AuthorizationAttempt.begin(
        connection=connection, user=request.user, redirect_uri=settings.OAUTH_REDIRECT_URI
    )
    AuditEvent.record(
        AuditAction.AUTHORIZATION_STARTED,
        actor=request.user,
        connection=connection,
        detail=f"Sent to Kroger's consent page ({connection.get_environment_display()})",
    )
    return redirect(
        kroger.authorization_url(
            environment=attempt.environment,
            client_id=connection.client.client_id,
            redirect_uri=attempt.redirect_uri,
            scopes=sorted(scope.name for scope in connection.scopes.all()),
            state=state,
            code_challenge=kroger.code_challenge(attempt.code_verifier),
            banner=connection.banner,
        )
    )


def _authorization_failed(
    request: HttpRequest, connection: Connection, exc: kroger.KrogerError
) -> HttpResponse:
    """Kroger refused or failed: say why, record it, and leave the stored tokens alone."""
    status = f" (HTTP {exc.status})" if exc.status else ""
    logger.warning("Authorization of connection %s failed: %s%s", connection.code, exc.kind, status)
    AuditEvent.record(
        AuditAction.AUTHORIZATION_FAILED,
        actor=request.user,
        connection=connection,
        detail=f"{exc.kind}{status}: {exc.message}",
    )
    messages.error(request, f"Authorization failed. {exc.message}")
    return redirect("connection_detail", code=connection.code)


@login_required
@require_POST
def connection_authorize(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """ "Reauthorize": a new consent; the stored tokens stay until new ones arrive."""
    connection = get_connection_for_user(request.user, code, edit=True)
    return start_authorization(request, connection)


def _callback_headers(view: Any) -> Any:
    """The callback URL holds a code and a state: keep it out of caches and Referer headers."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        response: HttpResponse = view(request)
        response["Referrer-Policy"] = "no-referrer"
        response["Cache-Control"] = "no-store"
        return response

    return wrapper


def _callback_error(request: HttpRequest, status: int, message: str) -> HttpResponse:
    return render(request, "connections/oauth_error.html", {"message": message}, status=status)


DECLINED = "Authorization was declined on Kroger's page."
START_AGAIN = "Start the authorization again from the connection page."


@_callback_headers
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where Kroger sends the browser back after its consent page (RFC 6749 section 4.1.2).

    Nothing reaches Kroger unless the state exists, is unused, is under 10 minutes old and
    was started by the signed-in user. Deliberately not @login_required: a redirect to the
    sign-in page would carry the code along in its URL.
    """
    state = request.GET.get("state", "")
    error = request.GET.get("error", "")
    if not request.user.is_authenticated:
        return _callback_error(request, 403, f"You are not signed in. Sign in, then {START_AGAIN}")
    if not state:
        if error == "access_denied":
            return _callback_error(request, 400, DECLINED)
        return _callback_error(
            request,
            400,
            "Kroger's answer carries no state, so it cannot be matched to an authorization "
            f"started here. {START_AGAIN}",
        )
    try:
        attempt = AuthorizationAttempt.claim(state, request.user)
    except AuthorizationRefused as refused:
        logger.warning("Authorization callback refused (HTTP %s)", refused.status)
        return _callback_error(request, refused.status, refused.message)
    connection = get_connection_for_user(request.user, attempt.connection.code, edit=True)
    if error:
        return _consent_refused(request, connection, error)
    code = request.GET.get("code", "")
    if not code:
        return _callback_error(
            request, 400, f"Kroger's answer carries no authorization code. {START_AGAIN}"
        )
    if connection.environment != attempt.environment:
        return _callback_error(
            request,
            400,
            f"The connection's environment changed during its authorization. {START_AGAIN}",
        )
    client = connection.client
    try:
        response = kroger.exchange_code(
            environment=attempt.environment,
            client_id=client.client_id,
            client_secret=client.client_secret,
            code=code,
            redirect_uri=attempt.redirect_uri,
            code_verifier=attempt.code_verifier,
        )
    except kroger.KrogerError as exc:
        return _authorization_failed(request, connection, exc)
    connection.authorize_with(response, actor=request.user)
    messages.success(request, f"“{connection.name}” is authorized and Online.")
    return redirect("connection_detail", code=connection.code)


def _consent_refused(request: HttpRequest, connection: Connection, error: str) -> HttpResponse:
    """Kroger came back with ``error`` instead of a code; the connection stays as it was."""
    if error == "access_denied":
        message, detail = DECLINED, "Declined on Kroger's page"
    else:
        description = " ".join(request.GET.get("error_description", "").split())[:300]
        message = f"Kroger refused the authorization ({error[:60]})" + (
            f": {description}" if description else "."
        )
        if error == "invalid_scope":
            message += " Check the scopes assigned to the app at developer.kroger.com."
        detail = message
    logger.warning("Authorization of connection %s refused by Kroger", connection.code)
    AuditEvent.record(
        AuditAction.AUTHORIZATION_FAILED, actor=request.user, connection=connection, detail=detail
    )
    messages.error(request, message)
    return redirect("connection_detail", code=connection.code)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and container health checks: is the database reachable?"""
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})
