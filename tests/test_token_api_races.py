"""Concurrent token requests through the service API cause one call to Kroger.

PostgreSQL only (row locks); transactional, so it runs after the other database tests.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from connections_app.models import AuditAction, AuditEvent, Connection, ServiceKey
from tests.keepalive import authorize


@pytest.fixture
def expired(connection: Connection, fake_kroger: Any) -> Connection:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    return connection


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_for_an_expired_token_cause_one_refresh(
    expired: Connection, fake_kroger: Any
) -> None:
    _, raw = ServiceKey.create_key(name="Crowd", connections=[expired])
    fake_kroger.token_delay = 0.3
    callers = 12
    barrier = threading.Barrier(callers)
    answers: list[Any] = [None] * callers

    def call(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            answers[index] = Client().get(
                f"/api/v1/connections/{expired.code}/token",
                headers={"Authorization": f"Bearer {raw}"},
            )
        finally:
            connections.close_all()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [answer.status_code for answer in answers] == [200] * callers
    assert len({answer.json()["access_token"] for answer in answers}) == 1
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    issued = AuditEvent.objects.filter(action=AuditAction.TOKEN_ISSUED, connection=expired)
    assert issued.count() == callers
