"""Dates: one format with the zone, a relative form, seconds in History, the reader's zone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from connections_app.models import AuditAction, AuditEvent, Connection
from connections_app.templatetags.portal_dates import relative, timestamp
from tests.accessibility import assert_accessible
from tests.conftest import client_for, sign_in
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger

NOW = datetime(2026, 12, 1, 14, 5, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(seconds=20), "now"),
        (timedelta(minutes=29, seconds=10), "in 29 min"),
        (-timedelta(minutes=3), "3 min ago"),
        (timedelta(minutes=89), "in 89 min"),
        (-timedelta(hours=5), "5 h ago"),
        (timedelta(days=1), "in 24 h"),
        (-timedelta(days=1, hours=13), "2 days ago"),
        (timedelta(days=30), "in 30 days"),
    ],
)
def test_it_says_how_far_a_moment_is(offset: timedelta, text: str) -> None:
    assert relative(NOW + offset, now=NOW) == text


def test_it_writes_the_zone_and_the_machine_readable_datetime(settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    with timezone.override("Europe/Berlin"):
        html = str(timestamp(NOW))
        with_seconds = str(timestamp(NOW, "seconds"))
    assert '<time datetime="2026-12-01T15:05:09+01:00" data-timestamp>' in html
    assert ">2026-12-01 15:05 CET</time>" in html
    assert "data-seconds>2026-12-01 15:05:09 CET</time>" in with_seconds
    assert timestamp(None) == "—"


@pytest.mark.django_db
def test_history_shows_seconds_and_the_token_expiry_renews_automatically(
    client: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    AuditEvent.record(AuditAction.TESTED, actor=owner, connection=connection)
    page = client_for(client, owner).get(f"/connections/{connection.code}/").content.decode()

    event = AuditEvent.objects.get(action=AuditAction.TESTED)
    assert f"data-seconds>{event.at:%Y-%m-%d %H:%M:%S} UTC</time>" in page
    assert f">{connection.token_expires_at:%Y-%m-%d %H:%M} UTC</time>" in page
    assert "· in 30 min</span>" in page
    assert "renews automatically" in page
    assert "<dt>Last authorized</dt>" in page


@pytest.mark.django_db
def test_a_connection_never_authorized_does_not_claim_to_renew(
    client: Any, owner: Any, connection: Connection
) -> None:
    page = client_for(client, owner).get(f"/connections/{connection.code}/").content.decode()
    assert "renews automatically" not in page


@pytest.fixture
def page_in_new_york(
    page: Any, browser: Any, live_server: Any, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Like ``page`` (whose settings it reuses), for a reader in New York."""
    context = browser.new_context(base_url=live_server.url, timezone_id="America/New_York")
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_reader_sees_dates_in_their_own_zone(
    page_in_new_york: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    page = page_in_new_york
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=29, seconds=15))
    connection.authorized_at = datetime(2026, 1, 15, 17, 30, 5, tzinfo=UTC)
    connection.save(update_fields=["authorized_at"])
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")

    authorized = page.locator("dt:has-text('Last authorized') + dd time")
    assert authorized.inner_text() == "2026-01-15 12:30 EST"
    assert authorized.get_attribute("title") == "2026-01-15 17:30 UTC"  # the portal's zone
    expires = page.locator("dt:has-text('Token expires') + dd")
    assert "· in 29 min" in expires.inner_text()
    assert expires.locator("time").inner_text().endswith(" EST")
    assert_accessible(page)
