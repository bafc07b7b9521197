"""What people change in the catalogue, from the pages and the admin alike.

Creating, editing and deleting an OAuth 2.0 client or a connection: each saved by the model's
rules and recorded in the audit trail by the labels of what changed (never a value), and the
deletion of a connection announced to webhooks in the same transaction. Token changes are the
lifecycle's; these are the settings people edit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction

from connections_app import webhooks
from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    OAuthClient,
    WebhookEvent,
)

# What people are told, on the pages and in the admin, when an edit forgets the tokens.
TOKENS_DISCARDED = (
    "The OAuth 2.0 client or environment changed, so the tokens issued for the old one were "
    "discarded. Authorize the connection again."
)


def changes_detail(labels: Iterable[str]) -> str:
    """An audit detail naming what an edit changed, by field label; "" when nothing did."""
    names = list(labels)
    return "Changed: " + ", ".join(names) if names else ""


# --- OAuth 2.0 clients ---------------------------------------------------------------------


def client_created(client: OAuthClient, actor: Any) -> None:
    AuditEvent.record(
        AuditAction.CLIENT_CREATED,
        actor=actor,
        client=client,
        detail=f"{client.get_environment_display()}, {client.get_grant_type_display()}",
    )


def client_changed(client: OAuthClient, actor: Any, labels: Iterable[str]) -> None:
    if detail := changes_detail(labels):
        AuditEvent.record(AuditAction.CLIENT_CHANGED, actor=actor, client=client, detail=detail)


def delete_client(client: OAuthClient, actor: Any) -> None:
    """Delete, with its audit event; raises ProtectedError while a connection uses it."""
    with transaction.atomic():
        AuditEvent.record(AuditAction.CLIENT_DELETED, actor=actor, client=client)
        client.delete()


# --- Connections ---------------------------------------------------------------------------


def connection_created(connection: Connection, actor: Any) -> None:
    """Record a new connection; after its scopes are saved, so that the event names them."""
    AuditEvent.record(
        AuditAction.CONNECTION_CREATED,
        actor=actor,
        connection=connection,
        detail=f"{connection.get_environment_display()}, scopes: {connection.scope_string()}",
    )


def save_connection_edit(
    connection: Connection, actor: Any, changed: Iterable[str], labels: Iterable[str]
) -> bool:
    """Save an edit of the ``changed`` settings (``Connection.save_settings``: never the
    tokens) and record it. Returns whether the stored tokens were discarded, which people
    are then told with TOKENS_DISCARDED. The caller saves the scopes."""
    discarded = connection.save_settings(changed)
    if detail := changes_detail(labels):
        if discarded:
            detail += "; stored tokens discarded"
        AuditEvent.record(
            AuditAction.CONNECTION_CHANGED, actor=actor, connection=connection, detail=detail
        )
    return discarded


def delete_connection(connection: Connection, actor: Any) -> None:
    """Delete, with its audit event and its webhook event: both only if it is deleted."""
    with transaction.atomic():
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_DELETED, connection)
        AuditEvent.record(AuditAction.CONNECTION_DELETED, actor=actor, connection=connection)
        connection.delete()
