"""The "Create connection" panel in headless Chromium, driven by its labels as people use it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import Connection, OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import ARTIFACTS, CLIENT_SECRET, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

CART_RULE = (
    "When the OAuth 2.0 client uses Client credentials, the cart.basic:write scope cannot be "
    "selected."
)


@pytest.fixture
def panel(page: Any) -> Iterator[Any]:
    """The browser page, failing the test if the Content-Security-Policy refused anything."""
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
    yield page
    assert problems == []


@pytest.fixture
def page_without_js(
    page: Any, browser: Any, live_server: Any, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Like ``page`` (whose settings it reuses) but with JavaScript disabled."""
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(10_000)
    the_page = context.new_page()
    yield the_page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{request.node.name}-nojs.png"
        the_page.screenshot(path=str(path), full_page=True)
    context.close()


def available(page: Any) -> Any:
    return page.get_by_role("list", name="Available scopes")


def selected(page: Any) -> Any:
    return page.get_by_role("list", name="Selected scopes")


def scope_names(list_locator: Any) -> list[str]:
    return [
        text.strip() for text in list_locator.locator("li:not([hidden]) code").all_inner_texts()
    ]


def test_a_client_added_through_plus_and_scopes_picked_with_the_buttons(
    panel: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    sign_in(panel, owner)
    panel.goto("/")
    panel.get_by_role("link", name="Create connection").click()
    # Wait for "load": the panel's scripts must have run before "+" opens the dialog.
    panel.wait_for_url("**/connections/new/")
    assert_accessible(panel)
    panel.get_by_label("Name your connection").fill("Weekly shop")
    panel.get_by_label("Environment").select_option(label="Production (https://api.kroger.com/v1/)")

    panel.get_by_role("button", name="Add OAuth 2.0 client").click()
    dialog = panel.get_by_role("dialog", name="Add OAuth 2.0 client")
    dialog.get_by_label("Name").fill("Pantry app")
    dialog.get_by_label("Environment").select_option("certification")
    dialog.get_by_label("Grant type").select_option(label="Authorization code")
    dialog.get_by_label("Client secret").fill(CLIENT_SECRET)
    dialog.get_by_role("button", name="Save", exact=True).click()
    # The client ID was left out: the dialog says so next to the field and keeps the rest.
    expect(dialog.get_by_text("This field is required.").last).to_be_visible()
    assert dialog.get_by_label("Name").input_value() == "Pantry app"
    # Focus is on the summary of what to fix, whose link leads to the field.
    summary = dialog.get_by_role("alert")
    expect(summary).to_be_focused()
    expect(
        summary.get_by_role("link", name="Client ID: This field is required.")
    ).to_have_attribute("href", "#client_client_id")
    assert_accessible(panel)  # the dialog, with its errors
    dialog.get_by_label("Client ID").fill("pantry-app-42")
    dialog.get_by_label("Client secret").fill(CLIENT_SECRET)
    dialog.get_by_role("button", name="Save", exact=True).click()
    dialog.wait_for(state="hidden")

    client_select = panel.get_by_role("combobox", name="OAuth 2.0 client")
    created = OAuthClient.objects.get(name="Pantry app")
    assert client_select.input_value() == str(created.code)
    assert panel.get_by_label("Environment").input_value() == "certification"
    assert panel.get_by_label("Name your connection").input_value() == "Weekly shop"
    expect(panel.get_by_text("OAuth 2.0 client “Pantry app” saved and selected.")).to_be_visible()

    # ">" moves the ticked scope; by keyboard: Space ticks, Enter presses the button.
    available(panel).get_by_label("product.compact").focus()
    panel.keyboard.press("Space")
    panel.get_by_role("button", name="Add selected scopes").focus()
    panel.keyboard.press("Enter")
    assert scope_names(selected(panel)) == ["product.compact"]
    expect(panel.get_by_text("Added 1 scope. Scopes: 2 available, 1 selected.")).to_be_visible()
    assert_accessible(panel)
    # The filter narrows both lists; "»" adds every scope shown.
    panel.get_by_label("Filter scopes").fill("cart")
    panel.get_by_role("button", name="Add all scopes").click()
    assert scope_names(selected(panel)) == ["cart.basic:write"]  # product.compact is filtered
    panel.get_by_label("Filter scopes").fill("")
    assert scope_names(selected(panel)) == ["cart.basic:write", "product.compact"]
    assert scope_names(available(panel)) == ["profile.compact"]
    panel.get_by_role("button", name="Add all scopes").click()
    panel.get_by_role("button", name="Remove all scopes").click()
    assert scope_names(selected(panel)) == []
    panel.get_by_role("button", name="Add all scopes").click()
    selected(panel).get_by_label("profile.compact").check()
    panel.get_by_role("button", name="Remove selected scopes").click()

    panel.get_by_role("button", name="Save", exact=True).click()
    panel.wait_for_url("**/connections/*-*/")
    connection = Connection.objects.get(name="Weekly shop")
    assert connection.client == created
    assert connection.environment == "certification"
    assert connection.scope_string() == "cart.basic:write product.compact"
    expect(panel.get_by_text("Connection “Weekly shop” created.")).to_be_visible()
    assert_accessible(panel)


def test_the_client_credentials_rule_is_shown_and_enforced(
    panel: Any, owner: Any, oauth_client: OAuthClient, cc_client: OAuthClient
) -> None:
    sign_in(panel, owner)
    panel.goto("/connections/new/")
    panel.get_by_label("Name your connection").fill("Catalogue feed")
    client_select = panel.get_by_role("combobox", name="OAuth 2.0 client")
    # Only the clients of the chosen environment are offered.
    panel.get_by_label("Environment").select_option("production")
    assert client_select.locator("option:not([disabled])").all_inner_texts() == [
        "Choose a client",
        "Shopping app",
    ]
    client_select.select_option(label="Shopping app")
    panel.get_by_role("button", name="Add all scopes").click()
    assert len(scope_names(selected(panel))) == 3

    panel.get_by_label("Environment").select_option("certification")
    assert client_select.input_value() == ""  # the production client no longer fits
    client_select.select_option(label="Catalogue app")
    # Shopper scopes go back, disabled, with the reason next to them.
    assert scope_names(selected(panel)) == ["product.compact"]
    cart = available(panel).get_by_label("cart.basic:write")
    assert cart.is_disabled()
    expect(available(panel).get_by_text(CART_RULE)).to_be_visible()
    assert_accessible(panel)
    expect(panel.get_by_text("Removed cart.basic:write, profile.compact")).to_be_visible()
    panel.get_by_role("button", name="Remove all scopes").click()
    panel.get_by_role("button", name="Add all scopes").click()
    assert scope_names(selected(panel)) == ["product.compact"]

    # Whatever the browser sends, the server refuses it.
    panel.locator("[data-connection-panel]").evaluate(
        """form => {
            const forced = document.createElement("input");
            forced.type = "hidden"; forced.name = "scopes"; forced.value = "cart.basic:write";
            form.append(forced);
        }"""
    )
    panel.get_by_role("button", name="Save", exact=True).click()
    expect(panel.get_by_text(CART_RULE).first).to_be_visible()
    assert panel.get_by_label("Name your connection").input_value() == "Catalogue feed"
    assert_accessible(panel)  # the panel as the server sent it back, with its error
    assert not Connection.objects.exists()


def test_the_pencil_edits_the_client_without_losing_the_panel_input(
    panel: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    sign_in(panel, owner)
    panel.goto("/connections/new/")
    assert panel.get_by_role("button", name="Edit OAuth 2.0 client").is_disabled()
    panel.get_by_label("Name your connection").fill("Store cart")
    panel.get_by_role("combobox", name="OAuth 2.0 client").select_option(label="Shopping app")
    available(panel).get_by_label("cart.basic:write").check()
    panel.get_by_role("button", name="Add selected scopes").click()

    panel.get_by_role("button", name="Edit OAuth 2.0 client").click()
    dialog = panel.get_by_role("dialog", name="Edit OAuth 2.0 client “Shopping app”")
    assert dialog.get_by_label("Client secret").input_value() == ""
    expect(dialog.get_by_text("Leave blank to keep the stored secret")).to_be_visible()
    assert_accessible(panel)
    assert CLIENT_SECRET not in dialog.inner_html()
    dialog.get_by_label("Name").fill("Shopping app v2")
    dialog.get_by_role("button", name="Save", exact=True).click()
    dialog.wait_for(state="hidden")

    client_select = panel.get_by_role("combobox", name="OAuth 2.0 client")
    assert client_select.input_value() == str(oauth_client.code)
    assert client_select.locator("option:checked").inner_text() == "Shopping app v2"
    assert panel.get_by_label("Name your connection").input_value() == "Store cart"
    assert scope_names(selected(panel)) == ["cart.basic:write"]
    oauth_client.refresh_from_db()
    assert oauth_client.name == "Shopping app v2"
    assert oauth_client.client_secret == CLIENT_SECRET

    # Cancel closes the dialog and changes nothing.
    panel.get_by_role("button", name="Edit OAuth 2.0 client").click()
    panel.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    panel.get_by_role("dialog").wait_for(state="hidden")
    panel.get_by_role("button", name="Save & authorize").wait_for()
    panel.get_by_role("button", name="Save", exact=True).click()
    panel.wait_for_url("**/connections/*-*/")
    assert Connection.objects.get().scope_string() == "cart.basic:write"


def test_the_copy_button_copies_the_redirect_uri(panel: Any, owner: Any) -> None:
    panel.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(panel, owner)
    panel.goto("/clients/new/")
    panel.get_by_role("button", name="Copy").click()
    expect(panel.get_by_text("Copied.")).to_be_visible()
    assert_accessible(panel)
    copied = panel.evaluate("navigator.clipboard.readText()")
    assert copied.endswith("/oauth/callback/")


def test_the_panel_works_without_javascript(
    page_without_js: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    page = page_without_js
    sign_in(page, owner)
    page.goto("/connections/new/")
    # A plain list of checkboxes, no dual-list picker.
    assert page.get_by_role("list", name="Available scopes").count() == 0
    page.get_by_label("Name your connection").fill("Weekly shop")
    page.get_by_label("product.compact").check()

    page.get_by_role("button", name="Add OAuth 2.0 client").click()
    page.wait_for_url("**/clients/new/?next=panel")
    page.get_by_label("Name").fill("Pantry app")
    page.get_by_label("Environment").select_option("production")
    page.get_by_label("Client ID").fill("pantry-app-42")
    page.get_by_label("Client secret").fill(CLIENT_SECRET)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/connections/new/?restore=1")
    assert page.get_by_label("Name your connection").input_value() == "Weekly shop"
    assert page.get_by_label("product.compact").is_checked()
    created = OAuthClient.objects.get(name="Pantry app")
    assert page.get_by_role("combobox", name="OAuth 2.0 client").input_value() == str(created.code)

    page.get_by_role("button", name="Edit OAuth 2.0 client").click()
    page.wait_for_url(f"**/clients/{created.code}/edit/?next=panel")
    page.get_by_label("Name").fill("Pantry app v2")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/connections/new/?restore=1")
    assert page.get_by_label("Name your connection").input_value() == "Weekly shop"

    page.get_by_label("cart.basic:write").check()
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url("**/connections/*-*/")
    connection = Connection.objects.get(name="Weekly shop")
    assert connection.client.name == "Pantry app v2"
    assert connection.scope_string() == "cart.basic:write product.compact"
