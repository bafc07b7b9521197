"""The events the portal's changes write to the outbox, each in the change's own transaction."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from connections_app.models import Connection, WebhookDelivery, WebhookEndpoint
from tests.conftest import client_for

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
