"""Refresh token: a forced refresh through the same locked operation."""

from __future__ import annotations

import html
from typing import Any

import pytest

from connections_app.models import AuditAction, AuditEvent, Connection, ConnectionStatus
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def url(connection: Connection) -> str:
    return f"/connections/{connection.code}/refresh/"


def test_an_editor_gets_a_new_token_at_once(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)  # valid for 30 minutes: refreshed all the same
    client.force_login(owner)

    page = client.post(url(connection), follow=True).content.decode()

    assert "Token refreshed: the access token is valid until" in page
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    stored = reloaded(connection)
    assert stored.access_token != connection.access_token
    assert stored.refresh_token != connection.refresh_token
    assert stored.access_token not in page
    assert AuditEvent.objects.get(action=AuditAction.REFRESHED).actor == owner


def test_a_refused_refresh_is_reported(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    fake_kroger.fail_token("invalid_grant")
    client.force_login(owner)

    page = html.unescape(client.post(url(connection), follow=True).content.decode())

    assert "The token was not refreshed: Needs reauthorization" in page
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE and stored.needs_reauthorization
    assert stored.access_token == connection.access_token


def test_a_transient_failure_is_reported_and_the_token_kept(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    fake_kroger.fail_token("500")
    client.force_login(owner)
    page = client.post(url(connection), follow=True).content.decode()
    assert "The token was not refreshed: Kroger (Production) had a server error" in page
    assert reloaded(connection).status == ConnectionStatus.ONLINE  # its token still works


@pytest.mark.parametrize(("who", "status"), [("teammate", 403), ("outsider", 404)])
def test_only_editors_may_refresh(
    who: str,
    status: int,
    request: Any,
    client: Any,
    connection: Connection,
    fake_kroger: FakeKroger,
) -> None:
    authorize(connection, fake_kroger)
    client.force_login(request.getfixturevalue(who))
    assert client.post(url(connection)).status_code == status
    assert fake_kroger.token_calls == []


def test_it_only_answers_post(client: Any, owner: Any, connection: Connection) -> None:
    client.force_login(owner)
    assert client.get(url(connection)).status_code == 405
