"""The Connections list: what each row shows, who sees which buttons, pages, query count."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from connections_app.models import (
    Connection,
    OAuthClient,
    Scope,
)
from tests.connection_states import make_offline

pytestmark = pytest.mark.django_db

ACCESS_TOKEN = "access-token-Vb8Nc3Mx1Zq7"


def make_connections(client: OAuthClient, count: int, start: int = 0) -> None:
    scopes = list(Scope.objects.all())
    for number in range(start, start + count):
        made = Connection.objects.create(
            name=f"Connection {number:03}", environment=client.environment, client=client
        )
        made.scopes.set(scopes)


def test_the_list_shows_each_connection_with_its_status_and_token_expiry(
    client: Any, teammate: Any, connection: Connection
) -> None:
    connection.store_tokens(access_token=ACCESS_TOKEN, expires_in=1800)
    make_offline(connection, "Kroger refused the refresh token")
    client.force_login(teammate)
    page = client.get("/").content.decode()
    assert f'<a href="/connections/{connection.code}/">Store cart</a>' in page
    assert "Production" in page
    assert "Shopping app" in page
    assert "<code>cart.basic:write</code>, <code>product.compact</code>" in page
    assert "Offline" in page
    assert "Kroger refused the refresh token" in page
    assert f'datetime="{connection.token_expires_at:%Y-%m-%dT%H:%M:%S}' in page
    assert ACCESS_TOKEN not in page


def test_editors_see_the_create_connection_button(client: Any, owner: Any) -> None:
    client.force_login(owner)
    assert 'href="/connections/new/">Create connection</a>' in client.get("/").content.decode()


def test_viewers_do_not_see_the_create_connection_button(client: Any, teammate: Any) -> None:
    client.force_login(teammate)
    assert "Create connection" not in client.get("/").content.decode()


def test_the_list_is_paginated(client: Any, owner: Any, oauth_client: OAuthClient) -> None:
    make_connections(oauth_client, 30)
    client.force_login(owner)
    first = client.get("/").content.decode()
    assert "Connection 024" in first
    assert "Connection 025" not in first
    assert "Page 1 of 2" in first
    second = client.get("/?page=2").content.decode()
    assert "Connection 025" in second
    assert "Connection 029" in second


def test_the_number_of_queries_does_not_grow_with_the_connections(
    client: Any, owner: Any, oauth_client: OAuthClient, django_assert_num_queries: Any
) -> None:
    make_connections(oauth_client, 2)
    client.force_login(owner)
    client.get("/")  # warm the session and permission caches alike for both counts
    with CaptureQueriesContext(db_connection) as two:
        assert client.get("/").status_code == 200
    make_connections(oauth_client, 28, start=2)
    with django_assert_num_queries(len(two.captured_queries)):
        page = client.get("/").content.decode()
    assert page.count("<code>product.compact</code>") == 25
