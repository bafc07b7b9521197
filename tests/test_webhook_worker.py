"""A worker that dies between sending a delivery and recording it: the delivery is sent again,
with the same webhook-id, and only once more.

PostgreSQL only: the worker runs as its own process on the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from connections_app import webhooks
from connections_app.models import (
    Connection,
    DeliveryState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from tests.concurrent_callers import ROOT
from tests.fakes.receiver import Receiver


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    fake = Receiver().start()
    yield fake
    fake.stop()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_after_sending_causes_at_most_one_duplicate_with_the_same_id(
    receiver: Receiver, connection: Connection
) -> None:
    secret = WebhookEndpoint.new_secret()
    WebhookEndpoint.objects.create(url=receiver.url(), secret=secret)
    with transaction.atomic():
        webhooks.emit_connection_event(
            WebhookEvent.CONNECTION_NEEDS_REAUTHORIZATION, connection, reason="invalid_grant"
        )
    db = db_connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    started = threading.Event()
    worker: dict[str, subprocess.Popen[bytes]] = {}

    def kill_the_worker(headers: dict[str, str], body: bytes) -> None:
        """The request has arrived: the worker is waiting for the answer, not yet recorded."""
        if "process" in worker or started.wait(timeout=30):
            os.kill(worker["process"].pid, signal.SIGKILL)
            worker["process"].wait(timeout=30)

    receiver.on_receive = kill_the_worker
    worker["process"] = subprocess.Popen(
        [sys.executable, "manage.py", "refresh_connections"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TEST_DATABASE_URL": url,
            "WEBHOOK_ALLOW_PRIVATE": "true",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.set()
    assert worker["process"].wait(timeout=60) == -signal.SIGKILL
    receiver.on_receive = None

    assert len(receiver.received) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, 0)
    assert not WebhookAttempt.objects.exists()

    # The dead worker's lease on the endpoint runs out; the next pass sends it again.
    later = timezone.now() + webhooks.LEASE + timedelta(seconds=1)
    assert webhooks.deliver_due(now=later) == 1
    assert webhooks.deliver_due(now=later + timedelta(minutes=5)) == 0

    first, again = receiver.received
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == delivery.webhook_id
    assert first.body == again.body
    for item in (first, again):
        payload = Webhook(secret).verify(item.body, item.headers)
        assert payload["type"] == "connection.needs_reauthorization"
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 1)
