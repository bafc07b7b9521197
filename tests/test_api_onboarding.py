"""The connection page's service API onboarding and the readable API reference."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import Connection
from tests.accessibility import assert_accessible
from tests.conftest import client_for, sign_in


@pytest.mark.django_db
def test_the_connection_page_shows_its_api_id_and_ready_commands(
    client: Any, teammate: Any, connection: Connection, settings: Any
) -> None:
    page = client_for(client, teammate).get(f"/connections/{connection.code}/").content.decode()
    assert f'<code id="api-id" aria-labelledby="api-id-label">{connection.code}</code>' in page
    token_url = f"{settings.SITE_URL}/api/v1/connections/{connection.code}/token"
    assert f'curl -fsS -H "Authorization: Bearer $PORTAL_KEY" "{token_url}"' in page
    proxy_url = f"{settings.SITE_URL}/api/v1/connections/{connection.code}/kroger/products"
    assert f'"{proxy_url}?filter.term=milk"' in page
    assert 'href="/service-api/"' in page


@pytest.mark.django_db
def test_the_api_reference_is_a_page_and_the_json_stays_at_its_url(client: Any) -> None:
    page = client.get("/service-api/").content.decode()
    assert "<h1>Service API</h1>" in page
    assert "<code>GET /api/v1/connections/{id}/token</code>" in page
    assert "A usable access token for a connection" in page
    assert "<code>PUT /api/v1/connections/{id}/kroger/{path}</code>" in page
    assert "<code>Authorization: Bearer kcp_…</code>" in page  # backticks become code
    assert "<code>409</code>" in page
    assert '<a href="/api/v1/openapi.json">' in page
    answer = client.get("/api/v1/openapi.json")
    assert answer["Content-Type"].startswith("application/json")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_developer_copies_the_token_command_and_reads_the_reference(
    page: Any, owner: Any, connection: Connection, live_server: Any
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")
    page.get_by_role("button", name="Copy the token command").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == (
        'curl -fsS -H "Authorization: Bearer $PORTAL_KEY" '
        f'"{live_server.url}/api/v1/connections/{connection.code}/token"'
    )
    assert_accessible(page)

    page.get_by_role("link", name="API reference").click()
    page.get_by_role("heading", name="Service API", level=1).wait_for()
    page.get_by_role("link", name="GET /api/v1/connections/{id}/token").click()
    assert page.url.endswith("#get-api-v1-connections-id-token")
    assert_accessible(page)
