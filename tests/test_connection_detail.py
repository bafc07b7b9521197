"""The connection page: its settings, HTTP settings and banner, shown to members only, and
no secret."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import (
    Connection,
    Environment,
    OAuthClient,
    Scope,
)

pytestmark = pytest.mark.django_db

ACCESS_TOKEN = "access-token-Vb8Nc3Mx1Zq7"


@pytest.mark.parametrize("who", ["admin_user", "owner", "teammate"])
def test_members_see_the_connection_page_with_its_http_settings(
    client: Any, request: Any, who: str, connection: Connection
) -> None:
    client.force_login(request.getfixturevalue(who))
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert "<h1>Store cart</h1>" in page
    assert "Not authorized" in page
    assert "HTTP settings" in page
    expected = {
        "Base URI": "https://api.kroger.com/v1/",
        "Authorization URL": "https://api.kroger.com/v1/connect/oauth2/authorize",
        "Token URL": "https://api.kroger.com/v1/connect/oauth2/token",
        "Client authentication": "HTTP Basic",
        "Scope delimiter": "space",
        "Scopes requested": "cart.basic:write product.compact",
        "PKCE method": "S256",
        "Redirect URI": "https://portal.test/oauth/callback/",
    }
    for label, value in expected.items():
        assert f"<dt>{label}</dt><dd><code>{value}</code></dd>" in page


def test_the_connection_page_follows_the_environment(
    client: Any, owner: Any, cc_client: OAuthClient
) -> None:
    made = Connection.objects.create(
        name="Catalogue", environment=Environment.CERTIFICATION, client=cc_client
    )
    made.scopes.set(Scope.objects.filter(name="product.compact"))
    client.force_login(owner)
    page = client.get(f"/connections/{made.code}/").content.decode()
    assert "<code>https://api-ce.kroger.com/v1/connect/oauth2/token</code>" in page


def test_editors_see_edit_and_delete_on_the_connection_page(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert f'href="/connections/{connection.code}/edit/">Edit</a>' in page
    assert f'href="/connections/{connection.code}/delete/">Delete</a>' in page


def test_viewers_see_no_edit_buttons_on_the_connection_page(
    client: Any, teammate: Any, connection: Connection
) -> None:
    client.force_login(teammate)
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert "/edit/" not in page
    assert "/delete/" not in page


def test_the_connection_page_shows_no_secret(
    client: Any, owner: Any, connection: Connection
) -> None:
    connection.store_tokens(access_token=ACCESS_TOKEN, expires_in=1800, refresh_token="r-Kp2")
    client.force_login(owner)
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert "Online" in page
    assert ACCESS_TOKEN not in page
    assert "r-Kp2" not in page
    assert connection.client.client_secret not in page


def test_outsiders_and_unknown_codes_get_404(
    client: Any, outsider: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(outsider)
    for suffix in ("", "edit/", "delete/"):
        assert client.get(f"/connections/{connection.code}/{suffix}").status_code == 404
    assert client.post(f"/connections/{connection.code}/delete/").status_code == 404
    client.force_login(owner)
    assert client.get("/connections/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_anonymous_visitors_are_sent_to_sign_in(client: Any, connection: Connection) -> None:
    response = client.get(f"/connections/{connection.code}/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_connection_page_shows_the_kroger_banner(
    client: Any, teammate: Any, connection: Connection
) -> None:
    client.force_login(teammate)
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert "<dt>Kroger banner</dt><dd>Kroger (default)</dd>" in page
    connection.banner = "fredmeyer"
    connection.save()
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert "<dt>Kroger banner</dt><dd>Fred Meyer</dd>" in page
