"""The connection page's Test connection, Refresh token and Disconnect, in headless Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import Connection, ConnectionStatus
from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def test_an_editor_tests_refreshes_and_disconnects_a_connection(
    page: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")
    assert_accessible(page)
    messages = page.locator(".messages")
    history = page.locator("section[aria-labelledby=history-title]")

    page.get_by_role("button", name="Test connection").click()
    messages.get_by_text("Kroger answered: 1 products").wait_for()
    assert fake_kroger.api_calls == ["products"]
    assert_accessible(page)  # with a message shown

    page.get_by_role("button", name="Refresh token").click()
    messages.get_by_text("Token refreshed").wait_for()
    assert history.get_by_text("Token refreshed").count() == 1
    assert history.get_by_text("Connection tested").count() == 1
    assert reloaded(connection).access_token != connection.access_token

    page.get_by_role("link", name="Disconnect").click()
    page.get_by_text("Kroger has no endpoint to revoke a grant").wait_for()
    assert_accessible(page)
    page.get_by_role("button", name="Disconnect").click()
    messages.get_by_text("is disconnected").wait_for()
    assert page.locator(".status").first.inner_text() == "Not authorized"
    assert page.get_by_role("button", name="Test connection").count() == 0
    assert_accessible(page)
    stored = reloaded(connection)
    assert stored.status == ConnectionStatus.NOT_AUTHORIZED and stored.refresh_token == ""
