"""When a connection's access token is renewed (see README "The worker").

On demand: a token is handed out as it is while it stays valid for ``refresh_margin``, else
it is renewed first. In the background, by the keep-alive policy: a connection is warm while
a token was handed out within KEEP_WARM_SECONDS, and its access token is renewed
``renew_ahead`` of its expiry, so its callers never wait for Kroger. An idle
authorization-code grant is renewed KEEP_ALIVE_HOURS after its last renewal (Kroger's refresh
tokens live about six months); an idle client-credentials connection has no grant to keep
and is never renewed in the background.

Only reads: ``renewal_due`` is what ``Connection.save()`` stores as ``renewal_due_at`` with
every write of the ``INPUTS`` it depends on, and what the worker's indexed pass selects by.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from django.conf import settings
from django.utils import timezone

from connections_app.choices import ConnectionStatus, GrantType

# How long a handed-out token must stay valid; below this it is refreshed first.
TOKEN_SAFETY_MARGIN = timedelta(minutes=2)
# How long before it expires the worker renews a warm connection's token.
RENEW_AHEAD = timedelta(minutes=5)

# The stored fields renewal_due() reads: a write of any of them moves the due time.
INPUTS = frozenset(
    {
        "status",
        "status_reason",
        "access_token",
        "token_expires_at",
        "handed_out_at",
        "last_refreshed_at",
        "authorized_at",
        "next_refresh_at",
        "client",
    }
)


class Renewable(Protocol):
    """What the policy reads of a connection (``Connection`` is one)."""

    @property
    def status(self) -> str: ...
    @property
    def token_expires_at(self) -> datetime | None: ...
    @property
    def handed_out_at(self) -> datetime | None: ...
    @property
    def authorized_at(self) -> datetime | None: ...
    @property
    def last_refreshed_at(self) -> datetime | None: ...
    @property
    def next_refresh_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def grant_type(self) -> str: ...
    @property
    def is_authorized(self) -> bool: ...
    @property
    def needs_reauthorization(self) -> bool: ...


def keep_warm() -> timedelta:
    return timedelta(seconds=settings.KEEP_WARM_SECONDS)


def keep_alive() -> timedelta:
    return timedelta(hours=settings.KEEP_ALIVE_HOURS)


def _obtained_at(connection: Renewable) -> datetime | None:
    """When the stored access token was issued: the latest consent or refresh."""
    return max(filter(None, [connection.authorized_at, connection.last_refreshed_at]), default=None)


def refresh_margin(connection: Renewable) -> timedelta:
    """How long the stored token must still be valid to be handed out without a refresh:
    the safety margin, or half the token's lifetime when Kroger issues tokens that short
    (else every call would refresh, and get another token just as short)."""
    obtained = _obtained_at(connection)
    if obtained is None or connection.token_expires_at is None:
        return TOKEN_SAFETY_MARGIN
    # Never below zero: a token that expired as it arrived has no margin, not a negative one.
    lifetime = max(connection.token_expires_at - obtained, timedelta(0))
    return min(TOKEN_SAFETY_MARGIN, lifetime / 2)


def renew_ahead(connection: Renewable) -> timedelta:
    """How long before expiry a warm token is renewed: RENEW_AHEAD, or half the token's
    lifetime when Kroger issues tokens that short."""
    obtained = _obtained_at(connection)
    if obtained is None or connection.token_expires_at is None:
        return RENEW_AHEAD
    return min(RENEW_AHEAD, (connection.token_expires_at - obtained) / 2)


def is_warm(connection: Renewable, now: datetime | None = None) -> bool:
    return connection.handed_out_at is not None and connection.handed_out_at > (
        (now or timezone.now()) - keep_warm()
    )


def grant_renewed_at(connection: Renewable) -> datetime:
    """When the grant was last renewed: the latest refresh or consent."""
    return _obtained_at(connection) or connection.created_at or timezone.now()


def renewal_due(connection: Renewable) -> datetime | None:
    """When the worker should next look at this connection, by the keep-alive policy;
    None when it never should (nothing to renew, or only a person can help).

    While a failed renewal backs off, nothing is renewed before the backoff ends, except
    that a warm connection is looked at when its token expires: callers then have no
    token, so it is Offline and people are told (the renewal still waits)."""
    if (
        connection.status == ConnectionStatus.NOT_AUTHORIZED
        or not connection.is_authorized
        or connection.needs_reauthorization
    ):
        return None
    candidates: list[datetime] = []
    renew_warm_at: datetime | None = None
    expires_at = connection.token_expires_at
    if expires_at is not None and connection.handed_out_at is not None:
        renew_at = expires_at - renew_ahead(connection)
        if renew_at <= connection.handed_out_at + keep_warm():
            renew_warm_at = renew_at
            candidates.append(renew_at)
    if connection.grant_type == GrantType.AUTHORIZATION_CODE:
        candidates.append(grant_renewed_at(connection) + keep_alive())
    if not candidates:
        return None
    due = min(candidates)
    backoff_ends = connection.next_refresh_at
    if backoff_ends is not None and backoff_ends > due:
        due = backoff_ends
        if (
            renew_warm_at is not None
            and expires_at is not None
            and connection.status == ConnectionStatus.ONLINE
            and expires_at < due
        ):
            due = expires_at
    return due
