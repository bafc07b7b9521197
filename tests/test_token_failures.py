"""The failure policy: what a failed renewal keeps, when it is retried, who is told and when,
and that a crash during one shows no secret."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from django.db import DatabaseError
from django.test import RequestFactory
from django.utils import timezone
from django.views.debug import ExceptionReporter

from connections_app import kroger, lifecycle
from connections_app.lifecycle import Actor
from connections_app.models import (
    NEEDS_REAUTHORIZATION,
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    TokenUnavailable,
)
from tests.conftest import CLIENT_SECRET
from tests.connection_states import authorize, cc_connection, expire, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def refresh_calls(fake: FakeKroger) -> list[dict[str, Any]]:
    return fake.token_calls_for("refresh_token")


def test_a_dead_refresh_token_needs_reauthorization_and_emails_people(
    connection: Connection, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token("invalid_grant")

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "needs_reauthorization"
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason == NEEDS_REAUTHORIZATION
    assert stored.access_token == connection.access_token  # never wiped by a failure
    assert stored.refresh_token == connection.refresh_token
    [email] = mail.outbox
    assert sorted(email.to) == ["admin@example.com", "owner@example.com"]
    assert "authorized again" in email.subject
    assert f"https://portal.test/connections/{connection.code}/" in email.body
    assert connection.refresh_token not in email.body
    event = AuditEvent.objects.get(action=AuditAction.REFRESH_FAILED)
    assert "invalid_grant" in event.detail
    assert connection.refresh_token not in event.detail


def test_a_connection_needing_reauthorization_is_not_retried(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token("invalid_grant")
    with pytest.raises(TokenUnavailable):
        lifecycle.get_access_token(reloaded(connection))
    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))
    assert caught.value.code == "needs_reauthorization"
    assert len(fake_kroger.token_calls) == 1
    assert not lifecycle.due_for_refresh().exists()
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("temporarily_unavailable", "Kroger unreachable: "),
        ("server_error", "Kroger unreachable: "),
        # The fake's HTTP 400 invalid_request: a refusal, but not of the grant.
        ("redirect_uri", "Kroger refused the refresh: "),
    ],
)
def test_a_refresh_answered_400_without_invalid_grant_leaves_the_grant_to_retry(
    failure: str, reason: str, connection: Connection, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token(failure)

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "kroger_unavailable"
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith(reason)
    assert not stored.needs_reauthorization
    assert stored.next_refresh_at is not None and stored.renewal_due_at is not None
    [email] = mail.outbox
    assert "offline" in email.subject and "authorized again" not in email.subject

    # The backoff runs out: the same refresh token renews the grant, and it is Online again.
    Connection.objects.filter(pk=connection.pk).update(next_refresh_at=timezone.now())
    token = lifecycle.get_access_token(reloaded(connection))
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ONLINE and stored.refresh_failures == 0
    assert token.access_token == stored.access_token != connection.access_token
    assert [call["refresh_token"] for call in refresh_calls(fake_kroger)] == [
        connection.refresh_token,
        connection.refresh_token,
    ]


@pytest.mark.parametrize("failure", ["500", "timeout", "garbage", "temporarily_unavailable"])
def test_a_transient_failure_keeps_a_connection_with_a_valid_token_online(
    failure: str, connection: Connection, fake_kroger: FakeKroger, owner: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(seconds=60))
    fake_kroger.fail_token(failure)

    token = lifecycle.get_access_token(reloaded(connection))  # still valid for a minute: handed out

    assert token.access_token == connection.access_token
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ONLINE
    assert stored.refresh_failures == 1
    assert stored.next_refresh_at is not None and stored.next_refresh_at > timezone.now()
    assert stored.refresh_token == connection.refresh_token
    assert mail.outbox == []
    assert AuditEvent.objects.filter(action=AuditAction.REFRESH_FAILED).count() == 1


@pytest.mark.parametrize("failure", ["500", "timeout", "garbage", "server_error"])
def test_a_transient_failure_without_a_valid_token_is_offline_and_emails_once(
    failure: str, connection: Connection, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token(failure)

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "kroger_unavailable"
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith("Kroger unreachable: ")
    assert stored.access_token == connection.access_token
    assert stored.refresh_token == connection.refresh_token
    [email] = mail.outbox
    assert "offline" in email.subject
    # Backing off: the next caller is answered without a call to Kroger.
    with pytest.raises(TokenUnavailable):
        lifecycle.get_access_token(reloaded(connection))
    assert len(fake_kroger.token_calls) == 1


def test_a_rate_limited_refresh_is_transient(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    error = kroger.KrogerError("rate_limited", "Rate limit spent.", status=429)
    with (
        mock.patch.object(kroger, "refresh_token", side_effect=error),
        pytest.raises(TokenUnavailable) as caught,
    ):
        lifecycle.get_access_token(reloaded(connection))
    assert caught.value.code == "kroger_unavailable"
    assert reloaded(connection).status_reason == "Kroger unreachable: Rate limit spent."


@pytest.mark.parametrize("expires_in", [0, -30])
def test_a_token_without_a_positive_lifetime_is_a_transient_failure(
    expires_in: int, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.expires_in = expires_in

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "kroger_unavailable"
    assert "expires_in" in caught.value.reason
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE and stored.next_refresh_at is not None


def test_refused_client_credentials_are_retried_and_reported_once_offline(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    # Not the grant's fault (e.g. a changed client secret): retried with backoff, since
    # fixing the OAuth 2.0 client is enough; people are told once it has no token left.
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token("invalid_client")

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "kroger_unavailable"
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith("Kroger refused the refresh: Kroger did not accept")
    assert not stored.needs_reauthorization and stored.next_refresh_at is not None
    assert stored.refresh_token == connection.refresh_token
    [email] = mail.outbox
    assert "offline" in email.subject and CLIENT_SECRET not in email.body


# --- Offline connections hand out no stored token ------------------------------------------


def test_a_token_that_expires_while_backing_off_makes_the_connection_offline_once(
    connection: Connection, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(seconds=60))
    fake_kroger.fail_token("500")
    lifecycle.get_access_token(reloaded(connection))  # still valid: handed out, and backing off
    assert reloaded(connection).status == ConnectionStatus.ONLINE
    expire(reloaded(connection))

    for _ in range(2):
        with pytest.raises(TokenUnavailable) as caught:
            lifecycle.get_access_token(reloaded(connection))
        assert caught.value.code == "kroger_unavailable"

    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith("Kroger unreachable: ")
    assert stored.next_refresh_at is not None and stored.next_refresh_at > timezone.now()
    assert len(fake_kroger.token_calls) == 1  # the backoff holds
    [email] = mail.outbox
    assert "offline" in email.subject and connection.access_token not in email.body


# --- Reauthorization ---------------------------------------------------------------------


def test_a_failed_save_after_rotation_needs_reauthorization(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    with (
        mock.patch.object(Connection, "save", side_effect=DatabaseError("disk full")),
        pytest.raises(TokenUnavailable) as caught,
    ):
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "needs_reauthorization"
    assert len(refresh_calls(fake_kroger)) == 1  # Kroger rotated the refresh token
    stored = reloaded(connection)
    assert stored.status_reason == NEEDS_REAUTHORIZATION
    assert stored.access_token == connection.access_token
    assert stored.refresh_token == connection.refresh_token
    assert len(mail.outbox) == 1
    event = AuditEvent.objects.get(action=AuditAction.REFRESH_FAILED)
    assert "could not save" in event.detail


def test_a_failed_save_of_a_client_credentials_token_is_retried_later(
    cc_client: Any, owner: Any, fake_kroger: FakeKroger
) -> None:
    connection = expire(authorize(cc_connection(cc_client, owner), fake_kroger))
    with (
        mock.patch.object(Connection, "save", side_effect=DatabaseError("disk full")),
        pytest.raises(TokenUnavailable) as caught,
    ):
        lifecycle.get_access_token(reloaded(connection))
    assert caught.value.code == "kroger_unavailable"
    assert not reloaded(connection).needs_reauthorization


def test_recovery_after_a_failure_is_announced_to_the_same_people(
    connection: Connection, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.fail_token("500", times=2)
    for _ in range(2):  # the second, forced, failure tells no one again
        with pytest.raises(TokenUnavailable):
            lifecycle.renew(reloaded(connection), actor=Actor())
    assert len(mail.outbox) == 1
    assert reloaded(connection).refresh_failures == 2

    lifecycle.renew(reloaded(connection), actor=Actor())

    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.ONLINE and stored.status_reason == ""
    assert stored.refresh_failures == 0 and stored.next_refresh_at is None
    assert not stored.failure_notified
    failure, recovery = mail.outbox
    assert "works again" in recovery.subject
    assert sorted(recovery.to) == sorted(failure.to) == ["admin@example.com", "owner@example.com"]


def test_reauthorizing_after_a_failure_tells_people_it_works_again_then_not_later(
    connection: Connection, fake_kroger: FakeKroger, admin_user: Any, owner: Any
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

    failure, recovery = mail.outbox
    assert "works again" in recovery.subject
    assert sorted(recovery.to) == sorted(failure.to)
    assert not reloaded(connection).failure_notified
    lifecycle.renew(reloaded(connection), actor=Actor())
    assert len(mail.outbox) == 2


def test_authorizing_a_healthy_connection_emails_no_one(
    connection: Connection, fake_kroger: FakeKroger, owner: Any
) -> None:
    authorize(connection, fake_kroger)
    access, refresh = fake_kroger.issue_tokens(connection.client.client_id, ["product.compact"])
    response = kroger.TokenResponse(
        access_token=access, expires_in=1800, token_type="bearer", refresh_token=refresh
    )
    lifecycle.authorize_with(reloaded(connection), response, actor=Actor(owner))
    assert mail.outbox == []


# --- Tokens Kroger issues with a short or no lifetime ---------------------------------------


def crash_report(call: Callable[[], object]) -> str:
    """The technical 500 page of a crash in ``call`` (this frame holds no secret itself)."""
    try:
        call()
    except AttributeError:
        request = RequestFactory().get("/api/v1/connections/")
        return ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
    pytest.fail("the call did not crash")


def test_an_error_report_of_a_crash_during_a_refresh_shows_no_secret(
    connection: Connection, fake_kroger: FakeKroger, settings: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    # The refresh crashes inside the call to Kroger (the lock wait reads the timeout first).
    del settings.KROGER_BASE_URLS

    html = crash_report(functools.partial(lifecycle.get_access_token, reloaded(connection)))

    assert "_request_token" in html and "KROGER_BASE_URLS" in html
    for secret in (CLIENT_SECRET, connection.refresh_token, connection.access_token):
        assert secret not in html
