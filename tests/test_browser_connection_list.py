"""The connections list's search, filters and summary in headless Chromium: they work as a
plain GET form, keep what was chosen in the URL, and pass the accessibility audit."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import NEEDS_REAUTHORIZATION, Connection, OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.connection_states import make_offline

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_summary_leads_to_the_filter_and_the_form_keeps_it(
    page: Any, teammate: Any, oauth_client: OAuthClient
) -> None:
    for name in ("Alpha", "Bravo", "Charlie"):
        made = Connection.objects.create(
            name=name, environment=oauth_client.environment, client=oauth_client
        )
        made.store_tokens(access_token="a", refresh_token="r", expires_in=1800)
    make_offline(Connection.objects.get(name="Bravo"), NEEDS_REAUTHORIZATION)
    sign_in(page, teammate)
    page.goto("/")
    assert_accessible(page)

    page.get_by_role("link", name="1 connection needs reauthorization").click()
    page.wait_for_url("**/?status=needs_reauthorization")
    rows = page.locator("td.card-title")
    assert rows.all_inner_texts() == ["Bravo"]
    assert page.get_by_label("Status").input_value() == "needs_reauthorization"

    page.get_by_label("Status").select_option("online")
    page.get_by_label("Search by name").fill("char")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/?q=char*")
    assert rows.all_inner_texts() == ["Charlie"]
    assert_accessible(page)

    page.get_by_label("Search by name").fill("zulu")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/?q=zulu*")
    assert page.get_by_text("No connections match.").is_visible()
    page.get_by_role("link", name="Clear filters").click()
    page.wait_for_url(lambda url: "q=" not in url)
    assert rows.count() == 3
