"""The accessibility audit itself (tests/accessibility.py), and the pages no other browser
test walks through: sign-in, sign-up and the admin pages the portal customises."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import Connection
from tests.accessibility import AXE_SCRIPT, AXE_VERSION, assert_accessible
from tests.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGE = """<!DOCTYPE html><html lang="en"><head><title>Sample</title>{head}</head>
<body><main><h1>Sample</h1>{body}</main></body></html>"""


def test_it_lists_each_serious_violation_with_the_element_and_the_rule(page: Any) -> None:
    page.set_content(PAGE.format(head="", body='<input type="text" id="unnamed">'))

    with pytest.raises(AssertionError) as failure:
        assert_accessible(page)

    report = str(failure.value)
    assert "[critical] label: Form elements must have labels" in report
    assert "#unnamed" in report
    assert "dequeuniversity.com/rules/axe/4.14/label" in report


def test_it_passes_a_page_without_serious_violations(page: Any) -> None:
    body = '<label for="named">Name</label><input type="text" id="named">'
    page.set_content(PAGE.format(head="", body=body))
    assert_accessible(page)


def test_it_audits_the_dark_colour_scheme_too_and_restores_the_scheme(page: Any) -> None:
    dark_only = (
        "<style>@media (prefers-color-scheme: dark) { p { color: #333; background: #222; } }"
        "</style>"
    )
    page.set_content(PAGE.format(head=dark_only, body="<p>Barely readable at night</p>"))

    with pytest.raises(AssertionError) as failure:
        assert_accessible(page)

    report = str(failure.value)
    assert "in the dark colour scheme" in report
    assert "in the light colour scheme" not in report
    assert "color-contrast" in report
    assert page.evaluate("matchMedia('(prefers-color-scheme: light)').matches")


def test_the_vendored_axe_is_the_pinned_version_with_its_licence() -> None:
    assert AXE_SCRIPT.read_text(encoding="utf-8").startswith(f"/*! axe v{AXE_VERSION}")
    assert "Mozilla Public License" in (AXE_SCRIPT.parent / "LICENSE").read_text(encoding="utf-8")


def test_sign_in_and_sign_up_pages_are_accessible(page: Any) -> None:
    page.goto("/accounts/signup/")
    assert_accessible(page)
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign In").click()
    page.get_by_text("not correct").wait_for()
    assert_accessible(page)


def test_the_admin_pages_the_portal_customises_are_accessible(
    page: Any, admin_user: Any, connection: Connection
) -> None:
    sign_in(page, admin_user)
    page.goto("/admin/connections_app/servicekey/add/")
    # The filter box's magnifier icon keeps its label as an image.
    expect(page.locator(".selector .help-tooltip").first).to_have_attribute("role", "img")
    # The two expiry boxes are named after the field.
    assert page.get_by_label("Expires at: date").count() == 1
    assert page.get_by_label("Expires at: time").count() == 1
    assert_accessible(page)
    page.goto(f"/admin/connections_app/connection/{connection.pk}/change/")
    expect(page.locator(".selector .help-tooltip").first).to_have_attribute("role", "img")
    assert_accessible(page)
    page.goto("/admin/connections_app/oauthclient/add/")
    assert_accessible(page)
