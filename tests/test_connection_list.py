"""The Connections list: what each row shows, who sees which buttons, pages; search, filters,
order and the summary of what needs attention, kept in the URL; a constant query count."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from connections_app.models import (
    NEEDS_REAUTHORIZATION,
    Connection,
    Environment,
    GrantType,
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
    assert "<span>Page 1</span>" in first
    assert 'href="?page=2">Next</a>' in first and "Previous" not in first
    second = client.get("/?page=2").content.decode()
    assert names(second) == [f"Connection {number:03}" for number in range(25, 30)]
    assert 'href="?page=1">Previous</a>' in second and "Next" not in second


def test_a_full_last_page_has_no_next_link(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    make_connections(oauth_client, 50)
    client.force_login(owner)
    second = client.get("/?page=2").content.decode()
    assert names(second)[-1] == "Connection 049"
    assert "Next" not in second


@pytest.mark.parametrize("asked", ["0", "-1", "two", "²", "9999999999"])
def test_a_page_number_that_is_not_one_shows_the_first_page(
    client: Any, owner: Any, oauth_client: OAuthClient, asked: str
) -> None:
    make_connections(oauth_client, 30)
    client.force_login(owner)
    page = client.get(f"/?page={asked}").content.decode()
    assert names(page)[0] == "Connection 000"
    assert "<span>Page 1</span>" in page


def test_a_page_past_the_end_says_so_and_links_to_the_first(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    make_connections(oauth_client, 30)
    client.force_login(owner)
    page = client.get("/?status=not_authorized&page=5").content.decode()
    assert names(page) == []
    first = '<a href="?status=not_authorized">Go to the first page</a>'
    assert f"No connections on page 5. {first}" in page
    assert "No connections yet." not in page


def test_the_list_never_counts_every_connection(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    # A count of the whole list ("Page 1 of 4,000") reads every row at every view; only the
    # summary counts, and only what needs attention.
    make_connections(oauth_client, 30)
    client.force_login(owner)
    for url in ("/", "/?q=Connection", "/?environment=production", "/?page=2"):
        with CaptureQueriesContext(db_connection) as queries:
            client.get(url)
        counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
        assert len(counts) == 1, (url, counts)
        assert '"attention" < 3' in counts[0]


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


def names(page: str) -> list[str]:
    return re.findall(r'<a href="/connections/[0-9a-f-]+/">([^<]+)</a>', page)


@pytest.fixture
def states(oauth_client: OAuthClient, owner: Any) -> dict[str, Connection]:
    """One connection in each state the list tells apart, named so that name order differs
    from attention order, and one on a client of the other environment."""
    made = {}
    for name in ("Alpha online", "Bravo never authorized", "Charlie offline", "Delta dead"):
        made[name] = Connection.objects.create(
            name=name, environment=oauth_client.environment, client=oauth_client
        )
    for name in ("Alpha online", "Charlie offline", "Delta dead"):
        made[name].store_tokens(access_token="a", refresh_token="r", expires_in=1800)
    make_offline(made["Charlie offline"], "Kroger unreachable: timeout")
    make_offline(made["Delta dead"], NEEDS_REAUTHORIZATION)
    other = OAuthClient.objects.create(
        name="Catalogue app",
        environment=Environment.CERTIFICATION,
        grant_type=GrantType.CLIENT_CREDENTIALS,
        client_id="catalogue-1",
        client_secret="secret-1",
    )
    made["Echo certification"] = Connection.objects.create(
        name="Echo certification", environment=Environment.CERTIFICATION, client=other
    )
    return made


def test_it_searches_by_name(client: Any, teammate: Any, states: dict[str, Connection]) -> None:
    client.force_login(teammate)
    page = client.get("/?q=ALPHA").content.decode()
    assert names(page) == ["Alpha online"]
    assert 'value="ALPHA"' in page  # the search stays in its box


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("online", ["Alpha online"]),
        ("offline", ["Charlie offline"]),
        ("needs_reauthorization", ["Delta dead"]),
        ("not_authorized", ["Bravo never authorized", "Echo certification"]),
    ],
)
def test_it_filters_by_status(
    client: Any, teammate: Any, states: dict[str, Connection], status: str, expected: list[str]
) -> None:
    client.force_login(teammate)
    assert names(client.get(f"/?status={status}").content.decode()) == expected


def test_it_filters_by_environment_and_client(
    client: Any, teammate: Any, states: dict[str, Connection], oauth_client: OAuthClient
) -> None:
    client.force_login(teammate)
    page = client.get("/?environment=certification").content.decode()
    assert names(page) == ["Echo certification"]
    page = client.get(f"/?client={oauth_client.code}&environment=production").content.decode()
    assert names(page) == [
        "Alpha online",
        "Bravo never authorized",
        "Charlie offline",
        "Delta dead",
    ]
    assert f'<option value="{oauth_client.code}" selected>' in page


def test_it_puts_what_needs_attention_first(
    client: Any, teammate: Any, states: dict[str, Connection]
) -> None:
    client.force_login(teammate)
    page = client.get("/?sort=attention").content.decode()
    assert names(page) == [
        "Delta dead",
        "Charlie offline",
        "Bravo never authorized",
        "Echo certification",
        "Alpha online",
    ]


def test_the_summary_counts_what_needs_attention_and_links_to_it(
    client: Any, teammate: Any, states: dict[str, Connection]
) -> None:
    client.force_login(teammate)
    page = client.get("/").content.decode()
    assert '<a href="?status=needs_reauthorization">1 connection needs reauthorization</a>' in page
    assert '<a href="?status=offline">1 connection is offline</a>' in page
    assert '<a href="?status=not_authorized">2 connections are not authorized</a>' in page


def test_no_summary_when_all_is_well(client: Any, teammate: Any, connection: Connection) -> None:
    connection.store_tokens(access_token="a", refresh_token="r", expires_in=1800)
    client.force_login(teammate)
    assert "attention-summary" not in client.get("/").content.decode()


def test_pages_keep_the_filters(client: Any, owner: Any, oauth_client: OAuthClient) -> None:
    make_connections(oauth_client, 30)
    client.force_login(owner)
    page = client.get("/?q=Connection&sort=attention").content.decode()
    assert 'href="?q=Connection&amp;sort=attention&amp;page=2">Next</a>' in page
    second = client.get("/?q=Connection&sort=attention&page=2").content.decode()
    assert names(second) == [f"Connection {number:03}" for number in range(25, 30)]


def test_a_filter_that_matches_nothing_says_so(
    client: Any, teammate: Any, states: dict[str, Connection]
) -> None:
    client.force_login(teammate)
    page = client.get("/?q=zulu").content.decode()
    assert names(page) == []
    assert "No connections match." in page
    assert "No connections yet." not in page


def test_an_unknown_filter_value_is_named_and_ignored(
    client: Any, teammate: Any, states: dict[str, Connection]
) -> None:
    client.force_login(teammate)
    response = client.get("/?status=sleeping&environment=certification")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Select a valid choice. sleeping is not one of the available choices." in page
    assert names(page) == ["Echo certification"]  # the valid filter still applies


LIST_URLS = [
    "/",
    "/?q=Connection",
    "/?status=online",
    "/?status=offline",
    "/?status=needs_reauthorization",
    "/?status=not_authorized",
    "/?environment=production",
    "/?sort=attention",
    "/?page=2",
]


def make_mix(client: OAuthClient, count: int, start: int = 0) -> None:
    """Connections in every state, in turn: Online, Offline, needing reauthorization, never
    authorized."""
    make_connections(client, count, start)
    wanted = [f"Connection {number:03}" for number in range(start, start + count)]
    for number, made in enumerate(Connection.objects.filter(name__in=wanted).order_by("name")):
        if number % 4 != 3:
            made.store_tokens(access_token="a", refresh_token="r", expires_in=1800)
        if number % 4 == 1:
            make_offline(made, "Kroger unreachable: timeout")
        if number % 4 == 2:
            make_offline(made, NEEDS_REAUTHORIZATION)


@pytest.mark.parametrize("url", [*LIST_URLS, "client"])
def test_the_number_of_queries_does_not_grow_with_the_connections_whatever_the_filter(
    client: Any,
    owner: Any,
    oauth_client: OAuthClient,
    django_assert_num_queries: Any,
    url: str,
) -> None:
    if url == "client":
        url = f"/?client={oauth_client.code}"
    make_mix(oauth_client, 4 if url != "/?page=2" else 28)
    client.force_login(owner)
    client.get("/")  # warm the session and permission caches alike for both counts
    with CaptureQueriesContext(db_connection) as few:
        assert client.get(url).status_code == 200
    make_mix(oauth_client, 200, start=100)
    with django_assert_num_queries(len(few.captured_queries)):
        assert client.get(url).status_code == 200
