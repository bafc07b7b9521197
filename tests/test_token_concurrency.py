"""Concurrent callers cause exactly one call to Kroger's token endpoint, and never reuse a
refresh token: Kroger rotates them, so a second refresh with the same one would get
invalid_grant and lose the connection.

Row locks are proven on PostgreSQL (SQLite serializes writers differently, so a pass there
proves nothing about them); SQLite, which `make run` serves, is proven with processes on a
database file of its own, as a served portal would ask.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import connections, transaction
from django.test import Client

from connections_app import lifecycle
from connections_app.lifecycle import Actor
from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    ServiceKey,
    TokenHandout,
    TokenUnavailable,
)
from tests.concurrent_callers import ROOT, ask_in_processes, child_env
from tests.connection_states import authorize, cc_connection, reloaded
from tests.fakes.fake_kroger import FakeKroger

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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_callers_in_several_processes_cause_one_refresh_on_postgresql(
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
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


# --- Through the service API ---


@pytest.fixture
def expired(connection: Connection, fake_kroger: Any) -> Connection:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    return connection


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_for_an_expired_token_cause_one_refresh(
    expired: Connection, fake_kroger: Any
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Crowd", connections=[expired])
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
    # Counted in one row per key, connection and hour, even when the first hand-outs of the
    # hour race to insert it.
    assert TokenHandout.objects.get(connection=expired).count == callers


# --- SQLite, with processes on a database file ---

SEED = """
import os
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from connections_app.models import Connection, OAuthClient, Scope

client = OAuthClient.objects.create(
    name="Shopping app", environment="production", grant_type="authorization_code",
    client_id=os.environ["SEED_CLIENT_ID"], client_secret=os.environ["SEED_CLIENT_SECRET"],
)
connection = Connection.objects.create(name="Store cart", environment="production", client=client)
connection.scopes.set(Scope.objects.filter(name="product.compact"))
connection.store_tokens(
    access_token=os.environ["SEED_ACCESS"], expires_in=1800,
    refresh_token=os.environ["SEED_REFRESH"],
)
connection.token_expires_at = timezone.now() - timedelta(minutes=1)
connection.save()
print(connection.pk)
"""

READ = """
import django
django.setup()
from connections_app.models import Connection
print(Connection.objects.get().access_token)
"""


def run_script(script: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_callers_in_several_processes_cause_one_refresh_on_sqlite(
    tmp_path: Path, fake_kroger: FakeKroger
) -> None:
    url = f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    env = child_env(url, fake_kroger)
    run_script(["manage.py", "migrate", "--noinput"], env)
    fake_kroger.register_client("shopping-app-1234", "s3cret-value-123", {"product.compact"})
    access, refresh = fake_kroger.issue_tokens("shopping-app-1234", ["product.compact"])
    seed_env = {
        **env,
        "SEED_CLIENT_ID": "shopping-app-1234",
        "SEED_CLIENT_SECRET": "s3cret-value-123",
        "SEED_ACCESS": access,
        "SEED_REFRESH": refresh,
    }
    pk = int(run_script(["-c", SEED], seed_env))
    fake_kroger.token_delay = 0.5

    results = ask_in_processes(url, fake_kroger, pk, processes=3, threads=4)

    assert len(results) == 12
    stored = run_script(["-c", READ], env)
    assert set(results) == {stored}
    assert stored != access
    assert len(fake_kroger.token_calls) == 1
    assert os.path.exists(tmp_path / "portal.sqlite3")
