"""Deleting a connection: confirmation first, editors only, audited."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    OAuthClient,
)

pytestmark = pytest.mark.django_db

ACCESS_TOKEN = "access-token-Vb8Nc3Mx1Zq7"


def test_deleting_asks_for_confirmation_first(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    page = client.get(f"/connections/{connection.code}/delete/").content.decode()
    assert "Delete connection “Store cart”?" in page
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_an_editor_deletes_a_connection(client: Any, owner: Any, connection: Connection) -> None:
    client.force_login(owner)
    response = client.post(f"/connections/{connection.code}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert "Connection “Store cart” deleted." in response.content.decode()
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert OAuthClient.objects.filter(pk=connection.client_id).exists()
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_DELETED)
    assert (event.subject, event.actor) == ("Store cart", owner)


def test_a_viewer_cannot_delete(client: Any, teammate: Any, connection: Connection) -> None:
    client.force_login(teammate)
    assert client.get(f"/connections/{connection.code}/delete/").status_code == 403
    assert client.post(f"/connections/{connection.code}/delete/").status_code == 403
    assert Connection.objects.filter(pk=connection.pk).exists()
