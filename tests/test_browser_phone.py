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


SECTIONS = ["Connections", "OAuth 2.0 clients"]
ADMIN_SECTIONS = [*SECTIONS, "Service keys", "Webhooks", "Audit log", "Admin"]
ACCOUNT_LINKS = ["Two-factor", "Sessions"]


def header_is_one_line(page: Any) -> bool:
    """The header's content is no taller than its tallest item, and the portal's name and the
    Menu button share that line."""
    return bool(
        page.evaluate(
            """() => {
                const header = document.querySelector(".site-header");
                const style = getComputedStyle(header);
                const inner = header.getBoundingClientRect().height
                    - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)
                    - parseFloat(style.borderTopWidth) - parseFloat(style.borderBottomWidth);
                const brand = header.querySelector(".brand").getBoundingClientRect();
                const menu = header.querySelector(".site-menu > summary").getBoundingClientRect();
                const sameLine = brand.top < menu.bottom && menu.top < brand.bottom;
                return sameLine && inner <= Math.max(brand.height, menu.height) + 1;
            }"""
        )
    )


@pytest.mark.parametrize("width", [390, 320])
@pytest.mark.parametrize("role", ["viewer", "editor", "administrator"])
def test_the_header_is_one_line_with_the_sections_behind_menu(
    page: Any, teammate: Any, owner: Any, admin_user: Any, role: str, width: int
) -> None:
    person = {"viewer": teammate, "editor": owner, "administrator": admin_user}[role]
    sections = ADMIN_SECTIONS if role == "administrator" else SECTIONS
    page.set_viewport_size({"width": width, "height": 640})
    sign_in(page, person)
    page.goto("/")

    menu = page.locator(".site-header summary")
    main_nav = page.get_by_role("navigation", name="Main")
    assert menu.inner_text().strip() == "Menu"
    assert header_is_one_line(page)
    assert not main_nav.is_visible()
    assert not page.get_by_role("button", name="Sign out").is_visible()
    assert no_sideways_scroll(page)
    assert_accessible(page)

    menu.click()
    assert main_nav.is_visible()
    assert [link.inner_text() for link in main_nav.get_by_role("link").all()] == sections
    assert main_nav.get_by_role("link", name="Connections").get_attribute("aria-current") == "page"
    account = page.locator(".site-header .account")
    assert account.get_by_text(person.email).is_visible()
    for name in ACCOUNT_LINKS:
        assert page.get_by_role("link", name=name, exact=True).count() == 1  # each link once
        assert account.get_by_role("link", name=name).is_visible()
    for item in page.locator(".site-menu-items a, .site-menu-items button").all():
        box = item.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width
    assert header_is_one_line(page)  # the open menu lies over the page
    assert no_sideways_scroll(page)
    assert_accessible(page)

    # Escape closes it and leaves the focus on Menu.
    page.locator(".site-menu-items a").first.focus()
    page.keyboard.press("Escape")
    assert not main_nav.is_visible()
    assert menu.evaluate("summary => document.activeElement === summary")

    # From the keyboard: Tab reaches Menu, with its focus shown; Enter and Space toggle it.
    page.goto("/")
    for _ in range(4):
        page.keyboard.press("Tab")
        if menu.evaluate("summary => document.activeElement === summary"):
            break
    assert menu.evaluate("summary => document.activeElement === summary")
    assert menu.evaluate("s => s.matches(':focus-visible')")
    assert menu.evaluate("s => getComputedStyle(s).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    assert main_nav.is_visible()
    page.keyboard.press("Space")
    assert not main_nav.is_visible()
    page.keyboard.press("Space")
    assert main_nav.is_visible()
    # Tab goes on into the sections, and Enter follows one.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Connections"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/clients/")
    assert not main_nav.is_visible()  # closed again on the new page
    menu.click()
    clients = main_nav.get_by_role("link", name="OAuth 2.0 clients")
    assert clients.get_attribute("aria-current") == "page"
    assert main_nav.get_by_role("link", name="Connections").get_attribute("aria-current") is None

    # A tap elsewhere closes it; the account pages open from it.
    page.mouse.click(width / 2, 620)  # below the open menu
    assert not main_nav.is_visible()
    menu.click()
    page.get_by_role("link", name="Sessions").click()
    page.wait_for_url("**/accounts/sessions/")

    menu.click()
    page.get_by_role("button", name="Sign out").click()
    page.goto("/")
    page.wait_for_url("**/accounts/login/**")
    assert page.get_by_role("button", name="Sign In").is_visible()


def test_the_header_is_unchanged_at_a_desktops_width(page: Any, admin_user: Any) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, admin_user)
    page.goto("/")
    main_nav = page.get_by_role("navigation", name="Main")
    assert not main_nav.is_visible()

    # Widening the window shows the sections beside the name and the account at the right,
    # with no Menu, as before there was one.
    page.set_viewport_size({"width": 1280, "height": 800})
    assert not page.locator(".site-header summary").is_visible()
    brand = page.get_by_role("link", name="Kroger connections").bounding_box()
    assert brand
    for name in ADMIN_SECTIONS:
        box = main_nav.get_by_role("link", name=name, exact=True).bounding_box()
        assert box and abs(box["y"] - brand["y"]) < brand["height"], name
    account = page.locator(".site-header .account")
    assert account.get_by_text(admin_user.email).is_visible()
    for name in ACCOUNT_LINKS:
        assert account.get_by_role("link", name=name).is_visible()
    sign_out = page.get_by_role("button", name="Sign out").bounding_box()
    assert sign_out and sign_out["x"] + sign_out["width"] > 1200  # at the right
    assert_accessible(page)


def test_without_javascript_the_sections_stay_in_view_on_a_phone(
    page: Any, browser: Any, live_server: Any, owner: Any
) -> None:
    # The page fixture's settings, in a context of its own with scripts off.
    context = browser.new_context(
        base_url=live_server.url, java_script_enabled=False, viewport=PHONE
    )
    try:
        page = context.new_page()
        sign_in(page, owner)
        page.goto("/")
        main_nav = page.get_by_role("navigation", name="Main")
        assert main_nav.get_by_role("link", name="OAuth 2.0 clients").is_visible()
        assert page.get_by_role("link", name="Sessions").is_visible()
        assert page.get_by_role("button", name="Sign out").is_visible()
        assert not page.locator(".site-header summary").is_visible()
        assert no_sideways_scroll(page)
        # In the page's flow, not over it.
        nav = main_nav.bounding_box()
        heading = page.locator("main h1").bounding_box()
        assert nav and heading and heading["y"] > nav["y"] + nav["height"]
    finally:
        context.close()


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
