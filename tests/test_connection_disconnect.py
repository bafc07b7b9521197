"""Disconnect: a confirmation that explains Kroger cannot revoke, then the tokens are gone."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app import lifecycle
from connections_app.models import AuditAction, AuditEvent, Connection, ConnectionStatus
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def url(connection: Connection) -> str:
    return f"/connections/{connection.code}/disconnect/"


def test_the_confirmation_says_kroger_has_no_revocation(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    client.force_login(owner)
    page = client.get(url(connection)).content.decode()
    assert "Kroger has no endpoint to revoke a grant" in page
    assert reloaded(connection).access_token == connection.access_token  # GET changes nothing


def test_disconnecting_forgets_the_tokens(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    client.force_login(owner)

    response = client.post(url(connection), follow=True)

    assert response.redirect_chain[-1][0] == f"/connections/{connection.code}/"
    assert "is disconnected" in response.content.decode()
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.NOT_AUTHORIZED
    assert stored.access_token == "" and stored.refresh_token == ""
    assert stored.token_expires_at is None
    assert AuditEvent.objects.get(action=AuditAction.DISCONNECTED).actor == owner
    assert fake_kroger.token_calls == []
    assert not lifecycle.due_for_refresh().exists()


@pytest.mark.parametrize(("who", "status"), [("teammate", 403), ("outsider", 404)])
@pytest.mark.parametrize("method", ["get", "post"])
def test_only_editors_may_disconnect(
    who: str,
    status: int,
    method: str,
    request: Any,
    client: Any,
    connection: Connection,
    fake_kroger: FakeKroger,
) -> None:
    authorize(connection, fake_kroger)
    client.force_login(request.getfixturevalue(who))
    assert getattr(client, method)(url(connection)).status_code == status
    assert reloaded(connection).access_token == connection.access_token
