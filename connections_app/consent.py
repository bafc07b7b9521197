"""The trip to Kroger's consent page and back: the one home of the authorization-code flow.

``begin`` records an attempt (a single-use ``state`` and a PKCE verifier, bound to the person
who started it) and returns the consent page's address; ``complete`` checks what Kroger sent
back, claims the attempt and exchanges the code. A client-credentials connection has no
consent page: ``begin`` authorizes it at once. Views turn the refusals raised here into
responses and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connections_app import kroger, lifecycle
from connections_app.access import get_connection_for_user
from connections_app.fields import UNREADABLE, secret_state
from connections_app.lifecycle import Actor
from connections_app.models import (
    AuditAction,
    AuditEvent,
    AuthorizationAttempt,
    Connection,
    GrantType,
)

logger = logging.getLogger(__name__)

DECLINED = "Authorization was declined on Kroger's page."
START_AGAIN = "Start the authorization again from the connection page."
NOT_SIGNED_IN = (
    "You are not signed in. Sign in, then start the authorization again from the connection page."
)


class AuthorizationRefused(Exception):
    """A callback that must not reach Kroger; ``status`` is 400 or 403, ``message`` for people.
    ``connection`` is the one the person was authorizing, where it is theirs to see."""

    def __init__(self, status: int, message: str, connection: Connection | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.connection = connection


class AuthorizationFailed(Exception):
    """Kroger or the shopper said no; the connection is as it was. ``message`` for people."""

    def __init__(self, connection: Connection, message: str) -> None:
        super().__init__(message)
        self.connection = connection
        self.message = message


def begin(connection: Connection, user: Any) -> str | None:
    """Where to send ``user`` for the shopper's consent to ``connection`` (already saved), or
    None when the connection was authorized at once (client credentials). Stored tokens are
    replaced only when new ones arrive. Raises AuthorizationFailed when Kroger refuses."""
    _require_readable_client_secret(connection)
    if connection.grant_type == GrantType.CLIENT_CREDENTIALS:
        try:
            lifecycle.authorize_client_credentials(connection, actor=Actor(user))
        except kroger.KrogerError as exc:
            raise _failed(connection, user, exc) from None
        return None
    attempt, state = start_attempt(
        connection=connection, user=user, redirect_uri=settings.OAUTH_REDIRECT_URI
    )
    AuditEvent.record(
        AuditAction.AUTHORIZATION_STARTED,
        actor=user,
        connection=connection,
        detail=f"Sent to Kroger's consent page ({connection.get_environment_display()})",
    )
    return kroger.authorization_url(
        environment=attempt.environment,
        client_id=connection.client.client_id,
        redirect_uri=attempt.redirect_uri,
        scopes=connection.scope_names(),
        state=state,
        code_challenge=kroger.code_challenge(attempt.code_verifier),
        banner=connection.banner,
    )


def start_attempt(
    *, connection: Connection, user: Any, redirect_uri: str
) -> tuple[AuthorizationAttempt, str]:
    """Record a new trip to the consent page; returns the attempt and its ``state``.

    Only the state's SHA-256 is stored; the PKCE verifier is stored encrypted.
    """
    now = timezone.now()
    AuthorizationAttempt.objects.filter(
        created_at__lt=now - AuthorizationAttempt.RETENTION
    ).delete()
    state = kroger.new_state()
    attempt = AuthorizationAttempt.objects.create(
        state_hash=AuthorizationAttempt.hash_state(state),
        connection=connection,
        user=user,
        environment=connection.environment,
        code_verifier=kroger.new_code_verifier(),
        redirect_uri=redirect_uri,
        created_at=now,
    )
    return attempt, state


def complete(query: Mapping[str, str], user: Any) -> Connection:
    """Finish the flow with what Kroger sent back (the callback's parameters); returns the
    authorized connection.

    Nothing reaches Kroger unless the state exists, is unused, is under 10 minutes old and
    was started by ``user``, who must still be allowed to edit the connection. Raises
    AuthorizationRefused (answer with an error page) or AuthorizationFailed (tell people on
    the connection page).
    """
    state = query.get("state", "")
    error = query.get("error", "")
    if not user.is_authenticated:
        raise AuthorizationRefused(403, NOT_SIGNED_IN)
    if not state:
        if error == "access_denied":
            raise AuthorizationRefused(400, DECLINED)
        raise AuthorizationRefused(
            400,
            "Kroger's answer carries no state, so it cannot be matched to an authorization "
            f"started here. {START_AGAIN}",
        )
    try:
        attempt = claim(state, user)
    except AuthorizationRefused as refused:
        logger.warning("Authorization callback refused (HTTP %s)", refused.status)
        raise
    connection: Connection = get_connection_for_user(user, attempt.connection.code, edit=True)
    if error:
        raise _consent_refused(connection, user, error, query.get("error_description", ""))
    code = query.get("code", "")
    if not code:
        raise AuthorizationRefused(
            400, f"Kroger's answer carries no authorization code. {START_AGAIN}"
        )
    if connection.environment != attempt.environment:
        raise AuthorizationRefused(
            400, f"The connection's environment changed during its authorization. {START_AGAIN}"
        )
    _require_readable_client_secret(connection)
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
        raise _failed(connection, user, exc) from None
    return lifecycle.authorize_with(connection, response, actor=Actor(user))


def claim(state: str, user: Any) -> AuthorizationAttempt:
    """The attempt ``state`` belongs to, marked used so it can never be replayed.

    Raises AuthorizationRefused unless the state exists, is unused, is younger than
    LIFETIME and was started by ``user``.
    """
    with transaction.atomic():
        attempt = (
            AuthorizationAttempt.objects.select_for_update(of=("self",))
            .select_related("connection", "connection__client")
            .filter(state_hash=AuthorizationAttempt.hash_state(state))
            .first()
        )
        if attempt is None:
            raise AuthorizationRefused(
                400,
                "This authorization result does not match any authorization started here. "
                "Start the authorization again from the connection page.",
            )
        if attempt.user_id != getattr(user, "pk", None):
            raise AuthorizationRefused(
                403,
                "This authorization was started by someone else. Each person completes "
                "their own authorization: start it again from the connection page.",
            )
        if attempt.used_at is not None:
            # Most often the page was reloaded or sent twice: the first post may still be
            # finishing, and the connection's page shows how it ended.
            raise AuthorizationRefused(
                400,
                "This authorization result was already used. The connection's page shows "
                "whether that authorization succeeded; if not, start it again from there.",
                attempt.connection,
            )
        if attempt.is_expired():
            raise AuthorizationRefused(
                400,
                "This authorization took longer than 10 minutes and has expired. Start it "
                "again from the connection page.",
            )
        attempt.used_at = timezone.now()
        attempt.save(update_fields=["used_at"])
    return attempt


def _require_readable_client_secret(connection: Connection) -> None:
    """Kroger needs the client secret for the token: when ENCRYPTION_KEYS cannot decrypt it,
    say what to do before anything is sent to Kroger."""
    client = connection.client
    if secret_state(client, "client_secret") != "unreadable":
        return
    logger.warning(
        "Authorization of connection %s: the client secret is unreadable", connection.code
    )
    raise AuthorizationFailed(
        connection,
        f"The client secret of the OAuth 2.0 client “{client.name}” is {UNREADABLE} on the "
        "client's page (ENCRYPTION_KEYS cannot decrypt it), then authorize again.",
    )


def _failed(connection: Connection, user: Any, exc: kroger.KrogerError) -> AuthorizationFailed:
    """Kroger refused or failed: record why; the stored tokens are left alone."""
    status = f" (HTTP {exc.status})" if exc.status else ""
    logger.warning("Authorization of connection %s failed: %s%s", connection.code, exc.kind, status)
    AuditEvent.record(
        AuditAction.AUTHORIZATION_FAILED,
        actor=user,
        connection=connection,
        detail=f"{exc.kind}{status}: {exc.message}",
    )
    return AuthorizationFailed(connection, f"Authorization failed. {exc.message}")


def _consent_refused(
    connection: Connection, user: Any, error: str, description: str
) -> AuthorizationFailed:
    """Kroger came back with ``error`` instead of a code; the connection stays as it was."""
    if error == "access_denied":
        message, detail = DECLINED, "Declined on Kroger's page"
    else:
        description = " ".join(description.split())[:300]
        message = f"Kroger refused the authorization ({error[:60]})" + (
            f": {description}" if description else "."
        )
        if error == "invalid_scope":
            message += " Check the scopes assigned to the app at developer.kroger.com."
        detail = message
    logger.warning("Authorization of connection %s refused by Kroger", connection.code)
    AuditEvent.record(
        AuditAction.AUTHORIZATION_FAILED, actor=user, connection=connection, detail=detail
    )
    return AuthorizationFailed(connection, message)
