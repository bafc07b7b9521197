"""The worker: what the keep-alive policy makes due, one renewal per connection, one log line
each, never a secret."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection as db
from django.db import connections
from django.db.backends.signals import connection_created
from django.utils import timezone

from connections_app import lifecycle, worker
from connections_app.models import (
    NEEDS_REAUTHORIZATION,
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    Scope,
)
from tests.connection_states import authorize, cc_connection, reloaded
from tests.fakes.fake_kroger import FakeKroger


def shopper_connection(
    connection: Connection, name: str, fake: FakeKroger, **kwargs: Any
) -> Connection:
    other = Connection.objects.create(
        name=name,
        environment=connection.environment,
        client=connection.client,
        created_by=connection.created_by,
    )
    other.scopes.set(Scope.objects.filter(name="product.compact"))
    return authorize(other, fake, **kwargs)


@pytest.fixture
def mix(
    connection: Connection, cc_client: Any, owner: Any, fake_kroger: FakeKroger
) -> dict[str, Connection]:
    """Connections in every state the worker must tell apart, by what it should do."""
    now = timezone.now()
    expiring = authorize(connection, fake_kroger, valid_for=timedelta(minutes=3), warm=True)
    shopper_connection(connection, "Idle, token lapsing", fake_kroger, valid_for=timedelta(0))
    fresh = shopper_connection(connection, "Fresh", fake_kroger)
    fresh.last_refreshed_at = now - timedelta(hours=1)
    fresh.save()
    idle = shopper_connection(connection, "Idle for a day", fake_kroger)
    idle.last_refreshed_at = idle.authorized_at = now - timedelta(hours=25)
    idle.save()
    dead = shopper_connection(connection, "Dead", fake_kroger, valid_for=timedelta(minutes=-5))
    dead.status, dead.status_reason = ConnectionStatus.OFFLINE, NEEDS_REAUTHORIZATION
    dead.save()
    backing_off = shopper_connection(
        connection, "Backing off", fake_kroger, valid_for=timedelta(minutes=-5), warm=True
    )
    backing_off.next_refresh_at = now + timedelta(minutes=2)
    backing_off.save()
    Connection.objects.create(
        name="Never authorized", environment="production", client=connection.client
    )
    cc_old = authorize(cc_connection(cc_client, owner, "Catalogue, old grant"), fake_kroger)
    cc_old.authorized_at = now - timedelta(days=3)
    cc_old.save()
    cc_expired = authorize(
        cc_connection(cc_client, owner, "Catalogue, expired"),
        fake_kroger,
        valid_for=timedelta(minutes=-1),
        warm=True,
    )
    authorize(
        cc_connection(cc_client, owner, "Catalogue, idle"),
        fake_kroger,
        valid_for=timedelta(minutes=-1),
    )
    return {"expiring": expiring, "idle": idle, "cc_expired": cc_expired}


@pytest.mark.django_db
def test_due_are_warm_tokens_about_to_expire_idle_grants_a_day_old_and_warm_lapses(
    mix: dict[str, Connection],
) -> None:
    due = set(lifecycle.due_for_refresh().values_list("name", flat=True))
    # Not due: a fresh token, an idle token lapsing (renewed on next use), a dead grant, a
    # connection never authorized, an idle client-credentials connection (no grant to keep).
    assert due == {"Store cart", "Idle for a day", "Catalogue, expired", "Backing off"}


@pytest.mark.django_db
def test_a_pass_refreshes_what_is_due_and_nothing_else(
    mix: dict[str, Connection], fake_kroger: FakeKroger, caplog: pytest.LogCaptureFixture
) -> None:
    before = {c.pk: c.access_token for c in Connection.objects.all()}
    caplog.set_level(logging.INFO, logger="connections_app.worker")

    handled = worker.refresh_due(concurrency=1)

    assert handled == 4
    changed = {c.name for c in Connection.objects.all() if c.access_token != before[c.pk]}
    assert changed == {"Store cart", "Idle for a day", "Catalogue, expired"}
    assert len(fake_kroger.token_calls) == 3
    assert (
        AuditEvent.objects.filter(action=AuditAction.REFRESHED, actor_label="worker").count() == 3
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "connections_app.worker"]
    refreshed = [line for line in lines if "refreshed, valid until" in line]
    assert len(refreshed) == 3
    # The one backing off has no valid token left: marked Offline, without a call to Kroger.
    [offline] = [line for line in lines if line not in refreshed]
    assert "(Backing off): backing off, token expired: offline" in offline
    for secret in fake_kroger.issued:
        assert secret not in caplog.text
    assert worker.refresh_due(concurrency=1) == 0  # nothing is due any more


@pytest.mark.django_db
def test_a_refused_grant_is_logged_and_not_tried_again(
    connection: Connection, fake_kroger: FakeKroger, caplog: pytest.LogCaptureFixture
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=1), warm=True)
    fake_kroger.fail_token("invalid_grant")
    caplog.set_level(logging.INFO, logger="connections_app.worker")

    assert worker.refresh_due(concurrency=1) == 1
    assert worker.refresh_due(concurrency=1) == 0

    assert reloaded(connection).needs_reauthorization
    assert len(fake_kroger.token_calls) == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "connections_app.worker"]
    assert "refresh failed (invalid_grant" in line and connection.name in line


@pytest.mark.django_db
def test_a_transient_failure_waits_for_its_backoff(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=1), warm=True)
    fake_kroger.fail_token("500")
    assert worker.refresh_due(concurrency=1) == 1
    assert worker.refresh_due(concurrency=1) == 0  # backing off
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ONLINE and stored.refresh_failures == 1

    stored.next_refresh_at = timezone.now()  # the backoff has run out
    stored.save()
    assert worker.refresh_due(concurrency=1) == 1
    assert reloaded(connection).refresh_failures == 0


@pytest.mark.django_db
def test_a_token_that_expires_while_backing_off_is_marked_offline_by_the_next_pass(
    connection: Connection,
    fake_kroger: FakeKroger,
    admin_user: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=1), warm=True)
    fake_kroger.fail_token("500")
    worker.refresh_due(concurrency=1)  # fails; the token is still valid: Online, backing off
    lapsed = reloaded(connection)
    lapsed.token_expires_at = timezone.now() - timedelta(seconds=1)
    lapsed.save()
    caplog.set_level(logging.INFO, logger="connections_app.worker")

    assert worker.refresh_due(concurrency=1) == 1  # looked at when its token lapsed
    assert worker.refresh_due(concurrency=1) == 0

    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith("Kroger unreachable: ")
    assert stored.next_refresh_at is not None and stored.next_refresh_at > timezone.now()
    assert len(fake_kroger.token_calls) == 1  # no call to Kroger before the backoff ends
    [email] = mail.outbox
    assert "offline" in email.subject
    lines = [r.getMessage() for r in caplog.records if r.name == "connections_app.worker"]
    assert f"({connection.name}): backing off, token expired: offline" in lines[-1]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_refresh_each_connection_once(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=1), warm=True)
    for index in range(5):
        shopper_connection(
            connection, f"Due {index}", fake_kroger, valid_for=timedelta(0), warm=True
        )
    fake_kroger.token_delay = 0.2
    handled: list[int] = []
    start = threading.Barrier(2)

    def one_worker() -> None:
        try:
            start.wait(timeout=10)
            handled.append(worker.refresh_due(concurrency=3))
        finally:
            connections.close_all()

    workers = [threading.Thread(target=one_worker) for _ in range(2)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)

    assert sum(handled) == 6
    used = [call["refresh_token"] for call in fake_kroger.token_calls]
    assert len(used) == len(set(used)) == 6
    refreshed = AuditEvent.objects.filter(action=AuditAction.REFRESHED)
    assert sorted(refreshed.values_list("connection_id", flat=True)) == sorted(
        Connection.objects.values_list("pk", flat=True)
    )
    assert not AuditEvent.objects.filter(action=AuditAction.REFRESH_FAILED).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_each_renewal_thread_keeps_one_database_connection_for_the_pass(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(0), warm=True)
    for index in range(11):
        shopper_connection(
            connection, f"Due {index}", fake_kroger, valid_for=timedelta(0), warm=True
        )
    opened: list[int] = []  # the threads that opened a database connection, once each

    def count(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(threading.get_ident())

    def backends() -> int:
        with db.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            return int(cursor.fetchone()[0])

    before = backends()
    connection_created.connect(count)
    try:
        assert worker.refresh_due(concurrency=3) == 12
    finally:
        connection_created.disconnect(count)

    # 12 renewals on 3 threads: one connection each, not one per renewal.
    assert threading.get_ident() not in opened
    assert 1 <= len(opened) == len(set(opened)) <= 3
    # And each thread closed its own when the pass ended (a backend exits just after).
    deadline = time.monotonic() + 5
    while backends() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends() == before
