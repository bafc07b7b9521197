"""Connections in the states the token-lifecycle tests start from: authorized at the fake
Kroger, expired, Offline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from connections_app.models import (
    Connection,
    ConnectionStatus,
    Environment,
    GrantType,
    OAuthClient,
    Scope,
)
from tests.fakes.fake_kroger import FakeKroger

ALL_SCOPES = {"product.compact", "cart.basic:write", "profile.compact"}


def authorize(
    connection: Connection,
    fake: FakeKroger,
    *,
    valid_for: timedelta = timedelta(minutes=30),
    warm: bool = False,
) -> Connection:
    """Give the connection real tokens from the fake, as if consent had just happened;
    ``valid_for`` sets how long the portal believes its access token lasts (negative: expired).
    A ``warm`` connection had a token handed out a minute ago (the worker keeps it fresh)."""
    client = connection.client
    fake.register_client(client.client_id, client.client_secret, ALL_SCOPES)
    scopes = sorted(scope.name for scope in connection.scopes.all())
    access, refresh = fake.issue_tokens(client.client_id, scopes)
    if client.grant_type == GrantType.CLIENT_CREDENTIALS:
        refresh = ""
    connection.store_tokens(
        access_token=access, expires_in=1800, refresh_token=refresh, granted_scopes=" ".join(scopes)
    )
    connection.authorized_at = timezone.now() - timedelta(hours=1)
    connection.token_expires_at = timezone.now() + valid_for
    if warm:
        connection.handed_out_at = timezone.now() - timedelta(minutes=1)
    connection.save()
    return connection


def cc_connection(cc_client: OAuthClient, owner: Any, name: str = "Catalogue") -> Connection:
    connection = Connection.objects.create(
        name=name, environment=Environment.CERTIFICATION, client=cc_client, created_by=owner
    )
    connection.scopes.set(Scope.objects.filter(name="product.compact"))
    return connection


def expire(connection: Connection) -> Connection:
    connection.token_expires_at = timezone.now() - timedelta(minutes=1)
    connection.save()
    return connection


def reloaded(connection: Connection) -> Connection:
    return Connection.objects.select_related("client").get(pk=connection.pk)


def make_offline(connection: Connection, reason: str) -> None:
    """Put the connection Offline with ``reason``, as a failed refresh or test would."""
    connection.set_state(status=ConnectionStatus.OFFLINE, status_reason=reason[:255])
