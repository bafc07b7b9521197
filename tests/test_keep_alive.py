"""The keep-alive policy: warm connections are renewed before their token expires, idle grants
once a day, idle client-credentials connections never; the due time is stored with every change
and every hand-out, cheaply; an idle connection whose token lapsed is Online."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import connection as db_connection
from django.db import connections, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections_app import kroger, lifecycle, renewal_policy, worker
from connections_app.lifecycle import Actor
from connections_app.models import (
    Connection,
    ConnectionStatus,
    OAuthClient,
    Scope,
    TokenUnavailable,
)
from tests.connection_states import authorize, cc_connection, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def test_a_hand_out_makes_an_idle_connection_warm(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    idle = reloaded(connection)
    assert idle.renewal_due_at == idle.authorized_at + timedelta(hours=24)  # type: ignore[operator]

    lifecycle.get_access_token(idle)

    warm = reloaded(connection)
    assert warm.handed_out_at is not None and renewal_policy.is_warm(warm)
    assert warm.renewal_due_at == warm.token_expires_at - timedelta(minutes=5)  # type: ignore[operator]
    assert fake_kroger.token_calls == []


def test_handing_out_a_warm_token_again_writes_nothing(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    lifecycle.get_access_token(reloaded(connection))
    stored = reloaded(connection)

    with CaptureQueriesContext(db_connection) as queries:
        for _ in range(3):
            lifecycle.get_access_token(stored)

    assert queries.captured_queries == []


def test_a_connection_not_used_within_keep_warm_seconds_is_idle_again(
    connection: Connection, fake_kroger: FakeKroger, settings: Any
) -> None:
    settings.KEEP_WARM_SECONDS = 600
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=20))
    stored = reloaded(connection)
    stored.handed_out_at = timezone.now() - timedelta(minutes=11)
    stored.save()

    stored = reloaded(connection)
    assert not renewal_policy.is_warm(stored)
    # Its token is renewed 5 minutes before it expires only if that is within 10 minutes
    # of the last hand-out; it is not, so the grant's daily renewal is next.
    assert stored.renewal_due_at == stored.authorized_at + timedelta(hours=24)  # type: ignore[operator]


def test_an_idle_grant_is_renewed_keep_alive_hours_after_its_last_renewal(
    connection: Connection, fake_kroger: FakeKroger, settings: Any
) -> None:
    settings.KEEP_ALIVE_HOURS = 6
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    stored = reloaded(connection)
    assert stored.renewal_due_at == stored.authorized_at + timedelta(hours=6)  # type: ignore[operator]

    stored.authorized_at = timezone.now() - timedelta(hours=7)
    stored.save()
    assert worker.refresh_due(concurrency=1) == 1

    renewed = reloaded(connection)
    assert len(fake_kroger.token_calls) == 1
    assert renewed.last_refreshed_at is not None
    # Renewed in the background, nobody waiting: still idle, next renewal in 6 hours.
    assert renewed.renewal_due_at == renewed.last_refreshed_at + timedelta(hours=6)


def test_an_idle_client_credentials_connection_is_never_renewed_in_the_background(
    cc_client: OAuthClient, owner: Any, fake_kroger: FakeKroger
) -> None:
    catalogue = authorize(
        cc_connection(cc_client, owner), fake_kroger, valid_for=timedelta(minutes=-1)
    )
    assert reloaded(catalogue).renewal_due_at is None
    assert worker.refresh_due(concurrency=1) == 0

    lifecycle.get_access_token(reloaded(catalogue))  # on demand: a new token, and now warm
    warm = reloaded(catalogue)
    assert len(fake_kroger.token_calls) == 1
    assert warm.renewal_due_at == warm.token_expires_at - timedelta(minutes=5)  # type: ignore[operator]


def new_consent(fake: FakeKroger, connection: Connection) -> Any:
    access, refresh = fake.issue_tokens(connection.client.client_id, ["product.compact"])
    return kroger.TokenResponse(
        access_token=access, expires_in=1800, token_type="bearer", refresh_token=refresh
    )


def test_every_token_change_moves_the_due_time(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=2), warm=True)
    fake_kroger.fail_token("500")
    worker.refresh_due(concurrency=1)  # fails: retried after the backoff (1 minute)
    backing_off = reloaded(connection)
    assert backing_off.next_refresh_at is not None
    assert backing_off.renewal_due_at == backing_off.next_refresh_at

    fake_kroger.fail_token("invalid_grant")
    with pytest.raises(TokenUnavailable):
        lifecycle.renew(backing_off, actor=Actor())
    assert reloaded(connection).needs_reauthorization
    assert reloaded(connection).renewal_due_at is None  # only a person can help now

    response = new_consent(fake_kroger, connection)
    lifecycle.authorize_with(reloaded(connection), response, actor=Actor())
    assert reloaded(connection).renewal_due_at is not None

    lifecycle.disconnect(reloaded(connection), actor=Actor())
    assert reloaded(connection).renewal_due_at is None


def test_a_warm_connection_is_renewed_before_its_callers_need_to_wait(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=4), warm=True)
    assert worker.refresh_due(concurrency=1) == 1

    fake_kroger.token_delay = 5  # any caller that had to wait for Kroger would take 5 seconds
    started = timezone.now()
    token = lifecycle.get_access_token(reloaded(connection))

    assert timezone.now() - started < timedelta(seconds=1)
    assert token.expires_at - timezone.now() > timedelta(minutes=29)
    assert len(fake_kroger.token_calls) == 1


def test_an_idle_connection_whose_token_lapsed_is_online_and_says_so(
    client: Client, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-10))
    assert reloaded(connection).status == ConnectionStatus.ONLINE
    client.force_login(owner)

    for url in ("/", f"/connections/{connection.code}/"):
        page = client.get(url).content.decode()
        assert "Online" in page
        assert "Access token lapsed; renewed on next use" in page

    lifecycle.get_access_token(reloaded(connection))
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert "Access token lapsed" not in page


@pytest.mark.parametrize("failure", ["500", "temporarily_unavailable", "server_error"])
def test_kroger_unreachable_for_an_idle_daily_renewal_keeps_it_online_and_tells_no_one(
    failure: str, connection: Connection, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-10))
    stored = reloaded(connection)
    stored.authorized_at = timezone.now() - timedelta(hours=25)
    stored.save()
    fake_kroger.fail_token(failure)

    assert worker.refresh_due(concurrency=1) == 1

    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ONLINE and stored.refresh_failures == 1
    assert stored.renewal_due_at == stored.next_refresh_at
    assert mail.outbox == []
    # The first caller finds no token to be had while the renewal backs off: now it is
    # Offline, and people are told.
    with pytest.raises(TokenUnavailable):
        lifecycle.get_access_token(stored)
    assert reloaded(connection).status == ConnectionStatus.OFFLINE
    [email] = mail.outbox
    assert "offline" in email.subject


def more_connections(connection: Connection, fake: FakeKroger, count: int) -> None:
    for index in range(count):
        other = Connection.objects.create(
            name=f"Due {index:02}", environment=connection.environment, client=connection.client
        )
        other.scopes.set(Scope.objects.filter(name="product.compact"))
        authorize(other, fake, valid_for=timedelta(minutes=2), warm=True)


def test_claims_come_earliest_first_in_batches(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    more_connections(connection, fake_kroger, 5)
    due = list(lifecycle.due_for_refresh().values_list("pk", flat=True))

    first = lifecycle.claim_due(limit=3)
    second = lifecycle.claim_due(limit=3)

    assert first == due[:3] and second == due[3:]
    assert lifecycle.claim_due(limit=3) == []  # all leased
    assert worker.refresh_due(concurrency=1) == 0  # leased: taken again when the lease ends


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_claiming_at_once_never_get_the_same_connection(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    more_connections(connection, fake_kroger, 12)
    inside = threading.Event()
    release = threading.Event()
    held: list[int] = []

    def hold_a_claim() -> None:
        # A worker in the middle of its claim: rows locked, lease not yet committed.
        try:
            with transaction.atomic():
                rows = lifecycle.due_for_refresh().select_for_update(skip_locked=True)
                held.extend(rows.values_list("pk", flat=True)[:5])
                inside.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_a_claim)
    holder.start()
    assert inside.wait(timeout=10)
    try:
        mine = lifecycle.claim_due(limit=100)
    finally:
        release.set()
        holder.join(timeout=10)

    assert len(held) == 5 and len(mine) == 7
    assert not set(held) & set(mine)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_hand_out_never_waits_for_a_renewal_in_flight(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    inside = threading.Event()
    release = threading.Event()

    def renewing() -> None:
        try:
            with transaction.atomic():
                Connection.objects.select_for_update().get(pk=connection.pk)
                inside.set()
                release.wait(timeout=10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=renewing)
    holder.start()
    assert inside.wait(timeout=10)
    try:
        started = timezone.now()
        lifecycle.get_access_token(reloaded(connection))
        waited = timezone.now() - started
    finally:
        release.set()
        holder.join(timeout=10)

    assert waited < timedelta(seconds=2)
