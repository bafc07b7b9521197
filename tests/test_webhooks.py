"""The outbox and its delivery: signed (Standard Webhooks), in order, retried, nothing lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connections_app import webhooks
from connections_app.models import (
    Connection,
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookFormat,
)
from tests.conftest import CLIENT_SECRET
from tests.fakes.receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver listens on 127.0.0.1
    fake = Receiver().start()
    yield fake
    fake.stop()


def make_endpoint(url: str, owner: Any = None, **fields: Any) -> tuple[WebhookEndpoint, str]:
    secret = WebhookEndpoint.new_secret()
    endpoint = WebhookEndpoint.objects.create(url=url, secret=secret, created_by=owner, **fields)
    return endpoint, secret


@pytest.fixture
def endpoint(receiver: Receiver, owner: Any) -> tuple[WebhookEndpoint, str]:
    return make_endpoint(receiver.url(), owner)


def emit_offline(connection: Connection, reason: str = "Kroger unreachable: timeout") -> None:
    with transaction.atomic():
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_OFFLINE, connection, reason=reason)


def test_it_signs_deliveries_that_the_standardwebhooks_library_verifies(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    _, secret = endpoint
    emit_offline(connection)

    assert webhooks.deliver_due() == 1

    [delivery] = receiver.received
    payload = Webhook(secret).verify(delivery.body, delivery.headers)
    assert payload["type"] == "connection.offline"
    assert payload["data"]["reason"] == "Kroger unreachable: timeout"
    assert payload["data"]["connection"]["id"] == str(connection.code)
    assert payload["data"]["connection"]["name"] == "Store cart"
    assert delivery.headers["webhook-id"] == WebhookDelivery.objects.get().webhook_id
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.path == "/hooks"
    with pytest.raises(WebhookVerificationError):
        Webhook(WebhookEndpoint.new_secret()).verify(delivery.body, delivery.headers)
    stored = WebhookDelivery.objects.get()
    assert (stored.state, stored.attempts, stored.last_status_code) == ("delivered", 1, 200)


def test_it_puts_no_token_or_secret_in_a_payload(
    receiver: Receiver,
    endpoint: tuple[WebhookEndpoint, str],
    connection: Connection,
    fake_kroger: Any,
) -> None:
    from tests.connection_states import authorize

    authorize(connection, fake_kroger)
    emit_offline(connection)
    webhooks.deliver_due()

    body = receiver.received[0].body.decode()
    for secret in (connection.access_token, connection.refresh_token, CLIENT_SECRET, endpoint[1]):
        assert secret not in body


def test_a_rolled_back_change_sends_nothing(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        connection.set_state(status="offline", status_reason="Kroger unreachable: timeout")
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_OFFLINE, connection)
        raise RuntimeError("the change fails after the event was written")

    assert Connection.objects.get().status == "not_authorized"
    assert WebhookDelivery.objects.count() == 0
    assert webhooks.deliver_due() == 0
    assert receiver.received == []


def test_a_committed_event_is_sent_by_a_later_pass(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    emit_offline(connection)  # committed; the process that wrote it does not deliver

    assert receiver.received == []
    webhooks.deliver_due()
    assert len(receiver.received) == 1


def test_a_receiver_failing_three_times_gets_the_event_once_in_order_with_the_next(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    receiver.fail_next(500, 503, 502)
    emit_offline(connection)
    with transaction.atomic():
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_RECOVERED, connection)
    now = timezone.now()

    for minutes in (0, 1, 2):  # each pass: the first event fails; the second waits behind it
        assert webhooks.deliver_due(now=now + timedelta(minutes=minutes)) == 0
    assert webhooks.deliver_due(now=now + timedelta(minutes=3)) == 2

    events = [json.loads(item.body)["type"] for item in receiver.received]
    assert events == ["connection.offline"] * 4 + ["connection.recovered"]
    assert len(receiver.ok) == 2
    ids = [item.headers["webhook-id"] for item in receiver.received]
    assert len(set(ids[:4])) == 1 and ids[4] != ids[0]
    first, second = WebhookDelivery.objects.order_by("pk")
    assert (first.state, first.attempts, second.state, second.attempts) == (
        "delivered",
        4,
        "delivered",
        1,
    )
    log = list(WebhookAttempt.objects.order_by("pk").values_list("attempt", "status_code"))
    assert log == [(1, 500), (2, 503), (3, 502), (4, 200), (1, 200)]
    assert WebhookEndpoint.objects.get().failing_since is None


def test_a_failed_attempt_waits_for_its_backoff(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    receiver.fail_next(500)
    emit_offline(connection)
    now = timezone.now()
    webhooks.deliver_due(now=now)

    assert webhooks.deliver_due(now=now + timedelta(seconds=5)) == 0
    assert len(receiver.received) == 1
    assert webhooks.deliver_due(now=now + timedelta(seconds=11)) == 1
    assert [webhooks.retry_backoff(n).total_seconds() for n in (1, 2, 3, 12)] == [
        10,
        20,
        40,
        3600,
    ]


def test_it_follows_no_redirect(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    receiver.fail_next(307)
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data/"
    emit_offline(connection)

    webhooks.deliver_due()

    assert len(receiver.received) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == DeliveryState.PENDING
    assert delivery.last_error == "HTTP 307 (redirects are not followed)"


def test_after_a_day_of_failures_the_delivery_fails_and_the_endpoint_is_disabled(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    receiver.fail_next(*[500] * 10)
    emit_offline(connection)
    with transaction.atomic():
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_RECOVERED, connection)
    now = timezone.now()
    webhooks.deliver_due(now=now)
    webhooks.deliver_due(now=now + timedelta(hours=12))
    assert WebhookEndpoint.objects.get().enabled

    webhooks.deliver_due(now=now + timedelta(hours=24, minutes=1))

    stored = WebhookEndpoint.objects.get()
    assert not stored.enabled
    assert stored.disabled_reason == "Disabled after 24 hours of failed deliveries."
    states = list(WebhookDelivery.objects.order_by("pk").values_list("state", "attempts"))
    assert states == [("failed", 3), ("failed", 0)]
    [message] = mail.outbox
    assert message.to == ["owner@example.com"]
    assert "HTTP 500" in message.body
    assert str(stored.code) in message.body
    # Disabled: new events are not queued for it, and nothing more is sent.
    emit_offline(connection)
    assert WebhookDelivery.objects.count() == 2
    webhooks.deliver_due(now=now + timedelta(hours=30))
    assert len(receiver.received) == 3


def test_slack_format_tells_of_a_spent_budget(receiver: Receiver, oauth_client: Any) -> None:
    from connections_app import budgets
    from connections_app.models import ApiBudget

    make_endpoint(receiver.url(), format=WebhookFormat.SLACK, events="budget.exhausted")
    ApiBudget.objects.create(client=oauth_client, api="products", daily_limit=1)
    budgets.spend(oauth_client, "products")
    webhooks.deliver_due()

    assert json.loads(receiver.received[0].body) == {
        "text": "The Kroger products daily budget of the OAuth 2.0 client “Shopping app” is "
        "spent (1 of 1 calls)."
    }


def test_each_endpoint_receives_only_the_events_it_wants(
    receiver: Receiver, connection: Connection
) -> None:
    make_endpoint(receiver.url("/all"))
    make_endpoint(receiver.url("/deleted"), events="connection.deleted")
    make_endpoint(receiver.url("/off"), enabled=False)

    emit_offline(connection)
    with transaction.atomic():
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_DELETED, connection)
    webhooks.deliver_due()

    paths = sorted((item.path, json.loads(item.body)["type"]) for item in receiver.received)
    assert paths == [
        ("/all", "connection.deleted"),
        ("/all", "connection.offline"),
        ("/deleted", "connection.deleted"),
    ]


def test_slack_format_posts_text_that_names_the_connection(
    receiver: Receiver, connection: Connection
) -> None:
    make_endpoint(receiver.url(), format=WebhookFormat.SLACK)

    emit_offline(connection, reason="Kroger unreachable: timeout")
    webhooks.deliver_due()

    body = json.loads(receiver.received[0].body)
    assert list(body) == ["text"]
    assert body["text"].startswith(
        "Kroger connection “Store cart” is offline: Kroger unreachable: timeout <https://"
    )
    assert str(connection.code) in body["text"]


def test_a_rolled_secret_and_the_previous_one_both_verify_for_a_day(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    stored, old = endpoint
    new = stored.roll_secret()
    emit_offline(connection)
    webhooks.deliver_due()

    delivery = receiver.received[0]
    assert len(delivery.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(delivery.body, delivery.headers)
    Webhook(new).verify(delivery.body, delivery.headers)

    WebhookEndpoint.objects.filter(pk=stored.pk).update(
        previous_secret_until=timezone.now() - timedelta(seconds=1)
    )
    emit_offline(connection)
    webhooks.deliver_due()
    later = receiver.received[1]
    Webhook(new).verify(later.body, later.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(later.body, later.headers)


def test_the_secret_is_stored_encrypted(endpoint: tuple[WebhookEndpoint, str]) -> None:
    _, secret = endpoint
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM connections_app_webhookendpoint")
        [(column,)] = cursor.fetchall()
    assert column.startswith("v1:")
    assert secret not in column
    assert secret.startswith("whsec_")
    assert WebhookEndpoint.objects.get().secret == secret


def test_the_delivery_log_is_kept_webhook_log_days(
    receiver: Receiver,
    endpoint: tuple[WebhookEndpoint, str],
    connection: Connection,
    settings: Any,
) -> None:
    settings.WEBHOOK_LOG_DAYS = 7
    emit_offline(connection)
    webhooks.deliver_due()
    emit_offline(connection)
    now = timezone.now()

    webhooks.deliver_due(now=now + timedelta(days=6))
    assert WebhookAttempt.objects.count() == 2
    webhooks.deliver_due(now=now + timedelta(days=7, minutes=1))

    assert WebhookAttempt.objects.count() == 1  # the second, made "six days later"
    assert WebhookDelivery.objects.count() == 1


def test_the_worker_pass_delivers_and_notes_its_time(
    receiver: Receiver, endpoint: tuple[WebhookEndpoint, str], connection: Connection
) -> None:
    from connections_app import worker
    from connections_app.models import PortalMetric

    emit_offline(connection)
    worker.refresh_due()

    assert len(receiver.received) == 1
    last = PortalMetric.objects.get(name=PortalMetric.WORKER_LAST_PASS).value
    assert abs(last - timezone.now().timestamp()) < 60
