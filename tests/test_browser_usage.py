"""The client page's usage bars after calls through the proxy, in headless Chromium."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests

from connections_app.models import Connection, ServiceKey
from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def test_the_client_page_shows_the_usage_bars_after_proxied_calls(
    page: Any, live_server: Any, teammate: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    _, lists = ServiceKey.create_key(name="Shopping list service", connections=[connection])
    _, pantry = ServiceKey.create_key(name="Pantry service", connections=[connection])
    base = f"{live_server.url}/api/v1/connections/{connection.code}/kroger/"
    calls = [(lists, "products?filter.term=milk")] * 3 + [
        (pantry, "products?filter.term=eggs"),
        (pantry, "locations?filter.zipCode.near=45202"),
    ]
    for raw, path in calls:
        answer = requests.get(base + path, headers={"Authorization": f"Bearer {raw}"}, timeout=10)
        assert answer.status_code == 200, answer.text

    sign_in(page, teammate)
    page.goto("/clients/")
    page.get_by_role("link", name=connection.client.name).click()
    products = page.locator(".budget[data-api=products]")
    summary = products.locator(".budget-summary").inner_text()
    assert re.match(r"Products · 4 of 10,000 today · resets in 23 h 5\d min", summary), summary
    meter = products.get_by_role("meter")
    assert meter.get_attribute("value") == "4"
    assert meter.get_attribute("max") == "10000"
    assert products.get_by_text("Shopping list service: 3 (75%)").is_visible()
    assert products.get_by_text("Pantry service: 1 (25%)").is_visible()
    locations = page.locator(".budget[data-api=locations]")
    assert "1 of 1,600 today" in locations.inner_text()
    assert "Cart · 0 of 5,000 today" in page.locator(".budget[data-api=cart]").inner_text()


def test_an_editor_sets_a_daily_limit_on_the_client_page(
    page: Any, live_server: Any, owner: Any, connection: Connection
) -> None:
    sign_in(page, owner)
    page.goto(f"/clients/{connection.client.code}/")
    assert_accessible(page)
    page.get_by_role("spinbutton", name="Locations").fill("-5")
    page.get_by_role("button", name="Save limits").click()
    summary = page.get_by_role("alert")
    assert "Locations: Enter 0 or more calls a day (0 stops every call)." in summary.inner_text()
    assert_accessible(page)

    summary.get_by_role("link").click()
    assert page.evaluate("document.activeElement.name") == "locations"
    page.get_by_role("spinbutton", name="Locations").fill("800")
    page.get_by_role("button", name="Save limits").click()
    assert page.get_by_text("Daily limits saved: Locations.").is_visible()
    assert "0 of 800 today" in page.locator(".budget[data-api=locations]").inner_text()
    assert page.get_by_role("spinbutton", name="Locations").input_value() == "800"
