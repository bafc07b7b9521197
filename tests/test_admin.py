"""The admin: it shows no secret, keeps the domain rules and records every change."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db

from connections_app.admin import ConnectionAdmin
from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    Environment,
    OAuthClient,
    Scope,
    ServiceKey,
)
from tests.conftest import CLIENT_SECRET

pytestmark = pytest.mark.django_db

ACCESS = "access-token-Hs83Jd92Kq"
REFRESH = "refresh-token-Pw72Nx41Lz"


@pytest.fixture
def authorized(connection: Connection) -> Connection:
    connection.store_tokens(access_token=ACCESS, refresh_token=REFRESH, expires_in=1800)
    return connection


def assert_no_secret(html: str) -> None:
    for secret in (CLIENT_SECRET, ACCESS, REFRESH):
        assert secret not in html


def test_admin_pages_show_no_secret(client: Any, admin_user: Any, authorized: Connection) -> None:
    client.force_login(admin_user)
    oauth_client = authorized.client
    pages = [
        "/admin/connections_app/oauthclient/",
        f"/admin/connections_app/oauthclient/{oauth_client.pk}/change/",
        "/admin/connections_app/connection/",
        f"/admin/connections_app/connection/{authorized.pk}/change/",
        f"/admin/connections_app/connection/{authorized.pk}/history/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode())
    detail = client.get(pages[1]).content.decode()
    assert "set (fingerprint" in detail
    assert 'type="password"' in detail


def test_a_blank_secret_in_the_admin_keeps_the_stored_one(
    client: Any, admin_user: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    url = f"/admin/connections_app/oauthclient/{oauth_client.pk}/change/"
    data = {
        "name": "Renamed app",
        "environment": "production",
        "grant_type": "authorization_code",
        "client_id": oauth_client.client_id,
        "new_client_secret": "",
    }
    assert client.post(url, data).status_code == 302
    oauth_client.refresh_from_db()
    assert (oauth_client.name, oauth_client.client_secret) == ("Renamed app", CLIENT_SECRET)

    data["new_client_secret"] = "rotated-secret-Vb5"
    assert client.post(url, data).status_code == 302
    assert OAuthClient.objects.get().client_secret == "rotated-secret-Vb5"


def test_a_raw_read_of_the_database_finds_no_plaintext_secret(authorized: Connection) -> None:
    dump: list[str] = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            dump.extend(repr(row) for row in cursor.fetchall())
    text = "\n".join(dump)
    assert "v1:test1:" in text
    for secret in (CLIENT_SECRET, ACCESS, REFRESH):
        assert secret not in text


# --- Edits keep what the worker stored -----------------------------------------------------

ROTATED_ACCESS = "access-token-Ad4Wq7Ce2Lp9"
ROTATED_REFRESH = "refresh-token-Ad5Xr8Df3Mq0"


def connection_data(connection: Connection, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": connection.name,
        "environment": connection.environment,
        "client": str(connection.client_id),
        "scopes": [str(scope.pk) for scope in connection.scopes.all()],
        "banner": connection.banner,
    }
    data.update(overrides)
    return data


def change_url(obj: Any) -> str:
    return f"/admin/connections_app/{obj._meta.model_name}/{obj.pk}/change/"


def delete_url(obj: Any) -> str:
    return f"/admin/connections_app/{obj._meta.model_name}/{obj.pk}/delete/"


def test_an_admin_edit_keeps_the_tokens_the_worker_rotated_meanwhile(
    client: Any, admin_user: Any, authorized: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ConnectionAdmin.get_object

    def read_then_rotate(self: Any, *args: Any, **kwargs: Any) -> Any:
        loaded = original(self, *args, **kwargs)
        if loaded is not None:
            Connection.objects.get(pk=loaded.pk).store_tokens(
                access_token=ROTATED_ACCESS, refresh_token=ROTATED_REFRESH, expires_in=1800
            )
        return loaded

    monkeypatch.setattr(ConnectionAdmin, "get_object", read_then_rotate)
    client.force_login(admin_user)
    data = connection_data(authorized, name="Store cart 2", banner="ralphs")
    assert client.post(change_url(authorized), data).status_code == 302
    authorized.refresh_from_db()
    assert (authorized.name, authorized.banner) == ("Store cart 2", "ralphs")
    assert (authorized.access_token, authorized.refresh_token) == (
        ROTATED_ACCESS,
        ROTATED_REFRESH,
    )


def test_an_admin_change_of_client_discards_the_old_clients_tokens(
    client: Any, admin_user: Any, authorized: Connection
) -> None:
    other = OAuthClient.objects.create(
        name="Other app",
        environment=Environment.PRODUCTION,
        client_id="other",
        client_secret="other-secret",
    )
    client.force_login(admin_user)
    data = connection_data(authorized, client=str(other.pk))
    assert client.post(change_url(authorized), data).status_code == 302
    authorized.refresh_from_db()
    assert authorized.client == other
    assert (authorized.access_token, authorized.refresh_token) == ("", "")
    assert authorized.status == ConnectionStatus.NOT_AUTHORIZED
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CHANGED)
    assert event.detail == "Changed: OAuth 2.0 client; stored tokens discarded"
    assert event.actor == admin_user


# --- The domain rules hold in the admin too ------------------------------------------------


def test_the_admin_refuses_shopper_scopes_for_client_credentials(
    client: Any, admin_user: Any, cc_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    data = {
        "name": "Catalogue",
        "environment": "certification",
        "client": str(cc_client.pk),
        "scopes": [str(Scope.objects.get(name="cart.basic:write").pk)],
        "banner": "",
    }
    response = client.post("/admin/connections_app/connection/add/", data)
    assert response.status_code == 200
    assert (
        "When the OAuth 2.0 client uses Client credentials, the cart.basic:write scope cannot "
        "be selected." in response.content.decode()
    )
    assert not Connection.objects.exists()


def test_the_admin_refuses_a_client_of_another_environment(
    client: Any, admin_user: Any, cc_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    data = {
        "name": "Catalogue",
        "environment": "production",
        "client": str(cc_client.pk),
        "scopes": [str(Scope.objects.get(name="product.compact").pk)],
        "banner": "",
    }
    response = client.post("/admin/connections_app/connection/add/", data)
    assert response.status_code == 200
    assert "The OAuth 2.0 client Catalogue app is registered for Certification" in (
        response.content.decode()
    )
    assert not Connection.objects.exists()


def client_admin_data(oauth_client: OAuthClient, **overrides: str) -> dict[str, str]:
    data = {
        "name": oauth_client.name,
        "environment": oauth_client.environment,
        "grant_type": oauth_client.grant_type,
        "client_id": oauth_client.client_id,
        "new_client_secret": "",
    }
    data.update(overrides)
    return data


def test_the_admin_keeps_the_environment_of_a_client_in_use(
    client: Any, admin_user: Any, connection: Connection
) -> None:
    client.force_login(admin_user)
    oauth_client = connection.client
    data = client_admin_data(oauth_client, environment="certification")
    response = client.post(change_url(oauth_client), data)
    assert response.status_code == 200
    assert (
        "The OAuth 2.0 client “Shopping app” is used by the connection Store cart: its "
        "environment cannot change while that connection uses it." in response.content.decode()
    )
    oauth_client.refresh_from_db()
    assert oauth_client.environment == "production"


def test_the_admin_refuses_a_client_secret_http_basic_cannot_carry(
    client: Any, admin_user: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    data = client_admin_data(oauth_client, new_client_secret="s3cret€", client_id="id with space")
    page = client.post(change_url(oauth_client), data).content.decode()
    assert "The client secret can hold only printable ASCII" in page
    assert "The client ID can hold only printable ASCII" in page
    oauth_client.refresh_from_db()
    assert (oauth_client.client_id, oauth_client.client_secret) == (
        "shopping-app-1234",
        CLIENT_SECRET,
    )


# --- Admin changes are in the audit trail ----------------------------------------------------


def test_admin_changes_to_a_connection_are_recorded_and_shown_in_its_history(
    client: Any, admin_user: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    data = {
        "name": "Pantry",
        "environment": "production",
        "client": str(oauth_client.pk),
        "scopes": [str(Scope.objects.get(name="product.compact").pk)],
        "banner": "",
    }
    assert client.post("/admin/connections_app/connection/add/", data).status_code == 302
    created = Connection.objects.get(name="Pantry")
    assert created.created_by == admin_user
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CREATED)
    assert (event.connection, event.actor) == (created, admin_user)
    assert event.detail == "Production, scopes: product.compact"

    data.update(
        banner="ralphs", scopes=[str(s.pk) for s in Scope.objects.filter(name="cart.basic:write")]
    )
    assert client.post(change_url(created), data).status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CHANGED)
    assert (event.connection, event.actor) == (created, admin_user)
    assert event.detail == "Changed: Scopes, Kroger banner"
    page = client.get(f"/connections/{created.code}/").content.decode()
    assert "Changed: Scopes, Kroger banner" in page

    client.post(change_url(created), data)  # nothing changed: nothing recorded
    assert AuditEvent.objects.filter(action=AuditAction.CONNECTION_CHANGED).count() == 1

    assert client.post(delete_url(created), {"post": "yes"}).status_code == 302
    assert not Connection.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_DELETED)
    assert (event.subject, event.actor) == ("Pantry", admin_user)


def test_admin_changes_to_a_client_are_recorded_without_secrets(
    client: Any, admin_user: Any
) -> None:
    client.force_login(admin_user)
    data = {
        "name": "Pantry app",
        "environment": "certification",
        "grant_type": "client_credentials",
        "client_id": "pantry-app-42",
        "new_client_secret": "pantry-secret-Kw2Ds9",
    }
    assert client.post("/admin/connections_app/oauthclient/add/", data).status_code == 302
    created = OAuthClient.objects.get()
    assert created.created_by == admin_user
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_CREATED)
    assert (event.client, event.actor) == (created, admin_user)
    assert event.detail == "Certification, Client credentials"

    data.update(new_client_secret="pantry-secret-Zq7Mb1", client_id="pantry-app-43")
    assert client.post(change_url(created), data).status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_CHANGED)
    assert event.detail == "Changed: Client ID, Client secret"
    assert event.actor == admin_user

    assert client.post(delete_url(created), {"post": "yes"}).status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_DELETED)
    assert (event.subject, event.actor) == ("Pantry app", admin_user)
    text = " ".join(AuditEvent.objects.values_list("detail", flat=True))
    assert "pantry-secret" not in text


def test_admin_deletes_selected_connections_with_an_audit_event_each(
    client: Any, admin_user: Any, connection: Connection
) -> None:
    client.force_login(admin_user)
    data = {"action": "delete_selected", "_selected_action": [str(connection.pk)], "post": "yes"}
    assert client.post("/admin/connections_app/connection/", data).status_code == 302
    assert not Connection.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_DELETED)
    assert (event.subject, event.actor) == ("Store cart", admin_user)


def test_admin_edits_of_a_service_key_record_the_changed_fields_only(
    client: Any, admin_user: Any, connection: Connection
) -> None:
    key, _raw = ServiceKey.create_key(name="Shop backend", connections=[connection])
    client.force_login(admin_user)
    data = {
        "name": "Shop backend",
        "all_connections": "on",
        "may_proxy": "on",
        "connections": [],
        "expires_at_0": "2030-01-01",
        "expires_at_1": "00:00:00",
    }
    assert client.post(change_url(key), data).status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_CHANGED)
    assert (event.service_key, event.actor) == (key, admin_user)
    assert event.detail == "Changed: May use all connections, Connections, Expires at"
    assert key.key_prefix not in event.detail

    assert client.post(delete_url(key), {"post": "yes"}).status_code == 302
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_DELETED)
    assert (event.subject, event.actor) == ("Shop backend", admin_user)
