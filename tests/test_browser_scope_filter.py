"""The scope picker's filter in headless Chromium: what it hides, counts and lets move."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def available(page: Any) -> Any:
    return page.get_by_role("list", name="Available scopes")


def selected(page: Any) -> Any:
    return page.get_by_role("list", name="Selected scopes")


def test_it_hides_the_scopes_that_do_not_match_and_counts_what_is_shown(
    page: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    sign_in(page, owner)
    page.goto("/connections/new/")
    status = page.locator(".picker-status")
    expect(status).to_have_text("Scopes: 3 available, 0 selected.")

    page.get_by_label("Filter scopes").fill("cart")

    expect(available(page).get_by_label("cart.basic:write")).to_be_visible()
    expect(available(page).get_by_label("product.compact")).to_be_hidden()
    expect(available(page).get_by_label("profile.compact")).to_be_hidden()
    expect(status).to_have_text("Scopes: 1 of 3 available and 0 of 0 selected match “cart”.")
    assert_accessible(page)

    # Only names and descriptions match, not the Client credentials notes kept hidden.
    page.get_by_label("Filter scopes").fill("client credentials")
    expect(page.get_by_text("No scopes match “client credentials”.")).to_be_visible()
    page.get_by_label("Filter scopes").fill("no such scope")
    expect(page.get_by_text("No scopes match “no such scope”.")).to_be_visible()
    boxes = page.locator("[data-picker-list=available] input[type=checkbox]")
    expect(boxes).to_have_count(3)
    for box in boxes.all():
        expect(box).to_be_hidden()

    page.get_by_label("Filter scopes").fill("")
    expect(page.get_by_text("No scopes match")).to_be_hidden()
    for box in boxes.all():
        expect(box).to_be_visible()


def test_the_move_buttons_act_only_on_the_scopes_shown(
    page: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    sign_in(page, owner)
    page.goto("/connections/new/")
    # Ticked, then filtered out of sight: ">" must leave it where it is.
    available(page).get_by_label("product.compact").check()
    page.get_by_label("Filter scopes").fill("profile")
    page.get_by_role("button", name="Add selected scopes").click()
    expect(page.locator(".picker-status")).to_contain_text("Nothing to move.")
    expect(selected(page).locator("li")).to_have_count(0)

    page.get_by_role("button", name="Add all scopes").click()
    page.get_by_label("Filter scopes").fill("")
    expect(selected(page).locator("li code")).to_have_text(["profile.compact"])
    expect(available(page).locator("li")).to_have_count(2)
