"""Small things people notice, in headless Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.forms import OAuthClientForm
from connections_app.models import AuditAction, AuditEvent, Connection, OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_detail_pages_mark_their_section_and_delete_looks_dangerous(
    page: Any, owner: Any, connection: Connection
) -> None:
    AuditEvent.record(AuditAction.TESTED, actor=owner, connection=connection)
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Connections")).to_have_attribute("aria-current", "true")
    assert nav.get_by_role("link", name="OAuth 2.0 clients").get_attribute("aria-current") is None
    delete = page.get_by_role("link", name="Delete")
    assert delete.evaluate("a => getComputedStyle(a).color") == "rgb(180, 35, 24)"
    # People are shown by e-mail in History.
    history = page.locator("section[aria-labelledby=history-title]")
    expect(history.get_by_role("cell", name="owner@example.com")).to_be_visible()

    page.goto(f"/clients/{connection.client.code}/")
    expect(nav.get_by_role("link", name="OAuth 2.0 clients")).to_have_attribute(
        "aria-current", "true"
    )
    page.goto("/clients/")
    expect(nav.get_by_role("link", name="OAuth 2.0 clients")).to_have_attribute(
        "aria-current", "page"
    )


def test_the_client_dialog_has_a_visible_close_button_and_keeps_save_in_view(
    page: Any, owner: Any
) -> None:
    page.set_viewport_size({"width": 800, "height": 480})
    sign_in(page, owner)
    page.goto("/connections/new/")
    page.get_by_role("button", name="Add OAuth 2.0 client").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("button", name="Save", exact=True)).to_be_in_viewport()
    assert_accessible(page)
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Add OAuth 2.0 client")).to_be_focused()


def test_create_and_authorize_ends_with_one_message(
    page: Any, owner: Any, cc_client: OAuthClient, fake_kroger: FakeKroger
) -> None:
    fake_kroger.register_client(cc_client.client_id, cc_client.client_secret, {"product.compact"})
    sign_in(page, owner)
    page.goto("/connections/new/")
    page.get_by_label("Name your connection").fill("Catalogue feed")
    page.get_by_label("Environment").select_option("certification")
    page.get_by_role("combobox", name="OAuth 2.0 client").select_option(label="Catalogue app")
    page.get_by_role("list", name="Available scopes").get_by_label("product.compact").check()
    page.get_by_role("button", name="Add selected scopes").click()
    page.get_by_role("button", name="Save & authorize").click()

    page.get_by_text("“Catalogue feed” is Online").wait_for()
    expect(page.locator(".messages li")).to_have_count(1)


def test_the_stored_secret_hint_has_no_nested_parentheses(oauth_client: OAuthClient) -> None:
    help_text = str(OAuthClientForm(instance=oauth_client).fields["client_secret"].help_text)
    assert help_text.startswith("Leave blank to keep the stored secret: set (fingerprint ")
    assert "((" not in help_text and "))" not in help_text
