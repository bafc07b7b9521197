"""Handing out a token: the stored one while it is fresh, a renewed one otherwise, and none
(with the reason) when none can be had."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core import mail
from django.utils import timezone

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
from tests.connection_states import authorize, cc_connection, expire, make_offline, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def refresh_calls(fake: FakeKroger) -> list[dict[str, Any]]:
    return fake.token_calls_for("refresh_token")


def test_a_valid_token_is_returned_without_calling_kroger(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    token = lifecycle.get_access_token(reloaded(connection))
    assert token.access_token == connection.access_token
    assert fake_kroger.token_calls == []


def test_an_expired_token_is_refreshed_and_the_new_refresh_token_stored(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    old_access, old_refresh = connection.access_token, connection.refresh_token

    token = lifecycle.get_access_token(reloaded(connection))

    [call] = refresh_calls(fake_kroger)
    assert call["basic_auth"] is True and call["refresh_token"] == old_refresh
    stored = reloaded(connection)
    assert token.access_token == stored.access_token != old_access
    assert stored.refresh_token not in {"", old_refresh}
    assert stored.token_valid_for() > timedelta(minutes=29)
    assert stored.status == ConnectionStatus.ONLINE
    assert stored.last_refreshed_at is not None
    event = AuditEvent.objects.get(action=AuditAction.REFRESHED, connection=connection)
    assert stored.access_token not in event.detail and stored.refresh_token not in event.detail


def test_a_token_inside_the_safety_margin_is_refreshed(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(seconds=60))
    lifecycle.get_access_token(reloaded(connection))
    assert len(refresh_calls(fake_kroger)) == 1


def test_a_response_without_a_refresh_token_keeps_the_stored_one(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    response = kroger.TokenResponse(access_token="new-access", expires_in=1800, token_type="bearer")
    with mock.patch.object(kroger, "refresh_token", return_value=response):
        lifecycle.get_access_token(reloaded(connection))
    stored = reloaded(connection)
    assert stored.access_token == "new-access"
    assert stored.refresh_token == connection.refresh_token


def test_a_client_credentials_connection_gets_a_new_token(
    cc_client: Any, owner: Any, fake_kroger: FakeKroger
) -> None:
    connection = authorize(cc_connection(cc_client, owner), fake_kroger)
    expire(connection)
    token = lifecycle.get_access_token(reloaded(connection))
    [call] = fake_kroger.token_calls
    assert call["grant_type"] == "client_credentials"
    assert call["scope"] == "product.compact" and call["basic_auth"] is True
    assert token.access_token == reloaded(connection).access_token
    assert reloaded(connection).refresh_token == ""


def test_a_forced_refresh_calls_kroger_even_with_a_valid_token(
    connection: Connection, fake_kroger: FakeKroger, owner: Any
) -> None:
    authorize(connection, fake_kroger)
    token = lifecycle.renew(reloaded(connection), actor=Actor(owner))
    assert len(refresh_calls(fake_kroger)) == 1
    assert token.access_token != connection.access_token
    assert AuditEvent.objects.get(action=AuditAction.REFRESHED).actor == owner


def test_a_short_lived_token_is_not_refreshed_on_every_call(
    connection: Connection, fake_kroger: FakeKroger, caplog: pytest.LogCaptureFixture
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.expires_in = 60  # inside the two-minute safety margin

    tokens = {lifecycle.get_access_token(reloaded(connection)).access_token for _ in range(5)}

    assert len(refresh_calls(fake_kroger)) == 1
    [token] = tokens
    assert token in fake_kroger.access_tokens
    warnings = [r for r in caplog.records if "valid for only 60 seconds" in r.getMessage()]
    assert len(warnings) == 1


def test_a_short_lived_token_is_refreshed_when_half_its_life_is_over(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    fake_kroger.expires_in = 60
    lifecycle.get_access_token(reloaded(connection))
    Connection.objects.filter(pk=connection.pk).update(
        last_refreshed_at=timezone.now() - timedelta(seconds=31),
        token_expires_at=timezone.now() + timedelta(seconds=29),
    )
    lifecycle.get_access_token(reloaded(connection))
    assert len(refresh_calls(fake_kroger)) == 2


def test_an_unauthorized_connection_has_no_token(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(connection)
    assert caught.value.code == "not_authorized"
    assert fake_kroger.token_calls == []


# --- Failure policy ------------------------------------------------------------------------


def test_a_connection_needing_reauthorization_hands_out_no_token_even_a_valid_one(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    make_offline(connection, NEEDS_REAUTHORIZATION)

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "needs_reauthorization"
    assert caught.value.reason.startswith(f"{NEEDS_REAUTHORIZATION}: ")
    assert fake_kroger.token_calls == []


def test_a_token_kroger_refused_in_a_test_is_refreshed_before_it_is_handed_out(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)  # valid for 30 minutes, as far as the portal knows
    fake_kroger.expire_access_tokens()
    assert not lifecycle.run_connection_test(reloaded(connection), actor=Actor()).ok
    assert reloaded(connection).status == ConnectionStatus.OFFLINE

    token = lifecycle.get_access_token(reloaded(connection))

    assert len(refresh_calls(fake_kroger)) == 1
    assert token.access_token != connection.access_token
    assert token.access_token in fake_kroger.access_tokens
    assert reloaded(connection).status == ConnectionStatus.ONLINE


def test_a_refused_token_whose_refresh_fails_is_not_handed_out_and_says_why(
    connection: Connection, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    authorize(connection, fake_kroger)
    fake_kroger.expire_access_tokens()
    lifecycle.run_connection_test(reloaded(connection), actor=Actor())
    fake_kroger.fail_token("500")

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "kroger_unavailable"
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith("Kroger unreachable: ")
    [email] = mail.outbox
    assert "offline" in email.subject


def test_an_offline_connection_backing_off_hands_out_no_token(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    make_offline(connection, "Kroger unreachable: Kroger had a server error (HTTP 500).")
    Connection.objects.filter(pk=connection.pk).update(
        refresh_failures=1, next_refresh_at=timezone.now() + timedelta(minutes=1)
    )

    with pytest.raises(TokenUnavailable) as caught:
        lifecycle.get_access_token(reloaded(connection))

    assert caught.value.code == "kroger_unavailable"
    assert caught.value.reason.startswith("Kroger unreachable: Kroger had a server error")
    assert fake_kroger.token_calls == []
