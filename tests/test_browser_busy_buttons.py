"""Buttons of slow posts in headless Chromium: relabelled, disabled, aria-busy, pressed once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import Connection, OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Pressed and read in one step while the post is pending: Playwright's own clicks and
# locators wait for the next page first.
PRESS = """([form, button]) => {
    button.click();
    return new Promise((resolve) => setTimeout(() => {
        const state = {
            busy: form.getAttribute("aria-busy"),
            buttons: Array.from(form.querySelectorAll("button:not(.default-submit)")).map(
                (each) => [each.textContent, each.disabled]),
        };
        // A second submit, as a double click or Enter would send: it must be ignored.
        form.requestSubmit();
        button.click();
        resolve(state);
    }, 50));
}"""


def press(button: Any) -> dict[str, Any]:
    """Click ``button``, read its form's state 50 ms later with the post still pending, then
    submit the form again."""
    form = button.locator("xpath=ancestor::form")
    state: dict[str, Any] = button.page.evaluate(
        PRESS, [form.element_handle(), button.element_handle()]
    )
    return state


def test_refresh_token_says_refreshing_and_is_sent_once_while_kroger_is_slow(
    page: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    fake_kroger.token_delay = 1.5
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")
    assert_accessible(page)

    state = press(page.get_by_role("button", name="Refresh token"))

    assert state == {"busy": "true", "buttons": [["Refreshing…", True]]}

    page.locator(".messages").get_by_text("Token refreshed").wait_for()
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    expect(page.get_by_role("button", name="Refresh token")).to_be_enabled()


def test_test_connection_says_testing_while_it_waits(
    page: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=-_minute())
    fake_kroger.token_delay = 1.5  # the test renews the expired token first
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")

    state = press(page.get_by_role("button", name="Test connection"))

    assert state == {"busy": "true", "buttons": [["Testing…", True]]}
    page.locator(".messages").get_by_text("Kroger answered").wait_for()
    assert fake_kroger.api_calls == ["products"]


def _minute() -> Any:
    from datetime import timedelta

    return timedelta(minutes=1)


def fill_panel(page: Any, name: str) -> None:
    page.goto("/connections/new/")
    page.get_by_label("Environment").select_option("certification")
    page.get_by_role("combobox", name="OAuth 2.0 client").select_option(label="Catalogue app")
    page.get_by_role("list", name="Available scopes").get_by_label("product.compact").check()
    page.get_by_role("button", name="Add selected scopes").click()
    page.get_by_label("Name your connection").fill(name)


def test_save_and_authorize_is_the_primary_action_and_busy_while_kroger_answers(
    page: Any, owner: Any, cc_client: OAuthClient, fake_kroger: FakeKroger
) -> None:
    fake_kroger.register_client(cc_client.client_id, cc_client.client_secret, {"product.compact"})
    fake_kroger.token_delay = 1.5
    sign_in(page, owner)
    fill_panel(page, "Catalogue feed")
    primary = page.locator(".actions button.primary")
    expect(primary).to_have_text("Save & authorize")

    state = press(primary)

    assert state["busy"] == "true"
    assert ["Authorizing…", True] in state["buttons"]
    assert ["Save", True] in state["buttons"]
    page.get_by_text("“Catalogue feed” is Online").wait_for()
    assert Connection.objects.get().name == "Catalogue feed"
    assert len(fake_kroger.token_calls_for("client_credentials")) == 1


def test_enter_in_the_panel_saves_and_authorizes(
    page: Any, owner: Any, cc_client: OAuthClient, fake_kroger: FakeKroger
) -> None:
    fake_kroger.register_client(cc_client.client_id, cc_client.client_secret, {"product.compact"})
    sign_in(page, owner)
    fill_panel(page, "Catalogue feed")

    page.get_by_label("Name your connection").press("Enter")

    page.wait_for_url(re.compile(r"/connections/[0-9a-f-]+/$"))
    page.get_by_text("“Catalogue feed” is Online").wait_for()
    assert len(fake_kroger.token_calls_for("client_credentials")) == 1
