"""Concurrent callers of get_access_token cause exactly one call to Kroger's token endpoint.

PostgreSQL only: SQLite serializes writers differently, so a pass there proves nothing about
row locks. Kroger rotates refresh tokens, so a second refresh with the same token would get
invalid_grant and lose the connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import connections, transaction

from connections_app import lifecycle
from connections_app.lifecycle import Actor
from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    TokenUnavailable,
)
from tests.fakes.fake_kroger import FakeKroger
from tests.keepalive import (
    ask_in_processes,
    authorize,
    cc_connection,
    reloaded,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


CALLERS = 20


def in_threads(count: int, work: Callable[[], str]) -> list[str | BaseException]:
    """Run ``work`` in ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)
    results: list[str | BaseException] = [RuntimeError("did not run")] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = work()
        except BaseException as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def ask_for_token(pk: int) -> Callable[[], str]:
    def work() -> str:
        return lifecycle.get_access_token(
            Connection.objects.get(pk=pk), actor=Actor(label="race")
        ).access_token

    return work


def test_twenty_callers_of_an_expired_shopper_token_cause_one_refresh(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.token_delay = 0.2

    results = in_threads(CALLERS, ask_for_token(connection.pk))

    assert [r for r in results if not isinstance(r, str)] == []
    stored = reloaded(connection)
    assert set(results) == {stored.access_token}
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    assert len(fake_kroger.token_calls) == 1  # and so no invalid_grant either
    assert stored.status == ConnectionStatus.ONLINE
    assert stored.refresh_token != connection.refresh_token
    assert AuditEvent.objects.filter(action=AuditAction.REFRESHED).count() == 1
    assert not AuditEvent.objects.filter(action=AuditAction.REFRESH_FAILED).exists()


def test_twenty_callers_of_an_expired_client_credentials_token_cause_one_request(
    cc_client: Any, owner: Any, fake_kroger: FakeKroger
) -> None:
    connection = authorize(
        cc_connection(cc_client, owner), fake_kroger, valid_for=timedelta(minutes=-1)
    )
    fake_kroger.token_delay = 0.2

    results = in_threads(CALLERS, ask_for_token(connection.pk))

    assert [r for r in results if not isinstance(r, str)] == []
    assert set(results) == {reloaded(connection).access_token}
    assert len(fake_kroger.token_calls_for("client_credentials")) == 1
    assert len(fake_kroger.token_calls) == 1


def test_forced_refreshes_at_once_are_serialized_and_never_reuse_a_refresh_token(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    # "Refresh token" clicked by several people at once: whoever waited for a refresh in
    # flight uses its result; any later one uses the rotated refresh token, never a dead one.
    authorize(connection, fake_kroger)
    fake_kroger.token_delay = 0.2

    def force() -> str:
        return lifecycle.renew(Connection.objects.get(pk=connection.pk), actor=Actor()).access_token

    results = in_threads(5, force)

    assert [r for r in results if not isinstance(r, str)] == []
    used = [call["refresh_token"] for call in fake_kroger.token_calls]
    assert len(used) == len(set(used)) >= 1
    assert not AuditEvent.objects.filter(action=AuditAction.REFRESH_FAILED).exists()
    assert reloaded(connection).status == ConnectionStatus.ONLINE


def test_callers_in_several_processes_cause_one_refresh(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.token_delay = 0.5
    db = db_connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"

    results = ask_in_processes(url, fake_kroger, connection.pk, processes=3, threads=5)

    assert len(results) == 15
    assert set(results) == {reloaded(connection).access_token}
    assert len(fake_kroger.token_calls) == 1


def test_a_caller_gives_up_waiting_behind_a_stuck_refresh(
    connection: Connection, fake_kroger: FakeKroger, settings: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    settings.KROGER_TIMEOUT_SECONDS = 1  # waiters give up after 2 seconds
    locked, release = threading.Event(), threading.Event()

    def stuck_holder() -> None:
        try:
            with transaction.atomic():
                Connection.objects.select_for_update().get(pk=connection.pk)
                locked.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=stuck_holder)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        started = time.monotonic()
        with pytest.raises(TokenUnavailable) as caught:
            lifecycle.get_access_token(reloaded(connection))
        waited = time.monotonic() - started
    finally:
        release.set()
        holder.join(timeout=10)

    assert caught.value.code == "kroger_unavailable"
    assert 1.5 < waited < 5
    assert fake_kroger.token_calls == []
