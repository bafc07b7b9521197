"""The pages at a phone's width (390 by 844 CSS pixels), in headless Chromium."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import Connection, OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_connections_list_is_cards_with_the_status_in_view(
    page: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    page.set_viewport_size(PHONE)
    sign_in(page, owner)
    page.goto("/")

    assert no_sideways_scroll(page)
    status = page.locator("td.card-status .status")
    box = status.bounding_box()
    assert status.inner_text() == "Online"
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    # Each value is labelled with its column's name, and the header row is out of sight.
    label = page.locator("td.card-status").evaluate(
        "cell => getComputedStyle(cell, '::before').content"
    )
    assert label == '"Status"'
    head = page.locator("table.cards thead").bounding_box()
    assert head is not None and head["height"] <= 1  # kept for screen readers only
    assert_accessible(page)

    page.set_viewport_size({"width": 1280, "height": 800})
    head = page.locator("table.cards thead").bounding_box()
    assert head is not None and head["height"] > 10


def test_the_header_keeps_the_name_and_sign_out_on_a_line_and_wraps_the_sections(
    page: Any, owner: Any, connection: Connection
) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, owner)
    page.goto("/")

    brand = page.get_by_role("link", name="Kroger connections").bounding_box()
    sign_out = page.get_by_role("button", name="Sign out").bounding_box()
    main_nav = page.get_by_role("navigation", name="Main")
    nav = main_nav.bounding_box()
    assert brand and sign_out and nav
    assert abs(brand["y"] - sign_out["y"]) < brand["height"]  # one line
    assert nav["y"] >= brand["y"] + brand["height"]  # the sections below it
    # The sections wrap onto a second line rather than scrolling sideways out of view.
    assert main_nav.evaluate("nav => nav.scrollWidth <= nav.clientWidth")
    for link in main_nav.get_by_role("link").all():
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    header = page.locator(".site-header").bounding_box()
    assert header and header["height"] < 3 * brand["height"] + 40  # three lines at most
    # The account pages are still one tap away, on the sections' lines.
    for name in ("Two-factor", "Sessions"):
        assert main_nav.get_by_role("link", name=name).count()
    page.set_viewport_size({"width": 1280, "height": 800})
    assert not main_nav.get_by_role("link", name="Sessions").count()
    assert page.locator(".account").get_by_role("link", name="Sessions").is_visible()


def test_detail_values_break_between_words(
    page: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    page.set_viewport_size(PHONE)
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")

    expiry = page.locator("dt:has-text('Token expires') + dd")
    assert "renews automatically" in expiry.inner_text()
    lines = expiry.evaluate(
        """dd => {
            const range = document.createRange();
            const text = Array.from(dd.querySelectorAll("span")).pop().firstChild;
            const words = [];
            for (const match of text.data.matchAll(/\\S+/g)) {
                range.setStart(text, match.index);
                range.setEnd(text, match.index + match[0].length);
                words.push(range.getClientRects().length);
            }
            return words;
        }"""
    )
    assert lines and all(rects == 1 for rects in lines)  # no word split over two lines
    assert no_sideways_scroll(page)
    assert_accessible(page)


def test_the_picker_arrows_point_down_and_up_when_the_lists_are_stacked(
    page: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, owner)
    page.goto("/connections/new/")
    available = page.get_by_role("list", name="Available scopes").bounding_box()
    selected = page.get_by_role("list", name="Selected scopes").bounding_box()
    assert available and selected and selected["y"] > available["y"] + available["height"]

    add = page.get_by_role("button", name="Add selected scopes")
    # ">" turned a quarter clockwise points down, towards the Selected list.
    assert add.evaluate("b => getComputedStyle(b).transform") == "matrix(0, 1, -1, 0, 0, 0)"
    assert no_sideways_scroll(page)
    assert_accessible(page)

    page.set_viewport_size({"width": 1280, "height": 800})
    assert add.evaluate("b => getComputedStyle(b).transform") == "none"
