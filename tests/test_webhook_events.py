"""The events the portal's changes write to the outbox, each in the change's own transaction."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.test import Client

from connections_app import budgets, kroger, lifecycle, webhooks, worker
from connections_app.lifecycle import Actor
from connections_app.models import (
    NEEDS_REAUTHORIZATION,
    ApiBudget,
    Connection,
    ConnectionStatus,
    TokenUnavailable,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.conftest import client_for
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


@pytest.fixture
def endpoint() -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url="https://hooks.example.com/kroger", secret=WebhookEndpoint.new_secret()
    )


def events() -> list[tuple[str, dict[str, Any]]]:
    return [
        (delivery.event, json.loads(delivery.payload)["data"])
        for delivery in WebhookDelivery.objects.order_by("pk")
    ]


def test_deleting_a_connection_emits_connection_deleted(
    client: Client, owner: Any, connection: Connection, endpoint: WebhookEndpoint
) -> None:
    code = str(connection.code)
    client_for(client, owner)

    assert client.post(f"/connections/{code}/delete/").status_code == 302

    [(event, data)] = events()
    assert event == "connection.deleted"
    assert (data["connection"]["id"], data["connection"]["name"]) == (code, "Store cart")


def test_deleting_a_connection_in_the_admin_emits_connection_deleted(
    client: Client, admin_user: Any, connection: Connection, endpoint: WebhookEndpoint
) -> None:
    client_for(client, admin_user)

    client.post(f"/admin/connections_app/connection/{connection.pk}/delete/", {"post": "yes"})

    assert not Connection.objects.exists()
    assert [event for event, _ in events()] == ["connection.deleted"]


def test_nothing_is_written_without_endpoints(
    client: Client, owner: Any, connection: Connection
) -> None:
    client_for(client, owner)
    client.post(f"/connections/{connection.code}/delete/")
    assert not WebhookDelivery.objects.exists()


# --- The token lifecycle's outcomes ------------------------------------------------------------


def test_a_revoked_grant_produces_exactly_one_needs_reauthorization(
    connection: Connection, fake_kroger: FakeKroger, endpoint: WebhookEndpoint
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.revoke_refresh_tokens()

    worker.refresh_due()  # the worker's refresh meets the revoked grant
    worker.refresh_due()  # not retried: a person must act
    for _ in range(3):  # services asking for the token are refused, without a new event
        with pytest.raises(TokenUnavailable):
            lifecycle.get_access_token(reloaded(connection))

    [(event, data)] = events()
    assert event == "connection.needs_reauthorization"
    assert data["connection"]["status"] == "offline"
    assert data["connection"]["status_reason"] == NEEDS_REAUTHORIZATION
    assert "refresh token" in data["reason"].lower() or "invalid_grant" in data["reason"]
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1


def test_kroger_unreachable_without_a_valid_token_emits_offline_once_then_recovered(
    connection: Connection, fake_kroger: FakeKroger, endpoint: WebhookEndpoint
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token("500", times=2)
    for _ in range(2):
        with pytest.raises(TokenUnavailable):
            lifecycle.renew(reloaded(connection), actor=Actor())

    lifecycle.renew(reloaded(connection), actor=Actor())

    (offline, offline_data), (recovered, recovered_data) = events()
    assert (offline, recovered) == ("connection.offline", "connection.recovered")
    assert offline_data["connection"]["status"] == "offline"
    assert offline_data["reason"]
    assert recovered_data["connection"]["status"] == "online"
    assert "reason" not in recovered_data


def test_authorizing_emits_authorized_and_after_a_failure_recovered(
    connection: Connection, fake_kroger: FakeKroger, endpoint: WebhookEndpoint, owner: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token("invalid_grant")
    with pytest.raises(TokenUnavailable):
        lifecycle.get_access_token(reloaded(connection))
    access, refresh = fake_kroger.issue_tokens(connection.client.client_id, ["product.compact"])
    response = kroger.TokenResponse(
        access_token=access, expires_in=1800, token_type="bearer", refresh_token=refresh
    )

    lifecycle.authorize_with(reloaded(connection), response, actor=Actor(owner))
    lifecycle.authorize_with(reloaded(connection), response, actor=Actor(owner))

    assert [event for event, _ in events()] == [
        "connection.needs_reauthorization",
        "connection.authorized",
        "connection.recovered",
        "connection.authorized",
    ]
    for _, data in events():
        for secret in (access, refresh, connection.refresh_token):
            assert secret not in json.dumps(data)


def test_a_rolled_back_token_change_produces_no_event(
    connection: Connection, fake_kroger: FakeKroger, endpoint: WebhookEndpoint
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1), warm=True)
    fake_kroger.revoke_refresh_tokens()

    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.renew_claimed(connection.pk)
        assert [event for event, _ in events()] == ["connection.needs_reauthorization"]
        raise RuntimeError("whatever made the surrounding change fail")

    assert events() == []
    assert reloaded(connection).status == ConnectionStatus.ONLINE  # rolled back with it


def test_a_failing_outbox_write_does_not_undo_a_renewal(
    connection: Connection,
    fake_kroger: FakeKroger,
    endpoint: WebhookEndpoint,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A renewal has rotated the refresh token at Kroger: losing the new one would lose the
    connection, so an outbox that cannot be written costs the event, not the token."""
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token("500")
    with pytest.raises(TokenUnavailable):
        lifecycle.renew(reloaded(connection), actor=Actor())

    def broken(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("the outbox table is unavailable")

    monkeypatch.setattr(webhooks.WebhookDelivery.objects, "bulk_create", broken)
    lifecycle.renew(reloaded(connection), actor=Actor())

    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ONLINE
    assert stored.refresh_token != connection.refresh_token  # the rotated one was kept
    assert [event for event, _ in events()] == ["connection.offline"]


# --- Kroger daily budgets ----------------------------------------------------------------------


def test_a_budget_warns_at_80_percent_and_is_exhausted_at_its_limit_once_each(
    oauth_client: Any, endpoint: WebhookEndpoint
) -> None:
    ApiBudget.objects.create(client=oauth_client, api="products", daily_limit=5)

    refusals = [budgets.spend(oauth_client, "products") for _ in range(7)]

    assert [refusal is None for refusal in refusals] == [True] * 5 + [False] * 2
    (warning, warned), (exhausted, spent) = events()
    assert (warning, exhausted) == ("budget.warning", "budget.exhausted")
    assert warned["budget"]["used"] == 4 and spent["budget"]["used"] == 5
    assert warned["budget"] | {"used": 5, "reason": "limit"} == spent["budget"]
    assert spent["budget"]["client"] == "Shopping app"
    assert spent["budget"]["client_id"] == str(oauth_client.code)
    assert (spent["budget"]["api"], spent["budget"]["limit"]) == ("products", 5)
    assert spent["budget"]["resets_at"].endswith("Z")


def test_kroger_answering_429_exhausts_the_budget_once(
    oauth_client: Any, endpoint: WebhookEndpoint
) -> None:
    budgets.kroger_said_spent(oauth_client, "locations", retry_after=None)
    budgets.kroger_said_spent(oauth_client, "locations", retry_after=None)

    [(event, data)] = events()
    assert event == "budget.exhausted"
    assert (data["budget"]["api"], data["budget"]["reason"]) == ("locations", "kroger")


def test_a_call_counted_in_a_rolled_back_transaction_sends_no_budget_event(
    oauth_client: Any, endpoint: WebhookEndpoint
) -> None:
    ApiBudget.objects.create(client=oauth_client, api="cart", daily_limit=1)

    with pytest.raises(RuntimeError), transaction.atomic():
        budgets.spend(oauth_client, "cart")
        raise RuntimeError("the surrounding change failed")

    assert events() == []
    assert ApiBudget.objects.get(api="cart").calls == 0
