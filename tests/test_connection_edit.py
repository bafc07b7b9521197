"""Editing a connection in the panel: what is saved and audited, what happens to the tokens."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app import views
from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    Environment,
    GrantType,
    OAuthClient,
)
from tests.html_forms import checked_values, input_value, selected_option

pytestmark = pytest.mark.django_db

ACCESS_TOKEN = "access-token-Vb8Nc3Mx1Zq7"


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
