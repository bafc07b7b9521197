"""Server-side form errors in headless Chromium: a summary at the top, focused, linked."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import Connection, OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import CLIENT_SECRET, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_panel_sends_back_a_focused_summary_linked_to_each_field(
    page: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    sign_in(page, owner)
    page.goto("/connections/new/")
    page.get_by_role("combobox", name="OAuth 2.0 client").select_option(label="Shopping app")
    page.get_by_label("Name your connection").fill("   ")  # blank to the server, not the browser
    page.get_by_role("button", name="Save", exact=True).click()  # and no scope

    summary = page.get_by_role("alert").filter(has_text="Fix 2 problems to continue")
    expect(summary).to_be_focused()
    assert page.title().startswith("Error: Create connection")
    name_link = summary.get_by_role("link", name="Name your connection: This field is required.")
    expect(name_link).to_have_attribute("href", "#id_name")
    scopes_link = summary.get_by_role("link", name="Scopes: Choose at least one scope.")
    expect(scopes_link).to_have_attribute("href", "#id_scopes")
    # Each field names its error for assistive technology, the Scopes fieldset too.
    name = page.get_by_label("Name your connection")
    assert name.get_attribute("aria-describedby") == "id_name_error"
    expect(page.locator("#id_name_error")).to_have_text("This field is required.")
    scopes = page.get_by_role("group", name="Scopes")
    assert scopes.get_attribute("aria-describedby") == "id_scopes_error"
    expect(page.locator("#id_scopes_error")).to_have_text("Choose at least one scope.")
    assert_accessible(page)

    name.fill("Weekly shop")
    page.get_by_role("list", name="Available scopes").get_by_label("product.compact").check()
    page.get_by_role("button", name="Add selected scopes").click()
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/connections/*-*/")
    assert not page.title().startswith("Error")
    assert Connection.objects.get().name == "Weekly shop"


def test_the_client_page_sends_back_a_summary_too(page: Any, owner: Any) -> None:
    sign_in(page, owner)
    page.goto("/clients/new/")
    page.get_by_label("Name").fill("Pantry app")
    page.get_by_label("Client ID").fill("   ")
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.get_by_role("button", name="Save", exact=True).click()

    summary = page.get_by_role("alert").filter(has_text="to continue")
    expect(summary).to_be_focused()
    assert page.title().startswith("Error: Add OAuth 2.0 client")
    expect(summary.get_by_role("link", name="Client ID: This field is required.")).to_be_visible()
    assert_accessible(page)
