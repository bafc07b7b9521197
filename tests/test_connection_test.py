"""Test connection: one real API call chosen from the scopes, its result, the status."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

import pytest

from connections_app.models import (
    NEEDS_REAUTHORIZATION,
    ApiBudget,
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    Environment,
    Scope,
)
from tests.connection_states import authorize, cc_connection, make_offline, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def url(connection: Connection) -> str:
    return f"/connections/{connection.code}/test/"


def with_scopes(connection: Connection, *names: str) -> Connection:
    connection.scopes.set(Scope.objects.filter(name__in=names))
    return connection


def test_a_shopper_token_in_production_is_tested_with_the_profile(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(with_scopes(connection, "profile.compact", "product.compact"), fake_kroger)
    client.force_login(owner)

    page = client.post(url(connection), follow=True).content.decode()

    assert fake_kroger.api_calls == ["identity/profile"]
    assert "Test connection (identity/profile): Kroger answered" in html.unescape(page)
    # Kroger forbids keeping the profile ID: it is neither shown nor stored.
    assert "9f3c1e52-profile" not in page
    event = AuditEvent.objects.get(action=AuditAction.TESTED)
    assert "9f3c1e52" not in event.detail and event.actor == owner
    assert "identity/profile: ok" in event.detail


def test_a_shopper_token_without_profile_is_tested_with_products(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)  # product.compact and cart.basic:write
    client.force_login(owner)
    page = html.unescape(client.post(url(connection), follow=True).content.decode())
    assert fake_kroger.api_calls == ["products"]
    assert "Kroger answered: 1 products for “milk”." in page


def test_profile_is_not_tried_in_certification(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    connection.environment = Environment.CERTIFICATION
    connection.save()
    authorize(with_scopes(connection, "profile.compact", "product.compact"), fake_kroger)
    client.force_login(owner)
    client.post(url(connection))
    assert fake_kroger.api_calls == ["products"]


@pytest.mark.parametrize("shopper", [True, False])
def test_without_a_product_scope_or_a_shopper_locations_are_used(
    shopper: bool,
    client: Any,
    owner: Any,
    connection: Connection,
    cc_client: Any,
    fake_kroger: FakeKroger,
) -> None:
    target = with_scopes(connection, "cart.basic:write") if shopper else None
    target = authorize(target or cc_connection(cc_client, owner), fake_kroger)
    client.force_login(owner)
    page = html.unescape(client.post(url(target), follow=True).content.decode())
    assert fake_kroger.api_calls == ["locations"]
    assert "Kroger answered: 1 stores near 45202." in page


def test_an_expired_token_is_refreshed_first(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    client.force_login(owner)
    client.post(url(connection))
    assert len(fake_kroger.token_calls) == 1
    assert fake_kroger.api_calls == ["products"]
    assert reloaded(connection).status == ConnectionStatus.ONLINE


def test_a_refused_token_makes_the_connection_offline(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    fake_kroger.expire_access_tokens()  # Kroger no longer takes it; the portal thinks it does
    client.force_login(owner)

    page = html.unescape(client.post(url(connection), follow=True).content.decode())

    assert "Kroger refused the access token" in page
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith("Test failed: Kroger refused the access token")
    assert "failed" in AuditEvent.objects.get(action=AuditAction.TESTED).detail


def test_a_successful_test_brings_an_offline_connection_back_online(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    make_offline(connection, "Test failed: Kroger refused products (HTTP 500).")
    client.force_login(owner)
    client.post(url(connection))
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ONLINE and stored.status_reason == ""


def test_a_connection_needing_reauthorization_stays_so_after_a_good_test(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    make_offline(connection, NEEDS_REAUTHORIZATION)
    client.force_login(owner)
    client.post(url(connection))
    assert reloaded(connection).needs_reauthorization


def test_an_unauthorized_connection_says_so_without_calling_kroger(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    client.force_login(owner)
    page = client.post(url(connection), follow=True).content.decode()
    assert "This connection has not been authorized." in page
    assert fake_kroger.api_calls == [] and fake_kroger.token_calls == []


@pytest.mark.parametrize(("who", "status"), [("teammate", 403), ("outsider", 404)])
def test_only_editors_may_test(
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
    assert fake_kroger.api_calls == []
    assert not AuditEvent.objects.filter(action=AuditAction.TESTED).exists()


def test_it_only_answers_post(client: Any, owner: Any, connection: Connection) -> None:
    client.force_login(owner)
    assert client.get(url(connection)).status_code == 405


def test_a_test_that_never_reached_kroger_is_not_counted(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger, settings: Any
) -> None:
    authorize(connection, fake_kroger)
    url_of_kroger = fake_kroger.url
    fake_kroger.stop()  # nothing listens there now: the connection is refused
    settings.KROGER_BASE_URLS = {"production": url_of_kroger, "certification": url_of_kroger}
    client.force_login(owner)
    page = html.unescape(client.post(url(connection), follow=True).content.decode())
    assert "Could not reach Kroger" in page
    assert ApiBudget.objects.get(client=connection.client, api="products").calls == 0


def test_a_test_that_timed_out_stays_counted(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    fake_kroger.api_delay = 2.5  # the fixture's KROGER_TIMEOUT_SECONDS is 2: it may have arrived
    client.force_login(owner)
    client.post(url(connection), follow=True)
    assert ApiBudget.objects.get(client=connection.client, api="products").calls == 1
