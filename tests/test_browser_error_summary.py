"""Server-side form errors in headless Chromium: a summary at the top, focused, linked."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import Connection, OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import CLIENT_SECRET, PASSWORD, sign_in

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


def assert_error_summary(page: Any, title: str, links: dict[str, str]) -> None:
    """The page came back with a focused summary, an "Error:" title, and a link for each
    field error (link text: field id) to a field described by that error."""
    summary = page.get_by_role("alert").filter(has_text="to continue")
    expect(summary).to_be_focused()
    assert page.title().startswith(f"Error: {title}"), page.title()
    for text, field_id in links.items():
        expect(summary.get_by_role("link", name=text)).to_have_attribute("href", f"#{field_id}")
        described_by = page.locator(f"#{field_id}").get_attribute("aria-describedby") or ""
        assert f"{field_id}_error" in described_by.split(), (field_id, described_by)
        expect(page.locator(f"#{field_id}_error")).to_be_visible()
    assert_accessible(page)


def test_the_service_key_form_sends_back_a_summary(page: Any, admin_user: Any) -> None:
    sign_in(page, admin_user)
    page.goto("/service-keys/new/")
    page.get_by_label("May call Kroger through the portal (the proxy)").uncheck()
    page.get_by_role("button", name="Create key").click()

    assert_error_summary(
        page,
        "New service key",
        {
            "Name: This field is required.": "id_name",
            "Connections it may use: Choose the connections the key may use, or all.": (
                "id_connections"
            ),
            "May call Kroger through the portal (the proxy): Choose what the key may do": (
                "id_may_proxy"
            ),
        },
    )
    expect(page.get_by_role("group", name="Connections it may use")).to_have_accessible_description(
        "Choose the connections the key may use, or all."
    )


def test_the_webhook_form_sends_back_a_summary(page: Any, admin_user: Any) -> None:
    sign_in(page, admin_user)
    page.goto("/webhooks/new/")
    page.get_by_label("URL").fill("ftp://hooks.example.com/")
    page.get_by_role("button", name="Create endpoint").click()

    assert_error_summary(page, "New webhook endpoint", {"URL:": "id_url"})


def test_the_audit_log_filter_sends_back_a_summary(page: Any, admin_user: Any) -> None:
    sign_in(page, admin_user)
    page.goto("/audit/?since=yesterday")

    summary = page.get_by_role("alert").filter(has_text="to continue")
    expect(summary).to_be_focused()
    assert page.title().startswith("Error: Audit log")
    assert_accessible(page)


def test_sign_in_sends_back_a_summary(page: Any, owner: Any) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign In").click()

    assert_error_summary(
        page,
        "Sign in",
        {
            "Email: This field is required.": "id_login",
            "Password: This field is required.": ("id_password"),
        },
    )
    page.get_by_label("Email").fill(owner.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign In").click()

    summary = page.get_by_role("alert").filter(has_text="Fix 1 problem to continue")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("not correct")
    assert page.title().startswith("Error: Sign in")
    assert_accessible(page)


def test_sign_up_sends_back_a_summary(page: Any) -> None:
    page.goto("/accounts/signup/")
    page.get_by_label("Email").fill("not an address")
    page.get_by_role("button", name="Sign Up").click()

    assert_error_summary(
        page,
        "Signup",
        {"Email: Enter a valid email address.": "id_email", "Password:": "id_password1"},
    )


def test_password_reset_sends_back_a_summary(page: Any) -> None:
    page.goto("/accounts/password/reset/")
    page.get_by_label("Email").fill("not an address")
    page.get_by_role("button", name="Reset My Password").click()

    assert_error_summary(
        page, "Password Reset", {"Email: Enter a valid email address.": "id_email"}
    )


def test_a_wrong_authenticator_code_sends_back_a_summary(page: Any, owner: Any) -> None:
    sign_in(page, owner)
    page.goto("/accounts/2fa/totp/activate/")
    page.wait_for_url("**/accounts/reauthenticate/**")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Confirm").click()
    assert_error_summary(page, "Confirm Access", {"Password:": "id_password"})
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/accounts/2fa/totp/activate/")

    page.get_by_label("Authenticator code").fill("000000")
    page.get_by_role("button", name="Activate").click()

    assert_error_summary(page, "Activate Authenticator App", {"Authenticator code:": "id_code"})


def test_the_daily_limits_form_sends_back_a_summary(
    page: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    sign_in(page, owner)
    page.goto(f"/clients/{oauth_client.code}/")
    page.get_by_role("spinbutton", name="Locations").fill("-5")
    page.get_by_role("button", name="Save limits").click()

    assert_error_summary(
        page,
        "Shopping app",
        {"Locations: Enter 0 or more calls a day (0 stops every call).": "id_locations"},
    )


def test_a_password_change_sends_back_one_summary(page: Any, owner: Any) -> None:
    sign_in(page, owner)
    page.goto("/accounts/password/change/")
    page.get_by_label("Current Password").fill("not the password")
    page.get_by_role("button", name="Change Password").click()

    assert_error_summary(page, "Change Password", {"Current Password:": "id_oldpassword"})


def test_adding_a_bad_email_address_sends_back_one_summary(page: Any, owner: Any) -> None:
    sign_in(page, owner)
    page.goto("/accounts/email/")
    page.get_by_label("Email").fill("not an address")
    page.get_by_role("button", name="Add Email").click()

    assert page.locator("[data-error-summary]").count() == 1
    assert_error_summary(
        page, "Email Addresses", {"Email: Enter a valid email address.": "id_email"}
    )
