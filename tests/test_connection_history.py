"""The History section of the connection page: the audit trail, bounded, in few queries."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from connections_app import lifecycle
from connections_app.lifecycle import Actor
from connections_app.models import AuditAction, AuditEvent, Connection, TokenUnavailable
from tests.connection_states import authorize, expire
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def history_of(client: Any, connection: Connection) -> str:
    page = client.get(f"/connections/{connection.code}/").content.decode()
    return str(page.split('id="history-title"', 1)[1])


def test_it_lists_what_happened_and_who_did_it(
    client: Any, owner: Any, teammate: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    AuditEvent.record(AuditAction.AUTHORIZED, actor=owner, connection=connection)
    expire(authorize(connection, fake_kroger))
    lifecycle.get_access_token(connection, actor=Actor(label="worker"))
    lifecycle.run_connection_test(connection, actor=Actor(owner))
    AuditEvent.record(AuditAction.CONNECTION_CHANGED, actor=owner, connection=connection)
    lifecycle.disconnect(connection, actor=Actor(owner))
    client.force_login(teammate)

    page = history_of(client, connection)

    for label in ["Authorized", "Token refreshed", "Connection tested", "Connection edited"]:
        assert label in page
    assert "Disconnected" in page and "worker" in page and "owner" in page
    assert page.index("Disconnected") < page.index("Authorized")  # newest first


def test_a_failed_refresh_says_why(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    expire(authorize(connection, fake_kroger))
    fake_kroger.fail_token("invalid_grant")
    with pytest.raises(TokenUnavailable):
        lifecycle.get_access_token(connection)
    client.force_login(owner)
    page = history_of(client, connection)
    assert "Refresh failed" in page and "invalid_grant (HTTP 400)" in page


def test_it_shows_the_latest_fifty_in_constant_queries(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    AuditEvent.record(AuditAction.CONNECTION_CHANGED, actor=owner, connection=connection)
    with CaptureQueriesContext(db_connection) as few:
        history_of(client, connection)
    for number in range(60):
        AuditEvent.record(
            AuditAction.TESTED, actor=owner, connection=connection, detail=f"test {number}"
        )
    with CaptureQueriesContext(db_connection) as many:
        page = history_of(client, connection)
    assert len(many) == len(few)
    assert page.count("Connection tested") == 50
    assert "test 59<" in page and "test 10<" in page and "test 9<" not in page
