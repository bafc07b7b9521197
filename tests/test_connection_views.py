"""The Connections list, the connection page (settings, HTTP settings), edit and delete."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from connections_app import views
from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    Environment,
    GrantType,
    OAuthClient,
    Scope,
)
from tests.html_forms import checked_values, input_value, selected_option
from tests.keepalive import make_offline

pytestmark = pytest.mark.django_db

ACCESS_TOKEN = "access-token-Vb8Nc3Mx1Zq7"


def make_connections(client: OAuthClient, count: int, start: int = 0) -> None:
    scopes = list(Scope.objects.all())
    for number in range(start, start + count):
        made = Connection.objects.create(
            name=f"Connection {number:03}", environment=client.environment, client=client
        )
        made.scopes.set(scopes)


def edit_data(connection: Connection, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": connection.name,
        "environment": connection.environment,
        "client": str(connection.client.code),
        "scopes": sorted(scope.name for scope in connection.scopes.all()),
        "action": "save",
    }
    data.update(overrides)
    return data


# --- Connections list ------------------------------------------------------------------------


def test_the_list_shows_each_connection_with_its_status_and_token_expiry(
    client: Any, teammate: Any, connection: Connection
) -> None:
    connection.store_tokens(access_token=ACCESS_TOKEN, expires_in=1800)
    make_offline(connection, "Kroger refused the refresh token")
    client.force_login(teammate)
    page = client.get("/").content.decode()
    assert f'<a href="/connections/{connection.code}/">Store cart</a>' in page
    assert "Production" in page
    assert "Shopping app" in page
    assert "<code>cart.basic:write</code>, <code>product.compact</code>" in page
    assert "Offline" in page
    assert "Kroger refused the refresh token" in page
    assert f'datetime="{connection.token_expires_at:%Y-%m-%dT%H:%M:%S}' in page
    assert ACCESS_TOKEN not in page


def test_editors_see_the_create_connection_button(client: Any, owner: Any) -> None:
    client.force_login(owner)
    assert 'href="/connections/new/">Create connection</a>' in client.get("/").content.decode()


def test_viewers_do_not_see_the_create_connection_button(client: Any, teammate: Any) -> None:
    client.force_login(teammate)
    assert "Create connection" not in client.get("/").content.decode()


def test_the_list_is_paginated(client: Any, owner: Any, oauth_client: OAuthClient) -> None:
    make_connections(oauth_client, 30)
    client.force_login(owner)
    first = client.get("/").content.decode()
    assert "Connection 024" in first
    assert "Connection 025" not in first
    assert "Page 1 of 2" in first
    second = client.get("/?page=2").content.decode()
    assert "Connection 025" in second
    assert "Connection 029" in second


def test_the_number_of_queries_does_not_grow_with_the_connections(
    client: Any, owner: Any, oauth_client: OAuthClient, django_assert_num_queries: Any
) -> None:
    make_connections(oauth_client, 2)
    client.force_login(owner)
    client.get("/")  # warm the session and permission caches alike for both counts
    with CaptureQueriesContext(db_connection) as two:
        assert client.get("/").status_code == 200
    make_connections(oauth_client, 28, start=2)
    with django_assert_num_queries(len(two.captured_queries)):
        page = client.get("/").content.decode()
    assert page.count("<code>product.compact</code>") == 25


# --- Connection page -------------------------------------------------------------------------


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


# --- Edit ------------------------------------------------------------------------------------


def test_the_edit_panel_starts_from_the_connection(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    page = client.get(f"/connections/{connection.code}/edit/").content.decode()
    assert input_value(page, "name") == "Store cart"
    assert (selected_option(page, "client") or {}).get("value") == str(connection.client.code)
    assert (selected_option(page, "environment") or {}).get("value") == "production"
    assert checked_values(page, "scopes") == ["cart.basic:write", "product.compact"]


def test_an_editor_renames_a_connection_and_the_audit_names_the_change(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    data = edit_data(connection, name="Store cart 2")
    response = client.post(f"/connections/{connection.code}/edit/", data, follow=True)
    assert "Connection “Store cart 2” saved." in response.content.decode()
    connection.refresh_from_db()
    assert connection.name == "Store cart 2"
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CHANGED)
    assert event.detail == "Changed: Name your connection"
    assert event.actor == owner


def test_saving_without_changes_records_nothing(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    client.post(f"/connections/{connection.code}/edit/", edit_data(connection))
    assert not AuditEvent.objects.filter(action=AuditAction.CONNECTION_CHANGED).exists()


def test_new_scopes_on_an_authorized_connection_ask_for_reauthorization(
    client: Any, owner: Any, connection: Connection
) -> None:
    connection.store_tokens(access_token=ACCESS_TOKEN, expires_in=1800)
    client.force_login(owner)
    data = edit_data(connection, scopes=["product.compact", "profile.compact"])
    response = client.post(f"/connections/{connection.code}/edit/", data, follow=True)
    assert "Scopes changed: reauthorize the connection" in response.content.decode()
    connection.refresh_from_db()
    assert connection.scope_string() == "product.compact profile.compact"
    assert connection.access_token == ACCESS_TOKEN  # still works with what was granted
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CHANGED)
    assert event.detail == "Changed: Scopes"


def test_a_new_client_discards_the_tokens_of_the_old_one(
    client: Any, owner: Any, connection: Connection
) -> None:
    connection.store_tokens(access_token=ACCESS_TOKEN, expires_in=1800)
    other = OAuthClient.objects.create(
        name="Other app",
        environment=Environment.PRODUCTION,
        grant_type=GrantType.AUTHORIZATION_CODE,
        client_id="other",
        client_secret="other-secret",
    )
    client.force_login(owner)
    data = edit_data(connection, client=str(other.code))
    response = client.post(f"/connections/{connection.code}/edit/", data, follow=True)
    assert "Authorize the connection again." in response.content.decode()
    connection.refresh_from_db()
    assert connection.client == other
    assert connection.status == "not_authorized"
    assert connection.access_token == ""
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CHANGED)
    assert event.detail == "Changed: OAuth 2.0 client; stored tokens discarded"


def test_a_viewer_cannot_edit(client: Any, teammate: Any, connection: Connection) -> None:
    client.force_login(teammate)
    url = f"/connections/{connection.code}/edit/"
    assert client.get(url).status_code == 403
    assert client.post(url, edit_data(connection, name="Hijacked")).status_code == 403
    connection.refresh_from_db()
    assert connection.name == "Store cart"


# --- Delete ----------------------------------------------------------------------------------


def test_deleting_asks_for_confirmation_first(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    page = client.get(f"/connections/{connection.code}/delete/").content.decode()
    assert "Delete connection “Store cart”?" in page
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_an_editor_deletes_a_connection(client: Any, owner: Any, connection: Connection) -> None:
    client.force_login(owner)
    response = client.post(f"/connections/{connection.code}/delete/", follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert "Connection “Store cart” deleted." in response.content.decode()
    assert not Connection.objects.filter(pk=connection.pk).exists()
    assert OAuthClient.objects.filter(pk=connection.client_id).exists()
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_DELETED)
    assert (event.subject, event.actor) == ("Store cart", owner)


def test_a_viewer_cannot_delete(client: Any, teammate: Any, connection: Connection) -> None:
    client.force_login(teammate)
    assert client.get(f"/connections/{connection.code}/delete/").status_code == 403
    assert client.post(f"/connections/{connection.code}/delete/").status_code == 403
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_the_edit_panel_keeps_its_input_across_a_trip_to_the_client_form(
    client: Any, owner: Any, connection: Connection
) -> None:
    client.force_login(owner)
    url = f"/connections/{connection.code}/edit/"
    data = edit_data(connection, name="Store cart renamed", action="add_client")
    assert client.post(url, data)["Location"] == "/clients/new/?next=panel"
    form = {
        "name": "Second app",
        "environment": "production",
        "grant_type": "authorization_code",
        "client_id": "second",
        "client_secret": "second-secret",
    }
    response = client.post("/clients/new/?next=panel", form)
    assert response["Location"] == f"{url}?restore=1"
    page = client.get(response["Location"]).content.decode()
    assert input_value(page, "name") == "Store cart renamed"
    assert (selected_option(page, "client") or {}).get("text") == "Second app"
    connection.refresh_from_db()
    assert connection.name == "Store cart"  # nothing saved until the panel is saved


# --- Edits and the worker --------------------------------------------------------------------

ROTATED_ACCESS = "access-token-Rt5Gh2Lw9Xc4"
ROTATED_REFRESH = "refresh-token-Rt6Jm3Pz8Vn1"


def rotate_while_the_edit_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotate the tokens through another instance after the view has read the connection,
    as the worker would while an edit is in flight."""
    original = views.get_connection_for_user

    def read_then_rotate(*args: Any, **kwargs: Any) -> Connection:
        loaded = original(*args, **kwargs)
        worker_copy = Connection.objects.get(pk=loaded.pk)
        worker_copy.store_tokens(
            access_token=ROTATED_ACCESS, refresh_token=ROTATED_REFRESH, expires_in=1800
        )
        return loaded

    monkeypatch.setattr(views, "get_connection_for_user", read_then_rotate)


def test_an_edit_keeps_the_tokens_the_worker_rotated_meanwhile(
    client: Any, owner: Any, connection: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection.store_tokens(
        access_token=ACCESS_TOKEN, refresh_token="refresh-token-old", expires_in=1800
    )
    rotate_while_the_edit_runs(monkeypatch)
    client.force_login(owner)
    data = edit_data(connection, name="Store cart 2", scopes=["product.compact"])
    assert client.post(f"/connections/{connection.code}/edit/", data).status_code == 302
    connection.refresh_from_db()
    assert connection.name == "Store cart 2"
    assert connection.scope_string() == "product.compact"
    assert (connection.access_token, connection.refresh_token) == (
        ROTATED_ACCESS,
        ROTATED_REFRESH,
    )


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


def test_an_editor_changes_the_banner(client: Any, owner: Any, connection: Connection) -> None:
    client.force_login(owner)
    page = client.get(f"/connections/{connection.code}/edit/").content.decode()
    assert (selected_option(page, "banner") or {}).get("value") == ""
    data = edit_data(connection, banner="kingsoopers")
    assert client.post(f"/connections/{connection.code}/edit/", data).status_code == 302
    connection.refresh_from_db()
    assert connection.banner == "kingsoopers"
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CHANGED)
    assert event.detail == "Changed: Kroger banner"
