"""The token lifecycle: every change to a connection's tokens, made under its row lock.

Getting a token, renewing it (on demand, when a person asks, when the worker finds it due),
what a failed renewal does, authorizing with a token answer, disconnecting and testing all
live here. Each step returns what happened (an ``Outcome``); ``notifications.announce`` is the
one place where an outcome becomes e-mail, once committed, and ``webhooks.announce`` writes the
events it reports to the outbox inside the step's own transaction. ``Connection`` keeps the
fields, the rules and the small state changes these steps are made of.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from django.conf import settings
from django.db import OperationalError, connections, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from connections_app import budgets, kroger, notifications, renewal_policy, webhooks
from connections_app.crypto import DecryptionError
from connections_app.models import (
    KROGER_UNREACHABLE,
    NEEDS_REAUTHORIZATION,
    SECRETS_UNREADABLE,
    AccessToken,
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    ConnectionTest,
    Environment,
    GrantType,
    Notice,
    Outcome,
    TokenUnavailable,
    api_for_path,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in person (``user``), or a process named by ``label``."""

    user: Any = None
    label: str = ""

    def record(self, action: str, connection: Connection, detail: str) -> None:
        AuditEvent.record(
            action, actor=self.user, actor_label=self.label, connection=connection, detail=detail
        )


SYSTEM = Actor()  # the audit trail says "system"
WORKER = Actor(label="worker")


class Want(Enum):
    USABLE = "usable"  # a usable token: renewed only when needed, never while backing off
    RENEWAL = "renewal"  # a new token now (a person asked)
    DUE = "due"  # what the keep-alive policy says is due (the worker)


@dataclass(frozen=True)
class Request:
    """What a caller asks of the locked step, and on whose behalf."""

    want: Want
    actor: Actor
    # A renewal someone else finished after this moment (while this one waited for the lock)
    # is the renewal asked for: Kroger is not called twice.
    asked_at: datetime | None = None


def refresh_backoff(failures: int) -> timedelta:
    """How long to wait before the next refresh after ``failures`` failures in a row."""
    return min(timedelta(minutes=1) * 2 ** max(failures - 1, 0), timedelta(minutes=30))


def _not_authorized() -> TokenUnavailable:
    return TokenUnavailable("not_authorized", "This connection has not been authorized.")


def _needs_reauthorization() -> TokenUnavailable:
    return TokenUnavailable(
        "needs_reauthorization",
        f"{NEEDS_REAUTHORIZATION}: Kroger no longer accepts this connection's refresh "
        "token. Authorize it again.",
    )


# --- Handing out a token --------------------------------------------------------------------


def get_access_token(connection: Connection, *, actor: Actor = SYSTEM) -> AccessToken:
    """A usable access token: the stored one while the connection is Online and the token
    is valid for more than ``renewal_policy.refresh_margin``, otherwise a refreshed one
    (refresh grant, or a new client-credentials token), obtained under the row lock so that
    concurrent callers cause a single call to Kroger.

    Raises TokenUnavailable (codes: ``not_authorized``, ``needs_reauthorization``,
    ``kroger_unavailable``) when none can be had.
    """
    return _obtain(connection, actor)[1]


def _obtain(connection: Connection, actor: Actor) -> tuple[Connection, AccessToken]:
    """The token and the connection as the token was had (the stored state after a renewal);
    the hand-out keeps the connection warm."""
    connection, token = _token_for(connection, actor)
    note_hand_out(connection)
    return connection, token


def note_hand_out(connection: Connection, now: datetime | None = None) -> None:
    """Record that a token was handed out, so that the worker keeps the connection warm.

    Written only when it moves the renewal due time (about once per token lifetime for a
    connection in steady use), so that handing out a token stays a read. On PostgreSQL a
    row locked by a renewal in flight is skipped rather than waited for: that renewal
    stores a due time of its own, and the next hand-out corrects it if need be.
    """
    now = now or timezone.now()
    before = connection.handed_out_at
    connection.handed_out_at = now
    due = renewal_policy.renewal_due(connection)
    if due == connection.renewal_due_at:
        connection.handed_out_at = before
        return
    connection.renewal_due_at = due
    # One statement; savepoint=False: inside a request's transaction it adds no savepoint.
    with transaction.atomic(savepoint=False):
        free = Connection.objects.filter(pk=connection.pk).select_for_update(skip_locked=True)
        Connection.objects.filter(pk__in=free.values("pk")).update(
            handed_out_at=now, renewal_due_at=due
        )


def _token_for(connection: Connection, actor: Actor) -> tuple[Connection, AccessToken]:
    if connection.status == ConnectionStatus.NOT_AUTHORIZED or not connection.is_authorized:
        raise _not_authorized()
    if connection.needs_reauthorization:
        raise _needs_reauthorization()
    # Only an Online connection's token is handed out as is: Offline means the portal
    # knows it is expired or refused, and the locked path refreshes it or says why not.
    if connection.status == ConnectionStatus.ONLINE:
        now = timezone.now()
        try:
            fresh = connection.token_valid_for(now) > renewal_policy.refresh_margin(connection)
        except DecryptionError:
            fresh = False  # the locked path says so, and takes the connection Offline
        token = connection.current_token(now) if fresh else None
        if token is not None:
            return connection, token
    return _renew_waiting(connection, Request(Want.USABLE, actor))


def renew(connection: Connection, *, actor: Actor, since: datetime | None = None) -> AccessToken:
    """ "Refresh token" on the connection page: Kroger is called unless another caller
    refreshed while this one waited for the lock (or after ``since``, when the caller read
    the token it found refused). Raises TokenUnavailable when it failed."""
    asked_at = since or timezone.now()
    return _renew_waiting(connection, Request(Want.RENEWAL, actor, asked_at=asked_at))[1]


def _renew_waiting(connection: Connection, request: Request) -> tuple[Connection, AccessToken]:
    locked = Connection.objects.filter(pk=connection.pk).select_for_update(of=("self",))
    try:
        claimed = _claim_and_renew(locked, request)
    except OperationalError:
        # The lock wait ran out (PostgreSQL lock_timeout; SQLite's busy timeout).
        logger.warning("Refresh of connection %s: gave up waiting for the lock", connection.code)
        raise TokenUnavailable(
            "kroger_unavailable",
            "Another refresh of this connection is still waiting for Kroger. Try again "
            "in a minute.",
        ) from None
    assert claimed is not None  # a blocking lock always gets the row
    fresh, outcome = claimed
    if outcome.token is not None and not (request.want is Want.RENEWAL and outcome.error):
        return fresh, outcome.token
    raise outcome.error or TokenUnavailable(
        "kroger_unavailable", fresh.status_reason or "No usable access token. Try again."
    )


# --- The worker's selection ------------------------------------------------------------------


def due_for_refresh(*, now: datetime | None = None) -> QuerySet[Connection]:
    """Connections whose renewal is due by the keep-alive policy (``renewal_due_at``, kept
    by ``renewal_policy.renewal_due`` with every token change and hand-out), earliest first."""
    now = now or timezone.now()
    return Connection.objects.filter(renewal_due_at__lte=now).order_by("renewal_due_at")


# How long a claimed connection is kept from other workers; a worker that dies leaves its
# claims to be taken again after this.
CLAIM_LEASE = timedelta(minutes=2)


def claim_due(*, limit: int, now: datetime | None = None) -> list[int]:
    """Claim up to ``limit`` due connections for this worker, earliest first: one indexed
    range scan, locked with FOR UPDATE SKIP LOCKED (rows other workers are claiming are
    passed over) and leased by moving their due time CLAIM_LEASE ahead. The renewal of each
    stores its real next due time."""
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            due_for_refresh(now=now)
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Connection.objects.filter(pk__in=ids).update(renewal_due_at=now + CLAIM_LEASE)
    return ids


def renew_claimed(pk: int, *, actor: Actor = WORKER) -> tuple[Connection, Outcome] | None:
    """The worker's renewal of one claimed connection, under its row lock (SKIP LOCKED: a
    caller renewing it meanwhile stores the new due time itself). Whether it is due is
    decided again under the lock, from the stored state. None when it was skipped or not
    due after all."""
    claim = Connection.objects.filter(pk=pk).select_for_update(skip_locked=True, of=("self",))
    claimed = _claim_and_renew(claim, Request(Want.DUE, actor))
    if claimed is None or claimed[1].summary == NOT_DUE:
        return None
    return claimed


NOT_DUE = "not due"


# --- The locked step -------------------------------------------------------------------------


def _claim_and_renew(
    claim: QuerySet[Connection], request: Request
) -> tuple[Connection, Outcome] | None:
    """Lock the row ``claim`` selects, renew it in the same transaction, then tell people.

    PostgreSQL: SELECT ... FOR UPDATE makes every other caller wait here until this
    transaction commits, and the row they then read holds the token obtained here.
    SQLite ignores FOR UPDATE; the settings open every transaction with BEGIN IMMEDIATE,
    so the database write lock is already held when this read runs, with the same effect.

    The HTTP call to Kroger happens while the transaction (and the lock) is open. That is
    the accepted trade-off: it is what makes concurrent callers cause exactly one token
    request, and a rotated refresh token is never lost between the call and the save. The
    call is bounded by KROGER_TIMEOUT_SECONDS; waiters give up after twice that, rather
    than hang behind a holder that is stuck.
    """
    with transaction.atomic():
        db = connections[claim.db]
        if db.vendor == "postgresql":
            with db.cursor() as cursor:  # for this transaction only
                wait = f"{2 * int(settings.KROGER_TIMEOUT_SECONDS)}s"
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [wait])
        connection = claim.select_related("client").first()
        if connection is None:
            return None
        outcome = _renew_locked(connection, request)
        due = renewal_policy.renewal_due(connection)
        if connection.renewal_due_at != due:  # e.g. the lease of a worker's claim
            Connection.objects.filter(pk=connection.pk).update(renewal_due_at=due)
            connection.renewal_due_at = due
        webhooks.announce(connection, outcome)  # in the change's transaction: the outbox
    notifications.announce(connection, outcome)
    return connection, outcome


def _renew_locked(connection: Connection, request: Request) -> Outcome:
    now = timezone.now()
    try:
        return _renew_readable(connection, request, now)
    except DecryptionError:
        return _secrets_unreadable(connection, now=now, actor=request.actor)


def _renew_readable(connection: Connection, request: Request, now: datetime) -> Outcome:
    if connection.status == ConnectionStatus.NOT_AUTHORIZED or not connection.is_authorized:
        return Outcome("not authorized", error=_not_authorized())
    if connection.needs_reauthorization:
        return Outcome("needs reauthorization", error=_needs_reauthorization())
    usable = connection.usable_token(now)
    backing_off = connection.next_refresh_at is not None and connection.next_refresh_at > now
    if request.want is Want.USABLE:
        margin = renewal_policy.refresh_margin(connection)
        if usable is not None and connection.token_valid_for(now) > margin:
            return Outcome("refreshed by another caller", token=usable)
        if backing_off:
            return _backing_off(connection, now)
    elif request.want is Want.DUE:
        due = renewal_policy.renewal_due(connection)
        if due is None or due > now:
            return Outcome(NOT_DUE, token=usable)
        if backing_off:  # due because a warm token lapsed while backing off
            return _backing_off(connection, now)
    elif (
        request.asked_at is not None
        and connection.last_refreshed_at is not None
        and connection.last_refreshed_at >= request.asked_at
    ):
        return Outcome("refreshed by another caller", token=usable)
    elif request.asked_at is not None and _failed_since(connection, request.asked_at):
        # Another caller's renewal failed while this one waited: its outcome is this one's,
        # rather than one more attempt each, one after another, behind the lock.
        return _backing_off(connection, now)
    try:
        response = _request_token(connection)
    except kroger.KrogerError as exc:
        return _refresh_failed(
            connection, exc, now=now, actor=request.actor, background=request.want is Want.DUE
        )
    return _refresh_succeeded(connection, response, now=now, actor=request.actor)


def _failed_since(connection: Connection, moment: datetime) -> bool:
    """A renewal failed at or after ``moment``: the failure policy set the next try at the
    failure's time plus ``refresh_backoff``."""
    if connection.next_refresh_at is None or connection.refresh_failures < 1:
        return False
    failed_at = connection.next_refresh_at - refresh_backoff(connection.refresh_failures)
    return failed_at >= moment


def _backing_off(connection: Connection, now: datetime) -> Outcome:
    """A failed refresh is backing off: Kroger is not called (every caller meanwhile would
    otherwise wait for its own timeout, one after another, behind the lock). The token it
    could not renew may expire meanwhile: the connection is then Offline, and people are
    told once, as when a refresh fails with no token left."""
    notice = Notice.NONE
    if connection.status == ConnectionStatus.ONLINE and connection.token_valid_for(
        now
    ) <= timedelta(0):
        told_already = connection.failure_notified
        connection.set_state(
            status=ConnectionStatus.OFFLINE,
            status_reason=f"{KROGER_UNREACHABLE}: the last refresh failed and the access token "
            "has expired; the portal will try again.",
            failure_notified=True,
        )
        logger.warning(
            "Connection %s: token expired while backing off, now offline", connection.code
        )
        notice = Notice.NONE if told_already else Notice.FAILURE
    assert connection.next_refresh_at is not None
    reason = connection.status_reason or f"{KROGER_UNREACHABLE}: the last refresh failed."
    code = "secrets_unreadable" if reason.startswith(SECRETS_UNREADABLE) else "kroger_unavailable"
    error = TokenUnavailable(
        code, f"{reason} Next try at {connection.next_refresh_at:%H:%M:%S} UTC."
    )
    return Outcome(
        "backing off" + (", token expired: offline" if notice is Notice.FAILURE else ""),
        token=connection.usable_token(now),
        error=error,
        notice=notice,
        notice_detail=connection.status_reason,
    )


@sensitive_variables()  # its locals and the frames below it hold the client secret
def _request_token(connection: Connection) -> kroger.TokenResponse:
    client = connection.client
    if client.grant_type == GrantType.CLIENT_CREDENTIALS:
        return kroger.client_credentials(
            environment=connection.environment,
            client_id=client.client_id,
            client_secret=client.client_secret,
            scopes=connection.scope_names(),
        )
    if not connection.refresh_token:
        raise kroger.KrogerError(
            "invalid_grant",
            "No refresh token is stored for this connection. Authorize it again.",
            grant=kroger.REFRESH,
        )
    return kroger.refresh_token(
        environment=connection.environment,
        client_id=client.client_id,
        client_secret=client.client_secret,
        refresh_token=connection.refresh_token,
    )


def _refresh_succeeded(
    connection: Connection, response: kroger.TokenResponse, *, now: datetime, actor: Actor
) -> Outcome:
    distrust = response.distrusted or _arrived_expired(response, now)
    if distrust:
        return _refresh_distrusted(connection, response, distrust, now=now, actor=actor)
    recovered = connection.failure_notified
    rotated = bool(response.refresh_token)
    try:
        # A savepoint: if the save fails, the transaction stays usable to record that.
        with transaction.atomic():
            # When the answer came: a renewal that waited for this one uses it.
            connection.last_refreshed_at = timezone.now()
            connection.failure_notified = False
            connection.store_tokens(
                access_token=response.access_token,
                expires_in=response.expires_in,
                refresh_token=response.refresh_token,
                granted_scopes=response.scope,
                now=now,
            )
            actor.record(
                AuditAction.REFRESHED,
                connection,
                f"New access token valid for {response.expires_in // 60} minutes"
                + ("; the refresh token was rotated" if rotated else ""),
            )
    except Exception as exc:
        # Any failure, not only the database's: Kroger has already rotated the refresh token.
        return _save_failed(connection, exc, response=response, actor=actor)
    token = connection.current_token()
    assert token is not None and connection.token_expires_at is not None
    return Outcome(
        f"refreshed, valid until {connection.token_expires_at:%H:%M:%S} UTC",
        token=token,
        notice=Notice.RECOVERY if recovered else Notice.NONE,
    )


# A new access token is of use only if it still has this long to live when it arrives.
MINIMUM_VALIDITY = timedelta(seconds=5)


def _arrived_expired(response: kroger.TokenResponse, asked_at: datetime) -> str:
    """Why the answer's access token is of no use although well-formed: Kroger took (nearly)
    as long to answer as the token lasts. Empty when it is of use."""
    left = asked_at + timedelta(seconds=response.expires_in) - timezone.now()
    if left >= MINIMUM_VALIDITY:
        return ""
    seconds = max(int(left.total_seconds()), 0)
    return f"Kroger's new access token was valid for only {seconds} seconds when it arrived"


def _refresh_distrusted(
    connection: Connection,
    response: kroger.TokenResponse,
    what: str,
    *,
    now: datetime,
    actor: Actor,
) -> Outcome:
    """An answer of which only the refresh token can be used (see ``kroger._token_response``
    and ``_arrived_expired``). Kroger has rotated it, so it is kept (the stored one is dead
    now) and nothing else; the stored access token stays usable while it lasts. Then the
    failure policy, as for any answer that could not be used."""
    if response.refresh_token:
        try:
            with transaction.atomic():
                connection.keep_refresh_token(response.refresh_token)
        except Exception as exc:
            return _save_failed(connection, exc, response=response, actor=actor)
        what += ". The portal kept the new refresh token and uses it at the next try"
    error = kroger.KrogerError("garbage", f"{what}.", status=200, grant=kroger.REFRESH)
    return _refresh_failed(connection, error, now=now, actor=actor)


def _secrets_unreadable(connection: Connection, *, now: datetime, actor: Actor) -> Outcome:
    """ENCRYPTION_KEYS cannot decrypt the connection's tokens or its client's secret: no call
    to Kroger can be made. Offline with that reason, backing off like any failure (the
    worker does not retry every pass), and people are told once. Nothing is written but the
    status: the unreadable values stay for the right keys to read."""
    failures = connection.refresh_failures + 1
    retry_at = now + refresh_backoff(failures)
    notice = Notice.NONE if connection.failure_notified else Notice.FAILURE
    reason = (
        f"{SECRETS_UNREADABLE}: ENCRYPTION_KEYS cannot decrypt this connection's tokens or "
        "its OAuth 2.0 client's secret. Restore the keys, or enter the client secret again "
        "and reauthorize."
    )
    connection.set_state(
        status=ConnectionStatus.OFFLINE,
        status_reason=reason[:255],
        refresh_failures=failures,
        next_refresh_at=retry_at,
        failure_notified=True,
    )
    actor.record(
        AuditAction.REFRESH_FAILED, connection, f"{reason} Next try at {retry_at:%H:%M:%S} UTC."
    )
    logger.error(
        "Connection %s: its stored secrets cannot be decrypted with ENCRYPTION_KEYS",
        connection.code,
    )
    return Outcome(
        "secrets unreadable (ENCRYPTION_KEYS), offline",
        error=TokenUnavailable("secrets_unreadable", reason),
        notice=notice,
        notice_detail=reason,
    )


def _save_failed(
    connection: Connection, exc: Exception, *, response: kroger.TokenResponse, actor: Actor
) -> Outcome:
    # Only the exception's class: database messages can quote the values being written.
    logger.error(
        "Could not save the token Kroger issued for connection %s: %s",
        connection.code,
        type(exc).__name__,
    )
    connection.refresh_from_db()  # drop the unsaved values; the row still holds the old ones
    rotated = bool(response.refresh_token)
    if rotated and connection.grant_type == GrantType.AUTHORIZATION_CODE:
        # Kroger has already invalidated the stored refresh token: keep the new one alone.
        try:
            with transaction.atomic():
                connection.keep_refresh_token(str(response.refresh_token))
        except Exception as again:
            logger.error(
                "Could not save even the new refresh token of connection %s: %s",
                connection.code,
                type(again).__name__,
            )
            connection.refresh_from_db()
            error = kroger.KrogerError(
                "invalid_grant",
                "Kroger issued a new refresh token but the portal could not save it, so the "
                "stored one no longer works. Authorize the connection again.",
                grant=kroger.REFRESH,
            )
        else:
            error = kroger.KrogerError(
                "server",
                "The portal could not save the new access token; it kept the new refresh token.",
                grant=kroger.REFRESH,
            )
    else:
        error = kroger.KrogerError(
            "server", "The portal could not save the new access token.", grant=kroger.REFRESH
        )
    return _refresh_failed(connection, error, now=timezone.now(), actor=actor)


def _refresh_failed(
    connection: Connection,
    exc: kroger.KrogerError,
    *,
    now: datetime,
    actor: Actor,
    background: bool = False,
) -> Outcome:
    """The failure policy. Stored tokens are kept: a failure never wipes them.

    A dead grant needs a person, so the worker stops trying and people are told. Anything
    else is retried with a growing backoff; while the stored token is still usable the
    connection stays Online, and once nothing usable is left it is Offline and people are
    told once. Except when Kroger was only unreachable for the ``background`` (worker)
    renewal of an idle connection: nobody is waiting for its token and its grant is
    presumably alive, so it stays as it was while the worker retries (the first caller is
    told if it still fails).
    """
    failures = connection.refresh_failures + 1
    status_before = connection.status
    http = f" (HTTP {exc.status})" if exc.status else ""
    why = f"{exc.kind}{http}: {exc.message}"
    notice = Notice.NONE
    if exc.grant_dead:
        connection.set_state(
            status=ConnectionStatus.OFFLINE,
            status_reason=NEEDS_REAUTHORIZATION,
            refresh_failures=failures,
            next_refresh_at=None,
            failure_notified=True,
        )
        code, notice = "needs_reauthorization", Notice.FAILURE
    else:
        retry_at = now + refresh_backoff(failures)
        prefix = KROGER_UNREACHABLE if exc.transient else "Kroger refused the refresh"
        fields: dict[str, Any] = {"refresh_failures": failures, "next_refresh_at": retry_at}
        idle_renewal = exc.transient and background and not renewal_policy.is_warm(connection, now)
        if connection.usable_token(now) is None and not idle_renewal:
            # Nothing usable left (expired, or Offline: refused by Kroger): say so, and
            # tell people once.
            fields["status"] = ConnectionStatus.OFFLINE
            fields["status_reason"] = f"{prefix}: {exc.message}"[:255]
            if not connection.failure_notified:
                fields["failure_notified"] = True
                notice = Notice.FAILURE
        connection.set_state(**fields)
        why += f" Next try at {retry_at:%H:%M:%S} UTC."
        code = "kroger_unavailable"
    actor.record(AuditAction.REFRESH_FAILED, connection, why)
    logger.warning(
        "Refresh of connection %s failed: kind=%s status=%s (was %s, now %s)",
        connection.code,
        exc.kind,
        exc.status,
        status_before,
        connection.status,
    )
    reason = f"{NEEDS_REAUTHORIZATION}: {exc.message}" if exc.grant_dead else exc.message
    return Outcome(
        f"refresh failed ({exc.kind}{http}), {connection.get_status_display().lower()}",
        token=connection.usable_token(now),
        error=TokenUnavailable(code, reason),
        notice=notice,
        notice_detail=exc.message,
    )


# --- Authorizing, disconnecting ---------------------------------------------------------------


def authorize_client_credentials(connection: Connection, *, actor: Actor) -> Connection:
    """A client-credentials connection is authorized by its first token: no consent page.
    Raises kroger.KrogerError when Kroger refuses."""
    return authorize_with(connection, _request_token(connection), actor=actor)


def authorize_with(
    connection: Connection, response: kroger.TokenResponse, *, actor: Actor
) -> Connection:
    """Keep the tokens of a new consent (or a first client-credentials token); returns the
    connection as stored.

    Under the row lock, so that a refresh in flight cannot overwrite them afterwards.
    Kroger need not return ``scope``: then the scopes requested are the ones granted.
    People who were told of a failure are told now that it works again.
    """
    distrust = response.distrusted or (
        _arrived_expired(response, timezone.now()) if response.refresh_token else ""
    )
    if distrust:
        return _authorize_distrusted(connection, response, distrust, actor=actor)
    with transaction.atomic():
        locked = Connection.objects.select_for_update(of=("self",)).get(pk=connection.pk)
        now = timezone.now()
        recovered = locked.failure_notified
        locked.failure_notified = False
        locked.authorized_at = now
        locked.store_tokens(
            access_token=response.access_token,
            expires_in=response.expires_in,
            refresh_token=response.refresh_token,
            granted_scopes=connection.scope_string() if response.scope is None else response.scope,
            now=now,
        )
        actor.record(
            AuditAction.AUTHORIZED,
            locked,
            f"{locked.get_environment_display()}, scopes granted: "
            f"{locked.granted_scopes or 'none'}",
        )
        webhooks.announce_authorized(locked, recovered=recovered)
    notifications.announce(
        locked,
        Outcome("authorized", notice=Notice.RECOVERY if recovered else Notice.NONE),
    )
    return locked


def _authorize_distrusted(
    connection: Connection, response: kroger.TokenResponse, what: str, *, actor: Actor
) -> Connection:
    """A consent whose answer carried a well-formed refresh token and nothing else usable:
    the code is spent, so that refresh token is the grant. It is kept with no access token,
    Offline saying why; the next request (or the worker's next pass) gets an access token
    with it."""
    assert response.refresh_token
    reason = (
        f"{what}. The portal kept the new refresh token "
        "and gets an access token with it at the next request."
    )
    with transaction.atomic():
        locked = Connection.objects.select_for_update(of=("self",)).get(pk=connection.pk)
        now = timezone.now()
        locked.authorized_at = now
        locked.store_refresh_token_only(response.refresh_token, reason, now)
        actor.record(AuditAction.AUTHORIZED, locked, reason)
    return locked


def disconnect(connection: Connection, *, actor: Actor) -> Connection:
    """Forget the stored tokens. Kroger has no revocation endpoint: the grant stays valid
    at Kroger until it expires or the shopper removes it. Under the row lock, so that a
    refresh in flight cannot store a token after this."""
    with transaction.atomic():
        locked = Connection.objects.select_for_update(of=("self",)).get(pk=connection.pk)
        locked.forget_tokens()
        actor.record(
            AuditAction.DISCONNECTED,
            locked,
            "Stored tokens forgotten (Kroger has no revocation endpoint).",
        )
    return locked


# --- Testing -----------------------------------------------------------------------------------


def connection_test_endpoint(connection: Connection) -> str:
    """The one API call "Test connection" makes, chosen from the scopes and environment."""
    scopes = set(connection.granted_scopes.split()) or set(connection.scope_names())
    if (
        connection.grant_type == GrantType.AUTHORIZATION_CODE
        and "profile.compact" in scopes
        and connection.environment == Environment.PRODUCTION
    ):
        return "identity/profile"
    if connection.grant_type == GrantType.CLIENT_CREDENTIALS or "product.compact" not in scopes:
        return "locations"
    return "products"


def run_connection_test(connection: Connection, *, actor: Actor) -> ConnectionTest:
    """One real API call with the connection's token; updates the status to match.

    Kroger forbids storing the shopper's profile ID: it is neither kept nor shown.
    """
    endpoint = connection_test_endpoint(connection)
    try:
        connection, token = _obtain(connection, Actor(label=actor.label or "connection test"))
        result = _call_test_endpoint(connection, endpoint, token.access_token)
    except TokenUnavailable as exc:
        result = ConnectionTest(False, endpoint, exc.reason)
    except kroger.KrogerError as exc:
        result = ConnectionTest(False, endpoint, exc.message)
        if not exc.transient and not connection.needs_reauthorization:
            connection.set_state(
                status=ConnectionStatus.OFFLINE,
                status_reason=f"Test failed: {exc.message}"[:255],
            )
    else:
        if connection.status == ConnectionStatus.OFFLINE and not connection.needs_reauthorization:
            connection.set_state(status=ConnectionStatus.ONLINE, status_reason="")
    actor.record(
        AuditAction.TESTED,
        connection,
        f"{endpoint}: {'ok' if result.ok else 'failed'}. {result.message}",
    )
    return result


def _call_test_endpoint(connection: Connection, endpoint: str, access_token: str) -> ConnectionTest:
    """The test's call, counted against the client's daily budget like every call to Kroger."""
    api = api_for_path(endpoint)
    counted_at = timezone.now()
    refusal = budgets.spend(connection.client, api, now=counted_at)
    if refusal is not None:  # transient: the connection itself is fine
        raise kroger.KrogerError("rate_limited", refusal.message)
    try:
        return _test_call(connection, endpoint, access_token)
    except kroger.KrogerError as exc:
        if exc.status == 429:
            budgets.kroger_said_spent(connection.client, api, None)
        elif not exc.sent:
            budgets.refund(connection.client, api, None, counted_at)  # it never left
        raise


def _test_call(connection: Connection, endpoint: str, access_token: str) -> ConnectionTest:
    environment = connection.environment
    if endpoint == "identity/profile":
        kroger.get_profile(environment=environment, access_token=access_token)
        return ConnectionTest(True, endpoint, "Kroger answered: the token belongs to a shopper.")
    if endpoint == "locations":
        body = kroger.get_locations(environment=environment, access_token=access_token)
        count = len(body.get("data") or [])
        return ConnectionTest(True, endpoint, f"Kroger answered: {count} stores near 45202.")
    body = kroger.get_products(environment=environment, access_token=access_token)
    count = len(body.get("data") or [])
    return ConnectionTest(True, endpoint, f"Kroger answered: {count} products for “milk”.")
